//! The planner: what a change does, computed before anything is written — the rule ids
//! (kept for unchanged rules, the lowest free ones for new rules), the rules it frees and,
//! for every name whose merged rules change, the rules in force before and after it (merged
//! by [`blocker_common::policy::merge`]).

use std::collections::BTreeMap;

use blocker_common::{
    key::{key_of_canonical, KeySecret},
    policy::merge,
    RuleKey, RuleSet, Slot,
};

use super::{Candidate, Result, Summary, TxnError};
use crate::state::Rule;

/// What a change does at one name: its key and its rules before and after, in 32 bytes for
/// the names a large change is made of (a name that gains its first rule, or loses its
/// last). A plan of ten million such names holds 320 MB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Diff {
    pub(super) key: RuleKey,
    sides: Sides,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Sides {
    /// No rule before; this one after.
    Added(Slot),
    /// This one before; none after.
    Removed(Slot),
    /// Rules on both sides, or more than one on a side.
    Changed(Box<[Sets; 2]>),
}

/// The rule of a set that holds exactly one, in its first slot.
fn single(set: &RuleSet) -> Option<Slot> {
    let (first, rest) = set.slots.split_first()?;
    (!first.is_empty() && rest.iter().all(Slot::is_empty)).then_some(*first)
}

/// The set holding `slot` alone.
fn set_of(slot: Slot) -> RuleSet {
    let mut set = RuleSet::default();
    set.slots[0] = slot;
    set
}

impl Diff {
    pub(super) fn new(key: RuleKey, before: RuleSet, after: RuleSet) -> Diff {
        let sides = match (single(&before), single(&after)) {
            (None, Some(s)) if before.is_empty() => Sides::Added(s),
            (Some(s), None) if after.is_empty() => Sides::Removed(s),
            _ => Sides::Changed(Box::new([before.into(), after.into()])),
        };
        Diff { key, sides }
    }

    /// The rules at the name before the change.
    pub(super) fn before(&self) -> RuleSet {
        match &self.sides {
            Sides::Added(_) => RuleSet::default(),
            Sides::Removed(s) => set_of(*s),
            Sides::Changed(s) => s[0].set(),
        }
    }

    /// The rules at the name after the change.
    pub(super) fn after(&self) -> RuleSet {
        match &self.sides {
            Sides::Added(s) => set_of(*s),
            Sides::Removed(_) => RuleSet::default(),
            Sides::Changed(s) => s[1].set(),
        }
    }

    /// The name had no rule before the change.
    pub(super) fn is_new(&self) -> bool {
        match &self.sides {
            Sides::Added(_) => true,
            Sides::Removed(_) => false,
            Sides::Changed(s) => s[0].is_empty(),
        }
    }

    /// The name has no rule after the change.
    pub(super) fn is_gone(&self) -> bool {
        match &self.sides {
            Sides::Added(_) => false,
            Sides::Removed(_) => true,
            Sides::Changed(s) => s[1].is_empty(),
        }
    }

    /// The rules after the change fit the inline slots (none at all do).
    pub(super) fn fits_inline_after(&self) -> bool {
        match &self.sides {
            Sides::Added(_) | Sides::Removed(_) => true,
            Sides::Changed(s) => s[1].fits_inline(),
        }
    }
}

/// The rules at one name as a plan carries them: inline when they fit, as `BLK_RULES` holds
/// them (24 bytes), else boxed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sets {
    Inline(blocker_common::InlineSet),
    Wide(Box<RuleSet>),
}

impl Sets {
    /// The whole set.
    fn set(&self) -> RuleSet {
        match self {
            Sets::Inline(i) => i.widen(),
            Sets::Wide(w) => **w,
        }
    }

    /// No rule at the name.
    fn is_empty(&self) -> bool {
        match self {
            Sets::Inline(i) => i.slots.iter().all(Slot::is_empty),
            Sets::Wide(w) => w.is_empty(),
        }
    }

    /// The rules fit in the inline slots.
    fn fits_inline(&self) -> bool {
        matches!(self, Sets::Inline(_))
    }
}

impl From<RuleSet> for Sets {
    fn from(set: RuleSet) -> Sets {
        match set.fits_inline() {
            true => Sets::Inline(set.inline()),
            false => Sets::Wide(Box::new(set)),
        }
    }
}

/// The rules `order` has after a change.
pub(super) fn rules_after<'a>(
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
pub(super) struct Plan {
    /// Bit set of the rule ids the change frees (their rules are gone).
    pub(super) freed: Vec<u64>,
    /// (key, rules before, rules after) of every name whose merged rules change, by key.
    pub(super) diffs: Vec<Diff>,
    /// One more than the highest id the plan gave a new rule (0: none): the capacity the
    /// change needs, old rules' ids being below the map's capacity already.
    pub(super) ids_needed: u32,
    /// The ids the plan gave new rules (none of them held by a rule before the change).
    pub(super) assigned: Vec<u32>,
}

/// A set of ids, one bit each.
pub(super) fn bit(set: &[u64], id: u32) -> bool {
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
pub(super) fn keys_of(secret: &KeySecret, rules: &[Rule]) -> Vec<RuleKey> {
    crate::in_two_halves(rules, 100_000, |rs: &[Rule]| {
        rs.iter()
            .map(|r| key_of_canonical(secret, r.name.canonical()))
            .collect()
    })
}

/// Side of a rule list in a [`Plan`]: rules in force before the change, after it, or both.
const BEFORE: u8 = 1;
const AFTER: u8 = 2;

/// A list of rules in a [`Plan`]: (order, side, rules).
type List<'a> = (u16, u8, &'a [Rule]);

/// One rule in the sorted index of a [`Plan`] — or, once the rules of its name are merged,
/// the name's difference, written over the index as it is read ([`merge_groups`]): a plan
/// holds 32 bytes a rule at its peak, not an index and the differences beside it.
#[derive(Clone)]
struct Entry {
    key: RuleKey,
    body: Body,
}

#[derive(Clone)]
enum Body {
    Rule(At),
    Merged(Sides),
}

/// Where an entry's rule is.
#[derive(Clone, Copy)]
struct At {
    /// Index of the rule in its list.
    idx: u32,
    /// Index of the list.
    list: u16,
    kind: u8,
}

impl Entry {
    /// Rule `idx` of list `list`, keyed `key`.
    fn rule(key: RuleKey, list: usize, idx: usize, r: &Rule) -> Entry {
        Entry {
            key,
            body: Body::Rule(At {
                idx: idx as u32,
                list: list as u16,
                kind: r.kind as u8,
            }),
        }
    }

    /// Where the rule is (None once merged).
    fn at(&self) -> Option<At> {
        match self.body {
            Body::Rule(a) => Some(a),
            Body::Merged(_) => None,
        }
    }
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

/// Appends to `entries` one entry for each of `rules` (list `list`), keyed under `secret`:
/// the keys computed on two threads for large lists, each writing its half in place.
fn push_entries(entries: &mut Vec<Entry>, secret: &KeySecret, list: usize, rules: &[Rule]) {
    let start = entries.len();
    let blank = Entry {
        key: RuleKey::default(),
        body: Body::Rule(At {
            idx: 0,
            list: 0,
            kind: 0,
        }),
    };
    entries.resize(start + rules.len(), blank);
    let fill = |out: &mut [Entry], rules: &[Rule], first: usize| {
        for (i, (e, r)) in out.iter_mut().zip(rules).enumerate() {
            let key = key_of_canonical(secret, r.name.canonical());
            *e = Entry::rule(key, list, first + i, r);
        }
    };
    let out = &mut entries[start..];
    if rules.len() < 100_000 {
        return fill(out, rules, 0);
    }
    let half = rules.len() / 2;
    let (oa, ob) = out.split_at_mut(half);
    let (ra, rb) = rules.split_at(half);
    std::thread::scope(|s| {
        s.spawn(|| fill(ob, rb, half));
        fill(oa, ra, 0);
    });
}

fn entries_of(list: usize, rules: &[Rule], keys: Vec<RuleKey>) -> impl Iterator<Item = Entry> + '_ {
    keys.into_iter()
        .zip(rules)
        .enumerate()
        .map(move |(idx, (key, r))| Entry::rule(key, list, idx, r))
}

/// Plans a change: `replaced` holds the new rules of the orders whose rules change (empty
/// for a removed order); the other orders keep their `old` rules. The ids of `replaced` are
/// the plan's on success and meaningless after an error (plan again, or drop them).
///
/// 1. The rules of the changed orders, before and after, are indexed by key and sorted.
/// 2. Each new rule takes the id of the same (name, match kind) among its order's old rules;
///    the others get the lowest ids not in use before or after the change (old and new rules
///    coexist until the switch), in rule order. Counts rules added, removed and kept.
/// 3. The rules of the other orders join the index at the keys it holds, and one pass over
///    the index merges each name's candidates before and after.
pub(super) fn plan(
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
        push_entries(&mut entries, secret, i, rules);
    }
    entries.sort_unstable_by_key(|e| e.key);

    // 2. Ids kept, written into the new rules (FRESH: none yet); freed old ids. The index
    // refers to lists by number: (order, side, length) of each is all this step needs.
    let meta: Vec<(u16, u8, usize)> = lists.iter().map(|(o, s, r)| (*o, *s, r.len())).collect();
    drop(lists);
    for r in replaced.values_mut().flatten() {
        r.id = FRESH;
    }
    // A BEFORE list of an order holds its old rules.
    let old_id = |order: u16, idx: u32| {
        old.get(&order)
            .and_then(|rs| rs.get(idx as usize))
            .map(|r| r.id)
    };
    let mut kept_by_list = vec![0usize; meta.len()];
    let mut changed_by_list = vec![0usize; meta.len()];
    let mut freed: Vec<u64> = Vec::new();
    let mut taken: Vec<bool> = Vec::new();
    let mut group: Vec<At> = Vec::new();
    for same in entries.chunk_by(|a, b| a.key == b.key) {
        group.clear();
        group.extend(same.iter().filter_map(Entry::at));
        taken.clear();
        taken.resize(group.len(), false);
        for e in &group {
            let (order, side, _) = meta[usize::from(e.list)];
            if side != AFTER {
                continue;
            }
            let twin = group.iter().enumerate().position(|(m, o)| {
                let (o_order, o_side, _) = meta[usize::from(o.list)];
                !taken[m] && o_side == BEFORE && o_order == order && o.kind == e.kind
            });
            if let Some(m) = twin {
                taken[m] = true;
                let was = old.get(&order).and_then(|rs| rs.get(group[m].idx as usize));
                let new = replaced
                    .get_mut(&order)
                    .and_then(|rs| rs.get_mut(e.idx as usize));
                if let (Some(was), Some(r)) = (was, new) {
                    r.id = was.id;
                    kept_by_list[usize::from(e.list)] += 1;
                    if (was.action, was.qtypes, &was.local) != (r.action, r.qtypes, &r.local) {
                        changed_by_list[usize::from(e.list)] += 1;
                    }
                }
            }
        }
        for (m, o) in group.iter().enumerate() {
            let (order, side, _) = meta[usize::from(o.list)];
            if side == BEFORE && !taken[m] {
                if let Some(id) = old_id(order, o.idx) {
                    set_bit(&mut freed, id);
                }
            }
        }
    }
    for (i, (id, side, len)) in meta.iter().enumerate() {
        if *side == AFTER {
            let kept = kept_by_list[i];
            let before = old.get(id).map_or(0, Vec::len);
            summary.rules_kept += kept - changed_by_list[i];
            summary.rules_changed += changed_by_list[i];
            summary.rules_added += len - kept;
            summary.rules_removed += before - kept;
        }
    }
    let mut used: Vec<u64> = vec![0; (capacity as usize).div_ceil(64)];
    for r in old.values().flatten() {
        set_bit(&mut used, r.id);
    }
    let mut next_free = 0u32;
    let mut ids_needed = 0u32;
    let mut assigned = Vec::new();
    for r in replaced.values_mut().flatten() {
        if r.id != FRESH {
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
        assigned.push(next_free);
        ids_needed = next_free + 1;
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
        diffs: merge_groups(&lists, entries)?,
        ids_needed,
        assigned,
    })
}

/// The differences from no rules at all to `rules` (by order id): what restoring them into
/// empty maps writes.
pub(super) fn diffs_from_nothing(
    secret: &KeySecret,
    rules: &BTreeMap<u16, Vec<Rule>>,
) -> Result<Vec<Diff>> {
    let mut entries: Vec<Entry> = Vec::new();
    let lists: Vec<List<'_>> = rules
        .iter()
        .map(|(id, rs)| (*id, AFTER, rs.as_slice()))
        .collect();
    for (i, (_, _, rs)) in lists.iter().enumerate() {
        push_entries(&mut entries, secret, i, rs);
    }
    entries.sort_unstable_by_key(|e| e.key);
    merge_groups(&lists, entries)
}

/// How many entries ahead [`merge_groups`] asks for the rule an entry points to.
const PREFETCH_AHEAD: usize = 16;

/// Asks the CPU to bring `r` into its caches (a hint: no effect on what the program does).
#[inline(always)]
fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and cannot fault; `r` is a valid
    // reference anyway.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (r as *const T).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Merges the candidates of each key of the sorted `entries`, on both sides; returns the
/// differences in the entries' own memory. A name's difference is written over the first
/// entries, where every entry has been read already: a name yields at most one difference,
/// from at least one entry.
fn merge_groups(lists: &[List<'_>], mut entries: Vec<Entry>) -> Result<Vec<Diff>> {
    let mut before: Vec<Candidate<'_>> = Vec::new();
    let mut after: Vec<Candidate<'_>> = Vec::new();
    let mut written = 0;
    let mut start = 0;
    while start < entries.len() {
        // The rules an entry points to are in list order, the entries in key order: each is
        // a cache miss. Ask for the one a few entries ahead while this one is merged.
        if let Some(a) = entries.get(start + PREFETCH_AHEAD).and_then(Entry::at) {
            let (_, _, rules) = lists[usize::from(a.list)];
            if let Some(r) = rules.get(a.idx as usize) {
                prefetch(r);
            }
        }
        let key = entries[start].key;
        let end = entries[start..]
            .iter()
            .position(|e| e.key != key)
            .map_or(entries.len(), |n| start + n);
        // The usual name of a re-loaded list: its rule before and the same rule after, in
        // the same order, and nothing else: nothing changes, nothing to merge.
        if end - start == 2 {
            if let (Some(a), Some(b)) = (entries[start].at(), entries[start + 1].at()) {
                let (oa, sa, ra) = lists[usize::from(a.list)];
                let (ob, sb, rb) = lists[usize::from(b.list)];
                let same = |x: &Rule, y: &Rule| {
                    (x.id, x.kind, x.action, x.qtypes, x.local_id)
                        == (y.id, y.kind, y.action, y.qtypes, y.local_id)
                };
                if oa == ob
                    && matches!((sa, sb), (BEFORE, AFTER) | (AFTER, BEFORE))
                    && same(&ra[a.idx as usize], &rb[b.idx as usize])
                {
                    start = end;
                    continue;
                }
            }
        }
        before.clear();
        after.clear();
        for e in entries[start..end].iter().filter_map(Entry::at) {
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
        // The rules in force before fit (they are in the kernel); a change that does not fit
        // is refused whole.
        let o = merge(&before).unwrap_or_default();
        let n = merge(&after).map_err(|e| {
            let mut orders: Vec<u16> = after.iter().map(|c| c.order).collect();
            orders.dedup();
            TxnError::TooManyAtName {
                name: after
                    .first()
                    .map_or_else(String::new, |c| c.rule.name.to_string()),
                needed: e.needed,
                max: blocker_common::SLOTS,
                orders: orders
                    .iter()
                    .map(|o| format!("#{o}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        })?;
        if o != n {
            // written <= start: this group's entries are read, the ones before it merged.
            entries[written] = Entry {
                key,
                body: Body::Merged(Diff::new(key, o, n).sides),
            };
            written += 1;
        }
        start = end;
    }
    entries.truncate(written);
    // Same size and alignment: collected in place, then the index's unused room returned (a
    // re-load that changes a few names of millions).
    let mut diffs: Vec<Diff> = entries
        .into_iter()
        .filter_map(|e| match e.body {
            Body::Merged(sides) => Some(Diff { key: e.key, sides }),
            Body::Rule(_) => None,
        })
        .collect();
    diffs.shrink_to_fit();
    Ok(diffs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use blocker_common::{Action, Kind, QTYPES_ALL};

    fn rule(name: &str, kind: Kind, action: Action, id: u32) -> Rule {
        let name = blocker_lists::Name::from_presentation(name).expect("name");
        Rule {
            id,
            ..Rule::cli(name, kind, action)
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
        // Ids 0 to 6 in use at once until the switch: the capacity the change needs.
        assert_eq!(p.ids_needed, 7);
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
        let changed: Vec<RuleKey> = p.diffs.iter().map(|d| d.key).collect();
        let mut want = vec![
            key("b.example"),
            key("c.example"),
            key("d.example"),
            key("e.example"),
        ];
        want.sort();
        assert_eq!(changed, want, "a.example is unchanged");
        let c = p
            .diffs
            .iter()
            .find(|d| d.key == key("c.example"))
            .expect("c");
        // Before: order 1's exact rule and order 2's allow rule; after: order 1's subtree
        // rule (here and below) and order 2's allow rule.
        use blocker_common::{SLOT_BELOW, SLOT_HERE};
        let (before, after) = (c.before(), c.after());
        assert_eq!(before.of(2, SLOT_HERE).map(|s| s.action), Some(Pass as u8));
        assert_eq!(after.of(2, SLOT_HERE).map(|s| s.action), Some(Pass as u8));
        assert_eq!(before.of(1, SLOT_HERE).map(|s| s.rule_id), Some(2));
        assert_eq!(
            after.of(1, SLOT_BELOW).map(|s| (s.order_id, s.rule_id)),
            Some((1, 5))
        );
        let b = p
            .diffs
            .iter()
            .find(|d| d.key == key("b.example"))
            .expect("b");
        assert_eq!(b.after(), RuleSet::default(), "b.example is gone");
        assert!(b.is_gone() && !b.is_new() && b.fits_inline_after());
        let d = p
            .diffs
            .iter()
            .find(|d| d.key == key("d.example"))
            .expect("d");
        assert!(d.is_new() && !d.is_gone() && d.before().is_empty());
    }

    /// A plan's difference stays small: what ten million names cost while a change is made.
    /// Every shape of the two sides comes back whole.
    #[test]
    fn a_difference_takes_32_bytes_and_keeps_every_set() {
        assert_eq!(std::mem::size_of::<Diff>(), 32);
        // An index entry is a difference's size: the differences are written over the index.
        assert_eq!(std::mem::size_of::<Entry>(), 32);
        let mut wide = RuleSet::default();
        for (i, s) in wide.slots.iter_mut().enumerate() {
            s.rule_id = i as u32 + 1;
            s.order_id = i as u16;
            s.action = Action::Nxdomain as u8;
            s.flags = blocker_common::SLOT_HERE;
            s.qtypes = QTYPES_ALL;
        }
        let mut narrow = RuleSet::default();
        narrow.slots[..2].copy_from_slice(&wide.slots[..2]);
        let mut other = RuleSet::default();
        other.slots[0] = wide.slots[5];
        let none = RuleSet::default();
        let mut second = RuleSet::default();
        second.slots[1] = wide.slots[3];
        let k = key("x.example");
        let all = [none, narrow, other, second, wide];
        for before in all {
            for after in all {
                let d = Diff::new(k, before, after);
                assert_eq!((d.key, d.before(), d.after()), (k, before, after));
                assert_eq!(d.is_new(), before.is_empty());
                assert_eq!(d.is_gone(), after.is_empty());
                assert_eq!(d.fits_inline_after(), after.fits_inline());
            }
        }
        // A name gaining or losing its one rule is held inline; anything else boxed.
        assert!(matches!(Diff::new(k, none, other).sides, Sides::Added(_)));
        assert!(matches!(Diff::new(k, other, none).sides, Sides::Removed(_)));
        for (b, a) in [
            (none, narrow),
            (none, second),
            (other, other),
            (narrow, none),
        ] {
            assert!(matches!(Diff::new(k, b, a).sides, Sides::Changed(_)));
        }
    }

    /// A re-load: names whose rule is the same before and after change nothing; a rule that
    /// keeps its id but changes its action, query types or local data does change its name.
    #[test]
    fn a_reload_changes_only_the_names_whose_rules_differ() {
        use Action::*;
        use Kind::*;
        let mut old = BTreeMap::new();
        old.insert(
            1u16,
            vec![
                rule("a.example", Exact, Nxdomain, 0),
                rule("b.example", Exact, Nxdomain, 1),
                rule("c.example", Exact, Nxdomain, 2),
                rule("d.example", Exact, Nxdomain, 3),
            ],
        );
        let mut qtypes = rule("c.example", Exact, Nxdomain, 99);
        qtypes.qtypes = 1;
        let mut local = rule("d.example", Exact, Nxdomain, 99);
        local.local_id = 1;
        let mut replaced = BTreeMap::new();
        replaced.insert(
            1u16,
            vec![
                rule("a.example", Exact, Nxdomain, 99),
                rule("b.example", Exact, Refused, 99),
                qtypes,
                local,
            ],
        );
        let p = plan(&secret(), &old, &mut replaced, 100, &mut Summary::default()).expect("plan");
        let ids: Vec<u32> = replaced[&1].iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![0, 1, 2, 3], "every rule keeps its id");
        let mut changed: Vec<RuleKey> = p.diffs.iter().map(|d| d.key).collect();
        changed.sort_unstable();
        let mut want = vec![key("b.example"), key("c.example"), key("d.example")];
        want.sort_unstable();
        assert_eq!(changed, want);
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
        assert!(e.to_string().contains("holds at most 1 rules"), "{e}");
    }
}
