//! DPoP proof verification (RFC 9449 section 4.3) for the token realm: the caller proves it holds
//! the key its OpTok is bound to (`cnf.jkt`), for this request (`htm`, `htu`), now (`iat`), once
//! (`jti`), and for this OpTok (`ath`).
//!
//! With server nonces on ([`super::nonce`]), the proof's `nonce` must also be one this server
//! family issued recently (RFC 9449 section 8).
//!
//! [`verify_proof`] is a pure function over the proof text and the request facts. It spends
//! nothing: it returns the [`ProofUse`] the realm spends last, once every other check passed
//! (see [`super::replay`]).

use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::nonce::{self, NonceConfig};
use super::replay::ProofUse;
use crate::jose::{self, b64url_encode, JoseError, PublicKey};

/// Proofs longer than this are refused before any decoding.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// Longest accepted `jti`, in bytes.
pub const MAX_JTI_BYTES: usize = 256;

/// What a proof must match.
pub struct ProofCheck<'a> {
    /// The request method, compared exactly with `htm`.
    pub method: &'a str,
    /// The configured realm URL, compared with `htu` after normalisation.
    pub htu: &'a str,
    /// The OpTok presented with the proof (`ath` is its SHA-256); `None` for a refresh grant,
    /// where no access token accompanies the proof and `ath` is not checked (RFC 9449 section 5).
    pub access_token: Option<&'a str>,
    /// Unix seconds.
    pub now: i64,
    /// Accepted age of `iat`.
    pub lifetime: Duration,
    /// Clock tolerance: added to `lifetime`, and how far in the future `iat` may be.
    pub skew: Duration,
    /// The OpTok's `cnf.jkt`, when it has one.
    pub expected_jkt: Option<String>,
    /// Server nonces, when required: the proof's `nonce` must check against them.
    pub nonce: Option<&'a NonceConfig>,
}

/// A verified proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofOutcome {
    /// RFC 7638 thumbprint of the proof key.
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
    /// The last second (unix) at which the proof is acceptable: `iat + lifetime + skew`.
    pub expires_at: i64,
}

impl ProofOutcome {
    /// What spending this proof records in the replay store.
    pub fn to_use(&self) -> ProofUse {
        ProofUse {
            jkt: self.jkt.clone(),
            jti: self.jti.clone(),
            expires_at: self.expires_at,
        }
    }
}

/// Why a proof was refused. Messages never quote the proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("exactly one DPoP header with one proof is required")]
    Missing,
    #[error("the DPoP proof is larger than 8 KiB")]
    TooLarge,
    #[error("the DPoP proof is malformed: {0}")]
    Malformed(JoseError),
    #[error("the DPoP proof header {0}")]
    Header(&'static str),
    #[error("the DPoP proof key is refused: {0}")]
    Key(JoseError),
    #[error("the DPoP proof signature does not verify")]
    Signature,
    #[error("the DPoP proof claim {0}")]
    Claim(&'static str),
    #[error("the DPoP proof htm does not match the request method")]
    Method,
    #[error("the DPoP proof htu does not match the token endpoint")]
    Target,
    #[error("the DPoP proof iat is outside the accepted window")]
    IssuedAt,
    #[error("the DPoP proof ath does not match the presented token")]
    AccessTokenHash,
    #[error("the DPoP proof key is not the key the token is bound to")]
    SenderMismatch,
    #[error("the DPoP proof must carry a fresh server nonce")]
    Nonce,
}

/// `base64url(SHA-256(access_token))`, the `ath` claim.
pub fn access_token_hash(access_token: &str) -> String {
    b64url_encode(Sha256::digest(access_token.as_bytes()))
}

/// `htu` normal form: scheme and host lower-cased, default port dropped, query, fragment and
/// user info refused or dropped; the path is kept exactly. `None` when not an http(s) URL.
pub fn normalize_htu(htu: &str) -> Option<String> {
    let url = url::Url::parse(htu).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    })
}

/// An integer JSON number, saturated into i64 (floats, strings and huge values refused).
pub(crate) fn integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_u64().map(|_| i64::MAX))
}

/// Verifies one DPoP proof. Spends nothing: on success, spend [`ProofOutcome::to_use`] once the
/// request it comes with has passed every other check.
pub fn verify_proof(proof: &str, check: &ProofCheck) -> Result<ProofOutcome, DpopError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(DpopError::TooLarge);
    }
    let jws = jose::parse_compact(proof).map_err(DpopError::Malformed)?;
    let (key, alg) = proof_key(&jws.header)?;
    key.verify(alg, jws.signing_input, jws.signature)
        .map_err(|_| DpopError::Signature)?;

    let claims = &jws.payload;
    let text = |name: &'static str, missing: &'static str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .ok_or(DpopError::Claim(missing))
    };
    if text("htm", "htm is missing")? != check.method {
        return Err(DpopError::Method);
    }
    let htu = text("htu", "htu is missing")?;
    match (normalize_htu(htu), normalize_htu(check.htu)) {
        (Some(given), Some(wanted)) if given == wanted => {}
        _ => return Err(DpopError::Target),
    }
    let iat = claims
        .get("iat")
        .and_then(integer)
        .ok_or(DpopError::Claim("iat is missing or not an integer"))?;
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let window = secs(check.lifetime.saturating_add(check.skew));
    // Old by at most lifetime + skew; ahead of our clock by at most skew (docs/http.md).
    if iat < check.now.saturating_sub(window) || iat > check.now.saturating_add(secs(check.skew)) {
        return Err(DpopError::IssuedAt);
    }
    let jti = text("jti", "jti is missing")?;
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(DpopError::Claim("jti is empty or longer than 256 bytes"));
    }
    if let Some(token) = check.access_token {
        if text("ath", "ath is missing")? != access_token_hash(token) {
            return Err(DpopError::AccessTokenHash);
        }
    }
    let jkt = key.thumbprint();
    if check
        .expected_jkt
        .as_ref()
        .is_some_and(|expected| *expected != jkt)
    {
        return Err(DpopError::SenderMismatch);
    }
    // Last of the claim checks: a client answering use_dpop_nonce has everything else right.
    if let Some(config) = check.nonce {
        let given = claims
            .get("nonce")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !nonce::check(&config.secret, given, check.now, config.lifetime) {
            return Err(DpopError::Nonce);
        }
    }
    Ok(ProofOutcome {
        jkt,
        jti: jti.to_owned(),
        iat,
        expires_at: iat.saturating_add(window),
    })
}

/// The header checks: `typ`, an asymmetric `alg`, a public `jwk` that fits it.
fn proof_key(jose: &Map<String, Value>) -> Result<(PublicKey, jsonwebtoken::Algorithm), DpopError> {
    if jose.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(DpopError::Header("typ is not dpop+jwt"));
    }
    let alg = jose::header_algorithm(jose).ok_or(DpopError::Header(
        "alg is not an allowed asymmetric algorithm",
    ))?;
    if jose.contains_key("crit") {
        return Err(DpopError::Header("crit is not supported"));
    }
    let jwk = jose
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or(DpopError::Header("jwk is missing"))?;
    let key = PublicKey::from_jwk(jwk).map_err(DpopError::Key)?;
    Ok((key, alg))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::authority::replay::{MemoryReplayStore, ReplayError, ReplayLimits};
    use openssl::bn::{BigNum, BigNumContext};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::ecdsa::EcdsaSig;
    use openssl::hash::{hash, MessageDigest};
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::{Padding, Rsa};
    use openssl::sign::{RsaPssSaltlen, Signer};
    use rstest::rstest;
    use serde_json::json;

    pub const RFC_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    pub const RFC_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    /// RFC 9449 Fig. 2 (token request), line folding undone.
    const RFC_FIG2: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
    /// RFC 9449 Fig. 13 (protected resource request), line folding undone.
    const RFC_FIG13: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";

    pub const REALM: &str = "https://auth.example/token";
    pub const TOKEN: &str = "the-optok";
    pub const NOW: i64 = 1_800_000_000;

    /// A signing key of the test suite, used through openssl only (not jsonwebtoken).
    pub enum TestKey {
        Ec(EcKey<Private>, usize),
        Rsa(PKey<Private>),
        Ed(PKey<Private>),
    }

    impl TestKey {
        pub fn p256() -> Self {
            TestKey::Ec(
                EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
                32,
            )
        }
        pub fn p384() -> Self {
            TestKey::Ec(
                EcKey::generate(&EcGroup::from_curve_name(Nid::SECP384R1).unwrap()).unwrap(),
                48,
            )
        }
        pub fn rsa() -> Self {
            TestKey::Rsa(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap())
        }
        pub fn ed25519() -> Self {
            TestKey::Ed(PKey::generate_ed25519().unwrap())
        }
        /// A P-256 key whose public x coordinate starts with a zero byte.
        pub fn p256_leading_zero_x() -> Self {
            loop {
                let key = Self::p256();
                if key.coordinates().0[0] == 0 {
                    return key;
                }
            }
        }
        fn coordinates(&self) -> (Vec<u8>, Vec<u8>) {
            let TestKey::Ec(key, size) = self else {
                unreachable!()
            };
            let mut ctx = BigNumContext::new().unwrap();
            let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
            key.public_key()
                .affine_coordinates(key.group(), &mut x, &mut y, &mut ctx)
                .unwrap();
            let size = *size as i32;
            (
                x.to_vec_padded(size).unwrap(),
                y.to_vec_padded(size).unwrap(),
            )
        }
        /// The public JWK.
        pub fn jwk(&self) -> Value {
            match self {
                TestKey::Ec(_, size) => {
                    let (x, y) = self.coordinates();
                    let crv = if *size == 32 { "P-256" } else { "P-384" };
                    json!({"kty":"EC","crv":crv,"x":b64url_encode(x),"y":b64url_encode(y)})
                }
                TestKey::Rsa(key) => {
                    let rsa = key.rsa().unwrap();
                    json!({"kty":"RSA","n":b64url_encode(rsa.n().to_vec()),"e":b64url_encode(rsa.e().to_vec())})
                }
                TestKey::Ed(key) => {
                    json!({"kty":"OKP","crv":"Ed25519","x":b64url_encode(key.raw_public_key().unwrap())})
                }
            }
        }
        pub fn jkt(&self) -> String {
            PublicKey::from_jwk(self.jwk().as_object().unwrap())
                .unwrap()
                .thumbprint()
        }
        /// The raw JWS signature of `input` with `alg`.
        pub fn sign(&self, alg: &str, input: &[u8]) -> Vec<u8> {
            match self {
                TestKey::Ec(key, size) => {
                    let md = if *size == 32 {
                        MessageDigest::sha256()
                    } else {
                        MessageDigest::sha384()
                    };
                    let sig = EcdsaSig::sign(&hash(md, input).unwrap(), key).unwrap();
                    let size = *size as i32;
                    [
                        sig.r().to_vec_padded(size).unwrap(),
                        sig.s().to_vec_padded(size).unwrap(),
                    ]
                    .concat()
                }
                TestKey::Rsa(key) => {
                    let md = match &alg[2..] {
                        "256" => MessageDigest::sha256(),
                        "384" => MessageDigest::sha384(),
                        _ => MessageDigest::sha512(),
                    };
                    let mut signer = Signer::new(md, key).unwrap();
                    if alg.starts_with("PS") {
                        signer.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
                        signer
                            .set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
                            .unwrap();
                    }
                    signer.sign_oneshot_to_vec(input).unwrap()
                }
                TestKey::Ed(key) => Signer::new_without_digest(key)
                    .unwrap()
                    .sign_oneshot_to_vec(input)
                    .unwrap(),
            }
        }
        /// A compact JWS over the given header and claims (serialised as given).
        pub fn jws(&self, header: &str, claims: &str) -> String {
            let alg: Value = serde_json::from_str::<Value>(header)
                .ok()
                .and_then(|h| h.get("alg").cloned())
                .unwrap_or(Value::Null);
            let input = format!("{}.{}", b64url_encode(header), b64url_encode(claims));
            let sig = self.sign(alg.as_str().unwrap_or("ES256"), input.as_bytes());
            format!("{input}.{}", b64url_encode(sig))
        }
    }

    /// The claims of a proof that passes `check()`.
    pub fn claims() -> Value {
        json!({"jti":"jti-1","htm":"GET","htu":REALM,"iat":NOW,"ath":access_token_hash(TOKEN)})
    }

    /// A proof with `alg`, the key's JWK and the given claims.
    pub fn proof(key: &TestKey, alg: &str, claims: &Value) -> String {
        let header = json!({"typ":"dpop+jwt","alg":alg,"jwk":key.jwk()});
        key.jws(&header.to_string(), &claims.to_string())
    }

    pub fn check(expected_jkt: Option<String>) -> ProofCheck<'static> {
        ProofCheck {
            method: "GET",
            htu: REALM,
            access_token: Some(TOKEN),
            now: NOW,
            lifetime: Duration::from_secs(60),
            skew: Duration::from_secs(30),
            expected_jkt,
            nonce: None,
        }
    }

    /// RFC 9449 known answer: `ath` of the example token.
    #[test]
    fn rfc_ath() {
        assert_eq!(
            access_token_hash(RFC_TOKEN),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    /// Case 24: the Fig. 13 proof (a high-S signature) verifies with the clock pinned.
    #[test]
    fn rfc_fig13_verifies() {
        let check = ProofCheck {
            method: "GET",
            htu: "https://resource.example.org/protectedresource",
            access_token: Some(RFC_TOKEN),
            now: 1562262618,
            lifetime: Duration::from_secs(60),
            skew: Duration::ZERO,
            expected_jkt: Some(RFC_JKT.into()),
            nonce: None,
        };
        let outcome = verify_proof(RFC_FIG13, &check).unwrap();
        assert_eq!(outcome.jkt, RFC_JKT);
        assert_eq!(outcome.jti, "e1j3V_bKic8-LAEB");
    }

    /// The Fig. 2 signature is also high-S, and verifies at the JWS level.
    #[test]
    fn rfc_fig2_signature() {
        let jws = jose::parse_compact(RFC_FIG2).unwrap();
        let (key, alg) = proof_key(&jws.header).unwrap();
        assert_eq!(key.thumbprint(), RFC_JKT);
        key.verify(alg, jws.signing_input, jws.signature).unwrap();
        let s = jose::b64url_decode(jws.signature).unwrap()[32..].to_vec();
        let order = BigNum::from_hex_str(
            "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551",
        )
        .unwrap();
        let mut half = BigNum::new().unwrap();
        half.rshift1(&order).unwrap();
        assert!(
            BigNum::from_slice(&s).unwrap() > half,
            "the RFC example is expected to be high-S"
        );
    }

    /// Proofs by every supported key type verify and give the key's thumbprint.
    #[rstest]
    #[case(TestKey::p256(), "ES256")]
    #[case(TestKey::p384(), "ES384")]
    #[case(TestKey::ed25519(), "EdDSA")]
    #[case(TestKey::rsa(), "RS256")]
    #[case(TestKey::rsa(), "PS256")]
    #[case(TestKey::rsa(), "PS512")]
    #[case(TestKey::p256_leading_zero_x(), "ES256")] // case 23: a genuine 0x00-leading x
    fn valid(#[case] key: TestKey, #[case] alg: &str) {
        let outcome = verify_proof(&proof(&key, alg, &claims()), &check(Some(key.jkt()))).unwrap();
        assert_eq!(outcome.jkt, key.jkt());
    }

    fn claims_with(name: &str, value: Value) -> Value {
        let mut c = claims();
        if value.is_null() {
            c.as_object_mut().unwrap().remove(name);
        } else {
            c[name] = value;
        }
        c
    }

    /// Cases 9-13, 16, 17, 22: claim checks, each refused proof named by what it got wrong.
    #[rstest]
    #[case::post_on_get(claims_with("htm", json!("POST")), Some(DpopError::Method))]
    #[case::lowercase_method(claims_with("htm", json!("get")), Some(DpopError::Method))]
    #[case::other_host(claims_with("htu", json!("https://evil.example/token")), Some(DpopError::Target))]
    #[case::other_path(claims_with("htu", json!("https://auth.example/other")), Some(DpopError::Target))]
    #[case::path_case(claims_with("htu", json!("https://auth.example/Token")), Some(DpopError::Target))]
    #[case::http_scheme(claims_with("htu", json!("http://auth.example/token")), Some(DpopError::Target))]
    #[case::other_port(claims_with("htu", json!("https://auth.example:8443/token")), Some(DpopError::Target))]
    #[case::query_fragment(claims_with("htu", json!("https://auth.example/token?x=1#f")), None)]
    #[case::case_and_port(claims_with("htu", json!("HTTPS://AUTH.EXAMPLE:443/token")), None)]
    #[case::iat_minus_10(claims_with("iat", json!(NOW - 10)), None)]
    #[case::iat_plus_10(claims_with("iat", json!(NOW + 10)), None)]
    #[case::iat_oldest(claims_with("iat", json!(NOW - 90)), None)]
    #[case::iat_too_old(claims_with("iat", json!(NOW - 91)), Some(DpopError::IssuedAt))]
    #[case::iat_plus_skew(claims_with("iat", json!(NOW + 30)), None)]
    #[case::iat_past_skew(claims_with("iat", json!(NOW + 31)), Some(DpopError::IssuedAt))] // case 74
    #[case::iat_minus_hour(claims_with("iat", json!(NOW - 3600)), Some(DpopError::IssuedAt))]
    #[case::iat_plus_hour(claims_with("iat", json!(NOW + 3600)), Some(DpopError::IssuedAt))]
    #[case::iat_string(claims_with("iat", json!(NOW.to_string())), Some(DpopError::Claim("iat is missing or not an integer")))]
    #[case::iat_float(claims_with("iat", json!(NOW as f64 + 0.5)), Some(DpopError::Claim("iat is missing or not an integer")))]
    #[case::iat_huge(claims_with("iat", json!(u64::MAX)), Some(DpopError::IssuedAt))]
    #[case::iat_negative(claims_with("iat", json!(i64::MIN)), Some(DpopError::IssuedAt))]
    #[case::no_jti(
        claims_with("jti", Value::Null),
        Some(DpopError::Claim("jti is missing"))
    )]
    #[case::empty_jti(claims_with("jti", json!("")), Some(DpopError::Claim("jti is empty or longer than 256 bytes")))]
    #[case::long_jti(claims_with("jti", json!("j".repeat(257))), Some(DpopError::Claim("jti is empty or longer than 256 bytes")))]
    #[case::no_ath(
        claims_with("ath", Value::Null),
        Some(DpopError::Claim("ath is missing"))
    )]
    #[case::other_ath(claims_with("ath", json!(access_token_hash("other"))), Some(DpopError::AccessTokenHash))]
    #[case::extra_claim(claims_with("extra", json!({"a":1})), None)]
    fn claim_checks(#[case] claims: Value, #[case] expected: Option<DpopError>) {
        let key = TestKey::p256();
        let got = verify_proof(&proof(&key, "ES256", &claims), &check(Some(key.jkt())));
        assert_eq!(got.err(), expected);
    }

    /// An accepted proof spends its key, its jti, and its acceptance window's end.
    #[test]
    fn what_a_proof_spends() {
        let key = TestKey::p256();
        let outcome = verify_proof(
            &proof(&key, "ES256", &claims_with("iat", json!(NOW - 5))),
            &check(Some(key.jkt())),
        )
        .unwrap();
        assert_eq!(
            outcome.to_use(),
            ProofUse {
                jkt: key.jkt(),
                jti: "jti-1".into(),
                expires_at: NOW - 5 + 90,
            }
        );
    }

    /// A header built from the key's JWK with `edit` applied, signed by `key` with ES256.
    fn with_header(key: &TestKey, edit: impl FnOnce(&mut Value)) -> String {
        let mut header = json!({"typ":"dpop+jwt","alg":"ES256","jwk":key.jwk()});
        edit(&mut header);
        key.jws(&header.to_string(), &claims().to_string())
    }

    /// Cases 3-8, 23: structural, header, key and signature checks.
    #[test]
    fn header_and_key_checks() {
        let key = TestKey::p256();
        let good = proof(&key, "ES256", &claims());
        let [h, p, s]: [&str; 3] = good.split('.').collect::<Vec<_>>().try_into().unwrap();
        let mut flipped = jose::b64url_decode(s).unwrap();
        flipped[10] ^= 1;
        let mut short_x = key.jwk();
        short_x["x"] = json!(b64url_encode(
            &jose::b64url_decode(short_x["x"].as_str().unwrap()).unwrap()[1..]
        ));
        let hs256 = {
            let header =
                json!({"typ":"dpop+jwt","alg":"HS256","jwk":{"kty":"oct","k":key.jwk()["x"]}});
            let input = format!(
                "{}.{}",
                b64url_encode(header.to_string()),
                b64url_encode(claims().to_string())
            );
            let mac = openssl::sign::Signer::new(
                MessageDigest::sha256(),
                &PKey::hmac(&jose::b64url_decode(key.jwk()["x"].as_str().unwrap()).unwrap())
                    .unwrap(),
            )
            .unwrap()
            .sign_oneshot_to_vec(input.as_bytes())
            .unwrap();
            format!("{input}.{}", b64url_encode(mac))
        };
        let cases: Vec<(&str, String, DpopError)> = vec![
            (
                "two segments",
                format!("{h}.{p}"),
                DpopError::Malformed(JoseError::Segments),
            ),
            (
                "four segments",
                format!("{good}.{s}"),
                DpopError::Malformed(JoseError::Segments),
            ),
            (
                "padding",
                format!("{h}.{p}.{s}=="),
                DpopError::Malformed(JoseError::Base64),
            ),
            (
                "foreign char",
                format!("{h}.{p}.{}+", &s[..s.len() - 1]),
                DpopError::Malformed(JoseError::Base64),
            ),
            (
                "oversize",
                format!("{good}{}", "A".repeat(MAX_PROOF_BYTES)),
                DpopError::TooLarge,
            ),
            (
                "typ JWT",
                with_header(&key, |h| h["typ"] = json!("JWT")),
                DpopError::Header("typ is not dpop+jwt"),
            ),
            (
                "no typ",
                with_header(&key, |h| {
                    h.as_object_mut().unwrap().remove("typ");
                }),
                DpopError::Header("typ is not dpop+jwt"),
            ),
            (
                "alg none",
                format!(
                    "{}.{p}.",
                    b64url_encode(
                        json!({"typ":"dpop+jwt","alg":"none","jwk":key.jwk()}).to_string()
                    )
                ),
                DpopError::Header("alg is not an allowed asymmetric algorithm"),
            ),
            (
                "HS256 with x",
                hs256,
                DpopError::Header("alg is not an allowed asymmetric algorithm"),
            ),
            (
                "private d",
                with_header(&key, |h| h["jwk"]["d"] = json!("AAAA")),
                DpopError::Key(JoseError::Key("the JWK carries private key material")),
            ),
            (
                "31-byte x",
                with_header(&key, |h| h["jwk"] = short_x),
                DpopError::Key(JoseError::Key("the JWK coordinates are not the curve size")),
            ),
            (
                "no jwk",
                with_header(&key, |h| {
                    h.as_object_mut().unwrap().remove("jwk");
                }),
                DpopError::Header("jwk is missing"),
            ),
            (
                "crit",
                with_header(&key, |h| h["crit"] = json!(["x"])),
                DpopError::Header("crit is not supported"),
            ),
            (
                "ES384 on P-256",
                with_header(&key, |h| h["alg"] = json!("ES384")),
                DpopError::Signature,
            ),
            (
                "flipped signature",
                format!("{h}.{p}.{}", b64url_encode(flipped)),
                DpopError::Signature,
            ),
            (
                "other key's jwk",
                with_header(&key, |h| h["jwk"] = TestKey::p256().jwk()),
                DpopError::Signature,
            ),
            (
                "dup alg",
                format!(
                    "{}.{p}.{s}",
                    b64url_encode(format!(
                        r#"{{"typ":"dpop+jwt","alg":"ES256","alg":"ES256","jwk":{}}}"#,
                        key.jwk()
                    ))
                ),
                DpopError::Malformed(JoseError::Duplicate("header")),
            ),
        ];
        for (name, proof, expected) in cases {
            assert_eq!(
                verify_proof(&proof, &check(None)).err(),
                Some(expected),
                "{name}"
            );
        }
        // Case 22: unknown header parameters are fine.
        let extra = with_header(&key, |h| h["kid"] = json!("whatever"));
        verify_proof(&extra, &check(None)).unwrap();
    }

    /// Case 6: a `kty: oct` JWK with an asymmetric alg is refused too.
    #[test]
    fn oct_jwk_refused() {
        let key = TestKey::p256();
        let proof = with_header(&key, |h| h["jwk"] = json!({"kty":"oct","k":"c2VjcmV0"}));
        assert!(matches!(
            verify_proof(&proof, &check(None)),
            Err(DpopError::Key(_))
        ));
    }

    /// Spends `proof`'s use in `store` (roomy limits) at NOW.
    fn spend(store: &MemoryReplayStore, outcome: &ProofOutcome) -> Result<(), ReplayError> {
        let limits = ReplayLimits {
            capacity: 10,
            per_key: 10,
        };
        store.spend_now(&outcome.to_use(), limits, NOW)
    }

    /// Cases 14, 15, 18: replay keyed on jti (a high-S twin of the same proof spends the same
    /// jti, so it is refused too); a proof by another key than cnf.jkt is a sender mismatch.
    #[test]
    fn replay_and_binding() {
        let key = TestKey::p256();
        let store = MemoryReplayStore::new();
        let first = proof(&key, "ES256", &claims());
        let outcome = verify_proof(&first, &check(Some(key.jkt()))).unwrap();
        assert_eq!(spend(&store, &outcome), Ok(()));
        let again = verify_proof(&first, &check(Some(key.jkt()))).unwrap();
        assert_eq!(spend(&store, &again), Err(ReplayError::Replayed));

        // s' = n - s: a different, equally valid signature for the same claims.
        let (input, sig) = first.rsplit_once('.').unwrap();
        let sig = jose::b64url_decode(sig).unwrap();
        let order = BigNum::from_hex_str(
            "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551",
        )
        .unwrap();
        let mut flipped_s = BigNum::new().unwrap();
        flipped_s
            .checked_sub(&order, &BigNum::from_slice(&sig[32..]).unwrap())
            .unwrap();
        let twin = format!(
            "{input}.{}",
            b64url_encode([&sig[..32], &flipped_s.to_vec_padded(32).unwrap()].concat())
        );
        assert_ne!(twin, first);
        let twin = verify_proof(&twin, &check(Some(key.jkt()))).unwrap();
        assert_eq!(twin.to_use(), outcome.to_use());
        assert_eq!(spend(&store, &twin), Err(ReplayError::Replayed));

        let other = TestKey::p256();
        let mut claims = claims();
        claims["jti"] = json!("jti-2");
        let by_other = proof(&other, "ES256", &claims);
        assert_eq!(
            verify_proof(&by_other, &check(Some(key.jkt()))),
            Err(DpopError::SenderMismatch)
        );
        assert_eq!(store.len(), 1);
    }

    /// A proof at the old edge of the `iat` window is still acceptable, so its jti is still
    /// remembered: the same proof again in the same second is a replay (found by
    /// tests/properties.rs).
    #[test]
    fn replay_at_window_edge() {
        let key = TestKey::p256();
        let store = MemoryReplayStore::new();
        let edge = proof(&key, "ES256", &claims_with("iat", json!(NOW - 90)));
        let outcome = verify_proof(&edge, &check(None)).unwrap();
        assert_eq!(outcome.expires_at, NOW);
        spend(&store, &outcome).unwrap();
        assert_eq!(spend(&store, &outcome), Err(ReplayError::Replayed));
    }

    /// htu normalisation.
    #[rstest]
    #[case("https://A.Example:443/x?q#f", Some("https://a.example/x"))]
    #[case("http://a.example:80/x", Some("http://a.example/x"))]
    #[case("https://a.example:8443/X", Some("https://a.example:8443/X"))]
    #[case("https://user@a.example/x", None)]
    #[case("ftp://a.example/x", None)]
    #[case("/token", None)]
    fn htu_normal_form(#[case] htu: &str, #[case] expected: Option<&str>) {
        assert_eq!(normalize_htu(htu).as_deref(), expected);
    }
}
