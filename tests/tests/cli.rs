//! The operator's workflow through the real CLI, against the attached program in network
//! namespaces, checked with real kdig answers: load, reload with changes, allow orders,
//! RPZ files, explain, stats, order removal, refused loads that change nothing.

use std::{io::Write, path::Path, process::Command, time::Duration};

use blocker_tests::{
    env::{kdig, Blocker, TempDir, Topology, EDGE_V4},
    util::{free_port, http_get, wait_for, KillOnDrop},
};

const Q: &[&str] = &["+retry=0", "+timeout=2", "+edns"];

/// An answer's status, EDE (code, text) and answer records (type, data).
type Outcome = (String, Option<(u16, String)>, Vec<(String, String)>);

fn status(t: &Topology, name: &str) -> Outcome {
    let r = kdig(&t.client, EDGE_V4, name, "A", Q);
    (
        r.status.unwrap_or_else(|| format!("no answer: {}", r.raw)),
        r.ede,
        r.answers,
    )
}

fn blocked_by(t: &Topology, name: &str, text: &str) {
    let (s, ede, _) = status(t, name);
    assert_eq!(s, "NXDOMAIN", "{name}");
    assert_eq!(ede, Some((16, text.to_string())), "{name}");
}

fn resolved(t: &Topology, name: &str) {
    let (s, ede, answers) = status(t, name);
    assert_eq!(
        (s.as_str(), ede),
        ("NOERROR", None),
        "{name} should reach unbound"
    );
    assert_eq!(answers.len(), 1, "{name}: unbound's answer");
}

fn rule_id(b: &Blocker, name: &str) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(&b.ok(&["rules", "list", "--json"])).expect("json");
    v.as_array()
        .expect("array")
        .iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["id"].as_u64())
        .unwrap_or_else(|| panic!("no rule {name}"))
}

fn generation(b: &Blocker) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["status", "--json"])).expect("json");
    v["generation"].as_u64().expect("generation")
}

#[test]
fn operator_workflow() {
    let mut t = Topology::new();
    let names = [
        "a.example",
        "b.example",
        "www.b.example",
        "c.example",
        "allow.b.example",
        "rpz.example",
        "www.rpz.example",
        "pass.rpz.example",
        "d.example",
    ];
    let data: Vec<String> = names
        .iter()
        .map(|n| format!("{n}. 300 IN A 192.0.2.10"))
        .collect();
    let refs: Vec<&str> = data.iter().map(String::as_str).collect();
    t.start_unbound(&refs);
    let b = Blocker::new();
    t.attach(&b, "native");
    let lists = TempDir::new("blkt-cli");

    // Load an order.
    let l1 = lists.write("o1.txt", "# order 1\na.example\nb.example\n");
    let out = b.ok(&[
        "rules",
        "load",
        &l1,
        "--order",
        "O1",
        "--ede-text",
        "Order one",
    ]);
    assert!(out.contains("2 rules"), "{out}");
    blocked_by(&t, "a.example", "Order one");
    blocked_by(&t, "www.b.example", "Order one");
    resolved(&t, "c.example");
    let id_b = rule_id(&b, "b.example");
    // The key filter is on, at its smallest size, with a bit for each of the two names (one,
    // should they share a bit).
    let st: serde_json::Value = serde_json::from_str(&b.ok(&["status", "--json"])).expect("json");
    assert_eq!(st["key_filter"]["bits"].as_u64(), Some(512), "{st}");
    let set = st["key_filter"]["set"].as_u64().expect("set");
    assert!((1..=2).contains(&set), "{st}");

    // Reload with changes: a.example leaves, c.example joins, b.example keeps its id.
    let l1b = lists.write("o1b.txt", "b.example\nc.example\n");
    let out = b.ok(&["rules", "load", &l1b, "--order", "O1"]);
    assert!(
        out.contains("1 rules added, 1 removed, 0 changed, 1 unchanged"),
        "{out}"
    );
    resolved(&t, "a.example");
    blocked_by(&t, "c.example", "Order one");
    assert_eq!(
        rule_id(&b, "b.example"),
        id_b,
        "an unchanged rule keeps its id and counter"
    );

    // An unchanged reload changes nothing, not even the generation.
    let g = generation(&b);
    b.ok(&["rules", "load", &l1b, "--order", "O1"]);
    assert_eq!(generation(&b), g);

    // A reload that only changes a rule's action says so, and the report records it: an
    // operator must be able to show when b.example went from blocked to allowed and back.
    let l1c = lists.write("o1c.txt", "@@||b.example^\nc.example\n");
    let out = b.ok(&["rules", "load", &l1c, "--order", "O1"]);
    assert!(
        out.contains("0 rules added, 0 removed, 1 changed, 1 unchanged"),
        "{out}"
    );
    resolved(&t, "b.example");
    let out = b.ok(&["rules", "load", &l1b, "--order", "O1"]);
    assert!(out.contains("1 changed, 1 unchanged"), "{out}");
    blocked_by(&t, "b.example", "Order one");
    assert_eq!(rule_id(&b, "b.example"), id_b);
    let report: serde_json::Value =
        serde_json::from_str(&b.ok(&["report", "--order", "O1", "--format", "json"]))
            .expect("json");
    let changes = report["orders"][0]["changes"].as_array().expect("changes");
    let changed: Vec<u64> = changes
        .iter()
        .filter_map(|c| c["rules_changed"].as_u64())
        .collect();
    assert_eq!(changed[changed.len() - 2..], [1, 1], "{report}");

    // An allow order exempts a name below a blocked subtree once it ranks before the block
    // order, as a passthru zone listed first does in RPZ; ranked after it, it decides nothing.
    b.ok(&[
        "rules",
        "add",
        "allow.b.example",
        "--subtree",
        "--action",
        "pass",
        "--order",
        "allow-critical",
    ]);
    blocked_by(&t, "allow.b.example", "Order one");
    b.ok(&[
        "orders",
        "set",
        "--order",
        "allow-critical",
        "--priority",
        "10",
    ]);
    resolved(&t, "allow.b.example");
    blocked_by(&t, "b.example", "Order one");

    // explain names the deciding rule and order.
    let e: serde_json::Value =
        serde_json::from_str(&b.ok(&["explain", "www.b.example", "--json"])).expect("json");
    assert_eq!(e["verdict"], "nxdomain");
    assert_eq!(e["order"], "O1");
    assert_eq!(e["kernel_agrees"], true);
    let e: serde_json::Value =
        serde_json::from_str(&b.ok(&["explain", "x.allow.b.example", "--json"])).expect("json");
    assert_eq!(e["verdict"], "pass");
    assert_eq!(e["order"], "allow-critical");
    assert_eq!(
        e["matches"].as_array().expect("matches").len(),
        2,
        "both rules are shown: {e}"
    );

    // An RPZ order with RPZ semantics.
    let zone = lists.write(
        "o2.rpz",
        "$TTL 60\n@ SOA localhost. root.localhost. 1 3600 900 604800 60\n@ NS localhost.\nrpz.example CNAME .\n*.rpz.example CNAME *.\npass.rpz.example CNAME rpz-passthru.\n32.10.2.0.192.rpz-ip CNAME .\n",
    );
    let out = b.run(&[
        "rules",
        "load",
        &zone,
        "--order",
        "RPZ-2026",
        "--ede-text",
        "RPZ order",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped 1 unsupported entries: rpz-ip"));
    blocked_by(&t, "rpz.example", "RPZ order");
    let (s, ede, answers) = status(&t, "www.rpz.example");
    assert_eq!(
        (s.as_str(), answers.len(), ede.map(|e| e.0)),
        ("NOERROR", 0, Some(16)),
        "NODATA for *.rpz.example"
    );
    resolved(&t, "pass.rpz.example");

    // A refused load changes nothing.
    let g = generation(&b);
    let before = b.ok(&["rules", "list", "--json"]);
    let bad = lists.write("bad.txt", "d.example\nbad..example\n");
    let err = b.fails(&["rules", "load", &bad, "--order", "O1"]);
    assert!(
        err.contains(&format!("{bad}:2: ")),
        "error names file and line: {err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(b.ok(&["rules", "list", "--json"]), before);
    assert_eq!(generation(&b), g);
    blocked_by(&t, "b.example", "Order one");
    resolved(&t, "d.example");
    // --skip-invalid applies the valid rest.
    b.ok(&["rules", "load", &bad, "--order", "O3", "--skip-invalid"]);
    let (s, _, _) = status(&t, "d.example");
    assert_eq!(s, "NXDOMAIN");

    // Counters: per order and per rule, as many as the queries sent.
    let s = b.stats();
    let order = |n: &str| {
        s["orders"]
            .as_array()
            .expect("orders")
            .iter()
            .find(|o| o["name"] == n)
            .cloned()
            .expect("order")
    };
    // O1: a.example, www.b.example, c.example, b.example four times (blocked, allowed while
    // its rule was a pass rule, blocked again, blocked), and allow.b.example while the allow
    // order ranked after it.
    assert_eq!(order("O1")["hits"].as_u64(), Some(8), "{s}");
    assert_eq!(order("O1")["by_action"]["pass"].as_u64(), Some(1), "{s}");
    assert_eq!(
        order("allow-critical")["by_action"]["pass"].as_u64(),
        Some(1)
    );
    let top = s["top_rules"].as_array().expect("top");
    let hb = top
        .iter()
        .find(|r| r["name"] == "b.example")
        .expect("b.example counted");
    assert_eq!(
        hb["hits"].as_u64(),
        Some(6),
        "www.b.example, allow.b.example and b.example four times, across the reloads"
    );

    // Removing an order lifts its blocks at once.
    b.ok(&["orders", "remove", "O1"]);
    resolved(&t, "b.example");
    resolved(&t, "c.example");
    let orders = b.ok(&["orders", "list"]);
    assert!(!orders.contains("O1 "), "{orders}");
}

#[test]
fn a_listing_whose_reader_goes_away_ends_quietly() {
    // `blocker rules list | head -1`, the reader gone before blocker writes: a listing ends
    // by SIGPIPE as other tools do, not with a panic and a backtrace.
    use std::os::unix::process::ExitStatusExt;
    let b = Blocker::new();
    b.ok(&["rules", "add", "a.example", "--order", "O"]);
    b.ok(&["rules", "add", "b.example", "--order", "O"]);
    for args in [
        &["rules", "list"][..],
        &["explain", "a.example"],
        &["status"],
    ] {
        let mut child = b
            .command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn blocker");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        // Ended by the signal; or, had blocker written before the pipe closed, in success.
        let quiet = out.status.signal() == Some(libc::SIGPIPE) || out.status.success();
        assert!(
            quiet && !err.contains("panicked"),
            "blocker {args:?}: {:?}\n{err}",
            out.status
        );
    }
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    let b = Blocker::new();
    let lists = TempDir::new("blkt-cli");
    let err = b.fails(&["rules", "load", "/nonexistent/list.txt", "--order", "X"]);
    assert!(err.contains("/nonexistent/list.txt"), "{err}");
    let bin = lists.write("bin.txt", "ok.example\n\u{0}\u{1}");
    let p = Path::new(&bin);
    std::fs::write(p, b"ok.example\n\xff\xfe\n").expect("write");
    let err = b.fails(&["rules", "load", &bin, "--order", "X"]);
    assert!(err.contains(":2: not UTF-8"), "{err}");
    // A block list and an allow list that disagree about a name: a conflict naming both
    // places, whichever file comes first, and nothing loaded.
    let block = lists.write("block.txt", "||both.example^\nonly.example\n");
    let allow = lists.write("allow.txt", "@@||both.example^\n");
    for files in [[&block, &allow], [&allow, &block]] {
        let err = b.fails(&["rules", "load", files[0], files[1], "--order", "X"]);
        assert!(
            err.contains(&format!("{}:1: subtree both.example", files[1]))
                && err.contains(&format!("conflicts with {}:1", files[0])),
            "{err}"
        );
    }
    let out = b.ok(&["rules", "list"]);
    assert!(!out.contains("example"), "{out}");
    let out = b.ok(&["rules", "load", &block, &block, "--order", "X"]);
    assert!(out.contains("2 rules (2 duplicates ignored)"), "{out}");
    let err = b.fails(&["rules", "add", "bad name.example"]);
    assert!(err.contains("cannot be in a host name"), "{err}");
    let err = b.fails(&["rules", "add", "x.example", "--ede-text", &"x".repeat(65)]);
    assert!(err.contains("65 bytes"), "{err}");
    let err = b.fails(&["rules", "remove", "never.example", "--order", "nope"]);
    assert!(err.contains("no order named"), "{err}");
    let err = b.fails(&["config", "set", "--ede-code", "99"]);
    assert!(err.contains("16 (Censored) or 15 (Blocked)"), "{err}");
    let before = b.ok(&["config", "show", "--json"]);
    for (args, want) in [
        (
            ["--rrl-v4-prefix", "33"],
            "'33' for '--rrl-v4-prefix <LEN>': 33 is not in 0..=32",
        ),
        (["--rrl-v6-prefix", "129"], "129 is not in 0..=128"),
        (
            ["--rrl-burst", "0"],
            "'0' for '--rrl-burst <N>': 0 is not in 1..=1000000",
        ),
        (["--rrl-rate", "many"], "'many' for '--rrl-rate <N>'"),
        (["--rrl-slip", "101"], "101 is not in 0..=100"),
    ] {
        let mut a = vec!["config", "set", "--sinkhole-ttl", "7"];
        a.extend(args);
        let err = b.fails(&a);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(
        b.ok(&["config", "show", "--json"]),
        before,
        "a refused config set changes nothing"
    );
    let err = b.fails(&["attach", "--iface", "no-such-if0"]);
    assert!(err.contains("no-such-if0"), "{err}");
}

/// RPZ zones as operators write them: a load that would leave an order empty while entries
/// were skipped is refused with a summary unless --allow-empty; BIND time units load.
#[test]
fn rpz_loads_that_yield_nothing_and_bind_units() {
    let b = Blocker::new();
    let lists = TempDir::new("blkt-cli");
    b.ok(&["rules", "add", "keep.example", "--order", "Court"]);
    let before = b.ok(&["rules", "list", "--json"]);

    // Every entry skipped: rewrites keeping the query's labels (CNAME *.target, which need
    // a resolver) and an IP trigger.
    let zone = lists.write(
        "court.rpz",
        "$TTL 1h\n$ORIGIN rpz.isp.example.\n@ SOA ns. host. ( 1 3H 15M 3W 12H )\n  NS ns.\n\
         a.example CNAME *.walled.gov.example.\nb.example CNAME *.walled.gov.example.\n\
         c.example CNAME *.walled.gov.example.\nd.example CNAME *.walled.gov.example.\n\
         32.1.2.0.192.rpz-ip CNAME .\n",
    );
    let err = b.fails(&["rules", "load", &zone, "--order", "Court"]);
    assert!(
        err.contains("order \"Court\" would have no rules: all 5 entries were skipped"),
        "{err}"
    );
    assert!(
        err.contains("nothing was changed") && err.contains("--allow-empty"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "  4 unsupported (cname-rewrite): {zone}:5, {zone}:6, {zone}:7, …\n"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("  1 unsupported (rpz-ip): {zone}:9\n")),
        "{err}"
    );
    assert_eq!(
        b.ok(&["rules", "list", "--json"]),
        before,
        "nothing changed"
    );

    // Invalid entries skipped with --skip-invalid count too (every format).
    let plain = lists.write("bad.txt", "# all bad\nfoo..example\nuser@mail.example\n");
    let err = b.fails(&[
        "rules",
        "load",
        &plain,
        "--order",
        "Court",
        "--skip-invalid",
    ]);
    assert!(
        err.contains(&format!(
            "  2 invalid (--skip-invalid): {plain}:2, {plain}:3\n"
        )),
        "{err}"
    );
    assert_eq!(
        b.ok(&["rules", "list", "--json"]),
        before,
        "nothing changed"
    );

    // --allow-empty: the order is emptied, as asked.
    let out = b.ok(&["rules", "load", &zone, "--order", "Court", "--allow-empty"]);
    assert!(out.contains("order \"Court\": 0 rules"), "{out}");
    let rules: serde_json::Value =
        serde_json::from_str(&b.ok(&["rules", "list", "--json"])).expect("json");
    assert_eq!(rules.as_array().map(Vec::len), Some(0), "{rules}");

    // A zone written with BIND units loads and blocks.
    let bind = lists.write(
        "bind.rpz",
        "$TTL 1H\n$ORIGIN rpz.isp.example.\n\
         @ 1D IN SOA ns1.isp.example. hostmaster.isp.example. (\n\
         \t2026010101 ; serial\n\t3H ; refresh\n\t15M ; retry\n\t3W ; expire\n\t12H ) ; minimum\n\
         \tIN 1h NS ns1.isp.example.\n\
         bad.example 1h30m CNAME .\n\
         *.bad.example 2d IN CNAME *.\n",
    );
    let out = b.ok(&["rules", "load", &bind, "--order", "BIND"]);
    assert!(out.contains("order \"BIND\": 2 rules"), "{out}");
    let e: serde_json::Value =
        serde_json::from_str(&b.ok(&["explain", "bad.example", "--json"])).expect("json");
    assert_eq!(
        (&e["verdict"], &e["order"]),
        (&"nxdomain".into(), &"BIND".into()),
        "{e}"
    );
    let e: serde_json::Value =
        serde_json::from_str(&b.ok(&["explain", "www.bad.example", "--json"])).expect("json");
    assert_eq!(
        (&e["verdict"], &e["order"]),
        (&"nodata".into(), &"BIND".into()),
        "{e}"
    );
}

#[test]
fn refuses_non_root_and_foreign_state() {
    let b = Blocker::new();
    // Non-root: a clear message, nothing done.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&b.bin)
        .arg("--bpffs")
        .arg(&b.bpffs)
        .args(["status"])
        .output()
        .expect("setpriv");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must run as root"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A corrupt state file: a clear error naming it, and no change to the kernel.
    b.ok(&["rules", "add", "x.example"]);
    let state = b.state.join("state.json");
    let good = std::fs::read(&state).expect("state");
    std::fs::write(&state, b"{ not json").expect("corrupt");
    let err = b.fails(&["rules", "add", "y.example"]);
    assert!(err.contains("state.json is corrupt"), "{err}");
    std::fs::write(&state, good).expect("restore");
    b.ok(&["rules", "add", "y.example"]);

    // State that belongs to another program instance (generation mismatch) is refused.
    let other = Blocker::new();
    other.ok(&["rules", "add", "z.example"]);
    let out = Command::new(&b.bin)
        .arg("--bpffs")
        .arg(&other.bpffs)
        .arg("--state-dir")
        .arg(&b.state)
        .args(["rules", "add", "w.example"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not belong"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

/// Prometheus 2.x's scrape Accept header.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A blocker attached in a namespace with one subtree rule of order Court-7, after five real
/// queries (three blocked, two allowed), and `blocker serve` on a free loopback port.
struct Served {
    t: Topology,
    _b: Blocker,
    port: u16,
    _server: KillOnDrop,
}

fn serve_after_queries() -> Served {
    let mut t = Topology::new();
    t.start_unbound(&["ok.example. 300 IN A 192.0.2.10"]);
    let b = Blocker::new();
    t.attach(&b, "native");
    b.ok(&[
        "rules",
        "add",
        "bad.example",
        "--subtree",
        "--order",
        "Court-7",
    ]);
    for (name, want) in [
        ("bad.example", "NXDOMAIN"),
        ("www.bad.example", "NXDOMAIN"),
        ("cdn.bad.example", "NXDOMAIN"),
        ("ok.example", "NOERROR"),
        ("ok.example", "NOERROR"),
    ] {
        let r = kdig(&t.client, EDGE_V4, name, "A", Q);
        assert_eq!(r.status.as_deref(), Some(want), "{name}: {}", r.raw);
    }
    let port = free_port();
    let server = KillOnDrop(
        Command::new(&b.bin)
            .arg("--bpffs")
            .arg(&b.bpffs)
            .arg("--state-dir")
            .arg(&b.state)
            .args(["serve", "--metrics", &format!("127.0.0.1:{port}")])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("serve"),
    );
    wait_for("blocker serve to answer", Duration::from_secs(30), || {
        http_get(port, "/metrics", None)
    });
    Served {
        t,
        _b: b,
        port,
        _server: server,
    }
}

#[test]
fn prometheus_metrics_after_real_queries() {
    let s = serve_after_queries();
    let (t, port) = (&s.t, s.port);

    // No Accept header (curl, promtool's usual input): the Prometheus text format, declared.
    let r = http_get(port, "/metrics", None).expect("scrape");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let body = r.body;
    assert_eq!(
        metric(
            &body,
            r#"blocker_order_hits_total{order="Court-7",action="nxdomain"} "#
        ),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, r#"blocker_packets_total{reason="nxdomain"} "#),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, r#"blocker_packets_total{reason="no_match"} "#),
        Some(2.0),
        "{body}"
    );
    // Every reason has its series, the rate limiter's too (at 0: three answers are far
    // below the default limit).
    for reason in ["rrl_slipped", "rrl_dropped"] {
        assert_eq!(
            metric(
                &body,
                &format!(r#"blocker_packets_total{{reason="{reason}"}} "#)
            ),
            Some(0.0),
            "{body}"
        );
    }
    assert_eq!(
        metric(
            &body,
            r#"blocker_rule_hits_total{order="Court-7",name="bad.example",match="subtree",action="nxdomain"} "#
        ),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, r#"blocker_order_rules{order="Court-7"} "#),
        Some(1.0),
        "{body}"
    );
    // One rule name: the smallest key filter (512 bits), one bit set.
    assert_eq!(
        metric(&body, "blocker_key_filter_bytes "),
        Some(64.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "blocker_key_filter_fill_ratio "),
        Some(1.0 / 512.0),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            r#"blocker_interface_attached{{interface="{}@{}",mode="native"}} 1"#,
            t.edge_dev, t.edge.name
        )),
        "{body}"
    );
    // promtool lints it: HELP and TYPE for every family, counter names, base units.
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (cargo xtask setup installs Debian's prometheus)");
    lint.stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = lint.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Prometheus asks for OpenMetrics: the same samples, declared as OpenMetrics.
    let r = http_get(port, "/metrics", Some(PROMETHEUS_ACCEPT)).expect("scrape");
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(
        r.body.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF: {}",
        r.body
    );
    assert!(
        r.body
            .contains("# TYPE blocker_packets counter\nblocker_packets_total{reason="),
        "{}",
        r.body
    );
    assert_eq!(
        metric(&r.body, r#"blocker_packets_total{reason="nxdomain"} "#),
        Some(3.0),
        "{}",
        r.body
    );

    // serve keeps the names of the top rules from one scrape to the next; a change of the
    // rules must not leave a new rule under the old one's name (the new rule takes the id
    // the old one freed).
    let b = &s._b;
    b.ok(&[
        "rules",
        "remove",
        "bad.example",
        "--subtree",
        "--order",
        "Court-7",
    ]);
    b.ok(&["rules", "add", "worse.example", "--order", "Court-7"]);
    for _ in 0..2 {
        let r = kdig(&t.client, EDGE_V4, "worse.example", "A", Q);
        assert_eq!(r.status.as_deref(), Some("NXDOMAIN"), "{}", r.raw);
    }
    let body = http_get(port, "/metrics", None).expect("scrape").body;
    assert_eq!(
        metric(
            &body,
            r#"blocker_rule_hits_total{order="Court-7",name="worse.example",match="exact",action="nxdomain"} "#
        ),
        Some(2.0),
        "{body}"
    );
    assert!(!body.contains(r#"name="bad.example""#), "{body}");
}

/// What Prometheus's HTTP API answers (`data`), once `status` is success.
fn prometheus_api(port: u16, path: &str) -> Option<serde_json::Value> {
    let r = http_get(port, path, None)?;
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    (v["status"] == "success").then(|| v["data"].clone())
}

#[test]
fn a_prometheus_server_reads_samples_and_metadata() {
    let s = serve_after_queries();
    let dir = TempDir::new("blkt-prom");
    let prom_port = free_port();
    let config = dir.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: blocker\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            s.port
        ),
    );
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
    let _prometheus = KillOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={config}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (cargo xtask setup installs Debian's prometheus)"),
    );
    let prom_log = || std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();

    // The first scrape of the target succeeds (health is "unknown" until it is done).
    let target = wait_for("the first scrape", Duration::from_secs(120), || {
        let d = prometheus_api(prom_port, "/api/v1/targets")?;
        let t = d["activeTargets"].as_array()?.first()?.clone();
        (t["health"] != "unknown").then_some(t)
    });
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["lastError"], "", "{target}");

    // The samples, as PromQL sees them.
    let result = wait_for("blocker_packets_total", Duration::from_secs(60), || {
        let d = prometheus_api(prom_port, "/api/v1/query?query=blocker_packets_total")?;
        let r = d["result"].as_array()?.clone();
        (!r.is_empty()).then_some(r)
    });
    let value = |reason: &str| -> Option<String> {
        result
            .iter()
            .find(|x| x["metric"]["reason"] == reason)
            .and_then(|x| x["value"][1].as_str().map(String::from))
    };
    assert_eq!(value("nxdomain").as_deref(), Some("3"), "{result:?}");
    assert_eq!(value("no_match").as_deref(), Some("2"), "{result:?}");
    let d =
        prometheus_api(prom_port, "/api/v1/query?query=blocker_key_filter_bytes").expect("query");
    assert_eq!(d["result"][0]["value"][1], "64", "{d}");

    // The metadata: every family blocker serves, with its type and help text.
    let families = [
        ("blocker_packets", "counter"),
        ("blocker_order_hits", "counter"),
        ("blocker_rule_hits", "counter"),
        ("blocker_order_rules", "gauge"),
        ("blocker_generation", "gauge"),
        ("blocker_last_update_timestamp_seconds", "gauge"),
        ("blocker_key_filter_bytes", "gauge"),
        ("blocker_key_filter_fill_ratio", "gauge"),
        ("blocker_interface_attached", "gauge"),
    ];
    let meta = wait_for("metadata of every family", Duration::from_secs(60), || {
        let d = prometheus_api(prom_port, "/api/v1/metadata")?;
        families
            .iter()
            .all(|(f, _)| d.get(f).is_some())
            .then_some(d)
    });
    for (family, kind) in families {
        let m = &meta[family][0];
        assert_eq!(m["type"], kind, "{family}: {meta}");
        let help = m["help"].as_str().unwrap_or("");
        assert!(help.len() > 10, "{family} has no help text: {meta}");
    }
    assert_eq!(
        meta["blocker_packets"][0]["help"],
        "Packets seen by the XDP program, by exit reason (reason packets counts all).",
        "{meta}"
    );
    // Per target as well, as Prometheus keeps it for the scraped series.
    let per_target = prometheus_api(
        prom_port,
        "/api/v1/targets/metadata?match_target=%7Bjob%3D%22blocker%22%7D&metric=blocker_key_filter_fill_ratio",
    )
    .expect("targets/metadata");
    assert_eq!(
        per_target[0]["type"],
        "gauge",
        "{per_target}\n{}",
        prom_log()
    );
}

#[test]
fn block_events_with_sampling_and_privacy() {
    let mut t = Topology::new();
    t.start_unbound(&["ok.example. 300 IN A 192.0.2.10"]);
    let b = Blocker::new();
    t.attach(&b, "native");
    b.ok(&[
        "rules",
        "add",
        "bad.example",
        "--subtree",
        "--order",
        "Court-9",
    ]);
    b.ok(&[
        "rules",
        "add",
        "quiet.example",
        "--order",
        "Court-9",
        "--action",
        "refused",
    ]);
    let lists = TempDir::new("blkt-cli");
    let file = lists.join("events.jsonl");
    let read = |n: usize| -> Vec<serde_json::Value> {
        let f = file.display().to_string();
        b.ok(&["events", "--output", &f, "--duration", "1"]);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let v: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        assert!(
            v.len() >= n,
            "{} events, expected at least {n}: {text}",
            v.len()
        );
        v
    };

    // Every hit, client truncated to its /24.
    b.ok(&[
        "config",
        "set",
        "--events-every",
        "1",
        "--events-privacy",
        "truncated",
    ]);
    for name in [
        "www.bad.example",
        "bad.example",
        "cdn.bad.example",
        "ok.example",
    ] {
        kdig(&t.client, EDGE_V4, name, "AAAA", Q);
    }
    let ev = read(3);
    assert_eq!(
        ev.len(),
        3,
        "one event per blocked query, none for the allowed one: {ev:?}"
    );
    for e in &ev {
        assert_eq!(e["order"], "Court-9");
        assert_eq!(e["rule"], "bad.example");
        assert_eq!(e["match"], "subtree");
        assert_eq!(e["action"], "nxdomain");
        assert_eq!(e["qtype"], "AAAA");
        assert_eq!(e["client"], "192.0.2.0", "truncated to /24");
    }
    assert!(ev.iter().any(|e| e["first_hit"] == true));
    assert!(ev.iter().all(|e| e["shadow"] == false), "{ev:?}");

    // Sparse sampling without addresses: only first hits are sent.
    std::fs::remove_file(&file).expect("reset");
    b.ok(&[
        "config",
        "set",
        "--events-every",
        "1000",
        "--events-privacy",
        "none",
    ]);
    for _ in 0..6 {
        kdig(&t.client, EDGE_V4, "quiet.example", "A", Q);
    }
    let ev = read(1);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    assert!(
        ev.len() <= cpus,
        "{} events for 6 hits sampled 1 in 1000: {ev:?}",
        ev.len()
    );
    for e in &ev {
        assert_eq!(e["rule"], "quiet.example");
        assert_eq!(e["action"], "refused");
        assert!(e["client"].is_null(), "no address: {e}");
        assert_eq!(e["first_hit"], true);
    }

    // After a list change, a rule's next hit is a first hit again.
    std::fs::remove_file(&file).expect("reset");
    b.ok(&["rules", "add", "another.example", "--order", "Court-9"]);
    kdig(&t.client, EDGE_V4, "quiet.example", "A", Q);
    let ev = read(1);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["first_hit"], true);
    assert_eq!(ev[0]["shadow"], false);

    // An order in shadow mode: its events say so (the query was not answered by it).
    std::fs::remove_file(&file).expect("reset");
    b.ok(&["orders", "set", "--order", "Court-9", "--mode", "shadow"]);
    kdig(&t.client, EDGE_V4, "quiet.example", "A", Q);
    let ev = read(1);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (&ev[0]["rule"], &ev[0]["shadow"]),
        (
            &serde_json::json!("quiet.example"),
            &serde_json::json!(true)
        ),
        "{ev:?}"
    );
}

/// `*.name` in a plain list: the names below name (as in RPZ), and with `--star subtree`
/// name too; a list made mostly of them says which reading was used.
#[test]
fn star_entries_as_the_operator_reads_them() {
    let b = Blocker::new();
    let lists = TempDir::new("blkt-star");
    let text: String = (0..12).map(|i| format!("*.w{i}.example\n")).collect();
    let wild = lists.write("wildcards.txt", &text);
    let verdict = |name: &str| -> String {
        let e: serde_json::Value =
            serde_json::from_str(&b.ok(&["explain", name, "--json"])).expect("json");
        assert_eq!(e["kernel_agrees"], true, "{e}");
        e["verdict"].as_str().unwrap_or_default().to_string()
    };
    let stderr = |args: &[&str]| {
        let out = b.run(args);
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = stderr(&["rules", "load", &wild, "--order", "W"]);
    assert!(
        err.contains("12 of 12 entries are `*.name`") && err.contains("--star subtree"),
        "{err}"
    );
    assert_eq!(verdict("w3.example"), "pass (no rule)");
    assert_eq!(verdict("www.w3.example"), "nxdomain");
    let err = stderr(&["rules", "load", &wild, "--order", "W", "--star", "subtree"]);
    assert!(!err.contains("entries are `*.name`"), "{err}");
    assert_eq!(verdict("w3.example"), "nxdomain");
    assert_eq!(verdict("www.w3.example"), "nxdomain");
}
