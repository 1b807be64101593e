//! The harness's command line (`cargo xtask bench` passes `--blocker`, `--json`,
//! `--markdown`, `--readme` and, when asked, `--quick`, `--parts` and `--render`).

use std::path::PathBuf;

use clap::Parser;

/// The parts of the benchmark, in the order they run.
pub const PARTS: [&str; 5] = ["kernel", "structures", "e2e", "latency", "fleet"];

/// Measures blocker and writes the JSON results and the results section of the markdown.
#[derive(Parser, Debug)]
#[command(name = "blocker-bench")]
pub struct Args {
    /// Fewer rule counts and shorter end-to-end runs (results kept apart from full runs).
    #[arg(long)]
    pub quick: bool,
    /// Which parts to run, comma-separated (all by default); the others keep their previous
    /// results.
    #[arg(long, value_delimiter = ',', value_parser = PARTS, default_values = PARTS)]
    pub parts: Vec<String>,
    /// Only rewrite the markdown from the JSON results.
    #[arg(long)]
    pub render: bool,
    /// The blocker binary to measure.
    #[arg(long, value_name = "PATH", default_value = "target/release/blocker")]
    pub blocker: PathBuf,
    /// Where the JSON results are read (parts not run keep theirs) and written.
    #[arg(long, value_name = "PATH", default_value = "bench/results.json")]
    pub json: PathBuf,
    /// Fleet part: records of the RPZ zone.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub fleet_records: usize,
    /// Fleet part: names changed by each IXFR.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub fleet_changes: usize,
    /// The markdown file whose results section is rewritten.
    #[arg(long, value_name = "PATH", default_value = "BENCHMARKS.md")]
    pub markdown: PathBuf,
    /// The README whose summary (between its markers) is rewritten from the same results.
    #[arg(long, value_name = "PATH", default_value = "README.md")]
    pub readme: PathBuf,
}
