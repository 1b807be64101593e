//! List replacement under traffic: while a 200,000-name order is replaced by another, queries
//! keep flowing for many names of both lists. unbound answers every name under `old.test` and
//! `new.test` NOERROR (redirect zones), so an NXDOMAIN can only come from blocker. No allowed
//! query may ever be answered by blocker or lost, a name in both lists is blocked throughout,
//! and the switch is atomic: in every round of probes, taken in a few milliseconds, either all
//! old names are blocked and no new name, or all new names and no old one — an incremental
//! write would show a round with some of each — and once the load returns every new name is
//! blocked.

use std::{
    fs::File,
    net::UdpSocket,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use blocker_tests::{
    dns,
    env::{Blocker, Topology, CLIENT_V4, EDGE_V4},
};
use hickory_proto::rr::RecordType;

const N: usize = 200_000;
/// Names of each list probed in every round.
const PROBES: usize = 32;

/// One round of probes: when it started and ended, and (name is in the new list, outcome).
type Round = (Instant, Instant, Vec<(bool, Outcome)>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Blocked,
    Resolved,
    Lost,
}

fn ask(sock: &UdpSocket, id: u16, name: &str) -> Outcome {
    let q = dns::query(id, name, RecordType::A, None);
    if sock.send(&q).is_err() {
        return Outcome::Lost;
    }
    let mut buf = [0u8; 512];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                if n < 4 || u16::from_be_bytes([buf[0], buf[1]]) != id {
                    continue; // a late answer to an earlier query
                }
                return if buf[3] & 0x0f == 3 {
                    Outcome::Blocked
                } else {
                    Outcome::Resolved
                };
            }
            Err(_) => return Outcome::Lost,
        }
    }
}

#[test]
fn replacing_a_large_list_under_traffic() {
    let mut t = Topology::new();
    t.start_unbound(&[
        "allowed.test. 300 IN A 192.0.2.10",
        "stable.big.test. 300 IN A 192.0.2.66",
        "local-zone: \"old.test.\" redirect",
        "old.test. 300 IN A 192.0.2.67",
        "local-zone: \"new.test.\" redirect",
        "new.test. 300 IN A 192.0.2.68",
    ]);
    let b = Blocker::new();
    t.attach(&b, "native");
    // The traffic asks for blocked names as fast as it is answered, from one address: no
    // rate limit, so that every query has an answer to check.
    b.rrl_off();
    let dir = blocker_tests::env::TempDir::new("blkt-atomic");
    let old: String = std::iter::once("stable.big.test\n".to_string())
        .chain((0..N).map(|i| format!("n{i}.old.test\n")))
        .collect();
    let new: String = std::iter::once("stable.big.test\n".to_string())
        .chain((0..N).map(|i| format!("n{i}.new.test\n")))
        .collect();
    let (po, pn) = (dir.join("old.txt"), dir.join("new.txt"));
    std::fs::write(&po, old).expect("write");
    std::fs::write(&pn, new).expect("write");
    b.ok(&[
        "rules",
        "load",
        po.to_str().expect("utf-8"),
        "--order",
        "big",
        "--match",
        "exact",
    ]);

    let done = Arc::new(AtomicBool::new(false));
    let ns = t.client.name.clone();
    let d2 = done.clone();
    let traffic = std::thread::spawn(move || {
        let f = File::open(format!("/run/netns/{ns}")).expect("netns");
        // SAFETY: setns on an fd we own, in this thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let sock = UdpSocket::bind((CLIENT_V4, 0)).expect("bind");
        sock.connect((EDGE_V4, 53)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        // Names spread over both lists (the first, the last, and between).
        let probes: Vec<String> = (0..PROBES)
            .flat_map(|i| {
                let n = i * (N - 1) / (PROBES - 1);
                [format!("n{n}.old.test"), format!("n{n}.new.test")]
            })
            .collect();
        let mut log: Vec<(Instant, String, Outcome)> = Vec::new();
        let mut rounds: Vec<Round> = Vec::new();
        let mut id = 0u16;
        while !d2.load(Ordering::Relaxed) {
            for name in ["allowed.test", "stable.big.test"] {
                id = id.wrapping_add(1);
                let sent = Instant::now();
                log.push((sent, name.to_string(), ask(&sock, id, name)));
            }
            let start = Instant::now();
            let mut round = Vec::new();
            for name in &probes {
                id = id.wrapping_add(1);
                round.push((name.ends_with(".new.test"), ask(&sock, id, name)));
            }
            rounds.push((start, Instant::now(), round));
        }
        (log, rounds)
    });
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    b.ok(&[
        "rules",
        "load",
        pn.to_str().expect("utf-8"),
        "--order",
        "big",
        "--match",
        "exact",
    ]);
    let ret = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let (log, rounds) = traffic.join().expect("traffic thread");
    drop(dir);

    let during = rounds
        .iter()
        .filter(|(s, e, _)| *e >= t0 && *s < ret)
        .count();
    assert!(
        during > 3,
        "too few probe rounds while the list was replaced ({during}); the test would prove nothing"
    );
    for (sent, name, outcome) in &log {
        let at = sent.saturating_duration_since(t0);
        match name.as_str() {
            "allowed.test" => assert_eq!(*outcome, Outcome::Resolved, "allowed query at {at:?}"),
            _ => assert_eq!(*outcome, Outcome::Blocked, "name in both lists at {at:?}"),
        }
    }
    let (mut old_rounds, mut new_rounds) = (0, 0);
    for (start, end, round) in &rounds {
        let at = start.saturating_duration_since(t0);
        assert!(
            round.iter().all(|(_, o)| *o != Outcome::Lost),
            "a query was lost in the round at {at:?}"
        );
        let old_view = round
            .iter()
            .all(|(new, o)| (*o == Outcome::Blocked) != *new);
        let new_view = round
            .iter()
            .all(|(new, o)| (*o == Outcome::Blocked) == *new);
        let blocked_old = round
            .iter()
            .filter(|(n, o)| !n && *o == Outcome::Blocked)
            .count();
        let blocked_new = round
            .iter()
            .filter(|(n, o)| *n && *o == Outcome::Blocked)
            .count();
        if *end < t0 {
            assert!(
                old_view,
                "before the load: {blocked_old} old, {blocked_new} new blocked"
            );
        } else if *start >= ret {
            assert!(
                new_view,
                "after the load returned: {blocked_old} old, {blocked_new} new blocked"
            );
        } else if !(old_view || new_view) {
            // A round that straddles the flip sees the old set, then the new one: there is one
            // point before which every answer is the old set's and after which every answer is
            // the new set's — never a name of each state at random.
            let old_ok = |(n, o): &(bool, Outcome)| (*o == Outcome::Blocked) != *n;
            let new_ok = |(n, o): &(bool, Outcome)| (*o == Outcome::Blocked) == *n;
            let cut = round.iter().position(|p| !old_ok(p)).unwrap_or(round.len());
            assert!(
                round[cut..].iter().all(new_ok),
                "a mixed set at {at:?}: {blocked_old} old, {blocked_new} new names blocked: {}",
                round
                    .iter()
                    .map(|(n, o)| match (n, o) {
                        (false, Outcome::Blocked) => 'O',
                        (false, _) => 'o',
                        (true, Outcome::Blocked) => 'N',
                        (true, _) => 'n',
                    })
                    .collect::<String>()
            );
        }
        if old_view {
            old_rounds += 1;
        }
        if new_view {
            new_rounds += 1;
        }
    }
    assert!(old_rounds > 0 && new_rounds > 0, "both sets seen");
    println!(
        "{} rounds of {} probes ({old_rounds} old, {new_rounds} new), {during} while {} names were replaced in {:?}",
        rounds.len(),
        2 * PROBES,
        N,
        ret - t0
    );
}
