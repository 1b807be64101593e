//! RPZ local data, end to end: a zone's own addresses (several per family, NODATA for a family
//! it does not give), a CNAME to a block page with the page's addresses, the zone's TTL capped
//! by `config set --local-ttl-max`, the policy zone's SOA in the additional section, TXT local
//! data, and an export that keeps all of it. Real answers from kdig; unbound's counter shows none of these
//! queries reached the resolver.

use blocker_tests::env::{kdig, Blocker, Section, TempDir, Topology, EDGE_V4, EDGE_V6};

const ZONE: &str = "$TTL 3600
$ORIGIN rpz.
@ 3600 SOA rpz. h.rpz. 7 3600 600 86400 60
@ NS ns.example.
two.example    600 A    192.0.2.7
two.example    600 A    192.0.2.8
v6.example      60 AAAA 2001:db8::7
bad.example        CNAME page.isp.example.
page.isp.example 120 A 198.51.100.80
txt.example     60 TXT  \"Court of Milan 1/2026\"
";

fn answers(k: &blocker_tests::env::Kdig) -> Vec<(String, u32, String, String)> {
    k.section(Section::Answer)
        .map(|r| (r.owner.clone(), r.ttl, r.rtype.clone(), r.data.clone()))
        .collect()
}

#[test]
fn local_data_block_pages_ttl_cap_and_soa() {
    let mut t = Topology::new();
    t.start_unbound(&["two.example. 300 IN A 192.0.2.200"]);
    let b = Blocker::new();
    t.attach(&b, "native");
    b.rrl_off();
    let dir = TempDir::new("blkt-local");
    let zone = dir.write("local.rpz", ZONE);
    let load = b.run(&[
        "rules",
        "load",
        &zone,
        "--format",
        "rpz",
        "--order",
        "Court-L",
        "--ede-text",
        "L",
    ]);
    let err = String::from_utf8_lossy(&load.stderr);
    assert!(load.status.success(), "{err}");
    // Local data answers with its own addresses: no warning about a missing sinkhole.
    assert!(!err.contains("sinkhole"), "{err}");
    // `explain` compares the recorded rules with the kernel's slots, local data ids included.
    let e: serde_json::Value =
        serde_json::from_str(&b.ok(&["explain", "two.example", "--json"])).expect("json");
    assert_eq!(e["kernel_agrees"], serde_json::Value::Bool(true), "{e}");
    // And says what the local data answers to each type (the zone above: two A records at
    // two.example, none of type AAAA; a block page at bad.example).
    let answer = |name: &str, qtype: &str| -> String {
        let e: serde_json::Value =
            serde_json::from_str(&b.ok(&["explain", name, "--qtype", qtype, "--json"]))
                .expect("json");
        e["answer"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(answer("two.example", "A"), "2 record(s) of local data");
    assert!(answer("two.example", "AAAA").starts_with("NODATA"));
    assert!(answer("bad.example", "A").contains("block page page.isp.example"));
    let before = t.unbound_queries();
    let q = |server: &str, name: &str, qtype: &str| {
        kdig(
            &t.client,
            server,
            name,
            qtype,
            &["+edns", "+retry=0", "+timeout=2"],
        )
    };
    for server in [EDGE_V4, EDGE_V6] {
        // Both addresses, at the zone's TTL capped to 300 s (the default --local-ttl-max).
        let r = q(server, "two.example", "A");
        assert_eq!(r.status.as_deref(), Some("NOERROR"), "{}", r.raw);
        assert_eq!(
            answers(&r),
            vec![
                ("two.example.".into(), 300, "A".into(), "192.0.2.7".into()),
                ("two.example.".into(), 300, "A".into(), "192.0.2.8".into()),
            ],
            "{}",
            r.raw
        );
        assert_eq!(r.ede, Some((16, "L".to_string())), "{}", r.raw);
        // The zone gives no AAAA for it: NODATA, with the policy zone's SOA (TTL MINIMUM).
        let r = q(server, "two.example", "AAAA");
        assert_eq!(r.status.as_deref(), Some("NOERROR"), "{}", r.raw);
        assert!(answers(&r).is_empty(), "{}", r.raw);
        let soa: Vec<_> = r.section(Section::Additional).collect();
        assert_eq!(soa.len(), 1, "{}", r.raw);
        assert_eq!(
            (soa[0].owner.as_str(), soa[0].ttl, soa[0].rtype.as_str()),
            ("rpz.", 60, "SOA")
        );
        // Its own TTL when below the cap.
        let r = q(server, "v6.example", "AAAA");
        assert_eq!(
            answers(&r),
            vec![(
                "v6.example.".into(),
                60,
                "AAAA".into(),
                "2001:db8::7".into()
            )],
            "{}",
            r.raw
        );
        // The block page: its CNAME, then its addresses.
        let r = q(server, "bad.example", "A");
        assert_eq!(
            answers(&r),
            vec![
                (
                    "bad.example.".into(),
                    120,
                    "CNAME".into(),
                    "page.isp.example.".into()
                ),
                (
                    "page.isp.example.".into(),
                    120,
                    "A".into(),
                    "198.51.100.80".into()
                ),
            ],
            "{}",
            r.raw
        );
    }
    assert_eq!(t.unbound_queries(), before, "the resolver saw none of them");

    // A lower cap applies at the next packet.
    b.ok(&["config", "set", "--local-ttl-max", "30"]);
    let r = q(EDGE_V4, "two.example", "A");
    assert!(answers(&r).iter().all(|a| a.1 == 30), "{}", r.raw);

    // The export keeps the local data: reloaded into another order, the same answers.
    let exported = dir.join("export.rpz");
    b.ok(&[
        "export",
        "--rpz",
        "Court-L",
        "--zone",
        "rpz.copy",
        "-o",
        exported.to_str().expect("utf-8"),
    ]);
    b.ok(&["orders", "remove", "Court-L"]);
    let r = q(EDGE_V4, "two.example", "A");
    assert_eq!(
        answers(&r),
        vec![("two.example.".into(), 300, "A".into(), "192.0.2.200".into())],
        "the resolver's answer once the order is gone: {}",
        r.raw
    );
    b.ok(&[
        "rules",
        "load",
        exported.to_str().expect("utf-8"),
        "--format",
        "rpz",
        "--order",
        "Copy",
    ]);
    let r = q(EDGE_V4, "two.example", "A");
    let got: Vec<String> = answers(&r).into_iter().map(|a| a.3).collect();
    assert_eq!(got, ["192.0.2.7", "192.0.2.8"], "{}", r.raw);
    let r = q(EDGE_V4, "bad.example", "A");
    assert_eq!(answers(&r).len(), 2, "{}", r.raw);
    // TXT local data, written by the export in the generic form (RFC 3597) and read back.
    let r = q(EDGE_V4, "txt.example", "TXT");
    assert_eq!(
        answers(&r),
        vec![(
            "txt.example.".into(),
            30,
            "TXT".into(),
            "\"Court of Milan 1/2026\"".into()
        )],
        "{}",
        r.raw
    );
    let r = q(EDGE_V4, "txt.example", "A");
    assert!(answers(&r).is_empty(), "NODATA for A: {}", r.raw);
}
