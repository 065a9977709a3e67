//! registry-token against a real, OpenID Certified provider: panva's `oidc-provider`
//! (`scripts/oidc-authority`, on the machine's Node). A client gets a DPoP-bound JWT access token
//! with the client-credentials grant, exactly as a CI job would from its IdP, and pushes and
//! pulls through the sidecar with it; a client of the public plan is refused a push with its
//! reason, and the provider's bound token is useless without the client's DPoP key. The
//! compose stack's `get-token.mjs` gets bound and unbound OpToks from it for the stack's two modes.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::sidecar::{SERVICE, TOKEN_ISSUER};
use common::*;
use serde_json::Value;

/// `node scripts/oidc-authority/index.mjs` on a free port, stopped on drop.
struct OidcAuthority {
    child: Child,
    issuer: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl OidcAuthority {
    fn start() -> OidcAuthority {
        let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oidc-authority");
        assert!(
            project.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: npm ci --prefix scripts/oidc-authority (.ci/run does it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("oidc.log");
        let file = File::create(&log).unwrap();
        let child = Command::new("node")
            .arg(project.join("index.mjs"))
            .args(["--port", &port.to_string(), "--dir"])
            .arg(dir.path().join("keys"))
            .arg("--clients")
            .arg(project.join("clients.json"))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("run node (apt-get install nodejs npm; .ci/run installs it)");
        let authority = OidcAuthority {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let http = client();
        let metadata = format!("{}/.well-known/openid-configuration", authority.issuer);
        poll(START_DEADLINE, "oidc-provider discovery", || {
            (http.get(&metadata).send().ok()?.status() == 200).then_some(())
        });
        authority
    }

    /// A client-credentials access token for `client_id`, bound to `key` by a DPoP proof.
    fn token(&self, client_id: &str, secret: &str, key: &DpopKey) -> (u16, Value) {
        let endpoint = format!("{}/token", self.issuer);
        let proof = key.sign(&key.header(), &key.claims("POST", &endpoint, None));
        let response = client()
            .post(&endpoint)
            .basic_auth(client_id, Some(secret))
            .header("DPoP", proof)
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "registry.token.issue"),
            ])
            .send()
            .expect("POST /token at oidc-provider");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }
}

impl Drop for OidcAuthority {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "oidc-provider log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// The sidecar trusts oidc-provider's OpToks as they come (issuer, `aud` registry, scope
/// `registry.token.issue`, `cnf.jkt`, the plan and license claims per client): the enterprise
/// client pushes and pulls an image with skopeo, the public client's push is refused with
/// `plan_denied`, and the bound access token without a proof by its key is refused.
#[test]
fn oidc_provider_tokens_push_through_the_sidecar() {
    let authority = OidcAuthority::start();
    let keys = Keys::generate();
    let port = free_port();
    let registry = Registry::start(Some(TokenAuth {
        realm: format!("http://127.0.0.1:{port}/token"),
        service: SERVICE.into(),
        issuer: TOKEN_ISSUER.into(),
        rootcertbundle: keys.ca_crt(),
    }));
    let mut config = SidecarConfig::new(&registry.url(), &authority.issuer, keys.path());
    config.listen_port = Some(port);
    let sidecar = Sidecar::start(config);

    // The provider's answer: a DPoP-bound JWT access token.
    let key = DpopKey::new();
    let (status, body) = authority.token("acme-ci", "acme-ci-development-secret", &key);
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
    let (status, body) =
        authority.token("public-reader", "public-reader-development-secret", &reader);
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
        .args(["--issuer", &authority.issuer])
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
    let authority = OidcAuthority::start();
    let keys = Keys::generate();
    let port = free_port();
    let registry = Registry::start(Some(TokenAuth {
        realm: format!("http://127.0.0.1:{port}/token"),
        service: SERVICE.into(),
        issuer: TOKEN_ISSUER.into(),
        rootcertbundle: keys.ca_crt(),
    }));
    let mut config = SidecarConfig::new(&registry.url(), &authority.issuer, keys.path());
    config.listen_port = Some(port);
    let dpop = Sidecar::start(config);
    let mut config = SidecarConfig::new(&registry.url(), &authority.issuer, keys.path());
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
