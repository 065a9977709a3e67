//! Plan limits (docs/http.md, "Plan limits"): how many manifest pulls and token issuances a caller
//! gets per fixed window. Pure decisions only: which key a caller is counted under, what a count
//! means (the `RateLimit-*` headers, or a `429` with `Retry-After`). The counting itself is the
//! [`crate::state::Counters`] seam (memory, or Redis shared by the replicas); the proxy counts
//! pulls, the realm counts issuances.
//!
//! Keying (docs/security.md, case 82): the license, else the subject, else the client IP. The
//! client IP is the TCP peer; only a `server.trustedEdge` peer may name another one in
//! `X-Forwarded-For`, so a client cannot spread its pulls over invented addresses.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The `sub` the realm gives callers without credentials (`anonymous` plan): not a person, so
/// such callers are counted by address, as Docker Hub counts anonymous pulls.
pub const ANONYMOUS_SUBJECT: &str = "anonymous";

/// `Retry-After` seconds of every 503: the shared state cannot count (`state_unavailable`), the
/// Authority's keys cannot be had (`authority_unavailable`).
pub const UNAVAILABLE_RETRY_AFTER: u64 = 10;

/// What a plan limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Manifest `GET`s through the proxy (`HEAD` is free).
    Pulls,
    /// Registry tokens issued by the realm.
    Tokens,
}

impl Kind {
    /// The `kind` label of `registry_token_rate_limited_total`, and the key's first part.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pulls => "pulls",
            Kind::Tokens => "tokens",
        }
    }
}

/// `count` events per `per`, in fixed windows that start with their first event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub count: u64,
    pub per: Duration,
}

impl Limit {
    /// The window in whole seconds, as the `w=` of the `RateLimit-*` headers (rounded up).
    pub fn window_secs(&self) -> u64 {
        ceil_secs(self.per)
    }
}

/// A plan's `limits`: each absent one is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanLimits {
    pub pulls: Option<Limit>,
    pub tokens: Option<Limit>,
}

/// One limit as written: `{count: N, per: DURATION}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitText<'a> {
    pub count: usize,
    pub per: &'a str,
}

/// Compiles the `limits` of the plan at YAML path `at` (`plans[2]`); on failure every problem
/// as `(path, message)`: `count` at least 1, `per` a duration of at least 1s.
pub fn compile(
    at: &str,
    pulls: Option<LimitText<'_>>,
    tokens: Option<LimitText<'_>>,
) -> Result<PlanLimits, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut one = |kind: Kind, text: Option<LimitText<'_>>| {
        let text = text?;
        let path = format!("{at}.limits.{}", kind.as_str());
        if text.count == 0 {
            problems.push((format!("{path}.count"), "must be at least 1".to_string()));
        }
        let per = match crate::duration::parse(text.per) {
            Ok(per) if per >= Duration::from_secs(1) => per,
            Ok(_) => {
                problems.push((format!("{path}.per"), "must be at least 1s".to_string()));
                return None;
            }
            Err(e) => {
                problems.push((format!("{path}.per"), e));
                return None;
            }
        };
        Some(Limit {
            count: text.count as u64,
            per,
        })
    };
    let limits = PlanLimits {
        pulls: one(Kind::Pulls, pulls),
        tokens: one(Kind::Tokens, tokens),
    };
    if problems.is_empty() {
        Ok(limits)
    } else {
        Err(problems)
    }
}

/// Who is counted: the first of license, subject, client address that is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller<'a> {
    pub license: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub ip: Option<IpAddr>,
}

/// The counter key of `caller` for `kind`: `limit:pulls:license:<hash>`, `…:sub:…`, `…:ip:…`.
/// Values are hashed (SHA-256, 128 bits in hex): keys stay short whatever a claim holds, and
/// the shared store holds no license or address in clear. An IPv6 client is counted by its /64
/// (one host usually holds a whole /64 and could otherwise invent addresses in it).
pub fn key(kind: Kind, caller: &Caller<'_>) -> String {
    fn nonempty(v: Option<&str>) -> Option<&str> {
        v.filter(|v| !v.is_empty())
    }
    let subject = nonempty(caller.subject).filter(|s| *s != ANONYMOUS_SUBJECT);
    let (class, value) = match (nonempty(caller.license), subject, caller.ip) {
        (Some(license), _, _) => ("license", license.to_string()),
        (None, Some(subject), _) => ("sub", subject.to_string()),
        (None, None, Some(ip)) => ("ip", network(ip).to_string()),
        // No TCP peer at all (not on a TCP listener): one shared bucket, strict rather than free.
        (None, None, None) => ("ip", "unknown".to_string()),
    };
    let digest = Sha256::digest(format!("{class}\0{value}").as_bytes());
    let hex = data_encoding::HEXLOWER.encode(&digest[..16]);
    format!("limit:{}:{class}:{hex}", kind.as_str())
}

/// The address a client is counted under, by plan limits and by the connection caps: IPv4 as
/// is, IPv6 by its /64 (one host usually holds a whole /64), IPv4-mapped IPv6 as IPv4.
pub fn network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// The client's address: the TCP `peer`, unless the peer is a trusted edge proxy (`is_edge`,
/// the proxy's one edge check), whose `X-Forwarded-For` (every field value, in order) is
/// believed from the right: the right-most entry that is not itself a trusted edge is the
/// address the edge saw. Entries left of it are whatever the client wrote and are never read.
/// An edge that sends no usable entry leaves its own address (all its clients then share one
/// count: strict, not free).
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    is_edge: impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if !is_edge(peer) {
        return Some(peer);
    }
    let entries: Vec<&str> = forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for entry in entries.iter().rev() {
        let Some(ip) = parse_forwarded(entry) else {
            // Garbage where the edge writes: believe nothing further left.
            return Some(peer);
        };
        if !is_edge(ip) {
            return Some(ip);
        }
    }
    Some(peer)
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]:443`, `1.2.3.4:80`.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.ip().to_canonical())
}

/// The `RateLimit-Limit` / `RateLimit-Remaining` pair of a counted request, in Docker Hub's
/// format: `100;w=21600`, `57;w=21600`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: u64,
    pub remaining: u64,
    /// The window in seconds.
    pub window: u64,
}

impl RateHeaders {
    pub fn headers(&self) -> [(&'static str, String); 2] {
        [
            (
                "RateLimit-Limit",
                format!("{};w={}", self.limit, self.window),
            ),
            (
                "RateLimit-Remaining",
                format!("{};w={}", self.remaining, self.window),
            ),
        ]
    }
}

/// What one counted event means under `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: go on, and show the headers.
    Allowed(RateHeaders),
    /// Past it: refuse with `429`, `Retry-After: retry_after`, and the headers (remaining 0).
    Limited {
        headers: RateHeaders,
        retry_after: u64,
    },
}

/// One counted event in a fixed window, as a [`crate::state::Counters`] answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Events counted in the current window, this one included.
    pub count: u64,
    /// Time until the window ends and the count starts again.
    pub resets_in: Duration,
}

/// Judges `hit` (the window's count, this event included) against `limit`.
pub fn judge(limit: &Limit, hit: &Hit) -> Verdict {
    let headers = RateHeaders {
        limit: limit.count,
        remaining: limit.count.saturating_sub(hit.count),
        window: limit.window_secs(),
    };
    if hit.count <= limit.count {
        Verdict::Allowed(headers)
    } else {
        Verdict::Limited {
            headers,
            retry_after: ceil_secs(hit.resets_in).max(1),
        }
    }
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} per {}",
            self.count,
            humantime::format_duration(self.per)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// The key is the license, else the subject, else the address; the anonymous subject and
    /// empty claims fall through; IPv6 counts by /64.
    #[rstest]
    #[case::license_first(
        Some("LIC-1"),
        Some("alice"),
        Some("10.0.0.1"),
        "license",
        Some("LIC-1")
    )]
    #[case::subject_without_license(None, Some("alice"), Some("10.0.0.1"), "sub", Some("alice"))]
    #[case::empty_license(Some(""), Some("alice"), None, "sub", Some("alice"))]
    #[case::address_without_either(None, None, Some("10.0.0.1"), "ip", Some("10.0.0.1"))]
    #[case::anonymous_by_address(None, Some("anonymous"), Some("10.0.0.1"), "ip", Some("10.0.0.1"))]
    #[case::ipv6_by_64(None, None, Some("2001:db8:1:2:aaaa::1"), "ip", Some("2001:db8:1:2::"))]
    #[case::mapped_v4(None, None, Some("::ffff:10.0.0.1"), "ip", Some("10.0.0.1"))]
    #[case::nothing_known(None, None, None, "ip", None)]
    fn keys(
        #[case] license: Option<&str>,
        #[case] subject: Option<&str>,
        #[case] address: Option<&str>,
        #[case] class: &str,
        #[case] same_as: Option<&str>,
    ) {
        let caller = Caller {
            license,
            subject,
            ip: address.map(ip),
        };
        let got = key(Kind::Pulls, &caller);
        assert!(got.starts_with(&format!("limit:pulls:{class}:")), "{got}");
        assert_eq!(got.len(), format!("limit:pulls:{class}:").len() + 32);
        // The same value in its plain form gives the same key.
        if let Some(value) = same_as {
            let plain = match class {
                "license" => Caller {
                    license: Some(value),
                    subject: None,
                    ip: None,
                },
                "sub" => Caller {
                    license: None,
                    subject: Some(value),
                    ip: None,
                },
                _ => Caller {
                    license: None,
                    subject: None,
                    ip: Some(ip(value)),
                },
            };
            assert_eq!(key(Kind::Pulls, &plain), got);
        }
        assert!(!got.contains("LIC-1") && !got.contains("alice") && !got.contains("10.0.0.1"));
    }

    /// Kinds, classes and values never share a key.
    #[test]
    fn keys_are_distinct() {
        let license = Caller {
            license: Some("x"),
            subject: None,
            ip: None,
        };
        let subject = Caller {
            license: None,
            subject: Some("x"),
            ip: None,
        };
        let keys = [
            key(Kind::Pulls, &license),
            key(Kind::Tokens, &license),
            key(Kind::Pulls, &subject),
            key(
                Kind::Pulls,
                &Caller {
                    license: Some("y"),
                    ..license
                },
            ),
            key(
                Kind::Pulls,
                &Caller {
                    license: None,
                    subject: None,
                    ip: Some(ip("10.0.0.1")),
                },
            ),
            key(
                Kind::Pulls,
                &Caller {
                    license: None,
                    subject: None,
                    ip: Some(ip("10.0.0.2")),
                },
            ),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    /// `X-Forwarded-For` is read only from a trusted edge, from the right (security case 82).
    #[rstest]
    #[case::untrusted_peer_ignored("10.0.0.9", &["6.6.6.6"], &[], "10.0.0.9")]
    #[case::untrusted_peer_with_edge_list("10.0.0.9", &["6.6.6.6"], &["10.0.0.1"], "10.0.0.9")]
    #[case::edge_believed("10.0.0.1", &["203.0.113.7"], &["10.0.0.1"], "203.0.113.7")]
    #[case::edge_right_most("10.0.0.1", &["6.6.6.6, 203.0.113.7"], &["10.0.0.1"], "203.0.113.7")]
    #[case::edge_last_field("10.0.0.1", &["6.6.6.6", "203.0.113.7"], &["10.0.0.1"], "203.0.113.7")]
    #[case::edge_chain_skipped("10.0.0.1", &["6.6.6.6, 203.0.113.7, 10.0.0.2"], &["10.0.0.1", "10.0.0.2"], "203.0.113.7")]
    #[case::edge_without_header("10.0.0.1", &[], &["10.0.0.1"], "10.0.0.1")]
    #[case::edge_garbage("10.0.0.1", &["6.6.6.6, not-an-ip"], &["10.0.0.1"], "10.0.0.1")]
    #[case::edge_empty_entry("10.0.0.1", &["6.6.6.6,"], &["10.0.0.1"], "10.0.0.1")]
    #[case::edge_ipv6_with_port("10.0.0.1", &["[2001:db8::7]:4711"], &["10.0.0.1"], "2001:db8::7")]
    #[case::edge_v4_with_port("10.0.0.1", &["203.0.113.7:4711"], &["10.0.0.1"], "203.0.113.7")]
    #[case::mapped_edge_peer("::ffff:10.0.0.1", &["203.0.113.7"], &["10.0.0.1"], "203.0.113.7")]
    #[case::all_entries_trusted("10.0.0.1", &["10.0.0.2"], &["10.0.0.1", "10.0.0.2"], "10.0.0.1")]
    fn client_addresses(
        #[case] peer: &str,
        #[case] forwarded: &[&str],
        #[case] trusted: &[&str],
        #[case] expected: &str,
    ) {
        let trusted: Vec<IpAddr> = trusted.iter().map(|t| ip(t)).collect();
        assert_eq!(
            client_ip(Some(ip(peer)), forwarded, |ip| trusted.contains(&ip)),
            Some(ip(expected))
        );
    }

    #[test]
    fn no_peer_no_address() {
        assert_eq!(client_ip(None, &["1.2.3.4"], |_| true), None);
    }

    fn limit(count: u64, per: u64) -> Limit {
        Limit {
            count,
            per: Duration::from_secs(per),
        }
    }

    /// Within the limit the headers count down; past it, 429 with the seconds left (rounded
    /// up, at least 1) and remaining 0.
    #[rstest]
    #[case(1, Duration::from_secs(3600), Verdict::Allowed(RateHeaders { limit: 3, remaining: 2, window: 3600 }))]
    #[case(3, Duration::from_secs(10), Verdict::Allowed(RateHeaders { limit: 3, remaining: 0, window: 3600 }))]
    #[case(4, Duration::from_millis(2500), Verdict::Limited { headers: RateHeaders { limit: 3, remaining: 0, window: 3600 }, retry_after: 3 })]
    #[case(9, Duration::from_secs(3599), Verdict::Limited { headers: RateHeaders { limit: 3, remaining: 0, window: 3600 }, retry_after: 3599 })]
    #[case(4, Duration::ZERO, Verdict::Limited { headers: RateHeaders { limit: 3, remaining: 0, window: 3600 }, retry_after: 1 })]
    fn verdicts(#[case] count: u64, #[case] resets_in: Duration, #[case] expected: Verdict) {
        assert_eq!(judge(&limit(3, 3600), &Hit { count, resets_in }), expected);
    }

    /// Docker Hub's header format.
    #[test]
    fn header_format() {
        let headers = RateHeaders {
            limit: 100,
            remaining: 57,
            window: 21600,
        }
        .headers();
        assert_eq!(
            headers,
            [
                ("RateLimit-Limit", "100;w=21600".to_string()),
                ("RateLimit-Remaining", "57;w=21600".to_string()),
            ]
        );
        let odd = Limit {
            count: 1,
            per: Duration::from_millis(1500),
        };
        assert_eq!(odd.window_secs(), 2);
    }

    /// Limits compile from their text, and every bad value is reported at its YAML path.
    #[rstest]
    #[case::both(Some((100, "6h")), Some((600, "1m")), Ok(PlanLimits { pulls: Some(limit(100, 21600)), tokens: Some(limit(600, 60)) }))]
    #[case::none(None, None, Ok(PlanLimits::default()))]
    #[case::pulls_only(Some((3, "1h")), None, Ok(PlanLimits { pulls: Some(limit(3, 3600)), tokens: None }))]
    #[case::zero_count(Some((0, "1h")), None, Err(vec!["plans[1].limits.pulls.count"]))]
    #[case::short_window(None, Some((1, "500ms")), Err(vec!["plans[1].limits.tokens.per"]))]
    #[case::zero_window(None, Some((1, "0s")), Err(vec!["plans[1].limits.tokens.per"]))]
    #[case::not_a_duration(Some((1, "soon")), None, Err(vec!["plans[1].limits.pulls.per"]))]
    #[case::every_problem(Some((0, "x")), Some((0, "1s")), Err(vec!["plans[1].limits.pulls.count", "plans[1].limits.pulls.per", "plans[1].limits.tokens.count"]))]
    fn compiles(
        #[case] pulls: Option<(usize, &str)>,
        #[case] tokens: Option<(usize, &str)>,
        #[case] expected: Result<PlanLimits, Vec<&str>>,
    ) {
        fn text(t: Option<(usize, &str)>) -> Option<LimitText<'_>> {
            t.map(|(count, per)| LimitText { count, per })
        }
        let got = compile("plans[1]", text(pulls), text(tokens));
        match expected {
            Ok(limits) => assert_eq!(got, Ok(limits)),
            Err(paths) => {
                let problems = got.expect_err("refused");
                let got: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
                assert_eq!(got, paths);
                assert!(problems.iter().all(|(_, m)| !m.is_empty()));
            }
        }
    }
}
