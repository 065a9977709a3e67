//! The pingora `ProxyHttp` implementation: a thin dispatcher, its hooks in phase order.
//!
//! `request_filter` answers everything the sidecar owns (health, JWKS, the token realm, every
//! refusal) and lets through only `/v2/` requests that `authorize` allowed; the other hooks
//! pick the upstream, clean the forwarded headers, fix `Location`, and count.

mod authorize;
mod cached;
pub mod catalog;
mod denial;
mod hygiene;
mod limit;
pub mod respond;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

pub use authorize::{authorize, is_form, Allowed, V2Request};
pub use denial::{Challenge, Denial};

use crate::authority::{Authority, Succession};
use crate::cache::Cache;
use crate::config::Settings;
use crate::edge::{forwarded_certificate, forwarded_for};
use crate::health::Health;
use crate::jose::Clock;
use crate::metrics::Metrics;
use crate::policy::limits::RateHeaders;
use crate::state::Counters;
use crate::token::cache::VerifiedTokens;
use crate::token::realm::{self, Refusal, TokenRequest};

/// Largest `POST /token` form accepted.
const MAX_FORM: usize = 64 * 1024;
/// Time a client may stay silent mid-request (slow-client protection).
const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Headers a client must never choose for the registry: proxy and client-certificate claims.
const STRIPPED: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-forwarded-client-cert",
    "client-cert",
    "client-cert-chain",
    "x-ssl-client-cert",
    "x-client-cert",
];

/// The sidecar's proxy service: everything a request needs, shared, and no process global.
pub struct Sidecar {
    pub settings: Arc<ArcSwap<Settings>>,
    /// The Authority in force (and the one a reload is bringing in).
    pub authority: Arc<Succession>,
    /// `/readyz`, shared with the admin listener (one probe cache).
    pub health: Arc<Health>,
    /// Where requests are counted; the admin listener renders the same registry.
    pub metrics: Arc<Metrics>,
    /// Registry tokens already verified, so that a token's signature is checked once.
    pub tokens: Arc<VerifiedTokens>,
    /// What token times (`exp`, `nbf`, `iat`, DPoP `iat`, nonces) are read against.
    pub clock: Arc<dyn Clock>,
    /// Where plan limits count (docs/http.md, "Plan limits"): this process's memory, or Redis
    /// shared by replicas.
    pub counters: Arc<dyn Counters>,
    /// The edge cache (docs/cache.md), shared by every request and kept across reloads.
    pub cache: Arc<Cache>,
    /// How the filtered catalog reads the registry's (docs/namespaces.md).
    pub catalog: catalog::Upstream,
}

/// Per-request state: one configuration version for the whole request.
pub struct Ctx {
    settings: Arc<Settings>,
    /// The Authority in force when the request came, with its own settings.
    authority: Arc<Authority>,
    started: Instant,
    /// Route label for `/v2/` requests the sidecar forwards or refuses; `None` elsewhere.
    route: Option<&'static str>,
    /// The `sub` of the token that allowed the request.
    subject: Option<String>,
    upstream_query: Option<String>,
    /// `RateLimit-*` headers for a counted pull.
    rate_headers: Option<RateHeaders>,
    /// What the edge cache did with the request, for its log line.
    cache: cached::Outcome,
    /// A miss being filled from the registry's answer.
    fill: Option<cached::Fill>,
    /// The entry a DELETE dropped, dropped again once the registry answered.
    deleted: Option<crate::cache::Key>,
}

fn header_values<'a>(req: &'a RequestHeader, name: &str) -> Vec<&'a str> {
    req.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{fffd}"))
        .collect()
}

/// The raw request target split into path and query, or `None` when it is not UTF-8.
fn target(req: &RequestHeader) -> Option<(String, Option<String>)> {
    let raw = std::str::from_utf8(req.raw_path()).ok()?;
    Some(match raw.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (raw.to_string(), None),
    })
}

/// SHA-256 of the client certificate: the one the TLS handshake verified, else the one a
/// trusted edge reports (its header from any other peer is ignored).
fn client_certificate(session: &Session, settings: &Settings) -> Option<[u8; 32]> {
    let verified = session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .and_then(|tls| <[u8; 32]>::try_from(tls.cert_digest.as_slice()).ok());
    if verified.is_some() {
        return verified;
    }
    let edge = settings.trusted_edge.as_ref()?;
    if !edge.trusts(session.client_addr()?.as_inet()?.ip()) {
        return None;
    }
    forwarded_certificate(&header_values(session.req_header(), &edge.header))
}

/// Reads a `POST /token` form; `None` when it is larger than [`MAX_FORM`].
async fn read_form(session: &mut Session) -> Result<Option<Vec<u8>>> {
    let mut form = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        form.extend_from_slice(&chunk);
        if form.len() > MAX_FORM {
            return Ok(None);
        }
    }
    Ok(Some(form))
}

impl Sidecar {
    /// Status only: this listener may face the internet (details are on the admin listener).
    async fn readiness(&self, session: &mut Session, ctx: &Ctx) -> Result<()> {
        let report = self.health.check(&ctx.settings, &ctx.authority, None).await;
        let no_store = [("Cache-Control", "no-store".to_string())];
        respond::json(session, report.status(), &report.public(), &no_store).await
    }

    /// The token realm; a `POST` form must be whole by `deadline`.
    async fn token(
        &self,
        session: &mut Session,
        settings: &Settings,
        authority: &Authority,
        deadline: Instant,
    ) -> Result<()> {
        let method = session.req_header().method.as_str().to_string();
        if method != "GET" && method != "POST" {
            return respond::send(
                session,
                405,
                "text/plain",
                &[("Allow", "GET, POST".into())],
                Bytes::from_static(b"use GET or POST"),
                true,
            )
            .await;
        }
        let mut form = Vec::new();
        if method == "POST" {
            let deadline = tokio::time::Instant::from_std(deadline);
            form = match tokio::time::timeout_at(deadline, read_form(session)).await {
                Ok(Ok(Some(form))) => form,
                Ok(Ok(None)) => {
                    return respond::send(
                        session,
                        413,
                        "text/plain",
                        &[],
                        Bytes::from_static(b"form too large"),
                        true,
                    )
                    .await
                }
                Ok(Err(e)) => return Err(e),
                Err(_late) => {
                    let late = Denial::BodyTimeout;
                    late.count(&self.metrics);
                    tracing::info!(
                        decision = "denied",
                        route = "token",
                        status = late.status(),
                        reason = late.as_str(),
                        "request refused"
                    );
                    let (realm, service) = (&settings.realm, &settings.service);
                    return respond::denial(session, &late, realm, service, true).await;
                }
            };
        }
        let req = session.req_header();
        let query = target(req).and_then(|(_, q)| q);
        let request = TokenRequest {
            method: &method,
            query: query.as_deref(),
            form: (method == "POST").then_some(form.as_slice()),
            authorization: header_values(req, "authorization"),
            dpop: header_values(req, "dpop"),
            client_cert_sha256: client_certificate(session, settings),
            client_ip: limit::client_ip(session, settings),
            counters: self.counters.as_ref(),
        };
        let mut audit = realm::Audit::default();
        let outcome = realm::issue(
            &settings.issuer,
            &settings.policy,
            authority,
            &request,
            self.clock.now(),
            &mut audit,
        )
        .await;
        let (sub, plan, license, scheme) = (
            audit.subject.as_deref(),
            audit.plan.as_deref(),
            audit.license_hash(),
            audit.scheme,
        );
        match outcome {
            Ok(issued) => {
                self.metrics.issued.with_label_values(&[&issued.plan]).inc();
                if audit.refreshing {
                    self.metrics.refresh.with_label_values(&["ok"]).inc();
                } else if issued.refresh_token.is_some() {
                    self.metrics.refresh.with_label_values(&["issued"]).inc();
                }
                tracing::info!(decision = "issued", route = "token", status = 200, sub, plan, license, scheme, requested = ?audit.requested, granted = ?issued.granted, "token issued");
                let nonce: Vec<_> = issued
                    .dpop_nonce
                    .iter()
                    .map(|n| ("DPoP-Nonce", n.clone()))
                    .collect();
                respond::json(session, 200, &issued, &nonce).await
            }
            Err(refusal) => {
                let reason = refusal.as_str();
                self.metrics.rejected.with_label_values(&[reason]).inc();
                if let Refusal::RateLimited { .. } = refusal {
                    let labels = [plan.unwrap_or_default(), "tokens"];
                    self.metrics.rate_limited.with_label_values(&labels).inc();
                }
                if audit.refreshing {
                    self.metrics.refresh.with_label_values(&[reason]).inc();
                }
                tracing::info!(decision = "rejected", route = "token", status = refusal.status(), reason, sub, plan, license, scheme, requested = ?audit.requested, "token refused");
                let nonce = refusal
                    .needs_nonce()
                    .then(|| authority.fresh_nonce(self.clock.now()))
                    .flatten();
                let constraint = authority.config().sender_constraint;
                respond::refusal(session, &refusal, constraint, nonce).await
            }
        }
    }

    /// `Ok(true)` when the sidecar answered, `Ok(false)` when the request goes to the registry.
    async fn v2(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        path: &str,
        query: Option<&str>,
    ) -> Result<bool> {
        let req = session.req_header();
        let request = V2Request {
            method: req.method.as_str(),
            path,
            query,
            authorization: header_values(req, "authorization"),
            content_types: header_values(req, "content-type"),
        };
        let authority = ctx.authority.config();
        let now = self.clock.now();
        let decided = match authorize(&ctx.settings, authority, &self.tokens, &request, now) {
            Ok(allowed) => {
                let counters = self.counters.as_ref();
                limit::count_pull(
                    counters,
                    &self.metrics,
                    &ctx.settings,
                    &allowed,
                    request.method,
                    || limit::client_ip(session, &ctx.settings),
                )
                .await
                .map(|headers| (allowed, headers))
            }
            Err(denial) => Err(denial),
        };
        match decided {
            // The filtered catalog is the sidecar's own answer (docs/namespaces.md).
            Ok((allowed, _)) if allowed.routed.route == crate::registry::Route::Catalog => {
                ctx.route = Some(allowed.routed.route.label());
                ctx.subject = Some(allowed.subject.clone());
                let settings = &ctx.settings;
                catalog::answer(session, settings, &self.catalog, &allowed, query, now).await?;
                Ok(true)
            }
            Ok((allowed, rate_headers)) => {
                ctx.route = Some(allowed.routed.route.label());
                let settings = ctx.settings.clone();
                self.cache.apply(&settings.cache, settings.generation);
                ctx.cache = cached::before_forward(
                    &self.cache,
                    &settings.cache,
                    session,
                    &allowed.routed,
                    path,
                    rate_headers.as_ref(),
                    &mut ctx.fill,
                    &mut ctx.deleted,
                )
                .await?;
                ctx.rate_headers = rate_headers;
                ctx.subject = Some(allowed.subject);
                ctx.upstream_query = allowed.routed.upstream_query;
                Ok(ctx.cache == cached::Outcome::Hit)
            }
            Err(denial) => {
                denial.count(&self.metrics);
                tracing::info!(
                    decision = "denied",
                    route = "v2",
                    status = denial.status(),
                    reason = denial.as_str(),
                    method = request.method,
                    path,
                    "request refused"
                );
                // A refused upload may leave its body unread: close rather than misparse it.
                let has_body = req.headers.contains_key("content-length")
                    || req.headers.contains_key("transfer-encoding");
                let settings = &ctx.settings;
                respond::denial(
                    session,
                    &denial,
                    &settings.realm,
                    &settings.service,
                    has_body,
                )
                .await?;
                Ok(true)
            }
        }
    }
}

#[async_trait]
impl ProxyHttp for Sidecar {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            settings: self.settings.load_full(),
            authority: self.authority.current(),
            started: Instant::now(),
            route: None,
            subject: None,
            upstream_query: None,
            rate_headers: None,
            cache: cached::Outcome::None,
            fill: None,
            deleted: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let settings = ctx.settings.clone();
        session.set_read_timeout(Some(CLIENT_READ_TIMEOUT));
        let raw = session
            .as_downstream()
            .as_http1()
            .map(|h1| h1.get_headers_raw_bytes());
        let checked = hygiene::check(session.req_header(), raw.as_deref());
        let split = checked.and_then(|()| target(session.req_header()).ok_or(Denial::PathNotUtf8));
        let (path, query) = match split {
            Ok(split) => split,
            Err(denial) => {
                denial.count(&self.metrics);
                tracing::info!(
                    decision = "denied",
                    status = denial.status(),
                    reason = denial.as_str(),
                    "request refused before routing"
                );
                let (realm, service) = (&settings.realm, &settings.service);
                respond::denial(session, &denial, realm, service, true).await?;
                return Ok(true);
            }
        };
        match path.as_str() {
            "/healthz" => respond::text(session, 200, "ok").await?,
            "/readyz" => self.readiness(session, ctx).await?,
            "/.well-known/jwks.json" => {
                respond::json(session, 200, &settings.issuer.keys.jwks(), &[]).await?
            }
            "/token" => {
                let authority = ctx.authority.clone();
                // The form is small: the whole of it within headerTimeout of the head's end
                // (docs/security.md, case 85), not only each read within the per-read timeout.
                // `/v2/` upload bodies keep only the per-read timeout: large slow uploads are
                // legitimate.
                let deadline = ctx.started + settings.limits.header_timeout;
                self.token(session, &settings, &authority, deadline).await?
            }
            p if p == "/v2" || p.starts_with("/v2/") => {
                return self.v2(session, ctx, p, query.as_deref()).await
            }
            _ => respond::docker_error(session, 404, "NOT_FOUND", "no such endpoint", true).await?,
        }
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let upstream = &ctx.settings.upstream;
        let mut peer = HttpPeer::new(upstream.addr, upstream.tls, upstream.sni.clone());
        peer.options.connection_timeout = Some(upstream.connect_timeout);
        peer.options.read_timeout = Some(upstream.read_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        if upstream.tls {
            peer.options.verify_cert = !upstream.insecure_skip_verify;
            peer.options.verify_hostname = !upstream.insecure_skip_verify;
            peer.options.ca = upstream.ca.clone();
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let settings = &ctx.settings;
        // One pass over the few headers a request has; the rare claim found is removed.
        let edge_header = settings.trusted_edge.as_ref().map(|e| e.header.as_str());
        let claimed: Vec<_> = upstream
            .headers
            .keys()
            .filter(|name| {
                STRIPPED.contains(&name.as_str())
                    || edge_header.is_some_and(|h| h.eq_ignore_ascii_case(name.as_str()))
            })
            .cloned()
            .collect();
        for name in claimed {
            upstream.remove_header(&name);
        }
        upstream.insert_header("Host", settings.public_host.as_str())?;
        upstream.insert_header("X-Forwarded-Host", settings.public_host.as_str())?;
        upstream.insert_header("X-Forwarded-Proto", settings.public_scheme.as_str())?;
        if let Some(peer) = session.client_addr().and_then(|a| a.as_inet()) {
            let client = limit::client_ip(session, settings).unwrap_or(peer.ip());
            let forwarded = forwarded_for(peer.ip(), client);
            upstream.insert_header("X-Forwarded-For", forwarded)?;
        }
        if let Some(query) = ctx.upstream_query.take() {
            let path = target(upstream).map(|(p, _)| p).unwrap_or_default();
            let rewritten = if query.is_empty() {
                path
            } else {
                format!("{path}?{query}")
            };
            upstream.set_raw_path(rewritten.as_bytes())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // The registry writes absolute `Location`s from X-Forwarded-*; fix any that slipped through.
        let origin = &ctx.settings.upstream.origin;
        let location = response
            .headers
            .get("location")
            .and_then(|l| l.to_str().ok());
        if let Some(rest) = location.and_then(|l| l.strip_prefix(origin.as_str())) {
            let fixed = format!("{}{rest}", ctx.settings.public_origin);
            response.insert_header("Location", fixed)?;
        }
        if let Some(rate) = &ctx.rate_headers {
            for (name, value) in rate.headers() {
                response.insert_header(name, value)?;
            }
        }
        cached::on_response(&self.cache, &mut ctx.fill, &ctx.settings.cache, response);
        let status = response.status.as_u16();
        cached::after_delete(&self.cache, ctx.deleted.take(), status).await;
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        let settings = &ctx.settings.cache;
        cached::on_body(&self.cache, settings, &mut ctx.fill, body, end_of_stream);
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        let code = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(code)) => *code,
            (ErrorSource::Upstream, ErrorType::ReadTimedout | ErrorType::WriteTimedout) => 504,
            (ErrorSource::Upstream, ErrorType::ConnectTimedout) => 504,
            (ErrorSource::Upstream, _) => 502,
            (
                ErrorSource::Downstream,
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
            ) => 0,
            (ErrorSource::Downstream, _) => 400,
            _ => 500,
        };
        if code > 0 {
            let message = match code {
                502 => "the registry cannot be reached",
                504 => "the registry did not answer in time",
                400 => "the request could not be read",
                _ => "the request failed",
            };
            let code_name = if code >= 500 {
                "UNAVAILABLE"
            } else {
                "UNSUPPORTED"
            };
            let _ = respond::docker_error(session, code, code_name, message, true).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let upstream_failed = e.is_some_and(|e| e.esource() == &ErrorSource::Upstream);
        cached::abandoned(&self.cache, ctx.fill.take(), upstream_failed);
        let Some(route) = ctx.route else { return };
        let req = session.req_header();
        let method = req.method.as_str();
        let path = req.uri.path();
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let m = &self.metrics;
        m.proxy_requests
            .with_label_values(&[method, status.to_string().as_str()])
            .inc();
        m.proxy_duration
            .with_label_values(&[method])
            .observe(ctx.started.elapsed().as_secs_f64());
        if status == 401 {
            // The sidecar allowed this request, so the registry refused the sidecar's own token.
            tracing::warn!(
                route,
                method,
                path,
                status,
                cause = "the registry does not accept the sidecar's tokens",
                "upstream answered 401 to an allowed request: its auth.token issuer, service or rootcertbundle does not match the sidecar's signing; run `registry-token doctor --check check.upstream-trusts-tokens`"
            );
        }
        tracing::info!(
            decision = "allowed",
            route,
            method,
            status,
            sub = ctx.subject.as_deref(),
            path,
            cache = ctx.cache.label(),
            error = e.map(|e| e.to_string()),
            "proxied"
        );
    }
}
