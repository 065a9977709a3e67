//! Why the main listener refuses a request before the registry sees it: one variant per reason,
//! from request hygiene through routing to the `/v2/` token check, plus the connection-level
//! refusals of the server's limits.
//!
//! [`Denial::as_str`] is the `registry_proxy_denied_total` label; each variant knows its status,
//! its Docker error code and whether it carries a Bearer challenge. `respond::denial` is the one
//! place that turns a variant into HTTP.

use crate::metrics::Metrics;
use crate::policy::limits::{RateHeaders, UNAVAILABLE_RETRY_AFTER};
use crate::registry::RouteError;

/// A refusal written by the sidecar; nothing is forwarded. `Display` is the Docker `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    // Request hygiene, before routing (`hygiene::check`).
    #[error("the request target is too long")]
    UriTooLong,
    #[error("the request headers are too large")]
    HeadersTooLarge,
    #[error("Content-Length and Transfer-Encoding together")]
    AmbiguousFraming,
    #[error("only a single `Transfer-Encoding: chunked` is accepted")]
    BadTransferEncoding,
    #[error("HTTP/1.0 requests may not carry a body")]
    Http10Body,
    #[error("protocol upgrades are not accepted")]
    UpgradeRefused,
    #[error("the request path is not UTF-8")]
    PathNotUtf8,

    // Connection level (`server.limits`): the connection is closed, usually without an answer.
    #[error("too many connections")]
    TooManyConnections,
    #[error("the request head did not arrive in time")]
    HeaderTimeout,
    /// A `POST /token` form not whole within `headerTimeout` of its head.
    #[error("the request body did not arrive in time")]
    BodyTimeout,

    // The `/v2/` decision (`authorize`).
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("form-encoded bodies are not accepted on /v2/")]
    FormBody,
    #[error("more than one Authorization header")]
    DuplicateAuthorization,
    /// No `Authorization` at all. `scope` is the challenge's scope (docs/http.md, "The proxy").
    #[error("authentication required")]
    NoToken { scope: String },
    /// An `Authorization` that is not a bearer token.
    #[error("a bearer token from the realm is required")]
    NotBearer { scope: String },
    #[error("the token is not valid here")]
    InvalidToken { scope: String },
    #[error("the token's license has been revoked")]
    LicenseRevoked { scope: String },
    #[error("the token does not grant this access")]
    InsufficientScope { scope: String },

    // Plan limits (docs/http.md, "Plan limits"), after the token check: the manifest GET is not
    // forwarded.
    /// Past the plan's `limits.pulls`.
    #[error("pull rate limit reached: {} manifest pulls per {}s; retry after {retry_after}s", .headers.limit, .headers.window)]
    RateLimited {
        headers: RateHeaders,
        retry_after: u64,
    },
    /// The shared state could not count the pull.
    #[error("the pull could not be counted against the plan's limit; retry later")]
    StateUnavailable,
}

/// The Bearer challenge a 401 carries: `realm` and `service` come from the settings.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// Space-separated scopes the route needs (empty: none).
    pub scope: &'a str,
    /// RFC 6750 `error`, absent when no token was presented.
    pub error: Option<&'static str>,
}

impl Denial {
    /// Counts this refusal in `registry_proxy_denied_total`, labelled with [`Denial::as_str`].
    pub fn count(&self, metrics: &Metrics) {
        metrics
            .proxy_denied
            .with_label_values(&[self.as_str()])
            .inc();
    }

    /// The machine reason: metric label and log field.
    pub fn as_str(&self) -> &'static str {
        match self {
            Denial::UriTooLong => "uri_too_long",
            Denial::HeadersTooLarge => "headers_too_large",
            Denial::AmbiguousFraming => "ambiguous_framing",
            Denial::BadTransferEncoding => "bad_transfer_encoding",
            Denial::Http10Body => "http10_body",
            Denial::UpgradeRefused => "upgrade_refused",
            Denial::PathNotUtf8 => "bad_path",
            Denial::TooManyConnections => "too_many_connections",
            Denial::HeaderTimeout => "header_timeout",
            Denial::BodyTimeout => "body_timeout",
            Denial::Route(e) => e.reason(),
            Denial::FormBody => "form_body",
            Denial::DuplicateAuthorization => "duplicate_authorization",
            Denial::NoToken { .. } | Denial::NotBearer { .. } => "missing_token",
            Denial::InvalidToken { .. } => "invalid_token",
            Denial::LicenseRevoked { .. } => "license_revoked",
            Denial::InsufficientScope { .. } => "insufficient_scope",
            Denial::RateLimited { .. } => "rate_limited",
            Denial::StateUnavailable => "state_unavailable",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Denial::UriTooLong => 414,
            Denial::HeadersTooLarge => 431,
            Denial::TooManyConnections => 503,
            Denial::HeaderTimeout | Denial::BodyTimeout => 408,
            Denial::RateLimited { .. } => 429,
            Denial::StateUnavailable => 503,
            Denial::Route(e) => e.status(),
            Denial::NoToken { .. }
            | Denial::NotBearer { .. }
            | Denial::InvalidToken { .. }
            | Denial::LicenseRevoked { .. }
            | Denial::InsufficientScope { .. } => 401,
            _ => 400,
        }
    }

    /// The Docker error code of the `errors` body.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::PathNotUtf8 => "NAME_INVALID",
            Denial::TooManyConnections | Denial::RateLimited { .. } => "TOOMANYREQUESTS",
            Denial::StateUnavailable => "UNAVAILABLE",
            Denial::Route(e) => match e.status() {
                404 => "NOT_FOUND",
                405 => "UNSUPPORTED",
                _ => "NAME_INVALID",
            },
            Denial::DuplicateAuthorization
            | Denial::NoToken { .. }
            | Denial::NotBearer { .. }
            | Denial::InvalidToken { .. }
            | Denial::LicenseRevoked { .. }
            | Denial::InsufficientScope { .. } => "UNAUTHORIZED",
            _ => "UNSUPPORTED",
        }
    }

    /// The Bearer challenge to send, if any: every 401 names the scope the route needs, and
    /// `error=` once a token was presented.
    pub fn challenge(&self) -> Option<Challenge<'_>> {
        let (scope, error) = match self {
            Denial::NoToken { scope } | Denial::NotBearer { scope } => (scope, None),
            Denial::InvalidToken { scope } | Denial::LicenseRevoked { scope } => {
                (scope, Some("invalid_token"))
            }
            Denial::InsufficientScope { scope } => (scope, Some("insufficient_scope")),
            _ => return None,
        };
        Some(Challenge { scope, error })
    }

    /// True when the connection must close after the answer whatever the request looked like:
    /// its framing is in doubt, or a body is refused unread.
    pub fn closes(&self) -> bool {
        !matches!(
            self,
            Denial::Route(_)
                | Denial::DuplicateAuthorization
                | Denial::NoToken { .. }
                | Denial::NotBearer { .. }
                | Denial::InvalidToken { .. }
                | Denial::LicenseRevoked { .. }
                | Denial::InsufficientScope { .. }
                | Denial::RateLimited { .. }
                | Denial::StateUnavailable
        )
    }

    /// Headers beside the challenge: `Retry-After`, and the `RateLimit-*` pair of a 429.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Denial::RateLimited {
                headers,
                retry_after,
            } => {
                let mut all = vec![("Retry-After", retry_after.to_string())];
                all.extend(headers.headers());
                all
            }
            Denial::StateUnavailable => vec![("Retry-After", UNAVAILABLE_RETRY_AFTER.to_string())],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn scope() -> String {
        "repository:acme/app:pull".into()
    }

    /// Each reason keeps its documented label, status, Docker code, challenge and connection fate.
    #[rstest]
    #[case(Denial::UriTooLong, "uri_too_long", 414, "UNSUPPORTED", None, true)]
    #[case(
        Denial::HeadersTooLarge,
        "headers_too_large",
        431,
        "UNSUPPORTED",
        None,
        true
    )]
    #[case(
        Denial::AmbiguousFraming,
        "ambiguous_framing",
        400,
        "UNSUPPORTED",
        None,
        true
    )]
    #[case(
        Denial::BadTransferEncoding,
        "bad_transfer_encoding",
        400,
        "UNSUPPORTED",
        None,
        true
    )]
    #[case(Denial::Http10Body, "http10_body", 400, "UNSUPPORTED", None, true)]
    #[case(
        Denial::UpgradeRefused,
        "upgrade_refused",
        400,
        "UNSUPPORTED",
        None,
        true
    )]
    #[case(Denial::PathNotUtf8, "bad_path", 400, "NAME_INVALID", None, true)]
    #[case(
        Denial::TooManyConnections,
        "too_many_connections",
        503,
        "TOOMANYREQUESTS",
        None,
        true
    )]
    #[case(
        Denial::HeaderTimeout,
        "header_timeout",
        408,
        "UNSUPPORTED",
        None,
        true
    )]
    #[case(Denial::BodyTimeout, "body_timeout", 408, "UNSUPPORTED", None, true)]
    #[case(
        Denial::Route(RouteError::BadPath("dot segment")),
        "bad_path",
        400,
        "NAME_INVALID",
        None,
        false
    )]
    #[case(
        Denial::Route(RouteError::BadQuery("x")),
        "bad_query",
        400,
        "NAME_INVALID",
        None,
        false
    )]
    #[case(
        Denial::Route(RouteError::NotFound),
        "not_found",
        404,
        "NOT_FOUND",
        None,
        false
    )]
    #[case(
        Denial::Route(RouteError::MethodNotAllowed),
        "method_not_allowed",
        405,
        "UNSUPPORTED",
        None,
        false
    )]
    #[case(Denial::FormBody, "form_body", 400, "UNSUPPORTED", None, true)]
    #[case(
        Denial::DuplicateAuthorization,
        "duplicate_authorization",
        400,
        "UNAUTHORIZED",
        None,
        false
    )]
    #[case(Denial::NoToken { scope: scope() }, "missing_token", 401, "UNAUTHORIZED", Some(None), false)]
    #[case(Denial::NotBearer { scope: scope() }, "missing_token", 401, "UNAUTHORIZED", Some(None), false)]
    #[case(Denial::InvalidToken { scope: scope() }, "invalid_token", 401, "UNAUTHORIZED", Some(Some("invalid_token")), false)]
    #[case(Denial::LicenseRevoked { scope: scope() }, "license_revoked", 401, "UNAUTHORIZED", Some(Some("invalid_token")), false)]
    #[case(Denial::InsufficientScope { scope: scope() }, "insufficient_scope", 401, "UNAUTHORIZED", Some(Some("insufficient_scope")), false)]
    #[case(Denial::RateLimited { headers: RateHeaders { limit: 3, remaining: 0, window: 3600 }, retry_after: 60 }, "rate_limited", 429, "TOOMANYREQUESTS", None, false)]
    #[case(
        Denial::StateUnavailable,
        "state_unavailable",
        503,
        "UNAVAILABLE",
        None,
        false
    )]
    fn every_reason(
        #[case] denial: Denial,
        #[case] reason: &str,
        #[case] status: u16,
        #[case] code: &str,
        #[case] challenge_error: Option<Option<&str>>,
        #[case] closes: bool,
    ) {
        assert_eq!(denial.as_str(), reason);
        assert_eq!(denial.status(), status);
        assert_eq!(denial.code(), code);
        assert_eq!(denial.challenge().map(|c| c.error), challenge_error);
        if let Some(challenge) = denial.challenge() {
            assert_eq!(challenge.scope, "repository:acme/app:pull");
        }
        assert_eq!(denial.closes(), closes);
        assert!(!denial.to_string().is_empty());
    }
}
