//! Asking a primary: the zone's SOA, an IXFR from the serial enforced, an AXFR — over TCP
//! with NLnet Labs `domain`'s stream transport (which matches replies to the query by ID and
//! question), optionally signed with TSIG (`net::client::tsig`, which verifies every message
//! of a transfer), read with `XfrResponseInterpreter`.
//!
//! What `domain` leaves to us, done here: error rcodes (an IXFR refused with NOTIMP, REFUSED
//! or FORMERR is [`Ixfr::Unavailable`], for the caller to fall back to AXFR), the single-SOA
//! IXFR reply (the copy is current, or the primary cannot serve the difference), timeouts
//! per message, and classifying failures so the operator reads what went wrong.

use std::{net::SocketAddr, str::FromStr, sync::Arc, time::Duration};

use blocker_lists::ZoneRecord;
use bytes::Bytes;
use domain::{
    base::{
        iana::{Class, Rcode},
        name::FlattenInto,
        Message, MessageBuilder, Name as DName, Rtype, ToName,
    },
    net::{
        client::{
            request::{
                Error as ReqError, GetResponse, GetResponseMulti, RequestMessage,
                RequestMessageMulti, SendRequest, SendRequestMulti,
            },
            stream, tsig as ctsig,
        },
        xfr::protocol::{ParsedRecord, XfrResponseInterpreter},
    },
    rdata::ZoneRecordData,
    tsig::Key,
    zonetree::types::ZoneUpdate,
};
use tokio::net::TcpStream;

use super::zone::{sequence_error, serial_of, soa_of, Batch};

/// A failed exchange with a primary.
#[derive(Debug, thiserror::Error)]
pub enum XfrError {
    #[error("{addr}: cannot connect: {why}")]
    Connect { addr: SocketAddr, why: String },
    #[error("{addr}: no answer to the {what} query within {secs} s")]
    Timeout {
        addr: SocketAddr,
        what: &'static str,
        secs: u64,
    },
    #[error("{addr}: {what}: TSIG: {why}")]
    Tsig {
        addr: SocketAddr,
        what: &'static str,
        why: String,
    },
    #[error("{addr}: the primary answered the {what} query with {rcode}{hint}")]
    Rcode {
        addr: SocketAddr,
        what: &'static str,
        rcode: Rcode,
        hint: &'static str,
    },
    #[error("{addr}: {what}: malformed response: {why}")]
    Malformed {
        addr: SocketAddr,
        what: &'static str,
        why: String,
    },
    #[error(
        "{addr}: {what}: the transfer was cut after {messages} messages ({records} records): {why}"
    )]
    Cut {
        addr: SocketAddr,
        what: &'static str,
        messages: usize,
        records: usize,
        why: String,
    },
    #[error(
        "{addr}: {what}: the transfer took longer than {secs} s (the limit of follow --max-transfer-time) and was abandoned"
    )]
    TooLong {
        addr: SocketAddr,
        what: &'static str,
        secs: u64,
    },
    #[error("{addr}: {what}: {why}")]
    Transport {
        addr: SocketAddr,
        what: &'static str,
        why: String,
    },
}

/// What an IXFR query brought.
#[derive(Debug)]
pub enum Ixfr {
    /// The copy is current (a single-SOA reply with our serial).
    UpToDate,
    /// Difference sequences from the serial asked for.
    Diff(Diff),
    /// The primary sent the whole zone (AXFR-style reply to IXFR: RFC 1995 allows it).
    Full(Full),
    /// The primary cannot serve this IXFR (an error rcode, or a single SOA with another
    /// serial): ask for an AXFR. The string says why.
    Unavailable(String),
}

#[derive(Debug)]
pub struct Diff {
    pub batches: Vec<Batch>,
    pub soa: ZoneRecord,
    pub messages: usize,
    pub records: usize,
}

#[derive(Debug)]
pub struct Full {
    pub soa: ZoneRecord,
    pub records: Vec<ZoneRecord>,
    pub messages: usize,
}

/// Bounds on one transfer, whatever a primary sends: without them a primary (hostile, or
/// broken) that streams records without end would hold the feed on its old copy forever and
/// the follower's memory would grow until the kernel killed it.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Records in one transfer (an AXFR's, or an IXFR's deletions and additions together).
    pub records: usize,
    /// One transfer, from connecting to its end.
    pub time: Duration,
}

/// A primary of one zone.
#[derive(Clone, Debug)]
pub struct Primary {
    pub addr: SocketAddr,
    pub key: Option<Arc<Key>>,
    /// Per exchange: connecting, and waiting for each message.
    pub timeout: Duration,
    pub limits: Limits,
}

type Plain = stream::Connection<RequestMessage<Bytes>, RequestMessageMulti<Bytes>>;
type SignedStream = stream::Connection<
    ctsig::RequestMessage<RequestMessage<Bytes>, Arc<Key>>,
    ctsig::RequestMessage<RequestMessageMulti<Bytes>, Arc<Key>>,
>;

/// A TCP connection to a primary, signed or not.
enum Conn {
    Plain(Plain),
    Signed(ctsig::Connection<SignedStream, Arc<Key>>),
}

/// A connection and the task that reads its stream. The task is stopped when the exchange is
/// over: left running, a transfer abandoned at a limit would go on reading whatever the
/// primary keeps sending (the transport only notices a dropped request when it pauses).
struct Link {
    conn: Conn,
    transport: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.transport.abort();
    }
}

impl Link {
    fn single(&self, msg: RequestMessage<Bytes>) -> Box<dyn GetResponse + Send + Sync> {
        match &self.conn {
            Conn::Plain(c) => SendRequest::send_request(c, msg),
            Conn::Signed(c) => SendRequest::send_request(c, msg),
        }
    }

    fn multi(&self, msg: RequestMessageMulti<Bytes>) -> Box<dyn GetResponseMulti + Send + Sync> {
        match &self.conn {
            Conn::Plain(c) => SendRequestMulti::send_request(c, msg),
            Conn::Signed(c) => SendRequestMulti::send_request(c, msg),
        }
    }
}

/// The absolute name of a zone given as `rpz.example`.
pub fn apex_of(zone: &str) -> Result<DName<Bytes>, String> {
    DName::from_str(&format!("{}.", zone.trim_end_matches('.'))).map_err(|e| e.to_string())
}

fn flatten(r: ParsedRecord) -> Result<ZoneRecord, String> {
    r.try_flatten_into()
        .map_err(|_| "a name in a record is too long".to_string())
}

impl Primary {
    fn fail(&self, what: &'static str, e: ReqError) -> XfrError {
        let addr = self.addr;
        match e {
            ReqError::Authentication(v) => XfrError::Tsig {
                addr,
                what,
                why: format!(
                    "{v}{}",
                    match v {
                        domain::tsig::ValidationError::ServerBadKey =>
                            " (the primary does not know this key: check the key name and algorithm)",
                        domain::tsig::ValidationError::ServerBadSig =>
                            " (the primary has another secret for this key name)",
                        domain::tsig::ValidationError::ServerUnsigned =>
                            " (the primary answered unsigned: it has no key configured for this zone, or refused ours)",
                        _ => "",
                    }
                ),
            },
            ReqError::StreamReadTimeout => XfrError::Timeout {
                addr,
                what,
                secs: self.timeout.as_secs(),
            },
            ReqError::WrongReplyForQuery => XfrError::Malformed {
                addr,
                what,
                why: "the reply does not match the query".into(),
            },
            other => XfrError::Transport {
                addr,
                what,
                why: other.to_string(),
            },
        }
    }

    async fn connect(&self) -> Result<Link, XfrError> {
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| XfrError::Connect {
                addr: self.addr,
                why: format!("no connection within {} s", self.timeout.as_secs()),
            })?
            .map_err(|e| XfrError::Connect {
                addr: self.addr,
                why: e.to_string(),
            })?;
        let mut config = stream::Config::new();
        config.set_response_timeout(self.timeout);
        config.set_streaming_response_timeout(self.timeout);
        Ok(match &self.key {
            None => {
                let (conn, transport) = Plain::with_config(tcp, config);
                Link {
                    conn: Conn::Plain(conn),
                    transport: tokio::spawn(transport.run()),
                }
            }
            Some(key) => {
                let (conn, transport) = SignedStream::with_config(tcp, config);
                Link {
                    conn: Conn::Signed(ctsig::Connection::new(key.clone(), conn)),
                    transport: tokio::spawn(transport.run()),
                }
            }
        })
    }

    /// Waits for the next message of a transfer, with the per-message timeout.
    async fn next(
        &self,
        what: &'static str,
        resp: &mut Box<dyn GetResponseMulti + Send + Sync>,
        messages: usize,
        records: usize,
    ) -> Result<Message<Bytes>, XfrError> {
        let cut = |why: String| XfrError::Cut {
            addr: self.addr,
            what,
            messages,
            records,
            why,
        };
        // The transport has its own timeout; this one also covers a transport that stopped
        // delivering without an error.
        match tokio::time::timeout(self.timeout, resp.get_response()).await {
            Err(_) if messages == 0 => Err(XfrError::Timeout {
                addr: self.addr,
                what,
                secs: self.timeout.as_secs(),
            }),
            Err(_) => Err(cut(format!("no message for {} s", self.timeout.as_secs()))),
            Ok(Ok(Some(m))) => Ok(m),
            Ok(Ok(None)) => Err(cut("the primary ended the response early".into())),
            Ok(Err(e @ ReqError::Authentication(_))) => Err(self.fail(what, e)),
            Ok(Err(e)) if messages == 0 => Err(self.fail(what, e)),
            Ok(Err(e)) => Err(cut(e.to_string())),
        }
    }

    /// The zone's SOA record as the primary serves it.
    pub async fn soa(&self, apex: &DName<Bytes>) -> Result<ZoneRecord, XfrError> {
        const WHAT: &str = "SOA";
        let conn = self.connect().await?;
        let mut b = MessageBuilder::new_bytes().question();
        b.push((apex.clone(), Rtype::SOA, Class::IN))
            .map_err(|e| self.malformed(WHAT, e.to_string()))?;
        let req = RequestMessage::new(b.into_message()).map_err(|e| self.fail(WHAT, e))?;
        let mut resp = conn.single(req);
        let msg = match tokio::time::timeout(self.timeout, resp.get_response()).await {
            Err(_) => {
                return Err(XfrError::Timeout {
                    addr: self.addr,
                    what: WHAT,
                    secs: self.timeout.as_secs(),
                })
            }
            Ok(r) => r.map_err(|e| self.fail(WHAT, e))?,
        };
        self.rcode(WHAT, &msg)?;
        let answer = msg
            .answer()
            .map_err(|e| self.malformed(WHAT, e.to_string()))?;
        for rr in answer.limit_to::<ZoneRecordData<Bytes, _>>() {
            let rr = rr.map_err(|e| self.malformed(WHAT, e.to_string()))?;
            if rr.rtype() == Rtype::SOA && rr.owner().name_eq(apex) {
                let rr = flatten(rr).map_err(|e| self.malformed(WHAT, e))?;
                return Ok(rr);
            }
        }
        Err(self.malformed(
            WHAT,
            format!("no SOA record of {apex} in the answer (is the primary authoritative for it?)"),
        ))
    }

    /// The end of a transfer whose final SOA has arrived: the transport's end of stream, which
    /// the TSIG layer turns into the check that the last message was signed (RFC 8945 §5.3.1
    /// lets a primary sign every hundredth message only; the ones in between are covered by
    /// the next signature, so a transfer is authenticated only once its end is). Without it
    /// unsigned messages after the last signed one, closing SOA included, would be taken.
    async fn end(
        &self,
        what: &'static str,
        resp: &mut Box<dyn GetResponseMulti + Send + Sync>,
        messages: usize,
        records: usize,
    ) -> Result<(), XfrError> {
        match tokio::time::timeout(self.timeout, resp.get_response()).await {
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some(_))) => Err(self.malformed(what, "a message after the final SOA".into())),
            Ok(Err(e @ ReqError::Authentication(_))) => Err(self.fail(what, e)),
            Ok(Err(e)) => Err(XfrError::Cut {
                addr: self.addr,
                what,
                messages,
                records,
                why: format!("after the final SOA: {e}"),
            }),
            Err(_) => Err(XfrError::Cut {
                addr: self.addr,
                what,
                messages,
                records,
                why: format!(
                    "no end of the transfer after its final SOA for {} s",
                    self.timeout.as_secs()
                ),
            }),
        }
    }

    fn malformed(&self, what: &'static str, why: String) -> XfrError {
        XfrError::Malformed {
            addr: self.addr,
            what,
            why,
        }
    }

    fn rcode(&self, what: &'static str, msg: &Message<Bytes>) -> Result<(), XfrError> {
        let rcode = msg.header().rcode();
        if rcode == Rcode::NOERROR {
            return Ok(());
        }
        let hint = match rcode {
            Rcode::REFUSED => {
                " (is this edge allowed to transfer the zone? check the primary's ACL)"
            }
            Rcode::NOTAUTH => {
                " (the primary is not authoritative for the zone, or refused the TSIG key)"
            }
            Rcode::NOTIMP => " (the primary does not implement it)",
            _ => "",
        };
        Err(XfrError::Rcode {
            addr: self.addr,
            what,
            rcode,
            hint,
        })
    }

    /// `transfer` within the limit on a transfer's time.
    async fn bounded<T>(
        &self,
        what: &'static str,
        transfer: impl std::future::Future<Output = Result<T, XfrError>>,
    ) -> Result<T, XfrError> {
        tokio::time::timeout(self.limits.time, transfer)
            .await
            .unwrap_or_else(|_| {
                Err(XfrError::TooLong {
                    addr: self.addr,
                    what,
                    secs: self.limits.time.as_secs(),
                })
            })
    }

    /// The whole zone.
    pub async fn axfr(&self, apex: &DName<Bytes>) -> Result<Full, XfrError> {
        self.bounded("AXFR", self.axfr_unbounded(apex)).await
    }

    async fn axfr_unbounded(&self, apex: &DName<Bytes>) -> Result<Full, XfrError> {
        const WHAT: &str = "AXFR";
        let conn = self.connect().await?;
        let mut b = MessageBuilder::new_bytes().question();
        b.push((apex.clone(), Rtype::AXFR, Class::IN))
            .map_err(|e| self.malformed(WHAT, e.to_string()))?;
        let req = RequestMessageMulti::new(b.into_message()).map_err(|e| self.fail(WHAT, e))?;
        let mut resp = conn.multi(req);
        let first = self.next(WHAT, &mut resp, 0, 0).await?;
        self.rcode(WHAT, &first)?;
        match self.read(WHAT, first, &mut resp).await? {
            Read::Full(f) => Ok(f),
            Read::Diff(_) => {
                Err(self.malformed(WHAT, "an AXFR reply with IXFR differences".into()))
            }
        }
    }

    /// The differences from the zone at `have` (its SOA) to the primary's current version.
    pub async fn ixfr(&self, apex: &DName<Bytes>, have: &ZoneRecord) -> Result<Ixfr, XfrError> {
        self.bounded("IXFR", self.ixfr_unbounded(apex, have)).await
    }

    async fn ixfr_unbounded(
        &self,
        apex: &DName<Bytes>,
        have: &ZoneRecord,
    ) -> Result<Ixfr, XfrError> {
        const WHAT: &str = "IXFR";
        let conn = self.connect().await?;
        let mut b = MessageBuilder::new_bytes().question();
        b.push((apex.clone(), Rtype::IXFR, Class::IN))
            .map_err(|e| self.malformed(WHAT, e.to_string()))?;
        let mut b = b.authority();
        b.push(have.clone())
            .map_err(|e| self.malformed(WHAT, e.to_string()))?;
        let req = RequestMessageMulti::new(b.into_message()).map_err(|e| self.fail(WHAT, e))?;
        let mut resp = conn.multi(req);
        let first = self.next(WHAT, &mut resp, 0, 0).await?;
        let rcode = first.header().rcode();
        if matches!(rcode, Rcode::NOTIMP | Rcode::REFUSED | Rcode::FORMERR) {
            return Ok(Ixfr::Unavailable(format!(
                "the primary answered IXFR with {rcode}"
            )));
        }
        self.rcode(WHAT, &first)?;
        // A lone SOA: current if it is ours, otherwise the primary cannot give the
        // difference (the stream transport would wait for more: read it here).
        if first.header_counts().ancount() == 1 {
            let answer = first
                .answer()
                .map_err(|e| self.malformed(WHAT, e.to_string()))?;
            if let Some(rr) = answer.limit_to::<ZoneRecordData<Bytes, _>>().next() {
                let rr = rr.map_err(|e| self.malformed(WHAT, e.to_string()))?;
                let rr = flatten(rr).map_err(|e| self.malformed(WHAT, e))?;
                if soa_of(&rr).is_some() {
                    return Ok(if serial_of(&rr) == serial_of(have) {
                        Ixfr::UpToDate
                    } else {
                        Ixfr::Unavailable(format!(
                            "the primary answered IXFR with its SOA alone (serial {})",
                            serial_of(&rr)
                        ))
                    });
                }
            }
        }
        match self.read(WHAT, first, &mut resp).await {
            Ok(Read::Full(f)) => Ok(Ixfr::Full(f)),
            Ok(Read::Diff(d)) => Ok(
                match sequence_error(serial_of(have), &d.batches, serial_of(&d.soa)) {
                    None => Ixfr::Diff(d),
                    Some(why) => Ixfr::Unavailable(format!("the IXFR reply {why}")),
                },
            ),
            // The first message is not a transfer (e.g. an error the rcode did not say).
            Err(XfrError::Malformed { why, .. }) if why.starts_with("Not a valid XFR") => Ok(
                Ixfr::Unavailable(format!("the IXFR reply is not a transfer ({why})")),
            ),
            Err(e) => Err(e),
        }
    }

    /// Reads a transfer to its end with the interpreter.
    async fn read(
        &self,
        what: &'static str,
        first: Message<Bytes>,
        resp: &mut Box<dyn GetResponseMulti + Send + Sync>,
    ) -> Result<Read, XfrError> {
        let mut interp = XfrResponseInterpreter::new();
        let mut msg = first;
        let mut messages = 1;
        let mut full: Option<Vec<ZoneRecord>> = None;
        let mut batches: Vec<Batch> = Vec::new();
        let mut records = 0;
        // Every record read, the SOAs that open and close IXFR differences included: the
        // limit on a transfer's records (a stream of empty differences holds memory too).
        let mut read = 0usize;
        let mut end: Option<ZoneRecord> = None;
        loop {
            let updates = interp
                .interpret_response(msg)
                .map_err(|e| self.malformed(what, e.to_string()))?;
            for u in updates {
                read += 1;
                let u = u.map_err(|e| self.malformed(what, format!("{e:?}")))?;
                let rec = |r: ParsedRecord| flatten(r).map_err(|e| self.malformed(what, e));
                match u {
                    ZoneUpdate::DeleteAllRecords => full = Some(Vec::new()),
                    ZoneUpdate::AddRecord(r) => {
                        records += 1;
                        let r = rec(r)?;
                        match (&mut full, batches.last_mut()) {
                            (Some(f), _) => f.push(r),
                            (None, Some(b)) => b.adds.push(r),
                            (None, None) => {
                                return Err(self.malformed(what, "a record before any SOA".into()))
                            }
                        }
                    }
                    ZoneUpdate::DeleteRecord(r) => {
                        records += 1;
                        let r = rec(r)?;
                        match batches.last_mut() {
                            Some(b) => b.deletes.push(r),
                            None => {
                                return Err(
                                    self.malformed(what, "a deletion outside a difference".into())
                                )
                            }
                        }
                    }
                    ZoneUpdate::BeginBatchDelete(soa) => {
                        let soa = rec(soa)?;
                        batches.push(Batch {
                            from: soa.clone(),
                            to: soa,
                            deletes: Vec::new(),
                            adds: Vec::new(),
                        });
                    }
                    ZoneUpdate::BeginBatchAdd(soa) => {
                        let soa = rec(soa)?;
                        match batches.last_mut() {
                            Some(b) => b.to = soa,
                            None => {
                                return Err(
                                    self.malformed(what, "an addition outside a difference".into())
                                )
                            }
                        }
                    }
                    ZoneUpdate::Finished(soa) => end = Some(rec(soa)?),
                    other => return Err(self.malformed(what, format!("unexpected update {other}"))),
                }
            }
            if read > self.limits.records {
                return Err(XfrError::Cut {
                    addr: self.addr,
                    what,
                    messages,
                    records: read,
                    why: format!(
                        "more than {} records (the limit of follow --max-transfer-records); abandoned",
                        self.limits.records
                    ),
                });
            }
            if interp.is_finished() {
                break;
            }
            msg = self.next(what, resp, messages, records).await?;
            messages += 1;
        }
        self.end(what, resp, messages, records).await?;
        let soa = end.ok_or_else(|| self.malformed(what, "no final SOA".into()))?;
        if soa_of(&soa).is_none() {
            return Err(self.malformed(what, "the transfer does not end with a SOA".into()));
        }
        Ok(match full {
            Some(records) => Read::Full(Full {
                soa,
                records,
                messages,
            }),
            None => Read::Diff(Diff {
                batches,
                soa,
                messages,
                records,
            }),
        })
    }
}

enum Read {
    Full(Full),
    Diff(Diff),
}
