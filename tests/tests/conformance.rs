//! RPZ conformance: cases taken from the RPZ test suites of BIND, Unbound, PowerDNS Recursor
//! and Knot Resolver (`tests/conformance/*.cases`, format in `tests/conformance/README.md`),
//! run end to end: each case's zones loaded as orders with `blocker rules load --format rpz`,
//! each query asked by kdig from a client namespace through blocker (attached in XDP to the
//! edge veth) to unbound behind it, each answer checked (rcode, answer records, TTL, EDE).
//!
//! `status run` cases must pass; `status needs …` cases are run and their failures reported
//! as pending (they fail the test with `BLOCKER_CONFORMANCE_STRICT=1`); out-of-scope cases
//! are listed with their reason.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use blocker_tests::env::{kdig, Blocker, Kdig, Rr, Section, TempDir, Topology, EDGE_V4};

/// Where the case files are.
fn case_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

// ---------------------------------------------------------------------------------------------
// The case files.

/// One `.cases` file.
#[derive(Debug)]
struct Suite {
    /// The file's stem (`bind`, `unbound`, …).
    name: String,
    /// `file` blocks: name → text.
    files: BTreeMap<String, String>,
    cases: Vec<Case>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    /// Only while a case is read: no `status` line yet.
    Unset,
    Run,
    /// What the data plane lacks (`local-data`, `soa`).
    Needs(Vec<String>),
    OutOfScope(String),
}

#[derive(Debug)]
struct Case {
    id: String,
    /// FILE:LINE of the `case` line.
    at: String,
    source: String,
    status: Status,
    notes: Vec<String>,
    zones: Vec<ZoneUse>,
    /// Resolver data: unbound `local-data` records and `local-zone:` lines.
    resolver: Vec<String>,
    queries: Vec<Query>,
}

#[derive(Debug)]
struct ZoneUse {
    /// The policy zone's name: its order's EDE text (and the RPZ origin unless `origin`).
    name: String,
    file: String,
    /// The RPZ zone's own name (`--rpz-origin`).
    origin: String,
    priority: u32,
    override_action: Option<String>,
    shadow: bool,
}

#[derive(Debug, Default)]
struct Query {
    at: String,
    name: String,
    qtype: String,
    tcp: bool,
    dnssec: bool,
    norecurse: bool,
    cd: bool,
    noedns: bool,
    expect: Option<Outcome>,
    by: Option<By>,
    answer: Vec<Want>,
    answer_includes: Vec<Want>,
    /// None: not checked; Some(empty): must be empty.
    authority: Option<Vec<Want>>,
    additional: Vec<Want>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Rcode(String),
    Dropped,
    TcpTruncated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum By {
    /// EDE 16, with this EDE text when given.
    Blocker(Option<String>),
    Resolver,
}

/// An expected record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Want {
    owner: String,
    ttl: Option<u32>,
    rtype: String,
    data: String,
}

impl std::fmt::Display for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ttl = self.ttl.map_or("-".to_string(), |t| t.to_string());
        write!(f, "{} {} {} {}", self.owner, ttl, self.rtype, self.data)
    }
}

const RCODES: &[&str] = &[
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN",
];
const OVERRIDES: &[&str] = &[
    "given", "nxdomain", "nodata", "pass", "drop", "tcp-only", "sinkhole", "refused",
];
const NEEDS: &[&str] = &["local-data", "soa"];

/// The block being read.
enum Block {
    None,
    File(String),
    Set(String),
    Case,
}

/// Splits off the first white-space separated word.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// `OWNER TTL TYPE DATA`.
fn parse_want(rest: &str) -> Result<Want, String> {
    let (owner, rest) = word(rest);
    let (ttl, rest) = word(rest);
    let (rtype, data) = word(rest);
    if owner.is_empty() || ttl.is_empty() || rtype.is_empty() || data.is_empty() {
        return Err("expected OWNER TTL TYPE DATA".into());
    }
    if !owner.ends_with('.') {
        return Err(format!("owner {owner:?} must be absolute (end with a dot)"));
    }
    let ttl = match ttl {
        "-" => None,
        t => Some(
            t.parse()
                .map_err(|_| format!("TTL {t:?} is neither a number of seconds nor `-`"))?,
        ),
    };
    Ok(Want {
        owner: owner.to_string(),
        ttl,
        rtype: rtype.to_ascii_uppercase(),
        data: data.to_string(),
    })
}

/// Reads one case file's text (`path` names it in messages).
fn parse_suite(path: &Path, text: &str) -> Result<Suite, Vec<String>> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shown = path.display().to_string();
    let mut errors = Vec::new();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Case, and the resolver sets it names (resolved once the whole file is read).
    let mut cases: Vec<(Case, Vec<(String, usize)>)> = Vec::new();
    let mut block = Block::None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let at = format!("{shown}:{n}");
        let mut err = |m: String| errors.push(format!("{at}: {m}"));
        let line = raw.trim_end();
        if let Some(body) = line.strip_prefix('|') {
            let body = body.strip_prefix(' ').unwrap_or(body);
            match &block {
                Block::File(f) => {
                    let t = files.entry(f.clone()).or_default();
                    t.push_str(body);
                    t.push('\n');
                }
                Block::Set(s) => {
                    if !body.trim().is_empty() {
                        sets.entry(s.clone())
                            .or_default()
                            .push(body.trim().to_string());
                    }
                }
                _ => err("a `|` line outside a `file` or `resolver-set` block".into()),
            }
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = word(line);
        match key {
            "file" | "resolver-set" | "case" => {
                let (name, extra) = word(rest);
                if name.is_empty() || !extra.is_empty() {
                    err(format!("`{key} NAME`: one name expected"));
                    block = Block::None;
                    continue;
                }
                match key {
                    "file" => {
                        if name
                            .split('/')
                            .any(|p| p.is_empty() || p == "." || p == "..")
                        {
                            err(format!("file name {name:?}: relative path parts only"));
                        }
                        if files.insert(name.to_string(), String::new()).is_some() {
                            err(format!("file {name:?} defined twice"));
                        }
                        block = Block::File(name.to_string());
                    }
                    "resolver-set" => {
                        if sets.insert(name.to_string(), Vec::new()).is_some() {
                            err(format!("resolver-set {name:?} defined twice"));
                        }
                        block = Block::Set(name.to_string());
                    }
                    _ => {
                        cases.push((
                            Case {
                                id: name.to_string(),
                                at: at.clone(),
                                source: String::new(),
                                status: Status::Unset,
                                notes: Vec::new(),
                                zones: Vec::new(),
                                resolver: Vec::new(),
                                queries: Vec::new(),
                            },
                            Vec::new(),
                        ));
                        block = Block::Case;
                    }
                }
            }
            _ => {
                let Block::Case = block else {
                    err(format!("`{key}` outside a case"));
                    continue;
                };
                let Some((case, set_refs)) = cases.last_mut() else {
                    continue;
                };
                if let Err(m) = case_line(case, set_refs, key, rest, &at, n) {
                    err(m);
                }
            }
        }
    }
    // Whole-file checks: references, and each case complete.
    let mut out = Vec::new();
    let mut ids = BTreeSet::new();
    for (mut case, set_refs) in cases {
        let mut err = |m: String| errors.push(format!("{}: case {}: {m}", case.at, case.id));
        if !ids.insert(case.id.clone()) {
            err("defined twice".into());
        }
        if case.source.is_empty() {
            err("no `source` line".into());
        }
        if case.status == Status::Unset {
            err("no `status` line".into());
        }
        for (s, line) in &set_refs {
            match sets.get(s) {
                Some(lines) => case.resolver.extend(lines.iter().cloned()),
                None => errors.push(format!(
                    "{shown}:{line}: no resolver-set {s:?} in this file"
                )),
            }
        }
        for z in &case.zones {
            if !files.contains_key(&z.file) {
                errors.push(format!(
                    "{}: case {}: zone {}: no file {:?} in this file",
                    case.at, case.id, z.name, z.file
                ));
            }
        }
        let out_of_scope = matches!(case.status, Status::OutOfScope(_));
        if !out_of_scope && case.queries.is_empty() {
            errors.push(format!("{}: case {}: no query", case.at, case.id));
        }
        if !out_of_scope && case.zones.is_empty() {
            errors.push(format!("{}: case {}: no zone", case.at, case.id));
        }
        for q in &case.queries {
            let mut qerr =
                |m: &str| errors.push(format!("{}: query {} {}: {m}", q.at, q.name, q.qtype));
            match &q.expect {
                None => qerr("no `expect` line"),
                Some(Outcome::Dropped) => {
                    if q.by.is_some()
                        || !q.answer.is_empty()
                        || !q.answer_includes.is_empty()
                        || q.authority.is_some()
                        || !q.additional.is_empty()
                    {
                        qerr("a dropped query has no answer to say anything about");
                    }
                }
                Some(_) => {}
            }
            if !q.answer.is_empty() && !q.answer_includes.is_empty() {
                qerr("`answer` and `answer-includes` together");
            }
            if q.noedns && matches!(q.by, Some(By::Blocker(_))) {
                qerr("`by blocker` is told by the EDE option, which needs EDNS (drop `noedns`)");
            }
        }
        out.push(case);
    }
    if errors.is_empty() {
        Ok(Suite {
            name,
            files,
            cases: out,
        })
    } else {
        Err(errors)
    }
}

/// One line of a case.
fn case_line(
    case: &mut Case,
    set_refs: &mut Vec<(String, usize)>,
    key: &str,
    rest: &str,
    at: &str,
    n: usize,
) -> Result<(), String> {
    match key {
        "source" => {
            if rest.is_empty() {
                return Err("`source` needs a citation".into());
            }
            if !case.source.is_empty() {
                return Err("a second `source` line".into());
            }
            case.source = rest.to_string();
        }
        "status" => {
            if case.status != Status::Unset {
                return Err("a second `status` line".into());
            }
            let (kind, reason) = word(rest);
            case.status = match kind {
                "run" if reason.is_empty() => Status::Run,
                "needs" => {
                    let needs: Vec<String> = reason.split_whitespace().map(str::to_string).collect();
                    if needs.is_empty() {
                        return Err(format!("`status needs` names what: {}", NEEDS.join(", ")));
                    }
                    if let Some(bad) = needs.iter().find(|w| !NEEDS.contains(&w.as_str())) {
                        return Err(format!(
                            "`status needs {bad}`: unknown (known: {})",
                            NEEDS.join(", ")
                        ));
                    }
                    Status::Needs(needs)
                }
                "out-of-scope" if !reason.is_empty() => Status::OutOfScope(reason.to_string()),
                "out-of-scope" => return Err("`status out-of-scope` needs a reason".into()),
                _ => {
                    return Err(format!(
                        "status {rest:?}: expected `run`, `needs local-data|soa …` or `out-of-scope REASON`"
                    ))
                }
            };
        }
        "note" => case.notes.push(rest.to_string()),
        "zone" => {
            let mut w = rest.split_whitespace();
            let name = w.next().ok_or("`zone NAME file FILE …`")?;
            let mut z = ZoneUse {
                name: name.trim_end_matches('.').to_string(),
                file: String::new(),
                origin: name.trim_end_matches('.').to_string(),
                priority: 10 * (case.zones.len() as u32 + 1),
                override_action: None,
                shadow: false,
            };
            while let Some(k) = w.next() {
                let v = w
                    .next()
                    .ok_or_else(|| format!("zone {name}: `{k}` without a value"))?;
                match k {
                    "file" => z.file = v.to_string(),
                    "origin" => z.origin = v.trim_end_matches('.').to_string(),
                    "priority" => {
                        z.priority = v
                            .parse()
                            .map_err(|_| format!("zone {name}: priority {v:?} is not a number"))?
                    }
                    "override" => {
                        if !OVERRIDES.contains(&v) {
                            return Err(format!(
                                "zone {name}: override {v:?}: expected one of {}",
                                OVERRIDES.join(", ")
                            ));
                        }
                        z.override_action = Some(v.to_string());
                    }
                    "mode" if v == "shadow" => z.shadow = true,
                    "mode" => return Err(format!("zone {name}: mode {v:?}: only `shadow`")),
                    _ => return Err(format!("zone {name}: unknown option {k:?}")),
                }
            }
            if z.file.is_empty() {
                return Err(format!("zone {name}: no `file FILE`"));
            }
            if case.zones.iter().any(|o| o.name == z.name) {
                return Err(format!("zone {name} twice in one case"));
            }
            case.zones.push(z);
        }
        "resolver" => {
            let (set, extra) = word(rest);
            if set.is_empty() || !extra.is_empty() {
                return Err("`resolver SET`: one resolver-set name".into());
            }
            set_refs.push((set.to_string(), n));
        }
        "local-data" => {
            if rest.is_empty() {
                return Err("`local-data RECORD`".into());
            }
            case.resolver.push(rest.to_string());
        }
        "query" => {
            let mut w = rest.split_whitespace();
            let (Some(name), Some(qtype)) = (w.next(), w.next()) else {
                return Err("`query NAME TYPE [OPTION …]`".into());
            };
            let mut q = Query {
                at: at.to_string(),
                name: name.to_string(),
                qtype: qtype.to_ascii_uppercase(),
                ..Query::default()
            };
            for o in w {
                match o {
                    "tcp" => q.tcp = true,
                    "dnssec" => q.dnssec = true,
                    "norecurse" => q.norecurse = true,
                    "cd" => q.cd = true,
                    "noedns" => q.noedns = true,
                    _ => {
                        return Err(format!(
                            "query option {o:?}: expected tcp, dnssec, norecurse, cd or noedns"
                        ))
                    }
                }
            }
            case.queries.push(q);
        }
        "expect" | "by" | "answer" | "answer-includes" | "authority" | "additional" => {
            let q = case
                .queries
                .last_mut()
                .ok_or_else(|| format!("`{key}` before any `query` line"))?;
            match key {
                "expect" => {
                    if q.expect.is_some() {
                        return Err("a second `expect` for this query".into());
                    }
                    q.expect = Some(match rest {
                        "dropped" => Outcome::Dropped,
                        "tcp-truncated" => Outcome::TcpTruncated,
                        r if RCODES.contains(&r) => Outcome::Rcode(r.to_string()),
                        r => {
                            return Err(format!(
                                "expect {r:?}: an rcode ({}), `dropped` or `tcp-truncated`",
                                RCODES.join(", ")
                            ))
                        }
                    });
                }
                "by" => {
                    if q.by.is_some() {
                        return Err("a second `by` for this query".into());
                    }
                    let (who, zone) = word(rest);
                    q.by = Some(match (who, zone) {
                        ("blocker", "") => By::Blocker(None),
                        ("blocker", z) if !z.contains(char::is_whitespace) => {
                            By::Blocker(Some(z.trim_end_matches('.').to_string()))
                        }
                        ("resolver", "") => By::Resolver,
                        _ => return Err("`by blocker [ZONE]` or `by resolver`".into()),
                    });
                }
                "authority" if rest == "none" => {
                    if q.authority.as_ref().is_some_and(|a| !a.is_empty()) {
                        return Err("`authority none` after authority records".into());
                    }
                    q.authority = Some(Vec::new());
                }
                _ => {
                    let want = parse_want(rest).map_err(|m| format!("{key}: {m}"))?;
                    match key {
                        "answer" => q.answer.push(want),
                        "answer-includes" => q.answer_includes.push(want),
                        "additional" => q.additional.push(want),
                        _ => q.authority.get_or_insert_with(Vec::new).push(want),
                    }
                }
            }
        }
        _ => return Err(format!("unknown keyword {key:?}")),
    }
    Ok(())
}

/// Every `.cases` file, parsed; panics with every FILE:LINE problem.
fn load_suites() -> Vec<Suite> {
    let dir = case_dir();
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cases"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no .cases files in {}", dir.display());
    let mut suites = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        match parse_suite(&p, &text) {
            Ok(s) => suites.push(s),
            Err(e) => errors.extend(e),
        }
    }
    let mut seen = BTreeMap::new();
    for s in &suites {
        for c in &s.cases {
            if let Some(other) = seen.insert(c.id.clone(), c.at.clone()) {
                errors.push(format!("{}: case id {} also at {other}", c.at, c.id));
            }
        }
    }
    assert!(
        errors.is_empty(),
        "malformed case files:\n{}",
        errors.join("\n")
    );
    suites
}

// ---------------------------------------------------------------------------------------------
// Grouping: cases that can share one unbound.

/// The owner of a resolver line (`local-data` record), lower case with a final dot; None for
/// a `local-zone:` line.
fn owner_of(line: &str) -> Option<String> {
    if line.starts_with("local-zone:") {
        return None;
    }
    Some(absolute(word(line).0))
}

/// The zone a `local-zone: "Z." type` line declares.
fn local_zone_of(line: &str) -> Option<String> {
    let z = line.strip_prefix("local-zone:")?;
    Some(absolute(word(z).0.trim_matches('"')))
}

fn absolute(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n.ends_with('.') {
        n
    } else {
        format!("{n}.")
    }
}

fn at_or_below(name: &str, zone: &str) -> bool {
    zone == "." || name == zone || name.ends_with(&format!(".{zone}"))
}

/// Whether two cases need different resolver data: an owner both give different records; a
/// local zone one declares whose names the other gives data for or asks about, with other
/// data there; or a name one asks the resolver about (no data at or below it) that the other
/// gives data at or below.
fn conflict(a: &Case, b: &Case) -> bool {
    one_way_conflict(a, b) || one_way_conflict(b, a)
}

/// The resolver records of a case by owner.
fn data_of(c: &Case) -> BTreeMap<String, BTreeSet<String>> {
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in &c.resolver {
        if let Some(o) = owner_of(l) {
            m.entry(o).or_default().insert(l.clone());
        }
    }
    m
}

/// The names a case asks that the resolver (not blocker) is to answer.
fn asked_of_resolver(c: &Case) -> Vec<String> {
    c.queries
        .iter()
        .filter(|q| !matches!(q.by, Some(By::Blocker(_))) && q.expect != Some(Outcome::Dropped))
        .map(|q| absolute(&q.name))
        .collect()
}

fn one_way_conflict(a: &Case, b: &Case) -> bool {
    let (da, db) = (data_of(a), data_of(b));
    if da
        .iter()
        .any(|(o, la)| db.get(o).is_some_and(|lb| lb != la))
    {
        return true;
    }
    let under = |d: &BTreeMap<String, BTreeSet<String>>, z: &str| -> BTreeSet<String> {
        d.iter()
            .filter(|(o, _)| at_or_below(o, z))
            .flat_map(|(_, l)| l.iter().cloned())
            .collect()
    };
    let b_asks = asked_of_resolver(b);
    for z in a.resolver.iter().filter_map(|l| local_zone_of(l)) {
        let b_uses = b
            .resolver
            .iter()
            .any(|l| local_zone_of(l).as_deref() == Some(&z))
            || db.keys().any(|o| at_or_below(o, &z))
            || b_asks.iter().any(|n| at_or_below(n, &z));
        if b_uses && under(&da, &z) != under(&db, &z) {
            return true;
        }
    }
    b_asks
        .iter()
        .any(|n| !db.keys().any(|o| at_or_below(o, n)) && da.keys().any(|o| at_or_below(o, n)))
}

/// The runnable cases of a suite, in groups that can share one resolver (file order kept).
fn groups(suite: &Suite) -> Vec<Vec<&Case>> {
    let mut groups: Vec<Vec<&Case>> = Vec::new();
    for c in suite
        .cases
        .iter()
        .filter(|c| !matches!(c.status, Status::OutOfScope(_)))
    {
        match groups
            .iter_mut()
            .find(|g| g.iter().all(|o| !conflict(o, c)))
        {
            Some(g) => g.push(c),
            None => groups.push(vec![c]),
        }
    }
    groups
}

// ---------------------------------------------------------------------------------------------
// Running and checking.

fn norm_data(rtype: &str, data: &str) -> String {
    let d = data.split_whitespace().collect::<Vec<_>>().join(" ");
    match rtype {
        "TXT" | "SPF" => d,
        "A" => d
            .parse::<Ipv4Addr>()
            .map_or(d.to_ascii_lowercase(), |a| a.to_string()),
        "AAAA" => d
            .parse::<Ipv6Addr>()
            .map_or(d.to_ascii_lowercase(), |a| a.to_string()),
        _ => d.to_ascii_lowercase(),
    }
}

fn matches(w: &Want, r: &Rr) -> bool {
    absolute(&w.owner) == absolute(&r.owner)
        && w.rtype.eq_ignore_ascii_case(&r.rtype)
        && w.ttl.is_none_or(|t| t == r.ttl)
        && norm_data(&w.rtype, &w.data) == norm_data(&w.rtype, &r.data)
}

fn show_rr(r: &Rr) -> String {
    format!("{} {} {} {}", r.owner, r.ttl, r.rtype, r.data)
}

/// Exactly `want` in `got` (as multisets): the problems, if any.
fn exact(what: &str, want: &[Want], got: &[&Rr]) -> Option<String> {
    let mut left: Vec<&Rr> = got.to_vec();
    let mut missing = Vec::new();
    for w in want {
        match left.iter().position(|r| matches(w, r)) {
            Some(i) => {
                left.remove(i);
            }
            None => missing.push(w.to_string()),
        }
    }
    if missing.is_empty() && left.is_empty() {
        return None;
    }
    let mut m = format!("{what} section: ");
    if !missing.is_empty() {
        let _ = write!(m, "missing [{}]", missing.join("; "));
    }
    if !left.is_empty() {
        if !missing.is_empty() {
            m.push_str(", ");
        }
        let extra: Vec<String> = left.iter().map(|r| show_rr(r)).collect();
        let _ = write!(m, "unexpected [{}]", extra.join("; "));
    }
    Some(m)
}

fn includes(what: &str, want: &[Want], got: &[&Rr]) -> Option<String> {
    let missing: Vec<String> = want
        .iter()
        .filter(|w| !got.iter().any(|r| matches(w, r)))
        .map(ToString::to_string)
        .collect();
    (!missing.is_empty()).then(|| format!("{what} section lacks [{}]", missing.join("; ")))
}

/// kdig's answer in one line.
fn summary(k: &Kdig) -> String {
    let Some(status) = &k.status else {
        return "no answer".to_string();
    };
    let mut s = format!("{status} flags [{}]", k.flags);
    match &k.ede {
        Some((c, t)) => {
            let _ = write!(s, " EDE {c} {t:?}");
        }
        None => s.push_str(" no EDE"),
    }
    for (name, sec) in [
        ("answer", Section::Answer),
        ("authority", Section::Authority),
        ("additional", Section::Additional),
    ] {
        let rrs: Vec<String> = k.section(sec).map(show_rr).collect();
        if !rrs.is_empty() {
            let _ = write!(s, "; {name} [{}]", rrs.join("; "));
        }
    }
    s
}

/// Asks one query; what is wrong with its answer (empty: nothing).
fn check_query(t: &Topology, q: &Query) -> Vec<String> {
    let mut opts = vec!["+retry=0", "+timeout=2"];
    if !q.noedns {
        opts.push("+edns");
    }
    opts.push(if q.tcp { "+tcp" } else { "+ignore" });
    if q.dnssec {
        opts.push("+dnssec");
    }
    if q.norecurse {
        opts.push("+norecurse");
    }
    if q.cd {
        opts.push("+cdflag");
    }
    let k = kdig(&t.client, EDGE_V4, &q.name, &q.qtype, &opts);
    let mut p = Vec::new();
    let tc = k.flags.split_whitespace().any(|f| f == "tc");
    let section = |s: Section| -> Vec<&Rr> { k.section(s).collect() };
    match q.expect.as_ref() {
        Some(Outcome::Dropped) => {
            if k.status.is_some() {
                p.push("expected no answer (dropped)".to_string());
            }
        }
        Some(Outcome::TcpTruncated) => {
            if k.status.as_deref() != Some("NOERROR") || !tc {
                p.push("expected NOERROR with TC=1".to_string());
            }
            if let Some(m) = exact("answer", &[], &section(Section::Answer)) {
                p.push(m);
            }
        }
        Some(Outcome::Rcode(rc)) => {
            if k.status.as_deref() != Some(rc.as_str()) {
                p.push(format!("expected {rc}"));
            }
        }
        None => p.push("no expectation".to_string()),
    }
    if k.status.is_some() && q.expect != Some(Outcome::Dropped) {
        match &q.by {
            Some(By::Blocker(zone)) => match (&k.ede, zone) {
                (Some((16, text)), Some(z)) if text != z => p.push(format!(
                    "decided by order with EDE text {text:?}, expected {z:?}"
                )),
                (Some((16, _)), _) => {}
                _ => p.push("expected blocker's answer (EDE 16)".to_string()),
            },
            Some(By::Resolver) if k.ede.is_some() => {
                p.push("expected the resolver's answer (no EDE)".to_string());
            }
            Some(By::Resolver) | None => {}
        }
        if q.expect != Some(Outcome::TcpTruncated) {
            let m = if q.answer_includes.is_empty() {
                exact("answer", &q.answer, &section(Section::Answer))
            } else {
                includes("answer", &q.answer_includes, &section(Section::Answer))
            };
            p.extend(m);
        }
        if let Some(a) = &q.authority {
            p.extend(exact("authority", a, &section(Section::Authority)));
        }
        p.extend(includes(
            "additional",
            &q.additional,
            &section(Section::Additional),
        ));
    }
    if p.is_empty() {
        return p;
    }
    let mut opts = String::new();
    for (on, o) in [
        (q.tcp, " tcp"),
        (q.dnssec, " dnssec"),
        (q.norecurse, " norecurse"),
        (q.cd, " cd"),
        (q.noedns, " noedns"),
    ] {
        if on {
            opts.push_str(o);
        }
    }
    vec![format!(
        "{} {}{opts} ({}): {}; got {}",
        q.name,
        q.qtype,
        q.at,
        p.join("; "),
        summary(&k)
    )]
}

/// Loads the case's zones, asks its queries, removes its orders. The problems (empty: it
/// passed).
fn run_case(b: &Blocker, t: &Topology, dir: &TempDir, case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let mut loaded = Vec::new();
    for z in &case.zones {
        let order = format!("{}/{}", case.id, z.name);
        let file = dir.join(&z.file).display().to_string();
        let priority = z.priority.to_string();
        let mut args = vec![
            "rules",
            "load",
            &file,
            "--format",
            "rpz",
            "--rpz-origin",
            &z.origin,
            "--order",
            &order,
            "--ede-text",
            &z.name,
            "--priority",
            &priority,
            "--force",
            "--allow-empty",
        ];
        if let Some(a) = &z.override_action {
            args.extend(["--override", a]);
        }
        if z.shadow {
            args.extend(["--mode", "shadow"]);
        }
        let out = b.run(&args);
        if out.status.success() {
            loaded.push(order);
        } else {
            problems.push(format!(
                "`blocker {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    if problems.is_empty() {
        for q in &case.queries {
            problems.extend(check_query(t, q));
        }
    }
    for order in loaded {
        b.ok(&["orders", "remove", &order]);
    }
    problems
}

/// What happened to a case.
enum Verdict {
    Passed,
    Failed(Vec<String>),
}

/// `BLOCKER_CONFORMANCE_CASES=bind-rpz-t1,kresd`: only the cases whose id starts with one of
/// these prefixes (to work on a few).
fn selected() -> impl Fn(&Case) -> bool {
    let prefixes: Vec<String> = std::env::var("BLOCKER_CONFORMANCE_CASES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    move |c: &Case| prefixes.is_empty() || prefixes.iter().any(|p| c.id.starts_with(p.as_str()))
}

#[test]
fn conformance() {
    let mut suites = load_suites();
    let keep = selected();
    for s in &mut suites {
        s.cases.retain(|c| keep(c));
    }
    suites.retain(|s| !s.cases.is_empty());
    let strict = std::env::var("BLOCKER_CONFORMANCE_STRICT").is_ok_and(|v| v == "1");
    // Per suite: case id → result.
    let mut results: BTreeMap<String, BTreeMap<String, Verdict>> = BTreeMap::new();
    for suite in &suites {
        for group in groups(suite) {
            let mut data: Vec<&str> = Vec::new();
            for c in &group {
                for l in &c.resolver {
                    if !data.contains(&l.as_str()) {
                        data.push(l);
                    }
                }
            }
            let mut t = Topology::new();
            t.start_unbound(&data);
            let b = Blocker::new();
            t.attach(&b, "native");
            b.rrl_off();
            // The servers the cases come from bound no answer's size: room for the SOA, the
            // local data and the whole EDE text (blocker's default UDP bound is 64 bytes).
            b.ok(&["config", "set", "--max-growth", "192"]);
            let dir = TempDir::new("blkt-conf");
            for (name, text) in &suite.files {
                if let Some(parent) = dir.join(name).parent() {
                    fs::create_dir_all(parent)
                        .unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
                }
                dir.write(name, text);
            }
            for c in group {
                let p = run_case(&b, &t, &dir, c);
                let r = if p.is_empty() {
                    Verdict::Passed
                } else {
                    Verdict::Failed(p)
                };
                results
                    .entry(suite.name.clone())
                    .or_default()
                    .insert(c.id.clone(), r);
            }
        }
    }
    let failures = report(&suites, &results, strict);
    assert!(
        failures == 0,
        "{failures} conformance cases failed (see the report above)"
    );
}

/// Prints the per-source table and the lists; returns the number of cases that fail the test.
fn report(
    suites: &[Suite],
    results: &BTreeMap<String, BTreeMap<String, Verdict>>,
    strict: bool,
) -> usize {
    let mut out = String::new();
    let mut failures = 0;
    let (mut failed, mut pending, mut surprises, mut oos) =
        (String::new(), String::new(), String::new(), String::new());
    let _ = writeln!(
        out,
        "\nRPZ conformance{}\n{:<10} {:>6} {:>7} {:>6} {:>8} {:>8} {:>6}",
        if strict { " (strict)" } else { "" },
        "source",
        "passed",
        "failed",
        "pending",
        "needs ok",
        "out of",
        "total"
    );
    let _ = writeln!(
        out,
        "{:<10} {:>6} {:>7} {:>6} {:>8} {:>8} {:>6}",
        "", "(run)", "(run)", "", "(passed)", "scope", ""
    );
    let mut totals = [0usize; 6];
    for s in suites {
        let mut row = [0usize; 6];
        for c in &s.cases {
            row[5] += 1;
            let r = results.get(&s.name).and_then(|m| m.get(&c.id));
            match (&c.status, r) {
                (Status::OutOfScope(why), _) => {
                    row[4] += 1;
                    let _ = writeln!(oos, "  {} — {why}", c.id);
                }
                (Status::Run, Some(Verdict::Passed)) => row[0] += 1,
                (Status::Run, Some(Verdict::Failed(p))) => {
                    row[1] += 1;
                    failures += 1;
                    let _ = writeln!(failed, "  {} ({}; {})", c.id, c.at, c.source);
                    for l in p {
                        let _ = writeln!(failed, "      {l}");
                    }
                    for n in &c.notes {
                        let _ = writeln!(failed, "      note: {n}");
                    }
                }
                (Status::Needs(n), Some(Verdict::Failed(p))) => {
                    row[2] += 1;
                    if strict {
                        failures += 1;
                    }
                    let _ = writeln!(pending, "  {} (needs {}; {})", c.id, n.join(", "), c.at);
                    for l in p {
                        let _ = writeln!(pending, "      {l}");
                    }
                    for n in &c.notes {
                        let _ = writeln!(pending, "      note: {n}");
                    }
                }
                (Status::Needs(n), Some(Verdict::Passed)) => {
                    row[3] += 1;
                    let _ = writeln!(
                        surprises,
                        "  {} (marked needs {}) passes: switch it to `status run`?",
                        c.id,
                        n.join(", ")
                    );
                }
                (Status::Unset, _) | (_, None) => {
                    failures += 1;
                    let _ = writeln!(failed, "  {}: not run", c.id);
                }
            }
        }
        for (t, r) in totals.iter_mut().zip(row) {
            *t += r;
        }
        let _ = writeln!(
            out,
            "{:<10} {:>6} {:>7} {:>6} {:>8} {:>8} {:>6}",
            s.name, row[0], row[1], row[2], row[3], row[4], row[5]
        );
    }
    let _ = writeln!(
        out,
        "{:<10} {:>6} {:>7} {:>6} {:>8} {:>8} {:>6}",
        "all", totals[0], totals[1], totals[2], totals[3], totals[4], totals[5]
    );
    for (title, body) in [
        ("FAILED (status run)", &failed),
        (
            if strict {
                "PENDING (needs …; failing: strict)"
            } else {
                "PENDING (needs …; not failing the test)"
            },
            &pending,
        ),
        ("NEEDS … BUT PASSING", &surprises),
        ("OUT OF SCOPE", &oos),
    ] {
        if !body.is_empty() {
            let _ = write!(out, "\n{title}:\n{body}");
        }
    }
    println!("{out}");
    failures
}

// ---------------------------------------------------------------------------------------------
// The case files themselves, and the parser's messages (no root needed).

#[test]
fn case_files_parse() {
    let suites = load_suites();
    for s in &suites {
        assert!(!s.cases.is_empty(), "{}: no cases", s.name);
    }
    // Every group's resolver data is consistent by construction; a case alone must be too.
    for s in &suites {
        for g in groups(s) {
            for (i, a) in g.iter().enumerate() {
                for b in &g[i + 1..] {
                    assert!(!conflict(a, b), "{} and {} grouped", a.id, b.id);
                }
            }
        }
    }
}

fn parse_errors(text: &str) -> Vec<String> {
    parse_suite(Path::new("x.cases"), text).expect_err("malformed")
}

#[test]
fn malformed_case_files_name_file_and_line() {
    let good = "file z\n| $ORIGIN rpz.\n| a CNAME .\n\ncase c1\nsource s\nstatus run\nzone rpz file z\nquery a. A\nexpect NXDOMAIN\nby blocker rpz\n";
    let s = parse_suite(Path::new("x.cases"), good).expect("parses");
    assert_eq!(s.cases.len(), 1);
    assert_eq!(s.cases[0].zones[0].priority, 10);
    assert_eq!(s.files["z"], "$ORIGIN rpz.\na CNAME .\n");

    let e = parse_errors(&good.replace("expect NXDOMAIN", "expect NXDOMIAN"));
    assert!(e[0].starts_with("x.cases:10: expect \"NXDOMIAN\""), "{e:?}");
    let e = parse_errors(&good.replace("zone rpz file z", "zone rpz file y"));
    assert!(
        e[0].starts_with("x.cases:5: case c1: zone rpz: no file \"y\""),
        "{e:?}"
    );
    let e = parse_errors(&good.replace("status run\n", ""));
    assert!(
        e[0].starts_with("x.cases:5: case c1: no `status` line"),
        "{e:?}"
    );
    let e = parse_errors(&good.replace("query a. A\n", "answer a. - A 192.0.2.1\n"));
    assert!(
        e[0].starts_with("x.cases:9: `answer` before any `query`"),
        "{e:?}"
    );
    let e = parse_errors(&format!("{good}answer a 5m A 192.0.2.1\n"));
    assert!(
        e[0].starts_with("x.cases:12: answer: owner \"a\" must be absolute"),
        "{e:?}"
    );
    let e = parse_errors(&format!("{good}| stray\n"));
    assert!(e[0].starts_with("x.cases:12: a `|` line outside"), "{e:?}");
    let e = parse_errors(&good.replace("status run", "status needs dns64"));
    assert!(
        e[0].starts_with("x.cases:7: `status needs dns64`: unknown"),
        "{e:?}"
    );
    let e = parse_errors(&good.replace("by blocker rpz", "by blocker rpz\nexpect NOERROR"));
    assert!(e[0].starts_with("x.cases:12: a second `expect`"), "{e:?}");
}

#[test]
fn conflicting_resolver_data_splits_groups() {
    let text = "file z\n| a CNAME .\n\
        case c1\nsource s\nstatus run\nzone rpz file z\nlocal-data b. 60 IN A 192.0.2.1\nquery b. A\nexpect NOERROR\n\
        case c2\nsource s\nstatus run\nzone rpz file z\nlocal-data b. 60 IN A 192.0.2.2\nquery b. A\nexpect NOERROR\n\
        case c3\nsource s\nstatus run\nzone rpz file z\nquery b. A\nexpect NXDOMAIN\n\
        case c4\nsource s\nstatus run\nzone rpz file z\nlocal-data c. 60 IN A 192.0.2.3\nquery c. A\nexpect NOERROR\n";
    let s = parse_suite(Path::new("x.cases"), text).expect("parses");
    let g: Vec<Vec<&str>> = groups(&s)
        .iter()
        .map(|g| g.iter().map(|c| c.id.as_str()).collect())
        .collect();
    assert_eq!(g, vec![vec!["c1", "c4"], vec!["c2"], vec!["c3"]]);
}
