//! A DPoP client key (P-256) that signs RFC 9449 proofs by hand with openssl, with a lower-level
//! builder (`header`, `claims`, `sign`) for crafting bad proofs.

use openssl::ec::EcKey;
use openssl::hash::{hash, MessageDigest};
use openssl::pkey::{PKey, Private};
use serde_json::{json, Value};

use super::authority::{ec_coordinates, jws, jws_raw, p256, Alg};
use super::{b64, now};

/// A client's proof-of-possession key.
pub struct DpopKey {
    pub key: PKey<Private>,
}

impl Default for DpopKey {
    fn default() -> Self {
        DpopKey::new()
    }
}

impl DpopKey {
    /// A fresh P-256 key.
    pub fn new() -> DpopKey {
        DpopKey {
            key: PKey::from_ec_key(EcKey::generate(&p256()).unwrap()).unwrap(),
        }
    }

    /// The public JWK (`kty`, `crv`, `x`, `y` only).
    pub fn jwk(&self) -> Value {
        let (x, y) = ec_coordinates(&self.key.ec_key().unwrap());
        json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)})
    }

    /// The RFC 7638 thumbprint: base64url SHA-256 of the required members in lexical order.
    pub fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        b64(hash(MessageDigest::sha256(), canonical.as_bytes()).unwrap())
    }

    /// The private key as PKCS#8 PEM (for `registry-token test --dpop-key FILE`).
    pub fn pem(&self) -> Vec<u8> {
        self.key.private_key_to_pem_pkcs8().unwrap()
    }

    /// A valid proof header: `typ: dpop+jwt`, `alg: ES256`, the public `jwk`.
    pub fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()})
    }

    /// Valid proof claims: fresh `jti`, `htm`, `htu`, `iat` now, and `ath` when a token is given.
    pub fn claims(&self, htm: &str, htu: &str, access_token: Option<&str>) -> Value {
        let mut claims = json!({
            "jti": format!("{:032x}", rand::random::<u128>()),
            "htm": htm, "htu": htu, "iat": now(),
        });
        if let Some(token) = access_token {
            claims["ath"] = json!(ath(token));
        }
        claims
    }

    /// Signs any header and claims with this key (ES256), whatever the header says.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        jws(Alg::ES256, &self.key, header, claims)
    }

    /// Signs raw header and claims JSON text (duplicate members, odd number formats).
    pub fn sign_raw(&self, header: &str, claims: &str) -> String {
        jws_raw(Alg::ES256, &self.key, header, claims)
    }

    /// A valid proof for `htm htu`, bound to `access_token`.
    pub fn proof(&self, htm: &str, htu: &str, access_token: &str) -> String {
        self.sign(&self.header(), &self.claims(htm, htu, Some(access_token)))
    }
}

/// The `ath` claim: base64url SHA-256 of the access token.
pub fn ath(token: &str) -> String {
    b64(hash(MessageDigest::sha256(), token.as_bytes()).unwrap())
}
