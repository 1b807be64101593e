//! `blocker rules`: add, remove, list and load rules.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context, Result};
use blocker_common::{qtype_bit, Action, Kind, EDE_BLOCKED, EDE_CENSORED, QTYPES_ALL};
use blocker_lists::{Format, Name, Options, Place, FIRST_PLACES};
use serde::Serialize;

use super::{parse_qtype, qtypes_display, Ctx};
use crate::{
    compliance::{self, Audit, FileHash, Record},
    guard::Guards,
    state::{check_ede_text, Order, Rule, Source},
    txn::{Controller, OrderChange, Summary},
};

/// Order used when a command names none.
pub const DEFAULT_ORDER: &str = "default";

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Add one rule (or replace the rule with the same name and match kind).
    ///
    /// NAME matches exactly by default; `*.example.com` (or --below) matches only names
    /// strictly below example.com; --subtree matches example.com and every name below it.
    Add(AddArgs),
    /// Remove one rule.
    Remove(RemoveArgs),
    /// List rules.
    List(ListArgs),
    /// Replace an order's rules with the contents of list files, atomically.
    ///
    /// Formats: plain (one name per line; `#` comments; adblock `||name^`, `|name^` for the
    /// name alone; dnsmasq `local=/name/` and `address=/name/`; unbound `local-zone: "name."
    /// TYPE`, TYPE giving the action), hosts (`0.0.0.0 name`), RPZ zone files. Entries no
    /// name rule expresses are skipped and counted: IP addresses, URLs with a path, hosts
    /// lines answering an address other than 0.0.0.0/::/loopback (redirections), adblock
    /// patterns, modifiers and regular expressions. `auto` tells RPZ from the rest; plain and hosts
    /// lines may be mixed in one file (only `--format hosts` refuses a line without an
    /// address). In plain and hosts lists a bare name means the name
    /// and all its subdomains (--match subtree, the usual meaning of a court order) and
    /// `*.example.com` means only names strictly below example.com (as in RPZ; --star subtree
    /// for lists that mean example.com too). RPZ files
    /// keep RPZ semantics: `name` is that name only, `*.name` the names below it.
    ///
    /// RPZ zone files are read as DNS servers read them: `$ORIGIN`, `$TTL`, `$INCLUDE`,
    /// parentheses, comments, escapes, TTLs with units (`1h`, `3W`, `1h30m`). At one owner
    /// the first policy record wins (a later one with another action is dropped with a
    /// warning naming both lines).
    ///
    /// Nothing changes unless the whole load succeeds: an invalid entry refuses the load
    /// (FILE:LINE: reason) unless --skip-invalid is given; a load that would leave the order
    /// with no rules while entries were skipped (unsupported, or invalid with
    /// --skip-invalid) is refused with a summary unless --allow-empty is given. The data plane
    /// sees the old rules until the new ones are complete.
    Load(LoadArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CliAction {
    Pass,
    Drop,
    Nxdomain,
    Refused,
    Nodata,
    Sinkhole,
    Tc,
}

impl From<CliAction> for Action {
    fn from(a: CliAction) -> Action {
        match a {
            CliAction::Pass => Action::Pass,
            CliAction::Drop => Action::Drop,
            CliAction::Nxdomain => Action::Nxdomain,
            CliAction::Refused => Action::Refused,
            CliAction::Nodata => Action::Nodata,
            CliAction::Sinkhole => Action::Sinkhole,
            CliAction::Tc => Action::Tc,
        }
    }
}

/// Order options shared by `add` and `load`: they create the order or change it.
#[derive(clap::Args, Debug)]
pub struct OrderOpts {
    /// The order the rules belong to (created if new).
    #[arg(long, default_value = DEFAULT_ORDER)]
    pub order: String,
    /// EDE EXTRA-TEXT of the order (at most 64 bytes); defaults to the order's name.
    #[arg(long)]
    pub ede_text: Option<String>,
    /// EDE info-code of the order: 16 (Censored, default) or 15 (Blocked).
    #[arg(long, value_parser = parse_ede_code)]
    pub ede_code: Option<u16>,
    /// Precedence of the order: orders are tried by ascending priority (ties: the older
    /// first), and the first with a rule for the query decides, as RPZ zones in their
    /// configured order. New orders get 100.
    #[arg(long, value_name = "N")]
    pub priority: Option<u32>,
    /// Bind the order to the clients of this jurisdiction only (repeatable; replaces the
    /// order's list; see `blocker jurisdictions`).
    #[arg(
        long = "jurisdiction",
        value_name = "NAME",
        conflicts_with = "everywhere"
    )]
    pub jurisdictions: Vec<String>,
    /// Bind the order to every client again (no jurisdiction).
    #[arg(long)]
    pub everywhere: bool,
    /// The order is in force from this instant (RFC 3339, e.g. 2026-12-06T18:00:00Z or
    /// 2026-12-06T19:00:00+01:00); `none` removes the start.
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub valid_from: Option<When>,
    /// The order stops being in force at this instant (RFC 3339); `none` removes the end.
    /// Enforced by the data plane's own clock: no command needs to run at the end.
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub valid_until: Option<When>,
    /// `enforce` (the default), or `shadow`: the order's hits are counted (per rule, per
    /// order, events, the `shadowed` reason) but its rules decide nothing.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Replace the action of every rule of the order (RPZ's policy override): given (the
    /// rules' own), nxdomain, nodata, pass, drop, tcp-only, sinkhole or refused.
    #[arg(long = "override", value_name = "ACTION", value_parser = parse_override)]
    pub override_action: Option<Override>,
}

/// An instant given on the command line, or `none`.
#[derive(Clone, Copy, Debug)]
pub enum When {
    None,
    At(jiff::Timestamp),
}

fn parse_instant(s: &str) -> Result<When, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(When::None);
    }
    s.parse::<jiff::Timestamp>().map(When::At).map_err(|e| {
        format!("{s:?}: not an RFC 3339 instant with an offset (e.g. 2026-12-06T18:00:00Z): {e}")
    })
}

impl When {
    fn get(self) -> Option<jiff::Timestamp> {
        match self {
            When::None => None,
            When::At(t) => Some(t),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Enforce,
    Shadow,
}

/// A policy override: `given` keeps the rules' own actions.
#[derive(Clone, Copy, Debug)]
pub struct Override(pub Option<Action>);

fn parse_override(s: &str) -> Result<Override, String> {
    let a = match s.to_ascii_lowercase().as_str() {
        "given" => return Ok(Override(None)),
        "tcp-only" | "tc" => Action::Tc,
        "passthru" => Action::Pass,
        other => Action::parse(other).ok_or_else(|| {
            format!("{s:?}: use given, nxdomain, nodata, pass, drop, tcp-only, sinkhole or refused")
        })?,
    };
    Ok(Override(Some(a)))
}

fn parse_ede_code(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(EDE_BLOCKED) => Ok(EDE_BLOCKED),
        Ok(EDE_CENSORED) => Ok(EDE_CENSORED),
        _ => Err(format!("{s:?}: use 16 (Censored) or 15 (Blocked)")),
    }
}

/// The guards against blocking a public suffix or a protected name (see `blocker protect`).
#[derive(clap::Args, Debug)]
pub struct GuardOpts {
    /// Accept block rules the guards refuse: rules on a public suffix (`com`, `co.uk`,
    /// `github.io` …) or with public suffixes below them, and rules that would block a
    /// protected name (`blocker protect list`).
    #[arg(long)]
    pub force: bool,
    /// Public suffix list to check against (the format of publicsuffix.org's
    /// public_suffix_list.dat); default: public_suffix_list.dat in the state directory if
    /// present, else the list built into blocker.
    #[arg(long, value_name = "FILE")]
    pub psl: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// Domain name (IDN allowed; `*.name` means names below it).
    pub name: String,
    /// Match the name and every name below it.
    #[arg(long, conflicts_with = "below")]
    pub subtree: bool,
    /// Match only names strictly below the name.
    #[arg(long)]
    pub below: bool,
    /// What to do; the order's default action when omitted (nxdomain for a new order).
    #[arg(long, value_enum)]
    pub action: Option<CliAction>,
    /// Restrict the rule to these query types (repeat; default all).
    #[arg(long = "qtype", value_name = "TYPE")]
    pub qtypes: Vec<String>,
    #[command(flatten)]
    pub order: OrderOpts,
    #[command(flatten)]
    pub guard: GuardOpts,
    #[command(flatten)]
    pub audit: Audit,
}

#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// Domain name as it was added.
    pub name: String,
    /// Remove the subtree rule.
    #[arg(long, conflicts_with = "below")]
    pub subtree: bool,
    /// Remove the below rule (also `*.name`).
    #[arg(long)]
    pub below: bool,
    /// The order the rule belongs to.
    #[arg(long, default_value = DEFAULT_ORDER)]
    pub order: String,
    #[command(flatten)]
    pub audit: Audit,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only this order's rules.
    #[arg(long)]
    pub order: Option<String>,
    /// Machine-readable output (one JSON array).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CliFormat {
    Auto,
    Plain,
    Hosts,
    Rpz,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CliMatch {
    /// A bare name blocks the name and all names below it.
    Subtree,
    /// A bare name blocks that name only.
    Exact,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CliStar {
    /// `*.name` blocks the names below name, not name itself (as in RPZ).
    Below,
    /// `*.name` blocks name and the names below it (as lists written for resolvers that
    /// read the star that way mean it, e.g. "wildcard" list formats).
    Subtree,
}

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// List files (several files make one rule set).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// File format.
    #[arg(long, value_enum, default_value_t = CliFormat::Auto)]
    pub format: CliFormat,
    /// What a bare name in a plain or hosts list matches.
    #[arg(long = "match", value_enum, default_value_t = CliMatch::Subtree)]
    pub matching: CliMatch,
    /// What `*.name` in a plain or hosts list matches (RPZ files keep RPZ's meaning: below).
    #[arg(long, value_enum, default_value_t = CliStar::Below)]
    pub star: CliStar,
    /// Action of entries that do not carry one (RPZ entries do); default: the order's
    /// default action (nxdomain for a new order). Also becomes the order's default action.
    #[arg(long, value_enum)]
    pub action: Option<CliAction>,
    /// Name of the RPZ zone, for RPZ files that do not say it (no SOA or $ORIGIN) but write
    /// owners in full; it is stripped from owners.
    #[arg(long, value_name = "ZONE")]
    pub rpz_origin: Option<String>,
    /// Apply the valid entries and report the invalid ones instead of refusing the load.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Accept a load that leaves the order with no rules although entries were skipped
    /// (without it such a load is refused: a list that yields nothing was more likely
    /// misread than meant; an empty file always loads).
    #[arg(long)]
    pub allow_empty: bool,
    #[command(flatten)]
    pub order: OrderOpts,
    #[command(flatten)]
    pub guard: GuardOpts,
    #[command(flatten)]
    pub audit: Audit,
}

pub fn run(ctx: &Ctx, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Add(a) => add(ctx, a),
        Command::Remove(a) => remove(ctx, a),
        Command::List(a) => list(ctx, a),
        Command::Load(a) => load(ctx, a),
    }
}

/// The order named in `opts`, created with defaults if new, updated with the given options.
pub fn order_for(c: &Controller, opts: &OrderOpts, action: Option<Action>) -> Result<Order> {
    if opts.order.is_empty()
        || opts.order.len() > 128
        || opts.order.chars().any(|ch| ch.is_control())
    {
        bail!(
            "--order {:?}: an order name is 1 to 128 printable characters",
            opts.order
        );
    }
    let mut o = match c.state.order(&opts.order) {
        Some(o) => o.clone(),
        None => {
            let text: String = {
                let mut t = String::new();
                for ch in opts.order.chars() {
                    if t.len() + ch.len_utf8() > blocker_common::MAX_EDE_TEXT {
                        break;
                    }
                    t.push(ch);
                }
                t
            };
            Order {
                ede_text: text,
                ..Order::named(c.state.free_order_id()?, &opts.order)
            }
        }
    };
    if let Some(p) = opts.priority {
        o.priority = p;
    }
    if opts.everywhere {
        o.jurisdictions.clear();
    }
    if !opts.jurisdictions.is_empty() {
        let mut js = Vec::new();
        for j in &opts.jurisdictions {
            if c.state.jurisdiction(j).is_none() {
                bail!(
                    "--jurisdiction {j:?}: no such jurisdiction (see `blocker jurisdictions \
                     list`; create it with `blocker jurisdictions set`); nothing was changed"
                );
            }
            if !js.contains(j) {
                js.push(j.clone());
            }
        }
        o.jurisdictions = js;
    }
    if let Some(t) = opts.valid_from {
        o.valid_from = t.get();
    }
    if let Some(t) = opts.valid_until {
        o.valid_until = t.get();
    }
    if let (Some(f), Some(u)) = (o.valid_from, o.valid_until) {
        if u <= f {
            bail!(
                "order {:?}: --valid-until {u} is not after --valid-from {f}; nothing was changed",
                o.name
            );
        }
    }
    if let Some(m) = opts.mode {
        o.shadow = m == Mode::Shadow;
    }
    if let Some(Override(a)) = opts.override_action {
        o.override_action = a;
    }
    if let Some(t) = &opts.ede_text {
        check_ede_text(t).context("--ede-text")?;
        o.ede_text = t.clone();
    }
    if let Some(code) = opts.ede_code {
        o.ede_code = code;
    }
    if let Some(a) = action {
        o.default_action = a;
    }
    Ok(o)
}

fn cli_name(s: &str, below_flag: bool, subtree_flag: bool) -> Result<(Name, Kind)> {
    let (text, star) = match s.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (s, false),
    };
    let name = super::name_arg(text)?;
    let kind = if star || below_flag {
        Kind::Below
    } else if subtree_flag {
        Kind::Subtree
    } else {
        Kind::Exact
    };
    Ok((name, kind))
}

/// A spinner showing the current phase on a terminal; hidden when stderr is not one.
fn spinner() -> indicatif::ProgressBar {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let p = indicatif::ProgressBar::new_spinner();
        p.enable_steady_tick(std::time::Duration::from_millis(120));
        p
    } else {
        indicatif::ProgressBar::hidden()
    }
}

fn print_summary(s: &Summary) {
    println!(
        "generation {}: {} rules added, {} removed, {} changed, {} unchanged ({} names changed in the kernel)",
        s.generation, s.rules_added, s.rules_removed, s.rules_changed, s.rules_kept, s.names_changed
    );
}

/// Checks `rules` against the guards, each by the action it takes in force (`over`: the
/// order's policy override, if any): refused rules are printed (`SOURCE: reason`) and refuse
/// the change, unless --force. Returns whether the guards were overridden.
pub fn check_guards(
    ctx: &Ctx,
    g: &GuardOpts,
    rules: &[Rule],
    over: Option<Action>,
) -> Result<bool> {
    let guards = Guards::load(&ctx.dir, g.psl.as_deref())?;
    let refused = guards.refusals(rules, over);
    if refused.is_empty() {
        return Ok(false);
    }
    const SHOWN: usize = 50;
    for (r, why) in refused.iter().take(SHOWN) {
        if r.source == Source::cli() {
            eprintln!("{why}");
        } else {
            eprintln!("{}: {why}", r.source);
        }
    }
    if refused.len() > SHOWN {
        eprintln!("… and {} more refused rules", refused.len() - SHOWN);
    }
    if !g.force {
        bail!(
            "{} block rules refused by the guards: nothing was changed (use --force to apply \
             them anyway)",
            refused.len()
        );
    }
    eprintln!(
        "warning: applying {} block rules the guards refuse (--force)",
        refused.len()
    );
    Ok(true)
}

fn add(ctx: &Ctx, a: AddArgs) -> Result<ExitCode> {
    let started = jiff::Timestamp::now();
    let (name, kind) = cli_name(&a.name, a.below, a.subtree)?;
    let mut qtypes = if a.qtypes.is_empty() { QTYPES_ALL } else { 0 };
    for t in &a.qtypes {
        qtypes |= qtype_bit(parse_qtype(t)?);
    }
    let mut c = Controller::open(&ctx.pins, &ctx.dir)?;
    let order = order_for(&c, &a.order, None)?;
    let action = a.action.map(Action::from).unwrap_or(order.default_action);
    let mut rules = match c.state.order(&order.name) {
        Some(o) => c.dir.read_rules(o)?,
        None => Vec::new(),
    };
    let rule = Rule {
        qtypes,
        ..Rule::cli(name.clone(), kind, action)
    };
    let forced = check_guards(
        ctx,
        &a.guard,
        std::slice::from_ref(&rule),
        order.override_action,
    )?;
    rules.retain(|r| !(r.name == name && r.kind == kind));
    rules.push(rule);
    let s = c.apply(vec![OrderChange::Put {
        order,
        rules: Some(rules),
    }])?;
    let mut rec = Record::new(
        "rules add",
        started,
        Some(&a.order.order),
        Some(&s),
        &a.audit,
    );
    rec.name = Some(shown_name(&name, kind));
    rec.forced = forced;
    compliance::append(&ctx.dir, &rec)?;
    println!(
        "added {} {} {} ({})",
        kind.as_str(),
        name,
        action.as_str(),
        a.order.order
    );
    print_summary(&s);
    Ok(ExitCode::SUCCESS)
}

/// A rule's name as written on the command line (`*.name` for a below rule).
fn shown_name(name: &blocker_lists::Name, kind: Kind) -> String {
    match kind {
        Kind::Below => format!("*.{name}"),
        _ => name.to_string(),
    }
}

fn remove(ctx: &Ctx, a: RemoveArgs) -> Result<ExitCode> {
    let started = jiff::Timestamp::now();
    let (name, kind) = cli_name(&a.name, a.below, a.subtree)?;
    let mut c = Controller::open(&ctx.pins, &ctx.dir)?;
    let Some(order) = c.state.order(&a.order).cloned() else {
        bail!("no order named {:?} (see `blocker orders list`)", a.order);
    };
    let mut rules = c.dir.read_rules(&order)?;
    let before = rules.len();
    rules.retain(|r| !(r.name == name && r.kind == kind));
    if rules.len() == before {
        bail!(
            "order {:?} has no {} rule for {}",
            a.order,
            kind.as_str(),
            name
        );
    }
    let s = c.apply(vec![OrderChange::Put {
        order,
        rules: Some(rules),
    }])?;
    let mut rec = Record::new("rules remove", started, Some(&a.order), Some(&s), &a.audit);
    rec.name = Some(shown_name(&name, kind));
    compliance::append(&ctx.dir, &rec)?;
    println!("removed {} {} ({})", kind.as_str(), name, a.order);
    print_summary(&s);
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct ListedRule<'a> {
    order: &'a str,
    name: String,
    #[serde(rename = "match")]
    kind: &'static str,
    action: &'static str,
    qtypes: String,
    id: u32,
    source: String,
}

fn list(ctx: &Ctx, a: ListArgs) -> Result<ExitCode> {
    let state = ctx.state()?;
    if let Some(o) = &a.order {
        if state.order(o).is_none() {
            bail!("no order named {o:?} (see `blocker orders list`)");
        }
    }
    let mut out = Vec::new();
    let mut all = Vec::new();
    for o in &state.orders {
        if a.order.as_ref().is_some_and(|n| *n != o.name) {
            continue;
        }
        all.push((o, ctx.dir.read_rules(o)?));
    }
    for (o, rules) in &all {
        for r in rules {
            out.push(ListedRule {
                order: &o.name,
                name: r.name.to_string(),
                kind: r.kind.as_str(),
                action: r.action.as_str(),
                qtypes: qtypes_display(r.qtypes),
                id: r.id,
                source: r.source.to_string(),
            });
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        use std::io::Write;
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::new(stdout.lock());
        for r in &out {
            let shown = if r.kind == "below" {
                format!("*.{}", r.name)
            } else {
                r.name.clone()
            };
            writeln!(
                w,
                "{:<8} {:<9} {:<40} {:<6} {}",
                r.kind, r.action, shown, r.qtypes, r.order
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a load skipped, by reason, with the first FILE:LINEs of each.
fn skipped_summary(
    errors: &[blocker_lists::Diagnostic],
    unsupported: &std::collections::BTreeMap<String, usize>,
    unsupported_at: &std::collections::BTreeMap<String, Vec<Place>>,
) -> String {
    use std::fmt::Write;
    let places = |n: usize, at: Vec<String>| {
        let more = if n > at.len() { ", …" } else { "" };
        format!("{}{more}", at.join(", "))
    };
    let mut s = String::from("skipped entries, by reason:\n");
    if !errors.is_empty() {
        let at = errors
            .iter()
            .take(FIRST_PLACES)
            .map(|e| format!("{}:{}", e.file.display(), e.line))
            .collect();
        let _ = writeln!(
            s,
            "  {} invalid (--skip-invalid): {}",
            errors.len(),
            places(errors.len(), at)
        );
    }
    for (what, &n) in unsupported {
        let at = unsupported_at
            .get(what)
            .map(|v| v.iter().map(Place::to_string).collect())
            .unwrap_or_default();
        let _ = writeln!(s, "  {n} unsupported ({what}): {}", places(n, at));
    }
    s
}

fn load(ctx: &Ctx, a: LoadArgs) -> Result<ExitCode> {
    let started = jiff::Timestamp::now();
    let opts = Options {
        bare_kind: match a.matching {
            CliMatch::Subtree => Kind::Subtree,
            CliMatch::Exact => Kind::Exact,
        },
        star_kind: match a.star {
            CliStar::Below => Kind::Below,
            CliStar::Subtree => Kind::Subtree,
        },
        rpz_origin: a.rpz_origin.clone(),
    };
    let format = match a.format {
        CliFormat::Auto => None,
        CliFormat::Plain => Some(Format::Plain),
        CliFormat::Hosts => Some(Format::Hosts),
        CliFormat::Rpz => Some(Format::Rpz),
    };

    // A spinner with the current phase on a terminal; nothing when piped or scripted.
    let progress = spinner();

    // Parse everything before touching anything.
    let t0 = std::time::Instant::now();
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut unsupported = std::collections::BTreeMap::<String, usize>::new();
    let mut unsupported_at = std::collections::BTreeMap::<String, Vec<Place>>::new();
    let mut duplicates = 0;
    // The policy zone's SOA (the first zone's), sent with the order's answers when it fits.
    let mut soa: Option<Vec<u8>> = None;
    // The hash of each file for the compliance record: of the bytes parsed, read once.
    let mut hashes = Vec::new();
    for f in &a.files {
        progress.set_message(format!("parsing {}", f.display()));
        let (out, sha256) = blocker_lists::parse_file_and(f, format, &opts, compliance::sha256_hex)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        hashes.push(FileHash {
            path: f.display().to_string(),
            sha256,
        });
        if soa.is_none() {
            soa = out.soa.clone();
        }
        // A list made mostly of `*.name` may mean the star as "name and below" (wildcard
        // list formats); blocker reads it as RPZ does unless told.
        if a.star == CliStar::Below && out.stars >= 10 && out.stars * 2 >= out.rules.len() {
            eprintln!(
                "note: {}: {} of {} entries are `*.name`, which blocks the names below name, \
                 not name itself (as in RPZ); if the list means name too, load it with \
                 --star subtree",
                f.display(),
                out.stars,
                out.rules.len()
            );
        }
        // The first file's rules are moved, not copied: a list of ten million is 640 MB.
        if parsed.is_empty() {
            parsed = out.rules;
        } else {
            parsed.extend(out.rules);
        }
        errors.extend(out.errors);
        warnings.extend(out.warnings);
        duplicates += out.duplicates;
        for (k, v) in out.unsupported {
            *unsupported.entry(k).or_default() += v;
        }
        for (k, places) in out.unsupported_at {
            let at = unsupported_at.entry(k).or_default();
            let room = FIRST_PLACES.saturating_sub(at.len());
            at.extend(places.into_iter().take(room));
        }
    }
    // Each file has no repeated (name, kind) already; across files the first one is kept,
    // and one that disagrees with it (a block list and an allow list naming one name) is a
    // conflict, as within a file.
    if a.files.len() > 1 {
        duplicates += blocker_lists::dedup(&mut parsed, &mut errors);
    }
    progress.finish_and_clear();
    log::info!(
        "parsed {} entries: {:.3} s",
        parsed.len(),
        t0.elapsed().as_secs_f64()
    );
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    for (what, n) in &unsupported {
        eprintln!("skipped {n} unsupported entries: {what}");
    }
    if !errors.is_empty() {
        const SHOWN: usize = 50;
        for e in errors.iter().take(SHOWN) {
            eprintln!("{e}");
        }
        if errors.len() > SHOWN {
            eprintln!("… and {} more invalid entries", errors.len() - SHOWN);
        }
        if !a.skip_invalid {
            bail!(
                "{} invalid entries: nothing was changed (fix them, or use --skip-invalid to load the {} valid ones)",
                errors.len(),
                parsed.len()
            );
        }
        eprintln!("skipping {} invalid entries (--skip-invalid)", errors.len());
    }
    let skipped = errors.len() + unsupported.values().sum::<usize>();
    if parsed.is_empty() && skipped > 0 && !a.allow_empty {
        eprint!(
            "{}",
            skipped_summary(&errors, &unsupported, &unsupported_at)
        );
        bail!(
            "order {:?} would have no rules: all {skipped} entries were skipped; nothing was \
             changed (use --allow-empty to load it anyway)",
            a.order.order
        );
    }

    // Maps created by this command (none pinned yet) are sized for the rules it keeps.
    let mut c = Controller::open_for(&ctx.pins, &ctx.dir, parsed.len())?;
    log::info!("opened the controller: {:.3} s", t0.elapsed().as_secs_f64());
    let mut order = order_for(&c, &a.order, a.action.map(Action::from))?;
    let default_action = order.default_action;
    let mut sinkholes = 0;
    // Each file's name is interned once for its rules' sources.
    let mut file: Option<(std::sync::Arc<std::path::PathBuf>, Source)> = None;
    // Collected in the parsed rules' own memory (a `Rule` is no larger than a `ParsedRule`):
    // ten million rules are not held twice. The room the smaller rules leave is returned.
    let mut rules: Vec<Rule> = parsed
        .into_iter()
        .map(|p| {
            let action = p.action.unwrap_or(default_action);
            // Local data (RPZ addresses, block pages) answers with its own records.
            if action == Action::Sinkhole && p.local.is_none() {
                sinkholes += 1;
            }
            let shown = match &file {
                Some((path, shown)) if std::sync::Arc::ptr_eq(path, &p.file) => *shown,
                _ => {
                    let shown = Source::at(&p.file.display().to_string(), 0);
                    file = Some((p.file.clone(), shown));
                    shown
                }
            };
            Rule {
                name: p.name,
                kind: p.kind,
                action,
                qtypes: p.qtypes,
                id: 0,
                source: shown.line(p.line),
                local: p.local,
                local_id: 0,
            }
        })
        .collect();
    rules.shrink_to_fit();
    log::info!("rules built: {:.3} s", t0.elapsed().as_secs_f64());
    let forced = check_guards(ctx, &a.guard, &rules, order.override_action)?;
    log::info!("guards checked: {:.3} s", t0.elapsed().as_secs_f64());
    let settings = &c.state.settings;
    if sinkholes > 0 && settings.sinkhole_v4.is_none() && settings.sinkhole_v6.is_none() {
        eprintln!(
            "warning: {sinkholes} sinkhole rules but no sinkhole address is configured: they \
             answer NODATA until `blocker config set --sinkhole-v4 …` is run"
        );
    }
    order.sources = a.files.iter().map(|f| f.display().to_string()).collect();
    order.set_soa(soa.as_deref());
    let n = rules.len();
    let progress = spinner();
    progress.set_message(format!(
        "applying {n} rules to order {:?} (the old rules stay in force until the switch)",
        a.order.order
    ));
    let s = c.apply(vec![OrderChange::Put {
        order,
        rules: Some(rules),
    }]);
    progress.finish_and_clear();
    let s = s?;
    let mut rec = Record::new(
        "rules load",
        started,
        Some(&a.order.order),
        Some(&s),
        &a.audit,
    );
    rec.files = hashes;
    rec.forced = forced;
    compliance::append(&ctx.dir, &rec)?;
    println!(
        "order {:?}: {} rules ({} duplicates ignored)",
        a.order.order, n, duplicates
    );
    print_summary(&s);
    Ok(ExitCode::SUCCESS)
}
