//! Response rate limiting (RRL) of synthesized answers, as BIND's RRL does it: the answers
//! a client prefix gets are held to a rate with a burst; over the limit, every `slip`th query
//! gets a bare TC=1 answer (a real client retries over TCP, which a spoofer cannot complete)
//! and the others are dropped.
//!
//! Every answer goes to the query's source address, which can be spoofed: without a limit a
//! flood of spoofed queries for a blocked name makes the edge a reflector at line rate.
//!
//! The bucket is a token bucket of `burst` answers refilled at `rate` answers per second,
//! kept as one timestamp (the generic cell rate algorithm's "theoretical arrival time"):
//! `full_at` is when the bucket would be full again; an answer costs `1/rate` seconds of it;
//! an answer is allowed while `full_at` stays within `burst/rate` seconds of now. One
//! timestamp instead of a token count and a time halves the per-CPU memory and needs no
//! refill step: tokens come back with the clock.
//!
//! The XDP program keeps one bucket per client prefix per CPU (an LRU per-CPU hash map):
//! a prefix whose queries arrive on several CPUs gets up to `rate × CPUs` answers per second.

use crate::maps::{Config, RrlBucket, RrlKey};

pub const NS_PER_SEC: u64 = 1_000_000_000;

/// What to do with a query whose answer is ready to be built.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Within the limit (or rate limiting is off): the normal answer.
    Answer = 0,
    /// Over the limit, and this one slips: a bare TC=1 answer.
    Slip = 1,
    /// Over the limit: nothing is sent.
    Drop = 2,
}

/// The bucket key of a client address (`addr`: IPv4 in the first four bytes, the rest 0):
/// the address cut to the configured prefix length.
#[inline(always)]
pub fn key_of(addr: &[u8; 16], v6: bool, cfg: &Config) -> RrlKey {
    let (len, max, family) = if v6 {
        (cfg.rrl_v6_prefix, 128u8, 6u8)
    } else {
        (cfg.rrl_v4_prefix, 32u8, 4u8)
    };
    let len = if len > max { max } else { len };
    // The prefix as a 128-bit mask in two halves, with as few branches as the verifier has
    // to walk (not one per byte).
    let (hi, lo) = if len >= 64 {
        (u64::MAX, mask_of((len - 64) as u32))
    } else {
        (mask_of(len as u32), 0)
    };
    let mut a = [0u8; 8];
    a.copy_from_slice(&addr[..8]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&addr[8..]);
    let a = (u64::from_be_bytes(a) & hi).to_be_bytes();
    let b = (u64::from_be_bytes(b) & lo).to_be_bytes();
    let mut k = RrlKey {
        family,
        prefix_len: len,
        ..RrlKey::default()
    };
    k.addr[..8].copy_from_slice(&a);
    k.addr[8..].copy_from_slice(&b);
    k
}

/// A 64-bit mask of the `bits` (0..=64) most significant bits.
#[inline(always)]
fn mask_of(bits: u32) -> u64 {
    if bits == 0 {
        0
    } else {
        u64::MAX << ((64 - bits) & 63)
    }
}

/// Charges one answer to bucket `b` at `now` (nanoseconds, CLOCK_MONOTONIC) under `cfg`.
#[inline(always)]
pub fn admit(b: &mut RrlBucket, now: u64, cfg: &Config) -> Limit {
    let rate = cfg.rrl_rate as u64;
    if rate == 0 {
        return Limit::Answer;
    }
    // The cost of one answer, and the size of the bucket, in nanoseconds.
    let interval = NS_PER_SEC / rate;
    let burst = if cfg.rrl_burst == 0 { 1 } else { cfg.rrl_burst } as u64;
    let size = interval * burst;
    // A bucket full since before now is just full (this also covers a new bucket, 0).
    let full_at = if b.full_at_ns < now {
        now
    } else {
        b.full_at_ns
    };
    let next = full_at + interval;
    if next - now <= size {
        b.full_at_ns = next;
        return Limit::Answer;
    }
    // Over the limit: the first query over it slips, then every `slip`th.
    let n = b.over;
    b.over = n.wrapping_add(1);
    let slip = cfg.rrl_slip as u32;
    if slip != 0 && n.is_multiple_of(slip) {
        Limit::Slip
    } else {
        Limit::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rate: u32, burst: u32, slip: u16) -> Config {
        Config {
            rrl_rate: rate,
            rrl_burst: burst,
            rrl_slip: slip,
            ..Config::default()
        }
    }

    fn run(c: &Config, b: &mut RrlBucket, at: &[u64]) -> std::vec::Vec<Limit> {
        at.iter().map(|t| admit(b, *t, c)).collect()
    }

    #[test]
    fn burst_then_slip_and_drop() {
        use Limit::*;
        let c = cfg(1, 3, 2);
        let mut b = RrlBucket::default();
        let t0 = 5 * NS_PER_SEC;
        let got = run(
            &c,
            &mut b,
            &[t0, t0 + 1, t0 + 2, t0 + 3, t0 + 4, t0 + 5, t0 + 6],
        );
        assert_eq!(got, [Answer, Answer, Answer, Slip, Drop, Slip, Drop]);
        // One second after the burst began, one token is back; one more second, another.
        assert_eq!(admit(&mut b, t0 + NS_PER_SEC - 1, &c), Slip);
        assert_eq!(admit(&mut b, t0 + NS_PER_SEC, &c), Answer);
        assert_eq!(admit(&mut b, t0 + NS_PER_SEC + 1, &c), Drop);
        assert_eq!(admit(&mut b, t0 + 2 * NS_PER_SEC, &c), Answer);
        // Long idle: the bucket is full again, not fuller.
        let t1 = t0 + 1000 * NS_PER_SEC;
        let got = run(&c, &mut b, &[t1, t1, t1, t1]);
        assert_eq!(got[..3], [Answer, Answer, Answer]);
        assert_ne!(got[3], Answer);
    }

    #[test]
    fn rate_over_time() {
        // 200/s with a burst of 400 over ten seconds of a query every 100 µs: 400 + 2000.
        let c = cfg(200, 400, 0);
        let mut b = RrlBucket::default();
        let t0 = NS_PER_SEC;
        let answered = (0..100_000u64)
            .filter(|i| admit(&mut b, t0 + i * 100_000, &c) == Limit::Answer)
            .count();
        assert!((2399..=2401).contains(&answered), "{answered}");
    }

    #[test]
    fn slip_zero_drops_and_one_slips_all() {
        for (slip, want) in [(0u16, Limit::Drop), (1, Limit::Slip)] {
            let c = cfg(1, 1, slip);
            let mut b = RrlBucket::default();
            assert_eq!(admit(&mut b, 10, &c), Limit::Answer);
            for i in 0..5 {
                assert_eq!(admit(&mut b, 11 + i, &c), want, "slip {slip}");
            }
        }
        let c = cfg(1, 1, 3);
        let mut b = RrlBucket::default();
        let got = run(&c, &mut b, &[10, 11, 12, 13, 14, 15, 16]);
        use Limit::*;
        assert_eq!(got, [Answer, Slip, Drop, Drop, Slip, Drop, Drop]);
    }

    #[test]
    fn off_never_limits() {
        let c = cfg(0, 1, 0);
        let mut b = RrlBucket::default();
        assert!((0..1000).all(|i| admit(&mut b, 10 + i, &c) == Limit::Answer));
        assert_eq!(b, RrlBucket::default(), "no state kept when off");
    }

    #[test]
    fn keys_are_prefixes() {
        let c = Config::default();
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[198, 51, 100, 77]);
        let k = key_of(&a, false, &c);
        assert_eq!(&k.addr[..4], &[198, 51, 100, 0]);
        assert!(k.addr[4..].iter().all(|b| *b == 0));
        assert_eq!((k.family, k.prefix_len), (4, 24));
        let c20 = Config {
            rrl_v4_prefix: 20,
            ..c
        };
        assert_eq!(&key_of(&a, false, &c20).addr[..4], &[198, 51, 96, 0]);
        let c99 = Config {
            rrl_v4_prefix: 99,
            ..c
        };
        assert_eq!(key_of(&a, false, &c99).prefix_len, 32, "clamped");
        assert_eq!(&key_of(&a, false, &c99).addr[..4], &[198, 51, 100, 77]);
        // IPv6 /56: the first seven bytes.
        let v6: [u8; 16] = [
            0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0x56, 0x78, 9, 9, 9, 9, 9, 9, 9, 9,
        ];
        let k = key_of(&v6, true, &c);
        assert_eq!(&k.addr[..8], &[0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0x56, 0]);
        assert!(k.addr[8..].iter().all(|b| *b == 0));
        assert_eq!((k.family, k.prefix_len), (6, 56));
        let c0 = Config {
            rrl_v6_prefix: 0,
            ..c
        };
        assert_eq!(key_of(&v6, true, &c0).addr, [0; 16]);
        // The same numbers as IPv4 and IPv6 are different keys.
        assert_ne!(key_of(&a, false, &c), key_of(&a, true, &c));
    }
}
