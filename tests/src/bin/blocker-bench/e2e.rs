//! End to end on a veth pair between two namespaces: the harness's generator ([`generator`])
//! in the client namespace offers a query mix at increasing rates to the edge namespace, where one of these answers:
//!
//! - blocker (native XDP on the edge veth) in front of unbound, which answers the allowed names;
//! - unbound alone with the same list as an RPZ zone (the `respip` module);
//! - PowerDNS Recursor with the same RPZ zone (when installed);
//! - unbound alone without any list, for the mixed and the allowed-only loads: what the
//!   resolver answers when nothing is blocked, so that no allowed query lost by a blocking
//!   setup goes unnoticed; and the same behind blocker's no-op XDP program, which shows what
//!   the veth driver's XDP path costs every packet (it copies each frame into a page of its
//!   own), blocker or not.
//!
//! The loads: the mixed one (30 % blocked), allowed names only (what blocker costs the
//! traffic it lets through), blocked names only (uniform: every query a cold entry) and
//! blocked names drawn from a Zipf distribution.
//!
//! Every setup answers the allowed names from its own local data (unbound `local-data`,
//! PowerDNS `auth-zones`): the benchmark measures blocking and answering, not recursion.
//!
//! **The generator** writes prebuilt frames from the client veth with `sendmmsg` on an
//! `AF_PACKET` socket, and an XDP program on that veth counts the replies by RCODE (see
//! [`generator`], which also says why kxdpgun, used before, is not).
//!
//! **CPU placement**: with two or more CPUs the generator and the client veth's NAPI thread run
//! on CPU 0 and the whole edge — the edge veth's NAPI thread (where XDP runs) and every
//! resolver thread — on CPU 1. Both veths use threaded NAPI, so the edge's packet processing is
//! a kernel thread whose CPU time can be read: edge CPU per answer = (edge NAPI thread +
//! resolver threads, from /proc/…/schedstat) / answers. It leaves out nothing the edge does
//! for a query (receive, XDP or socket, resolver, send) and adds nothing of the generator's.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use blocker_tests::env::{
    kdig, unique, Blocker, Topology, Unbound, UnboundOptions, CLIENT_V4, EDGE_V4,
};

use crate::generator;
use serde_json::{json, Value};

/// Names the resolvers answer (A records under allowed.example).
const ALLOWED: usize = 1000;
/// Lines in each query file (the generator cycles through it).
const QUERY_LINES: usize = 10_000;
/// Share of blocked names in the mixed load, in tenths.
const BLOCKED_TENTHS: usize = 3;

pub struct Plan {
    /// Names in the court order (each blocks the name and the names below it).
    pub rules: usize,
    /// Offered query rates; the last is "as fast as the generator can".
    pub rates: Vec<u64>,
    pub seconds: u32,
}

fn blocked_name(i: usize) -> String {
    format!("site{i}.piracy{}.example", i % 997)
}

fn allowed_name(i: usize) -> String {
    format!("ok{i}.allowed.example")
}

/// The court order as an RPZ zone: every name and everything below it (`name` and `*.name`),
/// the meaning blocker gives a plain list entry. The same file feeds every setup.
fn write_rpz(path: &Path, rules: usize) {
    let mut z = String::with_capacity(rules * 64);
    z.push_str("$ORIGIN rpz.local.\n$TTL 60\n@ SOA localhost. hostmaster.localhost. 1 3600 600 86400 60\n@ NS localhost.\n");
    for i in 0..rules {
        let n = blocked_name(i);
        z.push_str(&format!("{n} CNAME .\n*.{n} CNAME .\n"));
    }
    fs::write(path, z).expect("write RPZ zone");
}

/// Query files (`NAME TYPE` per line): `blocked_tenths` in ten lines ask for a blocked name (half of them
/// for a `www.` subdomain), the others for an allowed name.
fn write_queries(path: &Path, rules: usize, blocked_tenths: usize) {
    let mut q = String::new();
    for i in 0..QUERY_LINES {
        if i % 10 < blocked_tenths {
            let n = blocked_name((i * 7919) % rules);
            let www = if i % 2 == 1 { "www." } else { "" };
            q.push_str(&format!("{www}{n} A\n"));
        } else {
            q.push_str(&format!("{} A\n", allowed_name(i % ALLOWED)));
        }
    }
    fs::write(path, q).expect("write queries");
}

/// Blocked names only, drawn from a Zipf distribution (exponent 1) over the court order: a few
/// names take most queries, as real blocked traffic does (one pirated match, many viewers),
/// beside the uniform mix's worst case where every query meets a cold entry.
fn write_zipf_queries(path: &Path, rules: usize) {
    // Inverse of the cumulative distribution, by bisection over the harmonic sums.
    let mut cdf = Vec::with_capacity(rules);
    let mut acc = 0.0f64;
    for k in 1..=rules {
        acc += 1.0 / k as f64;
        cdf.push(acc);
    }
    // A fixed xorshift sequence: the same file on every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut q = String::new();
    for i in 0..QUERY_LINES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let u = (x >> 11) as f64 / (1u64 << 53) as f64 * acc;
        let rank = cdf.partition_point(|c| *c < u).min(rules - 1);
        // Spread the popular ranks over the order's names.
        let n = blocked_name((rank * 7919) % rules);
        let www = if i % 2 == 1 { "www." } else { "" };
        q.push_str(&format!("{www}{n} A\n"));
    }
    fs::write(path, q).expect("write queries");
}

fn local_data() -> Vec<String> {
    let mut v = vec!["local-zone: \"allowed.example.\" static".to_string()];
    v.extend(
        (0..ALLOWED).map(|i| format!("{}. 300 IN A 198.51.100.{}", allowed_name(i), i % 250 + 1)),
    );
    v
}

/// PowerDNS Recursor in the edge namespace: allowed names from an auth zone, the list as RPZ.
struct Pdns {
    child: Child,
    dir: PathBuf,
}

impl Pdns {
    fn available() -> bool {
        Command::new("pdns_recursor")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    }

    fn start(topo: &Topology, rpz: &Path) -> Pdns {
        let dir = std::env::temp_dir().join(unique("blkb-pdns"));
        fs::create_dir_all(&dir).expect("pdns dir");
        let mut zone = String::from("$ORIGIN allowed.example.\n$TTL 300\n@ SOA localhost. hostmaster.localhost. 1 3600 600 86400 60\n@ NS localhost.\n");
        for i in 0..ALLOWED {
            zone.push_str(&format!("ok{i} A 198.51.100.{}\n", i % 250 + 1));
        }
        fs::write(dir.join("allowed.zone"), zone).expect("write zone");
        fs::write(
            dir.join("recursor.lua"),
            format!("rpzFile(\"{}\", {{policyName=\"court\"}})\n", rpz.display()),
        )
        .expect("write lua");
        fs::write(
            dir.join("recursor.conf"),
            format!(
                "local-address={EDGE_V4}\nlocal-port=53\nthreads=1\nallow-from=0.0.0.0/0\nauth-zones=allowed.example={d}/allowed.zone\nlua-config-file={d}/recursor.lua\ndaemon=no\nsocket-dir={d}\nquiet=yes\nloglevel=3\n",
                d = dir.display()
            ),
        )
        .expect("write recursor.conf");
        let child = Command::new("ip")
            .args(["netns", "exec", &topo.edge.name, "pdns_recursor"])
            .arg(format!("--config-dir={}", dir.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pdns_recursor");
        Pdns { child, dir }
    }
}

impl Drop for Pdns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Waits until the edge answers a blocked name with NXDOMAIN (list loaded) and an allowed
/// name with an address.
fn wait_ready(topo: &Topology, what: &str) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(120) {
        let b = kdig(
            &topo.client,
            EDGE_V4,
            &blocked_name(0),
            "A",
            &["+retry=0", "+timeout=1"],
        );
        let a = kdig(
            &topo.client,
            EDGE_V4,
            &allowed_name(1),
            "A",
            &["+retry=0", "+timeout=1"],
        );
        if b.status.as_deref() == Some("NXDOMAIN") && !a.answers.is_empty() {
            return;
        }
        sleep(Duration::from_millis(200));
    }
    panic!("{what} did not come up within 120 s");
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The NAPI kernel thread of a threaded veth (`napi/<dev>-<id>`, cut to 15 bytes).
fn napi_thread(dev: &str) -> Option<u32> {
    let prefix: String = format!("napi/{dev}-").chars().take(15).collect();
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = fs::read_to_string(e.path().join("comm")).ok()?;
        comm.trim_end().starts_with(&prefix).then_some(pid)
    })
}

fn pin(pid: u32, cpu: usize) {
    if cpus() >= 2 {
        let _ = Command::new("taskset")
            .args(["-apc", &cpu.to_string(), &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// CPU time of every thread of `pid`, in ns.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Threaded NAPI on both veth ends (GRO on, so a NAPI instance exists without XDP too).
fn threaded_napi(topo: &Topology) {
    for (ns, dev) in [
        (&topo.client, &topo.client_dev),
        (&topo.edge, &topo.edge_dev),
    ] {
        ns.must("ethtool", &["-K", dev, "gro", "on"]);
        ns.must(
            "sh",
            &["-c", &format!("echo 1 > /sys/class/net/{dev}/threaded")],
        );
    }
}

/// One run of `frames` at `qps` against the edge; the resolver is `resolver` (pid).
fn run(
    topo: &Topology,
    sink: &aya::Ebpf,
    frames: &[Vec<u8>],
    qps: u64,
    seconds: u32,
    resolver: u32,
    xdp: Option<&aya::programs::Xdp>,
) -> Value {
    let edge_napi = napi_thread(&topo.edge_dev);
    if let Some(p) = edge_napi {
        pin(p, 1);
    }
    if let Some(p) = napi_thread(&topo.client_dev) {
        pin(p, 0);
    }
    pin(resolver, 1);
    let edge_cpu = || edge_napi.map(cpu_ns).unwrap_or(0) + cpu_ns(resolver);
    let prog = || {
        xdp.and_then(|p| p.info().ok())
            .map(|i| (i.run_time().as_nanos() as u64, i.run_count()))
            .unwrap_or((0, 0))
    };
    let (cpu0, (rt0, rc0), r0) = (edge_cpu(), prog(), generator::replies(sink));
    let sent = generator::send(&topo.client.name, &topo.client_dev, frames, qps, seconds);
    // The replies still on their way.
    sleep(Duration::from_millis(50));
    let (cpu1, (rt1, rc1), r1) = (edge_cpu(), prog(), generator::replies(sink));
    let got = |i: usize| r1[i].saturating_sub(r0[i]);
    let rcodes: u64 = (0..16).map(got).sum();
    let returned = got(16);
    let replies = rcodes + returned;
    // Offered: every frame written, whether the edge's queue took it or refused it (lost).
    let offered = sent.taken + sent.refused;
    assert!(sent.taken > 0, "the generator sent nothing");
    let s = seconds as f64;
    let edge_ns = cpu1.saturating_sub(cpu0);
    let v = json!({
        "offered_qps": qps,
        "sent_per_second": offered as f64 / s,
        "refused_per_second": sent.refused as f64 / s,
        "answered_per_second": replies as f64 / s,
        "blocked_answered_per_second": got(3) as f64 / s,
        "allowed_answered_per_second": got(0) as f64 / s,
        "queries_returned_per_second": returned as f64 / s,
        "loss": 1.0 - replies as f64 / offered as f64,
        "edge_cpu_seconds": edge_ns as f64 / 1e9,
        "edge_cpu_ns_per_answer": if replies > 0 { edge_ns as f64 / replies as f64 } else { 0.0 },
        // Per packet the XDP program saw.
        "edge_cpu_ns_per_packet": if rc1 > rc0 { Some(edge_ns as f64 / (rc1 - rc0) as f64) } else { None },
        "xdp_program_ns_per_packet": if rc1 > rc0 { Some((rt1 - rt0) as f64 / (rc1 - rc0) as f64) } else { None },
        "edge_napi_thread_found": edge_napi.is_some(),
    });
    eprintln!(
        "    offered {:>8.0}/s  answered {:>8.0}/s  blocked {:>8.0}/s  allowed {:>8.0}/s  loss {:>5.1} %  edge CPU {:>6.0} ns/answer  XDP {:>5.0} ns/packet",
        v["sent_per_second"].as_f64().unwrap_or(0.0),
        v["answered_per_second"].as_f64().unwrap_or(0.0),
        v["blocked_answered_per_second"].as_f64().unwrap_or(0.0),
        v["allowed_answered_per_second"].as_f64().unwrap_or(0.0),
        100.0 * v["loss"].as_f64().unwrap_or(0.0),
        v["edge_cpu_ns_per_answer"].as_f64().unwrap_or(0.0),
        v["xdp_program_ns_per_packet"].as_f64().unwrap_or(0.0),
    );
    v
}

/// Attaches `prog` (native mode) to `dev` in the namespace `netns`, from a thread moved there
/// (`ip netns exec` would hide the bpffs a pin lives in; setns changes only the calling
/// thread's namespace).
fn attach_in(
    netns: &str,
    dev: &str,
    prog: &mut aya::programs::Xdp,
) -> aya::programs::xdp::XdpLinkId {
    std::thread::scope(|sc| {
        sc.spawn(|| {
            generator::enter(netns);
            prog.attach(dev, aya::programs::XdpMode::Driver)
                .expect("attach a reference program")
        })
        .join()
        .expect("attach thread")
    })
}

/// Runs the plan; `blocker` is an unattached instance with its own bpffs and state dirs.
pub fn measure(plan: &Plan, blocker: &Blocker) -> Value {
    let tmp = blocker_tests::env::TempDir::new("blkb-e2e");
    let rpz = tmp.join("court.rpz");
    write_rpz(&rpz, plan.rules);
    // In this order: the references without blocking take the first two (what a resolver's
    // allowed traffic costs with and without XDP in front), the reflector the third.
    let mixes = [
        ("mixed", tmp.join("mixed.txt"), BLOCKED_TENTHS),
        ("allowed only", tmp.join("allowed.txt"), 0),
        ("blocked only", tmp.join("blocked.txt"), 10),
        ("blocked only, Zipf", tmp.join("zipf.txt"), 10),
    ];
    for (_, path, tenths) in &mixes[..3] {
        write_queries(path, plan.rules, *tenths);
    }
    write_zipf_queries(&mixes[3].1, plan.rules);
    let local: Vec<String> = local_data();
    let local: Vec<&str> = local.iter().map(String::as_str).collect();

    let mut topo = Topology::new();
    threaded_napi(&topo);
    // The generator's receiver, on the client veth for the whole part (see `gen`).
    let mut sink = blocker::kernel::load_reference(&blocker.bpffs.join("ref-sink"), "blocker_sink")
        .expect("the sink program");
    let _sink_link = attach_in(
        &topo.client.name,
        &topo.client_dev,
        blocker::kernel::program_mut(&mut sink, "blocker_sink").expect("the sink program"),
    );
    let wire = generator::Wire {
        src_mac: generator::mac(&topo.client.name, &topo.client_dev),
        dst_mac: generator::mac(&topo.edge.name, &topo.edge_dev),
        src: CLIENT_V4.parse().expect("an IPv4 address"),
        dst: EDGE_V4.parse().expect("an IPv4 address"),
    };
    // Statistics of BPF programs' run time, while this fd is open.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
    let mut setups = Vec::new();
    let sweep = |topo: &Topology,
                 name: &str,
                 mixes: &[(&str, PathBuf, usize)],
                 resolver: u32,
                 xdp: Option<&aya::programs::Xdp>|
     -> Value {
        let mut per_mix = serde_json::Map::new();
        for (mix, path, _) in mixes {
            eprintln!("  {name}, {mix}:");
            let frames = generator::frames(&wire, path);
            // One unrecorded second at the lowest rate first: the first packets after a
            // setup change meet cold caches, first-hit counter inserts and resolver warm-up.
            eprintln!("    warm-up (not recorded):");
            let _ = run(topo, &sink, &frames, plan.rates[0], 1, resolver, xdp);
            let runs: Vec<Value> = plan
                .rates
                .iter()
                .map(|&q| run(topo, &sink, &frames, q, plan.seconds, resolver, xdp))
                .collect();
            per_mix.insert(mix.to_string(), Value::Array(runs));
        }
        json!({"setup": name, "mixes": per_mix})
    };

    // (a) blocker in front of unbound.
    topo.unbound = Some(Unbound::start(&topo.edge, &local));
    blocker.ok(&[
        "attach",
        "--iface",
        &topo.edge_dev,
        "--netns",
        &topo.edge.name,
        "--mode",
        "native",
    ]);
    // The generator sends from one address: blocker's full answer rate is measured with the
    // response rate limit off.
    blocker.rrl_off();
    let t = Instant::now();
    blocker.ok(&[
        "rules",
        "load",
        &rpz.display().to_string(),
        "--format",
        "rpz",
        "--order",
        "bench-e2e",
        "--ede-text",
        "Benchmark order 1/2026",
    ]);
    let load_s = t.elapsed().as_secs_f64();
    wait_ready(&topo, "blocker + unbound");
    let prog = blocker::kernel::pinned_program(&blocker.pins(), false).expect("pinned program");
    let unbound_pid = topo.unbound.as_ref().map(Unbound::pid).expect("unbound");
    let mut a = sweep(
        &topo,
        "blocker (XDP) + unbound",
        &mixes,
        unbound_pid,
        Some(&prog),
    );
    a["load_seconds"] = json!(load_s);
    setups.push(a);
    // An A/B of two builds on the real path (BENCHMARKS.md says when it was used): blocker's
    // own setup only, the references left out, so runs of two builds can alternate quickly.
    if std::env::var_os("BLOCKER_BENCH_E2E_BLOCKER_ONLY").is_some() {
        blocker.ok(&["detach"]);
        return json!({"rules": plan.rules, "seconds_per_run": plan.seconds, "setups": setups});
    }
    // The same with the key filter off: what the filter saves on a real receive path.
    setups.push(crate::with_filter_off(&blocker.pins(), || {
        sweep(
            &topo,
            "blocker (XDP, key filter off) + unbound",
            &mixes[..1],
            unbound_pid,
            Some(&prog),
        )
    }));
    blocker.ok(&["detach"]);
    drop(prog);

    // The reflector (`blocker_reflect`: addresses and ports swapped, XDP_TX, nothing else):
    // the least any XDP answerer costs on this path.
    {
        let dir = blocker.bpffs.join("ref-reflect");
        let mut obj = blocker::kernel::load_reference(&dir, "blocker_reflect").expect("reflector");
        let prog = blocker::kernel::program_mut(&mut obj, "blocker_reflect").expect("reflector");
        let link = attach_in(&topo.edge.name, &topo.edge_dev, prog);
        setups.push(sweep(
            &topo,
            "XDP reflector (reference)",
            &mixes[2..3],
            unbound_pid,
            Some(&*prog),
        ));
        prog.detach(link).expect("detach the reflector");
    }

    // References, the mixed and the allowed-only loads: unbound without any list, and the
    // same behind blocker's no-op XDP program — what a veth costs every packet once XDP runs
    // on it, blocker or not.
    setups.push(sweep(
        &topo,
        "unbound, no blocking (reference)",
        &mixes[..2],
        unbound_pid,
        None,
    ));
    blocker.ok(&[
        "attach",
        "--iface",
        &topo.edge_dev,
        "--netns",
        &topo.edge.name,
        "--mode",
        "native",
        "--noop",
    ]);
    setups.push(sweep(
        &topo,
        "unbound behind a no-op XDP program (reference)",
        &mixes[..2],
        unbound_pid,
        None,
    ));
    blocker.ok(&["detach"]);
    topo.unbound = None;

    // (b) unbound with the list as RPZ.
    let t = Instant::now();
    topo.unbound = Some(Unbound::start_with(
        &topo.edge,
        &local,
        &UnboundOptions {
            rpz: Some(&rpz),
            threads: 1,
        },
    ));
    wait_ready(&topo, "unbound + RPZ");
    let load_s = t.elapsed().as_secs_f64();
    let pid = topo.unbound.as_ref().map(Unbound::pid).expect("unbound");
    let mut b = sweep(&topo, "unbound + RPZ", &mixes, pid, None);
    b["load_seconds"] = json!(load_s);
    setups.push(b);
    topo.unbound = None;

    // (c) PowerDNS Recursor with the list as RPZ.
    if Pdns::available() {
        let t = Instant::now();
        let pdns = Pdns::start(&topo, &rpz);
        wait_ready(&topo, "PowerDNS Recursor + RPZ");
        let load_s = t.elapsed().as_secs_f64();
        let mut c = sweep(
            &topo,
            "PowerDNS Recursor + RPZ",
            &mixes,
            pdns.child.id(),
            None,
        );
        c["load_seconds"] = json!(load_s);
        setups.push(c);
    } else {
        eprintln!("  pdns_recursor not installed: skipped (cargo xtask setup installs it)");
    }
    json!({
        "rules": plan.rules,
        "allowed_names": ALLOWED,
        "blocked_share_of_mixed": BLOCKED_TENTHS as f64 / 10.0,
        "seconds_per_run": plan.seconds,
        "generator": "blocker-bench's own: sendmmsg on an AF_PACKET socket (qdisc bypassed) on the client veth, pinned to CPU 0; replies counted by RCODE and dropped by an XDP program on the client veth (blocker_sink)",
        "edge_cpu": if cpus() >= 2 { "CPU 1: edge veth NAPI thread and all resolver threads" } else { "one CPU shared with the generator" },
        "resolver_threads": 1,
        "setups": setups,
    })
}
