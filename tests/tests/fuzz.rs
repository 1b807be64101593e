//! Differential fuzzing of the real XDP program. Frames of every shape the parser handles are
//! generated, then mutated (truncations, bit flips, label-length lies, pointers, wrong counts,
//! responses, other opcodes, VLAN stacks, IPv6 extension chains, IP/UDP length lies, padding),
//! and each one is run through BPF_PROG_TEST_RUN. Every verdict (pass, drop, answer) is checked
//! against an independent oracle (`blocker_tests::oracle`: the rules as text, matched label by
//! label as the README defines, every answer checked field by field with hickory-proto), which
//! shares no code with blocker-common; and, byte for byte, against the shared blocker-common
//! code run on the host with the kernel's own maps (which shows a kernel-only difference, such
//! as a name the key filter wrongly skipped).
//!
//! `BLOCKER_FUZZ_N` sets the number of frames (default 100,000; `cargo xtask fuzz` runs ten
//! million) and `BLOCKER_FUZZ_SEED` the seed.

use std::os::fd::AsFd;

use blocker_tests::{
    env::Blocker,
    oracle::{self, Match, Rule, Settings, Verdict},
    packet::{self, Frame, Ip, Tcp},
    reference::reference,
    testrun::{action_name, test_run, XDP_DROP, XDP_PASS, XDP_TX},
};
use hickory_proto::op::{Message, MessageType, OpCode};

/// 64 bytes, not ASCII: answers with little room cut it, between characters.
const ORDER_TEXT: &str = "Ordinanza n° 1/2026 — Tribunale di Milano «pirateria», n°2";

/// The rules the fuzzer loads, as text for the independent oracle (the same rules the CLI
/// commands below add).
fn rules_as_text() -> Vec<Rule> {
    // Precedence: "allow" (priority 10) first, then Court-F, then "late-allow" (both the
    // default priority; Court-F is older).
    let rule = |name, kind, action, ede_text, precedence| Rule {
        name,
        kind,
        action,
        qtypes: vec![],
        ede_text,
        precedence,
    };
    vec![
        rule("blocked.test", Match::Subtree, "nxdomain", ORDER_TEXT, 1),
        rule("ok.blocked.test", Match::Subtree, "pass", "", 0),
        rule("late.blocked.test", Match::Subtree, "pass", "", 2),
        rule("drop.test", Match::Subtree, "drop", ORDER_TEXT, 1),
        rule("exact.test", Match::Exact, "refused", ORDER_TEXT, 1),
        rule("sink.test", Match::Subtree, "sinkhole", ORDER_TEXT, 1),
        rule("tc.test", Match::Subtree, "tc", ORDER_TEXT, 1),
    ]
}

/// xorshift64*: small, seedable, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const SUFFIXES: &[&str] = &[
    "blocked.test",
    "late.blocked.test",
    "drop.test",
    "ok.blocked.test",
    "allowed.example",
    "exact.test",
    "sink.test",
    "tc.test",
];

/// A query message with a random name under one of the interesting suffixes.
fn query(r: &mut Rng) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&(r.next() as u16).to_be_bytes());
    m.push(if r.chance(2) { 0x01 } else { 0x00 } | if r.chance(8) { 0x02 } else { 0 });
    m.push(if r.chance(4) { 0x10 } else { 0 } | if r.chance(4) { 0x20 } else { 0 });
    let edns = r.chance(2);
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, edns as u8]);
    for _ in 0..r.below(4) {
        let max = if r.chance(10) { 63 } else { 12 };
        let len = 1 + r.below(max);
        m.push(len as u8);
        for _ in 0..len {
            let b = if r.chance(20) {
                r.next() as u8
            } else {
                b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"[r.below(64)]
            };
            m.push(b);
        }
    }
    for l in SUFFIXES[r.below(SUFFIXES.len())].split('.') {
        m.push(l.len() as u8);
        for c in l.bytes() {
            m.push(if r.chance(3) {
                c.to_ascii_uppercase()
            } else {
                c
            });
        }
    }
    m.push(0);
    let qtype: u16 = [1, 28, 15, 16, 65, 255, 6, 2][r.below(8)];
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    if edns {
        let mut opts = Vec::new();
        for _ in 0..r.below(3) {
            let code: u16 = [10, 12, 8, 15, 0xfde9][r.below(5)];
            let len = r.below(40);
            opts.extend_from_slice(&code.to_be_bytes());
            opts.extend_from_slice(&(len as u16).to_be_bytes());
            opts.extend((0..len).map(|_| r.next() as u8));
        }
        m.push(0);
        m.extend_from_slice(&41u16.to_be_bytes());
        m.extend_from_slice(&[(r.next() as u8) | 2, r.next() as u8]);
        m.extend_from_slice(&[0, 0, if r.chance(2) { 0x80 } else { 0 }, 0]);
        m.extend_from_slice(&(opts.len() as u16).to_be_bytes());
        m.extend_from_slice(&opts);
    }
    m
}

/// Where the model says a connection's stream stands, for the generator: (last, next) of the
/// connection from the default addresses over IPv6 (`true`) or IPv4 and a source port.
type Hint<'a> = &'a dyn Fn(bool, u16) -> Option<(u32, u32)>;

fn frame(r: &mut Rng, hint: Hint) -> Vec<u8> {
    let payload = query(r);
    let mut f = if r.chance(3) {
        Frame::v6(payload)
    } else {
        Frame::v4(payload)
    };
    // Up to three tags (a third, past what the program walks, is dropped); VLAN ID 0, the
    // priority tag Linux strips, one time in four.
    let tags = if r.chance(20) { 3 } else { r.below(3) };
    for _ in 0..tags {
        let vid = if r.chance(4) {
            0
        } else {
            r.next() as u16 & 0x0fff
        };
        f.vlans.push(([0x8100, 0x88a8][r.below(2)], vid));
    }
    match &mut f.ip {
        Ip::V4 { options, frag, .. } => {
            if r.chance(4) {
                *options = (0..4 * (1 + r.below(10)))
                    .map(|_| [1u8, 0, 7, 68][r.below(4)])
                    .collect();
            }
            if r.chance(20) {
                *frag = r.next() as u16 & 0x3fff;
            }
        }
        Ip::V6 { ext, .. } => {
            for _ in 0..r.below(3) {
                let kind = [0u8, 43, 60, 44][r.below(4)];
                let units = r.below(3);
                let mut b = vec![0u8; 8 * (units + 1)];
                b[1] = units as u8;
                if kind == 43 {
                    b[3] = 0; // segments left
                }
                ext.push((kind, b));
            }
        }
    }
    if r.chance(10) {
        f.dport = [53, 5353, 80][r.below(3)];
    }
    if r.chance(20) {
        f.proto = [6, 1, 17][r.below(3)];
    }
    if r.chance(8) {
        f.padding = (0..r.below(40)).map(|_| r.next() as u8).collect();
    }
    if r.chance(15) {
        // Sometimes 0: over IPv6, the rest of the packet.
        f.udp_len = Some(if r.chance(4) {
            0
        } else {
            r.next() as u16 % 600
        });
    }
    if r.chance(4) {
        // DNS over TCP: a data segment of a connection, sometimes with odd flags, options,
        // a second message behind the first, or data that is not a whole message.
        // A few connections, so segments meet the streams of earlier ones; seven times in
        // eight at the next message of the stream (or the last one again), else anywhere.
        f.sport = 40000 + r.below(4) as u16;
        let v6 = matches!(f.ip, Ip::V6 { .. });
        let hinted = hint(v6, f.sport);
        let seq = match hinted {
            Some((last, next)) if !r.chance(8) => {
                if r.chance(8) {
                    last
                } else {
                    next
                }
            }
            _ => r.next() as u32,
        };
        let mut t = Tcp {
            seq,
            ack: r.next() as u32,
            flags: [0x18, 0x18, 0x10, 0x19, 0x02, 0x14, 0x11, 0x08, 0x38][r.below(9)],
            ..Tcp::default()
        };
        // A connection not yet followed: often its SYN first, without data mostly (a SYN
        // with data is dropped and starts nothing).
        let plain_syn = hinted.is_none() && r.chance(2) && {
            t.flags = 0x02;
            !r.chance(8)
        };
        t.options = match r.below(5) {
            0 => packet::ts_option(r.next() as u32, r.next() as u32),
            1 => {
                let mut o = vec![1, 1, 5, 10];
                o.extend((0..8).map(|_| r.next() as u8));
                o.extend(packet::ts_option(r.next() as u32, r.next() as u32));
                o
            }
            2 => (0..4 * (1 + r.below(10)))
                .map(|_| [1u8, 0, 8, 10, 2, 4][r.below(6)])
                .collect(),
            _ => vec![],
        };
        if r.chance(5) {
            // Our own framing: cut, lengthened by a second message, or a lying prefix.
            t.raw_payload = true;
            let mut data = (f.payload.len() as u16).to_be_bytes().to_vec();
            data.extend_from_slice(&f.payload);
            match r.below(4) {
                0 => data.truncate(r.below(data.len())),
                1 => {
                    // Half the time the same message again with another ID (glibc's A and
                    // AAAA pair asks one name twice), else another query.
                    let second = if r.chance(2) && f.payload.len() >= 2 {
                        let mut m = f.payload.clone();
                        m[0] ^= 0x5a;
                        m
                    } else {
                        query(r)
                    };
                    data.extend_from_slice(&(second.len() as u16).to_be_bytes());
                    data.extend_from_slice(&second);
                }
                2 => {
                    let l = r.next() as u16;
                    data[..2].copy_from_slice(&l.to_be_bytes());
                }
                _ => data.extend((0..r.below(20)).map(|_| r.next() as u8)),
            }
            f.payload = data;
        }
        if plain_syn {
            t.raw_payload = true;
            f.payload.clear();
        }
        f = f.over_tcp(t);
    }
    let mut bytes = f.bytes();
    // Mutations on the wire bytes.
    match r.below(6) {
        0 => {
            let n = 14 + r.below(bytes.len().saturating_sub(14));
            bytes.truncate(n);
        }
        1 => {
            for _ in 0..1 + r.below(4) {
                let i = r.below(bytes.len());
                bytes[i] ^= 1 << r.below(8);
            }
        }
        2 => {
            // A byte of the DNS part set to a label-length lie, a pointer or a reserved type.
            let tail = bytes.len().min(80);
            let i = bytes.len() - 1 - r.below(tail);
            bytes[i] = [0xc0, 0x40, 0x80, 63, 64, 0, 255][r.below(7)];
        }
        _ => {}
    }
    bytes
}

/// A query's TCP header as sent; when more data follows the message, the frame cut after it
/// (what the program must pass); the segment's data.
type TcpQuery = (packet::TcpParsed, Option<Vec<u8>>, Vec<u8>);

/// The DNS message of a frame, found independently of the program (None: not UDP to 53 in a
/// whole, consistent IPv4/IPv6 packet, nor a TCP data segment to 53 whose data starts with a
/// whole message — which must pass untouched). For TCP, also the TCP header as sent, and
/// the frame cut after the message when more data follows it.
fn dns_payload(f: &[u8]) -> Option<(&[u8], Option<TcpQuery>)> {
    let (off, l4, end, proto) = transport(f).ok()?;
    if proto == 6 {
        // RFC 7766 framing in one segment: ACK set, no SYN or RST, a two-byte length, then at
        // least that many bytes.
        let dport = u16::from_be_bytes([*f.get(l4 + 2)?, *f.get(l4 + 3)?]);
        let doff = ((*f.get(l4 + 12)? >> 4) as usize) * 4;
        let flags = *f.get(l4 + 13)?;
        if dport != 53 || l4 > 1024 || doff < 20 || l4 + doff > end {
            return None;
        }
        let data = &f[l4 + doff..end];
        if data.len() < 2 || flags & 0x26 != 0 || flags & 0x10 == 0 {
            return None;
        }
        let len = u16::from_be_bytes([data[0], data[1]]) as usize;
        if data.len() < 2 + len {
            return None;
        }
        let t = packet::TcpParsed {
            seq: u32::from_be_bytes(f[l4 + 4..l4 + 8].try_into().ok()?),
            ack: u32::from_be_bytes(f[l4 + 8..l4 + 12].try_into().ok()?),
            flags,
            window: 0,
            urgent: 0,
            options: f[l4 + 20..l4 + doff].to_vec(),
            data_len: data.len(),
        };
        let cut =
            (data.len() > 2 + len).then(|| packet::cut_segment(f, off, l4, l4 + doff + 2 + len));
        return Some((&data[2..2 + len], Some((t, cut, data.to_vec()))));
    }
    let dport = u16::from_be_bytes([*f.get(l4 + 2)?, *f.get(l4 + 3)?]);
    let ulen = u16::from_be_bytes([*f.get(l4 + 4)?, *f.get(l4 + 5)?]) as usize;
    // IPv6 UDP with length 0: the rest of the packet, as Linux delivers it (RFC 2675).
    let ulen = match (*f.get(off)? >> 4, ulen) {
        (6, 0) => end.checked_sub(l4)?,
        _ => ulen,
    };
    if dport != 53 || ulen < 8 || l4 + ulen > end || l4 > 1024 {
        return None;
    }
    Some((&f[l4 + 8..l4 + ulen], None))
}

/// The oracle's own model of where each TCP connection's stream stands (README, SECURITY.md):
/// a SYN on a connection not followed puts it right after the SYN, a segment whose data starts
/// with a whole message and is admitted puts it right after that message (whatever the
/// verdict on it); a segment is
/// judged only at the next message, or at the last one again with the same length, and not
/// at all on a connection whose SYN was not seen.
#[derive(Default)]
struct Streams {
    /// Connection (family, addresses, ports) → (last, next).
    at: std::collections::HashMap<Vec<u8>, (u32, u32)>,
    /// The same for the generator, by IP version and source port.
    hints: std::collections::HashMap<(bool, u16), (u32, u32)>,
    unknown: u64,
}

impl Streams {
    /// For a TCP frame to port 53 that reaches the program's look at its flags (a whole
    /// header): its connection, IP version, source port, sequence number and flags.
    fn conn(f: &[u8]) -> Option<(Vec<u8>, bool, u16, u32, u16)> {
        let (off, l4, end, 6) = transport(f).ok()? else {
            return None;
        };
        let be = |i: usize| Some(u16::from_be_bytes([*f.get(i)?, *f.get(i + 1)?]));
        let doff = (*f.get(l4 + 12)? >> 4) as usize * 4;
        if be(l4 + 2)? != 53 || doff < 20 || l4 + doff > end {
            return None;
        }
        let flags = *f.get(l4 + 13)?;
        // Data on the segment: reported as a flag of its own (0x100).
        let flags = flags as u16 | ((l4 + doff < end) as u16) << 8;
        let v6 = f[off] >> 4 == 6;
        let mut key = vec![f[off] >> 4];
        if v6 {
            key.extend_from_slice(&f[off + 8..off + 40]);
        } else {
            key.extend_from_slice(&f[off + 12..off + 20]);
        }
        key.extend_from_slice(&f[l4..l4 + 4]);
        let seq = u32::from_be_bytes(f[l4 + 4..l4 + 8].try_into().ok()?);
        Some((key, v6, be(l4)?, seq, flags))
    }

    fn set(&mut self, key: Vec<u8>, v6: bool, sport: u16, at: (u32, u32)) {
        // Hints only for the generator's own addresses (a bit flip in an address makes a
        // connection of its own, which must not stand in for the usual one).
        let own = Frame::v4(vec![]).over_tcp(Tcp::default()).bytes();
        let own6 = Frame::v6(vec![]).over_tcp(Tcp::default()).bytes();
        let addrs = if v6 { &own6[22..54] } else { &own[26..34] };
        if key[1..1 + addrs.len()] == *addrs {
            self.hints.insert((v6, sport), at);
        }
        self.at.insert(key, at);
    }

    /// Before the verdict: a SYN (without URG, which is dropped first) may start the stream
    /// afresh; then whether a segment whose first message is `first` bytes (its length
    /// included) starts out of step.
    fn before(&mut self, f: &[u8], first: Option<usize>) -> bool {
        let Some((key, v6, sport, seq, flags)) = Self::conn(f) else {
            return false;
        };
        if flags & 0x20 != 0 {
            return false;
        }
        // A plain SYN (no ACK, FIN, RST or data) starts a stream where none is followed; on a
        // followed one it is ignored (this run is far shorter than the minutes of idleness
        // that would let it start afresh).
        if flags & 0x117 == 0x02 && !self.at.contains_key(&key) {
            let first = seq.wrapping_add(1);
            self.set(key.clone(), v6, sport, (first, first));
        }
        match (first, self.at.get(&key)) {
            (Some(first), Some(&(last, next))) => {
                seq != next && (seq != last || next.wrapping_sub(last) != first as u32)
            }
            // Data on a connection whose SYN was not seen.
            (Some(_), None) => {
                self.unknown += 1;
                true
            }
            _ => false,
        }
    }

    /// The segment was passed or answered.
    fn after(&mut self, f: &[u8], first: usize) {
        if let Some((key, v6, sport, seq, _)) = Self::conn(f) {
            self.set(key, v6, sport, (seq, seq.wrapping_add(first as u32)));
        }
    }

    fn hint(&self, v6: bool, sport: u16) -> Option<(u32, u32)> {
        self.hints.get(&(v6, sport)).copied()
    }
}

/// Whether the frame is TCP to port 53 that cannot be judged, which the program must drop
/// (SECURITY.md): any segment with URG, data on a SYN (without RST), or data with ACK (no SYN,
/// no RST) that is not a whole message from its first byte.
fn tcp_unjudged(f: &[u8]) -> bool {
    let Ok((_, l4, end, 6)) = transport(f) else {
        return false;
    };
    let (Some(&d2), Some(&d3), Some(&o), Some(&flags)) =
        (f.get(l4 + 2), f.get(l4 + 3), f.get(l4 + 12), f.get(l4 + 13))
    else {
        return false;
    };
    let doff = (o >> 4) as usize * 4;
    if u16::from_be_bytes([d2, d3]) != 53 || l4 > 1024 || doff < 20 || l4 + doff > end {
        return false;
    }
    // URG: dropped whatever else the segment holds.
    if flags & 0x20 != 0 {
        return true;
    }
    let data = &f[l4 + doff..end];
    if data.is_empty() || flags & 0x04 != 0 {
        return false;
    }
    if flags & 0x02 != 0 {
        return true;
    }
    flags & 0x10 != 0
        && (data.len() < 2 || data.len() < 2 + u16::from_be_bytes([data[0], data[1]]) as usize)
}

/// Where the transport header of a whole, unfragmented IPv4 or IPv6 packet (after up to two
/// VLAN tags and IPv6 extension headers) starts: (IP header, transport header, IP end,
/// protocol), for UDP and TCP only, and within 1 KB of the frame's start. Otherwise whether
/// the program must drop the packet (`Err(true)`: more than two VLAN tags; the first fragment
/// of a datagram to port 53, or an IPv6 atomic fragment to it; IPv6 extension headers past
/// six, or past 1 KB to port 53) or pass it (`Err(false)`).
fn transport(f: &[u8]) -> Result<(usize, usize, usize, u8), bool> {
    let get = |i: usize| f.get(i).copied().ok_or(false);
    let mut off = 14;
    let mut et = u16::from_be_bytes([get(12)?, get(13)?]);
    let mut tags = 0;
    while et == 0x8100 || et == 0x88a8 {
        tags += 1;
        // A third tag: Linux strips priority tags (VLAN ID 0) without end and delivers what
        // is behind them, which the program does not walk to: dropped.
        if tags > 2 {
            return Err(true);
        }
        et = u16::from_be_bytes([get(off + 2)?, get(off + 3)?]);
        off += 4;
    }
    let mut first_fragment = false;
    let (l4, end, proto) = match et {
        0x0800 => {
            let v = get(off)?;
            let ihl = ((v & 0xf) as usize) * 4;
            let tot = u16::from_be_bytes([get(off + 2)?, get(off + 3)?]) as usize;
            let frag = u16::from_be_bytes([get(off + 6)?, get(off + 7)?]);
            if v >> 4 != 4
                || ihl < 20
                || tot < ihl
                || off + tot > f.len()
                || frag & 0x1fff != 0
                || !matches!(get(off + 9)?, 6 | 17)
                || get(off + 19).is_err()
            {
                return Err(false);
            }
            first_fragment = frag & 0x2000 != 0;
            (off + ihl, off + tot, get(off + 9)?)
        }
        0x86dd => {
            if get(off)? >> 4 != 6 || get(off + 39).is_err() {
                return Err(false);
            }
            let plen = u16::from_be_bytes([get(off + 4)?, get(off + 5)?]) as usize;
            let end = off + 40 + plen;
            if plen == 0 || end > f.len() {
                return Err(false);
            }
            let mut next = get(off + 6)?;
            let mut l4 = off + 40;
            for _ in 0..6 {
                match next {
                    0 | 43 | 60 => {
                        let n = get(l4)?;
                        l4 += (get(l4 + 1)? as usize + 1) * 8;
                        next = n;
                    }
                    44 => {
                        let n = get(l4)?;
                        let o = u16::from_be_bytes([get(l4 + 2)?, get(l4 + 3)?]);
                        if o & 0xfff8 != 0 {
                            return Err(false);
                        }
                        first_fragment = true;
                        l4 += 8;
                        next = n;
                    }
                    _ => break,
                }
                if l4 > end {
                    return Err(false);
                }
            }
            match next {
                6 | 17 => {}
                0 | 43 | 60 | 44 => return Err(true),
                _ => return Err(false),
            }
            (l4, end, next)
        }
        _ => return Err(false),
    };
    let to_53 = u16::from_be_bytes([get(l4 + 2)?, get(l4 + 3)?]) == 53;
    if first_fragment || l4 > 1024 {
        return Err(to_53);
    }
    Ok((off, l4, end, proto))
}

/// The message with its OPT record's options removed (RDLENGTH 0), when it has one.
fn without_options(q: &[u8]) -> Vec<u8> {
    let qe = blocker_tests::dns::question_end(q);
    if q.len() < qe + 11 || q[11] != 1 {
        return q.to_vec();
    }
    let mut v = q[..qe + 11].to_vec();
    v[qe + 9] = 0;
    v[qe + 10] = 0;
    v
}

#[test]
fn differential_fuzz() {
    let n: u64 = std::env::var("BLOCKER_FUZZ_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let seed: u64 = std::env::var("BLOCKER_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_b10c);
    let b = Blocker::new();
    b.ok(&[
        "rules",
        "add",
        "blocked.test",
        "--subtree",
        "--order",
        "Court-F",
        "--ede-text",
        ORDER_TEXT,
    ]);
    b.ok(&[
        "rules",
        "add",
        "ok.blocked.test",
        "--subtree",
        "--action",
        "pass",
        "--order",
        "allow",
        "--priority",
        "10",
    ]);
    // An allow rule in an order ranked after Court-F: it decides nothing under blocked.test.
    b.ok(&[
        "rules",
        "add",
        "late.blocked.test",
        "--subtree",
        "--action",
        "pass",
        "--order",
        "late-allow",
    ]);
    b.ok(&[
        "rules",
        "add",
        "drop.test",
        "--subtree",
        "--action",
        "drop",
        "--order",
        "Court-F",
    ]);
    b.ok(&[
        "rules",
        "add",
        "exact.test",
        "--action",
        "refused",
        "--order",
        "Court-F",
    ]);
    b.ok(&[
        "rules",
        "add",
        "sink.test",
        "--subtree",
        "--action",
        "sinkhole",
        "--order",
        "Court-F",
    ]);
    b.ok(&[
        "rules",
        "add",
        "tc.test",
        "--subtree",
        "--action",
        "tc",
        "--order",
        "Court-F",
    ]);
    b.ok(&[
        "config",
        "set",
        "--sinkhole-v4",
        "192.0.2.99",
        "--sinkhole-v6",
        "2001:db8::99",
    ]);
    // Every frame comes from the same few addresses: rate limiting would drop most answers,
    // which the reference does not model (it is tested in prog_test_run).
    b.rrl_off();
    let prog = blocker::kernel::pinned_program(&b.pins(), false).expect("program");
    let fd = prog.fd().expect("fd");
    let maps = blocker::kernel::Maps::open(&b.pins()).expect("maps");
    let secret = maps
        .key_secret()
        .expect("key map")
        .expect("the controller wrote the key secret");

    let rules = rules_as_text();
    let gates = blocker_tests::reference::gates_of(&maps);
    let settings = Settings {
        sinkhole_v4: Some("192.0.2.99".parse().expect("address")),
        sinkhole_v6: Some("2001:db8::99".parse().expect("address")),
        sinkhole_ttl: maps.config().expect("config").sinkhole_ttl,
        ede_code: 16,
    };
    let mut r = Rng(seed | 1);
    let (mut tx, mut pass, mut drop, mut tx_tcp, mut cut_frames) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut same_name = 0u64;
    let mut unjudged_frames = 0u64;
    let mut out_of_step = 0u64;
    let mut compressed_frames = 0u64;
    let mut streams = Streams::default();
    for i in 0..n {
        let f = frame(&mut r, &|v6, sport| streams.hint(v6, sport));
        let out = test_run(fd.as_fd(), &f, 1).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        let fail = |why: String| -> ! {
            panic!(
                "frame {i} (seed {seed}): {why}\ninput  {f:02x?}\noutput {:02x?}",
                out.data
            )
        };
        let found = dns_payload(&f);
        let dns = found.as_ref().map(|(m, _)| *m);
        let tcp = found.as_ref().and_then(|(_, t)| t.clone());
        let expect = dns.and_then(|m| reference(&maps, &secret, &gates, m, tcp.is_some()));
        // The independent oracle: what the README's rules say, from the rules' text.
        let question = dns.and_then(oracle::plain_query);
        let want = match &question {
            Some(q) => oracle::verdict_over(&rules, q, tcp.is_some()),
            None => Verdict::Pass,
        };
        // A segment that passes with more behind its first message is cut to it, or dropped
        // when that message is too long to cut.
        let cut = tcp.as_ref().and_then(|(_, c, _)| c.as_ref());
        let too_long = cut.is_some() && dns.map_or(0, |m| m.len()) + 2 > packet::CUT_MAX;
        let first = tcp.as_ref().map(|_| 2 + dns.map_or(0, |m| m.len()));
        let stepped_out = streams.before(&f, first);
        out_of_step += stepped_out as u64;
        // A compressed QNAME is dropped whatever the transport; one whose labels are longer
        // than a name may be dropped or passed.
        let compressed = dns.and_then(oracle::compressed_question);
        let unjudged = transport(&f) == Err(true)
            || tcp_unjudged(&f)
            || stepped_out
            || compressed == Some(true);
        unjudged_frames += unjudged as u64;
        compressed_frames += compressed.is_some() as u64;
        let want_retval = match want {
            _ if unjudged => XDP_DROP,
            _ if compressed == Some(false) && out.retval == XDP_DROP => XDP_DROP,
            Verdict::Pass if too_long => XDP_DROP,
            Verdict::Pass => XDP_PASS,
            Verdict::Drop => XDP_DROP,
            Verdict::Answer { .. } => XDP_TX,
        };
        if out.retval != want_retval {
            fail(format!(
                "{}, but the oracle says {}",
                action_name(out.retval),
                if unjudged {
                    "drop: it cannot be judged".to_string()
                } else {
                    format!("{want:?}")
                }
            ));
        }
        // Every segment the stream admits moves it, whatever the verdict.
        if let (Some(first), false) = (first, stepped_out) {
            streams.after(&f, first);
        }
        match out.retval {
            XDP_PASS => {
                pass += 1;
                match cut {
                    Some(c) if out.data != *c => fail(format!(
                        "a pipelined segment not cut after its first message\nwanted {c:02x?}"
                    )),
                    None if out.data != f => fail("a passed frame was modified".into()),
                    _ => cut_frames += cut.is_some() as u64,
                }
                if let Some(e) = &expect {
                    fail(format!(
                        "passed, but the reference says {}",
                        if e.is_some() { "answer" } else { "drop" }
                    ));
                }
            }
            XDP_DROP => {
                drop += 1;
                if expect != Some(None)
                    && !(too_long && want == Verdict::Pass)
                    && !unjudged
                    && compressed.is_none()
                {
                    fail("dropped, but the reference does not drop".into());
                }
            }
            XDP_TX => {
                tx += 1;
                let Some(Some(want_bytes)) = &expect else {
                    fail("answered, but the reference does not answer".into())
                };
                let q = dns.unwrap_or_default();
                // An independent parser must see the input as a plain query: its header and
                // question at least (what follows the question does not keep a query from
                // being judged; EDNS option contents are not the program's business either:
                // hickory also checks e.g. client-subnet options, so a query is judged with
                // its options removed).
                let qe = blocker_tests::dns::question_end(q);
                let mut core = q[..qe].to_vec();
                core[6..12].copy_from_slice(&[0; 6]);
                let qm = Message::from_vec(q)
                    .or_else(|_| Message::from_vec(&without_options(q)))
                    .or_else(|_| Message::from_vec(&core))
                    .unwrap_or_else(|e| {
                        fail(format!("answered a query hickory cannot parse: {e}"))
                    });
                if qm.message_type() != MessageType::Query
                    || qm.op_code() != OpCode::Query
                    || qm.queries().len() != 1
                {
                    fail("answered something that is not a plain query".into());
                }
                let a =
                    packet::parse(&out.data).unwrap_or_else(|e| fail(format!("answer frame: {e}")));
                if let (Some(qq), Verdict::Answer { action, ede_text }) = (&question, &want) {
                    if let Err(e) = oracle::check_answer(
                        q,
                        qq,
                        &a.dns,
                        action,
                        ede_text,
                        &settings,
                        tcp.is_some(),
                    ) {
                        fail(format!("the oracle rejects the answer ({action}): {e}"));
                    }
                }
                if a.dns != *want_bytes {
                    fail("kernel and host answers differ".into());
                }
                match (&tcp, &a.tcp) {
                    (None, None) => {}
                    (Some((qt, cut, data)), Some(at)) => {
                        tx_tcp += 1;
                        // A second query for the same name behind the first (its header but
                        // the ID, QNAME and QCLASS the same bytes, its question within the
                        // segment): only the first is acknowledged.
                        let first_only = cut.as_ref().and_then(|_| {
                            let first = 2 + q.len();
                            let qe = blocker_tests::dns::question_end(q);
                            let second = data.get(first + 2..first + 2 + qe)?;
                            let same = second[2..qe - 4] == q[2..qe - 4]
                                && second[qe - 2..qe] == q[qe - 2..qe];
                            same.then_some(first)
                        });
                        if first_only.is_some() {
                            same_name += 1;
                        }
                        if let Err(e) = packet::check_tcp_answer(qt, at, first_only) {
                            fail(e);
                        }
                    }
                    _ => fail("transport of the answer differs from the query's".into()),
                }
                // The growth bound: 64 bytes over UDP, 192 over TCP (README, "Answers").
                let growth = if tcp.is_some() { 192 } else { 64 };
                if a.dns.len() > q.len() + growth {
                    fail(format!("amplification: {} -> {}", q.len(), a.dns.len()));
                }
                let am = Message::from_vec(&a.dns)
                    .unwrap_or_else(|e| fail(format!("hickory cannot parse the answer: {e}")));
                if am.message_type() != MessageType::Response
                    || am.id() != qm.id()
                    || am.queries() != qm.queries()
                {
                    fail("the answer is not a response to the query".into());
                }
                let qe = blocker_tests::dns::question_end(q);
                if a.dns[12..qe] != q[12..qe] {
                    fail("question not echoed byte for byte".into());
                }
            }
            other => fail(format!("verdict {}", action_name(other))),
        }
    }
    println!(
        "{n} frames (seed {seed}): {tx} answered ({tx_tcp} over TCP), {drop} dropped, {pass} passed ({cut_frames} cut after their first message), {same_name} answered before a query for the same name, {unjudged_frames} that cannot be judged (dropped; {out_of_step} out of step, {} of them on connections not followed; {compressed_frames} queries with a compression pointer in the name)", streams.unknown
    );
    assert!(
        tx > n / 20
            && pass > n / 20
            && tx_tcp > n / 100
            && cut_frames > n / 1000
            && same_name > n / 10_000
            && unjudged_frames > n / 1000
            && out_of_step > n / 1000
            && compressed_frames > n / 10_000,
        "the generator must exercise answers (UDP and TCP), passes and every kind of drop"
    );
}
