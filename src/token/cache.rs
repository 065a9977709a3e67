//! Verified-token cache for the `/v2/` data path (the proxy's `Sidecar` holds one, `authorize`
//! is handed it): a registry client sends the same bearer token
//! on every request until it expires, so its signature is checked once and the claims are kept,
//! keyed by the SHA-256 of issuer, audience and token, until the token's `exp`.
//!
//! Bounded (at capacity, expired entries go first, then an arbitrary one); only successes are
//! kept; an entry is bound to the [`KeySet`] that verified it, so a reload that changes the
//! signing keys starts afresh. Time (`exp`/`nbf` with leeway) is checked on every hit, and the
//! caller still checks revocation and scope on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};

use super::claims::{IssuedClaims, VerifyError};
use super::keys::KeySet;

/// Entries of the sidecar's cache: ~0.5 KiB each, so about 5 MiB at most.
pub const CAPACITY: usize = 10_000;

struct Entry {
    /// The key set that verified the token; a different (reloaded) one is a miss.
    keys: Weak<KeySet>,
    claims: Arc<IssuedClaims>,
}

/// Tokens whose signature, issuer and audience verified; `Send + Sync`.
pub struct VerifiedTokens {
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

/// An empty cache of [`CAPACITY`] tokens.
impl Default for VerifiedTokens {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

impl VerifiedTokens {
    /// An empty cache of at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        VerifiedTokens {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// [`KeySet::verify`], answered from the cache when `keys` verified this token before.
    pub fn verify(
        &self,
        keys: &Arc<KeySet>,
        token: &str,
        issuer: &str,
        audience: &str,
        now: i64,
        leeway: i64,
    ) -> Result<Arc<IssuedClaims>, VerifyError> {
        let id: [u8; 32] = Sha256::new()
            .chain_update(issuer)
            .chain_update([0])
            .chain_update(audience)
            .chain_update([0])
            .chain_update(token)
            .finalize()
            .into();
        let hit = self
            .lock()
            .get(&id)
            .filter(|e| std::ptr::eq(e.keys.as_ptr(), Arc::as_ptr(keys)))
            .map(|e| e.claims.clone());
        let claims = match hit {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(keys.verify(token, issuer, audience, now, leeway)?);
                self.insert(id, keys, claims.clone(), now, leeway);
                claims
            }
        };
        // The same time checks as `KeySet::verify`, on every use.
        if now >= claims.exp.saturating_add(leeway) {
            return Err(VerifyError::Expired);
        }
        if claims.nbf > now.saturating_add(leeway) {
            return Err(VerifyError::NotYetValid);
        }
        Ok(claims)
    }

    /// Live entries (expired ones included until the next prune).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(
        &self,
        id: [u8; 32],
        keys: &Arc<KeySet>,
        claims: Arc<IssuedClaims>,
        now: i64,
        leeway: i64,
    ) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&id) {
            entries.retain(|_, e| {
                now < e.claims.exp.saturating_add(leeway) && e.keys.strong_count() > 0
            });
            if entries.len() >= self.capacity {
                let victim = *entries.keys().next().expect("a full map has a key");
                entries.remove(&victim);
            }
        }
        entries.insert(
            id,
            Entry {
                keys: Arc::downgrade(keys),
                claims,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::keygen::{keygen, KeyAlg};
    use crate::registry::{Resource, Scope};
    use crate::token::{KeyIdFormat, SigningConfig};
    use serde_json::Map;

    const NOW: i64 = 1_800_000_000;

    fn key_set() -> (tempfile::TempDir, Arc<KeySet>) {
        let dir = tempfile::tempdir().unwrap();
        keygen(KeyAlg::Es256, dir.path(), "http://r/token", "svc", "iss").unwrap();
        let cfg = SigningConfig {
            key_path: dir.path().join("signing.pem"),
            key_password: None,
            certificate_chain: None,
            key_id: None,
            key_id_format: KeyIdFormat::Libtrust,
            previous_keys: vec![],
        };
        let keys = Arc::new(KeySet::load(&cfg).unwrap());
        (dir, keys)
    }

    fn token(keys: &KeySet, exp: i64) -> String {
        keys.sign(&IssuedClaims {
            iss: "iss".into(),
            sub: "alice".into(),
            aud: "svc".into(),
            exp,
            nbf: NOW,
            iat: NOW,
            jti: "j".into(),
            access: vec![Scope::new(Resource::repository("acme/app"), ["pull"])],
            extra: Map::new(),
        })
        .unwrap()
    }

    /// A hit gives the verified claims; issuer, audience, expiry, key set and forgeries are
    /// checked as without the cache.
    #[test]
    fn behaves_like_verify() {
        let (_dir, keys) = key_set();
        let cache = VerifiedTokens::new(8);
        let t = token(&keys, NOW + 300);
        for _ in 0..2 {
            assert_eq!(
                cache.verify(&keys, &t, "iss", "svc", NOW, 0).unwrap().sub,
                "alice"
            );
        }
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.verify(&keys, &t, "other", "svc", NOW, 0).unwrap_err(),
            VerifyError::WrongIssuer
        );
        assert_eq!(
            cache.verify(&keys, &t, "iss", "other", NOW, 0).unwrap_err(),
            VerifyError::WrongAudience
        );
        assert_eq!(
            cache
                .verify(&keys, &t, "iss", "svc", NOW + 300, 0)
                .unwrap_err(),
            VerifyError::Expired
        );
        assert!(cache.verify(&keys, &t, "iss", "svc", NOW + 300, 30).is_ok());
        let mut forged = t.clone().into_bytes();
        let at = forged.len() - 3;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(
            cache
                .verify(&keys, &forged, "iss", "svc", NOW, 0)
                .unwrap_err(),
            VerifyError::BadSignature
        );
        // Another key set (a reload with a new key) does not trust what the old one verified.
        let (_other_dir, other) = key_set();
        assert_eq!(
            cache.verify(&other, &t, "iss", "svc", NOW, 0).unwrap_err(),
            VerifyError::UnknownKey
        );
    }

    /// The cache never grows past its capacity.
    #[test]
    fn bounded() {
        let (_dir, keys) = key_set();
        let cache = VerifiedTokens::new(3);
        for i in 0..10 {
            let t = token(&keys, NOW + 300 + i);
            cache.verify(&keys, &t, "iss", "svc", NOW, 0).unwrap();
            assert!(cache.len() <= 3);
        }
    }
}
