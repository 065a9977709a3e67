//! Test certificates made in-process with openssl: P-256 keys, CA, server and client
//! certificates, and the folder layout the TLS sidecar, the TLS registry and skopeo read.

use std::fs;
use std::path::PathBuf;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use serde_json::json;

use super::b64;

/// A fresh P-256 private key.
pub fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// What a certificate is for: its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `basicConstraints: CA`.
    Ca,
    /// `serverAuth`, with SANs `127.0.0.1` and `localhost`.
    Server,
    /// `clientAuth`.
    Client,
}

/// A certificate for `cn` and `key`, valid from today for two days, signed by `issuer`
/// (self-signed when `None`).
pub fn cert(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    role: Role,
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(rand::random::<u32>() >> 1)
        .unwrap()
        .to_asn1_integer()
        .unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map(|(c, _)| c.subject_name()).unwrap_or(&name))
        .unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    match role {
        Role::Ca => b
            .append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap(),
        Role::Server => {
            let san = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .dns("localhost")
                .build(&b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None))
                .unwrap();
            b.append_extension(san).unwrap();
            b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
                .unwrap();
        }
        Role::Client => b
            .append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap())
            .unwrap(),
    }
    b.sign(
        issuer.map(|(_, k)| k).unwrap_or(key),
        MessageDigest::sha256(),
    )
    .unwrap();
    b.build()
}

/// RFC 8705 `x5t#S256`: base64url SHA-256 of the certificate's DER.
pub fn x5t(cert: &X509) -> String {
    b64(openssl::sha::sha256(&cert.to_der().unwrap()))
}

/// A server CA and a certificate for 127.0.0.1/localhost, a client CA, and two client
/// certificates, written to a tempdir:
///
/// ```text
/// server-ca.crt server.crt server.key clients-ca.crt
/// client-a/ client-b/     skopeo's --cert-dir: ca.crt (the server CA), client.cert, client.key
/// ```
pub struct Pki {
    dir: tempfile::TempDir,
    /// The certificate in `client-a/`.
    pub client_a: X509,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: Vec<u8>| fs::write(dir.path().join(name), bytes).unwrap();
        let (server_ca_key, client_ca_key) = (key(), key());
        let server_ca = cert("test server CA", &server_ca_key, None, Role::Ca);
        let client_ca = cert("test client CA", &client_ca_key, None, Role::Ca);
        let server_key = key();
        let server = cert(
            "127.0.0.1",
            &server_key,
            Some((&server_ca, &server_ca_key)),
            Role::Server,
        );
        write("server-ca.crt", server_ca.to_pem().unwrap());
        write("server.crt", server.to_pem().unwrap());
        write("server.key", server_key.private_key_to_pem_pkcs8().unwrap());
        write("clients-ca.crt", client_ca.to_pem().unwrap());
        let mut clients = Vec::new();
        for name in ["a", "b"] {
            // skopeo's --cert-dir layout: CA as *.crt, the client pair as *.cert and *.key.
            let client_dir = dir.path().join(format!("client-{name}"));
            fs::create_dir(&client_dir).unwrap();
            let client_key = key();
            let client = cert(
                &format!("client {name}"),
                &client_key,
                Some((&client_ca, &client_ca_key)),
                Role::Client,
            );
            fs::write(client_dir.join("ca.crt"), server_ca.to_pem().unwrap()).unwrap();
            fs::write(client_dir.join("client.cert"), client.to_pem().unwrap()).unwrap();
            fs::write(
                client_dir.join("client.key"),
                client_key.private_key_to_pem_pkcs8().unwrap(),
            )
            .unwrap();
            clients.push(client);
        }
        let client_a = clients.swap_remove(0);
        Pki { dir, client_a }
    }

    /// A file or folder of the layout above.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `SidecarConfig::patch` that turns on TLS with the server pair and asks for client
    /// certificates signed by the client CA.
    pub fn tls_patch(&self) -> serde_json::Value {
        json!({"server": {"tls": {
            "certificate": self.path("server.crt"),
            "privateKey": self.path("server.key"),
            "clientCa": self.path("clients-ca.crt"),
        }}})
    }
}
