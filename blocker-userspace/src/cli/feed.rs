//! `blocker feed`: orders whose whole content is an RPZ zone followed from primaries
//! (`blocker follow` does the following).

use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::{time_str, Ctx};
use crate::{
    feed::{
        self, load_feeds, load_key, load_status, normalize_zone, parse_primary, save_feeds, Feed,
        FeedStatus, OnExpire,
    },
    state::{now, Order},
    txn::{Controller, OrderChange},
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Make an order follow an RPZ zone from primaries (AXFR/IXFR, NOTIFY, TSIG).
    ///
    /// The zone becomes the whole content of the order, read as `rules load --format rpz`
    /// reads a zone file; the order keeps its other settings (EDE code and text, default
    /// action). `blocker follow` transfers it and keeps it current; it picks up a new or
    /// changed feed within seconds. Adding a feed for an order that already has one replaces
    /// its settings.
    Add(AddArgs),
    /// List feeds: serial enforced and the primary's, last success, lag, failures, last
    /// transfer (IXFR or AXFR), time from NOTIFY to enforcement.
    List(ListArgs),
    /// Stop following a zone. The order keeps the rules of the last copy (remove them with
    /// `blocker orders remove ORDER`).
    Remove(RemoveArgs),
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// The order (created if new).
    pub order: String,
    /// The RPZ zone's name.
    #[arg(long)]
    pub zone: String,
    /// A primary, ADDRESS or ADDRESS:PORT ([IPv6]:PORT); repeat for several: asked in order
    /// (from the last one that answered), the next one too when one has nothing newer.
    /// NOTIFY is accepted from these addresses only.
    #[arg(long = "primary", required = true, value_name = "ADDR[:PORT]")]
    pub primaries: Vec<String>,
    /// TSIG key file: BIND's `key "name" { algorithm …; secret "…"; };` (tsig-keygen), Knot's
    /// keymgr output, or one line ALGORITHM:NAME:SECRET. Transfers and SOA queries are signed
    /// and every reply verified; NOTIFY must be signed with it.
    #[arg(long, value_name = "FILE")]
    pub tsig_key: Option<PathBuf>,
    /// Seconds between SOA checks, instead of the zone's SOA refresh (retry stays the SOA's,
    /// at most this).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
    pub refresh: Option<u32>,
    /// At SOA expire (no primary reached for that long): keep enforcing the last copy
    /// (reported at every retry), or stop (withdraw the order's rules until the next
    /// transfer).
    #[arg(long, value_enum, default_value_t = OnExpire::Keep)]
    pub on_expire: OnExpire,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// The order whose feed to remove.
    pub order: String,
}

pub fn run(ctx: &Ctx, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Add(a) => add(ctx, a),
        Command::List(a) => list(ctx, a),
        Command::Remove(a) => remove(ctx, a),
    }
}

fn add(ctx: &Ctx, a: AddArgs) -> Result<ExitCode> {
    if a.order.is_empty() || a.order.len() > 128 || a.order.chars().any(char::is_control) {
        bail!(
            "order {:?}: an order name is 1 to 128 printable characters",
            a.order
        );
    }
    let zone = normalize_zone(&a.zone)?;
    let mut primaries = Vec::new();
    for p in &a.primaries {
        let addr = parse_primary(p)?;
        if !primaries.contains(&addr) {
            primaries.push(addr);
        }
    }
    let key = match &a.tsig_key {
        Some(p) => {
            let path =
                std::path::absolute(p).with_context(|| format!("--tsig-key {}", p.display()))?;
            Some((load_key(&path)?, path))
        }
        None => None,
    };
    let feed = Feed {
        order: a.order.clone(),
        zone: zone.clone(),
        primaries,
        tsig_key: key.as_ref().map(|(_, p)| p.clone()),
        refresh: a.refresh,
        on_expire: a.on_expire,
        added: now(),
    };
    // The controller holds the state directory's lock until the feed list is written.
    let mut c = Controller::open(&ctx.pins, &ctx.dir)?;
    let mut feeds = load_feeds(&ctx.dir)?;
    if let Some(other) = feeds
        .feeds
        .iter()
        .find(|f| f.zone == zone && f.order != a.order)
    {
        bail!(
            "zone {zone} is already followed by order {:?} (one order per zone; `blocker feed \
             remove {:?}` first)",
            other.order,
            other.order
        );
    }
    match c.state.order(&a.order) {
        None => {
            let order = Order::named(c.state.free_order_id()?, &a.order);
            c.apply(vec![OrderChange::Put { order, rules: None }])?;
            println!(
                "created order {:?} (no rules until the first transfer)",
                a.order
            );
        }
        Some(o) if o.rules > 0 && feeds.by_order(&a.order).is_none() => println!(
            "order {:?} has {} rules: the zone replaces them at the first transfer",
            a.order, o.rules
        ),
        Some(_) => {}
    }
    // NOTIFY's TSIG check finds a key by name and algorithm: two feeds whose keys share both
    // but not the secret cannot both be told apart.
    if let Some((k, _)) = &key {
        for other in feeds.feeds.iter().filter(|f| f.order != a.order) {
            let Some(theirs) = other.tsig_key.as_deref().and_then(|p| load_key(p).ok()) else {
                continue;
            };
            if theirs.name() == k.name()
                && theirs.key.algorithm() == k.key.algorithm()
                && theirs.fingerprint() != k.fingerprint()
            {
                eprintln!(
                    "warning: feed {:?} has a TSIG key of the same name ({}) and algorithm with \
                     another secret: a NOTIFY signed with either is checked against one of \
                     them, so the other feed's NOTIFY is refused (BADSIG) and it follows its \
                     SOA timers only; transfers are not affected. Ask one primary for a key of \
                     another name.",
                    other.order,
                    k.name()
                );
            }
        }
    }
    let replaced = feeds.by_order(&a.order).is_some();
    feeds.feeds.retain(|f| f.order != a.order);
    feeds.feeds.push(feed.clone());
    save_feeds(&ctx.dir, &feeds)?;
    drop(c);
    let primaries: Vec<String> = feed.primaries.iter().map(|p| p.to_string()).collect();
    println!(
        "{} feed {:?}: zone {zone} from {}{}, refresh {}, on expire {}",
        if replaced { "updated" } else { "added" },
        a.order,
        primaries.join(", "),
        key.map(|(k, _)| format!(" (TSIG key {})", k.name()))
            .unwrap_or_default(),
        a.refresh
            .map(|r| format!("every {r} s"))
            .unwrap_or_else(|| "by the zone's SOA".into()),
        a.on_expire.as_str()
    );
    println!("`blocker follow` picks it up within seconds");
    Ok(ExitCode::SUCCESS)
}

fn remove(ctx: &Ctx, a: RemoveArgs) -> Result<ExitCode> {
    let _lock = ctx.dir.lock()?;
    let mut feeds = load_feeds(&ctx.dir)?;
    let Some(f) = feeds.by_order(&a.order).cloned() else {
        bail!("order {:?} has no feed (see `blocker feed list`)", a.order);
    };
    feeds.feeds.retain(|x| x.order != a.order);
    save_feeds(&ctx.dir, &feeds)?;
    for p in [
        feed::zone_path(&ctx.dir, &f.zone),
        feed::status_path(&ctx.dir, &f.zone),
    ] {
        let _ = std::fs::remove_file(p);
    }
    let rules = ctx.dir.load()?.order(&a.order).map_or(0, |o| o.rules);
    println!(
        "removed the feed of order {:?} (zone {}); the order keeps its {rules} rules \
         (`blocker orders remove {:?}` removes them)",
        a.order, f.zone, a.order
    );
    Ok(ExitCode::SUCCESS)
}

/// A feed and what `follow` last recorded of it.
#[derive(Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub feed: Feed,
    /// Seconds the edge has been behind the primary's serial (0: current).
    pub lag: u64,
    /// Whether a `blocker follow` runs on this state directory: without one the status is as
    /// it was last saved, and nothing checks the primaries.
    pub follower_running: bool,
    pub status: Option<FeedStatus>,
}

/// Every feed with its status.
pub fn listed(ctx: &Ctx) -> Result<Vec<Listed>> {
    let feeds = load_feeds(&ctx.dir)?;
    let t = now();
    let running = crate::feed::follower_running(&ctx.dir);
    Ok(feeds
        .feeds
        .into_iter()
        .map(|feed| {
            let status = load_status(&ctx.dir, &feed.zone);
            Listed {
                lag: status.as_ref().map_or(0, |s| s.lag(t)),
                follower_running: running,
                feed,
                status,
            }
        })
        .collect())
}

fn ago(t: u64, now: u64) -> String {
    if t == 0 {
        return "never".into();
    }
    format!("{} ({} s ago)", time_str(t), now.saturating_sub(t))
}

/// One feed in a few lines (shared with `blocker status`).
pub fn describe(l: &Listed, now: u64) -> Vec<String> {
    let f = &l.feed;
    let primaries: Vec<String> = f.primaries.iter().map(|p| p.to_string()).collect();
    let mut out = vec![format!(
        "{:?} <- zone {} from {}{}, refresh {}, on expire {}",
        f.order,
        f.zone,
        primaries.join(", "),
        f.tsig_key
            .as_ref()
            .map(|k| format!(" (TSIG {})", k.display()))
            .unwrap_or_default(),
        f.refresh
            .map(|r| format!("{r} s"))
            .unwrap_or_else(|| "SOA".into()),
        f.on_expire.as_str()
    )];
    let Some(s) = &l.status else {
        out.push("  not followed yet (is `blocker follow` running?)".into());
        return out;
    };
    let serial = |v: Option<u32>| v.map_or("-".to_string(), |s| s.to_string());
    let state = if s.expired_at(now) {
        "EXPIRED".to_string()
    } else if l.lag > 0 {
        format!("BEHIND for {} s", l.lag)
    } else if s.serial.is_some() {
        "current".into()
    } else {
        "no copy".into()
    };
    out.push(format!(
        "  serial {} (primary {}), {state}; last success {}",
        serial(s.serial),
        serial(s.primary_serial),
        ago(s.last_success, now)
    ));
    if let Some(t) = &s.last_transfer {
        out.push(format!(
            "  last transfer {} {}→{} from {} at {}: {} records, {} ms; enforced in {} ms as generation {} ({} rules, {} names changed){}",
            t.kind.to_uppercase(),
            serial(t.from_serial),
            t.serial,
            t.primary,
            time_str(t.at),
            t.records,
            t.transfer_ms,
            t.apply_ms,
            t.generation,
            t.rules,
            t.names_changed,
            t.fallback.as_ref().map(|f| format!(" [fallback: {f}]")).unwrap_or_default()
        ));
    }
    out.push(format!(
        "  transfers {} IXFR, {} AXFR; NOTIFY→enforced {}; failures {} in a row, {} in all",
        s.ixfr_count,
        s.axfr_count,
        s.notify_to_enforce_ms
            .map_or("-".to_string(), |ms| format!("{ms} ms")),
        s.failures,
        s.failures_total
    ));
    if let Some(e) = &s.last_error {
        out.push(format!("  last error ({}): {e}", time_str(s.last_error_at)));
    }
    if !l.follower_running {
        out.push(format!(
            "  `blocker follow` is not running: this is the status it saved {}; nothing checks \
             the primaries",
            ago(s.updated, now)
        ));
    }
    out
}

/// Per-feed series for `blocker serve` (labels: order, zone).
pub fn register_metrics(reg: &mut prometheus_client::registry::Registry, ctx: &Ctx) -> Result<()> {
    use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
    use std::sync::atomic::AtomicU64;
    type Labels = Vec<(String, String)>;
    let all = listed(ctx)?;
    let gauge = |reg: &mut prometheus_client::registry::Registry, name: &str, help: &str| {
        let f = Family::<Labels, Gauge>::default();
        reg.register(name, help, f.clone());
        f
    };
    let serial = gauge(
        reg,
        "blocker_feed_serial",
        "Serial of the feed's zone enforced",
    );
    let primary = gauge(
        reg,
        "blocker_feed_primary_serial",
        "Serial the feed's primary last reported",
    );
    let success = gauge(
        reg,
        "blocker_feed_last_success_timestamp_seconds",
        "Last time a primary answered and the copy was (made) current (UNIX time)",
    );
    let lag = gauge(
        reg,
        "blocker_feed_lag_seconds",
        "How long the edge has been behind the primary's serial (0: current)",
    );
    let failing = gauge(
        reg,
        "blocker_feed_consecutive_failures",
        "Consecutive failed refreshes of the feed",
    );
    let expired = gauge(
        reg,
        "blocker_feed_expired",
        "1 when no primary was reached for the SOA expire time",
    );
    let notify = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    reg.register(
        "blocker_feed_notify_to_enforce_seconds",
        "From the last NOTIFY to the enforcement of the serial it announced",
        notify.clone(),
    );
    let failures = Family::<Labels, Counter>::default();
    reg.register(
        "blocker_feed_failures",
        "Failed refreshes of the feed (no primary answered, or the transfer failed)",
        failures.clone(),
    );
    let transfers = Family::<Labels, Counter>::default();
    reg.register(
        "blocker_feed_transfers",
        "Transfers applied, by kind (ixfr, axfr)",
        transfers.clone(),
    );
    for l in &all {
        let labels: Labels = vec![
            ("order".into(), l.feed.order.clone()),
            ("zone".into(), l.feed.zone.clone()),
        ];
        lag.get_or_create(&labels).set(l.lag as i64);
        let Some(s) = &l.status else { continue };
        if let Some(v) = s.serial {
            serial.get_or_create(&labels).set(i64::from(v));
        }
        if let Some(v) = s.primary_serial {
            primary.get_or_create(&labels).set(i64::from(v));
        }
        success.get_or_create(&labels).set(s.last_success as i64);
        failing.get_or_create(&labels).set(i64::from(s.failures));
        expired
            .get_or_create(&labels)
            .set(i64::from(s.expired_at(now())));
        if let Some(ms) = s.notify_to_enforce_ms {
            notify.get_or_create(&labels).set(ms as f64 / 1000.0);
        }
        failures.get_or_create(&labels).inc_by(s.failures_total);
        for (kind, n) in [("ixfr", s.ixfr_count), ("axfr", s.axfr_count)] {
            let mut l = labels.clone();
            l.push(("kind".into(), kind.into()));
            transfers.get_or_create(&l).inc_by(n);
        }
    }
    Ok(())
}

fn list(ctx: &Ctx, a: ListArgs) -> Result<ExitCode> {
    let all = listed(ctx)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no feeds (`blocker feed add ORDER --zone ZONE --primary ADDR`)");
    }
    let t = now();
    for l in &all {
        for line in describe(l, t) {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
