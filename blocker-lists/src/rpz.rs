//! RPZ zone files (QNAME triggers), read with NLnet Labs' `domain` zone-file scanner.
//!
//! # Why `domain`
//! `domain::zonefile::inplace::Zonefile` (with the `zonefile` feature) is a streaming scanner
//! of RFC 1035 master files that applies `$ORIGIN` and `$TTL` itself, completes relative
//! owners, `@`, blank owners (the previous owner), parentheses over several lines, quotes,
//! escapes and comments, keeps `*` labels as they are, hands `$INCLUDE` (with its optional
//! origin) back to the caller so we can resolve the path and guard against loops, and can be
//! fed data piece by piece. Its errors carry a line and column. `hickory-proto` 0.25's text
//! parser (`serialize::txt::Parser`) was the other candidate: it returns the whole zone as a
//! map of record sets (no line per record, file order and repeated records lost), stops at
//! the first error, and refuses `$INCLUDE` with an origin ("Domain name for $INCLUDE is not
//! supported"), so it cannot give per-line diagnostics or RPZ files' usual includes.
//!
//! # How the text is fed
//! The scanner cannot go on after an error. So the text is cut into entries first (a line,
//! or lines joined by parentheses or quotes, with comments understood, as the scanner itself
//! does) and fed to the scanner one entry at a time: every record is known to start on the
//! line its entry starts on, and after an invalid entry a fresh scanner (with the origin then
//! in force) takes the next entry, so one bad record never hides the rest of the file (lines
//! right after it that start with white space, i.e. repeat its owner, are then errors too).
//! A panic inside the scanner (it has assertions) is caught and reported the same way. Each
//! entry first has its TTL fields turned into seconds (`units`).
//!
//! # Semantics
//! - TTLs with units (`$TTL 1h`, a record TTL `1d`, an SOA `3H 15M 3W 12H`, `1h30m`) are read
//!   as every DNS server reads them; the `units` module has the one place that does it.
//! - The apex (stripped from owners) is [`Options::rpz_origin`] if given, else the owner of
//!   the SOA when the first record is the SOA, else the `$ORIGIN` in force at the first
//!   record; without any, owners are taken as they are. SOA and NS records at the apex are
//!   skipped (other types there with a warning); owners outside the zone are errors.
//! - A refused entry never moves names silently (this matters with `--skip-invalid`): a
//!   refused SOA still gives its owner as the apex (and as the owner of the lines after it
//!   that start with white space); if even its owner cannot be read, records whose place
//!   depends on the apex are errors. A refused `$ORIGIN` leaves no origin: relative names
//!   after it are errors (not names under the previous origin) until the next `$ORIGIN`.
//! - Names with an empty label (`a..b`, which the scanner lets through) are errors.
//! - Owner `name` is a [`Kind::Exact`] rule, `*.name` a [`Kind::Below`] rule. An owner that
//!   is a URL (`https://host/`, `host:443`) is reduced to its host with a warning, as in
//!   plain lists; one with a path, a query or a fragment is skipped and counted.
//! - `CNAME .` nxdomain, `CNAME *.` nodata, `CNAME rpz-passthru.` (or the legacy CNAME to the
//!   trigger name itself) pass, `CNAME rpz-drop.` drop, `CNAME rpz-tcp-only.` tc; A/AAAA local
//!   data sinkhole (one rule per owner, first address of each family kept, a warning when a
//!   family has more than one); any other CNAME (a rewrite) and other local data types are
//!   counted as `cname-rewrite` / `local-data TYPE` in `unsupported`, with a warning.
//! - Owners under `rpz-ip`, `rpz-nsdname`, `rpz-nsip`, `rpz-client-ip` (the last label before
//!   the apex) are counted in `unsupported` under that label, without a warning each.
//! - The same record twice is a duplicate. Two different policies at one owner (`CNAME .`
//!   and `CNAME *.`, a CNAME and A records): the first policy record wins, as in Unbound
//!   (its test `rpz_qname.rpl` has `a CNAME .` then `a CNAME *.` and expects NXDOMAIN), with
//!   a warning at the later one naming both places.
//! - `$INCLUDE path [origin]`: `path` relative to the including file's directory; a file that
//!   includes itself (directly or not) or more than 16 levels of includes is an error at the
//!   `$INCLUDE` line.

use std::{
    hash::BuildHasher,
    net::{Ipv4Addr, Ipv6Addr},
    panic::{catch_unwind, AssertUnwindSafe},
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use blocker_common::{Action, Kind, QTYPES_ALL};
use bytes::Bytes;
use domain::{
    base::{iana::Class, Name as DName, Record, ToName},
    rdata::ZoneRecordData,
    zonefile::inplace::{Entry, Zonefile},
};
use rustc_hash::FxHashMap as HashMap;

use crate::{
    name::{is_address, normalize_name, Name, NameError},
    plain::{url_has_path, url_host},
    read_text, LocalData, Options, ParseOutcome, ParsedRule,
};

mod units;

use units::Shape;

/// Labels that start the unsupported trigger types (IP, NSDNAME, NSIP, client IP).
const SPECIAL: &[&str] = &["rpz-ip", "rpz-nsdname", "rpz-nsip", "rpz-client-ip"];
/// `$INCLUDE` nesting limit.
const MAX_INCLUDE_DEPTH: usize = 16;

/// What one trigger (owner name, wildcard or not) says, gathered across its records.
struct Owner {
    name: Name,
    below: bool,
    file: Arc<PathBuf>,
    /// Line of the record that set the policy (CNAME) or of the first local data.
    line: usize,
    action: Option<Action>,
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    /// Local data of other types: type and RDATA (wire form, names uncompressed).
    other: Vec<(u16, Vec<u8>)>,
    /// Local data: a CNAME to a block page (a name outside the policy zone's special names).
    cname: Option<Name>,
    /// The CNAMEs the zone gives from the block page on (filled in by `finish`).
    chain: Vec<Name>,
    /// Local data: the smallest TTL of its records.
    ttl: u32,
    /// The first policy record is a CNAME rewrite keeping the query's labels (`CNAME
    /// *.target.`: not supported; its target): no rule.
    rewrite: Option<Box<str>>,
}

impl Owner {
    fn trigger(&self) -> String {
        if self.below {
            format!("*.{}", self.name)
        } else {
            self.name.to_string()
        }
    }

    fn has_data(&self) -> bool {
        !self.v4.is_empty() || !self.v6.is_empty() || !self.other.is_empty() || self.cname.is_some()
    }

    fn fresh(&self) -> bool {
        self.action.is_none() && !self.has_data() && self.rewrite.is_none()
    }

    /// The policy its first record set, for messages.
    fn policy(&self) -> String {
        if let Some(t) = &self.rewrite {
            format!("CNAME {t}. (a rewrite, not supported)")
        } else if let Some(c) = &self.cname {
            format!("CNAME {c}. (a block page)")
        } else if self.has_data() {
            "local data".to_string()
        } else {
            match self.action {
                Some(a) => format!("CNAME {} ({})", cname_of(a).unwrap_or("?"), a.as_str()),
                None => "nothing".to_string(),
            }
        }
    }
}

/// The CNAME target that writes a policy action (None: RPZ has no CNAME for it — REFUSED —
/// or writes it as local data — a sinkhole).
pub(crate) fn cname_of(a: Action) -> Option<&'static str> {
    match a {
        Action::Nxdomain => Some("."),
        Action::Nodata => Some("*."),
        Action::Pass => Some("rpz-passthru."),
        Action::Drop => Some("rpz-drop."),
        Action::Tc => Some("rpz-tcp-only."),
        _ => None,
    }
}

struct Scan<'a> {
    out: &'a mut ParseOutcome,
    apex: Option<Name>,
    apex_decided: bool,
    /// Why the apex cannot be known (the SOA that was to give it was refused), while
    /// `apex_decided` is false.
    apex_lost: Option<String>,
    owners: Vec<Owner>,
    /// Hash of (name, wildcard) → index in `owners`; `exact` holds the (about never) rest.
    index: HashMap<u64, usize>,
    exact: HashMap<(Vec<u8>, bool), usize>,
    /// The files being read ($INCLUDE chain), canonicalized, for the loop guard.
    stack: Vec<PathBuf>,
    /// Owners found outside the zone (each an error).
    outside: usize,
    /// The apex NS records' names inside the zone (relative): addresses there are the name
    /// server's glue (`@ NS ns1` + `ns1 A …`, as BIND-style zones write), not triggers for
    /// the top-level name `ns1`.
    glue: Vec<Name>,
}

/// Our name of a scanned name: None for the root. The scanner lets an empty label through
/// (`a..b`): that is an error, never a name without it.
fn to_name(n: &impl ToName) -> Result<Option<Name>, NameError> {
    let mut after_empty = false;
    for l in n.iter_labels() {
        if after_empty {
            return Err(NameError::EmptyLabel);
        }
        after_empty = l.is_root();
    }
    match Name::from_labels(
        n.iter_labels()
            .filter(|l| !l.is_root())
            .map(|l| l.as_slice()),
    ) {
        Ok(name) => Ok(Some(name)),
        Err(NameError::Root) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The SOA record in wire form (see [`ParseOutcome::soa`]); None if a name does not convert.
fn soa_wire<N: ToName>(owner: &Name, ttl: u32, soa: &domain::rdata::Soa<N>) -> Option<Vec<u8>> {
    let wire = |n: Option<Name>| n.map_or_else(|| vec![0], |n| crate::wire_name(&n));
    let mname = wire(to_name(soa.mname()).ok()?);
    let rname = wire(to_name(soa.rname()).ok()?);
    let mut rr = wire(Some(owner.clone()));
    rr.extend_from_slice(&6u16.to_be_bytes());
    rr.extend_from_slice(&1u16.to_be_bytes());
    rr.extend_from_slice(&ttl.min(soa.minimum().as_secs()).to_be_bytes());
    let rdlen = mname.len() + rname.len() + 20;
    rr.extend_from_slice(&(rdlen as u16).to_be_bytes());
    rr.extend_from_slice(&mname);
    rr.extend_from_slice(&rname);
    for v in [
        soa.serial().into_int(),
        soa.refresh().as_secs(),
        soa.retry().as_secs(),
        soa.expire().as_secs(),
        soa.minimum().as_secs(),
    ] {
        rr.extend_from_slice(&v.to_be_bytes());
    }
    Some(rr)
}

/// A scanned name as written, empty labels included (`a..b.`), for messages.
fn dotted(n: &impl ToName) -> String {
    let labels: Vec<String> = n.iter_labels().map(|l| l.to_string()).collect();
    match labels.split_last() {
        Some((last, rest)) if last.is_empty() && !rest.is_empty() => format!("{}.", rest.join(".")),
        _ => labels.join("."),
    }
}

/// A DNSSEC record (signatures, denial of existence, keys, digests): what a signed zone
/// adds at its owners and apex, which no RPZ policy reads.
pub fn is_dnssec<O, N>(d: &ZoneRecordData<O, N>) -> bool {
    matches!(
        d,
        ZoneRecordData::Rrsig(_)
            | ZoneRecordData::Nsec(_)
            | ZoneRecordData::Nsec3(_)
            | ZoneRecordData::Nsec3param(_)
            | ZoneRecordData::Dnskey(_)
            | ZoneRecordData::Ds(_)
            | ZoneRecordData::Cds(_)
            | ZoneRecordData::Cdnskey(_)
            | ZoneRecordData::Zonemd(_)
    )
}

/// The special label (`rpz-ip`, …) `label` is, if any.
fn special(label: &[u8]) -> Option<&'static str> {
    SPECIAL
        .iter()
        .copied()
        .find(|s| s.as_bytes().eq_ignore_ascii_case(label))
}

fn absolute(origin: &str) -> Result<DName<Bytes>, String> {
    let o = if origin.ends_with('.') {
        origin.to_string()
    } else {
        format!("{origin}.")
    };
    DName::<Bytes>::from_str(&o).map_err(|e| e.to_string())
}

/// A scanner starting with `origin` (None: relative names are errors).
fn new_scanner(origin: Option<&DName<Bytes>>) -> Zonefile {
    let mut zf = Zonefile::new();
    if let Some(o) = origin {
        zf.set_origin(o.clone());
    }
    // RPZ files often give no class at all.
    zf.set_default_class(Class::IN);
    zf
}

/// Runs the scanner on what it was fed, catching its panics (it has assertions).
fn next_entry(zf: &mut Zonefile) -> Result<Option<Entry>, Option<String>> {
    match catch_unwind(AssertUnwindSafe(|| zf.next_entry())) {
        Ok(Ok(e)) => Ok(e),
        Ok(Err(e)) => Err(Some(e.to_string())),
        Err(_) => Err(None),
    }
}

/// Reads a zone file into `out` (a fresh outcome).
///
/// A file that sets no `$ORIGIN` and names its zone only in its SOA (`rpz.example. SOA …`,
/// then relative owners) is written for a server that starts reading at the zone's name, as
/// BIND and Unbound do with the name from their configuration: read from the root, its owners
/// fall outside the zone. Such a file is read again from the SOA's name, as `--rpz-origin`
/// would have it, and the second reading is kept when it places every owner (with a warning
/// saying so).
pub(crate) fn parse(text: &str, file: &Arc<PathBuf>, opts: &Options, out: &mut ParseOutcome) {
    // (`$` is rare in a zone file outside its directives: a cheap look.)
    let sets_origin = text.match_indices('$').any(|(i, _)| {
        text.get(i..i + 7)
            .is_some_and(|d| d.eq_ignore_ascii_case("$ORIGIN"))
    });
    let given = opts.rpz_origin.as_deref().is_some_and(|o| !o.is_empty());
    let (apex, outside) = scan_zone(text, file, opts, out);
    let Some(apex) = apex.filter(|_| outside > 0 && !given && !sets_origin) else {
        return;
    };
    let from_apex = Options {
        rpz_origin: Some(apex.clone()),
        ..opts.clone()
    };
    let mut again = ParseOutcome::default();
    let (_, still_outside) = scan_zone(text, file, &from_apex, &mut again);
    if still_outside == 0 && again.errors.len() < out.errors.len() {
        again.warn(
            file,
            1,
            format!(
                "the file sets no $ORIGIN: owners read under the zone's name {apex} (its SOA's), \
                 as a server serving {apex} reads them"
            ),
        );
        *out = again;
    }
}

/// One reading of a zone file into `out`; returns the apex it settled (the zone's name) and
/// how many owners fell outside it.
fn scan_zone(
    text: &str,
    file: &Arc<PathBuf>,
    opts: &Options,
    out: &mut ParseOutcome,
) -> (Option<String>, usize) {
    let (mut scan, origin) = Scan::start(out, file, opts, text.len() / 40);
    scan.scan_text(text, file, Some(&origin), None, 0);
    let apex = scan.apex.as_ref().map(Name::to_string);
    let outside = scan.outside;
    scan.finish();
    (apex, outside)
}

/// The records of a zone (a transferred RPZ, say) read with exactly the semantics of a zone
/// file: each record goes through the same path as a record the scanner read from a file.
/// `line` is where the record is shown in diagnostics (its line in a zone file rendered one
/// record per line, which is how blocker keeps a transferred zone).
pub(crate) fn parse_records(
    records: impl IntoIterator<Item = (usize, crate::ZoneRecord)>,
    file: &Arc<PathBuf>,
    opts: &Options,
    out: &mut ParseOutcome,
) {
    let records = records.into_iter();
    let (mut scan, origin) = Scan::start(out, file, opts, records.size_hint().0);
    for (line, rec) in records {
        scan.zone_record(&rec, Some(&origin), None, file, line);
    }
    scan.finish();
}

impl<'a> Scan<'a> {
    /// A scan of `file` (for about `owners` owners) and the origin it starts with.
    fn start(
        out: &'a mut ParseOutcome,
        file: &Arc<PathBuf>,
        opts: &Options,
        owners: usize,
    ) -> (Scan<'a>, DName<Bytes>) {
        let mut scan = Scan {
            out,
            apex: None,
            apex_decided: false,
            apex_lost: None,
            owners: Vec::with_capacity(owners),
            index: HashMap::with_capacity_and_hasher(owners, Default::default()),
            exact: HashMap::default(),
            stack: vec![file.canonicalize().unwrap_or_else(|_| file.to_path_buf())],
            outside: 0,
            glue: Vec::new(),
        };
        let mut origin = DName::<Bytes>::root();
        if let Some(o) = opts.rpz_origin.as_deref().filter(|o| !o.is_empty()) {
            match (Name::from_presentation(o), absolute(o)) {
                (Ok(n), Ok(d)) => {
                    scan.apex = Some(n);
                    origin = d;
                }
                (Err(e), _) => scan.out.error(file, 0, format!("RPZ origin {o:?}: {e}")),
                (_, Err(e)) => scan.out.error(file, 0, format!("RPZ origin {o:?}: {e}")),
            }
        }
        (scan, origin)
    }

    /// Turns what each owner's records said into rules.
    fn finish(mut self) {
        // A block page the zone gives data for (local data at the page's own name, as
        // `page.example A …` next to `bad.example CNAME page.example.`, or a further CNAME):
        // its answer carries the chain and the last name's records after the CNAME, as a
        // resolver following the CNAMEs inside the zone would.
        let exact: HashMap<Vec<u8>, usize> = self
            .owners
            .iter()
            .enumerate()
            .filter(|(_, o)| !o.below && o.has_data())
            .map(|(i, o)| (o.name.canonical().to_vec(), i))
            .collect();
        let mut followed = Vec::new();
        for (i, o) in self.owners.iter().enumerate() {
            let Some(first) = &o.cname else { continue };
            let mut chain: Vec<Name> = Vec::new();
            let mut ttl = o.ttl;
            let mut at = exact.get(first.canonical()).copied();
            let mut data = None;
            // At most as many CNAMEs as leave room in an answer for one record after them.
            for _ in 0..blocker_common::LOCAL_RECORDS - 2 {
                let Some(p) = at.map(|p| &self.owners[p]) else {
                    break;
                };
                ttl = ttl.min(p.ttl);
                match &p.cname {
                    // Back at the first target, or (an exact trigger) at the trigger itself,
                    // or at a name already in the chain: a loop, which stops here.
                    Some(next)
                        if next != first
                            && (o.below || next != &o.name)
                            && !chain.contains(next) =>
                    {
                        chain.push(next.clone());
                        at = exact.get(next.canonical()).copied();
                    }
                    Some(_) => break, // a loop: the chain stops where it would repeat
                    None => {
                        data = Some((p.v4.clone(), p.v6.clone(), p.other.clone()));
                        break;
                    }
                }
            }
            followed.push((i, chain, ttl, data));
        }
        for (i, chain, ttl, data) in followed {
            let o = &mut self.owners[i];
            o.chain = chain;
            o.ttl = ttl;
            if let Some((v4, v6, other)) = data {
                o.v4 = v4;
                o.v6 = v6;
                o.other = other;
            }
        }
        for o in std::mem::take(&mut self.owners) {
            if o.rewrite.is_some() {
                continue;
            }
            let only_addresses = o.action.is_none()
                && o.cname.is_none()
                && o.other.is_empty()
                && !(o.v4.is_empty() && o.v6.is_empty());
            if !o.below && only_addresses && self.glue.contains(&o.name) {
                self.out.warn(
                    &o.file,
                    o.line,
                    format!(
                        "{}: address of the zone's name server (glue), not a trigger; ignored",
                        o.name
                    ),
                );
                continue;
            }
            let action = if o.has_data() {
                Action::Sinkhole
            } else {
                match o.action {
                    Some(a) => a,
                    None => continue, // only unsupported data
                }
            };
            let local = o.has_data().then(|| {
                Arc::new(LocalData {
                    v4: o.v4.clone(),
                    v6: o.v6.clone(),
                    other: o.other.clone(),
                    cname: o.cname.clone(),
                    chain: o.chain.clone(),
                    ttl: o.ttl,
                })
            });
            if let Some(d) = &local {
                let (_, dropped) = d.answers();
                if dropped > 0 {
                    self.out.warn(
                        &o.file,
                        o.line,
                        format!(
                            "{}: {dropped} local data record(s) left out: an answer holds at \
                             most {} records of {} bytes in all",
                            o.trigger(),
                            blocker_common::LOCAL_RECORDS,
                            blocker_common::LOCAL_BYTES
                        ),
                    );
                }
            }
            self.out.rules.push(ParsedRule {
                name: o.name,
                kind: if o.below { Kind::Below } else { Kind::Exact },
                action: Some(action),
                qtypes: QTYPES_ALL,
                local,
                file: o.file,
                line: o.line,
            });
        }
    }
}

/// One entry of a zone file: a line, or lines joined by parentheses or a quoted string.
struct Chunk<'a> {
    text: &'a str,
    /// 1-based line the entry starts on.
    line: usize,
    /// Lines the entry spans.
    lines: usize,
    /// An unclosed `(` or `"` ran to the end of the file.
    open: Option<&'static str>,
}

/// Cuts zone-file text into entries the way the scanner reads it: `;` comments to the end of
/// the line, `\` escapes, `"…"` quotes and `( … )` groups spanning lines.
struct Chunks<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Chunk<'a>;

    fn next(&mut self) -> Option<Chunk<'a>> {
        let b = self.text.as_bytes();
        if self.pos >= b.len() {
            return None;
        }
        let start = self.pos;
        let start_line = self.line;
        let mut parens = 0usize;
        let mut quoted = false;
        let mut i = start;
        let mut end = b.len();
        let mut closed = false;
        while i < b.len() {
            match b[i] {
                b'\\' => {
                    if b.get(i + 1) == Some(&b'\n') {
                        self.line += 1;
                    }
                    i += 2;
                    continue;
                }
                b'"' => quoted = !quoted,
                b';' if !quoted => {
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                    continue;
                }
                b'(' if !quoted => parens += 1,
                b')' if !quoted => parens = parens.saturating_sub(1),
                b'\n' => {
                    self.line += 1;
                    if !quoted && parens == 0 {
                        end = i + 1;
                        closed = true;
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let end = end.min(b.len());
        self.pos = end;
        let ends_in_newline = b[end - 1] == b'\n';
        let open = if !closed {
            if quoted {
                Some("a `\"` that is never closed")
            } else if parens > 0 {
                Some("a `(` that is never closed")
            } else {
                None
            }
        } else {
            None
        };
        let lines = self.line - start_line + usize::from(!ends_in_newline);
        if !ends_in_newline {
            self.line += 1;
        }
        Some(Chunk {
            text: self.text.get(start..end).unwrap_or_default(),
            line: start_line,
            lines: lines.max(1),
            open,
        })
    }
}

/// Makes the scanner's terse messages say what to fix.
fn explain(msg: &str) -> String {
    let m = match msg {
        "expected rtype" => "expected a record type (or a TTL or class) here",
        "trailing tokens" => "unexpected text after the record data",
        "missing origin" => "relative name without an origin ($ORIGIN, or the RPZ origin option)",
        "missing last owner" => {
            "no owner (a line that starts with white space repeats the previous owner)"
        }
        "unexpected end of entry" => "the record ends too early (data missing)",
        "unbalanced parens" => "`)` without `(`",
        other => other,
    };
    m.to_string()
}

/// The line `line` of `chunk`, shortened and quoted, to start a message with.
fn snippet(chunk: &Chunk<'_>, line: usize) -> String {
    chunk
        .text
        .lines()
        .nth(line.saturating_sub(chunk.line))
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let l: String = l.chars().take(80).collect();
            format!("{l:?}: ")
        })
        .unwrap_or_default()
}

/// A record as written, for messages (`CNAME rpz-drop.`, `A 192.0.2.1`).
fn shown<N: ToName>(rec: &Record<N, ZoneRecordData<Bytes, N>>) -> String {
    match rec.data() {
        ZoneRecordData::Cname(c) => match to_name(c.cname()) {
            Ok(Some(t)) => format!("CNAME {t}."),
            _ => "CNAME .".to_string(),
        },
        ZoneRecordData::A(a) => format!("A {}", a.addr()),
        ZoneRecordData::Aaaa(a) => format!("AAAA {}", a.addr()),
        _ => rec.rtype().to_string(),
    }
}

impl Scan<'_> {
    /// Reads the text of one file. `origin` None: there is no origin to start with (the
    /// including file's `$ORIGIN` was refused, `lost` says where), so relative names are
    /// errors.
    fn scan_text(
        &mut self,
        text: &str,
        file: &Arc<PathBuf>,
        origin: Option<&DName<Bytes>>,
        lost: Option<&str>,
        depth: usize,
    ) {
        let mut zf = new_scanner(origin);
        // Why the scanner has no origin, while it has none.
        let mut lost: Option<String> = lost.map(str::to_string);
        // File line where the current scanner started (its error lines count from there).
        let mut zf_line: Option<usize> = None;
        let chunks = Chunks {
            text,
            pos: 0,
            line: 1,
        };
        for chunk in chunks {
            if let Some(what) = chunk.open {
                self.out.error(
                    file,
                    chunk.line,
                    format!("this entry has {what}: the rest of the file was not read"),
                );
                break;
            }
            let (shape, fed) = units::prepare(chunk.text);
            let fed = match fed {
                Ok(fed) => fed,
                Err(bad) => {
                    let line = chunk.line
                        + chunk
                            .text
                            .get(..bad.at)
                            .map_or(0, |t| t.matches('\n').count());
                    let message = format!("{}{}", snippet(&chunk, line), bad.message);
                    zf = self.refused(&zf, &shape, file, chunk.line, line, message, &mut lost);
                    zf_line = None;
                    continue;
                }
            };
            let first = *zf_line.get_or_insert(chunk.line);
            zf.extend_from_slice(fed.as_bytes());
            if !fed.ends_with('\n') {
                zf.extend_from_slice(b"\n");
            }
            loop {
                match next_entry(&mut zf) {
                    Ok(Some(entry)) => {
                        let cur = zf.origin().ok();
                        self.entry(
                            entry,
                            cur.as_ref(),
                            lost.as_deref(),
                            file,
                            chunk.line,
                            depth,
                        );
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let (line, message) = match e {
                            Some(s) => {
                                // "LINE:COL: message", LINE counted from the scanner's first
                                // line (the column is left out: after a multi-line scan it is
                                // off, and TTL units rewritten to seconds move it).
                                let mut parts = s.splitn(3, ':');
                                let rel: usize =
                                    parts.next().and_then(|l| l.parse().ok()).unwrap_or(1);
                                let msg = parts.nth(1).map_or(s.as_str(), str::trim);
                                let line = (first + rel.saturating_sub(1))
                                    .clamp(chunk.line, chunk.line + chunk.lines - 1);
                                let raw = chunk
                                    .text
                                    .lines()
                                    .nth(line.saturating_sub(chunk.line))
                                    .unwrap_or_default();
                                let why = match (msg, &lost) {
                                    ("missing origin", Some(l)) => {
                                        format!("relative name, but there is no origin: {l}")
                                    }
                                    ("bad symbol", _) if !raw.is_ascii() => {
                                        "characters outside ASCII: a zone file writes an \
                                         internationalised name in punycode (xn--…)"
                                            .to_string()
                                    }
                                    ("bad name", _) => "bad name: a label longer than 63 \
                                                        bytes, or a name longer than 255 \
                                                        bytes with the origin"
                                        .to_string(),
                                    _ => explain(msg),
                                };
                                (
                                    line,
                                    format!("{}zone file syntax: {why}", snippet(&chunk, line)),
                                )
                            }
                            None => (
                                chunk.line,
                                "the zone-file scanner failed on this entry".to_string(),
                            ),
                        };
                        zf = self.refused(&zf, &shape, file, chunk.line, line, message, &mut lost);
                        zf_line = None;
                        break;
                    }
                }
            }
            if lost.is_some() && zf.origin().is_ok() {
                lost = None; // a later `$ORIGIN` was read
            }
        }
    }

    /// Reports an entry that was refused (by the scanner, or for a TTL) and returns the
    /// scanner to go on with: a fresh one, since the scanner cannot go on after an error.
    ///
    /// Nothing read after it may move silently: a refused `$ORIGIN` leaves the fresh scanner
    /// without an origin (`lost` says why), so relative names are errors until the next
    /// `$ORIGIN`, not names under the previous one. A refused SOA still gives its owner (read
    /// by the scanner from a stand-in SOA with the same owner) as the apex, if the apex is
    /// to come from it, and as the owner of the lines after it that start with white space;
    /// if even its owner cannot be read, the apex is lost: the records that need it are
    /// errors.
    #[allow(clippy::too_many_arguments)]
    fn refused(
        &mut self,
        zf: &Zonefile,
        shape: &Shape<'_>,
        file: &Arc<PathBuf>,
        entry_line: usize,
        line: usize,
        message: String,
        lost: &mut Option<String>,
    ) -> Zonefile {
        self.out.error(file, line, message);
        let origin = zf.origin().ok();
        if shape.is_origin() {
            *lost = Some(format!(
                "the $ORIGIN at {}:{entry_line} was refused",
                file.display()
            ));
            return new_scanner(None);
        }
        let mut fresh = new_scanner(origin.as_ref());
        if !shape.is_soa() {
            return fresh;
        }
        let mut owner = None;
        // (An owner that ends in `\` would escape the space after it in the stand-in.)
        if let Some(o) = shape.owner.filter(|o| !o.ends_with('\\')) {
            fresh.extend_from_slice(format!("{o} SOA . . 0 0 0 0 0\n").as_bytes());
            match next_entry(&mut fresh) {
                Ok(Some(Entry::Record(rec))) => owner = to_name(rec.owner()).ok(),
                _ => fresh = new_scanner(origin.as_ref()),
            }
        }
        if !self.apex_decided && self.apex.is_none() {
            match owner {
                Some(apex) => {
                    self.apex = apex;
                    self.apex_decided = true;
                }
                None => {
                    self.apex_lost = Some(format!(
                        "the SOA at {}:{entry_line} was refused",
                        file.display()
                    ));
                }
            }
        }
        fresh
    }

    fn entry(
        &mut self,
        entry: Entry,
        origin: Option<&DName<Bytes>>,
        lost: Option<&str>,
        file: &Arc<PathBuf>,
        line: usize,
        depth: usize,
    ) {
        match entry {
            Entry::Include {
                path,
                origin: inc_origin,
            } => {
                let (inc_origin, lost) = match inc_origin {
                    Some(o) => (Some(o), None),
                    None => (origin.cloned(), lost),
                };
                // `$INCLUDE "file"` (BIND accepts a quoted file name): the scanner keeps
                // the closing quote.
                let path = path.as_slice();
                let path = path.strip_prefix(b"\"").unwrap_or(path);
                let path = path.strip_suffix(b"\"").unwrap_or(path);
                self.include(path, inc_origin.as_ref(), lost, file, line, depth);
            }
            Entry::Record(rec) => self.zone_record(&rec, origin, lost, file, line),
        }
    }

    /// One record (read from a file, or handed over by [`parse_records`]); `origin`: the
    /// origin in force.
    fn zone_record<N: ToName>(
        &mut self,
        rec: &Record<N, ZoneRecordData<Bytes, N>>,
        origin: Option<&DName<Bytes>>,
        lost: Option<&str>,
        file: &Arc<PathBuf>,
        line: usize,
    ) {
        let data = rec.data();
        let is_soa = matches!(data, ZoneRecordData::Soa(_));
        let is_ns = matches!(data, ZoneRecordData::Ns(_));
        let owner = match to_name(rec.owner()) {
            Ok(o) => o,
            Err(e) => {
                self.out
                    .error(file, line, format!("{}: {e}", dotted(rec.owner())));
                if is_soa && !self.apex_decided && self.apex.is_none() {
                    self.apex_lost =
                        Some(format!("the SOA at {}:{line} was refused", file.display()));
                }
                return;
            }
        };
        if !self.apex_decided && !self.decide_apex(is_soa, &owner, origin, lost, file, line) {
            return;
        }
        let Some(full) = owner else {
            self.note_glue(data);
            if !is_soa && !is_ns {
                self.out
                    .error(file, line, "a record at the root is not a trigger");
            }
            return;
        };
        if is_soa {
            if let (ZoneRecordData::Soa(soa), None) = (data, &self.out.soa) {
                self.out.soa = soa_wire(&full, rec.ttl().as_secs(), soa);
            }
            return;
        }
        if self.apex.as_ref() == Some(&full) {
            self.note_glue(data);
        }
        let rel = match &self.apex {
            Some(apex) if full == *apex => {
                // (A signed zone's keys and signatures at the apex go without a word.)
                if !is_ns && !is_dnssec(data) {
                    self.out.warn(
                        file,
                        line,
                        format!("{} record at the zone apex {apex} ignored", rec.rtype()),
                    );
                }
                return;
            }
            Some(apex) => match full.strip_suffix(apex) {
                Some(r) => r,
                None => {
                    // (A file written relative to its SOA's name is read again from
                    // there: see `parse`.)
                    self.outside += 1;
                    self.out
                        .error(file, line, format!("{full} is outside the zone {apex}"));
                    return;
                }
            },
            None => full,
        };
        self.record(rec, rel, file, line);
    }

    /// Notes the name server of an apex NS record when it is inside the zone: its addresses
    /// are the zone's glue, not triggers. Relative to the apex; at a root apex (`@ SOA`
    /// without $ORIGIN) as written, as the owners are.
    fn note_glue<N: ToName>(&mut self, data: &ZoneRecordData<Bytes, N>) {
        let ZoneRecordData::Ns(ns) = data else {
            return;
        };
        let Ok(Some(server)) = to_name(ns.nsdname()) else {
            return;
        };
        let inside = match &self.apex {
            Some(apex) => server.strip_suffix(apex),
            None => Some(server),
        };
        self.glue.extend(inside);
    }

    /// Settles the apex at the first record (`owner`: its owner; `origin`: the origin in
    /// force). False when this record cannot be placed because the apex is unknown
    /// (reported); the apex is then settled by a later record.
    fn decide_apex(
        &mut self,
        is_soa: bool,
        owner: &Option<Name>,
        origin: Option<&DName<Bytes>>,
        lost: Option<&str>,
        file: &Arc<PathBuf>,
        line: usize,
    ) -> bool {
        match &self.apex {
            None if is_soa => {
                self.apex = owner.clone();
                if owner.is_none() {
                    // `@ SOA …` without $ORIGIN: the zone's name is nowhere in the file.
                    self.out.warn(
                        file,
                        line,
                        "the SOA is at the root (`@` without $ORIGIN): the zone's name is \
                         unknown and owners are taken as written; if they end in the zone's \
                         name, give it as the RPZ origin (--rpz-origin)"
                            .to_string(),
                    );
                }
            }
            None => {
                let why = match (&self.apex_lost, origin) {
                    (Some(why), _) => why.clone(),
                    (None, Some(o)) => match to_name(o) {
                        Ok(apex) => {
                            self.apex = apex;
                            self.apex_decided = true;
                            return true;
                        }
                        Err(e) => format!("the origin {o} is not a name: {e}"),
                    },
                    (None, None) => lost.unwrap_or("there is no origin").to_string(),
                };
                self.out.error(
                    file,
                    line,
                    format!(
                        "the zone apex is unknown ({why}), so this record cannot be placed; \
                         fix it or give the zone name as the RPZ origin"
                    ),
                );
                return false;
            }
            Some(apex) if is_soa && owner.as_ref() != Some(apex) => self.out.warn(
                file,
                line,
                format!(
                    "the SOA owner {} is not the RPZ origin {apex}; owners are read relative to {apex}",
                    owner.as_ref().map_or(".".to_string(), Name::to_string)
                ),
            ),
            Some(_) => {}
        }
        self.apex_decided = true;
        true
    }

    fn include(
        &mut self,
        path: &[u8],
        origin: Option<&DName<Bytes>>,
        lost: Option<&str>,
        file: &Arc<PathBuf>,
        line: usize,
        depth: usize,
    ) {
        let rel = String::from_utf8_lossy(path);
        let p = file.parent().unwrap_or(Path::new("")).join(rel.as_ref());
        if depth + 1 > MAX_INCLUDE_DEPTH {
            self.out.error(
                file,
                line,
                format!(
                    "$INCLUDE {}: more than {MAX_INCLUDE_DEPTH} levels of includes",
                    p.display()
                ),
            );
            return;
        }
        let canon = p.canonicalize().unwrap_or_else(|_| p.clone());
        if self.stack.contains(&canon) {
            self.out.error(
                file,
                line,
                format!(
                    "$INCLUDE {}: include loop (the file is already being read)",
                    p.display()
                ),
            );
            return;
        }
        let text = match read_text(&p) {
            Ok(t) => t,
            Err(e) => {
                self.out.error(file, line, format!("$INCLUDE: {e}"));
                return;
            }
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        self.stack.push(canon);
        self.scan_text(text, &Arc::from(p), origin, lost, depth + 1);
        self.stack.pop();
    }

    /// An owner that is a URL (`https://host/`, `host:443`, which the scanner takes as
    /// labels): its host, with a warning, as plain lists do; with a path, a query or a
    /// fragment, skipped and counted. None: refused or skipped (reported).
    fn url_owner(&mut self, name: Name, file: &Arc<PathBuf>, line: usize) -> Option<Name> {
        const URL_BYTES: &[u8] = b"/:?#@[";
        if !name
            .labels()
            .any(|l| l.iter().any(|b| URL_BYTES.contains(b)))
        {
            return Some(name);
        }
        let text = name
            .labels()
            .map(String::from_utf8_lossy)
            .collect::<Vec<_>>()
            .join(".");
        let refused = match url_host(&text) {
            Err(why) => why.to_string(),
            Ok(host) if is_address(host) => NameError::Address.to_string(),
            Ok(host) => match normalize_name(host) {
                // As in plain lists: the host's rule would block every page of it.
                Ok(n) if url_has_path(&text) => {
                    self.out.skip_unsupported(
                        "URL with a path",
                        file,
                        line,
                        format!(
                            "{text:?}: a URL with a path: DNS cannot block one page, and \
                             blocking the host {n} would block all of it; skipped (list the \
                             host to block it)"
                        ),
                    );
                    return None;
                }
                Ok(n) => {
                    self.out
                        .warn(file, line, format!("{text:?}: URL reduced to its host {n}"));
                    return Some(n);
                }
                Err(e) => format!("host {host:?} of the URL: {e}"),
            },
        };
        self.out.error(file, line, format!("{text:?}: {refused}"));
        None
    }

    /// A record whose owner, relative to the apex, is `rel`.
    fn record<N: ToName>(
        &mut self,
        rec: &Record<N, ZoneRecordData<Bytes, N>>,
        rel: Name,
        file: &Arc<PathBuf>,
        line: usize,
    ) {
        // Unsupported trigger types sit under their special label, right below the apex.
        let found = if self.apex.is_some() {
            rel.labels().last().and_then(special)
        } else {
            rel.labels().find_map(special)
        };
        if let Some(label) = found {
            self.out.count_unsupported(label, file, line);
            return;
        }
        if rel.labels().skip(1).any(|l| l == b"*") {
            self.out.error(
                file,
                line,
                format!("{rel}: `*` is only allowed as the leftmost label"),
            );
            return;
        }
        let (name, below) = if rel.is_wildcard() {
            match rel.parent() {
                Some(p) => (p, true),
                None => {
                    self.out.error(
                        file,
                        line,
                        "`*` alone (every name in the zone) is not a trigger",
                    );
                    return;
                }
            }
        } else {
            (rel, false)
        };
        let Some(name) = self.url_owner(name, file, line) else {
            return;
        };
        let h = rustc_hash::FxBuildHasher.hash_one((name.canonical(), below));
        let found = match self.index.get(&h) {
            None => None,
            Some(&i) if self.owners[i].name == name && self.owners[i].below == below => Some(i),
            Some(_) => self.exact.get(&(name.canonical().to_vec(), below)).copied(),
        };
        let idx = match found {
            Some(i) => i,
            None => {
                let i = self.owners.len();
                match self.index.entry(h) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        self.exact.insert((name.canonical().to_vec(), below), i);
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(i);
                    }
                }
                self.owners.push(Owner {
                    name,
                    below,
                    file: file.clone(),
                    line,
                    action: None,
                    v4: Vec::new(),
                    v6: Vec::new(),
                    other: Vec::new(),
                    cname: None,
                    chain: Vec::new(),
                    ttl: u32::MAX,
                    rewrite: None,
                });
                i
            }
        };
        let apex = self.apex.as_ref();
        let out = &mut *self.out;
        let o = &mut self.owners[idx];
        // A record with another policy than the first policy record of its owner: the first
        // one wins (as in Unbound: see `server_zones`), with a warning naming both.
        let ignored = |out: &mut ParseOutcome, o: &Owner| {
            out.warn(
                file,
                line,
                format!(
                    "{}: {} ignored: the first policy record of the name wins ({}:{}: {})",
                    o.trigger(),
                    shown(rec),
                    o.file.display(),
                    o.line,
                    o.policy()
                ),
            );
        };
        match rec.data() {
            ZoneRecordData::Cname(c) => {
                let target = match to_name(c.cname()) {
                    Ok(t) => t,
                    Err(e) => {
                        out.error(
                            file,
                            line,
                            format!("{}: CNAME target {}: {e}", o.trigger(), dotted(c.cname())),
                        );
                        return;
                    }
                };
                let action = match &target {
                    None => Some(Action::Nxdomain),
                    Some(t) if t.label_count() == 1 => {
                        match t.labels().next().unwrap_or_default() {
                            b"*" => Some(Action::Nodata),
                            b"rpz-passthru" => Some(Action::Pass),
                            b"rpz-drop" => Some(Action::Drop),
                            b"rpz-tcp-only" => Some(Action::Tc),
                            _ if *t == o.name && !below => Some(Action::Pass),
                            _ => None,
                        }
                    }
                    // The legacy passthru: a CNAME to the trigger name itself; for a
                    // wildcard trigger (`*.x CNAME *.x.`), the rewrite that gives back the
                    // query's own name.
                    Some(t) if *t == o.name && !below => Some(Action::Pass),
                    Some(t)
                        if below
                            && t.labels().next() == Some(&b"*"[..])
                            && t.parent().as_ref() == Some(&o.name) =>
                    {
                        Some(Action::Pass)
                    }
                    Some(_) => None,
                };
                let Some(action) = action else {
                    let ttl = rec.ttl().as_secs();
                    let t = target.map_or(String::new(), |t| t.to_string());
                    if o.rewrite.as_deref() == Some(t.as_str())
                        || o.cname.as_ref().is_some_and(|c| c.to_string() == t)
                    {
                        out.duplicates += 1;
                        return;
                    }
                    if !o.fresh() {
                        ignored(out, o);
                        return;
                    }
                    let first = t.split('.').next().unwrap_or_default();
                    let special = SPECIAL.contains(&first)
                        || ["rpz-passthru", "rpz-drop", "rpz-tcp-only"].contains(&first);
                    // A target with an `rpz-` label is a policy this reader does not know (as
                    // PowerDNS, it is not a block page): skipped below.
                    let unknown_policy = t.split('.').any(|l| l.starts_with("rpz-"));
                    // A CNAME to a plain name: a block page, answered as a CNAME to it.
                    if !special && !unknown_policy && first != "*" {
                        let Ok(Some(page)) = to_name(c.cname()) else {
                            return;
                        };
                        o.cname = Some(page);
                        o.ttl = o.ttl.min(ttl);
                        o.file = file.clone();
                        o.line = line;
                        return;
                    }
                    // `rpz-drop` or `*` without the final dot: read under the origin, a
                    // name inside the zone that is no action, and skipping it would leave
                    // the name unblocked. An invalid record (the load, or the transfer, is
                    // refused; FILE:LINE). The same label in a name outside the zone is a
                    // rewrite like any other (skipped below).
                    let in_zone = apex.is_some_and(|a| t.ends_with(&format!(".{a}")));
                    if in_zone && (special || first == "*") {
                        out.error(
                            file,
                            line,
                            format!(
                                "{}: CNAME to {t}.: did you mean `{first}.`, with the final \
                                 dot? (without it the target is read under the zone's name)",
                                o.trigger()
                            ),
                        );
                        return;
                    }
                    out.skip_unsupported(
                        "cname-rewrite",
                        file,
                        line,
                        format!(
                            "{}: CNAME to {t}. (a rewrite) is not supported; skipped",
                            o.trigger()
                        ),
                    );
                    o.rewrite = Some(t.into());
                    o.file = file.clone();
                    o.line = line;
                    return;
                };
                if o.action == Some(action) {
                    out.duplicates += 1;
                } else if !o.fresh() {
                    ignored(out, o);
                } else {
                    o.action = Some(action);
                    o.file = file.clone();
                    o.line = line;
                }
            }
            d if matches!(d, ZoneRecordData::Ns(_) | ZoneRecordData::Soa(_)) || is_dnssec(d) => {
                // Delegations, the zone's own SOA below the apex and DNSSEC records are not
                // answers a policy gives.
                let t = rec.rtype().to_string();
                if matches!(rec.data(), ZoneRecordData::Ns(_) | ZoneRecordData::Soa(_)) {
                    out.skip_unsupported(
                        &format!("local-data {t}"),
                        file,
                        line,
                        format!(
                            "{}: local data of type {t} is not supported; skipped",
                            o.trigger()
                        ),
                    );
                } else {
                    // A signed zone has them at every owner: counted, without a warning
                    // each (millions of them for a signed list of millions).
                    out.count_unsupported("DNSSEC records of a signed zone", file, line);
                }
            }
            data => {
                if o.action.is_some() || o.rewrite.is_some() || o.cname.is_some() {
                    ignored(out, o);
                    return;
                }
                if o.fresh() {
                    o.file = file.clone();
                    o.line = line;
                }
                o.ttl = o.ttl.min(rec.ttl().as_secs());
                match data {
                    ZoneRecordData::A(a) if o.v4.contains(&a.addr()) => out.duplicates += 1,
                    ZoneRecordData::A(a) => o.v4.push(a.addr()),
                    ZoneRecordData::Aaaa(a) if o.v6.contains(&a.addr()) => out.duplicates += 1,
                    ZoneRecordData::Aaaa(a) => o.v6.push(a.addr()),
                    other => {
                        use domain::base::rdata::ComposeRecordData;
                        let mut rdata = Vec::new();
                        if other.compose_rdata(&mut rdata).is_err() {
                            out.error(
                                file,
                                line,
                                format!("{}: {} cannot be encoded", o.trigger(), shown(rec)),
                            );
                            return;
                        }
                        let t = rec.rtype().to_int();
                        if o.other.iter().any(|(ty, d)| *ty == t && *d == rdata) {
                            out.duplicates += 1;
                        } else {
                            o.other.push((t, rdata));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod server_zones;
#[cfg(test)]
mod tests;
