//! Domain names as the controller stores them: canonical wire form (length-prefixed labels,
//! ASCII folded to lower case, no root byte), the bytes `blocker_common::key` hashes.

use std::fmt;

use blocker_common::key::{fold, MAX_CANONICAL_LEN};

/// Longest label, in bytes.
const MAX_LABEL: usize = 63;
/// Longest name in presentation form without the final dot (253 + dot + root = 255 wire).
const MAX_PRESENTATION: usize = 253;

/// Why a string is not a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing at all.
    #[error("empty name")]
    Empty,
    /// `.` alone.
    #[error("the root cannot be a rule")]
    Root,
    /// `a..b`, `.a`.
    #[error("empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    /// A label of more than 63 bytes (the length it has).
    #[error("label of {0} bytes (at most 63)")]
    LabelTooLong(usize),
    /// A name of more than 255 bytes in wire form (the wire length it would have).
    #[error("name of {0} bytes in wire form (at most 255, i.e. 253 characters)")]
    TooLong(usize),
    /// A `\` not followed by a character or by exactly three digits of a value ≤ 255.
    #[error("bad escape sequence (`\\X` or `\\DDD` with DDD ≤ 255)")]
    BadEscape,
    /// A character a host name cannot hold.
    #[error("character {0:?} cannot be in a host name")]
    BadChar(char),
    /// A `*` that is not the whole leftmost label.
    #[error("`*` is only allowed as the whole first label (`*.example.com`)")]
    BadWildcard,
    /// UTS-46 processing refused the name.
    #[error("internationalised name rejected by IDNA (UTS-46)")]
    Idna,
    /// An IPv4 or IPv6 address.
    #[error("IP address, not a domain name")]
    Address,
}

/// A domain name in canonical wire form: length-prefixed labels, ASCII letters folded to lower
/// case, no final root byte (at most 254 bytes). Never the root.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    wire: Wire,
}

/// Wire bytes a [`Name`] holds without an allocation: names of up to 29 characters, most of
/// those in real lists.
const INLINE: usize = 30;

/// The bytes of a name: inline when short, else on the heap; 32 bytes either way. Ten
/// million rules hold their names in 320 MB instead of 720 MB (a `Vec` and the allocator's
/// 48-byte chunk of each name), and reading a list makes no allocation per name.
#[derive(Clone)]
enum Wire {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Wire {
    fn new(b: &[u8]) -> Wire {
        if b.len() > INLINE {
            return Wire::Heap(b.into());
        }
        let mut bytes = [0; INLINE];
        bytes[..b.len()].copy_from_slice(b);
        Wire::Inline {
            len: b.len() as u8,
            bytes,
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Wire::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Wire::Heap(b) => b,
        }
    }
}

impl std::ops::Deref for Wire {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Wire {
    fn eq(&self, other: &Wire) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Wire {}

impl std::hash::Hash for Wire {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_slice().hash(h)
    }
}

impl PartialOrd for Wire {
    fn partial_cmp(&self, other: &Wire) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Wire {
    fn cmp(&self, other: &Wire) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

/// Builds canonical wire bytes label by label, checking the limits.
struct WireBuf {
    buf: [u8; MAX_CANONICAL_LEN + 64],
    len: usize,
    label_start: usize,
}

impl WireBuf {
    fn new() -> Self {
        WireBuf {
            buf: [0; MAX_CANONICAL_LEN + 64],
            len: 1,
            label_start: 0,
        }
    }

    /// Appends one byte to the current label (folded).
    #[inline]
    fn push(&mut self, c: u8) -> Result<(), NameError> {
        let n = self.len - self.label_start - 1;
        if n >= MAX_LABEL {
            // `push_or_long` replaces the figure with the label's real length.
            return Err(NameError::LabelTooLong(n + 1));
        }
        if self.len >= self.buf.len() {
            return Err(NameError::TooLong(self.len + 1));
        }
        self.buf[self.len] = fold(c);
        self.len += 1;
        Ok(())
    }

    /// Closes the current label (empty labels are refused).
    #[inline]
    fn end_label(&mut self) -> Result<(), NameError> {
        let n = self.len - self.label_start - 1;
        if n == 0 {
            return Err(NameError::EmptyLabel);
        }
        let Some(slot) = self.buf.get_mut(self.label_start) else {
            return Err(NameError::TooLong(self.len + 1));
        };
        *slot = n as u8;
        self.label_start = self.len;
        self.len += 1;
        Ok(())
    }

    fn label_len(&self) -> usize {
        self.len - self.label_start - 1
    }

    /// The finished name (after the last `end_label`).
    fn finish(self) -> Result<Name, NameError> {
        let wire_len = self.label_start;
        if wire_len == 0 {
            return Err(NameError::Root);
        }
        if wire_len > MAX_CANONICAL_LEN {
            return Err(NameError::TooLong(wire_len + 1));
        }
        Ok(Name {
            wire: Wire::new(&self.buf[..wire_len]),
        })
    }
}

/// Wire length (with the root byte) of a presentation name without escapes.
fn wire_len_of(s: &[u8]) -> usize {
    s.strip_suffix(b".").unwrap_or(s).len() + 2
}

/// Length of the label of `s` that starts at byte `from` (up to the next unescaped dot), for
/// error messages.
fn label_len_at(s: &[u8], from: usize) -> usize {
    s[from..]
        .iter()
        .position(|&c| c == b'.')
        .unwrap_or(s.len() - from)
}

impl Name {
    /// Parses a name in zone-file presentation form: labels separated by `.`, an optional
    /// final `.`, `\X` (any character taken literally, e.g. `\.` for a dot inside a label)
    /// and `\DDD` (a byte in decimal) escapes. Any byte is allowed in a label (matching is on
    /// labels, never on the dotted string); ASCII letters are folded to lower case.
    ///
    /// Refuses the empty string, the root, empty labels, labels over 63 bytes and names over
    /// 255 bytes in wire form.
    pub fn from_presentation(s: &str) -> Result<Name, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s == "." {
            return Err(NameError::Root);
        }
        let b = s.as_bytes();
        let mut w = WireBuf::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'\\' => {
                    let rest = &b[i + 1..];
                    match rest.first() {
                        None => return Err(NameError::BadEscape),
                        Some(d) if d.is_ascii_digit() => {
                            if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
                                return Err(NameError::BadEscape);
                            }
                            let v = u32::from(rest[0] - b'0') * 100
                                + u32::from(rest[1] - b'0') * 10
                                + u32::from(rest[2] - b'0');
                            let v = u8::try_from(v).map_err(|_| NameError::BadEscape)?;
                            push_or_long(&mut w, v, b, i)?;
                            i += 4;
                        }
                        Some(&c) => {
                            push_or_long(&mut w, c, b, i)?;
                            i += 2;
                        }
                    }
                }
                b'.' => {
                    w.end_label()?;
                    i += 1;
                    if i == b.len() {
                        return w.finish(); // trailing dot: absolute
                    }
                }
                c => {
                    push_or_long(&mut w, c, b, i)?;
                    i += 1;
                }
            }
        }
        w.end_label()?;
        w.finish()
    }

    /// From wire labels (already split, unescaped). Refuses the root, empty or over-long
    /// labels and over-long names.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a [u8]>) -> Result<Name, NameError> {
        let mut wire = Vec::with_capacity(32);
        for l in labels {
            if l.is_empty() {
                return Err(NameError::EmptyLabel);
            }
            if l.len() > MAX_LABEL {
                return Err(NameError::LabelTooLong(l.len()));
            }
            wire.push(l.len() as u8);
            wire.extend(l.iter().map(|&c| fold(c)));
            if wire.len() > MAX_CANONICAL_LEN {
                return Err(NameError::TooLong(wire.len() + 1));
            }
        }
        if wire.is_empty() {
            return Err(NameError::Root);
        }
        Ok(Name {
            wire: Wire::new(&wire),
        })
    }

    /// A name as an operator types it or blocker prints it: as a list line writes it
    /// ([`normalize_name`]: case, final dot, IDN), or, when it holds a `\`, in presentation
    /// form ([`Name::from_presentation`]), which is how blocker shows a name whose labels hold
    /// bytes a host name cannot (an RPZ owner `has\032space.example`). A `*` label is
    /// refused either way: it is a wildcard in every format, never part of a name.
    pub fn from_text(s: &str) -> Result<Name, NameError> {
        if !s.contains('\\') {
            return normalize_name(s);
        }
        let name = Name::from_presentation(s)?;
        if name.labels().any(|l| l == b"*") {
            return Err(NameError::BadWildcard);
        }
        Ok(name)
    }

    /// The canonical wire bytes (hashed by `blocker_common::key::key_of_canonical`).
    pub fn canonical(&self) -> &[u8] {
        &self.wire
    }

    /// The labels, leftmost first, without length bytes.
    pub fn labels(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest: &[u8] = &self.wire;
        std::iter::from_fn(move || {
            let (&l, tail) = rest.split_first()?;
            let l = usize::from(l).min(tail.len());
            let (label, next) = tail.split_at(l);
            rest = next;
            Some(label)
        })
    }

    /// Number of labels (`www.example.com`: 3).
    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    /// The name without its first label (None for a one-label name).
    pub fn parent(&self) -> Option<Name> {
        self.parent_canonical().map(|rest| Name {
            wire: Wire::new(rest),
        })
    }

    /// The canonical wire bytes of [`Name::parent`] (the tail of this name's), without
    /// building the name: what a set of names keyed by their wire bytes is looked up by.
    pub fn parent_canonical(&self) -> Option<&[u8]> {
        let l = usize::from(*self.wire.first()?);
        self.wire.get(1 + l..).filter(|rest| !rest.is_empty())
    }

    /// Whether `self` is `other` or a name below it (on label boundaries).
    pub fn ends_with(&self, other: &Name) -> bool {
        if other.wire.len() > self.wire.len() {
            return false;
        }
        let mut i = 0;
        while i < self.wire.len() {
            if self.wire[i..] == other.wire[..] {
                return true;
            }
            i += 1 + usize::from(self.wire[i]);
        }
        false
    }

    /// The name with `suffix` (which it must end with) removed; None if nothing is left or
    /// `suffix` is not a suffix.
    pub fn strip_suffix(&self, suffix: &Name) -> Option<Name> {
        let cut = self.wire.len().checked_sub(suffix.wire.len())?;
        if cut == 0 || !self.ends_with(suffix) {
            return None;
        }
        Some(Name {
            wire: Wire::new(&self.wire[..cut]),
        })
    }

    /// Whether the first label is `*`.
    pub fn is_wildcard(&self) -> bool {
        self.wire.get(..2) == Some(&[1, b'*'][..])
    }
}

/// Pushes `c`, turning a label-too-long error into one with the label's real length.
#[inline]
fn push_or_long(w: &mut WireBuf, c: u8, text: &[u8], at: usize) -> Result<(), NameError> {
    w.push(c).map_err(|e| match e {
        NameError::LabelTooLong(_) => {
            NameError::LabelTooLong(w.label_len() + label_len_at(text, at))
        }
        // Wire length of the whole text (escapes counted as written: close enough).
        NameError::TooLong(_) => NameError::TooLong(wire_len_of(text)),
        e => e,
    })
}

impl fmt::Display for Name {
    /// Presentation form without the final dot; `.`, `\` and bytes outside printable ASCII
    /// (`\DDD`) are escaped, so the output parses back to the same name with
    /// [`Name::from_presentation`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for l in self.labels() {
            if !first {
                f.write_str(".")?;
            }
            first = false;
            // Fast path: a label of printable bytes that need no escape is written whole.
            if l.iter()
                .all(|&c| (0x21..=0x7e).contains(&c) && c != b'.' && c != b'\\')
            {
                // Printable ASCII is valid UTF-8.
                f.write_str(std::str::from_utf8(l).map_err(|_| fmt::Error)?)?;
                continue;
            }
            for &c in l {
                match c {
                    b'.' | b'\\' => write!(f, "\\{}", c as char)?,
                    0x21..=0x7e => write!(f, "{}", c as char)?,
                    _ => write!(f, "\\{c:03}")?,
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;

    /// Same as [`Name::from_presentation`].
    fn from_str(s: &str) -> Result<Name, NameError> {
        Name::from_presentation(s)
    }
}

/// Whether `s` is an IPv4 or IPv6 address, possibly in brackets or with a `%zone`.
pub(crate) fn is_address(s: &str) -> bool {
    let s = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    let s = s.split_once('%').map_or(s, |(a, _)| a);
    // Only strings made of address characters can be addresses; skip the parse otherwise.
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':')
        && s.parse::<std::net::IpAddr>().is_ok()
}

/// Turns a host name as found in a list or on the command line into a [`Name`]: surrounding
/// whitespace, a trailing dot, upper case and internationalised names (IDNA UTS-46,
/// non-transitional, to punycode; full-width dots included) are accepted. Only letters,
/// digits, `-` and `_` (real lists carry `_dmarc` and friends) may be in a label; `*` is
/// refused (callers handle a leading `*.` themselves); IP addresses are refused.
pub fn normalize_name(s: &str) -> Result<Name, NameError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s == "." {
        return Err(NameError::Root);
    }
    if is_address(s) {
        return Err(NameError::Address);
    }
    let ascii;
    let s = if s.is_ascii() {
        s
    } else {
        ascii = idna::domain_to_ascii_cow(s.as_bytes(), idna::AsciiDenyList::EMPTY)
            .map_err(|_| NameError::Idna)?;
        ascii.as_ref()
    };
    let t = s.strip_suffix('.').unwrap_or(s);
    if t.is_empty() {
        return Err(NameError::Root);
    }
    let b = t.as_bytes();
    // A bad character is the clearer message: look for one first.
    if let Some(&c) = b.iter().find(|&&c| !HOST_BYTE[usize::from(c)]) {
        return Err(if c == b'*' {
            NameError::BadWildcard
        } else {
            // `t` is ASCII here (IDNA output is ASCII).
            NameError::BadChar(c as char)
        });
    }
    if b.len() > MAX_PRESENTATION {
        return Err(NameError::TooLong(b.len() + 2));
    }
    // Built on the stack: `b` has at most 253 bytes, so the wire form at most 254.
    let mut wire = [0u8; MAX_PRESENTATION + 1];
    let mut len = 0;
    for label in b.split(|&c| c == b'.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL {
            return Err(NameError::LabelTooLong(label.len()));
        }
        wire[len] = label.len() as u8;
        for (d, &c) in wire[len + 1..].iter_mut().zip(label) {
            *d = fold(c);
        }
        len += 1 + label.len();
    }
    Ok(Name {
        wire: Wire::new(&wire[..len]),
    })
}

/// Bytes a host name label may hold (besides the `.` between labels): letters, digits, `-`,
/// `_`.
static HOST_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.';
        c += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_presentation(s).expect(s)
    }

    #[test]
    fn presentation_round_trips() {
        for s in [
            "example.com",
            "a\\.b.test",
            "\\000\\255x.test",
            "with\\\\backslash.test",
            "sp\\032ace.test",
            "_dmarc.example.com",
        ] {
            let name = n(s);
            assert_eq!(n(&name.to_string()), name, "{s}");
        }
        let dotted = n("a\\.b.test");
        assert_eq!(dotted.label_count(), 2);
        assert_eq!(dotted.labels().collect::<Vec<_>>(), [&b"a.b"[..], b"test"]);
        assert_eq!(dotted.to_string(), "a\\.b.test");
        assert_eq!(dotted.canonical(), b"\x03a.b\x04test");
        let bin = n("\\000\\255x.test");
        assert_eq!(bin.labels().next(), Some(&[0u8, 255, b'x'][..]));
        assert_eq!(bin.to_string(), "\\000\\255x.test");
        assert_eq!(n("\\065.test").to_string(), "a.test", "\\065 is A, folded");
        assert_eq!(n("sp\\ ace.test").to_string(), "sp\\032ace.test");
        assert_eq!(n("WWW.Example.COM.").to_string(), "www.example.com");
        assert_eq!(n("WWW.Example.COM."), n("www.example.com"));
    }

    #[test]
    fn bad_escapes() {
        for s in ["a\\", "a\\25", "a\\2x5.test", "\\256.test"] {
            assert_eq!(Name::from_presentation(s), Err(NameError::BadEscape), "{s}");
        }
    }

    #[test]
    fn limits() {
        let l63 = "a".repeat(63);
        assert!(Name::from_presentation(&format!("{l63}.test")).is_ok());
        assert_eq!(
            Name::from_presentation(&format!("a{l63}.test")),
            Err(NameError::LabelTooLong(64))
        );
        assert_eq!(
            normalize_name(&format!("x.{l63}bc.test")),
            Err(NameError::LabelTooLong(65))
        );
        assert_eq!(Name::from_presentation("a..b"), Err(NameError::EmptyLabel));
        assert_eq!(Name::from_presentation(".a"), Err(NameError::EmptyLabel));
        assert_eq!(Name::from_presentation("a.."), Err(NameError::EmptyLabel));
        assert_eq!(Name::from_presentation(""), Err(NameError::Empty));
        assert_eq!(Name::from_presentation("."), Err(NameError::Root));
        let long = [l63.as_str(); 4].join(".");
        assert!(matches!(
            Name::from_presentation(&long),
            Err(NameError::TooLong(_))
        ));
        assert!(matches!(normalize_name(&long), Err(NameError::TooLong(_))));
        // 253 characters (255 bytes in wire form) is the limit.
        let ok = [l63.as_str(); 3].join(".") + "." + &"b".repeat(61);
        assert_eq!(ok.len(), 253);
        assert_eq!(n(&ok).canonical().len(), 254);
        assert!(normalize_name(&ok).is_ok());
        assert!(normalize_name(&(ok.clone() + ".")).is_ok());
        let over = [l63.as_str(); 3].join(".") + "." + &"b".repeat(62);
        assert_eq!(Name::from_presentation(&over), Err(NameError::TooLong(256)));
        assert_eq!(normalize_name(&over), Err(NameError::TooLong(256)));
    }

    #[test]
    fn normalization() {
        assert_eq!(
            normalize_name("Bücher.DE").expect("idn").to_string(),
            "xn--bcher-kva.de"
        );
        assert_eq!(
            normalize_name("ÄÖÜ.example").expect("idn").to_string(),
            "xn--4ca0bs.example"
        );
        assert_eq!(
            normalize_name("bücher\u{3002}de")
                .expect("ideographic full stop")
                .to_string(),
            "xn--bcher-kva.de"
        );
        assert_eq!(
            normalize_name("_dmarc.example.com.")
                .expect("underscore")
                .to_string(),
            "_dmarc.example.com"
        );
        assert_eq!(normalize_name("a b.com"), Err(NameError::BadChar(' ')));
        assert_eq!(normalize_name("a,b.com"), Err(NameError::BadChar(',')));
        assert_eq!(
            normalize_name("a\u{1}b.com"),
            Err(NameError::BadChar('\u{1}'))
        );
        assert_eq!(normalize_name("user@x.com"), Err(NameError::BadChar('@')));
        assert_eq!(normalize_name("192.0.2.1"), Err(NameError::Address));
        assert_eq!(normalize_name("2001:db8::1"), Err(NameError::Address));
        assert_eq!(normalize_name("[2001:db8::1]"), Err(NameError::Address));
        assert_eq!(normalize_name("a.*.com"), Err(NameError::BadWildcard));
        assert_eq!(normalize_name("*a.com"), Err(NameError::BadWildcard));
        assert_eq!(normalize_name("."), Err(NameError::Root));
        assert_eq!(normalize_name("a..b"), Err(NameError::EmptyLabel));
        assert_eq!(normalize_name("xn--a.\u{200d}.com"), Err(NameError::Idna));
        // Hex-looking names are names.
        assert_eq!(
            normalize_name("deadbeef.cafe").expect("name").to_string(),
            "deadbeef.cafe"
        );
    }

    #[test]
    fn suffixes_and_parents() {
        let name = n("www.bad.example.rpz.local");
        let z = n("rpz.local");
        assert!(name.ends_with(&z));
        assert_eq!(
            name.strip_suffix(&z).expect("stripped").to_string(),
            "www.bad.example"
        );
        assert!(!n("xrpz.local").ends_with(&z));
        assert_eq!(z.strip_suffix(&z), None);
        assert_eq!(
            name.parent().expect("parent").to_string(),
            "bad.example.rpz.local"
        );
        assert_eq!(n("com").parent(), None);
        assert!(n("*.x").is_wildcard() && !n("x.*").is_wildcard());
        assert_eq!(n("a.b.c").label_count(), 3);
    }

    /// Short names are held inline and long ones on the heap; both behave the same.
    #[test]
    fn short_and_long_names_are_held_alike() {
        assert_eq!(std::mem::size_of::<Name>(), 32);
        // 29 characters: 30 wire bytes, inline; 30 characters: 31 bytes, on the heap.
        let short = n("abcdefghijklmnopqrstuvwx.yzzz");
        let long = n("abcdefghijklmnopqrstuvwx.yzzzz");
        assert!(matches!(short.wire, Wire::Inline { .. }));
        assert!(matches!(long.wire, Wire::Heap(_)));
        assert_eq!(short.canonical().len(), 30);
        assert_eq!(long.canonical().len(), 31);
        assert_eq!(&short.canonical()[..6], b"\x18abcde");
        assert_eq!(short.to_string(), "abcdefghijklmnopqrstuvwx.yzzz");
        assert_eq!(long.to_string(), "abcdefghijklmnopqrstuvwx.yzzzz");
        assert!(short < long, "ordered by the wire bytes");
        // The same bytes are the same name whichever way they were made.
        let via_labels =
            Name::from_labels([&b"ABCDEFGHIJKLMNOPQRSTUVWX"[..], b"yzzzz"]).expect("labels");
        assert_eq!(via_labels, long);
        let parent = n("x.abcdefghijklmnopqrstuvwx.yzzz")
            .parent()
            .expect("parent");
        assert_eq!(parent, short);
        let hash = |x: &Name| {
            use std::hash::{BuildHasher, BuildHasherDefault};
            BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(x)
        };
        assert_eq!(hash(&parent), hash(&short));
        assert_eq!(
            n("www.abcdefghijklmnopqrstuvwx.yzzzz")
                .strip_suffix(&long)
                .expect("stripped")
                .to_string(),
            "www"
        );
    }
}
