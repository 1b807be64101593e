//! A verdict becomes an answer: the DNS message the XDP program sends back in place of a
//! blocked query, built in the scratch buffer over the query itself, so the question (with
//! its original letter case, for 0x20 randomisation) is echoed byte for byte.
//!
//! Layout: header, the question as received, then for a sinkhole hit one A or AAAA record
//! whose owner is a pointer to the question name, then — only if the query carried an OPT
//! record — an OPT record (UDP size 1232, DO copied) holding an RFC 8914 Extended DNS Error
//! option with the order's info-code and EXTRA-TEXT. Whatever followed the question in the
//! query (its OPT options, trailing junk) is not echoed.
//!
//! Amplification bound: an answer is never longer than the room the caller gives it
//! ([`answer_room`]: over UDP the query's length plus [`MAX_GROWTH`] bytes unless configured
//! otherwise); the EXTRA-TEXT is shortened to fit.

use crate::dns::{launder, Query, Scratch, MSG_BUF, MSG_MASK};
use crate::maps::{
    Action, Config, LocalAnswer, OrderInfo, CONFIG_SINKHOLE_V4, CONFIG_SINKHOLE_V6, LOCAL_BYTES,
    LOCAL_RECORDS, MAX_EDE_TEXT, MAX_SOA,
};

/// Largest number of bytes an answer over UDP adds to the query it replaces, unless
/// `Config::max_growth` says otherwise (`blocker config set --max-growth`).
pub const MAX_GROWTH: usize = 64;
/// Most bytes any answer adds to its query: what a frame without tailroom can gain at its
/// front (every XDP driver reserves 256 bytes of headroom, of which the kernel keeps about
/// 40 for its own frame header). A larger answer would be shrunk to the query's size.
pub const GROW_MAX: usize = 192;
/// Longest answer: what the frame rewrite and its checksum accept.
pub const MAX_ANSWER: usize = MSG_BUF - 4;

/// The most bytes the answer to a query of `query_len` bytes may have: the query's length
/// plus the configured growth over UDP (the amplification bound; a spoofed source can make a
/// UDP answer go elsewhere), plus [`GROW_MAX`] over TCP (its handshake proves the source).
#[inline(always)]
pub fn answer_room(cfg: &Config, query_len: usize, tcp: bool) -> usize {
    let growth = match cfg.max_growth as usize {
        _ if tcp => GROW_MAX,
        0 => MAX_GROWTH,
        g if g > GROW_MAX => GROW_MAX,
        g => g,
    };
    if query_len + growth > MAX_ANSWER {
        MAX_ANSWER
    } else {
        query_len + growth
    }
}

/// UDP payload size advertised in our OPT record (the DNS flag day 2020 value).
pub const ANSWER_UDP_SIZE: u16 = 1232;
/// EDNS option code of Extended DNS Errors (RFC 8914).
pub const EDE_OPTION: u16 = 15;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_REFUSED: u8 = 5;

#[inline(always)]
fn put(msg: &mut [u8; MSG_BUF], at: usize, b: u8) {
    msg[at & MSG_MASK] = b;
}

#[inline(always)]
fn put16(msg: &mut [u8; MSG_BUF], at: usize, v: u16) {
    let b = v.to_be_bytes();
    put(msg, at, b[0]);
    put(msg, at + 1, b[1]);
}

/// Rewrites the query in `s.msg` (parsed as `q`) into
/// the answer for `action` and returns the answer's length. `action` must be one that answers
/// (not `Pass`, `Drop` or `None`). `order` supplies the EDE code and text; without it the
/// answer carries `cfg.default_ede` and no text.
///
/// The answer is at most `max_len` bytes (normally [`answer_room`]; the query's length when
/// the frame cannot grow; never more than [`MAX_ANSWER`]). To fit, the policy zone's SOA is left
/// out, then the EDE text is shortened, then the EDE option dropped (the OPT record stays),
/// then records are left out from the last. The header, the question and a bare OPT record
/// (when the query had one) are always written: `max_len` 0 gives that minimal answer (the
/// response rate limiter's TC=1 slip), never longer than the query. Calling it again on its
/// own output with a smaller `max_len` gives the smaller answer: it reads only the question
/// and the header bits it keeps.
///
/// A sinkhole answer carries `local`'s records when the rule has local data (the entry for
/// the query's type, see [`crate::local_key`]: addresses, TXT, MX…, or a CNAME chain to a
/// block page and the page's records), at its TTL capped by `cfg.local_ttl_max`; records
/// that do not fit are left out whole, from the last. Without local data it carries the
/// configured sinkhole address of the query's family (none for another type: NODATA).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn write_answer(
    s: &mut Scratch,
    q: &Query,
    max_len: usize,
    action: Action,
    cfg: &Config,
    order: Option<&OrderInfo>,
    local: Option<&LocalAnswer>,
) -> usize {
    // Paths reach here with many exact values of these (the label depth a rule matched at,
    // the QNAME length); laundered, the answer code is verified once instead of per path.
    let action = Action::from_u8(launder(&mut s.opaque[12], action as u8 as u64) as u8);
    let max_len = launder(&mut s.opaque[18], max_len as u64) as usize & 0xffff;
    let max_len = if max_len > MAX_ANSWER {
        MAX_ANSWER
    } else {
        max_len
    };
    let q = &Query {
        labels: 0,
        name_len: 0,
        chunks: 0,
        name_hash: q.name_hash,
        qtype: launder(&mut s.opaque[14], q.qtype as u64) as u16,
        qclass: q.qclass,
        q_end: launder(&mut s.opaque[15], q.q_end as u64) as usize & MSG_MASK,
        edns: launder(&mut s.opaque[16], q.edns as u64) != 0,
        dnssec_ok: launder(&mut s.opaque[17], q.dnssec_ok as u64) != 0,
    };
    let mut rcode = RCODE_NOERROR;
    let mut tc = 0u8;
    // The records: either the configured sinkhole address (`addr_len` 4: A, 16: AAAA), or
    // the first `n_rec` records of the local answer, `rec_len` bytes.
    let mut addr_len = 0usize;
    let mut n_rec = 0usize;
    let mut rec_len = 0usize;
    let mut ttl = cfg.sinkhole_ttl;
    let opt = if q.edns { 11 } else { 0 };
    let room = max_len.saturating_sub(q.q_end + opt);
    match action {
        Action::Nxdomain => rcode = RCODE_NXDOMAIN,
        Action::Refused => rcode = RCODE_REFUSED,
        Action::Tc => tc = 0x02,
        Action::Sinkhole => match local {
            None => {
                let a = if q.qtype == 1 && cfg.flags & CONFIG_SINKHOLE_V4 != 0 {
                    4
                } else if q.qtype == 28 && cfg.flags & CONFIG_SINKHOLE_V6 != 0 {
                    16
                } else {
                    0
                };
                // The record (and the OPT record, if any) must fit.
                if a != 0 && 12 + a <= room {
                    addr_len = a;
                    n_rec = 1;
                }
            }
            Some(l) => {
                ttl = if l.ttl < cfg.local_ttl_max {
                    l.ttl
                } else {
                    cfg.local_ttl_max
                };
                let count = l.count as usize;
                for i in 0..LOCAL_RECORDS {
                    let end = l.ends[i] as usize;
                    if i < count && end <= room && end <= LOCAL_BYTES {
                        n_rec = i + 1;
                        rec_len = end;
                    }
                }
            }
        },
        _ => {}
    }

    // Laundered: every combination of records reaches the code below, which is verified
    // once for all of them instead of once for each.
    let n_rec = launder(&mut s.opaque[53], n_rec as u64) as usize & (LOCAL_RECORDS * 2 - 1);
    let rec_len = launder(&mut s.opaque[52], rec_len as u64) as usize & (LOCAL_BYTES * 2 - 1);
    let addr_len = launder(&mut s.opaque[54], addr_len as u64) as usize & 31;
    let ttl = launder(&mut s.opaque[55], ttl as u64) as u32;

    // Header: keep ID; QR=1, opcode 0, AA=0, TC per action, RD copied; RA=1, Z=0, AD=0,
    // CD copied, RCODE.
    let msg = &mut s.msg;
    let rd = msg[2] & 0x01;
    let cd = msg[3] & 0x10;
    msg[2] = 0x80 | tc | rd;
    msg[3] = 0x80 | cd | rcode;
    put16(msg, 4, 1);
    put16(msg, 6, n_rec as u16);
    put16(msg, 8, 0);
    put16(msg, 10, q.edns as u16);

    let ttl = ttl.to_be_bytes();
    let start = q.q_end;
    let mut at = start;
    if addr_len != 0 {
        // The configured sinkhole address, owned by the question name.
        put16(msg, at, 0xc00c);
        put16(msg, at + 2, q.qtype);
        put16(msg, at + 4, 1); // IN
        for (j, b) in ttl.iter().enumerate() {
            put(msg, at + 6 + j, *b);
        }
        put16(msg, at + 10, addr_len as u16);
        for j in 0..16 {
            let b = if addr_len == 4 {
                cfg.sinkhole_v4[j & 3]
            } else {
                cfg.sinkhole_v6[j]
            };
            put(msg, at + 12 + j, b);
        }
        at += 12 + addr_len;
    } else if let Some(l) = local {
        if rec_len <= LOCAL_BYTES {
            // The records as user space wrote them, then each one's owner and TTL.
            for i in 0..LOCAL_BYTES {
                if i >= rec_len {
                    break;
                }
                put(msg, at + i, l.data[i]);
            }
            for i in 0..LOCAL_RECORDS {
                if i >= n_rec {
                    break;
                }
                let r = if i == 0 { 0 } else { l.ends[i - 1] as usize };
                let owner = l.owners[i] as usize;
                let ptr = if owner == 0 {
                    0xc00c
                } else {
                    0xc000 | ((start + owner) as u16 & 0x3fff)
                };
                put16(msg, at + r, ptr);
                for (j, b) in ttl.iter().enumerate() {
                    put(msg, at + r + 6 + j, *b);
                }
            }
            at += rec_len;
        }
    }
    let mut at = launder(&mut s.opaque[56], at as u64) as usize & MSG_MASK;

    // The policy zone's SOA in the additional section (as BIND's add-soa and PowerDNS's
    // includeSOA send it), when it fits with the OPT record and the whole EDE option: the
    // order's text, which names the court order, comes first.
    let (soa_len, text_len) = match order {
        Some(o) if rcode != RCODE_REFUSED => (
            o.soa_len as usize & (MAX_SOA * 2 - 1),
            o.text_len as usize & (MAX_EDE_TEXT * 4 - 1),
        ),
        _ => (0, 0),
    };
    let edns_room = if q.edns { 11 + 6 + text_len } else { 0 };
    let soa_len = if soa_len <= MAX_SOA && at + soa_len + edns_room <= max_len {
        soa_len
    } else {
        0
    };
    let soa_len = launder(&mut s.opaque[59], soa_len as u64) as usize & (MAX_SOA * 2 - 1);
    let msg = &mut s.msg;
    if soa_len != 0 {
        if let Some(o) = order {
            for i in 0..MAX_SOA {
                if i >= soa_len {
                    break;
                }
                put(msg, at + i, o.soa[i]);
            }
        }
    }
    at = launder(&mut s.opaque[60], (at + soa_len) as u64) as usize & MSG_MASK;
    let msg = &mut s.msg;
    put16(msg, 10, q.edns as u16 + if soa_len != 0 { 1 } else { 0 });

    if q.edns {
        let (code, text_len) = match order {
            Some(o) => (
                if o.ede_code != 0 {
                    o.ede_code
                } else {
                    cfg.default_ede
                },
                o.text_len as usize,
            ),
            None => (cfg.default_ede, 0),
        };
        // OPT fixed part (11) + EDE option header (4) + info-code (2), then the text.
        let fixed_end = at + 11 + 6;
        let with_ede = fixed_end <= max_len;
        let budget = max_len.saturating_sub(fixed_end);
        let mut tl = text_len;
        if tl > MAX_EDE_TEXT {
            tl = MAX_EDE_TEXT;
        }
        if tl > budget {
            tl = budget;
        }
        // EXTRA-TEXT is UTF-8 (RFC 8914 §2) and court texts are not ASCII ("Autorità"): a
        // cut ends before the character it would split, i.e. the first byte left out is not
        // a continuation byte (10xxxxxx; a character has at most three). Branch-free, so
        // the verifier walks the rest of the answer once: the text is valid UTF-8 and
        // zero-padded (the controller writes it), so byte 0 and the bytes after the text
        // are never continuation bytes, and nothing is taken from a whole text.
        if let Some(o) = order {
            let cont = |i: usize| {
                let b = o.ede_text[i & (MAX_EDE_TEXT - 1)] as u64;
                ((b & 0xc0) ^ 0x80).wrapping_sub(1) >> 63
            };
            let c0 = cont(tl);
            let c1 = c0 & cont(tl.wrapping_sub(1));
            let c2 = c1 & cont(tl.wrapping_sub(2));
            tl -= (c0 + c1 + c2) as usize;
        }
        let tl = launder(&mut s.opaque[57], tl as u64) as usize & (MAX_EDE_TEXT * 2 - 1);
        put(msg, at, 0); // root owner
        put16(msg, at + 1, 41);
        put16(msg, at + 3, ANSWER_UDP_SIZE);
        put(msg, at + 5, 0); // extended RCODE
        put(msg, at + 6, 0); // version
        put(msg, at + 7, if q.dnssec_ok { 0x80 } else { 0 });
        put(msg, at + 8, 0);
        if !with_ede {
            // No room for the EDE option: an OPT record without options.
            put16(msg, at + 9, 0);
            at += 11;
        } else {
            put16(msg, at + 9, (4 + 2 + tl) as u16);
            put16(msg, at + 11, EDE_OPTION);
            put16(msg, at + 13, (2 + tl) as u16);
            put16(msg, at + 15, code);
            at = fixed_end;
            if let Some(o) = order {
                for i in 0..MAX_EDE_TEXT {
                    if i >= tl {
                        break;
                    }
                    put(msg, at + i, o.ede_text[i]);
                }
            }
            at += tl;
        }
    }
    // Zero the bytes up to the next multiple of 4, so a checksum over the rounded length is
    // the checksum of the answer.
    put(msg, at, 0);
    put(msg, at + 1, 0);
    put(msg, at + 2, 0);
    // The length is known exactly on each verifier path (it depends on the loops above):
    // launder it so what follows is verified once.
    launder(&mut s.opaque[7], at as u64) as usize & MSG_MASK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tests::{load, query, wire};
    use crate::dns::{parse_query, LOAD_MAX};
    use crate::key::tests::test_secret;

    fn answer(
        msg: &[u8],
        action: Action,
        cfg: &Config,
        order: Option<&OrderInfo>,
    ) -> std::vec::Vec<u8> {
        let (mut s, n) = load(msg);
        assert!(n <= LOAD_MAX);
        let q = parse_query(&mut s, n, msg.len(), &test_secret()).expect("parses");
        let len = write_answer(&mut s, &q, msg.len() + MAX_GROWTH, action, cfg, order, None);
        s.msg[..len].to_vec()
    }

    fn order(text: &str) -> OrderInfo {
        let mut o = OrderInfo {
            text_len: text.len() as u8,
            ..Default::default()
        };
        o.ede_text[..text.len()].copy_from_slice(text.as_bytes());
        o
    }

    #[test]
    fn nxdomain_without_edns_echoes_the_question() {
        let q = query(0xbeef, &wire("WwW.Example.COM"), 1, None);
        let a = answer(&q, Action::Nxdomain, &Config::default(), None);
        assert_eq!(a.len(), q.len());
        assert_eq!(&a[..2], &[0xbe, 0xef]);
        assert_eq!(a[2], 0x81, "QR and RD");
        assert_eq!(a[3], 0x83, "RA and NXDOMAIN");
        assert_eq!(&a[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&a[12..], &q[12..], "question echoed byte for byte");
    }

    #[test]
    fn edns_answers_carry_ede_and_respect_the_growth_bound() {
        let text = "Blocked by order of the Court of Milan, RG 12345/2022, AGCOM 1/x";
        assert_eq!(text.len(), 64);
        let o = order(text);
        let q = query(1, &wire("a.test"), 1, Some((true, &[])));
        let a = answer(&q, Action::Nxdomain, &Config::default(), Some(&o));
        assert!(
            a.len() <= q.len() + MAX_GROWTH,
            "{} > {} + 64",
            a.len(),
            q.len()
        );
        let qe = 12 + wire("a.test").len() + 5;
        assert_eq!(&a[12..qe], &q[12..qe]);
        assert_eq!(&a[10..12], &[0, 1], "ARCOUNT");
        let opt = &a[qe..];
        assert_eq!(&opt[..5], &[0, 0, 41, 0x04, 0xd0]);
        assert_eq!(opt[7], 0x80, "DO copied");
        assert_eq!(&opt[11..13], &[0, 15], "EDE option");
        assert_eq!(&opt[15..17], &[0, 16], "Censored");
        let tl = u16::from_be_bytes([opt[13], opt[14]]) as usize - 2;
        assert_eq!(&opt[17..], &text.as_bytes()[..tl]);
        assert_eq!(a.len(), q.len() + MAX_GROWTH);
        // A query with a long OPT (padding) has room for the whole text.
        let pad = [0u8, 12, 0, 60]
            .iter()
            .copied()
            .chain(std::iter::repeat_n(0, 60))
            .collect::<std::vec::Vec<u8>>();
        let q = query(1, &wire("a.test"), 1, Some((false, &pad)));
        let a = answer(&q, Action::Refused, &Config::default(), Some(&o));
        assert_eq!(a[3] & 0x0f, RCODE_REFUSED);
        assert_eq!(&a[a.len() - 64..], text.as_bytes());
        assert_eq!(
            a.len(),
            q.len() + 6,
            "EDE header is 6 bytes longer than the padding option header"
        );
    }

    /// A text cut to fit is cut between characters: every cut of a text of two- and
    /// three-byte characters is valid UTF-8, and the longest prefix that fits.
    #[test]
    fn a_cut_ede_text_stays_utf8() {
        let text = "Autorità — décision n° 17/2026 «blocage» €€ ok, Trib";
        assert!(text.len() <= MAX_EDE_TEXT, "{}", text.len());
        let o = order(text);
        let q = query(1, &wire("a.test"), 1, Some((false, &[])));
        let full = {
            let (mut s, n) = load(&q);
            let qp = parse_query(&mut s, n, q.len(), &test_secret()).expect("parses");
            write_answer(
                &mut s,
                &qp,
                4096,
                Action::Nxdomain,
                &Config::default(),
                Some(&o),
                None,
            )
        };
        let mut cuts = 0;
        for max_len in (full - text.len())..=full {
            let (mut s, n) = load(&q);
            let qp = parse_query(&mut s, n, q.len(), &test_secret()).expect("parses");
            let len = write_answer(
                &mut s,
                &qp,
                max_len,
                Action::Nxdomain,
                &Config::default(),
                Some(&o),
                None,
            );
            let opt = &s.msg[12 + wire("a.test").len() + 5..len];
            let tl = u16::from_be_bytes([opt[13], opt[14]]) as usize - 2;
            let got = core::str::from_utf8(&opt[17..17 + tl])
                .unwrap_or_else(|e| panic!("max_len {max_len}: {e}"));
            let room = max_len - (len - tl);
            let want = (0..=room.min(text.len()))
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            assert_eq!(got, &text[..want], "max_len {max_len}");
            cuts += usize::from(want < text.len() && !text.is_char_boundary(room.min(text.len())));
        }
        assert!(cuts >= 5, "the sweep cut inside characters {cuts} times");
    }

    #[test]
    fn sinkhole_answers_a_and_aaaa_and_nodata_otherwise() {
        let mut cfg = Config {
            sinkhole_v4: [192, 0, 2, 1],
            sinkhole_v6: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            flags: CONFIG_SINKHOLE_V4 | CONFIG_SINKHOLE_V6,
            sinkhole_ttl: 60,
            ..Default::default()
        };
        let q = query(1, &wire("x.test"), 1, None);
        let a = answer(&q, Action::Sinkhole, &cfg, None);
        assert_eq!(&a[6..8], &[0, 1]);
        let rr = &a[q.len()..];
        assert_eq!(
            rr,
            &[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]
        );
        let q = query(1, &wire("x.test"), 28, None);
        let a = answer(&q, Action::Sinkhole, &cfg, None);
        assert_eq!(a.len(), q.len() + 28);
        let q = query(1, &wire("x.test"), 15, None);
        let a = answer(&q, Action::Sinkhole, &cfg, None);
        assert_eq!((a.len(), &a[6..8], a[3] & 0xf), (q.len(), &[0u8, 0][..], 0));
        // No v4 sinkhole configured: NODATA.
        cfg.flags = CONFIG_SINKHOLE_V6;
        let q = query(1, &wire("x.test"), 1, None);
        assert_eq!(answer(&q, Action::Sinkhole, &cfg, None).len(), q.len());
    }

    /// A sinkhole answer from local data, built on the host.
    fn local_answer(msg: &[u8], cfg: &Config, local: &LocalAnswer) -> std::vec::Vec<u8> {
        let (mut s, n) = load(msg);
        let q = parse_query(&mut s, n, msg.len(), &test_secret()).expect("parses");
        let len = write_answer(
            &mut s,
            &q,
            msg.len() + MAX_GROWTH,
            Action::Sinkhole,
            cfg,
            None,
            Some(local),
        );
        s.msg[..len].to_vec()
    }

    #[test]
    fn local_data_answers_its_records_its_block_page_and_nodata_otherwise() {
        let cfg = Config {
            local_ttl_max: 100,
            ..Default::default()
        };
        // Two A records at the question name, TTL 60.
        let mut l = LocalAnswer {
            ttl: 60,
            ..Default::default()
        };
        assert!(l.push(0, 1, &[192, 0, 2, 7]).is_some());
        assert!(l.push(0, 1, &[192, 0, 2, 8]).is_some());
        let q = query(1, &wire("x.test"), 1, None);
        let a = local_answer(&q, &cfg, &l);
        assert_eq!(&a[6..8], &[0, 2], "ANCOUNT");
        assert_eq!(
            &a[q.len()..],
            &[
                0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7, //
                0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 8
            ]
        );
        // An empty entry (a type the data does not hold): NODATA, not an address.
        let q6 = query(1, &wire("x.test"), 28, None);
        let a = local_answer(&q6, &cfg, &LocalAnswer::default());
        assert_eq!(
            (a.len(), &a[6..8], a[3] & 0xf),
            (q6.len(), &[0u8, 0][..], 0)
        );
        // The zone's TTL is capped.
        l.ttl = 86400;
        let a = local_answer(&q, &cfg, &l);
        assert_eq!(&a[q.len() + 6..q.len() + 10], &[0, 0, 0, 100]);
        // A TXT record: its data as given.
        let mut t = LocalAnswer {
            ttl: 30,
            ..Default::default()
        };
        assert!(t.push(0, 16, b"\x02hi").is_some());
        let qt = query(1, &wire("x.test"), 16, None);
        let a = local_answer(&qt, &cfg, &t);
        assert_eq!(
            &a[qt.len()..],
            &[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 30, 0, 3, 2, b'h', b'i']
        );
        // A chain: CNAME to a page, the page's CNAME to another, its address; each owner a
        // pointer to the name before it in the answer.
        let (p1, p2) = (wire("bp.isp"), wire("b2.isp"));
        let mut b = LocalAnswer {
            ttl: 30,
            ..Default::default()
        };
        let at1 = b.push(0, 5, &[&p1[..], &[0]].concat()).expect("fits");
        let at2 = b.push(at1, 5, &[&p2[..], &[0]].concat()).expect("fits");
        assert!(b.push(at2, 1, &[198, 51, 100, 80]).is_some());
        let a = local_answer(&q, &cfg, &b);
        assert_eq!(&a[6..8], &[0, 3]);
        let rr = &a[q.len()..];
        let c1 = q.len() + 12;
        let c2 = c1 + p1.len() + 1 + 12;
        let mut want = std::vec![0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 30, 0, (p1.len() + 1) as u8];
        want.extend_from_slice(&p1);
        want.push(0);
        want.extend_from_slice(&[0xc0 | (c1 >> 8) as u8, c1 as u8, 0, 5, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 30, 0, (p2.len() + 1) as u8]);
        want.extend_from_slice(&p2);
        want.push(0);
        want.extend_from_slice(&[0xc0 | (c2 >> 8) as u8, c2 as u8, 0, 1, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 30, 0, 4, 198, 51, 100, 80]);
        assert_eq!(rr, &want[..]);
        // Four AAAA records, an EDNS query with a long EDE text: the records fit in the growth
        // bound first (the text is shortened), and never more than fits.
        let mut many = LocalAnswer {
            ttl: 60,
            ..Default::default()
        };
        for i in 0..4u8 {
            let mut v = [0u8; 16];
            v[15] = i;
            assert!(many.push(0, 28, &v).is_some());
        }
        let q = query(1, &wire("x.test"), 28, Some((false, &[])));
        let run = |max: usize| {
            let (mut s, n) = load(&q);
            let pq = parse_query(&mut s, n, q.len(), &test_secret()).expect("parses");
            let o = order("Court of Milan, RG 12345/2026");
            let len = write_answer(
                &mut s,
                &pq,
                max,
                Action::Sinkhole,
                &cfg,
                Some(&o),
                Some(&many),
            );
            (len, [s.msg[6], s.msg[7]])
        };
        let (len, ancount) = run(q.len() + MAX_GROWTH);
        assert!(len <= q.len() + MAX_GROWTH);
        // 64 bytes of growth hold two AAAA records (2 × 28) and the EDE option (6) with no text.
        assert_eq!(ancount, [0, 2]);
        // More room: all four, and the whole text.
        let (len, ancount) = run(q.len() + 200);
        assert_eq!(ancount, [0, 4]);
        assert_eq!(len, q.len() + 4 * 28 + 6 + 29);
        // Full: a record that does not fit is refused whole.
        let mut full = LocalAnswer::default();
        while full.push(0, 16, &[0u8; 40]).is_some() {}
        assert_eq!((full.count, full.len()), (4, 208));
        let mut eight = LocalAnswer::default();
        while eight.push(0, 1, &[0u8; 4]).is_some() {}
        assert_eq!(eight.count as usize, LOCAL_RECORDS);
    }

    #[test]
    fn the_room_is_the_growth_bound_over_udp_and_what_a_frame_can_gain_over_tcp() {
        let mut cfg = Config::default();
        assert_eq!(answer_room(&cfg, 40, false), 40 + MAX_GROWTH);
        assert_eq!(answer_room(&cfg, 40, true), 40 + GROW_MAX);
        cfg.max_growth = 150;
        assert_eq!(answer_room(&cfg, 40, false), 190);
        cfg.max_growth = 1000;
        assert_eq!(answer_room(&cfg, 40, false), 40 + GROW_MAX);
        assert_eq!(answer_room(&cfg, 400, false), MAX_ANSWER);
    }

    #[test]
    fn the_policy_zone_soa_goes_in_the_additional_section_when_it_fits() {
        // `rpz. 60 SOA rpz. h.rpz. 1 2 3 4 60`: 5 + 10 + 5 + 7 + 20 = 47 bytes.
        let mut soa = std::vec![3, b'r', b'p', b'z', 0, 0, 6, 0, 1, 0, 0, 0, 60, 0, 32];
        soa.extend_from_slice(&[3, b'r', b'p', b'z', 0, 1, b'h', 3, b'r', b'p', b'z', 0]);
        for v in [1u32, 2, 3, 4, 60] {
            soa.extend_from_slice(&v.to_be_bytes());
        }
        let mut o = order("Court");
        o.soa[..soa.len()].copy_from_slice(&soa);
        o.soa_len = soa.len() as u8;
        // Without EDNS: header, question, the SOA (ARCOUNT 1).
        let q = query(1, &wire("x.test"), 1, None);
        let a = answer(&q, Action::Nxdomain, &Config::default(), Some(&o));
        assert_eq!(&a[6..12], &[0, 0, 0, 0, 0, 1]);
        assert_eq!(&a[q.len()..], &soa[..]);
        // With EDNS: the SOA, then the OPT with the EDE option and its text.
        let q = query(1, &wire("x.test"), 1, Some((false, &[])));
        let a = answer(&q, Action::Nodata, &Config::default(), Some(&o));
        assert_eq!(&a[10..12], &[0, 2]);
        let qe = q.len() - 11;
        assert_eq!(&a[qe..qe + soa.len()], &soa[..]);
        assert!(a.len() <= q.len() + MAX_GROWTH);
        // A SOA too long for the bound is left out; REFUSED never carries it.
        let mut long = order("Court");
        long.soa_len = 100;
        let a = answer(&q, Action::Nxdomain, &Config::default(), Some(&long));
        assert_eq!(&a[10..12], &[0, 1]);
        let a = answer(&q, Action::Refused, &Config::default(), Some(&o));
        assert_eq!(&a[10..12], &[0, 1]);
    }

    #[test]
    fn shrinks_to_fit_a_frame_that_cannot_grow() {
        let o = order("Court of Milan");
        let q = query(1, &wire("a.test"), 1, Some((false, &[])));
        let (mut s, n) = load(&q);
        let pq = parse_query(&mut s, n, q.len(), &test_secret()).expect("parses");
        let full = write_answer(
            &mut s,
            &pq,
            q.len() + MAX_GROWTH,
            Action::Nxdomain,
            &Config::default(),
            Some(&o),
            None,
        );
        assert_eq!(full, q.len() + 6 + 14);
        // Again on its own output, with no growth allowed: OPT without EDE.
        let small = write_answer(
            &mut s,
            &pq,
            q.len(),
            Action::Nxdomain,
            &Config::default(),
            Some(&o),
            None,
        );
        assert_eq!(small, q.len());
        assert_eq!(s.msg[3] & 0xf, RCODE_NXDOMAIN);
        assert_eq!(&s.msg[small - 2..small], &[0, 0], "OPT RDLENGTH 0");
        assert_eq!(&s.msg[12..pq.q_end], &q[12..pq.q_end]);
        // A sinkhole record that does not fit becomes NODATA.
        let cfg = Config {
            flags: CONFIG_SINKHOLE_V4,
            ..Default::default()
        };
        let q = query(1, &wire("a.test"), 1, None);
        let (mut s, n) = load(&q);
        let pq = parse_query(&mut s, n, q.len(), &test_secret()).expect("parses");
        let len = write_answer(&mut s, &pq, q.len(), Action::Sinkhole, &cfg, None, None);
        assert_eq!((len, s.msg[7]), (q.len(), 0));
    }

    #[test]
    fn tc_sets_the_tc_bit() {
        let q = query(1, &wire("x.test"), 1, None);
        let a = answer(&q, Action::Tc, &Config::default(), None);
        assert_eq!(a[2], 0x83);
        assert_eq!(a[3], 0x80);
    }

    #[test]
    fn max_len_zero_is_the_minimal_answer() {
        let o = order("Court of Milan");
        let pad = [0u8, 12, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0];
        for opt in [None, Some((true, &[][..])), Some((false, &pad[..]))] {
            let q = query(0x1234, &wire("wWw.x.test"), 28, opt);
            let (mut s, n) = load(&q);
            let pq = parse_query(&mut s, n, q.len(), &test_secret()).expect("parses");
            let len = write_answer(
                &mut s,
                &pq,
                0,
                Action::Tc,
                &Config::default(),
                Some(&o),
                None,
            );
            let a = &s.msg[..len];
            assert_eq!(&a[..2], &[0x12, 0x34]);
            assert_eq!(a[2], 0x83, "QR, TC and RD");
            assert_eq!(a[3], 0x80, "RA, NOERROR");
            assert_eq!(&a[4..10], &[0, 1, 0, 0, 0, 0]);
            assert_eq!(&a[12..pq.q_end], &q[12..pq.q_end], "question echoed");
            if opt.is_some() {
                assert_eq!(&a[10..12], &[0, 1]);
                assert_eq!(len, pq.q_end + 11, "a bare OPT record");
                assert_eq!(&a[pq.q_end..pq.q_end + 3], &[0, 0, 41]);
                assert_eq!(&a[len - 2..], &[0, 0], "no options");
            } else {
                assert_eq!((&a[10..12], len), (&[0u8, 0][..], pq.q_end));
            }
            assert!(len <= q.len());
        }
    }

    #[test]
    fn trailing_bytes_are_dropped() {
        let mut q = query(1, &wire("x.test"), 1, None);
        let n = q.len();
        q.extend_from_slice(b"junkjunk");
        let a = answer(&q, Action::Nxdomain, &Config::default(), None);
        assert_eq!(a.len(), n);
    }
}
