//! TTL units (`1h`, `3W`, `1h30m`), the one place they are handled.
//!
//! BIND, NSD, Knot, Unbound and PowerDNS read a TTL written as numbers with units (`s`, `m`,
//! `h`, `d`, `w`, any case, e.g. `1h30m`) wherever zone files hold one: `$TTL`, the TTL field
//! of a record, and the refresh, retry, expire and minimum fields of an SOA. `domain` 0.12's
//! scanner (the newest 0.12 release is 0.12.3) reads plain seconds only and has no option for
//! units, so each entry goes through [`prepare`] before the scanner sees it: those fields,
//! and only those, are rewritten to seconds. Owners, record data (a TXT string `"1h"`, a
//! CNAME target `1d.`) and names that look like numbers are never touched, since a field is
//! recognised by its position in the entry, the way the scanner itself reads the entry.
//!
//! The grammar is BIND's (`dns_ttl_fromtext`): one or more `NUMBER UNIT` groups, or one plain
//! number; a number after a unit without its own unit (`1h30`) is refused as ambiguous, and
//! the total must fit in 32 bits.

use std::borrow::Cow;

use domain::base::iana::Class;

/// What the rest of the RPZ reader needs to know about an entry besides the scanner's view
/// of it (to recover from an entry the scanner refuses).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Shape<'a> {
    /// `$ORIGIN`, `$TTL`, `$INCLUDE`, … as written, for a directive.
    pub directive: Option<&'a str>,
    /// The owner as written, when the entry has one (it does not start with white space).
    pub owner: Option<&'a str>,
    /// The record type as written (None when the entry ends before it).
    pub rtype: Option<&'a str>,
}

impl Shape<'_> {
    pub fn is_soa(&self) -> bool {
        self.rtype.is_some_and(|t| t.eq_ignore_ascii_case("SOA"))
    }

    pub fn is_origin(&self) -> bool {
        self.directive
            .is_some_and(|d| d.eq_ignore_ascii_case("$ORIGIN"))
    }
}

/// A TTL field that is not a TTL.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BadTtl {
    /// Byte offset of the field in the entry.
    pub at: usize,
    /// The field and what is wrong with it.
    pub message: String,
}

/// One entry (a chunk of a zone file: a line, or lines joined by parentheses) with its TTL
/// fields in seconds, and its shape.
pub(super) fn prepare(entry: &str) -> (Shape<'_>, Result<Cow<'_, str>, BadTtl>) {
    let mut shape = Shape::default();
    let mut toks = Tokens {
        b: entry.as_bytes(),
        pos: 0,
    };
    let text = |t: Token| entry.get(t.start..t.end).unwrap_or_default();
    // (start, end, seconds) of each field to rewrite, in order.
    let mut edits: Vec<(usize, usize, u32)> = Vec::new();
    let field = |t: Token, edits: &mut Vec<(usize, usize, u32)>| -> Result<(), BadTtl> {
        match seconds(text(t)) {
            Ok(None) => Ok(()),
            Ok(Some(s)) => {
                edits.push((t.start, t.end, s));
                Ok(())
            }
            Err(why) => Err(BadTtl {
                at: t.start,
                message: format!("TTL {:?}: {why}", text(t)),
            }),
        }
    };
    let result = (|| {
        let Some(first) = toks.next() else {
            return Ok(());
        };
        // The scanner's rule: an entry that starts with white space has no owner (it repeats
        // the previous one).
        let indented = entry.starts_with([' ', '\t', '\r']);
        if !indented && !first.quoted && text(first).starts_with('$') {
            shape.directive = Some(text(first));
            if text(first).eq_ignore_ascii_case("$TTL") {
                if let Some(t) = toks.next().filter(|t| !t.quoted) {
                    field(t, &mut edits)?;
                }
            }
            return Ok(());
        }
        let mut next = if indented {
            Some(first)
        } else {
            shape.owner = Some(text(first));
            toks.next()
        };
        // `[TTL] [CLASS] TYPE` or `[CLASS] [TTL] TYPE`: a field that starts with a digit can
        // only be the TTL (classes and types start with a letter).
        while let Some(t) = next {
            let s = text(t);
            if t.quoted {
                break;
            }
            if s.starts_with(|c: char| c.is_ascii_digit()) {
                field(t, &mut edits)?;
            } else if s.parse::<Class>().is_err() {
                shape.rtype = Some(s);
                break;
            }
            next = toks.next();
        }
        if shape.is_soa() {
            // MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM: the serial is a plain number.
            for (i, t) in toks.by_ref().take(7).enumerate() {
                if i >= 3 && !t.quoted && text(t).starts_with(|c: char| c.is_ascii_digit()) {
                    field(t, &mut edits)?;
                }
            }
        }
        Ok(())
    })();
    let result = result.map(|()| {
        if edits.is_empty() {
            return Cow::Borrowed(entry);
        }
        let mut out = String::with_capacity(entry.len() + 8 * edits.len());
        let mut from = 0;
        for (start, end, secs) in edits {
            out.push_str(entry.get(from..start).unwrap_or_default());
            out.push_str(&secs.to_string());
            from = end;
        }
        out.push_str(entry.get(from..).unwrap_or_default());
        Cow::Owned(out)
    });
    (shape, result)
}

/// A TTL field in seconds: None when it is already plain seconds (nothing to rewrite).
pub(super) fn seconds(s: &str) -> Result<Option<u32>, &'static str> {
    const OUT_OF_RANGE: &str = "more than 4294967295 seconds";
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u32>() {
            Ok(_) => Ok(None),
            Err(_) if !s.is_empty() => Err(OUT_OF_RANGE),
            Err(_) => Err("empty"),
        };
    }
    let b = s.as_bytes();
    let mut total: u64 = 0;
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err("not a TTL: seconds, or numbers with units s, m, h, d, w (e.g. 1h30m)");
        }
        // At most 10 digits fit in a u32; more is out of range whatever the unit.
        let n: u64 = match s.get(start..i).and_then(|d| d.parse().ok()) {
            Some(n) if i - start <= 10 => n,
            _ => return Err(OUT_OF_RANGE),
        };
        let unit = match b.get(i).map(u8::to_ascii_lowercase) {
            Some(b's') => 1,
            Some(b'm') => 60,
            Some(b'h') => 3600,
            Some(b'd') => 86_400,
            Some(b'w') => 604_800,
            None => return Err("a number after a unit needs its own unit (e.g. 1h30m, not 1h30)"),
            Some(_) => {
                return Err("not a TTL: seconds, or numbers with units s, m, h, d, w (e.g. 1h30m)")
            }
        };
        i += 1;
        total += n * unit;
        if total > u64::from(u32::MAX) {
            return Err(OUT_OF_RANGE);
        }
    }
    u32::try_from(total).map(Some).map_err(|_| OUT_OF_RANGE)
}

#[derive(Clone, Copy, Debug)]
struct Token {
    start: usize,
    end: usize,
    quoted: bool,
}

/// The fields of an entry as the scanner splits them: white space, `(`, `)` and line feeds
/// separate them, `;` comments run to the end of the line, `"…"` is one field, `\` escapes
/// the next character.
struct Tokens<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Iterator for Tokens<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        let b = self.b;
        while self.pos < b.len() {
            match b[self.pos] {
                b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' => self.pos += 1,
                b';' => {
                    while self.pos < b.len() && b[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                b'"' => {
                    let start = self.pos + 1;
                    let mut i = start;
                    while i < b.len() && b[i] != b'"' {
                        i += if b[i] == b'\\' { 2 } else { 1 };
                    }
                    let end = i.min(b.len());
                    self.pos = end + 1;
                    return Some(Token {
                        start,
                        end,
                        quoted: true,
                    });
                }
                _ => {
                    let start = self.pos;
                    let mut i = start;
                    while i < b.len() {
                        match b[i] {
                            b'\\' => i += 2,
                            b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b';' | b'"' => break,
                            _ => i += 1,
                        }
                    }
                    let end = i.min(b.len());
                    self.pos = end;
                    return Some(Token {
                        start,
                        end,
                        quoted: false,
                    });
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(entry: &str) -> String {
        match prepare(entry).1 {
            Ok(s) => s.into_owned(),
            Err(e) => format!("error at {}: {}", e.at, e.message),
        }
    }

    #[test]
    fn units_to_seconds() {
        // Oracle: the figures worked out by hand (1h = 3600 s, 1d = 86400 s, 1w = 604800 s).
        let cases = [
            ("1h", 3600),
            ("1H", 3600),
            ("30m", 1800),
            ("45s", 45),
            ("1d", 86_400),
            ("1D", 86_400),
            ("3W", 1_814_400),
            ("12H", 43_200),
            ("1h30m", 5400),
            ("1w2d3h4m5s", 788_645),
            ("2h2h", 14_400),
            ("0s", 0),
            ("4294967295s", 4_294_967_295),
            ("7101w3d6h28m15s", 4_294_967_295),
        ];
        for (s, want) in cases {
            assert_eq!(seconds(s), Ok(Some(want)), "{s}");
        }
        assert_eq!(seconds("300"), Ok(None));
        assert_eq!(seconds("4294967295"), Ok(None));
        for bad in [
            "1h30",
            "1x",
            "h",
            "1.5h",
            "-1h",
            "1hh",
            "4294967296",
            "4294967296s",
            "7102w",
            "99999999999999999999999h",
        ] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rewrites_ttl_fields_only() {
        assert_eq!(rewritten("$TTL 1h\n"), "$TTL 3600\n");
        assert_eq!(rewritten("$ttl 2h; comment\n"), "$ttl 7200; comment\n");
        assert_eq!(rewritten("a 1d CNAME .\n"), "a 86400 CNAME .\n");
        assert_eq!(rewritten("a IN 1h30m CNAME .\n"), "a IN 5400 CNAME .\n");
        assert_eq!(rewritten("a 1W IN CNAME .\n"), "a 604800 IN CNAME .\n");
        assert_eq!(rewritten("\t1h A 192.0.2.1\n"), "\t3600 A 192.0.2.1\n");
        // Owners, names and record data that look like TTLs stay as they are.
        for same in [
            "1h CNAME .\n",
            "1d 300 CNAME 1h.\n",
            "a TXT \"1h\" 2d\n",
            "a CNAME 1d.example.\n",
            "$ORIGIN 1h.example.\n",
            "$INCLUDE 1d.rpz 1h.\n",
            "a A 192.0.2.1 ; 1h\n",
            "; $TTL 1h\n",
            "a MX 10 1h.example.\n",
            "\n",
            "",
        ] {
            assert_eq!(rewritten(same), same);
        }
        // SOA: refresh, retry, expire, minimum; never the serial, nor the names.
        assert_eq!(
            rewritten("@ IN SOA ns. 1h. ( 2026010101 3H 15M 3W 12H )\n"),
            "@ IN SOA ns. 1h. ( 2026010101 10800 900 1814400 43200 )\n"
        );
        assert_eq!(
            rewritten("@ 1d SOA ns. h. (\n 1 ; serial\n 12h ; refresh\n 15m\n 3w 2h)\n"),
            "@ 86400 SOA ns. h. (\n 1 ; serial\n 43200 ; refresh\n 900\n 1814400 7200)\n"
        );
        // Escapes and quotes keep their fields whole.
        assert_eq!(
            rewritten("a\\ 1h 1h TXT \"x\\\" 1h\" 1h\n"),
            "a\\ 1h 3600 TXT \"x\\\" 1h\" 1h\n"
        );
    }

    #[test]
    fn bad_ttl_fields_are_named() {
        assert_eq!(
            rewritten("a 1h30 CNAME .\n"),
            "error at 2: TTL \"1h30\": a number after a unit needs its own unit (e.g. 1h30m, not 1h30)"
        );
        assert!(rewritten("$TTL 5x\n").starts_with("error at 5: TTL \"5x\": not a TTL"));
        assert!(
            rewritten("@ SOA a. b. 1 2 3 4 99999999999\n").contains("more than 4294967295 seconds")
        );
        // A serial is not a TTL field: the scanner judges it.
        assert_eq!(
            rewritten("@ SOA a. b. 1h 2 3 4 5\n"),
            "@ SOA a. b. 1h 2 3 4 5\n"
        );
    }

    #[test]
    fn shapes() {
        let s = prepare("$ORIGIN x.\n").0;
        assert!(s.is_origin() && s.owner.is_none());
        let s = prepare("x.example. 1h IN soa a. b. 1 2 3 4 5\n").0;
        assert_eq!((s.owner, s.is_soa()), (Some("x.example."), true));
        let s = prepare("  IN NS ns.\n").0;
        assert_eq!((s.owner, s.rtype), (None, Some("NS")));
    }
}
