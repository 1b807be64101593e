//! `blocker serve`: a Prometheus exporter reading the pinned maps on every scrape.
//!
//! Blocking does not depend on it: it only reads. Cardinality is bounded: per-rule series
//! exist only for the `--top` most hit rules.

use std::{convert::Infallible, net::SocketAddr, process::ExitCode, sync::Arc};

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::{stats::collect, Ctx};

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

/// Registers a gauge holding one value.
fn gauge(reg: &mut Registry, name: &str, help: &str, value: i64) {
    let g = Gauge::<i64>::default();
    g.set(value);
    reg.register(name, help, g);
}

/// The whole exposition, read fresh from the maps.
pub fn render(ctx: &Ctx, top: usize) -> Result<String> {
    let report = collect(ctx, None, top)?;
    let state = ctx.dir.load()?;
    let mut reg = Registry::default();

    let packets = Family::<Labels, Counter>::default();
    reg.register(
        "blocker_packets",
        "Packets seen by the XDP program, by exit reason (reason=\"packets\" counts all)",
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
        state.updated as i64,
    );
    // The key filter (absent when off): a fill far above one bit per rule name means bits of
    // removed names piled up; the next change rebuilds it.
    if let Some(u) = report.key_filter {
        gauge(
            &mut reg,
            "blocker_key_filter_bits",
            "Size of the key filter in front of the rule map",
            u.bits as i64,
        );
        gauge(
            &mut reg,
            "blocker_key_filter_bits_set",
            "Bits set in the key filter (one or fewer per rule name)",
            u.set as i64,
        );
    }
    let attached = Family::<Labels, Gauge>::default();
    reg.register(
        "blocker_interface_attached",
        "1 for each interface the program is attached to",
        attached.clone(),
    );
    for (name, i) in &state.interfaces {
        let up = ctx.pins.link(name).exists() as i64;
        attached
            .get_or_create(&vec![
                ("interface".into(), name.clone()),
                ("mode".into(), i.mode.clone()),
            ])
            .set(up);
    }

    // Feeds (`blocker feed`), as `blocker follow` last recorded them.
    super::feed::register_metrics(&mut reg, ctx)?;

    let mut out = String::new();
    encode(&mut out, &reg).context("encoding metrics")?;
    Ok(out)
}

pub fn run(ctx: Ctx, a: Args) -> Result<ExitCode> {
    // Fail now, not at the first scrape, when blocker is not loaded.
    render(&ctx, a.top)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(Arc::new(ctx), a))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(ctx: Arc<Ctx>, a: Args) -> Result<()> {
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
        let top = a.top;
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let ctx = ctx.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        match render(&ctx, top) {
                            Ok(body) => Response::builder()
                                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                                .body(Full::new(Bytes::from(body))),
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
