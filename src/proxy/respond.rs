//! Responses the sidecar writes itself: JSON bodies, Docker `errors` envelopes, problems.
//!
//! Every refusal becomes HTTP here and only here: [`refusal_reply`] for the token realm's
//! [`Refusal`], [`denial_reply`] for the main listener's [`Denial`]. Both are pure (a [`Reply`]
//! tests can read); [`refusal`] and [`denial`] write them.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use serde::Serialize;

use super::denial::Denial;
use crate::authority::SenderConstraint;
use crate::registry::challenge::Challenge;
use crate::token::realm::{RealmChallenge, Refusal};

/// One entry of the Docker registry `errors` array.
#[derive(Serialize)]
pub struct DockerError<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

/// The Docker registry error envelope.
#[derive(Serialize)]
pub struct DockerErrors<'a> {
    pub errors: [DockerError<'a>; 1],
}

/// The realm's problem body: RFC 6750 `error`/`error_description`, the machine `reason`, and the
/// Docker `errors` array so that clients print a sentence.
#[derive(Serialize)]
struct Problem<'a> {
    error: &'a str,
    error_description: &'a str,
    reason: &'a str,
    errors: [DockerError<'a>; 1],
}

/// Writes a complete response. `close` drops the connection afterwards: used when a request
/// body may be left unread, so that no leftover bytes are parsed as a next request.
pub async fn send(
    session: &mut Session,
    status: u16,
    content_type: &str,
    headers: &[(&str, String)],
    body: Bytes,
    close: bool,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4 + headers.len()))?;
    resp.insert_header("Content-Type", content_type)?;
    resp.insert_header("Content-Length", body.len().to_string())?;
    resp.insert_header("Cache-Control", "no-store")?;
    for (name, value) in headers {
        resp.append_header(name.to_string(), value.as_str())?;
    }
    if close {
        session.set_keepalive(None);
        resp.insert_header("Connection", "close")?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

pub async fn json<T: Serialize>(
    session: &mut Session,
    status: u16,
    value: &T,
    headers: &[(&str, String)],
) -> Result<()> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    send(
        session,
        status,
        "application/json",
        headers,
        body.into(),
        false,
    )
    .await
}

pub async fn text(session: &mut Session, status: u16, body: &'static str) -> Result<()> {
    send(
        session,
        status,
        "text/plain; charset=utf-8",
        &[],
        Bytes::from_static(body.as_bytes()),
        false,
    )
    .await
}

/// The Docker `errors` body, `{"errors":[{"code":…,"message":…}]}`: the one writer of it, for
/// every refusal of the main listener.
pub fn docker_errors(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&DockerErrors {
        errors: [DockerError { code, message }],
    })
    .unwrap_or_default()
}

/// The header every Docker `errors` response carries.
fn api_version() -> (&'static str, String) {
    (
        "Docker-Distribution-API-Version",
        "registry/2.0".to_string(),
    )
}

/// A Docker `errors` response for `/v2/` without a challenge.
pub async fn docker_error(
    session: &mut Session,
    status: u16,
    code: &str,
    message: &str,
    close: bool,
) -> Result<()> {
    let reply = Reply {
        status,
        headers: vec![api_version()],
        body: docker_errors(code, message),
        close,
    };
    reply.write(session).await
}

/// A response before it is written: status, headers after the fixed ones, body, and whether
/// the connection closes afterwards.
#[derive(Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub close: bool,
}

impl Reply {
    /// The whole response as HTTP/1.1 bytes, for a connection no pingora session was made for
    /// (a request head refused before it was whole).
    pub fn to_http1(&self) -> Vec<u8> {
        use std::fmt::Write;
        let reason = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or_default();
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
            self.status,
            self.body.len()
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        if self.close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// Writes it as `application/json`.
    pub async fn write(self, session: &mut Session) -> Result<()> {
        send(
            session,
            self.status,
            "application/json",
            &self.headers,
            self.body.into(),
            self.close,
        )
        .await
    }
}

/// The realm's refusal: RFC 6750 problem with `reason` and the Docker `errors` array, the
/// challenge under `constraint`, `Retry-After`, and `nonce` as `DPoP-Nonce` when given.
pub fn refusal_reply(r: &Refusal, constraint: SenderConstraint, nonce: Option<String>) -> Reply {
    let description = r.to_string();
    let body = Problem {
        error: r.error(),
        error_description: &description,
        reason: r.as_str(),
        errors: [DockerError {
            code: r.docker_code(),
            message: &description,
        }],
    };
    let mut headers = Vec::new();
    match r.challenge() {
        RealmChallenge::None => {}
        RealmChallenge::Authority(e) => {
            headers.push(("WWW-Authenticate", e.www_authenticate(constraint)))
        }
        RealmChallenge::Bearer => {
            let challenge = Challenge {
                error: Some(r.error().to_owned()),
                error_description: Some(description.clone()),
                ..Challenge::default()
            };
            headers.push(("WWW-Authenticate", challenge.to_string()))
        }
    }
    if let Some(secs) = r.retry_after() {
        headers.push(("Retry-After", secs.to_string()));
    }
    if let Some(nonce) = nonce {
        headers.push(("DPoP-Nonce", nonce));
    }
    Reply {
        status: r.status(),
        headers,
        body: serde_json::to_vec(&body).unwrap_or_default(),
        close: false,
    }
}

/// Writes the realm's refusal (see [`refusal_reply`]).
pub async fn refusal(
    session: &mut Session,
    r: &Refusal,
    constraint: SenderConstraint,
    nonce: Option<String>,
) -> Result<()> {
    refusal_reply(r, constraint, nonce).write(session).await
}

/// A refusal on the main listener: the Docker `errors` body, the Bearer challenge of a 401
/// (`realm`, `service` and the scope the route needs), and `Connection: close` when the
/// variant asks for it or `body_pending` (a body may be left unread).
pub fn denial_reply(d: &Denial, realm: &str, service: &str, body_pending: bool) -> Reply {
    let message = d.to_string();
    let body = docker_errors(d.code(), &message);
    let mut headers = vec![api_version()];
    if let Some(challenge) = d.challenge() {
        let header = Challenge {
            realm: Some(realm.to_string()),
            service: Some(service.to_string()),
            scope: (!challenge.scope.is_empty()).then(|| challenge.scope.to_string()),
            error: challenge.error.map(str::to_string),
            error_description: None,
        };
        headers.push(("WWW-Authenticate", header.to_string()));
    }
    headers.extend(d.headers());
    Reply {
        status: d.status(),
        headers,
        body,
        close: d.closes() || body_pending,
    }
}

/// Writes a refusal of the main listener (see [`denial_reply`]).
pub async fn denial(
    session: &mut Session,
    d: &Denial,
    realm: &str,
    service: &str,
    body_pending: bool,
) -> Result<()> {
    denial_reply(d, realm, service, body_pending)
        .write(session)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::{algs, AuthError};
    use crate::registry::RouteError;

    const REALM: &str = "https://sidecar.test/token";
    const SERVICE: &str = "registry.test";

    type Headers<'a> = Vec<(&'a str, String)>;

    fn text(reply: &Reply) -> String {
        String::from_utf8(reply.body.clone()).unwrap()
    }

    /// The realm's refusals as written before the refusal model, byte for byte.
    #[test]
    fn realm_refusals_render_unchanged() {
        let dpop_challenge = format!(r#"DPoP algs="{}""#, algs());
        // (refusal, nonce, status, headers, body)
        let rows: Vec<(Refusal, Option<&str>, u16, Headers, &str)> = vec![
            (
                Refusal::LicenseRevoked,
                None,
                403,
                vec![("WWW-Authenticate", r#"Bearer error="invalid_token",error_description="this license has been revoked""#.into())],
                r#"{"error":"invalid_token","error_description":"this license has been revoked","reason":"license_revoked","errors":[{"code":"DENIED","message":"this license has been revoked"}]}"#,
            ),
            (
                Refusal::UnknownPlan,
                None,
                403,
                vec![("WWW-Authenticate", r#"Bearer error="insufficient_scope",error_description="the caller's plan is not known to this registry""#.into())],
                r#"{"error":"insufficient_scope","error_description":"the caller's plan is not known to this registry","reason":"unknown_plan","errors":[{"code":"DENIED","message":"the caller's plan is not known to this registry"}]}"#,
            ),
            (
                Refusal::MissingCredentials,
                None,
                401,
                vec![("WWW-Authenticate", dpop_challenge.clone())],
                r#"{"error":"invalid_token","error_description":"credentials are required for this scope","reason":"missing_credentials","errors":[{"code":"UNAUTHORIZED","message":"credentials are required for this scope"}]}"#,
            ),
            (
                Refusal::Authority(AuthError::Unavailable),
                None,
                503,
                vec![("WWW-Authenticate", dpop_challenge.clone()), ("Retry-After", "10".into())],
                r#"{"error":"invalid_request","error_description":"the Authority's signing keys are not available; retry later","reason":"authority_unavailable","errors":[{"code":"UNAVAILABLE","message":"the Authority's signing keys are not available; retry later"}]}"#,
            ),
            (
                Refusal::Authority(AuthError::UseNonce),
                Some("n1"),
                401,
                vec![
                    ("WWW-Authenticate", format!(r#"DPoP error="use_dpop_nonce", algs="{}""#, algs())),
                    ("DPoP-Nonce", "n1".into()),
                ],
                r#"{"error":"use_dpop_nonce","error_description":"the DPoP proof must carry a fresh server nonce","reason":"invalid_dpop_proof","errors":[{"code":"UNAUTHORIZED","message":"the DPoP proof must carry a fresh server nonce"}]}"#,
            ),
            (
                Refusal::MissingService,
                None,
                400,
                vec![],
                r#"{"error":"invalid_request","error_description":"service is missing","reason":"service_not_allowed","errors":[{"code":"INVALID_REQUEST","message":"service is missing"}]}"#,
            ),
        ];
        for (refusal, nonce, status, headers, body) in rows {
            let reply = refusal_reply(&refusal, SenderConstraint::Dpop, nonce.map(String::from));
            assert_eq!(reply.status, status, "{refusal}");
            assert_eq!(reply.headers, headers, "{refusal}");
            assert_eq!(text(&reply), body, "{refusal}");
            assert!(!reply.close);
        }
    }

    /// The main listener's refusals as written before the refusal model, byte for byte.
    #[test]
    fn denials_render_unchanged() {
        let api = (
            "Docker-Distribution-API-Version",
            "registry/2.0".to_string(),
        );
        let challenge = |rest: &str| {
            (
                "WWW-Authenticate",
                format!(r#"Bearer realm="{REALM}",service="{SERVICE}"{rest}"#),
            )
        };
        let scope = "repository:acme/app:pull".to_string();
        // (denial, body pending, status, headers, body, close)
        let rows: Vec<(Denial, bool, u16, Headers, &str, bool)> = vec![
            (
                Denial::InsufficientScope {
                    scope: scope.clone(),
                },
                false,
                401,
                vec![
                    api.clone(),
                    challenge(r#",scope="repository:acme/app:pull",error="insufficient_scope""#),
                ],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"the token does not grant this access"}]}"#,
                false,
            ),
            (
                Denial::NoToken {
                    scope: String::new(),
                },
                true,
                401,
                vec![api.clone(), challenge("")],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                true,
            ),
            (
                Denial::InvalidToken { scope },
                false,
                401,
                vec![
                    api.clone(),
                    challenge(r#",scope="repository:acme/app:pull",error="invalid_token""#),
                ],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"the token is not valid here"}]}"#,
                false,
            ),
            (
                Denial::Route(RouteError::BadPath("dot segment")),
                false,
                400,
                vec![api.clone()],
                r#"{"errors":[{"code":"NAME_INVALID","message":"invalid path: dot segment"}]}"#,
                false,
            ),
            (
                Denial::FormBody,
                false,
                400,
                vec![api.clone()],
                r#"{"errors":[{"code":"UNSUPPORTED","message":"form-encoded bodies are not accepted on /v2/"}]}"#,
                true,
            ),
            (
                Denial::AmbiguousFraming,
                false,
                400,
                vec![api.clone()],
                r#"{"errors":[{"code":"UNSUPPORTED","message":"Content-Length and Transfer-Encoding together"}]}"#,
                true,
            ),
            (
                Denial::RateLimited {
                    headers: crate::policy::limits::RateHeaders {
                        limit: 3,
                        remaining: 0,
                        window: 3600,
                    },
                    retry_after: 42,
                },
                false,
                429,
                vec![
                    api.clone(),
                    ("Retry-After", "42".into()),
                    ("RateLimit-Limit", "3;w=3600".into()),
                    ("RateLimit-Remaining", "0;w=3600".into()),
                ],
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit reached: 3 manifest pulls per 3600s; retry after 42s"}]}"#,
                false,
            ),
            (
                Denial::StateUnavailable,
                false,
                503,
                vec![api.clone(), ("Retry-After", "10".into())],
                r#"{"errors":[{"code":"UNAVAILABLE","message":"the pull could not be counted against the plan's limit; retry later"}]}"#,
                false,
            ),
            (
                Denial::PathNotUtf8,
                false,
                400,
                vec![api],
                r#"{"errors":[{"code":"NAME_INVALID","message":"the request path is not UTF-8"}]}"#,
                true,
            ),
        ];
        for (denial, pending, status, headers, body, close) in rows {
            let reply = denial_reply(&denial, REALM, SERVICE, pending);
            assert_eq!(reply.status, status, "{denial}");
            assert_eq!(reply.headers, headers, "{denial}");
            assert_eq!(text(&reply), body, "{denial}");
            assert_eq!(reply.close, close, "{denial}");
        }
    }

    /// A refusal written on a bare connection (a head refused before pingora parsed it) is the
    /// same reply as HTTP/1.1 bytes: status line, the fixed headers, its own, close, body.
    #[test]
    fn reply_as_http1_bytes() {
        let reply = denial_reply(&Denial::HeadersTooLarge, REALM, SERVICE, true);
        let body =
            r#"{"errors":[{"code":"UNSUPPORTED","message":"the request headers are too large"}]}"#;
        let expected = format!(
            "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\nDocker-Distribution-API-Version: registry/2.0\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(String::from_utf8(reply.to_http1()).unwrap(), expected);
    }
}
