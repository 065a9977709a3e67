//! Client connections and the process's life (SPEC 7 "Connections" and "Shutdown", SECURITY 75
//! and 78), with real slow sockets against the real binary: slow and idle connections are
//! closed at `server.limits`' deadlines, connections past the caps are closed at accept and
//! counted, SIGTERM ends an idle sidecar at once and a busy one when its requests are done, a
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

/// A request head trickled one byte every 200 ms (far more often than any per-read timeout)
/// is closed at `headerTimeout` with a 408, and counted as `header_timeout` (SECURITY 75).
#[test]
fn trickled_request_head_is_closed_at_header_timeout() {
    let stack = Stack::start_with(|cfg| {
        cfg.patch = json!({"server": {"limits": {"headerTimeout": "1s", "idleTimeout": "30s"}}});
    });
    let before = denied(&stack.sidecar, "header_timeout");
    let stream = TcpStream::connect(stack.sidecar.addr()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let trickle = thread::spawn(move || {
        let head = b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
        for byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if writer.write_all(&[*byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(200)); // the client's pace, not a wait
        }
    });
    let answer = read_until_closed(&stream, CLOSE_DEADLINE);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a started head past the deadline gets 408: {answer:?}"
    );
    let _ = stream.shutdown(std::net::Shutdown::Both);
    trickle.join().unwrap();
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
/// closed at `headerTimeout`, even with a long `idleTimeout` (SECURITY 75).
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
/// connection frees its place (SECURITY 75).
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
/// to is refused at start (exit 2, naming it) (SECURITY 78).
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
