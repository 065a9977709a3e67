//! Client connections and the process's life (docs/http.md; docs/security.md, cases 75,
//! 78 and 83–86), with real slow sockets against the real binary: slow and idle connections are
//! closed at `server.limits`' deadlines, connections past the caps are closed at accept and
//! counted (on the TLS listener before any handshake), heads past 64 KiB get 431 at once, a
//! `/token` form has a whole-body deadline, the trusted edge is the same edge on a dual-stack
//! listener, SIGTERM ends an idle sidecar at once and a busy one when its requests are done, a
//! busy port is an error, and the upgrade socket lives in a private directory.
//!
//! Authority: in-test (common::authority): a token only opens the connection under test; the
//! cases are about sockets, not tokens.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use common::pki::Pki;
use common::sidecar::merge;
use common::*;
use serde_json::json;

/// Generous: a deadline the sidecar must close a connection by, many times the configured one.
const CLOSE_DEADLINE: Duration = Duration::from_secs(30);

fn denied(sidecar: &Sidecar, reason: &str) -> f64 {
    sidecar.metric("registry_proxy_denied_total", &[("reason", reason)])
}

/// A connection to the sidecar's `addr` from the loopback address `source` (127.0.0.2 is a
/// different client from 127.0.0.1 to the sidecar).
fn connect_from(source: &str, addr: &str) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(source.parse().unwrap(), 0))
            .unwrap();
        socket.connect(addr.parse().unwrap()).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// Sends `GET path` on a kept-alive connection and reads the whole answer; `None` when the
/// connection is closed instead.
fn get(stream: &TcpStream, path: &str) -> Option<u16> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream;
    writer
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).ok()? == 0 {
        return None;
    }
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(status)
}

/// Reads until the sidecar closes the connection (end of stream or reset), within `deadline`;
/// returns what it sent before. Panics when the connection is still open at the deadline.
fn read_until_closed(stream: &TcpStream, deadline: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(deadline)).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let mut reader = stream;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return received,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the connection is still open after {deadline:?}")
            }
            Err(e) => panic!("reading: {e}"),
        }
    }
}

/// `read_until_closed` within `CLOSE_DEADLINE`, as text.
fn text_until_closed(stream: &TcpStream) -> String {
    String::from_utf8_lossy(&read_until_closed(stream, CLOSE_DEADLINE)).into_owned()
}

/// A request head trickled one byte every 200 ms (far more often than any per-read timeout)
/// is closed at `headerTimeout` with a 408, and counted as `header_timeout` (security case 75).
#[test]
fn trickled_request_head_is_closed_at_header_timeout() {
    let stack = Stack::start_with(|cfg| {
        cfg.patch = json!({"server": {"limits": {"headerTimeout": "1s", "idleTimeout": "30s"}}});
    });
    let before = denied(&stack.sidecar, "header_timeout");
    let stream = TcpStream::connect(stack.sidecar.addr()).unwrap();
    let head = b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let writer = trickle(&stream, head.iter().copied().chain(std::iter::repeat(b'a')));
    let answer = text_until_closed(&stream);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a started head past the deadline gets 408: {answer:?}"
    );
    let _ = stream.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    assert!(denied(&stack.sidecar, "header_timeout") > before);
}

/// A kept-alive connection left idle after one request is closed at `idleTimeout`, quietly.
#[test]
fn idle_keep_alive_connection_is_closed() {
    let stack = Stack::start_with(|cfg| {
        cfg.patch = json!({"server": {"limits": {"idleTimeout": "1s"}}});
    });
    let stream = TcpStream::connect(stack.sidecar.addr()).unwrap();
    assert_eq!(get(&stream, "/healthz"), Some(200));
    let after = read_until_closed(&stream, CLOSE_DEADLINE);
    assert!(after.is_empty(), "closed without a word: {after:?}");
}

/// A second request on a kept-alive connection that stops half-way through its head is
/// closed at `headerTimeout`, even with a long `idleTimeout` (security case 75).
#[test]
fn half_sent_second_request_is_closed() {
    let stack = Stack::start_with(|cfg| {
        cfg.patch = json!({"server": {"limits": {"headerTimeout": "1s", "idleTimeout": "120s"}}});
    });
    let before = denied(&stack.sidecar, "header_timeout");
    let stream = TcpStream::connect(stack.sidecar.addr()).unwrap();
    assert_eq!(get(&stream, "/healthz"), Some(200));
    (&stream).write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    let answer = read_until_closed(&stream, CLOSE_DEADLINE);
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
    assert!(denied(&stack.sidecar, "header_timeout") > before);
}

/// Opens a connection from `source` that the sidecar serves (retrying while connections of the
/// harness's own readiness checks are still being let go).
fn admitted(sidecar: &Sidecar, source: &str) -> TcpStream {
    poll(CLOSE_DEADLINE, "a connection the sidecar serves", || {
        let stream = connect_from(source, &sidecar.addr());
        (get(&stream, "/healthz") == Some(200)).then_some(stream)
    })
}

/// Connections past `maxConnectionsPerIp` from one address, or past `maxConnections` in all,
/// are closed at accept without an answer and counted as `too_many_connections`; a closed
/// connection frees its place (security case 75).
#[test]
fn connections_past_the_caps_are_closed_at_accept() {
    let stack = Stack::start_with(|cfg| {
        cfg.patch = json!({"server": {"limits": {"maxConnections": 5, "maxConnectionsPerIp": 3}}});
    });
    let sidecar = &stack.sidecar;
    let before = denied(sidecar, "too_many_connections");
    let mut held: Vec<TcpStream> = (0..3).map(|_| admitted(sidecar, "127.0.0.1")).collect();

    let fourth = connect_from("127.0.0.1", &sidecar.addr());
    assert_eq!(get(&fourth, "/healthz"), None, "a 4th from one address");
    read_until_closed(&fourth, CLOSE_DEADLINE);

    held.push(admitted(sidecar, "127.0.0.2"));
    held.push(admitted(sidecar, "127.0.0.2"));
    let sixth = connect_from("127.0.0.3", &sidecar.addr());
    assert_eq!(get(&sixth, "/healthz"), None, "a 6th in all");
    read_until_closed(&sixth, CLOSE_DEADLINE);

    assert!(
        denied(sidecar, "too_many_connections") >= before + 2.0,
        "both refusals are counted"
    );
    for stream in &held {
        assert_eq!(
            get(stream, "/healthz"),
            Some(200),
            "admitted ones still served"
        );
    }
    drop(held.remove(0));
    admitted(sidecar, "127.0.0.3");
}

/// Completes a TLS handshake on `stream` (no ALPN: HTTP/1.1) and sends `GET path` with
/// `Connection: close`; returns the status (0 when none came).
fn tls_get(stream: TcpStream, path: &str) -> u16 {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    let mut builder = SslConnector::builder(SslMethod::tls()).unwrap();
    builder.set_verify(SslVerifyMode::NONE);
    stream.set_read_timeout(Some(CLOSE_DEADLINE)).unwrap();
    let mut tls = builder
        .build()
        .connect("localhost", stream)
        .expect("a TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer); // the status line is what counts
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Writes `bytes` on `stream` one at a time, one every 200 ms (the client's pace), until the
/// bytes are out or the sidecar closes the connection.
fn trickle(
    stream: &TcpStream,
    bytes: impl IntoIterator<Item = u8> + Send + 'static,
) -> thread::JoinHandle<()> {
    let mut writer = stream.try_clone().unwrap();
    thread::spawn(move || {
        for byte in bytes {
            if writer.write_all(&[byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(200)); // the client's pace, not a wait
        }
    })
}

/// TLS listener, `maxConnectionsPerIp: 3` (security case 83): of 40 TCP connections from one
/// address that never send a ClientHello, the first 3 hold their places through the handshake
/// wait and the other 37 are closed at accept, at once, before any handshake (they are not
/// held for pingora's 60 s handshake timeout). Each refusal is counted, the log says so in a
/// throttled line rather than one per connection, and nothing is logged at ERROR. The 3 held
/// connections are still open: they complete a handshake and are served; once they close,
/// the address gets in again. Failed handshakes free their places too, and pingora's ERROR
/// line for each is throttled.
#[test]
fn tls_connections_past_the_cap_are_closed_before_the_handshake() {
    let pki = Pki::new();
    let stack = Stack::start_with(|cfg| {
        let mut patch = pki.tls_patch();
        merge(
            &mut patch,
            &json!({"server": {"limits": {"maxConnectionsPerIp": 3}}}),
        );
        cfg.patch = patch;
    });
    let sidecar = &stack.sidecar;
    let before = denied(sidecar, "too_many_connections");
    let log_before = sidecar.log().len();

    // Accepted in the order they connect: the first 3 take the places.
    let silent: Vec<TcpStream> = (0..40)
        .map(|_| connect_from("127.0.0.5", &sidecar.addr()))
        .collect();
    let (held, refused) = silent.split_at(3);
    for (i, stream) in refused.iter().enumerate() {
        let sent = read_until_closed(stream, CLOSE_DEADLINE);
        assert!(
            sent.is_empty(),
            "refused connection {i}: closed without a word"
        );
    }
    assert!(
        denied(sidecar, "too_many_connections") >= before + 37.0,
        "every refusal is counted"
    );
    let log = sidecar.log()[log_before..].to_string();
    assert!(!log.contains("ERROR"), "nothing at ERROR:\n{log}");
    let lines = log
        .lines()
        .filter(|l| l.contains("closed at accept"))
        .count();
    assert!(
        (1..=2).contains(&lines),
        "37 refusals, logged in a throttled line, not one each ({lines} lines):\n{log}"
    );

    for stream in held {
        let status = tls_get(stream.try_clone().unwrap(), "/healthz");
        assert_eq!(status, 200, "a held connection is open and served");
    }
    drop(silent);
    let gets_in = || {
        poll(CLOSE_DEADLINE, "the address to get in again", || {
            let stream = connect_from("127.0.0.5", &sidecar.addr());
            (tls_get(stream, "/healthz") == 200).then_some(())
        })
    };
    gets_in();

    // Handshakes that fail (plain HTTP instead of a ClientHello) give their places back, and
    // pingora's ERROR line for each gets through at most every 10 s.
    let log_before = sidecar.log().len();
    for _ in 0..10 {
        let stream = connect_from("127.0.0.5", &sidecar.addr());
        let _ = (&stream).write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        read_until_closed(&stream, CLOSE_DEADLINE);
    }
    gets_in();
    let log = sidecar.log()[log_before..].to_string();
    let errors = log.lines().filter(|l| l.contains("ERROR")).count();
    assert!(
        (1..=2).contains(&errors),
        "10 failed handshakes, logged throttled ({errors} ERROR lines):\n{log}"
    );
}

/// A request head that grows past 64 KiB without ending is answered 431 and closed as soon as
/// it is that long, not at `headerTimeout` (security case 84); a head past 64 KiB sent whole is 431
/// too. Both are counted as `headers_too_large`. (That each byte is looked at a bounded number
/// of times is shown by the unit tests of `server::connections`.)
#[test]
fn head_past_64_kib_is_refused_with_431() {
    let stack = Stack::start_with(|cfg| {
        cfg.patch = json!({"server": {"limits": {"headerTimeout": "300s"}}});
    });
    let before = denied(&stack.sidecar, "headers_too_large");
    let mut head = b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ".to_vec();
    head.resize(64 * 1024 + 512, b'a');

    // The sidecar may answer and close before the last bytes are out: a failed write is fine.
    let endless = TcpStream::connect(stack.sidecar.addr()).unwrap();
    let _ = (&endless).write_all(&head);
    let answer = text_until_closed(&endless);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "a head past 64 KiB without its end: {answer:?}"
    );

    head.extend_from_slice(b"\r\n\r\n");
    let whole = TcpStream::connect(stack.sidecar.addr()).unwrap();
    let _ = (&whole).write_all(&head);
    let answer = text_until_closed(&whole);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "a whole head past 64 KiB: {answer:?}"
    );
    assert!(denied(&stack.sidecar, "headers_too_large") >= before + 2.0);
}

/// A `POST /token` form trickled one byte every 200 ms (each read far within the 60 s
/// per-read timeout; the whole form would take minutes) is answered 408 and closed once
/// `headerTimeout` has passed since its head (security case 85), counted as `body_timeout`. A body
/// the sidecar leaves unread after its answer (`/healthz` with a trickled body) is drained
/// within the same bound, then the connection is closed.
#[test]
fn trickled_token_form_is_closed_at_header_timeout() {
    let stack = Stack::start_with(|cfg| {
        cfg.patch = json!({"server": {"limits": {"headerTimeout": "1s", "idleTimeout": "120s"}}});
    });
    let before = denied(&stack.sidecar, "body_timeout");
    let form = TcpStream::connect(stack.sidecar.addr()).unwrap();
    (&form)
        .write_all(b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n")
        .unwrap();
    let writer = trickle(&form, b"grant_type=password&".repeat(50));
    let answer = text_until_closed(&form);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    let _ = form.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    assert!(denied(&stack.sidecar, "body_timeout") > before);

    let unread = TcpStream::connect(stack.sidecar.addr()).unwrap();
    (&unread)
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")
        .unwrap();
    let writer = trickle(&unread, vec![b'a'; 1000]);
    let answer = text_until_closed(&unread);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "answered, then closed: {answer:?}"
    );
    let _ = unread.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
}

/// An OpTok bound to the client certificate of SHA-256 `digest` (plan `enterprise`).
fn mtls_optok(authority: &Authority, digest: &[u8]) -> String {
    let mut claims = authority.optok_claims("alice", "enterprise", "LIC-1", None);
    claims["cnf"] = json!({ "x5t#S256": b64(digest) });
    authority.mint(claims)
}

/// Listener on `[::]` (dual stack, IPv4 peers arrive as `::ffff:a.b.c.d`), the edge at
/// 127.0.0.1 written either way in `trustedEdge.peers` (security case 86): it is recognised the
/// same in every check. Its connections have no per-client cap (another address does), its
/// client-certificate header binds an OpTok, and its `X-Forwarded-For` names the client that
/// a `tokens` limit counts (two clients behind it get a token each; one client twice is
/// limited).
#[rstest::rstest]
#[case::written_ipv4("127.0.0.1")]
#[case::written_mapped("::ffff:127.0.0.1")]
fn trusted_edge_on_a_dual_stack_listener(#[case] peer: &str) {
    let stack = Stack::start_with(|cfg| {
        let port = cfg.listen_port.expect("the stack picks the port");
        cfg.sender_constraint = "mtls".into();
        cfg.plans.push(Plan {
            limits: json!({"tokens": {"count": 1, "per": "1h"}}),
            ..Plan::new("metered", &[("acme/*", &["pull"])])
        });
        cfg.anonymous_plan = Some("metered".into());
        cfg.patch = json!({"server": {
            "listen": format!("[::]:{port}"),
            "limits": {"maxConnectionsPerIp": 1},
            "trustedEdge": {"peers": [peer]},
        }});
    });
    let sidecar = &stack.sidecar;

    // Connection caps: the edge is exempt, 127.0.0.2 is not.
    let edge: Vec<TcpStream> = (0..3)
        .map(|_| connect_from("127.0.0.1", &sidecar.addr()))
        .collect();
    for stream in &edge {
        assert_eq!(get(stream, "/healthz"), Some(200), "the edge is not capped");
    }
    let other = admitted(sidecar, "127.0.0.2");
    let second = connect_from("127.0.0.2", &sidecar.addr());
    assert_eq!(get(&second, "/healthz"), None, "another address is capped");
    drop((edge, other, second));

    // The edge's client-certificate header.
    let digest = openssl::sha::sha256(b"a client certificate the edge verified");
    let status = client()
        .get(sidecar.realm())
        .query(&[
            ("service", "registry.test"),
            ("scope", "repository:acme/app:pull"),
        ])
        .header(
            "Authorization",
            format!("Bearer {}", mtls_optok(&stack.authority, &digest)),
        )
        .header("X-Forwarded-Client-Cert", format!("Hash={}", hex(&digest)))
        .send()
        .unwrap()
        .status();
    assert_eq!(status, 200, "the edge's certificate header binds the OpTok");

    // The edge's X-Forwarded-For, for limits: one token per client and hour.
    let anonymous = |client: &str| {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .local_address(std::net::IpAddr::from([127, 0, 0, 1]))
            .build()
            .unwrap()
            .get(sidecar.realm())
            .query(&[
                ("service", "registry.test"),
                ("scope", "repository:acme/app:pull"),
            ])
            .header("X-Forwarded-For", client)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(anonymous("198.51.100.1"), 200, "a first client");
    assert_eq!(
        anonymous("198.51.100.2"),
        200,
        "another client behind the edge"
    );
    assert_eq!(anonymous("198.51.100.1"), 429, "the first client again");
}

/// SIGTERM to an idle sidecar (a kept-alive client connection open, gracePeriod 60 s): it exits
/// with status 0 without waiting out the grace period.
#[test]
fn sigterm_exits_promptly_when_idle() {
    let mut stack = Stack::start_with(|cfg| {
        cfg.patch = json!({"server": {"gracePeriod": "60s"}});
    });
    let client = TcpStream::connect(stack.sidecar.addr()).unwrap();
    assert_eq!(get(&client, "/healthz"), Some(200));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(stack.sidecar.pid() as i32, libc::SIGTERM) };
    let status = stack.sidecar.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{status}");
    read_until_closed(&client, CLOSE_DEADLINE);
}

/// `drainDelay`: after SIGTERM the sidecar keeps serving new connections for that long, then
/// closes its listeners and exits.
#[test]
fn drain_delay_keeps_accepting_after_sigterm() {
    let mut stack = Stack::start_with(|cfg| {
        cfg.patch = json!({"server": {"gracePeriod": "60s", "drainDelay": "15s"}});
    });
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(stack.sidecar.pid() as i32, libc::SIGTERM) };
    let late = TcpStream::connect(stack.sidecar.addr()).unwrap();
    assert_eq!(
        get(&late, "/healthz"),
        Some(200),
        "served during drainDelay"
    );
    drop(late);
    let status = stack.sidecar.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        TcpStream::connect(stack.sidecar.addr()).is_err(),
        "the listener is closed"
    );
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes a config for `port` and `admin` into `dir`; the Authority and the registry are not
/// needed to start.
fn write_config(dir: &Path, keys: &Keys, port: u16, admin: u16) -> std::path::PathBuf {
    let cfg = SidecarConfig::new("http://127.0.0.1:9", "http://127.0.0.1:9", keys.path());
    let path = dir.join("registry-token.yaml");
    fs::write(&path, cfg.to_yaml(port, admin)).unwrap();
    path
}

/// `serve` on a listen address another process holds exits 2, naming the address, after a
/// few seconds of retries instead of retrying forever.
#[test]
fn busy_port_exits_2() {
    let keys = Keys::generate();
    let dir = tempfile::tempdir().unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let config = write_config(dir.path(), &keys, port, free_port());
    let mut child = Proc(
        Command::new(sidecar::BIN)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("XDG_RUNTIME_DIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = poll(Duration::from_secs(30), "serve to give up", || {
        child.0.try_wait().unwrap()
    });
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")),
        "the message names the address: {stderr}"
    );
}

/// Starts `serve` (with `--upgrade` when asked) with `XDG_RUNTIME_DIR` set to `runtime`.
fn serve(config: &Path, runtime: &Path, upgrade: bool, log: &Path) -> Proc {
    let log = fs::File::create(log).unwrap();
    let mut command = Command::new(sidecar::BIN);
    command.arg("--config").arg(config).arg("serve");
    if upgrade {
        command.arg("--upgrade");
    }
    Proc(
        command
            .env("XDG_RUNTIME_DIR", runtime)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// The default upgrade socket lives in `$XDG_RUNTIME_DIR/registry-token/`, created 0700, and a
/// zero-downtime upgrade through it works; an existing such directory that others can write
/// to is refused at start (exit 2, naming it) (security case 78).
#[test]
fn default_upgrade_socket_is_private() {
    let keys = Keys::generate();
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("runtime");
    fs::create_dir(&runtime).unwrap();
    let (port, admin) = (free_port(), free_port());
    let config = write_config(dir.path(), &keys, port, admin);
    let health = format!("http://127.0.0.1:{port}/healthz");
    let healthy = || {
        poll(START_DEADLINE, "/healthz to answer 200", || {
            let r = client().get(&health).send().ok()?;
            (r.status() == 200).then_some(())
        })
    };

    let mut old = serve(&config, &runtime, false, &dir.path().join("old.log"));
    healthy();
    let private = runtime.join("registry-token");
    let mode = fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", private.display());

    let _new = serve(&config, &runtime, true, &dir.path().join("new.log"));
    let socket = private.join("upgrade.sock");
    poll(
        START_DEADLINE,
        "the new process to wait on the socket",
        || socket.exists().then_some(()),
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(old.0.id() as i32, libc::SIGQUIT) };
    let status = poll(Duration::from_secs(60), "the old process to exit", || {
        old.0.try_wait().unwrap()
    });
    assert!(status.success(), "{status}");
    healthy();

    // Someone made the directory writable by others: refused, not used.
    let loose = tempfile::tempdir().unwrap();
    fs::create_dir(loose.path().join("registry-token")).unwrap();
    fs::set_permissions(
        loose.path().join("registry-token"),
        fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let config = write_config(loose.path(), &keys, free_port(), free_port());
    let mut refused = serve(&config, loose.path(), false, &loose.path().join("log"));
    let status = poll(Duration::from_secs(30), "serve to refuse", || {
        refused.0.try_wait().unwrap()
    });
    let log = fs::read_to_string(loose.path().join("log")).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("registry-token"), "{log}");
    assert!(log.contains("writable"), "{log}");
}
