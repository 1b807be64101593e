//! `blocker report`: what was enforced, when, and how often it was hit, per order — from the
//! compliance record (`compliance.jsonl`), the recorded state and the kernel's counters.

use std::{collections::BTreeMap, process::ExitCode};

use anyhow::{bail, Context, Result};
use jiff::Timestamp;
use serde::Serialize;

use super::Ctx;
use crate::compliance::{self, FileHash, Record};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this order.
    #[arg(long)]
    pub order: Option<String>,
    /// Only changes started at or after this instant (RFC 3339, e.g. 2026-01-31T00:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    pub since: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

#[derive(Serialize)]
struct Change {
    command: String,
    started: Timestamp,
    enforced: Option<Timestamp>,
    /// Seconds from the command's start to the instant the data plane enforced the change.
    time_to_enforcement_s: Option<f64>,
    generation: u32,
    rules_added: usize,
    rules_removed: usize,
    /// Rules whose action, query types or local data changed.
    rules_changed: usize,
    name: Option<String>,
    files: Vec<FileHash>,
    ticket: Option<String>,
    operator: Option<String>,
    forced: bool,
}

impl From<&Record> for Change {
    fn from(r: &Record) -> Change {
        Change {
            command: r.command.clone(),
            started: r.started,
            enforced: r.enforced,
            time_to_enforcement_s: r.time_to_enforcement(),
            generation: r.generation,
            rules_added: r.rules_added,
            rules_removed: r.rules_removed,
            rules_changed: r.rules_changed,
            name: r.name.clone(),
            files: r.files.clone(),
            ticket: r.ticket.clone(),
            operator: r.operator.clone(),
            forced: r.forced,
        }
    }
}

#[derive(Serialize)]
struct OrderReport {
    order: String,
    /// The order exists now (false: removed).
    current: bool,
    /// Its rules now.
    rules: usize,
    /// Hits of its rules since the program was loaded (the kernel's counters now); None when
    /// blocker is not loaded.
    hits: Option<u64>,
    /// The first time a change of this order was enforced (in the whole record).
    first_enforced: Option<Timestamp>,
    /// Jurisdictions whose clients it binds (empty: every client).
    jurisdictions: Vec<String>,
    valid_from: Option<Timestamp>,
    valid_until: Option<Timestamp>,
    /// pending, active or expired (by its validity window, now); None for a removed order.
    window: Option<&'static str>,
    /// enforce or shadow; None for a removed order.
    mode: Option<&'static str>,
    /// Its place in the precedence (0 decides first); None for a removed order.
    precedence: Option<usize>,
    /// Decided hits by day (UTC), sampled by `blocker serve` and by every change.
    hits_per_day: BTreeMap<String, u64>,
    changes: Vec<Change>,
}

#[derive(Serialize)]
struct Report {
    generated: Timestamp,
    since: Option<Timestamp>,
    orders: Vec<OrderReport>,
    /// Changes of no order (protected names).
    other_changes: Vec<Change>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let since: Option<Timestamp> = match &a.since {
        Some(s) => Some(
            s.parse()
                .with_context(|| format!("--since {s:?}: not an RFC 3339 time"))?,
        ),
        None => None,
    };
    let records = compliance::read(&ctx.dir)?;
    let state = ctx.state()?;
    let maps = if ctx.pins.loaded() {
        Some(crate::kernel::Maps::open(&ctx.pins)?)
    } else {
        None
    };
    if let Some(o) = &a.order {
        if state.order(o).is_none() && !records.iter().any(|r| r.order.as_ref() == Some(o)) {
            bail!("no order named {o:?} now or in the compliance record");
        }
    }
    // A sample of the counters now, so today's hits are current.
    if let Some(m) = &maps {
        if let Err(e) = compliance::sample_hits(&ctx.dir, &state, m) {
            log::warn!("hits per day not sampled: {e}");
        }
    }
    let per_day = compliance::read_hits(&ctx.dir)?;
    let ranks = state.ranks();
    // Orders now, then orders only the record knows (removed), by name.
    let mut orders: BTreeMap<String, OrderReport> = BTreeMap::new();
    for o in &state.orders {
        let hits = match &maps {
            Some(m) => {
                let h = m.order_hits(o.id)?.by_action;
                // Decided hits; an order in shadow mode decides nothing.
                Some(h.iter().sum::<u64>() - h[blocker_common::SHADOW_HITS])
            }
            None => None,
        };
        orders.insert(
            o.name.clone(),
            OrderReport {
                order: o.name.clone(),
                current: true,
                rules: o.rules,
                hits,
                first_enforced: None,
                jurisdictions: o.jurisdictions.clone(),
                valid_from: o.valid_from,
                valid_until: o.valid_until,
                window: Some(o.window_status()),
                mode: Some(if o.shadow { "shadow" } else { "enforce" }),
                precedence: ranks.get(&o.id).map(|r| usize::from(*r)),
                hits_per_day: per_day.of(&o.name),
                changes: Vec::new(),
            },
        );
    }
    let mut other_changes = Vec::new();
    for r in &records {
        let Some(name) = &r.order else {
            if since.is_none_or(|s| r.started >= s) {
                other_changes.push(Change::from(r));
            }
            continue;
        };
        let o = orders.entry(name.clone()).or_insert_with(|| OrderReport {
            order: name.clone(),
            current: false,
            rules: 0,
            hits: None,
            first_enforced: None,
            jurisdictions: Vec::new(),
            valid_from: None,
            valid_until: None,
            window: None,
            mode: None,
            precedence: None,
            hits_per_day: per_day.of(name),
            changes: Vec::new(),
        });
        if o.first_enforced.is_none() {
            o.first_enforced = r.enforced;
        }
        if since.is_none_or(|s| r.started >= s) {
            o.changes.push(Change::from(r));
        }
    }
    let report = Report {
        generated: Timestamp::now(),
        since,
        orders: orders
            .into_values()
            .filter(|o| a.order.as_ref().is_none_or(|n| *n == o.order))
            .collect(),
        other_changes: if a.order.is_some() {
            Vec::new()
        } else {
            other_changes
        },
    };
    match a.format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Csv => csv_out(&report)?,
        ReportFormat::Table => table_out(&report),
    }
    Ok(ExitCode::SUCCESS)
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or(String::new(), T::to_string)
}

fn tte(c: &Change) -> String {
    c.time_to_enforcement_s
        .map_or(String::new(), |s| format!("{s:.6}"))
}

/// One row per change (an order without changes in range: one row without change fields).
fn csv_out(r: &Report) -> Result<()> {
    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
    w.write_record([
        "order",
        "current",
        "rules_now",
        "hits",
        "first_enforced",
        "command",
        "started",
        "enforced",
        "time_to_enforcement_s",
        "generation",
        "rules_added",
        "rules_removed",
        "rules_changed",
        "name",
        "files_sha256",
        "ticket",
        "operator",
        "forced",
    ])?;
    let row = |o: Option<&OrderReport>, c: Option<&Change>| -> Vec<String> {
        let mut v = match o {
            Some(o) => vec![
                o.order.clone(),
                o.current.to_string(),
                o.rules.to_string(),
                opt(&o.hits),
                opt(&o.first_enforced),
            ],
            None => vec![String::new(); 5],
        };
        match c {
            Some(c) => v.extend([
                c.command.clone(),
                c.started.to_string(),
                opt(&c.enforced),
                tte(c),
                c.generation.to_string(),
                c.rules_added.to_string(),
                c.rules_removed.to_string(),
                c.rules_changed.to_string(),
                opt(&c.name),
                c.files
                    .iter()
                    .map(|f| format!("{}={}", f.path, f.sha256))
                    .collect::<Vec<_>>()
                    .join(" "),
                opt(&c.ticket),
                opt(&c.operator),
                c.forced.to_string(),
            ]),
            None => v.extend(std::iter::repeat_n(String::new(), 13)),
        }
        v
    };
    for o in &r.orders {
        if o.changes.is_empty() {
            w.write_record(row(Some(o), None))?;
        }
        for c in &o.changes {
            w.write_record(row(Some(o), Some(c)))?;
        }
    }
    for c in &r.other_changes {
        w.write_record(row(None, Some(c)))?;
    }
    w.flush()?;
    Ok(())
}

fn table_out(r: &Report) {
    let header = || {
        println!(
            "  {:<14} {:<27} {:<27} {:>10} {:>6} {:>8} {:>8} {:>8}  {:<16} {:<12} NAME/FILES",
            "COMMAND",
            "STARTED",
            "ENFORCED",
            "TTE(s)",
            "GEN",
            "+RULES",
            "-RULES",
            "~RULES",
            "TICKET",
            "OPERATOR"
        )
    };
    let line = |c: &Change| {
        let what = match &c.name {
            Some(n) => n.clone(),
            None => c
                .files
                .iter()
                .map(|f| format!("{} sha256:{}", f.path, f.sha256))
                .collect::<Vec<_>>()
                .join(", "),
        };
        println!(
            "  {:<14} {:<27} {:<27} {:>10} {:>6} {:>8} {:>8} {:>8}  {:<16} {:<12} {}{}",
            c.command,
            c.started.to_string(),
            c.enforced.map_or("-".into(), |t| t.to_string()),
            c.time_to_enforcement_s
                .map_or("-".into(), |s| format!("{s:.3}")),
            c.generation,
            c.rules_added,
            c.rules_removed,
            c.rules_changed,
            c.ticket.as_deref().unwrap_or("-"),
            c.operator.as_deref().unwrap_or("-"),
            what,
            if c.forced { " (forced)" } else { "" }
        );
    };
    for o in &r.orders {
        println!(
            "ORDER {:?}{}: {} rules, {} hits, first enforced {}",
            o.order,
            if o.current { "" } else { " (removed)" },
            o.rules,
            o.hits.map_or("-".into(), |h| h.to_string()),
            o.first_enforced.map_or("-".into(), |t| t.to_string()),
        );
        if o.current {
            let w = |t: Option<Timestamp>| t.map_or_else(|| "-".to_string(), |t| t.to_string());
            println!(
                "  precedence {}, {}, clients: {}, valid {} to {} ({})",
                o.precedence.map_or("-".into(), |p| p.to_string()),
                o.mode.unwrap_or("-"),
                if o.jurisdictions.is_empty() {
                    "everywhere".to_string()
                } else {
                    o.jurisdictions.join(", ")
                },
                w(o.valid_from),
                w(o.valid_until),
                o.window.unwrap_or("-")
            );
        }
        if !o.hits_per_day.is_empty() {
            let days: Vec<String> = o
                .hits_per_day
                .iter()
                .map(|(d, n)| format!("{d}: {n}"))
                .collect();
            println!("  hits per day: {}", days.join(", "));
        }
        if !o.changes.is_empty() {
            header();
            o.changes.iter().for_each(line);
        }
    }
    if !r.other_changes.is_empty() {
        println!("PROTECTED NAMES");
        header();
        r.other_changes.iter().for_each(line);
    }
}
