//! The edge cache (docs/cache.md) for end-to-end tests: objects written straight into the registry
//! (no sidecar), requests with chosen headers read as [`RawResponse`]s, the registry's blob
//! files to corrupt, and registry tokens re-signed with other claims (expired ones).

use std::path::{Path, PathBuf};

use openssl::ec::EcKey;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{hash, MessageDigest};
use serde_json::{json, Value};

use super::{b64, client, jwt_claims, jwt_header, sha256_digest, RawResponse, Registry};

/// The OCI manifest media type the seeded manifests have.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// What OCI clients send as `Accept` for manifests.
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Opens an upload session for a blob of `repo` at `base` (the registry, or a sidecar with a
/// registry `token`); returns its location, absolute.
pub fn start_upload(base: &str, repo: &str, token: Option<&str>) -> String {
    let mut post = client().post(format!("{base}/v2/{repo}/blobs/uploads/"));
    if let Some(token) = token {
        post = post.bearer_auth(token);
    }
    let start = post.send().unwrap();
    assert_eq!(start.status(), 202, "upload session in {repo}");
    let location = start.headers()["location"].to_str().unwrap().to_string();
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location
    }
}

/// Uploads `bytes` as a blob of `repo` at `base` (as [`start_upload`]); returns its digest.
pub fn push_blob(base: &str, repo: &str, token: Option<&str>, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let location = start_upload(base, repo, token);
    let sep = if location.contains('?') { '&' } else { '?' };
    let mut put = client()
        .put(format!("{location}{sep}digest={digest}"))
        .header("Content-Type", "application/octet-stream")
        .body(bytes.to_vec());
    if let Some(token) = token {
        put = put.bearer_auth(token);
    }
    assert_eq!(put.send().unwrap().status(), 201, "blob upload in {repo}");
    digest
}

/// Pushes an image `repo:tag` at `base` (as [`start_upload`]): `config`, one layer of `layer`
/// bytes and their manifest; returns the layer's and the manifest's digest and the manifest.
pub fn push_image(
    base: &str,
    repo: &str,
    tag: &str,
    token: Option<&str>,
    config: &[u8],
    layer: &[u8],
) -> (String, String, Vec<u8>) {
    let config_digest = push_blob(base, repo, token, config);
    let layer_digest = push_blob(base, repo, token, layer);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    let mut put = client()
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", MANIFEST_TYPE)
        .body(manifest.clone());
    if let Some(token) = token {
        put = put.bearer_auth(token);
    }
    assert_eq!(
        put.send().unwrap().status(),
        201,
        "manifest push to {repo}:{tag}"
    );
    (layer_digest, sha256_digest(&manifest), manifest)
}

/// Uploads `bytes` as a blob of `repo`, straight to the registry; returns its digest.
pub fn seed_blob(registry: &Registry, repo: &str, bytes: &[u8]) -> String {
    push_blob(&registry.url(), repo, None, bytes)
}

/// A manifest of `repo:tag` (a config and one layer of `layer` bytes), pushed straight to the
/// registry; returns its digest and bytes.
pub fn seed_manifest(
    registry: &Registry,
    repo: &str,
    tag: &str,
    layer: &[u8],
) -> (String, Vec<u8>) {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#);
    let (_, digest, manifest) =
        push_image(&registry.url(), repo, tag, None, config.as_bytes(), layer);
    (digest, manifest)
}

/// The file that holds a blob in the registry's filesystem storage.
pub fn blob_file(registry: &Registry, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    registry
        .storage()
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// `METHOD {base}{path}` with `Authorization: Bearer <token>` and `headers`.
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> RawResponse {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client().request(method, format!("{base}{path}"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = req.send().expect("request through the sidecar");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let body = response.bytes().map(|b| b.to_vec()).unwrap_or_default();
    RawResponse {
        status,
        headers,
        body,
    }
}

/// `token` with its claims changed by `edit`, signed again with the sidecar's key (keygen's
/// `signing.pem` in `keys_dir`, ES256): a token the sidecar could have issued.
pub fn resign(keys_dir: &Path, token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let header = jwt_header(token);
    let mut claims = jwt_claims(token);
    edit(&mut claims);
    let input = format!(
        "{}.{}",
        b64(serde_json::to_vec(&header).unwrap()),
        b64(serde_json::to_vec(&claims).unwrap())
    );
    let pem = std::fs::read(keys_dir.join("signing.pem")).unwrap();
    let key = EcKey::private_key_from_pem(&pem).expect("an EC signing key");
    let digest = hash(MessageDigest::sha256(), input.as_bytes()).unwrap();
    let sig = EcdsaSig::sign(&digest, &key).unwrap();
    let mut raw = sig.r().to_vec_padded(32).unwrap();
    raw.extend(sig.s().to_vec_padded(32).unwrap());
    format!("{input}.{}", b64(raw))
}
