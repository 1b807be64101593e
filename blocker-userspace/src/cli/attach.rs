//! `blocker attach`: load the program (once) and attach it to interfaces.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use aya::programs::{links::FdLink, XdpMode};
use blocker_common::{DEFAULT_RULE_CAPACITY, MAX_RULE_CAPACITY};

use super::Ctx;
use crate::{
    kernel::{layout_changes, load_and_pin, pin_link, pinned_program},
    state::{now, Interface},
    txn::Controller,
};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Native (driver) XDP; generic XDP when the driver has no native support.
    Auto,
    /// Native (driver) XDP only.
    Native,
    /// Generic (skb) XDP: works on any interface, slower.
    Skb,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Interface to attach to (repeat for several).
    #[arg(long = "iface", short = 'i', required = true, value_name = "IF")]
    pub ifaces: Vec<String>,
    /// Attachment mode.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// Attach to interfaces of this network namespace (a name under /run/netns), e.g. when the
    /// edge interfaces live in a container or a test namespace. Recorded as IF@NETNS.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Attach blocker's no-op program (passes everything) instead. Native XDP_TX on a veth
    /// pair only delivers answers when the far end also runs an XDP program: attach this to
    /// the client end when testing on veths. Real NICs need nothing of the kind.
    #[arg(long)]
    pub noop: bool,
    /// Number of rules (and so names) the rule map holds before it grows [default: 65536].
    /// A change that needs more re-creates the maps at least twice as large and switches the
    /// program to them, with the same rules; on a loaded blocker, a larger value does that
    /// now (before a list known to be big arrives). The maps never shrink.
    #[arg(long, value_name = "RULES")]
    pub capacity: Option<u32>,
    /// Leave the interfaces' VLAN tag stripping (rx-vlan-offload) on. By default attach turns
    /// it off: a NIC that strips 802.1Q/802.1ad tags before XDP makes the answers to tagged
    /// queries leave untagged, and they never reach the client (the stack untags in software
    /// instead).
    #[arg(long)]
    pub keep_vlan_offload: bool,
}

/// Moves this process into a named network namespace (only the network namespace: the BPF
/// filesystem stays the one of the caller).
fn enter_netns(name: &str) -> Result<()> {
    if name.contains('/') || name.is_empty() {
        anyhow::bail!("--netns {name:?}: give the name of a namespace under /run/netns");
    }
    let path = std::path::Path::new("/run/netns").join(name);
    let f = std::fs::File::open(&path)
        .with_context(|| format!("opening network namespace {}", path.display()))?;
    // SAFETY: setns on a file descriptor we own; this process is single-threaded here.
    let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("entering network namespace {name}"));
    }
    Ok(())
}

/// Turns off VLAN tag stripping on `ifname` (see [`crate::vlan`]), saying what it did; a
/// NIC that cannot be told, or an interface without ethtool support, gets a warning.
fn keep_vlan_tags(ifname: &str, iface: &str) {
    match crate::vlan::keep_tags(ifname) {
        Ok(o) => {
            if !o.turned_off.is_empty() {
                println!(
                    "{iface}: VLAN tag stripping turned off ({}), so answers to tagged queries \
                     keep their tags (--keep-vlan-offload leaves it on)",
                    o.turned_off.join(", ")
                );
            }
            if !o.stuck.is_empty() {
                eprintln!(
                    "warning: {iface}: the driver strips VLAN tags ({}) and refuses to stop: \
                     answers to tagged queries would leave untagged",
                    o.stuck.join(", ")
                );
            }
        }
        Err(e) => log::warn!("{iface}: VLAN tag stripping not checked: {e}"),
    }
}

pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    {
        let _lock = ctx.dir.lock()?;
        crate::txn::refuse_interrupted_upgrade(&ctx.pins, &ctx.dir)?;
        if !ctx.pins.loaded() {
            let capacity = args.capacity.unwrap_or(DEFAULT_RULE_CAPACITY);
            if capacity == 0 || capacity > MAX_RULE_CAPACITY {
                bail!("--capacity {capacity}: give 1 to {MAX_RULE_CAPACITY} rules");
            }
            // After a reboot: room for every recorded rule, whatever the maps had grown to.
            let capacity = crate::txn::fresh_capacity(&ctx.dir, capacity)?;
            load_and_pin(&ctx.pins, capacity)?;
            println!(
                "loaded blocker into {} (capacity {capacity} names)",
                ctx.pins.dir.display(),
            );
        } else {
            // Never attach a program pinned by another version to more interfaces than it has:
            // its maps must first become this version's.
            crate::kernel::check_layout(&ctx.pins)?;
            let changes = layout_changes(&ctx.pins)?;
            if !changes.is_empty() {
                bail!(
                    "the maps pinned in {} are another version's ({}): run `blocker upgrade` to \
                     move the rules into this version's maps without a gap, then attach",
                    ctx.pins.dir.display(),
                    changes.join("; ")
                );
            }
        }
    }
    let mut c = Controller::open(&ctx.pins, &ctx.dir)?;
    if let Some(want) = args.capacity {
        let have = c.maps.capacity;
        if want > have {
            c.reserve(want)?;
            println!("the rule map grew from {have} to {want} rules");
        } else if want < have {
            println!("the rule map holds {have} rules already (it never shrinks)");
        }
    }
    // After a growth: the program now pinned.
    let mut prog = pinned_program(&ctx.pins, args.noop)?;
    if let Some(ns) = &args.netns {
        enter_netns(ns)?;
    }
    for ifname in &args.ifaces {
        let key = match &args.netns {
            Some(ns) => format!("{ifname}@{ns}"),
            None => ifname.clone(),
        };
        let iface = &key;
        if ctx.pins.link(iface).exists() && !crate::kernel::link_attached(&ctx.pins, iface) {
            // The interface went away and came back (a bond or VLAN re-created, a driver
            // reloaded): the kernel detached the link, whose pin stayed. Attach anew.
            println!("{iface}: the previous attachment is defunct (interface re-created): attaching again");
            std::fs::remove_file(ctx.pins.link(iface))
                .with_context(|| format!("removing the defunct link pin of {iface}"))?;
        }
        if ctx.pins.link(iface).exists() {
            let mode = c
                .state
                .interfaces
                .get(iface)
                .map(|i| i.mode.as_str())
                .unwrap_or("?");
            println!("{iface}: already attached ({mode})");
            continue;
        }
        let tries: &[(XdpMode, &str)] = match args.mode {
            Mode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "skb")],
            Mode::Native => &[(XdpMode::Driver, "native")],
            Mode::Skb => &[(XdpMode::Skb, "skb")],
        };
        let mut last_err = None;
        let mut done = None;
        for (mode, label) in tries {
            match prog.attach(ifname, *mode) {
                Ok(id) => {
                    done = Some((id, *label));
                    break;
                }
                Err(e) => {
                    if args.mode == Mode::Auto && *label == "native" {
                        println!("{iface}: native XDP failed ({e}); falling back to skb mode");
                    }
                    last_err = Some(e);
                }
            }
        }
        let Some((id, label)) = done else {
            let e = last_err
                .map(anyhow::Error::from)
                .unwrap_or_else(|| anyhow::anyhow!("no mode tried"));
            return Err(e.context(format!("attaching to {iface}")));
        };
        // Once attached (a refused attachment leaves the interface as it was).
        if !args.noop && !args.keep_vlan_offload {
            keep_vlan_tags(ifname, iface);
        }
        let label = match (args.noop, label) {
            (true, "native") => "native, no-op",
            (true, _) => "skb, no-op",
            (false, l) => l,
        };
        let link = prog.take_link(id)?;
        let link =
            FdLink::try_from(link).context("the kernel gave no bpf_link for this attachment")?;
        pin_link(&ctx.pins, iface, link)?;
        c.state.interfaces.insert(
            iface.clone(),
            Interface {
                mode: label.to_string(),
                since: now(),
            },
        );
        c.save()?;
        println!("{iface}: attached ({label})");
    }
    Ok(ExitCode::SUCCESS)
}
