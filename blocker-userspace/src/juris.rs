//! Jurisdictions: named sets of client prefixes (e.g. `IT`, the Italian clients). An order
//! scoped to a jurisdiction only applies to queries from its clients. This module turns what
//! an operator hands us into prefix sets ready for the kernel's LPM trie:
//!
//! - a **prefix file** ([`parse_prefix_file`]): one CIDR per line, `#` comments;
//! - an **RIR delegated-stats file** ([`parse_rir_file`]): the `registry|cc|type|start|value|
//!   date|status[|opaque-id[|extensions]]` files every Regional Internet Registry publishes
//!   (<https://www.nro.net/wp-content/uploads/nro-extended-stats-readme5.txt>), filtered by
//!   country;
//!
//! and [`normalize`] makes the result minimal (sorted, no duplicates, nothing covered by
//! something else, siblings merged into their parent).
//!
//! Every [`Prefix`] lives in one 128-bit space: IPv4 prefixes are stored IPv4-mapped
//! (`::ffff:a.b.c.d`, length 96 + the IPv4 length), so one trie holds both families.
//! Input is refused rather than repaired: a prefix with host bits set is an error (with the
//! prefix the operator probably meant), and a file with any bad line yields no prefixes at
//! all, only errors naming `FILE:LINE`.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    str::FromStr,
};

/// How many line errors a [`JurisError::Invalid`] keeps (and shows); the rest are counted.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// The IPv4-mapped prefix `::ffff:0:0/96`, as the top 96 bits of a `u128`.
const V4_MAPPED: u128 = 0xffff_u128 << 32;

/// A client prefix, IPv4 stored as IPv4-mapped IPv6 (`::ffff:a.b.c.d`, length 96 + the IPv4
/// length), address bits past `len` cleared. Ordered by address, then length (so a prefix
/// sorts before the prefixes it covers). Serialized as its CIDR string ([`fmt::Display`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    /// Network byte order; bits past `len` are zero.
    pub addr: [u8; 16],
    /// 0..=128 (IPv4: 96..=128).
    pub len: u8,
}

/// Mask of the first `len` bits of a 128-bit address.
fn mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l if l >= 128 => u128::MAX,
        l => u128::MAX << (128 - u32::from(l)),
    }
}

/// `s` for an error message: quoted and escaped, cut after 60 characters (a binary file's
/// "line" can be megabytes).
fn quote(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}…")
    }
}

impl Prefix {
    /// The prefix of `len` bits (0..=128) at `bits`; `None` if `bits` has host bits set.
    fn from_bits(bits: u128, len: u8) -> Option<Prefix> {
        (len <= 128 && bits & !mask(len) == 0).then(|| Prefix {
            addr: bits.to_be_bytes(),
            len,
        })
    }

    fn bits(&self) -> u128 {
        u128::from_be_bytes(self.addr)
    }

    /// Parses `"192.0.2.0/24"`, `"2001:db8::/32"`, or a bare address (a host route: /32 or
    /// /128). IPv4-mapped IPv6 notation (`"::ffff:192.0.2.0/120"`) is the same prefix as its
    /// IPv4 form. Refuses host bits past the length, saying which prefix was probably meant.
    /// No surrounding whitespace is accepted (file parsers trim lines first).
    pub fn parse(s: &str) -> Result<Prefix, String> {
        if s.is_empty() {
            return Err("empty prefix".into());
        }
        let (addr_str, len_str) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr_str
            .parse()
            .map_err(|_| format!("{}: not an IP address or CIDR prefix", quote(s)))?;
        let (bits, max, offset, family) = match addr {
            IpAddr::V4(a) => (V4_MAPPED | u128::from(u32::from(a)), 32u8, 96u8, "IPv4"),
            IpAddr::V6(a) => (u128::from(a), 128u8, 0u8, "IPv6"),
        };
        let len = match len_str {
            None => max,
            Some(l) => {
                if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("{}: invalid prefix length {}", quote(s), quote(l)));
                }
                match l.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => {
                        return Err(format!(
                            "{}: prefix length {l} out of range for {family} (0..={max})",
                            quote(s)
                        ))
                    }
                }
            }
        };
        let len = len + offset;
        match Prefix::from_bits(bits, len) {
            Some(p) => Ok(p),
            None => {
                let meant = Prefix {
                    addr: (bits & mask(len)).to_be_bytes(),
                    len,
                };
                Err(format!("{s}: host bits set; did you mean {meant}?"))
            }
        }
    }

    /// Whether this is an IPv4 prefix (inside `::ffff:0:0/96`, with a length of at least 96).
    pub fn is_v4(&self) -> bool {
        self.len >= 96 && self.bits() >> 32 == 0xffff
    }

    /// Whether `addr` is inside this prefix (IPv4 addresses are looked up IPv4-mapped).
    pub fn contains(&self, addr: &IpAddr) -> bool {
        let bits = match addr {
            IpAddr::V4(a) => V4_MAPPED | u128::from(u32::from(*a)),
            IpAddr::V6(a) => u128::from(*a),
        };
        bits & mask(self.len) == self.bits()
    }

    /// Whether `other` is inside this prefix (or is this prefix).
    pub fn covers(&self, other: &Prefix) -> bool {
        other.len >= self.len && other.bits() & mask(self.len) == self.bits()
    }

    /// The prefix one bit shorter that holds this one and its sibling; `None` for `::/0`.
    fn parent(&self) -> Option<Prefix> {
        let len = self.len.checked_sub(1)?;
        Some(Prefix {
            addr: (self.bits() & mask(len)).to_be_bytes(),
            len,
        })
    }
}

impl fmt::Display for Prefix {
    /// CIDR notation; IPv4 prefixes in dotted quad with their IPv4 length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_v4() {
            // Truncation intended: the low 32 bits are the IPv4 address.
            let v4 = Ipv4Addr::from(self.bits() as u32);
            write!(f, "{v4}/{}", self.len - 96)
        } else {
            write!(f, "{}/{}", Ipv6Addr::from(self.bits()), self.len)
        }
    }
}

impl FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Prefix, String> {
        Prefix::parse(s)
    }
}

impl serde::Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Prefix, D::Error> {
        let s = String::deserialize(deserializer)?;
        Prefix::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One bad line of an input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    pub problem: String,
}

/// Why a prefix file or RIR file gave no prefixes.
#[derive(Debug, thiserror::Error)]
pub enum JurisError {
    /// The file could not be read.
    #[error("reading {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bad lines: the first [`MAX_REPORTED_ERRORS`] of them, one `FILE:LINE: problem` per
    /// line, then how many more there were.
    #[error("{}", format_line_errors(file, errors, *total))]
    Invalid {
        /// The file as the caller named it.
        file: String,
        /// The first [`MAX_REPORTED_ERRORS`] bad lines.
        errors: Vec<LineError>,
        /// How many bad lines in all.
        total: usize,
    },
    /// An RIR file without a single allocated or assigned IPv4/IPv6 record for the country.
    #[error("no ipv4/ipv6 record for country {country} in {file}")]
    NoRecords { file: String, country: String },
    /// The country asked for is not a two-letter code.
    #[error("{0}: not a country code (two letters, e.g. IT)")]
    BadCountry(String),
}

fn format_line_errors(file: &str, errors: &[LineError], total: usize) -> String {
    let mut out = errors
        .iter()
        .map(|e| format!("{file}:{}: {}", e.line, e.problem))
        .collect::<Vec<_>>()
        .join("\n");
    if total > errors.len() {
        out.push_str(&format!(
            "\n{file}: {} more bad lines not shown ({total} in all)",
            total - errors.len()
        ));
    }
    out
}

/// Collects line errors: keeps the first [`MAX_REPORTED_ERRORS`], counts all.
#[derive(Default)]
struct Errors {
    kept: Vec<LineError>,
    total: usize,
}

impl Errors {
    fn push(&mut self, line: usize, problem: String) {
        self.total += 1;
        if self.kept.len() < MAX_REPORTED_ERRORS {
            self.kept.push(LineError { line, problem });
        }
    }

    /// `Ok(value)` if nothing was pushed, else the errors for `file`.
    fn finish<T>(self, file: &str, value: T) -> Result<T, JurisError> {
        if self.total == 0 {
            Ok(value)
        } else {
            Err(JurisError::Invalid {
                file: file.to_owned(),
                errors: self.kept,
                total: self.total,
            })
        }
    }
}

/// Reads `path` as text. Invalid UTF-8 becomes U+FFFD, so it is reported on its line (or
/// ignored in a comment) rather than failing the whole file without a line number.
fn read_text(path: &Path) -> Result<String, JurisError> {
    Ok(String::from_utf8_lossy(&read_bytes(path)?).into_owned())
}

/// A prefix or RIR file's bytes (for the `*_text` parsers, through
/// `String::from_utf8_lossy`).
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, JurisError> {
    std::fs::read(path).map_err(|source| JurisError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The lines of `text` with their 1-based numbers, a leading byte-order mark dropped.
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines().enumerate().map(|(i, l)| (i + 1, l))
}

/// Reads a prefix file: one CIDR prefix (or bare address) per line, `#` starting a comment
/// (whole-line or trailing), blank lines ignored, surrounding whitespace trimmed. Prefixes
/// come back in file order, not normalized. Any bad line makes it an error naming
/// `FILE:LINE` (the path as given) and nothing is returned. A file with no prefix at all is
/// not an error here: it gives an empty list.
pub fn parse_prefix_file(path: &Path) -> Result<Vec<Prefix>, JurisError> {
    let text = read_text(path)?;
    parse_prefix_text(&path.display().to_string(), &text)
}

/// [`parse_prefix_file`] on text already read; `name` is what errors call the file.
pub fn parse_prefix_text(name: &str, text: &str) -> Result<Vec<Prefix>, JurisError> {
    let mut prefixes = Vec::new();
    let mut errors = Errors::default();
    for (n, line) in numbered_lines(text) {
        let content = match line.split_once('#') {
            Some((before, _)) => before,
            None => line,
        }
        .trim();
        if content.is_empty() {
            continue;
        }
        match Prefix::parse(content) {
            Ok(p) => prefixes.push(p),
            Err(problem) => errors.push(n, problem),
        }
    }
    errors.finish(name, prefixes)
}

/// Reads an RIR delegated-stats file (`delegated-ripencc-extended-latest` and the like)
/// and returns the prefixes of `country`'s allocated and assigned IPv4 and IPv6 records.
///
/// - Comment lines (`#`), blank lines, version lines (`2|ripencc|20261205|…`, also in the
///   middle, so the five RIRs' files can be concatenated) and summary lines
///   (`ripencc|*|ipv4|*|12345|summary`) are skipped, as are `asn` records.
/// - Every `ipv4`/`ipv6` record is checked, whatever its country (a truncated or corrupted
///   download is refused rather than half used); only those with `cc` equal to `country`
///   (case-insensitive) and status `allocated` or `assigned` are kept (`available` and
///   `reserved` are skipped).
/// - An `ipv4` record's `value` is an address count, neither necessarily a power of two nor
///   aligned: the range `[start, start + count)` becomes the fewest CIDR prefixes covering
///   exactly it. An `ipv6` record's `value` is the prefix length.
///
/// Malformed lines make it an error naming `FILE:LINE`; a file without any record for the
/// country is an error too ([`JurisError::NoRecords`]). The prefixes are not normalized.
pub fn parse_rir_file(path: &Path, country: &str) -> Result<Vec<Prefix>, JurisError> {
    let text = read_text(path)?;
    parse_rir_text(&path.display().to_string(), &text, country)
}

/// [`parse_rir_file`] on text already read; `name` is what errors call the file.
pub fn parse_rir_text(name: &str, text: &str, country: &str) -> Result<Vec<Prefix>, JurisError> {
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(JurisError::BadCountry(quote(country)));
    }
    let mut prefixes = Vec::new();
    let mut errors = Errors::default();
    for (n, line) in numbered_lines(text) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match rir_record(line) {
            Ok(Some(rec)) => {
                if rec.cc.eq_ignore_ascii_case(country) && rec.kept {
                    prefixes.extend(rec.prefixes);
                }
            }
            Ok(None) => {}
            Err(problem) => errors.push(n, problem),
        }
    }
    let prefixes = errors.finish(name, prefixes)?;
    if prefixes.is_empty() {
        return Err(JurisError::NoRecords {
            file: name.to_owned(),
            country: country.to_ascii_uppercase(),
        });
    }
    Ok(prefixes)
}

/// An `ipv4` or `ipv6` record of an RIR file.
struct RirRecord<'a> {
    cc: &'a str,
    /// Status `allocated` or `assigned`.
    kept: bool,
    prefixes: Vec<Prefix>,
}

/// Parses one non-comment line of an RIR file: `Ok(None)` for version and summary lines and
/// `asn` records.
fn rir_record(line: &str) -> Result<Option<RirRecord<'_>>, String> {
    let fields: Vec<&str> = line.split('|').map(str::trim).collect();
    // Version line: `version|registry|serial|records|startdate|enddate|UTCoffset`, the
    // version a number ("2", "2.3"); registries never start with a digit.
    if fields[0].starts_with(|c: char| c.is_ascii_digit())
        && fields[0].bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        return Ok(None);
    }
    // Summary line: `registry|*|type|*|count|summary`.
    if fields.len() == 6 && fields[5] == "summary" {
        return Ok(None);
    }
    if fields.len() < 7 {
        return Err(format!(
            "{}: expected registry|cc|type|start|value|date|status, found {} field{}",
            quote(line),
            fields.len(),
            if fields.len() == 1 { "" } else { "s" }
        ));
    }
    let (cc, kind, start, value, status) = (fields[1], fields[2], fields[3], fields[4], fields[6]);
    let v4 = if kind.eq_ignore_ascii_case("ipv4") {
        true
    } else if kind.eq_ignore_ascii_case("ipv6") {
        false
    } else if kind.eq_ignore_ascii_case("asn") {
        return Ok(None);
    } else {
        return Err(format!("unknown record type {}", quote(kind)));
    };
    let kept = match status.to_ascii_lowercase().as_str() {
        "allocated" | "assigned" => true,
        "available" | "reserved" => false,
        _ => return Err(format!("unknown status {}", quote(status))),
    };
    let prefixes = if v4 {
        let start: Ipv4Addr = start
            .parse()
            .map_err(|_| format!("ipv4 record: start {} is not an IPv4 address", quote(start)))?;
        let count = parse_count(value).ok_or_else(|| {
            format!(
                "ipv4 record: count {} is not a number of addresses",
                quote(value)
            )
        })?;
        v4_range(u32::from(start), count)?
    } else {
        let addr: Ipv6Addr = start
            .parse()
            .map_err(|_| format!("ipv6 record: start {} is not an IPv6 address", quote(start)))?;
        let len = match value.parse::<u8>() {
            Ok(l) if l <= 128 && value.bytes().all(|b| b.is_ascii_digit()) => l,
            _ => {
                return Err(format!(
                    "ipv6 record: prefix length {} is not in 0..=128",
                    quote(value)
                ))
            }
        };
        let bits = u128::from(addr);
        let p = Prefix::from_bits(bits, len).ok_or_else(|| {
            format!(
                "ipv6 record: host bits set in {addr}/{len}; the prefix would be {}/{len}",
                Ipv6Addr::from(bits & mask(len))
            )
        })?;
        vec![p]
    };
    Ok(Some(RirRecord { cc, kept, prefixes }))
}

/// A positive decimal count (no sign, no spaces).
fn parse_count(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&n| n > 0)
}

/// The fewest CIDR prefixes covering exactly `count` IPv4 addresses from `start`.
fn v4_range(start: u32, count: u64) -> Result<Vec<Prefix>, String> {
    let mut at = u64::from(start);
    let end = at.checked_add(count).filter(|&e| e <= 1 << 32);
    let Some(end) = end else {
        return Err(format!(
            "ipv4 record: {} + {count} addresses runs past 255.255.255.255",
            Ipv4Addr::from(start)
        ));
    };
    let mut out = Vec::new();
    while at < end {
        // The largest aligned block at `at` that fits: limited by `at`'s alignment (any
        // size for 0.0.0.0) and by what is left.
        let align = at.trailing_zeros().min(32);
        let fits = 63 - (end - at).leading_zeros(); // floor(log2(remaining))
        let size_log = align.min(fits);
        // In range: size_log ≤ 32, so the length is 0..=32 (+96).
        let len = 96 + (32 - size_log) as u8;
        let bits = V4_MAPPED | u128::from(at);
        out.push(Prefix {
            addr: bits.to_be_bytes(),
            len,
        });
        at += 1 << size_log;
    }
    Ok(out)
}

/// Sorts, removes duplicates and prefixes covered by another prefix of the set, and merges
/// siblings (the two halves of a prefix) into their parent, repeatedly, until nothing
/// changes. The result covers exactly the same addresses with the fewest prefixes, sorted
/// and disjoint: what the kernel's LPM trie needs.
///
/// IPv4 and IPv6 share one space (IPv4-mapped): `::/0` covers every IPv4 prefix too, and
/// `0.0.0.0/0` (`::ffff:0:0/96`) would merge with `::fffe:0:0/96`.
pub fn normalize(mut prefixes: Vec<Prefix>) -> Vec<Prefix> {
    prefixes.sort_unstable();
    prefixes.dedup();
    // Sorted by (address, length), a prefix comes before everything it covers, and what it
    // covers follows it contiguously: so a prefix is covered by something in the set iff it
    // is covered by the last prefix kept. The kept prefixes are disjoint and sorted, so two
    // siblings can only be neighbours on the stack: merging at the top after each push (and
    // again with the merged parent) leaves no mergeable pair.
    let mut out: Vec<Prefix> = Vec::with_capacity(prefixes.len());
    for p in prefixes {
        if out.last().is_some_and(|last| last.covers(&p)) {
            continue;
        }
        out.push(p);
        while out.len() >= 2 {
            let (a, b) = (out[out.len() - 2], out[out.len() - 1]);
            match (a.parent(), b.parent()) {
                (Some(pa), Some(pb)) if a.len == b.len && pa == pb => {
                    out.truncate(out.len() - 2);
                    out.push(pa);
                }
                _ => break,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).expect(s)
    }

    fn ps(list: &[&str]) -> Vec<Prefix> {
        list.iter().map(|s| p(s)).collect()
    }

    fn shown(list: &[Prefix]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect(s)
    }

    fn err(r: Result<Vec<Prefix>, JurisError>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {:?}", shown(&v)),
            Err(e) => e.to_string(),
        }
    }

    // --- Prefix ---

    #[test]
    fn juris_parse_v4_stored_mapped() {
        let x = p("192.0.2.0/24");
        assert_eq!(
            x.addr,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 0]
        );
        assert_eq!(x.len, 120);
        assert!(x.is_v4());
        assert_eq!(x.to_string(), "192.0.2.0/24");

        let all = p("0.0.0.0/0");
        assert_eq!(
            all.addr,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(all.len, 96);
        assert_eq!(all.to_string(), "0.0.0.0/0");
        assert!(all.is_v4());

        let host = p("198.51.100.7");
        assert_eq!(host.len, 128);
        assert_eq!(host.addr[12..], [198, 51, 100, 7]);
        assert_eq!(host.to_string(), "198.51.100.7/32");
    }

    #[test]
    fn juris_parse_v6() {
        let x = p("2001:db8::/32");
        assert_eq!(
            x.addr,
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(x.len, 32);
        assert!(!x.is_v4());
        assert_eq!(x.to_string(), "2001:db8::/32");

        let host = p("2001:db8::1");
        assert_eq!(host.len, 128);
        assert_eq!(host.addr[15], 1);
        assert_eq!(host.to_string(), "2001:db8::1/128");

        assert_eq!(p("::/0").to_string(), "::/0");
        assert_eq!(p("::/0").len, 0);
        // IPv4-mapped notation is the IPv4 prefix.
        assert_eq!(p("::ffff:192.0.2.0/120"), p("192.0.2.0/24"));
        // Just outside the mapped space, or shorter than /96: IPv6.
        assert!(!p("::fffe:0:0/95").is_v4());
        assert_eq!(p("::fffe:0:0/95").to_string(), "::fffe:0:0/95");
    }

    #[test]
    fn juris_parse_rejects_host_bits() {
        let e = Prefix::parse("192.0.2.1/24").expect_err("error");
        assert_eq!(e, "192.0.2.1/24: host bits set; did you mean 192.0.2.0/24?");
        let e = Prefix::parse("2001:db8::1/32").expect_err("error");
        assert_eq!(
            e,
            "2001:db8::1/32: host bits set; did you mean 2001:db8::/32?"
        );
        assert_eq!(p("10.0.0.0/7").to_string(), "10.0.0.0/7");
        assert!(Prefix::parse("::ffff:0:0/95")
            .expect_err("host bit 95")
            .contains("did you mean ::fffe:0:0/95?"));
        assert!(Prefix::parse("11.0.0.0/7")
            .expect_err("error")
            .contains("did you mean 10.0.0.0/7?"));
        assert!(Prefix::parse("128.0.0.0/0")
            .expect_err("error")
            .contains("did you mean 0.0.0.0/0?"));
    }

    #[test]
    fn juris_parse_rejects_bad_lengths_and_junk() {
        for (s, want) in [
            (
                "192.0.2.0/33",
                "prefix length 33 out of range for IPv4 (0..=32)",
            ),
            (
                "2001:db8::/129",
                "prefix length 129 out of range for IPv6 (0..=128)",
            ),
            ("192.0.2.0/256", "prefix length 256 out of range for IPv4"),
            ("192.0.2.0/", "invalid prefix length"),
            ("192.0.2.0/+24", "invalid prefix length"),
            ("192.0.2.0/-1", "invalid prefix length"),
            ("192.0.2.0/2x", "invalid prefix length"),
            (
                "192.0.2.0/99999",
                "prefix length 99999 out of range for IPv4",
            ),
            ("192.0.2.0/24/1", "invalid prefix length"),
            ("192.0.2/24", "not an IP address"),
            ("192.0.2.256/32", "not an IP address"),
            ("example.com", "not an IP address"),
            ("/24", "not an IP address"),
            ("fe80::1%eth0/128", "not an IP address"),
            (" 192.0.2.0/24", "not an IP address"),
            ("", "empty prefix"),
        ] {
            match Prefix::parse(s) {
                Ok(x) => panic!("{s:?} parsed as {x}"),
                Err(e) => assert!(e.contains(want), "{s:?}: {e:?} lacks {want:?}"),
            }
        }
    }

    #[test]
    fn juris_display_from_str_round_trip() {
        for s in [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "255.255.255.255/32",
            "::/0",
            "2001:db8::/32",
            "2a00:1230::/29",
            "::fffe:0:0/96",
        ] {
            let x: Prefix = s.parse().expect(s);
            assert_eq!(x.to_string(), s);
        }
    }

    #[test]
    fn juris_serde_as_cidr_string() {
        let list = ps(&["192.0.2.0/24", "2001:db8::/32"]);
        let json = serde_json::to_string(&list).expect("serialize");
        assert_eq!(json, r#"["192.0.2.0/24","2001:db8::/32"]"#);
        let back: Vec<Prefix> = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, list);
        let bad = serde_json::from_str::<Prefix>(r#""192.0.2.1/24""#).expect_err("error");
        assert!(bad.to_string().contains("host bits set"), "{bad}");
    }

    #[test]
    fn juris_contains() {
        let net = p("192.0.2.0/24");
        assert!(net.contains(&ip("192.0.2.0")));
        assert!(net.contains(&ip("192.0.2.255")));
        assert!(!net.contains(&ip("192.0.3.0")));
        assert!(!net.contains(&ip("192.0.1.255")));
        // An IPv4 prefix holds the IPv4-mapped form of its addresses, nothing else of IPv6.
        assert!(net.contains(&ip("::ffff:192.0.2.9")));
        assert!(!net.contains(&ip("::192.0.2.9")));
        assert!(!net.contains(&ip("2001:db8::1")));

        let v6 = p("2a00:1230::/29");
        assert!(v6.contains(&ip("2a00:1230::1")));
        assert!(v6.contains(&ip("2a00:1234::1")));
        assert!(v6.contains(&ip("2a00:1237:ffff::1")));
        assert!(!v6.contains(&ip("2a00:1238::")));
        assert!(!v6.contains(&ip("2a00:122f:ffff::")));
        assert!(!v6.contains(&ip("192.0.2.1")));

        assert!(p("0.0.0.0/0").contains(&ip("203.0.113.1")));
        assert!(!p("0.0.0.0/0").contains(&ip("2001:db8::1")));
        assert!(p("::/0").contains(&ip("2001:db8::1")));
        assert!(p("::/0").contains(&ip("203.0.113.1")));
        assert!(p("203.0.113.5").contains(&ip("203.0.113.5")));
        assert!(!p("203.0.113.5").contains(&ip("203.0.113.4")));
    }

    // --- prefix files ---

    #[test]
    fn juris_prefix_text_comments_and_blank_lines() {
        let text = "\u{feff}# Italian clients\n\
                    \n\
                    192.0.2.0/24\n\
                    \t198.51.100.0/25   # Milan POP  \r\n\
                    2001:db8:100::/40#Rome\n\
                    203.0.113.9\n\
                    # 10.0.0.0/8 (disabled)\n\
                    \x20\x20\n";
        let got = parse_prefix_text("it.txt", text).expect("valid");
        assert_eq!(
            shown(&got),
            [
                "192.0.2.0/24",
                "198.51.100.0/25",
                "2001:db8:100::/40",
                "203.0.113.9/32"
            ]
        );
        assert!(parse_prefix_text("e.txt", "# nothing\n\n")
            .expect("ok")
            .is_empty());
    }

    #[test]
    fn juris_prefix_text_errors_name_file_and_line() {
        let text = "192.0.2.0/24\n\
                    # fine\n\
                    192.0.2.1/24\n\
                    198.51.100.0/24\n\
                    10.0.0.0/33 # too long\n\
                    banana\n";
        let e = parse_prefix_text("lists/it.txt", text).expect_err("error");
        let JurisError::Invalid {
            file,
            errors,
            total,
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(file, "lists/it.txt");
        assert_eq!(*total, 3);
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [3, 5, 6]);
        assert_eq!(
            e.to_string(),
            "lists/it.txt:3: 192.0.2.1/24: host bits set; did you mean 192.0.2.0/24?\n\
             lists/it.txt:5: \"10.0.0.0/33\": prefix length 33 out of range for IPv4 (0..=32)\n\
             lists/it.txt:6: \"banana\": not an IP address or CIDR prefix"
        );
        // Two prefixes on one line is junk, not two prefixes.
        let e = err(parse_prefix_text("x", "192.0.2.0/24 198.51.100.0/24\n"));
        assert!(e.starts_with("x:1: "), "{e}");
    }

    #[test]
    fn juris_prefix_text_error_cap() {
        let text = "junk\n".repeat(25);
        let e = parse_prefix_text("f", &text).expect_err("error");
        let msg = e.to_string();
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(lines.len(), 21);
        assert!(lines[0].starts_with("f:1: "));
        assert!(lines[19].starts_with("f:20: "));
        assert_eq!(lines[20], "f: 5 more bad lines not shown (25 in all)");
        let JurisError::Invalid { errors, total, .. } = e else {
            panic!()
        };
        assert_eq!((errors.len(), total), (20, 25));
    }

    #[test]
    fn juris_prefix_file_io() {
        let dir = std::env::temp_dir().join(format!("blocker-juris-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("it.txt");
        // Latin-1 in a comment is harmless; on a prefix line it is an error on that line.
        std::fs::write(&path, b"# Citt\xe0\n192.0.2.0/24\n10.\xe0/8\n").expect("write");
        let e = err(parse_prefix_file(&path));
        assert!(e.starts_with(&format!("{}:3: ", path.display())), "{e}");
        std::fs::write(&path, b"# Citt\xe0\n192.0.2.0/24\n").expect("write");
        assert_eq!(
            parse_prefix_file(&path).expect("valid"),
            [p("192.0.2.0/24")]
        );
        let missing = dir.join("missing.txt");
        let e = parse_prefix_file(&missing).expect_err("error");
        assert!(matches!(e, JurisError::Io { .. }));
        assert_eq!(e.to_string(), format!("reading {}", missing.display()));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    // --- RIR files ---

    const RIR: &str = "\
# delegated-ripencc-extended-latest (excerpt)
2|ripencc|20261205|123456|19830705|20261205|+0100
ripencc|*|asn|*|38411|summary
ripencc|*|ipv4|*|12345|summary
ripencc|*|ipv6|*|31112|summary
ripencc|IT|asn|137|1|19930901|allocated|1f3bd3e7-4b1b-4b6b-9d7b-2a6c8f3e3b01
ripencc|IT|ipv4|2.32.0.0|1048576|20081007|allocated|1f3bd3e7-4b1b-4b6b-9d7b-2a6c8f3e3b01
ripencc|FR|ipv4|2.0.0.0|1048576|20100712|allocated|5a1e1a1e-0000-4000-8000-000000000001
ripencc|IT|ipv4|5.8.0.0|3072|20120319|allocated|0b5e55ed-0000-4000-8000-000000000002
ripencc|it|ipv4|5.10.4.0|768|20120401|assigned|0b5e55ed-0000-4000-8000-000000000003
ripencc|IT|ipv4|192.0.2.64|256|20130101|allocated|0b5e55ed-0000-4000-8000-000000000004
ripencc|IT|ipv4|198.51.100.0|256|20140101|reserved|
ripencc||ipv4|203.0.113.0|256||available|
ripencc|DE|ipv6|2a00:1000::|29|20081001|allocated|0b5e55ed-0000-4000-8000-000000000005
ripencc|IT|ipv6|2a00:1230::|29|20081001|allocated|0b5e55ed-0000-4000-8000-000000000006
ripencc|IT|ipv6|2001:db8:8000::|33|20090101|assigned|0b5e55ed-0000-4000-8000-000000000007
ripencc|ZZ|ipv6|2001:db8:4000::|34||reserved|
ripencc|SM|ipv4|5.9.0.0|1024|20120320|allocated|0b5e55ed-0000-4000-8000-000000000008
";

    #[test]
    fn juris_rir_country_records() {
        let got = parse_rir_text("delegated-ripencc-extended-latest", RIR, "IT").expect("valid");
        assert_eq!(
            shown(&got),
            [
                // 1048576 = 2^20 addresses from an aligned start: one /12.
                "2.32.0.0/12",
                // 3072 = 2048 + 1024.
                "5.8.0.0/21",
                "5.8.8.0/22",
                // 768 from 5.10.4.0 (aligned to 1024 only): 512 + 256.
                "5.10.4.0/23",
                "5.10.6.0/24",
                // 256 from .64: .64-.127, .128-.255, then 192.0.3.0-.63.
                "192.0.2.64/26",
                "192.0.2.128/25",
                "192.0.3.0/26",
                "2a00:1230::/29",
                "2001:db8:8000::/33",
            ]
        );
        // Case-insensitive both ways.
        assert_eq!(parse_rir_text("f", RIR, "it").expect("valid"), got);
        assert_eq!(
            shown(&parse_rir_text("f", RIR, "sm").expect("valid")),
            ["5.9.0.0/22"]
        );
    }

    #[test]
    fn juris_rir_no_record() {
        let e = err(parse_rir_text("delegated-ripencc-latest", RIR, "es"));
        assert_eq!(
            e,
            "no ipv4/ipv6 record for country ES in delegated-ripencc-latest"
        );
        // Only reserved / available space, or only an ASN, is no record either.
        let only = "2|ripencc|20261205|3|19830705|20261205|+0100\n\
                    ripencc|VA|ipv4|198.51.100.0|256|20140101|reserved\n\
                    ripencc|VA|asn|64500|1|20140101|allocated\n";
        assert_eq!(
            err(parse_rir_text("f", only, "VA")),
            "no ipv4/ipv6 record for country VA in f"
        );
        assert_eq!(
            err(parse_rir_text("f", "", "IT")),
            "no ipv4/ipv6 record for country IT in f"
        );
    }

    #[test]
    fn juris_rir_bad_country() {
        for c in ["ITA", "I", "", "1T", "*"] {
            let e = parse_rir_text("f", RIR, c).expect_err("error");
            assert!(matches!(e, JurisError::BadCountry(_)), "{c:?}: {e:?}");
        }
    }

    #[test]
    fn juris_rir_concatenated_files() {
        let text = format!(
            "{RIR}2.3|apnic|20261205|1|19850701|20261204|+1000\n\
             apnic|*|ipv4|*|1|summary\n\
             apnic|IT|ipv4|203.0.113.0|128|20110811|assigned\n"
        );
        let got = parse_rir_text("all", &text, "IT").expect("valid");
        assert_eq!(got.len(), 11);
        assert_eq!(got[10].to_string(), "203.0.113.0/25");
    }

    #[test]
    fn juris_rir_malformed_lines() {
        for (line, want) in [
            ("ripencc|IT|ipv4|2.32.0.0", "found 4 fields"),
            (
                "ripencc|IT|ipv4|2.32.0|256|20081007|allocated",
                "start \"2.32.0\" is not an IPv4",
            ),
            (
                "ripencc|IT|ipv4|2.32.0.0|0|20081007|allocated",
                "count \"0\"",
            ),
            (
                "ripencc|IT|ipv4|2.32.0.0|-5|20081007|allocated",
                "count \"-5\"",
            ),
            (
                "ripencc|IT|ipv4|2.32.0.0|lots|20081007|allocated",
                "count \"lots\"",
            ),
            (
                "ripencc|IT|ipv4|255.255.255.0|512|20081007|allocated",
                "runs past 255.255.255.255",
            ),
            (
                "ripencc|IT|ipv4|2a00::|256|20081007|allocated",
                "not an IPv4 address",
            ),
            (
                "ripencc|IT|ipv6|2.32.0.0|32|20081007|allocated",
                "not an IPv6 address",
            ),
            (
                "ripencc|IT|ipv6|2a00:1234::|129|20081007|allocated",
                "prefix length \"129\"",
            ),
            (
                "ripencc|IT|ipv6|2a00:1234::|+29|20081007|allocated",
                "prefix length \"+29\"",
            ),
            (
                "ripencc|IT|ipv6|2a00:1234::1|29|20081007|allocated",
                "host bits set in 2a00:1234::1/29; the prefix would be 2a00:1230::/29",
            ),
            // 0x1234 is not a multiple of 8: a /29 there has host bits set.
            (
                "ripencc|IT|ipv6|2a00:1234::|29|20081007|allocated",
                "host bits set in 2a00:1234::/29; the prefix would be 2a00:1230::/29",
            ),
            (
                "ripencc|IT|ipv4|2.32.0.0|256|20081007|",
                "unknown status \"\"",
            ),
            (
                "ripencc|IT||2.32.0.0|256|20081007|allocated",
                "unknown record type \"\"",
            ),
            (
                "ripencc|IT|ipv4|2.32.0.0|256|20081007|stolen",
                "unknown status \"stolen\"",
            ),
            (
                "ripencc|IT|ipv5|2.32.0.0|256|20081007|allocated",
                "unknown record type \"ipv5\"",
            ),
            ("192.0.2.0/24", "found 1 field"),
        ] {
            // Malformed records are refused whatever their country (here FR, asked IT).
            for text in [line.to_owned(), line.replacen("|IT|", "|FR|", 1)] {
                let full = format!(
                    "2|ripencc|20261205|2|19830705|20261205|+0100\n\
                                    ripencc|IT|ipv4|2.32.0.0|1048576|20081007|allocated\n\
                                    {text}\n"
                );
                let e = err(parse_rir_text("rir.txt", &full, "IT"));
                assert!(e.starts_with("rir.txt:3: "), "{text}: {e}");
                assert!(e.contains(want), "{text}: {e} lacks {want:?}");
            }
        }
    }

    #[test]
    fn juris_rir_file_io() {
        let missing = Path::new("/nonexistent/delegated-ripencc-extended-latest");
        let e = parse_rir_file(missing, "IT").expect_err("error");
        assert!(matches!(e, JurisError::Io { .. }));
        assert_eq!(
            e.to_string(),
            "reading /nonexistent/delegated-ripencc-extended-latest"
        );
    }

    // --- v4_range edges ---

    #[test]
    fn juris_v4_range_edges() {
        let all = v4_range(0, 1 << 32).expect("whole space");
        assert_eq!(shown(&all), ["0.0.0.0/0"]);
        let last = v4_range(u32::MAX, 1).expect("last address");
        assert_eq!(shown(&last), ["255.255.255.255/32"]);
        // 0.0.0.1 .. 0.0.0.6: /32, /31, /31, /32... no: 1 (/32), 2-3 (/31), 4-5 (/31), 6 (/32).
        let odd = v4_range(1, 6).expect("odd");
        assert_eq!(
            shown(&odd),
            ["0.0.0.1/32", "0.0.0.2/31", "0.0.0.4/31", "0.0.0.6/32"]
        );
    }

    // --- normalize ---

    #[test]
    fn juris_normalize_merges_and_drops() {
        let got = normalize(ps(&[
            "198.51.100.128/25",
            "192.0.2.0/25",
            "2001:db8:1::/48",
            "192.0.2.128/25",  // sibling of 192.0.2.0/25 -> 192.0.2.0/24
            "198.51.100.0/25", // sibling of .128/25 -> 198.51.100.0/24
            "198.51.100.7",    // covered
            "192.0.2.0/25",    // duplicate
            "2001:db8::/32",
            "2001:db8:ffff::1", // covered
            "10.0.0.0/8",
            "10.1.0.0/16", // covered
        ]));
        assert_eq!(
            shown(&got),
            [
                "10.0.0.0/8",
                "192.0.2.0/24",
                "198.51.100.0/24",
                "2001:db8::/32",
            ]
        );
    }

    #[test]
    fn juris_normalize_cascades() {
        // Four /26 and the /25 they form with the other /25: one /24 ... then its sibling.
        let got = normalize(ps(&[
            "192.0.2.0/26",
            "192.0.2.192/26",
            "192.0.2.64/26",
            "192.0.2.128/26",
            "192.0.3.0/24",
        ]));
        assert_eq!(shown(&got), ["192.0.2.0/23"]);
        // Merging from the RIR ranges: 5.8.0.0/21 + 5.8.8.0/22 + 5.8.12.0/22 = 5.8.0.0/20.
        let got = normalize(ps(&["5.8.8.0/22", "5.8.0.0/21", "5.8.12.0/22"]));
        assert_eq!(shown(&got), ["5.8.0.0/20"]);
        // Not siblings: adjacent but with different parents.
        let got = normalize(ps(&["192.0.2.128/25", "192.0.3.0/25"]));
        assert_eq!(shown(&got), ["192.0.2.128/25", "192.0.3.0/25"]);
        // Every IPv4 /1 ... is all of IPv4, and nothing more.
        let got = normalize(ps(&["0.0.0.0/1", "128.0.0.0/1"]));
        assert_eq!(shown(&got), ["0.0.0.0/0"]);
        // Two IPv6 halves of everything.
        let got = normalize(ps(&["::/1", "8000::/1", "192.0.2.0/24"]));
        assert_eq!(shown(&got), ["::/0"]);
        assert!(normalize(Vec::new()).is_empty());
    }

    #[test]
    fn juris_normalize_is_stable() {
        let input = ps(&[
            "192.0.2.0/26",
            "192.0.2.64/26",
            "192.0.2.128/25",
            "198.51.100.0/24",
            "198.51.100.0/23",
            "2001:db8::/33",
            "2001:db8:8000::/33",
            "2001:db9::/32",
        ]);
        let once = normalize(input);
        assert_eq!(
            shown(&once),
            ["192.0.2.0/24", "198.51.100.0/23", "2001:db8::/31"]
        );
        assert_eq!(normalize(once.clone()), once);
    }
}
