//! Client connections before and between requests (SPEC 7 "Connections"): the caps on open
//! connections, the deadline on a whole request head, and the idle keep-alive timeout.
//!
//! ```text
//! accept ─▶ Admission (connection filter): over a cap? → closed before any TLS handshake
//!        ─▶ Guarded::process_new: Tally::admit → Slot held for the connection's life
//!             ├─ HTTP/2 (ALPN) → pingora's own loop (h2 idle timeout = idleTimeout)
//!             └─ HTTP/1: read_head (idle wait, then the whole head by headerTimeout)
//!                  ├─ head in time → pingora's proxy, the head handed over as read bytes
//!                  └─ late / idle / closed → connection closed
//! ```
//!
//! pingora bounds each read of a head, not the head: a byte every few seconds kept a
//! connection forever, and a kept-alive connection waited for its next head without a
//! deadline. So the sidecar reads each head itself, then hands the bytes to pingora, which
//! parses them without reading again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::listeners::ConnectionFilter;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};

use crate::config::{Limits, Settings};
use crate::metrics::Metrics;
use crate::policy::limits::network;
use crate::proxy::{Denial, Sidecar};

/// Largest head read before handing it to pingora, which refuses it (its own limit).
const MAX_HEAD: usize = 1_048_575;
/// Time allowed to write the 408 to a client whose head was late.
const LATE_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// Body of the 408 answering a started head that missed `headerTimeout`.
const LATE_BODY: &str = r#"{"errors":[{"code":"UNSUPPORTED","message":"the request head did not arrive within the time allowed"}]}"#;

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

    /// Whether one more connection from `ip` fits `limits` (`exempt` addresses, trusted edge
    /// proxies carrying many clients, have no per-client cap).
    pub fn has_room(&self, ip: Option<IpAddr>, limits: &Limits, exempt: &[IpAddr]) -> bool {
        let counts = self.counts();
        fits(&counts, ip, limits, exempt)
    }

    /// Counts one more connection from `ip` if it fits; the slot gives it back on drop.
    pub fn admit(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        limits: &Limits,
        exempt: &[IpAddr],
    ) -> Result<Slot, Denial> {
        let mut counts = self.counts();
        if !fits(&counts, ip, limits, exempt) {
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

fn fits(counts: &Counts, ip: Option<IpAddr>, limits: &Limits, exempt: &[IpAddr]) -> bool {
    if counts.total >= limits.max_connections {
        return false;
    }
    match ip {
        Some(ip) if !exempt.contains(&ip) => {
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

/// True when `buf` holds a whole request head: its blank line has arrived, after any empty
/// lines before the request line (which HTTP/1 parsers skip). Only the end is looked for;
/// pingora parses the head once, when it is handed over.
pub fn head_complete(buf: &[u8]) -> bool {
    // A TLS handshake on a plain listener (docker tries https first): refused at once, not at
    // headerTimeout, so the client falls back to http without waiting.
    if buf.first() == Some(&0x16) {
        return true;
    }
    let Some(start) = buf.iter().position(|b| !matches!(b, b'\r' | b'\n')) else {
        return false;
    };
    let head = &buf[start..];
    // A line ending (`\n`) followed by an empty line (`\n` or `\r\n`).
    (0..head.len())
        .any(|i| head[i] == b'\n' && matches!(&head[i + 1..], [b'\n', ..] | [b'\r', b'\n', ..]))
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
}

/// Reads one request head from `stream`: with `idle`, first waits that long for its first
/// byte (a kept-alive connection between requests); then the whole head must arrive within
/// `header_timeout`, however it is split into reads.
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
    loop {
        if (!buf.is_empty() && head_complete(&buf)) || buf.len() > MAX_HEAD {
            return Head::Ready(buf);
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

/// The peer's IP address, when the stream has one.
fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    let addr = digest.peer_addr()?.as_inet()?;
    Some(addr.ip())
}

/// The trusted edge proxies: many clients behind one address, so no per-client cap.
fn exempt(settings: &Settings) -> &[IpAddr] {
    settings
        .trusted_edge
        .as_ref()
        .map(|e| e.peers.as_slice())
        .unwrap_or_default()
}

/// Closes connections past the caps at accept, before a TLS handshake is spent on them.
pub struct Admission {
    pub tally: Arc<Tally>,
    pub settings: Arc<ArcSwap<Settings>>,
    pub metrics: Arc<Metrics>,
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
    async fn should_accept(&self, addr: Option<&std::net::SocketAddr>) -> bool {
        let settings = self.settings.load();
        let ip = addr.map(|a| a.ip());
        let room = self.tally.has_room(ip, &settings.limits, exempt(&settings));
        if !room {
            Denial::TooManyConnections.count(&self.metrics);
            tracing::debug!(client = ?ip, reason = Denial::TooManyConnections.as_str(), "connection closed at accept");
        }
        room
    }
}

/// The proxy service's application: pingora's HTTP proxy, with each connection counted and
/// each HTTP/1 request head read under `server.limits`.
pub struct Guarded {
    pub proxy: Arc<HttpProxy<Sidecar>>,
    pub tally: Arc<Tally>,
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
                Head::Late { started } => {
                    Denial::HeaderTimeout.count(&self.metrics);
                    tracing::info!(
                        decision = "denied",
                        reason = Denial::HeaderTimeout.as_str(),
                        client = ?peer_ip(&stream),
                        "connection closed"
                    );
                    if started {
                        let answer = format!("HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{LATE_BODY}", LATE_BODY.len());
                        let _ =
                            timeout(LATE_ANSWER_TIMEOUT, stream.write_all(answer.as_bytes())).await;
                    }
                    return;
                }
            };
            let mut session = ServerSession::new_http1(stream);
            match persisted.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                None if *shutdown.borrow() => session.set_keepalive(None),
                None => session.set_keepalive(Some(limits.idle_timeout.as_secs().max(1))),
            }
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
}

#[async_trait]
impl ServerApp for Guarded {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let settings = self.settings.load_full();
        let ip = peer_ip(&stream);
        let _slot = match self.tally.admit(ip, &settings.limits, exempt(&settings)) {
            Ok(slot) => slot,
            Err(refusal) => {
                tracing::debug!(client = ?ip, reason = refusal.as_str(), "connection closed");
                refusal.count(&self.metrics);
                return None;
            }
        };
        drop(settings);
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
    /// still held.
    #[rstest]
    #[case::per_ip_cap(limits(10, 2), &[], &[("10.0.0.1", true), ("10.0.0.1", true), ("10.0.0.1", false), ("10.0.0.2", true)])]
    #[case::total_cap(limits(2, 5), &[], &[("10.0.0.1", true), ("10.0.0.2", true), ("10.0.0.3", false)])]
    #[case::ipv6_counted_per_64(limits(10, 2), &[], &[("2001:db8::1", true), ("2001:db8::2", true), ("2001:db8::ffff", false), ("2001:db8:0:1::1", true)])]
    #[case::mapped_ipv4_is_ipv4(limits(10, 1), &[], &[("10.0.0.1", true), ("::ffff:10.0.0.1", false)])]
    #[case::edge_has_no_per_ip_cap(limits(3, 1), &["10.0.0.9"], &[("10.0.0.9", true), ("10.0.0.9", true), ("10.0.0.9", true), ("10.0.0.9", false)])]
    fn admission(#[case] limits: Limits, #[case] exempt: &[&str], #[case] rows: &[(&str, bool)]) {
        let tally = Arc::new(Tally::default());
        let exempt: Vec<IpAddr> = exempt.iter().map(|e| e.parse().unwrap()).collect();
        let mut held = Vec::new();
        for (i, (client, admitted)) in rows.iter().enumerate() {
            assert_eq!(
                tally.has_room(ip(client), &limits, &exempt),
                *admitted,
                "row {i}: has_room"
            );
            match tally.admit(ip(client), &limits, &exempt) {
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
        let first = tally.admit(ip("10.0.0.1"), &limits, &[]).unwrap();
        assert!(tally.admit(ip("10.0.0.2"), &limits, &[]).is_err());
        drop(first);
        assert!(tally.admit(ip("10.0.0.2"), &limits, &[]).is_ok());
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
