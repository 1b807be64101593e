//! Plain lists (one name per line, adblock `||name^`, URLs) and hosts files.

use std::{path::PathBuf, str::FromStr, sync::Arc};

use blocker_common::{qtype_bit, Action, Kind, QTYPES_ALL};

use crate::{
    name::{is_address, normalize_name, NameError},
    Name, Options, ParseOutcome, ParsedRule,
};

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

/// The unbound.conf lines a block list in unbound's format is made of (`server:` opens the
/// section the others belong to).
pub(crate) const UNBOUND_KEYWORDS: &[&str] = &[
    "server:",
    "local-zone:",
    "local-data:",
    "local-data-ptr:",
    "include:",
];

/// Whether the first field of a hosts line is an address (some lists write `0`; link-local
/// addresses may carry a `%zone`).
pub fn is_hosts_address(s: &str) -> bool {
    s == "0" || is_address(s)
}

/// The entry part of a line: None for blank and comment lines (`#`, `!`, adblock
/// `[Adblock Plus 2.0]` headers); a `#` after white space starts a trailing comment.
fn content(line: &str) -> Option<&str> {
    let t = if line.is_ascii() {
        line.trim_ascii()
    } else {
        line.trim()
    };
    match t.as_bytes().first() {
        None | Some(b'#' | b'!') => return None,
        Some(b'[') if is_header(t) => return None,
        _ => {}
    }
    let b = t.as_bytes();
    let mut from = 0;
    while let Some(i) = t[from..].find('#').map(|i| i + from) {
        if i > 0 && b[i - 1].is_ascii_whitespace() {
            return Some(t[..i].trim_end());
        }
        from = i + 1;
    }
    Some(t)
}

/// `[Adblock Plus 2.0]`, `[uBlock Origin]` (but not `[2001:db8::1]`).
fn is_header(t: &str) -> bool {
    t.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .is_some_and(|inner| {
            inner.starts_with(|c: char| c.is_ascii_alphabetic()) && !is_address(inner)
        })
}

/// Parses `text`, the part of `file` after its first `skipped` lines (every line stands on
/// its own, so parts of a file can be parsed apart).
pub(crate) fn parse(
    text: &str,
    skipped: usize,
    file: &Arc<PathBuf>,
    opts: &Options,
    hosts: bool,
    out: &mut ParseOutcome,
) {
    out.rules.reserve(text.len() / 24);
    let mut p = Parser { file, opts, out };
    for (i, raw) in text.lines().enumerate() {
        let line = skipped + i + 1;
        let Some(content) = content(raw) else {
            continue;
        };
        let mut fields = content.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if !hosts && UNBOUND_KEYWORDS.contains(&first) {
            // unbound.conf: `#` starts a comment anywhere.
            let content = content.split('#').next().unwrap_or_default().trim_end();
            let args = content.split_whitespace().skip(1).collect();
            p.unbound(first, content, args, line);
            continue;
        }
        let second = fields.next();
        if hosts || second.is_some() {
            if !is_hosts_address(first) {
                let why = if hosts {
                    "not a hosts-file line: the first field must be an address"
                } else {
                    "one name per line expected (or `ADDRESS name …`)"
                };
                p.out.error(file, line, format!("{content:?}: {why}"));
                continue;
            }
            for name in second.into_iter().chain(fields) {
                let bare = name.strip_suffix('.').unwrap_or(name);
                if LOCAL_NAMES.iter().any(|l| l.eq_ignore_ascii_case(bare)) {
                    continue;
                }
                p.host_entry(name, line);
            }
        } else {
            p.plain_entry(first, line);
        }
    }
}

struct Parser<'a> {
    file: &'a Arc<PathBuf>,
    opts: &'a Options,
    out: &'a mut ParseOutcome,
}

impl Parser<'_> {
    fn push(&mut self, name: Name, kind: Kind, action: Option<Action>, qtypes: u16, line: usize) {
        self.out.rules.push(ParsedRule {
            name,
            kind,
            action,
            qtypes,
            local: None,
            file: self.file.clone(),
            line,
        });
    }

    fn error(&mut self, line: usize, text: &str, why: impl std::fmt::Display) {
        self.out.error(self.file, line, format!("{text:?}: {why}"));
    }

    /// An address (or prefix, or URL with an address for host) alone on a line: court and
    /// regulator lists (AGCOM's Piracy Shield tickets among them) name addresses beside
    /// names, to be blocked in the network. Nothing for DNS to match: skipped and counted,
    /// so the names of the list load.
    fn address(&mut self, text: &str, line: usize) {
        self.out.skip_unsupported(
            "IP address",
            self.file,
            line,
            format!("{text:?}: IP address, not a domain name (block it in the network); skipped"),
        );
    }

    /// A name of a hosts line: `name` or `*.name`.
    fn host_entry(&mut self, text: &str, line: usize) {
        let (s, kind) = match text.strip_prefix("*.") {
            Some(rest) => (rest, Kind::Below),
            None => (text, self.opts.bare_kind),
        };
        match normalize_name(s) {
            Ok(name) => self.push(name, kind, None, QTYPES_ALL, line),
            Err(e) => self.error(line, text, e),
        }
    }

    /// A line of a block list in unbound.conf's syntax: `server:`, then `local-zone: "name."
    /// TYPE` (the zone and every name below it; TYPE the answer) and `local-data:` records.
    fn unbound(&mut self, keyword: &str, text: &str, args: Vec<&str>, line: usize) {
        match keyword {
            "server:" if args.is_empty() => {}
            "server:" => self.error(line, text, "`server:` opens a section; nothing follows it"),
            "local-zone:" => {
                let [zone, kind] = args[..] else {
                    self.error(line, text, "`local-zone: \"name.\" TYPE` expected");
                    return;
                };
                // The type's answer for a zone without local data (unbound's
                // local_zones_zone_answer): the order's action for `always_null`, which
                // answers 0.0.0.0 and :: (as `0.0.0.0 name` in a hosts file).
                let (action, qtypes) = match kind.to_ascii_lowercase().as_str() {
                    "always_nxdomain" | "static" => (Some(Action::Nxdomain), QTYPES_ALL),
                    "refuse" | "always_refuse" => (Some(Action::Refused), QTYPES_ALL),
                    "deny" | "inform_deny" | "always_deny" => (Some(Action::Drop), QTYPES_ALL),
                    "always_nodata" => (Some(Action::Nodata), QTYPES_ALL),
                    "block_a" => (Some(Action::Nodata), qtype_bit(1)),
                    "block_aaaa" => (Some(Action::Nodata), qtype_bit(28)),
                    "truncate" => (Some(Action::Tc), QTYPES_ALL),
                    "always_null" => (None, QTYPES_ALL),
                    "transparent" | "typetransparent" | "always_transparent" | "inform" => {
                        (Some(Action::Pass), QTYPES_ALL)
                    }
                    // What these answer is the local data that goes with them: a block
                    // page, or a safe-search CNAME that must not turn into a block.
                    t @ ("redirect" | "inform_redirect") => {
                        self.out.skip_unsupported(
                            "unbound redirect zone",
                            self.file,
                            line,
                            format!(
                                "{text:?}: a {t} zone answers with its local data, which is \
                                 read from RPZ files only; skipped"
                            ),
                        );
                        return;
                    }
                    t @ ("nodefault" | "ipset") => {
                        self.out.skip_unsupported(
                            "unbound local-zone that does not block",
                            self.file,
                            line,
                            format!("{text:?}: a {t} zone does not block; skipped"),
                        );
                        return;
                    }
                    other => {
                        self.error(
                            line,
                            text,
                            format_args!("unknown local-zone type {other:?}"),
                        );
                        return;
                    }
                };
                let name = ['"', '\'']
                    .iter()
                    .find_map(|q| zone.strip_prefix(*q).and_then(|z| z.strip_suffix(*q)))
                    .unwrap_or(zone);
                match normalize_name(name) {
                    Ok(name) => self.push(name, Kind::Subtree, action, qtypes, line),
                    Err(e) => self.error(line, text, e),
                }
            }
            "include:" => self.out.skip_unsupported(
                "unbound include",
                self.file,
                line,
                format!("{text:?}: not followed; give the included file to the same load"),
            ),
            _ => self.out.skip_unsupported(
                "unbound local-data",
                self.file,
                line,
                format!(
                    "{text:?}: local data is read from RPZ files only; the zone's rule answers \
                     with its action"
                ),
            ),
        }
    }

    /// A dnsmasq line, `address=/name/…/[ADDRESS|#]`, `local=/name/…/` or
    /// `server=/name/…/`: each name and every name below it (`*.name`: only below it)
    /// answered locally — blocked, with the order's action (for every query type: dnsmasq
    /// 2.86 and later answer `address=/name/0.0.0.0` for A only and forward the rest).
    /// `server=`/`local=` with `#` send the names back to the usual servers, an exception
    /// to a block of a name above (a pass rule); with a server, they forward: skipped and
    /// counted.
    fn dnsmasq(&mut self, text: &str, key: &str, rest: &str, line: usize) {
        let Some((names, value)) = rest.rsplit_once('/') else {
            self.error(line, text, format_args!("`{key}=/name/…/` expected"));
            return;
        };
        let action = match (key, value) {
            (_, "") => None,
            ("address", v) if v == "#" || is_address(v) => None,
            ("address", v) => {
                self.error(line, text, format_args!("{v:?} is not an address"));
                return;
            }
            (_, "#") => Some(Action::Pass),
            _ => {
                self.out.skip_unsupported(
                    "dnsmasq server forwarding",
                    self.file,
                    line,
                    format!("{text:?}: forwards the names to another server; not a block"),
                );
                return;
            }
        };
        for n in names.split('/') {
            let (s, kind) = match n.strip_prefix("*.") {
                Some(rest) => (rest, Kind::Below),
                // dnsmasq reads `.name` as `name`.
                None => (n.trim_start_matches('.'), Kind::Subtree),
            };
            if s == "#" {
                self.error(
                    line,
                    text,
                    "`#` stands for every name: not a block-list entry",
                );
                continue;
            }
            match normalize_name(s) {
                Ok(name) => self.push(name, kind, action, QTYPES_ALL, line),
                Err(e) => self.error(line, text, format_args!("{n:?}: {e}")),
            }
        }
    }

    /// One entry of a plain list.
    fn plain_entry(&mut self, text: &str, line: usize) {
        // Prefixes only: no search through every name of a plain list.
        let dnsmasq = ["address", "local", "server"]
            .into_iter()
            .find_map(|k| Some((k, text.strip_prefix(k)?.strip_prefix("=/")?)));
        if let Some((key, rest)) = dnsmasq {
            self.dnsmasq(text, key, rest, line);
            return;
        }
        // `@@` makes an adblock rule an exception (a pass rule).
        let (bare, exception) = match text.strip_prefix("@@") {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        if is_regex(bare) {
            self.out.skip_unsupported(
                "adblock regular expression",
                self.file,
                line,
                format!("{text:?}: regular-expression rule is not supported; rule skipped"),
            );
            return;
        }
        if let Some((rule, kind)) = adblock_anchor(bare) {
            let action = exception.then_some(Action::Pass);
            self.adblock(text, rule, kind, action, line);
            return;
        }
        if exception {
            self.error(line, text, "`@@` only goes with `@@||name^` or `@@|name^`");
            return;
        }
        if text.contains('#')
            && ["##", "#@#", "#?#", "#$#", "#%#"]
                .iter()
                .any(|m| text.contains(m))
        {
            self.out.skip_unsupported(
                "adblock cosmetic",
                self.file,
                line,
                format!("{text:?}: adblock cosmetic rule (page content, not DNS); skipped"),
            );
            return;
        }
        let (s, kind) = if let Some(rest) = text.strip_prefix("*.") {
            (rest, Kind::Below)
        } else if let Some(rest) = text
            .strip_prefix('.')
            .filter(|r| !r.is_empty() && !r.starts_with('.'))
        {
            // Squid-style `.example.com`: the domain and everything below it.
            (rest, Kind::Subtree)
        } else {
            (text, self.opts.bare_kind)
        };
        // The common case: nothing URL-like in the entry.
        if !s
            .bytes()
            .any(|b| matches!(b, b'/' | b':' | b'?' | b'#' | b'@' | b'['))
        {
            match normalize_name(s) {
                Ok(name) => self.push(name, kind, None, QTYPES_ALL, line),
                Err(NameError::Address) if kind == self.opts.bare_kind => self.address(text, line),
                Err(e) => self.error(line, text, e),
            }
            return;
        }
        if is_address(s) || is_address(s.split_once('/').map_or(s, |(a, _)| a)) {
            // Also `192.0.2.0/24` and `[2001:db8::1]`.
            self.address(text, line);
            return;
        }
        let host = match url_host(s) {
            Ok(h) => h,
            Err(why) => {
                self.error(line, text, why);
                return;
            }
        };
        if is_address(host) {
            self.address(text, line);
            return;
        }
        match normalize_name(host) {
            Ok(name) => {
                self.out.warn(
                    self.file,
                    line,
                    format!("{text:?}: URL reduced to its host {name}"),
                );
                self.push(name, kind, None, QTYPES_ALL, line);
            }
            Err(e) => self.error(line, text, format_args!("host {host:?} of the URL: {e}")),
        }
    }

    /// `||name^[$modifiers]` after the `||` (and `@@`), or `|name^` after the `|`: `kind` is
    /// what the anchor makes of a name (see [`adblock_anchor`]).
    fn adblock(&mut self, text: &str, rule: &str, kind: Kind, action: Option<Action>, line: usize) {
        let Some((host, tail)) = rule.split_once('^') else {
            let why = if rule.contains('/') {
                "adblock rule with a path: not a domain rule"
            } else {
                "adblock rule without `^` (`||name` alone also matches other names that start with it); write `||name^`"
            };
            self.error(line, text, why);
            return;
        };
        let modifiers = match tail.strip_prefix('|').unwrap_or(tail) {
            "" => "",
            t => match t.strip_prefix('$') {
                Some(m) => m,
                None => {
                    self.error(line, text, "unexpected text after `^` (only `$modifiers`)");
                    return;
                }
            },
        };
        let mut qtypes = QTYPES_ALL;
        for m in modifiers.split(',').filter(|m| !m.is_empty()) {
            let (key, value) = m.split_once('=').unwrap_or((m, ""));
            match key.to_ascii_lowercase().as_str() {
                "important" => {}
                "dnstype" => match dnstypes(value) {
                    Some(q) => qtypes = q,
                    None => {
                        self.error(line, text, format_args!("bad `$dnstype={value}`"));
                        return;
                    }
                },
                other => {
                    let what = format!("adblock ${other}");
                    self.out.skip_unsupported(
                        &what,
                        self.file,
                        line,
                        format!("{text:?}: modifier `${other}` is not supported; rule skipped"),
                    );
                    return;
                }
            }
        }
        if host.contains('/') {
            self.error(line, text, "adblock rule with a path: not a domain rule");
            return;
        }
        let (s, kind) = match host.strip_prefix("*.") {
            Some(rest) if kind == Kind::Subtree => (rest, Kind::Below),
            _ => (host, kind),
        };
        match normalize_name(s) {
            Ok(name) => self.push(name, kind, action, qtypes, line),
            Err(e) => self.error(line, text, e),
        }
    }
}

/// AdGuard's DNS syntax for a regular expression over names, `/re/` or `/re/$modifiers`:
/// no exact or suffix rule can express it.
fn is_regex(s: &str) -> bool {
    s.strip_prefix('/').is_some_and(|re| {
        re.len() > 1
            && (re.ends_with('/') || re.rsplit_once("/$").is_some_and(|(r, _)| !r.is_empty()))
    })
}

/// The rule after an adblock anchor, and what its name matches: `||name^` the name and every
/// name below it; `|name^` (AdGuard's DNS syntax: the host starts there) the name alone.
fn adblock_anchor(text: &str) -> Option<(&str, Kind)> {
    if let Some(rule) = text.strip_prefix("||") {
        return Some((rule, Kind::Subtree));
    }
    text.strip_prefix('|').map(|rule| (rule, Kind::Exact))
}

/// `$dnstype=A|AAAA` or `$dnstype=~A|~MX` as a qtype bit set.
fn dnstypes(value: &str) -> Option<u16> {
    let mut plus = 0u16;
    let mut minus = 0u16;
    for t in value.split('|') {
        let (neg, t) = match t.strip_prefix('~') {
            Some(t) => (true, t),
            None => (false, t),
        };
        let rtype = domain::base::Rtype::from_str(t).ok()?;
        let bit = qtype_bit(rtype.to_int());
        if neg {
            minus |= bit;
        } else {
            plus |= bit;
        }
    }
    let set = if plus == 0 { QTYPES_ALL } else { plus } & !minus;
    (set != 0).then_some(set)
}

/// The host of a URL-like entry (`https://user@Host:8443/path?q#f`, `host/path`,
/// `host:443`): scheme, user info (only after a scheme), port, path, query and fragment
/// removed.
pub(crate) fn url_host(s: &str) -> Result<&str, &'static str> {
    let (rest, had_scheme) = match s.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            (rest, true)
        }
        Some(_) => return Err("not a URL nor a host name"),
        None => (s, false),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = match authority.rsplit_once('@') {
        Some((_, h)) if had_scheme => h,
        Some(_) => return Err("`@` cannot be in a host name (an e-mail address?)"),
        None => authority,
    };
    if let Some(v6) = host_port.strip_prefix('[') {
        return Ok(v6.split(']').next().unwrap_or_default());
    }
    let host = match host_port.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        Some(_) => return Err("`:` cannot be in a host name (a port is digits only)"),
        None => host_port,
    };
    if host.is_empty() {
        return Err("URL without a host");
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use blocker_common::{qtype_bit, Action, Kind, QTYPES_ALL};

    use crate::{parse_str, Format, Options, ParseOutcome};

    fn names(out: &ParseOutcome) -> Vec<(String, Kind, Option<Action>)> {
        out.rules
            .iter()
            .map(|r| (r.name.to_string(), r.kind, r.action))
            .collect()
    }

    fn plain(text: &str) -> ParseOutcome {
        parse_str(
            text,
            Path::new("list.txt"),
            Format::Plain,
            &Options::default(),
        )
    }

    fn messages(d: &[crate::Diagnostic]) -> Vec<String> {
        d.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_court_list_in_the_wild() {
        // BOM, CRLF, comments of all sorts, URLs, IDN, adblock lines, duplicates.
        let text = "\u{feff}# Elenco AGCOM — provvedimento 123/2026\r\n\
            Pirate-Streams.example.\r\n\
            \r\n\
            \t  mirror.example   # trailing comment\r\n\
            ||adblock.example^$important\r\n\
            @@||ok.adblock.example^\r\n\
            *.wild.example\r\n\
            https://User@Www.Football.example:8443/live?x=1#y\r\n\
            example.net/path/to/page.html\r\n\
            example.org:443\r\n\
            bücher.example\r\n\
            pirate-streams.example\r\n\
            ! adblock comment\r\n\
            [Adblock Plus 2.0]\r\n\
            http://ÄÖÜ.example/\r\n\
            streaming\u{3002}example\r\n\
            _dmarc.mail.example\r\n\
            .squid.example\r\n\
            PIRATE-STREAMS.EXAMPLE\r\n";
        let out = plain(text);
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
                ("xn--4ca0bs.example".into(), Kind::Subtree, None),
                ("streaming.example".into(), Kind::Subtree, None),
                ("_dmarc.mail.example".into(), Kind::Subtree, None),
                ("squid.example".into(), Kind::Subtree, None),
            ]
        );
        assert_eq!(out.duplicates, 2);
        let w = messages(&out.warnings);
        assert_eq!(w.len(), 4, "four URLs reduced: {w:#?}");
        assert!(
            w[0].starts_with("list.txt:8: ") && w[0].contains("www.football.example"),
            "{}",
            w[0]
        );
        assert_eq!(out.rules[1].line, 4);
        assert_eq!(out.rules[0].line, 2);
        assert!(out.rules.iter().all(|r| r.qtypes == QTYPES_ALL));
    }

    #[test]
    fn bare_kind_is_an_option() {
        let opts = Options {
            bare_kind: Kind::Exact,
            ..Options::default()
        };
        let out = parse_str(
            "a.example\n*.b.example\n||c.example^\n0.0.0.0 d.example\n",
            Path::new("l"),
            Format::Plain,
            &opts,
        );
        assert_eq!(
            names(&out),
            vec![
                ("a.example".into(), Kind::Exact, None),
                ("b.example".into(), Kind::Below, None),
                ("c.example".into(), Kind::Subtree, None),
                ("d.example".into(), Kind::Exact, None),
            ]
        );
    }

    #[test]
    fn every_invalid_entry_names_file_line_and_reason() {
        let l64 = "a".repeat(64);
        let long = ["abcdefghij"; 26].join(".");
        let cases: Vec<(String, &str)> = vec![
            (format!("{l64}.example"), "label of 64 bytes"),
            ("bad..example".into(), "empty label"),
            ("has space.example x".into(), "one name per line"),
            ("user@example.com".into(), "`@`"),
            ("*.192.0.2.1".into(), "IP address"),
            ("a.*.example".into(), "`*`"),
            ("*bad.example".into(), "`*`"),
            ("*.*.example".into(), "`*`"),
            ("*".into(), "`*`"),
            (long, "wire form"),
            ("a,b.example".into(), "','"),
            ("ctl\u{7}.example".into(), "'\\u{7}'"),
            ("semi;colon.example".into(), "';'"),
            ("||nocaret.example".into(), "without `^`"),
            ("||x.example/ads/^".into(), "path"),
            ("@@bare.example".into(), "`@@`"),
            ("||x.example^junk".into(), "after `^`"),
            ("example.com:http".into(), "port"),
            ("https:///path".into(), "without a host"),
            ("x\u{3000}y.example".into(), "one name per line"),
            ("ab\u{200d}.\u{0661}1.example".into(), "IDNA"),
            ("..".into(), "empty label"),
            (".".into(), "root"),
            ("||x.example^$dnstype=BOGUS".into(), "dnstype"),
        ];
        let mut text = String::from("ok.example\n");
        for (c, _) in &cases {
            text.push_str(c);
            text.push('\n');
        }
        let out = plain(&text);
        assert_eq!(
            names(&out),
            vec![("ok.example".into(), Kind::Subtree, None)]
        );
        let msgs = messages(&out.errors);
        assert_eq!(msgs.len(), cases.len(), "{msgs:#?}");
        for (i, ((entry, want), msg)) in cases.iter().zip(&msgs).enumerate() {
            let prefix = format!("list.txt:{}: ", i + 2);
            assert!(
                msg.starts_with(&prefix) && msg.contains(want),
                "{entry:?}: {msg} (wanted {prefix}… {want})"
            );
        }
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    }

    /// Regulators' lists name addresses beside names (AGCOM's Piracy Shield tickets carry
    /// FQDNs and IPv4 addresses): the names load, the addresses are skipped and counted.
    #[test]
    fn addresses_in_a_list_are_skipped_and_counted() {
        let text = "a.example\n192.0.2.1\n2001:db8::1\n[2001:db8::1]\n192.0.2.0/24\n\
                    http://[2001:db8::1]:80/x\nhttps://192.0.2.1/path\nb.example\n";
        let out = plain(text);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            names(&out),
            vec![
                ("a.example".into(), Kind::Subtree, None),
                ("b.example".into(), Kind::Subtree, None)
            ]
        );
        assert_eq!(out.unsupported.get("IP address"), Some(&6));
        let msgs = messages(&out.warnings);
        assert_eq!(msgs.len(), 6, "{msgs:#?}");
        for (i, m) in msgs.iter().enumerate() {
            assert!(
                m.starts_with(&format!("list.txt:{}: ", i + 2)) && m.contains("IP address"),
                "{m}"
            );
        }
    }

    #[test]
    fn limits_are_exact() {
        let l63 = "a".repeat(63);
        let max = [l63.as_str(); 3].join(".") + "." + &"b".repeat(61);
        let out = plain(&format!("{max}\n{max}.\n{l63}.example\n"));
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.rules.len(), 2);
        assert_eq!(out.duplicates, 1);
    }

    #[test]
    fn adblock_modifiers() {
        let out = plain(
            "||a.example^$important\n\
             ||v6.example^$dnstype=AAAA\n\
             ||nota.example^$dnstype=~A\n\
             ||tp.example^$third-party\n\
             ||rw.example^$dnsrewrite=NOERROR;A;192.0.2.1\n\
             ||*.sub.example^\n\
             ||pipe.example^|\n\
             example.com##.banner\n\
             |exact.example^\n\
             @@|ok.exact.example^$important\n\
             /^ads[0-9]+\\.example$/\n\
             @@/^good.*/\n\
             /^track[0-9]+\\./$important,dnstype=A\n",
        );
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            names(&out),
            vec![
                ("a.example".into(), Kind::Subtree, None),
                ("v6.example".into(), Kind::Subtree, None),
                ("nota.example".into(), Kind::Subtree, None),
                ("sub.example".into(), Kind::Below, None),
                ("pipe.example".into(), Kind::Subtree, None),
                ("exact.example".into(), Kind::Exact, None),
                ("ok.exact.example".into(), Kind::Exact, Some(Action::Pass)),
            ]
        );
        assert_eq!(out.rules[1].qtypes, qtype_bit(28));
        assert_eq!(out.rules[2].qtypes, QTYPES_ALL & !qtype_bit(1));
        assert_eq!(out.unsupported.get("adblock $third-party"), Some(&1));
        assert_eq!(out.unsupported.get("adblock $dnsrewrite"), Some(&1));
        assert_eq!(out.unsupported.get("adblock cosmetic"), Some(&1));
        assert_eq!(out.unsupported.get("adblock regular expression"), Some(&3));
        assert_eq!(out.warnings.len(), 6);
        assert!(out.warnings[0].to_string().starts_with("list.txt:4: "));
    }

    #[test]
    fn hosts_files() {
        // Shaped like the StevenBlack / someonewhocares lists.
        let text = "# Title: StevenBlack/hosts\n\
            #\n\
            127.0.0.1 localhost\n\
            127.0.0.1 localhost.localdomain\n\
            127.0.0.1 local\n\
            255.255.255.255 broadcasthost\n\
            ::1 localhost ip6-localhost ip6-loopback\n\
            fe80::1%lo0 localhost\n\
            ff00::0 ip6-localnet\n\
            ff00::0 ip6-mcastprefix\n\
            ff02::1 ip6-allnodes\n\
            ff02::2 ip6-allrouters\n\
            ff02::3 ip6-allhosts\n\
            0.0.0.0 0.0.0.0\n\
            \n\
            # Custom host records are listed here.\n\
            # End of custom host records.\n\
            0.0.0.0\tads.example tracker.example # two on a line\r\n\
            127.0.0.1 Malware.example.\n\
            0 zero.example\n\
            :: v6.example\n\
            0.0.0.0 ads.example\n\
            notanip bad.example\n\
            0.0.0.0 bad..example\n\
            0.0.0.0 192.0.2.1\n\
            0.0.0.0 *.wild.example\n";
        let out = parse_str(text, Path::new("hosts"), Format::Hosts, &Options::default());
        let n: Vec<String> = out.rules.iter().map(|r| r.name.to_string()).collect();
        assert_eq!(
            n,
            vec![
                "ads.example",
                "tracker.example",
                "malware.example",
                "zero.example",
                "v6.example",
                "wild.example",
            ]
        );
        assert_eq!(out.rules[5].kind, Kind::Below);
        assert_eq!(out.rules[0].line, 18);
        assert_eq!(out.duplicates, 1);
        let msgs = messages(&out.errors);
        assert_eq!(msgs.len(), 3, "{msgs:#?}");
        assert!(msgs[0].starts_with("hosts:23: ") && msgs[0].contains("address"));
        assert!(msgs[1].starts_with("hosts:24: ") && msgs[1].contains("empty label"));
        assert!(msgs[2].starts_with("hosts:25: ") && msgs[2].contains("IP address"));
    }

    #[test]
    fn conflicting_duplicates_are_errors() {
        let out = plain("a.example\n@@||a.example^\n");
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
        assert!(
            out.errors[0].to_string().starts_with("list.txt:2: ")
                && out.errors[0].message.contains("conflicts with line 1"),
            "{}",
            out.errors[0]
        );
        assert_eq!(out.rules.len(), 1);
        // Same name, another kind: two rules.
        let out = plain("a.example\n*.a.example\n");
        assert_eq!(out.rules.len(), 2);
    }

    /// dnsmasq's block-list lines as oisd and hagezi publish them: every name is blocked with
    /// the order's action, with its subdomains; forwarding lines are not blocks.
    #[test]
    fn dnsmasq_lines() {
        let out = plain(
            "local=/a.example/\n\
             address=/b.example/\n\
             address=/c.example/#\n\
             address=/d.example/0.0.0.0\n\
             address=/e.example/::\n\
             address=/F.example/g.example/127.0.0.1 # two names\n\
             server=/h.example/\n\
             address=/*.i.example/\n\
             server=/fwd.example/192.0.2.53\n\
             local=/fwd2.example/192.0.2.53#5353\n\
             server=/ok.a.example/#\n\
             address=/.j.example/\n",
        );
        assert_eq!(messages(&out.errors), Vec::<String>::new());
        let sub = |n: &str| (n.to_string(), Kind::Subtree, None);
        assert_eq!(
            names(&out),
            vec![
                sub("a.example"),
                sub("b.example"),
                sub("c.example"),
                sub("d.example"),
                sub("e.example"),
                sub("f.example"),
                sub("g.example"),
                sub("h.example"),
                ("i.example".to_string(), Kind::Below, None),
                (
                    "ok.a.example".to_string(),
                    Kind::Subtree,
                    Some(Action::Pass)
                ),
                sub("j.example"),
            ]
        );
        assert_eq!(out.unsupported.get("dnsmasq server forwarding"), Some(&2));
        // Every name, a bad address, a bad name: errors naming the line.
        let out = plain("address=/#/\naddress=/x.example/not-an-ip\nlocal=/bad name/\nlocal=/\n");
        let e = messages(&out.errors);
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e[0].contains("list.txt:1") && e[0].contains("every name"),
            "{e:?}"
        );
        assert!(
            e[1].contains("list.txt:2") && e[1].contains("not an address"),
            "{e:?}"
        );
        assert!(e[2].contains("list.txt:3"), "{e:?}");
        assert!(
            e[3].contains("list.txt:4") && e[3].contains("expected"),
            "{e:?}"
        );
        assert!(out.rules.is_empty());
    }

    /// unbound's block-list format: `server:`, `local-zone:` lines whose type is the answer,
    /// `local-data:` set aside and counted.
    #[test]
    fn unbound_lines() {
        let text = "server:\n\
            local-zone: \"a.example.\" always_nxdomain\n\
            local-zone: b.example refuse\n\
            local-zone: \"c.example\" deny\n\
            local-zone: \"d.example.\" always_nodata\n\
            local-zone: \"e.example.\" redirect\n\
            local-data: \"e.example. IN A 0.0.0.0\"\n\
            local-zone: \"ok.a.example.\" always_transparent\n\
            local-zone: \"f.example.\" static\n\
            local-zone: 'g.example.' always_null#comment\n\
            local-zone: \"h.example.\" always_deny\n\
            local-zone: \"i.example.\" block_a\n\
            local-zone: \"j.example.\" truncate\n\
            local-zone: \"k.example.\" nodefault\n\
            include: \"more.conf\"\n";
        let path = Path::new("blocklist.conf");
        assert_eq!(crate::detect_format(path, text), Format::Plain);
        let out = parse_str(text, path, Format::Plain, &Options::default());
        assert_eq!(messages(&out.errors), Vec::<String>::new());
        let r = |n: &str, a| (n.to_string(), Kind::Subtree, a);
        assert_eq!(
            names(&out),
            vec![
                r("a.example", Some(Action::Nxdomain)),
                r("b.example", Some(Action::Refused)),
                r("c.example", Some(Action::Drop)),
                r("d.example", Some(Action::Nodata)),
                r("ok.a.example", Some(Action::Pass)),
                r("f.example", Some(Action::Nxdomain)),
                r("g.example", None),
                r("h.example", Some(Action::Drop)),
                r("i.example", Some(Action::Nodata)),
                r("j.example", Some(Action::Tc)),
            ]
        );
        let a_only = out.rules.iter().find(|r| r.name.to_string() == "i.example");
        assert_eq!(a_only.map(|r| r.qtypes), Some(qtype_bit(1)));
        for kind in [
            "unbound local-data",
            "unbound redirect zone",
            "unbound local-zone that does not block",
            "unbound include",
        ] {
            assert_eq!(out.unsupported.get(kind), Some(&1), "{kind}");
        }
        let out = plain(
            "local-zone: \".\" always_nxdomain\nlocal-zone: \"x.example\" blocked\n\
             local-zone: \"y.example\"\nserver: verbosity\n",
        );
        let e = messages(&out.errors);
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e[1].contains("unknown local-zone type \"blocked\""),
            "{e:?}"
        );
        assert!(out.rules.is_empty());
        // `--format hosts` stays strict.
        let out = parse_str(text, path, Format::Hosts, &Options::default());
        assert!(!out.errors.is_empty());
    }

    #[test]
    #[ignore = "timing: cargo test --release -p blocker-lists -- --ignored --nocapture"]
    fn a_million_lines() {
        let text: String = (0..1_000_000)
            .map(|i| format!("site{i}.piracy{}.example\n", i % 997))
            .collect();
        let t = std::time::Instant::now();
        let out = parse_str(&text, Path::new("big"), Format::Plain, &Options::default());
        println!(
            "1,000,000 plain lines ({} MB) parsed in {:?}",
            text.len() / 1_000_000,
            t.elapsed()
        );
        assert_eq!(out.rules.len(), 1_000_000);
        let text: String = (0..1_000_000)
            .map(|i| format!("0.0.0.0 ads{i}.tracker{}.example\n", i % 997))
            .collect();
        let t = std::time::Instant::now();
        let out = parse_str(&text, Path::new("big"), Format::Hosts, &Options::default());
        println!("1,000,000 hosts lines parsed in {:?}", t.elapsed());
        assert_eq!(out.rules.len(), 1_000_000);
    }
}
