//! Small changes to a large order applied as edits (`Controller::apply_edit`, what `blocker
//! follow` does with an IXFR), checked against the two other ways the same rules reach the
//! kernel: replacing the order's rules whole (`Controller::apply` of the recorded rules must
//! find nothing to change) and restoring the state directory into empty maps (the same map
//! contents, the same depth mask).

use blocker::{
    state::Rule,
    txn::{Controller, OrderChange, RulesCache, MAX_DELTAS},
};
use blocker_common::{Action, Kind, RuleKey, RuleSet};
use blocker_tests::env::{Blocker, TempDir};

fn rule(name: &str, kind: Kind, action: Action) -> Rule {
    Rule::cli(
        blocker_lists::Name::from_presentation(name).expect("name"),
        kind,
        action,
    )
}

/// The rules in force at every name of the rule map, sorted.
fn dump(b: &Blocker) -> (Vec<(RuleKey, RuleSet)>, [u64; 2]) {
    let maps = blocker::kernel::Maps::open(&b.pins()).expect("maps");
    let cfg = maps.config().expect("config");
    let mut v: Vec<(RuleKey, RuleSet)> = maps.rules.entries(cfg.epoch).expect("rule map");
    v.sort_by_key(|(k, _)| *k);
    (v, cfg.depth_mask)
}

/// A tiny deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn edits_reach_the_kernel_as_a_whole_replacement_and_a_restore_would() {
    let b = Blocker::new();
    let dir = TempDir::new("blkt-edits");
    // The edited order, and another order holding some of the same names (their merged
    // rules change with the edits too).
    let base: String = (0..3000).map(|i| format!("n{i}.example\n")).collect();
    let other: String = (0..3000)
        .step_by(7)
        .map(|i| format!("n{i}.example\n"))
        .collect();
    b.ok(&[
        "rules",
        "load",
        &dir.write("base.txt", &base),
        "--order",
        "base",
    ]);
    b.ok(&[
        "rules",
        "load",
        &dir.write("other.txt", &other),
        "--order",
        "other",
        "--action",
        "drop",
    ]);

    let mut c = Controller::open(&b.pins(), &b.state_dir()).expect("controller");
    let mut cache = RulesCache::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // The order's rules as the test keeps them: (name, kind, action).
    let mut have: Vec<(String, Kind, Action)> = (0..3000)
        .map(|i| (format!("n{i}.example"), Kind::Subtree, Action::Nxdomain))
        .collect();
    let mut fresh = 0usize;
    for round in 0..(MAX_DELTAS + 4) {
        let generation = c.state.generation;
        let mut removed = Vec::new();
        let mut added = Vec::new();
        // Rules this round adds (not removed again in the same round).
        let mut pending: Vec<(String, Kind, Action)> = Vec::new();
        // Names removed, names whose action or kind changes, names added (some of them
        // known to the other order, some below others).
        for _ in 0..40 {
            let i = rng.below(have.len());
            let (name, kind, action) = have.swap_remove(i);
            removed.push((
                blocker_lists::Name::from_presentation(&name).expect("n"),
                kind,
            ));
            match rng.below(3) {
                0 => {}
                1 => {
                    let a = if action == Action::Nxdomain {
                        Action::Nodata
                    } else {
                        Action::Nxdomain
                    };
                    added.push(rule(&name, kind, a));
                    pending.push((name, kind, a));
                }
                _ => {
                    let k = if kind == Kind::Exact {
                        Kind::Below
                    } else {
                        Kind::Exact
                    };
                    if !have
                        .iter()
                        .chain(&pending)
                        .any(|(n, hk, _)| *n == name && *hk == k)
                    {
                        added.push(rule(&name, k, action));
                        pending.push((name, k, action));
                    }
                }
            }
        }
        for _ in 0..30 {
            fresh += 1;
            let name = match rng.below(3) {
                0 => format!("n{}.example", 7 * rng.below(3000 / 7)),
                1 => format!("sub.n{}.example", rng.below(3000)),
                _ => format!("new{fresh}.example"),
            };
            if have
                .iter()
                .chain(&pending)
                .any(|(n, k, _)| *n == name && *k == Kind::Exact)
            {
                continue;
            }
            added.push(rule(&name, Kind::Exact, Action::Nxdomain));
            pending.push((name, Kind::Exact, Action::Nxdomain));
        }
        have.extend(pending);
        let order = c.state.order("base").expect("order").clone();
        let expected = order.rules;
        let oid = order.id;
        let s = c
            .apply_edit(&mut cache, order, expected, (removed, added))
            .expect("edit")
            .unwrap_or_else(|| {
                panic!(
                    "round {round}: not applied as an edit ({expected} rules expected, {} held)",
                    cache.order_len(oid)
                )
            });
        assert_eq!(s.generation, generation + 1, "one generation per edit");
        let o = c.state.order("base").expect("order");
        assert_eq!(o.rules, have.len(), "round {round}");
        assert!(o.rules_deltas.len() < MAX_DELTAS, "written whole again");
    }
    // Replacing the order's rules whole with what the state directory records changes
    // nothing: the edits left the kernel as a whole replacement would have.
    let (map, mask) = dump(&b);
    let recorded = c
        .all_rules(&c.state)
        .expect("rules")
        .remove(&c.state.order("base").expect("order").id)
        .expect("base rules");
    assert_eq!(recorded.len(), have.len());
    let generation = c.state.generation;
    let order = c.state.order("base").expect("order").clone();
    let s = c
        .apply(vec![OrderChange::Put {
            order,
            rules: Some(recorded),
        }])
        .expect("apply");
    assert_eq!(
        (s.names_changed, s.generation),
        (0, generation),
        "nothing to change"
    );
    assert_eq!(dump(&b), (map.clone(), mask));
    drop(c);

    // Restored into empty maps from the state directory: the same contents.
    std::fs::remove_dir_all(&b.bpffs).expect("empty the BPF filesystem");
    let c = Controller::open(&b.pins(), &b.state_dir()).expect("restore");
    assert_eq!(c.state.generation, generation);
    drop(c);
    assert_eq!(dump(&b), (map, mask));
}
