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
//! A panic inside the scanner (it has assertions) is caught and reported the same way.
//!
//! # Semantics
//! - The apex (stripped from owners) is [`Options::rpz_origin`] if given, else the owner of
//!   the SOA when the first record is the SOA, else the `$ORIGIN` in force at the first
//!   record; without any, owners are taken as they are. SOA and NS records at the apex are
//!   skipped (other types there with a warning); owners outside the zone are errors.
//! - Owner `name` is a [`Kind::Exact`] rule, `*.name` a [`Kind::Below`] rule.
//! - `CNAME .` nxdomain, `CNAME *.` nodata, `CNAME rpz-passthru.` (or the legacy CNAME to the
//!   trigger name itself) pass, `CNAME rpz-drop.` drop, `CNAME rpz-tcp-only.` tc; A/AAAA local
//!   data sinkhole (one rule per owner, first address of each family kept, a warning when a
//!   family has more than one); any other CNAME (a rewrite) and other local data types are
//!   counted as `cname-rewrite` / `local-data TYPE` in `unsupported`, with a warning.
//! - Owners under `rpz-ip`, `rpz-nsdname`, `rpz-nsip`, `rpz-client-ip` (the last label before
//!   the apex) are counted in `unsupported` under that label, without a warning each.
//! - The same record twice is a duplicate; two different policies at one owner (CNAME `.` and
//!   an A record, two different CNAMEs) are an error at the second, naming the first.
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
    base::{iana::Class, Name as DName, ToName},
    rdata::ZoneRecordData,
    zonefile::inplace::{Entry, Zonefile},
};
use rustc_hash::FxHashMap as HashMap;

use crate::{name::Name, read_text, Options, ParseOutcome, ParsedRule};

/// Labels that start the unsupported trigger types (IP, NSDNAME, NSIP, client IP).
const SPECIAL: &[&str] = &["rpz-ip", "rpz-nsdname", "rpz-nsip", "rpz-client-ip"];
/// `$INCLUDE` nesting limit.
const MAX_INCLUDE_DEPTH: usize = 16;

/// What one trigger (owner name, wildcard or not) says, gathered across its records.
struct Owner {
    name: Name,
    below: bool,
    file: Arc<Path>,
    /// Line of the record that set the policy (CNAME) or of the first local data.
    line: usize,
    action: Option<Action>,
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    /// Refused (a conflict, or a rewrite): no rule comes out of it.
    dead: bool,
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
        !self.v4.is_empty() || !self.v6.is_empty()
    }

    /// `line N` or `FILE:N` for a message about a record in `file`.
    fn at(&self, file: &Path) -> String {
        if *self.file == *file {
            format!("line {}", self.line)
        } else {
            format!("{}:{}", self.file.display(), self.line)
        }
    }
}

struct Scan<'a> {
    out: &'a mut ParseOutcome,
    apex: Option<Name>,
    apex_decided: bool,
    owners: Vec<Owner>,
    /// Hash of (name, wildcard) → index in `owners`; `exact` holds the (about never) rest.
    index: HashMap<u64, usize>,
    exact: HashMap<(Vec<u8>, bool), usize>,
    /// The files being read ($INCLUDE chain), canonicalized, for the loop guard.
    stack: Vec<PathBuf>,
}

/// Our name of a scanned name (None for the root).
fn to_name(n: &impl ToName) -> Option<Name> {
    Name::from_labels(
        n.iter_labels()
            .filter(|l| !l.is_root())
            .map(|l| l.as_slice()),
    )
    .ok()
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

fn new_scanner(origin: &DName<Bytes>) -> Zonefile {
    let mut zf = Zonefile::new();
    zf.set_origin(origin.clone());
    // RPZ files often give no class at all.
    zf.set_default_class(Class::IN);
    zf
}

pub(crate) fn parse(text: &str, file: &Arc<Path>, opts: &Options, out: &mut ParseOutcome) {
    let mut scan = Scan {
        out,
        apex: None,
        apex_decided: false,
        owners: Vec::with_capacity(text.len() / 40),
        index: HashMap::with_capacity_and_hasher(text.len() / 40, Default::default()),
        exact: HashMap::default(),
        stack: vec![file.canonicalize().unwrap_or_else(|_| file.to_path_buf())],
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
    scan.scan_text(text, file, &origin, 0);
    for o in std::mem::take(&mut scan.owners) {
        if o.dead {
            continue;
        }
        let action = if o.has_data() {
            if o.v4.len() > 1 || o.v6.len() > 1 {
                scan.out.warn(
                    &o.file,
                    o.line,
                    format!(
                        "{}: {} A and {} AAAA records; only the first address of each family is kept",
                        o.trigger(),
                        o.v4.len(),
                        o.v6.len()
                    ),
                );
            }
            Action::Sinkhole
        } else {
            match o.action {
                Some(a) => a,
                None => continue, // only unsupported data
            }
        };
        scan.out.rules.push(ParsedRule {
            name: o.name,
            kind: if o.below { Kind::Below } else { Kind::Exact },
            action: Some(action),
            qtypes: QTYPES_ALL,
            sinkhole_v4: o.v4.first().copied(),
            sinkhole_v6: o.v6.first().copied(),
            file: o.file,
            line: o.line,
        });
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

impl Scan<'_> {
    fn scan_text(&mut self, text: &str, file: &Arc<Path>, origin: &DName<Bytes>, depth: usize) {
        let mut zf = new_scanner(origin);
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
            let first = *zf_line.get_or_insert(chunk.line);
            zf.extend_from_slice(chunk.text.as_bytes());
            if !chunk.text.ends_with('\n') {
                zf.extend_from_slice(b"\n");
            }
            loop {
                match catch_unwind(AssertUnwindSafe(|| zf.next_entry())) {
                    Ok(Ok(Some(entry))) => {
                        let cur = zf.origin().ok();
                        self.entry(
                            entry,
                            cur.as_ref().unwrap_or(origin),
                            file,
                            chunk.line,
                            depth,
                        );
                    }
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => {
                        // "LINE:COL: message", LINE counted from the scanner's first line
                        // (the column is left out: after a multi-line scan it is off).
                        let s = e.to_string();
                        let mut parts = s.splitn(3, ':');
                        let rel: usize = parts.next().and_then(|l| l.parse().ok()).unwrap_or(1);
                        let msg = parts.nth(1).map_or(s.as_str(), str::trim);
                        let line = (first + rel.saturating_sub(1))
                            .clamp(chunk.line, chunk.line + chunk.lines - 1);
                        let snippet = chunk
                            .text
                            .lines()
                            .nth(line - chunk.line)
                            .map(|l| l.trim())
                            .filter(|l| !l.is_empty())
                            .map(|l| {
                                let l: String = l.chars().take(80).collect();
                                format!("{l:?}: ")
                            })
                            .unwrap_or_default();
                        self.out.error(
                            file,
                            line,
                            format!("{snippet}zone file syntax: {}", explain(msg)),
                        );
                        let o = zf.origin().unwrap_or_else(|_| origin.clone());
                        zf = new_scanner(&o);
                        zf_line = None;
                        break;
                    }
                    Err(_) => {
                        self.out.error(
                            file,
                            chunk.line,
                            "the zone-file scanner failed on this entry",
                        );
                        let o = zf.origin().unwrap_or_else(|_| origin.clone());
                        zf = new_scanner(&o);
                        zf_line = None;
                        break;
                    }
                }
            }
        }
    }

    fn entry(
        &mut self,
        entry: Entry,
        origin: &DName<Bytes>,
        file: &Arc<Path>,
        line: usize,
        depth: usize,
    ) {
        match entry {
            Entry::Include {
                path,
                origin: inc_origin,
            } => {
                let inc_origin = inc_origin.unwrap_or_else(|| origin.clone());
                self.include(path.as_slice(), &inc_origin, file, line, depth);
            }
            Entry::Record(rec) => {
                let data = rec.data();
                let is_soa = matches!(data, ZoneRecordData::Soa(_));
                let is_ns = matches!(data, ZoneRecordData::Ns(_));
                let owner = to_name(rec.owner());
                if !self.apex_decided {
                    self.apex_decided = true;
                    match &self.apex {
                        None if is_soa => self.apex = owner.clone(),
                        None => self.apex = to_name(origin),
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
                }
                let Some(full) = owner else {
                    if !is_soa && !is_ns {
                        self.out
                            .error(file, line, "a record at the root is not a trigger");
                    }
                    return;
                };
                if is_soa {
                    return;
                }
                let rel = match &self.apex {
                    Some(apex) if full == *apex => {
                        if !is_ns {
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
                            self.out.error(
                                file,
                                line,
                                format!("{full} is outside the zone {apex}"),
                            );
                            return;
                        }
                    },
                    None => full,
                };
                self.record(&rec, rel, file, line);
            }
        }
    }

    fn include(
        &mut self,
        path: &[u8],
        origin: &DName<Bytes>,
        file: &Arc<Path>,
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
        self.scan_text(text, &Arc::from(p), origin, depth + 1);
        self.stack.pop();
    }

    /// A record whose owner, relative to the apex, is `rel`.
    fn record(
        &mut self,
        rec: &domain::zonefile::inplace::ScannedRecord,
        rel: Name,
        file: &Arc<Path>,
        line: usize,
    ) {
        // Unsupported trigger types sit under their special label, right below the apex.
        let found = if self.apex.is_some() {
            rel.labels().last().and_then(special)
        } else {
            rel.labels().find_map(special)
        };
        if let Some(label) = found {
            match self.out.unsupported.get_mut(label) {
                Some(n) => *n += 1,
                None => {
                    self.out.unsupported.insert(label.to_string(), 1);
                }
            }
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
                    dead: false,
                });
                i
            }
        };
        let out = &mut *self.out;
        let o = &mut self.owners[idx];
        if o.dead {
            return;
        }
        let fresh = o.action.is_none() && !o.has_data();
        match rec.data() {
            ZoneRecordData::Cname(c) => {
                let target = to_name(c.cname());
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
                    // The legacy passthru: a CNAME to the trigger name itself.
                    Some(t) if *t == o.name && !below => Some(Action::Pass),
                    Some(_) => None,
                };
                let Some(action) = action else {
                    let t = target.map_or(".".to_string(), |t| t.to_string());
                    let first = t.split('.').next().unwrap_or_default();
                    let hint = if SPECIAL.contains(&first)
                        || ["rpz-passthru", "rpz-drop", "rpz-tcp-only"].contains(&first)
                    {
                        format!(" (did you mean `{first}.`, with the final dot?)")
                    } else {
                        String::new()
                    };
                    if !fresh {
                        out.error(
                            file,
                            line,
                            format!(
                                "{}: CNAME {t}. conflicts with the policy at {}",
                                o.trigger(),
                                o.at(file)
                            ),
                        );
                    } else {
                        out.skip_unsupported(
                            "cname-rewrite",
                            file,
                            line,
                            format!(
                                "{}: CNAME to {t}. (a rewrite) is not supported; skipped{hint}",
                                o.trigger()
                            ),
                        );
                    }
                    o.dead = true;
                    return;
                };
                if o.has_data() {
                    out.error(
                        file,
                        line,
                        format!(
                            "{}: CNAME policy ({}) conflicts with the local data at {}",
                            o.trigger(),
                            action.as_str(),
                            o.at(file)
                        ),
                    );
                    o.dead = true;
                } else if let Some(prev) = o.action {
                    if prev == action {
                        out.duplicates += 1;
                    } else {
                        out.error(
                            file,
                            line,
                            format!(
                                "{}: CNAME policy {} conflicts with {} at {}",
                                o.trigger(),
                                action.as_str(),
                                prev.as_str(),
                                o.at(file)
                            ),
                        );
                        o.dead = true;
                    }
                } else {
                    o.action = Some(action);
                    o.file = file.clone();
                    o.line = line;
                }
            }
            ZoneRecordData::A(_) | ZoneRecordData::Aaaa(_) => {
                if let Some(prev) = o.action {
                    out.error(
                        file,
                        line,
                        format!(
                            "{}: local data conflicts with the CNAME policy ({}) at {}",
                            o.trigger(),
                            prev.as_str(),
                            o.at(file)
                        ),
                    );
                    o.dead = true;
                    return;
                }
                if fresh {
                    o.file = file.clone();
                    o.line = line;
                }
                match rec.data() {
                    ZoneRecordData::A(a) if o.v4.contains(&a.addr()) => out.duplicates += 1,
                    ZoneRecordData::A(a) => o.v4.push(a.addr()),
                    ZoneRecordData::Aaaa(a) if o.v6.contains(&a.addr()) => out.duplicates += 1,
                    ZoneRecordData::Aaaa(a) => o.v6.push(a.addr()),
                    _ => {}
                }
            }
            _ => {
                let t = rec.rtype().to_string();
                out.skip_unsupported(
                    &format!("local-data {t}"),
                    file,
                    line,
                    format!(
                        "{}: local data of type {t} is not supported; skipped",
                        o.trigger()
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
