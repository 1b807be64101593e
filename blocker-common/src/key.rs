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
//! The canonical name is cut into **chunks**: each label (its length byte, then its bytes) is
//! cut into pieces of at most [`CHUNK`] = 7 bytes, and each piece, read as a little-endian
//! number (below 2^56), is one coefficient `a_k`. The chunk sequence determines the name (the
//! first chunk of a label starts with its length, which says how many chunks follow), and the
//! first chunk of any name or suffix is at least 1 (a length byte).
//!
//! Each hash is the polynomial `H = Σ a_k·r^(m−1−k) mod p` of the `m` chunks, evaluated
//! modulo the Mersenne prime p = 2^61 − 1 at a **secret** point `r` (the base), drawn
//! uniformly from [2^32, p−1] for each installation ([`KeySecret`]). A label of L + 1 bytes
//! gives ⌈(L + 1)/7⌉ ≤ (L + 1)/2 chunks, so a name of at most 254 bytes has at most 127. Two
//! different names give different chunk sequences, and their polynomials differ (leading
//! coefficients are non-zero, so even sequences of different lengths differ) by a non-zero
//! polynomial of degree at most 126: over the secret base, they collide with probability at
//! most 126/(p − 2^32) < 2^-54 in one hash, and below 2^-108 in both at once (the bases are
//! independent). Without the secret, nobody can pick a name whose key equals another name's
//! key, whatever the list they control (SECURITY.md). (The key of a one-chunk name, a single
//! label of at most 6 bytes, is its chunk under any secret: a constant polynomial, which still
//! equals no other name's polynomial.)
//!
//! Chunks rather than bytes: one modular multiply (four 64-bit multiplies, BPF has no wider
//! ones) per 7 bytes instead of per byte keeps the name walk about as fast as the unkeyed
//! hash was.
//!
//! The XDP program walks a query name once, left to right, one chunk at a time, keeping the
//! running hash `F` and remembering `F` at each label start. The key of the suffix that starts
//! at chunk `j` of an `m`-chunk name is then `F(m) − F(j)·r^(m−j) mod p` (see [`suffix_key`]),
//! so every suffix key costs one modular multiply per hash, whatever the number of rules. The
//! powers `r^i` depend on the secret: they live next to it in [`KeySecret`], in a pinned map
//! the controller writes once. User space computes the same value directly with
//! [`key_of_canonical`]; host tests check the two agree.
//!
//! BPF has a 64-bit multiply only (no high half, and `u128` would become a libcall the
//! verifier refuses), so [`mulmod61`] multiplies 32-bit halves.

/// The modulus: the Mersenne prime 2^61 − 1 (2^61 ≡ 1, so reduction is a shift and an add).
pub const P61: u64 = (1 << 61) - 1;

/// Smallest secret base (a small base would make short names' hashes small numbers).
pub const BASE_MIN: u64 = 1 << 32;

/// Longest canonical name (wire length 255 minus the root byte).
pub const MAX_CANONICAL_LEN: usize = 254;

/// Bytes of a chunk (one coefficient, below 2^56 < p).
pub const CHUNK: usize = 7;

/// Most chunks of a canonical name: 127 one-byte labels (two bytes, one chunk each).
pub const MAX_CHUNKS: usize = 127;

/// Entries of each power table: every suffix length `0..=MAX_CHUNKS` in chunks, indexed with
/// `& (POW_LEN − 1)`.
pub const POW_LEN: usize = 128;

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

/// Running state of both hashes. Each is congruent to the hash so far and below
/// p + 8 + 2^56 (reduced only when a key is made).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Horner {
    pub h1: u64,
    pub h2: u64,
}

impl Horner {
    pub const ZERO: Horner = Horner { h1: 0, h2: 0 };

    /// Appends one chunk (see [`chunk_value`]): `h ← h·r + c` in each hash.
    #[inline(always)]
    pub fn push(self, c: u64, base: &[u64; 2]) -> Horner {
        Horner {
            h1: mul61_lazy(self.h1, base[0]).wrapping_add(c),
            h2: mul61_lazy(self.h2, base[1]).wrapping_add(c),
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

/// [`fold`] on each of the eight bytes of a word at once (branch-free).
#[inline(always)]
pub const fn fold_word(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Per byte, on its low seven bits (no carry leaves a byte: at most 0x7f + 0x3f):
    // the high bit says "≥ 'A'" in the first sum, "≥ '['" in the second.
    let low = w & LOW7;
    let ge_a = low.wrapping_add(0x3f3f_3f3f_3f3f_3f3f);
    let past_z = low.wrapping_add(0x2525_2525_2525_2525);
    // 'A'..='Z' with the byte's own high bit clear; 0x80 >> 2 is the case bit 0x20.
    let upper = ge_a & !past_z & !w & HIGH;
    w | (upper >> 2)
}

/// The coefficient of a chunk: the first `k` bytes (1..=[`CHUNK`]) of the little-endian
/// `word`, folded. Below 2^56.
#[inline(always)]
pub fn chunk_value(word: u64, k: u64) -> u64 {
    let mask = 1u64.wrapping_shl((8 * k) as u32).wrapping_sub(1);
    fold_word(word & mask)
}

/// Key of the suffix of `len` chunks at the end of a name whose full running hash is `end`,
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

/// The chunks of a canonical name (see the module documentation): `(little-endian word,
/// length)` of each, label by label. A length byte that runs past the end (not a canonical
/// name) ends its label at the end.
pub fn chunks(canonical: &[u8]) -> impl Iterator<Item = (u64, u64)> + '_ {
    let mut i = 0;
    core::iter::from_fn(move || {
        let first = *canonical.get(i)? as usize;
        let end = (i + 1 + first).min(canonical.len());
        Some(core::mem::replace(&mut i, end)..end)
    })
    .flat_map(move |label| canonical[label].chunks(CHUNK))
    .map(|c| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        (u64::from_le_bytes(w), c.len() as u64)
    })
}

/// Key of a canonical name (wire labels without the root byte) under `secret`. Folds as it
/// goes, so a wire name with upper-case letters gives the same key as its folded form.
pub fn key_of_canonical(secret: &KeySecret, canonical: &[u8]) -> RuleKey {
    let mut h = Horner::ZERO;
    for (word, k) in chunks(canonical) {
        h = h.push(chunk_value(word, k), &secret.base);
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
        bad.pow2[100] ^= 1;
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

    /// The definition, written independently: labels cut into 7-byte pieces, each piece a
    /// little-endian number of its lower-cased bytes, evaluated with u128 arithmetic.
    fn key_u128(base: [u64; 2], canonical: &[u8]) -> RuleKey {
        let mut coefficients = Vec::new();
        let mut i = 0;
        while i < canonical.len() {
            let end = (i + 1 + canonical[i] as usize).min(canonical.len());
            let mut at = i;
            while at < end {
                let piece = &canonical[at..end.min(at + 7)];
                let mut v = 0u128;
                for (n, b) in piece.iter().enumerate() {
                    v |= (b.to_ascii_lowercase() as u128) << (8 * n);
                }
                coefficients.push(v);
                at += piece.len();
            }
            i = end;
        }
        let h = |r: u64| {
            coefficients
                .iter()
                .fold(0u128, |h, c| (h * r as u128 + c) % P61 as u128) as u64
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

    /// The walk's keys: the running hash (and chunk count) at each label start, then
    /// `suffix_key` at each. Returns (byte offset of the label, its suffix key).
    fn walk_keys(k: &KeySecret, name: &[u8]) -> Vec<(usize, RuleKey)> {
        let mut h = Horner::ZERO;
        let mut starts = Vec::new();
        let (mut i, mut m) = (0, 0);
        while i < name.len() {
            starts.push((i, m, h));
            let end = i + 1 + name[i] as usize;
            while i < end {
                let n = CHUNK.min(end - i);
                let mut w = [0u8; 8];
                w[..n].copy_from_slice(&name[i..i + n]);
                h = h.push(chunk_value(u64::from_le_bytes(w), n as u64), &k.base);
                m += 1;
                i += n;
            }
        }
        starts
            .into_iter()
            .map(|(j, at_chunk, at)| (j, suffix_key(k, h, at, m - at_chunk)))
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
            if chunks(&n).count() == 1 {
                // A constant polynomial: the chunk itself, under any secret (it still
                // collides with no other name's key, whose polynomial is another one).
                assert_eq!(ka, kb);
                let (w, len) = chunks(&n).next().expect("one chunk");
                assert_eq!(ka.h1, chunk_value(w, len));
            } else {
                assert!(ka.h1 != kb.h1 && ka.h2 != kb.h2, "both hashes change");
            }
        }
    }

    #[test]
    fn fold_is_ascii_lowercase() {
        for b in 0..=255u8 {
            assert_eq!(fold(b), b.to_ascii_lowercase(), "{b:#04x}");
        }
    }

    #[test]
    fn fold_word_folds_each_byte() {
        let per_byte = |w: u64| u64::from_le_bytes(w.to_le_bytes().map(|b| b.to_ascii_lowercase()));
        // Every byte value in every position, next to neighbours that could carry or borrow.
        for pos in 0..8 {
            for b in 0..=255u64 {
                for fill in [0u64, 0x41, 0x5a, 0x5b, 0x7f, 0x80, 0xc1, 0xda, 0xff] {
                    let mut w = fill * 0x0101_0101_0101_0101;
                    w = (w & !(0xff << (8 * pos))) | (b << (8 * pos));
                    assert_eq!(fold_word(w), per_byte(w), "{w:#018x}");
                }
            }
        }
        let mut r = Rng(13);
        for _ in 0..200_000 {
            let w = r.next();
            assert_eq!(fold_word(w), per_byte(w), "{w:#018x}");
        }
    }

    #[test]
    fn chunks_cover_labels_and_stay_below_the_table() {
        let cut = |name: &[u8]| -> Vec<(u64, u64)> { chunks(name).collect() };
        assert_eq!(cut(&wire("a")), vec![(0x6101, 2)]);
        // 1 + 7 bytes: two chunks, the second of one byte.
        assert_eq!(
            cut(&wire("abcdefg"))
                .iter()
                .map(|c| c.1)
                .collect::<Vec<_>>(),
            vec![7, 1]
        );
        assert_eq!(
            cut(&wire("ab.cd")).len(),
            2,
            "a chunk never spans two labels"
        );
        assert_eq!(cut(&[]).len(), 0);
        // The most chunks a name can have, and a long name with long labels.
        assert_eq!(cut(&[[1u8, b'x']; 127].concat()).len(), MAX_CHUNKS);
        let mut long = Vec::new();
        for _ in 0..3 {
            long.push(63);
            long.extend([b'y'; 63]);
        }
        long.push(61);
        long.extend([b'z'; 61]);
        assert_eq!(long.len(), MAX_CANONICAL_LEN);
        assert_eq!(cut(&long).len(), 3 * 10 + 9);
        let mut r = Rng(17);
        for _ in 0..5000 {
            let n = random_name(&mut r);
            assert!(cut(&n).len() <= MAX_CHUNKS && cut(&n).len() < POW_LEN);
        }
        // Not a canonical name: a length byte that runs past the end stops there.
        assert_eq!(cut(&[9, b'a']), vec![(0x6109, 2)]);
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
        // Zero bytes count: in the middle, at the end of a label, filling a whole chunk.
        let zeros = |label: &[u8]| {
            let mut w = std::vec![label.len() as u8];
            w.extend_from_slice(label);
            w.extend_from_slice(&wire("test"));
            key_of_canonical(k, &w)
        };
        let variants = [
            zeros(b"a"),
            zeros(b"a\0"),
            zeros(b"a\0\0"),
            zeros(b"\0a"),
            zeros(b"abcdef"),
            zeros(b"abcdef\0"),
            zeros(b"abcdef\0\0\0\0\0\0\0"),
            zeros(b"abcdef\0\0\0\0\0\0\0\0"),
        ];
        for (x, a) in variants.iter().enumerate() {
            for b in &variants[x + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
