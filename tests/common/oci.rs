//! OCI image layouts on disk (so `skopeo copy oci:DIR:TAG docker://...` needs no network), and
//! skopeo run in isolation (its own HOME, no policy or blob-info cache from the machine).

use std::path::Path;
use std::process::{Command, Output};

use openssl::hash::{hash, MessageDigest};
use rand::RngCore;
use serde_json::{json, Value};

/// The skopeo binary the tests run (Debian's 1.9.3).
pub const SKOPEO_BIN: &str = "/usr/bin/skopeo";

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// The digests that identify an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciImage {
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
}

/// `sha256:<hex>`, the OCI digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        super::hex(&hash(MessageDigest::sha256(), bytes).unwrap())
    )
}

fn write_blob(dir: &Path, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(&digest["sha256:".len()..]), bytes).unwrap();
    digest
}

/// Writes an OCI image layout in `dir` (created if missing): random layer blobs of the given
/// sizes, a config, a manifest, `index.json` naming it `tag`, and `oci-layout`.
pub fn oci_layout(dir: &Path, tag: &str, layers: &[usize]) -> OciImage {
    let mut rng = rand::rng();
    let mut descriptors = Vec::new();
    let mut layer_digests = Vec::new();
    for &size in layers {
        let mut blob = vec![0u8; size];
        rng.fill_bytes(&mut blob);
        let digest = write_blob(dir, &blob);
        descriptors.push(json!({"mediaType": LAYER_TYPE, "digest": digest, "size": size}));
        layer_digests.push(digest);
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": layer_digests},
        "history": layers.iter().map(|_| json!({"created_by": "registry-token e2e"})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let config_digest = write_blob(dir, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config.len()},
        "layers": descriptors,
    }))
    .unwrap();
    let manifest_digest = write_blob(dir, &manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MANIFEST_TYPE, "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    OciImage {
        manifest_digest,
        config_digest,
        layer_digests,
    }
}

/// Reads the image `tag` of an OCI layout, checking that every blob hashes to its digest.
pub fn read_oci_layout(dir: &Path, tag: &str) -> OciImage {
    let read_blob = |digest: &str| {
        let bytes = std::fs::read(dir.join("blobs/sha256").join(&digest["sha256:".len()..]))
            .unwrap_or_else(|e| panic!("blob {digest}: {e}"));
        assert_eq!(
            sha256_digest(&bytes),
            digest,
            "blob content matches its digest"
        );
        bytes
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {index}"));
    let manifest_digest = entry["digest"].as_str().unwrap().to_string();
    let manifest: Value = serde_json::from_slice(&read_blob(&manifest_digest)).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    read_blob(&config_digest);
    let layer_digests = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let digest = l["digest"].as_str().unwrap().to_string();
            read_blob(&digest);
            digest
        })
        .collect();
    OciImage {
        manifest_digest,
        config_digest,
        layer_digests,
    }
}

/// Runs `skopeo --insecure-policy ARGS` with a throwaway HOME (no stored credentials, no
/// blob-info cache that would make it try cross-repository mounts). Returns its output.
pub fn skopeo(args: &[&str]) -> Output {
    let home = tempfile::Builder::new()
        .prefix("e2e-skopeo")
        .tempdir()
        .unwrap();
    Command::new(SKOPEO_BIN)
        .arg("--insecure-policy")
        .args(args)
        .env("HOME", home.path())
        .env("REGISTRY_AUTH_FILE", home.path().join("auth.json"))
        .env("XDG_RUNTIME_DIR", home.path())
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .output()
        .expect("run skopeo")
}

/// `skopeo` that must succeed.
pub fn skopeo_ok(args: &[&str]) {
    let out = skopeo(args);
    assert!(
        out.status.success(),
        "skopeo {} failed ({}):\n{}\n{}",
        redact(args).join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The arguments with any token or credential value elided (they never go to test output).
fn redact(args: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut secret_next = false;
    for arg in args {
        if secret_next {
            out.push("<redacted>".to_string());
        } else {
            out.push(arg.to_string());
        }
        secret_next = arg.ends_with("-token") || arg.ends_with("-creds");
    }
    out
}
