//! Throwaway kernel state for tests, removed on drop even when a test panics: pinned blocker
//! directories, network namespaces with veth pairs, an unbound instance; and kdig.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread::sleep,
    time::Duration,
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call (interface names are at most 15 bytes).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100000)
}

/// A directory under the system temp dir, removed when dropped (also when a test panics).
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        TempDir { path }
    }

    /// A directory under `base` (which must exist), removed when dropped.
    pub fn new_in(base: impl AsRef<Path>, prefix: &str) -> TempDir {
        let path = base.as_ref().join(unique(prefix));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        TempDir { path }
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `text` to `name` in the directory; returns its path as a string.
    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        p.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub fn must(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "`{cmd} {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `blocker` binary built next to this test (xtask test builds it first).
pub fn blocker_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("blocker");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p blocker-userspace` first (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// A blocker instance with its own bpffs directory and state directory.
pub struct Blocker {
    pub bpffs: PathBuf,
    pub state: PathBuf,
    pub bin: PathBuf,
}

impl Blocker {
    // Not a Default: it needs the built binary (and panics without it), and dropping it purges
    // kernel state; a test spells out that it makes one.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Blocker {
        let id = unique("blkt");
        Blocker {
            bpffs: PathBuf::from("/sys/fs/bpf").join(&id),
            state: std::env::temp_dir().join(format!("{id}-state")),
            bin: blocker_bin(),
        }
    }

    pub fn pins(&self) -> blocker::kernel::Pins {
        blocker::kernel::Pins::new(&self.bpffs)
    }

    pub fn state_dir(&self) -> blocker::state::StateDir {
        blocker::state::StateDir::new(&self.state)
    }

    /// `blocker` with this instance's directories and `args`, standard input closed.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--bpffs")
            .arg(&self.bpffs)
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run blocker")
    }

    /// Runs a command whose controller is made to abort at `phase` of a change
    /// (`BLOCKER_TEST_CRASH_AT`); asserts that it did.
    pub fn crashes_at(&self, phase: &str, args: &[&str]) {
        let out = self
            .command(args)
            .env("BLOCKER_TEST_CRASH_AT", phase)
            .output()
            .expect("run blocker");
        assert!(
            !out.status.success()
                && String::from_utf8_lossy(&out.stderr)
                    .contains(&format!("crash injected at `{phase}`")),
            "the controller must die at `{phase}`: {out:?}"
        );
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`blocker {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "`blocker {}` succeeded but should have failed",
            args.join(" ")
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn stats(&self) -> serde_json::Value {
        let out = self.ok(&["stats", "--json", "--top", "100"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"))
    }

    /// Hits of the most hit rules (up to 100), by rule name, as `blocker stats` names them.
    pub fn rule_hits(&self) -> std::collections::BTreeMap<String, u64> {
        self.stats()["top_rules"]
            .as_array()
            .expect("top_rules")
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().expect("name").to_string(),
                    r["hits"].as_u64().expect("hits"),
                )
            })
            .collect()
    }

    /// Turns response rate limiting off, for tests and benchmarks whose load comes from one
    /// client address on purpose (a limit per client prefix would answer only part of it).
    pub fn rrl_off(&self) {
        self.ok(&["config", "set", "--rrl-rate", "0"]);
    }

    /// A global exit-reason counter.
    pub fn reason(&self, name: &str) -> u64 {
        self.stats()["reasons"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no reason {name}"))
    }
}

impl Drop for Blocker {
    fn drop(&mut self) {
        let _ = self.run(&["detach", "--purge"]);
        let _ = fs::remove_dir_all(&self.bpffs);
        let _ = fs::remove_dir_all(&self.state);
    }
}

/// A network namespace.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(prefix: &str) -> NetNs {
        let name = unique(prefix);
        must("ip", &["netns", "add", &name]);
        must("ip", &["-n", &name, "link", "set", "lo", "up"]);
        NetNs { name }
    }

    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, cmd])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec")
    }

    pub fn must(&self, cmd: &str, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name, cmd];
        full.extend_from_slice(args);
        must("ip", &full)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Addressing of the test network (documentation prefixes, inside our own namespaces only).
pub const CLIENT_V4: &str = "192.0.2.1";
pub const EDGE_V4: &str = "192.0.2.53";
pub const CLIENT_V6: &str = "2001:db8::1";
pub const EDGE_V6: &str = "2001:db8::53";

/// client netns ── veth ── edge netns, unbound listening in the edge. (Tagged traffic is
/// sent by hand with [`crate::raw`]: this kernel has no 802.1Q devices.)
pub struct Topology {
    pub client: NetNs,
    pub edge: NetNs,
    /// veth ends (the XDP program attaches to the edge veth; tags are parsed there).
    pub client_dev: String,
    pub edge_dev: String,
    pub unbound: Option<Unbound>,
}

impl Topology {
    // Not a Default: it creates namespaces and a veth pair.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Topology {
        let client = NetNs::new("blkc");
        let edge = NetNs::new("blke");
        let client_dev = unique("vc");
        let edge_dev = unique("ve");
        must(
            "ip",
            &[
                "link",
                "add",
                &client_dev,
                "netns",
                &client.name,
                "type",
                "veth",
                "peer",
                "name",
                &edge_dev,
                "netns",
                &edge.name,
            ],
        );
        for (ns, dev) in [(&client, &client_dev), (&edge, &edge_dev)] {
            ns.must("ip", &["link", "set", dev, "up"]);
            // Complete checksums and in-band VLAN tags, as on a wire: a veth would carry
            // partial checksums, and the client's tags as metadata the program never sees
            // (`blocker attach` turns the edge's stripping off itself, as on a real NIC).
            let _ = ns.exec("ethtool", &["-K", dev, "tx", "off"]);
            for f in [
                "txvlan",
                "rxvlan",
                "tx-vlan-stag-hw-insert",
                "rx-vlan-stag-hw-parse",
            ] {
                let _ = ns.exec("ethtool", &["-K", dev, f, "off"]);
            }
        }
        let (cl, ed) = (client_dev.clone(), edge_dev.clone());
        client.must(
            "ip",
            &["addr", "add", &format!("{CLIENT_V4}/24"), "dev", &cl],
        );
        client.must(
            "ip",
            &[
                "addr",
                "add",
                &format!("{CLIENT_V6}/64"),
                "dev",
                &cl,
                "nodad",
            ],
        );
        edge.must("ip", &["addr", "add", &format!("{EDGE_V4}/24"), "dev", &ed]);
        edge.must(
            "ip",
            &["addr", "add", &format!("{EDGE_V6}/64"), "dev", &ed, "nodad"],
        );
        Topology {
            client,
            edge,
            client_dev,
            edge_dev,
            unbound: None,
        }
    }

    /// Starts unbound in the edge namespace with `local_data` records (unbound syntax).
    pub fn start_unbound(&mut self, local_data: &[&str]) {
        self.unbound = Some(Unbound::start(&self.edge, local_data));
        // Wait until it answers, over both address families.
        for server in [EDGE_V4, EDGE_V6] {
            let mut up = false;
            for _ in 0..50 {
                let r = kdig(
                    &self.client,
                    server,
                    "version.server",
                    "TXT",
                    &["+retry=0", "+timeout=1"],
                );
                if r.status.is_some() {
                    up = true;
                    break;
                }
                sleep(Duration::from_millis(100));
            }
            assert!(up, "unbound did not answer on {server}");
        }
    }

    /// Attaches `b` to the edge veth (`mode`), and blocker's no-op program to the client end:
    /// native XDP_TX on a veth reaches the peer only if the peer runs XDP as well.
    pub fn attach(&self, b: &Blocker, mode: &str) -> String {
        self.attach_with(b, mode, &[])
    }

    /// [`Topology::attach`] with `extra` arguments to the edge's `blocker attach`.
    pub fn attach_with(&self, b: &Blocker, mode: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "attach",
            "--iface",
            &self.edge_dev,
            "--netns",
            &self.edge.name,
            "--mode",
            mode,
        ];
        args.extend_from_slice(extra);
        let out = b.ok(&args);
        if mode != "skb" {
            b.ok(&[
                "attach",
                "--iface",
                &self.client_dev,
                "--netns",
                &self.client.name,
                "--noop",
            ]);
        }
        out
    }

    pub fn unbound_queries(&self) -> u64 {
        self.unbound.as_ref().expect("unbound running").queries()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.unbound.take();
    }
}

/// A daemon run in a namespace for one test (in the foreground), with a directory of its
/// own; killed, and the directory removed, on drop.
pub struct Daemon {
    child: Child,
    pub dir: TempDir,
}

impl Daemon {
    /// Starts `cmd args` in `ns`; `dir` holds its files.
    pub fn start(ns: &NetNs, dir: TempDir, cmd: &str, args: &[&str]) -> Daemon {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, cmd])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd}: {e}"));
        Daemon { child, dir }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// unbound serving local data only (no internet).
pub struct Unbound {
    child: Child,
    dir: PathBuf,
    conf: PathBuf,
}

/// What an [`Unbound`] serves besides `local-data`.
#[derive(Default)]
pub struct UnboundOptions<'a> {
    /// An RPZ zone file (unbound's `rpz:` clause, `respip` module): unbound then blocks the
    /// way a resolver-side RPZ deployment does.
    pub rpz: Option<&'a Path>,
    /// `num-threads` (1 when 0).
    pub threads: u32,
}

impl Unbound {
    pub fn start(ns: &NetNs, local_data: &[&str]) -> Unbound {
        Unbound::start_with(ns, local_data, &UnboundOptions::default())
    }

    pub fn start_with(ns: &NetNs, local_data: &[&str], opts: &UnboundOptions) -> Unbound {
        let dir = std::env::temp_dir().join(unique("blkt-unbound"));
        fs::create_dir_all(&dir).expect("unbound dir");
        let mut conf = format!(
            "server:\n  interface: {EDGE_V4}\n  interface: {EDGE_V6}\n  port: 53\n  access-control: 0.0.0.0/0 allow\n  access-control: ::/0 allow\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  use-syslog: no\n  logfile: \"\"\n  do-daemonize: no\n  num-threads: {threads}\n  module-config: \"{modules}\"\n  statistics-cumulative: yes\n  extended-statistics: yes\n  local-zone: \".\" static\n",
            d = dir.display(),
            threads = opts.threads.max(1),
            modules = if opts.rpz.is_some() { "respip iterator" } else { "iterator" },
        );
        for d in local_data {
            // A `local-zone: …` line is passed as it is (e.g. a redirect zone).
            if d.starts_with("local-zone:") {
                conf.push_str(&format!("  {d}\n"));
            } else if d.contains('"') {
                // TXT data carries its own double quotes: quote the whole record with single
                // quotes, as unbound.conf allows.
                conf.push_str(&format!("  local-data: '{d}'\n"));
            } else {
                conf.push_str(&format!("  local-data: \"{d}\"\n"));
            }
        }
        if let Some(zone) = opts.rpz {
            conf.push_str(&format!(
                "rpz:\n  name: rpz.local\n  zonefile: \"{}\"\n",
                zone.display()
            ));
        }
        conf.push_str(&format!(
            "remote-control:\n  control-enable: yes\n  control-interface: {}/ctl.sock\n  control-use-cert: no\n",
            dir.display()
        ));
        let path = dir.join("unbound.conf");
        fs::write(&path, conf).expect("write unbound.conf");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "unbound", "-d", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start unbound");
        Unbound {
            child,
            dir,
            conf: path,
        }
    }

    /// The unbound process (`ip netns exec` replaces itself with unbound).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// total.num.queries from unbound-control.
    pub fn queries(&self) -> u64 {
        let out = must(
            "unbound-control",
            &["-c", &self.conf.display().to_string(), "stats_noreset"],
        );
        out.lines()
            .find_map(|l| l.strip_prefix("total.num.queries="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no total.num.queries in {out}"))
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What kdig printed, taken apart.
#[derive(Debug, Default)]
pub struct Kdig {
    pub status: Option<String>,
    pub flags: String,
    pub ede: Option<(u16, String)>,
    /// (type, data) of answer records.
    pub answers: Vec<(String, String)>,
    /// Every record of the answer, authority and additional sections, with owner and TTL
    /// (the OPT record is not among them: kdig shows it as the EDNS pseudosection).
    pub records: Vec<Rr>,
    pub question: String,
    pub raw: String,
}

/// The section a record was printed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Answer,
    Authority,
    Additional,
}

/// One record as kdig printed it: data as presentation text (kdig's spacing kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rr {
    pub section: Section,
    pub owner: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

impl Kdig {
    /// The records of one section, in the order printed.
    pub fn section(&self, section: Section) -> impl Iterator<Item = &Rr> {
        self.records.iter().filter(move |r| r.section == section)
    }
}

/// `owner ttl class type data…` (kdig's default layout) taken apart; None for anything else.
fn parse_rr(line: &str, section: Section) -> Option<Rr> {
    let mut rest = line.trim();
    let mut fields = [""; 4];
    for f in &mut fields {
        let end = rest.find(char::is_whitespace)?;
        *f = &rest[..end];
        rest = rest[end..].trim_start();
    }
    Some(Rr {
        section,
        owner: fields[0].to_string(),
        ttl: fields[1].parse().ok()?,
        rtype: fields[3].to_string(),
        data: rest.trim_end().to_string(),
    })
}

/// Runs kdig in `ns` against `server`.
pub fn kdig(ns: &NetNs, server: &str, name: &str, qtype: &str, extra: &[&str]) -> Kdig {
    let at = format!("@{server}");
    let mut args = vec![at.as_str(), name, qtype];
    args.extend_from_slice(extra);
    let out = ns.exec("kdig", &args);
    let raw =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let mut k = Kdig {
        raw: raw.clone(),
        ..Default::default()
    };
    let mut section = "";
    for line in raw.lines() {
        if let Some(i) = line.find("status: ") {
            let s = &line[i + 8..];
            k.status = Some(s.split(';').next().unwrap_or(s).trim().to_string());
        } else if let Some(f) = line.strip_prefix(";; Flags: ") {
            k.flags = f.split(';').next().unwrap_or("").trim().to_string();
        } else if let Some(e) = line.strip_prefix(";; EDE: ") {
            // 16 (Censored): 'text'
            let code = e
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let text = e
                .split_once(": '")
                .map(|(_, t)| t.trim_end_matches('\'').to_string())
                .unwrap_or_default();
            k.ede = Some((code, text));
        } else if line.starts_with(";; QUESTION SECTION") {
            section = "q";
        } else if line.starts_with(";; ANSWER SECTION") {
            section = "a";
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = "u";
        } else if line.starts_with(";; ADDITIONAL SECTION") {
            section = "d";
        } else if line.starts_with(";;") || line.trim().is_empty() {
            if line.trim().is_empty() {
                section = "";
            }
            if section == "q" {
                if let Some(q) = line.strip_prefix(";; ") {
                    k.question = q.split_whitespace().next().unwrap_or("").to_string();
                }
            }
        } else if section == "a" {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 5 {
                k.answers.push((f[3].to_string(), f[4..].join(" ")));
            }
            k.records.extend(parse_rr(line, Section::Answer));
        } else if section == "u" {
            k.records.extend(parse_rr(line, Section::Authority));
        } else if section == "d" {
            k.records.extend(parse_rr(line, Section::Additional));
        }
    }
    k
}
