//! The `/v2/` decision (SPEC section 5), a plain function: route → needed scopes → the
//! sidecar-issued bearer token → live revocation → allow, or the response that refuses.

use crate::authority::AuthorityConfig;
use crate::config::{Policy, Settings};
use crate::registry::{route, Access, ResourceType, RouteError, Routed};

/// A request the registry may see.
#[derive(Debug)]
pub struct Allowed {
    pub routed: Routed,
    pub subject: String,
}

/// A refusal, written by the sidecar; nothing is forwarded.
#[derive(Debug, PartialEq)]
pub struct Denied {
    pub status: u16,
    /// Label of `registry_proxy_denied_total`.
    pub reason: &'static str,
    /// Docker error code (`UNAUTHORIZED`, `DENIED`, `NAME_INVALID`...).
    pub code: &'static str,
    pub message: String,
    pub www_authenticate: Option<String>,
}

/// What the decision needs of the request.
pub struct V2Request<'a> {
    pub method: &'a str,
    /// The raw path, as received (not decoded).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub authorization: Vec<&'a str>,
    pub content_type: Option<&'a str>,
}

fn scope_text(needs: &[Access]) -> String {
    // One challenge scope per repository (or catalog), actions joined, in first-seen order.
    let mut scopes: Vec<(String, Vec<&str>)> = Vec::new();
    for need in needs {
        let head = match need.resource_type {
            ResourceType::Repository => format!("repository:{}", need.name),
            ResourceType::Registry => format!("registry:{}", need.name),
        };
        match scopes.iter_mut().find(|(h, _)| *h == head) {
            Some((_, actions)) if !actions.contains(&need.action.as_str()) => {
                actions.push(&need.action)
            }
            Some(_) => {}
            None => scopes.push((head, vec![need.action.as_str()])),
        }
    }
    scopes
        .into_iter()
        .map(|(head, actions)| format!("{head}:{}", actions.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn challenge(settings: &Settings, needs: &[Access], error: Option<&str>) -> String {
    let mut header = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        settings.realm, settings.service
    );
    if !needs.is_empty() {
        header.push_str(&format!(",scope=\"{}\"", scope_text(needs)));
    }
    if let Some(error) = error {
        header.push_str(&format!(",error=\"{error}\""));
    }
    header
}

fn unauthorized(
    settings: &Settings,
    needs: &[Access],
    error: Option<&str>,
    reason: &'static str,
    message: &str,
) -> Denied {
    Denied {
        status: 401,
        reason,
        code: "UNAUTHORIZED",
        message: message.to_string(),
        www_authenticate: Some(challenge(settings, needs, error)),
    }
}

fn route_denied(e: RouteError) -> Denied {
    let code = match e.status() {
        404 => "NOT_FOUND",
        405 => "UNSUPPORTED",
        _ => "NAME_INVALID",
    };
    Denied {
        status: e.status(),
        reason: e.reason(),
        code,
        message: e.to_string(),
        www_authenticate: None,
    }
}

/// Whether a token the sidecar issued names a revoked license. Every claim copied from the OpTok
/// but the plan is checked, not only the one `claims.license` names now: a token issued before
/// that name was changed by a reload carries its license under the old name (fail closed).
fn license_revoked(
    extra: &serde_json::Map<String, serde_json::Value>,
    plan_claim: &str,
    policy: &Policy,
) -> bool {
    extra
        .iter()
        .filter(|(name, _)| *name != plan_claim)
        .any(|(_, value)| policy.is_revoked(value.as_str()))
}

/// Decides one `/v2/` request at Unix time `now`; `authority` is the settings of the Authority
/// in force (clock skew, claim names).
pub fn authorize(
    settings: &Settings,
    authority: &AuthorityConfig,
    req: &V2Request<'_>,
    now: i64,
) -> Result<Allowed, Denied> {
    let routed = route(req.method, req.path, req.query).map_err(route_denied)?;
    let is_form = req.content_type.is_some_and(|c| {
        c.trim()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if req.method == "POST" && is_form {
        // Distribution reads `mount`/`from` from the form too: refuse rather than parse bodies.
        return Err(Denied {
            status: 400,
            reason: "form_body",
            code: "UNSUPPORTED",
            message: "form-encoded bodies are not accepted on /v2/".into(),
            www_authenticate: None,
        });
    }

    let token = match req.authorization.as_slice() {
        [] => {
            return Err(unauthorized(
                settings,
                &routed.needs,
                None,
                "missing_token",
                "authentication required",
            ))
        }
        [one] => match one.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                token.trim()
            }
            _ => {
                return Err(unauthorized(
                    settings,
                    &routed.needs,
                    None,
                    "missing_token",
                    "a bearer token from the realm is required",
                ))
            }
        },
        _ => {
            return Err(Denied {
                status: 400,
                reason: "duplicate_authorization",
                code: "UNAUTHORIZED",
                message: "more than one Authorization header".into(),
                www_authenticate: None,
            })
        }
    };
    let leeway = authority.clock_skew.as_secs() as i64;
    // Verified once per token, then from the cache; revocation and scope are checked below on
    // every request.
    let claims = crate::token::cache::shared()
        .verify(
            &settings.keys,
            token,
            &settings.signing_issuer,
            &settings.service,
            now,
            leeway,
        )
        .map_err(|_| {
            unauthorized(
                settings,
                &routed.needs,
                Some("invalid_token"),
                "invalid_token",
                "the token is not valid here",
            )
        })?;
    if license_revoked(&claims.extra, &authority.plan_claim, &settings.policy) {
        return Err(unauthorized(
            settings,
            &routed.needs,
            Some("invalid_token"),
            "license_revoked",
            "the token's license has been revoked",
        ));
    }
    let type_name = |t: &ResourceType| match t {
        ResourceType::Repository => "repository",
        ResourceType::Registry => "registry",
    };
    let covered = routed.needs.iter().all(|need| {
        claims.access.iter().any(|a| {
            a.resource_type == type_name(&need.resource_type)
                && a.name == need.name
                && a.actions.contains(&need.action)
        })
    });
    if !covered {
        return Err(unauthorized(
            settings,
            &routed.needs,
            Some("insufficient_scope"),
            "insufficient_scope",
            "the token does not grant this access",
        ));
    }
    Ok(Allowed {
        routed,
        subject: claims.sub.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A license is found under the claim name in force or any other copied claim but the plan.
    #[test]
    fn revocation_reads_every_copied_claim_but_the_plan() {
        let policy = Policy {
            revoked: ["LIC-R".to_string()].into(),
            ..Policy::default()
        };
        // (issued extra claims, plan claim in force, revoked)
        let rows = [
            (
                json!({"stellaops:plan": "gold", "stellaops:license": "LIC-R"}),
                "stellaops:plan",
                true,
            ),
            (
                json!({"stellaops:plan": "gold", "stellaops:license": "LIC-OK"}),
                "stellaops:plan",
                false,
            ),
            (json!({"stellaops:plan": "gold"}), "stellaops:plan", false),
            // Issued before `claims.license` was renamed: still found.
            (
                json!({"tier": "gold", "stellaops:license": "LIC-R"}),
                "tier",
                true,
            ),
            // A plan named like a revoked license is not a license.
            (json!({"tier": "LIC-R", "lic": "LIC-OK"}), "tier", false),
            (json!({"tier": "gold", "lic": 5}), "tier", false),
        ];
        for (i, (extra, plan_claim, revoked)) in rows.into_iter().enumerate() {
            let extra = extra.as_object().unwrap();
            assert_eq!(
                license_revoked(extra, plan_claim, &policy),
                revoked,
                "row {i}"
            );
        }
    }
}
