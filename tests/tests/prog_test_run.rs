//! The real XDP program, loaded into this kernel, run with BPF_PROG_TEST_RUN on a fixture
//! table of frames: every parsing case, every action. Each synthesized answer is parsed with
//! hickory-proto and its IP/UDP checksums are verified from scratch; every pass leaves the
//! frame byte-identical; the global counters must account for every frame by its reason.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv6Addr},
    os::fd::{AsFd, BorrowedFd},
    time::{Duration, Instant},
};

use blocker_tests::{
    dns::{self, raw_query},
    env::Blocker,
    packet::{self, Frame, Ip, Tcp, MAC_CLIENT, MAC_EDGE},
    testrun::{
        action_name, forget_tcp_flows, open_tcp_flow, pin_to_cpu, pin_to_this_cpu, test_run,
        XDP_DROP, XDP_PASS, XDP_TX,
    },
};
use hickory_proto::rr::{rdata::opt::EdnsOption, RecordType};

const ORDER_TEXT: &str = "Court A, RG 1/2026";

#[derive(Debug, Clone)]
enum Expect {
    /// XDP_PASS, frame unchanged, counted under this reason.
    Pass(&'static str),
    /// XDP_DROP under this reason.
    Drop(&'static str),
    /// XDP_PASS of a TCP segment cut after its first message: exactly this frame, counted as
    /// `tcp_pipelined`.
    Cut(Vec<u8>),
    /// XDP_TX: an answer with this rcode (and checks below), counted under this reason.
    Answer {
        rcode: u16,
        reason: &'static str,
        edns: bool,
        answers: &'static [&'static str],
        tc: bool,
    },
}

fn nx(edns: bool) -> Expect {
    Expect::Answer {
        rcode: 3,
        reason: "nxdomain",
        edns,
        answers: &[],
        tc: false,
    }
}

struct Case {
    what: &'static str,
    frame: Vec<u8>,
    expect: Expect,
}

fn q4(name: &str, qtype: RecordType) -> Vec<u8> {
    Frame::v4(dns::query(0x4242, name, qtype, None)).bytes()
}

fn q4e(name: &str, qtype: RecordType) -> Vec<u8> {
    Frame::v4(dns::query(0x4343, name, qtype, Some((true, vec![])))).bytes()
}

fn cases() -> Vec<Case> {
    use RecordType::*;
    let mut v = Vec::new();
    let mut add = |what: &'static str, frame: Vec<u8>, expect: Expect| {
        v.push(Case {
            what,
            frame,
            expect,
        })
    };

    // Blocks and answers.
    add("v4 blocked, no EDNS", q4("www.blocked.test.", A), nx(false));
    add(
        "v4 blocked, EDNS with DO",
        q4e("blocked.test.", A),
        nx(true),
    );
    add("0x20 mixed case", q4e("wWw.BloCKed.TeSt.", AAAA), nx(true));
    let opts = vec![
        EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8]),
        EdnsOption::Unknown(12, vec![0; 40]),
    ];
    add(
        "EDNS with cookie and padding",
        Frame::v4(dns::query(7, "x.blocked.test.", A, Some((false, opts)))).bytes(),
        nx(true),
    );
    add(
        "IPv4 with options (record route)",
        with_record_route(Frame::v4(dns::query(8, "a.blocked.test.", A, None))).bytes(),
        nx(false),
    );
    add(
        "IPv6",
        Frame::v6(dns::query(9, "blocked.test.", AAAA, Some((false, vec![])))).bytes(),
        nx(true),
    );
    let mut f = Frame::v6(dns::query(10, "v6.blocked.test.", A, None));
    if let Ip::V6 { ext, .. } = &mut f.ip {
        ext.push((0, vec![0, 0, 1, 4, 0, 0, 0, 0])); // hop-by-hop, PadN
        ext.push((60, vec![0, 0, 1, 4, 0, 0, 0, 0])); // destination options
    }
    add(
        "IPv6 with hop-by-hop and destination options",
        f.bytes(),
        nx(false),
    );
    let mut f = Frame::v4(dns::query(
        11,
        "vlan.blocked.test.",
        A,
        Some((false, vec![])),
    ));
    f.vlans = vec![(0x8100, 42)];
    add("one 802.1Q tag", f.bytes(), nx(true));
    let mut f = Frame::v6(dns::query(12, "qinq.blocked.test.", A, None));
    f.vlans = vec![(0x88a8, 100), (0x8100, 42)];
    add("QinQ 802.1ad + 802.1Q", f.bytes(), nx(false));
    // Three tags: past the two walked (Linux strips any number of VLAN ID 0 tags).
    for (name, dport) in [("three.blocked.test.", 53), ("three.allowed.test.", 80)] {
        let mut f = Frame::v4(dns::query(12, name, A, None));
        f.dport = dport;
        f.vlans = vec![(0x8100, 0), (0x8100, 0), (0x8100, 0)];
        add(
            "three priority tags (to port 53, to port 80)",
            f.bytes(),
            Expect::Drop("deep_headers"),
        );
    }
    let mut p = dns::query(13, "junk.blocked.test.", A, None);
    p.extend_from_slice(b"trailing junk inside the UDP payload");
    add(
        "trailing bytes after the question",
        Frame::v4(p).bytes(),
        nx(false),
    );
    let mut f = Frame::v4(dns::query(14, "pad.blocked.test.", A, None));
    f.padding = vec![0; 18];
    add("link padding after the IP packet", f.bytes(), nx(false));
    let long = format!(
        "{}blocked.test.",
        "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstu.".repeat(4)
    );
    add("long name (251 bytes)", q4(&long, A), nx(false));
    add(
        "binary bytes and a dot inside a label",
        Frame::v4(raw_query(
            15,
            &[&[0, 0xff, b'.', b'Z'], b"blocked", b"test"],
            1,
            false,
        ))
        .bytes(),
        nx(false),
    );
    add(
        "exact rule",
        q4e("exact.test.", A),
        Expect::Answer {
            rcode: 5,
            reason: "refused",
            edns: true,
            answers: &[],
            tc: false,
        },
    );
    add(
        "below rule, a name below",
        q4("a.b.wild.test.", MX),
        Expect::Answer {
            rcode: 0,
            reason: "nodata",
            edns: false,
            answers: &[],
            tc: false,
        },
    );
    add(
        "sinkhole A",
        q4("www.sink.test.", A),
        Expect::Answer {
            rcode: 0,
            reason: "sinkhole",
            edns: false,
            answers: &["A 192.0.2.99 60"],
            tc: false,
        },
    );
    add(
        "sinkhole AAAA with EDNS",
        q4e("sink.test.", AAAA),
        Expect::Answer {
            rcode: 0,
            reason: "sinkhole",
            edns: true,
            answers: &["AAAA 2001:db8::99 60"],
            tc: false,
        },
    );
    add(
        "sinkhole MX is NODATA",
        q4("sink.test.", MX),
        Expect::Answer {
            rcode: 0,
            reason: "sinkhole",
            edns: false,
            answers: &[],
            tc: false,
        },
    );
    add(
        "tc rule",
        q4("tc.test.", A),
        Expect::Answer {
            rcode: 0,
            reason: "tc",
            edns: false,
            answers: &[],
            tc: true,
        },
    );
    add("drop rule", q4("x.drop.test.", A), Expect::Drop("dropped"));

    // Passes: no rule, allow rules, semantics of exact/below.
    add(
        "allowed name",
        q4("news.example.", A),
        Expect::Pass("no_match"),
    );
    add(
        "allow exception inside a blocked subtree",
        q4("www.ok.blocked.test.", A),
        Expect::Pass("allowed"),
    );
    add(
        "a name that only ends like a blocked one",
        q4("notblocked.test.", A),
        Expect::Pass("no_match"),
    );
    add(
        "exact rule does not cover names below",
        q4("www.exact.test.", A),
        Expect::Pass("no_match"),
    );
    add(
        "below rule does not cover the name itself",
        q4("wild.test.", A),
        Expect::Pass("no_match"),
    );
    add(
        "a dot inside a label is not a label boundary",
        Frame::v4(raw_query(16, &[b"in.a", b"label", b"test"], 1, false)).bytes(),
        Expect::Pass("no_match"),
    );
    add(
        "the root",
        Frame::v4(raw_query(17, &[], 2, false)).bytes(),
        Expect::Pass("no_match"),
    );

    // Not for us, or not understood: pass, counted by reason.
    let mut arp = Vec::new();
    arp.extend_from_slice(&[0xff; 6]);
    arp.extend_from_slice(&MAC_CLIENT);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    add("ARP", arp, Expect::Pass("not_ip"));
    let mut f = Frame::v4(dns::query(18, "blocked.test.", A, None));
    f.proto = 132;
    add("SCTP to port 53", f.bytes(), Expect::Pass("not_udp"));

    // DNS over TCP: a whole query at the start of a segment's data is judged like UDP.
    let t = Tcp::default;
    add(
        "TCP v4 blocked, EDNS",
        Frame::v4(dns::query(40, "blocked.test.", A, Some((true, vec![]))))
            .over_tcp(t())
            .bytes(),
        nx(true),
    );
    add(
        "TCP v6 blocked, timestamps",
        Frame::v6(dns::query(41, "www.blocked.test.", AAAA, None))
            .over_tcp(Tcp {
                options: packet::ts_option(0x0102_0304, 0x0a0b_0c0d),
                ..t()
            })
            .bytes(),
        nx(false),
    );
    let mut f = Frame::v4(dns::query(
        42,
        "qinq.blocked.test.",
        A,
        Some((false, vec![])),
    ));
    f.vlans = vec![(0x88a8, 100), (0x8100, 42)];
    add("TCP in QinQ", f.over_tcp(t()).bytes(), nx(true));
    let mut sack = vec![1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    sack.extend(packet::ts_option(7, 8));
    add(
        "TCP with a SACK block before the timestamps",
        Frame::v4(dns::query(43, "x.blocked.test.", A, None))
            .over_tcp(Tcp {
                options: sack,
                ..t()
            })
            .bytes(),
        nx(false),
    );
    add(
        "TCP query with FIN",
        Frame::v4(dns::query(44, "blocked.test.", A, None))
            .over_tcp(Tcp { flags: 0x19, ..t() })
            .bytes(),
        nx(false),
    );
    add(
        "TCP sinkhole AAAA",
        Frame::v6(dns::query(45, "sink.test.", AAAA, Some((false, vec![]))))
            .over_tcp(t())
            .bytes(),
        Expect::Answer {
            rcode: 0,
            reason: "sinkhole",
            edns: true,
            answers: &["AAAA 2001:db8::99 60"],
            tc: false,
        },
    );
    add(
        "TCP drop rule",
        Frame::v4(dns::query(46, "drop.test.", A, None))
            .over_tcp(t())
            .bytes(),
        Expect::Drop("dropped"),
    );
    add(
        "TCP allowed name",
        Frame::v4(dns::query(47, "news.example.", A, None))
            .over_tcp(t())
            .bytes(),
        Expect::Pass("no_match"),
    );
    add(
        "TCP SYN",
        Frame::v4(vec![])
            .over_tcp(Tcp {
                flags: 0x02,
                raw_payload: true,
                ..t()
            })
            .bytes(),
        Expect::Pass("tcp_no_query"),
    );
    add(
        "TCP pure ACK",
        Frame::v4(vec![])
            .over_tcp(Tcp {
                flags: 0x10,
                raw_payload: true,
                ..t()
            })
            .bytes(),
        Expect::Pass("tcp_no_query"),
    );
    add(
        "TCP data on a SYN (Fast Open)",
        Frame::v4(dns::query(48, "blocked.test.", A, None))
            .over_tcp(Tcp { flags: 0x02, ..t() })
            .bytes(),
        Expect::Drop("tcp_fast_open"),
    );
    add(
        "TCP data on a SYN with ECN bits (Fast Open)",
        Frame::v4(dns::query(48, "allowed.test.", A, None))
            .over_tcp(Tcp { flags: 0xc2, ..t() })
            .bytes(),
        Expect::Drop("tcp_fast_open"),
    );
    add(
        "TCP query with URG (urgent data)",
        Frame::v4(dns::query(48, "allowed.test.", A, None))
            .over_tcp(Tcp { flags: 0x38, ..t() })
            .bytes(),
        Expect::Drop("tcp_urgent"),
    );
    add(
        "TCP pure ACK with URG",
        Frame::v4(vec![])
            .over_tcp(Tcp {
                flags: 0x30,
                raw_payload: true,
                ..t()
            })
            .bytes(),
        Expect::Drop("tcp_urgent"),
    );
    add(
        "TCP data without ACK",
        Frame::v4(dns::query(48, "blocked.test.", A, None))
            .over_tcp(Tcp { flags: 0x08, ..t() })
            .bytes(),
        Expect::Pass("tcp_no_query"),
    );
    add(
        "TCP data on a RST",
        Frame::v4(dns::query(48, "blocked.test.", A, None))
            .over_tcp(Tcp { flags: 0x14, ..t() })
            .bytes(),
        Expect::Pass("tcp_no_query"),
    );
    let whole = dns::query(49, "blocked.test.", A, None);
    let mut first = (whole.len() as u16).to_be_bytes().to_vec();
    first.truncate(1);
    add(
        "TCP query split: the first byte alone",
        Frame::v4(first)
            .over_tcp(Tcp {
                raw_payload: true,
                ..t()
            })
            .bytes(),
        Expect::Drop("tcp_partial"),
    );
    let mut half = (whole.len() as u16).to_be_bytes().to_vec();
    half.extend_from_slice(&whole[..whole.len() / 2]);
    add(
        "TCP query split: half a query",
        Frame::v4(half)
            .over_tcp(Tcp {
                raw_payload: true,
                ..t()
            })
            .bytes(),
        Expect::Drop("tcp_partial"),
    );
    let mut rest = whole[whole.len() / 2..].to_vec();
    rest.extend_from_slice(&[0; 4]);
    add(
        "TCP query split: the rest of a query",
        Frame::v6(rest)
            .over_tcp(Tcp {
                raw_payload: true,
                ..t()
            })
            .bytes(),
        Expect::Drop("tcp_partial"),
    );
    // Several messages in one segment: what passes is cut after the first message (built
    // here by the test's own frame builder from that message alone, FIN cleared), so the
    // blocked query behind it never reaches the resolver in this segment.
    let framed = |msgs: &[Vec<u8>]| {
        let mut v = Vec::new();
        for m in msgs {
            v.extend_from_slice(&(m.len() as u16).to_be_bytes());
            v.extend_from_slice(m);
        }
        v
    };
    let allowed = dns::query(50, "news.example.", A, None);
    let behind = dns::query(51, "blocked.test.", A, None);
    let raw = |flags: u8, options: Vec<u8>| Tcp {
        raw_payload: true,
        flags,
        options,
        ..t()
    };
    add(
        "TCP allowed query with a blocked one behind it in the segment",
        Frame::v4(framed(&[allowed.clone(), behind.clone()]))
            .over_tcp(raw(0x18, vec![]))
            .bytes(),
        Expect::Cut(
            Frame::v4(framed(std::slice::from_ref(&allowed)))
                .over_tcp(raw(0x18, vec![]))
                .bytes(),
        ),
    );
    let ts = packet::ts_option(7, 9);
    let v6 = |msgs: &[Vec<u8>], flags: u8| {
        let mut f = Frame::v6(framed(msgs)).over_tcp(raw(flags, ts.clone()));
        f.vlans = vec![(0x8100, 12)];
        f.bytes()
    };
    add(
        "TCP v6 in a VLAN, FIN: an allowed AAAA query with two behind it",
        v6(
            &[
                dns::query(52, "news.example.", AAAA, Some((false, vec![]))),
                behind.clone(),
                dns::query(53, "blocked.test.", AAAA, None),
            ],
            0x19,
        ),
        Expect::Cut(v6(
            &[dns::query(52, "news.example.", AAAA, Some((false, vec![])))],
            0x18,
        )),
    );
    // IPv4 options and IPv6 extension headers stay; the lengths cover them.
    let with_options = |msgs: &[Vec<u8>]| {
        with_record_route(Frame::v4(framed(msgs)).over_tcp(raw(0x18, vec![]))).bytes()
    };
    add(
        "TCP over IPv4 with options: an allowed query with a blocked one behind it",
        with_options(&[allowed.clone(), behind.clone()]),
        Expect::Cut(with_options(std::slice::from_ref(&allowed))),
    );
    let with_ext = |msgs: &[Vec<u8>]| {
        let mut f = Frame::v6(framed(msgs)).over_tcp(raw(0x18, vec![]));
        if let Ip::V6 { ext, .. } = &mut f.ip {
            ext.push((0, vec![0, 0, 1, 4, 0, 0, 0, 0]));
            ext.push((60, vec![0, 0, 1, 4, 0, 0, 0, 0]));
        }
        f.bytes()
    };
    add(
        "TCP over IPv6 with extension headers: an allowed query with a blocked one behind it",
        with_ext(&[allowed.clone(), behind.clone()]),
        Expect::Cut(with_ext(std::slice::from_ref(&allowed))),
    );
    // A first message that is no query at all (a response) decides nothing either.
    let mut response = dns::query(54, "news.example.", A, None);
    response[2] |= 0x80;
    add(
        "TCP response with a blocked query behind it",
        Frame::v4(framed(&[response.clone(), behind.clone()]))
            .over_tcp(raw(0x18, vec![]))
            .bytes(),
        Expect::Cut(
            Frame::v4(framed(&[response]))
                .over_tcp(raw(0x18, vec![]))
                .bytes(),
        ),
    );
    // Longer than the program can cut: dropped, never passed whole.
    let long = dns::query(
        55,
        "news.example.",
        A,
        Some((false, vec![EdnsOption::Unknown(12, vec![0; 480])])),
    );
    assert!(long.len() + 2 > packet::CUT_MAX);
    add(
        "TCP allowed query too long to cut, with a blocked one behind it",
        Frame::v4(framed(&[long, behind.clone()]))
            .over_tcp(raw(0x18, vec![]))
            .bytes(),
        Expect::Drop("rewrite_failed"),
    );
    let mut f = Frame::v4(dns::query(52, "blocked.test.", A, None));
    f.dport = 853;
    add(
        "TCP to another port (DoT)",
        f.over_tcp(t()).bytes(),
        Expect::Pass("other_port"),
    );
    let mut f = Frame::v4(dns::query(19, "blocked.test.", A, None));
    f.dport = 5353;
    add("UDP to another port", f.bytes(), Expect::Pass("other_port"));
    let mut resp = dns::query(20, "blocked.test.", A, None);
    resp[2] |= 0x80;
    add(
        "a response (QR=1)",
        Frame::v4(resp).bytes(),
        Expect::Pass("not_query"),
    );
    let mut notify = dns::query(21, "blocked.test.", SOA, None);
    notify[2] = (notify[2] & 0x87) | (4 << 3);
    add(
        "opcode NOTIFY",
        Frame::v4(notify).bytes(),
        Expect::Pass("not_query"),
    );
    let mut ptr = raw_query(22, &[b"www"], 1, false);
    let n = ptr.len();
    ptr.splice(n - 5..n - 4, [0xc0, 0x0c]);
    add(
        "compression pointer in the QNAME",
        Frame::v4(ptr).bytes(),
        Expect::Drop("compressed_name"),
    );
    // As BIND and dnsmasq read it: `blocked.test`, its root a pointer to QDCOUNT's zero byte.
    let mut back = dns::query(25, "blocked.test.", RecordType::A, None);
    back.splice(25..26, [0xc0, 0x04]);
    add(
        "blocked.test ended by a pointer to the header",
        Frame::v4(back.clone()).bytes(),
        Expect::Drop("compressed_name"),
    );
    add(
        "the same over IPv6",
        Frame::v6(back.clone()).bytes(),
        Expect::Drop("compressed_name"),
    );
    add(
        "the same over TCP",
        Frame::v4(back).over_tcp(Tcp::default()).bytes(),
        Expect::Drop("compressed_name"),
    );
    let mut reserved = raw_query(26, &[b"www"], 1, false);
    reserved[12] = 0x43;
    add(
        "reserved label type 0x40",
        Frame::v4(reserved).bytes(),
        Expect::Pass("bad_name"),
    );
    let labels: Vec<&[u8]> = std::iter::repeat_n(&b"x"[..], 128).collect();
    add(
        "name longer than 255 bytes",
        Frame::v4(raw_query(23, &labels, 1, false)).bytes(),
        Expect::Pass("bad_name"),
    );
    let mut ch = dns::query(24, "version.bind.", TXT, None);
    let n = ch.len();
    ch[n - 1] = 3;
    add(
        "CHAOS class",
        Frame::v4(ch).bytes(),
        Expect::Pass("other_class"),
    );
    let mut any = dns::query(24, "blocked.test.", A, None);
    let n = any.len();
    any[n - 1] = 255;
    add(
        "class ANY: judged like IN",
        Frame::v4(any).bytes(),
        nx(false),
    );
    let mut f = Frame::v4(dns::query(25, "frag.blocked.test.", A, None));
    f.ip = Ip::V4 {
        src: [192, 0, 2, 1],
        dst: [192, 0, 2, 53],
        options: vec![],
        frag: 0x2000,
        tot_len: None,
    };
    add(
        "IPv4 first fragment (MF) to port 53",
        f.bytes(),
        Expect::Drop("dns_fragment"),
    );
    f.dport = 80;
    add(
        "IPv4 first fragment (MF) to port 80",
        f.bytes(),
        Expect::Pass("fragment"),
    );
    let mut f = Frame::v4(dns::query(25, "frag.blocked.test.", A, None));
    f.ip = Ip::V4 {
        src: [192, 0, 2, 1],
        dst: [192, 0, 2, 53],
        options: vec![],
        frag: 0x2003,
        tot_len: None,
    };
    add(
        "IPv4 later fragment (offset 24 bytes)",
        f.bytes(),
        Expect::Pass("fragment"),
    );
    let v6_frag = |ext_header: Vec<u8>, dport: u16| {
        let mut f = Frame::v6(dns::query(26, "frag.blocked.test.", A, None));
        f.dport = dport;
        if let Ip::V6 { ext, .. } = &mut f.ip {
            ext.push((44, ext_header));
        }
        f.bytes()
    };
    add(
        "IPv6 first fragment (M) to port 53",
        v6_frag(vec![0, 0, 0, 1, 0, 0, 0, 1], 53),
        Expect::Drop("dns_fragment"),
    );
    add(
        "IPv6 atomic fragment (offset 0, no M) to port 53",
        v6_frag(vec![0, 0, 0, 0, 0, 0, 0, 1], 53),
        Expect::Drop("dns_fragment"),
    );
    add(
        "IPv6 first fragment to port 80",
        v6_frag(vec![0, 0, 0, 1, 0, 0, 0, 1], 80),
        Expect::Pass("fragment"),
    );
    add(
        "IPv6 later fragment (offset 8 bytes)",
        v6_frag(vec![0, 0, 0, 9, 0, 0, 0, 1], 53),
        Expect::Pass("fragment"),
    );
    let dstopts = |n: usize, len8: u8, dport: u16| {
        let mut f = Frame::v6(dns::query(29, "deep.blocked.test.", A, None));
        f.dport = dport;
        if let Ip::V6 { ext, .. } = &mut f.ip {
            for _ in 0..n {
                // Next header (filled in by the builder), length in 8-byte units beyond the
                // first, then PadN over the rest.
                let total = (len8 as usize + 1) * 8;
                let mut h = vec![0, len8, 1, (total - 4) as u8];
                h.resize(total, 0);
                ext.push((60, h));
            }
        }
        f.bytes()
    };
    add(
        "IPv6: six destination options headers",
        dstopts(6, 0, 53),
        nx(false),
    );
    add(
        "IPv6: seven destination options headers",
        dstopts(7, 0, 53),
        Expect::Drop("deep_headers"),
    );
    add(
        "IPv6: 1.1 KB of destination options before port 53",
        dstopts(4, 33, 53),
        Expect::Drop("deep_headers"),
    );
    add(
        "IPv6: 1.1 KB of destination options before port 80",
        dstopts(4, 33, 80),
        Expect::Pass("other_port"),
    );
    // A UDP length of 0: over IPv6, the rest of the packet (Linux delivers it: RFC 2675); over
    // IPv4, malformed (Linux drops it).
    let mut f = Frame::v6(dns::query(29, "zero.blocked.test.", A, None));
    f.udp_len = Some(0);
    add("IPv6 UDP length 0", f.bytes(), nx(false));
    let mut f = Frame::v4(dns::query(29, "zero.blocked.test.", A, None));
    f.udp_len = Some(0);
    add("IPv4 UDP length 0", f.bytes(), Expect::Pass("malformed"));
    let mut f = Frame::v4(dns::query(27, "lie.blocked.test.", A, None));
    f.udp_len = Some(200);
    add(
        "UDP length larger than the packet",
        f.bytes(),
        Expect::Pass("malformed"),
    );
    let mut f = Frame::v4(dns::query(28, "lie.blocked.test.", A, None));
    f.ip = Ip::V4 {
        src: [192, 0, 2, 1],
        dst: [192, 0, 2, 53],
        options: vec![],
        frag: 0,
        tot_len: Some(400),
    };
    add(
        "IP total length larger than the frame",
        f.bytes(),
        Expect::Pass("malformed"),
    );
    // The same lies to a port that is not DNS: the exit for packets to other ports takes
    // their common layouts early, and must count these as the full parse does (malformed),
    // not as other_port. With IPv4 options, or IPv6 extension headers, other_port.
    f.dport = 80;
    add(
        "IP total length larger than the frame, to port 80",
        f.bytes(),
        Expect::Pass("malformed"),
    );
    let mut f = Frame::v4(dns::query(28, "lie.blocked.test.", A, None)).over_tcp(t());
    f.dport = 80;
    if let Ip::V4 { tot_len, .. } = &mut f.ip {
        *tot_len = Some(19);
    }
    add(
        "IP total length below its header, TCP to port 80",
        f.bytes(),
        Expect::Pass("malformed"),
    );
    let mut f = Frame::v6(dns::query(28, "lie.blocked.test.", A, None));
    f.dport = 80;
    if let Ip::V6 { payload_len, .. } = &mut f.ip {
        *payload_len = Some(600);
    }
    add(
        "IPv6 payload length larger than the frame, to port 80",
        f.bytes(),
        Expect::Pass("malformed"),
    );
    if let Ip::V6 { payload_len, .. } = &mut f.ip {
        *payload_len = Some(0);
    }
    add(
        "IPv6 payload length 0, to port 80",
        f.bytes(),
        Expect::Pass("malformed"),
    );
    let mut f = Frame::v4(dns::query(28, "opt.blocked.test.", A, None));
    f.dport = 80;
    f.ip = Ip::V4 {
        src: [192, 0, 2, 1],
        dst: [192, 0, 2, 53],
        options: vec![1, 1, 1, 1],
        frag: 0,
        tot_len: None,
    };
    add(
        "IPv4 with options, to port 80",
        f.bytes(),
        Expect::Pass("other_port"),
    );
    let full = q4("cut.blocked.test.", A);
    add(
        "frame cut inside the UDP header",
        full[..14 + 20 + 4].to_vec(),
        Expect::Pass("malformed"),
    );
    let mut tsig = dns::query(29, "blocked.test.", A, Some((false, vec![])));
    let qe = dns::question_end(&tsig);
    tsig[qe + 2] = 250;
    add(
        "additional record that is not OPT: judged, answered without EDNS",
        Frame::v4(tsig).bytes(),
        nx(false),
    );
    let mut v1 = dns::query(29, "blocked.test.", A, Some((true, vec![])));
    v1[qe + 6] = 1;
    add(
        "EDNS version 1: judged, answered without EDNS",
        Frame::v4(v1).bytes(),
        nx(false),
    );
    let mut counts = dns::query(29, "blocked.test.", A, Some((false, vec![])));
    counts[7] = 1;
    add(
        "an answer count in a query: judged, answered without EDNS",
        Frame::v4(counts).bytes(),
        nx(false),
    );
    let mut two = dns::query(29, "blocked.test.", A, None);
    two[5] = 2;
    add(
        "two questions",
        Frame::v4(two).bytes(),
        Expect::Pass("not_query"),
    );
    add(
        "header only",
        Frame::v4(vec![0; 12]).bytes(),
        Expect::Pass("not_query"),
    );
    v
}

fn setup() -> (Blocker, aya::programs::Xdp) {
    let b = Blocker::new();
    let dir = blocker_tests::env::TempDir::new("blkt-lists");
    let list = dir.join("court-a.txt");
    std::fs::write(&list, "blocked.test\n").expect("write list");
    b.ok(&[
        "rules",
        "load",
        list.to_str().expect("path"),
        "--order",
        "Court-A",
        "--ede-text",
        ORDER_TEXT,
    ]);
    for (name, flags, action) in [
        ("exact.test", vec![], "refused"),
        ("*.wild.test", vec![], "nodata"),
        ("sink.test", vec!["--subtree"], "sinkhole"),
        ("drop.test", vec!["--subtree"], "drop"),
        ("tc.test", vec!["--subtree"], "tc"),
        ("in.a.label.test", vec!["--subtree"], "nxdomain"),
    ] {
        let mut args = vec![
            "rules", "add", name, "--order", "Court-A", "--action", action,
        ];
        args.extend(flags);
        b.ok(&args);
    }
    b.ok(&[
        "rules",
        "add",
        "ok.blocked.test",
        "--subtree",
        "--action",
        "pass",
        "--order",
        "allow-critical",
        // An exception list decides first (as a passthru zone listed first in RPZ).
        "--priority",
        "10",
    ]);
    b.ok(&[
        "config",
        "set",
        "--sinkhole-v4",
        "192.0.2.99",
        "--sinkhole-v6",
        "2001:db8::99",
        "--sinkhole-ttl",
        "60",
    ]);
    drop(dir);
    let prog = blocker::kernel::pinned_program(&b.pins(), false).expect("pinned program");
    (b, prog)
}

#[test]
fn the_real_object_passes_the_verifier() {
    let (_b, prog) = setup();
    let info = prog.info().expect("program info");
    let verified = info
        .verified_instruction_count()
        .expect("verified instruction count");
    println!("verified instructions: {verified}");
    assert!(verified > 0);
    // Budget: the kernel refuses a program past 1,000,000 verified instructions
    // (BPF_COMPLEXITY_LIMIT_INSNS); the program is at about 409,000 on Linux 6.18. 800,000
    // leaves room for the features being added now (DNS over TCP, rate limiting) and keeps
    // 200,000 (20 % of the limit) in reserve, because the count differs between kernels (the
    // verifier's pruning changes from release to release) and a state explosion (a loop-exit
    // value not laundered through scratch memory) can double it: such a change fails here,
    // by name, instead of failing to load on an operator's kernel. Raise it only with a
    // reason in the commit, never to the limit.
    const BUDGET: u32 = 800_000;
    assert!(
        verified < BUDGET,
        "{verified} verified instructions, over the budget of {BUDGET} (kernel limit 1,000,000)"
    );
}

#[test]
fn fixture_table() {
    let (b, prog) = setup();
    let fd = prog.fd().expect("fd");
    let maps = blocker::kernel::Maps::open(&b.pins()).expect("maps");
    let secret = maps
        .key_secret()
        .expect("key map")
        .expect("the controller wrote the key secret");
    let gates = blocker_tests::reference::gates_of(&maps);
    let before = b.stats();
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    let mut failures = Vec::new();
    for c in cases() {
        // Each case stands alone: a TCP segment is the first of its connection after the
        // handshake.
        forget_tcp_flows(&prog);
        open_tcp_flow(&prog, &c.frame);
        let out = test_run(fd.as_fd(), &c.frame, 1)
            .unwrap_or_else(|e| panic!("{}: BPF_PROG_TEST_RUN: {e}", c.what));
        let check = || -> Result<&'static str, String> {
            match &c.expect {
                Expect::Pass(reason) => {
                    if out.retval != XDP_PASS {
                        return Err(format!(
                            "expected XDP_PASS, got {}",
                            action_name(out.retval)
                        ));
                    }
                    if out.data != c.frame {
                        return Err("a passed frame was modified".into());
                    }
                    Ok(reason)
                }
                Expect::Cut(want) => {
                    if out.retval != XDP_PASS {
                        return Err(format!(
                            "expected XDP_PASS, got {}",
                            action_name(out.retval)
                        ));
                    }
                    if out.data != *want {
                        return Err(format!(
                            "not cut after the first message:\n got  {:02x?}\n want {want:02x?}",
                            out.data
                        ));
                    }
                    packet::parse(&out.data)?;
                    Ok("tcp_pipelined")
                }
                Expect::Drop(reason) => {
                    if out.retval != XDP_DROP {
                        return Err(format!(
                            "expected XDP_DROP, got {}",
                            action_name(out.retval)
                        ));
                    }
                    Ok(reason)
                }
                Expect::Answer {
                    rcode,
                    reason,
                    edns,
                    answers,
                    tc,
                } => {
                    if out.retval != XDP_TX {
                        return Err(format!("expected XDP_TX, got {}", action_name(out.retval)));
                    }
                    let qin = packet::parse(&strip_padding(&c.frame))
                        .map_err(|e| format!("query: {e}"))?;
                    let a = packet::parse(&out.data).map_err(|e| format!("answer frame: {e}"))?;
                    if a.dst_mac != MAC_CLIENT || a.src_mac != MAC_EDGE {
                        return Err("MACs not swapped".into());
                    }
                    if a.src_ip != qin.dst_ip
                        || a.dst_ip != qin.src_ip
                        || a.sport != qin.dport
                        || a.dport != qin.sport
                    {
                        return Err("addresses or ports not swapped".into());
                    }
                    if a.vlans != qin.vlans {
                        return Err(format!(
                            "VLAN tags changed: {:?} -> {:?}",
                            qin.vlans, a.vlans
                        ));
                    }
                    if a.dns.len() > qin.dns.len() + 64 {
                        return Err(format!(
                            "answer {} bytes for a {}-byte query",
                            a.dns.len(),
                            qin.dns.len()
                        ));
                    }
                    if let Some(qt) = &qin.tcp {
                        let at = a.tcp.as_ref().ok_or("a TCP query answered without TCP")?;
                        packet::check_tcp_answer(qt, at, None)?;
                    }
                    let d = dns::parse(&a.dns);
                    let qe = dns::question_end(&qin.dns);
                    if d.question != qin.dns[12..qe] {
                        return Err("question not echoed byte for byte".into());
                    }
                    if d.id != u16::from_be_bytes([qin.dns[0], qin.dns[1]])
                        || !d.qr
                        || !d.ra
                        || !d.rd
                        || d.aa
                    {
                        return Err(format!(
                            "header: id {} qr {} ra {} rd {} aa {}",
                            d.id, d.qr, d.ra, d.rd, d.aa
                        ));
                    }
                    if d.rcode != *rcode || d.tc != *tc {
                        return Err(format!(
                            "rcode {} tc {}, expected {rcode} {tc}",
                            d.rcode, d.tc
                        ));
                    }
                    let got: Vec<String> = d
                        .answers
                        .iter()
                        .map(|(t, data, ttl)| format!("{t} {data} {ttl}"))
                        .collect();
                    if got != answers.iter().map(|s| s.to_string()).collect::<Vec<_>>() {
                        return Err(format!("answers {got:?}, expected {answers:?}"));
                    }
                    match (edns, &d.opt) {
                        (false, None) => {
                            if !d.ede.is_empty() {
                                return Err("EDE without OPT".into());
                            }
                        }
                        (true, Some((size, dok))) => {
                            if *size != 1232 {
                                return Err(format!("OPT UDP size {size}"));
                            }
                            let q_dok = qin.dns.len() > qe + 7 && qin.dns[qe + 7] & 0x80 != 0;
                            if *dok != q_dok {
                                return Err("DO bit not copied".into());
                            }
                            if d.ede != vec![(16, ORDER_TEXT.to_string())] {
                                return Err(format!("EDE {:?}", d.ede));
                            }
                        }
                        (want, got) => return Err(format!("OPT expected {want}, got {got:?}")),
                    }
                    // The same shared code, run on the host against the same maps, must
                    // produce the same bytes.
                    let host = blocker_tests::reference::reference(
                        &maps,
                        &secret,
                        &gates,
                        &qin.dns,
                        qin.tcp.is_some(),
                    )
                    .flatten()
                    .ok_or("the host finds no rule")?;
                    if host != a.dns {
                        return Err(format!(
                            "host and kernel answers differ:\n host   {host:02x?}\n kernel {:02x?}",
                            a.dns
                        ));
                    }
                    Ok(reason)
                }
            }
        };
        match check() {
            Ok(reason) => *expected.entry(reason).or_default() += 1,
            Err(e) => failures.push(format!("{}: {e}", c.what)),
        }
    }
    assert!(
        failures.is_empty(),
        "fixture failures:\n  {}",
        failures.join("\n  ")
    );

    // Every frame is accounted for by exactly one reason.
    let after = b.stats();
    let n = cases().len() as u64;
    let delta = |k: &str| {
        after["reasons"][k].as_u64().unwrap_or(0) - before["reasons"][k].as_u64().unwrap_or(0)
    };
    assert_eq!(delta("packets"), n, "packets counter");
    for (reason, count) in &expected {
        assert_eq!(delta(reason), *count, "counter {reason}");
    }
    let total: u64 = after["reasons"]
        .as_object()
        .expect("reasons")
        .keys()
        .filter(|k| *k != "packets" && *k != "tcp_queries")
        .map(|k| delta(k))
        .sum();
    assert_eq!(total, n, "each frame counted under exactly one reason");
    // Per-order counters: the allow rule's order counted its pass.
    let orders = after["orders"].as_array().expect("orders");
    let allow = orders
        .iter()
        .find(|o| o["name"] == "allow-critical")
        .expect("allow order");
    assert_eq!(allow["by_action"]["pass"].as_u64(), Some(1));
}

/// The query frame without link padding (what the answer is compared with).
/// `f` over IPv4 with a record-route option (8 bytes of options), DF set.
fn with_record_route(mut f: Frame) -> Frame {
    f.ip = Ip::V4 {
        src: [192, 0, 2, 1],
        dst: [192, 0, 2, 53],
        options: vec![0x07, 0x07, 0x04, 0x00, 0, 0, 0, 0],
        frag: 0x4000,
        tot_len: None,
    };
    f
}

fn strip_padding(frame: &[u8]) -> Vec<u8> {
    let mut off = 12;
    let mut et = u16::from_be_bytes([frame[off], frame[off + 1]]);
    while et == 0x8100 || et == 0x88a8 {
        off += 4;
        et = u16::from_be_bytes([frame[off], frame[off + 1]]);
    }
    let l3 = off + 2;
    let end = if et == 0x0800 {
        l3 + u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]) as usize
    } else {
        l3 + 40 + u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]) as usize
    };
    frame[..end.min(frame.len())].to_vec()
}

#[test]
fn repeated_runs_of_an_allowed_query_leave_it_untouched() {
    let (_b, prog) = setup();
    let fd = prog.fd().expect("fd");
    let frame = q4e("news.example.", RecordType::A);
    let out = test_run(fd.as_fd(), &frame, 1000).expect("test run");
    assert_eq!(out.retval, XDP_PASS);
    assert_eq!(out.data, frame);
}

/// The key filter sits in front of the rule map: the controller sets the bit of every rule
/// name, a clear bit makes the program pass without asking the map, and a filter turned off
/// leaves the decision to the map alone.
#[test]
fn the_key_filter_decides_before_the_rule_map() {
    use blocker_common::{filter::position, key::key_of_canonical, MAP_FILTER};
    let (b, prog) = setup();
    let fd = prog.fd().expect("fd");
    let mut maps = blocker::kernel::Maps::open(&b.pins()).expect("maps");
    let cfg = maps.config().expect("config");
    let secret = maps.key_secret().expect("key map").expect("key secret");
    let key = key_of_canonical(&secret, b"\x07blocked\x04test");
    let (at, bit) = position(cfg.filter, &key).expect("the controller turned the filter on");
    let filter = maps.filter.as_ref().expect("filter mapped");
    assert!(filter.may_hold(cfg.filter, &key));
    println!(
        "filter setting {:#04x}, {} bits set",
        cfg.filter,
        filter.ones(cfg.filter)
    );

    let frame = q4e("www.blocked.test.", RecordType::A);
    let run = || test_run(fd.as_fd(), &frame, 1).expect("test run").retval;
    assert_eq!(run(), XDP_TX);

    // Clear the rule's bit behind the controller's back (through a mapping of our own): the
    // query is no longer matched.
    let data = aya::maps::MapData::from_pin(b.pins().map(MAP_FILTER)).expect("filter map");
    let mut words = blocker::filter::mapping(&data).expect("mapping");
    let saved = words.as_ref()[at];
    assert_ne!(saved & bit, 0);
    words.as_mut()[at] = saved & !bit;
    let before = b.reason("no_match");
    assert_eq!(run(), XDP_PASS);
    assert_eq!(b.reason("no_match"), before + 1, "counted as no match");

    // Filter off: the rule map alone decides, and the rule is found again.
    maps.set_config(&blocker_common::Config { filter: 0, ..cfg })
        .expect("config");
    assert_eq!(run(), XDP_TX);

    // Back on, with the bit restored.
    words.as_mut()[at] = saved;
    maps.set_config(&cfg).expect("config");
    assert_eq!(run(), XDP_TX);
}

// Response rate limiting.

/// A query with EDNS for `name` from `src`.
fn query_from(src: IpAddr, name: &str) -> Vec<u8> {
    let q = dns::query(0x5151, name, RecordType::A, Some((false, vec![])));
    match src {
        IpAddr::V4(a) => {
            let mut f = Frame::v4(q);
            if let Ip::V4 { src, .. } = &mut f.ip {
                *src = a.octets();
            }
            f.bytes()
        }
        IpAddr::V6(a) => {
            let mut f = Frame::v6(q);
            if let Ip::V6 { src, .. } = &mut f.ip {
                *src = a.octets();
            }
            f.bytes()
        }
    }
}

/// What a blocked query got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    /// The rule's answer: NXDOMAIN with the order's EDE.
    Answer,
    /// The rate limiter's slip: TC=1, NOERROR, the question echoed, nothing else.
    Slip,
    /// Nothing (XDP_DROP).
    Drop,
}

/// Runs `frame` (a query for a name under the NXDOMAIN rule) once, on a fresh copy, and
/// checks whatever comes back with hickory-proto.
fn run_blocked(fd: BorrowedFd<'_>, frame: &[u8]) -> Got {
    let out = test_run(fd, frame, 1).expect("test run");
    match out.retval {
        XDP_DROP => Got::Drop,
        XDP_TX => {
            let qin = packet::parse(frame).expect("query frame");
            let a = packet::parse(&out.data).unwrap_or_else(|e| panic!("answer frame: {e}"));
            assert_eq!(
                (&a.src_ip, &a.dst_ip, a.sport, a.dport),
                (&qin.dst_ip, &qin.src_ip, qin.dport, qin.sport),
                "addresses and ports swapped"
            );
            let d = dns::parse(&a.dns);
            let qe = dns::question_end(&qin.dns);
            assert_eq!(d.question, qin.dns[12..qe], "question echoed byte for byte");
            assert!(
                d.id == 0x5151 && d.qr && d.rd && d.ra && !d.aa,
                "header {d:?}"
            );
            assert_eq!(d.msg.queries().len(), 1);
            assert!(
                d.answers.is_empty() && d.msg.name_servers().is_empty(),
                "{d:?}"
            );
            if d.tc {
                assert_eq!(d.rcode, 0, "a slip is NOERROR");
                assert!(d.ede.is_empty(), "a slip carries no EDE: {d:?}");
                assert_eq!(
                    d.opt,
                    Some((1232, false)),
                    "the query's EDNS answered with a bare OPT"
                );
                assert!(
                    a.dns.len() <= qin.dns.len(),
                    "a slip is never larger than its query"
                );
                Got::Slip
            } else {
                assert_eq!(d.rcode, 3, "NXDOMAIN");
                assert_eq!(d.ede, vec![(16, ORDER_TEXT.to_string())]);
                Got::Answer
            }
        }
        other => panic!("unexpected {}", action_name(other)),
    }
}

/// Counters the rate limiter touches: exit reasons, the order's hits by action and the rule's
/// hits.
fn rrl_counters(b: &Blocker) -> BTreeMap<&'static str, u64> {
    let s = b.stats();
    let r = |k: &str| {
        s["reasons"][k]
            .as_u64()
            .unwrap_or_else(|| panic!("no reason {k}"))
    };
    let order = s["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .find(|o| o["name"] == "Court-A")
        .cloned()
        .expect("order Court-A");
    let rule = s["top_rules"]
        .as_array()
        .expect("top rules")
        .iter()
        .find(|x| x["name"] == "blocked.test")
        .and_then(|x| x["hits"].as_u64())
        .unwrap_or(0);
    BTreeMap::from([
        ("nxdomain", r("nxdomain")),
        ("rrl_slipped", r("rrl_slipped")),
        ("rrl_dropped", r("rrl_dropped")),
        ("dropped", r("dropped")),
        ("no_match", r("no_match")),
        (
            "order nxdomain",
            order["by_action"]["nxdomain"].as_u64().unwrap_or(0),
        ),
        (
            "order drop",
            order["by_action"]["drop"].as_u64().unwrap_or(0),
        ),
        ("rule", rule),
    ])
}

fn delta(
    before: &BTreeMap<&'static str, u64>,
    after: &BTreeMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    after.iter().map(|(k, v)| (*k, v - before[k])).collect()
}

/// Runs `f` (given the attempt number, to pick fresh client prefixes) until one run took less
/// than `limit`. With a rate of one answer per second no token comes back within a second of
/// a prefix's first query, so exact counts hold for a run that fits; a slower run (a busy
/// machine) proves nothing and is repeated. A guard, not a timed assertion.
fn within<T>(limit: Duration, mut f: impl FnMut(u8) -> T) -> T {
    for attempt in 0..4 {
        let start = Instant::now();
        let out = f(attempt);
        let took = start.elapsed();
        if took < limit {
            return out;
        }
        eprintln!("attempt {attempt} took {took:?}: again, with fresh prefixes");
    }
    panic!("four attempts all took longer than {limit:?}");
}

const SECOND: Duration = Duration::from_millis(900);

/// Response rate limiting, on the real program: a low rate and burst, the same blocked query
/// run again and again from one client: the first `burst` are answered, then every second is
/// a bare TC=1 answer and the others dropped, counted as such (the rule and order still count
/// every hit); a neighbour in the same /24 (or /56) shares the bucket, another prefix does
/// not; drops and passes are never limited; slip 0 and 1, the prefix length, and rate 0 (off)
/// do what they say.
#[test]
fn response_rate_limiting_per_client_prefix() {
    const BURST: usize = 5;
    const OVER: usize = 20;
    let (b, prog) = setup();
    let fd = prog.fd().expect("fd");
    let cpu = pin_to_this_cpu();
    println!("pinned to CPU {cpu}");
    b.ok(&[
        "config",
        "set",
        "--rrl-rate",
        "1",
        "--rrl-burst",
        &BURST.to_string(),
        "--rrl-slip",
        "2",
    ]);
    let shown: serde_json::Value =
        serde_json::from_str(&b.ok(&["config", "show", "--json"])).expect("json");
    assert_eq!(
        (
            &shown["rrl_rate"],
            &shown["rrl_burst"],
            &shown["rrl_slip"],
            &shown["rrl_v4_prefix"],
            &shown["rrl_v6_prefix"]
        ),
        (&1.into(), &5.into(), &2.into(), &24.into(), &56.into()),
        "{shown}"
    );
    let text = b.ok(&["config", "show"]);
    assert!(
        text.contains("rrl-rate      1/s per prefix, per CPU"),
        "{text}"
    );

    let (got, neighbour, other, got6, neighbour6, other6, drops, passes, d) = within(SECOND, |n| {
        let before = rrl_counters(&b);
        let here = IpAddr::from([10, 1, n, 3]);
        let q = query_from(here, "www.blocked.test.");
        let got: Vec<Got> = (0..BURST + OVER)
            .map(|_| run_blocked(fd.as_fd(), &q))
            .collect();
        let neighbour = run_blocked(
            fd.as_fd(),
            &query_from(IpAddr::from([10, 1, n, 200]), "blocked.test."),
        );
        let other = run_blocked(
            fd.as_fd(),
            &query_from(IpAddr::from([10, 1, n + 100, 3]), "blocked.test."),
        );
        // /56: the first 56 bits, here 2001:db8:N:01xx::.
        let v6 = |sub: u16, host: u16| {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, n as u16, sub, 0, 0, 0, host))
        };
        let q6 = query_from(v6(0x0100, 1), "blocked.test.");
        let got6: Vec<Got> = (0..BURST).map(|_| run_blocked(fd.as_fd(), &q6)).collect();
        let neighbour6 = run_blocked(fd.as_fd(), &query_from(v6(0x01ff, 0x99), "x.blocked.test."));
        let other6 = run_blocked(fd.as_fd(), &query_from(v6(0x0200, 1), "blocked.test."));
        // A drop rule and an allowed name, from the prefix that is over its limit.
        let drops: Vec<u32> = (0..3)
            .map(|_| {
                test_run(fd.as_fd(), &query_from(here, "x.drop.test."), 1)
                    .expect("run")
                    .retval
            })
            .collect();
        let allowed = query_from(here, "news.example.");
        let passes: Vec<bool> = (0..3)
            .map(|_| {
                let out = test_run(fd.as_fd(), &allowed, 1).expect("run");
                out.retval == XDP_PASS && out.data == allowed
            })
            .collect();
        let d = delta(&before, &rrl_counters(&b));
        (
            got, neighbour, other, got6, neighbour6, other6, drops, passes, d,
        )
    });
    let mut want = vec![Got::Answer; BURST];
    for _ in 0..OVER / 2 {
        want.extend([Got::Slip, Got::Drop]);
    }
    assert_eq!(
        got, want,
        "the first {BURST} answered, then slip, drop, slip, …"
    );
    assert_eq!(
        neighbour,
        Got::Slip,
        "same /24: the same bucket (21st over: a slip)"
    );
    assert_eq!(other, Got::Answer, "another /24: a bucket of its own");
    assert_eq!(got6, vec![Got::Answer; BURST]);
    assert_eq!(neighbour6, Got::Slip, "same /56: the same bucket");
    assert_eq!(other6, Got::Answer, "another /56");
    assert_eq!(drops, vec![XDP_DROP; 3], "drop rules are not limited");
    assert_eq!(passes, vec![true; 3], "passes are not limited");
    let blocked = (BURST + OVER + 2 + BURST + 2) as u64;
    assert_eq!(
        d,
        BTreeMap::from([
            ("nxdomain", 2 * BURST as u64 + 2),
            ("rrl_slipped", OVER as u64 / 2 + 2),
            ("rrl_dropped", OVER as u64 / 2),
            ("dropped", 3),
            ("no_match", 3),
            ("order nxdomain", blocked),
            ("order drop", 3),
            ("rule", blocked),
        ]),
        "counters: the exits say what happened, the rule and order count every hit"
    );

    // slip 0: everything over the limit is dropped; slip 1: everything gets TC=1.
    for (slip, octet, over) in [("0", 2u8, Got::Drop), ("1", 3, Got::Slip)] {
        b.ok(&["config", "set", "--rrl-slip", slip]);
        let (got, d) = within(SECOND, |n| {
            let before = rrl_counters(&b);
            let q = query_from(IpAddr::from([10, octet, n, 1]), "blocked.test.");
            let got: Vec<Got> = (0..BURST + 6)
                .map(|_| run_blocked(fd.as_fd(), &q))
                .collect();
            (got, delta(&before, &rrl_counters(&b)))
        });
        let mut want = vec![Got::Answer; BURST];
        want.extend([over; 6]);
        assert_eq!(got, want, "slip {slip}");
        let (s, dr) = if over == Got::Slip { (6, 0) } else { (0, 6) };
        assert_eq!(
            (d["nxdomain"], d["rrl_slipped"], d["rrl_dropped"]),
            (BURST as u64, s, dr),
            "slip {slip}"
        );
    }

    // A /32 prefix: every address its own bucket.
    b.ok(&["config", "set", "--rrl-slip", "2", "--rrl-v4-prefix", "32"]);
    let (first, second) = within(SECOND, |n| {
        let q = query_from(IpAddr::from([10, 4, n, 1]), "blocked.test.");
        let first: Vec<Got> = (0..BURST + 1)
            .map(|_| run_blocked(fd.as_fd(), &q))
            .collect();
        let second = run_blocked(
            fd.as_fd(),
            &query_from(IpAddr::from([10, 4, n, 2]), "blocked.test."),
        );
        (first, second)
    });
    assert_eq!(first[BURST], Got::Slip, "{first:?}");
    assert_eq!(second, Got::Answer, "/32: the next address is not limited");

    // Rate 0: off. Many answers to one address, none limited (no timing involved).
    b.ok(&["config", "set", "--rrl-rate", "0"]);
    let before = rrl_counters(&b);
    let q = query_from(IpAddr::from([10, 5, 0, 1]), "blocked.test.");
    for i in 0..200 {
        assert_eq!(
            run_blocked(fd.as_fd(), &q),
            Got::Answer,
            "query {i} with RRL off"
        );
    }
    let d = delta(&before, &rrl_counters(&b));
    assert_eq!(
        (d["nxdomain"], d["rrl_slipped"], d["rrl_dropped"]),
        (200, 0, 0)
    );
}

// Verdicts never depend on side channels.

/// Checks an answer to `frame` with hickory-proto: XDP_TX, this rcode and TC bit, the
/// question echoed, and the order's EDE when the query had EDNS.
fn assert_answer(fd: BorrowedFd<'_>, frame: &[u8], rcode: u16, tc: bool, what: &str) {
    let out = test_run(fd, frame, 1).expect("test run");
    assert_eq!(out.retval, XDP_TX, "{what}: {}", action_name(out.retval));
    let qin = packet::parse(frame).expect("query");
    let a = packet::parse(&out.data).unwrap_or_else(|e| panic!("{what}: answer frame: {e}"));
    let d = dns::parse(&a.dns);
    let qe = dns::question_end(&qin.dns);
    assert_eq!(d.question, qin.dns[12..qe], "{what}: question echoed");
    assert_eq!((d.rcode, d.tc), (rcode, tc), "{what}");
    assert_eq!(d.ede, vec![(16, ORDER_TEXT.to_string())], "{what}: EDE");
}

/// The block-event ring buffer filled to the last record by every-hit sampling with nobody
/// reading it: every further block still gets its answer (rcode, EDE) and a drop rule still
/// drops; only the events are lost.
#[test]
fn a_full_event_ring_buffer_changes_no_verdict() {
    use blocker_common::{BlockEvent, EVENTS_BYTES, MAP_EVENTS};
    let (b, prog) = setup();
    let fd = prog.fd().expect("fd");
    // Tens of thousands of blocked queries from one address: no rate limit.
    b.rrl_off();
    b.ok(&["config", "set", "--events-every", "1"]);
    let ring = blocker_tests::ringbuf::Positions::open(&b.pins().map(MAP_EVENTS));
    // A record is the event behind an 8-byte header, in multiples of 8 (kernel/bpf/ringbuf.c);
    // a reservation fails when the producer would get more than size - 1 bytes ahead of the
    // consumer.
    let record = (8 + std::mem::size_of::<BlockEvent>() as u64).next_multiple_of(8);
    let size = EVENTS_BYTES as u64;
    let full = |(prod, cons): (u64, u64)| prod + record - cons > size - 1;
    let start = ring.get();
    assert_eq!(start, (0, 0), "a fresh ring buffer");
    let frame = q4e("www.blocked.test.", RecordType::A);
    let before = b.stats();
    let mut runs = 0u64;
    while !full(ring.get()) {
        let out = test_run(fd.as_fd(), &frame, 1).expect("test run");
        assert_eq!(out.retval, XDP_TX, "run {runs}");
        runs += 1;
        assert!(
            runs <= size / record,
            "{runs} blocks and still not full: {:?}",
            ring.get()
        );
    }
    let (prod, cons) = ring.get();
    println!("ring buffer full after {runs} events: producer {prod}, consumer {cons}");
    assert_eq!(cons, 0, "nobody read it");
    assert_eq!(runs, (size - 1) / record, "one event per block until full");
    assert_eq!(prod, runs * record);

    // Full: blocks are answered as before, drops dropped, and the events lost.
    for _ in 0..100 {
        assert_answer(fd.as_fd(), &frame, 3, false, "nxdomain, ring buffer full");
    }
    assert_answer(
        fd.as_fd(),
        &q4e("exact.test.", RecordType::A),
        5,
        false,
        "refused",
    );
    assert_answer(fd.as_fd(), &q4e("tc.test.", RecordType::A), 0, true, "tc");
    let out = test_run(fd.as_fd(), &q4e("x.drop.test.", RecordType::A), 1).expect("run");
    assert_eq!(out.retval, XDP_DROP, "a drop rule still drops");
    assert_eq!(ring.get(), (prod, cons), "nothing more fitted");
    // The counters kept counting.
    let after = b.stats();
    let d = |k: &str| {
        after["reasons"][k].as_u64().unwrap_or(0) - before["reasons"][k].as_u64().unwrap_or(0)
    };
    assert_eq!(
        (d("nxdomain"), d("refused"), d("tc"), d("dropped")),
        (runs + 100, 1, 1, 1)
    );
}

/// Rule counters are an array indexed by rule id (capacity 8: ids 0 to 7, the last one
/// included): every rule's hits counted exactly, a removed rule's counter gone, and a new rule
/// that takes its id starting from zero. The oracle is the number of queries each name was
/// sent, read back through `blocker stats` by rule name.
#[test]
fn rule_counters_by_id_count_exactly_and_restart_when_an_id_is_reused() {
    const CAPACITY: u32 = 8;
    let b = Blocker::new();
    // `blocker attach --capacity` sizes the rule map and BLK_RULE_HITS the same way; there is
    // no interface to attach to here.
    blocker::kernel::load_and_pin(&b.pins(), CAPACITY).expect("load");
    let names: Vec<String> = (0..CAPACITY).map(|i| format!("r{i}.test")).collect();
    for name in &names {
        b.ok(&[
            "rules",
            "add",
            name,
            "--order",
            "Court-A",
            "--ede-text",
            ORDER_TEXT,
        ]);
    }
    let prog = blocker::kernel::pinned_program(&b.pins(), false).expect("program");
    let fd = prog.fd().expect("fd");
    let send = |name: &str, times: usize| {
        for _ in 0..times {
            assert_answer(
                fd.as_fd(),
                &q4e(&format!("{name}."), RecordType::A),
                3,
                false,
                name,
            );
        }
    };
    let rule_hits = || b.rule_hits();
    for (i, name) in names.iter().enumerate() {
        send(name, i + 1);
    }
    assert_eq!(
        blocker::kernel::pinned_capacity(&b.pins()).expect("capacity"),
        CAPACITY,
        "the last id is the array's last entry"
    );
    let want: BTreeMap<String, u64> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i as u64 + 1))
        .collect();
    assert_eq!(rule_hits(), want);

    // r3 goes; a new name takes the free id and starts from nothing.
    b.ok(&["rules", "remove", "r3.test", "--order", "Court-A"]);
    b.ok(&["rules", "add", "new.test", "--order", "Court-A"]);
    let mut want = want;
    want.remove("r3.test");
    assert_eq!(
        rule_hits(),
        want,
        "no counter for the removed rule nor the new one"
    );
    send("new.test", 2);
    want.insert("new.test".to_string(), 2);
    assert_eq!(rule_hits(), want);
    // Equal hits at the --top cut go by name (new.test and r1.test both have 2; by rule id
    // r1.test would come first).
    let top6: serde_json::Value =
        serde_json::from_str(&b.ok(&["stats", "--json", "--top", "6"])).expect("json");
    let names: Vec<&str> = top6["top_rules"]
        .as_array()
        .expect("top_rules")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["r7.test", "r6.test", "r5.test", "r4.test", "r2.test", "new.test"]
    );
    let s = b.stats();
    let order = s["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .find(|o| o["name"] == "Court-A")
        .cloned()
        .expect("order");
    assert_eq!(
        order["hits"].as_u64(),
        Some((1..=8).sum::<u64>() + 2),
        "{order}"
    );
}

/// Rule ids spread above the number of rules (a list replaced by another takes new ids while
/// the old ones are in force), and a restore keeps them: after a reboot the maps must be sized
/// by the largest recorded id, not by the number of rules, or the rules above it have no
/// counter. 40,000 names replaced by 40,000 others hold ids 40,000 to 79,999; a restore sized
/// by the count would make 65,536.
#[test]
fn a_restore_sizes_the_maps_above_every_recorded_rule_id() {
    let b = Blocker::new();
    let tmp = blocker_tests::env::TempDir::new("blkt-ids");
    for (file, prefix) in [("a.txt", "a"), ("b.txt", "b")] {
        let text: String = (0..40_000).map(|i| format!("{prefix}{i}.test\n")).collect();
        std::fs::write(tmp.join(file), text).expect("list");
    }
    for file in ["a.txt", "b.txt"] {
        b.ok(&[
            "rules",
            "load",
            &tmp.join(file).display().to_string(),
            "--order",
            "Court-A",
            "--ede-text",
            ORDER_TEXT,
        ]);
    }
    // A reboot empties the BPF filesystem; the state directory stays. The next command
    // restores the record into new maps.
    std::fs::remove_dir_all(&b.bpffs).expect("remove the pinned directory");
    b.ok(&["rules", "add", "extra.test", "--order", "Court-B"]);
    let capacity = blocker::kernel::pinned_capacity(&b.pins()).expect("capacity");
    assert!(capacity >= 80_000, "restored with capacity {capacity}");
    let prog = blocker::kernel::pinned_program(&b.pins(), false).expect("program");
    let fd = prog.fd().expect("fd");
    for name in ["b0.test", "b39999.test"] {
        assert_answer(
            fd.as_fd(),
            &q4e(&format!("{name}."), RecordType::A),
            3,
            false,
            name,
        );
    }
    assert_eq!(
        b.rule_hits(),
        BTreeMap::from([("b0.test".to_string(), 1), ("b39999.test".to_string(), 1)])
    );
}

/// The benchmarks' references (`blocker_floor`, `blocker_reflect`) must answer what they claim,
/// or their figures are no floor: a REFUSED answer with valid checksums and the question
/// echoed, and the frame reflected unchanged but for its addresses and ports.
#[test]
fn the_benchmark_references_answer_correctly() {
    let b = Blocker::new();
    // In the instance's bpffs directory: removed with it.
    let dir = b.bpffs.join("references");
    for (name, answers) in [("blocker_floor", true), ("blocker_reflect", false)] {
        let mut ebpf = blocker::kernel::load_reference(&dir.join(name), name).expect("load");
        let prog = blocker::kernel::program_mut(&mut ebpf, name).expect("program");
        let fd = prog.fd().expect("fd");
        for (v6, edns) in [(false, false), (false, true), (true, true)] {
            let q = raw_query(0x1234, &[b"www", b"Example", b"test"], 1, edns);
            let f = if v6 {
                Frame::v6(q.clone())
            } else {
                Frame::v4(q.clone())
            }
            .bytes();
            let r = test_run(fd.as_fd(), &f, 1).expect("test run");
            assert_eq!(action_name(r.retval), "XDP_TX", "{name} v6={v6}");
            let (qp, ap) = (
                packet::parse(&f).expect("query"),
                packet::parse(&r.data).unwrap_or_else(|e| panic!("{name}: {e}")),
            );
            assert_eq!(
                (&ap.src_ip, &ap.dst_ip, ap.sport, ap.dport, ap.src_mac, ap.dst_mac),
                (&qp.dst_ip, &qp.src_ip, qp.dport, qp.sport, qp.dst_mac, qp.src_mac),
                "{name}: addresses and ports swapped"
            );
            if answers {
                assert_eq!(&ap.dns[..2], &q[..2], "ID");
                assert_eq!(ap.dns[2], 0x81, "QR, RD kept");
                assert_eq!(ap.dns[3], 0x85, "RA, REFUSED");
                assert_eq!(&ap.dns[4..], &q[4..], "counts and question as asked");
            } else {
                assert_eq!(ap.dns, q, "{name}: the message unchanged");
            }
        }
        // Not DNS: passed.
        let mut f = Frame::v4(raw_query(1, &[b"a"], 1, false));
        f.dport = 5353;
        let r = test_run(fd.as_fd(), &f.bytes(), 1).expect("test run");
        assert_eq!(action_name(r.retval), "XDP_PASS");
    }
}

/// The benchmark's receiver (`blocker_sink`) must count what the generator's replies are and
/// nothing else, or the end-to-end figures count the wrong thing: replies to the generator's
/// ports (below 32768) by RCODE, a query sent back in its own entry, all of them dropped; a
/// reply to another port (kdig's) and IPv6 passed and uncounted.
#[test]
fn the_benchmark_sink_counts_the_generators_replies_by_rcode() {
    let b = Blocker::new();
    let dir = b.bpffs.join("references");
    let mut ebpf =
        blocker::kernel::load_reference(&dir.join("sink"), "blocker_sink").expect("load");
    let fd = blocker::kernel::program_mut(&mut ebpf, "blocker_sink")
        .expect("program")
        .fd()
        .expect("fd")
        .try_clone()
        .expect("fd");
    // A reply is a query with QR set and an RCODE, from port 53.
    let reply = |rcode: u8, qr: bool, to: u16, v6: bool| {
        let mut m = raw_query(7, &[b"www", b"example", b"test"], 1, false);
        if qr {
            m[2] |= 0x80;
            m[3] = (m[3] & 0xf0) | rcode;
        }
        let mut f = if v6 { Frame::v6(m) } else { Frame::v4(m) };
        (f.sport, f.dport) = (53, to);
        f.bytes()
    };
    let cases = [
        (reply(3, true, 1024, false), "XDP_DROP"),
        (reply(3, true, 32767, false), "XDP_DROP"),
        (reply(0, true, 20000, false), "XDP_DROP"),
        (reply(5, true, 20000, false), "XDP_DROP"),
        (reply(0, false, 20000, false), "XDP_DROP"),
        (reply(3, true, 32768, false), "XDP_PASS"),
        (reply(3, true, 20000, true), "XDP_PASS"),
    ];
    for (i, (f, want)) in cases.iter().enumerate() {
        let r = test_run(fd.as_fd(), f, 1).expect("test run");
        assert_eq!(action_name(r.retval), *want, "case {i}");
    }
    let map = ebpf.map(blocker_common::MAP_BENCH_REPLIES).expect("map");
    let arr = aya::maps::PerCpuArray::<_, u64>::try_from(map).expect("per-CPU array");
    let counts: Vec<u64> = (0..blocker_common::BENCH_REPLY_SLOTS)
        .map(|i| arr.get(&i, 0).expect("entry").iter().sum())
        .collect();
    let mut want = vec![0u64; 17];
    (want[3], want[0], want[5], want[16]) = (2, 1, 1, 1);
    assert_eq!(counts, want);
}

/// glibc's A and AAAA queries for a blocked name in one TCP segment: the A query is answered
/// with an acknowledgement of its bytes only and the connection left open (PSH|ACK, no FIN);
/// the AAAA query, sent again by the client's TCP in a segment of its own, is answered next in
/// the same stream and closes it. A different name behind the blocked one: the whole segment
/// is acknowledged and the connection closed (RFC 793 arithmetic checked by the tests' own
/// packet code).
#[test]
fn a_blocked_names_a_and_aaaa_in_one_segment_are_answered_one_after_the_other() {
    let (_b, prog) = setup();
    let fd = prog.fd().expect("fd");
    let framed = |msgs: &[&Vec<u8>]| {
        let mut v = Vec::new();
        for m in msgs {
            v.extend_from_slice(&(m.len() as u16).to_be_bytes());
            v.extend_from_slice(m);
        }
        v
    };
    let a = dns::query(
        0x0a0a,
        "www.blocked.test.",
        RecordType::A,
        Some((false, vec![])),
    );
    let aaaa = dns::query(
        0x0b0b,
        "www.blocked.test.",
        RecordType::AAAA,
        Some((false, vec![])),
    );
    let tcp = |seq: u32, ack: u32| Tcp {
        seq,
        ack,
        raw_payload: true,
        options: packet::ts_option(11, 22),
        ..Tcp::default()
    };
    let frame = Frame::v4(framed(&[&a, &aaaa]))
        .over_tcp(tcp(1000, 5000))
        .bytes();
    open_tcp_flow(&prog, &frame);
    let out = test_run(fd.as_fd(), &frame, 1).expect("test_run");
    assert_eq!(out.retval, XDP_TX, "{}", action_name(out.retval));
    let q = packet::parse(&strip_padding(
        &Frame::v4(a.clone())
            .over_tcp(Tcp {
                raw_payload: false,
                ..tcp(1000, 5000)
            })
            .bytes(),
    ))
    .expect("the first query alone");
    let ans = packet::parse(&out.data).expect("answer frame");
    let at = ans.tcp.as_ref().expect("TCP");
    packet::check_tcp_answer(q.tcp.as_ref().expect("TCP"), at, Some(2 + a.len()))
        .expect("first answer: the A query only, connection open");
    let d = dns::parse(&ans.dns);
    assert_eq!((d.id, d.rcode), (0x0a0a, 3));
    // The client's retransmission of the AAAA query: the next bytes of its stream, and an
    // acknowledgement of the first answer.
    let next_ack = 5000 + 2 + ans.dns.len() as u32;
    let retx = Frame::v4(aaaa.clone())
        .over_tcp(Tcp {
            raw_payload: false,
            ..tcp(1000 + 2 + a.len() as u32, next_ack)
        })
        .bytes();
    let out2 = test_run(fd.as_fd(), &retx, 1).expect("test_run");
    assert_eq!(out2.retval, XDP_TX);
    let q2 = packet::parse(&strip_padding(&retx)).expect("retransmission");
    let ans2 = packet::parse(&out2.data).expect("second answer");
    packet::check_tcp_answer(
        q2.tcp.as_ref().expect("TCP"),
        ans2.tcp.as_ref().expect("TCP"),
        None,
    )
    .expect("second answer: the rest acknowledged, FIN");
    assert_eq!(
        ans2.tcp.as_ref().expect("TCP").seq,
        at.seq + 2 + ans.dns.len() as u32,
        "the second answer follows the first in the server's stream"
    );
    let d2 = dns::parse(&ans2.dns);
    assert_eq!((d2.id, d2.rcode), (0x0b0b, 3));

    // Another name behind it (same length, one byte apart): the whole segment, closed. (On
    // a connection of its own: on this one, seq 1000 is behind where the stream stands.)
    forget_tcp_flows(&prog);
    let other = dns::query(0x0c0c, "www.blocked.tesu.", RecordType::AAAA, None);
    let frame = Frame::v4(framed(&[&a, &other]))
        .over_tcp(tcp(1000, 5000))
        .bytes();
    open_tcp_flow(&prog, &frame);
    let out = test_run(fd.as_fd(), &frame, 1).expect("test_run");
    assert_eq!(out.retval, XDP_TX);
    let ans = packet::parse(&out.data).expect("answer frame");
    let whole = packet::TcpParsed {
        data_len: 4 + a.len() + other.len(),
        ..q.tcp.clone().expect("TCP")
    };
    packet::check_tcp_answer(&whole, ans.tcp.as_ref().expect("TCP"), None)
        .expect("a different name behind: all acknowledged, FIN");
}

/// A TCP segment is judged only where its connection's next message starts (README, SECURITY.md
/// "DNS over TCP"): after the SYN, right after it; after a segment passed, cut or answered, right
/// after its first message; or at the last message again with the same length. Anywhere else —
/// inside what was let through, or past a gap, or on a connection whose SYN was not seen — it is
/// dropped (tcp_out_of_step). A SYN on a live stream is ignored; a RST changes nothing;
/// another connection (another port, another IP version) has its own stream.
#[test]
fn a_tcp_segment_is_judged_only_where_its_connections_next_message_starts() {
    let (b, prog) = setup();
    let fd = prog.fd().expect("fd");
    let framed = |q: Vec<u8>| {
        let mut v = (q.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(&q);
        v
    };
    let seg = |v6: bool, sport: u16, seq: u32, flags: u8, data: &[u8]| {
        let f = if v6 {
            Frame::v6(data.to_vec())
        } else {
            Frame::v4(data.to_vec())
        };
        segment(f, sport, 53, seq, flags)
    };
    let run = |f: Vec<u8>| test_run(fd.as_fd(), &f, 1).expect("test_run").retval;
    let data = |v6, sport, seq, d: &[u8]| run(seg(v6, sport, seq, 0x18, d));
    let before = b.reason("tcp_out_of_step");
    let m1 = framed(dns::query(1, "news.example.", RecordType::A, None));
    let m1_longer = framed(dns::query(
        1,
        "news.example.",
        RecordType::A,
        Some((false, vec![])),
    ));
    let m2 = framed(dns::query(2, "other.example.", RecordType::A, None));
    let m3 = framed(dns::query(3, "blocked.test.", RecordType::A, None));
    let s1 = 1000u32;
    let s2 = s1 + m1.len() as u32;
    let s3 = s2 + m2.len() as u32;
    let s4 = s3 + m3.len() as u32;

    assert_eq!(run(seg(false, 40000, s1 - 1, 0x02, &[])), XDP_PASS, "SYN");
    assert_eq!(
        data(false, 40000, s1 + 1, &m1),
        XDP_DROP,
        "one byte past the start"
    );
    assert_eq!(data(false, 40000, s1, &m1), XDP_PASS, "the first message");
    assert_eq!(
        data(false, 40000, s2 - 5, &m2),
        XDP_DROP,
        "inside the first"
    );
    assert_eq!(data(false, 40000, s2 + 7, &m2), XDP_DROP, "past a gap");
    assert_eq!(data(false, 40000, s1, &m1), XDP_PASS, "the first again");
    assert_eq!(
        data(false, 40000, s1, &m1_longer),
        XDP_DROP,
        "the first again, longer"
    );
    assert_eq!(data(false, 40000, s2, &m2), XDP_PASS, "the second");
    assert_eq!(
        data(false, 40000, s3, &m3),
        XDP_TX,
        "a blocked third, answered"
    );
    assert_eq!(
        data(false, 40000, s3 + 1, &m1),
        XDP_DROP,
        "inside the third"
    );
    // Two messages in one segment: cut after the first, and the stream moves past it only.
    let both = [m1.clone(), m2.clone()].concat();
    assert_eq!(data(false, 40000, s4, &both), XDP_PASS, "two, cut");
    let s5 = s4 + m1.len() as u32;
    assert_eq!(
        data(false, 40000, s4 + both.len() as u32, &m2),
        XDP_DROP,
        "past the cut"
    );
    assert_eq!(
        data(false, 40000, s5, &m2),
        XDP_PASS,
        "the rest, sent again"
    );
    // A segment a rule drops moves the stream too: sent again it is the last message,
    // admitted (and dropped again); the message after it is the next.
    let s6 = s5 + m2.len() as u32;
    let dropped = framed(dns::query(4, "www.drop.test.", RecordType::A, None));
    assert_eq!(
        data(false, 40000, s6, &dropped),
        XDP_DROP,
        "dropped by a rule"
    );
    assert_eq!(
        data(false, 40000, s6, &dropped),
        XDP_DROP,
        "the same, sent again"
    );
    let s7 = s6 + dropped.len() as u32;
    assert_eq!(
        data(false, 40000, s7, &m1),
        XDP_PASS,
        "the message after it"
    );

    // Another port, and the same port over IPv6: streams of their own, from their SYNs; data
    // of a connection whose SYN was not seen is dropped.
    assert_eq!(
        data(false, 40001, 77, &m1),
        XDP_DROP,
        "another port, no SYN"
    );
    assert_eq!(run(seg(false, 40001, 76, 0x02, &[])), XDP_PASS, "its SYN");
    assert_eq!(data(false, 40001, 77, &m1), XDP_PASS, "another port: first");
    assert_eq!(
        data(false, 40001, 78, &m1),
        XDP_DROP,
        "another port: inside"
    );
    assert_eq!(run(seg(true, 40000, 9, 0x02, &[])), XDP_PASS, "IPv6 SYN");
    assert_eq!(
        data(true, 40000, 9, &m1),
        XDP_DROP,
        "IPv6: on the SYN's number"
    );
    assert_eq!(
        data(true, 40000, 10, &m1),
        XDP_PASS,
        "IPv6: the first message"
    );
    let s6 = s7 + m1.len() as u32;
    // A RST changes nothing (one out of the resolver's window would not end the connection).
    assert_eq!(run(seg(false, 40000, s6 + 9, 0x04, &[])), XDP_PASS, "RST");
    assert_eq!(data(false, 40000, s6 + 9, &m1), XDP_DROP, "after the RST");
    // A SYN on a live stream is ignored wherever it points (set back, the stream could be
    // walked up to just before the resolver's position): a new connection on the same
    // addresses and ports starts only after the stream has been idle for minutes.
    for isn in [s6 - 10, s6.wrapping_sub(70_000), 1 << 31] {
        assert_eq!(run(seg(false, 40000, isn, 0x02, &[])), XDP_PASS, "SYN");
        assert_eq!(
            data(false, 40000, isn + 1, &m1),
            XDP_DROP,
            "not reopened there"
        );
    }
    assert_eq!(data(false, 40000, s6, &m1), XDP_PASS, "the stream goes on");
    assert_eq!(
        b.reason("tcp_out_of_step") - before,
        13,
        "every segment out of step counted"
    );
}

/// `f`'s payload as the data of a TCP segment from `sport` to `dport` at `seq` with `flags`.
fn segment(mut f: Frame, sport: u16, dport: u16, seq: u32, flags: u8) -> Vec<u8> {
    f.sport = sport;
    f.dport = dport;
    f.over_tcp(Tcp {
        seq,
        ack: 5000,
        flags,
        raw_payload: true,
        ..Tcp::default()
    })
    .bytes()
}

/// Two segments of one connection at the same place, of different lengths, judged at the same
/// moment on two CPUs: only one may be admitted. Were both, the resolver would take the one that
/// arrives first and read the other's bytes past its end as the start of the next message,
/// which no judged segment started with (the overlap the stream guard exists to stop; see
/// SECURITY.md). One after the other, the second is out of step; at once, both would read the
/// stream before either moved it, unless the move is one compare-and-swap from what was read.
/// Each round opens the stream afresh at the same place and releases both CPUs together; the
/// two runs take the same path, so they read the stream within nanoseconds of each other.
/// (With the swap's result ignored, 14,335 of 20,000 rounds admitted both.) The test also
/// checks that the two runs did overlap in time in most rounds: otherwise it would show
/// nothing.
#[test]
fn two_cpus_cannot_both_admit_segments_at_the_same_place() {
    const ROUNDS: usize = 2_000;
    // Two CPUs this process may run on.
    let cpus: Vec<usize> = {
        // SAFETY: a zeroed CPU set that sched_getaffinity (this thread, pid 0) fills.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let r =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        assert_eq!(
            r,
            0,
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: reads of the set just filled.
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .take(2)
            .collect()
    };
    if cpus.len() < 2 {
        eprintln!("SKIPPED: needs two CPUs, this process may use {cpus:?}");
        return;
    }
    let (b, prog) = setup();
    let fd = prog.fd().expect("fd");
    // A name of 120 labels: the walk of its suffixes, between the two reads of the stream,
    // is the widest window this program has.
    let name = format!("{}news.example.", "a.".repeat(118));
    let query_segment = |edns: Option<(bool, Vec<EdnsOption>)>| {
        let q = dns::query(1, &name, RecordType::A, edns);
        let mut data = (q.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&q);
        segment(Frame::v4(data), 41_000, 53, 7_000, 0x18)
    };
    let frames = [query_segment(None), query_segment(Some((false, vec![])))];
    assert_ne!(frames[0].len(), frames[1].len());
    let before = b.reason("tcp_out_of_step");
    let go = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicUsize::new(0);
    // Per worker and round: the verdict, and when the run started and ended.
    type Runs = Vec<(u32, Instant, Instant)>;
    let runs: Vec<Runs> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|cpu| {
                let (go, done, frames, prog, fd) = (&go, &done, &frames, &prog, fd.as_fd());
                let pin = cpus[cpu];
                scope.spawn(move || {
                    use std::sync::atomic::Ordering::SeqCst;
                    pin_to_cpu(pin);
                    let mut verdicts = Vec::with_capacity(ROUNDS);
                    for round in 0..ROUNDS {
                        if cpu == 0 {
                            // Both CPUs are done with the last round: open the stream afresh,
                            // then release both.
                            while done.load(SeqCst) < 2 * round {
                                std::hint::spin_loop();
                            }
                            open_tcp_flow(prog, &frames[0]);
                            go.store(round + 1, SeqCst);
                        }
                        while go.load(SeqCst) <= round {
                            std::hint::spin_loop();
                        }
                        let start = Instant::now();
                        let r = test_run(fd, &frames[cpu], 1).expect("test_run");
                        verdicts.push((r.retval, start, Instant::now()));
                        done.fetch_add(1, SeqCst);
                    }
                    verdicts
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect()
    });
    let (mut both, mut together) = (0, 0);
    for (round, (first, second)) in runs[0].iter().zip(&runs[1]).enumerate() {
        together += (first.1 < second.2 && second.1 < first.2) as usize;
        let v = [first.0, second.0];
        match v {
            [XDP_PASS, XDP_DROP] | [XDP_DROP, XDP_PASS] => {}
            [XDP_PASS, XDP_PASS] => both += 1,
            _ => panic!(
                "round {round}: {} and {}",
                action_name(v[0]),
                action_name(v[1])
            ),
        }
    }
    assert_eq!(
        both, 0,
        "{both} of {ROUNDS} rounds admitted both segments at the same place"
    );
    eprintln!("{together} of {ROUNDS} rounds ran on both CPUs at once");
    assert!(
        together > ROUNDS / 2,
        "the two runs overlapped in only {together} of {ROUNDS} rounds: the test shows nothing"
    );
    assert_eq!(
        b.reason("tcp_out_of_step") - before,
        ROUNDS as u64,
        "one segment out of step in every round"
    );
}

/// Where the resolver runs in the interface's own namespace, its TCP tells whether a SYN falls
/// on a live connection, which it ignores (a challenge ACK): so does the program, so a stream
/// it lost — pushed out of the map by 65,536 newer connections, or gone with a reload — is
/// not set afresh where the resolver holds data a segment could reach into. Where only the
/// listener shows, a second SYN at another number right after the first moves nothing either
/// (a handshake answered with a SYN cookie keeps no socket to tell). Real sockets on
/// loopback, in this test's namespace, which BPF_PROG_TEST_RUN's frames are looked up in.
#[test]
fn a_syn_on_a_live_connection_does_not_restart_its_stream() {
    use std::net::{TcpListener, TcpStream};
    let (b, prog) = setup();
    let fd = prog.fd().expect("fd");
    let v4 = TcpListener::bind("127.0.0.1:0").expect("listen on 127.0.0.1");
    let v6 = TcpListener::bind("[::1]:0").expect("listen on ::1");
    let p4 = v4.local_addr().expect("addr").port();
    let p6 = v6.local_addr().expect("addr").port();
    b.ok(&[
        "config",
        "set",
        "--port",
        "53",
        "--port",
        &p4.to_string(),
        "--port",
        &p6.to_string(),
    ]);
    let q = dns::query(1, "news.example.", RecordType::A, None);
    let mut m = (q.len() as u16).to_be_bytes().to_vec();
    m.extend_from_slice(&q);
    for (listener, v6) in [(&v4, false), (&v6, true)] {
        let port = listener.local_addr().expect("addr").port();
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (_server, _) = listener.accept().expect("accept");
        let cport = client.local_addr().expect("addr").port();
        let seg = |sport: u16, seq: u32, flags: u8, data: &[u8]| {
            let f = if v6 {
                let mut lo = [0u8; 16];
                lo[15] = 1;
                Frame {
                    ip: Ip::V6 {
                        src: lo,
                        dst: lo,
                        ext: vec![],
                        payload_len: None,
                    },
                    ..Frame::v6(data.to_vec())
                }
            } else {
                Frame {
                    ip: Ip::V4 {
                        src: [127, 0, 0, 1],
                        dst: [127, 0, 0, 1],
                        options: vec![],
                        frag: 0,
                        tot_len: None,
                    },
                    ..Frame::v4(data.to_vec())
                }
            };
            segment(f, sport, port, seq, flags)
        };
        let run = |f: Vec<u8>| test_run(fd.as_fd(), &f, 1).expect("test_run").retval;
        let before = b.reason("tcp_out_of_step");
        // The program lost the live connection's stream (as when a flood pushes it out of the
        // map, or a reload empties it); a SYN on that connection does not set it afresh.
        forget_tcp_flows(&prog);
        assert_eq!(run(seg(cport, 1000, 0x02, &[])), XDP_PASS, "SYN");
        assert_eq!(
            run(seg(cport, 1001, 0x18, &m)),
            XDP_DROP,
            "v6 {v6}: a SYN on a live connection set no stream"
        );
        // A port with no connection, only the listener: the SYN starts a stream; a second one
        // at another number right away does not move it.
        assert_eq!(run(seg(1, 7000, 0x02, &[])), XDP_PASS, "SYN");
        assert_eq!(
            run(seg(1, 7001, 0x18, &m)),
            XDP_PASS,
            "v6 {v6}: its first message"
        );
        assert_eq!(run(seg(1, 90_000, 0x02, &[])), XDP_PASS, "SYN again");
        assert_eq!(
            run(seg(1, 90_001, 0x18, &m)),
            XDP_DROP,
            "v6 {v6}: not from the second SYN"
        );
        let after = 7001 + m.len() as u32;
        assert_eq!(
            run(seg(1, after, 0x18, &m)),
            XDP_PASS,
            "v6 {v6}: the stream goes on"
        );
        assert_eq!(b.reason("tcp_out_of_step") - before, 2);
    }
}
