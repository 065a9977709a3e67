//! The edge cache (docs/cache.md; docs/security.md, cases 87–91): cached bytes are shared by every
//! caller, so each rule is shown to hold against a second tenant. A blob is seeded straight into
//! the registry for `acme/a` only; the cache is warmed through the sidecar with a token for
//! `acme/a`; then the cases try to read it as someone else, under another key, with a token that no
//! longer holds, or with ranges. The tap shows what went upstream (a hit never does).
//! The per-customer variant of case 87 starts the namespaces bed instead (two customers under
//! `customers/${license|lower}/**`) and pushes and pulls through the sidecar.

use crate::common::cache::*;
use crate::common::limits::with_pull_limit;
use crate::common::*;
use crate::namespaces::Namespaces;
use crate::Bed;

const SECRET: &[u8] = b"the secret layer of acme/a, cached";

/// A bed with [`SECRET`] seeded into `acme/a` and cached through the sidecar.
struct Warm {
    bed: Bed,
    blob: String,
    /// `/v2/acme/a/blobs/<blob>`
    path_a: String,
    token_a: String,
}

impl Warm {
    fn start() -> Warm {
        let bed = Bed::start();
        let blob = seed_blob(&bed.registry, "acme/a", SECRET);
        let token_a = token(&bed, "LIC-1", &["repository:acme/a:pull"]);
        let path_a = format!("/v2/acme/a/blobs/{blob}");
        let warm = Warm {
            bed,
            blob,
            path_a,
            token_a,
        };
        for _ in 0..2 {
            assert_eq!(
                warm.get(&warm.path_a.clone(), &warm.token_a.clone(), &[])
                    .status,
                200
            );
        }
        assert_eq!(
            warm.upstream(&warm.path_a),
            1,
            "warming: the second GET was not a hit"
        );
        warm
    }

    fn get(&self, path: &str, token: &str, headers: &[(&str, &str)]) -> RawResponse {
        request(&self.bed.sidecar.url(), "GET", path, Some(token), headers)
    }

    fn upstream(&self, fragment: &str) -> usize {
        self.bed.tap.heads_for(fragment).len()
    }
}

/// A registry token of plan `enterprise` for `license` and `scopes`.
fn token(bed: &Bed, license: &str, scopes: &[&str]) -> String {
    let key = DpopKey::new();
    let optok = bed
        .authority
        .optok("alice", "enterprise", license, Some(&key.thumbprint()));
    bed.sidecar.token(scopes, &optok, &key)
}

fn leaks(response: &RawResponse) -> bool {
    response.body.windows(SECRET.len()).any(|w| w == SECRET)
}

/// 87: the blob cached for `acme/a`, asked for `acme/b` (whose token allows only B) where the
/// registry does not link it → the registry's 404, never the cached bytes; once the registry
/// links it into B, B gets it (and from then on from the cache).
#[test]
fn case87_a_blob_cached_for_one_repository_is_not_served_for_another() {
    let w = Warm::start();
    let token_b = token(&w.bed, "LIC-2", &["repository:acme/b:pull"]);
    let path_b = format!("/v2/acme/b/blobs/{}", w.blob);
    let refused = w.get(&path_b, &token_b, &[]);
    assert_eq!(refused.status, 404, "security case 87: {}", refused.text());
    assert!(!leaks(&refused), "security case 87: A's bytes reached B");
    assert_eq!(
        w.upstream(&path_b),
        1,
        "security case 87: the registry was not asked for B"
    );

    seed_blob(&w.bed.registry, "acme/b", SECRET);
    assert_eq!(w.get(&path_b, &token_b, &[]).status, 200);
    assert_eq!(w.get(&path_b, &token_b, &[]).status, 200);
    assert_eq!(
        w.upstream(&path_b),
        2,
        "B's second GET is a hit once the registry said 200"
    );
}

/// Customer A's private layer in the per-customer case.
const LAYER_A: &[u8] = b"customer A's private layer, pushed and pulled through the sidecar";
/// The image config of that case (the same bytes for both customers).
const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}"#;

/// True when `bytes` occur anywhere in `body`.
fn holds(body: &[u8], bytes: &[u8]) -> bool {
    body.windows(bytes.len()).any(|w| w == bytes)
}

/// Pushes [`CONFIG`], [`LAYER_A`] and a manifest of them as `repo:v1` through the sidecar with
/// `token`; returns the layer's and the manifest's digest and the manifest's bytes.
fn push_image(base: &str, repo: &str, token: &str) -> (String, String, Vec<u8>) {
    crate::common::cache::push_image(base, repo, "v1", Some(token), CONFIG, LAYER_A)
}

/// 87 with per-customer namespaces (docs/namespaces.md): two customers on the plan
/// `customers/${license|lower}/**`. A pushes an image to `customers/a/app` and pulls its layer
/// and manifest twice (the second time from the cache). B, whose token covers `customers/b/**`
/// only, asks for the same digests under `customers/a/app` (refused before the cache, never
/// forwarded) and under `customers/b/app`, where the registry has not linked them (the
/// registry's 404, each request forwarded): no byte of A's objects reaches B. Once B has
/// pushed the same bytes itself, the registry says 200 for B and B is served, the next time
/// from the cache.
#[test]
fn case87_a_customers_cached_object_never_reaches_another_customer() {
    let ns = Namespaces::start();
    let base = ns.sidecar.url();
    let granted = |license: &str, scopes: &[&str]| {
        let optok = ns.optok("user", "customers", Some(license), serde_json::json!({}));
        let reply = ns.token(&optok, scopes);
        reply.expect(200, "87");
        (reply.access(), reply.token().to_string())
    };
    let (access_a, token_a) = granted("A", &["repository:customers/a/app:pull,push"]);
    assert_eq!(access_a[0].0, "customers/a/app");
    let (access_b, token_b) = granted(
        "B",
        &[
            "repository:customers/b/app:pull,push",
            "repository:customers/a/app:pull",
        ],
    );
    assert_eq!(
        access_b.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["customers/b/app"],
        "security case 87: B's token covers customers/b/** only"
    );

    let (layer, manifest, manifest_bytes) = push_image(&base, "customers/a/app", &token_a);
    let paths = |repo: &str| {
        [
            (format!("/v2/{repo}/blobs/{layer}"), LAYER_A.to_vec()),
            (
                format!("/v2/{repo}/manifests/{manifest}"),
                manifest_bytes.clone(),
            ),
        ]
    };
    let accept = [("Accept", ACCEPT)];
    let upstream = |path: &str| ns.tap.heads_for(path).len();
    let cache_requests = |labels: &[(&str, &str)]| {
        ns.sidecar
            .metric("registry_token_cache_requests_total", labels)
    };
    let hits = || cache_requests(&[("result", "hit")]);
    for (path, bytes) in paths("customers/a/app") {
        for _ in 0..2 {
            let pulled = request(&base, "GET", &path, Some(&token_a), &accept);
            assert_eq!(
                (pulled.status, &pulled.body),
                (200, &bytes),
                "A pulls {path}"
            );
        }
        assert_eq!(upstream(&path), 1, "A's second GET of {path} is a hit");
    }

    // B under A's name: refused by the token check, before the cache and the registry.
    // Each way B asks for an object (GET, HEAD, a range): the `expected` status, none of A's
    // bytes.
    const WAYS: [(&str, Option<&str>); 3] =
        [("GET", None), ("HEAD", None), ("GET", Some("bytes=0-9"))];
    let ask_as_b = |method: &str, path: &str, range: Option<&str>, bytes: &[u8], expected| {
        let mut headers = accept.to_vec();
        headers.extend(range.map(|r| ("Range", r)));
        let answer = request(&base, method, path, Some(&token_b), &headers);
        assert_eq!(
            answer.status,
            expected,
            "security case 87: B {method} {path} {range:?}: {}",
            answer.text()
        );
        assert!(
            !holds(&answer.body, bytes) && !holds(&answer.body, &bytes[..10]),
            "security case 87: A's bytes reached B"
        );
    };
    let (hits_before, looked_up) = (hits(), cache_requests(&[]));
    for (path, bytes) in paths("customers/a/app") {
        for (method, range) in WAYS {
            ask_as_b(method, &path, range, &bytes, 401);
        }
        assert_eq!(
            upstream(&path),
            1,
            "security case 87: B's refusal was forwarded"
        );
    }
    assert_eq!(
        cache_requests(&[]),
        looked_up,
        "security case 87: B's refusal reached the cache"
    );

    // B under its own name, where the registry has not linked A's objects: the registry's 404.
    for (path, bytes) in paths("customers/b/app") {
        for (method, range) in WAYS {
            let before = upstream(&path);
            ask_as_b(method, &path, range, &bytes, 404);
            assert_eq!(
                upstream(&path),
                before + 1,
                "security case 87: B {method} {path} {range:?} was not asked of the registry"
            );
        }
    }
    assert_eq!(
        hits(),
        hits_before,
        "security case 87: B was served from the cache"
    );

    // B pushes the same bytes: the registry links them into B and says 200 for B; the first
    // GET is the registry's, the second the cache's.
    let (layer_b, manifest_b, _) = push_image(&base, "customers/b/app", &token_b);
    assert_eq!((&layer_b, &manifest_b), (&layer, &manifest));
    for (path, bytes) in paths("customers/b/app") {
        let before = upstream(&path);
        for _ in 0..2 {
            let pulled = request(&base, "GET", &path, Some(&token_b), &accept);
            assert_eq!(
                (pulled.status, &pulled.body),
                (200, &bytes),
                "B pulls {path}"
            );
        }
        assert_eq!(
            upstream(&path),
            before + 1,
            "B's first GET of {path} goes to the registry, the second is a hit"
        );
    }
    assert_eq!(hits(), hits_before + 2.0, "B's second GETs are hits");
}

/// 88: the registry answers a digest with other bytes (its blob file overwritten) → the client
/// gets what was sent, nothing is stored (the next GET goes upstream again), the integrity
/// counter moves.
#[test]
fn case88_wrong_bytes_are_never_stored() {
    let bed = Bed::start();
    let original = b"original bytes 0123456789";
    let blob = seed_blob(&bed.registry, "acme/a", original);
    let poisoned = b"poisoned bytes 0123456789";
    std::fs::write(blob_file(&bed.registry, &blob), poisoned).unwrap();
    let token_a = token(&bed, "LIC-1", &["repository:acme/a:pull"]);
    let path = format!("/v2/acme/a/blobs/{blob}");
    let url = bed.sidecar.url();
    let first = request(&url, "GET", &path, Some(&token_a), &[]);
    assert_eq!((first.status, first.body.as_slice()), (200, &poisoned[..]));
    let failures = bed
        .sidecar
        .metric("registry_token_cache_integrity_failures_total", &[]);
    assert_eq!(
        failures, 1.0,
        "security case 88: the integrity counter did not move"
    );
    request(&url, "GET", &path, Some(&token_a), &[]);
    assert_eq!(
        bed.tap.heads_for(&path).len(),
        2,
        "security case 88: poisoned bytes were stored and served"
    );
}

/// 89: the cached object under other spellings of its key (`SHA256:`, upper-case hex, the
/// manifest route, `sha512:` of the same bytes) is never a hit, for B or for A itself; encoded
/// names are refused before any lookup.
#[test]
fn case89_key_confusion_never_reaches_an_entry() {
    let w = Warm::start();
    let hex = w.blob.strip_prefix("sha256:").unwrap().to_string();
    let sha512 = {
        let d = openssl::hash::hash(openssl::hash::MessageDigest::sha512(), SECRET).unwrap();
        format!("sha512:{}", crate::common::hex(&d))
    };
    let token_b = token(&w.bed, "LIC-2", &["repository:acme/b:pull"]);
    let spellings = [
        format!("SHA256:{hex}"),
        format!("sha256:{}", hex.to_uppercase()),
        sha512,
        w.blob.clone(),
    ];
    for (repo, token) in [("acme/b", &token_b), ("acme/a", &w.token_a)] {
        for (route, reference) in spellings
            .iter()
            .map(|s| ("blobs", s))
            .chain([("manifests", &w.blob)])
        {
            if repo == "acme/a" && route == "blobs" && *reference == w.blob {
                continue; // the key itself: a hit, shown by Warm::start
            }
            let path = format!("/v2/{repo}/{route}/{reference}");
            let response = w.get(&path, token, &[("Accept", ACCEPT)]);
            assert!(
                !(repo == "acme/b" && leaks(&response)),
                "security case 89: {path} served A's bytes to B"
            );
            // Refused by the route grammar (400), or forwarded: never answered by the cache.
            let forwarded = w.upstream(&path) == 1;
            assert!(
                forwarded || response.status == 400,
                "security case 89: {path} was answered by the cache ({})",
                response.status
            );
        }
    }
    for path in [
        format!("/v2/acme%2Fb/blobs/{}", w.blob),
        format!("/v2/acme/b%2F..%2Fa/blobs/{}", w.blob),
        format!("/v2/acme/b/blobs/sha256%3A{hex}"),
    ] {
        let response = w.get(&path, &token_b, &[]);
        assert_eq!(response.status, 400, "security case 89: {path}");
        assert!(!leaks(&response), "security case 89: {path}");
    }
}

/// 90: a revoked license, an expired token, a token without `pull`, no token, and a plan over
/// its pull limit → refused even though the object is cached (and never forwarded).
#[test]
fn case90_authorisation_comes_before_the_cache() {
    let w = Warm::start();
    let (manifest, _) = seed_manifest(&w.bed.registry, "acme/a", "v1", b"layer");
    let manifest_path = format!("/v2/acme/a/manifests/{manifest}");
    let accept = [("Accept", ACCEPT)];
    let revoked = token(&w.bed, "LIC-9", &["repository:acme/a:pull"]);
    for _ in 0..2 {
        assert_eq!(w.get(&manifest_path, &w.token_a, &accept).status, 200);
        assert_eq!(w.get(&w.path_a, &revoked, &[]).status, 200);
    }
    let mut config = w.bed.sidecar.config().clone();
    config.revoked_licenses.push("LIC-9".into());
    with_pull_limit(&mut config, 1);
    let generation = w.bed.sidecar.generation();
    w.bed.sidecar.apply(&config);
    w.bed.sidecar.wait_generation_above(generation);

    let keys_dir = w.bed.sidecar.config().keys_dir.clone();
    let expired = resign(&keys_dir, &w.token_a, |claims| {
        let then = now() - 3600;
        claims["exp"] = (then + 300).into();
        claims["iat"] = then.into();
        claims["nbf"] = then.into();
    });
    let push_only = token(&w.bed, "LIC-1", &["repository:acme/a:push"]);
    let before = w.upstream(&w.path_a);
    for (case, token) in [
        ("revoked license", Some(revoked.as_str())),
        ("expired token", Some(expired.as_str())),
        ("token without pull", Some(push_only.as_str())),
        ("no token", None),
    ] {
        let response = request(&w.bed.sidecar.url(), "GET", &w.path_a, token, &[]);
        assert_eq!(
            response.status,
            401,
            "security case 90 {case}: {}",
            response.text()
        );
        assert!(!leaks(&response), "security case 90 {case}");
    }
    assert_eq!(
        w.upstream(&w.path_a),
        before,
        "security case 90: a refusal was forwarded"
    );

    let key = DpopKey::new();
    let optok = w
        .bed
        .authority
        .optok("bob", "limited", "LIC-L", Some(&key.thumbprint()));
    let limited = w
        .bed
        .sidecar
        .token(&["repository:acme/a:pull"], &optok, &key);
    assert_eq!(w.get(&manifest_path, &limited, &accept).status, 200);
    let over = w.get(&manifest_path, &limited, &accept);
    assert_eq!(
        over.status, 429,
        "security case 90: a hit is counted against limits.pulls"
    );
    assert_eq!(
        w.upstream(&manifest_path),
        1,
        "the manifest was served from the cache"
    );
}

/// 91: hundreds of ranges, a suffix range, a range past the end on a cached blob → the whole
/// object once, one range, or 416; never a multipart answer, never the registry.
#[test]
fn case91_range_abuse_is_one_range_or_416() {
    let w = Warm::start();
    let len = SECRET.len();
    let many: Vec<String> = (0..400)
        .map(|i| format!("{}-{}", i % len, i % len))
        .collect();
    let many = format!("bytes={}", many.join(","));
    let whole = w.get(&w.path_a, &w.token_a, &[("Range", &many)]);
    assert_eq!(whole.status, 200, "security case 91: many ranges");
    assert_eq!(whole.body, SECRET, "security case 91: many ranges");
    let content_type = whole.header("content-type").unwrap_or_default();
    assert!(
        !content_type.contains("multipart"),
        "security case 91: {content_type}"
    );

    let last = w.get(&w.path_a, &w.token_a, &[("Range", "bytes=-1")]);
    assert_eq!(
        (last.status, last.body.as_slice()),
        (206, &SECRET[len - 1..])
    );
    let past = w.get(
        &w.path_a,
        &w.token_a,
        &[("Range", &format!("bytes={len}-"))],
    );
    assert_eq!(past.status, 416, "security case 91: past the end");
    assert!(!leaks(&past));
    let huge = w.get(
        &w.path_a,
        &w.token_a,
        &[("Range", "bytes=0-99999999999999999999")],
    );
    assert_eq!((huge.status, huge.body.as_slice()), (200, SECRET));
    assert_eq!(
        w.upstream(&w.path_a),
        1,
        "security case 91: a range went upstream"
    );
}
