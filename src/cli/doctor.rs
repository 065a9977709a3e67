//! `doctor`: the checks an operator runs when registry auth breaks, each answering pass, warn or
//! fail with the fix in plain words. It reads the same configuration as `serve`, fetches the
//! Authority's keys, pings the upstream and sends it a probe token minted with the signing key,
//! so a failure names the layer at fault before anyone reads a log.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::test::{describe, http_client};
use crate::authority::Authority;
use crate::config::file::FileConfig;
use crate::config::{self, Settings};
use crate::jose::{Clock, SystemClock};
use crate::policy::{covers, Pattern};
use crate::registry::challenge::Challenge;
use crate::token::IssuedClaims;

/// Every check, in the order they run.
pub const CHECKS: &[&str] = &[
    "check.config",
    "check.signing-key",
    "check.authority",
    "check.upstream",
    "check.upstream-trusts-tokens",
    "check.plans",
    "check.refresh-tokens",
    "check.state",
    "check.namespaces",
];

/// A leaf certificate ending sooner than this is a warning
/// (docs/operations.md, "Rotating the signing key").
const CERT_WARN_DAYS: u32 = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub status: Status,
    pub check: &'static str,
    pub message: String,
    /// What to do about a warn or fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn pass(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            status: Status::Pass,
            check,
            message: message.into(),
            fix: None,
        }
    }
    fn warn(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            status: Status::Warn,
            check,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            status: Status::Fail,
            check,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
    /// A check that needs a loaded configuration when there is none.
    fn not_run(check: &'static str) -> Finding {
        Finding::fail(
            check,
            "not run: the configuration does not load",
            "fix check.config first",
        )
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.status {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        };
        write!(f, "{status}  {}  {}", self.check, self.message)?;
        match &self.fix {
            Some(fix) => write!(f, " — fix: {fix}"),
            None => Ok(()),
        }
    }
}

/// Runs every check (or only `only`), prints them, and returns 1 when any failed, 2 on usage errors.
pub fn run(path: &Path, only: Option<&str>, json: bool, token: Option<&str>) -> ExitCode {
    let only = match only.map(|n| {
        if n.starts_with("check.") {
            n.to_string()
        } else {
            format!("check.{n}")
        }
    }) {
        Some(name) if !CHECKS.contains(&name.as_str()) => {
            eprintln!(
                "doctor: unknown check `{name}` (one of {})",
                CHECKS.join(", ")
            );
            return ExitCode::from(2);
        }
        other => other,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let token = match token {
        Some("-") => {
            let mut text = String::new();
            use std::io::Read;
            if std::io::stdin().read_to_string(&mut text).is_err() {
                eprintln!("doctor: cannot read the token from standard input");
                return ExitCode::from(2);
            }
            Some(text.trim().to_string())
        }
        other => other.map(str::to_owned),
    };
    let mut findings = runtime.block_on(checks(path, only.as_deref()));
    // Only for a given token (docs/namespaces.md: the expansion of its plan's placeholders).
    if let Some(token) = token.filter(|_| only.is_none_or(|o| o == "check.namespaces")) {
        findings.push(match config::load(path) {
            Ok(s) => namespaces(&s, &token),
            Err(_) => Finding::not_run("check.namespaces"),
        });
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&findings).expect("findings serialise")
        );
    } else {
        for finding in &findings {
            println!("{finding}");
        }
    }
    if findings.iter().any(|f| f.status == Status::Fail) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The findings of the selected checks, in `CHECKS` order.
pub async fn checks(path: &Path, only: Option<&str>) -> Vec<Finding> {
    let wanted = |name: &str| only.is_none_or(|o| o == name);
    let loaded = config::load(path);
    let mut findings = Vec::new();
    if wanted("check.config") {
        findings.push(match &loaded {
            Ok(s) => Finding::pass(
                "check.config",
                format!(
                    "{}: valid ({} plans, upstream {}, realm {})",
                    path.display(),
                    s.policy.plans.len(),
                    s.upstream.origin,
                    s.realm
                ),
            ),
            Err(e) => Finding::fail(
                "check.config",
                e.to_string(),
                "correct each field named, then run `registry-token check-config`",
            ),
        });
    }
    let settings = loaded.as_ref().ok();
    if wanted("check.signing-key") {
        findings.push(settings.map_or_else(|| Finding::not_run("check.signing-key"), signing_key));
    }
    if wanted("check.authority") {
        findings.push(match settings {
            Some(s) => authority(s).await,
            None => Finding::not_run("check.authority"),
        });
    }
    if wanted("check.upstream") {
        findings.push(match settings {
            Some(s) => upstream(s).await,
            None => Finding::not_run("check.upstream"),
        });
    }
    if wanted("check.upstream-trusts-tokens") {
        findings.push(match settings {
            Some(s) => upstream_trusts_tokens(s).await,
            None => Finding::not_run("check.upstream-trusts-tokens"),
        });
    }
    if wanted("check.plans") {
        // From the file as written, so that a bad defaultPlan is explained even when the
        // configuration as a whole does not load.
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                config::parse(&text, std::env::vars()).map_err(|e| {
                    e.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            });
        findings.push(match parsed {
            Ok(file) => plans(&file),
            Err(e) => Finding::fail(
                "check.plans",
                format!("not run: the file does not parse: {e}"),
                "fix check.config first",
            ),
        });
    }
    // Only when refresh tokens are on, or asked for by name.
    let refresh_on = settings.is_some_and(|s| s.issuer.refresh.enabled);
    if wanted("check.refresh-tokens") && (refresh_on || only.is_some()) {
        findings.push(
            settings.map_or_else(|| Finding::not_run("check.refresh-tokens"), refresh_tokens),
        );
    }
    if wanted("check.state") {
        findings.push(match settings {
            Some(s) => state(s).await,
            None => Finding::not_run("check.state"),
        });
    }
    findings
}

/// What the placeholders of `token`'s plan expand to: warns when a pattern matches nothing
/// for it (a claim missing or not a path component).
fn namespaces(s: &Settings, token: &str) -> Finding {
    const CHECK: &str = "check.namespaces";
    let mut parts = token.split('.');
    let (Some(header), Some(claims)) = (
        parts.next().and_then(crate::jose::peek_segment),
        parts.next().and_then(crate::jose::peek_segment),
    ) else {
        return Finding::fail(CHECK, "the token is not a JWT", "pass the token itself");
    };
    match super::inspect::expansion(s, &header, &claims) {
        None => Finding::pass(CHECK, "the token's plan has no placeholders"),
        Some((plan, lines)) => {
            let message = format!("plan `{plan}`: {}", lines.join("; "));
            if lines.iter().any(|l| l.contains("matches nothing")) {
                Finding::warn(
                    CHECK,
                    message,
                    "give the token the claim the pattern names, as one lower-case path component (or add `|lower`)",
                )
            } else {
                Finding::pass(CHECK, message)
            }
        }
    }
}

/// The signing key mints a refresh token that redeems, and that no registry would take.
fn refresh_tokens(s: &Settings) -> Finding {
    const CHECK: &str = "check.refresh-tokens";
    if !s.issuer.refresh.enabled {
        return Finding::pass(
            CHECK,
            "refreshTokens.enabled is false: none are issued or redeemed",
        );
    }
    match crate::token::refresh::self_check(&s.issuer, SystemClock.now()) {
        Err(e) => Finding::fail(
            CHECK,
            format!("refresh tokens do not work with this key: {e}"),
            "fix check.signing-key first, or set refreshTokens.enabled: false",
        ),
        Ok(()) => Finding::pass(
            CHECK,
            format!(
                "signed with kid {}, valid for {}; a key rotation keeps them only while the old key stays in signing.previousKeys",
                s.issuer.keys.current.kid(),
                humantime::format_duration(s.issuer.refresh.lifetime)
            ),
        ),
    }
}

/// `state.redis`: reachable, its round trip, and a key written and deleted under the prefix.
async fn state(s: &Settings) -> Finding {
    const CHECK: &str = "check.state";
    let Some(settings) = &s.state else {
        return Finding::pass(
            CHECK,
            "in memory (no state.redis): fine for one replica; replicas need Redis to share spent DPoP proofs and limits",
        );
    };
    let redis = match crate::state::redis::Redis::new(settings.clone(), Default::default()) {
        Ok(redis) => redis,
        Err(e) => return Finding::fail(CHECK, e.to_string(), "correct state.redis.url"),
    };
    let url = &settings.url;
    let rtt = match redis.ping().await {
        Ok(rtt) => rtt,
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!("{url} does not answer PING within {:?}: {e}", settings.timeout),
                "start Redis, or correct state.redis.url (password, rediss:// for TLS) and the network path",
            )
        }
    };
    if let Err(e) = redis.write_probe().await {
        return Finding::fail(
            CHECK,
            format!("{url} answers, but a key under `{}` cannot be written: {e}", settings.key_prefix),
            "grant the Redis user write access to the prefix (ACL ~registry-token:*), and check maxmemory",
        );
    }
    let message = format!(
        "{url} answers in {rtt:?}; keys under `{}` are writable",
        settings.key_prefix
    );
    if rtt * 2 > settings.timeout {
        return Finding::warn(
            CHECK,
            message,
            "the round trip is close to state.redis.timeout: move Redis closer or raise the timeout",
        );
    }
    Finding::pass(CHECK, message)
}

/// The probe token: no access, `aud` = service, `iss` = signing.issuer, one minute of life.
fn probe_token(s: &Settings) -> Result<String, String> {
    let now = SystemClock.now();
    let claims = IssuedClaims {
        iss: s.issuer.name.clone(),
        sub: "registry-token-doctor".into(),
        aud: s.service.clone(),
        exp: now + 60,
        nbf: now - 5,
        iat: now,
        jti: format!("doctor-{:016x}", rand::random::<u64>()),
        access: Vec::new(),
        extra: Default::default(),
    };
    s.issuer.keys.sign(&claims).map_err(|e| e.to_string())
}

/// The signing key signs and verifies, its chain is in date, and its kid suits Distribution.
fn signing_key(s: &Settings) -> Finding {
    const CHECK: &str = "check.signing-key";
    let key = &s.issuer.keys.current;
    let verified = probe_token(s).and_then(|t| {
        s.issuer
            .keys
            .verify(&t, &s.issuer.name, &s.service, SystemClock.now(), 0)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    if let Err(e) = verified {
        return Finding::fail(
            CHECK,
            format!("the key does not sign a token it can verify: {e}"),
            "regenerate it with `registry-token keygen` and point signing.keyPath at it",
        );
    }
    let summary = format!(
        "kid {} ({:?}), {} previous key(s) published",
        key.kid(),
        key.algorithm(),
        s.issuer.keys.previous.len()
    );
    // The folder the sidecar reads its key from must not hold the CA's key
    // (docs/security.md, case 77).
    let folder = Path::new(&s.file.signing.key_path)
        .parent()
        .unwrap_or(Path::new("."));
    let ca_key = folder.join("ca.key");
    if ca_key.exists() {
        return Finding::warn(CHECK, format!("{summary}; {} is the CA's private key, beside the signing key: whoever reads the sidecar's keys can mint tokens the registry trusts", ca_key.display()), format!("move it out of what the sidecar and registry mount: `install -d -m 700 {dir}/ca && mv {key} {dir}/ca/` (keygen finds the CA there for the next rotation)", dir = folder.display(), key = ca_key.display()));
    }
    let Some(chain) = &s.file.signing.certificate_chain else {
        if s.file.signing.key_id_format == "thumbprint" || s.file.signing.key_id.is_some() {
            return Finding::warn(CHECK, format!("{summary}; no certificateChain, and a kid Distribution 2.8 cannot look up in its rootcertbundle"), "set signing.certificateChain (keygen's signing-chain.crt) so tokens carry x5c, or use keyIdFormat: libtrust on Distribution 2.x");
        }
        return Finding::warn(CHECK, format!("{summary}; no certificateChain: Distribution must hold this very key in its rootcertbundle"), "set signing.certificateChain to keygen's signing-chain.crt so a key rotation needs no registry change");
    };
    let leaf = std::fs::read(chain)
        .ok()
        .and_then(|pem| openssl::x509::X509::stack_from_pem(&pem).ok())
        .and_then(|c| c.into_iter().next());
    let Some(leaf) = leaf else {
        return Finding::fail(
            CHECK,
            format!("{chain}: no certificate can be read"),
            "point signing.certificateChain at a PEM chain, leaf first",
        );
    };
    let expires = leaf.not_after().to_string();
    let now = openssl::asn1::Asn1Time::days_from_now(0).expect("time");
    let soon = openssl::asn1::Asn1Time::days_from_now(CERT_WARN_DAYS).expect("time");
    if leaf.not_after() < now {
        Finding::fail(CHECK, format!("{summary}; the leaf certificate expired on {expires}: the registry refuses every token"), "rotate: run `registry-token keygen --out DIR` (it keeps the CA) and reload")
    } else if leaf.not_after() < soon {
        Finding::warn(
            CHECK,
            format!("{summary}; the leaf certificate expires on {expires}, within {CERT_WARN_DAYS} days"),
            "rotate now: `registry-token keygen --out DIR` keeps the CA and writes a new leaf; list the old one in signing.previousKeys and reload",
        )
    } else {
        Finding::pass(
            CHECK,
            format!("{summary}, x5c chain leaf valid until {expires}"),
        )
    }
}

/// Metadata and JWKS fetched now; the number of usable keys and how long it took.
async fn authority(s: &Settings) -> Finding {
    const CHECK: &str = "check.authority";
    let authority = Authority::new(s.authority.clone());
    let started = Instant::now();
    let result = authority.refresh().await;
    let took = started.elapsed().as_millis();
    let status = authority.status();
    match result {
        Ok(count) => {
            let age = status.age.map(|a| format!("{} ms old", a.as_millis())).unwrap_or_default();
            Finding::pass(CHECK, format!("{count} usable key(s) from {} fetched in {took} ms (cache {age}, sidecar refreshes every 5 min, unusable after 12 h without one)", s.authority.issuer))
        }
        Err(e) => Finding::fail(CHECK, format!("no usable key: {e}"), format!("make the Authority answer {} and its jwks_uri from here (https; plain http only on loopback); meanwhile the running sidecar keeps keys it already has for up to 12 h", s.authority.metadata_address)),
    }
}

/// `GET upstream/v2/` answers 200 or 401.
async fn upstream(s: &Settings) -> Finding {
    const CHECK: &str = "check.upstream";
    let url = format!("{}/v2/", s.upstream.origin);
    let started = Instant::now();
    match http_client().get(&url).timeout(Duration::from_secs(5)).send().await {
        Ok(r) if matches!(r.status().as_u16(), 200 | 401) => Finding::pass(CHECK, format!("GET {url} → {} in {} ms", r.status().as_u16(), started.elapsed().as_millis())),
        Ok(r) => Finding::fail(CHECK, format!("GET {url} → {}: not a registry answer", r.status().as_u16()), "check upstream.url points at the Distribution registry's HTTP listener and look at the registry's log"),
        Err(e) => Finding::fail(CHECK, format!("GET {url} failed: {}", describe(&e)), "start the registry, or correct upstream.url (the sidecar answers 502 meanwhile)"),
    }
}

/// The upstream verifies a token minted with the signing key; when not, the likely cause.
async fn upstream_trusts_tokens(s: &Settings) -> Finding {
    const CHECK: &str = "check.upstream-trusts-tokens";
    let url = format!("{}/v2/", s.upstream.origin);
    let http = http_client();
    let bare = match http.get(&url).send().await {
        Ok(r) => r,
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!("not run: GET {url} failed: {}", describe(&e)),
                "fix check.upstream first",
            )
        }
    };
    if bare.status() == 200 {
        return Finding::warn(CHECK, format!("{url} answers 200 without any token: the registry runs no auth, the sidecar is its only guard"), "keep the registry off every network but the sidecar's, or configure its auth.token (realm, service, issuer, rootcertbundle = keygen's ca.crt)");
    }
    let challenge = bare
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .and_then(Challenge::parse)
        .unwrap_or_default();
    let token = match probe_token(s) {
        Ok(t) => t,
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!("cannot mint a probe token: {e}"),
                "fix check.signing-key first",
            )
        }
    };
    let status = match http.get(&url).bearer_auth(&token).send().await {
        Ok(r) => r.status().as_u16(),
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!("GET {url} with the probe token failed: {}", describe(&e)),
                "fix check.upstream first",
            )
        }
    };
    if status == 200 {
        return Finding::pass(
            CHECK,
            format!(
                "the registry accepts a probe token (iss {}, aud {}, kid {})",
                s.issuer.name,
                s.service,
                s.issuer.keys.current.kid()
            ),
        );
    }
    let refused = format!("the registry refuses a probe token with {status}");
    if let Some(service) = challenge.service.as_deref().filter(|v| *v != s.service) {
        return Finding::fail(
            CHECK,
            format!(
                "{refused}: it expects service `{service}`, the sidecar issues aud `{}`",
                s.service
            ),
            "make registry.service and the registry's auth.token.service the same",
        );
    }
    let realm_note = match challenge.realm.as_deref() {
        Some(realm) if realm != s.realm => format!("; its challenge realm `{realm}` is not registry.realm `{}` (set auth.token.realm to the sidecar's realm)", s.realm),
        _ => String::new(),
    };
    if s.file.signing.certificate_chain.is_none() && s.file.signing.key_id_format == "thumbprint" {
        return Finding::fail(CHECK, format!("{refused}{realm_note}: kid {} is an RFC 7638 thumbprint sent without x5c, which Distribution 2.8 cannot match", s.issuer.keys.current.kid()), "set signing.certificateChain (keygen's signing-chain.crt), or keyIdFormat: libtrust for Distribution 2.x");
    }
    let trust = match &s.file.signing.certificate_chain {
        Some(chain) => format!("the registry's rootcertbundle does not hold the CA that signed {chain} (keygen's ca.crt)"),
        None => format!("the registry's rootcertbundle does not hold the signing key itself (kid {})", s.issuer.keys.current.kid()),
    };
    Finding::fail(CHECK, format!("{refused}{realm_note}; likely: the registry's auth.token.issuer is not `{}`, or {trust}", s.issuer.name), format!("set the registry's auth.token.issuer to `{}` and its rootcertbundle to the ca.crt of `registry-token keygen`, restart it, then run doctor again", s.issuer.name))
}

/// The plans as `check-config` checks them (plans named by defaultPlan and anonymous.plan
/// exist, each name once, patterns and limits valid: [`config::plan_errors`]); beyond that, a
/// warning for a plan without repositories or a duplicate or shadowed pattern.
fn plans(file: &FileConfig) -> Finding {
    const CHECK: &str = "check.plans";
    let fails: Vec<String> = config::plan_errors(file.clone())
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut warns = Vec::new();
    if file.default_plan.is_none() {
        warns.push(
            "no defaultPlan: callers whose token has no plan claim are refused (unknown_plan)"
                .to_string(),
        );
    }
    for (i, plan) in file.plans.iter().enumerate() {
        if plan.repositories.is_empty() {
            warns.push(format!(
                "plans[{i}] `{}` has no repositories: it grants nothing",
                plan.name
            ));
        }
        for (j, rule) in plan.repositories.iter().enumerate() {
            if Pattern::compile(&rule.pattern).is_err() {
                continue; // a failure above names it
            }
            let covering = plan.repositories.iter().enumerate().find(|(k, other)| {
                let same = other.pattern == rule.pattern;
                *k != j
                    && (!same || *k < j)
                    && covers(&other.pattern, &rule.pattern)
                    && rule.actions.iter().all(|a| other.actions.contains(a))
            });
            if let Some((k, other)) = covering {
                let what = if other.pattern == rule.pattern {
                    "duplicates"
                } else {
                    "is shadowed by"
                };
                warns.push(format!("plans[{i}].repositories[{j}] `{}` {what} repositories[{k}] `{}` (same or more actions): it changes nothing", rule.pattern, other.pattern));
            }
        }
    }
    let total = file.plans.len();
    if !fails.is_empty() {
        let mut all = fails;
        all.extend(warns);
        return Finding::fail(CHECK, all.join("; "), "name an existing plan in defaultPlan and anonymous.plan and give each plan a unique name (plan names are case-sensitive)");
    }
    if !warns.is_empty() {
        return Finding::warn(
            CHECK,
            warns.join("; "),
            "remove the redundant entries, or give the plan the patterns it needs",
        );
    }
    let default = file.default_plan.as_deref().unwrap_or("-");
    Finding::pass(
        CHECK,
        format!("{total} plans, defaultPlan `{default}`, every pattern reachable"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn file(yaml: &str) -> FileConfig {
        let base = "authority:\n  issuer: http://127.0.0.1:9\nregistry:\n  realm: http://127.0.0.1:8085/token\n  service: s\n";
        config::parse(&format!("{base}{yaml}"), Vec::new()).unwrap()
    }

    /// Plan problems: missing plans fail, redundant patterns warn, a clean catalogue passes.
    #[rstest]
    #[case::clean(
        "plans:\n  - name: p\n    repositories:\n      - pattern: a/*\ndefaultPlan: p\n",
        Status::Pass,
        "1 plans"
    )]
    #[case::bad_default(
        "plans:\n  - name: p\ndefaultPlan: gold\n",
        Status::Fail,
        "defaultPlan: names no plan: `gold`"
    )]
    #[case::twice("plans:\n  - name: p\n    repositories:\n      - pattern: a/*\n  - name: p\n    repositories:\n      - pattern: b/*\ndefaultPlan: p\n", Status::Fail, "plans[1].name: plan `p` is defined twice")]
    #[case::bad_pattern(
        "plans:\n  - name: p\n    repositories:\n      - pattern: a//b\ndefaultPlan: p\n",
        Status::Fail,
        "plans[0].repositories[0].pattern"
    )]
    #[case::bad_anonymous("plans:\n  - name: p\n    repositories:\n      - pattern: a/*\ndefaultPlan: p\nanonymous:\n  plan: x\n", Status::Fail, "anonymous.plan")]
    #[case::duplicate("plans:\n  - name: p\n    repositories:\n      - pattern: a/*\n      - pattern: a/*\ndefaultPlan: p\n", Status::Warn, "duplicates repositories[0]")]
    #[case::shadowed("plans:\n  - name: p\n    repositories:\n      - pattern: a/app\n      - pattern: a/*\n        actions: [pull, push]\ndefaultPlan: p\n", Status::Warn, "`a/app` is shadowed by repositories[1]")]
    #[case::wider_actions_not_shadowed("plans:\n  - name: p\n    repositories:\n      - pattern: a/app\n        actions: [push]\n      - pattern: a/*\ndefaultPlan: p\n", Status::Pass, "every pattern")]
    #[case::no_default(
        "plans:\n  - name: p\n    repositories:\n      - pattern: a/*\n",
        Status::Warn,
        "no defaultPlan"
    )]
    fn plans_are_checked(#[case] yaml: &str, #[case] status: Status, #[case] says: &str) {
        let finding = plans(&file(yaml));
        assert_eq!(finding.status, status, "{finding}");
        assert!(finding.message.contains(says), "{finding}");
    }

    /// The text form is one line: status, check, message, fix.
    #[test]
    fn findings_print_on_one_line() {
        let f = Finding::fail("check.upstream", "GET x failed", "start the registry");
        assert_eq!(
            f.to_string(),
            "fail  check.upstream  GET x failed — fix: start the registry"
        );
    }
}
