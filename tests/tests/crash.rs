//! Deterministic crash tests: the controller aborted (as SIGKILL would) at every phase of a list
//! replacement that also changes the order's EDE text (`BLOCKER_TEST_CRASH_AT`, see
//! blocker-userspace's txn/controller.rs). After the next command recovers, the data plane must enforce
//! the whole old list with the old text (crash before the flip) or the whole new list with the
//! new text (crash after it) — probed name by name through the real program — and the
//! controller's record must agree with what is enforced.

use std::os::fd::AsFd;

use blocker_tests::{
    dns,
    env::{Blocker, TempDir},
    packet::{self, Frame},
    testrun::{action_name, test_run, XDP_PASS, XDP_TX},
};
use hickory_proto::rr::RecordType;

const OLD_TEXT: &str = "Old order, RG 1/2026";
const NEW_TEXT: &str = "New order, RG 2/2026";
/// Names only the old list has, only the new one, and both.
const N: usize = 150;

fn names(tag: &str) -> Vec<String> {
    (0..N).map(|i| format!("n{i}.{tag}.test")).collect()
}

/// What the real program does with a query for `name`: None (passed) or the EDE text of its
/// NXDOMAIN answer.
fn probe(prog: &aya::programs::Xdp, name: &str) -> Option<String> {
    let q = dns::query(7, &format!("{name}."), RecordType::A, Some((false, vec![])));
    let out = test_run(prog.fd().expect("fd").as_fd(), &Frame::v4(q).bytes(), 1).expect("test run");
    match out.retval {
        XDP_PASS => None,
        XDP_TX => {
            let a = packet::parse(&out.data).expect("answer frame");
            let d = dns::parse(&a.dns);
            assert_eq!(d.rcode, 3, "{name}: NXDOMAIN");
            Some(d.ede.first().map(|(_, t)| t.clone()).unwrap_or_default())
        }
        v => panic!("{name}: {}", action_name(v)),
    }
}

fn crash_at(phase: &str, after_flip: bool) {
    let b = Blocker::new();
    let dir = TempDir::new("blkt-crash");
    let (old, new, shared) = (names("old"), names("new"), names("shared"));
    let list = |a: &[String]| -> String {
        let text: String = a.iter().chain(&shared).map(|n| format!("{n}\n")).collect();
        dir.write(&format!("{}.txt", a[0]), &text)
    };
    let (old_list, new_list) = (list(&old), list(&new));
    b.ok(&[
        "rules",
        "load",
        &old_list,
        "--order",
        "court",
        "--ede-text",
        OLD_TEXT,
    ]);
    // Hundreds of probes from one address: no response rate limiting.
    b.ok(&["config", "set", "--rrl-rate", "0"]);

    b.crashes_at(
        phase,
        &[
            "rules",
            "load",
            &new_list,
            "--order",
            "court",
            "--ede-text",
            NEW_TEXT,
        ],
    );

    // The next command recovers.
    let status: serde_json::Value =
        serde_json::from_str(&b.ok(&["status", "--json"])).expect("status json");
    let prog = blocker::kernel::pinned_program(&b.pins(), false).expect("program");
    let (on, off, text) = if after_flip {
        (&new, &old, NEW_TEXT)
    } else {
        (&old, &new, OLD_TEXT)
    };
    for n in on.iter().chain(&shared) {
        assert_eq!(
            probe(&prog, n).as_deref(),
            Some(text),
            "{phase}: {n} must be blocked with the {} text",
            if after_flip { "new" } else { "old" }
        );
    }
    for n in off {
        assert_eq!(probe(&prog, n), None, "{phase}: {n} must pass");
    }
    // The record agrees with what is enforced: the same rules, the same text, the same
    // generation as the kernel.
    let orders: serde_json::Value =
        serde_json::from_str(&b.ok(&["orders", "list", "--json"])).expect("orders json");
    let court = orders
        .as_array()
        .and_then(|a| a.iter().find(|o| o["name"] == "court"))
        .unwrap_or_else(|| panic!("no order: {orders}"));
    assert_eq!(
        court["rules"].as_u64(),
        Some(2 * N as u64),
        "{phase}: {court}"
    );
    assert_eq!(court["ede_text"].as_str(), Some(text), "{phase}: {court}");
    assert_eq!(
        status["kernel_generation"], status["generation"],
        "{phase}: kernel and record agree: {status}"
    );
    // A change that touches none of these names leaves what they enforce as it is: the
    // interrupted change's writes are gone, not waiting for the next flip.
    b.ok(&["rules", "add", "elsewhere.test", "--order", "other"]);
    for n in on.iter().chain(&shared) {
        assert_eq!(probe(&prog, n).as_deref(), Some(text), "{phase}, next: {n}");
    }
    for n in off {
        assert_eq!(probe(&prog, n), None, "{phase}, next: {n} must pass");
    }
    // And the next change works from there.
    b.ok(&[
        "rules",
        "load",
        &new_list,
        "--order",
        "court",
        "--ede-text",
        NEW_TEXT,
    ]);
    for n in new.iter().chain(&shared) {
        assert_eq!(probe(&prog, n).as_deref(), Some(NEW_TEXT), "after: {n}");
    }
    for n in &old {
        assert_eq!(probe(&prog, n), None, "after: {n}");
    }
}

#[test]
fn crash_after_the_journal_rolls_back() {
    crash_at("journal", false);
}

#[test]
fn crash_after_the_changed_names_are_written_rolls_back() {
    crash_at("inactive", false);
}

#[test]
fn crash_after_the_flip_rolls_forward() {
    crash_at("flip", true);
}

#[test]
fn crash_after_the_commit_rolls_forward() {
    crash_at("commit", true);
}

/// A rule removed by a change that crashes after its commit, before the removed rules'
/// counters are zeroed: the next rule given the freed id starts from zero hits all the same
/// (the oracle: the queries this test sent for each name).
#[test]
fn a_new_rule_on_a_freed_id_starts_from_zero_after_a_crash() {
    let b = Blocker::new();
    b.ok(&["rules", "add", "gone.test", "--order", "court"]);
    b.ok(&["config", "set", "--rrl-rate", "0"]);
    let prog = blocker::kernel::pinned_program(&b.pins(), false).expect("program");
    for _ in 0..3 {
        assert!(probe(&prog, "gone.test").is_some());
    }
    b.crashes_at(
        "commit",
        &["rules", "remove", "gone.test", "--order", "court"],
    );
    b.ok(&["status"]);
    b.ok(&["rules", "add", "new.test", "--order", "court"]);
    assert!(probe(&prog, "new.test").is_some());
    assert_eq!(
        b.rule_hits(),
        std::collections::BTreeMap::from([("new.test".to_string(), 1)])
    );
}
