//! `blocker serve`: a Prometheus exporter reading the pinned maps on every scrape.
//!
//! Blocking does not depend on it: it only reads. Cardinality is bounded: per-rule series
//! exist only for the `--top` most hit rules.
//!
//! The format follows the scrape's Accept header: OpenMetrics 1.0.0 for a client that asks
//! for it (Prometheus does), the Prometheus text format 0.0.4 for everything else (curl,
//! `promtool check metrics`, which reads only 0.0.4). prometheus-client writes OpenMetrics;
//! [`to_text_format`] turns that into 0.0.4, and each response declares the format it holds.

use std::{
    convert::Infallible,
    net::SocketAddr,
    process::ExitCode,
    sync::{atomic::AtomicU64, Arc, Mutex},
};

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::{
    stats::{collect, Report, RuleNames},
    Ctx,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to serve metrics on (localhost by default; /metrics).
    #[arg(long, default_value = "127.0.0.1:9153")]
    pub metrics: SocketAddr,
    /// Number of most hit rules exported with their own series.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
}

type Labels = Vec<(String, String)>;

/// Content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Registers a gauge holding one value.
fn gauge(reg: &mut Registry, name: &str, help: &str, value: i64) {
    let g = Gauge::<i64>::default();
    g.set(value);
    reg.register(name, help, g);
}

/// Whether a scrape's Accept header prefers OpenMetrics to the text format: only when it
/// names `application/openmetrics-text` with a quality at least that of `text/plain` (or a
/// wildcard). No header, or `*/*` alone (curl), gets the text format.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let (mut om, mut text) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| v.trim().parse::<f32>().ok())
                    .flatten()
            })
            .next()
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    om > 0.0 && om >= text
}

/// The Prometheus text format 0.0.4 of prometheus-client's OpenMetrics output, which differs
/// in what [`render`] produces (counters and gauges, no units, help text with nothing to
/// escape) only in two ways: a counter's HELP and TYPE lines name its samples (`_total`),
/// and there is no `# EOF`.
pub fn to_text_format(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let mut out = String::with_capacity(openmetrics.len() + 256);
    for (i, line) in lines.iter().enumerate() {
        if *line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            // prometheus-client writes a family's TYPE line right after its HELP line.
            let counter = lines.get(i + 1) == Some(&format!("# TYPE {name} counter").as_str());
            if counter {
                out.push_str(&format!("# HELP {name}_total{}\n", &rest[name.len()..]));
                continue;
            }
        } else if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|r| r.strip_suffix(" counter"))
        {
            out.push_str(&format!("# TYPE {name}_total counter\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The whole exposition (OpenMetrics), read fresh from the maps (the top rules' names kept in
/// `names` from one scrape to the next while the rules stay the same).
pub fn render(ctx: &Ctx, top: usize, names: &Mutex<RuleNames>) -> Result<String> {
    let report = {
        let mut names = names.lock().unwrap_or_else(|e| e.into_inner());
        collect(ctx, None, top, &mut names)?
    };
    let state = ctx.state_committed()?;
    // Each scrape samples the orders' hits for the compliance report's hits per day.
    if let Ok(maps) = crate::kernel::Maps::open(&ctx.pins) {
        if let Err(e) = crate::compliance::sample_hits(&ctx.dir, &state, &maps) {
            log::warn!("hits per day not sampled: {e}");
        }
    }
    let interfaces: Vec<Attached> = state
        .interfaces
        .iter()
        .map(|(name, i)| Attached {
            name: name.clone(),
            mode: i.mode.clone(),
            up: crate::kernel::link_attached(&ctx.pins, name),
        })
        .collect();
    exposition(&report, state.updated, &interfaces, Some(ctx))
}

/// An interface in the state, and whether its link is pinned.
pub struct Attached {
    pub name: String,
    pub mode: String,
    pub up: bool,
}

/// The OpenMetrics exposition of a report, the time of the last change and the interfaces.
pub fn exposition(
    report: &Report,
    updated: u64,
    interfaces: &[Attached],
    feeds: Option<&Ctx>,
) -> Result<String> {
    let mut reg = Registry::default();

    let packets = Family::<Labels, Counter>::default();
    reg.register(
        "blocker_packets",
        "Packets seen by the XDP program, by exit reason (reason packets counts all)",
        packets.clone(),
    );
    for (reason, n) in &report.reasons {
        packets
            .get_or_create(&vec![("reason".into(), reason.to_string())])
            .inc_by(*n);
    }

    let order_hits = Family::<Labels, Counter>::default();
    reg.register(
        "blocker_order_hits",
        "Queries decided by an order's rules, by action",
        order_hits.clone(),
    );
    let order_rules = Family::<Labels, Gauge>::default();
    reg.register(
        "blocker_order_rules",
        "Rules in an order",
        order_rules.clone(),
    );
    for o in &report.orders {
        order_rules
            .get_or_create(&vec![("order".into(), o.name.clone())])
            .set(o.rules as i64);
        for (action, n) in &o.by_action {
            order_hits
                .get_or_create(&vec![
                    ("order".into(), o.name.clone()),
                    ("action".into(), action.to_string()),
                ])
                .inc_by(*n);
        }
    }

    let rule_hits = Family::<Labels, Counter>::default();
    reg.register(
        "blocker_rule_hits",
        "Hits of the most hit rules (bounded by --top)",
        rule_hits.clone(),
    );
    for r in &report.top_rules {
        rule_hits
            .get_or_create(&vec![
                ("order".into(), r.order.clone()),
                ("name".into(), r.name.clone()),
                ("match".into(), r.kind.to_string()),
                ("action".into(), r.action.to_string()),
            ])
            .inc_by(r.hits);
    }

    gauge(
        &mut reg,
        "blocker_generation",
        "Generation of the rule set the data plane enforces",
        report.generation.into(),
    );
    gauge(
        &mut reg,
        "blocker_last_update_timestamp_seconds",
        "When the rule set last changed (UNIX time)",
        updated as i64,
    );
    // The key filter (absent when off), in base units: its size in bytes, and the fraction of
    // its bits that are set (exact: the size is a power of two). A fill far above one bit per
    // rule name means bits of removed names piled up; the next change rebuilds it.
    if let Some(u) = report.key_filter {
        gauge(
            &mut reg,
            "blocker_key_filter_bytes",
            "Size of the key filter in front of the rule map",
            (u.bits / 8) as i64,
        );
        let fill = Gauge::<f64, AtomicU64>::default();
        fill.set(if u.bits == 0 {
            0.0
        } else {
            u.set as f64 / u.bits as f64
        });
        reg.register(
            "blocker_key_filter_fill_ratio",
            "Fraction of the key filter bits that are set (one or fewer per rule name)",
            fill,
        );
    }
    let attached = Family::<Labels, Gauge>::default();
    reg.register(
        "blocker_interface_attached",
        "1 for each interface the program is attached to",
        attached.clone(),
    );
    for i in interfaces {
        attached
            .get_or_create(&vec![
                ("interface".into(), i.name.clone()),
                ("mode".into(), i.mode.clone()),
            ])
            .set(i.up as i64);
    }

    // Feeds (`blocker feed`), as `blocker follow` last recorded them.
    if let Some(ctx) = feeds {
        super::feed::register_metrics(&mut reg, ctx)?;
    }

    let mut out = String::new();
    encode(&mut out, &reg).context("encoding metrics")?;
    Ok(out)
}

pub fn run(ctx: Ctx, a: Args) -> Result<ExitCode> {
    // Fail now, not at the first scrape, when blocker is not loaded.
    let names = Arc::new(Mutex::new(RuleNames::default()));
    render(&ctx, a.top, &names)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(Arc::new(ctx), a, names))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(ctx: Arc<Ctx>, a: Args, names: Arc<Mutex<RuleNames>>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(a.metrics)
        .await
        .with_context(|| format!("binding {}", a.metrics))?;
    eprintln!("serving Prometheus metrics on http://{}/metrics", a.metrics);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => r?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let ctx = ctx.clone();
        let names = names.clone();
        let top = a.top;
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let ctx = ctx.clone();
                let names = names.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        let om = wants_openmetrics(
                            req.headers()
                                .get(hyper::header::ACCEPT)
                                .and_then(|v| v.to_str().ok()),
                        );
                        match render(&ctx, top, &names) {
                            Ok(body) => Response::builder()
                                .header("content-type", if om { OPENMETRICS } else { TEXT_FORMAT })
                                .header("vary", "accept")
                                .body(Full::new(Bytes::from(if om {
                                    body
                                } else {
                                    to_text_format(&body)
                                }))),
                            Err(e) => Response::builder()
                                .status(500)
                                .body(Full::new(Bytes::from(format!("{e:#}\n")))),
                        }
                    } else {
                        Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"see /metrics\n")))
                    };
                    Ok::<_, Infallible>(
                        resp.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
                    )
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        cli::stats::{OrderReport, RuleReport},
        filter::Usage,
    };

    fn report() -> Report {
        Report {
            generation: 7,
            reasons: BTreeMap::from([("packets", 5), ("nxdomain", 3), ("no_match", 2)]),
            orders: vec![OrderReport {
                id: 1,
                name: "Court-7".into(),
                rules: 1,
                hits: 3,
                by_action: BTreeMap::from([("nxdomain", 3)]),
            }],
            top_rules: vec![RuleReport {
                id: 1,
                name: "bad.example".into(),
                kind: "subtree",
                action: "nxdomain",
                order: "Court-7".into(),
                hits: 3,
            }],
            key_filter: Some(Usage { bits: 512, set: 1 }),
        }
    }

    fn attached() -> Vec<Attached> {
        vec![Attached {
            name: "eth1".into(),
            mode: "native".into(),
            up: true,
        }]
    }

    #[test]
    fn accept_header_picks_the_format() {
        // Prometheus 2.x's scrape Accept header.
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
             version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(wants_openmetrics(Some("Application/OpenMetrics-Text")));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")), "curl");
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text; q=0.2, text/plain"
        )));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
        assert!(wants_openmetrics(Some(
            "text/plain;q=0.3, application/openmetrics-text ; Q = 0.9"
        )));
    }

    #[test]
    fn every_family_has_help_and_base_units() {
        let om = exposition(&report(), 1_700_000_000, &attached(), None).expect("encodes");
        assert!(om.ends_with("# EOF\n"), "{om}");
        let mut families = 0;
        for line in om.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                families += 1;
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(help.len() > 1, "{name}: no help text");
                // Nothing that either format would have to escape.
                assert!(!help.contains(['"', '\\']), "{name}: {help}");
                assert!(!name.contains("bits"), "{name}: base unit is bytes");
            }
        }
        assert_eq!(families, 9, "{om}");
        assert!(om.contains("blocker_key_filter_bytes 64\n"), "{om}");
        assert!(
            om.contains("blocker_key_filter_fill_ratio 0.001953125\n"),
            "{om}"
        );
    }

    #[test]
    fn text_format_names_counters_by_their_samples() {
        let om = exposition(&report(), 1_700_000_000, &attached(), None).expect("encodes");
        let text = to_text_format(&om);
        assert!(!text.contains("# EOF"), "{text}");
        assert!(text.contains(
            "# HELP blocker_packets_total Packets seen by the XDP program, by exit reason \
             (reason packets counts all).\n# TYPE blocker_packets_total counter\n\
             blocker_packets_total{reason="
        ));
        // (A family's series come in hash order.)
        assert!(text.contains("\nblocker_packets_total{reason=\"nxdomain\"} 3\n"));
        assert!(text.contains(
            "# HELP blocker_order_rules Rules in an order.\n# TYPE blocker_order_rules gauge\n"
        ));
        // Same samples, same order.
        let samples = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| !l.starts_with('#'))
                .map(String::from)
                .collect()
        };
        assert_eq!(samples(&om), samples(&text));
    }
}
