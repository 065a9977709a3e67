//! End-to-end trust between the sidecar's keys and the real registry: `keygen` writes a CA
//! and a signing key, Debian's `docker-registry` (Distribution 2.8) is started with that CA as
//! its `auth.token.rootcertbundle`, and tokens signed by `KeySet::sign` are presented to it.
//!
//! Shows: x5c-chained ES256 and RS256 tokens are accepted and their `access` list enforced; a
//! token without x5c is accepted when its libtrust `kid` names a key in the bundle; wrong
//! `aud`/`iss` and expired tokens are refused; EdDSA tokens are refused by 2.8 (libtrust has
//! no Ed25519), so ES256 is the algorithm to use with a 2.x registry.
//! Skipped (with a note) when `docker-registry` is not installed.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use registry_token::token::{
    keygen, AccessEntry, IssuedClaims, KeyAlg, KeyIdFormat, KeySet, SigningConfig,
};
use rstest::rstest;

const REGISTRY: &str = "/usr/bin/docker-registry";
const SERVICE: &str = "registry.test";
const ISSUER: &str = "registry-token";

/// A `docker-registry serve` child on a free loopback port, killed on drop.
struct Registry {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Registry {
    /// Starts the registry trusting `ca` and waits until its port accepts connections.
    fn start(dir: &Path, ca: &Path) -> Registry {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("registry.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: test-secret\n\
                 auth:\n  token:\n    realm: https://sidecar.test/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {ca}\n",
                storage = dir.join("storage").display(),
                ca = ca.display(),
            ),
        )
        .unwrap();
        let log = dir.join("registry.log");
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start docker-registry");
        let mut registry = Registry {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = registry.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}): {}", registry.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen: {}",
                registry.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Status of `GET path` with `token` as the bearer.
    fn get(&self, path: &str, token: &str) -> u16 {
        reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn installed() -> bool {
    assert!(Path::new(REGISTRY).exists(), "{REGISTRY} is not installed: apt-get install -y docker-registry");
    true
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(repo: &str) -> IssuedClaims {
    let now = now();
    IssuedClaims {
        iss: ISSUER.into(),
        sub: "alice".into(),
        aud: SERVICE.into(),
        exp: now + 300,
        nbf: now,
        iat: now,
        jti: format!("jti-{repo}-{now}"),
        access: vec![AccessEntry {
            resource_type: "repository".into(),
            name: repo.into(),
            actions: vec!["pull".into()],
        }],
        extra: Default::default(),
    }
}

fn signing(key: PathBuf, chain: Option<PathBuf>) -> SigningConfig {
    SigningConfig {
        key_path: key,
        key_password: None,
        certificate_chain: chain,
        key_id: None,
        key_id_format: KeyIdFormat::Libtrust,
        previous_keys: vec![],
    }
}

/// keygen's key + chain: the registry verifies x5c to the CA and enforces `access`.
fn keygen_keys(alg: KeyAlg, dir: &Path) -> KeySet {
    let out = dir.join("keys");
    keygen(alg, &out, "https://sidecar.test/token", SERVICE, ISSUER).unwrap();
    KeySet::load(&signing(
        out.join("signing.pem"),
        Some(out.join("signing-chain.crt")),
    ))
    .unwrap()
}

/// An x5c-chained token is accepted (200 on /v2/), grants pull on its repository (404 for
/// the empty repository, not 401) and nothing on another (401).
#[rstest]
#[case::es256(KeyAlg::Es256)]
#[case::rs256(KeyAlg::Rs256)]
fn registry_accepts_x5c_tokens(#[case] alg: KeyAlg) {
    if !installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = keygen_keys(alg, dir.path());
    let registry = Registry::start(dir.path(), &dir.path().join("keys/ca.crt"));
    let token = keys.sign(&claims("acme/app")).unwrap();
    assert_eq!(registry.get("/v2/", &token), 200, "{}", registry.log_text());
    assert_eq!(
        registry.get("/v2/acme/app/tags/list", &token),
        404,
        "{}",
        registry.log_text()
    );
    let other = keys.sign(&claims("victim/private")).unwrap();
    assert_eq!(registry.get("/v2/acme/app/tags/list", &other), 401);
}

/// Without x5c, 2.8 looks the libtrust `kid` up among the bundle certificates' keys: a token
/// signed by a key whose certificate is in the bundle (here the CA key itself) is accepted.
#[test]
fn registry_accepts_kid_of_a_bundle_key_without_x5c() {
    if !installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    keygen_keys(KeyAlg::Es256, dir.path());
    let keys = KeySet::load(&signing(dir.path().join("keys/ca.key"), None)).unwrap();
    let registry = Registry::start(dir.path(), &dir.path().join("keys/ca.crt"));
    let token = keys.sign(&claims("acme/app")).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert!(header.x5c.is_none() && header.kid.as_deref() == Some(keys.current.kid()));
    assert_eq!(registry.get("/v2/", &token), 200, "{}", registry.log_text());
    assert_eq!(registry.get("/v2/acme/app/tags/list", &token), 404);

    // The same key under a thumbprint kid is unknown to 2.8.
    let mut cfg = signing(dir.path().join("keys/ca.key"), None);
    cfg.key_id_format = KeyIdFormat::Thumbprint;
    let thumb = KeySet::load(&cfg)
        .unwrap()
        .sign(&claims("acme/app"))
        .unwrap();
    assert_eq!(registry.get("/v2/", &thumb), 401);
}

/// The registry checks `aud`, `iss` and `exp` (with its fixed 60 s leeway).
#[test]
fn registry_refuses_wrong_audience_issuer_and_expired_tokens() {
    if !installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = keygen_keys(KeyAlg::Es256, dir.path());
    let registry = Registry::start(dir.path(), &dir.path().join("keys/ca.crt"));
    let mut wrong_aud = claims("acme/app");
    wrong_aud.aud = "other-registry".into();
    let mut wrong_iss = claims("acme/app");
    wrong_iss.iss = "someone-else".into();
    let mut expired = claims("acme/app");
    expired.exp = now() - 120;
    for (what, c) in [("aud", wrong_aud), ("iss", wrong_iss), ("exp", expired)] {
        assert_eq!(
            registry.get("/v2/", &keys.sign(&c).unwrap()),
            401,
            "wrong {what} accepted"
        );
    }
}

/// Distribution 2.8 does not accept EdDSA tokens: its libtrust knows only EC and RSA keys,
/// so the Ed25519 leaf of the x5c chain is refused. (Distribution 3.x is needed for EdDSA.)
#[test]
fn registry_2_8_refuses_eddsa_tokens() {
    if !installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = keygen_keys(KeyAlg::EdDsa, dir.path());
    let registry = Registry::start(dir.path(), &dir.path().join("keys/ca.crt"));
    let token = keys.sign(&claims("acme/app")).unwrap();
    assert_eq!(registry.get("/v2/", &token), 401);
    assert!(
        registry
            .log_text()
            .contains("unable to make libtrust public key"),
        "{}",
        registry.log_text()
    );
}
