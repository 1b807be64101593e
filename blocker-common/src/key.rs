//! The name → map key encoder. This is the only definition of a rule key.
//!
//! A key is two independent 64-bit polynomial hashes (Horner's rule, wrapping arithmetic) of
//! the *canonical* form of a name: its wire-format labels (length byte, then the label's bytes)
//! without the final root byte, with ASCII letters folded to lower case. Length bytes are
//! 1..=63 and never change under folding, so folding every byte is the same as folding the
//! label bytes only.
//!
//! Hashing the wire form (length bytes included) means `example.com` never matches
//! `badexample.com`, and a label that itself contains a `.` byte is one label, never two.
//!
//! The XDP program walks a query name once, left to right, keeping the running hash `F` and
//! remembering `F` at each label start. The key of the suffix that starts at byte `j` of an
//! `n`-byte name is then `F(n) - F(j) * P^(n-j)` (see [`suffix_key`]), so every suffix key costs
//! one multiply per hash, whatever the number of rules. User space computes the same value
//! directly with [`key_of_canonical`]; host tests check the two agree.
//!
//! Two 64-bit hashes make a 128-bit key: with 10 million rules and a few lookups per query the
//! chance that an unrelated name collides with a rule is about 10⁻²⁵ per query.

/// Multiplier of the first hash (odd, so invertible mod 2^64).
pub const P1: u64 = 0x9E37_79B9_7F4A_7C15;
/// Multiplier of the second hash (odd, independent of [`P1`]).
pub const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// Longest canonical name (wire length 255 minus the root byte).
pub const MAX_CANONICAL_LEN: usize = 254;

/// Key of the rule map: two hashes of a canonical name. Written by user space, looked up by
/// the XDP program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    pub h1: u64,
    pub h2: u64,
}

/// Running state of both hashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Horner {
    pub h1: u64,
    pub h2: u64,
}

impl Horner {
    pub const ZERO: Horner = Horner { h1: 0, h2: 0 };

    /// Appends one canonical (already folded) byte.
    #[inline(always)]
    pub fn push(self, c: u8) -> Horner {
        Horner {
            h1: self.h1.wrapping_mul(P1).wrapping_add(c as u64),
            h2: self.h2.wrapping_mul(P2).wrapping_add(c as u64),
        }
    }
}

/// ASCII-only case folding (DNS names compare case-insensitively on ASCII letters only,
/// RFC 4343); every other byte, including bytes ≥ 0x80, is left as it is.
#[inline(always)]
pub const fn fold(b: u8) -> u8 {
    if b.wrapping_sub(b'A') < 26 {
        b | 0x20
    } else {
        b
    }
}

const fn pow_table(p: u64) -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut acc = 1u64;
    let mut i = 0;
    while i < 256 {
        t[i] = acc;
        acc = acc.wrapping_mul(p);
        i += 1;
    }
    t
}

/// `P1^i` for every suffix length `i`.
pub static POW1: [u64; 256] = pow_table(P1);
/// `P2^i` for every suffix length `i`.
pub static POW2: [u64; 256] = pow_table(P2);

/// Key of the suffix of `len` bytes at the end of a name whose full running hash is `end`,
/// where `at_start` is the running hash just before the suffix starts.
#[inline(always)]
pub fn suffix_key(end: Horner, at_start: Horner, len: usize) -> RuleKey {
    let i = len & 0xff;
    RuleKey {
        h1: end.h1.wrapping_sub(at_start.h1.wrapping_mul(POW1[i])),
        h2: end.h2.wrapping_sub(at_start.h2.wrapping_mul(POW2[i])),
    }
}

/// Key of a canonical name (wire labels without the root byte). Folds as it goes, so a
/// wire name with upper-case letters gives the same key as its folded form.
pub fn key_of_canonical(canonical: &[u8]) -> RuleKey {
    let mut h = Horner::ZERO;
    for &b in canonical {
        h = h.push(fold(b));
    }
    RuleKey { h1: h.h1, h2: h.h2 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(s: &str) -> std::vec::Vec<u8> {
        let mut v = std::vec::Vec::new();
        for l in s.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v
    }

    #[test]
    fn fold_is_ascii_only() {
        assert_eq!(fold(b'A'), b'a');
        assert_eq!(fold(b'Z'), b'z');
        assert_eq!(fold(b'@'), b'@');
        assert_eq!(fold(b'['), b'[');
        assert_eq!(fold(0xC4), 0xC4);
        for b in 0..=63u8 {
            assert_eq!(fold(b), b, "length bytes never change");
        }
    }

    #[test]
    fn suffix_keys_match_direct_keys() {
        let name = wire("WwW.Sub.Example.COM");
        let mut h = Horner::ZERO;
        let mut starts = std::vec::Vec::new();
        let mut i = 0;
        while i < name.len() {
            starts.push((i, h));
            let l = name[i] as usize;
            for &b in &name[i..=i + l] {
                h = h.push(fold(b));
            }
            i += l + 1;
        }
        for (j, at) in starts {
            let direct = key_of_canonical(&name[j..]);
            assert_eq!(suffix_key(h, at, name.len() - j), direct, "suffix at {j}");
        }
    }

    #[test]
    fn case_and_label_boundaries_matter() {
        assert_eq!(
            key_of_canonical(&wire("Example.COM")),
            key_of_canonical(&wire("example.com"))
        );
        assert_ne!(
            key_of_canonical(&wire("badexample.com")),
            key_of_canonical(&wire("example.com"))
        );
        // One label "a.b" (with a dot byte in it) is not two labels "a" "b".
        let one = [3, b'a', b'.', b'b'];
        assert_ne!(key_of_canonical(&one), key_of_canonical(&wire("a.b")));
        // Non-ASCII bytes are not folded.
        assert_ne!(key_of_canonical(&[1, 0xC4]), key_of_canonical(&[1, 0xE4]));
    }
}
