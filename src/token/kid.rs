//! Key ids (`kid`) of the signing keys, in the two forms Distribution looks keys up by: the
//! libtrust fingerprint (Distribution 2.x, its `rootcertbundle`) and the RFC 7638 JWK
//! thumbprint (Distribution 3.x, its `jwks`). Plain functions over key bytes and JWKs.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How the `kid` of a key is derived when `signing.keyId` is not set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyIdFormat {
    /// libtrust fingerprint, what Distribution 2.x looks up in its `rootcertbundle`.
    #[default]
    Libtrust,
    /// RFC 7638 JWK thumbprint, what Distribution 3.x looks up in its `jwks`.
    Thumbprint,
}

impl KeyIdFormat {
    /// The key id of the key whose DER SubjectPublicKeyInfo is `spki` and public JWK `jwk`.
    pub fn derive(self, spki: &[u8], jwk: &Value) -> String {
        match self {
            KeyIdFormat::Libtrust => libtrust_key_id(spki),
            KeyIdFormat::Thumbprint => thumbprint_key_id(jwk),
        }
    }
}

/// libtrust key id (Distribution 2.x): base32 of the first 240 bits of SHA-256 over the DER
/// SubjectPublicKeyInfo, in 12 groups of 4 joined by `:`.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let b32 = data_encoding::BASE32_NOPAD.encode(&digest[..30]);
    let mut kid = String::with_capacity(59);
    for (i, c) in b32.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            kid.push(':');
        }
        kid.push(c);
    }
    kid
}

/// RFC 7638 thumbprint: base64url SHA-256 of the required members in lexicographic order.
pub fn thumbprint_key_id(jwk: &Value) -> String {
    let members: &[&str] = match jwk["kty"].as_str() {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("RSA") => &["e", "kty", "n"],
        Some("OKP") => &["crv", "kty", "x"],
        _ => &["kty"],
    };
    let canonical: serde_json::Map<String, Value> = members
        .iter()
        .map(|m| (m.to_string(), jwk[*m].clone()))
        .collect();
    // serde_json's Map is ordered by key, and to_string writes no whitespace.
    let text = Value::Object(canonical).to_string();
    URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    /// libtrust ids match the one Distribution's own docs show for this JWK
    /// (docs/spec/manifest-v2-1.md, a libtrust-signed manifest).
    #[test]
    fn libtrust_key_id_known_answer() {
        let d = |s: &str| URL_SAFE_NO_PAD.decode(s).unwrap();
        let mut spki = data_encoding::HEXLOWER
            .decode(b"3059301306072a8648ce3d020106082a8648ce3d03010703420004")
            .unwrap();
        spki.extend(d("3gAwX48IQ5oaYQAYSxor6rYYc_6yjuLCjtQ9LUakg4A"));
        spki.extend(d("t72ge6kIA1XOjqjVoEOiPPAURltJFBMGDSQvEGVB010"));
        assert_eq!(
            libtrust_key_id(&spki),
            "OD6I:6DRK:JXEJ:KBM4:255X:NSAA:MUSF:E4VM:ZI6W:CUN2:L4Z6:LSF4"
        );
    }

    /// RFC 7638 §3.1 (RSA) and RFC 9449 Fig. 9 (EC) thumbprints.
    #[rstest]
    #[case::rfc7638_rsa(
        json!({"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    )]
    #[case::rfc9449_ec(
        json!({"crv": "P-256", "kty": "EC", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs", "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "use": "sig"}),
        "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    )]
    fn thumbprint_known_answers(#[case] jwk: Value, #[case] expected: &str) {
        assert_eq!(thumbprint_key_id(&jwk), expected);
    }
}
