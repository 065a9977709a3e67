//! Surface B, the `/v2/` proxy: it lets through only what the token covers and only registry
//! routes. Tokens for one repository do not reach another (39, 53) or the catalog (41); path
//! tricks (46, 47, 48), foreign methods (52), cross-repository mounts (49), deletes with a push
//! token (51) and two `Authorization` fields (54) are answered by the sidecar and never reach
//! the registry. What is forwarded carries exactly one `Authorization` (54), `Location` points
//! at the configured host whatever `X-Forwarded-Host` says (55), a mount without `from` opens a
//! plain upload (50), and repositories stay isolated in the registry (57).
//!
//! Every test ends with [`Proxy::finish`]: the registry's own log holds none of the requests
//! the sidecar must refuse, and the sidecar's log holds neither the token nor the OpTok.

use crate::bed::raw;
use crate::common::*;
use crate::Bed;

/// Request fragments the registry must never log, whatever the test sent the sidecar.
const NEVER_UPSTREAM: [&str; 10] = [
    "_catalog",
    "victim/private/manifests",
    "victim/private/tags",
    "Acme",
    "%2",
    "..",
    "OPTIONS",
    "TRACE",
    "PROPFIND",
    "DELETE",
];

/// A bed and an `enterprise` caller's registry token for `acme/app` (pull, push),
/// `acme/case54` (pull) and `acme/case55` (pull, push).
struct Proxy {
    bed: Bed,
    optok: String,
    token: String,
    bearer: String,
}

impl Proxy {
    fn start() -> Proxy {
        let bed = Bed::start();
        let (key, optok) = bed.caller("enterprise");
        let token = bed.sidecar.token(
            &[
                "repository:acme/app:pull,push",
                "repository:acme/case54:pull",
                "repository:acme/case55:pull,push",
            ],
            &optok,
            &key,
        );
        let bearer = format!("Bearer {token}");
        Proxy {
            bed,
            optok,
            token,
            bearer,
        }
    }

    /// The `Authorization: Bearer <token>` header field.
    fn auth(&self) -> (&str, &str) {
        ("Authorization", self.bearer.as_str())
    }

    /// Sends each `(case, method, path)` with the token: refused locally with `expected`.
    fn refused(&self, rows: &[(&str, &str, &[u8])], expected: &[u16]) -> Vec<RawResponse> {
        rows.iter()
            .map(|(case, method, path)| {
                let request = raw(method, path, &[self.auth()], b"");
                self.bed.refused_locally(case, &request, expected)
            })
            .collect()
    }

    /// Sends each `(case, method, path)` with the token: refused locally with 401
    /// `insufficient_scope`.
    fn out_of_scope(&self, rows: &[(&str, &str, &[u8])]) {
        for (response, (case, _, _)) in self.refused(rows, &[401]).iter().zip(rows) {
            let challenge = response.header("www-authenticate").unwrap_or_default();
            assert!(
                challenge.contains(r#"error="insufficient_scope""#),
                "security case {case}: 401 insufficient_scope, got {:?}",
                response.headers
            );
        }
    }

    /// The registry's log agrees that nothing refused arrived; no secret in the sidecar's log.
    fn finish(&self) {
        self.bed.registry_never_saw("39-53", &NEVER_UPSTREAM);
        self.bed
            .sidecar
            .assert_log_free_of(&[&self.token, &self.optok]);
    }
}

/// Baseline for this surface: the token works and its requests are forwarded (the tap sees
/// them, the registry answers NAME_UNKNOWN).
#[test]
fn baseline_a_covered_request_is_forwarded() {
    let p = Proxy::start();
    let tags = p.bed.sidecar.v2("/v2/acme/app/tags/list", Some(&p.token));
    assert_eq!(
        tags.status(),
        404,
        "baseline: the registry answered NAME_UNKNOWN for acme/app"
    );
    assert_eq!(
        p.bed.tap.heads_for("/v2/acme/app/tags/list").len(),
        1,
        "baseline: the tap saw it"
    );
    p.finish();
}

/// 39: a token for E used on V → 401 `insufficient_scope`, not forwarded.
#[test]
fn case39_a_token_for_one_repository_is_refused_on_another() {
    let p = Proxy::start();
    p.out_of_scope(&[("39 GET on V", "GET", b"/v2/victim/private/manifests/latest")]);
    p.finish();
}

/// 41: the catalog without `registry:catalog:*` → 401 `insufficient_scope`; with
/// `n=100000000` → refused too; neither forwarded.
#[test]
fn case41_the_catalog_is_refused() {
    let p = Proxy::start();
    p.out_of_scope(&[(
        "41 catalog without registry:catalog:*",
        "GET",
        b"/v2/_catalog",
    )]);
    p.refused(
        &[(
            "41 catalog with n=100000000",
            "GET",
            b"/v2/_catalog?n=100000000",
        )],
        &[400, 401, 403],
    );
    p.finish();
}

/// 46: a `..` path → 400, not forwarded.
#[test]
fn case46_dot_dot_paths_are_refused() {
    let p = Proxy::start();
    p.refused(
        &[(
            "46 dot-dot",
            "GET",
            b"/v2/acme/app/../../victim/private/manifests/latest",
        )],
        &[400],
    );
    p.finish();
}

/// 47: encoded `/` and `.` in or after the name, double-encoded too → 400, not forwarded.
#[test]
fn case47_encoded_separators_are_refused() {
    let p = Proxy::start();
    p.refused(
        &[
            (
                "47 %2F in the name",
                "GET",
                b"/v2/acme%2Fapp/manifests/latest",
            ),
            (
                "47 %2F.. after the name",
                "GET",
                b"/v2/acme/app%2F..%2Fvictim/private/manifests/latest",
            ),
            (
                "47 %2e%2e segments",
                "GET",
                b"/v2/acme/app/%2e%2e/%2e%2e/victim/private/manifests/latest",
            ),
            (
                "47 double-encoded %252F",
                "GET",
                b"/v2/acme%252Fapp/manifests/latest",
            ),
        ],
        &[400],
    );
    p.finish();
}

/// 48: upper case, an empty segment, backslashes, `%00`, a non-ASCII name, a `.` segment
/// → 400, not forwarded.
#[test]
fn case48_names_outside_the_grammar_are_refused() {
    let p = Proxy::start();
    p.refused(
        &[
            ("48 upper case", "GET", b"/v2/Acme/app/manifests/latest"),
            ("48 empty segment", "GET", b"/v2/acme//app/manifests/latest"),
            (
                "48 backslash",
                "GET",
                b"/v2/acme/app\\..\\..\\victim/private/manifests/latest",
            ),
            (
                "48 backslash in the name",
                "GET",
                b"/v2/acme\\app/manifests/latest",
            ),
            (
                "48 %00 in the name",
                "GET",
                b"/v2/acme/ap%00p/manifests/latest",
            ),
            (
                "48 non-ASCII name",
                "GET",
                "/v2/acme/\u{e4}pp/manifests/latest".as_bytes(),
            ),
            ("48 dot segment", "GET", b"/v2/acme/./app/manifests/latest"),
        ],
        &[400],
    );
    p.finish();
}

/// 49: a cross-repository mount from V with an `acme/app` push token, in the query (401/403)
/// or in a form body (400/403), is not forwarded.
#[test]
fn case49_a_mount_from_another_repository_is_refused() {
    let p = Proxy::start();
    let digest = p.bed.seed_victim_blob();
    let mount = format!("/v2/acme/app/blobs/uploads/?mount={digest}&from=victim/private");
    p.refused(
        &[("49 mount from V", "POST", mount.as_bytes())],
        &[401, 403],
    );
    let form = format!("mount={digest}&from=victim/private");
    let form_headers = [
        p.auth(),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    p.bed.refused_locally(
        "49 mount in a form body",
        &raw(
            "POST",
            b"/v2/acme/app/blobs/uploads/",
            &form_headers,
            form.as_bytes(),
        ),
        &[400, 403],
    );
    p.finish();
}

/// 50: a mount of a blob that exists only in V, without `from` → a plain upload session
/// (202), never a mount (201).
#[test]
fn case50_a_mount_without_from_opens_a_plain_upload() {
    let p = Proxy::start();
    let digest = p.bed.seed_victim_blob();
    let bare_mount = format!(
        "{}/v2/acme/app/blobs/uploads/?mount={digest}",
        p.bed.sidecar.url()
    );
    let opened = client()
        .post(bare_mount)
        .bearer_auth(&p.token)
        .send()
        .unwrap();
    assert_eq!(
        opened.status(),
        202,
        "security case 50: a plain upload session, never a mount (201)"
    );
    p.finish();
}

/// 51: DELETE with a `pull,push` token → 401/403, not forwarded.
#[test]
fn case51_delete_with_a_push_token_is_refused() {
    let p = Proxy::start();
    let digest = p.bed.seed_victim_blob();
    let delete = format!("/v2/acme/app/manifests/{digest}");
    p.refused(
        &[("51 DELETE with pull,push", "DELETE", delete.as_bytes())],
        &[401, 403],
    );
    p.finish();
}

/// 52: methods Distribution does not serve, and a lower-case `get` → 405, not forwarded.
#[test]
fn case52_foreign_methods_are_refused() {
    let p = Proxy::start();
    for method in ["OPTIONS", "TRACE", "PROPFIND", "get"] {
        let case = format!("52 {method}");
        p.refused(&[(&case, method, b"/v2/acme/app/manifests/latest")], &[405]);
    }
    p.finish();
}

/// 53: HEAD (no existence oracle) and tags/list on V with a token for E → 401
/// `insufficient_scope`, not forwarded.
#[test]
fn case53_no_existence_oracle_on_another_repository() {
    let p = Proxy::start();
    p.out_of_scope(&[
        (
            "53 HEAD on V",
            "HEAD",
            b"/v2/victim/private/manifests/latest",
        ),
        ("53 tags/list on V", "GET", b"/v2/victim/private/tags/list"),
    ]);
    p.finish();
}

/// 54: two `Authorization` fields are refused (400/401) and not forwarded; a forwarded request
/// carries exactly one `Authorization` upstream, and only it reaches the registry.
#[test]
fn case54_exactly_one_authorization_goes_upstream() {
    let p = Proxy::start();
    let forged = [p.auth(), ("Authorization", "Bearer forged.token.value")];
    p.bed.refused_locally(
        "54 second Authorization",
        &raw("GET", b"/v2/acme/case54/tags/list", &forged, b""),
        &[400, 401],
    );
    let forwarded = p
        .bed
        .sidecar
        .v2("/v2/acme/case54/tags/list", Some(&p.token));
    assert_eq!(
        forwarded.status(),
        404,
        "security case 54: forwarded, NAME_UNKNOWN from the registry"
    );
    let heads = p.bed.tap.heads_for("/v2/acme/case54/tags/list");
    assert_eq!(
        heads.len(),
        1,
        "security case 54: one request upstream: {heads:?}"
    );
    let authorizations: Vec<&str> = heads[0]
        .lines()
        .filter_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.trim())
        })
        .collect();
    assert_eq!(
        authorizations,
        [p.bearer.as_str()],
        "security case 54: exactly one Authorization header upstream"
    );
    p.finish();
    assert_eq!(
        p.bed.registry.requests_for("case54/tags/list"),
        1,
        "security case 54: only the well-formed request reached the registry"
    );
}

/// 55: the client's forwarding headers (`X-Forwarded-Host`, `Forwarded`, `X-Forwarded-Proto`)
/// do not steer `Location`, and do not reach the registry.
#[test]
fn case55_forwarding_headers_do_not_steer_location() {
    let p = Proxy::start();
    let sidecar = &p.bed.sidecar;
    let evil = [
        p.auth(),
        ("X-Forwarded-Host", "evil.example"),
        ("Forwarded", "host=evil.example;proto=https"),
        ("X-Forwarded-Proto", "https"),
    ];
    let started = raw_http(
        &sidecar.addr(),
        &raw("POST", b"/v2/acme/case55/blobs/uploads/", &evil, b""),
    );
    assert_eq!(
        started.status,
        202,
        "security case 55: upload session: {}",
        started.text()
    );
    let location = started.header("location").unwrap_or_default();
    assert!(
        location.starts_with(&format!("{}/v2/acme/case55/blobs/uploads/", sidecar.url()))
            || location.starts_with("/v2/acme/case55/blobs/uploads/"),
        "security case 55: Location uses the configured public host, got {location:?}"
    );
    let upstream = p.bed.tap.heads_for("/v2/acme/case55/blobs/uploads/");
    assert!(
        !upstream.is_empty() && upstream.iter().all(|h| !h.contains("evil.example")),
        "security case 55: evil.example reached the registry: {upstream:?}"
    );
    p.finish();
}

/// 57: the registry keeps repositories apart: V's blob is not readable through E (404).
#[test]
fn case57_repositories_stay_isolated() {
    let p = Proxy::start();
    let digest = p.bed.seed_victim_blob();
    let blob = p
        .bed
        .sidecar
        .v2(&format!("/v2/acme/app/blobs/{digest}"), Some(&p.token));
    assert_eq!(
        blob.status(),
        404,
        "security case 57: V's blob is not readable through E"
    );
    p.finish();
}
