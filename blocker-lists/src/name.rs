//! Domain names as the controller stores them: canonical wire form (length-prefixed labels,
//! ASCII folded to lower case, no root byte), the bytes `blocker_common::key` hashes.

use std::fmt;

use blocker_common::key::{fold, MAX_CANONICAL_LEN};

/// Why a string is not a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty name")]
    Empty,
    #[error("the root cannot be a rule")]
    Root,
    #[error("empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("label of {0} bytes (at most 63)")]
    LabelTooLong(usize),
    #[error("name of {0} bytes in wire form (at most 255)")]
    TooLong(usize),
    #[error("bad escape sequence")]
    BadEscape,
    #[error("character {0:?} cannot be in a host name")]
    BadChar(char),
    #[error("`*` is only allowed as the whole first label (`*.example.com`)")]
    BadWildcard,
    #[error("internationalised name rejected by IDNA: {0}")]
    Idna(String),
    #[error("IP address, not a domain name")]
    Address,
}

/// A domain name in canonical wire form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    wire: Vec<u8>,
}

impl Name {
    /// Parses a name in zone-file presentation form: labels separated by `.`, an optional
    /// final `.`, `\.` and `\\` and `\DDD` escapes for any byte. Any byte is allowed in a
    /// label (matching is on labels, never on the dotted string).
    pub fn from_presentation(s: &str) -> Result<Name, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s == "." {
            return Err(NameError::Root);
        }
        let b = s.as_bytes();
        let mut wire = Vec::with_capacity(b.len() + 1);
        let mut label: Vec<u8> = Vec::with_capacity(63);
        let mut i = 0;
        let push = |label: &mut Vec<u8>, wire: &mut Vec<u8>| -> Result<(), NameError> {
            if label.is_empty() {
                return Err(NameError::EmptyLabel);
            }
            if label.len() > 63 {
                return Err(NameError::LabelTooLong(label.len()));
            }
            wire.push(label.len() as u8);
            wire.extend(label.iter().map(|&c| fold(c)));
            label.clear();
            Ok(())
        };
        while i < b.len() {
            match b[i] {
                b'\\' => {
                    let rest = &b[i + 1..];
                    if rest.len() >= 3 && rest[..3].iter().all(u8::is_ascii_digit) {
                        let v = (rest[0] - b'0') as u32 * 100
                            + (rest[1] - b'0') as u32 * 10
                            + (rest[2] - b'0') as u32;
                        if v > 255 {
                            return Err(NameError::BadEscape);
                        }
                        label.push(v as u8);
                        i += 4;
                    } else if let Some(&c) = rest.first() {
                        label.push(c);
                        i += 2;
                    } else {
                        return Err(NameError::BadEscape);
                    }
                }
                b'.' => {
                    push(&mut label, &mut wire)?;
                    i += 1;
                    if i == b.len() {
                        break; // trailing dot: absolute
                    }
                }
                c => {
                    label.push(c);
                    i += 1;
                }
            }
        }
        if !label.is_empty() {
            push(&mut label, &mut wire)?;
        }
        if wire.len() > MAX_CANONICAL_LEN {
            return Err(NameError::TooLong(wire.len() + 1));
        }
        Ok(Name { wire })
    }

    /// From wire labels (already split).
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a [u8]>) -> Result<Name, NameError> {
        let mut wire = Vec::new();
        for l in labels {
            if l.is_empty() {
                return Err(NameError::EmptyLabel);
            }
            if l.len() > 63 {
                return Err(NameError::LabelTooLong(l.len()));
            }
            wire.push(l.len() as u8);
            wire.extend(l.iter().map(|&c| fold(c)));
        }
        if wire.is_empty() {
            return Err(NameError::Root);
        }
        if wire.len() > MAX_CANONICAL_LEN {
            return Err(NameError::TooLong(wire.len() + 1));
        }
        Ok(Name { wire })
    }

    /// The canonical wire bytes (hashed by `blocker_common::key::key_of_canonical`).
    pub fn canonical(&self) -> &[u8] {
        &self.wire
    }

    pub fn labels(&self) -> impl Iterator<Item = &[u8]> {
        let mut i = 0;
        std::iter::from_fn(move || {
            if i >= self.wire.len() {
                return None;
            }
            let l = self.wire[i] as usize;
            let s = &self.wire[i + 1..i + 1 + l];
            i += 1 + l;
            Some(s)
        })
    }

    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    /// The name without its first label (None for a one-label name).
    pub fn parent(&self) -> Option<Name> {
        let l = self.wire[0] as usize;
        if 1 + l >= self.wire.len() {
            return None;
        }
        Some(Name {
            wire: self.wire[1 + l..].to_vec(),
        })
    }

    /// Whether `self` is `other` or below it.
    pub fn ends_with(&self, other: &Name) -> bool {
        if other.wire.len() > self.wire.len() {
            return false;
        }
        let mut i = 0;
        while i < self.wire.len() {
            if self.wire[i..] == other.wire[..] {
                return true;
            }
            i += 1 + self.wire[i] as usize;
        }
        false
    }

    /// The name with `suffix` (which it ends with) removed; None if nothing is left.
    pub fn strip_suffix(&self, suffix: &Name) -> Option<Name> {
        let cut = self.wire.len().checked_sub(suffix.wire.len())?;
        if cut == 0 || !self.ends_with(suffix) {
            return None;
        }
        Some(Name {
            wire: self.wire[..cut].to_vec(),
        })
    }
}

impl fmt::Display for Name {
    /// Presentation form without the final dot; `.`, `\` and bytes outside printable ASCII
    /// are escaped, so the output parses back to the same name.
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

/// Turns a host name as found in a list or on the command line into a [`Name`]: trailing dot,
/// upper case and internationalised names (UTS-46, to punycode) are accepted; anything a host
/// name cannot hold is refused. Letters, digits, `-` and `_` (real lists carry `_dmarc` and
/// friends) are allowed.
pub fn normalize_name(s: &str) -> Result<Name, NameError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s == "." {
        return Err(NameError::Root);
    }
    // Only strings made of address characters can be addresses; skip the parse otherwise.
    let maybe_addr = s
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':' || b == b'[' || b == b']');
    if maybe_addr
        && s.trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok()
    {
        return Err(NameError::Address);
    }
    let ascii;
    let s = if s.is_ascii() {
        s
    } else {
        ascii = idna::domain_to_ascii(s).map_err(|e| NameError::Idna(format!("{e:?}")))?;
        ascii.as_str()
    };
    let trimmed = s.strip_suffix('.').unwrap_or(s);
    if trimmed.is_empty() {
        return Err(NameError::Root);
    }
    for c in trimmed.chars() {
        if c == '*' {
            return Err(NameError::BadWildcard);
        }
        if !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
            return Err(NameError::BadChar(c));
        }
    }
    if trimmed.len() > 253 {
        return Err(NameError::TooLong(trimmed.len() + 2));
    }
    Name::from_presentation(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presentation_round_trips() {
        for s in [
            "example.com",
            "a\\.b.test",
            "\\000\\255x.test",
            "with\\\\backslash.test",
        ] {
            let n = Name::from_presentation(s).expect(s);
            assert_eq!(
                Name::from_presentation(&n.to_string()).expect("again"),
                n,
                "{s}"
            );
        }
        let n = Name::from_presentation("a\\.b.test").expect("escaped dot");
        assert_eq!(n.label_count(), 2);
        assert_eq!(n.labels().next(), Some(&b"a.b"[..]));
        assert_eq!(
            Name::from_presentation("WWW.Example.COM.")
                .expect("fold")
                .to_string(),
            "www.example.com"
        );
    }

    #[test]
    fn limits() {
        let l63 = "a".repeat(63);
        assert!(Name::from_presentation(&format!("{l63}.test")).is_ok());
        assert_eq!(
            Name::from_presentation(&format!("a{l63}.test")),
            Err(NameError::LabelTooLong(64))
        );
        assert_eq!(Name::from_presentation("a..b"), Err(NameError::EmptyLabel));
        assert_eq!(Name::from_presentation(".a"), Err(NameError::EmptyLabel));
        let long = vec![l63.as_str(); 4].join(".");
        assert!(matches!(
            Name::from_presentation(&long),
            Err(NameError::TooLong(_))
        ));
        let ok = vec![l63.as_str(); 3].join(".") + "." + &"b".repeat(61);
        assert!(
            Name::from_presentation(&ok).is_ok(),
            "253 characters is the limit"
        );
    }

    #[test]
    fn normalization() {
        assert_eq!(
            normalize_name("Bücher.DE").expect("idn").to_string(),
            "xn--bcher-kva.de"
        );
        assert_eq!(
            normalize_name("_dmarc.example.com.")
                .expect("underscore")
                .to_string(),
            "_dmarc.example.com"
        );
        assert_eq!(normalize_name("a b.com"), Err(NameError::BadChar(' ')));
        assert_eq!(normalize_name("user@x.com"), Err(NameError::BadChar('@')));
        assert_eq!(normalize_name("192.0.2.1"), Err(NameError::Address));
        assert_eq!(normalize_name("a.*.com"), Err(NameError::BadWildcard));
        assert_eq!(normalize_name("."), Err(NameError::Root));
    }

    #[test]
    fn suffixes() {
        let n = Name::from_presentation("www.bad.example.rpz.local").expect("name");
        let z = Name::from_presentation("rpz.local").expect("zone");
        assert!(n.ends_with(&z));
        assert_eq!(
            n.strip_suffix(&z).expect("stripped").to_string(),
            "www.bad.example"
        );
        assert!(!Name::from_presentation("xrpz.local")
            .expect("n")
            .ends_with(&z));
        assert_eq!(z.strip_suffix(&z), None);
        assert_eq!(
            n.parent().expect("parent").to_string(),
            "bad.example.rpz.local"
        );
    }
}
