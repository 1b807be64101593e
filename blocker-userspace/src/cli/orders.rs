//! `blocker orders`: the named sources of rules.

use std::process::ExitCode;

use anyhow::{bail, Result};
use blocker_common::Action;
use serde::Serialize;

use super::{
    rules::{order_for, CliAction, OrderOpts},
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
    /// Create an order or change its default action and EDE code/text (rules unchanged).
    Set(SetArgs),
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
    id: u16,
    name: String,
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
    for o in &state.orders {
        let hits = match &maps {
            Some(m) => m.order_hits(o.id)?.by_action.iter().sum(),
            None => 0,
        };
        out.push(Listed {
            id: o.id,
            name: o.name.clone(),
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
        "{:<4} {:<28} {:>9} {:>10} {:<9} {:<4} {:<20} EDE TEXT",
        "ID", "ORDER", "RULES", "HITS", "ACTION", "EDE", "UPDATED"
    );
    for o in &out {
        println!(
            "{:<4} {:<28} {:>9} {:>10} {:<9} {:<4} {:<20} {}",
            o.id, o.name, o.rules, o.hits, o.default_action, o.ede_code, o.updated, o.ede_text
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn set(ctx: &Ctx, a: SetArgs) -> Result<ExitCode> {
    let started = jiff::Timestamp::now();
    let mut c = Controller::open(&ctx.pins, &ctx.dir)?;
    let order = order_for(&c, &a.order, a.action.map(Action::from))?;
    let name = order.name.clone();
    let s = c.apply(vec![OrderChange::Put { order, rules: None }])?;
    let rec = Record::new("orders set", started, Some(&name), Some(&s), &a.audit);
    compliance::append(&ctx.dir, &rec)?;
    println!("order {name:?} set");
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
