//! The operator's workflow through the real CLI, against the attached program in network
//! namespaces, checked with real kdig answers: load, reload with changes, allow orders,
//! RPZ files, explain, stats, order removal, refused loads that change nothing.

use std::{path::Path, process::Command};

use blocker_tests::env::{kdig, Blocker, TempDir, Topology, EDGE_V4};

const Q: &[&str] = &["+retry=0", "+timeout=2", "+edns"];

fn status(t: &Topology, name: &str) -> (String, Option<(u16, String)>, Vec<(String, String)>) {
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
        out.contains("1 rules added, 1 removed, 1 unchanged"),
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

    // An allow order exempts a name below a blocked subtree.
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
    // O1: a.example, www.b.example, c.example, b.example twice.
    assert_eq!(order("O1")["hits"].as_u64(), Some(5), "{s}");
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
        Some(3),
        "www.b.example and b.example twice, across the reload"
    );

    // Removing an order lifts its blocks at once.
    b.ok(&["orders", "remove", "O1"]);
    resolved(&t, "b.example");
    resolved(&t, "c.example");
    let orders = b.ok(&["orders", "list"]);
    assert!(!orders.contains("O1 "), "{orders}");
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

    // Every entry skipped: CNAMEs to a national block page (rewrites) and an IP trigger.
    let zone = lists.write(
        "court.rpz",
        "$TTL 1h\n$ORIGIN rpz.isp.example.\n@ SOA ns. host. ( 1 3H 15M 3W 12H )\n  NS ns.\n\
         a.example CNAME blockpage.gov.example.\nb.example CNAME blockpage.gov.example.\n\
         c.example CNAME blockpage.gov.example.\nd.example CNAME blockpage.gov.example.\n\
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

/// Kills a child process on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn prometheus_metrics_after_real_queries() {
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
    for name in [
        "bad.example",
        "www.bad.example",
        "cdn.bad.example",
        "ok.example",
        "ok.example",
    ] {
        kdig(&t.client, EDGE_V4, name, "A", Q);
    }
    let port = 20000 + (std::process::id() % 20000) as u16;
    let _server = Child(
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
    let mut body = None;
    for _ in 0..50 {
        body = scrape(port);
        if body.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let body = body.expect("the exporter answered");
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
    // One rule name: the smallest key filter, one bit set.
    assert_eq!(
        metric(&body, "blocker_key_filter_bits "),
        Some(512.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "blocker_key_filter_bits_set "),
        Some(1.0),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            r#"blocker_interface_attached{{interface="{}@{}",mode="native"}} 1"#,
            t.edge_dev, t.edge.name
        )),
        "{body}"
    );
    assert!(
        body.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
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

    // Sparse sampling without addresses: only first hits (one per CPU at most) are sent.
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
}
