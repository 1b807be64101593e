//! End to end: kdig in a client namespace, unbound in an edge namespace, blocker attached to
//! the edge veth by the real CLI. Every action is observed as a resolver client sees it, over
//! IPv4 and IPv6, with and without VLAN tags, in native and generic (skb) XDP mode; unbound's
//! own counter shows that no blocked query reached it.

use std::time::Duration;

use blocker_tests::{
    dns,
    env::{kdig, Blocker, Daemon, TempDir, Topology, CLIENT_V6, EDGE_V4, EDGE_V6},
    packet::{self, Frame},
    raw,
};
use hickory_proto::rr::{rdata::opt::EdnsOption, RecordType};

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
    // UDP, then a TCP data segment after its SYN (of a connection the client claims: the
    // program follows a connection from its SYN, and the reply shows what it does with a
    // tagged TCP query on the wire).
    for (v6, tcp) in [(false, false), (true, false), (false, true), (true, true)] {
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
        if tcp {
            let mut syn = if v6 {
                Frame::v6(vec![])
            } else {
                Frame::v4(vec![])
            }
            .over_tcp(packet::Tcp {
                seq: packet::Tcp::default().seq - 1,
                flags: 0x02,
                raw_payload: true,
                ..packet::Tcp::default()
            });
            syn.vlans = tags.to_vec();
            let mut bytes = syn.bytes();
            bytes[0..6].copy_from_slice(&emac);
            bytes[6..12].copy_from_slice(&cmac);
            raw::exchange(
                &t.client.name,
                &t.client_dev,
                &bytes,
                Duration::from_millis(50),
                |_| false,
            );
            f = f.over_tcp(packet::Tcp::default());
        }
        f.vlans = tags.to_vec();
        let answer = exchange_on_the_wire(&t, &f)
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
        if tcp {
            let a = p.tcp.as_ref().expect("answered over TCP");
            let q = packet::Tcp::default();
            assert_eq!((a.seq, a.flags), (q.ack, 0x19), "seq and FIN|PSH|ACK");
            assert_eq!(a.ack, q.seq + a_len(&f), "acknowledges the query");
        }
    }
    assert_eq!(b.stats()["reasons"]["nxdomain"].as_u64(), Some(4));
    assert_eq!(b.stats()["reasons"]["tcp_queries"].as_u64(), Some(2));
}

/// Sends `f` as a raw frame from the client's veth (the edge's and the client's MAC addresses
/// filled in); the first frame that comes back from port 53, tagged or not, within two
/// seconds.
fn exchange_on_the_wire(t: &Topology, f: &Frame) -> Option<Vec<u8>> {
    let mut bytes = f.bytes();
    bytes[0..6].copy_from_slice(&raw::mac(&t.edge.name, &t.edge_dev));
    bytes[6..12].copy_from_slice(&raw::mac(&t.client.name, &t.client_dev));
    raw::exchange(
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
}

/// Bytes of TCP data of a query frame: the length prefix and the message.
fn a_len(f: &Frame) -> u32 {
    2 + f.payload.len() as u32
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

/// DNS over TCP through the same program: every blocked answer arrives inside the client's
/// connection with the same rcode and EDE as over UDP, allowed names reach unbound, and unbound
/// never sees a blocked query (its query counter moves only for the allowed ones).
fn tcp_scenario(mode: &str) {
    let (t, b) = setup(mode);
    let before = t.unbound_queries();
    let tcp_before = b.reason("tcp_queries");
    let tq: &[&str] = &["+tcp", "+retry=0", "+timeout=2"];
    let tqe: &[&str] = &["+tcp", "+retry=0", "+timeout=2", "+edns"];
    let mut allowed = 0;
    for server in [EDGE_V4, EDGE_V6] {
        let r = kdig(&t.client, server, "wWw.BloCKed.TeSt", "A", tqe);
        assert_eq!(r.status.as_deref(), Some("NXDOMAIN"), "{server}: {}", r.raw);
        assert_eq!(r.ede, Some((16, TEXT.to_string())), "{server}: {}", r.raw);
        assert!(r.raw.contains("(TCP)"), "kdig used TCP: {}", r.raw);
        assert_eq!(r.question.to_ascii_lowercase(), "www.blocked.test.");
        let r = kdig(&t.client, server, "blocked.test", "AAAA", tq);
        assert_eq!(r.status.as_deref(), Some("NXDOMAIN"), "{}", r.raw);
        assert!(r.ede.is_none(), "no EDNS, no EDE: {}", r.raw);
        let r = kdig(&t.client, server, "exact.test", "A", tqe);
        assert_eq!(r.status.as_deref(), Some("REFUSED"), "{}", r.raw);
        assert_eq!(r.ede, Some((16, TEXT.to_string())), "{}", r.raw);
        let r = kdig(&t.client, server, "sink.test", "AAAA", tq);
        assert_eq!(
            r.answers,
            vec![("AAAA".to_string(), "2001:db8::99".to_string())],
            "{}",
            r.raw
        );
        let r = kdig(&t.client, server, "a.wild.test", "A", tqe);
        assert_eq!(r.status.as_deref(), Some("NOERROR"), "{}", r.raw);
        assert!(r.answers.is_empty() && r.ede.is_some(), "{}", r.raw);
        // Allowed over TCP: unbound answers.
        let r = kdig(&t.client, server, "allowed.test", "A", tq);
        assert_eq!(
            r.answers,
            vec![("A".to_string(), "192.0.2.10".to_string())],
            "{}",
            r.raw
        );
        allowed += 1;
    }
    assert_eq!(
        t.unbound_queries() - before,
        allowed,
        "only the allowed queries reached unbound"
    );
    assert_eq!(
        b.reason("tcp_queries") - tcp_before,
        12,
        "whole TCP queries seen"
    );
}

#[test]
fn tcp_native_mode() {
    tcp_scenario("native");
}

#[test]
fn tcp_skb_mode() {
    tcp_scenario("skb");
}

/// Queries pipelined on one connection (kdig +keepopen): the allowed query before the blocked
/// one is answered by unbound, the blocked one by blocker (NXDOMAIN + EDE), in order; blocker's
/// answer closes the connection (FIN), so a query the client still sends on it is not answered
/// there — the documented policy (SECURITY.md): a client must reconnect, and on a new
/// connection the query is answered by unbound.
#[test]
fn tcp_pipelined_on_one_connection() {
    let (t, b) = setup("native");
    let before = t.unbound_queries();
    let out = t.client.exec(
        "kdig",
        &[
            &format!("@{EDGE_V4}"),
            "+tcp",
            "+keepopen",
            "+edns",
            "+retry=0",
            "+timeout=1",
            "allowed.test",
            "A",
            "blocked.test",
            "A",
            "allowed.test",
            "AAAA",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let answers: Vec<&str> = text.split(";; ->>HEADER<<-").skip(1).collect();
    assert_eq!(answers.len(), 2, "two answers on the connection:\n{text}");
    assert!(
        answers[0].contains("status: NOERROR") && answers[0].contains("192.0.2.10"),
        "first: unbound's answer\n{text}"
    );
    assert!(
        answers[1].contains("status: NXDOMAIN")
            && answers[1].contains("16 (Censored)")
            && answers[1].contains("blocked.test."),
        "second: blocker's answer\n{text}"
    );
    assert_eq!(
        t.unbound_queries() - before,
        1,
        "the blocked query never reached unbound"
    );
    // A new connection after the close: the third query is answered.
    let r = kdig(
        &t.client,
        EDGE_V4,
        "allowed.test",
        "AAAA",
        &["+tcp", "+retry=0", "+timeout=2"],
    );
    assert_eq!(
        r.answers,
        vec![("AAAA".to_string(), "2001:db8::10".to_string())],
        "{}",
        r.raw
    );
    assert_eq!(b.reason("nxdomain"), 1);
}

/// Sends `queries` in one `send` on one TCP connection from the client namespace (one segment,
/// as glibc's A and AAAA over TCP) and reads every answer the connection brings within
/// `wait` seconds: (seconds after the send, the message).
fn one_segment(t: &Topology, queries: &[Vec<u8>], wait: u32) -> Vec<(f64, Vec<u8>)> {
    let mut data = Vec::new();
    for q in queries {
        data.extend_from_slice(&(q.len() as u16).to_be_bytes());
        data.extend_from_slice(q);
    }
    let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        r#"import socket, time
s = socket.create_connection(("{EDGE_V4}", 53), timeout={wait})
t = time.monotonic()
s.sendall(bytes.fromhex("{hex}"))
buf = b""
try:
    while True:
        d = s.recv(4096)
        if not d:
            break
        buf += d
        while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
            n = int.from_bytes(buf[:2], "big")
            print("%.4f %s" % (time.monotonic() - t, buf[2:2 + n].hex()))
            buf = buf[2 + n:]
except socket.timeout:
    pass
"#
    );
    let out = t.client.must("python3", &["-c", &script]);
    out.lines()
        .map(|l| {
            let (at, hex) = l.split_once(' ').expect("time and message");
            (at.parse().expect("seconds"), unhex(hex))
        })
        .collect()
}

/// Two queries in one TCP segment, the blocked one behind an allowed one: blocker passes the
/// segment cut after the allowed query, so unbound sees only that one and answers it; the
/// client's TCP sends the rest again, where blocker answers the blocked query (NXDOMAIN + the
/// order's EDE) on the same connection, after unbound's answer. Without the cut the blocked
/// query would reach unbound inside the first segment.
#[test]
fn tcp_two_queries_in_one_segment_are_each_judged() {
    two_queries_in_one_segment("native");
}

#[test]
fn tcp_two_queries_in_one_segment_are_each_judged_skb_mode() {
    two_queries_in_one_segment("skb");
}

fn two_queries_in_one_segment(mode: &str) {
    let (t, b) = setup(mode);
    let unbound_before = t.unbound_queries();
    let pipelined = b.reason("tcp_pipelined");
    let answers = one_segment(
        &t,
        &[
            dns::query(0x0a01, "allowed.test.", RecordType::A, None),
            dns::query(
                0x0a02,
                "blocked.test.",
                RecordType::A,
                Some((false, vec![])),
            ),
        ],
        3,
    );
    assert_eq!(
        answers.len(),
        2,
        "two answers on the connection: {answers:02x?}"
    );
    let (first, second) = (dns::parse(&answers[0].1), dns::parse(&answers[1].1));
    assert_eq!(
        (first.id, first.rcode),
        (0x0a01, 0),
        "unbound's answer first"
    );
    assert_eq!(
        first.answers,
        vec![(RecordType::A, "192.0.2.10".to_string(), 300)]
    );
    assert_eq!((second.id, second.rcode), (0x0a02, 3), "blocker's NXDOMAIN");
    assert_eq!(second.ede, vec![(16, TEXT.to_string())], "the order's EDE");
    assert_eq!(
        t.unbound_queries() - unbound_before,
        1,
        "the blocked query never reached unbound"
    );
    assert_eq!(b.reason("tcp_pipelined") - pipelined, 1, "one segment cut");
    println!(
        "answers after {:.1} ms and {:.1} ms",
        answers[0].0 * 1000.0,
        answers[1].0 * 1000.0
    );

    // glibc's pair for an allowed name: both reach unbound, one segment each.
    let unbound_before = t.unbound_queries();
    let answers = one_segment(
        &t,
        &[
            dns::query(0x0b01, "allowed.test.", RecordType::A, None),
            dns::query(0x0b02, "allowed.test.", RecordType::AAAA, None),
        ],
        2,
    );
    let got: Vec<(u16, u16)> = answers
        .iter()
        .map(|(_, m)| {
            let a = dns::parse(m);
            (a.id, a.rcode)
        })
        .collect();
    assert_eq!(
        got,
        vec![(0x0b01, 0), (0x0b02, 0)],
        "both answered by unbound"
    );
    assert_eq!(t.unbound_queries() - unbound_before, 2);
    println!(
        "allowed pair: answers after {:.1} ms and {:.1} ms",
        answers[0].0 * 1000.0,
        answers[1].0 * 1000.0
    );
}

/// glibc's stub resolver over TCP (`options use-vc`: its A and AAAA queries in one segment),
/// through `getent ahosts` in the client namespace (`ip netns exec` reads
/// /etc/netns/NAME/resolv.conf): an allowed name gets both addresses from unbound (the AAAA
/// query after the client's retransmission); a blocked name is not found (blocker answers the
/// A query, keeps the connection open, and answers the AAAA query when the client sends it
/// again), and unbound never sees it.
#[test]
fn glibc_over_tcp_gets_an_allowed_name_and_not_a_blocked_one() {
    let (t, _b) = setup("native");
    let dir = std::path::PathBuf::from(format!("/etc/netns/{}", t.client.name));
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
            // /etc/netns too, when this test made it (it is then empty).
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
    std::fs::create_dir_all(&dir).expect("netns dir");
    let _guard = Remove(dir.clone());
    std::fs::write(
        dir.join("resolv.conf"),
        format!("nameserver {EDGE_V4}\noptions use-vc timeout:2 attempts:1\n"),
    )
    .expect("resolv.conf");
    let started = std::time::Instant::now();
    let out = t.client.exec("getent", &["ahosts", "allowed.test"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!(
        "getent ahosts allowed.test: {:.0} ms\n{text}",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert!(
        text.contains("192.0.2.10") && text.contains("2001:db8::10"),
        "both addresses: {text}"
    );
    let before = t.unbound_queries();
    let started = std::time::Instant::now();
    let out = t.client.exec("getent", &["ahosts", "blocked.test"]);
    println!(
        "getent ahosts blocked.test: {:.0} ms, exit {:?}, {}",
        started.elapsed().as_secs_f64() * 1000.0,
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!out.status.success(), "no address for a blocked name");
    assert!(out.stdout.is_empty());
    // How getaddrinfo fails: "not found" (both queries answered NXDOMAIN on the connection,
    // one after the other), not a temporary failure (a connection closed under the second).
    let code = t.client.must(
        "python3",
        &[
            "-c",
            "import socket\ntry:\n    socket.getaddrinfo('blocked.test', 80)\n    print('resolved')\nexcept socket.gaierror as e:\n    print({socket.EAI_NONAME: 'EAI_NONAME', socket.EAI_AGAIN: 'EAI_AGAIN'}.get(e.errno, e.errno))",
        ],
    );
    assert_eq!(code.trim(), "EAI_NONAME", "getaddrinfo(blocked.test)");
    assert_eq!(t.unbound_queries(), before, "unbound never saw it");
}

/// TCP Fast Open (RFC 7413): a client holding the resolver's cookie carries its query in the
/// SYN (kdig +fastopen), and a resolver with TFO on (unbound is built with it; the edge's
/// `net.ipv4.tcp_fastopen` = 3) takes it with the handshake. blocker drops a SYN that carries
/// data (tcp_fast_open): the client sends its SYN again without data and the query after the
/// handshake, where it is judged like any other. So a blocked name gets blocker's answer and
/// never reaches unbound, and an allowed one still resolves.
#[test]
fn tcp_fast_open_cannot_carry_a_query_past_blocker() {
    let (t, b) = setup("native");
    t.edge.must("sysctl", &["-qw", "net.ipv4.tcp_fastopen=3"]);
    let tfo: &[&str] = &["+tcp", "+fastopen", "+edns", "+retry=0", "+timeout=4"];
    // The first connection asks for the cookie (a SYN without data).
    let r = kdig(&t.client, EDGE_V4, "allowed.test", "A", tfo);
    assert_eq!(r.status.as_deref(), Some("NOERROR"), "{}", r.raw);
    let before = t.unbound_queries();
    let syn_data = b.reason("tcp_fast_open");
    let started = std::time::Instant::now();
    let r = kdig(&t.client, EDGE_V4, "blocked.test", "A", tfo);
    println!(
        "blocked.test over TFO: {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(r.status.as_deref(), Some("NXDOMAIN"), "{}", r.raw);
    assert_eq!(r.ede, Some((16, TEXT.to_string())), "{}", r.raw);
    assert_eq!(t.unbound_queries(), before, "unbound never saw it");
    assert!(
        b.reason("tcp_fast_open") > syn_data,
        "the query came in a SYN (kdig used TFO): {}",
        r.raw
    );
    let r = kdig(&t.client, EDGE_V4, "allowed.test", "A", tfo);
    assert_eq!(
        r.answers,
        vec![("A".to_string(), "192.0.2.10".to_string())],
        "{}",
        r.raw
    );
}

/// A query padded past the MTU (`kdig +padding=2000`, one flag) leaves the client in IP
/// fragments, which the resolver's kernel puts back together. No fragment holds the whole
/// query, so before blocker dropped the first fragment of a datagram to a DNS port, unbound
/// resolved the blocked name. Now the datagram is never rebuilt (dns_fragment, for IPv4 and
/// IPv6): no answer, and unbound never sees the query; a query that fits is judged as usual.
#[test]
fn fragmented_queries_cannot_carry_a_name_past_blocker() {
    let (t, b) = setup("native");
    let before = t.unbound_queries();
    let dropped = b.reason("dns_fragment");
    for server in [EDGE_V4, EDGE_V6] {
        let r = kdig(
            &t.client,
            server,
            "blocked.test",
            "A",
            &[Q[0], Q[1], "+padding=2000"],
        );
        assert_eq!(r.status, None, "{server}: no answer: {}", r.raw);
        let r = kdig(
            &t.client,
            server,
            "blocked.test",
            "A",
            &[Q[0], Q[1], "+padding=1200"],
        );
        assert_eq!(r.status.as_deref(), Some("NXDOMAIN"), "{server}: {}", r.raw);
        assert_eq!(r.ede, Some((16, TEXT.to_string())), "{server}: {}", r.raw);
    }
    assert_eq!(t.unbound_queries(), before, "unbound never saw the queries");
    assert!(
        b.reason("dns_fragment") >= dropped + 2,
        "the first fragments were counted"
    );
}

/// A UDP query over IPv6 behind a destination options header (`IPV6_DSTOPTS` on an ordinary
/// socket) of `opts` bytes of options the resolver's kernel skips; the answer's bytes, or None
/// when none came within two seconds.
fn query_behind_dstopts(
    t: &Topology,
    q: &[u8],
    option_len: usize,
    options: usize,
) -> Option<Vec<u8>> {
    let hex: String = q.iter().map(|b| format!("{b:02x}")).collect();
    // Unknown options of type 0x1e (the two top bits 00: skip it), then PadN to a multiple
    // of eight bytes (Linux refuses PadN longer than 7).
    let script = format!(
        "import socket,sys\n\
body=b''.join(bytes([0x1e,{option_len}])+bytes({option_len}) for _ in range({options}))\n\
pad=(8-(2+len(body))%8)%8\n\
if pad==1: body+=b'\\x00'\n\
elif pad>1: body+=bytes([1,pad-2])+bytes(pad-2)\n\
h=bytes([0,(2+len(body))//8-1])+body\n\
s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_DSTOPTS,h)\n\
s.settimeout(2)\n\
s.sendto(bytes.fromhex('{hex}'),('{EDGE_V6}',53))\n\
try:\n    sys.stdout.write(s.recv(4096).hex())\n\
except TimeoutError:\n    sys.stdout.write('none')\n"
    );
    client_python_answer(t, &script)
}

/// IPv6 extension headers the program does not walk: a query behind 1.1 KB of destination
/// options (five skippable options of 220 bytes, set on an ordinary socket) reached unbound
/// unjudged before blocker dropped it (deep_headers). Behind a short header it is judged and
/// answered as usual.
#[test]
fn a_query_behind_long_ipv6_extension_headers_cannot_pass_unjudged() {
    let (t, b) = setup("native");
    // A header this long needs a link MTU above 1500 (Linux refuses to send options longer
    // than about half the MTU); 3000 is within what XDP on a veth accepts.
    for (ns, dev) in [(&t.client, &t.client_dev), (&t.edge, &t.edge_dev)] {
        ns.must("ip", &["link", "set", "dev", dev, "mtu", "3000"]);
    }
    let q = dns::query(0x6161, "blocked.test.", RecordType::A, None);
    let before = t.unbound_queries();
    let deep = b.reason("deep_headers");
    let a = query_behind_dstopts(&t, &q, 220, 5);
    assert!(
        a.is_none(),
        "no answer: {:?}",
        a.map(|a| dns::parse(&a).answers)
    );
    assert_eq!(
        b.reason("deep_headers"),
        deep + 1,
        "counted as deep_headers"
    );
    let a = query_behind_dstopts(&t, &q, 10, 1).expect("an answer");
    let d = dns::parse(&a);
    assert_eq!((d.id, d.rcode), (0x6161, 3), "blocker's NXDOMAIN");
    assert_eq!(t.unbound_queries(), before, "unbound never saw the queries");
}

/// TCP urgent data with an ordinary socket: a blocked query written with its last byte
/// replaced by one byte sent with `MSG_OOB`, which the resolver's TCP takes out of the stream
/// it hands unbound. The segment shows a whole query of class 2 (no rule's business: passed
/// as `other_class` before); unbound reads the blocked query short of one byte, and takes
/// that byte from the next message: an allowed query padded to a length whose first byte is
/// 1, which blocker passes. So unbound resolved `blocked.test`. Now the segment with URG is
/// dropped (tcp_urgent): no answer, and unbound never sees the name.
#[test]
fn tcp_urgent_data_cannot_hide_a_name_from_blocker() {
    let (t, b) = setup("native");
    let q = dns::query(0x7171, "blocked.test.", RecordType::A, None);
    // QCLASS IN is the last two bytes, 0 and 1; the urgent byte 2 stands in for the 1.
    assert_eq!(q[q.len() - 2..], [0, 1]);
    let mut first = (q.len() as u16).to_be_bytes().to_vec();
    first.extend_from_slice(&q[..q.len() - 1]);
    first.push(2);
    let allowed = dns::query(
        0x7272,
        "allowed.test.",
        RecordType::A,
        Some((false, vec![EdnsOption::Unknown(12, vec![0; 260])])),
    );
    assert_eq!(allowed.len() >> 8, 1, "its length's first byte is 1");
    let mut framed = (allowed.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&allowed);
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let script = format!(
        "import socket,sys,time\n\
s=socket.create_connection(('{EDGE_V4}',53),timeout=3)\n\
s.send(bytes.fromhex('{}'),socket.MSG_OOB)\n\
time.sleep(0.05)\n\
s.send(bytes.fromhex('{}'))\n\
try:\n    n=int.from_bytes(s.recv(2),'big'); d=b''\n    while len(d)<n: d+=s.recv(n-len(d))\n    sys.stdout.write(d.hex())\n\
except TimeoutError:\n    sys.stdout.write('none')\n",
        hex(&first),
        hex(&framed),
    );
    let before = t.unbound_queries();
    let urgent = b.reason("tcp_urgent");
    if let Some(a) = client_python_answer(&t, &script) {
        panic!("answered: {:?}", dns::parse(&a).answers);
    }
    assert_eq!(t.unbound_queries(), before, "unbound never saw it");
    assert!(b.reason("tcp_urgent") > urgent, "counted as tcp_urgent");
}

/// A TCP segment made by hand that starts inside data the resolver already holds and runs on
/// past it: the resolver keeps only its new bytes, which here are a whole blocked query, while
/// the segment, read from its own first byte, is an allowed query carrying those bytes in an
/// EDNS option. The client is a TCP of the test's own over an AF_PACKET socket, from an
/// address the client namespace does not hold (so its kernel never answers for it). The first
/// query, allowed, goes to unbound; the overlapping segment must not bring `blocked.test` to
/// unbound: before blocker followed where each connection's stream stands, unbound resolved
/// it; now the segment is dropped (tcp_out_of_step).
#[test]
fn a_segment_overlapping_what_the_resolver_holds_cannot_smuggle_a_query() {
    let (t, b) = setup("native");
    let cmac = raw::mac(&t.client.name, &t.client_dev);
    let emac = raw::mac(&t.edge.name, &t.edge_dev);
    let mac = cmac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    t.edge.must(
        "ip",
        &[
            "neigh",
            "replace",
            "192.0.2.77",
            "lladdr",
            &mac,
            "dev",
            &t.edge_dev,
            "nud",
            "permanent",
        ],
    );
    let seg = |seq: u32, ack: u32, flags: u8, data: &[u8]| {
        let mut f = Frame::v4(data.to_vec());
        f.sport = 41000;
        f.ip = packet::Ip::V4 {
            src: [192, 0, 2, 77],
            dst: [192, 0, 2, 53],
            options: vec![],
            frag: 0,
            tot_len: None,
        };
        let mut b = f
            .over_tcp(packet::Tcp {
                seq,
                ack,
                flags,
                window: 65535,
                options: vec![],
                raw_payload: true,
            })
            .bytes();
        b[0..6].copy_from_slice(&emac);
        b[6..12].copy_from_slice(&cmac);
        b
    };
    // Frames from the resolver to our address and port: (flags, seq, TCP data).
    let from_edge = |f: &[u8]| {
        f.len() >= 54
            && f[12..14] == [8, 0]
            && f[23] == 6
            && f[30..34] == [192, 0, 2, 77]
            && f[36..38] == 41000u16.to_be_bytes()
    };
    let tcp_of = |f: &[u8]| {
        let ihl = (f[14] & 15) as usize * 4;
        let tot = u16::from_be_bytes([f[16], f[17]]) as usize;
        let l4 = 14 + ihl;
        let doff = (f[l4 + 12] >> 4) as usize * 4;
        let seq = u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]);
        (f[l4 + 13], seq, f[l4 + doff..14 + tot].to_vec())
    };
    let has_data = move |f: &[u8]| from_edge(f) && !tcp_of(f).2.is_empty();
    let wait = Duration::from_millis(1500);
    let ns = &t.client.name;
    let dev = &t.client_dev;

    let isn: u32 = 0x1000;
    let synack = raw::exchange(ns, dev, &seg(isn, 0, 0x02, &[]), wait, move |f| {
        from_edge(f) && f[47] & 0x12 == 0x12
    })
    .expect("SYN-ACK");
    let server = tcp_of(&synack).1.wrapping_add(1);
    raw::exchange(
        ns,
        dev,
        &seg(isn + 1, server, 0x10, &[]),
        Duration::from_millis(50),
        |_| false,
    );

    // An allowed query long enough to hide the start of another inside the overlap.
    let m0 = dns::query(
        0x0a0a,
        "allowed.test.",
        RecordType::A,
        Some((false, vec![EdnsOption::Unknown(65001, vec![0; 40])])),
    );
    let mut d0 = (m0.len() as u16).to_be_bytes().to_vec();
    d0.extend_from_slice(&m0);
    let a0 = raw::exchange(ns, dev, &seg(isn + 1, server, 0x18, &d0), wait, has_data)
        .expect("unbound's answer to the allowed query");
    let (_, a0_seq, a0_data) = tcp_of(&a0);
    let d = dns::parse(&a0_data[2..]);
    assert_eq!(
        (d.id, d.rcode),
        (0x0a0a, 0),
        "unbound answered the allowed query"
    );
    let server = a0_seq.wrapping_add(a0_data.len() as u32);
    // Acknowledged, so unbound does not send it again.
    raw::exchange(
        ns,
        dev,
        &seg(isn + 1 + d0.len() as u32, server, 0x10, &[]),
        Duration::from_millis(50),
        |_| false,
    );

    // The hidden query, framed, in an EDNS option of another allowed query.
    let hidden = dns::query(0x0b0b, "blocked.test.", RecordType::A, None);
    let mut framed = (hidden.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&hidden);
    let y = dns::query(
        0x0c0c,
        "allowed.test.",
        RecordType::A,
        Some((false, vec![EdnsOption::Unknown(65001, framed.clone())])),
    );
    let mut dy = (y.len() as u16).to_be_bytes().to_vec();
    dy.extend_from_slice(&y);
    assert!(dy.ends_with(&framed));
    let at = dy.len() - framed.len();
    // Where the segment starts: `at` bytes before the end of what the resolver holds.
    let k = d0.len() - at;
    let before = t.unbound_queries();
    let got = raw::exchange(
        ns,
        dev,
        &seg(isn + 1 + k as u32, server, 0x18, &dy),
        wait,
        move |f| has_data(f) && tcp_of(f).1 != a0_seq,
    );
    if let Some(f) = &got {
        let data = tcp_of(f).2;
        let d = dns::parse(&data[2..]);
        panic!(
            "the resolver answered {:#06x}: {:?} (unbound queries +{})",
            d.id,
            d.answers,
            t.unbound_queries() - before
        );
    }
    assert_eq!(t.unbound_queries(), before, "unbound saw nothing more");
    assert!(
        b.reason("tcp_out_of_step") > 0,
        "counted as tcp_out_of_step"
    );
}

/// QCLASS ANY (`kdig -c ANY`, one flag): a recursive resolver may answer it with IN data, so
/// blocker judges it like IN — blocker's NXDOMAIN with the order's EDE, and unbound never sees
/// the query (before, it passed as other_class).
#[test]
fn class_any_is_judged_like_in() {
    let (t, _b) = setup("native");
    let before = t.unbound_queries();
    let r = kdig(
        &t.client,
        EDGE_V4,
        "blocked.test",
        "A",
        &[Q[0], Q[1], "-c", "ANY", "+edns"],
    );
    assert_eq!(r.status.as_deref(), Some("NXDOMAIN"), "{}", r.raw);
    assert_eq!(r.ede, Some((16, TEXT.to_string())), "{}", r.raw);
    assert_eq!(t.unbound_queries(), before, "unbound never saw it");
}

/// Writes `q` over TCP from the client namespace in the pieces `cuts` marks (offsets into
/// the two-byte length and the message), one `send` each, with Nagle off (`nodelay`) or on;
/// returns the answer's bytes (None when none came within `wait` seconds) and how long it
/// took.
fn send_in_pieces(
    t: &Topology,
    q: &[u8],
    cuts: &[usize],
    nodelay: bool,
    wait: u32,
) -> (Option<Vec<u8>>, f64) {
    let mut msg = (q.len() as u16).to_be_bytes().to_vec();
    msg.extend_from_slice(q);
    let hex: String = msg.iter().map(|b| format!("{b:02x}")).collect();
    let cuts: Vec<String> = cuts.iter().map(|c| c.to_string()).collect();
    let script = format!(
        "import socket,time,sys\n\
m=bytes.fromhex('{hex}')\n\
cuts=[0,{cuts}]+[len(m)]\n\
s=socket.create_connection(('{EDGE_V4}',53),timeout={wait})\n\
s.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,{nd})\n\
t=time.monotonic()\n\
for a,b in zip(cuts,cuts[1:]):\n    s.send(m[a:b]); time.sleep(0.01)\n\
try:\n    n=int.from_bytes(s.recv(2),'big'); d=b''\n    while len(d)<n: d+=s.recv(n-len(d))\n\
except TimeoutError:\n    d=None\n\
sys.stdout.write('%.1f %s' % ((time.monotonic()-t)*1000, 'none' if d is None else d.hex()))\n",
        cuts = cuts.join(","),
        nd = nodelay as u8,
    );
    let out = t.client.must("python3", &["-c", &script]);
    let (ms, hex) = out.trim().split_once(' ').expect("time and answer");
    let answer = (hex != "none").then(|| unhex(hex));
    (answer, ms.parse().expect("milliseconds"))
}

/// A query written in pieces holds no segment with a whole message to judge. blocker drops
/// every piece (tcp_partial). The client's TCP sends the data again joined into one segment
/// (Linux merges the segments it retransmits), which is judged like any other query: a
/// blocked name gets blocker's answer and never reaches unbound, an allowed one gets
/// unbound's, one retransmission later — for the length alone then the message (Nagle on),
/// and for three pieces with Nagle off. A client that writes more pieces than its congestion
/// window lets it send before an acknowledgement (ten at the start of a Linux connection)
/// never has them joined: it gets no answer, and unbound never sees the query either. Before
/// blocker dropped the pieces, they all passed and unbound answered the blocked name.
#[test]
fn tcp_query_written_in_pieces_is_judged_when_the_client_sends_it_again() {
    let (t, b) = setup("native");
    let blocked = dns::query(
        0x5151,
        "blocked.test.",
        RecordType::A,
        Some((false, vec![])),
    );
    let allowed = dns::query(0x5252, "allowed.test.", RecordType::A, None);
    let partial = b.reason("tcp_partial");
    let unbound = t.unbound_queries();
    for (how, cuts, nodelay) in [
        ("the length alone, then the message", vec![2], false),
        ("three pieces, Nagle off", vec![2, 14], true),
    ] {
        let before = t.unbound_queries();
        let (a, ms) = send_in_pieces(&t, &blocked, &cuts, nodelay, 5);
        println!("blocked.test, {how}: {ms} ms");
        let d = dns::parse(&a.unwrap_or_else(|| panic!("{how}: no answer")));
        assert_eq!((d.id, d.rcode), (0x5151, 3), "{how}: blocker's NXDOMAIN");
        assert_eq!(
            d.ede,
            vec![(16, TEXT.to_string())],
            "{how}: the order's EDE"
        );
        assert_eq!(t.unbound_queries(), before, "{how}: unbound never saw it");

        let (a, ms) = send_in_pieces(&t, &allowed, &cuts, nodelay, 5);
        println!("allowed.test, {how}: {ms} ms");
        let d = dns::parse(&a.unwrap_or_else(|| panic!("{how}: no answer")));
        assert_eq!((d.id, d.rcode), (0x5252, 0), "{how}: unbound's answer");
        assert_eq!(d.answers.len(), 1, "{how}: {:?}", d.answers);
        assert_eq!(d.answers[0].1, "192.0.2.10");
    }
    assert_eq!(
        t.unbound_queries() - unbound,
        2,
        "unbound saw the allowed queries only"
    );
    assert!(
        b.reason("tcp_partial") >= partial + 8,
        "the pieces were dropped and counted as tcp_partial"
    );
    // One byte per segment: more pieces than the window.
    let unbound = t.unbound_queries();
    let bytes: Vec<usize> = (1..blocked.len() + 2).collect();
    let (a, ms) = send_in_pieces(&t, &blocked, &bytes, true, 2);
    println!(
        "blocked.test, one byte per segment: {ms} ms, answered: {}",
        a.is_some()
    );
    assert!(a.is_none(), "no answer");
    assert_eq!(t.unbound_queries(), unbound, "unbound never saw it");
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

/// A client over its prefix's limit gets a TC=1 slip over UDP; kdig, as a stub resolver does,
/// asks again over TCP, where blocker answers (not rate limited) with the blocked answer and
/// its EDE — the slip costs a legitimate client a round trip, never the order's answer.
#[test]
fn rrl_slip_sends_the_client_to_tcp_where_it_gets_the_blocked_answer() {
    let (t, b) = setup("native");
    b.ok(&[
        "config",
        "set",
        "--rrl-rate",
        "1",
        "--rrl-burst",
        "1",
        "--rrl-slip",
        "1",
    ]);
    let before = (b.reason("rrl_slipped"), b.reason("tcp_queries"));
    let unbound_before = t.unbound_queries();
    let mut over_tcp = 0;
    for _ in 0..4 {
        let r = kdig(
            &t.client,
            EDGE_V4,
            "www.blocked.test",
            "A",
            &[Q[0], Q[1], "+edns"],
        );
        assert_eq!(r.status.as_deref(), Some("NXDOMAIN"), "{}", r.raw);
        assert_eq!(r.ede, Some((16, TEXT.to_string())), "{}", r.raw);
        if r.raw.contains("(TCP)") {
            over_tcp += 1;
        }
    }
    let slipped = b.reason("rrl_slipped") - before.0;
    assert!(
        over_tcp >= 2 && slipped >= 2,
        "TC slips: {slipped}, answers over TCP: {over_tcp}"
    );
    assert_eq!(
        b.reason("tcp_queries") - before.1,
        over_tcp,
        "TCP queries seen"
    );
    assert_eq!(
        t.unbound_queries(),
        unbound_before,
        "nothing reached unbound"
    );
}

/// Sends `q` over UDP from the client namespace to the edge's `port`; the answer's bytes, or
/// None when none came within `wait` seconds.
fn udp_exchange(t: &Topology, port: u16, q: &[u8], wait: f64) -> Option<Vec<u8>> {
    let hex: String = q.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "import socket,sys\n\
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
s.settimeout({wait})\n\
s.sendto(bytes.fromhex('{hex}'),('{EDGE_V4}',{port}))\n\
try:\n    sys.stdout.write(s.recv(4096).hex())\n\
except TimeoutError:\n    sys.stdout.write('none')\n"
    );
    client_python_answer(t, &script)
}

/// Runs the python `script` in the client namespace; what it printed, the bytes of an answer
/// in hex, or None when it printed `none`.
fn client_python_answer(t: &Topology, script: &str) -> Option<Vec<u8>> {
    let out = t.client.must("python3", &["-c", script]);
    let out = out.trim();
    (out != "none").then(|| unhex(out))
}

/// Bytes from their hex digits.
fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// A query whose QNAME holds a compression pointer. No client means one: the question is the
/// message's first name, with nothing before it to point to but the header. Yet BIND 9.18 and
/// dnsmasq 2.90 read `07 blocked 04 test C0 04` — the labels, then a pointer to the zero high
/// byte of QDCOUNT — as `blocked.test`, and dnsmasq also follows a pointer forward to a name
/// written after the question. blocker passed these as `bad_name`: BIND resolved the blocked
/// name (through unbound, which it forwards to), and dnsmasq answered it from its cache (it
/// forwards the query as it came, which unbound refuses, but reads the name itself for its
/// cache). Now they are dropped (`compressed_name`). The same name written plainly to the same
/// ports gets blocker's answer, and an allowed one the resolvers' answer, so the silence is
/// blocker's doing.
#[test]
fn a_compressed_query_name_cannot_carry_a_blocked_name_past_blocker() {
    let (t, b) = setup("native");
    b.ok(&[
        "config", "set", "--port", "53", "--port", "5301", "--port", "5302",
    ]);
    // Under /var/cache/bind: Debian's AppArmor profile for named lets it write there, not in
    // /tmp.
    let dir = TempDir::new_in("/var/cache/bind", "blkt-named");
    let conf = dir.write(
        "named.conf",
        &format!(
            "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  \
             session-keyfile \"{d}/session.key\";\n  listen-on port 5301 {{ {EDGE_V4}; }};\n  \
             listen-on-v6 {{ none; }};\n  recursion yes;\n  allow-query {{ any; }};\n  \
             allow-recursion {{ any; }};\n  forwarders {{ {EDGE_V4} port 53; }};\n  \
             forward only;\n  dnssec-validation no;\n}};\ncontrols {{ }};\n",
            d = dir.path.display()
        ),
    );
    let _named = Daemon::start(&t.edge, dir, "named", &["-g", "-c", &conf]);
    let dir = TempDir::new("blkt-dnsmasq");
    let pid = format!("--pid-file={}", dir.join("pid").display());
    let listen = format!("--listen-address={EDGE_V4}");
    let server = format!("--server={EDGE_V4}#53");
    let _dnsmasq = Daemon::start(
        &t.edge,
        dir,
        "dnsmasq",
        &[
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-hosts",
            "--no-resolv",
            "--port=5302",
            &listen,
            "--bind-interfaces",
            &server,
            "--user=root",
            &pid,
        ],
    );
    const BIND: u16 = 5301;
    const DNSMASQ: u16 = 5302;
    let plain = |name: &str| dns::query(0x5151, name, RecordType::A, None);
    // Both answer an allowed name, through blocker, from unbound's data.
    for port in [BIND, DNSMASQ] {
        let mut answer = None;
        for _ in 0..50 {
            answer = udp_exchange(&t, port, &plain("allowed.test."), 0.2).map(|a| dns::parse(&a));
            if answer.as_ref().is_some_and(|a| a.rcode == 0) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let a = answer.unwrap_or_else(|| panic!("no answer on port {port}"));
        assert_eq!(a.rcode, 0, "port {port}");
        assert!(
            a.answers.iter().any(|(_, d, _)| d == "192.0.2.10"),
            "port {port}: {:?}",
            a.answers
        );
        // The blocked name written plainly: blocker's answer on this port too.
        let a = dns::parse(
            &udp_exchange(&t, port, &plain("blocked.test."), 2.0)
                .unwrap_or_else(|| panic!("port {port}: no answer to the plain blocked name")),
        );
        assert_eq!(a.rcode, 3, "port {port}: NXDOMAIN");
    }
    // dnsmasq forwards a query as it came, so unbound, upstream, refuses the pointer; but it
    // answers from its cache by its own reading of the name. The edge itself resolves the
    // blocked name through dnsmasq (as before an order comes into force): now it is cached.
    let warm = t.edge.must(
        "kdig",
        &[
            &format!("@{EDGE_V4}"),
            "-p",
            "5302",
            "blocked.test",
            "A",
            "+short",
        ],
    );
    assert_eq!(warm.trim(), "192.0.2.66");
    // `blocked.test` as labels and a pointer to offset 4 (QDCOUNT's high byte, zero).
    let mut backward = plain("blocked.test.");
    assert_eq!(backward[12..26], *b"\x07blocked\x04test\x00");
    backward.splice(25..26, [0xc0, 0x04]);
    // A pointer to a name written after the question (offset 18).
    let mut forward = backward[..12].to_vec();
    forward.extend_from_slice(&[0xc0, 0x12, 0, 1, 0, 1]);
    forward.extend_from_slice(b"\x07blocked\x04test\x00");
    let before = b.reason("compressed_name");
    let answered = [
        (BIND, &backward, "BIND, a pointer back"),
        (DNSMASQ, &backward, "dnsmasq, a pointer back"),
        (DNSMASQ, &forward, "dnsmasq, a pointer forward"),
        (53, &backward, "unbound, a pointer back"),
    ]
    .iter()
    .filter_map(|(port, q, what)| {
        // Read with hickory: the echoed question may hold the pointer (dnsmasq's does).
        let a = udp_exchange(&t, *port, q, 1.5)?;
        Some(match hickory_proto::op::Message::from_vec(&a) {
            Ok(m) => format!("{what}: {} {:?}", m.response_code(), m.answers()),
            Err(e) => format!("{what}: {a:02x?} ({e})"),
        })
    })
    .collect::<Vec<_>>();
    assert!(answered.is_empty(), "answered: {answered:#?}");
    assert_eq!(
        b.reason("compressed_name") - before,
        4,
        "each counted as compressed_name"
    );
}

/// A UDP query over IPv6 whose UDP length field is 0. Linux reads 0 as "the rest of the
/// packet" (RFC 2675's jumbogram rule, applied at any size) and hands the query to the
/// resolver; blocker passed it as malformed, and unbound resolved the blocked name. Now the
/// program reads it the same way, and answers it. Sent from a raw socket in the client
/// namespace (the checksum over the real length, as the kernel checks it); the answer comes
/// back to an ordinary UDP socket bound to the source port.
#[test]
fn an_ipv6_udp_length_of_zero_cannot_hide_a_query_from_blocker() {
    let (t, b) = setup("native");
    let q = dns::query(
        0x6060,
        "blocked.test.",
        RecordType::A,
        Some((false, vec![])),
    );
    let hex: String = q.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "import socket,struct,sys,ipaddress\n\
q=bytes.fromhex('{hex}')\n\
src,dst=ipaddress.ip_address('{CLIENT_V6}').packed,ipaddress.ip_address('{EDGE_V6}').packed\n\
u=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
u.bind(('{CLIENT_V6}',0))\n\
u.settimeout(2)\n\
sport=u.getsockname()[1]\n\
n=8+len(q)\n\
h=struct.pack('>HHHH',sport,53,0,0)\n\
d=src+dst+struct.pack('>IxxxB',n,17)+h+q\n\
d+=b'\\0'*(len(d)%2)\n\
s=sum(struct.unpack('>%dH'%(len(d)//2),d))\n\
while s>>16: s=(s&0xffff)+(s>>16)\n\
c=(~s)&0xffff or 0xffff\n\
r=socket.socket(socket.AF_INET6,socket.SOCK_RAW,socket.IPPROTO_UDP)\n\
r.sendto(struct.pack('>HHHH',sport,53,0,c)+q,('{EDGE_V6}',0))\n\
try:\n    sys.stdout.write(u.recv(4096).hex())\n\
except TimeoutError:\n    sys.stdout.write('none')\n"
    );
    let before = t.unbound_queries();
    let a = dns::parse(&client_python_answer(&t, &script).expect("no answer"));
    assert_eq!(a.id, 0x6060);
    assert_eq!(
        (a.rcode, a.answers.len()),
        (3, 0),
        "blocker's NXDOMAIN, not the resolver's address: {:?}",
        a.answers
    );
    assert_eq!(a.ede, vec![(16, TEXT.to_string())]);
    assert_eq!(t.unbound_queries(), before, "unbound never saw it");
    assert!(b.reason("nxdomain") > 0);
}

/// A query behind three 802.1Q tags of VLAN ID 0 (priority tags), sent on the wire. Linux strips
/// any number of those and hands the query to the resolver; the program walks two tags, so it
/// passed the frame as not IP, and unbound resolved the blocked name. Now a frame still tagged
/// after the two tags walked is dropped (deep_headers): no answer, and unbound never sees it.
#[test]
fn stacked_priority_tags_cannot_carry_a_query_past_blocker() {
    let (t, b) = setup("native");
    let mut f = Frame::v4(dns::query(
        0x7878,
        "blocked.test.",
        RecordType::A,
        Some((false, vec![])),
    ));
    f.vlans = vec![(0x8100, 0), (0x8100, 0), (0x8100, 0)];
    let before = t.unbound_queries();
    let deep = b.reason("deep_headers");
    // Any reply from port 53, tagged or not (unbound's goes out untagged).
    if let Some(a) = exchange_on_the_wire(&t, &f) {
        let p = packet::parse(&a).expect("reply");
        panic!("answered: {:?}", dns::parse(&p.dns).answers);
    }
    assert_eq!(t.unbound_queries(), before, "unbound never saw it");
    assert_eq!(
        b.reason("deep_headers"),
        deep + 1,
        "counted as deep_headers"
    );
}
