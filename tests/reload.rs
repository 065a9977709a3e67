//! Hot reload of `plans`, `defaultPlan` and `revokedLicenses` (docs/configuration.md): by
//! rename-replace, by SIGHUP, by a Kubernetes ConfigMap `..data` swap, and the refusal of a broken
//! file. Every test learns that a reload took effect from `registry_token_config_generation` (or
//! the error counter) on the admin `/metrics`, never from a sleep, then asserts on the decisions.
//!
//! Authority: in-test (common::authority): each plan and license edited in the file gets an
//! OpTok minted for it on the spot.

mod common;

use common::*;
use serde_json::Value;

/// Status and machine `reason` of a `/token` answer (reason `""` on success); checks the
/// RFC 6750 `WWW-Authenticate` error on 401/403.
fn outcome(response: reqwest::blocking::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = response.json().unwrap_or(Value::Null);
    if matches!(status, 401 | 403) {
        let challenge = challenge.unwrap_or_default();
        assert!(
            challenge.contains("error="),
            "{status} without error= in challenge: {challenge:?}"
        );
    }
    let reason = body["reason"].as_str().unwrap_or_default().to_string();
    (status, reason)
}

/// A client of one plan and license, asking for scopes on a fresh DPoP proof each time.
struct Caller {
    key: DpopKey,
    optok: String,
}

impl Caller {
    fn new(stack: &Stack, plan: &str, license: &str) -> Caller {
        let (key, optok) = stack.client(&format!("{plan}-user"), plan, license);
        Caller { key, optok }
    }

    fn ask(&self, sidecar: &Sidecar, scope: &str) -> (u16, String) {
        outcome(sidecar.get_token(&[scope], &self.optok, &self.key))
    }
}

/// The decisions the default config makes, as `(status, reason)` per probe, in a fixed order.
fn decisions(stack: &Stack) -> Vec<(u16, String)> {
    let sidecar = &stack.sidecar;
    let enterprise = Caller::new(stack, "enterprise", "LIC-E");
    let public = Caller::new(stack, "public", "LIC-P");
    let revoked = Caller::new(stack, "enterprise", "LIC-REVOKED");
    vec![
        enterprise.ask(sidecar, "repository:acme/app:pull,push"),
        enterprise.ask(sidecar, "repository:customers/x/y:delete"),
        public.ask(sidecar, "repository:public/base:pull"),
        public.ask(sidecar, "repository:acme/app:pull,push"),
        revoked.ask(sidecar, "repository:acme/app:pull"),
    ]
}

fn ok() -> (u16, String) {
    (200, String::new())
}

fn denied(status: u16, reason: &str) -> (u16, String) {
    (status, reason.to_string())
}

/// What the default config decides (the baseline the broken-file test compares against).
fn default_decisions() -> Vec<(u16, String)> {
    vec![
        ok(),
        ok(),
        ok(),
        denied(403, "plan_denied"),
        denied(403, "license_revoked"),
    ]
}

/// Revoking a license by rewriting the file (rename-replace) applies without a restart: new
/// `/token` requests for that license get 403 `license_revoked`, and a registry token issued
/// before the revocation, which the registry still accepted a moment ago, is refused by the
/// sidecar on `/v2/` from the reload on, without reaching the registry. Other licenses still work.
#[test]
fn revoking_a_license_refuses_new_requests_and_tokens_already_issued() {
    let stack = Stack::start();
    let sidecar = &stack.sidecar;
    let carol = Caller::new(&stack, "enterprise", "LIC-42");
    let dave = Caller::new(&stack, "enterprise", "LIC-43");
    let token = sidecar.token(&["repository:acme/app:pull"], &carol.optok, &carol.key);
    assert_eq!(
        sidecar.v2("/v2/", Some(&token)).status(),
        200,
        "GET /v2/ before"
    );
    let tags = sidecar.v2("/v2/acme/app/tags/list", Some(&token));
    assert_eq!(
        tags.status(),
        404,
        "the registry answered NAME_UNKNOWN: the token got through"
    );

    let generation = sidecar.generation();
    let mut config = sidecar.config().clone();
    config.revoked_licenses.push("LIC-42".into());
    sidecar.apply(&config);
    sidecar.wait_generation_above(generation);

    assert_eq!(
        carol.ask(sidecar, "repository:acme/app:pull"),
        denied(403, "license_revoked")
    );
    assert_eq!(
        dave.ask(sidecar, "repository:acme/app:pull"),
        ok(),
        "only LIC-42 is revoked"
    );

    let denied_before = sidecar.metric("registry_proxy_denied_total", &[]);
    let forwarded_before = stack.registry.requests_for("/v2/acme/app/tags/list");
    for path in ["/v2/", "/v2/acme/app/tags/list"] {
        let status = sidecar.v2(path, Some(&token)).status().as_u16();
        assert!(
            matches!(status, 401 | 403),
            "GET {path} with a revoked license's token: {status}"
        );
    }
    let denied_after = sidecar.metric("registry_proxy_denied_total", &[]);
    assert_eq!(
        denied_after,
        denied_before + 2.0,
        "both refusals counted as proxy denials"
    );
    assert_eq!(
        stack.registry.requests_for("/v2/acme/app/tags/list"),
        forwarded_before,
        "the refused request never reached the registry"
    );
}

/// A truncated file, then one that is not YAML at all, each written in place over the config:
/// `registry_token_config_reloads_total{result="error"}` rises, the generation does not move,
/// and the old config keeps deciding exactly as before. Writing the complete file afterwards
/// applies it.
#[test]
fn a_broken_config_file_is_rejected_whole_and_the_old_one_keeps_deciding() {
    let stack = Stack::start();
    let sidecar = &stack.sidecar;
    assert_eq!(decisions(&stack), default_decisions(), "baseline");
    let generation = sidecar.generation();

    let mut changed = sidecar.config().clone();
    changed
        .plan_mut("public")
        .rules
        .push(("acme/*".into(), vec!["pull".into(), "push".into()]));
    let full = sidecar.render(&changed);
    // Cut mid-line inside the last plan, so the required `registry` section is lost too.
    let cut = full
        .find("\nregistry:")
        .expect("a top-level registry section")
        - 3;
    let broken: [&[u8]; 2] = [
        &full.as_bytes()[..cut],
        b"plans:\n\t- name: [public\n  oops: {",
    ];
    for contents in broken {
        let errors = sidecar.metric(
            "registry_token_config_reloads_total",
            &[("result", "error")],
        );
        sidecar.overwrite_in_place(contents);
        sidecar.wait_metric_above(
            "registry_token_config_reloads_total",
            &[("result", "error")],
            errors,
        );
        assert_eq!(
            sidecar.generation(),
            generation,
            "a broken file is not a new generation"
        );
        assert_eq!(
            decisions(&stack),
            default_decisions(),
            "the old config still decides"
        );
    }

    sidecar.rewrite_config(&full);
    sidecar.wait_generation_above(generation);
    let mut expected = default_decisions();
    expected[3] = ok();
    assert_eq!(decisions(&stack), expected, "the complete file applies");
}

/// Granting `acme/*` push to the `public` plan by rename-replace applies without a restart: the
/// same OpTok that got 403 `plan_denied` now gets a token with pull and push on `acme/app`,
/// from the same process.
#[test]
fn a_plan_change_applies_without_a_restart() {
    let stack = Stack::start();
    let sidecar = &stack.sidecar;
    let pid = sidecar.pid();
    let erin = Caller::new(&stack, "public", "LIC-P");
    assert_eq!(
        erin.ask(sidecar, "repository:acme/app:pull,push"),
        denied(403, "plan_denied")
    );

    let generation = sidecar.generation();
    let mut config = sidecar.config().clone();
    config
        .plan_mut("public")
        .rules
        .push(("acme/*".into(), vec!["pull".into(), "push".into()]));
    sidecar.apply(&config);
    sidecar.wait_generation_above(generation);

    let token = sidecar.token(&["repository:acme/app:pull,push"], &erin.optok, &erin.key);
    assert_eq!(granted(&token, "acme/app"), ["pull", "push"]);
    assert_eq!(sidecar.pid(), pid);
    let ok_reloads = sidecar.metric("registry_token_config_reloads_total", &[("result", "ok")]);
    assert!(ok_reloads >= 1.0, "the reload is counted as ok");
}

/// SIGHUP reloads. First with the file unchanged, so nothing but the signal can cause a reload:
/// the process survives it (SIGHUP's default action is to terminate) and
/// `registry_token_config_reloads_total` counts the reload. Then with the config path a symlink
/// to a file in another folder, edited in place there (no event in the watched folder): after
/// `kill -HUP` the new pattern (`tools/**` pull for `enterprise`) applies.
#[test]
fn sighup_reloads_the_configuration() {
    let stack = Stack::start_with(|config| config.layout = Layout::LinkElsewhere);
    let sidecar = &stack.sidecar;
    let frank = Caller::new(&stack, "enterprise", "LIC-F");
    assert_eq!(
        frank.ask(sidecar, "repository:tools/cli/x:pull"),
        denied(403, "plan_denied")
    );

    let reloads = sidecar.metric("registry_token_config_reloads_total", &[]);
    sidecar.sighup();
    sidecar.wait_metric_above("registry_token_config_reloads_total", &[], reloads);
    assert_eq!(
        client()
            .get(format!("{}/healthz", sidecar.url()))
            .send()
            .unwrap()
            .status(),
        200
    );

    let generation = sidecar.generation();
    let mut config = sidecar.config().clone();
    config
        .plan_mut("enterprise")
        .rules
        .push(("tools/**".into(), vec!["pull".into()]));
    sidecar.apply(&config);
    sidecar.sighup();
    sidecar.wait_generation_above(generation);

    let token = sidecar.token(
        &["repository:tools/cli/x:pull,push"],
        &frank.optok,
        &frank.key,
    );
    assert_eq!(
        granted(&token, "tools/cli/x"),
        ["pull"],
        "pull granted, push is not in the plan"
    );
}

/// A Kubernetes ConfigMap update (`registry-token.yaml -> ..data/registry-token.yaml`, the
/// `..data` symlink swapped atomically to a new timestamped folder and the old one removed)
/// applies: `defaultPlan` moves to `enterprise`, so an OpTok without a plan claim gets push.
#[test]
fn a_kubernetes_configmap_symlink_swap_applies() {
    let stack = Stack::start_with(|config| config.layout = Layout::Kubernetes);
    let sidecar = &stack.sidecar;
    let key = DpopKey::new();
    let mut claims = stack
        .authority
        .optok_claims("gina", "", "LIC-G", Some(&key.thumbprint()));
    claims.as_object_mut().unwrap().remove("stellaops:plan");
    let optok = stack.authority.mint(claims);
    let ask = || outcome(sidecar.get_token(&["repository:acme/app:pull,push"], &optok, &key));
    assert_eq!(ask(), denied(403, "plan_denied"), "defaultPlan public");

    let generation = sidecar.generation();
    let mut config = sidecar.config().clone();
    config.default_plan = "enterprise".into();
    sidecar.apply(&config);
    sidecar.wait_generation_above(generation);

    assert_eq!(ask(), ok(), "defaultPlan enterprise after the swap");
    // A second swap applies too (the watcher follows the new `..data` target, not the old one).
    let generation = sidecar.generation();
    config.revoked_licenses.push("LIC-G".into());
    sidecar.apply(&config);
    sidecar.wait_generation_above(generation);
    assert_eq!(ask(), denied(403, "license_revoked"));
}
