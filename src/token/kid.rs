//! Key ids (`kid`) of the signing keys, in the two forms Distribution looks keys up by: the
//! libtrust fingerprint (Distribution 2.x, its `rootcertbundle`) and the RFC 7638 JWK
//! thumbprint (Distribution 3.x, its `jwks`). Plain functions over key bytes and JWKs.

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
            KeyIdFormat::Thumbprint => crate::jose::thumbprint(jwk),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// libtrust ids match the one Distribution's own docs show for this JWK
    /// (docs/spec/manifest-v2-1.md, a libtrust-signed manifest).
    #[test]
    fn libtrust_key_id_known_answer() {
        let d = |s: &str| crate::jose::b64url_decode(s).unwrap();
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
}
