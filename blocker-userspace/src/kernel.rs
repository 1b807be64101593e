//! The kernel side as the controller sees it: the bpffs directory, loading and pinning the
//! embedded XDP program, and typed handles to the pinned maps.
//!
//! Everything the data plane needs lives in pinned objects under one directory (default
//! /sys/fs/bpf/blocker): the program, its maps and one link per attached interface. The
//! controller can exit, crash or be upgraded; the program keeps running with its rules.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use crate::{
    error::{Message, OpContext, OpError},
    sys,
};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap},
    programs::{links::FdLink, links::PinnedLink, xdp::XdpLink, Xdp},
    Ebpf, EbpfLoader,
};
use blocker_common::{
    key::KeySecret, wide_capacity, Config, OrderHits, OrderInfo, RuleInline, RuleKey, RuleSet,
    RuleValue, Stats, MAP_CONFIG, MAP_FILTER, MAP_KEY, MAP_ORDERS, MAP_ORDER_HITS, MAP_RULES,
    MAP_RULES_WIDE, MAP_RULE_HITS, MAP_STATS, PROGRAM_NAME, PROGRAM_NOOP,
};

/// The XDP program, built by build.rs from blocker-ebpf.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/blocker"));

/// Default bpffs directory.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf/blocker";

/// File names inside the bpffs directory.
const PROG_PIN: &str = "prog";
const NOOP_PIN: &str = "prog_noop";
const LINKS_DIR: &str = "links";
/// Where `blocker upgrade` builds the new program and maps before they replace these (a
/// directory inside the bpffs directory, so removing that removes everything; bpffs allows
/// no dot in a name).
const STAGING_DIR: &str = "upgrade";

/// Why the kernel side could not be opened, loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "{} is not on a BPF filesystem (mount one with `mount -t bpf bpf /sys/fs/bpf`, \
         or run `cargo xtask setup`)",
        .0.display()
    )]
    NotBpffs(PathBuf),
    /// A pinned map is missing: nothing was loaded in `dir`.
    #[error(
        "{} does not exist: blocker is not loaded in {} (run `blocker attach` first)",
        path.display(),
        dir.display()
    )]
    NotLoaded { path: PathBuf, dir: PathBuf },
    /// The maps were pinned by a blocker without secret keys.
    #[error(
        "{} is missing: the maps in {} were pinned by a blocker without secret keys \
         (an incompatible version). Remove that directory (`blocker detach --purge` \
         also removes the recorded rules; `rm -r` of the directory alone keeps them, \
         and the next `blocker attach` restores them with a new secret)",
        path.display(),
        dir.display()
    )]
    NoKeyMap { path: PathBuf, dir: PathBuf },
    /// The orders map has another number of entries than this build's.
    #[error(
        "{} has {found} entries, this blocker expects {expected} (two copies of every order): it was \
         pinned by an incompatible version (run `blocker upgrade` to move the rules into this \
         version's maps, or `blocker detach --purge` to start afresh)",
        path.display()
    )]
    OrdersSize {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// A pinned map's key or value size is not this build's.
    #[error(
        "{} has key size {key} and value size {value}, this blocker expects {want_key} and {want_value}: it was \
         pinned by an incompatible version (run `blocker upgrade` to move the rules into this \
         version's maps, or `blocker detach --purge` to start afresh)",
        path.display()
    )]
    Layout {
        path: PathBuf,
        key: u32,
        value: u32,
        want_key: u32,
        want_value: u32,
    },
    /// The pinned configuration is too short to hold a generation.
    #[error(
        "{} holds {size}-byte values, too short for a list generation: it was not pinned by blocker",
        path.display()
    )]
    NoGeneration { path: PathBuf, size: usize },
    /// The embedded object lacks a program (a broken build).
    #[error("the object has no `{0}` program")]
    NoProgram(String),
    /// A rule map has no room for the rules (or the kernel none for its elements).
    #[error(
        "{map} is full ({capacity} entries) or the kernel has no memory left for it: give the \
         rule map more room with `blocker attach --capacity N` (the change was not enforced)"
    )]
    RulesFull { map: String, capacity: u32 },
    /// An inline rule-map value points to a wide entry that is not there.
    #[error(
        "BLK_RULES marks the rules of key {0:?} as held in BLK_RULES_WIDE, which has no entry \
         for it (the rule maps were not written by blocker)"
    )]
    WideMissing(RuleKey),
    #[error("BPF_MAP_UPDATE_BATCH made no progress")]
    NoProgress,
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    Map(#[from] aya::maps::MapError),
    #[error(transparent)]
    Program(#[from] aya::programs::ProgramError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Nul(#[from] std::ffi::NulError),
    /// The pinned key filter has another layout than this build's.
    #[error(
        "the pinned key filter has {entries} values of {value_size} bytes, this blocker expects 2 of {want_size} \
         (run `blocker upgrade` to move the rules into this version's maps, or `blocker detach \
         --purge` to start afresh)"
    )]
    FilterLayout {
        entries: u32,
        value_size: u32,
        want_size: usize,
    },
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// The bpffs directory and what is pinned in it.
#[derive(Clone, Debug)]
pub struct Pins {
    pub dir: PathBuf,
}

impl Pins {
    pub fn new(dir: impl Into<PathBuf>) -> Pins {
        Pins { dir: dir.into() }
    }

    pub fn prog(&self) -> PathBuf {
        self.dir.join(PROG_PIN)
    }

    pub fn noop(&self) -> PathBuf {
        self.dir.join(NOOP_PIN)
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn links_dir(&self) -> PathBuf {
        self.dir.join(LINKS_DIR)
    }

    pub fn link(&self, iface: &str) -> PathBuf {
        self.links_dir().join(iface)
    }

    /// The staging directory of `blocker upgrade`: the new program and its maps, pinned
    /// under the same names as here, until they replace these.
    pub fn staging(&self) -> Pins {
        Pins::new(self.dir.join(STAGING_DIR))
    }

    /// Names of the objects pinned directly in the directory (program, no-op program, maps;
    /// not the links, nor the staging directory), sorted.
    pub fn objects(&self) -> Result<Vec<String>> {
        let mut v = Vec::new();
        for e in fs::read_dir(&self.dir).op(|| format!("reading {}", self.dir.display()))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            // A pin half made by `pin_in_place` when a crash stopped it: the next pin of that
            // object replaces it.
            if !e.file_type()?.is_dir() && !name.ends_with(REPLACING) {
                v.push(name);
            }
        }
        v.sort();
        Ok(v)
    }

    /// Removes the pins a crash left half made by [`pin_in_place`] (each holds an object
    /// alive that nothing uses).
    pub fn remove_half_made(&self) -> Result<()> {
        for e in fs::read_dir(&self.dir).op(|| format!("reading {}", self.dir.display()))? {
            let e = e?;
            if e.file_name().to_string_lossy().ends_with(REPLACING) {
                fs::remove_file(e.path()).op(|| format!("removing {}", e.path().display()))?;
            }
        }
        Ok(())
    }

    /// Whether the program has been loaded and pinned.
    pub fn loaded(&self) -> bool {
        self.prog().exists() && self.map(MAP_RULES).exists()
    }

    /// Interfaces with a pinned link, sorted.
    pub fn attached(&self) -> Result<Vec<String>> {
        let dir = self.links_dir();
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut v = Vec::new();
        for e in fs::read_dir(&dir).op(|| format!("reading {}", dir.display()))? {
            let e = e?;
            v.push(e.file_name().to_string_lossy().into_owned());
        }
        v.sort();
        Ok(v)
    }

    /// Creates the directory (root only, mode 0700) on a mounted bpffs.
    pub fn ensure_dir(&self) -> Result<()> {
        let parent = self.dir.parent().unwrap_or(Path::new("/"));
        if !is_bpffs(parent)? && !is_bpffs(&self.dir)? {
            return Err(KernelError::NotBpffs(self.dir.clone()));
        }
        for d in [self.dir.clone(), self.links_dir()] {
            if !d.exists() {
                fs::create_dir_all(&d).op(|| format!("creating {}", d.display()))?;
            }
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700))
                .op(|| format!("restricting {} to root", d.display()))?;
        }
        Ok(())
    }
}

/// Whether `path` is on a BPF filesystem.
pub fn is_bpffs(path: &Path) -> Result<bool> {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: statfs writes into the zeroed struct we pass; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if r != 0 {
        return Ok(false);
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Loads the embedded object with its maps pinned in `pins.dir` (existing pinned maps are
/// reused, so rules and counters survive a reload), loads the XDP program into the kernel
/// and pins it. `capacity` sizes the rule map and the rule counters when they are created.
pub fn load_and_pin(pins: &Pins, capacity: u32) -> Result<Ebpf> {
    if pins.map(MAP_RULES).exists() {
        check_layout(pins)?;
    }
    pins.ensure_dir()?;
    let mut ebpf = load_programs(pins, capacity)?;
    if let Err(e) = aya_log::EbpfLogger::init(&mut ebpf) {
        // Release builds carry no log statements: nothing to forward.
        log::debug!("aya-log not initialised: {e}");
    }
    for (name, pin) in [(PROGRAM_NAME, pins.prog()), (PROGRAM_NOOP, pins.noop())] {
        let prog = program_mut(&mut ebpf, name)?;
        pin_in_place(&pin, |tmp| {
            prog.pin(tmp)
                .op(|| format!("pinning the program at {}", tmp.display()))?;
            Ok(())
        })?;
    }
    Ok(ebpf)
}

/// Loads the embedded object with its maps pinned in `pins.dir` (created there, or the ones
/// pinned there reused: the caller has checked their layout) and both XDP programs into the
/// kernel, without pinning the programs.
pub fn load_programs(pins: &Pins, capacity: u32) -> Result<Ebpf> {
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(&pins.dir)
        .map_max_entries(MAP_RULES, capacity)
        .map_max_entries(MAP_RULES_WIDE, wide_capacity(capacity))
        .map_max_entries(MAP_RULE_HITS, capacity)
        .load(OBJECT)
        .op(|| "loading the blocker object".to_string())?;
    for name in [PROGRAM_NAME, PROGRAM_NOOP] {
        program_mut(&mut ebpf, name)?
            .load()
            .map_err(|e| Message(verifier_message(&e)))
            .op(|| format!("the kernel refused the XDP program `{name}`"))?;
    }
    release_free_memory();
    Ok(ebpf)
}

/// Gives the allocator's free memory back to the system. Loading the object parses the
/// kernel's BTF into megabytes of small allocations, all freed by the end of the load but
/// kept by glibc for reuse; a large change is built right after (a load that grows the maps
/// loads the object twice), and its peak would stand on them.
fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointer; it only returns free memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Loads one of the object's reference programs (`blocker_floor`, `blocker_reflect`: the
/// benchmarks' baselines; `blocker_sink`: their reply counter; never attached by blocker)
/// into the kernel, with the object's maps
/// created small and pinned in `dir` (a throwaway bpffs directory the caller removes).
pub fn load_reference(dir: &Path, name: &str) -> Result<Ebpf> {
    fs::create_dir_all(dir).op(|| format!("creating {}", dir.display()))?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(dir)
        .map_max_entries(MAP_RULES, 1024)
        .map_max_entries(MAP_RULES_WIDE, 1024)
        .map_max_entries(MAP_RULE_HITS, 1024)
        .load(OBJECT)
        .op(|| "loading the blocker object".to_string())?;
    program_mut(&mut ebpf, name)?
        .load()
        .map_err(|e| Message(verifier_message(&e)))
        .op(|| format!("the kernel refused the XDP program `{name}`"))?;
    Ok(ebpf)
}

/// One of the object's XDP programs.
pub fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    Ok(ebpf
        .program_mut(name)
        .ok_or_else(|| KernelError::NoProgram(name.to_string()))?
        .try_into()?)
}

fn verifier_message(e: &aya::programs::ProgramError) -> String {
    match e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            format!("{io_error}\nverifier log:\n{verifier_log}")
        }
        other => other.to_string(),
    }
}

/// The pinned blocker program (or the no-op one).
pub fn pinned_program(pins: &Pins, noop: bool) -> Result<Xdp> {
    let path = if noop { pins.noop() } else { pins.prog() };
    Xdp::from_pin(&path, aya_obj::programs::XdpAttachType::Interface)
        .op(|| format!("opening the pinned program {}", path.display()))
        .map_err(Into::into)
}

/// Pins an attachment so it outlives this process.
pub fn pin_link(pins: &Pins, iface: &str, link: FdLink) -> Result<PinnedLink> {
    let path = pins.link(iface);
    link.pin(&path)
        .op(|| format!("pinning the link at {}", path.display()))
        .map_err(Into::into)
}

/// Whether the link pinned for `iface` is still attached to an interface (false: defunct,
/// its interface went away and the kernel detached it; or no pin).
pub fn link_attached(pins: &Pins, iface: &str) -> bool {
    crate::sys::xdp_link_ifindex_at(&pins.link(iface)).is_ok_and(|i| i != 0)
}

/// The id of the program the link pinned for `iface` runs.
pub fn link_program_id(pins: &Pins, iface: &str) -> Result<u32> {
    let path = pins.link(iface);
    let link = FdLink::from(
        PinnedLink::from_pin(&path).op(|| format!("opening the link {}", path.display()))?,
    );
    Ok(link
        .info()
        .op(|| format!("reading the link {}", path.display()))?
        .program_id())
}

/// Points the XDP link pinned for `iface` at `prog` with one BPF_LINK_UPDATE (aya's
/// `attach_to_link`): the kernel swaps the interface's program in one step, so every packet
/// runs either the program the link ran until then or `prog`, and none runs neither. The link
/// keeps its pin and its attachment mode. `false`: the link is no longer attached to anything
/// (its interface, or the namespace it was in, is gone), and was left as it is.
pub fn update_link(pins: &Pins, iface: &str, prog: &mut Xdp) -> Result<bool> {
    let path = pins.link(iface);
    let link = FdLink::from(
        PinnedLink::from_pin(&path).op(|| format!("opening the link {}", path.display()))?,
    );
    let link = XdpLink::try_from(link).op(|| format!("{} is not an XDP link", path.display()))?;
    let id = match prog.attach_to_link(link) {
        Ok(id) => id,
        Err(aya::programs::ProgramError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOLINK) =>
        {
            return Ok(false)
        }
        Err(e) => {
            return Err(OpError {
                context: format!("updating the link {} (BPF_LINK_UPDATE)", path.display()),
                source: Box::new(e),
            }
            .into())
        }
    };
    // Our descriptor of the link only: the pin keeps the link and its new program.
    drop(prog.take_link(id)?);
    Ok(true)
}

/// Pins the object pinned as `name` in `from` under the same name in `to`, replacing what
/// `to` had there: a program for the two program names, a map for every other name.
pub fn repin(from: &Pins, to: &Pins, name: &str) -> Result<()> {
    let (src, dst) = (from.dir.join(name), to.dir.join(name));
    if name == PROG_PIN || name == NOOP_PIN {
        let mut p = Xdp::from_pin(&src, aya_obj::programs::XdpAttachType::Interface)
            .op(|| format!("opening the program {}", src.display()))?;
        pin_in_place(&dst, |tmp| {
            p.pin(tmp)
                .op(|| format!("pinning the program at {}", tmp.display()))?;
            Ok(())
        })
    } else {
        let m = MapData::from_pin(&src).op(|| format!("opening {}", src.display()))?;
        pin_in_place(&dst, |tmp| {
            m.pin(tmp)
                .op(|| format!("pinning the map at {}", tmp.display()))?;
            Ok(())
        })
    }
}

/// The suffix of a pin `pin_in_place` is making.
const REPLACING: &str = "_replacing";

/// Pins an object at `dst`, replacing what is pinned there in one step: `pin` pins it under a
/// name beside `dst` (`NAME_replacing`: bpffs refuses dots in names), which is then renamed
/// over it (bpffs renames like any filesystem). There is no moment without a pin at `dst` for
/// another command (the restore unit, `status`, `serve`) to find empty, nor after a crash; a
/// name left by a crash between the two steps is replaced by the next pin of that object.
pub fn pin_in_place(dst: &Path, pin: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dst.with_file_name(format!("{name}{REPLACING}"));
    if tmp.exists() {
        fs::remove_file(&tmp).op(|| format!("removing {}", tmp.display()))?;
    }
    pin(&tmp)?;
    fs::rename(&tmp, dst).op(|| format!("pinning at {}", dst.display()))?;
    Ok(())
}

/// What the kernel keeps of a map's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapShape {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

impl MapShape {
    /// `self` and `new` differ only in their number of entries.
    pub fn resized_to(&self, new: &MapShape) -> bool {
        MapShape {
            max_entries: new.max_entries,
            ..*self
        } == *new
    }

    /// The layout of the map pinned at `path`.
    pub fn of_pinned(path: &Path) -> Result<MapShape> {
        let info = MapData::from_pin(path)
            .op(|| format!("opening {}", path.display()))?
            .info()?;
        Ok(MapShape {
            map_type: info.map_type()? as u32,
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
            flags: info.map_flags(),
        })
    }

    /// How `new` differs from this one, in words ("value size 96 → 104").
    pub fn change_to(&self, new: &MapShape) -> String {
        let mut parts = Vec::new();
        for (what, a, b) in [
            ("type", self.map_type, new.map_type),
            ("key size", self.key_size, new.key_size),
            ("value size", self.value_size, new.value_size),
            ("entries", self.max_entries, new.max_entries),
            ("flags", self.flags, new.flags),
        ] {
            if a != b {
                parts.push(format!("{what} {a} → {b}"));
            }
        }
        parts.join(", ")
    }
}

/// This build's pinned maps (the object's maps pinned by name) and their layout, with the
/// rule map and the rule counters sized `capacity`.
pub fn object_maps(capacity: u32) -> Result<std::collections::BTreeMap<String, MapShape>> {
    let obj = aya_obj::Object::parse(OBJECT)
        .map_err(|e| Message(e.to_string()))
        .op(|| "reading the embedded object".to_string())?;
    let mut out = std::collections::BTreeMap::new();
    for (name, m) in &obj.maps {
        if m.pinning() != aya_obj::maps::PinningType::ByName {
            continue;
        }
        let max_entries = if name == MAP_RULES || name == MAP_RULE_HITS {
            capacity
        } else if name == MAP_RULES_WIDE {
            wide_capacity(capacity)
        } else {
            m.max_entries()
        };
        out.insert(
            name.clone(),
            MapShape {
                map_type: m.map_type(),
                key_size: m.key_size(),
                value_size: m.value_size(),
                max_entries,
                flags: m.map_flags(),
            },
        );
    }
    Ok(out)
}

/// max_entries of the pinned rule map: its capacity in rules (set by `blocker attach
/// --capacity`, by the first `blocker rules load` for its list, or by a growth).
pub fn pinned_capacity(pins: &Pins) -> Result<u32> {
    Ok(open_map(pins, MAP_RULES)?.info()?.max_entries())
}

/// How the maps pinned in `pins.dir` differ from this build's, one line per map; empty when
/// every map this build pins is pinned there with the same type, sizes, entries and flags,
/// and nothing else is.
pub fn layout_changes(pins: &Pins) -> Result<Vec<String>> {
    let want = object_maps(pinned_capacity(pins)?)?;
    let mut out = Vec::new();
    for (name, shape) in &want {
        let path = pins.map(name);
        if !path.exists() {
            out.push(format!("{name}: new in this version"));
            continue;
        }
        let have = MapShape::of_pinned(&path)?;
        if have != *shape {
            out.push(format!("{name}: {}", have.change_to(shape)));
        }
    }
    for name in pins.objects()? {
        if name != PROG_PIN && name != NOOP_PIN && !want.contains_key(&name) {
            out.push(format!("{name}: not in this version"));
        }
    }
    Ok(out)
}

/// `Config::generation` of the configuration pinned in `pins.dir`, whatever the rest of its
/// layout: `epoch` (`active` before it) and `generation` open `Config` in every version (see
/// [`blocker_common::Config`]), so a build can read the generation of any other's.
pub fn pinned_generation(pins: &Pins) -> Result<u32> {
    let path = pins.map(MAP_CONFIG);
    if !path.exists() {
        return Err(KernelError::NotLoaded {
            path,
            dir: pins.dir.clone(),
        });
    }
    let map = sys::RawMap::from_pin(&path).op(|| format!("opening {}", path.display()))?;
    let mut value = vec![0u8; map.value_size()];
    map.lookup(&0u32.to_ne_bytes(), &mut value)
        .op(|| format!("reading {}", path.display()))?;
    let at = std::mem::offset_of!(Config, generation);
    match value.get(at..at + 4) {
        Some(b) => Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(KernelError::NoGeneration {
            path,
            size: value.len(),
        }),
    }
}

fn open_map(pins: &Pins, name: &str) -> Result<MapData> {
    let path = pins.map(name);
    if !path.exists() {
        return Err(KernelError::NotLoaded {
            path,
            dir: pins.dir.clone(),
        });
    }
    Ok(MapData::from_pin(&path).op(|| format!("opening {}", path.display()))?)
}

/// Expected (key size, value size) of each pinned map. A pinned directory left by an
/// incompatible build (or by something else entirely) is refused instead of misread.
fn expected_layout() -> [(&'static str, u32, u32); 11] {
    use std::mem::size_of;
    [
        (
            MAP_RULES,
            size_of::<RuleKey>() as u32,
            size_of::<RuleInline>() as u32,
        ),
        (
            MAP_RULES_WIDE,
            size_of::<RuleKey>() as u32,
            size_of::<RuleValue>() as u32,
        ),
        (MAP_CONFIG, 4, size_of::<Config>() as u32),
        (MAP_ORDERS, 4, size_of::<OrderInfo>() as u32),
        (MAP_ORDER_HITS, 4, size_of::<OrderHits>() as u32),
        (
            MAP_RULE_HITS,
            4,
            size_of::<blocker_common::RuleHits>() as u32,
        ),
        (MAP_STATS, 4, size_of::<Stats>() as u32),
        (MAP_KEY, 4, size_of::<KeySecret>() as u32),
        (
            blocker_common::MAP_LOCAL,
            4,
            size_of::<blocker_common::LocalAnswer>() as u32,
        ),
        (
            blocker_common::MAP_GATES,
            4,
            size_of::<blocker_common::Gates>() as u32,
        ),
        (
            blocker_common::MAP_JURIS,
            4 + 16,
            size_of::<blocker_common::JurisValue>() as u32,
        ),
    ]
}

/// Checks that the pinned maps have the layout this build expects.
pub fn check_layout(pins: &Pins) -> Result<()> {
    for (name, k, v) in expected_layout() {
        if name == MAP_KEY && !pins.map(name).exists() {
            return Err(KernelError::NoKeyMap {
                path: pins.map(name),
                dir: pins.dir.clone(),
            });
        }
        let info = open_map(pins, name)?.info()?;
        if name == MAP_ORDERS && info.max_entries() != blocker_common::ORDER_ENTRIES {
            return Err(KernelError::OrdersSize {
                path: pins.map(name),
                found: info.max_entries(),
                expected: blocker_common::ORDER_ENTRIES,
            });
        }
        if info.key_size() != k || info.value_size() != v {
            return Err(KernelError::Layout {
                path: pins.map(name),
                key: info.key_size(),
                value: info.value_size(),
                want_key: k,
                want_value: v,
            });
        }
    }
    Ok(())
}

/// Elements per batch syscall.
const BATCH: usize = 16384;

/// How many times in a row a batch update that fails with ENOMEM and writes nothing is
/// retried (after 1, 2, … ms: about 2 s in all) before the map is reported full.
const ENOMEM_RETRIES: u32 = 60;

/// Writes `keys` and `values` into one of the rule maps with BPF_MAP_UPDATE_BATCH (a syscall
/// per 16K entries instead of one per entry). Each element is still replaced atomically for
/// readers.
fn update_batch<V: aya::Pod>(
    map: &HashMap<MapData, RuleKey, V>,
    keys: &[RuleKey],
    values: &[V],
) -> Result<()> {
    for (keys, values) in keys.chunks(BATCH).zip(values.chunks(BATCH)) {
        let mut done = 0usize;
        // Consecutive ENOMEMs without progress (see below).
        let mut starved = 0u32;
        while done < keys.len() {
            let n = match sys::map_update_batch(map, &keys[done..], &values[done..]) {
                Ok(n) => n,
                // The map is not preallocated: its elements come from per-CPU caches that the
                // kernel refills asynchronously (irq_work). A burst of batch updates into a
                // fresh map can empty a cache before it is refilled, and the update fails
                // with ENOMEM far below the map's capacity: wait for the refill, go on from
                // where the kernel stopped. ENOMEM that persists is memory really missing.
                Err(e)
                    if e.error.raw_os_error() == Some(libc::ENOMEM) && starved < ENOMEM_RETRIES =>
                {
                    if e.done > 0 {
                        starved = 0;
                    } else {
                        starved += 1;
                    }
                    log::debug!(
                        "rule map: ENOMEM after {} of {} entries (retry {starved})",
                        done + e.done,
                        keys.len()
                    );
                    std::thread::sleep(std::time::Duration::from_millis(u64::from(starved)));
                    done += e.done;
                    continue;
                }
                Err(e) => {
                    let errno = e.error.raw_os_error();
                    if errno == Some(libc::E2BIG) || errno == Some(libc::ENOMEM) {
                        let info = map_data(map).info().ok();
                        return Err(KernelError::RulesFull {
                            map: info
                                .as_ref()
                                .and_then(|i| i.name_as_str().map(str::to_string))
                                .unwrap_or_else(|| "the rule map".to_string()),
                            capacity: info.map_or(0, |i| i.max_entries()),
                        });
                    }
                    return Err(OpError {
                        context: "BPF_MAP_UPDATE_BATCH on the rule map".to_string(),
                        source: Box::new(e.error),
                    }
                    .into());
                }
            };
            done += n;
            if n == 0 {
                return Err(KernelError::NoProgress);
            }
        }
    }
    Ok(())
}

/// Deletes `keys` from one of the rule maps with BPF_MAP_DELETE_BATCH; keys already absent
/// are fine.
fn delete_batch<V: aya::Pod>(map: &HashMap<MapData, RuleKey, V>, keys: &[RuleKey]) -> Result<()> {
    for chunk in keys.chunks(BATCH) {
        if let Err(e) = sys::map_delete_batch(map, chunk) {
            // ENOENT stops the batch at a missing key: delete the rest one by one.
            for k in &chunk[e.done.min(chunk.len())..] {
                match sys::map_delete_batch(map, std::slice::from_ref(k)) {
                    Ok(_) => {}
                    Err(e) if e.error.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => {
                        return Err(OpError {
                            context: "BPF_MAP_DELETE_BATCH on the rule map".to_string(),
                            source: Box::new(e.error),
                        }
                        .into())
                    }
                }
            }
        }
    }
    Ok(())
}

/// The rules at every name, as user space sees them: one [`RuleValue`] (both copies, every
/// slot) per name, kept in `BLK_RULES` inline and, for a name too crowded for that, in
/// `BLK_RULES_WIDE` as well (see [`blocker_common::RuleInline`]: the wide entry is written
/// before the inline marker that points to it and removed after it).
pub struct RuleMap {
    pub inline: HashMap<MapData, RuleKey, RuleInline>,
    pub wide: HashMap<MapData, RuleKey, RuleValue>,
    /// The keys `wide` holds (read when opened: crowded names are few), so a name that is no
    /// longer crowded leaves it without a delete per written name.
    wide_keys: std::sync::Mutex<std::collections::HashSet<RuleKey>>,
}

impl RuleMap {
    fn open(pins: &Pins) -> Result<RuleMap> {
        let wide: HashMap<MapData, RuleKey, RuleValue> =
            HashMap::try_from(aya::maps::Map::HashMap(open_map(pins, MAP_RULES_WIDE)?))?;
        let wide_keys = wide.keys().collect::<std::result::Result<_, _>>()?;
        Ok(RuleMap {
            inline: HashMap::try_from(aya::maps::Map::HashMap(open_map(pins, MAP_RULES)?))?,
            wide,
            wide_keys: std::sync::Mutex::new(wide_keys),
        })
    }

    fn wide_keys(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<RuleKey>> {
        // A panic while the lock was held leaves a set that is at worst too large: deleting
        // an absent key is fine.
        self.wide_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The rules at `key` a packet at epoch `epoch` reads (`Config::epoch`), and the latest
    /// epoch the values read were written for (the inline value's, or the wide entry's when
    /// the copy in force points to it: a change interrupted between the two maps leaves a
    /// wide entry newer than its inline value); None when the map has no entry at `key`.
    pub fn get(&self, key: &RuleKey, epoch: u32) -> Result<Option<(RuleSet, u32)>> {
        let inline = match self.inline.get(key, 0) {
            Ok(v) => v,
            Err(aya::maps::MapError::KeyNotFound) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let wide = match inline.at(epoch).is_wide() {
            true => match self.wide.get(key, 0) {
                Ok(v) => Some(v),
                Err(aya::maps::MapError::KeyNotFound) => None,
                Err(e) => return Err(e.into()),
            },
            false => None,
        };
        let since = wide.map_or(inline.since, |w| w.since.max(inline.since));
        inline
            .join_at(epoch, wide.as_ref())
            .map(|set| Some((set, since)))
            .ok_or(KernelError::WideMissing(*key))
    }

    /// Every name's key.
    pub fn keys(&self) -> Result<Vec<RuleKey>> {
        Ok(self.inline.keys().collect::<std::result::Result<_, _>>()?)
    }

    /// Every name's rules in force at epoch `epoch`.
    pub fn entries(&self, epoch: u32) -> Result<Vec<(RuleKey, RuleSet)>> {
        let mut out = Vec::new();
        for k in self.keys()? {
            if let Some((set, _)) = self.get(&k, epoch)? {
                out.push((k, set));
            }
        }
        Ok(out)
    }

    /// Writes `entries`, each replaced atomically for readers; a name that needs the wide map
    /// gets its wide entry first; a name that no longer does loses it after its inline value
    /// is written: neither of its copies is wide, so the copy in force at any epoch a packet
    /// can be at (the one before the flip, or after it) points to no wide entry.
    pub fn update_batch(
        &self,
        entries: impl IntoIterator<Item = (RuleKey, RuleValue)>,
    ) -> Result<()> {
        let mut entries = entries.into_iter().peekable();
        let mut keys: Vec<RuleKey> = Vec::with_capacity(BATCH);
        let mut inline: Vec<RuleInline> = Vec::with_capacity(BATCH);
        let mut wide_keys: Vec<RuleKey> = Vec::new();
        let mut wide: Vec<RuleValue> = Vec::new();
        let mut narrow: Vec<RuleKey> = Vec::new();
        while entries.peek().is_some() {
            keys.clear();
            inline.clear();
            wide_keys.clear();
            wide.clear();
            narrow.clear();
            for (k, v) in entries.by_ref().take(BATCH) {
                let (i, needs_wide) = v.inline();
                keys.push(k);
                inline.push(i);
                if needs_wide {
                    wide_keys.push(k);
                    wide.push(v);
                } else {
                    narrow.push(k);
                }
            }
            if !wide.is_empty() {
                // Recorded first: a batch that fails half-way leaves no entry unknown.
                self.wide_keys().extend(wide_keys.iter().copied());
                update_batch(&self.wide, &wide_keys, &wide)?;
                crate::txn::crash_point("wide");
            }
            update_batch(&self.inline, &keys, &inline)?;
            self.drop_wide(&narrow)?;
        }
        Ok(())
    }

    /// Removes the names `keys` (absent ones are fine); their wide entries are left for a
    /// later [`RuleMap::drop_wide`] (a packet that read the epoch before the flip may still
    /// follow the old copy's marker).
    pub fn delete_batch(&self, keys: &[RuleKey]) -> Result<()> {
        delete_batch(&self.inline, keys)
    }

    /// Removes every wide entry the copy in force at `epoch` of no inline value points to
    /// (left by a change interrupted between the two maps, or by a marker no longer in force);
    /// returns how many. One lookup per wide entry: for recovery, when no packet reads an
    /// older epoch.
    pub fn prune_wide(&self, epoch: u32) -> Result<usize> {
        let held: Vec<RuleKey> = self.wide.keys().collect::<std::result::Result<_, _>>()?;
        let mut orphans = Vec::new();
        for k in held {
            let pointed = match self.inline.get(&k, 0) {
                Ok(v) => v.at(epoch).is_wide(),
                Err(aya::maps::MapError::KeyNotFound) => false,
                Err(e) => return Err(e.into()),
            };
            if !pointed {
                orphans.push(k);
            }
        }
        {
            let mut set = self.wide_keys();
            for k in &orphans {
                set.remove(k);
            }
        }
        delete_batch(&self.wide, &orphans)?;
        Ok(orphans.len())
    }

    /// Removes the wide entries of `keys`, whose inline values no longer point to them.
    pub fn drop_wide<'a>(&self, keys: impl IntoIterator<Item = &'a RuleKey>) -> Result<()> {
        let stale: Vec<RuleKey> = {
            let mut held = self.wide_keys();
            if held.is_empty() {
                return Ok(());
            }
            keys.into_iter()
                .filter(|k| held.remove(k))
                .copied()
                .collect()
        };
        delete_batch(&self.wide, &stale)
    }
}

fn map_data<K: aya::Pod, V: aya::Pod>(map: &HashMap<MapData, K, V>) -> &MapData {
    use aya::maps::IterableMap;
    map.map()
}

/// A zeroed `Gates` on the heap (never on the stack: it is 256 KiB).
pub fn gates_zeroed() -> Box<blocker_common::Gates> {
    // SAFETY: Gates is Pod: all-zero bytes are a valid value.
    unsafe { Box::<blocker_common::Gates>::new_zeroed().assume_init() }
}

/// Copies every rule counter pinned in `from` into the rule-counter array pinned in `to` (of
/// another capacity; or, from a build before the counters became one array, a per-CPU hash
/// map, summed over CPUs); returns how many rules had hits.
pub fn copy_rule_hits(from: &Pins, to: &Pins) -> Result<usize> {
    let old = open_map(from, MAP_RULE_HITS)?;
    let new = crate::mmap::Counters::new(&open_map(to, MAP_RULE_HITS)?)?;
    let new = new.all();
    let mut n = 0;
    let mut put = |id: u32, c: u64| {
        if let Some(w) = new.get(id as usize) {
            w.store(c, std::sync::atomic::Ordering::Relaxed);
            n += usize::from(blocker_common::rule_hits_count(c) > 0);
        }
    };
    if old.info()?.map_type()? == aya::maps::MapType::PerCpuHash {
        // Hits then, and the generation of this CPU's last hit: the generation is left out
        // (the next hit counts as a first one, and makes its event).
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Before {
            hits: u64,
            generation: u32,
            _reserved: u32,
        }
        // SAFETY: plain integers; any bytes are a valid value.
        unsafe impl aya::Pod for Before {}
        let old = PerCpuHashMap::<_, u32, Before>::try_from(aya::maps::Map::PerCpuHashMap(old))?;
        for entry in old.iter() {
            let (id, values) = entry?;
            let hits: u64 = values.iter().map(|v| v.hits).sum();
            put(id, blocker_common::rule_hits_count(hits));
        }
    } else {
        let old = crate::mmap::Counters::new(&old)?;
        for (id, w) in old.all().iter().enumerate() {
            put(id as u32, w.load(std::sync::atomic::Ordering::Relaxed));
        }
    }
    Ok(n)
}

/// Typed handles to the pinned maps.
pub struct Maps {
    pub rules: RuleMap,
    pub config: Array<MapData, Config>,
    pub orders: Array<MapData, OrderInfo>,
    pub order_hits: PerCpuArray<MapData, OrderHits>,
    /// The rule counters (`BLK_RULE_HITS`), indexed by rule id.
    pub rule_hits: crate::mmap::Counters,
    pub stats: PerCpuArray<MapData, Stats>,
    /// The key secret (one entry; all zero until the controller writes it).
    pub key: Array<MapData, KeySecret>,
    /// The key filter; `None` when the pinned program predates it (it then stays off).
    pub filter: Option<crate::filter::KeyFilter>,
    /// Every order's gate (one entry of 256 KiB, two copies): read and written through
    /// [`Maps::gates`] and [`Maps::set_gates`], on the heap.
    gates: MapData,
    /// Local data id → the records of its answers.
    pub local: HashMap<MapData, u32, blocker_common::LocalAnswer>,
    /// Client prefix → jurisdictions (two copies).
    pub juris: aya::maps::lpm_trie::LpmTrie<MapData, [u8; 16], blocker_common::JurisValue>,
    /// max_entries of the rule map.
    pub capacity: u32,
}

impl Maps {
    pub fn open(pins: &Pins) -> Result<Maps> {
        check_layout(pins)?;
        let rules_data = open_map(pins, MAP_RULES)?;
        let capacity = rules_data.info()?.max_entries();
        Ok(Maps {
            rules: RuleMap::open(pins)?,
            config: Array::try_from(aya::maps::Map::Array(open_map(pins, MAP_CONFIG)?))?,
            orders: Array::try_from(aya::maps::Map::Array(open_map(pins, MAP_ORDERS)?))?,
            order_hits: PerCpuArray::try_from(aya::maps::Map::PerCpuArray(open_map(
                pins,
                MAP_ORDER_HITS,
            )?))?,
            rule_hits: crate::mmap::Counters::new(&open_map(pins, MAP_RULE_HITS)?)?,
            stats: PerCpuArray::try_from(aya::maps::Map::PerCpuArray(open_map(pins, MAP_STATS)?))?,
            key: Array::try_from(aya::maps::Map::Array(open_map(pins, MAP_KEY)?))?,
            filter: match pins.map(MAP_FILTER).exists() {
                true => Some(crate::filter::KeyFilter(crate::filter::mapping(
                    &open_map(pins, MAP_FILTER)?,
                )?)),
                false => None,
            },
            gates: open_map(pins, blocker_common::MAP_GATES)?,
            local: HashMap::try_from(aya::maps::Map::HashMap(open_map(
                pins,
                blocker_common::MAP_LOCAL,
            )?))?,
            juris: aya::maps::lpm_trie::LpmTrie::try_from(aya::maps::Map::LpmTrie(open_map(
                pins,
                blocker_common::MAP_JURIS,
            )?))?,
            capacity,
        })
    }

    pub fn config(&self) -> Result<Config> {
        Ok(self.config.get(&0, 0)?)
    }

    /// Every order's gate, both copies.
    pub fn gates(&self) -> Result<Box<blocker_common::Gates>> {
        let mut g: Box<blocker_common::Gates> = gates_zeroed();
        // SAFETY: Gates is Pod (any bytes are a valid value); the slice covers exactly it.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                (&mut *g as *mut blocker_common::Gates).cast::<u8>(),
                std::mem::size_of::<blocker_common::Gates>(),
            )
        };
        crate::sys::map_lookup_bytes(
            std::os::fd::AsFd::as_fd(self.gates.fd()),
            &0u32.to_ne_bytes(),
            bytes,
        )
        .op(|| "reading BLK_GATES".to_string())?;
        Ok(g)
    }

    pub fn set_gates(&mut self, g: &blocker_common::Gates) -> Result<()> {
        // SAFETY: Gates is Pod, without padding; the slice covers exactly it.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (g as *const blocker_common::Gates).cast::<u8>(),
                std::mem::size_of::<blocker_common::Gates>(),
            )
        };
        crate::sys::map_update_bytes(
            std::os::fd::AsFd::as_fd(self.gates.fd()),
            &0u32.to_ne_bytes(),
            bytes,
        )
        .op(|| "writing BLK_GATES".to_string())?;
        Ok(())
    }

    /// The key filter in force, or `None` when it is off.
    pub fn filter_usage(&self) -> Result<Option<crate::filter::Usage>> {
        let f = self.config()?.filter;
        Ok(self.filter.as_ref().and_then(|k| k.usage(f)))
    }

    pub fn set_config(&mut self, c: &Config) -> Result<()> {
        self.config.set(0, c, 0)?;
        Ok(())
    }

    /// The pinned key secret, or `None` while nobody has written it (see
    /// [`crate::secret::establish`], the one place that writes it).
    pub fn key_secret(&self) -> Result<Option<KeySecret>> {
        let k = self.key.get(&0, 0)?;
        Ok((k != KeySecret::UNSET).then_some(k))
    }

    /// Writes the key secret (only into maps that hold no rule yet: the rule keys depend on it).
    pub(crate) fn set_key_secret(&mut self, k: &KeySecret) -> Result<()> {
        self.key.set(0, k, 0)?;
        Ok(())
    }

    /// Global counters summed over CPUs.
    pub fn stats(&self) -> Result<Stats> {
        let mut total = Stats::default();
        for s in self.stats.get(&0, 0)?.iter() {
            for (t, v) in total.counts.iter_mut().zip(s.counts.iter()) {
                *t += v;
            }
        }
        Ok(total)
    }

    /// Hits of one order summed over CPUs.
    pub fn order_hits(&self, order: u16) -> Result<OrderHits> {
        let mut total = OrderHits::default();
        for s in self.order_hits.get(&(order as u32), 0)?.iter() {
            for (t, v) in total.by_action.iter_mut().zip(s.by_action.iter()) {
                *t += v;
            }
        }
        Ok(total)
    }

    /// Hits of every rule that has been hit.
    pub fn rule_hits(&self) -> Result<std::collections::HashMap<u32, u64>> {
        Ok(self
            .rule_hits
            .all()
            .iter()
            .enumerate()
            .filter_map(|(id, c)| {
                let hits =
                    blocker_common::rule_hits_count(c.load(std::sync::atomic::Ordering::Relaxed));
                (hits > 0).then_some((id as u32, hits))
            })
            .collect())
    }

    /// Zeroes an order's counters on every CPU.
    pub fn reset_order_hits(&mut self, order: u16) -> Result<()> {
        let n = aya::util::nr_cpus().map_err(|(m, e)| OpError {
            context: m.to_string(),
            source: Box::new(e),
        })?;
        let zeros = aya::maps::PerCpuValues::try_from(vec![OrderHits::default(); n])?;
        self.order_hits.set(order as u32, zeros, 0)?;
        Ok(())
    }

    /// Zeroes a rule's counter (its id is free or about to be reused).
    pub fn reset_rule_hits(&self, id: u32) {
        if let Some(c) = self.rule_hits.all().get(id as usize) {
            c.store(0, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_change_is_named_field_by_field() {
        let old = MapShape {
            map_type: 2,
            key_size: 4,
            value_size: 96,
            max_entries: 1,
            flags: 0,
        };
        assert_eq!(old.change_to(&old), "");
        let new = MapShape {
            value_size: 104,
            flags: 1024,
            ..old
        };
        assert_eq!(old.change_to(&new), "value size 96 → 104, flags 0 → 1024");
    }

    /// The typed errors print what the anyhow messages they replaced printed (tests and
    /// operators' scripts match on them); the expected texts are written out in full.
    #[test]
    fn messages_are_unchanged() {
        let p = PathBuf::from("/sys/fs/bpf/blocker/BLK_ORDERS");
        let dir = PathBuf::from("/sys/fs/bpf/blocker");
        let cases = [
            (
                KernelError::Layout {
                    path: p.clone(),
                    key: 8,
                    value: 8,
                    want_key: 16,
                    want_value: 48,
                },
                "/sys/fs/bpf/blocker/BLK_ORDERS has key size 8 and value size 8, this blocker \
                 expects 16 and 48: it was pinned by an incompatible version (run `blocker \
                 upgrade` to move the rules into this version's maps, or `blocker detach --purge` \
                 to start afresh)",
            ),
            (
                KernelError::OrdersSize {
                    path: p.clone(),
                    found: 4096,
                    expected: 8192,
                },
                "/sys/fs/bpf/blocker/BLK_ORDERS has 4096 entries, this blocker expects 8192 (two \
                 copies of every order): it was pinned by an incompatible version (run `blocker \
                 upgrade` to move the rules into this version's maps, or `blocker detach --purge` \
                 to start afresh)",
            ),
            (
                KernelError::NotLoaded {
                    path: p.clone(),
                    dir: dir.clone(),
                },
                "/sys/fs/bpf/blocker/BLK_ORDERS does not exist: blocker is not loaded in \
                 /sys/fs/bpf/blocker (run `blocker attach` first)",
            ),
            (
                KernelError::NoKeyMap { path: p, dir },
                "/sys/fs/bpf/blocker/BLK_ORDERS is missing: the maps in /sys/fs/bpf/blocker were \
                 pinned by a blocker without secret keys (an incompatible version). Remove that \
                 directory (`blocker detach --purge` also removes the recorded rules; `rm -r` of \
                 the directory alone keeps them, and the next `blocker attach` restores them with \
                 a new secret)",
            ),
            (
                KernelError::FilterLayout {
                    entries: 1,
                    value_size: 8,
                    want_size: 4096,
                },
                "the pinned key filter has 1 values of 8 bytes, this blocker expects 2 of 4096 \
                 (run `blocker upgrade` to move the rules into this version's maps, or `blocker \
                 detach --purge` to start afresh)",
            ),
            (
                KernelError::RulesFull {
                    map: "BLK_RULES_WIDE".to_string(),
                    capacity: 4,
                },
                "BLK_RULES_WIDE is full (4 entries) or the kernel has no memory left for it: \
                 give the rule map more room with `blocker attach --capacity N` (the change was \
                 not enforced)",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }
}
