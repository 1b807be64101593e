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

/// Whether the address of a hosts line makes its names blocks: the unspecified address (`0`,
/// `0.0.0.0`, `::` in any spelling) or a loopback one (127.0.0.0/8, `::1`), the addresses
/// hosts block lists send names to so that they reach nothing. Any other address sends the names somewhere (SafeSearch lists map www.google.com
/// to forcesafesearch.google.com's address, others pin github.com to one of its own): a
/// redirection, which a block rule would turn into the opposite of what the list asks.
fn is_block_address(s: &str) -> bool {
    if s == "0" {
        return true;
    }
    let s = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    let s = s.split_once('%').map_or(s, |(a, _)| a);
    s.parse::<std::net::IpAddr>().is_ok_and(|a| {
        // `::ffff:127.0.0.1` is 127.0.0.1.
        let a = a.to_canonical();
        a.is_unspecified() || a.is_loopback()
    })
}

/// The entry part of a line: None for blank and comment lines (`#`, `!`, adblock
/// `[Adblock Plus 2.0]` headers); a `#` after white space starts a trailing comment. A
/// byte-order mark opening the line is dropped: lists joined with `cat` carry their files'
/// marks in the middle, where the detector (which strips the file's first) does not look.
fn content(line: &str) -> Option<&str> {
    let line = line.trim_start_matches('\u{feff}');
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
            let names = second
                .into_iter()
                .chain(fields)
                .filter(|name| !is_local_name(name));
            if is_block_address(first) {
                for name in names {
                    p.host_entry(name, line);
                }
            } else if names.count() > 0 {
                // Localhost names stay ignored whatever their address (`fe80::1%lo0
                // localhost`, `ff02::1 ip6-allnodes` in hosts headers).
                p.hosts_redirect(first, content, line);
            }
        } else {
            p.plain_entry(first, line);
        }
    }
}

/// A dash other than `-` in an internationalised name (`pirate–site.example`, with the en
/// dash a word processor puts in a court order's text): a real name almost never has one.
fn typographic_dash(name: &Name) -> Option<char> {
    if !name.canonical().windows(4).any(|w| w == b"xn--") {
        return None;
    }
    let (unicode, _) = idna::domain_to_unicode(&name.to_string());
    unicode.chars().find(|c| {
        matches!(
            c,
            '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{fe58}' | '\u{fe63}'
        )
    })
}

/// Whether a name of a hosts line is one of the local names hosts files define for
/// themselves ([`LOCAL_NAMES`]), never a rule.
fn is_local_name(name: &str) -> bool {
    let bare = name.strip_suffix('.').unwrap_or(name);
    LOCAL_NAMES.iter().any(|l| l.eq_ignore_ascii_case(bare))
}

struct Parser<'a> {
    file: &'a Arc<PathBuf>,
    opts: &'a Options,
    out: &'a mut ParseOutcome,
}

impl Parser<'_> {
    fn push(&mut self, name: Name, kind: Kind, action: Option<Action>, qtypes: u16, line: usize) {
        if let Some(dash) = typographic_dash(&name) {
            self.out.warn(
                self.file,
                line,
                format!(
                    "{name}: the name holds a typographic dash (U+{:04X}), so it is an \
                     internationalised name, not the one with `-` (text copied from a document?)",
                    dash as u32
                ),
            );
        }
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

    /// A hosts line whose address is not a null or loopback one ([`is_block_address`]): its
    /// names are sent to that address, not blocked. Every name of the line is skipped, the
    /// line counted once (as a dnsmasq forwarding line is).
    fn hosts_redirect(&mut self, address: &str, text: &str, line: usize) {
        self.out.skip_unsupported(
            "hosts redirect to an address",
            self.file,
            line,
            format!(
                "{text:?}: hosts entry answering {address}, a redirection, not a block; skipped"
            ),
        );
    }

    /// A name of a hosts line: `name` or `*.name`.
    fn host_entry(&mut self, text: &str, line: usize) {
        let (s, kind) = match text.strip_prefix("*.") {
            Some(rest) => {
                self.out.stars += 1;
                (rest, self.opts.star_kind)
            }
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
                    // What these answer is the local data that goes with them (the
                    // `local-data:` lines decide): 0.0.0.0 in block lists (Energized,
                    // hagezi), a block page or a safe-search address that must not turn
                    // into a block.
                    "redirect" | "inform_redirect" => {
                        // Counted (a file of nothing else must not load as an empty
                        // order unnoticed), without a warning each.
                        self.out.count_unsupported(
                            "unbound redirect zone (its local-data lines decide)",
                            self.file,
                            line,
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
            _ => self.unbound_local_data(text, line),
        }
    }

    /// `local-data: "NAME [TTL] [CLASS] A|AAAA ADDRESS"` with the unspecified or a loopback
    /// address: how block lists in unbound's format (a `redirect` zone and this record)
    /// block NAME — with the order's action, for NAME and every name below it, as
    /// `always_null` zones and `0.0.0.0 NAME` hosts lines. Any other local data answers
    /// with something (a block page, a safe-search address): skipped and counted.
    fn unbound_local_data(&mut self, text: &str, line: usize) {
        let record = text
            .split_once(':')
            .map_or("", |(_, r)| r)
            .trim()
            .trim_matches(['"', '\''])
            .trim();
        let fields: Vec<&str> = record.split_whitespace().collect();
        let null = match fields[..] {
            [name, ref middle @ .., rtype, address]
                if middle.len() <= 2
                    && middle.iter().all(|f| {
                        f.eq_ignore_ascii_case("IN") || f.bytes().all(|b| b.is_ascii_digit())
                    })
                    && (rtype.eq_ignore_ascii_case("A") || rtype.eq_ignore_ascii_case("AAAA"))
                    && is_block_address(address) =>
            {
                Some(name)
            }
            _ => None,
        };
        let Some(name) = null else {
            self.out.skip_unsupported(
                "unbound local-data",
                self.file,
                line,
                format!(
                    "{text:?}: local data answering other than 0.0.0.0, :: or loopback (a \
                     redirection, a block page) is read from RPZ files only; skipped"
                ),
            );
            return;
        };
        match normalize_name(name) {
            Ok(name) => self.push(name, self.opts.bare_kind, None, QTYPES_ALL, line),
            Err(e) => self.error(line, text, e),
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
        let action = exception.then_some(Action::Pass);
        if is_regex(bare) {
            self.skip_adblock(
                "adblock regular expression",
                text,
                "regular-expression rule is not supported",
                action,
                line,
            );
            return;
        }
        if let Some((rule, kind)) = adblock_anchor(bare) {
            self.adblock(text, rule, Some(kind), action, line);
            return;
        }
        if !exception
            && text.contains('#')
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
        // `name^`, `@@name^` without an anchor (AdGuard's DNS filter has them); a URL whose
        // path or query holds a `^` stays a URL.
        if bare.contains('^') && !bare.contains("://") {
            self.adblock(text, bare, None, action, line);
            return;
        }
        if exception {
            self.error(line, text, "`@@` only goes with `@@||name^` or `@@|name^`");
            return;
        }
        let (s, kind) = if let Some(rest) = text.strip_prefix("*.") {
            self.out.stars += 1;
            (rest, self.opts.star_kind)
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
            // A page of a host others share (a form on docs.google.com, a video on a
            // streaming site): the host's rule would block every page of it.
            Ok(name) if url_has_path(s) => self.out.skip_unsupported(
                "URL with a path",
                self.file,
                line,
                format!(
                    "{text:?}: a URL with a path: DNS cannot block one page, and blocking the \
                     host {name} would block all of it; skipped (list the host to block it)"
                ),
            ),
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

    /// An adblock rule that means something no name rule can (a regular expression, a
    /// pattern, a modifier): skipped and counted as `what`. An exception skipped lets
    /// nothing through: the warning says so.
    fn skip_adblock(
        &mut self,
        what: &str,
        text: &str,
        why: impl std::fmt::Display,
        action: Option<Action>,
        line: usize,
    ) {
        let skipped = if action == Some(Action::Pass) {
            "an exception skipped: names it would let through stay blocked"
        } else {
            "rule skipped"
        };
        self.out
            .skip_unsupported(what, self.file, line, format!("{text:?}: {why}; {skipped}"));
    }

    /// `||name^[$modifiers]` after the `||` (and `@@`), `|name^` after the `|`, or `name^`
    /// without an anchor: `anchor` is what the anchor makes of a name (see
    /// [`adblock_anchor`]), None without one. AdGuard matches host names against the rule
    /// as a pattern, so a `*` inside the name, a rule without `^` (a prefix of host names)
    /// or without an anchor (a suffix of them, `-ads.example^` matching
    /// `my-ads.example`) is more than a name and the names below it: skipped and counted,
    /// if its name part is made of what names are made of (else invalid).
    fn adblock(
        &mut self,
        text: &str,
        rule: &str,
        anchor: Option<Kind>,
        action: Option<Action>,
        line: usize,
    ) {
        let Some((host, tail)) = rule.split_once('^') else {
            if rule.contains('/') {
                self.error(line, text, "adblock rule with a path: not a domain rule");
                return;
            }
            let pattern = rule.split_once('$').map_or(rule, |(p, _)| p);
            match check_pattern(pattern) {
                Ok(()) => self.skip_adblock(
                    "adblock rule without ^",
                    text,
                    "without `^` AdGuard matches every host name that starts with the rule, \
                     which a name rule cannot express (`||name^` blocks the name)",
                    action,
                    line,
                ),
                Err(e) => self.error(line, text, e),
            }
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
                    self.skip_adblock(
                        &format!("adblock ${other}"),
                        text,
                        format_args!("modifier `${other}` is not supported"),
                        action,
                        line,
                    );
                    return;
                }
            }
        }
        if host.contains('/') {
            self.error(line, text, "adblock rule with a path: not a domain rule");
            return;
        }
        if is_address(host) {
            self.address(text, line);
            return;
        }
        let Some(kind) = anchor else {
            match check_pattern(host) {
                Ok(()) => self.skip_adblock(
                    "adblock unanchored rule",
                    text,
                    "without `||` AdGuard matches every host name that ends with the rule \
                     (`ads.example^` also `badads.example`), which a name rule cannot express",
                    action,
                    line,
                ),
                Err(e) => self.error(line, text, e),
            }
            return;
        };
        let (s, kind) = match host.strip_prefix("*.") {
            Some(rest) if kind == Kind::Subtree => (rest, Kind::Below),
            _ => (host, kind),
        };
        if s.contains('*') {
            match check_pattern(s) {
                Ok(()) => self.skip_adblock(
                    "adblock wildcard",
                    text,
                    "a `*` inside a name matches any text there, which a name rule cannot \
                     express",
                    action,
                    line,
                ),
                Err(e) => self.error(line, text, e),
            }
            return;
        }
        match normalize_name(s) {
            Ok(name) => self.push(name, kind, action, qtypes, line),
            Err(e) => self.error(line, text, e),
        }
    }
}

/// Whether the name part of an adblock rule that is a pattern (with `*`s, or a piece of
/// host names: `-ads.example`, `.example`) is made of what names are made of, so that
/// garbage stays invalid while patterns are skipped.
fn check_pattern(p: &str) -> Result<(), NameError> {
    let p = p.strip_prefix('.').unwrap_or(p);
    normalize_name(&p.replace('*', "a")).map(drop)
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

/// Whether a URL-like entry names more than its host: a path other than `/`, a query or a
/// fragment (`https://host/` and `host:443` name the host alone).
pub(crate) fn url_has_path(s: &str) -> bool {
    let rest = s.split_once("://").map_or(s, |(_, rest)| rest);
    rest.find(['/', '?', '#'])
        .is_some_and(|i| &rest[i..] != "/")
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
        assert_eq!(w.len(), 4, "two URLs skipped, two reduced: {w:#?}");
        assert!(
            w[0].starts_with("list.txt:8: ") && w[0].contains("host www.football.example"),
            "{}",
            w[0]
        );
        assert_eq!(out.unsupported.get("URL with a path"), Some(&2));
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
            ("||no,caret.example".into(), "','"),
            ("||a,b*.example^".into(), "','"),
            ("semi;unanchored^".into(), "';'"),
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

    /// A hosts line answering another address than a null or loopback one redirects its
    /// names (SafeSearch lists, pinned addresses): skipped and counted, not blocked.
    #[test]
    fn hosts_redirects_are_skipped_and_counted() {
        let text = "0.0.0.0 a.example\n\
            216.239.38.120 www.google.com forcesafesearch.google.com\n\
            140.82.112.3 github.com\n\
            127.0.0.53 b.example\n\
            ::1 c.example\n\
            0:0:0:0:0:0:0:0 d.example\n\
            0 e.example\n\
            ::ffff:127.0.0.1 f.example\n\
            2001:db8::1 v6.example # a comment\n\
            fe80::1%lo0 localhost\n\
            192.0.2.1 localhost broadcasthost\n\
            fe80::1%lo0 zoned.example\n";
        for (path, format) in [("list.txt", Format::Plain), ("hosts", Format::Hosts)] {
            let out = parse_str(text, Path::new(path), format, &Options::default());
            assert!(out.errors.is_empty(), "{:?}", out.errors);
            let sub = |n: &str| (n.to_string(), Kind::Subtree, None);
            assert_eq!(
                names(&out),
                ["a", "b", "c", "d", "e", "f"]
                    .map(|n| sub(&format!("{n}.example")))
                    .to_vec()
            );
            assert_eq!(
                out.unsupported.get("hosts redirect to an address"),
                Some(&4)
            );
            let w = messages(&out.warnings);
            assert_eq!(
                w[0],
                format!(
                    "{path}:2: \"216.239.38.120 www.google.com forcesafesearch.google.com\": \
                     hosts entry answering 216.239.38.120, a redirection, not a block; skipped"
                )
            );
            let lines: Vec<&str> = w
                .iter()
                .map(|m| m.split(": ").next().unwrap_or_default())
                .collect();
            let want = [2, 3, 9, 12].map(|l| format!("{path}:{l}"));
            assert_eq!(lines, want, "{w:#?}");
            assert!(w[2].contains("answering 2001:db8::1,"), "{}", w[2]);
        }
    }

    /// A URL names a page: reduced to its host only when it names nothing more (`/` at
    /// most), else skipped and counted (blocking a shared host would block all of it).
    #[test]
    fn urls_with_a_path_are_skipped_and_counted() {
        let out = plain(
            "https://docs.google.com/forms/x\n\
             https://a.example/\n\
             http://b.example\n\
             c.example:8443/\n\
             https://d.example/?q=1\n\
             https://e.example/#top\n\
             f.example/page.html\n\
             https://g.example?q\n\
             https://h.example/search?q=^ads\n\
             https://bad..example/x\n",
        );
        assert_eq!(
            names(&out),
            ["a", "b", "c"]
                .map(|n| (format!("{n}.example"), Kind::Subtree, None))
                .to_vec()
        );
        assert_eq!(out.unsupported.get("URL with a path"), Some(&6));
        let w = messages(&out.warnings);
        assert_eq!(w.len(), 9, "{w:#?}");
        assert_eq!(
            w[0],
            "list.txt:1: \"https://docs.google.com/forms/x\": a URL with a path: DNS cannot \
             block one page, and blocking the host docs.google.com would block all of it; \
             skipped (list the host to block it)"
        );
        for (i, m) in w.iter().enumerate() {
            let want = if (1..4).contains(&i) {
                "URL reduced to its host"
            } else {
                "a URL with a path"
            };
            assert!(
                m.starts_with(&format!("list.txt:{}: ", i + 1)) && m.contains(want),
                "{m}"
            );
        }
        // An invalid host stays invalid, path or not.
        let e = messages(&out.errors);
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(e[0].starts_with("list.txt:10: ") && e[0].contains("empty label"));
    }

    /// AdGuard's DNS filter holds patterns no name rule expresses (a `*` inside a name, no
    /// `^`, no anchor) and addresses: skipped and counted, so the filter loads.
    #[test]
    fn adguard_patterns_are_skipped_and_counted() {
        let out = plain(
            "||ad-host-backup-*.aliyuncs.com^\n\
             ||counter*.stat.ovh^\n\
             ||direct-specific.com\n\
             ||107.148.45.21^\n\
             @@-ds.metric.gstatic.com^|\n\
             ads.example^\n\
             @@good.example^$important\n\
             @@||email.*.skyeng.ru^|\n\
             |*.exact.example^\n\
             ||*.sub.example^\n\
             ||ok.example^\n",
        );
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            names(&out),
            vec![
                ("sub.example".into(), Kind::Below, None),
                ("ok.example".into(), Kind::Subtree, None),
            ]
        );
        for (kind, n) in [
            ("adblock wildcard", 4),
            ("adblock rule without ^", 1),
            ("adblock unanchored rule", 3),
            ("IP address", 1),
        ] {
            assert_eq!(out.unsupported.get(kind), Some(&n), "{kind}");
        }
        let w = messages(&out.warnings);
        assert_eq!(w.len(), 9, "{w:#?}");
        for (i, m) in w.iter().enumerate() {
            assert!(m.starts_with(&format!("list.txt:{}: ", i + 1)), "{m}");
            let exception = [5, 7, 8].contains(&(i + 1));
            assert_eq!(
                m.ends_with("; an exception skipped: names it would let through stay blocked"),
                exception,
                "{m}"
            );
        }
    }

    /// Lists joined with `cat` carry a byte-order mark where each file began.
    #[test]
    fn a_byte_order_mark_opens_any_line() {
        let text = "\u{feff}a.example\n\u{feff}b.example\n\u{feff}# comment\n\
                    \u{feff}0.0.0.0 c.example\n\u{feff}||d.example^\n\u{feff}\n";
        let out = plain(text);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            names(&out),
            ["a", "b", "c", "d"]
                .map(|n| (format!("{n}.example"), Kind::Subtree, None))
                .to_vec()
        );
        let out = parse_str(
            "0.0.0.0 a.example\n\u{feff}0.0.0.0 b.example\n",
            Path::new("hosts"),
            Format::Hosts,
            &Options::default(),
        );
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.rules.len(), 2);
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

    /// One name blocked for A on one line and AAAA on another is blocked for both; with
    /// another action it is a conflict, named with its types.
    #[test]
    fn repeats_that_differ_in_query_types_merge() {
        let out = plain(
            "||a.example^$dnstype=A\n||a.example^$dnstype=AAAA\n\
             @@||b.example^$dnstype=A\n||b.example^\n",
        );
        assert_eq!(out.rules.len(), 2, "{:?}", out.errors);
        assert_eq!(out.rules[0].qtypes, qtype_bit(1) | qtype_bit(28));
        assert_eq!(out.duplicates, 1);
        let e = messages(&out.errors);
        assert_eq!(
            e,
            ["list.txt:4: subtree b.example (the order's action) conflicts with line 3 (pass for A)"]
        );
    }

    /// An en dash copied from a document makes another name than the hyphen would: loaded
    /// as written (it is a valid name), with a warning.
    #[test]
    fn a_typographic_dash_is_warned_about() {
        let out = plain("pirate\u{2013}site.example\nb\u{fc}cher.example\nok-site.example\n");
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.rules.len(), 3);
        let w = messages(&out.warnings);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("list.txt:1: xn--") && w[0].contains("U+2013"),
            "{w:?}"
        );
    }

    /// `*.name` is below name by default (as in RPZ), the name too with `star_kind`
    /// subtree; either way the entries are counted, for the load's note.
    #[test]
    fn star_entries_follow_the_star_option() {
        let text = "*.a.example\n0.0.0.0 *.b.example\nc.example\n";
        let out = plain(text);
        assert_eq!(out.stars, 2);
        assert_eq!(
            names(&out),
            vec![
                ("a.example".into(), Kind::Below, None),
                ("b.example".into(), Kind::Below, None),
                ("c.example".into(), Kind::Subtree, None),
            ]
        );
        let opts = Options {
            star_kind: Kind::Subtree,
            ..Options::default()
        };
        let out = parse_str(text, Path::new("list.txt"), Format::Plain, &opts);
        assert_eq!(
            names(&out),
            vec![
                ("a.example".into(), Kind::Subtree, None),
                ("b.example".into(), Kind::Subtree, None),
                ("c.example".into(), Kind::Subtree, None),
            ]
        );
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
    /// `redirect` zones whose `local-data:` answers 0.0.0.0 or :: (Energized, hagezi) blocks,
    /// other local data (a safe-search address) set aside and counted.
    #[test]
    fn unbound_lines() {
        let text = "server:\n\
            local-zone: \"a.example.\" always_nxdomain\n\
            local-zone: b.example refuse\n\
            local-zone: \"c.example\" deny\n\
            local-zone: \"d.example.\" always_nodata\n\
            local-zone: \"e.example.\" redirect\n\
            local-data: \"e.example. IN A 0.0.0.0\"\n\
            local-data: \"e.example. 3600 IN AAAA ::\"\n\
            local-zone: \"www.google.com\" redirect\n\
            local-data: \"www.google.com A 216.239.38.120\"\n\
            local-data: 'l.example A 127.0.0.1'\n\
            local-data: \"m.example TXT 0.0.0.0\"\n\
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
                r("e.example", None),
                r("l.example", None),
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
        // e.example's AAAA :: is the same rule again.
        assert_eq!(out.duplicates, 1);
        assert_eq!(out.unsupported.get("unbound local-data"), Some(&2));
        for kind in ["unbound local-zone that does not block", "unbound include"] {
            assert_eq!(out.unsupported.get(kind), Some(&1), "{kind}");
        }
        assert_eq!(
            out.unsupported
                .get("unbound redirect zone (its local-data lines decide)"),
            Some(&2)
        );
        assert_eq!(out.unsupported.len(), 4, "{:?}", out.unsupported);
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
