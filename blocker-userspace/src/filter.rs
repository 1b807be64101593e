//! The controller's half of the key filter (see `blocker_common::filter`): the pinned
//! `BLK_FILTER` array mapped into this process, and the one rule for keeping it right —
//! a key's bit is set before the key enters the rule map.

use crate::kernel::{KernelError, Result};
use aya::maps::MapData;
use blocker_common::{
    filter::{parts, position, setting, shift_for, MIN_SHIFT, REGION_WORDS},
    Config, RuleKey,
};

/// The pinned `BLK_FILTER` array, memory-mapped read-write (both regions as one slice).
pub type Mapping = crate::mmap::Words;

/// Maps the pinned filter array, refusing one of another layout.
pub fn mapping(map: &MapData) -> Result<Mapping> {
    let info = map.info()?;
    if !(info.max_entries() == 2 && info.value_size() as usize == REGION_WORDS * 8) {
        return Err(KernelError::FilterLayout {
            entries: info.max_entries(),
            value_size: info.value_size(),
            want_size: REGION_WORDS * 8,
        });
    }
    Mapping::new(map, "the key filter")
}

/// Size and fill of a key filter (`blocker status`, `stats --json`, `serve`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub bits: u64,
    /// Bits set: one or fewer per rule name, plus bits of removed names until a rebuild.
    pub set: u64,
}

/// The key filter's two regions, in the kernel ([`Mapping`]) or, for tests, in memory.
pub struct KeyFilter<W = Mapping>(pub W);

impl<W: AsRef<[u64]>> KeyFilter<W> {
    /// The words of the region and size `f` names (empty when the filter is off).
    fn region(&self, f: u8) -> &[u64] {
        let (region, shift) = parts(f);
        if shift < MIN_SHIFT {
            return &[];
        }
        let start = region as usize * REGION_WORDS;
        &self.0.as_ref()[start..start + (1usize << (shift - 6))]
    }

    /// Bits set in the region `f` names.
    pub fn ones(&self, f: u8) -> u64 {
        self.region(f)
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum()
    }

    /// Size and fill of the filter `f` names, or `None` when it is off.
    pub fn usage(&self, f: u8) -> Option<Usage> {
        let bits = self.region(f).len() as u64 * 64;
        (bits > 0).then(|| Usage {
            bits,
            set: self.ones(f),
        })
    }

    /// Whether `key`'s bit is set under `f` (true when the filter is off: "look it up").
    pub fn may_hold(&self, f: u8, key: &RuleKey) -> bool {
        position(f, key).is_none_or(|(w, bit)| self.0.as_ref()[w] & bit != 0)
    }

    /// Whether far more bits are set than `names` names would set: bits of removed names
    /// have piled up, and a rebuild would make the filter sharp again.
    fn clogged(&self, f: u8, names: u64) -> bool {
        let m = (self.region(f).len() * 64) as f64;
        let expected = m * (1.0 - (-(names as f64) / m).exp());
        self.ones(f) as f64 > 1.5 * expected + 64.0
    }
}

impl<W: AsRef<[u64]> + AsMut<[u64]>> KeyFilter<W> {
    fn set<'a>(&mut self, f: u8, keys: impl IntoIterator<Item = &'a RuleKey>) {
        let words = self.0.as_mut();
        for k in keys {
            if let Some((w, bit)) = position(f, k) {
                words[w] |= bit;
            }
        }
    }

    /// Makes the filter hold `added` before those keys enter the rule map.
    ///
    /// `names` bounds the number of names in the rule map once they are in. When the filter
    /// in force has the right size for that and is not clogged with bits of removed names,
    /// the new bits are set in place. Otherwise the other region is rebuilt from `everything`
    /// (every key that can be in the rule map meanwhile) and `added`, and `cfg.filter`
    /// switches to it: the caller writes `cfg` before writing the rule map.
    /// Returns whether `cfg` changed.
    pub fn admit<'a>(
        &mut self,
        cfg: &mut Config,
        added: impl IntoIterator<Item = &'a RuleKey>,
        names: u64,
        everything: impl FnOnce() -> Vec<RuleKey>,
    ) -> bool {
        let want = shift_for(names);
        let (region, shift) = parts(cfg.filter);
        // Grow at once; shrink only when four times too big (no flapping around a boundary).
        let sized = shift >= MIN_SHIFT && shift >= want && shift <= want + 2;
        if sized && !self.clogged(cfg.filter, names) {
            self.set(cfg.filter, added);
            return false;
        }
        let next = setting(1 - region, want);
        let start = (1 - region) as usize * REGION_WORDS;
        let len = 1usize << (want - 6);
        self.0.as_mut()[start..start + len].fill(0);
        self.set(next, &everything());
        self.set(next, added);
        log::info!(
            "key filter: 2^{want} bits for up to {names} names, {} set",
            self.ones(next)
        );
        cfg.filter = next;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blocker_common::{
        filter::{MAX_SHIFT, REGION_BIT},
        key::key_of_canonical,
    };

    fn keys(range: std::ops::Range<u32>) -> Vec<RuleKey> {
        let secret = blocker_common::key::KeySecret::from_bases(1 << 40, 1 << 50).expect("valid");
        range
            .map(|i| key_of_canonical(&secret, format!("\x04site\x08{i:08}").as_bytes()))
            .collect()
    }

    fn nothing() -> Vec<RuleKey> {
        Vec::new()
    }

    #[test]
    fn every_admitted_key_is_held_through_growth_and_rebuilds() {
        let mut kf = KeyFilter(vec![0u64; 2 * REGION_WORDS]);
        let mut cfg = Config::default();
        let mut held: Vec<RuleKey> = Vec::new();
        // Off at first: everything "may" be there.
        assert!(kf.may_hold(cfg.filter, &keys(0..1)[0]));
        let mut shifts = Vec::new();
        for step in 0..6u32 {
            let added = keys(step * 5000..(step + 1) * 5000);
            let before = held.clone();
            let names = (held.len() + added.len()) as u64;
            kf.admit(&mut cfg, &added, names, || before);
            held.extend(added);
            for k in &held {
                assert!(kf.may_hold(cfg.filter, k), "step {step}");
            }
            shifts.push(parts(cfg.filter).1);
        }
        // 5000 names need 2^17 bits, 30000 need 2^19: the filter grew (into the other region
        // each time) and never shrank.
        assert_eq!(shifts.first(), Some(&17));
        assert_eq!(shifts.last(), Some(&19));
        assert!(shifts.windows(2).all(|w| w[0] <= w[1]));
        assert_ne!(cfg.filter & REGION_BIT, 0);
    }

    #[test]
    fn absent_names_are_mostly_filtered_out() {
        let mut kf = KeyFilter(vec![0u64; 2 * REGION_WORDS]);
        let mut cfg = Config::default();
        let present = keys(0..10_000);
        kf.admit(&mut cfg, &present, 10_000, nothing);
        let absent = keys(10_000..30_000);
        let passed = absent.iter().filter(|k| kf.may_hold(cfg.filter, k)).count();
        // 16 to 32 bits per name and one probe: at most about 6 % false positives.
        assert!(
            passed < absent.len() * 7 / 100,
            "{passed} of {}",
            absent.len()
        );
    }

    #[test]
    fn a_filter_clogged_by_removed_names_is_rebuilt_from_what_is_left() {
        let mut kf = KeyFilter(vec![0u64; 2 * REGION_WORDS]);
        let mut cfg = Config::default();
        // A dynamic list: each change replaces 10 000 names by 10 000 others.
        let mut live = keys(0..10_000);
        kf.admit(&mut cfg, &live, 10_000, nothing);
        let first = cfg.filter;
        let mut rebuilt = false;
        for round in 1..8u32 {
            let next = keys(round * 10_000..(round + 1) * 10_000);
            let old = live.clone();
            // Old and new coexist until the switch.
            let r = kf.admit(&mut cfg, &next, 20_000, || old);
            // Round 1 grows the filter; later rebuilds are for bits of removed names.
            rebuilt |= r && round > 1;
            live = next;
            for k in &live {
                assert!(kf.may_hold(cfg.filter, k));
            }
        }
        assert!(rebuilt, "never rebuilt");
        assert_eq!(parts(cfg.filter).1, parts(first).1 + 1);
        // After the last rebuild only the names of the last rounds are in it.
        assert!(kf.ones(cfg.filter) <= 3 * 10_000);
    }

    #[test]
    fn a_list_that_shrinks_gets_a_smaller_filter_once_the_old_names_are_gone() {
        let mut kf = KeyFilter(vec![0u64; 2 * REGION_WORDS]);
        let mut cfg = Config::default();
        let big = keys(0..100_000);
        kf.admit(&mut cfg, &big, 100_000, nothing);
        assert_eq!(parts(cfg.filter).1, 21);
        // The order shrinks to 1000 of its names: during the change all 100 000 are still
        // in the rule map, so the filter keeps its size.
        let small = keys(0..1000);
        let old = big.clone();
        assert!(!kf.admit(&mut cfg, &[], 100_000, || old));
        assert_eq!(parts(cfg.filter).1, 21);
        // The next change adds ten names to the 1000: the filter is rebuilt at 2^14 bits
        // from the names left, in the other region.
        let (region, _) = parts(cfg.filter);
        let added = keys(200_000..200_010);
        let left = small.clone();
        assert!(kf.admit(&mut cfg, &added, 1010, || left));
        assert_eq!(parts(cfg.filter), (1 - region, 14));
        for k in small.iter().chain(&added) {
            assert!(kf.may_hold(cfg.filter, k));
        }
        assert!(kf.ones(cfg.filter) <= 1010);
    }

    #[test]
    fn the_largest_filter_fits_the_map() {
        let mut kf = KeyFilter(vec![0u64; 2 * REGION_WORDS]);
        let mut cfg = Config {
            filter: blocker_common::filter::setting(1, MAX_SHIFT),
            ..Config::default()
        };
        let k = keys(0..1000);
        kf.admit(&mut cfg, &k, 50_000_000, nothing);
        assert_eq!(parts(cfg.filter), (1, MAX_SHIFT));
        assert!(k.iter().all(|k| kf.may_hold(cfg.filter, k)));
    }
}
