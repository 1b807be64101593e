//! The Debian package as an operator installs it (`cargo xtask package`, `dpkg -i` on this
//! machine), and the dashboard's and alert rules' PromQL against a real Prometheus scraping a
//! live `blocker serve`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use blocker_tests::{
    env::{kdig, Blocker, TempDir, Topology, EDGE_V4},
    util::{free_port, http_get, wait_for, KillOnDrop},
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"))
}

fn ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "`{cmd} {}` failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn installed() -> bool {
    String::from_utf8_lossy(&run("dpkg-query", &["-W", "-f=${Status}", "blocker"]).stdout)
        .contains("install ok installed")
}

const STATE: &str = "/var/lib/blocker";
const PINS: &str = "/sys/fs/bpf/blocker";

/// Purges the package and removes what the test created, also when it fails. The test only
/// starts when none of it existed before, so nothing of the machine's is removed.
struct Cleanup {
    made_pins: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if installed() || run("dpkg-query", &["-W", "blocker"]).status.success() {
            let _ = run("dpkg", &["--purge", "blocker"]);
        }
        let _ = std::fs::remove_dir_all(STATE);
        if self.made_pins {
            let _ = std::fs::remove_dir(PINS);
        }
    }
}

#[test]
fn the_package_installs_and_removal_keeps_the_state() {
    assert!(!installed(), "the blocker package is installed already");
    assert!(
        !Path::new(STATE).exists(),
        "{STATE} exists: not touching it"
    );
    assert!(!Path::new(PINS).exists(), "{PINS} exists: not touching it");

    // One build, the way an operator (or CI) makes the package.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args(["xtask", "package"])
        .current_dir(root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo xtask package");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "cargo xtask package: {stdout}");
    let deb = stdout
        .lines()
        .find_map(|l| l.strip_prefix("package: "))
        .expect("the path of the package");

    let mut guard = Cleanup { made_pins: false };
    let install = ok("dpkg", &["-i", deb]);
    assert!(installed(), "{install}");
    assert!(
        install.contains("nothing was attached or started"),
        "{install}"
    );

    // The binary, from /usr/bin (where the units run it).
    let version = ok("/usr/bin/blocker", &["--version"]);
    assert_eq!(
        version.trim(),
        format!("blocker {}", env!("CARGO_PKG_VERSION"))
    );

    // Man pages, found by man itself, for the command and a verb.
    for page in ["blocker", "blocker-rules", "blocker-serve"] {
        let path = ok("man", &["-w", page]);
        assert_eq!(
            path.trim(),
            format!("/usr/share/man/man1/{page}.1.gz"),
            "{page}"
        );
    }
    let text = ok(
        "sh",
        &["-c", "MANWIDTH=200 man -P cat blocker-rules 2>/dev/null"],
    );
    assert!(text.contains("blocker-rules"), "{text}");

    // Completions where the shells look, bash's loadable by bash.
    for (path, needle) in [
        (
            "/usr/share/bash-completion/completions/blocker",
            "complete -F",
        ),
        (
            "/usr/share/zsh/vendor-completions/_blocker",
            "#compdef blocker",
        ),
        (
            "/usr/share/fish/vendor_completions.d/blocker.fish",
            "complete -c blocker",
        ),
    ] {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(text.contains(needle), "{path} lacks {needle:?}");
    }
    let spec = ok(
        "bash",
        &[
            "-c",
            ". /usr/share/bash-completion/completions/blocker && complete -p blocker",
        ],
    );
    assert!(spec.contains("blocker"), "{spec}");

    // The units and the environment file (a conffile).
    let units: Vec<String> = ["restore", "follow", "serve"]
        .iter()
        .map(|u| format!("/lib/systemd/system/blocker-{u}.service"))
        .collect();
    for u in &units {
        assert!(Path::new(u).exists(), "{u}");
    }
    let conffiles = ok("dpkg-query", &["-W", "-f=${Conffiles}", "blocker"]);
    assert!(conffiles.contains("/etc/default/blocker"), "{conffiles}");
    if run("sh", &["-c", "command -v systemd-analyze"])
        .status
        .success()
    {
        let mut args = vec!["verify"];
        args.extend(units.iter().map(String::as_str));
        let out = run("systemd-analyze", &args);
        assert!(
            out.status.success(),
            "systemd-analyze verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if Path::new("/run/systemd/system").exists() {
        for u in ["blocker-restore", "blocker-serve", "blocker-follow"] {
            let active = run("systemctl", &["is-active", u]);
            assert_ne!(String::from_utf8_lossy(&active.stdout).trim(), "active");
        }
    }

    // The dashboard and the alert rules (promtool lints what was installed).
    let dash = std::fs::read_to_string("/usr/share/blocker/blocker-dashboard.json")
        .expect("the dashboard");
    let dash: serde_json::Value = serde_json::from_str(&dash).expect("dashboard JSON");
    assert!(!exprs(&dash).is_empty());
    ok(
        "promtool",
        &["check", "rules", "/usr/share/blocker/blocker-alerts.yml"],
    );

    // Removal leaves the record of orders and the pins; purge deletes the record only.
    let marker = Path::new(STATE).join("package-test-marker");
    std::fs::write(&marker, "kept").expect("marker");
    std::fs::create_dir(PINS).expect("a pins directory");
    guard.made_pins = true;
    let removed = ok("dpkg", &["-r", "blocker"]);
    assert!(!Path::new("/usr/bin/blocker").exists());
    assert_eq!(
        std::fs::read_to_string(&marker).ok().as_deref(),
        Some("kept")
    );
    assert!(Path::new(PINS).is_dir());
    assert!(removed.contains("rm -r /sys/fs/bpf/blocker"), "{removed}");
    ok("dpkg", &["--purge", "blocker"]);
    assert!(!Path::new(STATE).exists(), "purge keeps {STATE}");
    assert!(Path::new(PINS).is_dir(), "purge removed {PINS}");
    drop(guard);
}

/// Every PromQL expression of a Grafana dashboard (its panels' targets and its variables'
/// queries are not PromQL: only targets).
fn exprs(v: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        serde_json::Value::Object(m) => {
            if let Some(e) = m.get("expr").and_then(|e| e.as_str()) {
                out.push(e.to_string());
            }
            for x in m.values() {
                out.extend(exprs(x));
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| out.extend(exprs(x))),
        _ => {}
    }
    out
}

fn prometheus_api(port: u16, path: &str) -> Option<serde_json::Value> {
    let r = http_get(port, path, None)?;
    serde_json::from_str(&r.body).ok()
}

fn query(port: u16, q: &str) -> serde_json::Value {
    try_query(port, q).unwrap_or_else(|| panic!("no answer to {q}"))
}

/// None while Prometheus does not answer (yet).
fn try_query(port: u16, q: &str) -> Option<serde_json::Value> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    prometheus_api(port, &format!("/api/v1/query?query={enc}"))
}

/// The metric names (`blocker_…`) an expression reads.
fn metric_names(e: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = e;
    while let Some(i) = rest.find("blocker_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The reasons an expression selects (`reason="x"`, `reason=~"x|y"`, `reason!="x"`).
fn reasons(e: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = e;
    while let Some(i) = rest.find("reason") {
        let tail = &rest[i + "reason".len()..];
        let tail = tail.trim_start_matches(['=', '~', '!']);
        if let Some(body) = tail.strip_prefix('"') {
            let end = body.find('"').unwrap_or(0);
            out.extend(body[..end].split('|').map(String::from));
        }
        rest = tail;
    }
    out
}

#[test]
fn prometheus_accepts_every_dashboard_and_alert_expression() {
    // A live data plane with a blocked order and traffic through it.
    let mut t = Topology::new();
    t.start_unbound(&["ok.example. 300 IN A 192.0.2.10"]);
    let b = Blocker::new();
    t.attach(&b, "native");
    b.ok(&["rules", "add", "bad.example", "--order", "Court-P"]);
    for name in ["bad.example", "ok.example"] {
        let r = kdig(&t.client, EDGE_V4, name, "A", &["+retry=0", "+timeout=2"]);
        assert!(r.status.is_some(), "{name}: {}", r.raw);
    }
    let port = free_port();
    let _serve = KillOnDrop(
        Command::new(&b.bin)
            .arg("--bpffs")
            .arg(&b.bpffs)
            .arg("--state-dir")
            .arg(&b.state)
            .args(["serve", "--metrics", &format!("127.0.0.1:{port}")])
            .stderr(Stdio::null())
            .spawn()
            .expect("serve"),
    );
    wait_for("blocker serve", Duration::from_secs(30), || {
        http_get(port, "/metrics", None)
    });

    let alerts = root().join("packaging/prometheus/blocker-alerts.yml");
    let dir = TempDir::new("blkt-pkgprom");
    let prom_port = free_port();
    let config = dir.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: blocker\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n",
            alerts.display()
        ),
    );
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
    let _prometheus = KillOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={config}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus"),
    );
    // Enough samples for rate() over the dashboard's windows.
    wait_for("three scrapes", Duration::from_secs(120), || {
        let d = try_query(prom_port, "count_over_time(blocker_generation[1m])")?;
        let n: f64 = d["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
        (n >= 3.0).then_some(())
    });

    // The alert rules: loaded, every one evaluated without error.
    let rules = wait_for("the rules evaluated", Duration::from_secs(60), || {
        let d = prometheus_api(prom_port, "/api/v1/rules")?;
        let rules = d["data"]["groups"][0]["rules"].as_array()?.clone();
        (!rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown")).then_some(rules)
    });
    assert_eq!(rules.len(), 12, "{rules:?}");
    let mut all: Vec<(String, String)> = Vec::new();
    for r in &rules {
        assert_eq!(r["health"], "ok", "{r}");
        all.push((
            format!("alert {}", r["name"]),
            r["query"].as_str().expect("query").to_string(),
        ));
    }

    // The dashboard, with Grafana's variables as Grafana substitutes them for "All".
    let dash = std::fs::read_to_string(root().join("packaging/grafana/blocker-dashboard.json"))
        .expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&dash).expect("dashboard JSON");
    for e in exprs(&dash) {
        let q = e
            .replace("$__rate_interval", "1m")
            .replace("$__range", "5m")
            .replace("$instance", ".*");
        assert!(!q.contains('$'), "unknown variable in {e}");
        all.push(("dashboard".into(), q));
    }
    assert!(all.len() > 20, "{all:?}");

    let produced = query(prom_port, "blocker_packets_total");
    let known_reasons: Vec<String> = produced["data"]["result"]
        .as_array()
        .expect("packets")
        .iter()
        .filter_map(|s| s["metric"]["reason"].as_str().map(String::from))
        .collect();
    for (what, q) in &all {
        let d = query(prom_port, q);
        assert_eq!(d["status"], "success", "{what}: {q}: {d}");
        // blocker_feed_* come from `blocker follow`, which this branch does not have yet:
        // their expressions are only checked to be valid PromQL.
        let feed = q.contains("blocker_feed_");
        for name in metric_names(q) {
            if name.starts_with("blocker_feed_") {
                continue;
            }
            let n = query(prom_port, &format!("count({{__name__=\"{name}\"}})"));
            assert_eq!(
                n["data"]["result"].as_array().map(Vec::len),
                Some(1),
                "{what}: no series {name}: {q}"
            );
        }
        for r in reasons(q) {
            assert!(known_reasons.contains(&r), "{what}: no reason {r}: {q}");
        }
        if what == "dashboard" && !feed {
            let result = d["data"]["result"].as_array().expect("result");
            assert!(!result.is_empty(), "no data for {q}");
        }
    }
    // Nothing is wrong with this data plane: no alert fires or is pending, but the ones about
    // feeds and missing metrics, which cannot (no series).
    let firing = prometheus_api(prom_port, "/api/v1/alerts").expect("alerts");
    assert_eq!(firing["data"]["alerts"], serde_json::json!([]), "{firing}");
}
