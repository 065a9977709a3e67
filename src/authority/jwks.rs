//! The Authority's signing keys: OIDC discovery (`jwks_uri` from the metadata, whose `issuer` must
//! be the configured one), then the JWKS, kept by `kid`.
//!
//! Fetches are https only (plain http for a loopback host), time-limited, never redirected and
//! size-capped; a failed fetch keeps the previous keys. Keys older than `max_age` without a
//! successful refresh are unusable (the realm answers 503). An unknown `kid` triggers at most one
//! refresh per cooldown, single-flight. Key URLs named by a token (`jku`, `x5u`) are never used.

use std::collections::{HashMap, HashSet};
use std::error::Error as _;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use url::{Host, Url};

use super::optok::MAX_KID_CHARS;
use super::AuthorityConfig;
use crate::jose::PublicKey;
use crate::metrics::Metrics;

/// Limits of the key cache; [`Default`] gives the production values.
#[derive(Debug, Clone)]
pub struct JwksTuning {
    /// Whole-request timeout of each fetch (5 s).
    pub timeout: Duration,
    /// Keys this old without a successful refresh are unusable (12 h).
    pub max_age: Duration,
    /// Least time between two refreshes caused by unknown `kid`s (30 s).
    pub cooldown: Duration,
    /// Largest accepted metadata or JWKS body (1 MiB).
    pub body_limit: usize,
}

impl Default for JwksTuning {
    fn default() -> Self {
        JwksTuning {
            timeout: Duration::from_secs(5),
            max_age: Duration::from_secs(12 * 3600),
            cooldown: Duration::from_secs(30),
            body_limit: 1 << 20,
        }
    }
}

/// The key cache as `/readyz` and `doctor` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysStatus {
    /// Usable keys held.
    pub keys: usize,
    /// Time since the last successful refresh.
    pub age: Option<Duration>,
    /// Why the last refresh failed, if it did.
    pub last_error: Option<String>,
    /// Whether tokens can be verified now (keys fetched and not too old).
    pub usable: bool,
}

/// Why a refresh failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("{0} is not a valid URL")]
    Address(String),
    #[error("{0}: refusing anything but https (plain http only to a loopback host)")]
    Insecure(String),
    #[error("fetching {address} failed: {reason}")]
    Http { address: String, reason: String },
    #[error("{address} answered HTTP {status}")]
    Status { address: String, status: u16 },
    #[error("{0} sent more than the size limit")]
    TooLarge(String),
    #[error("{address}: {reason}")]
    Document {
        address: String,
        reason: &'static str,
    },
    #[error("the metadata issuer is not the configured issuer")]
    IssuerMismatch,
    #[error("the JWKS holds no usable signature key")]
    NoKeys,
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
}

/// The outcome of a key lookup.
pub(crate) enum Lookup {
    Found(Arc<PublicKey>),
    Unknown,
    /// Never fetched, or too old.
    Unavailable,
}

type Keys = HashMap<String, Arc<PublicKey>>;

/// The shared key cache of one Authority.
pub(crate) struct KeyCache {
    issuer: String,
    metadata_address: String,
    jwks_uri: Option<String>,
    tuning: JwksTuning,
    /// Built at the first fetch, so that constructing the cache does no I/O.
    client: OnceLock<Result<reqwest::Client, String>>,
    state: RwLock<State>,
    /// Held while fetching: concurrent refreshes wait for the one under way.
    flight: tokio::sync::Mutex<()>,
    /// Counts every fetch (`registry_token_authority_keys_refresh_total`).
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct State {
    keys: Arc<Keys>,
    /// When the keys were last fetched successfully.
    fetched: Option<Instant>,
    last_error: Option<String>,
    /// When an unknown `kid` last caused a refresh.
    on_demand: Option<Instant>,
    /// Completed fetch attempts, to tell waiters that a fetch happened while they waited.
    attempts: u64,
}

impl KeyCache {
    /// No I/O: the first fetch happens at [`KeyCache::refresh`] or on a lookup. Fetches are
    /// counted in `metrics`.
    pub fn new(config: &AuthorityConfig, tuning: JwksTuning, metrics: Arc<Metrics>) -> Self {
        KeyCache {
            issuer: config.issuer.clone(),
            metadata_address: config.metadata_address.clone(),
            jwks_uri: config.jwks_uri.clone(),
            tuning,
            client: OnceLock::new(),
            state: RwLock::default(),
            flight: tokio::sync::Mutex::new(()),
            metrics,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn usable(&self, state: &State) -> bool {
        state
            .fetched
            .is_some_and(|at| at.elapsed() <= self.tuning.max_age)
            && !state.keys.is_empty()
    }

    /// The key for `kid` from the cache as it is.
    pub fn lookup(&self, kid: &str) -> Lookup {
        let state = self.read();
        if !self.usable(&state) {
            return Lookup::Unavailable;
        }
        state
            .keys
            .get(kid)
            .cloned()
            .map_or(Lookup::Unknown, Lookup::Found)
    }

    /// The key for `kid`; when unknown (or the cache unusable), one rate-limited, single-flight
    /// refresh first. `Err(())` when no usable key set can be had.
    pub async fn key(&self, kid: &str) -> Result<Option<Arc<PublicKey>>, ()> {
        if let Lookup::Found(key) = self.lookup(kid) {
            return Ok(Some(key));
        }
        let seen = self.read().attempts;
        if !self.cooling_down(&self.read()) {
            let _flight = self.flight.lock().await;
            let go = {
                let mut state = self.write();
                // Someone else fetched while we waited, or the cooldown started meanwhile.
                let go = state.attempts == seen && !self.cooling_down(&state);
                if go {
                    state.on_demand = Some(Instant::now());
                }
                go
            };
            if go {
                // The outcome is recorded in the state; the lookup below reads it.
                let _ = self.refresh_locked().await;
            }
        }
        match self.lookup(kid) {
            Lookup::Found(key) => Ok(Some(key)),
            Lookup::Unknown => Ok(None),
            Lookup::Unavailable => Err(()),
        }
    }

    fn cooling_down(&self, state: &State) -> bool {
        state
            .on_demand
            .is_some_and(|at| at.elapsed() < self.tuning.cooldown)
    }

    /// Fetches metadata (unless `jwks_uri` is configured) and the JWKS now; keeps the previous
    /// keys on error. Returns the number of usable keys.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _flight = self.flight.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<usize, JwksError> {
        let result = self.fetch().await;
        let label = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .authority_refresh
            .with_label_values(&[label])
            .inc();
        match result {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "authority keys refreshed");
                Ok(self.store(keys))
            }
            Err(error) => {
                tracing::warn!(%error, "authority keys refresh failed; keeping the previous keys");
                let mut state = self.write();
                state.last_error = Some(error.to_string());
                state.attempts += 1;
                Err(error)
            }
        }
    }

    /// Replaces the key set with a freshly fetched one.
    fn store(&self, keys: Keys) -> usize {
        let mut state = self.write();
        let count = keys.len();
        state.keys = Arc::new(keys);
        state.fetched = Some(Instant::now());
        state.last_error = None;
        state.attempts += 1;
        count
    }

    /// Loads a JWKS document as if it had just been fetched (tests, offline checks).
    pub fn load(&self, jwks: &str) -> Result<usize, JwksError> {
        let document = serde_json::from_str(jwks).map_err(|_| JwksError::Document {
            address: "(inline)".into(),
            reason: "the JWKS is not JSON",
        })?;
        Ok(self.store(keys_from_document(&document)?))
    }

    /// The limits this cache was built with.
    pub fn tuning(&self) -> &JwksTuning {
        &self.tuning
    }

    pub fn status(&self) -> KeysStatus {
        let state = self.read();
        KeysStatus {
            keys: state.keys.len(),
            age: state.fetched.map(|at| at.elapsed()),
            last_error: state.last_error.clone(),
            usable: self.usable(&state),
        }
    }

    async fn fetch(&self) -> Result<Keys, JwksError> {
        let client = self.client.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(self.tuning.timeout)
                .connect_timeout(self.tuning.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| e.to_string())
        });
        let client = client.as_ref().map_err(|e| JwksError::Client(e.clone()))?;
        let jwks_uri = match &self.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let metadata = self.get_json(client, &self.metadata_address).await?;
                if metadata.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
                    return Err(JwksError::IssuerMismatch);
                }
                metadata
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| JwksError::Document {
                        address: self.metadata_address.clone(),
                        reason: "the metadata has no jwks_uri",
                    })?
            }
        };
        keys_from_document(&self.get_json(client, &jwks_uri).await?)
    }

    /// GETs a JSON document: 200 only, body streamed up to the size limit.
    async fn get_json(&self, client: &reqwest::Client, address: &str) -> Result<Value, JwksError> {
        let url = check_address(address)?;
        let http = |e: reqwest::Error| JwksError::Http {
            address: address.to_owned(),
            reason: describe(&e),
        };
        let mut response = client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(http)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(JwksError::Status {
                address: address.to_owned(),
                status: response.status().as_u16(),
            });
        }
        let limit = self.tuning.body_limit;
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(JwksError::TooLarge(address.to_owned()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > limit {
                return Err(JwksError::TooLarge(address.to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| JwksError::Document {
            address: address.to_owned(),
            reason: "the answer is not JSON",
        })
    }
}

/// The error and its causes on one line (reqwest's top-level message alone says little).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

/// An https URL, or an http URL whose host is loopback (127.0.0.0/8, ::1, localhost).
fn check_address(address: &str) -> Result<Url, JwksError> {
    let url = Url::parse(address).map_err(|_| JwksError::Address(address.to_owned()))?;
    let loopback = match url.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(JwksError::Insecure(address.to_owned())),
    }
}

/// The usable signature keys of a JWKS, by `kid`: RSA/EC/OKP, `use` absent or `sig`, `key_ops`
/// (if any) allowing `verify`, public and valid. Other entries are ignored; a `kid` held by two
/// usable entries is ambiguous and dropped.
fn keys_from_document(document: &Value) -> Result<Keys, JwksError> {
    let entries = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwksError::Document {
            address: "the JWKS".into(),
            reason: "it has no keys array",
        })?;
    let mut keys = Keys::new();
    let mut ambiguous = HashSet::new();
    for jwk in entries.iter().filter_map(Value::as_object) {
        let Some(kid) = jwk.get("kid").and_then(Value::as_str) else {
            continue;
        };
        let for_signatures = match (jwk.get("use"), jwk.get("key_ops")) {
            (Some(u), _) if u != "sig" => false,
            (_, Some(ops)) => ops
                .as_array()
                .is_some_and(|ops| ops.iter().any(|op| op == "verify")),
            _ => true,
        };
        if kid.is_empty() || kid.chars().count() > MAX_KID_CHARS || !for_signatures {
            continue;
        }
        let Ok(key) = PublicKey::from_jwk(jwk) else {
            continue;
        };
        if keys.insert(kid.to_owned(), Arc::new(key)).is_some() {
            ambiguous.insert(kid.to_owned());
        }
    }
    keys.retain(|kid, _| !ambiguous.contains(kid));
    if keys.is_empty() {
        return Err(JwksError::NoKeys);
    }
    Ok(keys)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::authority::dpop::tests::TestKey;
    use crate::authority::SenderConstraint;
    use serde_json::json;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::Mutex;

    /// A canned HTTP answer.
    #[derive(Clone)]
    pub struct Canned {
        pub status: u16,
        pub body: Vec<u8>,
        pub delay: Duration,
    }

    pub fn ok(body: impl Into<Vec<u8>>) -> Canned {
        Canned {
            status: 200,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// A loopback HTTP server answering each path from `routes`; counts requests per path.
    pub struct Server {
        pub base: String,
        pub routes: Arc<Mutex<HashMap<String, Canned>>>,
        pub hits: Arc<Mutex<HashMap<String, usize>>>,
    }

    impl Server {
        pub fn start() -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let routes: Arc<Mutex<HashMap<String, Canned>>> = Arc::default();
            let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
            let (r, h) = (routes.clone(), hits.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let (routes, hits) = (r.clone(), h.clone());
                    std::thread::spawn(move || {
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n")
                            && stream.read(&mut byte).unwrap_or(0) == 1
                        {
                            head.push(byte[0]);
                        }
                        let head = String::from_utf8_lossy(&head);
                        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                        *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                        let canned = routes
                            .lock()
                            .unwrap()
                            .get(&path)
                            .cloned()
                            .unwrap_or(Canned {
                                status: 404,
                                body: b"not found".to_vec(),
                                delay: Duration::ZERO,
                            });
                        std::thread::sleep(canned.delay);
                        let extra = if canned.status == 302 {
                            "Location: /jwks\r\n"
                        } else {
                            ""
                        };
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {} X\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                            canned.status,
                            canned.body.len()
                        );
                        let _ = stream.write_all(&canned.body);
                    });
                }
            });
            Server { base, routes, hits }
        }
        pub fn set(&self, path: &str, canned: Canned) {
            self.routes.lock().unwrap().insert(path.into(), canned);
        }
        pub fn hits(&self, path: &str) -> usize {
            self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
        }
        /// Serves OIDC metadata for `issuer` pointing at `/jwks`.
        pub fn metadata(&self, issuer: &str) {
            let body =
                json!({"issuer": issuer, "jwks_uri": format!("{}/jwks", self.base)}).to_string();
            self.set("/.well-known/openid-configuration", ok(body));
        }
    }

    pub fn jwks(keys: &[(&str, &TestKey)]) -> String {
        let keys: Vec<Value> = keys
            .iter()
            .map(|(kid, key)| {
                let mut jwk = key.jwk();
                jwk["kid"] = json!(kid);
                jwk
            })
            .collect();
        json!({ "keys": keys }).to_string()
    }

    fn tuning() -> JwksTuning {
        JwksTuning {
            timeout: Duration::from_millis(500),
            ..JwksTuning::default()
        }
    }

    fn cache(server: &Server, tuning: JwksTuning) -> KeyCache {
        let mut config = crate::authority::tests::config(SenderConstraint::None);
        config.issuer = server.base.clone();
        config.metadata_address = format!("{}/.well-known/openid-configuration", server.base);
        KeyCache::new(&config, tuning, Arc::default())
    }

    fn errors(cache: &KeyCache) -> u64 {
        cache
            .metrics
            .authority_refresh
            .with_label_values(&["error"])
            .get()
    }

    /// Discovery, then the JWKS; unusable entries (case 62) are ignored.
    #[tokio::test]
    async fn discovery_and_filtering() {
        let server = Server::start();
        server.metadata(&server.base);
        let (ec, rsa, ed) = (TestKey::p256(), TestKey::rsa(), TestKey::ed25519());
        let mut doc: Value =
            serde_json::from_str(&jwks(&[("ec", &ec), ("rsa", &rsa), ("ed", &ed)])).unwrap();
        let keys = doc["keys"].as_array_mut().unwrap();
        keys.push(json!({"kid":"oct","kty":"oct","k":"c2VjcmV0"}));
        let mut enc = ec.jwk();
        enc["kid"] = json!("enc");
        enc["use"] = json!("enc");
        keys.push(enc);
        let mut private = ec.jwk();
        private["kid"] = json!("private");
        private["d"] = json!("AAAA");
        keys.push(private);
        let mut no_kid = ec.jwk();
        no_kid["use"] = json!("sig");
        keys.push(no_kid);
        server.set("/jwks", ok(doc.to_string()));

        let cache = cache(&server, tuning());
        assert!(!cache.status().usable, "never fetched");
        assert!(matches!(cache.lookup("ec"), Lookup::Unavailable));
        assert_eq!(cache.refresh().await, Ok(3));
        for kid in ["ec", "rsa", "ed"] {
            assert!(matches!(cache.lookup(kid), Lookup::Found(_)), "{kid}");
        }
        for kid in ["oct", "enc", "private"] {
            assert!(matches!(cache.lookup(kid), Lookup::Unknown), "{kid}");
        }
        let status = cache.status();
        assert!(status.usable && status.keys == 3 && status.last_error.is_none());
    }

    /// Case 60: bad answers fail the refresh, keep the previous keys and count as errors.
    #[tokio::test]
    async fn failures_keep_previous_keys() {
        let server = Server::start();
        server.metadata(&server.base);
        let key = TestKey::p256();
        server.set("/jwks", ok(jwks(&[("k1", &key)])));
        let cache = cache(&server, tuning());
        cache.refresh().await.unwrap();

        let bad: Vec<(Canned, &str)> = vec![
            (
                Canned {
                    status: 500,
                    body: b"{}".to_vec(),
                    delay: Duration::ZERO,
                },
                "HTTP 500",
            ),
            (ok("<html>hello</html>"), "not JSON"),
            (ok(vec![b' '; 10 << 20]), "size limit"),
            (
                Canned {
                    delay: Duration::from_secs(3),
                    ..ok("{}")
                },
                "timed out",
            ),
            (
                Canned {
                    status: 302,
                    body: Vec::new(),
                    delay: Duration::ZERO,
                },
                "HTTP 302",
            ),
            (
                ok(r#"{"keys":[{"kid":"x","kty":"oct","k":"AAAA"}]}"#),
                "no usable",
            ),
        ];
        for (canned, expected) in bad {
            let before = errors(&cache);
            server.set("/jwks", canned);
            let error = cache.refresh().await.unwrap_err().to_string();
            assert!(error.contains(expected), "{error} should say {expected}");
            assert!(errors(&cache) > before);
            assert!(
                matches!(cache.lookup("k1"), Lookup::Found(_)),
                "previous keys kept"
            );
            assert_eq!(cache.status().last_error, Some(error));
        }
    }

    /// The metadata must name the configured issuer.
    #[tokio::test]
    async fn issuer_mismatch() {
        let server = Server::start();
        server.metadata("https://evil.example");
        server.set("/jwks", ok(jwks(&[("k1", &TestKey::p256())])));
        assert_eq!(
            cache(&server, tuning()).refresh().await,
            Err(JwksError::IssuerMismatch)
        );
        assert_eq!(server.hits("/jwks"), 0);
    }

    /// Plain http is refused unless the host is loopback.
    #[rstest::rstest]
    #[case("http://authority.example/jwks", false)]
    #[case("http://127.1.2.3:8080/jwks", true)]
    #[case("http://[::1]/jwks", true)]
    #[case("http://LOCALHOST/jwks", true)]
    #[case("http://localhost.evil.example/jwks", false)]
    #[case("https://authority.example/jwks", true)]
    #[case("ftp://127.0.0.1/jwks", false)]
    #[case("file:///etc/passwd", false)]
    fn addresses(#[case] address: &str, #[case] allowed: bool) {
        assert_eq!(check_address(address).is_ok(), allowed);
    }

    /// Case 28: many unknown-kid lookups at once cause at most one fetch per cooldown.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_kid_single_flight() {
        let server = Server::start();
        server.metadata(&server.base);
        server.set("/jwks", ok(jwks(&[("k1", &TestKey::p256())])));
        let cache = Arc::new(cache(&server, tuning()));
        cache.refresh().await.unwrap();
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.key(&format!("unknown-{i}")).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().map(|k| k.is_none()), Ok(true));
        }
        assert_eq!(
            server.hits("/jwks"),
            2,
            "the startup fetch and one on-demand refresh"
        );
    }

    /// Case 61: a new kid is found by one on-demand refresh; a dropped kid is gone after it.
    #[tokio::test]
    async fn rotation() {
        let server = Server::start();
        server.metadata(&server.base);
        let (k1, k2) = (TestKey::p256(), TestKey::p256());
        server.set("/jwks", ok(jwks(&[("k1", &k1)])));
        let cache = cache(
            &server,
            JwksTuning {
                cooldown: Duration::ZERO,
                ..tuning()
            },
        );
        cache.refresh().await.unwrap();
        server.set("/jwks", ok(jwks(&[("k2", &k2)])));
        assert!(matches!(cache.key("k2").await, Ok(Some(_))));
        assert_eq!(server.hits("/jwks"), 2);
        assert!(matches!(cache.lookup("k1"), Lookup::Unknown));
    }

    /// Cases 58, 59: never fetched, or older than max_age, means unavailable.
    #[tokio::test]
    async fn staleness() {
        let server = Server::start();
        server.metadata(&server.base);
        server.set("/jwks", ok(jwks(&[("k1", &TestKey::p256())])));
        let fresh = cache(&server, tuning());
        server.set(
            "/.well-known/openid-configuration",
            Canned {
                status: 503,
                body: Vec::new(),
                delay: Duration::ZERO,
            },
        );
        assert!(fresh.refresh().await.is_err());
        assert_eq!(
            fresh.key("k1").await.map(|k| k.is_some()),
            Err(()),
            "never fetched"
        );

        server.metadata(&server.base);
        let stale = cache(
            &server,
            JwksTuning {
                max_age: Duration::ZERO,
                cooldown: Duration::from_secs(60),
                ..tuning()
            },
        );
        stale.refresh().await.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(stale.lookup("k1"), Lookup::Unavailable));
        assert!(!stale.status().usable);
    }

    /// A configured jwks_uri skips discovery.
    #[tokio::test]
    async fn configured_jwks_uri() {
        let server = Server::start();
        server.set("/keys", ok(jwks(&[("k1", &TestKey::p256())])));
        let mut config = crate::authority::tests::config(SenderConstraint::None);
        config.metadata_address = format!("{}/.well-known/openid-configuration", server.base);
        config.jwks_uri = Some(format!("{}/keys", server.base));
        let cache = KeyCache::new(&config, tuning(), Arc::default());
        assert_eq!(cache.refresh().await, Ok(1));
        assert_eq!(server.hits("/.well-known/openid-configuration"), 0);
    }
}
