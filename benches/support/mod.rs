//! JOSE helpers shared by the benchmarks and `examples/bench_client.rs`: an ES256 key, OpToks
//! as the dev Authority mints them (`kid` dev-1), and DPoP proofs with distinct `jti`s.
#![allow(dead_code)]

use std::sync::Arc;

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::Private;
use registry_token::authority::dpop::access_token_hash;
use registry_token::jose::{b64url_encode, thumbprint};
pub use registry_token::jose::{Clock, SystemClock};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub type Failure = Box<dyn std::error::Error>;

/// A P-256 key that signs ES256 JWS.
pub struct Es256(EcKey<Private>);

impl Es256 {
    pub fn generate() -> Result<Es256, Failure> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        Ok(Es256(EcKey::generate(&group)?))
    }

    pub fn from_pem(path: &str) -> Result<Es256, Failure> {
        Ok(Es256(EcKey::private_key_from_pem(&std::fs::read(path)?)?))
    }

    /// The public JWK (`kty`, `crv`, `x`, `y`).
    pub fn jwk(&self) -> Result<Value, Failure> {
        let (mut x, mut y) = (BigNum::new()?, BigNum::new()?);
        let mut ctx = BigNumContext::new()?;
        self.0
            .public_key()
            .affine_coordinates(self.0.group(), &mut x, &mut y, &mut ctx)?;
        Ok(json!({"kty": "EC", "crv": "P-256",
                  "x": b64url_encode(x.to_vec_padded(32)?), "y": b64url_encode(y.to_vec_padded(32)?)}))
    }

    /// RFC 7638 thumbprint.
    pub fn thumbprint(&self) -> Result<String, Failure> {
        Ok(thumbprint(&self.jwk()?))
    }

    pub fn jws(&self, header: &Value, claims: &Value) -> Result<String, Failure> {
        let input = format!(
            "{}.{}",
            b64url_encode(header.to_string()),
            b64url_encode(claims.to_string())
        );
        let sig = EcdsaSig::sign(&Sha256::digest(input.as_bytes()), &self.0)?;
        let mut raw = sig.r().to_vec_padded(32)?;
        raw.extend(sig.s().to_vec_padded(32)?);
        Ok(format!("{input}.{}", b64url_encode(raw)))
    }
}

/// An OpTok from the dev Authority (`kid` dev-1), bound to `dpop` when given.
pub fn mint_optok(
    authority: &Es256,
    issuer: &str,
    dpop: Option<&Es256>,
) -> Result<String, Failure> {
    let t = SystemClock.now();
    let mut claims = json!({"iss": issuer, "sub": "bench", "aud": "registry", "iat": t,
        "exp": t + 3600, "scope": "registry.token.issue", "stellaops:plan": "enterprise",
        "stellaops:license": "LIC-BENCH"});
    if let Some(key) = dpop {
        claims["cnf"] = json!({ "jkt": key.thumbprint()? });
    }
    authority.jws(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "dev-1"}),
        &claims,
    )
}

/// `count` proofs for `GET realm` with distinct `jti`s, signed on all cores.
pub fn proofs(
    key: &Arc<Es256>,
    realm: &str,
    token: &str,
    count: usize,
) -> Result<Vec<String>, Failure> {
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk()?});
    let ath = access_token_hash(token);
    let run: u64 = rand::random(); // jtis differ across processes too
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = count.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (key, header, ath, realm) =
                (key.clone(), header.clone(), ath.clone(), realm.to_string());
            std::thread::spawn(move || {
                (0..per)
                    .map(|i| {
                        let claims = json!({"jti": format!("{run:x}-{t}-{i}"), "htm": "GET",
                            "htu": realm, "iat": SystemClock.now(), "ath": ath});
                        key.jws(&header, &claims).expect("sign a proof")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    Ok(handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect())
}
