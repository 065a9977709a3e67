//! The command line as an operator meets it: `check-config` and `serve` name the field at fault
//! and exit 1 or 2, environment overrides apply, `token inspect` explains and verifies tokens.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::sidecar::BIN;
use common::{Keys, Stack};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("REGISTRY_TOKEN_") {
            command.env_remove(name);
        }
    }
    command
        .envs(env.iter().copied())
        .output()
        .expect("run registry-token")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A valid configuration for `keys`, as YAML text.
fn valid(keys: &Path, issuer: &str) -> String {
    format!(
        "authority:\n  issuer: {issuer}\n  senderConstraint: dpop\n\
         signing:\n  keyPath: {key}\n  certificateChain: {chain}\n\
         registry:\n  realm: http://127.0.0.1:1/token\n  service: registry.test\n\
         upstream:\n  url: http://127.0.0.1:1\n\
         plans:\n  - name: public\n    repositories:\n      - pattern: \"public/*\"\n\
         defaultPlan: public\n",
        key = keys.join("signing.pem").display(),
        chain = keys.join("signing-chain.crt").display(),
    )
}

/// A valid file passes `check-config` (exit 0); `$REGISTRY_TOKEN_CONFIG` names the file when
/// `--config` is absent; an override that breaks it is reported under its path (exit 1).
#[test]
fn check_config_and_overrides() {
    let keys = Keys::generate();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, valid(keys.path(), "http://127.0.0.1:9")).unwrap();
    let path = path.to_str().unwrap();

    let ok = run(&["--config", path, "check-config"], &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("valid"));
    let from_env = run(&["check-config"], &[("REGISTRY_TOKEN_CONFIG", path)]);
    assert_eq!(from_env.status.code(), Some(0), "{}", stderr(&from_env));

    let broken = run(
        &["--config", path, "check-config"],
        &[("REGISTRY_TOKEN_DEFAULTPLAN", "gold")],
    );
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        stderr(&broken).contains("defaultPlan: names no plan: `gold`"),
        "{}",
        stderr(&broken)
    );
    let lifetime = run(
        &["--config", path, "check-config"],
        &[("REGISTRY_TOKEN_SIGNING__LIFETIME", "soon")],
    );
    assert!(
        stderr(&lifetime).contains("signing.lifetime"),
        "{}",
        stderr(&lifetime)
    );
}

/// Every problem of a file is listed with its YAML path (`check-config` exits 1), and `serve`
/// refuses to start on a file that does not parse or validate (exit 2, SECURITY 65).
#[test]
fn bad_files_name_the_field_and_stop_serve() {
    let keys = Keys::generate();
    let good = valid(keys.path(), "http://127.0.0.1:9");
    let cases = [
        (
            "bad pattern",
            good.replace(
                "\"public/*\"",
                "\"public/*\"\n  - name: more\n    repositories:\n      - pattern: \"a*b\"",
            ),
            "plans[1].repositories[0].pattern",
        ),
        (
            "unknown key",
            good.replace(
                "  senderConstraint: dpop\n",
                "  senderConstraint: dpop\n  requried_audience: x\n",
            ),
            "requried_audience",
        ),
        (
            "wrong type",
            good.replace(
                "  senderConstraint: dpop\n",
                "  senderConstraint: dpop\n  audiences: 5\n",
            ),
            "authority.audiences",
        ),
        (
            "tab indentation",
            good.replace("  service: registry.test", "\tservice: registry.test"),
            "YAML",
        ),
        (
            "duplicate key",
            good.replace(
                "  service: registry.test",
                "  service: registry.test\n  service: again",
            ),
            "duplicate",
        ),
        ("empty file", String::new(), "empty"),
        (
            "missing key file",
            good.replace("signing.pem", "nope.pem"),
            "signing.keyPath",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, text, expected) in cases {
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, &text).unwrap();
        let path = path.to_str().unwrap();
        let check = run(&["--config", path, "check-config"], &[]);
        assert_eq!(check.status.code(), Some(1), "{what}: {}", stderr(&check));
        assert!(
            stderr(&check).contains(expected),
            "{what}: expected {expected:?} in {}",
            stderr(&check)
        );
        let serve = run(&["--config", path, "serve"], &[]);
        assert_eq!(
            serve.status.code(),
            Some(2),
            "{what}: serve must refuse to start"
        );
        assert!(
            stderr(&serve).contains(expected),
            "{what}: {}",
            stderr(&serve)
        );
    }
    let usage = run(&["--no-such-flag"], &[]);
    assert_eq!(usage.status.code(), Some(2), "usage errors exit 2");
}

/// `token inspect` shows a token's grants and expiry in words; `--verify` accepts the sidecar's
/// own token (exit 0) and refuses a tampered one (exit 1).
#[test]
fn token_inspect() {
    let stack = Stack::start();
    let (key, optok) = stack.client("alice", "enterprise", "LIC-1");
    let token = stack
        .sidecar
        .token(&["repository:acme/app:pull,push"], &optok, &key);
    let config = stack.sidecar.config_path().to_str().unwrap().to_string();
    let shown = run(
        &["--config", &config, "token", "inspect", &token, "--verify"],
        &[],
    );
    let text = String::from_utf8_lossy(&shown.stdout);
    assert_eq!(shown.status.code(), Some(0), "{text}{}", stderr(&shown));
    assert!(text.contains("repository acme/app: pull, push"), "{text}");
    assert!(text.contains("expires: in "), "{text}");
    assert!(text.contains("verify: valid"), "{text}");
    let mut tampered = token.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    let refused = run(
        &[
            "--config", &config, "token", "inspect", &tampered, "--verify",
        ],
        &[],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stdout).contains("NOT valid"));
}
