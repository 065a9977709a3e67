//! The Authority end to end over plain values: presentations, OpTok rules, bindings, DPoP
//! proofs, nonces and replay, each row through [`Authority::authenticate`].

use super::*;
use crate::authority::dpop::tests::{claims as proof_claims, proof, TestKey, NOW, REALM};
use crate::authority::jwks::tests::jwks;
use crate::jose;
use base64::Engine as _;
use serde_json::{json, Value};

pub fn config(sender_constraint: SenderConstraint) -> AuthorityConfig {
    AuthorityConfig {
        issuer: "https://authority.example".into(),
        metadata_address: "https://authority.example/.well-known/openid-configuration".into(),
        jwks_uri: None,
        audiences: vec!["registry".into()],
        required_scopes: vec!["registry.token.issue".into()],
        sender_constraint,
        clock_skew: Duration::from_secs(30),
        proof_lifetime: Duration::from_secs(60),
        plan_claim: "stellaops:plan".into(),
        license_claim: "stellaops:license".into(),
        realm: REALM.into(),
        replay_capacity: 1000,
        replay_per_key: 100,
        nonce: None,
    }
}

/// An Authority holding `key` as `kid` "a1" (and an RSA key "r1"); never fetches anything.
struct Fixture {
    authority: Authority,
    key: TestKey,
    rsa: TestKey,
    client: TestKey,
    cert: [u8; 32],
}

impl Fixture {
    fn new(constraint: SenderConstraint) -> Self {
        let (key, rsa) = (TestKey::p256(), TestKey::rsa());
        let mut config = config(constraint);
        // Nothing listens there: a fetch would fail fast rather than reach anything.
        config.metadata_address = "http://127.0.0.1:9/.well-known/openid-configuration".into();
        let authority = Authority::new(config);
        assert_eq!(
            authority.load_jwks(&jwks(&[("a1", &key), ("r1", &rsa)])),
            Ok(2)
        );
        Fixture {
            authority,
            key,
            rsa,
            client: TestKey::p256(),
            cert: [0xfb; 32],
        }
    }

    fn claims(&self, cnf: Option<Value>) -> Value {
        let mut c = json!({"iss":"https://authority.example","aud":["registry"],"sub":"alice",
            "exp":NOW + 300,"iat":NOW,"scope":"registry.token.issue",
            "stellaops:plan":"enterprise","stellaops:license":"LIC-1"});
        if let Some(cnf) = cnf {
            c["cnf"] = cnf;
        }
        c
    }

    fn optok(&self, claims: &Value) -> String {
        self.key.jws(
            &json!({"alg":"ES256","kid":"a1","typ":"at+jwt"}).to_string(),
            &claims.to_string(),
        )
    }

    fn dpop_bound(&self) -> String {
        self.optok(&self.claims(Some(json!({"jkt": self.client.jkt()}))))
    }

    fn proof_for(&self, token: &str, jti: &str) -> String {
        let mut c = proof_claims();
        c["ath"] = json!(dpop::access_token_hash(token));
        c["jti"] = json!(jti);
        proof(&self.client, "ES256", &c)
    }

    async fn run(
        &self,
        authorization: &[&str],
        dpop: &[&str],
        cert: Option<[u8; 32]>,
    ) -> Result<Option<Caller>, AuthError> {
        let presented = Presented {
            method: "GET",
            authorization: authorization.to_vec(),
            dpop: dpop.to_vec(),
            form_password: None,
            client_cert_sha256: cert,
        };
        self.authority.authenticate(&presented, NOW).await
    }
}

fn basic(password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("user:{password}"))
    )
}

fn reason(result: Result<Option<Caller>, AuthError>) -> &'static str {
    match result {
        Ok(Some(_)) => "ok",
        Ok(None) => "anonymous",
        Err(e) => e.reason(),
    }
}

/// The DPoP happy path returns the caller with plan, license, and the proof to spend.
/// Authentication spends nothing (case 73); spending twice is a replay (case 14).
#[tokio::test]
async fn dpop_accepted() {
    let f = Fixture::new(SenderConstraint::Dpop);
    let token = f.dpop_bound();
    let proof = f.proof_for(&token, "j1");
    let caller = f
        .run(&[&format!("dpop {token}")], &[&proof], None)
        .await
        .unwrap()
        .unwrap();
    let spend = ProofUse {
        jkt: f.client.jkt(),
        jti: "j1".into(),
        expires_at: NOW + 90,
    };
    assert_eq!(
        caller,
        Caller {
            subject: "alice".into(),
            plan: Some("enterprise".into()),
            license: Some("LIC-1".into()),
            scheme: Some(Scheme::Dpop),
            proof: Some(spend.clone()),
            binding: Binding::Jkt(f.client.jkt()),
            claims: caller.claims.clone(),
        }
    );
    assert_eq!(caller.claims["sub"], "alice");
    assert_eq!(caller.claims["stellaops:license"], "LIC-1");
    assert_eq!(f.authority.replay_entries(), 0);
    let again = f
        .run(&[&format!("DPoP {token}")], &[&proof], None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.proof.as_ref(), Some(&spend));
    f.authority.spend(&spend, NOW).await.unwrap();
    let replay = f.authority.spend(&spend, NOW).await.unwrap_err();
    assert_eq!(
        (replay.reason(), replay.oauth_error()),
        ("dpop_replay", Some("invalid_dpop_proof"))
    );
    assert_eq!(f.authority.replay_entries(), 1);
}

/// One key fills only its share of the replay store (`replay_per_key`), then gets
/// `invalid_dpop_proof` (fail closed) while another key still spends.
#[tokio::test]
async fn per_key_share() {
    let f = Fixture::new(SenderConstraint::Dpop);
    let use_of = |jkt: &str, jti: usize| ProofUse {
        jkt: jkt.into(),
        jti: format!("j{jti}"),
        expires_at: NOW + 90,
    };
    for i in 0..100 {
        f.authority.spend(&use_of("greedy", i), NOW).await.unwrap();
    }
    let full = f
        .authority
        .spend(&use_of("greedy", 100), NOW)
        .await
        .unwrap_err();
    assert_eq!(
        (full.status(), full.reason(), full.oauth_error()),
        (401, "invalid_dpop_proof", Some("invalid_dpop_proof"))
    );
    f.authority.spend(&use_of("other", 0), NOW).await.unwrap();
    assert_eq!(f.authority.replay_entries(), 101);
}

/// The ops page's shape (docs/http.md, "Clients"): `Bearer` with a proof for a DPoP-bound OpTok is
/// checked in full as the DPoP scheme is, and is recorded as `bearer`.
#[tokio::test]
async fn bearer_with_proof() {
    let f = Fixture::new(SenderConstraint::Dpop);
    let token = f.dpop_bound();
    let caller = f
        .run(
            &[&format!("Bearer {token}")],
            &[&f.proof_for(&token, "b1")],
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(caller.scheme.map(Scheme::as_str), Some("bearer"));
    assert_eq!(caller.proof.map(|p| p.jti), Some("b1".into()));
    let caller = f
        .run(
            &[&format!("DPoP {token}")],
            &[&f.proof_for(&token, "b2")],
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(caller.scheme.map(Scheme::as_str), Some("dpop"));
}

/// Presentation rules (cases 1, 2, 19, 20) and the binding rules per constraint
/// (cases 18, 33-36), as (constraint, what is presented) → reason.
#[tokio::test]
async fn presentation_and_binding() {
    use SenderConstraint as C;
    let f = Fixture::new(C::DpopOrMtls);
    let cert = Some(f.cert);
    // 0xfb bytes encode to '+' and '/' in standard base64: the std-encoded claim differs.
    let bound = f.dpop_bound();
    let proof = f.proof_for(&bound, "p1");
    let x5t = f.optok(&f.claims(Some(json!({"x5t#S256": jose::b64url_encode(f.cert)}))));
    let x5t_padded = f.optok(&f.claims(Some(
        json!({"x5t#S256": format!("{}=", jose::b64url_encode(f.cert))}),
    )));
    let x5t_std = f.optok(&f.claims(Some(
        json!({"x5t#S256": base64::engine::general_purpose::STANDARD_NO_PAD.encode(f.cert)}),
    )));
    let unbound = f.optok(&f.claims(None));
    let other_key_proof = proof_claims_signed_by_other(&bound);
    // (constraint, Authorization values, DPoP values, client certificate digest, reason)
    type Row<'a> = (
        SenderConstraint,
        Vec<String>,
        Vec<String>,
        Option<[u8; 32]>,
        &'a str,
    );
    let cases: Vec<Row> = vec![
        (C::Dpop, vec![], vec![], None, "anonymous"),
        (C::Dpop, vec![], vec![proof.clone()], None, "anonymous"),
        (
            C::Dpop,
            vec![format!("DPoP {bound}")],
            vec![],
            None,
            "invalid_dpop_proof",
        ),
        (
            C::Dpop,
            vec![format!("DPoP {bound}")],
            vec![proof.clone(), proof.clone()],
            None,
            "invalid_dpop_proof",
        ),
        (
            C::Dpop,
            vec![format!("DPoP {bound}")],
            vec![format!("{proof}, {proof}")],
            None,
            "invalid_dpop_proof",
        ),
        (
            C::Dpop,
            vec![format!("Bearer {bound}"), format!("DPoP {bound}")],
            vec![proof.clone()],
            None,
            "invalid_request",
        ),
        (
            C::Dpop,
            vec![format!("Bearer {bound}, DPoP {bound}")],
            vec![proof.clone()],
            None,
            "invalid_request",
        ),
        (
            C::Dpop,
            vec![format!("Negotiate {bound}")],
            vec![],
            None,
            "invalid_request",
        ),
        (
            C::Dpop,
            vec!["Bearer".into()],
            vec![],
            None,
            "invalid_request",
        ),
        (
            C::Dpop,
            vec![format!("Bearer {bound}")],
            vec![],
            None,
            "sender_constraint_mismatch",
        ),
        // Item 9: Bearer with a valid proof is DPoP; the proof is checked in full.
        (
            C::Dpop,
            vec![format!("Bearer {bound}")],
            vec![proof.clone()],
            None,
            "ok",
        ),
        (
            C::Dpop,
            vec![format!("bearer {bound}")],
            vec![proof.clone(), proof.clone()],
            None,
            "invalid_dpop_proof",
        ),
        (
            C::Dpop,
            vec![format!("Bearer {bound}")],
            vec![format!("{proof}, {proof}")],
            None,
            "invalid_dpop_proof",
        ),
        (
            C::Dpop,
            vec![format!("Bearer {bound}")],
            vec![f.proof_for(&unbound, "ath")],
            None,
            "invalid_dpop_proof",
        ),
        (
            C::Dpop,
            vec![format!("Bearer {bound}")],
            vec![proof_claims_signed_by_other(&bound)],
            None,
            "sender_constraint_mismatch",
        ),
        (
            C::Dpop,
            vec![basic(&bound)],
            vec![proof.clone()],
            None,
            "sender_constraint_mismatch",
        ),
        (
            C::Mtls,
            vec![format!("Bearer {bound}")],
            vec![proof.clone()],
            None,
            "sender_constraint_mismatch",
        ),
        (
            C::DpopOrMtls,
            vec![format!("Bearer {x5t}")],
            vec![proof.clone()],
            cert,
            "ok",
        ),
        (
            C::Dpop,
            vec![basic(&bound)],
            vec![],
            None,
            "sender_constraint_mismatch",
        ),
        (
            C::Dpop,
            vec![format!("DPoP {bound}")],
            vec![other_key_proof],
            None,
            "sender_constraint_mismatch",
        ),
        (
            C::Dpop,
            vec![format!("DPoP {unbound}")],
            vec![f.proof_for(&unbound, "u1")],
            None,
            "sender_constraint_mismatch",
        ),
        (
            C::Dpop,
            vec![format!("Bearer {x5t}")],
            vec![],
            cert,
            "sender_constraint_mismatch",
        ),
        (C::Mtls, vec![format!("Bearer {x5t}")], vec![], cert, "ok"),
        (C::Mtls, vec![basic(&x5t)], vec![], cert, "ok"),
        (
            C::Mtls,
            vec![format!("Bearer {x5t}")],
            vec![],
            Some([7; 32]),
            "sender_constraint_mismatch",
        ),
        (
            C::Mtls,
            vec![format!("Bearer {x5t}")],
            vec![],
            None,
            "sender_constraint_mismatch",
        ),
        (
            C::Mtls,
            vec![format!("Bearer {x5t_padded}")],
            vec![],
            cert,
            "sender_constraint_mismatch",
        ),
        (
            C::Mtls,
            vec![format!("Bearer {x5t_std}")],
            vec![],
            cert,
            "sender_constraint_mismatch",
        ),
        (
            C::Mtls,
            vec![format!("Bearer {unbound}")],
            vec![],
            cert,
            "sender_constraint_mismatch",
        ),
        (
            C::Mtls,
            vec![format!("DPoP {bound}")],
            vec![f.proof_for(&bound, "m1")],
            None,
            "sender_constraint_mismatch",
        ),
        (
            C::DpopOrMtls,
            vec![format!("DPoP {bound}")],
            vec![f.proof_for(&bound, "d1")],
            None,
            "ok",
        ),
        (
            C::DpopOrMtls,
            vec![format!("bearer {x5t}")],
            vec![],
            cert,
            "ok",
        ),
        (
            C::DpopOrMtls,
            vec![format!("DPoP {x5t}")],
            vec![f.proof_for(&x5t, "d2")],
            cert,
            "sender_constraint_mismatch",
        ),
        (
            C::DpopOrMtls,
            vec![format!("Bearer {unbound}")],
            vec![],
            cert,
            "sender_constraint_mismatch",
        ),
        (
            C::None,
            vec![format!("Bearer {unbound}")],
            vec![],
            None,
            "ok",
        ),
        (C::None, vec![basic(&unbound)], vec![], None, "ok"),
        (
            C::None,
            vec![format!("DPoP {unbound}")],
            vec![f.proof_for(&unbound, "n1")],
            None,
            "ok",
        ),
        (
            C::None,
            vec![format!("Bearer {bound}")],
            vec![],
            None,
            "sender_constraint_mismatch",
        ),
        (
            C::None,
            vec![format!("DPoP {bound}")],
            vec![f.proof_for(&bound, "n2")],
            None,
            "ok",
        ),
        (
            C::None,
            vec![format!("DPoP {bound}")],
            vec![f.proof_for(&unbound, "n3")],
            None,
            "invalid_dpop_proof",
        ),
    ];
    for (i, (constraint, authorization, dpop, cert, expected)) in cases.into_iter().enumerate() {
        let mut config = f.authority.config.clone();
        config.sender_constraint = constraint;
        let authority = Authority::new(config);
        authority.load_jwks(&jwks(&[("a1", &f.key)])).unwrap();
        let presented = Presented {
            method: "GET",
            authorization: authorization.iter().map(String::as_str).collect(),
            dpop: dpop.iter().map(String::as_str).collect(),
            form_password: None,
            client_cert_sha256: cert,
        };
        assert_eq!(
            reason(authority.authenticate(&presented, NOW).await),
            expected,
            "row {i} ({constraint:?})"
        );
    }
}

/// A proof for `token` by a key other than the one in its cnf.jkt.
fn proof_claims_signed_by_other(token: &str) -> String {
    let mut c = proof_claims();
    c["ath"] = json!(dpop::access_token_hash(token));
    proof(&TestKey::p256(), "ES256", &c)
}

/// The form password is a bearer presentation; with a header as well it is refused.
#[tokio::test]
async fn form_password() {
    let f = Fixture::new(SenderConstraint::None);
    let token = f.optok(&f.claims(None));
    let mut presented = Presented {
        method: "POST",
        authorization: vec![],
        dpop: vec![],
        form_password: Some(&token),
        client_cert_sha256: None,
    };
    assert_eq!(
        reason(f.authority.authenticate(&presented, NOW).await),
        "ok"
    );
    let header = format!("Bearer {token}");
    presented.authorization = vec![&header];
    assert_eq!(
        reason(f.authority.authenticate(&presented, NOW).await),
        "invalid_request"
    );
}

/// OpTok rules through the whole pipeline (cases 25-32), all with a valid presentation.
#[tokio::test]
async fn optok_rules() {
    let f = Fixture::new(SenderConstraint::None);
    let claims = f.claims(None);
    let body = claims.to_string();
    let signed = |header: Value| f.key.jws(&header.to_string(), &body);
    let unsigned = |header: Value| {
        format!(
            "{}.{}.",
            jose::b64url_encode(header.to_string()),
            jose::b64url_encode(&body)
        )
    };
    let hs256 = {
        let input = format!(
            "{}.{}",
            jose::b64url_encode(json!({"alg":"HS256","kid":"r1"}).to_string()),
            jose::b64url_encode(&body)
        );
        let n = jose::b64url_decode(f.rsa.jwk()["n"].as_str().unwrap()).unwrap();
        let mac = openssl::sign::Signer::new(
            openssl::hash::MessageDigest::sha256(),
            &openssl::pkey::PKey::hmac(&n).unwrap(),
        )
        .unwrap()
        .sign_oneshot_to_vec(input.as_bytes())
        .unwrap();
        format!("{input}.{}", jose::b64url_encode(mac))
    };
    let mut flipped = f.optok(&claims).into_bytes();
    let at = flipped.len() - 5;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    let proof_as_optok = proof(&f.key, "ES256", &proof_claims());
    let mut no_scope = claims.clone();
    no_scope["scope"] = json!("other");
    let rows: Vec<(&str, String, &str)> = vec![
        ("valid", f.optok(&claims), "ok"),
        (
            "rsa kid",
            f.rsa
                .jws(&json!({"alg":"PS256","kid":"r1"}).to_string(), &body),
            "ok",
        ),
        (
            "alg none",
            unsigned(json!({"alg":"none","kid":"a1"})),
            "invalid_optok",
        ),
        ("hs256 with n", hs256, "invalid_optok"),
        (
            "jku",
            signed(json!({"alg":"ES256","kid":"a1","jku":"http://127.0.0.1:9/jwks"})),
            "invalid_optok",
        ),
        (
            "embedded jwk",
            signed(json!({"alg":"ES256","kid":"a1","jwk":f.key.jwk()})),
            "invalid_optok",
        ),
        (
            "unknown kid",
            signed(json!({"alg":"ES256","kid":"../../etc/passwd"})),
            "invalid_optok",
        ),
        (
            "huge kid",
            signed(json!({"alg":"ES256","kid":"k".repeat(10_000)})),
            "invalid_optok",
        ),
        (
            "wrong key type for kid",
            signed(json!({"alg":"ES256","kid":"r1"})),
            "invalid_optok",
        ),
        (
            "flipped signature",
            String::from_utf8(flipped).unwrap(),
            "invalid_optok",
        ),
        ("dpop proof as optok", proof_as_optok, "invalid_optok"),
        (
            "crit",
            signed(json!({"alg":"ES256","kid":"a1","crit":["foo"],"foo":1})),
            "invalid_optok",
        ),
        (
            "insufficient scope",
            f.optok(&no_scope),
            "insufficient_optok_scope",
        ),
    ];
    for (name, token, expected) in rows {
        assert_eq!(
            reason(f.run(&[&format!("Bearer {token}")], &[], None).await),
            expected,
            "{name}"
        );
    }
    // Unknown kids are looked up at most once per cooldown (the fetch fails: nothing listens).
    assert!(f.authority.status().last_error.is_some());
}

/// Keys never fetched: 503 authority_unavailable; no credentials still means anonymous.
#[tokio::test]
async fn unavailable() {
    let mut config = config(SenderConstraint::None);
    config.metadata_address = "http://127.0.0.1:9/.well-known/openid-configuration".into();
    let authority = Authority::new(config);
    let f = Fixture::new(SenderConstraint::None);
    let token = f.optok(&f.claims(None));
    let header = format!("Bearer {token}");
    let presented = Presented {
        method: "GET",
        authorization: vec![&header],
        dpop: vec![],
        form_password: None,
        client_cert_sha256: None,
    };
    let error = authority.authenticate(&presented, NOW).await.unwrap_err();
    assert_eq!(
        (error.status(), error.reason()),
        (503, "authority_unavailable")
    );
    let anonymous = Presented {
        method: "GET",
        authorization: vec![],
        dpop: vec![],
        form_password: None,
        client_cert_sha256: None,
    };
    assert!(authority
        .authenticate(&anonymous, NOW)
        .await
        .unwrap()
        .is_none());
}

/// `Presented` for one GET with one Authorization and one DPoP value, authenticated and,
/// as the realm does once everything else passed, its proof spent.
async fn present(
    authority: &Authority,
    authorization: &str,
    proof: &str,
) -> Result<Option<Caller>, AuthError> {
    let presented = Presented {
        method: "GET",
        authorization: vec![authorization],
        dpop: vec![proof],
        form_password: None,
        client_cert_sha256: None,
    };
    let caller = authority.authenticate(&presented, NOW).await?;
    if let Some(proof) = caller.as_ref().and_then(|c| c.proof.as_ref()) {
        authority.spend(proof, NOW).await?;
    }
    Ok(caller)
}

/// Case 21: with server nonces on, a proof without one is refused with use_dpop_nonce and a
/// nonce to send; the retry carrying it passes; forged, expired, future, other-server and
/// non-string nonces are refused the same way, and no refused proof spends its jti.
#[tokio::test]
async fn server_nonces() {
    const SECRET: &[u8] = b"nonce-secret-nonce-secret-nonce!";
    let f = Fixture::new(SenderConstraint::Dpop);
    let mut config = f.authority.config.clone();
    config.nonce = Some(NonceConfig {
        secret: SECRET.to_vec(),
        lifetime: Duration::from_secs(300),
    });
    let authority = Authority::new(config);
    authority.load_jwks(&jwks(&[("a1", &f.key)])).unwrap();
    let token = f.dpop_bound();
    let header = format!("DPoP {token}");
    let with_nonce = |nonce: Value, jti: &str| {
        let mut c = proof_claims();
        c["ath"] = json!(dpop::access_token_hash(&token));
        c["jti"] = json!(jti);
        c["nonce"] = nonce;
        proof(&f.client, "ES256", &c)
    };

    let error = present(&authority, &header, &f.proof_for(&token, "j0"))
        .await
        .unwrap_err();
    assert!(error.needs_nonce());
    assert_eq!(
        (error.status(), error.reason(), error.oauth_error()),
        (401, "invalid_dpop_proof", Some("use_dpop_nonce"))
    );
    assert!(error
        .www_authenticate(SenderConstraint::Dpop)
        .starts_with(r#"DPoP error="use_dpop_nonce", algs=""#));

    let fresh = authority.fresh_nonce(NOW).unwrap();
    assert!(
        present(&authority, &header, &with_nonce(json!(fresh), "j1"))
            .await
            .unwrap()
            .is_some()
    );
    // The nonce is stateless: it stays good for its lifetime; the jti is what is spent.
    let later = with_nonce(json!(fresh), "j2");
    assert!(present(&authority, &header, &later).await.is_ok());
    assert_eq!(
        present(&authority, &header, &later)
            .await
            .unwrap_err()
            .reason(),
        "dpop_replay"
    );

    let refused = [
        ("null", Value::Null),
        ("empty", json!("")),
        ("forged", json!("A".repeat(nonce::NONCE_CHARS))),
        ("expired", json!(nonce::issue(SECRET, NOW - 301))),
        ("future", json!(nonce::issue(SECRET, NOW + 3600))),
        (
            "other server",
            json!(nonce::issue(b"another-secret-another-secret-xx", NOW)),
        ),
        ("number", json!(NOW)),
        ("object", json!({ "nonce": fresh })),
    ];
    for (i, (name, value)) in refused.into_iter().enumerate() {
        let error = present(&authority, &header, &with_nonce(value, &format!("r{i}")))
            .await
            .unwrap_err();
        assert!(error.needs_nonce(), "{name}: {error}");
    }
    assert_eq!(authority.replay_entries(), 2, "refused proofs spend no jti");

    // Other proof faults keep their own error, and do not ask for a nonce.
    let mut stale = proof_claims();
    stale["ath"] = json!(dpop::access_token_hash(&token));
    stale["iat"] = json!(NOW - 3600);
    stale["nonce"] = json!(fresh);
    let error = present(&authority, &header, &proof(&f.client, "ES256", &stale))
        .await
        .unwrap_err();
    assert_eq!(
        (error.reason(), error.needs_nonce()),
        ("invalid_dpop_proof", false)
    );
}

/// Nonces off: no nonce to hand out, and a proof's `nonce` claim is ignored.
#[tokio::test]
async fn nonces_off() {
    let f = Fixture::new(SenderConstraint::Dpop);
    assert_eq!(f.authority.fresh_nonce(NOW), None);
    let token = f.dpop_bound();
    let mut c = proof_claims();
    c["ath"] = json!(dpop::access_token_hash(&token));
    c["nonce"] = json!("whatever");
    let proof = proof(&f.client, "ES256", &c);
    assert!(present(&f.authority, &format!("DPoP {token}"), &proof)
        .await
        .unwrap()
        .is_some());
}

/// The Authority can be shared across threads and its futures run on any worker.
#[test]
fn send_and_sync() {
    fn send<T: Send>(_: &T) {}
    fn shared<T: Send + Sync>() {}
    shared::<Authority>();
    let authority = Authority::new(config(SenderConstraint::Dpop));
    let presented = Presented {
        method: "GET",
        authorization: vec![],
        dpop: vec![],
        form_password: None,
        client_cert_sha256: None,
    };
    send(&authority.authenticate(&presented, NOW));
    send(&authority.refresh());
}

/// Descriptions never quote the token.
#[tokio::test]
async fn descriptions_hide_tokens() {
    let f = Fixture::new(SenderConstraint::Dpop);
    let token = f.dpop_bound();
    let error = f
        .run(&[&format!("Bearer {token}")], &[], None)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(!text.contains(&token[..20]), "{text}");
    assert!(!format!("{error:?}").contains(&token[..20]));
}
