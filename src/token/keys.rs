//! Signing keys of the realm: loads the configured private key (PEM or PKCS#12), its optional
//! certificate chain (sent as `x5c`) and the rotated-out public keys, names each with a key id
//! (`signing.keyId`, else one derived as [`super::kid`] says), and publishes them as
//! `jwks.json`. Signing and verification themselves live in `claims`.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::x509::X509;
use serde_json::{json, Value};

use super::kid::KeyIdFormat;
use crate::jose::b64url_encode;

/// The `signing` section of the configuration, paths resolved.
#[derive(Clone)]
pub struct SigningConfig {
    /// PEM private key, or PKCS#12 bundle (`.pfx`/`.p12`).
    pub key_path: PathBuf,
    /// Password of a PKCS#12 bundle or of an encrypted PEM key.
    pub key_password: Option<String>,
    /// PEM chain, leaf first, sent as `x5c`; its leaf must hold the signing key. Without it,
    /// the certificates of a PKCS#12 bundle are used.
    pub certificate_chain: Option<PathBuf>,
    /// Explicit `kid`; derived from the key when absent.
    pub key_id: Option<String>,
    /// Derivation of the `kid` when `key_id` is absent.
    pub key_id_format: KeyIdFormat,
    /// Public keys (PEM public key, certificate or private key) still published after a rotation.
    pub previous_keys: Vec<PathBuf>,
}

impl fmt::Debug for SigningConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningConfig")
            .field("key_path", &self.key_path)
            .field(
                "key_password",
                &self.key_password.as_ref().map(|_| "<redacted>"),
            )
            .field("certificate_chain", &self.certificate_chain)
            .field("key_id", &self.key_id)
            .field("key_id_format", &self.key_id_format)
            .field("previous_keys", &self.previous_keys)
            .finish()
    }
}

/// What went wrong with a key, a certificate or a key file; messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: unsupported key: {reason} (supported: EC P-256, RSA >= 2048 bits, Ed25519)")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{chain}: the leaf certificate's public key is not the signing key of {key}")]
    ChainMismatch { key: PathBuf, chain: PathBuf },
    #[error("{path}: {reason}")]
    Refused { path: PathBuf, reason: String },
    #[error("`{0}` is not a signing algorithm (ES256, RS256, EdDSA)")]
    UnknownAlgorithm(String),
    #[error("cannot {what}: {source}")]
    Crypto {
        what: &'static str,
        source: openssl::error::ErrorStack,
    },
    #[error("cannot sign token: {0}")]
    Sign(String),
}

impl KeyError {
    fn parse(path: &Path, reason: impl fmt::Display) -> Self {
        KeyError::Parse {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// A public key that verifies tokens: its `kid`, algorithm and JWK.
#[derive(Clone)]
pub struct PublicKey {
    pub kid: String,
    pub alg: Algorithm,
    /// The public JWK with `kid`, `alg` and `use: "sig"`.
    pub jwk: Value,
    decoding: DecodingKey,
}

impl PublicKey {
    /// The key `jsonwebtoken` verifies signatures with.
    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

/// The private key tokens are signed with; `Debug` never shows key material.
pub struct SigningKey {
    encoding: EncodingKey,
    /// SHA-256 of a label and the private key (DER): the filtered catalog seals its cursors
    /// with it, so that every replica holding this key opens them.
    cursor_key: [u8; 32],
    x5c: Option<Vec<String>>,
    public: PublicKey,
}

impl SigningKey {
    /// The `kid` header of issued tokens.
    pub fn kid(&self) -> &str {
        &self.public.kid
    }
    /// The `alg` header of issued tokens.
    pub fn algorithm(&self) -> Algorithm {
        self.public.alg
    }
    /// The public half, as published in `jwks.json`.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }
    /// The `x5c` header (base64 DER, leaf first) when a chain is configured.
    pub fn x5c(&self) -> Option<&[String]> {
        self.x5c.as_deref()
    }
    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }
    /// The key catalog cursors are sealed with (`registry::catalog::Cursor`).
    pub fn cursor_key(&self) -> &[u8; 32] {
        &self.cursor_key
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .field("alg", &self.public.alg)
            .field("x5c", &self.x5c.as_ref().map(|c| c.len()))
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The current signing key and the rotated-out public keys still accepted and published.
#[derive(Debug)]
pub struct KeySet {
    pub current: SigningKey,
    pub previous: Vec<PublicKey>,
}

impl KeySet {
    /// Loads the signing key, its chain and the previous keys named by `cfg`.
    pub fn load(cfg: &SigningConfig) -> Result<KeySet, KeyError> {
        let path = &cfg.key_path;
        let bytes = read(path)?;
        let (pkey, bundle_chain) = if is_pkcs12(path, &bytes) {
            load_pkcs12(path, &bytes, cfg.key_password.as_deref())?
        } else {
            (
                load_private_pem(path, &bytes, cfg.key_password.as_deref())?,
                Vec::new(),
            )
        };
        let (alg, jwk) = public_jwk(path, &pkey)?;
        let spki = pkey
            .public_key_to_der()
            .map_err(|e| crypto("encode public key", e))?;

        // A configured chain file takes precedence over the certificates of a PKCS#12 bundle.
        let (chain, chain_path) = match &cfg.certificate_chain {
            Some(chain_path) => {
                let certs = X509::stack_from_pem(&read(chain_path)?).map_err(|e| {
                    KeyError::parse(chain_path, format!("not a PEM certificate chain: {e}"))
                })?;
                if certs.is_empty() {
                    return Err(KeyError::parse(chain_path, "no PEM certificate found"));
                }
                (certs, chain_path)
            }
            None => (bundle_chain, path),
        };
        if let Some(leaf) = chain.first() {
            check_leaf(leaf, &spki, path, chain_path)?;
        }
        let x5c = (!chain.is_empty())
            .then(|| {
                chain
                    .iter()
                    .map(|c| Ok(STANDARD.encode(c.to_der()?)))
                    .collect()
            })
            .transpose()
            .map_err(|e| crypto("encode certificate", e))?;

        let kid = match &cfg.key_id {
            Some(kid) => kid.clone(),
            None => cfg.key_id_format.derive(&spki, &jwk),
        };
        let encoding = encoding_key(&pkey, alg)?;
        let cursor_key = {
            use sha2::{Digest, Sha256};
            let der = pkey
                .private_key_to_pkcs8()
                .map_err(|e| crypto("encode private key", e))?;
            Sha256::new()
                .chain_update(b"registry-token catalog cursor key\0")
                .chain_update(&der)
                .finalize()
                .into()
        };
        let public = public_key(path, kid, alg, jwk)?;
        let previous = cfg
            .previous_keys
            .iter()
            .map(|p| load_previous(p, cfg.key_id_format))
            .collect::<Result<_, _>>()?;
        Ok(KeySet {
            current: SigningKey {
                encoding,
                cursor_key,
                x5c,
                public,
            },
            previous,
        })
    }

    /// `{"keys": [...]}`: the current public key first, then the previous ones.
    pub fn jwks(&self) -> Value {
        let keys: Vec<&Value> = std::iter::once(&self.current.public)
            .chain(&self.previous)
            .map(|k| &k.jwk)
            .collect();
        json!({ "keys": keys })
    }

    /// The key, current or previous, whose `kid` is `kid`.
    pub(crate) fn find(&self, kid: &str) -> Option<&PublicKey> {
        std::iter::once(&self.current.public)
            .chain(&self.previous)
            .find(|k| k.kid == kid)
    }
}

fn crypto(what: &'static str, source: openssl::error::ErrorStack) -> KeyError {
    KeyError::Crypto { what, source }
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })
}

fn is_pkcs12(path: &Path, bytes: &[u8]) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    ext == "p12" || ext == "pfx" || !bytes.windows(10).any(|w| w == b"-----BEGIN")
}

fn load_pkcs12(
    path: &Path,
    bytes: &[u8],
    password: Option<&str>,
) -> Result<(PKey<Private>, Vec<X509>), KeyError> {
    let parsed = Pkcs12::from_der(bytes)
        .and_then(|p| p.parse2(password.unwrap_or("")))
        .map_err(|e| {
            KeyError::parse(
                path,
                format!("not a PKCS#12 bundle, or wrong keyPassword: {e}"),
            )
        })?;
    let pkey = parsed
        .pkey
        .ok_or_else(|| KeyError::parse(path, "the PKCS#12 bundle holds no private key"))?;
    let chain = parsed
        .cert
        .into_iter()
        .chain(parsed.ca.into_iter().flatten())
        .collect();
    Ok((pkey, chain))
}

/// PEM private key (PKCS#8, traditional EC/RSA, encrypted with `password`); never prompts.
pub(crate) fn load_private_pem(
    path: &Path,
    bytes: &[u8],
    password: Option<&str>,
) -> Result<PKey<Private>, KeyError> {
    PKey::private_key_from_pem_callback(bytes, |buf| {
        let pw = password.unwrap_or("").as_bytes();
        let n = pw.len().min(buf.len());
        buf[..n].copy_from_slice(&pw[..n]);
        Ok(n)
    })
    .map_err(|e| {
        KeyError::parse(
            path,
            format!("not a PEM private key (or wrong keyPassword): {e}"),
        )
    })
}

/// The leaf certificate must carry the signing key.
fn check_leaf(leaf: &X509, spki: &[u8], key: &Path, chain_path: &Path) -> Result<(), KeyError> {
    let leaf_spki = leaf
        .public_key()
        .and_then(|k| k.public_key_to_der())
        .map_err(|e| KeyError::parse(chain_path, format!("unreadable leaf public key: {e}")))?;
    if leaf_spki != spki {
        return Err(KeyError::ChainMismatch {
            key: key.to_owned(),
            chain: chain_path.to_owned(),
        });
    }
    Ok(())
}

/// The algorithm a key signs with and its public JWK (without `kid`).
fn public_jwk<T: openssl::pkey::HasPublic>(
    path: &Path,
    key: &PKey<T>,
) -> Result<(Algorithm, Value), KeyError> {
    let unsupported = |reason: String| KeyError::Unsupported {
        path: path.to_owned(),
        reason,
    };
    match key.id() {
        Id::EC => {
            let ec = key.ec_key().map_err(|e| crypto("read EC key", e))?;
            let curve = ec.group().curve_name();
            if curve != Some(Nid::X9_62_PRIME256V1) {
                let name = curve
                    .and_then(|n| n.short_name().ok())
                    .unwrap_or("explicit parameters");
                return Err(unsupported(format!("EC curve {name}")));
            }
            let coords = || -> Result<(Vec<u8>, Vec<u8>), openssl::error::ErrorStack> {
                let mut ctx = openssl::bn::BigNumContext::new()?;
                let (mut x, mut y) = (openssl::bn::BigNum::new()?, openssl::bn::BigNum::new()?);
                ec.public_key()
                    .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)?;
                Ok((x.to_vec_padded(32)?, y.to_vec_padded(32)?))
            };
            let (x, y) = coords().map_err(|e| crypto("read EC point", e))?;
            Ok((
                Algorithm::ES256,
                json!({"kty": "EC", "crv": "P-256", "x": b64url_encode(&x), "y": b64url_encode(&y)}),
            ))
        }
        Id::RSA => {
            let rsa = key.rsa().map_err(|e| crypto("read RSA key", e))?;
            let bits = rsa.n().num_bits();
            if bits < 2048 {
                return Err(unsupported(format!("RSA key of {bits} bits")));
            }
            Ok((
                Algorithm::RS256,
                json!({"kty": "RSA", "n": b64url_encode(rsa.n().to_vec()), "e": b64url_encode(rsa.e().to_vec())}),
            ))
        }
        Id::ED25519 => {
            let raw = key
                .raw_public_key()
                .map_err(|e| crypto("read Ed25519 key", e))?;
            Ok((
                Algorithm::EdDSA,
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(&raw)}),
            ))
        }
        other => Err(unsupported(format!("key type {other:?}"))),
    }
}

fn encoding_key(pkey: &PKey<Private>, alg: Algorithm) -> Result<EncodingKey, KeyError> {
    Ok(match alg {
        Algorithm::RS256 => {
            let der = pkey
                .rsa()
                .and_then(|r| r.private_key_to_der())
                .map_err(|e| crypto("encode RSA key", e))?;
            EncodingKey::from_rsa_der(&der)
        }
        Algorithm::EdDSA => EncodingKey::from_ed_der(
            &pkey
                .private_key_to_pkcs8()
                .map_err(|e| crypto("encode Ed25519 key", e))?,
        ),
        _ => EncodingKey::from_ec_der(
            &pkey
                .private_key_to_pkcs8()
                .map_err(|e| crypto("encode EC key", e))?,
        ),
    })
}

/// Completes a JWK with `kid`/`alg`/`use` and builds its verifier.
fn public_key(
    path: &Path,
    kid: String,
    alg: Algorithm,
    mut jwk: Value,
) -> Result<PublicKey, KeyError> {
    let s = |m: &str| jwk[m].as_str().unwrap_or_default().to_owned();
    let decoding = match alg {
        Algorithm::ES256 => DecodingKey::from_ec_components(&s("x"), &s("y")),
        Algorithm::RS256 => DecodingKey::from_rsa_components(&s("n"), &s("e")),
        _ => DecodingKey::from_ed_components(&s("x")),
    }
    .map_err(|e| KeyError::parse(path, format!("unusable public key: {e}")))?;
    let alg_name = serde_json::to_value(alg).unwrap_or(Value::Null);
    jwk["kid"] = Value::String(kid.clone());
    jwk["alg"] = alg_name;
    jwk["use"] = "sig".into();
    Ok(PublicKey {
        kid,
        alg,
        jwk,
        decoding,
    })
}

/// A previous key: PEM certificate, public key or private key; only the public part is kept.
fn load_previous(path: &Path, format: KeyIdFormat) -> Result<PublicKey, KeyError> {
    let bytes = read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let key: PKey<Public> = if text.contains("-----BEGIN CERTIFICATE") {
        X509::from_pem(&bytes).and_then(|c| c.public_key())
    } else if text.contains("PRIVATE KEY-----") {
        load_private_pem(path, &bytes, None)?
            .public_key_to_der()
            .and_then(|der| PKey::public_key_from_der(&der))
    } else {
        PKey::public_key_from_pem(&bytes)
    }
    .map_err(|e| {
        KeyError::parse(
            path,
            format!("not a PEM certificate, public key or private key: {e}"),
        )
    })?;
    let (alg, jwk) = public_jwk(path, &key)?;
    let spki = key
        .public_key_to_der()
        .map_err(|e| crypto("encode public key", e))?;
    public_key(path, format.derive(&spki, &jwk), alg, jwk)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::jose::thumbprint;
    use crate::token::kid::libtrust_key_id;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::rsa::Rsa;
    use rstest::rstest;

    /// Writes a fresh key of `kind` into `dir` and returns its path.
    pub(crate) fn key_file(dir: &Path, kind: &str) -> PathBuf {
        let ec = |nid| {
            PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(nid).unwrap()).unwrap())
                .unwrap()
        };
        let rsa = |bits| PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap();
        let pem = match kind {
            "ec-sec1" => ec(Nid::X9_62_PRIME256V1)
                .ec_key()
                .unwrap()
                .private_key_to_pem()
                .unwrap(),
            "ec-pkcs8" => ec(Nid::X9_62_PRIME256V1)
                .private_key_to_pem_pkcs8()
                .unwrap(),
            "rsa-pkcs1" => rsa(2048).rsa().unwrap().private_key_to_pem().unwrap(),
            "rsa-pkcs8" => rsa(2048).private_key_to_pem_pkcs8().unwrap(),
            "ed25519" => PKey::generate_ed25519()
                .unwrap()
                .private_key_to_pem_pkcs8()
                .unwrap(),
            "ec-p384" => ec(Nid::SECP384R1).private_key_to_pem_pkcs8().unwrap(),
            "rsa-1024" => rsa(1024).private_key_to_pem_pkcs8().unwrap(),
            other => panic!("unknown key kind {other}"),
        };
        let path = dir.join(format!("{kind}.pem"));
        std::fs::write(&path, pem).unwrap();
        path
    }

    pub(crate) fn config(key_path: PathBuf) -> SigningConfig {
        SigningConfig {
            key_path,
            key_password: None,
            certificate_chain: None,
            key_id: None,
            key_id_format: KeyIdFormat::Libtrust,
            previous_keys: vec![],
        }
    }

    /// Runs the openssl command line in `dir`, panicking with its stderr on failure.
    fn openssl(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A self-signed certificate for the key at `key` (via the openssl CLI).
    fn self_signed(dir: &Path, key: &Path, name: &str) -> PathBuf {
        let crt = dir.join(name);
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                key.to_str().unwrap(),
                "-subj",
                "/CN=t",
                "-days",
                "1",
                "-out",
                crt.to_str().unwrap(),
            ],
        );
        crt
    }

    /// Every supported PEM form loads, with the algorithm of its key and a libtrust kid that
    /// equals the one computed over openssl's own SPKI encoding.
    #[rstest]
    #[case("ec-sec1", Algorithm::ES256)]
    #[case("ec-pkcs8", Algorithm::ES256)]
    #[case("rsa-pkcs1", Algorithm::RS256)]
    #[case("rsa-pkcs8", Algorithm::RS256)]
    #[case("ed25519", Algorithm::EdDSA)]
    fn loads_pem_keys(#[case] kind: &str, #[case] alg: Algorithm) {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path(), kind);
        let keys = KeySet::load(&config(path.clone())).unwrap();
        assert_eq!(keys.current.algorithm(), alg);
        let pkey = load_private_pem(&path, &read(&path).unwrap(), None).unwrap();
        assert_eq!(
            keys.current.kid(),
            libtrust_key_id(&pkey.public_key_to_der().unwrap())
        );
        assert_eq!(keys.current.kid().len(), 59);
        assert_eq!(keys.current.public().jwk["use"], "sig");
        assert!(keys.current.x5c().is_none());
    }

    /// An encrypted PEM key loads with `keyPassword` and fails, without prompting, without it.
    #[test]
    fn loads_encrypted_pem_with_password() {
        let dir = tempfile::tempdir().unwrap();
        let key = PKey::generate_ed25519().unwrap();
        let pem = key
            .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_256_cbc(), b"pw")
            .unwrap();
        let path = dir.path().join("enc.pem");
        std::fs::write(&path, pem).unwrap();
        let mut cfg = config(path);
        assert!(matches!(KeySet::load(&cfg), Err(KeyError::Parse { .. })));
        cfg.key_password = Some("pw".into());
        assert_eq!(
            KeySet::load(&cfg).unwrap().current.algorithm(),
            Algorithm::EdDSA
        );
    }

    /// Other curves and short RSA keys are refused, naming the file.
    #[rstest]
    #[case("ec-p384", "secp384r1")]
    #[case("rsa-1024", "1024 bits")]
    fn refuses_unsupported_keys(#[case] kind: &str, #[case] what: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path(), kind);
        let err = KeySet::load(&config(path.clone())).unwrap_err();
        assert!(matches!(err, KeyError::Unsupported { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(path.to_str().unwrap()) && msg.contains(what),
            "{msg}"
        );
    }

    /// `keyId` overrides the derived kid; `thumbprint` derives the RFC 7638 form.
    #[test]
    fn key_id_override_and_thumbprint() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(key_file(dir.path(), "ec-pkcs8"));
        cfg.key_id_format = KeyIdFormat::Thumbprint;
        let keys = KeySet::load(&cfg).unwrap();
        assert_eq!(keys.current.kid(), thumbprint(&keys.current.public().jwk));
        assert_eq!(keys.current.kid().len(), 43);
        cfg.key_id = Some("k1".into());
        assert_eq!(KeySet::load(&cfg).unwrap().current.kid(), "k1");
    }

    /// A PKCS#12 bundle made by the openssl CLI loads with its password and yields its
    /// certificate as `x5c`; a wrong password is an error naming the file.
    #[test]
    fn loads_pkcs12_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(dir.path(), "ec-pkcs8");
        let crt = self_signed(dir.path(), &key, "leaf.crt");
        openssl(
            dir.path(),
            &[
                "pkcs12",
                "-export",
                "-inkey",
                "ec-pkcs8.pem",
                "-in",
                "leaf.crt",
                "-passout",
                "pass:s3cret",
                "-out",
                "b.p12",
            ],
        );
        let mut cfg = config(dir.path().join("b.p12"));
        cfg.key_password = Some("s3cret".into());
        let keys = KeySet::load(&cfg).unwrap();
        assert_eq!(keys.current.algorithm(), Algorithm::ES256);
        let der = X509::from_pem(&std::fs::read(crt).unwrap())
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(keys.current.x5c().unwrap(), [STANDARD.encode(der)]);
        assert_eq!(
            keys.current.kid(),
            KeySet::load(&config(key)).unwrap().current.kid()
        );

        cfg.key_password = Some("wrong".into());
        let msg = KeySet::load(&cfg).unwrap_err().to_string();
        assert!(
            msg.contains("b.p12") && msg.contains("keyPassword"),
            "{msg}"
        );
    }

    /// A chain whose leaf holds another key is refused, naming both files; a matching chain
    /// becomes `x5c` (leaf first, standard base64 DER).
    #[test]
    fn certificate_chain_must_hold_the_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(dir.path(), "ec-pkcs8");
        let other = key_file(dir.path(), "ed25519");
        let mut cfg = config(key.clone());
        cfg.certificate_chain = Some(self_signed(dir.path(), &other, "other.crt"));
        let err = KeySet::load(&cfg).unwrap_err();
        assert!(matches!(err, KeyError::ChainMismatch { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("other.crt") && msg.contains("ec-pkcs8.pem"),
            "{msg}"
        );

        cfg.certificate_chain = Some(self_signed(dir.path(), &key, "own.crt"));
        let keys = KeySet::load(&cfg).unwrap();
        assert_eq!(keys.current.x5c().map(<[String]>::len), Some(1));
    }

    /// Previous keys load from a certificate, a public key or a private key, and `jwks()`
    /// publishes them after the current key.
    #[test]
    fn jwks_lists_current_then_previous_keys() {
        let dir = tempfile::tempdir().unwrap();
        let rsa = key_file(dir.path(), "rsa-pkcs1");
        let ed = key_file(dir.path(), "ed25519");
        let ec = key_file(dir.path(), "ec-sec1");
        let ec_pub = dir.path().join("ec.pub");
        let ec_key = load_private_pem(&ec, &read(&ec).unwrap(), None).unwrap();
        std::fs::write(&ec_pub, ec_key.public_key_to_pem().unwrap()).unwrap();
        let mut cfg = config(key_file(dir.path(), "ec-pkcs8"));
        cfg.previous_keys = vec![self_signed(dir.path(), &rsa, "rsa.crt"), ec_pub, ed];
        let keys = KeySet::load(&cfg).unwrap();

        let jwks = keys.jwks();
        let listed: Vec<(&str, &str)> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["kty"].as_str().unwrap(), k["alg"].as_str().unwrap()))
            .collect();
        assert_eq!(
            listed,
            [
                ("EC", "ES256"),
                ("RSA", "RS256"),
                ("EC", "ES256"),
                ("OKP", "EdDSA")
            ]
        );
        assert_eq!(
            jwks["keys"][2]["kid"],
            libtrust_key_id(&ec_key.public_key_to_der().unwrap())
        );
        assert!(
            jwks.to_string().find("\"d\"").is_none(),
            "no private member published"
        );
    }

    /// Debug output names the key but never shows key material or the password.
    #[test]
    fn debug_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(key_file(dir.path(), "ec-pkcs8"));
        let keys = KeySet::load(&cfg).unwrap();
        cfg.key_password = Some("hunter2".into());
        let shown = format!("{keys:?} {cfg:?}");
        assert!(
            shown.contains(keys.current.kid()) && shown.contains("<redacted>"),
            "{shown}"
        );
        let secret = keys.current.encoding().inner();
        assert!(!shown.contains("hunter2") && !shown.contains(&format!("{secret:?}")));
        assert!(!shown.contains(keys.current.public().jwk["x"].as_str().unwrap()));
    }
}
