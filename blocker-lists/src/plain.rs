//! Plain lists (one name per line, adblock `||name^`) and hosts files.

use std::path::Path;

use blocker_common::{Action, Kind, QTYPES_ALL};

use crate::{name::normalize_name, Options, ParseOutcome, ParsedRule};

/// Names in hosts files that are never rules.
const LOCAL_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Whether the first field of a hosts line is an address (some lists write `0`).
pub fn is_hosts_address(s: &str) -> bool {
    s == "0" || s.parse::<std::net::IpAddr>().is_ok()
}

/// Removes a comment: whole-line `#`/`!`, or `#` after whitespace.
fn strip_comment(line: &str) -> &str {
    let t = line.trim();
    if t.starts_with('#') || t.starts_with('!') {
        return "";
    }
    let mut prev_space = false;
    for (i, c) in t.char_indices() {
        if c == '#' && prev_space {
            return t[..i].trim_end();
        }
        prev_space = c.is_whitespace();
    }
    t
}

/// Reduces a URL-like entry to its host; Some(reduced) if it was one.
fn reduce_url(entry: &str) -> Option<String> {
    let mut s = entry;
    let mut changed = false;
    if let Some(i) = s.find("://") {
        s = &s[i + 3..];
        changed = true;
    }
    if let Some(i) = s.find(['/', '?', '#']) {
        s = &s[..i];
        changed = true;
    }
    if let Some(i) = s.rfind('@') {
        s = &s[i + 1..];
        changed = true;
    }
    if let Some(inner) = s.strip_prefix('[') {
        // [IPv6]:port — not a name; leave it for the name check to refuse.
        return Some(inner.split(']').next().unwrap_or(inner).to_string());
    }
    if let Some((host, port)) = s.rsplit_once(':') {
        if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) {
            s = host;
            changed = true;
        }
    }
    changed.then(|| s.to_string())
}

pub fn parse(text: &str, file: &Path, opts: &Options, hosts: bool, out: &mut ParseOutcome) {
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let raw = if i == 0 {
            raw.trim_start_matches('\u{feff}')
        } else {
            raw
        };
        let line = strip_comment(raw.trim_end_matches('\r'));
        if line.is_empty() {
            continue;
        }
        if hosts {
            let mut fields = line.split_whitespace();
            let addr = fields.next().unwrap_or("");
            if !is_hosts_address(addr) {
                out.error(
                    file,
                    line_no,
                    format!("{addr:?} is not an address: not a hosts-file line"),
                );
                continue;
            }
            for name in fields {
                if LOCAL_NAMES
                    .iter()
                    .any(|l| l.eq_ignore_ascii_case(name.trim_end_matches('.')))
                {
                    continue;
                }
                entry(name, file, line_no, opts, out);
            }
        } else {
            let mut fields = line.split_whitespace();
            let first = fields.next().unwrap_or("");
            if let Some(extra) = fields.next() {
                // A hosts line inside a plain list is common enough to accept.
                if is_hosts_address(first) {
                    entry(extra, file, line_no, opts, out);
                    for more in fields {
                        entry(more, file, line_no, opts, out);
                    }
                } else {
                    out.error(
                        file,
                        line_no,
                        format!("{line:?}: one name per line expected"),
                    );
                }
                continue;
            }
            entry(first, file, line_no, opts, out);
        }
    }
}

/// One entry of a plain or hosts list.
fn entry(text: &str, file: &Path, line: usize, opts: &Options, out: &mut ParseOutcome) {
    let mut kind = opts.bare_kind;
    let mut action = None;
    let mut s = text;
    // Adblock syntax: ||name^ (with optional $options), @@||name^ for exceptions.
    if let Some(rest) = s.strip_prefix("@@") {
        action = Some(Action::Pass);
        s = rest;
    }
    if let Some(rest) = s.strip_prefix("||") {
        kind = Kind::Subtree;
        s = rest;
        match s.find('^') {
            Some(i) => s = &s[..i],
            None => {
                out.error(file, line, format!("{text:?}: adblock rule without `^`"));
                return;
            }
        }
    } else if action.is_some() {
        out.error(
            file,
            line,
            format!("{text:?}: `@@` only goes with `||name^`"),
        );
        return;
    }
    if let Some(rest) = s.strip_prefix("*.") {
        kind = Kind::Below;
        s = rest;
    }
    let reduced;
    if let Some(r) = reduce_url(s) {
        out.warn(file, line, format!("{text:?} reduced to its host {r:?}"));
        reduced = r;
        s = &reduced;
    }
    match normalize_name(s) {
        Ok(name) => out.rules.push(ParsedRule {
            name,
            kind,
            action,
            qtypes: QTYPES_ALL,
            sinkhole: None,
            file: file.to_path_buf(),
            line,
        }),
        Err(e) => out.error(file, line, format!("{text:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use blocker_common::{Action, Kind};

    use crate::{parse_str, Format, Options};

    fn names(out: &crate::ParseOutcome) -> Vec<(String, Kind, Option<Action>)> {
        out.rules
            .iter()
            .map(|r| (r.name.to_string(), r.kind, r.action))
            .collect()
    }

    #[test]
    fn a_court_list_in_the_wild() {
        let text = "\u{feff}# Elenco AGCOM\r\nPirate-Streams.example.\r\n\r\n  mirror.example   # trailing comment\r\n||adblock.example^$important\r\n@@||ok.adblock.example^\r\n*.wild.example\r\nhttps://User@Www.Football.example:8443/live?x=1#y\r\nexample.net/path\r\nexample.org:443\r\nbücher.example\r\npirate-streams.example\r\n! adblock comment\r\n";
        let out = parse_str(
            text,
            Path::new("order.txt"),
            Format::Plain,
            &Options::default(),
        );
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            names(&out),
            vec![
                ("pirate-streams.example".into(), Kind::Subtree, None),
                ("mirror.example".into(), Kind::Subtree, None),
                ("adblock.example".into(), Kind::Subtree, None),
                (
                    "ok.adblock.example".into(),
                    Kind::Subtree,
                    Some(Action::Pass)
                ),
                ("wild.example".into(), Kind::Below, None),
                ("www.football.example".into(), Kind::Subtree, None),
                ("example.net".into(), Kind::Subtree, None),
                ("example.org".into(), Kind::Subtree, None),
                ("xn--bcher-kva.example".into(), Kind::Subtree, None),
            ]
        );
        assert_eq!(out.duplicates, 1);
        assert_eq!(
            out.warnings.len(),
            3,
            "three URLs reduced: {:?}",
            out.warnings
        );
        assert!(out.warnings[0].to_string().starts_with("order.txt:8: "));
        assert_eq!(out.rules[1].line, 4);
    }

    #[test]
    fn exact_when_asked() {
        let opts = Options {
            bare_kind: Kind::Exact,
            ..Options::default()
        };
        let out = parse_str(
            "a.example\n*.b.example\n",
            Path::new("l"),
            Format::Plain,
            &opts,
        );
        assert_eq!(
            names(&out),
            vec![
                ("a.example".into(), Kind::Exact, None),
                ("b.example".into(), Kind::Below, None)
            ]
        );
    }

    #[test]
    fn invalid_entries_name_file_and_line() {
        let long = "a".repeat(64);
        let text = format!("ok.example\n{long}.example\nbad..example\nhas space.example x\nuser@\n192.0.2.1\na.*.example\n{}\n", vec!["abcdefghij"; 26].join("."));
        let out = parse_str(
            &text,
            Path::new("list.txt"),
            Format::Plain,
            &Options::default(),
        );
        assert_eq!(out.rules.len(), 1);
        let msgs: Vec<String> = out.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 7, "{msgs:#?}");
        assert!(
            msgs[0].starts_with("list.txt:2: ") && msgs[0].contains("label of 64 bytes"),
            "{}",
            msgs[0]
        );
        assert!(msgs[1].starts_with("list.txt:3: ") && msgs[1].contains("empty label"));
        assert!(msgs[2].starts_with("list.txt:4: "));
        assert!(msgs[4].contains("IP address"));
        assert!(msgs[5].contains("`*`"));
        assert!(
            msgs[6].starts_with("list.txt:8: ") && msgs[6].contains("wire form"),
            "{}",
            msgs[6]
        );
    }

    #[test]
    fn hosts_files() {
        let text = "# hosts\n127.0.0.1 localhost\n::1 ip6-localhost ip6-loopback\n0.0.0.0 0.0.0.0\n0.0.0.0\tads.example tracker.example # two\n127.0.0.1 Malware.example.\n0 zero.example\n:: v6.example\nnotanip bad.example\n";
        let out = parse_str(text, Path::new("hosts"), Format::Hosts, &Options::default());
        let n: Vec<String> = out.rules.iter().map(|r| r.name.to_string()).collect();
        assert_eq!(
            n,
            vec![
                "ads.example",
                "tracker.example",
                "malware.example",
                "zero.example",
                "v6.example"
            ]
        );
        assert_eq!(out.errors.len(), 1);
        assert!(out.errors[0].to_string().starts_with("hosts:9: "));
    }

    #[test]
    fn conflicting_duplicates_are_errors() {
        let out = parse_str(
            "a.example\n@@||a.example^\n",
            Path::new("l"),
            Format::Plain,
            &Options::default(),
        );
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
        assert!(out.errors[0].message.contains("conflicts with line 1"));
    }

    #[test]
    fn detects_formats() {
        use crate::detect_format;
        assert_eq!(
            detect_format(Path::new("x.txt"), "# c\n0.0.0.0 a.example\n"),
            Format::Hosts
        );
        assert_eq!(
            detect_format(Path::new("x.txt"), "a.example\n"),
            Format::Plain
        );
        assert_eq!(
            detect_format(Path::new("x.txt"), "$TTL 300\n@ SOA a. b. 1 1 1 1 1\n"),
            Format::Rpz
        );
        assert_eq!(
            detect_format(Path::new("x.rpz"), "a.example CNAME .\n"),
            Format::Rpz
        );
        assert_eq!(
            detect_format(Path::new("x"), "bad.example 300 IN CNAME .\n"),
            Format::Rpz
        );
    }

    #[test]
    #[ignore = "timing: run with --ignored --nocapture to see the figure"]
    fn a_million_lines() {
        let text: String = (0..1_000_000)
            .map(|i| format!("site{i}.piracy{}.example\n", i % 997))
            .collect();
        let t = std::time::Instant::now();
        let out = parse_str(&text, Path::new("big"), Format::Plain, &Options::default());
        println!("1,000,000 lines parsed in {:?}", t.elapsed());
        assert_eq!(out.rules.len(), 1_000_000);
    }
}
