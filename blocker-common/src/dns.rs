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
use crate::maps::{
    qtype_bit, Config, OrderGate, Reason, RuleSet, Slot, MODE_SHADOW, SLOT_BELOW, SLOT_HERE,
};

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
    pub opaque: [u64; 64],
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
            opaque: [0; 64],
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
/// Accepts what names one question the data plane can judge: QR=0, opcode QUERY, QDCOUNT=1,
/// class IN, and a QNAME of uncompressed labels. Anything else is the [`Reason`] to pass it
/// — but a compression pointer in the QNAME, which some resolvers follow, is the reason to
/// drop it ([`Reason::CompressedName`]).
/// What follows the question does not decide: the query's EDNS is a lone EDNS(0) OPT record
/// of version 0 right after it (no answer or authority records, ARCOUNT 1), and anything
/// else there — other records, other counts, another EDNS version, an OPT that runs past the
/// message — is ignored, the query judged without EDNS. Resolvers differ on such queries
/// (unbound refuses them; others resolve the question and ignore the rest), so passing them
/// would let a blocked name through wherever the resolver is lenient.
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
    if qd != 1 {
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
            // 0xC0.. is a compression pointer, 0x40 and 0x80 are reserved label types (which
            // resolvers refuse).
            if b > 63 {
                return Err(if b >= 0xc0 {
                    Reason::CompressedName
                } else {
                    Reason::BadName
                });
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
    // IN, or ANY (255): a recursive resolver may answer a class ANY query with IN data
    // (unbound's iterator collects the classes it has root hints for, that is IN), so it is
    // judged like IN. Other classes (CHAOS, HESIOD) name nothing a rule covers.
    if qclass != 1 && qclass != 255 {
        return Err(Reason::OtherClass);
    }

    let mut edns = false;
    let mut dnssec_ok = false;
    let o = q_end;
    // The OPT record: owner the root, TYPE OPT (41), version 0, its RDATA in the message.
    if an == 0
        && ns == 0
        && ar == 1
        && o + OPT_FIXED_LEN <= msg_len
        && o + OPT_FIXED_LEN <= loaded
        && m[o & MSG_MASK] == 0
        && be16(m, o + 1) == 41
        && m[(o + 6) & MSG_MASK] == 0
        && o + OPT_FIXED_LEN + be16(m, o + 9) as usize <= msg_len
    {
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

/// What the data plane knows of a query's client besides the query: its jurisdictions and
/// the time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Client {
    /// Jurisdiction bits of the client's address (`BLK_JURIS`); 0: in none.
    pub jurisdictions: u64,
    /// Now, in TAI nanoseconds (0 when no order has a validity window).
    pub now: u64,
}

/// A rule that matched a query: its counter, its order and its action (the order's override
/// applied). `action` 0 (`Action::None`): no rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hit {
    pub rule_id: u32,
    pub order_id: u16,
    pub action: u8,
    /// The rule's local data id (0: none).
    pub local: u16,
}

impl Hit {
    #[inline(always)]
    fn pack(rule_id: u32, order_id: u16, action: u8) -> u64 {
        rule_id as u64 | (order_id as u64) << 32 | (action as u64) << 48
    }

    #[inline(always)]
    fn unpack(v: u64, local: u64) -> Hit {
        Hit {
            rule_id: v as u32,
            order_id: (v >> 32) as u16,
            action: (v >> 48) as u8,
            local: local as u16,
        }
    }

    pub fn is_none(&self) -> bool {
        self.action == 0
    }
}

/// [`Decision::skipped`] bit: a matching rule's order was outside its validity window.
pub const SKIPPED_WINDOW: u8 = 1;
/// [`Decision::skipped`] bit: a matching rule's order is scoped to jurisdictions the client is
/// not in.
pub const SKIPPED_SCOPE: u8 = 2;

/// What [`decide`] found for one query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The rule in force (none: the query passes).
    pub hit: Hit,
    /// The rule of an order in shadow mode that would have decided had its order been
    /// enforced (it ranks before `hit`'s order); none otherwise. Counted, never applied.
    pub shadow: Hit,
    /// `SKIPPED_*` bits: why matching rules did not decide.
    pub skipped: u8,
}

impl Decision {
    /// The exit reason of a query no rule decided.
    #[inline(always)]
    pub fn pass_reason(&self) -> Reason {
        if !self.shadow.is_none() {
            Reason::Shadowed
        } else if self.skipped & SKIPPED_WINDOW != 0 {
            Reason::NotInForce
        } else if self.skipped & SKIPPED_SCOPE != 0 {
            Reason::OutOfScope
        } else {
            Reason::NoMatch
        }
    }
}

/// Scratch slots of the walk: the best rank and hit so far, enforced then shadow, and the
/// skipped bits.
const BEST: usize = 32;
const SKIPPED: usize = 36;
/// The best rules' local data ids, enforced then shadow.
const LOCAL: usize = 42;
/// The lowest rank a shadow order may have to compete in this walk: 0 in the first walk, the
/// rank after the last recorded shadow order's in the next ones (see [`decide_next_shadow`]).
const SHADOW_FROM: usize = 30;
/// The first walk's shadow hit (hit, local data id), which [`decide_end`] reports once further
/// walks have looked past it.
const FIRST_SHADOW: usize = 24;

/// Most shadow orders one query records: the first ones by precedence ahead of the deciding
/// order (each after the first costs the XDP program one more walk of the name, and shadow
/// orders are trials, few at a time).
pub const SHADOW_MAX: usize = 4;

#[inline(always)]
fn get(s: &Scratch, i: usize) -> u64 {
    // SAFETY: a valid, aligned reference into scratch memory.
    unsafe { core::ptr::read_volatile(&s.opaque[i & 63]) }
}

#[inline(always)]
fn put(s: &mut Scratch, i: usize, v: u64) {
    // SAFETY: a valid, aligned, exclusive reference into scratch memory.
    unsafe { core::ptr::write_volatile(&mut s.opaque[i & 63], v) }
}

/// Decides `q` (parsed under the same `secret`) for `client`: the rule in force is that of the
/// order of lowest rank, among the orders in force for this client (inside their validity
/// window, and scoped to none of the client's jurisdictions or to one of them), that has a
/// rule for the query; within that order, its most specific rule. An order in shadow mode is
/// skipped (and reported in [`Decision::shadow`] if it would have decided). `lookup` returns
/// the rules at a name (the copy of its [`crate::RuleValue`] in force); `order` an order's
/// gate (the copy in force, see [`crate::Gates`]).
///
/// Suffixes are tried from the whole name (most specific) to the last label, skipping depths
/// at which no rule exists (`Config::depth_mask`). At the whole name the slots for the name
/// itself apply (exact and subtree rules), at a proper suffix the slots for names below it
/// (subtree and `*.` rules). A slot whose qtype set does not hold the query's type does not
/// match. The root has no labels and is never matched.
#[inline(always)]
pub fn decide<'o, F, O>(
    cfg: &Config,
    secret: &KeySecret,
    s: &mut Scratch,
    q: &Query,
    client: &Client,
    lookup: F,
    order: O,
) -> Decision
where
    F: FnMut(&RuleKey) -> Option<RuleSet>,
    O: FnMut(u16) -> &'o OrderGate,
{
    decide_filtered(cfg, secret, s, q, client, |_| true, lookup, order)
}

/// 1 if `x` is not zero, else 0, without a branch: the value goes through scratch memory
/// between the two halves, so the compiler cannot fold it back into a comparison (a
/// comparison is a branch in BPF, and each branch is a path the verifier walks).
#[inline(always)]
fn nonzero(s: &mut Scratch, x: u64) -> u64 {
    launder(&mut s.opaque[40], x | x.wrapping_neg()) >> 63
}

/// 1 if `a < b` (unsigned), else 0, without a branch (Hacker's Delight 2-12).
#[inline(always)]
fn below(s: &mut Scratch, a: u64, b: u64) -> u64 {
    launder(&mut s.opaque[41], (!a & b) | (!(a ^ b) & a.wrapping_sub(b))) >> 63
}

/// One slot at one suffix: does it match, and is its order's rule better than the best so far?
/// Straight-line arithmetic but for the order lookup: this runs for every slot at every
/// suffix, and the verifier walks it that many times.
/// `jurisdictions` gives the client's jurisdictions; it is asked only for a rule whose order
/// is scoped (the XDP program looks the client up then, not for every query).
#[inline(always)]
fn consider<'o, O, J>(
    slot: &Slot,
    pos: u8,
    qbit: u16,
    client: &Client,
    s: &mut Scratch,
    order: &mut O,
    jurisdictions: &mut J,
) where
    O: FnMut(u16) -> &'o OrderGate,
    J: FnMut() -> u64,
{
    let o = order(slot.order_id);
    let client_jurisdictions = if o.jurisdictions != 0 {
        jurisdictions()
    } else {
        0
    };
    let matches = nonzero(s, slot.action as u64)
        & nonzero(s, (slot.flags & pos) as u64)
        & nonzero(s, (slot.qtypes & qbit) as u64);
    let in_window = (1 - below(s, client.now, o.valid_from)) & below(s, client.now, o.valid_until);
    let in_scope =
        (1 - nonzero(s, o.jurisdictions)) | nonzero(s, o.jurisdictions & client_jurisdictions);
    let skipped = ((matches & (1 - in_window)) * SKIPPED_WINDOW as u64)
        | ((matches & in_window & (1 - in_scope)) * SKIPPED_SCOPE as u64);
    put(s, SKIPPED, get(s, SKIPPED) | skipped);
    let override_action = o.override_action as u64;
    let keep = 1 - nonzero(s, override_action);
    let action = override_action | (slot.action as u64 * keep);
    // Enforced orders compete at BEST, shadow orders at BEST + 2.
    let shadow = (o.mode & MODE_SHADOW) as u64;
    let at = BEST + 2 * shadow as usize;
    let rank = o.rank as u64;
    let best = get(s, at);
    // A shadow order ranked before SHADOW_FROM was recorded by an earlier walk: absent now.
    // (Enforced orders are held to it too, which changes nothing: the enforced best, kept
    // from the first walk, ranks before every enforced rule a later walk could take.)
    // Ranks and SHADOW_FROM are far below 2^63: the sign of the difference is the comparison,
    // without a branch (nor `below`'s laundering, which this runs for every slot).
    let present = 1 ^ (rank.wrapping_sub(get(s, SHADOW_FROM)) >> 63);
    // Strictly lower: the first (most specific) rule of an order keeps its place.
    let take = matches & in_window & in_scope & present & below(s, rank, best);
    let mask = take.wrapping_neg();
    let hit = Hit::pack(slot.rule_id, slot.order_id, action as u8);
    put(s, at, (rank & mask) | (best & !mask));
    put(s, at + 1, (hit & mask) | (get(s, at + 1) & !mask));
    let local_at = LOCAL + (o.mode & MODE_SHADOW) as usize;
    put(
        s,
        local_at,
        (slot.local as u64 & mask) | (get(s, local_at) & !mask),
    );
}

/// [`decide`] with a pre-filter: a key for which `may_hold` is false is not looked up
/// (the key filter, see [`crate::filter`]): [`decide_start`], [`decide_step`] for each label
/// from the first, [`decide_end`]. The XDP program runs the steps as a `bpf_loop` callback,
/// which the verifier checks once instead of once per label.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn decide_filtered<'o, F, G, O>(
    cfg: &Config,
    secret: &KeySecret,
    s: &mut Scratch,
    q: &Query,
    client: &Client,
    mut may_hold: G,
    mut lookup: F,
    mut order: O,
) -> Decision
where
    F: FnMut(&RuleKey) -> Option<RuleSet>,
    G: FnMut(&RuleKey) -> bool,
    O: FnMut(u16) -> &'o OrderGate,
{
    decide_start(s);
    walk(
        cfg,
        secret,
        s,
        q,
        client,
        &mut may_hold,
        &mut lookup,
        &mut order,
    );
    decide_end(s)
}

/// One walk: [`decide_step`] for each label from the first (on the host; the XDP program
/// runs the steps as a `bpf_loop`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn walk<'o, F, G, O>(
    cfg: &Config,
    secret: &KeySecret,
    s: &mut Scratch,
    q: &Query,
    client: &Client,
    may_hold: &mut G,
    lookup: &mut F,
    order: &mut O,
) where
    F: FnMut(&RuleKey) -> Option<RuleSet>,
    G: FnMut(&RuleKey) -> bool,
    O: FnMut(u16) -> &'o OrderGate,
{
    let mut jurisdictions = || client.jurisdictions;
    for k in 0..q.labels.min(MAX_LABELS) {
        decide_step(
            k,
            cfg,
            secret,
            s,
            q,
            client,
            may_hold,
            lookup,
            order,
            &mut jurisdictions,
        );
    }
}

/// [`decide`], and the hit of every order in shadow mode ahead of the deciding one, in
/// precedence order (at most [`SHADOW_MAX`]; the rest none): what the XDP program records for
/// the query, one walk of the name per shadow order.
pub fn decide_with_shadows<'o, F, O>(
    cfg: &Config,
    secret: &KeySecret,
    s: &mut Scratch,
    q: &Query,
    client: &Client,
    mut lookup: F,
    mut order: O,
) -> (Decision, [Hit; SHADOW_MAX])
where
    F: FnMut(&RuleKey) -> Option<RuleSet>,
    O: FnMut(u16) -> &'o OrderGate,
{
    let mut all = |_: &RuleKey| true;
    let mut shadows = [Hit::default(); SHADOW_MAX];
    decide_start(s);
    walk(cfg, secret, s, q, client, &mut all, &mut lookup, &mut order);
    for slot in shadows.iter_mut() {
        let h = decide_next_shadow(s);
        if h.is_none() {
            break;
        }
        *slot = h;
        walk(cfg, secret, s, q, client, &mut all, &mut lookup, &mut order);
    }
    (decide_end(s), shadows)
}

/// What each step of a walk needs besides the maps and the scratch memory: the query, the
/// client, the epoch and the key filter's probe. The XDP program keeps it in a
/// per-CPU map value of its own across its `bpf_loop` (whose context would have to be on the
/// small BPF stack).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WalkState {
    pub q: Query,
    pub client: Client,
    /// `Config::epoch` as the packet read it (once).
    pub epoch: u64,
    pub probe: crate::filter::Probe,
    /// Where the layers of the frame start (the XDP program's own `Frame`, as integers).
    pub frame: [u64; 10],
    /// The client's address, as `BLK_JURIS` is keyed (see `crate::juris_addr`), for the
    /// lookup of its jurisdictions when a scoped rule matches; `client_addr_ok` 0 when it could
    /// not be read (the client is then in no jurisdiction).
    pub client_addr: [u8; 16],
    pub client_addr_ok: u64,
    /// The labels whose suffix is at a depth that holds rules (`Config::depth_mask`), most
    /// specific first: the steps of the walk (the others cannot match).
    pub steps: [u8; MAX_LABELS],
}

/// Starts a walk: no rule yet.
#[inline(always)]
pub fn decide_start(s: &mut Scratch) {
    put(s, BEST, u64::MAX);
    put(s, BEST + 1, 0);
    put(s, BEST + 2, u64::MAX);
    put(s, BEST + 3, 0);
    put(s, SKIPPED, 0);
    put(s, LOCAL, 0);
    put(s, LOCAL + 1, 0);
    put(s, SHADOW_FROM, 0);
}

/// After a walk: the shadow order's hit it found ahead of the deciding order (none: no
/// further shadow order to record), and the walk made ready to run again as if that order
/// were absent — only shadow orders ranked after it compete; the enforced decision, already
/// the best, stays. A shadow order records what it would have done and the search goes on:
/// walking again until this returns none (or [`SHADOW_MAX`] hits) records every shadow order
/// ahead of the decider.
#[inline(always)]
pub fn decide_next_shadow(s: &mut Scratch) -> Hit {
    let rank = get(s, BEST + 2);
    if rank >= get(s, BEST) {
        return Hit::default();
    }
    let hit = Hit::unpack(get(s, BEST + 3), get(s, LOCAL + 1));
    if get(s, SHADOW_FROM) == 0 {
        put(s, FIRST_SHADOW, get(s, BEST + 3));
        put(s, FIRST_SHADOW + 1, get(s, LOCAL + 1));
    }
    put(s, SHADOW_FROM, rank + 1);
    put(s, BEST + 2, u64::MAX);
    put(s, BEST + 3, 0);
    put(s, LOCAL + 1, 0);
    hit
}

/// One step of the walk: the suffix that starts at label `k` (0: the whole name), most
/// specific first. The best rule so far is kept in scratch memory.
#[allow(clippy::too_many_arguments)]
///
/// `jurisdictions` gives the client's jurisdictions (`client.jurisdictions` is not read): it is
/// called only when a matching rule's order is scoped.
#[inline(always)]
pub fn decide_step<'o, F, G, O, J>(
    k: usize,
    cfg: &Config,
    secret: &KeySecret,
    s: &mut Scratch,
    q: &Query,
    client: &Client,
    may_hold: &mut G,
    lookup: &mut F,
    order: &mut O,
    jurisdictions: &mut J,
) where
    F: FnMut(&RuleKey) -> Option<RuleSet>,
    G: FnMut(&RuleKey) -> bool,
    O: FnMut(u16) -> &'o OrderGate,
    J: FnMut() -> u64,
{
    let k = k & (MAX_LABELS - 1);
    if k >= q.labels {
        return;
    }
    let qbit = qtype_bit(q.qtype);
    let depth = launder(&mut s.opaque[11], (q.labels - k) as u64) as usize;
    // A key costs two modular multiplies: only at depths that hold rules. Decisions are
    // laundered, so the verifier sees the same few paths whatever the depth test and the
    // filter computed.
    if launder(&mut s.opaque[7], cfg.has_depth(depth) as u64) != 0 {
        let start = s.starts[k] as usize;
        let key = suffix_key(
            secret,
            q.name_hash,
            s.prefix[k],
            q.chunks.wrapping_sub(start),
        );
        if launder(&mut s.opaque[13], may_hold(&key) as u64) != 0 {
            if let Some(set) = lookup(&key) {
                // The name itself at the first label, the names under a suffix after it.
                let pos = if k == 0 { SLOT_HERE } else { SLOT_BELOW };
                let pos = launder(&mut s.opaque[37], pos as u64) as u8;
                for slot in &set.slots {
                    // Used slots are packed at the front.
                    if slot.action == 0 {
                        break;
                    }
                    consider(slot, pos, qbit, client, s, order, jurisdictions);
                }
            }
        }
    }
}

/// What the walk found (its shadow hit: the first walk's, once [`decide_next_shadow`] has
/// moved past it).
#[inline(always)]
pub fn decide_end(s: &mut Scratch) -> Decision {
    let shadow = if get(s, SHADOW_FROM) != 0 {
        Hit::unpack(get(s, FIRST_SHADOW), get(s, FIRST_SHADOW + 1))
    } else if get(s, BEST + 2) < get(s, BEST) {
        Hit::unpack(get(s, BEST + 3), get(s, LOCAL + 1))
    } else {
        Hit::default()
    };
    Decision {
        hit: Hit::unpack(get(s, BEST + 1), get(s, LOCAL)),
        shadow,
        skipped: get(s, SKIPPED) as u8,
    }
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
        orders: Vec<OrderGate>,
        client: Client,
    }

    /// A slot of order 0.
    fn slot(id: u32, action: Action, flags: u8) -> Slot {
        Slot {
            rule_id: id,
            order_id: 0,
            action: action as u8,
            flags,
            qtypes: QTYPES_ALL,
            local: 0,
        }
    }

    impl Rules {
        fn new() -> Rules {
            Rules {
                cfg: Config::default(),
                map: HashMap::new(),
                orders: (0..8)
                    .map(|i| OrderGate {
                        rank: i,
                        ..OrderGate::OPEN
                    })
                    .collect(),
                client: Client::default(),
            }
        }
        /// Adds a slot at `name` (after those already there).
        fn put(&mut self, name: &str, slot: Slot) {
            let w = wire(name);
            let depth = name.split('.').filter(|l| !l.is_empty()).count();
            self.cfg.depth_mask[depth >> 6] |= 1 << (depth & 63);
            let set = self
                .map
                .entry(key_of_canonical(&test_secret(), &w))
                .or_default();
            let free = set.slots.iter().position(Slot::is_empty).expect("room");
            set.slots[free] = slot;
        }
        fn add(&mut self, name: &str, here: Option<(Action, u32)>, below: Option<(Action, u32)>) {
            match (here, below) {
                (Some(h), Some(b)) if h == b => {
                    self.put(name, slot(h.1, h.0, SLOT_HERE | SLOT_BELOW))
                }
                _ => {
                    if let Some((a, id)) = here {
                        self.put(name, slot(id, a, SLOT_HERE));
                    }
                    if let Some((a, id)) = below {
                        self.put(name, slot(id, a, SLOT_BELOW));
                    }
                }
            }
        }
        fn decision(&self, qname: &[u8], qtype: u16) -> Decision {
            self.decision_with_shadows(qname, qtype, false).0
        }
        /// `decide` (one walk), or `decide_with_shadows` when `shadows`.
        fn decision_with_shadows(
            &self,
            qname: &[u8],
            qtype: u16,
            shadows: bool,
        ) -> (Decision, [Hit; SHADOW_MAX]) {
            let msg = query(7, qname, qtype, None);
            let (mut s, n) = load(&msg);
            let k = test_secret();
            let q = parse_query(&mut s, n, msg.len(), &k).expect("query parses");
            let lookup = |k: &RuleKey| self.map.get(k).copied();
            let order = |o: u16| &self.orders[o as usize];
            if shadows {
                decide_with_shadows(&self.cfg, &k, &mut s, &q, &self.client, lookup, order)
            } else {
                let d = decide(&self.cfg, &k, &mut s, &q, &self.client, lookup, order);
                (d, [Hit::default(); SHADOW_MAX])
            }
        }
        fn decide(&self, qname: &[u8], qtype: u16) -> Option<Hit> {
            let d = self.decision(qname, qtype);
            (!d.hit.is_none()).then_some(d.hit)
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
        let mut none = ok.clone();
        none[5] = 0;
        assert_eq!(parse(&none), Err(Reason::NotQuery));
        // A compression pointer in the QNAME: after labels, first, or after a long name.
        assert_eq!(
            parse(&query(1, &[1, b'a', 0xc0, 0x0c], 1, None)),
            Err(Reason::CompressedName)
        );
        assert_eq!(
            parse(&query(1, &[0xc0, 0x04], 1, None)),
            Err(Reason::CompressedName)
        );
        let mut long = [63u8; 64 * 4 + 2];
        long[64 * 4] = 0xc0;
        long[64 * 4 + 1] = 0x04;
        assert_eq!(
            parse(&query(1, &long, 1, None)),
            Err(Reason::CompressedName)
        );
        assert!(Reason::CompressedName.drops_unjudged() && !Reason::BadName.drops_unjudged());
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
        // Class ANY is judged like IN.
        let mut any = ok.clone();
        any[n - 1] = 255;
        assert_eq!(parse(&any).map(|q| q.qclass), Ok(255));
        assert_eq!(parse(&ok[..11]), Err(Reason::Malformed));
    }

    /// What follows the question never keeps it from being judged: only a lone OPT record of
    /// version 0 is the query's EDNS, anything else is ignored.
    #[test]
    fn judges_the_question_whatever_follows_it() {
        let o = 12 + wire("a.test").len() + 1 + 4;
        let no_edns = |m: &[u8], what: &str| {
            let q = parse(m).unwrap_or_else(|r| panic!("{what}: {r:?}"));
            assert!(!q.edns && !q.dnssec_ok, "{what}: no EDNS");
            assert_eq!((q.labels, q.qtype, q.q_end), (2, 1, o), "{what}");
        };
        // ARCOUNT=1 but the record is not OPT (e.g. TSIG).
        let mut tsig = query(1, &wire("a.test"), 1, Some((true, &[])));
        tsig[o + 2] = 250;
        no_edns(&tsig, "TSIG");
        // OPT whose RDLENGTH runs past the message.
        let mut long = query(1, &wire("a.test"), 1, Some((true, &[0, 10, 0, 0])));
        long.truncate(long.len() - 1);
        no_edns(&long, "OPT past the end");
        // EDNS version 1.
        let mut v1 = query(1, &wire("a.test"), 1, Some((true, &[])));
        v1[o + 6] = 1;
        no_edns(&v1, "EDNS version 1");
        // A valid OPT, but counted as one of two additional records, or behind an answer
        // count.
        let mut two = query(1, &wire("a.test"), 1, Some((true, &[])));
        two[11] = 2;
        no_edns(&two, "ARCOUNT 2");
        let mut an = query(1, &wire("a.test"), 1, Some((true, &[])));
        an[7] = 1;
        no_edns(&an, "ANCOUNT 1");
        let mut ns = query(1, &wire("a.test"), 1, None);
        ns[9] = 3;
        no_edns(&ns, "NSCOUNT 3");
        // ARCOUNT=1 and nothing there.
        let mut none = query(1, &wire("a.test"), 1, None);
        none[11] = 1;
        no_edns(&none, "ARCOUNT 1, no record");
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
        r.put(
            "www.example.com",
            Slot {
                qtypes: qtype_bit(1),
                ..slot(9, Action::Sinkhole, SLOT_HERE)
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
            decide(
                &cfg,
                &k,
                &mut s,
                &q,
                &Client::default(),
                |key| {
                    asked.push(*key);
                    None
                },
                |_| &OrderGate::OPEN,
            );
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
        let d = decide(
            &r.cfg,
            &k,
            &mut s,
            &q,
            &r.client,
            |k| {
                lookups += 1;
                r.map.get(k).copied()
            },
            |o| &r.orders[o as usize],
        );
        assert_eq!(d.hit.rule_id, 1);
        assert_eq!(lookups, 1, "only the depth that holds rules is looked up");
    }

    /// A slot of `order`.
    fn oslot(order: u16, id: u32, action: Action, flags: u8) -> Slot {
        Slot {
            order_id: order,
            ..slot(id, action, flags)
        }
    }

    const HB: u8 = SLOT_HERE | SLOT_BELOW;

    #[test]
    fn the_first_order_by_rank_decides_with_its_most_specific_rule() {
        let mut r = Rules::new();
        // Order 1 blocks the whole domain, order 0 (rank 0) only a subdomain; order 2 allows
        // a deeper name.
        r.put("example.com", oslot(1, 10, Action::Nxdomain, HB));
        r.put("a.example.com", oslot(0, 20, Action::Refused, HB));
        r.put("ok.a.example.com", oslot(2, 30, Action::Pass, HB));
        let id = |r: &Rules, name: &str| r.decide(&wire(name), 1).map(|h| (h.order_id, h.rule_id));
        assert_eq!(id(&r, "www.example.com"), Some((1, 10)));
        assert_eq!(id(&r, "x.a.example.com"), Some((0, 20)));
        // The allow rule is more specific, but its order ranks last: order 0 decides.
        assert_eq!(id(&r, "ok.a.example.com"), Some((0, 20)));
        // Rank the allow order first and it decides, there and below.
        r.orders[2].rank = 0;
        r.orders[0].rank = 2;
        assert_eq!(id(&r, "x.ok.a.example.com"), Some((2, 30)));
        assert_eq!(
            r.decide(&wire("ok.a.example.com"), 1).map(|h| h.action),
            Some(Action::Pass as u8)
        );
        // Two rules of one order: the most specific, whatever a less specific one does.
        r.put("b.example.com", oslot(1, 11, Action::Drop, HB));
        assert_eq!(id(&r, "www.b.example.com"), Some((1, 11)));
    }

    #[test]
    fn windows_scopes_shadow_and_override() {
        let mut r = Rules::new();
        r.put("example.com", oslot(0, 1, Action::Nxdomain, HB));
        r.put("example.com", oslot(1, 2, Action::Refused, HB));
        let d = |r: &Rules| r.decision(&wire("www.example.com"), 1);
        assert_eq!((d(&r).hit.order_id, d(&r).hit.rule_id), (0, 1));
        // Order 0 not yet in force: order 1 decides; the skip is recorded.
        r.orders[0].valid_from = 1000;
        r.client.now = 999;
        assert_eq!((d(&r).hit.order_id, d(&r).skipped), (1, SKIPPED_WINDOW));
        r.client.now = 1000;
        assert_eq!((d(&r).hit.order_id, d(&r).skipped), (0, 0));
        r.orders[0].valid_until = 2000;
        r.client.now = 2000;
        assert_eq!(d(&r).hit.order_id, 1, "the end is exclusive");
        r.client.now = 1500;
        // Scoped to jurisdiction 3: a client in 3 gets order 0, one in 4 gets order 1.
        r.orders[0].jurisdictions = 1 << 3;
        r.client.jurisdictions = 1 << 3 | 1;
        assert_eq!(d(&r).hit.order_id, 0);
        r.client.jurisdictions = 1 << 4;
        assert_eq!((d(&r).hit.order_id, d(&r).skipped), (1, SKIPPED_SCOPE));
        // Order 1 scoped elsewhere too: nothing decides, and the reason says why.
        r.orders[1].jurisdictions = 1 << 5;
        assert!(d(&r).hit.is_none());
        assert_eq!(d(&r).pass_reason(), Reason::OutOfScope);
        r.client.now = 3000;
        assert_eq!(
            d(&r).pass_reason(),
            Reason::NotInForce,
            "a window skip is named first"
        );
        // Order 1 everywhere, in shadow mode and ranked first: it is reported, not applied.
        r.orders[1].jurisdictions = 0;
        r.orders[1].mode = MODE_SHADOW;
        r.orders[1].rank = 0;
        r.orders[0].rank = 1;
        assert!(d(&r).hit.is_none());
        assert_eq!((d(&r).shadow.order_id, d(&r).shadow.rule_id), (1, 2));
        assert_eq!(d(&r).pass_reason(), Reason::Shadowed);
        // With order 0 back in force and ranked before it, the shadow order would not have
        // decided: not reported.
        r.client.now = 1500;
        r.client.jurisdictions = 1 << 3;
        r.orders[1].rank = 2;
        assert_eq!((d(&r).hit.order_id, d(&r).shadow), (0, Hit::default()));
        // Ranked before order 0, it would have: reported, and order 0 still decides.
        r.orders[1].rank = 0;
        assert_eq!((d(&r).hit.order_id, d(&r).shadow.order_id), (0, 1));
        assert_eq!(d(&r).shadow.action, Action::Refused as u8);
        // The override replaces the rule's action.
        r.orders[0].override_action = Action::Drop as u8;
        assert_eq!(d(&r).hit.action, Action::Drop as u8);
    }

    #[test]
    fn every_shadow_order_ahead_of_the_decider_is_recorded_as_if_the_others_were_absent() {
        // Six orders on one name (every slot), rules at two depths; orders 1, 2, 4 and 5 in
        // shadow mode.
        let mut r = Rules::new();
        for o in 0..6u16 {
            r.put(
                "example.com",
                oslot(o, 100 + o as u32, Action::Nxdomain, HB),
            );
            r.put(
                "www.example.com",
                oslot(o, 200 + o as u32, Action::Refused, HB),
            );
        }
        let shadow = [1usize, 2, 4, 5];
        for o in shadow {
            r.orders[o].mode = MODE_SHADOW;
        }
        let run = |r: &Rules, name: &str| r.decision_with_shadows(&wire(name), 1, true);
        // The model: the shadow orders ranked before the first enforced order with a rule,
        // in rank order, each with its most specific rule; at most SHADOW_MAX.
        let model = |r: &Rules, deep: bool| -> Vec<(u16, u32)> {
            let mut by_rank: Vec<usize> = (0..6).collect();
            by_rank.sort_by_key(|&o| r.orders[o].rank);
            by_rank
                .into_iter()
                .take_while(|&o| r.orders[o].mode & MODE_SHADOW != 0)
                .map(|o| (o as u16, if deep { 200 } else { 100 } + o as u32))
                .take(SHADOW_MAX)
                .collect()
        };
        let got = |d: &[Hit; SHADOW_MAX]| -> Vec<(u16, u32)> {
            d.iter()
                .take_while(|h| !h.is_none())
                .map(|h| (h.order_id, h.rule_id))
                .collect()
        };
        // Order 0 (rank 0) enforced decides first: no shadow order ahead of it.
        let (d, sh) = run(&r, "www.example.com");
        assert_eq!((d.hit.order_id, d.hit.rule_id), (0, 200));
        assert_eq!(got(&sh), model(&r, true));
        assert!(got(&sh).is_empty());
        // Rank order 0 last: shadow orders 1 and 2 are ahead of order 3, which decides.
        r.orders[0].rank = 9;
        let (d, sh) = run(&r, "x.www.example.com");
        assert_eq!((d.hit.order_id, d.hit.rule_id), (3, 203));
        assert_eq!(got(&sh), vec![(1, 201), (2, 202)]);
        assert_eq!(got(&sh), model(&r, true));
        assert_eq!((d.shadow.order_id, d.pass_reason()), (1, Reason::Shadowed));
        // Order 3 in shadow mode too: five shadow orders ahead of order 0, SHADOW_MAX recorded.
        r.orders[3].mode = MODE_SHADOW;
        let (d, sh) = run(&r, "example.com");
        assert_eq!((d.hit.order_id, d.hit.rule_id), (0, 100));
        assert_eq!(got(&sh), vec![(1, 101), (2, 102), (3, 103), (4, 104)]);
        assert_eq!(got(&sh), model(&r, false));
        // Every order in shadow mode: nothing decides, the first SHADOW_MAX are recorded.
        r.orders[0].mode = MODE_SHADOW;
        let (d, sh) = run(&r, "www.example.com");
        assert!(d.hit.is_none());
        assert_eq!(d.pass_reason(), Reason::Shadowed);
        assert_eq!(got(&sh).len(), SHADOW_MAX);
        // A shadow order out of its window is skipped, not recorded; the next one is.
        r.orders[2].valid_until = 1;
        r.client.now = 5;
        let (_, sh) = run(&r, "www.example.com");
        assert_eq!(got(&sh), vec![(1, 201), (3, 203), (4, 204), (5, 205)]);
        // decide() (one walk) reports the first of them, as before.
        assert_eq!(r.decision(&wire("www.example.com"), 1).shadow.order_id, 1);
    }

    #[test]
    fn an_exact_rule_comes_before_the_subtree_rule_of_its_order_for_its_types_only() {
        let mut r = Rules::new();
        r.put(
            "example.com",
            Slot {
                qtypes: qtype_bit(1),
                ..oslot(0, 1, Action::Sinkhole, SLOT_HERE)
            },
        );
        r.put("example.com", oslot(0, 2, Action::Nxdomain, HB));
        assert_eq!(
            r.decide(&wire("example.com"), 1).map(|h| h.rule_id),
            Some(1)
        );
        assert_eq!(
            r.decide(&wire("example.com"), 28).map(|h| h.rule_id),
            Some(2)
        );
        assert_eq!(
            r.decide(&wire("www.example.com"), 1).map(|h| h.rule_id),
            Some(2)
        );
    }
}
