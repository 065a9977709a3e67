//! The `/v2/` decision (docs/http.md, "The proxy"), a plain function: route → form bodies → needed
//! scopes → the sidecar-issued bearer token → live revocation → allow, or the [`Denial`] that
//! refuses.

use super::denial::Denial;
use crate::authority::{split_authorization, AuthorityConfig};
use crate::config::Settings;
use crate::policy::Policy;
use crate::policy::Values;
use crate::registry::Route;
use crate::registry::{route, AccessSet, Routed};
use crate::token::cache::VerifiedTokens;
use crate::token::claims::PLACEHOLDER_CLAIMS;

/// The media types Distribution reads form values (`mount`, `from`, `digest`) from, on POST,
/// PUT and PATCH (Go's `Request.FormValue`).
const FORM_TYPES: [&str; 2] = ["application/x-www-form-urlencoded", "multipart/form-data"];

/// What Go's `strings.TrimSpace` trims in ASCII (`\x0b` too, unlike `trim_ascii`).
const GO_SPACE: [char; 6] = [' ', '\t', '\n', '\x0b', '\x0c', '\r'];

/// A request the registry may see.
#[derive(Debug)]
pub struct Allowed {
    pub routed: Routed,
    pub subject: String,
    /// The token's plan claim (what its limits are looked up by).
    pub plan: Option<String>,
    /// The token's license claim (what its limits are counted under).
    pub license: Option<String>,
    /// What the token's plan placeholders were filled from, as the realm recorded it: read
    /// for the filtered catalog only (docs/namespaces.md); empty on other routes.
    pub values: Values,
}

/// What the decision needs of the request.
pub struct V2Request<'a> {
    pub method: &'a str,
    /// The raw path, as received (not decoded).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub authorization: Vec<&'a str>,
    /// Every `Content-Type` field value.
    pub content_types: Vec<&'a str>,
}

/// True when the registry may read a body with this `Content-Type` as a form: its media type
/// (before any `;`, whitespace trimmed, case ignored) is a form type. A value that is not plain
/// ASCII counts as one too: Go lower-cases Unicode (`İ` becomes `i`), so refuse rather than guess.
pub fn is_form(content_type: &str) -> bool {
    if !content_type.is_ascii() {
        return true;
    }
    let media = content_type.split(';').next().unwrap_or_default();
    let media = media.trim_matches(GO_SPACE);
    FORM_TYPES
        .iter()
        .any(|form| media.eq_ignore_ascii_case(form))
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
/// in force (clock skew, claim names); `tokens` remembers the tokens already verified.
pub fn authorize(
    settings: &Settings,
    authority: &AuthorityConfig,
    tokens: &VerifiedTokens,
    req: &V2Request<'_>,
    now: i64,
) -> Result<Allowed, Denial> {
    let routed = route(req.method, req.path, req.query)?;
    // Distribution reads `mount`/`from`/`digest` from form bodies too: refuse rather than parse.
    let has_form = req.content_types.iter().any(|c| is_form(c));
    if matches!(req.method, "POST" | "PUT" | "PATCH") && has_form {
        return Err(Denial::FormBody);
    }

    // The challenge's `scope`: what the route needs, one scope per repository (or catalog).
    let scope = || routed.needs.iter().collect::<AccessSet>().to_string();
    let token = match req.authorization.as_slice() {
        [] => return Err(Denial::NoToken { scope: scope() }),
        [one] => match split_authorization(one) {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token,
            _ => return Err(Denial::NotBearer { scope: scope() }),
        },
        _ => return Err(Denial::DuplicateAuthorization),
    };
    let leeway = authority.clock_skew.as_secs() as i64;
    // Verified once per token, then from the cache; revocation and scope are checked below on
    // every request.
    let claims = tokens
        .verify(
            &settings.issuer.keys,
            token,
            &settings.issuer.name,
            &settings.service,
            now,
            leeway,
        )
        .map_err(|_| Denial::InvalidToken { scope: scope() })?;
    if license_revoked(&claims.extra, &authority.plan_claim, &settings.policy) {
        return Err(Denial::LicenseRevoked { scope: scope() });
    }
    let granted: AccessSet = claims.access.iter().collect();
    let covered = routed.needs.iter().all(|need| granted.contains(need));
    if !covered {
        return Err(Denial::InsufficientScope { scope: scope() });
    }
    let claim = |name: &str| {
        claims
            .extra
            .get(name)
            .and_then(|v| v.as_str())
            .map(String::from)
    };
    Ok(Allowed {
        subject: claims.sub.clone(),
        plan: claim(&authority.plan_claim),
        license: claim(&authority.license_claim),
        values: match routed.route {
            Route::Catalog => claims
                .extra
                .get(PLACEHOLDER_CLAIMS)
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default(),
            _ => Values::default(),
        },
        routed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::dpop::tests::NOW;
    use crate::config::testkit::settings;
    use crate::registry::RouteError;
    use crate::registry::{Resource, Scope};
    use crate::token::testkit::SERVICE;
    use crate::token::IssuedClaims;
    use rstest::rstest;
    use serde_json::json;

    /// A registry token as the realm signs it, for `access` (`name`, actions) and `license`.
    fn token(settings: &Settings, access: &[(&str, &[&str])], license: &str) -> String {
        let mut extra = serde_json::Map::new();
        extra.insert("stellaops:license".into(), license.into());
        let claims = IssuedClaims {
            iss: settings.issuer.name.clone(),
            sub: "alice".into(),
            aud: SERVICE.into(),
            exp: NOW + 300,
            nbf: NOW,
            iat: NOW,
            jti: format!("j{}", rand::random::<u64>()),
            access: access
                .iter()
                .map(|(name, actions)| {
                    Scope::new(Resource::repository(*name), actions.iter().copied())
                })
                .collect(),
            extra,
        };
        settings.issuer.keys.sign(&claims).unwrap()
    }

    /// Every `/v2/` reason, in the order of the checks, and what passes.
    #[test]
    fn authorize_each_reason() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), "dpop", "");
        let tokens = VerifiedTokens::default();
        let push = format!(
            "Bearer {}",
            token(&settings, &[("acme/app", &["pull", "push"])], "LIC-1")
        );
        let pull = format!(
            "Bearer {}",
            token(&settings, &[("acme/app", &["pull"])], "LIC-1")
        );
        let revoked = format!(
            "Bearer {}",
            token(&settings, &[("acme/app", &["pull"])], "LIC-REVOKED")
        );
        let scope = |s: &str| s.to_string();
        let pull_scope = scope("repository:acme/app:pull");
        let push_scope = scope("repository:acme/app:pull,push");
        let manifest = "/v2/acme/app/manifests/latest";
        let uploads = "/v2/acme/app/blobs/uploads/";
        let session = "/v2/acme/app/blobs/uploads/3f1c0a2e-1b7d-4c39-9f0e-8f1f5a0e2b11";
        let multipart = "multipart/form-data; boundary=x";
        let mount = &format!("mount=sha256:{}&from=victim/private", "a".repeat(64));
        let urlencoded = "application/x-www-form-urlencoded";
        // (case, method, path, query, Authorization, Content-Type, outcome)
        type Row<'a> = (
            &'a str,
            &'a str,
            &'a str,
            Option<&'a str>,
            Vec<&'a str>,
            Vec<&'a str>,
            Result<(), Denial>,
        );
        let rows: Vec<Row> = vec![
            ("pull", "GET", manifest, None, vec![&push], vec![], Ok(())),
            (
                "upload",
                "POST",
                uploads,
                None,
                vec![&push],
                vec!["application/octet-stream"],
                Ok(()),
            ),
            (
                "a form type on GET is not a form body",
                "GET",
                manifest,
                None,
                vec![&push],
                vec![multipart],
                Ok(()),
            ),
            (
                "dot segment",
                "GET",
                "/v2/acme/../app/manifests/latest",
                None,
                vec![&push],
                vec![],
                Err(Denial::Route(RouteError::BadPath("dot segment"))),
            ),
            (
                "OPTIONS",
                "OPTIONS",
                manifest,
                None,
                vec![&push],
                vec![],
                Err(Denial::Route(RouteError::MethodNotAllowed)),
            ),
            (
                "no such route",
                "GET",
                "/v2/acme/app/nothing/here",
                None,
                vec![&push],
                vec![],
                Err(Denial::Route(RouteError::NotFound)),
            ),
            (
                "`;` in the query",
                "POST",
                uploads,
                Some("mount=a;from=b"),
                vec![&push],
                vec![],
                Err(Denial::Route(RouteError::BadQuery("`;` is not accepted"))),
            ),
            (
                "multipart POST",
                "POST",
                uploads,
                None,
                vec![&push],
                vec![multipart],
                Err(Denial::FormBody),
            ),
            (
                "multipart POST before any token",
                "POST",
                uploads,
                None,
                vec![],
                vec![multipart],
                Err(Denial::FormBody),
            ),
            (
                "urlencoded PUT",
                "PUT",
                session,
                None,
                vec![&push],
                vec![urlencoded],
                Err(Denial::FormBody),
            ),
            (
                "multipart PATCH",
                "PATCH",
                session,
                None,
                vec![&push],
                vec!["Multipart/Form-Data ; boundary=x"],
                Err(Denial::FormBody),
            ),
            (
                "form type in a second Content-Type",
                "POST",
                uploads,
                None,
                vec![&push],
                vec!["application/octet-stream", multipart],
                Err(Denial::FormBody),
            ),
            (
                "no token",
                "GET",
                manifest,
                None,
                vec![],
                vec![],
                Err(Denial::NoToken {
                    scope: pull_scope.clone(),
                }),
            ),
            (
                "Basic",
                "GET",
                manifest,
                None,
                vec!["Basic YTpi"],
                vec![],
                Err(Denial::NotBearer {
                    scope: pull_scope.clone(),
                }),
            ),
            (
                "empty Bearer",
                "GET",
                manifest,
                None,
                vec!["Bearer "],
                vec![],
                Err(Denial::NotBearer {
                    scope: pull_scope.clone(),
                }),
            ),
            (
                "two Authorization fields",
                "GET",
                manifest,
                None,
                vec![&push, &push],
                vec![],
                Err(Denial::DuplicateAuthorization),
            ),
            (
                "forged token",
                "GET",
                manifest,
                None,
                vec!["Bearer a.b.c"],
                vec![],
                Err(Denial::InvalidToken {
                    scope: pull_scope.clone(),
                }),
            ),
            (
                "license revoked",
                "GET",
                manifest,
                None,
                vec![&revoked],
                vec![],
                Err(Denial::LicenseRevoked {
                    scope: pull_scope.clone(),
                }),
            ),
            (
                "push with a pull token",
                "POST",
                uploads,
                None,
                vec![&pull],
                vec![],
                Err(Denial::InsufficientScope { scope: push_scope }),
            ),
            (
                "another repository",
                "GET",
                "/v2/victim/private/manifests/latest",
                None,
                vec![&push],
                vec![],
                Err(Denial::InsufficientScope {
                    scope: scope("repository:victim/private:pull"),
                }),
            ),
            (
                "mount needs pull on from",
                "POST",
                uploads,
                Some(mount),
                vec![&push],
                vec![],
                Err(Denial::InsufficientScope {
                    scope: scope("repository:acme/app:pull,push repository:victim/private:pull"),
                }),
            ),
            (
                "catalog",
                "GET",
                "/v2/_catalog",
                None,
                vec![&push],
                vec![],
                Err(Denial::InsufficientScope {
                    scope: scope("registry:catalog:*"),
                }),
            ),
        ];
        for (case, method, path, query, authorization, content_types, outcome) in rows {
            let req = V2Request {
                method,
                path,
                query,
                authorization,
                content_types,
            };
            let got = authorize(&settings, &settings.authority, &tokens, &req, NOW).map(|_| ());
            assert_eq!(got, outcome, "{case}");
        }
    }

    /// The media type is read as Go's `mime.ParseMediaType` reads it, failing closed.
    #[rstest]
    #[case::urlencoded("application/x-www-form-urlencoded", true)]
    #[case::multipart("multipart/form-data; boundary=x", true)]
    #[case::any_case("Multipart/Form-Data ; boundary=x", true)]
    #[case::upper("APPLICATION/X-WWW-FORM-URLENCODED;charset=utf-8", true)]
    #[case::spaces("  multipart/form-data\t;boundary=\"a b\"", true)]
    #[case::vertical_tab("\x0bmultipart/form-data\x0b; boundary=x", true)]
    #[case::no_parameters("multipart/form-data", true)]
    #[case::non_ascii("multİpart/form-data; boundary=x", true)]
    #[case::octet_stream("application/octet-stream", false)]
    #[case::manifest("application/vnd.oci.image.manifest.v1+json", false)]
    #[case::mixed("multipart/mixed; boundary=x", false)]
    #[case::prefix_only("multipart/form-datax", false)]
    #[case::empty("", false)]
    fn form_media_types(#[case] content_type: &str, #[case] form: bool) {
        assert_eq!(is_form(content_type), form);
    }

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
