//! The controller's record of orders and rules: what was loaded, from where, with which rule
//! ids. The kernel maps hold only hashes; this is what `rules list`, `explain`, `stats` and the
//! next reload read.
//!
//! Layout of the state directory (default /var/lib/blocker, root only):
//! - `state.json`: generation, orders (metadata), interfaces.
//! - `orders/<order-id>.<generation>.tsv`: the rules of one order, one per line.
//! - `txn.json`: present only while a change is being applied (see [`crate::txn`]).
//! - `history/<generation>.json`: the state of the last [`HISTORY`] generations (their rules
//!   files are kept too), so a block event is named by the rules of its own generation.
//! - `lock`: held (flock) by every command that changes something.
//!
//! Files are replaced by write-then-rename, so a reader never sees half a file.

use std::{
    collections::BTreeMap,
    fmt,
    fs::{self, File},
    io::{BufWriter, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use blocker_common::{Action, Kind, MAX_EDE_TEXT, MAX_ORDERS};
use blocker_lists::Name;
use serde::{Deserialize, Serialize};

use crate::error::{OpContext, OpError};

/// Why the state directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A state file that does not parse.
    #[error("{} is corrupt", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A state file of another format version.
    #[error("{} has format {found}, this blocker reads format {expected}", path.display())]
    Format {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// A line of an order's rules file that does not parse (1-based `line`).
    #[error("{}:{line}: corrupt rule", path.display())]
    CorruptRule {
        path: PathBuf,
        line: usize,
        #[source]
        source: RuleLineError,
    },
    #[error("all 4096 order slots are in use")]
    OrdersFull,
    #[error("locking {}: {error}", path.display())]
    Lock {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("reading {}: thread panicked", .0.display())]
    Panicked(PathBuf),
    #[error("EDE text is {len} bytes; at most {max} fit in an answer")]
    EdeTooLong { len: usize, max: usize },
    #[error("EDE text contains control characters")]
    EdeControl,
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// What is wrong with one line of a rules file.
#[derive(Debug, thiserror::Error)]
pub enum RuleLineError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("bad kind")]
    Kind,
    #[error("bad action")]
    Action,
    #[error("bad name: {0}")]
    Name(String),
    #[error("bad local data: {0}")]
    Local(String),
    #[error(transparent)]
    Int(#[from] std::num::ParseIntError),
}

pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/blocker";
const FORMAT_VERSION: u32 = 1;
/// Generations whose state (and rules files) stay in `history/`: events still in the ring
/// buffer after list changes are named by the rules in force when they happened.
pub const HISTORY: usize = 16;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

mod opt_action_str {
    use blocker_common::Action;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &Option<Action>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.serialize_str(a.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Action>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => Action::parse(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown action {s:?}"))),
        }
    }
}

mod action_str {
    use blocker_common::Action;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &Action, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(a.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Action, D::Error> {
        let s = String::deserialize(d)?;
        Action::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown action {s:?}")))
    }
}

/// One order: a named source of rules with its own default action and EDE text.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Order {
    /// Index in the kernel's order table and counters.
    pub id: u16,
    /// The operator's name for it: a court case, a ticket, "allow-critical".
    pub name: String,
    /// Action of rules that do not say otherwise.
    #[serde(with = "action_str")]
    pub default_action: Action,
    /// EDE info-code (15 Blocked, 16 Censored); 0 means the configured default.
    pub ede_code: u16,
    /// EDE EXTRA-TEXT, at most 64 bytes.
    pub ede_text: String,
    pub created: u64,
    pub updated: u64,
    /// Files the current rules were loaded from.
    pub sources: Vec<String>,
    /// Number of rules.
    pub rules: usize,
    /// Rules file name inside `orders/`.
    pub rules_file: String,
    /// Changes made since `rules_file` was written, oldest first: files inside `orders/`,
    /// each removing rules (by id) and adding others (see [`StateDir::write_rules_delta`]).
    /// A small change to a large order is recorded by its difference, not by a copy of the
    /// whole order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules_deltas: Vec<String>,
    /// Precedence: orders are tried by ascending priority (then the older first), and the
    /// first with a rule for the query decides (`blocker orders set --priority`, `orders
    /// move`).
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// Shadow mode: the order's rules are counted and make events, but decide nothing.
    #[serde(default)]
    pub shadow: bool,
    /// Action replacing every rule's own (RPZ's policy override); None: the rules' own.
    #[serde(default, with = "opt_action_str")]
    pub override_action: Option<Action>,
    /// Jurisdictions whose clients the order binds (names); empty: every client.
    #[serde(default)]
    pub jurisdictions: Vec<String>,
    /// In force from this instant (None: always was).
    #[serde(default)]
    pub valid_from: Option<jiff::Timestamp>,
    /// In force until just before this instant (None: no end).
    #[serde(default)]
    pub valid_until: Option<jiff::Timestamp>,
    /// The policy zone's SOA record (wire form, hex) its answers carry when it fits; None for
    /// orders not loaded from a zone.
    #[serde(default)]
    pub soa: Option<String>,
}

/// Priority of an order that was given none.
pub const DEFAULT_PRIORITY: u32 = 100;

fn default_priority() -> u32 {
    DEFAULT_PRIORITY
}

impl Order {
    /// Whether the order is in force at `t` (inside its validity window).
    pub fn in_force_at(&self, t: jiff::Timestamp) -> bool {
        self.valid_from.is_none_or(|f| t >= f) && self.valid_until.is_none_or(|u| t < u)
    }

    /// Records the policy zone's SOA record (wire form), kept as hex in the state.
    pub fn set_soa(&mut self, wire: Option<&[u8]>) {
        self.soa = wire.map(|b| b.iter().map(|x| format!("{x:02x}")).collect());
    }

    /// The policy zone's SOA record, wire form (empty when none, or not hex).
    pub fn soa_wire(&self) -> Vec<u8> {
        let h = self.soa.as_deref().unwrap_or("");
        (0..h.len() / 2)
            .map_while(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok())
            .collect()
    }

    /// "pending", "active" or "expired" now (by the validity window).
    pub fn window_status(&self) -> &'static str {
        let t = jiff::Timestamp::now();
        match (self.valid_from, self.valid_until) {
            (Some(f), _) if t < f => "pending",
            (_, Some(u)) if t >= u => "expired",
            _ => "active",
        }
    }
}

/// A jurisdiction: a named set of client prefixes that orders can be scoped to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Jurisdiction {
    /// Its bit in the kernel's masks (0..64).
    pub id: u8,
    pub name: String,
    pub prefixes: Vec<crate::juris::Prefix>,
    /// Where the prefixes came from (files, "cli").
    pub sources: Vec<String>,
    pub updated: u64,
}

impl Order {
    /// A new order as `rules load` creates one: default action nxdomain, the configured EDE
    /// code, its name as EDE text (cut to what fits), no rules.
    pub fn named(id: u16, name: &str) -> Order {
        let mut text = String::new();
        for ch in name.chars() {
            if text.len() + ch.len_utf8() > MAX_EDE_TEXT {
                break;
            }
            text.push(ch);
        }
        Order {
            id,
            name: name.to_string(),
            default_action: Action::Nxdomain,
            ede_code: 0,
            ede_text: text,
            created: now(),
            updated: now(),
            sources: Vec::new(),
            rules: 0,
            rules_file: String::new(),
            rules_deltas: Vec::new(),
            priority: DEFAULT_PRIORITY,
            shadow: false,
            override_action: None,
            jurisdictions: Vec::new(),
            valid_from: None,
            valid_until: None,
            soa: None,
        }
    }
}

/// An attached interface, as recorded by `blocker attach`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Interface {
    pub mode: String,
    pub since: u64,
}

/// Operator settings of the data plane (kept here so they can be restored after a reboot
/// empties the BPF filesystem).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    /// UDP destination ports inspected.
    pub ports: Vec<u16>,
    pub sinkhole_v4: Option<std::net::Ipv4Addr>,
    pub sinkhole_v6: Option<std::net::Ipv6Addr>,
    /// TTL of sinkhole records.
    pub sinkhole_ttl: u32,
    /// Largest TTL of a local data answer.
    #[serde(default = "default_local_ttl_max")]
    pub local_ttl_max: u32,
    /// Most bytes an answer over UDP may add to the query (the amplification bound).
    #[serde(default = "default_max_growth")]
    pub max_growth: u16,
    /// EDE info-code of orders that set none.
    pub default_ede: u16,
    /// Block events: 0 off; N: first hit of each rule, then every Nth.
    #[serde(default)]
    pub events_every: u32,
    /// Client address in block events: "full", "truncated" (/24, /48) or "none".
    #[serde(default = "default_privacy")]
    pub events_privacy: String,
    /// Response rate limiting: answers per second per client prefix (per CPU); 0 off.
    #[serde(default = "default_rrl_rate")]
    pub rrl_rate: u32,
    /// Response rate limiting: answers a prefix may get at once.
    #[serde(default = "default_rrl_burst")]
    pub rrl_burst: u32,
    /// Response rate limiting: over the limit, every Nth query gets a TC=1 answer (0: none).
    #[serde(default = "default_rrl_slip")]
    pub rrl_slip: u16,
    /// Response rate limiting: IPv4 client prefix length.
    #[serde(default = "default_rrl_v4_prefix")]
    pub rrl_v4_prefix: u8,
    /// Response rate limiting: IPv6 client prefix length.
    #[serde(default = "default_rrl_v6_prefix")]
    pub rrl_v6_prefix: u8,
}

// State files written before response rate limiting existed get the defaults: on.
fn default_rrl_rate() -> u32 {
    blocker_common::RRL_DEFAULT_RATE
}
fn default_rrl_burst() -> u32 {
    blocker_common::RRL_DEFAULT_BURST
}
fn default_rrl_slip() -> u16 {
    blocker_common::RRL_DEFAULT_SLIP
}
fn default_rrl_v4_prefix() -> u8 {
    blocker_common::RRL_DEFAULT_V4_PREFIX
}
fn default_rrl_v6_prefix() -> u8 {
    blocker_common::RRL_DEFAULT_V6_PREFIX
}

fn default_max_growth() -> u16 {
    blocker_common::answer::MAX_GROWTH as u16
}

fn default_local_ttl_max() -> u32 {
    blocker_common::DEFAULT_LOCAL_TTL_MAX
}

fn default_privacy() -> String {
    "truncated".into()
}

/// `Config::event_privacy` for a privacy setting.
pub fn privacy_code(p: &str) -> Option<u8> {
    match p {
        "full" => Some(blocker_common::PRIVACY_FULL),
        "truncated" => Some(blocker_common::PRIVACY_TRUNCATED),
        "none" => Some(blocker_common::PRIVACY_NONE),
        _ => None,
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ports: vec![53],
            sinkhole_v4: None,
            sinkhole_v6: None,
            sinkhole_ttl: 300,
            local_ttl_max: default_local_ttl_max(),
            max_growth: default_max_growth(),
            default_ede: blocker_common::EDE_CENSORED,
            events_every: 0,
            events_privacy: default_privacy(),
            rrl_rate: default_rrl_rate(),
            rrl_burst: default_rrl_burst(),
            rrl_slip: default_rrl_slip(),
            rrl_v4_prefix: default_rrl_v4_prefix(),
            rrl_v6_prefix: default_rrl_v6_prefix(),
        }
    }
}

impl Settings {
    /// Writes the settings into a kernel config, keeping its rule-set fields.
    pub fn apply_to(&self, c: &mut blocker_common::Config) {
        c.ports = [0; blocker_common::MAX_PORTS];
        for (slot, p) in c.ports.iter_mut().zip(self.ports.iter()) {
            *slot = *p;
        }
        // The rule set's bits (scoped orders, windows) are the controller's.
        c.flags &= !(blocker_common::CONFIG_SINKHOLE_V4 | blocker_common::CONFIG_SINKHOLE_V6);
        c.sinkhole_v4 = [0; 4];
        c.sinkhole_v6 = [0; 16];
        if let Some(a) = self.sinkhole_v4 {
            c.sinkhole_v4 = a.octets();
            c.flags |= blocker_common::CONFIG_SINKHOLE_V4;
        }
        if let Some(a) = self.sinkhole_v6 {
            c.sinkhole_v6 = a.octets();
            c.flags |= blocker_common::CONFIG_SINKHOLE_V6;
        }
        c.sinkhole_ttl = self.sinkhole_ttl;
        c.local_ttl_max = self.local_ttl_max;
        c.max_growth = self.max_growth;
        c.default_ede = self.default_ede;
        c.event_every = self.events_every;
        c.event_privacy =
            privacy_code(&self.events_privacy).unwrap_or(blocker_common::PRIVACY_TRUNCATED);
        c.rrl_rate = self.rrl_rate;
        c.rrl_burst = self.rrl_burst;
        c.rrl_slip = self.rrl_slip;
        c.rrl_v4_prefix = self.rrl_v4_prefix;
        c.rrl_v6_prefix = self.rrl_v6_prefix;
    }
}

/// `state.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StateFile {
    pub format: u32,
    /// Generation of the committed rule set (equals the kernel's `Config::generation`).
    pub generation: u32,
    pub updated: u64,
    #[serde(default)]
    pub settings: Settings,
    pub orders: Vec<Order>,
    pub interfaces: BTreeMap<String, Interface>,
    /// Named client prefix sets orders can be scoped to.
    #[serde(default)]
    pub jurisdictions: Vec<Jurisdiction>,
    /// The distinct RPZ local data sets of the rules (`LocalData`'s text form): entry `i` is
    /// id `i + 1` in the kernel's `BLK_LOCAL`; an empty entry is a free id.
    #[serde(default)]
    pub local_data: Vec<String>,
}

impl Default for StateFile {
    fn default() -> Self {
        StateFile {
            format: FORMAT_VERSION,
            generation: 0,
            updated: 0,
            settings: Settings::default(),
            orders: Vec::new(),
            interfaces: BTreeMap::new(),
            jurisdictions: Vec::new(),
            local_data: Vec::new(),
        }
    }
}

/// One rule as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: Name,
    pub kind: Kind,
    pub action: Action,
    pub qtypes: u16,
    /// Index of the rule's hit counter.
    pub id: u32,
    /// Where it came from: "FILE:LINE" or "cli".
    pub source: Source,
    /// RPZ local data its answer carries (addresses, a block page), for a sinkhole rule.
    pub local: Option<Arc<blocker_lists::LocalData>>,
    /// The id of `local` in the kernel (`BLK_LOCAL`), from [`StateFile::local_data`]; 0 for
    /// none. Not kept in the rules file: assigned when the rules are read or applied.
    pub local_id: u16,
}

impl Rule {
    /// A rule given on the command line: every query type, no id yet (the plan gives one),
    /// no local data.
    pub fn cli(name: Name, kind: Kind, action: Action) -> Rule {
        Rule {
            name,
            kind,
            action,
            qtypes: blocker_common::QTYPES_ALL,
            id: 0,
            source: Source::cli(),
            local: None,
            local_id: 0,
        }
    }
}

/// What the precedence policy ([`blocker_common::policy`]) reads of a rule.
impl blocker_common::policy::PolicyRule for Rule {
    fn id(&self) -> u32 {
        self.id
    }
    fn kind(&self) -> Kind {
        self.kind
    }
    fn action(&self) -> Action {
        self.action
    }
    fn qtypes(&self) -> u16 {
        self.qtypes
    }
    fn local(&self) -> u16 {
        self.local_id
    }
}

/// Where a rule came from: `FILE:LINE` of a list, or a word such as `cli`. The file name is
/// held once per process ([`files`]) and a source names it by index: 8 bytes a rule, for a
/// million rules from one list as for one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// Index in [`files`].
    file: u32,
    /// 1-based line; 0: `file` alone (`cli`).
    line: u32,
}

/// The file names of the process's sources, each once, in the order first seen, and the
/// index of each. A process sees a handful: the lists it reads, its rules files, `cli`.
#[derive(Default)]
struct Files {
    names: Vec<Arc<str>>,
    index: std::collections::HashMap<Arc<str>, u32>,
}

fn files() -> &'static std::sync::Mutex<Files> {
    static FILES: std::sync::OnceLock<std::sync::Mutex<Files>> = std::sync::OnceLock::new();
    FILES.get_or_init(Default::default)
}

/// The index of `file` in [`files`], added if new.
fn intern(file: &str) -> u32 {
    let mut t = files().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&i) = t.index.get(file) {
        return i;
    }
    let a: Arc<str> = Arc::from(file);
    let i = u32::try_from(t.names.len()).unwrap_or(u32::MAX);
    t.names.push(a.clone());
    t.index.insert(a, i);
    i
}

impl Source {
    /// A rule added on the command line.
    pub fn cli() -> Source {
        static CLI: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        Source {
            file: *CLI.get_or_init(|| intern("cli")),
            line: 0,
        }
    }

    /// Line `line` of `file`.
    pub fn at(file: &str, line: usize) -> Source {
        Source {
            file: intern(file),
            line: u32::try_from(line).unwrap_or(u32::MAX),
        }
    }

    /// Line `line` of the same file.
    pub fn line(self, line: usize) -> Source {
        Source {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            ..self
        }
    }

    /// The file (or word) the rule came from.
    pub fn file(&self) -> Arc<str> {
        let t = files().lock().unwrap_or_else(|p| p.into_inner());
        t.names
            .get(self.file as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from("?"))
    }

    /// Parses the recorded form, reusing `last`'s file when it is the same file (the lines
    /// of a rules file come from a few files, in runs).
    fn parse(text: &str, last: &mut Option<(Arc<str>, u32)>) -> Source {
        let (file, line) = match text.rsplit_once(':') {
            Some((f, l)) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
                match l.parse::<u32>() {
                    Ok(n) if n > 0 => (f, n),
                    _ => (text, 0),
                }
            }
            _ => (text, 0),
        };
        let file = match last {
            Some((a, i)) if **a == *file => *i,
            _ => {
                let i = intern(file);
                *last = Some((Arc::from(file), i));
                i
            }
        };
        Source { file, line }
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Source({self})")
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file();
        if self.line == 0 {
            f.write_str(&file)
        } else {
            write!(f, "{}:{}", file, self.line)
        }
    }
}

impl StateFile {
    pub fn order(&self, name: &str) -> Option<&Order> {
        self.orders.iter().find(|o| o.name == name)
    }

    pub fn order_by_id(&self, id: u16) -> Option<&Order> {
        self.orders.iter().find(|o| o.id == id)
    }

    /// Lowest order id not in use.
    pub fn free_order_id(&self) -> Result<u16> {
        (0..MAX_ORDERS as u16)
            .find(|id| self.order_by_id(*id).is_none())
            .ok_or(StateError::OrdersFull)
    }

    /// The orders in precedence: by priority, then the older first (by creation time: ids are
    /// reused, so a new order can have a lower id than an older one; the id only breaks ties
    /// within one second).
    pub fn precedence(&self) -> Vec<&Order> {
        let mut v: Vec<&Order> = self.orders.iter().collect();
        v.sort_by_key(|o| (o.priority, o.created, o.id));
        v
    }

    /// Each order's rank (its place in [`StateFile::precedence`]), by order id.
    pub fn ranks(&self) -> BTreeMap<u16, u16> {
        self.precedence()
            .iter()
            .enumerate()
            .map(|(rank, o)| (o.id, rank as u16))
            .collect()
    }

    /// Gives every rule with local data its id from [`StateFile::local_data`] (0 when the
    /// table does not have it, which the controller's own tables never allow).
    pub fn assign_local_ids<'a>(&self, rules: impl IntoIterator<Item = &'a mut Rule>) {
        let ids: std::collections::HashMap<&str, u16> = self
            .local_data
            .iter()
            .enumerate()
            .filter(|(_, d)| !d.is_empty())
            .map(|(i, d)| (d.as_str(), (i + 1) as u16))
            .collect();
        for r in rules {
            r.local_id = match &r.local {
                Some(d) => ids.get(d.to_string().as_str()).copied().unwrap_or(0),
                None => 0,
            };
        }
    }

    pub fn jurisdiction(&self, name: &str) -> Option<&Jurisdiction> {
        self.jurisdictions.iter().find(|j| j.name == name)
    }

    /// Lowest jurisdiction id not in use.
    pub fn free_jurisdiction_id(&self) -> Option<u8> {
        (0..blocker_common::MAX_JURISDICTIONS as u8)
            .find(|id| !self.jurisdictions.iter().any(|j| j.id == *id))
    }

    /// The jurisdiction bits of an order (names that are not jurisdictions are ignored:
    /// the commands refuse them before they are recorded).
    pub fn jurisdiction_mask(&self, o: &Order) -> u64 {
        o.jurisdictions
            .iter()
            .filter_map(|n| self.jurisdiction(n))
            .fold(0, |m, j| m | 1u64 << (j.id & 63))
    }
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    pub dir: PathBuf,
}

/// An exclusive lock on the state directory, held while a command changes anything.
pub struct Lock {
    _file: File,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn txn_path(&self) -> PathBuf {
        self.dir.join("txn.json")
    }

    pub fn orders_dir(&self) -> PathBuf {
        self.dir.join("orders")
    }

    pub fn ensure(&self) -> Result<()> {
        for d in [self.dir.clone(), self.orders_dir()] {
            fs::create_dir_all(&d).op(|| format!("creating {}", d.display()))?;
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700))
                .op(|| format!("restricting {} to root", d.display()))?;
        }
        Ok(())
    }

    /// Takes the exclusive lock (waits for another command to finish).
    pub fn lock(&self) -> Result<Lock> {
        self.ensure()?;
        let path = self.dir.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .op(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own.
        let r = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
        if r != 0 {
            return Err(StateError::Lock {
                path,
                error: std::io::Error::last_os_error(),
            });
        }
        Ok(Lock { _file: file })
    }

    pub fn load(&self) -> Result<StateFile> {
        let path = self.state_path();
        if !path.exists() {
            return Ok(StateFile::default());
        }
        let text = fs::read_to_string(&path).op(|| format!("reading {}", path.display()))?;
        let s: StateFile = match serde_json::from_str(&text) {
            Ok(s) => s,
            Err(source) => return Err(StateError::Corrupt { path, source }),
        };
        if s.format != FORMAT_VERSION {
            return Err(StateError::Format {
                path,
                found: s.format,
                expected: FORMAT_VERSION,
            });
        }
        Ok(s)
    }

    /// Writes `state` as `state.json.new` (committed later by [`StateDir::commit`]).
    pub fn stage(&self, state: &StateFile) -> Result<PathBuf> {
        let path = self.dir.join("state.json.new");
        write_atomic_parts(&path, serde_json::to_vec_pretty(state)?.as_slice())?;
        Ok(path)
    }

    /// Makes the staged state the current one.
    pub fn commit(&self) -> Result<()> {
        let staged = self.dir.join("state.json.new");
        fs::rename(&staged, self.state_path()).op(|| format!("committing {}", staged.display()))?;
        sync_dir(&self.dir);
        Ok(())
    }

    pub fn discard_staged(&self) -> Result<()> {
        let staged = self.dir.join("state.json.new");
        if staged.exists() {
            fs::remove_file(&staged)?;
        }
        Ok(())
    }

    /// Writes a state directly (no rules changed: interfaces, order metadata).
    pub fn save(&self, state: &StateFile) -> Result<()> {
        self.stage(state)?;
        self.commit()
    }

    /// Reads an order's rules (a large file is parsed by two threads).
    /// The state as it was at `generation`: the current one, or one of the last [`HISTORY`]
    /// kept in `history/` (with the rules files they name); `None` when it is older.
    pub fn load_generation(&self, generation: u32) -> Result<Option<StateFile>> {
        let current = self.load()?;
        if current.generation == generation {
            return Ok(Some(current));
        }
        let path = self.dir.join("history").join(format!("{generation}.json"));
        if !path.exists() {
            return Ok(None);
        }
        let s: StateFile = match serde_json::from_slice(&fs::read(&path)?) {
            Ok(s) => s,
            Err(source) => return Err(StateError::Corrupt { path, source }),
        };
        Ok(Some(s))
    }

    pub fn read_rules(&self, order: &Order) -> Result<Vec<Rule>> {
        let mut rules = self.read_rules_file(&order.rules_file)?;
        for d in &order.rules_deltas {
            let path = self.orders_dir().join(d);
            let text = fs::read_to_string(&path).op(|| format!("reading {}", path.display()))?;
            let mut gone: std::collections::HashSet<u32> = std::collections::HashSet::new();
            let mut added = Vec::new();
            let mut last = None;
            for (i, line) in text.lines().enumerate() {
                let bad = |source| StateError::CorruptRule {
                    path: path.clone(),
                    line: i + 1,
                    source,
                };
                match line.strip_prefix('-') {
                    Some(id) => {
                        gone.insert(id.parse::<u32>().map_err(|e| bad(e.into()))?);
                    }
                    None => added.push(parse_rule_line(line, &mut last).map_err(bad)?),
                }
            }
            rules.retain(|r| !gone.contains(&r.id));
            rules.extend(added);
        }
        Ok(rules)
    }

    /// One more than the largest rule id `order`'s files record (0 for none), from the first
    /// field of each line only: what an array indexed by rule id must hold. An upper bound
    /// (a delta's removals are not subtracted).
    pub fn rule_id_bound(&self, order: &Order) -> Result<u32> {
        let mut bound = 0u32;
        for name in std::iter::once(&order.rules_file).chain(&order.rules_deltas) {
            let path = self.orders_dir().join(name);
            let text = fs::read_to_string(&path).op(|| format!("reading {}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                if line.starts_with('-') || line.is_empty() {
                    continue;
                }
                let id = line.split('\t').next().unwrap_or_default();
                let id = id.parse::<u32>().map_err(|e| StateError::CorruptRule {
                    path: path.clone(),
                    line: i + 1,
                    source: e.into(),
                })?;
                bound = bound.max(id.saturating_add(1));
            }
        }
        Ok(bound)
    }

    /// Reads one rules file of `orders/` (a large file is parsed by two threads).
    fn read_rules_file(&self, name: &str) -> Result<Vec<Rule>> {
        let path = self.orders_dir().join(name);
        let text = fs::read_to_string(&path).op(|| format!("reading {}", path.display()))?;
        // Split at a line boundary near the middle; each half is parsed on its own thread.
        let mid = if text.len() > 1 << 20 {
            text[text.len() / 2..]
                .find('\n')
                .map_or(text.len(), |i| text.len() / 2 + i + 1)
        } else {
            text.len()
        };
        let (a, b) = text.split_at(mid);
        let first_lines_b = a.bytes().filter(|&c| c == b'\n').count();
        let (ra, rb) = std::thread::scope(|s| {
            let hb = s.spawn(|| parse_rule_lines(b, first_lines_b, &path));
            let ra = parse_rule_lines(a, 0, &path);
            let rb = hb
                .join()
                .unwrap_or_else(|_| Err(StateError::Panicked(path.clone())));
            (ra, rb)
        });
        let mut out = ra?;
        out.extend(rb?);
        Ok(out)
    }

    /// Writes an order's rules to a new file for `generation`; returns the file name.
    pub fn write_rules(&self, order_id: u16, generation: u32, rules: &[Rule]) -> Result<String> {
        let name = format!("{order_id}.{generation}.tsv");
        let path = self.orders_dir().join(&name);
        let mut w =
            BufWriter::new(File::create(&path).op(|| format!("creating {}", path.display()))?);
        let mut file = None;
        for r in rules {
            write_rule_line(&mut w, r, &mut file)?;
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(name)
    }

    /// Writes the difference a change makes to an order's rules, for `generation`: a line
    /// `-ID` for each rule removed (rule ids are unique), a rules-file line for each rule
    /// added. Read back in [`StateDir::read_rules`] after the rules file and the deltas before
    /// it. Returns the file name.
    pub fn write_rules_delta(
        &self,
        order_id: u16,
        generation: u32,
        removed: &[u32],
        added: &[Rule],
    ) -> Result<String> {
        let name = format!("{order_id}.{generation}.delta");
        let path = self.orders_dir().join(&name);
        let mut w =
            BufWriter::new(File::create(&path).op(|| format!("creating {}", path.display()))?);
        for id in removed {
            writeln!(w, "-{id}")?;
        }
        let mut file = None;
        for r in added {
            write_rule_line(&mut w, r, &mut file)?;
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(name)
    }

    /// Removes rule files no order refers to (left by replaced generations or a crash).
    pub fn gc(&self, state: &StateFile) -> Result<()> {
        // The state of this generation joins the history; the oldest leave it.
        let history = self.dir.join("history");
        fs::create_dir_all(&history).op(|| format!("creating {}", history.display()))?;
        write_atomic_parts(
            &history.join(format!("{}.json", state.generation)),
            serde_json::to_vec(state)?.as_slice(),
        )?;
        let mut gens: Vec<u32> = fs::read_dir(&history)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
            .collect();
        gens.sort_unstable_by_key(|g| std::cmp::Reverse(*g));
        let mut kept: Vec<StateFile> = Vec::new();
        for (i, g) in gens.iter().enumerate() {
            let path = history.join(format!("{g}.json"));
            if i >= HISTORY || *g > state.generation {
                let _ = fs::remove_file(&path);
            } else if let Some(old) = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<StateFile>(&b).ok())
            {
                kept.push(old);
            }
        }
        let files = |s: &'_ StateFile| -> Vec<String> {
            s.orders
                .iter()
                .flat_map(|o| std::iter::once(&o.rules_file).chain(&o.rules_deltas))
                .cloned()
                .collect()
        };
        let mut keep: std::collections::HashSet<String> = files(state).into_iter().collect();
        for old in &kept {
            keep.extend(files(old));
        }
        let dir = self.orders_dir();
        if !dir.exists() {
            return Ok(());
        }
        for e in fs::read_dir(&dir)? {
            let e = e?;
            let n = e.file_name();
            let n = n.to_string_lossy();
            if !keep.contains(n.as_ref()) {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}

/// One line of a rules file. `file` keeps the last source file written (the lines of a
/// rules file come from a few files, in runs).
fn write_rule_line(
    w: &mut impl Write,
    r: &Rule,
    file: &mut Option<(u32, Arc<str>)>,
) -> std::io::Result<()> {
    let source = match file {
        Some((i, f)) if *i == r.source.file => f,
        _ => &mut file.insert((r.source.file, r.source.file())).1,
    };
    write!(
        w,
        "{}\t{}\t{}\t{:04x}\t{}\t{}",
        r.id,
        r.kind.as_str(),
        r.action.as_str(),
        r.qtypes,
        r.name,
        source
    )?;
    if r.source.line != 0 {
        write!(w, ":{}", r.source.line)?;
    }
    // Local data in a 7th column, only when there is some.
    match &r.local {
        Some(d) => writeln!(w, "\t{d}"),
        None => writeln!(w),
    }
}

/// Parses the rule lines of `text`, the part of `path` after `skipped` lines.
fn parse_rule_lines(text: &str, skipped: usize, path: &Path) -> Result<Vec<Rule>> {
    let mut out = Vec::with_capacity(text.len() / 64);
    let mut last = None;
    for (i, line) in text.lines().enumerate() {
        match parse_rule_line(line, &mut last) {
            Ok(r) => out.push(r),
            Err(source) => {
                return Err(StateError::CorruptRule {
                    path: path.to_path_buf(),
                    line: skipped + i + 1,
                    source,
                })
            }
        }
    }
    Ok(out)
}

fn parse_rule_line(
    line: &str,
    last: &mut Option<(Arc<str>, u32)>,
) -> std::result::Result<Rule, RuleLineError> {
    let mut f = line.splitn(7, '\t');
    let mut next = |what: &'static str| f.next().ok_or(RuleLineError::Missing(what));
    let id = next("id")?.parse::<u32>()?;
    let kind = Kind::parse(next("kind")?).ok_or(RuleLineError::Kind)?;
    let action = Action::parse(next("action")?).ok_or(RuleLineError::Action)?;
    let qtypes = u16::from_str_radix(next("qtypes")?, 16)?;
    let name =
        Name::from_presentation(next("name")?).map_err(|e| RuleLineError::Name(e.to_string()))?;
    let source = Source::parse(next("source").unwrap_or(""), last);
    let local = match f.next() {
        Some(d) => Some(Arc::new(
            d.parse::<blocker_lists::LocalData>()
                .map_err(RuleLineError::Local)?,
        )),
        None => None,
    };
    Ok(Rule {
        name,
        kind,
        action,
        qtypes,
        id,
        source,
        local,
        local_id: 0,
    })
}

fn write_atomic_parts(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).op(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Checks an EDE text: UTF-8 (guaranteed by &str), at most 64 bytes.
pub fn check_ede_text(text: &str) -> Result<()> {
    if text.len() > MAX_EDE_TEXT {
        return Err(StateError::EdeTooLong {
            len: text.len(),
            max: MAX_EDE_TEXT,
        });
    }
    if text.chars().any(|c| c.is_control()) {
        return Err(StateError::EdeControl);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal priorities: the older order first, even when a newer one reuses a lower id.
    #[test]
    fn ties_go_to_the_older_order_whatever_its_id() {
        let order = |id, name, created| Order {
            created,
            ..Order::named(id, name)
        };
        let mut s = StateFile {
            orders: vec![order(1, "B", 200), order(0, "C", 300), order(2, "D", 100)],
            ..Default::default()
        };
        let names: Vec<&str> = s.precedence().iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["D", "B", "C"]);
        s.orders[1].priority = 10;
        let names: Vec<&str> = s.precedence().iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["C", "D", "B"]);
    }

    /// The typed errors print what the anyhow messages they replaced printed, cause included
    /// (`blocker: {e:#}`); the expected texts are written out in full.
    #[test]
    fn messages_are_unchanged() {
        let e = StateError::Format {
            path: PathBuf::from("/var/lib/blocker/state.json"),
            found: 1,
            expected: 2,
        };
        assert_eq!(
            e.to_string(),
            "/var/lib/blocker/state.json has format 1, this blocker reads format 2"
        );
        let e = parse_rule_lines(
            "1\texact\tnxdomain\tffff\tok.example\nx\n",
            3,
            Path::new("/o.tsv"),
        )
        .expect_err("a corrupt line");
        assert_eq!(
            format!("{:#}", anyhow::Error::from(e)),
            "/o.tsv:5: corrupt rule: invalid digit found in string"
        );
        let e = parse_rule_lines("1\tnope\n", 0, Path::new("/o.tsv")).expect_err("bad kind");
        assert_eq!(
            format!("{:#}", anyhow::Error::from(e)),
            "/o.tsv:1: corrupt rule: bad kind"
        );
        let e = parse_rule_lines("1\texact\n", 0, Path::new("/o.tsv")).expect_err("short");
        assert_eq!(
            format!("{:#}", anyhow::Error::from(e)),
            "/o.tsv:1: corrupt rule: missing action"
        );
        assert_eq!(
            check_ede_text("a\u{7}").map_err(|e| e.to_string()),
            Err("EDE text contains control characters".to_string())
        );
    }

    /// A rule takes 64 bytes, its name inline when short: ten million rules in 640 MB. Its
    /// source prints and reads back as it was written.
    #[test]
    fn a_rule_is_small_and_its_source_round_trips() {
        assert_eq!(std::mem::size_of::<Rule>(), 64);
        let mut last = None;
        for text in [
            "cli",
            "/lists/agcom.txt:12",
            "zone rpz.example:3",
            "odd:name:0",
        ] {
            let s = Source::parse(text, &mut last);
            assert_eq!(s.to_string(), text);
            assert_eq!(Source::parse(text, &mut None), s, "one index per file");
        }
        assert_eq!(Source::parse("cli", &mut None), Source::cli());
        let a = Source::at("/lists/x.txt", 7);
        assert_eq!(
            (a.to_string(), a.line(9).to_string()),
            ("/lists/x.txt:7".into(), "/lists/x.txt:9".into())
        );
        assert_ne!(a, Source::at("/lists/y.txt", 7));
    }

    /// A state file written before response rate limiting existed gets it on, with the
    /// defaults, and its other settings kept.
    #[test]
    fn settings_without_rrl_get_the_defaults() {
        let old = r#"{"ports":[53,5353],"sinkhole_v4":null,"sinkhole_v6":null,
                      "sinkhole_ttl":60,"default_ede":15,"events_every":0}"#;
        let s: Settings = serde_json::from_str(old).expect("parses");
        assert_eq!(
            (s.ports.clone(), s.sinkhole_ttl, s.default_ede),
            (vec![53, 5353], 60, 15)
        );
        assert_eq!(
            (
                s.rrl_rate,
                s.rrl_burst,
                s.rrl_slip,
                s.rrl_v4_prefix,
                s.rrl_v6_prefix
            ),
            (200, 400, 2, 24, 56)
        );
        let mut c = blocker_common::Config {
            rrl_rate: 0,
            ..blocker_common::Config::default()
        };
        s.apply_to(&mut c);
        assert_eq!((c.rrl_rate, c.rrl_burst, c.rrl_slip), (200, 400, 2));
        assert_eq!((c.rrl_v4_prefix, c.rrl_v6_prefix), (24, 56));
    }

    #[test]
    fn deltas_read_back_after_the_rules_file_in_order() {
        let dir = std::env::temp_dir().join(format!("blk-deltas-{}", std::process::id()));
        let d = StateDir::new(&dir);
        d.ensure().expect("dir");
        let r = |id: u32, name: &str| Rule {
            id,
            ..Rule::cli(
                Name::from_presentation(name).expect("name"),
                Kind::Exact,
                Action::Nxdomain,
            )
        };
        let mut o = Order::named(3, "feed");
        o.rules_file = d
            .write_rules(
                3,
                1,
                &[r(0, "a.example"), r(1, "b.example"), r(2, "c.example")],
            )
            .expect("rules");
        // Generation 2 removes b, adds d with b's free id... which generation 3 removes again.
        o.rules_deltas.push(
            d.write_rules_delta(3, 2, &[1], &[r(1, "d.example")])
                .expect("delta"),
        );
        o.rules_deltas.push(
            d.write_rules_delta(3, 3, &[1, 0], &[r(4, "e.example")])
                .expect("delta"),
        );
        let names: Vec<(u32, String)> = d
            .read_rules(&o)
            .expect("read")
            .iter()
            .map(|r| (r.id, r.name.to_string()))
            .collect();
        assert_eq!(names, [(2, "c.example".into()), (4, "e.example".into())]);
        // The files a state names are kept; others are collected.
        let s = StateFile {
            orders: vec![o.clone()],
            ..StateFile::default()
        };
        fs::write(d.orders_dir().join("3.0.delta"), "-7\n").expect("stray");
        d.gc(&s).expect("gc");
        assert!(d.read_rules(&o).is_ok());
        assert!(!d.orders_dir().join("3.0.delta").exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
