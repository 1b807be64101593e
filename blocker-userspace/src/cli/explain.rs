//! `blocker explain`: which rule and order would decide a query, and why.

use std::{collections::HashMap, process::ExitCode};

use anyhow::Result;
use blocker_common::{
    dns::{find_rule, parse_query, Scratch, LOAD_MAX},
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
    order: Option<String>,
    rule: Option<String>,
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

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let qtype = parse_qtype(&a.qtype)?;
    let name =
        blocker_lists::normalize_name(&a.name).map_err(|e| anyhow::anyhow!("{:?}: {e}", a.name))?;
    let state = ctx.state()?;
    let mut all: Vec<(String, Vec<Rule>, u16)> = Vec::new();
    for o in &state.orders {
        all.push((o.name.clone(), ctx.dir.read_rules(o)?, o.id));
    }

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
                } else {
                    "applies".to_string()
                };
                matches.push(Match {
                    name: r.name.to_string(),
                    kind: r.kind.as_str(),
                    action: r.action.as_str(),
                    qtypes: qtypes_display(r.qtypes),
                    order: oname.clone(),
                    source: r.source.to_string(),
                    note,
                    decides: false,
                });
            }
        }
        if !cands.is_empty() {
            sets.insert(key, merge(&cands));
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
    let decided = find_rule(&cfg, &secret, &mut s, &q, |k| sets.get(k).copied());

    let (mut verdict, mut order, mut rule) = ("pass (no rule)", None, None);
    if let Some(slot) = decided {
        let a = Action::from_u8(slot.action);
        verdict = a.as_str();
        for (oname, rules, oid) in &all {
            if *oid == slot.order_id {
                order = Some(oname.clone());
                if let Some(r) = rules.iter().find(|r| r.id == slot.rule_id) {
                    rule = Some(format!("{} {}", r.kind.as_str(), r.name));
                    for m in matches.iter_mut() {
                        if m.order == *oname
                            && m.name == r.name.to_string()
                            && m.kind == r.kind.as_str()
                        {
                            m.decides = true;
                            m.note = "decides: the most specific rule that applies".into();
                        }
                    }
                }
            }
        }
        for m in matches.iter_mut() {
            if !m.decides && m.note == "applies" {
                m.note = "applies, but a more specific or higher-precedence rule decides".into();
            }
        }
    }

    // Cross-check the kernel: each suffix's entry must hold what the state says.
    let mut kernel_agrees = None;
    if ctx.pins.loaded() {
        let maps = crate::kernel::Maps::open(&ctx.pins)?;
        let kcfg = maps.config()?;
        let active = (kcfg.active & 1) as usize;
        let mut agree = true;
        for suffix in &suffixes {
            let key = key_of_canonical(&secret, suffix);
            let kernel = maps
                .rules
                .get(&key, 0)
                .ok()
                .map(|v| v.sets[active])
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
        order,
        rule,
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
    if let (Some(o), Some(r)) = (&e.order, &e.rule) {
        println!("  decided by {r} (order {o:?})");
    }
    for m in &e.matches {
        let mark = if m.decides { "*" } else { " " };
        println!(
            "  {mark} {:<8} {:<9} {:<32} order {:?} [{}] — {}",
            m.kind, m.action, m.name, m.order, m.source, m.note
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
