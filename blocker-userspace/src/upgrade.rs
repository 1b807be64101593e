//! `blocker upgrade`: this build's program takes over from the one pinned by another build,
//! without a moment where a listed name passes.
//!
//! The pinned maps are compared with this build's (every map the object pins, by type, key
//! and value size, entries and flags: [`kernel::layout_changes`]), and the pinned programs with
//! this build's (the kernel's tag: a hash of the instructions, the same for the same object).
//!
//! - **Up to date** (same layout, same programs, every link runs the pinned program its
//!   interface was attached with): nothing is done, and the command says so.
//! - **Same layout, another program**: this build's programs are loaded against the pinned
//!   maps (rules, settings and counters stay where they are), every pinned link is switched to
//!   them with one BPF_LINK_UPDATE each, then they replace the pinned programs. Interrupted
//!   anywhere, the next `upgrade` sees a pinned program or a link that is not this build's and
//!   does it again.
//! - **Another layout**: the state directory is the complete record (what a reboot restores
//!   from), so:
//!   1. an interrupted change is settled against the running maps' generation, read from the
//!      part of `Config` every version keeps in place; the record must then be the one those
//!      maps enforce (same generation), and the key secret is recorded if only the maps had it;
//!   2. this build's program is loaded with new maps pinned in the staging directory
//!      (`<bpffs>/upgrade`) and the whole record is written into them
//!      ([`Controller::restore_into`], the code that restores after a reboot). The counter
//!      maps and the event ring buffer whose layout did not change are *shared*: pinned into
//!      the staging directory before the load, so the new program counts on in the same maps
//!      (no hit is lost or counted twice, `blocker events` readers keep reading); the others
//!      start from zero, and the command names them;
//!   3. a journal (`upgrade.json` in the state directory) records that the switch began;
//!   4. every pinned link is switched to the staged program (its no-op twin for interfaces
//!      attached with `--noop`) with one BPF_LINK_UPDATE each: the kernel swaps an
//!      interface's program in one step, and until then the old program keeps enforcing the
//!      same rules from its own maps;
//!   5. the staged program and maps are pinned under the final names (each renamed over the
//!      old pin, so a name is never missing; links hold their program themselves, so the data
//!      plane never depends on a pin), pins this build does not have are removed, then the
//!      journal and the staging directory.
//!
//! A crash before 3 leaves the old program enforcing and a staging directory that the next
//! `upgrade` deletes and builds again. From 3 on, the journal makes every other command refuse
//! to change anything (a change written to the old maps would not reach links already
//! switched), and the next `upgrade` does 4 and 5 again (both can be done twice) before
//! anything else. A journal whose staged program is gone (a reboot emptied the BPF
//! filesystem) is dropped: there is nothing left to finish.

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::programs::{ProgramInfo, Xdp};
use aya_obj::programs::XdpAttachType;
use blocker_common::{
    MAP_EVENTS, MAP_ORDER_HITS, MAP_RULES, MAP_RULE_HITS, MAP_STATS, PROGRAM_NAME, PROGRAM_NOOP,
};
use serde::{Deserialize, Serialize};

use crate::{
    error::{OpContext, OpError},
    kernel::{self, KernelError, MapShape, Pins},
    secret::SecretError,
    state::{now, StateDir, StateError, StateFile},
    txn::{self, Controller, TxnError},
};

/// File name of the journal in the state directory.
pub const JOURNAL: &str = "upgrade.json";

/// Maps the data plane writes and the controller only reads: shared with the new program
/// when their layout is unchanged, rather than restored (the record has no counters).
const SHARED: [&str; 4] = [MAP_STATS, MAP_ORDER_HITS, MAP_RULE_HITS, MAP_EVENTS];

/// Why an upgrade could not be made.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The journal names another BPF directory than the one given.
    #[error(
        "an upgrade of {} was interrupted ({} exists): run `blocker --bpffs {} upgrade` to \
         finish it first",
        bpffs.display(),
        journal.display(),
        bpffs.display()
    )]
    OtherDirectory { bpffs: PathBuf, journal: PathBuf },
    #[error("{} is corrupt", path.display())]
    CorruptJournal {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Txn(#[from] TxnError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = UpgradeError> = std::result::Result<T, E>;

/// `upgrade.json`: written when the links start to be switched, removed when all is in place.
#[derive(Serialize, Deserialize)]
struct Journal {
    /// The BPF directory being upgraded.
    bpffs: PathBuf,
    /// Where the new program and maps are pinned until they replace the old ones.
    staging: PathBuf,
    /// When the switch began (UNIX seconds).
    started: u64,
}

/// Where the journal is.
pub fn journal_path(dir: &StateDir) -> PathBuf {
    dir.dir.join(JOURNAL)
}

fn read_journal(path: &Path) -> Result<Journal> {
    let bytes = fs::read(path).op(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|source| UpgradeError::CorruptJournal {
        path: path.to_path_buf(),
        source,
    })
}

/// Whether an upgrade stopped half-way (its journal exists and its staged program is still
/// pinned). A journal without its staged program is left from before a reboot emptied the
/// BPF filesystem: it is removed, there is nothing to finish. Call with the lock held.
pub fn interrupted(dir: &StateDir) -> std::io::Result<bool> {
    let path = journal_path(dir);
    if !path.exists() {
        return Ok(false);
    }
    let staged = match read_journal(&path) {
        Ok(j) => {
            let s = Pins::new(j.staging);
            s.prog().exists() && s.noop().exists() && s.map(MAP_RULES).exists()
        }
        // Unreadable: only `upgrade` may decide, and it says why.
        Err(_) => true,
    };
    if !staged {
        fs::remove_file(&path)?;
        log::warn!(
            "removed {}: the upgrade it records has nothing left to finish (its staged program \
             is gone)",
            path.display()
        );
    }
    Ok(staged)
}

/// A program as the kernel identifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prog {
    pub id: u32,
    /// The kernel's tag: a hash of the instructions, equal for loads of the same object.
    pub tag: u64,
}

impl Prog {
    fn of(info: &ProgramInfo) -> Prog {
        Prog {
            id: info.id(),
            tag: info.tag(),
        }
    }

    fn pinned(path: &Path) -> Result<Prog> {
        let info = ProgramInfo::from_pin(path)
            .map_err(KernelError::from)
            .op(|| format!("opening the program {}", path.display()))?;
        Ok(Prog::of(&info))
    }
}

/// What switching the links did.
#[derive(Debug, Default)]
pub struct Switched {
    /// Interfaces whose link now runs the new program.
    pub links: Vec<String>,
    /// Interfaces whose link is no longer attached (the interface or its namespace is gone):
    /// left as they are.
    pub defunct: Vec<String>,
    /// From the first link update to the last.
    pub took: Duration,
}

/// What `blocker upgrade` did.
#[derive(Debug)]
pub struct Report {
    /// An upgrade interrupted earlier was finished first (its links and pins).
    pub resumed: Option<Switched>,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub enum Outcome {
    /// Nothing is pinned in the directory: nothing to upgrade.
    NotLoaded,
    /// The pinned programs and maps are this build's, and every link runs them (but those
    /// no longer attached anywhere, left as they are).
    UpToDate { prog: Prog, defunct: Vec<String> },
    /// The map layout is this build's: its programs now run on the pinned maps.
    Program {
        from: Prog,
        to: Prog,
        switched: Switched,
    },
    /// Another map layout: the record moved into this build's maps.
    Migrated {
        /// How the old maps differed, one line per map.
        changes: Vec<String>,
        from: Prog,
        to: Prog,
        switched: Switched,
        /// Counter maps shared with the new program (counting goes on).
        shared: Vec<&'static str>,
        /// Counter maps whose layout changed: they start from zero.
        reset: Vec<&'static str>,
        rules: usize,
        orders: usize,
        generation: u32,
    },
}

/// Upgrades the data plane pinned in `pins.dir` to this build (see the module documentation).
pub fn run(pins: &Pins, dir: &StateDir) -> Result<Report> {
    let lock = dir.lock()?;
    let resumed = resume(pins, dir)?;
    if !pins.loaded() {
        return Ok(Report {
            resumed,
            outcome: Outcome::NotLoaded,
        });
    }
    let changes = kernel::layout_changes(pins)?;
    let outcome = if changes.is_empty() && kernel::check_layout(pins).is_ok() {
        swap_program(pins, dir, lock)?
    } else {
        migrate(pins, dir, lock, changes)?
    };
    Ok(Report { resumed, outcome })
}

/// Finishes an interrupted upgrade (steps 4 and 5).
fn resume(pins: &Pins, dir: &StateDir) -> Result<Option<Switched>> {
    if !interrupted(dir)? {
        return Ok(None);
    }
    let path = journal_path(dir);
    let j = read_journal(&path)?;
    if j.bpffs != pins.dir {
        return Err(UpgradeError::OtherDirectory {
            bpffs: j.bpffs,
            journal: path,
        });
    }
    let state = dir.load()?;
    Ok(Some(install(pins, &Pins::new(j.staging), dir, &state)?))
}

/// Whether the interface's link should run the no-op program: as recorded by `attach
/// --noop`, or, for a link the record does not know, as it does now.
fn wants_noop(state: &StateFile, iface: &str, running: u32, noops: &[Option<Prog>]) -> bool {
    match state.interfaces.get(iface) {
        Some(i) => i.mode.contains("no-op"),
        None => noops.iter().flatten().any(|p| p.id == running),
    }
}

/// Switches every pinned link with `update(iface, noop)`, `noop` saying whether the link
/// should run the no-op program (see [`wants_noop`]); `update` says false for a link that is
/// no longer attached.
fn switch_links(
    pins: &Pins,
    state: &StateFile,
    noops: &[Option<Prog>],
    mut update: impl FnMut(&str, bool) -> Result<bool>,
) -> Result<Switched> {
    let mut out = Switched::default();
    let t0 = Instant::now();
    for iface in pins.attached()? {
        let running = kernel::link_program_id(pins, &iface)?;
        if update(&iface, wants_noop(state, &iface, running, noops))? {
            out.links.push(iface);
        } else {
            out.defunct.push(iface);
        }
    }
    out.took = t0.elapsed();
    Ok(out)
}

/// Same layout: this build's programs on the pinned maps.
fn swap_program(pins: &Pins, dir: &StateDir, lock: crate::state::Lock) -> Result<Outcome> {
    // Under the lock: an interrupted change is finished, and the record is checked against
    // the maps, as before any change.
    let c = Controller::open_locked(pins, dir, lock)?;
    let from = Prog::pinned(&pins.prog())?;
    let from_noop = Prog::pinned(&pins.noop())?;
    let mut ebpf = kernel::load_programs(pins, c.maps.capacity)?;
    let mut loaded = |name| -> Result<Prog> {
        let info = kernel::program_mut(&mut ebpf, name)?
            .info()
            .map_err(KernelError::from)?;
        Ok(Prog::of(&info))
    };
    let (to, to_noop) = (loaded(PROGRAM_NAME)?, loaded(PROGRAM_NOOP)?);
    if from.tag == to.tag && from_noop.tag == to_noop.tag {
        // The pinned programs are this build's (the ones just loaded are dropped unused):
        // only a link running something else (an upgrade interrupted between its link
        // updates and its re-pinning) is pointed at them.
        let mut pinned = [
            kernel::pinned_program(pins, false)?,
            kernel::pinned_program(pins, true)?,
        ];
        let noops = [Some(from_noop)];
        let mut switched = Switched::default();
        let t0 = Instant::now();
        for iface in pins.attached()? {
            let running = kernel::link_program_id(pins, &iface)?;
            let noop = wants_noop(&c.state, &iface, running, &noops);
            if running == [from.id, from_noop.id][usize::from(noop)] {
                continue;
            }
            if kernel::update_link(pins, &iface, &mut pinned[usize::from(noop)])? {
                switched.links.push(iface);
            } else {
                switched.defunct.push(iface);
            }
        }
        switched.took = t0.elapsed();
        if switched.links.is_empty() {
            return Ok(Outcome::UpToDate {
                prog: from,
                defunct: switched.defunct,
            });
        }
        return Ok(Outcome::Program {
            from,
            to: from,
            switched,
        });
    }
    // Both programs of this load, for every link: simpler than telling which links already
    // run an identical program, and as atomic.
    let switched = switch_links(pins, &c.state, &[Some(from_noop)], |iface, noop| {
        let name = if noop { PROGRAM_NOOP } else { PROGRAM_NAME };
        Ok(kernel::update_link(
            pins,
            iface,
            kernel::program_mut(&mut ebpf, name)?,
        )?)
    })?;
    txn::crash_point("upgrade-linked");
    for (name, pin) in [(PROGRAM_NAME, pins.prog()), (PROGRAM_NOOP, pins.noop())] {
        let prog = kernel::program_mut(&mut ebpf, name)?;
        kernel::pin_in_place(&pin, |tmp| {
            prog.pin(tmp)
                .op(|| format!("pinning the program at {}", tmp.display()))?;
            Ok(())
        })?;
    }
    Ok(Outcome::Program { from, to, switched })
}

/// Another layout: the record into this build's new maps, then the switch.
fn migrate(
    pins: &Pins,
    dir: &StateDir,
    lock: crate::state::Lock,
    changes: Vec<String>,
) -> Result<Outcome> {
    let capacity = kernel::pinned_capacity(pins)?;
    let r = rebuild(pins, dir, lock, capacity)?;
    Ok(Outcome::Migrated {
        changes,
        from: r.from,
        to: r.to,
        switched: r.switched,
        shared: r.shared,
        reset: r.reset,
        rules: r.controller.state.orders.iter().map(|o| o.rules).sum(),
        orders: r.controller.state.orders.len(),
        generation: r.controller.state.generation,
    })
}

/// What [`rebuild`] did.
pub(crate) struct Rebuilt {
    /// A controller of the new maps, holding the lock.
    pub controller: Controller,
    from: Prog,
    to: Prog,
    pub switched: Switched,
    shared: Vec<&'static str>,
    reset: Vec<&'static str>,
}

/// Steps 1 to 5 of a change of layout: this build's program with new maps of `capacity`
/// rules, the record in them, every link switched, the new objects pinned in place.
fn rebuild(
    pins: &Pins,
    dir: &StateDir,
    lock: crate::state::Lock,
    capacity: u32,
) -> Result<Rebuilt> {
    // 1. The record must be what the running maps enforce.
    let generation = kernel::pinned_generation(pins)?;
    txn::settle_journal(dir, generation)?;
    let state = dir.load()?;
    if state.generation != generation {
        return Err(TxnError::Generation {
            kernel: generation,
            state: dir.state_path(),
            recorded: state.generation,
            bpffs: pins.dir.clone(),
        }
        .into());
    }
    // The capacity asked for, or more when a recorded rule id lies beyond it (maps restored
    // by a build that sized them by the number of rules only): every id indexes the counters.
    let capacity = txn::fresh_capacity(dir, capacity)?;
    crate::secret::carry_over(pins, dir)?;
    let from = Prog::pinned(&pins.prog())?;
    let old_noop = Prog::pinned(&pins.noop()).ok();

    // 2. Staging: shared counters first, then the load, then the record.
    let staging = pins.staging();
    let staged = stage(pins, &staging, dir, lock, capacity);
    let (controller, shared, reset) = match staged {
        Ok(s) => s,
        Err(e) => {
            // Nothing refers to a half-built staging directory.
            let _ = fs::remove_dir_all(&staging.dir);
            return Err(e);
        }
    };
    txn::crash_point("upgrade-staged");

    // 3. The journal, then 4 and 5.
    let journal = Journal {
        bpffs: pins.dir.clone(),
        staging: staging.dir.clone(),
        started: now(),
    };
    write_synced(&journal_path(dir), &serde_json::to_vec_pretty(&journal)?)?;
    let to = Prog::pinned(&staging.prog())?;
    let switched = install_with(pins, &staging, dir, &controller.state, &[old_noop])?;
    Ok(Rebuilt {
        controller,
        from,
        to,
        switched,
        shared,
        reset,
    })
}

/// Gives the data plane pinned in `pins.dir` room for `capacity` rules: the path of an
/// upgrade to another layout (new maps with the record in them, every link switched with
/// one BPF_LINK_UPDATE, so each interface goes from the old rule map to the new one, which
/// hold the same rules, in one step), with this build and a larger rule map. The rule
/// counters are copied into the new map just before the links switch. The caller holds the
/// lock and has no change under way; it gets a controller of the new maps, holding the lock.
pub(crate) fn grow(
    pins: &Pins,
    dir: &StateDir,
    lock: crate::state::Lock,
    capacity: u32,
) -> Result<Rebuilt> {
    let before = kernel::pinned_capacity(pins)?;
    let r = rebuild(pins, dir, lock, capacity)?;
    eprintln!(
        "the rule map grew from {before} to {capacity} rules (new maps, {} link(s) switched \
         in {:.1} ms)",
        r.switched.links.len(),
        r.switched.took.as_secs_f64() * 1e3
    );
    Ok(r)
}

/// Step 2: the staging directory holds this build's program and maps with the record in
/// them, and the counter maps it shares with the running program. A counter map that
/// differs only in its number of entries (the rule counters of a rule map of another
/// capacity) is not shared but copied, just before the caller switches the links.
#[allow(clippy::type_complexity)]
fn stage(
    pins: &Pins,
    staging: &Pins,
    dir: &StateDir,
    lock: crate::state::Lock,
    capacity: u32,
) -> Result<(Controller, Vec<&'static str>, Vec<&'static str>)> {
    if staging.dir.exists() {
        // Left by an upgrade that stopped before its switch: nothing runs from it.
        fs::remove_dir_all(&staging.dir).op(|| format!("removing {}", staging.dir.display()))?;
    }
    staging.ensure_dir()?;
    let want = kernel::object_maps(capacity)?;
    let (mut shared, mut reset, mut copied) = (Vec::new(), Vec::new(), Vec::new());
    for name in SHARED {
        let path = pins.map(name);
        let have = match path.exists() {
            true => Some(MapShape::of_pinned(&path)?),
            false => None,
        };
        match (have, want.get(name)) {
            (Some(have), Some(want)) if have == *want => {
                kernel::repin(pins, staging, name)?;
                shared.push(name);
            }
            // The counters of another capacity, or the per-CPU hash map of the builds before
            // they became one array: copied by rule id.
            (Some(have), Some(want))
                if name == MAP_RULE_HITS
                    && (have.resized_to(want)
                        || have.map_type == aya::maps::MapType::PerCpuHash as u32) =>
            {
                copied.push(name)
            }
            _ => reset.push(name),
        }
    }
    let c = Controller::restore_into(staging, dir, lock, capacity)?;
    if !copied.is_empty() {
        let n = kernel::copy_rule_hits(pins, staging)?;
        log::info!("copied the counters of {n} rules into the new counter map");
        shared.extend(copied);
    }
    Ok((c, shared, reset))
}

/// Steps 4 and 5 of an interrupted upgrade.
fn install(pins: &Pins, staging: &Pins, dir: &StateDir, state: &StateFile) -> Result<Switched> {
    let noops = [
        Prog::pinned(&pins.noop()).ok(),
        Prog::pinned(&staging.noop()).ok(),
    ];
    install_with(pins, staging, dir, state, &noops)
}

/// Steps 4 and 5: every link to the staged programs, the staged objects under the final
/// names, then the journal and the staging directory removed. Can be done again after any
/// interruption.
fn install_with(
    pins: &Pins,
    staging: &Pins,
    dir: &StateDir,
    state: &StateFile,
    noops: &[Option<Prog>],
) -> Result<Switched> {
    let open = |p: PathBuf| {
        Xdp::from_pin(&p, XdpAttachType::Interface)
            .map_err(KernelError::from)
            .op(|| format!("opening the program {}", p.display()))
    };
    let (mut main, mut noop) = (open(staging.prog())?, open(staging.noop())?);
    let switched = switch_links(pins, state, noops, |iface, wants_noop| {
        let prog = if wants_noop { &mut noop } else { &mut main };
        Ok(kernel::update_link(pins, iface, prog)?)
    })?;
    txn::crash_point("upgrade-linked");
    let objects = staging.objects()?;
    for (i, name) in objects.iter().enumerate() {
        kernel::repin(staging, pins, name)?;
        if i == 0 {
            txn::crash_point("upgrade-installing");
        }
    }
    pins.remove_half_made()?;
    for name in pins.objects()? {
        if !objects.contains(&name) {
            let p = pins.dir.join(&name);
            fs::remove_file(&p).op(|| format!("removing {}", p.display()))?;
        }
    }
    // A change interrupted before the upgrade was settled in the record (step 1), which the
    // new maps hold settled: its journal has nothing left to do.
    if dir.txn_path().exists() {
        fs::remove_file(dir.txn_path())?;
        dir.gc(state)?;
    }
    let journal = journal_path(dir);
    if journal.exists() {
        fs::remove_file(&journal).op(|| format!("removing {}", journal.display()))?;
    }
    fs::remove_dir_all(&staging.dir).op(|| format!("removing {}", staging.dir.display()))?;
    Ok(switched)
}

/// Writes `bytes` to `path` (write, fsync, rename, fsync of the directory).
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.new");
    let mut f = fs::File::create(&tmp).op(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .op(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).op(|| format!("creating {}", path.display()))?;
    if let Some(d) = path.parent() {
        if let Ok(d) = fs::File::open(d) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
