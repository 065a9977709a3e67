//! The token realm (docs/http.md): `GET /token` and the OAuth2 `POST /token` form.
//!
//! service → scopes → Authority token and its sender constraint → revocation → plan → grant →
//! DPoP proof spent → signed registry token. The proof is spent last, so a refused request
//! leaves no trace in the replay store. Each refusal is a [`Refusal`] variant: its `as_str()` is
//! the documented `reason` (metric label and body), and `respond::refusal` writes it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use super::refresh::{self, Possession, RefreshClaims, RefreshError, RefreshToken};
use super::{IssuedClaims, Issuer};
use crate::authority::{AuthError, Authority, AuthorityConfig, Caller, Presented};
use crate::policy::limits::{self, Kind, Verdict};
use crate::policy::{Entitlement, Plan, Policy, Values};
use crate::registry::{parse_scopes, Resource, Scope, ScopeError};
use crate::state::Counters;

/// `expires_in` is never below this many seconds (Docker clients refuse shorter).
const MIN_EXPIRES_IN: i64 = 60;

/// What the realm needs of an HTTP request: raw values, nothing pingora-specific.
pub struct TokenRequest<'a> {
    pub method: &'a str,
    pub query: Option<&'a str>,
    /// The `application/x-www-form-urlencoded` body of a POST.
    pub form: Option<&'a [u8]>,
    pub authorization: Vec<&'a str>,
    pub dpop: Vec<&'a str>,
    pub client_cert_sha256: Option<[u8; 32]>,
    /// The client's address (`policy::limits::client_ip`): what a caller with neither license
    /// nor subject is counted under.
    pub client_ip: Option<IpAddr>,
    /// Where plan limits count (docs/http.md, "Plan limits").
    pub counters: &'a dyn Counters,
}

/// The success body (Distribution token spec plus OAuth2's `access_token`).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub access_token: String,
    pub expires_in: i64,
    pub issued_at: String,
    /// The granted scopes, space-separated: on a refresh grant (RFC 6749 section 5.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// On `offline_token=true` / `access_type=offline` a new one; on a refresh grant the one
    /// presented (docs/http.md, "Refresh tokens").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<RefreshToken>,
    #[serde(skip)]
    pub plan: String,
    #[serde(skip)]
    pub granted: Vec<String>,
    /// The next server nonce, when nonces are on.
    #[serde(skip)]
    pub dpop_nonce: Option<String>,
}

/// Why the realm refused a token request. `Display` is the `error_description`: it never
/// quotes a token, proof or key.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("grant_type `{0}` is not supported here; use password, refresh_token (when refresh tokens are enabled), or GET")]
    UnsupportedGrant(String),
    #[error("password is repeated")]
    RepeatedPassword,
    #[error("an access token is never accepted in the query or form; send it in the Authorization header")]
    TokenInQuery,
    #[error("service is repeated")]
    RepeatedService,
    #[error("service is missing")]
    MissingService,
    #[error("this realm does not issue tokens for that service")]
    ServiceNotAllowed,
    #[error(transparent)]
    MalformedScope(#[from] ScopeError),
    /// The OpTok or its binding (checks 3 and 4 in docs/http.md).
    #[error(transparent)]
    Authority(AuthError),
    /// No credentials, and the scopes need some (anonymous access grants none of them).
    #[error("credentials are required for this scope")]
    MissingCredentials,
    #[error("this license has been revoked")]
    LicenseRevoked,
    #[error("the caller's plan is not known to this registry")]
    UnknownPlan,
    #[error("the plan grants none of the requested scopes")]
    PlanDenied,
    #[error("the token could not be signed")]
    SigningFailed,
    /// Past the plan's `limits.tokens` (docs/http.md, "Plan limits").
    #[error("token rate limit reached: {limit} tokens per {window}s; retry after {retry_after}s")]
    RateLimited {
        limit: u64,
        window: u64,
        retry_after: u64,
    },
    /// The shared state could not count the issuance, or could not spend the DPoP proof
    /// (`AuthError::StateUnavailable`).
    #[error("the shared state store is unavailable; retry later")]
    StateUnavailable,
    /// A `grant_type=refresh_token` that is refused: `400 invalid_grant`
    /// (docs/http.md, "Refresh tokens").
    #[error(transparent)]
    Refresh(#[from] RefreshError),
}

/// An Authority error is the realm's refusal as it is, except the shared store's: a replay
/// store that cannot answer (`state.redis`) is the same 503 `state_unavailable` as counters
/// that cannot count.
impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::StateUnavailable => Refusal::StateUnavailable,
            e => Refusal::Authority(e),
        }
    }
}

impl Refusal {
    /// The documented `reason`: metric label and the body's `reason`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::UnsupportedGrant(_) => "unsupported_grant_type",
            Refusal::RepeatedPassword | Refusal::TokenInQuery => "invalid_request",
            Refusal::RepeatedService | Refusal::MissingService | Refusal::ServiceNotAllowed => {
                "service_not_allowed"
            }
            Refusal::MalformedScope(_) => "malformed_scope",
            Refusal::Authority(e) => e.reason(),
            Refusal::MissingCredentials => "missing_credentials",
            Refusal::LicenseRevoked => "license_revoked",
            Refusal::UnknownPlan => "unknown_plan",
            Refusal::PlanDenied => "plan_denied",
            Refusal::SigningFailed => "signing_failed",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::StateUnavailable => "state_unavailable",
            Refusal::Refresh(e) => e.reason(),
        }
    }

    /// The HTTP status (RFC 6750: 400 malformed, 401 credentials, 403 plan or revocation).
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Authority(e) => e.status(),
            Refusal::MissingCredentials => 401,
            Refusal::LicenseRevoked | Refusal::UnknownPlan | Refusal::PlanDenied => 403,
            Refusal::SigningFailed => 500,
            Refusal::RateLimited { .. } => 429,
            Refusal::StateUnavailable => 503,
            _ => 400,
        }
    }

    /// The RFC 6750 / RFC 9449 `error` code of the body.
    pub fn error(&self) -> &'static str {
        match self {
            Refusal::MalformedScope(_) => "invalid_scope",
            Refusal::Authority(e) => e.oauth_error().unwrap_or("invalid_request"),
            Refusal::MissingCredentials | Refusal::LicenseRevoked => "invalid_token",
            Refusal::UnknownPlan | Refusal::PlanDenied => "insufficient_scope",
            Refusal::SigningFailed => "server_error",
            Refusal::UnsupportedGrant(_) => "unsupported_grant_type",
            Refusal::Refresh(e) => e.error(),
            Refusal::StateUnavailable => "temporarily_unavailable",
            _ => "invalid_request",
        }
    }

    /// The Docker `errors` code, so clients print a sentence.
    pub fn docker_code(&self) -> &'static str {
        match self.status() {
            401 => "UNAUTHORIZED",
            403 => "DENIED",
            429 => "TOOMANYREQUESTS",
            503 => "UNAVAILABLE",
            _ => "INVALID_REQUEST",
        }
    }

    /// The challenge the refusal needs: the Authority's (which schemes the sender constraint
    /// accepts) for credential problems, a Bearer `error` for the plan's 403s, none for a
    /// malformed request.
    pub fn challenge(&self) -> RealmChallenge<'_> {
        match self {
            Refusal::Authority(e) => RealmChallenge::Authority(e),
            Refusal::MissingCredentials => {
                RealmChallenge::Authority(&AuthError::MissingCredentials)
            }
            Refusal::LicenseRevoked | Refusal::UnknownPlan | Refusal::PlanDenied => {
                RealmChallenge::Bearer
            }
            _ => RealmChallenge::None,
        }
    }

    /// Seconds for `Retry-After`: when the Authority's keys or the shared state cannot be had,
    /// and until the window of a rate limit ends.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Refusal::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => (self.status() == 503).then_some(limits::UNAVAILABLE_RETRY_AFTER),
        }
    }

    /// True when the answer must carry a fresh `DPoP-Nonce` (RFC 9449 section 8).
    pub fn needs_nonce(&self) -> bool {
        match self {
            Refusal::Authority(e) => e.needs_nonce(),
            Refusal::Refresh(e) => e.needs_nonce(),
            _ => false,
        }
    }
}

/// The `WWW-Authenticate` a [`Refusal`] needs.
#[derive(Debug)]
pub enum RealmChallenge<'a> {
    None,
    /// `AuthError::www_authenticate` under the configured sender constraint.
    Authority(&'a AuthError),
    /// `Bearer error="…",error_description="…"` (RFC 6750 section 3).
    Bearer,
}

/// The parameters of a token request, from the query (GET) or the form (POST).
#[derive(Default)]
struct Params {
    service: Option<String>,
    scopes: Vec<String>,
    password: Option<String>,
    /// `grant_type=refresh_token`: the token presented.
    refresh_token: Option<String>,
    /// `offline_token=true` (GET) or `access_type=offline` (POST): a refresh token is asked for.
    offline: bool,
    client_id: Option<String>,
}

fn params(req: &TokenRequest<'_>) -> Result<Params, Refusal> {
    let mut p = Params::default();
    let mut services = 0;
    let mut pairs: Vec<(String, String)> = req
        .query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let form: Vec<(String, String)> = req
        .form
        .map(|f| form_urlencoded::parse(f).into_owned().collect())
        .unwrap_or_default();
    if req.method == "POST" {
        let grant = form
            .iter()
            .find(|(k, _)| k == "grant_type")
            .map(|(_, v)| v.as_str());
        match grant {
            Some("password") | None => {}
            Some("refresh_token") => {
                let mut given = form.iter().filter(|(k, _)| k == "refresh_token");
                match (given.next(), given.next()) {
                    (Some((_, token)), None) if !token.is_empty() => {
                        p.refresh_token = Some(token.clone())
                    }
                    _ => return Err(RefreshError::Missing.into()),
                }
            }
            Some(other) => return Err(Refusal::UnsupportedGrant(other.to_string())),
        }
        if form.iter().filter(|(k, _)| k == "password").count() > 1 {
            return Err(Refusal::RepeatedPassword);
        }
        p.password = form
            .iter()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| v.clone());
    }
    pairs.extend(form);
    for (key, value) in pairs {
        match key.as_str() {
            "service" => {
                services += 1;
                p.service = Some(value);
            }
            "scope" => p.scopes.push(value),
            "access_token" => return Err(Refusal::TokenInQuery),
            "offline_token" => p.offline |= value == "true",
            "access_type" => p.offline |= value == "offline",
            "client_id" => p.client_id = Some(value),
            _ => {}
        }
    }
    if services > 1 {
        return Err(Refusal::RepeatedService);
    }
    Ok(p)
}

/// What a decision was about, for its log event: filled in as the realm learns it. Holds no
/// token; the license is only ever logged hashed.
#[derive(Debug, Default)]
pub struct Audit {
    pub subject: Option<String>,
    pub plan: Option<String>,
    pub license: Option<String>,
    pub requested: Vec<String>,
    /// How the OpTok was presented (`dpop`, `bearer`, `basic`, `form`), or `refresh_token`.
    pub scheme: Option<&'static str>,
    /// A `grant_type=refresh_token` request (counted in `registry_token_refresh_total`).
    pub refreshing: bool,
}

impl Audit {
    /// The license as logs show it: the first 12 hex digits of its SHA-256.
    pub fn license_hash(&self) -> Option<String> {
        self.license
            .as_deref()
            .map(crate::policy::revocation::license_hash)
    }
}

/// Runs the realm for one request. `now` is the Unix time in seconds. `authority` is the one in
/// force: its own settings (sender constraint, claim names) apply. The steps, in the order
/// docs/http.md gives them; each refuses with its [`Refusal`].
pub async fn issue(
    issuer: &Issuer,
    policy: &Policy,
    authority: &Authority,
    req: &TokenRequest<'_>,
    now: i64,
    audit: &mut Audit,
) -> Result<TokenResponse, Refusal> {
    let params = params(req)?;
    audit.refreshing = params.refresh_token.is_some();
    if audit.refreshing && !issuer.refresh.enabled {
        return Err(Refusal::UnsupportedGrant("refresh_token".into()));
    }
    let service = service(issuer, &params)?;
    let scopes = parse_scopes(params.scopes.iter().map(String::as_str))?;
    audit.requested = scopes.iter().map(Scope::to_string).collect();

    let caller = authenticate(issuer, policy, authority, req, &params, now).await?;
    let anonymous = caller.is_none();
    let caller = or_anonymous(caller, policy, &scopes)?;
    audit.learn(&caller, policy);
    let plan = plan(policy, &caller)?;
    let values = values(&caller, anonymous);
    let access = grant_or_refuse(plan, &values, &scopes, anonymous)?;
    count_issuance(plan, &caller, anonymous, req).await?;
    // Last check: spend the DPoP proof only now that the request is granted.
    if let Some(proof) = &caller.proof {
        authority
            .spend(proof, now)
            .await
            .map_err(|e| unspent(e, audit.refreshing))?;
    }

    let refresh_token = refresh_token(issuer, plan, &caller, params, anonymous, now)?;
    let scope = audit.refreshing.then(|| {
        access
            .iter()
            .map(Scope::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    });
    let granted = access.iter().map(Scope::to_string).collect();
    let lifetime = (issuer.lifetime.as_secs() as i64).max(MIN_EXPIRES_IN);
    let claims = IssuedClaims {
        iss: issuer.name.clone(),
        extra: carried_claims(authority.config(), plan, &caller, values, anonymous),
        sub: caller.subject,
        aud: service,
        exp: now.saturating_add(lifetime),
        nbf: now,
        iat: now,
        jti: new_jti(),
        access,
    };
    let token = issuer.keys.sign(&claims).map_err(|e| {
        tracing::error!(error = %e, "signing failed");
        Refusal::SigningFailed
    })?;
    Ok(TokenResponse {
        access_token: token.clone(),
        token,
        expires_in: lifetime,
        issued_at: humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(now.max(0) as u64),
        )
        .to_string(),
        scope,
        refresh_token,
        plan: plan.name.clone(),
        granted,
        dpop_nonce: authority.fresh_nonce(now),
    })
}

/// The `service` asked for: present, and one this realm issues for.
fn service(issuer: &Issuer, params: &Params) -> Result<String, Refusal> {
    match params.service.as_deref() {
        None | Some("") => Err(Refusal::MissingService),
        Some(s) if !issuer.services.iter().any(|allowed| allowed == s) => {
            Err(Refusal::ServiceNotAllowed)
        }
        Some(s) => Ok(s.to_string()),
    }
}

/// Who asks: a refresh token redeemed, else the OpTok and its binding
/// (checks 3 and 4 in docs/http.md); `None` when no credentials were presented.
async fn authenticate(
    issuer: &Issuer,
    policy: &Policy,
    authority: &Authority,
    req: &TokenRequest<'_>,
    params: &Params,
    now: i64,
) -> Result<Option<Caller>, Refusal> {
    if let Some(token) = &params.refresh_token {
        let possession = Possession {
            method: req.method,
            dpop: &req.dpop,
            client_cert_sha256: req.client_cert_sha256,
        };
        let caller = refresh::redeem(token, issuer, policy, authority.config(), &possession, now)?;
        return Ok(Some(caller));
    }
    let presented = Presented {
        method: req.method,
        authorization: req.authorization.clone(),
        dpop: req.dpop.clone(),
        form_password: params.password.as_deref(),
        client_cert_sha256: req.client_cert_sha256,
    };
    Ok(authority.authenticate(&presented, now).await?)
}

/// The caller, or the anonymous caller when there is an anonymous plan and scopes were asked
/// for; without either, credentials are required.
fn or_anonymous(
    caller: Option<Caller>,
    policy: &Policy,
    scopes: &[Scope],
) -> Result<Caller, Refusal> {
    match caller {
        Some(c) => Ok(c),
        None if policy.anonymous_plan.is_some() && !scopes.is_empty() => Ok(Caller {
            subject: limits::ANONYMOUS_SUBJECT.into(),
            plan: policy.anonymous_plan.clone(),
            license: None,
            scheme: None,
            proof: None,
            binding: crate::authority::optok::Binding::Unbound,
            claims: Default::default(),
        }),
        None => Err(Refusal::MissingCredentials),
    }
}

/// The caller's plan, unless its license is revoked or the plan is unknown.
fn plan<'p>(policy: &'p Policy, caller: &Caller) -> Result<&'p Plan, Refusal> {
    if policy.is_revoked(caller.license.as_deref()) {
        return Err(Refusal::LicenseRevoked);
    }
    policy
        .plan_for(caller.plan.as_deref())
        .ok_or(Refusal::UnknownPlan)
}

/// What the plan's placeholders are filled from: the caller's subject, license and claims; an
/// anonymous caller has none. (Here, where the Authority's caller meets the policy: neither
/// knows the other.)
fn values(caller: &Caller, anonymous: bool) -> Values {
    if anonymous {
        return Values::default();
    }
    Values {
        sub: Some(caller.subject.clone()),
        license: caller.license.clone(),
        claims: caller.claims.clone(),
    }
}

/// The scopes the plan grants this caller; refused when scopes were asked for and none is
/// granted (credentials are then what an anonymous caller lacks).
fn grant_or_refuse(
    plan: &Plan,
    values: &Values,
    scopes: &[Scope],
    anonymous: bool,
) -> Result<Vec<Scope>, Refusal> {
    let entitled = plan.for_caller(values);
    for (pattern, why) in &entitled.unusable {
        tracing::info!(plan = %plan.name, pattern, reason = %why, "a plan pattern matches nothing for this caller");
    }
    let access = grant(&entitled, scopes);
    if !scopes.is_empty() && access.is_empty() {
        return Err(if anonymous {
            Refusal::MissingCredentials
        } else {
            Refusal::PlanDenied
        });
    }
    Ok(access)
}

/// Counts the issuance against the plan's `limits.tokens` (docs/http.md, "Plan limits"): only once
/// granted and before the proof is spent, so that a limited request spends nothing.
async fn count_issuance(
    plan: &Plan,
    caller: &Caller,
    anonymous: bool,
    req: &TokenRequest<'_>,
) -> Result<(), Refusal> {
    let Some(limit) = plan.limits.tokens else {
        return Ok(());
    };
    let who = limits::Caller {
        license: caller.license.as_deref(),
        subject: (!anonymous).then_some(caller.subject.as_str()),
        ip: req.client_ip,
    };
    let verdict = req
        .counters
        .count(&limit, Kind::Tokens, &who)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot count a token issuance");
            Refusal::StateUnavailable
        })?;
    match verdict {
        Verdict::Limited {
            headers,
            retry_after,
        } => Err(Refusal::RateLimited {
            limit: headers.limit,
            window: headers.window,
            retry_after,
        }),
        _ => Ok(()),
    }
}

/// The refresh token of the answer: the one presented on a refresh grant, a new one when asked
/// for (`offline_token`, `access_type=offline`) and enabled, else none.
fn refresh_token(
    issuer: &Issuer,
    plan: &Plan,
    caller: &Caller,
    params: Params,
    anonymous: bool,
    now: i64,
) -> Result<Option<RefreshToken>, Refusal> {
    match params.refresh_token {
        Some(given) => Ok(Some(RefreshToken(given))),
        None if params.offline && issuer.refresh.enabled && !anonymous => {
            let claims = RefreshClaims::for_caller(
                caller,
                kept_claims(plan, caller),
                &issuer.name,
                params.client_id.as_deref(),
                issuer.refresh.lifetime,
                now,
                new_jti(),
            );
            let minted = refresh::mint(&issuer.keys, &claims).map_err(|e| {
                tracing::error!(error = %e, "signing a refresh token failed");
                Refusal::SigningFailed
            })?;
            Ok(Some(minted))
        }
        None => Ok(None),
    }
}

/// The claims a registry token carries beyond the registered ones: the plan and the license
/// under the Authority's claim names, and what the proxy's filtered catalog fills this plan's
/// placeholders from (docs/namespaces.md).
fn carried_claims(
    authority: &AuthorityConfig,
    plan: &Plan,
    caller: &Caller,
    values: Values,
    anonymous: bool,
) -> serde_json::Map<String, serde_json::Value> {
    let mut extra = serde_json::Map::new();
    extra.insert(authority.plan_claim.clone(), plan.name.clone().into());
    if let Some(license) = &caller.license {
        extra.insert(authority.license_claim.clone(), license.clone().into());
    }
    if plan.catalog && plan.has_placeholders() && !anonymous {
        let kept = Values {
            claims: kept_claims(plan, caller),
            ..values
        };
        extra.insert(
            super::claims::PLACEHOLDER_CLAIMS.into(),
            serde_json::to_value(kept).unwrap_or_default(),
        );
    }
    extra
}

impl Audit {
    /// What the log event says of the caller once it is known.
    fn learn(&mut self, caller: &Caller, policy: &Policy) {
        self.subject = Some(caller.subject.clone());
        self.scheme = caller.scheme.map(|s| s.as_str());
        if self.refreshing {
            self.scheme = Some("refresh_token");
        }
        self.license = caller.license.clone();
        self.plan = caller.plan.clone().or_else(|| policy.default_plan.clone());
    }
}

/// The refusal of a DPoP proof that could not be spent: a refresh grant's replayed proof is
/// `400 invalid_grant`, any other the Authority's; a replay store that did not answer is
/// `503 state_unavailable` either way.
fn unspent(e: AuthError, refreshing: bool) -> Refusal {
    match e {
        AuthError::StateUnavailable => Refusal::StateUnavailable,
        e if refreshing => Refusal::Refresh(e.into()),
        e => e.into(),
    }
}

/// The caller's claims that `plan`'s placeholders read besides `sub` and the license: what a
/// refresh token keeps, so that a refresh expands the same.
fn kept_claims(plan: &Plan, caller: &Caller) -> BTreeMap<String, String> {
    plan.claims_needed()
        .into_iter()
        .filter_map(|name| Some((name.clone(), caller.claims.get(&name)?.clone())))
        .collect()
}

/// For each scope, the requested actions the caller's entitlement allows; scopes granting
/// nothing are dropped. The token names the resource without its class, as it always has.
fn grant(plan: &Entitlement<'_>, scopes: &[Scope]) -> Vec<Scope> {
    scopes
        .iter()
        .filter_map(|scope| {
            let actions = plan.grant(scope);
            let resource = Resource {
                class: None,
                ..scope.resource.clone()
            };
            (!actions.is_empty()).then_some(Scope { resource, actions })
        })
        .collect()
}

/// 128 random bits, base64url.
fn new_jti() -> String {
    let bytes: [u8; 16] = rand::random();
    crate::jose::b64url_encode(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::authority::dpop::access_token_hash;
    use crate::authority::dpop::tests::{claims as proof_claims, proof, TestKey, NOW};
    use crate::authority::jwks::tests::jwks;
    use serde_json::{json, Value};

    use crate::token::testkit::{slices, Slices};
    pub use crate::token::testkit::{ISSUER, SERVICE};

    /// The realm's slices, an Authority holding `key` as kid `a1`, and a caller's DPoP key.
    struct Fixture {
        settings: Slices,
        authority: Authority,
        key: TestKey,
        client: TestKey,
        /// Where plan limits count.
        counters: std::sync::Arc<dyn Counters>,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let settings = slices(dir.path(), crate::authority::SenderConstraint::Dpop);
            let authority = Authority::new(settings.authority.clone());
            let key = TestKey::p256();
            assert_eq!(authority.load_jwks(&jwks(&[("a1", &key)])), Ok(1));
            Fixture {
                settings,
                authority,
                key,
                client: TestKey::p256(),
                counters: std::sync::Arc::new(crate::state::memory::MemoryCounters::default()),
                _dir: dir,
            }
        }

        /// A DPoP-bound OpTok with plan and license, and `change` applied to its claims.
        fn optok(&self, change: impl FnOnce(&mut Value)) -> String {
            let mut claims = json!({"iss":ISSUER,"aud":["registry"],"sub":"alice",
                "exp":NOW + 300,"iat":NOW,"scope":"registry.token.issue",
                "stellaops:plan":"enterprise","stellaops:license":"LIC-1",
                "cnf":{"jkt":self.client.jkt()}});
            change(&mut claims);
            self.key.jws(
                &json!({"alg":"ES256","kid":"a1","typ":"at+jwt"}).to_string(),
                &claims.to_string(),
            )
        }

        /// A fresh proof for `token` (`jti` random).
        fn proof(&self, token: &str) -> String {
            let mut c = proof_claims();
            c["ath"] = json!(access_token_hash(token));
            c["jti"] = json!(format!("j{}", rand::random::<u64>()));
            proof(&self.client, "ES256", &c)
        }

        /// Runs the realm; `req.dpop` `None` means a fresh proof for the first credential.
        async fn issue(&self, req: &Req) -> Result<TokenResponse, Refusal> {
            let fresh = req.authorization.first().and_then(|a| a.split_once(' '));
            let dpop = match (&req.dpop, fresh) {
                (Some(given), _) => given.clone(),
                (None, Some((_, token))) => vec![self.proof(token)],
                (None, None) => vec![],
            };
            let request = TokenRequest {
                method: &req.method,
                query: Some(&req.query),
                form: req.form.as_deref().map(str::as_bytes),
                authorization: req.authorization.iter().map(String::as_str).collect(),
                dpop: dpop.iter().map(String::as_str).collect(),
                client_cert_sha256: None,
                client_ip: Some([192, 0, 2, 1].into()),
                counters: self.counters.as_ref(),
            };
            issue(
                &self.settings.issuer,
                &self.settings.policy,
                &self.authority,
                &request,
                NOW,
                &mut Audit::default(),
            )
            .await
        }
    }

    /// A token request, owned.
    #[derive(Clone)]
    struct Req {
        method: String,
        query: String,
        form: Option<String>,
        authorization: Vec<String>,
        /// `None`: a fresh proof at each use.
        dpop: Option<Vec<String>>,
    }

    impl Req {
        /// `GET /token?service=registry.test&scope=...` with `Authorization: DPoP <token>` and a
        /// fresh proof.
        fn dpop(token: &str, scope: &str) -> Req {
            Req {
                method: "GET".into(),
                query: format!("service={SERVICE}&scope={scope}"),
                form: None,
                authorization: vec![format!("DPoP {token}")],
                dpop: None,
            }
        }

        fn query(mut self, query: &str) -> Req {
            self.query = query.into();
            self
        }
    }

    /// Every realm reason, in the order of the checks: (case, request, status, reason, error).
    #[tokio::test]
    async fn issue_refuses_each_reason() {
        let f = Fixture::new();
        let good = f.optok(|_| {});
        let pull = "repository:acme/app:pull";
        let ok = Req::dpop(&good, pull);
        let anonymous = Req {
            authorization: vec![],
            ..ok.clone()
        };
        let post = |form: &str| Req {
            method: "POST".into(),
            query: String::new(),
            form: Some(form.into()),
            ..ok.clone()
        };
        let replayed = Req {
            dpop: Some(vec![f.proof(&good)]),
            ..ok.clone()
        };
        assert!(f.issue(&replayed).await.is_ok(), "first use of the proof");
        let no_scope = f.optok(|c| c["scope"] = json!("openid"));
        let revoked = f.optok(|c| c["stellaops:license"] = json!("LIC-REVOKED"));
        let ghost_plan = f.optok(|c| c["stellaops:plan"] = json!("ghost"));
        let nothing = f.optok(|c| c["stellaops:plan"] = json!("nothing"));
        let bearer = Req {
            authorization: vec![format!("Bearer {good}")],
            dpop: Some(vec![]),
            ..ok.clone()
        };
        let no_proof = Req {
            dpop: Some(vec![]),
            ..ok.clone()
        };
        let garbage = Req {
            authorization: vec!["DPoP not.a.jwt".into()],
            ..ok.clone()
        };
        let rows: Vec<(&str, Req, u16, &str, &str)> = vec![
            ("ok", ok.clone(), 200, "", ""),
            (
                "no scope: an empty grant",
                ok.clone().query(&format!("service={SERVICE}")),
                200,
                "",
                "",
            ),
            (
                "service missing",
                ok.clone().query(&format!("scope={pull}")),
                400,
                "service_not_allowed",
                "invalid_request",
            ),
            (
                "other service",
                ok.clone().query(&format!("service=other&scope={pull}")),
                400,
                "service_not_allowed",
                "invalid_request",
            ),
            (
                "service repeated",
                ok.clone()
                    .query(&format!("service={SERVICE}&service={SERVICE}")),
                400,
                "service_not_allowed",
                "invalid_request",
            ),
            (
                "malformed scope",
                ok.clone()
                    .query(&format!("service={SERVICE}&scope=repository:ACME/app:pull")),
                400,
                "malformed_scope",
                "invalid_scope",
            ),
            (
                "access_token in the query",
                ok.clone()
                    .query(&format!("service={SERVICE}&access_token=x")),
                400,
                "invalid_request",
                "invalid_request",
            ),
            (
                "grant_type",
                post(&format!("grant_type=client_credentials&service={SERVICE}")),
                400,
                "unsupported_grant_type",
                "unsupported_grant_type",
            ),
            (
                "password repeated",
                post(&format!(
                    "grant_type=password&service={SERVICE}&password=a&password=b"
                )),
                400,
                "invalid_request",
                "invalid_request",
            ),
            (
                "two Authorization fields",
                Req {
                    authorization: vec![format!("DPoP {good}"), format!("DPoP {good}")],
                    ..ok.clone()
                },
                400,
                "invalid_request",
                "invalid_request",
            ),
            (
                "no credentials",
                anonymous,
                401,
                "missing_credentials",
                "invalid_token",
            ),
            ("not a JWT", garbage, 401, "invalid_optok", "invalid_token"),
            (
                "DPoP without a proof",
                no_proof,
                401,
                "invalid_dpop_proof",
                "invalid_dpop_proof",
            ),
            (
                "proof replayed",
                replayed,
                401,
                "dpop_replay",
                "invalid_dpop_proof",
            ),
            (
                "DPoP-bound OpTok as Bearer",
                bearer,
                401,
                "sender_constraint_mismatch",
                "invalid_token",
            ),
            (
                "OpTok without registry.token.issue",
                Req::dpop(&no_scope, pull),
                403,
                "insufficient_optok_scope",
                "insufficient_scope",
            ),
            (
                "license revoked",
                Req::dpop(&revoked, pull),
                403,
                "license_revoked",
                "invalid_token",
            ),
            (
                "unknown plan",
                Req::dpop(&ghost_plan, pull),
                403,
                "unknown_plan",
                "insufficient_scope",
            ),
            (
                "plan grants nothing",
                Req::dpop(&nothing, pull),
                403,
                "plan_denied",
                "insufficient_scope",
            ),
            (
                "scope outside the plan",
                Req::dpop(&good, "repository:victim/private:pull"),
                403,
                "plan_denied",
                "insufficient_scope",
            ),
        ];
        for (case, req, status, reason, error) in rows {
            match f.issue(&req).await {
                Ok(issued) => assert_eq!(
                    (200, "", ""),
                    (status, reason, error),
                    "{case}: issued {:?}",
                    issued.granted
                ),
                Err(r) => assert_eq!(
                    (r.status(), r.as_str(), r.error()),
                    (status, reason, error),
                    "{case}: {r}"
                ),
            }
        }
    }

    /// Without usable Authority keys the realm answers 503 with `Retry-After`.
    #[tokio::test]
    async fn issue_without_authority_keys_is_unavailable() {
        let f = Fixture::new();
        let token = f.optok(|_| {});
        let empty = Fixture {
            authority: Authority::new(f.settings.authority.clone()),
            ..Fixture::new()
        };
        let refused = empty
            .issue(&Req::dpop(&token, "repository:acme/app:pull"))
            .await
            .unwrap_err();
        assert_eq!(
            (refused.status(), refused.as_str(), refused.retry_after()),
            (503, "authority_unavailable", Some(10))
        );
    }

    /// A `limits.tokens` plan: issuances count per license, else subject, else address; past
    /// the limit 429 `rate_limited` with the window's rest as `Retry-After`, and the proof of a
    /// limited request is not spent; a store that cannot count gives 503 `state_unavailable`.
    #[tokio::test]
    async fn issuances_are_limited_per_caller() {
        let mut f = Fixture::new();
        let limit = crate::policy::limits::Limit {
            count: 2,
            per: std::time::Duration::from_secs(60),
        };
        f.settings
            .policy
            .plans
            .get_mut("enterprise")
            .unwrap()
            .limits
            .tokens = Some(limit);
        let pull = "repository:acme/app:pull";
        let lic1 = f.optok(|_| {});
        let lic1_bob = f.optok(|c| c["sub"] = json!("bob"));
        let lic2 = f.optok(|c| c["stellaops:license"] = json!("LIC-2"));
        let no_license = f.optok(|c| {
            c.as_object_mut().unwrap().remove("stellaops:license");
        });
        assert!(f.issue(&Req::dpop(&lic1, pull)).await.is_ok());
        assert!(
            f.issue(&Req::dpop(&lic1_bob, pull)).await.is_ok(),
            "2nd on LIC-1"
        );
        let spent_later = Req {
            dpop: Some(vec![f.proof(&lic1)]),
            ..Req::dpop(&lic1, pull)
        };
        let refused = f.issue(&spent_later).await.unwrap_err();
        assert_eq!(
            (refused.status(), refused.as_str(), refused.retry_after()),
            (429, "rate_limited", Some(60))
        );
        assert!(
            f.issue(&Req::dpop(&lic2, pull)).await.is_ok(),
            "another license"
        );
        assert!(
            f.issue(&Req::dpop(&no_license, pull)).await.is_ok(),
            "by subject"
        );
        assert!(f.issue(&Req::dpop(&no_license, pull)).await.is_ok());
        assert!(f.issue(&Req::dpop(&no_license, pull)).await.is_err());
        // The refused request's proof was not spent: under a fresh window it is accepted.
        f.counters = std::sync::Arc::new(crate::state::memory::MemoryCounters::default());
        assert!(
            f.issue(&spent_later).await.is_ok(),
            "the proof was left unspent"
        );

        struct Down;
        #[async_trait::async_trait]
        impl Counters for Down {
            async fn hit(
                &self,
                _: &str,
                _: std::time::Duration,
            ) -> Result<crate::state::Hit, crate::state::StateError> {
                Err(crate::state::StateError("down".into()))
            }
        }
        f.counters = std::sync::Arc::new(Down);
        let refused = f.issue(&Req::dpop(&lic2, pull)).await.unwrap_err();
        assert_eq!(
            (refused.status(), refused.as_str(), refused.retry_after()),
            (503, "state_unavailable", Some(10))
        );
        // A plan without limits never asks the store.
        f.settings
            .policy
            .plans
            .get_mut("enterprise")
            .unwrap()
            .limits = Default::default();
        assert!(f.issue(&Req::dpop(&lic2, pull)).await.is_ok());
    }

    /// A proof that cannot be spent: replayed is `dpop_replay` (as `invalid_grant` on a refresh
    /// grant), an unanswering replay store `503 state_unavailable` on both.
    #[test]
    fn unspent_proofs() {
        let rows = [
            (
                AuthError::Replay,
                false,
                (401, "invalid_dpop_proof", "dpop_replay"),
            ),
            (
                AuthError::Replay,
                true,
                (400, "invalid_grant", "dpop_replay"),
            ),
            (
                AuthError::StateUnavailable,
                false,
                (503, "temporarily_unavailable", "state_unavailable"),
            ),
            (
                AuthError::StateUnavailable,
                true,
                (503, "temporarily_unavailable", "state_unavailable"),
            ),
        ];
        for (error, refreshing, want) in rows {
            let r = unspent(error, refreshing);
            assert_eq!((r.status(), r.error(), r.as_str()), want, "{r:?}");
        }
    }

    /// The refusal model per variant: status, `error`, Docker code and challenge kind.
    #[test]
    fn refusal_variants() {
        use crate::registry::ScopeError;
        let rows: Vec<(Refusal, u16, &str, &str, &str)> = vec![
            (
                Refusal::UnsupportedGrant("x".into()),
                400,
                "unsupported_grant_type",
                "INVALID_REQUEST",
                "none",
            ),
            (
                Refusal::MissingService,
                400,
                "invalid_request",
                "INVALID_REQUEST",
                "none",
            ),
            (
                Refusal::MalformedScope(ScopeError::TooMany),
                400,
                "invalid_scope",
                "INVALID_REQUEST",
                "none",
            ),
            (
                Refusal::Authority(AuthError::Replay),
                401,
                "invalid_dpop_proof",
                "UNAUTHORIZED",
                "authority",
            ),
            (
                Refusal::Authority(AuthError::Unavailable),
                503,
                "invalid_request",
                "UNAVAILABLE",
                "authority",
            ),
            (
                Refusal::MissingCredentials,
                401,
                "invalid_token",
                "UNAUTHORIZED",
                "authority",
            ),
            (
                Refusal::LicenseRevoked,
                403,
                "invalid_token",
                "DENIED",
                "bearer",
            ),
            (
                Refusal::UnknownPlan,
                403,
                "insufficient_scope",
                "DENIED",
                "bearer",
            ),
            (
                Refusal::PlanDenied,
                403,
                "insufficient_scope",
                "DENIED",
                "bearer",
            ),
            (
                Refusal::SigningFailed,
                500,
                "server_error",
                "INVALID_REQUEST",
                "none",
            ),
            (
                Refusal::RateLimited {
                    limit: 2,
                    window: 60,
                    retry_after: 7,
                },
                429,
                "invalid_request",
                "TOOMANYREQUESTS",
                "none",
            ),
            (
                Refusal::from(AuthError::StateUnavailable),
                503,
                "temporarily_unavailable",
                "UNAVAILABLE",
                "none",
            ),
            (
                Refusal::StateUnavailable,
                503,
                "temporarily_unavailable",
                "UNAVAILABLE",
                "none",
            ),
        ];
        for (refusal, status, error, code, challenge) in rows {
            let kind = match refusal.challenge() {
                RealmChallenge::None => "none",
                RealmChallenge::Authority(_) => "authority",
                RealmChallenge::Bearer => "bearer",
            };
            assert_eq!(
                (
                    refusal.status(),
                    refusal.error(),
                    refusal.docker_code(),
                    kind
                ),
                (status, error, code, challenge),
                "{}",
                refusal.as_str()
            );
        }
    }
}
