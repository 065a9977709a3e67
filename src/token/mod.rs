//! The token side of the sidecar: signing keys and `jwks.json` (`keys`), their key ids
//! (`kid`), the registry JWT it issues and verifies (`claims`), the realm that issues it
//! (`realm`), the cache of verified tokens (`cache`). Nothing here knows of pingora. (`registry-token keygen`, which writes the keys, is a command: `cli::keygen`.)

pub mod cache;
pub mod claims;
pub mod keys;
pub mod kid;
pub mod realm;

pub use claims::{IssuedClaims, VerifyError};
pub use keys::{KeyError, KeySet, PublicKey, SigningConfig, SigningKey};
pub use kid::{libtrust_key_id, KeyIdFormat};
