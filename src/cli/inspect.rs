//! `token inspect`: a token's header and claims, its expiry in words, the access it grants,
//! and with `--verify` whether this sidecar's keys, issuer and service accept it.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::config::{self, Settings};
use crate::jose::{peek_segment, Clock, SystemClock};
use crate::policy::Values;
use crate::registry::Scope;
use crate::token::claims::PLACEHOLDER_CLAIMS;
use crate::token::refresh;

/// What the placeholders of a token's plan expand to under `settings` (docs/namespaces.md): the
/// plan's name and one line per pattern; `None` when the plan has no placeholders or is not known.
/// Reads an OpTok (its claims), a refresh token (the claims it kept) or a registry token
/// (the values the realm recorded for the catalog, else its `sub` and license).
pub(crate) fn expansion(
    settings: &Settings,
    header: &Value,
    claims: &Value,
) -> Option<(String, Vec<String>)> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let names = &settings.authority;
    let refresh = header.get("typ").and_then(Value::as_str) == Some(refresh::TYP);
    let (plan, values) = if refresh {
        let kept = claims.get("claims").cloned().unwrap_or_default();
        let values = Values {
            sub: text("sub"),
            license: text("license"),
            claims: serde_json::from_value(kept).unwrap_or_default(),
        };
        (text("plan"), values)
    } else if let Some(recorded) = claims.get(PLACEHOLDER_CLAIMS) {
        let values = serde_json::from_value(recorded.clone()).unwrap_or_default();
        (text(&names.plan_claim), values)
    } else {
        let strings = claims.as_object().into_iter().flatten();
        let values = Values {
            sub: text("sub"),
            license: text(&names.license_claim),
            claims: strings
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect(),
        };
        (text(&names.plan_claim), values)
    };
    let plan = settings.policy.plan_for(plan.as_deref())?;
    plan.has_placeholders()
        .then(|| (plan.name.clone(), plan.explain(&values)))
}

/// "in 4m 12s" or "4m 12s ago".
fn relative(at: i64, now: i64) -> String {
    let words = |secs: i64| {
        humantime::format_duration(Duration::from_secs(secs.unsigned_abs())).to_string()
    };
    if at >= now {
        format!("in {}", words(at - now))
    } else {
        format!("{} ago", words(now - at))
    }
}

pub fn run(jwt: &str, verify: bool, config_path: &Path) -> ExitCode {
    let mut text = jwt.to_string();
    if jwt == "-" {
        text.clear();
        if std::io::stdin().read_to_string(&mut text).is_err() {
            eprintln!("token inspect: cannot read the token from standard input");
            return ExitCode::from(2);
        }
    }
    let token = text.trim();
    let parts: Vec<&str> = token.split('.').collect();
    let (Some(header), Some(claims)) = (
        parts.first().and_then(|p| peek_segment(p)),
        parts.get(1).and_then(|p| peek_segment(p)),
    ) else {
        eprintln!(
            "token inspect: not a JWT (expected three base64url parts with JSON header and claims)"
        );
        return ExitCode::from(2);
    };
    if parts.len() != 3 {
        eprintln!(
            "token inspect: not a compact JWS (expected three parts, got {})",
            parts.len()
        );
        return ExitCode::from(2);
    }
    let now = SystemClock.now();
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    println!("header:\n{}", pretty(&header));
    println!("claims:\n{}", pretty(&claims));
    match claims.get("exp").and_then(Value::as_i64) {
        Some(exp) if exp > now => println!("expires: {} ({exp})", relative(exp, now)),
        Some(exp) => println!("expired: {} ({exp})", relative(exp, now)),
        None => println!("expires: never (no numeric exp: most verifiers refuse it)"),
    }
    let refresh = header.get("typ").and_then(Value::as_str) == Some(refresh::TYP);
    if refresh {
        println!("kind: {}", refresh::describe(&claims));
    }
    match claims.get("access").and_then(Value::as_array) {
        None if refresh => {}
        Some(entries) if !entries.is_empty() => {
            println!("grants:");
            for entry in entries {
                match Scope::deserialize(entry) {
                    Ok(scope) => println!("  {scope}"),
                    Err(_) => println!("  ? (not a grant: {entry})"),
                }
            }
        }
        Some(_) => println!("grants: nothing (a login token: it opens /v2/ only)"),
        None => println!("grants: no `access` claim (not a registry token)"),
    }
    let loaded = config::load(config_path);
    if let Some((plan, lines)) = loaded
        .as_ref()
        .ok()
        .and_then(|s| expansion(s, &header, &claims))
    {
        println!("namespaces (plan {plan}, as configured now):");
        for line in lines {
            println!("  {line}");
        }
    }
    if !verify {
        return ExitCode::SUCCESS;
    }
    let settings = match loaded {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("token inspect --verify needs the configuration: {errors}");
            return ExitCode::from(2);
        }
    };
    if refresh {
        let checked = refresh::verify(&settings.issuer.keys, token, &settings.issuer.name, now)
            .and_then(|c| {
                refresh::check(
                    &c,
                    &settings.issuer.refresh,
                    &settings.policy,
                    settings.authority.sender_constraint,
                )
            });
        return match checked {
            Ok(()) if settings.issuer.refresh.enabled => {
                println!(
                    "verify: valid refresh token (issuer {})",
                    settings.issuer.name
                );
                ExitCode::SUCCESS
            }
            Ok(()) => {
                println!("verify: NOT valid: refreshTokens.enabled is false");
                ExitCode::from(1)
            }
            Err(e) => {
                println!("verify: NOT valid ({}): {e}", e.reason());
                ExitCode::from(1)
            }
        };
    }
    let skew = settings.authority.clock_skew.as_secs() as i64;
    match settings
        .issuer
        .keys
        .verify(token, &settings.issuer.name, &settings.service, now, skew)
    {
        Ok(_) => {
            println!(
                "verify: valid (issuer {}, service {})",
                settings.issuer.name, settings.service
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("verify: NOT valid: {e}");
            ExitCode::from(1)
        }
    }
}
