//! The CLI surface the operator workflow test does not reach, through the real binary against
//! the attached program in network namespaces, checked with real kdig answers: `top` and
//! `stats --watch` (long-running, read while they run), `config show/set --port`, the
//! `attach --mode auto` fallback to skb, `--capacity` and the rule map's growth, RPZ files
//! with `--rpz-origin`, hosts files, and rules limited to query types.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    sync::mpsc::{channel, Receiver},
    time::{Duration, Instant},
};

use blocker_tests::{
    env::{kdig, Blocker, Kdig, TempDir, Topology, EDGE_V4},
    util::KillOnDrop,
};

const Q: &[&str] = &["+retry=0", "+timeout=2", "+edns"];

fn query(t: &Topology, name: &str, qtype: &str) -> Kdig {
    kdig(&t.client, EDGE_V4, name, qtype, Q)
}

/// Answered by blocker: NXDOMAIN with EDE 16 and the order's text.
fn blocked(t: &Topology, name: &str, qtype: &str, text: &str) {
    let r = query(t, name, qtype);
    assert_eq!(
        r.status.as_deref(),
        Some("NXDOMAIN"),
        "{name} {qtype}: {}",
        r.raw
    );
    assert_eq!(
        r.ede,
        Some((16, text.to_string())),
        "{name} {qtype}: {}",
        r.raw
    );
}

/// Answered by unbound: NOERROR, no EDE, one record.
fn resolved(t: &Topology, name: &str, qtype: &str) {
    let r = query(t, name, qtype);
    assert_eq!(
        (r.status.as_deref(), &r.ede),
        (Some("NOERROR"), &None),
        "{name} {qtype} should reach unbound: {}",
        r.raw
    );
    assert_eq!(
        r.answers.len(),
        1,
        "{name} {qtype}: unbound's answer: {}",
        r.raw
    );
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad JSON ({e}): {text}"))
}

fn generation(b: &Blocker) -> u64 {
    json(&b.ok(&["status", "--json"]))["generation"]
        .as_u64()
        .expect("generation")
}

/// (name, match, action, qtypes) of every rule of an order.
fn rules_of(b: &Blocker, order: &str) -> Vec<(String, String, String, String)> {
    let v = json(&b.ok(&["rules", "list", "--order", order, "--json"]));
    let mut out: Vec<_> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("match"), s("action"), s("qtypes"))
        })
        .collect();
    out.sort();
    out
}

fn rule(name: &str, kind: &str, action: &str, qtypes: &str) -> (String, String, String, String) {
    (name.into(), kind.into(), action.into(), qtypes.into())
}

/// A long-running blocker command (stdout a pipe, so not a terminal) whose lines are read on
/// a thread; killed on drop.
struct Running {
    lines: Receiver<String>,
    _child: KillOnDrop,
}

impl Running {
    fn start(b: &Blocker, args: &[&str]) -> Running {
        let mut child = b
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn blocker");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            lines,
            _child: KillOnDrop(child),
        }
    }

    /// The next line; panics when none comes before a generous deadline or the output ends.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a line of output (the command stalled or exited)")
    }
}

#[test]
fn top_shows_the_busiest_order_first_in_plain_text() {
    let mut t = Topology::new();
    t.start_unbound(&[]);
    let b = Blocker::new();
    t.attach(&b, "native");
    // The quiet order first, and first in the alphabet: only the hits can put the busy one
    // above it.
    b.ok(&["rules", "add", "quiet.example", "--order", "A-quiet"]);
    b.ok(&[
        "rules",
        "add",
        "busy.example",
        "--subtree",
        "--order",
        "Z-busy",
    ]);
    for name in ["busy.example", "www.busy.example", "cdn.busy.example"] {
        blocked(&t, name, "A", "Z-busy");
    }
    blocked(&t, "quiet.example", "A", "A-quiet");

    // stdout is a pipe: plain frames, no terminal control sequences, one per refresh.
    let out = b.ok(&["top", "--iterations", "2", "--delay", "0.2", "-n", "5"]);
    assert!(
        !out.contains('\u{1b}'),
        "escape sequences in piped output: {out:?}"
    );
    let frames: Vec<&str> = out
        .split("blocker top — ")
        .filter(|f| !f.is_empty())
        .collect();
    assert_eq!(frames.len(), 2, "two refreshes: {out}");
    for f in frames {
        assert!(f.contains("blocked 4 "), "3 + 1 blocked queries: {f}");
        let rows: Vec<Vec<&str>> = f.lines().map(|l| l.split_whitespace().collect()).collect();
        // Order rows: HITS/S HITS ORDER.
        let pos = |order: &str| {
            rows.iter()
                .position(|r| r.len() == 3 && r[2] == order)
                .unwrap_or_else(|| panic!("no row for {order}: {f}"))
        };
        let (busy, quiet) = (pos("Z-busy"), pos("A-quiet"));
        assert!(busy < quiet, "busiest order first: {f}");
        assert_eq!(rows[busy][1], "3", "{f}");
        assert_eq!(rows[quiet][1], "1", "{f}");
        // Rule rows: HITS/S HITS MATCH ACTION NAME ORDER; the busiest first.
        let first_rule = rows
            .iter()
            .find(|r| r.len() == 6 && r[2] != "MATCH")
            .unwrap_or_else(|| panic!("no rule rows: {f}"));
        assert_eq!(
            first_rule[1..],
            ["3", "subtree", "nxdomain", "busy.example", "Z-busy"],
            "{f}"
        );
    }
}

#[test]
fn stats_watch_refreshes_with_new_counts_and_rates() {
    let mut t = Topology::new();
    t.start_unbound(&[]);
    let b = Blocker::new();
    t.attach(&b, "native");
    b.ok(&["rules", "add", "bad.example", "--order", "W"]);
    blocked(&t, "bad.example", "A", "W");

    // JSON: one report per line; a query sent while it runs shows in a later refresh.
    let w = Running::start(&b, &["stats", "--watch", "0.2", "--json"]);
    let nx = |line: &str| {
        json(line)["reasons"]["nxdomain"]
            .as_u64()
            .expect("nxdomain")
    };
    assert_eq!(nx(&w.line()), 1);
    blocked(&t, "bad.example", "A", "W");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = nx(&w.line());
        assert!(n <= 2, "{n} nxdomain counted for 2 queries");
        if n == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the new query never showed");
    }
    drop(w);

    // Tables: every refresh after the first has a rate column.
    let w = Running::start(&b, &["stats", "--watch", "0.2"]);
    let mut refreshes: Vec<Vec<String>> = Vec::new();
    while refreshes.len() < 4 {
        let l = w.line();
        if l.starts_with("generation ") {
            refreshes.push(Vec::new());
        }
        if let Some(r) = refreshes.last_mut() {
            r.push(l);
        }
    }
    refreshes.pop(); // possibly incomplete
    let nxdomain_row = |r: &Vec<String>| -> String {
        r.iter()
            .find(|l| l.starts_with("nxdomain "))
            .cloned()
            .unwrap_or_else(|| panic!("no nxdomain row: {r:?}"))
    };
    let first = nxdomain_row(&refreshes[0]);
    assert_eq!(
        first.split_whitespace().collect::<Vec<_>>(),
        ["nxdomain", "2"]
    );
    for r in &refreshes[1..] {
        let row = nxdomain_row(r);
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["nxdomain", "2", "0.0/s"],
            "no new queries: a rate of 0: {r:?}"
        );
    }
}

#[test]
fn config_port_moves_inspection_to_the_new_port() {
    let mut t = Topology::new();
    t.start_unbound(&["bad.example. 300 IN A 192.0.2.10"]);
    let b = Blocker::new();
    t.attach(&b, "native");
    b.ok(&["rules", "add", "bad.example", "--order", "Ports"]);
    let at = |port: &str| {
        kdig(
            &t.client,
            EDGE_V4,
            "bad.example",
            "A",
            &[Q[0], Q[1], Q[2], "-p", port],
        )
    };

    let show = json(&b.ok(&["config", "show", "--json"]));
    assert_eq!(show["ports"], serde_json::json!([53]), "{show}");
    let r = at("53");
    assert_eq!(r.status.as_deref(), Some("NXDOMAIN"), "{}", r.raw);
    // Nothing listens on 5353 and blocker does not look there: no DNS answer at all.
    let other = b.reason("other_port");
    let r = at("5353");
    assert_eq!(r.status, None, "{}", r.raw);
    assert_eq!(b.reason("other_port"), other + 1, "counted as another port");

    b.ok(&["config", "set", "--port", "5353"]);
    let show = b.ok(&["config", "show"]);
    assert!(
        show.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["ports", "5353"]),
        "{show}"
    );
    // The old port is no longer inspected: unbound answers; the new one is.
    let r = at("53");
    assert_eq!(
        (r.status.as_deref(), r.answers.len(), &r.ede),
        (Some("NOERROR"), 1, &None),
        "{}",
        r.raw
    );
    let r = at("5353");
    assert_eq!(r.status.as_deref(), Some("NXDOMAIN"), "{}", r.raw);
    assert_eq!(r.ede, Some((16, "Ports".to_string())), "{}", r.raw);

    // Two ports.
    b.ok(&["config", "set", "--port", "53", "--port", "5353"]);
    assert_eq!(
        json(&b.ok(&["config", "show", "--json"]))["ports"],
        serde_json::json!([53, 5353])
    );
    for port in ["53", "5353"] {
        let r = at(port);
        assert_eq!(
            r.status.as_deref(),
            Some("NXDOMAIN"),
            "port {port}: {}",
            r.raw
        );
    }
}

#[test]
fn auto_mode_falls_back_to_skb_where_native_xdp_is_refused() {
    let mut t = Topology::new();
    t.start_unbound(&[]);
    // A veth whose peer's MTU does not fit in one page: the kernel refuses native XDP to a
    // program that does not handle multi-buffer frames (ERANGE); generic XDP takes it.
    for (ns, dev) in [(&t.client, &t.client_dev), (&t.edge, &t.edge_dev)] {
        ns.must("ip", &["link", "set", dev, "mtu", "9000"]);
    }
    let b = Blocker::new();
    let edge = [
        "--iface",
        t.edge_dev.as_str(),
        "--netns",
        t.edge.name.as_str(),
    ];
    let err = b.fails(&[&["attach", "--mode", "native"][..], &edge].concat());
    assert!(
        err.contains(&format!("attaching to {}@{}", t.edge_dev, t.edge.name)),
        "{err}"
    );

    let out = b.ok(&[&["attach", "--mode", "auto"][..], &edge].concat());
    assert!(
        out.contains("native XDP failed") && out.contains("falling back to skb mode"),
        "the fallback is said: {out}"
    );
    assert!(out.contains("attached (skb)"), "{out}");
    let link = t.edge.must("ip", &["link", "show", "dev", &t.edge_dev]);
    assert!(
        link.contains("xdpgeneric"),
        "generic XDP in the kernel: {link}"
    );
    let st = json(&b.ok(&["status", "--json"]));
    let iface = &st["interfaces"][0];
    assert_eq!(iface["mode"], "skb", "{st}");
    assert_eq!(iface["attached"], true, "{st}");

    // And it enforces: real queries through the fallback.
    b.ok(&["rules", "add", "bad.example", "--order", "Fallback"]);
    blocked(&t, "bad.example", "A", "Fallback");
    blocked(&t, "bad.example", "AAAA", "Fallback");
}

/// The edge interface's VLAN tag stripping as ethtool shows it (`rx-vlan-offload`,
/// `rx-vlan-stag-hw-parse`).
fn vlan_stripping(t: &Topology) -> Vec<String> {
    t.edge
        .must("ethtool", &["-k", &t.edge_dev])
        .lines()
        .filter(|l| l.starts_with("rx-vlan-offload:") || l.starts_with("rx-vlan-stag-hw-parse:"))
        .map(str::to_string)
        .collect()
}

/// A NIC that strips VLAN tags before XDP would make the answers to tagged queries leave
/// untagged: attach turns stripping off, unless --keep-vlan-offload (veth strips nothing
/// itself, so this checks the interface's features, as ethtool reads them).
#[test]
fn attach_turns_vlan_tag_stripping_off() {
    let t = Topology::new();
    let on = |t: &Topology| {
        for f in ["rxvlan", "rx-vlan-stag-hw-parse"] {
            t.edge.must("ethtool", &["-K", &t.edge_dev, f, "on"]);
        }
    };
    on(&t);
    assert_eq!(
        vlan_stripping(&t),
        ["rx-vlan-offload: on", "rx-vlan-stag-hw-parse: on"]
    );
    let b = Blocker::new();
    let out = t.attach(&b, "native");
    assert!(
        out.contains("VLAN tag stripping turned off (rx-vlan-hw-parse, rx-vlan-stag-hw-parse)"),
        "{out}"
    );
    assert_eq!(
        vlan_stripping(&t),
        ["rx-vlan-offload: off", "rx-vlan-stag-hw-parse: off"]
    );
    b.ok(&[
        "detach",
        "--iface",
        &format!("{}@{}", t.edge_dev, t.edge.name),
    ]);
    on(&t);
    let out = b.ok(&[
        "attach",
        "--iface",
        &t.edge_dev,
        "--netns",
        &t.edge.name,
        "--keep-vlan-offload",
    ]);
    assert!(!out.contains("VLAN"), "{out}");
    assert_eq!(
        vlan_stripping(&t),
        ["rx-vlan-offload: on", "rx-vlan-stag-hw-parse: on"]
    );
}

/// An interface that goes away and comes back (a bond or VLAN re-created, a driver reloaded)
/// leaves its link pinned but detached by the kernel: `status` and the metrics say so, and
/// `attach` (what the restore unit runs) attaches it again instead of saying "already".
#[test]
fn a_recreated_interface_is_seen_detached_and_attached_again() {
    let ns = blocker_tests::env::NetNs::new("blkv");
    let up = |ns: &blocker_tests::env::NetNs| {
        ns.must(
            "ip",
            &["link", "add", "vx0", "type", "veth", "peer", "name", "vx1"],
        );
        ns.must("ip", &["link", "set", "vx0", "up"]);
        ns.must("ip", &["link", "set", "vx1", "up"]);
    };
    up(&ns);
    let b = Blocker::new();
    let iface = format!("vx0@{}", ns.name);
    b.ok(&[
        "attach", "--iface", "vx0", "--netns", &ns.name, "--mode", "skb",
    ]);
    let attached = |b: &Blocker| -> (bool, bool) {
        let st: serde_json::Value =
            serde_json::from_str(&b.ok(&["status", "--json"])).expect("json");
        let i = st["interfaces"]
            .as_array()
            .and_then(|v| v.iter().find(|i| i["name"] == iface.as_str()).cloned())
            .unwrap_or_else(|| panic!("{st}"));
        (i["attached"] == true, i["defunct"] == true)
    };
    assert_eq!(attached(&b), (true, false));
    ns.must("ip", &["link", "del", "vx0"]);
    up(&ns);
    assert_eq!(
        attached(&b),
        (false, true),
        "the link outlived its interface"
    );
    let out = b.ok(&[
        "attach", "--iface", "vx0", "--netns", &ns.name, "--mode", "skb",
    ]);
    assert!(
        out.contains("defunct") && out.contains("attached (skb)"),
        "{out}"
    );
    assert_eq!(attached(&b), (true, false));
    let xdp = ns.must("ip", &["-d", "link", "show", "vx0"]);
    assert!(xdp.contains("xdpgeneric"), "{xdp}");

    // Recorded without a link (as after a reboot whose restore unit does not list it):
    // `detach --iface` forgets it, so the not-attached alert can be put right.
    std::fs::remove_file(b.bpffs.join("links").join(&iface)).expect("remove the pin");
    assert_eq!(attached(&b), (false, false));
    let out = b.ok(&["detach", "--iface", &iface]);
    assert!(out.contains("forgotten"), "{out}");
    let st: serde_json::Value = serde_json::from_str(&b.ok(&["status", "--json"])).expect("json");
    assert_eq!(st["interfaces"], serde_json::json!([]), "{st}");
}

#[test]
fn a_change_beyond_the_capacity_grows_the_rule_map() {
    let mut t = Topology::new();
    let data: Vec<String> = ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .map(|n| format!("{n}.example. 300 IN A 192.0.2.10"))
        .collect();
    t.start_unbound(&data.iter().map(String::as_str).collect::<Vec<_>>());
    let b = Blocker::new();
    let edge = [
        "attach",
        "--iface",
        t.edge_dev.as_str(),
        "--netns",
        t.edge.name.as_str(),
        "--mode",
        "native",
        "--capacity",
        "4",
    ];
    let out = b.ok(&edge);
    assert!(out.contains("capacity 4 names"), "{out}");
    b.ok(&[
        "attach",
        "--iface",
        &t.client_dev,
        "--netns",
        &t.client.name,
        "--noop",
    ]);
    assert_eq!(json(&b.ok(&["status", "--json"]))["capacity"], 4);
    let lists = TempDir::new("blkt-cap");
    let l1 = lists.write("o1.txt", "a.example\nb.example\nc.example\n");
    b.ok(&["rules", "load", &l1, "--order", "Cap"]);
    blocked(&t, "a.example", "A", "Cap");

    // Three rules in force and five new need eight at once: the maps grow to eight (twice
    // the capacity, or the next power of two of the need), then the change is made.
    let big = lists.write(
        "big.txt",
        "d.example\ne.example\nf.example\ng.example\nh.example\n",
    );
    let g = generation(&b);
    let out = b.run(&["rules", "load", &big, "--order", "Big"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("the rule map grew from 4 to 8 rules"), "{err}");
    assert_eq!(json(&b.ok(&["status", "--json"]))["capacity"], 8);
    assert_eq!(generation(&b), g + 1, "one change, the growth is none");
    for n in ["a.example", "b.example", "c.example"] {
        blocked(&t, n, "A", "Cap");
    }
    for n in ["d.example", "e.example", "f.example", "g.example"] {
        blocked(&t, n, "A", "Big");
    }
    // Old and new rules coexist until the switch: replacing Cap's three rules by three
    // others needs 3 + 5 + 3 = 11 at once: 8 → 16.
    let other = lists.write("o1c.txt", "x.example\ny.example\nz.example\n");
    let out = b.run(&["rules", "load", &other, "--order", "Cap"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("grew from 8 to 16 rules"), "{err}");
    resolved(&t, "a.example", "A");
    // Room enough: no growth.
    b.ok(&["orders", "remove", "Big"]);
    let out = b.run(&["rules", "load", &l1, "--order", "Cap"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("grew"), "{err}");
    assert_eq!(json(&b.ok(&["status", "--json"]))["capacity"], 16);
    blocked(&t, "a.example", "A", "Cap");
    resolved(&t, "d.example", "A");
    // Room asked for up front, on the loaded blocker: it grows now; never shrinks.
    let mut again = edge.to_vec();
    again.pop();
    again.push("100");
    let out = b.ok(&again);
    assert!(
        out.contains("the rule map grew from 16 to 100 rules") && out.contains("already attached"),
        "{out}"
    );
    assert_eq!(json(&b.ok(&["status", "--json"]))["capacity"], 100);
    blocked(&t, "a.example", "A", "Cap");
    again.pop();
    again.push("50");
    assert!(b.ok(&again).contains("holds 100 rules already"));
    assert_eq!(json(&b.ok(&["status", "--json"]))["capacity"], 100);
}

/// The maps grow for a change that is made, never for one refused: a change that would put
/// seven orders' rules at one name is refused whole, its need for a larger map included.
#[test]
fn a_refused_change_does_not_grow_the_maps() {
    let b = Blocker::new();
    let lists = TempDir::new("blkt-refgrow");
    let one = lists.write("x.txt", "x.example\n");
    for i in 0..6 {
        b.ok(&["rules", "load", &one, "--order", &format!("O{i}")]);
    }
    let capacity = |b: &Blocker| {
        json(&b.ok(&["status", "--json"]))["capacity"]
            .as_u64()
            .expect("capacity")
    };
    let cap = capacity(&b);
    let names: String = (0..cap + 10).map(|i| format!("n{i}.example\n")).collect();
    let crowded = lists.write("crowded.txt", &format!("x.example\n{names}"));
    let g = generation(&b);
    let out = b.run(&["rules", "load", &crowded, "--order", "O6"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("at one name") && !err.contains("grew"),
        "{err}"
    );
    assert_eq!((capacity(&b), generation(&b)), (cap, g), "nothing changed");
    // Without the crowded name the change is made, the maps grown first.
    let fine = lists.write("fine.txt", &names);
    let out = b.run(&["rules", "load", &fine, "--order", "O6"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "the rule map grew from {cap} to {} rules",
            2 * cap
        )),
        "{err}"
    );
    assert_eq!((capacity(&b), generation(&b)), (2 * cap, g + 1));
}

#[test]
fn a_first_load_creates_maps_sized_for_its_list() {
    // Nothing is loaded yet: the first `rules load` creates the maps, sized for the rules it
    // keeps (the next power of two, at least the default capacity), not small and then grown.
    let capacity = |b: &Blocker| {
        json(&b.ok(&["status", "--json"]))["capacity"]
            .as_u64()
            .expect("capacity")
    };
    let lists = TempDir::new("blkt-firstsize");
    let small = lists.write("small.txt", "s.example\n");
    let b = Blocker::new();
    let out = b.run(&["rules", "load", &small, "--order", "S"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("capacity 65536 names"),
        "{err}"
    );
    assert_eq!(capacity(&b), 65_536);

    // Two files of the same 70,000 names: 70,000 rules kept, 140,000 read.
    let n = 70_000;
    let names: String = (0..n).map(|i| format!("f{i}.example\n")).collect();
    let one = lists.write("big.txt", &names);
    let again = lists.write("big-again.txt", &names);
    let b = Blocker::new();
    let out = b.run(&["rules", "load", &one, &again, "--order", "Big"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("capacity 131072 names") && !err.contains("grew"),
        "{err}"
    );
    assert_eq!(capacity(&b), 131_072);
    assert_eq!(rules_of(&b, "Big").len(), n);
}

#[test]
fn rpz_origin_is_stripped_from_full_owners() {
    let mut t = Topology::new();
    t.start_unbound(&[
        "www.bad.example. 300 IN A 192.0.2.10",
        "wild.example. 300 IN A 192.0.2.10",
        "bad.example. 300 IN A 192.0.2.10",
    ]);
    let b = Blocker::new();
    t.attach(&b, "native");
    let lists = TempDir::new("blkt-rpz");
    // No SOA, no $ORIGIN: the owners are written in full, under the zone rpz.local.
    let zone = lists.write(
        "policy.rpz",
        "bad.example.rpz.local. 60 IN CNAME .\n*.wild.example.rpz.local. 60 IN CNAME *.\n",
    );

    // Without --rpz-origin the owners are taken as they are.
    b.ok(&["rules", "load", &zone, "--order", "Raw"]);
    assert_eq!(
        rules_of(&b, "Raw"),
        [
            rule("bad.example.rpz.local", "exact", "nxdomain", "all"),
            rule("wild.example.rpz.local", "below", "nodata", "all"),
        ]
    );
    resolved(&t, "bad.example", "A");
    b.ok(&["orders", "remove", "Raw"]);

    // An origin the owners are not under: refused, naming file and line, nothing changed.
    let g = generation(&b);
    let err = b.fails(&[
        "rules",
        "load",
        &zone,
        "--order",
        "RPZ",
        "--rpz-origin",
        "other.zone",
    ]);
    assert!(err.contains(&format!("{zone}:1: ")), "{err}");
    assert!(err.contains("outside the zone other.zone"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(generation(&b), g);

    // With it, the origin is stripped: RPZ semantics on the names below it.
    b.ok(&[
        "rules",
        "load",
        &zone,
        "--order",
        "RPZ",
        "--ede-text",
        "RPZ order",
        "--rpz-origin",
        "rpz.local",
    ]);
    assert_eq!(
        rules_of(&b, "RPZ"),
        [
            rule("bad.example", "exact", "nxdomain", "all"),
            rule("wild.example", "below", "nodata", "all"),
        ]
    );
    blocked(&t, "bad.example", "A", "RPZ order");
    resolved(&t, "www.bad.example", "A");
    let r = query(&t, "x.wild.example", "A");
    assert_eq!(
        (
            r.status.as_deref(),
            r.answers.len(),
            r.ede.as_ref().map(|e| e.0)
        ),
        (Some("NOERROR"), 0, Some(16)),
        "NODATA below wild.example: {}",
        r.raw
    );
    resolved(&t, "wild.example", "A");
}

#[test]
fn hosts_files_through_the_cli() {
    let mut t = Topology::new();
    t.start_unbound(&[
        "www.ads.example. 300 IN A 192.0.2.10",
        "ads2.example. 300 IN A 192.0.2.10",
        "localhost.example. 300 IN A 192.0.2.10",
        "lonely.example. 300 IN A 192.0.2.10",
        "www.safe.example. 300 IN A 192.0.2.10",
    ]);
    let b = Blocker::new();
    t.attach(&b, "native");
    let lists = TempDir::new("blkt-hosts");
    let hosts = lists.write(
        "hosts",
        "# a hosts-file block list\n127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n\
         0.0.0.0 ads.example tracker.example # two names on a line\n\
         0.0.0.0 cdn.ads2.example\n\
         # a SafeSearch-style redirection: not a block\n\
         216.239.38.120 www.safe.example\n",
    );

    // Detected as hosts; localhost entries ignored; bare names are subtrees.
    let out = b.ok(&["rules", "load", &hosts, "--order", "Hosts"]);
    assert!(out.contains("3 rules added"), "{out}");
    assert_eq!(
        rules_of(&b, "Hosts"),
        [
            rule("ads.example", "subtree", "nxdomain", "all"),
            rule("cdn.ads2.example", "subtree", "nxdomain", "all"),
            rule("tracker.example", "subtree", "nxdomain", "all"),
        ]
    );
    for n in [
        "ads.example",
        "www.ads.example",
        "tracker.example",
        "cdn.ads2.example",
    ] {
        blocked(&t, n, "A", "Hosts");
    }
    resolved(&t, "ads2.example", "A");
    resolved(&t, "localhost.example", "A");
    resolved(&t, "www.safe.example", "A");

    // Said to be a hosts file (--format hosts), a line without an address is an error: refused
    // with file and line, nothing changed.
    let g = generation(&b);
    let mixed = lists.write("mixed-hosts", "0.0.0.0 x.example\nlonely.example\n");
    let err = b.fails(&[
        "rules", "load", &mixed, "--order", "Hosts", "--format", "hosts",
    ]);
    assert!(
        err.contains(&format!("{mixed}:2: ")) && err.contains("not a hosts-file line"),
        "{err}"
    );
    assert_eq!(generation(&b), g);
    blocked(&t, "ads.example", "A", "Hosts");
    resolved(&t, "lonely.example", "A");

    // Detected (a hosts line first), the same file is a combined list as published: hosts
    // lines and bare names both load.
    b.ok(&["rules", "load", &mixed, "--order", "Mixed"]);
    assert_eq!(
        rules_of(&b, "Mixed"),
        [
            rule("lonely.example", "subtree", "nxdomain", "all"),
            rule("x.example", "subtree", "nxdomain", "all"),
        ]
    );
    blocked(&t, "lonely.example", "A", "Mixed");
    b.ok(&["orders", "remove", "Mixed"]);

    // --format hosts --match exact: the names only.
    b.ok(&[
        "rules", "load", &hosts, "--order", "Hosts", "--format", "hosts", "--match", "exact",
    ]);
    blocked(&t, "ads.example", "A", "Hosts");
    resolved(&t, "www.ads.example", "A");
}

/// Block lists in dnsmasq's and unbound's own syntax, as list projects publish them: answered
/// by the real program as those servers would (rcodes from kdig), forwarding lines and local
/// data set aside.
#[test]
fn dnsmasq_and_unbound_lists_through_the_cli() {
    let mut t = Topology::new();
    t.start_unbound(&[
        "fwd.example. 300 IN A 192.0.2.10",
        "ok.dm.example. 300 IN A 192.0.2.10",
        "ok.ub.example. 300 IN A 192.0.2.10",
        "other.example. 300 IN A 192.0.2.10",
        "www.safe.example. 300 IN A 192.0.2.10",
    ]);
    let b = Blocker::new();
    t.attach(&b, "native");
    let lists = TempDir::new("blkt-dnsmasq");
    let dnsmasq = lists.write(
        "dnsmasq.conf",
        "# dnsmasq format\nlocal=/dm.example/\naddress=/dm2.example/0.0.0.0\n\
         server=/fwd.example/192.0.2.53\nserver=/ok.dm.example/#\n",
    );
    let out = b.ok(&["rules", "load", &dnsmasq, "--order", "Dnsmasq"]);
    assert!(out.contains("3 rules added"), "{out}");
    for n in ["dm.example", "www.dm.example", "dm2.example"] {
        blocked(&t, n, "A", "Dnsmasq");
    }
    resolved(&t, "fwd.example", "A");
    // `#`: back to the usual servers, an exception to the block above it.
    resolved(&t, "ok.dm.example", "A");
    b.ok(&["orders", "remove", "Dnsmasq"]);

    let unbound = lists.write(
        "blocklist.conf",
        "server:\n  local-zone: \"ub.example.\" refuse\n\
         local-zone: \"ok.ub.example.\" always_transparent\n\
         local-zone: \"ub2.example.\" always_nxdomain\n\
         local-zone: \"ub3.example.\" always_null\n\
         local-zone: \"ub4.example.\" redirect\n\
         local-data: \"ub4.example. A 0.0.0.0\"\n\
         local-zone: \"www.safe.example.\" redirect\n\
         local-data: \"www.safe.example. A 198.51.100.7\"\n",
    );
    let out = b.ok(&["rules", "load", &unbound, "--order", "Unbound"]);
    assert!(out.contains("5 rules added"), "{out}");
    let r = query(&t, "www.ub.example", "A");
    assert_eq!(r.status.as_deref(), Some("REFUSED"), "{}", r.raw);
    assert_eq!(r.ede, Some((16, "Unbound".to_string())), "{}", r.raw);
    resolved(&t, "ok.ub.example", "A");
    blocked(&t, "ub2.example", "A", "Unbound");
    // `always_null` (0.0.0.0 and ::): blocked with the order's action.
    blocked(&t, "ub3.example", "A", "Unbound");
    // A redirect zone answering 0.0.0.0 (Energized, hagezi): blocked, names below included.
    blocked(&t, "www.ub4.example", "AAAA", "Unbound");
    // One answering a real address (safe search) is not a block.
    resolved(&t, "www.safe.example", "A");
    resolved(&t, "other.example", "A");
}

#[test]
fn a_rule_limited_to_aaaa_blocks_aaaa_only() {
    let mut t = Topology::new();
    t.start_unbound(&[
        "v6.example. 300 IN A 192.0.2.10",
        "v6.example. 300 IN AAAA 2001:db8::10",
        "v6.example. 300 IN MX 10 mail.v6.example.",
    ]);
    let b = Blocker::new();
    t.attach(&b, "native");
    b.ok(&[
        "rules",
        "add",
        "v6.example",
        "--qtype",
        "AAAA",
        "--order",
        "Q6",
    ]);
    assert_eq!(
        rules_of(&b, "Q6"),
        [rule("v6.example", "exact", "nxdomain", "AAAA")]
    );
    blocked(&t, "v6.example", "AAAA", "Q6");
    resolved(&t, "v6.example", "A");
    resolved(&t, "v6.example", "MX");
    let s = b.stats();
    assert_eq!(s["reasons"]["nxdomain"].as_u64(), Some(1), "{s}");

    // Two types, given as a mnemonic and a number.
    b.ok(&[
        "rules",
        "add",
        "v6.example",
        "--qtype",
        "AAAA",
        "--qtype",
        "15",
        "--order",
        "Q6",
    ]);
    assert_eq!(
        rules_of(&b, "Q6"),
        [rule("v6.example", "exact", "nxdomain", "MX,AAAA")]
    );
    blocked(&t, "v6.example", "MX", "Q6");
    blocked(&t, "v6.example", "AAAA", "Q6");
    resolved(&t, "v6.example", "A");
}
