//! `blocker top`: the busiest rules and orders, refreshed, with rates.

use std::{
    collections::HashMap,
    io::{IsTerminal, Write},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use blocker_common::Reason;

use super::{stats::collect, Ctx};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Rules shown.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub rules: usize,
    /// Seconds between refreshes.
    #[arg(long, short = 'd', default_value_t = 2.0)]
    pub delay: f64,
    /// Stop after this many refreshes (default: until interrupted).
    #[arg(long)]
    pub iterations: Option<u64>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    if !(a.delay > 0.0 && a.delay.is_finite()) {
        bail!("--delay {}: give a positive number of seconds", a.delay);
    }
    let tty = std::io::stdout().is_terminal();
    // When, rule hits, order hits and answered queries at the previous refresh.
    type Previous = (Instant, HashMap<String, u64>, HashMap<String, u64>, u64);
    let mut prev: Option<Previous> = None;
    let mut n = 0u64;
    let mut names = super::stats::RuleNames::default();
    loop {
        // Collect more rules than shown, so rates can reorder them.
        let r = collect(ctx, None, a.rules * 4 + 16, &mut names)?;
        let now = Instant::now();
        let rules: HashMap<String, u64> = r
            .top_rules
            .iter()
            .map(|x| {
                (
                    format!("{}\t{}\t{}\t{}", x.order, x.kind, x.action, x.name),
                    x.hits,
                )
            })
            .collect();
        let orders: HashMap<String, u64> =
            r.orders.iter().map(|o| (o.name.clone(), o.hits)).collect();
        let answered: u64 = Reason::ALL
            .iter()
            .filter(|k| k.is_block())
            .map(|k| r.reasons.get(k.as_str()).copied().unwrap_or(0))
            .sum();
        let mut out = String::new();
        if tty {
            out.push_str("\x1b[H\x1b[2J");
        }
        let secs = prev
            .as_ref()
            .map(|p| now.duration_since(p.0).as_secs_f64())
            .unwrap_or(0.0);
        let rate = |now: u64, before: Option<u64>| -> f64 {
            match before {
                Some(b) if secs > 0.0 => now.saturating_sub(b) as f64 / secs,
                _ => 0.0,
            }
        };
        let packets = r.reasons.get("packets").copied().unwrap_or(0);
        out.push_str(&format!(
            "blocker top — generation {}  packets {}  blocked {} ({:.1}/s)\n\n",
            r.generation,
            packets,
            answered,
            rate(answered, prev.as_ref().map(|p| p.3))
        ));
        let mut ord: Vec<(&String, &u64, f64)> = orders
            .iter()
            .map(|(k, v)| {
                (
                    k,
                    v,
                    rate(*v, prev.as_ref().and_then(|p| p.2.get(k).copied())),
                )
            })
            .collect();
        ord.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.1.cmp(a.1)));
        out.push_str(&format!("{:>10} {:>12}  ORDER\n", "HITS/S", "HITS"));
        for (name, hits, r) in ord.iter().take(10) {
            out.push_str(&format!("{r:>10.1} {hits:>12}  {name}\n"));
        }
        let mut rl: Vec<(&String, &u64, f64)> = rules
            .iter()
            .map(|(k, v)| {
                (
                    k,
                    v,
                    rate(*v, prev.as_ref().and_then(|p| p.1.get(k).copied())),
                )
            })
            .collect();
        rl.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.1.cmp(a.1)));
        out.push_str(&format!(
            "\n{:>10} {:>12}  {:<8} {:<9} {:<40} ORDER\n",
            "HITS/S", "HITS", "MATCH", "ACTION", "NAME"
        ));
        for (key, hits, r) in rl.iter().take(a.rules) {
            let f: Vec<&str> = key.split('\t').collect();
            out.push_str(&format!(
                "{r:>10.1} {hits:>12}  {:<8} {:<9} {:<40} {}\n",
                f[1], f[2], f[3], f[0]
            ));
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(out.as_bytes())?;
        if !tty {
            stdout.write_all(b"\n")?;
        }
        stdout.flush()?;
        prev = Some((now, rules, orders, answered));
        n += 1;
        if a.iterations.is_some_and(|max| n >= max) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs_f64(a.delay));
    }
}
