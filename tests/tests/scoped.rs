//! Orders scoped in space and time, end to end: clients at several source prefixes (IPv4 and
//! IPv6 addresses of the client namespace, chosen with kdig's `-b`) query the same names
//! through blocker on the edge veth, with unbound behind it.
//!
//! - two orders on one name in two jurisdictions answer each with its own action and EDE text;
//!   a client in neither reaches unbound (counted `out_of_scope`);
//! - an allow exception scoped to one jurisdiction, ranked first, lets its clients through
//!   and no one else;
//! - an order whose validity window ends during the test stops being enforced with no command
//!   run (counted `not_in_force`);
//! - an order in shadow mode passes and counts (`shadowed`, its shadow hits);
//! - precedence decides between orders, as RPZ zone order does, in the data plane;
//! - the compliance report shows the times of the changes made here.
//!
//! Oracles: kdig's parse of real answers, unbound's own query counter, the kernel's counters.

use std::{thread::sleep, time::Duration};

use blocker_tests::env::{kdig, Blocker, TempDir, Topology, EDGE_V4, EDGE_V6};

const LOCAL_DATA: &[&str] = &[
    "torrent.test. 300 IN A 192.0.2.70",
    "www.torrent.test. 300 IN A 192.0.2.70",
    "ok.torrent.test. 300 IN A 192.0.2.71",
    "soon.test. 300 IN A 192.0.2.72",
    "trial.test. 300 IN A 192.0.2.73",
    "ranked.test. 300 IN A 192.0.2.74",
];

/// Client addresses: (source, jurisdiction it is in).
const IT_V4: &str = "192.0.2.1";
const BE_V4: &str = "192.0.2.17";
const NONE_V4: &str = "192.0.2.33";
const IT_V6: &str = "2001:db8::1";
const BE_V6: &str = "2001:db8::101";
const NONE_V6: &str = "2001:db8::201";

fn ask(t: &Topology, from: &str, name: &str) -> blocker_tests::env::Kdig {
    let server = if from.contains(':') { EDGE_V6 } else { EDGE_V4 };
    kdig(
        &t.client,
        server,
        name,
        "A",
        &["-b", from, "+edns", "+retry=0", "+timeout=2"],
    )
}

fn status_ede(k: &blocker_tests::env::Kdig) -> (Option<&str>, Option<&str>) {
    (
        k.status.as_deref(),
        k.ede.as_ref().map(|(_, text)| text.as_str()),
    )
}

#[test]
fn jurisdictions_windows_shadow_and_precedence_in_the_data_plane() {
    let mut t = Topology::new();
    // The other clients' addresses (the topology gives the client .1 and ::1).
    let dev = t.client_dev.clone();
    for a in ["192.0.2.17/24", "192.0.2.33/24"] {
        t.client.must("ip", &["addr", "add", a, "dev", &dev]);
    }
    for a in ["2001:db8::101/64", "2001:db8::201/64"] {
        t.client
            .must("ip", &["addr", "add", a, "dev", &dev, "nodad"]);
    }
    t.start_unbound(LOCAL_DATA);
    let b = Blocker::new();
    t.attach(&b, "native");
    // Many queries from few addresses: no rate limiting in the way.
    b.rrl_off();

    // Jurisdictions: one from the command line, one from a file.
    let dir = TempDir::new("blkt-scoped");
    b.ok(&[
        "jurisdictions",
        "set",
        "IT",
        "--prefix",
        "192.0.2.0/28",
        "--prefix",
        "2001:db8::/120",
    ]);
    let be = dir.write(
        "be.txt",
        "# Belgian clients\n192.0.2.16/28\n2001:db8::100/120  # v6\n",
    );
    b.ok(&["jurisdictions", "set", "BE", "--file", &be]);
    // A bad line names the file and the line, and changes nothing.
    let bad = dir.write("bad.txt", "192.0.2.64/26\n192.0.2.300/32\n");
    let err = b.fails(&["jurisdictions", "set", "BE", "--file", &bad]);
    assert!(err.contains(&format!("{bad}:2:")), "{err}");
    let list: serde_json::Value =
        serde_json::from_str(&b.ok(&["jurisdictions", "list", "--json"])).expect("json");
    let be_list = list
        .as_array()
        .expect("array")
        .iter()
        .find(|j| j["name"] == "BE")
        .expect("BE");
    assert_eq!(
        be_list["prefixes"], 2,
        "the refused file changed nothing: {list}"
    );

    // Two orders on one name, each for its own clients, with its own action and EDE text.
    let milan = dir.write("milan.txt", "torrent.test\n");
    b.ok(&[
        "rules",
        "load",
        &milan,
        "--order",
        "Milan",
        "--jurisdiction",
        "IT",
        "--ede-text",
        "Tribunale di Milano",
    ]);
    b.ok(&[
        "rules",
        "add",
        "torrent.test",
        "--subtree",
        "--order",
        "Brussels",
        "--action",
        "refused",
        "--jurisdiction",
        "BE",
        "--ede-text",
        "Brussels court",
    ]);
    // A scoped allow exception for Italian clients, ranked before every block.
    b.ok(&[
        "rules",
        "add",
        "ok.torrent.test",
        "--action",
        "pass",
        "--order",
        "IT-allow",
        "--jurisdiction",
        "IT",
        "--priority",
        "10",
    ]);

    let before = t.unbound_queries();
    let out_of_scope = b.reason("out_of_scope");
    for (it, be, none) in [(IT_V4, BE_V4, NONE_V4), (IT_V6, BE_V6, NONE_V6)] {
        let r = ask(&t, it, "www.torrent.test");
        assert_eq!(
            status_ede(&r),
            (Some("NXDOMAIN"), Some("Tribunale di Milano")),
            "{it}: {}",
            r.raw
        );
        let r = ask(&t, be, "www.torrent.test");
        assert_eq!(
            status_ede(&r),
            (Some("REFUSED"), Some("Brussels court")),
            "{be}: {}",
            r.raw
        );
        let r = ask(&t, none, "www.torrent.test");
        assert_eq!(r.status.as_deref(), Some("NOERROR"), "{none}: {}", r.raw);
        assert_eq!(
            r.answers,
            vec![("A".into(), "192.0.2.70".into())],
            "{}",
            r.raw
        );
        // The exception: Italian clients pass, Belgian ones are still refused.
        let r = ask(&t, it, "ok.torrent.test");
        assert_eq!(r.status.as_deref(), Some("NOERROR"), "{it}: {}", r.raw);
        assert_eq!(
            r.answers,
            vec![("A".into(), "192.0.2.71".into())],
            "{}",
            r.raw
        );
        let r = ask(&t, be, "ok.torrent.test");
        assert_eq!(status_ede(&r).0, Some("REFUSED"), "{be}: {}", r.raw);
    }
    assert_eq!(
        t.unbound_queries() - before,
        4,
        "only the unscoped client's queries and the excepted ones reached unbound"
    );
    assert_eq!(b.reason("out_of_scope") - out_of_scope, 2);
    let explain: serde_json::Value =
        serde_json::from_str(&b.ok(&["explain", "www.torrent.test", "--client", BE_V6, "--json"]))
            .expect("json");
    assert_eq!(explain["verdict"], "refused", "{explain}");
    assert_eq!(explain["order"], "Brussels", "{explain}");
    assert_eq!(explain["jurisdictions"][0], "BE", "{explain}");

    // Precedence: a block order and an allow order on one name; whichever ranks first
    // decides, in the data plane.
    b.ok(&["rules", "add", "ranked.test", "--order", "Block-R"]);
    b.ok(&[
        "rules",
        "add",
        "ranked.test",
        "--action",
        "pass",
        "--order",
        "Allow-R",
    ]);
    let r = ask(&t, NONE_V4, "ranked.test");
    assert_eq!(
        r.status.as_deref(),
        Some("NXDOMAIN"),
        "the older order first: {}",
        r.raw
    );
    b.ok(&["orders", "move", "Allow-R", "--before", "Block-R"]);
    let r = ask(&t, NONE_V4, "ranked.test");
    assert_eq!(
        r.status.as_deref(),
        Some("NOERROR"),
        "allow ranked first: {}",
        r.raw
    );
    // A policy override turns the allow order's rules into blocks.
    b.ok(&["orders", "set", "--order", "Allow-R", "--override", "drop"]);
    let r = ask(&t, NONE_V4, "ranked.test");
    assert!(r.status.is_none(), "dropped: {}", r.raw);
    b.ok(&["orders", "set", "--order", "Allow-R", "--override", "given"]);

    // Shadow mode: counted, not applied.
    b.ok(&[
        "rules",
        "add",
        "trial.test",
        "--order",
        "Trial",
        "--mode",
        "shadow",
    ]);
    let shadowed = b.reason("shadowed");
    let r = ask(&t, NONE_V4, "trial.test");
    assert_eq!(r.status.as_deref(), Some("NOERROR"), "{}", r.raw);
    assert_eq!(
        r.answers,
        vec![("A".into(), "192.0.2.73".into())],
        "{}",
        r.raw
    );
    assert_eq!(b.reason("shadowed") - shadowed, 1);
    let orders: serde_json::Value =
        serde_json::from_str(&b.ok(&["orders", "list", "--json"])).expect("json");
    let trial = orders
        .as_array()
        .expect("array")
        .iter()
        .find(|o| o["name"] == "Trial")
        .expect("Trial");
    assert_eq!(
        (trial["mode"].as_str(), trial["shadow_hits"].as_u64()),
        (Some("shadow"), Some(1))
    );
    assert_eq!(trial["hits"], 0, "{trial}");

    // A validity window that ends in a few seconds: enforced, then not, with no command run.
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4);
    b.ok(&[
        "rules",
        "add",
        "soon.test",
        "--order",
        "Expiring",
        "--valid-until",
        &until.to_string(),
    ]);
    let r = ask(&t, NONE_V6, "soon.test");
    assert_eq!(r.status.as_deref(), Some("NXDOMAIN"), "{}", r.raw);
    let not_in_force = b.reason("not_in_force");
    while jiff::Timestamp::now() < until + jiff::SignedDuration::from_millis(500) {
        sleep(Duration::from_millis(200));
    }
    let r = ask(&t, NONE_V6, "soon.test");
    assert_eq!(r.status.as_deref(), Some("NOERROR"), "expired: {}", r.raw);
    assert_eq!(
        r.answers,
        vec![("A".into(), "192.0.2.72".into())],
        "{}",
        r.raw
    );
    assert_eq!(b.reason("not_in_force") - not_in_force, 1);
    let orders = b.ok(&["orders", "list"]);
    assert!(
        orders
            .lines()
            .any(|l| l.contains("Expiring") && l.contains("expired")),
        "{orders}"
    );

    // The compliance record has the times of these changes.
    let report: serde_json::Value =
        serde_json::from_str(&b.ok(&["report", "--order", "Milan", "--format", "json"]))
            .expect("json");
    let milan = &report["orders"][0];
    assert_eq!(
        (milan["jurisdictions"][0].as_str(), milan["mode"].as_str()),
        (Some("IT"), Some("enforce")),
        "{report}"
    );
    // Its two hits (the Italian clients, over IPv4 and IPv6), sampled into hits per day.
    let per_day: u64 = milan["hits_per_day"]
        .as_object()
        .expect("hits per day")
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    assert_eq!(per_day, 2, "{report}");
    let changes = milan["changes"].as_array().expect("changes");
    assert_eq!(changes[0]["command"], "rules load", "{report}");
    assert!(changes[0]["enforced"].is_string(), "{report}");
    // A jurisdiction in use cannot be removed.
    let err = b.fails(&["jurisdictions", "remove", "IT"]);
    assert!(err.contains("Milan") && err.contains("IT-allow"), "{err}");
}

/// The gates hold windows in the kernel's TAI clock, converted with the TAI offset of the
/// moment they are written; NTP setting the offset later (0 at boot, 37 s once chrony reads
/// its leap-second table) would move every window. Here the kernel's gate is moved as such a
/// change moves it: the window opens early, `status` says by how much, and the next command
/// that opens the controller puts it back.
#[test]
fn windows_follow_a_change_of_the_kernels_tai_offset() {
    let mut t = Topology::new();
    t.start_unbound(LOCAL_DATA);
    let b = Blocker::new();
    t.attach(&b, "native");
    let from = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(600);
    b.ok(&[
        "rules",
        "add",
        "soon.test",
        "--order",
        "Later",
        "--valid-from",
        &from.to_string(),
    ]);
    b.ok(&["rules", "add", "other.test", "--order", "Other"]);
    let client = blocker_tests::env::CLIENT_V4;
    let r = ask(&t, client, "soon.test");
    assert_eq!(r.status.as_deref(), Some("NOERROR"), "not yet: {}", r.raw);

    // The offset "changes" by 37 minutes' worth of leap seconds, the window 37 min early.
    let shift = 37 * 60 * 1_000_000_000u64;
    let mut maps = blocker::kernel::Maps::open(&b.pins()).expect("maps");
    let mut gates = maps.gates().expect("gates");
    let mut moved = 0;
    for copy in gates.copies.iter_mut() {
        for g in copy.iter_mut() {
            if g.valid_from != 0 {
                g.valid_from -= shift;
                moved += 1;
            }
        }
    }
    assert_eq!(moved, 2, "the order's gate in both copies");
    maps.set_gates(&gates).expect("set gates");
    drop(maps);
    let r = ask(&t, client, "soon.test");
    assert_eq!(
        r.status.as_deref(),
        Some("NXDOMAIN"),
        "opened early: {}",
        r.raw
    );
    let st: serde_json::Value = serde_json::from_str(&b.ok(&["status", "--json"])).expect("json");
    assert_eq!(st["windows_off_by_s"].as_i64(), Some(-37 * 60), "{st}");

    // Any command that opens the controller rewrites the windows, even one that changes
    // nothing (a change rewrites every gate anyway).
    let out = b.ok(&["rules", "add", "other.test", "--order", "Other"]);
    assert!(out.contains("0 names changed"), "{out}");
    let st: serde_json::Value = serde_json::from_str(&b.ok(&["status", "--json"])).expect("json");
    assert!(st.get("windows_off_by_s").is_none(), "{st}");
    let r = ask(&t, client, "soon.test");
    assert_eq!(
        r.status.as_deref(),
        Some("NOERROR"),
        "back in place: {}",
        r.raw
    );
}
