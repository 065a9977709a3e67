//! Plan limits on the proxy path (SPEC 8): after `authorize` allowed a `/v2/` request, a
//! manifest `GET` is counted against its plan's `limits.pulls` (`HEAD` is free, as on Docker
//! Hub). Within the limit the response gets the `RateLimit-*` headers; past it, or when the
//! shared state cannot count, the request is refused and never forwarded.

use std::net::IpAddr;

use pingora::proxy::Session;

use super::authorize::Allowed;
use super::denial::Denial;
use super::header_values;
use crate::config::Settings;
use crate::metrics;
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
    limits::client_ip(Some(peer), &forwarded, &edge.peers)
}

/// Counts a pull for `allowed` when it is one (`GET` of a manifest under a plan with
/// `limits.pulls`): `Ok(Some(headers))` to show, `Ok(None)` when nothing was counted, or the
/// refusal. The plan is the token's plan claim as the configuration in force defines it (a plan
/// a reload removed falls back to `defaultPlan`, whose limits then apply).
pub async fn count_pull(
    counters: &dyn Counters,
    settings: &Settings,
    allowed: &Allowed,
    method: &str,
    client_ip: Option<IpAddr>,
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
        ip: client_ip,
    };
    let hit = counters
        .hit(&limits::key(Kind::Pulls, &caller), limit.per)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot count a pull");
            Denial::StateUnavailable
        })?;
    match limits::judge(&limit, &hit) {
        Verdict::Allowed(headers) => Ok(Some(headers)),
        Verdict::Limited {
            headers,
            retry_after,
        } => {
            metrics::get()
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
