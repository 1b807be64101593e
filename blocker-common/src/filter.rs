//! The key filter: a bit array in front of the rule map that answers "certainly no rule at
//! this name" without a hash-table lookup.
//!
//! Most queries an edge sees are allowed, and each of them costs one rule-map lookup per
//! depth that holds rules. A lookup that misses still hashes the key and reads a bucket of a
//! table sized for millions of rules: a cache and TLB miss on the real path. The filter is
//! one bit per position, sized to the number of names (about [`BITS_PER_NAME`] bits each), so
//! for the lists operators actually load it stays in the CPU cache; a clear bit skips the
//! lookup, a set bit (a rule, or a rare false positive) does the lookup as before.
//!
//! The invariant the controller keeps: **every key in the rule map has its bit set** in the
//! region `Config::filter` names. Bits of removed names may stay set (they only cost a
//! lookup). The map `BLK_FILTER` holds two [`Region`]s of [`REGION_WORDS`] words; a region is
//! rebuilt off to the side and switched to in one write of the one-byte `Config::filter`
//! (region bit and size), so the data plane never sees a half-built filter. A zero byte turns
//! the filter off: every candidate is looked up, as in builds without a filter.

use crate::key::RuleKey;

/// log2 of the largest region in bits: 2^26 bits = 8 MiB, 6.7 bits per name at 10 million
/// (a region is one map value, and the kernel bounds the size of a value).
pub const MAX_SHIFT: u8 = 26;
/// log2 of the smallest region in bits: one 64-byte cache line.
pub const MIN_SHIFT: u8 = 9;
/// Words (u64) of one region; the map holds two.
pub const REGION_WORDS: usize = 1 << (MAX_SHIFT - 6);
/// Target density: bits per name (one probe: about 6 % false positives).
pub const BITS_PER_NAME: u64 = 16;
/// `Config::filter`: the region bit; the low six bits are the size shift (0: filter off).
pub const REGION_BIT: u8 = 0x80;
const SHIFT_MASK: u8 = 0x3f;

/// One region of the filter: a value of `BLK_FILTER`.
#[repr(C)]
pub struct Region {
    pub words: [u64; REGION_WORDS],
}

/// A filter setting taken apart once per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Region (index of the `BLK_FILTER` value).
    pub region: u32,
    /// Right shift that leaves a bit index of the region's size (64 - size shift).
    pub shr: u32,
    /// 1 when the filter is off: every key "may" be in the rule map.
    pub off: u64,
}

impl Probe {
    /// Takes a `Config::filter` byte apart. A size out of range (0, or a setting this build
    /// does not know) turns the filter off.
    #[inline(always)]
    pub fn of(filter: u8) -> Probe {
        let shift = filter & SHIFT_MASK;
        let on = (MIN_SHIFT..=MAX_SHIFT).contains(&shift);
        Probe {
            region: (filter >> 7) as u32,
            shr: 64 - if on { shift as u32 } else { MAX_SHIFT as u32 },
            off: (!on) as u64,
        }
    }

    /// (word index in the region, bit mask) of `key`. Branch-free: the BPF verifier walks
    /// it once per label without splitting paths.
    #[inline(always)]
    pub fn bit(&self, key: &RuleKey) -> (usize, u64) {
        let b = mix(key).wrapping_shr(self.shr);
        ((b >> 6) as usize & (REGION_WORDS - 1), 1u64 << (b & 63))
    }

    /// Whether `key` may be in the rule map, given the word [`Probe::bit`] pointed at.
    #[inline(always)]
    pub fn may_hold(&self, word: u64, mask: u64) -> bool {
        ((word & mask != 0) as u64 | self.off) != 0
    }
}

/// Mixes both hashes of the key (multiplicative hashing keeps the well-mixed high bits).
#[inline(always)]
fn mix(key: &RuleKey) -> u64 {
    (key.h1 ^ key.h2.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Where `key`'s bit is under the setting `filter`: (word index in the whole map, both
/// regions counted, bit mask), or `None` when the filter is off.
pub fn position(filter: u8, key: &RuleKey) -> Option<(usize, u64)> {
    let p = Probe::of(filter);
    if p.off != 0 {
        return None;
    }
    let (w, m) = p.bit(key);
    Some((p.region as usize * REGION_WORDS + w, m))
}

/// The setting for a filter of `1 << shift` bits in `region` (0 or 1).
pub const fn setting(region: u8, shift: u8) -> u8 {
    (if region & 1 != 0 { REGION_BIT } else { 0 }) | (shift & SHIFT_MASK)
}

/// Region (0 or 1) and size shift of a setting.
pub const fn parts(filter: u8) -> (u8, u8) {
    ((filter & REGION_BIT != 0) as u8, filter & SHIFT_MASK)
}

/// The size shift for `names` names: the next power of two of [`BITS_PER_NAME`] bits per
/// name, within [`MIN_SHIFT`]..=[`MAX_SHIFT`].
pub fn shift_for(names: u64) -> u8 {
    let bits = names.saturating_mul(BITS_PER_NAME).max(1);
    let shift = 64 - (bits - 1).leading_zeros() as u8;
    shift.clamp(MIN_SHIFT, MAX_SHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{key_of_canonical, tests::test_secret};

    fn key(i: u32) -> RuleKey {
        let name = std::format!("\x04name\x04{i:04}");
        key_of_canonical(&test_secret(), name.as_bytes())
    }

    #[test]
    fn off_unless_the_size_is_in_range() {
        let k = key(1);
        assert_eq!(position(0, &k), None);
        assert_eq!(position(REGION_BIT, &k), None);
        assert_eq!(position(MIN_SHIFT - 1, &k), None);
        assert_eq!(position(MAX_SHIFT + 1, &k), None);
        assert!(position(MIN_SHIFT, &k).is_some());
        assert!(position(setting(1, MAX_SHIFT), &k).is_some());
        // Off: every key may be there, whatever the word says.
        let p = Probe::of(0);
        let (w, m) = p.bit(&k);
        assert!(w < REGION_WORDS);
        assert!(p.may_hold(0, m));
        let p = Probe::of(setting(0, MIN_SHIFT));
        let (_, m) = p.bit(&k);
        assert!(!p.may_hold(0, m));
        assert!(p.may_hold(m, m));
        assert!(!p.may_hold(!m, m));
    }

    #[test]
    fn positions_stay_inside_their_region() {
        for shift in MIN_SHIFT..=MAX_SHIFT {
            let words = 1usize << (shift - 6);
            for i in 0..2000 {
                let (w0, b0) = position(setting(0, shift), &key(i)).expect("on");
                let (w1, b1) = position(setting(1, shift), &key(i)).expect("on");
                assert!(w0 < words, "shift {shift}: word {w0}");
                assert_eq!((w1, b1), (w0 + REGION_WORDS, b0));
                assert_eq!(b0.count_ones(), 1);
            }
        }
    }

    #[test]
    fn settings_round_trip() {
        for region in 0..2 {
            for shift in MIN_SHIFT..=MAX_SHIFT {
                assert_eq!(parts(setting(region, shift)), (region, shift));
            }
        }
    }

    #[test]
    fn size_follows_the_number_of_names() {
        assert_eq!(shift_for(0), MIN_SHIFT);
        assert_eq!(shift_for(1), MIN_SHIFT);
        assert_eq!(shift_for(32), MIN_SHIFT);
        assert_eq!(shift_for(33), MIN_SHIFT + 1);
        assert_eq!(shift_for(1_000_000), 24);
        assert_eq!(shift_for(4_000_000), MAX_SHIFT);
        assert_eq!(shift_for(10_000_000), MAX_SHIFT);
        assert_eq!(shift_for(u64::MAX), MAX_SHIFT);
    }

    #[test]
    fn similar_names_spread_over_the_bits() {
        // 4096 names in a 2^16-bit filter: a good spread sets about 4096·e^(-1/16) ≈ 3970
        // distinct bits; a hash that ignores some key bits would set far fewer.
        let shift = 16;
        let mut bits = std::collections::HashSet::new();
        for i in 0..4096 {
            bits.insert(position(setting(0, shift), &key(i)).expect("on"));
        }
        assert!(bits.len() > 3850, "{} distinct bits", bits.len());
    }
}
