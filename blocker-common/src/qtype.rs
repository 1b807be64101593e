//! The one table of DNS query types blocker knows by name: mnemonic, number and the bit a
//! rule's qtype set uses for it. [`qtype_bit`] (the data plane's test), the CLI's parsing and
//! display of query types and of qtype sets all derive from [`QTYPES`].
//!
//! The table and `qtype_bit`'s `match` are generated from the same list by one macro, so the
//! kernel keeps a plain `match` (no loop for the verifier to walk) and the two cannot drift.

/// One known query type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QType {
    /// The type's number (RFC 1035 section 3.2.2 and later registrations).
    pub code: u16,
    /// Its mnemonic, upper case.
    pub name: &'static str,
    /// Index of its bit in a rule's qtype set (see [`qtype_bit`]); [`QTYPE_BIT_OTHER`] for types
    /// that share the "other" bit.
    pub bit: u8,
}

/// Bit index shared by every type without a bit of its own.
pub const QTYPE_BIT_OTHER: u8 = 15;

macro_rules! qtype_table {
    ($(($code:literal, $name:literal, $bit:expr)),* $(,)?) => {
        /// Every query type known by name, in bit order; CAA is known by name but shares the
        /// "other" bit.
        pub const QTYPES: &[QType] = &[$(QType { code: $code, name: $name, bit: $bit }),*];

        /// Bit of a qtype in a rule's qtype set. Common types get a bit of their own; every
        /// other type shares bit 15, so a rule restricted to, say, A and AAAA never matches an
        /// unusual type.
        #[inline(always)]
        pub const fn qtype_bit(qtype: u16) -> u16 {
            let i: u8 = match qtype {
                $($code => $bit,)*
                _ => QTYPE_BIT_OTHER,
            };
            1 << i
        }
    };
}

qtype_table! {
    (1, "A", 0),
    (2, "NS", 1),
    (5, "CNAME", 2),
    (6, "SOA", 3),
    (12, "PTR", 4),
    (15, "MX", 5),
    (16, "TXT", 6),
    (28, "AAAA", 7),
    (33, "SRV", 8),
    (35, "NAPTR", 9),
    (43, "DS", 10),
    (48, "DNSKEY", 11),
    (64, "SVCB", 12),
    (65, "HTTPS", 13),
    (255, "ANY", 14),
    (257, "CAA", QTYPE_BIT_OTHER),
}

/// The number of a query type's mnemonic (any case), if the table knows it.
pub fn qtype_by_name(name: &str) -> Option<u16> {
    QTYPES
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name))
        .map(|t| t.code)
}

/// The mnemonic of a query type number, if the table knows it.
pub fn qtype_name(code: u16) -> Option<&'static str> {
    QTYPES.iter().find(|t| t.code == code).map(|t| t.name)
}

/// The name of bit `i` of a qtype set: the type that owns it, or "other" for the shared bit.
pub fn qtype_bit_name(i: u8) -> &'static str {
    QTYPES
        .iter()
        .find(|t| t.bit == i && t.bit != QTYPE_BIT_OTHER)
        .map_or("other", |t| t.name)
}

/// The names of the bits set in a qtype set, lowest bit first (see [`qtype_bit_name`]).
pub fn qtype_bit_names(mask: u16) -> impl Iterator<Item = &'static str> {
    (0..16u8)
        .filter(move |i| mask & (1 << i) != 0)
        .map(qtype_bit_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers from the IANA DNS parameters registry, written out here rather than read from
    /// the table, so a typo in the table fails this test.
    #[test]
    fn table_matches_iana_numbers() {
        let iana = [
            ("A", 1),
            ("NS", 2),
            ("CNAME", 5),
            ("SOA", 6),
            ("PTR", 12),
            ("MX", 15),
            ("TXT", 16),
            ("AAAA", 28),
            ("SRV", 33),
            ("NAPTR", 35),
            ("DS", 43),
            ("DNSKEY", 48),
            ("SVCB", 64),
            ("HTTPS", 65),
            ("ANY", 255),
            ("CAA", 257),
        ];
        assert_eq!(QTYPES.len(), iana.len());
        for (name, code) in iana {
            assert_eq!(qtype_by_name(name), Some(code), "{name}");
            assert_eq!(
                qtype_by_name(&name.to_ascii_lowercase()),
                Some(code),
                "{name}"
            );
            assert_eq!(qtype_name(code), Some(name), "{code}");
        }
        assert_eq!(qtype_by_name("BOGUS"), None);
        assert_eq!(qtype_name(99), None);
    }

    #[test]
    fn bits_are_distinct_and_other_is_shared() {
        // Bits 0..=14 each belong to exactly one type, in table order.
        for i in 0..QTYPE_BIT_OTHER {
            let owners: Vec<_> = QTYPES.iter().filter(|t| t.bit == i).collect();
            assert_eq!(owners.len(), 1, "bit {i}");
            assert_eq!(qtype_bit(owners[0].code), 1 << i);
        }
        assert_eq!(qtype_bit(1), 1);
        assert_eq!(qtype_bit(28), 1 << 7);
        assert_eq!(qtype_bit(65), 1 << 13);
        assert_eq!(qtype_bit(255), 1 << 14);
        assert_eq!(qtype_bit(257), 1 << 15);
        assert_eq!(qtype_bit(99), 1 << 15);
        assert_eq!(qtype_bit(0), 1 << 15);
        assert_eq!(qtype_bit(u16::MAX), 1 << 15);
        assert_eq!(qtype_bit_name(7), "AAAA");
        assert_eq!(qtype_bit_name(15), "other");
    }
}
