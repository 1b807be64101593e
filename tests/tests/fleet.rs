//! A fleet: Knot DNS as the RPZ primary in its own namespace, edges in theirs, each with its
//! own bpffs and state directories and `blocker follow` keeping a feed current. The first
//! test queries the edges for real (kdig → veth → XDP, unbound behind); the others read the
//! edge with `blocker explain` (the state and the kernel map, cross-checked).
//!
//! Waits are bounded polls; the convergence times seen are printed, never asserted.

use std::time::Instant;

use blocker_tests::{
    env::{kdig, Blocker, NetNs, Topology, EDGE_V4},
    fleet::{
        explain, feed, link, rpz_text, wait_for, wait_serial, CutProxy, Follow, Knot, KnotSetup,
        TsigKey,
    },
};

const ZONE: &str = "rpz.fleet.test";
const ORDER: &str = "Regulator-List";
const EDE_TEXT: &str = "Blocked by the regulator's list";

/// What an edge does with a query for `name`: `drop` (no answer), `RCODE+EDE` (answered by
/// blocker with an EDE), or `resolver` (passed to unbound, which answers from local data).
fn verdict(t: &Topology, name: &str) -> String {
    let r = kdig(
        &t.client,
        EDGE_V4,
        name,
        "A",
        &["+retry=0", "+timeout=1", "+edns"],
    );
    match (&r.status, &r.ede) {
        (None, _) => "drop".into(),
        (Some(s), Some((16, text))) => {
            assert_eq!(text, EDE_TEXT, "the order's EDE text: {}", r.raw);
            format!("{s}+EDE")
        }
        (Some(s), Some(other)) => panic!("unexpected EDE {other:?} ({s}): {}", r.raw),
        (Some(_), None) => "resolver".into(),
    }
}

/// An edge: client ─ veth ─ edge (XDP, unbound) and a link from the primary's namespace.
struct Edge {
    t: Topology,
    b: Blocker,
    /// The primary's address on the link, and the edge's.
    primary: String,
    addr: String,
}

fn edge(primary_ns: &NetNs, n: u8) -> Edge {
    let mut t = Topology::new();
    // unbound answers every other name NXDOMAIN without EDE ("resolver").
    t.start_unbound(&["resolver.check. 300 IN A 192.0.2.77"]);
    let b = Blocker::new();
    t.attach(&b, "native");
    let (p, e) = (
        format!("198.51.100.{}", 4 * n + 1),
        format!("198.51.100.{}", 4 * n + 2),
    );
    link(primary_ns, &format!("{p}/30"), &t.edge, &format!("{e}/30"));
    Edge {
        t,
        b,
        primary: p,
        addr: e,
    }
}

fn entries(names: impl IntoIterator<Item = (String, &'static str)>) -> Vec<(String, &'static str)> {
    names.into_iter().collect()
}

#[test]
fn three_edges_follow_the_primary_by_axfr_ixfr_and_notify() {
    let primary = NetNs::new("blkp");
    let e1 = edge(&primary, 0);
    let e2 = edge(&primary, 1);
    let e3 = edge(&primary, 2);

    // Serial 1: 60 names blocked (NXDOMAIN), one dropped, one passed through.
    let v1 = entries((0..60).map(|i| (format!("c{i}.example"), ".")).chain([
        ("keep.example".to_string(), "."),
        ("quiet.example".to_string(), "rpz-drop."),
        ("allowed.example".to_string(), "rpz-passthru."),
    ]));
    let notify = [
        format!("{}@5353", e1.addr),
        format!("{}@5353", e2.addr),
        format!("{}@5353", e3.addr),
    ];
    let notify: Vec<&str> = notify.iter().map(String::as_str).collect();
    let mut knot = Knot::start(
        &primary,
        &KnotSetup {
            zone: ZONE,
            text: &rpz_text(ZONE, &v1),
            listen: &[&e1.primary, &e2.primary, &e3.primary],
            notify: &notify,
            allow: &["198.51.100.0/24"],
            key: None,
        },
    );
    let s1 = knot.serial().expect("serial");

    // Edges 1 and 3 follow by NOTIFY alone (the SOA refresh is an hour); edge 2 also checks
    // the SOA every 2 s.
    for (e, refresh) in [(&e1, None), (&e2, Some("2")), (&e3, None)] {
        e.b.ok(&["orders", "set", "--order", ORDER, "--ede-text", EDE_TEXT]);
        let mut args = vec![
            "feed",
            "add",
            ORDER,
            "--zone",
            ZONE,
            "--primary",
            &e.primary,
        ];
        if let Some(r) = refresh {
            args.extend(["--refresh", r]);
        }
        e.b.ok(&args);
    }
    let t0 = Instant::now();
    let listen1 = format!("{}:5353", e1.addr);
    let listen2 = format!("{}:5353", e2.addr);
    let listen3 = format!("{}:5353", e3.addr);
    let mut f1 = Follow::start(&e1.b, &e1.t.edge, Some(&listen1));
    let f2 = Follow::start(&e2.b, &e2.t.edge, Some(&listen2));
    let f3 = Follow::start(&e3.b, &e3.t.edge, Some(&listen3));
    let d1 = wait_serial(&e1.b, ORDER, s1, t0, &f1);
    let d2 = wait_serial(&e2.b, ORDER, s1, t0, &f2);
    let d3 = wait_serial(&e3.b, ORDER, s1, t0, &f3);
    println!(
        "initial AXFR enforced: edge 1 after {d1:?}, edge 2 after {d2:?}, edge 3 after {d3:?} \
         (from start)"
    );
    for (e, f) in [(&e1, &f1), (&e2, &f2), (&e3, &f3)] {
        let st = feed(&e.b, ORDER);
        assert_eq!(
            st["status"]["last_transfer"]["kind"],
            "axfr",
            "{st}\n{}",
            f.log()
        );
        assert_eq!(verdict(&e.t, "c0.example"), "NXDOMAIN+EDE");
        assert_eq!(verdict(&e.t, "c59.example"), "NXDOMAIN+EDE");
        assert_eq!(
            verdict(&e.t, "www.c0.example"),
            "resolver",
            "RPZ `name` is exact"
        );
        assert_eq!(verdict(&e.t, "quiet.example"), "drop");
        assert_eq!(verdict(&e.t, "allowed.example"), "resolver");
        assert_eq!(verdict(&e.t, "a0.example"), "resolver");
    }

    // Serial 2: 100 names added, 50 removed, actions changed.
    let v2 = entries(
        (50..60)
            .map(|i| (format!("c{i}.example"), "*."))
            .chain((0..100).map(|i| (format!("a{i}.example"), ".")))
            .chain([
                ("keep.example".to_string(), "rpz-drop."),
                ("quiet.example".to_string(), "rpz-drop."),
                ("allowed.example".to_string(), "rpz-passthru."),
            ]),
    );
    let t0 = Instant::now();
    let s2 = knot.set_zone(&rpz_text(ZONE, &v2));
    let d1 = wait_serial(&e1.b, ORDER, s2, t0, &f1);
    let d2 = wait_serial(&e2.b, ORDER, s2, t0, &f2);
    let d3 = wait_serial(&e3.b, ORDER, s2, t0, &f3);
    println!(
        "serial {s2} (+100 −50, 11 actions changed) enforced: edge 1 after {d1:?}, edge 2 after \
         {d2:?}, edge 3 after {d3:?} (from the reload)"
    );
    for (e, f, d) in [(&e1, &f1, d1), (&e2, &f2, d2), (&e3, &f3, d3)] {
        let st = feed(&e.b, ORDER);
        let s = &st["status"];
        assert!(
            d.as_secs_f64() < 2.0,
            "every edge enforces the new serial within 2 s of the reload: {d:?}\n{}",
            f.log()
        );
        assert_eq!(s["last_transfer"]["kind"], "ixfr", "{st}\n{}", f.log());
        assert_eq!(s["last_transfer"]["from_serial"], s1, "{st}");
        assert_eq!(
            (s["axfr_count"].as_u64(), s["ixfr_count"].as_u64()),
            (Some(1), Some(1)),
            "{st}"
        );
        // 50 names removed, 100 added, 11 changed: 161 names' values.
        assert_eq!(s["last_transfer"]["names_changed"], 161, "{st}");
        assert_eq!(s["last_transfer"]["rules"], 113, "{st}");
        // Applied as an edit of the order, not by replacing its rules whole.
        assert!(!f.log().contains("applied whole"), "{}", f.log());
        assert_eq!(verdict(&e.t, "c0.example"), "resolver", "removed");
        assert_eq!(verdict(&e.t, "c49.example"), "resolver", "removed");
        assert_eq!(verdict(&e.t, "c50.example"), "NOERROR+EDE", "now NODATA");
        assert_eq!(verdict(&e.t, "a0.example"), "NXDOMAIN+EDE", "added");
        assert_eq!(verdict(&e.t, "a99.example"), "NXDOMAIN+EDE", "added");
        assert_eq!(verdict(&e.t, "keep.example"), "drop", "now dropped");
        // The state directory says what the kernel holds, rule by rule.
        assert_eq!(explain(&e.b, "c0.example"), "pass (no rule)");
        assert_eq!(explain(&e.b, "a42.example"), "nxdomain");
    }
    drop(f3);
    // `blocker serve` exports the same.
    let ctx = blocker::cli::Ctx {
        pins: e2.b.pins(),
        dir: e2.b.state_dir(),
    };
    let metrics = blocker::cli::serve::render(&ctx, 5, &Default::default()).expect("metrics");
    let labels = format!("order=\"{ORDER}\",zone=\"{ZONE}\"");
    for want in [
        format!("blocker_feed_serial{{{labels}}} {s2}\n"),
        format!("blocker_feed_primary_serial{{{labels}}} {s2}\n"),
        format!("blocker_feed_lag_seconds{{{labels}}} 0\n"),
        format!("blocker_feed_transfers_total{{{labels},kind=\"ixfr\"}} 1\n"),
        format!("blocker_feed_transfers_total{{{labels},kind=\"axfr\"}} 1\n"),
        format!("blocker_feed_expired{{{labels}}} 0\n"),
    ] {
        assert!(metrics.contains(&want), "{want} in:\n{metrics}");
    }
    let st1 = feed(&e1.b, ORDER);
    let ms = st1["status"]["notify_to_enforce_ms"].as_u64();
    assert!(
        ms.is_some(),
        "edge 1 followed the NOTIFY: {st1}\n{}",
        f1.log()
    );
    println!("edge 1: NOTIFY → enforced in {} ms", ms.unwrap_or(0));

    assert_eq!(st1["follower_running"], true, "{st1}");

    // Follow restarted: the change made meanwhile comes by IXFR from the saved serial.
    assert!(f1.stop().success(), "clean exit on SIGTERM:\n{}", f1.log());
    assert!(f1.log().contains("stopped"), "{}", f1.log());
    // Stopped, the follower's saved status would still say "current": the listing says that
    // nothing follows the primaries now.
    assert_eq!(feed(&e1.b, ORDER)["follower_running"], false);
    let text = e1.b.ok(&["feed", "list"]);
    assert!(text.contains("`blocker follow` is not running"), "{text}");
    let v3 = entries(
        v2.iter()
            .cloned()
            .chain((0..10).map(|i| (format!("b{i}.example"), "."))),
    );
    let t0 = Instant::now();
    let s3 = knot.set_zone(&rpz_text(ZONE, &v3));
    let d2 = wait_serial(&e2.b, ORDER, s3, t0, &f2);
    assert_eq!(
        verdict(&e1.t, "b0.example"),
        "resolver",
        "edge 1 is not following"
    );
    let t1 = Instant::now();
    let f1 = Follow::start(&e1.b, &e1.t.edge, Some(&listen1));
    let d1 = wait_serial(&e1.b, ORDER, s3, t1, &f1);
    println!("serial {s3}: edge 2 after {d2:?}; edge 1, restarted, after {d1:?} (from its start)");
    let st = feed(&e1.b, ORDER);
    assert_eq!(
        st["status"]["last_transfer"]["kind"],
        "ixfr",
        "{st}\n{}",
        f1.log()
    );
    assert_eq!(st["status"]["last_transfer"]["from_serial"], s2, "{st}");
    assert!(
        f1.log().contains(&format!("resuming at serial {s2}")),
        "{}",
        f1.log()
    );
    assert_eq!(verdict(&e1.t, "b0.example"), "NXDOMAIN+EDE");

    // The primary vanishes: both edges keep enforcing; edge 2 sees it fail.
    knot.kill();
    wait_for(20, "edge 2 reports the unreachable primary", || {
        let st = feed(&e2.b, ORDER);
        match st["status"]["last_error"].as_str() {
            Some(e) if st["status"]["failures"].as_u64() >= Some(1) => Ok(e.to_string()),
            _ => Err(st.to_string()),
        }
    });
    for e in [&e1, &e2] {
        assert_eq!(verdict(&e.t, "a0.example"), "NXDOMAIN+EDE");
        assert_eq!(verdict(&e.t, "b9.example"), "NXDOMAIN+EDE");
        assert_eq!(verdict(&e.t, "keep.example"), "drop");
    }
    let status = e2.b.ok(&["status"]);
    assert!(
        status.contains(ORDER) && status.contains("last error"),
        "{status}"
    );
    drop(f2);

    // Edge 1 reboots while the primary is still gone: the BPF filesystem comes back empty.
    // What blocker-restore.service runs (`blocker attach` with the interfaces) recreates the
    // maps and restores the rules from the state directory, same generation; follow resumes
    // from the saved copy.
    let mut f1 = f1;
    assert!(f1.stop().success());
    let generation = |b: &Blocker| {
        let v: serde_json::Value =
            serde_json::from_str(&b.ok(&["status", "--json"])).expect("json");
        v["generation"].clone()
    };
    let before = generation(&e1.b);
    std::fs::remove_dir_all(&e1.b.bpffs).expect("empty the BPF filesystem");
    // (The links go with their pins, released by the kernel shortly after.)
    wait_for(10, "nothing enforced", || {
        match verdict(&e1.t, "a0.example") {
            v if v == "resolver" => Ok(()),
            v => Err(v),
        }
    });
    e1.t.attach(&e1.b, "native");
    assert_eq!(generation(&e1.b), before);
    assert_eq!(verdict(&e1.t, "a0.example"), "NXDOMAIN+EDE", "restored");
    assert_eq!(verdict(&e1.t, "b9.example"), "NXDOMAIN+EDE", "restored");
    assert_eq!(verdict(&e1.t, "keep.example"), "drop", "restored");
    let f1 = Follow::start(&e1.b, &e1.t.edge, Some(&listen1));
    wait_for(20, "follow resumes from the saved copy", || {
        if f1.log().contains(&format!("resuming at serial {s3}")) {
            Ok(())
        } else {
            Err(f1.log())
        }
    });
    assert!(f1.log().contains("already enforced"), "{}", f1.log());
    assert_eq!(generation(&e1.b), before, "nothing to change");
}

/// A primary that requires TSIG: the wrong key is refused with a clear error and nothing is
/// applied; the right key transfers and NOTIFY signed with it is followed; a record that is
/// not valid RPZ keeps the last good copy.
#[test]
fn tsig_is_required_and_checked_and_a_bad_zone_changes_nothing() {
    let primary = NetNs::new("blkp");
    let edge_ns = NetNs::new("blke");
    link(&primary, "198.51.100.1/30", &edge_ns, "198.51.100.2/30");
    let key = TsigKey {
        name: "edge-xfr".into(),
        algorithm: "hmac-sha256".into(),
        secret: "Zm9sbG93LXRoZS1yZWd1bGF0b3Itc2VjcmV0LWtleQ==".into(),
    };
    let v1 = entries((0..5).map(|i| (format!("t{i}.example"), ".")));
    let knot = Knot::start(
        &primary,
        &KnotSetup {
            zone: ZONE,
            text: &rpz_text(ZONE, &v1),
            listen: &["198.51.100.1"],
            notify: &["198.51.100.2@5353"],
            allow: &["198.51.100.0/24"],
            key: Some(&key),
        },
    );
    let s1 = knot.serial().expect("serial");
    let b = Blocker::new();
    let keys = blocker_tests::env::TempDir::new("blkt-keys");
    let wrong = keys.write(
        "wrong.key",
        &format!(
            "key \"{}\" {{\n\talgorithm {};\n\tsecret \"{}\";\n}};\n",
            key.name, key.algorithm, "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZw=="
        ),
    );
    let right = keys.write(
        "right.key",
        &format!("{}:{}:{}\n", key.algorithm, key.name, key.secret),
    );
    b.ok(&[
        "feed",
        "add",
        ORDER,
        "--zone",
        ZONE,
        "--primary",
        "198.51.100.1",
        "--tsig-key",
        &wrong,
        "--refresh",
        "1",
    ]);
    let f = Follow::start(&b, &edge_ns, Some("198.51.100.2:5353"));
    let err = wait_for(20, "the wrong key is reported", || {
        let st = feed(&b, ORDER);
        match st["status"]["last_error"].as_str() {
            Some(e) => Ok(e.to_string()),
            None => Err(format!("{st}\n{}", f.log())),
        }
    });
    println!("wrong key: {err}");
    assert!(err.contains("TSIG"), "{err}");
    assert!(err.contains("198.51.100.1:53"), "names the primary: {err}");
    assert_eq!(feed(&b, ORDER)["status"]["serial"], serde_json::Value::Null);
    assert_eq!(
        explain(&b, "t0.example"),
        "pass (no rule)",
        "nothing applied"
    );

    // The key rotated in place (the same file, the right secret): the feed restarts and
    // reads it again, `follow` itself keeps running.
    let t0 = Instant::now();
    std::fs::write(
        &wrong,
        format!(
            "key \"{}\" {{\n\talgorithm {};\n\tsecret \"{}\";\n}};\n",
            key.name, key.algorithm, key.secret
        ),
    )
    .expect("rotate the key file");
    let d = wait_serial(&b, ORDER, s1, t0, &f);
    println!("key file rotated in place: serial {s1} after {d:?}");
    assert!(f.log().contains("its TSIG key file changed"), "{}", f.log());

    // The right key (`feed add` again replaces the feed; follow restarts it).
    let t0 = Instant::now();
    b.ok(&[
        "feed",
        "add",
        ORDER,
        "--zone",
        ZONE,
        "--primary",
        "198.51.100.1",
        "--tsig-key",
        &right,
    ]);
    let d = wait_serial(&b, ORDER, s1, t0, &f);
    println!("right key: serial {s1} after {d:?}");
    assert_eq!(explain(&b, "t0.example"), "nxdomain");

    // A signed NOTIFY brings the next serial (no refresh timer: the SOA says an hour).
    let v2 = entries(
        v1.iter()
            .cloned()
            .chain([("t9.example".to_string(), "rpz-drop.")]),
    );
    let t0 = Instant::now();
    let s2 = knot.set_zone(&rpz_text(ZONE, &v2));
    let d = wait_serial(&b, ORDER, s2, t0, &f);
    let st = feed(&b, ORDER);
    assert_eq!(st["status"]["last_transfer"]["kind"], "ixfr", "{st}");
    assert!(
        st["status"]["notify_to_enforce_ms"].as_u64().is_some(),
        "{st}\n{}",
        f.log()
    );
    println!("signed NOTIFY: serial {s2} after {d:?}");
    assert_eq!(explain(&b, "t9.example"), "drop");

    // NOTIFY by hand, from the primary's address: unsigned: NOTAUTH; signed with a key the
    // edge does not have, or with another secret: refused with a TSIG error (kdig shows
    // BADKEY, FORMERR); signed with the key: NOERROR, signed.
    let notify = |extra: &[&str]| {
        let mut args = vec!["-p", "5353", "+retry=0", "+timeout=2"];
        args.extend_from_slice(extra);
        kdig(&primary, "198.51.100.2", ZONE, "NOTIFY", &args)
    };
    let r = notify(&[]);
    assert_eq!(r.status.as_deref(), Some("NOTAUTH"), "unsigned: {}", r.raw);
    let other = "hmac-sha256:other-key:Zm9sbG93LXRoZS1yZWd1bGF0b3Itc2VjcmV0LWtleQ==";
    let r = notify(&["-y", other]);
    assert_eq!(
        r.status.as_deref(),
        Some("BADKEY"),
        "unknown key: {}",
        r.raw
    );
    let bad = format!(
        "{}:{}:d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZw==",
        key.algorithm, key.name
    );
    let r = notify(&["-y", &bad]);
    assert_eq!(
        r.status.as_deref(),
        // RFC 8945 says BADSIG; domain 0.12.3's server side reports a bad MAC as FORMERR.
        Some("FORMERR"),
        "another secret: {}",
        r.raw
    );
    let good = format!("{}:{}:{}", key.algorithm, key.name, key.secret);
    let r = notify(&["-y", &good]);
    assert_eq!(r.status.as_deref(), Some("NOERROR"), "signed: {}", r.raw);
    assert!(r.raw.contains("TSIG"), "the answer is signed: {}", r.raw);
    let r = notify(&["+tcp", "-y", &good]);
    assert_eq!(r.status.as_deref(), Some("NOERROR"), "over TCP: {}", r.raw);
    // Anything but NOTIFY is refused.
    let r = kdig(
        &primary,
        "198.51.100.2",
        ZONE,
        "SOA",
        &["-p", "5353", "+retry=0", "+timeout=2"],
    );
    assert_eq!(r.status.as_deref(), Some("REFUSED"), "a query: {}", r.raw);
    // From an address that is not a primary (the edge itself), even signed: NOTAUTH.
    let r = kdig(
        &edge_ns,
        "198.51.100.2",
        ZONE,
        "NOTIFY",
        &["-p", "5353", "+retry=0", "+timeout=2", "-y", &good],
    );
    assert_eq!(
        r.status.as_deref(),
        Some("NOTAUTH"),
        "not a primary: {}",
        r.raw
    );
    assert!(f.log().contains("not one of its primaries"), "{}", f.log());

    // A zone with a record that is not valid RPZ (`*` inside an owner): refused, the copy
    // of serial 2 stays enforced, the error names the record.
    let v3 = entries(v2.iter().cloned().chain([
        ("x.*.bad.example".to_string(), "."),
        ("t10.example".to_string(), "."),
    ]));
    let s3 = knot.set_zone(&rpz_text(ZONE, &v3));
    let err = wait_for(20, "the invalid record is reported", || {
        let st = feed(&b, ORDER);
        match st["status"]["last_error"].as_str() {
            Some(e) if e.contains(&format!("serial {s3}")) => Ok(e.to_string()),
            _ => Err(format!("{st}\n{}", f.log())),
        }
    });
    println!("invalid record: {err}");
    assert!(
        err.contains("x.*.bad.example") && err.contains("leftmost"),
        "{err}"
    );
    assert_eq!(feed(&b, ORDER)["status"]["serial"], s2);
    assert_eq!(
        explain(&b, "t10.example"),
        "pass (no rule)",
        "serial {s3} not applied"
    );
    assert_eq!(
        explain(&b, "t9.example"),
        "drop",
        "serial {s2} still enforced"
    );

    // The feed removed: follow lets go of it, the order keeps its rules until removed.
    let out = b.ok(&["feed", "remove", ORDER]);
    assert!(out.contains("keeps its 6 rules"), "{out}");
    assert_eq!(b.ok(&["feed", "list", "--json"]).trim(), "[]");
    wait_for(10, "follow stops the feed", || {
        if f.log().contains("feed removed or changed") {
            Ok(())
        } else {
            Err(f.log())
        }
    });
    assert_eq!(explain(&b, "t9.example"), "drop");
    b.ok(&["orders", "remove", ORDER]);
    assert_eq!(explain(&b, "t9.example"), "pass (no rule)");
}

/// IXFR impossible (the primary's journal was dropped while the edge was away): the primary
/// answers the IXFR with the whole zone and the edge takes it; a transfer cut half-way
/// leaves the previous copy enforced, and the next complete one is applied.
#[test]
fn axfr_fallback_and_a_cut_transfer() {
    let primary = NetNs::new("blkp");
    let edge_ns = NetNs::new("blke");
    link(&primary, "198.51.100.1/30", &edge_ns, "198.51.100.2/30");
    // Big enough for a transfer of many messages.
    let v1 = entries((0..3000).map(|i| (format!("name{i}.blocked.example"), ".")));
    let knot = Knot::start(
        &primary,
        &KnotSetup {
            zone: ZONE,
            text: &rpz_text(ZONE, &v1),
            listen: &["198.51.100.1"],
            notify: &[],
            allow: &["198.51.100.0/24"],
            key: None,
        },
    );
    let s1 = knot.serial().expect("serial");
    // The edge reaches the primary through a proxy that can cut transfers.
    let proxy = CutProxy::start(&primary, "198.51.100.1:5300", "198.51.100.1:53");
    let b = Blocker::new();
    b.ok(&[
        "feed",
        "add",
        ORDER,
        "--zone",
        ZONE,
        "--primary",
        "198.51.100.1:5300",
        "--refresh",
        "1",
    ]);
    let t0 = Instant::now();
    let mut f = Follow::start(&b, &edge_ns, None);
    let d = wait_serial(&b, ORDER, s1, t0, &f);
    println!("AXFR of 3,000 names through the proxy: {d:?}");
    // A second follower of the same state directory is refused.
    let mut second = std::process::Command::new(&b.bin)
        .arg("--bpffs")
        .arg(&b.bpffs)
        .arg("--state-dir")
        .arg(&b.state)
        .arg("follow")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("second follow");
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    let exited = loop {
        if let Ok(Some(st)) = second.try_wait() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second follow of the same state directory kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = second.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(
        !exited.success() && err.contains("another `blocker follow` is running"),
        "{err}"
    );
    assert_eq!(explain(&b, "name2999.blocked.example"), "nxdomain");

    // Edge away; two changes and the journal dropped in between: IXFR from s1 is gone.
    assert!(f.stop().success());
    let v2 = entries(
        v1.iter()
            .cloned()
            .chain([("first.example".to_string(), ".")]),
    );
    let _s2 = knot.set_zone(&rpz_text(ZONE, &v2));
    knot.purge_journal();
    let v3 = entries(
        v2.iter()
            .cloned()
            .chain([("second.example".to_string(), "*.")]),
    );
    let s3 = knot.set_zone(&rpz_text(ZONE, &v3));
    let t0 = Instant::now();
    let mut f = Follow::start(&b, &edge_ns, None);
    let d = wait_serial(&b, ORDER, s3, t0, &f);
    let st = feed(&b, ORDER);
    println!(
        "IXFR impossible: AXFR fallback enforced serial {s3} after {d:?}: {}",
        st["status"]["last_transfer"]["fallback"]
    );
    assert_eq!(
        st["status"]["last_transfer"]["kind"],
        "axfr",
        "{st}\n{}",
        f.log()
    );
    assert_eq!(st["status"]["last_transfer"]["from_serial"], s1, "{st}");
    assert!(
        st["status"]["last_transfer"]["fallback"].is_string(),
        "{st}"
    );
    assert_eq!(explain(&b, "first.example"), "nxdomain");
    assert_eq!(explain(&b, "second.example"), "nodata");

    // The next transfer (an IXFR replacing every name) is cut after 20 kB: nothing of it is
    // applied.
    assert!(f.stop().success());
    proxy
        .limit
        .store(20_000, std::sync::atomic::Ordering::Relaxed);
    let v4 = entries(
        (0..3000)
            .map(|i| (format!("other{i}.blocked.example"), "."))
            .chain([("third.example".to_string(), ".")]),
    );
    let s4 = knot.set_zone(&rpz_text(ZONE, &v4));
    let f = Follow::start(&b, &edge_ns, None);
    let err = wait_for(30, "the cut transfer is reported", || {
        let st = feed(&b, ORDER);
        match st["status"]["last_error"].as_str() {
            Some(e) if proxy.cuts.load(std::sync::atomic::Ordering::Relaxed) > 0 => {
                Ok(e.to_string())
            }
            _ => Err(format!("{st}\n{}", f.log())),
        }
    });
    println!("cut transfer: {err}");
    assert_eq!(feed(&b, ORDER)["status"]["serial"], s3, "the previous copy");
    assert_eq!(
        explain(&b, "name0.blocked.example"),
        "nxdomain",
        "still enforced"
    );
    assert_eq!(
        explain(&b, "third.example"),
        "pass (no rule)",
        "nothing of serial {s4}"
    );

    // The proxy lets the next attempt through.
    proxy
        .limit
        .store(usize::MAX, std::sync::atomic::Ordering::Relaxed);
    let t0 = Instant::now();
    let d = wait_serial(&b, ORDER, s4, t0, &f);
    println!("after the cut: serial {s4} after {d:?}");
    assert_eq!(explain(&b, "third.example"), "nxdomain");
    assert_eq!(explain(&b, "name0.blocked.example"), "pass (no rule)");
}

/// SOA expire (5 s here) without a primary: `--on-expire keep` keeps enforcing and says so,
/// `--on-expire stop` withdraws the order's rules; both come back to normal when the primary
/// does (the withdrawn rules are enforced again).
#[test]
fn expiry_keeps_or_withdraws_the_rules() {
    let primary = NetNs::new("blkp");
    let (keep_ns, stop_ns) = (NetNs::new("blke"), NetNs::new("blke"));
    link(&primary, "198.51.100.1/30", &keep_ns, "198.51.100.2/30");
    link(&primary, "198.51.100.5/30", &stop_ns, "198.51.100.6/30");
    let text = rpz_text(ZONE, &entries([("gone.example".to_string(), ".")]))
        .replace(" 1 3600 600 86400 60", " 1 3600 1 5 60");
    let mut knot = Knot::start(
        &primary,
        &KnotSetup {
            zone: ZONE,
            text: &text,
            listen: &["198.51.100.1", "198.51.100.5"],
            notify: &[],
            allow: &["198.51.100.0/24"],
            key: None,
        },
    );
    let s1 = knot.serial().expect("serial");
    let mut edges = Vec::new();
    for (ns, p, mode) in [
        (&keep_ns, "198.51.100.1", "keep"),
        (&stop_ns, "198.51.100.5", "stop"),
    ] {
        let b = Blocker::new();
        b.ok(&[
            "feed",
            "add",
            ORDER,
            "--zone",
            ZONE,
            "--primary",
            p,
            "--refresh",
            "1",
            "--on-expire",
            mode,
        ]);
        let t0 = Instant::now();
        let f = Follow::start(&b, ns, None);
        wait_serial(&b, ORDER, s1, t0, &f);
        assert_eq!(explain(&b, "gone.example"), "nxdomain");
        edges.push((b, f));
    }
    knot.kill();
    let t0 = Instant::now();
    for (b, f) in &edges {
        wait_for(30, "the copy expires", || {
            let st = feed(b, ORDER);
            if st["status"]["expired"] == true {
                Ok(())
            } else {
                Err(format!("{st}\n{}", f.log()))
            }
        });
    }
    println!(
        "expired {:?} after the primary stopped (SOA expire 5 s)",
        t0.elapsed()
    );
    let (keep, stop) = (&edges[0], &edges[1]);
    assert_eq!(
        explain(&keep.0, "gone.example"),
        "nxdomain",
        "keep: still enforced"
    );
    assert!(keep.1.log().contains("EXPIRED"), "{}", keep.1.log());
    wait_for(10, "stop: the rules are withdrawn", || {
        match explain(&stop.0, "gone.example").as_str() {
            "pass (no rule)" => Ok(()),
            v => Err(format!("{v}\n{}", stop.1.log())),
        }
    });
    let orders = stop.0.ok(&["orders", "list"]);
    assert!(orders.contains(ORDER), "the order stays: {orders}");
    let err = stop.0.fails(&["orders", "remove", ORDER]);
    assert!(
        err.contains("feed remove"),
        "a followed order is not removed: {err}"
    );
    // Restarted while the primary is still away: the expired copy is not enforced again.
    {
        let stop = &mut edges[1];
        assert!(stop.1.stop().success());
        stop.1 = Follow::start(&stop.0, &stop_ns, None);
        wait_for(10, "restarted: the expired copy stays withdrawn", || {
            let log = stop.1.log();
            if log.contains("not enforced until a primary answers") {
                Ok(())
            } else {
                Err(log)
            }
        });
        assert_eq!(explain(&stop.0, "gone.example"), "pass (no rule)");
    }

    knot.spawn();
    for (b, f) in &edges {
        wait_for(30, "no longer expired", || {
            let st = feed(b, ORDER);
            if st["status"]["expired"] == false && st["status"]["serial"] == s1 {
                Ok(())
            } else {
                Err(format!("{st}\n{}", f.log()))
            }
        });
        assert_eq!(explain(b, "gone.example"), "nxdomain");
    }
}

/// A primary that cannot serve IXFR (answers it NOTIMP, REFUSED or FORMERR, as some do):
/// each new serial comes by AXFR instead, and the status says why.
#[test]
fn ixfr_refused_by_the_primary_falls_back_to_axfr() {
    for (rcode, name) in [(4u16, "NOTIMP"), (5, "REFUSED"), (1, "FORMERR")] {
        let primary = NetNs::new("blkp");
        let edge_ns = NetNs::new("blke");
        link(&primary, "198.51.100.1/30", &edge_ns, "198.51.100.2/30");
        let p =
            blocker_tests::fleet::ScriptedPrimary::start(&primary, "198.51.100.1:53", ZONE, rcode);
        p.set(10, &["one.example", "two.example"]);
        let b = Blocker::new();
        b.ok(&[
            "feed",
            "add",
            ORDER,
            "--zone",
            ZONE,
            "--primary",
            "198.51.100.1",
            "--refresh",
            "1",
        ]);
        let t0 = Instant::now();
        let f = Follow::start(&b, &edge_ns, None);
        wait_serial(&b, ORDER, 10, t0, &f);
        assert_eq!(explain(&b, "two.example"), "nxdomain");
        p.set(11, &["two.example", "three.example"]);
        wait_serial(&b, ORDER, 11, t0, &f);
        let st = feed(&b, ORDER);
        let t = &st["status"]["last_transfer"];
        assert_eq!(t["kind"], "axfr", "{st}");
        assert_eq!(t["from_serial"], 10, "{st}");
        assert_eq!(
            t["fallback"].as_str(),
            Some(format!("the primary answered IXFR with {name}").as_str()),
            "{st}"
        );
        assert!(p.ixfr_queries.load(std::sync::atomic::Ordering::Relaxed) >= 1);
        assert_eq!(explain(&b, "one.example"), "pass (no rule)");
        assert_eq!(explain(&b, "three.example"), "nxdomain");
        println!("IXFR answered {name}: AXFR fallback, serial 11 enforced");
    }
}

/// A primary that never ends a transfer (hostile, or broken) cannot hold an edge: the
/// transfer is abandoned at the record limit, or at the time limit, the order stays on the
/// copy it enforced, and the failure is in the feed's status.
#[test]
fn a_transfer_without_end_is_abandoned() {
    let primary = NetNs::new("blkp");
    let edge_ns = NetNs::new("blke");
    link(&primary, "198.51.100.1/30", &edge_ns, "198.51.100.2/30");
    let p = blocker_tests::fleet::ScriptedPrimary::start(&primary, "198.51.100.1:53", ZONE, 4);
    p.set(10, &["one.example"]);
    let b = Blocker::new();
    b.ok(&[
        "feed",
        "add",
        ORDER,
        "--zone",
        ZONE,
        "--primary",
        "198.51.100.1",
        "--refresh",
        "1",
    ]);
    let t0 = Instant::now();
    let mut f = Follow::start_args(&b, &edge_ns, None, &[], &["--max-transfer-records", "5000"]);
    wait_serial(&b, ORDER, 10, t0, &f);
    assert_eq!(explain(&b, "one.example"), "nxdomain");

    // Serial 11, served without end.
    p.endless.store(true, std::sync::atomic::Ordering::Relaxed);
    p.set(11, &["one.example", "two.example"]);
    let err = wait_for(30, "the record limit is reported", || {
        let st = feed(&b, ORDER);
        match st["status"]["last_error"].as_str() {
            Some(e) if e.contains("max-transfer-records") => Ok(e.to_string()),
            _ => Err(format!("{st}\n{}", f.log())),
        }
    });
    assert!(
        err.contains("more than 5000 records (the limit of follow --max-transfer-records)"),
        "{err}"
    );
    let st = feed(&b, ORDER);
    assert_eq!(st["status"]["serial"], 10, "{st}");
    assert_eq!(explain(&b, "one.example"), "nxdomain");
    assert_eq!(explain(&b, "two.example"), "pass (no rule)");
    assert!(f.stop().success(), "{}", f.log());

    // No record limit to speak of: the time limit ends it.
    let f = Follow::start_args(
        &b,
        &edge_ns,
        None,
        &[],
        &[
            "--max-transfer-records",
            "1000000000",
            "--max-transfer-time",
            "2",
        ],
    );
    let err = wait_for(30, "the time limit is reported", || {
        let st = feed(&b, ORDER);
        match st["status"]["last_error"].as_str() {
            Some(e) if e.contains("longer than") => Ok(e.to_string()),
            _ => Err(format!("{st}\n{}", f.log())),
        }
    });
    assert!(
        err.contains("took longer than 2 s (the limit of follow --max-transfer-time)"),
        "{err}"
    );
    assert_eq!(feed(&b, ORDER)["status"]["serial"], 10);
    assert_eq!(explain(&b, "two.example"), "pass (no rule)");
    drop(f);

    // An IXFR of empty differences without end (SOA records only) counts against the
    // record limit too.
    p.endless_ixfr
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let f = Follow::start_args(&b, &edge_ns, None, &[], &["--max-transfer-records", "5000"]);
    let err = wait_for(30, "the record limit is reported for the IXFR", || {
        let st = feed(&b, ORDER);
        match st["status"]["last_error"].as_str() {
            Some(e) if e.contains("IXFR") && e.contains("max-transfer-records") => {
                Ok(e.to_string())
            }
            _ => Err(format!("{st}\n{}", f.log())),
        }
    });
    assert!(err.contains("more than 5000 records"), "{err}");
    assert_eq!(feed(&b, ORDER)["status"]["serial"], 10);
}

/// A saved copy older than the serial the feed last enforced (put back by hand, or a state
/// directory restored in part) is not enforced again at restart: the order keeps the newer
/// serial's rules, here with no primary to answer.
#[test]
fn a_saved_copy_older_than_the_enforced_serial_is_not_enforced_again() {
    let primary = NetNs::new("blkp");
    let edge_ns = NetNs::new("blke");
    link(&primary, "198.51.100.1/30", &edge_ns, "198.51.100.2/30");
    let p = blocker_tests::fleet::ScriptedPrimary::start(&primary, "198.51.100.1:53", ZONE, 4);
    p.set(10, &["one.example"]);
    let b = Blocker::new();
    b.ok(&[
        "feed",
        "add",
        ORDER,
        "--zone",
        ZONE,
        "--primary",
        "198.51.100.1",
        "--refresh",
        "1",
    ]);
    let t0 = Instant::now();
    let mut f = Follow::start(&b, &edge_ns, None);
    wait_serial(&b, ORDER, 10, t0, &f);
    let copy = std::fs::read_dir(b.state.join("feeds"))
        .expect("feeds dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "zone"))
        .expect("the saved copy");
    let old = std::fs::read(&copy).expect("read the copy");
    p.set(11, &["one.example", "two.example"]);
    wait_serial(&b, ORDER, 11, t0, &f);
    assert_eq!(explain(&b, "two.example"), "nxdomain");
    assert!(f.stop().success(), "{}", f.log());

    // No primary any more, and the serial-10 copy put back.
    drop(p);
    std::fs::write(&copy, old).expect("put the old copy back");
    let f = Follow::start(&b, &edge_ns, None);
    // Restored (or not) before the first attempt to reach the primary.
    wait_for(20, "the follower tries the primary", || {
        let log = f.log();
        if log.contains("cannot connect") {
            Ok(())
        } else {
            Err(log)
        }
    });
    assert_eq!(explain(&b, "two.example"), "nxdomain", "{}", f.log());
    assert_eq!(feed(&b, ORDER)["status"]["serial"], 11);
    assert!(
        f.log()
            .contains("the saved copy has serial 10, older than the serial 11 enforced before"),
        "{}",
        f.log()
    );

    // A primary back at serial 10 (restored from the same backup): its zone is not applied
    // over the 11 the order holds; its next serial is.
    let p = blocker_tests::fleet::ScriptedPrimary::start(&primary, "198.51.100.1:53", ZONE, 4);
    p.set(10, &["one.example"]);
    let err = wait_for(30, "the older zone is refused", || {
        let st = feed(&b, ORDER);
        match st["status"]["last_error"].as_str() {
            Some(e) if e.contains("older than the enforced 11") => Ok(e.to_string()),
            _ => Err(format!("{st}\n{}", f.log())),
        }
    });
    assert!(err.contains("serial 10"), "{err}");
    assert_eq!(explain(&b, "two.example"), "nxdomain", "{}", f.log());
    p.set(12, &["one.example", "two.example", "three.example"]);
    wait_serial(&b, ORDER, 12, Instant::now(), &f);
    assert_eq!(explain(&b, "three.example"), "nxdomain");
    assert_eq!(explain(&b, "two.example"), "nxdomain");
}

/// Where the one edge of [`one_edge_notified`] listens for NOTIFY.
const NOTIFY_LISTEN: &str = "198.51.100.2:5353";

/// Knot in `primary` (198.51.100.1) serving `entries` and notifying one edge at
/// [`NOTIFY_LISTEN`], and that edge's blocker with a feed of the zone (not yet following).
fn one_edge_notified(primary: &NetNs, entries: &[(String, &str)]) -> (Knot, Blocker) {
    one_edge_notified_with(primary, entries, |_| ())
}

/// [`one_edge_notified`], with `first` run on the edge's blocker before its feed is added.
fn one_edge_notified_with(
    primary: &NetNs,
    entries: &[(String, &str)],
    first: impl FnOnce(&Blocker),
) -> (Knot, Blocker) {
    let knot = Knot::start(
        primary,
        &KnotSetup {
            zone: ZONE,
            text: &rpz_text(ZONE, entries),
            listen: &["198.51.100.1"],
            notify: &["198.51.100.2@5353"],
            allow: &["198.51.100.0/24"],
            key: None,
        },
    );
    let b = Blocker::new();
    first(&b);
    b.ok(&[
        "feed",
        "add",
        ORDER,
        "--zone",
        ZONE,
        "--primary",
        "198.51.100.1",
    ]);
    (knot, b)
}

/// `blocker follow` killed at each step of an IXFR applied as an edit (journal written,
/// changed names written, flipped, committed): the edge enforces either the old serial or
/// the new one, whole — never a part of the difference — and the follower started again
/// brings it to the new serial, with the state directory and the kernel in agreement.
#[test]
fn a_follower_killed_during_an_ixfr_comes_back_to_one_serial_whole() {
    let primary = NetNs::new("blkp");
    let edge_ns = NetNs::new("blke");
    link(&primary, "198.51.100.1/30", &edge_ns, "198.51.100.2/30");
    let names = |round: usize| -> Vec<(String, &'static str)> {
        // Round r removes k{r-1}*, adds k{r}* and keeps the rest.
        (0..40)
            .map(|i| (format!("stay{i}.example"), "."))
            .chain((0..20).map(|i| (format!("k{round}n{i}.example"), ".")))
            .collect()
    };
    let (knot, b) = one_edge_notified(&primary, &names(0));
    let listen = Some(NOTIFY_LISTEN);
    let f = Follow::start(&b, &edge_ns, listen);
    let mut s = knot.serial().expect("serial");
    wait_serial(&b, ORDER, s, Instant::now(), &f);
    drop(f);
    // Which of two consecutive rounds the edge enforces (panics on a mixture).
    let enforced_round = |b: &Blocker, old: usize, new: usize| -> usize {
        let old_in = explain(b, &format!("k{old}n0.example")) == "nxdomain";
        let new_in = explain(b, &format!("k{new}n0.example")) == "nxdomain";
        for i in 0..20 {
            assert_eq!(
                explain(b, &format!("k{old}n{i}.example")) == "nxdomain",
                old_in,
                "round {old} whole or not at all"
            );
            assert_eq!(
                explain(b, &format!("k{new}n{i}.example")) == "nxdomain",
                new_in,
                "round {new} whole or not at all"
            );
        }
        assert_eq!(explain(b, "stay7.example"), "nxdomain");
        assert!(old_in != new_in, "one round or the other");
        if new_in {
            new
        } else {
            old
        }
    };
    for (round, point) in ["journal", "inactive", "flip", "commit"].iter().enumerate() {
        let round = round + 1;
        let mut f = Follow::start_with(&b, &edge_ns, listen, &[("BLOCKER_TEST_CRASH_AT", point)]);
        wait_for(20, "the follower resumes", || {
            if f.log().contains("resuming at serial") {
                Ok(())
            } else {
                Err(f.log())
            }
        });
        knot.write_zone(&rpz_text(ZONE, &names(round)));
        knot.knotc(&["zone-reload", ZONE]);
        let log = f.wait_exit(20);
        assert!(log.contains("crash injected"), "{log}");
        let at = enforced_round(&b, round - 1, round);
        println!("killed at `{point}`: the edge enforces round {at} whole");
        let before = s;
        s = knot.serial().expect("serial");
        assert_ne!(before, s);
        // Started again: the new serial, whole, and the state directory agrees with the
        // kernel (explain checks it).
        let f = Follow::start(&b, &edge_ns, listen);
        wait_serial(&b, ORDER, s, Instant::now(), &f);
        assert_eq!(enforced_round(&b, round - 1, round), round, "{}", f.log());
        assert_eq!(feed(&b, ORDER)["status"]["last_transfer"]["rules"], 60);
    }
}

/// More IXFRs than the journals hold: the order's rules file and the saved copy are written
/// whole again along the way, and a restarted follower finds the copy it enforces.
#[test]
fn a_long_run_of_ixfrs_is_recorded_whole_again_and_resumes() {
    let primary = NetNs::new("blkp");
    let edge_ns = NetNs::new("blke");
    link(&primary, "198.51.100.1/30", &edge_ns, "198.51.100.2/30");
    let names = |round: usize| -> Vec<(String, &'static str)> {
        (0..30)
            .map(|i| (format!("stay{i}.example"), "."))
            .chain((0..5).map(|i| (format!("r{round}n{i}.example"), "rpz-drop.")))
            .collect()
    };
    let (knot, b) = one_edge_notified(&primary, &names(0));
    // Dual-stack, as `follow --help` suggests: the IPv4 primary's NOTIFY arrives from
    // ::ffff:198.51.100.1 (refused as from a stranger before 2026-12-07: every serial below
    // then waited for the SOA refresh, an hour).
    let listen = Some("[::]:5353");
    let mut f = Follow::start(&b, &edge_ns, listen);
    let mut s = knot.serial().expect("serial");
    wait_serial(&b, ORDER, s, Instant::now(), &f);
    let rounds = blocker::txn::MAX_DELTAS + 4;
    for round in 1..=rounds {
        s = knot.set_zone(&rpz_text(ZONE, &names(round)));
        wait_serial(&b, ORDER, s, Instant::now(), &f);
    }
    let st = feed(&b, ORDER);
    assert_eq!(
        st["status"]["ixfr_count"].as_u64(),
        Some(rounds as u64),
        "{st}"
    );
    assert!(!f.log().contains("applied whole"), "{}", f.log());
    // (More IXFRs than MAX_DELTAS and the copy's journal hold: both were written whole.)
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.state.join("state.json")).expect("state"))
            .expect("json");
    let deltas = state["orders"][0]["rules_deltas"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(deltas < blocker::txn::MAX_DELTAS, "{state}");
    let journal = std::fs::read_dir(b.state.join("feeds"))
        .expect("feeds")
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with(".ixfr"))
        .map_or(0, |d| std::fs::read_dir(d.path()).map_or(0, |r| r.count()));
    assert!(
        journal < 16,
        "the saved copy was written whole again: {journal}"
    );
    assert_eq!(explain(&b, &format!("r{rounds}n4.example")), "drop");
    assert_eq!(
        explain(&b, &format!("r{}n4.example", rounds - 1)),
        "pass (no rule)"
    );
    assert_eq!(explain(&b, "stay29.example"), "nxdomain");

    // Restarted: the copy (written whole, then journaled) is the one enforced.
    assert!(f.stop().success());
    let f = Follow::start(&b, &edge_ns, listen);
    wait_for(20, "follow resumes from the saved copy", || {
        let log = f.log();
        if log.contains(&format!("resuming at serial {s}")) {
            Ok(log)
        } else {
            Err(log)
        }
    });
    assert!(f.log().contains("already enforced"), "{}", f.log());
    assert_eq!(explain(&b, &format!("r{rounds}n0.example")), "drop");
}

/// A follower with only the unit's capabilities grows the maps when an IXFR needs more room
/// than they have: the edge's program (attached to its loopback with a capacity of 1,024)
/// is switched to maps of 2,048 and enforces the whole new serial, through the real program.
#[test]
fn a_follower_grows_the_maps_when_an_ixfr_needs_more_room() {
    let primary = NetNs::new("blkp");
    let edge_ns = NetNs::new("blke");
    link(&primary, "198.51.100.1/30", &edge_ns, "198.51.100.2/30");
    let names = |more: usize| -> Vec<(String, &'static str)> {
        (0..40)
            .map(|i| (format!("stay{i}.example"), "."))
            .chain((0..more).map(|i| (format!("more{i}.example"), ".")))
            .collect()
    };
    let (knot, b) = one_edge_notified_with(&primary, &names(0), |b| {
        b.ok(&[
            "attach",
            "--iface",
            "lo",
            "--netns",
            &edge_ns.name,
            "--mode",
            "skb",
            "--capacity",
            "1024",
        ]);
    });
    let capacity = || {
        aya::maps::MapData::from_pin(b.bpffs.join("BLK_RULES"))
            .expect("BLK_RULES")
            .info()
            .expect("info")
            .max_entries()
    };
    let blocked = |name: &str| {
        blocker_tests::testrun::query_once(&b, name).0 == blocker_tests::testrun::XDP_TX
    };
    let listen = Some(NOTIFY_LISTEN);
    let f = Follow::start(&b, &edge_ns, listen);
    let s0 = knot.serial().expect("serial");
    wait_serial(&b, ORDER, s0, Instant::now(), &f);
    assert_eq!(capacity(), 1024);
    assert!(blocked("stay3.example") && !blocked("more7.example"));

    // 40 rules in force and 1,100 new: 1,140 > 1,024.
    knot.write_zone(&rpz_text(ZONE, &names(1100)));
    knot.knotc(&["zone-reload", ZONE]);
    let s1 = wait_for(20, "Knot serves the new serial", || match knot.serial() {
        Some(s) if s != s0 => Ok(s),
        other => Err(format!("serial {other:?}")),
    });
    wait_serial(&b, ORDER, s1, Instant::now(), &f);
    let log = f.log();
    assert!(
        log.contains("the rule map grew from 1024 to 2048 rules"),
        "{log}"
    );
    assert_eq!(capacity(), 2048);
    for name in ["stay3.example", "more0.example", "more1099.example"] {
        assert!(blocked(name), "{name} blocked by the grown maps");
    }
    assert_eq!(explain(&b, "more500.example"), "nxdomain");
    assert_eq!(feed(&b, ORDER)["status"]["last_transfer"]["rules"], 1140);
}

/// A serial that would block a public suffix is refused as `rules load` refuses it without
/// --force (nobody is there to force a transfer): the edge keeps its copy and says why; the
/// next serial without it is enforced. Every serial enforced is in the compliance record,
/// with the copy's SHA-256.
#[test]
fn a_serial_the_guards_refuse_is_not_applied_and_transfers_are_recorded() {
    let primary = NetNs::new("blkp");
    let edge_ns = NetNs::new("blke");
    link(&primary, "198.51.100.1/30", &edge_ns, "198.51.100.2/30");
    let v1: Vec<(String, &str)> = vec![("a.example".into(), "."), ("b.example".into(), ".")];
    let (knot, b) = one_edge_notified(&primary, &v1);
    let f = Follow::start(&b, &edge_ns, Some(NOTIFY_LISTEN));
    let s1 = knot.serial().expect("serial");
    wait_serial(&b, ORDER, s1, Instant::now(), &f);

    let mut v2 = v1.clone();
    v2.extend([("co.uk".to_string(), "."), ("c.example".to_string(), ".")]);
    let s2 = knot.set_zone(&rpz_text(ZONE, &v2));
    let err = wait_for(30, "the guards refuse the serial", || {
        let st = feed(&b, ORDER);
        match st["status"]["last_error"].as_str() {
            Some(e) if e.contains(&format!("serial {s2}")) => Ok(e.to_string()),
            _ => Err(format!("{st}\n{}", f.log())),
        }
    });
    assert!(
        err.contains("refused by the guards") && err.contains("co.uk is a public suffix"),
        "{err}"
    );
    assert_eq!(
        feed(&b, ORDER)["status"]["serial"],
        s1,
        "the copy before it"
    );
    assert_eq!(explain(&b, "c.example"), "pass (no rule)");
    assert_eq!(explain(&b, "www.co.uk"), "pass (no rule)");

    let mut v3 = v1.clone();
    v3.push(("c.example".to_string(), "."));
    let s3 = knot.set_zone(&rpz_text(ZONE, &v3));
    wait_serial(&b, ORDER, s3, Instant::now(), &f);
    assert_eq!(explain(&b, "c.example"), "nxdomain");

    let report: serde_json::Value =
        serde_json::from_str(&b.ok(&["report", "--order", ORDER, "--format", "json"]))
            .expect("json");
    let changes = report["orders"][0]["changes"]
        .as_array()
        .expect("changes")
        .clone();
    let follows: Vec<&serde_json::Value> = changes
        .iter()
        .filter(|c| {
            c["command"]
                .as_str()
                .is_some_and(|c| c.starts_with("follow "))
        })
        .collect();
    assert_eq!(follows.len(), 2, "{report}");
    for (c, s) in follows.iter().zip([s1, s3]) {
        assert_eq!(
            c["ticket"].as_str(),
            Some(format!("rpz {ZONE} serial {s}").as_str()),
            "{c}"
        );
        assert!(c["enforced"].is_string(), "{c}");
        let sha = c["files"][0]["sha256"].as_str().unwrap_or_default();
        assert_eq!(sha.len(), 64, "{c}");
    }
    assert!(
        follows[1]["command"]
            .as_str()
            .is_some_and(|c| c.contains(&format!("{s1}→{s3}")) || c.contains("AXFR")),
        "{}",
        follows[1]
    );
}

/// RFC 8945 lets a primary sign only every hundredth message of a transfer, so a transfer is
/// authenticated only at its end, when the last message is found signed. Someone on the path
/// who takes the signatures off every message after the first (and could have replaced
/// them) gets nothing applied; the same transfer with its signatures is enforced.
#[test]
fn a_transfer_whose_end_is_unsigned_is_refused() {
    let primary = NetNs::new("blkp");
    let edge_ns = NetNs::new("blke");
    link(&primary, "198.51.100.1/30", &edge_ns, "198.51.100.2/30");
    let key = TsigKey {
        name: "edge-xfr".into(),
        algorithm: "hmac-sha256".into(),
        secret: "Zm9sbG93LXRoZS1yZWd1bGF0b3Itc2VjcmV0LWtleQ==".into(),
    };
    // Many messages.
    let v1 = entries((0..3000).map(|i| (format!("s{i}.example"), ".")));
    let knot = Knot::start(
        &primary,
        &KnotSetup {
            zone: ZONE,
            text: &rpz_text(ZONE, &v1),
            listen: &["198.51.100.1"],
            notify: &[],
            allow: &["198.51.100.0/24"],
            key: Some(&key),
        },
    );
    let s1 = knot.serial().expect("serial");
    let proxy = CutProxy::start(&primary, "198.51.100.1:5300", "198.51.100.1:53");
    proxy
        .strip_tsig
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let b = Blocker::new();
    let keys = blocker_tests::env::TempDir::new("blkt-keys");
    let right = keys.write(
        "right.key",
        &format!("{}:{}:{}\n", key.algorithm, key.name, key.secret),
    );
    b.ok(&[
        "feed",
        "add",
        ORDER,
        "--zone",
        ZONE,
        "--primary",
        "198.51.100.1:5300",
        "--tsig-key",
        &right,
        "--refresh",
        "1",
    ]);
    let f = Follow::start(&b, &edge_ns, None);
    let err = wait_for(30, "the unsigned end is reported", || {
        let st = feed(&b, ORDER);
        match (st["status"]["last_error"].as_str(), &st["status"]["serial"]) {
            (Some(e), serde_json::Value::Null) if e.contains("AXFR") => Ok(e.to_string()),
            _ => Err(format!("{st}\n{}", f.log())),
        }
    });
    println!("signatures taken off: {err}");
    assert!(err.contains("TSIG"), "{err}");
    assert_eq!(
        explain(&b, "s0.example"),
        "pass (no rule)",
        "nothing applied"
    );

    proxy
        .strip_tsig
        .store(false, std::sync::atomic::Ordering::Relaxed);
    wait_serial(&b, ORDER, s1, Instant::now(), &f);
    assert_eq!(explain(&b, "s2999.example"), "nxdomain");
}

/// Two primaries, the first one behind: the edge asks the next one when the first has
/// nothing newer, as BIND does, and follows the newer serial. A primary rebuilt with a lower
/// serial is not transferred from, and the status says so instead of "current".
#[test]
fn a_primary_behind_does_not_hold_the_edge_back() {
    let primary = NetNs::new("blkp");
    let edge_ns = NetNs::new("blke");
    link(&primary, "198.51.100.1/30", &edge_ns, "198.51.100.2/30");
    let a = blocker_tests::fleet::ScriptedPrimary::start(&primary, "198.51.100.1:53", ZONE, 4);
    let bp = blocker_tests::fleet::ScriptedPrimary::start(&primary, "198.51.100.1:5301", ZONE, 4);
    a.set(10, &["one.example"]);
    bp.set(10, &["one.example"]);
    let b = Blocker::new();
    b.ok(&[
        "feed",
        "add",
        ORDER,
        "--zone",
        ZONE,
        "--primary",
        "198.51.100.1",
        "--primary",
        "198.51.100.1:5301",
        "--refresh",
        "1",
    ]);
    let t0 = Instant::now();
    let f = Follow::start(&b, &edge_ns, None);
    wait_serial(&b, ORDER, 10, t0, &f);

    // Only the second primary has serial 11.
    bp.set(11, &["one.example", "two.example"]);
    wait_serial(&b, ORDER, 11, Instant::now(), &f);
    assert_eq!(explain(&b, "two.example"), "nxdomain");
    let st = feed(&b, ORDER);
    assert_eq!(
        st["status"]["last_transfer"]["primary"], "198.51.100.1:5301",
        "{st}"
    );

    // The first primary rebuilt at serial 5: kept at 11, and said.
    a.set(5, &["other.example"]);
    let err = wait_for(20, "the older primary is reported", || {
        let st = feed(&b, ORDER);
        match st["status"]["last_error"].as_str() {
            Some(e) if e.contains("serves serial 5") => Ok(e.to_string()),
            _ => Err(format!("{st}\n{}", f.log())),
        }
    });
    assert!(err.contains("older than the enforced 11"), "{err}");
    assert_eq!(feed(&b, ORDER)["status"]["serial"], 11);
    assert_eq!(explain(&b, "other.example"), "pass (no rule)");

    // The second primary's next serial is refused (a public suffix): the first primary
    // answering with nothing newer does not make the edge look current.
    bp.set(12, &["one.example", "two.example", "co.uk"]);
    let st = wait_for(20, "the refused serial stays in the status", || {
        let st = feed(&b, ORDER);
        match st["status"]["last_error"].as_str() {
            Some(e) if e.contains("refused by the guards") => Ok(st),
            _ => Err(format!("{st}\n{}", f.log())),
        }
    });
    assert_eq!(st["status"]["serial"], 11, "{st}");
    assert_eq!(st["status"]["primary_serial"], 12, "{st}");
    assert!(st["status"]["failures"].as_u64() >= Some(1), "{st}");
    assert!(st["lag"].as_u64().is_some(), "{st}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let st = feed(&b, ORDER);
    assert!(
        st["status"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused by the guards")),
        "still said after more refreshes: {st}"
    );
}
