//! Small changes to large orders: the rules of every order kept in memory by a long-running
//! process (`blocker follow`), indexed by key, so that removing and adding a few rules costs
//! what they cost — a plan over the names they touch, a delta file in the state directory,
//! one generation — and not a reading, a planning and a writing of every rule.
//!
//! The cache is only trusted for the generation it was built at or brought to: any change
//! made by another command bumps the generation, and the next edit rebuilds the cache from
//! the state directory (what [`Controller::apply`] reads on every change).

use std::collections::{BTreeMap, HashSet};

use blocker_common::{
    key::{key_of_canonical, KeySecret},
    policy::merge,
    Kind, RuleKey,
};
use rustc_hash::FxHashMap;

use super::{
    controller::{Change, Record},
    plan::{bit, keys_of, Diff},
    Candidate, Controller, Result, Summary, TxnError,
};
use crate::state::{now, Order, Rule, StateFile};

/// After this many delta files an order's rules file is written whole again (after the flip
/// of the change that made the last one).
pub const MAX_DELTAS: usize = 16;

/// The rules of every order as the state directory records them at `generation`.
#[derive(Default)]
pub struct RulesCache {
    /// None: not built yet.
    generation: Option<u32>,
    /// The secret the keys were computed with.
    secret: Option<KeySecret>,
    /// Every order's rules.
    orders: BTreeMap<u16, Vec<Rule>>,
    /// Every rule by key: (order, index in the order's list).
    index: FxHashMap<RuleKey, Vec<(u16, u32)>>,
    /// Rule ids in use.
    used: Vec<u64>,
    /// Rules per label count (for the data plane's depth mask).
    depths: Vec<u32>,
}

fn set_bit(set: &mut Vec<u64>, id: u32, on: bool) {
    let i = id as usize / 64;
    if i >= set.len() {
        set.resize(i + 1, 0);
    }
    if on {
        set[i] |= 1 << (id % 64);
    } else {
        set[i] &= !(1 << (id % 64));
    }
}

fn depth(r: &Rule) -> usize {
    r.name.label_count() & 127
}

impl RulesCache {
    /// Rules of order `id` (empty when the cache does not know it).
    pub fn order_len(&self, id: u16) -> usize {
        self.orders.get(&id).map_or(0, Vec::len)
    }

    fn valid(&self, state: &StateFile, secret: &KeySecret) -> bool {
        self.generation == Some(state.generation) && self.secret.as_ref() == Some(secret)
    }

    /// Builds the cache from the rules recorded for `state`.
    fn build(&mut self, orders: BTreeMap<u16, Vec<Rule>>, state: &StateFile, secret: KeySecret) {
        self.index = FxHashMap::default();
        self.used = Vec::new();
        self.depths = vec![0; 128];
        for (id, rules) in &orders {
            for (i, (k, r)) in keys_of(&secret, rules).into_iter().zip(rules).enumerate() {
                self.index.entry(k).or_default().push((*id, i as u32));
                set_bit(&mut self.used, r.id, true);
                self.depths[depth(r)] += 1;
            }
        }
        self.orders = orders;
        self.generation = Some(state.generation);
        self.secret = Some(secret);
    }

    fn names(&self) -> usize {
        self.index.len()
    }

    /// Removes rule `idx` of `order` (its key `k`).
    fn remove(&mut self, secret: &KeySecret, order: u16, idx: u32) {
        let Some(rules) = self.orders.get_mut(&order) else {
            return;
        };
        let k = key_of_canonical(secret, rules[idx as usize].name.canonical());
        let r = rules.swap_remove(idx as usize);
        self.depths[depth(&r)] -= 1;
        set_bit(&mut self.used, r.id, false);
        if let Some(v) = self.index.get_mut(&k) {
            v.retain(|e| *e != (order, idx));
            if v.is_empty() {
                self.index.remove(&k);
            }
        }
        // The last rule moved into `idx`.
        let moved = rules.len() as u32;
        if let Some(m) = rules.get(idx as usize) {
            let km = key_of_canonical(secret, m.name.canonical());
            if let Some(v) = self.index.get_mut(&km) {
                for e in v.iter_mut() {
                    if *e == (order, moved) {
                        e.1 = idx;
                    }
                }
            }
        }
    }

    fn add(&mut self, secret: &KeySecret, order: u16, r: Rule) {
        let k = key_of_canonical(secret, r.name.canonical());
        let rules = self.orders.entry(order).or_default();
        self.index
            .entry(k)
            .or_default()
            .push((order, rules.len() as u32));
        set_bit(&mut self.used, r.id, true);
        self.depths[depth(&r)] += 1;
        rules.push(r);
    }
}

/// What an edit does to an order: the rules it removes (name, match kind) and the rules it
/// adds (their ids are assigned by [`Controller::apply_edit`]).
pub type Edit = (Vec<(blocker_lists::Name, Kind)>, Vec<Rule>);

impl Controller {
    /// Brings `cache` to the recorded rules (read from the state directory when it does not
    /// hold this generation's).
    pub fn warm(&self, cache: &mut RulesCache) -> Result<()> {
        if !cache.valid(&self.state, &self.secret) {
            let t = std::time::Instant::now();
            let all = self.all_rules(&self.state)?;
            cache.build(all, &self.state, self.secret);
            log::info!(
                "rules of {} orders read into memory in {} ms (generation {})",
                cache.orders.len(),
                t.elapsed().as_millis(),
                self.state.generation
            );
        }
        Ok(())
    }

    /// Makes `order` (which must exist) what it is with the rules `removed` taken out (by
    /// name and match kind) and `added` put in, in one generation, without reading or
    /// writing the order's other rules: a plan over the names these touch, a delta file.
    ///
    /// `expected` is the number of rules the caller believes the order holds: when the
    /// recorded order holds another number, or does not hold a rule `removed` names, or the
    /// edit involves local data (whose table is planned over every rule), `Ok(None)` says
    /// so and nothing is changed — the caller replaces the order's rules whole
    /// ([`Controller::apply`]) instead.
    pub fn apply_edit(
        &mut self,
        cache: &mut RulesCache,
        mut order: Order,
        expected: usize,
        edit: Edit,
    ) -> Result<Option<Summary>> {
        let t0 = std::time::Instant::now();
        let phase = |what: &str| log::info!("{what}: {:.3} s", t0.elapsed().as_secs_f64());
        let (removed, mut added) = edit;
        let id = order.id;
        let Some(before) = self.state.order_by_id(id).cloned() else {
            return Ok(None);
        };
        if added.iter().any(|r| r.local.is_some()) {
            return Ok(None);
        }
        self.warm(cache)?;
        if cache.order_len(id) != expected {
            log::warn!(
                "order {:?} holds {} rules, not the {expected} expected: replacing them whole",
                before.name,
                cache.order_len(id)
            );
            return Ok(None);
        }
        // Room for the rules in force and every rule added at once (old and new coexist
        // until the flip); the rules and their ids stay what the cache holds.
        let in_use: usize = cache.orders.values().map(Vec::len).sum();
        self.grow(in_use + added.len())?;
        let old_state = self.state.clone();
        if let Err(e) = crate::compliance::sample_hits(&self.dir, &old_state, &self.maps) {
            log::warn!("hits per day not sampled: {e}");
        }
        let secret = self.secret;
        let rules = cache.orders.get(&id).map_or(&[][..], Vec::as_slice);
        // The rules removed: (index in the order's list, key); the same indices as a set.
        let mut gone: Vec<(u32, RuleKey)> = Vec::with_capacity(removed.len());
        let mut gone_set: HashSet<u32> = HashSet::with_capacity(removed.len());
        for (name, kind) in &removed {
            let k = key_of_canonical(&secret, name.canonical());
            let found = cache.index.get(&k).and_then(|v| {
                v.iter().find(|(o, i)| {
                    let r = &rules[*i as usize];
                    *o == id && r.name == *name && r.kind == *kind && !gone_set.contains(i)
                })
            });
            match found {
                Some((_, i)) if rules[*i as usize].local.is_none() => {
                    gone.push((*i, k));
                    gone_set.insert(*i);
                }
                Some(_) => return Ok(None),
                None => {
                    log::warn!(
                        "order {:?} holds no {} rule for {name}: replacing its rules whole",
                        before.name,
                        kind.as_str()
                    );
                    return Ok(None);
                }
            }
        }
        // Ids: a new rule takes the id of the removed rule of the same name and kind; the
        // others the lowest ids free before and after the change.
        let capacity = self.maps.capacity;
        let mut twin_of: Vec<Option<usize>> = vec![None; added.len()];
        let mut twinned = vec![false; gone.len()];
        // The removed rules not yet taken by a twin, by (name, match kind).
        let mut untaken: FxHashMap<(&[u8], u8), Vec<usize>> = FxHashMap::default();
        for (g, (i, _)) in gone.iter().enumerate().rev() {
            let o = &rules[*i as usize];
            untaken
                .entry((o.name.canonical(), o.kind as u8))
                .or_default()
                .push(g);
        }
        let mut next_free = 0u32;
        let mut assigned = Vec::new();
        let mut changed_twins = 0;
        for (a, r) in added.iter_mut().enumerate() {
            let twin = untaken
                .get_mut(&(r.name.canonical(), r.kind as u8))
                .and_then(Vec::pop)
                .filter(|g| rules[gone[*g].0 as usize].name == r.name);
            if let Some(g) = twin {
                twinned[g] = true;
                twin_of[a] = Some(g);
                let was = &rules[gone[g].0 as usize];
                r.id = was.id;
                if (was.action, was.qtypes, &was.local) != (r.action, r.qtypes, &r.local) {
                    changed_twins += 1;
                }
                continue;
            }
            // (The ids of the rules removed stay in `used`: old and new rules coexist
            // until the flip.)
            while bit(&cache.used, next_free) {
                next_free += 1;
            }
            if next_free >= capacity {
                return Err(TxnError::Capacity { capacity });
            }
            r.id = next_free;
            assigned.push(next_free);
            next_free += 1;
        }
        let kept_twins = twinned.iter().filter(|t| **t).count();
        let mut freed: Vec<u64> = Vec::new();
        for (g, (i, _)) in gone.iter().enumerate() {
            if !twinned[g] {
                set_bit(&mut freed, rules[*i as usize].id, true);
            }
        }
        // The names touched: every candidate there before, and after.
        let mut keys: Vec<RuleKey> = gone.iter().map(|(_, k)| *k).collect();
        let added_keys: Vec<RuleKey> = added
            .iter()
            .map(|r| key_of_canonical(&secret, r.name.canonical()))
            .collect();
        keys.extend(&added_keys);
        keys.sort_unstable();
        keys.dedup();
        let mut added_at: FxHashMap<RuleKey, Vec<usize>> = FxHashMap::default();
        for (x, rk) in added_keys.iter().enumerate() {
            added_at.entry(*rk).or_default().push(x);
        }
        let mut diffs: Vec<Diff> = Vec::new();
        let mut b: Vec<Candidate<'_>> = Vec::new();
        let mut a: Vec<Candidate<'_>> = Vec::new();
        for k in &keys {
            b.clear();
            a.clear();
            for (o, i) in cache.index.get(k).into_iter().flatten() {
                let r = &cache.orders[o][*i as usize];
                let c = Candidate { order: *o, rule: r };
                b.push(c);
                if !(*o == id && gone_set.contains(i)) {
                    a.push(c);
                }
            }
            for x in added_at.get(k).into_iter().flatten() {
                a.push(Candidate {
                    order: id,
                    rule: &added[*x],
                });
            }
            let old = merge(&b).unwrap_or_default();
            let new = merge(&a).map_err(|e| TxnError::TooManyAtName {
                name: a
                    .first()
                    .map_or_else(String::new, |c| c.rule.name.to_string()),
                needed: e.needed,
                max: blocker_common::SLOTS,
                orders: format!("#{id} and others"),
            })?;
            if old != new {
                diffs.push(Diff::new(*k, old, new));
            }
        }
        let n_after = rules.len() - gone.len() + added.len();
        let mut summary = Summary {
            generation: old_state.generation.wrapping_add(1),
            names_changed: diffs.len(),
            rules_added: added.len() - kept_twins,
            rules_removed: gone.len() - kept_twins,
            rules_changed: changed_twins,
            rules_kept: rules.len() - gone.len() + kept_twins - changed_twins,
            enforced: None,
        };
        order.rules = n_after;
        let strip = |o: &Order| Order {
            updated: 0,
            rules_file: String::new(),
            rules_deltas: Vec::new(),
            ..o.clone()
        };
        let rules_same = added.iter().enumerate().all(|(x, r)| {
            twin_of[x].is_some_and(|g| {
                let o = &rules[gone[g].0 as usize];
                (o.action, o.qtypes) == (r.action, r.qtypes)
            })
        }) && kept_twins == gone.len();
        if diffs.is_empty() && rules_same && strip(&before) == strip(&order) {
            summary.generation = old_state.generation;
            return Ok(Some(summary));
        }
        phase("computed the edit");
        order.rules_file = before.rules_file.clone();
        order.rules_deltas = before.rules_deltas.clone();
        order.updated = now();
        let mut new_state = old_state.clone();
        if let Some(o) = new_state.orders.iter_mut().find(|o| o.id == id) {
            *o = order;
        }
        let removed_ids: Vec<u32> = gone.iter().map(|(i, _)| rules[*i as usize].id).collect();
        // The depths after: the counts moved by the edit.
        let mut depths = cache.depths.clone();
        for (i, _) in &gone {
            depths[depth(&rules[*i as usize])] -= 1;
        }
        for r in &added {
            depths[depth(r)] += 1;
        }
        let mut new_mask = [0u64; 2];
        for (d, n) in depths.iter().enumerate() {
            if *n > 0 {
                new_mask[d >> 6] |= 1 << (d & 63);
            }
        }
        let everything = || -> Vec<RuleKey> { cache.index.keys().copied().collect() };
        let summary = self.execute(Change {
            t0,
            old_state,
            new_state,
            diffs: &diffs,
            freed: &freed,
            assigned: &assigned,
            removed_orders: Vec::new(),
            names_before: cache.names(),
            everything: &everything,
            new_mask,
            record: Record::Delta {
                order: id,
                removed: &removed_ids,
                added: &added,
            },
            summary,
        })?;
        // The cache follows: removed first (highest index first, so the indices of the
        // others stay valid through swap_remove), then added.
        let mut idx: Vec<u32> = gone.iter().map(|(i, _)| *i).collect();
        idx.sort_unstable_by(|x, y| y.cmp(x));
        for i in idx {
            cache.remove(&secret, id, i);
        }
        for r in added {
            cache.add(&secret, id, r);
        }
        cache.generation = Some(summary.generation);
        // Many deltas: the order's rules file is written whole again, the change enforced.
        if self
            .state
            .order_by_id(id)
            .is_some_and(|o| o.rules_deltas.len() >= MAX_DELTAS)
        {
            let t = std::time::Instant::now();
            let rules = cache.orders.get(&id).map_or(&[][..], Vec::as_slice);
            let file = self.dir.write_rules(id, summary.generation, rules)?;
            let mut state = self.state.clone();
            if let Some(o) = state.orders.iter_mut().find(|o| o.id == id) {
                o.rules_file = file;
                o.rules_deltas.clear();
            }
            self.dir.save(&state)?;
            self.state = state;
            self.dir.gc(&self.state)?;
            log::info!(
                "order #{id}: {} rules written whole again after {MAX_DELTAS} deltas in {} ms",
                rules.len(),
                t.elapsed().as_millis()
            );
        }
        Ok(Some(summary))
    }
}
