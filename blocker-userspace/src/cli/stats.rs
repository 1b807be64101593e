//! `blocker stats`: what the data plane counted, globally, per order and per rule.

use std::{
    collections::{BTreeMap, HashMap},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use blocker_common::{Action, Reason};
use serde::Serialize;

use super::Ctx;
use crate::kernel::Maps;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show the N most hit rules.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Only this order (its counters and rules).
    #[arg(long)]
    pub order: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Refresh every SECONDS, with rates since the previous refresh.
    #[arg(long, value_name = "SECONDS")]
    pub watch: Option<f64>,
}

#[derive(Serialize, Clone)]
pub struct OrderReport {
    pub id: u16,
    pub name: String,
    pub rules: usize,
    pub hits: u64,
    pub by_action: BTreeMap<&'static str, u64>,
}

#[derive(Serialize, Clone)]
pub struct RuleReport {
    pub id: u32,
    pub name: String,
    #[serde(rename = "match")]
    pub kind: &'static str,
    pub action: &'static str,
    pub order: String,
    pub hits: u64,
}

#[derive(Serialize, Clone)]
pub struct Report {
    pub generation: u32,
    /// Packets by exit reason (see blocker_common::Reason).
    pub reasons: BTreeMap<&'static str, u64>,
    pub orders: Vec<OrderReport>,
    /// Most hit rules, most first.
    pub top_rules: Vec<RuleReport>,
    /// The key filter in front of the rule map (absent when off).
    pub key_filter: Option<crate::filter::Usage>,
}

/// Reads every counter and names them from the state.
pub fn collect(ctx: &Ctx, order: Option<&str>, top: usize) -> Result<Report> {
    let state = ctx.state()?;
    if let Some(o) = order {
        if state.order(o).is_none() {
            bail!("no order named {o:?} (see `blocker orders list`)");
        }
    }
    let maps = Maps::open(&ctx.pins)?;
    let stats = maps.stats()?;
    let reasons = Reason::ALL
        .iter()
        .map(|r| (r.as_str(), stats.counts[*r as usize]))
        .collect();
    let mut orders = Vec::new();
    for o in &state.orders {
        if order.is_some_and(|n| n != o.name) {
            continue;
        }
        let h = maps.order_hits(o.id)?;
        // Shadow hits (an order in shadow mode: counted, not applied) under "shadow", apart
        // from the hits that decided.
        let shadow = h.by_action[blocker_common::SHADOW_HITS];
        let by_action: BTreeMap<&'static str, u64> = Action::ALL
            .iter()
            .map(|a| (a.as_str(), h.by_action[*a as usize]))
            .chain([("shadow", shadow)])
            .filter(|(_, v)| *v > 0)
            .collect();
        orders.push(OrderReport {
            id: o.id,
            name: o.name.clone(),
            rules: o.rules,
            hits: h.by_action.iter().sum::<u64>() - shadow,
            by_action,
        });
    }
    let key_filter = maps.filter_usage()?;
    let hits = maps.rule_hits()?;
    let mut top_rules = Vec::new();
    if !hits.is_empty() && top > 0 {
        // Name the hit rules (only those) from the state.
        let mut wanted: HashMap<u32, u64> = hits;
        for o in &state.orders {
            if order.is_some_and(|n| n != o.name) {
                continue;
            }
            for r in ctx.dir.read_rules(o)? {
                if let Some(h) = wanted.remove(&r.id) {
                    top_rules.push(RuleReport {
                        id: r.id,
                        name: r.name.to_string(),
                        kind: r.kind.as_str(),
                        action: r.action.as_str(),
                        order: o.name.clone(),
                        hits: h,
                    });
                }
            }
        }
        top_rules.sort_by(|a, b| b.hits.cmp(&a.hits).then(a.name.cmp(&b.name)));
        top_rules.truncate(top);
    }
    Ok(Report {
        generation: maps.config()?.generation,
        reasons,
        orders,
        top_rules,
        key_filter,
    })
}

fn rate(now: u64, before: Option<u64>, secs: f64) -> String {
    match before {
        Some(b) if secs > 0.0 => format!("{:>10.1}/s", now.saturating_sub(b) as f64 / secs),
        _ => String::new(),
    }
}

pub fn print_table(r: &Report, prev: Option<(&Report, f64)>) {
    println!("generation {}", r.generation);
    println!("{:<16} {:>14}", "REASON", "PACKETS");
    for (k, v) in &r.reasons {
        let before = prev.and_then(|(p, _)| p.reasons.get(k).copied());
        println!(
            "{:<16} {:>14} {}",
            k,
            v,
            rate(*v, before, prev.map(|p| p.1).unwrap_or(0.0))
        );
    }
    if !r.orders.is_empty() {
        println!();
        println!(
            "{:<4} {:<28} {:>9} {:>12}  BY ACTION",
            "ID", "ORDER", "RULES", "HITS"
        );
        for o in &r.orders {
            let acts: Vec<String> = o
                .by_action
                .iter()
                .map(|(a, n)| format!("{a}={n}"))
                .collect();
            let before =
                prev.and_then(|(p, _)| p.orders.iter().find(|x| x.id == o.id).map(|x| x.hits));
            println!(
                "{:<4} {:<28} {:>9} {:>12}  {} {}",
                o.id,
                o.name,
                o.rules,
                o.hits,
                acts.join(" "),
                rate(o.hits, before, prev.map(|p| p.1).unwrap_or(0.0)).trim()
            );
        }
    }
    if !r.top_rules.is_empty() {
        println!();
        println!(
            "{:>12}  {:<8} {:<9} {:<40} ORDER",
            "HITS", "MATCH", "ACTION", "NAME"
        );
        for x in &r.top_rules {
            println!(
                "{:>12}  {:<8} {:<9} {:<40} {}",
                x.hits, x.kind, x.action, x.name, x.order
            );
        }
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let Some(every) = a.watch else {
        let r = collect(ctx, a.order.as_deref(), a.top)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            print_table(&r, None);
        }
        return Ok(ExitCode::SUCCESS);
    };
    if !(every > 0.0 && every.is_finite()) {
        bail!("--watch {every}: give a positive number of seconds");
    }
    let mut prev: Option<(Report, Instant)> = None;
    loop {
        let r = collect(ctx, a.order.as_deref(), a.top)?;
        let now = Instant::now();
        if a.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            let p = prev
                .as_ref()
                .map(|(p, t)| (p, now.duration_since(*t).as_secs_f64()));
            print_table(&r, p);
            println!();
        }
        prev = Some((r, now));
        std::thread::sleep(Duration::from_secs_f64(every));
    }
}
