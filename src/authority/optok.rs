//! The OpTok (the Authority's access token) as the token realm reads it: a strict compact JWS
//! whose header names a key of the Authority's JWKS, and whose claims are read from the raw
//! payload JSON (`iss`, `aud`, `exp`/`nbf`/`iat` as integers, `sub`, scopes, `cnf`, plan, license).
//!
//! Signature verification needs the key and lives in [`super::Authority`]; this module is pure.

use std::collections::BTreeMap;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::dpop::integer;
use super::AuthorityConfig;
use crate::jose::{self, Compact, JoseError};

/// Longest accepted OpTok, in bytes.
pub const MAX_OPTOK_BYTES: usize = 16 * 1024;
/// Longest accepted `kid`, in characters.
pub const MAX_KID_CHARS: usize = 256;

/// Why an OpTok was refused. Messages never quote the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpTokError {
    #[error("the token is larger than 16 KiB")]
    TooLarge,
    #[error("the token is malformed: {0}")]
    Malformed(JoseError),
    #[error("the token header {0}")]
    Header(&'static str),
    #[error("the token was not signed by a known Authority key")]
    UnknownKey,
    #[error("the token signature does not verify")]
    Signature,
    #[error("the token claim {0}")]
    Claim(&'static str),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the token was issued by another authority")]
    Issuer,
    #[error("the token is not meant for this registry (aud)")]
    Audience,
    #[error("the token confirmation (cnf) {0}")]
    Confirmation(&'static str),
}

/// What the OpTok is bound to (RFC 7800 `cnf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    Unbound,
    /// `cnf.jkt`: a DPoP key thumbprint.
    Jkt(String),
    /// `cnf.x5t#S256`: a client certificate thumbprint.
    X5t(String),
}

/// An OpTok whose header passed the checks; its signature is not verified yet.
pub struct Parsed<'a> {
    pub jws: Compact<'a>,
    pub alg: Algorithm,
    pub kid: String,
}

/// The claims of an OpTok that passed every time, issuer and audience check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub subject: String,
    pub plan: Option<String>,
    pub license: Option<String>,
    pub binding: Binding,
    /// Union of `scope` (space-separated) and `scp` (array or space-separated string).
    pub scopes: Vec<String>,
    /// Every top-level string claim, by name: what plan placeholders (`${client_id}`,
    /// `${claim:NAME}`) are filled from.
    pub strings: BTreeMap<String, String>,
}

/// Header parameters that would make the verifier fetch or trust a key named by the token.
const FORBIDDEN_HEADER: [&str; 5] = ["jku", "x5u", "jwk", "x5c", "crit"];

/// Splits and checks the header: allowed `alg`, no key-bearing or `crit` parameters, `typ` not a
/// DPoP proof, a `kid` of at most 256 characters.
pub fn parse(token: &str) -> Result<Parsed<'_>, OpTokError> {
    if token.len() > MAX_OPTOK_BYTES {
        return Err(OpTokError::TooLarge);
    }
    let jws = jose::parse_compact(token).map_err(OpTokError::Malformed)?;
    let jose = &jws.header;
    let alg = jose::header_algorithm(jose).ok_or(OpTokError::Header(
        "alg is not an allowed asymmetric algorithm",
    ))?;
    if FORBIDDEN_HEADER.iter().any(|name| jose.contains_key(*name)) {
        return Err(OpTokError::Header("carries jku, x5u, jwk, x5c or crit"));
    }
    match jose.get("typ") {
        None => {}
        Some(Value::String(typ)) if !is_dpop_type(typ) => {}
        Some(_) => return Err(OpTokError::Header("typ is not an access token type")),
    }
    let kid = match jose.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() && kid.chars().count() <= MAX_KID_CHARS => {
            kid.clone()
        }
        _ => return Err(OpTokError::Header("kid is missing or invalid")),
    };
    Ok(Parsed { jws, alg, kid })
}

/// `dpop+jwt` or `application/dpop+jwt`, in any case (RFC 7515 section 4.1.9).
fn is_dpop_type(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    typ.strip_prefix("application/").unwrap_or(&typ) == "dpop+jwt"
}

/// Checks the claims against the configuration at `now` (unix seconds); all arithmetic saturates.
pub fn check_claims(
    claims: &Map<String, Value>,
    config: &AuthorityConfig,
    now: i64,
) -> Result<Claims, OpTokError> {
    if claims.get("iss").and_then(Value::as_str) != Some(config.issuer.as_str()) {
        return Err(OpTokError::Issuer);
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => config.audiences.contains(aud),
        Some(Value::Array(auds)) => {
            let auds: Option<Vec<&str>> = auds.iter().map(Value::as_str).collect();
            auds.ok_or(OpTokError::Claim(
                "aud is not a string or an array of strings",
            ))?
            .iter()
            .any(|aud| config.audiences.iter().any(|a| a == aud))
        }
        _ => false,
    };
    if !audience_ok {
        return Err(OpTokError::Audience);
    }

    let skew = i64::try_from(config.clock_skew.as_secs()).unwrap_or(i64::MAX);
    let time = |name: &str| -> Result<Option<i64>, OpTokError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => integer(v)
                .map(Some)
                .ok_or(OpTokError::Claim("exp, nbf or iat is not an integer")),
        }
    };
    let exp = time("exp")?.ok_or(OpTokError::Claim("exp is missing"))?;
    if exp <= now.saturating_sub(skew) {
        return Err(OpTokError::Expired);
    }
    if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
        return Err(OpTokError::NotYetValid);
    }
    if time("iat")?.is_some_and(|iat| iat > now.saturating_add(skew)) {
        return Err(OpTokError::IssuedInFuture);
    }

    let subject = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        _ => return Err(OpTokError::Claim("sub is missing")),
    };
    let optional_text = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(OpTokError::Claim("plan or license is not a string")),
    };
    let plan = optional_text(&config.plan_claim)?;
    let license = optional_text(&config.license_claim)?;

    let mut scopes = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            None => {}
            Some(Value::String(s)) => {
                scopes.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned))
            }
            Some(Value::Array(items)) if name == "scp" => {
                for item in items {
                    scopes.push(
                        item.as_str()
                            .ok_or(OpTokError::Claim("scp holds a non-string"))?
                            .to_owned(),
                    );
                }
            }
            Some(_) => return Err(OpTokError::Claim("scope or scp has the wrong type")),
        }
    }

    Ok(Claims {
        subject,
        plan,
        license,
        binding: binding(claims.get("cnf"))?,
        scopes,
        strings: claims
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
            .collect(),
    })
}

/// Reads `cnf`: absent, or an object with exactly one of `jkt` / `x5t#S256` (non-empty strings).
fn binding(cnf: Option<&Value>) -> Result<Binding, OpTokError> {
    let Some(cnf) = cnf else {
        return Ok(Binding::Unbound);
    };
    let cnf = cnf
        .as_object()
        .ok_or(OpTokError::Confirmation("is not an object"))?;
    let mut members = cnf.iter();
    let (Some((name, Value::String(value))), None) = (members.next(), members.next()) else {
        return Err(OpTokError::Confirmation(
            "must hold exactly one string member",
        ));
    };
    if value.is_empty() {
        return Err(OpTokError::Confirmation("is empty"));
    }
    match name.as_str() {
        "jkt" => Ok(Binding::Jkt(value.clone())),
        "x5t#S256" => Ok(Binding::X5t(value.clone())),
        _ => Err(OpTokError::Confirmation("has an unsupported member")),
    }
}

/// Whether every required scope is among the token's scopes.
pub fn has_scopes(claims: &Claims, required: &[String]) -> bool {
    required
        .iter()
        .all(|r| claims.scopes.iter().any(|s| s == r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    pub fn config() -> AuthorityConfig {
        super::super::tests::config(super::super::SenderConstraint::None)
    }

    const NOW: i64 = 1_800_000_000;

    fn claims(edit: impl FnOnce(&mut Value)) -> Result<Claims, OpTokError> {
        let mut c = json!({"iss":"https://authority.example","aud":"registry","sub":"alice",
            "exp":NOW + 300,"iat":NOW,"scope":"registry.token.issue other"});
        edit(&mut c);
        check_claims(c.as_object().unwrap(), &config(), NOW)
    }
    fn set(name: &'static str, value: Value) -> impl FnOnce(&mut Value) {
        move |c| {
            if value.is_null() {
                c.as_object_mut().unwrap().remove(name);
            } else {
                c[name] = value;
            }
        }
    }

    /// Cases 29, 30, 33, 69: claim checks, with the error each bad token gets.
    #[rstest]
    #[case::valid(set("x", json!(1)), None)]
    #[case::no_exp(set("exp", Value::Null), Some(OpTokError::Claim("exp is missing")))]
    #[case::exp_string(set("exp", json!("9999999999")), Some(OpTokError::Claim("exp, nbf or iat is not an integer")))]
    #[case::exp_float(set("exp", json!(9999999999.0)), Some(OpTokError::Claim("exp, nbf or iat is not an integer")))]
    #[case::nbf_string(set("nbf", json!("99999999999")), Some(OpTokError::Claim("exp, nbf or iat is not an integer")))]
    #[case::exp_past(set("exp", json!(NOW - 31)), Some(OpTokError::Expired))]
    #[case::exp_within_skew(set("exp", json!(NOW - 29)), None)]
    #[case::exp_max(set("exp", json!(u64::MAX)), None)]
    #[case::exp_min(set("exp", json!(i64::MIN)), Some(OpTokError::Expired))]
    #[case::iat_negative(set("iat", json!(i64::MIN)), None)]
    #[case::iat_future(set("iat", json!(NOW + 3600)), Some(OpTokError::IssuedInFuture))]
    #[case::iat_huge(set("iat", json!(u64::MAX)), Some(OpTokError::IssuedInFuture))]
    #[case::nbf_future(set("nbf", json!(NOW + 31)), Some(OpTokError::NotYetValid))]
    #[case::nbf_within_skew(set("nbf", json!(NOW + 30)), None)]
    #[case::no_aud(set("aud", Value::Null), Some(OpTokError::Audience))]
    #[case::other_aud(set("aud", json!("other")), Some(OpTokError::Audience))]
    #[case::aud_array(set("aud", json!(["other", "registry"])), None)]
    #[case::aud_array_bad(set("aud", json!(["registry", 1])), Some(OpTokError::Claim("aud is not a string or an array of strings")))]
    #[case::iss_slash(set("iss", json!("https://authority.example/")), Some(OpTokError::Issuer))]
    #[case::no_iss(set("iss", Value::Null), Some(OpTokError::Issuer))]
    #[case::no_sub(set("sub", Value::Null), Some(OpTokError::Claim("sub is missing")))]
    #[case::sub_number(set("sub", json!(7)), Some(OpTokError::Claim("sub is missing")))]
    #[case::plan_number(set("stellaops:plan", json!(1)), Some(OpTokError::Claim("plan or license is not a string")))]
    #[case::license_null(set("stellaops:license", json!([])), Some(OpTokError::Claim("plan or license is not a string")))]
    #[case::scope_array(set("scope", json!(["a"])), Some(OpTokError::Claim("scope or scp has the wrong type")))]
    #[case::cnf_both(set("cnf", json!({"jkt":"a","x5t#S256":"b"})), Some(OpTokError::Confirmation("must hold exactly one string member")))]
    #[case::cnf_unknown(set("cnf", json!({"kid":"a"})), Some(OpTokError::Confirmation("has an unsupported member")))]
    #[case::cnf_empty(set("cnf", json!({})), Some(OpTokError::Confirmation("must hold exactly one string member")))]
    #[case::cnf_x5t_empty(set("cnf", json!({"x5t#S256":""})), Some(OpTokError::Confirmation("is empty")))]
    #[case::cnf_string(set("cnf", json!("jkt")), Some(OpTokError::Confirmation("is not an object")))]
    fn claim_rules(#[case] edit: impl FnOnce(&mut Value), #[case] expected: Option<OpTokError>) {
        assert_eq!(claims(edit).err(), expected);
    }

    /// Scopes come from `scope` and `scp` (array or string).
    #[test]
    fn scopes() {
        let c = claims(set("scp", json!(["a", "b"]))).unwrap();
        assert_eq!(c.scopes, ["registry.token.issue", "other", "a", "b"]);
        assert!(has_scopes(&c, &["a".into(), "registry.token.issue".into()]));
        assert!(!has_scopes(&c, &["registry".into()]));
        let c = claims(|c| {
            c.as_object_mut().unwrap().remove("scope");
            c["scp"] = json!("x y");
        })
        .unwrap();
        assert_eq!(c.scopes, ["x", "y"]);
    }

    /// Cases 25, 27, 28, 31, 32: header rules.
    #[rstest]
    #[case::none(json!({"alg":"none","kid":"k"}), Some(OpTokError::Header("alg is not an allowed asymmetric algorithm")))]
    #[case::hs256(json!({"alg":"HS256","kid":"k"}), Some(OpTokError::Header("alg is not an allowed asymmetric algorithm")))]
    #[case::jku(json!({"alg":"RS256","kid":"k","jku":"https://evil.example/jwks"}), Some(OpTokError::Header("carries jku, x5u, jwk, x5c or crit")))]
    #[case::x5u(json!({"alg":"RS256","kid":"k","x5u":"https://evil.example/c"}), Some(OpTokError::Header("carries jku, x5u, jwk, x5c or crit")))]
    #[case::jwk(json!({"alg":"RS256","kid":"k","jwk":{}}), Some(OpTokError::Header("carries jku, x5u, jwk, x5c or crit")))]
    #[case::x5c(json!({"alg":"RS256","kid":"k","x5c":[]}), Some(OpTokError::Header("carries jku, x5u, jwk, x5c or crit")))]
    #[case::crit(json!({"alg":"RS256","kid":"k","crit":["foo"],"foo":1}), Some(OpTokError::Header("carries jku, x5u, jwk, x5c or crit")))]
    #[case::dpop_typ(json!({"alg":"ES256","kid":"k","typ":"dpop+jwt"}), Some(OpTokError::Header("typ is not an access token type")))]
    #[case::no_kid(json!({"alg":"ES256"}), Some(OpTokError::Header("kid is missing or invalid")))]
    #[case::long_kid(json!({"alg":"ES256","kid":"k".repeat(10_000)}), Some(OpTokError::Header("kid is missing or invalid")))]
    #[case::path_kid(json!({"alg":"ES256","kid":"../../etc/passwd"}), None)]
    #[case::dpop_media_type(json!({"alg":"ES256","kid":"k","typ":"Application/DPoP+JWT"}), Some(OpTokError::Header("typ is not an access token type")))]
    #[case::at_jwt(json!({"alg":"PS256","kid":"k","typ":"at+jwt"}), None)]
    fn header_rules(#[case] header: Value, #[case] expected: Option<OpTokError>) {
        let token = format!("{}.e30.AA", jose::b64url_encode(header.to_string()));
        assert_eq!(parse(&token).err(), expected);
    }

    /// Case 32: a duplicate `alg` member is refused; oversize tokens are refused before decoding.
    #[test]
    fn duplicate_and_oversize() {
        let token = format!(
            "{}.e30.AA",
            jose::b64url_encode(r#"{"alg":"ES256","kid":"k","alg":"RS256"}"#)
        );
        assert_eq!(
            parse(&token).err(),
            Some(OpTokError::Malformed(JoseError::Duplicate("header")))
        );
        assert_eq!(
            parse(&"A".repeat(MAX_OPTOK_BYTES + 1)).err(),
            Some(OpTokError::TooLarge)
        );
    }
}
