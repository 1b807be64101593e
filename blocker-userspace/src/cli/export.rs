//! `blocker export --rpz ORDER`: an order as an RPZ zone file.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context, Result};

use super::Ctx;
use crate::{export::rpz_zone, feed};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The order to write as an RPZ zone (re-loadable with `rules load --format rpz`, or
    /// served by a primary to other RPZ consumers).
    #[arg(long, value_name = "ORDER")]
    pub rpz: String,
    /// The zone's name; default: the zone the order follows (`blocker feed`), if any.
    #[arg(long)]
    pub zone: Option<String>,
    /// Write to this file (replaced whole) instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Leave out (as comments) the rules RPZ cannot express — REFUSED, rules restricted to
    /// some query types, sinkholes without a configured address — instead of refusing.
    #[arg(long)]
    pub skip_inexpressible: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let state = ctx.dir.load()?;
    let Some(order) = state.order(&a.rpz) else {
        bail!("no order named {:?} (see `blocker orders list`)", a.rpz);
    };
    let zone = match &a.zone {
        Some(z) => feed::normalize_zone(z)?,
        None => match feed::load_feeds(&ctx.dir)?.by_order(&a.rpz) {
            Some(f) => f.zone.clone(),
            None => bail!(
                "order {:?} follows no zone: give the zone's name with --zone",
                a.rpz
            ),
        },
    };
    let rules = ctx.dir.read_rules(order)?;
    let text = rpz_zone(
        &zone,
        state.generation,
        &order.name,
        &rules,
        &state.settings,
        a.skip_inexpressible,
    )
    .map_err(|e| anyhow::anyhow!("{e}; nothing written (--skip-inexpressible leaves them out)"))?;
    match &a.output {
        Some(path) => {
            feed::write_atomic(path, text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote order {:?} ({} rules) as zone {zone} to {}",
                order.name,
                rules.len(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
