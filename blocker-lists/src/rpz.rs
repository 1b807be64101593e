//! RPZ zone files (QNAME triggers), scanned with NLnet Labs' `domain` zone-file parser.

use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use blocker_common::{Action, Kind, QTYPES_ALL};
use bytes::Bytes;
use domain::{
    base::{iana::Class, Name as DName, Rtype, ToName},
    rdata::ZoneRecordData,
    zonefile::inplace::{Entry, Zonefile},
};

use crate::{name::Name, Options, ParseOutcome, ParsedRule};

/// Labels that start the unsupported trigger types (IP, NSDNAME, NSIP, client IP).
const SPECIAL: &[&str] = &["rpz-ip", "rpz-nsdname", "rpz-nsip", "rpz-client-ip"];
/// `$INCLUDE` nesting limit (a loop guard besides the visited set).
const MAX_INCLUDE_DEPTH: usize = 8;

/// What one owner name says, gathered across its records.
#[derive(Default)]
struct Owner {
    line: usize,
    file: PathBuf,
    action: Option<Action>,
    v4: Vec<IpAddr>,
    v6: Vec<IpAddr>,
    conflict: Option<String>,
}

struct Scan<'a> {
    opts: &'a Options,
    apex: Option<Name>,
    owners: BTreeMap<(Vec<u8>, bool), (Name, Owner)>,
    order: Vec<(Vec<u8>, bool)>,
    visited: HashSet<PathBuf>,
}

fn to_name(n: &impl ToName) -> Option<Name> {
    let labels: Vec<Vec<u8>> = n
        .iter_labels()
        .filter(|l| !l.is_root())
        .map(|l| l.as_slice().to_vec())
        .collect();
    Name::from_labels(labels.iter().map(Vec::as_slice)).ok()
}

pub fn parse(text: &str, file: &Path, opts: &Options, out: &mut ParseOutcome) {
    let mut scan = Scan {
        opts,
        apex: None,
        owners: BTreeMap::new(),
        order: Vec::new(),
        visited: HashSet::new(),
    };
    if let Some(o) = &opts.rpz_origin {
        match Name::from_presentation(o) {
            Ok(n) => scan.apex = Some(n),
            Err(e) => out.error(file, 0, format!("RPZ origin {o:?}: {e}")),
        }
    }
    let origin = opts.rpz_origin.clone().unwrap_or_else(|| ".".into());
    scan_file(&mut scan, text, file, &origin, 0, out);
    for key in std::mem::take(&mut scan.order) {
        let Some((name, owner)) = scan.owners.remove(&key) else {
            continue;
        };
        let kind = if key.1 { Kind::Below } else { Kind::Exact };
        if let Some(c) = owner.conflict {
            out.error(&owner.file, owner.line, c);
            continue;
        }
        let (action, sinkhole) = if !owner.v4.is_empty() || !owner.v6.is_empty() {
            if owner.v4.len() > 1 || owner.v6.len() > 1 {
                out.warn(&owner.file, owner.line, format!("{name}: several addresses per family; blocker answers with its configured sinkhole address"));
            }
            (
                Some(Action::Sinkhole),
                owner.v4.first().or(owner.v6.first()).copied(),
            )
        } else {
            (owner.action, None)
        };
        let Some(action) = action else { continue };
        out.rules.push(ParsedRule {
            name,
            kind,
            action: Some(action),
            qtypes: QTYPES_ALL,
            sinkhole,
            file: owner.file,
            line: owner.line,
        });
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    // The entry ends at `offset`; report the line its last non-blank character is on.
    let upto = text[..end].trim_end();
    upto.bytes().filter(|&b| b == b'\n').count() + 1
}

fn scan_file(
    scan: &mut Scan<'_>,
    text: &str,
    file: &Path,
    origin: &str,
    depth: usize,
    out: &mut ParseOutcome,
) {
    let canon = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
    if !scan.visited.insert(canon) {
        out.error(file, 0, "included more than once ($INCLUDE loop?)");
        return;
    }
    let mut zf = Zonefile::from(text);
    // RPZ files often give no class at all.
    zf.set_default_class(Class::IN);
    match DName::<Bytes>::from_str(
        if origin.ends_with('.') {
            origin.to_string()
        } else {
            format!("{origin}.")
        }
        .as_str(),
    ) {
        Ok(o) => zf.set_origin(o),
        Err(e) => {
            out.error(file, 0, format!("origin {origin:?}: {e}"));
            return;
        }
    }
    loop {
        let entry = match zf.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => {
                // The scanner reports "LINE:COL: problem" and cannot go on past it.
                let s = e.to_string();
                let (line, msg) = match s.split_once(':') {
                    Some((l, rest)) if l.parse::<usize>().is_ok() => (
                        l.parse().unwrap_or(0),
                        rest.trim_start_matches(|c: char| c.is_ascii_digit())
                            .trim_start_matches(':')
                            .trim()
                            .to_string(),
                    ),
                    _ => (0, s),
                };
                out.error(file, line, format!("zone file syntax: {msg}"));
                break;
            }
        };
        let line = line_of(text, zf.current_offset());
        match entry {
            Entry::Include {
                path,
                origin: inc_origin,
            } => {
                let rel = String::from_utf8_lossy(path.as_slice()).into_owned();
                let p = file.parent().unwrap_or(Path::new(".")).join(&rel);
                if depth >= MAX_INCLUDE_DEPTH {
                    out.error(file, line, format!("$INCLUDE {rel}: nested too deep"));
                    continue;
                }
                // Without an origin of its own, an included file starts at the current one.
                let o = inc_origin
                    .map(|o| o.to_string())
                    .or_else(|| zf.origin().ok().map(|o| o.to_string()))
                    .unwrap_or_else(|| origin.to_string());
                match std::fs::read_to_string(&p) {
                    Ok(t) => scan_file(scan, &t, &p, &o, depth + 1, out),
                    Err(e) => out.error(file, line, format!("$INCLUDE {}: {e}", p.display())),
                }
            }
            Entry::Record(rec) => {
                let owner = rec.owner();
                let Some(full) = to_name(owner) else {
                    // The root: only the SOA/NS of a zone without origin.
                    if rec.rtype() == Rtype::SOA && scan.apex.is_none() {
                        continue;
                    }
                    continue;
                };
                if rec.rtype() == Rtype::SOA {
                    if scan.apex.is_none() {
                        scan.apex = Some(full);
                    }
                    continue;
                }
                let rel = match &scan.apex {
                    Some(apex) if full == *apex => continue, // NS and the like at the apex
                    Some(apex) => match full.strip_suffix(apex) {
                        Some(r) => r,
                        None => {
                            out.error(file, line, format!("{full} is outside the zone {apex}"));
                            continue;
                        }
                    },
                    None => full,
                };
                // Unsupported trigger types sit under their special label.
                let labels: Vec<String> = rel
                    .labels()
                    .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
                    .collect();
                if let Some(sp) = labels.iter().find(|l| SPECIAL.contains(&l.as_str())) {
                    *out.unsupported.entry(sp.clone()).or_default() += 1;
                    continue;
                }
                let (name, below) = if labels.first().map(String::as_str) == Some("*") {
                    match rel.parent() {
                        Some(p) => (p, true),
                        None => {
                            out.error(file, line, "`*` alone is not a trigger");
                            continue;
                        }
                    }
                } else {
                    (rel, false)
                };
                let key = (name.canonical().to_vec(), below);
                if !scan.owners.contains_key(&key) {
                    scan.order.push(key.clone());
                    scan.owners.insert(
                        key.clone(),
                        (
                            name.clone(),
                            Owner {
                                line,
                                file: file.to_path_buf(),
                                ..Owner::default()
                            },
                        ),
                    );
                }
                let Some((_, o)) = scan.owners.get_mut(&key) else {
                    continue;
                };
                let set = |o: &mut Owner, a: Action| {
                    if o.action.is_some() || !o.v4.is_empty() || !o.v6.is_empty() {
                        o.conflict = Some(format!(
                            "{name}: more than one policy (line {} and {line})",
                            o.line
                        ));
                    } else {
                        o.action = Some(a);
                    }
                };
                match rec.data() {
                    ZoneRecordData::Cname(c) => {
                        let target = c.cname().to_string();
                        let t = target.trim_end_matches('.').to_ascii_lowercase();
                        match t.as_str() {
                            "" => set(o, Action::Nxdomain),
                            "*" => set(o, Action::Nodata),
                            "rpz-passthru" => set(o, Action::Pass),
                            "rpz-drop" => set(o, Action::Drop),
                            "rpz-tcp-only" => set(o, Action::Tc),
                            _ => {
                                *out.unsupported.entry("cname-rewrite".into()).or_default() += 1;
                                out.warn(file, line, format!("{name}: CNAME to {target} (a rewrite) is not supported; skipped"));
                                scan.owners.remove(&key);
                            }
                        }
                    }
                    ZoneRecordData::A(a) => {
                        if o.action.is_some() {
                            o.conflict = Some(format!(
                                "{name}: local data and a CNAME policy (line {} and {line})",
                                o.line
                            ));
                        }
                        o.v4.push(IpAddr::V4(a.addr()));
                    }
                    ZoneRecordData::Aaaa(a) => {
                        if o.action.is_some() {
                            o.conflict = Some(format!(
                                "{name}: local data and a CNAME policy (line {} and {line})",
                                o.line
                            ));
                        }
                        o.v6.push(IpAddr::V6(a.addr()));
                    }
                    _ => {
                        let t = rec.rtype().to_string();
                        *out.unsupported
                            .entry(format!("local-data {t}"))
                            .or_default() += 1;
                        out.warn(
                            file,
                            line,
                            format!("{name}: local data of type {t} is not supported; skipped"),
                        );
                    }
                }
            }
        }
    }
    let _ = scan.opts;
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use blocker_common::{Action, Kind};

    use crate::{parse_file, parse_str, Format, Options};

    const ZONE: &str = r#"$TTL 300
@   IN SOA localhost. hostmaster.localhost. (
        2026112201 ; serial
        3600 900 604800 300 )
    IN NS  localhost.
; court order 12345/2026
bad.example          CNAME .
*.bad.example        CNAME .
nodata.example       CNAME *.
ok.bad.example       CNAME rpz-passthru.
drop.example         CNAME rpz-drop.
tcp.example 60 IN    CNAME rpz-tcp-only.
sink.example         A     192.0.2.1
sink.example         AAAA  2001:db8::1
walled.example       CNAME garden.isp.example.
txt.example          TXT   "no"
32.1.2.0.192.rpz-ip  CNAME .
ns.example.rpz-nsdname CNAME .
"#;

    #[test]
    fn rpz_semantics() {
        let out = parse_str(
            ZONE,
            Path::new("order.rpz"),
            Format::Rpz,
            &Options::default(),
        );
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let got: Vec<(String, Kind, Option<Action>)> = out
            .rules
            .iter()
            .map(|r| (r.name.to_string(), r.kind, r.action))
            .collect();
        assert_eq!(
            got,
            vec![
                ("bad.example".into(), Kind::Exact, Some(Action::Nxdomain)),
                ("bad.example".into(), Kind::Below, Some(Action::Nxdomain)),
                ("nodata.example".into(), Kind::Exact, Some(Action::Nodata)),
                ("ok.bad.example".into(), Kind::Exact, Some(Action::Pass)),
                ("drop.example".into(), Kind::Exact, Some(Action::Drop)),
                ("tcp.example".into(), Kind::Exact, Some(Action::Tc)),
                ("sink.example".into(), Kind::Exact, Some(Action::Sinkhole)),
            ]
        );
        assert_eq!(out.rules[0].line, 7);
        assert_eq!(out.unsupported.get("rpz-ip"), Some(&1));
        assert_eq!(out.unsupported.get("rpz-nsdname"), Some(&1));
        assert_eq!(out.unsupported.get("cname-rewrite"), Some(&1));
        assert_eq!(out.unsupported.get("local-data TXT"), Some(&1));
    }

    #[test]
    fn origin_is_stripped_and_includes_followed() {
        let dir = std::env::temp_dir().join(format!("blk-rpz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("more.rpz"), "extra.example CNAME .\n").expect("write");
        let main = "$ORIGIN rpz.isp.example.\n@ SOA ns. host. 1 1 1 1 1\n@ NS ns.\nbad.example.rpz.isp.example. CNAME .\n*.bad.example CNAME .\n$INCLUDE more.rpz\n";
        std::fs::write(dir.join("main.rpz"), main).expect("write");
        let out = parse_file(&dir.join("main.rpz"), None, &Options::default()).expect("readable");
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let got: Vec<String> = out
            .rules
            .iter()
            .map(|r| format!("{} {}", r.kind.as_str(), r.name))
            .collect();
        assert_eq!(
            got,
            vec![
                "exact bad.example",
                "below bad.example",
                "exact extra.example"
            ]
        );
        std::fs::write(dir.join("loop.rpz"), "$INCLUDE loop.rpz\n").expect("write");
        let out = parse_file(
            &dir.join("loop.rpz"),
            Some(Format::Rpz),
            &Options::default(),
        )
        .expect("readable");
        assert!(!out.errors.is_empty(), "an include loop is an error");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn syntax_errors_and_conflicts_name_the_line() {
        let out = parse_str(
            "a.example CNAME .\na.example A 192.0.2.1\n",
            Path::new("z.rpz"),
            Format::Rpz,
            &Options::default(),
        );
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
        assert!(
            out.errors[0].to_string().starts_with("z.rpz:1: "),
            "{}",
            out.errors[0]
        );
        let out = parse_str(
            "ok.example CNAME .\nbad.example CNAME (\n",
            Path::new("z.rpz"),
            Format::Rpz,
            &Options::default(),
        );
        assert!(!out.errors.is_empty());
        assert!(
            out.errors[0].to_string().starts_with("z.rpz:"),
            "{}",
            out.errors[0]
        );
    }
}
