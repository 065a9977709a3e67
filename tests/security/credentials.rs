//! Surface A, the token realm: every broken DPoP proof (cases 1–20) and every forged or
//! misdirected OpTok (25–33) is refused with 401 and the RFC 6750/9449 error its case names;
//! an attacker's `jku`/`x5u`/`jwk`/`x5c` is never fetched or trusted (27), and a flood of
//! unknown `kid`s causes at most one JWKS fetch per cooldown (28). Each test ends by checking
//! that the OpTok it used is nowhere in the sidecar's log.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::bed::{dpop_realm, query, realm, Reply};
use crate::common::authority::{jws, Alg};
use crate::common::pki::{cert, Role};
use crate::common::*;
use crate::Bed;

/// The scope every request of this surface asks for (granted to `enterprise`).
const SCOPE: &str = "repository:acme/app:pull";

/// The sidecar's JWKS refresh cooldown: unknown `kid`s may cause one fetch per this period.
const JWKS_COOLDOWN: Duration = Duration::from_secs(30);

/// Unknown-kid OpToks sent in case 28 (docs/security.md says 1 000; 200 keep the suite quick).
const UNKNOWN_KIDS: usize = 200;

/// `GET /token` for [`SCOPE`] with `Authorization: DPoP <optok>` and the `DPoP` fields given.
fn with_proofs(bed: &Bed, optok: &str, dpop: &[String]) -> Reply {
    let auth = [format!("DPoP {optok}")];
    realm(&bed.sidecar, &query(&[SCOPE]), &auth, dpop)
}

/// Sends each row's `DPoP` fields with a valid OpTok: the status is one of the row's, and a
/// 401 says `invalid_dpop_proof`.
fn proofs_refused(bed: &Bed, optok: &str, rows: Vec<(&str, Vec<String>, &[u16])>) {
    for (case, dpop, statuses) in rows {
        let reply = with_proofs(bed, optok, &dpop);
        assert!(
            statuses.contains(&reply.status),
            "security case {case}: expected {statuses:?}, got {}",
            reply.describe()
        );
        if reply.status == 401 {
            assert_eq!(
                reply.error(),
                Some("invalid_dpop_proof"),
                "security case {case}: {}",
                reply.describe()
            );
        }
    }
}

/// Sends each row's OpTok with a valid proof by `key` bound to it: 401 `invalid_token`
/// (RFC 6750), every one.
fn optoks_refused(bed: &Bed, key: &DpopKey, rows: &[(&str, String)]) {
    for (case, token) in rows {
        let reply = dpop_realm(&bed.sidecar, &query(&[SCOPE]), token, key);
        reply.expect_401("invalid_token", case);
    }
}

/// The claims of a valid `enterprise` OpTok bound to `key`.
fn claims(bed: &Bed, key: &DpopKey) -> Value {
    bed.authority
        .optok_claims("alice", "enterprise", "LIC-1", Some(&key.thumbprint()))
}

/// A validly signed OpTok for `key` whose claim `name` is `value`.
fn with(bed: &Bed, key: &DpopKey, name: &str, value: Value) -> String {
    let mut c = claims(bed, key);
    c[name] = value;
    bed.authority.mint(c)
}

/// A validly signed OpTok for `key` without the claim `name`.
fn without(bed: &Bed, key: &DpopKey, name: &str) -> String {
    let mut c = claims(bed, key);
    c.as_object_mut().unwrap().remove(name);
    bed.authority.mint(c)
}

/// Baseline for this surface: a well-formed request is granted.
#[test]
fn baseline_a_well_formed_request_is_granted() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let good = bed.ask(&[SCOPE], &optok, &key);
    assert_eq!(
        good.status,
        200,
        "baseline: a well-formed request is granted: {}",
        good.describe()
    );
    bed.sidecar.assert_log_free_of(&[&optok]);
}

/// 1: no credentials at all → 401 with a DPoP challenge that carries no error; its `algs`
/// (RFC 9449 section 7.1, the proof algorithms accepted) include ES256, and nothing symmetric
/// or `none`.
#[test]
fn case01_no_credentials_get_a_dpop_challenge_without_error() {
    let bed = Bed::start();
    let none = realm(&bed.sidecar, &query(&[SCOPE]), &[], &[]);
    none.expect(401, "1");
    let algs: Vec<&str> = none
        .www_authenticate
        .split_once(r#"algs=""#)
        .and_then(|(_, rest)| rest.split('"').next())
        .unwrap_or_default()
        .split(' ')
        .collect();
    assert!(
        none.www_authenticate.starts_with("DPoP ")
            && algs.contains(&"ES256")
            && algs
                .iter()
                .all(|a| !a.starts_with("HS") && !a.eq_ignore_ascii_case("none")),
        "security case 1: challenge offers DPoP with algs including ES256, all asymmetric: {}",
        none.describe()
    );
    assert_eq!(
        none.error(),
        None,
        "security case 1: the challenge carries no error: {}",
        none.describe()
    );
}

/// 2: two `DPoP` fields, or one field holding two proofs → 401 `invalid_dpop_proof`.
#[test]
fn case02_two_proofs_are_refused() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let proof = || key.proof("GET", &bed.sidecar.realm(), &optok);
    proofs_refused(
        &bed,
        &optok,
        vec![
            ("2 two DPoP fields", vec![proof(), proof()], &[401]),
            (
                "2 one field `a.b.c, d.e.f`",
                vec![format!("{}, {}", proof(), proof())],
                &[401],
            ),
        ],
    );
    bed.sidecar.assert_log_free_of(&[&optok]);
}

/// 3: a proof with 2 or 4 segments, `=` padding, a non-base64url character, or larger than
/// 8 KiB → 401 `invalid_dpop_proof` (431 allowed for the oversize one).
#[test]
fn case03_malformed_proofs_are_refused() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let realm_url = bed.sidecar.realm();
    let proof = || key.proof("GET", &realm_url, &optok);
    let valid = proof();
    let (head, sig) = valid.rsplit_once('.').unwrap();
    let mut oversize = key.claims("GET", &realm_url, Some(&optok));
    oversize["pad"] = json!("p".repeat(9 * 1024));
    proofs_refused(
        &bed,
        &optok,
        vec![
            ("3 two segments", vec![head.to_string()], &[401]),
            ("3 four segments", vec![format!("{}.AAAA", proof())], &[401]),
            ("3 `=` padding", vec![format!("{}==", proof())], &[401]),
            (
                "3 non-base64url character",
                vec![format!("{head}.+{}", &sig[1..])],
                &[401],
            ),
            (
                "3 larger than 8 KiB",
                vec![key.sign(&key.header(), &oversize)],
                &[401, 431],
            ),
        ],
    );
    bed.sidecar.assert_log_free_of(&[&optok]);
}

/// 9: `htm` `POST`, or lower-case `get`, on a GET → 401 `invalid_dpop_proof`.
#[test]
fn case09_proof_for_another_method_is_refused() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let realm_url = bed.sidecar.realm();
    let htm_post = key.claims("POST", &realm_url, Some(&optok));
    let htm_lower = key.claims("get", &realm_url, Some(&optok));
    proofs_refused(
        &bed,
        &optok,
        vec![
            (
                "9 htm POST on a GET",
                vec![key.sign(&key.header(), &htm_post)],
                &[401],
            ),
            (
                "9 htm `get` on a GET",
                vec![key.sign(&key.header(), &htm_lower)],
                &[401],
            ),
        ],
    );
    bed.sidecar.assert_log_free_of(&[&optok]);
}

/// 14: the same proof twice → the first is granted, the replay is 401 `invalid_dpop_proof`.
#[test]
fn case14_a_replayed_proof_is_refused() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let once = key.proof("GET", &bed.sidecar.realm(), &optok);
    let first = with_proofs(&bed, &optok, std::slice::from_ref(&once));
    first.expect(200, "14: first use of a proof");
    let replay = with_proofs(&bed, &optok, &[once]);
    replay.expect_401("invalid_dpop_proof", "14: replayed proof");
    bed.sidecar.assert_log_free_of(&[&optok]);
}

/// 18: a proof by key K2 for an OpTok bound to K1 → 401 `invalid_token`.
#[test]
fn case18_proof_by_another_key_is_refused() {
    let bed = Bed::start();
    let (_, optok) = bed.caller("enterprise");
    let k2 = DpopKey::new();
    let wrong_key = with_proofs(
        &bed,
        &optok,
        &[k2.proof("GET", &bed.sidecar.realm(), &optok)],
    );
    wrong_key.expect_401("invalid_token", "18");
    bed.sidecar.assert_log_free_of(&[&optok]);
}

/// 19: the DPoP-bound OpTok downgraded to `Bearer`, without a proof → 401 `invalid_token`.
#[test]
fn case19_bound_optok_as_bearer_is_refused() {
    let bed = Bed::start();
    let (_, optok) = bed.caller("enterprise");
    let bearer = realm(
        &bed.sidecar,
        &query(&[SCOPE]),
        &[format!("Bearer {optok}")],
        &[],
    );
    bearer.expect_401("invalid_token", "19");
    bed.sidecar.assert_log_free_of(&[&optok]);
}

/// 20: `Bearer` and `DPoP` schemes at once → 400 `invalid_request`; the OpTok in
/// `?access_token=` is never accepted (400 or 401).
#[test]
fn case20_two_schemes_or_optok_in_query_are_refused() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let proof = || key.proof("GET", &bed.sidecar.realm(), &optok);
    let scope = query(&[SCOPE]);
    let both = realm(
        &bed.sidecar,
        &scope,
        &[format!("Bearer {optok}"), format!("DPoP {optok}")],
        &[proof()],
    );
    both.expect(400, "20: Bearer and DPoP together");
    assert_eq!(
        both.body["error"],
        "invalid_request",
        "security case 20: {}",
        both.describe()
    );
    let mut in_query = scope.clone();
    in_query.push(("access_token", optok.as_str()));
    let query_token = realm(&bed.sidecar, &in_query, &[], &[proof()]);
    assert!(
        [400, 401].contains(&query_token.status),
        "security case 20: OpTok in ?access_token= is never accepted: {}",
        query_token.describe()
    );
    bed.sidecar.assert_log_free_of(&[&optok]);
}

/// 25: an OpTok with `alg: none` and no signature → 401 `invalid_token`.
#[test]
fn case25_unsigned_optok_is_refused() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let header = json!({"alg": "none", "typ": "JWT", "kid": "k1"});
    let unsigned = format!(
        "{}.{}.",
        b64(header.to_string()),
        b64(claims(&bed, &key).to_string())
    );
    optoks_refused(&bed, &key, &[("25 alg none", unsigned)]);
    bed.sidecar.assert_log_free_of(&[&optok]);
}

/// 27: OpToks signed by an attacker who names the key in `jku`, `x5u`, an embedded `jwk` or
/// `x5c` → 401 `invalid_token`, and the attacker's server is never contacted.
#[test]
fn case27_attacker_key_sources_are_never_used() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let attacker = Authority::start();
    let attacker_token = |extra: Value| {
        let mut header = json!({"alg": "RS256", "typ": "JWT", "kid": "k1"});
        header
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        attacker.mint_with_header(header, claims(&bed, &key))
    };
    let attacker_jwk = attacker.with_key("k1", |k| k.jwk());
    let attacker_cert = attacker.with_key("k1", |k| {
        let der = cert("attacker", &k.key, None, Role::Client).to_der();
        STANDARD.encode(der.unwrap())
    });
    let x5u = format!("{}/cert.pem", attacker.issuer());
    optoks_refused(
        &bed,
        &key,
        &[
            (
                "27 jku",
                attacker_token(json!({"jku": attacker.jwks_uri()})),
            ),
            ("27 x5u", attacker_token(json!({"x5u": x5u}))),
            (
                "27 embedded jwk",
                attacker_token(json!({"jwk": attacker_jwk})),
            ),
            (
                "27 embedded x5c",
                attacker_token(json!({"x5c": [attacker_cert]})),
            ),
        ],
    );
    let contacted =
        attacker.metadata_fetches() + attacker.jwks_fetches() + attacker.other_requests();
    assert_eq!(
        contacted, 0,
        "security case 27: the attacker's server was contacted {contacted} times"
    );
    bed.sidecar.assert_log_free_of(&[&optok]);
}

/// 28: an unknown, a 10 KB and a path-like `kid` → 401 (431 allowed for the huge one); then a
/// flood of unknown `kid`s causes at most one JWKS fetch per cooldown.
#[test]
fn case28_unknown_kids_cause_at_most_one_jwks_fetch_per_cooldown() {
    let bed = Bed::start();
    // Counts every JWKS fetch an unknown kid causes in this test, from here on.
    let (fetches, started) = (bed.authority.jwks_fetches(), Instant::now());
    let (key, optok) = bed.caller("enterprise");
    let scope = query(&[SCOPE]);
    let signed_with_kid = |kid: &str| {
        bed.authority.with_key("k1", |k| {
            jws(
                Alg::RS256,
                &k.key,
                &json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
                &claims(&bed, &key),
            )
        })
    };
    let kid_rows: [(&str, String, &[u16]); 3] = [
        ("28 unknown kid", "no-such-kid".to_string(), &[401]),
        ("28 10 KB kid", "k".repeat(10 * 1024), &[401, 431]),
        (
            "28 kid ../../etc/passwd",
            "../../etc/passwd".to_string(),
            &[401],
        ),
    ];
    for (case, kid, statuses) in kid_rows {
        let reply = dpop_realm(&bed.sidecar, &scope, &signed_with_kid(&kid), &key);
        assert!(
            statuses.contains(&reply.status),
            "security case {case}: expected {statuses:?}, got {}",
            reply.describe()
        );
    }
    for i in 0..UNKNOWN_KIDS {
        let reply = dpop_realm(
            &bed.sidecar,
            &scope,
            &signed_with_kid(&format!("unknown-{i}")),
            &key,
        );
        reply.expect(401, &format!("28: unknown kid #{i}"));
    }
    let allowed = 1 + (started.elapsed().as_secs() / JWKS_COOLDOWN.as_secs()) as usize;
    let made = bed.authority.jwks_fetches() - fetches;
    assert!(
        made <= allowed,
        "security case 28: {UNKNOWN_KIDS} and more unknown kids caused {made} JWKS fetches (at most {allowed} in {:?})",
        started.elapsed()
    );
    bed.sidecar.assert_log_free_of(&[&optok]);
}

/// 29: no `exp`, `exp` or `nbf` as strings, `exp` past the leeway, `iat` far in the future
/// → 401 `invalid_token` (regression for CVE-2026-25537).
#[test]
fn case29_bad_time_claims_are_refused() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    optoks_refused(
        &bed,
        &key,
        &[
            ("29 no exp", without(&bed, &key, "exp")),
            (
                "29 exp string",
                with(&bed, &key, "exp", json!("9999999999")),
            ),
            (
                "29 nbf string",
                with(&bed, &key, "nbf", json!("99999999999")),
            ),
            (
                "29 exp past leeway",
                with(&bed, &key, "exp", json!(now() - 3600)),
            ),
            (
                "29 iat far future",
                with(&bed, &key, "iat", json!(now() + 86400 * 365)),
            ),
        ],
    );
    bed.sidecar.assert_log_free_of(&[&optok]);
}

/// 30: no `aud`, the `aud` of another API, `iss` with a trailing `/` → 401 `invalid_token`.
#[test]
fn case30_wrong_audience_or_issuer_is_refused() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let issuer_slash = json!(format!("{}/", bed.authority.issuer()));
    optoks_refused(
        &bed,
        &key,
        &[
            ("30 no aud", without(&bed, &key, "aud")),
            (
                "30 aud other API",
                with(&bed, &key, "aud", json!("other-api")),
            ),
            ("30 iss + `/`", with(&bed, &key, "iss", issuer_slash)),
        ],
    );
    bed.sidecar.assert_log_free_of(&[&optok]);
}

/// 31: a DPoP proof, a registry token the sidecar issued, or an ID token, each presented as
/// the OpTok → 401 `invalid_token`.
#[test]
fn case31_other_kinds_of_jwt_are_refused() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let good = bed.ask(&[SCOPE], &optok, &key);
    good.expect(200, "31: a registry token to present");
    let authority = &bed.authority;
    let id_token = authority.mint(json!({
        "iss": authority.issuer(), "sub": "alice", "aud": "e2e-client", "exp": now() + 600,
        "iat": now(), "nonce": "n-0S6_WzA2Mj", "auth_time": now(),
        "cnf": {"jkt": key.thumbprint()},
    }));
    optoks_refused(
        &bed,
        &key,
        &[
            ("31 DPoP proof", key.proof("GET", &bed.sidecar.realm(), "x")),
            ("31 registry token", good.token().to_string()),
            ("31 ID token", id_token),
        ],
    );
    bed.sidecar.assert_log_free_of(&[&optok]);
}

/// 33: `cnf` with both `jkt` and `x5t#S256`, with an unknown member, empty, or missing while
/// a sender constraint is required → 401 `invalid_token`.
#[test]
fn case33_bad_cnf_is_refused() {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let jkt = key.thumbprint();
    let x5t = b64([7u8; 32]);
    optoks_refused(
        &bed,
        &key,
        &[
            (
                "33 jkt and x5t#S256",
                with(&bed, &key, "cnf", json!({"jkt": jkt, "x5t#S256": x5t})),
            ),
            (
                "33 unknown cnf member",
                with(&bed, &key, "cnf", json!({"jkt": jkt, "kid": "k"})),
            ),
            ("33 no cnf", without(&bed, &key, "cnf")),
            ("33 empty cnf", with(&bed, &key, "cnf", json!({}))),
        ],
    );
    bed.sidecar.assert_log_free_of(&[&optok]);
}
