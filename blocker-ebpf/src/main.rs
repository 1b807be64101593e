//! The blocker XDP program: the one place where a packet becomes a verdict.
//!
//! Ethernet (up to two VLAN tags) → IPv4 (options) or IPv6 (extension headers) → UDP to a
//! configured DNS port → the DNS query, parsed and matched by blocker-common → pass, drop, or
//! the query rewritten in place into an answer and sent back with XDP_TX.
//!
//! Fail open: anything not understood is passed and counted by reason. Every exit goes
//! through [`blocker`], which counts exactly one reason.
#![no_std]
#![no_main]

mod maps;
mod rewrite;

use aya_ebpf::{
    bindings::{
        xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
        BPF_NOEXIST,
    },
    helpers::generated as r#gen,
    macros::xdp,
    programs::XdpContext,
};
use blocker_common::{
    answer::{write_answer, MAX_GROWTH},
    dns::{find_rule_filtered, launder, parse_query, LOAD_MAX},
    filter::Probe,
    Action, BlockEvent, Config, Reason, RuleHits, Slot, ACTION_COUNT, PRIVACY_NONE,
    PRIVACY_TRUNCATED,
};
use core::mem::size_of;
use network_types::{eth::EthHdr, ip::Ipv4Hdr, ip::Ipv6Hdr, udp::UdpHdr};

use crate::maps::{
    CONFIG, EVENTS, FILTER, KEY, ORDERS, ORDER_HITS, RULES, RULE_HITS, SCRATCH, STATS,
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
const MAX_L4_OFFSET: usize = 1024;
const IPPROTO_UDP: u8 = 17;
const IPV6_HOPOPTS: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DSTOPTS: u8 = 60;

/// Where the layers of a DNS-over-UDP frame start.
pub struct Frame {
    /// Offset of the IP header.
    pub l3: usize,
    /// IPv4 header length in bytes (0 for IPv6).
    pub ihl: usize,
    /// Offset of the UDP header.
    pub l4: usize,
    /// Offset of the DNS message.
    pub dns: usize,
    /// Length of the DNS message (from the UDP length field).
    pub msg_len: usize,
    pub v6: bool,
}

#[xdp]
pub fn blocker(ctx: XdpContext) -> u32 {
    let (verdict, reason) = match inspect(&ctx) {
        Ok(v) => v,
        Err(reason) => (XDP_PASS, reason),
    };
    count(reason);
    verdict
}

#[inline(always)]
fn count(reason: Reason) {
    if let Some(s) = STATS.get_ptr_mut(0) {
        // SAFETY: a per-CPU value: only this CPU writes it, and XDP runs with preemption off.
        let s = unsafe { &mut *s };
        s.counts[Reason::Packets as usize] += 1;
        if let Some(c) = s.counts.get_mut(reason as usize) {
            *c += 1;
        }
    }
}

/// Counts a rule's hit; returns this CPU's count for the rule and whether this is the rule's
/// first hit on this CPU since the list last changed.
#[inline(always)]
fn count_hit(slot: &Slot, action: Action, generation: u32) -> (u64, bool) {
    let r = match RULE_HITS.get_ptr_mut(slot.rule_id) {
        // SAFETY: a per-CPU value, written only by this CPU.
        Some(h) => unsafe {
            (*h).hits += 1;
            let first = (*h).generation != generation;
            (*h).generation = generation;
            ((*h).hits, first)
        },
        None => {
            // First hit of this rule on any CPU. Losing a race with another CPU (EEXIST) loses
            // this one count at most.
            let v = RuleHits {
                hits: 1,
                generation,
                _reserved: 0,
            };
            let _ = RULE_HITS.insert(slot.rule_id, v, BPF_NOEXIST as u64);
            (1, true)
        }
    };
    if let Some(o) = ORDER_HITS.get_ptr_mut(slot.order_id as u32) {
        // SAFETY: a per-CPU value, written only by this CPU.
        let o = unsafe { &mut *o };
        o.by_action[action as usize & (ACTION_COUNT - 1)] += 1;
    }
    r
}

/// Sends a block event when sampling asks for one: the first hit of a rule after each list
/// change, then every `event_every`th hit (per CPU). A full ring buffer loses the event, never
/// the verdict.
#[inline(always)]
fn emit(
    ctx: &XdpContext,
    f: &Frame,
    cfg: &Config,
    slot: &Slot,
    qtype: u16,
    (hits, first): (u64, bool),
) {
    let every = cfg.event_every as u64;
    if every == 0 || (!first && hits % every != 0) {
        return;
    }
    let mut ev = BlockEvent {
        // SAFETY: plain helper call.
        time_ns: unsafe { r#gen::bpf_ktime_get_ns() },
        rule_id: slot.rule_id,
        order_id: slot.order_id,
        action: slot.action,
        qtype,
        first: first as u8,
        ..BlockEvent::default()
    };
    if cfg.event_privacy != PRIVACY_NONE {
        if f.v6 {
            if let Ok(a) = load::<16>(ctx, f.l3 + 8) {
                ev.client = a;
                ev.family = 6;
            }
        } else if let Ok(a) = load::<4>(ctx, f.l3 + 12) {
            ev.client[..4].copy_from_slice(&a);
            ev.family = 4;
        }
        if cfg.event_privacy == PRIVACY_TRUNCATED {
            // /24 for IPv4, /48 for IPv6.
            let keep = if f.v6 { 6 } else { 3 };
            for i in 0..16 {
                if i >= keep {
                    ev.client[i] = 0;
                }
            }
        }
    }
    let _ = EVENTS.output::<BlockEvent>(&ev, 0);
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
    let (ihl, l4, l3_end, v6) = match proto {
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
            // MF set or a fragment offset: not the whole datagram.
            if u16::from_be_bytes(ip.frags) & 0x3fff != 0 {
                return Err(Reason::Fragment);
            }
            if ip.proto != IPPROTO_UDP {
                return Err(Reason::NotUdp);
            }
            (ihl, l3 + ihl, l3 + tot_len, false)
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
                    _ => break,
                }
            }
            match next {
                IPPROTO_UDP => {}
                IPV6_FRAGMENT => return Err(Reason::Fragment),
                _ => return Err(Reason::NotUdp),
            }
            (0, l4, l3_end, true)
        }
        _ => return Err(Reason::NotIp),
    };

    if l4 > MAX_L4_OFFSET {
        return Err(Reason::NotUdp);
    }
    let udp: [u8; UdpHdr::LEN] = load(ctx, l4)?;
    if !cfg.watches_port(u16::from_be_bytes([udp[2], udp[3]])) {
        return Err(Reason::OtherPort);
    }
    let ulen = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    if ulen < UdpHdr::LEN || l4 + ulen > l3_end {
        return Err(Reason::Malformed);
    }
    Ok(Frame {
        l3,
        ihl,
        l4,
        dns: l4 + UdpHdr::LEN,
        msg_len: ulen - UdpHdr::LEN,
        v6,
    })
}

#[inline(always)]
fn inspect(ctx: &XdpContext) -> Result<(u32, Reason), Reason> {
    let cfg = CONFIG.get(0).ok_or(Reason::Malformed)?;
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
        v6: f.v6,
    };
    if f.l3 > MAX_L4_OFFSET
        || f.l4 > MAX_L4_OFFSET
        || f.dns > MAX_L4_OFFSET + 8
        || f.msg_len > 0xffff
    {
        return Err(Reason::Malformed);
    }
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

    // The key secret: all zero until the controller writes it, and it writes it before any
    // rule, so an unset secret only ever meets an empty rule map.
    let secret = KEY.get(0).ok_or(Reason::Malformed)?;
    let q = parse_query(s, loaded, f.msg_len, secret)?;
    let active = (cfg.active & 1) as usize;
    // The key filter: a clear bit means no rule at that name, and no rule-map lookup.
    let probe = Probe::of(cfg.filter);
    let region = FILTER.get_ptr(probe.region).ok_or(Reason::Malformed)?;
    let probe = Probe {
        shr: launder(&mut s.opaque[14], probe.shr as u64) as u32 & 63,
        off: launder(&mut s.opaque[15], probe.off),
        ..probe
    };
    let may_hold = |key: &blocker_common::RuleKey| {
        let (w, mask) = probe.bit(key);
        // SAFETY: `region` points to a whole Region value; `w` < REGION_WORDS.
        let word = unsafe { (*region).words[w] };
        probe.may_hold(word, mask)
    };
    let slot = find_rule_filtered(cfg, secret, s, &q, may_hold, |key| {
        // SAFETY: BLK_RULES is not preallocated, so an element is never reused while we read it.
        unsafe { RULES.get(key) }.map(|v| v.sets[active])
    });
    let Some(slot) = slot else {
        return Ok((XDP_PASS, Reason::NoMatch));
    };
    let action = Action::from_u8(slot.action);
    let hits = count_hit(&slot, action, cfg.generation);
    emit(ctx, &f, cfg, &slot, q.qtype, hits);
    match action {
        Action::None => Ok((XDP_PASS, Reason::NoMatch)),
        Action::Pass => Ok((XDP_PASS, Reason::Allowed)),
        Action::Drop => Ok((XDP_DROP, Reason::Dropped)),
        _ => {
            let order = ORDERS.get(slot.order_id as u32);
            let len = write_answer(s, &q, f.msg_len, f.msg_len + MAX_GROWTH, action, cfg, order);
            #[cfg(feature = "debug-log")]
            aya_log_ebpf::debug!(ctx, "answering: action {} len {}", action as u8, len);
            let mut r = rewrite::to_answer(ctx, &f, s, len);
            if let Err(rewrite::Failed::NoRoom) = r {
                // The frame cannot grow (no tailroom, e.g. some veth and generic-XDP skbs):
                // the same answer, shortened to the query's size.
                let len = write_answer(s, &q, f.msg_len, f.msg_len, action, cfg, order);
                r = rewrite::to_answer(ctx, &f, s, len);
            }
            match r {
                Ok(()) => Ok((XDP_TX, Reason::of_action(action))),
                Err(rewrite::Failed::Untouched | rewrite::Failed::NoRoom) => {
                    Ok((XDP_PASS, Reason::RewriteFailed))
                }
                Err(rewrite::Failed::Changed) => Ok((XDP_DROP, Reason::RewriteFailed)),
            }
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable: the verifier rejects any program with a reachable panic path.
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
