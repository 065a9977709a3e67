//! The credential a caller presented at the token realm, picked from the raw header values:
//! exactly one of `Authorization: DPoP`, `Bearer` or `Basic`, or a form password, with the
//! `DPoP` proof that rides along with the first two. Malformed presentations are refused here,
//! before any key or signature work.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::{AuthError, DpopError};

/// What the caller presented at the token realm (all header values, raw).
pub struct Presented<'a> {
    /// The request method, for `htm`.
    pub method: &'a str,
    /// Every `Authorization` field value.
    pub authorization: Vec<&'a str>,
    /// Every `DPoP` field value.
    pub dpop: Vec<&'a str>,
    /// The `password` of a POST `grant_type=password`.
    pub form_password: Option<&'a str>,
    /// SHA-256 of the verified TLS client leaf certificate (DER); `None` without one.
    pub client_cert_sha256: Option<[u8; 32]>,
}

/// How the OpTok was presented, as logs name it (`scheme=bearer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: DPoP`.
    Dpop,
    /// `Authorization: Bearer` (with a `DPoP` proof for a DPoP-bound OpTok).
    Bearer,
    /// `Authorization: Basic`, the OpTok as password.
    Basic,
    /// The `password` of a POST `grant_type=password` form.
    Form,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Dpop => "dpop",
            Scheme::Bearer => "bearer",
            Scheme::Basic => "basic",
            Scheme::Form => "form",
        }
    }

    /// The challenge family of the scheme.
    pub(super) fn via(self) -> Via {
        match self {
            Scheme::Dpop => Via::Dpop,
            _ => Via::Bearer,
        }
    }
}

/// How the OpTok came: with the DPoP scheme, or as a bearer token (Bearer, Basic, form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Dpop,
    Bearer,
}

/// The OpTok as presented, with the `DPoP` field values that came with it (DPoP and Bearer
/// schemes; a proof never rides along with Basic or a form password).
pub(super) struct Credential<'a> {
    pub(super) scheme: Scheme,
    pub(super) token: &'a str,
    pub(super) proofs: Vec<&'a str>,
}

/// Spaces and tabs, what HTTP allows around and between the parts of a field value.
const BLANK: [char; 2] = [' ', '\t'];

/// An `Authorization` field value split into its scheme and credentials (`Bearer abc` →
/// `("Bearer", "abc")`), blanks around either dropped; `None` without both. The one reader of
/// the header: the token realm and the `/v2/` decision both call it.
pub fn split_authorization(value: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = value.trim_matches(BLANK).split_once(BLANK)?;
    Some((scheme, rest.trim_matches(BLANK)))
}

/// The one DPoP proof among the `DPoP` field values: exactly one field holding one value
/// (RFC 9449 section 4.3), blanks around it dropped; `None` otherwise. The token realm and the
/// refresh grant both call it.
pub fn one_proof<'a>(values: &[&'a str]) -> Option<&'a str> {
    match values {
        [proof] if !proof.contains(',') => Some(proof.trim_matches(BLANK)),
        _ => None,
    }
}

/// Basic credentials: standard base64, padding optional.
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl<'a> Credential<'a> {
    /// Picks the one credential presented; `Ok(None)` when there is none.
    pub(super) fn from_presented(
        presented: &Presented<'a>,
        basic: &'a mut String,
    ) -> Result<Option<Self>, AuthError> {
        let header = match presented.authorization.as_slice() {
            [] => None,
            [one] => Some(*one),
            _ => {
                return Err(AuthError::InvalidRequest(
                    "more than one Authorization header",
                ))
            }
        };
        let (scheme, token) = match (header, presented.form_password) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(AuthError::InvalidRequest(
                    "credentials both in the Authorization header and the form",
                ))
            }
            (None, Some("")) => return Err(AuthError::InvalidRequest("the password is empty")),
            (None, Some(password)) => (Scheme::Form, password),
            (Some(value), None) => Self::authorization(value, basic)?,
        };
        let proofs = match scheme {
            Scheme::Dpop | Scheme::Bearer => presented.dpop.clone(),
            Scheme::Basic | Scheme::Form => Vec::new(),
        };
        let credential = Credential {
            scheme,
            token,
            proofs,
        };
        if scheme == Scheme::Dpop {
            // The DPoP scheme always needs its proof: refuse a bad presentation before any work.
            credential.proof()?;
        }
        Ok(Some(credential))
    }

    pub(super) fn via(&self) -> Via {
        self.scheme.via()
    }

    /// The one proof presented (see [`one_proof`]).
    pub(super) fn proof(&self) -> Result<&'a str, AuthError> {
        one_proof(&self.proofs).ok_or(AuthError::InvalidProof(DpopError::Missing))
    }

    /// `DPoP <t>`, `Bearer <t>` or `Basic base64(user:t)`; scheme names in any case.
    fn authorization(
        value: &'a str,
        basic: &'a mut String,
    ) -> Result<(Scheme, &'a str), AuthError> {
        let (scheme, token) = split_authorization(value).ok_or(AuthError::InvalidRequest(
            "the Authorization header has no credentials",
        ))?;
        if token.contains([' ', '\t', ',']) {
            return Err(AuthError::InvalidRequest(
                "the Authorization header must carry exactly one credential",
            ));
        }
        if scheme.eq_ignore_ascii_case("DPoP") {
            Ok((Scheme::Dpop, token))
        } else if scheme.eq_ignore_ascii_case("Bearer") {
            Ok((Scheme::Bearer, token))
        } else if scheme.eq_ignore_ascii_case("Basic") {
            let decoded = BASIC
                .decode(token)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            let decoded = decoded.ok_or(AuthError::InvalidRequest(
                "the Basic credentials are not base64 user:password",
            ))?;
            let Some((_, password)) = decoded.split_once(':') else {
                return Err(AuthError::InvalidRequest(
                    "the Basic credentials are not base64 user:password",
                ));
            };
            if password.is_empty() {
                return Err(AuthError::InvalidRequest("the password is empty"));
            }
            *basic = password.to_owned();
            let basic: &'a String = basic;
            Ok((Scheme::Basic, basic.as_str()))
        } else {
            Err(AuthError::InvalidRequest(
                "unsupported authorization scheme",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// The one reader of `Authorization`: scheme and credentials apart, blanks around either
    /// dropped; nothing without both.
    #[rstest]
    #[case::bearer("Bearer abc", Some(("Bearer", "abc")))]
    #[case::any_case("bEaReR abc", Some(("bEaReR", "abc")))]
    #[case::blanks_around("  DPoP \t abc\t ", Some(("DPoP", "abc")))]
    #[case::tab_between("Bearer\tabc", Some(("Bearer", "abc")))]
    #[case::inner_blank_kept("Bearer a b", Some(("Bearer", "a b")))]
    #[case::scheme_alone("Bearer", None)]
    #[case::scheme_and_blanks("Bearer  \t", None)]
    #[case::empty("", None)]
    fn authorization_splits(#[case] value: &str, #[case] split: Option<(&str, &str)>) {
        assert_eq!(split_authorization(value), split);
    }

    /// Exactly one `DPoP` field holding one value is a proof; none, two, or a list is not.
    #[rstest]
    #[case::one(&["a.b.c"], Some("a.b.c"))]
    #[case::blanks_dropped(&[" a.b.c\t"], Some("a.b.c"))]
    #[case::none(&[], None)]
    #[case::two_fields(&["a.b.c", "d.e.f"], None)]
    #[case::a_list(&["a.b.c, d.e.f"], None)]
    fn one_proof_only(#[case] values: &[&str], #[case] proof: Option<&str>) {
        assert_eq!(one_proof(values), proof);
    }
}
