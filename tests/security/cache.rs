//! The edge cache (SPEC 10, SECURITY 87–91): cached bytes are shared by every caller, so each
//! rule is shown to hold against a second tenant. A blob is seeded straight into the registry
//! for `acme/a` only; the cache is warmed through the sidecar with a token for `acme/a`; then
//! the cases try to read it as someone else, under another key, with a token that no longer
//! holds, or with ranges. The tap shows what went upstream (a hit never does).

use crate::common::cache::*;
use crate::common::limits::with_pull_limit;
use crate::common::*;
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
    assert_eq!(refused.status, 404, "SECURITY 87: {}", refused.text());
    assert!(!leaks(&refused), "SECURITY 87: A's bytes reached B");
    assert_eq!(
        w.upstream(&path_b),
        1,
        "SECURITY 87: the registry was not asked for B"
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
        "SECURITY 88: the integrity counter did not move"
    );
    request(&url, "GET", &path, Some(&token_a), &[]);
    assert_eq!(
        bed.tap.heads_for(&path).len(),
        2,
        "SECURITY 88: poisoned bytes were stored and served"
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
                "SECURITY 89: {path} served A's bytes to B"
            );
            // Refused by the route grammar (400), or forwarded: never answered by the cache.
            let forwarded = w.upstream(&path) == 1;
            assert!(
                forwarded || response.status == 400,
                "SECURITY 89: {path} was answered by the cache ({})",
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
        assert_eq!(response.status, 400, "SECURITY 89: {path}");
        assert!(!leaks(&response), "SECURITY 89: {path}");
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
            "SECURITY 90 {case}: {}",
            response.text()
        );
        assert!(!leaks(&response), "SECURITY 90 {case}");
    }
    assert_eq!(
        w.upstream(&w.path_a),
        before,
        "SECURITY 90: a refusal was forwarded"
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
        "SECURITY 90: a hit is counted against limits.pulls"
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
    assert_eq!(whole.status, 200, "SECURITY 91: many ranges");
    assert_eq!(whole.body, SECRET, "SECURITY 91: many ranges");
    let content_type = whole.header("content-type").unwrap_or_default();
    assert!(
        !content_type.contains("multipart"),
        "SECURITY 91: {content_type}"
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
    assert_eq!(past.status, 416, "SECURITY 91: past the end");
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
        "SECURITY 91: a range went upstream"
    );
}
