//! `blocker protect`: names that must never be blocked by mistake.

use std::process::ExitCode;

use anyhow::{bail, Result};
use blocker_common::Action;

use super::Ctx;
use crate::{
    compliance::{self, Audit, Record},
    guard::{blocks_protected, read_protected, write_protected},
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Protect a name and every name below it: a block rule that would block any of them
    /// (at the name or below it, or a subtree or below rule at an ancestor) is refused
    /// unless --force is given. Rules already loaded are not removed (they are listed).
    Add(NameArgs),
    /// Stop protecting a name.
    Remove(NameArgs),
    /// List the protected names.
    List,
}

#[derive(clap::Args, Debug)]
pub struct NameArgs {
    /// Domain name (IDN allowed).
    pub name: String,
    #[command(flatten)]
    pub audit: Audit,
}

pub fn run(ctx: &Ctx, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Add(a) => change(ctx, a, true),
        Command::Remove(a) => change(ctx, a, false),
        Command::List => {
            for n in read_protected(&ctx.dir)? {
                println!("{n}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn change(ctx: &Ctx, a: NameArgs, add: bool) -> Result<ExitCode> {
    let started = jiff::Timestamp::now();
    let name = super::name_arg(&a.name)?;
    let _lock = ctx.dir.lock()?;
    let mut names = read_protected(&ctx.dir)?;
    let present = names.contains(&name);
    if add {
        if present {
            println!("{name} is already protected");
            return Ok(ExitCode::SUCCESS);
        }
        names.push(name.clone());
    } else {
        if !present {
            bail!("{name} is not protected (see `blocker protect list`)");
        }
        names.retain(|n| *n != name);
    }
    write_protected(&ctx.dir, &names)?;
    let command = if add { "protect add" } else { "protect remove" };
    let mut rec = Record::new(command, started, None, None, &a.audit);
    rec.name = Some(name.to_string());
    compliance::append(&ctx.dir, &rec)?;
    if !add {
        println!("{name} is no longer protected");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{name} and every name below it are protected");
    // Rules loaded before the protection stay: say which of them block the name.
    let state = ctx.dir.load()?;
    for o in &state.orders {
        for r in ctx.dir.read_rules(o)? {
            if r.action == Action::Pass {
                continue;
            }
            if blocks_protected(&r.name, r.kind, &name) {
                println!(
                    "warning: order {:?} already has a {} {} rule for {} ({}) that blocks it; \
                     the protection applies to rules added or loaded from now on",
                    o.name,
                    r.kind.as_str(),
                    r.action.as_str(),
                    r.name,
                    r.source
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
