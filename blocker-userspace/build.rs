//! Builds the XDP program (blocker-ebpf) for the BPF target and leaves the object in OUT_DIR,
//! where src/object.rs embeds it.
//!
//! The eBPF target needs a nightly-capable rustc with the library source (Debian's rustc-web
//! and rust-web-src, used with RUSTC_BOOTSTRAP=1) and bpf-linker. When either is missing the
//! build stops with one line saying what is missing and how to get it.
use std::{env, path::PathBuf};

const SETUP: &str = "run `cargo xtask setup`";

fn fail(what: &str) -> ! {
    eprintln!("error: cannot build the XDP program: {what}; {SETUP}");
    std::process::exit(1);
}

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest.join("../blocker-ebpf");
    println!("cargo:rerun-if-changed=../blocker-common/src");
    println!("cargo:rerun-if-env-changed=BLOCKER_EBPF_TOOLCHAIN");

    // The toolchain that can build `core` for bpfel-unknown-none (see shared TOOLCHAIN notes).
    let toolchain = env::var("BLOCKER_EBPF_TOOLCHAIN").unwrap_or_else(|_| "/usr".to_string());
    let rustc = PathBuf::from(&toolchain).join("bin/rustc");
    if !rustc.exists() {
        fail(&format!(
            "{} not found (Debian package rustc-web)",
            rustc.display()
        ));
    }
    let src = PathBuf::from(&toolchain).join("lib/rustlib/src/rust/library/core");
    if !src.exists() {
        fail(&format!(
            "{} not found (Debian package rust-web-src)",
            src.display()
        ));
    }

    // bpf-linker is installed by `cargo install` into $CARGO_HOME/bin, which may not be on PATH
    // (for example under sudo).
    let cargo_bin = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|h| h.join("bin"));
    let mut path = env::var_os("PATH").unwrap_or_default();
    if let Some(bin) = &cargo_bin {
        let mut paths: Vec<PathBuf> = env::split_paths(&path).collect();
        paths.push(bin.clone());
        path = env::join_paths(paths)?;
    }
    match which::which_in("bpf-linker", Some(&path), &manifest) {
        Ok(linker) => println!("cargo:rerun-if-changed={}", linker.display()),
        Err(_) => fail("bpf-linker not found on PATH or in ~/.cargo/bin"),
    }

    // SAFETY (edition 2021: safe): build scripts are single-threaded here.
    env::set_var("PATH", &path);
    // Debian's rustc is a stable compiler; -Z build-std=core needs the bootstrap switch.
    env::set_var("RUSTC_BOOTSTRAP", "1");

    let ebpf_dir = ebpf_dir.canonicalize()?;
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path"))?;
    // This crate's features that change the XDP program too (cargo sets CARGO_FEATURE_<NAME>
    // for the build script of a crate built with <name>).
    let features: &[&str] = if env::var_os("CARGO_FEATURE_LAYOUT_TEST").is_some() {
        &["layout-test"]
    } else {
        &[]
    };
    let package = aya_build::Package {
        name: "blocker-ebpf",
        root_dir,
        features,
        ..Default::default()
    };
    if let Err(e) = aya_build::build_ebpf([package], aya_build::Toolchain::Custom(&toolchain)) {
        fail(&format!("building blocker-ebpf failed: {e:#}"));
    }
    Ok(())
}
