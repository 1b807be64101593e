//! Project orchestration: `cargo xtask setup | test | demo | fuzz | bench | package`.
//!
//! Everything a fresh machine needs is installed by `setup`, idempotently; `test` and `demo`
//! run it first.

mod demo;
mod package;
mod setup;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "blocker's project commands")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building, testing and packaging need (Debian packages, bpf-linker,
    /// cargo-deb), mount bpffs, check the kernel. Idempotent.
    Setup,
    /// Set up, then run every test: host unit tests and the root-only integration tests
    /// (with --host-only: no setup, only the host unit tests).
    Test {
        /// Only the host unit tests: runs nothing as root (no packages installed, no bpffs
        /// mounted) and no kernel test; fails if the tools building the eBPF object are missing.
        #[arg(long)]
        host_only: bool,
        /// Extra arguments for the integration test binary (e.g. a test name filter).
        #[arg(last = true)]
        rest: Vec<String>,
    },
    /// Set up, build, and show blocker answering real queries on a throwaway veth pair.
    Demo,
    /// Differential fuzzing of the real program (ten million frames by default), then
    /// libFuzzer (cargo fuzz) on the shared DNS code for a minute.
    Fuzz {
        /// Number of frames.
        #[arg(long, default_value_t = 10_000_000)]
        frames: u64,
        /// Seed of the generator.
        #[arg(long, default_value_t = 0x5eed_b10c)]
        seed: u64,
    },
    /// Measure: in-kernel cost per packet against reference programs, list loads and kernel
    /// memory per rule, blocker against resolver-side RPZ on a veth path, update latency, a
    /// fleet following Knot DNS. Writes bench/results.json, the results section of
    /// BENCHMARKS.md and the README's summary (figures and targets judged from the run).
    Bench {
        /// Stop at 1 million rules, shorter end-to-end runs (about 10 minutes on 2 vCPUs).
        #[arg(long)]
        quick: bool,
        /// Only these parts (comma-separated: kernel, structures, e2e, latency, fleet); the
        /// others keep their last results.
        #[arg(long)]
        parts: Option<String>,
        /// Measure nothing: rewrite the results section of BENCHMARKS.md and the README's
        /// summary from bench/results.json.
        #[arg(long, conflicts_with_all = ["quick", "parts"])]
        render: bool,
    },
    /// Build the Debian package (target/debian/blocker_VERSION_ARCH.deb): the release binary,
    /// systemd units, man pages, shell completions, Grafana dashboard and alert rules.
    Package,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup => setup::run(),
        Cmd::Test { host_only, rest } => test(host_only, &rest),
        Cmd::Demo => {
            setup::run()?;
            demo::run()
        }
        Cmd::Fuzz { frames, seed } => {
            setup::run()?;
            util::step("build the blocker binary the fuzzer drives");
            util::cargo(&["build", "--locked", "-p", "blocker-userspace"])?;
            util::step(&format!(
                "differential fuzzing: {frames} frames, seed {seed}"
            ));
            std::env::set_var("BLOCKER_FUZZ_N", frames.to_string());
            std::env::set_var("BLOCKER_FUZZ_SEED", seed.to_string());
            util::cargo(&[
                "test",
                "--locked",
                "-p",
                "blocker-tests",
                "--test",
                "fuzz",
                "--",
                "--nocapture",
            ])?;
            util::step("libFuzzer on the shared parser, encoder and answer builder (60 s)");
            if !util::ok("cargo", &["fuzz", "--version"]) {
                util::cargo(&["install", "cargo-fuzz", "--locked"])?;
            }
            let st = std::process::Command::new(
                std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
            )
            .args([
                "fuzz",
                "run",
                "query",
                "-s",
                "none",
                "--",
                "-max_total_time=60",
            ])
            .current_dir(util::root().join("fuzz"))
            .status()?;
            anyhow::ensure!(
                st.success(),
                "cargo fuzz found a failure ({st}); see fuzz/artifacts"
            );
            Ok(())
        }
        Cmd::Package => package::run().map(|_| ()),
        Cmd::Bench {
            quick,
            parts,
            render,
        } => {
            setup::run()?;
            util::step("build (release)");
            util::cargo(&[
                "build",
                "--release",
                "--locked",
                "-p",
                "blocker-userspace",
                "-p",
                "blocker-tests",
                "--bins",
            ])?;
            let root = util::root();
            let bench = root.join("target/release/blocker-bench");
            let blocker = root.join("target/release/blocker");
            let mut args = vec![
                "--blocker".to_string(),
                blocker.display().to_string(),
                "--json".to_string(),
                root.join("bench/results.json").display().to_string(),
                "--markdown".to_string(),
                root.join("BENCHMARKS.md").display().to_string(),
                "--readme".to_string(),
                root.join("README.md").display().to_string(),
            ];
            if render {
                util::step("render BENCHMARKS.md and the README's summary from bench/results.json");
                args.push("--render".into());
            } else {
                util::step("measure");
            }
            if quick {
                args.push("--quick".into());
            }
            if let Some(p) = parts {
                args.extend(["--parts".to_string(), p]);
            }
            let st = std::process::Command::new(&bench).args(&args).status()?;
            anyhow::ensure!(st.success(), "blocker-bench failed ({st})");
            Ok(())
        }
    }
}

fn test(host_only: bool, rest: &[String]) -> Result<()> {
    if host_only {
        setup::check_build_tools()?;
    } else {
        setup::run()?;
    }
    util::step("host unit tests");
    let (mut passed, mut failed) = util::cargo_test(&[
        "test",
        "--locked",
        "-p",
        "blocker-common",
        "-p",
        "blocker-lists",
        "-p",
        "blocker-userspace",
        "-p",
        "xtask",
    ])?;
    if !host_only {
        util::step("build the blocker binary the integration tests drive");
        util::cargo(&["build", "--locked", "-p", "blocker-userspace"])?;
        util::step("integration tests (root: BPF_PROG_TEST_RUN and network namespaces)");
        let mut args = vec![
            "test",
            "--locked",
            "-p",
            "blocker-tests",
            "--",
            "--test-threads=1",
        ];
        args.extend(rest.iter().map(String::as_str));
        let (p, f) = util::cargo_test(&args)?;
        passed += p;
        failed += f;
    }
    println!();
    println!("tests: {passed} passed, {failed} failed");
    Ok(())
}
