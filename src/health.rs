//! Readiness (docs/operations.md, "Health"): which parts keep the sidecar from serving, said twice.
//!
//! ```text
//! /readyz ─▶ Health::check(settings, authority) ─▶ Report
//!              ├─ upstream:  GET <upstream>/v2/ answers (any status), cached 2 s, one at a time
//!              ├─ authority: the Authority in force holds usable keys (no I/O)
//!              └─ state:     with `state.redis`, Redis answers PING (cached 2 s, one at a time),
//!                            and the revocation set was read from it at least once
//! main listener  ─▶ Report::public()   {"ready":false,"failing":["upstream"]}  (names only)
//! admin listener ─▶ Report::detailed() + URLs and error chains per part
//! ```
//!
//! The main listener may face the internet: it never shows an address or an error text. The
//! upstream probe is cached and single-flight, so a flood of `/readyz` costs the registry at
//! most one request per [`PROBE_CACHE`].

use std::error::Error as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::authority::{Authority, KeysStatus};
use crate::config::Settings;
use crate::policy::revocation::Revocations;
use crate::state::redis::{OnUnavailable, Redis};

/// How long an upstream probe's result is reused.
pub const PROBE_CACHE: Duration = Duration::from_secs(2);
/// How long the upstream may take to answer a probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A part that readiness depends on; `as_str` is its name in `failing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Upstream,
    Authority,
    /// The shared store (`state.redis`).
    State,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Upstream => "upstream",
            Part::Authority => "authority",
            Part::State => "state",
        }
    }
}

/// One part's state: ready or not, and what the admin listener says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub part: Part,
    pub ready: bool,
    /// URLs, counts, error chains: for the admin listener only.
    pub detail: String,
}

/// Every part's state, in a fixed order (upstream, authority).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<Check>,
}

/// The main listener's body: names only.
#[derive(Debug, Serialize, PartialEq)]
pub struct PublicBody {
    pub ready: bool,
    pub failing: Vec<&'static str>,
}

/// The admin listener's body: names and details.
#[derive(Debug, Serialize, PartialEq)]
pub struct DetailedBody {
    pub ready: bool,
    pub failing: Vec<&'static str>,
    pub checks: Vec<DetailedCheck>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct DetailedCheck {
    pub name: &'static str,
    pub ready: bool,
    pub detail: String,
}

impl Report {
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|c| c.ready)
    }

    /// 200 when ready, else 503.
    pub fn status(&self) -> u16 {
        if self.ready() {
            200
        } else {
            503
        }
    }

    fn failing(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.part.as_str())
            .collect()
    }

    /// What the main listener shows.
    pub fn public(&self) -> PublicBody {
        PublicBody {
            ready: self.ready(),
            failing: self.failing(),
        }
    }

    /// What the admin listener shows.
    pub fn detailed(&self) -> DetailedBody {
        DetailedBody {
            ready: self.ready(),
            failing: self.failing(),
            checks: self
                .checks
                .iter()
                .map(|c| DetailedCheck {
                    name: c.part.as_str(),
                    ready: c.ready,
                    detail: c.detail.clone(),
                })
                .collect(),
        }
    }
}

/// The Authority part, from the key cache of the one in force and of a successor that waits.
pub fn authority_check(
    issuer: &str,
    keys: &KeysStatus,
    waiting: Option<(&str, &KeysStatus)>,
) -> Check {
    let mut detail = if keys.usable {
        let age = keys.age.map(|a| a.as_secs()).unwrap_or_default();
        format!(
            "{} usable key(s) from {issuer}, fetched {age}s ago",
            keys.keys
        )
    } else {
        let why = keys.last_error.as_deref().unwrap_or("no keys fetched yet");
        format!("no usable key from {issuer}: {why}")
    };
    if let Some((next, status)) = waiting {
        let why = status.last_error.as_deref().unwrap_or("fetching");
        detail.push_str(&format!(
            "; reloaded settings for {next} wait for their keys: {why}"
        ));
    }
    Check {
        part: Part::Authority,
        ready: keys.usable,
        detail,
    }
}

/// The shared-store part from Redis's last `PING`: under `onUnavailable: memory` the replica
/// still serves (from memory), so it stays ready and the detail says why. The revocation set
/// read from Redis (docs/revocation.md) is described too: one never read keeps the replica unready
/// (it cannot know which licenses to refuse); one read before is kept while Redis is away.
pub fn state_check(
    redis: &Redis,
    answer: &Result<Duration, crate::state::StateError>,
    revocations: &Revocations,
) -> Check {
    let settings = redis.settings();
    let (ready, mut detail) = match (answer, settings.on_unavailable) {
        (Ok(rtt), _) => (true, format!("{} answered PING in {rtt:?}", settings.url)),
        (Err(e), OnUnavailable::Refuse) => (false, format!("{}: {e}", settings.url)),
        (Err(e), OnUnavailable::Memory) => (
            true,
            format!(
                "{}: {e}; serving from this replica's memory (onUnavailable: memory)",
                settings.url
            ),
        ),
    };
    let never_read = revocations.status().read_at.is_none();
    detail.push_str(&format!("; revocations: {}", revocations.describe()));
    Check {
        part: Part::State,
        ready: ready && !never_read,
        detail,
    }
}

/// The last upstream probe.
struct Probed {
    at: Instant,
    /// The configuration generation it was made for (a reload may change the upstream).
    generation: u64,
    check: Check,
}

/// The probe's HTTP client, rebuilt when the configuration changes.
struct Probe {
    client: Option<(u64, reqwest::Client)>,
    last: Option<Probed>,
}

/// Readiness checks, shared by both listeners.
pub struct Health {
    /// Held across a probe: concurrent checks wait for it, then read its result.
    probe: tokio::sync::Mutex<Probe>,
    /// The shared store, when `state.redis` is set.
    state: Option<std::sync::Arc<Redis>>,
    /// The licenses revoked on Redis (docs/revocation.md): how fresh this replica's copy is.
    revocations: std::sync::Arc<Revocations>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            probe: tokio::sync::Mutex::new(Probe {
                client: None,
                last: None,
            }),
            state: None,
            revocations: Default::default(),
        }
    }
}

impl Health {
    /// Readiness that also asks `state` (Redis) when it is set, and tells how fresh the
    /// revocation set read from it is.
    pub fn with_state(
        state: Option<std::sync::Arc<Redis>>,
        revocations: std::sync::Arc<Revocations>,
    ) -> Self {
        Health {
            state,
            revocations,
            ..Health::default()
        }
    }
}

/// Whether a probe made at `at` for `generation` can answer now.
fn fresh(at: Instant, of: u64, generation: u64, now: Instant) -> bool {
    of == generation && now.saturating_duration_since(at) < PROBE_CACHE
}

impl Health {
    /// The state of every part now (the upstream's at most [`PROBE_CACHE`] old).
    pub async fn check(
        &self,
        settings: &Settings,
        authority: &Authority,
        waiting: Option<&Authority>,
    ) -> Report {
        let upstream = self.upstream(settings).await;
        let waiting_status = waiting.map(|w| (w.config().issuer.as_str(), w.status()));
        let authority = authority_check(
            &authority.config().issuer,
            &authority.status(),
            waiting_status.as_ref().map(|(i, s)| (*i, s)),
        );
        let mut checks = vec![upstream, authority];
        if let Some(redis) = &self.state {
            let answer = redis.readiness().await;
            checks.push(state_check(redis, &answer, &self.revocations));
        }
        Report { checks }
    }

    async fn upstream(&self, settings: &Settings) -> Check {
        let mut probe = self.probe.lock().await;
        if let Some(last) = &probe.last {
            if fresh(
                last.at,
                last.generation,
                settings.generation,
                Instant::now(),
            ) {
                return last.check.clone();
            }
        }
        let client = match &probe.client {
            Some((generation, client)) if *generation == settings.generation => client.clone(),
            _ => {
                let client = upstream_client(settings, PROBE_TIMEOUT);
                probe.client = Some((settings.generation, client.clone()));
                client
            }
        };
        let url = format!("{}/v2/", settings.upstream.origin);
        let check = match client.get(&url).send().await {
            Ok(response) => Check {
                part: Part::Upstream,
                ready: true,
                detail: format!("{url} answered {}", response.status().as_u16()),
            },
            Err(e) => Check {
                part: Part::Upstream,
                ready: false,
                detail: format!("{url} does not answer: {}", chain(&e)),
            },
        };
        probe.last = Some(Probed {
            at: Instant::now(),
            generation: settings.generation,
            check: check.clone(),
        });
        check
    }
}

/// A client for the sidecar's own requests to the registry (the readiness probe, the filtered
/// catalog): trusts the upstream as the proxy does; no connection is kept.
pub(crate) fn upstream_client(settings: &Settings, timeout: Duration) -> reqwest::Client {
    let upstream = &settings.upstream;
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(upstream.insecure_skip_verify);
    for cert in upstream.ca.iter().flat_map(|certs| certs.iter()) {
        if let Some(cert) = cert
            .to_der()
            .ok()
            .and_then(|der| reqwest::Certificate::from_der(&der).ok())
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the readiness probe client could not be built as configured");
        reqwest::Client::new()
    })
}

/// An error and its causes on one line.
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(part: Part, ready: bool) -> Check {
        Check {
            part,
            ready,
            detail: format!(
                "{} at http://10.0.0.1:5000/v2/: connection refused",
                part.as_str()
            ),
        }
    }

    /// The main listener's body names the failing parts and nothing else; the admin body adds
    /// the details.
    #[test]
    fn bodies() {
        let rows = [
            (true, true, 200, json!({"ready": true, "failing": []})),
            (
                false,
                true,
                503,
                json!({"ready": false, "failing": ["upstream"]}),
            ),
            (
                true,
                false,
                503,
                json!({"ready": false, "failing": ["authority"]}),
            ),
            (
                false,
                false,
                503,
                json!({"ready": false, "failing": ["upstream", "authority"]}),
            ),
        ];
        for (upstream, authority, status, public) in rows {
            let report = Report {
                checks: vec![
                    check(Part::Upstream, upstream),
                    check(Part::Authority, authority),
                ],
            };
            assert_eq!(report.status(), status);
            let body = serde_json::to_value(report.public()).unwrap();
            assert_eq!(body, public);
            assert!(!body.to_string().contains("10.0.0.1"));
            let detailed = serde_json::to_value(report.detailed()).unwrap();
            assert_eq!(detailed["failing"], public["failing"]);
            assert!(detailed.to_string().contains("http://10.0.0.1:5000/v2/"));
        }
    }

    /// A probe answers for 2 s, and only for the configuration it was made for.
    #[test]
    fn probe_freshness() {
        let at = Instant::now();
        let rows = [
            (Duration::ZERO, 1, true),
            (Duration::from_millis(1999), 1, true),
            (PROBE_CACHE, 1, false),
            (Duration::from_secs(60), 1, false),
            (Duration::ZERO, 2, false),
        ];
        for (later, generation, expected) in rows {
            assert_eq!(
                fresh(at, 1, generation, at + later),
                expected,
                "{later:?} gen {generation}"
            );
        }
    }

    /// The Authority part: usable keys or why not, and a successor that waits.
    #[test]
    fn authority_part() {
        let usable = KeysStatus {
            keys: 2,
            age: Some(Duration::from_secs(7)),
            last_error: None,
            usable: true,
        };
        let never = KeysStatus {
            keys: 0,
            age: None,
            last_error: Some("fetching https://a.example/jwks failed: refused".into()),
            usable: false,
        };
        let c = authority_check("https://a.example", &usable, None);
        assert!(c.ready);
        assert_eq!(
            c.detail,
            "2 usable key(s) from https://a.example, fetched 7s ago"
        );
        let c = authority_check("https://a.example", &never, None);
        assert!(!c.ready);
        assert!(c.detail.contains("refused"), "{}", c.detail);
        let c = authority_check(
            "https://a.example",
            &usable,
            Some(("https://b.example", &never)),
        );
        assert!(c.ready, "the one in force serves");
        assert!(
            c.detail.contains("https://b.example wait for their keys"),
            "{}",
            c.detail
        );
    }

    /// The `state` check and the revocation set (docs/revocation.md): a set never read keeps the
    /// replica unready; one read before stays in force while Redis is away, and the detail says so.
    #[test]
    fn state_check_tells_how_fresh_the_revocations_are() {
        use crate::state::redis::{RedisSettings, RedisUrl};
        use crate::state::StateError;
        let redis = |on_unavailable| {
            let settings = RedisSettings {
                url: RedisUrl::parse("redis://127.0.0.1:6379/0").unwrap(),
                key_prefix: "t:".into(),
                timeout: Duration::from_millis(250),
                on_unavailable,
            };
            Redis::new(settings, Default::default()).unwrap()
        };
        let (refuse, memory) = (redis(OnUnavailable::Refuse), redis(OnUnavailable::Memory));
        let up = Ok(Duration::from_millis(1));
        let down = Err(StateError("ping: connection refused".into()));
        let revocations = Revocations::default();

        let never = state_check(&refuse, &up, &revocations);
        assert!(
            !never.ready && never.detail.contains("never read"),
            "{never:?}"
        );
        revocations.replace(["LIC-1".to_string()].into());
        assert!(state_check(&refuse, &up, &revocations).ready);
        revocations.failed("revocations: connection refused");
        let kept = state_check(&memory, &down, &revocations);
        assert!(kept.ready, "{kept:?}");
        assert!(
            kept.detail.contains("1 revoked license(s)")
                && kept.detail.contains("the last set read stays in force"),
            "{kept:?}"
        );
        assert!(!state_check(&refuse, &down, &revocations).ready);
    }
}
