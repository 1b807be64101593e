//! Orders as legal objects: the guards (public suffixes, protected names) refuse a change
//! with FILE:LINE and change nothing unless --force; the compliance record and `blocker
//! report` say when each change started and was enforced, its generation, the list files'
//! SHA-256, ticket and operator, and the kernel's hits.
//!
//! Oracles independent of blocker's code: verdicts from the real program
//! (BPF_PROG_TEST_RUN), file hashes from coreutils' `sha256sum`, times from coreutils' `date`,
//! CSV from Python's csv module.

use blocker_tests::{
    env::{must, Blocker, TempDir},
    testrun::{query_once, XDP_PASS, XDP_TX},
};

const BLOCKED: (u32, u16) = (XDP_TX, 3);
const PASSED: (u32, u16) = (XDP_PASS, 0);

/// What a refused change must leave alone: the rules and the generation.
fn snapshot(b: &Blocker) -> (String, String) {
    let status: serde_json::Value =
        serde_json::from_str(&b.ok(&["status", "--json"])).expect("json");
    (
        b.ok(&["rules", "list", "--json"]),
        status["generation"].to_string(),
    )
}

/// RPZ's policy override makes every rule of an order take its action, pass rules included:
/// allow rules on a public suffix, harmless in themselves, would block the whole suffix under
/// `--override nxdomain`. The guards judge each rule by the action it takes in force.
#[test]
fn a_policy_override_cannot_turn_allow_rules_on_a_suffix_into_blocks() {
    let b = Blocker::new();
    b.ok(&[
        "rules",
        "add",
        "co.uk",
        "--subtree",
        "--action",
        "pass",
        "--order",
        "Allow",
    ]);
    let orders = || b.ok(&["orders", "list", "--json"]);
    let before = (snapshot(&b), orders());
    let err = b.fails(&[
        "orders",
        "set",
        "--order",
        "Allow",
        "--override",
        "nxdomain",
    ]);
    for want in [
        "co.uk is a public suffix",
        "the order's policy override makes its pass rule nxdomain",
        "nothing was changed",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert_eq!(
        (snapshot(&b), orders()),
        before,
        "a refused override changes nothing"
    );
    assert_eq!(query_once(&b, "x.co.uk"), PASSED);
    // (That query counted a hit.)
    let before = (snapshot(&b), orders());
    // The same override given with the rule.
    let err = b.fails(&[
        "rules",
        "add",
        "org.uk",
        "--subtree",
        "--action",
        "pass",
        "--order",
        "Allow2",
        "--override",
        "drop",
    ]);
    assert!(err.contains("org.uk is a public suffix"), "{err}");
    assert_eq!((snapshot(&b), orders()), before);
    // An override that lets things through is no block, and accepted.
    b.ok(&["orders", "set", "--order", "Allow", "--override", "pass"]);
    // --force applies it, and the record says it was forced.
    b.ok(&[
        "orders",
        "set",
        "--order",
        "Allow",
        "--override",
        "nxdomain",
        "--force",
    ]);
    assert_eq!(query_once(&b, "x.co.uk"), BLOCKED);
    let record = std::fs::read_to_string(b.state.join("compliance.jsonl")).expect("record");
    let last: serde_json::Value =
        serde_json::from_str(record.lines().last().expect("a line")).expect("a JSON line");
    assert_eq!(last["command"], "orders set", "{last}");
    assert_eq!(last["forced"], true, "{last}");
    b.ok(&["orders", "set", "--order", "Allow", "--override", "given"]);
    assert_eq!(query_once(&b, "x.co.uk"), PASSED);
}

#[test]
fn guards_refuse_suffixes_and_protected_names_and_change_nothing() {
    let b = Blocker::new();
    b.ok(&[
        "rules",
        "add",
        "keep.example",
        "--subtree",
        "--order",
        "Base",
    ]);
    let dir = TempDir::new("blkt-guard");
    let list = dir.write(
        "order.txt",
        "# Court-G\nok.example\nco.uk\nwww.ok.example\ngithub.io\n",
    );
    let before = snapshot(&b);
    let err = b.fails(&["rules", "load", &list, "--order", "Court-G"]);
    for want in [
        format!("{list}:3: co.uk is a public suffix"),
        format!("{list}:5: github.io is a public suffix"),
        "nothing was changed".to_string(),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert!(!err.contains(":2:") && !err.contains(":4:"), "{err}");
    assert_eq!(snapshot(&b), before, "a refused load changes nothing");
    assert_eq!(query_once(&b, "ok.example"), PASSED);
    assert_eq!(query_once(&b, "www.keep.example"), BLOCKED);

    // A top-level name, a subtree over private suffixes, on the command line.
    for (args, want) in [
        (vec!["lan"], "lan is a public suffix"),
        (
            vec!["amazonaws.com", "--subtree"],
            "public suffixes below it",
        ),
        (vec!["*.com"], "com is a public suffix"),
    ] {
        let mut a = vec!["rules", "add"];
        a.extend(&args);
        let err = b.fails(&a);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(snapshot(&b), before);
    // An allow rule on a suffix is harmless, and accepted.
    b.ok(&[
        "rules",
        "add",
        "co.uk",
        "--subtree",
        "--action",
        "pass",
        "--order",
        "Allow",
    ]);

    // --force loads it all.
    let out = b.ok(&["rules", "load", &list, "--order", "Court-G", "--force"]);
    assert!(out.contains("4 rules"), "{out}");
    assert_eq!(query_once(&b, "ok.example"), BLOCKED);
    assert_eq!(query_once(&b, "x.github.io"), BLOCKED);
    // (The allow rule at co.uk wins there.)
    assert_eq!(query_once(&b, "x.co.uk"), PASSED);

    // Protected names: the name, below it, and ancestors that reach it.
    b.ok(&["protect", "add", "portal.example.net"]);
    assert_eq!(b.ok(&["protect", "list"]).trim(), "portal.example.net");
    let before = snapshot(&b);
    for args in [
        vec!["example.net", "--subtree"],
        vec!["*.example.net"],
        vec!["portal.example.net"],
        vec!["a.portal.example.net", "--subtree"],
    ] {
        let mut a = vec!["rules", "add"];
        a.extend(&args);
        a.extend(["--order", "Court-P"]);
        let err = b.fails(&a);
        assert!(
            err.contains("protected name portal.example.net"),
            "{args:?}: {err}"
        );
    }
    let plist = dir.write("p.txt", "other.example\nexample.net\n");
    let err = b.fails(&["rules", "load", &plist, "--order", "Court-P"]);
    assert!(
        err.contains(&format!(
            "{plist}:2: example.net (subtree rule) would block the protected"
        )),
        "{err}"
    );
    assert_eq!(
        snapshot(&b),
        before,
        "refused protected names change nothing"
    );
    assert_eq!(query_once(&b, "portal.example.net"), PASSED);
    assert_eq!(query_once(&b, "other.example"), PASSED);
    // An exact rule at an ancestor does not block the protected name.
    b.ok(&["rules", "add", "example.net", "--order", "Court-P"]);
    assert_eq!(query_once(&b, "example.net"), BLOCKED);
    assert_eq!(query_once(&b, "portal.example.net"), PASSED);

    // explain says which guard applies at a name.
    let e: serde_json::Value =
        serde_json::from_str(&b.ok(&["explain", "example.net", "--json"])).expect("json");
    let notes = e["guards"].as_array().expect("guards");
    assert_eq!(notes[0]["match"], "exact");
    assert!(notes[0]["refused"].is_null(), "{e}");
    assert!(
        notes[1]["refused"]
            .as_str()
            .is_some_and(|s| s.contains("portal.example.net")),
        "{e}"
    );
    let e = b.ok(&["explain", "github.io"]);
    assert!(
        e.contains("guard: a exact block rule here is refused: github.io is a public suffix"),
        "{e}"
    );

    // A list file given with --psl replaces the built-in one.
    let psl = dir.write("psl.dat", "// ===BEGIN PRIVATE DOMAINS===\ncorp.example\n");
    let err = b.fails(&["rules", "add", "corp.example", "--psl", &psl]);
    assert!(err.contains(&format!("public suffix list {psl}")), "{err}");
    b.ok(&["rules", "add", "corp.example"]);

    b.ok(&["protect", "remove", "portal.example.net"]);
    b.ok(&[
        "rules",
        "add",
        "example.net",
        "--subtree",
        "--order",
        "Court-P",
    ]);
    assert_eq!(query_once(&b, "portal.example.net"), BLOCKED);
}

/// Seconds and nanoseconds since the epoch of an RFC 3339 time, by coreutils' `date`.
fn epoch_ns(t: &str) -> u128 {
    must("date", &["-u", "-d", t, "+%s%N"])
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{t}: {e}"))
}

fn sha256sum(path: &str) -> String {
    must("sha256sum", &[path])
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}

fn generation(b: &Blocker) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["status", "--json"])).expect("json");
    v["generation"].as_u64().expect("generation")
}

#[test]
fn the_report_shows_every_change_with_its_times_generation_hashes_and_hits() {
    let b = Blocker::new();
    let dir = TempDir::new("blkt-report");
    let l1 = dir.write("l1.txt", "a.example\nb.example\n");
    let l2 = dir.write("l2.rpz", "$ORIGIN rpz.\nc.example CNAME .\n");
    let who = ["--ticket", "PS-0001", "--operator", "alice"];
    let mut gens = Vec::new();
    let mut steps: Vec<Vec<&str>> = vec![
        vec!["rules", "load", &l1, "--order", "Court-R"],
        vec!["rules", "add", "d.example", "--order", "Court-R"],
        vec!["rules", "remove", "d.example", "--order", "Court-R"],
        vec![
            "orders",
            "set",
            "--order",
            "Court-R",
            "--ede-text",
            "RG 1/2026",
        ],
        vec!["rules", "load", &l1, &l2, "--order", "Court-R"],
    ];
    for s in &mut steps {
        s.extend(who);
        b.ok(s);
        gens.push(generation(&b));
    }
    b.ok(&["protect", "add", "bank.example", "--operator", "bob"]);
    b.ok(&["rules", "add", "x.example", "--order", "Other"]);
    for _ in 0..3 {
        assert_eq!(query_once(&b, "www.a.example"), BLOCKED);
    }

    let r: serde_json::Value =
        serde_json::from_str(&b.ok(&["report", "--order", "Court-R", "--format", "json"]))
            .expect("json");
    let orders = r["orders"].as_array().expect("orders");
    assert_eq!(orders.len(), 1, "--order: {r}");
    let o = &orders[0];
    assert_eq!(o["order"], "Court-R");
    assert_eq!(o["rules"], 3);
    assert_eq!(o["hits"], 3, "the kernel's counters: {o}");
    let changes = o["changes"].as_array().expect("changes");
    let commands: Vec<&str> = changes
        .iter()
        .map(|c| c["command"].as_str().expect("command"))
        .collect();
    assert_eq!(
        commands,
        [
            "rules load",
            "rules add",
            "rules remove",
            "orders set",
            "rules load"
        ]
    );
    let mut last_enforced = 0;
    for (c, g) in changes.iter().zip(&gens) {
        assert_eq!(c["generation"].as_u64(), Some(*g), "{c}");
        assert_eq!(
            (c["ticket"].as_str(), c["operator"].as_str()),
            (Some("PS-0001"), Some("alice"))
        );
        let started = epoch_ns(c["started"].as_str().expect("started"));
        let enforced = epoch_ns(c["enforced"].as_str().expect("enforced"));
        assert!(enforced >= started, "{c}");
        assert!(started >= last_enforced, "changes in order: {c}");
        last_enforced = enforced;
        let tte = c["time_to_enforcement_s"].as_f64().expect("tte");
        let want = (enforced - started) as f64 / 1e9;
        assert!((tte - want).abs() < 1e-6, "{tte} vs {want}");
    }
    assert!(gens.windows(2).all(|w| w[1] > w[0]), "{gens:?}");
    assert_eq!(
        o["first_enforced"], changes[0]["enforced"],
        "first enforced: {o}"
    );
    assert_eq!(
        (
            changes[0]["rules_added"].as_u64(),
            changes[2]["rules_removed"].as_u64()
        ),
        (Some(2), Some(1))
    );
    let files = changes[4]["files"].as_array().expect("files");
    assert_eq!(files.len(), 2);
    for (f, p) in files.iter().zip([&l1, &l2]) {
        assert_eq!(f["path"].as_str(), Some(p.as_str()));
        assert_eq!(f["sha256"].as_str(), Some(sha256sum(p).as_str()), "{p}");
    }

    // The whole report: the protected name and the other order; --since drops older changes.
    let all: serde_json::Value =
        serde_json::from_str(&b.ok(&["report", "--format", "json"])).expect("json");
    let other = &all["other_changes"][0];
    assert_eq!(
        (
            other["command"].as_str(),
            other["name"].as_str(),
            other["operator"].as_str()
        ),
        (Some("protect add"), Some("bank.example"), Some("bob"))
    );
    assert!(other["enforced"].is_null());
    let since = changes[4]["started"].as_str().expect("started");
    let later: serde_json::Value = serde_json::from_str(&b.ok(&[
        "report", "--order", "Court-R", "--since", since, "--format", "json",
    ]))
    .expect("json");
    assert_eq!(
        later["orders"][0]["changes"].as_array().map(Vec::len),
        Some(1)
    );
    let err = b.fails(&["report", "--since", "yesterday"]);
    assert!(err.contains("--since") && err.contains("RFC 3339"), "{err}");

    // CSV, read by Python's csv module: one row per change.
    let csv = b.ok(&["report", "--format", "csv"]);
    let path = dir.write("report.csv", &csv);
    let rows = must(
        "/usr/bin/python3",
        &[
            "-c",
            "import csv,json,sys; print(json.dumps(list(csv.DictReader(open(sys.argv[1])))))",
            &path,
        ],
    );
    let rows: serde_json::Value = serde_json::from_str(&rows).expect("json");
    let rows = rows.as_array().expect("rows");
    let court: Vec<&serde_json::Value> = rows.iter().filter(|r| r["order"] == "Court-R").collect();
    assert_eq!(court.len(), 5, "{csv}");
    for (row, c) in court.iter().zip(changes) {
        assert_eq!(row["started"], c["started"]);
        assert_eq!(row["enforced"], c["enforced"]);
        assert_eq!(
            row["generation"].as_str(),
            Some(c["generation"].to_string().as_str())
        );
        assert_eq!(row["hits"], "3");
    }
    assert!(court[4]["files_sha256"]
        .as_str()
        .is_some_and(|s| s.contains(&sha256sum(&l2))));
    assert!(rows
        .iter()
        .any(|r| r["command"] == "protect add" && r["order"] == ""));

    // The table: a heading per order, a line per change with its generation.
    let table = b.ok(&["report", "--order", "Court-R"]);
    // The order's scope and window, and its hits per day, under its heading.
    assert!(
        table.contains("\n  precedence 0, enforce, clients: everywhere, valid - to - (active)\n"),
        "{table}"
    );
    assert!(table.contains("\n  hits per day: "), "{table}");
    let mut lines = table
        .lines()
        .filter(|l| !l.starts_with("  precedence ") && !l.starts_with("  hits per day: "));
    assert_eq!(
        lines.next(),
        Some(
            format!(
                "ORDER \"Court-R\": 3 rules, 3 hits, first enforced {}",
                changes[0]["enforced"].as_str().expect("enforced")
            )
            .as_str()
        ),
        "{table}"
    );
    assert!(lines
        .next()
        .is_some_and(|h| h.split_whitespace().next() == Some("COMMAND")));
    let gen_col: Vec<u64> = lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // COMMAND is two words: then STARTED, ENFORCED, TTE, GEN.
            f[5].parse().unwrap_or_else(|_| panic!("{l}"))
        })
        .collect();
    assert_eq!(gen_col, gens, "{table}");
}

/// The report tells when an order was in force, not only when commands ran: its validity
/// window opening and closing (no command at those instants) are rows of its changes and
/// set "first enforced"; a change of a jurisdiction it is scoped to is listed under it;
/// an `orders move` that renumbers it is recorded for it too.
#[test]
fn the_report_shows_window_openings_jurisdiction_changes_and_renumbering() {
    let b = Blocker::new();
    let now = jiff::Timestamp::now();
    // Room for the commands below (the first loads the program) before the window opens.
    let from = now + jiff::SignedDuration::from_secs(6);
    let until = now + jiff::SignedDuration::from_secs(8);
    b.ok(&["jurisdictions", "set", "LAB", "--prefix", "192.0.2.0/24"]);
    b.ok(&[
        "rules",
        "add",
        "w.example",
        "--order",
        "Windowed",
        "--valid-from",
        &from.to_string(),
        "--valid-until",
        &until.to_string(),
    ]);
    b.ok(&[
        "orders",
        "set",
        "--order",
        "Windowed",
        "--jurisdiction",
        "LAB",
    ]);
    b.ok(&["jurisdictions", "set", "LAB", "--prefix", "198.51.100.0/24"]);
    b.ok(&[
        "rules",
        "add",
        "first.example",
        "--order",
        "First",
        "--priority",
        "5",
    ]);
    b.ok(&["orders", "move", "First", "--after", "Windowed"]);
    while jiff::Timestamp::now() < until + jiff::SignedDuration::from_millis(300) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let report: serde_json::Value =
        serde_json::from_str(&b.ok(&["report", "--order", "Windowed", "--format", "json"]))
            .expect("json");
    let o = &report["orders"][0];
    let ts = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok());
    assert_eq!(ts(&o["first_enforced"]), Some(from), "{report}");
    let changes = o["changes"].as_array().expect("changes");
    // The commands in their order; the window's rows wherever the clock put them (a slow
    // machine may open the window before the last command), all in time order.
    let is_window = |c: &&serde_json::Value| {
        c["command"]
            .as_str()
            .is_some_and(|c| c.starts_with("window"))
    };
    let commands: Vec<&str> = changes
        .iter()
        .filter(|c| !is_window(c))
        .filter_map(|c| c["command"].as_str())
        .collect();
    assert_eq!(
        commands,
        [
            "rules add",
            "orders set",
            "jurisdictions set",
            "orders renumbered"
        ],
        "{report}"
    );
    let times: Vec<jiff::Timestamp> = changes.iter().filter_map(|c| ts(&c["enforced"])).collect();
    assert_eq!(times.len(), 6, "{report}");
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "in time order: {report}"
    );
    let changes: Vec<&serde_json::Value> = changes.iter().filter(|c| !is_window(c)).collect();
    let all = o["changes"].as_array().expect("changes");
    let at = |what: &str| {
        all.iter()
            .find(|c| c["command"] == what)
            .and_then(|c| ts(&c["enforced"]))
    };
    assert_eq!(at("window opens"), Some(from));
    assert_eq!(at("window closes"), Some(until));
    assert_eq!(changes[2]["name"], "LAB", "{report}");
    assert_eq!(changes[3]["name"], "First", "{report}");
    assert_eq!(
        changes[1]["settings"]["jurisdictions"][0], "LAB",
        "{report}"
    );
    // The table names the rows as well.
    let table = b.ok(&["report", "--order", "Windowed"]);
    assert!(
        table.contains("window opens") && table.contains("the data plane's clock"),
        "{table}"
    );
}

/// `orders list --json`: each order's (hits, shadow hits).
fn order_counts(b: &Blocker) -> std::collections::BTreeMap<String, (u64, u64)> {
    let v: serde_json::Value =
        serde_json::from_str(&b.ok(&["orders", "list", "--json"])).expect("json");
    v.as_array()
        .expect("array")
        .iter()
        .map(|o| {
            (
                o["name"].as_str().expect("name").to_string(),
                (
                    o["hits"].as_u64().expect("hits"),
                    o["shadow_hits"].as_u64().expect("shadow_hits"),
                ),
            )
        })
        .collect()
}

/// A shadow order records what it would have done and the search goes on as if it were
/// absent: every shadow order ranked ahead of the deciding one records its hit (its most
/// specific rule), not only the first; one ranked after the decider records nothing. At most
/// four are recorded per query (README, "Shadow mode"). Verdicts from the real program, counts
/// from the kernel's counters.
#[test]
fn every_shadow_order_ahead_of_the_decider_records_its_hit() {
    let b = Blocker::new();
    // Precedence is the order of creation: Trial-A, Trial-B, Court, Trial-C.
    for (name, order, extra) in [
        (
            "example.test",
            "Trial-A",
            vec!["--subtree", "--mode", "shadow"],
        ),
        ("www.example.test", "Trial-B", vec!["--mode", "shadow"]),
        ("example.test", "Court", vec!["--subtree"]),
        ("www.example.test", "Trial-C", vec!["--mode", "shadow"]),
    ] {
        let mut args = vec!["rules", "add", name, "--order", order];
        args.extend(extra);
        b.ok(&args);
    }
    let shadowed = b.reason("shadowed");
    assert_eq!(query_once(&b, "www.example.test"), BLOCKED);
    let c = order_counts(&b);
    assert_eq!(c["Court"], (1, 0), "Court decides: {c:?}");
    assert_eq!(c["Trial-A"], (0, 1), "ahead of Court: {c:?}");
    assert_eq!(c["Trial-B"], (0, 1), "ahead of Court too: {c:?}");
    assert_eq!(c["Trial-C"], (0, 0), "after Court: {c:?}");
    // `explain` names both, from the same shared code on the host.
    let e: serde_json::Value =
        serde_json::from_str(&b.ok(&["explain", "www.example.test", "--json"])).expect("json");
    assert_eq!(
        e["shadows"],
        serde_json::json!([
            "subtree example.test (order \"Trial-A\")",
            "exact www.example.test (order \"Trial-B\")"
        ]),
        "{e}"
    );
    // A name only Trial-A and Court have a rule for.
    assert_eq!(query_once(&b, "cdn.example.test"), BLOCKED);
    let c = order_counts(&b);
    assert_eq!(
        (c["Court"], c["Trial-A"], c["Trial-B"]),
        ((2, 0), (0, 2), (0, 1)),
        "{c:?}"
    );
    assert_eq!(b.reason("shadowed"), shadowed, "Court decided both");

    // Five shadow orders and nothing enforced: the first four record, the query passes.
    for i in 1..=5 {
        b.ok(&[
            "rules",
            "add",
            "many.test",
            "--order",
            &format!("Trial-{i}"),
            "--mode",
            "shadow",
        ]);
    }
    assert_eq!(query_once(&b, "many.test"), PASSED);
    let c = order_counts(&b);
    let got: Vec<u64> = (1..=5).map(|i| c[&format!("Trial-{i}")].1).collect();
    assert_eq!(got, vec![1, 1, 1, 1, 0], "{c:?}");
    assert_eq!(b.reason("shadowed") - shadowed, 1);
}

/// Shadow recording on the real program against a model written here from the README's
/// words: orders in ascending priority; those with a rule matching the query; each in shadow
/// mode before the first enforced one records a hit (at most four); the first enforced one
/// decides. Random priorities, modes and rules (an exact rule at a.r.test, or a subtree rule
/// at r.test or a.r.test) over six orders, several rounds, two query names each.
#[test]
fn shadow_records_follow_a_model_over_random_orders() {
    let mut seed: u64 = 0x5eed_0bad;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for round in 0..6 {
        let b = Blocker::new();
        // (name, priority, shadow, rule name, subtree)
        let mut orders = Vec::new();
        let mut priorities: Vec<u64> = (1..=6).map(|p| p * 10).collect();
        for i in 0..6 {
            let p = priorities.remove(next(priorities.len() as u64) as usize);
            let shadow = next(3) != 0;
            let (rule, subtree) = match next(3) {
                0 => ("a.r.test", false),
                1 => ("a.r.test", true),
                _ => ("r.test", true),
            };
            let name = format!("O{i}");
            let prio = p.to_string();
            let mut args = vec!["rules", "add", rule, "--order", &name, "--priority", &prio];
            if subtree {
                args.push("--subtree");
            }
            if shadow {
                args.extend(["--mode", "shadow"]);
            }
            b.ok(&args);
            orders.push((name, p, shadow, rule, subtree));
        }
        orders.sort_by_key(|o| o.1);
        for query in ["a.r.test", "x.a.r.test"] {
            let before = order_counts(&b);
            let verdict = query_once(&b, query);
            let after = order_counts(&b);
            // The model.
            let mut want_shadow = Vec::new();
            let mut decider = None;
            for (name, _, shadow, rule, subtree) in &orders {
                let matches = query == *rule || (*subtree && query.ends_with(&format!(".{rule}")));
                if !matches {
                    continue;
                }
                if *shadow {
                    if want_shadow.len() < 4 {
                        want_shadow.push(name.clone());
                    }
                } else {
                    decider = Some(name.clone());
                    break;
                }
            }
            let got_shadow: Vec<String> = orders
                .iter()
                .filter(|o| after[&o.0].1 > before[&o.0].1)
                .map(|o| o.0.clone())
                .collect();
            let got_decider: Vec<&String> = orders
                .iter()
                .filter(|o| after[&o.0].0 > before[&o.0].0)
                .map(|o| &o.0)
                .collect();
            assert_eq!(
                got_shadow, want_shadow,
                "round {round}, {query}: shadow hits; orders {orders:?}"
            );
            assert_eq!(
                got_decider,
                decider.iter().collect::<Vec<_>>(),
                "round {round}, {query}: decider; orders {orders:?}"
            );
            assert_eq!(
                verdict,
                if decider.is_some() { BLOCKED } else { PASSED },
                "round {round}, {query}"
            );
        }
    }
}
