//! Revocation that reaches every replica at once (docs/revocation.md; docs/security.md, case 94):
//! two real `registry-token` processes sharing one real `redis-server`, a real `docker-registry`
//! behind them, the in-test Authority minting OpToks for any license, and the `revoke`, `unrevoke`
//! and `revoked` commands run as an operator would.
//!
//! ```text
//! registry-token revoke ──▶ redis-server ──▶ replica A ─┐
//!                              (set + message) replica B ─┴─▶ docker-registry (no auth)
//! ```
//!
//! A revoked license is refused at both replicas within 1 s of the command's return, at every
//! way in: `/token`, a registry token issued before the revocation, a refresh token. The
//! revocation holds while Redis is down and after it comes back empty; a forged message (wrong
//! prefix, malformed body, or even a well-formed one) changes nothing and the ignored ones are
//! counted; requests in flight during a revocation never leave a replica accepting after the
//! second. Without Redis the same commands edit the revocation file, which the sidecar applies
//! like its configuration.
//!
//! Sender constraint `none` (plain bearer OpToks): revocation is checked the same after any
//! sender constraint, and this keeps the requests to what revocation is about.

mod common;

use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::sidecar::{RELOAD_DEADLINE, SERVICE};
use common::*;
use serde_json::{json, Value};

/// The contract: a revocation is in force at every replica within this of the command's return.
const REVOCATION_DEADLINE: Duration = Duration::from_secs(1);
/// The OS user the commands run as, for the audit line.
const OPERATOR: &str = "alice-ops";

/// A license's ways in, obtained before any revocation.
struct Caller {
    license: String,
    optok: String,
    /// A registry token issued by replica A (valid at B too: same keys, same service).
    token: String,
    refresh: String,
}

/// One sidecar or two replicas of a deployment, the registry and the Authority they share.
struct Deployment {
    replicas: Vec<Sidecar>,
    authority: Authority,
    _registry: Registry,
    _keys: Keys,
}

impl Deployment {
    /// `count` sidecars; on Redis at `redis_url` under the prefix `e2e:` when given.
    fn start(count: usize, redis_url: Option<&str>) -> Deployment {
        let authority = Authority::start();
        let keys = Keys::generate();
        let registry = Registry::start(None);
        let mut config = SidecarConfig::new(&registry.url(), &authority.issuer(), keys.path());
        config.sender_constraint = "none".into();
        config.patch = json!({"refreshTokens": {"enabled": true}});
        if let Some(url) = redis_url {
            config.patch["state"] =
                json!({"redis": {"url": url, "keyPrefix": "e2e:", "timeout": "250ms"}});
        }
        let replicas = (0..count).map(|_| Sidecar::start(config.clone())).collect();
        Deployment {
            replicas,
            authority,
            _registry: registry,
            _keys: keys,
        }
    }

    fn a(&self) -> &Sidecar {
        &self.replicas[0]
    }

    /// A caller of `license` on the enterprise plan, with a registry token and a refresh token
    /// that both replicas accept.
    fn caller(&self, license: &str) -> Caller {
        let optok = self
            .authority
            .optok(&format!("sub-{license}"), "enterprise", license, None);
        let (status, body) = realm(self.a(), &optok, true);
        assert_eq!(status, 200, "{body}");
        let caller = Caller {
            license: license.into(),
            optok,
            token: body["token"].as_str().expect("token").into(),
            refresh: body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .into(),
        };
        for sidecar in &self.replicas {
            assert_eq!(ways_in(sidecar, &caller), [true, true, true], "{license}");
        }
        caller
    }

    /// Runs `registry-token --config <A's config> ARGS` as [`OPERATOR`].
    fn cli(&self, args: &[&str]) -> Output {
        let config = self.a().config_path().to_str().unwrap().to_string();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        run(&all, &[("USER", OPERATOR), ("RUST_LOG", "info")])
    }

    /// `cli` that must succeed; the moment it returned.
    fn cli_ok(&self, args: &[&str]) -> (Instant, String) {
        let out = self.cli(args);
        let returned = Instant::now();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        (returned, stdout(&out))
    }

    /// `revoke` `caller`'s license for `reason`, then waits until every replica refuses it
    /// every way, failing 1 s after the command returned; the command's output.
    fn revoke(&self, caller: &Caller, reason: &str) -> String {
        let (returned, out) = self.cli_ok(&["revoke", &caller.license, "--reason", reason]);
        settle_all(
            self,
            caller,
            false,
            returned + REVOCATION_DEADLINE,
            "revoke",
        );
        out
    }
}

/// One HTTP client for every probe here (building one per request costs more than the request).
fn http() -> &'static reqwest::blocking::Client {
    static HTTP: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    HTTP.get_or_init(client)
}

/// `GET /v2/` at `sidecar` with `token`: the status.
fn v2(sidecar: &Sidecar, token: &str) -> u16 {
    http()
        .get(format!("{}/v2/", sidecar.url()))
        .bearer_auth(token)
        .send()
        .expect("GET /v2/")
        .status()
        .as_u16()
}

/// `GET /token` for `repository:acme/app:pull` with the OpTok as bearer (and a refresh token
/// asked for with `offline`): status and body.
fn realm(sidecar: &Sidecar, optok: &str, offline: bool) -> (u16, Value) {
    let mut query = vec![("service", SERVICE), ("scope", "repository:acme/app:pull")];
    if offline {
        query.extend([("offline_token", "true"), ("client_id", "docker")]);
    }
    let response = http()
        .get(sidecar.realm())
        .query(&query)
        .bearer_auth(optok)
        .send()
        .expect("GET /token");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// The refresh grant: status and body.
fn redeem(sidecar: &Sidecar, refresh: &str) -> (u16, Value) {
    let response = http()
        .post(sidecar.realm())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("service", SERVICE),
            ("scope", "repository:acme/app:pull"),
            ("client_id", "docker"),
        ])
        .send()
        .expect("POST /token");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// Whether each way in is accepted: `[/token, the issued registry token on /v2/, refresh]`.
/// A refusal must be the revocation's (anything else fails the test).
fn ways_in(sidecar: &Sidecar, caller: &Caller) -> [bool; 3] {
    let (status, body) = realm(sidecar, &caller.optok, false);
    let issued = match (status, body["reason"].as_str()) {
        (200, _) => true,
        (403, Some("license_revoked")) => false,
        other => panic!("/token for {}: {other:?} {body}", caller.license),
    };
    let proxied = match v2(sidecar, &caller.token) {
        200 => true,
        401 => false,
        other => panic!("/v2/ for {}: {other}", caller.license),
    };
    let (status, body) = redeem(sidecar, &caller.refresh);
    let refreshed = match (status, body["reason"].as_str()) {
        (200, _) => true,
        (400, Some("license_revoked")) => false,
        other => panic!("refresh for {}: {other:?} {body}", caller.license),
    };
    [issued, proxied, refreshed]
}

/// `settle` at every replica at once (one thread each).
fn settle_all(d: &Deployment, caller: &Caller, accepted: bool, deadline: Instant, what: &str) {
    std::thread::scope(|scope| {
        for sidecar in &d.replicas {
            scope.spawn(move || settle(sidecar, caller, accepted, deadline, what));
        }
    });
}

/// Polls until `caller`'s three ways in are all `accepted` (or all refused) at `sidecar`,
/// failing once `deadline` has passed.
fn settle(sidecar: &Sidecar, caller: &Caller, accepted: bool, deadline: Instant, what: &str) {
    loop {
        let now = ways_in(sidecar, caller);
        if now == [accepted; 3] {
            let spare = deadline.saturating_duration_since(Instant::now());
            eprintln!(
                "{what}: {} settled at {} with {spare:?} to spare",
                caller.license,
                sidecar.url()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} still {now:?} (accepted?) past the deadline\n{}",
            caller.license,
            sidecar.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20)); // back-off between probes
    }
}

/// docs/revocation.md and security case 94: `revoke` at one place → both replicas refuse `/token`,
/// an already issued registry token and a refresh token within 1 s of the command's return, another
/// license is untouched, and the audit line names the operator and the reason; with Redis
/// killed the revocation still holds and the admin `/readyz` says the set is kept (the main
/// one names only `state`); Redis back without its data → still held; `unrevoke` → both
/// accept again within 1 s.
#[test]
fn revoke_reaches_both_replicas_within_a_second_and_outlives_redis() {
    let mut redis = RedisServer::start();
    let d = Deployment::start(2, Some(&redis.url()));
    let (revoked, other) = (d.caller("LIC-A"), d.caller("LIC-B"));

    let out = d.revoke(&revoked, "chargeback 4711");
    assert!(
        out.contains("revoked LIC-A by alice-ops, reason: chargeback 4711"),
        "{out}"
    );
    for sidecar in &d.replicas {
        assert_eq!(ways_in(sidecar, &other), [true; 3], "another license");
        poll(
            RELOAD_DEADLINE,
            "the replica's audit line naming who and why",
            || {
                let log = sidecar.log();
                (log.contains("license revoked")
                    && log.contains("alice-ops")
                    && log.contains("chargeback 4711"))
                .then_some(())
            },
        );
    }

    let listed = d.cli_ok(&["revoked", "--json"]).1;
    let listed: Value = serde_json::from_str(&listed).expect("revoked --json");
    let rows: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["license"].as_str().unwrap(),
                r["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("LIC-A", "redis"), ("LIC-REVOKED", "config")]);
    assert!(listed[0]["note"]
        .as_str()
        .unwrap()
        .contains("by alice-ops: chargeback 4711"));

    redis.kill();
    for sidecar in &d.replicas {
        let detail = poll(
            RELOAD_DEADLINE,
            "admin /readyz to report the kept set",
            || {
                let state = sidecar.admin_check("state");
                let detail = state["detail"].as_str().unwrap_or_default().to_string();
                detail
                    .contains("the last set read stays in force")
                    .then_some(detail)
            },
        );
        assert!(detail.contains("1 revoked license(s)"), "{detail}");
        assert_eq!(ways_in(sidecar, &revoked), [false; 3], "Redis down");
        // Readiness answers are cached for 2 s: poll until the main one sees Redis gone.
        let public = poll(RELOAD_DEADLINE, "the main /readyz to answer 503", || {
            let response = http()
                .get(format!("{}/readyz", sidecar.url()))
                .send()
                .ok()?;
            (response.status() == 503).then(|| response.json::<Value>().unwrap())
        });
        assert_eq!(public, json!({"ready": false, "failing": ["state"]}));
    }
    // The command itself fails plainly while Redis is away.
    let out = d.cli(&["revoke", "LIC-B"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    redis.restart(); // empty: no persistence
    for sidecar in &d.replicas {
        poll(RELOAD_DEADLINE, "admin /readyz to see Redis back", || {
            let detail = sidecar.admin_check("state")["detail"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            detail.contains("gone from Redis").then_some(())
        });
        assert_eq!(ways_in(sidecar, &revoked), [false; 3], "Redis back, empty");
    }

    let (returned, out) = d.cli_ok(&["unrevoke", "LIC-A"]);
    assert!(out.contains("unrevoked LIC-A by alice-ops"), "{out}");
    settle_all(
        &d,
        &revoked,
        true,
        returned + REVOCATION_DEADLINE,
        "unrevoke",
    );
}

/// Security case 94: messages on the revocation channel that name another prefix or are malformed
/// are ignored and counted at every replica; even a well-formed one of this deployment changes
/// nothing by itself (the set in Redis is the truth): a revoked license stays refused, another
/// stays accepted. And the other way round, a change in Redis whose message was lost reaches
/// both replicas within the second all the same.
#[test]
fn forged_revocation_messages_change_nothing_and_are_counted() {
    let redis = RedisServer::start();
    let d = Deployment::start(2, Some(&redis.url()));
    let (revoked, other) = (d.caller("LIC-A"), d.caller("LIC-B"));
    d.revoke(&revoked, "test");
    let ignored = |s: &Sidecar| {
        s.metric(
            "registry_token_revocation_messages_total",
            &[("result", "ignored")],
        )
    };
    let accepted = |s: &Sidecar| {
        s.metric(
            "registry_token_revocation_messages_total",
            &[("result", "accepted")],
        )
    };
    // Both replicas heard the command's own message: both are subscribed.
    for sidecar in &d.replicas {
        sidecar.wait_metric_above(
            "registry_token_revocation_messages_total",
            &[("result", "accepted")],
            0.0,
        );
    }
    let before: Vec<(f64, f64)> = d
        .replicas
        .iter()
        .map(|s| (ignored(s), accepted(s)))
        .collect();

    let forged = [
        r#"'{"prefix":"other:","change":"unrevoke","license":"LIC-A"}'"#,
        r#"'{"prefix":"other:","change":"revoke","license":"LIC-B"}'"#,
        "'unrevoke LIC-A'",
        r#"'{"prefix":"e2e:","change":"unrevoke"}'"#,
        r#"'{"prefix":"e2e:","change":"revoke","license":"LIC B"}'"#,
    ];
    for body in forged {
        let answer = redis.command(&format!("PUBLISH e2e:revocations {body}"));
        assert_eq!(
            answer.as_deref(),
            Some(":2"),
            "both replicas subscribed: {body}"
        );
    }
    for (sidecar, (ignored_before, _)) in d.replicas.iter().zip(&before) {
        let now = poll(RELOAD_DEADLINE, "the forged messages to be counted", || {
            let now = ignored(sidecar);
            (now >= ignored_before + forged.len() as f64).then_some(now)
        });
        assert_eq!(now, ignored_before + forged.len() as f64);
    }
    // Well-formed, right prefix, but no change in Redis behind it.
    let body = r#"'{"prefix":"e2e:","change":"unrevoke","license":"LIC-A"}'"#;
    redis.command(&format!("PUBLISH e2e:revocations {body}"));
    for (sidecar, (_, accepted_before)) in d.replicas.iter().zip(&before) {
        sidecar.wait_metric_above(
            "registry_token_revocation_messages_total",
            &[("result", "accepted")],
            *accepted_before,
        );
        assert_eq!(ways_in(sidecar, &revoked), [false; 3], "still revoked");
        assert_eq!(ways_in(sidecar, &other), [true; 3], "still accepted");
    }

    // A change whose message never came (written as `revoke` writes it, nothing published):
    // the periodic re-read still brings it to both replicas within the second.
    assert_eq!(
        redis.command("SADD e2e:revoked LIC-B").as_deref(),
        Some(":1")
    );
    assert_eq!(
        redis.command("SET e2e:revoked:version 4242").as_deref(),
        Some("+OK")
    );
    let written = Instant::now();
    settle_all(
        &d,
        &other,
        false,
        written + REVOCATION_DEADLINE,
        "missed message",
    );
}

/// Security case 94 (race): clients keep asking both replicas for tokens and pulling with their
/// registry token while the license is revoked; every request that starts 1 s after the
/// command returned is refused, at both replicas.
#[test]
fn no_replica_accepts_after_the_second_while_requests_are_in_flight() {
    let redis = RedisServer::start();
    let d = Arc::new(Deployment::start(2, Some(&redis.url())));
    let caller = Arc::new(d.caller("LIC-RACE"));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline: Arc<Mutex<Option<Instant>>> = Arc::default();
    let after_deadline = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|n| {
            let (d, caller, stop) = (d.clone(), caller.clone(), stop.clone());
            let (deadline, after_deadline) = (deadline.clone(), after_deadline.clone());
            std::thread::spawn(move || {
                let sidecar = &d.replicas[n % 2];
                let mut late_acceptances = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let accepted = if n < 2 {
                        realm(sidecar, &caller.optok, false).0 == 200
                    } else {
                        v2(sidecar, &caller.token) == 200
                    };
                    let late = deadline.lock().unwrap().is_some_and(|d| started >= d);
                    if late {
                        after_deadline.fetch_add(1, Ordering::SeqCst);
                        if accepted {
                            late_acceptances.push(started);
                        }
                    }
                }
                late_acceptances
            })
        })
        .collect();

    let (returned, _) = d.cli_ok(&["revoke", "LIC-RACE", "--reason", "race"]);
    *deadline.lock().unwrap() = Some(returned + REVOCATION_DEADLINE);
    poll(
        Duration::from_secs(30),
        "requests started after the deadline",
        || (after_deadline.load(Ordering::SeqCst) >= 200).then_some(()),
    );
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        let late = worker.join().expect("worker");
        assert!(
            late.is_empty(),
            "{} request(s) accepted after the second",
            late.len()
        );
    }
}

/// Revocation without Redis (docs/revocation.md): `revoke` writes `revoked-licenses.txt` beside the
/// configuration, the sidecar applies it without a restart; a file with a line that is not a
/// license keeps the last good list and is counted as a failed reload (and the commands refuse to
/// edit it); fixed and `unrevoke`d, the license is accepted again.
#[test]
fn without_redis_the_revocation_file_is_watched_and_applied() {
    let d = Deployment::start(1, None);
    let sidecar = d.a();
    let (revoked, other) = (d.caller("LIC-A"), d.caller("LIC-B"));
    let file = sidecar
        .config_path()
        .parent()
        .unwrap()
        .join("revoked-licenses.txt");

    let (_, out) = d.cli_ok(&["revoke", "LIC-A", "--reason", "contract ended"]);
    assert!(out.contains("revokedLicensesFile"), "{out}");
    let text = std::fs::read_to_string(&file).expect("the revocation file");
    assert!(
        text.contains("LIC-A") && text.contains("by alice-ops: contract ended"),
        "{text}"
    );
    settle(
        sidecar,
        &revoked,
        false,
        Instant::now() + RELOAD_DEADLINE,
        "file revoke",
    );
    assert_eq!(ways_in(sidecar, &other), [true; 3]);

    let errors = sidecar.metric(
        "registry_token_config_reloads_total",
        &[("result", "error")],
    );
    let tmp = file.with_file_name(".edit.tmp");
    std::fs::write(&tmp, "LIC-A\nLIC-B\nnot a license\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    sidecar.wait_metric_above(
        "registry_token_config_reloads_total",
        &[("result", "error")],
        errors,
    );
    assert_eq!(
        ways_in(sidecar, &revoked),
        [false; 3],
        "the last good list stays"
    );
    assert_eq!(
        ways_in(sidecar, &other),
        [true; 3],
        "the bad file is not applied"
    );
    let out = d.cli(&["unrevoke", "LIC-A"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 3"), "{}", stderr(&out));

    std::fs::write(&tmp, "LIC-A\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let listed = d.cli_ok(&["revoked"]).1;
    assert!(
        listed.contains("LIC-A\tfile") && listed.contains("LIC-REVOKED\tconfig"),
        "{listed}"
    );
    d.cli_ok(&["unrevoke", "LIC-A"]);
    settle(
        sidecar,
        &revoked,
        true,
        Instant::now() + RELOAD_DEADLINE,
        "file unrevoke",
    );
}
