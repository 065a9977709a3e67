//! The operators' tools end to end: `doctor` against a live stack (each check passing, then
//! failing for the reason it names), `test URL` against a live sidecar (OpTok + DPoP key, and
//! docker's credentials), a JSON log of a full flow that holds no token, proof or OpTok, and
//! the validation of the compose stack and the Prometheus alerts with Debian's own tools.
//!
//! Authority: in-test (common::authority): `doctor` is shown failing when the Authority goes down
//! and passing when it returns, on cue.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::sidecar::{BIN, SERVICE, TOKEN_ISSUER};
use common::*;
use serde_json::{json, Value};

/// `doctor --json [--check NAME]` on `config`: exit code and findings.
fn doctor(config: &Path, check: Option<&str>) -> (i32, Vec<Value>) {
    let mut args = vec!["--config", config.to_str().unwrap(), "doctor", "--json"];
    args.extend(check.map(|c| ["--check", c]).iter().flatten());
    let out = run(&args, &[]);
    let findings = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}):\n{}\n{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), findings)
}

/// The finding of one check.
fn finding<'a>(findings: &'a [Value], check: &str) -> &'a Value {
    findings
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} in {findings:#?}"))
}

/// Writes `config` for the stack's sidecar listeners into `dir`, returns its path.
fn variant(stack: &Stack, config: &SidecarConfig, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, stack.sidecar.render(config)).unwrap();
    path
}

/// On a healthy stack every check passes, in both output forms, and doctor exits 0.
#[test]
fn doctor_passes_on_a_healthy_stack() {
    let stack = Stack::start();
    let (code, findings) = doctor(stack.sidecar.config_path(), None);
    let names: Vec<&str> = findings
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "check.config",
            "check.signing-key",
            "check.authority",
            "check.upstream",
            "check.upstream-trusts-tokens",
            "check.plans",
            "check.state"
        ]
    );
    for f in &findings {
        assert_eq!(f["status"], "pass", "{f:#}");
    }
    assert_eq!(code, 0);
    assert!(finding(&findings, "check.authority")["message"]
        .as_str()
        .unwrap()
        .contains("1 usable key"));

    let out = run(
        &[
            "--config",
            stack.sidecar.config_path().to_str().unwrap(),
            "doctor",
        ],
        &[],
    );
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 7, "{text}");
    assert!(
        text.lines().all(|l| l.starts_with("pass  check.")),
        "{text}"
    );
    assert!(out.status.success());
}

/// Each broken layer fails (or warns) in its own check, with a message naming the cause and a
/// fix; any fail makes the exit code 1, an unknown check name is a usage error (2).
#[test]
fn doctor_names_what_is_broken() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let base = stack.sidecar.config().clone();
    let realm = stack.sidecar.realm();
    let other_keys = Keys::generate();
    let untrusting = Registry::start(Some(TokenAuth {
        realm: realm.clone(),
        service: SERVICE.into(),
        issuer: TOKEN_ISSUER.into(),
        rootcertbundle: other_keys.ca_crt(),
    }));
    let other_service = Registry::start(Some(TokenAuth {
        realm: realm.clone(),
        service: "elsewhere.test".into(),
        issuer: TOKEN_ISSUER.into(),
        rootcertbundle: stack.keys.ca_crt(),
    }));
    let other_issuer = Registry::start(Some(TokenAuth {
        realm: realm.clone(),
        service: SERVICE.into(),
        issuer: "someone-else".into(),
        rootcertbundle: stack.keys.ca_crt(),
    }));
    let open = Registry::start(None);
    let with_upstream = |url: String| SidecarConfig {
        upstream_url: url,
        ..base.clone()
    };

    // (case, config, check, status, words the message must hold, exit code)
    let cases: Vec<(&str, SidecarConfig, &str, &str, &str, i32)> = vec![
        (
            "upstream down",
            with_upstream(format!("http://127.0.0.1:{}", free_port())),
            "check.upstream",
            "fail",
            "Connection refused",
            1,
        ),
        (
            "upstream down, probe not run",
            with_upstream(format!("http://127.0.0.1:{}", free_port())),
            "check.upstream-trusts-tokens",
            "fail",
            "not run",
            1,
        ),
        (
            "other rootcertbundle",
            with_upstream(untrusting.url()),
            "check.upstream-trusts-tokens",
            "fail",
            "rootcertbundle",
            1,
        ),
        (
            "other rootcertbundle, upstream up",
            with_upstream(untrusting.url()),
            "check.upstream",
            "pass",
            "401",
            0,
        ),
        (
            "other service",
            with_upstream(other_service.url()),
            "check.upstream-trusts-tokens",
            "fail",
            "expects service `elsewhere.test`",
            1,
        ),
        (
            "other issuer",
            with_upstream(other_issuer.url()),
            "check.upstream-trusts-tokens",
            "fail",
            "auth.token.issuer is not `registry-token`",
            1,
        ),
        (
            "registry without auth",
            with_upstream(open.url()),
            "check.upstream-trusts-tokens",
            "warn",
            "sidecar is its only guard",
            0,
        ),
        (
            "bad defaultPlan",
            SidecarConfig {
                default_plan: "gold".into(),
                ..base.clone()
            },
            "check.plans",
            "fail",
            "defaultPlan: names no plan: `gold`",
            1,
        ),
        (
            "bad defaultPlan, config",
            SidecarConfig {
                default_plan: "gold".into(),
                ..base.clone()
            },
            "check.config",
            "fail",
            "defaultPlan",
            1,
        ),
        (
            "shadowed pattern",
            {
                let mut c = base.clone();
                c.plan_mut("enterprise")
                    .rules
                    .push(("acme/app".into(), vec!["pull".into()]));
                c
            },
            "check.plans",
            "warn",
            "is shadowed by",
            0,
        ),
        (
            "missing signing key",
            {
                let mut c = base.clone();
                c.keys_dir = dir.path().join("nowhere");
                c
            },
            "check.signing-key",
            "fail",
            "not run",
            1,
        ),
    ];
    for (i, (case, config, check, status, words, code)) in cases.iter().enumerate() {
        let path = variant(&stack, config, dir.path(), &format!("case{i}"));
        let (exit, findings) = doctor(&path, Some(check));
        let f = finding(&findings, check);
        assert_eq!(f["status"], *status, "{case}: {f:#}");
        assert!(
            f["message"].as_str().unwrap().contains(words),
            "{case}: {f:#}"
        );
        if *status != "pass" {
            assert!(
                !f["fix"].as_str().unwrap_or_default().is_empty(),
                "{case}: no fix in {f:#}"
            );
        }
        assert_eq!(exit, *code, "{case}");
    }

    stack.authority.set_mode(Mode::Down);
    let (exit, findings) = doctor(stack.sidecar.config_path(), Some("authority"));
    let f = finding(&findings, "check.authority");
    assert_eq!((f["status"].as_str(), exit), (Some("fail"), 1), "{f:#}");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{f:#}"
    );
    stack.authority.set_mode(Mode::Serve);

    let out = run(
        &[
            "--config",
            stack.sidecar.config_path().to_str().unwrap(),
            "doctor",
            "--check",
            "check.nope",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
}

/// Writes `text` to `dir/name` and returns the path as a string.
fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// `test URL --optok --dpop-key` walks the flow and exits 0; a scope the plan does not grant
/// fails with the realm's reason; `--verbose` shows headers with every credential redacted.
#[test]
fn test_command_explains_the_flow() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let (key, optok) = stack.client("alice", "enterprise", "LIC-0042");
    let optok_file = write(dir.path(), "optok", &optok);
    let key_file = write(dir.path(), "dpop.pem", key.pem());
    let url = stack.sidecar.url();
    let base = [
        "test",
        url.as_str(),
        "--optok",
        optok_file.as_str(),
        "--dpop-key",
        key_file.as_str(),
    ];

    let out = run(
        &[
            &base[..],
            &["--scope", "repository:acme/app:pull,push", "--verbose"],
        ]
        .concat(),
        &[],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    for line in [
        "ok    ping",
        "ok    token",
        "grants repository:acme/app:pull,push",
        "ok    retry",
        "ok    scope repository:acme/app:pull,push",
        "NAME_UNKNOWN",
        "ok    the flow works",
        "> Authorization: DPoP <redacted",
        "> DPoP: <redacted",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    let signature = optok.rsplit('.').next().unwrap();
    assert!(!text.contains(signature), "the OpTok is printed");

    let (key, optok) = stack.client("bob", "public", "LIC-0043");
    let out = run(
        &[
            "test",
            &url,
            "--optok",
            &write(dir.path(), "optok2", &optok),
            "--dpop-key",
            &write(dir.path(), "dpop2.pem", key.pem()),
            "--scope",
            "repository:acme/app:push",
        ],
        &[],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL  token") && text.contains("reason plan_denied"),
        "{text}"
    );

    let out = run(&["test", &url, "--dpop-key", &key_file], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--dpop-key without --optok is a usage error"
    );
}

/// Without `--optok`, `test` uses docker's credentials: `auths` under `DOCKER_CONFIG` (the
/// OpTok as the Basic password, accepted with `senderConstraint: none`), then a credential helper.
#[test]
fn test_command_uses_docker_credentials() {
    let stack = Stack::start_with(|c| c.sender_constraint = "none".into());
    let optok = stack
        .authority
        .optok("carol", "enterprise", "LIC-0044", None);
    let docker = tempfile::tempdir().unwrap();
    let host = stack.sidecar.addr();
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("carol:{optok}"),
    );
    write(
        docker.path(),
        "config.json",
        json!({"auths": {format!("https://{host}"): {"auth": auth}}}).to_string(),
    );
    let config_dir = docker.path().to_str().unwrap();
    let url = stack.sidecar.url();

    let out = run(
        &["test", &url, "--scope", "repository:acme/app:pull"],
        &[("DOCKER_CONFIG", config_dir)],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "Basic auth for `carol` from {config_dir}/config.json auths[\"https://{host}\"]"
        )),
        "{text}"
    );

    // A credential helper named in credHelpers wins over auths.
    let helper = format!("#!/bin/sh\nread host\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"dave\",\"Secret\":\"{optok}\"}}' \"$host\"\n");
    let bin = tempfile::tempdir().unwrap();
    let script = write(bin.path(), "docker-credential-e2e", helper);
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    write(
        docker.path(),
        "config.json",
        json!({"auths": {}, "credHelpers": {host.clone(): "e2e"}}).to_string(),
    );
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = run(
        &["test", &url],
        &[("DOCKER_CONFIG", config_dir), ("PATH", &path)],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Basic auth for `dave` from docker-credential-e2e"),
        "{text}"
    );
}

/// After a `docker login` that got a refresh token, docker's `auths` entry holds an
/// `identitytoken` and a user name with no password; `test` redeems the identitytoken with the
/// refresh grant, as docker does, instead of sending Basic auth with an empty password. A
/// credential helper's `<token>` user name means the same.
#[test]
fn test_command_redeems_docker_identitytoken() {
    let stack = Stack::start_with(|c| {
        c.sender_constraint = "none".into();
        c.patch = json!({"refreshTokens": {"enabled": true}});
    });
    let optok = stack
        .authority
        .optok("erin", "enterprise", "LIC-0045", None);
    // What `docker login` asks for: a login answer with a refresh token beside the access token.
    let login: Value = client()
        .get(stack.sidecar.realm())
        .query(&[
            ("service", SERVICE),
            ("offline_token", "true"),
            ("client_id", "docker"),
        ])
        .basic_auth("erin", Some(&optok))
        .send()
        .expect("GET /token")
        .json()
        .expect("a JSON answer");
    let identity = login["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("a refresh_token: {login}"));
    let docker = tempfile::tempdir().unwrap();
    let host = stack.sidecar.addr();
    let user_only = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "erin:");
    write(
        docker.path(),
        "config.json",
        json!({"auths": {host.clone(): {"auth": user_only, "identitytoken": identity}}})
            .to_string(),
    );
    let config_dir = docker.path().to_str().unwrap();
    let url = stack.sidecar.url();

    let out = run(
        &[
            "test",
            &url,
            "--scope",
            "repository:acme/app:pull",
            "--verbose",
        ],
        &[("DOCKER_CONFIG", config_dir)],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    for line in [
        format!("the identitytoken from {config_dir}/config.json auths[\"{host}\"].identitytoken (refresh grant)"),
        "ok    token: POST".to_string(),
        "grants repository:acme/app:pull".to_string(),
        "> form refresh_token=<redacted".to_string(),
        "ok    the flow works".to_string(),
    ] {
        assert!(text.contains(&line), "missing `{line}` in:\n{text}");
    }
    assert!(!text.contains(identity), "the identitytoken is printed");
    assert_eq!(
        stack
            .sidecar
            .metric("registry_token_refresh_total", &[("result", "ok")]),
        1.0,
        "the realm redeemed it"
    );

    // A credential helper returns an identity token as user `<token>`.
    let helper = format!("#!/bin/sh\nread host\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"<token>\",\"Secret\":\"{identity}\"}}' \"$host\"\n");
    let bin = tempfile::tempdir().unwrap();
    let script = write(bin.path(), "docker-credential-e2e", helper);
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    write(
        docker.path(),
        "config.json",
        json!({"credHelpers": {host.clone(): "e2e"}}).to_string(),
    );
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = run(
        &["test", &url, "--scope", "repository:acme/app:pull"],
        &[("DOCKER_CONFIG", config_dir), ("PATH", &path)],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("the identitytoken from docker-credential-e2e"),
        "{text}"
    );
}

/// `registry-token --log-format json serve`, started here because the log format is a flag.
struct JsonSidecar {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl JsonSidecar {
    fn start(config: &SidecarConfig, port: u16) -> JsonSidecar {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("registry-token.yaml");
        std::fs::write(&config_path, config.to_yaml(port, free_port())).unwrap();
        let log = dir.path().join("registry-token.log");
        let file = File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args([
                "--log-format",
                "json",
                "--config",
                config_path.to_str().unwrap(),
                "serve",
            ])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("run registry-token serve");
        let sidecar = JsonSidecar {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let http = client();
        poll(START_DEADLINE, "registry-token /readyz", || {
            (http
                .get(format!("{}/readyz", sidecar.url))
                .send()
                .ok()?
                .status()
                == 200)
                .then_some(())
        });
        sidecar
    }
}

impl Drop for JsonSidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A full flow (tokens over DPoP, a push and a pull, refusals, a replay, a forged token) logged
/// as JSON: one event per decision with reason, plan, sub, hashed license, scopes and route,
/// and not one token, proof or OpTok, nor the raw license.
#[test]
fn json_logs_answer_the_runbook_and_hold_no_secret() {
    let authority = Authority::start();
    let keys = Keys::generate();
    let port = free_port();
    let realm = format!("http://127.0.0.1:{port}/token");
    let registry = Registry::start(Some(TokenAuth {
        realm: realm.clone(),
        service: SERVICE.into(),
        issuer: TOKEN_ISSUER.into(),
        rootcertbundle: keys.ca_crt(),
    }));
    let sidecar = JsonSidecar::start(
        &SidecarConfig::new(&registry.url(), &authority.issuer(), keys.path()),
        port,
    );
    let http = client();
    let mut secrets: Vec<String> = Vec::new();
    let token = |optok: &str, key: &DpopKey, scope: &str, secrets: &mut Vec<String>| {
        let proof = key.proof("GET", &realm, optok);
        secrets.extend([optok.to_string(), proof.clone()]);
        let response = http
            .get(&realm)
            .query(&[("service", SERVICE), ("scope", scope)])
            .header("Authorization", format!("DPoP {optok}"))
            .header("DPoP", &proof)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().unwrap_or(Value::Null);
        if let Some(t) = body["token"].as_str() {
            secrets.push(t.to_string());
        }
        (status, body, proof)
    };

    let key = DpopKey::new();
    let optok = authority.optok("alice", "enterprise", "LIC-0042", Some(&key.thumbprint()));
    let (status, body, proof) = token(&optok, &key, "repository:acme/app:pull,push", &mut secrets);
    assert_eq!(status, 200, "{body}");
    let issued = body["token"].as_str().unwrap().to_string();
    let src = tempfile::tempdir().unwrap();
    oci_layout(src.path(), "v1", &[4096]);
    let dest = format!("docker://127.0.0.1:{port}/acme/app:v1");
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-registry-token",
        &issued,
        &format!("oci:{}:v1", src.path().display()),
        &dest,
    ]);
    skopeo_ok(&[
        "inspect",
        "--tls-verify=false",
        "--registry-token",
        &issued,
        &dest,
    ]);

    // Replay of the first proof, a plan refusal, a revoked license, no token, a forged token.
    let replay = http
        .get(&realm)
        .query(&[("service", SERVICE), ("scope", "repository:acme/app:pull")])
        .header("Authorization", format!("DPoP {optok}"))
        .header("DPoP", &proof)
        .send()
        .unwrap();
    assert_eq!(replay.status(), 401);
    let public_key = DpopKey::new();
    let public = authority.optok("bob", "public", "LIC-0043", Some(&public_key.thumbprint()));
    assert_eq!(
        token(
            &public,
            &public_key,
            "repository:acme/app:push",
            &mut secrets
        )
        .0,
        403
    );
    let revoked_key = DpopKey::new();
    let revoked = authority.optok(
        "eve",
        "enterprise",
        "LIC-REVOKED",
        Some(&revoked_key.thumbprint()),
    );
    assert_eq!(
        token(
            &revoked,
            &revoked_key,
            "repository:acme/app:pull",
            &mut secrets
        )
        .0,
        403
    );
    assert_eq!(
        http.get(format!("{}/v2/acme/app/tags/list", sidecar.url))
            .send()
            .unwrap()
            .status(),
        401
    );
    let forged = format!(
        "{}.{}",
        issued.rsplit_once('.').unwrap().0,
        "AAAA".repeat(20)
    );
    secrets.push(forged.clone());
    assert_eq!(
        http.get(format!("{}/v2/acme/app/tags/list", sidecar.url))
            .bearer_auth(&forged)
            .send()
            .unwrap()
            .status(),
        401
    );

    let log = std::fs::read_to_string(&sidecar.log).unwrap();
    for secret in &secrets {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(
            !log.contains(secret.as_str()) && !log.contains(signature),
            "a token, proof or OpTok appears in the log"
        );
    }
    assert!(
        !log.contains("LIC-0042") && !log.contains("LIC-0043"),
        "a raw license appears in the log"
    );
    let events: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let event = |decision: &str, field: &str, value: &str| {
        events
            .iter()
            .find(|e| e["decision"] == decision && e[field] == value)
            .unwrap_or_else(|| panic!("no {decision} event with {field}={value} in:\n{log}"))
    };
    let issue = event("issued", "sub", "alice");
    assert_eq!(
        (issue["plan"].as_str(), issue["route"].as_str()),
        (Some("enterprise"), Some("token")),
        "{issue}"
    );
    assert!(
        issue["license"].as_str().is_some_and(|l| !l.is_empty()),
        "{issue}"
    );
    for field in ["requested", "granted"] {
        assert!(
            issue[field]
                .as_str()
                .is_some_and(|s| s.contains("acme/app")),
            "{field} in {issue}"
        );
    }
    event("rejected", "reason", "dpop_replay");
    assert_eq!(event("rejected", "reason", "plan_denied")["sub"], "bob");
    event("rejected", "reason", "license_revoked");
    event("denied", "route", "v2");
    assert!(
        events
            .iter()
            .any(|e| e["decision"] == "allowed" && e["sub"] == "alice" && e["route"].is_string()),
        "no allowed event for alice:\n{log}"
    );
}

/// Where a tool lives, or a failure that says which Debian package provides it.
fn tool(name: &str, package: &str) -> String {
    ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|dir| format!("{dir}/{name}"))
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is missing: apt-get install -y {package} (.ci/run installs it)")
        })
}

fn succeeds(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run the tool");
    assert!(
        out.status.success(),
        "{program} {}:\n{}\n{}",
        args.join(" "),
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// docker-compose.yml is valid for Debian's docker-compose, and the registry publishes no port.
#[test]
fn compose_file_is_valid() {
    succeeds(
        &tool("docker-compose", "docker-compose"),
        &["-f", "docker-compose.yml", "config", "-q"],
    );
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml"))
            .unwrap();
    let compose: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert!(
        compose["services"]["registry"].get("ports").is_none(),
        "the registry must be reachable only through the sidecar"
    );
    assert_eq!(compose["networks"]["backend"]["internal"], true);

    // Security case 77 (docs/security.md): the CA's private key (volume `ca`) reaches no running
    // service; the registry mounts only the `trust` volume, which holds ca.crt.
    let mounts = |service: &str| -> Vec<String> {
        compose["services"][service]["volumes"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|m| m.as_str())
                    .map(|m| m.split(':').next().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    for service in ["registry", "registry-token", "prometheus"] {
        assert!(
            !mounts(service).contains(&"ca".to_string()),
            "{service} mounts the CA volume"
        );
    }
    assert!(mounts("keygen").contains(&"ca".to_string()));
    assert!(
        !mounts("registry").contains(&"keys".to_string()),
        "the registry mounts the signing key's volume"
    );
    assert!(mounts("registry").contains(&"trust".to_string()));
    let registry_config = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/compose/registry.yml"),
    )
    .unwrap();
    assert!(
        registry_config.contains("rootcertbundle: /etc/registry-token/trust/ca.crt"),
        "{registry_config}"
    );
}

/// The alert rules load in promtool, fire in its unit tests, and Prometheus' config is valid.
#[test]
fn alert_rules_are_valid() {
    let promtool = tool("promtool", "prometheus");
    succeeds(
        &promtool,
        &["check", "rules", "config/prometheus/alerts.yml"],
    );
    succeeds(
        &promtool,
        &["check", "config", "config/prometheus/prometheus.yml"],
    );
    succeeds(
        &promtool,
        &["test", "rules", "config/prometheus/alerts_test.yml"],
    );
}
