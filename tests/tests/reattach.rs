//! Detach and re-attach under load: the pinned program, rules and counters are reused (no
//! reload, no reset), blocking stops while detached and resumes at once when re-attached.

use std::{
    fs::File,
    net::UdpSocket,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use blocker_tests::{
    dns,
    env::{kdig, Blocker, Topology, CLIENT_V4, EDGE_V4},
};
use hickory_proto::rr::RecordType;

fn order_hits(b: &Blocker) -> u64 {
    let s = b.stats();
    s["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .find(|o| o["name"] == "Court-R")
        .and_then(|o| o["hits"].as_u64())
        .unwrap_or(0)
}

fn program_id(b: &Blocker) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["status", "--json"])).expect("json");
    v["program_id"].as_u64().expect("program id")
}

#[test]
fn detach_and_attach_under_load_keep_state_and_counters() {
    let mut t = Topology::new();
    t.start_unbound(&[
        "bad.example. 300 IN A 192.0.2.66",
        "allowed.test. 300 IN A 192.0.2.10",
    ]);
    let b = Blocker::new();
    let iface = format!("{}@{}", t.edge_dev, t.edge.name);
    b.ok(&["attach", "--iface", &t.edge_dev, "--netns", &t.edge.name]);
    b.ok(&[
        "attach",
        "--iface",
        &t.client_dev,
        "--netns",
        &t.client.name,
        "--noop",
    ]);
    b.ok(&[
        "rules",
        "add",
        "bad.example",
        "--subtree",
        "--order",
        "Court-R",
    ]);
    // The load below and the kdig probes come from the same client address: without this
    // the load would use up the probes' rate limit.
    b.rrl_off();
    let id = program_id(&b);
    let rules_before = b.ok(&["rules", "list", "--json"]);

    // Load: a thread keeps asking for a blocked name.
    let done = Arc::new(AtomicBool::new(false));
    let ns = t.client.name.clone();
    let d2 = done.clone();
    let traffic = std::thread::spawn(move || {
        let f = File::open(format!("/run/netns/{ns}")).expect("netns");
        // SAFETY: setns on an fd we own, in this thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let sock = UdpSocket::bind((CLIENT_V4, 0)).expect("bind");
        sock.connect((EDGE_V4, 53)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        let mut id = 0u16;
        while !d2.load(Ordering::Relaxed) {
            id = id.wrapping_add(1);
            let _ = sock.send(&dns::query(id, "www.bad.example", RecordType::A, None));
            let _ = sock.recv(&mut buf);
        }
    });

    std::thread::sleep(Duration::from_millis(500));
    let hits1 = order_hits(&b);
    assert!(hits1 > 0, "the load is blocked");

    b.ok(&["detach", "--iface", &iface]);
    let r = kdig(
        &t.client,
        EDGE_V4,
        "bad.example",
        "A",
        &["+retry=0", "+timeout=2"],
    );
    assert_eq!(
        r.status.as_deref(),
        Some("NOERROR"),
        "detached: unbound answers: {}",
        r.raw
    );
    let hits2 = order_hits(&b);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(order_hits(&b), hits2, "nothing is counted while detached");
    assert!(hits2 >= hits1, "counters kept across the detach");

    b.ok(&["attach", "--iface", &t.edge_dev, "--netns", &t.edge.name]);
    let r = kdig(
        &t.client,
        EDGE_V4,
        "bad.example",
        "A",
        &["+retry=0", "+timeout=2"],
    );
    assert_eq!(
        r.status.as_deref(),
        Some("NXDOMAIN"),
        "re-attached: blocked again: {}",
        r.raw
    );
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    traffic.join().expect("traffic");
    assert!(
        order_hits(&b) > hits2,
        "counting resumes from where it was, not from zero"
    );
    assert_eq!(
        program_id(&b),
        id,
        "the pinned program is reused, not reloaded"
    );
    assert_eq!(
        b.ok(&["rules", "list", "--json"]),
        rules_before,
        "rules and their ids are kept"
    );
    let st: serde_json::Value = serde_json::from_str(&b.ok(&["status", "--json"])).expect("json");
    let ifs = st["interfaces"].as_array().expect("interfaces");
    assert!(
        ifs.iter()
            .any(|i| i["name"] == iface && i["attached"] == true),
        "{st}"
    );
}
