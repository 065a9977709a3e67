//! The `WWW-Authenticate: Bearer` challenge a registry answers an unauthenticated `/v2/` with
//! (Distribution's `registry/auth/token`): `realm`, `service`, `scope`, `error`, and RFC 6750's
//! `error_description`. Every Bearer challenge the sidecar writes is [`Challenge`]'s `Display`
//! (`/v2/` 401s and token realm refusals in `proxy::respond`, the Authority's errors); the `test`
//! and `doctor` commands read the one a registry sends with [`Challenge::parse`].

use std::collections::HashMap;

/// The parameters of a `WWW-Authenticate: Bearer ...` challenge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Challenge {
    pub realm: Option<String>,
    pub service: Option<String>,
    pub scope: Option<String>,
    pub error: Option<String>,
    /// Written through [`quote_safe`]: a sentence may hold characters a quoted value cannot.
    pub error_description: Option<String>,
}

/// Keeps a description usable inside a quoted header parameter.
pub fn quote_safe(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
        .collect()
}

impl Challenge {
    /// Parses `Bearer realm="...",service="...",scope="..."`; `None` for any other scheme.
    pub fn parse(header: &str) -> Option<Challenge> {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut params = HashMap::new();
        let mut rest = rest.trim();
        while let Some((name, after)) = rest.split_once('=') {
            let name = name
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_ascii_lowercase();
            let (value, after) = match after.strip_prefix('"') {
                // Quoted string: up to the next unescaped quote.
                Some(quoted) => {
                    let end = quoted.find('"').unwrap_or(quoted.len());
                    (
                        quoted[..end].to_string(),
                        quoted.get(end + 1..).unwrap_or(""),
                    )
                }
                None => {
                    let end = after.find(',').unwrap_or(after.len());
                    (after[..end].trim().to_string(), &after[end..])
                }
            };
            params.insert(name, value);
            rest = after.trim_start_matches([',', ' ']);
        }
        let mut take = |k: &str| params.remove(k);
        Some(Challenge {
            realm: take("realm"),
            service: take("service"),
            scope: take("scope"),
            error: take("error"),
            error_description: take("error_description"),
        })
    }
}

/// `Bearer realm="...",service="...",scope="...",error="...",error_description="..."`, absent
/// parameters left out, in the order Distribution writes them.
impl std::fmt::Display for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer ")?;
        let description = self.error_description.as_deref().map(quote_safe);
        let params = [
            ("realm", &self.realm),
            ("service", &self.service),
            ("scope", &self.scope),
            ("error", &self.error),
            ("error_description", &description),
        ];
        let mut first = true;
        for (name, value) in params {
            if let Some(value) = value {
                let comma = if first { "" } else { "," };
                write!(f, "{comma}{name}=\"{value}\"")?;
                first = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// Challenges parse whatever the order and spacing; another scheme is not a Bearer challenge.
    #[rstest]
    #[case::sidecar(
        r#"Bearer realm="http://h:1/token",service="registry.test",scope="repository:a/b:pull""#,
        Some("http://h:1/token"),
        Some("registry.test"),
        None
    )]
    #[case::distribution(
        r#"Bearer realm="https://r/token",service="svc",error="invalid_token""#,
        Some("https://r/token"),
        Some("svc"),
        Some("invalid_token")
    )]
    #[case::spaces(r#"bearer service="s", realm="r""#, Some("r"), Some("s"), None)]
    #[case::basic(r#"Basic realm="x""#, None, None, None)]
    fn challenges_parse(
        #[case] header: &str,
        #[case] realm: Option<&str>,
        #[case] service: Option<&str>,
        #[case] error: Option<&str>,
    ) {
        let parsed = Challenge::parse(header);
        assert_eq!(parsed.as_ref().and_then(|c| c.realm.as_deref()), realm);
        assert_eq!(parsed.as_ref().and_then(|c| c.service.as_deref()), service);
        assert_eq!(parsed.as_ref().and_then(|c| c.error.as_deref()), error);
    }

    /// What the sidecar writes reads back the same, and in Distribution's order.
    #[test]
    fn written_challenges_read_back() {
        let challenge = Challenge {
            realm: Some("https://r.example/token".into()),
            service: Some("registry.example".into()),
            scope: Some("repository:a/b:pull,push".into()),
            error: Some("insufficient_scope".into()),
            error_description: None,
        };
        let text = challenge.to_string();
        assert_eq!(
            text,
            r#"Bearer realm="https://r.example/token",service="registry.example",scope="repository:a/b:pull,push",error="insufficient_scope""#
        );
        assert_eq!(Challenge::parse(&text), Some(challenge));
        let bare = Challenge {
            realm: Some("r".into()),
            service: Some("s".into()),
            ..Challenge::default()
        };
        assert_eq!(bare.to_string(), r#"Bearer realm="r",service="s""#);
        let described = Challenge {
            error: Some("invalid_token".into()),
            error_description: Some("a \"quoted\" \\ word".into()),
            ..Challenge::default()
        };
        assert_eq!(
            described.to_string(),
            r#"Bearer error="invalid_token",error_description="a quoted  word""#
        );
    }
}
