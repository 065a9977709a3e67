//! Plan limits on the proxy path (docs/http.md, "Plan limits"): after `authorize` allowed a `/v2/`
//! request, a manifest `GET` is counted against its plan's `limits.pulls` (`HEAD` is free, as on
//! Docker Hub). Within the limit the response gets the `RateLimit-*` headers; past it, or when the
//! shared state cannot count, the request is refused and never forwarded.

use std::net::IpAddr;

use pingora::proxy::Session;

use super::authorize::Allowed;
use super::denial::Denial;
use super::header_values;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::policy::limits::{self, Caller, Kind, RateHeaders, Verdict};
use crate::registry::Route;
use crate::state::Counters;

/// The client's address as limits count it: the TCP peer, or what a `server.trustedEdge` peer
/// says in `X-Forwarded-For` (see [`limits::client_ip`]).
pub fn client_ip(session: &Session, settings: &Settings) -> Option<IpAddr> {
    let peer = session.client_addr()?.as_inet()?.ip();
    let Some(edge) = settings.trusted_edge.as_ref() else {
        return Some(peer);
    };
    let forwarded = header_values(session.req_header(), "x-forwarded-for");
    limits::client_ip(Some(peer), &forwarded, |ip| edge.trusts(ip))
}

/// Counts a pull for `allowed` when it is one (`GET` of a manifest under a plan with
/// `limits.pulls`): `Ok(Some(headers))` to show, `Ok(None)` when nothing was counted, or the
/// refusal. The plan is the token's plan claim as the configuration in force defines it (a plan
/// a reload removed falls back to `defaultPlan`, whose limits then apply). `client_ip` is asked
/// only for a pull that is counted.
pub async fn count_pull(
    counters: &dyn Counters,
    metrics: &Metrics,
    settings: &Settings,
    allowed: &Allowed,
    method: &str,
    client_ip: impl FnOnce() -> Option<IpAddr>,
) -> Result<Option<RateHeaders>, Denial> {
    if method != "GET" || allowed.routed.route != Route::Manifest {
        return Ok(None);
    }
    let policy = &settings.policy;
    let plan = allowed
        .plan
        .as_deref()
        .and_then(|name| policy.plans.get(name))
        .or_else(|| policy.plan_for(None));
    let Some((plan, limit)) = plan.and_then(|p| Some((p, p.limits.pulls?))) else {
        return Ok(None);
    };
    let caller = Caller {
        license: allowed.license.as_deref(),
        subject: Some(allowed.subject.as_str()),
        ip: client_ip(),
    };
    let verdict = counters
        .count(&limit, Kind::Pulls, &caller)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot count a pull");
            Denial::StateUnavailable
        })?;
    match verdict {
        Verdict::Allowed(headers) => Ok(Some(headers)),
        Verdict::Limited {
            headers,
            retry_after,
        } => {
            metrics
                .rate_limited
                .with_label_values(&[plan.name.as_str(), Kind::Pulls.as_str()])
                .inc();
            Err(Denial::RateLimited {
                headers,
                retry_after,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::testkit::settings;
    use crate::policy::limits::Limit;
    use crate::registry::route;
    use crate::state::memory::MemoryCounters;
    use crate::state::{Hit, StateError};

    struct Down;

    #[async_trait::async_trait]
    impl Counters for Down {
        async fn hit(&self, _: &str, _: Duration) -> Result<Hit, StateError> {
            Err(StateError("down".into()))
        }
    }

    fn allowed(method: &str, path: &str, plan: Option<&str>, license: Option<&str>) -> Allowed {
        Allowed {
            routed: route(method, path, None).unwrap(),
            subject: "alice".into(),
            plan: plan.map(String::from),
            license: license.map(String::from),
            values: Default::default(),
        }
    }

    /// Only a manifest GET under a plan with `limits.pulls` is counted: 3 within the limit with
    /// the headers counting down, then 429; HEAD, blobs and unlimited plans are not counted; a
    /// plan claim the configuration no longer knows falls back to `defaultPlan`; a store that
    /// cannot count refuses with 503 `state_unavailable`.
    #[tokio::test]
    async fn which_requests_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings(dir.path(), "dpop", "");
        settings
            .policy
            .plans
            .get_mut("enterprise")
            .unwrap()
            .limits
            .pulls = Some(Limit {
            count: 3,
            per: Duration::from_secs(3600),
        });
        let manifest = "/v2/acme/app/manifests/v1";
        let counters = MemoryCounters::default();
        let metrics = Metrics::new();
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        let count = |method: &'static str, path: &str, plan: &str| {
            let a = allowed(method, path, Some(plan), Some("L1"));
            let (counters, settings, metrics) = (&counters, &settings, &metrics);
            async move { count_pull(counters, metrics, settings, &a, method, || ip).await }
        };
        for remaining in [2, 1, 0] {
            let got = count("GET", manifest, "enterprise").await;
            assert_eq!(got.unwrap().map(|h| h.remaining), Some(remaining));
        }
        let past = count("GET", manifest, "enterprise").await;
        assert_eq!(past.unwrap_err().as_str(), "rate_limited");
        // Unknown plan name: defaultPlan (enterprise) applies, under the same license.
        let ghost = count("GET", manifest, "ghost").await;
        assert_eq!(ghost.unwrap_err().as_str(), "rate_limited");

        assert_eq!(
            count("HEAD", manifest, "enterprise").await,
            Ok(None),
            "HEAD is free"
        );
        let blob = format!("/v2/acme/app/blobs/sha256:{}", "a".repeat(64));
        let got = count("GET", &blob, "enterprise").await;
        assert_eq!(got, Ok(None), "blobs are not pulls");
        let got = count("GET", manifest, "nothing").await;
        assert_eq!(got, Ok(None), "a plan without limits");

        let a = allowed("GET", manifest, Some("enterprise"), Some("L2"));
        let got = count_pull(&Down, &metrics, &settings, &a, "GET", || ip).await;
        assert_eq!(got, Err(Denial::StateUnavailable));
    }
}
