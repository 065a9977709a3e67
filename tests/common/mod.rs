//! End-to-end harness: the real `registry-token` binary, Debian's `docker-registry` (Distribution
//! 2.8.2), an Authority (the real `oidc-provider`, or an in-test one that mints anything), DPoP
//! keys, raw HTTP and OCI image layouts for skopeo.
//!
//! Everything binds to 127.0.0.1 on ports picked at run time, waits for readiness by polling with
//! a deadline (never a fixed sleep), and stops on `Drop`, printing the tail of its log when the
//! test is panicking.
//!
//! ```text
//! skopeo / reqwest ──▶ Sidecar (registry-token serve) ──▶ Registry (docker-registry serve)
//!                          │  /token: OpTok + DPoP          verifies the sidecar's tokens
//!                          ▼                                against keygen's ca.crt
//!                       Authority: oidc (panva's oidc-provider on Node: client credentials,
//!                       DPoP- and certificate-bound OpToks), or authority (metadata + JWKS in
//!                       this process, OpToks minted by hand with any claims)
//! ```
//!
//! Beside the stack: `tap` (a recording relay between sidecar and registry), `pki` (test
//! certificates), `process` (one-shot `registry-token` commands with a clean environment),
//! `redis` (a `redis-server` to kill and restart, and misbehaving stand-ins),
//! `dockerd` and `containerd` (daemons of a test's own, for the docker CLI and `ctr`).
#![allow(dead_code, unused_imports)] // each test binary uses a different part of the harness

pub mod authority;
pub mod cache;
pub mod containerd;
pub mod dockerd;
pub mod dpop;
pub mod limits;
pub mod oci;
pub mod oidc;
pub mod pki;
pub mod process;
pub mod redis;
pub mod registry;
pub mod sidecar;
pub mod tap;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub use authority::{Alg, Authority, Mode};
pub use dpop::DpopKey;
pub use oci::{oci_layout, read_oci_layout, sha256_digest, skopeo, skopeo_ok, OciImage};
pub use oidc::{OidcAuthority, OidcClient, ProviderStack};
pub use process::{run, stderr, stdout};
pub use registry::{Registry, TokenAuth};
pub use sidecar::{Keys, Layout, Plan, Sidecar, SidecarConfig, Stack};
pub use tap::Tap;

/// How long a process may take to become ready (the first start after a build is slow).
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Unpadded base64url, the JOSE encoding.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Lower-case hex, as in OCI digests and `Hash=` of `X-Forwarded-Client-Cert`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes unpadded base64url.
pub fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// The decoded claims of a compact JWS, unverified (for asserting on issued tokens).
pub fn jwt_claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).expect("a compact JWS");
    serde_json::from_slice(&unb64(payload)).expect("JSON claims")
}

/// The actions a registry token grants on repository `name`, sorted.
pub fn granted(token: &str, name: &str) -> Vec<String> {
    let mut actions: Vec<String> = jwt_claims(token)["access"]
        .as_array()
        .expect("access list")
        .iter()
        .filter(|a| a["type"] == "repository" && a["name"] == name)
        .flat_map(|a| a["actions"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    actions.sort();
    actions
}

/// The decoded header of a compact JWS.
pub fn jwt_header(jwt: &str) -> serde_json::Value {
    let header = jwt.split('.').next().expect("a compact JWS");
    serde_json::from_slice(&unb64(header)).expect("JSON header")
}

/// Calls `probe` until it returns `Some`, or panics with `what` after `deadline`.
pub fn poll<T>(deadline: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(pause); // back-off between probes, not a wait for an outcome
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// A blocking HTTP client for tests: no proxy from the environment, no redirects, a timeout;
/// it accepts the test certificates of a TLS sidecar on loopback.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

/// The last `lines` lines of a log file (empty when it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` verbatim to `addr` (`127.0.0.1:PORT`) and reads one response, for requests
/// reqwest will not send (lower-case methods, raw `%` paths, duplicate headers). Send
/// `Connection: close` or a `Content-Length`-framed response is expected; a closed connection
/// without any response is status 0.
pub fn raw_http(addr: &str, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).expect("send request");
    let is_head = request.len() >= 5 && request[..5].eq_ignore_ascii_case(b"HEAD ");
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).unwrap_or(0) == 0 {
        return RawResponse {
            status: 0,
            headers: vec![],
            body: vec![],
        };
    }
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header with a colon");
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut response = RawResponse {
        status,
        headers,
        body: vec![],
    };
    if is_head || status == 204 || status == 304 || (100..200).contains(&status) {
        return response;
    }
    if let Some(len) = response.header("content-length") {
        let mut body = vec![0; len.parse().expect("numeric Content-Length")];
        reader.read_exact(&mut body).expect("read body");
        response.body = body;
    } else if response
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).expect("chunk size");
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16)
                .expect("hex chunk size");
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).expect("chunk");
            if size == 0 {
                break;
            }
            response.body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let _ = reader.read_to_end(&mut response.body);
    }
    response
}

/// The value of one Prometheus series in `text`: the sum of every sample named `name` whose
/// labels include all of `labels` (0 when none matches).
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (series_name == name
                && labels.iter().all(|(k, v)| {
                    series_labels
                        .split(',')
                        .any(|l| l == format!("{k}=\"{v}\""))
                }))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}
