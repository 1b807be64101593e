//! `cargo xtask bench` runs this: in-kernel cost per packet with BPF_PROG_TEST_RUN, side by
//! side with the no-op XDP program in the same object, at several rule counts; list load
//! time, kernel memory per rule and controller peak RSS through the real CLI; the matching
//! structures compared; end to end against resolver-side RPZ under a load generator
//! ([`e2e`]); and update latency seen by a client ([`latency`]).
//!
//! Usage: blocker-bench [--quick] [--parts kernel,structures,e2e,latency] [--render]
//!        --blocker PATH --json OUT --markdown OUT   (--render: only rewrite OUT from the JSON)

mod e2e;
mod latency;

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, AsRawFd},
    path::PathBuf,
    process::Command,
    time::Instant,
};

use aya::programs::Xdp;
use blocker::sys::{bpf_map_type, RawMap, BPF_F_NO_PREALLOC};
use blocker_tests::{
    dns,
    env::{unique, Blocker},
    packet::Frame,
    testrun::{test_run, XDP_PASS, XDP_TX},
};
use hickory_proto::rr::RecordType;
use serde_json::{json, Value};

/// Runs per measurement for paths that leave the frame unchanged (the kernel loops).
const REPEAT: u32 = 50_000;
/// Single runs averaged for paths that rewrite the frame (a repeat would re-run on the
/// rewritten buffer); the baseline is measured the same way for a fair ratio.
const SINGLES: u32 = 6_000;

struct Args {
    quick: bool,
    /// Which parts to run (all by default); the others keep their previous results.
    parts: Vec<String>,
    /// Only rewrite the markdown from the JSON results.
    render: bool,
    blocker: PathBuf,
    json: PathBuf,
    markdown: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        quick: false,
        parts: PARTS.iter().map(|p| p.to_string()).collect(),
        render: false,
        blocker: PathBuf::from("target/release/blocker"),
        json: "bench/results.json".into(),
        markdown: "BENCHMARKS.md".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--quick" => a.quick = true,
            "--render" => a.render = true,
            "--parts" => {
                a.parts = it
                    .next()
                    .expect("--parts LIST")
                    .split(',')
                    .map(str::to_string)
                    .collect();
                for p in &a.parts {
                    assert!(
                        PARTS.contains(&p.as_str()),
                        "unknown part {p}: one of {PARTS:?}"
                    );
                }
            }
            "--blocker" => a.blocker = it.next().expect("--blocker PATH").into(),
            "--json" => a.json = it.next().expect("--json PATH").into(),
            "--markdown" => a.markdown = it.next().expect("--markdown PATH").into(),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

const PARTS: [&str; 4] = ["kernel", "structures", "e2e", "latency"];

/// Sets a sysctl file for the guard's lifetime.
struct SysctlGuard {
    path: &'static str,
    old: Option<String>,
}

impl SysctlGuard {
    fn set(path: &'static str, value: &str) -> SysctlGuard {
        let old = std::fs::read_to_string(path).ok();
        if old.as_deref().map(str::trim) != Some(value) {
            eprintln!(
                "  {path} was {:?}: set to {value} while measuring",
                old.as_deref().map(str::trim)
            );
            let _ = std::fs::write(path, value);
        }
        SysctlGuard { path, old }
    }
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        if let Some(v) = &self.old {
            let _ = std::fs::write(self.path, v);
        }
    }
}

/// A blocker instance of its own (bpffs and state directories), removed on drop.
fn instance(bin: &std::path::Path) -> Blocker {
    let id = unique("blkb");
    Blocker {
        bpffs: PathBuf::from("/sys/fs/bpf").join(&id),
        state: std::env::temp_dir().join(format!("{id}-state")),
        bin: bin.to_path_buf(),
    }
}

/// Runs a blocker command that must succeed: (output, peak RSS, wall seconds).
fn timed(b: &Blocker, args: &[&str]) -> (String, Option<u64>, f64) {
    {
        let t = Instant::now();
        let child = Command::new(&b.bin)
            .arg("--bpffs")
            .arg(&b.bpffs)
            .arg("--state-dir")
            .arg(&b.state)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run blocker");
        let pid = child.id() as i32;
        let mut status = 0;
        // SAFETY: wait4 on our own child; rusage is written by the kernel.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        let secs = t.elapsed().as_secs_f64();
        let out = child.wait_with_output();
        let text = out
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr)
            })
            .unwrap_or_default();
        assert!(
            r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "blocker {args:?} failed: {text}"
        );
        (text, Some(ru.ru_maxrss as u64 * 1024), secs)
    }
}

/// memlock of a pinned map, from /proc/self/fdinfo.
fn memlock(path: &std::path::Path) -> u64 {
    use std::os::fd::AsRawFd;
    let Ok(map) = aya::maps::MapData::from_pin(path) else {
        return 0;
    };
    let fd = map.fd().as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn frames() -> Vec<(&'static str, Vec<u8>, bool)> {
    use RecordType::*;
    // A TCP segment without data (an ACK of a DNS connection): what every segment of a TCP
    // connection but the query costs.
    let tcp = Frame::v4(vec![]).over_tcp(blocker_tests::packet::Tcp {
        flags: 0x10,
        raw_payload: true,
        ..Default::default()
    });
    let mut quic = Frame::v4(vec![0xc3; 64]);
    quic.dport = 443;
    let tcp_query = |id: u16, name: &str| {
        Frame::v4(dns::query(id, name, A, Some((false, vec![]))))
            .over_tcp(blocker_tests::packet::Tcp {
                options: blocker_tests::packet::ts_option(1, 2),
                ..Default::default()
            })
            .bytes()
    };
    let mut vlan = Frame::v4(dns::query(
        5,
        "www.allowed.example.",
        A,
        Some((false, vec![])),
    ));
    vlan.vlans = vec![(0x8100, 42)];
    vec![
        ("non-DNS (UDP to port 443)", quic.bytes(), false),
        ("TCP segment without data (ACK)", tcp.bytes(), false),
        (
            "allowed query (miss)",
            Frame::v4(dns::query(
                2,
                "www.allowed.example.",
                A,
                Some((false, vec![])),
            ))
            .bytes(),
            false,
        ),
        (
            "allowed, deep name (12 labels)",
            Frame::v4(dns::query(
                3,
                "a.b.c.d.e.f.g.h.i.j.allowed.example.",
                A,
                None,
            ))
            .bytes(),
            false,
        ),
        (
            "allowed, IPv6",
            Frame::v6(dns::query(
                4,
                "www.allowed.example.",
                AAAA,
                Some((false, vec![])),
            ))
            .bytes(),
            false,
        ),
        ("allowed, 802.1Q", vlan.bytes(), false),
        (
            "blocked -> NXDOMAIN+EDE",
            Frame::v4(dns::query(
                6,
                "www.site7.piracy7.example.",
                A,
                Some((false, vec![])),
            ))
            .bytes(),
            true,
        ),
        (
            "allowed over TCP",
            tcp_query(7, "www.allowed.example."),
            false,
        ),
        (
            "blocked over TCP -> NXDOMAIN+EDE",
            tcp_query(8, "www.site7.piracy7.example."),
            true,
        ),
    ]
}

/// Rounds inside one measurement (the fastest is kept).
const ROUNDS: usize = 3;
/// Back-to-back (no-op, blocker) measurement pairs per packet type.
const PAIRS: usize = 9;

fn per_packet(prog: &Xdp, frame: &[u8], rewrites: bool) -> f64 {
    let fd = prog.fd().expect("fd");
    if rewrites {
        return singles(prog, frame, Some(XDP_TX));
    }
    (0..ROUNDS)
        .map(|_| {
            let r = test_run(fd.as_fd(), frame, REPEAT).expect("test run");
            assert_eq!(r.retval, XDP_PASS);
            r.duration_ns as f64
        })
        .fold(f64::MAX, f64::min)
}

/// Median of single runs, best of ROUNDS rounds.
fn singles(prog: &Xdp, frame: &[u8], expect: Option<u32>) -> f64 {
    let fd = prog.fd().expect("fd");
    (0..ROUNDS)
        .map(|_| {
            let mut d: Vec<u32> = (0..SINGLES / ROUNDS as u32)
                .map(|_| {
                    let r = test_run(fd.as_fd(), frame, 1).expect("test run");
                    if let Some(e) = expect {
                        assert_eq!(r.retval, e, "unexpected verdict");
                    }
                    r.duration_ns
                })
                .collect();
            d.sort_unstable();
            d[d.len() / 2] as f64
        })
        .fold(f64::MAX, f64::min)
}

/// A map of a layout aya does not create, for the matching-structure comparison (no
/// preallocation, so memlock tracks the entries).
fn raw_map(map_type: bpf_map_type, key_size: u32, value_size: u32, max: u32) -> RawMap {
    RawMap::create(map_type, key_size, value_size, max, BPF_F_NO_PREALLOC)
        .unwrap_or_else(|e| panic!("BPF_MAP_CREATE: {e}"))
}

/// Kernel memory charged to a map (memlock in its fdinfo).
fn raw_map_memlock(map: &RawMap) -> u64 {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", map.as_fd().as_raw_fd()))
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The two candidate structures for "most specific suffix", filled with the same names:
/// an LPM trie over reversed wire names (what an LPM design needs: 4-byte prefix length and
/// up to 255 name bytes per key) and the hash of 16-byte suffix keys blocker uses. Kernel
/// memory per entry from memlock; lookup cost through the syscall (same overhead for both).
fn compare_structures(n: usize) -> Value {
    use blocker_common::key::{key_of_canonical, KeySecret};
    // Any secret will do: this compares map structures, not blocker's own maps.
    let secret =
        KeySecret::from_bases(0x0123_4567_89ab_cdef, 0x1edc_ba98_7654_3210).expect("valid bases");
    let names: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut w = Vec::new();
            for l in [
                format!("site{i}"),
                format!("piracy{}", i % 997),
                "example".to_string(),
            ] {
                w.push(l.len() as u8);
                w.extend_from_slice(l.as_bytes());
            }
            w
        })
        .collect();
    // Reversed wire name: labels from the TLD down, each with its length byte.
    let reversed = |w: &[u8]| -> Vec<u8> {
        let mut labels = Vec::new();
        let mut i = 0;
        while i < w.len() {
            labels.push(&w[i..i + 1 + w[i] as usize]);
            i += 1 + w[i] as usize;
        }
        labels
            .iter()
            .rev()
            .flat_map(|l| l.iter().copied())
            .collect()
    };
    let lpm = raw_map(
        bpf_map_type::BPF_MAP_TYPE_LPM_TRIE,
        4 + 255,
        48,
        n as u32 + 16,
    );
    let hash = raw_map(bpf_map_type::BPF_MAP_TYPE_HASH, 16, 48, n as u32 + 16);
    let value = [0u8; 48];
    for w in &names {
        let r = reversed(w);
        let mut k = vec![0u8; 259];
        k[..4].copy_from_slice(&((r.len() * 8) as u32).to_ne_bytes());
        k[4..4 + r.len()].copy_from_slice(&r);
        lpm.update(&k, &value).expect("BPF_MAP_UPDATE_ELEM");
        let h = key_of_canonical(&secret, w);
        let mut hk = [0u8; 16];
        hk[..8].copy_from_slice(&h.h1.to_ne_bytes());
        hk[8..].copy_from_slice(&h.h2.to_ne_bytes());
        hash.update(&hk, &value).expect("BPF_MAP_UPDATE_ELEM");
    }
    let probes = 200_000.min(n * 4);
    let mut out = [0u8; 48];
    let t = Instant::now();
    for i in 0..probes {
        let w = &names[(i * 7919) % n];
        let rev = reversed(w);
        let mut k = vec![0u8; 259];
        let full = [rev.as_slice(), &[3, b'w', b'w', b'w']].concat();
        k[..4].copy_from_slice(&((full.len() * 8) as u32).to_ne_bytes());
        k[4..4 + full.len()].copy_from_slice(&full);
        assert!(lpm.lookup(&k, &mut out).is_ok());
    }
    let lpm_ns = t.elapsed().as_nanos() as f64 / probes as f64;
    let t = Instant::now();
    for i in 0..probes {
        let w = &names[(i * 7919) % n];
        // Two probes, as blocker does for www.<rule name> with rules at depths 3 and 4.
        for suffix in [w.as_slice(), w.as_slice()] {
            let h = key_of_canonical(&secret, suffix);
            let mut hk = [0u8; 16];
            hk[..8].copy_from_slice(&h.h1.to_ne_bytes());
            hk[8..].copy_from_slice(&h.h2.to_ne_bytes());
            assert!(hash.lookup(&hk, &mut out).is_ok());
        }
    }
    let hash_ns = t.elapsed().as_nanos() as f64 / probes as f64;
    json!({
        "entries": n,
        "lpm_bytes_per_entry": raw_map_memlock(&lpm) as f64 / n as f64,
        "hash_bytes_per_entry": raw_map_memlock(&hash) as f64 / n as f64,
        "lpm_lookup_ns_via_syscall": lpm_ns,
        "hash_two_lookups_ns_via_syscall": hash_ns,
    })
}

/// Per-packet cost at each rule count, and the list loads that fill the map (part `kernel`).
/// Returns (in_kernel rows, list_load rows, verified instructions).
/// Runs `f` with the key filter turned off in the pinned config, then turns it back on.
pub fn with_filter_off<T>(pins: &blocker::kernel::Pins, f: impl FnOnce() -> T) -> T {
    let mut maps = blocker::kernel::Maps::open(pins).expect("maps");
    let cfg = maps.config().expect("config");
    maps.set_config(&blocker_common::Config { filter: 0, ..cfg })
        .expect("filter off");
    let out = f();
    maps.set_config(&cfg).expect("filter back on");
    out
}

fn kernel_part(bin: &std::path::Path, counts: &[usize]) -> (Vec<Value>, Vec<Value>, u32) {
    let max = *counts.iter().max().expect("counts");
    let tmp = blocker_tests::env::TempDir::new("blkb-lists");
    let inst = instance(bin);
    // Each size replaces the previous order after removing it, so the map never holds two
    // lists at once: the capacity the largest list needs is enough.
    std::fs::create_dir_all(&inst.bpffs).ok();
    blocker::kernel::load_and_pin(&inst.pins(), (max + 1024) as u32).expect("load");
    // The same frame from the same address, thousands of times: measured without the
    // response rate limit, which would turn most of them into drops.
    inst.rrl_off();

    let mut results = Vec::new();
    let mut loads = Vec::new();
    let frames = frames();
    for &n in counts {
        let list = tmp.join(format!("list-{n}.txt"));
        let text: String = (0..n)
            .map(|i| format!("site{i}.piracy{}.example\n", i % 997))
            .collect();
        std::fs::write(&list, text).expect("write list");
        // A fresh order per size: first remove the previous one.
        let _ = inst.run(&["orders", "remove", "bench"]);
        let (_, rss, secs) = timed(
            &inst,
            &[
                "rules",
                "load",
                list.to_str().expect("utf-8"),
                "--order",
                "bench",
                "--ede-text",
                "Benchmark order 1/2026",
            ],
        );
        let mem = memlock(&inst.bpffs.join(blocker_common::MAP_RULES));
        loads.push(json!({"rules": n, "seconds": secs, "rules_per_second": n as f64 / secs, "controller_peak_rss_bytes": rss, "rule_map_memlock_bytes": mem, "bytes_per_rule": mem as f64 / n as f64}));
        eprintln!(
            "loaded {n} rules in {secs:.2} s ({:.0} rules/s), rule map memlock {} MiB",
            n as f64 / secs,
            mem >> 20
        );
        std::fs::remove_file(&list).ok();

        let prog = blocker::kernel::pinned_program(&inst.pins(), false).expect("program");
        let noop = blocker::kernel::pinned_program(&inst.pins(), true).expect("noop program");
        let base_frame = &frames
            .iter()
            .find(|f| f.0 == "allowed query (miss)")
            .expect("the allowed query frame")
            .1;
        let mut base_repeat = f64::MAX;
        let mut base_single = f64::MAX;
        let mut row = BTreeMap::new();
        // Rounds alternate the no-op program and blocker back to back: the ratio of each pair
        // is taken, and the median ratio reported, so a slow spell of this shared VM affects
        // both sides of a pair alike. Absolute figures are the fastest round.
        let pairs = |frame: &[u8], rewrites: bool| -> (f64, f64, f64) {
            let mut ratios = Vec::new();
            let (mut best, mut best_base) = (f64::MAX, f64::MAX);
            for _ in 0..PAIRS {
                let base = if rewrites {
                    singles(&noop, base_frame, None)
                } else {
                    per_packet(&noop, base_frame, false)
                };
                let ns = per_packet(&prog, frame, rewrites);
                ratios.push(ns / base);
                best = best.min(ns);
                best_base = best_base.min(base);
            }
            ratios.sort_by(f64::total_cmp);
            (best, best_base, ratios[ratios.len() / 2])
        };
        let mut record = |name: &str, rewrites: bool, (best, best_base, ratio): (f64, f64, f64)| {
            if rewrites {
                base_single = base_single.min(best_base);
            } else {
                base_repeat = base_repeat.min(best_base);
            }
            row.insert(name.to_string(), json!({"ns_per_packet": best, "baseline_ns": best_base, "ratio": ratio, "method": if rewrites { "median of single runs" } else { "repeat" }}));
            eprintln!("  {n:>9} rules  {name:<32} {best:>7.1} ns  ({ratio:.2}x the no-op program)");
        };
        for (name, frame, rewrites) in &frames {
            record(name, *rewrites, pairs(frame, *rewrites));
        }
        // The allowed query again with the key filter off (the rule map asked at every depth
        // that holds rules): what the filter saves, side by side.
        let off = with_filter_off(&inst.pins(), || pairs(base_frame, false));
        record("allowed query, key filter off", false, off);
        results.push(json!({"rules": n, "baseline_ns_repeat": base_repeat, "baseline_ns_single": base_single, "packets": row}));
    }
    let verified = blocker::kernel::pinned_program(&inst.pins(), false)
        .ok()
        .and_then(|p| p.info().ok())
        .and_then(|i| i.verified_instruction_count())
        .unwrap_or(0);
    (results, loads, verified)
}

fn main() {
    let a = args();
    let counts: Vec<usize> = if a.quick {
        vec![1_000, 100_000, 1_000_000]
    } else {
        vec![1_000, 100_000, 1_000_000, 10_000_000]
    };
    if a.render {
        let all: Value = std::fs::read_to_string(&a.json)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .expect("--render needs the JSON results");
        write_markdown(&a.markdown, &all);
        return;
    }
    let runs = |p: &str| a.parts.iter().any(|x| x == p);
    // Parts not run keep the results of the previous run (of the same kind, quick or full).
    let mut all: Value = std::fs::read_to_string(&a.json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(|v: &Value| v["quick"].as_bool() == Some(a.quick))
        .unwrap_or_else(|| json!({}));
    all["quick"] = json!(a.quick);
    all["machine"] = json!({
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default().lines().find_map(|l| l.strip_prefix("model name\t: ")).unwrap_or("?").to_string(),
        "date": Command::new("date").arg("-u").arg("+%Y-%m-%dT%H:%M:%SZ").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default(),
    });
    all["parts_run"] = json!(a.parts);
    let date = all["machine"]["date"].clone();
    for p in &a.parts {
        all["part_dates"][p.as_str()] = date.clone();
    }
    if runs("kernel") {
        eprintln!("== in-kernel cost per packet and list loads");
        // BPF run-time statistics add two clock reads to every run of every program, the
        // no-op included: they would flatten every ratio. Off while measuring, then restored.
        let _stats_off = SysctlGuard::set("/proc/sys/kernel/bpf_stats_enabled", "0");
        let (results, loads, verified) = kernel_part(&a.blocker, &counts);
        all["in_kernel"] = json!(results);
        all["list_load"] = json!(loads);
        all["verified_instructions"] = json!(verified);
    }
    if runs("structures") {
        eprintln!("== matching structures");
        let structures: Vec<Value> = [100_000usize, 1_000_000]
            .iter()
            .map(|&n| {
                let v = compare_structures(n);
                eprintln!("structures at {n}: {v}");
                v
            })
            .collect();
        all["structures"] = json!(structures);
    }
    if runs("e2e") {
        eprintln!("== end to end against resolver-side RPZ");
        let plan = if a.quick {
            e2e::Plan {
                rules: 100_000,
                rates: vec![100_000, 300_000, 5_000_000],
                seconds: 2,
            }
        } else {
            e2e::Plan {
                rules: 100_000,
                rates: vec![50_000, 100_000, 200_000, 400_000, 800_000, 5_000_000],
                seconds: 3,
            }
        };
        let inst = instance(&a.blocker);
        all["end_to_end"] = e2e::measure(&plan, &inst);
    }
    if runs("latency") {
        eprintln!("== update latency");
        let inst = instance(&a.blocker);
        all["update_latency"] = latency::measure(&inst, if a.quick { 10 } else { 30 }, 1_000_000);
    }
    if let Some(d) = a.json.parent() {
        std::fs::create_dir_all(d).ok();
    }
    std::fs::write(&a.json, serde_json::to_string_pretty(&all).expect("json")).expect("write json");
    write_markdown(&a.markdown, &all);
    eprintln!("wrote {} and {}", a.json.display(), a.markdown.display());
}

const BEGIN: &str = "<!-- results: generated by cargo xtask bench; do not edit by hand -->";
const END: &str = "<!-- end of results -->";

fn write_markdown(path: &std::path::Path, r: &Value) {
    let mut s = String::new();
    let m = &r["machine"];
    s.push_str(&format!(
        "{BEGIN}\n\nRun {} on {} ({} CPUs, kernel {}){}; verified instructions: {}. Parts and the date each was last measured: {}.\n\n",
        m["date"].as_str().unwrap_or("?"),
        m["cpu_model"].as_str().unwrap_or("?"),
        m["cpus"],
        m["kernel"].as_str().unwrap_or("?"),
        if r["quick"].as_bool() == Some(true) {
            ", `--quick`"
        } else {
            ""
        },
        r["verified_instructions"],
        r["part_dates"]
            .as_object()
            .map(|o| o
                .iter()
                .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    ));
    s.push_str("### In-kernel cost per packet (BPF_PROG_TEST_RUN)\n\n");
    let rows = r["in_kernel"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> = rows
        .first()
        .and_then(|x| x["packets"].as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    s.push_str("| packet |");
    for row in &rows {
        s.push_str(&format!(" {} rules |", row["rules"]));
    }
    s.push_str("\n|---|");
    for _ in &rows {
        s.push_str("---|");
    }
    s.push('\n');
    s.push_str("| no-op XDP program (baseline, repeat / single runs) |");
    for row in &rows {
        s.push_str(&format!(
            " {:.1} / {:.1} ns |",
            row["baseline_ns_repeat"].as_f64().unwrap_or(0.0),
            row["baseline_ns_single"].as_f64().unwrap_or(0.0)
        ));
    }
    s.push('\n');
    for n in &names {
        s.push_str(&format!("| {n} |"));
        for row in &rows {
            let p = &row["packets"][n];
            s.push_str(&format!(
                " {:.1} ns ({:.2}×) |",
                p["ns_per_packet"].as_f64().unwrap_or(0.0),
                p["ratio"].as_f64().unwrap_or(0.0)
            ));
        }
        s.push('\n');
    }
    s.push_str(&format!("\nRatios are to the no-op program measured the same way in the same run: `repeat {REPEAT}` for paths that leave the frame unchanged, the median of single runs for the rewriting path (a repeat would re-run on the already rewritten answer); this is a shared VM, so each ratio is the median of {PAIRS} back-to-back (no-op, blocker) pairs and each time the fastest round.\n\n"));
    s.push_str("### List load through the CLI (`blocker rules load`, release build)\n\n| rules | wall time | rules/s | rule map memlock | bytes per rule | bytes per rule added | controller peak RSS |\n|---|---|---|---|---|---|---|\n");
    let loads = r["list_load"].as_array().cloned().unwrap_or_default();
    // The map's bucket array is sized by its capacity (the largest list here) and counted in
    // memlock from the start: the marginal cost over the smallest list is what a rule adds.
    let first = loads
        .first()
        .map(|l| (f(&l["rule_map_memlock_bytes"]), f(&l["rules"])));
    for l in &loads {
        let added = first
            .filter(|(_, n0)| f(&l["rules"]) > *n0)
            .map(|(m0, n0)| {
                format!(
                    "{:.0}",
                    (f(&l["rule_map_memlock_bytes"]) - m0) / (f(&l["rules"]) - n0)
                )
            })
            .unwrap_or_else(|| "–".into());
        s.push_str(&format!(
            "| {} | {:.2} s | {:.0} | {:.1} MiB | {:.0} | {} | {:.0} MiB |\n",
            l["rules"],
            f(&l["seconds"]),
            f(&l["rules_per_second"]),
            f(&l["rule_map_memlock_bytes"]) / 1048576.0,
            f(&l["bytes_per_rule"]),
            added,
            f(&l["controller_peak_rss_bytes"]) / 1048576.0
        ));
    }
    s.push_str("\nThe rule map is created with room for the largest list of the run; its bucket array (16 bytes per slot, rounded up to a power of two) is counted from the start, so *bytes per rule* is high for small lists in a big map, and *bytes per rule added* (over the smallest list) is what each rule costs.\n");
    s.push_str("\n### Matching structure: LPM trie over reversed names vs hashed suffix keys\n\n| entries | LPM bytes/entry | hash bytes/entry | LPM lookup (syscall) | 2 hash lookups (syscall) |\n|---|---|---|---|---|\n");
    for c in r["structures"].as_array().cloned().unwrap_or_default() {
        s.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} ns | {:.0} ns |\n",
            c["entries"],
            c["lpm_bytes_per_entry"].as_f64().unwrap_or(0.0),
            c["hash_bytes_per_entry"].as_f64().unwrap_or(0.0),
            c["lpm_lookup_ns_via_syscall"].as_f64().unwrap_or(0.0),
            c["hash_two_lookups_ns_via_syscall"].as_f64().unwrap_or(0.0)
        ));
    }
    end_to_end_markdown(&mut s, r);
    latency_markdown(&mut s, r);
    commands_markdown(&mut s, r);
    s.push_str(&format!("\n{END}\n"));
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if e > b => format!(
            "{}{}{}",
            &old[..b],
            s,
            &old[e + END.len() + 1.min(old.len() - e - END.len())..]
        ),
        _ => format!("{old}\n{s}"),
    };
    std::fs::write(path, new).expect("write markdown");
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The runs of `setup` (by name prefix) under `mix`.
fn runs_of<'a>(e: &'a Value, setup: &str, mix: &str) -> Vec<&'a Value> {
    e["setups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["setup"].as_str().is_some_and(|n| n.starts_with(setup)))
        .flat_map(|x| x["mixes"][mix].as_array().into_iter().flatten())
        .collect()
}

fn end_to_end_markdown(s: &mut String, r: &Value) {
    let e = &r["end_to_end"];
    let Some(setups) = e["setups"].as_array() else {
        return;
    };
    s.push_str(&format!(
        "\n### End to end: blocker vs resolver-side RPZ (veth between namespaces)\n\n{} names in one court order, the same RPZ file loaded by every setup (each name and `*.name`); {} allowed names answered from local data; generator: {}; edge: {}; one resolver thread; {} s per rate. `answered` counts every reply, `blocked` NXDOMAIN replies (for the no-blocking references: names unknown to the resolver), `allowed` NOERROR replies. Edge CPU is the CPU time of the edge veth's NAPI thread (where XDP runs) plus every resolver thread, per reply; the XDP column is blocker's program alone (kernel BPF run-time statistics).\n",
        e["rules"], e["allowed_names"], e["generator"].as_str().unwrap_or("?"), e["edge_cpu"].as_str().unwrap_or("?"), e["seconds_per_run"]
    ));
    for mix in ["mixed", "blocked only"] {
        s.push_str(&format!(
            "\n#### {}\n\n| setup | offered/s | answered/s | blocked/s | allowed/s | loss | edge CPU per reply | XDP program per packet |\n|---|---|---|---|---|---|---|---|\n",
            if mix == "mixed" { format!("Mixed load: {:.0} % blocked names", 100.0 * f(&e["blocked_share_of_mixed"])) } else { "Blocked names only".to_string() }
        ));
        for st in setups {
            for run in st["mixes"][mix].as_array().into_iter().flatten() {
                s.push_str(&format!(
                    "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} % | {:.2} µs | {} |\n",
                    st["setup"].as_str().unwrap_or("?"),
                    f(&run["sent_per_second"]),
                    f(&run["answered_per_second"]),
                    f(&run["blocked_answered_per_second"]),
                    f(&run["allowed_answered_per_second"]),
                    100.0 * f(&run["loss"]),
                    f(&run["edge_cpu_ns_per_answer"]) / 1000.0,
                    run["xdp_program_ns_per_packet"]
                        .as_f64()
                        .map_or("–".to_string(), |x| format!("{x:.0} ns")),
                ));
            }
        }
    }
    // Ratios: the most blocked replies per second any rate reached, and the edge CPU per
    // blocked reply at the lowest rate (where no setup is saturated).
    let best = |setup: &str| {
        runs_of(e, setup, "blocked only")
            .iter()
            .map(|x| f(&x["blocked_answered_per_second"]))
            .fold(0.0, f64::max)
    };
    let cpu = |setup: &str| {
        runs_of(e, setup, "blocked only")
            .first()
            .map(|x| f(&x["edge_cpu_ns_per_answer"]))
            .unwrap_or(0.0)
    };
    const BLOCKER: &str = "blocker (XDP) +";
    let b = best(BLOCKER);
    s.push_str("\n| blocker compared with | blocked replies/s (most reached), ratio | edge CPU per blocked reply (lowest rate), ratio |\n|---|---|---|\n");
    for other in ["unbound + RPZ", "PowerDNS Recursor + RPZ"] {
        let o = best(other);
        if o > 0.0 {
            s.push_str(&format!(
                "| {other} | {b:.0} vs {o:.0}: {:.1}× | {:.2} vs {:.2} µs: {:.1}× less |\n",
                b / o,
                cpu(BLOCKER) / 1000.0,
                cpu(other) / 1000.0,
                cpu(other) / cpu(BLOCKER).max(1.0)
            ));
        }
    }
    // Allowed replies under the mixed load, side by side with the no-blocking references.
    let allowed = |setup: &str| -> Vec<f64> {
        runs_of(e, setup, "mixed")
            .iter()
            .map(|x| f(&x["allowed_answered_per_second"]))
            .collect()
    };
    let offered: Vec<String> = runs_of(e, BLOCKER, "mixed")
        .iter()
        .map(|x| format!("{:.0}", f(&x["sent_per_second"])))
        .collect();
    s.push_str(&format!("\nAllowed replies/s under the mixed load (blocker's offered rates {}): blocker + unbound {:?}; unbound alone {:?}; unbound behind the no-op XDP program {:?}; unbound + RPZ {:?}.\n",
        offered.join(", "),
        allowed(BLOCKER).iter().map(|x| x.round()).collect::<Vec<_>>(),
        allowed("unbound, no blocking").iter().map(|x| x.round()).collect::<Vec<_>>(),
        allowed("unbound behind").iter().map(|x| x.round()).collect::<Vec<_>>(),
        allowed("unbound + RPZ").iter().map(|x| x.round()).collect::<Vec<_>>()));
    // The key filter, on and off, under the same mixed load.
    let xdp = |setup: &str| -> Vec<f64> {
        runs_of(e, setup, "mixed")
            .iter()
            .map(|x| f(&x["xdp_program_ns_per_packet"]).round())
            .collect()
    };
    let off = xdp("blocker (XDP, key filter off)");
    if !off.is_empty() {
        s.push_str(&format!("
XDP program ns per packet under the mixed load, key filter on {:?} and off {:?} (same rates, same run).
", xdp(BLOCKER), off));
    }
}

/// The commands behind the figures, as the harness runs them.
fn commands_markdown(s: &mut String, r: &Value) {
    let e = &r["end_to_end"];
    let kx = e2e::kxdpgun_args(
        &e["seconds_per_run"].to_string(),
        "RATE",
        "QUERIES.txt",
        "CLIENT_VETH",
    )
    .join(" ");
    s.push_str(&format!(
        "\n### Commands\n\n\
- blocker runs with `blocker config set --rrl-rate 0` in every part: the load comes from one client address, which the response rate limit would otherwise hold to 200 answers per second (per CPU).\n\
- In-kernel cost: `blocker rules load list-N.txt --order bench --ede-text \"Benchmark order 1/2026\"` (N lines `siteI.piracyJ.example`; the controller's peak RSS from wait4), then BPF_PROG_TEST_RUN of the pinned `blocker` and `blocker_noop` programs on the same frame: `repeat {REPEAT}` for frames that pass, {SINGLES} single runs for the rewritten one. The \"key filter off\" row sets `Config::filter` to 0 in the pinned config map for its measurement.\n\
- End to end, one run per rate: `ip netns exec CLIENT kxdpgun {kx}`; `taskset -apc 0` on the client veth's NAPI thread, `taskset -apc 1` on the edge veth's NAPI thread and the resolver; both veths `ethtool -K VETH gro on` and `echo 1 > /sys/class/net/VETH/threaded`; one unrecorded second at the lowest rate before each sweep.\n\
- (a) `blocker attach --iface EDGE_VETH --netns EDGE --mode native`, `blocker rules load court.rpz --format rpz --order bench-e2e --ede-text \"Benchmark order 1/2026\"`, unbound (`num-threads: 1`, `module-config: \"iterator\"`, the allowed names as `local-data`); the client veth runs kxdpgun's own XDP program, which receives the XDP_TX replies.\n\
- (b) unbound with `module-config: \"respip iterator\"` and `rpz:` `name: rpz.local`, `zonefile: court.rpz`; the rest as in (a).\n\
- (c) `pdns_recursor --config-dir=DIR` with `threads=1`, `auth-zones=allowed.example=DIR/allowed.zone` and `lua-config-file=DIR/recursor.lua` holding `rpzFile(\"court.rpz\", {{policyName=\"court\"}})`.\n\
- Update latency: `blocker rules add NAME --order latency` while a prober in the client namespace queries NAME; `blocker rules load new.txt --order reload` over the same order loaded from old.txt, with one prober on a name of each list.\n"
    ));
}

fn latency_markdown(s: &mut String, r: &Value) {
    let l = &r["update_latency"];
    if l.is_null() {
        return;
    }
    let a = &l["rules_add"];
    let re = &l["reload"];
    s.push_str(&format!(
        "\n### Update latency seen by a client\n\n| change | command wall time | first answer showing the change |\n|---|---|---|\n| `blocker rules add` (median of {} runs; max) | {:.1} ms | {:+.2} ms after the command returned ({:+.2} ms) |\n| `blocker rules load`: {} names replaced by {} others | {:.2} s | new list enforced {:.2} s after the start ({:+.0} ms after the return); old list lifted {:.2} s after the start |\n\nNegative: the change was visible before the command returned (the kernel map is flipped before the controller records its state and exits).\n",
        a["runs"], f(&a["command_ms_median"]), f(&a["visible_after_return_ms_median"]), f(&a["visible_after_return_ms_max"]),
        re["rules"], re["rules"], f(&re["command_seconds"]), f(&re["new_list_enforced_after_start_seconds"]), f(&re["new_list_enforced_after_return_ms"]), f(&re["old_list_lifted_after_start_seconds"])
    ));
}
