//! Refresh tokens (docs/http.md, "Refresh tokens"; docs/security.md, case 81): `docker login` once
//! with a short-lived OpTok, then pushes and pulls long after it expired, with the real clients
//! that keep the refresh token (the docker daemon, skopeo's `identitytoken`), revocation by config
//! edit, the binding to a client certificate or a DPoP key, and the refusals of forged tokens.
//!
//! Authority: the real `oidc-provider` (common::oidc) throughout: `docker login` and skopeo
//! with an OpTok of its short-lived client (its tokens live `SHORT_SECONDS`), revocation with
//! two clients' licenses, its certificate-bound and DPoP-bound OpToks. The forged refresh
//! tokens are minted here with the sidecar's own library and keys, not by an Authority.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use common::dockerd::{rootfs_tar, Dockerd};
use common::oidc::{CERT_BOUND, ENTERPRISE, ENTERPRISE_2, SHORT, SHORT_SECONDS};
use common::pki::{x5t, Pki};
use common::*;
use registry_token::token::refresh::{self, RefreshClaims};
use registry_token::token::{KeyIdFormat, KeySet, SigningConfig};
use serde_json::{json, Value};

/// Refresh tokens on, `constraint` as sender constraint, an Authority clock skew of 1 s (so a
/// short OpTok's expiry shows quickly), and `patch` merged over the config.
fn refresh_config(config: &mut SidecarConfig, constraint: &str, patch: &Value) {
    config.sender_constraint = constraint.into();
    config.patch = json!({
        "refreshTokens": {"enabled": true},
        "authority": {"clockSkew": "1s"},
    });
    common::sidecar::merge(&mut config.patch, patch);
}

/// A stack on the provider with `refresh_config` under `senderConstraint: none`.
fn provider_refresh_stack() -> ProviderStack {
    Stack::on_provider_with(|config| refresh_config(config, "none", &json!({})))
}

/// What `docker login` sends: `GET /token?...&offline_token=true&client_id=docker` with the
/// OpTok as Basic password.
fn login(http: &reqwest::blocking::Client, sidecar: &Sidecar, optok: &str) -> (u16, Value) {
    let response = http
        .get(sidecar.realm())
        .query(&[
            ("account", "x"),
            ("client_id", "docker"),
            ("offline_token", "true"),
            ("service", "registry.test"),
        ])
        .basic_auth("x", Some(optok))
        .send()
        .expect("GET /token");
    (
        response.status().as_u16(),
        response.json().unwrap_or(Value::Null),
    )
}

/// `login` that must succeed: the refresh token.
fn login_ok(sidecar: &Sidecar, optok: &str) -> String {
    let (status, body) = login(&client(), sidecar, optok);
    assert_eq!(status, 200, "{body}");
    body["refresh_token"]
        .as_str()
        .expect("a refresh_token beside the access token")
        .to_string()
}

/// Waits until the OpTok itself is refused at the realm (a plain `GET /token` with it as
/// Basic password, no refresh token asked for): it has expired.
fn wait_expired(sidecar: &Sidecar, optok: &str) {
    poll(
        Duration::from_secs(SHORT_SECONDS + 30),
        "the OpTok to expire",
        || {
            let status = client()
                .get(sidecar.realm())
                .query(&[("service", "registry.test")])
                .basic_auth("x", Some(optok))
                .send()
                .expect("GET /token")
                .status();
            (status == 401).then_some(())
        },
    );
}

/// The refresh grant as containerd and docker send it: a form with `grant_type`,
/// `refresh_token`, `service`, one space-separated `scope`, `client_id`; `extra` headers.
fn redeem(
    http: &reqwest::blocking::Client,
    sidecar: &Sidecar,
    token: &str,
    scope: &str,
    extra: &[(&str, String)],
) -> (u16, Value) {
    let mut request = http.post(sidecar.realm()).form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("service", "registry.test"),
        ("scope", scope),
        ("client_id", "containerd-client"),
    ]);
    for (name, value) in extra {
        request = request.header(*name, value);
    }
    let response = request.send().expect("POST /token");
    (
        response.status().as_u16(),
        response.json().unwrap_or(Value::Null),
    )
}

/// Asserts a `400 invalid_grant` with `reason` that carries no token.
fn assert_invalid_grant(what: &str, (status, body): (u16, Value), reason: &str) {
    assert_eq!(
        (status, body["error"].as_str(), body["reason"].as_str()),
        (400, Some("invalid_grant"), Some(reason)),
        "{what}: {body}"
    );
    assert!(
        body.get("token").is_none() && body.get("access_token").is_none(),
        "{what}: a refusal carries no token"
    );
}

/// Writes a containers/image `auth.json` in the shape `docker login` leaves behind: for `host`,
/// an `identitytoken` and an `auth` holding only the user name (`x:`, no password).
/// containers/image skips an entry whose `auth` is not `user:password` shaped, so the user part
/// is what makes it read the `identitytoken` at all.
fn identity_authfile(dir: &Path, host: &str, token: &str) -> PathBuf {
    let path = dir.join("auth.json");
    let user_only = base64::engine::general_purpose::STANDARD.encode("x:");
    let auth = json!({"auths": {host: {"auth": user_only, "identitytoken": token}}});
    fs::write(&path, auth.to_string()).unwrap();
    path
}

/// skopeo with only an `identitytoken` (no password) in its `--authfile` (the containers/image
/// refresh path), from a login with the provider's short-lived OpTok, pushes and pulls a 2-layer image through the sidecar after the OpTok it came from expired;
/// every digest survives, the refresh grant is counted, and neither secret reaches the log.
#[test]
fn skopeo_with_only_an_identitytoken_outlives_its_optok() {
    let stack = provider_refresh_stack();
    let optok = stack.authority.optok(&SHORT, None);
    let refresh_token = login_ok(&stack.sidecar, &optok);
    let claims = jwt_claims(&refresh_token);
    assert_eq!(
        (&claims["sub"], &claims["client_id"], &claims["license"]),
        (&json!(SHORT.id), &json!("docker"), &json!(SHORT.license))
    );
    assert_eq!(jwt_header(&refresh_token)["typ"], "rt+jwt");
    assert!(
        claims["exp"].as_i64().unwrap() > now() + 29 * 24 * 3600,
        "720h by default"
    );
    wait_expired(&stack.sidecar, &optok);

    let home = tempfile::tempdir().unwrap();
    let authfile = identity_authfile(home.path(), &stack.sidecar.addr(), &refresh_token);
    let authfile = authfile.to_str().unwrap();
    let src = tempfile::tempdir().unwrap();
    let image = oci_layout(src.path(), "v1", &[1 << 20, 10 << 10]);
    let dest = format!("docker://{}/acme/app:v1", stack.sidecar.addr());
    skopeo_ok(&[
        "copy",
        "--preserve-digests",
        "--authfile",
        authfile,
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", src.path().display()),
        &dest,
    ]);
    let back = tempfile::tempdir().unwrap();
    skopeo_ok(&[
        "copy",
        "--preserve-digests",
        "--dest-oci-accept-uncompressed-layers",
        "--authfile",
        authfile,
        "--src-tls-verify=false",
        &dest,
        &format!("oci:{}:v1", back.path().display()),
    ]);
    assert_eq!(read_oci_layout(back.path(), "v1"), image);
    let refreshed = stack
        .sidecar
        .metric("registry_token_refresh_total", &[("result", "ok")]);
    assert!(
        refreshed >= 2.0,
        "skopeo redeemed for push and pull: {refreshed}"
    );
    assert_eq!(
        stack
            .sidecar
            .metric("registry_token_refresh_total", &[("result", "issued")]),
        1.0
    );
    stack.sidecar.assert_log_free_of(&[&refresh_token, &optok]);
}

/// The docker CLI against a daemon the test started: `docker login` once with the provider's
/// OpTok that lives a few seconds stores an `identitytoken` (and no password) in its config; after the
/// OpTok expired, `docker push` and (after removing the local image) `docker pull` still work,
/// by the daemon's refresh grant.
#[test]
fn docker_login_once_then_push_and_pull_after_the_optok_expired() {
    let dockerd = Dockerd::start();
    let stack = provider_refresh_stack();
    let host = stack.sidecar.addr();
    let reference = format!("{host}/acme/app:v1");
    let work = tempfile::tempdir().unwrap();
    // An image of our own, before the clock starts: `docker import` of a one-file tar.
    let content = format!("refresh {}\n", rand::random::<u64>());
    let tar_path = rootfs_tar(work.path(), &content);
    dockerd.docker_ok(&["import", tar_path.to_str().unwrap(), &reference], None);

    let optok = stack.authority.optok(&SHORT, None);
    dockerd.docker_ok(
        &["login", &host, "-u", "x", "--password-stdin"],
        Some(&optok),
    );
    let config: Value =
        serde_json::from_slice(&fs::read(dockerd.config_dir().join("config.json")).unwrap())
            .unwrap();
    let entry = &config["auths"][&host];
    let identity = entry["identitytoken"]
        .as_str()
        .unwrap_or_else(|| panic!("identitytoken in config.json: {entry}"));
    assert_eq!(jwt_header(identity)["typ"], "rt+jwt");
    let stored_password = entry["auth"].as_str().map(|a| {
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(a).unwrap()).unwrap()
    });
    assert!(
        !stored_password.unwrap_or_default().contains(&optok),
        "the OpTok is not kept"
    );
    wait_expired(&stack.sidecar, &optok);

    dockerd.docker_ok(&["push", &reference], None);
    dockerd.docker_ok(&["rmi", &reference], None);
    dockerd.docker_ok(&["pull", &reference], None);
    assert!(
        stack
            .sidecar
            .metric("registry_token_refresh_total", &[("result", "ok")])
            >= 2.0,
        "the daemon redeemed the refresh token for push and pull"
    );
    stack.sidecar.assert_log_free_of(&[identity, &optok]);
}

/// Revoking the license in the file ends its refresh tokens at the reload; listing one `jti`
/// in `revokedRefreshTokens` ends that token only. (Logins with the provider's OpToks of two
/// clients, one license each.)
#[test]
fn revoking_the_license_or_the_jti_ends_refresh_tokens() {
    let stack = provider_refresh_stack();
    let sidecar = &stack.sidecar;
    let http = client();
    let scope = "repository:acme/app:pull";
    let of_client = |who: &OidcClient| login_ok(sidecar, &stack.authority.optok(who, None));
    let revoked_license = of_client(&ENTERPRISE);
    let single = of_client(&ENTERPRISE_2);
    let sibling = of_client(&ENTERPRISE_2);
    for token in [&revoked_license, &single, &sibling] {
        assert_eq!(redeem(&http, sidecar, token, scope, &[]).0, 200);
    }

    let mut config = sidecar.config().clone();
    config.revoked_licenses.push(ENTERPRISE.license.into());
    let generation = sidecar.generation();
    sidecar.apply(&config);
    sidecar.wait_generation_above(generation);
    assert_invalid_grant(
        "license revoked",
        redeem(&http, sidecar, &revoked_license, scope, &[]),
        "license_revoked",
    );
    assert_eq!(redeem(&http, sidecar, &single, scope, &[]).0, 200);

    let jti = jwt_claims(&single)["jti"].as_str().unwrap().to_string();
    common::sidecar::merge(&mut config.patch, &json!({"revokedRefreshTokens": [jti]}));
    let generation = sidecar.generation();
    sidecar.apply(&config);
    sidecar.wait_generation_above(generation);
    assert_invalid_grant(
        "jti revoked",
        redeem(&http, sidecar, &single, scope, &[]),
        "refresh_token_revoked",
    );
    assert_eq!(
        redeem(&http, sidecar, &sibling, scope, &[]).0,
        200,
        "another token of the same license still works"
    );
    assert!(
        sidecar.metric(
            "registry_token_refresh_total",
            &[("result", "license_revoked")]
        ) >= 1.0
    );
}

/// An HTTP client presenting the certificate in `pki`'s `client-a/` or `client-b/`.
fn with_cert(pki: &Pki, dir: &str) -> reqwest::blocking::Client {
    let read = |file: &str| fs::read(pki.path(dir).join(file)).unwrap();
    let identity =
        reqwest::Identity::from_pkcs8_pem(&read("client.cert"), &read("client.key")).unwrap();
    reqwest::blocking::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .identity(identity)
        .build()
        .unwrap()
}

/// Over TLS with a client CA (`dpopOrMtls`): a refresh token from the provider's
/// certificate-bound OpTok redeems only on a connection with that certificate; one from its
/// DPoP-bound OpTok only with a fresh DPoP proof (POST, the realm, no `ath`) by that key, and
/// each proof only once.
#[test]
fn bound_refresh_tokens_need_their_certificate_or_key() {
    let pki = Pki::new();
    let stack =
        Stack::on_provider_with(|config| refresh_config(config, "dpopOrMtls", &pki.tls_patch()));
    let sidecar = &stack.sidecar;
    let realm = sidecar.realm();
    let scope = "repository:acme/app:pull";

    // Certificate-bound: login with client a's certificate and the OpTok as Bearer.
    let optok = stack.authority.mtls_optok(&CERT_BOUND, &pki, "client-a");
    let response = with_cert(&pki, "client-a")
        .get(&realm)
        .query(&[("service", "registry.test"), ("offline_token", "true")])
        .bearer_auth(&optok)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    let bound = body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string();
    assert_eq!(
        jwt_claims(&bound)["cnf"],
        json!({"x5t#S256": x5t(&pki.client_a)})
    );
    assert_eq!(
        redeem(&with_cert(&pki, "client-a"), sidecar, &bound, scope, &[]).0,
        200
    );
    assert_invalid_grant(
        "no client certificate",
        redeem(&client(), sidecar, &bound, scope, &[]),
        "sender_constraint_mismatch",
    );
    assert_invalid_grant(
        "another client certificate",
        redeem(&with_cert(&pki, "client-b"), sidecar, &bound, scope, &[]),
        "sender_constraint_mismatch",
    );

    // DPoP-bound: login with the DPoP scheme and a proof.
    let (key, optok) = stack.authority.bound(&ENTERPRISE);
    let response = client()
        .get(&realm)
        .query(&[("service", "registry.test"), ("offline_token", "true")])
        .header("Authorization", format!("DPoP {optok}"))
        .header("DPoP", key.proof("GET", &realm, &optok))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    let bound = body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string();
    assert_eq!(jwt_claims(&bound)["cnf"], json!({"jkt": key.thumbprint()}));
    let proof_by = |k: &DpopKey| k.sign(&k.header(), &k.claims("POST", &realm, None));
    let proof = proof_by(&key);
    let (status, body) = redeem(
        &client(),
        sidecar,
        &bound,
        scope,
        &[("DPoP", proof.clone())],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refresh_token"].as_str(), Some(bound.as_str()));
    assert_invalid_grant(
        "the same proof again",
        redeem(&client(), sidecar, &bound, scope, &[("DPoP", proof)]),
        "dpop_replay",
    );
    assert_invalid_grant(
        "no proof",
        redeem(&client(), sidecar, &bound, scope, &[]),
        "sender_constraint_mismatch",
    );
    assert_invalid_grant(
        "a proof by another key",
        redeem(
            &client(),
            sidecar,
            &bound,
            scope,
            &[("DPoP", proof_by(&DpopKey::new()))],
        ),
        "sender_constraint_mismatch",
    );
    let get_proof = key.sign(&key.header(), &key.claims("GET", &realm, None));
    assert_invalid_grant(
        "a proof for GET",
        redeem(&client(), sidecar, &bound, scope, &[("DPoP", get_proof)]),
        "invalid_dpop_proof",
    );
    assert_eq!(
        redeem(
            &client(),
            sidecar,
            &bound,
            scope,
            &[("DPoP", proof_by(&key))]
        )
        .0,
        200,
        "a fresh proof by the key still redeems"
    );
}

/// Security case 81: a tampered, expired, foreign (another keygen's key, even under this key's
/// `kid`), registry-token or OpTok "refresh token" is `400 invalid_grant`, never a 500 or a
/// token; an unknown `grant_type` is `400 unsupported_grant_type`; a refresh token opens no
/// `/v2/` door, neither at the sidecar nor at the registry itself.
#[test]
fn forged_refresh_tokens_are_invalid_grant() {
    let stack = provider_refresh_stack();
    let sidecar = &stack.sidecar;
    let http = client();
    let scope = "repository:acme/app:pull,push";
    let optok = stack.authority.optok(&ENTERPRISE, None);
    let good = login_ok(sidecar, &optok);
    let (status, body) = redeem(&http, sidecar, &good, scope, &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "repository:acme/app:pull,push");
    let access_token = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["access_token"].as_str(), Some(access_token.as_str()));
    assert!(body["expires_in"].as_i64().unwrap() >= 60 && body["issued_at"].is_string());

    let settings = registry_token::config::load(sidecar.config_path()).unwrap();
    let claims: RefreshClaims = serde_json::from_value(jwt_claims(&good)).unwrap();
    let expired = refresh::mint(
        &settings.issuer.keys,
        &RefreshClaims {
            iat: now() - 7200,
            exp: now() - 3600,
            ..claims.clone()
        },
    )
    .unwrap()
    .0;
    let other = Keys::generate();
    let foreign_keys = KeySet::load(&SigningConfig {
        key_path: other.path().join("signing.pem"),
        key_password: None,
        certificate_chain: None,
        key_id: Some(settings.issuer.keys.current.kid().to_string()),
        key_id_format: KeyIdFormat::Libtrust,
        previous_keys: vec![],
    })
    .unwrap();
    let foreign = refresh::mint(&foreign_keys, &claims).unwrap().0;
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let mut payload = jwt_claims(&good);
        payload["plan"] = json!("gold");
        payload["exp"] = json!(now() + 10 * 365 * 86400);
        format!("{}.{}.{}", parts[0], b64(payload.to_string()), parts[2])
    };
    for (what, token, reason) in [
        ("tampered", tampered.as_str(), "refresh_token_invalid"),
        ("expired", expired.as_str(), "refresh_token_expired"),
        ("foreign", foreign.as_str(), "refresh_token_invalid"),
        (
            "a registry token",
            access_token.as_str(),
            "refresh_token_invalid",
        ),
        ("the OpTok", optok.as_str(), "refresh_token_invalid"),
        ("not a JWT", "abc.def", "refresh_token_invalid"),
    ] {
        assert_invalid_grant(what, redeem(&http, sidecar, token, scope, &[]), reason);
    }

    let response = http
        .post(sidecar.realm())
        .form(&[
            ("grant_type", "client_credentials"),
            ("service", "registry.test"),
        ])
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"], "unsupported_grant_type", "{body}");

    assert_eq!(
        sidecar.v2("/v2/acme/app/tags/list", Some(&good)).status(),
        401,
        "the sidecar refuses a refresh token as a registry token"
    );
    let direct = http
        .get(format!("{}/v2/acme/app/tags/list", stack.registry.url()))
        .bearer_auth(&good)
        .send()
        .unwrap();
    assert_eq!(direct.status(), 401, "Distribution refuses it (aud)");
    sidecar.assert_log_free_of(&[&good, &expired, &foreign, &optok]);

    // `token inspect --verify` reads refresh tokens: whose, bound to what, how to end it.
    let inspect = |token: &str| {
        let out = Command::new(common::sidecar::BIN)
            .arg("--config")
            .arg(sidecar.config_path())
            .args(["token", "inspect", token, "--verify"])
            .output()
            .expect("run token inspect");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), stdout)
    };
    let (code, stdout) = inspect(&good);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "refresh token of {} (plan enterprise, license {}, client docker)",
            ENTERPRISE.id, ENTERPRISE.license
        )) && stdout.contains(&format!("revokedRefreshTokens: [{}]", claims.jti))
            && stdout.contains("verify: valid refresh token"),
        "{stdout}"
    );
    let (code, stdout) = inspect(&expired);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("refresh_token_expired"), "{stdout}");
    // `doctor` checks that the signing key mints refresh tokens that redeem.
    let out = Command::new(common::sidecar::BIN)
        .arg("--config")
        .arg(sidecar.config_path())
        .args(["doctor", "--check", "refresh-tokens", "--json"])
        .output()
        .expect("run doctor");
    let findings: Value = serde_json::from_slice(&out.stdout).expect("doctor --json");
    let check = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "check.refresh-tokens")
        .unwrap_or_else(|| panic!("check.refresh-tokens: {findings:#}"));
    assert_eq!(check["status"], "pass", "{check:#}");
}
