//! JOSE, said once: base64url, compact JWS parsing, public JWKs with their RFC 7638
//! thumbprints, signature verification, and the [`Clock`] that JWT times are read against.
//!
//! The OpTok ([`crate::authority::optok`]) and DPoP ([`crate::authority::dpop`]) checks parse
//! strictly here (three strict base64url segments, JSON objects that refuse duplicate members);
//! the realm's key ids ([`crate::token`]) take their thumbprints from here; the command-line
//! tools peek at tokens here ([`peek_segment`]). Time is a NumericDate (RFC 7519: unix
//! seconds) taken from a [`Clock`] the caller passes in, so expiry is testable without sleeping.
//!
//! Everything but [`SystemClock`] is pure: no I/O, no clock.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcPoint};
use openssl::nid::Nid;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Why a JOSE object or key was refused. Messages never quote the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    #[error("not a compact JWS of three segments")]
    Segments,
    #[error("a segment is not strict base64url")]
    Base64,
    #[error("the {0} is not a JSON object")]
    Json(&'static str),
    #[error("the {0} has a duplicate member")]
    Duplicate(&'static str),
    #[error("the algorithm is not allowed")]
    Algorithm,
    #[error("{0}")]
    Key(&'static str),
    #[error("the signature does not verify")]
    Signature,
}

/// The asymmetric algorithms accepted for OpToks and DPoP proofs, as advertised in `algs`.
pub const ALGORITHMS: [(&str, Algorithm); 9] = [
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
];

/// The allowed algorithm named exactly `name` (never `none`, never HMAC).
pub fn algorithm(name: &str) -> Option<Algorithm> {
    ALGORITHMS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// The allowed algorithm a JOSE header's `alg` names, if it names one.
pub fn header_algorithm(jose: &Map<String, Value>) -> Option<Algorithm> {
    jose.get("alg").and_then(|a| a.as_str()).and_then(algorithm)
}

/// Strict base64url: no padding, no foreign characters, no stray trailing bits.
pub fn b64url_decode(segment: &str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JoseError::Base64)
}

/// base64url without padding.
pub fn b64url_encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The JSON in one segment of a compact JWS, unverified and leniently read (any JSON value,
/// duplicates allowed): for showing a token, never for deciding on one.
pub fn peek_segment(segment: &str) -> Option<Value> {
    serde_json::from_slice(&b64url_decode(segment).ok()?).ok()
}

/// A compact JWS split and decoded; the signature is not checked yet.
pub struct Compact<'a> {
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
    /// `BASE64URL(header) . BASE64URL(payload)`, the signed bytes.
    pub signing_input: &'a str,
    /// The third segment, still encoded (already checked to be strict base64url).
    pub signature: &'a str,
}

/// Splits `token` into exactly three strict base64url segments whose first two are JSON objects
/// without duplicate members (at any depth).
pub fn parse_compact(token: &str) -> Result<Compact<'_>, JoseError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JoseError::Segments);
    };
    let header = parse_object(&b64url_decode(h)?, "header")?;
    let payload = parse_object(&b64url_decode(p)?, "payload")?;
    b64url_decode(s)?;
    Ok(Compact {
        header,
        payload,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature: s,
    })
}

/// Parses a JSON object, refusing duplicate member names anywhere inside it
/// (`serde_json::Value` would silently keep the last one).
pub fn parse_object(bytes: &[u8], what: &'static str) -> Result<Map<String, Value>, JoseError> {
    let Ok(Value::Object(map)) = serde_json::from_slice(bytes) else {
        return Err(JoseError::Json(what));
    };
    serde_json::from_slice::<NoDuplicates>(bytes).map_err(|_| JoseError::Duplicate(what))?;
    Ok(map)
}

/// Walks a JSON document and fails on the first object with a repeated member name.
struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicates)
    }
}

impl<'de> Visitor<'de> for NoDuplicates {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON without duplicate members")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !seen.insert(name) {
                return Err(de::Error::custom("duplicate member"));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(self)
    }
}

/// RFC 7638 JWK thumbprint: base64url SHA-256 of the required members in lexicographic order,
/// without whitespace. Members other than the required ones are ignored.
pub fn thumbprint(jwk: &Value) -> String {
    let members: &[&str] = match jwk["kty"].as_str() {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("RSA") => &["e", "kty", "n"],
        Some("OKP") => &["crv", "kty", "x"],
        _ => &["kty"],
    };
    // Inserted in lexicographic order, so the text is canonical whether or not serde_json keeps
    // insertion order; `to_string` writes no whitespace.
    let canonical: Map<String, Value> = members
        .iter()
        .map(|m| (m.to_string(), jwk[*m].clone()))
        .collect();
    b64url_encode(Sha256::digest(
        Value::Object(canonical).to_string().as_bytes(),
    ))
}

/// The members that only a private (or symmetric) JWK carries.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The key material of a public JWK, canonical base64url strings as received.
#[derive(Clone, PartialEq, Eq)]
enum Material {
    /// `crv` is `P-256` or `P-384`.
    Ec {
        crv: &'static str,
        x: String,
        y: String,
    },
    Rsa {
        n: String,
        e: String,
    },
    /// Ed25519 only.
    Okp {
        x: String,
    },
}

/// A validated public signature key (from the Authority's JWKS or a DPoP proof header).
#[derive(Clone)]
pub struct PublicKey {
    material: Material,
    /// The JWK's `alg`, when it names one: then only that algorithm verifies.
    alg: Option<Algorithm>,
    decoding: DecodingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("jkt", &self.thumbprint())
            .finish()
    }
}

/// A string member decoded as strict base64url.
fn member<'a>(
    jwk: &'a Map<String, Value>,
    name: &'static str,
) -> Result<(&'a str, Vec<u8>), JoseError> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or(JoseError::Key("the JWK lacks a required member"))?;
    Ok((
        text,
        b64url_decode(text).map_err(|_| JoseError::Key("a JWK member is not strict base64url"))?,
    ))
}

impl PublicKey {
    /// Validates a JWK: public members only, `kty` EC (P-256/P-384, on the curve, coordinates
    /// exactly the field size), RSA (2048..=8192 bits, minimal `n`/`e`) or OKP (Ed25519);
    /// `oct` and everything else refused.
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<Self, JoseError> {
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err(JoseError::Key("the JWK carries private key material"));
        }
        let alg = match jwk.get("alg") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .and_then(algorithm)
                    .ok_or(JoseError::Key("the JWK names an unsupported alg"))?,
            ),
        };
        let kty = jwk
            .get("kty")
            .and_then(Value::as_str)
            .ok_or(JoseError::Key("the JWK has no kty"))?;
        let (material, decoding) = match kty {
            "EC" => {
                let (crv, size, nid) = match jwk.get("crv").and_then(Value::as_str) {
                    Some("P-256") => ("P-256", 32, Nid::X9_62_PRIME256V1),
                    Some("P-384") => ("P-384", 48, Nid::SECP384R1),
                    _ => return Err(JoseError::Key("the JWK curve is not supported")),
                };
                let (x, xb) = member(jwk, "x")?;
                let (y, yb) = member(jwk, "y")?;
                if xb.len() != size || yb.len() != size {
                    return Err(JoseError::Key("the JWK coordinates are not the curve size"));
                }
                let point = [&[4u8][..], &xb, &yb].concat();
                on_curve(nid, &point).ok_or(JoseError::Key("the JWK point is not on the curve"))?;
                let decoding = DecodingKey::from_ec_components(x, y)
                    .map_err(|_| JoseError::Key("bad EC key"))?;
                (
                    Material::Ec {
                        crv,
                        x: x.to_owned(),
                        y: y.to_owned(),
                    },
                    decoding,
                )
            }
            "RSA" => {
                let (n, nb) = member(jwk, "n")?;
                let (e, eb) = member(jwk, "e")?;
                let minimal = |b: &[u8]| b.first().is_some_and(|first| *first != 0);
                if !minimal(&nb) || !minimal(&eb) || eb.len() > 4 || eb[eb.len() - 1] & 1 == 0 {
                    return Err(JoseError::Key("the RSA JWK is not canonical"));
                }
                if !(256..=1024).contains(&nb.len()) {
                    return Err(JoseError::Key("the RSA modulus is not 2048 to 8192 bits"));
                }
                let decoding = DecodingKey::from_rsa_raw_components(&nb, &eb);
                (
                    Material::Rsa {
                        n: n.to_owned(),
                        e: e.to_owned(),
                    },
                    decoding,
                )
            }
            "OKP" => {
                if jwk.get("crv").and_then(Value::as_str) != Some("Ed25519") {
                    return Err(JoseError::Key("the JWK curve is not supported"));
                }
                let (x, xb) = member(jwk, "x")?;
                if xb.len() != 32 {
                    return Err(JoseError::Key("the Ed25519 key is not 32 bytes"));
                }
                let decoding = DecodingKey::from_ed_components(x)
                    .map_err(|_| JoseError::Key("bad Ed25519 key"))?;
                (Material::Okp { x: x.to_owned() }, decoding)
            }
            "oct" => return Err(JoseError::Key("symmetric keys are not allowed")),
            _ => return Err(JoseError::Key("the JWK kty is not supported")),
        };
        let key = PublicKey {
            material,
            alg,
            decoding,
        };
        match alg {
            Some(a) if !key.fits(a) => Err(JoseError::Key("the JWK alg does not fit its key type")),
            _ => Ok(key),
        }
    }

    /// Whether `alg` can be verified with this key type (and the JWK's own `alg`, if any).
    fn fits(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        let by_type = match &self.material {
            Material::Ec { crv, .. } => {
                (*crv == "P-256" && alg == ES256) || (*crv == "P-384" && alg == ES384)
            }
            Material::Rsa { .. } => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Material::Okp { .. } => alg == EdDSA,
        };
        by_type && self.alg.is_none_or(|own| own == alg)
    }

    /// The key's required public members, as a JWK.
    pub fn jwk(&self) -> Value {
        match &self.material {
            Material::Ec { crv, x, y } => json!({"kty": "EC", "crv": crv, "x": x, "y": y}),
            Material::Rsa { n, e } => json!({"kty": "RSA", "n": n, "e": e}),
            Material::Okp { x } => json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
        }
    }

    /// The key `jsonwebtoken` verifies signatures with.
    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The RFC 7638 [`thumbprint`] of the key (a DPoP `jkt`).
    pub fn thumbprint(&self) -> String {
        thumbprint(&self.jwk())
    }

    /// Verifies `signature` (strict base64url) over `signing_input` with `alg`.
    /// ECDSA accepts both low-S and high-S signatures, as RFC 7518 does.
    pub fn verify(
        &self,
        alg: Algorithm,
        signing_input: &str,
        signature: &str,
    ) -> Result<(), JoseError> {
        if !self.fits(alg) {
            return Err(JoseError::Algorithm);
        }
        b64url_decode(signature)?;
        match jsonwebtoken::crypto::verify(signature, signing_input.as_bytes(), &self.decoding, alg)
        {
            Ok(true) => Ok(()),
            _ => Err(JoseError::Signature),
        }
    }
}

/// `Some(())` when the uncompressed `point` lies on the curve `nid`.
fn on_curve(nid: Nid, point: &[u8]) -> Option<()> {
    let group = EcGroup::from_curve_name(nid).ok()?;
    let mut ctx = BigNumContext::new().ok()?;
    EcPoint::from_bytes(&group, point, &mut ctx).ok().map(drop)
}

/// Where the time comes from: a NumericDate (RFC 7519), unix seconds. Passed in where time
/// matters, so that tests can hold it still or move it.
pub trait Clock: Send + Sync {
    /// Now, in unix seconds.
    fn now(&self) -> i64;
}

/// The system's clock; a clock before 1970 reads 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}

/// A clock that reads what it was last set to (tests).
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    /// A clock standing at `now`.
    pub fn at(now: i64) -> Self {
        FixedClock(AtomicI64::new(now))
    }

    /// Moves the clock to `now`.
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::Relaxed);
    }

    /// Moves the clock `seconds` on.
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::Relaxed);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// RFC 7638 §3.1 (RSA) and RFC 9449 Fig. 9 (EC) thumbprints.
    #[rstest]
    #[case::rfc7638_rsa(
        serde_json::json!({"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    )]
    #[case::rfc9449_ec(
        serde_json::json!({"crv": "P-256", "kty": "EC", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs", "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "use": "sig"}),
        "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    )]
    fn thumbprint_known_answers(#[case] jwk: Value, #[case] expected: &str) {
        assert_eq!(thumbprint(&jwk), expected);
    }

    /// RFC 9449 Fig. 9's JWK, validated, has the thumbprint the RFC gives.
    #[test]
    fn rfc9449_thumbprint() {
        let jwk = serde_json::json!({"crv":"P-256","kty":"EC",
            "x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"});
        let key = PublicKey::from_jwk(jwk.as_object().unwrap()).unwrap();
        assert_eq!(
            key.thumbprint(),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    /// Duplicate members are refused at any depth, including via escapes; distinct ones pass.
    #[rstest]
    #[case(r#"{"alg":"ES256","alg":"none"}"#, false)]
    #[case(r#"{"alg":"ES256","\u0061lg":"none"}"#, false)]
    #[case(r#"{"jwk":{"x":"a","x":"b"}}"#, false)]
    #[case(r#"{"a":[{"b":1,"b":2}]}"#, false)]
    #[case(r#"{"a":1,"b":{"a":1}}"#, true)]
    #[case(r#"[1]"#, false)]
    #[case(r#"{"a":1} x"#, false)]
    fn duplicates(#[case] json: &str, #[case] ok: bool) {
        assert_eq!(parse_object(json.as_bytes(), "header").is_ok(), ok);
    }

    /// Compact JWS splitting: exactly three strict base64url segments.
    #[rstest]
    #[case("e30.e30.", true)]
    #[case("e30.e30.AA", true)]
    #[case("e30.e30", false)]
    #[case("e30.e30.AA.AA", false)]
    #[case("e30=.e30.AA", false)]
    #[case("e30.e30.A+", false)]
    #[case("e30.e30.AB", false)] // non-zero trailing bits
    #[case("e30.e30.A", false)]
    fn compact(#[case] token: &str, #[case] ok: bool) {
        assert_eq!(parse_compact(token).is_ok(), ok);
    }

    /// A segment is peeked at leniently: any JSON, duplicates and all; not base64url or not
    /// JSON is `None`.
    #[rstest]
    #[case("eyJhIjoxLCJhIjoyfQ", Some(serde_json::json!({"a": 2})))]
    #[case("WzFd", Some(serde_json::json!([1])))]
    #[case("e30=", None)]
    #[case("bm90IGpzb24", None)]
    fn peek(#[case] segment: &str, #[case] expected: Option<Value>) {
        assert_eq!(peek_segment(segment), expected);
    }

    /// A fixed clock reads what it was set to and moves only when told.
    #[test]
    fn fixed_clock() {
        let clock = FixedClock::at(1_000);
        assert_eq!(clock.now(), 1_000);
        clock.advance(61);
        assert_eq!(clock.now(), 1_061);
        clock.set(5);
        assert_eq!(clock.now(), 5);
        assert!(SystemClock.now() > 1_700_000_000);
    }

    /// Private, symmetric, non-canonical and off-curve keys are refused.
    #[rstest]
    #[case(serde_json::json!({"kty":"oct","k":"AAAA"}))]
    #[case(serde_json::json!({"kty":"EC","crv":"P-256","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","d":"AAAA"}))]
    #[case(serde_json::json!({"kty":"EC","crv":"P-256","x":"8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"}))]
    #[case(serde_json::json!({"kty":"EC","crv":"P-256","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs"}))]
    #[case(serde_json::json!({"kty":"EC","crv":"P-521","x":"AA","y":"AA"}))]
    #[case(serde_json::json!({"kty":"RSA","n":"AAEC","e":"AQAB"}))]
    #[case(serde_json::json!({"kty":"OKP","crv":"X25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}))]
    #[case(serde_json::json!({"kty":"EC","crv":"P-256","alg":"RS256","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"}))]
    fn bad_keys(#[case] jwk: Value) {
        assert!(PublicKey::from_jwk(jwk.as_object().unwrap()).is_err());
    }

    /// P-384 points are checked against their own curve: a real key passes, its x repeated as
    /// y does not, and a P-256 key still passes after.
    #[test]
    fn p384_points_on_and_off_the_curve() {
        use openssl::bn::BigNum;
        let group = EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
        let key = openssl::ec::EcKey::generate(&group).unwrap();
        let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        let mut ctx = BigNumContext::new().unwrap();
        key.public_key()
            .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
            .unwrap();
        let b = |n: &BigNum| b64url_encode(n.to_vec_padded(48).unwrap());
        let jwk =
            |x: &BigNum, y: &BigNum| json!({"kty": "EC", "crv": "P-384", "x": b(x), "y": b(y)});
        let on = jwk(&x, &y);
        assert!(PublicKey::from_jwk(on.as_object().unwrap()).is_ok());
        let off = jwk(&x, &x);
        assert!(PublicKey::from_jwk(off.as_object().unwrap()).is_err());
        let p256 = json!({"kty": "EC", "crv": "P-256",
            "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"});
        assert!(PublicKey::from_jwk(p256.as_object().unwrap()).is_ok());
    }
}
