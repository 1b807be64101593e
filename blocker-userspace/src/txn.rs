//! Changing the rule set atomically.
//!
//! Every value of the rule map holds two copies of the rules at its name, and
//! `Config::active` says which copy the data plane reads. A change:
//!
//! 1. computes, for every name whose rules change, the merged rules before and after (see
//!    [`plan`]: one index of the changed orders' rules sorted by key);
//! 2. writes a journal (`txn.json`);
//! 3. records the new state (`state.json.new`, new rules files) and, at the same time on
//!    another thread, writes the *inactive* copy of each changed name (new names get an empty
//!    active copy);
//! 4. flips `Config::active` and bumps the generation in one write: from this instant the
//!    data plane sees the whole new set, never a part of it;
//! 5. commits the state, makes both copies equal again, deletes names with no rules left.
//!
//! A controller killed at any point leaves the data plane on either the whole old set (before
//! 4) or the whole new set (after 4). The next command finds the journal and [`recover`]s:
//! it adopts the state that matches the kernel's generation and re-synchronises both copies.

use std::{collections::BTreeMap, fs};

use blocker_common::{
    key::{key_of_canonical, KeySecret},
    Action, Config, Kind, OrderInfo, RuleKey, RuleSet, RuleValue, Slot, MAX_EDE_TEXT,
};
use serde::{Deserialize, Serialize};

use crate::{
    error::OpError,
    kernel::KernelError,
    kernel::{Maps, Pins},
    state::StateError,
    state::{now, Lock, Order, Rule, StateDir, StateFile},
};

/// Why a change was refused or could not be made. Every refusal leaves the kernel and the
/// state directory as they were.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// The state directory and the pinned program disagree on the generation.
    #[error(
        "the kernel's rule generation is {kernel} but {} records generation {recorded}: the state \
         directory does not belong to the program pinned in {} (check --state-dir and \
         --bpffs)",
        state.display(),
        bpffs.display()
    )]
    Generation {
        kernel: u32,
        state: std::path::PathBuf,
        recorded: u32,
        bpffs: std::path::PathBuf,
    },
    /// Old and new rules together need more rule ids than the rule map has.
    #[error(
        "the rule map holds at most {capacity} rules, and this change needs more \
         at once (old and new rules coexist until the switch); re-create it with a \
         larger `blocker attach --capacity` (nothing was changed)"
    )]
    Capacity { capacity: u32 },
    #[error("too many orders in one change")]
    TooManyOrders,
    /// The journal of an interrupted change does not parse.
    #[error("{} is corrupt", .path.display())]
    CorruptJournal {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("recording the new state: thread panicked")]
    Panicked,
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Map(#[from] aya::maps::MapError),
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// From modules that still report with anyhow (the key secret, the key filter).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type Result<T, E = TxnError> = std::result::Result<T, E>;

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
    /// The key secret every rule key is computed with (see [`crate::secret`]).
    pub secret: KeySecret,
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
            secret: KeySecret::UNSET,
            _lock: lock,
        };
        c.recover()?;
        c.state = c.dir.load()?;
        let cfg = c.maps.config()?;
        // Maps just created (first load, or after a reboot emptied the BPF filesystem).
        let fresh = cfg.ports[0] == 0;
        if !fresh && cfg.generation != c.state.generation {
            return Err(TxnError::Generation {
                kernel: cfg.generation,
                state: c.dir.state_path(),
                recorded: c.state.generation,
                bpffs: pins.dir.clone(),
            });
        }
        // The secret first: the restored rules' keys depend on it.
        c.secret = crate::secret::establish(&mut c.maps, pins, dir, fresh)?;
        if fresh {
            // Enforce what the state directory records.
            c.restore()?;
        }
        Ok(c)
    }

    /// Finishes or rolls back a change interrupted by a crash.
    fn recover(&mut self) -> Result<()> {
        let jpath = self.dir.txn_path();
        if !jpath.exists() {
            return Ok(());
        }
        let j: Journal = match serde_json::from_slice(&fs::read(&jpath)?) {
            Ok(j) => j,
            Err(source) => {
                return Err(TxnError::CorruptJournal {
                    path: jpath,
                    source,
                })
            }
        };
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
            if set.is_empty() {
                self.maps.rules.remove(&k)?;
            } else if v.sets[1 - active] != set {
                self.maps
                    .rules
                    .insert(k, RuleValue { sets: [set, set] }, 0)?;
            }
        }
        let state = self.dir.load()?;
        // Both copies of every order's metadata as the adopted state records it (a change
        // interrupted before its flip may have written the inactive copy; one interrupted
        // after it may not have caught the other copy up).
        let every: Vec<u16> = (0..blocker_common::MAX_ORDERS as u16).collect();
        for copy in [0, 1] {
            write_orders(&mut self.maps, copy, &state, &every)?;
        }
        let mut cfg = self.maps.config()?;
        cfg.depth_mask = depth_mask_of(self.all_rules(&state)?.values().flatten());
        self.maps.set_config(&cfg)?;
        fs::remove_file(&jpath)?;
        self.dir.gc(&state)?;
        Ok(())
    }

    /// Writes the whole recorded state into freshly created maps.
    fn restore(&mut self) -> Result<()> {
        let rules = self.all_rules(&self.state)?;
        // Everything is new: the difference from no rules at all.
        let mut entries: Vec<Entry> = Vec::new();
        let lists: Vec<List<'_>> = rules
            .iter()
            .map(|(id, rs)| (*id, AFTER, rs.as_slice()))
            .collect();
        for (i, (_, _, rs)) in lists.iter().enumerate() {
            entries.extend(entries_of(i, rs, keys_of(&self.secret, rs)));
        }
        entries.sort_unstable_by_key(|e| e.key);
        let diffs = merge_groups(&lists, &entries);
        let mut cfg = Config::default();
        if let Some(filter) = self.maps.filter.as_mut() {
            let keys: Vec<RuleKey> = diffs.iter().map(|(k, _, _)| *k).collect();
            filter.admit(&mut cfg, &keys, keys.len() as u64, Vec::new);
        }
        crate::kernel::rules_update_batch(
            &self.maps.rules,
            diffs
                .iter()
                .map(|(k, _, set)| (*k, RuleValue { sets: [*set, *set] })),
        )?;
        let ids: Vec<u16> = self.state.orders.iter().map(|o| o.id).collect();
        for copy in [0, 1] {
            write_orders(&mut self.maps, copy, &self.state, &ids)?;
        }
        self.state.settings.apply_to(&mut cfg);
        cfg.generation = self.state.generation;
        cfg.depth_mask = depth_mask_of(rules.values().flatten());
        self.maps.set_config(&cfg)?;
        if !diffs.is_empty() {
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
        Ok(self.dir.save(&self.state)?)
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
        let generation = old_state.generation.wrapping_add(1);
        let mut changed_orders: Vec<u16> = Vec::new();
        let mut removed_orders: Vec<u16> = Vec::new();
        // The new rules of every order whose rules are replaced (empty: removed).
        let mut replaced: BTreeMap<u16, Vec<Rule>> = BTreeMap::new();
        for change in changes {
            match change {
                OrderChange::Remove { id } => {
                    new_state.orders.retain(|o| o.id != id);
                    replaced.insert(id, Vec::new());
                    removed_orders.push(id);
                    changed_orders.push(id);
                }
                OrderChange::Put { mut order, rules } => {
                    let id = order.id;
                    match rules {
                        Some(rules) => {
                            replaced.insert(id, rules);
                        }
                        // A new order without rules still gets its (empty) rules file.
                        None if !old_rules.contains_key(&id) => {
                            replaced.entry(id).or_default();
                        }
                        None => {}
                    }
                    order.rules = match replaced.get(&id) {
                        Some(r) => r.len(),
                        None => old_rules.get(&id).map_or(0, Vec::len),
                    };
                    order.updated = now();
                    match new_state.orders.iter_mut().find(|o| o.id == id) {
                        Some(o) => *o = order,
                        None => new_state.orders.push(order),
                    }
                    changed_orders.push(id);
                }
            }
        }
        new_state.orders.sort_by_key(|o| o.id);
        changed_orders.sort_unstable();
        changed_orders.dedup();

        let capacity = self.maps.capacity;
        let mut summary = Summary {
            generation,
            ..Default::default()
        };
        let Plan { freed, diffs } = plan(
            &self.secret,
            &old_rules,
            &mut replaced,
            capacity,
            &mut summary,
        )?;
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
            let rules_same = match (old_rules.get(id), replaced.get(id)) {
                (_, None) => true,
                (None, Some(b)) => b.is_empty(),
                (Some(a), Some(b)) => {
                    a.len() == b.len()
                        && a.iter().zip(b).all(|(x, y)| {
                            (&x.name, x.kind, x.action, x.qtypes, x.id)
                                == (&y.name, y.kind, y.action, y.qtypes, y.id)
                        })
                }
            };
            before == after && rules_same
        };
        if diffs.is_empty() && changed_orders.iter().all(same_order) {
            summary.generation = old_state.generation;
            retire((old_rules, replaced, diffs));
            return Ok(summary);
        }

        phase("computed changes");
        // The journal comes before anything the change writes: from here on, the next
        // command rolls an interrupted change back or forward.
        fs::write(
            self.dir.txn_path(),
            serde_json::to_vec(&Journal { generation })?,
        )?;
        crash_point("journal");
        let mut cfg: Config = self.maps.config()?;
        let active = (cfg.active & 1) as usize;
        let inactive = 1 - active;
        // Orders' metadata (EDE code and text) in the inactive copy: enforced with the rules
        // at the flip, not before.
        write_orders(&mut self.maps, inactive as u32, &new_state, &changed_orders)?;
        // Names about to enter the rule map get their filter bits first.
        if let Some(filter) = self.maps.filter.as_mut() {
            let added: Vec<RuleKey> = diffs
                .iter()
                .filter(|(_, _, new)| !new.is_empty())
                .map(|(k, _, _)| *k)
                .collect();
            let new_names = diffs.iter().filter(|(_, old, _)| old.is_empty()).count();
            let names = old_rules.values().map(Vec::len).sum::<usize>() + new_names;
            let secret = &self.secret;
            let everything = || {
                old_rules
                    .values()
                    .flat_map(|rs| keys_of(secret, rs))
                    .collect()
            };
            if filter.admit(&mut cfg, &added, names as u64, everything) {
                self.maps.set_config(&cfg)?;
            }
            phase("key filter");
        }
        // Record the new state (on a second thread) while writing the inactive copies.
        new_state.generation = generation;
        new_state.updated = now();
        let dir = &self.dir;
        let maps = &self.maps;
        let (recorded, written) = std::thread::scope(|s| {
            let recorder = s.spawn(|| -> Result<StateFile> {
                for (id, rules) in &replaced {
                    if let Some(o) = new_state.orders.iter_mut().find(|o| o.id == *id) {
                        o.rules_file = dir.write_rules(*id, generation, rules)?;
                    }
                }
                dir.stage(&new_state)?;
                Ok(new_state)
            });
            let written = write_split(&maps.rules, &diffs, |(k, old, new)| {
                let mut v = RuleValue { sets: [*old, *old] };
                v.sets[inactive] = *new;
                Some((*k, v))
            });
            let recorded = recorder.join().unwrap_or_else(|_| Err(TxnError::Panicked));
            (recorded, written)
        });
        let new_state = recorded?;
        written?;
        phase("recorded the new state and wrote the inactive copies");
        crash_point("inactive");
        // Look up the depths of both sets until the old one is gone.
        let new_mask = depth_mask_of(
            new_state
                .orders
                .iter()
                .flat_map(|o| rules_after(&old_rules, &replaced, o.id)),
        );
        let old_mask = cfg.depth_mask;
        cfg.depth_mask = [old_mask[0] | new_mask[0], old_mask[1] | new_mask[1]];
        self.maps.set_config(&cfg)?;

        // The flip.
        cfg.active = inactive as u32;
        cfg.generation = generation;
        self.maps.set_config(&cfg)?;
        crash_point("flip");

        self.dir.commit()?;
        self.state = new_state;
        crash_point("commit");
        // The copy now inactive catches up with the orders' new metadata.
        write_orders(&mut self.maps, active as u32, &self.state, &changed_orders)?;

        phase("switched");
        // Both copies equal again; names with no rules left are deleted.
        write_split(&self.maps.rules, &diffs, |(k, _, new)| {
            (!new.is_empty()).then_some((*k, RuleValue { sets: [*new, *new] }))
        })?;
        let gone: Vec<RuleKey> = diffs
            .iter()
            .filter(|(_, _, new)| new.is_empty())
            .map(|(k, _, _)| *k)
            .collect();
        crate::kernel::rules_delete_batch(&mut self.maps.rules, &gone)?;
        cfg.depth_mask = new_mask;
        self.maps.set_config(&cfg)?;

        // Counters of rules and orders that are gone start from zero if their ids return.
        // Only rules that were hit have a counter: look at those.
        if freed.iter().any(|w| *w != 0) {
            let hit: Vec<u32> = self.maps.rule_hits.keys().collect::<Result<_, _>>()?;
            for id in hit {
                if bit(&freed, id) {
                    self.maps.reset_rule_hits(id)?;
                }
            }
        }
        for id in removed_orders {
            if self.state.order_by_id(id).is_none() {
                self.maps.reset_order_hits(id)?;
            }
        }
        fs::remove_file(self.dir.txn_path())?;
        self.dir.gc(&self.state)?;
        phase("synchronised both copies");
        retire((old_rules, replaced, diffs));
        Ok(summary)
    }
}

/// Writes copy `copy` of the metadata of orders `ids` as `state` records them (an id `state`
/// does not know gets empty metadata).
fn write_orders(maps: &mut Maps, copy: u32, state: &StateFile, ids: &[u16]) -> Result<()> {
    for &id in ids {
        let info = state
            .order_by_id(id)
            .map_or_else(OrderInfo::default, order_info);
        maps.orders
            .set(blocker_common::order_entry(copy, id), info, 0)?;
    }
    Ok(())
}

/// For tests of crash recovery: `BLOCKER_TEST_CRASH_AT=PHASE` aborts the process (as a
/// SIGKILL would) at that point of a change — `journal` (journal written, nothing else),
/// `inactive` (inactive copies and the staged state written), `flip` (the data plane switched,
/// the state not committed), `commit` (committed, the copies not yet equal again).
fn crash_point(phase: &str) {
    if std::env::var("BLOCKER_TEST_CRASH_AT").is_ok_and(|p| p == phase) {
        eprintln!("blocker: crash injected at `{phase}` (BLOCKER_TEST_CRASH_AT)");
        std::process::abort();
    }
}

/// (key, rules before, rules after) of a name.
type Diff = (RuleKey, RuleSet, RuleSet);

/// Writes what `f` makes of each of `diffs` into the rule map; a large change is written by
/// two threads, each half on its own (the kernel's hash map takes concurrent updates).
fn write_split<F>(
    map: &aya::maps::HashMap<aya::maps::MapData, RuleKey, RuleValue>,
    diffs: &[Diff],
    f: F,
) -> crate::kernel::Result<()>
where
    F: Fn(&Diff) -> Option<(RuleKey, RuleValue)> + Sync,
{
    if diffs.len() < 100_000 {
        return crate::kernel::rules_update_batch(map, diffs.iter().filter_map(&f));
    }
    let (a, b) = diffs.split_at(diffs.len() / 2);
    std::thread::scope(|s| {
        let second = s.spawn(|| crate::kernel::rules_update_batch(map, b.iter().filter_map(&f)));
        let first = crate::kernel::rules_update_batch(map, a.iter().filter_map(&f));
        let second = second
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        first.and(second)
    })
}

/// Frees large structures on a thread of their own: freeing millions of small allocations
/// takes a while and nothing waits for it (a command that exits meanwhile just exits).
fn retire<T: Send + 'static>(big: T) {
    // Without a thread, the value is dropped here with the closure.
    let _ = std::thread::Builder::new()
        .name("free".into())
        .spawn(move || drop(big));
}

/// The rules `order` has after a change.
fn rules_after<'a>(
    old: &'a BTreeMap<u16, Vec<Rule>>,
    replaced: &'a BTreeMap<u16, Vec<Rule>>,
    order: u16,
) -> &'a [Rule] {
    replaced
        .get(&order)
        .or_else(|| old.get(&order))
        .map_or(&[], Vec::as_slice)
}

/// What a change does, computed before anything is written.
struct Plan {
    /// Bit set of the rule ids the change frees (their rules are gone).
    freed: Vec<u64>,
    /// (key, rules before, rules after) of every name whose merged rules change, by key.
    diffs: Vec<Diff>,
}

/// A set of ids, one bit each.
fn bit(set: &[u64], id: u32) -> bool {
    set.get(id as usize / 64)
        .is_some_and(|w| w & (1 << (id % 64)) != 0)
}

fn set_bit(set: &mut Vec<u64>, id: u32) {
    let i = id as usize / 64;
    if i >= set.len() {
        set.resize(i + 1, 0);
    }
    set[i] |= 1 << (id % 64);
}

/// The keys of `rules` under `secret` (computed on two threads for large sets).
fn keys_of(secret: &KeySecret, rules: &[Rule]) -> Vec<RuleKey> {
    let keys = |rs: &[Rule]| -> Vec<RuleKey> {
        rs.iter()
            .map(|r| key_of_canonical(secret, r.name.canonical()))
            .collect()
    };
    if rules.len() < 100_000 {
        return keys(rules);
    }
    let (a, b) = rules.split_at(rules.len() / 2);
    std::thread::scope(|s| {
        let hb = s.spawn(|| keys(b));
        let mut out = keys(a);
        match hb.join() {
            Ok(kb) => out.extend(kb),
            Err(_) => out.extend(keys(b)),
        }
        out
    })
}

/// Side of a rule list in a [`Plan`]: rules in force before the change, after it, or both.
const BEFORE: u8 = 1;
const AFTER: u8 = 2;

/// A list of rules in a [`Plan`]: (order, side, rules).
type List<'a> = (u16, u8, &'a [Rule]);

/// One rule in the sorted index of a [`Plan`].
#[derive(Clone, Copy)]
struct Entry {
    key: RuleKey,
    /// Index of the rule in its list.
    idx: u32,
    /// Index of the list.
    list: u16,
    kind: u8,
}

/// The lists of the orders whose rules are replaced: for each, its old rules (if any) and
/// its new rules. Always the same for the same maps, so list indices stay valid.
fn changed_lists<'a>(
    old: &'a BTreeMap<u16, Vec<Rule>>,
    replaced: &'a BTreeMap<u16, Vec<Rule>>,
) -> Vec<List<'a>> {
    let mut lists = Vec::new();
    for (id, rules) in replaced {
        if let Some(before) = old.get(id) {
            lists.push((*id, BEFORE, before.as_slice()));
        }
        lists.push((*id, AFTER, rules.as_slice()));
    }
    lists
}

fn entries_of(list: usize, rules: &[Rule], keys: Vec<RuleKey>) -> impl Iterator<Item = Entry> + '_ {
    keys.into_iter()
        .zip(rules)
        .enumerate()
        .map(move |(idx, (key, r))| Entry {
            key,
            idx: idx as u32,
            list: list as u16,
            kind: r.kind as u8,
        })
}

/// Plans a change: `replaced` holds the new rules of the orders whose rules change (empty
/// for a removed order); the other orders keep their `old` rules.
///
/// 1. The rules of the changed orders, before and after, are indexed by key and sorted.
/// 2. Each new rule takes the id of the same (name, match kind) among its order's old rules;
///    the others get the lowest ids not in use before or after the change (old and new rules
///    coexist until the switch), in rule order. Counts rules added, removed and kept.
/// 3. The rules of the other orders join the index at the keys it holds, and one pass over
///    the index merges each name's candidates before and after.
fn plan(
    secret: &KeySecret,
    old: &BTreeMap<u16, Vec<Rule>>,
    replaced: &mut BTreeMap<u16, Vec<Rule>>,
    capacity: u32,
    summary: &mut Summary,
) -> Result<Plan> {
    const FRESH: u32 = u32::MAX;
    // 1.
    let lists = changed_lists(old, replaced);
    if lists.len() > usize::from(u16::MAX) {
        return Err(TxnError::TooManyOrders);
    }
    let mut entries: Vec<Entry> = Vec::new();
    for (i, (_, _, rules)) in lists.iter().enumerate() {
        entries.extend(entries_of(i, rules, keys_of(secret, rules)));
    }
    entries.sort_unstable_by_key(|e| e.key);

    // 2. Ids kept, by list and index; freed old ids.
    let mut ids: Vec<Vec<u32>> = lists
        .iter()
        .map(|(_, side, rules)| {
            if *side == AFTER {
                vec![FRESH; rules.len()]
            } else {
                Vec::new()
            }
        })
        .collect();
    let mut kept_by_list = vec![0usize; lists.len()];
    let mut freed: Vec<u64> = Vec::new();
    let mut taken: Vec<bool> = Vec::new();
    for group in entries.chunk_by(|a, b| a.key == b.key) {
        taken.clear();
        taken.resize(group.len(), false);
        for e in group {
            let (order, side, _) = lists[usize::from(e.list)];
            if side != AFTER {
                continue;
            }
            let twin = group.iter().enumerate().position(|(m, o)| {
                let (o_order, o_side, _) = lists[usize::from(o.list)];
                !taken[m] && o_side == BEFORE && o_order == order && o.kind == e.kind
            });
            if let Some(m) = twin {
                taken[m] = true;
                let o = group[m];
                ids[usize::from(e.list)][e.idx as usize] =
                    lists[usize::from(o.list)].2[o.idx as usize].id;
                kept_by_list[usize::from(e.list)] += 1;
            }
        }
        for (m, o) in group.iter().enumerate() {
            let (_, side, rules) = lists[usize::from(o.list)];
            if side == BEFORE && !taken[m] {
                set_bit(&mut freed, rules[o.idx as usize].id);
            }
        }
    }
    for (i, (id, side, rules)) in lists.iter().enumerate() {
        if *side == AFTER {
            let kept = kept_by_list[i];
            let before = old.get(id).map_or(0, Vec::len);
            summary.rules_kept += kept;
            summary.rules_added += rules.len() - kept;
            summary.rules_removed += before - kept;
        }
    }
    let mut used: Vec<u64> = vec![0; (capacity as usize).div_ceil(64)];
    for r in old.values().flatten() {
        set_bit(&mut used, r.id);
    }
    let mut next_free = 0u32;
    // One AFTER list per replaced order, in the same order.
    let after_ids: Vec<Vec<u32>> = lists
        .iter()
        .zip(ids)
        .filter(|((_, side, _), _)| *side == AFTER)
        .map(|(_, ids)| ids)
        .collect();
    for (rules, ids) in replaced.values_mut().zip(after_ids) {
        for (r, id) in rules.iter_mut().zip(ids) {
            if id != FRESH {
                r.id = id;
                continue;
            }
            while bit(&used, next_free) {
                next_free += 1;
            }
            if next_free >= capacity {
                return Err(TxnError::Capacity { capacity });
            }
            r.id = next_free;
            set_bit(&mut used, next_free);
        }
    }

    // 3.
    let mut lists = changed_lists(old, replaced);
    let mut more = Vec::new();
    for (id, rules) in old {
        if replaced.contains_key(id) || rules.is_empty() {
            continue;
        }
        let list = lists.len();
        if list > usize::from(u16::MAX) {
            return Err(TxnError::TooManyOrders);
        }
        lists.push((*id, BEFORE | AFTER, rules));
        more.extend(
            entries_of(list, rules, keys_of(secret, rules))
                .filter(|e| entries.binary_search_by_key(&e.key, |x| x.key).is_ok()),
        );
    }
    if !more.is_empty() {
        entries.extend(more);
        entries.sort_unstable_by_key(|e| e.key);
    }
    Ok(Plan {
        freed,
        diffs: merge_groups(&lists, &entries),
    })
}

/// Merges the candidates of each key of the sorted `entries`, on both sides.
fn merge_groups(lists: &[List<'_>], entries: &[Entry]) -> Vec<Diff> {
    let mut diffs = Vec::new();
    let mut before: Vec<Candidate<'_>> = Vec::new();
    let mut after: Vec<Candidate<'_>> = Vec::new();
    for group in entries.chunk_by(|a, b| a.key == b.key) {
        before.clear();
        after.clear();
        for e in group {
            let (order, side, rules) = lists[usize::from(e.list)];
            let c = Candidate {
                order,
                rule: &rules[e.idx as usize],
            };
            if side & BEFORE != 0 {
                before.push(c);
            }
            if side & AFTER != 0 {
                after.push(c);
            }
        }
        let (o, n) = (merge(&before), merge(&after));
        if o != n {
            diffs.push((group[0].key, o, n));
        }
    }
    diffs
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
pub fn depth_mask_of<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> [u64; 2] {
    let mut m = [0u64; 2];
    for r in rules {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Source;
    use blocker_common::QTYPES_ALL;

    /// The refusals print what the anyhow messages they replaced printed (written out here).
    #[test]
    fn refusal_messages_are_unchanged() {
        let e = TxnError::Generation {
            kernel: 7,
            state: "/var/lib/blocker/state.json".into(),
            recorded: 5,
            bpffs: "/sys/fs/bpf/blocker".into(),
        };
        assert_eq!(
            e.to_string(),
            "the kernel's rule generation is 7 but /var/lib/blocker/state.json records generation \
             5: the state directory does not belong to the program pinned in /sys/fs/bpf/blocker \
             (check --state-dir and --bpffs)"
        );
        assert_eq!(
            TxnError::Capacity { capacity: 4 }.to_string(),
            "the rule map holds at most 4 rules, and this change needs more at once (old and new \
             rules coexist until the switch); re-create it with a larger `blocker attach \
             --capacity` (nothing was changed)"
        );
    }

    fn rule(name: &str, kind: Kind, action: Action, id: u32) -> Rule {
        Rule {
            name: blocker_lists::Name::from_presentation(name).expect("name"),
            kind,
            action,
            qtypes: QTYPES_ALL,
            id,
            source: Source::cli(),
        }
    }

    fn secret() -> KeySecret {
        KeySecret::from_bases(0x0123_4567_89ab_cdef, 0x1edc_ba98_7654_3210).expect("valid")
    }

    fn key(name: &str) -> RuleKey {
        key_of_canonical(
            &secret(),
            blocker_lists::Name::from_presentation(name)
                .expect("name")
                .canonical(),
        )
    }

    #[test]
    fn plan_keeps_ids_frees_ids_and_merges_with_other_orders() {
        use Action::*;
        use Kind::*;
        let mut old = BTreeMap::new();
        old.insert(
            1u16,
            vec![
                rule("a.example", Subtree, Nxdomain, 0),
                rule("b.example", Subtree, Nxdomain, 1),
                rule("c.example", Exact, Nxdomain, 2),
            ],
        );
        // Another order allows c.example: it wins wherever order 1 blocks it.
        old.insert(2u16, vec![rule("c.example", Exact, Pass, 3)]);
        let mut replaced = BTreeMap::new();
        replaced.insert(
            1u16,
            vec![
                rule("d.example", Subtree, Nxdomain, 99),
                rule("a.example", Subtree, Nxdomain, 99),
                rule("c.example", Subtree, Nxdomain, 99),
                rule("e.example", Below, Refused, 99),
            ],
        );
        let mut summary = Summary::default();
        let p = plan(&secret(), &old, &mut replaced, 100, &mut summary).expect("plan");
        let ids: Vec<u32> = replaced[&1].iter().map(|r| r.id).collect();
        // a keeps 0; d, c (another match kind) and e take the lowest ids free before and
        // after the change, in rule order.
        assert_eq!(ids, vec![4, 0, 5, 6]);
        assert_eq!(
            (
                summary.rules_added,
                summary.rules_removed,
                summary.rules_kept
            ),
            (3, 2, 1)
        );
        assert!(bit(&p.freed, 1) && bit(&p.freed, 2));
        assert!(!bit(&p.freed, 0) && !bit(&p.freed, 3));
        let changed: Vec<RuleKey> = p.diffs.iter().map(|d| d.0).collect();
        let mut want = vec![
            key("b.example"),
            key("c.example"),
            key("d.example"),
            key("e.example"),
        ];
        want.sort();
        assert_eq!(changed, want, "a.example is unchanged");
        let c = p.diffs.iter().find(|d| d.0 == key("c.example")).expect("c");
        // Before: the allow rule of order 2 here; after: still here, and order 1's subtree
        // rule below.
        assert_eq!(c.1.here.action, Pass as u8);
        assert_eq!(c.2.here.action, Pass as u8);
        assert_eq!((c.2.below.order_id, c.2.below.rule_id), (1, 5));
        let b = p.diffs.iter().find(|d| d.0 == key("b.example")).expect("b");
        assert_eq!(b.2, RuleSet::default(), "b.example is gone");
    }

    #[test]
    fn plan_refuses_a_change_beyond_capacity() {
        let mut old = BTreeMap::new();
        old.insert(0u16, vec![rule("a.example", Kind::Exact, Action::Drop, 0)]);
        let mut replaced = BTreeMap::new();
        replaced.insert(0u16, vec![rule("b.example", Kind::Exact, Action::Drop, 0)]);
        let e = plan(&secret(), &old, &mut replaced, 1, &mut Summary::default())
            .err()
            .expect("refused");
        assert!(e.to_string().contains("--capacity"), "{e}");
    }
}
