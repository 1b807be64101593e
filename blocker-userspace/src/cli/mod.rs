//! The `blocker` command line: one file per verb.

pub mod attach;
pub mod config;
pub mod detach;
pub mod events;
pub mod explain;
pub mod export;
pub mod feed;
pub mod follow;
pub mod orders;
pub mod rules;
pub mod serve;
pub mod stats;
pub mod status;
pub mod top;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

use crate::{
    kernel::{Pins, DEFAULT_BPFFS},
    state::{StateDir, DEFAULT_STATE_DIR},
};

/// In-kernel DNS blocking of court-ordered domain lists.
///
/// blocker answers DNS queries for blocked names on the NIC driver path (XDP), before they
/// reach the resolver: NXDOMAIN, REFUSED, NODATA, a sinkhole address or a drop, with an
/// RFC 8914 Extended DNS Error naming the order. Everything it enforces is pinned in the BPF
/// filesystem, so blocking continues while this command is not running.
#[derive(Parser, Debug)]
#[command(name = "blocker", version, max_term_width = 100)]
pub struct Cli {
    /// Directory on the BPF filesystem holding the program, its maps and links.
    #[arg(long, global = true, env = "BLOCKER_BPFFS", default_value = DEFAULT_BPFFS)]
    pub bpffs: PathBuf,
    /// Directory holding the controller's record of orders and rules.
    #[arg(long, global = true, env = "BLOCKER_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load blocker (if needed) and attach it to interfaces.
    Attach(attach::Args),
    /// Detach blocker from interfaces (rules stay loaded), or remove everything with --purge.
    Detach(detach::Args),
    /// Show interfaces, program, rule and order counts, key filter, feeds, list generation.
    Status(status::Args),
    /// Add, remove, list and load rules.
    #[command(subcommand)]
    Rules(rules::Command),
    /// List, create, change and remove orders.
    #[command(subcommand)]
    Orders(orders::Command),
    /// Show which rule and order would decide a query, and why.
    Explain(explain::Args),
    /// Show hit counters: global exit reasons, per order, per rule.
    Stats(stats::Args),
    /// Show or change data-plane settings (DNS ports, sinkhole addresses, EDE code).
    #[command(subcommand)]
    Config(config::Command),
    /// Serve Prometheus metrics (exit reasons, per order, top rules, generation, interfaces,
    /// feeds).
    Serve(serve::Args),
    /// Write sampled block events (time, order, rule, action, client) as JSON lines.
    Events(events::Args),
    /// Live view of the busiest orders and rules, with rates.
    Top(top::Args),
    /// Orders that follow RPZ zones from primaries (AXFR/IXFR, NOTIFY, TSIG): add, list,
    /// remove.
    #[command(subcommand)]
    Feed(feed::Command),
    /// Write an order as an RPZ zone file (`--rpz ORDER`).
    Export(export::Args),
    /// Keep every feed current: transfers, NOTIFY, SOA timers (runs in the foreground, logs
    /// to stderr, stops on SIGTERM).
    Follow(follow::Args),
}

/// Where things are.
pub struct Ctx {
    pub pins: Pins,
    pub dir: StateDir,
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "blocker must run as root: it loads XDP programs and reads maps pinned in {} \
             (readable by root only)",
            cli.bpffs.display()
        );
    }
    let ctx = Ctx {
        pins: Pins::new(cli.bpffs),
        dir: StateDir::new(cli.state_dir),
    };
    match cli.command {
        Command::Attach(a) => attach::run(&ctx, a),
        Command::Detach(a) => detach::run(&ctx, a),
        Command::Status(a) => status::run(&ctx, a),
        Command::Rules(c) => rules::run(&ctx, c),
        Command::Orders(c) => orders::run(&ctx, c),
        Command::Explain(a) => explain::run(&ctx, a),
        Command::Stats(a) => stats::run(&ctx, a),
        Command::Config(c) => config::run(&ctx, c),
        Command::Serve(a) => serve::run(ctx, a),
        Command::Events(a) => events::run(&ctx, a),
        Command::Top(a) => top::run(&ctx, a),
        Command::Feed(c) => feed::run(&ctx, c),
        Command::Follow(a) => follow::run(ctx, a),
        Command::Export(a) => export::run(&ctx, a),
    }
}

/// Parses a query type given as a mnemonic (A, AAAA, MX…) or a number (TYPE65 or 65).
pub fn parse_qtype(s: &str) -> Result<u16> {
    let u = s.to_ascii_uppercase();
    let v = match u.as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "PTR" => 12,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        "NAPTR" => 35,
        "DS" => 43,
        "DNSKEY" => 48,
        "SVCB" => 64,
        "HTTPS" => 65,
        "CAA" => 257,
        "ANY" => 255,
        _ => {
            let n = u.strip_prefix("TYPE").unwrap_or(&u);
            match n.parse::<u16>() {
                Ok(v) => v,
                Err(_) => bail!("unknown query type {s:?} (use a mnemonic like AAAA or a number)"),
            }
        }
    };
    Ok(v)
}

/// The mnemonic of a query type (TYPEnnn for the rest).
pub fn parse_qtype_name(t: u16) -> String {
    let m = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        43 => "DS",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        257 => "CAA",
        _ => return format!("TYPE{t}"),
    };
    m.to_string()
}

/// Names of the qtype bits set in a rule's qtype set.
pub fn qtypes_display(mask: u16) -> String {
    if mask == blocker_common::QTYPES_ALL {
        return "all".into();
    }
    const NAMES: [&str; 16] = [
        "A", "NS", "CNAME", "SOA", "PTR", "MX", "TXT", "AAAA", "SRV", "NAPTR", "DS", "DNSKEY",
        "SVCB", "HTTPS", "ANY", "other",
    ];
    (0..16)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| NAMES[i])
        .collect::<Vec<_>>()
        .join(",")
}

/// Formats a UNIX time as RFC 3339 UTC.
pub fn time_str(secs: u64) -> String {
    if secs == 0 {
        return "-".into();
    }
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qtypes_parse() {
        assert_eq!(parse_qtype("aaaa").ok(), Some(28));
        assert_eq!(parse_qtype("TYPE65").ok(), Some(65));
        assert_eq!(parse_qtype("99").ok(), Some(99));
        assert!(parse_qtype("bogus").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(time_str(0), "-");
        assert_eq!(time_str(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
