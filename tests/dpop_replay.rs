//! The realm's order of checks and its DPoP replay store at the HTTP level (docs/http.md;
//! docs/security.md, cases 72-74), and the ops page's request shape (`Authorization: Bearer` with a
//! `DPoP` proof, issue 8 item 9): the real `registry-token` binary, an in-test Authority, DPoP
//! keys made here.
//!
//! A proof's `jti` is spent only when a token is issued, so a caller refused for its license,
//! scopes or plan leaves nothing in the store; each DPoP key may hold only its share of the
//! store; a proof may be at most `clockSkew` ahead of the sidecar's clock.
//!
//! Authority: in-test: the cases need OpToks without the required scope, with a revoked
//! license lifted later, or for many subjects and keys at once, minted at will.

mod common;

use common::sidecar::SERVICE;
use common::*;
use serde_json::{json, Value};

/// The replay store's gauge.
const ENTRIES: &str = "registry_token_dpop_replay_entries";

/// Status, machine `reason` (`""` on success) and the `error` of the challenge of one `/token`
/// answer.
#[derive(Debug, PartialEq)]
struct Outcome {
    status: u16,
    reason: String,
    error: Option<String>,
}

impl Outcome {
    fn of(response: reqwest::blocking::Response) -> Outcome {
        let status = response.status().as_u16();
        let error = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(|c| c.split_once("error=\""))
            .and_then(|(_, rest)| rest.split('"').next())
            .map(str::to_string);
        let body: Value = response.json().unwrap_or(Value::Null);
        let reason = body["reason"].as_str().unwrap_or_default().to_string();
        Outcome {
            status,
            reason,
            error,
        }
    }

    fn is(&self, status: u16, reason: &str) -> bool {
        self.status == status && self.reason == reason
    }
}

/// `GET /token` for `repository:acme/app:pull` with `Authorization: SCHEME OPTOK` and `proof`.
fn ask(sidecar: &Sidecar, scheme: &str, optok: &str, proof: Option<&str>) -> Outcome {
    let mut request = client()
        .get(sidecar.realm())
        .query(&[("service", SERVICE), ("scope", "repository:acme/app:pull")])
        .header("Authorization", format!("{scheme} {optok}"));
    if let Some(proof) = proof {
        request = request.header("DPoP", proof);
    }
    Outcome::of(request.send().expect("GET /token"))
}

/// A fresh proof by `key` for the realm, bound to `optok`.
fn proof(sidecar: &Sidecar, key: &DpopKey, optok: &str) -> String {
    key.proof("GET", &sidecar.realm(), optok)
}

/// A stack whose replay store holds 20 proofs, 5 per key.
fn small_store() -> Stack {
    Stack::start_with(|config| {
        config.patch = json!({"authority": {"dpop": {"replayCapacity": 20, "replayPerKey": 5}}});
    })
}

/// Case 72: one DPoP key floods the realm with fresh proofs for an OpTok whose license is
/// revoked, and for one that lacks `registry.token.issue`: each is refused and none is spent
/// (the store's gauge stays at 0, although the flood is five times the store's capacity), so
/// another caller's valid request right after is 200.
#[test]
fn refused_requests_spend_no_proof() {
    let stack = small_store();
    let sidecar = &stack.sidecar;
    let metrics = sidecar.metrics();
    assert!(metrics.contains(ENTRIES), "no {ENTRIES} in /metrics");
    assert_eq!(metric_value(&metrics, ENTRIES, &[]), 0.0);

    let flooder = DpopKey::new();
    let revoked = stack.authority.optok(
        "mallory",
        "enterprise",
        "LIC-REVOKED",
        Some(&flooder.thumbprint()),
    );
    let mut unscoped = stack.authority.optok_claims(
        "mallory",
        "enterprise",
        "LIC-M",
        Some(&flooder.thumbprint()),
    );
    unscoped["scope"] = json!("openid");
    let unscoped = stack.authority.mint(unscoped);
    for (optok, status, reason) in [
        (&revoked, 403, "license_revoked"),
        (&unscoped, 403, "insufficient_optok_scope"),
    ] {
        for i in 0..50 {
            let outcome = ask(
                sidecar,
                "DPoP",
                optok,
                Some(&proof(sidecar, &flooder, optok)),
            );
            assert!(outcome.is(status, reason), "request {i}: {outcome:?}");
        }
    }
    assert_eq!(
        sidecar.metric(ENTRIES, &[]),
        0.0,
        "refused requests left proofs in the replay store"
    );

    let (key, optok) = stack.client("alice", "enterprise", "LIC-A");
    let outcome = ask(sidecar, "DPoP", &optok, Some(&proof(sidecar, &key, &optok)));
    assert!(outcome.is(200, ""), "{outcome:?}");
    assert_eq!(sidecar.metric(ENTRIES, &[]), 1.0);
}

/// Case 72: a key that holds its share of the store (`replayPerKey`) is refused, fail closed,
/// while another key is still served.
#[test]
fn one_key_holds_only_its_share() {
    let stack = small_store();
    let sidecar = &stack.sidecar;
    let (greedy, greedy_optok) = stack.client("mallory", "enterprise", "LIC-M");
    for i in 0..5 {
        let outcome = ask(
            sidecar,
            "DPoP",
            &greedy_optok,
            Some(&proof(sidecar, &greedy, &greedy_optok)),
        );
        assert!(outcome.is(200, ""), "request {i}: {outcome:?}");
    }
    let over = ask(
        sidecar,
        "DPoP",
        &greedy_optok,
        Some(&proof(sidecar, &greedy, &greedy_optok)),
    );
    assert_eq!(
        (over.status, over.reason.as_str(), over.error.as_deref()),
        (401, "invalid_dpop_proof", Some("invalid_dpop_proof")),
        "{over:?}"
    );
    let (key, optok) = stack.client("alice", "enterprise", "LIC-A");
    let outcome = ask(sidecar, "DPoP", &optok, Some(&proof(sidecar, &key, &optok)));
    assert!(outcome.is(200, ""), "{outcome:?}");
    assert_eq!(sidecar.metric(ENTRIES, &[]), 6.0);
}

/// Case 73: a proof refused because the license is revoked was not spent: once a reload lifts
/// the revocation, the very same proof (still fresh) gets a token; only then is it spent.
#[test]
fn a_refused_proof_is_still_good_after_the_revocation_is_lifted() {
    let stack = Stack::start_with(|config| config.revoked_licenses.push("LIC-LIFTED".into()));
    let sidecar = &stack.sidecar;
    let (key, optok) = stack.client("carol", "enterprise", "LIC-LIFTED");
    let once = proof(sidecar, &key, &optok);
    let refused = ask(sidecar, "DPoP", &optok, Some(&once));
    assert!(refused.is(403, "license_revoked"), "{refused:?}");

    let generation = sidecar.generation();
    let mut lifted = sidecar.config().clone();
    lifted.revoked_licenses.retain(|l| l != "LIC-LIFTED");
    sidecar.apply(&lifted);
    sidecar.wait_generation_above(generation);

    let granted = ask(sidecar, "DPoP", &optok, Some(&once));
    assert!(granted.is(200, ""), "{granted:?}");
    let replayed = ask(sidecar, "DPoP", &optok, Some(&once));
    assert!(replayed.is(401, "dpop_replay"), "{replayed:?}");
}

/// Case 74 (and 13): a proof whose `iat` is `clockSkew` + 1 s ahead of the sidecar's clock is
/// refused with 401 `invalid_dpop_proof`; 10 s ahead is within the skew and accepted.
#[test]
fn a_proof_from_the_future_is_refused() {
    let stack = Stack::start(); // clockSkew: 30s
    let sidecar = &stack.sidecar;
    let (key, optok) = stack.client("dave", "enterprise", "LIC-D");
    let ahead = |seconds: i64| {
        // The sidecar reads its clock between `before` and `after`: when they are the same
        // second, so is the sidecar's, and `iat` is exactly `seconds` ahead of it.
        poll(
            std::time::Duration::from_secs(10),
            "a request within one clock second",
            || {
                let before = now();
                let mut claims = key.claims("GET", &sidecar.realm(), Some(&optok));
                claims["iat"] = json!(before + seconds);
                let outcome = ask(
                    sidecar,
                    "DPoP",
                    &optok,
                    Some(&key.sign(&key.header(), &claims)),
                );
                (now() == before).then_some(outcome)
            },
        )
    };
    let future = ahead(31);
    assert_eq!(
        (
            future.status,
            future.reason.as_str(),
            future.error.as_deref()
        ),
        (401, "invalid_dpop_proof", Some("invalid_dpop_proof")),
        "{future:?}"
    );
    let far = ahead(3600);
    assert!(far.is(401, "invalid_dpop_proof"), "{far:?}");
    let within = ahead(10);
    assert!(within.is(200, ""), "{within:?}");
}

/// Item 9, the ops page's shape: `Authorization: Bearer <optok>` with a valid `DPoP` proof for
/// a DPoP-bound OpTok gets a token as the DPoP scheme does, logged with `scheme=bearer`, and
/// the proof is checked in full: spent once, bound to the OpTok (`ath`) and to its key. Without
/// a proof it stays `sender_constraint_mismatch`.
#[test]
fn bearer_with_a_dpop_proof_is_accepted() {
    let stack = Stack::start(); // senderConstraint: dpop
    let sidecar = &stack.sidecar;
    let (key, optok) = stack.client("erin", "enterprise", "LIC-E");

    let once = proof(sidecar, &key, &optok);
    let granted = ask(sidecar, "Bearer", &optok, Some(&once));
    assert!(granted.is(200, ""), "{granted:?}");
    let log = poll(
        std::time::Duration::from_secs(10),
        "the realm's log line for erin",
        || {
            let log = sidecar.log();
            log.lines()
                .find(|l| l.contains("token issued") && l.contains("erin"))
                .map(str::to_string)
        },
    );
    assert!(log.contains("scheme=\"bearer\""), "{log}");

    let replayed = ask(sidecar, "Bearer", &optok, Some(&once));
    assert!(replayed.is(401, "dpop_replay"), "{replayed:?}");

    let (_, other_optok) = stack.client("erin", "enterprise", "LIC-E");
    let wrong_ath = ask(
        sidecar,
        "Bearer",
        &optok,
        Some(&proof(sidecar, &key, &other_optok)),
    );
    assert!(wrong_ath.is(401, "invalid_dpop_proof"), "{wrong_ath:?}");

    let other_key = DpopKey::new();
    let wrong_key = ask(
        sidecar,
        "Bearer",
        &optok,
        Some(&proof(sidecar, &other_key, &optok)),
    );
    assert!(
        wrong_key.is(401, "sender_constraint_mismatch"),
        "{wrong_key:?}"
    );

    let bare = ask(sidecar, "Bearer", &optok, None);
    assert_eq!(
        (bare.status, bare.reason.as_str(), bare.error.as_deref()),
        (401, "sender_constraint_mismatch", Some("invalid_token")),
        "{bare:?}"
    );

    let dpop = ask(sidecar, "DPoP", &optok, Some(&proof(sidecar, &key, &optok)));
    assert!(dpop.is(200, ""), "{dpop:?}");
    sidecar.assert_log_free_of(&[&optok, &once]);
}
