//! The real XDP program, loaded into this kernel, run with BPF_PROG_TEST_RUN on a fixture
//! table of frames: every parsing case, every action. Each synthesized answer is parsed with
//! hickory-proto and its IP/UDP checksums are verified from scratch; every pass leaves the
//! frame byte-identical; the global counters must account for every frame by its reason.

use std::{collections::BTreeMap, os::fd::AsFd};

use blocker_tests::{
    dns::{self, raw_query},
    env::Blocker,
    packet::{self, Frame, Ip, MAC_CLIENT, MAC_EDGE},
    testrun::{action_name, test_run, XDP_DROP, XDP_PASS, XDP_TX},
};
use hickory_proto::rr::{rdata::opt::EdnsOption, RecordType};

const ORDER_TEXT: &str = "Court A, RG 1/2026";

#[derive(Debug, Clone)]
enum Expect {
    /// XDP_PASS, frame unchanged, counted under this reason.
    Pass(&'static str),
    /// XDP_DROP under this reason.
    Drop(&'static str),
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
    let mut f = Frame::v4(dns::query(8, "a.blocked.test.", A, None));
    f.ip = Ip::V4 {
        src: [192, 0, 2, 1],
        dst: [192, 0, 2, 53],
        options: vec![0x07, 0x07, 0x04, 0x00, 0, 0, 0, 0],
        frag: 0x4000,
        tot_len: None,
    };
    add("IPv4 with options (record route)", f.bytes(), nx(false));
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
    f.proto = 6;
    add("TCP to port 53", f.bytes(), Expect::Pass("not_udp"));
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
    let mut f = Frame::v4(dns::query(25, "frag.blocked.test.", A, None));
    f.ip = Ip::V4 {
        src: [192, 0, 2, 1],
        dst: [192, 0, 2, 53],
        options: vec![],
        frag: 0x2000,
        tot_len: None,
    };
    add("IPv4 fragment (MF)", f.bytes(), Expect::Pass("fragment"));
    let mut f = Frame::v6(dns::query(26, "frag.blocked.test.", A, None));
    if let Ip::V6 { ext, .. } = &mut f.ip {
        ext.push((44, vec![0, 0, 0, 1, 0, 0, 0, 1]));
    }
    add("IPv6 fragment header", f.bytes(), Expect::Pass("fragment"));
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
        "additional record that is not OPT",
        Frame::v4(tsig).bytes(),
        Expect::Pass("bad_edns"),
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
    let before = b.stats();
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    let mut failures = Vec::new();
    for c in cases() {
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
                    let host = blocker_tests::reference::reference(&maps, &secret, &qin.dns)
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
        .filter(|k| *k != "packets")
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
    let mut words = blocker::filter::Mapping::new(&data).expect("mapping");
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
