//! The adversarial cases of SECURITY.md at the HTTP level: the real `registry-token` binary in
//! front of a real `docker-registry` (Distribution 2.8.2) that runs **no auth of its own**, so
//! the sidecar alone stands between an attacker and the registry, and an in-test Authority.
//!
//! ```text
//! raw_http / reqwest ──▶ Sidecar ──▶ Tap ──▶ Registry (no auth)
//!                          │          └ keeps every byte sent upstream
//!                          ▼
//!                       Authority (+ an attacker's server in case 27)
//! ```
//!
//! "Never forwarded" is shown by the [`Tap`], a TCP relay that records the request heads the
//! sidecar sends upstream *before* they reach the registry, so a refusal the client has read
//! cannot race with the record. The registry's own access log is checked too, behind a barrier
//! request (its log line is written only after its response, and only for routed requests).
//!
//! Each assertion names its SECURITY.md case number. Cases 64/65 live in tests/reload.rs and the
//! registry's verification of issued tokens in tests/registry_accepts_tokens.rs.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::authority::{jws, Alg};
use common::sidecar::{BIN, SERVICE, TOKEN_ISSUER};
use common::*;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{hash, MessageDigest};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Builder, X509NameBuilder};
use serde_json::{json, Value};

/// The sidecar's JWKS refresh cooldown: unknown `kid`s may cause one fetch per this period.
const JWKS_COOLDOWN: Duration = Duration::from_secs(30);

/// Unknown-kid OpToks sent in case 28 (SECURITY says 1 000; 200 keep the suite quick).
const UNKNOWN_KIDS: usize = 200;

// ---------------------------------------------------------------------------------------------
// The test bed
// ---------------------------------------------------------------------------------------------

/// What the sidecar wrote on one upstream connection.
type Record = Arc<Mutex<Vec<u8>>>;

/// A TCP relay in front of the registry that keeps a copy of every byte sent to it.
struct Tap {
    addr: SocketAddr,
    /// One buffer per upstream connection: what the sidecar wrote on it.
    sent: Arc<Mutex<Vec<Record>>>,
    stop: Arc<AtomicBool>,
}

impl Tap {
    fn start(upstream: &str) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the tap");
        let addr = listener.local_addr().unwrap();
        let sent: Arc<Mutex<Vec<Record>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (upstream, accepted, stopped) = (upstream.to_string(), sent.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let (Ok(client), Ok(server)) = (client, TcpStream::connect(&upstream)) else {
                    continue;
                };
                let record = Arc::new(Mutex::new(Vec::new()));
                accepted.lock().unwrap().push(record.clone());
                let (mut down_from, mut down_to) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut down_from, &mut down_to);
                    let _ = down_to.shutdown(Shutdown::Write);
                });
                std::thread::spawn(move || relay_up(client, server, &record));
            }
        });
        Tap { addr, sent, stop }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The head (request line and header lines) of every request sent upstream so far.
    fn heads(&self) -> Vec<String> {
        let mut heads = Vec::new();
        for record in self.sent.lock().unwrap().iter() {
            let text = String::from_utf8_lossy(&record.lock().unwrap()).into_owned();
            let mut from = 0;
            while let Some(at) = text[from..].find(" HTTP/1.1\r\n").map(|i| i + from) {
                let start = text[..at].rfind("\r\n").map_or(0, |i| i + 2);
                let end = text[at..].find("\r\n\r\n").map_or(text.len(), |i| i + at);
                heads.push(text[start..end].to_string());
                from = end;
            }
        }
        heads
    }

    /// The heads of upstream requests whose request line contains `fragment`.
    fn heads_for(&self, fragment: &str) -> Vec<String> {
        self.heads()
            .into_iter()
            .filter(|h| h.lines().next().is_some_and(|l| l.contains(fragment)))
            .collect()
    }
}

/// Copies client → server, recording each chunk before it is sent on.
fn relay_up(mut client: TcpStream, mut server: TcpStream, record: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 16384];
    while let Ok(n @ 1..) = client.read(&mut buf) {
        record.lock().unwrap().extend_from_slice(&buf[..n]);
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
    }
}

/// Authority + keygen + a registry WITHOUT auth + the tap + the sidecar. Fields drop in order.
struct Bed {
    sidecar: Sidecar,
    tap: Tap,
    registry: Registry,
    _keys: Keys,
    authority: Authority,
}

impl Bed {
    /// Default test config (SidecarConfig::new) plus the plans `readonly` (`acme/*` pull) and
    /// `nothing` (no repositories at all).
    fn start() -> Bed {
        let authority = Authority::start();
        let keys = Keys::generate();
        let registry = Registry::start(None);
        let tap = Tap::start(&registry.addr());
        let mut config = SidecarConfig::new(&tap.url(), &authority.issuer(), keys.path());
        config
            .plans
            .push(Plan::new("readonly", &[("acme/*", &["pull"])]));
        config.plans.push(Plan::new("nothing", &[]));
        let sidecar = Sidecar::start(config);
        Bed {
            sidecar,
            tap,
            registry,
            _keys: keys,
            authority,
        }
    }

    /// A DPoP key and an OpTok bound to it.
    fn caller(&self, plan: &str) -> (DpopKey, String) {
        let key = DpopKey::new();
        let optok = self
            .authority
            .optok("alice", plan, "LIC-1", Some(&key.thumbprint()));
        (key, optok)
    }

    /// Sends `request` raw to the sidecar; asserts its status is one of `expected` and that
    /// nothing went upstream meanwhile.
    fn refused_locally(&self, case: &str, request: &[u8], expected: &[u16]) -> RawResponse {
        let before = self.tap.heads().len();
        let response = raw_http(&self.sidecar.addr(), request);
        assert!(
            expected.contains(&response.status),
            "SECURITY {case}: expected one of {expected:?}, got {} {}",
            response.status,
            response.text()
        );
        let after = self.tap.heads();
        assert_eq!(
            after.len(),
            before,
            "SECURITY {case}: forwarded to the registry: {:?}",
            &after[before..]
        );
        response
    }

    /// Waits until the registry has logged a request sent after everything before it.
    fn registry_barrier(&self) {
        let marker = format!("barrier{}", rand::random::<u32>());
        let url = format!("{}/v2/{marker}/app/tags/list", self.registry.url());
        client().get(url).send().expect("barrier request");
        poll(
            Duration::from_secs(10),
            "the registry to log the barrier",
            || (self.registry.requests_for(&marker) > 0).then_some(()),
        );
    }
}

/// A raw HTTP/1.1 request with `Connection: close`.
fn raw(method: &str, path: &[u8], headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} ").into_bytes();
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: sidecar.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !body.is_empty() {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A `/token` answer.
struct Reply {
    status: u16,
    www_authenticate: String,
    body: Value,
}

impl Reply {
    /// The `error="..."` of the challenge, if any.
    fn error(&self) -> Option<&str> {
        let (_, rest) = self.www_authenticate.split_once("error=\"")?;
        rest.split('"').next()
    }

    /// The issued token.
    fn token(&self) -> &str {
        self.body["token"].as_str().expect("a token in the answer")
    }

    /// The issued token's `access` list as `(name, actions)`.
    fn access(&self) -> Vec<(String, Vec<String>)> {
        jwt_claims(self.token())["access"]
            .as_array()
            .expect("access is a list")
            .iter()
            .map(|a| {
                let actions = a["actions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string());
                (a["name"].as_str().unwrap().to_string(), actions.collect())
            })
            .collect()
    }

    /// Asserts the status, naming the SECURITY case.
    fn expect(&self, status: u16, case: &str) {
        assert_eq!(self.status, status, "SECURITY {case}: {}", self.describe());
    }

    fn describe(&self) -> String {
        format!("{} [{}] {}", self.status, self.www_authenticate, self.body)
    }
}

/// `GET /token?QUERY` with the given `Authorization` and `DPoP` header fields, each repeated as given.
fn realm(
    sidecar: &Sidecar,
    query: &[(&str, &str)],
    authorization: &[String],
    dpop: &[String],
) -> Reply {
    let mut request = client().get(sidecar.realm()).query(query);
    for value in authorization {
        request = request.header("Authorization", value);
    }
    for value in dpop {
        request = request.header("DPoP", value);
    }
    let response = request.send().expect("GET /token");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (status, www_authenticate) = (
        response.status().as_u16(),
        header("www-authenticate").unwrap_or_default(),
    );
    let body = response.json().unwrap_or(Value::Null);
    Reply {
        status,
        www_authenticate,
        body,
    }
}

/// `service=registry.test` and one `scope=` per entry.
fn query<'a>(scopes: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    let mut query = vec![("service", SERVICE)];
    query.extend(scopes.iter().map(|s| ("scope", *s)));
    query
}

/// `GET /token` with `Authorization: DPoP <optok>` and a fresh proof signed by `key`.
fn dpop_realm(sidecar: &Sidecar, query: &[(&str, &str)], optok: &str, key: &DpopKey) -> Reply {
    let proof = key.proof("GET", &sidecar.realm(), optok);
    realm(sidecar, query, &[format!("DPoP {optok}")], &[proof])
}

/// An unsigned `alg: none` JWS.
fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.{}.", b64(header.to_string()), b64(claims.to_string()))
}

/// A self-signed certificate for `key`, base64 DER as `x5c` carries it.
fn self_signed(key: &PKey<Private>) -> String {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "attacker").unwrap();
    let name = name.build();
    let mut cert = X509Builder::new().unwrap();
    cert.set_version(2).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    cert.sign(key, MessageDigest::sha256()).unwrap();
    STANDARD.encode(cert.build().to_der().unwrap())
}

/// Verifies an ES256 JWS against the EC key of the same `kid` in `jwks`.
fn verifies_es256(jwt: &str, jwks: &Value) -> bool {
    let header = jwt_header(jwt);
    let Some(jwk) = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
    else {
        return false;
    };
    let coordinate = |name: &str| BigNum::from_slice(&unb64(jwk[name].as_str().unwrap())).unwrap();
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let public =
        EcKey::from_public_key_affine_coordinates(&group, &coordinate("x"), &coordinate("y"))
            .unwrap();
    let (input, signature) = jwt.rsplit_once('.').unwrap();
    let signature = unb64(signature);
    if header["alg"] != "ES256" || signature.len() != 64 {
        return false;
    }
    let (r, s) = signature.split_at(32);
    let sig = EcdsaSig::from_private_components(
        BigNum::from_slice(r).unwrap(),
        BigNum::from_slice(s).unwrap(),
    )
    .unwrap();
    let digest = hash(MessageDigest::sha256(), input.as_bytes()).unwrap();
    sig.verify(&digest, &public).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Surface A: the token realm refuses forged, malformed and unbound credentials
// ---------------------------------------------------------------------------------------------

/// The token realm refuses, with 401 and the RFC 6750/9449 error its case names, every broken
/// DPoP proof (cases 1, 2, 3, 9, 14, 18, 19, 20) and every forged or misdirected OpTok (25,
/// 27, 29, 30, 31, 33); an attacker's `jku`/`x5u`/`jwk`/`x5c` is never fetched or trusted
/// (27), and a flood of unknown `kid`s causes at most one JWKS fetch per cooldown (28).
#[test]
fn realm_refuses_forged_malformed_and_unbound_credentials() {
    let bed = Bed::start();
    let (sidecar, authority) = (&bed.sidecar, &bed.authority);
    // Case 28 counts every JWKS fetch an unknown kid causes in this test, from here on.
    let (fetches, started) = (authority.jwks_fetches(), Instant::now());
    let realm_url = sidecar.realm();
    let scope = query(&["repository:acme/app:pull"]);
    let (key, optok) = bed.caller("enterprise");
    let good = dpop_realm(sidecar, &scope, &optok, &key);
    assert_eq!(
        good.status,
        200,
        "baseline: a well-formed request is granted: {}",
        good.describe()
    );

    // 1: no credentials at all.
    let none = realm(sidecar, &scope, &[], &[]);
    none.expect(401, "1");
    // RFC 9449 section 7.1: `algs` lists the proof algorithms accepted; ES256 must be among
    // them, and nothing symmetric or `none`.
    let algs: Vec<&str> = none
        .www_authenticate
        .split_once(r#"algs=""#)
        .and_then(|(_, rest)| rest.split('"').next())
        .unwrap_or_default()
        .split(' ')
        .collect();
    assert!(
        none.www_authenticate.starts_with("DPoP ")
            && algs.contains(&"ES256")
            && algs
                .iter()
                .all(|a| !a.starts_with("HS") && !a.eq_ignore_ascii_case("none")),
        "SECURITY 1: challenge offers DPoP with algs including ES256, all asymmetric: {}",
        none.describe()
    );
    assert_eq!(
        none.error(),
        None,
        "SECURITY 1: the challenge carries no error: {}",
        none.describe()
    );

    // 2, 3, 9: the proof itself is broken; the OpTok is valid and bound to `key`.
    let auth = [format!("DPoP {optok}")];
    let proof = || key.proof("GET", &realm_url, &optok);
    let valid = proof();
    let (head, sig) = valid.rsplit_once('.').unwrap();
    let mut oversize = key.claims("GET", &realm_url, Some(&optok));
    oversize["pad"] = json!("p".repeat(9 * 1024));
    let htm_post = key.claims("POST", &realm_url, Some(&optok));
    let htm_lower = key.claims("get", &realm_url, Some(&optok));
    let proof_rows: Vec<(&str, Vec<String>, &[u16])> = vec![
        ("2 two DPoP fields", vec![proof(), proof()], &[401]),
        (
            "2 one field `a.b.c, d.e.f`",
            vec![format!("{}, {}", proof(), proof())],
            &[401],
        ),
        ("3 two segments", vec![head.to_string()], &[401]),
        ("3 four segments", vec![format!("{}.AAAA", proof())], &[401]),
        ("3 `=` padding", vec![format!("{}==", proof())], &[401]),
        (
            "3 non-base64url character",
            vec![format!("{head}.+{}", &sig[1..])],
            &[401],
        ),
        (
            "3 larger than 8 KiB",
            vec![key.sign(&key.header(), &oversize)],
            &[401, 431],
        ),
        (
            "9 htm POST on a GET",
            vec![key.sign(&key.header(), &htm_post)],
            &[401],
        ),
        (
            "9 htm `get` on a GET",
            vec![key.sign(&key.header(), &htm_lower)],
            &[401],
        ),
    ];
    for (case, dpop, statuses) in proof_rows {
        let reply = realm(sidecar, &scope, &auth, &dpop);
        assert!(
            statuses.contains(&reply.status),
            "SECURITY {case}: expected {statuses:?}, got {}",
            reply.describe()
        );
        if reply.status == 401 {
            assert_eq!(
                reply.error(),
                Some("invalid_dpop_proof"),
                "SECURITY {case}: {}",
                reply.describe()
            );
        }
    }

    // 14: the same proof twice.
    let once = proof();
    let first = realm(sidecar, &scope, &auth, std::slice::from_ref(&once));
    first.expect(200, "14: first use of a proof");
    let replay = realm(sidecar, &scope, &auth, &[once]);
    replay.expect(401, "14: replayed proof");
    assert_eq!(
        replay.error(),
        Some("invalid_dpop_proof"),
        "SECURITY 14: {}",
        replay.describe()
    );

    // 18: proof by K2 for an OpTok bound to K1.
    let k2 = DpopKey::new();
    let wrong_key = realm(
        sidecar,
        &scope,
        &auth,
        &[k2.proof("GET", &realm_url, &optok)],
    );
    wrong_key.expect(401, "18");
    assert_eq!(
        wrong_key.error(),
        Some("invalid_token"),
        "SECURITY 18: {}",
        wrong_key.describe()
    );

    // 19: the DPoP-bound OpTok downgraded to Bearer, no proof.
    let bearer = realm(sidecar, &scope, &[format!("Bearer {optok}")], &[]);
    bearer.expect(401, "19");
    assert_eq!(
        bearer.error(),
        Some("invalid_token"),
        "SECURITY 19: {}",
        bearer.describe()
    );

    // 20: two schemes at once; the OpTok in the query.
    let both = realm(
        sidecar,
        &scope,
        &[format!("Bearer {optok}"), format!("DPoP {optok}")],
        &[proof()],
    );
    both.expect(400, "20: Bearer and DPoP together");
    assert_eq!(
        both.body["error"],
        "invalid_request",
        "SECURITY 20: {}",
        both.describe()
    );
    let mut in_query = scope.clone();
    in_query.push(("access_token", optok.as_str()));
    let query_token = realm(sidecar, &in_query, &[], &[proof()]);
    assert!(
        [400, 401].contains(&query_token.status),
        "SECURITY 20: OpTok in ?access_token= is never accepted: {}",
        query_token.describe()
    );

    // 25, 27, 29, 30, 31, 33: forged or misdirected OpToks, each with a valid proof bound to it.
    let jkt = key.thumbprint();
    let claims = || authority.optok_claims("alice", "enterprise", "LIC-1", Some(&jkt));
    let with = |name: &str, value: Value| {
        let mut c = claims();
        c[name] = value;
        authority.mint(c)
    };
    let without = |name: &str| {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(name);
        authority.mint(c)
    };
    let attacker = Authority::start();
    let attacker_token = |extra: Value| {
        let mut header = json!({"alg": "RS256", "typ": "JWT", "kid": "k1"});
        header
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        attacker.mint_with_header(header, claims())
    };
    let attacker_jwk = attacker.with_key("k1", |k| k.jwk());
    let attacker_cert = attacker.with_key("k1", |k| self_signed(&k.key));
    let id_token = authority.mint(json!({
        "iss": authority.issuer(), "sub": "alice", "aud": "e2e-client", "exp": now() + 600,
        "iat": now(), "nonce": "n-0S6_WzA2Mj", "auth_time": now(), "cnf": {"jkt": jkt},
    }));
    let none_header = json!({"alg": "none", "typ": "JWT", "kid": "k1"});
    let x5u = format!("{}/cert.pem", attacker.issuer());
    let x5t = b64([7u8; 32]);
    // RFC 6750: every one of them is an `invalid_token`.
    let optok_rows: Vec<(&str, String)> = vec![
        ("25 alg none", unsigned(&none_header, &claims())),
        (
            "27 jku",
            attacker_token(json!({"jku": attacker.jwks_uri()})),
        ),
        ("27 x5u", attacker_token(json!({"x5u": x5u}))),
        (
            "27 embedded jwk",
            attacker_token(json!({"jwk": attacker_jwk})),
        ),
        (
            "27 embedded x5c",
            attacker_token(json!({"x5c": [attacker_cert]})),
        ),
        ("29 no exp", without("exp")),
        ("29 exp string", with("exp", json!("9999999999"))),
        ("29 nbf string", with("nbf", json!("99999999999"))),
        ("29 exp past leeway", with("exp", json!(now() - 3600))),
        ("29 iat far future", with("iat", json!(now() + 86400 * 365))),
        ("30 no aud", without("aud")),
        ("30 aud other API", with("aud", json!("other-api"))),
        (
            "30 iss + `/`",
            with("iss", json!(format!("{}/", authority.issuer()))),
        ),
        ("31 DPoP proof", key.proof("GET", &realm_url, "x")),
        ("31 registry token", good.token().to_string()),
        ("31 ID token", id_token),
        (
            "33 jkt and x5t#S256",
            with("cnf", json!({"jkt": jkt, "x5t#S256": x5t})),
        ),
        (
            "33 unknown cnf member",
            with("cnf", json!({"jkt": jkt, "kid": "k"})),
        ),
        ("33 no cnf", without("cnf")),
        ("33 empty cnf", with("cnf", json!({}))),
    ];
    for (case, token) in &optok_rows {
        let reply = dpop_realm(sidecar, &scope, token, &key);
        reply.expect(401, case);
        let error = reply.error();
        assert_eq!(
            error,
            Some("invalid_token"),
            "SECURITY {case}: {}",
            reply.describe()
        );
    }
    let contacted =
        attacker.metadata_fetches() + attacker.jwks_fetches() + attacker.other_requests();
    assert_eq!(
        contacted, 0,
        "SECURITY 27: the attacker's server was contacted {contacted} times"
    );

    // 28: unknown, huge and path-like kids, then a flood of unknown kids.
    let signed_with_kid = |kid: &str| {
        authority.with_key("k1", |k| {
            jws(
                Alg::RS256,
                &k.key,
                &json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
                &claims(),
            )
        })
    };
    let kid_rows: [(&str, String, &[u16]); 3] = [
        ("28 unknown kid", "no-such-kid".to_string(), &[401]),
        ("28 10 KB kid", "k".repeat(10 * 1024), &[401, 431]),
        (
            "28 kid ../../etc/passwd",
            "../../etc/passwd".to_string(),
            &[401],
        ),
    ];
    for (case, kid, statuses) in kid_rows {
        let reply = dpop_realm(sidecar, &scope, &signed_with_kid(&kid), &key);
        assert!(
            statuses.contains(&reply.status),
            "SECURITY {case}: expected {statuses:?}, got {}",
            reply.describe()
        );
    }
    for i in 0..UNKNOWN_KIDS {
        let reply = dpop_realm(
            sidecar,
            &scope,
            &signed_with_kid(&format!("unknown-{i}")),
            &key,
        );
        reply.expect(401, &format!("28: unknown kid #{i}"));
    }
    let allowed = 1 + (started.elapsed().as_secs() / JWKS_COOLDOWN.as_secs()) as usize;
    let made = authority.jwks_fetches() - fetches;
    assert!(
        made <= allowed,
        "SECURITY 28: {UNKNOWN_KIDS} and more unknown kids caused {made} JWKS fetches (at most {allowed} in {:?})",
        started.elapsed()
    );
    sidecar.assert_log_free_of(&[&optok]);
}

// ---------------------------------------------------------------------------------------------
// Surface A: what a granted token holds
// ---------------------------------------------------------------------------------------------

/// The realm grants requested ∩ entitled and nothing more: an unentitled scope alone is 403
/// `plan_denied` and beside an entitled one is dropped (39); extra actions are cut to the plan's
/// (40); the catalog is not granted (41); malformed scopes are refused, never widened (42); a
/// `host:port/` prefix is part of the name (43); an empty plan grants nothing (66). A granted
/// token has the documented claims and verifies against `/.well-known/jwks.json` (44), and no
/// refresh token is handed out (45).
#[test]
fn realm_grants_only_what_the_plan_allows() {
    let bed = Bed::start();
    let sidecar = &bed.sidecar;
    let (key, optok) = bed.caller("enterprise");
    let ask = |scopes: &[&str]| dpop_realm(sidecar, &query(scopes), &optok, &key);

    // 39
    let victim = ask(&["repository:victim/private:pull"]);
    victim.expect(403, "39: unentitled scope alone");
    assert_eq!(
        victim.body["reason"],
        "plan_denied",
        "SECURITY 39: {}",
        victim.describe()
    );
    let mixed = ask(&["repository:victim/private:pull", "repository:acme/app:pull"]);
    mixed.expect(200, "39: with an entitled scope");
    assert_eq!(
        mixed.access(),
        [("acme/app".to_string(), vec!["pull".to_string()])],
        "SECURITY 39: only the entitled scope"
    );

    // 40
    let (ro_key, ro_optok) = bed.caller("readonly");
    let greedy = dpop_realm(
        sidecar,
        &query(&["repository:acme/app:pull,push,delete,*"]),
        &ro_optok,
        &ro_key,
    );
    greedy.expect(200, "40");
    assert_eq!(
        greedy.access(),
        [("acme/app".to_string(), vec!["pull".to_string()])],
        "SECURITY 40: actions exactly [pull]"
    );

    // 41
    let catalog = ask(&["registry:catalog:*"]);
    catalog.expect(403, "41: registry:catalog:* is not granted");
    assert_eq!(
        catalog.body["reason"],
        "plan_denied",
        "SECURITY 41: {}",
        catalog.describe()
    );

    // 42
    let long = format!("repository:acme/{}:pull", "a".repeat(295));
    let malformed = [
        "repository:acme/app",
        "repository:ACME/app:pull",
        "repository:acme/../x:pull",
        "repository:acme%2Fapp:pull",
        "repository:acme//app:pull",
        "repository:acme:app:x:pull",
        &long,
    ];
    for scope in malformed {
        let reply = ask(&[scope]);
        let widened = reply.status == 200 && !reply.access().is_empty();
        assert!(
            reply.status == 400 || reply.status == 403 || (reply.status == 200 && !widened),
            "SECURITY 42: {scope:.60} must be refused or dropped, got {}",
            reply.describe()
        );
    }

    // 43
    let prefixed = ask(&["repository:localhost:5000/acme/app:pull"]);
    prefixed.expect(403, "43: host:port/acme/app is not acme/app");
    let beside = ask(&[
        "repository:localhost:5000/acme/app:pull",
        "repository:acme/app:push",
    ]);
    beside.expect(200, "43");
    assert_eq!(
        beside.access(),
        [("acme/app".to_string(), vec!["push".to_string()])],
        "SECURITY 43: only acme/app"
    );

    // 44
    let other = dpop_realm(
        sidecar,
        &[
            ("service", "other-registry"),
            ("scope", "repository:acme/app:pull"),
        ],
        &optok,
        &key,
    );
    other.expect(400, "44: service=other-registry");
    let jwks: Value = client()
        .get(format!("{}/.well-known/jwks.json", sidecar.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut jtis = Vec::new();
    for _ in 0..2 {
        let reply = ask(&["repository:acme/app:pull"]);
        reply.expect(200, "44");
        let claims = jwt_claims(reply.token());
        let number = |name: &str| {
            claims[name]
                .as_i64()
                .unwrap_or_else(|| panic!("SECURITY 44: numeric {name}: {claims}"))
        };
        assert_eq!(
            claims["aud"],
            json!(SERVICE),
            "SECURITY 44: aud is the service, as a JSON string"
        );
        assert_eq!(
            claims["iss"],
            json!(TOKEN_ISSUER),
            "SECURITY 44: iss is signing.issuer"
        );
        assert_eq!(
            number("exp") - number("iat"),
            300,
            "SECURITY 44: exp - iat is the configured lifetime (5m)"
        );
        assert_eq!(
            reply.body["expires_in"], 300,
            "SECURITY 44: expires_in is the lifetime, at least 60"
        );
        assert!(number("nbf") <= now(), "SECURITY 44: nbf <= now: {claims}");
        assert!(
            verifies_es256(reply.token(), &jwks),
            "SECURITY 44: the token verifies against jwks.json"
        );
        jtis.push(
            claims["jti"]
                .as_str()
                .expect("SECURITY 44: a jti")
                .to_string(),
        );
    }
    assert_ne!(jtis[0], jtis[1], "SECURITY 44: every token has its own jti");

    // 45
    let offline = dpop_realm(
        sidecar,
        &[
            ("service", SERVICE),
            ("scope", "repository:acme/app:pull"),
            ("offline_token", "true"),
        ],
        &optok,
        &key,
    );
    offline.expect(200, "45");
    assert!(
        offline.body.get("refresh_token").is_none(),
        "SECURITY 45: no refresh_token: {}",
        offline.body
    );

    // 66
    let (empty_key, empty_optok) = bed.caller("nothing");
    for scope in [
        "repository:acme/app:pull",
        "repository:public/app:pull",
        "registry:catalog:*",
    ] {
        let reply = dpop_realm(sidecar, &query(&[scope]), &empty_optok, &empty_key);
        reply.expect(403, &format!("66: an empty plan grants nothing ({scope})"));
    }
    let login = dpop_realm(sidecar, &query(&[]), &empty_optok, &empty_key);
    login.expect(200, "66: no scope");
    assert!(
        login.access().is_empty(),
        "SECURITY 66: empty access, no allow-all"
    );
}

// ---------------------------------------------------------------------------------------------
// Surface B: the /v2/ proxy
// ---------------------------------------------------------------------------------------------

/// The proxy lets through only what the token covers and only registry routes: tokens for one
/// repository do not reach another (39, 53) or the catalog (41); path tricks (46, 47, 48), foreign
/// methods (52), cross-repository mounts (49), deletes with a push token (51) and two
/// `Authorization` fields (54) are answered by the sidecar and never reach the registry. What
/// is forwarded carries exactly one `Authorization` (54), `Location` points at the configured
/// host whatever `X-Forwarded-Host` says (55), a mount without `from` opens a plain upload (50),
/// and repositories stay isolated in the registry (57).
#[test]
fn proxy_forwards_only_what_the_token_covers() {
    let bed = Bed::start();
    let (sidecar, registry) = (&bed.sidecar, &bed.registry);
    let (key, optok) = bed.caller("enterprise");
    let token = sidecar.token(
        &[
            "repository:acme/app:pull,push",
            "repository:acme/case54:pull",
            "repository:acme/case55:pull,push",
        ],
        &optok,
        &key,
    );
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];

    // A blob that exists only in victim/private, written to the registry directly.
    let secret = format!("victim secret {}", rand::random::<u64>());
    let digest = format!(
        "sha256:{}",
        hash(MessageDigest::sha256(), secret.as_bytes())
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let http = client();
    let upload = http
        .post(format!(
            "{}/v2/victim/private/blobs/uploads/",
            registry.url()
        ))
        .send()
        .unwrap();
    assert_eq!(upload.status(), 202, "seeding victim/private");
    let location = upload.headers()["location"].to_str().unwrap().to_string();
    let put = http
        .put(format!("{location}&digest={digest}"))
        .body(secret)
        .send()
        .unwrap();
    assert_eq!(put.status(), 201, "seeding victim/private");

    // Baseline: the token works and its requests are forwarded.
    let tags = sidecar.v2("/v2/acme/app/tags/list", Some(&token));
    assert_eq!(
        tags.status(),
        404,
        "baseline: the registry answered NAME_UNKNOWN for acme/app"
    );
    assert_eq!(
        bed.tap.heads_for("/v2/acme/app/tags/list").len(),
        1,
        "baseline: the tap saw it"
    );

    let challenge = |r: &RawResponse| r.header("www-authenticate").unwrap_or_default().to_string();
    // 39, 41, 53: a token for E on V, and on the catalog.
    let scope_rows: [(&str, &str, &str); 4] = [
        ("39 GET on V", "GET", "/v2/victim/private/manifests/latest"),
        (
            "53 HEAD on V",
            "HEAD",
            "/v2/victim/private/manifests/latest",
        ),
        ("53 tags/list on V", "GET", "/v2/victim/private/tags/list"),
        (
            "41 catalog without registry:catalog:*",
            "GET",
            "/v2/_catalog",
        ),
    ];
    for (case, method, path) in scope_rows {
        let response = bed.refused_locally(case, &raw(method, path.as_bytes(), &auth, b""), &[401]);
        assert!(
            challenge(&response).contains(r#"error="insufficient_scope""#),
            "SECURITY {case}: 401 insufficient_scope, got {:?}",
            response.headers
        );
    }

    let huge = raw("GET", b"/v2/_catalog?n=100000000", &auth, b"");
    bed.refused_locally("41 catalog with n=100000000", &huge, &[400, 401, 403]);

    // 46, 47, 48: paths that are not a plain registry route.
    let path_rows: [(&str, &[u8]); 12] = [
        (
            "46 dot-dot",
            b"/v2/acme/app/../../victim/private/manifests/latest",
        ),
        ("47 %2F in the name", b"/v2/acme%2Fapp/manifests/latest"),
        (
            "47 %2F.. after the name",
            b"/v2/acme/app%2F..%2Fvictim/private/manifests/latest",
        ),
        (
            "47 %2e%2e segments",
            b"/v2/acme/app/%2e%2e/%2e%2e/victim/private/manifests/latest",
        ),
        (
            "47 double-encoded %252F",
            b"/v2/acme%252Fapp/manifests/latest",
        ),
        ("48 upper case", b"/v2/Acme/app/manifests/latest"),
        ("48 empty segment", b"/v2/acme//app/manifests/latest"),
        (
            "48 backslash",
            b"/v2/acme/app\\..\\..\\victim/private/manifests/latest",
        ),
        (
            "48 backslash in the name",
            b"/v2/acme\\app/manifests/latest",
        ),
        ("48 %00 in the name", b"/v2/acme/ap%00p/manifests/latest"),
        (
            "48 non-ASCII name",
            "/v2/acme/\u{e4}pp/manifests/latest".as_bytes(),
        ),
        ("48 dot segment", b"/v2/acme/./app/manifests/latest"),
    ];
    for (case, path) in path_rows {
        bed.refused_locally(case, &raw("GET", path, &auth, b""), &[400]);
    }

    // 52: methods Distribution does not serve, and a lower-case GET.
    for method in ["OPTIONS", "TRACE", "PROPFIND", "get"] {
        let case = format!("52 {method}");
        bed.refused_locally(
            &case,
            &raw(method, b"/v2/acme/app/manifests/latest", &auth, b""),
            &[405],
        );
    }

    // 49: cross-repository mount from V, in the query and in a form body.
    let mount = format!("/v2/acme/app/blobs/uploads/?mount={digest}&from=victim/private");
    bed.refused_locally(
        "49 mount from V",
        &raw("POST", mount.as_bytes(), &auth, b""),
        &[401, 403],
    );
    let form = format!("mount={digest}&from=victim/private");
    let form_headers = [
        auth[0],
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    bed.refused_locally(
        "49 mount in a form body",
        &raw(
            "POST",
            b"/v2/acme/app/blobs/uploads/",
            &form_headers,
            form.as_bytes(),
        ),
        &[400, 403],
    );

    // 51: delete with a pull,push token.
    let delete = format!("/v2/acme/app/manifests/{digest}");
    bed.refused_locally(
        "51 DELETE with pull,push",
        &raw("DELETE", delete.as_bytes(), &auth, b""),
        &[401, 403],
    );

    // 54: two Authorization fields are refused; a forwarded request carries exactly one.
    let forged = [auth[0], ("Authorization", "Bearer forged.token.value")];
    bed.refused_locally(
        "54 second Authorization",
        &raw("GET", b"/v2/acme/case54/tags/list", &forged, b""),
        &[400, 401],
    );
    let forwarded = sidecar.v2("/v2/acme/case54/tags/list", Some(&token));
    assert_eq!(
        forwarded.status(),
        404,
        "SECURITY 54: forwarded, NAME_UNKNOWN from the registry"
    );
    let heads = bed.tap.heads_for("/v2/acme/case54/tags/list");
    assert_eq!(
        heads.len(),
        1,
        "SECURITY 54: one request upstream: {heads:?}"
    );
    let authorizations: Vec<&str> = heads[0]
        .lines()
        .filter_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.trim())
        })
        .collect();
    assert_eq!(
        authorizations,
        [bearer.as_str()],
        "SECURITY 54: exactly one Authorization header upstream"
    );

    // 55: the client's forwarding headers do not steer Location.
    let evil = [
        auth[0],
        ("X-Forwarded-Host", "evil.example"),
        ("Forwarded", "host=evil.example;proto=https"),
        ("X-Forwarded-Proto", "https"),
    ];
    let started = raw_http(
        &sidecar.addr(),
        &raw("POST", b"/v2/acme/case55/blobs/uploads/", &evil, b""),
    );
    assert_eq!(
        started.status,
        202,
        "SECURITY 55: upload session: {}",
        started.text()
    );
    let location = started.header("location").unwrap_or_default();
    assert!(
        location.starts_with(&format!("{}/v2/acme/case55/blobs/uploads/", sidecar.url()))
            || location.starts_with("/v2/acme/case55/blobs/uploads/"),
        "SECURITY 55: Location uses the configured public host, got {location:?}"
    );
    let upstream = bed.tap.heads_for("/v2/acme/case55/blobs/uploads/");
    assert!(
        !upstream.is_empty() && upstream.iter().all(|h| !h.contains("evil.example")),
        "SECURITY 55: evil.example reached the registry: {upstream:?}"
    );

    // 50: a mount of a blob that exists only in V, without `from`.
    let bare_mount = format!(
        "{}/v2/acme/app/blobs/uploads/?mount={digest}",
        sidecar.url()
    );
    let opened = http.post(bare_mount).bearer_auth(&token).send().unwrap();
    assert_eq!(
        opened.status(),
        202,
        "SECURITY 50: a plain upload session, never a mount (201)"
    );

    // 57: the registry keeps repositories apart.
    let blob = sidecar.v2(&format!("/v2/acme/app/blobs/{digest}"), Some(&token));
    assert_eq!(
        blob.status(),
        404,
        "SECURITY 57: V's blob is not readable through E"
    );

    // The registry's own log agrees: none of the refused requests arrived.
    bed.registry_barrier();
    for fragment in [
        "_catalog",
        "victim/private/manifests",
        "victim/private/tags",
        "Acme",
        "%2",
        "..",
        "OPTIONS",
        "TRACE",
        "PROPFIND",
        "DELETE",
    ] {
        assert_eq!(
            registry.requests_for(fragment),
            0,
            "SECURITY 39-53: the registry logged a request matching {fragment:?}"
        );
    }
    assert_eq!(
        registry.requests_for("case54/tags/list"),
        1,
        "SECURITY 54: only the well-formed request reached the registry"
    );
    sidecar.assert_log_free_of(&[&token, &optok]);
}

// ---------------------------------------------------------------------------------------------
// Reliability: the Authority is unreachable at start
// ---------------------------------------------------------------------------------------------

/// A sidecar process started by hand (the harness's `Sidecar::start` waits for readiness).
struct Unready {
    child: std::process::Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Unready {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- registry-token log tail ----\n{}",
                log_tail(&self.log, 60)
            );
        }
    }
}

/// With the Authority unreachable from the start, the sidecar serves but is not ready:
/// `/readyz` answers 503 naming the Authority, and the realm answers 503 with `Retry-After`
/// rather than issuing anything (58).
#[test]
fn authority_down_at_start_means_not_ready_and_no_tokens() {
    let authority = Authority::start();
    authority.set_mode(Mode::Down);
    let keys = Keys::generate();
    let registry = Registry::start(None);
    let config = SidecarConfig::new(&registry.url(), &authority.issuer(), keys.path());
    let (port, admin_port) = (free_port(), free_port());
    let dir = tempfile::Builder::new()
        .prefix("e2e-unready")
        .tempdir()
        .unwrap();
    let config_path = dir.path().join("registry-token.yaml");
    std::fs::write(&config_path, config.to_yaml(port, admin_port)).unwrap();
    let log = dir.path().join("registry-token.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name
            .to_string_lossy()
            .to_ascii_uppercase()
            .starts_with("REGISTRY_TOKEN_")
        {
            command.env_remove(name);
        }
    }
    let child = command
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("run registry-token serve");
    let mut process = Unready {
        child,
        log,
        _dir: dir,
    };
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    poll(
        START_DEADLINE,
        "registry-token /healthz to answer 200",
        || {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("SECURITY 58: registry-token exited with the Authority down ({status})");
            }
            (http.get(format!("{base}/healthz")).send().ok()?.status() == 200).then_some(())
        },
    );

    let ready = http.get(format!("{base}/readyz")).send().unwrap();
    assert_eq!(
        ready.status(),
        503,
        "SECURITY 58: /readyz while the Authority was never reached"
    );
    let why = ready.text().unwrap();
    assert!(
        why.contains("authority"),
        "SECURITY 58: /readyz says the Authority is why: {why}"
    );

    let key = DpopKey::new();
    let optok = authority.optok("alice", "enterprise", "LIC-1", Some(&key.thumbprint()));
    let realm_url = format!("{base}/token");
    for _ in 0..2 {
        let response = http
            .get(&realm_url)
            .query(&query(&["repository:acme/app:pull"]))
            .header("Authorization", format!("DPoP {optok}"))
            .header("DPoP", key.proof("GET", &realm_url, &optok))
            .send()
            .unwrap();
        assert_eq!(
            response.status(),
            503,
            "SECURITY 58: /token without Authority keys"
        );
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            retry.as_deref().is_some_and(|r| r.parse::<u64>().is_ok()),
            "SECURITY 58: 503 carries a numeric Retry-After, got {retry:?}"
        );
    }
    assert_eq!(
        http.get(format!("{base}/readyz")).send().unwrap().status(),
        503,
        "SECURITY 58: still not ready"
    );
}

// ---------------------------------------------------------------------------------------------
// Turn 2: form bodies on uploads (SECURITY 71)
// ---------------------------------------------------------------------------------------------

/// Writes a blob straight into the registry's `victim/private` (no sidecar) and returns its digest.
fn seed_victim_blob(registry: &Registry) -> String {
    let secret = format!("victim secret {}", rand::random::<u64>());
    let digest = format!(
        "sha256:{}",
        hash(MessageDigest::sha256(), secret.as_bytes())
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let http = client();
    let upload = http
        .post(format!(
            "{}/v2/victim/private/blobs/uploads/",
            registry.url()
        ))
        .send()
        .unwrap();
    assert_eq!(upload.status(), 202, "seeding victim/private");
    let location = upload.headers()["location"].to_str().unwrap().to_string();
    let put = http
        .put(format!("{location}&digest={digest}"))
        .body(secret)
        .send()
        .unwrap();
    assert_eq!(put.status(), 201, "seeding victim/private");
    digest
}

/// A `multipart/form-data` body with boundary `B` and one part per `(name, value)`.
fn multipart(parts: &[(&str, &str)]) -> String {
    let mut body = String::new();
    for (name, value) in parts {
        body.push_str(&format!(
            "--B\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str("--B--\r\n");
    body
}

/// SECURITY 71: Distribution reads `mount`/`from` (and `digest`) from a form body as well as
/// from the query, so a push token for `acme/app` could mount `victim/private`'s blob through
/// a multipart upload start. Every form media type, in any case and spacing and with any
/// parameters, on POST, PUT and PATCH, is refused with 400 `form_body`, never forwarded, and
/// the connection is not reused (its body is unread); the victim's blob stays unreachable.
#[test]
fn form_bodies_on_uploads_are_refused() {
    let bed = Bed::start();
    let (sidecar, registry) = (&bed.sidecar, &bed.registry);
    let (key, optok) = bed.caller("enterprise");
    let token = sidecar.token(&["repository:acme/app:pull,push"], &optok, &key);
    let bearer = format!("Bearer {token}");
    let digest = seed_victim_blob(registry);
    let blob_in_app = format!("{}/v2/acme/app/blobs/{digest}", registry.url());
    assert_eq!(
        client().get(&blob_in_app).send().unwrap().status(),
        404,
        "baseline: the blob is not in acme/app"
    );

    // An upload session of acme/app to aim PUT and PATCH at.
    let started = raw_http(
        &sidecar.addr(),
        &raw(
            "POST",
            b"/v2/acme/app/blobs/uploads/",
            &[("Authorization", &bearer)],
            b"",
        ),
    );
    assert_eq!(started.status, 202, "upload session: {}", started.text());
    let location = started.header("location").unwrap_or_default();
    let session = location
        .strip_prefix(&sidecar.url())
        .unwrap_or(location)
        .to_string();
    let session = session.split('?').next().unwrap().to_string();
    assert!(
        session.starts_with("/v2/acme/app/blobs/uploads/"),
        "{session}"
    );

    let mount = multipart(&[("mount", &digest), ("from", "victim/private")]);
    let complete = multipart(&[("digest", &digest)]);
    let form = format!("mount={digest}&from=victim/private");
    let uploads = "/v2/acme/app/blobs/uploads/";
    // (method, path, Content-Type, body)
    let rows: [(&str, &str, &str, &str); 9] = [
        ("POST", uploads, "multipart/form-data; boundary=B", &mount),
        ("POST", uploads, "Multipart/Form-Data ; boundary=B", &mount),
        ("POST", uploads, "MULTIPART/FORM-DATA;boundary=B", &mount),
        (
            "POST",
            uploads,
            "multipart/form-data\t;  charset=utf-8; boundary=\"B\"",
            &mount,
        ),
        ("POST", uploads, " multipart/form-data ; boundary=B", &mount),
        (
            "POST",
            uploads,
            "Application/X-WWW-Form-Urlencoded; charset=utf-8",
            &form,
        ),
        (
            "PUT",
            &session,
            "multipart/form-data; boundary=B",
            &complete,
        ),
        (
            "PATCH",
            &session,
            "Multipart/Form-Data; boundary=B",
            &complete,
        ),
        ("PUT", &session, "application/x-www-form-urlencoded", &form),
    ];
    let denied = || sidecar.metric("registry_proxy_denied_total", &[("reason", "form_body")]);
    for (method, path, content_type, body) in rows {
        let case = format!("71 {method} {content_type:?}");
        let before = denied();
        let headers = [
            ("Authorization", bearer.as_str()),
            ("Content-Type", content_type),
        ];
        let response = bed.refused_locally(
            &case,
            &raw(method, path.as_bytes(), &headers, body.as_bytes()),
            &[400],
        );
        assert_eq!(
            denied(),
            before + 1.0,
            "SECURITY {case}: counted as form_body"
        );
        assert!(
            response
                .header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close")),
            "SECURITY {case}: the connection is not reused, got {:?}",
            response.headers
        );
    }

    // Kept alive by the client, the refused request still ends its connection: a request
    // pipelined behind the unread body is never read as a second request.
    let mut request = format!(
        "POST {uploads} HTTP/1.1\r\nHost: sidecar.test\r\nAuthorization: {bearer}\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: {}\r\n\r\n{mount}",
        mount.len()
    );
    request.push_str(&format!(
        "GET /v2/acme/app/tags/list HTTP/1.1\r\nHost: sidecar.test\r\nAuthorization: {bearer}\r\n\r\n"
    ));
    let before = bed.tap.heads().len();
    let mut stream = TcpStream::connect(sidecar.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("SECURITY 71: the sidecar closes the connection after the refusal");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "SECURITY 71: {answer}");
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "SECURITY 71: one answer only: {answer}"
    );
    assert_eq!(
        bed.tap.heads().len(),
        before,
        "SECURITY 71: nothing forwarded"
    );

    // The registry never saw a form: the blob is still not in acme/app, and its log holds only
    // the upload start above.
    assert_eq!(
        client().get(&blob_in_app).send().unwrap().status(),
        404,
        "SECURITY 71: the victim's blob was not mounted into acme/app"
    );
    bed.registry_barrier();
    assert_eq!(
        registry.requests_for("/v2/acme/app/blobs/uploads"),
        1,
        "SECURITY 71: only the upload start reached the registry"
    );
    sidecar.assert_log_free_of(&[&token, &optok]);
}
