//! `cargo xtask bench` runs this: in-kernel cost per packet with BPF_PROG_TEST_RUN, side by
//! side with the no-op XDP program in the same object, at several rule counts; list load
//! time, kernel memory per rule and controller peak RSS through the real CLI; the matching
//! structures compared; end to end against resolver-side RPZ under a load generator
//! ([`e2e`]); and update latency seen by a client ([`latency`]).
//!
//! Usage: blocker-bench --help. The parts live in [`kernel`], [`structures`], [`e2e`] and
//! [`latency`]; [`markdown`] renders the results, [`summary`] judges the targets and writes
//! the README's summary, [`args`] parses the command line.

mod args;
mod e2e;
mod fleet;
mod generator;
mod kernel;
mod latency;
mod markdown;
mod structures;
mod summary;

use std::{path::PathBuf, process::Command};

use blocker_tests::env::{unique, Blocker};
use clap::Parser;
use serde_json::{json, Value};

use crate::args::Args;

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

/// The median of `v` (the upper one of an even count); None when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// A blocker instance of its own (bpffs and state directories), removed on drop.
pub fn instance(bin: &std::path::Path) -> Blocker {
    let id = unique("blkb");
    Blocker {
        bpffs: PathBuf::from("/sys/fs/bpf").join(&id),
        state: std::env::temp_dir().join(format!("{id}-state")),
        bin: bin.to_path_buf(),
    }
}

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

/// Writes the results so far: after each part, so that a part that fails (a generator the
/// kernel refuses, say) does not take the parts measured before it along (rerun the rest
/// with `--parts`).
fn save(path: &std::path::Path, all: &Value) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).ok();
    }
    std::fs::write(path, serde_json::to_string_pretty(all).expect("json")).expect("write json");
}

fn main() {
    let a = Args::parse();
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
        markdown::write_markdown(&a.markdown, &all);
        summary::write_readme(&a.readme, &all);
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
    // What was measured: the commit, and whether the tree had changes not in it.
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_none_or(|s| !s.is_empty());
    all["machine"]["commit"] = json!(commit);
    all["machine"]["dirty"] = json!(dirty);
    // At the top level too: what tools and readers look for first.
    all["commit"] = json!(commit);
    all["dirty"] = json!(dirty);
    all["parts_run"] = json!(a.parts);
    let date = all["machine"]["date"].clone();
    let kernel = all["machine"]["kernel"].clone();
    for p in &a.parts {
        all["part_dates"][p.as_str()] = date.clone();
        all["part_kernels"][p.as_str()] = kernel.clone();
        all["part_commits"][p.as_str()] =
            json!(format!("{commit}{}", if dirty { " (dirty)" } else { "" }));
    }
    if runs("kernel") {
        eprintln!("== in-kernel cost per packet and list loads");
        // BPF run-time statistics add two clock reads to every run of every program, the
        // no-op included: they would flatten every ratio. Off while measuring, then restored.
        let _stats_off = SysctlGuard::set("/proc/sys/kernel/bpf_stats_enabled", "0");
        let (results, loads, verified) = kernel::kernel_part(&a.blocker, &counts);
        all["in_kernel"] = json!(results);
        all["list_load"] = json!(loads);
        all["verified_instructions"] = json!(verified);
        save(&a.json, &all);
    }
    if runs("structures") {
        eprintln!("== matching structures");
        let structures: Vec<Value> = [100_000usize, 1_000_000]
            .iter()
            .map(|&n| {
                let v = structures::compare_structures(n);
                eprintln!("structures at {n}: {v}");
                v
            })
            .collect();
        all["structures"] = json!(structures);
        save(&a.json, &all);
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
        save(&a.json, &all);
    }
    if runs("latency") {
        eprintln!("== update latency");
        let inst = instance(&a.blocker);
        all["update_latency"] = latency::measure(&inst, if a.quick { 10 } else { 30 }, 1_000_000);
        save(&a.json, &all);
    }
    if runs("fleet") {
        eprintln!("== fleet: AXFR, IXFR and NOTIFY from Knot DNS to three edges");
        // The figures are for a zone of a million records and IXFRs of 1,000 changes
        // (the defaults of --fleet-records and --fleet-changes); --quick keeps that size (the
        // zone is what is measured) with fewer IXFR rounds.
        let plan = fleet::Plan {
            records: a.fleet_records,
            changes: a.fleet_changes,
            edges: 3,
            rounds: if a.quick { 2 } else { 5 },
        };
        eprintln!(
            "  {} records, {} names changed per IXFR, {} edges, {} IXFR rounds{}",
            plan.records,
            plan.changes,
            plan.edges,
            plan.rounds,
            if a.quick {
                " (--quick: the same zone, fewer rounds)"
            } else {
                ""
            }
        );
        all["fleet"] = fleet::measure(&a.blocker, &plan);
    }
    save(&a.json, &all);
    markdown::write_markdown(&a.markdown, &all);
    summary::write_readme(&a.readme, &all);
    eprintln!(
        "wrote {}, {} and {}'s summary",
        a.json.display(),
        a.markdown.display(),
        a.readme.display()
    );
}
