//! `GET /v2/_catalog` for a plan with `catalog: true` (docs/namespaces.md): answered by the
//! sidecar, never forwarded. The registry's catalog is read page by page with the sidecar's own
//! token (one it signs for itself with `registry:catalog:*`), filtered to what the caller may pull
//! under the plan in force, and paginated by `registry::catalog`.

use std::sync::Mutex;

use bytes::Bytes;
use pingora::proxy::Session;
use pingora::Result;
use serde::Serialize;

use super::{respond, Allowed, Denial};
use crate::config::Settings;
use crate::registry::catalog::{self, Page, Query, UPSTREAM_PAGE};
use crate::registry::{Resource, RouteError, Scope};
use crate::token::IssuedClaims;

/// Lifetime of the sidecar's own catalog token.
const OWN_TOKEN_LIFETIME: i64 = 60;

/// The HTTP client catalog pages are read with, rebuilt when the configuration changes.
#[derive(Default)]
pub struct Upstream {
    client: Mutex<Option<(u64, reqwest::Client)>>,
}

impl Upstream {
    fn client(&self, settings: &Settings) -> reqwest::Client {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some((generation, client)) if *generation == settings.generation => client.clone(),
            _ => {
                let timeout = settings.upstream.connect_timeout + settings.upstream.read_timeout;
                let client = crate::health::upstream_client(settings, timeout);
                *slot = Some((settings.generation, client.clone()));
                client
            }
        }
    }
}

/// Why a catalog page could not be read from the registry (answered 502, logged).
#[derive(Debug, thiserror::Error)]
enum UpstreamError {
    #[error("the registry's catalog could not be read: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the registry answered {0} to the sidecar's catalog request")]
    Status(u16),
    #[error("the sidecar could not sign its own catalog token")]
    Signing,
}

#[derive(Serialize)]
struct Body<'a> {
    repositories: &'a [String],
}

/// The Distribution catalog body of one upstream page.
#[derive(serde::Deserialize)]
struct UpstreamBody {
    #[serde(default)]
    repositories: Vec<String>,
}

/// Answers an allowed `GET /v2/_catalog`. The plan in force must still have `catalog: true`;
/// its patterns are filled from the values the realm put in the token.
pub async fn answer(
    session: &mut Session,
    settings: &Settings,
    upstream: &Upstream,
    allowed: &Allowed,
    query: Option<&str>,
    now: i64,
) -> Result<()> {
    let plan = settings
        .policy
        .plan_for(allowed.plan.as_deref())
        .filter(|p| p.catalog);
    let Some(plan) = plan else {
        let denial = Denial::InsufficientScope {
            scope: "registry:catalog:*".into(),
        };
        return respond::denial(session, &denial, &settings.realm, &settings.service, false).await;
    };
    let key = settings.issuer.keys.current.cursor_key();
    let query = match Query::parse(query, key) {
        Ok(q) => q,
        Err(e) => {
            let denial = Denial::Route(RouteError::BadQuery(e.text()));
            tracing::info!(decision = "denied", route = "catalog", status = 400, reason = %e, "catalog query refused");
            return respond::denial(session, &denial, &settings.realm, &settings.service, false)
                .await;
        }
    };
    let entitled = plan.for_caller(&allowed.values);
    for (pattern, why) in &entitled.unusable {
        tracing::info!(plan = %plan.name, pattern, reason = %why, "a plan pattern matches nothing for this caller");
    }

    let client = upstream.client(settings);
    let own = own_token(settings, now).map_err(|_| UpstreamError::Signing);
    let listing = match own {
        Ok(token) => {
            let fetch = |last: Option<String>| page(&client, settings, &token, last);
            catalog::list(&query, |name| entitled.may_pull(name), fetch).await
        }
        Err(e) => Err(e),
    };
    let listing = match listing {
        Ok(listing) => listing,
        Err(e) => {
            tracing::warn!(route = "catalog", error = %e, "the registry's catalog could not be read");
            let message = "the registry's catalog could not be read";
            return respond::docker_error(session, 502, "UNAVAILABLE", message, false).await;
        }
    };
    tracing::info!(
        decision = "allowed",
        route = "catalog",
        sub = allowed.subject.as_str(),
        plan = %plan.name,
        listed = listing.repositories.len(),
        upstream_pages = listing.pages,
        "filtered catalog"
    );
    let mut headers = vec![(
        "Docker-Distribution-API-Version",
        "registry/2.0".to_string(),
    )];
    if let Some(link) = catalog::link_header(&listing.next, query.n, key) {
        headers.push(("Link", link));
    }
    let body = serde_json::to_vec(&Body {
        repositories: &listing.repositories,
    })
    .unwrap_or_default();
    respond::send(
        session,
        200,
        "application/json; charset=utf-8",
        &headers,
        Bytes::from(body),
        false,
    )
    .await
}

/// A registry token the sidecar signs for itself: `registry:catalog:*`, one minute.
fn own_token(settings: &Settings, now: i64) -> std::result::Result<String, ()> {
    let claims = IssuedClaims {
        iss: settings.issuer.name.clone(),
        sub: "registry-token".into(),
        aud: settings.service.clone(),
        exp: now + OWN_TOKEN_LIFETIME,
        nbf: now,
        iat: now,
        jti: crate::jose::b64url_encode(rand::random::<[u8; 16]>()),
        access: vec![Scope::new(Resource::catalog(), ["*"])],
        extra: serde_json::Map::new(),
    };
    settings.issuer.keys.sign(&claims).map_err(|e| {
        tracing::error!(error = %e, "signing the sidecar's catalog token failed");
    })
}

/// One upstream page: `GET /v2/_catalog?n=1000[&last=L]`; `more` when the registry sent `Link`.
async fn page(
    client: &reqwest::Client,
    settings: &Settings,
    token: &str,
    last: Option<String>,
) -> std::result::Result<Page, UpstreamError> {
    let mut url = format!("{}/v2/_catalog?n={UPSTREAM_PAGE}", settings.upstream.origin);
    if let Some(last) = &last {
        url.push_str(&format!("&last={}", catalog::query_escape(last)));
    }
    let response = client
        .get(&url)
        .bearer_auth(token)
        .header("Host", settings.public_host.as_str())
        .send()
        .await?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(UpstreamError::Status(status));
    }
    let more = response.headers().contains_key("link");
    let body: UpstreamBody = response.json().await?;
    Ok(Page {
        names: body.repositories,
        more,
    })
}
