//! Round trips of a real multi-layer image through the sidecar into a real `docker-registry`
//! (Distribution 2.8.2) that runs token auth with keygen's `ca.crt` as its `rootcertbundle`, so
//! the registry verifies every token the sidecar issued by itself. skopeo pushes from an OCI
//! layout, skopeo pulls back into a new one, and every digest is compared.
//!
//! Authority: the real `oidc-provider` (common::oidc), whose client-credentials OpToks are
//! what a CI job brings: DPoP-bound for the DPoP flow, unbound for the stock-client flow.

mod common;

use base64::Engine;
use common::oidc::ENTERPRISE;
use common::*;
use serde_json::Value;

/// Layers of 50 MiB, 1 MiB and 10 KiB: one large enough to stream in many chunks.
const LAYERS: [usize; 3] = [50 << 20, 1 << 20, 10 << 10];

/// Pushes `oci:SRC:v1` to `dest` with `push_auth`, pulls it back with `pull_auth`, and checks the
/// pulled manifest, config and layers are byte-identical to what was pushed.
fn round_trip(dest: &str, push_auth: &[&str], pull_auth: &[&str]) -> OciImage {
    let src = tempfile::tempdir().unwrap();
    let image = oci_layout(src.path(), "v1", &LAYERS);
    let src_ref = format!("oci:{}:v1", src.path().display());
    let mut push = vec!["copy", "--preserve-digests", "--dest-tls-verify=false"];
    push.extend_from_slice(push_auth);
    push.extend_from_slice(&[&src_ref, dest]);
    skopeo_ok(&push);

    let back = tempfile::tempdir().unwrap();
    let back_ref = format!("oci:{}:v1", back.path().display());
    let mut pull = vec![
        "copy",
        "--preserve-digests",
        "--dest-oci-accept-uncompressed-layers",
        "--src-tls-verify=false",
    ];
    pull.extend_from_slice(pull_auth);
    pull.extend_from_slice(&[dest, &back_ref]);
    skopeo_ok(&pull);

    let pulled = read_oci_layout(back.path(), "v1");
    assert_eq!(
        pulled.manifest_digest, image.manifest_digest,
        "manifest digest"
    );
    assert_eq!(pulled.config_digest, image.config_digest, "config digest");
    assert_eq!(
        pulled.layer_digests, image.layer_digests,
        "layer digests, in order"
    );
    image
}

/// The registry itself, asked directly with `token`, serves the manifest under `digest`: the
/// token verifies in Distribution 2.8.2 (x5c chain to `ca.crt`, `iss`, `aud`, `access`).
fn registry_accepts(registry: &Registry, token: &str, digest: &str) {
    let http = client();
    let anonymous = http.get(format!("{}/v2/", registry.url())).send().unwrap();
    assert_eq!(
        anonymous.status(),
        401,
        "the registry runs token auth of its own"
    );
    let response = http
        .get(format!("{}/v2/acme/app/manifests/v1", registry.url()))
        .bearer_auth(token)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "registry with the sidecar's token");
    let served = response.headers()["docker-content-digest"]
        .to_str()
        .unwrap();
    assert_eq!(served, digest);
}

/// The harness alone: skopeo copies an OCI layout into a registry that has no auth of its own
/// and back, digests preserved. When this fails, the fault is in the environment, not the sidecar.
#[test]
fn harness_copies_an_oci_layout_through_a_plain_registry() {
    let registry = Registry::start(None);
    let src = tempfile::tempdir().unwrap();
    let image = oci_layout(src.path(), "v1", &[1 << 20, 10 << 10]);
    let dest = format!("docker://{}/acme/app:v1", registry.addr());
    let src_ref = format!("oci:{}:v1", src.path().display());
    skopeo_ok(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &src_ref,
        &dest,
    ]);
    let back = tempfile::tempdir().unwrap();
    let back_ref = format!("oci:{}:v1", back.path().display());
    skopeo_ok(&[
        "copy",
        "--preserve-digests",
        "--dest-oci-accept-uncompressed-layers",
        "--src-tls-verify=false",
        &dest,
        &back_ref,
    ]);
    assert_eq!(read_oci_layout(back.path(), "v1"), image);
}

/// The DPoP flow end to end: a token from `/token` (the provider's OpTok bound to a DPoP key,
/// scope `repository:acme/app:pull,push`) carries exactly that access for the OpTok's subject, pushes a 3-layer image
/// through the sidecar with `--dest-registry-token`, pulls it back with `--src-registry-token`
/// with every digest intact, and is accepted by the registry's own token verification. Neither
/// token appears in the sidecar's log.
#[test]
fn skopeo_round_trip_with_a_dpop_issued_token() {
    let stack = Stack::on_provider();
    let (key, optok) = stack.authority.bound(&ENTERPRISE);
    let token = stack
        .sidecar
        .token(&["repository:acme/app:pull,push"], &optok, &key);

    let claims = jwt_claims(&token);
    assert_eq!(claims["iss"], "registry-token");
    assert_eq!(
        claims["aud"],
        Value::from("registry.test"),
        "aud is a JSON string"
    );
    assert_eq!(claims["sub"], ENTERPRISE.id);
    let access = claims["access"].as_array().expect("access list");
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["type"], "repository");
    assert_eq!(access[0]["name"], "acme/app");
    let mut actions: Vec<&str> = access[0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    actions.sort();
    assert_eq!(actions, ["pull", "push"]);
    assert!(
        jwt_header(&token)["x5c"].is_array(),
        "x5c header for Distribution 2.8"
    );

    let dest = format!("docker://{}/acme/app:v1", stack.sidecar.addr());
    let image = round_trip(
        &dest,
        &["--dest-registry-token", &token],
        &["--src-registry-token", &token],
    );
    registry_accepts(&stack.registry, &token, &image.manifest_digest);
    let patches = stack
        .sidecar
        .metric("registry_proxy_requests_total", &[("method", "PATCH")]);
    assert!(patches >= 1.0, "blob uploads went through the proxy");
    stack.sidecar.assert_log_free_of(&[&token, &optok]);
}

/// Stock-client flow under `senderConstraint: none`: skopeo with `--dest-creds user:OPTOK` (an
/// unbound OpTok from the provider)
/// pings `/v2/`, follows the sidecar's Bearer challenge to `/token` itself, sends the OpTok as
/// the Basic password, and the token it gets pushes and (with `--src-creds`) pulls the image.
/// Neither the OpTok nor the Basic credentials appear in the sidecar's log.
#[test]
fn skopeo_follows_the_challenge_with_the_optok_as_basic_password() {
    let stack = Stack::on_provider_with(|config| config.sender_constraint = "none".into());
    let optok = stack.authority.optok(&ENTERPRISE, None);
    let creds = format!("bob:{optok}");
    let issued_before = stack
        .sidecar
        .metric("registry_token_issued_total", &[("plan", "enterprise")]);

    let dest = format!("docker://{}/acme/app:v1", stack.sidecar.addr());
    round_trip(&dest, &["--dest-creds", &creds], &["--src-creds", &creds]);

    let issued = stack
        .sidecar
        .metric("registry_token_issued_total", &[("plan", "enterprise")]);
    assert!(
        issued >= issued_before + 2.0,
        "skopeo fetched tokens for push and pull: {issued}"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(&creds);
    stack.sidecar.assert_log_free_of(&[&optok, &basic]);
}
