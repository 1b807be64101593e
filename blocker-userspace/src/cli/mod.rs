//! The `blocker` command line: one file per verb.

pub mod attach;
pub mod config;
pub mod detach;
pub mod events;
pub mod explain;
pub mod export;
pub mod feed;
pub mod follow;
pub mod jurisdictions;
pub mod orders;
pub mod protect;
pub mod report;
pub mod rules;
pub mod serve;
pub mod stats;
pub mod status;
pub mod top;
pub mod upgrade;

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
    /// List, create, change, move (precedence) and remove orders.
    #[command(subcommand)]
    Orders(orders::Command),
    /// Named sets of client prefixes orders can be scoped to (set, list, remove).
    #[command(subcommand)]
    Jurisdictions(jurisdictions::Command),
    /// Show which rule and order would decide a query, and why, and whether a guard would
    /// refuse a block rule at that name.
    Explain(explain::Args),
    /// Protect names from being blocked by mistake (add, remove, list).
    #[command(subcommand)]
    Protect(protect::Command),
    /// The compliance report: per order its rules, when each change was enforced (time to
    /// enforcement, ticket, operator, list files' SHA-256) and its hits.
    Report(report::Args),
    /// Show hit counters: global exit reasons, per order, per rule.
    Stats(stats::Args),
    /// Show or change data-plane settings (DNS ports, sinkhole addresses, EDE code, block
    /// events, response rate limiting).
    #[command(subcommand)]
    Config(config::Command),
    /// Serve Prometheus metrics (exit reasons, per order, top rules, generation, key filter,
    /// interfaces, feeds): OpenMetrics when the scrape's Accept header asks for it, else the
    /// Prometheus text format 0.0.4.
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
    /// Replace the running program with this version's, without a moment unblocked.
    ///
    /// When the pinned maps have this version's layout, this version's program is loaded
    /// against them and every attached interface is switched to it with one atomic link
    /// update (BPF_LINK_UPDATE). When their layout changed, the recorded orders, rules,
    /// jurisdictions and settings are first restored into new maps (counters whose layout is
    /// unchanged are shared, the others start from zero, and the output says which), then the
    /// interfaces are switched and the new maps replace the old pins. Until its interface is
    /// switched the old program keeps enforcing, so no listed name passes at any moment.
    /// Interrupted, it leaves the old or the new program enforcing on each interface, and
    /// running it again finishes the job. Already up to date, it changes nothing and says so.
    Upgrade(upgrade::Args),
}

impl Command {
    /// Commands that print and change nothing the operator asked to change: when their
    /// reader goes away (`| head`) they end quietly, as other Unix tools do, instead of
    /// panicking on the closed pipe (see [`quiet_on_closed_pipe`]). What they may write
    /// (a crash recovery before any output, `report`'s daily hit history by rename) is done
    /// before they print or survives an interruption. Never a command that changes state:
    /// it must not die between two of its steps because nobody reads its output.
    pub fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Status(_)
                | Command::Explain(_)
                | Command::Report(_)
                | Command::Stats(_)
                | Command::Events(_)
                | Command::Top(_)
                | Command::Export(_)
                | Command::Rules(rules::Command::List(_))
                | Command::Orders(orders::Command::List(_))
                | Command::Jurisdictions(jurisdictions::Command::List(_))
                | Command::Protect(protect::Command::List)
                | Command::Feed(feed::Command::List(_))
                | Command::Config(config::Command::Show(_))
        )
    }
}

/// Lets a closed output pipe end the process (the default action of SIGPIPE, which the Rust
/// runtime ignores so that writes fail instead). For [`Command::only_prints`] commands only:
/// the daemons write to sockets and must live on when a peer goes away.
pub fn quiet_on_closed_pipe() {
    // SAFETY: restoring a signal's default disposition, before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// A name given on the command line: as a list line writes it (case, trailing dot, IDN,
/// all normalized), or with presentation escapes (`\032`, `\.`) as `rules list` and
/// `explain` show names that hold such bytes ([`blocker_lists::Name::from_text`]).
pub fn name_arg(s: &str) -> Result<blocker_lists::Name> {
    blocker_lists::Name::from_text(s).map_err(|e| anyhow::anyhow!("{s:?}: {e}"))
}

/// Where things are.
pub struct Ctx {
    pub pins: Pins,
    pub dir: StateDir,
}

impl Ctx {
    /// The controller's record as the data plane enforces it. A change interrupted by a crash
    /// leaves a journal; a reading command then finishes or rolls back that change first (as
    /// every changing command does), so it never shows a record that disagrees with the
    /// kernel.
    pub fn state(&self) -> Result<crate::state::StateFile> {
        if self.dir.txn_path().exists() && self.pins.loaded() {
            return Ok(crate::txn::Controller::open(&self.pins, &self.dir)?.state);
        }
        Ok(self.dir.load()?)
    }

    /// The state as last committed, without finishing an interrupted change: for `serve`,
    /// whose scrapes must neither wait for a change in progress (its lock) nor write (its
    /// unit keeps the state directory read-only but for the hits-per-day samples). During a
    /// change its figures are those of the state before it.
    pub fn state_committed(&self) -> Result<crate::state::StateFile> {
        Ok(self.dir.load()?)
    }
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
        Command::Jurisdictions(c) => jurisdictions::run(&ctx, c),
        Command::Explain(a) => explain::run(&ctx, a),
        Command::Protect(c) => protect::run(&ctx, c),
        Command::Report(a) => report::run(&ctx, a),
        Command::Stats(a) => stats::run(&ctx, a),
        Command::Config(c) => config::run(&ctx, c),
        Command::Serve(a) => serve::run(ctx, a),
        Command::Events(a) => events::run(&ctx, a),
        Command::Top(a) => top::run(&ctx, a),
        Command::Feed(c) => feed::run(&ctx, c),
        Command::Follow(a) => follow::run(ctx, a),
        Command::Export(a) => export::run(&ctx, a),
        Command::Upgrade(a) => upgrade::run(&ctx, a),
    }
}

/// Parses a query type given as a mnemonic (A, AAAA, MX…) or a number (TYPE65 or 65).
pub fn parse_qtype(s: &str) -> Result<u16> {
    if let Some(v) = blocker_common::qtype::qtype_by_name(s) {
        return Ok(v);
    }
    let u = s.to_ascii_uppercase();
    let n = u.strip_prefix("TYPE").unwrap_or(&u);
    match n.parse::<u16>() {
        Ok(v) => Ok(v),
        Err(_) => bail!("unknown query type {s:?} (use a mnemonic like AAAA or a number)"),
    }
}

/// The mnemonic of a query type (TYPEnnn for the rest).
pub fn parse_qtype_name(t: u16) -> String {
    match blocker_common::qtype::qtype_name(t) {
        Some(m) => m.to_string(),
        None => format!("TYPE{t}"),
    }
}

/// Names of the qtype bits set in a rule's qtype set.
pub fn qtypes_display(mask: u16) -> String {
    if mask == blocker_common::QTYPES_ALL {
        return "all".into();
    }
    blocker_common::qtype::qtype_bit_names(mask)
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
    fn names_on_the_command_line_as_lists_write_them_or_as_blocker_shows_them() {
        // What `rules list` prints for a name with a space in a label reads back as it.
        let escaped = name_arg("has\\032space.tst").expect("escaped");
        assert_eq!(escaped.to_string(), "has\\032space.tst");
        assert_eq!(escaped.labels().next(), Some(&b"has space"[..]));
        assert_eq!(
            name_arg("a\\.b.tst").expect("dot").labels().next(),
            Some(&b"a.b"[..])
        );
        // Plain names as ever: case, final dot, IDN.
        assert_eq!(
            name_arg("WWW.Bücher.example.").expect("plain").to_string(),
            "www.xn--bcher-kva.example"
        );
        let e = name_arg("bad name.example").expect_err("space").to_string();
        assert!(e.contains("cannot be in a host name"), "{e}");
        // An escaped `*` would make a literal `*` label that prints as a wildcard.
        let e = name_arg("\\*.example.com").expect_err("star").to_string();
        assert!(e.contains("`*`"), "{e}");
    }

    #[test]
    fn qtypes_parse() {
        assert_eq!(parse_qtype("aaaa").ok(), Some(28));
        assert_eq!(parse_qtype("TYPE65").ok(), Some(65));
        assert_eq!(parse_qtype("99").ok(), Some(99));
        assert!(parse_qtype("bogus").is_err());
        assert_eq!(parse_qtype_name(65), "HTTPS");
        assert_eq!(parse_qtype_name(257), "CAA");
        assert_eq!(parse_qtype_name(99), "TYPE99");
    }

    #[test]
    fn qtype_sets_display() {
        assert_eq!(qtypes_display(blocker_common::QTYPES_ALL), "all");
        assert_eq!(qtypes_display(1 | 1 << 7), "A,AAAA");
        assert_eq!(qtypes_display(1 << 13 | 1 << 15), "HTTPS,other");
    }

    #[test]
    fn times() {
        assert_eq!(time_str(0), "-");
        assert_eq!(time_str(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
