//! List replacement under traffic: while a 200,000-name order is replaced by another, queries
//! keep flowing. No allowed query may ever be answered by blocker or lost, a name in both
//! lists is blocked throughout, and once the load returns every name of the new list is
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
        "n1.new.test. 300 IN A 192.0.2.66",
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
        let mut log: Vec<(Instant, &'static str, Outcome)> = Vec::new();
        let mut id = 0u16;
        while !d2.load(Ordering::Relaxed) {
            for name in ["allowed.test", "stable.big.test", "n1.new.test"] {
                id = id.wrapping_add(1);
                let sent = Instant::now();
                log.push((sent, name, ask(&sock, id, name)));
            }
        }
        log
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
    let log = traffic.join().expect("traffic thread");
    drop(dir);

    let during = log.iter().filter(|(s, _, _)| *s >= t0 && *s < ret).count();
    assert!(
        during > 10,
        "too few queries while the list was replaced ({during}); the test would prove nothing"
    );
    for (sent, name, outcome) in &log {
        match *name {
            "allowed.test" => assert_eq!(
                *outcome,
                Outcome::Resolved,
                "allowed query at {:?}",
                sent.duration_since(t0)
            ),
            "stable.big.test" => assert_eq!(
                *outcome,
                Outcome::Blocked,
                "name in both lists at {:?}",
                sent.duration_since(t0)
            ),
            _ => {
                if *sent >= ret {
                    assert_eq!(
                        *outcome,
                        Outcome::Blocked,
                        "new name leaked after the load returned"
                    );
                } else if *sent < t0 {
                    assert_eq!(
                        *outcome,
                        Outcome::Resolved,
                        "new name blocked before its load started"
                    );
                } else {
                    assert_ne!(
                        *outcome,
                        Outcome::Lost,
                        "a query was lost during the switch"
                    );
                }
            }
        }
    }
    println!(
        "{} queries, {during} while {} names were replaced in {:?}",
        log.len(),
        N,
        ret - t0
    );
}
