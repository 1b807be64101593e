//! Fleet tests' kit: Knot DNS as an RPZ primary in its own namespace, `blocker follow` run in
//! an edge's namespace, links between namespaces, a TCP proxy that cuts transfers, bounded
//! waits. Everything is removed on drop (also when a test panics).

use std::{
    fs,
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    thread::sleep,
    time::{Duration, Instant},
};

use crate::env::{must, unique, Blocker, NetNs, TempDir};

/// Polls `f` every 100 ms until it gives a value or `secs` pass (then panics with `what` and
/// the last state `f` described).
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {secs} s; last: {last}")
            }
            Err(_) => sleep(Duration::from_millis(100)),
        }
    }
}

/// A veth pair between two namespaces with an address on each end (`a_addr`/`b_addr` with
/// their prefix length). Removed with the namespaces.
pub fn link(a: &NetNs, a_addr: &str, b: &NetNs, b_addr: &str) {
    let (da, db) = (unique("vl"), unique("vl"));
    must(
        "ip",
        &[
            "link", "add", &da, "netns", &a.name, "type", "veth", "peer", "name", &db, "netns",
            &b.name,
        ],
    );
    for (ns, dev, addr) in [(a, &da, a_addr), (b, &db, b_addr)] {
        ns.must("ip", &["addr", "add", addr, "dev", dev]);
        ns.must("ip", &["link", "set", dev, "up"]);
    }
}

/// A TSIG key as Knot and blocker both write it down.
#[derive(Clone, Debug)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: String,
    /// Base64.
    pub secret: String,
}

/// Knot DNS serving one RPZ zone with IXFR from zone-file differences.
pub struct Knot {
    pub ns: String,
    pub zone: String,
    /// Address it listens on (port 53), in `ns`.
    pub addr: String,
    dir: TempDir,
    conf: PathBuf,
    child: Option<Child>,
}

/// How a [`Knot`] is set up.
pub struct KnotSetup<'a> {
    pub zone: &'a str,
    /// Zone file text (its SOA serial is Knot's to manage: `difference-no-serial`).
    pub text: &'a str,
    /// Addresses to listen on (port 53); the first is where it is queried from the tests.
    pub listen: &'a [&'a str],
    /// Edges to NOTIFY, `ADDRESS@PORT`.
    pub notify: &'a [&'a str],
    /// Networks allowed to transfer.
    pub allow: &'a [&'a str],
    /// Required for transfers and used to sign NOTIFY.
    pub key: Option<&'a TsigKey>,
}

impl Knot {
    pub fn start(ns: &NetNs, s: &KnotSetup) -> Knot {
        let dir = TempDir::new("blkt-knot");
        fs::create_dir_all(dir.join("db")).expect("knot db dir");
        let d = dir.path.display();
        let mut conf = format!(
            "server:\n  rundir: \"{d}\"\n  pidfile: \"{d}/knot.pid\"\n{}\nlog:\n  - target: stderr\n    any: info\ndatabase:\n  storage: \"{d}/db\"\n",
            s.listen
                .iter()
                .map(|a| format!("  listen: {a}@53"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        if let Some(k) = s.key {
            conf.push_str(&format!(
                "key:\n  - id: {}\n    algorithm: {}\n    secret: {}\n",
                k.name, k.algorithm, k.secret
            ));
        }
        let key_line = s
            .key
            .map(|k| format!("    key: {}\n", k.name))
            .unwrap_or_default();
        conf.push_str("remote:\n");
        for (i, n) in s.notify.iter().enumerate() {
            conf.push_str(&format!("  - id: edge{i}\n    address: {n}\n{key_line}"));
        }
        conf.push_str(&format!(
            "acl:\n  - id: xfr\n    address: [{}]\n    action: transfer\n{key_line}",
            s.allow.join(", ")
        ));
        conf.push_str(&format!(
            "zone:\n  - domain: {}\n    storage: \"{d}\"\n    file: \"zone\"\n    zonefile-load: difference-no-serial\n    journal-content: all\n    zonefile-sync: -1\n    semantic-checks: off\n    acl: xfr\n",
            s.zone
        ));
        if !s.notify.is_empty() {
            let ids: Vec<String> = (0..s.notify.len()).map(|i| format!("edge{i}")).collect();
            conf.push_str(&format!("    notify: [{}]\n", ids.join(", ")));
        }
        let conf_path = dir.join("knot.conf");
        fs::write(&conf_path, conf).expect("knot.conf");
        fs::write(dir.join("zone"), s.text).expect("zone file");
        let mut k = Knot {
            ns: ns.name.clone(),
            zone: s.zone.to_string(),
            addr: s.listen[0].to_string(),
            dir,
            conf: conf_path,
            child: None,
        };
        k.spawn();
        k
    }

    /// Starts knotd (again) and waits until it serves the zone.
    pub fn spawn(&mut self) {
        let log = fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("knotd.log"))
            .expect("knot log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "knotd", "-c"])
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start knotd");
        self.child = Some(child);
        // A zone of a million records takes Knot a while to load.
        wait_for(180, "knotd serves the zone", || {
            self.serial().ok_or_else(|| self.log())
        });
    }

    /// Stops knotd (SIGKILL: a primary that vanishes).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The serial Knot serves (None: no answer).
    pub fn serial(&self) -> Option<u32> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "kdig"])
            .arg(format!("@{}", self.addr))
            .args([
                self.zone.as_str(),
                "SOA",
                "+short",
                "+retry=0",
                "+timeout=1",
            ])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
    }

    pub fn knotc(&self, args: &[&str]) -> String {
        let sock = self.dir.join("knot.sock").display().to_string();
        let mut full = vec!["-s", sock.as_str()];
        full.extend_from_slice(args);
        must("knotc", &full)
    }

    /// Replaces the zone file and reloads it; returns the new serial (Knot computes the
    /// difference and keeps it in its journal for IXFR, and notifies the edges).
    pub fn set_zone(&self, text: &str) -> u32 {
        let before = self.serial().expect("knot answers");
        fs::write(self.dir.join("zone"), text).expect("zone file");
        self.knotc(&["zone-reload", &self.zone]);
        wait_for(20, "knot serves the new serial", || match self.serial() {
            Some(s) if s != before => Ok(s),
            other => Err(format!("serial {other:?}; {}", self.log())),
        })
    }

    /// Replaces the zone file without reloading it (`knotc zone-reload` is the caller's).
    pub fn write_zone(&self, text: &str) {
        fs::write(self.dir.join("zone"), text).expect("zone file");
    }

    /// Drops the journal: IXFR from the serials before now is no longer possible.
    pub fn purge_journal(&self) {
        self.knotc(&["-f", "zone-purge", &self.zone, "+journal"]);
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("knotd.log")).unwrap_or_default()
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An RPZ zone file for `zone` with `entries` (owner relative to the zone, CNAME target).
pub fn rpz_text(zone: &str, entries: &[(String, &str)]) -> String {
    let mut s = format!(
        "$ORIGIN {zone}.\n$TTL 60\n@ SOA ns.{zone}. admin.{zone}. 1 3600 600 86400 60\n@ NS ns.{zone}.\n"
    );
    for (name, target) in entries {
        s.push_str(&format!("{name} CNAME {target}\n"));
    }
    s
}

/// `blocker follow` running in an edge's namespace (network only: the BPF filesystem stays
/// the host's) with only CAP_BPF, logging to a file.
pub struct Follow {
    child: Option<Child>,
    dir: TempDir,
}

impl Follow {
    pub fn start(b: &Blocker, ns: &NetNs, listen: Option<&str>) -> Follow {
        Follow::start_with(b, ns, listen, &[])
    }

    /// [`Follow::start`] with environment variables (`BLOCKER_TEST_CRASH_AT`, say).
    pub fn start_with(
        b: &Blocker,
        ns: &NetNs,
        listen: Option<&str>,
        env: &[(&str, &str)],
    ) -> Follow {
        Follow::start_args(b, ns, listen, env, &[])
    }

    /// [`Follow::start_with`] with more arguments of `blocker follow`.
    pub fn start_args(
        b: &Blocker,
        ns: &NetNs,
        listen: Option<&str>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Follow {
        let dir = TempDir::new("blkt-follow");
        let log = fs::File::create(dir.join("follow.log")).expect("follow log");
        let mut cmd = Command::new("nsenter");
        // With the capabilities of packaging/systemd/blocker-follow.service and no more
        // (CAP_BPF; CAP_PERFMON and CAP_NET_ADMIN to grow the maps; NOTIFY is answered above
        // port 1024).
        cmd.arg(format!("--net=/run/netns/{}", ns.name))
            .args([
                "setpriv",
                "--bounding-set",
                "-all,+bpf,+perfmon,+net_admin",
                "--inh-caps",
                "-all",
            ])
            .arg(&b.bin)
            .arg("--bpffs")
            .arg(&b.bpffs)
            .arg("--state-dir")
            .arg(&b.state)
            .args(["follow", "--timeout", "3"])
            .args(args);
        if let Some(l) = listen {
            cmd.args(["--listen", l]);
        }
        cmd.envs(env.iter().copied());
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start blocker follow");
        Follow {
            child: Some(child),
            dir,
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("follow.log")).unwrap_or_default()
    }

    /// Waits until the process has ended by itself (an injected crash); its log.
    pub fn wait_exit(&mut self, secs: u64) -> String {
        let c = self.child.as_mut().expect("running");
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(Some(_)) = c.try_wait() {
                self.child = None;
                return self.log();
            }
            if Instant::now() > deadline {
                panic!(
                    "blocker follow did not end within {secs} s:\n{}",
                    self.log()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, and the exit status (a clean shutdown is a success).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("blocker follow did not stop on SIGTERM:\n{}", self.log());
            }
            sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            for _ in 0..100 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The feed of `order` as `blocker feed list --json` shows it.
pub fn feed(b: &Blocker, order: &str) -> serde_json::Value {
    let out = b.ok(&["feed", "list", "--json"]);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"));
    v.as_array()
        .and_then(|a| a.iter().find(|f| f["order"] == order).cloned())
        .unwrap_or_else(|| panic!("no feed for {order}: {out}"))
}

/// The serial an edge enforces for `order` (None before the first transfer).
pub fn enforced_serial(b: &Blocker, order: &str) -> Option<u64> {
    feed(b, order)["status"]["serial"].as_u64()
}

/// Waits until the edge enforces `serial`; returns how long that took from `since`.
pub fn wait_serial(b: &Blocker, order: &str, serial: u32, since: Instant, f: &Follow) -> Duration {
    wait_for(
        30,
        &format!("the edge enforces serial {serial}"),
        || match enforced_serial(b, order) {
            Some(s) if s == u64::from(serial) => Ok(since.elapsed()),
            other => Err(format!("serial {other:?}; follow log:\n{}", f.log())),
        },
    )
}

/// `blocker explain NAME --json` verdict (`nxdomain`, `pass (no rule)`, …), checked against
/// the kernel map.
pub fn explain(b: &Blocker, name: &str) -> String {
    let out = b.ok(&["explain", name, "--json"]);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"));
    assert_eq!(
        v["kernel_agrees"],
        serde_json::Value::Bool(true),
        "the kernel map holds what the state says: {out}"
    );
    v["verdict"].as_str().unwrap_or("?").to_string()
}

/// A TCP proxy in a namespace: forwards to `target`, but cuts each connection once `limit`
/// bytes came back from the target (usize::MAX: never).
pub struct CutProxy {
    pub limit: Arc<AtomicUsize>,
    /// Takes the TSIG record out of every DNS message after a connection's first, as someone
    /// on the path who replaces the rest of a signed transfer would.
    pub strip_tsig: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Connections cut so far.
    pub cuts: Arc<AtomicUsize>,
}

impl CutProxy {
    pub fn start(ns: &NetNs, listen: &str, target: &str) -> CutProxy {
        let limit = Arc::new(AtomicUsize::new(usize::MAX));
        let stop = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let strip_tsig = Arc::new(AtomicBool::new(false));
        let (l2, s2, c2, t2) = (
            limit.clone(),
            stop.clone(),
            cuts.clone(),
            strip_tsig.clone(),
        );
        let (ns_name, listen, target) = (ns.name.clone(), listen.to_string(), target.to_string());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let f = fs::File::open(format!("/run/netns/{ns_name}")).expect("netns");
            // SAFETY: setns on an fd we own, in this thread only.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let l = TcpListener::bind(&listen).expect("proxy bind");
            l.set_nonblocking(true).expect("nonblocking");
            let _ = ready_tx.send(());
            while !s2.load(Ordering::Relaxed) {
                let (client, _) = match l.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        sleep(Duration::from_millis(20));
                        continue;
                    }
                };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let limit = l2.load(Ordering::Relaxed);
                let cuts = c2.clone();
                if t2.load(Ordering::Relaxed) {
                    std::thread::spawn(move || pipe_stripped(client, server));
                } else {
                    std::thread::spawn(move || pipe(client, server, limit, cuts));
                }
            }
        });
        let _ = ready_rx.recv_timeout(Duration::from_secs(5));
        CutProxy {
            limit,
            stop,
            strip_tsig,
            thread: Some(thread),
            cuts,
        }
    }
}

/// The offset of the last resource record of a DNS message and its type, walking the
/// sections by hand (names: labels or a compression pointer).
fn last_rr(m: &[u8]) -> Option<(usize, u16)> {
    let count = |i: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *m.get(i)?,
            *m.get(i + 1)?,
        ])))
    };
    let skip_name = |mut i: usize| -> Option<usize> {
        loop {
            let l = *m.get(i)?;
            match l {
                0 => return Some(i + 1),
                l if l & 0xc0 == 0xc0 => return Some(i + 2),
                l => i += 1 + usize::from(l),
            }
        }
    };
    let (qd, rrs) = (count(4)?, count(6)? + count(8)? + count(10)?);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(i)? + 4;
    }
    let mut last = None;
    for _ in 0..rrs {
        let start = i;
        i = skip_name(i)?;
        let rtype = u16::from_be_bytes([*m.get(i)?, *m.get(i + 1)?]);
        i += 10 + count(i + 8)?;
        last = Some((start, rtype));
    }
    last
}

/// [`pipe`] that takes the TSIG record (type 250, the last one) out of every message the
/// server sends after the first.
fn pipe_stripped(client: TcpStream, server: TcpStream) {
    let _ = client.set_nonblocking(false);
    let (mut c_in, mut s_out) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    let up = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = c_in.read(&mut buf) {
            if n == 0 || s_out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let (mut s_in, mut c_out) = (server, client);
    let mut pending: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    let mut buf = [0u8; 4096];
    'read: while let Ok(n) = s_in.read(&mut buf) {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        while pending.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
            if pending.len() < 2 + len {
                break;
            }
            let mut m: Vec<u8> = pending[2..2 + len].to_vec();
            pending.drain(..2 + len);
            if seen > 0 {
                if let Some((at, 250)) = last_rr(&m) {
                    m.truncate(at);
                    let ar = u16::from_be_bytes([m[10], m[11]]) - 1;
                    m[10..12].copy_from_slice(&ar.to_be_bytes());
                }
            }
            seen += 1;
            let mut out = (m.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&m);
            if c_out.write_all(&out).is_err() {
                break 'read;
            }
        }
    }
    let _ = c_out.shutdown(Shutdown::Both);
    let _ = s_in.shutdown(Shutdown::Both);
    let _ = up.join();
}

fn pipe(client: TcpStream, server: TcpStream, limit: usize, cuts: Arc<AtomicUsize>) {
    let _ = client.set_nonblocking(false);
    let (mut c_in, mut s_out) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    // Client → server, whole.
    let up = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = c_in.read(&mut buf) {
            if n == 0 || s_out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    // Server → client, up to the limit.
    let (mut s_in, mut c_out) = (server, client);
    let mut sent = 0usize;
    let mut buf = [0u8; 4096];
    while let Ok(n) = s_in.read(&mut buf) {
        if n == 0 {
            break;
        }
        let room = limit.saturating_sub(sent);
        let take = n.min(room);
        if c_out.write_all(&buf[..take]).is_err() {
            break;
        }
        sent += take;
        if take < n {
            cuts.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    let _ = c_out.shutdown(Shutdown::Both);
    let _ = s_in.shutdown(Shutdown::Both);
    let _ = up.join();
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A scripted primary (hickory-proto, over TCP in a namespace) for what Knot will not do:
/// it answers SOA queries with the zone's SOA, AXFR with the whole zone (`names`, CNAME .),
/// and IXFR with the error rcode `ixfr_rcode` (NOTIMP, REFUSED, FORMERR…). Counts the
/// queries by type. With `endless` set, an AXFR never ends: after the zone's first message
/// come messages of 100 new names each, as fast as the edge reads them, without a closing SOA.
/// With `endless_ixfr` set, an IXFR is answered (instead of the rcode) by the zone's SOA and
/// then empty differences without end: SOA records only, none with the zone's serial.
pub struct ScriptedPrimary {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub ixfr_queries: Arc<AtomicUsize>,
    pub axfr_queries: Arc<AtomicUsize>,
    pub endless: Arc<AtomicBool>,
    pub endless_ixfr: Arc<AtomicBool>,
    /// The zone served: (serial, names).
    pub zone: Arc<std::sync::Mutex<(u32, Vec<String>)>>,
}

impl ScriptedPrimary {
    pub fn start(ns: &NetNs, listen: &str, zone: &str, ixfr_rcode: u16) -> ScriptedPrimary {
        use hickory_proto::{
            op::{Message, MessageType, ResponseCode},
            rr::{
                rdata::{CNAME, SOA},
                Name, RData, Record, RecordType,
            },
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (ixfr, axfr) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let served = Arc::new(std::sync::Mutex::new((1u32, Vec::<String>::new())));
        let endless = Arc::new(AtomicBool::new(false));
        let (s2, i2, a2, z2) = (stop.clone(), ixfr.clone(), axfr.clone(), served.clone());
        let e2 = endless.clone();
        let endless_ixfr = Arc::new(AtomicBool::new(false));
        let ei2 = endless_ixfr.clone();
        let (ns_name, listen, apex) = (ns.name.clone(), listen.to_string(), zone.to_string());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let f = fs::File::open(format!("/run/netns/{ns_name}")).expect("netns");
            // SAFETY: setns on an fd we own, in this thread only.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let l = TcpListener::bind(&listen).expect("bind");
            l.set_nonblocking(true).expect("nonblocking");
            let _ = ready_tx.send(());
            let apex = Name::from_ascii(format!("{apex}.")).expect("apex");
            // A message as DNS over TCP writes it: its length, then the message.
            let framed = |m: &Message| {
                let out = m.to_vec().expect("encode");
                let mut f = (out.len() as u16).to_be_bytes().to_vec();
                f.extend_from_slice(&out);
                f
            };
            while !s2.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = l.accept() else {
                    sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = c.set_write_timeout(Some(Duration::from_secs(5)));
                // One connection, queries until it closes.
                loop {
                    let mut len = [0u8; 2];
                    if c.read_exact(&mut len).is_err() {
                        break;
                    }
                    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                    if c.read_exact(&mut buf).is_err() {
                        break;
                    }
                    let Ok(q) = Message::from_vec(&buf) else {
                        break;
                    };
                    let Some(question) = q.queries().first().cloned() else {
                        break;
                    };
                    let (serial, names) = z2.lock().map(|z| z.clone()).unwrap_or_default();
                    let soa_of = |serial: u32| {
                        Record::from_rdata(
                            apex.clone(),
                            60,
                            RData::SOA(SOA::new(
                                Name::from_ascii(format!("ns.{apex}")).expect("ns"),
                                Name::from_ascii(format!("admin.{apex}")).expect("admin"),
                                serial,
                                3600,
                                600,
                                86400,
                                60,
                            )),
                        )
                    };
                    let soa = soa_of(serial);
                    let mut r = Message::new();
                    r.set_id(q.id())
                        .set_message_type(MessageType::Response)
                        .set_op_code(q.op_code())
                        .set_authoritative(true);
                    r.add_query(question.clone());
                    match question.query_type() {
                        RecordType::SOA => {
                            r.add_answer(soa);
                        }
                        RecordType::IXFR if ei2.load(Ordering::Relaxed) => {
                            i2.fetch_add(1, Ordering::Relaxed);
                            r.add_answer(soa.clone());
                            let mut m = r.clone();
                            for i in 0u32.. {
                                // The first message too: a lone SOA there reads as "no IXFR".
                                for k in 0..100 {
                                    let n = serial.wrapping_add(1_000 + i.wrapping_mul(100) + k);
                                    m.add_answer(soa_of(n));
                                }
                                if s2.load(Ordering::Relaxed) || c.write_all(&framed(&m)).is_err() {
                                    break;
                                }
                                m.take_answers();
                            }
                            break;
                        }
                        RecordType::IXFR => {
                            i2.fetch_add(1, Ordering::Relaxed);
                            r.set_response_code(ResponseCode::from(0, ixfr_rcode as u8));
                        }
                        RecordType::AXFR => {
                            a2.fetch_add(1, Ordering::Relaxed);
                            r.add_answer(soa.clone());
                            let cname = |n: &str| {
                                let owner = Name::from_ascii(format!("{n}.{apex}")).expect("owner");
                                Record::from_rdata(owner, 60, RData::CNAME(CNAME(Name::root())))
                            };
                            for n in &names {
                                r.add_answer(cname(n));
                            }
                            if e2.load(Ordering::Relaxed) {
                                // The first message, then more names until the edge hangs up.
                                let mut m = r.clone();
                                for i in 0u64.. {
                                    if s2.load(Ordering::Relaxed)
                                        || c.write_all(&framed(&m)).is_err()
                                    {
                                        break;
                                    }
                                    m.take_answers();
                                    for k in 0..100 {
                                        m.add_answer(cname(&format!("more{}", i * 100 + k)));
                                    }
                                }
                                break;
                            }
                            r.add_answer(soa);
                        }
                        _ => {
                            r.set_response_code(ResponseCode::Refused);
                        }
                    }
                    if c.write_all(&framed(&r)).is_err() {
                        break;
                    }
                }
            }
        });
        let _ = ready_rx.recv_timeout(Duration::from_secs(5));
        ScriptedPrimary {
            stop,
            thread: Some(thread),
            ixfr_queries: ixfr,
            axfr_queries: axfr,
            endless,
            endless_ixfr,
            zone: served,
        }
    }

    /// Serves `names` as the zone at `serial`.
    pub fn set(&self, serial: u32, names: &[&str]) {
        if let Ok(mut z) = self.zone.lock() {
            *z = (serial, names.iter().map(|s| s.to_string()).collect());
        }
    }
}

impl Drop for ScriptedPrimary {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
