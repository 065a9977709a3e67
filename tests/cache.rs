//! The edge cache end to end (docs/cache.md): the real sidecar in front of the real registry (no
//! auth of its own, so the sidecar alone decides), with a [`Tap`] between them that records every
//! request sent upstream. "Served from the cache" is shown by the tap not seeing the request:
//! its record is taken before a byte reaches the registry, so it cannot race with the answer.
//!
//! ```text
//! reqwest ──▶ Sidecar (cache) ──▶ Tap ──▶ Registry (objects seeded straight into it)
//! ```
//!
//! The rules a tenant relies on (per-repository entries, verification, authorisation first,
//! key grammar, ranges) are security cases 87–91 (docs/security.md) in tests/security/cache.rs;
//! here: hits, headers, HEAD and Range, collapsed misses, DELETE (one replica and two on Redis),
//! reload.

mod common;

use std::sync::Arc;

use common::cache::*;
use common::redis::RedisServer;
use common::*;
use serde_json::json;

/// Authority + keys + registry + tap + sidecar. Fields drop in order.
struct Bed {
    sidecar: Sidecar,
    tap: Tap,
    registry: Registry,
    keys: Arc<Keys>,
    authority: Authority,
}

impl Bed {
    /// The default test config with `patch` merged over it (`cache`, `state`).
    fn start(patch: serde_json::Value) -> Bed {
        let authority = Authority::start();
        let keys = Keys::shared();
        let registry = Registry::start(None);
        let tap = Tap::start(&registry.addr());
        let mut config = SidecarConfig::new(&tap.url(), &authority.issuer(), keys.path());
        config.patch = patch;
        let sidecar = Sidecar::start(config);
        Bed {
            sidecar,
            tap,
            registry,
            keys,
            authority,
        }
    }

    /// A registry token of plan `enterprise` for `scopes`.
    fn token(&self, scopes: &[&str]) -> String {
        let key = DpopKey::new();
        let optok = self
            .authority
            .optok("alice", "enterprise", "LIC-1", Some(&key.thumbprint()));
        self.sidecar.token(scopes, &optok, &key)
    }

    fn get(&self, path: &str, token: &str, headers: &[(&str, &str)]) -> RawResponse {
        request(&self.sidecar.url(), "GET", path, Some(token), headers)
    }

    /// Requests sent upstream whose request line contains `fragment`.
    fn upstream(&self, fragment: &str) -> usize {
        self.tap.heads_for(fragment).len()
    }
}

/// The headers clients use, as a hit must repeat them.
const CLIENT_HEADERS: [&str; 5] = [
    "content-type",
    "content-length",
    "docker-content-digest",
    "etag",
    "docker-distribution-api-version",
];

/// A second GET of a manifest by digest and of a blob is answered without an upstream request,
/// with the registry's status, body and client headers; a manifest by tag always goes upstream.
#[test]
fn second_gets_are_served_without_the_registry() {
    let bed = Bed::start(json!({}));
    let (digest, manifest) = seed_manifest(&bed.registry, "acme/app", "v1", b"layer one");
    let blob = seed_blob(&bed.registry, "acme/app", b"a blob of acme/app");
    let token = bed.token(&["repository:acme/app:pull"]);
    let accept = [("Accept", ACCEPT)];
    for path in [
        format!("/v2/acme/app/manifests/{digest}"),
        format!("/v2/acme/app/blobs/{blob}"),
    ] {
        let first = bed.get(&path, &token, &accept);
        assert_eq!(first.status, 200, "{path}: {}", first.text());
        let second = bed.get(&path, &token, &accept);
        assert_eq!(
            bed.upstream(&path),
            1,
            "{path}: the second GET went upstream"
        );
        assert_eq!(second.status, 200);
        assert_eq!(second.body, first.body);
        for name in CLIENT_HEADERS {
            assert_eq!(second.header(name), first.header(name), "{path}: {name}");
            assert!(
                first.header(name).is_some(),
                "{path}: the registry sent no {name}"
            );
        }
    }
    assert_eq!(
        bed.get(&format!("/v2/acme/app/manifests/{digest}"), &token, &accept)
            .body,
        manifest
    );
    for _ in 0..2 {
        assert_eq!(
            bed.get("/v2/acme/app/manifests/v1", &token, &accept).status,
            200
        );
    }
    assert_eq!(
        bed.upstream("/v2/acme/app/manifests/v1"),
        2,
        "a tag is never cached"
    );
    let hits = bed
        .sidecar
        .metric("registry_token_cache_requests_total", &[("result", "hit")]);
    assert_eq!(hits, 3.0);
    assert!(
        bed.sidecar
            .metric("registry_token_cache_bytes", &[("tier", "memory")])
            > 0.0
    );
}

/// A manifest hit is served only to a client that accepts its media type, as the registry
/// refuses an OCI manifest to one that does not.
#[test]
fn manifest_hits_respect_accept() {
    let bed = Bed::start(json!({}));
    let (digest, _) = seed_manifest(&bed.registry, "acme/app", "v1", b"layer");
    let token = bed.token(&["repository:acme/app:pull"]);
    let path = format!("/v2/acme/app/manifests/{digest}");
    assert_eq!(bed.get(&path, &token, &[("Accept", ACCEPT)]).status, 200);
    let direct = request(&bed.registry.url(), "GET", &path, None, &[]);
    let through = bed.get(&path, &token, &[]);
    assert_eq!(through.status, direct.status, "{}", through.text());
    assert_eq!(
        bed.upstream(&path),
        2,
        "answered by the registry, not the cache"
    );
}

/// HEAD and single ranges on a hit are answered from the cache: 200 headers, 206 with
/// `Content-Range`, 416 past the end; the registry sees only the first GET.
#[test]
fn head_and_range_on_a_hit() {
    let bed = Bed::start(json!({}));
    let bytes: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let blob = seed_blob(&bed.registry, "acme/app", &bytes);
    let token = bed.token(&["repository:acme/app:pull"]);
    let path = format!("/v2/acme/app/blobs/{blob}");
    assert_eq!(bed.get(&path, &token, &[]).status, 200);

    let head = request(&bed.sidecar.url(), "HEAD", &path, Some(&token), &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1000"));
    assert_eq!(head.header("docker-content-digest"), Some(blob.as_str()));
    assert!(head.body.is_empty());

    let part = bed.get(&path, &token, &[("Range", "bytes=10-19")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &bytes[10..20]);
    assert_eq!(part.header("content-range"), Some("bytes 10-19/1000"));
    let suffix = bed.get(&path, &token, &[("Range", "bytes=-1")]);
    assert_eq!(
        (suffix.status, suffix.body.as_slice()),
        (206, &bytes[999..])
    );
    let past = bed.get(&path, &token, &[("Range", "bytes=5000-")]);
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), Some("bytes */1000"));
    assert_eq!(bed.upstream(&path), 1, "HEAD and Range went upstream");
}

/// 64 concurrent GETs of one uncached blob make one upstream request; all get its bytes.
#[test]
fn concurrent_misses_make_one_upstream_request() {
    let bed = Arc::new(Bed::start(json!({})));
    let bytes: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 253) as u8).collect();
    let blob = seed_blob(&bed.registry, "acme/app", &bytes);
    let token = bed.token(&["repository:acme/app:pull"]);
    let path = format!("/v2/acme/app/blobs/{blob}");
    let barrier = Arc::new(std::sync::Barrier::new(64));
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let (bed, token, path, barrier) =
                (bed.clone(), token.clone(), path.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                bed.get(&path, &token, &[])
            })
        })
        .collect();
    for thread in threads {
        let response = thread.join().unwrap();
        assert_eq!(response.status, 200);
        assert!(response.body == bytes, "a client got other bytes");
    }
    assert_eq!(
        bed.upstream(&path),
        1,
        "concurrent misses were not collapsed"
    );
}

/// A DELETE through the sidecar drops the entry before it answers: the next GET goes to the
/// registry, which no longer has the object.
#[test]
fn delete_invalidates() {
    let bed = Bed::start(json!({}));
    let (digest, _) = seed_manifest(&bed.registry, "customers/x/app", "v1", b"layer");
    let blob = seed_blob(&bed.registry, "customers/x/app", b"deleted blob");
    let token = bed.token(&["repository:customers/x/app:pull,delete"]);
    let accept = [("Accept", ACCEPT)];
    for path in [
        format!("/v2/customers/x/app/manifests/{digest}"),
        format!("/v2/customers/x/app/blobs/{blob}"),
    ] {
        assert_eq!(bed.get(&path, &token, &accept).status, 200);
        assert_eq!(bed.get(&path, &token, &accept).status, 200);
        assert_eq!(bed.upstream(&path), 1, "{path}: not cached");
        let deleted = request(&bed.sidecar.url(), "DELETE", &path, Some(&token), &[]);
        assert_eq!(deleted.status, 202, "{path}: {}", deleted.text());
        let after = bed.get(&path, &token, &accept);
        assert_eq!(after.status, 404, "{path}: served after DELETE");
    }
}

/// A reload that sets `cache.memory: 0` empties the memory tier: the next GET goes upstream.
#[test]
fn reload_applies_new_sizes() {
    let bed = Bed::start(json!({}));
    let blob = seed_blob(&bed.registry, "acme/app", b"reloaded");
    let token = bed.token(&["repository:acme/app:pull"]);
    let path = format!("/v2/acme/app/blobs/{blob}");
    bed.get(&path, &token, &[]);
    bed.get(&path, &token, &[]);
    assert_eq!(bed.upstream(&path), 1);
    let mut config = bed.sidecar.config().clone();
    config.patch = json!({"cache": {"memory": 0}});
    let generation = bed.sidecar.generation();
    bed.sidecar.apply(&config);
    bed.sidecar.wait_generation_above(generation);
    assert_eq!(bed.get(&path, &token, &[]).status, 200);
    assert_eq!(
        bed.upstream(&path),
        2,
        "served from a tier that was shrunk to 0"
    );
    let bytes = bed
        .sidecar
        .metric("registry_token_cache_bytes", &[("tier", "memory")]);
    assert_eq!(bytes, 0.0);
    let evicted = bed.sidecar.metric(
        "registry_token_cache_evictions_total",
        &[("tier", "memory")],
    );
    assert!(evicted >= 1.0);
}

/// Two replicas on one Redis: a DELETE through A drops the entry on B too, before A answers.
#[test]
fn delete_reaches_every_replica_on_redis() {
    let redis = RedisServer::start();
    let a = Bed::start(json!({"state": {"redis": {"url": redis.url(), "keyPrefix": "e2e:"}}}));
    let b = Sidecar::start(a.sidecar.config().clone());
    let listening = "listening for cache invalidations";
    common::poll(
        std::time::Duration::from_secs(10),
        "both replicas to listen for invalidations",
        || (a.sidecar.log().contains(listening) && b.log().contains(listening)).then_some(()),
    );
    let blob = seed_blob(&a.registry, "customers/x/app", b"deleted on every replica");
    let token = a.token(&["repository:customers/x/app:pull,delete"]);
    let path = format!("/v2/customers/x/app/blobs/{blob}");
    for replica in [&a.sidecar, &b] {
        for _ in 0..2 {
            assert_eq!(
                request(&replica.url(), "GET", &path, Some(&token), &[]).status,
                200
            );
        }
    }
    assert_eq!(a.upstream(&path), 2, "each replica fills once");
    let deleted = request(&a.sidecar.url(), "DELETE", &path, Some(&token), &[]);
    assert_eq!(deleted.status, 202);
    common::poll(
        std::time::Duration::from_secs(5),
        "B to drop the deleted blob",
        || (request(&b.url(), "GET", &path, Some(&token), &[]).status == 404).then_some(()),
    );
}

/// Every file under the disk tier is named by a digest (with `.meta`), or sits in `tmp/`.
fn disk_files(root: &std::path::Path) -> Vec<(String, u64)> {
    let name =
        regex::Regex::new(r"^(manifest|blob)/(sha256-[0-9a-f]{64}|sha512-[0-9a-f]{128})(\.meta)?$")
            .unwrap();
    let mut files = Vec::new();
    for dir in ["manifest", "blob", "tmp"] {
        let Ok(items) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for item in items {
            let item = item.unwrap();
            let relative = format!("{dir}/{}", item.file_name().to_string_lossy());
            assert!(
                dir == "tmp" || name.is_match(&relative),
                "a file not named by a digest: {relative}"
            );
            if dir != "tmp" && !relative.ends_with(".meta") {
                files.push((relative, item.metadata().unwrap().len()));
            }
        }
    }
    let top: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|i| i.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        top.iter()
            .all(|n| ["manifest", "blob", "tmp"].contains(&n.as_str())),
        "{top:?}"
    );
    files
}

/// The disk tier: objects above `maxObject` are served from files after a restart, the tier
/// stays under `size`, a file that no longer hashes to its name is dropped (the registry is
/// asked again, the client never gets the corrupted bytes), and no client-chosen name becomes
/// a file.
#[test]
fn disk_tier_survives_restart_stays_bounded_and_drops_corruption() {
    let disk = tempfile::tempdir().unwrap();
    let size = 64 << 10;
    let bed = Bed::start(json!({"cache": {"maxObject": "1KiB",
        "disk": {"path": disk.path(), "size": size}}}));
    let token = bed.token(&["repository:acme/app:pull"]);
    let blob = |n: u8| -> Vec<u8> { (0..20_000u32).map(|i| (i as u8) ^ n).collect() };
    let seeded: Vec<(String, Vec<u8>)> = (0..6)
        .map(|n| {
            let bytes = blob(n);
            (seed_blob(&bed.registry, "acme/app", &bytes), bytes)
        })
        .collect();
    let path = |digest: &str| format!("/v2/acme/app/blobs/{digest}");
    for (digest, bytes) in &seeded[..2] {
        for _ in 0..2 {
            assert_eq!(&bed.get(&path(digest), &token, &[]).body, bytes);
        }
        assert_eq!(
            bed.upstream(&path(digest)),
            1,
            "not served from the disk tier"
        );
    }
    // Names a client chose never reach the disk.
    let upper = seeded[0].0.to_uppercase().replace("SHA256", "sha256");
    bed.get(&path(&upper), &token, &[]);
    bed.get("/v2/acme/app/blobs/sha256:..%2F..%2Fescape", &token, &[]);
    assert_eq!(disk_files(disk.path()).len(), 2);

    let Bed {
        sidecar,
        tap,
        registry,
        keys,
        authority,
    } = bed;
    let config = sidecar.config().clone();
    drop(sidecar);
    let bed = Bed {
        sidecar: Sidecar::start(config),
        tap,
        registry,
        keys,
        authority,
    };
    let token = bed.token(&["repository:acme/app:pull"]);
    let (first, first_bytes) = &seeded[0];
    assert_eq!(&bed.get(&path(first), &token, &[]).body, first_bytes);
    assert_eq!(
        bed.upstream(&path(first)),
        1,
        "the disk tier did not survive the restart"
    );

    for (digest, bytes) in &seeded[2..] {
        assert_eq!(&bed.get(&path(digest), &token, &[]).body, bytes);
    }
    let held: u64 = disk_files(disk.path()).iter().map(|(_, len)| len).sum();
    assert!(held <= size, "{held} bytes on disk, size {size}");
    let gauge = bed
        .sidecar
        .metric("registry_token_cache_bytes", &[("tier", "disk")]);
    assert!(gauge > 0.0 && gauge <= size as f64, "{gauge}");

    let (last, last_bytes) = seeded.last().unwrap();
    let file = disk.path().join("blob").join(last.replace(':', "-"));
    let mut corrupted = last_bytes.clone();
    corrupted[100] ^= 0xff;
    std::fs::write(&file, &corrupted).unwrap();
    let before = bed.upstream(&path(last));
    let response = bed.get(&path(last), &token, &[]);
    assert_eq!(&response.body, last_bytes, "the corrupted file was served");
    assert_eq!(
        bed.upstream(&path(last)),
        before + 1,
        "not asked again after corruption"
    );
    let failures = bed
        .sidecar
        .metric("registry_token_cache_integrity_failures_total", &[]);
    assert_eq!(failures, 1.0);
}

/// A disk hit larger than one read (the file is sent in pieces, the next read while the last
/// is written) is the object byte for byte, whole and as a range across the pieces; HEAD
/// gives its length and sends nothing.
#[test]
fn large_disk_hits_are_exact_whole_and_in_ranges() {
    let disk = tempfile::tempdir().unwrap();
    let bed = Bed::start(json!({"cache": {"maxObject": "1KiB",
        "disk": {"path": disk.path(), "size": "8MiB"}}}));
    let token = bed.token(&["repository:acme/app:pull"]);
    let bytes: Vec<u8> = (0..1_300_000u32).map(|i| (i % 251) as u8).collect();
    let digest = seed_blob(&bed.registry, "acme/app", &bytes);
    let path = format!("/v2/acme/app/blobs/{digest}");
    assert_eq!(bed.get(&path, &token, &[]).body, bytes, "the fill");
    let whole = bed.get(&path, &token, &[]);
    assert_eq!(whole.status, 200);
    assert!(whole.body == bytes, "a disk hit differs from the object");
    let part = bed.get(&path, &token, &[("Range", "bytes=524000-1100000")]);
    assert_eq!(part.status, 206);
    assert!(
        part.body == bytes[524_000..=1_100_000],
        "a ranged disk hit differs"
    );
    let head = request(&bed.sidecar.url(), "HEAD", &path, Some(&token), &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1300000"));
    assert!(head.body.is_empty());
    assert_eq!(bed.upstream(&path), 1, "the hits went upstream");
}

/// skopeo pulls through a warm cache give the same digests (and verified blobs) as a pull from
/// the registry directly; the warm pull asks the registry for no blob.
#[test]
fn skopeo_pulls_through_a_warm_cache_match_direct() {
    let bed = Bed::start(json!({}));
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    oci_layout(dirs[0].path(), "v1", &[4 << 10, 300_000, 1 << 20]);
    let oci = |dir: &tempfile::TempDir| format!("oci:{}:v1", dir.path().display());
    let registry = format!("docker://{}/acme/app:v1", bed.registry.addr());
    skopeo_ok(&["copy", "--dest-tls-verify=false", &oci(&dirs[0]), &registry]);
    skopeo_ok(&["copy", "--src-tls-verify=false", &registry, &oci(&dirs[1])]);
    let direct = read_oci_layout(dirs[1].path(), "v1");

    let token = bed.token(&["repository:acme/app:pull"]);
    let sidecar = format!("docker://{}/acme/app:v1", bed.sidecar.addr());
    let mut blob_requests = Vec::new();
    for dir in &dirs[2..] {
        skopeo_ok(&[
            "copy",
            "--src-tls-verify=false",
            "--src-registry-token",
            &token,
            &sidecar,
            &oci(dir),
        ]);
        assert_eq!(read_oci_layout(dir.path(), "v1"), direct);
        blob_requests.push(bed.upstream("/v2/acme/app/blobs/sha256:"));
    }
    assert_eq!(
        blob_requests[0], 4,
        "the cold pull fetches the config and three layers"
    );
    assert_eq!(
        blob_requests[1], 4,
        "the warm pull went to the registry for blobs"
    );
}

/// Hits on one kept-alive connection: GET, HEAD, a range and GET again, each answered whole
/// and the connection still usable (as clients pull: many requests on one connection).
#[test]
fn hits_keep_the_connection_alive() {
    use std::io::{BufRead, BufReader, Read, Write};
    let bed = Bed::start(json!({}));
    let (digest, manifest) = seed_manifest(&bed.registry, "acme/app", "v1", b"layer");
    let blob = seed_blob(&bed.registry, "acme/app", b"a kept-alive blob");
    let token = bed.token(&["repository:acme/app:pull"]);
    let stream = std::net::TcpStream::connect(bed.sidecar.addr()).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut exchange = |method: &str, path: &str, extra: &str| -> (u16, Vec<u8>) {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: sidecar.test\r\nAuthorization: Bearer {token}\r\nAccept: {ACCEPT}\r\n{extra}\r\n"
        );
        writer.write_all(request.as_bytes()).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut length = 0;
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.trim_end().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; if method == "HEAD" { 0 } else { length }];
        reader.read_exact(&mut body).unwrap();
        (status, body)
    };
    let manifest_path = format!("/v2/acme/app/manifests/{digest}");
    let blob_path = format!("/v2/acme/app/blobs/{blob}");
    for round in 0..3 {
        assert_eq!(exchange("GET", "/v2/acme/app/manifests/v1", "").0, 200);
        assert_eq!(
            exchange("GET", &manifest_path, ""),
            (200, manifest.clone()),
            "round {round}"
        );
        assert_eq!(exchange("HEAD", &blob_path, "").0, 200);
        assert_eq!(exchange("GET", &blob_path, "").1, b"a kept-alive blob");
        assert_eq!(
            exchange("GET", &blob_path, "Range: bytes=2-5\r\n"),
            (206, b"kept".to_vec())
        );
    }
    assert_eq!(bed.upstream(&manifest_path), 1);
}
