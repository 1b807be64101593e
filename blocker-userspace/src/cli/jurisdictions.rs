//! `blocker jurisdictions`: named sets of client prefixes that orders are scoped to.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Result};
use serde::Serialize;

use super::{time_str, Ctx};
use crate::{
    compliance::{self, Audit, FileHash, Record},
    juris::{self, Prefix},
    state::{now, Jurisdiction},
    txn::{Controller, OrderChange},
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a jurisdiction or replace its prefixes, atomically (orders scoped to it apply
    /// to the new prefixes from the same instant).
    Set(SetArgs),
    /// List jurisdictions with their prefix counts and the orders scoped to them.
    List(ListArgs),
    /// Remove a jurisdiction (refused while an order is scoped to it).
    Remove(RemoveArgs),
}

#[derive(clap::Args, Debug)]
pub struct SetArgs {
    /// The jurisdiction's name (e.g. IT, BE, "EU-court-X").
    pub name: String,
    /// A client prefix (CIDR, IPv4 or IPv6; repeatable).
    #[arg(long = "prefix", value_name = "CIDR")]
    pub prefixes: Vec<String>,
    /// A file of prefixes: one CIDR per line, `#` comments (repeatable).
    #[arg(long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// An RIR delegated-stats file (`registry|cc|type|start|value|date|status`, as every RIR
    /// publishes at ftp.ripe.net/pub/stats/…/delegated-*-extended-latest): the allocated and
    /// assigned IPv4 and IPv6 ranges of `--country` (repeatable).
    #[arg(long = "rir", value_name = "FILE", requires = "country")]
    pub rir: Vec<PathBuf>,
    /// The country of `--rir` (ISO 3166 two letters).
    #[arg(long, value_name = "CC")]
    pub country: Option<String>,
    #[command(flatten)]
    pub audit: Audit,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Machine-readable output (with every prefix).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    pub name: String,
    #[command(flatten)]
    pub audit: Audit,
}

pub fn run(ctx: &Ctx, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Set(a) => set(ctx, a),
        Command::List(a) => list(ctx, a),
        Command::Remove(a) => remove(ctx, a),
    }
}

/// A jurisdiction name: printable, no separators that would make `--jurisdiction` lists or
/// reports ambiguous.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == ',')
    {
        bail!("jurisdiction {name:?}: a name is 1 to 64 printable characters, no spaces or commas");
    }
    Ok(())
}

fn set(ctx: &Ctx, a: SetArgs) -> Result<ExitCode> {
    let started = jiff::Timestamp::now();
    check_name(&a.name)?;
    // Everything is read and checked before anything is changed.
    let mut prefixes: Vec<Prefix> = Vec::new();
    let mut sources: Vec<String> = Vec::new();
    // The hash of each file for the compliance record: of the bytes parsed, read once.
    let mut hashes = Vec::new();
    let mut read = |f: &std::path::Path| -> Result<String> {
        let bytes = juris::read_bytes(f)?;
        hashes.push(FileHash {
            path: f.display().to_string(),
            sha256: compliance::sha256_hex(&bytes),
        });
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    for p in &a.prefixes {
        prefixes.push(Prefix::parse(p).map_err(|e| anyhow::anyhow!("--prefix {e}"))?);
    }
    if !a.prefixes.is_empty() {
        sources.push("cli".into());
    }
    for f in &a.files {
        let text = read(f)?;
        prefixes.extend(juris::parse_prefix_text(&f.display().to_string(), &text)?);
        sources.push(f.display().to_string());
    }
    if let Some(cc) = &a.country {
        if a.rir.is_empty() {
            bail!("--country needs --rir FILE");
        }
        for f in &a.rir {
            let text = read(f)?;
            prefixes.extend(juris::parse_rir_text(&f.display().to_string(), &text, cc)?);
            sources.push(format!("{} ({cc})", f.display()));
        }
    }
    if prefixes.is_empty() {
        bail!(
            "jurisdiction {:?}: no prefixes given (--prefix, --file or --rir with --country); \
             nothing was changed",
            a.name
        );
    }
    let prefixes = juris::normalize(prefixes);
    let mut c = Controller::open(&ctx.pins, &ctx.dir)?;
    let mut js = c.state.jurisdictions.clone();
    let id = match js.iter().find(|j| j.name == a.name) {
        Some(j) => j.id,
        None => match c.state.free_jurisdiction_id() {
            Some(id) => id,
            None => bail!(
                "all {} jurisdictions are in use; remove one first",
                blocker_common::MAX_JURISDICTIONS
            ),
        },
    };
    js.retain(|j| j.name != a.name);
    let n = prefixes.len();
    js.push(Jurisdiction {
        id,
        name: a.name.clone(),
        prefixes,
        sources,
        updated: now(),
    });
    js.sort_by_key(|j| j.id);
    let total: usize = js.iter().map(|j| j.prefixes.len()).sum();
    if total > blocker_common::JURIS_PREFIXES as usize {
        bail!(
            "jurisdictions would hold {total} prefixes; the data plane holds at most {}",
            blocker_common::JURIS_PREFIXES
        );
    }
    let s = c.apply(vec![OrderChange::Jurisdictions(js)])?;
    let mut rec = Record::new("jurisdictions set", started, None, Some(&s), &a.audit);
    rec.name = Some(a.name.clone());
    rec.files = hashes;
    compliance::append(&ctx.dir, &rec)?;
    println!(
        "jurisdiction {:?}: {n} prefixes (after merging), generation {}",
        a.name, s.generation
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Listed {
    id: u8,
    name: String,
    prefixes: usize,
    v4: usize,
    v6: usize,
    orders: Vec<String>,
    sources: Vec<String>,
    updated: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    list: Option<Vec<String>>,
}

fn list(ctx: &Ctx, a: ListArgs) -> Result<ExitCode> {
    let state = ctx.state()?;
    let out: Vec<Listed> = state
        .jurisdictions
        .iter()
        .map(|j| Listed {
            id: j.id,
            name: j.name.clone(),
            prefixes: j.prefixes.len(),
            v4: j.prefixes.iter().filter(|p| p.is_v4()).count(),
            v6: j.prefixes.iter().filter(|p| !p.is_v4()).count(),
            orders: state
                .orders
                .iter()
                .filter(|o| o.jurisdictions.contains(&j.name))
                .map(|o| o.name.clone())
                .collect(),
            sources: j.sources.clone(),
            updated: time_str(j.updated),
            list: a
                .json
                .then(|| j.prefixes.iter().map(ToString::to_string).collect()),
        })
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:<20} ORDERS",
        "JURISDICTION", "PREFIXES", "IPV4", "IPV6", "UPDATED"
    );
    for j in &out {
        println!(
            "{:<16} {:>9} {:>9} {:>9} {:<20} {}",
            j.name,
            j.prefixes,
            j.v4,
            j.v6,
            j.updated,
            j.orders.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(ctx: &Ctx, a: RemoveArgs) -> Result<ExitCode> {
    let started = jiff::Timestamp::now();
    let mut c = Controller::open(&ctx.pins, &ctx.dir)?;
    if c.state.jurisdiction(&a.name).is_none() {
        bail!(
            "no jurisdiction named {:?} (see `blocker jurisdictions list`)",
            a.name
        );
    }
    let users: Vec<&str> = c
        .state
        .orders
        .iter()
        .filter(|o| o.jurisdictions.contains(&a.name))
        .map(|o| o.name.as_str())
        .collect();
    if !users.is_empty() {
        bail!(
            "jurisdiction {:?} is used by order(s) {} (`blocker orders set ORDER --everywhere` \
             or another --jurisdiction first); nothing was changed",
            a.name,
            users.join(", ")
        );
    }
    let mut js = c.state.jurisdictions.clone();
    js.retain(|j| j.name != a.name);
    let s = c.apply(vec![OrderChange::Jurisdictions(js)])?;
    let mut rec = Record::new("jurisdictions remove", started, None, Some(&s), &a.audit);
    rec.name = Some(a.name.clone());
    compliance::append(&ctx.dir, &rec)?;
    println!("removed jurisdiction {:?}", a.name);
    Ok(ExitCode::SUCCESS)
}
