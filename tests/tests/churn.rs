//! List churn: 1,000 rule updates through the CLI while queries flow. No allowed query is
//! ever answered by blocker or lost, and a name is blocked as soon as its `rules add` has
//! returned and resolves again as soon as its `rules remove` has returned.

use std::{
    fs::File,
    net::UdpSocket,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use blocker_tests::{
    dns,
    env::{kdig, Blocker, Topology, CLIENT_V4, EDGE_V4},
};
use hickory_proto::rr::RecordType;

const UPDATES: usize = 1000;

#[test]
fn a_thousand_updates_under_traffic() {
    let mut t = Topology::new();
    // Every name under churn.test resolves in unbound, so a block can only come from blocker.
    t.start_unbound(&[
        "allowed.test. 300 IN A 192.0.2.10",
        "local-zone: \"churn.test.\" redirect",
        "churn.test. 300 IN A 192.0.2.77",
    ]);
    let b = Blocker::new();
    t.attach(&b, "native");

    let done = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let ns = t.client.name.clone();
    let (d2, ok2, bad2) = (done.clone(), ok.clone(), bad.clone());
    let traffic = std::thread::spawn(move || {
        let f = File::open(format!("/run/netns/{ns}")).expect("netns");
        // SAFETY: setns on an fd we own, in this thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let sock = UdpSocket::bind((CLIENT_V4, 0)).expect("bind");
        sock.connect((EDGE_V4, 53)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let mut id = 0u16;
        let mut buf = [0u8; 512];
        while !d2.load(Ordering::Relaxed) {
            id = id.wrapping_add(1);
            sock.send(&dns::query(id, "allowed.test", RecordType::A, None))
                .expect("send");
            let answered = loop {
                match sock.recv(&mut buf) {
                    Ok(n) if n >= 4 && u16::from_be_bytes([buf[0], buf[1]]) == id => {
                        break Some(buf[3] & 0x0f)
                    }
                    Ok(_) => continue,
                    Err(_) => break None,
                }
            };
            match answered {
                Some(0) => ok2.fetch_add(1, Ordering::Relaxed),
                _ => bad2.fetch_add(1, Ordering::Relaxed),
            };
        }
    });

    let status = |name: &str| {
        kdig(&t.client, EDGE_V4, name, "A", &["+retry=0", "+timeout=2"])
            .status
            .unwrap_or_default()
    };
    for i in 0..UPDATES / 2 {
        let name = format!("n{i}.churn.test");
        b.ok(&["rules", "add", &name, "--order", "churn"]);
        assert_eq!(
            status(&name),
            "NXDOMAIN",
            "{name} leaked after its rules add returned"
        );
        b.ok(&["rules", "remove", &name, "--order", "churn"]);
        assert_eq!(
            status(&name),
            "NOERROR",
            "{name} still blocked after its rules remove returned"
        );
    }
    done.store(true, Ordering::Relaxed);
    traffic.join().expect("traffic");
    let (ok, bad) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    println!("{UPDATES} updates; {ok} allowed queries answered by unbound, {bad} not");
    assert_eq!(bad, 0, "allowed queries answered by blocker or lost");
    assert!(ok > 100, "too little traffic to prove anything ({ok})");
}
