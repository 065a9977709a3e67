//! Client connections before and between requests (docs/http.md, "At the edge"): the caps on open
//! connections, the deadline on a whole request head, and the idle keep-alive timeout.
//!
//! ```text
//! accept ─▶ Admission::should_accept (connection filter): Tally::admit
//!             ├─ over a cap → closed at once, before any TLS handshake (counted; logged throttled)
//!             └─ Slot reserved, by peer address and port
//!        ─▶ TLS listener: Admission::process (pre-TLS hook) puts the Slot on the TCP stream,
//!             so a handshake that fails or times out gives it back with the socket
//!        ─▶ Guarded::process_new (plain: takes the Slot) — held for the connection's life
//!             ├─ HTTP/2 (ALPN) → pingora's own loop (h2 idle timeout = idleTimeout)
//!             └─ HTTP/1: read_head (idle wait, then the whole head by headerTimeout)
//!                  ├─ head in time → pingora's proxy, the head handed over as read bytes
//!                  ├─ head past 64 KiB → 431, closed
//!                  └─ late / idle / closed → connection closed
//! ```
//!
//! pingora bounds each read of a head, not the head: a byte every few seconds kept a
//! connection forever, and a kept-alive connection waited for its next head without a
//! deadline. So the sidecar reads each head itself, looking for its end only in the bytes
//! that arrived since the last look ([`HeadScan`]), then hands the bytes to pingora, which
//! parses them without reading again.
//!
//! The slot is taken at accept, not when pingora hands the connection over: on the TLS
//! listener that comes only after the handshake, which pingora waits up to 60 s for, and
//! connections that never send a ClientHello would otherwise all be held past the caps.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::listeners::{ConnectionFilter, PreTlsProcess};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use pingora::upstreams::peer::{Tracer, Tracing};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};

use crate::config::{Limits, Settings};
use crate::edge::TrustedEdge;
use crate::metrics::Metrics;
use crate::policy::limits::network;
use crate::proxy::respond::denial_reply;
use crate::proxy::{Denial, Sidecar};
use crate::throttle::Throttle;

/// Largest request head, with any empty lines before it: past it, 431 at once, whether or
/// not its end has arrived (the request line and the header section both fit in it).
pub const MAX_HEAD: usize = 64 * 1024;
/// Time allowed to write the answer to a client whose head is refused (late, too large).
const LATE_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// Refusals at accept are logged at most this often (each is counted).
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// Open client connections, in all and per client.
#[derive(Debug, Default)]
pub struct Tally(Mutex<Counts>);

impl Tally {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts().total
    }

    /// Counts one more connection from `ip` if it fits `limits` (the trusted `edge`, carrying
    /// many clients, has no per-client cap); the slot gives it back on drop.
    pub fn admit(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        limits: &Limits,
        edge: Option<&TrustedEdge>,
    ) -> Result<Slot, Denial> {
        let mut counts = self.counts();
        if !fits(&counts, ip, limits, edge) {
            return Err(Denial::TooManyConnections);
        }
        counts.total += 1;
        let key = ip.map(network);
        if let Some(key) = key {
            *counts.per_client.entry(key).or_default() += 1;
        }
        Ok(Slot {
            tally: self.clone(),
            key,
        })
    }
}

fn fits(counts: &Counts, ip: Option<IpAddr>, limits: &Limits, edge: Option<&TrustedEdge>) -> bool {
    if counts.total >= limits.max_connections {
        return false;
    }
    match ip {
        Some(ip) if !edge.is_some_and(|edge| edge.trusts(ip)) => {
            let open = counts.per_client.get(&network(ip)).copied();
            open.unwrap_or(0) < limits.max_connections_per_ip
        }
        _ => true,
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Slot {
    tally: Arc<Tally>,
    key: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.tally.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(key) = self.key {
            if let Some(open) = counts.per_client.get_mut(&key) {
                *open -= 1;
                if *open == 0 {
                    counts.per_client.remove(&key);
                }
            }
        }
    }
}

/// Looks for the end of a request head as its bytes arrive, each byte once: the blank line
/// after the request line, after any empty lines before it (which HTTP/1 parsers skip). Only
/// the end is looked for; pingora parses the head once, when it is handed over.
#[derive(Debug, Default)]
pub struct HeadScan {
    /// The bytes before this offset have been looked at.
    scanned: usize,
    /// Where the request line starts, once a byte other than an empty line has arrived.
    start: Option<usize>,
}

/// What [`HeadScan::scan`] found.
#[derive(Debug, PartialEq)]
pub enum HeadEnd {
    /// The head is whole (or it is a TLS handshake on a plain listener, refused at once).
    Whole,
    /// Its end has not arrived yet.
    Partial,
    /// Past [`MAX_HEAD`] without an end, or whole but longer.
    TooLarge,
}

impl HeadScan {
    /// Where the next look goes in a buffer now `len` long: the new bytes, and the two before
    /// them, where an end (`\n\n` or `\n\r\n`) may have started.
    fn window(&self, len: usize) -> Range<usize> {
        let from = self.scanned.saturating_sub(2).max(self.start.unwrap_or(0));
        from..len
    }

    /// Looks at the bytes of `buf` that arrived since the last call (`buf` only grows).
    pub fn scan(&mut self, buf: &[u8]) -> HeadEnd {
        // A TLS handshake on a plain listener (docker tries https first): refused at once, not
        // at headerTimeout, so the client falls back to http without waiting.
        if self.scanned == 0 && buf.first() == Some(&0x16) {
            return HeadEnd::Whole;
        }
        if self.start.is_none() {
            let fresh = &buf[self.scanned..];
            match fresh.iter().position(|b| !matches!(b, b'\r' | b'\n')) {
                Some(at) => self.start = Some(self.scanned + at),
                None => self.scanned = buf.len(),
            }
        }
        if self.start.is_some() {
            let window = self.window(buf.len());
            let seen = &buf[window.clone()];
            // A line ending (`\n`) followed by an empty line (`\n` or `\r\n`); memchr finds
            // the line endings a word at a time.
            let end = memchr::memchr_iter(b'\n', seen).find_map(|i| match &seen[i + 1..] {
                [b'\n', ..] => Some(window.start + i + 2),
                [b'\r', b'\n', ..] => Some(window.start + i + 3),
                _ => None,
            });
            self.scanned = buf.len();
            if let Some(end) = end {
                return if end > MAX_HEAD {
                    HeadEnd::TooLarge
                } else {
                    HeadEnd::Whole
                };
            }
        }
        if buf.len() > MAX_HEAD {
            HeadEnd::TooLarge
        } else {
            HeadEnd::Partial
        }
    }
}

/// How waiting for one request head ended.
#[derive(Debug, PartialEq)]
pub enum Head {
    /// A whole head arrived in time (with whatever followed it).
    Ready(BytesMut),
    /// The client closed the connection, or it failed.
    Closed,
    /// No next request on a kept-alive connection within the idle timeout.
    Idle,
    /// The head was not whole at the deadline; `started` when part of it had arrived.
    Late { started: bool },
    /// The head is longer than [`MAX_HEAD`], known as soon as that many bytes are in.
    TooLarge,
}

/// Reads one request head from `stream`: with `idle`, first waits that long for its first
/// byte (a kept-alive connection between requests); then the whole head must arrive within
/// `header_timeout`, however it is split into reads. Each byte is looked at once.
pub async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    idle: Option<Duration>,
    header_timeout: Duration,
) -> Head {
    let mut buf = BytesMut::with_capacity(4096);
    if let Some(idle) = idle {
        match timeout(idle, stream.read_buf(&mut buf)).await {
            Err(_) => return Head::Idle,
            Ok(Ok(0) | Err(_)) => return Head::Closed,
            Ok(Ok(_)) => {}
        }
    }
    let deadline = Instant::now() + header_timeout;
    let mut scan = HeadScan::default();
    loop {
        if !buf.is_empty() {
            match scan.scan(&buf) {
                HeadEnd::Whole => return Head::Ready(buf),
                HeadEnd::TooLarge => return Head::TooLarge,
                HeadEnd::Partial => {}
            }
        }
        match timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Err(_) => {
                return Head::Late {
                    started: !buf.is_empty(),
                }
            }
            Ok(Ok(0) | Err(_)) => return Head::Closed,
            Ok(Ok(_)) => {}
        }
    }
}

/// The peer's address and port, from a stream's socket digest.
fn peer(digest: Option<Arc<SocketDigest>>) -> Option<SocketAddr> {
    digest?.peer_addr()?.as_inet().copied()
}

/// The caps at accept (`server.limits`): a connection past them is closed before anything is
/// spent on it, TLS handshake included; one within them gets its slot at once, held until the
/// connection closes. The same value is the service's connection filter, the TLS listener's
/// pre-handshake hook and, through [`Guarded`], the plain listener's hand-over.
pub struct Admission {
    tally: Arc<Tally>,
    settings: Arc<ArcSwap<Settings>>,
    metrics: Arc<Metrics>,
    /// Slots taken at accept until the connection's stream takes them over, by the peer's
    /// address and port (unique among open connections).
    reserved: Mutex<HashMap<SocketAddr, Slot>>,
    /// Refusals are counted one by one, logged at most every [`REFUSALS_LOGGED_EVERY`].
    refusals: Throttle,
}

impl Admission {
    pub fn new(
        tally: Arc<Tally>,
        settings: Arc<ArcSwap<Settings>>,
        metrics: Arc<Metrics>,
    ) -> Admission {
        Admission {
            tally,
            settings,
            metrics,
            reserved: Mutex::default(),
            refusals: Throttle::new(REFUSALS_LOGGED_EVERY),
        }
    }

    fn reserved(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Slot>> {
        self.reserved.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The slot reserved at accept for the connection from `peer`, for its stream to hold.
    fn take(&self, peer: Option<SocketAddr>) -> Option<Slot> {
        self.reserved().remove(&peer?)
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("open", &self.tally.open())
            .finish()
    }
}

#[async_trait]
impl ConnectionFilter for Admission {
    async fn should_accept(&self, addr: Option<&SocketAddr>) -> bool {
        // pingora asks only about peers with an address (TCP); there is nothing to count else.
        let Some(&addr) = addr else { return true };
        let settings = self.settings.load();
        let edge = settings.trusted_edge.as_ref();
        match self.tally.admit(Some(addr.ip()), &settings.limits, edge) {
            Ok(slot) => {
                // A slot left by a connection that never reached its stream gives way.
                let stale = self.reserved().insert(addr, slot);
                drop(stale);
                true
            }
            Err(refusal) => {
                refusal.count(&self.metrics);
                if let Some(refused) = self.refusals.event() {
                    tracing::warn!(
                        reason = refusal.as_str(),
                        client = %addr.ip(),
                        refused,
                        "connections closed at accept: past server.limits (maxConnections, maxConnectionsPerIp)"
                    );
                }
                false
            }
        }
    }
}

/// A slot carried by a TCP stream as pingora's per-connection [`Tracer`]: it goes when the
/// socket is dropped, whatever became of the handshake.
#[derive(Debug, Clone)]
struct Held {
    /// Never read: held for its `Drop`.
    _slot: Arc<Slot>,
}

impl Tracing for Held {
    fn on_connected(&self) {}
    fn on_disconnected(&self) {}
    fn boxed_clone(&self) -> Box<dyn Tracing> {
        Box::new(self.clone())
    }
}

#[async_trait]
impl PreTlsProcess for Admission {
    /// TLS listener, before the handshake: the TCP stream takes over the slot reserved at
    /// accept, so that a handshake that fails or times out (pingora waits 60 s) frees it too.
    async fn process(&self, stream: &mut TcpStream) -> pingora::Result<()> {
        if let Some(slot) = self.take(peer(stream.get_socket_digest())) {
            stream.tracer = Some(Tracer(Box::new(Held {
                _slot: Arc::new(slot),
            })));
        }
        Ok(())
    }
}

/// The proxy service's application: pingora's HTTP proxy, with each connection counted and
/// each HTTP/1 request head read under `server.limits`.
pub struct Guarded {
    pub proxy: Arc<HttpProxy<Sidecar>>,
    pub admission: Arc<Admission>,
    pub settings: Arc<ArcSwap<Settings>>,
    pub metrics: Arc<Metrics>,
}

impl Guarded {
    /// HTTP/1: one head at a time, each handed to the proxy; kept-alive connections come back
    /// here to wait for the next one.
    async fn serve_h1(&self, mut stream: Stream, shutdown: &ShutdownWatch) {
        let mut persisted: Option<HttpPersistentSettings> = None;
        let mut idle = None;
        loop {
            let limits = self.settings.load().limits.clone();
            let mut stopping = shutdown.clone();
            let head = tokio::select! {
                head = read_head(&mut stream, idle, limits.header_timeout) => head,
                // Shutting down: a connection between requests is closed, as pingora does.
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            let head = match head {
                Head::Ready(head) => head,
                Head::Closed | Head::Idle => return,
                // A client that sent nothing is closed without a word.
                Head::Late { started } => {
                    return self.refuse(stream, &Denial::HeaderTimeout, started).await
                }
                Head::TooLarge => return self.refuse(stream, &Denial::HeadersTooLarge, true).await,
            };
            let mut session = ServerSession::new_http1(stream);
            match persisted.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                None if *shutdown.borrow() => session.set_keepalive(None),
                None => session.set_keepalive(Some(limits.idle_timeout.as_secs().max(1))),
            }
            // A body the proxy leaves unread is drained before the next head, within the same
            // bound as a head (pingora's per-read timeout alone let a trickle hold it).
            session.set_total_drain_timeout(Some(limits.header_timeout));
            session.set_pipelined_prefix(head);
            let Some(reused) = self.proxy.process_new_http(session, shutdown).await else {
                return;
            };
            let (next, settings) = reused.consume();
            stream = next;
            persisted = settings;
            idle = Some(limits.idle_timeout);
        }
    }

    /// A head refused before pingora saw it: counted, logged, answered when `answer`, closed.
    async fn refuse(&self, mut stream: Stream, denial: &Denial, answer: bool) {
        denial.count(&self.metrics);
        tracing::info!(
            decision = "denied",
            status = denial.status(),
            reason = denial.as_str(),
            client = ?peer(stream.get_socket_digest()).map(|a| a.ip()),
            "connection closed"
        );
        if answer {
            let reply = denial_reply(denial, "", "", true).to_http1();
            let _ = timeout(LATE_ANSWER_TIMEOUT, async {
                stream.write_all(&reply).await?;
                AsyncWriteExt::shutdown(&mut stream).await
            })
            .await;
        }
    }
}

#[async_trait]
impl ServerApp for Guarded {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // Plain listener: the slot reserved at accept, held here for the connection's life
        // (on the TLS listener the TCP stream carries it already).
        let _slot = self.admission.take(peer(stream.get_socket_digest()));
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // pingora's HTTP/2 loop, with `h2_idle_timeout` from the server options.
            let mut next = self.proxy.process_new(stream, shutdown).await;
            while let Some(stream) = next {
                next = self.proxy.process_new(stream, shutdown).await;
            }
        } else {
            self.serve_h1(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use tokio::io::AsyncWriteExt;

    fn limits(total: usize, per_ip: usize) -> Limits {
        Limits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    /// Admission in order: each row is a client and whether it gets in, with earlier slots
    /// still held. The edge is exempt however either side writes its address
    /// (docs/security.md, case 86).
    #[rstest]
    #[case::per_ip_cap(limits(10, 2), &[], &[("10.0.0.1", true), ("10.0.0.1", true), ("10.0.0.1", false), ("10.0.0.2", true)])]
    #[case::total_cap(limits(2, 5), &[], &[("10.0.0.1", true), ("10.0.0.2", true), ("10.0.0.3", false)])]
    #[case::ipv6_counted_per_64(limits(10, 2), &[], &[("2001:db8::1", true), ("2001:db8::2", true), ("2001:db8::ffff", false), ("2001:db8:0:1::1", true)])]
    #[case::mapped_ipv4_is_ipv4(limits(10, 1), &[], &[("10.0.0.1", true), ("::ffff:10.0.0.1", false)])]
    #[case::edge_has_no_per_ip_cap(limits(3, 1), &["10.0.0.9"], &[("10.0.0.9", true), ("10.0.0.9", true), ("10.0.0.9", true), ("10.0.0.9", false)])]
    #[case::edge_seen_mapped(limits(3, 1), &["10.0.0.9"], &[("::ffff:10.0.0.9", true), ("::ffff:10.0.0.9", true)])]
    #[case::edge_written_mapped(limits(3, 1), &["::ffff:10.0.0.9"], &[("10.0.0.9", true), ("10.0.0.9", true), ("::ffff:10.0.0.9", true)])]
    fn admission(#[case] limits: Limits, #[case] edge: &[&str], #[case] rows: &[(&str, bool)]) {
        let tally = Arc::new(Tally::default());
        let edge = TrustedEdge::new(edge.iter().map(|e| e.parse().unwrap()), "x-client-cert");
        let mut held = Vec::new();
        for (i, (client, admitted)) in rows.iter().enumerate() {
            match tally.admit(ip(client), &limits, Some(&edge)) {
                Ok(slot) => {
                    assert!(admitted, "row {i}: {client} admitted past a cap");
                    held.push(slot);
                }
                Err(refusal) => {
                    assert!(!admitted, "row {i}: {client} refused");
                    assert_eq!(refusal.as_str(), "too_many_connections");
                }
            }
        }
        assert_eq!(tally.open(), held.len());
        drop(held);
        assert_eq!(tally.open(), 0, "dropped slots give their places back");
        assert!(tally.counts().per_client.is_empty());
    }

    /// Closing a connection lets the same client in again.
    #[test]
    fn closed_connection_frees_its_place() {
        let tally = Arc::new(Tally::default());
        let limits = limits(1, 1);
        let first = tally.admit(ip("10.0.0.1"), &limits, None).unwrap();
        assert!(tally.admit(ip("10.0.0.2"), &limits, None).is_err());
        drop(first);
        assert!(tally.admit(ip("10.0.0.2"), &limits, None).is_ok());
    }

    /// A slot the TCP stream carries (TLS listener, before the handshake) is given back when
    /// the last copy of the stream's tracer goes, not before.
    #[test]
    fn slot_carried_by_a_stream_goes_with_it() {
        let tally = Arc::new(Tally::default());
        let slot = tally.admit(ip("10.0.0.1"), &limits(5, 5), None).unwrap();
        let tracer = Tracer(Box::new(Held {
            _slot: Arc::new(slot),
        }));
        let copy = tracer.clone();
        drop(tracer);
        assert_eq!(tally.open(), 1);
        drop(copy);
        assert_eq!(tally.open(), 0);
    }

    /// The end of a head in one buffer: `scan` once over the whole of it.
    fn head_complete(buf: &[u8]) -> bool {
        HeadScan::default().scan(buf) == HeadEnd::Whole
    }

    /// What counts as a whole head: the blank line ends it, bare LF too, leading empty lines
    /// are skipped; a head pingora's parser refuses is whole once its blank line is in.
    #[rstest]
    #[case::whole(b"GET /v2/ HTTP/1.1\r\nHost: a\r\n\r\n", true)]
    #[case::with_body_bytes(b"PUT /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", true)]
    #[case::bare_lf(b"GET / HTTP/1.1\nHost: a\n\n", true)]
    #[case::no_blank_line(b"GET /v2/ HTTP/1.1\r\nHost: a\r\n", false)]
    #[case::request_line_only(b"GET /v2/ HTTP/1.1\r\n", false)]
    #[case::one_byte(b"G", false)]
    #[case::leading_empty_lines(b"\r\n\r\nGET / HTTP/1.1\r\n", false)]
    #[case::leading_empty_lines_whole(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", true)]
    #[case::refused_target_partial(b"GET /a|b HTTP/1.1\r\nHost: a\r\n", false)]
    #[case::refused_target_whole(b"GET /a|b HTTP/1.1\r\nHost: a\r\n\r\n", true)]
    #[case::tls_client_hello(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", true)]
    fn whole_heads(#[case] buf: &[u8], #[case] whole: bool) {
        assert_eq!(head_complete(buf), whole, "{}", buf.escape_ascii());
        // The same bytes one at a time: the end is found across reads, on the byte that
        // completes it.
        let mut scan = HeadScan::default();
        let found = (1..=buf.len()).find(|&n| scan.scan(&buf[..n]) == HeadEnd::Whole);
        assert_eq!(
            found.is_some(),
            whole,
            "byte by byte: {}",
            buf.escape_ascii()
        );
        if whole {
            assert_eq!(
                found,
                (1..=buf.len()).find(|&n| head_complete(&buf[..n])),
                "found as soon as it is there"
            );
        }
    }

    /// Heads trickled in pieces of every size from 1 to 7 bytes, the end split across reads
    /// at every place: each byte is looked at a bounded number of times (the overlap of two),
    /// so the work grows with the bytes, not with the bytes times the reads (security case 84).
    #[rstest]
    #[case::crlf(b"GET /v2/ HTTP/1.1\r\nHost: a\r\nX-Pad: aaaaaaaaaaaaaaaa\r\n\r\n")]
    #[case::bare_lf(b"\r\nGET /v2/ HTTP/1.1\nHost: a\nX-Pad: aaaaaaaaaaaaaaaa\n\n")]
    fn scan_looks_at_each_byte_a_bounded_number_of_times(#[case] head: &[u8]) {
        for piece in 1..=7 {
            let mut scan = HeadScan::default();
            let (mut looked, mut len) = (0, 0);
            let outcome = loop {
                len = (len + piece).min(head.len());
                looked += scan.window(len).len();
                match scan.scan(&head[..len]) {
                    HeadEnd::Partial if len < head.len() => continue,
                    outcome => break outcome,
                }
            };
            assert_eq!(outcome, HeadEnd::Whole, "pieces of {piece}");
            let reads = head.len().div_ceil(piece);
            assert!(
                looked <= head.len() + 2 * reads,
                "pieces of {piece}: {looked} bytes looked at for {} received",
                head.len()
            );
        }
    }

    /// A head that never ends is refused as soon as it is longer than `MAX_HEAD`, read by
    /// read; one whose end arrives past `MAX_HEAD` too; one just within it is whole.
    #[test]
    fn head_past_the_limit_is_too_large() {
        let mut endless = b"GET /v2/ HTTP/1.1\r\nX-Pad: ".to_vec();
        endless.resize(MAX_HEAD + 4096, b'a');
        let mut scan = HeadScan::default();
        let refused = (1..=endless.len() / 512)
            .map(|n| n * 512)
            .find(|&n| scan.scan(&endless[..n]) == HeadEnd::TooLarge);
        assert_eq!(
            refused,
            Some(MAX_HEAD + 512),
            "refused at the first read past the limit"
        );

        let mut long = endless[..MAX_HEAD].to_vec();
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(HeadScan::default().scan(&long), HeadEnd::TooLarge);
        let mut fits = endless[..MAX_HEAD - 4].to_vec();
        fits.extend_from_slice(b"\r\n\r\n");
        assert_eq!(HeadScan::default().scan(&fits), HeadEnd::Whole);

        let blank_lines = vec![b'\n'; MAX_HEAD + 1];
        assert_eq!(HeadScan::default().scan(&blank_lines), HeadEnd::TooLarge);
    }

    const SHORT: Duration = Duration::from_millis(300);

    /// A head that arrives whole is handed over with the bytes after it.
    #[tokio::test]
    async fn whole_head_is_ready() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        client
            .write_all(b"PUT /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nab")
            .await
            .unwrap();
        let head = read_head(&mut server, None, Duration::from_secs(30)).await;
        assert_eq!(
            head,
            Head::Ready(BytesMut::from(
                &b"PUT /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"[..]
            ))
        );
    }

    /// A head trickled a byte at a time, each byte well within the deadline, is late all the
    /// same: the deadline bounds the whole head, not each read.
    #[tokio::test]
    async fn trickled_head_is_late() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let trickle = tokio::spawn(async move {
            for byte in b"GET /v2/ HTTP/1.1\r\nX-Slow: ".iter().cycle() {
                if client.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let head = read_head(&mut server, None, SHORT).await;
        assert_eq!(head, Head::Late { started: true });
        drop(server);
        trickle.await.unwrap();
    }

    /// A head past `MAX_HEAD` trickled without an end is refused before the deadline.
    #[tokio::test]
    async fn endless_head_is_too_large() {
        let (mut client, mut server) = tokio::io::duplex(MAX_HEAD * 2);
        client
            .write_all(b"GET /v2/ HTTP/1.1\r\nX-Pad: ")
            .await
            .unwrap();
        client.write_all(&vec![b'a'; MAX_HEAD]).await.unwrap();
        let head = read_head(&mut server, None, Duration::from_secs(3600)).await;
        assert_eq!(head, Head::TooLarge);
    }

    /// Between requests: nothing within the idle timeout ends the connection quietly; a next
    /// request that starts but stops half-way is late; a closed connection is closed.
    #[tokio::test]
    async fn kept_alive_connection_outcomes() {
        let (_client, mut server) = tokio::io::duplex(4096);
        assert_eq!(read_head(&mut server, Some(SHORT), SHORT).await, Head::Idle);

        let (mut client, mut server) = tokio::io::duplex(4096);
        client.write_all(b"GET /v2/ HTTP/1.1\r\nHo").await.unwrap();
        assert_eq!(
            read_head(&mut server, Some(Duration::from_secs(30)), SHORT).await,
            Head::Late { started: true }
        );

        let (client, mut server) = tokio::io::duplex(4096);
        drop(client);
        assert_eq!(
            read_head(&mut server, Some(Duration::from_secs(30)), SHORT).await,
            Head::Closed
        );

        let (_client, mut server) = tokio::io::duplex(4096);
        assert_eq!(
            read_head(&mut server, None, SHORT).await,
            Head::Late { started: false },
            "a new connection that sends nothing"
        );
    }
}
