//! Turns the query frame into the answer frame in place: the DNS answer (already built in the
//! scratch buffer by blocker-common) replaces the message, the frame is cut or grown to fit,
//! MACs, IP addresses and UDP ports are swapped, lengths and checksums written anew.
//!
//! Over TCP the answer goes back inside the client's connection: the segment's data becomes the
//! two-byte length and the answer, the sequence number is the one the client expects next from
//! the server (the query's acknowledgement number), the acknowledgement covers the query's data,
//! and FIN is set. The FIN matters: the resolver never saw the query's bytes, so the connection
//! cannot carry anything after them; the client closes it and opens a new one for its next query
//! (RFC 7766 clients must expect a server to close at any time). The exception: a segment whose
//! next message asks the same name (glibc's A and AAAA), answered one message at a time on an
//! open connection (see [`same_name_next`]). TCP options keep their length
//! (the data offset does not change): a timestamp option is answered as the server would
//! (TSval = the client's TSecr, so the client's PAWS check passes; TSecr = the client's TSval),
//! every other option becomes NOPs.
//!
//! Checksums are computed from scratch rather than updated incrementally: a query that came
//! from a local socket through a veth carries only a partial checksum (offload), and the
//! answer is new bytes anyway.

use aya_ebpf::{helpers::generated as r#gen, programs::XdpContext};
use blocker_common::answer::GROW_MAX;
use blocker_common::dns::{launder, Scratch, HDR_MAX, LOAD_MAX, MSG_BUF, MSG_MASK};
use network_types::{eth::EthHdr, udp::UdpHdr};

use crate::{ptr_at, Frame, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_FIN, TCP_PSH};

/// How a rewrite failed.
pub enum Failed {
    /// Nothing was changed: the query can still be passed.
    Untouched,
    /// The frame cannot grow to the answer's size; nothing was changed.
    NoRoom,
    /// The frame was already changed: it must be dropped.
    Changed,
}

const ANSWER_TTL: u8 = 64;

/// Folds a 64-bit one's-complement accumulator to 16 bits.
#[inline(always)]
fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// A 16-bit word as it lies in memory, for one's-complement sums done in memory order.
#[inline(always)]
fn word(hi: u8, lo: u8) -> u64 {
    u16::from_ne_bytes([hi, lo]) as u64
}

/// Copies `len` bytes of the frame at `off` into scratch memory at `dst`; None if the frame
/// is shorter.
#[inline(always)]
fn load_into(ctx: &XdpContext, off: usize, dst: *mut u8, len: usize) -> Option<()> {
    // SAFETY: `dst` points to at least `len` writable bytes of scratch memory (callers bound
    // `len` by the buffer); the helper checks the packet bounds.
    let r = unsafe { r#gen::bpf_xdp_load_bytes(ctx.ctx, off as u32, dst.cast(), len as u32) };
    (r == 0).then_some(())
}

/// The one's-complement sum (unfolded) of `len` bytes of scratch memory at `src`: a
/// multiple of four, at most 512 (the helper's limits).
#[inline(always)]
fn sum_of(src: *mut u8, len: usize) -> Option<u64> {
    // SAFETY: `src` points to at least `len` readable bytes of scratch memory (callers bound
    // `len` by the buffer).
    let r = unsafe { r#gen::bpf_csum_diff(core::ptr::null_mut(), 0, src.cast(), len as u32, 0) };
    (r >= 0).then_some(r as u64)
}

#[inline(always)]
fn store(ctx: &XdpContext, off: usize, src: *const u8, len: usize) -> Result<(), Failed> {
    // SAFETY: `src` points to at least `len` readable bytes of scratch memory (callers bound
    // `len` by the buffer); the helper checks the packet bounds.
    let r = unsafe { r#gen::bpf_xdp_store_bytes(ctx.ctx, off as u32, src as *mut _, len as u32) };
    if r != 0 {
        return Err(Failed::Changed);
    }
    Ok(())
}

/// Makes the frame `delta` bytes longer by growing it at the front, into the headroom every
/// XDP driver reserves (256 bytes), and moving the headers there. Used when the frame has no
/// tailroom (veth and generic XDP hand over tightly sized buffers). The DNS message then
/// starts `delta` bytes earlier in the old bytes, which does not matter: it is rewritten
/// whole.
#[inline(always)]
fn grow_at_head(ctx: &XdpContext, f: &Frame, s: &mut Scratch, delta: usize) -> Result<(), Failed> {
    let hlen = f.dns;
    // Bounds for the verifier (and a limit: longer header chains keep the short answer).
    if hlen == 0 || hlen > HDR_MAX || delta > GROW_MAX {
        return Err(Failed::NoRoom);
    }
    // At most HDR_MAX bytes into `s.hdr`.
    load_into(ctx, 0, s.hdr.as_mut_ptr(), hlen).ok_or(Failed::NoRoom)?;
    // SAFETY: plain helper call on our own context.
    if unsafe { r#gen::bpf_xdp_adjust_head(ctx.ctx, -(delta as i32)) } != 0 {
        return Err(Failed::NoRoom);
    }
    store(ctx, 0, s.hdr.as_ptr(), hlen)
}

/// Rewrites the frame described by `f` into the answer of `len` bytes in `s.msg`.
#[inline(always)]
pub fn to_answer(ctx: &XdpContext, f: &Frame, s: &mut Scratch, len: usize) -> Result<(), Failed> {
    // The answer is at most a few hundred bytes; this bound is also what the verifier needs
    // to accept `len` as the size of a read from `s.msg`.
    if len < 12 || len > MSG_BUF - 4 {
        return Err(Failed::Untouched);
    }
    let frame_len = ctx.data_end() - ctx.data();
    let new_len = f.dns + len;
    let delta = new_len as i64 - frame_len as i64;
    if delta != 0 {
        // SAFETY: plain helper call on our own context.
        if unsafe { r#gen::bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } != 0 {
            if delta < 0 {
                return Err(Failed::Untouched);
            }
            grow_at_head(ctx, f, s, delta as usize)?;
        }
    }
    // From here on the frame is changed: a failure means drop.
    store(ctx, f.dns, s.msg.as_ptr(), len)?;

    // Sum of the DNS message. write_answer zeroed the bytes up to the next multiple of four.
    let padded = (len + 3) & !3usize;
    // `padded` ≤ MSG_BUF bytes of `s.msg`.
    let payload = sum_of(s.msg.as_mut_ptr(), padded).ok_or(Failed::Changed)?;
    // Length of the transport segment: the UDP header or the TCP header and the two-byte
    // length prefix, then the answer. `f.dns - f.l4` is 8 for UDP and the data offset + 2 for
    // TCP; both are bounded (parse_frame).
    let l4_total = (f.dns - f.l4 + len) as u16;
    let ulen = l4_total;
    let ulen_be = ulen.to_be_bytes();
    let proto = if f.tcp != 0 { IPPROTO_TCP } else { IPPROTO_UDP };
    // Pseudo-header: protocol and segment length (the addresses are added below).
    let mut sum = payload + word(0, proto) + word(ulen_be[0], ulen_be[1]);

    // The IP header is rewritten in place (direct packet access: no helper call), its
    // checksum computed anew over the header as sent.
    if f.v6 != 0 {
        let ip: *mut [u8; 40] = ptr_at(ctx, f.l3).map_err(|_| Failed::Changed)?;
        // SAFETY: ptr_at checked the 40 bytes are in the packet.
        let h = unsafe { &mut *ip };
        for i in 0..16 {
            let a = h[8 + i];
            h[8 + i] = h[24 + i];
            h[24 + i] = a;
        }
        h[7] = ANSWER_TTL;
        let plen = ((f.l4 - f.l3 - 40) as u16).wrapping_add(ulen).to_be_bytes();
        h[4] = plen[0];
        h[5] = plen[1];
        for i in 0..16 {
            sum += word(h[8 + 2 * i], h[9 + 2 * i]);
        }
    } else {
        let ihl = f.ihl;
        // Redundant for correctness (parse_frame checked 20 ≤ ihl ≤ 60), needed by the
        // verifier to bound the options' length.
        if !(20..=60).contains(&ihl) {
            return Err(Failed::Changed);
        }
        // Options are not echoed back (a source route must not steer the answer): each
        // option byte becomes a NOP (1), written by the helper (rare: almost no query has
        // options).
        if ihl > 20 {
            for i in 0..40 {
                s.l3[i] = 1;
            }
            // Laundered and bounded again: the compiler may test the bound above on another
            // copy of `ihl`, which leaves this one unbounded for the verifier.
            let opt = launder(&mut s.opaque[29], (ihl - 20) as u64) as usize;
            if opt == 0 || opt > 40 {
                return Err(Failed::Changed);
            }
            store(ctx, f.l3 + 20, s.l3.as_ptr(), opt)?;
        }
        let ip: *mut [u8; 20] = ptr_at(ctx, f.l3).map_err(|_| Failed::Changed)?;
        // SAFETY: ptr_at checked the 20 bytes are in the packet.
        let h = unsafe { &mut *ip };
        for i in 0..4 {
            let a = h[12 + i];
            h[12 + i] = h[16 + i];
            h[16 + i] = a;
        }
        let tot = (ihl as u16).wrapping_add(ulen).to_be_bytes();
        h[2] = tot[0];
        h[3] = tot[1];
        h[6] &= 0x40; // keep DF; MF and the offset were zero
        h[7] = 0;
        h[8] = ANSWER_TTL;
        h[10] = 0;
        h[11] = 0;
        // The header's checksum: its ten words, and one 0x0101 word per two option bytes.
        let mut hsum = ((ihl as u64 - 20) / 2) * 0x0101;
        for i in 0..10 {
            hsum += word(h[2 * i], h[2 * i + 1]);
        }
        let check = (!fold(hsum)).to_ne_bytes();
        h[10] = check[0];
        h[11] = check[1];
        for i in 0..4 {
            sum += word(h[12 + 2 * i], h[13 + 2 * i]);
        }
    }

    if f.tcp != 0 {
        tcp_header(ctx, f, s, len, sum)?;
    } else {
        let udp: *mut [u8; UdpHdr::LEN] = ptr_at(ctx, f.l4).map_err(|_| Failed::Changed)?;
        // SAFETY: ptr_at checked the 8 bytes are in the packet.
        let udp = unsafe { &mut *udp };
        let (sport, dport) = ([udp[0], udp[1]], [udp[2], udp[3]]);
        sum += word(dport[0], dport[1]) + word(sport[0], sport[1]) + word(ulen_be[0], ulen_be[1]);
        let mut check = !fold(sum);
        if check == 0 {
            // 0 means "no checksum" in UDP over IPv4 and is invalid over IPv6.
            check = 0xffff;
        }
        let c = check.to_ne_bytes();
        *udp = [
            dport[0], dport[1], sport[0], sport[1], ulen_be[0], ulen_be[1], c[0], c[1],
        ];
    }

    let eth: *mut EthHdr = ptr_at(ctx, 0).map_err(|_| Failed::Changed)?;
    // SAFETY: ptr_at checked the 14-byte header is in the packet.
    let eth = unsafe { &mut *eth };
    core::mem::swap(&mut eth.src_addr, &mut eth.dst_addr);
    Ok(())
}

/// Scratch slot: 1 when the answer acknowledges only the first message of its segment and
/// keeps the connection open (see [`same_name_next`]).
const SAME_NEXT: usize = 58;

/// Whether the message after the first in a TCP segment asks the same name — its QNAME, its
/// QCLASS and its header but the ID the same bytes as the first's (in `s.msg`): glibc's
/// stub writes its A and AAAA queries for one name in one segment. Then the answer to the
/// first acknowledges that message only and does not close the connection: the client's TCP
/// sends the second again, in a segment of its own, where it is judged — for a blocked name
/// answered in turn on the same connection, so getaddrinfo gets two block answers (not
/// found) instead of a connection closed under its second query (a temporary failure).
/// Left in scratch memory for [`tcp_header`]. Any other second message: the answer covers
/// the whole segment and closes (a message behind a blocked one cannot reach the resolver:
/// the resolver never saw the bytes before it).
///
/// Its inputs come from the maps, not from the caller (whose frame values would otherwise
/// stay live, exact per path, through the rest of the verification).
#[inline(never)]
pub fn same_name_next(ctx: &XdpContext) {
    let Some(s) = crate::maps::SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a per-CPU value, used only by this CPU for the duration of this packet.
    let s = unsafe { &mut *s };
    s.opaque[SAME_NEXT] = 0;
    let Some(w) = crate::maps::WALK.get(0) else {
        return;
    };
    let Ok(f) = Frame::from_walk(&w.frame) else {
        return;
    };
    let q_end = w.q.q_end;
    if f.tcp == 0 || f.more == 0 || q_end < 12 + 4 + 1 || q_end > LOAD_MAX {
        return;
    }
    let name_len = q_end - 12 - 4;
    // The second message's question must lie within the segment's data.
    let second = f.dns + f.msg_len + 2;
    let seg_end = f.l4 + f.l4_len + f.seg_len;
    if name_len > 255 || second + q_end > seg_end {
        return;
    }
    // Its header but the ID (flags and counts: a plain query like the first, as glibc's pair
    // is) and its QCLASS the same as the first's, still the query in `s.msg` here.
    let (Ok(h), Ok(c)) = (
        crate::load::<12>(ctx, second),
        crate::load::<2>(ctx, second + q_end - 2),
    ) else {
        return;
    };
    let mut d = 0u8;
    for i in 2..12 {
        d |= h[i] ^ s.msg[i];
    }
    d |= (c[0] ^ s.msg[(q_end - 2) & MSG_MASK]) | (c[1] ^ s.msg[(q_end - 1) & MSG_MASK]);
    if d != 0 {
        return;
    }
    // The second message's QNAME: after the first message, its two-byte length and its
    // 12-byte header.
    // At most 255 bytes into the 256-byte `s.hdr`.
    if load_into(ctx, second + 12, s.hdr.as_mut_ptr(), name_len).is_none() {
        return;
    }
    // Compared eight bytes per step of a `bpf_loop` (verified once, not once per chunk).
    s.opaque[NAME_LEN] = name_len as u64;
    s.opaque[NAME_DIFF] = 0;
    // SAFETY: `name_chunk` is a valid bpf_loop callback; it takes no context.
    unsafe {
        r#gen::bpf_loop(
            name_len.div_ceil(8) as u32,
            name_chunk as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    // SAFETY: a valid, aligned reference into scratch memory.
    let diff = unsafe { core::ptr::read_volatile(&s.opaque[NAME_DIFF]) };
    s.opaque[SAME_NEXT] = (diff == 0) as u64;
}

/// Scratch slots of [`name_chunk`]: the name's length, and the bits that differed so far.
const NAME_LEN: usize = 62;
const NAME_DIFF: usize = 63;

/// Step `i` of [`same_name_next`]'s comparison: bytes 8i..8i+8 of the second message's QNAME
/// (in `s.hdr`) against the first's (echoed in `s.msg` from offset 12), those past the name
/// masked off.
#[inline(never)]
extern "C" fn name_chunk(i: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = crate::maps::SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: a per-CPU value, used only by this CPU for the duration of this packet.
    let s = unsafe { &mut *s };
    let at = (i as usize & 31) * 8;
    // SAFETY: a valid, aligned reference into scratch memory.
    let name_len = unsafe { core::ptr::read_volatile(&s.opaque[NAME_LEN]) } as usize;
    if at >= name_len {
        return 1;
    }
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    for k in 0..8 {
        a[k] = s.hdr[at + k];
        b[k] = s.msg[12 + at + k];
    }
    let left = name_len - at;
    let mask = if left >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * left)) - 1
    };
    let d = (u64::from_le_bytes(a) ^ u64::from_le_bytes(b)) & mask;
    s.opaque[NAME_DIFF] |= d;
    0
}

/// Longest run of TCP options (a 60-byte header).
const TCP_OPTIONS_MAX: usize = 40;
/// TCP option kinds.
const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_TIMESTAMP: u8 = 8;

/// Writes the TCP header of the answer (and its length prefix) over the query's: ports swapped,
/// SEQ = the query's ACK, ACK = the query's SEQ + its data (+ 1 for a FIN), ACK|PSH|FIN — or,
/// before a second query for the same name ([`same_name_next`]), ACK = the query's SEQ + its
/// first message and ACK|PSH — the same data offset and window, options as the module
/// documentation says, and the checksum over the pseudo-header (`sum` holds it and the
/// answer's bytes), the header, the prefix.
#[inline(always)]
fn tcp_header(
    ctx: &XdpContext,
    f: &Frame,
    s: &mut Scratch,
    len: usize,
    mut sum: u64,
) -> Result<(), Failed> {
    let doff = f.l4_len;
    // Redundant for correctness (parse_tcp checked it), needed by the verifier to bound the
    // helper's length.
    if !(20..=60).contains(&doff) {
        return Err(Failed::Changed);
    }
    // At most 60 bytes into the 64-byte `s.l4`.
    load_into(ctx, f.l4, s.l4.as_mut_ptr(), doff).ok_or(Failed::Changed)?;
    // The whole segment (and its FIN) acknowledged, and the connection closed; or, before a
    // second query for the same name, the first message only, and the connection kept open.
    // SAFETY: a valid, aligned reference into scratch memory.
    let same_next = unsafe { core::ptr::read_volatile(&s.opaque[SAME_NEXT]) } & 1;
    let h = &mut s.l4;
    let seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let ack = [h[8], h[9], h[10], h[11]];
    let fin = (h[13] & TCP_FIN) as u32;
    let covered = (f.seg_len as u32 + fin) * (1 - same_next as u32)
        + (f.msg_len as u32 + 2) * same_next as u32;
    let next = seq.wrapping_add(covered).to_be_bytes();
    for i in 0..2 {
        let p = h[i];
        h[i] = h[2 + i];
        h[2 + i] = p;
    }
    for i in 0..4 {
        h[4 + i] = ack[i];
        h[8 + i] = next[i];
    }
    h[12] &= 0xf0;
    h[13] = TCP_ACK | TCP_PSH | TCP_FIN * (1 - same_next as u8);
    h[16] = 0;
    h[17] = 0;
    h[18] = 0;
    h[19] = 0;

    // Find the timestamp option, if any, walking the options as the client laid them out.
    let mut i = 20usize;
    let mut ts_at = 0usize;
    for _ in 0..TCP_OPTIONS_MAX {
        if i >= doff {
            break;
        }
        let kind = s.l4[i & 63];
        if kind == TCPOPT_EOL {
            break;
        }
        if kind == TCPOPT_NOP {
            i += 1;
        } else {
            let olen = s.l4[(i + 1) & 63] as usize;
            if olen < 2 || i + olen > doff {
                break;
            }
            if kind == TCPOPT_TIMESTAMP && olen == 10 {
                ts_at = i;
            }
            i += olen;
        }
        // Where the walk stands depends on the option bytes; forget it, so each iteration is
        // verified once (it stays below 64 and is re-checked against `doff` above).
        i = launder(&mut s.opaque[23], i as u64) as usize & 63;
    }
    let ts_at = launder(&mut s.opaque[23], ts_at as u64) as usize & 63;
    let mut tsval = [0u8; 4];
    let mut tsecr = [0u8; 4];
    for k in 0..4 {
        tsval[k] = s.l4[(ts_at + 2 + k) & 63];
        tsecr[k] = s.l4[(ts_at + 6 + k) & 63];
    }
    for k in 20..60 {
        if k >= doff {
            break;
        }
        s.l4[k] = TCPOPT_NOP;
    }
    if ts_at >= 20 && ts_at + 10 <= doff {
        s.l4[ts_at & 63] = TCPOPT_TIMESTAMP;
        s.l4[(ts_at + 1) & 63] = 10;
        for k in 0..4 {
            s.l4[(ts_at + 2 + k) & 63] = tsecr[k];
            s.l4[(ts_at + 6 + k) & 63] = tsval[k];
        }
    }

    // `doff` ≤ 60 bytes of the 64-byte `s.l4` (a multiple of 4, as the helper wants).
    let hsum = sum_of(s.l4.as_mut_ptr(), doff).ok_or(Failed::Changed)?;
    let prefix = (len as u16).to_be_bytes();
    sum += hsum + word(prefix[0], prefix[1]);
    let c = (!fold(sum)).to_ne_bytes();
    s.l4[16] = c[0];
    s.l4[17] = c[1];
    store(ctx, f.l4, s.l4.as_ptr(), doff)?;
    store(ctx, f.dns - 2, prefix.as_ptr(), 2)
}

/// Cuts a TCP segment that passes to its first message (the two-byte length and the message):
/// the frame ends there, FIN is cleared (the client's FIN, if any, comes after the data cut
/// off), and the IP length and the IPv4 and TCP checksums are written anew, from scratch (see
/// the module documentation). Nothing else changes: the resolver acknowledges the message,
/// and the client's TCP sends what was cut again, starting at the next message.
#[inline(always)]
pub fn cut_after_first(ctx: &XdpContext, f: &Frame, s: &mut Scratch) -> Result<(), Failed> {
    let keep = f.msg_len + 2;
    let doff = f.l4_len;
    // The data is summed from scratch memory; the bounds are also what the verifier needs.
    if f.tcp == 0 || keep > MSG_BUF - 4 || !(20..=60).contains(&doff) || f.dns < 2 {
        return Err(Failed::Untouched);
    }
    // Nothing is changed before the frame is cut: any failure up to there leaves it whole.
    let load = |off: usize, dst: *mut u8, len: usize| {
        load_into(ctx, off, dst, len).ok_or(Failed::Untouched)
    };
    let csum = |src: *mut u8, len: usize| sum_of(src, len).ok_or(Failed::Untouched);
    load(f.dns - 2, s.msg.as_mut_ptr(), keep)?;
    for i in 0..3 {
        s.msg[(keep + i) & (MSG_BUF - 1)] = 0;
    }
    let padded = (keep + 3) & !3usize;
    load(f.l4, s.l4.as_mut_ptr(), doff)?;
    s.l4[13] &= !TCP_FIN;
    s.l4[16] = 0;
    s.l4[17] = 0;
    let tcp_len = (doff + keep) as u16;
    let tl = tcp_len.to_be_bytes();
    let mut sum = csum(s.msg.as_mut_ptr(), padded)?
        + csum(s.l4.as_mut_ptr(), doff)?
        + word(0, IPPROTO_TCP)
        + word(tl[0], tl[1]);
    let hlen = if f.v6 != 0 {
        load(f.l3, s.l3.as_mut_ptr(), 40)?;
        // The payload length covers the extension headers before TCP.
        let plen = ((f.l4 - f.l3 - 40) as u16)
            .wrapping_add(tcp_len)
            .to_be_bytes();
        s.l3[4] = plen[0];
        s.l3[5] = plen[1];
        for i in 0..16 {
            sum += word(s.l3[8 + 2 * i], s.l3[9 + 2 * i]);
        }
        40
    } else {
        let ihl = f.ihl;
        // Redundant for correctness (parse_frame checked it), needed by the verifier.
        if !(20..=60).contains(&ihl) {
            return Err(Failed::Untouched);
        }
        load(f.l3, s.l3.as_mut_ptr(), ihl)?;
        let tot = (ihl as u16).wrapping_add(tcp_len).to_be_bytes();
        s.l3[2] = tot[0];
        s.l3[3] = tot[1];
        s.l3[10] = 0;
        s.l3[11] = 0;
        let check = (!fold(csum(s.l3.as_mut_ptr(), ihl)?)).to_ne_bytes();
        s.l3[10] = check[0];
        s.l3[11] = check[1];
        for i in 0..4 {
            sum += word(s.l3[12 + 2 * i], s.l3[13 + 2 * i]);
        }
        ihl
    };
    let c = (!fold(sum)).to_ne_bytes();
    s.l4[16] = c[0];
    s.l4[17] = c[1];
    // From here on the frame is changed.
    let frame_len = ctx.data_end() - ctx.data();
    let new_len = f.dns + f.msg_len;
    if new_len >= frame_len {
        return Err(Failed::Untouched);
    }
    // SAFETY: plain helper call on our own context.
    if unsafe { r#gen::bpf_xdp_adjust_tail(ctx.ctx, new_len as i32 - frame_len as i32) } != 0 {
        return Err(Failed::Untouched);
    }
    store(ctx, f.l3, s.l3.as_ptr(), hlen)?;
    store(ctx, f.l4, s.l4.as_ptr(), doff)
}
