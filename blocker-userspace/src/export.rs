//! An order written as an RPZ zone file: what `blocker export --rpz` prints, and what
//! `rules load --format rpz` reads back to the same rules (see the tests).
//!
//! - SOA and NS at the apex (the serial is the controller's generation: it only grows).
//! - An exact rule is a trigger `name`, a below rule `*.name`; a subtree rule, which RPZ has no
//!   single trigger for, is both (it matches the same names; read back it is two rules).
//! - The action is the CNAME target RPZ servers use (`blocker_lists::rpz_cname_target`); a
//!   sinkhole is A/AAAA local data with the configured sinkhole addresses.
//! - What RPZ cannot say — REFUSED, a rule restricted to some query types, a sinkhole without
//!   a configured address — is refused (named), or with `skip` left out as a comment.

use std::fmt::Write;

use blocker_common::{Action, Kind, QTYPES_ALL};

use crate::state::{Rule, Settings};

/// Rules RPZ cannot express.
#[derive(Debug, thiserror::Error)]
#[error("{} rules cannot be written as RPZ (first: {}){}", .rules.len(), .rules.iter().take(3).cloned().collect::<Vec<_>>().join("; "), if .rules.len() > 3 { "; …" } else { "" })]
pub struct Inexpressible {
    /// Each rule and why.
    pub rules: Vec<String>,
}

/// Characters a zone file reads specially, which `Name`'s presentation form leaves as they
/// are: written as `\DDD`.
fn zone_safe(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for (i, c) in name.char_indices() {
        let special =
            matches!(c, ' ' | '\t' | ';' | '(' | ')' | '"') || (i == 0 && matches!(c, '@' | '$'));
        if special {
            let _ = write!(s, "\\{:03}", c as u32);
        } else {
            s.push(c);
        }
    }
    s
}

/// The zone file of `rules` as zone `zone` (no final dot) with SOA serial `serial`.
/// `skip`: leave out what RPZ cannot say (as comments) instead of refusing.
pub fn rpz_zone(
    zone: &str,
    serial: u32,
    order: &str,
    rules: &[Rule],
    settings: &Settings,
    skip: bool,
) -> Result<String, Inexpressible> {
    let mut out = String::with_capacity(rules.len() * 40 + 256);
    let zone = zone.trim_end_matches('.');
    let _ = writeln!(
        out,
        "; RPZ of blocker order {order:?}: {} rules",
        rules.len()
    );
    let _ = writeln!(out, "$ORIGIN {zone}.");
    let _ = writeln!(out, "$TTL 60");
    let _ = writeln!(
        out,
        "@ SOA localhost. hostmaster.localhost. {serial} 3600 600 604800 60"
    );
    let _ = writeln!(out, "@ NS localhost.");
    let mut bad = Vec::new();
    for r in rules {
        let name = zone_safe(&r.name.to_string());
        let owners: &[String] = &match r.kind {
            Kind::Exact => vec![name.clone()],
            Kind::Below => vec![format!("*.{name}")],
            Kind::Subtree => vec![name.clone(), format!("*.{name}")],
        };
        let shown = || {
            format!(
                "{} {} {} ({})",
                r.kind.as_str(),
                r.name,
                r.action.as_str(),
                r.source
            )
        };
        let why = if r.qtypes != QTYPES_ALL {
            Some("restricted to some query types")
        } else if r.action == Action::Sinkhole
            && r.local.is_none()
            && settings.sinkhole_v4.is_none()
            && settings.sinkhole_v6.is_none()
        {
            Some("a sinkhole, but no sinkhole address is configured")
        } else if r.action != Action::Sinkhole
            && blocker_lists::rpz_cname_target(r.action).is_none()
        {
            Some("RPZ has no such action")
        } else {
            None
        };
        if let Some(why) = why {
            if skip {
                let _ = writeln!(out, "; skipped: {}: {why}", shown());
            }
            bad.push(format!("{}: {why}", shown()));
            continue;
        }
        for owner in owners {
            match blocker_lists::rpz_cname_target(r.action) {
                Some(target) => {
                    let _ = writeln!(out, "{owner} CNAME {target}");
                }
                // The rule's own local data, with its TTL.
                None if r.local.is_some() => {
                    if let Some(d) = &r.local {
                        // A block page: the CNAME alone (its chain and records are the
                        // zone's data at the page's own names, exported as their rules).
                        if let Some(c) = &d.cname {
                            let _ = writeln!(out, "{owner} {} CNAME {c}.", d.ttl);
                            continue;
                        }
                        for a in &d.v4 {
                            let _ = writeln!(out, "{owner} {} A {a}", d.ttl);
                        }
                        for a in &d.v6 {
                            let _ = writeln!(out, "{owner} {} AAAA {a}", d.ttl);
                        }
                        // Other types in the generic form of RFC 3597.
                        for rr in d.generic_records() {
                            let _ = writeln!(out, "{owner} {} {rr}", d.ttl);
                        }
                    }
                }
                None => {
                    if let Some(a) = settings.sinkhole_v4 {
                        let _ = writeln!(out, "{owner} A {a}");
                    }
                    if let Some(a) = settings.sinkhole_v6 {
                        let _ = writeln!(out, "{owner} AAAA {a}");
                    }
                }
            }
        }
    }
    if !bad.is_empty() && !skip {
        return Err(Inexpressible { rules: bad });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use blocker_lists::{Format, Name, Options};
    use std::path::Path;

    fn rule(name: &str, kind: Kind, action: Action) -> Rule {
        Rule::cli(Name::from_presentation(name).expect("name"), kind, action)
    }

    /// Written and read back by the RPZ reader of `rules load`: the same (name, match,
    /// action), a subtree rule as its exact and below halves.
    #[test]
    fn round_trip_through_the_rpz_reader() {
        use Action::*;
        use Kind::*;
        let rules = vec![
            rule("bad.example", Exact, Nxdomain),
            rule("bad.example", Below, Nodata),
            rule("ok.bad.example", Exact, Pass),
            rule("quiet.example", Exact, Drop),
            rule("slow.example", Below, Tc),
            rule("sink.example", Exact, Sinkhole),
            rule("court.example", Subtree, Nxdomain),
            rule("odd\\;name.example", Exact, Nxdomain),
        ];
        let settings = Settings {
            sinkhole_v4: Some("192.0.2.1".parse().expect("v4")),
            sinkhole_v6: Some("2001:db8::1".parse().expect("v6")),
            ..Settings::default()
        };
        let text = rpz_zone("rpz.example", 7, "Court", &rules, &settings, false).expect("export");
        let out =
            blocker_lists::parse_str(&text, Path::new("x.rpz"), Format::Rpz, &Options::default());
        assert!(
            out.errors.is_empty() && out.warnings.is_empty(),
            "{:?} {:?}\n{text}",
            out.errors,
            out.warnings
        );
        let mut back: Vec<(String, Kind, Action)> = out
            .rules
            .iter()
            .map(|r| (r.name.to_string(), r.kind, r.action.unwrap_or(Action::None)))
            .collect();
        back.sort_by(|a, b| (&a.0, a.1 as u8).cmp(&(&b.0, b.1 as u8)));
        let mut want: Vec<(String, Kind, Action)> = vec![
            ("bad.example".into(), Exact, Nxdomain),
            ("bad.example".into(), Below, Nodata),
            ("ok.bad.example".into(), Exact, Pass),
            ("quiet.example".into(), Exact, Drop),
            ("slow.example".into(), Below, Tc),
            ("sink.example".into(), Exact, Sinkhole),
            ("court.example".into(), Exact, Nxdomain),
            ("court.example".into(), Below, Nxdomain),
            ("odd;name.example".into(), Exact, Nxdomain),
        ];
        want.sort_by(|a, b| (&a.0, a.1 as u8).cmp(&(&b.0, b.1 as u8)));
        assert_eq!(back, want, "{text}");
        let sink = out
            .rules
            .iter()
            .find(|r| r.name.to_string() == "sink.example")
            .expect("sink");
        assert_eq!(
            sink.local.as_ref().and_then(|l| l.v4.first().copied()),
            settings.sinkhole_v4
        );
        assert_eq!(
            sink.local.as_ref().and_then(|l| l.v6.first().copied()),
            settings.sinkhole_v6
        );
        assert!(
            text.contains("@ SOA localhost. hostmaster.localhost. 7 "),
            "{text}"
        );
    }

    #[test]
    fn what_rpz_cannot_say_is_refused_or_skipped() {
        let mut restricted = rule("aaaa-only.example", Kind::Exact, Action::Nxdomain);
        restricted.qtypes = blocker_common::qtype_bit(28);
        let rules = vec![
            rule("refused.example", Kind::Exact, Action::Refused),
            restricted,
            rule("sink.example", Kind::Exact, Action::Sinkhole),
            rule("fine.example", Kind::Exact, Action::Nxdomain),
        ];
        let e = rpz_zone("rpz.example", 1, "C", &rules, &Settings::default(), false)
            .expect_err("refused");
        assert_eq!(e.rules.len(), 3, "{e}");
        assert!(e.to_string().starts_with("3 rules cannot be written as RPZ (first: exact refused.example refused (cli): RPZ has no such action"), "{e}");
        let text =
            rpz_zone("rpz.example", 1, "C", &rules, &Settings::default(), true).expect("skip");
        assert!(
            text.contains(
                "; skipped: exact aaaa-only.example nxdomain (cli): restricted to some query types"
            ),
            "{text}"
        );
        assert!(text.contains("\nfine.example CNAME .\n"), "{text}");
    }
}
