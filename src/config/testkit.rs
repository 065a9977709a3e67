//! Whole `Settings` for the unit tests of what still reads them (reload, revocation file,
//! proxy): a file written from YAML and loaded, as the sidecar does. A domain's own tests build
//! it from its slice instead (`token::testkit`).

use super::Settings;
use crate::authority::dpop::tests::REALM;
use crate::token::testkit::{signing_key, ISSUER, SERVICE};

/// Settings as `load` makes them, with a fresh signing key in `dir`: realm
/// [`REALM`], plans `enterprise` (`acme/*` pull, push; the default) and `nothing`, license
/// `LIC-REVOKED` revoked, and `extra` YAML appended.
pub fn settings(dir: &std::path::Path, constraint: &str, extra: &str) -> Settings {
    signing_key(dir);
    let d = dir.display();
    let yaml = format!(
        r#"server: {{listen: "127.0.0.1:8085", adminListen: "127.0.0.1:9091"}}
upstream: {{url: "http://127.0.0.1:5000"}}
authority: {{issuer: "{ISSUER}", audiences: [registry], requiredScopes: [registry.token.issue], senderConstraint: {constraint}}}
signing: {{issuer: registry-token, keyPath: {d}/signing.pem}}
registry: {{realm: "{REALM}", service: {SERVICE}}}
plans:
  - {{name: enterprise, repositories: [{{pattern: "acme/*", actions: [pull, push]}}]}}
  - {{name: nothing, repositories: []}}
defaultPlan: enterprise
revokedLicenses: [LIC-REVOKED]
{extra}"#
    );
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    super::load(&dir.join("config.yaml")).unwrap()
}
