//! `blocker detach`: remove attachments; with --purge, everything blocker pinned and recorded.

use std::{fs, process::ExitCode};

use anyhow::{bail, Context, Result};

use super::Ctx;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Interface to detach from, as `blocker status` names it (IF@NETNS when attached with
    /// --netns); repeat for several; all interfaces when omitted.
    #[arg(long = "iface", short = 'i', value_name = "IF")]
    pub ifaces: Vec<String>,
    /// Also unload the program and delete all rules, orders, counters and the state directory.
    #[arg(long)]
    pub purge: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let _lock = ctx.dir.lock()?;
    let all = ctx.pins.attached()?;
    let recorded = ctx.dir.load()?.interfaces;
    let targets = if args.ifaces.is_empty() {
        // Those attached, and those recorded without a link (after a reboot, an interface
        // the restore unit does not list): forgotten too.
        let mut t = all.clone();
        t.extend(recorded.keys().filter(|i| !all.contains(i)).cloned());
        t
    } else {
        args.ifaces.clone()
    };
    for iface in &targets {
        let path = ctx.pins.link(iface);
        if !path.exists() {
            if recorded.contains_key(iface) {
                // Recorded but not pinned: nothing to detach, only the record to drop (the
                // BlockerNotAttached alert stops).
                println!("{iface}: forgotten (it was recorded, but not attached)");
                continue;
            }
            if args.ifaces.is_empty() {
                continue;
            }
            bail!("{iface}: not attached (no {})", path.display());
        }
        // The pin is the last reference to the link: removing it detaches the program.
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        println!("{iface}: detached");
    }
    let mut state = ctx.dir.load()?;
    for iface in &targets {
        state.interfaces.remove(iface);
    }
    if args.purge {
        if ctx.pins.dir.exists() {
            fs::remove_dir_all(&ctx.pins.dir)
                .with_context(|| format!("removing {}", ctx.pins.dir.display()))?;
        }
        if ctx.dir.dir.exists() {
            for e in fs::read_dir(&ctx.dir.dir)? {
                let p = e?.path();
                if p.file_name().is_some_and(|n| n == "lock") {
                    continue;
                }
                if p.is_dir() {
                    fs::remove_dir_all(&p)?;
                } else {
                    fs::remove_file(&p)?;
                }
            }
        }
        println!(
            "purged {} and {}",
            ctx.pins.dir.display(),
            ctx.dir.dir.display()
        );
    } else if ctx.dir.state_path().exists() {
        ctx.dir.save(&state)?;
    }
    Ok(ExitCode::SUCCESS)
}
