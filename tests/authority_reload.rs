//! Hot reload of the `authority` section (docs/configuration.md): an edit of the
//! sender constraint, the claim names or the issuer applies without a restart, through a new
//! Authority built beside the one in force that takes over once its keys are fetched; until
//! then the old one serves with its own settings. Each test learns that the file was reloaded
//! from `registry_token_config_generation`, then polls for the behaviour, never sleeps.
//!
//! Authority: in-test (common::authority): the tests swap issuers, move the claim names and
//! start a second Authority beside the first, with OpToks minted for each.

mod common;

use std::time::Duration;

use common::sidecar::{RELOAD_DEADLINE, SERVICE};
use common::*;
use serde_json::{json, Value};

/// How long a new Authority may take to fetch its keys and take over after the Authority it
/// names comes up (it retries every 5 s).
const TAKEOVER_DEADLINE: Duration = Duration::from_secs(30);

/// Status and machine `reason` of a `/token` answer (reason `""` on success).
fn outcome(response: reqwest::blocking::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    (
        status,
        body["reason"].as_str().unwrap_or_default().to_string(),
    )
}

fn ok() -> (u16, String) {
    (200, String::new())
}

fn refused(status: u16, reason: &str) -> (u16, String) {
    (status, reason.to_string())
}

/// `GET /token` with `Authorization: Bearer <optok>` and no proof.
fn bearer(sidecar: &Sidecar, scope: &str, optok: &str) -> reqwest::blocking::Response {
    client()
        .get(sidecar.realm())
        .query(&[("service", SERVICE), ("scope", scope)])
        .bearer_auth(optok)
        .send()
        .expect("GET /token")
}

/// Starting with `senderConstraint: dpop`, a plain bearer OpTok is refused
/// (`sender_constraint_mismatch`). The file is edited to `senderConstraint: none`, `claims.plan:
/// tier` and `claims.license: lic`, and one license is revoked: without a restart, the same
/// bearer OpTok gets a token whose plan is its `tier` claim (enterprise: pull and push on
/// `acme/app`), not its `stellaops:plan` (public: nothing there), with its `lic` claim as the
/// license, and the registry accepts it through the sidecar. A registry token issued before the
/// edit, whose license sits under the old claim name, is refused on `/v2/` once that license is
/// revoked.
#[test]
fn an_authority_edit_applies_on_reload_without_a_restart() {
    let stack = Stack::start();
    let sidecar = &stack.sidecar;
    let pid = sidecar.pid();
    let scope = "repository:acme/app:pull,push";
    let mut claims = stack
        .authority
        .optok_claims("ivan", "public", "LIC-X", None);
    claims["tier"] = json!("enterprise");
    claims["lic"] = json!("LIC-I");
    let optok = stack.authority.mint(claims);
    assert_eq!(
        outcome(bearer(sidecar, scope, &optok)),
        refused(401, "sender_constraint_mismatch"),
        "dpop in force: a bearer OpTok is refused"
    );
    let (key, judy) = stack.client("judy", "enterprise", "LIC-J");
    let issued_before = sidecar.token(&["repository:acme/app:pull"], &judy, &key);
    assert_eq!(
        sidecar
            .v2("/v2/acme/app/tags/list", Some(&issued_before))
            .status(),
        404,
        "the registry answered (NAME_UNKNOWN): the token got through"
    );

    let generation = sidecar.generation();
    let mut config = sidecar.config().clone();
    config.sender_constraint = "none".into();
    config.patch = json!({"authority": {"claims": {"plan": "tier", "license": "lic"}}});
    config.revoked_licenses.push("LIC-J".into());
    sidecar.apply(&config);
    sidecar.wait_generation_above(generation);

    let token = poll(RELOAD_DEADLINE, "the bearer OpTok to be accepted", || {
        let response = bearer(sidecar, scope, &optok);
        (response.status() == 200).then(|| {
            let body: Value = response.json().unwrap();
            body["token"].as_str().unwrap().to_string()
        })
    });
    assert_eq!(
        granted(&token, "acme/app"),
        ["pull", "push"],
        "the plan comes from the claim now named by claims.plan"
    );
    let issued = jwt_claims(&token);
    assert_eq!(issued["tier"], "enterprise", "{issued}");
    assert_eq!(issued["lic"], "LIC-I", "{issued}");
    assert_eq!(
        sidecar.v2("/v2/acme/app/tags/list", Some(&token)).status(),
        404,
        "the new token is accepted through the sidecar"
    );
    assert_eq!(
        sidecar
            .v2("/v2/acme/app/tags/list", Some(&issued_before))
            .status(),
        401,
        "a token of a revoked license is refused under a renamed license claim"
    );
    assert_eq!(sidecar.pid(), pid, "no restart");
    assert!(
        !sidecar.log().contains("only after a restart"),
        "an authority edit is not a restart-only change"
    );
}

/// The file is edited to an issuer whose Authority answers 500: the sidecar tries it (and
/// retries), and meanwhile the Authority in force keeps serving as before, its OpToks accepted
/// and the new issuer's refused; `/readyz` stays 200, and the admin `/readyz` says the reloaded
/// settings wait. When the new Authority answers, it takes over: its OpToks are accepted and
/// the old issuer's are refused.
#[test]
fn an_authority_that_cannot_serve_yet_does_not_take_over() {
    let stack = Stack::start();
    let sidecar = &stack.sidecar;
    let next = Authority::start();
    next.set_mode(Mode::Fail500);
    let (key, optok) = stack.client("kim", "enterprise", "LIC-K");
    let next_key = DpopKey::new();
    let next_optok = next.optok("lee", "enterprise", "LIC-L", Some(&next_key.thumbprint()));
    let scope = ["repository:acme/app:pull"];
    let old_ask = || outcome(sidecar.get_token(&scope, &optok, &key));
    let next_ask = || outcome(sidecar.get_token(&scope, &next_optok, &next_key));
    assert_eq!(old_ask(), ok());
    assert_eq!(next_ask(), refused(401, "invalid_optok"));

    let generation = sidecar.generation();
    let mut config = sidecar.config().clone();
    config.authority_issuer = next.issuer();
    sidecar.apply(&config);
    sidecar.wait_generation_above(generation);
    poll(
        TAKEOVER_DEADLINE,
        "the sidecar to try the new Authority twice",
        || (next.metadata_fetches() >= 2).then_some(()),
    );

    assert_eq!(old_ask(), ok(), "the Authority in force keeps serving");
    assert_eq!(next_ask(), refused(401, "invalid_optok"));
    let ready = client()
        .get(format!("{}/readyz", sidecar.url()))
        .send()
        .unwrap();
    assert_eq!(ready.status(), 200, "the Authority in force has its keys");
    let admin: Value = client()
        .get(format!("{}/readyz", sidecar.admin_url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        admin.to_string().contains(&format!(
            "reloaded settings for {} wait for their keys",
            next.issuer()
        )),
        "the admin /readyz says what waits: {admin}"
    );

    next.set_mode(Mode::Serve);
    poll(TAKEOVER_DEADLINE, "the new Authority to take over", || {
        (next_ask() == ok()).then_some(())
    });
    assert_eq!(
        old_ask(),
        refused(401, "invalid_optok"),
        "the old issuer is gone"
    );
}
