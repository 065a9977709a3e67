//! Plan limits end to end (docs/http.md, "Plan limits"; docs/security.md, case 82): the real
//! sidecar in front of the real registry. A plan with `pulls: {count: 3, per: 1h}` lets three
//! manifest GETs through with the `RateLimit-*` headers and refuses the fourth with 429
//! `TOOMANYREQUESTS` and `Retry-After`, never forwarded, while HEADs stay free; a `tokens` limit
//! makes the realm answer 429 `rate_limited`; callers are counted by license, else subject, else
//! address, and the address comes from `X-Forwarded-For` only when a `server.trustedEdge` peer
//! sends it.
//!
//! Authority: in-test (common::authority): limits count by license, else subject, else address,
//! so the cases mint OpToks with chosen subjects and with no license at all.

mod common;

use common::limits::*;
use common::*;
use serde_json::{json, Value};

/// The pull limit under every test here.
const PULLS: u64 = 3;

/// A stack with plan `limited` (pulls 3 per hour), `acme/app:v1` pushed, and `customize`
/// applied to the config first.
fn limited_stack(customize: impl FnOnce(&mut SidecarConfig)) -> Stack {
    let stack = Stack::start_with(|config| {
        with_pull_limit(config, PULLS);
        customize(config);
    });
    seed_image(&stack, &stack.sidecar.addr());
    stack
}

/// Asserts `pulls` are 200 with the headers counting down, as many as the limit allows.
fn pulls_within_limit(pulls: &[Pull]) {
    for (i, pull) in pulls.iter().enumerate() {
        assert_eq!(pull.status, 200, "pull {}: {}", i + 1, pull.body);
        assert_eq!(pull.limit.as_deref(), Some("3;w=3600"), "pull {}", i + 1);
        let remaining = format!("{};w=3600", PULLS - 1 - i as u64);
        assert_eq!(pull.remaining.as_deref(), Some(remaining.as_str()));
    }
}

/// Asserts `pull` is the refusal past the limit: 429, `Retry-After` within the window,
/// `TOOMANYREQUESTS`, remaining 0.
fn limited(pull: &Pull, what: &str) {
    assert_eq!(pull.status, 429, "{what}: {}", pull.body);
    let retry = pull.retry_after.expect("Retry-After");
    assert!((1..=3600).contains(&retry), "{what}: Retry-After {retry}");
    let body: Value = serde_json::from_str(&pull.body).expect("JSON errors body");
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS", "{what}");
    assert_eq!(pull.limit.as_deref(), Some("3;w=3600"), "{what}");
    assert_eq!(pull.remaining.as_deref(), Some("0;w=3600"), "{what}");
}

/// The acceptance: manifest GETs give 200, 200, 200, 429 with `RateLimit-Limit`,
/// `RateLimit-Remaining`, `Retry-After` and `TOOMANYREQUESTS`; the 429 never reaches the
/// registry; HEADs are not counted (before and after the limit) and carry no headers; the
/// refusal is counted as `registry_token_rate_limited_total{plan="limited",kind="pulls"}` and
/// `registry_proxy_denied_total{reason="rate_limited"}`. Keying: a second subject of the same
/// license shares its count, another license and a license-less subject count apart.
#[test]
fn manifest_gets_are_limited_per_license_heads_are_free() {
    let stack = limited_stack(|_| {});
    let (base, local) = (stack.sidecar.url(), loopback(1));
    let alice = pull_token(&stack, "alice", "limited", "LIC-A");

    let head = manifest(&base, "HEAD", &alice, local, None);
    assert_eq!(head.status, 200, "HEAD");
    assert_eq!(head.limit, None, "HEAD is not counted");
    let gets: Vec<Pull> = (0..PULLS)
        .map(|_| manifest(&base, "GET", &alice, local, None))
        .collect();
    pulls_within_limit(&gets);
    let forwarded = stack.registry.requests_for("/v2/acme/app/manifests/v1");
    limited(&manifest(&base, "GET", &alice, local, None), "4th GET");
    assert_eq!(
        stack.registry.requests_for("/v2/acme/app/manifests/v1"),
        forwarded,
        "the refused GET was not forwarded"
    );
    for _ in 0..3 {
        let head = manifest(&base, "HEAD", &alice, local, None);
        assert_eq!(head.status, 200, "HEAD past the limit stays free");
    }

    // Same license, another subject: the same count. Another license, or none: their own.
    let bob = pull_token(&stack, "bob", "limited", "LIC-A");
    limited(&manifest(&base, "GET", &bob, local, None), "same license");
    let carol = pull_token(&stack, "carol", "limited", "LIC-C");
    pulls_within_limit(&[manifest(&base, "GET", &carol, local, None)]);
    let dave = pull_token(&stack, "dave", "limited", "");
    let daves: Vec<Pull> = (0..PULLS)
        .map(|_| manifest(&base, "GET", &dave, local, None))
        .collect();
    pulls_within_limit(&daves);
    limited(&manifest(&base, "GET", &dave, local, None), "by subject");
    let erin = pull_token(&stack, "erin", "limited", "");
    pulls_within_limit(&[manifest(&base, "GET", &erin, local, None)]);

    // A plan without limits is neither counted nor shown headers.
    let seeder = pull_token(&stack, "seeder", "enterprise", "LIC-SEED");
    for _ in 0..=PULLS {
        let pull = manifest(&base, "GET", &seeder, local, None);
        assert_eq!((pull.status, pull.limit), (200, None), "unlimited plan");
    }

    let labels = [("plan", "limited"), ("kind", "pulls")];
    let refused = stack
        .sidecar
        .metric("registry_token_rate_limited_total", &labels);
    assert_eq!(refused, 3.0, "three pulls refused");
    let denied = stack
        .sidecar
        .metric("registry_proxy_denied_total", &[("reason", "rate_limited")]);
    assert_eq!(denied, 3.0);
    stack.sidecar.assert_log_free_of(&[&alice, &bob, &dave]);
}

/// Without a license or subject (anonymous pulls) the client address is the key, and only a
/// `server.trustedEdge` peer may name it (security case 82): from 127.0.0.1, not an edge, the 4th
/// pull is 429 whatever new address `X-Forwarded-For` invents; 127.0.0.3 is another client with
/// its own count; from 127.0.0.2, the configured edge, the right-most `X-Forwarded-For`
/// entry is the client (entries a client wrote to its left are ignored) and a request without
/// the header counts as the edge itself.
#[test]
fn anonymous_pulls_count_per_address_and_forwarded_for_only_from_the_edge() {
    let stack = limited_stack(|config| {
        config.anonymous_plan = Some("limited".into());
        config.patch = json!({"server": {"trustedEdge": {"peers": ["127.0.0.2"]}}});
    });
    let base = stack.sidecar.url();
    let token = anonymous_token(&stack.sidecar.realm());
    assert_eq!(jwt_claims(&token)["sub"], "anonymous");

    // 127.0.0.1 is no edge: its X-Forwarded-For is ignored, every pull is 127.0.0.1's.
    let from_one: Vec<Pull> = (0..PULLS)
        .map(|i| {
            manifest(
                &base,
                "GET",
                &token,
                loopback(1),
                Some(&format!("198.51.100.{i}")),
            )
        })
        .collect();
    pulls_within_limit(&from_one);
    limited(
        &manifest(&base, "GET", &token, loopback(1), Some("203.0.113.99")),
        "4th pull with an invented X-Forwarded-For",
    );
    // Another address has its own count.
    pulls_within_limit(&[manifest(&base, "GET", &token, loopback(3), None)]);

    // 127.0.0.2 is the edge: the address it appends is the client.
    let edge = loopback(2);
    let client_x: Vec<Pull> = (0..PULLS)
        .map(|i| {
            let xff = format!("10.{i}.{i}.{i}, 198.51.100.7");
            manifest(&base, "GET", &token, edge, Some(&xff))
        })
        .collect();
    pulls_within_limit(&client_x);
    limited(
        &manifest(&base, "GET", &token, edge, Some("198.51.100.7")),
        "the edge's client past its limit",
    );
    pulls_within_limit(&[manifest(&base, "GET", &token, edge, Some("198.51.100.8"))]);
    pulls_within_limit(&[manifest(&base, "GET", &token, edge, None)]);
    // The edge's own address is not 127.0.0.1's count either.
    limited(
        &manifest(&base, "GET", &token, loopback(1), None),
        "127.0.0.1 still limited",
    );
}

/// A `tokens` limit (2 per hour): the realm issues twice per license and then answers 429
/// `rate_limited` with `Retry-After` and the Docker `TOOMANYREQUESTS` code, counted in
/// `registry_token_rate_limited_total{kind="tokens"}` and `registry_token_rejected_total`;
/// another license still gets tokens.
#[test]
fn realm_issuances_are_limited() {
    let stack = Stack::start_with(|config| {
        config.plans.push(limited_plan(
            "metered",
            json!({"tokens": {"count": 2, "per": "1h"}}),
        ));
    });
    let scope = "repository:acme/app:pull";
    for _ in 0..2 {
        let (key, optok) = stack.client("alice", "metered", "LIC-M");
        stack.sidecar.token(&[scope], &optok, &key);
    }
    let (key, optok) = stack.client("alice", "metered", "LIC-M");
    let response = stack.sidecar.get_token(&[scope], &optok, &key);
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");
    let body: Value = response.json().unwrap();
    assert_eq!(body["reason"], "rate_limited", "{body}");
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS", "{body}");
    assert!(body.get("token").is_none());

    let (key, optok) = stack.client("bob", "metered", "LIC-N");
    stack.sidecar.token(&[scope], &optok, &key);
    let labels = [("plan", "metered"), ("kind", "tokens")];
    let limited = stack
        .sidecar
        .metric("registry_token_rate_limited_total", &labels);
    assert_eq!(limited, 1.0);
    let rejected = stack.sidecar.metric(
        "registry_token_rejected_total",
        &[("reason", "rate_limited")],
    );
    assert_eq!(rejected, 1.0);
}
