//! `cargo xtask package`: the Debian package (cargo-deb), with the man pages and shell
//! completions generated from the CLI's clap definition at package time.
//!
//! What goes where is declared once, in blocker-userspace/Cargo.toml
//! (`[package.metadata.deb]`); this only produces the generated files first.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::{setup, util};

/// Where package-assets writes the man pages and completions (cargo-deb's assets name this
/// directory, relative to blocker-userspace: `../target/package-assets`).
pub fn assets_dir() -> PathBuf {
    util::root().join("target/package-assets")
}

/// Builds the package and returns the path of the `.deb`.
pub fn run() -> Result<PathBuf> {
    setup::check_build_tools()?;
    setup::cargo_deb()?;

    util::step("man pages and shell completions from the clap definition");
    let dir = assets_dir();
    let dir_s = dir.display().to_string();
    util::cargo(&[
        "run",
        "--quiet",
        "--locked",
        "-p",
        "xtask",
        "--features",
        "package",
        "--bin",
        "package-assets",
        "--",
        &dir_s,
    ])?;

    util::step("cargo deb (release build)");
    let out_dir = util::root().join("target/debian");
    let out_s = out_dir.display().to_string();
    let printed = util::run_in_root(
        &std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
        &[
            "deb",
            "--locked",
            "-p",
            "blocker-userspace",
            "--output",
            &out_s,
        ],
    )?;
    // cargo-deb prints the path of the package it wrote as its last line.
    let deb = printed
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .context("cargo deb did not print the path of a .deb")?;
    anyhow::ensure!(deb.exists(), "{} was not written", deb.display());
    println!("package: {}", deb.display());
    Ok(deb)
}
