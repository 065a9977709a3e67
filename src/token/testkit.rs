//! What the realm's and refresh tokens' unit tests build from: the issuer, policy and
//! Authority slices, made directly (no configuration file), with a fresh P-256 signing key.

use std::path::Path;
use std::time::Duration;

use super::{Issuer, KeySet, RefreshSettings, SigningConfig};
use crate::authority::{AuthorityConfig, SenderConstraint};
use crate::policy::compile::PolicySpec;
use crate::policy::Policy;

/// The Authority's issuer in test slices: nothing listens there.
pub const ISSUER: &str = "http://127.0.0.1:9";
pub const SERVICE: &str = "registry.test";
/// `signing.issuer`.
pub const SIGNING_ISSUER: &str = "registry-token";

/// The issuer, policy and Authority settings of a realm.
pub struct Slices {
    pub issuer: Issuer,
    pub policy: Policy,
    pub authority: AuthorityConfig,
}

/// A realm for service [`SERVICE`] at [`REALM`], with a fresh signing key in `dir`; refresh
/// tokens off; plans `enterprise` (`acme/*` pull, push; the default) and `nothing`, license
/// `LIC-REVOKED` revoked; OpToks from [`ISSUER`] bound as `constraint` says.
pub fn slices(dir: &Path, constraint: SenderConstraint) -> Slices {
    Slices {
        issuer: issuer(dir),
        policy: policy(),
        authority: authority(constraint),
    }
}

/// [`slices`] with refresh tokens on.
pub fn with_refresh(dir: &Path, constraint: SenderConstraint) -> Slices {
    let mut s = slices(dir, constraint);
    s.issuer.refresh.enabled = true;
    s
}

/// Writes a fresh P-256 signing key to `dir/signing.pem`.
pub fn signing_key(dir: &Path) {
    let key = openssl::ec::EcKey::generate(
        &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
    )
    .and_then(openssl::pkey::PKey::from_ec_key)
    .and_then(|k| k.private_key_to_pem_pkcs8())
    .unwrap();
    std::fs::write(dir.join("signing.pem"), key).unwrap();
}

fn issuer(dir: &Path) -> Issuer {
    signing_key(dir);
    let keys = KeySet::load(&SigningConfig {
        key_path: dir.join("signing.pem"),
        key_password: None,
        certificate_chain: None,
        key_id: None,
        key_id_format: super::KeyIdFormat::Libtrust,
        previous_keys: Vec::new(),
    })
    .unwrap();
    Issuer {
        name: SIGNING_ISSUER.into(),
        services: vec![SERVICE.into()],
        lifetime: Duration::from_secs(300),
        keys: keys.into(),
        refresh: RefreshSettings::default(),
    }
}

fn policy() -> Policy {
    let plan = crate::policy::compile::tests::plan;
    let (policy, problems) = Policy::compile(&PolicySpec {
        plans: vec![
            plan("enterprise", &[("acme/*", &["pull", "push"])]),
            plan("nothing", &[]),
        ],
        default_plan: Some("enterprise".into()),
        anonymous_plan: None,
        revoked_licenses: vec!["LIC-REVOKED".into()],
    });
    assert!(problems.is_empty(), "{problems:?}");
    policy
}

fn authority(sender_constraint: SenderConstraint) -> AuthorityConfig {
    AuthorityConfig {
        issuer: ISSUER.into(),
        metadata_address: format!("{ISSUER}/.well-known/openid-configuration"),
        ..crate::authority::tests::config(sender_constraint)
    }
}
