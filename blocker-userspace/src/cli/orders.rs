//! `blocker orders`: the named sources of rules.

use std::process::ExitCode;

use anyhow::{bail, Result};
use blocker_common::Action;
use serde::Serialize;

use super::{
    rules::{check_guards, order_for, CliAction, GuardOpts, OrderOpts},
    time_str, Ctx,
};
use crate::{
    compliance::{self, Audit, Record},
    txn::{Controller, OrderChange},
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List orders with their rule counts and hits.
    List(ListArgs),
    /// Create an order or change its settings (rules unchanged): default action, EDE
    /// code/text, priority, jurisdictions, validity window, mode, policy override. All change
    /// together with the order's rules at one instant.
    Set(SetArgs),
    /// Move an order in the precedence: just before or after another order.
    Move(MoveArgs),
    /// Remove an order and all its rules, atomically.
    Remove(RemoveArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct SetArgs {
    /// Default action of the order's rules that do not carry their own.
    #[arg(long, value_enum)]
    pub action: Option<CliAction>,
    #[command(flatten)]
    pub order: OrderOpts,
    /// A policy override changes what every rule of the order does: its rules are checked
    /// against the guards again, by the overriding action.
    #[command(flatten)]
    pub guard: GuardOpts,
    #[command(flatten)]
    pub audit: Audit,
}

#[derive(clap::Args, Debug)]
pub struct MoveArgs {
    /// The order to move.
    pub order: String,
    /// Place it just before this order.
    #[arg(
        long,
        value_name = "ORDER",
        conflicts_with = "after",
        required_unless_present = "after"
    )]
    pub before: Option<String>,
    /// Place it just after this order.
    #[arg(long, value_name = "ORDER")]
    pub after: Option<String>,
    #[command(flatten)]
    pub audit: Audit,
}

#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// The order's name.
    pub order: String,
    #[command(flatten)]
    pub audit: Audit,
}

#[derive(Serialize)]
struct Listed {
    /// Place in the precedence (0 decides first).
    precedence: usize,
    priority: u32,
    id: u16,
    name: String,
    mode: &'static str,
    /// The action replacing every rule's own (None: the rules' own).
    #[serde(rename = "override")]
    override_action: Option<&'static str>,
    jurisdictions: Vec<String>,
    valid_from: Option<String>,
    valid_until: Option<String>,
    /// pending, active or expired (by the validity window, now).
    window: &'static str,
    /// Hits of the order in shadow mode (counted, not applied).
    shadow_hits: u64,
    default_action: &'static str,
    ede_code: u16,
    ede_text: String,
    rules: usize,
    sources: Vec<String>,
    created: String,
    updated: String,
    hits: u64,
}

pub fn run(ctx: &Ctx, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::List(a) => list(ctx, a),
        Command::Set(a) => set(ctx, a),
        Command::Move(a) => move_order(ctx, a),
        Command::Remove(a) => remove(ctx, a),
    }
}

fn list(ctx: &Ctx, a: ListArgs) -> Result<ExitCode> {
    let state = ctx.state()?;
    let maps = if ctx.pins.loaded() {
        Some(crate::kernel::Maps::open(&ctx.pins)?)
    } else {
        None
    };
    let mut out = Vec::new();
    for (rank, o) in state.precedence().into_iter().enumerate() {
        let by_action = match &maps {
            Some(m) => m.order_hits(o.id)?.by_action,
            None => Default::default(),
        };
        let shadow_hits = by_action[blocker_common::SHADOW_HITS];
        let hits = by_action.iter().sum::<u64>() - shadow_hits;
        out.push(Listed {
            precedence: rank,
            priority: o.priority,
            id: o.id,
            name: o.name.clone(),
            mode: if o.shadow { "shadow" } else { "enforce" },
            override_action: o.override_action.map(Action::as_str),
            jurisdictions: o.jurisdictions.clone(),
            valid_from: o.valid_from.map(|t| t.to_string()),
            valid_until: o.valid_until.map(|t| t.to_string()),
            window: o.window_status(),
            shadow_hits,
            default_action: o.default_action.as_str(),
            ede_code: if o.ede_code == 0 {
                state.settings.default_ede
            } else {
                o.ede_code
            },
            ede_text: o.ede_text.clone(),
            rules: o.rules,
            sources: o.sources.clone(),
            created: time_str(o.created),
            updated: time_str(o.updated),
            hits,
        });
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<4} {:<5} {:<4} {:<28} {:>9} {:>10} {:<9} {:<8} {:<8} {:<7} {:<14} {:<4} EDE TEXT",
        "PREC",
        "PRIO",
        "ID",
        "ORDER",
        "RULES",
        "HITS",
        "ACTION",
        "OVERRIDE",
        "MODE",
        "WINDOW",
        "JURISDICTIONS",
        "EDE"
    );
    for o in &out {
        let scope = match o.jurisdictions.is_empty() {
            true => "everywhere".to_string(),
            false => o.jurisdictions.join(","),
        };
        println!(
            "{:<4} {:<5} {:<4} {:<28} {:>9} {:>10} {:<9} {:<8} {:<8} {:<7} {:<14} {:<4} {}",
            o.precedence,
            o.priority,
            o.id,
            o.name,
            o.rules,
            if o.mode == "shadow" {
                o.shadow_hits
            } else {
                o.hits
            },
            o.default_action,
            o.override_action.unwrap_or("-"),
            o.mode,
            o.window,
            scope,
            o.ede_code,
            o.ede_text
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn set(ctx: &Ctx, a: SetArgs) -> Result<ExitCode> {
    let started = jiff::Timestamp::now();
    let mut c = Controller::open(&ctx.pins, &ctx.dir)?;
    let order = order_for(&c, &a.order, a.action.map(Action::from))?;
    let name = order.name.clone();
    // A new policy override: every rule now takes its action (pass rules on a public suffix
    // become blocks there), so the guards judge the order's rules again.
    let before = c.state.order(&name).and_then(|o| o.override_action);
    let mut forced = false;
    if order.override_action.is_some() && order.override_action != before {
        if let Some(o) = c.state.order(&name) {
            let rules = c.dir.read_rules(o)?;
            forced = check_guards(ctx, &a.guard, &rules, order.override_action)?;
        }
    }
    let s = c.apply(vec![OrderChange::Put { order, rules: None }])?;
    let mut rec = Record::new("orders set", started, Some(&name), Some(&s), &a.audit);
    rec.forced = forced;
    compliance::append(&ctx.dir, &rec)?;
    println!("order {name:?} set");
    Ok(ExitCode::SUCCESS)
}

/// Moves an order just before or after another: the orders are renumbered 10, 20, 30… in
/// their new precedence (one change: every rank moves at the same instant).
fn move_order(ctx: &Ctx, a: MoveArgs) -> Result<ExitCode> {
    let started = jiff::Timestamp::now();
    let mut c = Controller::open(&ctx.pins, &ctx.dir)?;
    let (other, after) = match (&a.before, &a.after) {
        (Some(o), _) => (o.clone(), false),
        (None, Some(o)) => (o.clone(), true),
        (None, None) => bail!("say --before ORDER or --after ORDER"),
    };
    for n in [&a.order, &other] {
        if c.state.order(n).is_none() {
            bail!("no order named {n:?} (see `blocker orders list`); nothing was changed");
        }
    }
    if a.order == other {
        bail!("an order cannot move relative to itself");
    }
    let mut seq: Vec<String> = c
        .state
        .precedence()
        .iter()
        .map(|o| o.name.clone())
        .filter(|n| *n != a.order)
        .collect();
    let at = seq.iter().position(|n| *n == other).unwrap_or(0) + usize::from(after);
    seq.insert(at, a.order.clone());
    let mut changes = Vec::new();
    let mut renumbered = Vec::new();
    for (i, name) in seq.iter().enumerate() {
        if let Some(o) = c.state.order(name) {
            let priority = 10 * (i as u32 + 1);
            if o.priority != priority {
                let mut o = o.clone();
                o.priority = priority;
                if o.name != a.order {
                    renumbered.push(o.name.clone());
                }
                changes.push(OrderChange::Put {
                    order: o,
                    rules: None,
                });
            }
        }
    }
    let s = c.apply(changes)?;
    let rec = Record::new("orders move", started, Some(&a.order), Some(&s), &a.audit);
    compliance::append(&ctx.dir, &rec)?;
    // The other orders renumbered by the same change: their records say so, with the
    // order moved.
    for name in renumbered {
        let mut rec = Record::new(
            "orders renumbered",
            started,
            Some(&name),
            Some(&s),
            &a.audit,
        );
        rec.name = Some(a.order.clone());
        rec.rules_added = 0;
        rec.rules_removed = 0;
        rec.rules_changed = 0;
        compliance::append(&ctx.dir, &rec)?;
    }
    println!(
        "order {:?} now {} {:?}; precedence: {}",
        a.order,
        if after { "after" } else { "before" },
        other,
        seq.join(" > ")
    );
    Ok(ExitCode::SUCCESS)
}

fn remove(ctx: &Ctx, a: RemoveArgs) -> Result<ExitCode> {
    let started = jiff::Timestamp::now();
    let mut c = Controller::open(&ctx.pins, &ctx.dir)?;
    let Some(order) = c.state.order(&a.order).cloned() else {
        bail!("no order named {:?} (see `blocker orders list`)", a.order);
    };
    // `blocker follow` would bring a followed order back at the next serial.
    if let Some(f) = crate::feed::load_feeds(&ctx.dir)?.by_order(&a.order) {
        bail!(
            "order {:?} follows zone {} (`blocker feed remove {:?}` first); nothing was changed",
            a.order,
            f.zone,
            a.order
        );
    }
    let s = c.apply(vec![OrderChange::Remove { id: order.id }])?;
    let rec = Record::new("orders remove", started, Some(&a.order), Some(&s), &a.audit);
    compliance::append(&ctx.dir, &rec)?;
    println!(
        "removed order {:?} and its {} rules (generation {})",
        a.order, order.rules, s.generation
    );
    Ok(ExitCode::SUCCESS)
}
