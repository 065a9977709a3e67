//! End-to-end trust between the sidecar's keys and the real registry: `keygen` writes a CA
//! and a signing key, Debian's `docker-registry` (Distribution 2.8) is started with that CA as
//! its `auth.token.rootcertbundle`, and tokens signed by `KeySet::sign` are presented to it.
//!
//! Shows: x5c-chained ES256 and RS256 tokens are accepted and their `access` list enforced; a
//! token without x5c is accepted when its libtrust `kid` names a key in the bundle; wrong
//! `aud`/`iss` and expired tokens are refused; EdDSA tokens are refused by 2.8 (libtrust has
//! no Ed25519), so ES256 is the algorithm to use with a 2.x registry.
//!
//! Authority: none. The tokens here are signed directly with `KeySet::sign`, to try key
//! formats and claims the realm never issues (EdDSA, a `kid` without x5c, wrong `aud`/`iss`,
//! expired). The realm's own tokens, issued for the real provider's OpToks, meet the registry
//! in `roundtrip.rs` (`registry_accepts`).

mod common;

use std::path::{Path, PathBuf};

use common::{client, now, Registry, TokenAuth};
use registry_token::cli::keygen::{keygen, KeyAlg};
use registry_token::registry::{Resource, Scope};
use registry_token::token::{IssuedClaims, KeyIdFormat, KeySet, SigningConfig};
use rstest::rstest;

const SERVICE: &str = "registry.test";
const ISSUER: &str = "registry-token";

/// The real registry with token auth trusting `ca` (the keygen CA).
fn registry(ca: &Path) -> Registry {
    Registry::start(Some(TokenAuth {
        realm: "https://sidecar.test/token".into(),
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        rootcertbundle: ca.to_path_buf(),
    }))
}

/// Status of `GET path` on the registry with `token` as the bearer.
fn get(registry: &Registry, path: &str, token: &str) -> u16 {
    client()
        .get(format!("{}{path}", registry.url()))
        .bearer_auth(token)
        .send()
        .unwrap()
        .status()
        .as_u16()
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
        access: vec![Scope::new(Resource::repository(repo), ["pull"])],
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
    let dir = tempfile::tempdir().unwrap();
    let keys = keygen_keys(alg, dir.path());
    let registry = registry(&dir.path().join("keys/ca.crt"));
    let token = keys.sign(&claims("acme/app")).unwrap();
    assert_eq!(
        get(&registry, "/v2/", &token),
        200,
        "{}",
        registry.log_tail()
    );
    assert_eq!(
        get(&registry, "/v2/acme/app/tags/list", &token),
        404,
        "{}",
        registry.log_tail()
    );
    let other = keys.sign(&claims("victim/private")).unwrap();
    assert_eq!(get(&registry, "/v2/acme/app/tags/list", &other), 401);
}

/// Without x5c, 2.8 looks the libtrust `kid` up among the bundle certificates' keys: a token
/// signed by a key whose certificate is in the bundle (here the CA key itself) is accepted.
#[test]
fn registry_accepts_kid_of_a_bundle_key_without_x5c() {
    let dir = tempfile::tempdir().unwrap();
    keygen_keys(KeyAlg::Es256, dir.path());
    let keys = KeySet::load(&signing(dir.path().join("keys/ca/ca.key"), None)).unwrap();
    let registry = registry(&dir.path().join("keys/ca.crt"));
    let token = keys.sign(&claims("acme/app")).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert!(header.x5c.is_none() && header.kid.as_deref() == Some(keys.current.kid()));
    assert_eq!(
        get(&registry, "/v2/", &token),
        200,
        "{}",
        registry.log_tail()
    );
    assert_eq!(get(&registry, "/v2/acme/app/tags/list", &token), 404);

    // The same key under a thumbprint kid is unknown to 2.8.
    let mut cfg = signing(dir.path().join("keys/ca/ca.key"), None);
    cfg.key_id_format = KeyIdFormat::Thumbprint;
    let thumb = KeySet::load(&cfg)
        .unwrap()
        .sign(&claims("acme/app"))
        .unwrap();
    assert_eq!(get(&registry, "/v2/", &thumb), 401);
}

/// The registry checks `aud`, `iss` and `exp` (with its fixed 60 s leeway).
#[test]
fn registry_refuses_wrong_audience_issuer_and_expired_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keygen_keys(KeyAlg::Es256, dir.path());
    let registry = registry(&dir.path().join("keys/ca.crt"));
    let mut wrong_aud = claims("acme/app");
    wrong_aud.aud = "other-registry".into();
    let mut wrong_iss = claims("acme/app");
    wrong_iss.iss = "someone-else".into();
    let mut expired = claims("acme/app");
    expired.exp = now() - 120;
    for (what, c) in [("aud", wrong_aud), ("iss", wrong_iss), ("exp", expired)] {
        assert_eq!(
            get(&registry, "/v2/", &keys.sign(&c).unwrap()),
            401,
            "wrong {what} accepted"
        );
    }
}

/// Distribution 2.8 does not accept EdDSA tokens: its libtrust knows only EC and RSA keys,
/// so the Ed25519 leaf of the x5c chain is refused. (Distribution 3.x is needed for EdDSA.)
#[test]
fn registry_2_8_refuses_eddsa_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keygen_keys(KeyAlg::EdDsa, dir.path());
    let registry = registry(&dir.path().join("keys/ca.crt"));
    let token = keys.sign(&claims("acme/app")).unwrap();
    assert_eq!(get(&registry, "/v2/", &token), 401);
    assert!(
        registry
            .log_tail()
            .contains("unable to make libtrust public key"),
        "{}",
        registry.log_tail()
    );
}
