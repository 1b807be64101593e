//! End to end: kdig in a client namespace, unbound in an edge namespace, blocker attached to
//! the edge veth by the real CLI. Every action is observed as a resolver client sees it, over
//! IPv4 and IPv6, with and without VLAN tags, in native and generic (skb) XDP mode; unbound's
//! own counter shows that no blocked query reached it.

use std::time::Duration;

use blocker_tests::{
    dns,
    env::{kdig, Blocker, Topology, EDGE_V4, EDGE_V6},
    packet::{self, Frame},
    raw,
};
use hickory_proto::rr::RecordType;

const ORDER: &str = "Tribunale-Milano-RG-12345-2026";
const TEXT: &str = "Court of Milan, RG 12345/2026";

const LOCAL_DATA: &[&str] = &[
    "allowed.test. 300 IN A 192.0.2.10",
    "allowed.test. 300 IN AAAA 2001:db8::10",
    "blocked.test. 300 IN A 192.0.2.66",
    "www.blocked.test. 300 IN A 192.0.2.66",
    "exact.test. 300 IN A 192.0.2.66",
    "www.exact.test. 300 IN A 192.0.2.67",
    "a.wild.test. 300 IN A 192.0.2.66",
    "sink.test. 300 IN A 192.0.2.66",
    "tc.test. 300 IN A 192.0.2.66",
    "drop.test. 300 IN A 192.0.2.66",
];

fn setup(mode: &str) -> (Topology, Blocker) {
    let mut t = Topology::new();
    t.start_unbound(LOCAL_DATA);
    let b = Blocker::new();
    let out = t.attach(&b, mode);
    assert!(
        out.contains(&format!("attached ({mode})")),
        "attach output: {out}"
    );
    let dir = blocker_tests::env::TempDir::new("blkt-e2e");
    let list = dir.join("order.txt");
    std::fs::write(&list, "# court order\nblocked.test\n").expect("list");
    b.ok(&[
        "rules",
        "load",
        list.to_str().expect("utf-8"),
        "--order",
        ORDER,
        "--ede-text",
        TEXT,
    ]);
    drop(dir);
    for (name, action, extra) in [
        ("exact.test", "refused", None),
        ("*.wild.test", "nodata", None),
        ("sink.test", "sinkhole", Some("--subtree")),
        ("tc.test", "tc", Some("--subtree")),
        ("drop.test", "drop", Some("--subtree")),
    ] {
        let mut args = vec!["rules", "add", name, "--action", action, "--order", ORDER];
        args.extend(extra);
        b.ok(&args);
    }
    b.ok(&[
        "config",
        "set",
        "--sinkhole-v4",
        "192.0.2.99",
        "--sinkhole-v6",
        "2001:db8::99",
        "--sinkhole-ttl",
        "30",
    ]);
    (t, b)
}

const Q: &[&str] = &["+retry=0", "+timeout=2"];

fn scenario(mode: &str) {
    let (t, b) = setup(mode);
    let before = t.unbound_queries();
    let mut answered = 0u64;
    for server in [EDGE_V4, EDGE_V6] {
        // Blocked, EDNS: NXDOMAIN with EDE 16 naming the order.
        let r = kdig(
            &t.client,
            server,
            "wWw.BloCKed.TeSt",
            "A",
            &[Q[0], Q[1], "+edns"],
        );
        assert_eq!(r.status.as_deref(), Some("NXDOMAIN"), "{server}: {}", r.raw);
        assert_eq!(r.ede, Some((16, TEXT.to_string())), "{server}: {}", r.raw);
        // kdig prints names folded; the byte-for-byte echo of 0x20 case is checked by the
        // BPF_PROG_TEST_RUN fixtures. kdig itself rejects an answer whose question differs.
        assert_eq!(
            r.question.to_ascii_lowercase(),
            "www.blocked.test.",
            "{}",
            r.raw
        );
        assert!(
            r.flags.contains("qr") && r.flags.contains("ra") && r.flags.contains("rd"),
            "flags {}",
            r.flags
        );
        // Blocked, no EDNS: NXDOMAIN without OPT.
        let r = kdig(&t.client, server, "blocked.test", "AAAA", Q);
        assert_eq!(r.status.as_deref(), Some("NXDOMAIN"), "{}", r.raw);
        assert!(
            r.ede.is_none() && !r.raw.contains("EDNS PSEUDOSECTION"),
            "{}",
            r.raw
        );
        // Exact rule: REFUSED; the name below is not covered.
        let r = kdig(&t.client, server, "exact.test", "A", Q);
        assert_eq!(r.status.as_deref(), Some("REFUSED"), "{}", r.raw);
        let r = kdig(&t.client, server, "www.exact.test", "A", Q);
        assert_eq!(
            r.answers,
            vec![("A".to_string(), "192.0.2.67".to_string())],
            "{}",
            r.raw
        );
        // Below rule: NODATA.
        let r = kdig(
            &t.client,
            server,
            "a.wild.test",
            "A",
            &[Q[0], Q[1], "+edns"],
        );
        assert_eq!(r.status.as_deref(), Some("NOERROR"), "{}", r.raw);
        assert!(r.answers.is_empty() && r.ede.is_some(), "{}", r.raw);
        // Sinkhole: A and AAAA get the configured addresses.
        let r = kdig(&t.client, server, "sink.test", "A", Q);
        assert_eq!(
            r.answers,
            vec![("A".to_string(), "192.0.2.99".to_string())],
            "{}",
            r.raw
        );
        let r = kdig(
            &t.client,
            server,
            "cdn.sink.test",
            "AAAA",
            &[Q[0], Q[1], "+edns"],
        );
        assert_eq!(
            r.answers,
            vec![("AAAA".to_string(), "2001:db8::99".to_string())],
            "{}",
            r.raw
        );
        // TC: the client sees a truncated answer (kdig told not to retry over TCP).
        let r = kdig(&t.client, server, "tc.test", "A", &[Q[0], Q[1], "+ignore"]);
        assert!(
            r.flags.split_whitespace().any(|f| f == "tc"),
            "flags {}: {}",
            r.flags,
            r.raw
        );
        // Drop: no answer at all.
        let r = kdig(
            &t.client,
            server,
            "drop.test",
            "A",
            &["+retry=0", "+timeout=1"],
        );
        assert!(
            r.status.is_none(),
            "a dropped query got an answer: {}",
            r.raw
        );
        answered += 8;
    }
    // Only www.exact.test (not covered by the exact rule) reached unbound, once per family.
    assert_eq!(
        t.unbound_queries(),
        before + 2,
        "unbound received a blocked query"
    );

    // Allowed names reach unbound and get its answer.
    for server in [EDGE_V4, EDGE_V6] {
        let r = kdig(&t.client, server, "allowed.test", "A", Q);
        assert_eq!(
            r.answers,
            vec![("A".to_string(), "192.0.2.10".to_string())],
            "{}",
            r.raw
        );
        let r = kdig(
            &t.client,
            server,
            "allowed.test",
            "AAAA",
            &[Q[0], Q[1], "+edns"],
        );
        assert_eq!(
            r.answers,
            vec![("AAAA".to_string(), "2001:db8::10".to_string())],
            "{}",
            r.raw
        );
    }
    assert_eq!(
        t.unbound_queries(),
        before + 6,
        "allowed queries reach unbound"
    );

    // The counters tell the same story.
    let s = b.stats();
    let r = &s["reasons"];
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    assert_eq!(n("nxdomain"), 4);
    assert_eq!(n("refused"), 2);
    assert_eq!(n("nodata"), 2);
    assert_eq!(n("sinkhole"), 4);
    assert_eq!(n("tc"), 2);
    assert_eq!(n("dropped"), 2);
    assert_eq!(n("rewrite_failed"), 0);
    assert!(n("no_match") >= 6, "allowed queries counted: {r}");
    let order = s["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .find(|o| o["name"] == ORDER)
        .cloned()
        .expect("order");
    assert_eq!(
        order["hits"].as_u64(),
        Some(answered),
        "order hits: {order}"
    );
}

#[test]
fn native_mode() {
    scenario("native");
}

#[test]
fn skb_mode() {
    scenario("skb");
}

/// Tagged queries sent on the wire (raw frames from the client namespace) to the attached
/// program: answered with the tags preserved, over IPv4 and IPv6.
fn tagged(mode: &str, tags: &[(u16, u16)]) {
    let (t, b) = setup(mode);
    let cmac = raw::mac(&t.client.name, &t.client_dev);
    let emac = raw::mac(&t.edge.name, &t.edge_dev);
    for v6 in [false, true] {
        let q = dns::query(
            0x7777,
            "wWw.Blocked.test.",
            RecordType::A,
            Some((true, vec![])),
        );
        let mut f = if v6 {
            Frame::v6(q.clone())
        } else {
            Frame::v4(q.clone())
        };
        f.vlans = tags.to_vec();
        let mut bytes = f.bytes();
        bytes[0..6].copy_from_slice(&emac);
        bytes[6..12].copy_from_slice(&cmac);
        let answer = raw::exchange(
            &t.client.name,
            &t.client_dev,
            &bytes,
            Duration::from_secs(2),
            |fr| {
                std::panic::catch_unwind(|| packet::parse(fr))
                    .ok()
                    .and_then(|r| r.ok())
                    .is_some_and(|p| p.sport == 53)
            },
        )
        .unwrap_or_else(|| panic!("no answer to a tagged query (v6: {v6}, tags {tags:?})"));
        let p = packet::parse(&answer).expect("answer frame with valid checksums");
        assert_eq!(p.vlans, tags, "tags preserved");
        assert_eq!((p.dst_mac, p.src_mac), (cmac, emac), "MACs swapped");
        let d = dns::parse(&p.dns);
        assert_eq!(d.rcode, 3);
        assert_eq!(
            d.question,
            q[12..dns::question_end(&q)].to_vec(),
            "question echoed byte for byte"
        );
        assert_eq!(d.ede, vec![(16, TEXT.to_string())]);
    }
    assert_eq!(b.stats()["reasons"]["nxdomain"].as_u64(), Some(2));
}

#[test]
fn native_8021q_on_the_wire() {
    tagged("native", &[(0x8100, 42)]);
}

#[test]
fn native_qinq_on_the_wire() {
    tagged("native", &[(0x88a8, 100), (0x8100, 42)]);
}

#[test]
fn skb_8021q_on_the_wire() {
    tagged("skb", &[(0x8100, 42)]);
}

/// Response rate limiting on the wire: a flood of queries for a blocked name from spoofed
/// addresses inside one /24 (raw frames from the client namespace; the veth hands every
/// answer back whatever its destination) gets at most `burst + rate × elapsed` full answers
/// per CPU, some TC=1 slips, and far fewer replies than queries; a client in another prefix
/// asking during the flood gets the normal NXDOMAIN with the order's EDE.
#[test]
fn rrl_limits_a_spoofed_flood() {
    const RATE: u64 = 20;
    const BURST: u64 = 10;
    const SLIP: u64 = 4;
    const FRAMES: usize = 4000;
    let (t, b) = setup("native");
    b.ok(&[
        "config",
        "set",
        "--rrl-rate",
        &RATE.to_string(),
        "--rrl-burst",
        &BURST.to_string(),
        "--rrl-slip",
        &SLIP.to_string(),
    ]);
    let cmac = raw::mac(&t.client.name, &t.client_dev);
    let emac = raw::mac(&t.edge.name, &t.edge_dev);
    // 198.51.100.0/24 (TEST-NET-2): not the client's own prefix (192.0.2.0/24).
    let frames: Vec<Vec<u8>> = (0..FRAMES)
        .map(|i| {
            let q = dns::query(i as u16, "www.blocked.test.", RecordType::A, None);
            let mut f = Frame::v4(q);
            f.sport = 1024 + i as u16;
            f.ip = packet::Ip::V4 {
                src: [198, 51, 100, 1 + (i % 254) as u8],
                dst: [192, 0, 2, 53],
                options: vec![],
                frag: 0,
                tot_len: None,
            };
            let mut bytes = f.bytes();
            bytes[0..6].copy_from_slice(&emac);
            bytes[6..12].copy_from_slice(&cmac);
            bytes
        })
        .collect();
    let before = b.stats();
    // Answers to the flood: IPv4, UDP from port 53, to 198.51.100.0/24.
    let to_flood = |f: &[u8]| {
        f.len() > 42
            && f[12..14] == [0x08, 0x00]
            && f[23] == 17
            && f[30..33] == [198, 51, 100]
            && f[34..36] == 53u16.to_be_bytes()
    };
    let (flood, during) = raw::flood(
        &t.client.name,
        &t.client_dev,
        &frames,
        4,
        Duration::from_millis(300),
        to_flood,
        || {
            kdig(
                &t.client,
                EDGE_V4,
                "www.blocked.test",
                "A",
                &[Q[0], Q[1], "+edns"],
            )
        },
    );
    assert_eq!(
        during.status.as_deref(),
        Some("NXDOMAIN"),
        "a client in another prefix, during the flood: {}",
        during.raw
    );
    assert_eq!(during.ede, Some((16, TEXT.to_string())), "{}", during.raw);
    assert!(
        !during.flags.split_whitespace().any(|f| f == "tc"),
        "{}",
        during.raw
    );

    let (mut full, mut slips) = (0u64, 0u64);
    for f in &flood.received {
        let p = packet::parse(f).unwrap_or_else(|e| panic!("answer frame: {e}"));
        let d = dns::parse(&p.dns);
        assert!(d.qr && d.answers.is_empty(), "{d:?}");
        if d.tc {
            assert_eq!(d.rcode, 0, "a slip is NOERROR");
            slips += 1;
        } else {
            assert_eq!(d.rcode, 3, "NXDOMAIN");
            full += 1;
        }
    }
    let cpus = aya::util::nr_cpus().expect("cpus") as u64;
    let secs = flood.elapsed.as_secs_f64();
    let bound = cpus * BURST + (cpus as f64 * RATE as f64 * secs).floor() as u64;
    let after = b.stats();
    let d = |k: &str| {
        after["reasons"][k].as_u64().unwrap_or(0) - before["reasons"][k].as_u64().unwrap_or(0)
    };
    println!(
        "sent {} in {secs:.2} s: {} replies ({full} answers, {slips} TC); kernel: nxdomain {}, \
         rrl_slipped {}, rrl_dropped {}; bound on answers {bound} ({cpus} CPUs)",
        flood.sent,
        flood.received.len(),
        d("nxdomain"),
        d("rrl_slipped"),
        d("rrl_dropped")
    );
    assert!(
        full >= BURST,
        "the first answers of the burst reach the client ({full})"
    );
    assert!(
        full <= bound,
        "{full} answers > {cpus} × ({BURST} + {RATE}/s × {secs:.2} s)"
    );
    // The kernel's own count (the kdig answer is one of them).
    assert!(
        d("nxdomain") <= bound + 1,
        "nxdomain counter {}",
        d("nxdomain")
    );
    assert!(slips > 0, "TC answers among the replies");
    assert!(slips <= d("rrl_slipped"));
    assert!(d("rrl_dropped") > 0);
    assert!(
        (flood.received.len() as f64) < flood.sent as f64 / 2.0,
        "{} replies to {} queries",
        flood.received.len(),
        flood.sent
    );
    // Every blocked query the program saw is accounted for by exactly one of the three.
    let order = |s: &serde_json::Value| {
        s["orders"]
            .as_array()
            .and_then(|o| o.iter().find(|o| o["name"] == ORDER).cloned())
            .and_then(|o| o["by_action"]["nxdomain"].as_u64())
            .unwrap_or(0)
    };
    assert_eq!(
        d("nxdomain") + d("rrl_slipped") + d("rrl_dropped"),
        order(&after) - order(&before),
        "each hit counted once, under its exit"
    );
}
