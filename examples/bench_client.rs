//! The load client and crypto floor of `scripts/bench` (not part of the sidecar).
//!
//! ```text
//! bench_client token      URL AUTHORITY_PEM ISSUER [--plan NAME] SCOPE...
//!                                                               prints a registry token (DPoP flow)
//! bench_client token-load URL AUTHORITY_PEM ISSUER dpop|bearer CONNS SECS SCOPE
//! bench_client floor      CONFIG AUTHORITY_PEM ISSUER THREADS SECS SCOPE
//! bench_client http-load  ADDR CONNS SECS METHOD PATH EXPECTED_STATUS [TOKEN]
//! bench_client hold       ADDR CONNS PATH EXPECTED_STATUS
//! bench_client pull-load  ADDR CONNS SECS|once TOKEN PATH...
//! ```
//!
//! OpToks are minted here with the dev Authority's key; DPoP proofs (each with its own `jti`,
//! as the replay cache demands) are all signed before the clock starts, so the client only
//! writes bytes while it measures. `token-load` drives keep-alive HTTP/1.1 connections, one
//! thread each, and prints `requests errors seconds p50_ms p99_ms`; `floor` runs the realm's
//! crypto alone (verify OpTok, verify proof, sign) on `THREADS` threads and prints
//! `operations seconds`. `token --plan NAME` puts `NAME` in the OpTok's plan claim instead of
//! `enterprise` (the bench's limited plan). `hold` opens `CONNS` connections, makes one GET of
//! `PATH` on each, prints `held CONNS` once every one is idle and kept alive, and keeps them open
//! until its standard input closes (the bench reads the server's RSS meanwhile). `pull-load`
//! GETs every `PATH` in turn on each connection, as a client pulling an image does (manifest by
//! tag, manifest by digest, config, layers), and prints `pulls errors seconds p50_ms p99_ms`
//! per whole pull; `once`: each connection pulls once, all starting together (a cold pull).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use registry_token::authority::{dpop, optok, MemoryReplayStore, ProofCheck, ReplayLimits};
use registry_token::jose;
use registry_token::registry::{Resource, Scope};
use registry_token::token::IssuedClaims;

#[path = "../benches/support/mod.rs"]
mod support;
use support::{mint_optok, proofs, Clock, Es256, SystemClock};

const SERVICE: &str = "registry.bench";
/// Proofs signed per second of measurement: above any rate expected here; a run that uses them
/// all up ends early (its rate stays right: requests over the time they took). `BENCH_PROOFS`
/// sets the total instead (smoke runs).
const PROOFS_PER_SECOND: usize = 20_000;

fn proof_count(secs: f64) -> usize {
    std::env::var("BENCH_PROOFS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or((secs.ceil() as usize + 1) * PROOFS_PER_SECOND)
}

type Failure = support::Failure;

/// One keep-alive connection: sends `request` and reads one response; returns the status.
struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(addr: &str) -> Result<Connection, Failure> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Connection {
            reader: BufReader::new(stream),
        })
    }

    /// Sends `request`, reads one response; a HEAD response has no body whatever its length.
    fn exchange(&mut self, request: &[u8], body: &mut Vec<u8>) -> Result<u16, Failure> {
        let head = request.starts_with(b"HEAD ");
        self.reader.get_mut().write_all(request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("no status line")?;
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line.trim_end().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse()?;
                }
            }
        }
        body.resize(if head { 0 } else { length }, 0);
        self.reader.read_exact(body)?;
        Ok(status)
    }
}

fn token_request(host: &str, scope: &str, authorization: &str, proof: Option<&str>) -> Vec<u8> {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("service", SERVICE)
        .append_pair("scope", scope)
        .finish();
    let proof = proof.map(|p| format!("DPoP: {p}\r\n")).unwrap_or_default();
    format!("GET /token?{query} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n{proof}\r\n").into_bytes()
}

/// An OpTok as [`mint_optok`] makes it, with `plan` as its plan claim.
fn mint_optok_for_plan(
    authority: &Es256,
    issuer: &str,
    dpop: &Es256,
    plan: &str,
) -> Result<String, Failure> {
    let t = SystemClock.now();
    let claims = json!({"iss": issuer, "sub": "bench", "aud": "registry", "iat": t,
        "exp": t + 3600, "scope": "registry.token.issue", "stellaops:plan": plan,
        "stellaops:license": "LIC-BENCH", "cnf": {"jkt": dpop.thumbprint()?}});
    authority.jws(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "dev-1"}),
        &claims,
    )
}

/// `token URL AUTHORITY_PEM ISSUER [--plan NAME] SCOPE...`: one DPoP token request; prints the
/// registry token.
fn token(args: &[String]) -> Result<(), Failure> {
    let usage = "token URL AUTHORITY_PEM ISSUER [--plan NAME] SCOPE...";
    let [url, pem, issuer, rest @ ..] = args else {
        return Err(usage.into());
    };
    let (plan, scopes) = match rest {
        [flag, plan, scopes @ ..] if flag == "--plan" => (Some(plan.as_str()), scopes),
        [flag, ..] if flag == "--plan" => return Err(usage.into()),
        scopes => (None, scopes),
    };
    let host = url.trim_start_matches("http://");
    let key = Arc::new(Es256::generate()?);
    let authority = Es256::from_pem(pem)?;
    let op = match plan {
        Some(plan) => mint_optok_for_plan(&authority, issuer, &key, plan)?,
        None => mint_optok(&authority, issuer, Some(&key))?,
    };
    let proof = proofs(&key, &format!("{url}/token"), &op, 1)?.remove(0);
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("service", SERVICE);
    for scope in scopes {
        query.append_pair("scope", scope);
    }
    let request = format!(
        "GET /token?{} HTTP/1.1\r\nHost: {host}\r\nAuthorization: DPoP {op}\r\nDPoP: {proof}\r\n\r\n",
        query.finish()
    );
    let mut body = Vec::new();
    let status = Connection::open(host)?.exchange(request.as_bytes(), &mut body)?;
    let answer: Value = serde_json::from_slice(&body)?;
    match answer["token"].as_str() {
        Some(t) if status == 200 => {
            println!("{t}");
            Ok(())
        }
        _ => Err(format!("GET /token answered {status}: {answer}").into()),
    }
}

/// `token-load URL AUTHORITY_PEM ISSUER MODE CONNS SECS SCOPE`.
fn token_load(args: &[String]) -> Result<(), Failure> {
    let [url, pem, issuer, mode, conns, secs, scope] = args else {
        return Err("token-load URL AUTHORITY_PEM ISSUER dpop|bearer CONNS SECS SCOPE".into());
    };
    let (conns, secs): (usize, f64) = (conns.parse()?, secs.parse()?);
    let host = url.trim_start_matches("http://").to_string();
    let authority = Es256::from_pem(pem)?;
    // Every request as bytes, ready before the clock starts.
    let requests: Vec<Vec<u8>> = match mode.as_str() {
        "dpop" => {
            let key = Arc::new(Es256::generate()?);
            let op = mint_optok(&authority, issuer, Some(&key))?;
            let count = proof_count(secs);
            proofs(&key, &format!("{url}/token"), &op, count)?
                .iter()
                .map(|p| token_request(&host, scope, &format!("DPoP {op}"), Some(p)))
                .collect()
        }
        "bearer" => vec![token_request(
            &host,
            scope,
            &format!("Bearer {}", mint_optok(&authority, issuer, None)?),
            None,
        )],
        _ => return Err(format!("unknown mode {mode}").into()),
    };
    let report = drive(&host, requests, conns, secs, 200)?;
    println!("{report}");
    Ok(())
}

/// `answered_as_expected others seconds p50_ms p99_ms` of a run's latencies (µs).
fn summary(mut latencies: Vec<u32>, errors: usize, elapsed: f64) -> String {
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    format!(
        "{} {errors} {elapsed:.3} {:.3} {:.3}",
        latencies.len(),
        pick(0.5),
        pick(0.99)
    )
}

/// Drives `conns` keep-alive connections (a thread each) for `secs`: each request is sent once
/// (a single request is repeated); prints `answered_as_expected others seconds p50_ms p99_ms`.
fn drive(
    host: &str,
    requests: Vec<Vec<u8>>,
    conns: usize,
    secs: f64,
    expect: u16,
) -> Result<String, Failure> {
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Duration::from_secs_f64(secs);
    let started = Instant::now();
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let (requests, next, host) = (requests.clone(), next.clone(), host.to_string());
            std::thread::spawn(move || -> Result<(Vec<u32>, usize), String> {
                let mut connection = Connection::open(&host).map_err(|e| e.to_string())?;
                let (mut latencies, mut errors, mut body) = (Vec::new(), 0, Vec::new());
                while started.elapsed() < deadline {
                    let request = if requests.len() == 1 {
                        &requests[0]
                    } else {
                        match requests.get(next.fetch_add(1, Ordering::Relaxed)) {
                            Some(r) => r,
                            None => break, // proofs used up: the run ends early
                        }
                    };
                    let sent = Instant::now();
                    match connection.exchange(request, &mut body) {
                        Ok(status) if status == expect => {
                            latencies.push(sent.elapsed().as_micros() as u32)
                        }
                        Ok(_) => errors += 1,
                        Err(e) => return Err(e.to_string()),
                    }
                }
                Ok((latencies, errors))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (l, e) = worker.join().unwrap()?;
        latencies.extend(l);
        errors += e;
    }
    Ok(summary(latencies, errors, started.elapsed().as_secs_f64()))
}

/// `http-load ADDR CONNS SECS METHOD PATH EXPECTED_STATUS [TOKEN]`: one request repeated on
/// keep-alive connections (wrk 4.1 cannot read HEAD responses that carry a Content-Length).
fn http_load(args: &[String]) -> Result<(), Failure> {
    let [addr, conns, secs, method, path, expect, rest @ ..] = args else {
        return Err("http-load ADDR CONNS SECS METHOD PATH EXPECTED_STATUS [TOKEN]".into());
    };
    let authorization = rest
        .first()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let accept = "Accept: application/vnd.docker.distribution.manifest.v2+json\r\n";
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}{authorization}\r\n");
    let report = drive(
        addr,
        vec![request.into_bytes()],
        conns.parse()?,
        secs.parse()?,
        expect.parse()?,
    )?;
    println!("{report}");
    Ok(())
}

/// `pull-load ADDR CONNS SECS|once TOKEN PATH...`: whole pulls (every PATH answered 200).
fn pull_load(args: &[String]) -> Result<(), Failure> {
    let [addr, conns, secs, token, paths @ ..] = args else {
        return Err("pull-load ADDR CONNS SECS|once TOKEN PATH...".into());
    };
    let accept = "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json\r\n";
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        paths
            .iter()
            .map(|path| {
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Authorization: Bearer {token}\r\n\r\n")
                    .into_bytes()
            })
            .collect(),
    );
    let conns: usize = conns.parse()?;
    let once = secs == "once";
    let deadline = Duration::from_secs_f64(if once { 3600.0 } else { secs.parse()? });
    let start = Arc::new(std::sync::Barrier::new(conns));
    let started = Instant::now();
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let (requests, addr, start) = (requests.clone(), addr.to_string(), start.clone());
            std::thread::spawn(move || -> Result<(Vec<u32>, usize), String> {
                let mut connection = Connection::open(&addr).map_err(|e| e.to_string())?;
                let (mut latencies, mut errors, mut body) = (Vec::new(), 0, Vec::new());
                start.wait();
                while started.elapsed() < deadline {
                    let began = Instant::now();
                    let mut whole = true;
                    for request in requests.iter() {
                        whole &= connection
                            .exchange(request, &mut body)
                            .map_err(|e| e.to_string())?
                            == 200;
                    }
                    match whole {
                        true => latencies.push(began.elapsed().as_micros() as u32),
                        false => errors += 1,
                    }
                    if once {
                        break;
                    }
                }
                Ok((latencies, errors))
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for worker in workers {
        let (l, e) = worker.join().unwrap()?;
        latencies.extend(l);
        errors += e;
    }
    println!(
        "{}",
        summary(latencies, errors, started.elapsed().as_secs_f64())
    );
    Ok(())
}

/// `hold ADDR CONNS PATH EXPECTED_STATUS`: idle keep-alive connections, each after one request.
fn hold(args: &[String]) -> Result<(), Failure> {
    let [addr, conns, path, expect] = args else {
        return Err("hold ADDR CONNS PATH EXPECTED_STATUS".into());
    };
    let (conns, expect): (usize, u16) = (conns.parse()?, expect.parse()?);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    let mut body = Vec::new();
    let mut held = Vec::with_capacity(conns);
    for n in 0..conns {
        let mut connection = Connection::open(addr)
            .map_err(|e| format!("connection {n}: {e} (raise ulimit -n?)"))?;
        let status = connection.exchange(&request, &mut body)?;
        if status != expect {
            return Err(format!("connection {n}: GET {path} answered {status}").into());
        }
        held.push(connection);
    }
    println!("held {}", held.len());
    std::io::stdout().flush()?;
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    // Still open (not closed by the server) when released.
    let closed = held
        .iter_mut()
        .map(|c| c.reader.get_mut())
        .filter(|s| s.set_nonblocking(true).is_ok() && matches!(s.peek(&mut [0u8; 1]), Ok(0)))
        .count();
    if closed > 0 {
        return Err(format!("{closed} of {conns} connections were closed while held").into());
    }
    Ok(())
}

/// `floor CONFIG AUTHORITY_PEM ISSUER THREADS SECS SCOPE`: the realm's three crypto operations
/// with the library's own functions and the sidecar's configured keys, nothing else.
fn floor(args: &[String]) -> Result<(), Failure> {
    let [config, pem, issuer, threads, secs, scope] = args else {
        return Err("floor CONFIG AUTHORITY_PEM ISSUER THREADS SECS SCOPE".into());
    };
    let (threads, secs): (usize, f64) = (threads.parse()?, secs.parse()?);
    let settings =
        Arc::new(registry_token::config::load(config.as_ref()).map_err(|e| e.to_string())?);
    let authority = Es256::from_pem(pem)?;
    let Value::Object(jwk) = authority.jwk()? else {
        unreachable!()
    };
    let authority_key = Arc::new(jose::PublicKey::from_jwk(&jwk).map_err(|e| e.to_string())?);
    let key = Arc::new(Es256::generate()?);
    let op = Arc::new(mint_optok(&authority, issuer, Some(&key))?);
    let jkt = key.thumbprint()?;
    let count = proof_count(secs);
    let all = Arc::new(proofs(&key, &settings.realm, &op, count)?);
    let replay = Arc::new(MemoryReplayStore::new());
    let limits = ReplayLimits {
        capacity: all.len() + 1,
        per_key: all.len() + 1,
    };
    let next = Arc::new(AtomicUsize::new(0));
    let (name, actions) = {
        let mut parts = scope.rsplitn(2, ':');
        let actions = parts.next().unwrap_or("pull");
        (
            parts
                .next()
                .unwrap_or("")
                .trim_start_matches("repository:")
                .to_string(),
            actions.to_string(),
        )
    };
    let deadline = Duration::from_secs_f64(secs);
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (settings, authority_key, op, all, replay, next, jkt, name, actions) = (
                settings.clone(),
                authority_key.clone(),
                op.clone(),
                all.clone(),
                replay.clone(),
                next.clone(),
                jkt.clone(),
                name.clone(),
                actions.clone(),
            );
            std::thread::spawn(move || {
                let mut done = 0usize;
                while started.elapsed() < deadline {
                    let Some(proof) = all.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let t = SystemClock.now();
                    // 1. the OpTok: header checks and signature
                    let parsed = optok::parse(&op).expect("OpTok parses");
                    authority_key
                        .verify(parsed.alg, parsed.jws.signing_input, parsed.jws.signature)
                        .expect("OpTok verifies");
                    // 2. the DPoP proof, with its replay check
                    let check = ProofCheck {
                        method: "GET",
                        htu: &settings.realm,
                        access_token: Some(&op),
                        now: t,
                        lifetime: settings.authority.proof_lifetime,
                        skew: settings.authority.clock_skew,
                        expected_jkt: Some(jkt.clone()),
                        nonce: None,
                    };
                    let outcome = dpop::verify_proof(proof, &check).expect("proof verifies");
                    replay
                        .spend_now(&outcome.to_use(), limits, t)
                        .expect("proof spent once");
                    // 3. the registry token
                    let claims = IssuedClaims {
                        iss: settings.signing_issuer.clone(),
                        sub: "bench".into(),
                        aud: settings.service.clone(),
                        exp: t + 300,
                        nbf: t,
                        iat: t,
                        jti: format!("{t}-{done}"),
                        access: vec![Scope::new(
                            Resource::repository(name.clone()),
                            actions.split(','),
                        )],
                        extra: Map::new(),
                    };
                    std::hint::black_box(settings.keys.sign(&claims).expect("sign"));
                    done += 1;
                }
                done
            })
        })
        .collect();
    let done: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    println!("{done} {:.3}", started.elapsed().as_secs_f64());
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("token") => token(&args[1..]),
        Some("token-load") => token_load(&args[1..]),
        Some("floor") => floor(&args[1..]),
        Some("http-load") => http_load(&args[1..]),
        Some("hold") => hold(&args[1..]),
        Some("pull-load") => pull_load(&args[1..]),
        _ => Err(
            "usage: bench_client token|token-load|http-load|hold|pull-load|floor ... (see the source)".into(),
        ),
    };
    if let Err(e) = result {
        eprintln!("bench_client: {e}");
        std::process::exit(1);
    }
}
