//! An in-test OIDC Authority: serves discovery metadata and a JWKS on 127.0.0.1 from a plain
//! `TcpListener` thread, and mints OpToks by hand with openssl (never with `jsonwebtoken`, the
//! library under test). It counts fetches and can be told to fail, go down, or rotate keys.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{hash, MessageDigest};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde_json::{json, Value};

use super::{b64, now, poll};

/// Signature algorithm of an Authority key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    RS256,
    ES256,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
        }
    }
}

/// What the Authority's HTTP server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Metadata and JWKS as usual.
    Serve,
    /// Every request answers 500.
    Fail500,
    /// The listener is closed: connections are refused.
    Down,
}

/// One signing key of the Authority.
pub struct AuthKey {
    pub kid: String,
    pub alg: Alg,
    pub key: PKey<Private>,
    /// Listed in the JWKS.
    pub published: bool,
}

impl AuthKey {
    fn generate(kid: String, alg: Alg) -> AuthKey {
        let key = match alg {
            Alg::RS256 => PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
            Alg::ES256 => PKey::from_ec_key(EcKey::generate(&p256()).unwrap()).unwrap(),
        };
        AuthKey {
            kid,
            alg,
            key,
            published: true,
        }
    }

    /// The public JWK, as the JWKS lists it.
    pub fn jwk(&self) -> Value {
        match self.alg {
            Alg::RS256 => {
                let rsa = self.key.rsa().unwrap();
                json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                       "n": b64(rsa.n().to_vec()), "e": b64(rsa.e().to_vec())})
            }
            Alg::ES256 => {
                let (x, y) = ec_coordinates(&self.key.ec_key().unwrap());
                json!({"kty": "EC", "kid": self.kid, "use": "sig", "alg": "ES256",
                       "crv": "P-256", "x": b64(x), "y": b64(y)})
            }
        }
    }

    /// The public key as PEM (what an HS256 key-confusion attacker would use as the secret).
    pub fn public_pem(&self) -> Vec<u8> {
        self.key.public_key_to_pem().unwrap()
    }
}

pub(crate) fn p256() -> EcGroup {
    EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()
}

/// The 32-byte big-endian affine coordinates of a P-256 public key.
pub(crate) fn ec_coordinates<T: openssl::pkey::HasPublic>(ec: &EcKey<T>) -> (Vec<u8>, Vec<u8>) {
    let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
    let mut ctx = BigNumContext::new().unwrap();
    ec.public_key()
        .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
        .unwrap();
    (x.to_vec_padded(32).unwrap(), y.to_vec_padded(32).unwrap())
}

/// Signs `signing_input` (`header.payload`) with `key` as JOSE `alg` wants it: PKCS#1 v1.5 for
/// RS256, raw `r || s` (not DER) for ES256.
pub fn jose_sign(alg: Alg, key: &PKey<Private>, signing_input: &[u8]) -> Vec<u8> {
    match alg {
        Alg::RS256 => {
            let mut signer = Signer::new(MessageDigest::sha256(), key).unwrap();
            signer.update(signing_input).unwrap();
            signer.sign_to_vec().unwrap()
        }
        Alg::ES256 => {
            let digest = hash(MessageDigest::sha256(), signing_input).unwrap();
            let sig = EcdsaSig::sign(&digest, &key.ec_key().unwrap()).unwrap();
            let mut out = sig.r().to_vec_padded(32).unwrap();
            out.extend(sig.s().to_vec_padded(32).unwrap());
            out
        }
    }
}

/// A compact JWS over raw header and claims JSON text (so tests can send duplicate members).
pub fn jws_raw(alg: Alg, key: &PKey<Private>, header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = jose_sign(alg, key, input.as_bytes());
    format!("{input}.{}", b64(sig))
}

/// A compact JWS over JSON values.
pub fn jws(alg: Alg, key: &PKey<Private>, header: &Value, claims: &Value) -> String {
    jws_raw(alg, key, &header.to_string(), &claims.to_string())
}

struct State {
    keys: Mutex<Vec<AuthKey>>,
    mode: Mutex<Mode>,
    mode_changed: Condvar,
    stop: AtomicBool,
    metadata_fetches: AtomicUsize,
    jwks_fetches: AtomicUsize,
    other_requests: AtomicUsize,
}

/// The running Authority. Dropping it stops the server.
pub struct Authority {
    state: Arc<State>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Authority {
    /// An Authority with one RS256 key (kid `k1`).
    pub fn start() -> Authority {
        Authority::start_with(Alg::RS256)
    }

    /// An Authority with one key of `alg` (kid `k1`).
    pub fn start_with(alg: Alg) -> Authority {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Authority");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            keys: Mutex::new(vec![AuthKey::generate("k1".into(), alg)]),
            mode: Mutex::new(Mode::Serve),
            mode_changed: Condvar::new(),
            stop: AtomicBool::new(false),
            metadata_fetches: AtomicUsize::new(0),
            jwks_fetches: AtomicUsize::new(0),
            other_requests: AtomicUsize::new(0),
        });
        let thread_state = state.clone();
        let thread = std::thread::spawn(move || serve(listener, addr, thread_state));
        Authority {
            state,
            addr,
            thread: Some(thread),
        }
    }

    /// The issuer, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The JWKS address the metadata names.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer())
    }

    /// How many times `/.well-known/openid-configuration` was fetched.
    pub fn metadata_fetches(&self) -> usize {
        self.state.metadata_fetches.load(Ordering::SeqCst)
    }

    /// How many times `/jwks` was fetched (including fetches answered 500).
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Requests for any other path.
    pub fn other_requests(&self) -> usize {
        self.state.other_requests.load(Ordering::SeqCst)
    }

    /// Changes what the server does; returns once the change is observable from outside.
    pub fn set_mode(&self, mode: Mode) {
        let before = std::mem::replace(&mut *self.state.mode.lock().unwrap(), mode);
        self.state.mode_changed.notify_all();
        if before != Mode::Down && mode == Mode::Down {
            let _ = TcpStream::connect(self.addr); // wake the blocked accept so it closes
            poll(Duration::from_secs(5), "the Authority to go down", || {
                TcpStream::connect(self.addr).is_err().then_some(())
            });
        } else if before == Mode::Down && mode != Mode::Down {
            poll(Duration::from_secs(5), "the Authority to come back", || {
                TcpStream::connect(self.addr).is_ok().then_some(())
            });
        }
    }

    /// Adds a new published key of `alg`, which becomes the one `mint` signs with; returns its kid.
    pub fn rotate(&self, alg: Alg) -> String {
        let mut keys = self.state.keys.lock().unwrap();
        let kid = format!("k{}", keys.len() + 1);
        keys.push(AuthKey::generate(kid.clone(), alg));
        kid
    }

    /// Removes (or restores) a key from the JWKS; it can still sign.
    pub fn publish(&self, kid: &str, published: bool) {
        let mut keys = self.state.keys.lock().unwrap();
        keys.iter_mut()
            .find(|k| k.kid == kid)
            .expect("known kid")
            .published = published;
    }

    /// Runs `f` on the key `kid` (for crafting attacks with its material).
    pub fn with_key<T>(&self, kid: &str, f: impl FnOnce(&AuthKey) -> T) -> T {
        let keys = self.state.keys.lock().unwrap();
        f(keys.iter().find(|k| k.kid == kid).expect("known kid"))
    }

    /// The kid `mint` signs with (the newest key).
    pub fn current_kid(&self) -> String {
        self.state.keys.lock().unwrap().last().unwrap().kid.clone()
    }

    /// The JWKS document as currently served.
    pub fn jwks(&self) -> Value {
        jwks_of(&self.state.keys.lock().unwrap())
    }

    /// A JWS of `claims` signed by the newest key, header `{alg, typ: JWT, kid}`.
    pub fn mint(&self, claims: Value) -> String {
        self.mint_with_kid(&self.current_kid(), claims)
    }

    /// A JWS of `claims` signed by key `kid`, header `{alg, typ: JWT, kid}`.
    pub fn mint_with_kid(&self, kid: &str, claims: Value) -> String {
        self.with_key(kid, |k| {
            let header = json!({"alg": k.alg.name(), "typ": "JWT", "kid": k.kid});
            jws(k.alg, &k.key, &header, &claims)
        })
    }

    /// A JWS with the given header (taken as is) signed by the newest key with its own algorithm.
    pub fn mint_with_header(&self, header: Value, claims: Value) -> String {
        self.with_key(&self.current_kid(), |k| {
            jws(k.alg, &k.key, &header, &claims)
        })
    }

    /// The claims of a valid OpTok: iss, aud `registry`, exp now+600, iat, nbf, jti,
    /// scope `registry.token.issue`, `stellaops:plan`, `stellaops:license`, and `cnf.jkt` when given.
    pub fn optok_claims(
        &self,
        sub: &str,
        plan: &str,
        license: &str,
        cnf_jkt: Option<&str>,
    ) -> Value {
        let now = now();
        let mut claims = json!({
            "iss": self.issuer(), "sub": sub, "aud": "registry",
            "exp": now + 600, "iat": now, "nbf": now - 5,
            "jti": format!("optok-{}", rand::random::<u64>()),
            "client_id": "e2e-client", "scope": "registry.token.issue",
            "stellaops:plan": plan, "stellaops:license": license,
        });
        if let Some(jkt) = cnf_jkt {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        claims
    }

    /// A valid OpTok (see `optok_claims`) signed by the newest key.
    pub fn optok(&self, sub: &str, plan: &str, license: &str, cnf_jkt: Option<&str>) -> String {
        self.mint(self.optok_claims(sub, plan, license, cnf_jkt))
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.mode_changed.notify_all();
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn jwks_of(keys: &[AuthKey]) -> Value {
    json!({ "keys": keys.iter().filter(|k| k.published).map(AuthKey::jwk).collect::<Vec<_>>() })
}

/// Accept loop: one thread per connection; closes the listener while `Mode::Down` and binds
/// the same port again afterwards.
fn serve(listener: TcpListener, addr: SocketAddr, state: Arc<State>) {
    let mut listener = Some(listener);
    while !state.stop.load(Ordering::SeqCst) {
        if *state.mode.lock().unwrap() == Mode::Down {
            listener = None;
            let mut mode = state.mode.lock().unwrap();
            while *mode == Mode::Down && !state.stop.load(Ordering::SeqCst) {
                mode = state.mode_changed.wait(mode).unwrap();
            }
            continue;
        }
        let current = match &listener {
            Some(l) => l,
            None => listener.insert(poll(
                Duration::from_secs(5),
                "rebinding the Authority",
                || TcpListener::bind(addr).ok(),
            )),
        };
        let Ok((stream, _)) = current.accept() else {
            continue;
        };
        if state.stop.load(Ordering::SeqCst) || *state.mode.lock().unwrap() == Mode::Down {
            continue; // the wake-up connection
        }
        let state = state.clone();
        std::thread::spawn(move || handle(stream, addr, &state));
    }
}

fn handle(mut stream: TcpStream, addr: SocketAddr, state: &State) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65536 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&request);
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let path = path.split('?').next().unwrap_or("");
    let issuer = format!("http://{addr}");
    let body = match path {
        "/.well-known/openid-configuration" => {
            state.metadata_fetches.fetch_add(1, Ordering::SeqCst);
            Some(json!({
                "issuer": issuer, "jwks_uri": format!("{issuer}/jwks"),
                "token_endpoint": format!("{issuer}/token"),
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }))
        }
        "/jwks" => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            Some(jwks_of(&state.keys.lock().unwrap()))
        }
        _ => {
            state.other_requests.fetch_add(1, Ordering::SeqCst);
            None
        }
    };
    let (status, body) = match (*state.mode.lock().unwrap(), body) {
        (Mode::Fail500, _) => (
            "500 Internal Server Error",
            r#"{"error":"down"}"#.to_string(),
        ),
        (_, Some(body)) => ("200 OK", body.to_string()),
        (_, None) => ("404 Not Found", r#"{"error":"not_found"}"#.to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}
