//! registry-token against a real, OpenID Certified provider: panva's `oidc-provider`
//! (`scripts/oidc-authority`, on the machine's Node). A client gets a DPoP-bound JWT access token
//! with the client-credentials grant, exactly as a CI job would from its IdP, and pushes and
//! pulls through the sidecar with it; a client of the public plan is refused a push with its
//! reason, and the provider's bound token is useless without the client's DPoP key. The
//! compose stack's `get-token.mjs` gets bound and unbound OpToks from it for the stack's two modes.
//! A certificate-bound client (RFC 8705) gets `cnf.x5t#S256` of the certificate it presented at
//! the provider's mTLS token endpoint, and nothing without one.
//!
//! Authority: the real provider throughout, with the shipped `clients.json` (what the compose
//! stack and the docs run) and, for certificate binding, the test clients of `common::oidc`.

mod common;

use std::path::Path;
use std::process::Command;

use common::sidecar::{SERVICE, TOKEN_ISSUER};
use common::*;
use serde_json::{json, Value};

/// The development Authority as shipped: the clients of `scripts/oidc-authority/clients.json`.
fn shipped_authority() -> OidcAuthority {
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oidc-authority/clients.json");
    OidcAuthority::start_with_clients(&clients)
}

/// `acme-ci` of the shipped clients.json.
const ACME_CI: OidcClient = OidcClient::new(
    "acme-ci",
    "acme-ci-development-secret",
    "enterprise",
    "LIC-0042",
);
/// `public-reader` of the shipped clients.json.
const PUBLIC_READER: OidcClient = OidcClient::new(
    "public-reader",
    "public-reader-development-secret",
    "public",
    "LIC-0043",
);

/// The sidecar trusts oidc-provider's OpToks as they come (issuer, `aud` registry, scope
/// `registry.token.issue`, `cnf.jkt`, the plan and license claims per client): the enterprise
/// client pushes and pulls an image with skopeo, the public client's push is refused with
/// `plan_denied`, and the bound access token without a proof by its key is refused.
#[test]
fn oidc_provider_tokens_push_through_the_sidecar() {
    let authority = shipped_authority();
    let keys = Keys::generate();
    let port = free_port();
    let registry = Registry::start(Some(TokenAuth {
        realm: format!("http://127.0.0.1:{port}/token"),
        service: SERVICE.into(),
        issuer: TOKEN_ISSUER.into(),
        rootcertbundle: keys.ca_crt(),
    }));
    let mut config = SidecarConfig::new(&registry.url(), &authority.issuer(), keys.path());
    config.listen_port = Some(port);
    let sidecar = Sidecar::start(config);

    // The provider's answer: a DPoP-bound JWT access token.
    let key = DpopKey::new();
    let (status, body) = authority.request(&ACME_CI, Some(&key));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let optok = body["access_token"].as_str().unwrap().to_string();
    let claims: Value =
        serde_json::from_slice(&unb64(optok.split('.').nth(1).unwrap())).expect("JWT claims");
    assert_eq!(claims["cnf"]["jkt"], key.thumbprint().as_str());
    assert_eq!(claims["stellaops:plan"], "enterprise");

    // Push and pull through the sidecar with the registry token it issues for that OpTok.
    let token = sidecar.token(&["repository:acme/app:pull,push"], &optok, &key);
    let src = tempfile::tempdir().unwrap();
    oci_layout(src.path(), "v1", &[2048]);
    let dest = format!("docker://127.0.0.1:{port}/acme/app:v1");
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-registry-token",
        &token,
        &format!("oci:{}:v1", src.path().display()),
        &dest,
    ]);
    skopeo_ok(&[
        "inspect",
        "--tls-verify=false",
        "--registry-token",
        &token,
        &dest,
    ]);

    // Without a proof by the bound key, the provider's token gets nothing.
    let stranger = DpopKey::new();
    let response = sidecar.get_token(&["repository:acme/app:pull"], &optok, &stranger);
    assert_eq!(response.status(), 401);
    let refusal: Value = response.json().unwrap();
    assert_eq!(refusal["reason"], "sender_constraint_mismatch", "{refusal}");

    // The public plan's client may not push.
    let reader = DpopKey::new();
    let (status, body) = authority.request(&PUBLIC_READER, Some(&reader));
    assert_eq!(status, 200, "{body}");
    let public_optok = body["access_token"].as_str().unwrap();
    let response = sidecar.get_token(&["repository:acme/app:push"], public_optok, &reader);
    assert_eq!(response.status(), 403);
    let refusal: Value = response.json().unwrap();
    assert_eq!(refusal["reason"], "plan_denied", "{refusal}");
}

/// `node scripts/oidc-authority/get-token.mjs --issuer ISSUER ARGS`: its exit status and stdout.
fn get_token(authority: &OidcAuthority, args: &[&str]) -> (bool, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oidc-authority/get-token.mjs");
    let out = Command::new("node")
        .arg(script)
        .args(["--issuer", &authority.issuer()])
        .args(args)
        .output()
        .expect("run node");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `registry-token test URL ARGS`: its exit status and what it printed.
fn registry_token_test(url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(common::sidecar::BIN)
        .args(["test", url])
        .args(args)
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .expect("run registry-token test");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The compose stack's two modes, with the commands its header and the README give
/// (`get-token.mjs`, then `registry-token test` or a stock client's Basic login): with
/// `--dpop-key` the provider's OpTok is bound to that key (the key file is made if missing, and
/// reused) and `registry-token test` walks the flow with it under `senderConstraint: dpop`;
/// without it the OpTok is unbound, which the DPoP sidecar refuses and a `senderConstraint:
/// none` sidecar accepts as a docker-login password. Unknown clients and wrong secrets fail
/// with the provider's reason, never a token.
#[test]
fn get_token_script_serves_both_compose_modes() {
    let authority = shipped_authority();
    let keys = Keys::generate();
    let port = free_port();
    let registry = Registry::start(Some(TokenAuth {
        realm: format!("http://127.0.0.1:{port}/token"),
        service: SERVICE.into(),
        issuer: TOKEN_ISSUER.into(),
        rootcertbundle: keys.ca_crt(),
    }));
    let mut config = SidecarConfig::new(&registry.url(), &authority.issuer(), keys.path());
    config.listen_port = Some(port);
    let dpop = Sidecar::start(config);
    let mut config = SidecarConfig::new(&registry.url(), &authority.issuer(), keys.path());
    config.sender_constraint = "none".into();
    let stock = Sidecar::start(config);

    // DPoP mode: a bound OpTok, and the flow walked with it and its key.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("me.pem");
    let key_arg = key.to_str().unwrap();
    let (ok, optok, err) = get_token(&authority, &["--client", "acme-ci", "--dpop-key", key_arg]);
    assert!(ok, "{err}");
    let pem = std::fs::read(&key).unwrap();
    let claims: Value =
        serde_json::from_slice(&unb64(optok.split('.').nth(1).unwrap())).expect("JWT claims");
    assert!(claims["cnf"]["jkt"].is_string(), "{claims}");
    let (ok, again, err) = get_token(&authority, &["--client", "acme-ci", "--dpop-key", key_arg]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), pem, "the key file is reused");
    let again: Value =
        serde_json::from_slice(&unb64(again.split('.').nth(1).unwrap())).expect("JWT claims");
    assert_eq!(again["cnf"], claims["cnf"]);
    let optok_file = dir.path().join("optok");
    std::fs::write(&optok_file, &optok).unwrap();
    let scope = "repository:acme/app:pull,push";
    let (ok, text) = registry_token_test(
        &dpop.url(),
        &[
            "--scope",
            scope,
            "--optok",
            optok_file.to_str().unwrap(),
            "--dpop-key",
            key_arg,
        ],
    );
    assert!(ok, "registry-token test with the bound OpTok:\n{text}");

    // Stock-client mode: an unbound OpTok.
    let (ok, unbound, err) = get_token(&authority, &["--client", "acme-ci"]);
    assert!(ok, "{err}");
    let claims: Value =
        serde_json::from_slice(&unb64(unbound.split('.').nth(1).unwrap())).expect("JWT claims");
    assert!(claims.get("cnf").is_none(), "{claims}");
    assert_eq!(claims["stellaops:plan"], "enterprise");
    let unbound_file = dir.path().join("unbound");
    std::fs::write(&unbound_file, &unbound).unwrap();
    let (ok, text) = registry_token_test(
        &dpop.url(),
        &["--scope", scope, "--optok", unbound_file.to_str().unwrap()],
    );
    assert!(!ok, "the DPoP sidecar accepted an unbound OpTok:\n{text}");
    // What `docker login -u acme-ci --password-stdin` then sends.
    let response = client()
        .get(stock.realm())
        .query(&[("service", SERVICE), ("scope", scope)])
        .basic_auth("acme-ci", Some(&unbound))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    assert!(body["token"].is_string(), "{body}");

    // No token for an unknown client or a wrong secret.
    let (ok, out, err) = get_token(&authority, &["--client", "nobody"]);
    assert!(!ok && out.is_empty());
    assert!(err.contains("no client nobody"), "{err}");
    let (ok, out, err) = get_token(&authority, &["--client", "acme-ci", "--secret", "wrong"]);
    assert!(!ok && out.is_empty());
    assert!(err.contains("invalid_client"), "{err}");
}

/// `index.mjs --tls-port`: discovery keeps the plain-http issuer, JWKS and token endpoint, and
/// names the https token endpoint in `mtls_endpoint_aliases` with
/// `tls_client_certificate_bound_access_tokens`. The certificate-bound client gets a token only
/// there and only with a client certificate, bound to that certificate (`cnf.x5t#S256`, no
/// `jkt`); an ordinary client asking there with a certificate gets an unbound token.
#[test]
fn certificate_bound_client_gets_the_thumbprint_of_its_certificate() {
    use common::oidc::{CERT_BOUND, ENTERPRISE};
    use common::pki::{x5t, Pki};

    let authority = OidcAuthority::shared();
    let metadata = authority.metadata();
    assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(
        metadata["token_endpoint"],
        format!("{}/token", authority.issuer())
    );
    let alias = authority.mtls_token_endpoint();
    assert!(alias.starts_with("https://127.0.0.1:"), "{alias}");

    let pki = Pki::new();
    let optok = authority.mtls_optok(&CERT_BOUND, &pki, "client-a");
    let claims = jwt_claims(&optok);
    assert_eq!(
        claims["cnf"],
        json!({"x5t#S256": x5t(&pki.client_a)}),
        "{claims}"
    );
    assert_eq!(claims["stellaops:plan"], "enterprise");
    assert_eq!(claims["aud"], "registry");

    for (what, (status, body)) in [
        ("plain http", authority.request(&CERT_BOUND, None)),
        (
            "no certificate",
            authority.mtls_request(&CERT_BOUND, &pki, None),
        ),
    ] {
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{what}: {body}");
    }

    let (status, body) = authority.mtls_request(&ENTERPRISE, &pki, Some("client-a"));
    assert_eq!(status, 200, "{body}");
    let claims = jwt_claims(body["access_token"].as_str().unwrap());
    assert!(claims.get("cnf").is_none(), "{claims}");
}
