//! The token side of the sidecar: signing keys and `jwks.json` (`keys`), the registry JWT it
//! issues and verifies (`claims`), the realm that issues it (`realm`). Nothing here knows of
//! pingora. (`registry-token keygen`, which writes the keys, is a command: `cli::keygen`.)

pub mod cache;
pub mod claims;
pub mod keys;
pub mod realm;

pub use claims::{AccessEntry, IssuedClaims, VerifyError};
pub use keys::{
    libtrust_key_id, thumbprint_key_id, KeyError, KeyIdFormat, KeySet, PublicKey, SigningConfig,
    SigningKey,
};
