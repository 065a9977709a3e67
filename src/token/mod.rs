//! The token side of the sidecar: signing keys and `jwks.json` (`keys`), the registry JWT it
//! issues and verifies (`claims`), and `keygen`, which writes a CA and a signing key the
//! registry trusts. Nothing here knows of pingora.

pub mod cache;
pub mod claims;
pub mod keygen;
pub mod keys;
pub mod realm;

pub use claims::{AccessEntry, IssuedClaims, VerifyError};
pub use keygen::{keygen, keygen_with, Generated, KeyAlg, KeygenOptions};
pub use keys::{
    libtrust_key_id, KeyError, KeyIdFormat, KeySet, PublicKey, SigningConfig, SigningKey,
};
