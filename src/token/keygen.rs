//! `registry-token keygen`: a stable CA for the registry's `auth.token.rootcertbundle`, and a
//! signing key with a certificate chain under it. Run again in the same folder, it keeps the
//! CA and writes a new signing key: the registry trusts the new key through `x5c` without any
//! change, and the old leaf certificate is kept for `signing.previousKeys`.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

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

use super::keys::{load_private_pem, read, KeyError, KeyIdFormat, KeySet, SigningConfig};

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

/// What `keygen` wrote.
#[derive(Debug)]
pub struct Generated {
    /// The output folder.
    pub dir: PathBuf,
    /// The registry's `auth.token` YAML.
    pub snippet: String,
    /// On rotation: the replaced signing certificate, to list in `signing.previousKeys`.
    pub previous: Option<PathBuf>,
}

const CA_DAYS: u32 = 3650;
const LEAF_DAYS: u32 = 730;

/// Writes `ca.crt`, `ca.key` (kept when both exist), `signing.pem`, `signing-chain.crt` and
/// `jwks.json` into `out`, and returns the registry's `auth.token` snippet.
pub fn keygen(
    alg: KeyAlg,
    out: &Path,
    realm: &str,
    service: &str,
    issuer: &str,
) -> Result<Generated, KeyError> {
    fs::create_dir_all(out).map_err(|source| KeyError::Write {
        path: out.to_owned(),
        source,
    })?;
    let (ca_crt, ca_key_path) = (out.join("ca.crt"), out.join("ca.key"));
    let (key_path, chain_path) = (out.join("signing.pem"), out.join("signing-chain.crt"));

    let (ca_key, ca_cert) = match (ca_key_path.exists(), ca_crt.exists()) {
        (true, true) => load_ca(&ca_key_path, &ca_crt)?,
        (false, false) => {
            let key = PKey::from_ec_key(p256()?).map_err(ossl("generate CA key"))?;
            let cert = ca_certificate(&key).map_err(ossl("create CA certificate"))?;
            write(
                &ca_key_path,
                &key.private_key_to_pem_pkcs8()
                    .map_err(ossl("encode CA key"))?,
                0o600,
            )?;
            write(
                &ca_crt,
                &cert.to_pem().map_err(ossl("encode CA certificate"))?,
                0o644,
            )?;
            (key, cert)
        }
        (key_exists, _) => {
            let (present, absent) = if key_exists {
                (&ca_key_path, &ca_crt)
            } else {
                (&ca_crt, &ca_key_path)
            };
            return Err(KeyError::Refused {
                path: present.clone(),
                reason: format!(
                    "exists without {}: restore it, or remove both to create a new CA (the registry's rootcertbundle must then change)",
                    absent.display()
                ),
            });
        }
    };

    // Rotation: keep the replaced leaf so the sidecar can still verify tokens it signed.
    let previous = if chain_path.exists() {
        let leaf = X509::from_pem(&read(&chain_path)?).map_err(|e| KeyError::Parse {
            path: chain_path.clone(),
            reason: e.to_string(),
        })?;
        let path = out.join(format!("signing-previous-{}.crt", unix_now()));
        write(
            &path,
            &leaf.to_pem().map_err(ossl("encode certificate"))?,
            0o644,
        )?;
        Some(path)
    } else {
        None
    };

    let key = match alg {
        KeyAlg::Es256 => PKey::from_ec_key(p256()?),
        KeyAlg::Rs256 => Rsa::generate(3072).and_then(PKey::from_rsa),
        KeyAlg::EdDsa => PKey::generate_ed25519(),
    }
    .map_err(ossl("generate signing key"))?;
    let leaf =
        leaf_certificate(&key, &ca_key, &ca_cert).map_err(ossl("create signing certificate"))?;
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
        quote(realm),
        quote(service),
        quote(issuer),
        quote(&bundle.to_string_lossy()),
    );
    Ok(Generated {
        dir: out.to_owned(),
        snippet,
        previous,
    })
}

fn ossl(what: &'static str) -> impl Fn(openssl::error::ErrorStack) -> KeyError {
    move |source| KeyError::Crypto { what, source }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
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

/// Starts a certificate: names, random serial, validity from an hour ago for clock skew.
fn builder(
    subject: &X509NameRef,
    issuer: &X509NameRef,
    days: u32,
) -> Result<X509Builder, openssl::error::ErrorStack> {
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(serial.to_asn1_integer()?.as_ref())?;
    b.set_subject_name(subject)?;
    b.set_issuer_name(issuer)?;
    let now = unix_now();
    b.set_not_before(Asn1Time::from_unix(now - 3600)?.as_ref())?;
    b.set_not_after(Asn1Time::from_unix(now + i64::from(days) * 86_400)?.as_ref())?;
    Ok(b)
}

fn ca_certificate(key: &PKey<Private>) -> Result<X509, openssl::error::ErrorStack> {
    let name = common_name("registry-token CA")?;
    let mut b = builder(&name, &name, CA_DAYS)?;
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
) -> Result<X509, openssl::error::ErrorStack> {
    let subject = common_name("registry-token signing")?;
    let mut b = builder(&subject, ca.subject_name(), LEAF_DAYS)?;
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

    /// keygen writes a CA, a signing key whose chain verifies under it, private files 0600,
    /// a JWKS with the libtrust kid, and the registry snippet.
    #[test]
    fn writes_ca_key_chain_and_jwks() {
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
        for (name, m) in [
            ("ca.key", 0o600),
            ("signing.pem", 0o600),
            ("ca.crt", 0o644),
            ("signing-chain.crt", 0o644),
        ] {
            assert_eq!(mode(&out.join(name)), m, "{name}");
        }
        assert!(chain_verifies(
            &out.join("ca.crt"),
            &out.join("signing-chain.crt")
        ));
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
        let kid = super::super::keys::libtrust_key_id(&key.public_key_to_der().unwrap());
        assert_eq!(jwks["keys"][0]["kid"], kid.as_str());
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        let bundle = fs::canonicalize(out.join("ca.crt")).unwrap();
        assert_eq!(
            g.snippet,
            format!("auth:\n  token:\n    realm: \"https://r.example/token\"\n    service: \"r.example\"\n    issuer: \"registry-token\"\n    rootcertbundle: \"{}\"\n", bundle.display())
        );
        assert!(g.previous.is_none());
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
            fs::read(out.join("ca.key")).unwrap(),
            fs::read(out.join("signing.pem")).unwrap(),
        );
        let g = keygen(KeyAlg::EdDsa, out, "r", "s", "i").unwrap();
        assert_eq!(fs::read(out.join("ca.crt")).unwrap(), ca);
        assert_eq!(fs::read(out.join("ca.key")).unwrap(), ca_key);
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

    /// Half a CA is never silently replaced: keygen refuses and leaves the file alone.
    #[rstest]
    #[case("ca.key")]
    #[case("ca.crt")]
    fn refuses_half_a_ca(#[case] keep: &str) {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        keygen(KeyAlg::Es256, out, "r", "s", "i").unwrap();
        let other = if keep == "ca.key" { "ca.crt" } else { "ca.key" };
        fs::remove_file(out.join(other)).unwrap();
        let before = fs::read(out.join(keep)).unwrap();
        let err = keygen(KeyAlg::Es256, out, "r", "s", "i").unwrap_err();
        assert!(matches!(err, KeyError::Refused { .. }), "{err}");
        assert!(
            err.to_string().contains(keep) && err.to_string().contains(other),
            "{err}"
        );
        assert_eq!(fs::read(out.join(keep)).unwrap(), before);
    }
}
