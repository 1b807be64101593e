//! The precedence policy: which of the rules at one name is in force, here (for the name
//! itself) and below (for names under it). The controller merges every name's rules with
//! [`merge`] into the [`RuleSet`] the data plane reads, and `blocker explain` uses the same
//! function to say which rule decides; the data plane applies what was merged.
//!
//! Generic over the rule type ([`PolicyRule`]), so this crate stays `no_std` and knows
//! nothing of the controller's rule records.

use crate::maps::{Action, Kind, RuleSet, Slot};

/// What the policy needs to know about a rule.
pub trait PolicyRule {
    /// The rule's id (its hit counter).
    fn id(&self) -> u32;
    fn kind(&self) -> Kind;
    fn action(&self) -> Action;
    /// Set of [`crate::qtype_bit`]s the rule applies to.
    fn qtypes(&self) -> u16;
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

/// Precedence among rules at the same name and position (lower sorts first, first wins):
/// an allow rule beats any block; then, for the name itself, an exact rule beats a subtree
/// rule; then the older order (lower id) wins; then the older rule.
pub fn precedence<R: PolicyRule>(c: &Candidate<'_, R>, here: bool) -> (bool, bool, u16, u32) {
    let not_allow = c.rule.action() != Action::Pass;
    let not_exact = here && c.rule.kind() != Kind::Exact;
    (not_allow, not_exact, c.order, c.rule.id())
}

fn slot_of<R: PolicyRule>(c: &Candidate<'_, R>) -> Slot {
    Slot {
        rule_id: c.rule.id(),
        order_id: c.order,
        action: c.rule.action() as u8,
        flags: 0,
        qtypes: c.rule.qtypes(),
        scope: 0,
    }
}

/// The rules in force at one name, from all candidates at that name: exact and subtree rules
/// compete for the name itself, subtree and below rules for the names under it.
pub fn merge<R: PolicyRule>(cands: &[Candidate<'_, R>]) -> RuleSet {
    let here = cands
        .iter()
        .filter(|c| matches!(c.rule.kind(), Kind::Exact | Kind::Subtree))
        .min_by_key(|c| precedence(c, true));
    let below = cands
        .iter()
        .filter(|c| matches!(c.rule.kind(), Kind::Subtree | Kind::Below))
        .min_by_key(|c| precedence(c, false));
    RuleSet {
        here: here.map(slot_of).unwrap_or_default(),
        below: below.map(slot_of).unwrap_or_default(),
    }
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

    /// (order, rule id, action) of a slot; None for an empty one.
    type Decision = Option<(u16, u32, u8)>;

    /// The decisions here and below.
    fn decided(cands: &[(u16, &R)]) -> (Decision, Decision) {
        let cs: Vec<Candidate<'_, R>> = cands
            .iter()
            .map(|&(order, rule)| Candidate { order, rule })
            .collect();
        let s = merge(&cs);
        let f = |s: Slot| (s.action != 0).then_some((s.order_id, s.rule_id, s.action));
        (f(s.here), f(s.below))
    }

    #[test]
    fn allow_beats_block_whatever_the_order() {
        let block = R(0, Kind::Subtree, Action::Nxdomain);
        let allow = R(7, Kind::Subtree, Action::Pass);
        let p = Action::Pass as u8;
        assert_eq!(
            decided(&[(0, &block), (9, &allow)]),
            (Some((9, 7, p)), Some((9, 7, p)))
        );
    }

    #[test]
    fn exact_beats_subtree_here_only() {
        let sub = R(1, Kind::Subtree, Action::Nxdomain);
        let exact = R(2, Kind::Exact, Action::Refused);
        assert_eq!(
            decided(&[(0, &sub), (5, &exact)]),
            (
                Some((5, 2, Action::Refused as u8)),
                Some((0, 1, Action::Nxdomain as u8))
            )
        );
    }

    #[test]
    fn below_rules_do_not_apply_here_and_exact_not_below() {
        let below = R(3, Kind::Below, Action::Drop);
        assert_eq!(
            decided(&[(0, &below)]),
            (None, Some((0, 3, Action::Drop as u8)))
        );
        let exact = R(4, Kind::Exact, Action::Drop);
        assert_eq!(
            decided(&[(0, &exact)]),
            (Some((0, 4, Action::Drop as u8)), None)
        );
        assert_eq!(decided(&[]), (None, None));
    }

    #[test]
    fn older_order_then_older_rule_wins() {
        let a = R(9, Kind::Subtree, Action::Nxdomain);
        let b = R(2, Kind::Subtree, Action::Refused);
        let c = R(1, Kind::Subtree, Action::Drop);
        let n = Action::Nxdomain as u8;
        // Order 1 beats order 3 although its rule id is higher.
        assert_eq!(
            decided(&[(3, &b), (1, &a)]),
            (Some((1, 9, n)), Some((1, 9, n)))
        );
        // Same order: the lower rule id.
        let d = Action::Drop as u8;
        assert_eq!(
            decided(&[(1, &a), (1, &c)]),
            (Some((1, 1, d)), Some((1, 1, d)))
        );
    }

    #[test]
    fn the_slot_carries_the_rule_qtypes() {
        let r = R(0, Kind::Exact, Action::Nxdomain);
        let s = merge(&[Candidate { order: 0, rule: &r }]);
        assert_eq!(s.here.qtypes, 0x00ff);
    }
}
