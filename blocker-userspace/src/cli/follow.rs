//! `blocker follow`: the daemon that keeps every feed's order equal to its RPZ zone.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use anyhow::Result;

use super::Ctx;
use crate::feed::{
    follow::{run as follow, Options},
    xfr::Limits,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Answer NOTIFY from the feeds' primaries on this address (UDP and TCP), e.g.
    /// 192.0.2.53:53 or [::]:5353. Without it, feeds follow their SOA refresh timers only.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Seconds to wait for a primary: to connect, and for each message of a transfer.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,
    /// Abandon a transfer of more records than this (every record read: an AXFR's, an IXFR's
    /// SOAs, deletions and additions): a primary that never ends one would otherwise hold the
    /// feed on its old copy and grow this process's memory without bound. The default, 30
    /// million, is half as much again as a zone of 10 million names holds (20 million records:
    /// each name and its `*.` wildcard). A transfer is held in memory until it is applied; in
    /// the fleet benchmark a follower held 0.65–0.72 GB resident per million records (the zone
    /// and the order's rules), so on a host with less memory than the default needs, set the
    /// limit to what it can hold.
    #[arg(long, value_name = "N", default_value_t = 30_000_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_transfer_records: u64,
    /// Abandon a transfer that takes longer than this many seconds, from connecting to its
    /// end (the --timeout above bounds each message, not the whole).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub max_transfer_time: u64,
}

pub fn run(ctx: Ctx, a: Args) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => log::info!("SIGTERM"),
                _ = tokio::signal::ctrl_c() => log::info!("SIGINT"),
            }
        };
        let opts = Options {
            listen: a.listen,
            timeout: Duration::from_secs(a.timeout),
            limits: Limits {
                records: usize::try_from(a.max_transfer_records).unwrap_or(usize::MAX),
                time: Duration::from_secs(a.max_transfer_time),
            },
            poll: Duration::from_secs(2),
        };
        log::info!(
            "following the feeds of {} (bpffs {})",
            ctx.dir.dir.display(),
            ctx.pins.dir.display()
        );
        follow(ctx.pins, ctx.dir, opts, shutdown).await?;
        log::info!("stopped");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
