//! The token side of the sidecar: signing keys and `jwks.json` (`keys`), their key ids
//! (`kid`), the registry JWT it issues and verifies (`claims`), the realm that issues it
//! (`realm`), the refresh tokens that make `docker login` last (`refresh`), the cache of
//! verified tokens (`cache`). Nothing here knows of pingora. (`registry-token keygen`, which
//! writes the keys, is a command: `cli::keygen`.)

pub mod cache;
pub mod claims;
pub mod keys;
pub mod kid;
pub mod realm;
pub mod refresh;
#[cfg(test)]
pub mod testkit;

use std::sync::Arc;
use std::time::Duration;

pub use claims::{IssuedClaims, VerifyError};
pub use keys::{KeyError, KeySet, PublishedKey, SigningConfig, SigningKey};
pub use kid::{libtrust_key_id, KeyIdFormat};
pub use refresh::RefreshSettings;

/// What this sidecar issues tokens with: its slice of the configuration (`signing`,
/// `registry.service` and `allowedServices`, `refreshTokens`, `revokedRefreshTokens`), ready
/// to use. The realm and refresh tokens read it; `config` builds it.
#[derive(Debug)]
pub struct Issuer {
    /// `signing.issuer`: the `iss` of every token this sidecar signs.
    pub name: String,
    /// `registry.service` first, then `allowedServices`: the audiences a token may name.
    pub services: Vec<String>,
    /// `signing.lifetime` of registry tokens.
    pub lifetime: Duration,
    pub keys: Arc<KeySet>,
    /// `refreshTokens` and `revokedRefreshTokens` (docs/http.md, "Refresh tokens").
    pub refresh: RefreshSettings,
}

impl Issuer {
    /// `registry.service`: the audience of the registry's own tokens.
    pub fn service(&self) -> &str {
        self.services
            .first()
            .map(String::as_str)
            .unwrap_or_default()
    }
}
