//! TEMPORARY stand-in for blocker-lists while it is being written.
#![allow(dead_code)]
use blocker_common::{Action, Kind, QTYPES_ALL};
use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Name(Vec<u8>);
impl Name {
    pub fn from_presentation(s: &str) -> Result<Name, String> {
        let s = s.trim_end_matches('.');
        let mut v = Vec::new();
        for l in s.split('.') {
            if l.is_empty() || l.len() > 63 {
                return Err(format!("bad label in {s:?}"));
            }
            v.push(l.len() as u8);
            v.extend(l.bytes().map(blocker_common::key::fold));
        }
        if v.len() > 254 {
            return Err("too long".into());
        }
        Ok(Name(v))
    }
    pub fn canonical(&self) -> &[u8] {
        &self.0
    }
    pub fn label_count(&self) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.0.len() {
            n += 1;
            i += 1 + self.0[i] as usize;
        }
        n
    }
}
impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut first = true;
        while i < self.0.len() {
            let l = self.0[i] as usize;
            if !first {
                write!(f, ".")?;
            }
            first = false;
            write!(f, "{}", String::from_utf8_lossy(&self.0[i + 1..i + 1 + l]))?;
            i += 1 + l;
        }
        Ok(())
    }
}
pub fn normalize_name(s: &str) -> Result<Name, String> {
    Name::from_presentation(s)
}
#[derive(Clone, Copy, Debug)]
pub enum Format {
    Plain,
    Hosts,
    Rpz,
}
pub struct Options {
    pub bare_kind: Kind,
}
impl Default for Options {
    fn default() -> Self {
        Options {
            bare_kind: Kind::Subtree,
        }
    }
}
pub struct ParsedRule {
    pub name: Name,
    pub kind: Kind,
    pub action: Option<Action>,
    pub qtypes: u16,
    pub file: PathBuf,
    pub line: usize,
}
pub struct ParseOutcome {
    pub rules: Vec<ParsedRule>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub unsupported: BTreeMap<String, usize>,
    pub duplicates: usize,
}
pub fn parse_file(path: &Path, _f: Option<Format>, opts: &Options) -> Result<ParseOutcome, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        let (l, kind) = match l.strip_prefix("*.") {
            Some(r) => (r, Kind::Below),
            None => (l, opts.bare_kind),
        };
        match Name::from_presentation(l) {
            Ok(n) => rules.push(ParsedRule {
                name: n,
                kind,
                action: None,
                qtypes: QTYPES_ALL,
                file: path.to_path_buf(),
                line: i + 1,
            }),
            Err(e) => errors.push(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    Ok(ParseOutcome {
        rules,
        errors,
        warnings: vec![],
        unsupported: BTreeMap::new(),
        duplicates: 0,
    })
}
