//! The token realm (SPEC section 4): `GET /token` and the OAuth2 `POST /token` form.
//!
//! service → scopes → Authority token and its sender constraint → revocation → plan → grant →
//! DPoP proof spent → signed registry token. Each refusal is a `Rejection` carrying its status
//! and `reason`. The proof is spent last, so a refused request leaves no trace in the replay
//! store (SPEC section 7).

use serde::Serialize;

use super::{AccessEntry, IssuedClaims};
use crate::authority::{AuthError, Authority, Caller, Presented, SenderConstraint};
use crate::config::Settings;
use crate::registry::{parse_scopes, ResourceType, Scope};

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
}

/// The success body (Distribution token spec plus OAuth2's `access_token`).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub access_token: String,
    pub expires_in: i64,
    pub issued_at: String,
    #[serde(skip)]
    pub plan: String,
    #[serde(skip)]
    pub granted: Vec<String>,
    /// The next server nonce, when nonces are on.
    #[serde(skip)]
    pub dpop_nonce: Option<String>,
}

/// A refusal, ready to be written as an RFC 6750 problem with a Docker `errors` array.
#[derive(Debug)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
    /// RFC 6750 / 9449 `error` code.
    pub error: &'static str,
    pub description: String,
    pub www_authenticate: Option<String>,
    pub retry_after: Option<u64>,
    /// A fresh server nonce, when the proof lacked a valid one (RFC 9449 section 8).
    pub dpop_nonce: Option<String>,
}

impl Rejection {
    fn new(
        status: u16,
        reason: &'static str,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Rejection {
            status,
            reason,
            error,
            description: description.into(),
            www_authenticate: None,
            retry_after: None,
            dpop_nonce: None,
        }
    }

    fn malformed(reason: &'static str, description: impl Into<String>) -> Self {
        Rejection::new(400, reason, "invalid_request", description)
    }

    /// A 403 with its `WWW-Authenticate` (RFC 6750 section 3).
    fn forbidden(
        reason: &'static str,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        let description = description.into();
        Rejection {
            www_authenticate: Some(format!(
                "Bearer error=\"{error}\", error_description=\"{}\"",
                quote_safe(&description)
            )),
            ..Rejection::new(403, reason, error, description)
        }
    }
}

/// Keeps a description usable inside a quoted header parameter.
pub fn quote_safe(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
        .collect()
}

/// The parameters of a token request, from the query (GET) or the form (POST).
#[derive(Default)]
struct Params {
    service: Option<String>,
    scopes: Vec<String>,
    password: Option<String>,
}

#[allow(clippy::result_large_err)] // built once per refused request; boxing buys nothing here
fn params(req: &TokenRequest<'_>) -> Result<Params, Rejection> {
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
            Some(other) => {
                return Err(Rejection::malformed(
                    "invalid_request",
                    format!("grant_type `{other}` is not supported; use password, or GET"),
                ))
            }
        }
        if form.iter().filter(|(k, _)| k == "password").count() > 1 {
            return Err(Rejection::malformed(
                "invalid_request",
                "password is repeated",
            ));
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
            "access_token" => {
                return Err(Rejection::malformed(
                    "invalid_request",
                    "an access token is never accepted in the query or form; send it in the Authorization header",
                ))
            }
            _ => {}
        }
    }
    if services > 1 {
        return Err(Rejection::malformed(
            "service_not_allowed",
            "service is repeated",
        ));
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
    /// How the OpTok was presented (`dpop`, `bearer`, `basic`, `form`).
    pub scheme: Option<&'static str>,
}

impl Audit {
    /// The license as logs show it: the first 12 hex digits of its SHA-256.
    pub fn license_hash(&self) -> Option<String> {
        use sha2::{Digest, Sha256};
        self.license.as_ref().map(|l| {
            Sha256::digest(l.as_bytes())
                .iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect()
        })
    }
}

/// Runs the realm for one request. `now` is the Unix time in seconds. `authority` is the one in
/// force: its own settings (sender constraint, claim names) apply, never `settings.authority`.
pub async fn issue(
    settings: &Settings,
    authority: &Authority,
    req: &TokenRequest<'_>,
    now: i64,
    audit: &mut Audit,
) -> Result<TokenResponse, Rejection> {
    let params = params(req)?;
    let service = match params.service.as_deref() {
        None | Some("") => {
            return Err(Rejection::malformed(
                "service_not_allowed",
                "service is missing",
            ))
        }
        Some(s) if !settings.services.iter().any(|allowed| allowed == s) => {
            return Err(Rejection::malformed(
                "service_not_allowed",
                "this realm does not issue tokens for that service",
            ))
        }
        Some(s) => s.to_string(),
    };
    let scopes = parse_scopes(params.scopes.iter().map(String::as_str)).map_err(|e| Rejection {
        error: "invalid_scope",
        ..Rejection::malformed("malformed_scope", e.to_string())
    })?;

    audit.requested = scopes.iter().map(Scope::to_string).collect();

    let presented = Presented {
        method: req.method,
        authorization: req.authorization.clone(),
        dpop: req.dpop.clone(),
        form_password: params.password.as_deref(),
        client_cert_sha256: req.client_cert_sha256,
    };
    let constraint = authority.config().sender_constraint;
    let caller = authority
        .authenticate(&presented, now)
        .await
        .map_err(|e| refused(e, authority, constraint, now))?;
    let policy = &settings.policy;
    let anonymous = caller.is_none();
    let missing = || {
        let e = AuthError::MissingCredentials;
        Rejection {
            www_authenticate: Some(e.www_authenticate(constraint)),
            ..Rejection::new(
                401,
                "missing_credentials",
                "invalid_token",
                "credentials are required for this scope",
            )
        }
    };
    let caller = match caller {
        Some(c) => c,
        None if policy.anonymous_plan.is_some() && !scopes.is_empty() => Caller {
            subject: "anonymous".into(),
            plan: policy.anonymous_plan.clone(),
            license: None,
            scheme: None,
            proof: None,
        },
        None => return Err(missing()),
    };
    audit.subject = Some(caller.subject.clone());
    audit.scheme = caller.scheme.map(|s| s.as_str());
    audit.license = caller.license.clone();
    audit.plan = caller.plan.clone().or_else(|| policy.default_plan.clone());
    if policy.is_revoked(caller.license.as_deref()) {
        return Err(Rejection::forbidden(
            "license_revoked",
            "invalid_token",
            "this license has been revoked",
        ));
    }
    let Some(plan) = policy.plan_for(caller.plan.as_deref()) else {
        return Err(Rejection::forbidden(
            "unknown_plan",
            "insufficient_scope",
            "the caller's plan is not known to this registry",
        ));
    };

    let access = grant(plan, &scopes);
    if !scopes.is_empty() && access.is_empty() {
        return Err(if anonymous {
            missing()
        } else {
            Rejection::forbidden(
                "plan_denied",
                "insufficient_scope",
                "the plan grants none of the requested scopes",
            )
        });
    }
    // Last check: spend the DPoP proof only now that the request is granted.
    if let Some(proof) = &caller.proof {
        authority
            .spend(proof, now)
            .await
            .map_err(|e| refused(e, authority, constraint, now))?;
    }
    let granted = access
        .iter()
        .map(|a| format!("{}:{}:{}", a.resource_type, a.name, a.actions.join(",")))
        .collect();

    let lifetime = (settings.lifetime.as_secs() as i64).max(MIN_EXPIRES_IN);
    let mut extra = serde_json::Map::new();
    extra.insert(
        authority.config().plan_claim.clone(),
        plan.name.clone().into(),
    );
    if let Some(license) = &caller.license {
        extra.insert(
            authority.config().license_claim.clone(),
            license.clone().into(),
        );
    }
    let claims = IssuedClaims {
        iss: settings.signing_issuer.clone(),
        sub: caller.subject,
        aud: service,
        exp: now.saturating_add(lifetime),
        nbf: now,
        iat: now,
        jti: new_jti(),
        access,
        extra,
    };
    let token = settings.keys.sign(&claims).map_err(|e| {
        tracing::error!(error = %e, "signing failed");
        Rejection::new(
            500,
            "signing_failed",
            "server_error",
            "the token could not be signed",
        )
    })?;
    Ok(TokenResponse {
        access_token: token.clone(),
        token,
        expires_in: lifetime,
        issued_at: humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(now.max(0) as u64),
        )
        .to_string(),
        plan: plan.name.clone(),
        granted,
        dpop_nonce: authority.fresh_nonce(now),
    })
}

/// The refusal for an Authority error (authentication, binding, or spending the proof).
fn refused(
    e: AuthError,
    authority: &Authority,
    constraint: SenderConstraint,
    now: i64,
) -> Rejection {
    Rejection {
        status: e.status(),
        reason: e.reason(),
        error: e.oauth_error().unwrap_or("invalid_request"),
        description: e.to_string(),
        www_authenticate: Some(e.www_authenticate(constraint)),
        retry_after: (e.status() == 503).then_some(10),
        dpop_nonce: e
            .needs_nonce()
            .then(|| authority.fresh_nonce(now))
            .flatten(),
    }
}

/// For each scope, the requested actions the plan allows; scopes granting nothing are dropped.
fn grant(plan: &crate::policy::Plan, scopes: &[Scope]) -> Vec<AccessEntry> {
    scopes
        .iter()
        .filter_map(|scope| {
            let actions = plan.grant(scope);
            (!actions.is_empty()).then(|| AccessEntry {
                resource_type: match scope.resource_type {
                    ResourceType::Repository => "repository".into(),
                    ResourceType::Registry => "registry".into(),
                },
                name: scope.name.clone(),
                actions,
            })
        })
        .collect()
}

/// 128 random bits, base64url.
fn new_jti() -> String {
    use base64::Engine;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
