//! `blocker events`: sampled block events from the XDP program's ring buffer, as JSON lines —
//! the audit trail of what was blocked, when, under which order.
//!
//! Sampling and privacy are data-plane settings (`blocker config set --events-every N
//! --events-privacy full|truncated|none`): the first hit of each rule after each list change,
//! then every Nth hit of the rule; client addresses in full, truncated to /24 and /48, or
//! withheld.

use std::{
    collections::HashMap,
    fs::OpenOptions,
    io::Write,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context, Result};
use aya::maps::{MapData, RingBuf};
use blocker_common::{Action, BlockEvent, MAP_EVENTS};
use serde::Serialize;

use super::{parse_qtype_name, time_str, Ctx};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Append events to this file instead of writing them to stdout.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Exit after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Exit after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    time_unix_ns: u128,
    /// The list generation the verdict was reached under.
    generation: u32,
    /// Order and rule in force at that generation; null when that generation is older than
    /// the history the state directory keeps (never a guess from a later list).
    order: Option<&'a str>,
    rule: Option<&'a str>,
    #[serde(rename = "match")]
    kind: Option<&'a str>,
    action: &'static str,
    qtype: String,
    client: Option<String>,
    first_hit: bool,
    /// The order is in shadow mode: `action` is what it would have done; the query was not
    /// answered by it.
    shadow: bool,
}

/// Rule id → (order, name, match) of one generation.
type Names = HashMap<u32, (String, String, &'static str)>;

/// The rules in force at `generation`, from the recorded state or its history; `None` when
/// that generation is no longer recorded.
fn names_at(ctx: &Ctx, generation: u32) -> Result<Option<Names>> {
    // A reading command first finishes an interrupted change (`Ctx::state`).
    ctx.state()?;
    let Some(state) = ctx.dir.load_generation(generation)? else {
        return Ok(None);
    };
    let mut m = HashMap::new();
    for o in &state.orders {
        for r in ctx.dir.read_rules(o)? {
            m.insert(r.id, (o.name.clone(), r.name.to_string(), r.kind.as_str()));
        }
    }
    Ok(Some(m))
}

fn monotonic_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let path = ctx.pins.map(MAP_EVENTS);
    if !path.exists() {
        bail!(
            "{} does not exist: blocker is not loaded (run `blocker attach` first)",
            path.display()
        );
    }
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut ring = RingBuf::try_from(aya::maps::Map::RingBuf(data))?;
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    // Kernel timestamps are CLOCK_MONOTONIC; this offset turns them into wall time.
    let wall_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let offset = wall_now.saturating_sub(monotonic_ns());
    // Names by generation, loaded when an event of that generation first arrives.
    let mut by_gen: HashMap<u32, Option<Names>> = HashMap::new();
    let started = Instant::now();
    let mut seen = 0u64;
    loop {
        let mut got = false;
        while let Some(item) = ring.next() {
            got = true;
            if item.len() < std::mem::size_of::<BlockEvent>() {
                continue;
            }
            // SAFETY: the kernel wrote a BlockEvent (#[repr(C)], plain integers) of this size.
            let ev: BlockEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            drop(item);
            if let std::collections::hash_map::Entry::Vacant(e) = by_gen.entry(ev.generation) {
                let names = names_at(ctx, ev.generation)?;
                if names.is_none() {
                    eprintln!(
                        "blocker events: generation {} is older than the {} the state \
                         directory keeps: its events are written without order and rule",
                        ev.generation,
                        crate::state::HISTORY
                    );
                }
                e.insert(names);
            }
            let found = by_gen
                .get(&ev.generation)
                .and_then(|m| m.as_ref())
                .and_then(|m| m.get(&ev.rule_id));
            let (order, rule, kind) = match found {
                Some((o, n, k)) => (Some(o.as_str()), Some(n.as_str()), Some(*k)),
                None => (None, None, None),
            };
            let client = match ev.family {
                4 => Some(
                    Ipv4Addr::new(ev.client[0], ev.client[1], ev.client[2], ev.client[3])
                        .to_string(),
                ),
                6 => Some(Ipv6Addr::from(ev.client).to_string()),
                _ => None,
            };
            let unix_ns = ev.time_ns as u128 + offset;
            let line = Line {
                time: format!(
                    "{}.{:09}",
                    time_str((unix_ns / 1_000_000_000) as u64).trim_end_matches('Z'),
                    unix_ns % 1_000_000_000
                ) + "Z",
                time_unix_ns: unix_ns,
                generation: ev.generation,
                order,
                rule,
                kind,
                action: Action::from_u8(ev.action).as_str(),
                qtype: parse_qtype_name(ev.qtype),
                client,
                first_hit: ev.first == 1,
                shadow: ev.shadow == 1,
            };
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
            seen += 1;
            if a.count.is_some_and(|c| seen >= c) {
                out.flush()?;
                return Ok(ExitCode::SUCCESS);
            }
        }
        out.flush()?;
        if a.duration
            .is_some_and(|d| started.elapsed().as_secs_f64() >= d)
        {
            return Ok(ExitCode::SUCCESS);
        }
        if !got {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
