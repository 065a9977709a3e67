//! Debian's `docker-registry` (CNCF Distribution 2.8.2) on a free loopback port, filesystem
//! storage in a tempdir, with or without token auth of its own.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use super::{client, free_port, log_tail, poll, START_DEADLINE};

/// The registry binary the tests run.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// The registry's own `auth.token` section: it then verifies bearer tokens itself.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    /// PEM bundle of the CA that signs the token issuer's certificate chain (keygen's `ca.crt`).
    pub rootcertbundle: PathBuf,
}

/// A running registry; killed on drop.
pub struct Registry {
    child: Child,
    port: u16,
    dir: TempDir,
    tls: bool,
}

impl Registry {
    /// Starts the registry and waits until `GET /v2/` answers 200 (no auth) or 401 (token auth).
    pub fn start(auth: Option<TokenAuth>) -> Registry {
        Registry::start_with(auth, None)
    }

    /// Like `start`; with `tls` = (certificate, key) the registry serves https.
    pub fn start_with(auth: Option<TokenAuth>, tls: Option<(&Path, &Path)>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("e2e-registry")
            .tempdir()
            .unwrap();
        // A port that was free a moment ago may have been taken since (an outgoing connection
        // of another test): then the registry exits at once, and starts again on another.
        for _ in 0..5 {
            let port = free_port();
            let mut config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: text\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: e2e-secret\n  relativeurls: false\n",
                storage = dir.path().join("storage").display(),
            );
            if let Some((certificate, key)) = tls {
                config.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    certificate.display(),
                    key.display()
                ));
            }
            if let Some(auth) = &auth {
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    auth.realm,
                    auth.service,
                    auth.issuer,
                    auth.rootcertbundle.display()
                ));
            }
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log_path = dir.path().join("registry.log");
            let log = File::create(&log_path).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("run /usr/bin/docker-registry");
            let http = client();
            let scheme = if tls.is_some() { "https" } else { "http" };
            let url = format!("{scheme}://127.0.0.1:{port}/v2/");
            let ready = poll(START_DEADLINE, "docker-registry to answer /v2/", || {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(Err(status));
                }
                let status = http.get(&url).send().ok()?.status().as_u16();
                matches!(status, 200 | 401).then_some(Ok(()))
            });
            match ready {
                Ok(()) => {
                    return Registry {
                        child,
                        port,
                        dir,
                        tls: tls.is_some(),
                    }
                }
                Err(status) => {
                    let tail = log_tail(&log_path, 40);
                    if !tail.contains("address already in use") {
                        panic!("docker-registry exited ({status}):\n{tail}");
                    }
                }
            }
        }
        panic!("docker-registry found no free port in 5 tries");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr()
        )
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's log (stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The registry's storage root.
    pub fn storage(&self) -> &Path {
        self.dir.path()
    }

    /// The last 40 lines of the log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path(), 40)
    }

    /// How many requests the registry has logged for paths containing `fragment` (its access
    /// log lines carry `http.request.uri=...`): lets a test see whether anything was forwarded.
    pub fn requests_for(&self, fragment: &str) -> usize {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("http.request.uri=") && l.contains(fragment))
            .filter(|l| l.contains("response completed") || l.contains("error authorizing"))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- docker-registry log tail ----\n{}", self.log_tail());
        }
    }
}
