//! `cargo xtask demo`: blocker on a throwaway veth pair between two network namespaces,
//! answering real kdig queries in front of a real unbound, then cleaning everything up.
//!
//! ```text
//!  netns blk-demo-client            netns blk-demo-edge
//!  kdig ── demo-c ═══ veth ═══ demo-e ── unbound (local zone, no internet)
//!          192.0.2.1           192.0.2.53      ▲ blocker (XDP, native) answers blocked
//!          2001:db8::1         2001:db8::53      names before they reach unbound
//! ```

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::util::{cargo, ok, root, run as output, step};

const CLIENT: &str = "blk-demo-client";
const EDGE: &str = "blk-demo-edge";
const BPFFS: &str = "/sys/fs/bpf/blocker-demo";

/// Everything the demo creates, removed on drop (also after an error).
struct Demo {
    dir: PathBuf,
    blocker: PathBuf,
    unbound: Option<Child>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut u) = self.unbound.take() {
            let _ = u.kill();
            let _ = u.wait();
        }
        let _ = Command::new(&self.blocker)
            .args(["--bpffs", BPFFS, "--state-dir"])
            .arg(self.dir.join("state"))
            .args(["detach", "--purge"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for ns in [CLIENT, EDGE] {
            let _ = ok("ip", &["netns", "del", ns]);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Demo {
    fn blocker(&self, args: &[&str]) -> Result<String> {
        let mut full: Vec<String> = vec!["--bpffs".into(), BPFFS.into(), "--state-dir".into()];
        full.push(self.dir.join("state").display().to_string());
        full.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        let out = output(&self.blocker.display().to_string(), &refs)?;
        Ok(out)
    }
}

fn sh(cmd: &str, args: &[&str]) -> Result<()> {
    output(cmd, args).map(|_| ())
}

fn unbound_conf(dir: &Path) -> String {
    format!(
        r#"server:
  interface: 192.0.2.53
  interface: 2001:db8::53
  port: 53
  access-control: 0.0.0.0/0 allow
  access-control: ::/0 allow
  username: ""
  chroot: ""
  directory: "{d}"
  pidfile: "{d}/unbound.pid"
  use-syslog: no
  logfile: ""
  do-daemonize: no
  module-config: "iterator"
  # No internet here: everything is answered from local data.
  local-zone: "." static
  local-data: "news.example. 300 IN A 192.0.2.80"
  local-data: "news.example. 300 IN AAAA 2001:db8::80"
  # The blocked names exist too: any NXDOMAIN below comes from blocker, not from unbound.
  local-data: "piracy-streams.example. 300 IN A 192.0.2.66"
  local-data: "www.piracy-streams.example. 300 IN A 192.0.2.66"
  local-data: "cdn.mirror-one.example. 300 IN AAAA 2001:db8::66"
  local-data: "www.football-live.example. 300 IN A 192.0.2.66"
  local-data: "a.wildcard-only.example. 300 IN A 192.0.2.66"
  local-data: "wildcard-only.example. 300 IN A 192.0.2.66"
remote-control:
  control-enable: yes
  control-interface: {d}/unbound.ctl
  control-use-cert: no
"#,
        d = dir.display()
    )
}

const SAMPLE_LIST: &str = "\
# Sample court order (plain list): a bare name blocks the name and every name below it.
piracy-streams.example
||mirror-one.example^
*.wildcard-only.example
https://www.Football-Live.example/watch?id=1
";

fn kdig(server: &str, name: &str, qtype: &str, transport: &str) -> Result<String> {
    let at = format!("@{server}");
    let mut args = vec![
        "netns",
        "exec",
        CLIENT,
        "kdig",
        &at,
        name,
        qtype,
        "+edns",
        "+retry=0",
        "+timeout=2",
    ];
    if transport == "tcp" {
        args.push("+tcp");
    }
    output("ip", &args)
}

fn summary(out: &str) -> String {
    let mut parts = Vec::new();
    for line in out.lines() {
        if let Some(i) = line.find("status: ") {
            let s = &line[i + 8..];
            parts.push(s.split(';').next().unwrap_or(s).trim().to_string());
        }
        if line.starts_with(";; EDE:") {
            parts.push(line.trim_start_matches(";; ").to_string());
        }
        let l = line.trim();
        if !l.starts_with(';') && (l.contains("\tA\t") || l.contains("\tAAAA\t")) {
            parts.push(l.split_whitespace().last().unwrap_or("").to_string());
        }
    }
    parts.join("  ")
}

pub fn run() -> Result<()> {
    step("build");
    cargo(&["build", "--release", "--locked", "-p", "blocker-userspace"])?;
    let blocker = root().join("target/release/blocker");
    let dir = std::env::temp_dir().join(format!("blocker-demo-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    for ns in [CLIENT, EDGE] {
        if Path::new("/run/netns").join(ns).exists() {
            let _ = ok("ip", &["netns", "del", ns]);
        }
    }
    // What a demo interrupted before its cleanup (Ctrl-C) left pinned: its state directory
    // was another, so its pins would not match this run's.
    if Path::new(BPFFS).exists() {
        let _ = fs::remove_dir_all(BPFFS);
    }
    let mut demo = Demo {
        dir: dir.clone(),
        blocker,
        unbound: None,
    };

    step("network: two namespaces joined by a veth pair");
    sh("ip", &["netns", "add", CLIENT])?;
    sh("ip", &["netns", "add", EDGE])?;
    sh(
        "ip",
        &[
            "link", "add", "demo-c", "netns", CLIENT, "type", "veth", "peer", "name", "demo-e",
            "netns", EDGE,
        ],
    )?;
    for (ns, dev, v4, v6) in [
        (CLIENT, "demo-c", "192.0.2.1/24", "2001:db8::1/64"),
        (EDGE, "demo-e", "192.0.2.53/24", "2001:db8::53/64"),
    ] {
        sh("ip", &["-n", ns, "addr", "add", v4, "dev", dev])?;
        sh("ip", &["-n", ns, "addr", "add", v6, "dev", dev, "nodad"])?;
        sh("ip", &["-n", ns, "link", "set", dev, "up"])?;
        sh("ip", &["-n", ns, "link", "set", "lo", "up"])?;
    }
    println!("{CLIENT}/demo-c 192.0.2.1 2001:db8::1  <->  {EDGE}/demo-e 192.0.2.53 2001:db8::53");

    step("unbound in the edge namespace (local zone only)");
    let conf = dir.join("unbound.conf");
    fs::write(&conf, unbound_conf(&dir))?;
    let child = Command::new("ip")
        .args(["netns", "exec", EDGE, "unbound", "-d", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting unbound")?;
    demo.unbound = Some(child);
    let mut up = false;
    for _ in 0..50 {
        if output(
            "ip",
            &[
                "netns",
                "exec",
                CLIENT,
                "kdig",
                "@192.0.2.53",
                "news.example",
                "+retry=0",
                "+timeout=1",
            ],
        )
        .map(|o| o.contains("NOERROR"))
        .unwrap_or(false)
        {
            up = true;
            break;
        }
        sleep(Duration::from_millis(100));
    }
    if !up {
        bail!("unbound did not answer in the edge namespace");
    }
    println!(
        "before blocking: piracy-streams.example -> {}",
        summary(&kdig("192.0.2.53", "piracy-streams.example", "A", "udp")?)
    );

    step("blocker: attach to the edge veth, load a court order");
    print!(
        "{}",
        demo.blocker(&["attach", "--iface", "demo-e", "--netns", EDGE, "--mode", "native"])?
    );
    // Native XDP_TX on a veth reaches the peer only if the peer runs XDP too (a real NIC
    // needs nothing of the kind): the client end gets blocker's no-op program.
    print!(
        "{}",
        demo.blocker(&["attach", "--iface", "demo-c", "--netns", CLIENT, "--noop"])?
    );
    let list = dir.join("court-order-sample.txt");
    fs::write(&list, SAMPLE_LIST)?;
    println!("{SAMPLE_LIST}");
    print!(
        "{}",
        demo.blocker(&[
            "rules",
            "load",
            &list.display().to_string(),
            "--order",
            "Tribunale-Milano-RG-12345-2026",
            "--ede-text",
            "Blocked by order of the Court of Milan, RG 12345/2026",
        ])?
    );

    step("queries from the client namespace (kdig)");
    let unbound_queries = || -> u64 {
        output(
            "unbound-control",
            &["-c", &conf.display().to_string(), "stats_noreset"],
        )
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("total.num.queries="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
    };
    let before = unbound_queries();
    let queries = [
        ("192.0.2.53", "piracy-streams.example", "A", "udp"),
        ("192.0.2.53", "www.piracy-streams.example", "A", "udp"),
        ("2001:db8::53", "cdn.mirror-one.example", "AAAA", "udp"),
        ("192.0.2.53", "www.football-live.example", "A", "udp"),
        ("192.0.2.53", "a.wildcard-only.example", "A", "udp"),
        ("192.0.2.53", "wildcard-only.example", "A", "udp"),
        ("192.0.2.53", "news.example", "A", "udp"),
        ("2001:db8::53", "news.example", "AAAA", "udp"),
        // The same court order over TCP (`dig +tcp`): answered inside the connection.
        ("192.0.2.53", "www.piracy-streams.example", "A", "tcp"),
        ("2001:db8::53", "cdn.mirror-one.example", "AAAA", "tcp"),
        ("192.0.2.53", "news.example", "A", "tcp"),
    ];
    for (server, name, qtype, transport) in queries {
        println!(
            "{name:<30} {qtype:<5} via {server:<13} {transport} -> {}",
            summary(&kdig(server, name, qtype, transport)?)
        );
    }
    let reached = unbound_queries() - before;
    println!(
        "unbound received {reached} of these {} queries: the blocked ones were answered by XDP and never reached it",
        queries.len()
    );

    step("blocker explain www.piracy-streams.example");
    print!(
        "{}",
        demo.blocker(&["explain", "www.piracy-streams.example"])?
    );
    step("blocker status");
    print!("{}", demo.blocker(&["status"])?);
    step("blocker stats");
    print!("{}", demo.blocker(&["stats"])?);

    step("cleanup");
    drop(demo);
    println!("removed namespaces, pins and state");
    Ok(())
}
