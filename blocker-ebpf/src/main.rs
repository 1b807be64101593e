//! The blocker XDP program: the one place where a packet becomes a verdict.
//!
//! Ethernet (up to two VLAN tags) → IPv4 (options) or IPv6 (extension headers) → UDP to a
//! configured DNS port → the DNS query, parsed and matched by blocker-common → pass, drop, or
//! the query rewritten in place into an answer and sent back with XDP_TX.
//!
//! Fail open: anything not understood is passed and counted by reason — but not a query that
//! cannot be judged while the resolver's kernel would still deliver it (the first fragment of
//! a datagram to a DNS port, IPv6 headers past the walk, TCP data in pieces or on a SYN:
//! dropped, see `Reason::drops_unjudged`), and a TCP segment passes only up to the end of its
//! first message, so a query written behind it is judged when the client sends it again (see
//! [`pipelined`]). Every exit goes through [`blocker`], which counts exactly one reason.
#![no_std]
#![no_main]
// `atomic_xadd` and `atomic_cxchg`: the BPF target's `core` has no `fetch_add` or
// `compare_exchange`, while BPF has an atomic add (BPF_XADD; its result unused, so no fetching
// add, which LLVM refuses at this CPU level) and a compare-and-swap (BPF_CMPXCHG, which LLVM
// selects at every level and Linux runs since 5.12). The toolchain is the bootstrap one
// already (-Z build-std), so the intrinsics cost no further switch.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod maps;
mod rewrite;
mod stream;

use aya_ebpf::{
    bindings::{
        xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
        BPF_ANY,
    },
    helpers::generated as r#gen,
    macros::xdp,
    programs::XdpContext,
};
use blocker_common::{
    answer::{answer_room, write_answer},
    dns::{
        decide_end, decide_next_shadow, decide_start, decide_step, launder, parse_query, Client,
        Hit, LOAD_MAX, SHADOW_MAX,
    },
    filter::Probe,
    juris_addr,
    rrl::{self, Limit},
    rule_hit_step, rule_hits_count, Action, BlockEvent, Config, LocalAnswer, Reason, RrlBucket,
    ACTION_COUNT, CONFIG_SCOPED, CONFIG_WINDOWS, PRIVACY_NONE, PRIVACY_TRUNCATED, SHADOW_HITS,
};
use core::{
    intrinsics::{atomic_xadd, AtomicOrdering},
    mem::size_of,
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, ip::Ipv6Hdr, udp::UdpHdr};

use aya_ebpf::maps::lpm_trie::Key as LpmKey;

use crate::maps::{
    BENCH_REPLIES, CONFIG, EVENTS, FILTER, GATES, JCACHE, JURIS, KEY, LOCAL, ORDERS, ORDER_HITS,
    RRL, RULES, RULES_WIDE, RULE_HITS, SCRATCH, STATS, WALK,
};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// VLAN tags we look through (802.1Q and 802.1ad, QinQ).
const VLAN_MAX_DEPTH: usize = 2;
/// IPv6 extension headers we walk before giving up (pass).
const IPV6_EXT_MAX: usize = 6;
/// Largest offset of the UDP header we handle: Ethernet, two tags and an IPv6 header with
/// extension headers fit easily; anything longer is passed.
pub const MAX_L4_OFFSET: usize = 1024;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_TCP: u8 = 6;
/// TCP header flags.
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_URG: u8 = 0x20;
const IPV6_HOPOPTS: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DSTOPTS: u8 = 60;

/// Where the layers of a DNS frame start (DNS over UDP, or one DNS message at the start of a
/// TCP segment's data).
pub struct Frame {
    /// Offset of the IP header.
    pub l3: usize,
    /// IPv4 header length in bytes (0 for IPv6).
    pub ihl: usize,
    /// Offset of the UDP or TCP header.
    pub l4: usize,
    /// Length of the transport header: 8 for UDP, the TCP data offset (20..=60) for TCP.
    pub l4_len: usize,
    /// Offset of the DNS message (for TCP, just past its two-byte length prefix).
    pub dns: usize,
    /// Length of the DNS message (from the UDP length field, or the TCP length prefix).
    pub msg_len: usize,
    /// Bytes of TCP data in the segment (0 for UDP): what the answer's ACK acknowledges.
    pub seg_len: usize,
    /// 1 for IPv6, 0 for IPv4 (an integer for the reason given at `tcp`).
    pub v6: u64,
    /// 1 for TCP, 0 for UDP. An integer, not a `bool`: BPF has no set-on-compare, so a `bool`
    /// made by a comparison is a branch, and the verifier would walk everything after it once
    /// per value. Compared only where it is used.
    pub tcp: u64,
    /// TCP: 1 when more data follows the first message in the segment (see [`pipelined`]).
    pub more: u64,
}

impl Frame {
    /// The frame as `prepare` left it in `BLK_WALK`, re-bounded for the verifier.
    #[inline(always)]
    pub fn from_walk(w: &[u64; 10]) -> Result<Frame, Reason> {
        // SAFETY: valid, aligned references into a map value.
        let r = |i: usize| unsafe { core::ptr::read_volatile(&w[i]) };
        let f = Frame {
            l3: r(0) as usize,
            ihl: r(1) as usize,
            l4: r(2) as usize,
            dns: r(3) as usize,
            msg_len: r(4) as usize & 0xffff,
            l4_len: r(5) as usize,
            seg_len: r(6) as usize,
            tcp: r(7) & 1,
            more: r(8) & 1,
            v6: r(9) & 1,
        };
        if f.l3 > MAX_L4_OFFSET
            || f.l4 > MAX_L4_OFFSET
            || f.dns > MAX_L4_OFFSET + 62
            || f.l4_len > 60
            || f.seg_len > 0xffff
        {
            return Err(Reason::Malformed);
        }
        Ok(f)
    }
}

#[xdp]
pub fn blocker(ctx: XdpContext) -> u32 {
    // Bit 0 once the packet is known to carry a whole DNS query over TCP; bit 1 once its TCP
    // data is known to hold more after its first message (see `pipelined`).
    let mut tcp_query = 0u64;
    // Three parts, so the walk's `bpf_loop` runs from this small frame: BPF allows 512 bytes
    // of stack for a whole chain of calls, and the parts before and after the walk need most
    // of it each (but never at the same time).
    let r = match unpack_prepared(prepare(&ctx, &mut tcp_query)) {
        Ok(labels) => {
            // One walk of the labels, then up to SHADOW_MAX − 1 more, one per shadow order
            // ahead of the decider, each after a step that records it (see `walk_step`); the
            // loop stops at the first walk with no shadow order ahead, or at the SHADOW_MAX-th
            // record.
            let labels = labels & (blocker_common::dns::MAX_LABELS as u32 - 1);
            let steps = if labels == 0 {
                0
            } else {
                labels * SHADOW_MAX as u32 + 1
            };
            let mut walk = Walk {
                xdp: ctx.ctx,
                labels: labels as u64,
            };
            // SAFETY: `walk_step` is a valid bpf_loop callback; its context is `walk`, which
            // lives on this frame until the loop returns.
            unsafe {
                r#gen::bpf_loop(
                    steps,
                    walk_step as *mut core::ffi::c_void,
                    (&mut walk as *mut Walk).cast(),
                    0,
                )
            };
            unpack_finished(finish(&ctx))
        }
        Err(reason) => Err(reason),
    };
    let (verdict, reason) = match r {
        Ok(v) => v,
        // Fail open, but for queries that cannot be judged (see `Reason::drops_unjudged`).
        Err(reason) if reason.drops_unjudged() => (XDP_DROP, reason),
        Err(reason) => (XDP_PASS, reason),
    };
    // A TCP segment about to pass with more data behind its first message: only that message
    // may reach the resolver (see `pipelined`).
    let (verdict, reason) = if verdict == XDP_PASS && tcp_query & 2 != 0 {
        match pipelined(&ctx) {
            PIPELINED_NONE => (verdict, reason),
            PIPELINED_CUT => (XDP_PASS, Reason::TcpPipelined),
            _ => (XDP_DROP, Reason::RewriteFailed),
        }
    } else {
        (verdict, reason)
    };
    count(reason, tcp_query);
    verdict
}

/// `pipelined`'s results: nothing behind the first message, the segment cut, or a segment
/// that could not be cut (to be dropped).
const PIPELINED_NONE: u32 = 0;
const PIPELINED_CUT: u32 = 1;
const PIPELINED_FAILED: u32 = 2;

/// A TCP segment that passes and holds more data after its first message (the first one
/// allowed, unmatched or not a query at all) is cut to that message before it passes: the
/// resolver acknowledges only those bytes, and the client's TCP sends the rest again, now
/// starting at the next message, where this program judges it like any other query. Without
/// the cut, a blocked query written behind an allowed one in the same segment (one `send` by
/// any client; glibc's A and AAAA over TCP) would reach the resolver unjudged. The cost is the
/// client's retransmission delay for each message after the first (see SECURITY.md). A
/// segment that cannot be cut (a first message longer than the checksum buffer, or a helper
/// that refuses) is dropped: its data is never passed unjudged.
#[inline(never)]
fn pipelined(ctx: &XdpContext) -> u32 {
    // The frame `prepare` stored for this packet (it sets `tcp_query`'s bit 1 only after).
    let Some(w) = WALK.get(0) else {
        return PIPELINED_FAILED;
    };
    let Ok(f) = Frame::from_walk(&w.frame) else {
        return PIPELINED_FAILED;
    };
    if f.more == 0 {
        return PIPELINED_NONE;
    }
    let Some(s) = SCRATCH.get_ptr_mut(0) else {
        return PIPELINED_FAILED;
    };
    // SAFETY: a per-CPU value, used only by this CPU for the duration of this packet.
    let s = unsafe { &mut *s };
    match rewrite::cut_after_first(ctx, &f, s) {
        Ok(()) => PIPELINED_CUT,
        Err(_) => PIPELINED_FAILED,
    }
}

/// Counts the packet, its exit reason and, when it carried a whole query over TCP, that too
/// (branch-free, in the same one lookup of the counters).
#[inline(always)]
fn count(reason: Reason, tcp_query: u64) {
    if let Some(s) = STATS.get_ptr_mut(0) {
        // SAFETY: a per-CPU value: only this CPU writes it, and XDP runs with preemption off.
        let s = unsafe { &mut *s };
        s.counts[Reason::Packets as usize] += 1;
        s.counts[Reason::TcpQueries as usize] += tcp_query & 1;
        if let Some(c) = s.counts.get_mut(index_of(reason)) {
            *c += 1;
        }
    }
}

/// A reason as a counter index the verifier sees checked: the compiler knows a `Reason` is
/// below `REASON_COUNT` and drops the bounds check, but may compute the value in a way whose
/// range the verifier cannot bound (seen: `action - 3 + 13` masked to 0..=268). Read through a
/// volatile, the value is opaque to the compiler and `get_mut` keeps its check.
/// What local data set `id` answers to `qtype`: its entry for the type, else its default
/// entry (a block page's CNAME chain, or an empty answer: NODATA). None without local data.
#[inline(always)]
fn local_answer(id: u16, qtype: u16) -> Option<&'static LocalAnswer> {
    if id == 0 {
        return None;
    }
    // SAFETY: BLK_LOCAL is not preallocated, so an element is never reused while we read it.
    unsafe {
        match LOCAL.get(&blocker_common::local_key(id, qtype)) {
            Some(l) => Some(l),
            None => LOCAL.get(&blocker_common::local_key(id, 0)),
        }
    }
}

#[inline(always)]
fn index_of(reason: Reason) -> usize {
    let r = reason as u32;
    // SAFETY: a read of a local.
    unsafe { core::ptr::read_volatile(&r) as usize }
}

/// Counts a rule's hit (on its order under its action, or as a shadow hit); returns the
/// rule's count and whether this is its first hit since the list last changed.
#[inline(always)]
fn count_hit(hit: &Hit, shadow: bool, generation: u32) -> (u64, bool) {
    let r = match RULE_HITS.get_ptr_mut(hit.rule_id) {
        Some(p) => {
            // SAFETY: an aligned u64 in an array map's value, for the life of the program;
            // every CPU and user space change it only atomically, and an aligned 64-bit load
            // is one instruction (the BPF backend selects no atomic load at this CPU level).
            let c = unsafe { core::ptr::read_volatile(p) };
            let (add, first) = rule_hit_step(c, generation);
            // An atomic add whose old value is not used: BPF_XADD, at every CPU level (the
            // fetching form needs v3). The count returned is the one read plus this hit: a
            // hit on another CPU between the two may be counted in both (event sampling only).
            // SAFETY: as above.
            unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, add) };
            (rule_hits_count(c.wrapping_add(add)), first)
        }
        // A rule id at or past the array's end: none is (the capacity is kept above every
        // id). Were one, it would go uncounted, and make events only when every hit makes
        // one (1 is a multiple of no sampling rate but 1; 0 is a multiple of every rate).
        None => (1, false),
    };
    if let Some(o) = ORDER_HITS.get_ptr_mut(hit.order_id as u32) {
        // SAFETY: a per-CPU value, written only by this CPU.
        let o = unsafe { &mut *o };
        let at = if shadow {
            SHADOW_HITS
        } else {
            hit.action as usize
        };
        o.by_action[at & (ACTION_COUNT - 1)] += 1;
    }
    r
}

/// Sends a block event when sampling asks for one: the first hit of a rule after each list
/// change, then every `event_every`th hit of the rule. A full ring buffer loses the event, never
/// the verdict.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn emit(
    ctx: &XdpContext,
    l3: usize,
    cfg: &Config,
    hit: &Hit,
    shadow: bool,
    qtype: u16,
    (hits, first): (u64, bool),
    s: &blocker_common::dns::Scratch,
) {
    let every = cfg.event_every as u64;
    if every == 0 || (!first && hits % every != 0) {
        return;
    }
    // Written in place in the ring buffer (no copy on the stack: shadow hits are recorded
    // from inside the walk, whose stack frame is large).
    let Some(mut entry) = EVENTS.reserve::<BlockEvent>(0) else {
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points to a reserved, writable BlockEvent in the ring buffer.
    unsafe {
        (*ev).time_ns = r#gen::bpf_ktime_get_ns();
        (*ev).rule_id = hit.rule_id;
        (*ev).order_id = hit.order_id;
        (*ev).action = hit.action;
        (*ev).family = 0;
        (*ev).qtype = qtype;
        (*ev).first = first as u8;
        (*ev).shadow = shadow as u8;
        (*ev).generation = cfg.generation;
        (*ev).client = [0; 16];
    }
    if cfg.event_privacy != PRIVACY_NONE {
        // The IP version from scratch memory, by arithmetic: see `client_addr`.
        // SAFETY: a valid, aligned reference into scratch memory.
        let v6 = (unsafe { core::ptr::read_volatile(&s.opaque[31]) } & 1) as usize;
        // IPv6: 16 bytes of the source address; IPv4: 4 (the rest stays zero).
        let len = 4 + 12 * v6;
        // SAFETY: at most 16 bytes into the event's 16-byte address; the helper checks the
        // packet bounds.
        let r = unsafe {
            r#gen::bpf_xdp_load_bytes(
                ctx.ctx,
                (l3 + 12 - 4 * v6) as u32,
                (*ev).client.as_mut_ptr().cast(),
                len as u32,
            )
        };
        if r == 0 {
            // SAFETY: as above.
            unsafe { (*ev).family = 4 + 2 * v6 as u8 };
        }
        if cfg.event_privacy == PRIVACY_TRUNCATED {
            // /24 for IPv4, /48 for IPv6.
            let keep = 3 + 3 * v6;
            for i in 0..16 {
                if i >= keep {
                    // SAFETY: as above.
                    unsafe { (*ev).client[i] = 0 };
                }
            }
        }
    }
    entry.submit(0);
}

/// The client's address (IPv4 in the first four bytes), or None if it cannot be read. The IP
/// version is read back from where `inspect` laundered it, not from `f` (see `rate_limit`).
#[inline(always)]
fn client_addr(ctx: &XdpContext, l3: usize, s: &blocker_common::dns::Scratch) -> Option<[u8; 16]> {
    let mut addr = [0u8; 16];
    // SAFETY: a valid, aligned reference into scratch memory.
    let v6 = unsafe { core::ptr::read_volatile(&s.opaque[31]) } & 1;
    if v6 != 0 {
        addr = load::<16>(ctx, l3 + 8).ok()?;
    } else {
        addr[..4].copy_from_slice(&load::<4>(ctx, l3 + 12).ok()?);
    }
    Some(addr)
}

/// What the walk needs to know of the client up front: the time, when some order has a
/// validity window. Its jurisdictions are looked up only when a scoped rule matches
/// ([`client_jurisdictions`]).
#[inline(always)]
fn client_of(cfg: &Config) -> Client {
    let mut c = Client::default();
    if cfg.flags & CONFIG_WINDOWS != 0 {
        // SAFETY: plain helper call.
        c.now = unsafe { r#gen::bpf_ktime_get_tai_ns() };
    }
    c
}

/// The client's jurisdictions (one LPM lookup, then cached for the rest of the packet); none
/// when no order is scoped or its address could not be read.
#[inline(always)]
fn client_jurisdictions(cfg: &Config, w: &blocker_common::dns::WalkState) -> u64 {
    // `prepare` reset the cache only while some order was scoped, and then read the address.
    if cfg.flags & CONFIG_SCOPED == 0 || w.client_addr_ok == 0 {
        return 0;
    }
    let Some(c) = JCACHE.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: a per-CPU value, used only by this CPU for the duration of this packet.
    let c = unsafe { &mut *c };
    if c[0] == 0 {
        c[0] = 1;
        c[1] = 0;
        {
            let key = LpmKey::new(128, w.client_addr);
            if let Some(v) = JURIS.get(&key) {
                c[1] = v.masks[w.epoch as usize & 1];
            }
        }
    }
    c[1]
}

/// Response rate limiting of the answer about to be sent for the query in `f`, keyed by its
/// source prefix (see `blocker_common::rrl`). Answers over UDP only: the source address of a
/// query over TCP has completed a handshake and cannot be spoofed. Fails open: an address
/// that cannot be read or a bucket that cannot be stored means the normal answer.
#[inline(always)]
fn rate_limit(
    ctx: &XdpContext,
    f: &Frame,
    cfg: &Config,
    s: &blocker_common::dns::Scratch,
) -> Limit {
    // The transport read back from where `inspect` laundered it, not from `f`: a comparison
    // on `f.tcp` would teach the verifier its value for the rest of the program, splitting
    // every later path in two.
    // SAFETY: a valid, aligned reference into scratch memory.
    let tcp = unsafe { core::ptr::read_volatile(&s.opaque[21]) } & 1;
    if cfg.rrl_rate == 0 || tcp != 0 {
        return Limit::Answer;
    }
    let Some(addr) = client_addr(ctx, f.l3, s) else {
        return Limit::Answer;
    };
    // SAFETY: a valid, aligned reference into scratch memory.
    let v6 = unsafe { core::ptr::read_volatile(&s.opaque[31]) } & 1;
    let key = rrl::key_of(&addr, v6 != 0, cfg);
    // SAFETY: plain helper call.
    let now = unsafe { r#gen::bpf_ktime_get_ns() };
    if let Some(b) = RRL.get_ptr_mut(&key) {
        // SAFETY: a per-CPU value, written only by this CPU. An LRU element can be recycled
        // for another prefix while we hold it: the memory stays valid, and the worst outcome
        // is one answer charged to the wrong prefix.
        return rrl::admit(unsafe { &mut *b }, now, cfg);
    }
    // A prefix not seen lately: a full bucket. Written as this CPU's value (the other CPUs'
    // values of a new element are zero, which is a full bucket too).
    let mut b = RrlBucket::default();
    let limit = rrl::admit(&mut b, now, cfg);
    let _ = RRL.insert(&key, &b, BPF_ANY as u64);
    limit
}

/// Bounds-checked pointer to a `T` at `off` bytes into the packet.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Result<*mut T, Reason> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return Err(Reason::Malformed);
    }
    Ok((start + off) as *mut T)
}

#[inline(always)]
fn be16_at(ctx: &XdpContext, off: usize) -> Result<u16, Reason> {
    let p: *const [u8; 2] = ptr_at(ctx, off)?;
    // SAFETY: ptr_at checked that two bytes are in the packet.
    Ok(u16::from_be_bytes(unsafe { *p }))
}

/// Copies `N` bytes at a variable offset out of the packet. The helper does the bounds
/// check: direct access at an offset that depends on packet contents (IPv6 extension
/// headers) is fragile, since the compiler may rewrite the bounds check into a form the
/// verifier cannot follow.
#[inline(always)]
pub fn load<const N: usize>(ctx: &XdpContext, off: usize) -> Result<[u8; N], Reason> {
    let mut buf = [0u8; N];
    // SAFETY: `buf` has room for N bytes.
    let r = unsafe {
        r#gen::bpf_xdp_load_bytes(ctx.ctx, off as u32, buf.as_mut_ptr().cast(), N as u32)
    };
    if r != 0 {
        return Err(Reason::Malformed);
    }
    Ok(buf)
}

/// Parses Ethernet, VLAN, IP and UDP; returns where the DNS message is, or why to pass.
#[inline(always)]
fn parse_frame(ctx: &XdpContext, cfg: &Config) -> Result<Frame, Reason> {
    let frame_len = ctx.data_end() - ctx.data();
    let mut off = EthHdr::LEN;
    let mut proto = be16_at(ctx, 12)?;
    for _ in 0..VLAN_MAX_DEPTH {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        proto = be16_at(ctx, off + 2)?;
        off += 4;
    }

    let l3 = off;
    // 1 for the first fragment of a datagram (or an IPv6 atomic fragment).
    let mut first_fragment = 0u64;
    let (ihl, l4, l3_end, v6, tcp) = match proto {
        ETH_P_IPV4 => {
            let ip: *const Ipv4Hdr = ptr_at(ctx, l3)?;
            // SAFETY: ptr_at checked the 20-byte header is in the packet.
            let ip = unsafe { &*ip };
            let ihl = ((ip.vihl & 0x0f) as usize) * 4;
            if ip.vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
                return Err(Reason::Malformed);
            }
            let tot_len = u16::from_be_bytes(ip.tot_len) as usize;
            if tot_len < ihl || l3 + tot_len > frame_len {
                return Err(Reason::Malformed);
            }
            // A fragment offset: not the start of a datagram (without its first fragment,
            // which holds the transport header, the kernel never rebuilds it). MF alone: the
            // first fragment, looked at below.
            let frags = u16::from_be_bytes(ip.frags);
            if frags & 0x1fff != 0 {
                return Err(Reason::Fragment);
            }
            first_fragment = (frags & 0x2000 != 0) as u64;
            if ip.proto != IPPROTO_UDP && ip.proto != IPPROTO_TCP {
                return Err(Reason::NotUdp);
            }
            (ihl, l3 + ihl, l3 + tot_len, false, ip.proto == IPPROTO_TCP)
        }
        ETH_P_IPV6 => {
            let ip: *const Ipv6Hdr = ptr_at(ctx, l3)?;
            // SAFETY: ptr_at checked the 40-byte header is in the packet.
            let ip = unsafe { &*ip };
            if ip.vcf[0] >> 4 != 6 {
                return Err(Reason::Malformed);
            }
            let payload = u16::from_be_bytes(ip.payload_len) as usize;
            let l3_end = l3 + Ipv6Hdr::LEN + payload;
            // A zero payload length means a jumbogram: not DNS over UDP as we know it.
            if payload == 0 || l3_end > frame_len {
                return Err(Reason::Malformed);
            }
            let mut next = ip.next_hdr;
            let mut l4 = l3 + Ipv6Hdr::LEN;
            for _ in 0..IPV6_EXT_MAX {
                match next {
                    IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS => {
                        let h: [u8; 2] = load(ctx, l4)?;
                        next = h[0];
                        let len = (h[1] as usize + 1) * 8;
                        l4 += len;
                        if l4 > l3_end {
                            return Err(Reason::Malformed);
                        }
                    }
                    IPV6_FRAGMENT => {
                        // Next header, reserved, offset (13 bits) and M, identification.
                        let h: [u8; 4] = load(ctx, l4)?;
                        if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
                            return Err(Reason::Fragment);
                        }
                        // Offset 0: the first fragment (M set), or an atomic fragment (M
                        // clear: a whole datagram, RFC 6946). Either holds the transport
                        // header (RFC 8200 §4.5; Linux drops a first fragment that does not).
                        first_fragment = 1;
                        next = h[0];
                        l4 += 8;
                        if l4 > l3_end {
                            return Err(Reason::Malformed);
                        }
                    }
                    _ => break,
                }
            }
            match next {
                IPPROTO_UDP | IPPROTO_TCP => {}
                // A chain longer than we walk: where it ends, and whether a DNS query is
                // behind it, is unknown (see `Reason::DeepHeaders`).
                IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS | IPV6_FRAGMENT => {
                    return Err(Reason::DeepHeaders)
                }
                _ => return Err(Reason::NotUdp),
            }
            (0, l4, l3_end, true, next == IPPROTO_TCP)
        }
        // Still tagged past the two tags walked: Linux strips any number of priority tags
        // (VLAN ID 0) and hands what is behind them to the stack, unseen from here.
        ETH_P_8021Q | ETH_P_8021AD => return Err(Reason::DeepHeaders),
        _ => return Err(Reason::NotIp),
    };

    if first_fragment != 0 || l4 > MAX_L4_OFFSET {
        // The destination port (UDP and TCP alike), through the helper: `l4` may lie past
        // what the rest of the program bounds.
        let ports: [u8; 4] = load(ctx, l4)?;
        let watched = cfg.watches_port(u16::from_be_bytes([ports[2], ports[3]]));
        // A datagram to a DNS port in fragments: the kernel rebuilds it for the resolver,
        // but no fragment holds the whole query to judge (see `Reason::DnsFragment`). A
        // transport header past what the rest of the program bounds: see
        // `Reason::DeepHeaders`.
        return Err(match (first_fragment != 0, watched) {
            (true, true) => Reason::DnsFragment,
            (true, false) => Reason::Fragment,
            (false, true) => Reason::DeepHeaders,
            (false, false) => Reason::OtherPort,
        });
    }
    if tcp {
        return parse_tcp(ctx, cfg, l3, ihl, l4, l3_end, v6 as u64);
    }
    let udp: [u8; UdpHdr::LEN] = load(ctx, l4)?;
    if !cfg.watches_port(u16::from_be_bytes([udp[2], udp[3]])) {
        return Err(Reason::OtherPort);
    }
    let ulen = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    // Over IPv6 a length of 0 means the rest of the packet (RFC 2675, for jumbograms; Linux
    // reads it so at any size and delivers the datagram): passed as malformed, such a query
    // reached the resolver unjudged.
    // Branch-free, masked to 16 bits as the field is (an IPv6 payload is at most 65,535
    // bytes): one path on to the rest of the program, with the range the verifier knew.
    let rest = (ulen == 0 && v6) as usize;
    let ulen = ulen | (l3_end.wrapping_sub(l4) & 0xffff & rest.wrapping_neg());
    if ulen < UdpHdr::LEN || l4 + ulen > l3_end {
        return Err(Reason::Malformed);
    }
    Ok(Frame {
        l3,
        ihl,
        l4,
        l4_len: UdpHdr::LEN,
        dns: l4 + UdpHdr::LEN,
        msg_len: ulen - UdpHdr::LEN,
        seg_len: 0,
        v6: v6 as u64,
        tcp: 0,
        more: 0,
    })
}

/// The TCP part of [`parse_frame`]: a segment to a DNS port whose data starts with one whole
/// DNS message (RFC 7766: a two-byte length, then the message). That is how a client's query
/// arrives — normally the first data segment after the handshake, or a further query pipelined
/// on the connection — and the only case a program that keeps no per-connection state can
/// judge. Segments without data (handshake, ACKs, FIN, RST) pass, counted as
/// [`Reason::TcpNoQuery`]. Data that cannot be judged is dropped, never passed, since the
/// resolver would take it unjudged: any segment with URG (the resolver reads its stream
/// without the urgent byte) as [`Reason::TcpUrgent`], data on a SYN (TCP Fast Open) as
/// [`Reason::TcpFastOpen`],
/// and data that is not a whole message from its first byte (a query written in pieces, or
/// the rest of one) as [`Reason::TcpPartial`]. The client's TCP sends either again — the query
/// after the handshake, the pieces joined into whole segments — where it is judged. So the
/// resolver's stream only ever moves past the start of a message in a segment that starts
/// there and holds the whole message: one this program judged.
#[inline(always)]
fn parse_tcp(
    ctx: &XdpContext,
    cfg: &Config,
    l3: usize,
    ihl: usize,
    l4: usize,
    l3_end: usize,
    v6: u64,
) -> Result<Frame, Reason> {
    // Ports, sequence and acknowledgement numbers, data offset, flags.
    let th: [u8; 14] = load(ctx, l4)?;
    if !cfg.watches_port(u16::from_be_bytes([th[2], th[3]])) {
        return Err(Reason::OtherPort);
    }
    let doff = (th[12] >> 4) as usize * 4;
    if doff < 20 || l4 + doff > l3_end {
        return Err(Reason::Malformed);
    }
    let flags = th[13];
    // Urgent data leaves the stream the resolver reads (see `Reason::TcpUrgent`); so does the
    // byte a pure ACK with URG announces, in a later segment.
    if flags & TCP_URG != 0 {
        return Err(Reason::TcpUrgent);
    }
    let data = l3_end - (l4 + doff);
    // A plain SYN — no ACK, FIN or RST, and no data (one with data is dropped below, and the
    // client sends it again without) — may start the connection's stream (see `stream`).
    if flags & (TCP_SYN | TCP_RST | TCP_ACK | TCP_FIN) == TCP_SYN && data == 0 {
        stream::syn(
            ctx,
            l3,
            l4,
            v6,
            u32::from_be_bytes([th[4], th[5], th[6], th[7]]),
        );
    }
    if data == 0 || flags & TCP_RST != 0 {
        return Err(Reason::TcpNoQuery);
    }
    if flags & TCP_SYN != 0 {
        return Err(Reason::TcpFastOpen);
    }
    if flags & TCP_ACK == 0 {
        return Err(Reason::TcpNoQuery);
    }
    if data < 2 {
        return Err(Reason::TcpPartial);
    }
    let prefix: [u8; 2] = load(ctx, l4 + doff)?;
    let msg_len = u16::from_be_bytes(prefix) as usize;
    if data < 2 + msg_len {
        return Err(Reason::TcpPartial);
    }
    Ok(Frame {
        l3,
        ihl,
        l4,
        l4_len: doff,
        dns: l4 + doff + 2,
        msg_len,
        seg_len: data,
        v6,
        tcp: 1,
        more: (data > 2 + msg_len) as u64,
    })
}

// The parts are BPF functions of their own, and their results plain integers: bpf-linker
// describes a Rust `Result` in BTF as a union with a member at a non-zero offset, which the
// kernel refuses (and without BTF, no `bpf_loop` callback).

/// `prepare`'s result: bit 63 set and the label count, or the pass reason.
const PREPARED: u64 = 1 << 63;

#[inline(always)]
fn unpack_prepared(v: u64) -> Result<u32, Reason> {
    if v & PREPARED != 0 {
        Ok(v as u32)
    } else {
        Err(Reason::from_u32(v as u32))
    }
}

/// `finish`'s result: the verdict in the high half, the reason in the low half; bit 63 set
/// for an error (a pass reason).
#[inline(always)]
fn unpack_finished(v: u64) -> Result<(u32, Reason), Reason> {
    if v & PREPARED != 0 {
        Err(Reason::from_u32(v as u32))
    } else {
        Ok(((v >> 32) as u32, Reason::from_u32(v as u32)))
    }
}

/// The first part: parses the frame and the query, and leaves what the walk and [`finish`]
/// need in scratch memory and `BLK_WALK`. Returns the number of labels to walk, or why the
/// packet passes (see [`unpack_prepared`]).
#[inline(never)]
fn prepare(ctx: &XdpContext, tcp_query: &mut u64) -> u64 {
    match prepare_parts(ctx, tcp_query) {
        Ok(labels) => PREPARED | labels as u64,
        Err(r) => r as u32 as u64,
    }
}

#[inline(always)]
fn prepare_parts(ctx: &XdpContext, tcp_query: &mut u64) -> Result<u32, Reason> {
    let cfg = CONFIG.get(0).ok_or(Reason::Malformed)?;
    let w = WALK.get_ptr_mut(0).ok_or(Reason::Malformed)?;
    let f = parse_frame(ctx, cfg)?;
    let s = SCRATCH.get_ptr_mut(0).ok_or(Reason::Malformed)?;
    // SAFETY: a per-CPU value, used only by this CPU for the duration of this packet.
    let s = unsafe { &mut *s };
    // Forget which of the (VLAN depth × IP version × header length) layouts we are in, so the
    // rest is verified once, not once per layout; then re-bound what the verifier needs.
    let f = Frame {
        l3: launder(&mut s.opaque[2], f.l3 as u64) as usize,
        ihl: launder(&mut s.opaque[3], f.ihl as u64) as usize,
        l4: launder(&mut s.opaque[4], f.l4 as u64) as usize,
        dns: launder(&mut s.opaque[5], f.dns as u64) as usize,
        msg_len: launder(&mut s.opaque[6], f.msg_len as u64) as usize,
        l4_len: launder(&mut s.opaque[19], f.l4_len as u64) as usize,
        seg_len: launder(&mut s.opaque[20], f.seg_len as u64) as usize,
        tcp: launder(&mut s.opaque[21], f.tcp) & 1,
        more: launder(&mut s.opaque[22], f.more) & 1,
        v6: launder(&mut s.opaque[31], f.v6) & 1,
    };
    if f.l3 > MAX_L4_OFFSET
        || f.l4 > MAX_L4_OFFSET
        || f.dns > MAX_L4_OFFSET + 62
        || f.msg_len > 0xffff
        || f.l4_len > 60
        || f.seg_len > 0xffff
    {
        return Err(Reason::Malformed);
    }
    // The frame, for the walk and `finish`, and for `pipelined` whatever this packet's exit.
    // SAFETY: a per-CPU value, used only by this CPU for the duration of this packet.
    unsafe {
        (*w).frame = [
            f.l3 as u64,
            f.ihl as u64,
            f.l4 as u64,
            f.dns as u64,
            f.msg_len as u64,
            f.l4_len as u64,
            f.seg_len as u64,
            f.tcp,
            f.more,
            f.v6,
        ];
    }
    // A TCP segment is judged only where its connection's next message starts, which then
    // moves past it (see `stream`). Called for TCP only; the transport is read back from
    // scratch memory afterwards, so the rest is verified once for both (see `rate_limit`).
    if f.tcp != 0 && stream::check(ctx) != 0 {
        return Err(Reason::TcpOutOfStep);
    }
    let f = Frame {
        // SAFETY: a valid, aligned reference into scratch memory.
        tcp: unsafe { core::ptr::read_volatile(&s.opaque[21]) } & 1,
        ..f
    };
    *tcp_query = f.more << 1;
    if f.msg_len < blocker_common::dns::HEADER_LEN {
        return Err(Reason::Malformed);
    }

    // Copy the part of the message we need (at most LOAD_MAX bytes) into scratch memory.
    let loaded = if f.msg_len < LOAD_MAX {
        f.msg_len
    } else {
        LOAD_MAX
    };
    // SAFETY: `s.msg` has room for LOAD_MAX bytes; the helper checks the packet bounds.
    let r = unsafe {
        r#gen::bpf_xdp_load_bytes(
            ctx.ctx,
            f.dns as u32,
            s.msg.as_mut_ptr().cast(),
            loaded as u32,
        )
    };
    if r != 0 {
        return Err(Reason::Malformed);
    }
    // The load made `loaded` (and `msg_len`, which it came from) precise for the verifier;
    // the name walk below refines them differently on each of its 255 exits. Laundered
    // copies keep the paths mergeable.
    let loaded = launder(&mut s.opaque[8], loaded as u64) as usize & 0x1ff;
    let msg_len = launder(&mut s.opaque[9], f.msg_len as u64) as usize & 0xffff;
    let f = Frame { msg_len, ..f };

    // Counted at the exit with the reason. Branch-free: a branch on `tcp` would make the
    // verifier walk everything below twice (once knowing it is 0, once knowing it is not).
    *tcp_query = f.tcp | f.more << 1;
    // The key secret: all zero until the controller writes it, and it writes it before any
    // rule, so an unset secret only ever meets an empty rule map.
    let secret = KEY.get(0).ok_or(Reason::Malformed)?;
    let q = parse_query(s, loaded, f.msg_len, secret)?;
    let epoch = cfg.epoch;
    // The key filter: a clear bit means no rule at that name, and no rule-map lookup.
    let probe = Probe::of(cfg.filter);
    let probe = Probe {
        shr: launder(&mut s.opaque[14], probe.shr as u64) as u32 & 63,
        off: launder(&mut s.opaque[15], probe.off),
        ..probe
    };
    let client = client_of(cfg);
    let client = Client {
        jurisdictions: 0,
        now: launder(&mut s.opaque[39], client.now),
    };
    // The client's address for a lookup of its jurisdictions if a scoped rule matches, read
    // only while some order is scoped.
    let mut client_addr_ok = 0u64;
    let mut client_key = [0u8; 16];
    if cfg.flags & CONFIG_SCOPED != 0 {
        if let Some(a) = client_addr(ctx, f.l3, s) {
            // SAFETY: a valid, aligned reference into scratch memory.
            let v6 = unsafe { core::ptr::read_volatile(&s.opaque[31]) } & 1;
            client_key = juris_addr(&a, v6 != 0);
            client_addr_ok = 1;
        }
        if let Some(c) = JCACHE.get_ptr_mut(0) {
            // SAFETY: a per-CPU value, used only by this CPU for the duration of this packet.
            unsafe { (*c)[0] = 0 };
        }
    }
    let client_addr_ok = launder(&mut s.opaque[38], client_addr_ok);
    // The walk over the name's suffixes, one `bpf_loop` step per label: the verifier checks
    // the step once, not once per possible label (see `walk_step`). Its inputs wait in
    // scratch memory (the loop's context would have to be on the 512-byte stack).
    decide_start(s);
    // SAFETY: a per-CPU value, used only by this CPU for the duration of this packet.
    unsafe {
        (*w).q = q;
        (*w).client = client;
        (*w).epoch = epoch as u64;
        (*w).probe = probe;
        (*w).client_addr = client_key;
        (*w).client_addr_ok = client_addr_ok;
    }
    // The labels whose suffix depth holds rules, in order: the walk's steps. The count goes
    // through scratch memory, so each label is verified once whatever came before it.
    let mut n = 0u64;
    for k in 0..blocker_common::dns::MAX_LABELS {
        if k >= q.labels {
            break;
        }
        if cfg.has_depth(q.labels - k) {
            // SAFETY: a per-CPU value, used only by this CPU for the duration of this packet.
            unsafe { (*w).steps[n as usize & (blocker_common::dns::MAX_LABELS - 1)] = k as u8 };
            n += 1;
        }
        n = launder(&mut s.opaque[61], n);
    }
    Ok(n as u32 & (blocker_common::dns::MAX_LABELS as u32 - 1))
}

/// The last part: the walk's decision becomes a verdict, counted, and for a block an answer
/// (see [`unpack_finished`]).
#[inline(never)]
fn finish(ctx: &XdpContext) -> u64 {
    match finish_parts(ctx) {
        Ok((verdict, r)) => (verdict as u64) << 32 | r as u32 as u64,
        Err(r) => PREPARED | r as u32 as u64,
    }
}

#[inline(always)]
fn finish_parts(ctx: &XdpContext) -> Result<(u32, Reason), Reason> {
    let cfg = CONFIG.get(0).ok_or(Reason::Malformed)?;
    let s = SCRATCH.get_ptr_mut(0).ok_or(Reason::Malformed)?;
    // SAFETY: a per-CPU value, used only by this CPU for the duration of this packet.
    let s = unsafe { &mut *s };
    let w = WALK.get(0).ok_or(Reason::Malformed)?;
    let q = w.q;
    let epoch = w.epoch as u32;
    let f = Frame::from_walk(&w.frame)?;
    let d = decide_end(s);
    // glibc's A and AAAA queries in one TCP segment: when the next message asks the same
    // name, an answer leaves it and the connection open (see `rewrite::same_name_next`).
    // Here, before the paths of the actions part: compared once, not once per action. Called
    // for every query (it returns at once unless TCP data follows the first message): calling
    // it only for those from `blocker`, on `tcp_query`, made the verifier walk `finish` once
    // per value (943,112 verified instructions instead of 775,913).
    rewrite::same_name_next(ctx);
    // A passed query with more data behind it in its TCP segment is cut to itself afterwards
    // (see `pipelined`).
    let pass = |reason: Reason| Ok((XDP_PASS, reason));
    // Side channels: an event that does not fit is lost, and nothing the counters or events
    // return reaches the verdict (prog_test_run fills the event ring buffer to check it).
    // Shadow hits were recorded by the walk (`walk_step`, `record_shadow`).
    let slot = d.hit;
    if slot.is_none() {
        return pass(d.pass_reason());
    }
    let action = Action::from_u8(slot.action);
    let hits = count_hit(&slot, false, cfg.generation);
    emit(ctx, f.l3, cfg, &slot, false, q.qtype, hits, s);
    match action {
        Action::None => pass(Reason::NoMatch),
        Action::Pass => pass(Reason::Allowed),
        Action::Drop => Ok((XDP_DROP, Reason::Dropped)),
        // RPZ's rpz-tcp-only: over TCP the query is resolved as if no rule matched. The
        // transport read back from scratch memory, not from `f` (see `rate_limit`).
        // SAFETY: a valid, aligned reference into scratch memory.
        Action::Tc if unsafe { core::ptr::read_volatile(&s.opaque[21]) } & 1 != 0 => {
            pass(Reason::TcOverTcp)
        }
        _ => {
            // The one place an answer is decided: response rate limiting first (UDP only).
            // Laundered: the limiter's exits become one path again (without it the verifier
            // walks the answer code once per exit).
            let limit = rate_limit(ctx, &f, cfg, s) as u64;
            let limit = launder(&mut s.opaque[23], limit);
            if limit >= Limit::Drop as u64 {
                return Ok((XDP_DROP, Reason::RrlDropped));
            }
            // 1 for a slip: a bare TC=1 answer (header, the question, and an OPT record
            // without options if the query had one: `max_len` 0 leaves no room for anything
            // else; never larger than the query). Chosen by arithmetic, not a branch, so the
            // answer code below is verified once for both.
            let slip = limit & 1;
            let keep = 1 - slip;
            let reason =
                (Reason::of_action(action) as u64) * keep + (Reason::RrlSlipped as u64) * slip;
            let action = Action::from_u8(
                ((action as u8 as u64) * keep + (Action::Tc as u8 as u64) * slip) as u8,
            );
            // The transport read back from scratch memory, as above.
            // SAFETY: a valid, aligned reference into scratch memory.
            let tcp = unsafe { core::ptr::read_volatile(&s.opaque[21]) } & 1 != 0;
            let max_len = answer_room(cfg, f.msg_len, tcp) * keep as usize;
            // The order's metadata in the same copy as the rules this packet was matched
            // against.
            let order_at = blocker_common::order_entry(epoch, slot.order_id);
            let order = ORDERS.get(order_at);
            let local = local_answer(slot.local, q.qtype);
            // Local data without an entry for this type nor a default one: NODATA (never the
            // configured sinkhole address).
            let action = if slot.local != 0 && local.is_none() && action == Action::Sinkhole {
                Action::Nodata
            } else {
                action
            };
            let len = write_answer(s, &q, max_len, action, cfg, order, local);
            #[cfg(feature = "debug-log")]
            aya_log_ebpf::debug!(ctx, "answering: action {} len {}", action as u8, len);
            // Paths arrive here with exact values of their own (the action, the query's
            // fields, the order). Kept in scratch memory and read back only after the rewrite,
            // none of them is live during it, so the verifier checks the rewrite (UDP and TCP)
            // once for all of those paths instead of once for each.
            let saved = Saved {
                action: action as u64,
                order_at: order_at as u64,
                qtype: q.qtype as u64,
                q_end: q.q_end as u64,
                flags: q.edns as u64 | (q.dnssec_ok as u64) << 1,
                reason,
                max_len: max_len as u64,
                local: slot.local as u64,
            };
            saved.put(s);
            let r = rewrite::to_answer(ctx, &f, s, len);
            let r = match r {
                Err(rewrite::Failed::NoRoom) => {
                    // The frame cannot grow (no tailroom, e.g. some veth and generic-XDP skbs):
                    // the same answer, shortened to the query's size.
                    let v = Saved::get(s);
                    let action = Action::from_u8(v.action as u8);
                    let q = blocker_common::dns::Query {
                        labels: 0,
                        name_len: 0,
                        chunks: 0,
                        name_hash: blocker_common::key::Horner::ZERO,
                        qtype: v.qtype as u16,
                        qclass: 1,
                        q_end: v.q_end as usize & blocker_common::dns::MSG_MASK,
                        edns: v.flags & 1 != 0,
                        dnssec_ok: v.flags & 2 != 0,
                    };
                    let small = (v.max_len as usize).min(f.msg_len);
                    let order = ORDERS.get(v.order_at as u32);
                    let local = local_answer(v.local as u16, v.qtype as u16);
                    let len = write_answer(s, &q, small, action, cfg, order, local);
                    rewrite::to_answer(ctx, &f, s, len)
                }
                r => r,
            };
            match r {
                Ok(()) => Ok((XDP_TX, Reason::from_u32(Saved::get(s).reason as u32))),
                // A blocked query over TCP is never passed: the resolver must not see it.
                Err(rewrite::Failed::Untouched | rewrite::Failed::NoRoom) if f.tcp != 0 => {
                    Ok((XDP_DROP, Reason::RewriteFailed))
                }
                Err(rewrite::Failed::Untouched | rewrite::Failed::NoRoom) => {
                    Ok((XDP_PASS, Reason::RewriteFailed))
                }
                Err(rewrite::Failed::Changed) => Ok((XDP_DROP, Reason::RewriteFailed)),
            }
        }
    }
}

/// The walks' context, on `blocker`'s stack: the program's context (for block events) and
/// the number of steps in one walk.
#[repr(C)]
struct Walk {
    xdp: *mut aya_ebpf::bindings::xdp_md,
    labels: u64,
}

/// Scratch slots of the walks: the next step's place in the current walk, and the shadow
/// hits recorded so far.
const WALK_POS: usize = 27;
const SHADOW_ROUNDS: usize = 28;

/// One step of the walk: the suffix that starts at the walk's next label (see
/// `blocker_common::dns::decide_step`). A `bpf_loop` callback, verified once for every label;
/// its inputs come from scratch memory and the maps. At the end of a walk, the step first
/// records the shadow order the walk found ahead of the decider, if any (else it stops the
/// loop), and starts the next walk, where that order is absent (see [`record_shadow`]).
/// Returns 1 (stop) then, or if a map is missing, which never happens once the program is
/// loaded.
#[inline(never)]
extern "C" fn walk_step(i: u64, walk: *mut core::ffi::c_void) -> i64 {
    // SAFETY: `blocker` passes a pointer to a `Walk` on its stack as the loop's context.
    let walk = unsafe { &*(walk as *const Walk) };
    let (Some(cfg), Some(w)) = (CONFIG.get(0), WALK.get(0)) else {
        return 1;
    };
    let (Some(secret), Some(s), Some(gates)) = (KEY.get(0), SCRATCH.get_ptr_mut(0), GATES.get(0))
    else {
        return 1;
    };
    // SAFETY: a per-CPU value, used only by this CPU for the duration of this packet.
    let s = unsafe { &mut *s };
    if i == 0 {
        s.opaque[WALK_POS] = 0;
        s.opaque[SHADOW_ROUNDS] = 0;
    }
    // SAFETY: a valid, aligned reference into scratch memory.
    let mut pos = unsafe { core::ptr::read_volatile(&s.opaque[WALK_POS]) };
    if pos >= walk.labels {
        if record_shadow(walk.xdp, cfg, w, s) != 0 {
            return 1;
        }
        pos = 0;
    }
    // Laundered: both ways here continue as one path for the verifier.
    let pos = launder(&mut s.opaque[WALK_POS], pos);
    s.opaque[WALK_POS] = pos + 1;
    // The step's label: one whose suffix depth holds rules (see `prepare`).
    let k = w.steps[pos as usize & (blocker_common::dns::MAX_LABELS - 1)] as usize;
    let probe = w.probe;
    let Some(region) = FILTER.get_ptr(probe.region & 1) else {
        return 1;
    };
    let epoch = w.epoch as u32;
    let mut may_hold = |key: &blocker_common::RuleKey| {
        let (word, mask) = probe.bit(key);
        // SAFETY: `region` points to a whole Region value; `word` < REGION_WORDS.
        let bits = unsafe { (*region).words[word] };
        probe.may_hold(bits, mask)
    };
    let mut lookup = |key: &blocker_common::RuleKey| {
        // SAFETY: BLK_RULES and BLK_RULES_WIDE are not preallocated, so an element is never
        // reused while we read it.
        let set = unsafe { RULES.get(key) }?.at(epoch);
        if set.is_wide() {
            unsafe { RULES_WIDE.get(key) }.map(|v| v.at(epoch))
        } else {
            Some(set.widen())
        }
    };
    let mut order = |id: u16| gates.get(epoch, id);
    let mut jurisdictions = || client_jurisdictions(cfg, w);
    decide_step(
        k,
        cfg,
        secret,
        s,
        &w.q,
        &w.client,
        &mut may_hold,
        &mut lookup,
        &mut order,
        &mut jurisdictions,
    );
    0
}

/// At the end of a walk: records the hit of the shadow order it found ahead of the decider
/// (its counters and, when sampled, a block event) and readies the next walk, where that
/// order is absent (`decide_next_shadow`): a shadow order records what it would have done and
/// the search goes on as if it were absent. Returns 1 when there is nothing to record or
/// SHADOW_MAX hits are recorded (the walks are over).
#[inline(never)]
fn record_shadow(
    xdp: *mut aya_ebpf::bindings::xdp_md,
    cfg: &Config,
    w: &blocker_common::dns::WalkState,
    s: &mut blocker_common::dns::Scratch,
) -> i64 {
    let hit = decide_next_shadow(s);
    if hit.is_none() {
        return 1;
    }
    // The IP header's offset, re-bounded for the verifier (see `Frame::from_walk`).
    // SAFETY: a valid, aligned reference into a map value.
    let l3 = unsafe { core::ptr::read_volatile(&w.frame[0]) } as usize;
    if l3 > MAX_L4_OFFSET {
        return 1;
    }
    let ctx = XdpContext::new(xdp);
    let hits = count_hit(&hit, true, cfg.generation);
    emit(&ctx, l3, cfg, &hit, true, w.q.qtype, hits, s);
    // SAFETY: a valid, aligned reference into scratch memory.
    let rounds = unsafe { core::ptr::read_volatile(&s.opaque[SHADOW_ROUNDS]) } + 1;
    s.opaque[SHADOW_ROUNDS] = rounds;
    (rounds >= SHADOW_MAX as u64) as i64
}

/// What the answer path needs after the rewrite, kept in scratch memory across it (see the
/// caller).
struct Saved {
    action: u64,
    /// The exit reason of a sent answer (the action's, or `rrl_slipped`).
    reason: u64,
    /// The answer's size limit (0 for a slip).
    max_len: u64,
    /// Entry of the order's metadata in BLK_ORDERS.
    order_at: u64,
    qtype: u64,
    q_end: u64,
    flags: u64,
    /// The rule's local data id.
    local: u64,
}

impl Saved {
    const AT: usize = 44;

    #[inline(always)]
    fn put(&self, s: &mut blocker_common::dns::Scratch) {
        for (i, v) in [
            self.action,
            self.order_at,
            self.qtype,
            self.q_end,
            self.flags,
            self.reason,
            self.max_len,
            self.local,
        ]
        .into_iter()
        .enumerate()
        {
            // SAFETY: a valid, aligned, exclusive reference into scratch memory.
            unsafe { core::ptr::write_volatile(&mut s.opaque[Self::AT + i], v) };
        }
    }

    #[inline(always)]
    fn get(s: &blocker_common::dns::Scratch) -> Saved {
        // SAFETY: valid, aligned references into scratch memory.
        let r = |i: usize| unsafe { core::ptr::read_volatile(&s.opaque[Self::AT + i]) };
        Saved {
            action: r(0),
            order_at: r(1),
            qtype: r(2),
            q_end: r(3),
            flags: r(4),
            reason: r(5),
            max_len: r(6),
            local: r(7) & 0xffff,
        }
    }
}

/// A program that passes every packet. It is the baseline of the benchmarks, and the program
/// to put on the far end of a veth pair: native XDP_TX on a veth only delivers frames to a
/// peer that runs an XDP program itself.
#[xdp]
pub fn blocker_noop(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

/// Benchmark reference, never attached by `blocker`: the answer-everything floor. Every UDP
/// query to port 53 (Ethernet, IPv4 without options or IPv6 without extension headers, one
/// question, opcode QUERY) is answered REFUSED in place, the cheapest correct way: the
/// addresses and ports swapped, QR and RA set, the UDP checksum updated for the one changed
/// word (RFC 1624), XDP_TX. The question and everything after it are sent back as they came
/// (as NLnet Labs' dns-says-no does). What no XDP answerer can do for less.
#[xdp]
pub fn blocker_floor(ctx: XdpContext) -> u32 {
    reflect(&ctx, true).unwrap_or(XDP_PASS)
}

/// Benchmark reference, never attached by `blocker`: the reflector. The same parse as
/// [`blocker_floor`], then the frame goes back with its addresses and ports swapped and
/// nothing else changed: the least any XDP answerer costs on the real path.
#[xdp]
pub fn blocker_reflect(ctx: XdpContext) -> u32 {
    reflect(&ctx, false).unwrap_or(XDP_PASS)
}

/// Benchmark reference, never attached by `blocker`: the receiver on the load generator's
/// veth. A UDP/IPv4 datagram (no IP options) from port 53 to a port below 32768 (the
/// generator's; kdig's ephemeral ports are above) is counted in `BLK_BENCH_REPLIES` by RCODE,
/// or in entry 16 when it is a query sent back (the reflector's), and dropped. Everything else
/// passes, ARP included.
#[xdp]
pub fn blocker_sink(ctx: XdpContext) -> u32 {
    sink(&ctx).unwrap_or(XDP_PASS)
}

#[inline(always)]
fn sink(ctx: &XdpContext) -> Result<u32, Reason> {
    if be16_at(ctx, 12)? != ETH_P_IPV4 {
        return Ok(XDP_PASS);
    }
    let vihl: *const u8 = ptr_at(ctx, EthHdr::LEN)?;
    let proto: *const u8 = ptr_at(ctx, EthHdr::LEN + 9)?;
    // SAFETY: ptr_at checked both bytes.
    if unsafe { *vihl } != 0x45 || unsafe { *proto } != 17 {
        return Ok(XDP_PASS);
    }
    let l4 = EthHdr::LEN + Ipv4Hdr::LEN;
    if be16_at(ctx, l4)? != 53 || be16_at(ctx, l4 + 2)? >= 32768 {
        return Ok(XDP_PASS);
    }
    let flags: *const [u8; 2] = ptr_at(ctx, l4 + UdpHdr::LEN + 2)?;
    // SAFETY: ptr_at checked the two bytes.
    let f = unsafe { *flags };
    let slot = if f[0] & 0x80 == 0 {
        16
    } else {
        u32::from(f[1] & 0x0f)
    };
    if let Some(c) = BENCH_REPLIES.get_ptr_mut(slot) {
        // SAFETY: a valid pointer into this CPU's entry.
        unsafe { *c += 1 };
    }
    Ok(XDP_DROP)
}

#[inline(always)]
fn swap<const N: usize>(ctx: &XdpContext, a: usize, b: usize) -> Result<(), Reason> {
    let pa: *mut [u8; N] = ptr_at(ctx, a)?;
    let pb: *mut [u8; N] = ptr_at(ctx, b)?;
    // SAFETY: ptr_at checked that both ranges are in the packet.
    unsafe { core::ptr::swap(pa, pb) };
    Ok(())
}

#[inline(always)]
fn reflect(ctx: &XdpContext, answer: bool) -> Result<u32, Reason> {
    let (l4, v6) = match be16_at(ctx, 12)? {
        ETH_P_IPV4 => {
            let vihl: *const u8 = ptr_at(ctx, EthHdr::LEN)?;
            let proto: *const u8 = ptr_at(ctx, EthHdr::LEN + 9)?;
            // SAFETY: ptr_at checked both bytes.
            if unsafe { *vihl } != 0x45 || unsafe { *proto } != 17 {
                return Ok(XDP_PASS);
            }
            (EthHdr::LEN + Ipv4Hdr::LEN, false)
        }
        ETH_P_IPV6 => {
            let next: *const u8 = ptr_at(ctx, EthHdr::LEN + 6)?;
            // SAFETY: ptr_at checked the byte.
            if unsafe { *next } != 17 {
                return Ok(XDP_PASS);
            }
            (EthHdr::LEN + Ipv6Hdr::LEN, true)
        }
        _ => return Ok(XDP_PASS),
    };
    if be16_at(ctx, l4 + 2)? != 53 {
        return Ok(XDP_PASS);
    }
    let dns = l4 + UdpHdr::LEN;
    let flags: *mut [u8; 2] = ptr_at(ctx, dns + 2)?;
    // SAFETY: ptr_at checked the two bytes.
    let old = unsafe { *flags };
    // A query (QR=0, opcode QUERY) with one question.
    if old[0] & 0xf8 != 0 || be16_at(ctx, dns + 4)? != 1 {
        return Ok(XDP_PASS);
    }
    if answer {
        // QR, RD kept; RA, CD kept, REFUSED.
        let new = [0x80 | (old[0] & 0x01), 0x80 | (old[1] & 0x10) | 5];
        // SAFETY: as above.
        unsafe { *flags = new };
        let csum: *mut [u8; 2] = ptr_at(ctx, l4 + 6)?;
        // SAFETY: ptr_at checked the two bytes.
        let c = u16::from_be_bytes(unsafe { *csum });
        // IPv4 may leave the UDP checksum out (0); IPv6 never does.
        if c != 0 || v6 {
            // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').
            let m = u16::from_be_bytes(old) as u32;
            let m2 = u16::from_be_bytes(new) as u32;
            let mut sum = (!c as u32 & 0xffff) + (!m & 0xffff) + m2;
            sum = (sum & 0xffff) + (sum >> 16);
            sum = (sum & 0xffff) + (sum >> 16);
            let mut r = !(sum as u16);
            if r == 0 {
                r = 0xffff;
            }
            // SAFETY: as above.
            unsafe { *csum = r.to_be_bytes() };
        }
    }
    swap::<6>(ctx, 0, 6)?;
    if v6 {
        swap::<16>(ctx, EthHdr::LEN + 8, EthHdr::LEN + 24)?;
    } else {
        swap::<4>(ctx, EthHdr::LEN + 12, EthHdr::LEN + 16)?;
    }
    swap::<2>(ctx, l4, l4 + 2)?;
    Ok(XDP_TX)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable: the verifier rejects any program with a reachable panic path.
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
