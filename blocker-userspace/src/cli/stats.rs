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

/// Reads every counter and names the most hit rules from the state (through `names`, which
/// a caller that collects again and again keeps: see [`RuleNames`]).
pub fn collect(
    ctx: &Ctx,
    order: Option<&str>,
    top: usize,
    names: &mut RuleNames,
) -> Result<Report> {
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
    let generation = maps.config()?.generation;
    let top_rules = names.top(ctx, &state, &maps, generation, order, top)?;
    Ok(Report {
        generation,
        reasons,
        orders,
        top_rules,
        key_filter,
    })
}

/// Names of hit rules, by rule id, for one generation of the rules: naming a rule means
/// reading its order's rules file, which for a list of millions takes seconds and hundreds of
/// megabytes, so `serve`, `stats --watch` and `top` keep what they read while the generation
/// stays and read the files again only when a rule they have not named rises into the top.
#[derive(Default)]
pub struct RuleNames {
    /// The kernel's generation and counter map the names hold for.
    generation: Option<(u32, u32)>,
    /// `None`: an id with hits that no rule holds (a rule removed in the instant before its
    /// counter was zeroed).
    known: HashMap<u32, Option<Named>>,
}

#[derive(Clone)]
struct Named {
    name: String,
    kind: &'static str,
    action: &'static str,
    order: String,
}

impl RuleNames {
    /// The `top` most hit rules (of `order` only, when given), most first.
    fn top(
        &mut self,
        ctx: &Ctx,
        state: &crate::state::StateFile,
        maps: &Maps,
        generation: u32,
        order: Option<&str>,
        top: usize,
    ) -> Result<Vec<RuleReport>> {
        if top == 0 {
            return Ok(Vec::new());
        }
        // The names belong to the rules of one generation of one set of maps (a purge starts
        // the generations again). Read with a record of another generation (a change came
        // between reading the state and the kernel), they serve this report only.
        let key = (generation, maps.rule_hits.map_id());
        if self.generation != Some(key) {
            self.known.clear();
            self.generation = Some(key);
        }
        let keep = state.generation == generation;
        let mut ranked: Vec<(u32, u64)> = maps.rule_hits()?.into_iter().collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        // The ids that decide the answer: every id, for one order (its rules may rank
        // anywhere); else the first ids until `top` of them are rules, with room for a few
        // more so that the next refreshes find theirs named too.
        let wanted: Vec<u32> = match order {
            Some(_) => ranked.iter().map(|r| r.0).collect(),
            None => {
                // The ids up to the one that makes the room full, and the ids with as many
                // hits as that one: equal hits at the cut go by name among them. Bounded, so
                // a list whose rules all have one hit is not named whole at every refresh.
                let room = top * 2 + 16;
                let (mut named, mut cut) = (0, None);
                let mut wanted = Vec::new();
                for &(id, hits) in &ranked {
                    if cut.is_some_and(|c| hits != c) || wanted.len() >= room * 8 {
                        break;
                    }
                    named += usize::from(!matches!(self.known.get(&id), Some(None)));
                    wanted.push(id);
                    if named == room {
                        cut = Some(hits);
                    }
                }
                wanted
            }
        };
        if wanted.iter().any(|id| !self.known.contains_key(id)) {
            let mut want: std::collections::HashSet<u32> = wanted.iter().copied().collect();
            for o in &state.orders {
                if order.is_some_and(|n| n != o.name) {
                    continue;
                }
                for r in ctx.dir.read_rules(o)? {
                    if want.remove(&r.id) {
                        self.known.insert(
                            r.id,
                            Some(Named {
                                name: r.name.to_string(),
                                kind: r.kind.as_str(),
                                action: r.action.as_str(),
                                order: o.name.clone(),
                            }),
                        );
                    }
                }
            }
            for id in want {
                self.known.insert(id, None);
            }
            // A change between reading the generation and the files: keep nothing of it.
            if !keep || maps.config()?.generation != generation {
                self.generation = None;
            }
        }
        let mut out: Vec<RuleReport> = ranked
            .iter()
            .filter_map(|&(id, hits)| {
                let n = self.known.get(&id)?.as_ref()?;
                order.is_none_or(|o| o == n.order).then(|| RuleReport {
                    id,
                    name: n.name.clone(),
                    kind: n.kind,
                    action: n.action,
                    order: n.order.clone(),
                    hits,
                })
            })
            .collect();
        // Equal hits at the cut go by name, as they always did (the named rules above are
        // more than `top`, with the rules tied at the cut among them).
        out.sort_by(|a, b| b.hits.cmp(&a.hits).then(a.name.cmp(&b.name)));
        out.truncate(top);
        Ok(out)
    }
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
    let mut names = RuleNames::default();
    let Some(every) = a.watch else {
        let r = collect(ctx, a.order.as_deref(), a.top, &mut names)?;
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
        let r = collect(ctx, a.order.as_deref(), a.top, &mut names)?;
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
