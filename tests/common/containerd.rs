//! A containerd of the test's own (Debian's `containerd` 1.6) and its `ctr` client: its own
//! root, state, socket and config (the CRI plugin off, since it wants CNI and privileges, and
//! `/opt/containerd` moved into the tempdir), so nothing on the machine takes part.
//!
//! Also an OCI layout whose one layer is a real tar, for images `ctr images pull` must unpack.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::json;

use super::dockerd::{rootfs_tar, stop};
use super::oci::sha256_digest;
use super::{log_tail, poll, OciImage, START_DEADLINE};

/// A running `containerd`; stopped with SIGTERM on drop.
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts `containerd --config C --root R --state S --address A` and waits until
    /// `ctr version` reaches it.
    pub fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("e2e-containerd")
            .tempdir()
            .unwrap();
        let config = dir.path().join("config.toml");
        fs::write(
            &config,
            format!(
                "version = 2\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{}\"\n",
                dir.path().join("opt").display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--address")
            .arg(dir.path().join("containerd.sock"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run containerd (Debian's containerd; scripts/deps installs it)");
        let mut containerd = Containerd { child, dir };
        poll(START_DEADLINE, "containerd to answer", || {
            if let Ok(Some(status)) = containerd.child.try_wait() {
                panic!("containerd exited ({status}):\n{}", containerd.log_tail());
            }
            containerd.ctr(&["version"]).status.success().then_some(())
        });
        containerd
    }

    /// The daemon's socket, for `ctr -a`.
    pub fn address(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// `ctr -a SOCK ARGS`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(self.address())
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINERD_NAMESPACE")
            .env_remove("CONTAINERD_SNAPSHOTTER")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    /// `ctr` that must succeed; its standard output. The value after `--user` is not printed.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {} failed ({}):\n{}\n{}",
            redact(args).join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The last 40 lines of the daemon's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.path().join("containerd.log"), 40)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        stop(&mut self.child);
        if std::thread::panicking() {
            eprintln!("---- containerd log tail ----\n{}", self.log_tail());
        }
    }
}

/// `args` with the credentials after `--user`/`-u` elided.
fn redact(args: &[&str]) -> Vec<String> {
    let mut secret_next = false;
    args.iter()
        .map(|arg| {
            let shown = if secret_next { "<redacted>" } else { arg };
            secret_next = *arg == "--user" || *arg == "-u";
            shown.to_string()
        })
        .collect()
}

/// Writes an OCI image layout in `dir` whose one layer is a real (uncompressed) tar holding
/// `hello.txt` = `content`, with a linux config for this machine's architecture, tagged `tag`:
/// an image `ctr images pull` can unpack.
pub fn rootfs_layout(dir: &Path, tag: &str, content: &str) -> OciImage {
    let work = tempfile::tempdir().unwrap();
    let layer = fs::read(rootfs_tar(work.path(), content)).unwrap();
    let layer_digest = write_blob(dir, &layer);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    let config_digest = write_blob(dir, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    let manifest_digest = write_blob(dir, &manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    OciImage {
        manifest_digest,
        config_digest,
        layer_digests: vec![layer_digest],
    }
}

fn write_blob(dir: &Path, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(blobs.join(&digest["sha256:".len()..]), bytes).unwrap();
    digest
}
