//! `blocker follow`: keeps every feed's order equal to its zone on the primaries.
//!
//! One task per feed:
//! 1. At start, the saved copy (`feeds/<zone>.zone`) is enforced again (a no-op when the
//!    order already holds it) and its serial is where the IXFR resumes.
//! 2. Then, at the SOA refresh interval (or `--refresh`), at the SOA retry interval after a
//!    failure, and at once on a NOTIFY from a primary: ask the primaries in turn for the SOA;
//!    if the serial is newer, IXFR from the enforced serial (AXFR with no copy yet, or when
//!    the primary cannot serve the difference: NOTIMP, REFUSED, FORMERR, a lone SOA with
//!    another serial, or a difference that does not apply to the copy).
//! 3. A transfer is applied only once complete: the zone is read as RPZ (the same reading as
//!    `rules load --format rpz`), and the order's rules are replaced through the controller in
//!    one generation (only the names whose rules change are written). Any failure — no
//!    answer, a cut transfer, a bad TSIG, a record that is not valid RPZ — leaves the last
//!    good copy enforced; the error is logged and recorded in the feed's status.
//! 4. Without contact for the SOA expire time the copy expires: kept (default, reported at
//!    every retry) or withdrawn (`--on-expire stop`) until the next successful transfer.
//!
//! The feed list is re-read every few seconds: `feed add/remove` take effect without a
//! restart.

use std::{
    collections::HashMap,
    fs,
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use blocker_common::Action;
use tokio::sync::{mpsc, watch};

use super::{
    load_feeds, load_key, load_status, notify, save_status, serial_newer,
    xfr::{apex_of, Full, Ixfr, Limits, Primary, XfrError},
    zone::{serial_of, Zone},
    zone_path, Feed, FeedError, FeedStatus, FeedsFile, OnExpire, TransferReport,
};
use crate::{
    kernel::Pins,
    state::{now, Order, Rule, Source, StateDir},
    txn::{Controller, OrderChange, RulesCache},
};

/// The longest wait between refreshes a zone's SOA can set (seconds: a day).
const MAX_SOA_REFRESH: u32 = 86_400;

/// NOTIFYs a feed's task holds before it reads them (see where its queue is made).
const NOTICES_PENDING: usize = 64;

/// How `follow` runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where to answer NOTIFY (UDP and TCP); None: no NOTIFY, timers only.
    pub listen: Option<SocketAddr>,
    /// Per exchange with a primary: connecting, and waiting for each message.
    pub timeout: Duration,
    /// Bounds on one transfer.
    pub limits: Limits,
    /// How often the feed list is re-read.
    pub poll: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Feeds(#[from] FeedError),
    #[error("cannot answer NOTIFY on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{path}: another `blocker follow` is running on this state directory", path = path.display())]
    Running { path: PathBuf },
}

/// Holds `feeds/follow.lock` (flock) while `follow` runs: two followers of one state
/// directory would transfer and apply everything twice.
struct Single {
    _file: fs::File,
}

fn single(dir: &StateDir) -> Result<Single, FollowError> {
    let path = super::feeds_dir(dir).join("follow.lock");
    let io = |source| {
        FollowError::Feeds(FeedError::Io {
            path: path.clone(),
            source,
        })
    };
    fs::create_dir_all(super::feeds_dir(dir)).map_err(io)?;
    let file = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    // SAFETY: flock on a file descriptor we own.
    let r = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    if r != 0 {
        return Err(FollowError::Running { path });
    }
    Ok(Single { _file: file })
}

struct Shared {
    pins: Pins,
    dir: StateDir,
    registry: notify::Registry,
    timeout: Duration,
    limits: Limits,
    /// Every order's rules in memory, for IXFRs applied as edits (see [`crate::txn::RulesCache`]).
    cache: std::sync::Mutex<RulesCache>,
}

struct Running {
    feed: Feed,
    /// The TSIG key file's content when the task started (None: no key, or unreadable).
    key: Option<Vec<u8>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Follows the feeds of `dir` until `shutdown` completes.
pub async fn run(
    pins: Pins,
    dir: StateDir,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FollowError> {
    let _single = single(&dir)?;
    let registry = notify::Registry::default();
    // Refuse a broken feed list at start (later it is re-read and a broken one is reported).
    let current: FeedsFile = load_feeds(&dir)?;
    let _listeners = match opts.listen {
        Some(addr) => {
            let l = notify::listen(addr, registry.clone())
                .await
                .map_err(|source| FollowError::Listen { addr, source })?;
            log::info!("answering NOTIFY on {addr} (UDP and TCP) from the feeds' primaries");
            Some(l)
        }
        None => {
            log::warn!(
                "no --listen: NOTIFY is not answered; feeds follow their SOA refresh timers"
            );
            None
        }
    };
    let shared = Arc::new(Shared {
        pins,
        dir,
        registry,
        timeout: opts.timeout,
        limits: opts.limits,
        cache: std::sync::Mutex::new(RulesCache::default()),
    });
    let mut running: HashMap<String, Running> = HashMap::new();
    reconcile(&shared, &mut running, &current);
    if current.feeds.is_empty() {
        log::warn!("no feeds configured yet (`blocker feed add`); watching the feed list");
    }
    tokio::pin!(shutdown);
    let mut clock_checked = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(opts.poll) => {}
        }
        if clock_checked.elapsed() >= Duration::from_secs(60) {
            clock_checked = std::time::Instant::now();
            let s = shared.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || follow_the_clock(&s)).await {
                log::error!("validity windows not checked: {e}");
            }
        }
        // Every poll, not only when the list changed: a TSIG key file rotated in place
        // restarts its feed (see `key_bytes`).
        match load_feeds(&shared.dir) {
            Ok(f) => reconcile(&shared, &mut running, &f),
            Err(e) => log::error!("{e}; the feeds keep running as they were"),
        }
    }
    log::info!("stopping: no transfer is applied after this point");
    for (_, r) in running.drain() {
        let _ = r.stop.send(true);
        // A change being applied finishes (it is atomic either way); then the task ends.
        let _ = tokio::time::timeout(Duration::from_secs(60), r.task).await;
    }
    Ok(())
}

/// Rewrites the orders' validity windows if the kernel's TAI offset moved since they were
/// written (NTP sets it after boot): a look without the lock first, the controller (whose
/// opening rewrites them) only when they are off.
fn follow_the_clock(shared: &Shared) -> anyhow::Result<()> {
    if !shared.pins.loaded() {
        return Ok(());
    }
    let maps = crate::kernel::Maps::open(&shared.pins)?;
    let state = shared.dir.load()?;
    if crate::txn::windows_shift_s(&maps, &state)?.is_some() {
        drop(maps);
        Controller::open(&shared.pins, &shared.dir)?;
    }
    Ok(())
}

/// What a feed's TSIG key file holds now: a key rotated in place (the same path, a new
/// secret) restarts the feed's task, which reads it again.
fn key_bytes(feed: &Feed) -> Option<Vec<u8>> {
    feed.tsig_key.as_ref().and_then(|p| fs::read(p).ok())
}

/// Starts the feeds that are new or changed, stops the ones removed or changed (a changed
/// TSIG key file included).
fn reconcile(shared: &Arc<Shared>, running: &mut HashMap<String, Running>, feeds: &FeedsFile) {
    running.retain(|order, r| {
        let same = feeds.by_order(order) == Some(&r.feed);
        let keep = same
            && match &r.feed.tsig_key {
                // Changed: restarted only once the file reads as a key again; a file being
                // rewritten in place, or gone for a moment, leaves the feed running with the
                // key it has.
                Some(p) if key_bytes(&r.feed) != r.key => load_key(p).is_err(),
                _ => true,
            };
        if !same {
            log::info!("{}: feed removed or changed, stopping it", r.feed.zone);
        } else if !keep {
            log::info!("{}: its TSIG key file changed, restarting it", r.feed.zone);
        }
        if !keep {
            let _ = r.stop.send(true);
            shared.registry.remove(&r.feed.zone);
        }
        keep
    });
    for feed in &feeds.feeds {
        if running.contains_key(&feed.order) {
            continue;
        }
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(follow_feed(shared.clone(), feed.clone(), stopped));
        running.insert(
            feed.order.clone(),
            Running {
                feed: feed.clone(),
                key: key_bytes(feed),
                stop,
                task,
            },
        );
    }
}

/// One feed's state in its task.
struct Follower {
    shared: Arc<Shared>,
    feed: Feed,
    apex: domain::base::Name<bytes::Bytes>,
    primaries: Vec<Primary>,
    /// The copy enforced (or withdrawn at expiry: `enforced` false).
    zone: Option<Zone>,
    enforced: bool,
    /// Rules the order holds from `zone` (when enforced).
    rules: usize,
    st: FeedStatus,
    /// The serial the order holds with no copy in memory: the saved copy was older and
    /// refused at start (see `restore`). No whole zone older than it is applied.
    floor: Option<u32>,
    /// The earliest NOTIFY not yet followed by the enforcement of what it announced.
    pending: Option<notify::Notice>,
    /// When the last transfer was enforced (its flip), if it changed anything.
    flipped: Option<Instant>,
    /// The primary that answered last (tried first).
    first: usize,
}

async fn follow_feed(shared: Arc<Shared>, feed: Feed, mut stop: watch::Receiver<bool>) {
    let zone_name = feed.zone.clone();
    let mut f = match Follower::new(shared.clone(), feed) {
        Ok(f) => f,
        Err(b) => {
            let (mut st, e) = *b;
            // A feed that cannot even start (its key file is unreadable, say) says so in its
            // status until it is fixed (`feed add` again, which restarts it).
            log::error!("{zone_name}: {e}");
            st.last_error = Some(e);
            st.last_error_at = now();
            st.failures += 1;
            st.failures_total += 1;
            st.updated = now();
            let _ = save_status(&shared.dir, &st);
            let _ = stop.changed().await;
            return;
        }
    };
    // Bounded: NOTIFYs that arrive while a transfer runs wait here, and past a few dozen more
    // say nothing the first did not (the next refresh asks the primary anyway); a flood of
    // them, spoofed from a primary's address, cannot grow the follower's memory.
    let (tx, mut notices) = mpsc::channel(NOTICES_PENDING);
    shared.registry.set(
        &f.feed.zone,
        notify::Listening {
            primaries: f.primaries.iter().map(|p| p.addr.ip()).collect(),
            key: f.primaries.first().and_then(|p| p.key.clone()),
            tx,
        },
    );
    f.restore().await;
    'feed: loop {
        let started = Instant::now();
        let ok = tokio::select! {
            r = f.refresh() => r,
            _ = stop.changed() => break,
        };
        f.after(ok).await;
        f.st.updated = now();
        if let Err(e) = save_status(&f.shared.dir, &f.st) {
            log::error!("{}: {e}", f.feed.zone);
        }
        // Until the timer, or a NOTIFY that may announce something new: one whose serial is
        // not newer than the copy's is noted, not acted on (a flood of them, spoofed or
        // repeated, costs no SOA query).
        let deadline = tokio::time::Instant::now() + f.wait(ok);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                n = notices.recv() => {
                    let Some(n) = n else { break };
                    let ours = f.zone.as_ref().map(Zone::serial);
                    let mut news = !matches!((n.serial, ours), (Some(s), Some(o)) if !serial_newer(s, o));
                    if news {
                        f.noticed(n);
                    } else {
                        f.st.last_notify = now();
                    }
                    while let Ok(n) = notices.try_recv() {
                        if matches!((n.serial, ours), (Some(s), Some(o)) if !serial_newer(s, o)) {
                            f.st.last_notify = now();
                        } else {
                            news = true;
                            f.noticed(n);
                        }
                    }
                    if news {
                        break;
                    }
                }
                _ = stop.changed() => break 'feed,
            }
        }
        // At most one refresh a second, NOTIFY or not.
        let rest = Duration::from_secs(1).saturating_sub(started.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(rest) => {}
            _ = stop.changed() => break,
        }
    }
}

/// A short account of what a zone's RPZ reading skipped.
fn skipped(u: &std::collections::BTreeMap<String, usize>) -> String {
    u.iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What an applied change did.
struct Applied {
    rules: usize,
    names_changed: usize,
    generation: u32,
    added: usize,
    removed: usize,
    ms: u64,
    /// When the flip that enforced it returned (None: nothing to change).
    flipped: Option<std::time::SystemTime>,
}

impl Applied {
    /// What a change (`summary`) that leaves the order with `rules` rules applied, in `ms`.
    fn of(summary: &crate::txn::Summary, rules: usize, ms: u64) -> Applied {
        Applied {
            rules,
            names_changed: summary.names_changed,
            generation: summary.generation,
            added: summary.rules_added,
            removed: summary.rules_removed,
            ms,
            flipped: summary.enforced,
        }
    }
}

/// An IXFR as an edit of the order: the rules its owners gave before and give after.
struct Incremental {
    /// The difference sequences (journaled with the saved copy).
    batches: Vec<super::zone::Batch>,
    /// Serial the order holds now, and its rule count.
    from: u32,
    rules_before: usize,
    before: Vec<Rule>,
    after: Vec<Rule>,
    /// The zone's SOA after the difference (wire form), as the order keeps it.
    soa: Option<Vec<u8>>,
}

/// The rules of an RPZ reading, as the order records them.
fn rules_of(out: blocker_lists::ParseOutcome, file: &Arc<str>) -> Vec<Rule> {
    let file = Source::at(file, 0);
    out.rules
        .into_iter()
        .map(|p| Rule {
            name: p.name,
            kind: p.kind,
            action: p.action.unwrap_or(Action::Nxdomain),
            qtypes: p.qtypes,
            id: 0,
            source: file.line(p.line),
            local: p.local,
            local_id: 0,
        })
        .collect()
}

/// Refuses a serial whose new rules the guards refuse (a public suffix, a name above one, a
/// protected name), as `rules load` refuses them without --force: nobody is there to force
/// a transfer, so the serial is not applied and the edge keeps the copy it enforces; the
/// error stays in the feed's status until a serial without them arrives. Each rule is judged
/// by the action it takes in force: the order's policy override (`orders set --override`),
/// if it has one, else its own.
fn check_guards(shared: &Shared, feed: &Feed, serial: u32, rules: &[Rule]) -> Result<(), String> {
    let guards = crate::guard::Guards::load(&shared.dir, None).map_err(|e| e.to_string())?;
    let over = shared
        .dir
        .load()
        .map_err(|e| e.to_string())?
        .order(&feed.order)
        .and_then(|o| o.override_action);
    let refused = guards.refusals(rules, over);
    if refused.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 3;
    let first: Vec<String> = refused
        .iter()
        .take(SHOWN)
        .map(|(r, why)| format!("{}: {why}", r.source))
        .collect();
    Err(format!(
        "serial {serial}: {} block rule{} refused by the guards ({}{}); nothing applied, the \
         last good copy stays enforced",
        refused.len(),
        if refused.len() == 1 { "" } else { "s" },
        first.join("; "),
        if refused.len() > SHOWN { "; …" } else { "" }
    ))
}

/// Appends the compliance record of a serial enforced (`blocker report`), if the change
/// changed anything: the command is the transfer (`follow IXFR 7→8 from 192.0.2.53`), the
/// file the copy (or the IXFR's journal entry) with its SHA-256, the ticket the serial, the
/// operator the follower.
fn record(
    feed: &Feed,
    how: &str,
    serial: u32,
    started: jiff::Timestamp,
    file: &std::path::Path,
    s: &crate::txn::Summary,
    dir: &StateDir,
) {
    if s.enforced.is_none() {
        return;
    }
    let audit = crate::compliance::Audit {
        ticket: Some(format!("rpz {} serial {serial}", feed.zone)),
        operator: Some("blocker follow".into()),
    };
    let mut rec = crate::compliance::Record::new(
        &format!("follow {how}"),
        started,
        Some(&feed.order),
        Some(s),
        &audit,
    );
    if let Ok(bytes) = fs::read(file) {
        rec.files = vec![crate::compliance::FileHash {
            path: file.display().to_string(),
            sha256: crate::compliance::sha256_hex(&bytes),
        }];
    }
    if let Err(e) = crate::compliance::append(dir, &rec) {
        log::error!(
            "{}: serial {serial} enforced, but not recorded: {e}",
            feed.zone
        );
    }
}

/// What an order's `sources` say when it holds serial `serial` of the feed's zone.
fn source_words(feed: &Feed, serial: u32) -> String {
    format!("rpz {} serial {serial}", feed.zone)
}

/// Applies an IXFR as an edit of the order (blocking): the difference joins the saved copy's
/// journal, the controller removes and adds the rules of the owners it touched. `Ok(None)`:
/// the order is not what the edit starts from (or the edit touches local data): nothing was
/// changed, the caller replaces the order's rules whole.
fn enforce_edit(
    shared: &Shared,
    feed: &Feed,
    zone: &Zone,
    source: &str,
    inc: &Incremental,
) -> Result<Option<Applied>, String> {
    let t0 = Instant::now();
    let path = zone_path(&shared.dir, &feed.zone);
    let serial = zone.serial();
    // What a rule does, for comparing the two readings (the owners read alone have no local
    // data: `Zone::rpz_owners`).
    fn what(r: &Rule) -> (&[u8], u8, u8, u16, bool) {
        (
            r.name.canonical(),
            r.kind as u8,
            r.action as u8,
            r.qtypes,
            r.local.is_some(),
        )
    }
    let before: std::collections::HashSet<_> = inc.before.iter().map(what).collect();
    let after: std::collections::HashSet<_> = inc.after.iter().map(what).collect();
    let removed: Vec<(blocker_lists::Name, blocker_common::Kind)> = inc
        .before
        .iter()
        .filter(|r| !after.contains(&what(r)))
        .map(|r| (r.name.clone(), r.kind))
        .collect();
    let added: Vec<Rule> = inc
        .after
        .iter()
        .filter(|a| !before.contains(&what(a)))
        .cloned()
        .collect();
    if inc.rules_before + added.len() <= removed.len() {
        // No rules left: the whole reading says whether that is refused (a zone of nothing
        // but unsupported entries).
        return Ok(None);
    }
    check_guards(shared, feed, serial, &added)?;
    let started = jiff::Timestamp::now();
    // The journal first: a copy that is ahead of the order is enforced whole at the next
    // start; one behind it would not be.
    let jdir = Zone::journal_dir(&path);
    let jfile = (|| -> std::io::Result<PathBuf> {
        fs::create_dir_all(&jdir)?;
        let n = fs::read_dir(&jdir)?.count();
        let f = jdir.join(format!("{:08}.{serial}", n + 1));
        super::write_atomic(&f, Zone::render_batches(&inc.batches).as_bytes())
            .map_err(std::io::Error::other)?;
        Ok(f)
    })()
    .map_err(|e| format!("journaling serial {serial}: {e}"))?;
    let r = (|| -> anyhow::Result<Option<(crate::txn::Summary, usize)>> {
        let mut c = Controller::open(&shared.pins, &shared.dir)?;
        let Some(mut order) = c.state.order(&feed.order).cloned() else {
            return Ok(None);
        };
        if order.sources != [source_words(feed, inc.from)] {
            return Ok(None);
        }
        order.sources = vec![source_words(feed, serial)];
        order.set_soa(inc.soa.as_deref());
        let mut cache = shared
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = inc.rules_before - removed.len() + added.len();
        Ok(
            c.apply_edit(&mut cache, order, inc.rules_before, (removed, added))?
                .map(|s| (s, n)),
        )
    })();
    match r {
        Ok(Some((summary, n))) => {
            record(feed, source, serial, started, &jfile, &summary, &shared.dir);
            let ms = t0.elapsed().as_millis() as u64;
            if Zone::journal_len(&path) >= super::zone::MAX_JOURNAL {
                // The copy written whole again (the change is enforced already).
                let header = copy_header(feed, serial, "IXFR");
                if super::write_atomic(&path, zone.render(&header).as_bytes()).is_ok() {
                    let _ = fs::remove_dir_all(&jdir);
                }
            }
            Ok(Some(Applied::of(&summary, n, ms)))
        }
        Ok(None) => {
            let _ = fs::remove_file(&jfile);
            Ok(None)
        }
        Err(e) => {
            let _ = fs::remove_file(&jfile);
            Err(format!("applying serial {serial}: {e:#}"))
        }
    }
}

/// The two comment lines of a saved copy.
fn copy_header(feed: &Feed, serial: u32, source: &str) -> [String; 2] {
    [
        format!(
            "blocker: RPZ zone {} serial {serial}, the whole content of order {:?}",
            feed.zone, feed.order
        ),
        format!("from {source}; written by `blocker follow`, do not edit"),
    ]
}

/// Reads `zone` as RPZ and makes it the whole content of the feed's order (blocking: runs on
/// a blocking thread). Nothing changes on an error.
fn enforce_blocking(
    shared: &Shared,
    feed: &Feed,
    zone: &Zone,
    source: &str,
    inc: Option<&Incremental>,
) -> Result<Applied, String> {
    if let Some(inc) = inc {
        match enforce_edit(shared, feed, zone, source, inc)? {
            Some(a) => return Ok(a),
            None => log::info!(
                "{}: serial {} applied whole (the order is not serial {} as followed)",
                feed.zone,
                zone.serial(),
                inc.from
            ),
        }
    }
    let t0 = Instant::now();
    let path = zone_path(&shared.dir, &feed.zone);
    let serial = zone.serial();
    let out = zone.rpz(&path);
    log::debug!(
        "{}: read as RPZ: {} ms",
        feed.zone,
        t0.elapsed().as_millis()
    );
    if !out.errors.is_empty() {
        // The refused copy is kept for the operator to look at; the messages point into it.
        let rejected = PathBuf::from(format!("{}.rejected", path.display()));
        let header = [
            format!(
                "blocker: RPZ zone {} serial {serial}, REFUSED (records that are not valid RPZ)",
                feed.zone
            ),
            format!("from {source}; the order keeps the copy before it"),
        ];
        let kept = super::write_atomic(&rejected, zone.render(&header).as_bytes()).is_ok();
        let shown = if kept {
            rejected.as_path()
        } else {
            path.as_path()
        };
        const SHOWN: usize = 3;
        let first: Vec<String> = out
            .errors
            .iter()
            .take(SHOWN)
            .map(|e| format!("{}:{}: {}", shown.display(), e.line, e.message))
            .collect();
        let n = out.errors.len();
        return Err(format!(
            "serial {serial}: {n} record{} not valid RPZ ({}{}); nothing applied, the last \
             good copy stays enforced",
            if n == 1 { " is" } else { "s are" },
            first.join("; "),
            if n > SHOWN { "; …" } else { "" }
        ));
    }
    let unsupported: usize = out.unsupported.values().sum();
    if out.rules.is_empty() && unsupported > 0 {
        return Err(format!(
            "serial {serial} would leave order {:?} with no rules: all {unsupported} entries \
             are unsupported ({}); nothing applied",
            feed.order,
            skipped(&out.unsupported)
        ));
    }
    if unsupported > 0 {
        log::warn!(
            "{}: serial {serial}: skipped {}",
            feed.zone,
            skipped(&out.unsupported)
        );
    }
    let file: Arc<str> = path.display().to_string().into();
    let soa = out.soa.clone();
    let rules = rules_of(out, &file);
    check_guards(shared, feed, serial, &rules)?;
    let started = jiff::Timestamp::now();
    let n = rules.len();
    // The copy is written next to the old one and takes its place once enforced: the rule
    // sources point at its lines.
    let staged = PathBuf::from(format!("{}.new", path.display()));
    let header = copy_header(feed, serial, source);
    super::write_atomic(&staged, zone.render(&header).as_bytes()).map_err(|e| e.to_string())?;
    log::debug!(
        "{}: copy written: {} ms",
        feed.zone,
        t0.elapsed().as_millis()
    );
    let summary = (|| -> anyhow::Result<_> {
        let mut c = Controller::open(&shared.pins, &shared.dir)?;
        let mut order = match c.state.order(&feed.order) {
            Some(o) => o.clone(),
            None => Order::named(c.state.free_order_id()?, &feed.order),
        };
        // What was transferred and how is in the feed's status; the order says which copy
        // it holds (the same words for the same copy: enforcing it again changes nothing).
        order.sources = vec![source_words(feed, serial)];
        order.set_soa(soa.as_deref());
        Ok(c.apply(vec![OrderChange::Put {
            order,
            rules: Some(rules),
        }])?)
    })();
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            let _ = fs::remove_file(&staged);
            return Err(format!("applying serial {serial}: {e:#}"));
        }
    };
    let ms = t0.elapsed().as_millis() as u64;
    // The new copy takes the old one's place first (the rename made durable), and only then
    // does the old copy's journal go: a stop in between leaves the new copy with a journal
    // of differences older than it, which loading skips, never the old copy without the
    // journal that brings it up to date.
    match fs::rename(&staged, &path) {
        Ok(()) => {
            if let Some(d) = path.parent() {
                let _ = fs::File::open(d).and_then(|d| d.sync_all());
            }
            let _ = fs::remove_dir_all(Zone::journal_dir(&path));
        }
        Err(e) => log::error!("{}: keeping the copy in {}: {e}", feed.zone, path.display()),
    }
    record(feed, source, serial, started, &path, &summary, &shared.dir);
    Ok(Applied::of(&summary, n, ms))
}

/// Removes the order's rules at expiry (`--on-expire stop`), keeping the order.
fn withdraw_blocking(shared: &Shared, feed: &Feed, serial: u32) -> anyhow::Result<u32> {
    let mut c = Controller::open(&shared.pins, &shared.dir)?;
    let Some(mut order) = c.state.order(&feed.order).cloned() else {
        return Ok(c.state.generation);
    };
    order.sources = vec![format!(
        "rpz {} serial {serial} EXPIRED: rules withdrawn (--on-expire stop)",
        feed.zone
    )];
    let started = jiff::Timestamp::now();
    let s = c.apply(vec![OrderChange::Put {
        order,
        rules: Some(Vec::new()),
    }])?;
    // In the compliance record: the order was not enforced from then on.
    let audit = crate::compliance::Audit {
        ticket: Some(format!("rpz {} serial {serial}", feed.zone)),
        operator: Some("blocker follow".into()),
    };
    let rec = crate::compliance::Record::new(
        "follow: expired, rules withdrawn (--on-expire stop)",
        started,
        Some(&feed.order),
        Some(&s),
        &audit,
    );
    if let Err(e) = crate::compliance::append(&shared.dir, &rec) {
        log::error!("{}: rules withdrawn, but not recorded: {e}", feed.zone);
    }
    Ok(s.generation)
}

impl Follower {
    fn new(shared: Arc<Shared>, feed: Feed) -> Result<Follower, Box<(FeedStatus, String)>> {
        let mut st = load_status(&shared.dir, &feed.zone).unwrap_or_default();
        st.zone = feed.zone.clone();
        st.order = feed.order.clone();
        st.on_expire = feed.on_expire.as_str().to_string();
        let key = match &feed.tsig_key {
            Some(p) => match load_key(p) {
                Ok(k) => Some(k.key),
                Err(e) => return Err(Box::new((st, format!("TSIG key: {e}")))),
            },
            None => None,
        };
        let apex =
            apex_of(&feed.zone).map_err(|e| Box::new((st.clone(), format!("zone name: {e}"))))?;
        let primaries = feed
            .primaries
            .iter()
            .map(|a| Primary {
                addr: *a,
                key: key.clone(),
                timeout: shared.timeout,
                limits: shared.limits,
            })
            .collect();
        Ok(Follower {
            shared,
            feed,
            apex,
            primaries,
            zone: None,
            enforced: false,
            rules: 0,
            st,
            floor: None,
            pending: None,
            flipped: None,
            first: 0,
        })
    }

    fn zone_name(&self) -> &str {
        &self.feed.zone
    }

    /// Enforces the saved copy again (a no-op when the order holds it already).
    async fn restore(&mut self) {
        let path = zone_path(&self.shared.dir, &self.feed.zone);
        if !path.exists() {
            log::info!(
                "{}: no copy yet; transferring it from {}",
                self.zone_name(),
                self.primaries_list()
            );
            self.st.serial = None;
            return;
        }
        let z = match Zone::load(&path, &self.feed.zone) {
            Ok(z) => z,
            Err(e) => {
                log::error!(
                    "{}: the saved copy is unusable ({e}); transferring the whole zone",
                    self.zone_name()
                );
                return;
            }
        };
        let serial = z.serial();
        // A copy older than the serial this feed last enforced (a state directory restored in
        // part, a file put back by hand) is not enforced again: that would take back names a
        // newer serial added, with nobody asking. The order keeps what it holds, and the
        // whole zone is transferred.
        if let Some(recorded) = self.st.serial {
            if serial_newer(recorded, serial) {
                self.failed(format!(
                    "the saved copy has serial {serial}, older than the serial {recorded} \
                     enforced before: not enforced again; the order keeps what it holds until \
                     the whole zone is transferred"
                ));
                self.floor = Some(recorded);
                if let Err(e) = save_status(&self.shared.dir, &self.st) {
                    log::error!("{}: status not saved: {e}", self.zone_name());
                }
                return;
            }
        }
        if matches!(self.feed.on_expire, OnExpire::Stop)
            && self.st.expires_at != 0
            && now() >= self.st.expires_at
        {
            // Expired while no follower ran (or withdrawn before it stopped): the copy is
            // not enforced again until a primary answers.
            let (shared, feed) = (self.shared.clone(), self.feed.clone());
            let r = tokio::task::spawn_blocking(move || withdraw_blocking(&shared, &feed, serial))
                .await;
            self.zone = Some(z);
            self.st.expired = true;
            match r {
                Ok(Ok(_)) => {
                    log::error!(
                        "{}: the saved copy (serial {serial}) expired at {}: not enforced until \
                         a primary answers (--on-expire stop)",
                        self.zone_name(),
                        crate::cli::time_str(self.st.expires_at)
                    );
                    self.enforced = false;
                    self.st.serial = None;
                }
                // Still enforced: the expiry check withdraws it at the next attempt.
                Ok(Err(e)) => self.failed(format!("withdrawing the expired copy: {e:#}")),
                Err(e) => self.failed(format!("withdrawing the expired copy: {e}")),
            }
            return;
        }
        match self.enforce(z, "the saved copy".to_string(), None).await {
            Ok((z, a)) => {
                log::info!(
                    "{}: resuming at serial {serial} ({} rules, generation {}{})",
                    self.zone_name(),
                    a.rules,
                    a.generation,
                    if a.names_changed == 0 {
                        ", already enforced"
                    } else {
                        ""
                    }
                );
                self.zone = Some(z);
                self.enforced = true;
                self.rules = a.rules;
                self.st.serial = Some(serial);
                if self.st.expires_at == 0 {
                    self.st.expires_at =
                        now() + u64::from(self.zone.as_ref().map_or(0, |z| z.timers().2));
                }
            }
            Err((_, e)) => self.failed(format!("the saved copy: {e}")),
        }
    }

    fn primaries_list(&self) -> String {
        self.primaries
            .iter()
            .map(|p| p.addr.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn failed(&mut self, e: String) {
        log::error!("{}: {e}", self.zone_name());
        self.st.last_error = Some(e);
        self.st.last_error_at = now();
    }

    fn noticed(&mut self, n: notify::Notice) {
        self.st.last_notify = now();
        match &self.pending {
            Some(p) if p.at <= n.at => {
                // Keep the earliest time; the latest serial.
                let serial = match (p.serial, n.serial) {
                    (Some(a), Some(b)) if serial_newer(b, a) => Some(b),
                    (a, b) => a.or(b),
                };
                self.pending = Some(notify::Notice {
                    serial,
                    ..p.clone()
                });
            }
            _ => self.pending = Some(n),
        }
    }

    /// Seconds to the next refresh after an attempt.
    fn wait(&self, ok: bool) -> Duration {
        let (refresh, retry, _) = self.zone.as_ref().map_or((30, 30, 0), Zone::timers);
        // A SOA's refresh is at most a day here (it may say up to 68 years): without NOTIFY
        // the edge still asks daily, and an expiry is judged at least that often. An
        // operator's `feed add --refresh` is taken as given.
        let refresh = self
            .feed
            .refresh
            .unwrap_or(refresh.min(MAX_SOA_REFRESH))
            .max(1);
        let retry = retry.clamp(1, refresh);
        let secs = match (ok, &self.zone) {
            (true, Some(_)) => refresh,
            (_, None) => refresh.min(30),
            (false, Some(_)) => retry,
        };
        Duration::from_secs(u64::from(secs))
    }

    /// Enforces `zone` on a blocking thread; gives the zone back with what was done (on an
    /// error too, unless the thread died with it).
    async fn enforce(
        &self,
        zone: Zone,
        source: String,
        inc: Option<Incremental>,
    ) -> Result<(Zone, Applied), (Option<Zone>, String)> {
        let shared = self.shared.clone();
        let feed = self.feed.clone();
        let serial = zone.serial();
        let r = tokio::task::spawn_blocking(move || {
            let r = enforce_blocking(&shared, &feed, &zone, &source, inc.as_ref());
            (zone, r)
        })
        .await;
        match r {
            Ok((z, Ok(a))) => {
                self.warm();
                Ok((z, a))
            }
            Ok((z, Err(e))) => Err((Some(z), e)),
            Err(e) => Err((None, format!("applying serial {serial}: {e}"))),
        }
    }

    /// Reads the rules recorded into memory for the IXFRs to come, on a thread of its own
    /// (nothing waits for it; an edit that comes first waits for the cache, or reads them
    /// itself after a change made elsewhere). Nothing to do when the cache is current.
    fn warm(&self) {
        let shared = self.shared.clone();
        let zone = self.feed.zone.clone();
        tokio::task::spawn_blocking(move || {
            let c = match Controller::open(&shared.pins, &shared.dir) {
                Ok(c) => c,
                Err(e) => return log::warn!("{zone}: rules not read into memory: {e}"),
            };
            let mut cache = shared
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Err(e) = c.warm(&mut cache) {
                log::warn!("{zone}: rules not read into memory: {e}");
            }
        });
    }

    /// One refresh: SOA check at each primary in turn, transfer if newer. True when a primary
    /// answered and the copy is current.
    async fn refresh(&mut self) -> bool {
        let mut errors = Vec::new();
        // Primaries that answered with a serial not newer than the copy's: the next one is
        // asked then (as BIND does: one that fell behind must not hold the edge back); the
        // first of them makes the copy current when none is newer.
        let mut not_newer: Option<(usize, Primary, u32)> = None;
        let mut older: Vec<String> = Vec::new();
        // The newest serial a primary had whose transfer failed.
        let mut newer_failed: Option<u32> = None;
        let n = self.primaries.len();
        for i in 0..n {
            let idx = (self.first + i) % n;
            let p = self.primaries[idx].clone();
            self.st.last_check = now();
            let soa = match p.soa(&self.apex).await {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("{}: {e}", self.zone_name());
                    errors.push(e.to_string());
                    continue;
                }
            };
            let theirs = serial_of(&soa);
            if let Some(ours) = self.zone.as_ref().map(Zone::serial) {
                if !serial_newer(theirs, ours) {
                    if theirs != ours {
                        older.push(format!("{} serves serial {theirs}", p.addr));
                    }
                    if not_newer.is_none() {
                        not_newer = Some((idx, p, theirs));
                    }
                    continue;
                }
            }
            match self.synced(idx, &p, theirs, &older).await {
                Ok(()) => return true,
                Err(e) => {
                    errors.push(e);
                    newer_failed = newer_failed.max(Some(theirs));
                }
            }
        }
        if let Some((idx, p, theirs)) = not_newer {
            let behind = self.st.behind_since;
            match self.synced(idx, &p, theirs, &older).await {
                // A primary had something newer and it failed (refused by the guards, a bad
                // signature…): the copy is as new as the other primaries, but the edge is
                // behind, and its status says so (a failure, retried at the retry interval).
                Ok(()) if newer_failed.is_some() => {
                    self.st.primary_serial = newer_failed;
                    self.st.behind_since = if behind != 0 { behind } else { now() };
                }
                Ok(()) => return true,
                Err(e) => errors.push(e),
            }
        }
        self.st.failures += 1;
        self.st.failures_total += 1;
        self.st.last_error = Some(errors.join("; "));
        self.st.last_error_at = now();
        false
    }

    /// [`Follower::sync`] with primary `p` (index `idx`) at serial `theirs`, and on success
    /// the status of a refresh that reached a primary: `older` are the primaries that serve
    /// a serial older than the copy's, said in the status (not a failure: the copy is as new
    /// as any primary has; but a primary rebuilt with a lower serial is never transferred
    /// from until its serial passes the copy's).
    async fn synced(
        &mut self,
        idx: usize,
        p: &Primary,
        theirs: u32,
        older: &[String],
    ) -> Result<(), String> {
        self.st.primary_serial = Some(theirs);
        self.st.primary = Some(p.addr.to_string());
        if let Err(e) = self.sync(p, theirs).await {
            log::error!("{}: {e}", self.zone_name());
            return Err(e);
        }
        self.first = idx;
        self.st.last_success = now();
        self.st.failures = 0;
        self.st.last_error = None;
        if let Some(ours) = self.zone.as_ref().map(Zone::serial) {
            let mut older = older.to_vec();
            let said = format!("{} serves serial {theirs}", p.addr);
            if serial_newer(ours, theirs) && !older.contains(&said) {
                older.push(said);
            }
            if !older.is_empty() {
                self.st.last_error = Some(format!(
                    "{}, older than the enforced {ours}: not transferred (a primary rebuilt \
                     with a lower serial? raise its serial past {ours})",
                    older.join(", ")
                ));
                self.st.last_error_at = now();
            }
        }
        let expire = self.zone.as_ref().map_or(0, |z| z.timers().2);
        self.st.expires_at = now() + u64::from(expire);
        if self.st.expired {
            log::warn!(
                "{}: contact with {} again: no longer expired",
                self.zone_name(),
                p.addr
            );
            self.st.expired = false;
        }
        Ok(())
    }

    /// Brings the copy to the primary's serial `theirs` (after its SOA said so).
    async fn sync(&mut self, p: &Primary, theirs: u32) -> Result<(), String> {
        let ours = self.zone.as_ref().map(Zone::serial);
        if let Some(ours) = ours {
            if !serial_newer(theirs, ours) {
                if theirs != ours {
                    log::warn!(
                        "{}: {} serves serial {theirs}, older than the enforced {ours}: keeping {ours}",
                        self.zone_name(),
                        p.addr
                    );
                }
                if !self.enforced {
                    self.reenforce().await?;
                }
                self.current(ours);
                return Ok(());
            }
        }
        if self.st.behind_since == 0 {
            self.st.behind_since = now();
        }
        let t0 = Instant::now();
        let result: Result<(), String> = match (&self.zone, ours) {
            (Some(z), Some(ours)) => match p.ixfr(&self.apex, z.soa()).await {
                Ok(Ixfr::UpToDate) => {
                    // The SOA said newer, the IXFR says current: a primary between versions.
                    self.current(ours);
                    return Ok(());
                }
                Ok(Ixfr::Diff(d)) => {
                    let mut zone = self
                        .zone
                        .take()
                        .unwrap_or_else(|| Zone::new(self.apex.clone(), d.soa.clone(), Vec::new()));
                    // The owners the difference touches, read as RPZ before and after it: an
                    // edit of the order when both readings stand alone.
                    let path = zone_path(&self.shared.dir, &self.feed.zone);
                    let owners = Zone::owners_of(&d.batches);
                    let before = if self.enforced {
                        zone.rpz_owners(&owners, &path)
                    } else {
                        None
                    };
                    match zone.apply(&d.batches) {
                        Ok(undo) => {
                            let file: Arc<str> = path.display().to_string().into();
                            let inc = before.zip(zone.rpz_owners(&owners, &path)).map(|(b, a)| {
                                Incremental {
                                    batches: d.batches.clone(),
                                    from: ours,
                                    rules_before: self.rules,
                                    soa: a.soa.clone(),
                                    before: rules_of(b, &file),
                                    after: rules_of(a, &file),
                                }
                            });
                            let transfer_ms = t0.elapsed().as_millis() as u64;
                            let report = TransferReport {
                                kind: "ixfr".into(),
                                fallback: None,
                                from_serial: Some(ours),
                                serial: zone.serial(),
                                primary: p.addr.to_string(),
                                at: now(),
                                records: d.records,
                                zone_records: zone.len(),
                                transfer_ms,
                                ..Default::default()
                            };
                            let source = format!("IXFR {ours}→{} from {}", zone.serial(), p.addr);
                            match self.enforce(zone, source, inc).await {
                                Ok((z, a)) => {
                                    self.applied(z, a, report, d.messages);
                                    return Ok(());
                                }
                                Err((z, e)) => {
                                    // Without the copy (lost with a dead thread) the next
                                    // attempt transfers the whole zone.
                                    self.zone = z.map(|mut z| {
                                        z.undo(undo);
                                        z
                                    });
                                    return Err(e);
                                }
                            }
                        }
                        Err(e) => {
                            self.zone = Some(zone);
                            Err(format!("{e}: transferring the whole zone"))
                        }
                    }
                }
                Ok(Ixfr::Full(f)) => {
                    return self
                        .install(
                            p,
                            f,
                            t0,
                            Some(ours),
                            Some("the primary answered the IXFR with the whole zone".into()),
                        )
                        .await
                }
                Ok(Ixfr::Unavailable(why)) => Err(why),
                // A reply the interpreter cannot read as an IXFR, or an error rcode other
                // than the ones that mean "no IXFR here": try the whole zone.
                Err(e @ (XfrError::Malformed { .. } | XfrError::Rcode { .. })) => {
                    Err(format!("{e}: transferring the whole zone"))
                }
                // The network or the key: the same would happen to an AXFR; retry later.
                Err(e) => return Err(e.to_string()),
            },
            _ => Err(String::new()),
        };
        let fallback = result.err().filter(|s| !s.is_empty());
        if let Some(why) = &fallback {
            log::warn!("{}: IXFR from {}: {why}; AXFR", self.zone_name(), p.addr);
        }
        let t0 = Instant::now();
        let full = p.axfr(&self.apex).await.map_err(|e| e.to_string())?;
        self.install(p, full, t0, ours, fallback).await
    }

    /// Enforces a whole zone received from `p`.
    async fn install(
        &mut self,
        p: &Primary,
        f: Full,
        t0: Instant,
        from: Option<u32>,
        fallback: Option<String>,
    ) -> Result<(), String> {
        let records = f.records.len() + 1;
        let messages = f.messages;
        let zone = Zone::new(self.apex.clone(), f.soa, f.records);
        // The SOA query, the IXFR and the AXFR are three connections: behind an anycast or
        // balanced address they may reach servers at different serials. A whole zone older
        // than (or as old as) the copy enforced never replaces it.
        if let Some(ours) = self
            .zone
            .as_ref()
            .map(Zone::serial)
            .filter(|_| self.enforced)
        {
            if !serial_newer(zone.serial(), ours) {
                return Err(format!(
                    "{}: the whole zone came with serial {}, not newer than the enforced \
                     {ours} (another server behind the address?): not applied",
                    p.addr,
                    zone.serial()
                ));
            }
        }
        let report = TransferReport {
            kind: "axfr".into(),
            fallback,
            from_serial: from,
            serial: zone.serial(),
            primary: p.addr.to_string(),
            at: now(),
            records,
            zone_records: zone.len(),
            transfer_ms: t0.elapsed().as_millis() as u64,
            ..Default::default()
        };
        // With no copy in memory the order may still hold a newer serial (a saved copy
        // refused as older at start): no older zone replaces it.
        if let Some(floor) = self.floor {
            if serial_newer(floor, zone.serial()) {
                return Err(format!(
                    "{}: the whole zone came with serial {}, older than the enforced \
                     {floor}: not applied (a primary rebuilt with a lower serial? raise its \
                     serial past {floor})",
                    p.addr,
                    zone.serial()
                ));
            }
        }
        let source = format!("AXFR {} from {}", zone.serial(), p.addr);
        match self.enforce(zone, source, None).await {
            Ok((z, a)) => {
                self.floor = None;
                self.applied(z, a, report, messages);
                Ok(())
            }
            Err((_, e)) => Err(e),
        }
    }

    /// Records an enforced transfer.
    fn applied(&mut self, z: Zone, a: Applied, mut report: TransferReport, messages: usize) {
        report.rules = a.rules;
        report.names_changed = a.names_changed;
        report.generation = a.generation;
        report.apply_ms = a.ms;
        let serial = z.serial();
        log::info!(
            "{}: {} {}→{serial} from {} ({} records in {messages} messages, {} ms{}); enforced as generation {} in {} ms: {} rules (+{} −{}), {} names changed in the kernel",
            self.zone_name(),
            report.kind.to_uppercase(),
            report.from_serial.map_or("-".to_string(), |s| s.to_string()),
            report.primary,
            report.records,
            report.transfer_ms,
            report.fallback.as_ref().map_or(String::new(), |f| format!("; {f}")),
            a.generation,
            a.ms,
            a.rules,
            a.added,
            a.removed,
            a.names_changed,
        );
        if report.kind == "ixfr" {
            self.st.ixfr_count += 1;
        } else {
            self.st.axfr_count += 1;
        }
        self.st.last_transfer = Some(report);
        self.rules = a.rules;
        // (What followed the flip — recording, a copy written whole again — is not part of
        // the time to enforcement.)
        self.flipped = a
            .flipped
            .and_then(|t| t.elapsed().ok())
            .and_then(|ago| Instant::now().checked_sub(ago));
        self.zone = Some(z);
        self.enforced = true;
        self.current(serial);
    }

    /// The copy at `serial` is enforced and current.
    fn current(&mut self, serial: u32) {
        self.st.serial = Some(serial);
        if self
            .st
            .primary_serial
            .is_none_or(|p| !serial_newer(p, serial))
        {
            self.st.behind_since = 0;
        }
        if let Some(n) = &self.pending {
            if n.serial.is_none_or(|s| !serial_newer(s, serial)) {
                let ms = match self.flipped.take() {
                    Some(f) => f.saturating_duration_since(n.at),
                    None => n.at.elapsed(),
                }
                .as_millis() as u64;
                if self
                    .st
                    .last_transfer
                    .as_ref()
                    .is_some_and(|t| t.serial == serial && t.at >= self.st.last_notify)
                {
                    log::info!(
                        "{}: serial {serial} enforced {ms} ms after the NOTIFY from {}",
                        self.zone_name(),
                        n.source
                    );
                    self.st.notify_to_enforce_ms = Some(ms);
                }
                self.pending = None;
            }
        }
    }

    /// Enforces the copy again after it was withdrawn at expiry.
    async fn reenforce(&mut self) -> Result<(), String> {
        let Some(z) = self.zone.take() else {
            return Ok(());
        };
        let source = format!("the copy of serial {}, again after expiry", z.serial());
        match self.enforce(z, source, None).await {
            Ok((z, a)) => {
                log::warn!(
                    "{}: serial {} enforced again ({} rules, generation {})",
                    self.zone_name(),
                    z.serial(),
                    a.rules,
                    a.generation
                );
                self.rules = a.rules;
                self.zone = Some(z);
                self.enforced = true;
                Ok(())
            }
            Err((z, e)) => {
                self.zone = z;
                Err(e)
            }
        }
    }

    /// After a refresh: expiry.
    async fn after(&mut self, ok: bool) {
        if ok || self.zone.is_none() || self.st.expires_at == 0 || now() < self.st.expires_at {
            return;
        }
        let serial = self.zone.as_ref().map_or(0, Zone::serial);
        let first = !self.st.expired;
        self.st.expired = true;
        match self.feed.on_expire {
            OnExpire::Keep => log::error!(
                "{}: EXPIRED: no successful refresh for the SOA expire time (no primary reached, or what they sent was refused: see the last error); the last good copy (serial {serial}) stays enforced (--on-expire keep)",
                self.zone_name()
            ),
            OnExpire::Stop if self.enforced => {
                let shared = self.shared.clone();
                let feed = self.feed.clone();
                match tokio::task::spawn_blocking(move || withdraw_blocking(&shared, &feed, serial)).await {
                    Ok(Ok(g)) => {
                        log::error!(
                            "{}: EXPIRED: no successful refresh for the SOA expire time (no primary reached, or what they sent was refused: see the last error); the rules of order {:?} are withdrawn (generation {g}, --on-expire stop) until the next transfer",
                            self.zone_name(),
                            self.feed.order
                        );
                        self.enforced = false;
                        self.st.serial = None;
                    }
                    Ok(Err(e)) => self.failed(format!("withdrawing the expired rules: {e:#}")),
                    Err(e) => self.failed(format!("withdrawing the expired rules: {e}")),
                }
            }
            OnExpire::Stop => {
                if first {
                    log::error!("{}: EXPIRED (rules already withdrawn)", self.zone_name());
                }
            }
        }
    }
}
