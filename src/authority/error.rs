//! Why the Authority refused a caller, and how each refusal is answered: its HTTP status, its
//! documented `reason`, its RFC 6750 / RFC 9449 `error` code and its `WWW-Authenticate` challenge,
//! all in one place. The proxy writes the response; nothing here knows HTTP types.

use super::credential::Via;
use super::{DpopError, OpTokError, ReplayError, SenderConstraint};
use crate::jose;
use crate::registry::challenge::Challenge;

/// Why a caller was refused. `Display` is the `error_description`: it never quotes a token,
/// proof or key.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials were presented")]
    MissingCredentials,
    #[error("malformed credentials: {0}")]
    InvalidRequest(&'static str),
    #[error("{source}")]
    InvalidToken { via: Via, source: OpTokError },
    #[error("{0}")]
    InvalidProof(DpopError),
    #[error("the DPoP proof was already used")]
    Replay,
    /// The replay store is full, or this key holds its whole share: fail closed.
    #[error("{0}; retry shortly")]
    ReplayFull(ReplayError),
    /// The proof lacks a valid server nonce: answer with [`Authority::fresh_nonce`] in
    /// `DPoP-Nonce` (see [`AuthError::needs_nonce`]).
    #[error("the DPoP proof must carry a fresh server nonce")]
    UseNonce,
    #[error("sender constraint not met: {detail}")]
    SenderMismatch { via: Via, detail: &'static str },
    #[error("the token lacks a scope this registry requires")]
    InsufficientScope { via: Via },
    #[error("the Authority's signing keys are not available; retry later")]
    Unavailable,
    /// The shared replay store (`state.redis`) did not answer: no proof is accepted unchecked.
    #[error("the shared state store is unavailable; retry shortly")]
    StateUnavailable,
}

/// The DPoP `algs` advertised in challenges: what [`jose::ALGORITHMS`] accepts.
pub fn algs() -> String {
    jose::ALGORITHMS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(" ")
}

impl AuthError {
    /// HTTP status: 400, 401, 403 or 503.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::InvalidRequest(_) => 400,
            AuthError::InsufficientScope { .. } => 403,
            AuthError::Unavailable | AuthError::StateUnavailable => 503,
            _ => 401,
        }
    }

    /// The documented `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingCredentials => "missing_credentials",
            AuthError::InvalidRequest(_) => "invalid_request",
            AuthError::InvalidToken { .. } => "invalid_optok",
            AuthError::InvalidProof(_) | AuthError::UseNonce | AuthError::ReplayFull(_) => {
                "invalid_dpop_proof"
            }
            AuthError::Replay => "dpop_replay",
            AuthError::SenderMismatch { .. } => "sender_constraint_mismatch",
            AuthError::InsufficientScope { .. } => "insufficient_optok_scope",
            AuthError::Unavailable => "authority_unavailable",
            AuthError::StateUnavailable => "state_unavailable",
        }
    }

    /// The RFC 6750 / RFC 9449 `error` code; `None` when no credentials were presented.
    pub fn oauth_error(&self) -> Option<&'static str> {
        match self {
            AuthError::MissingCredentials
            | AuthError::Unavailable
            | AuthError::StateUnavailable => None,
            AuthError::InvalidRequest(_) => Some("invalid_request"),
            AuthError::InvalidToken { .. } | AuthError::SenderMismatch { .. } => {
                Some("invalid_token")
            }
            AuthError::InvalidProof(_) | AuthError::Replay | AuthError::ReplayFull(_) => {
                Some("invalid_dpop_proof")
            }
            AuthError::UseNonce => Some("use_dpop_nonce"),
            AuthError::InsufficientScope { .. } => Some("insufficient_scope"),
        }
    }

    /// True when the response must carry one `DPoP-Nonce: <Authority::fresh_nonce>` header
    /// (RFC 9449 section 8; docs/security.md, case 21).
    pub fn needs_nonce(&self) -> bool {
        matches!(self, AuthError::UseNonce)
    }

    /// The `WWW-Authenticate` value: the challenge(s) the configured constraint accepts, with
    /// `error=` in the scheme the caller used.
    pub fn www_authenticate(&self, constraint: SenderConstraint) -> String {
        let dpop = |error: Option<&str>| match error {
            Some(error) => format!(r#"DPoP error="{error}", algs="{}""#, algs()),
            None => format!(r#"DPoP algs="{}""#, algs()),
        };
        let bearer = |error: &str| {
            let challenge = Challenge {
                error: Some(error.to_owned()),
                ..Challenge::default()
            };
            challenge.to_string()
        };
        let accepts_dpop = constraint != SenderConstraint::Mtls;
        let via = match self {
            AuthError::InvalidToken { via, .. }
            | AuthError::SenderMismatch { via, .. }
            | AuthError::InsufficientScope { via } => *via,
            AuthError::InvalidProof(_)
            | AuthError::Replay
            | AuthError::ReplayFull(_)
            | AuthError::UseNonce => Via::Dpop,
            _ if accepts_dpop => Via::Dpop,
            _ => Via::Bearer,
        };
        match (self.oauth_error(), via) {
            (Some(error), Via::Dpop) => dpop(Some(error)),
            (Some(error), Via::Bearer) => bearer(error),
            (None, _) => {
                let mut challenges = Vec::new();
                if accepts_dpop {
                    challenges.push(dpop(None));
                }
                if constraint != SenderConstraint::Dpop {
                    challenges.push(r#"Basic realm="registry-token""#.to_owned());
                }
                challenges.join(", ")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// Status, reason, error code and challenge of each error.
    #[rstest]
    #[case(
        AuthError::MissingCredentials,
        SenderConstraint::Dpop,
        401,
        None,
        r#"DPoP algs="ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512""#
    )]
    #[case(AuthError::MissingCredentials, SenderConstraint::DpopOrMtls, 401, None, r#"DPoP algs="ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512", Basic realm="registry-token""#)]
    #[case(
        AuthError::MissingCredentials,
        SenderConstraint::Mtls,
        401,
        None,
        r#"Basic realm="registry-token""#
    )]
    #[case(AuthError::InvalidProof(DpopError::Signature), SenderConstraint::Dpop, 401, Some("invalid_dpop_proof"), r#"DPoP error="invalid_dpop_proof", algs="ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512""#)]
    #[case(AuthError::UseNonce, SenderConstraint::DpopOrMtls, 401, Some("use_dpop_nonce"), r#"DPoP error="use_dpop_nonce", algs="ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512""#)]
    #[case(AuthError::SenderMismatch { via: Via::Dpop, detail: "x" }, SenderConstraint::Dpop, 401, Some("invalid_token"), r#"DPoP error="invalid_token", algs="ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512""#)]
    #[case(AuthError::InvalidToken { via: Via::Bearer, source: OpTokError::Expired }, SenderConstraint::Mtls, 401, Some("invalid_token"), r#"Bearer error="invalid_token""#)]
    #[case(AuthError::InsufficientScope { via: Via::Bearer }, SenderConstraint::None, 403, Some("insufficient_scope"), r#"Bearer error="insufficient_scope""#)]
    #[case(
        AuthError::InvalidRequest("x"),
        SenderConstraint::Mtls,
        400,
        Some("invalid_request"),
        r#"Bearer error="invalid_request""#
    )]
    #[case(
        AuthError::Unavailable,
        SenderConstraint::Dpop,
        503,
        None,
        r#"DPoP algs="ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512""#
    )]
    #[case(
        AuthError::StateUnavailable,
        SenderConstraint::Dpop,
        503,
        None,
        r#"DPoP algs="ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512""#
    )]
    fn error_mapping(
        #[case] error: AuthError,
        #[case] constraint: SenderConstraint,
        #[case] status: u16,
        #[case] code: Option<&str>,
        #[case] challenge: &str,
    ) {
        assert_eq!(error.status(), status);
        assert_eq!(error.oauth_error(), code);
        assert_eq!(error.www_authenticate(constraint), challenge);
    }
}
