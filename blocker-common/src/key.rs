//! The name → map key encoder. This is the only definition of a rule key.
//!
//! A key is two independent polynomial hashes of the *canonical* form of a name: its
//! wire-format labels (length byte, then the label's bytes) without the final root byte, with
//! ASCII letters folded to lower case. Length bytes are 1..=63 and never change under folding,
//! so folding every byte is the same as folding the label bytes only.
//!
//! Hashing the wire form (length bytes included) means `example.com` never matches
//! `badexample.com`, and a label that itself contains a `.` byte is one label, never two.
//!
//! Each hash is evaluated modulo the Mersenne prime p = 2^61 − 1 at a **secret** point (the
//! base), drawn uniformly from [2^32, p−1] for each installation ([`KeySecret`]): byte `b` of
//! the name is the coefficient `b + 1`, so
//! `H(c_0 … c_{n−1}) = Σ (c_i + 1)·r^(n−1−i) mod p`. Two different names of at most 254
//! bytes give two different polynomials (every coefficient is at least 1, so even names of
//! different lengths differ), whose difference has at most 253 roots: over the secret base,
//! they collide with probability at most 253/(p − 2^32) < 2^-53 in one hash, and below 2^-106
//! in both at once (the bases are independent). Without the secret, nobody can pick a name
//! whose key equals another name's key, whatever the list they control (SECURITY.md).
//!
//! The XDP program walks a query name once, left to right, keeping the running hash `F` and
//! remembering `F` at each label start. The key of the suffix that starts at byte `j` of an
//! `n`-byte name is then `F(n) − F(j)·r^(n−j) mod p` (see [`suffix_key`]), so every suffix key
//! costs one modular multiply per hash, whatever the number of rules. The powers `r^i` depend
//! on the secret: they live next to it in [`KeySecret`], in a pinned map the controller
//! writes once. User space computes the same value directly with [`key_of_canonical`]; host
//! tests check the two agree.
//!
//! BPF has a 64-bit multiply only (no high half, and `u128` would become a libcall the
//! verifier refuses), so [`mulmod61`] multiplies 32-bit halves.

/// The modulus: the Mersenne prime 2^61 − 1 (2^61 ≡ 1, so reduction is a shift and an add).
pub const P61: u64 = (1 << 61) - 1;

/// Smallest secret base (a small base would make short names' hashes small numbers).
pub const BASE_MIN: u64 = 1 << 32;

/// Longest canonical name (wire length 255 minus the root byte).
pub const MAX_CANONICAL_LEN: usize = 254;

/// Entries of each power table: every suffix length `0..=MAX_CANONICAL_LEN`, indexed with
/// `& 0xff`.
pub const POW_LEN: usize = 256;

const LO32: u64 = 0xffff_ffff;
const LO29: u64 = (1 << 29) - 1;

/// `x mod p`, for any `x`. Branch-free (BPF has no conditional move, and a branch per byte
/// would double the paths the verifier walks).
#[inline(always)]
pub fn reduce61(x: u64) -> u64 {
    // x = hi·2^61 + lo ≡ hi + lo; y ≤ p + 7.
    let y = (x & P61).wrapping_add(x >> 61);
    // y ≥ p exactly when y + 1 reaches 2^61: subtract p once then.
    y.wrapping_sub(P61.wrapping_mul(y.wrapping_add(1) >> 61))
}

/// `a·b` modulo p, not fully reduced: the result is congruent to `a·b` and below `p + 8`.
/// Both inputs must be below 2^62 (the running hash is allowed to exceed p a little).
#[inline(always)]
fn mul61_lazy(a: u64, b: u64) -> u64 {
    let (a1, a0) = (a >> 32, a & LO32);
    let (b1, b0) = (b >> 32, b & LO32);
    // a·b = hi·2^64 + mid·2^32 + lo, with hi < 2^60, mid < 2^63, lo < 2^64.
    let hi = a1.wrapping_mul(b1);
    let mid = a1.wrapping_mul(b0).wrapping_add(a0.wrapping_mul(b1));
    let lo = a0.wrapping_mul(b0);
    // 2^64 ≡ 8; mid·2^32 = (mid >> 29)·2^61 + (mid mod 2^29)·2^32 ≡ (mid >> 29) +
    // (mid mod 2^29)·2^32; lo ≡ (lo >> 61) + (lo mod 2^61). The sum is below
    // 2^63 + 2^62 + 2^35: no overflow.
    let s = (hi << 3)
        .wrapping_add(mid >> 29)
        .wrapping_add((mid & LO29) << 32)
        .wrapping_add(lo >> 61)
        .wrapping_add(lo & P61);
    // s = hi'·2^61 + lo' with hi' ≤ 7.
    (s & P61).wrapping_add(s >> 61)
}

/// `a·b mod p`, fully reduced, for `a, b < 2^62`, with 64-bit multiplies only.
#[inline(always)]
pub fn mulmod61(a: u64, b: u64) -> u64 {
    reduce61(mul61_lazy(a, b))
}

/// The per-installation secret of the key hash, and the powers of its bases: the value of the
/// pinned array map `BLK_KEY` (one entry). Written once by the controller when it creates the
/// maps (and recorded in the state directory); read by the XDP program once per packet. All
/// zero until written: the rule map is empty until then.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySecret {
    /// The secret bases r1, r2, each in [`BASE_MIN`, p − 1].
    pub base: [u64; 2],
    /// `r1^i mod p`.
    pub pow1: [u64; POW_LEN],
    /// `r2^i mod p`.
    pub pow2: [u64; POW_LEN],
}

impl KeySecret {
    /// The all-zero value of a map entry nobody has written.
    pub const UNSET: KeySecret = KeySecret {
        base: [0; 2],
        pow1: [0; POW_LEN],
        pow2: [0; POW_LEN],
    };

    /// Whether `b` is a valid base.
    pub const fn valid_base(b: u64) -> bool {
        b >= BASE_MIN && b < P61
    }

    /// The secret with bases `r1`, `r2` and their power tables; `None` when a base is out of
    /// range.
    pub fn from_bases(r1: u64, r2: u64) -> Option<KeySecret> {
        if !Self::valid_base(r1) || !Self::valid_base(r2) {
            return None;
        }
        let mut k = KeySecret {
            base: [r1, r2],
            ..Self::UNSET
        };
        let (mut a1, mut a2) = (1u64, 1u64);
        for i in 0..POW_LEN {
            k.pow1[i] = a1;
            k.pow2[i] = a2;
            a1 = mulmod61(a1, r1);
            a2 = mulmod61(a2, r2);
        }
        Some(k)
    }

    /// Whether this is a complete, consistent secret: valid bases and their powers (a map
    /// value written by someone else, or damaged, is not).
    pub fn is_valid(&self) -> bool {
        Self::from_bases(self.base[0], self.base[1]).is_some_and(|k| k == *self)
    }
}

/// Key of the rule map: two hashes of a canonical name, each below p. Written by user space,
/// looked up by the XDP program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    pub h1: u64,
    pub h2: u64,
}

/// Running state of both hashes. Each is congruent to the hash so far and below p + 264
/// (reduced only when a key is made).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Horner {
    pub h1: u64,
    pub h2: u64,
}

impl Horner {
    pub const ZERO: Horner = Horner { h1: 0, h2: 0 };

    /// Appends one canonical (already folded) byte: `h ← h·r + (c + 1)` in each hash.
    #[inline(always)]
    pub fn push(self, c: u8, base: &[u64; 2]) -> Horner {
        let c = c as u64 + 1;
        Horner {
            h1: mul61_lazy(self.h1, base[0]).wrapping_add(c),
            h2: mul61_lazy(self.h2, base[1]).wrapping_add(c),
        }
    }
}

/// ASCII-only case folding (DNS names compare case-insensitively on ASCII letters only,
/// RFC 4343); every other byte, including bytes ≥ 0x80, is left as it is. Branch-free: in
/// the name walk a branch per byte would double the paths the verifier walks (and
/// mispredict on mixed names).
#[inline(always)]
pub const fn fold(b: u8) -> u8 {
    // 1 when b − 'A' (mod 256) is below 26, i.e. b is an upper-case letter.
    let upper = ((b.wrapping_sub(b'A') as u64).wrapping_sub(26) >> 63) as u8;
    b | (upper << 5)
}

/// Key of the suffix of `len` bytes at the end of a name whose full running hash is `end`,
/// where `at_start` is the running hash just before the suffix starts.
#[inline(always)]
pub fn suffix_key(secret: &KeySecret, end: Horner, at_start: Horner, len: usize) -> RuleKey {
    let i = len & (POW_LEN - 1);
    // end − at_start·r^len, kept non-negative by adding p (both terms are below p).
    let h1 = reduce61(end.h1)
        .wrapping_add(P61)
        .wrapping_sub(mulmod61(at_start.h1, secret.pow1[i]));
    let h2 = reduce61(end.h2)
        .wrapping_add(P61)
        .wrapping_sub(mulmod61(at_start.h2, secret.pow2[i]));
    RuleKey {
        h1: reduce61(h1),
        h2: reduce61(h2),
    }
}

/// Key of a canonical name (wire labels without the root byte) under `secret`. Folds as it
/// goes, so a wire name with upper-case letters gives the same key as its folded form.
pub fn key_of_canonical(secret: &KeySecret, canonical: &[u8]) -> RuleKey {
    let mut h = Horner::ZERO;
    for &b in canonical {
        h = h.push(fold(b), &secret.base);
    }
    RuleKey {
        h1: reduce61(h.h1),
        h2: reduce61(h.h2),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::vec::Vec;

    /// xorshift64*: reproducible randomness for the tests.
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// A uniformly random valid secret (rejection sampling, as the controller does).
        pub fn secret(&mut self) -> KeySecret {
            loop {
                let (a, b) = (self.next() & P61, self.next() & P61);
                if let Some(k) = KeySecret::from_bases(a, b) {
                    return k;
                }
            }
        }
    }

    /// A fixed secret for tests that need one.
    pub fn test_secret() -> KeySecret {
        KeySecret::from_bases(0x1234_5678_9abc_def1 & P61, 0x0fed_cba9_8765_4321 & P61)
            .expect("valid bases")
    }

    fn wire(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in s.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v
    }

    /// The reference: u128 arithmetic (fine on the host, not in BPF).
    fn mulmod_u128(a: u64, b: u64) -> u64 {
        ((a as u128 * b as u128) % P61 as u128) as u64
    }

    /// Values at the edges of every range the 32-bit split and the reductions care about.
    fn edges() -> Vec<u64> {
        let mut v = Vec::new();
        for base in [
            0u64,
            1 << 29,
            1 << 32,
            1 << 61,
            P61,
            P61 - (1 << 32),
            1 << 62,
            (1 << 61) + (1 << 32),
        ] {
            for d in [0u64, 1, 2, 7, 8, 255, 256, 264] {
                v.push(base.wrapping_add(d));
                v.push(base.wrapping_sub(d));
            }
        }
        v.push(LO32);
        v.push(LO32 << 29);
        v.retain(|x| *x < 1 << 62);
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn mulmod_matches_u128_arithmetic() {
        let e = edges();
        for &a in &e {
            for &b in &e {
                assert_eq!(mulmod61(a, b), mulmod_u128(a, b), "{a:#x}·{b:#x}");
                assert!(mul61_lazy(a, b) < P61 + 8, "{a:#x}·{b:#x}: lazy bound");
            }
        }
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..2_000_000u32 {
            // Full 62-bit range, then the ranges hashing really uses (below p + 264, below p).
            let (a, b) = match i % 3 {
                0 => (r.next() >> 2, r.next() >> 2),
                1 => (r.next() % (P61 + 264), r.next() % P61),
                _ => (r.next() & P61, r.next() & P61),
            };
            let got = mulmod61(a, b);
            assert_eq!(got, mulmod_u128(a, b), "{a:#x}·{b:#x}");
            assert!(got < P61);
        }
    }

    #[test]
    fn reduce_is_mod_p_for_every_u64() {
        let mut xs = edges();
        xs.extend([u64::MAX, u64::MAX - 1, u64::MAX - P61, 7 * P61, 8 * P61 - 1]);
        let mut r = Rng(42);
        xs.extend((0..1_000_000).map(|_| r.next()));
        for x in xs {
            assert_eq!(reduce61(x), x % P61, "{x:#x}");
        }
    }

    #[test]
    fn secrets_are_checked() {
        assert!(KeySecret::from_bases(BASE_MIN - 1, BASE_MIN).is_none());
        assert!(KeySecret::from_bases(BASE_MIN, P61).is_none());
        assert!(KeySecret::from_bases(0, 0).is_none());
        let k = KeySecret::from_bases(BASE_MIN, P61 - 1).expect("both ends are valid");
        assert!(k.is_valid());
        assert_eq!(k.pow1[1], BASE_MIN);
        assert_eq!(k.pow2[2], 1, "(p−1)² ≡ 1");
        assert!(!KeySecret::UNSET.is_valid());
        let mut bad = k;
        bad.pow2[200] ^= 1;
        assert!(!bad.is_valid(), "a damaged power table is refused");
        let mut r = Rng(7);
        for _ in 0..100 {
            let k = r.secret();
            assert!(k.is_valid());
            assert_eq!((k.pow1[0], k.pow2[0]), (1, 1));
            for i in 1..POW_LEN {
                assert_eq!(k.pow1[i], mulmod_u128(k.pow1[i - 1], k.base[0]));
                assert_eq!(k.pow2[i], mulmod_u128(k.pow2[i - 1], k.base[1]));
            }
        }
    }

    /// Direct polynomial evaluation with u128 arithmetic: Σ (c_i + 1)·r^(n−1−i) mod p.
    fn key_u128(base: [u64; 2], canonical: &[u8]) -> RuleKey {
        let h = |r: u64| {
            canonical.iter().fold(0u128, |h, &b| {
                (h * r as u128 + fold(b) as u128 + 1) % P61 as u128
            }) as u64
        };
        RuleKey {
            h1: h(base[0]),
            h2: h(base[1]),
        }
    }

    /// A random canonical name: 1 to 127 labels of random bytes (upper case included), at
    /// most 254 bytes.
    fn random_name(r: &mut Rng) -> Vec<u8> {
        let mut w = Vec::new();
        loop {
            let len = 1 + (r.next() % if r.next().is_multiple_of(4) { 63 } else { 8 }) as usize;
            if w.len() + 1 + len > MAX_CANONICAL_LEN {
                break;
            }
            w.push(len as u8);
            for _ in 0..len {
                w.push(r.next() as u8);
            }
            if r.next().is_multiple_of(6) {
                break;
            }
        }
        w
    }

    #[test]
    fn keys_are_the_polynomial_mod_p() {
        let mut r = Rng(3);
        for _ in 0..2000 {
            let k = r.secret();
            let name = random_name(&mut r);
            assert_eq!(key_of_canonical(&k, &name), key_u128(k.base, &name));
        }
        let k = test_secret();
        let longest = [[1u8, 0xff]; 127].concat();
        assert_eq!(key_of_canonical(&k, &longest), key_u128(k.base, &longest));
    }

    /// The walk's keys: the running hash at each label start, then `suffix_key` at each.
    fn walk_keys(k: &KeySecret, name: &[u8]) -> Vec<(usize, RuleKey)> {
        let mut h = Horner::ZERO;
        let mut starts = Vec::new();
        let mut i = 0;
        while i < name.len() {
            starts.push((i, h));
            let l = name[i] as usize;
            for &b in &name[i..=i + l] {
                h = h.push(fold(b), &k.base);
            }
            i += l + 1;
        }
        starts
            .into_iter()
            .map(|(j, at)| (j, suffix_key(k, h, at, name.len() - j)))
            .collect()
    }

    #[test]
    fn suffix_keys_match_direct_keys() {
        let mut r = Rng(11);
        let mut names = std::vec![wire("WwW.Sub.Example.COM"), [[1u8, 0xff]; 127].concat()];
        for _ in 0..3000 {
            names.push(random_name(&mut r));
        }
        for (n, name) in names.iter().enumerate() {
            // A fresh secret for most names; extreme bases for some.
            let k = match n % 50 {
                0 => KeySecret::from_bases(BASE_MIN, P61 - 1).expect("valid"),
                1 => KeySecret::from_bases(P61 - 1, BASE_MIN).expect("valid"),
                _ => r.secret(),
            };
            for (j, key) in walk_keys(&k, name) {
                assert_eq!(key, key_of_canonical(&k, &name[j..]), "suffix at {j}");
                assert!(key.h1 < P61 && key.h2 < P61);
            }
        }
    }

    #[test]
    fn another_secret_gives_other_keys() {
        let mut r = Rng(5);
        let name = wire("google.com");
        let keys: std::collections::HashSet<RuleKey> = (0..1000)
            .map(|_| key_of_canonical(&r.secret(), &name))
            .collect();
        assert_eq!(keys.len(), 1000, "every secret maps the name elsewhere");
        let (a, b) = (r.secret(), r.secret());
        for _ in 0..1000 {
            let n = random_name(&mut r);
            let (ka, kb) = (key_of_canonical(&a, &n), key_of_canonical(&b, &n));
            assert!(ka.h1 != kb.h1 && ka.h2 != kb.h2, "both hashes change");
        }
    }

    #[test]
    fn fold_is_ascii_lowercase() {
        for b in 0..=255u8 {
            assert_eq!(fold(b), b.to_ascii_lowercase(), "{b:#04x}");
        }
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
    fn case_and_label_boundaries_matter() {
        let k = &test_secret();
        assert_eq!(
            key_of_canonical(k, &wire("Example.COM")),
            key_of_canonical(k, &wire("example.com"))
        );
        assert_ne!(
            key_of_canonical(k, &wire("badexample.com")),
            key_of_canonical(k, &wire("example.com"))
        );
        // One label "a.b" (with a dot byte in it) is not two labels "a" "b".
        let one = [3, b'a', b'.', b'b'];
        assert_ne!(key_of_canonical(k, &one), key_of_canonical(k, &wire("a.b")));
        // Non-ASCII bytes are not folded.
        assert_ne!(
            key_of_canonical(k, &[1, 0xC4]),
            key_of_canonical(k, &[1, 0xE4])
        );
        // Zero bytes count: a leading or trailing zero byte changes the key.
        assert_ne!(key_of_canonical(k, &[1, 0]), key_of_canonical(k, &[1]));
        assert_ne!(key_of_canonical(k, &[0, 1]), key_of_canonical(k, &[1]));
    }
}
