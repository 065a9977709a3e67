//! Plan limits (docs/http.md, "Plan limits") for end-to-end tests: a config with limited plans, an
//! image to pull, and manifest requests sent from a chosen loopback source address (127.0.0.2
//! stands for a second client, or for an edge proxy), reusable for a stack of several replicas.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::sidecar::SERVICE;
use super::{client, oci_layout, skopeo_ok, DpopKey, Plan, SidecarConfig, Stack};

/// The repository and tag every limits test pulls.
pub const IMAGE: &str = "acme/app";
pub const TAG: &str = "v1";
/// What OCI clients accept for a manifest (the pushed image is an OCI manifest).
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A plan `name` that may pull `acme/*`, with `limits` as written in docs/http.md.
pub fn limited_plan(name: &str, limits: Value) -> Plan {
    let mut plan = Plan::new(name, &[("acme/*", &["pull"])]);
    plan.limits = limits;
    plan
}

/// Adds plan `limited` (`acme/*` pull, `pulls: {count: pulls, per: 1h}`) to `config`; the
/// default plans (`enterprise` pushes without limits) stay.
pub fn with_pull_limit(config: &mut SidecarConfig, pulls: u64) {
    config.plans.push(limited_plan(
        "limited",
        json!({"pulls": {"count": pulls, "per": "1h"}}),
    ));
}

/// Pushes a small image to `acme/app:v1` through the sidecar at `addr` (`127.0.0.1:PORT`),
/// with a token of the unlimited `enterprise` plan.
pub fn seed_image(stack: &Stack, addr: &str) {
    let (key, optok) = stack.client("seeder", "enterprise", "LIC-SEED");
    let token = stack
        .sidecar
        .token(&[&format!("repository:{IMAGE}:pull,push")], &optok, &key);
    push_image(addr, &token);
}

/// Pushes a small image to `acme/app:v1` through the sidecar at `addr` with the registry
/// token `token` (push granted).
pub fn push_image(addr: &str, token: &str) {
    let src = tempfile::tempdir().unwrap();
    oci_layout(src.path(), TAG, &[4 << 10]);
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-registry-token",
        token,
        &format!("oci:{}:{TAG}", src.path().display()),
        &format!("docker://{addr}/{IMAGE}:{TAG}"),
    ]);
}

/// A pull token for `sub`/`plan`/`license` (`license` empty: the claim is left out).
pub fn pull_token(stack: &Stack, sub: &str, plan: &str, license: &str) -> String {
    let key = DpopKey::new();
    let mut claims = stack
        .authority
        .optok_claims(sub, plan, license, Some(&key.thumbprint()));
    if license.is_empty() {
        claims.as_object_mut().unwrap().remove("stellaops:license");
    }
    let optok = stack.authority.mint(claims);
    stack
        .sidecar
        .token(&[&format!("repository:{IMAGE}:pull")], &optok, &key)
}

/// A token without credentials (`anonymous.plan`), fetched from `realm`.
pub fn anonymous_token(realm: &str) -> String {
    let response = client()
        .get(realm)
        .query(&[
            ("service", SERVICE),
            ("scope", &format!("repository:{IMAGE}:pull")),
        ])
        .send()
        .expect("GET /token");
    assert_eq!(response.status(), 200, "anonymous token");
    let body: Value = response.json().unwrap();
    body["token"].as_str().unwrap().to_string()
}

/// The answer to one manifest request: status and the headers limits are about.
#[derive(Debug)]
pub struct Pull {
    pub status: u16,
    pub limit: Option<String>,
    pub remaining: Option<String>,
    pub retry_after: Option<u64>,
    pub body: String,
}

/// `method` (`GET`/`HEAD`) of `acme/app`'s manifest `v1` at `base` (`http://127.0.0.1:PORT`),
/// from source address `from`, with `token` and, when given, `X-Forwarded-For: forwarded_for`.
pub fn manifest(
    base: &str,
    method: &str,
    token: &str,
    from: IpAddr,
    forwarded_for: Option<&str>,
) -> Pull {
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .local_address(from)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let url = format!("{base}/v2/{IMAGE}/manifests/{TAG}");
    let mut request = http
        .request(method.parse().unwrap(), url)
        .bearer_auth(token)
        .header("Accept", ACCEPT);
    if let Some(xff) = forwarded_for {
        request = request.header("X-Forwarded-For", xff);
    }
    let response = request.send().expect("manifest request");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    Pull {
        status: response.status().as_u16(),
        limit: header("ratelimit-limit"),
        remaining: header("ratelimit-remaining"),
        retry_after: header("retry-after").map(|v| v.parse().expect("Retry-After in seconds")),
        body: response.text().unwrap_or_default(),
    }
}

/// 127.0.0.1 and 127.0.0.2: two loopback source addresses.
pub fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}
