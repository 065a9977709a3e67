//! The registry JWT the realm issues: its claims (Distribution's `access` list plus the plan and
//! license claims copied through), signing with the current key, and the one verifier of
//! tokens this sidecar signed ([`KeySet::verify_own`]): registry tokens, which the proxy checks on
//! every `/v2/` request, and refresh tokens.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::keys::{KeyError, KeySet};
use crate::registry::Scope;

/// The claims of an issued token, as Distribution reads them (`aud` is one string).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IssuedClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    /// The grants, one entry per granted scope: `{"type", "name", "actions"}`.
    pub access: Vec<Scope>,
    /// Plan and license claims copied through from the OpTok; never overrides a claim above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The claim of an issued token holding what its plan's placeholders were filled from
/// (`policy::Values`: `{"sub", "license", "claims": {"client_id", ...}}`): what the proxy's
/// filtered catalog expands the plan with (docs/namespaces.md). Only on tokens of `catalog: true`
/// plans with placeholders; an anonymous caller's token has none (it has no claims).
pub const PLACEHOLDER_CLAIMS: &str = "registry-token:claims";

/// Claim names `extra` may not carry (a duplicate would be read differently by each parser).
const REGISTERED: &[&str] = &["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"];

/// Why a token is not one this sidecar issued and still valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// Not a compact JWS, or its claims are not the kind's.
    #[error("token is malformed")]
    Malformed,
    /// Its header `typ` is not the kind asked for.
    #[error("token is malformed")]
    WrongType,
    /// A header parameter the sidecar never writes (`crit`, `jku`, `jwk`).
    #[error("token is malformed")]
    UnexpectedHeader,
    #[error("token was signed by an unknown key")]
    UnknownKey,
    #[error("token algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token was issued by another issuer")]
    WrongIssuer,
    #[error("token is meant for another service")]
    WrongAudience,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
}

/// The claims every JWT this sidecar signs carries, as [`KeySet::verify_own`] checks them.
pub struct Registered<'a> {
    pub iss: &'a str,
    pub aud: &'a str,
    pub exp: i64,
    /// `None`: the kind has no `nbf`.
    pub nbf: Option<i64>,
}

/// A kind of JWT this sidecar signs: its [`Registered`] claims.
pub trait OwnClaims: DeserializeOwned {
    fn registered(&self) -> Registered<'_>;
}

impl OwnClaims for IssuedClaims {
    fn registered(&self) -> Registered<'_> {
        Registered {
            iss: &self.iss,
            aud: &self.aud,
            exp: self.exp,
            nbf: Some(self.nbf),
        }
    }
}

/// The header `typ`s of a registry token: what `sign` writes (`JWT`), or none.
const REGISTRY_TYP: &[Option<&str>] = &[None, Some("JWT")];

impl KeySet {
    /// Signs `claims` with the current key; header `alg`, `typ: JWT`, `kid`, and `x5c` when a
    /// chain is configured.
    pub fn sign(&self, claims: &IssuedClaims) -> Result<String, KeyError> {
        let key = &self.current;
        let mut header = Header::new(key.algorithm());
        header.kid = Some(key.kid().to_owned());
        header.x5c = key.x5c().map(<[String]>::to_vec);
        let mut claims = claims.clone();
        claims
            .extra
            .retain(|name, _| !REGISTERED.contains(&name.as_str()));
        jsonwebtoken::encode(&header, &claims, key.encoding())
            .map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// Verify a registry token this sidecar issued (current or previous keys, by kid):
    /// signature, alg matches the key, iss, aud == audience, exp/nbf with `leeway` seconds.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        now: i64,
        leeway: i64,
    ) -> Result<IssuedClaims, VerifyError> {
        self.verify_own(token, REGISTRY_TYP, issuer, audience, now, leeway)
    }

    /// The one verifier of JWTs this sidecar signed (registry tokens, refresh tokens): header
    /// `typ` one of `typ`, no `crit`, `jku` or `jwk` (never written), a known `kid` and its
    /// `alg`, the signature, then `iss`, `aud`, and `exp`/`nbf` against `now` with `leeway`
    /// seconds.
    pub fn verify_own<C: OwnClaims>(
        &self,
        token: &str,
        typ: &[Option<&str>],
        issuer: &str,
        audience: &str,
        now: i64,
        leeway: i64,
    ) -> Result<C, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if !typ.contains(&header.typ.as_deref()) {
            return Err(VerifyError::WrongType);
        }
        if header.crit.is_some() || header.jku.is_some() || header.jwk.is_some() {
            return Err(VerifyError::UnexpectedHeader);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.find(kid))
            .ok_or(VerifyError::UnknownKey)?;
        if header.alg != key.alg {
            return Err(VerifyError::AlgorithmMismatch);
        }
        // Time, issuer and audience are checked below against the caller's clock.
        let mut validation = Validation::new(key.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<C>(token, key.decoding(), &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => VerifyError::BadSignature,
                ErrorKind::InvalidAlgorithm => VerifyError::AlgorithmMismatch,
                _ => VerifyError::Malformed,
            })?
            .claims;
        let own = claims.registered();
        if own.iss != issuer {
            return Err(VerifyError::WrongIssuer);
        }
        if own.aud != audience {
            return Err(VerifyError::WrongAudience);
        }
        if now >= own.exp.saturating_add(leeway) {
            return Err(VerifyError::Expired);
        }
        if own.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(VerifyError::NotYetValid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::keygen::{keygen, KeyAlg};
    use crate::registry::Resource;
    use crate::token::keys::tests::{config, key_file};
    use crate::token::keys::SigningConfig;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use rstest::rstest;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const ISS: &str = "registry-token";
    const AUD: &str = "registry.example.com";

    fn claims() -> IssuedClaims {
        IssuedClaims {
            iss: ISS.into(),
            sub: "alice".into(),
            aud: AUD.into(),
            exp: NOW + 300,
            nbf: NOW,
            iat: NOW,
            jti: "j-1".into(),
            access: vec![Scope::new(Resource::repository("acme/app"), ["pull"])],
            extra: Map::new(),
        }
    }

    fn ec_keys() -> (tempfile::TempDir, KeySet) {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeySet::load(&config(key_file(dir.path(), "ec-pkcs8"))).unwrap();
        (dir, keys)
    }

    fn part(token: &str, i: usize) -> Value {
        serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(i).unwrap())
                .unwrap(),
        )
        .unwrap()
    }

    /// A keygen'd key of each algorithm signs a token that verifies, with the header
    /// Distribution reads: alg, typ JWT, kid and the x5c chain.
    #[rstest]
    #[case(KeyAlg::Es256, "ES256")]
    #[case(KeyAlg::Rs256, "RS256")]
    #[case(KeyAlg::EdDsa, "EdDSA")]
    fn sign_then_verify_round_trip(#[case] alg: KeyAlg, #[case] name: &str) {
        let dir = tempfile::tempdir().unwrap();
        keygen(alg, dir.path(), "https://r/token", AUD, ISS).unwrap();
        let keys = KeySet::load(&SigningConfig {
            certificate_chain: Some(dir.path().join("signing-chain.crt")),
            ..config(dir.path().join("signing.pem"))
        })
        .unwrap();
        let token = keys.sign(&claims()).unwrap();
        let header = part(&token, 0);
        assert_eq!(header["alg"], name);
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["kid"], keys.current.kid());
        assert_eq!(header["x5c"].as_array().map(Vec::len), Some(2));
        let got = keys.verify(&token, ISS, AUD, NOW + 1, 0).unwrap();
        assert_eq!(got.access, claims().access);
        assert_eq!(got.sub, "alice");
    }

    /// The payload carries `aud` as one JSON string, the access list, and the copied-through
    /// extra claims, which can never replace a registered claim.
    #[test]
    fn payload_shape_and_extra_claims() {
        let (_dir, keys) = ec_keys();
        let mut c = claims();
        c.extra.insert("stellaops:plan".into(), json!("enterprise"));
        c.extra.insert("iss".into(), json!("evil"));
        c.extra.insert("aud".into(), json!(["other"]));
        let token = keys.sign(&c).unwrap();
        let payload = part(&token, 1);
        assert_eq!(payload["aud"], json!(AUD));
        assert_eq!(payload["iss"], json!(ISS));
        assert_eq!(payload["stellaops:plan"], json!("enterprise"));
        assert_eq!(
            payload["access"],
            json!([{"type": "repository", "name": "acme/app", "actions": ["pull"]}])
        );
        // No chain configured: no x5c header.
        assert!(part(&keys.sign(&claims()).unwrap(), 0).get("x5c").is_none());
        let back = keys.verify(&token, ISS, AUD, NOW, 0).unwrap();
        assert_eq!(back.extra.get("stellaops:plan"), Some(&json!("enterprise")));
        assert_eq!(back.extra.len(), 1);
    }

    /// Each way a token can fail gets its own error (clock at NOW + `at`, 30 s leeway).
    #[rstest]
    #[case::expired(NOW + 300 + 30, ISS, AUD, VerifyError::Expired)]
    #[case::not_yet_valid(NOW - 31, ISS, AUD, VerifyError::NotYetValid)]
    #[case::wrong_issuer(NOW, "registry-token/", AUD, VerifyError::WrongIssuer)]
    #[case::wrong_audience(NOW, ISS, "other-registry", VerifyError::WrongAudience)]
    fn verify_rejects(
        #[case] now: i64,
        #[case] iss: &str,
        #[case] aud: &str,
        #[case] want: VerifyError,
    ) {
        let (_dir, keys) = ec_keys();
        let token = keys.sign(&claims()).unwrap();
        assert_eq!(keys.verify(&token, iss, aud, now, 30), Err(want));
    }

    /// Leeway boundaries: valid up to just before exp + leeway and from nbf - leeway.
    #[rstest]
    #[case(NOW + 300 + 29)]
    #[case(NOW - 30)]
    fn verify_accepts_within_leeway(#[case] now: i64) {
        let (_dir, keys) = ec_keys();
        let token = keys.sign(&claims()).unwrap();
        assert!(keys.verify(&token, ISS, AUD, now, 30).is_ok());
    }

    /// Tokens from other keys, forged signatures, alg swaps and junk are refused.
    #[test]
    fn verify_rejects_foreign_and_forged_tokens() {
        let (_dir, keys) = ec_keys();
        let (_dir2, other) = ec_keys();
        let foreign = other.sign(&claims()).unwrap();
        assert_eq!(
            keys.verify(&foreign, ISS, AUD, NOW, 0),
            Err(VerifyError::UnknownKey)
        );

        // Our kid on another key's signature.
        let mut parts: Vec<String> = foreign.split('.').map(str::to_owned).collect();
        let mut header = part(&foreign, 0);
        header["kid"] = json!(keys.current.kid());
        parts[0] = URL_SAFE_NO_PAD.encode(header.to_string());
        assert_eq!(
            keys.verify(&parts.join("."), ISS, AUD, NOW, 0),
            Err(VerifyError::BadSignature)
        );

        // HS256 with our kid (the public key as an HMAC secret).
        header["alg"] = json!("HS256");
        parts[0] = URL_SAFE_NO_PAD.encode(header.to_string());
        assert_eq!(
            keys.verify(&parts.join("."), ISS, AUD, NOW, 0),
            Err(VerifyError::AlgorithmMismatch)
        );

        header["alg"] = json!("none");
        parts[0] = URL_SAFE_NO_PAD.encode(header.to_string());
        parts[2] = String::new();
        assert_eq!(
            keys.verify(&parts.join("."), ISS, AUD, NOW, 0),
            Err(VerifyError::Malformed)
        );

        // A token without kid, and plain junk.
        let mut no_kid = part(&foreign, 0);
        no_kid.as_object_mut().unwrap().remove("kid");
        parts[0] = URL_SAFE_NO_PAD.encode(no_kid.to_string());
        assert_eq!(
            keys.verify(&parts.join("."), ISS, AUD, NOW, 0),
            Err(VerifyError::UnknownKey)
        );
        assert_eq!(
            keys.verify("a.b", ISS, AUD, NOW, 0),
            Err(VerifyError::Malformed)
        );
    }

    /// A string `exp` (CVE-2026-25537 shape) is malformed, not "no expiry".
    #[test]
    fn verify_rejects_string_times() {
        let (_dir, keys) = ec_keys();
        let mut c = claims();
        c.extra.insert("x".into(), json!(1));
        let token = keys.sign(&c).unwrap();
        let mut payload = part(&token, 1);
        payload["exp"] = json!("9999999999");
        let forged = format!(
            "{}.{}",
            token.split('.').next().unwrap(),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        // Re-sign the forged payload properly so only the type is wrong.
        let header = jsonwebtoken::decode_header(&token).unwrap();
        let sig =
            jsonwebtoken::crypto::sign(forged.as_bytes(), keys.current.encoding(), header.alg)
                .unwrap();
        assert_eq!(
            keys.verify(&format!("{forged}.{sig}"), ISS, AUD, NOW, 0),
            Err(VerifyError::Malformed)
        );
    }

    /// After a rotation, tokens signed by the old key still verify through `previousKeys`.
    #[test]
    fn previous_keys_verify_old_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let old_path = key_file(dir.path(), "ed25519");
        let old = KeySet::load(&config(old_path.clone())).unwrap();
        let token = old.sign(&claims()).unwrap();
        let mut cfg = config(key_file(dir.path(), "rsa-pkcs8"));
        let rotated = KeySet::load(&cfg).unwrap();
        assert_eq!(
            rotated.verify(&token, ISS, AUD, NOW, 0),
            Err(VerifyError::UnknownKey)
        );
        cfg.previous_keys = vec![old_path];
        let rotated = KeySet::load(&cfg).unwrap();
        assert!(rotated.verify(&token, ISS, AUD, NOW, 0).is_ok());
    }
}
