//! A docker daemon of the test's own (Debian's `docker.io`, dockerd 20.10) and the docker CLI
//! pointed at it: vfs storage, no iptables and no bridge, its own data root, exec root, socket
//! and pidfile under a tempdir, and a client `--config` folder of its own, so nothing on the
//! machine (a system dockerd, `~/.docker/config.json`, `DOCKER_HOST`, proxies) takes part.
//!
//! dockerd treats `127.0.0.0/8` as an insecure registry by default, so the sidecar's plain
//! HTTP listener on `127.0.0.1:PORT` needs no `--insecure-registry`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{log_tail, poll, START_DEADLINE};

/// A running `dockerd`; stopped with SIGTERM (so the containerd it started stops too) on drop.
pub struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Dockerd {
    /// Starts `dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs`
    /// with its own roots and socket, and waits until `docker version` reaches it.
    pub fn start() -> Dockerd {
        let dir = tempfile::Builder::new()
            .prefix("e2e-dockerd")
            .tempdir()
            .unwrap();
        let log = fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--storage-driver=vfs",
            ])
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--host")
            .arg(format!(
                "unix://{}",
                dir.path().join("docker.sock").display()
            ))
            .arg("--pidfile")
            .arg(dir.path().join("docker.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run dockerd (Debian's docker.io; scripts/deps installs it)");
        let mut dockerd = Dockerd { child, dir };
        poll(START_DEADLINE, "dockerd to answer", || {
            if let Ok(Some(status)) = dockerd.child.try_wait() {
                panic!("dockerd exited ({status}):\n{}", dockerd.log_tail());
            }
            dockerd
                .docker(&["version"], None)
                .status
                .success()
                .then_some(())
        });
        dockerd
    }

    /// `unix://SOCK`, the daemon's address for `docker -H`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    /// The CLI's `--config` folder (`config.json` after `docker login`).
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("client")
    }

    /// `docker -H unix://SOCK --config DIR ARGS`, with `stdin` piped in when given.
    pub fn docker(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new("docker")
            .arg("-H")
            .arg(self.host())
            .arg("--config")
            .arg(self.config_dir())
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONFIG")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("docker output")
    }

    /// `docker` that must succeed; its standard output. Arguments are printed on failure, so
    /// pass secrets on `stdin` only.
    pub fn docker_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.docker(args, stdin);
        assert!(
            out.status.success(),
            "docker {} failed ({}):\n{}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The last 40 lines of the daemon's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.path().join("dockerd.log"), 40)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        stop(&mut self.child);
        if std::thread::panicking() {
            eprintln!("---- dockerd log tail ----\n{}", self.log_tail());
        }
    }
}

/// SIGTERM to our own child, up to 15 s for it to exit, then SIGKILL.
pub fn stop(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid; no memory is shared.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let stopped = (0..150).any(|_| {
        std::thread::sleep(Duration::from_millis(100)); // waiting for our child to exit
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !stopped {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A root filesystem of one file, `hello.txt` holding `content`, as a tar archive written to
/// `dir/rootfs.tar` (for `docker import`, or as an OCI layer); returns its path.
pub fn rootfs_tar(dir: &Path, content: &str) -> PathBuf {
    let root = dir.join("rootfs");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("hello.txt"), content).unwrap();
    let tar = dir.join("rootfs.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("hello.txt")
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tar
}
