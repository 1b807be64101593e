//! The controller's record of orders and rules: what was loaded, from where, with which rule
//! ids. The kernel maps hold only hashes; this is what `rules list`, `explain`, `stats` and the
//! next reload read.
//!
//! Layout of the state directory (default /var/lib/blocker, root only):
//! - `state.json`: generation, orders (metadata), interfaces.
//! - `orders/<order-id>.<generation>.tsv`: the rules of one order, one per line.
//! - `txn.json`: present only while a change is being applied (see [`crate::txn`]).
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

use anyhow::{bail, Context, Result};
use blocker_common::{Action, Kind, MAX_EDE_TEXT, MAX_ORDERS};
use blocker_lists::Name;
use serde::{Deserialize, Serialize};

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/blocker";
const FORMAT_VERSION: u32 = 1;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
    /// EDE info-code of orders that set none.
    pub default_ede: u16,
    /// Block events: 0 off; N: first hit of each rule, then every Nth.
    #[serde(default)]
    pub events_every: u32,
    /// Client address in block events: "full", "truncated" (/24, /48) or "none".
    #[serde(default = "default_privacy")]
    pub events_privacy: String,
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
            default_ede: blocker_common::EDE_CENSORED,
            events_every: 0,
            events_privacy: default_privacy(),
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
        c.flags = 0;
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
        c.default_ede = self.default_ede;
        c.event_every = self.events_every;
        c.event_privacy =
            privacy_code(&self.events_privacy).unwrap_or(blocker_common::PRIVACY_TRUNCATED);
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
}

/// Where a rule came from: `FILE:LINE` of a list, or a word such as `cli`. The file name is
/// shared by all the rules read from one file (a million rules from one list hold one copy of
/// its name, not a million).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    file: Arc<str>,
    /// 1-based line; 0: `file` alone (`cli`).
    line: u32,
}

impl Source {
    /// A rule added on the command line.
    pub fn cli() -> Source {
        Source {
            file: Arc::from("cli"),
            line: 0,
        }
    }

    /// Line `line` of `file` (the file name shared with the file's other rules).
    pub fn at(file: Arc<str>, line: usize) -> Source {
        Source {
            file,
            line: u32::try_from(line).unwrap_or(u32::MAX),
        }
    }

    /// Parses the recorded form, reusing `last`'s file name when it is the same file.
    fn parse(text: &str, last: &mut Option<Arc<str>>) -> Source {
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
            Some(a) if **a == *file => a.clone(),
            _ => {
                let a: Arc<str> = Arc::from(file);
                *last = Some(a.clone());
                a
            }
        };
        Source { file, line }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
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
            .context("all 4096 order slots are in use")
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
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700))
                .with_context(|| format!("restricting {} to root", d.display()))?;
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
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own.
        let r = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
        if r != 0 {
            bail!(
                "locking {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(Lock { _file: file })
    }

    pub fn load(&self) -> Result<StateFile> {
        let path = self.state_path();
        if !path.exists() {
            return Ok(StateFile::default());
        }
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let s: StateFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is corrupt", path.display()))?;
        if s.format != FORMAT_VERSION {
            bail!(
                "{} has format {}, this blocker reads format {}",
                path.display(),
                s.format,
                FORMAT_VERSION
            );
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
        fs::rename(&staged, self.state_path())
            .with_context(|| format!("committing {}", staged.display()))?;
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
    pub fn read_rules(&self, order: &Order) -> Result<Vec<Rule>> {
        let path = self.orders_dir().join(&order.rules_file);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
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
            let rb = hb.join().unwrap_or_else(|_| {
                Err(anyhow::anyhow!(
                    "reading {}: thread panicked",
                    path.display()
                ))
            });
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
        let mut w = BufWriter::new(
            File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        for r in rules {
            writeln!(
                w,
                "{}\t{}\t{}\t{:04x}\t{}\t{}",
                r.id,
                r.kind.as_str(),
                r.action.as_str(),
                r.qtypes,
                r.name,
                r.source
            )?;
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(name)
    }

    /// Removes rule files no order refers to (left by replaced generations or a crash).
    pub fn gc(&self, state: &StateFile) -> Result<()> {
        let keep: std::collections::HashSet<&str> =
            state.orders.iter().map(|o| o.rules_file.as_str()).collect();
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

/// Parses the rule lines of `text`, the part of `path` after `skipped` lines.
fn parse_rule_lines(text: &str, skipped: usize, path: &Path) -> Result<Vec<Rule>> {
    let mut out = Vec::with_capacity(text.len() / 64);
    let mut last = None;
    for (i, line) in text.lines().enumerate() {
        out.push(
            parse_rule_line(line, &mut last)
                .with_context(|| format!("{}:{}: corrupt rule", path.display(), skipped + i + 1))?,
        );
    }
    Ok(out)
}

fn parse_rule_line(line: &str, last: &mut Option<Arc<str>>) -> Result<Rule> {
    let mut f = line.splitn(6, '\t');
    let mut next = |what: &str| f.next().with_context(|| format!("missing {what}"));
    let id = next("id")?.parse::<u32>()?;
    let kind = Kind::parse(next("kind")?).context("bad kind")?;
    let action = Action::parse(next("action")?).context("bad action")?;
    let qtypes = u16::from_str_radix(next("qtypes")?, 16)?;
    let name =
        Name::from_presentation(next("name")?).map_err(|e| anyhow::anyhow!("bad name: {e}"))?;
    let source = Source::parse(next("source").unwrap_or(""), last);
    Ok(Rule {
        name,
        kind,
        action,
        qtypes,
        id,
        source,
    })
}

fn write_atomic_parts(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
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
        bail!(
            "EDE text is {} bytes; at most {} fit in an answer",
            text.len(),
            MAX_EDE_TEXT
        );
    }
    if text.chars().any(|c| c.is_control()) {
        bail!("EDE text contains control characters");
    }
    Ok(())
}
