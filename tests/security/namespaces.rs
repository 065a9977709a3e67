//! docs/namespaces.md and docs/security.md, cases 92–93, end to end: claim placeholders in plan
//! patterns (`customers/${license|lower}/**`) and the filtered catalog.
//!
//! ```text
//! skopeo / reqwest ──▶ Sidecar ──▶ Tap ──▶ Registry (no auth of its own)
//!   (OpTok as the Basic password: senderConstraint none, what stock clients send)
//! ```
//!
//! The catalog case fills the registry with 2,000 repositories through its own API (one
//! shared config blob mounted into each, one manifest each), then walks every caller's
//! catalog page by page: each page is compared with the registry's own catalog filtered
//! independently, each `Link` is checked, and the tap counts the upstream catalog requests
//! each client request cost.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::bed::{query, realm, Reply};
use crate::common::*;

/// The plans of these cases, rendered into the config (`catalog` is not in the harness's Plan).
fn plans() -> Value {
    json!([
        {"name": "customers", "catalog": true, "repositories": [
            {"pattern": "customers/${license|lower}/**", "actions": ["pull", "push"]},
            {"pattern": "tenants/${claim:tenant}/**", "actions": ["pull"]}]},
        {"name": "strict", "catalog": true, "repositories": [
            {"pattern": "customers/${license}/**", "actions": ["pull", "push"]}]},
        {"name": "team", "catalog": true, "repositories": [
            {"pattern": "team/*", "actions": ["pull"]},
            {"pattern": "shared/*/app", "actions": ["pull"]},
            {"pattern": "customers/acme/team/*", "actions": ["push"]}]},
        {"name": "ops", "catalog": true, "repositories": [
            {"pattern": "**", "actions": ["pull"]}]},
        {"name": "plain", "repositories": [
            {"pattern": "**", "actions": ["pull"]}]},
    ])
}

/// Authority, a registry without auth, the tap, and a sidecar with [`plans`] under
/// `senderConstraint: none` and refresh tokens on. Fields drop in order. The cache cases
/// (tests/security/cache.rs) start their customers here too.
pub struct Namespaces {
    pub sidecar: Sidecar,
    pub tap: Tap,
    pub registry: Registry,
    _keys: std::sync::Arc<Keys>,
    authority: Authority,
}

impl Namespaces {
    pub fn start() -> Namespaces {
        let authority = Authority::start();
        let keys = Keys::shared();
        let registry = Registry::start(None);
        let tap = Tap::start(&registry.addr());
        let mut config = SidecarConfig::new(&tap.url(), &authority.issuer(), keys.path());
        config.sender_constraint = "none".into();
        config.default_plan = "plain".into();
        config.patch = json!({"plans": plans(), "refreshTokens": {"enabled": true}});
        let sidecar = Sidecar::start(config);
        Namespaces {
            sidecar,
            tap,
            registry,
            _keys: keys,
            authority,
        }
    }

    /// An OpTok of `plan` with `license` (`None`: no license claim) and extra claims.
    pub fn optok(&self, sub: &str, plan: &str, license: Option<&str>, extra: Value) -> String {
        let mut claims = self
            .authority
            .optok_claims(sub, plan, license.unwrap_or(""), None);
        match license {
            Some(l) => claims["stellaops:license"] = json!(l),
            None => {
                claims.as_object_mut().unwrap().remove("stellaops:license");
            }
        }
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        self.authority.mint(claims)
    }

    /// `GET /token` with the OpTok as the Basic password, as docker and skopeo send it.
    pub fn token(&self, optok: &str, scopes: &[&str]) -> Reply {
        let basic = format!("Basic {}", base64_std(&format!("x:{optok}")));
        realm(&self.sidecar, &query(scopes), &[basic], &[])
    }

    /// `GET /v2/_catalog?QUERY` with `token`: status, `Link`, body.
    fn catalog(&self, token: &str, query: &str) -> (u16, Option<String>, Value) {
        let url = format!("{}/v2/_catalog{query}", self.sidecar.url());
        let response = client().get(url).bearer_auth(token).send().unwrap();
        let link = response
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_string());
        (
            response.status().as_u16(),
            link,
            response.json().unwrap_or(Value::Null),
        )
    }

    /// The upstream catalog requests the sidecar has sent so far.
    fn upstream_catalog_requests(&self) -> usize {
        self.tap.count(b"GET /v2/_catalog")
    }
}

/// Standard base64 with padding (HTTP Basic).
fn base64_std(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A small image, copied by skopeo from an OCI layout to `reference` with `creds`; true when
/// skopeo succeeded.
fn push(reference: &str, creds: &str) -> bool {
    let src = tempfile::tempdir().unwrap();
    oci_layout(src.path(), "v1", &[1024]);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        &format!("oci:{}:v1", src.path().display()),
        &format!("docker://{reference}"),
    ])
    .status
    .success()
}

/// skopeo copies `reference` into a fresh OCI layout with `creds`; true when it could.
fn pull(reference: &str, creds: &str) -> bool {
    let dest = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        creds,
        &format!("docker://{reference}"),
        &format!("oci:{}:v1", dest.path().display()),
    ])
    .status
    .success()
}

/// Two customers on one plan, `customers/${license|lower}/**`: each pushes and pulls its own
/// namespace with skopeo (OpTok as the Basic password), neither reads, writes nor lists the
/// other's, and a refresh token expands `${claim:tenant}` as the OpTok did.
#[test]
fn case92_two_customers_own_namespaces() {
    let bed = Namespaces::start();
    let host = bed.sidecar.addr();
    let acme = bed.optok("alice", "customers", Some("ACME"), json!({"tenant": "t1"}));
    let globex = bed.optok("bob", "customers", Some("Globex"), json!({}));
    let (acme_creds, globex_creds) = (format!("x:{acme}"), format!("x:{globex}"));

    assert!(push(&format!("{host}/customers/acme/app:v1"), &acme_creds));
    assert!(push(
        &format!("{host}/customers/globex/app:v1"),
        &globex_creds
    ));
    assert!(pull(&format!("{host}/customers/acme/app:v1"), &acme_creds));
    assert!(pull(
        &format!("{host}/customers/globex/app:v1"),
        &globex_creds
    ));
    // Neither reaches the other's namespace, through skopeo or by asking the realm.
    assert!(!pull(
        &format!("{host}/customers/globex/app:v1"),
        &acme_creds
    ));
    assert!(!push(
        &format!("{host}/customers/globex/evil:v1"),
        &acme_creds
    ));
    assert!(!pull(
        &format!("{host}/customers/acme/app:v1"),
        &globex_creds
    ));
    bed.token(&acme, &["repository:customers/globex/app:pull"])
        .expect(403, "92");
    let granted = bed.token(&acme, &["repository:customers/acme/app:pull,push"]);
    granted.expect(200, "92");
    assert_eq!(
        granted.access(),
        [(
            "customers/acme/app".to_string(),
            vec!["pull".to_string(), "push".to_string()]
        )],
        "the registry token carries the expanded name"
    );

    // The OpTok presented directly (Bearer, and DPoP-bound with a proof) expands the same.
    let bearer = realm(
        &bed.sidecar,
        &query(&[
            "repository:customers/acme/app:pull",
            "repository:customers/globex/app:pull",
        ]),
        &[format!("Bearer {acme}")],
        &[],
    );
    bearer.expect(200, "92");
    assert_eq!(granted_names(bearer.token()), ["customers/acme/app"]);
    let key = DpopKey::new();
    let bound = bed.optok(
        "alice",
        "customers",
        Some("ACME"),
        json!({"cnf": {"jkt": key.thumbprint()}}),
    );
    let scopes = query(&[
        "repository:customers/acme/app:pull",
        "repository:customers/globex/app:pull",
    ]);
    let dpop = crate::bed::dpop_realm(&bed.sidecar, &scopes, &bound, &key);
    dpop.expect(200, "92");
    assert_eq!(granted_names(dpop.token()), ["customers/acme/app"]);

    // Each lists its own namespace only.
    for (optok, own) in [
        (&acme, "customers/acme/app"),
        (&globex, "customers/globex/app"),
    ] {
        let token = bed.token(optok, &["registry:catalog:*"]);
        token.expect(200, "93");
        let (status, link, body) = bed.catalog(token.token(), "");
        assert_eq!((status, link), (200, None));
        assert_eq!(body, json!({"repositories": [own]}));
    }

    // A refresh token keeps the `tenant` claim the plan reads: a refresh expands the same.
    let offline = client()
        .get(bed.sidecar.realm())
        .query(&query(&["repository:tenants/t1/app:pull"]))
        .query(&[("offline_token", "true"), ("client_id", "e2e")])
        .header(
            "Authorization",
            format!("Basic {}", base64_std(&acme_creds)),
        )
        .send()
        .unwrap();
    assert_eq!(offline.status(), 200);
    let refresh = offline.json::<Value>().unwrap()["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_string();
    let refreshed = |scope: &str| {
        client()
            .post(bed.sidecar.realm())
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("service", crate::common::sidecar::SERVICE),
                ("scope", scope),
                ("client_id", "e2e"),
            ])
            .send()
            .unwrap()
    };
    let same = refreshed("repository:tenants/t1/app:pull repository:customers/acme/x:pull");
    assert_eq!(same.status(), 200);
    let token = same.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        granted_names(&token),
        ["customers/acme/x", "tenants/t1/app"]
    );
    assert_eq!(
        refreshed("repository:tenants/t2/app:pull").status(),
        403,
        "another tenant through the refresh token"
    );
    bed.sidecar
        .assert_log_free_of(&[acme.as_str(), globex.as_str(), refresh.as_str()]);
}

/// The repository names an issued token grants, sorted.
fn granted_names(token: &str) -> Vec<String> {
    let mut names: Vec<String> = jwt_claims(token)["access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Security case 92: license values that are not one path component grant nothing anywhere (never
/// a wider name), list nothing, and the log says why without quoting the token.
#[test]
fn case92_injected_values_match_nothing() {
    let bed = Namespaces::start();
    let long = "a".repeat(300);
    // (plan, license value): upper case only under the plan without `|lower`.
    let values: Vec<(&str, Option<&str>, &str)> = vec![
        (
            "customers",
            Some("a/b"),
            "not one repository path component",
        ),
        ("customers", Some(".."), "not one repository path component"),
        ("customers", Some("*"), "not one repository path component"),
        ("customers", Some("**"), "not one repository path component"),
        ("customers", Some(""), "is empty"),
        (
            "customers",
            Some("%2f"),
            "not one repository path component",
        ),
        (
            "customers",
            Some("acme%2Fglobex"),
            "not one repository path component",
        ),
        ("strict", Some("ACME"), "upper case"),
        ("customers", Some(long.as_str()), "longer than"),
        ("customers", Some("acmé"), "not ASCII"),
        ("customers", None, "is missing"),
    ];
    let names = [
        "customers/a/b/app",
        "customers/a/app",
        "customers/acme/app",
        "customers/globex/app",
        "customers/acme/globex/app",
        "customers/acme",
    ];
    for (plan, license, reason) in values {
        let optok = bed.optok("mallory", plan, license, json!({}));
        for name in names {
            let scope = format!("repository:{name}:pull,push");
            let reply = bed.token(&optok, &[&scope]);
            assert_eq!(
                reply.status,
                403,
                "{license:?} {name}: {}",
                reply.describe()
            );
            assert_eq!(reply.body["reason"], "plan_denied");
        }
        let catalog = bed.token(&optok, &["registry:catalog:*"]);
        catalog.expect(200, "92");
        let (status, _, body) = bed.catalog(catalog.token(), "");
        assert_eq!((status, body), (200, json!({"repositories": []})));
        assert!(
            bed.sidecar.log().contains(reason),
            "{license:?}: the log says `{reason}`"
        );
        bed.sidecar.assert_log_free_of(&[optok.as_str()]);
    }
    let log = bed.sidecar.log();
    assert!(log.contains("a plan pattern matches nothing for this caller"));
    assert!(!log.contains(&long), "a claim value is never logged");
}

/// Creates `names` in the registry through its own API: one config blob pushed once, mounted
/// into each repository, and one manifest per repository. Four threads.
fn fill(registry: &Registry, names: &[String]) {
    let base = registry.url();
    let config = b"{}";
    let digest = crate::common::cache::seed_blob(registry, "seed/base", config);
    let manifest = json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest, "size": config.len()},
        "layers": []})
    .to_string();
    std::thread::scope(|s| {
        for chunk in names.chunks(names.len().div_ceil(4)) {
            let (http, base, digest, manifest) = (client(), &base, &digest, &manifest);
            s.spawn(move || {
                for name in chunk {
                    let mount = http
                        .post(format!(
                            "{base}/v2/{name}/blobs/uploads/?mount={digest}&from=seed/base"
                        ))
                        .send()
                        .unwrap();
                    assert_eq!(mount.status(), 201, "mount into {name}");
                    let put = http
                        .put(format!("{base}/v2/{name}/manifests/v1"))
                        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                        .body(manifest.clone())
                        .send()
                        .unwrap();
                    assert_eq!(put.status(), 201, "manifest of {name}");
                }
            });
        }
    });
}

/// The registry's own catalog, every page, in its order.
fn upstream_catalog(registry: &Registry) -> Vec<String> {
    let mut all = Vec::new();
    let mut last = String::new();
    loop {
        let url = format!("{}/v2/_catalog?n=1000&last={last}", registry.url());
        let page: Value = client().get(url).send().unwrap().json().unwrap();
        let names: Vec<String> = page["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        let Some(l) = names.last() else { return all };
        last = l.clone();
        all.extend(names);
    }
}

/// The `last` and `n` of a `Link: </v2/_catalog?last=X&n=N>; rel="next"`, checked for form.
fn link_target(link: &str) -> (String, String) {
    let target = link
        .strip_prefix("</v2/_catalog?")
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("Link in Distribution's form: {link}"));
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(target.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        pairs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["last", "n"],
        "{link}"
    );
    (pairs[0].1.clone(), target.to_string())
}

/// Security case 93 and docs/namespaces.md: three catalog plans over a registry of 2,000
/// repositories. Every page of every caller is correct (only what it may pull, in the registry's
/// order, at most `n`, nothing missed), every `Link` is in Distribution's form and names only a
/// repository the caller may pull (or a sealed cursor), and each client request costs at most
/// `MAX_PAGES` (10) upstream catalog requests. A plan without `catalog: true` gets no scope
/// and no listing; hot reload turns the catalog off for tokens already issued.
#[test]
fn case93_filtered_catalog_over_2000_repositories() {
    let bed = Namespaces::start();
    let mut names: Vec<String> = Vec::new();
    names.extend((0..140).map(|i| format!("customers/acme/app-{i:03}")));
    names.extend((0..10).map(|i| format!("customers/acme/team/svc-{i}")));
    names.extend((0..150).map(|i| format!("customers/globex/app-{i:03}")));
    names.extend((0..500).map(|i| format!("customers/initech/app-{i:03}")));
    names.extend((0..300).map(|i| format!("team/svc-{i:03}")));
    names.extend((0..50).map(|i| format!("team/nested/svc-{i:02}")));
    names.extend((0..100).map(|i| format!("shared/lib-{i:03}/app")));
    names.extend((0..749).map(|i| format!("other/app-{i:03}")));
    assert_eq!(names.len() + 1, 2000, "with seed/base");
    fill(&bed.registry, &names);
    let everything = upstream_catalog(&bed.registry);
    assert_eq!(everything.len(), 2000);

    type Visible = fn(&str) -> bool;
    fn acme(n: &str) -> bool {
        n.starts_with("customers/acme/")
    }
    fn globex(n: &str) -> bool {
        n.starts_with("customers/globex/")
    }
    fn team(n: &str) -> bool {
        let parts: Vec<&str> = n.split('/').collect();
        matches!(parts.as_slice(), ["team", _] | ["shared", _, "app"])
    }
    fn ops(_: &str) -> bool {
        true
    }
    let callers: Vec<(&str, String, Visible)> = vec![
        (
            "acme",
            bed.optok("alice", "customers", Some("ACME"), json!({})),
            acme,
        ),
        (
            "globex",
            bed.optok("bob", "customers", Some("Globex"), json!({})),
            globex,
        ),
        (
            "team",
            bed.optok("carol", "team", Some("T"), json!({})),
            team,
        ),
        ("ops", bed.optok("dave", "ops", None, json!({})), ops),
    ];
    for (who, optok, visible) in &callers {
        let token = bed.token(optok, &["registry:catalog:*"]);
        token.expect(200, "93");
        let expected: Vec<String> = everything
            .iter()
            .filter(|n| visible(n.as_str()))
            .cloned()
            .collect();
        // Each upstream page costs Distribution a walk of its storage: a few page sizes per
        // caller, one that splits its listing into several pages and one that holds it whole
        // (or nearly, for the caller that sees 2,000).
        let sizes: &[usize] = match *who {
            "ops" => &[450, 1000],
            "team" => &[150, 1000],
            _ => &[40, 1000],
        };
        for &n in sizes {
            let mut seen: Vec<String> = Vec::new();
            let mut query = format!("?n={n}");
            let mut requests = 0;
            loop {
                let before = bed.upstream_catalog_requests();
                let (status, link, body) = bed.catalog(token.token(), &query);
                let cost = bed.upstream_catalog_requests() - before;
                assert_eq!(status, 200, "{who} n={n} {query}: {body}");
                assert!(
                    (1..=10).contains(&cost),
                    "{who} n={n}: {cost} upstream pages"
                );
                let page: Vec<String> = body["repositories"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect();
                assert!(page.len() <= n, "{who}: {} > n={n}", page.len());
                assert!(
                    page.iter().all(|r| visible(r)),
                    "{who} sees another's: {page:?}"
                );
                seen.extend(page.clone());
                requests += 1;
                match link {
                    None => break,
                    Some(link) => {
                        let (last, target) = link_target(&link);
                        assert!(target.ends_with(&format!("&n={n}")), "{link}");
                        assert!(
                            visible(&last) || last.starts_with('~'),
                            "{who}: Link reveals {last}"
                        );
                        // A full page continues after its own last name, as Distribution's.
                        if page.len() == n {
                            assert_eq!(Some(&last), page.last(), "{link}");
                        }
                        query = format!("?{target}");
                    }
                }
                assert!(
                    requests <= expected.len() + 2,
                    "{who}: the walk does not end"
                );
            }
            assert_eq!(seen, expected, "{who} n={n}: exactly its repositories");
            if n >= expected.len() {
                assert_eq!(requests, 1, "{who} n={n}: one page, no Link");
            }
        }
    }
    // Security case 93: a plan without `catalog: true` gets no catalog scope, and a token of it
    // gets no listing, never forwarded.
    let plain = bed.optok("erin", "plain", None, json!({}));
    let refused = bed.token(&plain, &["registry:catalog:*"]);
    refused.expect(403, "93");
    let pull = bed.token(&plain, &["repository:other/app-001:pull"]);
    let before = bed.upstream_catalog_requests();
    let (status, _, _) = bed.catalog(pull.token(), "");
    assert_eq!(status, 401);
    // A tampered cursor is a 400 that quotes nothing.
    let acme_token = bed.token(&callers[0].1, &["registry:catalog:*"]);
    let (status, _, body) = bed.catalog(
        acme_token.token(),
        "?last=~AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(bed.upstream_catalog_requests(), before, "never forwarded");

    // Hot reload: `catalog: false` ends the listing for tokens already issued.
    let mut config = bed.sidecar.config().clone();
    let mut reloaded = plans();
    reloaded[0]["catalog"] = json!(false);
    config.patch["plans"] = reloaded;
    let generation = bed.sidecar.generation();
    bed.sidecar.apply(&config);
    bed.sidecar.wait_generation_above(generation);
    let (status, _, _) = bed.catalog(acme_token.token(), "");
    assert_eq!(status, 401, "catalog off after reload");
    assert_eq!(bed.upstream_catalog_requests(), before);
    let unique: BTreeSet<&String> = everything.iter().collect();
    assert_eq!(unique.len(), everything.len());
}

/// As docs/namespaces.md says, `token inspect` and `doctor --token` show what a token's plan
/// placeholders expand to, and say why a pattern matches nothing for it; `check-config` names the
/// YAML path of a placeholder that is not a whole segment or names an unknown variable.
#[test]
fn spec11_inspect_doctor_and_check_config_show_placeholders() {
    let bed = Namespaces::start();
    let config = bed.sidecar.config_path().to_str().unwrap().to_string();
    let optok = bed.optok("alice", "customers", Some("ACME-42"), json!({}));

    let out = run(&["--config", &config, "token", "inspect", &optok], &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("namespaces (plan customers"), "{text}");
    assert!(
        text.contains("customers/${license|lower}/** → customers/acme-42/** (pull, push)"),
        "{text}"
    );
    assert!(
        text.contains("tenants/${claim:tenant}/** → matches nothing: `claim:tenant` is missing"),
        "{text}"
    );
    // The registry token the realm issued names the expanded repository.
    let issued = bed.token(&optok, &["repository:customers/acme-42/app:pull"]);
    issued.expect(200, "92");
    let out = run(
        &["--config", &config, "token", "inspect", issued.token()],
        &[],
    );
    assert!(stdout(&out).contains("repository:customers/acme-42/app:pull"));

    let out = run(
        &[
            "--config",
            &config,
            "doctor",
            "--check",
            "namespaces",
            "--token",
            &optok,
        ],
        &[],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "a warning only: {text}");
    assert!(text.contains("check.namespaces"), "{text}");
    assert!(text.contains("customers/acme-42/**"), "{text}");
    assert!(text.contains("matches nothing"), "{text}");

    let mut yaml = std::fs::read_to_string(&config).unwrap();
    yaml = yaml.replace("tenants/${claim:tenant}/**", "tenants/x${claim:tenant}");
    yaml = yaml.replace("customers/${license}/**", "customers/${tenant}/**");
    let bad = tempfile::tempdir().unwrap();
    let path = bad.path().join("bad.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = run(&["--config", path.to_str().unwrap(), "check-config"], &[]);
    let errors = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{errors}");
    assert!(
        errors.contains("plans[0].repositories[1].pattern") && errors.contains("whole segment"),
        "{errors}"
    );
    assert!(
        errors.contains("plans[1].repositories[0].pattern")
            && errors.contains("unknown placeholder variable `tenant`"),
        "{errors}"
    );
}
