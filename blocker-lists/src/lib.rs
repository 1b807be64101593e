//! Court-ordered block lists as operators receive them — plain lists, hosts files, RPZ zone
//! files — turned into normalized rules, with every invalid entry reported as
//! `FILE:LINE: reason`. Pure library: no kernel, no I/O besides reading the files.
//!
//! # API
//! - [`parse_file`] reads one file (format given or [detected](detect_format)); only an
//!   unreadable or non-UTF-8 file is an `Err` ([`ListError`]). [`parse_str`] parses text
//!   already in memory (tests, stdin). [`parse_rpz_records`] reads the records of an RPZ
//!   zone handed over as records (a zone transfer) with the same RPZ semantics.
//! - Parsing never stops half-way: a [`ParseOutcome`] has every valid rule, every invalid
//!   entry ([`ParseOutcome::errors`]), every entry changed to fit or worth a look
//!   ([`ParseOutcome::warnings`]), and counts of what blocker does not implement
//!   ([`ParseOutcome::unsupported`]) and of repeated entries ([`ParseOutcome::duplicates`]).
//!   The caller decides (blocker refuses the whole load unless told `--skip-invalid`).
//! - [`Name`] is the canonical wire form fed to `blocker_common::key::key_of_canonical`;
//!   [`normalize_name`] turns a host name as typed (IDN, upper case, trailing dot) into one.
//!
//! # Semantics (shared with `blocker explain`)
//! - Plain and hosts lists: a bare name means [`Options::bare_kind`] (by default
//!   [`Kind::Subtree`]: the name and everything below it, as court orders mean it);
//!   `*.example.com` means only names strictly below example.com ([`Kind::Below`], as in RPZ);
//!   adblock `||example.com^` is a subtree rule and `@@||example.com^` an allow rule
//!   ([`Action::Pass`]); a leading dot (`.example.com`, squid style) is a subtree rule.
//!   Their rules carry no action ([`ParsedRule::action`] None: the order's default action),
//!   except allow rules.
//! - RPZ: an owner `name` is that name only ([`Kind::Exact`]), `*.name` the names strictly
//!   below it ([`Kind::Below`]); the action comes from the record (`CNAME .` nxdomain,
//!   `CNAME *.` nodata, `rpz-passthru.` pass, `rpz-drop.` drop, `rpz-tcp-only.` tc, local
//!   A/AAAA data sinkhole). Owners under `rpz-ip`, `rpz-nsdname`, `rpz-nsip` and
//!   `rpz-client-ip`, CNAME rewrites and other local data are counted in `unsupported`. The
//!   zone apex (the SOA owner, the `$ORIGIN`, or [`Options::rpz_origin`]) is stripped from
//!   owners; `$INCLUDE` is read relative to the including file. TTLs may carry units (`1h`,
//!   `3W`, `1h30m`) as in BIND. At one owner the first policy record wins (a later one with
//!   another action is dropped with a warning naming both lines), as DNS servers do. The
//!   source of the `rpz` module has the details and why NLnet Labs' `domain` scanner reads
//!   the files.
//! - Duplicates, in every format: the same (name, kind) again with the same action is
//!   counted in [`ParseOutcome::duplicates`] and dropped (the first is kept); in plain and
//!   hosts lists, with another action it is an error naming both lines.
//! - Names with an empty label (`a..b`) are errors in every format.
//!
//! # Choices the brief left open
//! - IP addresses alone on a plain-list line are skipped and counted ("IP address"):
//!   regulators' lists (AGCOM's Piracy Shield tickets) carry addresses beside names, to be
//!   blocked in the network, and the names must still load; the summary tells the operator.
//!   An address as a hosts-file *name* stays an error.
//! - Hosts lines block only with the unspecified or a loopback address; any other address is
//!   a redirection (SafeSearch lists send www.google.com to forcesafesearch), skipped and
//!   counted, never turned into a block of the name.
//! - A URL naming only its host (`https://host/`, `host:443`) is reduced to it with a
//!   warning; one with a path, query or fragment is skipped and counted: DNS cannot block one
//!   page, and blocking a shared host (docs.google.com) would block all of it. `user@` is only
//!   taken out of a URL with a scheme (`user@example.com` alone is an error: an e-mail
//!   address, not a host).
//! - AdGuard patterns no name rule expresses (`*` inside a name, `||name` without `^`,
//!   unanchored `name^`) are skipped and counted, as regular expressions are.
//! - Adblock modifiers: `$important` is accepted and `$dnstype=A|AAAA` restricts the rule's
//!   query types (as in AdGuard's DNS syntax); a rule with any other modifier
//!   (`$third-party`, `$client=…`, `$dnsrewrite=…`, `$badfilter`, …) means something blocker
//!   cannot do: it is skipped with a warning and counted in `unsupported` as
//!   `adblock $NAME`. Cosmetic rules (`##`, `#@#`, …) are counted as `adblock cosmetic`.
//! - Hosts files: localhost-style names are skipped silently; a first field that is not an
//!   address (`0` and `%zone` suffixes are accepted) is an error.
//! - [`ParsedRule::file`] is an `Arc<PathBuf>` (one allocation per file, not per rule; a thin
//!   pointer, so a parsed rule takes 64 bytes and ten million 640 MB), and the
//!   RPZ rule's local data ([`ParsedRule::local`]) holds several addresses per family and a
//!   block page CNAME, since an owner often has both A and AAAA records.
//! - Diagnostics about a file as a whole (an `rpz_origin` that is not a name) have line 0.

#![warn(missing_docs)]

mod name;
mod plain;
mod rpz;

use std::{
    collections::BTreeMap,
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    sync::Arc,
};

use blocker_common::{Action, Kind};
use rustc_hash::FxHashMap as HashMap;

pub use name::{normalize_name, Name, NameError};
pub use rpz::is_dnssec;

/// A list format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// One name per line (also adblock `||name^` lines, URLs naming a host, and hosts-style
    /// lines).
    Plain,
    /// `0.0.0.0 name …` lines.
    Hosts,
    /// An RPZ zone file.
    Rpz,
}

impl Format {
    /// `plain`, `hosts` or `rpz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Hosts => "hosts",
            Format::Rpz => "rpz",
        }
    }
}

/// Parsing options.
#[derive(Clone, Debug)]
pub struct Options {
    /// What a bare name in a plain or hosts list matches (court orders mean the domain and its
    /// subdomains: [`Kind::Subtree`], the default).
    pub bare_kind: Kind,
    /// What `*.name` in a plain or hosts list matches: [`Kind::Below`] (the names under name,
    /// as in RPZ; the default) or [`Kind::Subtree`] (name too, as lists written for
    /// resolvers that read the star that way mean it).
    pub star_kind: Kind,
    /// The RPZ zone's name (e.g. `rpz.isp.example`): the initial origin of the file, and the
    /// apex stripped from owners, whatever the SOA says. None: the SOA owner, else the
    /// `$ORIGIN` in force at the first record, else owners are taken as they are.
    pub rpz_origin: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bare_kind: Kind::Subtree,
            star_kind: Kind::Below,
            rpz_origin: None,
        }
    }
}

/// RPZ local data: what a rule answers instead of an error — records of any type (several
/// per type; a type without any is NODATA) and/or a CNAME to a block page (followed through
/// the CNAMEs the zone gives, the records then being those of the chain's last name) — and
/// the TTL the zone gives them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LocalData {
    /// A records' addresses.
    pub v4: Vec<Ipv4Addr>,
    /// AAAA records' addresses.
    pub v6: Vec<Ipv6Addr>,
    /// Records of other types: type and RDATA in wire form (names uncompressed), in zone
    /// order.
    pub other: Vec<(u16, Vec<u8>)>,
    /// A block page: the answer is a CNAME to it.
    pub cname: Option<Name>,
    /// CNAMEs the zone gives from the block page on (`page CNAME chain[0]`, …): the answer
    /// carries them after the first, and `v4`/`v6`/`other` are the last name's records.
    pub chain: Vec<Name>,
    /// The records' TTL in the zone (capped when answered, see `blocker config`).
    pub ttl: u32,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A name in wire form, uncompressed, root byte included.
pub(crate) fn wire_name(n: &Name) -> Vec<u8> {
    let mut v = n.canonical().to_vec();
    v.push(0);
    v
}

impl LocalData {
    /// The records of other types than A and AAAA in RFC 3597's generic presentation
    /// (`TYPE16 \# 3 026869`), which every zone file reader takes for any type.
    pub fn generic_records(&self) -> impl Iterator<Item = String> + '_ {
        self.other
            .iter()
            .map(|(t, d)| format!("TYPE{t} \\# {} {}", d.len(), hex(d)))
    }

    /// The query types the data answers with records of their own.
    fn types(&self) -> Vec<u16> {
        let mut t = Vec::new();
        if !self.v4.is_empty() {
            t.push(1);
        }
        if !self.v6.is_empty() {
            t.push(28);
        }
        for (ty, _) in &self.other {
            if !t.contains(ty) {
                t.push(*ty);
            }
        }
        t
    }

    /// The records of type `ty` at the chain's last name (or the trigger).
    fn records(&self, ty: u16) -> Vec<Vec<u8>> {
        match ty {
            1 => self.v4.iter().map(|a| a.octets().to_vec()).collect(),
            28 => self.v6.iter().map(|a| a.octets().to_vec()).collect(),
            _ => self
                .other
                .iter()
                .filter(|(t, _)| *t == ty)
                .map(|(_, d)| d.clone())
                .collect(),
        }
    }

    /// The data plane's form: the answer to each query type (0: every type without an
    /// entry of its own; none then means NODATA), see [`blocker_common::LocalAnswer`], and
    /// the number of records left out because an answer holds at most
    /// [`blocker_common::LOCAL_RECORDS`] records of [`blocker_common::LOCAL_BYTES`] bytes.
    pub fn answers(&self) -> (Vec<(u16, blocker_common::LocalAnswer)>, usize) {
        use blocker_common::LocalAnswer;
        let mut out = Vec::new();
        let empty = LocalAnswer {
            ttl: self.ttl,
            ..Default::default()
        };
        // The CNAME chain, from the question name to the block page and on, as far as it
        // fits: the owner of what follows it, or None when it was cut (the records of the
        // chain's last name would then be owned by the wrong name: left out).
        let names: Vec<&Name> = self.cname.iter().chain(&self.chain).collect();
        let chain = |a: &mut LocalAnswer| -> (Option<u16>, usize) {
            let mut owner = 0u16;
            for (i, n) in names.iter().enumerate() {
                match a.push(owner, 5, &wire_name(n)) {
                    Some(at) => owner = at,
                    None => return (None, names.len() - i),
                }
            }
            (Some(owner), 0)
        };
        // Records left out, counted once per record of the data (the most any type lost).
        let mut dropped = 0;
        for ty in self.types() {
            let mut a = empty;
            let records = self.records(ty);
            let (owner, cut) = chain(&mut a);
            let mut lost = cut;
            match owner {
                Some(owner) => {
                    for r in &records {
                        if a.push(owner, ty, r).is_none() {
                            lost += 1;
                        }
                    }
                }
                None => lost += records.len(),
            }
            dropped = dropped.max(lost);
            // Type 0 is the default entry's key: a record of that (reserved) type is not
            // an answer of its own.
            if ty != 0 {
                out.push((ty, a));
            }
        }
        if let Some(c) = &self.cname {
            let mut a = empty;
            let (_, cut) = chain(&mut a);
            dropped = dropped.max(cut);
            out.push((0, a));
            // A query for the CNAME itself: that record alone.
            let mut a = empty;
            if a.push(0, 5, &wire_name(c)).is_some() {
                out.push((5, a));
            }
        }
        (out, dropped)
    }
}

impl fmt::Display for LocalData {
    /// `ttl=60 a=192.0.2.1,192.0.2.2 aaaa=2001:db8::1 rr=16:026869,15:… cname=block.example.
    /// chain=b2.example. chain=b3.example.` (the fields present; `rr` is TYPE:RDATA in hex,
    /// `chain` once per name), the form rules files keep.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ttl={}", self.ttl)?;
        if !self.v4.is_empty() {
            let v: Vec<String> = self.v4.iter().map(ToString::to_string).collect();
            write!(f, " a={}", v.join(","))?;
        }
        if !self.v6.is_empty() {
            let v: Vec<String> = self.v6.iter().map(ToString::to_string).collect();
            write!(f, " aaaa={}", v.join(","))?;
        }
        if !self.other.is_empty() {
            let v: Vec<String> = self
                .other
                .iter()
                .map(|(t, d)| format!("{t}:{}", hex(d)))
                .collect();
            write!(f, " rr={}", v.join(","))?;
        }
        if let Some(c) = &self.cname {
            write!(f, " cname={c}.")?;
        }
        // One field per name: a name may hold a comma (white space is escaped).
        for n in &self.chain {
            write!(f, " chain={n}.")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for LocalData {
    type Err = String;

    fn from_str(s: &str) -> Result<LocalData, String> {
        let mut d = LocalData::default();
        for field in s.split_whitespace() {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| format!("local data field {field:?}"))?;
            match k {
                "ttl" => d.ttl = v.parse().map_err(|e| format!("ttl {v:?}: {e}"))?,
                "a" => {
                    for a in v.split(',') {
                        d.v4.push(a.parse().map_err(|e| format!("a {a:?}: {e}"))?);
                    }
                }
                "aaaa" => {
                    for a in v.split(',') {
                        d.v6.push(a.parse().map_err(|e| format!("aaaa {a:?}: {e}"))?);
                    }
                }
                "rr" => {
                    for r in v.split(',') {
                        let bad = || format!("rr {r:?}: expected TYPE:HEX");
                        let (t, h) = r.split_once(':').ok_or_else(bad)?;
                        let t: u16 = t.parse().map_err(|_| bad())?;
                        d.other.push((t, unhex(h).ok_or_else(bad)?));
                    }
                }
                "cname" => {
                    d.cname =
                        Some(Name::from_presentation(v).map_err(|e| format!("cname {v:?}: {e}"))?)
                }
                "chain" => d
                    .chain
                    .push(Name::from_presentation(v).map_err(|e| format!("chain {v:?}: {e}"))?),
                _ => return Err(format!("local data field {k:?}")),
            }
        }
        Ok(d)
    }
}

/// One rule read from a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRule {
    /// The trigger name (RPZ: with the zone apex stripped).
    pub name: Name,
    /// What the rule matches, relative to `name`.
    pub kind: Kind,
    /// None: the order's default action (bare list entries); Some for allow rules and RPZ.
    pub action: Option<Action>,
    /// Set of `blocker_common::qtype_bit`s the rule applies to (`QTYPES_ALL` unless an
    /// adblock `$dnstype` says otherwise).
    pub qtypes: u16,
    /// RPZ local data (the action is then `Sinkhole`): the addresses and block page the
    /// answer carries.
    pub local: Option<Arc<LocalData>>,
    /// The file the rule came from (an `$INCLUDE`d file for RPZ rules read from one).
    pub file: Arc<PathBuf>,
    /// 1-based line of the entry (its first line, for an entry over several lines).
    pub line: usize,
}

/// A problem with one entry: `FILE:LINE: message` when displayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the entry is in.
    pub file: PathBuf,
    /// 1-based line (0: the file as a whole).
    pub line: usize,
    /// What is wrong, naming the entry.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Everything read from one file.
#[derive(Debug, Default)]
pub struct ParseOutcome {
    /// Valid rules, in file order, without duplicates.
    pub rules: Vec<ParsedRule>,
    /// Invalid entries (and conflicting duplicates).
    pub errors: Vec<Diagnostic>,
    /// Entries changed to fit (a URL reduced to its host) or skipped as unsupported.
    pub warnings: Vec<Diagnostic>,
    /// Entries skipped because blocker does not implement them, by kind (e.g. `rpz-ip`,
    /// `cname-rewrite`, `local-data TXT`, `adblock $third-party`).
    pub unsupported: BTreeMap<String, usize>,
    /// Entries that repeated an earlier (name, kind) with the same action, dropped.
    pub duplicates: usize,
    /// Where the first entries of each [`unsupported`](Self::unsupported) kind are (at most
    /// [`FIRST_PLACES`] a kind, in file order), for summaries of what was skipped.
    pub unsupported_at: BTreeMap<String, Vec<Place>>,
    /// RPZ: the policy zone's SOA record, in wire form (owner, type, class, TTL, rdata, names
    /// uncompressed), its TTL the smaller of the record's and the SOA MINIMUM (RFC 2308, as
    /// BIND's add-soa sends it). None for other formats or a zone without one.
    pub soa: Option<Vec<u8>>,
    /// Plain and hosts lists: entries written `*.name` (read as [`Options::star_kind`] says).
    pub stars: usize,
}

/// How many places of skipped entries [`ParseOutcome::unsupported_at`] keeps a kind.
pub const FIRST_PLACES: usize = 3;

/// A line of a list file: `FILE:LINE` when displayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

impl ParseOutcome {
    pub(crate) fn error(&mut self, file: &Path, line: usize, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    pub(crate) fn warn(&mut self, file: &Path, line: usize, message: impl Into<String>) {
        self.warnings.push(Diagnostic {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    /// Counts one skipped entry of an unsupported kind and warns about it.
    pub(crate) fn skip_unsupported(
        &mut self,
        what: &str,
        file: &Path,
        line: usize,
        message: impl Into<String>,
    ) {
        self.count_unsupported(what, file, line);
        self.warn(file, line, message);
    }

    /// Counts one skipped entry of an unsupported kind (keeping the first places).
    pub(crate) fn count_unsupported(&mut self, what: &str, file: &Path, line: usize) {
        let place = || Place {
            file: file.to_path_buf(),
            line,
        };
        match self.unsupported.get_mut(what) {
            Some(n) => {
                *n += 1;
                if let Some(at) = self.unsupported_at.get_mut(what) {
                    if at.len() < FIRST_PLACES {
                        at.push(place());
                    }
                }
            }
            None => {
                self.unsupported.insert(what.to_string(), 1);
                self.unsupported_at.insert(what.to_string(), vec![place()]);
            }
        }
    }

    /// Appends what was read from the next part of the same file.
    fn append(&mut self, next: ParseOutcome) {
        self.rules.extend(next.rules);
        self.errors.extend(next.errors);
        self.warnings.extend(next.warnings);
        for (k, v) in next.unsupported {
            *self.unsupported.entry(k).or_default() += v;
        }
        for (k, places) in next.unsupported_at {
            let at = self.unsupported_at.entry(k).or_default();
            let room = FIRST_PLACES.saturating_sub(at.len());
            at.extend(places.into_iter().take(room));
        }
        self.duplicates += next.duplicates;
        self.stars += next.stars;
    }

    /// Keeps the first of repeated (name, kind) entries; a repeat with another action is an
    /// error naming both lines.
    fn dedup(&mut self) {
        self.duplicates += dedup(&mut self.rules, &mut self.errors);
    }
}

/// Keeps the first of repeated (name, kind) entries of `rules`, in place, and returns how
/// many repeats it dropped: exact ones, and ones that differ only in their query types,
/// which the first then takes too (`||a^$dnstype=A` and `||a^$dnstype=AAAA` block both);
/// a repeat with another action or local data is dropped with an error in `errors` naming
/// both places (`line N` within a file,
/// `FILE:N` across files). What one file's parse does, and what a load of several files
/// does across them: a block list and an allow list that disagree about a name are a
/// conflict, not a silent choice by file order.
pub fn dedup(rules: &mut Vec<ParsedRule>, errors: &mut Vec<Diagnostic>) -> usize {
    use std::hash::BuildHasher;
    // A 64-bit hash of (name, kind) → index of its first rule: 16 bytes a slot, so a
    // million rules stay cheap. Equal hashes are confirmed by comparing the rules; two
    // different (name, kind) with the same hash (about 1 in 10^7 for 10^6 rules) go to
    // the exact map.
    let hasher = rustc_hash::FxBuildHasher;
    let n = rules.len();
    let mut seen: HashMap<u64, usize> = HashMap::with_capacity_and_hasher(n, hasher);
    let mut exact: HashMap<(&[u8], Kind), usize> = HashMap::default();
    let mut drop = vec![false; n];
    let mut any = false;
    let mut duplicates = 0;
    // (first, query types it takes from a repeat)
    let mut merged: Vec<(usize, u16)> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let h = hasher.hash_one((r.name.canonical(), r.kind as u8));
        let first = match seen.get(&h) {
            None => {
                seen.insert(h, i);
                continue;
            }
            Some(&j) if rules[j].name == r.name && rules[j].kind == r.kind => j,
            Some(_) => match exact.get(&(r.name.canonical(), r.kind)) {
                Some(&j) => j,
                None => {
                    exact.insert((r.name.canonical(), r.kind), i);
                    continue;
                }
            },
        };
        drop[i] = true;
        any = true;
        let at = first;
        let first = &rules[first];
        if first.action == r.action && first.local == r.local {
            if first.qtypes != r.qtypes {
                merged.push((at, r.qtypes));
            }
            duplicates += 1;
            continue;
        }
        let at = if first.file == r.file {
            format!("line {}", first.line)
        } else {
            format!("{}:{}", first.file.display(), first.line)
        };
        let message = format!(
            "{} {} ({}) conflicts with {at} ({})",
            r.kind.as_str(),
            r.name,
            describe(r),
            describe(first),
        );
        errors.push(Diagnostic {
            file: r.file.to_path_buf(),
            line: r.line,
            message,
        });
    }
    for (at, qtypes) in merged {
        rules[at].qtypes |= qtypes;
    }
    if any {
        let mut i = 0;
        rules.retain(|_| {
            i += 1;
            !drop[i - 1]
        });
    }
    duplicates
}

/// A rule's action (and query types, if restricted) for messages.
fn describe(r: &ParsedRule) -> String {
    let a = r.action.map_or("the order's action", Action::as_str);
    if r.qtypes == blocker_common::QTYPES_ALL {
        a.to_string()
    } else {
        let types: Vec<&str> = blocker_common::qtype::qtype_bit_names(r.qtypes).collect();
        format!("{a} for {}", types.join(","))
    }
}

/// A file that cannot be read as text.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// Opening or reading failed.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not UTF-8 (lists are expected in UTF-8; convert with `iconv` first).
    #[error("{path}:{line}: not UTF-8 text (byte {offset} of the file, byte {column} of the line); convert it to UTF-8 first", path = path.display())]
    NotText {
        /// The file.
        path: PathBuf,
        /// 1-based line of the first invalid byte.
        line: usize,
        /// 1-based byte of the line.
        column: usize,
        /// 0-based byte offset in the file.
        offset: usize,
    },
    /// The file is not UTF-8 and its first bytes say what it is instead: UTF-16 text, or a
    /// compressed archive (a list downloaded without being unpacked).
    #[error("{path}: {what}, not UTF-8 text: {fix}", path = path.display())]
    Encoded {
        /// The file.
        path: PathBuf,
        /// What its first bytes say it is.
        what: &'static str,
        /// How to make it a list.
        fix: &'static str,
    },
}

/// What a file that is not UTF-8 is, by its first bytes, and how to make it a list.
fn encoding_of(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    const KNOWN: &[(&[u8], &str, &str)] = &[
        (
            b"\xff\xfe",
            "UTF-16 text (little-endian byte-order mark)",
            "convert it first (iconv -f UTF-16 -t UTF-8)",
        ),
        (
            b"\xfe\xff",
            "UTF-16 text (big-endian byte-order mark)",
            "convert it first (iconv -f UTF-16 -t UTF-8)",
        ),
        (
            b"\x1f\x8b",
            "gzip-compressed data",
            "decompress it first (gunzip)",
        ),
        (
            b"\xfd7zXZ\x00",
            "xz-compressed data",
            "decompress it first (unxz)",
        ),
        (
            b"\x28\xb5\x2f\xfd",
            "zstd-compressed data",
            "decompress it first (unzstd)",
        ),
        (
            b"BZh",
            "bzip2-compressed data",
            "decompress it first (bunzip2)",
        ),
        (
            b"PK\x03\x04",
            "a zip archive",
            "extract the list first (unzip)",
        ),
    ];
    KNOWN
        .iter()
        .find(|(magic, _, _)| bytes.starts_with(magic))
        .map(|&(_, what, fix)| (what, fix))
}

/// Reads a whole file as UTF-8 text.
pub(crate) fn read_text(path: &Path) -> Result<String, ListError> {
    let bytes = std::fs::read(path).map_err(|source| ListError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        if let Some((what, fix)) = encoding_of(e.as_bytes()) {
            return ListError::Encoded {
                path: path.to_path_buf(),
                what,
                fix,
            };
        }
        let offset = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..offset];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        ListError::NotText {
            path: path.to_path_buf(),
            line: before.iter().filter(|&&b| b == b'\n').count() + 1,
            column: offset - line_start + 1,
            offset,
        }
    })
}

/// Guesses the format of a list.
///
/// Heuristic: a `.rpz`, `.zone` or `.db` extension means RPZ. Otherwise the first meaningful
/// lines (up to 200, skipping blank lines and `#`, `!`, `;` comments) decide, the first
/// decisive line winning: a `$ORIGIN`, `$TTL` or `$INCLUDE` directive, or a record (a field
/// `SOA` or `CNAME`, or `IN` followed by a type) means RPZ; a line of two or more fields whose
/// first is an address (`0.0.0.0`, `127.0.0.1`, `::`, `0`) means hosts. Plain otherwise.
/// ([`parse_file`] reads a detected hosts file as plain, which takes hosts lines too.)
pub fn detect_format(path: &Path, text: &str) -> Format {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if matches!(ext.as_str(), "rpz" | "zone" | "db") {
        return Format::Rpz;
    }
    let mut looked = 0;
    for line in text.lines() {
        let l = line.trim_start_matches('\u{feff}').trim();
        if l.is_empty() || l.starts_with(['#', '!', ';']) {
            continue;
        }
        looked += 1;
        if looked > 200 {
            break;
        }
        // unbound.conf, whose `local-data:` records would look like zone-file lines.
        if plain::UNBOUND_KEYWORDS.iter().any(|k| l.starts_with(k)) {
            return Format::Plain;
        }
        let l = l.split_once(" #").map_or(l, |(a, _)| a);
        let l = l.split_once(';').map_or(l, |(a, _)| a);
        let upper = l.to_ascii_uppercase();
        if ["$ORIGIN", "$TTL", "$INCLUDE"]
            .iter()
            .any(|d| upper.starts_with(d))
        {
            return Format::Rpz;
        }
        let f: Vec<&str> = upper.split_whitespace().collect();
        if f.len() >= 2
            && f[1..]
                .iter()
                .enumerate()
                .any(|(i, w)| *w == "SOA" || *w == "CNAME" || (*w == "IN" && i + 2 < f.len()))
        {
            return Format::Rpz;
        }
        if f.len() >= 2 && plain::is_hosts_address(f[0]) {
            return Format::Hosts;
        }
    }
    Format::Plain
}

/// Reads and parses one file (`format` None: [detect](detect_format) it). `Err` only when
/// the file cannot be read or is not UTF-8; everything else is in the outcome.
pub fn parse_file(
    path: &Path,
    format: Option<Format>,
    opts: &Options,
) -> Result<ParseOutcome, ListError> {
    parse_file_and(path, format, opts, |_| ()).map(|(out, ())| out)
}

/// [`parse_file`], and `inspect` given the file's bytes — the very bytes parsed — on another
/// thread while they are parsed. blocker hashes them for its compliance record: hashing the
/// file in a read of its own could record one version of a list and load another.
pub fn parse_file_and<T: Send>(
    path: &Path,
    format: Option<Format>,
    opts: &Options,
    inspect: impl FnOnce(&[u8]) -> T + Send,
) -> Result<(ParseOutcome, T), ListError> {
    let text = read_text(path)?;
    // A plain list takes `ADDRESS name` lines too, so a detected hosts file is read as one:
    // combined lists as published (hosts lines beside bare or adblock names) load whole, and
    // only `--format hosts` refuses a line without an address.
    let format = format.unwrap_or_else(|| match detect_format(path, &text) {
        Format::Hosts => Format::Plain,
        f => f,
    });
    let (parts, seen) = std::thread::scope(|s| {
        let seen = s.spawn(|| inspect(text.as_bytes()));
        (read_str(&text, path, format, opts), seen.join())
    });
    let seen = seen.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    // The text goes before the parts are joined and repeats looked for: a list of ten
    // million names is 300 MB of text.
    drop(text);
    Ok((joined(parts), seen))
}

/// Parses list text that came from `file` (named in diagnostics; RPZ `$INCLUDE`s are read
/// relative to its directory). A leading byte-order mark is skipped.
pub fn parse_str(text: &str, file: &Path, format: Format, opts: &Options) -> ParseOutcome {
    joined(read_str(text, file, format, opts))
}

/// The parts [`read_str`] returns as one outcome, repeats counted and dropped.
fn joined((mut out, rest): (ParseOutcome, Option<ParseOutcome>)) -> ParseOutcome {
    if let Some(rest) = rest {
        out.append(rest);
    }
    out.dedup();
    out
}

/// What [`parse_str`] reads, before repeats are looked for: a large plain list in two parts
/// (its halves, read on two threads), to be appended in order.
fn read_str(
    text: &str,
    file: &Path,
    format: Format,
    opts: &Options,
) -> (ParseOutcome, Option<ParseOutcome>) {
    let mut out = ParseOutcome::default();
    let mut rest = None;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let file: Arc<PathBuf> = Arc::new(file.to_path_buf());
    match format {
        Format::Plain | Format::Hosts => {
            let hosts = format == Format::Hosts;
            // A large list is parsed in two halves on two threads, split at a line boundary.
            let mid = if text.len() >= PARALLEL_BYTES {
                text[text.len() / 2..]
                    .find('\n')
                    .map_or(text.len(), |i| text.len() / 2 + i + 1)
            } else {
                text.len()
            };
            let (a, b) = text.split_at(mid);
            let second = std::thread::scope(|s| {
                let second = (!b.is_empty()).then(|| {
                    s.spawn(|| {
                        let mut o = ParseOutcome::default();
                        let skipped = a.bytes().filter(|&c| c == b'\n').count();
                        plain::parse(b, skipped, &file, opts, hosts, &mut o);
                        o
                    })
                });
                plain::parse(a, 0, &file, opts, hosts, &mut out);
                second.map(|h| h.join())
            });
            match second {
                Some(Ok(o)) => rest = Some(o),
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                None => {}
            }
        }
        Format::Rpz => rpz::parse(text, &file, opts, &mut out),
    }
    (out, rest)
}

/// A DNS record as the RPZ reader takes it: what `domain`'s zone-file scanner yields, and
/// what a transferred record (`domain::net::xfr`) becomes once its names are flattened.
pub type ZoneRecord = domain::base::Record<
    domain::base::Name<bytes::Bytes>,
    domain::rdata::ZoneRecordData<bytes::Bytes, domain::base::Name<bytes::Bytes>>,
>;

/// Reads the records of an RPZ zone (a zone transferred from a primary, say) with exactly
/// the semantics of [`Format::Rpz`] files: every record takes the path a record read from a
/// zone file takes (apex SOA and NS skipped, `*.name` below rules, CNAME actions, local data
/// sinkholes, the first policy record of an owner wins, unsupported triggers counted).
///
/// Give the zone name as [`Options::rpz_origin`]: owners are absolute, and the apex is
/// stripped from them. Each record comes with the line shown in diagnostics (`file:line`);
/// blocker keeps a transferred zone as a file of one record per line, and gives each record
/// its line there. At one owner, the order of the records decides which policy record wins,
/// as the order of lines does in a file.
pub fn parse_rpz_records(
    records: impl IntoIterator<Item = (usize, ZoneRecord)>,
    file: &Path,
    opts: &Options,
) -> ParseOutcome {
    let mut out = ParseOutcome::default();
    let file: Arc<PathBuf> = Arc::new(file.to_path_buf());
    rpz::parse_records(records, &file, opts, &mut out);
    out.dedup();
    out
}

/// The RPZ CNAME target that writes `action` (`.` nxdomain, `*.` nodata, `rpz-passthru.`,
/// `rpz-drop.`, `rpz-tcp-only.`), exactly what [`Format::Rpz`] reads back as that action.
/// None for a sinkhole (written as A/AAAA local data) and for actions RPZ cannot say
/// (REFUSED).
pub fn rpz_cname_target(action: Action) -> Option<&'static str> {
    rpz::cname_of(action)
}

/// Plain and hosts lists from this size on are parsed by two threads.
const PARALLEL_BYTES: usize = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    /// What reading a list of ten million names holds: 64 bytes a rule.
    #[test]
    fn a_parsed_rule_takes_64_bytes() {
        assert_eq!(std::mem::size_of::<ParsedRule>(), 64);
    }

    #[test]
    fn diagnostics_display_file_and_line() {
        let d = Diagnostic {
            file: PathBuf::from("/etc/blocker/order.txt"),
            line: 12,
            message: "bad".into(),
        };
        assert_eq!(d.to_string(), "/etc/blocker/order.txt:12: bad");
    }

    #[test]
    fn unreadable_and_non_utf8_files() {
        let dir = std::env::temp_dir().join(format!("blk-lib-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = dir.join("missing.txt");
        let e = parse_file(&missing, None, &Options::default()).expect_err("missing");
        assert!(e.to_string().contains("missing.txt"), "{e}");
        let latin1 = dir.join("latin1.txt");
        std::fs::write(&latin1, b"ok.example\nb\xfccher.example\n").expect("write");
        let e = parse_file(&latin1, None, &Options::default()).expect_err("latin-1");
        let msg = e.to_string();
        assert!(
            msg.contains("latin1.txt:2: not UTF-8") && msg.contains("byte 2 of the line"),
            "{msg}"
        );
        // What operators download by mistake, said by name.
        let mut utf16 = vec![0xff, 0xfe];
        utf16.extend("a.example\n".encode_utf16().flat_map(u16::to_le_bytes));
        let gzip = [0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03];
        for (name, bytes, want) in [
            ("u16.txt", &utf16[..], "UTF-16 text (little-endian"),
            (
                "list.gz",
                &gzip[..],
                "gzip-compressed data, not UTF-8 text: decompress",
            ),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, bytes).expect("write");
            let msg = parse_file(&p, None, &Options::default())
                .expect_err(name)
                .to_string();
            assert!(
                msg.starts_with(&format!("{}: ", p.display())) && msg.contains(want),
                "{msg}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_detected_hosts_file_also_takes_bare_and_adblock_names() {
        // Combined lists are published so: hosts lines first (the detection sees a hosts
        // file), names of other sources after them.
        let dir = std::env::temp_dir().join(format!("blk-lib-mixed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("combined.txt");
        let text = "# combined\r\n0.0.0.0 hosts.example\r\n127.0.0.1 localhost\r\n\
                    bare.example\r\n||adblock.example^\r\n";
        std::fs::write(&path, text).expect("write");
        assert_eq!(detect_format(&path, text), Format::Hosts);
        let out = parse_file(&path, None, &Options::default()).expect("readable");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let got: Vec<(String, usize)> = out
            .rules
            .iter()
            .map(|r| (r.name.to_string(), r.line))
            .collect();
        let want = [
            ("hosts.example", 2),
            ("bare.example", 4),
            ("adblock.example", 5),
        ];
        assert_eq!(got, want.map(|(n, l)| (n.to_string(), l)));
        // Said to be a hosts file, a line without an address is refused.
        let strict = parse_str(text, &path, Format::Hosts, &Options::default());
        let lines: Vec<usize> = strict.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [4, 5], "{:?}", strict.errors);
    }

    #[test]
    fn large_lists_parsed_in_two_halves_keep_order_lines_and_duplicates() {
        let n = 300_000;
        let mut text: String = (0..n).map(|i| format!("site{i}.example\n")).collect();
        assert!(text.len() >= PARALLEL_BYTES);
        text.push_str("bad..name\nsite1.example\ntwo words\n");
        let out = parse_str(&text, Path::new("big"), Format::Plain, &Options::default());
        assert_eq!(out.rules.len(), n);
        assert!(out
            .rules
            .iter()
            .enumerate()
            .all(|(i, r)| r.line == i + 1 && r.name.to_string() == format!("site{i}.example")));
        assert_eq!(out.duplicates, 1, "site1.example again, across the halves");
        let lines: Vec<usize> = out.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![n + 1, n + 3], "{:?}", out.errors);
    }

    #[test]
    fn skipped_entries_keep_their_first_places_across_halves() {
        let n = 300_000;
        let mut text: String = (0..n).map(|i| format!("site{i}.example\n")).collect();
        text.insert_str(0, "||a.example^$third-party\n||b.example^$third-party\n");
        text.push_str("||c.example^$third-party\n||d.example^$third-party\n");
        let out = parse_str(&text, Path::new("big"), Format::Plain, &Options::default());
        assert_eq!(out.unsupported.get("adblock $third-party"), Some(&4));
        let at: Vec<String> = out.unsupported_at["adblock $third-party"]
            .iter()
            .map(Place::to_string)
            .collect();
        assert_eq!(at, ["big:1", "big:2", &format!("big:{}", n + 3)]);
    }

    #[test]
    fn detects_formats() {
        let p = Path::new("x.txt");
        assert_eq!(detect_format(p, "# c\n0.0.0.0 a.example\n"), Format::Hosts);
        assert_eq!(detect_format(p, "a.example\n"), Format::Plain);
        assert_eq!(
            detect_format(p, "a.example # CNAME in a comment\nb.example\n"),
            Format::Plain
        );
        assert_eq!(
            detect_format(p, "$TTL 300\n@ SOA a. b. 1 1 1 1 1\n"),
            Format::Rpz
        );
        assert_eq!(
            detect_format(Path::new("x.rpz"), "a.example CNAME .\n"),
            Format::Rpz
        );
        assert_eq!(
            detect_format(Path::new("x"), "; zone\nbad.example 300 IN CNAME .\n"),
            Format::Rpz
        );
        assert_eq!(
            detect_format(Path::new("x"), "sink.example IN A 192.0.2.1\n"),
            Format::Rpz
        );
        assert_eq!(
            detect_format(Path::new("x"), "||ads.example^\n"),
            Format::Plain
        );
    }
}
