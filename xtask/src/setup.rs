//! `cargo xtask setup`: everything a fresh Debian 12 machine needs, installed only when
//! missing. See ../shared/TOOLCHAIN.md for why the eBPF toolchain is Debian's rustc-web with
//! rust-web-src and a bpf-linker built against Debian's LLVM 22.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Result};

use crate::util::{ok, run as output, step};

/// Debian packages and what they are for.
const PACKAGES: &[(&str, &str)] = &[
    (
        "rustc-web",
        "a rustc (1.96, LLVM 22) whose sysroot has the library source, to build `core` for BPF",
    ),
    ("cargo-web", "the matching cargo, used by the eBPF build"),
    ("rust-web-src", "the library source for -Z build-std=core"),
    ("llvm-22", "LLVM 22, linked into bpf-linker"),
    (
        "llvm-22-dev",
        "LLVM 22 headers and libraries to build bpf-linker",
    ),
    (
        "iproute2",
        "network namespaces and veth pairs in tests and the demo",
    ),
    ("ethtool", "checksum offload settings on test veths"),
    (
        "unbound",
        "the resolver behind blocker in tests and the demo",
    ),
    (
        "knot-dnsutils",
        "kdig, the DNS client of tests and the demo",
    ),
    (
        "pdns-recursor",
        "PowerDNS Recursor, the second resolver-side RPZ the benchmark compares with",
    ),
    (
        "prometheus",
        "Prometheus and promtool: tests scrape `blocker serve` with a real server and lint it",
    ),
    (
        "knot",
        "Knot DNS, the RPZ primary (AXFR/IXFR, NOTIFY, TSIG) of the fleet tests; setup stops and \
         disables the service the package starts (the tests run their own in namespaces)",
    ),
    ("dnsutils", "dig, a second DNS client"),
    (
        "bind9",
        "BIND, a resolver behind blocker in the test of names a resolver decompresses; setup \
         stops and disables the service the package starts",
    ),
    (
        "dnsmasq-base",
        "dnsmasq (no service), a forwarder behind blocker in the same test",
    ),
    (
        "man-db",
        "man, which the package test uses to find the installed pages",
    ),
    ("bpftool", "program and map inspection"),
    ("tshark", "looking at packets in tests"),
];

/// Packages whose installation may start a service on the host, and that service. setup
/// stops and disables it right after installing the package: tests and the benchmark run
/// their own instances (inside namespaces, or on a free loopback port), and a machine that had
/// the package before keeps its service as it was.
const SERVICES: &[(&str, &str)] = &[
    ("pdns-recursor", "pdns-recursor"),
    ("prometheus", "prometheus"),
    ("knot", "knot"),
    ("unbound", "unbound"),
    ("bind9", "named"),
];

/// The packages that building blocker-userspace needs (its build script compiles the eBPF
/// object it embeds): Debian's rust toolchain and library source, and the LLVM bpf-linker
/// is linked against (libLLVM.so.22 ships in llvm-22-dev).
const BUILD_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "llvm-22-dev"];

/// The bpf-linker version and LLVM feature that work with these toolchains.
const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_FEATURE: &str = "llvm-22";

/// The cargo-deb that builds the package (`cargo xtask package`); 3.8.0 builds with rust 1.85+.
const CARGO_DEB_VERSION: &str = "3.8.0";

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn cargo_bin() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("bin")
}

/// What `bpf-linker --version` prints (empty when it is missing or cannot run).
fn bpf_linker_version() -> String {
    Command::new(cargo_bin().join("bpf-linker"))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Installs the pinned cargo-deb into ~/.cargo/bin unless it is there already (no root
/// needed: `cargo xtask package` calls this too).
pub fn cargo_deb() -> Result<()> {
    let have = Command::new(cargo_bin().join("cargo-deb"))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if have.split_whitespace().any(|w| w == CARGO_DEB_VERSION) {
        println!("cargo-deb: {} present", have.trim());
        return Ok(());
    }
    println!("cargo-deb: installing {CARGO_DEB_VERSION}; about 60 s");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args([
            "install",
            "cargo-deb",
            "--version",
            CARGO_DEB_VERSION,
            "--locked",
            "--force",
        ])
        .status()?;
    if !st.success() {
        bail!("cargo install cargo-deb {CARGO_DEB_VERSION} failed ({st})");
    }
    Ok(())
}

/// Checks, without changing anything (no root needed), that blocker-userspace can be built:
/// the packages its build script uses to compile the eBPF object, and the pinned bpf-linker.
/// Fails naming what is missing.
pub fn check_build_tools() -> Result<()> {
    step("build tools (checked only: nothing is installed or mounted)");
    let mut missing: Vec<String> = BUILD_PACKAGES
        .iter()
        .filter(|p| !installed(p))
        .map(|p| {
            let why = PACKAGES
                .iter()
                .find(|(name, _)| name == p)
                .map(|(_, why)| *why)
                .unwrap_or("");
            format!("Debian package {p} ({why})")
        })
        .collect();
    if !bpf_linker_version().contains(BPF_LINKER_VERSION) {
        missing.push(format!(
            "bpf-linker {BPF_LINKER_VERSION} in {} (links the eBPF object)",
            cargo_bin().display()
        ));
    }
    if missing.is_empty() {
        println!(
            "build tools: {} and bpf-linker {BPF_LINKER_VERSION} present",
            BUILD_PACKAGES.join(", ")
        );
        return Ok(());
    }
    bail!(
        "the host tests build blocker-userspace, which embeds the eBPF object, and building it \
         needs what is missing here:\n  - {}\n--host-only installs nothing; run `cargo xtask \
         setup` as root once (it installs these), then run the host tests as any user",
        missing.join("\n  - ")
    )
}

/// Stops a service a package just started and keeps it from starting at boot, under systemd
/// or sysvinit (containers without systemd run the package's init script).
fn stop_service(name: &str) -> Result<()> {
    if std::path::Path::new("/run/systemd/system").exists() {
        output("systemctl", &["disable", "--now", name])?;
    } else if std::path::Path::new("/etc/init.d").join(name).exists() {
        output("service", &[name, "stop"])?;
        output("update-rc.d", &[name, "disable"])?;
        // The init script's status: 0 only while the daemon runs.
        if ok("service", &[name, "status"]) {
            bail!("still running after `service {name} stop`");
        }
    } else {
        // Neither systemd nor an init script: the package started nothing.
        return Ok(());
    }
    println!("service {name}: stopped and disabled (tests and the benchmark run their own)");
    Ok(())
}

pub fn run() -> Result<()> {
    step("setup");
    let mut problems: Vec<String> = Vec::new();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc_geteuid() } == 0;
    if !root {
        problems.push(
            "not running as root: packages cannot be installed and the integration tests will fail"
                .into(),
        );
    }

    // Debian packages.
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        println!("packages: all {} present", PACKAGES.len());
    } else if root {
        println!("packages: installing {}", missing.join(" "));
        let env = [("DEBIAN_FRONTEND", "noninteractive")];
        let update = Command::new("apt-get").arg("update").envs(env).status()?;
        if !update.success() {
            problems.push("apt-get update failed".into());
        }
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend(missing.iter());
        let st = Command::new("apt-get").args(&args).envs(env).status()?;
        if !st.success() {
            problems.push(format!("apt-get install {} failed", missing.join(" ")));
        }
        for (_, svc) in SERVICES.iter().filter(|(p, _)| missing.contains(p)) {
            if let Err(e) = stop_service(svc) {
                problems.push(format!("service {svc}: {e}"));
            }
        }
        for (p, why) in PACKAGES {
            if !installed(p) {
                problems.push(format!("package {p} is missing ({why})"));
            }
        }
    } else {
        problems.push(format!("packages missing: {}", missing.join(" ")));
    }

    // bpf-linker, pinned, built against LLVM 22.
    let have = bpf_linker_version();
    if have.contains(BPF_LINKER_VERSION) {
        println!("bpf-linker: {} present", have.trim());
    } else {
        println!("bpf-linker: installing {BPF_LINKER_VERSION} ({BPF_LINKER_FEATURE}); about 90 s");
        let path = format!(
            "/usr/lib/llvm-22/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--force",
                "--no-default-features",
                "--features",
                BPF_LINKER_FEATURE,
            ])
            .env("PATH", path)
            .status()?;
        if !st.success() {
            problems.push("cargo install bpf-linker failed".into());
        }
    }

    // cargo-deb, pinned.
    if let Err(e) = cargo_deb() {
        problems.push(format!("{e}"));
    }

    // The BPF filesystem.
    let bpffs = output("stat", &["-f", "-c", "%T", "/sys/fs/bpf"]).unwrap_or_default();
    if bpffs.trim() == "bpf_fs" {
        println!("bpffs: mounted on /sys/fs/bpf");
    } else if root && ok("mount", &["-t", "bpf", "bpf", "/sys/fs/bpf"]) {
        println!("bpffs: mounted it on /sys/fs/bpf");
    } else {
        problems.push(
            "the BPF filesystem is not mounted on /sys/fs/bpf and could not be mounted".into(),
        );
    }

    // Kernel: BTF and a version with bpf_xdp_load_bytes/store_bytes (5.18).
    if std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        println!("kernel BTF: present");
    } else {
        problems.push("/sys/kernel/btf/vmlinux missing: the kernel has no BTF".into());
    }
    let release = output("uname", &["-r"]).unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) >= (5, 18) {
        println!("kernel: {} (≥ 5.18)", release.trim());
    } else {
        problems.push(format!(
            "kernel {} is older than 5.18 (bpf_xdp_load_bytes)",
            release.trim()
        ));
    }

    if problems.is_empty() {
        println!("setup: ok");
        return Ok(());
    }
    println!("setup: could not fix:");
    for p in &problems {
        println!("  - {p}");
    }
    bail!("setup incomplete ({} problems)", problems.len())
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
