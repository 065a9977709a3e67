//! The command line as an operator meets it: `check-config` and `serve` name the field at fault
//! and exit 1 or 2, environment overrides apply, `token inspect` explains and verifies tokens.
//!
//! Authority: in-test (common::authority): these cases are about the binary's files, output and
//! exit codes, not where an OpTok comes from; the in-process Authority starts at once. The real
//! provider's OpToks drive `registry-token test` in `tests/oidc_provider.rs`.

mod common;

use std::path::Path;
use std::time::Duration;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::sidecar::{SERVICE, TOKEN_ISSUER};
use common::{
    free_port, poll, run, stderr, Authority, DpopKey, Keys, Registry, Sidecar, SidecarConfig,
    Stack, TokenAuth,
};

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
/// refuses to start on a file that does not parse or validate (exit 2, docs/security.md, case 65).
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
    assert!(text.contains("repository:acme/app:pull,push"), "{text}");
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

/// `token inspect … | head`: a reader that closes early ends the command quietly (SIGPIPE, as
/// other tools), not with a Rust panic and its backtrace on standard error.
#[test]
fn token_inspect_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // closed before the command writes anything: no race
    let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.AAAA";
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registry-token"))
        .args(["token", "inspect", jwt])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(!errors.contains("panicked"), "{errors}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{errors}");
}

/// Mode bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file under `dir` (recursively) whose content is a PEM private key, except under `skip`.
fn private_keys_under(dir: &Path, skip: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == skip {
            continue;
        }
        if path.is_dir() {
            found.extend(private_keys_under(&path, skip));
        } else if std::fs::read_to_string(&path).is_ok_and(|t| t.contains("PRIVATE KEY")) {
            found.push(path);
        }
    }
    found
}

/// The signing certificate (first of the chain) in `dir`.
fn leaf(dir: &Path) -> openssl::x509::X509 {
    openssl::x509::X509::from_pem(&std::fs::read(dir.join("signing-chain.crt")).unwrap()).unwrap()
}

/// Security case 77 and "Rotating the signing key" in docs/operations.md: `keygen --out DIR` puts
/// the CA's private key in `DIR/ca/` (0700, key 0600), so DIR without `ca/` — what the sidecar and
/// the registry mount — holds no private key but the signing key; the signing certificate lasts 90
/// days; a second run (rotation) and a run into a fresh folder with the same `--ca-dir` keep the
/// CA, so the registry's `ca.crt` never changes.
#[test]
fn keygen_keeps_the_ca_key_out_of_the_mounted_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let keygen = |out: &Path, extra: &[&str]| {
        let mut args = vec!["keygen", "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = run(&args, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = keygen(&dir, &[]);
    assert!(
        said.contains(&format!("{}", dir.join("ca").display())),
        "keygen names the CA folder: {said}"
    );
    for name in ["signing.pem", "signing-chain.crt", "jwks.json", "ca.crt"] {
        assert!(dir.join(name).is_file(), "{name} in DIR");
    }
    assert!(!dir.join("ca.key").exists(), "no ca.key in DIR");
    assert_eq!(mode(&dir.join("ca")), 0o700);
    assert_eq!(mode(&dir.join("ca/ca.key")), 0o600);
    assert_eq!(mode(&dir.join("signing.pem")), 0o600);
    assert_eq!(
        private_keys_under(&dir, &dir.join("ca")),
        [dir.join("signing.pem")],
        "DIR without ca/ holds only the signing key"
    );
    let leaf1 = leaf(&dir);
    let span = leaf1.not_before().diff(leaf1.not_after()).unwrap();
    assert!(
        span.days < 90 || (span.days == 90 && span.secs == 0),
        "signing certificate lasts {span:?}"
    );
    let now = openssl::asn1::Asn1Time::days_from_now(0).unwrap();
    assert!(leaf1.not_before() <= now && now < leaf1.not_after());

    // Rotation in place: same CA, new key, the old leaf kept for previousKeys.
    let (ca, key) = (
        std::fs::read(dir.join("ca.crt")).unwrap(),
        std::fs::read(dir.join("signing.pem")).unwrap(),
    );
    let said = keygen(&dir, &[]);
    assert!(said.contains("signing-previous-"), "{said}");
    assert_eq!(std::fs::read(dir.join("ca.crt")).unwrap(), ca);
    assert_ne!(std::fs::read(dir.join("signing.pem")).unwrap(), key);

    // A fresh folder with the same --ca-dir: the registry's ca.crt is the same.
    let fresh = tmp.path().join("fresh");
    let ca_dir = dir.join("ca");
    keygen(&fresh, &["--ca-dir", ca_dir.to_str().unwrap()]);
    assert_eq!(std::fs::read(fresh.join("ca.crt")).unwrap(), ca);
    assert!(!fresh.join("ca").exists() && !fresh.join("ca.key").exists());

    // A lifetime past the bound is refused.
    let out = run(
        &[
            "keygen",
            "--out",
            tmp.path().join("long").to_str().unwrap(),
            "--cert-lifetime",
            "400d",
        ],
        &[],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("365d"), "{}", stderr(&out));
}

/// `doctor --check check.signing-key --json` on `config`: exit code and the finding.
fn doctor_signing_key(config: &Path) -> (Option<i32>, serde_json::Value) {
    let out = run(
        &[
            "--config",
            config.to_str().unwrap(),
            "doctor",
            "--check",
            "check.signing-key",
            "--json",
        ],
        &[],
    );
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {}", stderr(&out)));
    (out.status.code(), findings[0].clone())
}

/// As docs/operations.md says, `doctor` warns (exit 0) within 14 days of the signing certificate's
/// end (`--cert-lifetime 10d`), passes with 90 days, and warns when the CA's private key sits
/// beside the signing key (an older keygen's layout).
#[test]
fn doctor_warns_before_the_signing_certificate_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let generate = |lifetime: &str| {
        let keys = tmp.path().join(lifetime);
        let out = run(
            &[
                "keygen",
                "--out",
                keys.to_str().unwrap(),
                "--cert-lifetime",
                lifetime,
            ],
            &[],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let config = tmp.path().join(format!("{lifetime}.yaml"));
        std::fs::write(&config, valid(&keys, "http://127.0.0.1:9")).unwrap();
        (keys, config)
    };

    let (_, config) = generate("10d");
    let (code, finding) = doctor_signing_key(&config);
    assert_eq!(code, Some(0), "a warning is not a failure: {finding:#}");
    assert_eq!(finding["status"], "warn", "{finding:#}");
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("within 14 days"),
        "{finding:#}"
    );
    assert!(
        finding["fix"].as_str().unwrap().contains("keygen"),
        "{finding:#}"
    );

    let (keys, config) = generate("2160h");
    let (code, finding) = doctor_signing_key(&config);
    assert_eq!(
        (code, finding["status"].as_str()),
        (Some(0), Some("pass")),
        "{finding:#}"
    );

    // An older layout: ca.key beside signing.pem.
    std::fs::rename(keys.join("ca/ca.key"), keys.join("ca.key")).unwrap();
    let (code, finding) = doctor_signing_key(&config);
    assert_eq!(
        (code, finding["status"].as_str()),
        (Some(0), Some("warn")),
        "{finding:#}"
    );
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("CA's private key"),
        "{finding:#}"
    );
}

/// One request the fake registry received: path, and whether it carried `Authorization`.
type Seen = Arc<Mutex<Vec<(String, bool)>>>;

/// A tiny registry on 127.0.0.1: `/v2/` without credentials answers 401 with a Bearer
/// challenge naming `realm(port)`, any other request 200 with a token; it records every
/// request. Serves until the test process ends.
fn fake_registry(realm: impl Fn(u16) -> String) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let challenge = format!("Bearer realm=\"{}\",service=\"fake.test\"", realm(port));
    let seen: Seen = Arc::default();
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut authorized = false;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                    break;
                }
                authorized |= header.to_ascii_lowercase().starts_with("authorization:");
            }
            record.lock().unwrap().push((path.clone(), authorized));
            let response = if path == "/v2/" && !authorized {
                format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            } else {
                let body = r#"{"token":"e30.e30.sig","expires_in":60}"#;
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (format!("http://127.0.0.1:{port}"), seen)
}

/// `registry-token test URL --optok FILE [EXTRA]` with no docker config: exit code and stdout.
fn probe(url: &str, optok: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let empty = tempfile::tempdir().unwrap();
    let mut args = vec!["test", url, "--optok", optok.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run(&args, &[("DOCKER_CONFIG", empty.path().to_str().unwrap())]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Security case 79 and `test` in docs/cli.md: a challenge naming a realm on another host
/// gets no credentials (the command says why, exit 1) unless `--allow-realm-host` names that
/// host; a plain-http realm off loopback gets none even then.
#[test]
fn test_sends_credentials_only_to_a_safe_realm() {
    let dir = tempfile::tempdir().unwrap();
    let optok = dir.path().join("optok");
    std::fs::write(&optok, "header.claims.signature-of-the-optok").unwrap();
    let authorized = |seen: &Seen| seen.lock().unwrap().iter().filter(|(_, a)| *a).count();

    // Another host (loopback, so only the host rule applies).
    let (url, seen) = fake_registry(|port| format!("http://localhost:{port}/token"));
    let (code, text) = probe(&url, &optok, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("not sent") && text.contains("is not the registry's host `127.0.0.1`"),
        "{text}"
    );
    assert!(text.contains("--allow-realm-host localhost"), "{text}");
    assert_eq!(
        authorized(&seen),
        0,
        "credentials reached the realm: {seen:?}"
    );
    assert!(!text.contains("signature-of-the-optok"), "{text}");

    // Named with --allow-realm-host, the same realm gets them (the recorder works).
    let (code, text) = probe(&url, &optok, &["--allow-realm-host", "localhost"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|(path, a)| *a && path.starts_with("/token")),
        "{seen:?}"
    );

    // Plain http to a host that is not loopback: refused before any connection, even allowed.
    let (url, seen) = fake_registry(|port| format!("http://realm.invalid:{port}/token"));
    let (code, text) = probe(&url, &optok, &["--allow-realm-host", "realm.invalid"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("not sent") && text.contains("in clear"),
        "{text}"
    );
    assert_eq!(authorized(&seen), 0, "{seen:?}");
}

/// Item 11: on a healthy sidecar, `test URL` with no credentials and no scope checks the
/// challenge and the realm's anonymous answer, and passes.
#[test]
fn test_without_credentials_or_scope_passes_on_a_healthy_sidecar() {
    let stack = Stack::start();
    let empty = tempfile::tempdir().unwrap();
    let out = run(
        &["test", &stack.sidecar.url()],
        &[("DOCKER_CONFIG", empty.path().to_str().unwrap())],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    for line in [
        "ok    ping",
        "missing_credentials",
        "anonymous login refused",
        "ok    the flow works",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

/// Item 11: when the registry refuses the sidecar's tokens (its rootcertbundle is another CA),
/// `test` says the registry refused a token the realm just issued and points at
/// `doctor --check check.upstream-trusts-tokens`; the sidecar logs the upstream 401 on an
/// allowed request as a WARN naming that cause.
#[test]
fn test_names_a_registry_that_refuses_the_sidecars_tokens() {
    let authority = Authority::start();
    let keys = Keys::generate();
    let other = Keys::generate();
    let port = free_port();
    let registry = Registry::start(Some(TokenAuth {
        realm: format!("http://127.0.0.1:{port}/token"),
        service: SERVICE.into(),
        issuer: TOKEN_ISSUER.into(),
        rootcertbundle: other.ca_crt(),
    }));
    let mut config = SidecarConfig::new(&registry.url(), &authority.issuer(), keys.path());
    config.listen_port = Some(port);
    let sidecar = Sidecar::start(config);

    let key = DpopKey::new();
    let optok = authority.optok("alice", "enterprise", "LIC-1", Some(&key.thumbprint()));
    let dir = tempfile::tempdir().unwrap();
    let (optok_file, key_file) = (dir.path().join("optok"), dir.path().join("dpop.pem"));
    std::fs::write(&optok_file, &optok).unwrap();
    std::fs::write(&key_file, key.pem()).unwrap();
    let (code, text) = probe(
        &sidecar.url(),
        &optok_file,
        &["--dpop-key", key_file.to_str().unwrap()],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("ok    token"), "{text}");
    assert!(
        text.contains("FAIL  retry") && text.contains("the registry refuses the realm's tokens"),
        "{text}"
    );
    assert!(
        text.contains("doctor --check check.upstream-trusts-tokens"),
        "{text}"
    );

    let warning = poll(
        Duration::from_secs(10),
        "the sidecar's WARN about the upstream 401",
        || {
            sidecar
                .log()
                .lines()
                .find(|l| l.contains("WARN") && l.contains("upstream answered 401"))
                .map(str::to_string)
        },
    );
    assert!(
        warning.contains("does not accept the sidecar's tokens")
            && warning.contains("check.upstream-trusts-tokens"),
        "{warning}"
    );
    sidecar.assert_log_free_of(&[&optok]);
}

/// Item 12: `check-config` and `serve` list every problem of a file in one run — here two
/// unknown keys and one invalid value — each at `file:line:column` with its YAML path.
#[test]
fn every_problem_of_a_file_is_listed_at_its_line() {
    let keys = Keys::generate();
    let text = valid(keys.path(), "http://127.0.0.1:9")
        .replace(
            "  senderConstraint: dpop\n",
            "  senderConstraint: dpop\n  requried_audience: x\n",
        )
        .replace(
            "defaultPlan: public\n",
            "defaultPlan: public\ndefaultPlann: x\n",
        )
        .replace(
            "  url: http://127.0.0.1:1\n",
            "  url: http://127.0.0.1:1\n  connectTimeout: soon\n",
        );
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, &text).unwrap();
    let file = path.to_str().unwrap();
    for (command, code) in [("check-config", 1), ("serve", 2)] {
        let out = run(&["--config", file, command], &[]);
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{command}: {said}");
        for (at, what) in [
            (
                format!(
                    "{file}:{}:3: authority.requried_audience:",
                    line_of("requried_audience")
                ),
                "unknown field",
            ),
            (
                format!("{file}:{}:1: defaultPlann:", line_of("defaultPlann")),
                "unknown field",
            ),
            (
                format!(
                    "{file}:{}:3: upstream.connectTimeout:",
                    line_of("connectTimeout")
                ),
                "`soon` is not a duration",
            ),
        ] {
            assert!(
                said.lines().any(|l| l.starts_with(&at) && l.contains(what)),
                "{command}: no `{at} ... {what}` in:\n{said}"
            );
        }
    }
}

/// Item 12: a problem caused by an environment override is blamed on the variable, not on
/// the file, which is correct.
#[test]
fn a_bad_override_names_the_variable() {
    let keys = Keys::generate();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, valid(keys.path(), "http://127.0.0.1:9")).unwrap();
    let file = path.to_str().unwrap();
    for (command, code) in [("check-config", 1), ("serve", 2)] {
        let out = run(
            &["--config", file, command],
            &[
                ("REGISTRY_TOKEN_SIGNING__LIFETIME", "soon"),
                ("REGISTRY_TOKEN_PLANS__7__NAME", "x"),
            ],
        );
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{said}");
        assert!(
            said.lines().any(
                |l| l.starts_with("REGISTRY_TOKEN_SIGNING__LIFETIME: signing.lifetime: `soon`")
            ),
            "{said}"
        );
        assert!(
            said.lines()
                .any(|l| l.starts_with("REGISTRY_TOKEN_PLANS__7__NAME: ") && l.contains("index 7")),
            "{said}"
        );
        assert!(
            !said
                .lines()
                .any(|l| l.contains(file) && (l.contains("lifetime") || l.contains("index 7"))),
            "the file is blamed:\n{said}"
        );
    }
}

/// Item 12: a rejected hot reload logs where the problem is, as `file:line:column`, and the
/// previous configuration stays in force.
#[test]
fn a_rejected_reload_logs_file_line_and_column() {
    let stack = Stack::start();
    let sidecar = &stack.sidecar;
    let good = sidecar.render(sidecar.config());
    let bad = good.replace(
        "defaultPlan: public",
        "defaultPlan: public\ndefaultPlann: gold",
    );
    assert_ne!(good, bad, "the rendered config has defaultPlan");
    let line = bad
        .lines()
        .position(|l| l.starts_with("defaultPlann"))
        .unwrap()
        + 1;
    let before = sidecar.metric(
        "registry_token_config_reloads_total",
        &[("result", "error")],
    );
    sidecar.write(&bad);
    sidecar.wait_metric_above(
        "registry_token_config_reloads_total",
        &[("result", "error")],
        before,
    );
    let at = format!("{}:{line}:1", sidecar.config_path().display());
    let logged = poll(
        Duration::from_secs(10),
        "the reload error in the log",
        || {
            sidecar
                .log()
                .lines()
                .find(|l| l.contains("configuration rejected") && l.contains("defaultPlann"))
                .map(str::to_string)
        },
    );
    assert!(logged.contains(&at), "no `{at}` in: {logged}");
    assert_eq!(sidecar.generation(), 1.0, "the bad file took effect");
}
