//! `blocker explain`: which rule and order would decide a query, and why.

use std::{collections::HashMap, process::ExitCode};

use anyhow::Result;
use blocker_common::{
    dns::{decide_with_shadows, parse_query, Client, Scratch, LOAD_MAX},
    key::key_of_canonical,
    qtype_bit, Action, Config, Kind, RuleKey, RuleSet,
};
use serde::Serialize;

use super::{parse_qtype, qtypes_display, Ctx};
use crate::{
    state::Rule,
    txn::{merge, Candidate},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The query name (IDN allowed).
    pub name: String,
    /// The query type.
    #[arg(long, default_value = "A")]
    pub qtype: String,
    /// The client asking: orders scoped to jurisdictions apply only to their clients
    /// (default: a client in no jurisdiction).
    #[arg(long, value_name = "ADDR")]
    pub client: Option<std::net::IpAddr>,
    /// The instant to decide at (RFC 3339; default: now): orders outside their validity
    /// window do not apply.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<jiff::Timestamp>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Public suffix list for the guard notes (see `blocker rules add --help`).
    #[arg(long, value_name = "FILE")]
    pub psl: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
struct Match {
    /// The rule's name.
    name: String,
    #[serde(rename = "match")]
    kind: &'static str,
    action: &'static str,
    qtypes: String,
    order: String,
    /// The order's place in the precedence (0 first).
    rank: u16,
    source: String,
    /// Why it does or does not decide.
    note: String,
    decides: bool,
}

#[derive(Serialize)]
struct Explanation {
    query: String,
    qtype: u16,
    verdict: &'static str,
    /// What a sinkhole rule with local data (RPZ addresses, a block page) answers to this
    /// query type, as the data plane picks it.
    answer: Option<String>,
    /// The exit reason the data plane counts the query under when it passes.
    reason: Option<&'static str>,
    order: Option<String>,
    rule: Option<String>,
    /// The shadow order's rule that would have decided, had its order been enforced.
    shadow: Option<String>,
    /// Every shadow order's rule that records a hit for this query, in precedence order
    /// (`shadow` first; at most four, as the data plane records).
    shadows: Vec<String>,
    /// The client's jurisdictions.
    jurisdictions: Vec<String>,
    matches: Vec<Match>,
    /// The kernel map holds what the state says it should (None: not loaded).
    kernel_agrees: Option<bool>,
    /// The guards that would refuse a block rule at this name, by match kind (`rules add`
    /// and `rules load` refuse it unless --force).
    guards: Vec<GuardNote>,
}

#[derive(Serialize)]
struct GuardNote {
    #[serde(rename = "match")]
    kind: &'static str,
    refused: Option<String>,
}

/// The wire form of a name as a query message, for the shared parser.
fn query_message(canonical: &[u8], qtype: u16) -> Vec<u8> {
    let mut m = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(canonical);
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

/// What local data answers to `qtype`: its entry for the type, else its default entry (a
/// block page's CNAMEs), else NODATA — the data plane's choice (`local_answer` there).
fn local_answer(data: &blocker_lists::LocalData, qtype: u16) -> String {
    let (entries, _) = data.answers();
    let entry = entries
        .iter()
        .find(|(t, _)| *t == qtype)
        .or_else(|| entries.iter().find(|(t, _)| *t == 0));
    match (entry, &data.cname) {
        (Some((_, a)), Some(page)) if a.count > 0 => {
            format!(
                "a CNAME to the block page {page} ({} records in all)",
                a.count
            )
        }
        (Some((_, a)), None) if a.count > 0 => {
            format!("{} record(s) of local data", a.count)
        }
        _ => "NODATA: the local data has no records of this type".to_string(),
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let qtype = parse_qtype(&a.qtype)?;
    let name = super::name_arg(&a.name)?;
    let state = ctx.state()?;
    let mut all: Vec<(String, Vec<Rule>, u16)> = Vec::new();
    for o in &state.orders {
        let mut rules = ctx.dir.read_rules(o)?;
        // The ids the kernel's slots carry for local data (block pages, addresses).
        state.assign_local_ids(rules.iter_mut());
        all.push((o.name.clone(), rules, o.id));
    }
    let gates = crate::txn::order_gates(&state);
    let ranks = state.ranks();
    let at = a.at.unwrap_or_else(jiff::Timestamp::now);
    // The client's jurisdictions, as the data plane's prefix lookup finds them.
    let client_juris: Vec<&crate::state::Jurisdiction> = match a.client {
        Some(addr) => state
            .jurisdictions
            .iter()
            .filter(|j| j.prefixes.iter().any(|p| p.contains(&addr)))
            .collect(),
        None => Vec::new(),
    };
    let client = Client {
        jurisdictions: client_juris.iter().fold(0, |m, j| m | 1u64 << (j.id & 63)),
        now: crate::txn::tai_ns(at, crate::txn::tai_offset_ns()),
    };

    // Keys under the secret the kernel uses, so the cross-check below compares like with like.
    let secret = crate::secret::for_reading(&ctx.pins, &ctx.dir)?;

    // Every suffix of the name, most specific first, with the rules recorded at it.
    let canonical = name.canonical().to_vec();
    let mut suffixes: Vec<&[u8]> = Vec::new();
    let mut i = 0;
    while i < canonical.len() {
        suffixes.push(&canonical[i..]);
        i += 1 + canonical[i] as usize;
    }
    let mut sets: HashMap<RuleKey, RuleSet> = HashMap::new();
    let mut matches = Vec::new();
    let qbit = qtype_bit(qtype);
    for (depth, suffix) in suffixes.iter().enumerate() {
        let key = key_of_canonical(&secret, suffix);
        let mut cands = Vec::new();
        for (oname, rules, oid) in &all {
            for r in rules.iter().filter(|r| r.name.canonical() == *suffix) {
                cands.push(Candidate {
                    order: *oid,
                    rule: r,
                });
                let applies_here = depth == 0 && matches!(r.kind, Kind::Exact | Kind::Subtree);
                let applies_below = depth > 0 && matches!(r.kind, Kind::Subtree | Kind::Below);
                let note = if !(applies_here || applies_below) {
                    match r.kind {
                        Kind::Exact => {
                            "exact rule of a parent name: does not apply below it".to_string()
                        }
                        _ => "below rule: does not apply to the name itself".to_string(),
                    }
                } else if r.qtypes & qbit == 0 {
                    format!(
                        "does not apply to this query type (only {})",
                        qtypes_display(r.qtypes)
                    )
                } else if let Some(why) = order_skip(&state, *oid, at, &client) {
                    why
                } else {
                    "applies".to_string()
                };
                matches.push(Match {
                    name: r.name.to_string(),
                    kind: r.kind.as_str(),
                    action: r.action.as_str(),
                    qtypes: qtypes_display(r.qtypes),
                    order: oname.clone(),
                    rank: ranks.get(oid).copied().unwrap_or(u16::MAX),
                    source: r.source.to_string(),
                    note,
                    decides: false,
                });
            }
        }
        if !cands.is_empty() {
            // More orders at one name than the data plane holds cannot be in the kernel.
            sets.insert(key, merge(&cands).unwrap_or_default());
        }
    }

    // Decide exactly as the data plane does, with the shared parser and matcher.
    let mut cfg = Config::default();
    for r in all.iter().flat_map(|(_, rs, _)| rs) {
        let d = r.name.label_count() & 127;
        cfg.depth_mask[d >> 6] |= 1 << (d & 63);
    }
    let msg = query_message(&canonical, qtype);
    let mut s = Box::new(Scratch::zeroed());
    let n = msg.len().min(LOAD_MAX);
    s.msg[..n].copy_from_slice(&msg[..n]);
    let q = parse_query(&mut s, n, msg.len(), &secret).map_err(|r| {
        anyhow::anyhow!(
            "{} is not a name the data plane parses ({})",
            name,
            r.as_str()
        )
    })?;
    let (d, shadow_hits) = decide_with_shadows(
        &cfg,
        &secret,
        &mut s,
        &q,
        &client,
        |k| sets.get(k).copied(),
        |o| gates.get(&o).unwrap_or(&blocker_common::OrderGate::OPEN),
    );

    // The recorded rule of a hit, with its order's name.
    let rule_of = |hit: &blocker_common::dns::Hit| -> Option<(&String, &Rule)> {
        let (oname, rules, _) = all.iter().find(|(_, _, oid)| *oid == hit.order_id)?;
        Some((oname, rules.iter().find(|r| r.id == hit.rule_id)?))
    };
    // The recorded rule of a hit, and the note of its match.
    let mut mark = |hit: &blocker_common::dns::Hit, note: &str| -> Option<(String, String)> {
        let (oname, r) = rule_of(hit)?;
        for m in matches.iter_mut() {
            if m.order == *oname && m.name == r.name.to_string() && m.kind == r.kind.as_str() {
                m.decides = note.starts_with("decides");
                m.note = note.to_string();
            }
        }
        Some((oname.clone(), format!("{} {}", r.kind.as_str(), r.name)))
    };
    let (mut verdict, mut order, mut rule, mut reason) = ("pass (no rule)", None, None, None);
    let mut answer = None;
    // Every shadow order ahead of the decider records its hit (the data plane walks the name
    // again for each, as if the ones before were absent).
    let shadows: Vec<String> = shadow_hits
        .iter()
        .take_while(|h| !h.is_none())
        .enumerate()
        .filter_map(|(i, h)| {
            let note = if i == 0 {
                "shadow order: would decide if enforced (counted, not applied)"
            } else {
                "shadow order: would decide if enforced and the shadow orders before it absent (counted, not applied)"
            };
            mark(h, note).map(|(o, r)| format!("{r} (order {o:?})"))
        })
        .collect();
    let shadow = shadows.first().cloned();
    if d.hit.is_none() {
        reason = Some(d.pass_reason().as_str());
    } else {
        let a = Action::from_u8(d.hit.action);
        verdict = a.as_str();
        let overridden = state
            .order_by_id(d.hit.order_id)
            .and_then(|o| o.override_action)
            .is_some();
        let note = if overridden {
            "decides: the first order by precedence with a rule for the query (its action overridden by the order)"
        } else {
            "decides: the first order by precedence with a rule for the query, its most specific rule"
        };
        if let Some((o, r)) = mark(&d.hit, note) {
            order = Some(o);
            rule = Some(r);
        }
        if a == Action::Sinkhole && d.hit.local != 0 {
            answer = rule_of(&d.hit)
                .and_then(|(_, r)| r.local.as_ref())
                .map(|data| local_answer(data, qtype));
        }
        for m in matches.iter_mut() {
            if !m.decides && m.note == "applies" {
                m.note = "applies, but an order earlier in the precedence or a more specific rule of the same order decides".into();
            }
        }
    }

    // Cross-check the kernel: each suffix's entry must hold what the state says.
    let mut kernel_agrees = None;
    if ctx.pins.loaded() {
        let maps = crate::kernel::Maps::open(&ctx.pins)?;
        let kcfg = maps.config()?;
        let mut agree = true;
        for suffix in &suffixes {
            let key = key_of_canonical(&secret, suffix);
            let kernel = maps
                .rules
                .get(&key, kcfg.epoch)?
                .map(|(set, _)| set)
                .unwrap_or_default();
            if kernel != sets.get(&key).copied().unwrap_or_default() {
                agree = false;
            }
        }
        kernel_agrees = Some(agree);
    }

    let g = crate::guard::Guards::load(&ctx.dir, a.psl.as_deref())?;
    let guards = [Kind::Exact, Kind::Subtree, Kind::Below]
        .into_iter()
        .map(|k| GuardNote {
            kind: k.as_str(),
            refused: g.refusal(&name, k, Action::Nxdomain),
        })
        .collect();
    let e = Explanation {
        query: name.to_string(),
        qtype,
        verdict,
        answer,
        reason,
        order,
        rule,
        shadow,
        shadows,
        jurisdictions: client_juris.iter().map(|j| j.name.clone()).collect(),
        matches,
        kernel_agrees,
        guards,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} {}: {}",
        e.query,
        a.qtype.to_ascii_uppercase(),
        e.verdict
    );
    if let Some(c) = a.client {
        match e.jurisdictions.is_empty() {
            true => println!("  client {c}: in no jurisdiction"),
            false => println!("  client {c}: in {}", e.jurisdictions.join(", ")),
        }
    }
    if let (Some(o), Some(r)) = (&e.order, &e.rule) {
        println!("  decided by {r} (order {o:?})");
    }
    if let Some(answer) = &e.answer {
        println!("  answers {answer}");
    }
    if let Some(r) = e.reason {
        println!("  passed, counted as {r}");
    }
    for (i, sh) in e.shadows.iter().enumerate() {
        match i {
            0 => println!("  shadow: {sh} would have decided"),
            _ => println!("  shadow: {sh} records a hit too (it is next once those before it go)"),
        }
    }
    for m in &e.matches {
        let mark = if m.decides { "*" } else { " " };
        println!(
            "  {mark} {:<8} {:<9} {:<32} order {:?} (precedence {}) [{}] — {}",
            m.kind, m.action, m.name, m.order, m.rank, m.source, m.note
        );
    }
    match e.kernel_agrees {
        Some(true) => {}
        Some(false) => {
            println!("  WARNING: the kernel map disagrees with the recorded rules for this name")
        }
        None => println!("  (blocker is not loaded: nothing is enforced)"),
    }
    for n in &e.guards {
        match &n.refused {
            Some(why) => println!("  guard: a {} block rule here is refused: {why}", n.kind),
            None => println!("  guard: a {} block rule here is accepted", n.kind),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Why an order's rules do not apply to this client at this time (None: they do).
fn order_skip(
    state: &crate::state::StateFile,
    id: u16,
    at: jiff::Timestamp,
    client: &Client,
) -> Option<String> {
    let o = state.order_by_id(id)?;
    if !o.in_force_at(at) {
        let w = |t: Option<jiff::Timestamp>| t.map_or_else(|| "-".to_string(), |t| t.to_string());
        return Some(format!(
            "order not in force at {at} (valid {} to {})",
            w(o.valid_from),
            w(o.valid_until)
        ));
    }
    let mask = state.jurisdiction_mask(o);
    if mask != 0 && mask & client.jurisdictions == 0 {
        return Some(format!(
            "order bound to clients in {} only",
            o.jurisdictions.join(", ")
        ));
    }
    if o.shadow {
        return Some("shadow order: counted, never applied".into());
    }
    None
}
