//! The compliance record: every change an operator makes (rules load/add/remove, orders
//! set/remove, protected names), appended as one JSON line to `compliance.jsonl` in the state
//! directory and fsync'd before the command reports success. `blocker report` reads it.
//!
//! Each record says when the command started and when the data plane began enforcing the
//! change (the instant the controller's move of the data plane's epoch returned, see
//! [`crate::txn::Summary::enforced`]; none for a change that changed nothing in the kernel or
//! does not touch it, such as protecting a name), with the generation, the order, the rules
//! added and removed, the SHA-256 of every list file loaded, and the operator's ticket and
//! name when given.
//!
//! A controller killed between the flip and this append leaves the change enforced (and
//! recorded in the state) but not in this record.

use std::{
    fs,
    io::{BufRead, Write},
    path::PathBuf,
};

use crate::error::{OpContext, OpError};

/// Why the compliance record could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ComplianceError {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

type Result<T, E = ComplianceError> = std::result::Result<T, E>;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{state::StateDir, txn::Summary};

pub const FILE: &str = "compliance.jsonl";

/// Who asked for a change and under which reference (options of every changing command).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Audit {
    /// The ticket or reference this change enforces (e.g. a Piracy Shield ticket id), kept
    /// in the compliance record (`blocker report`).
    #[arg(long, value_name = "REF")]
    pub ticket: Option<String>,
    /// Who made this change, kept in the compliance record.
    #[arg(long, value_name = "NAME")]
    pub operator: Option<String>,
}

/// A list file loaded by a change.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct FileHash {
    pub path: String,
    pub sha256: String,
}

/// One change.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Record {
    /// When the command started.
    pub started: Timestamp,
    /// When the data plane began enforcing the change (None: nothing changed in the kernel).
    pub enforced: Option<Timestamp>,
    /// `rules load`, `rules add`, `rules remove`, `orders set`, `orders remove`,
    /// `protect add`, `protect remove`.
    pub command: String,
    /// The order changed (None for protected names).
    pub order: Option<String>,
    /// The list generation after the change.
    pub generation: u32,
    pub rules_added: usize,
    pub rules_removed: usize,
    /// Rules whose action, query types or local data changed (same name and match kind).
    #[serde(default)]
    pub rules_changed: usize,
    /// The rule or protected name a single-name change was about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileHash>,
    pub ticket: Option<String>,
    pub operator: Option<String>,
    /// The guards were overridden with --force.
    #[serde(default)]
    pub forced: bool,
    /// The order's settings after the change (filled in by [`append`] from the state), so
    /// the report can tell when its window opened and closed and whom it bound at each
    /// moment, however they were changed since. None in records written before 2026-12-07,
    /// and for changes of no order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
}

/// What an order was, besides its rules, after a change.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Settings {
    pub priority: u32,
    /// enforce or shadow.
    pub mode: String,
    pub jurisdictions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Timestamp>,
}

impl Settings {
    pub fn of(o: &crate::state::Order) -> Settings {
        Settings {
            priority: o.priority,
            mode: if o.shadow { "shadow" } else { "enforce" }.into(),
            jurisdictions: o.jurisdictions.clone(),
            valid_from: o.valid_from,
            valid_until: o.valid_until,
        }
    }
}

impl Record {
    /// A record of `command` started at `started`, completed with what `summary` says.
    pub fn new(
        command: &str,
        started: Timestamp,
        order: Option<&str>,
        summary: Option<&Summary>,
        audit: &Audit,
    ) -> Record {
        Record {
            started,
            enforced: summary
                .and_then(|s| s.enforced)
                .and_then(|t| Timestamp::try_from(t).ok()),
            command: command.into(),
            order: order.map(str::to_string),
            generation: summary.map_or(0, |s| s.generation),
            rules_added: summary.map_or(0, |s| s.rules_added),
            rules_removed: summary.map_or(0, |s| s.rules_removed),
            rules_changed: summary.map_or(0, |s| s.rules_changed),
            name: None,
            files: Vec::new(),
            ticket: audit.ticket.clone(),
            operator: audit.operator.clone(),
            forced: false,
            settings: None,
        }
    }

    /// Seconds from the command's start to enforcement.
    pub fn time_to_enforcement(&self) -> Option<f64> {
        let e = self.enforced?;
        Some(e.duration_since(self.started).as_secs_f64())
    }
}

pub fn path(dir: &StateDir) -> PathBuf {
    dir.dir.join(FILE)
}

/// Appends `r` and fsyncs it, with its order's settings as the state records them now (just
/// after the change).
pub fn append(dir: &StateDir, r: &Record) -> Result<()> {
    dir.ensure()?;
    let mut with;
    let r = match (&r.order, &r.settings) {
        (Some(name), None) => {
            with = r.clone();
            with.settings = dir.load()?.order(name).map(Settings::of);
            &with
        }
        _ => r,
    };
    let p = path(dir);
    let mut line = serde_json::to_vec(r).op(|| "encoding a compliance record".to_string())?;
    line.push(b'\n');
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .op(|| format!("opening {}", p.display()))?;
    f.write_all(&line)
        .and_then(|()| f.sync_all())
        .op(|| format!("appending to {}", p.display()))?;
    Ok(())
}

/// Every record, oldest first (none when there is no record yet).
pub fn read(dir: &StateDir) -> Result<Vec<Record>> {
    let p = path(dir);
    let f = match fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(OpError {
                context: format!("opening {}", p.display()),
                source: Box::new(e),
            }
            .into())
        }
    };
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.op(|| format!("reading {}", p.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(&line)
            .op(|| format!("{}:{}: not a compliance record", p.display(), i + 1))?;
        out.push(r);
    }
    Ok(out)
}

/// Hits per order per day (UTC), sampled from the kernel's counters: `hits-per-day.json` in
/// the state directory. Every sample adds what each order's counter grew by since the last
/// sample to today's count (a counter that went down was reset, by a reload or a removal:
/// all of its value is new). `blocker serve` samples at every scrape, and every command that
/// changes the rules samples before its change.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
pub struct HitsPerDay {
    /// Each order's counter at the last sample, by order name.
    pub last: std::collections::BTreeMap<String, u64>,
    /// Day (YYYY-MM-DD, UTC) → order → hits that day.
    pub days: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
}

/// Days of hits kept (a little over a year: an AGCOM block lapses after six months).
pub const HIT_DAYS: usize = 400;
const HITS_FILE: &str = "hits-per-day.json";

impl HitsPerDay {
    /// Adds a sample taken on `day` of each order's counter (`counters`: order → hits).
    pub fn add(&mut self, day: &str, counters: &[(String, u64)]) {
        for (order, c) in counters {
            let last = self.last.get(order).copied().unwrap_or(0);
            let grew = if *c >= last { c - last } else { *c };
            if grew > 0 {
                *self
                    .days
                    .entry(day.to_string())
                    .or_default()
                    .entry(order.clone())
                    .or_default() += grew;
            }
            self.last.insert(order.clone(), *c);
        }
        while self.days.len() > HIT_DAYS {
            self.days.pop_first();
        }
    }

    /// An order's hits by day.
    pub fn of(&self, order: &str) -> std::collections::BTreeMap<String, u64> {
        self.days
            .iter()
            .filter_map(|(d, m)| m.get(order).map(|n| (d.clone(), *n)))
            .collect()
    }
}

/// The hits per day recorded so far (none yet: empty).
pub fn read_hits(dir: &StateDir) -> Result<HitsPerDay> {
    let p = dir.dir.join(HITS_FILE);
    match fs::read(&p) {
        Ok(b) => Ok(serde_json::from_slice(&b).op(|| format!("{} is corrupt", p.display()))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HitsPerDay::default()),
        Err(e) => Err(OpError {
            context: format!("reading {}", p.display()),
            source: Box::new(e),
        }
        .into()),
    }
}

/// Samples every order's decided hits (shadow hits apart) into `hits-per-day.json`.
pub fn sample_hits(
    dir: &StateDir,
    state: &crate::state::StateFile,
    maps: &crate::kernel::Maps,
) -> Result<()> {
    let mut counters = Vec::new();
    for o in &state.orders {
        if let Ok(h) = maps.order_hits(o.id) {
            let h = h.by_action;
            counters.push((
                o.name.clone(),
                h.iter().sum::<u64>() - h[blocker_common::SHADOW_HITS],
            ));
        }
    }
    let mut hits = read_hits(dir)?;
    let day = Timestamp::now().strftime("%Y-%m-%d").to_string();
    hits.add(&day, &counters);
    let p = dir.dir.join(HITS_FILE);
    let tmp = dir
        .dir
        .join(format!("{HITS_FILE}.{}.new", std::process::id()));
    let bytes = serde_json::to_vec(&hits).op(|| "encoding hits per day".to_string())?;
    fs::write(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, &p))
        .op(|| format!("writing {}", p.display()))?;
    Ok(())
}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_per_day_add_growth_and_survive_a_reset() {
        let mut h = HitsPerDay::default();
        h.add("2026-12-01", &[("A".into(), 5), ("B".into(), 0)]);
        h.add("2026-12-01", &[("A".into(), 8), ("B".into(), 2)]);
        h.add("2026-12-02", &[("A".into(), 10), ("B".into(), 2)]);
        // A's counter reset (reload) to 4: four new hits.
        h.add("2026-12-02", &[("A".into(), 4)]);
        assert_eq!(
            h.of("A").into_iter().collect::<Vec<_>>(),
            vec![("2026-12-01".to_string(), 8), ("2026-12-02".to_string(), 6)]
        );
        assert_eq!(
            h.of("B").into_iter().collect::<Vec<_>>(),
            vec![("2026-12-01".to_string(), 2)]
        );
        for d in 0..(HIT_DAYS + 5) {
            h.add(&format!("3000-{d:05}"), &[("A".into(), 5 + d as u64)]);
        }
        assert_eq!(h.days.len(), HIT_DAYS);
    }

    #[test]
    fn sha256_of_a_known_input() {
        let h = sha256_hex(b"abc");
        // FIPS 180-2, appendix B.1.
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
