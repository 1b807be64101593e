//! `blocker upgrade`: this version's program (and, when their layout changed, its maps) takes
//! over from the running one, interface by interface, with no moment where a listed name
//! passes (see [`crate::upgrade`]).

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::upgrade::{Outcome, Prog, Switched};

#[derive(clap::Args, Debug)]
pub struct Args {}

fn prog(p: &Prog) -> String {
    format!("program id {} (tag {:016x})", p.id, p.tag)
}

fn print_switched(s: &Switched, what: &str) {
    for iface in &s.links {
        println!("{iface}: switched to {what} (one atomic link update)");
    }
    for iface in &s.defunct {
        println!(
            "{iface}: its link is no longer attached (interface or namespace gone): left as it is"
        );
    }
    if !s.links.is_empty() {
        let n = s.links.len();
        println!(
            "{n} link{} switched in {:.3} ms",
            if n == 1 { "" } else { "s" },
            s.took.as_secs_f64() * 1e3
        );
    }
}

pub fn run(ctx: &Ctx, _args: Args) -> Result<ExitCode> {
    let dir = ctx.pins.dir.display();
    let report = crate::upgrade::run(&ctx.pins, &ctx.dir)?;
    if let Some(s) = &report.resumed {
        println!("{dir}: finishing an interrupted upgrade");
        print_switched(s, "the staged program");
    }
    match report.outcome {
        Outcome::NotLoaded => println!(
            "blocker is not loaded in {dir}: nothing to upgrade (`blocker attach` loads this version)"
        ),
        Outcome::UpToDate { prog: p, defunct } => {
            println!(
                "{dir}: already this version ({}, same map layout): nothing to do",
                prog(&p)
            );
            for iface in &defunct {
                println!("{iface}: its link is no longer attached (interface or namespace gone)");
            }
        }
        Outcome::Program { from, to, switched } if from == to => {
            println!(
                "{dir}: this version's program is pinned ({}); interfaces running another are \
                 switched to it",
                prog(&from)
            );
            print_switched(&switched, "the pinned program");
        }
        Outcome::Program { from, to, switched } => {
            println!("{dir}: same map layout, another program: the maps are kept");
            print_switched(&switched, "this version's program");
            println!("upgraded: {} → {}", prog(&from), prog(&to));
        }
        Outcome::Migrated {
            changes,
            from,
            to,
            switched,
            shared,
            reset,
            rules,
            orders,
            generation,
        } => {
            println!("{dir}: the map layout changed:");
            for c in &changes {
                println!("  {c}");
            }
            println!(
                "restored {rules} rules of {orders} orders (generation {generation}) and the settings \
                 into new maps"
            );
            if !shared.is_empty() {
                println!(
                    "counters carried over (shared with the new program): {}",
                    shared.join(", ")
                );
            }
            if !reset.is_empty() {
                println!(
                    "counters NOT carried over (their layout changed, they start from zero): {}",
                    reset.join(", ")
                );
            }
            print_switched(&switched, "this version's program");
            println!("upgraded: {} → {}", prog(&from), prog(&to));
            if !shared.contains(&blocker_common::MAP_EVENTS) {
                println!(
                    "the block-event ring buffer is new: restart running `blocker events` readers"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
