//! `blocker status`: what is loaded, where it is attached, how many rules, since when.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::{time_str, Ctx};
use crate::kernel::{pinned_program, Maps};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct IfaceStatus {
    name: String,
    mode: String,
    since: u64,
    /// The pinned link exists and is attached to an interface.
    attached: bool,
    /// The link is pinned but detached: its interface went away (re-created, driver reloaded).
    defunct: bool,
}

#[derive(Serialize)]
struct Status {
    loaded: bool,
    bpffs: String,
    state_dir: String,
    program_id: Option<u32>,
    /// The kernel's tag of the pinned program (a hash of its instructions, in hexadecimal):
    /// the same for every load of the same build.
    program_tag: Option<String>,
    verified_instructions: Option<u32>,
    interfaces: Vec<IfaceStatus>,
    orders: usize,
    rules: usize,
    capacity: Option<u32>,
    generation: u32,
    kernel_generation: Option<u32>,
    updated: u64,
    /// The key filter in front of the rule map (absent: off, or not loaded).
    key_filter: Option<crate::filter::Usage>,
    /// Orders that follow RPZ zones (`blocker feed`), with what `blocker follow` recorded.
    feeds: Vec<super::feed::Listed>,
    /// Seconds the validity windows in force are off the wall clock (the kernel's TAI offset
    /// changed since they were written); corrected by the next command that changes
    /// anything, or by `blocker follow` within a minute. Absent when they agree.
    #[serde(skip_serializing_if = "Option::is_none")]
    windows_off_by_s: Option<i64>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let state = ctx.state()?;
    if ctx.pins.map(blocker_common::MAP_RULES).exists() {
        // Refuse, rather than misreport, a directory pinned by something else.
        crate::kernel::check_layout(&ctx.pins)?;
    }
    let loaded = ctx.pins.loaded();
    let (mut program_id, mut verified, mut capacity, mut kgen) = (None, None, None, None);
    let mut program_tag = None;
    let mut key_filter = None;
    let mut windows_off_by_s = None;
    if loaded {
        let info = pinned_program(&ctx.pins, false)?.info()?;
        program_id = Some(info.id());
        program_tag = Some(format!("{:016x}", info.tag()));
        verified = info.verified_instruction_count();
        let maps = Maps::open(&ctx.pins)?;
        capacity = Some(maps.capacity);
        kgen = Some(maps.config()?.generation);
        key_filter = maps.filter_usage()?;
        windows_off_by_s = crate::txn::windows_shift_s(&maps, &state)?;
    }
    let mut names: Vec<String> = ctx.pins.attached()?;
    for n in state.interfaces.keys() {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names.sort();
    let interfaces = names
        .into_iter()
        .map(|n| {
            let rec = state.interfaces.get(&n);
            let linked = crate::kernel::link_attached(&ctx.pins, &n);
            IfaceStatus {
                attached: linked,
                defunct: !linked && ctx.pins.link(&n).exists(),
                mode: rec.map(|r| r.mode.clone()).unwrap_or_else(|| "?".into()),
                since: rec.map(|r| r.since).unwrap_or(0),
                name: n,
            }
        })
        .collect();
    let s = Status {
        loaded,
        bpffs: ctx.pins.dir.display().to_string(),
        state_dir: ctx.dir.dir.display().to_string(),
        program_id,
        program_tag,
        verified_instructions: verified,
        interfaces,
        orders: state.orders.len(),
        rules: state.orders.iter().map(|o| o.rules).sum(),
        capacity,
        generation: state.generation,
        kernel_generation: kgen,
        updated: state.updated,
        key_filter,
        feeds: super::feed::listed(ctx)?,
        windows_off_by_s,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !s.loaded {
        println!("blocker is not loaded ({} has no program)", s.bpffs);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "program    id {} tag {} ({} verified instructions), pinned in {}",
        s.program_id.unwrap_or(0),
        s.program_tag.as_deref().unwrap_or("?"),
        s.verified_instructions
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into()),
        s.bpffs
    );
    if s.interfaces.is_empty() {
        println!("interfaces none");
    }
    for i in &s.interfaces {
        let what = if i.attached {
            "attached"
        } else if i.defunct {
            "NOT attached (its interface went away or was re-created: `blocker attach` attaches \
             it again)"
        } else {
            "NOT attached (link pin missing)"
        };
        println!(
            "interface  {} {} ({}) since {}",
            i.name,
            what,
            i.mode,
            time_str(i.since)
        );
    }
    println!(
        "rules      {} in {} orders (capacity {})",
        s.rules,
        s.orders,
        s.capacity
            .map(|c| c.to_string())
            .unwrap_or_else(|| "?".into())
    );
    match &s.key_filter {
        Some(f) => println!(
            "filter     {} bits, {} set ({:.1} %): a clear bit spares a rule-map lookup",
            f.bits,
            f.set,
            100.0 * f.set as f64 / f.bits as f64
        ),
        None => println!("filter     off (every candidate name is looked up)"),
    }
    if let Some(d) = s.windows_off_by_s {
        println!(
            "windows    {d} s off the wall clock: the kernel's TAI offset changed since they \
             were written (NTP sets it after boot); the next change, or `blocker follow` within \
             a minute, rewrites them"
        );
    }
    let t = crate::state::now();
    for (i, l) in s.feeds.iter().enumerate() {
        for (j, line) in super::feed::describe(l, t).iter().enumerate() {
            let head = if i == 0 && j == 0 { "feeds" } else { "" };
            println!("{head:<10} {line}");
        }
    }
    println!(
        "generation {} (updated {})",
        s.generation,
        time_str(s.updated)
    );
    if s.kernel_generation.is_some_and(|k| k != s.generation) {
        println!(
            "WARNING    the kernel enforces generation {}",
            s.kernel_generation.unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}
