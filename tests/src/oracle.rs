//! An independent model of what blocker must do with a DNS message, written from the README and
//! RFC 1035/6891/8914 alone. It shares no code with blocker-common (no key hashing, no parser,
//! no matcher, no answer builder): rules are kept as text and matched label by label, so a bug
//! in the shared code — in matching, precedence, case folding, qtype sets, or the answer's
//! content — shows as a disagreement instead of being on both sides of the comparison.

use std::net::{Ipv4Addr, Ipv6Addr};

/// How a rule covers names (README, "Matching").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// The name only.
    Exact,
    /// The name and every name below it.
    Subtree,
    /// Only names strictly below it.
    Below,
}

/// A rule as an operator writes it.
#[derive(Clone, Debug)]
pub struct Rule {
    pub name: &'static str,
    pub kind: Match,
    /// "pass", "drop", "nxdomain", "refused", "nodata", "sinkhole" or "tc".
    pub action: &'static str,
    /// Query types it applies to; empty means all.
    pub qtypes: Vec<u16>,
    /// EDE EXTRA-TEXT of its order.
    pub ede_text: &'static str,
    /// Its order's place in the precedence (README, "Which rule decides"): 0 first.
    pub precedence: u32,
}

/// The operator settings the model needs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub sinkhole_v4: Option<Ipv4Addr>,
    pub sinkhole_v6: Option<Ipv6Addr>,
    pub sinkhole_ttl: u32,
    /// EDE info-code (16, Censored, unless configured otherwise).
    pub ede_code: u16,
}

/// What must happen to a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Passed to the resolver.
    Pass,
    Drop,
    /// Answered: the rule's action, EDE text, and what the answer must hold.
    Answer {
        action: &'static str,
        ede_text: &'static str,
    },
}

/// The parts of a plain query the model needs, read from the raw bytes by RFC 1035 alone.
#[derive(Debug)]
pub struct Question {
    /// Labels as sent (case kept).
    pub labels: Vec<Vec<u8>>,
    pub qtype: u16,
    /// End of the question section.
    pub end: usize,
    /// The query carries an OPT record, and its DO bit.
    pub edns: Option<bool>,
}

fn be16(m: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(at)?, *m.get(at + 1)?]))
}

/// The question of a message blocker answers (README/SECURITY.md "What it touches"): QR=0,
/// opcode QUERY, one question, class IN or ANY, an uncompressed name of at most 255 bytes that is not
/// the root, whatever follows the question; its EDNS (the DO bit) when a lone OPT record of
/// version 0 that fits the message follows it (no answer or authority records, one additional
/// record). `None`: blocker must pass it.
pub fn plain_query(m: &[u8]) -> Option<Question> {
    if m.len() < 12 || m[2] & 0xf8 != 0 {
        return None;
    }
    let (qd, an, ns, ar) = (be16(m, 4)?, be16(m, 6)?, be16(m, 8)?, be16(m, 10)?);
    if qd != 1 {
        return None;
    }
    let mut labels = Vec::new();
    let mut i = 12;
    loop {
        let len = *m.get(i)? as usize;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(m.get(i + 1..i + 1 + len)?.to_vec());
        i += 1 + len;
        // Wire length of the name with its root byte.
        if i - 12 + 1 > 255 {
            return None;
        }
    }
    if labels.is_empty() {
        return None;
    }
    let qtype = be16(m, i + 1)?;
    // IN, or ANY (a resolver may answer it with IN data).
    if !matches!(be16(m, i + 3)?, 1 | 255) {
        return None;
    }
    let end = i + 5;
    if end > m.len() {
        return None;
    }
    // EDNS: a lone OPT record right after the question (root owner, type 41, version 0,
    // RDATA inside the message); anything else after the question is not looked at.
    let opt = |o: usize| -> Option<bool> {
        let ok = *m.get(o)? == 0
            && be16(m, o + 1)? == 41
            && *m.get(o + 6)? == 0
            && o + 11 + be16(m, o + 9)? as usize <= m.len();
        ok.then(|| m[o + 7] & 0x80 != 0)
    };
    let edns = if (an, ns, ar) == (0, 0, 1) {
        opt(end)
    } else {
        None
    };
    Some(Question {
        labels,
        qtype,
        end,
        edns,
    })
}

/// Whether `m` is a query whose QNAME holds a compression pointer, which blocker must drop
/// (SECURITY.md: BIND and dnsmasq follow it): QR=0, opcode QUERY, one question, labels of at
/// most 63 bytes and then a pointer. `Some(true)`: the labels before the pointer fit a name
/// (255 bytes with its root), so a resolver could take it; `Some(false)`: they do not, no
/// resolver takes the query and blocker may drop or pass it; `None`: no such query.
pub fn compressed_question(m: &[u8]) -> Option<bool> {
    if m.len() < 12 || m[2] & 0xf8 != 0 || be16(m, 4)? != 1 {
        return None;
    }
    let mut i = 12;
    loop {
        match *m.get(i)? {
            0 | 64..=191 => return None,
            192.. => return Some(i - 12 < 255),
            len => i += 1 + len as usize,
        }
    }
}

/// ASCII-only case folding (RFC 4343).
fn fold(l: &[u8]) -> Vec<u8> {
    l.iter().map(|b| b.to_ascii_lowercase()).collect()
}

/// The rule's name as labels (text labels; these tests use no escapes).
fn rule_labels(name: &str) -> Vec<Vec<u8>> {
    name.trim_end_matches('.')
        .split('.')
        .map(|l| l.as_bytes().to_ascii_lowercase())
        .collect()
}

/// How specific a match of `rule` for `q` is (more labels and exact before subtree first), or
/// `None` when it does not cover the name or the type.
fn matches(rule: &Rule, q: &Question) -> Option<(usize, u8)> {
    let r = rule_labels(rule.name);
    let n: Vec<Vec<u8>> = q.labels.iter().map(|l| fold(l)).collect();
    if n.len() < r.len() || n[n.len() - r.len()..] != r[..] {
        return None;
    }
    let same = n.len() == r.len();
    let covered = match rule.kind {
        Match::Exact => same,
        Match::Subtree => true,
        Match::Below => !same,
    };
    if !covered || !(rule.qtypes.is_empty() || rule.qtypes.contains(&q.qtype)) {
        return None;
    }
    // At the query name itself an exact rule beats a subtree rule.
    let rank = match (same, rule.kind) {
        (true, Match::Exact) => 2,
        (true, _) => 1,
        _ => 0,
    };
    Some((r.len(), rank))
}

/// The verdict for `q` (README, "Which rule decides"): among the orders with a rule that
/// matches, the first in precedence decides, with its most specific matching rule (the longest
/// rule name); at the query name itself an exact rule comes before a subtree rule. An allow
/// (`pass`) rule is an action like any other.
pub fn verdict(rules: &[Rule], q: &Question) -> Verdict {
    let best = rules
        .iter()
        .filter_map(|r| matches(r, q).map(|m| (m, r)))
        .min_by_key(|((labels, rank), r)| {
            (
                r.precedence,
                std::cmp::Reverse(*labels),
                std::cmp::Reverse(*rank),
            )
        });
    match best {
        None => Verdict::Pass,
        Some((_, r)) => match r.action {
            "pass" => Verdict::Pass,
            "drop" => Verdict::Drop,
            a => Verdict::Answer {
                action: a,
                ede_text: r.ede_text,
            },
        },
    }
}

/// The verdict for `q` sent over TCP (`tcp`) or UDP: RPZ's tcp-only action (`tc`) answers
/// TC=1 over UDP only; over TCP the query goes to the resolver (README, "Exit reasons":
/// `tc_over_tcp`).
pub fn verdict_over(rules: &[Rule], q: &Question, tcp: bool) -> Verdict {
    match verdict(rules, q) {
        Verdict::Answer { action: "tc", .. } if tcp => Verdict::Pass,
        v => v,
    }
}

/// Checks an answer (the DNS message blocker sent) against the query and the verdict, field by
/// field, with hickory-proto parsing the answer.
pub fn check_answer(
    query: &[u8],
    q: &Question,
    answer: &[u8],
    action: &str,
    ede_text: &str,
    s: &Settings,
    tcp: bool,
) -> Result<(), String> {
    // How much longer than the query an answer may be (README, "Answers"): 64 bytes over
    // UDP (the amplification bound), 192 over TCP.
    let growth = if tcp { 192 } else { 64 };
    use hickory_proto::{
        op::{Message, MessageType, OpCode},
        rr::{rdata::opt::EdnsOption, RData},
    };
    let a = Message::from_vec(answer).map_err(|e| format!("hickory cannot parse: {e}"))?;
    let id = u16::from_be_bytes([query[0], query[1]]);
    let (rd, cd) = (query[2] & 0x01 != 0, query[3] & 0x10 != 0);
    if a.id() != id
        || a.message_type() != MessageType::Response
        || a.op_code() != OpCode::Query
        || a.authoritative()
        || !a.recursion_available()
        || a.recursion_desired() != rd
        || a.checking_disabled() != cd
        || a.authentic_data()
    {
        return Err(format!("header: {:?}", a.header()));
    }
    if answer.get(12..q.end) != query.get(12..q.end) {
        return Err("question not echoed byte for byte".into());
    }
    let want_rcode: u16 = match action {
        "nxdomain" => 3,
        "refused" => 5,
        _ => 0,
    };
    if u16::from(a.response_code()) != want_rcode {
        return Err(format!("rcode {:?} for {action}", a.response_code()));
    }
    if a.truncated() != (action == "tc") {
        return Err(format!("TC {} for {action}", a.truncated()));
    }
    if !a.name_servers().is_empty() {
        return Err("authority records".into());
    }
    // Sinkhole: one A or AAAA record with the configured address and TTL, when the type asks
    // for one, it is configured and it fits; otherwise no record (NODATA).
    let record: Option<(RData, u32)> = match (action, q.qtype) {
        ("sinkhole", 1) => s.sinkhole_v4.map(|a| (RData::A(a.into()), s.sinkhole_ttl)),
        ("sinkhole", 28) => s
            .sinkhole_v6
            .map(|a| (RData::AAAA(a.into()), s.sinkhole_ttl)),
        _ => None,
    };
    let got: Vec<(RData, u32)> = a
        .answers()
        .iter()
        .map(|r| (r.data().clone(), r.ttl()))
        .collect();
    let record_fits = query.len() + growth >= q.end + 12 + if q.qtype == 1 { 4 } else { 16 } + 11;
    match (&record, got.as_slice()) {
        (None, []) => {}
        (Some(r), [g]) if r == g => {
            let owner = &a.answers()[0];
            if !owner
                .name()
                .to_ascii()
                .eq_ignore_ascii_case(&a.queries()[0].name().to_ascii())
            {
                return Err("sinkhole record owner is not the query name".into());
            }
        }
        (Some(_), []) if !record_fits => {}
        _ => return Err(format!("answer records {got:?}, expected {record:?}")),
    }
    // OPT exactly when the query had one: UDP size 1232, DO copied, EDE with the order's text
    // (cut to keep the answer within 64 bytes of the query).
    match (q.edns, a.extensions()) {
        (None, None) => {}
        (Some(dok), Some(e)) => {
            if e.max_payload() != 1232 || e.flags().dnssec_ok != dok || e.version() != 0 {
                return Err(format!("OPT {e:?}"));
            }
            let ede: Vec<(u16, Vec<u8>)> = e
                .options()
                .as_ref()
                .iter()
                .filter_map(|(_, o)| match o {
                    EdnsOption::Unknown(15, d) if d.len() >= 2 => {
                        Some((u16::from_be_bytes([d[0], d[1]]), d[2..].to_vec()))
                    }
                    _ => None,
                })
                .collect();
            match ede.as_slice() {
                [(code, text)] => {
                    if *code != s.ede_code {
                        return Err(format!("EDE code {code}"));
                    }
                    let full = ede_text.as_bytes();
                    let complete = text.as_slice() == full;
                    // Cut to fit the growth bound, between characters (EXTRA-TEXT is
                    // UTF-8): the next character would not have fitted.
                    let at = text.len().min(full.len());
                    let cut = full.starts_with(text) && ede_text.is_char_boundary(at) && {
                        let next = ede_text[at..].chars().next().map_or(0, char::len_utf8);
                        answer.len() <= query.len() + growth
                            && answer.len() + next > query.len() + growth
                    };
                    if !(complete || cut) {
                        return Err(format!(
                            "EDE text {:?}, expected {ede_text:?}",
                            String::from_utf8_lossy(text)
                        ));
                    }
                }
                [] if answer.len() + 6 > query.len() + growth => {}
                other => return Err(format!("EDE options {other:?}")),
            }
        }
        (want, got) => return Err(format!("OPT expected {want:?}, got {got:?}")),
    }
    if answer.len() > query.len() + growth {
        return Err(format!("more than {growth} bytes of growth"));
    }
    Ok(())
}
