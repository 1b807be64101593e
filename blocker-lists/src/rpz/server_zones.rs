//! RPZ zones from the test suites of DNS servers, re-typed (records kept, layout and comments
//! ours) with the file each one comes from, and the rules blocker must read from them. Each
//! server loads its zone as it is, so blocker must too: BIND time units, SOAs over several
//! lines, an owner given twice, owners in full without `$ORIGIN`.

use std::{net::Ipv4Addr, path::Path};

use blocker_common::{Action, Kind};

use crate::{parse_str, Format, Name, Options, ParseOutcome};

fn load(text: &str, origin: Option<&str>) -> ParseOutcome {
    let opts = Options {
        rpz_origin: origin.map(str::to_string),
        ..Options::default()
    };
    parse_str(text, Path::new("zone.rpz"), Format::Rpz, &opts)
}

type Want<'a> = &'a [(&'a str, Kind, Action, usize)];

/// The zone reads without errors, to exactly `want` (name, kind, action, line).
fn check(out: &ParseOutcome, want: Want<'_>) {
    let errors: Vec<String> = out.errors.iter().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let got: Vec<(String, Kind, Action, usize)> = out
        .rules
        .iter()
        .map(|r| {
            (
                r.name.to_string(),
                r.kind,
                r.action.unwrap_or(Action::None),
                r.line,
            )
        })
        .collect();
    let want: Vec<(String, Kind, Action, usize)> = want
        .iter()
        .map(|&(n, k, a, l)| (n.to_string(), k, a, l))
        .collect();
    assert_eq!(got, want);
}

fn unsupported(out: &ParseOutcome) -> Vec<(&str, usize)> {
    out.unsupported
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

use Action::{Drop, Nodata, Nxdomain, Pass, Sinkhole, Tc};
use Kind::{Below, Exact};

/// PowerDNS `pdns/basic.rpz` (PowerDNS/pdns 20096dc7c968): `$TTL 2h;` (a comment right
/// after the unit), an SOA in units `( 1 12h 15m 3w 2h)`, every QNAME action, and client-IP,
/// IP and NSDNAME triggers.
const PDNS_BASIC: &str = "$TTL 2h;
$ORIGIN domain.example.com.
@   SOA powerdns.example.net. hostmaster.example.com ( 1 12h 15m 3w 2h)
    NS powerdns.example.net.
; QNAME triggers, one of each action
nxdomain.org          CNAME .
*.nxdomain.org        CNAME .
mail.nxdomain.org     CNAME rpz-passthru.
example.net           CNAME rpz-drop.
*.example.net         CNAME rpz-drop.
truncate.org          CNAME rpz-tcp-only.
*.truncate.org        CNAME rpz-tcp-only.
local.org             CNAME explanation.example.com.
*.local.org           CNAME explanation.example.com.
local-a.org           A 192.168.2.5
*.local-a.org         A 192.168.2.5
; other triggers
24.0.0.0.127.rpz-client-ip        CNAME rpz-drop.
32.1.0.0.10.rpz-client-ip         CNAME rpz-tcp-only.
32.2.0.0.10.rpz-ip                CNAME .
dns-eu1.powerdns.net.rpz-nsdname  CNAME .
*.powerdns.net.rpz-nsdname        CNAME .
*.gtld-servers.net.rpz-nsdname    CNAME rpz-tcp-only.
";

#[test]
fn powerdns_basic_rpz() {
    let out = load(PDNS_BASIC, None);
    check(
        &out,
        &[
            ("nxdomain.org", Exact, Nxdomain, 6),
            ("nxdomain.org", Below, Nxdomain, 7),
            ("mail.nxdomain.org", Exact, Pass, 8),
            ("example.net", Exact, Drop, 9),
            ("example.net", Below, Drop, 10),
            ("truncate.org", Exact, Tc, 11),
            ("truncate.org", Below, Tc, 12),
            ("local.org", Exact, Sinkhole, 13),
            ("local.org", Below, Sinkhole, 14),
            ("local-a.org", Exact, Sinkhole, 15),
            ("local-a.org", Below, Sinkhole, 16),
        ],
    );
    // A CNAME to a plain name is a block page: answered as a CNAME to it.
    assert_eq!(
        out.rules[7].local.as_ref().and_then(|l| l.cname.clone()),
        Some(Name::from_presentation("explanation.example.com").expect("name"))
    );
    assert_eq!(
        out.rules[9]
            .local
            .as_ref()
            .and_then(|l| l.v4.first().copied()),
        Some(Ipv4Addr::new(192, 168, 2, 5))
    );
    assert_eq!(
        unsupported(&out),
        [("rpz-client-ip", 2), ("rpz-ip", 1), ("rpz-nsdname", 3)]
    );
}

/// PowerDNS `regression-tests.recursor-dnssec/test_RPZ.py`, class `RPZFileRecursorTest`
/// (PowerDNS/pdns 20096dc7c968): owners in full under `$ORIGIN zone.rpz.`, two A records and
/// a TXT at one owner.
const PDNS_RPZ_FILE: &str = "$ORIGIN zone.rpz.
@ 3600 IN SOA ns.zone.rpz. hostmaster.zone.rpz. 1 3600 3600 3600 1
a.example.zone.rpz.    60 IN A     192.0.2.42
a.example.zone.rpz.    60 IN A     192.0.2.43
a.example.zone.rpz.    60 IN TXT   \"some text\"
drop.example.zone.rpz. 60 IN CNAME rpz-drop.
z.example.zone.rpz.    60 IN A     192.0.2.1
tc.example.zone.rpz.   60 IN CNAME rpz-tcp-only.
";

#[test]
fn powerdns_rpz_file_recursor_test() {
    let out = load(PDNS_RPZ_FILE, None);
    check(
        &out,
        &[
            ("a.example", Exact, Sinkhole, 3),
            ("drop.example", Exact, Drop, 6),
            ("z.example", Exact, Sinkhole, 7),
            ("tc.example", Exact, Tc, 8),
        ],
    );
    assert_eq!(
        out.rules[0]
            .local
            .as_ref()
            .and_then(|l| l.v4.first().copied()),
        Some(Ipv4Addr::new(192, 0, 2, 42))
    );
    // The TXT record is local data too: a TXT query gets it, an A query the addresses.
    let a = out.rules[0].local.as_ref().expect("local data");
    assert_eq!(a.v4.len(), 2);
    assert_eq!(a.other, vec![(16, b"\x09some text".to_vec())]);
    assert!(unsupported(&out).is_empty());
}

/// Knot Resolver `modules/policy/policy.test.rpz` (CZ-NIC/knot-resolver 4f4788cfeb2b): an
/// SOA in units (`1 12h 15m 3w 2h`), an owner in full that repeats the zone name inside,
/// mixed case, two AAAA records at one owner.
const KNOT_POLICY_TEST: &str = "$ORIGIN testdomain.
$TTL 30
testdomain.   SOA nonexistent.testdomain. testdomain. 1 12h 15m 3w 2h
              NS  nonexistent.testdomain.

nxdomain                   CNAME .
nodata                     CNAME *.
*.nxdomain                 CNAME *.
rpzdrop                    CNAME rpz-drop.
rpzpassthru                CNAME rpz-passthru.
rra                        A     192.168.5.5
rra-zonename-suffix        A     192.168.6.6
testdomain.rra.testdomain. A     192.168.7.7
CaSe.SeNSiTiVe             A     192.168.8.8

two.records                AAAA  2001:db8::2
two.records                AAAA  2001:db8::1
";

#[test]
fn knot_resolver_policy_test_rpz() {
    let out = load(KNOT_POLICY_TEST, None);
    check(
        &out,
        &[
            ("nxdomain", Exact, Nxdomain, 6),
            ("nodata", Exact, Nodata, 7),
            ("nxdomain", Below, Nodata, 8),
            ("rpzdrop", Exact, Drop, 9),
            ("rpzpassthru", Exact, Pass, 10),
            ("rra", Exact, Sinkhole, 11),
            ("rra-zonename-suffix", Exact, Sinkhole, 12),
            ("testdomain.rra", Exact, Sinkhole, 13),
            ("case.sensitive", Exact, Sinkhole, 14),
            ("two.records", Exact, Sinkhole, 16),
        ],
    );
    assert_eq!(
        out.rules[8]
            .local
            .as_ref()
            .and_then(|l| l.v4.first().copied()),
        Some(Ipv4Addr::new(192, 168, 8, 8))
    );
    // Knot answers both, and so does blocker.
    assert_eq!(out.rules[9].local.as_ref().map(|l| l.v6.len()), Some(2));
    assert_eq!(
        out.rules[9]
            .local
            .as_ref()
            .and_then(|l| l.v6.first().copied()),
        Some("2001:db8::2".parse().expect("v6"))
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

/// Knot Resolver `modules/policy/policy.test.rpz.soa` (CZ-NIC/knot-resolver 4f4788cfeb2b):
/// no `$ORIGIN`, owners in full; only the SOA (in units) names the zone.
const KNOT_POLICY_TEST_SOA: &str =
    "test2domain. SOA nonexistent.test2domain. test2domain. 1 12h 15m 3w 2h
             NS  nonexistent.test2domain.

nxdomain-fqdn.test2domain.   CNAME .
nodata-fqdn.test2domain.     CNAME *.
";

#[test]
fn knot_resolver_policy_test_rpz_soa() {
    let out = load(KNOT_POLICY_TEST_SOA, None);
    check(
        &out,
        &[
            ("nxdomain-fqdn", Exact, Nxdomain, 4),
            ("nodata-fqdn", Exact, Nodata, 5),
        ],
    );
}

/// Unbound `testdata/rpz_qname.rpl` (NLnetLabs/unbound 7fb79b0677a0), its zones
/// `rpz.example.com` and `rpz2.example.com`: the SOA owner relative to an `$ORIGIN` that
/// is not the zone, then `$ORIGIN` the zone; `a` given `CNAME .` and then `CNAME *.` on
/// purpose (Unbound answers NXDOMAIN for `a.`: the first wins).
const UNBOUND_RPZ_QNAME: &str = "$ORIGIN example.com.
rpz  3600  IN  SOA  ns1.rpz.example.com. hostmaster.rpz.example.com. (
        1379078166 28800 7200 604800 7200 )
     3600  IN  NS   ns1.rpz.example.com.
     3600  IN  NS   ns2.rpz.example.com.
$ORIGIN rpz.example.com.
a    CNAME .
a    CNAME *.      ; the same owner again, another action
*.a  TXT   \"wildcard local data\"
b.a  CNAME *.
c.a  CNAME rpz-passthru.
c.g  CNAME rpz-passthru.
";

const UNBOUND_RPZ2_QNAME: &str = "$ORIGIN example.com.
rpz2  3600  IN  SOA  ns1.rpz.example.com. hostmaster.rpz.example.com. (
        1379078166 28800 7200 604800 7200 )
      3600  IN  NS   ns1.rpz.example.com.
      3600  IN  NS   ns2.rpz.example.com.
$ORIGIN rpz2.example.com.
a     TXT    \"local data 2nd zone\"
d     TXT    \"local data 2nd zone\"
e     CNAME  *.a.example.
*.e   CNAME  *.b.example.
drop  CNAME  rpz-drop.
tcp   CNAME  rpz-tcp-only.
c.g   CNAME  .
";

#[test]
fn unbound_rpz_qname() {
    let out = load(UNBOUND_RPZ_QNAME, None);
    check(
        &out,
        &[
            ("a", Exact, Nxdomain, 7),
            ("a", Below, Sinkhole, 9),
            ("b.a", Exact, Nodata, 10),
            ("c.a", Exact, Pass, 11),
            ("c.g", Exact, Pass, 12),
        ],
    );
    // `*.a TXT …`: local data at a wildcard trigger.
    assert_eq!(
        out.rules[1].local.as_ref().map(|l| l.other.clone()),
        Some(vec![(16, b"\x13wildcard local data".to_vec())])
    );
    assert!(unsupported(&out).is_empty());
    let w: Vec<String> = out.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w[0],
        "zone.rpz:8: a: CNAME *. ignored: the first policy record of the name wins (zone.rpz:7: CNAME . (nxdomain))"
    );

    let out = load(UNBOUND_RPZ2_QNAME, None);
    check(
        &out,
        &[
            ("a", Exact, Sinkhole, 7),
            ("d", Exact, Sinkhole, 8),
            ("drop", Exact, Drop, 11),
            ("tcp", Exact, Tc, 12),
            ("c.g", Exact, Nxdomain, 13),
        ],
    );
    assert_eq!(unsupported(&out), [("cname-rewrite", 2)]);
}

/// BIND `bin/tests/system/rpz/ns9/rpz.db` (isc-projects/bind9 400171aee8db): owners in
/// full with TTL and class, no `$ORIGIN`, NS `.` at the apex.
const BIND_NS9: &str =
    "rpz.                      28800 IN SOA   rpz. hostmaster.rpz. 6 10800 3600 2419200 900
rpz.                      28800 IN NS    .
a-only.example.rpz.       28800 IN CNAME *.
no-a-no-aaaa.example.rpz. 28800 IN CNAME *.
a-plus-aaaa.example.rpz.  28800 IN CNAME *.
";

#[test]
fn bind_ns9_rpz_db() {
    let out = load(BIND_NS9, None);
    check(
        &out,
        &[
            ("a-only.example", Exact, Nodata, 3),
            ("no-a-no-aaaa.example", Exact, Nodata, 4),
            ("a-plus-aaaa.example", Exact, Nodata, 5),
        ],
    );
}

/// BIND `bin/tests/system/rpz/ns3/base.db` (isc-projects/bind9 0665d1de8af8): `@` for the
/// apex with the zone's name only in named.conf (here the RPZ origin `bl`, a zone the test
/// loads from it), IP triggers with `zz`, local data, and a wildcard CNAME rewrite.
const BIND_NS3_BASE: &str = "$TTL 120
@   SOA blx. hostmaster.ns.blx. ( 1 3600 1200 604800 60 )
    NS  ns.tld.
ns  A   10.53.0.3
; IP triggers that poke the radix tree
128.1111.2222.3333.4444.5555.6666.7777.8888.rpz-ip  CNAME .
128.1111.2222.3333.4444.5555.6666.zz.rpz-ip         CNAME .
128.1111.2222.3333.4444.5555.zz.8888.rpz-ip         CNAME .
128.1111.2222.3333.4444.zz.8888.rpz-ip              CNAME .
128.zz.3333.4444.0.0.8888.rpz-ip                    CNAME .
128.zz.3333.4444.0.7777.8888.rpz-ip                 CNAME .
128.zz.3333.4444.0.8777.8888.rpz-ip                 CNAME .
127.zz.3333.4444.0.8777.8888.rpz-ip                 CNAME .
; old crashes
redirect     IN  A      127.0.0.1
*.redirect   IN  A      127.0.0.1
*.credirect  IN  CNAME  google.com.
";

#[test]
fn bind_ns3_base_db() {
    let out = load(BIND_NS3_BASE, Some("bl"));
    check(
        &out,
        &[
            ("ns", Exact, Sinkhole, 4),
            ("redirect", Exact, Sinkhole, 15),
            ("redirect", Below, Sinkhole, 16),
            // `*.credirect CNAME google.com.`: a block page.
            ("credirect", Below, Sinkhole, 17),
        ],
    );
    assert_eq!(unsupported(&out), [("rpz-ip", 8)]);
}
