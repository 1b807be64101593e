use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use blocker_common::{Action, Kind};

use crate::{parse_file, parse_str, Format, Options, ParseOutcome};

fn rules(out: &ParseOutcome) -> Vec<(String, Kind, Action, usize)> {
    out.rules
        .iter()
        .map(|r| {
            (
                r.name.to_string(),
                r.kind,
                r.action.unwrap_or(Action::None),
                r.line,
            )
        })
        .collect()
}

fn msgs(d: &[crate::Diagnostic]) -> Vec<String> {
    d.iter().map(|e| e.to_string()).collect()
}

fn rpz(text: &str) -> ParseOutcome {
    parse_str(text, Path::new("z.rpz"), Format::Rpz, &Options::default())
}

/// A scratch directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("blk-rpz-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        Dir(d)
    }

    fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("dir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A court-order RPZ as a regulator would publish it for BIND/Unbound/Knot.
const ORDER: &str = r#"; Response Policy Zone — court order 12345/2026
$TTL 300
$ORIGIN rpz.isp.example.
@   IN SOA ns1.isp.example. hostmaster.isp.example. (
        2026112201 ; serial
        3600       ; refresh
        900        ; retry
        604800     ; expire
        300 )      ; minimum
    IN NS  ns1.isp.example.
    IN NS  ns2.isp.example.

; --- QNAME triggers
bad.example             CNAME .
*.bad.example           CNAME .
Nodata.Example          CNAME *.
ok.bad.example          CNAME rpz-passthru.
drop.example            CNAME rpz-drop.
tcp.example      60  IN CNAME rpz-tcp-only.
sink.example            A     192.0.2.1
                        AAAA  2001:db8::1
legacy.example          CNAME legacy.example.
bad.example.rpz.isp.example. CNAME .
walled.example          CNAME garden.isp.example.
; line 25: (a CNAME to `rpz-drop` without its dot: see a_policy_name_without_its_dot)
txt.example             TXT   "court order 12345/2026"
@                       TXT   "apex data is not a trigger"

; --- triggers blocker does not implement
32.1.2.0.192.rpz-ip     CNAME .
24.0.100.51.198.rpz-ip  CNAME .
ns.bad.example.rpz-nsdname CNAME .
32.53.2.0.192.rpz-nsip  CNAME .
32.1.2.0.10.rpz-client-ip CNAME rpz-drop.

$INCLUDE "more/extra.rpz"
$INCLUDE more/other-zone.rpz sub.rpz.isp.example.
after-include.example   CNAME .
"#;

#[test]
fn a_court_order_zone() {
    let dir = Dir::new("order");
    dir.write(
        "more/extra.rpz",
        "; included: names relative to the including origin\nextra.example CNAME .\n*.extra.example CNAME .\n",
    );
    dir.write(
        "more/other-zone.rpz",
        "in-other CNAME .\nabs.rpz.isp.example. CNAME rpz-drop.\n",
    );
    let main = dir.write("order.rpz", ORDER);
    let out = parse_file(&main, None, &Options::default()).expect("readable");
    assert!(out.errors.is_empty(), "{:#?}", msgs(&out.errors));
    assert_eq!(
        rules(&out),
        vec![
            ("bad.example".into(), Kind::Exact, Action::Nxdomain, 14),
            ("bad.example".into(), Kind::Below, Action::Nxdomain, 15),
            ("nodata.example".into(), Kind::Exact, Action::Nodata, 16),
            ("ok.bad.example".into(), Kind::Exact, Action::Pass, 17),
            ("drop.example".into(), Kind::Exact, Action::Drop, 18),
            ("tcp.example".into(), Kind::Exact, Action::Tc, 19),
            ("sink.example".into(), Kind::Exact, Action::Sinkhole, 20),
            ("legacy.example".into(), Kind::Exact, Action::Pass, 22),
            // A CNAME to a plain name: a block page.
            ("walled.example".into(), Kind::Exact, Action::Sinkhole, 24),
            // TXT local data.
            ("txt.example".into(), Kind::Exact, Action::Sinkhole, 26),
            ("extra.example".into(), Kind::Exact, Action::Nxdomain, 2),
            ("extra.example".into(), Kind::Below, Action::Nxdomain, 3),
            ("in-other.sub".into(), Kind::Exact, Action::Nxdomain, 1),
            ("abs".into(), Kind::Exact, Action::Drop, 2),
            (
                "after-include.example".into(),
                Kind::Exact,
                Action::Nxdomain,
                38
            ),
        ]
    );
    let sink = &out.rules[6];
    assert_eq!(
        sink.local.as_ref().and_then(|l| l.v4.first().copied()),
        Some(Ipv4Addr::new(192, 0, 2, 1))
    );
    assert_eq!(
        sink.local.as_ref().and_then(|l| l.v6.first().copied()),
        Some("2001:db8::1".parse::<Ipv6Addr>().expect("v6"))
    );
    let walled = out.rules[8].local.as_ref().expect("local data");
    assert_eq!(
        (walled.cname.as_ref().map(ToString::to_string), walled.ttl),
        (Some("garden.isp.example".to_string()), 300)
    );
    assert_eq!(
        out.rules[9].local.as_ref().map(|l| l.other.clone()),
        Some(vec![(16, b"\x16court order 12345/2026".to_vec())])
    );
    assert!(out.rules[10].file.ends_with("more/extra.rpz"));
    assert!(out.rules[0].file.ends_with("order.rpz"));
    // Line 23 repeats line 14 with an absolute owner.
    assert_eq!(out.duplicates, 1);
    let u = &out.unsupported;
    assert_eq!(u.get("rpz-ip"), Some(&2));
    assert_eq!(u.get("rpz-nsdname"), Some(&1));
    assert_eq!(u.get("rpz-nsip"), Some(&1));
    assert_eq!(u.get("rpz-client-ip"), Some(&1));
    assert_eq!(u.get("cname-rewrite"), None);
    assert_eq!(u.get("local-data TXT"), None);
    let w = msgs(&out.warnings);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].contains("order.rpz:27: ") && w[0].contains("apex"),
        "{}",
        w[0]
    );
}

#[test]
fn a_policy_name_without_its_dot_is_an_error() {
    // Relative, `rpz-drop` and `*` are read under the zone's name: no action, and skipping
    // them would leave the names unblocked. Each is an invalid record naming its line; a
    // rewrite to another name stays an unsupported (skipped) entry.
    let out = rpz("$ORIGIN rpz.example.\n@ SOA ns. h. 1 1 1 1 1\n\
                   oops.example CNAME rpz-drop\n\
                   star.example CNAME *\n\
                   pass.example CNAME rpz-passthru\n\
                   *.rw.example CNAME *.elsewhere.example.\n\
                   ok.example CNAME rpz-drop.\n\
                   *.lp.example CNAME *.lp.example.\n\
                   out.example CNAME rpz-drop.isp.example.\n\
                   $ORIGIN com.rpz.example.\n\
                   bad CNAME *\n");
    let e = msgs(&out.errors);
    assert_eq!(e.len(), 4, "{e:#?}");
    for (err, (line, meant)) in e.iter().zip([
        (3, "rpz-drop."),
        (4, "*."),
        (5, "rpz-passthru."),
        (11, "*."),
    ]) {
        assert!(
            err.starts_with(&format!("z.rpz:{line}: "))
                && err.contains(&format!("did you mean `{meant}`")),
            "{err}"
        );
    }
    // A rewrite to another name, and the same label in a name outside the zone.
    assert_eq!(out.unsupported.get("cname-rewrite"), Some(&2));
    // The wildcard's legacy passthru: the rewrite that gives back the query's own name.
    assert_eq!(
        rules(&out),
        vec![
            ("ok.example".into(), Kind::Exact, Action::Drop, 7),
            ("lp.example".into(), Kind::Below, Action::Pass, 8),
        ]
    );
}

#[test]
fn include_outside_the_zone_is_an_error() {
    let dir = Dir::new("outside");
    dir.write("inc.rpz", "in-other CNAME .\n");
    let main = dir.write(
        "main.rpz",
        "$ORIGIN rpz.local.\n@ SOA ns. host. 1 1 1 1 1\n$INCLUDE inc.rpz other.example.\n",
    );
    let out = parse_file(&main, None, &Options::default()).expect("readable");
    let e = msgs(&out.errors);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains("inc.rpz:1: in-other.other.example is outside the zone rpz.local"),
        "{}",
        e[0]
    );
}

#[test]
fn includes_loops_and_missing_files() {
    let dir = Dir::new("loops");
    let a = dir.write("a.rpz", "a.example CNAME .\n$INCLUDE b.rpz\n");
    dir.write(
        "b.rpz",
        "b.example CNAME .\n$INCLUDE a.rpz\n$INCLUDE missing.rpz\n",
    );
    let out = parse_file(&a, None, &Options::default()).expect("readable");
    assert_eq!(out.rules.len(), 2);
    let e = msgs(&out.errors);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].contains("b.rpz:2: $INCLUDE") && e[0].contains("a.rpz: include loop"),
        "{}",
        e[0]
    );
    assert!(
        e[1].contains("b.rpz:3: $INCLUDE: ") && e[1].contains("missing.rpz"),
        "{}",
        e[1]
    );

    let self_inc = dir.write("self.rpz", "$INCLUDE self.rpz\n");
    let out = parse_file(&self_inc, None, &Options::default()).expect("readable");
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(out.errors[0].to_string().contains("include loop"));

    // The same file twice (not nested) is no loop: its rules are duplicates.
    let twice = dir.write("twice.rpz", "$INCLUDE c.rpz\n$INCLUDE c.rpz\n");
    dir.write("c.rpz", "c.example CNAME .\n");
    let out = parse_file(&twice, None, &Options::default()).expect("readable");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!((out.rules.len(), out.duplicates), (1, 1));

    // Not UTF-8: the included file, its line and byte are named.
    dir.write(
        "latin1.rpz",
        b"ok.example CNAME .\nb\xfcd.example CNAME .\n",
    );
    let inc = dir.write("inc-latin1.rpz", "x.example CNAME .\n$INCLUDE latin1.rpz\n");
    let out = parse_file(&inc, None, &Options::default()).expect("readable");
    let e = msgs(&out.errors);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains("inc-latin1.rpz:2: $INCLUDE: ") && e[0].contains("latin1.rpz:2: not UTF-8"),
        "{}",
        e[0]
    );
}

#[test]
fn syntax_errors_name_the_line_and_the_rest_is_read() {
    let text = "$ORIGIN rpz.local.\n\
        ok.example CNAME .\n\
        bad-a.example A 999.1.1.1\n\
        two.example CNAME . extra\n\
        notype.example FOO bar\n\
        $GENERATE 1-10 host$ CNAME .\n\
        multi.example CNAME (\n\
            . )\n\
        bad-multi.example MX ( 10\n\
            mail.example. ) trailing\n\
        \x20   A 192.0.2.1\n\
        last.example CNAME .\n\
        broken.example CNAME ( .\n";
    let out = rpz(text);
    assert_eq!(
        rules(&out),
        vec![
            ("ok.example".into(), Kind::Exact, Action::Nxdomain, 2),
            ("multi.example".into(), Kind::Exact, Action::Nxdomain, 7),
            ("last.example".into(), Kind::Exact, Action::Nxdomain, 12),
        ]
    );
    let e = msgs(&out.errors);
    let want = [
        ("z.rpz:3: ", "bad-a.example A 999.1.1.1"),
        ("z.rpz:4: ", "unexpected text after the record data"),
        ("z.rpz:5: ", "expected a record type"),
        ("z.rpz:6: ", "$GENERATE"),
        ("z.rpz:10: ", "unexpected text"),
        ("z.rpz:11: ", "no owner"),
        ("z.rpz:13: ", "never closed"),
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, (prefix, part)) in e.iter().zip(want) {
        assert!(
            got.starts_with(prefix) && got.contains(part),
            "{got} (wanted {prefix}… {part})"
        );
    }
}

#[test]
fn first_policy_record_wins_and_duplicates() {
    let out = rpz("a.example CNAME .\n\
        a.example A 192.0.2.1\n\
        b.example CNAME .\n\
        b.example CNAME rpz-drop.\n\
        c.example A 192.0.2.1\n\
        c.example CNAME rpz-passthru.\n\
        d.example CNAME .\n\
        d.example CNAME .\n\
        e.example A 192.0.2.1\n\
        e.example A 192.0.2.1\n\
        e.example A 192.0.2.2\n\
        *.e.example A 192.0.2.9\n\
        f.example CNAME .\n\
        f.example CNAME garden.example.\n\
        g.example CNAME garden.example.\n\
        g.example CNAME .\n\
        g.example CNAME garden.example.\n\
        h.example CNAME *.\n\
        *.h.example CNAME .\n\
        h.example CNAME .\n");
    assert!(out.errors.is_empty(), "{:#?}", msgs(&out.errors));
    assert_eq!(
        rules(&out),
        vec![
            ("a.example".into(), Kind::Exact, Action::Nxdomain, 1),
            ("b.example".into(), Kind::Exact, Action::Nxdomain, 3),
            ("c.example".into(), Kind::Exact, Action::Sinkhole, 5),
            ("d.example".into(), Kind::Exact, Action::Nxdomain, 7),
            ("e.example".into(), Kind::Exact, Action::Sinkhole, 9),
            ("e.example".into(), Kind::Below, Action::Sinkhole, 12),
            ("f.example".into(), Kind::Exact, Action::Nxdomain, 13),
            // A block page.
            ("g.example".into(), Kind::Exact, Action::Sinkhole, 15),
            ("h.example".into(), Kind::Exact, Action::Nodata, 18),
            ("h.example".into(), Kind::Below, Action::Nxdomain, 19),
        ]
    );
    assert_eq!(
        out.rules[2]
            .local
            .as_ref()
            .and_then(|l| l.v4.first().copied()),
        Some(Ipv4Addr::new(192, 0, 2, 1))
    );
    // Lines 8, 10 and 17 repeat a record of their owner.
    assert_eq!(out.duplicates, 3);
    assert_eq!(out.unsupported.get("cname-rewrite"), None);
    let w = msgs(&out.warnings);
    let want = [
        "z.rpz:2: a.example: A 192.0.2.1 ignored: the first policy record of the name wins (z.rpz:1: CNAME . (nxdomain))",
        "z.rpz:4: b.example: CNAME rpz-drop. ignored: the first policy record of the name wins (z.rpz:3: CNAME . (nxdomain))",
        "z.rpz:6: c.example: CNAME rpz-passthru. ignored: the first policy record of the name wins (z.rpz:5: local data)",
        "z.rpz:14: f.example: CNAME garden.example. ignored: the first policy record of the name wins (z.rpz:13: CNAME . (nxdomain))",
        "z.rpz:16: g.example: CNAME . ignored: the first policy record of the name wins (z.rpz:15: CNAME garden.example. (a block page))",
        "z.rpz:20: h.example: CNAME . ignored: the first policy record of the name wins (z.rpz:18: CNAME *. (nodata))",
    ];
    assert_eq!(w, want);
}

#[test]
fn apex_from_origin_option_or_nothing() {
    // No SOA: the $ORIGIN in force at the first record is the apex.
    let out = rpz("$ORIGIN rpz.local.\nbad.example CNAME .\nfull.example.rpz.local. CNAME .\n");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let names: Vec<String> = out.rules.iter().map(|r| r.name.to_string()).collect();
    assert_eq!(names, ["bad.example", "full.example"]);

    // The option: relative owners and absolute ones under it.
    let opts = Options {
        rpz_origin: Some("RPZ.Local".into()),
        ..Options::default()
    };
    let out = parse_str(
        "@ SOA ns. host. 1 1 1 1 1\n@ NS ns.\nbad.example CNAME .\nx.example.rpz.local. CNAME rpz-drop.\ny.example.elsewhere. CNAME .\n",
        Path::new("z.rpz"),
        Format::Rpz,
        &opts,
    );
    let names: Vec<String> = out.rules.iter().map(|r| r.name.to_string()).collect();
    assert_eq!(names, ["bad.example", "x.example"]);
    let e = msgs(&out.errors);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with("z.rpz:5: y.example.elsewhere is outside the zone rpz.local"),
        "{}",
        e[0]
    );

    // Neither: owners as they are (a BIND file whose origin is in named.conf).
    let out = rpz("@ SOA ns. host. 1 1 1 1 1\nbad.example CNAME .\n*.bad.example CNAME .\n");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.rules.len(), 2);
    assert_eq!(out.rules[1].kind, Kind::Below);

    // A bad option is an error about the file as a whole.
    let opts = Options {
        rpz_origin: Some("a..b".into()),
        ..Options::default()
    };
    let out = parse_str("x CNAME .\n", Path::new("z.rpz"), Format::Rpz, &opts);
    assert!(
        out.errors[0].to_string().starts_with("z.rpz:0: RPZ origin"),
        "{:?}",
        out.errors
    );
}

#[test]
fn wildcards_and_odd_owners() {
    let out = rpz("$ORIGIN rpz.local.\n\
        @ SOA ns. host. 1 1 1 1 1\n\
        * CNAME .\n\
        a.*.example CNAME .\n\
        *.example CNAME *.\n\
        esc\\.aped.example CNAME .\n\
        \\000bin.example CNAME .\n");
    let e = msgs(&out.errors);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(e[0].starts_with("z.rpz:3: ") && e[0].contains("`*` alone"));
    assert!(e[1].starts_with("z.rpz:4: ") && e[1].contains("leftmost"));
    assert_eq!(
        rules(&out),
        vec![
            ("example".into(), Kind::Below, Action::Nodata, 5),
            (
                "esc\\.aped.example".into(),
                Kind::Exact,
                Action::Nxdomain,
                6
            ),
            ("\\000bin.example".into(), Kind::Exact, Action::Nxdomain, 7),
        ]
    );
    assert_eq!(out.rules[1].name.label_count(), 2);
}

#[test]
fn crlf_bom_and_no_final_newline() {
    let out = rpz("\u{feff}$TTL 60\r\n; c\r\na.example CNAME .\r\nb.example CNAME rpz-drop.");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(
        rules(&out),
        vec![
            ("a.example".into(), Kind::Exact, Action::Nxdomain, 3),
            ("b.example".into(), Kind::Exact, Action::Drop, 4),
        ]
    );
}

#[test]
fn garbage_never_panics() {
    // Odd bytes and shapes; whatever comes out, every error names a line of the text.
    let pieces = [
        "(",
        ")",
        "\"",
        "\\",
        ";",
        "$ORIGIN",
        "$INCLUDE",
        "$TTL",
        "@",
        "*",
        ".",
        "CNAME",
        "A",
        "AAAA",
        "TXT",
        "SOA",
        "IN",
        "CH",
        "300",
        "1.2.3.4",
        "::1",
        "x.example",
        "\n",
        " ",
        "\t",
        "\r\n",
        "\\000",
        "\\.",
        "rpz-ip",
        "é",
        "\u{0}",
        "(\n",
        "\"\n",
        "\\\n",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..(seed % 24) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            if seed.is_multiple_of(3) {
                text.push(' ');
            }
        }
        seed = seed.wrapping_add(0x9e37_79b9);
        let out = rpz(&text);
        let lines = text.split('\n').count();
        for d in out.errors.iter().chain(&out.warnings) {
            assert!(d.line >= 1 && d.line <= lines, "{text:?}: {d}");
        }
    }
}

#[test]
#[ignore = "timing: cargo test --release -p blocker-lists -- --ignored --nocapture"]
fn a_million_records() {
    let mut text =
        String::from("$TTL 300\n$ORIGIN rpz.local.\n@ SOA ns. host. 1 1 1 1 1\n@ NS ns.\n");
    for i in 0..500_000 {
        text.push_str(&format!("site{i}.piracy{}.example CNAME .\n", i % 997));
        text.push_str(&format!("*.site{i}.piracy{}.example CNAME .\n", i % 997));
    }
    let t = std::time::Instant::now();
    let out = rpz(&text);
    println!("1,000,000 RPZ records parsed in {:?}", t.elapsed());
    assert!(out.errors.is_empty());
    assert_eq!(out.rules.len(), 1_000_000);
}

#[test]
fn ttl_units_everywhere() {
    // BIND-style times: `$TTL` with a unit, an SOA written in units over several lines with
    // comments, record TTLs in units (combined, upper case, before or after the class).
    let out = rpz("$TTL 1h\n\
        $ORIGIN rpz.isp.example.\n\
        @ 1D IN SOA ns1.isp.example. hostmaster.isp.example. (\n\
        \t2026010101 ; serial: never a time\n\
        \t3H         ; refresh\n\
        \t15M        ; retry\n\
        \t3W         ; expire\n\
        \t12H )      ; minimum\n\
        \tIN 1h NS ns1.isp.example.\n\
        one.example 1d CNAME .\n\
        two.example 1h30m IN CNAME rpz-drop.\n\
        three.example IN 2w CNAME *.\n\
        four.example 10S CNAME .\n\
        1h TXT \"1h\" \"2d\"\n\
        1d A 192.0.2.1\n\
        five.example 1h30 CNAME .\n\
        six.example CNAME .\n\
        $TTL 5x\n\
        seven.example CNAME .\n");
    assert_eq!(
        rules(&out),
        vec![
            ("one.example".into(), Kind::Exact, Action::Nxdomain, 10),
            ("two.example".into(), Kind::Exact, Action::Drop, 11),
            ("three.example".into(), Kind::Exact, Action::Nodata, 12),
            ("four.example".into(), Kind::Exact, Action::Nxdomain, 13),
            ("1h".into(), Kind::Exact, Action::Sinkhole, 14),
            ("1d".into(), Kind::Exact, Action::Sinkhole, 15),
            ("six.example".into(), Kind::Exact, Action::Nxdomain, 17),
            ("seven.example".into(), Kind::Exact, Action::Nxdomain, 19),
        ]
    );
    // The owner `1h` is a name, not a TTL: its TXT record is local data, with the $TTL.
    let txt = out.rules[4].local.as_ref().expect("local data");
    assert_eq!(
        (txt.ttl, txt.other.clone()),
        (3600, vec![(16, b"\x021h\x022d".to_vec())])
    );
    let e = msgs(&out.errors);
    assert_eq!(
        e,
        [
            "z.rpz:16: \"five.example 1h30 CNAME .\": TTL \"1h30\": a number after a unit needs its own unit (e.g. 1h30m, not 1h30)",
            "z.rpz:18: \"$TTL 5x\": TTL \"5x\": not a TTL: seconds, or numbers with units s, m, h, d, w (e.g. 1h30m)",
        ]
    );
    // An SOA field in units on its own line: the line of the bad field is named.
    let out = rpz("@ SOA ns. host. (\n 1\n 3H\n 15Q\n 3W\n 12H )\nx CNAME .\n");
    let e = msgs(&out.errors);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with("z.rpz:4: \"15Q\": TTL \"15Q\": not a TTL"),
        "{}",
        e[0]
    );
}

#[test]
fn a_refused_soa_still_gives_the_apex() {
    // Owners in full and no $ORIGIN (as BIND's zone files often are: the zone name is in
    // named.conf): only the SOA says what to strip. Its data is broken (four numbers), so
    // it is refused; its owner still gives the apex, and the NS line after it (white space
    // first: the SOA's owner) is at the apex, not an error nor a trigger.
    let text = "rpz.example. 300 IN SOA ns.rpz.example. host.rpz.example. ( 1 3600 600 86400 )\n\
        \t300 IN NS ns.rpz.example.\n\
        bad.example.rpz.example. CNAME .\n\
        *.bad.example.rpz.example. CNAME .\n";
    let out = rpz(text);
    let e = msgs(&out.errors);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].starts_with("z.rpz:1: "), "{}", e[0]);
    assert_eq!(
        rules(&out),
        vec![
            ("bad.example".into(), Kind::Exact, Action::Nxdomain, 3),
            ("bad.example".into(), Kind::Below, Action::Nxdomain, 4),
        ]
    );
    // The same with a bad TTL in the SOA, and with `@` under an $ORIGIN that a later
    // $ORIGIN changes before the first trigger.
    let out = rpz("$ORIGIN rpz.example.\n\
        @ SOA ns. host. 1 3H 15M 3W 12X\n\
        $ORIGIN bad.example.rpz.example.\n\
        www CNAME .\n");
    assert_eq!(out.errors.len(), 1, "{:#?}", msgs(&out.errors));
    assert_eq!(
        rules(&out),
        vec![("www.bad.example".into(), Kind::Exact, Action::Nxdomain, 4)]
    );
    // When not even the SOA's owner can be read, records that need the apex are errors,
    // never rules with the apex left in.
    let out = rpz("rpz..example. SOA ns. host. 1 1 1 1 1\nx.rpz.example. CNAME .\n");
    assert!(out.rules.is_empty(), "{:?}", rules(&out));
    let e = msgs(&out.errors);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("z.rpz:1: rpz..example.: empty label"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("z.rpz:2: the zone apex is unknown (the SOA at z.rpz:1 was refused)"),
        "{}",
        e[1]
    );
}

#[test]
fn a_refused_origin_leaves_no_origin() {
    // After a refused $ORIGIN, a relative owner would silently land under the previous
    // origin (`www` instead of `www.bad.example`): it is an error until the next $ORIGIN.
    let out = rpz("$ORIGIN rpz.example.\n\
        @ SOA ns. host. 1 1 1 1 1\n\
        $ORIGIN bad.example.rpz.example. junk\n\
        www CNAME .\n\
        @ CNAME .\n\
        full.example.rpz.example. CNAME .\n\
        $ORIGIN rpz.example.\n\
        ok.example CNAME .\n");
    assert_eq!(
        rules(&out),
        vec![
            ("full.example".into(), Kind::Exact, Action::Nxdomain, 6),
            ("ok.example".into(), Kind::Exact, Action::Nxdomain, 8),
        ]
    );
    let e = msgs(&out.errors);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(e[0].starts_with("z.rpz:3: "), "{}", e[0]);
    for (got, line) in e[1..].iter().zip([4, 5]) {
        assert!(
            got.starts_with(&format!("z.rpz:{line}: "))
                && got.ends_with(
                    "relative name, but there is no origin: the $ORIGIN at z.rpz:3 was refused"
                ),
            "{got}"
        );
    }
    // Before the apex is known (no SOA): the apex is not taken from nothing.
    let out = rpz("$ORIGIN rpz.example. junk\nbad.example.rpz.example. CNAME .\n");
    assert!(out.rules.is_empty(), "{:?}", rules(&out));
    let e = msgs(&out.errors);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[1].starts_with("z.rpz:2: the zone apex is unknown (the $ORIGIN at z.rpz:1 was refused)"),
        "{}",
        e[1]
    );
    // An included file without an origin of its own inherits the loss.
    let dir = Dir::new("lost-origin");
    dir.write("inc.rpz", "in-inc CNAME .\n");
    let main = dir.write(
        "main.rpz",
        "$ORIGIN rpz.example.\n@ SOA ns. host. 1 1 1 1 1\n$ORIGIN x. junk\n$INCLUDE inc.rpz\n",
    );
    let out = parse_file(&main, None, &Options::default()).expect("readable");
    assert!(out.rules.is_empty(), "{:?}", rules(&out));
    let e = msgs(&out.errors);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[1].contains("inc.rpz:1: ") && e[1].contains("main.rpz:3 was refused"),
        "{}",
        e[1]
    );
}

#[test]
fn empty_labels_are_refused_in_every_format() {
    let out = rpz("$ORIGIN rpz.example.\n\
        foo..bar CNAME .\n\
        foo.bar.. CNAME .\n\
        ok.example CNAME rpz-drop..\n\
        fine.example CNAME .\n");
    assert_eq!(
        rules(&out),
        vec![("fine.example".into(), Kind::Exact, Action::Nxdomain, 5)]
    );
    let e = msgs(&out.errors);
    assert_eq!(
        e,
        [
            "z.rpz:2: foo..bar.rpz.example.: empty label (two dots in a row, or a leading dot)",
            "z.rpz:3: foo.bar..: empty label (two dots in a row, or a leading dot)",
            "z.rpz:4: ok.example: CNAME target rpz-drop..: empty label (two dots in a row, or a leading dot)",
        ]
    );
    for (format, text) in [
        (Format::Plain, "ok.example\nfoo..bar\n"),
        (Format::Plain, "ok.example\n||foo..bar^\n"),
        (Format::Plain, "ok.example\nhttps://foo..bar/x\n"),
        (Format::Hosts, "0.0.0.0 ok.example\n0.0.0.0 foo..bar\n"),
    ] {
        let out = parse_str(text, Path::new("l"), format, &Options::default());
        assert_eq!(out.rules.len(), 1, "{text:?}");
        let e = msgs(&out.errors);
        assert_eq!(e.len(), 1, "{text:?}: {e:?}");
        assert!(
            e[0].starts_with("l:2: ") && e[0].contains("empty label"),
            "{}",
            e[0]
        );
    }
}

#[test]
fn url_owners_are_reduced_to_their_host_with_a_warning() {
    let out = rpz("$ORIGIN rpz.example.\n\
        https://Www.Bad.example/ CNAME .\n\
        *.bad2.example:8443 CNAME rpz-drop.\n\
        http://192.0.2.1/x CNAME .\n\
        user@bad3.example CNAME .\n\
        plain.example CNAME .\n");
    assert_eq!(
        rules(&out),
        vec![
            ("www.bad.example".into(), Kind::Exact, Action::Nxdomain, 2),
            ("bad2.example".into(), Kind::Below, Action::Drop, 3),
            ("plain.example".into(), Kind::Exact, Action::Nxdomain, 6),
        ]
    );
    assert_eq!(
        msgs(&out.warnings),
        [
            "z.rpz:2: \"https://www.bad.example/\": URL reduced to its host www.bad.example",
            "z.rpz:3: \"bad2.example:8443\": URL reduced to its host bad2.example",
        ]
    );
    let e = msgs(&out.errors);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("z.rpz:4: ") && e[0].contains("IP address"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("z.rpz:5: ") && e[1].contains("e-mail"),
        "{}",
        e[1]
    );
    // A page: its host's rule would block all of it, so skipped and counted.
    let out = rpz("$ORIGIN rpz.example.\n\
        https://docs.example/forms/x CNAME .\n\
        ok.example CNAME .\n");
    assert_eq!(
        rules(&out),
        vec![("ok.example".into(), Kind::Exact, Action::Nxdomain, 3)]
    );
    assert_eq!(out.unsupported.get("URL with a path"), Some(&1));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}

#[test]
fn skipped_entries_keep_their_first_places() {
    // Rewrites that keep the query's labels (`CNAME *.target.`) are not supported.
    let out = rpz("a.example CNAME *.garden.example.\n\
        1.0.0.10.in-addr.rpz-ip CNAME .\n\
        b.example CNAME *.garden.example.\n\
        c.example CNAME *.garden.example.\n\
        d.example CNAME *.garden.example.\n\
        32.1.0.0.10.rpz-ip CNAME .\n");
    assert!(out.rules.is_empty());
    let at = |k: &str| -> Vec<usize> { out.unsupported_at[k].iter().map(|p| p.line).collect() };
    assert_eq!(out.unsupported.get("cname-rewrite"), Some(&4));
    assert_eq!(at("cname-rewrite"), [1, 3, 4]);
    assert_eq!(at("rpz-ip"), [2, 6]);
    assert_eq!(out.unsupported_at["rpz-ip"][0].to_string(), "z.rpz:2");
}

/// Records handed over one by one (as a zone transfer delivers them) are read exactly as
/// the same records in a file: the expectations are written out, not derived from the text
/// reader.
#[test]
fn records_read_as_a_zone_file_reads_them() {
    use domain::base::{iana::Class, Name as DName, Record, Ttl};
    use domain::rdata::{Aaaa, Cname, Ns, Soa, Txt, ZoneRecordData, A};
    use std::str::FromStr;
    let n = |s: &str| DName::<bytes::Bytes>::from_str(s).expect("name");
    let rec = |owner: &str, data: ZoneRecordData<bytes::Bytes, DName<bytes::Bytes>>| {
        Record::new(n(owner), Class::IN, Ttl::from_secs(300), data)
    };
    let soa = Soa::new(
        n("ns.rpz.test."),
        n("admin.rpz.test."),
        7.into(),
        Ttl::from_secs(60),
        Ttl::from_secs(10),
        Ttl::from_secs(600),
        Ttl::from_secs(30),
    );
    let records = vec![
        rec("rpz.test.", ZoneRecordData::Soa(soa)),
        rec("rpz.test.", ZoneRecordData::Ns(Ns::new(n("ns.rpz.test.")))),
        rec(
            "bad.example.rpz.test.",
            ZoneRecordData::Cname(Cname::new(n("."))),
        ),
        rec(
            "*.bad.example.rpz.test.",
            ZoneRecordData::Cname(Cname::new(n("*."))),
        ),
        rec(
            "ok.example.rpz.test.",
            ZoneRecordData::Cname(Cname::new(n("rpz-passthru."))),
        ),
        rec(
            "quiet.example.rpz.test.",
            ZoneRecordData::Cname(Cname::new(n("rpz-drop."))),
        ),
        rec(
            "slow.example.rpz.test.",
            ZoneRecordData::Cname(Cname::new(n("rpz-tcp-only."))),
        ),
        rec(
            "sink.example.rpz.test.",
            ZoneRecordData::A(A::new(Ipv4Addr::new(192, 0, 2, 9))),
        ),
        rec(
            "sink.example.rpz.test.",
            ZoneRecordData::Aaaa(Aaaa::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9))),
        ),
        // The first policy record of an owner wins, later ones are dropped with a warning.
        rec(
            "bad.example.rpz.test.",
            ZoneRecordData::Cname(Cname::new(n("rpz-drop."))),
        ),
        // A block page, local data TXT; unsupported: an IP trigger; outside the zone: an error.
        rec(
            "rw.example.rpz.test.",
            ZoneRecordData::Cname(Cname::new(n("walled.garden."))),
        ),
        rec(
            "txt.example.rpz.test.",
            ZoneRecordData::Txt(Txt::build_from_slice(b"hi").expect("txt")),
        ),
        rec(
            "32.1.2.0.192.rpz-ip.rpz.test.",
            ZoneRecordData::Cname(Cname::new(n("."))),
        ),
        rec(
            "elsewhere.example.",
            ZoneRecordData::Cname(Cname::new(n("."))),
        ),
    ];
    let opts = Options {
        rpz_origin: Some("rpz.test".into()),
        ..Options::default()
    };
    let out = crate::parse_rpz_records(
        records.into_iter().enumerate().map(|(i, r)| (i + 1, r)),
        Path::new("feeds/rpz.test.zone"),
        &opts,
    );
    assert_eq!(
        rules(&out),
        vec![
            ("bad.example".into(), Kind::Exact, Action::Nxdomain, 3),
            ("bad.example".into(), Kind::Below, Action::Nodata, 4),
            ("ok.example".into(), Kind::Exact, Action::Pass, 5),
            ("quiet.example".into(), Kind::Exact, Action::Drop, 6),
            ("slow.example".into(), Kind::Exact, Action::Tc, 7),
            ("sink.example".into(), Kind::Exact, Action::Sinkhole, 8),
            // A CNAME to a plain name: a block page.
            ("rw.example".into(), Kind::Exact, Action::Sinkhole, 11),
            ("txt.example".into(), Kind::Exact, Action::Sinkhole, 12),
        ]
    );
    let sink = &out.rules[5];
    assert_eq!(
        sink.local.as_ref().and_then(|l| l.v4.first().copied()),
        Some(Ipv4Addr::new(192, 0, 2, 9))
    );
    assert_eq!(
        sink.local.as_ref().and_then(|l| l.v6.first().copied()),
        Some(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9))
    );
    assert_eq!(
        msgs(&out.errors),
        vec!["feeds/rpz.test.zone:14: elsewhere.example is outside the zone rpz.test"]
    );
    assert!(
        msgs(&out.warnings)
            .iter()
            .any(|w| w.starts_with("feeds/rpz.test.zone:10: bad.example: CNAME rpz-drop. ignored")),
        "{:?}",
        out.warnings
    );
    assert_eq!(out.unsupported.get("cname-rewrite"), None);
    assert_eq!(out.unsupported.get("local-data TXT"), None);
    assert_eq!(out.unsupported.get("rpz-ip"), Some(&1));
}

#[test]
fn a_block_page_with_addresses_in_the_zone_answers_them_after_its_cname() {
    let out = rpz("$TTL 600\n\
        bad.example CNAME page.isp.example.\n\
        other.example 60 CNAME bare-page.example.\n\
        page.isp.example 120 A 192.0.2.80\n\
        page.isp.example AAAA 2001:db8::80\n");
    assert!(out.errors.is_empty(), "{:#?}", msgs(&out.errors));
    let bad = out.rules[0].local.as_ref().expect("local data");
    assert_eq!(
        bad.cname.as_ref().map(ToString::to_string).as_deref(),
        Some("page.isp.example")
    );
    assert_eq!(bad.v4, vec![Ipv4Addr::new(192, 0, 2, 80)]);
    assert_eq!(
        bad.v6,
        vec!["2001:db8::80".parse::<Ipv6Addr>().expect("v6")]
    );
    // The smaller TTL of the CNAME and the page's records.
    assert_eq!(bad.ttl, 120);
    // A page the zone gives no address for: the CNAME alone.
    let other = out.rules[1].local.as_ref().expect("local data");
    assert!(other.v4.is_empty() && other.v6.is_empty() && other.ttl == 60);
    // The page's own name is a trigger like any other.
    assert_eq!(out.rules[2].name.to_string(), "page.isp.example");
}

#[test]
fn cname_chains_inside_the_zone_and_records_of_any_type() {
    let out = rpz("$TTL 600\n\
        *.bad.example CNAME g1.target.\n\
        g1.target CNAME g2.target.\n\
        g2.target 60 MX 10 mx.target.\n\
        g2.target A 192.0.2.1\n\
        loop1.example CNAME loop2.example.\n\
        loop2.example CNAME loop1.example.\n\
        dn.example DNAME example.com.\n");
    assert!(out.errors.is_empty(), "{:#?}", msgs(&out.errors));
    let bad = out.rules[0].local.as_ref().expect("local data");
    assert_eq!(
        (bad.to_string(), bad.ttl),
        (
            "ttl=60 a=192.0.2.1 rr=15:000a026d780674617267657400 cname=g1.target. chain=g2.target."
                .to_string(),
            60
        )
    );
    // Read back from the rules file's form.
    assert_eq!(
        &bad.to_string().parse::<crate::LocalData>().as_ref(),
        &Ok(&**bad)
    );
    // Per type: the two CNAMEs then the type's records at the last name; the CNAMEs alone
    // for other types; the first CNAME alone for a CNAME query.
    let (answers, dropped) = bad.answers();
    assert_eq!(dropped, 0);
    let shape: Vec<(u16, u8, [u16; 3])> = answers
        .iter()
        .map(|(t, a)| (*t, a.count, [a.owners[0], a.owners[1], a.owners[2]]))
        .collect();
    // g1.target. is 11 bytes at 12; the second CNAME's data at 12 + 11 + 12 = 35.
    assert_eq!(
        shape,
        vec![
            (1, 3, [0, 12, 35]),
            (15, 3, [0, 12, 35]),
            (0, 2, [0, 12, 0]),
            (5, 1, [0, 0, 0])
        ]
    );
    // A loop stops where it would repeat.
    let l = out.rules[3].local.as_ref().expect("local data");
    assert_eq!(l.to_string(), "ttl=600 cname=loop2.example.");
    // DNAME is local data of its own type (an A query gets NODATA).
    let d = out.rules[5].local.as_ref().expect("local data");
    assert_eq!(
        d.answers().0.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        [39]
    );
}

#[test]
fn local_data_in_the_generic_form_reads_back() {
    // What `blocker export --rpz` writes for local data of other types than A and AAAA
    // (RFC 3597): it must read back as the same records.
    let out = rpz("$TTL 60\n\
        txt.example TYPE16 \\# 3 026869\n\
        mx.example 30 TYPE15 \\# 6 000a026d7800\n");
    assert!(out.errors.is_empty(), "{:#?}", msgs(&out.errors));
    let txt = out.rules[0].local.as_ref().expect("local data");
    assert_eq!(txt.other, vec![(16, b"\x02hi".to_vec())]);
    let mx = out.rules[1].local.as_ref().expect("local data");
    assert_eq!(
        (mx.ttl, mx.other.clone()),
        (30, vec![(15, vec![0, 10, 2, b'm', b'x', 0])])
    );
}

#[test]
fn a_chain_too_long_for_an_answer_is_cut_not_dropped_and_names_round_trip() {
    // Block page names of 60 bytes: four CNAMEs do not fit in 256 bytes of records.
    let long = |i: usize| format!("{}{i}.{}.example", "p".repeat(30), "q".repeat(20));
    let mut zone = format!("$TTL 60\nbad.example CNAME {}.\n", long(0));
    for i in 0..5 {
        zone.push_str(&format!("{} CNAME {}.\n", long(i), long(i + 1)));
    }
    zone.push_str(&format!("{} A 192.0.2.1\n", long(5)));
    let out = rpz(&zone);
    assert!(out.errors.is_empty(), "{:#?}", msgs(&out.errors));
    let bad = out.rules[0].local.as_ref().expect("local data");
    let (answers, dropped) = bad.answers();
    // An A query gets the CNAMEs that fit (the resolver follows the rest), not NODATA.
    let a = answers.iter().find(|(t, _)| *t == 1).expect("an A entry").1;
    assert!(a.count >= 3, "{}", a.count);
    assert!(dropped > 0);
    let default = answers
        .iter()
        .find(|(t, _)| *t == 0)
        .expect("a default entry")
        .1;
    assert_eq!(default.count, a.count);
    // A name with a comma reads back from the rules files' form as the same chain.
    let d = crate::LocalData {
        cname: Some(crate::Name::from_presentation("a.example").expect("name")),
        chain: vec![crate::Name::from_presentation("x,y.example").expect("name")],
        ttl: 5,
        ..Default::default()
    };
    assert_eq!(d.to_string().parse::<crate::LocalData>().as_ref(), Ok(&d));
}

#[test]
fn a_zone_without_origin_says_how_to_name_it() {
    // `@ SOA` without $ORIGIN: the zone's name is nowhere in the file; owners written in
    // full keep their zone suffix (a name never queried), so it must be said.
    // Its name server's glue is set aside there too.
    let out = rpz("@ SOA ns. h. 1 1 1 1 1\n@ NS ns1\nns1 A 192.0.2.53\n\
                   bad.com.rpz.example. CNAME .\n");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let w = msgs(&out.warnings);
    assert!(
        w.len() == 2
            && w[0].starts_with("z.rpz:1: the SOA is at the root")
            && w[0].contains("--rpz-origin")
            && w[1].starts_with("z.rpz:3: ns1: address of the zone's name server"),
        "{w:?}"
    );
    assert_eq!(
        rules(&out),
        vec![(
            "bad.com.rpz.example".into(),
            Kind::Exact,
            Action::Nxdomain,
            4
        )]
    );
    // With $ORIGIN in the file, an owner outside the zone gets no origin advice.
    let out = rpz("$ORIGIN rpz.example.\n@ SOA ns. h. 1 1 1 1 1\nfoo.other. CNAME .\n");
    let e = msgs(&out.errors);
    assert!(
        e.len() == 1 && e[0].ends_with("foo.other is outside the zone rpz.example"),
        "{e:?}"
    );
    // An SOA with its name and relative owners, no $ORIGIN: written for a server that
    // starts at the zone's name (BIND, Unbound). Read from the root every owner falls
    // outside the zone; read again from the SOA's name, as --rpz-origin would, with a word.
    let text = "rpz.example. SOA ns. h. 1 1 1 1 1\nrpz.example. NS ns.\n\
                good.com CNAME rpz-passthru.\n*.bad.com CNAME .\n";
    let out = rpz(text);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let want = vec![
        ("good.com".into(), Kind::Exact, Action::Pass, 3),
        ("bad.com".into(), Kind::Below, Action::Nxdomain, 4),
    ];
    assert_eq!(rules(&out), want);
    let w = msgs(&out.warnings);
    assert!(
        w.len() == 1
            && w[0].starts_with(
                "z.rpz:1: the file sets no $ORIGIN: owners read under the zone's name rpz.example"
            ),
        "{w:?}"
    );
    // Given the origin, the same file loads the same, without the word.
    let opts = Options {
        rpz_origin: Some("rpz.example".into()),
        ..Options::default()
    };
    let out = parse_str(text, Path::new("z.rpz"), Format::Rpz, &opts);
    assert!(out.errors.is_empty() && out.warnings.is_empty(), "{out:?}");
    assert_eq!(rules(&out), want);
    // An owner written in full outside the zone stays outside it: the first reading's
    // error, and no advice to give --rpz-origin (reading from the zone's name is what the
    // second reading tried).
    let out = rpz("rpz.example. SOA ns. h. 1 1 1 1 1\nother.example. CNAME .\n");
    let e = msgs(&out.errors);
    assert!(
        e.len() == 1
            && e[0].starts_with("z.rpz:2: other.example is outside the zone rpz.example")
            && !e[0].contains("--rpz-origin"),
        "{e:?}"
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

#[test]
fn the_name_servers_glue_is_not_a_trigger() {
    // BIND-style: the zone's name server inside the zone, with its addresses. Servers take
    // them as triggers for the top-level name `ns1`, which no one queries and the public
    // suffix guard would refuse; blocker sets them aside, and only them.
    let out = rpz(
        "$ORIGIN rpz.example.\n@ SOA ns1 h 1 1 1 1 1\n@ NS ns1\n@ NS ns2.elsewhere.\n\
                   ns1 A 192.0.2.53\nns1 AAAA 2001:db8::53\nns2 A 192.0.2.54\n\
                   bad.example CNAME .\n",
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(
        rules(&out),
        vec![
            ("ns2".into(), Kind::Exact, Action::Sinkhole, 7),
            ("bad.example".into(), Kind::Exact, Action::Nxdomain, 8),
        ]
    );
    let w = msgs(&out.warnings);
    assert!(
        w.len() == 1 && w[0].starts_with("z.rpz:5: ns1: address of the zone's name server"),
        "{w:?}"
    );
}

/// The scanner's terse "bad symbol" and "bad name" say what is wrong with the name.
#[test]
fn scanner_errors_on_names_say_why() {
    let long = "a".repeat(64);
    let out = rpz("$ORIGIN rpz.example.\n@ SOA ns. h. 1 1h 1h 1w 1h\nbücher.example CNAME .\n");
    let e = msgs(&out.errors);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("z.rpz:3: ") && e[0].contains("punycode"),
        "{e:?}"
    );
    let out = rpz(&format!(
        "$ORIGIN rpz.example.\n@ SOA ns. h. 1 1h 1h 1w 1h\n{long}.example CNAME .\n"
    ));
    let e = msgs(&out.errors);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("z.rpz:3: ") && e[0].contains("longer than 63 bytes"),
        "{e:?}"
    );
}

/// A signed policy zone carries RRSIG and NSEC at every owner: the policies load, the
/// DNSSEC records are counted, without a warning each.
#[test]
fn a_signed_zone_loads_its_policies_quietly() {
    let out = rpz("$ORIGIN rpz.example.\n@ SOA ns. h. 1 1h 1h 1w 1h\n\
         @ DNSKEY 257 3 13 AAAA\n\
         a.example CNAME .\n\
         a.example RRSIG CNAME 13 3 3600 20270101000000 20260101000000 12345 rpz.example. AAAA\n\
         a.example NSEC b.example.rpz.example. CNAME RRSIG NSEC\n\
         b.example CNAME rpz-drop.\n\
         b.example RRSIG CNAME 13 3 3600 20270101000000 20260101000000 12345 rpz.example. AAAA\n");
    assert!(out.errors.is_empty(), "{:?}", msgs(&out.errors));
    assert_eq!(
        rules(&out),
        vec![
            ("a.example".into(), Kind::Exact, Action::Nxdomain, 4),
            ("b.example".into(), Kind::Exact, Action::Drop, 7),
        ]
    );
    assert_eq!(
        out.unsupported.get("DNSSEC records of a signed zone"),
        Some(&3)
    );
    assert!(out.warnings.is_empty(), "{:?}", msgs(&out.warnings));
}
