//! `blocker config`: data-plane settings that operators change at run time.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    process::ExitCode,
};

use anyhow::{bail, Result};
use blocker_common::{EDE_BLOCKED, EDE_CENSORED, MAX_PORTS, RRL_MAX};

/// Largest `--max-growth`: what a frame without tailroom can gain at its front.
const MAX_GROWTH_LIMIT: usize = blocker_common::answer::GROW_MAX;

use super::Ctx;
use crate::txn::Controller;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show the settings.
    Show(ShowArgs),
    /// Change settings; the data plane uses them from the next packet.
    Set(SetArgs),
}

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct SetArgs {
    /// DNS port to inspect, over UDP and TCP (repeat, up to 8; replaces the list).
    #[arg(long = "port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,
    /// Address of sinkhole A answers.
    #[arg(long, conflicts_with = "no_sinkhole_v4")]
    pub sinkhole_v4: Option<Ipv4Addr>,
    /// Address of sinkhole AAAA answers.
    #[arg(long, conflicts_with = "no_sinkhole_v6")]
    pub sinkhole_v6: Option<Ipv6Addr>,
    /// Remove the A sinkhole address (sinkhole rules answer NODATA to A queries).
    #[arg(long)]
    pub no_sinkhole_v4: bool,
    /// Remove the AAAA sinkhole address.
    #[arg(long)]
    pub no_sinkhole_v6: bool,
    /// TTL of sinkhole records, in seconds.
    #[arg(long)]
    pub sinkhole_ttl: Option<u32>,
    /// Largest TTL of an answer from RPZ local data (the zone's record TTL is used up to
    /// this; BIND's max-policy-ttl). Default 300.
    #[arg(long, value_name = "SECONDS")]
    pub local_ttl_max: Option<u32>,
    /// Most bytes an answer over UDP may add to the query it replaces: the amplification
    /// bound a spoofed query can exploit. Room for local data records, the policy zone's SOA
    /// and the whole EDE text; what does not fit is left out (SOA first, then the text, then
    /// records). Answers over TCP may grow by 192, the most a frame gains. Default 64, at
    /// most 192.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u16).range(16..=MAX_GROWTH_LIMIT as i64))]
    pub max_growth: Option<u16>,
    /// EDE info-code of orders that set none: 16 (Censored) or 15 (Blocked).
    #[arg(long)]
    pub ede_code: Option<u16>,
    /// Block events (`blocker events`): 0 off; N: the first hit of each rule, then every Nth.
    #[arg(long, value_name = "N")]
    pub events_every: Option<u32>,
    /// Client address in block events.
    #[arg(long, value_parser = ["full", "truncated", "none"])]
    pub events_privacy: Option<String>,
    /// Response rate limiting: answers per second a client prefix gets (0 turns it off).
    /// Counted per CPU: a prefix whose queries several CPUs receive gets up to N × CPUs.
    /// Default 200.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=RRL_MAX as i64))]
    pub rrl_rate: Option<u32>,
    /// Response rate limiting: answers a client prefix may get at once before the rate
    /// applies (per CPU). Default 400.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=RRL_MAX as i64))]
    pub rrl_burst: Option<u32>,
    /// Response rate limiting: over the limit, every Nth query gets a bare TC=1 answer (a
    /// real client retries over TCP) and the others are dropped; 0 drops all, 1 answers all
    /// with TC=1. Default 2.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=100))]
    pub rrl_slip: Option<u16>,
    /// Response rate limiting: IPv4 clients share a bucket per prefix of this length.
    /// Default 24.
    #[arg(long, value_name = "LEN", value_parser = clap::value_parser!(u8).range(0..=32))]
    pub rrl_v4_prefix: Option<u8>,
    /// Response rate limiting: IPv6 clients share a bucket per prefix of this length.
    /// Default 56.
    #[arg(long, value_name = "LEN", value_parser = clap::value_parser!(u8).range(0..=128))]
    pub rrl_v6_prefix: Option<u8>,
}

pub fn run(ctx: &Ctx, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Show(a) => {
            let state = ctx.state()?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&state.settings)?);
            } else {
                let s = &state.settings;
                let ports: Vec<String> = s.ports.iter().map(u16::to_string).collect();
                println!("ports         {}", ports.join(" "));
                println!(
                    "sinkhole-v4   {}",
                    s.sinkhole_v4
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "none".into())
                );
                println!(
                    "sinkhole-v6   {}",
                    s.sinkhole_v6
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "none".into())
                );
                println!("sinkhole-ttl  {}", s.sinkhole_ttl);
                println!("local-ttl-max {}", s.local_ttl_max);
                println!("max-growth    {} bytes (UDP)", s.max_growth);
                println!("ede-code      {}", s.default_ede);
                println!("events-every  {}", s.events_every);
                println!("events-privacy {}", s.events_privacy);
                if s.rrl_rate == 0 {
                    println!("rrl-rate      0 (off)");
                } else {
                    println!("rrl-rate      {}/s per prefix, per CPU", s.rrl_rate);
                }
                println!("rrl-burst     {}", s.rrl_burst);
                println!("rrl-slip      {}", s.rrl_slip);
                println!("rrl-v4-prefix {}", s.rrl_v4_prefix);
                println!("rrl-v6-prefix {}", s.rrl_v6_prefix);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Set(a) => {
            let mut c = Controller::open(&ctx.pins, &ctx.dir)?;
            let mut s = c.state.settings.clone();
            if !a.ports.is_empty() {
                if a.ports.len() > MAX_PORTS {
                    bail!(
                        "--port given {} times; at most {MAX_PORTS} ports",
                        a.ports.len()
                    );
                }
                let mut p = a.ports.clone();
                p.dedup();
                s.ports = p;
            }
            if let Some(v) = a.sinkhole_v4 {
                s.sinkhole_v4 = Some(v);
            }
            if a.no_sinkhole_v4 {
                s.sinkhole_v4 = None;
            }
            if let Some(v) = a.sinkhole_v6 {
                s.sinkhole_v6 = Some(v);
            }
            if a.no_sinkhole_v6 {
                s.sinkhole_v6 = None;
            }
            if let Some(t) = a.local_ttl_max {
                s.local_ttl_max = t;
            }
            if let Some(g) = a.max_growth {
                s.max_growth = g;
            }
            if let Some(t) = a.sinkhole_ttl {
                s.sinkhole_ttl = t;
            }
            if let Some(code) = a.ede_code {
                if code != EDE_BLOCKED && code != EDE_CENSORED {
                    bail!("--ede-code {code}: use 16 (Censored) or 15 (Blocked)");
                }
                s.default_ede = code;
            }
            if let Some(n) = a.events_every {
                s.events_every = n;
            }
            if let Some(p) = a.events_privacy {
                s.events_privacy = p;
            }
            if let Some(n) = a.rrl_rate {
                s.rrl_rate = n;
            }
            if let Some(n) = a.rrl_burst {
                s.rrl_burst = n;
            }
            if let Some(n) = a.rrl_slip {
                s.rrl_slip = n;
            }
            if let Some(n) = a.rrl_v4_prefix {
                s.rrl_v4_prefix = n;
            }
            if let Some(n) = a.rrl_v6_prefix {
                s.rrl_v6_prefix = n;
            }
            c.set_settings(s)?;
            println!("settings updated");
            Ok(ExitCode::SUCCESS)
        }
    }
}
