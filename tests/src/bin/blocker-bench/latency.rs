//! Update latency, seen from a client: a prober in the client namespace asks for a name over
//! and over (a new query as soon as the previous one is answered or 2 ms have passed) while
//! the CLI changes the rules, and notes when the answer first changes.
//!
//! - `blocker rules add NAME` — from the command's return to the first blocked answer (an
//!   answer carrying blocker's EDE; negative when the rule was enforced before the command
//!   had finished, which is the design: the map is written before the state is recorded).
//! - `blocker rules load` replacing a 1-million-name order with another — from the start of
//!   the command to the first answer blocked by the new list, and to the first answer no
//!   longer blocked by the old one (one flip: both change together).

use std::{
    net::UdpSocket,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use blocker_tests::{
    dns,
    env::{Blocker, Topology, EDGE_V4},
};
use hickory_proto::rr::RecordType;
use serde_json::{json, Value};

/// Asks for `name` until an answer's blocked-ness (EDE 16 present) equals `want`, or `stop`
/// is set, or 120 s pass. Returns when that answer arrived.
fn probe(netns: &str, name: &str, want: bool, stop: Arc<AtomicBool>) -> Option<Instant> {
    // setns applies to this thread only.
    let ns = std::fs::File::open(format!("/var/run/netns/{netns}")).ok()?;
    // SAFETY: setns on an fd we own, for the calling thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return None;
    }
    let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect((EDGE_V4, 53)).ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(2))).ok()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut buf = [0u8; 1500];
    let mut id: u16 = 0;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        id = id.wrapping_add(1);
        let q = dns::query(id, name, RecordType::A, Some((false, vec![])));
        if sock.send(&q).is_err() {
            continue;
        }
        while let Ok(n) = sock.recv(&mut buf) {
            if n < 12 || u16::from_be_bytes([buf[0], buf[1]]) != id {
                continue;
            }
            let at = Instant::now();
            let blocked = dns::parse(&buf[..n])
                .ede
                .iter()
                .any(|(code, _)| *code == 16);
            if blocked == want {
                return Some(at);
            }
            break;
        }
    }
    None
}

fn spawn_probe(
    topo: &Topology,
    name: &str,
    want: bool,
) -> (thread::JoinHandle<Option<Instant>>, Arc<AtomicBool>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (ns, name, s) = (topo.client.name.clone(), name.to_string(), stop.clone());
    let h = thread::spawn(move || probe(&ns, &name, want, s));
    // Let the prober send its first queries before the change starts.
    thread::sleep(Duration::from_millis(50));
    (h, stop)
}

fn ms(d: f64) -> f64 {
    (d * 1e6).round() / 1e3
}

/// Seconds from `a` to `b`, negative when `b` came first.
fn since(a: Instant, b: Instant) -> f64 {
    if b >= a {
        (b - a).as_secs_f64()
    } else {
        -(a - b).as_secs_f64()
    }
}

pub fn measure(blocker: &Blocker, adds: usize, reload_rules: usize) -> Value {
    let mut topo = Topology::new();
    topo.start_unbound(&["ok.example. 300 IN A 192.0.2.10"]);
    topo.attach(blocker, "native");
    // The probes ask for a blocked name in a tight loop from one address: no rate limit, so
    // an answer that stops being a block means the list changed.
    blocker.rrl_off();
    blocker.ok(&[
        "orders",
        "set",
        "--order",
        "latency",
        "--ede-text",
        "Latency order 1/2026",
    ]);

    // rules add.
    let mut add = Vec::new();
    for k in 0..adds {
        let name = format!("new{k}.latency.example");
        let (h, stop) = spawn_probe(&topo, &name, true);
        let start = Instant::now();
        blocker.ok(&["rules", "add", &name, "--order", "latency"]);
        let returned = Instant::now();
        let first = h.join().ok().flatten();
        stop.store(true, Ordering::Relaxed);
        let first = first.unwrap_or_else(|| panic!("{name} never answered as blocked"));
        add.push((since(start, returned), since(returned, first)));
    }
    add.sort_by(|a, b| a.1.total_cmp(&b.1));
    let visible: Vec<f64> = add.iter().map(|x| ms(x.1)).collect();
    let mut command: Vec<f64> = add.iter().map(|x| ms(x.0)).collect();
    command.sort_by(f64::total_cmp);
    eprintln!("  rules add: visible after return {visible:?} ms; command {command:?} ms");

    // A 1-million-name order replaced by another.
    let dir = blocker_tests::env::TempDir::new("blkb-lat");
    let list = |tag: &str| {
        let p = dir.join(format!("{tag}.txt"));
        let text: String = (0..reload_rules)
            .map(|i| format!("site{i}.{tag}{}.example\n", i % 997))
            .collect();
        std::fs::write(&p, text).expect("write list");
        p
    };
    let (old, new) = (list("old"), list("new"));
    let last = reload_rules - 1;
    let old_probe = format!("www.site{last}.old{}.example", last % 997);
    let new_probe = format!("www.site{last}.new{}.example", last % 997);
    blocker.ok(&[
        "rules",
        "load",
        &old.display().to_string(),
        "--order",
        "reload",
    ]);
    let (h_new, s_new) = spawn_probe(&topo, &new_probe, true);
    let (h_old, s_old) = spawn_probe(&topo, &old_probe, false);
    let start = Instant::now();
    blocker.ok(&[
        "rules",
        "load",
        &new.display().to_string(),
        "--order",
        "reload",
    ]);
    let returned = Instant::now();
    let new_at = h_new.join().ok().flatten();
    let old_at = h_old.join().ok().flatten();
    s_new.store(true, Ordering::Relaxed);
    s_old.store(true, Ordering::Relaxed);
    let new_at = new_at.expect("the new list was never enforced");
    let old_at = old_at.expect("the old list was never lifted");
    let reload = json!({
        "rules": reload_rules,
        "command_seconds": since(start, returned),
        "new_list_enforced_after_start_seconds": since(start, new_at),
        "old_list_lifted_after_start_seconds": since(start, old_at),
        "new_list_enforced_after_return_ms": ms(since(returned, new_at)),
    });
    eprintln!("  reload of {reload_rules} names: {reload}");
    json!({
        "rules_add": {
            "runs": adds,
            "visible_after_return_ms_median": visible[visible.len() / 2],
            "visible_after_return_ms_max": visible[visible.len() - 1],
            "visible_after_return_ms": visible,
            "command_ms_median": command[command.len() / 2],
        },
        "reload": reload,
    })
}
