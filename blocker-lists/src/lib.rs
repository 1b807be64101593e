//! Court-ordered block lists as operators receive them — plain lists, hosts files, RPZ zone
//! files — turned into rules, with every invalid entry reported as `FILE:LINE: reason`.
//!
//! Parsing never fails half-way: it returns every valid rule and every problem, and the
//! caller decides (blocker refuses the whole load unless told `--skip-invalid`).
//!
//! Semantics, shared with `blocker explain`:
//! - plain and hosts lists: a bare name means [`Options::bare_kind`] (by default the name and
//!   everything below it); `*.example.com` means only names strictly below example.com (as in
//!   RPZ); adblock `||example.com^` is a subtree rule and `@@||example.com^` an allow rule.
//! - RPZ: an owner `name` is that name only, `*.name` the names strictly below it; the action
//!   comes from the record (`CNAME .` nxdomain, `CNAME *.` nodata, `rpz-passthru.` pass,
//!   `rpz-drop.` drop, `rpz-tcp-only.` tc, local A/AAAA data sinkhole).

mod name;
mod plain;
mod rpz;

use std::{
    collections::BTreeMap,
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
};

use blocker_common::{key::key_of_canonical, Action, Kind, RuleKey};
use rustc_hash::FxHashMap as HashMap;

pub use name::{normalize_name, Name, NameError};

/// A list format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One name per line (also adblock `||name^` lines).
    Plain,
    /// `0.0.0.0 name …` lines.
    Hosts,
    /// An RPZ zone file.
    Rpz,
}

/// Parsing options.
#[derive(Clone, Debug)]
pub struct Options {
    /// What a bare name in a plain or hosts list matches (court orders mean the domain and its
    /// subdomains: [`Kind::Subtree`]).
    pub bare_kind: Kind,
    /// The RPZ zone's name, when the file does not say (no SOA, no `$ORIGIN`); owners below it
    /// have it stripped.
    pub rpz_origin: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bare_kind: Kind::Subtree,
            rpz_origin: None,
        }
    }
}

/// One rule read from a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRule {
    pub name: Name,
    pub kind: Kind,
    /// None: the order's default action.
    pub action: Option<Action>,
    /// Set of `blocker_common::qtype_bit`s (all types for list entries).
    pub qtypes: u16,
    /// Local data address of an RPZ sinkhole entry.
    pub sinkhole: Option<IpAddr>,
    pub file: PathBuf,
    pub line: usize,
}

/// A problem with one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
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
    pub rules: Vec<ParsedRule>,
    /// Invalid entries.
    pub errors: Vec<Diagnostic>,
    /// Entries changed to fit (a URL reduced to its host) or otherwise worth a look.
    pub warnings: Vec<Diagnostic>,
    /// Entries skipped because blocker does not implement them, by kind (e.g. `rpz-ip`).
    pub unsupported: BTreeMap<String, usize>,
    /// Entries that repeated an earlier (name, match) with the same action.
    pub duplicates: usize,
}

impl ParseOutcome {
    fn error(&mut self, file: &Path, line: usize, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    fn warn(&mut self, file: &Path, line: usize, message: impl Into<String>) {
        self.warnings.push(Diagnostic {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    /// Keeps the first of repeated (name, kind) entries; a repeat with another action is an
    /// error naming both lines.
    fn dedup(&mut self) {
        // Keyed by the rule key (no copy of the name per entry); a key match is confirmed
        // by comparing the names.
        let mut seen: HashMap<(RuleKey, Kind), usize> =
            HashMap::with_capacity_and_hasher(self.rules.len(), Default::default());
        let mut keep: Vec<ParsedRule> = Vec::with_capacity(self.rules.len());
        let rules = std::mem::take(&mut self.rules);
        for r in rules {
            let k = (key_of_canonical(r.name.canonical()), r.kind);
            match seen.get(&k).filter(|&&i| keep[i].name == r.name) {
                Some(&i) => {
                    let first: &ParsedRule = &keep[i];
                    if first.action == r.action && first.sinkhole == r.sinkhole {
                        self.duplicates += 1;
                    } else {
                        let msg = format!(
                            "{} {} conflicts with line {} ({} vs {})",
                            r.kind.as_str(),
                            r.name,
                            first.line,
                            action_name(r.action),
                            action_name(first.action)
                        );
                        self.errors.push(Diagnostic {
                            file: r.file.clone(),
                            line: r.line,
                            message: msg,
                        });
                    }
                }
                None => {
                    seen.insert(k, keep.len());
                    keep.push(r);
                }
            }
        }
        self.rules = keep;
    }
}

fn action_name(a: Option<Action>) -> &'static str {
    a.map(Action::as_str).unwrap_or("the order's action")
}

/// An unreadable file.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not UTF-8 text (byte offset {offset})")]
    NotText {
        path: PathBuf,
        line: usize,
        offset: usize,
    },
}

/// Guesses the format: RPZ for zone files (`.rpz`/`.zone`/`.db`, or `$ORIGIN`/`$TTL`/SOA/CNAME
/// records), hosts when entries start with an address, plain otherwise.
pub fn detect_format(path: &Path, text: &str) -> Format {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if matches!(ext.as_str(), "rpz" | "zone" | "db") {
        return Format::Rpz;
    }
    for line in text.lines().take(200) {
        let l = line.trim_start_matches('\u{feff}').trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with('!') || l.starts_with(';') {
            continue;
        }
        if l.starts_with("$ORIGIN") || l.starts_with("$TTL") || l.starts_with("$INCLUDE") {
            return Format::Rpz;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.iter()
            .any(|w| w.eq_ignore_ascii_case("SOA") || w.eq_ignore_ascii_case("CNAME"))
        {
            return Format::Rpz;
        }
        if f.len() >= 2 && plain::is_hosts_address(f[0]) {
            return Format::Hosts;
        }
    }
    Format::Plain
}

/// Reads and parses one file (`format` None: detect it).
pub fn parse_file(
    path: &Path,
    format: Option<Format>,
    opts: &Options,
) -> Result<ParseOutcome, ListError> {
    let bytes = std::fs::read(path).map_err(|source| ListError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            return Err(ListError::NotText {
                path: path.to_path_buf(),
                line,
                offset,
            });
        }
    };
    let format = format.unwrap_or_else(|| detect_format(path, &text));
    Ok(parse_str(&text, path, format, opts))
}

/// Parses list text that came from `file` (used in diagnostics and for RPZ `$INCLUDE`).
pub fn parse_str(text: &str, file: &Path, format: Format, opts: &Options) -> ParseOutcome {
    let mut out = ParseOutcome::default();
    match format {
        Format::Plain => plain::parse(text, file, opts, false, &mut out),
        Format::Hosts => plain::parse(text, file, opts, true, &mut out),
        Format::Rpz => rpz::parse(text, file, opts, &mut out),
    }
    out.dedup();
    out
}
