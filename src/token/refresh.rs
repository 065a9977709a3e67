//! Refresh tokens (docs/http.md, "Refresh tokens"): what lets `docker login` last longer than the
//! OpTok it was given.
//!
//! ```text
//! issuance:   realm grant + offline_token=true / access_type=offline ─▶ mint ─▶ refresh_token
//! redemption: POST grant_type=refresh_token ─▶ verify (signature, typ, iss, aud, exp)
//!             ─▶ check (revokedRefreshTokens, revokedLicenses, plan now, sender constraint now)
//!             ─▶ bind (cnf.x5t#S256: this connection's client certificate;
//!                      cnf.jkt: a DPoP proof by that key, no `ath`, spent last by the realm)
//!             ─▶ Caller, granted by the realm as any other caller
//! ```
//!
//! A refresh token is a JWS signed by the sidecar's own signing key, so every replica accepts it
//! without shared storage and a key rotation keeps it valid while the old key is listed in
//! `signing.previousKeys`. Two marks keep it apart from the registry tokens the same key signs:
//! header `typ` [`TYP`] (registry tokens carry `JWT`, which the proxy demands) and `aud`
//! [`AUDIENCE`] (Distribution requires its own service name there). A registry token has
//! neither, so it is never accepted as a refresh token.
//!
//! Pure functions over plain types; the clock is a parameter.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use jsonwebtoken::Header;
use serde::{Deserialize, Serialize, Serializer};

use super::claims::{OwnClaims, Registered, VerifyError};
use super::keys::{KeyError, KeySet};
use super::Issuer;
use crate::authority::dpop::DpopError;
use crate::authority::optok::{same_certificate, Binding};
use crate::authority::{
    one_proof, AuthError, AuthorityConfig, Caller, ProofUse, SenderConstraint, Via,
};
use crate::policy::Policy;

/// The JOSE `typ` of a refresh token.
pub const TYP: &str = "rt+jwt";
/// The `aud` of a refresh token: the sidecar's own realm, never a registry service.
pub const AUDIENCE: &str = "urn:registry-token:refresh";
/// `refreshTokens.lifetime` when not set: 30 days.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(720 * 3600);

/// `refreshTokens` and `revokedRefreshTokens`, ready to use; reloaded with the rest of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshSettings {
    /// Issue refresh tokens and redeem them (`refreshTokens.enabled`).
    pub enabled: bool,
    pub lifetime: Duration,
    /// The `jti`s of single refresh tokens that are no longer honoured.
    pub revoked: HashSet<String>,
}

impl Default for RefreshSettings {
    fn default() -> Self {
        RefreshSettings {
            enabled: false,
            lifetime: DEFAULT_LIFETIME,
            revoked: HashSet::new(),
        }
    }
}

/// A refresh token as it travels: serialized as the plain string, `Debug` redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(pub String);

impl Serialize for RefreshToken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

/// The claims of a refresh token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RefreshClaims {
    /// `signing.issuer`.
    pub iss: String,
    /// The OpTok's subject.
    pub sub: String,
    /// Always [`AUDIENCE`].
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    /// Names this token in `revokedRefreshTokens`.
    pub jti: String,
    /// The client that asked for it (`client_id`: `docker`, `containers/image`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The OpTok's plan claim as issued; resolved against the plans in force at each use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The OpTok's license claim; checked against `revokedLicenses` at each use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// The OpTok's binding (`cnf`), absent when it had none.
    #[serde(default, skip_serializing_if = "Binding::is_unbound")]
    pub cnf: Binding,
    /// The OpTok claims the plan's placeholders read besides `sub` and the license
    /// (`client_id`, `claim:NAME`), so that a refresh expands them the same (docs/namespaces.md).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
}

impl RefreshClaims {
    /// The claims of a refresh token for `caller`, issued `now` for `lifetime`.
    pub fn for_caller(
        caller: &Caller,
        claims: BTreeMap<String, String>,
        issuer: &str,
        client_id: Option<&str>,
        lifetime: Duration,
        now: i64,
        jti: String,
    ) -> RefreshClaims {
        RefreshClaims {
            iss: issuer.to_owned(),
            sub: caller.subject.clone(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            exp: now.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
            jti,
            client_id: client_id.filter(|c| !c.is_empty()).map(str::to_owned),
            plan: caller.plan.clone(),
            license: caller.license.clone(),
            cnf: caller.binding.clone(),
            claims,
        }
    }
}

/// Why a refresh grant was refused. Every variant is a `400` (RFC 6749 section 5.2); `Display`
/// is the `error_description` and never quotes a token.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("exactly one refresh_token is required")]
    Missing,
    #[error("the refresh token is not one this registry issued: {0}; run docker login again")]
    Invalid(&'static str),
    #[error("the refresh token has expired; run docker login again")]
    Expired,
    #[error("the refresh token has been revoked; run docker login again")]
    Revoked,
    #[error("the license of this refresh token has been revoked")]
    LicenseRevoked,
    #[error("the plan of this refresh token is not known to this registry")]
    UnknownPlan,
    /// The binding: no or another client certificate, no or a bad DPoP proof, or a sender
    /// constraint the token no longer meets.
    #[error(transparent)]
    Binding(AuthError),
}

impl RefreshError {
    /// The documented `reason`: metric label and the body's `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            RefreshError::Missing => "invalid_request",
            RefreshError::Invalid(_) => "refresh_token_invalid",
            RefreshError::Expired => "refresh_token_expired",
            RefreshError::Revoked => "refresh_token_revoked",
            RefreshError::LicenseRevoked => "license_revoked",
            RefreshError::UnknownPlan => "unknown_plan",
            RefreshError::Binding(e) => e.reason(),
        }
    }

    /// The RFC 6749 / RFC 9449 `error`: `invalid_grant`, but `use_dpop_nonce` when the proof
    /// needs a server nonce and `invalid_request` when the grant is malformed.
    pub fn error(&self) -> &'static str {
        match self {
            RefreshError::Missing => "invalid_request",
            RefreshError::Binding(e) if e.needs_nonce() => "use_dpop_nonce",
            _ => "invalid_grant",
        }
    }

    /// True when the answer must carry a fresh `DPoP-Nonce`.
    pub fn needs_nonce(&self) -> bool {
        matches!(self, RefreshError::Binding(e) if e.needs_nonce())
    }
}

impl From<AuthError> for RefreshError {
    fn from(e: AuthError) -> Self {
        RefreshError::Binding(e)
    }
}

/// Signs `claims` with the current signing key: header `alg`, `typ` [`TYP`], `kid`.
pub fn mint(keys: &KeySet, claims: &RefreshClaims) -> Result<RefreshToken, KeyError> {
    let key = &keys.current;
    let mut header = Header::new(key.algorithm());
    header.typ = Some(TYP.to_owned());
    header.kid = Some(key.kid().to_owned());
    jsonwebtoken::encode(&header, claims, key.encoding())
        .map(RefreshToken)
        .map_err(|e| KeyError::Sign(e.to_string()))
}

/// Verifies a refresh token this sidecar issued (current or previous key by `kid`): `typ`,
/// signature, algorithm, `iss`, `aud` and `exp` against `now` (no leeway: it lives for days),
/// by [`KeySet::verify_own`].
pub fn verify(
    keys: &KeySet,
    token: &str,
    issuer: &str,
    now: i64,
) -> Result<RefreshClaims, RefreshError> {
    const MAX_BYTES: usize = 8 * 1024;
    if token.len() > MAX_BYTES {
        return Err(RefreshError::Invalid("too large"));
    }
    keys.verify_own(token, &[Some(TYP)], issuer, AUDIENCE, now, 0)
        .map_err(|e| match e {
            VerifyError::Malformed => RefreshError::Invalid("malformed"),
            VerifyError::WrongType => RefreshError::Invalid("not a refresh token (typ)"),
            VerifyError::UnexpectedHeader => RefreshError::Invalid("unexpected header parameters"),
            VerifyError::UnknownKey => RefreshError::Invalid("signed by an unknown key"),
            VerifyError::AlgorithmMismatch => {
                RefreshError::Invalid("algorithm does not match the key")
            }
            VerifyError::BadSignature => RefreshError::Invalid("bad signature"),
            VerifyError::WrongIssuer => RefreshError::Invalid("issued by another issuer"),
            VerifyError::WrongAudience => RefreshError::Invalid("not a refresh token (aud)"),
            VerifyError::Expired | VerifyError::NotYetValid => RefreshError::Expired,
        })
}

impl OwnClaims for RefreshClaims {
    fn registered(&self) -> Registered<'_> {
        Registered {
            iss: &self.iss,
            aud: &self.aud,
            exp: self.exp,
            nbf: None,
        }
    }
}

/// The checks of an issuance, against the configuration in force now: the token's `jti`, its
/// license, its plan, and whether its binding still meets `constraint`.
pub fn check(
    claims: &RefreshClaims,
    settings: &RefreshSettings,
    policy: &Policy,
    constraint: SenderConstraint,
) -> Result<(), RefreshError> {
    if settings.revoked.contains(&claims.jti) {
        return Err(RefreshError::Revoked);
    }
    if policy.is_revoked(claims.license.as_deref()) {
        return Err(RefreshError::LicenseRevoked);
    }
    if policy.plan_for(claims.plan.as_deref()).is_none() {
        return Err(RefreshError::UnknownPlan);
    }
    let via = match claims.cnf {
        Binding::Jkt(_) => Via::Dpop,
        _ => Via::Bearer,
    };
    constraint
        .admits(&claims.cnf)
        .map_err(|detail| AuthError::SenderMismatch { via, detail }.into())
}

/// What the caller presented with a refresh grant to prove it holds the token's binding.
pub struct Possession<'a> {
    pub method: &'a str,
    /// Every `DPoP` field value.
    pub dpop: &'a [&'a str],
    /// SHA-256 of the verified TLS client leaf certificate (DER).
    pub client_cert_sha256: Option<[u8; 32]>,
}

/// Proves possession of the token's binding. `cnf.x5t#S256`: this connection's client
/// certificate. `cnf.jkt`: one DPoP proof by that key for this request, with no `ath`
/// (RFC 9449 section 5); its use is returned, to be spent once the grant is decided.
pub fn bind(
    claims: &RefreshClaims,
    presented: &Possession<'_>,
    authority: &AuthorityConfig,
    now: i64,
) -> Result<Option<ProofUse>, RefreshError> {
    match &claims.cnf {
        Binding::Unbound => Ok(None),
        Binding::X5t(x5t) => {
            if same_certificate(x5t, presented.client_cert_sha256) {
                Ok(None)
            } else {
                Err(AuthError::SenderMismatch {
                    via: Via::Bearer,
                    detail: "the client certificate is not the one the refresh token is bound to",
                }
                .into())
            }
        }
        Binding::Jkt(jkt) => {
            let proof = match (one_proof(presented.dpop), presented.dpop) {
                (Some(proof), _) => proof,
                (None, []) => {
                    return Err(AuthError::SenderMismatch {
                        via: Via::Dpop,
                        detail: "a DPoP-bound refresh token needs a DPoP proof",
                    }
                    .into())
                }
                _ => return Err(AuthError::InvalidProof(DpopError::Missing).into()),
            };
            let proof = authority.prove(proof, presented.method, None, Some(jkt.clone()), now)?;
            Ok(Some(proof))
        }
    }
}

/// One line for `token inspect`: whose refresh token it is, what it is bound to, how to end it.
pub fn describe(claims: &serde_json::Value) -> String {
    let text = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
    let cnf = claims.get("cnf");
    let bound = match (
        cnf.and_then(|c| c.get("jkt"))
            .and_then(serde_json::Value::as_str),
        cnf.and_then(|c| c.get("x5t#S256"))
            .and_then(serde_json::Value::as_str),
    ) {
        (Some(jkt), _) => format!("bound to the DPoP key {jkt}"),
        (_, Some(x5t)) => format!("bound to the client certificate {x5t}"),
        _ => "not sender-constrained (a bearer credential)".into(),
    };
    format!(
        "refresh token of {} (plan {}, license {}, client {}), {bound}; end it with revokedRefreshTokens: [{}]",
        text("sub").unwrap_or("?"),
        text("plan").unwrap_or("default"),
        text("license").unwrap_or("none"),
        text("client_id").unwrap_or("?"),
        text("jti").unwrap_or("?"),
    )
}

/// What `doctor` checks: the signing key mints a refresh token that verifies, and the registry
/// token verifier (the proxy's, and Distribution's `aud` check) refuses it.
pub fn self_check(issuer: &Issuer, now: i64) -> Result<(), String> {
    let claims = RefreshClaims {
        iss: issuer.name.clone(),
        sub: "registry-token-doctor".into(),
        aud: AUDIENCE.into(),
        iat: now,
        exp: now + 60,
        jti: format!("doctor-{:016x}", rand::random::<u64>()),
        client_id: None,
        plan: None,
        license: None,
        cnf: Binding::Unbound,
        claims: BTreeMap::new(),
    };
    let token = mint(&issuer.keys, &claims).map_err(|e| e.to_string())?;
    verify(&issuer.keys, &token.0, &issuer.name, now).map_err(|e| e.to_string())?;
    if issuer.services.iter().any(|s| s == AUDIENCE) {
        return Err(format!("a registry service is named {AUDIENCE}"));
    }
    let leeway = 0;
    if issuer
        .keys
        .verify(&token.0, &issuer.name, issuer.service(), now, leeway)
        .is_ok()
    {
        return Err("a refresh token passes as a registry token".into());
    }
    Ok(())
}

/// A redemption: verify, check, bind; the [`Caller`] the realm then grants as any other (its
/// DPoP proof, if any, still to spend).
pub fn redeem(
    token: &str,
    issuer: &Issuer,
    policy: &Policy,
    authority: &AuthorityConfig,
    presented: &Possession<'_>,
    now: i64,
) -> Result<Caller, RefreshError> {
    let claims = verify(&issuer.keys, token, &issuer.name, now)?;
    check(
        &claims,
        &issuer.refresh,
        policy,
        authority.sender_constraint,
    )?;
    let proof = bind(&claims, presented, authority, now)?;
    Ok(Caller {
        subject: claims.sub,
        plan: claims.plan,
        license: claims.license,
        scheme: None,
        proof,
        binding: claims.cnf,
        claims: claims.claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::dpop::tests::{proof, TestKey, NOW, REALM};
    use crate::authority::jwks::tests::jwks;
    use crate::authority::Authority;
    use crate::jose::{b64url_decode, b64url_encode};
    use crate::state::memory::MemoryCounters;
    use crate::state::Counters;
    use crate::token::realm::{issue, Audit, Refusal, TokenRequest};
    use crate::token::testkit::{slices, with_refresh, Slices, SERVICE};
    use crate::token::IssuedClaims;
    use base64::Engine;
    use serde_json::{json, Value};

    const ISSUER: &str = "registry-token";
    const CERT: [u8; 32] = [7; 32];

    /// The realm's slices with refresh tokens on, OpToks bound as `constraint` says.
    fn settings_with(constraint: SenderConstraint) -> (tempfile::TempDir, Slices) {
        let dir = tempfile::tempdir().unwrap();
        let s = with_refresh(dir.path(), constraint);
        (dir, s)
    }

    fn claims(cnf: Binding) -> RefreshClaims {
        RefreshClaims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            aud: AUDIENCE.into(),
            iat: NOW,
            exp: NOW + 3600,
            jti: "rt-1".into(),
            client_id: Some("docker".into()),
            plan: Some("enterprise".into()),
            license: Some("LIC-1".into()),
            cnf,
            claims: BTreeMap::new(),
        }
    }

    /// Re-encodes one part of a compact JWS with `change` applied (the signature is kept).
    fn tamper(token: &str, part: usize, change: impl FnOnce(&mut Value)) -> String {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut value: Value =
            serde_json::from_slice(&b64url_decode(&parts[part]).unwrap()).unwrap();
        change(&mut value);
        parts[part] = b64url_encode(value.to_string());
        parts.join(".")
    }

    /// Only a refresh token this sidecar signed, unexpired, passes `verify`; each other token
    /// is `refresh_token_invalid` or `refresh_token_expired` (docs/security.md, case 81).
    #[test]
    fn verify_accepts_only_own_unexpired_refresh_tokens() {
        let (_d, s) = settings_with(SenderConstraint::None);
        let (_f, foreign) = settings_with(SenderConstraint::None);
        let good = mint(&s.issuer.keys, &claims(Binding::Unbound)).unwrap().0;
        let registry_token = s
            .issuer
            .keys
            .sign(&IssuedClaims {
                iss: ISSUER.into(),
                sub: "alice".into(),
                aud: SERVICE.into(),
                exp: NOW + 300,
                nbf: NOW,
                iat: NOW,
                jti: "j".into(),
                access: vec![],
                extra: Default::default(),
            })
            .unwrap();
        let flipped = {
            let mut t = good.clone().into_bytes();
            let last = t.len() - 3;
            t[last] = if t[last] == b'A' { b'B' } else { b'A' };
            String::from_utf8(t).unwrap()
        };
        let rows: Vec<(&str, String, i64, Result<(), &str>)> = vec![
            ("valid", good.clone(), NOW + 10, Ok(())),
            (
                "expired",
                good.clone(),
                NOW + 3600,
                Err("refresh_token_expired"),
            ),
            (
                "signature flipped",
                flipped,
                NOW,
                Err("refresh_token_invalid"),
            ),
            (
                "claims changed",
                tamper(&good, 1, |c| c["plan"] = json!("gold")),
                NOW,
                Err("refresh_token_invalid"),
            ),
            (
                "exp extended",
                tamper(&good, 1, |c| c["exp"] = json!(NOW + 99_999_999)),
                NOW + 3600,
                Err("refresh_token_invalid"),
            ),
            (
                "typ JWT",
                tamper(&good, 0, |h| h["typ"] = json!("JWT")),
                NOW,
                Err("refresh_token_invalid"),
            ),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    tamper(&good, 0, |h| h["alg"] = json!("none"))
                        .split('.')
                        .next()
                        .unwrap(),
                    good.split('.').nth(1).unwrap()
                ),
                NOW,
                Err("refresh_token_invalid"),
            ),
            (
                "another deployment's key",
                mint(&foreign.issuer.keys, &claims(Binding::Unbound))
                    .unwrap()
                    .0,
                NOW,
                Err("refresh_token_invalid"),
            ),
            (
                "a registry token",
                registry_token,
                NOW,
                Err("refresh_token_invalid"),
            ),
            (
                "other issuer",
                mint(
                    &s.issuer.keys,
                    &RefreshClaims {
                        iss: "someone-else".into(),
                        ..claims(Binding::Unbound)
                    },
                )
                .unwrap()
                .0,
                NOW,
                Err("refresh_token_invalid"),
            ),
            (
                "registry audience",
                mint(
                    &s.issuer.keys,
                    &RefreshClaims {
                        aud: SERVICE.into(),
                        ..claims(Binding::Unbound)
                    },
                )
                .unwrap()
                .0,
                NOW,
                Err("refresh_token_invalid"),
            ),
            (
                "garbage",
                "not-a-token".into(),
                NOW,
                Err("refresh_token_invalid"),
            ),
            (
                "huge",
                "a".repeat(20_000),
                NOW,
                Err("refresh_token_invalid"),
            ),
        ];
        for (case, token, now, want) in rows {
            let got = verify(&s.issuer.keys, &token, ISSUER, now)
                .map(|_| ())
                .map_err(|e| e.reason());
            assert_eq!(got, want, "{case}");
        }
    }

    /// A refresh token is never a registry token: the proxy's verifier refuses it.
    #[test]
    fn refresh_token_is_not_a_registry_token() {
        let (_d, s) = settings_with(SenderConstraint::None);
        let token = mint(&s.issuer.keys, &claims(Binding::Unbound)).unwrap().0;
        assert!(s
            .issuer
            .keys
            .verify(&token, ISSUER, SERVICE, NOW, 0)
            .is_err());
        assert!(s
            .issuer
            .keys
            .verify(&token, ISSUER, AUDIENCE, NOW, 0)
            .is_err());
    }

    /// `check` against the configuration in force: revoked jti, revoked license, unknown plan,
    /// and a binding the sender constraint no longer accepts.
    #[test]
    fn check_applies_the_configuration_in_force() {
        let (_d, mut s) = settings_with(SenderConstraint::DpopOrMtls);
        s.issuer.refresh.revoked.insert("rt-revoked".into());
        let jkt = Binding::Jkt("k".into());
        let x5t = Binding::X5t("c".into());
        use SenderConstraint as C;
        let rows: Vec<(&str, RefreshClaims, C, Result<(), &str>)> = vec![
            ("ok", claims(jkt.clone()), C::DpopOrMtls, Ok(())),
            (
                "no plan claim: the default",
                RefreshClaims {
                    plan: None,
                    ..claims(jkt.clone())
                },
                C::Dpop,
                Ok(()),
            ),
            (
                "jti revoked",
                RefreshClaims {
                    jti: "rt-revoked".into(),
                    ..claims(jkt.clone())
                },
                C::Dpop,
                Err("refresh_token_revoked"),
            ),
            (
                "license revoked",
                RefreshClaims {
                    license: Some("LIC-REVOKED".into()),
                    ..claims(jkt.clone())
                },
                C::Dpop,
                Err("license_revoked"),
            ),
            (
                "plan gone",
                RefreshClaims {
                    plan: Some("ghost".into()),
                    ..claims(jkt.clone())
                },
                C::Dpop,
                Err("unknown_plan"),
            ),
            (
                "jkt under mtls",
                claims(jkt.clone()),
                C::Mtls,
                Err("sender_constraint_mismatch"),
            ),
            (
                "x5t under dpop",
                claims(x5t.clone()),
                C::Dpop,
                Err("sender_constraint_mismatch"),
            ),
            (
                "unbound under dpopOrMtls",
                claims(Binding::Unbound),
                C::DpopOrMtls,
                Err("sender_constraint_mismatch"),
            ),
            (
                "unbound under none",
                claims(Binding::Unbound),
                C::None,
                Ok(()),
            ),
            ("x5t under none", claims(x5t), C::None, Ok(())),
        ];
        for (case, c, constraint, want) in rows {
            let got = check(&c, &s.issuer.refresh, &s.policy, constraint).map_err(|e| e.reason());
            assert_eq!(got, want, "{case}");
        }
    }

    /// (case, cnf, DPoP proofs, client certificate, proof returned or reason).
    type Row = (
        &'static str,
        Binding,
        Vec<String>,
        Option<[u8; 32]>,
        Result<bool, &'static str>,
    );

    /// Possession: the same certificate, or one DPoP proof (POST, the realm's htu, no `ath`)
    /// by the bound key.
    #[test]
    fn bind_needs_the_certificate_or_a_proof_by_the_key() {
        let (_d, s) = settings_with(SenderConstraint::DpopOrMtls);
        let key = TestKey::p256();
        let other = TestKey::p256();
        let x5t = Binding::X5t(b64url_encode(CERT));
        let jkt = Binding::Jkt(key.jkt());
        let good = |k: &TestKey| {
            proof(
                k,
                "ES256",
                &json!({"jti": format!("j{}", rand::random::<u64>()),
                "htm":"POST","htu":REALM,"iat":NOW}),
            )
        };
        let with = |change: &dyn Fn(&mut Value)| {
            let mut c = json!({"jti":"jx","htm":"POST","htu":REALM,"iat":NOW});
            change(&mut c);
            proof(&key, "ES256", &c)
        };
        let rows: Vec<Row> = vec![
            ("certificate", x5t.clone(), vec![], Some(CERT), Ok(false)),
            (
                "no certificate",
                x5t.clone(),
                vec![],
                None,
                Err("sender_constraint_mismatch"),
            ),
            (
                "other certificate",
                x5t.clone(),
                vec![],
                Some([8; 32]),
                Err("sender_constraint_mismatch"),
            ),
            ("proof", jkt.clone(), vec![good(&key)], None, Ok(true)),
            (
                "proof with an ath",
                jkt.clone(),
                vec![with(&|c| c["ath"] = json!("x"))],
                None,
                Ok(true),
            ),
            (
                "no proof",
                jkt.clone(),
                vec![],
                Some(CERT),
                Err("sender_constraint_mismatch"),
            ),
            (
                "proof by another key",
                jkt.clone(),
                vec![good(&other)],
                None,
                Err("sender_constraint_mismatch"),
            ),
            (
                "two proofs",
                jkt.clone(),
                vec![good(&key), good(&key)],
                None,
                Err("invalid_dpop_proof"),
            ),
            (
                "htm GET",
                jkt.clone(),
                vec![with(&|c| c["htm"] = json!("GET"))],
                None,
                Err("invalid_dpop_proof"),
            ),
            (
                "other htu",
                jkt.clone(),
                vec![with(&|c| c["htu"] = json!("https://evil.example/token"))],
                None,
                Err("invalid_dpop_proof"),
            ),
            (
                "old iat",
                jkt.clone(),
                vec![with(&|c| c["iat"] = json!(NOW - 3600))],
                None,
                Err("invalid_dpop_proof"),
            ),
            ("unbound", Binding::Unbound, vec![], None, Ok(false)),
        ];
        for (case, cnf, proofs, cert, want) in rows {
            let dpop: Vec<&str> = proofs.iter().map(String::as_str).collect();
            let presented = Possession {
                method: "POST",
                dpop: &dpop,
                client_cert_sha256: cert,
            };
            let got = bind(&claims(cnf), &presented, &s.authority, NOW)
                .map(|p| p.is_some())
                .map_err(|e| e.reason());
            assert_eq!(got, want, "{case}");
        }
    }

    /// Runs the realm once with an Authority that holds `key` as kid `a1`, counting plan
    /// limits afresh.
    async fn run(
        s: &Slices,
        key: &TestKey,
        method: &str,
        query: &str,
        form: Option<String>,
        auth: Vec<String>,
    ) -> (Result<crate::token::realm::TokenResponse, Refusal>, Audit) {
        let counters = MemoryCounters::default();
        run_counted(s, key, method, query, form, auth, &counters).await
    }

    /// [`run`], counting plan limits in `counters`.
    async fn run_counted(
        s: &Slices,
        key: &TestKey,
        method: &str,
        query: &str,
        form: Option<String>,
        auth: Vec<String>,
        counters: &dyn Counters,
    ) -> (Result<crate::token::realm::TokenResponse, Refusal>, Audit) {
        let authority = Authority::new(s.authority.clone());
        authority.load_jwks(&jwks(&[("a1", key)])).unwrap();
        let req = TokenRequest {
            method,
            query: Some(query),
            form: form.as_deref().map(str::as_bytes),
            authorization: auth.iter().map(String::as_str).collect(),
            dpop: vec![],
            client_cert_sha256: None,
            client_ip: Some([192, 0, 2, 1].into()),
            counters,
        };
        let mut audit = Audit::default();
        let out = issue(&s.issuer, &s.policy, &authority, &req, NOW, &mut audit).await;
        (out, audit)
    }

    /// Through the realm: `offline_token=true` with a bearer OpTok (docker login) gets a
    /// refresh token only when enabled; redeeming it by POST answers a token, `scope` and the
    /// same refresh token; a refused redemption is `400 invalid_grant`.
    #[tokio::test]
    async fn realm_issues_and_redeems() {
        let authority_key = TestKey::p256();
        let optok = authority_key.jws(
            &json!({"alg":"ES256","kid":"a1","typ":"at+jwt"}).to_string(),
            &json!({"iss":crate::token::testkit::ISSUER,"aud":["registry"],"sub":"alice",
                "exp":NOW + 300,"iat":NOW,"scope":"registry.token.issue",
                "stellaops:plan":"enterprise","stellaops:license":"LIC-1"})
            .to_string(),
        );
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("x:{optok}"))
        );
        let login = format!("service={SERVICE}&offline_token=true&client_id=docker");

        let dir = tempfile::tempdir().unwrap();
        let disabled = slices(dir.path(), SenderConstraint::None);
        let (out, _) = run(
            &disabled,
            &authority_key,
            "GET",
            &login,
            None,
            vec![basic.clone()],
        )
        .await;
        assert!(
            out.unwrap().refresh_token.is_none(),
            "disabled: security case 45"
        );
        let (out, _) = run(
            &disabled,
            &authority_key,
            "POST",
            "",
            Some(format!(
                "grant_type=refresh_token&refresh_token=x&service={SERVICE}"
            )),
            vec![],
        )
        .await;
        assert_eq!(out.unwrap_err().as_str(), "unsupported_grant_type");

        let (_d, s) = settings_with(SenderConstraint::None);
        let (out, _) = run(
            &s,
            &authority_key,
            "GET",
            &format!("service={SERVICE}"),
            None,
            vec![basic.clone()],
        )
        .await;
        assert!(out.unwrap().refresh_token.is_none(), "not asked for");
        let (out, _) = run(&s, &authority_key, "GET", &login, None, vec![basic.clone()]).await;
        let rt = out.unwrap().refresh_token.expect("a refresh token").0;
        let claims = verify(&s.issuer.keys, &rt, ISSUER, NOW).unwrap();
        assert_eq!(
            (
                claims.sub.as_str(),
                claims.client_id.as_deref(),
                claims.plan.as_deref(),
                claims.license.as_deref(),
                claims.cnf
            ),
            (
                "alice",
                Some("docker"),
                Some("enterprise"),
                Some("LIC-1"),
                Binding::Unbound
            )
        );
        let (out, _) = run(
            &s,
            &authority_key,
            "POST",
            "",
            Some(format!(
                "grant_type=password&password={optok}&service={SERVICE}&access_type=offline"
            )),
            vec![],
        )
        .await;
        assert!(
            out.unwrap().refresh_token.is_some(),
            "POST access_type=offline"
        );

        let redeem_form = |token: &str| {
            format!("grant_type=refresh_token&refresh_token={token}&service={SERVICE}&scope=repository:acme/app:pull%20repository:acme/web:push&client_id=containers%2Fimage")
        };
        let (out, audit) = run(
            &s,
            &authority_key,
            "POST",
            "",
            Some(redeem_form(&rt)),
            vec![],
        )
        .await;
        let issued = out.unwrap();
        assert!(audit.refreshing);
        assert_eq!(
            issued.refresh_token.as_ref().map(|t| t.0.as_str()),
            Some(rt.as_str())
        );
        assert_eq!(
            issued.scope.as_deref(),
            Some("repository:acme/app:pull repository:acme/web:push")
        );
        let body = serde_json::to_value(&issued).unwrap();
        for field in [
            "access_token",
            "token",
            "scope",
            "expires_in",
            "issued_at",
            "refresh_token",
        ] {
            assert!(body.get(field).is_some(), "{field} in {body}");
        }
        // Reusable until expiry.
        assert!(run(
            &s,
            &authority_key,
            "POST",
            "",
            Some(redeem_form(&rt)),
            vec![]
        )
        .await
        .0
        .is_ok());

        let refused = |r: Refusal| (r.status(), r.error(), r.as_str());
        let rows: Vec<(&str, String, (u16, &str, &str))> = vec![
            (
                "garbage",
                redeem_form("abc"),
                (400, "invalid_grant", "refresh_token_invalid"),
            ),
            (
                "the OpTok",
                redeem_form(&optok),
                (400, "invalid_grant", "refresh_token_invalid"),
            ),
            (
                "no refresh_token",
                format!("grant_type=refresh_token&service={SERVICE}"),
                (400, "invalid_request", "invalid_request"),
            ),
            (
                "two refresh_token",
                format!("{}&refresh_token={rt}", redeem_form(&rt)),
                (400, "invalid_request", "invalid_request"),
            ),
        ];
        for (case, form, want) in rows {
            let (out, _) = run(&s, &authority_key, "POST", "", Some(form), vec![]).await;
            assert_eq!(refused(out.unwrap_err()), want, "{case}");
        }
    }

    /// A redemption is an issuance: it counts against the plan's `limits.tokens` under the
    /// token's license, as the login that minted it did, and past the limit it is
    /// `429 rate_limited` (not `invalid_grant`: the refresh token stays good).
    #[tokio::test]
    async fn redemptions_count_against_the_tokens_limit() {
        let authority_key = TestKey::p256();
        let optok = authority_key.jws(
            &json!({"alg":"ES256","kid":"a1","typ":"at+jwt"}).to_string(),
            &json!({"iss":crate::token::testkit::ISSUER,"aud":["registry"],"sub":"alice",
                "exp":NOW + 300,"iat":NOW,"scope":"registry.token.issue",
                "stellaops:plan":"enterprise","stellaops:license":"LIC-1"})
            .to_string(),
        );
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("x:{optok}"))
        );
        let (_d, mut s) = settings_with(SenderConstraint::None);
        s.policy.plans.get_mut("enterprise").unwrap().limits.tokens =
            Some(crate::policy::limits::Limit {
                count: 2,
                per: Duration::from_secs(60),
            });
        let counters = MemoryCounters::default();
        let login = format!("service={SERVICE}&offline_token=true&client_id=docker");
        let redeem = |token: &str| {
            Some(format!(
                "grant_type=refresh_token&refresh_token={token}&service={SERVICE}&scope=repository:acme/app:pull"
            ))
        };
        let (out, _) = run_counted(
            &s,
            &authority_key,
            "GET",
            &login,
            None,
            vec![basic],
            &counters,
        )
        .await;
        let rt = out.expect("login: 1 of 2").refresh_token.unwrap().0;
        type Outcome = Result<(), (u16, &'static str)>;
        let rows: Vec<(&str, Outcome)> = vec![
            ("redemption: 2 of 2", Ok(())),
            ("redemption: past the limit", Err((429, "rate_limited"))),
        ];
        for (case, want) in rows {
            let (out, audit) = run_counted(
                &s,
                &authority_key,
                "POST",
                "",
                redeem(&rt),
                vec![],
                &counters,
            )
            .await;
            assert!(audit.refreshing, "{case}");
            let got = out.map(|_| ()).map_err(|r| (r.status(), r.as_str()));
            assert_eq!(got, want, "{case}");
        }
        // A fresh window takes the same token again.
        let (out, _) = run(&s, &authority_key, "POST", "", redeem(&rt), vec![]).await;
        assert!(out.is_ok(), "a fresh window");
    }
}
