//! The NOTIFY listener (RFC 1996) of `blocker follow`, on UDP and TCP, built from NLnet Labs
//! `domain`'s server middleware:
//!
//! `TsigMiddlewareSvc` (verifies a signed request against the feeds' keys, answers a bad
//! signature itself with the TSIG error, signs the reply) → [`KeyGate`] (a zone with a key
//! accepts NOTIFY only signed with that key: the middleware below cannot see which key
//! signed) → `NotifyMiddlewareSvc` (parses the NOTIFY, answers it) calling
//! [`Registry::notify_zone_changed`] (the zone must be followed and the source one of its
//! primaries, otherwise NOTAUTH) → a service that REFUSES everything else.
//!
//! Accepting a NOTIFY only wakes the feed's task: the transfer that follows is the same as on
//! a timer (SOA check, IXFR, TSIG-verified), so a forged NOTIFY costs a SOA query at most.

use std::{
    collections::HashMap,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, RwLock},
    time::Instant,
};

use bytes::Bytes;
use domain::{
    base::{
        iana::{Class, Opcode, OptRcode},
        Name as DName, Serial, ToName,
    },
    net::server::{
        buf::VecBufSource,
        dgram::DgramServer,
        message::Request,
        middleware::{
            notify::{Notifiable, NotifyError, NotifyMiddlewareSvc},
            tsig::TsigMiddlewareSvc,
        },
        service::{CallResult, Service, ServiceResult},
        stream::StreamServer,
        util::{mk_error_response, service_fn},
    },
    tsig::{Algorithm, Key, KeyStore},
};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::mpsc;

/// A NOTIFY accepted for a zone.
#[derive(Clone, Debug)]
pub struct Notice {
    pub at: Instant,
    pub serial: Option<u32>,
    pub source: IpAddr,
}

/// What the listener knows of a followed zone.
#[derive(Clone, Debug)]
pub struct Listening {
    pub primaries: Vec<IpAddr>,
    pub key: Option<Arc<Key>>,
    pub tx: mpsc::Sender<Notice>,
}

/// The followed zones (lower case, no final dot), shared with the feeds' tasks.
#[derive(Clone, Debug, Default)]
pub struct Registry(Arc<RwLock<HashMap<String, Listening>>>);

fn zone_key(n: &impl ToName) -> String {
    n.to_name::<Vec<u8>>().to_string().to_ascii_lowercase()
}

impl Registry {
    pub fn set(&self, zone: &str, l: Listening) {
        if let Ok(mut m) = self.0.write() {
            m.insert(zone.to_ascii_lowercase(), l);
        }
    }

    pub fn remove(&self, zone: &str) {
        if let Ok(mut m) = self.0.write() {
            m.remove(&zone.to_ascii_lowercase());
        }
    }

    fn get(&self, zone: &str) -> Option<Listening> {
        self.0.read().ok()?.get(zone).cloned()
    }
}

impl Notifiable for Registry {
    fn notify_zone_changed(
        &self,
        class: Class,
        apex_name: &DName<Bytes>,
        serial: Option<Serial>,
        source: IpAddr,
    ) -> Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Sync + Send + '_>> {
        let zone = zone_key(apex_name);
        // On a dual-stack socket (`--listen [::]:53`) an IPv4 primary's NOTIFY comes from
        // `::ffff:a.b.c.d`: the primary's address is the IPv4 one.
        let source = source.to_canonical();
        let result = match self.get(&zone) {
            _ if class != Class::IN => Err(NotifyError::NotAuthForZone),
            None => {
                log::warn!("NOTIFY from {source} for {zone}, which is not followed: NOTAUTH");
                Err(NotifyError::NotAuthForZone)
            }
            Some(l) if !l.primaries.contains(&source) => {
                log::warn!(
                    "NOTIFY from {source} for {zone}: not one of its primaries ({}): NOTAUTH",
                    l.primaries
                        .iter()
                        .map(IpAddr::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                Err(NotifyError::NotAuthForZone)
            }
            Some(l) => {
                let serial = serial.map(Serial::into_int);
                log::info!(
                    "NOTIFY from {source} for {zone} (serial {})",
                    serial.map_or("not given".to_string(), |s| s.to_string())
                );
                // A task that is gone (feed removed meanwhile) just misses it, and one with
                // its queue full (a flood while a transfer runs) needs no more.
                let _ = l.tx.try_send(Notice {
                    at: Instant::now(),
                    serial,
                    source,
                });
                Ok(())
            }
        };
        Box::pin(async move { result })
    }
}

/// The feeds' TSIG keys, for the TSIG middleware.
#[derive(Clone, Debug)]
pub struct Keys(Registry);

impl KeyStore for Keys {
    type Key = Arc<Key>;

    fn get_key<N: ToName>(&self, name: &N, algorithm: Algorithm) -> Option<Arc<Key>> {
        let m = self.0 .0.read().ok()?;
        m.values()
            .filter_map(|l| l.key.as_ref())
            .find(|k| k.name().name_eq(name) && k.algorithm() == algorithm)
            .cloned()
    }
}

type Meta = Option<Arc<Key>>;
type BoxStream = Pin<Box<dyn Stream<Item = ServiceResult<Vec<u8>>> + Send>>;

/// Lets a NOTIFY for a zone with a TSIG key through only if that key signed it.
#[derive(Clone, Debug)]
pub struct KeyGate<S> {
    inner: S,
    registry: Registry,
}

impl<S> Service<Vec<u8>, Meta> for KeyGate<S>
where
    S: Service<Vec<u8>, Meta, Target = Vec<u8>> + Clone,
    S::Stream: 'static,
    S::Future: 'static,
{
    type Target = Vec<u8>;
    type Stream = BoxStream;
    type Future = Pin<Box<dyn Future<Output = BoxStream> + Send>>;

    fn call(&self, request: Request<Vec<u8>, Meta>) -> Self::Future {
        let msg = request.message().clone();
        let refused = (|| {
            if msg.header().opcode() != Opcode::NOTIFY {
                return None;
            }
            let q = msg.first_question()?;
            let zone = zone_key(&q.qname());
            let want = self.registry.get(&zone)?.key?;
            let signed_by = request.metadata().as_ref();
            if signed_by.is_some_and(|k| k.name() == want.name()) {
                return None;
            }
            log::warn!(
                "NOTIFY from {} for {zone}: {} (the zone's key is {}): NOTAUTH",
                request.client_addr(),
                match signed_by {
                    Some(k) => format!("signed with key {}", k.name()),
                    None => "not signed".to_string(),
                },
                want.name()
            );
            Some(mk_error_response::<_, Vec<u8>>(&msg, OptRcode::NOTAUTH))
        })();
        match refused {
            Some(answer) => {
                let s: BoxStream =
                    Box::pin(stream::once(async move { Ok(CallResult::new(answer)) }));
                Box::pin(async move { s })
            }
            None => {
                let fut = self.inner.call(request);
                Box::pin(async move {
                    let s: BoxStream = fut.await.boxed();
                    s
                })
            }
        }
    }
}

/// Builds the service stack and serves it on `addr` (UDP and TCP) until the tasks are
/// dropped. Errors: the address cannot be bound.
pub async fn listen(
    addr: SocketAddr,
    registry: Registry,
) -> std::io::Result<(tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>)> {
    let refuse = service_fn(
        |req: Request<Vec<u8>, Meta>, _: ()| -> ServiceResult<Vec<u8>> {
            Ok(CallResult::new(mk_error_response(
                req.message(),
                OptRcode::REFUSED,
            )))
        },
        (),
    );
    let notify = NotifyMiddlewareSvc::new(refuse, registry.clone());
    let gate = KeyGate {
        inner: notify,
        registry: registry.clone(),
    };
    let svc = TsigMiddlewareSvc::new(gate, Keys(registry));
    let udp = tokio::net::UdpSocket::bind(addr).await?;
    let tcp = tokio::net::TcpListener::bind(addr).await?;
    let udp = DgramServer::new(udp, VecBufSource, svc.clone());
    let tcp = StreamServer::new(tcp, VecBufSource, svc);
    Ok((
        tokio::spawn(async move { udp.run().await }),
        tokio::spawn(async move { tcp.run().await }),
    ))
}
