//! Claim placeholders in plan patterns (docs/namespaces.md): `${sub}`, `${license}`,
//! `${client_id}` or `${claim:NAME}`, optionally `|lower`, as a whole segment of a pattern.
//!
//! A placeholder is filled at decision time from the caller's [`Values`] (the OpTok's claims,
//! or the ones a refresh token kept). The value must then be one repository path component by
//! itself; anything else (missing, empty, `/`, `..`, `*`, `%`, upper case without `|lower`,
//! non-ASCII, longer than [`VALUE_MAX`]) is [`Unusable`]: the pattern matches nothing for that
//! caller, never a wider name (docs/security.md, case 92).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::registry::name::is_path_component;

/// Longest value a placeholder accepts, in bytes.
pub const VALUE_MAX: usize = 128;

/// The OpTok claim `${client_id}` reads (RFC 9068 `client_id`).
pub const CLIENT_ID_CLAIM: &str = "client_id";

/// What a placeholder names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Variable {
    /// The OpTok's `sub`.
    Sub,
    /// The license claim (`authority.claims.license`).
    License,
    /// The OpTok's `client_id` claim.
    ClientId,
    /// Any string claim of the OpTok, by name.
    Claim(String),
}

impl Variable {
    /// The OpTok claim this variable keeps in [`Values::claims`]; `None` for `sub` and the
    /// license, which callers and tokens carry on their own.
    pub fn claim(&self) -> Option<&str> {
        match self {
            Variable::Sub | Variable::License => None,
            Variable::ClientId => Some(CLIENT_ID_CLAIM),
            Variable::Claim(name) => Some(name),
        }
    }
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Variable::Sub => f.write_str("sub"),
            Variable::License => f.write_str("license"),
            Variable::ClientId => f.write_str("client_id"),
            Variable::Claim(name) => write!(f, "claim:{name}"),
        }
    }
}

/// One `${...}` segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Placeholder {
    pub variable: Variable,
    /// `|lower`: ASCII letters are lower-cased before the value is checked.
    pub lower: bool,
}

/// Why a placeholder was refused at load time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    #[error("a placeholder must be a whole segment, written `${{NAME}}` or `${{NAME|lower}}`")]
    NotWholeSegment,
    #[error("unknown placeholder variable `{0}`: use sub, license, client_id or claim:NAME")]
    UnknownVariable(String),
    #[error("unknown placeholder filter `{0}`: the only one is `lower`")]
    UnknownFilter(String),
}

/// Why a placeholder could not be filled for a caller: its pattern matches nothing for them.
/// Never quotes the value (it may be a license or any claim).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("`{0}` is missing (no such claim, or an anonymous caller)")]
    Missing(Variable),
    #[error("`{0}` is empty")]
    Empty(Variable),
    #[error("`{0}` is longer than {VALUE_MAX} bytes")]
    TooLong(Variable),
    #[error("`{0}` is not ASCII")]
    NotAscii(Variable),
    #[error("`{0}` has upper case letters (use `|lower`)")]
    UpperCase(Variable),
    #[error("`{0}` is not one repository path component (`/`, `..`, `*`, `%` or another character the name grammar refuses)")]
    NotAComponent(Variable),
}

impl Placeholder {
    /// Parses a whole segment such as `${license|lower}`.
    pub fn parse(segment: &str) -> Result<Placeholder, PlaceholderError> {
        let inner = segment
            .strip_prefix("${")
            .and_then(|s| s.strip_suffix('}'))
            .filter(|s| !s.contains(['$', '{', '}']))
            .ok_or(PlaceholderError::NotWholeSegment)?;
        let (name, lower) = match inner.split_once('|') {
            None => (inner, false),
            Some((name, "lower")) => (name, true),
            Some((_, filter)) => return Err(PlaceholderError::UnknownFilter(filter.into())),
        };
        let variable = match name {
            "sub" => Variable::Sub,
            "license" => Variable::License,
            "client_id" => Variable::ClientId,
            _ => match name.strip_prefix("claim:") {
                Some(claim) if is_claim_name(claim) => Variable::Claim(claim.into()),
                _ => return Err(PlaceholderError::UnknownVariable(name.into())),
            },
        };
        Ok(Placeholder { variable, lower })
    }

    /// The caller's value for this placeholder, checked to be one repository path component.
    pub fn value(&self, values: &Values) -> Result<String, Unusable> {
        let variable = &self.variable;
        let raw = values
            .get(variable)
            .ok_or_else(|| Unusable::Missing(variable.clone()))?;
        if raw.is_empty() {
            return Err(Unusable::Empty(variable.clone()));
        }
        if raw.len() > VALUE_MAX {
            return Err(Unusable::TooLong(variable.clone()));
        }
        if !raw.is_ascii() {
            return Err(Unusable::NotAscii(variable.clone()));
        }
        // ASCII only: Unicode case mapping could turn a refused character into an accepted one.
        let value = if self.lower {
            raw.to_ascii_lowercase()
        } else {
            raw.to_string()
        };
        if value.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Unusable::UpperCase(variable.clone()));
        }
        if !is_path_component(&value) {
            return Err(Unusable::NotAComponent(variable.clone()));
        }
        Ok(value)
    }
}

/// A claim name after `claim:`: printable ASCII without spaces, `/` (the pattern's separator)
/// or the placeholder's own marks.
fn is_claim_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'|' | b'$' | b'{' | b'}' | b'/'))
}

/// What placeholders are filled from: the caller's subject and license, and the OpTok's other
/// string claims that the plans name (`client_id`, `claim:NAME`). An anonymous caller has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Values {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// String claims by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
}

impl Values {
    fn get(&self, variable: &Variable) -> Option<&str> {
        match variable {
            Variable::Sub => self.sub.as_deref(),
            Variable::License => self.license.as_deref(),
            other => other
                .claim()
                .and_then(|c| self.claims.get(c))
                .map(String::as_str),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("${sub}", Variable::Sub, false)]
    #[case("${license}", Variable::License, false)]
    #[case("${license|lower}", Variable::License, true)]
    #[case("${client_id}", Variable::ClientId, false)]
    #[case("${claim:tenant}", Variable::Claim("tenant".into()), false)]
    #[case("${claim:stellaops:tenant|lower}", Variable::Claim("stellaops:tenant".into()), true)]
    fn parses(#[case] segment: &str, #[case] variable: Variable, #[case] lower: bool) {
        assert_eq!(
            Placeholder::parse(segment),
            Ok(Placeholder { variable, lower })
        );
    }

    #[rstest]
    #[case("a${sub}", "whole segment")]
    #[case("${sub}a", "whole segment")]
    #[case("${sub", "whole segment")]
    #[case("$sub", "whole segment")]
    #[case("${${sub}}", "whole segment")]
    #[case("{sub}", "whole segment")]
    #[case("${user}", "unknown placeholder variable `user`")]
    #[case("${}", "unknown placeholder variable")]
    #[case("${claim:}", "unknown placeholder variable")]
    #[case("${claim:a b}", "unknown placeholder variable")]
    #[case("${SUB}", "unknown placeholder variable")]
    #[case("${sub|upper}", "unknown placeholder filter `upper`")]
    #[case("${sub|lower|lower}", "unknown placeholder filter")]
    fn refused(#[case] segment: &str, #[case] says: &str) {
        let err = Placeholder::parse(segment).unwrap_err().to_string();
        assert!(err.contains(says), "{segment}: {err}");
    }

    /// 300 bytes.
    const LONG: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn license(value: &str) -> Values {
        Values {
            license: Some(value.into()),
            ..Values::default()
        }
    }

    /// Security case 92: every value that is not one path component is refused, with its reason.
    #[rstest]
    #[case(false, "acme", Ok("acme"))]
    #[case(true, "ACME-Corp", Ok("acme-corp"))]
    #[case(false, "lic-0001.x_y", Ok("lic-0001.x_y"))]
    #[case(false, "a/b", Err("not one repository path component"))]
    #[case(false, "..", Err("not one repository path component"))]
    #[case(false, ".", Err("not one repository path component"))]
    #[case(false, "*", Err("not one repository path component"))]
    #[case(false, "**", Err("not one repository path component"))]
    #[case(false, "", Err("is empty"))]
    #[case(false, "%2f", Err("not one repository path component"))]
    #[case(false, "a%2fb", Err("not one repository path component"))]
    #[case(false, "ACME", Err("upper case"))]
    #[case(false, "Acme", Err("upper case"))]
    #[case(true, LONG, Err("longer than 128"))]
    #[case(true, "acmé", Err("not ASCII"))]
    #[case(true, "\u{130}", Err("not ASCII"))] // `İ`, which Unicode lower-cases to `i̇`
    #[case(false, "a b", Err("not one repository path component"))]
    #[case(false, "-a", Err("not one repository path component"))]
    #[case(false, "a:5000", Err("not one repository path component"))]
    #[case(false, "a\u{0}", Err("not one repository path component"))]
    fn values(#[case] lower: bool, #[case] value: &str, #[case] expected: Result<&str, &str>) {
        let placeholder = Placeholder {
            variable: Variable::License,
            lower,
        };
        match (placeholder.value(&license(value)), expected) {
            (Ok(v), Ok(e)) => assert_eq!(v, e),
            (Err(err), Err(says)) => {
                let text = err.to_string();
                assert!(text.contains(says), "{value:?}: {text}");
                assert!(
                    value.len() < 3 || !text.contains(value),
                    "the value is never quoted"
                );
            }
            (got, _) => panic!("{value:?}: {got:?}"),
        }
    }

    /// A missing claim, and every variable read from its own place.
    #[test]
    fn sources() {
        let values = Values {
            sub: Some("alice".into()),
            license: Some("lic-1".into()),
            claims: [("client_id", "ops-page"), ("tenant", "t1")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let fill = |s: &str| Placeholder::parse(s).unwrap().value(&values);
        assert_eq!(fill("${sub}").as_deref(), Ok("alice"));
        assert_eq!(fill("${license}").as_deref(), Ok("lic-1"));
        assert_eq!(fill("${client_id}").as_deref(), Ok("ops-page"));
        assert_eq!(fill("${claim:tenant}").as_deref(), Ok("t1"));
        assert_eq!(
            fill("${claim:org}"),
            Err(Unusable::Missing(Variable::Claim("org".into())))
        );
        let longest = "a".repeat(VALUE_MAX);
        assert_eq!(
            Placeholder::parse("${license}")
                .unwrap()
                .value(&license(&longest)),
            Ok(longest.clone())
        );
        let anonymous = Values::default();
        let p = Placeholder::parse("${sub}").unwrap();
        assert_eq!(p.value(&anonymous), Err(Unusable::Missing(Variable::Sub)));
    }
}
