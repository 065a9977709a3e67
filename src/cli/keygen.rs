//! `registry-token keygen`: a stable CA for the registry's `auth.token.rootcertbundle`, and a
//! signing key with a certificate chain under it.
//!
//! The output folder holds only what the running services read (`signing.pem`,
//! `signing-chain.crt`, `jwks.json` for the sidecar, `ca.crt` for the registry); the CA's private
//! key lives apart in the CA folder (default `OUT/ca/`, mode 0700), which no service mounts. Run
//! again with the same CA folder, keygen keeps the CA and writes a new signing key: the registry
//! trusts the new key through `x5c` without any change, and the old leaf certificate is kept
//! for `signing.previousKeys`. A `ca.key` left in the output folder by an older keygen is moved
//! into the CA folder.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Name, X509NameBuilder, X509NameRef, X509};

use crate::jose::{Clock, SystemClock};
use crate::token::keys::{load_private_pem, read, KeyError, KeySet, SigningConfig};
use crate::token::KeyIdFormat;

/// The algorithm of the signing key `keygen` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlg {
    Es256,
    Rs256,
    EdDsa,
}

impl FromStr for KeyAlg {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s.to_ascii_uppercase().as_str() {
            "ES256" => Ok(KeyAlg::Es256),
            "RS256" => Ok(KeyAlg::Rs256),
            "EDDSA" => Ok(KeyAlg::EdDsa),
            _ => Err(KeyError::UnknownAlgorithm(s.to_owned())),
        }
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlg::Es256 => "ES256",
            KeyAlg::Rs256 => "RS256",
            KeyAlg::EdDsa => "EdDSA",
        })
    }
}

/// What `keygen` is asked to write.
#[derive(Debug, Clone)]
pub struct KeygenOptions {
    pub alg: KeyAlg,
    /// The folder the services mount: signing key, chain, `jwks.json`, `ca.crt`.
    pub out: PathBuf,
    /// The CA's own folder (`ca.key`, `ca.crt`); `None`: `out/ca`.
    pub ca_dir: Option<PathBuf>,
    /// How long the signing certificate is valid.
    pub cert_lifetime: Duration,
    /// `realm`, `service`, `issuer` of the registry's `auth.token` snippet.
    pub realm: String,
    pub service: String,
    pub issuer: String,
}

impl KeygenOptions {
    /// ES256, the CA in `out/ca`, a 90-day signing certificate.
    pub fn new(out: impl Into<PathBuf>) -> KeygenOptions {
        KeygenOptions {
            alg: KeyAlg::Es256,
            out: out.into(),
            ca_dir: None,
            cert_lifetime: DEFAULT_CERT_LIFETIME,
            realm: "https://registry.example.com/token".into(),
            service: "registry.example.com".into(),
            issuer: "registry-token".into(),
        }
    }

    /// The CA folder: `--ca-dir`, else `out/ca`.
    pub fn ca_dir(&self) -> PathBuf {
        self.ca_dir.clone().unwrap_or_else(|| self.out.join("ca"))
    }
}

/// What `keygen` wrote.
#[derive(Debug)]
pub struct Generated {
    /// The output folder.
    pub dir: PathBuf,
    /// The folder holding the CA's private key.
    pub ca_dir: PathBuf,
    /// The registry's `auth.token` YAML.
    pub snippet: String,
    /// On rotation: the replaced signing certificate, to list in `signing.previousKeys`.
    pub previous: Option<PathBuf>,
    /// A `ca.key` found in the output folder (older keygen) and moved into the CA folder.
    pub moved_ca_key: Option<PathBuf>,
    /// When the new signing certificate ends (as openssl prints it).
    pub not_after: String,
}

const CA_DAYS: u32 = 3650;
/// The signing certificate's lifetime unless `--cert-lifetime` says otherwise.
pub const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
/// Bounds of `--cert-lifetime`.
const MIN_CERT_LIFETIME: Duration = Duration::from_secs(3600);
const MAX_CERT_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// Backdating of `notBefore`, for clocks slightly behind.
const BACKDATE_SECS: i64 = 3600;

/// [`keygen_with`] with the CA in `out/ca` and a 90-day signing certificate.
pub fn keygen(
    alg: KeyAlg,
    out: &Path,
    realm: &str,
    service: &str,
    issuer: &str,
) -> Result<Generated, KeyError> {
    keygen_with(&KeygenOptions {
        alg,
        realm: realm.into(),
        service: service.into(),
        issuer: issuer.into(),
        ..KeygenOptions::new(out)
    })
}

/// Writes `ca.crt`, `signing.pem`, `signing-chain.crt` and `jwks.json` into `out`, the CA's
/// `ca.key` and `ca.crt` into the CA folder (an existing CA is kept), and returns the
/// registry's `auth.token` snippet.
pub fn keygen_with(o: &KeygenOptions) -> Result<Generated, KeyError> {
    let out = o.out.as_path();
    if !(MIN_CERT_LIFETIME..=MAX_CERT_LIFETIME).contains(&o.cert_lifetime) {
        return Err(KeyError::Refused {
            path: out.to_owned(),
            reason: format!(
                "a signing certificate lifetime of {} is outside 1h..365d",
                humantime::format_duration(o.cert_lifetime)
            ),
        });
    }
    fs::create_dir_all(out).map_err(|source| KeyError::Write {
        path: out.to_owned(),
        source,
    })?;
    let ca_dir = o.ca_dir();
    let (ca_key, ca_cert, moved_ca_key) = ca(out, &ca_dir)?;
    let ca_crt = out.join("ca.crt");
    let (key_path, chain_path) = (out.join("signing.pem"), out.join("signing-chain.crt"));

    // Rotation: keep the replaced leaf so the sidecar can still verify tokens it signed.
    let previous = if chain_path.exists() {
        let leaf = X509::from_pem(&read(&chain_path)?).map_err(|e| KeyError::Parse {
            path: chain_path.clone(),
            reason: e.to_string(),
        })?;
        let path = out.join(format!("signing-previous-{}.crt", SystemClock.now()));
        write(
            &path,
            &leaf.to_pem().map_err(ossl("encode certificate"))?,
            0o644,
        )?;
        Some(path)
    } else {
        None
    };

    let key = match o.alg {
        KeyAlg::Es256 => PKey::from_ec_key(p256()?),
        KeyAlg::Rs256 => Rsa::generate(3072).and_then(PKey::from_rsa),
        KeyAlg::EdDsa => PKey::generate_ed25519(),
    }
    .map_err(ossl("generate signing key"))?;
    let leaf = leaf_certificate(&key, &ca_key, &ca_cert, o.cert_lifetime)
        .map_err(ossl("create signing certificate"))?;
    let mut chain = leaf.to_pem().map_err(ossl("encode certificate"))?;
    chain.extend(ca_cert.to_pem().map_err(ossl("encode certificate"))?);
    write(
        &key_path,
        &key.private_key_to_pem_pkcs8()
            .map_err(ossl("encode signing key"))?,
        0o600,
    )?;
    write(&chain_path, &chain, 0o644)?;

    // Load back what was written: proves the files are usable and yields the JWKS.
    let keys = KeySet::load(&SigningConfig {
        key_path,
        key_password: None,
        certificate_chain: Some(chain_path),
        key_id: None,
        key_id_format: KeyIdFormat::Libtrust,
        previous_keys: previous.iter().cloned().collect(),
    })?;
    let jwks = serde_json::to_vec_pretty(&keys.jwks()).unwrap_or_default();
    write(&out.join("jwks.json"), &jwks, 0o644)?;

    let bundle = fs::canonicalize(&ca_crt).unwrap_or(ca_crt);
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let snippet = format!(
        "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
        quote(&o.realm),
        quote(&o.service),
        quote(&o.issuer),
        quote(&bundle.to_string_lossy()),
    );
    Ok(Generated {
        dir: out.to_owned(),
        ca_dir,
        snippet,
        previous,
        moved_ca_key,
        not_after: leaf.not_after().to_string(),
    })
}

/// Runs `keygen` as the command line asks: writes the files, prints where they went and the
/// registry's `auth.token` snippet; exit code 1 when it cannot.
pub fn run(options: &KeygenOptions) -> ExitCode {
    match keygen_with(options) {
        Ok(generated) => {
            if let Some(old) = &generated.moved_ca_key {
                println!(
                    "moved the CA's private key {} into {}",
                    old.display(),
                    generated.ca_dir.display()
                );
            }
            println!(
                "wrote signing.pem, signing-chain.crt (valid until {}), jwks.json, ca.crt to {}",
                generated.not_after,
                generated.dir.display()
            );
            println!(
                "the CA's private key is in {}: mount {} without it into the sidecar, only ca.crt into the registry",
                generated.ca_dir.display(),
                generated.dir.display()
            );
            if let Some(previous) = &generated.previous {
                println!(
                    "the replaced signing certificate is {}: list it in signing.previousKeys",
                    previous.display()
                );
            }
            println!(
                "\nFor the registry's configuration:\n\n{}",
                generated.snippet
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keygen: {e}");
            ExitCode::from(1)
        }
    }
}

/// Finds the CA (its key in `ca_dir`, its certificate there or in `out`), or creates one when
/// there is none at all; writes `ca_dir/ca.crt` and `out/ca.crt`. Half a CA, or an `out/ca.crt`
/// of another CA, is refused: the registry's `rootcertbundle` would silently stop matching.
fn ca(out: &Path, ca_dir: &Path) -> Result<(PKey<Private>, X509, Option<PathBuf>), KeyError> {
    prepare_ca_dir(out, ca_dir)?;
    let (key_path, crt_path) = (ca_dir.join("ca.key"), ca_dir.join("ca.crt"));
    let (legacy_key, out_crt) = (out.join("ca.key"), out.join("ca.crt"));
    let moved = if legacy_key.exists() {
        move_legacy_key(&legacy_key, &key_path)?
    } else {
        None
    };
    let cert_source = [&crt_path, &out_crt].into_iter().find(|p| p.exists());
    let (key, cert) = match (key_path.exists(), cert_source) {
        (true, Some(cert)) => load_ca(&key_path, cert)?,
        (false, None) => {
            let key = PKey::from_ec_key(p256()?).map_err(ossl("generate CA key"))?;
            let cert = ca_certificate(&key).map_err(ossl("create CA certificate"))?;
            write(
                &key_path,
                &key.private_key_to_pem_pkcs8()
                    .map_err(ossl("encode CA key"))?,
                0o600,
            )?;
            (key, cert)
        }
        (true, None) => {
            return Err(KeyError::Refused {
                path: key_path,
                reason: format!("exists without ca.crt (in {} or {}): restore it, or remove the key to create a new CA (the registry's rootcertbundle must then change)", ca_dir.display(), out.display()),
            })
        }
        (false, Some(cert)) => {
            return Err(KeyError::Refused {
                path: cert.clone(),
                reason: format!("exists without the CA's key {}: pass --ca-dir where the CA's ca.key is, or remove ca.crt to create a new CA (the registry's rootcertbundle must then change)", key_path.display()),
            })
        }
    };
    let pem = cert.to_pem().map_err(ossl("encode CA certificate"))?;
    if out_crt.exists() && read(&out_crt)? != pem {
        return Err(KeyError::Refused {
            path: out_crt,
            reason: format!(
                "is not the certificate of the CA in {}: the registry trusts another CA",
                ca_dir.display()
            ),
        });
    }
    for path in [&crt_path, &out_crt] {
        if !path.exists() {
            write(path, &pem, 0o644)?;
        }
    }
    Ok((key, cert, moved))
}

/// Creates the CA folder 0700, or checks that an existing one is private and is not `out`.
fn prepare_ca_dir(out: &Path, ca_dir: &Path) -> Result<(), KeyError> {
    let refuse = |reason: String| KeyError::Refused {
        path: ca_dir.to_owned(),
        reason,
    };
    if !ca_dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(ca_dir)
            .map_err(|source| KeyError::Write {
                path: ca_dir.to_owned(),
                source,
            })?;
        // The umask may have taken bits away, never added any; set it exactly.
        fs::set_permissions(ca_dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
            KeyError::Write {
                path: ca_dir.to_owned(),
                source,
            }
        })?;
    }
    let same = fs::canonicalize(ca_dir).ok() == fs::canonicalize(out).ok();
    if same {
        return Err(refuse(
            "is the output folder: the CA's key must not sit in the folder the services mount"
                .into(),
        ));
    }
    let mode = fs::metadata(ca_dir)
        .map_err(|source| KeyError::Read {
            path: ca_dir.to_owned(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(refuse(format!(
            "is open to other users (mode {:o}): `chmod 700` it, it holds the CA's private key",
            mode & 0o777
        )));
    }
    Ok(())
}

/// Moves an older keygen's `out/ca.key` into the CA folder (or drops it when the CA folder
/// already holds the same key); a different key there is refused.
fn move_legacy_key(legacy: &Path, key_path: &Path) -> Result<Option<PathBuf>, KeyError> {
    let bytes = read(legacy)?;
    let remove = |path: &Path| {
        fs::remove_file(path).map_err(|source| KeyError::Write {
            path: path.to_owned(),
            source,
        })
    };
    if key_path.exists() {
        if read(key_path)? != bytes {
            return Err(KeyError::Refused {
                path: legacy.to_owned(),
                reason: format!(
                    "is not the CA key in {}: keep one of them",
                    key_path.display()
                ),
            });
        }
        remove(legacy)?;
        return Ok(Some(legacy.to_owned()));
    }
    write(key_path, &bytes, 0o600)?;
    remove(legacy)?;
    Ok(Some(legacy.to_owned()))
}

fn ossl(what: &'static str) -> impl Fn(openssl::error::ErrorStack) -> KeyError {
    move |source| KeyError::Crypto { what, source }
}

fn p256() -> Result<EcKey<Private>, KeyError> {
    EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)
        .and_then(|g| EcKey::generate(&g))
        .map_err(ossl("generate EC key"))
}

fn load_ca(key_path: &Path, crt_path: &Path) -> Result<(PKey<Private>, X509), KeyError> {
    let key = load_private_pem(key_path, &read(key_path)?, None)?;
    let cert = X509::from_pem(&read(crt_path)?).map_err(|e| KeyError::Parse {
        path: crt_path.to_owned(),
        reason: format!("not a PEM certificate: {e}"),
    })?;
    let same = cert.public_key().is_ok_and(|k| k.public_eq(&key));
    if !same {
        return Err(KeyError::ChainMismatch {
            key: key_path.to_owned(),
            chain: crt_path.to_owned(),
        });
    }
    Ok((key, cert))
}

fn common_name(cn: &str) -> Result<X509Name, openssl::error::ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    Ok(name.build())
}

/// Starts a certificate: names, random serial, validity from an hour ago (clock skew) for
/// `lifetime`.
fn builder(
    subject: &X509NameRef,
    issuer: &X509NameRef,
    lifetime: Duration,
) -> Result<X509Builder, openssl::error::ErrorStack> {
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(serial.to_asn1_integer()?.as_ref())?;
    b.set_subject_name(subject)?;
    b.set_issuer_name(issuer)?;
    // notAfter - notBefore is exactly `lifetime`.
    let start = SystemClock.now() - BACKDATE_SECS;
    b.set_not_before(Asn1Time::from_unix(start)?.as_ref())?;
    b.set_not_after(Asn1Time::from_unix(start + lifetime.as_secs() as i64)?.as_ref())?;
    Ok(b)
}

fn ca_certificate(key: &PKey<Private>) -> Result<X509, openssl::error::ErrorStack> {
    let name = common_name("registry-token CA")?;
    let mut b = builder(
        &name,
        &name,
        Duration::from_secs(u64::from(CA_DAYS) * 86_400),
    )?;
    b.set_pubkey(key)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

fn leaf_certificate(
    key: &PKey<Private>,
    ca_key: &PKey<Private>,
    ca: &X509,
    lifetime: Duration,
) -> Result<X509, openssl::error::ErrorStack> {
    let subject = common_name("registry-token signing")?;
    let mut b = builder(&subject, ca.subject_name(), lifetime)?;
    b.set_pubkey(key)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(ca), None))?;
    b.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(false)
        .build(&b.x509v3_context(Some(ca), None))?;
    b.append_extension(aki)?;
    b.sign(ca_key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// Writes through a temporary file and a rename, so a reader never sees half a key.
fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let err = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::X509StoreContext;
    use rstest::rstest;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// True when the first certificate of `chain` verifies up to the CA in `ca`.
    fn chain_verifies(ca: &Path, chain: &Path) -> bool {
        let mut store = X509StoreBuilder::new().unwrap();
        store
            .add_cert(X509::from_pem(&fs::read(ca).unwrap()).unwrap())
            .unwrap();
        let store = store.build();
        let certs = X509::stack_from_pem(&fs::read(chain).unwrap()).unwrap();
        let mut rest = Stack::new().unwrap();
        for c in &certs[1..] {
            rest.push(c.clone()).unwrap();
        }
        let mut ctx = X509StoreContext::new().unwrap();
        ctx.init(&store, &certs[0], &rest, |c| c.verify_cert())
            .unwrap()
    }

    #[rstest]
    #[case("ES256", KeyAlg::Es256)]
    #[case("RS256", KeyAlg::Rs256)]
    #[case("EdDSA", KeyAlg::EdDsa)]
    #[case("eddsa", KeyAlg::EdDsa)]
    fn parses_algorithm_names(#[case] name: &str, #[case] alg: KeyAlg) {
        assert_eq!(name.parse::<KeyAlg>().unwrap(), alg);
        assert_eq!(
            alg.to_string().to_ascii_lowercase(),
            name.to_ascii_lowercase()
        );
    }

    #[test]
    fn refuses_unknown_algorithm() {
        assert!(matches!(
            "HS256".parse::<KeyAlg>(),
            Err(KeyError::UnknownAlgorithm(_))
        ));
    }

    /// keygen writes the CA's key into its own 0700 folder (0600), and into `out` only what the
    /// services read: a signing key whose chain verifies under `ca.crt`, a JWKS with the
    /// libtrust kid, and the registry snippet; the leaf lasts exactly 90 days.
    #[test]
    fn writes_ca_apart_from_key_chain_and_jwks() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("keys");
        let g = keygen(
            KeyAlg::Es256,
            &out,
            "https://r.example/token",
            "r.example",
            "registry-token",
        )
        .unwrap();
        assert_eq!(g.ca_dir, out.join("ca"));
        for (name, m) in [
            ("ca", 0o700),
            ("ca/ca.key", 0o600),
            ("ca/ca.crt", 0o644),
            ("signing.pem", 0o600),
            ("ca.crt", 0o644),
            ("signing-chain.crt", 0o644),
            ("jwks.json", 0o644),
        ] {
            assert_eq!(mode(&out.join(name)), m, "{name}");
        }
        assert!(!out.join("ca.key").exists());
        assert_eq!(
            fs::read(out.join("ca.crt")).unwrap(),
            fs::read(out.join("ca/ca.crt")).unwrap()
        );
        assert!(chain_verifies(
            &out.join("ca.crt"),
            &out.join("signing-chain.crt")
        ));
        let leaf = X509::from_pem(&fs::read(out.join("signing-chain.crt")).unwrap()).unwrap();
        let span = leaf.not_before().diff(leaf.not_after()).unwrap();
        assert_eq!((span.days, span.secs), (90, 0));
        let ca = X509::from_pem(&fs::read(out.join("ca.crt")).unwrap()).unwrap();
        let ca_text = String::from_utf8(ca.to_text().unwrap()).unwrap();
        assert!(
            ca_text.contains("CN=registry-token CA") && ca_text.contains("CA:TRUE"),
            "{ca_text}"
        );
        assert!(ca_text.contains("Certificate Sign"), "{ca_text}");

        let jwks: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("jwks.json")).unwrap()).unwrap();
        let key = load_private_pem(
            &out.join("signing.pem"),
            &fs::read(out.join("signing.pem")).unwrap(),
            None,
        )
        .unwrap();
        let kid = crate::token::libtrust_key_id(&key.public_key_to_der().unwrap());
        assert_eq!(jwks["keys"][0]["kid"], kid.as_str());
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        let bundle = fs::canonicalize(out.join("ca.crt")).unwrap();
        assert_eq!(
            g.snippet,
            format!("auth:\n  token:\n    realm: \"https://r.example/token\"\n    service: \"r.example\"\n    issuer: \"registry-token\"\n    rootcertbundle: \"{}\"\n", bundle.display())
        );
        assert!(g.previous.is_none() && g.moved_ca_key.is_none());
    }

    /// A second run keeps the CA (no registry change) and rotates the signing key, keeping
    /// the old leaf as a previous key published in jwks.json.
    #[test]
    fn second_run_keeps_ca_and_rotates_signing_key() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        keygen(KeyAlg::Es256, out, "r", "s", "i").unwrap();
        let (ca, ca_key, key) = (
            fs::read(out.join("ca.crt")).unwrap(),
            fs::read(out.join("ca/ca.key")).unwrap(),
            fs::read(out.join("signing.pem")).unwrap(),
        );
        let g = keygen(KeyAlg::EdDsa, out, "r", "s", "i").unwrap();
        assert_eq!(fs::read(out.join("ca.crt")).unwrap(), ca);
        assert_eq!(fs::read(out.join("ca/ca.key")).unwrap(), ca_key);
        assert_ne!(fs::read(out.join("signing.pem")).unwrap(), key);
        assert!(chain_verifies(
            &out.join("ca.crt"),
            &out.join("signing-chain.crt")
        ));
        assert!(g.previous.as_ref().is_some_and(|p| p.exists()));
        let jwks: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("jwks.json")).unwrap()).unwrap();
        let algs: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["alg"].as_str().unwrap())
            .collect();
        assert_eq!(algs, ["EdDSA", "ES256"]);
    }

    /// With `--ca-dir` elsewhere, a fresh output folder gets a key under the same CA: the
    /// registry's `ca.crt` is unchanged.
    #[test]
    fn separate_ca_dir_serves_new_output_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let options = |out: &str| KeygenOptions {
            ca_dir: Some(tmp.path().join("offline/ca")),
            cert_lifetime: Duration::from_secs(10 * 86_400),
            ..KeygenOptions::new(tmp.path().join(out))
        };
        keygen_with(&options("a")).unwrap();
        keygen_with(&options("b")).unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        assert_eq!(
            fs::read(a.join("ca.crt")).unwrap(),
            fs::read(b.join("ca.crt")).unwrap()
        );
        assert!(chain_verifies(
            &a.join("ca.crt"),
            &b.join("signing-chain.crt")
        ));
        assert!(!a.join("ca").exists() && !b.join("ca").exists());
        assert_eq!(mode(&tmp.path().join("offline/ca")), 0o700);
    }

    /// An older keygen's `ca.key` beside `signing.pem` is moved into the CA folder, and the CA
    /// stays the same.
    #[test]
    fn moves_an_old_ca_key_out_of_the_output_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        keygen(KeyAlg::Es256, out, "r", "s", "i").unwrap();
        let (ca, ca_key) = (
            fs::read(out.join("ca.crt")).unwrap(),
            fs::read(out.join("ca/ca.key")).unwrap(),
        );
        // The layout an older keygen wrote: ca.key and ca.crt beside signing.pem.
        fs::rename(out.join("ca/ca.key"), out.join("ca.key")).unwrap();
        fs::remove_dir_all(out.join("ca")).unwrap();
        let g = keygen(KeyAlg::Es256, out, "r", "s", "i").unwrap();
        assert_eq!(
            g.moved_ca_key.as_deref(),
            Some(out.join("ca.key").as_path())
        );
        assert!(!out.join("ca.key").exists());
        assert_eq!(fs::read(out.join("ca/ca.key")).unwrap(), ca_key);
        assert_eq!(mode(&out.join("ca/ca.key")), 0o600);
        assert_eq!(fs::read(out.join("ca.crt")).unwrap(), ca);
        assert!(chain_verifies(
            &out.join("ca.crt"),
            &out.join("signing-chain.crt")
        ));
    }

    /// Half a CA is never silently replaced: keygen refuses and leaves the file alone.
    #[rstest]
    #[case::key_without_certificate(&["ca.crt", "ca/ca.crt"], "ca/ca.key", "ca.crt")]
    #[case::certificate_without_key(&["ca/ca.key"], "ca.crt", "ca.key")]
    fn refuses_half_a_ca(#[case] remove: &[&str], #[case] kept: &str, #[case] named: &str) {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        keygen(KeyAlg::Es256, out, "r", "s", "i").unwrap();
        for name in remove {
            fs::remove_file(out.join(name)).unwrap();
        }
        let before = fs::read(out.join(kept)).unwrap();
        let err = keygen(KeyAlg::Es256, out, "r", "s", "i").unwrap_err();
        assert!(matches!(err, KeyError::Refused { .. }), "{err}");
        assert!(err.to_string().contains(named), "{err}");
        assert_eq!(fs::read(out.join(kept)).unwrap(), before);
    }

    /// Options that would put the CA key at risk, or a certificate life out of bounds, are
    /// refused before anything is written.
    #[rstest]
    #[case::ca_dir_is_out(Some("."), None, 90, "is the output folder")]
    #[case::ca_dir_open(Some("open"), Some(0o755), 90, "chmod 700")]
    #[case::too_long(None, None, 400, "outside 1h..365d")]
    #[case::zero(None, None, 0, "outside 1h..365d")]
    fn refuses_unsafe_options(
        #[case] ca_dir: Option<&str>,
        #[case] existing_mode: Option<u32>,
        #[case] days: u64,
        #[case] says: &str,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let ca_dir = ca_dir.map(|d| tmp.path().join(d));
        if let (Some(dir), Some(m)) = (&ca_dir, existing_mode) {
            fs::create_dir(dir).unwrap();
            fs::set_permissions(dir, fs::Permissions::from_mode(m)).unwrap();
        }
        let err = keygen_with(&KeygenOptions {
            ca_dir,
            cert_lifetime: Duration::from_secs(days * 86_400),
            ..KeygenOptions::new(tmp.path())
        })
        .unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
        assert!(!tmp.path().join("signing.pem").exists());
    }
}
