//! Surface A, what a granted token holds: the realm grants requested ∩ entitled and nothing
//! more (39–43, 66); a granted token has the documented claims and verifies against
//! `/.well-known/jwks.json` (44), and no refresh token is handed out (45).

use serde_json::{json, Value};

use crate::bed::{dpop_realm, query, verifies_es256};
use crate::common::sidecar::{SERVICE, TOKEN_ISSUER};
use crate::common::*;
use crate::Bed;

/// `(name, actions)` of one `access` entry.
fn entry(name: &str, action: &str) -> (String, Vec<String>) {
    (name.to_string(), vec![action.to_string()])
}

/// 39: an unentitled scope alone is 403 `plan_denied`; beside an entitled one it is dropped.
#[test]
fn case39_an_unentitled_scope_is_refused_or_dropped() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let victim = bed.ask(&["repository:victim/private:pull"], &optok, &key);
    victim.expect(403, "39: unentitled scope alone");
    assert_eq!(
        victim.body["reason"],
        "plan_denied",
        "security case 39: {}",
        victim.describe()
    );
    let mixed = bed.ask(
        &["repository:victim/private:pull", "repository:acme/app:pull"],
        &optok,
        &key,
    );
    mixed.expect(200, "39: with an entitled scope");
    assert_eq!(
        mixed.access(),
        [entry("acme/app", "pull")],
        "security case 39: only the entitled scope"
    );
}

/// 40: extra actions are cut to the plan's: a pull-only plan asking for everything gets
/// exactly `[pull]`.
#[test]
fn case40_actions_are_cut_to_the_plan() {
    let bed = Bed::start();
    let (ro_key, ro_optok) = bed.caller("readonly");
    let greedy = bed.ask(
        &["repository:acme/app:pull,push,delete,*"],
        &ro_optok,
        &ro_key,
    );
    greedy.expect(200, "40");
    assert_eq!(
        greedy.access(),
        [entry("acme/app", "pull")],
        "security case 40: actions exactly [pull]"
    );
}

/// 41: `registry:catalog:*` is not granted (403 `plan_denied`).
#[test]
fn case41_the_catalog_is_not_granted() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let catalog = bed.ask(&["registry:catalog:*"], &optok, &key);
    catalog.expect(403, "41: registry:catalog:* is not granted");
    assert_eq!(
        catalog.body["reason"],
        "plan_denied",
        "security case 41: {}",
        catalog.describe()
    );
}

/// 42: malformed scopes (no actions, upper case, `..`, `%2F`, `//`, too many `:` parts, a
/// 300-character name) are refused (400/403) or dropped, never widened.
#[test]
fn case42_malformed_scopes_are_never_widened() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let long = format!("repository:acme/{}:pull", "a".repeat(295));
    let malformed = [
        "repository:acme/app",
        "repository:ACME/app:pull",
        "repository:acme/../x:pull",
        "repository:acme%2Fapp:pull",
        "repository:acme//app:pull",
        "repository:acme:app:x:pull",
        &long,
    ];
    for scope in malformed {
        let reply = bed.ask(&[scope], &optok, &key);
        let widened = reply.status == 200 && !reply.access().is_empty();
        assert!(
            reply.status == 400 || reply.status == 403 || (reply.status == 200 && !widened),
            "security case 42: {scope:.60} must be refused or dropped, got {}",
            reply.describe()
        );
    }
}

/// 43: a `host:port/` prefix is part of the name: `localhost:5000/acme/app` is not `acme/app`.
#[test]
fn case43_a_host_prefix_is_part_of_the_name() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let prefixed = bed.ask(&["repository:localhost:5000/acme/app:pull"], &optok, &key);
    prefixed.expect(403, "43: host:port/acme/app is not acme/app");
    let beside = bed.ask(
        &[
            "repository:localhost:5000/acme/app:pull",
            "repository:acme/app:push",
        ],
        &optok,
        &key,
    );
    beside.expect(200, "43");
    assert_eq!(
        beside.access(),
        [entry("acme/app", "push")],
        "security case 43: only acme/app"
    );
}

/// 44: another `service` is 400; a granted token has `aud` = the service as a JSON string,
/// `iss` = `signing.issuer`, `exp - iat` = the lifetime (and `expires_in` says so), `nbf <=
/// now`, a `jti` of its own, and verifies against `/.well-known/jwks.json`.
#[test]
fn case44_a_token_has_the_documented_claims_and_verifies() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let other = dpop_realm(
        &bed.sidecar,
        &[
            ("service", "other-registry"),
            ("scope", "repository:acme/app:pull"),
        ],
        &optok,
        &key,
    );
    other.expect(400, "44: service=other-registry");
    let jwks: Value = client()
        .get(format!("{}/.well-known/jwks.json", bed.sidecar.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut jtis = Vec::new();
    for _ in 0..2 {
        let reply = bed.ask(&["repository:acme/app:pull"], &optok, &key);
        reply.expect(200, "44");
        let claims = jwt_claims(reply.token());
        let number = |name: &str| {
            claims[name]
                .as_i64()
                .unwrap_or_else(|| panic!("security case 44: numeric {name}: {claims}"))
        };
        assert_eq!(
            claims["aud"],
            json!(SERVICE),
            "security case 44: aud is the service, as a JSON string"
        );
        assert_eq!(
            claims["iss"],
            json!(TOKEN_ISSUER),
            "security case 44: iss is signing.issuer"
        );
        assert_eq!(
            number("exp") - number("iat"),
            300,
            "security case 44: exp - iat is the configured lifetime (5m)"
        );
        assert_eq!(
            reply.body["expires_in"], 300,
            "security case 44: expires_in is the lifetime, at least 60"
        );
        assert!(
            number("nbf") <= now(),
            "security case 44: nbf <= now: {claims}"
        );
        assert!(
            verifies_es256(reply.token(), &jwks),
            "security case 44: the token verifies against jwks.json"
        );
        jtis.push(
            claims["jti"]
                .as_str()
                .expect("security case 44: a jti")
                .to_string(),
        );
    }
    assert_ne!(
        jtis[0], jtis[1],
        "security case 44: every token has its own jti"
    );
}

/// 45: `offline_token=true` hands out no `refresh_token`.
#[test]
fn case45_no_refresh_token_is_handed_out() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let offline = dpop_realm(
        &bed.sidecar,
        &[
            ("service", SERVICE),
            ("scope", "repository:acme/app:pull"),
            ("offline_token", "true"),
        ],
        &optok,
        &key,
    );
    offline.expect(200, "45");
    assert!(
        offline.body.get("refresh_token").is_none(),
        "security case 45: no refresh_token: {}",
        offline.body
    );
}

/// 66: an empty plan grants nothing: every scope is 403, a login without scope gets an empty
/// `access`, never "allow all".
#[test]
fn case66_an_empty_plan_grants_nothing() {
    let bed = Bed::start();
    let (empty_key, empty_optok) = bed.caller("nothing");
    for scope in [
        "repository:acme/app:pull",
        "repository:public/app:pull",
        "registry:catalog:*",
    ] {
        let reply = bed.ask(&[scope], &empty_optok, &empty_key);
        reply.expect(403, &format!("66: an empty plan grants nothing ({scope})"));
    }
    let login = dpop_realm(&bed.sidecar, &query(&[]), &empty_optok, &empty_key);
    login.expect(200, "66: no scope");
    assert!(
        login.access().is_empty(),
        "security case 66: empty access, no allow-all"
    );
}
