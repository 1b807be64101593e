//! Turns the query frame into the answer frame in place: the DNS answer (already built in the
//! scratch buffer by blocker-common) replaces the message, the frame is cut or grown to fit,
//! MACs, IP addresses and UDP ports are swapped, lengths and checksums written anew.
//!
//! Checksums are computed from scratch rather than updated incrementally: a query that came
//! from a local socket through a veth carries only a partial checksum (offload), and the
//! answer is new bytes anyway.

use aya_ebpf::{helpers::generated as r#gen, programs::XdpContext};
use blocker_common::dns::{Scratch, HDR_MAX, MSG_BUF};
use network_types::{eth::EthHdr, udp::UdpHdr};

use crate::{load, ptr_at, Frame, IPPROTO_UDP};

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
    if hlen == 0 || hlen > HDR_MAX || delta > 128 {
        return Err(Failed::NoRoom);
    }
    // SAFETY: at most HDR_MAX bytes into `s.hdr`.
    let r =
        unsafe { r#gen::bpf_xdp_load_bytes(ctx.ctx, 0, s.hdr.as_mut_ptr().cast(), hlen as u32) };
    if r != 0 {
        return Err(Failed::NoRoom);
    }
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
    // SAFETY: `padded` ≤ MSG_BUF bytes of `s.msg` are read.
    let payload = unsafe {
        r#gen::bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            s.msg.as_mut_ptr().cast(),
            padded as u32,
            0,
        )
    };
    if payload < 0 {
        return Err(Failed::Changed);
    }
    let ulen = (UdpHdr::LEN + len) as u16;
    let ulen_be = ulen.to_be_bytes();
    let mut sum = payload as u64 + word(0, IPPROTO_UDP) + word(ulen_be[0], ulen_be[1]);

    if f.v6 {
        // SAFETY: 40 bytes into the 64-byte `s.l3`.
        let r = unsafe {
            r#gen::bpf_xdp_load_bytes(ctx.ctx, f.l3 as u32, s.l3.as_mut_ptr().cast(), 40)
        };
        if r != 0 {
            return Err(Failed::Changed);
        }
        for i in 0..16 {
            let a = s.l3[8 + i];
            s.l3[8 + i] = s.l3[24 + i];
            s.l3[24 + i] = a;
        }
        s.l3[7] = ANSWER_TTL;
        let plen = ((f.l4 - f.l3 - 40) as u16).wrapping_add(ulen).to_be_bytes();
        s.l3[4] = plen[0];
        s.l3[5] = plen[1];
        for i in 0..16 {
            sum += word(s.l3[8 + 2 * i], s.l3[9 + 2 * i]);
        }
        store(ctx, f.l3, s.l3.as_ptr(), 40)?;
    } else {
        let ihl = f.ihl;
        // Redundant for correctness (parse_frame checked 20 ≤ ihl ≤ 60), needed by the
        // verifier to bound the helper's length.
        if !(20..=60).contains(&ihl) {
            return Err(Failed::Changed);
        }
        // SAFETY: at most 60 bytes into the 64-byte `s.l3`.
        let r = unsafe {
            r#gen::bpf_xdp_load_bytes(ctx.ctx, f.l3 as u32, s.l3.as_mut_ptr().cast(), ihl as u32)
        };
        if r != 0 {
            return Err(Failed::Changed);
        }
        for i in 0..4 {
            let a = s.l3[12 + i];
            s.l3[12 + i] = s.l3[16 + i];
            s.l3[16 + i] = a;
        }
        let tot = ((ihl + UdpHdr::LEN + len) as u16).to_be_bytes();
        s.l3[2] = tot[0];
        s.l3[3] = tot[1];
        s.l3[6] &= 0x40; // keep DF; MF and the offset were zero
        s.l3[7] = 0;
        s.l3[8] = ANSWER_TTL;
        s.l3[10] = 0;
        s.l3[11] = 0;
        // Options are not echoed back (a source route must not steer the answer): each
        // option byte becomes a NOP.
        for i in 20..60 {
            if i >= ihl {
                break;
            }
            s.l3[i] = 1;
        }
        // SAFETY: `ihl` ≤ 60 bytes of the 64-byte `s.l3`.
        let hsum = unsafe {
            r#gen::bpf_csum_diff(
                core::ptr::null_mut(),
                0,
                s.l3.as_mut_ptr().cast(),
                ihl as u32,
                0,
            )
        };
        if hsum < 0 {
            return Err(Failed::Changed);
        }
        let check = (!fold(hsum as u64)).to_ne_bytes();
        s.l3[10] = check[0];
        s.l3[11] = check[1];
        for i in 0..4 {
            sum += word(s.l3[12 + 2 * i], s.l3[13 + 2 * i]);
        }
        store(ctx, f.l3, s.l3.as_ptr(), ihl)?;
    }

    let old: [u8; UdpHdr::LEN] = load(ctx, f.l4).map_err(|_| Failed::Changed)?;
    let (sport, dport) = ([old[0], old[1]], [old[2], old[3]]);
    sum += word(dport[0], dport[1]) + word(sport[0], sport[1]) + word(ulen_be[0], ulen_be[1]);
    let mut check = !fold(sum);
    if check == 0 {
        // 0 means "no checksum" in UDP over IPv4 and is invalid over IPv6.
        check = 0xffff;
    }
    let c = check.to_ne_bytes();
    let udp = [
        dport[0], dport[1], sport[0], sport[1], ulen_be[0], ulen_be[1], c[0], c[1],
    ];
    store(ctx, f.l4, udp.as_ptr(), UdpHdr::LEN)?;

    let eth: *mut EthHdr = ptr_at(ctx, 0).map_err(|_| Failed::Changed)?;
    // SAFETY: ptr_at checked the 14-byte header is in the packet.
    let eth = unsafe { &mut *eth };
    core::mem::swap(&mut eth.src_addr, &mut eth.dst_addr);
    Ok(())
}
