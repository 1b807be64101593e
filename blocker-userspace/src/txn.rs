//! Changing the rule set atomically.
//!
//! Every value of the rule map holds two copies of the rules at its name, and
//! `Config::active` says which copy the data plane reads. A change:
//!
//! 1. computes, for every name whose rules change, the merged rules before and after;
//! 2. records the new state (`state.json.new`, new rules files) and a journal (`txn.json`);
//! 3. writes the *inactive* copy of each changed name (new names get an empty active copy);
//! 4. flips `Config::active` and bumps the generation in one write: from this instant the
//!    data plane sees the whole new set, never a part of it;
//! 5. commits the state, makes both copies equal again, deletes names with no rules left.
//!
//! A controller killed at any point leaves the data plane on either the whole old set (before
//! 4) or the whole new set (after 4). The next command finds the journal and [`recover`]s:
//! it adopts the state that matches the kernel's generation and re-synchronises both copies.

use std::{collections::BTreeMap, fs};

use anyhow::{bail, Context, Result};
use blocker_common::{
    key::key_of_canonical, Action, Config, Kind, OrderInfo, RuleKey, RuleSet, RuleValue, Slot,
    MAX_EDE_TEXT,
};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::{Deserialize, Serialize};

use crate::{
    kernel::{Maps, Pins},
    state::{now, Lock, Order, Rule, StateDir, StateFile},
};

#[derive(Serialize, Deserialize)]
struct Journal {
    /// Generation the change will have once flipped.
    generation: u32,
}

/// What one order becomes.
pub enum OrderChange {
    /// Create or update the order; replace its rules (ids are assigned here, any given id is
    /// ignored) or keep them (`None`).
    Put {
        order: Order,
        rules: Option<Vec<Rule>>,
    },
    /// Remove the order and all its rules.
    Remove { id: u16 },
}

/// What a change did.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub generation: u32,
    /// Names whose map value changed.
    pub names_changed: usize,
    pub rules_added: usize,
    pub rules_removed: usize,
    pub rules_kept: usize,
}

/// An open, locked controller: the pinned maps and the state directory.
pub struct Controller {
    pub pins: Pins,
    pub dir: StateDir,
    pub maps: Maps,
    pub state: StateFile,
    _lock: Lock,
}

impl Controller {
    /// Locks the state directory, opens the pinned maps and finishes any interrupted change.
    pub fn open(pins: &Pins, dir: &StateDir) -> Result<Controller> {
        let lock = dir.lock()?;
        if !pins.loaded() {
            // Rules can be prepared before any interface is attached.
            crate::kernel::load_and_pin(pins, blocker_common::DEFAULT_RULE_CAPACITY)?;
            eprintln!(
                "loaded blocker into {} (not attached to any interface yet)",
                pins.dir.display()
            );
        }
        let maps = Maps::open(pins)?;
        let mut c = Controller {
            pins: pins.clone(),
            dir: dir.clone(),
            maps,
            state: StateFile::default(),
            _lock: lock,
        };
        c.recover()?;
        c.state = c.dir.load()?;
        let cfg = c.maps.config()?;
        if cfg.ports[0] == 0 {
            // Maps just created (first load, or after a reboot emptied the BPF filesystem):
            // enforce what the state directory records.
            c.restore()?;
        } else if cfg.generation != c.state.generation {
            bail!(
                "the kernel's rule generation is {} but {} records generation {}: the state \
                 directory does not belong to the program pinned in {} (check --state-dir and \
                 --bpffs)",
                cfg.generation,
                c.dir.state_path().display(),
                c.state.generation,
                pins.dir.display()
            );
        }
        Ok(c)
    }

    /// Finishes or rolls back a change interrupted by a crash.
    fn recover(&mut self) -> Result<()> {
        let jpath = self.dir.txn_path();
        if !jpath.exists() {
            return Ok(());
        }
        let j: Journal = serde_json::from_slice(&fs::read(&jpath)?)
            .with_context(|| format!("{} is corrupt", jpath.display()))?;
        let cfg = self.maps.config()?;
        if cfg.generation == j.generation {
            // The flip happened: the new state is the truth.
            if self.dir.dir.join("state.json.new").exists() {
                self.dir.commit()?;
            }
            log::warn!(
                "finished an interrupted change (generation {})",
                j.generation
            );
        } else {
            self.dir.discard_staged()?;
            log::warn!(
                "rolled back an interrupted change (generation {} was never enforced)",
                j.generation
            );
        }
        // Make both copies equal to the active one; drop names with no active rules.
        let active = (cfg.active & 1) as usize;
        let keys: Vec<RuleKey> = self.maps.rules.keys().collect::<Result<_, _>>()?;
        for k in keys {
            let v = match self.maps.rules.get(&k, 0) {
                Ok(v) => v,
                Err(_) => continue,
            };
            let set = v.sets[active];
            if set.here.is_empty() && set.below.is_empty() {
                self.maps.rules.remove(&k)?;
            } else if v.sets[1 - active] != set {
                self.maps
                    .rules
                    .insert(k, RuleValue { sets: [set, set] }, 0)?;
            }
        }
        let state = self.dir.load()?;
        let mut cfg = self.maps.config()?;
        cfg.depth_mask = depth_mask_of(&self.all_rules(&state)?);
        self.maps.set_config(&cfg)?;
        fs::remove_file(&jpath)?;
        self.dir.gc(&state)?;
        Ok(())
    }

    /// Writes the whole recorded state into freshly created maps.
    fn restore(&mut self) -> Result<()> {
        let rules = self.all_rules(&self.state)?;
        let all: HashSet<RuleKey> = rules
            .values()
            .flatten()
            .map(|r| key_of_canonical(r.name.canonical()))
            .collect();
        let entries: Vec<(RuleKey, RuleValue)> = merged_sets(&rules, &all)
            .into_iter()
            .map(|(k, set)| (k, RuleValue { sets: [set, set] }))
            .collect();
        crate::kernel::rules_update_batch(&self.maps.rules, &entries)?;
        for o in &self.state.orders {
            self.maps.orders.set(o.id as u32, order_info(o), 0)?;
        }
        let mut cfg = Config::default();
        self.state.settings.apply_to(&mut cfg);
        cfg.generation = self.state.generation;
        cfg.depth_mask = depth_mask_of(&rules);
        self.maps.set_config(&cfg)?;
        if !all.is_empty() {
            log::warn!(
                "restored {} rules of {} orders from {} into empty maps",
                rules.values().map(Vec::len).sum::<usize>(),
                self.state.orders.len(),
                self.dir.dir.display()
            );
        }
        Ok(())
    }

    /// Writes the operator settings into the kernel config and the state.
    pub fn set_settings(&mut self, settings: crate::state::Settings) -> Result<()> {
        let mut cfg = self.maps.config()?;
        settings.apply_to(&mut cfg);
        self.state.settings = settings;
        self.dir.save(&self.state)?;
        self.maps.set_config(&cfg)?;
        Ok(())
    }

    /// Saves state changes that do not touch rules (interfaces).
    pub fn save(&self) -> Result<()> {
        self.dir.save(&self.state)
    }

    /// The rules of every order, by order id.
    pub fn all_rules(&self, state: &StateFile) -> Result<BTreeMap<u16, Vec<Rule>>> {
        let mut out = BTreeMap::new();
        for o in &state.orders {
            out.insert(o.id, self.dir.read_rules(o)?);
        }
        Ok(out)
    }

    /// Applies `changes` atomically (see the module documentation).
    pub fn apply(&mut self, changes: Vec<OrderChange>) -> Result<Summary> {
        let t0 = std::time::Instant::now();
        let phase = |what: &str| log::info!("{what}: {:.3} s", t0.elapsed().as_secs_f64());
        let old_state = self.state.clone();
        let old_rules = self.all_rules(&old_state)?;
        phase("read recorded rules");
        let mut new_state = old_state.clone();
        let mut new_rules = old_rules.clone();
        let generation = old_state.generation.wrapping_add(1);
        let mut changed_orders: Vec<u16> = Vec::new();
        let mut removed_orders: Vec<u16> = Vec::new();

        // Ids in use before or after this change are not handed out again by it.
        let mut used: HashSet<u32> = old_rules.values().flatten().map(|r| r.id).collect();
        let capacity = self.maps.capacity;
        let mut next_free = 0u32;
        let mut summary = Summary {
            generation,
            ..Default::default()
        };

        for change in changes {
            match change {
                OrderChange::Remove { id } => {
                    new_state.orders.retain(|o| o.id != id);
                    if let Some(old) = new_rules.remove(&id) {
                        summary.rules_removed += old.len();
                    }
                    removed_orders.push(id);
                    changed_orders.push(id);
                }
                OrderChange::Put { mut order, rules } => {
                    let id = order.id;
                    let rules = match rules {
                        None => new_rules.get(&id).cloned().unwrap_or_default(),
                        Some(mut rules) => {
                            let previous: HashMap<(&[u8], Kind), u32> = old_rules
                                .get(&id)
                                .map(|v| {
                                    v.iter()
                                        .map(|r| ((r.name.canonical(), r.kind), r.id))
                                        .collect()
                                })
                                .unwrap_or_default();
                            let mut kept = 0;
                            for r in rules.iter_mut() {
                                match previous.get(&(r.name.canonical(), r.kind)) {
                                    Some(&old_id) => {
                                        r.id = old_id;
                                        kept += 1;
                                    }
                                    None => {
                                        while used.contains(&next_free) {
                                            next_free += 1;
                                        }
                                        if next_free >= capacity {
                                            bail!(
                                                "the rule map holds at most {capacity} rules, and \
                                                 this change needs more at once (old and new \
                                                 rules coexist until the switch); re-create it \
                                                 with a larger `blocker attach --capacity` \
                                                 (nothing was changed)"
                                            );
                                        }
                                        r.id = next_free;
                                        used.insert(next_free);
                                    }
                                }
                            }
                            summary.rules_kept += kept;
                            summary.rules_added += rules.len() - kept;
                            summary.rules_removed += previous.len() - kept;
                            rules
                        }
                    };
                    order.rules = rules.len();
                    order.updated = now();
                    new_rules.insert(id, rules);
                    match new_state.orders.iter_mut().find(|o| o.id == id) {
                        Some(o) => *o = order,
                        None => new_state.orders.push(order),
                    }
                    changed_orders.push(id);
                }
            }
        }
        new_state.orders.sort_by_key(|o| o.id);

        // Names whose rules may change: every name of a changed order, before and after.
        let mut affected: HashSet<RuleKey> = HashSet::default();
        for id in &changed_orders {
            for r in old_rules
                .get(id)
                .into_iter()
                .chain(new_rules.get(id))
                .flatten()
            {
                affected.insert(key_of_canonical(r.name.canonical()));
            }
        }
        phase("assigned rule ids");
        let old_sets = merged_sets(&old_rules, &affected);
        let new_sets = merged_sets(&new_rules, &affected);
        let mut diffs: Vec<(RuleKey, RuleSet, RuleSet)> = Vec::new();
        for k in &affected {
            let o = old_sets.get(k).copied().unwrap_or_default();
            let n = new_sets.get(k).copied().unwrap_or_default();
            if o != n {
                diffs.push((*k, o, n));
            }
        }
        diffs.sort_by_key(|d| d.0);
        summary.names_changed = diffs.len();

        // Nothing to do when the rules and the orders' settings are what they were: a
        // re-load of an unchanged list changes nothing, not even the generation.
        let same_order = |id: &u16| {
            let strip = |o: &Order| Order {
                updated: 0,
                rules_file: String::new(),
                ..o.clone()
            };
            let before = old_state.order_by_id(*id).map(strip);
            let after = new_state.order_by_id(*id).map(strip);
            let rules_same = match (old_rules.get(id), new_rules.get(id)) {
                (Some(a), Some(b)) => {
                    a.len() == b.len()
                        && a.iter().zip(b).all(|(x, y)| {
                            (&x.name, x.kind, x.action, x.qtypes, x.id)
                                == (&y.name, y.kind, y.action, y.qtypes, y.id)
                        })
                }
                (None, None) => true,
                _ => false,
            };
            before == after && rules_same
        };
        if diffs.is_empty() && changed_orders.iter().all(same_order) {
            summary.generation = old_state.generation;
            return Ok(summary);
        }

        phase("computed changes");
        // Orders' EDE data first: the new rules may refer to it as soon as they are enforced.
        for o in &new_state.orders {
            if changed_orders.contains(&o.id) {
                self.maps.orders.set(o.id as u32, order_info(o), 0)?;
            }
        }

        // Record the new state and the journal.
        for id in &changed_orders {
            if let Some(rules) = new_rules.get(id) {
                let file = self.dir.write_rules(*id, generation, rules)?;
                if let Some(o) = new_state.orders.iter_mut().find(|o| o.id == *id) {
                    o.rules_file = file;
                }
            }
        }
        new_state.generation = generation;
        new_state.updated = now();
        self.dir.stage(&new_state)?;
        fs::write(
            self.dir.txn_path(),
            serde_json::to_vec(&Journal { generation })?,
        )?;

        phase("recorded the new state");
        // Write the inactive copies.
        let mut cfg: Config = self.maps.config()?;
        let active = (cfg.active & 1) as usize;
        let inactive = 1 - active;
        let staged: Vec<(RuleKey, RuleValue)> = diffs
            .iter()
            .map(|(k, old, new)| {
                let mut v = RuleValue { sets: [*old, *old] };
                v.sets[inactive] = *new;
                (*k, v)
            })
            .collect();
        crate::kernel::rules_update_batch(&self.maps.rules, &staged)?;
        // Look up the depths of both sets until the old one is gone.
        let new_mask = depth_mask_of(&new_rules);
        let old_mask = cfg.depth_mask;
        cfg.depth_mask = [old_mask[0] | new_mask[0], old_mask[1] | new_mask[1]];
        self.maps.set_config(&cfg)?;

        phase("wrote the inactive copies");
        // The flip.
        cfg.active = inactive as u32;
        cfg.generation = generation;
        self.maps.set_config(&cfg)?;

        self.dir.commit()?;
        self.state = new_state;

        phase("switched");
        // Both copies equal again; names with no rules left are deleted.
        let (gone, kept): (Vec<_>, Vec<_>) = diffs
            .iter()
            .partition(|(_, _, new)| new.here.is_empty() && new.below.is_empty());
        let kept: Vec<(RuleKey, RuleValue)> = kept
            .iter()
            .map(|(k, _, new)| (*k, RuleValue { sets: [*new, *new] }))
            .collect();
        crate::kernel::rules_update_batch(&self.maps.rules, &kept)?;
        let gone: Vec<RuleKey> = gone.iter().map(|(k, _, _)| *k).collect();
        crate::kernel::rules_delete_batch(&mut self.maps.rules, &gone)?;
        cfg.depth_mask = new_mask;
        self.maps.set_config(&cfg)?;

        // Counters of rules and orders that are gone start from zero if their ids return.
        let still: HashSet<u32> = new_rules.values().flatten().map(|r| r.id).collect();
        for r in old_rules.values().flatten() {
            if !still.contains(&r.id) {
                self.maps.reset_rule_hits(r.id)?;
            }
        }
        for id in removed_orders {
            if self.state.order_by_id(id).is_none() {
                self.maps.orders.set(id as u32, OrderInfo::default(), 0)?;
                self.maps.reset_order_hits(id)?;
            }
        }
        fs::remove_file(self.dir.txn_path())?;
        self.dir.gc(&self.state)?;
        Ok(summary)
    }
}

/// The kernel's view of an order.
pub fn order_info(o: &Order) -> OrderInfo {
    let mut info = OrderInfo {
        ede_code: o.ede_code,
        ..Default::default()
    };
    let text = o.ede_text.as_bytes();
    let n = text.len().min(MAX_EDE_TEXT);
    info.ede_text[..n].copy_from_slice(&text[..n]);
    info.text_len = n as u8;
    info
}

/// Bit `d` set for every label count `d` of a rule name.
pub fn depth_mask_of(rules: &BTreeMap<u16, Vec<Rule>>) -> [u64; 2] {
    let mut m = [0u64; 2];
    for r in rules.values().flatten() {
        let d = r.name.label_count() & 127;
        m[d >> 6] |= 1 << (d & 63);
    }
    m
}

/// A rule candidate at one name.
#[derive(Clone, Copy)]
pub struct Candidate<'a> {
    pub order: u16,
    pub rule: &'a Rule,
}

/// Precedence among rules at the same name and position (lower sorts first, first wins):
/// an allow rule beats any block; then, for the name itself, an exact rule beats a subtree
/// rule; then the older order (lower id) wins; then the older rule.
pub fn precedence(c: &Candidate<'_>, here: bool) -> (bool, bool, u16, u32) {
    let not_allow = c.rule.action != Action::Pass;
    let not_exact = here && c.rule.kind != Kind::Exact;
    (not_allow, not_exact, c.order, c.rule.id)
}

fn slot_of(c: &Candidate<'_>) -> Slot {
    Slot {
        rule_id: c.rule.id,
        order_id: c.order,
        action: c.rule.action as u8,
        flags: 0,
        qtypes: c.rule.qtypes,
        scope: 0,
    }
}

/// The rules in force at one name, from all candidates at that name.
pub fn merge(cands: &[Candidate<'_>]) -> RuleSet {
    let here = cands
        .iter()
        .filter(|c| matches!(c.rule.kind, Kind::Exact | Kind::Subtree))
        .min_by_key(|c| precedence(c, true));
    let below = cands
        .iter()
        .filter(|c| matches!(c.rule.kind, Kind::Subtree | Kind::Below))
        .min_by_key(|c| precedence(c, false));
    RuleSet {
        here: here.map(slot_of).unwrap_or_default(),
        below: below.map(slot_of).unwrap_or_default(),
    }
}

/// Merged rule sets of the `affected` names.
fn merged_sets(
    rules: &BTreeMap<u16, Vec<Rule>>,
    affected: &HashSet<RuleKey>,
) -> HashMap<RuleKey, RuleSet> {
    let mut by_key: HashMap<RuleKey, Vec<Candidate<'_>>> = HashMap::default();
    for (order, rs) in rules {
        for r in rs {
            let k = key_of_canonical(r.name.canonical());
            if affected.contains(&k) {
                by_key.entry(k).or_default().push(Candidate {
                    order: *order,
                    rule: r,
                });
            }
        }
    }
    by_key.into_iter().map(|(k, c)| (k, merge(&c))).collect()
}
