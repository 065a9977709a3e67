//! Stock clients, for real (issue 12 item 6): the docker CLI with a docker daemon the test
//! starts, and containerd's `ctr` with a containerd the test starts, log in, push and pull
//! through the sidecar with the OpTok as the Basic-auth password (`senderConstraint: none`:
//! neither can make a DPoP proof), and say why when the plan refuses a push (docker prints the
//! realm's sentence; ctr its status, and the sentence under `--debug`).
//! The README's "Stock clients" section shows these commands.
//!
//! Authority: the real `oidc-provider` (common::oidc): the OpToks are its unbound
//! client-credentials tokens, what `get-token.mjs` without `--dpop-key` hands a stock client.

mod common;

use base64::Engine;
use common::containerd::{rootfs_layout, Containerd};
use common::dockerd::{rootfs_tar, Dockerd};
use common::oidc::{ENTERPRISE, REVOKED};
use common::*;

/// A stack on the provider whose realm takes an unbound OpTok as the Basic password (plans
/// as in `SidecarConfig::new`: `enterprise` may pull and push `acme/*`, nothing else).
fn stock_stack() -> ProviderStack {
    Stack::on_provider_with(|config| config.sender_constraint = "none".into())
}

/// Standard output and error of a command, together: clients print refusals on either.
fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Requests the sidecar answered from its edge cache so far.
fn cache_hits(sidecar: &Sidecar) -> f64 {
    sidecar.metric("registry_token_cache_requests_total", &[("result", "hit")])
}

/// The digest the sidecar serves for `name:tag`, asked with a token the realm issued for the
/// OpTok as Basic password (the way the clients above ask).
fn served_digest(sidecar: &Sidecar, optok: &str, name: &str, tag: &str) -> String {
    let http = client();
    let response = http
        .get(sidecar.realm())
        .query(&[
            ("service", common::sidecar::SERVICE),
            ("scope", &format!("repository:{name}:pull")),
        ])
        .basic_auth("x", Some(optok))
        .send()
        .expect("GET /token");
    assert_eq!(response.status(), 200, "GET /token");
    let body: serde_json::Value = response.json().unwrap();
    let token = body["token"].as_str().expect("a token");
    let response = http
        .get(format!("{}/v2/{name}/manifests/{tag}", sidecar.url()))
        .bearer_auth(token)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .expect("GET manifest");
    assert_eq!(response.status(), 200, "GET /v2/{name}/manifests/{tag}");
    sha256_digest(&response.bytes().unwrap())
}

/// The docker CLI, as a user types it: `docker login HOST -u x --password-stdin` with the
/// provider's OpTok, `docker push` of an image made by `docker import` of a tar, `docker rmi`, `docker
/// pull` of the same image (same image ID), then `docker push` to a repository the plan does
/// not grant fails with the realm's sentence, and a login with a revoked license fails with
/// the realm's sentence too. Neither the OpTok nor the Basic credentials reach the log.
#[test]
fn docker_cli_logs_in_pushes_pulls_and_reads_a_refusal() {
    let dockerd = Dockerd::start();
    let stack = stock_stack();
    let host = stack.sidecar.addr();
    let reference = format!("{host}/acme/app:v1");
    let work = tempfile::tempdir().unwrap();
    let tar = rootfs_tar(
        work.path(),
        &format!("stock clients {}\n", rand::random::<u64>()),
    );
    dockerd.docker_ok(&["import", tar.to_str().unwrap(), &reference], None);
    let inspect_id = ["image", "inspect", "--format", "{{.Id}}", &reference];
    let id = dockerd.docker_ok(&inspect_id, None);

    let optok = stack.authority.optok(&ENTERPRISE, None);
    let login = dockerd.docker_ok(
        &["login", &host, "-u", "x", "--password-stdin"],
        Some(&optok),
    );
    assert!(login.contains("Login Succeeded"), "{login}");
    dockerd.docker_ok(&["push", &reference], None);
    dockerd.docker_ok(&["rmi", &reference], None);
    assert!(
        !dockerd.docker(&inspect_id, None).status.success(),
        "the image is gone before the pull"
    );
    dockerd.docker_ok(&["pull", &reference], None);
    assert_eq!(
        dockerd.docker_ok(&inspect_id, None),
        id,
        "the pulled image is the pushed one"
    );
    // Again, through the sidecar's warm edge cache (docs/cache.md): the same image.
    let before = cache_hits(&stack.sidecar);
    dockerd.docker_ok(&["rmi", &reference], None);
    dockerd.docker_ok(&["pull", &reference], None);
    assert_eq!(
        dockerd.docker_ok(&inspect_id, None),
        id,
        "the image pulled through the warm cache is the pushed one"
    );
    assert!(
        cache_hits(&stack.sidecar) > before,
        "the second pull was served from the cache"
    );

    let denied = format!("{host}/other/app:v1");
    dockerd.docker_ok(&["tag", &reference, &denied], None);
    let push = dockerd.docker(&["push", &denied], None);
    let text = said(&push);
    assert!(!push.status.success(), "a push outside the plan: {text}");
    assert!(
        text.contains("denied: the plan grants none of the requested scopes"),
        "docker prints the realm's sentence: {text}"
    );

    let revoked = stack.authority.optok(&REVOKED, None);
    let login = dockerd.docker(
        &["login", &host, "-u", "x", "--password-stdin"],
        Some(&revoked),
    );
    let text = said(&login);
    assert!(!login.status.success(), "a revoked license logs in: {text}");
    assert!(
        text.contains("denied: this license has been revoked"),
        "docker prints the realm's sentence: {text}"
    );

    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x:{optok}"));
    stack
        .sidecar
        .assert_log_free_of(&[&optok, &revoked, &basic]);
}

/// containerd's `ctr`, as a user types it: `ctr images pull --plain-http --user x:OPTOK` of an
/// image skopeo pushed (unpacked by containerd, same manifest digest), `ctr images tag` and
/// `ctr images push --plain-http --user x:OPTOK` to another repository of the plan (served
/// back under the same digest), then a push to a repository the plan does not grant fails:
/// ctr 1.6 prints the token request's status, and under `--debug` the realm's sentence and
/// reason. The OpTok never reaches the sidecar's log nor ctr's debug output.
#[test]
fn ctr_pulls_pushes_and_reads_a_refusal() {
    let containerd = Containerd::start();
    let stack = stock_stack();
    let host = stack.sidecar.addr();
    let optok = stack.authority.optok(&ENTERPRISE, None);
    let user = format!("x:{optok}");
    let src = tempfile::tempdir().unwrap();
    let image = rootfs_layout(
        src.path(),
        "v1",
        &format!("ctr {}\n", rand::random::<u64>()),
    );
    let reference = format!("{host}/acme/app:v1");
    skopeo_ok(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &user,
        &format!("oci:{}:v1", src.path().display()),
        &format!("docker://{reference}"),
    ]);

    // Warm the sidecar's edge cache (docs/cache.md) with a skopeo pull: ctr's pull is served from
    // it.
    let warm = tempfile::tempdir().unwrap();
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &user,
        &format!("docker://{reference}"),
        &format!("oci:{}:v1", warm.path().display()),
    ]);
    let before = cache_hits(&stack.sidecar);
    containerd.ctr_ok(&[
        "images",
        "pull",
        "--plain-http",
        "--user",
        &user,
        &reference,
    ]);
    let listed = containerd.ctr_ok(&["images", "ls"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&reference) && l.contains(&image.manifest_digest)),
        "ctr holds the pushed manifest under its name: {listed}"
    );
    assert!(
        cache_hits(&stack.sidecar) > before,
        "ctr's pull was served from the warm cache"
    );

    let copy = format!("{host}/acme/copy:v1");
    containerd.ctr_ok(&["images", "tag", &reference, &copy]);
    containerd.ctr_ok(&["images", "push", "--plain-http", "--user", &user, &copy]);
    assert_eq!(
        served_digest(&stack.sidecar, &optok, "acme/copy", "v1"),
        image.manifest_digest,
        "the manifest ctr pushed is the one it pulled"
    );

    let denied = format!("{host}/other/app:v1");
    containerd.ctr_ok(&["images", "tag", &reference, &denied]);
    let push_args = ["images", "push", "--plain-http", "--user", &user, &denied];
    let push = containerd.ctr(&push_args);
    let text = said(&push);
    assert!(!push.status.success(), "a push outside the plan: {text}");
    // ctr 1.6 prints only the status of a refused token request...
    assert!(
        text.contains("failed to fetch oauth token: unexpected status: 403 Forbidden"),
        "ctr names the refusal: {text}"
    );
    // ...and the realm's body, sentence and reason, under `--debug`.
    let mut debug_push = vec!["--debug"];
    debug_push.extend_from_slice(&push_args);
    let debug = containerd.ctr(&debug_push);
    let text = said(&debug);
    assert!(!debug.status.success());
    assert!(
        text.contains("the plan grants none of the requested scopes")
            && text.contains("plan_denied"),
        "ctr --debug prints the realm's sentence and reason: {text}"
    );
    assert!(
        !text.contains(&optok),
        "ctr --debug does not print the OpTok"
    );
    stack.sidecar.assert_log_free_of(&[&optok]);
}
