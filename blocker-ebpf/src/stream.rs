//! Where each TCP connection's stream stands: a segment is judged only from where the
//! connection's next message starts (or as the last message sent again), so the resolver's
//! stream never moves past the start of a message that no judged segment started with (see
//! `blocker_common::FlowSeq`). The SYN sets where the first message starts; every segment
//! admitted moves it on past its first message, whatever its verdict. Connections are keyed by
//! addresses and ports in `BLK_TCP_FLOWS`, an LRU map: data of one whose SYN the program did
//! not see (open before the program was loaded, or pushed out of the map) is dropped, and the
//! client reconnects.
//!
//! Each function is a BPF function of its own that reads what it needs from the maps (the
//! frame `prepare` stored), so the verifier checks it once, not once per path into it.

use aya_ebpf::{
    bindings::{BPF_F_CURRENT_NETNS, BPF_TCP_LISTEN, BPF_TCP_TIME_WAIT},
    helpers::generated as r#gen,
    programs::XdpContext,
};
use blocker_common::{FlowKey, FlowSeq};
use core::intrinsics::{atomic_cxchg, AtomicOrdering};

use crate::{
    load,
    maps::{TCP_FLOWS, WALK},
    Frame,
};

/// The connection of the segment whose IP header is at `l3` and TCP header at `l4`.
#[inline(always)]
fn key_of(ctx: &XdpContext, l3: usize, l4: usize, v6: u64) -> Option<FlowKey> {
    let v6 = (v6 & 1) as usize;
    let mut k = FlowKey {
        family: 4 + 2 * v6 as u32,
        ..FlowKey::default()
    };
    // IPv4: the addresses at 12 and 16, four bytes each; IPv6: at 8 and 24, sixteen each.
    let len = 4 + 12 * v6;
    let src = l3 + 12 - 4 * v6;
    let (a, b) = k.addrs.split_at_mut(16);
    // SAFETY: at most 16 bytes into each 16-byte half of `k.addrs`; the helper checks the
    // packet bounds.
    let r = unsafe {
        r#gen::bpf_xdp_load_bytes(ctx.ctx, src as u32, a.as_mut_ptr().cast(), len as u32)
            | r#gen::bpf_xdp_load_bytes(
                ctx.ctx,
                (src + len) as u32,
                b.as_mut_ptr().cast(),
                len as u32,
            )
    };
    if r != 0 {
        return None;
    }
    k.ports = load::<4>(ctx, l4).ok()?;
    Some(k)
}

/// The kernel's coarse clock in units of 2^30 ns (see `FlowSeq::seen`).
#[inline(always)]
fn now() -> u32 {
    // SAFETY: plain helper call.
    (unsafe { r#gen::bpf_ktime_get_coarse_ns() } >> 30) as u32
}

/// Whether the resolver's own TCP, when the resolver runs in this interface's network
/// namespace, keeps a connection on the addresses and ports of `k` (or is opening one): any
/// socket but a listener or a connection closed in TIME_WAIT. A SYN there does not start a
/// new connection (the resolver's TCP answers it with a challenge ACK, RFC 5961).
#[inline(always)]
fn live_connection(ctx: &XdpContext, k: &FlowKey, v6: u64) -> bool {
    // A `bpf_sock_tuple`: client address, server address, ports as on the wire (IPv4: 12
    // bytes; IPv6: 36).
    let mut t = [0u32; 9];
    let size = if v6 & 1 != 0 {
        for i in 0..4 {
            t[i] = u32::from_ne_bytes([
                k.addrs[4 * i],
                k.addrs[4 * i + 1],
                k.addrs[4 * i + 2],
                k.addrs[4 * i + 3],
            ]);
            t[4 + i] = u32::from_ne_bytes([
                k.addrs[16 + 4 * i],
                k.addrs[16 + 4 * i + 1],
                k.addrs[16 + 4 * i + 2],
                k.addrs[16 + 4 * i + 3],
            ]);
        }
        t[8] = u32::from_ne_bytes(k.ports);
        36
    } else {
        t[0] = u32::from_ne_bytes([k.addrs[0], k.addrs[1], k.addrs[2], k.addrs[3]]);
        t[1] = u32::from_ne_bytes([k.addrs[16], k.addrs[17], k.addrs[18], k.addrs[19]]);
        t[2] = u32::from_ne_bytes(k.ports);
        12
    };
    // SAFETY: `t` is a stack buffer of at least `size` bytes; a socket found is released
    // below, on the one path that follows.
    let sk = unsafe {
        r#gen::bpf_skc_lookup_tcp(
            ctx.ctx.cast(),
            t.as_mut_ptr().cast(),
            size,
            BPF_F_CURRENT_NETNS as u64,
            0,
        )
    };
    if sk.is_null() {
        return false;
    }
    // SAFETY: a socket the helper returned; `state` is readable on every kind it returns.
    let state = unsafe { (*sk).state };
    // SAFETY: releases the reference the lookup took.
    unsafe { r#gen::bpf_sk_release(sk.cast()) };
    state != BPF_TCP_LISTEN as u32 && state != BPF_TCP_TIME_WAIT as u32
}

/// A SYN with sequence number `isn` starts the connection's stream — unless the resolver's
/// TCP, in this namespace, keeps a live connection on these addresses and ports (see
/// [`live_connection`]), or a stream followed on them moved lately (see
/// `FlowSeq::after_syn`). The first closes the way back in through a stream the program lost
/// (pushed out of the map, or gone with a reload) while the connection lives; the second
/// holds where no connection shows yet: a handshake answered with a SYN cookie keeps none,
/// and a SYN the stack has not yet seen (a batch, another queue) leaves none, so a second SYN
/// at another number must not move the stream then. Called from the TCP parse, for a plain
/// SYN without data. (A RST changes nothing: one the resolver's TCP ignores, out of its
/// window, must not make the program forget the stream.)
#[inline(never)]
pub fn syn(ctx: &XdpContext, l3: usize, l4: usize, v6: u64, isn: u32) {
    let Some(k) = key_of(ctx, l3 & 0x3ff, l4 & 0x7ff, v6) else {
        return;
    };
    if live_connection(ctx, &k, v6) {
        return;
    }
    // SAFETY: as in `check`.
    let was = unsafe { TCP_FLOWS.get(&k) }.copied();
    if let Some(s) = FlowSeq::after_syn(was.as_ref(), isn, now()) {
        let _ = TCP_FLOWS.insert(&k, &s, 0);
    }
}

/// For a TCP segment whose data starts with a whole message (the frame `prepare` stored):
/// 1 when its connection's stream does not admit it there — or when no stream is followed on
/// its addresses and ports (no SYN seen: a connection open before the program was loaded, or
/// pushed out of the map) — else 0, the stream moved past the segment's first message.
///
/// It moves whatever the verdict on the segment turns out to be: a segment dropped by a rule
/// and sent again is the last message again, admitted and judged the same way, and the
/// resolver only ever reads messages from where a judged segment started (see
/// `FlowSeq::admits`). The move is written in place (a lookup, not an update of the LRU map),
/// with one compare-and-swap from the word read: when another CPU moved the stream in between
/// (a segment judged at the same place at the same time), this one is dropped, as it would
/// have been had the two come one after the other — before any rule is looked up or counted.
#[inline(never)]
pub fn check(ctx: &XdpContext) -> u64 {
    // UDP returns at once. The frame's bounds are those `prepare` just checked: it cannot
    // fail here.
    let Some(w) = WALK.get(0) else {
        return 0;
    };
    let Ok(f) = Frame::from_walk(&w.frame) else {
        return 0;
    };
    if f.tcp == 0 {
        return 0;
    }
    let (Some(key), Ok(seq)) = (key_of(ctx, f.l3, f.l4, f.v6), load::<4>(ctx, f.l4 + 4)) else {
        return 1;
    };
    let seq = u32::from_be_bytes(seq);
    let first = f.msg_len as u32 + 2;
    let Some(s) = TCP_FLOWS.get_ptr_mut(&key) else {
        return 1;
    };
    // `last` and `next` in one load, the word swapped below (see `FlowSeq::position`).
    // SAFETY: an aligned u64 at the start of a map value (the kernel aligns hash map values
    // to 8; FlowSeq is aligned to 8 too). An LRU element may be recycled while we read it:
    // the memory stays valid, and the worst outcome is one segment judged against another
    // connection's numbers.
    let position = unsafe { core::ptr::read_volatile(s.cast::<u64>()) };
    let was = FlowSeq::at(position);
    if !was.admits(seq, first) {
        return 1;
    }
    let t = now();
    let mut moved = was;
    moved.advance(seq, first, t);
    // SAFETY: as above; every CPU changes the word only through this compare-and-swap
    // (BPF_CMPXCHG), and a SYN replaces the element whole.
    let (_, swapped) = unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
            s.cast::<u64>(),
            position,
            moved.position(),
        )
    };
    if !swapped {
        return 1;
    }
    // SAFETY: as above; a plain store (only the idle test of a SYN reads it).
    unsafe { (*s).seen = t };
    0
}
