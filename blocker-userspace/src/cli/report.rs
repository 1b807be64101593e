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
    /// The order's settings after the change (priority, mode, jurisdictions, window).
    #[serde(skip_serializing_if = "Option::is_none")]
    settings: Option<compliance::Settings>,
}

impl Change {
    /// A row for an instant no command made: the order's validity window opening or closing
    /// (`what`), which the data plane enforced at that instant by its own clock.
    fn window(what: &str, at: Timestamp, generation: u32) -> Change {
        Change {
            command: what.into(),
            started: at,
            enforced: Some(at),
            time_to_enforcement_s: Some(0.0),
            generation,
            rules_added: 0,
            rules_removed: 0,
            rules_changed: 0,
            name: None,
            files: Vec::new(),
            ticket: None,
            operator: Some("the data plane's clock".into()),
            forced: false,
            settings: None,
        }
    }
}

/// What the record says of one order over time: when it was first enforced (rules in force,
/// in enforce mode, inside its window) and the instants its window opened or closed between
/// the changes (each change's settings hold from its enforcement to the next change's).
/// Records without settings (written before they were kept) count as in force from their
/// enforcement, as the report always read them.
fn timeline(records: &[&Record], now: Timestamp) -> (Option<Timestamp>, Vec<Change>) {
    let mut first = None;
    let mut rows = Vec::new();
    let mut rules: i64 = 0;
    let enforced: Vec<&Record> = records
        .iter()
        .copied()
        .filter(|r| r.enforced.is_some())
        .collect();
    for (i, r) in enforced.iter().enumerate() {
        let Some(start) = r.enforced else { continue };
        rules += r.rules_added as i64 - r.rules_removed as i64;
        let end = enforced.get(i + 1).and_then(|n| n.enforced).unwrap_or(now);
        let Some(s) = &r.settings else {
            if first.is_none() && rules > 0 {
                first = Some(start);
            }
            continue;
        };
        for (bound, what) in [
            (s.valid_from, "window opens"),
            (s.valid_until, "window closes"),
        ] {
            if let Some(t) = bound.filter(|t| *t > start && *t <= end) {
                rows.push(Change::window(what, t, r.generation));
            }
        }
        let from = s.valid_from.map_or(start, |f| f.max(start));
        let until = s.valid_until.map_or(end, |u| u.min(end));
        if first.is_none() && rules > 0 && s.mode == "enforce" && from < until {
            first = Some(from);
        }
    }
    (first, rows)
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
            settings: r.settings.clone(),
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
    /// The first instant the data plane enforced this order (in the whole record): its rules
    /// loaded, in enforce mode, inside its validity window.
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
    /// Changes of no order (protected names, jurisdictions; a jurisdiction's change is also
    /// listed under each order it bound at that moment).
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
    let mut by_order: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in &records {
        match &r.order {
            Some(name) => by_order.entry(name.clone()).or_default().push(r),
            None => {
                if since.is_none_or(|s| r.started >= s) {
                    other_changes.push(Change::from(r));
                }
            }
        }
    }
    let now = Timestamp::now();
    for (name, recs) in &by_order {
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
        let (first, windows) = timeline(recs, now);
        o.first_enforced = first;
        o.changes.extend(
            recs.iter()
                .filter(|r| since.is_none_or(|s| r.started >= s))
                .map(|r| Change::from(*r)),
        );
        o.changes.extend(
            windows
                .into_iter()
                .filter(|c| since.is_none_or(|s| c.started >= s)),
        );
        // A jurisdiction's change changes whom the orders scoped to it bind.
        for r in &records {
            let (None, Some(j), Some(at)) = (&r.order, &r.name, r.enforced) else {
                continue;
            };
            if !r.command.starts_with("jurisdictions") || since.is_some_and(|s| r.started < s) {
                continue;
            }
            // The order as its latest change before then left it (none: removed, or
            // recorded before settings were kept).
            let scoped = recs
                .iter()
                .rfind(|o| o.enforced.is_some_and(|e| e <= at))
                .and_then(|o| o.settings.as_ref())
                .is_some_and(|s| s.jurisdictions.contains(j));
            if scoped {
                o.changes.push(Change::from(r));
            }
        }
        o.changes.sort_by_key(|c| c.enforced.unwrap_or(c.started));
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
        println!("OTHER CHANGES (protected names, jurisdictions)");
        header();
        r.other_changes.iter().for_each(line);
    }
}
