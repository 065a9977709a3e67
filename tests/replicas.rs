//! Replicas that share state on Redis (docs/operations.md; docs/security.md, case 80): two real
//! `registry-token` processes on different ports, one real `redis-server`, and the real
//! `oidc-provider` (common::oidc) issuing the DPoP-bound OpToks. Both replicas have the same `registry.realm` (the address clients use, behind
//! one load balancer), so a DPoP proof made for it is valid at either.
//!
//! A proof spent at one replica is a replay at the other; Redis killed mid-run makes the realm
//! answer 503 `state_unavailable` with `Retry-After` within the timeout (never a hang, never
//! an accepted replay), and service resumes when Redis is back, without a restart;
//! `onUnavailable: memory` keeps issuing; a silent or erroring Redis is refused the same way;
//! a plan's pull limit counts once across replicas.
//!
//! Authority: the real provider everywhere; one test needs no Authority (the Redis counters).

mod common;

use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::limits::{loopback, manifest, push_image, with_pull_limit, Pull, IMAGE};
use common::oidc::{ENTERPRISE, LIMITED};
use common::redis::{RedisServer, Silent};
use common::sidecar::{merge, BIN, SERVICE};
use common::*;
use serde_json::{json, Value};

/// How long any one answer may take here: the configured timeout is 250 ms; the slack is for
/// a loaded machine. A request past it is a hang.
const ANSWER_DEADLINE: Duration = Duration::from_secs(10);
/// How long Redis may take to be used again after it returns.
const RESUME_DEADLINE: Duration = Duration::from_secs(20);

/// One `/token` answer.
#[derive(Debug)]
struct Outcome {
    status: u16,
    reason: String,
    retry_after: Option<String>,
    took: Duration,
}

/// Two replicas of one deployment, sharing `redis_url`; A's address is the realm of both.
struct Replicas {
    a: Sidecar,
    b: Sidecar,
    _registry: Registry,
    _keys: Keys,
    authority: Arc<OidcAuthority>,
}

impl Replicas {
    fn start(redis_url: &str, on_unavailable: &str, timeout: &str) -> Replicas {
        let authority = OidcAuthority::shared();
        let keys = Keys::generate();
        let registry = Registry::start(None);
        let mut config = SidecarConfig::new(&registry.url(), &authority.issuer(), keys.path());
        config.patch = json!({"state": {"redis": {
            "url": redis_url, "keyPrefix": "e2e:", "timeout": timeout,
            "onUnavailable": on_unavailable}}});
        let port_a = free_port();
        config.listen_port = Some(port_a);
        let mut config_b = config.clone();
        config_b.listen_port = None;
        merge(
            &mut config_b.patch,
            &json!({"registry": {"realm": format!("http://127.0.0.1:{port_a}/token")}}),
        );
        let a = Sidecar::start(config);
        let b = Sidecar::start(config_b);
        Replicas {
            a,
            b,
            _registry: registry,
            _keys: keys,
            authority,
        }
    }

    /// A DPoP key and the provider's OpTok bound to it, on the enterprise plan.
    fn client(&self) -> (DpopKey, String) {
        self.authority.bound(&ENTERPRISE)
    }

    /// A fresh proof for the shared realm (A's address).
    fn proof(&self, key: &DpopKey, optok: &str) -> String {
        key.proof("GET", &self.a.realm(), optok)
    }
}

/// `GET /token` for `repository:acme/app:pull` at `sidecar` with `optok` and `proof`.
fn ask(sidecar: &Sidecar, optok: &str, proof: &str) -> Outcome {
    let started = Instant::now();
    let response = client()
        .get(sidecar.realm())
        .query(&[("service", SERVICE), ("scope", "repository:acme/app:pull")])
        .header("Authorization", format!("DPoP {optok}"))
        .header("DPoP", proof)
        .send()
        .expect("GET /token answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Value = response.json().unwrap_or(Value::Null);
    Outcome {
        status,
        reason: body["reason"].as_str().unwrap_or_default().to_string(),
        retry_after,
        took: started.elapsed(),
    }
}

/// Asserts the realm refused for want of the store, with `Retry-After`, in time.
fn assert_state_unavailable(outcome: &Outcome, what: &str) {
    assert_eq!(
        (outcome.status, outcome.reason.as_str()),
        (503, "state_unavailable"),
        "{what}: {outcome:?}"
    );
    assert!(outcome.retry_after.is_some(), "{what}: no Retry-After");
    assert!(
        outcome.took < ANSWER_DEADLINE,
        "{what}: took {:?}",
        outcome.took
    );
}

/// `GET /readyz` on the main listener: status and body.
fn readyz(sidecar: &Sidecar) -> (u16, Value) {
    let response = client()
        .get(format!("{}/readyz", sidecar.url()))
        .send()
        .expect("GET /readyz");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// The admin listener's `/readyz` detail of the `state` check.
fn state_detail(sidecar: &Sidecar) -> Value {
    sidecar.admin_check("state")
}

/// `registry-token doctor --check state` against `sidecar`'s config: exit code and output.
fn doctor_state(sidecar: &Sidecar) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(sidecar.config_path())
        .args(["doctor", "--check", "state"])
        .env_remove("REGISTRY_TOKEN_STATE__REDIS__URL")
        .output()
        .expect("run doctor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A proof accepted at replica A is `dpop_replay` at replica B, and the other way round; both
/// report `state` ready, `doctor` finds Redis reachable and the prefix writable, and the
/// spent proof is one key under the prefix.
#[test]
fn a_proof_spent_at_one_replica_is_a_replay_at_the_other() {
    let redis = RedisServer::start();
    let r = Replicas::start(&redis.url(), "refuse", "2s");
    let (key, optok) = r.client();

    let proof = r.proof(&key, &optok);
    assert_eq!(ask(&r.a, &optok, &proof).status, 200);
    let again = ask(&r.b, &optok, &proof);
    assert_eq!((again.status, again.reason.as_str()), (401, "dpop_replay"));
    assert_eq!(ask(&r.a, &optok, &proof).reason, "dpop_replay");

    let proof = r.proof(&key, &optok);
    assert_eq!(ask(&r.b, &optok, &proof).status, 200);
    assert_eq!(ask(&r.a, &optok, &proof).reason, "dpop_replay");

    let keys = redis.command("KEYS e2e:dpop:*").expect("KEYS");
    assert_eq!(keys, "*2", "two spent proofs under the prefix");
    for sidecar in [&r.a, &r.b] {
        assert_eq!(readyz(sidecar).0, 200);
        assert_eq!(state_detail(sidecar)["ready"], true);
        assert!(sidecar.metric("registry_token_state_duration_seconds_count", &[]) > 0.0);
    }
    let (code, out) = doctor_state(&r.a);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("pass  check.state") && out.contains("writable"),
        "{out}"
    );
}

/// 200 parallel token requests with distinct proofs, spread over both replicas, all succeed;
/// 200 parallel uses of one proof, spread the same way, give exactly one success and 199
/// `dpop_replay`.
#[test]
fn concurrent_requests_across_replicas() {
    let redis = RedisServer::start();
    // A loaded test machine must not turn scheduling delays into 503s here.
    let r = Arc::new(Replicas::start(&redis.url(), "refuse", "5s"));
    let (key, optok) = r.client();
    let key = Arc::new(key);

    let run = |proofs: Vec<String>| -> Vec<Outcome> {
        let barrier = Arc::new(Barrier::new(proofs.len()));
        let threads: Vec<_> = proofs
            .into_iter()
            .enumerate()
            .map(|(i, proof)| {
                let (r, optok, barrier) = (r.clone(), optok.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let sidecar = if i % 2 == 0 { &r.a } else { &r.b };
                    ask(sidecar, &optok, &proof)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    };

    let distinct: Vec<String> = (0..200).map(|_| r.proof(&key, &optok)).collect();
    let outcomes = run(distinct);
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of 200 failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );

    let one = r.proof(&key, &optok);
    let outcomes = run(vec![one; 200]);
    let won = outcomes.iter().filter(|o| o.status == 200).count();
    let replays = outcomes
        .iter()
        .filter(|o| (o.status, o.reason.as_str()) == (401, "dpop_replay"))
        .count();
    assert_eq!((won, replays), (1, 199));
}

/// Redis killed mid-run: both replicas answer 503 `state_unavailable` with `Retry-After`
/// within the timeout, a proof spent before is never accepted, `/readyz` names `state`, the
/// failures are counted; Redis restarted: tokens issue again at both without a restart.
#[test]
fn redis_down_refuses_then_service_resumes() {
    let mut redis = RedisServer::start();
    let r = Replicas::start(&redis.url(), "refuse", "250ms");
    let (key, optok) = r.client();
    let spent = r.proof(&key, &optok);
    assert_eq!(ask(&r.a, &optok, &spent).status, 200);

    redis.kill();
    for (i, sidecar) in [&r.a, &r.b, &r.a, &r.b, &r.a, &r.b].into_iter().enumerate() {
        let fresh = r.proof(&key, &optok);
        assert_state_unavailable(&ask(sidecar, &optok, &fresh), &format!("fresh proof #{i}"));
        let replay = ask(sidecar, &optok, &spent);
        assert_ne!(
            replay.status, 200,
            "a spent proof was accepted while Redis was down"
        );
        assert_state_unavailable(&replay, &format!("replay #{i}"));
    }
    for sidecar in [&r.a, &r.b] {
        let (status, body) = poll(ANSWER_DEADLINE, "/readyz to name state", || {
            let (status, body) = readyz(sidecar);
            (status == 503).then_some((status, body))
        });
        assert_eq!(status, 503);
        assert_eq!(body["failing"], json!(["state"]), "{body}");
        assert!(!body.to_string().contains("127.0.0.1"), "{body}");
        let detail = state_detail(sidecar);
        assert_eq!(detail["ready"], false);
        assert!(
            detail["detail"]
                .as_str()
                .unwrap()
                .contains("redis://127.0.0.1"),
            "{detail}"
        );
        assert!(sidecar.metric("registry_token_state_errors_total", &[("op", "replay")]) >= 3.0);
    }

    redis.restart();
    for sidecar in [&r.a, &r.b] {
        poll(RESUME_DEADLINE, "tokens to issue again", || {
            let outcome = ask(sidecar, &optok, &r.proof(&key, &optok));
            assert!(outcome.took < ANSWER_DEADLINE, "{outcome:?}");
            (outcome.status == 200).then_some(())
        });
        poll(RESUME_DEADLINE, "/readyz 200 again", || {
            (readyz(sidecar).0 == 200).then_some(())
        });
    }
    let proof = r.proof(&key, &optok);
    assert_eq!(ask(&r.b, &optok, &proof).status, 200);
    assert_eq!(ask(&r.a, &optok, &proof).reason, "dpop_replay");
}

/// `onUnavailable: memory`: while Redis is down each replica keeps issuing from its own
/// memory (a proof is still refused twice at the same replica), stays ready, and counts and
/// logs the fallback.
#[test]
fn memory_fallback_keeps_issuing() {
    let mut redis = RedisServer::start();
    let r = Replicas::start(&redis.url(), "memory", "250ms");
    let (key, optok) = r.client();
    let spent = r.proof(&key, &optok);
    assert_eq!(ask(&r.a, &optok, &spent).status, 200);

    redis.kill();
    assert_eq!(
        ask(&r.a, &optok, &spent).reason,
        "dpop_replay",
        "remembered here too"
    );
    for sidecar in [&r.a, &r.b] {
        let proof = r.proof(&key, &optok);
        let first = ask(sidecar, &optok, &proof);
        assert_eq!(first.status, 200, "{first:?}");
        assert!(first.took < ANSWER_DEADLINE);
        assert_eq!(ask(sidecar, &optok, &proof).reason, "dpop_replay");
        assert!(sidecar.metric("registry_token_state_fallbacks_total", &[("op", "replay")]) >= 1.0);
        assert_eq!(readyz(sidecar).0, 200, "memory mode serves, so it is ready");
        poll(ANSWER_DEADLINE, "the admin /readyz to say memory", || {
            let detail = state_detail(sidecar);
            assert_eq!(detail["ready"], true, "{detail}");
            detail["detail"]
                .as_str()
                .is_some_and(|d| d.contains("memory"))
                .then_some(())
        });
    }
    assert!(r.a.log().contains("serving from this replica's memory"));

    redis.restart();
    poll(RESUME_DEADLINE, "spent proofs to reach Redis again", || {
        assert_eq!(ask(&r.b, &optok, &r.proof(&key, &optok)).status, 200);
        (redis.command("DBSIZE").as_deref() != Some(":0")).then_some(())
    });
}

/// Security case 80, slow and erroring: a Redis that accepts and never answers, and one that
/// refuses every write (full under `noeviction`), both give 503 `state_unavailable` with
/// `Retry-After` within the timeout, never a token; `doctor` fails `check.state` and says why.
#[test]
fn slow_or_erroring_redis_is_refused_in_time() {
    let authority = OidcAuthority::shared();
    let keys = Keys::generate();
    let registry = Registry::start(None);
    let silent = Silent::start();
    let full = RedisServer::start_with(&["--maxmemory", "1", "--maxmemory-policy", "noeviction"]);
    let config = |url: &str| {
        let mut config = SidecarConfig::new(&registry.url(), &authority.issuer(), keys.path());
        config.patch = json!({"state": {"redis": {"url": url, "timeout": "250ms"}}});
        config
    };
    let slow = Sidecar::start_unready(config(&silent.url()));
    let erroring = Sidecar::start(config(&full.url()));

    for (sidecar, doctor_says) in [(&slow, "does not answer"), (&erroring, "cannot be written")] {
        let (key, optok) = authority.bound(&ENTERPRISE);
        let proof = key.proof("GET", &sidecar.realm(), &optok);
        for attempt in 0..3 {
            assert_state_unavailable(&ask(sidecar, &optok, &proof), &format!("attempt {attempt}"));
        }
        let (code, out) = doctor_state(sidecar);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("fail  check.state") && out.contains(doctor_says),
            "{out}"
        );
    }
    let (status, body) = poll(ANSWER_DEADLINE, "/readyz to name state", || {
        let (status, body) = readyz(&slow);
        (status == 503).then_some((status, body))
    });
    assert_eq!((status, body["failing"].clone()), (503, json!(["state"])));
}

/// The Redis `Counters` that plan limits count through: fixed windows shared by every process
/// on the same Redis and prefix (two clients stand for two replicas), one window per key,
/// starting over once the window ends; a window's remaining time comes back with each count.
#[test]
fn counters_on_redis_are_shared_fixed_windows() {
    use registry_token::state::redis::{OnUnavailable, Redis, RedisSettings, RedisUrl};
    use registry_token::state::Counters;

    let redis = RedisServer::start();
    let settings = RedisSettings {
        url: RedisUrl::parse(&redis.url()).unwrap(),
        key_prefix: "e2e:".into(),
        timeout: Duration::from_secs(2),
        on_unavailable: OnUnavailable::Refuse,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let a = Redis::new(settings.clone(), Default::default()).unwrap();
        let b = Redis::new(settings, Default::default()).unwrap();
        let hour = Duration::from_secs(3600);
        let mut counts = Vec::new();
        for replica in [&a, &b, &a, &b] {
            let hit = replica.hit("pulls:lic:LIC-1", hour).await.unwrap();
            assert!(hit.resets_in <= hour && hit.resets_in > hour - Duration::from_secs(60));
            counts.push(hit.count);
        }
        assert_eq!(counts, [1, 2, 3, 4]);
        assert_eq!(b.hit("pulls:lic:LIC-2", hour).await.unwrap().count, 1);

        let short = Duration::from_millis(300);
        assert_eq!(a.hit("tokens:sub:x", short).await.unwrap().count, 1);
        assert_eq!(b.hit("tokens:sub:x", short).await.unwrap().count, 2);
        let deadline = Instant::now() + ANSWER_DEADLINE;
        loop {
            let hit = a.hit("tokens:sub:x", short).await.unwrap();
            assert!(hit.resets_in <= short, "{hit:?}");
            if hit.count == 1 {
                break; // a new window began
            }
            assert!(Instant::now() < deadline, "the window never ended");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert_eq!(
        redis.command("EXISTS e2e:count:pulls:lic:LIC-1").as_deref(),
        Some(":1")
    );
}

/// Plan limits (docs/http.md) across replicas: two replicas on one Redis, a plan with
/// `pulls: {count: 3, per: 1h}`; an image pushed by the provider's enterprise client, then
/// manifest GETs with one token of its limited client, alternating between them, give 200, 200,
/// 200, then 429 with the `RateLimit-*` headers and `Retry-After`, whichever replica answers; the
/// count is one key on Redis.
#[test]
fn pull_limit_counts_once_across_replicas() {
    let redis = RedisServer::start();
    let stack = Stack::on_provider_with(|config| {
        with_pull_limit(config, 3);
        merge(
            &mut config.patch,
            &json!({"state": {"redis": {"url": redis.url(), "keyPrefix": "e2e:"}}}),
        );
    });
    let (key, optok) = stack.authority.bound(&ENTERPRISE);
    let push = format!("repository:{IMAGE}:pull,push");
    push_image(
        &stack.sidecar.addr(),
        &stack.sidecar.token(&[&push], &optok, &key),
    );
    let mut config_b = stack.sidecar.config().clone();
    config_b.listen_port = None;
    let b = Sidecar::start(config_b);

    let (key, optok) = stack.authority.bound(&LIMITED);
    let pull = format!("repository:{IMAGE}:pull");
    let token = stack.sidecar.token(&[&pull], &optok, &key);
    let pulls: Vec<Pull> = [&stack.sidecar, &b, &stack.sidecar, &b]
        .iter()
        .map(|replica| manifest(&replica.url(), "GET", &token, loopback(1), None))
        .collect();
    let seen: Vec<(u16, Option<&str>, Option<&str>)> = pulls
        .iter()
        .map(|p| (p.status, p.limit.as_deref(), p.remaining.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (200, Some("3;w=3600"), Some("2;w=3600")),
            (200, Some("3;w=3600"), Some("1;w=3600")),
            (200, Some("3;w=3600"), Some("0;w=3600")),
            (429, Some("3;w=3600"), Some("0;w=3600")),
        ],
        "{pulls:?}"
    );
    let retry = pulls[3].retry_after.expect("Retry-After");
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");
    assert!(
        pulls[3].body.contains("TOOMANYREQUESTS"),
        "{}",
        pulls[3].body
    );
    let labels = [("plan", "limited"), ("kind", "pulls")];
    assert_eq!(b.metric("registry_token_rate_limited_total", &labels), 1.0);
    assert_eq!(
        redis.command("KEYS e2e:count:*").as_deref(),
        Some("*1"),
        "one window for the license, shared"
    );
}
