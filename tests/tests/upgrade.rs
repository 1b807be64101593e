//! `blocker upgrade` with real packets and real software: a second build of blocker whose
//! pinned map layout differs (the `layout-test` feature: `BLK_CONFIG` values 8 bytes longer)
//! takes over from the running one while a client in its own namespace keeps asking unbound's
//! address for listed names, and none of them is answered by unbound: every answer is
//! blocker's NXDOMAIN with the order's EDE text, unbound's query counter does not move, no
//! query is lost. Rules, orders, jurisdictions and settings survive, the counters go on in the
//! same maps (exactly: every probe counted once), a second `upgrade` changes nothing, and the
//! first build takes over again the same way. Also: a program of the same layout replaced
//! with the maps kept, and upgrades killed at each step of the switch, under traffic, finished
//! by the next `upgrade`.
//!
//! The second build is made by `cargo build --features layout-test` into its own target
//! directory (`target/upgrade-test`, a build cache like `target/`: the first run takes a few
//! minutes, later ones a second); each test links the binary into a temporary directory it
//! removes.

use std::{
    collections::{BTreeMap, HashMap},
    fs::File,
    net::UdpSocket,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use aya::programs::{
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
    Xdp,
};
use blocker_tests::{
    dns,
    env::{kdig, Blocker, TempDir, Topology, CLIENT_V4, EDGE_V4},
};
use hickory_proto::rr::RecordType;

/// Names of the list order, probed under traffic (and a name below each: subtree rules).
const LISTED: usize = 24;
const TEXT_1: &str = "Court U1, list";
const TEXT_2: &str = "Court U2, LAB clients";

/// The blocker binary built with `layout-test`, linked into a directory removed on drop.
struct SecondBuild {
    dir: TempDir,
}

impl SecondBuild {
    fn new() -> SecondBuild {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf();
        let target = root.join("target/upgrade-test");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let t0 = Instant::now();
        let out = Command::new(&cargo)
            .args([
                "build",
                "--locked",
                "-p",
                "blocker-userspace",
                "--features",
                "layout-test",
                "--target-dir",
            ])
            .arg(&target)
            .current_dir(&root)
            .stdin(Stdio::null())
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "building the layout-test blocker failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "second build (layout-test) ready in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        let dir = TempDir::new("blkt-second");
        let built = target.join("debug/blocker");
        if std::fs::hard_link(&built, dir.join("blocker")).is_err() {
            std::fs::copy(&built, dir.join("blocker")).expect("copy the second build");
        }
        SecondBuild { dir }
    }

    fn bin(&self) -> PathBuf {
        self.dir.join("blocker")
    }
}

/// Runs `bin` on `b`'s directories (the other build of the same installation).
fn run_with(bin: &Path, b: &Blocker, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("--bpffs")
        .arg(&b.bpffs)
        .arg("--state-dir")
        .arg(&b.state)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run blocker")
}

fn ok_with(bin: &Path, b: &Blocker, args: &[&str]) -> String {
    let out = run_with(bin, b, args);
    assert!(
        out.status.success(),
        "`{} {}` failed ({}):\n{}{}",
        bin.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr of a command that must fail.
fn fails_with(bin: &Path, b: &Blocker, args: &[&str]) -> String {
    let out = run_with(bin, b, args);
    assert!(
        !out.status.success(),
        "`{} {}` succeeded but should have failed:\n{}",
        bin.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The probed names and the EDE text blocker must answer each with.
fn probes() -> Vec<(String, &'static str)> {
    let mut v: Vec<(String, &'static str)> = (0..LISTED)
        .flat_map(|i| {
            [
                (format!("n{i}.listed.test"), TEXT_1),
                (format!("www.n{i}.listed.test"), TEXT_1),
            ]
        })
        .collect();
    v.push(("other.listed.test".into(), TEXT_2));
    v
}

/// A blocker with two orders (a list; a rule scoped to a jurisdiction with the client's
/// prefix) and a setting, attached natively to the edge, in front of unbound, which answers
/// every name under listed.test itself (a redirect zone): only blocker answers NXDOMAIN.
fn setup() -> (Topology, Blocker, TempDir) {
    setup_with(&[])
}

/// [`setup`], with `extra` arguments to the edge's `blocker attach`.
fn setup_with(extra: &[&str]) -> (Topology, Blocker, TempDir) {
    let mut t = Topology::new();
    t.start_unbound(&[
        "local-zone: \"listed.test.\" redirect",
        "listed.test. 300 IN A 192.0.2.66",
    ]);
    let b = Blocker::new();
    t.attach_with(&b, "native", extra);
    // One client address asks as fast as it is answered: no rate limit, every query answered.
    b.rrl_off();
    let dir = TempDir::new("blkt-upgrade");
    let list: String = (0..LISTED).map(|i| format!("n{i}.listed.test\n")).collect();
    let list = dir.write("list.txt", &list);
    b.ok(&[
        "rules",
        "load",
        &list,
        "--order",
        "Court-U1",
        "--ede-text",
        TEXT_1,
    ]);
    b.ok(&["jurisdictions", "set", "LAB", "--prefix", "192.0.2.0/24"]);
    b.ok(&[
        "rules",
        "add",
        "other.listed.test",
        "--order",
        "Court-U2",
        "--ede-text",
        TEXT_2,
        "--jurisdiction",
        "LAB",
    ]);
    b.ok(&["config", "set", "--sinkhole-v4", "192.0.2.99"]);
    (t, b, dir)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// blocker's NXDOMAIN with the expected EDE text.
    Blocked,
    /// Anything else: (rcode, EDE texts).
    Other(u16, Vec<String>),
    Lost,
}

/// One query: when it was sent, which name, what came back.
struct Probe {
    sent: Instant,
    name: usize,
    outcome: Outcome,
}

/// Sockets the prober sends from (query ids repeat every 65,536 queries per socket).
const SOCKETS: usize = 4;

/// Queries `names` round robin from the client namespace until `done`, one every 100 µs or
/// so, without waiting for answers (a lost answer must not hide what follows it); the answers
/// are matched to the queries by socket and id.
fn prober(
    ns: String,
    names: Vec<(String, &'static str)>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Probe>> {
    std::thread::spawn(move || {
        let f = File::open(format!("/run/netns/{ns}")).expect("netns");
        // SAFETY: setns on an fd we own, in this thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let names = Arc::new(names);
        let answers: Arc<Mutex<HashMap<usize, Outcome>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut socks = Vec::new();
        let mut receivers = Vec::new();
        for s in 0..SOCKETS {
            let sock = UdpSocket::bind((CLIENT_V4, 0)).expect("bind");
            sock.connect((EDGE_V4, 53)).expect("connect");
            sock.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("timeout");
            let sock = Arc::new(sock);
            socks.push(sock.clone());
            let (names, answers, stop) = (names.clone(), answers.clone(), stop.clone());
            receivers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = sock.recv(&mut buf) else { continue };
                    let a = dns::parse(&buf[..n]);
                    let seq = usize::from(a.id) * SOCKETS + s;
                    let texts: Vec<String> = a.ede.iter().map(|(_, t)| t.clone()).collect();
                    let want = names[seq % names.len()].1;
                    let outcome = if a.rcode == 3 && texts == [want.to_string()] {
                        Outcome::Blocked
                    } else {
                        Outcome::Other(a.rcode, texts)
                    };
                    answers.lock().expect("answers").insert(seq, outcome);
                }
            }));
        }
        let mut sent = Vec::new();
        while !done.load(Ordering::Relaxed) {
            let seq = sent.len();
            assert!(seq < SOCKETS << 16, "query ids would repeat");
            let name = seq % names.len();
            // With EDNS: blocker answers with the EDE naming the order.
            let q = dns::query(
                (seq / SOCKETS) as u16,
                &names[name].0,
                RecordType::A,
                Some((false, Vec::new())),
            );
            let ok = socks[seq % SOCKETS].send(&q).is_ok();
            sent.push((Instant::now(), name, ok));
            std::thread::sleep(Duration::from_micros(100));
        }
        // The last answers, then the receivers stop.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        for r in receivers {
            r.join().expect("receiver");
        }
        let mut answers = answers.lock().expect("answers");
        sent.into_iter()
            .enumerate()
            .map(|(seq, (at, name, ok))| Probe {
                sent: at,
                name,
                outcome: match (ok, answers.remove(&seq)) {
                    (true, Some(o)) => o,
                    _ => Outcome::Lost,
                },
            })
            .collect()
    })
}

/// What traffic showed while `action` ran (with 300 ms of traffic before and after it).
struct Window<T> {
    result: T,
    probes: Vec<Probe>,
    /// Probes sent while `action` ran.
    during: usize,
    took: Duration,
    /// Queries unbound received meanwhile.
    leaked: u64,
}

fn under_traffic<T>(t: &Topology, action: impl FnOnce() -> T) -> Window<T> {
    let names = probes();
    let done = Arc::new(AtomicBool::new(false));
    let before = t.unbound_queries();
    let traffic = prober(t.client.name.clone(), names.clone(), done.clone());
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let result = action();
    let t1 = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let probes = traffic.join().expect("traffic thread");
    let leaked = t.unbound_queries() - before;
    let during = probes
        .iter()
        .filter(|p| p.sent >= t0 && p.sent < t1)
        .count();
    let bad: Vec<String> = probes
        .iter()
        .filter(|p| p.outcome != Outcome::Blocked)
        .map(|p| {
            format!(
                "{} at {:?}: {:?}",
                names[p.name].0,
                p.sent.saturating_duration_since(t0),
                p.outcome
            )
        })
        .collect();
    let resolved = probes
        .iter()
        .filter(|p| matches!(p.outcome, Outcome::Other(0, _)))
        .count();
    assert!(
        bad.is_empty(),
        "{} of {} probes not blocked ({resolved} resolved by unbound, {} lost; unbound counted \
         {leaked} queries) while the command ran for {:?}; first: {:?}",
        bad.len(),
        probes.len(),
        probes.iter().filter(|p| p.outcome == Outcome::Lost).count(),
        t1 - t0,
        &bad[..bad.len().min(5)]
    );
    assert_eq!(leaked, 0, "queries reached unbound");
    Window {
        result,
        probes,
        during,
        took: t1 - t0,
        leaked,
    }
}

/// Hits of each order, from `stats --json` of `bin`.
fn order_hits(bin: &Path, b: &Blocker) -> BTreeMap<String, u64> {
    let v: serde_json::Value =
        serde_json::from_str(&ok_with(bin, b, &["stats", "--json"])).expect("json");
    v["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .map(|o| {
            (
                o["name"].as_str().expect("name").to_string(),
                o["hits"].as_u64().expect("hits"),
            )
        })
        .collect()
}

/// Probes per order in a window.
fn probes_per_order(w: &[Probe]) -> BTreeMap<String, u64> {
    let names = probes();
    let mut m = BTreeMap::new();
    for p in w {
        let order = if names[p.name].1 == TEXT_1 {
            "Court-U1"
        } else {
            "Court-U2"
        };
        *m.entry(order.to_string()).or_insert(0) += 1;
    }
    m
}

/// Everything the record says, with the counters taken out.
fn record(bin: &Path, b: &Blocker) -> (String, String, String, serde_json::Value) {
    let mut orders: serde_json::Value =
        serde_json::from_str(&ok_with(bin, b, &["orders", "list", "--json"])).expect("json");
    for o in orders.as_array_mut().expect("orders") {
        let o = o.as_object_mut().expect("order");
        o.remove("hits");
        o.remove("shadow_hits");
    }
    (
        ok_with(bin, b, &["rules", "list", "--json"]),
        ok_with(bin, b, &["config", "show", "--json"]),
        ok_with(bin, b, &["jurisdictions", "list"]),
        orders,
    )
}

fn status(bin: &Path, b: &Blocker) -> serde_json::Value {
    serde_json::from_str(&ok_with(bin, b, &["status", "--json"])).expect("json")
}

/// Value size of the pinned BLK_CONFIG: 96 bytes for the default build, 104 with layout-test.
fn config_size(b: &Blocker) -> u32 {
    aya::maps::MapData::from_pin(b.bpffs.join(blocker_common::MAP_CONFIG))
        .and_then(|m| m.info())
        .expect("pinned BLK_CONFIG")
        .value_size()
}

/// What the staging of an upgrade leaves behind when all went well: nothing.
fn assert_settled(b: &Blocker) {
    assert!(!b.bpffs.join("upgrade").exists(), "staging directory left");
    assert!(!b.state.join("upgrade.json").exists(), "journal left");
    assert!(!b.state.join("txn.json").exists(), "change journal left");
}

#[test]
fn a_build_with_another_map_layout_takes_over_under_traffic() {
    let second = SecondBuild::new();
    let (a, bb) = (blocker_tests::env::blocker_bin(), second.bin());
    let (t, b, _dir) = setup();
    // Counted traffic before: the counters have something to carry over.
    let warm = under_traffic(&t, || ());
    let before = record(&a, &b);
    let hits0 = order_hits(&a, &b);
    assert!(hits0["Court-U1"] > 0 && hits0["Court-U2"] > 0, "{hits0:?}");
    let st0 = status(&a, &b);
    assert_eq!(config_size(&b), 96);
    drop(warm);

    // The second build takes over.
    let w = under_traffic(&t, || ok_with(&bb, &b, &["upgrade"]));
    let out = &w.result;
    println!("{out}");
    assert!(
        out.contains("BLK_CONFIG: value size 96 → 104"),
        "the layout change is named: {out}"
    );
    assert!(
        out.contains(
            "counters carried over (shared with the new program): BLK_STATS, BLK_ORDER_HITS, \
             BLK_RULE_HITS, BLK_EVENTS"
        ),
        "{out}"
    );
    let edge = format!("{}@{}", t.edge_dev, t.edge.name);
    let client = format!("{}@{}", t.client_dev, t.client.name);
    for iface in [&edge, &client] {
        assert!(
            out.contains(&format!("{iface}: switched to this version's program")),
            "{out}"
        );
    }
    assert!(
        w.during > 20,
        "only {} probes while the upgrade ran: the test would prove nothing",
        w.during
    );
    println!(
        "A → B: {} probes, {} while `upgrade` ran ({:?}), all NXDOMAIN from blocker, {} reached unbound",
        w.probes.len(),
        w.during,
        w.took,
        w.leaked
    );
    assert_settled(&b);
    assert_eq!(config_size(&b), 104, "the maps are the second build's");
    let st1 = status(&bb, &b);
    assert_ne!(
        st1["program_id"], st0["program_id"],
        "another program is pinned"
    );
    assert_eq!(st1["generation"], st0["generation"]);
    assert_eq!(st1["kernel_generation"], st0["generation"]);
    assert_eq!(record(&bb, &b), before, "rules, orders, settings survive");
    // Every probe was counted once, by the old program or the new one, in the same maps.
    let hits1 = order_hits(&bb, &b);
    let sent = probes_per_order(&w.probes);
    for (order, n) in &sent {
        assert_eq!(
            hits1[order],
            hits0[order] + n,
            "{order}: hits before {}, probes {n}",
            hits0[order]
        );
    }
    // The first build no longer reads these maps, and says what to do.
    for args in [
        vec!["status"],
        vec!["rules", "add", "late.listed.test", "--order", "Court-U1"],
        vec!["attach", "--iface", "lo"],
    ] {
        let err = fails_with(&a, &b, &args);
        assert!(err.contains("run `blocker upgrade`"), "{args:?}: {err}");
    }

    // Again: nothing to do.
    let again = ok_with(&bb, &b, &["upgrade"]);
    assert!(again.contains("already this version"), "{again}");
    assert_eq!(status(&bb, &b)["program_id"], st1["program_id"]);

    // And back to the first build, under traffic too.
    let hits1 = order_hits(&bb, &b);
    let w = under_traffic(&t, || ok_with(&a, &b, &["upgrade"]));
    assert!(
        w.result.contains("BLK_CONFIG: value size 104 → 96"),
        "{}",
        w.result
    );
    assert!(w.during > 20, "only {} probes during the upgrade", w.during);
    println!(
        "B → A: {} probes, {} while `upgrade` ran ({:?}), all NXDOMAIN from blocker, {} reached unbound",
        w.probes.len(),
        w.during,
        w.took,
        w.leaked
    );
    assert_settled(&b);
    assert_eq!(config_size(&b), 96);
    assert_eq!(record(&a, &b), before);
    let hits2 = order_hits(&a, &b);
    for (order, n) in &probes_per_order(&w.probes) {
        assert_eq!(hits2[order], hits1[order] + n, "{order}");
    }
    let again = ok_with(&a, &b, &["upgrade"]);
    assert!(again.contains("already this version"), "{again}");
    b.ok(&["rules", "add", "late.listed.test", "--order", "Court-U1"]);
    let r = kdig(
        &t.client,
        EDGE_V4,
        "late.listed.test",
        "A",
        &["+retry=0", "+timeout=2"],
    );
    assert_eq!(r.status.as_deref(), Some("NXDOMAIN"), "{}", r.raw);
}

/// Names removed from a directory while this watch lives (inotify IN_DELETE: bpffs reports
/// unlinks like any filesystem; a name renamed over is not removed).
struct Deletes(std::os::fd::OwnedFd);

impl Deletes {
    fn watch(dir: &std::path::Path) -> Deletes {
        use std::os::{fd::FromRawFd, unix::ffi::OsStrExt};
        // SAFETY: plain syscalls; the fd is owned by the returned value.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).expect("path");
        // SAFETY: a valid fd and NUL-terminated path.
        let wd = unsafe {
            libc::inotify_add_watch(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                path.as_ptr(),
                libc::IN_DELETE,
            )
        };
        assert!(
            wd >= 0,
            "inotify_add_watch: {}",
            std::io::Error::last_os_error()
        );
        Deletes(fd)
    }

    fn names(&self) -> Vec<String> {
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: reads into a buffer of the length given.
        let n = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&self.0),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        let mut out = Vec::new();
        let mut at = 0usize;
        // struct inotify_event: wd, mask, cookie, len (4 bytes each), then `len` bytes of name.
        while n > 0 && at + 16 <= n as usize {
            let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().expect("4")) as usize;
            let name = &buf[at + 16..at + 16 + len];
            let end = name.iter().position(|&c| c == 0).unwrap_or(len);
            out.push(String::from_utf8_lossy(&name[..end]).into_owned());
            at += 16 + len;
        }
        out
    }
}

#[test]
fn a_program_of_the_same_layout_is_replaced_and_the_maps_kept() {
    let (t, b, _dir) = setup();
    let pins = b.pins();
    let edge = format!("{}@{}", t.edge_dev, t.edge.name);
    let _ = under_traffic(&t, || ());
    let hits0 = b.stats()["orders"].clone();
    let rules_id = |b: &Blocker| {
        aya::maps::MapData::from_pin(b.bpffs.join(blocker_common::MAP_RULES))
            .and_then(|m| m.info())
            .expect("rules map")
            .id()
    };
    let map0 = rules_id(&b);
    let st0: serde_json::Value = serde_json::from_str(&b.ok(&["status", "--json"])).expect("json");

    // Stand-in for another build with this layout: the edge's link and the pinned program
    // run blocker's no-op program (same maps, other instructions).
    let mut noop: Xdp = blocker::kernel::pinned_program(&pins, true).expect("pinned no-op");
    let link = XdpLink::try_from(FdLink::from(
        PinnedLink::from_pin(pins.link(&edge)).expect("edge link"),
    ))
    .expect("an XDP link");
    noop.attach_to_link(link).expect("BPF_LINK_UPDATE");
    std::fs::remove_file(pins.prog()).expect("unpin");
    noop.pin(pins.prog()).expect("pin");
    drop(noop);
    let r = kdig(
        &t.client,
        EDGE_V4,
        "n1.listed.test",
        "A",
        &["+retry=0", "+timeout=2"],
    );
    assert_eq!(
        r.status.as_deref(),
        Some("NOERROR"),
        "the stand-in blocks nothing: {}",
        r.raw
    );

    // The pins are replaced in one step each (renamed over): never removed, so no other
    // command finds the directory without a program in between.
    let deletes = Deletes::watch(&b.bpffs);
    let out = b.ok(&["upgrade"]);
    println!("{out}");
    assert_eq!(
        deletes.names(),
        Vec::<String>::new(),
        "pins removed on the way"
    );
    assert!(out.contains("same map layout, another program"), "{out}");
    assert!(out.contains(&format!("{edge}: switched")), "{out}");
    let w = under_traffic(&t, || ());
    assert!(!w.probes.is_empty());
    let st1: serde_json::Value = serde_json::from_str(&b.ok(&["status", "--json"])).expect("json");
    assert_ne!(st1["program_id"], st0["program_id"]);
    assert_eq!(
        st1["program_tag"], st0["program_tag"],
        "this build's program again"
    );
    assert_eq!(rules_id(&b), map0, "the maps are kept");
    assert_eq!(st1["generation"], st0["generation"]);
    let hits1 = b.stats()["orders"].clone();
    for (o0, o1) in hits0
        .as_array()
        .expect("orders")
        .iter()
        .zip(hits1.as_array().expect("orders"))
    {
        assert!(o1["hits"].as_u64() > o0["hits"].as_u64(), "{o0} → {o1}");
    }
    let again = b.ok(&["upgrade"]);
    assert!(again.contains("already this version"), "{again}");

    // A link running a copy of this build's program that is not the pinned one (as an
    // upgrade interrupted between its link updates and its re-pinning leaves it): pointed
    // at the pinned program, nothing else changes.
    let capacity = blocker::kernel::pinned_capacity(&pins).expect("capacity");
    let mut copy = blocker::kernel::load_programs(&pins, capacity).expect("load a copy");
    let prog = blocker::kernel::program_mut(&mut copy, blocker_common::PROGRAM_NAME).expect("prog");
    let link = XdpLink::try_from(FdLink::from(
        PinnedLink::from_pin(pins.link(&edge)).expect("edge link"),
    ))
    .expect("an XDP link");
    prog.attach_to_link(link).expect("BPF_LINK_UPDATE");
    drop(copy);
    let out = under_traffic(&t, || b.ok(&["upgrade"])).result;
    assert!(out.contains("this version's program is pinned"), "{out}");
    assert!(
        out.contains(&format!("{edge}: switched to the pinned program")),
        "{out}"
    );
    let st2: serde_json::Value = serde_json::from_str(&b.ok(&["status", "--json"])).expect("json");
    assert_eq!(st2["program_id"], st1["program_id"]);
    let again = b.ok(&["upgrade"]);
    assert!(again.contains("already this version"), "{again}");
}

#[test]
fn an_interrupted_upgrade_keeps_blocking_and_the_next_one_finishes_it() {
    let second = SecondBuild::new();
    let (a, bb) = (blocker_tests::env::blocker_bin(), second.bin());
    let (t, b, _dir) = setup();
    let before = record(&a, &b);
    let crash = |bin: &Path, point: &str| {
        let out = Command::new(bin)
            .arg("--bpffs")
            .arg(&b.bpffs)
            .arg("--state-dir")
            .arg(&b.state)
            .arg("upgrade")
            .env("BLOCKER_TEST_CRASH_AT", point)
            .stdin(Stdio::null())
            .output()
            .expect("run blocker");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success() && err.contains(&format!("crash injected at `{point}`")),
            "{point}: {err}"
        );
    };
    let w = under_traffic(&t, || {
        // Killed once the new maps are ready, before any link moved: the old program
        // enforces, nothing waits for the upgrade, a change goes to the old maps.
        crash(&bb, "upgrade-staged");
        assert!(!b.state.join("upgrade.json").exists());
        ok_with(
            &a,
            &b,
            &["rules", "add", "y.listed.test", "--order", "Court-U1"],
        );
        // Killed once every link runs the staged program: every change waits.
        crash(&bb, "upgrade-linked");
        assert!(b.state.join("upgrade.json").exists());
        for bin in [&a, &bb] {
            let err = fails_with(
                bin,
                &b,
                &["rules", "add", "z.listed.test", "--order", "Court-U1"],
            );
            assert!(err.contains("was interrupted"), "{err}");
            assert!(err.contains("run `blocker upgrade` to finish it"), "{err}");
        }
        // Killed again while resuming, after one pin was replaced.
        crash(&bb, "upgrade-installing");
        // The first build finishes the second build's upgrade, then upgrades to itself.
        ok_with(&a, &b, &["upgrade"])
    });
    let out = &w.result;
    println!("{out}");
    println!(
        "crashes: {} probes, {} while the upgrades ran and crashed ({:?}), all NXDOMAIN from blocker",
        w.probes.len(),
        w.during,
        w.took
    );
    assert!(out.contains("finishing an interrupted upgrade"), "{out}");
    assert!(out.contains("BLK_CONFIG: value size 104 → 96"), "{out}");
    assert_settled(&b);
    assert_eq!(config_size(&b), 96);
    let after = record(&a, &b);
    // Court-U1 has one rule more (added between the crashes), the rest is as it was.
    let strip = |mut orders: serde_json::Value| {
        for o in orders.as_array_mut().expect("orders") {
            let o = o.as_object_mut().expect("order");
            o.remove("rules");
            o.remove("updated");
        }
        orders
    };
    assert_eq!(
        (&after.1, &after.2, strip(after.3.clone())),
        (&before.1, &before.2, strip(before.3.clone()))
    );
    assert!(
        after.0.contains("y.listed.test"),
        "the change made between the crashes is kept"
    );
    let r = kdig(
        &t.client,
        EDGE_V4,
        "y.listed.test",
        "A",
        &["+retry=0", "+timeout=2"],
    );
    assert_eq!(r.status.as_deref(), Some("NXDOMAIN"), "{}", r.raw);
    let again = b.ok(&["upgrade"]);
    assert!(again.contains("already this version"), "{again}");
}

/// max_entries of the pinned rule map.
fn capacity(b: &Blocker) -> u32 {
    aya::maps::MapData::from_pin(b.bpffs.join("BLK_RULES"))
        .expect("BLK_RULES")
        .info()
        .expect("info")
        .max_entries()
}

/// Hits of every rule of `order` that has some, by name, from `stats --json`.
fn rule_hits(b: &Blocker, order: &str) -> BTreeMap<String, u64> {
    let v: serde_json::Value =
        serde_json::from_str(&b.ok(&["stats", "--json", "--order", order, "--top", "1000"]))
            .expect("json");
    v["top_rules"]
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

/// A change that needs more rules than the rule map holds makes it grow: new maps with the
/// same rules, every link switched, the change then made in them. Without traffic the rule
/// counters come over exactly; under traffic no probe is answered by anyone but blocker.
#[test]
fn a_change_beyond_the_capacity_grows_the_maps_under_traffic() {
    let (t, b, dir) = setup_with(&["--capacity", "1024"]);
    assert_eq!(capacity(&b), 1024);
    let warm = under_traffic(&t, || ());
    assert!(warm.probes.len() > 1000, "{} probes", warm.probes.len());
    let hits0 = rule_hits(&b, "Court-U1");
    let orders0 = order_hits(&blocker_tests::env::blocker_bin(), &b);
    assert!(hits0.len() == LISTED, "{hits0:?}");

    // 2,000 names more than fit: 1024 → 4096 (twice the capacity, or the next power of two
    // of what old and new rules need at once), no traffic meanwhile.
    let list: String = (0..3000).map(|i| format!("g{i}.grown.test\n")).collect();
    let list = dir.write("grown.txt", &list);
    let out = b.run(&["rules", "load", &list, "--order", "Court-U3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("the rule map grew from 1024 to 4096 rules"),
        "the growth is said: {err}"
    );
    assert_eq!(capacity(&b), 4096);
    assert_eq!(
        rule_hits(&b, "Court-U1"),
        hits0,
        "rule counters copied exactly"
    );
    let mut orders1 = order_hits(&blocker_tests::env::blocker_bin(), &b);
    assert_eq!(orders1.remove("Court-U3"), Some(0), "the new order");
    assert_eq!(orders1, orders0, "order counters shared");
    let status = |name: &str| kdig(&t.client, EDGE_V4, name, "A", &[]).status;
    for i in [0, 1500, 2999] {
        assert_eq!(
            status(&format!("g{i}.grown.test")).as_deref(),
            Some("NXDOMAIN"),
            "g{i}.grown.test blocked by the new maps"
        );
    }

    // Again under traffic: 3,025 rules in force and 6,000 new need 9,025 ids at once, so
    // 4096 → 16384. Every probe is blocker's answer (under_traffic).
    let list: String = (0..6000).map(|i| format!("h{i}.grown.test\n")).collect();
    let list = dir.write("grown2.txt", &list);
    let w = under_traffic(&t, || {
        b.run(&["rules", "load", &list, "--order", "Court-U4"])
    });
    let err = String::from_utf8_lossy(&w.result.stderr);
    assert!(w.result.status.success(), "{err}");
    assert!(err.contains("grew from 4096 to 16384 rules"), "{err}");
    assert!(w.during > 0, "probes were sent while the maps grew");
    assert_eq!(capacity(&b), 16384);
    for name in ["g2999.grown.test", "h5999.grown.test", "n3.listed.test"] {
        assert_eq!(status(name).as_deref(), Some("NXDOMAIN"), "{name}");
    }
    // Nothing is left behind: no staging directory, no journal.
    assert!(!b.bpffs.join("upgrade").exists(), "staging directory left");
    assert!(
        !b.state.join("upgrade.json").exists(),
        "upgrade journal left"
    );

    // A reboot empties the BPF filesystem: the boot's attach, with the small capacity it
    // was first given, creates maps with room for all 9,025 recorded rules.
    b.ok(&["detach"]);
    std::fs::remove_dir_all(&b.bpffs).expect("remove the pinned directory");
    let out = t.attach_with(&b, "native", &["--capacity", "1024"]);
    assert!(out.contains("capacity 16384 names"), "{out}");
    for name in ["g2999.grown.test", "h5999.grown.test", "n3.listed.test"] {
        assert_eq!(
            status(name).as_deref(),
            Some("NXDOMAIN"),
            "{name} after the reboot"
        );
    }
}
