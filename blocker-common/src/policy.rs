//! The rules at one name as the data plane reads them. The controller merges every name's
//! rules with [`merge`] into the [`RuleSet`] the data plane reads, and `blocker explain` uses
//! the same function. Which rule decides a query is [`crate::dns::decide`]'s: the order of
//! lowest rank, among those in force for the client, that has a rule for the query (its most
//! specific one).
//!
//! Generic over the rule type ([`PolicyRule`]), so this crate stays `no_std` and knows
//! nothing of the controller's rule records.

use crate::maps::{Action, Kind, RuleSet, Slot, SLOTS, SLOT_BELOW, SLOT_HERE};

/// What the policy needs to know about a rule.
pub trait PolicyRule {
    /// The rule's id (its hit counter).
    fn id(&self) -> u32;
    fn kind(&self) -> Kind;
    fn action(&self) -> Action;
    /// Set of [`crate::qtype_bit`]s the rule applies to.
    fn qtypes(&self) -> u16;
    /// The id of the rule's local data (its answer's records, in `BLK_LOCAL`); 0: none.
    fn local(&self) -> u16 {
        0
    }
}

/// A rule candidate at one name: the rule and the order it belongs to.
#[derive(Debug)]
pub struct Candidate<'a, R> {
    pub order: u16,
    pub rule: &'a R,
}

// Derives would require `R: Clone`/`R: Copy`; a candidate only holds a reference.
impl<R> Clone for Candidate<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R> Copy for Candidate<'_, R> {}

/// The positions a rule of this kind applies in.
pub fn positions(kind: Kind) -> u8 {
    match kind {
        Kind::Exact => SLOT_HERE,
        Kind::Subtree => SLOT_HERE | SLOT_BELOW,
        Kind::Below => SLOT_BELOW,
    }
}

/// A name holds rules of more orders than a [`RuleSet`] has slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow {
    /// Slots the name would need.
    pub needed: usize,
}

/// The slots of one name, from all candidates at that name: one slot per order and match kind,
/// by order id, and within an order exact, then subtree, then below (the data plane takes the
/// first slot of an order that applies, so at the name itself an exact rule comes before a
/// subtree rule of the same order, and a subtree rule still applies to the query types the
/// exact rule does not cover). Two rules of one order and kind at one name: the older one
/// (lower id). Which order decides is not settled here but per query, by the data plane
/// ([`crate::dns::decide`]): it depends on the orders' precedence, windows and jurisdictions.
pub fn merge<R: PolicyRule>(cands: &[Candidate<'_, R>]) -> Result<RuleSet, Overflow> {
    // Most names hold a rule or two: their slots are sorted straight into the set.
    let mut set = RuleSet::default();
    let n = sorted_slots(cands, &mut set.slots);
    if n <= SLOTS {
        return Ok(set);
    }
    // Every (order, kind) slot, sorted; more than CAP is an overflow whatever is merged.
    const CAP: usize = 4 * SLOTS;
    let mut all = [Slot::default(); CAP];
    let n = sorted_slots(cands, &mut all);
    if n > CAP {
        return Err(Overflow { needed: n });
    }
    let n = fold_exact_and_below(&mut all, n);
    if n > SLOTS {
        return Err(Overflow { needed: n });
    }
    set.slots.copy_from_slice(&all[..SLOTS]);
    Ok(set)
}

/// The slots of `cands`, one per (order, kind) (the lowest rule id of each), sorted by
/// (order, kind), into `out` as far as it has room; returns how many there are in all.
fn sorted_slots<R: PolicyRule>(cands: &[Candidate<'_, R>], out: &mut [Slot]) -> usize {
    let mut n = 0usize;
    // A fixed-size, no_std selection sort over (order, kind, rule id): names hold few rules.
    let mut last: Option<(u16, u8, u32)> = None;
    loop {
        let next = cands
            .iter()
            .map(|c| (c.order, c.rule.kind() as u8, c.rule.id(), c))
            .filter(|&(o, k, id, _)| last.is_none_or(|l| (o, k, id) > l))
            .min_by_key(|&(o, k, id, _)| (o, k, id));
        let Some((o, k, id, c)) = next else { break };
        let dup = last.is_some_and(|(lo, lk, _)| lo == o && lk == k);
        last = Some((o, k, id));
        if dup {
            continue;
        }
        if let Some(slot) = out.get_mut(n) {
            *slot = Slot {
                rule_id: id,
                order_id: o,
                action: c.rule.action() as u8,
                flags: positions(c.rule.kind()),
                qtypes: c.rule.qtypes(),
                local: c.rule.local(),
            };
        }
        n += 1;
    }
    n
}

/// When a name holds more slots than fit: an order's exact and below rules that do the same
/// thing to the same query types (RPZ's `name` and `*.name` pair) become one slot for the name
/// and below it, which decides exactly as the two did (the exact rule's id counts the hits of
/// both). Returns the number of slots left, packed at the front.
fn fold_exact_and_below(all: &mut [Slot], n: usize) -> usize {
    let mut out = 0usize;
    let mut i = 0usize;
    while i < n {
        let mut slot = all[i];
        // Slots of one order are adjacent, exact before subtree before below.
        let next = all.get(i + 1).copied().filter(|_| i + 1 < n);
        if let Some(b) = next {
            if slot.flags == SLOT_HERE
                && b.flags == SLOT_BELOW
                && slot.local == b.local
                && b.order_id == slot.order_id
                && b.action == slot.action
                && b.qtypes == slot.qtypes
            {
                slot.flags |= SLOT_BELOW;
                i += 1;
            }
        }
        all[out] = slot;
        out += 1;
        i += 1;
    }
    for s in all.iter_mut().skip(out) {
        *s = Slot::default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R(u32, Kind, Action);

    impl PolicyRule for R {
        fn id(&self) -> u32 {
            self.0
        }
        fn kind(&self) -> Kind {
            self.1
        }
        fn action(&self) -> Action {
            self.2
        }
        fn qtypes(&self) -> u16 {
            0x00ff
        }
    }

    fn slots(cands: &[(u16, &R)]) -> Result<std::vec::Vec<(u16, u32, u8, u8)>, Overflow> {
        let cs: std::vec::Vec<Candidate<'_, R>> = cands
            .iter()
            .map(|&(order, rule)| Candidate { order, rule })
            .collect();
        let set = merge(&cs)?;
        Ok(set
            .slots
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| (s.order_id, s.rule_id, s.action, s.flags))
            .collect())
    }

    const H: u8 = SLOT_HERE;
    const B: u8 = SLOT_BELOW;

    #[test]
    fn one_slot_per_order_and_kind_by_order_then_kind() {
        let block = R(0, Kind::Subtree, Action::Nxdomain);
        let allow = R(7, Kind::Subtree, Action::Pass);
        let exact = R(3, Kind::Exact, Action::Refused);
        let below = R(4, Kind::Below, Action::Drop);
        let n = Action::Nxdomain as u8;
        assert_eq!(
            slots(&[(9, &allow), (2, &below), (2, &block), (2, &exact)]),
            Ok(std::vec![
                (2, 3, Action::Refused as u8, H),
                (2, 0, n, H | B),
                (2, 4, Action::Drop as u8, B),
                (9, 7, Action::Pass as u8, H | B),
            ])
        );
        assert_eq!(slots(&[]), Ok(std::vec![]));
    }

    #[test]
    fn the_older_of_two_rules_of_one_order_and_kind() {
        let a = R(9, Kind::Subtree, Action::Nxdomain);
        let b = R(2, Kind::Subtree, Action::Refused);
        assert_eq!(
            slots(&[(1, &a), (1, &b)]),
            Ok(std::vec![(1, 2, Action::Refused as u8, H | B)])
        );
    }

    #[test]
    fn more_orders_than_slots_is_an_overflow() {
        let r = R(0, Kind::Subtree, Action::Nxdomain);
        let four: std::vec::Vec<(u16, &R)> = (0..SLOTS as u16).map(|o| (o, &r)).collect();
        assert_eq!(slots(&four).map(|v| v.len()), Ok(SLOTS));
        let five: std::vec::Vec<(u16, &R)> = (0..=SLOTS as u16).map(|o| (o, &r)).collect();
        assert_eq!(slots(&five), Err(Overflow { needed: SLOTS + 1 }));
    }

    #[test]
    fn a_crowded_name_folds_exact_and_below_pairs_that_agree() {
        let exact = R(1, Kind::Exact, Action::Nxdomain);
        let below = R(2, Kind::Below, Action::Nxdomain);
        let below_other = R(3, Kind::Below, Action::Nodata);
        let n = Action::Nxdomain as u8;
        // Room enough: two slots for each pair, nothing folded.
        let fit: std::vec::Vec<(u16, &R)> = (0..(SLOTS / 2) as u16)
            .flat_map(|o| [(o, &exact), (o, &below)])
            .collect();
        assert_eq!(slots(&fit).map(|v| v.len()), Ok(SLOTS));
        // One order more than fits with an RPZ `name` and `*.name` pair each: the pairs that
        // agree fold into one slot each; the last order's pair disagrees and stays two slots.
        let last = (SLOTS / 2) as u16;
        let mut crowded: std::vec::Vec<(u16, &R)> =
            (0..last).flat_map(|o| [(o, &exact), (o, &below)]).collect();
        crowded.extend([(last, &exact), (last, &below_other)]);
        let mut want: std::vec::Vec<(u16, u32, u8, u8)> =
            (0..last).map(|o| (o, 1, n, H | B)).collect();
        want.extend([(last, 1, n, H), (last, 3, Action::Nodata as u8, B)]);
        assert_eq!(slots(&crowded), Ok(want));
    }

    #[test]
    fn the_slot_carries_the_rule_qtypes() {
        let r = R(0, Kind::Exact, Action::Nxdomain);
        let s = merge(&[Candidate { order: 0, rule: &r }]).expect("fits");
        assert_eq!(s.slots[0].qtypes, 0x00ff);
    }
}
