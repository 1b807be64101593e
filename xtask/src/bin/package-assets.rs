//! `package-assets DIR`: the man pages (`DIR/man/blocker.1`, `blocker-VERB.1`, …, gzipped)
//! and the bash, zsh and fish completions (`DIR/completions/`) of `blocker`, generated from
//! its clap definition (`blocker::cli::Cli`), so they say exactly what `blocker --help`
//! says. `cargo xtask package` runs it; cargo-deb's assets (blocker-userspace/Cargo.toml)
//! take the files from there.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        bail!("usage: package-assets DIR");
    };
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        // Start empty: a page of a verb that no longer exists must not be packaged.
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
        }
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }

    let cmd = blocker::cli::Cli::command();
    // One page per command and subcommand, named after its path (blocker-rules-add.1).
    clap_mangen::generate_to(cmd.clone(), &man).context("writing man pages")?;
    gzip_all(&man)?;

    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = cmd.clone();
        clap_complete::generate_to(shell, &mut cmd, "blocker", &completions)
            .with_context(|| format!("writing the {shell} completion"))?;
    }
    println!("package assets in {}", dir.display());
    Ok(())
}

/// Compresses every page with `gzip -9n` (Debian policy: maximum compression, no name or
/// time stamp in the header, so the package is reproducible).
fn gzip_all(dir: &Path) -> Result<()> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    pages.sort();
    let st = Command::new("gzip")
        .arg("-9nf")
        .args(&pages)
        .status()
        .context("running gzip")?;
    anyhow::ensure!(st.success(), "gzip failed ({st})");
    Ok(())
}
