//! Repository patterns of the plans (docs/configuration.md, docs/namespaces.md): `/`-separated
//! segments, where `*` is exactly one segment, `**` one or more, a claim placeholder
//! (`${license|lower}`) one segment filled from the caller's claims, and anything else a literal
//! path component (or a `host:port` first segment). Compiled when the configuration loads; a
//! pattern with placeholders is [`Pattern::expand`]ed for each caller, then matched for every
//! scope.
//!
//! Matching walks the name once while tracking the set of pattern positions reached (an NFA),
//! so it costs at most segments × pattern-length steps whatever the `**`s: no backtracking.

use std::fmt;

use super::placeholder::{Placeholder, PlaceholderError, Unusable, Values};
use crate::registry::name::{is_domain, is_path_component};

/// Why a pattern was refused at load time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("the pattern is empty")]
    Empty,
    #[error("pattern `{0}` has an empty segment (leading, trailing or doubled `/`)")]
    EmptySegment(String),
    #[error("segment `{0}`: `*` and `**` must be whole segments")]
    PartialWildcard(String),
    #[error("segment `{0}` is not a lower-case repository path component")]
    InvalidSegment(String),
    #[error("segment `{0}`: a registry host may only be the first segment")]
    MisplacedHost(String),
    #[error("segment `{segment}`: {error}")]
    Placeholder {
        segment: String,
        error: PlaceholderError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Exactly this component.
    Literal(String),
    /// `*`: any one segment.
    One,
    /// `**` expands to One then Many; Many alone is any number of segments, none included.
    Many,
    /// `${...}`: one segment, the caller's value; replaced by a `Literal` in [`Pattern::expand`]
    /// and never matched as it is.
    Placeholder(Placeholder),
}

/// A compiled repository pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    segments: Vec<Segment>,
}

impl Pattern {
    /// Compiles `s`, or says what is wrong with it.
    pub fn compile(s: &str) -> Result<Pattern, PatternError> {
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        let mut segments = Vec::new();
        for (i, part) in s.split('/').enumerate() {
            match part {
                "" => return Err(PatternError::EmptySegment(s.to_string())),
                _ if part.contains('$') || part.contains('{') || part.contains('}') => {
                    let placeholder =
                        Placeholder::parse(part).map_err(|error| PatternError::Placeholder {
                            segment: part.to_string(),
                            error,
                        })?;
                    segments.push(Segment::Placeholder(placeholder));
                }
                "*" => segments.push(Segment::One),
                "**" => segments.extend([Segment::One, Segment::Many]),
                _ if part.contains('*') => {
                    return Err(PatternError::PartialWildcard(part.to_string()))
                }
                _ if is_path_component(part) => segments.push(Segment::Literal(part.to_string())),
                _ if part.contains(':') && is_domain(part) => {
                    if i > 0 {
                        return Err(PatternError::MisplacedHost(part.to_string()));
                    }
                    segments.push(Segment::Literal(part.to_string()));
                }
                _ => return Err(PatternError::InvalidSegment(part.to_string())),
            }
        }
        Ok(Pattern {
            source: s.to_string(),
            segments,
        })
    }

    /// The placeholders of this pattern, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Placeholder(p) => Some(p),
            _ => None,
        })
    }

    /// This pattern with every placeholder replaced by the caller's value, or why it matches
    /// nothing for this caller (a value missing or not a repository path component). A pattern
    /// without placeholders comes back as it is.
    pub fn expand(&self, values: &Values) -> Result<Pattern, Unusable> {
        if self.placeholders().next().is_none() {
            return Ok(self.clone());
        }
        let mut source = Vec::new();
        let mut segments = Vec::with_capacity(self.segments.len());
        let mut written = self.source.split('/');
        for segment in &self.segments {
            match segment {
                Segment::Placeholder(p) => {
                    written.next();
                    let value = p.value(values)?;
                    source.push(value.clone());
                    segments.push(Segment::Literal(value));
                }
                // `**` compiled to two segments: skip the second, it has no text of its own.
                Segment::Many => segments.push(Segment::Many),
                other => {
                    source.push(written.next().unwrap_or_default().to_string());
                    segments.push(other.clone());
                }
            }
        }
        Ok(Pattern {
            source: source.join("/"),
            segments,
        })
    }

    /// True when `name` (a repository name, `/`-separated) matches; case-sensitive. A pattern
    /// still holding a placeholder matches nothing: [`Pattern::expand`] it first.
    pub fn matches(&self, name: &str) -> bool {
        let n = self.segments.len();
        // reached[i]: the name read so far matches the first i pattern segments.
        let mut reached = vec![false; n + 1];
        reached[0] = true;
        self.close(&mut reached);
        for part in name.split('/') {
            let mut next = vec![false; n + 1];
            for (i, segment) in self.segments.iter().enumerate() {
                if !reached[i] {
                    continue;
                }
                match segment {
                    Segment::Literal(l) if l == part => next[i + 1] = true,
                    Segment::Literal(_) | Segment::Placeholder(_) => {}
                    Segment::One => next[i + 1] = true,
                    Segment::Many => next[i] = true,
                }
            }
            self.close(&mut next);
            if !next.contains(&true) {
                return false;
            }
            reached = next;
        }
        reached[n]
    }

    /// A `Many` may also match nothing: whoever reached it has reached what follows.
    fn close(&self, reached: &mut [bool]) {
        for (i, segment) in self.segments.iter().enumerate() {
            if reached[i] && *segment == Segment::Many {
                reached[i + 1] = true;
            }
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Whether every repository name pattern `b` matches is matched by `a` (both valid patterns,
/// as written): `doctor` warns of a rule that another makes redundant.
pub fn covers(a: &str, b: &str) -> bool {
    fn go(a: &[&str], b: &[&str]) -> bool {
        match (a.first(), b.first()) {
            (None, None) => true,
            // `**` takes b's first segment (a b-side `**` whole), then stops or keeps taking.
            (Some(&"**"), Some(_)) => go(&a[1..], &b[1..]) || go(a, &b[1..]),
            (Some(&"*"), Some(seg)) => *seg != "**" && go(&a[1..], &b[1..]),
            (Some(lit), Some(seg)) => lit == seg && go(&a[1..], &b[1..]),
            _ => false,
        }
    }
    let a: Vec<&str> = a.split('/').collect();
    let b: Vec<&str> = b.split('/').collect();
    go(&a, &b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    // Literals.
    #[case("acme/app", "acme/app", true)]
    #[case("acme/app", "acme/app2", false)]
    #[case("acme/app", "acme", false)]
    #[case("acme/app", "acme/app/x", false)]
    #[case("acme/app", "Acme/app", false)]
    #[case("localhost:5000/acme/app", "localhost:5000/acme/app", true)]
    #[case("localhost:5000/acme/app", "acme/app", false)]
    #[case("docker.com/foo", "docker.com/foo", true)]
    // `*`: exactly one segment.
    #[case("acme/*", "acme/app", true)]
    #[case("acme/*", "acme", false)]
    #[case("acme/*", "acme/app/x", false)]
    #[case("acme/*", "acmex/app", false)]
    #[case("acme/*", "localhost:5000/acme/app", false)] // docs/security.md, case 43
    #[case("*/*", "localhost:5000/acme/app", false)]
    #[case("*", "acme", true)]
    #[case("*", "acme/app", false)]
    #[case("stella-ops/*/*", "stella-ops/a/b", true)]
    #[case("stella-ops/*/*", "stella-ops/a", false)]
    #[case("stella-ops/*/*", "stella-ops/a/b/c", false)]
    #[case("*/app", "acme/app", true)]
    #[case("*/app", "acme/app/app", false)]
    // `**`: one or more segments, anywhere.
    #[case("customers/**", "customers/a", true)]
    #[case("customers/**", "customers/a/b/c", true)]
    #[case("customers/**", "customers", false)]
    #[case("customers/**", "customersx/a", false)]
    #[case("customers/**", "localhost:5000/customers/a", false)]
    #[case("**", "a", true)]
    #[case("**", "localhost:5000/acme/app", true)]
    #[case("**/app", "app", false)]
    #[case("**/app", "acme/app", true)]
    #[case("**/app", "a/b/c/app", true)]
    #[case("**/app", "a/b/c/app/x", false)]
    #[case("a/**/z", "a/z", false)]
    #[case("a/**/z", "a/b/z", true)]
    #[case("a/**/z", "a/b/c/z", true)]
    #[case("a/**/z", "a/z/z", true)]
    #[case("a/**/z", "a/b/c/y", false)]
    #[case("**/**", "a", false)]
    #[case("**/**", "a/b", true)]
    #[case("**/**", "a/b/c/d", true)]
    #[case("**/x/**", "a/x/b", true)]
    #[case("**/x/**", "x/a", false)]
    #[case("**/x/**", "a/x", false)]
    #[case("**/x/**", "a/b/x/c/x/d", true)]
    #[case("*/**", "a", false)]
    #[case("*/**", "a/b", true)]
    #[case("**/*/x", "a/b/x", true)]
    #[case("**/*/x", "a/x", false)]
    fn matching(#[case] pattern: &str, #[case] name: &str, #[case] expected: bool) {
        let p = Pattern::compile(pattern).unwrap();
        assert_eq!(p.matches(name), expected, "{pattern} ~ {name}");
        assert_eq!(p.as_str(), pattern);
    }

    #[rstest]
    #[case("", "empty")]
    #[case("/", "empty segment")]
    #[case("acme/", "empty segment")]
    #[case("/acme", "empty segment")]
    #[case("acme//app", "empty segment")]
    #[case("acme/foo*", "whole segments")]
    #[case("*foo", "whole segments")]
    #[case("***", "whole segments")]
    #[case("acme/*a*", "whole segments")]
    #[case("Acme/app", "lower-case")]
    #[case("acme/App", "lower-case")]
    #[case("acme/../x", "lower-case")]
    #[case("acme/.", "lower-case")]
    #[case("acme/a?", "lower-case")]
    #[case("acme/a b", "lower-case")]
    #[case("acme:app/x", "lower-case")]
    #[case("acme/localhost:5000", "first segment")]
    fn refused(#[case] pattern: &str, #[case] says: &str) {
        let err = Pattern::compile(pattern).unwrap_err().to_string();
        assert!(err.contains(says), "{pattern:?}: {err}");
    }

    /// Coverage between patterns: `**` is one or more segments, `*` exactly one.
    #[rstest]
    #[case("acme/*", "acme/app", true)]
    #[case("acme/*", "acme/*", true)]
    #[case("acme/app", "acme/*", false)]
    #[case("**", "acme/*/x", true)]
    #[case("customers/**", "customers/a/b", true)]
    #[case("customers/**", "customers/**", true)]
    #[case("customers/*", "customers/**", false)]
    #[case("stella-ops/*/*", "stella-ops/public/*", true)]
    #[case("stella-ops/public/*", "stella-ops/*/*", false)]
    #[case("a/**/z", "a/b/c/z", true)]
    #[case("a/**/z", "a/z", false)]
    fn patterns_cover(#[case] a: &str, #[case] b: &str, #[case] expected: bool) {
        assert_eq!(covers(a, b), expected, "{a} covers {b}");
    }

    /// A placeholder is one segment filled from the caller's values, never matched unfilled.
    #[rstest]
    #[case(
        "customers/${license|lower}/**",
        "customers/acme/**",
        "customers/acme/a/b",
        true
    )]
    #[case(
        "customers/${license|lower}/**",
        "customers/acme/**",
        "customers/acme",
        false
    )]
    #[case(
        "customers/${license|lower}/**",
        "customers/acme/**",
        "customers/globex/a",
        false
    )]
    #[case("${sub}/*", "alice/*", "alice/app", true)]
    #[case("${sub}/*", "alice/*", "alice/app/x", false)]
    #[case("a/**/${sub}", "a/**/alice", "a/b/c/alice", true)]
    fn expanding(
        #[case] pattern: &str,
        #[case] expanded: &str,
        #[case] name: &str,
        #[case] matches: bool,
    ) {
        let p = Pattern::compile(pattern).unwrap();
        assert!(!p.matches(name), "an unfilled placeholder matches nothing");
        let values = Values {
            sub: Some("alice".into()),
            license: Some("ACME".into()),
            claims: Default::default(),
        };
        let e = p.expand(&values).unwrap();
        assert_eq!(e.as_str(), expanded);
        assert_eq!(e.matches(name), matches, "{expanded} ~ {name}");
    }

    /// Placeholders that are not whole segments, or name no variable, are refused at load.
    #[rstest]
    #[case("customers/x${sub}", "whole segment")]
    #[case("customers/${sub}x/app", "whole segment")]
    #[case("customers/${tenant}", "unknown placeholder variable")]
    #[case("customers/${sub|upper}", "unknown placeholder filter")]
    #[case("customers/{sub}", "whole segment")]
    fn placeholder_refused(#[case] pattern: &str, #[case] says: &str) {
        let err = Pattern::compile(pattern).unwrap_err().to_string();
        assert!(err.contains(says), "{pattern}: {err}");
    }

    /// `**/**/**/**/x` against 200 segments returns at once (no exponential backtracking).
    #[test]
    fn bounded_matching() {
        let p = Pattern::compile(&format!("{}x", "**/".repeat(40))).unwrap();
        let miss = vec!["a"; 200].join("/");
        let hit = format!("{miss}/x");
        let start = std::time::Instant::now();
        assert!(!p.matches(&miss));
        assert!(p.matches(&hit));
        assert!(!Pattern::compile("**/**/**/**/x").unwrap().matches(&miss));
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }
}
