//! DNS messages with hickory-proto (a real DNS library), plus the raw pieces hickory does not
//! expose: the question's exact bytes (0x20 case) and the RFC 8914 EDE option.

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query},
    rr::{rdata::opt::EdnsOption, Name, RData, RecordType},
};

/// A query built by hickory-proto.
pub fn query(
    id: u16,
    name: &str,
    qtype: RecordType,
    edns: Option<(bool, Vec<EdnsOption>)>,
) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    m.add_query(Query::query(
        Name::from_ascii(name).expect("valid name"),
        qtype,
    ));
    if let Some((dok, opts)) = edns {
        let mut e = Edns::new();
        e.set_max_payload(4096).set_dnssec_ok(dok);
        for o in opts {
            e.options_mut().insert(o);
        }
        m.set_edns(e);
    }
    m.to_vec().expect("encodes")
}

/// A query with a QNAME given as raw wire labels (binary bytes, dots inside labels).
pub fn raw_query(id: u16, labels: &[&[u8]], qtype: u16, arcount_opt: bool) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, arcount_opt as u8]);
    for l in labels {
        m.push(l.len() as u8);
        m.extend_from_slice(l);
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    if arcount_opt {
        m.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    }
    m
}

/// Offset just past the question of a message (no compression in questions).
pub fn question_end(m: &[u8]) -> usize {
    let mut i = 12;
    while m[i] != 0 {
        i += 1 + m[i] as usize;
    }
    i + 5
}

#[derive(Debug)]
pub struct Answer {
    pub msg: Message,
    pub id: u16,
    pub rcode: u16,
    pub qr: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub aa: bool,
    pub question: Vec<u8>,
    pub answers: Vec<(RecordType, String, u32)>,
    pub opt: Option<(u16, bool)>,
    /// (info-code, EXTRA-TEXT) of every EDE option.
    pub ede: Vec<(u16, String)>,
}

/// Parses a response with hickory-proto and checks it against the raw bytes.
pub fn parse(bytes: &[u8]) -> Answer {
    let msg = Message::from_vec(bytes)
        .unwrap_or_else(|e| panic!("hickory cannot parse the answer: {e}: {bytes:02x?}"));
    let qend = question_end(bytes);
    let answers = msg
        .answers()
        .iter()
        .map(|r| {
            let data = match r.data() {
                RData::A(a) => a.0.to_string(),
                RData::AAAA(a) => a.0.to_string(),
                other => format!("{other:?}"),
            };
            (r.record_type(), data, r.ttl())
        })
        .collect();
    let mut ede = Vec::new();
    let opt = msg.extensions().as_ref().map(|e: &Edns| {
        for (_, o) in e.options().as_ref() {
            if let EdnsOption::Unknown(15, data) = o {
                assert!(data.len() >= 2, "EDE option shorter than its info-code");
                ede.push((
                    u16::from_be_bytes([data[0], data[1]]),
                    String::from_utf8_lossy(&data[2..]).into_owned(),
                ));
            }
        }
        (e.max_payload(), e.flags().dnssec_ok)
    });
    Answer {
        id: msg.id(),
        rcode: msg.response_code().into(),
        qr: msg.message_type() == MessageType::Response,
        tc: msg.truncated(),
        rd: msg.recursion_desired(),
        ra: msg.recursion_available(),
        aa: msg.authoritative(),
        question: bytes[12..qend].to_vec(),
        answers,
        opt,
        ede,
        msg,
    }
}
