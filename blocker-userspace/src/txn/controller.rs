//! The controller: opens the pinned maps and the state directory under the lock, finishes
//! an interrupted change, restores recorded rules into empty maps, and applies changes (see
//! the module documentation of [`crate::txn`] for the steps).

use std::{collections::BTreeMap, fs};

use blocker_common::{
    key::KeySecret, Config, JurisValue, OrderGate, OrderInfo, RuleKey, RuleValue, CONFIG_SCOPED,
    CONFIG_WINDOWS, MAX_EDE_TEXT, MODE_SHADOW,
};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::{
    plan::{diffs_from_nothing, keys_of, plan, rules_after, Diff, Plan},
    OrderChange, Result, Summary, TxnError,
};
use crate::{
    kernel::{Maps, Pins},
    state::{now, Lock, Order, Rule, StateDir, StateFile},
};

#[derive(Serialize, Deserialize)]
struct Journal {
    /// Generation the change will have once flipped.
    generation: u32,
}

/// A change planned, ready to be made ([`Controller::execute`]).
pub(super) struct Change<'a> {
    /// When the change started (for the phase timings).
    pub(super) t0: std::time::Instant,
    pub(super) old_state: StateFile,
    /// The state after the change (its rules files are recorded by `execute`).
    pub(super) new_state: StateFile,
    pub(super) diffs: &'a [Diff],
    /// Rule ids the change frees.
    pub(super) freed: &'a [u64],
    /// Rule ids the change gives new rules.
    pub(super) assigned: &'a [u32],
    pub(super) removed_orders: Vec<u16>,
    /// Names in the rule map before the change (for the key filter's sizing).
    pub(super) names_before: usize,
    /// Every key of the rules before the change (when the key filter must be rebuilt).
    pub(super) everything: &'a dyn Fn() -> Vec<RuleKey>,
    /// The depth mask of the rules after the change.
    pub(super) new_mask: [u64; 2],
    pub(super) record: Record<'a>,
    /// Its generation, and the counts the plan made.
    pub(super) summary: Summary,
}

/// How a change's rules are recorded in the state directory.
pub(super) enum Record<'a> {
    /// Each of these orders gets a rules file with its whole new rules.
    Full(&'a BTreeMap<u16, Vec<Rule>>),
    /// The order's rules file stays; a delta file records the rules removed and added.
    Delta {
        order: u16,
        removed: &'a [u32],
        added: &'a [Rule],
    },
}

/// An open, locked controller: the pinned maps and the state directory.
pub struct Controller {
    pub pins: Pins,
    pub dir: StateDir,
    pub maps: Maps,
    pub state: StateFile,
    /// The key secret every rule key is computed with (see [`crate::secret`]).
    pub secret: KeySecret,
    /// The state directory's lock, held as long as the controller (taken only to hand it to
    /// the controller of grown maps, see [`Controller::grow`]).
    lock: Option<Lock>,
}

impl Controller {
    /// Locks the state directory, opens the pinned maps and finishes any interrupted change.
    pub fn open(pins: &Pins, dir: &StateDir) -> Result<Controller> {
        Controller::open_for(pins, dir, 0)
    }

    /// [`Controller::open`] for a change that brings `incoming` rules: maps created now (none
    /// pinned yet) are sized for them at once (the next power of two, at least the default),
    /// rather than created small and grown by the change (which would load the object a
    /// second time while the change is in memory). They are created before the change is
    /// checked: a first change refused leaves them, empty, at that size. More rules than any
    /// map holds get the default size (the change is refused before anything else is built).
    pub fn open_for(pins: &Pins, dir: &StateDir, incoming: usize) -> Result<Controller> {
        let lock = dir.lock()?;
        Controller::open_locked_for(pins, dir, lock, incoming)
    }

    /// [`Controller::open`] for a caller that already holds the lock.
    pub fn open_locked(pins: &Pins, dir: &StateDir, lock: Lock) -> Result<Controller> {
        Controller::open_locked_for(pins, dir, lock, 0)
    }

    fn open_locked_for(
        pins: &Pins,
        dir: &StateDir,
        lock: Lock,
        incoming: usize,
    ) -> Result<Controller> {
        refuse_interrupted_upgrade(pins, dir)?;
        if !pins.loaded() {
            // Rules can be prepared before any interface is attached.
            let wanted = capacity_for(incoming)
                .unwrap_or(blocker_common::DEFAULT_RULE_CAPACITY)
                .max(blocker_common::DEFAULT_RULE_CAPACITY);
            let capacity = fresh_capacity(dir, wanted)?;
            crate::kernel::load_and_pin(pins, capacity)?;
            eprintln!(
                "loaded blocker into {} (capacity {capacity} names; not attached to any \
                 interface yet)",
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
            lock: Some(lock),
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
        } else {
            c.follow_the_clock()?;
        }
        Ok(c)
    }

    /// Rewrites the orders' validity windows when the kernel's TAI offset has changed since
    /// they were written (see [`windows_shift_s`]); returns the shift corrected, in seconds.
    /// Both copies at once, as recovery writes them: only the windows' instants change, and
    /// each is one aligned 64-bit word a reader sees whole.
    pub fn follow_the_clock(&mut self) -> Result<Option<i64>> {
        // Any other difference between the gates in force and the state (the precedence of
        // equal priorities after an upgrade changed how ties are broken, say) is put right
        // the same way.
        let (shift, stale) = gates_vs_state(&self.maps, &self.state)?;
        if !stale {
            return Ok(None);
        }
        let ids: Vec<u16> = self.state.orders.iter().map(|o| o.id).collect();
        for copy in [0, 1] {
            write_orders(&mut self.maps, copy, &self.state, &ids)?;
        }
        match shift {
            Some(shift) => log::warn!(
                "the orders' validity windows were {shift} s off the wall clock (the kernel's \
                 TAI offset changed since they were written, as when NTP sets it after boot): \
                 rewritten"
            ),
            None => log::warn!(
                "the orders' gates in the kernel differed from the state (precedence, scope or \
                 mode): rewritten"
            ),
        }
        Ok(shift)
    }

    /// For `blocker upgrade`: loads this build's program with new maps pinned in `pins.dir`
    /// (an empty directory, or one holding only maps to share, which must have this build's
    /// layout), the rule map sized `capacity`, and writes the whole recorded state into them:
    /// what [`Controller::open`] does after a reboot. The caller holds the lock and has
    /// settled any interrupted change ([`settle_journal`]): the state directory is the truth.
    pub fn restore_into(
        pins: &Pins,
        dir: &StateDir,
        lock: Lock,
        capacity: u32,
    ) -> Result<Controller> {
        crate::kernel::load_and_pin(pins, capacity)?;
        let maps = Maps::open(pins)?;
        let mut c = Controller {
            pins: pins.clone(),
            dir: dir.clone(),
            maps,
            state: dir.load()?,
            secret: KeySecret::UNSET,
            lock: Some(lock),
        };
        c.secret = crate::secret::establish(&mut c.maps, pins, dir, true)?;
        c.restore()?;
        Ok(c)
    }

    /// Finishes or rolls back a change interrupted by a crash.
    fn recover(&mut self) -> Result<()> {
        let jpath = self.dir.txn_path();
        if !jpath.exists() {
            return Ok(());
        }
        let cfg = self.maps.config()?;
        settle_journal(&self.dir, cfg.generation)?;
        // Names written for an epoch never reached (a change interrupted before its flip)
        // keep only the rules in force; names with no rules in force go.
        let epoch = cfg.epoch;
        let mut gone = Vec::new();
        let mut changed = Vec::new();
        for k in self.maps.rules.keys()? {
            let (set, since) = match self.maps.rules.get(&k, epoch) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                // Unreadable (a wide marker without its entry): left as it is.
                Err(e) => {
                    log::warn!("recovery: {e}");
                    continue;
                }
            };
            if set.is_empty() {
                gone.push(k);
            } else if since > epoch {
                changed.push((k, RuleValue::settled(set)));
            }
        }
        self.maps.rules.update_batch(changed)?;
        self.maps.rules.delete_batch(&gone)?;
        // Wide entries the copies in force do not point to (a change interrupted between the
        // two maps, a name no longer crowded).
        self.maps.rules.prune_wide(epoch)?;
        let state = self.dir.load()?;
        // Both copies of every order's metadata as the adopted state records it (a change
        // interrupted before its flip may have written the inactive copy; one interrupted
        // after it may not have caught the other copy up).
        let every: Vec<u16> = (0..blocker_common::MAX_ORDERS as u16).collect();
        for copy in [0, 1] {
            write_orders(&mut self.maps, copy, &state, &every)?;
        }
        sync_juris(&mut self.maps, &state)?;
        write_local(&mut self.maps, &[], &state.local_data)?;
        // Entries of sets the record does not have (a key is the set's id and a query type).
        let keys: Vec<u32> = self.maps.local.keys().collect::<Result<_, _>>()?;
        for key in keys {
            let id = (key >> 16) as usize;
            let used = id != 0 && state.local_data.get(id - 1).is_some_and(|d| !d.is_empty());
            if !used {
                let _ = self.maps.local.remove(&key);
            }
        }
        let mut cfg = self.maps.config()?;
        cfg.depth_mask = depth_mask_of(self.all_rules(&state)?.values().flatten());
        cfg.flags = (cfg.flags & !(CONFIG_SCOPED | CONFIG_WINDOWS)) | rule_set_flags(&state);
        self.maps.set_config(&cfg)?;
        fs::remove_file(&jpath)?;
        self.dir.gc(&state)?;
        Ok(())
    }

    /// Writes the whole recorded state into freshly created maps.
    fn restore(&mut self) -> Result<()> {
        let t0 = std::time::Instant::now();
        let phase = |what: &str| log::info!("restore: {what}: {:.3} s", t0.elapsed().as_secs_f64());
        let rules = self.all_rules(&self.state)?;
        phase("read recorded rules");
        // Everything is new: the difference from no rules at all.
        let diffs = diffs_from_nothing(&self.secret, &rules)?;
        phase("computed the rule map");
        let mut cfg = Config::default();
        if let Some(filter) = self.maps.filter.as_mut() {
            let keys = diffs.iter().map(|d| &d.key);
            filter.admit(&mut cfg, keys, diffs.len() as u64, Vec::new);
        }
        write_split(&self.maps.rules, &diffs, |d| {
            Some((d.key, RuleValue::settled(d.after())))
        })?;
        let ids: Vec<u16> = self.state.orders.iter().map(|o| o.id).collect();
        for copy in [0, 1] {
            write_orders(&mut self.maps, copy, &self.state, &ids)?;
        }
        sync_juris(&mut self.maps, &self.state)?;
        write_local(&mut self.maps, &[], &self.state.local_data)?;
        self.state.settings.apply_to(&mut cfg);
        cfg.generation = self.state.generation;
        cfg.depth_mask = depth_mask_of(rules.values().flatten());
        cfg.flags |= rule_set_flags(&self.state);
        self.maps.set_config(&cfg)?;
        phase("written");
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

    /// The rules of every order, by order id (local data ids assigned from `state`).
    pub fn all_rules(&self, state: &StateFile) -> Result<BTreeMap<u16, Vec<Rule>>> {
        let mut out = BTreeMap::new();
        for o in &state.orders {
            let mut rules = self.dir.read_rules(o)?;
            state.assign_local_ids(rules.iter_mut());
            out.insert(o.id, rules);
        }
        Ok(out)
    }

    /// Applies `changes` atomically (see the module documentation).
    pub fn apply(&mut self, changes: Vec<OrderChange>) -> Result<Summary> {
        let t0 = std::time::Instant::now();
        let phase = |what: &str| log::info!("{what}: {:.3} s", t0.elapsed().as_secs_f64());
        let old_state = self.state.clone();
        // The hits so far, counted to today before a change may reset counters.
        if let Err(e) = crate::compliance::sample_hits(&self.dir, &old_state, &self.maps) {
            log::warn!("hits per day not sampled: {e}");
        }
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
                OrderChange::Jurisdictions(js) => {
                    new_state.jurisdictions = js;
                }
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
        // Local data ids: the sets the old rules use keep theirs; new sets take free ids.
        new_state.local_data = local_table(&old_state.local_data, &old_rules, &replaced)?;
        for rules in replaced.values_mut() {
            new_state.assign_local_ids(rules.iter_mut());
        }

        // The capacity the change is made with: the rule map's, or the one it grows to when
        // the rules after the change cannot fit it; or, when old and new rules need ids at
        // once until the switch, more than that, room for both. Ids go to the lowest free
        // first whatever the capacity, so one plan, bounded by the larger room, says which
        // (a plan bounded by the smaller one and made again when it does not fit would cost
        // a whole plan more: 0.5-1 s a million rules). The map grows only once the change is
        // known to be valid and to change something (below).
        let after: usize = old_rules
            .iter()
            .filter(|(id, _)| !replaced.contains_key(id))
            .chain(&replaced)
            .map(|(_, rules)| rules.len())
            .sum();
        // Every id in force indexes the rule counters: maps restored by an older build, sized
        // by the number of rules, grow here to the largest id (they never need to otherwise).
        let ids_in_use = old_rules
            .values()
            .flatten()
            .map(|r| r.id as usize + 1)
            .max()
            .unwrap_or(0);
        let room = self.room_for(after.max(ids_in_use))?;
        let both: usize = old_rules
            .values()
            .chain(replaced.values())
            .map(Vec::len)
            .sum();
        let bound = match self.room_for(both) {
            Ok(r) => r.max(room),
            Err(_) => blocker_common::MAX_RULE_CAPACITY,
        };
        let mut summary = Summary {
            generation,
            ..Default::default()
        };
        let Plan {
            freed,
            diffs,
            ids_needed,
            assigned,
        } = plan(&self.secret, &old_rules, &mut replaced, bound, &mut summary)?;
        let room = if ids_needed <= room { room } else { bound };
        summary.names_changed = diffs.len();

        // Nothing to do when the rules and the orders' settings are what they were: a
        // re-load of an unchanged list changes nothing, not even the generation.
        let same_order = |id: &u16| {
            let strip = |o: &Order| Order {
                updated: 0,
                rules_file: String::new(),
                rules_deltas: Vec::new(),
                ..o.clone()
            };
            let before = old_state.order_by_id(*id).map(strip);
            let after = new_state.order_by_id(*id).map(strip);
            let rules_same = match (old_rules.get(id), replaced.get(id)) {
                (_, None) => true,
                (None, Some(b)) => b.is_empty(),
                (Some(a), Some(b)) => {
                    // In any order: an order edited by deltas lists its rules in another.
                    fn by_id(v: &[Rule]) -> Vec<&Rule> {
                        let mut v: Vec<&Rule> = v.iter().collect();
                        v.sort_unstable_by_key(|r| r.id);
                        v
                    }
                    a.len() == b.len()
                        && by_id(a).into_iter().zip(by_id(b)).all(|(x, y)| {
                            (&x.name, x.kind, x.action, x.qtypes, x.id, &x.local)
                                == (&y.name, y.kind, y.action, y.qtypes, y.id, &y.local)
                        })
                }
            };
            before == after && rules_same
        };
        if diffs.is_empty()
            && changed_orders.iter().all(same_order)
            && old_state.jurisdictions == new_state.jurisdictions
        {
            summary.generation = old_state.generation;
            retire((old_rules, replaced, diffs));
            return Ok(summary);
        }

        // A larger rule map first, if the plan needs one (it holds what the record holds,
        // which this plan started from).
        self.reserve(room)?;
        phase("computed changes");
        let names_before = old_rules.values().map(Vec::len).sum::<usize>();
        let new_mask = depth_mask_of(
            new_state
                .orders
                .iter()
                .flat_map(|o| rules_after(&old_rules, &replaced, o.id)),
        );
        let secret = self.secret;
        let everything = || {
            old_rules
                .values()
                .flat_map(|rs| keys_of(&secret, rs))
                .collect()
        };
        let summary = self.execute(Change {
            t0,
            old_state,
            new_state,
            diffs: &diffs,
            freed: &freed,
            assigned: &assigned,
            removed_orders,
            names_before,
            everything: &everything,
            new_mask,
            record: Record::Full(&replaced),
            summary,
        })?;
        retire((old_rules, replaced, diffs));
        Ok(summary)
    }

    /// Gives the rule map room for `rules` rules at once, when it has less: this build's
    /// program with maps of twice the capacity, or the next power of two of `rules` when that
    /// is more, holding the same record, every link switched to it
    /// ([`crate::upgrade::grow`], as `blocker upgrade` does: the program is this binary's);
    /// the controller then works on the new maps. Call only between changes (the record is
    /// the truth).
    pub(super) fn grow(&mut self, rules: usize) -> Result<()> {
        let to = self.room_for(rules)?;
        self.reserve(to)
    }

    /// The capacity [`Controller::grow`] gives the rule map for `rules` rules at once: the
    /// map's own when they fit, else twice it or the next power of two of `rules`, whichever
    /// is more; refused above [`blocker_common::MAX_RULE_CAPACITY`].
    pub(super) fn room_for(&self, rules: usize) -> Result<u32> {
        let capacity = self.maps.capacity;
        if rules <= capacity as usize {
            return Ok(capacity);
        }
        // None: no map would do, refused before anything is built (maps a first load
        // creates are then of the default size, see `open_for`).
        let need = capacity_for(rules).ok_or(TxnError::Capacity { capacity })?;
        Ok(need
            .max(capacity.saturating_mul(2))
            .min(blocker_common::MAX_RULE_CAPACITY))
    }

    /// Gives the rule map room for `capacity` rules: as [`Controller::grow`], to exactly that
    /// capacity, if it is larger than the map's; refused above
    /// [`blocker_common::MAX_RULE_CAPACITY`].
    pub fn reserve(&mut self, capacity: u32) -> Result<()> {
        let have = self.maps.capacity;
        if capacity <= have {
            return Ok(());
        }
        if capacity > blocker_common::MAX_RULE_CAPACITY {
            return Err(TxnError::Capacity { capacity: have });
        }
        let lock = match self.lock.take() {
            Some(lock) => lock,
            None => self.dir.lock()?,
        };
        let pins = self.pins.clone();
        match crate::upgrade::grow(&pins, &self.dir, lock, capacity) {
            Ok(rebuilt) => {
                *self = rebuilt.controller;
                // Built in the staging directory, now pinned in place.
                self.pins = pins;
                Ok(())
            }
            Err(e) => {
                // The old maps are still the ones in force; take the lock back for them (a
                // failed growth dropped it).
                self.lock = self.dir.lock().ok();
                Err(TxnError::Grow(Box::new(e)))
            }
        }
    }

    /// Makes a planned change (steps 2 to 5 of the module documentation).
    pub(super) fn execute(&mut self, ch: Change<'_>) -> Result<Summary> {
        let Change {
            t0,
            old_state,
            mut new_state,
            diffs,
            freed,
            assigned,
            removed_orders,
            names_before,
            everything,
            new_mask,
            record,
            mut summary,
        } = ch;
        let phase = |what: &str| log::info!("{what}: {:.3} s", t0.elapsed().as_secs_f64());
        let generation = summary.generation;
        let mut cfg: Config = self.maps.config()?;
        let epoch = cfg.epoch;
        let next = epoch
            .checked_add(1)
            .ok_or(TxnError::EpochExhausted(epoch))?;
        let active = (epoch & 1) as usize;
        let inactive = 1 - active;
        // The journal comes before anything the change writes: from here on, the next
        // command rolls an interrupted change back or forward.
        fs::write(
            self.dir.txn_path(),
            serde_json::to_vec(&Journal { generation })?,
        )?;
        crash_point("journal");
        // New rules start from zero hits, whatever their ids counted before (freed ids are
        // zeroed after the switch too, but a crash can come between): the plan gave them ids
        // no rule held before the change, so nothing counts on them until the switch.
        for id in assigned {
            self.maps.reset_rule_hits(*id);
        }
        // Orders' metadata (EDE, precedence, mode, override, jurisdictions, window) in the
        // inactive copy: enforced with the rules at the flip, not before. Every order's: a
        // change of one order's priority moves the ranks of others.
        let mut all_orders: Vec<u16> = old_state
            .orders
            .iter()
            .chain(&new_state.orders)
            .map(|o| o.id)
            .collect();
        all_orders.sort_unstable();
        all_orders.dedup();
        write_orders(&mut self.maps, inactive as u32, &new_state, &all_orders)?;
        // Local data sets new in this change (an id's content never changes while in use).
        write_local(&mut self.maps, &old_state.local_data, &new_state.local_data)?;
        // Jurisdictions: both copies of every prefix either set has, the new ones inactive.
        let juris_changed = old_state.jurisdictions != new_state.jurisdictions;
        if juris_changed {
            write_juris_copies(&mut self.maps, active, &old_state, &new_state)?;
        }
        // Names about to enter the rule map get their filter bits first.
        if let Some(filter) = self.maps.filter.as_mut() {
            let added = diffs.iter().filter(|d| !d.is_gone()).map(|d| &d.key);
            let new_names = diffs.iter().filter(|d| d.is_new()).count();
            let names = names_before + new_names;
            if filter.admit(&mut cfg, added, names as u64, everything) {
                self.maps.set_config(&cfg)?;
            }
            phase("key filter");
        }
        // Record the new state (on a second thread) while writing the names this change
        // touches: old rules in force until the flip, new ones from it on (`RuleValue`).
        new_state.generation = generation;
        new_state.updated = now();
        let dir = &self.dir;
        let maps = &self.maps;
        let (recorded, written) = std::thread::scope(|s| {
            let recorder = s.spawn(|| -> Result<StateFile> {
                match record {
                    Record::Full(replaced) => {
                        for (id, rules) in replaced {
                            if let Some(o) = new_state.orders.iter_mut().find(|o| o.id == *id) {
                                o.rules_file = dir.write_rules(*id, generation, rules)?;
                                o.rules_deltas.clear();
                            }
                        }
                    }
                    Record::Delta {
                        order,
                        removed,
                        added,
                    } => {
                        if let Some(o) = new_state.orders.iter_mut().find(|o| o.id == order) {
                            let name = dir.write_rules_delta(order, generation, removed, added)?;
                            o.rules_deltas.push(name);
                        }
                    }
                }
                dir.stage(&new_state)?;
                Ok(new_state)
            });
            let written = write_split(&maps.rules, diffs, |d| {
                Some((d.key, RuleValue::change(d.before(), d.after(), next)))
            });
            let recorded = recorder.join().unwrap_or_else(|_| Err(TxnError::Panicked));
            (recorded, written)
        });
        let new_state = recorded?;
        written?;
        phase("recorded the new state and wrote the changed names");
        crash_point("inactive");
        // Look up the depths of both sets until the old one is gone.
        let old_mask = cfg.depth_mask;
        cfg.depth_mask = [old_mask[0] | new_mask[0], old_mask[1] | new_mask[1]];
        // The client lookups either set needs, until the old one is gone.
        cfg.flags |= rule_set_flags(&new_state);
        self.maps.set_config(&cfg)?;

        // The flip.
        cfg.epoch = next;
        cfg.generation = generation;
        self.maps.set_config(&cfg)?;
        summary.enforced = Some(std::time::SystemTime::now());
        crash_point("flip");

        self.dir.commit()?;
        self.state = new_state;
        crash_point("commit");
        // The copy now inactive catches up with the orders' new metadata.
        write_orders(&mut self.maps, active as u32, &self.state, &all_orders)?;
        if juris_changed {
            sync_juris(&mut self.maps, &self.state)?;
        }
        // Sets no rule uses any more leave the kernel (their ids are free for the next change);
        // an id whose content changed keeps only the entries of its new content.
        for (i, d) in old_state.local_data.iter().enumerate() {
            let now = self.state.local_data.get(i).map_or("", String::as_str);
            if !d.is_empty() && now != d {
                remove_local(&mut self.maps, (i + 1) as u16, d, now)?;
            }
        }

        phase("switched");
        // Names with no rules left are deleted; the others stay as written, their new copy
        // in force from now on. Wide entries no copy in force points to any more stay a
        // little longer (dropped below): a packet that read the epoch just before the flip
        // may still follow the old copy's marker.
        let gone: Vec<RuleKey> = diffs
            .iter()
            .filter(|d| d.is_gone())
            .map(|d| d.key)
            .collect();
        self.maps.rules.delete_batch(&gone)?;
        cfg.depth_mask = new_mask;
        cfg.flags = (cfg.flags & !(CONFIG_SCOPED | CONFIG_WINDOWS)) | rule_set_flags(&self.state);
        self.maps.set_config(&cfg)?;

        // Counters of rules and orders that are gone start from zero if their ids return.
        for (i, w) in freed.iter().enumerate() {
            let mut w = *w;
            while w != 0 {
                self.maps
                    .reset_rule_hits(i as u32 * 64 + w.trailing_zeros());
                w &= w - 1;
            }
        }
        for id in removed_orders {
            if self.state.order_by_id(id).is_none() {
                self.maps.reset_order_hits(id)?;
            }
        }
        // Milliseconds after the flip (the commit's fsync, the counters): the wide
        // entries of names now inline or gone. A packet runs for microseconds.
        // Before the journal goes: a crash here leaves them to the recovery's prune.
        let narrow = diffs.iter().filter(|d| d.fits_inline_after());
        self.maps.rules.drop_wide(narrow.map(|d| &d.key))?;
        fs::remove_file(self.dir.txn_path())?;
        self.dir.gc(&self.state)?;
        phase("removed what the old rules alone used");
        Ok(summary)
    }
}

/// The capacity of maps created empty to hold what `dir` records (after a reboot emptied the
/// BPF filesystem, or for `blocker upgrade`'s new maps): `requested`, or the next power of two
/// of the recorded rules, or of the largest recorded rule id, when that is more. The restore
/// keeps each rule's id, and ids spread above the number of rules (old and new rules hold
/// ids side by side until a switch), while the rule counters are an array indexed by id.
pub fn fresh_capacity(dir: &StateDir, requested: u32) -> Result<u32> {
    let state = dir.load()?;
    let rules: usize = state.orders.iter().map(|o| o.rules).sum();
    let mut ids = 0u32;
    for o in &state.orders {
        ids = ids.max(dir.rule_id_bound(o)?);
    }
    let needed = capacity_for(rules.max(ids as usize)).unwrap_or(blocker_common::MAX_RULE_CAPACITY);
    Ok(requested.max(needed).min(blocker_common::MAX_RULE_CAPACITY))
}

/// The smallest rule map capacity, a power of two, that holds `rules` rules; None when no
/// map can ([`blocker_common::MAX_RULE_CAPACITY`], itself a power of two, is too small).
fn capacity_for(rules: usize) -> Option<u32> {
    if rules > blocker_common::MAX_RULE_CAPACITY as usize {
        return None;
    }
    u32::try_from(rules.next_power_of_two()).ok()
}

/// The state-directory half of recovering an interrupted change (`txn.json`): the staged
/// state becomes the record when the kernel enforces its generation (`kernel_generation`:
/// the flip happened), else it is dropped. The journal stays: the kernel half (names written
/// for an epoch never reached) is the caller's. Does nothing without a journal; doing it twice is doing it
/// once.
pub(crate) fn settle_journal(dir: &StateDir, kernel_generation: u32) -> Result<()> {
    let jpath = dir.txn_path();
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
    if kernel_generation == j.generation {
        // The flip happened: the new state is the truth.
        if dir.dir.join("state.json.new").exists() {
            dir.commit()?;
        }
        log::warn!(
            "finished an interrupted change (generation {})",
            j.generation
        );
    } else {
        dir.discard_staged()?;
        log::warn!(
            "rolled back an interrupted change (generation {} was never enforced)",
            j.generation
        );
    }
    Ok(())
}

/// Refuses to touch the maps while an upgrade is half done: the links may run the staged
/// program while the pins still name the old maps, and a change written there would not be
/// enforced (see [`crate::upgrade`]).
pub(crate) fn refuse_interrupted_upgrade(pins: &Pins, dir: &StateDir) -> Result<()> {
    if crate::upgrade::interrupted(dir)? {
        return Err(TxnError::UpgradeInterrupted {
            bpffs: pins.dir.clone(),
            journal: crate::upgrade::journal_path(dir),
        });
    }
    Ok(())
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
    // Every order's gate in that copy (the gates are one value: one write).
    let mut gates = maps.gates()?;
    let copy = &mut gates.copies[(copy & 1) as usize];
    for g in copy.iter_mut() {
        *g = OrderGate::OPEN;
    }
    for (id, g) in order_gates(state) {
        copy[usize::from(id)] = g;
    }
    maps.set_gates(&gates)?;
    Ok(())
}

/// The local data table after a change: the old table with the sets no rule uses after the
/// change emptied, and each set new rules bring given a free id — one the old rules do not use
/// (their sets' content must not change before the flip).
fn local_table(
    old: &[String],
    old_rules: &BTreeMap<u16, Vec<Rule>>,
    replaced: &BTreeMap<u16, Vec<Rule>>,
) -> Result<Vec<String>> {
    use std::collections::HashSet;
    let after = |id: &u16| replaced.get(id).or_else(|| old_rules.get(id));
    let ids: HashSet<u16> = old_rules.keys().chain(replaced.keys()).copied().collect();
    let mut used_after: HashSet<String> = HashSet::new();
    for id in &ids {
        for r in after(id).into_iter().flatten() {
            if let Some(d) = &r.local {
                used_after.insert(d.to_string());
            }
        }
    }
    let used_before: HashSet<&str> = old_rules
        .values()
        .flatten()
        .filter_map(|r| r.local.as_ref().map(|_| r.local_id))
        .filter(|id| *id != 0)
        .filter_map(|id| old.get(usize::from(id) - 1).map(String::as_str))
        .collect();
    // Kept: what the new rules use. Free: empty, and not used by the old rules.
    let mut table: Vec<String> = old
        .iter()
        .map(|d| {
            if used_after.contains(d) {
                d.clone()
            } else {
                String::new()
            }
        })
        .collect();
    let have: HashSet<String> = table.iter().filter(|d| !d.is_empty()).cloned().collect();
    let mut fresh: Vec<&String> = used_after.iter().filter(|d| !have.contains(*d)).collect();
    fresh.sort();
    let mut next = 0usize;
    for d in fresh {
        while next < table.len()
            && (!table[next].is_empty() || used_before.contains(old[next].as_str()))
        {
            next += 1;
        }
        if next >= blocker_common::MAX_LOCAL_DATA as usize {
            return Err(TxnError::LocalDataFull {
                max: blocker_common::MAX_LOCAL_DATA,
            });
        }
        if next == table.len() {
            table.push(d.clone());
        } else {
            table[next] = d.clone();
        }
        next += 1;
    }
    while table.last().is_some_and(String::is_empty) {
        table.pop();
    }
    // Each set takes one kernel entry per query type it answers (and a default): all of them
    // must fit in BLK_LOCAL, old and new together until the switch.
    let entries: usize = table
        .iter()
        .chain(old)
        .filter(|d| !d.is_empty())
        .collect::<HashSet<_>>()
        .into_iter()
        .map(|d| parse_local(d).map(|l| l.answers().0.len()))
        .sum::<Result<usize>>()?;
    if entries > blocker_common::LOCAL_ENTRIES as usize {
        return Err(TxnError::LocalEntriesFull {
            entries,
            max: blocker_common::LOCAL_ENTRIES,
        });
    }
    Ok(table)
}

/// Parses a recorded local data set.
fn parse_local(d: &str) -> Result<blocker_lists::LocalData> {
    d.parse().map_err(|e: String| TxnError::CorruptLocal {
        data: d.to_string(),
        why: e,
    })
}

/// Writes the sets of `new` that `old` does not have at the same id: one entry per query
/// type the set answers (see `LocalData::answers`).
fn write_local(maps: &mut Maps, old: &[String], new: &[String]) -> Result<()> {
    for (i, d) in new.iter().enumerate() {
        if d.is_empty() || old.get(i) == Some(d) {
            continue;
        }
        for (qtype, a) in parse_local(d)?.answers().0 {
            let key = blocker_common::local_key((i + 1) as u16, qtype);
            maps.local.insert(key, a, 0)?;
        }
    }
    Ok(())
}

/// Removes the kernel entries of local data set `id` recorded as `old` that its content
/// `now` (empty: none) does not have.
fn remove_local(maps: &mut Maps, id: u16, old: &str, now: &str) -> Result<()> {
    let keep: Vec<u16> = if now.is_empty() {
        Vec::new()
    } else {
        parse_local(now)?
            .answers()
            .0
            .iter()
            .map(|(t, _)| *t)
            .collect()
    };
    for (qtype, _) in parse_local(old)?.answers().0 {
        if !keep.contains(&qtype) {
            let _ = maps.local.remove(&blocker_common::local_key(id, qtype));
        }
    }
    Ok(())
}

/// The `Config::flags` bits the rule set of `state` needs: scoped orders make the data plane
/// look the client up, windows make it read the clock.
fn rule_set_flags(state: &StateFile) -> u32 {
    let mut f = 0;
    for o in &state.orders {
        if !o.jurisdictions.is_empty() {
            f |= CONFIG_SCOPED;
        }
        if o.valid_from.is_some() || o.valid_until.is_some() {
            f |= CONFIG_WINDOWS;
        }
    }
    f
}

/// A prefix as the kernel's LPM trie holds it: (address, length).
type PrefixKey = ([u8; 16], u8);

/// Each prefix of `state`'s jurisdictions with the bits of the jurisdictions that list it.
fn own_masks(state: &StateFile) -> FxHashMap<PrefixKey, u64> {
    let mut m: FxHashMap<PrefixKey, u64> = FxHashMap::default();
    for j in &state.jurisdictions {
        for p in &j.prefixes {
            *m.entry((p.addr, p.len)).or_default() |= 1u64 << (j.id & 63);
        }
    }
    m
}

/// The jurisdictions of the clients in prefix `k`: the bits of every prefix that contains it
/// (what the trie must answer for it, since it answers with the longest match only).
fn mask_at(own: &FxHashMap<PrefixKey, u64>, k: &PrefixKey) -> u64 {
    let a = u128::from_be_bytes(k.0);
    let mut m = 0;
    for len in 0..=k.1.min(128) {
        let masked = if len == 0 {
            0
        } else {
            a & (u128::MAX << (128 - u32::from(len)))
        };
        if let Some(bits) = own.get(&(masked.to_be_bytes(), len)) {
            m |= bits;
        }
    }
    m
}

fn lpm_key(k: &PrefixKey) -> aya::maps::lpm_trie::Key<[u8; 16]> {
    aya::maps::lpm_trie::Key::new(u32::from(k.1), k.0)
}

/// Before a flip: every prefix of the old or the new jurisdictions, with the old masks in
/// the `active` copy and the new ones in the other.
fn write_juris_copies(
    maps: &mut Maps,
    active: usize,
    old: &StateFile,
    new: &StateFile,
) -> Result<()> {
    let (o, n) = (own_masks(old), own_masks(new));
    for k in o.keys().chain(n.keys()) {
        let mut v = JurisValue::default();
        v.masks[active & 1] = mask_at(&o, k);
        v.masks[1 - (active & 1)] = mask_at(&n, k);
        maps.juris.insert(&lpm_key(k), v, 0)?;
    }
    Ok(())
}

/// Both copies of the jurisdiction trie as `state` records them; prefixes it does not have
/// are deleted.
fn sync_juris(maps: &mut Maps, state: &StateFile) -> Result<()> {
    let own = own_masks(state);
    for k in own.keys() {
        let m = mask_at(&own, k);
        maps.juris
            .insert(&lpm_key(k), JurisValue { masks: [m, m] }, 0)?;
    }
    let present: Vec<aya::maps::lpm_trie::Key<[u8; 16]>> =
        maps.juris.keys().collect::<Result<_, _>>()?;
    for k in present {
        if !own.contains_key(&(k.data(), k.prefix_len() as u8)) {
            maps.juris.remove(&k)?;
        }
    }
    Ok(())
}

/// TAI − UTC as the kernel keeps it (CLOCK_TAI − CLOCK_REALTIME, rounded to whole seconds):
/// 37 s where NTP told the kernel, 0 where nothing did. The data plane reads CLOCK_TAI
/// (`bpf_ktime_get_tai_ns`), so a window converted with this offset opens and closes when
/// the wall clock says.
pub fn tai_offset_ns() -> i128 {
    let read = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to write into.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    };
    let d = read(libc::CLOCK_TAI) - read(libc::CLOCK_REALTIME);
    (d + 500_000_000).div_euclid(1_000_000_000) * 1_000_000_000
}

/// An instant as the data plane's clock reads it (TAI nanoseconds), clamped to `u64`.
pub fn tai_ns(t: jiff::Timestamp, offset: i128) -> u64 {
    (t.as_nanosecond() + offset).clamp(0, i128::from(u64::MAX)) as u64
}

/// How far (in seconds, the kernel's gates minus what they should be now) the validity
/// windows in force are from the wall clock, if they are: the gates are written in TAI
/// nanoseconds with the TAI offset of the moment, and the kernel's offset changes when NTP
/// sets it (0 at boot, 37 s once chrony reads its leap-second table) or at a leap second.
/// None when no window differs.
pub fn windows_shift_s(maps: &Maps, state: &StateFile) -> Result<Option<i64>> {
    Ok(gates_vs_state(maps, state)?.0)
}

/// [`windows_shift_s`], and whether any gate in force differs from the state at all, from
/// one read of the gates.
fn gates_vs_state(maps: &Maps, state: &StateFile) -> Result<(Option<i64>, bool)> {
    let epoch = maps.config()?.epoch;
    let gates = maps.gates()?;
    let want = order_gates(state);
    let mut shift = None;
    let stale = want.iter().any(|(id, w)| gates.get(epoch, *id) != w);
    for o in &state.orders {
        let (Some(w), have) = (want.get(&o.id), gates.get(epoch, o.id)) else {
            continue;
        };
        for (h, w) in [
            (have.valid_from, w.valid_from),
            (have.valid_until, w.valid_until),
        ] {
            if h != w && w != 0 && w != u64::MAX {
                let d = (i128::from(h) - i128::from(w)) / 1_000_000_000;
                shift = Some(d as i64);
            }
        }
    }
    Ok((shift, stale))
}

/// The gate of every order of `state`, by id (see [`blocker_common::OrderGate`]).
pub fn order_gates(state: &StateFile) -> BTreeMap<u16, OrderGate> {
    let ranks = state.ranks();
    let offset = tai_offset_ns();
    state
        .orders
        .iter()
        .map(|o| {
            let gate = OrderGate {
                rank: ranks.get(&o.id).copied().unwrap_or(u16::MAX),
                mode: if o.shadow { MODE_SHADOW } else { 0 },
                override_action: o.override_action.map_or(0, |a| a as u8),
                jurisdictions: state.jurisdiction_mask(o),
                valid_from: o.valid_from.map_or(0, |t| tai_ns(t, offset)),
                valid_until: o.valid_until.map_or(u64::MAX, |t| tai_ns(t, offset)),
                _reserved: 0,
            };
            (o.id, gate)
        })
        .collect()
}

/// For tests of crash recovery: `BLOCKER_TEST_CRASH_AT=PHASE` aborts the process (as a
/// SIGKILL would) at that point of a change — `journal` (journal written, nothing else),
/// `wide` (a batch of wide entries written, its inline values not yet), `inactive` (the
/// changed names and the staged state written), `flip` (the data plane
/// switched, the state not committed), `commit` (committed, names without rules not yet
/// deleted, the orders' other copy not yet caught up).
pub(crate) fn crash_point(phase: &str) {
    if std::env::var("BLOCKER_TEST_CRASH_AT").is_ok_and(|p| p == phase) {
        eprintln!("blocker: crash injected at `{phase}` (BLOCKER_TEST_CRASH_AT)");
        std::process::abort();
    }
}

/// Writes what `f` makes of each of `diffs` into the rule map; a large change is written by
/// two threads, each half on its own (the kernel's hash map takes concurrent updates).
fn write_split<F>(map: &crate::kernel::RuleMap, diffs: &[Diff], f: F) -> crate::kernel::Result<()>
where
    F: Fn(&Diff) -> Option<(RuleKey, RuleValue)> + Sync,
{
    if diffs.len() < 100_000 {
        return map.update_batch(diffs.iter().filter_map(&f));
    }
    let (a, b) = diffs.split_at(diffs.len() / 2);
    std::thread::scope(|s| {
        let second = s.spawn(|| map.update_batch(b.iter().filter_map(&f)));
        let first = map.update_batch(a.iter().filter_map(&f));
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

/// The kernel's view of an order's EDE.
pub fn order_info(o: &Order) -> OrderInfo {
    let mut info = OrderInfo {
        ede_code: o.ede_code,
        ..Default::default()
    };
    let text = o.ede_text.as_bytes();
    let n = text.len().min(MAX_EDE_TEXT);
    info.ede_text[..n].copy_from_slice(&text[..n]);
    info.text_len = n as u8;
    let soa = o.soa_wire();
    if soa.len() <= blocker_common::MAX_SOA {
        info.soa[..soa.len()].copy_from_slice(&soa);
        info.soa_len = soa.len() as u8;
    }
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

#[cfg(test)]
mod tests {
    use super::capacity_for;
    use blocker_common::MAX_RULE_CAPACITY;

    #[test]
    fn capacities_are_powers_of_two_up_to_the_largest_map() {
        assert_eq!(capacity_for(0), Some(1));
        assert_eq!(capacity_for(70_000), Some(131_072));
        assert_eq!(capacity_for(131_072), Some(131_072));
        assert_eq!(capacity_for(131_073), Some(262_144));
        let max = MAX_RULE_CAPACITY as usize;
        assert_eq!(capacity_for(max), Some(MAX_RULE_CAPACITY));
        assert_eq!(capacity_for(max + 1), None);
        assert_eq!(capacity_for(usize::MAX), None);
    }
}
