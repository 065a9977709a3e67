//! Responses the sidecar writes itself: JSON bodies, Docker `errors` envelopes, problems.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use serde::Serialize;

use crate::token::realm::Rejection;

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

/// A Docker `errors` response for `/v2/`.
pub async fn docker_error(
    session: &mut Session,
    status: u16,
    code: &str,
    message: &str,
    www_authenticate: Option<&str>,
    close: bool,
) -> Result<()> {
    let body = serde_json::to_vec(&DockerErrors {
        errors: [DockerError { code, message }],
    })
    .unwrap_or_default();
    let mut headers = vec![(
        "Docker-Distribution-API-Version",
        "registry/2.0".to_string(),
    )];
    if let Some(challenge) = www_authenticate {
        headers.push(("WWW-Authenticate", challenge.to_string()));
    }
    send(
        session,
        status,
        "application/json",
        &headers,
        body.into(),
        close,
    )
    .await
}

/// The realm's refusal.
pub async fn rejection(session: &mut Session, r: &Rejection) -> Result<()> {
    let code = match r.status {
        401 => "UNAUTHORIZED",
        403 => "DENIED",
        503 => "UNAVAILABLE",
        _ => "INVALID_REQUEST",
    };
    let body = Problem {
        error: r.error,
        error_description: &r.description,
        reason: r.reason,
        errors: [DockerError {
            code,
            message: &r.description,
        }],
    };
    let mut headers = Vec::new();
    if let Some(challenge) = &r.www_authenticate {
        headers.push(("WWW-Authenticate", challenge.clone()));
    }
    if let Some(secs) = r.retry_after {
        headers.push(("Retry-After", secs.to_string()));
    }
    if let Some(nonce) = &r.dpop_nonce {
        headers.push(("DPoP-Nonce", nonce.clone()));
    }
    json(session, r.status, &body, &headers).await
}
