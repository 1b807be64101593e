//! A DNS query becomes a verdict: header checks, the QNAME walk that computes every suffix
//! key, the EDNS check, and the most-specific-rule search.
//!
//! This code runs inside the XDP program on a per-CPU scratch buffer that holds the first
//! [`LOAD_MAX`] bytes of the DNS message, and on the host in unit tests on the same bytes.
//! Every index into a fixed array is masked, so the compiler proves it in range and no panic
//! path reaches the BPF verifier. Loops have named constant bounds.

use crate::key::{
    chunk_value, suffix_key, Horner, KeySecret, RuleKey, CHUNK, MAX_CANONICAL_LEN, MAX_CHUNKS,
    POW_LEN,
};
use crate::maps::{qtype_bit, Config, Reason, RuleSet, Slot};

/// Size of the scratch message buffer (a power of two, so `& MSG_MASK` bounds an index).
pub const MSG_BUF: usize = 512;
pub const MSG_MASK: usize = MSG_BUF - 1;
/// Length of the DNS header.
pub const HEADER_LEN: usize = 12;
/// Longest wire-format name, root byte included (RFC 1035 §2.3.4).
pub const MAX_NAME_WIRE: usize = 255;
/// Most labels a name can have (127 one-byte labels plus the root fit in 255 bytes).
pub const MAX_LABELS: usize = 128;
/// Fixed part of an OPT record: root owner, TYPE, CLASS, TTL, RDLENGTH.
pub const OPT_FIXED_LEN: usize = 11;
/// Bytes of a query the program copies out of the packet: header, longest name, QTYPE,
/// QCLASS and the fixed part of an OPT record. Nothing after that is ever needed.
pub const LOAD_MAX: usize = HEADER_LEN + MAX_NAME_WIRE + 4 + OPT_FIXED_LEN;

/// Longest run of headers (Ethernet to UDP) the program moves when an answer needs more
/// room than the frame has at its tail.
pub const HDR_MAX: usize = 256;

/// Per-CPU working memory of the XDP program (entry 0 of a per-CPU array): too large for the
/// 512-byte BPF stack.
#[repr(C)]
pub struct Scratch {
    /// The DNS message: the query as loaded from the packet, then the answer built in place.
    pub msg: [u8; MSG_BUF],
    /// Index of each label's first chunk (see `crate::key`) in the QNAME.
    pub starts: [u8; MAX_LABELS],
    /// Running key hash just before each label.
    pub prefix: [Horner; MAX_LABELS],
    /// Copy of the IP header while it is rewritten.
    pub l3: [u8; 64],
    /// Copy of the TCP header (options included) while it is rewritten.
    pub l4: [u8; 64],
    /// Copy of the frame's headers (Ethernet to UDP) while the frame grows at the front.
    pub hdr: [u8; HDR_MAX],
    /// Slots for [`launder`].
    pub opaque: [u64; 32],
}

impl Scratch {
    pub const fn zeroed() -> Scratch {
        Scratch {
            msg: [0; MSG_BUF],
            starts: [0; MAX_LABELS],
            prefix: [Horner::ZERO; MAX_LABELS],
            l3: [0; 64],
            l4: [0; 64],
            hdr: [0; HDR_MAX],
            opaque: [0; 32],
        }
    }
}

/// Returns `v` through memory, so the BPF verifier forgets its exact value.
///
/// The verifier walks every path through the program. A value that depends on where a loop
/// ended (the QNAME length, the VLAN depth) is known exactly on each path, which makes every
/// later instruction be verified once per possible value, past the verifier's limit of a
/// million. A value read back from map memory is just "some number"; callers re-bound it
/// with a comparison, and the paths merge.
#[inline(always)]
pub fn launder(slot: &mut u64, v: u64) -> u64 {
    // SAFETY: `slot` is a valid, aligned, exclusive reference.
    unsafe {
        core::ptr::write_volatile(slot, v);
        core::ptr::read_volatile(slot)
    }
}

/// What the parser learned about a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    /// Number of labels (0 for the root).
    pub labels: usize,
    /// Canonical length of the QNAME (wire length without the root byte).
    pub name_len: usize,
    /// Number of chunks of the QNAME (see `crate::key`).
    pub chunks: usize,
    /// Running key hash of the whole QNAME (see [`Horner`]).
    pub name_hash: Horner,
    pub qtype: u16,
    pub qclass: u16,
    /// Offset just past QTYPE and QCLASS: where an answer's records start.
    pub q_end: usize,
    /// The query carried an EDNS(0) OPT record.
    pub edns: bool,
    /// The DO bit of that OPT record.
    pub dnssec_ok: bool,
}

#[inline(always)]
fn be16(msg: &[u8; MSG_BUF], at: usize) -> u16 {
    u16::from_be_bytes([msg[at & MSG_MASK], msg[(at + 1) & MSG_MASK]])
}

/// The eight bytes of the QNAME at offset `j & 0xff` (a QNAME is at most 255 bytes) as a
/// little-endian word, from two aligned loads: an unaligned one would be compiled into eight
/// byte loads for BPF.
#[inline(always)]
fn qname_word(msg: &[u8; MSG_BUF], j: usize) -> u64 {
    const _: () = assert!(core::mem::offset_of!(Scratch, msg) == 0);
    const _: () = assert!(core::mem::align_of::<Scratch>() >= 8);
    let at = HEADER_LEN + (j & 0xff);
    let base = at & !7;
    let shift = ((at & 7) * 8) as u32;
    // SAFETY: `msg` is the first field of an 8-aligned `Scratch` (checked above), so `base`,
    // a multiple of 8, is 8-aligned; base + 16 ≤ 264 + 16 ≤ MSG_BUF.
    let (lo, hi) = unsafe {
        let p = msg.as_ptr().add(base).cast::<u64>();
        (u64::from_le(p.read()), u64::from_le(p.add(1).read()))
    };
    // hi << (64 − shift) without a shift by 64 when shift is 0 (bit 0 of hi << 1 is 0).
    (lo >> shift) | ((hi << 1) << (63 - shift))
}

/// Parses the query in `s.msg`. `loaded` bytes of the message are in the buffer (at most
/// [`LOAD_MAX`]); the whole message (the UDP payload) is `msg_len` bytes long. Records each
/// label's start and running hash (under `secret`) in `s` for [`find_rule`].
///
/// Accepts only what the data plane can answer correctly: QR=0, opcode QUERY, QDCOUNT=1,
/// ANCOUNT=0, NSCOUNT=0, ARCOUNT 0 or 1 with that one record an EDNS(0) OPT of version 0,
/// class IN, and a QNAME of uncompressed labels. Anything else is the [`Reason`] to pass it.
#[inline(always)]
pub fn parse_query(
    s: &mut Scratch,
    loaded: usize,
    msg_len: usize,
    secret: &KeySecret,
) -> Result<Query, Reason> {
    if msg_len < HEADER_LEN || loaded < HEADER_LEN {
        return Err(Reason::Malformed);
    }
    let m = &s.msg;
    // QR must be 0 and the opcode QUERY (0).
    if m[2] & 0xf8 != 0 {
        return Err(Reason::NotQuery);
    }
    let qd = be16(m, 4);
    let an = be16(m, 6);
    let ns = be16(m, 8);
    let ar = be16(m, 10);
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return Err(Reason::NotQuery);
    }

    // The QNAME walk: one pass, left to right, one chunk (at most 7 bytes of one label, see
    // `crate::key`) per step. The bases are read once: in the kernel `secret` is map memory,
    // which the compiler cannot keep in registers across the stores into `s`.
    let base = secret.base;
    let mut i = HEADER_LEN;
    let mut next_len = HEADER_LEN;
    let mut h = Horner::ZERO;
    let mut labels = 0usize;
    let mut chunks = 0usize;
    let mut done = false;
    // At most 127 chunks, and a last step that finds the root.
    for _ in 0..MAX_CHUNKS + 1 {
        if i >= loaded {
            // The name runs past the message (or past what any valid name needs).
            return Err(Reason::BadName);
        }
        if i == next_len {
            let b = s.msg[i & MSG_MASK];
            if b == 0 {
                done = true;
                break;
            }
            // 0xC0.. is a compression pointer, 0x40 and 0x80 are reserved label types.
            if b > 63 {
                return Err(Reason::BadName);
            }
            // Indexing with `labels` itself would make the verifier track its exact value
            // on every path through this loop (hundreds of thousands of states).
            let li = launder(&mut s.opaque[10], labels as u64) as usize & (MAX_LABELS - 1);
            s.starts[li] = chunks as u8;
            s.prefix[li] = h;
            labels += 1;
            // Laundered: otherwise every label start seen so far leaves a different range
            // for `next_len`, and the verifier walks the loop body once per range.
            next_len = launder(&mut s.opaque[19], (i + 1 + b as usize) as u64) as usize;
        }
        // The chunk: up to 7 bytes, not past the label: min(next_len − i, 7), branch-free
        // (over ≥ 0: take 7).
        let rest = next_len.wrapping_sub(i) as u64;
        let over = rest.wrapping_sub(CHUNK as u64) as i64;
        let k = rest.wrapping_sub((over & !(over >> 63)) as u64);
        if i as u64 + k > loaded as u64 {
            return Err(Reason::BadName);
        }
        let word = qname_word(&s.msg, i.wrapping_sub(HEADER_LEN));
        h = h.push(chunk_value(word, k), &base);
        chunks += 1;
        // Laundered: `i` moves by 1 to 7 bytes a step; a range per path would keep the
        // verifier from merging paths.
        i = launder(&mut s.opaque[12], i as u64 + k) as usize;
    }
    if !done || i.wrapping_sub(HEADER_LEN) > MAX_CANONICAL_LEN {
        return Err(Reason::BadName);
    }
    // Here HEADER_LEN < i ≤ HEADER_LEN + 254, labels < 128 and chunks ≤ 127. The masks below
    // change nothing at run time; they bound the laundered values for the verifier (a
    // comparison would not do: the compiler would use it to drop the masks on later indexes).
    let i = launder(&mut s.opaque[0], i as u64) as usize & MSG_MASK;
    let labels = launder(&mut s.opaque[1], labels as u64) as usize & (MAX_LABELS - 1);
    let chunks = launder(&mut s.opaque[18], chunks as u64) as usize & (POW_LEN - 1);
    let name_len = i.wrapping_sub(HEADER_LEN) & 0xff;
    let q_end = i + 1 + 4;
    if q_end > msg_len || q_end > loaded {
        return Err(Reason::Malformed);
    }
    let m = &s.msg;
    let qtype = be16(m, i + 1);
    let qclass = be16(m, i + 3);
    if qclass != 1 {
        return Err(Reason::OtherClass);
    }

    let mut edns = false;
    let mut dnssec_ok = false;
    if ar == 1 {
        let o = q_end;
        if o + OPT_FIXED_LEN > msg_len || o + OPT_FIXED_LEN > loaded {
            return Err(Reason::Malformed);
        }
        // Owner must be the root, TYPE must be OPT (41), version 0.
        if m[o & MSG_MASK] != 0 || be16(m, o + 1) != 41 || m[(o + 6) & MSG_MASK] != 0 {
            return Err(Reason::BadEdns);
        }
        let rdlen = be16(m, o + 9) as usize;
        if o + OPT_FIXED_LEN + rdlen > msg_len {
            return Err(Reason::Malformed);
        }
        edns = true;
        dnssec_ok = m[(o + 7) & MSG_MASK] & 0x80 != 0;
    }

    Ok(Query {
        labels,
        name_len,
        chunks,
        // Laundered: the key filter turns keys into a memory offset, which makes the verifier
        // track the exact range of every value the key came from, back through the whole
        // walk; ranges that differ by path would then keep it from merging paths. (The
        // running hashes at label starts come back from `s.prefix`, already laundered.)
        name_hash: Horner {
            h1: launder(&mut s.opaque[16], h.h1),
            h2: launder(&mut s.opaque[17], h.h2),
        },
        qtype,
        qclass,
        q_end,
        edns,
        dnssec_ok,
    })
}

/// Finds the most specific rule that decides `q` (parsed under the same `secret`). `lookup`
/// returns the rules in force at a name (the active copy of its [`crate::RuleValue`]).
///
/// Suffixes are tried from the whole name (most specific) to the last label, skipping depths
/// at which no rule exists (`Config::depth_mask`). At the whole name the `here` slot decides
/// (an exact rule beats a subtree rule there: user space puts the winner in the slot); at a
/// proper suffix the `below` slot decides (a subtree or `*.` rule of an ancestor). A slot
/// whose qtype set does not hold the query's type is skipped and the search goes on. The
/// root has no labels and is never matched.
#[inline(always)]
pub fn find_rule<F>(
    cfg: &Config,
    secret: &KeySecret,
    s: &mut Scratch,
    q: &Query,
    lookup: F,
) -> Option<Slot>
where
    F: FnMut(&RuleKey) -> Option<RuleSet>,
{
    find_rule_filtered(cfg, secret, s, q, |_| true, lookup)
}

/// [`find_rule`] with a pre-filter: a key for which `may_hold` is false is not looked up
/// (the key filter, see [`crate::filter`]).
// The label counter `k` kept apart from the bounded loop is the shape the verifier was
// measured with (see prog_test_run); folding it into the loop is an eBPF change to measure,
// not a lint fix.
#[allow(clippy::explicit_counter_loop)]
#[inline(always)]
pub fn find_rule_filtered<F, G>(
    cfg: &Config,
    secret: &KeySecret,
    s: &mut Scratch,
    q: &Query,
    mut may_hold: G,
    mut lookup: F,
) -> Option<Slot>
where
    F: FnMut(&RuleKey) -> Option<RuleSet>,
    G: FnMut(&RuleKey) -> bool,
{
    let qbit = qtype_bit(q.qtype);
    let mut k = 0usize;
    for _ in 0..MAX_LABELS {
        if k >= q.labels {
            break;
        }
        let depth = launder(&mut s.opaque[11], (q.labels - k) as u64) as usize;
        let idx = k & (MAX_LABELS - 1);
        // A key costs two modular multiplies: only at depths that hold rules. Decisions are
        // laundered, so the verifier sees the same few paths at every label whatever the
        // depth test and the filter computed.
        if launder(&mut s.opaque[7], cfg.has_depth(depth) as u64) != 0 {
            let start = s.starts[idx] as usize;
            let key = suffix_key(
                secret,
                q.name_hash,
                s.prefix[idx],
                q.chunks.wrapping_sub(start),
            );
            if launder(&mut s.opaque[13], may_hold(&key) as u64) != 0 {
                if let Some(set) = lookup(&key) {
                    let slot = if k == 0 { set.here } else { set.below };
                    if !slot.is_empty() && slot.qtypes & qbit != 0 {
                        return Some(slot);
                    }
                }
            }
        }
        k += 1;
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::key::{key_of_canonical, tests::test_secret};
    use crate::maps::{Action, RuleSet, Slot, QTYPES_ALL};
    use std::collections::HashMap;
    use std::vec::Vec;

    pub fn wire(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in name.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v
    }

    /// A query message: header, QNAME from raw wire labels, QTYPE, QCLASS, optional OPT.
    pub fn query(id: u16, qname_wire: &[u8], qtype: u16, opt: Option<(bool, &[u8])>) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&[0x01, 0x20]); // RD, AD
        m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, opt.is_some() as u8]);
        m.extend_from_slice(qname_wire);
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        if let Some((dok, options)) = opt {
            m.push(0);
            m.extend_from_slice(&41u16.to_be_bytes());
            m.extend_from_slice(&4096u16.to_be_bytes());
            m.extend_from_slice(&[0, 0, if dok { 0x80 } else { 0 }, 0]);
            m.extend_from_slice(&(options.len() as u16).to_be_bytes());
            m.extend_from_slice(options);
        }
        m
    }

    pub fn load(msg: &[u8]) -> (std::boxed::Box<Scratch>, usize) {
        let mut s = std::boxed::Box::new(Scratch::zeroed());
        let n = msg.len().min(LOAD_MAX);
        s.msg[..n].copy_from_slice(&msg[..n]);
        (s, n)
    }

    fn parse(msg: &[u8]) -> Result<Query, Reason> {
        let (mut s, n) = load(msg);
        parse_query(&mut s, n, msg.len(), &test_secret())
    }

    struct Rules {
        cfg: Config,
        map: HashMap<RuleKey, RuleSet>,
    }

    impl Rules {
        fn new() -> Rules {
            Rules {
                cfg: Config::default(),
                map: HashMap::new(),
            }
        }
        fn add(&mut self, name: &str, here: Option<(Action, u32)>, below: Option<(Action, u32)>) {
            let w = wire(name);
            let depth = name.split('.').filter(|l| !l.is_empty()).count();
            self.cfg.depth_mask[depth >> 6] |= 1 << (depth & 63);
            let slot = |a: Option<(Action, u32)>| match a {
                Some((a, id)) => Slot {
                    rule_id: id,
                    order_id: 0,
                    action: a as u8,
                    flags: 0,
                    qtypes: QTYPES_ALL,
                    scope: 0,
                },
                None => Slot::default(),
            };
            self.map.insert(
                key_of_canonical(&test_secret(), &w),
                RuleSet {
                    here: slot(here),
                    below: slot(below),
                },
            );
        }
        fn decide(&self, qname: &[u8], qtype: u16) -> Option<Slot> {
            let msg = query(7, qname, qtype, None);
            let (mut s, n) = load(&msg);
            let k = test_secret();
            let q = parse_query(&mut s, n, msg.len(), &k).expect("query parses");
            find_rule(&self.cfg, &k, &mut s, &q, |k| self.map.get(k).copied())
        }
    }

    #[test]
    fn parses_a_plain_query() {
        let q = parse(&query(1, &wire("www.Example.com"), 1, None)).expect("parses");
        assert_eq!(q.labels, 3);
        assert_eq!(q.name_len, wire("www.example.com").len());
        assert_eq!(q.qtype, 1);
        assert!(!q.edns);
        assert_eq!(q.q_end, 12 + q.name_len + 1 + 4);
        let h = key_of_canonical(&test_secret(), &wire("www.example.com"));
        assert_eq!(
            (
                crate::key::reduce61(q.name_hash.h1),
                crate::key::reduce61(q.name_hash.h2)
            ),
            (h.h1, h.h2)
        );
    }

    #[test]
    fn parses_edns_and_do_bit() {
        let q = parse(&query(
            1,
            &wire("a.test"),
            28,
            Some((true, &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])),
        ))
        .expect("parses");
        assert!(q.edns && q.dnssec_ok);
        let q = parse(&query(1, &wire("a.test"), 28, Some((false, &[])))).expect("parses");
        assert!(q.edns && !q.dnssec_ok);
    }

    #[test]
    fn rejects_what_it_cannot_answer() {
        let ok = query(1, &wire("a.test"), 1, None);
        let mut resp = ok.clone();
        resp[2] |= 0x80;
        assert_eq!(parse(&resp), Err(Reason::NotQuery));
        let mut notify = ok.clone();
        notify[2] |= 4 << 3;
        assert_eq!(parse(&notify), Err(Reason::NotQuery));
        let mut two = ok.clone();
        two[5] = 2;
        assert_eq!(parse(&two), Err(Reason::NotQuery));
        // A compression pointer in the QNAME.
        assert_eq!(
            parse(&query(1, &[1, b'a', 0xc0, 0x0c], 1, None)),
            Err(Reason::BadName)
        );
        // Reserved label types 0x40 and 0x80.
        assert_eq!(
            parse(&query(1, &[0x41, b'a'], 1, None)),
            Err(Reason::BadName)
        );
        // Truncated in the name.
        assert_eq!(parse(&ok[..15]), Err(Reason::BadName));
        // Truncated in QTYPE/QCLASS.
        assert_eq!(parse(&ok[..ok.len() - 1]), Err(Reason::Malformed));
        // CHAOS class.
        let mut ch = ok.clone();
        let n = ch.len();
        ch[n - 1] = 3;
        assert_eq!(parse(&ch), Err(Reason::OtherClass));
        // ARCOUNT=1 but the record is not OPT (e.g. TSIG).
        let mut tsig = query(1, &wire("a.test"), 1, Some((false, &[])));
        let o = 12 + wire("a.test").len() + 1 + 4;
        tsig[o + 2] = 250;
        assert_eq!(parse(&tsig), Err(Reason::BadEdns));
        // OPT whose RDLENGTH runs past the message.
        let mut long = query(1, &wire("a.test"), 1, Some((false, &[0, 10, 0, 0])));
        long.truncate(long.len() - 1);
        assert_eq!(parse(&long), Err(Reason::Malformed));
        // EDNS version 1.
        let mut v1 = query(1, &wire("a.test"), 1, Some((false, &[])));
        v1[o + 6] = 1;
        assert_eq!(parse(&v1), Err(Reason::BadEdns));
        assert_eq!(parse(&ok[..11]), Err(Reason::Malformed));
    }

    #[test]
    fn name_length_limits() {
        // 127 one-byte labels: wire length 255 with the root: the longest legal name.
        let mut w = Vec::new();
        for _ in 0..127 {
            w.extend_from_slice(&[1, b'x']);
        }
        let q = parse(&query(1, &w, 1, None)).expect("255-byte name parses");
        assert_eq!(q.labels, 127);
        // One byte more is not a name.
        let mut w2 = w.clone();
        w2.truncate(252);
        w2.extend_from_slice(&[2, b'y', b'z']);
        assert_eq!(parse(&query(1, &w2, 1, None)), Err(Reason::BadName));
        // 63-byte label is fine, 64 is a reserved type.
        let mut l63 = std::vec![63u8];
        l63.extend(std::iter::repeat_n(b'a', 63));
        assert!(parse(&query(1, &l63, 1, None)).is_ok());
        let q = parse(&query(1, &[], 2, None)).expect("root parses");
        assert_eq!(q.labels, 0);
    }

    #[test]
    fn most_specific_rule_wins() {
        let mut r = Rules::new();
        r.add(
            "example.com",
            Some((Action::Nxdomain, 1)),
            Some((Action::Nxdomain, 1)),
        );
        r.add(
            "ok.example.com",
            Some((Action::Pass, 2)),
            Some((Action::Pass, 2)),
        );
        r.add("exact.test", Some((Action::Refused, 3)), None);
        r.add("wild.test", None, Some((Action::Nodata, 4)));
        r.add(
            "in.a.label.test",
            Some((Action::Drop, 5)),
            Some((Action::Drop, 5)),
        );
        let id = |name: &str| r.decide(&wire(name), 1).map(|s| s.rule_id);
        assert_eq!(id("example.com"), Some(1));
        assert_eq!(id("www.EXAMPLE.com"), Some(1));
        assert_eq!(id("a.b.c.example.com"), Some(1));
        assert_eq!(id("ok.example.com"), Some(2));
        assert_eq!(id("x.ok.example.com"), Some(2));
        assert_eq!(id("badexample.com"), None);
        assert_eq!(id("com"), None);
        assert_eq!(id("exact.test"), Some(3));
        assert_eq!(id("www.exact.test"), None);
        assert_eq!(id("wild.test"), None);
        assert_eq!(id("a.wild.test"), Some(4));
        assert_eq!(r.decide(&[], 1), None, "the root never matches");
        // A label containing a dot byte is one label: "in.a" + "label.test" is not in.a.label.test.
        let mut tricky = Vec::new();
        tricky.extend_from_slice(&[4, b'i', b'n', b'.', b'a']);
        tricky.extend_from_slice(&wire("label.test"));
        assert_eq!(r.decide(&tricky, 1), None);
        assert_eq!(id("in.a.label.test"), Some(5));
    }

    #[test]
    fn qtype_restricted_rules_fall_through() {
        let mut r = Rules::new();
        r.add(
            "example.com",
            Some((Action::Nxdomain, 1)),
            Some((Action::Nxdomain, 1)),
        );
        let w = wire("www.example.com");
        let depth = 3;
        r.cfg.depth_mask[0] |= 1 << depth;
        r.map.insert(
            key_of_canonical(&test_secret(), &w),
            RuleSet {
                here: Slot {
                    rule_id: 9,
                    order_id: 0,
                    action: Action::Sinkhole as u8,
                    flags: 0,
                    qtypes: qtype_bit(1),
                    scope: 0,
                },
                below: Slot::default(),
            },
        );
        assert_eq!(r.decide(&w, 1).map(|s| s.rule_id), Some(9));
        assert_eq!(r.decide(&w, 15).map(|s| s.rule_id), Some(1));
    }

    /// The walk's suffix keys (what the matcher asks the rule map for) equal the keys user
    /// space computes directly, for random names and secrets: upper case, binary bytes, long
    /// labels, many short labels, names at the length limit.
    #[test]
    fn the_walk_asks_for_the_keys_user_space_stores() {
        use crate::key::tests::Rng;
        let mut r = Rng(23);
        let cfg = Config {
            depth_mask: [u64::MAX; 2],
            ..Config::default()
        };
        for n in 0..3000 {
            let mut name = Vec::new();
            let max = [8, 63, 2][n % 3];
            loop {
                let len = 1 + (r.next() % max) as usize;
                if name.len() + 1 + len > crate::key::MAX_CANONICAL_LEN {
                    break;
                }
                name.push(len as u8);
                name.extend((0..len).map(|_| match r.next() % 4 {
                    0 => r.next() as u8,
                    1 => b'A' + (r.next() % 26) as u8,
                    _ => b'a' + (r.next() % 26) as u8,
                }));
                if n % 5 != 0 && r.next().is_multiple_of(4) {
                    break;
                }
            }
            let k = r.secret();
            let msg = query(1, &name, 1, None);
            let (mut s, loaded) = load(&msg);
            let q = parse_query(&mut s, loaded, msg.len(), &k).expect("parses");
            let mut asked = Vec::new();
            find_rule(&cfg, &k, &mut s, &q, |key| {
                asked.push(*key);
                None
            });
            let mut want = Vec::new();
            let mut i = 0;
            while i < name.len() {
                want.push(key_of_canonical(&k, &name[i..]));
                i += 1 + name[i] as usize;
            }
            assert_eq!(asked, want, "name {name:02x?}");
        }
    }

    #[test]
    fn depth_mask_skips_lookups() {
        let mut r = Rules::new();
        r.add(
            "example.com",
            Some((Action::Nxdomain, 1)),
            Some((Action::Nxdomain, 1)),
        );
        let msg = query(7, &wire("a.b.c.d.e.f.example.com"), 1, None);
        let (mut s, n) = load(&msg);
        let k = test_secret();
        let q = parse_query(&mut s, n, msg.len(), &k).expect("parses");
        let mut lookups = 0;
        let hit = find_rule(&r.cfg, &k, &mut s, &q, |k| {
            lookups += 1;
            r.map.get(k).copied()
        });
        assert_eq!(hit.map(|s| s.rule_id), Some(1));
        assert_eq!(lookups, 1, "only the depth that holds rules is looked up");
    }
}
