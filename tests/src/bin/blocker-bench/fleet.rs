//! A fleet following one RPZ: Knot DNS as the primary in its own namespace, three edges in
//! theirs (each with its own bpffs and state directories) running `blocker follow` with a
//! NOTIFY listener.
//!
//! - AXFR: the first edge starts alone on the whole zone; from the start of `blocker follow`
//!   to the feed's status saying the serial is enforced, and the follower's own split:
//!   transfer, then apply (to the flip and the rules recorded). The two other edges then
//!   transfer it together.
//! - IXFR: `changes` names change in the zone file (two fifths removed, one fifth given
//!   another action, two fifths added), `knotc zone-reload`: Knot computes the difference, keeps it in
//!   its journal and NOTIFYs the edges, which transfer it by IXFR. Per edge: NOTIFY →
//!   enforced as the follower measures it, and the time it spent applying; for the fleet:
//!   from `knotc zone-reload` to every edge enforcing the serial (which includes Knot's
//!   own reload of the zone), and from Knot serving the serial to every edge enforcing it.
//!
//! The edges' programs are loaded but not attached: what is measured is the way to the maps.

use std::{
    path::Path,
    thread::sleep,
    time::{Duration, Instant},
};

use blocker_tests::{
    env::NetNs,
    fleet::{link, Follow, Knot, KnotSetup},
};
use serde_json::{json, Value};

const ZONE: &str = "rpz.bench.test";
const ORDER: &str = "bench-feed";

/// What the fleet part measures.
pub struct Plan {
    pub records: usize,
    pub changes: usize,
    pub edges: usize,
    pub rounds: usize,
}

/// The zone file at `version`: `records` names (CNAME ., NXDOMAIN); round `v` (1 ≤ v ≤
/// `version`) changed the names `[v·changes, (v+1)·changes)` of that list: the first two
/// fifths removed, the next fifth given another action (CNAME *., NODATA), and added as many
/// new names as it removed. Versions v−1 and v differ by `changes` names.
fn zone_text(records: usize, version: usize, changes: usize) -> String {
    let mut s = String::with_capacity(records * 40);
    s.push_str(&format!(
        "$ORIGIN {ZONE}.\n$TTL 60\n@ SOA ns.{ZONE}. admin.{ZONE}. 1 3600 600 86400 60\n@ NS ns.{ZONE}.\n"
    ));
    let fifth = (changes / 5).max(1);
    for i in 0..records {
        let name = format!("site{i}.piracy{}.example", i % 997);
        let round = i / changes.max(1);
        if (1..=version).contains(&round) {
            match (i % changes) / fifth {
                0 | 1 => continue,
                2 => {
                    s.push_str(&format!("{name} CNAME *.\n"));
                    continue;
                }
                _ => {}
            }
        }
        s.push_str(&format!("{name} CNAME .\n"));
    }
    for v in 1..=version {
        for j in 0..2 * fifth {
            s.push_str(&format!("new{j}.v{v}.example CNAME .\n"));
        }
    }
    s
}

/// An edge of the bench fleet.
struct Edge {
    ns: NetNs,
    b: blocker_tests::env::Blocker,
    primary: String,
    addr: String,
}

/// The feed status an edge's follower last saved.
fn status(b: &blocker_tests::env::Blocker) -> Option<blocker::feed::FeedStatus> {
    blocker::feed::load_status(&b.state_dir(), ZONE)
}

/// Waits until `edge` enforces `serial` (polling its status file every 5 ms); the instant
/// it was first seen.
fn wait_enforced(b: &blocker_tests::env::Blocker, serial: u32, secs: u64, f: &Follow) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if status(b).and_then(|s| s.serial) == Some(serial) {
            return Instant::now();
        }
        if Instant::now() > deadline {
            panic!(
                "serial {serial} not enforced within {secs} s; follow log:\n{}",
                f.log()
            );
        }
        sleep(Duration::from_millis(5));
    }
}

/// Waits until every edge enforces `serial`, looking at all of them every 5 ms; when each
/// was first seen doing so.
fn wait_all(edges: &[Edge], follows: &[Follow], serial: u32, secs: u64) -> Vec<Instant> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seen: Vec<Option<Instant>> = vec![None; edges.len()];
    while seen.iter().any(Option::is_none) {
        for (i, e) in edges.iter().enumerate() {
            if seen[i].is_none() && status(&e.b).and_then(|s| s.serial) == Some(serial) {
                seen[i] = Some(Instant::now());
            }
        }
        if Instant::now() > deadline {
            let i = seen.iter().position(Option::is_none).unwrap_or(0);
            panic!(
                "edge {i}: serial {serial} not enforced within {secs} s; follow log:\n{}",
                follows[i].log()
            );
        }
        sleep(Duration::from_millis(5));
    }
    seen.into_iter().flatten().collect()
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

pub fn measure(bin: &Path, plan: &Plan) -> Value {
    assert!(
        plan.changes >= 5 && plan.changes * (plan.rounds + 1) <= plan.records,
        "each IXFR round changes its own {} of the {} names: at most {} changes",
        plan.changes,
        plan.records,
        plan.records / (plan.rounds + 1)
    );
    let primary = NetNs::new("blkbp");
    let edges: Vec<Edge> = (0..plan.edges)
        .map(|n| {
            let ns = NetNs::new("blkbe");
            let (p, e) = (
                format!("198.51.100.{}", 4 * n + 1),
                format!("198.51.100.{}", 4 * n + 2),
            );
            link(&primary, &format!("{p}/30"), &ns, &format!("{e}/30"));
            Edge {
                ns,
                b: crate::instance(bin),
                primary: p,
                addr: e,
            }
        })
        .collect();
    let notify: Vec<String> = edges.iter().map(|e| format!("{}@5353", e.addr)).collect();
    let notify: Vec<&str> = notify.iter().map(String::as_str).collect();
    let listen: Vec<&str> = edges.iter().map(|e| e.primary.as_str()).collect();
    let t = Instant::now();
    let text = zone_text(plan.records, 0, plan.changes);
    let knot = Knot::start(
        &primary,
        &KnotSetup {
            zone: ZONE,
            text: &text,
            listen: &listen,
            notify: &notify,
            allow: &["198.51.100.0/24"],
            key: None,
        },
    );
    drop(text);
    let s0 = knot.serial().expect("knot serves the zone");
    eprintln!(
        "  knot serves {} records (serial {s0}) after {:.1} s",
        plan.records + 2,
        t.elapsed().as_secs_f64()
    );
    for e in &edges {
        e.b.ok(&[
            "feed",
            "add",
            ORDER,
            "--zone",
            ZONE,
            "--primary",
            &e.primary,
        ]);
    }

    // AXFR: the first edge alone, then the others together.
    let listen_of = |e: &Edge| format!("{}:5353", e.addr);
    let t0 = Instant::now();
    let mut follows = vec![Follow::start(
        &edges[0].b,
        &edges[0].ns,
        Some(&listen_of(&edges[0])),
    )];
    let at = wait_enforced(&edges[0].b, s0, 300, &follows[0]);
    let axfr_first = at - t0;
    let st = status(&edges[0].b).expect("status");
    let report = st.last_transfer.clone().expect("a transfer");
    assert_eq!(report.kind, "axfr", "{report:?}");
    eprintln!(
        "  AXFR of {} records to one edge: enforced {:.2} s after `blocker follow` started (transfer {} ms, apply {} ms, {} rules)",
        report.records, axfr_first.as_secs_f64(), report.transfer_ms, report.apply_ms, report.rules
    );
    let axfr = json!({
        "records": report.records,
        "rules": report.rules,
        "enforced_after_start_seconds": secs(axfr_first),
        "transfer_ms": report.transfer_ms,
        "apply_ms": report.apply_ms,
    });
    let t0 = Instant::now();
    for e in &edges[1..] {
        follows.push(Follow::start(&e.b, &e.ns, Some(&listen_of(e))));
    }
    let ats = wait_all(&edges[1..], &follows[1..], s0, 600);
    let mut together = Vec::new();
    for (e, at) in edges[1..].iter().zip(ats) {
        let r = status(&e.b)
            .and_then(|s| s.last_transfer)
            .expect("transfer");
        together.push(json!({
            "enforced_after_start_seconds": secs(at - t0),
            "transfer_ms": r.transfer_ms,
            "apply_ms": r.apply_ms,
        }));
    }
    eprintln!(
        "  AXFR to the {} other edges at once: {together:?}",
        edges.len() - 1
    );

    // IXFR rounds.
    let mut rounds = Vec::new();
    let mut serial = s0;
    for round in 1..=plan.rounds {
        let text = zone_text(plan.records, round, plan.changes);
        knot.write_zone(&text);
        drop(text);
        // From here: Knot reloads, computes the difference, notifies; the edges transfer it.
        let t0 = Instant::now();
        knot.knotc(&["zone-reload", ZONE]);
        let knot_at = {
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                match knot.serial() {
                    Some(s) if s != serial => {
                        serial = s;
                        break Instant::now();
                    }
                    _ if Instant::now() > deadline => panic!("knot never served the new zone"),
                    // (kdig is a process: asked more often it would take CPU from the edges.)
                    _ => sleep(Duration::from_millis(20)),
                }
            }
        };
        let ats = wait_all(&edges, &follows, serial, 120);
        let last = ats.iter().max().copied().unwrap_or(t0);
        let per_edge: Vec<Value> = edges
            .iter()
            .zip(&ats)
            .map(|(e, at)| {
                let st = status(&e.b).expect("status");
                let r = st.last_transfer.clone().expect("transfer");
                assert_eq!(r.kind, "ixfr", "edge {}: {r:?}", e.addr);
                json!({
                    "notify_to_enforced_ms": st.notify_to_enforce_ms,
                    "reload_to_enforced_seconds": secs(*at - t0),
                    "transfer_ms": r.transfer_ms,
                    "apply_ms": r.apply_ms,
                    "records": r.records,
                    "names_changed": r.names_changed,
                })
            })
            .collect();
        let r = json!({
            "serial": serial,
            "knot_serves_after_reload_seconds": secs(knot_at - t0),
            "all_edges_enforce_after_reload_seconds": secs(last - t0),
            "all_edges_enforce_after_knot_serves_seconds": secs(last.saturating_duration_since(knot_at)),
            "edges": per_edge,
        });
        eprintln!("  IXFR round {round}: {r}");
        rounds.push(r);
    }
    let notify_ms: Vec<f64> = rounds
        .iter()
        .flat_map(|r| r["edges"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["notify_to_enforced_ms"].as_f64())
        .collect();
    let converge: Vec<f64> = rounds
        .iter()
        .map(|r| {
            r["all_edges_enforce_after_reload_seconds"]
                .as_f64()
                .unwrap_or(0.0)
        })
        .collect();
    let converge_knot: Vec<f64> = rounds
        .iter()
        .map(|r| {
            r["all_edges_enforce_after_knot_serves_seconds"]
                .as_f64()
                .unwrap_or(0.0)
        })
        .collect();
    let max_notify = notify_ms.iter().copied().fold(0.0, f64::max);
    // The followers' logs outlive their directories (RUST_LOG=info,blocker::feed=debug makes
    // them say where the time went).
    for (i, f) in follows.iter().enumerate() {
        let p = std::env::temp_dir().join(format!("blocker-bench-fleet-edge{i}.log"));
        if std::fs::write(&p, f.log()).is_ok() {
            eprintln!("  edge {i}: follow log in {}", p.display());
        }
    }
    drop(follows);
    json!({
        "records": plan.records,
        "changes": plan.changes,
        "edges": plan.edges,
        "axfr_one_edge": axfr,
        "axfr_other_edges_together": together,
        "ixfr_rounds": rounds,
        "ixfr_notify_to_enforced_ms_median": crate::median(&notify_ms).unwrap_or(0.0),
        "ixfr_notify_to_enforced_ms_max": max_notify,
        "convergence_after_reload_seconds_median": crate::median(&converge).unwrap_or(0.0),
        "convergence_after_knot_serves_seconds_median": crate::median(&converge_knot).unwrap_or(0.0),
    })
}
