//! Block events name the rule and order that were in force when the query was blocked, even
//! when the list changed (and rule ids were reused) before the event was read.

use std::os::fd::AsFd;

use blocker_tests::{
    dns,
    env::{Blocker, TempDir},
    packet::Frame,
    testrun::{test_run, XDP_TX},
};
use hickory_proto::rr::RecordType;

fn block(b: &Blocker, name: &str) {
    let prog = blocker::kernel::pinned_program(&b.pins(), false).expect("program");
    let q = dns::query(9, name, RecordType::A, None);
    let out = test_run(prog.fd().expect("fd").as_fd(), &Frame::v4(q).bytes(), 1).expect("run");
    assert_eq!(out.retval, XDP_TX, "{name} blocked");
}

fn rule_ids(b: &Blocker) -> Vec<(String, u64)> {
    let v: serde_json::Value =
        serde_json::from_str(&b.ok(&["rules", "list", "--json"])).expect("json");
    v.as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().expect("name").to_string(),
                r["id"].as_u64().expect("id"),
            )
        })
        .collect()
}

#[test]
fn events_name_the_rules_of_their_own_generation() {
    let b = Blocker::new();
    let dir = TempDir::new("blkt-events");
    let a = dir.write("a.txt", "first.court-a.test\nsecond.court-a.test\n");
    b.ok(&["rules", "load", &a, "--order", "court-a", "--ede-text", "A"]);
    b.ok(&["config", "set", "--events-every", "1"]);
    let before = rule_ids(&b);
    block(&b, "www.second.court-a.test.");

    // The list is replaced before anyone reads the event: the rule ids come back for other
    // names.
    b.ok(&["orders", "remove", "court-a"]);
    let bl = dir.write("b.txt", "one.court-b.test\ntwo.court-b.test\n");
    b.ok(&[
        "rules",
        "load",
        &bl,
        "--order",
        "court-b",
        "--ede-text",
        "B",
    ]);
    let after = rule_ids(&b);
    let id_of_second = before
        .iter()
        .find(|(n, _)| n == "second.court-a.test")
        .expect("rule")
        .1;
    assert!(
        after.iter().any(|(_, id)| *id == id_of_second),
        "the test needs the id to be reused: before {before:?}, after {after:?}"
    );
    block(&b, "one.court-b.test.");

    let out = b.ok(&["events", "--count", "2", "--duration", "5"]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["order"], "court-a", "{out}");
    assert_eq!(lines[0]["rule"], "second.court-a.test", "{out}");
    assert_eq!(lines[1]["order"], "court-b", "{out}");
    assert_eq!(lines[1]["rule"], "one.court-b.test", "{out}");
    assert_ne!(lines[0]["generation"], lines[1]["generation"], "{out}");
}
