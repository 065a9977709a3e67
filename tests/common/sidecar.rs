//! The real `registry-token` binary: keygen, a config as in docs/configuration.md written to a
//! tempdir (as a plain file, a symlink, or a Kubernetes ConfigMap `..data` layout), `serve` until
//! `/readyz`, and the calls tests make on it (`/token` over DPoP, metrics, reloads, SIGHUP).

use std::fs::File;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::{json, Value};
use tempfile::TempDir;

use super::process::ClearEnv;
use super::{
    client, free_port, log_tail, metric_value, poll, Authority, DpopKey, Registry, TokenAuth,
    START_DEADLINE,
};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_registry-token");

/// The service name every stack uses.
pub const SERVICE: &str = "registry.test";

/// The issuer of the sidecar's tokens (the registry's `auth.token.issuer`).
pub const TOKEN_ISSUER: &str = "registry-token";

/// How long a config change may take to apply. README.md says 2 s; the slack is for a loaded
/// machine.
pub const RELOAD_DEADLINE: Duration = Duration::from_secs(5);

/// Output of `registry-token keygen --alg ES256 --out DIR --ca-dir CA`: DIR is what the sidecar
/// and the registry are given (it holds no CA private key), CA the CA's own folder.
pub struct Keys {
    dir: TempDir,
    ca: TempDir,
}

impl Keys {
    /// Runs keygen into a fresh (empty, existing) directory, the CA into another.
    pub fn generate() -> Keys {
        let dir = tempfile::Builder::new()
            .prefix("e2e-keys")
            .tempdir()
            .unwrap();
        let ca = tempfile::Builder::new().prefix("e2e-ca").tempdir().unwrap();
        let out = Command::new(BIN)
            .args(["keygen", "--alg", "ES256", "--out"])
            .arg(dir.path())
            .arg("--ca-dir")
            .arg(ca.path().join("ca"))
            .current_dir(dir.path())
            .env_clear_registry_token()
            .output()
            .expect("run registry-token keygen");
        assert!(
            out.status.success(),
            "keygen failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let keys = Keys { dir, ca };
        for file in ["ca.crt", "signing.pem", "signing-chain.crt", "jwks.json"] {
            assert!(
                keys.path().join(file).is_file(),
                "keygen did not write {file}"
            );
        }
        assert!(
            keys.ca_dir().join("ca.key").is_file(),
            "keygen did not write ca.key into --ca-dir"
        );
        assert!(
            !keys.path().join("ca.key").exists(),
            "keygen wrote the CA's private key into the folder the services mount"
        );
        keys
    }

    /// One keygen output shared by the callers alive at the same time, removed with the last
    /// of them: for suites that start a stack per test and only read the keys.
    pub fn shared() -> Arc<Keys> {
        static SHARED: Mutex<Weak<Keys>> = Mutex::new(Weak::new());
        let mut slot = SHARED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(keys) = slot.upgrade() {
            return keys;
        }
        let keys = Arc::new(Keys::generate());
        *slot = Arc::downgrade(&keys);
        keys
    }

    /// The folder given to the sidecar (and whose `ca.crt` the registry trusts).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The CA's folder (`ca.key`, `ca.crt`), given to no service.
    pub fn ca_dir(&self) -> PathBuf {
        self.ca.path().join("ca")
    }

    /// The CA certificate for the registry's `rootcertbundle`.
    pub fn ca_crt(&self) -> PathBuf {
        self.path().join("ca.crt")
    }
}

/// One plan of the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    /// `(pattern, actions)`.
    pub rules: Vec<(String, Vec<String>)>,
    /// The plan's `limits` (docs/http.md) as written, e.g. `{"pulls": {"count": 3, "per": "1h"}}`;
    /// `Null`: none.
    pub limits: Value,
}

impl Plan {
    pub fn new(name: &str, rules: &[(&str, &[&str])]) -> Plan {
        Plan {
            name: name.into(),
            rules: rules
                .iter()
                .map(|(p, a)| (p.to_string(), a.iter().map(|s| s.to_string()).collect()))
                .collect(),
            limits: Value::Null,
        }
    }
}

/// How the config file sits on disk, and so how `Sidecar::write` changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `DIR/registry-token.yaml`, replaced by rename (as editors do).
    File,
    /// Kubernetes ConfigMap volume: `registry-token.yaml -> ..data/registry-token.yaml`,
    /// `..data -> ..<timestamp>/`; a change swaps the `..data` symlink atomically.
    Kubernetes,
    /// `DIR/watched/registry-token.yaml -> DIR/elsewhere/registry-token.yaml`; a change rewrites
    /// the target in place, outside the watched folder, so only a SIGHUP is sure to see it.
    LinkElsewhere,
}

/// What the test controls in the sidecar's config (rendered to YAML as in docs/configuration.md).
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    /// Main listener port; `None` picks a free one.
    pub listen_port: Option<u16>,
    pub upstream_url: String,
    pub authority_issuer: String,
    /// Directory holding keygen's `signing.pem` and `signing-chain.crt`.
    pub keys_dir: PathBuf,
    /// `dpop` | `mtls` | `dpopOrMtls` | `none`.
    pub sender_constraint: String,
    pub plans: Vec<Plan>,
    pub default_plan: String,
    pub revoked_licenses: Vec<String>,
    pub anonymous_plan: Option<String>,
    pub layout: Layout,
    /// Deep-merged over the rendered document last (any other setting, camelCase keys).
    pub patch: Value,
}

impl SidecarConfig {
    /// The default test config: plans `public` (`public/*` pull) and `enterprise` (`acme/*`
    /// pull+push, `customers/**` pull+push+delete), defaultPlan public, revokedLicenses
    /// [LIC-REVOKED], senderConstraint dpop.
    pub fn new(upstream_url: &str, authority_issuer: &str, keys_dir: &Path) -> SidecarConfig {
        SidecarConfig {
            listen_port: None,
            upstream_url: upstream_url.into(),
            authority_issuer: authority_issuer.into(),
            keys_dir: keys_dir.into(),
            sender_constraint: "dpop".into(),
            plans: vec![
                Plan::new("public", &[("public/*", &["pull"])]),
                Plan::new(
                    "enterprise",
                    &[
                        ("acme/*", &["pull", "push"]),
                        ("customers/**", &["pull", "push", "delete"]),
                    ],
                ),
            ],
            default_plan: "public".into(),
            revoked_licenses: vec!["LIC-REVOKED".into()],
            anonymous_plan: None,
            layout: Layout::File,
            patch: json!({}),
        }
    }

    /// `https` when the patch turns TLS on, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self
            .patch
            .pointer("/server/tls")
            .is_some_and(|t| !t.is_null())
        {
            "https"
        } else {
            "http"
        }
    }

    /// The plan named `name`, to edit.
    pub fn plan_mut(&mut self, name: &str) -> &mut Plan {
        self.plans
            .iter_mut()
            .find(|p| p.name == name)
            .expect("known plan")
    }

    /// The YAML document for listeners on `port` and `admin_port`.
    pub fn to_yaml(&self, port: u16, admin_port: u16) -> String {
        let plans: Vec<Value> = self
            .plans
            .iter()
            .map(|p| {
                let rules: Vec<Value> = p
                    .rules
                    .iter()
                    .map(|(pattern, actions)| json!({"pattern": pattern, "actions": actions}))
                    .collect();
                let mut plan = json!({"name": p.name, "repositories": rules});
                if !p.limits.is_null() {
                    plan["limits"] = p.limits.clone();
                }
                plan
            })
            .collect();
        let mut doc = json!({
            "server": {"listen": format!("127.0.0.1:{port}"),
                       "adminListen": format!("127.0.0.1:{admin_port}")},
            "upstream": {"url": self.upstream_url},
            "authority": {"issuer": self.authority_issuer, "audiences": ["registry"],
                          "requiredScopes": ["registry.token.issue"],
                          "senderConstraint": self.sender_constraint, "clockSkew": "30s"},
            "signing": {"issuer": TOKEN_ISSUER,
                        "keyPath": self.keys_dir.join("signing.pem"),
                        "certificateChain": self.keys_dir.join("signing-chain.crt"),
                        "lifetime": "5m"},
            "registry": {"realm": format!("{}://127.0.0.1:{port}/token", self.scheme()), "service": SERVICE},
            "plans": plans,
            "defaultPlan": self.default_plan,
            "revokedLicenses": self.revoked_licenses,
        });
        if let Some(plan) = &self.anonymous_plan {
            doc["anonymous"] = json!({ "plan": plan });
        }
        merge(&mut doc, &self.patch);
        serde_yaml_ng::to_string(&doc).expect("render YAML")
    }
}

/// Deep-merges `patch` into `doc` (objects merge, anything else replaces; `null` removes).
pub fn merge(doc: &mut Value, patch: &Value) {
    match (doc, patch) {
        (Value::Object(doc), Value::Object(patch)) => {
            for (k, v) in patch {
                if v.is_null() {
                    doc.remove(k);
                } else {
                    merge(doc.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (doc, patch) => *doc = patch.clone(),
    }
}

/// A running `registry-token serve`; killed on drop.
pub struct Sidecar {
    child: Child,
    port: u16,
    admin_port: u16,
    config: SidecarConfig,
    config_path: PathBuf,
    dir: TempDir,
    writes: AtomicUsize,
}

impl Sidecar {
    /// Writes the config, starts `registry-token --config PATH serve` and waits for `/readyz` 200.
    pub fn start(config: SidecarConfig) -> Sidecar {
        let mut sidecar = Sidecar::launch(config);
        let http = client();
        let readyz = format!("{}/readyz", sidecar.url());
        poll(
            START_DEADLINE,
            "registry-token /readyz to answer 200",
            || {
                if let Ok(Some(status)) = sidecar.child.try_wait() {
                    panic!("registry-token exited ({status}):\n{}", sidecar.log_tail());
                }
                (http.get(&readyz).send().ok()?.status() == 200).then_some(())
            },
        );
        sidecar
    }

    /// Like `start`, but waits only for `/healthz` 200 (the process serves), not for readiness.
    pub fn start_unready(config: SidecarConfig) -> Sidecar {
        let mut sidecar = Sidecar::launch(config);
        let http = client();
        let healthz = format!("{}/healthz", sidecar.url());
        poll(
            START_DEADLINE,
            "registry-token /healthz to answer 200",
            || {
                if let Ok(Some(status)) = sidecar.child.try_wait() {
                    panic!("registry-token exited ({status}):\n{}", sidecar.log_tail());
                }
                (http.get(&healthz).send().ok()?.status() == 200).then_some(())
            },
        );
        sidecar
    }

    /// Writes the config and starts `registry-token --config PATH serve`; waits for nothing.
    fn launch(config: SidecarConfig) -> Sidecar {
        let dir = tempfile::Builder::new()
            .prefix("e2e-sidecar")
            .tempdir()
            .unwrap();
        let port = config.listen_port.unwrap_or_else(free_port);
        let admin_port = free_port();
        let yaml = config.to_yaml(port, admin_port);
        let config_path = match config.layout {
            Layout::File => dir.path().join("registry-token.yaml"),
            Layout::Kubernetes => dir.path().join("cm/registry-token.yaml"),
            Layout::LinkElsewhere => dir.path().join("watched/registry-token.yaml"),
        };
        create_layout(config.layout, dir.path(), &config_path, &yaml);
        let log = File::create(dir.path().join("registry-token.log")).unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&config_path)
            .arg("serve")
            .current_dir(dir.path())
            .env_clear_registry_token()
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run registry-token serve");
        Sidecar {
            child,
            port,
            admin_port,
            config,
            config_path,
            dir,
            writes: AtomicUsize::new(0),
        }
    }

    /// `http(s)://127.0.0.1:PORT` (main listener).
    pub fn url(&self) -> String {
        format!("{}://{}", self.config.scheme(), self.addr())
    }

    /// `127.0.0.1:PORT` (for `raw_http` and skopeo's `docker://` references).
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:ADMIN_PORT`.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// The token realm, also the DPoP `htu`.
    pub fn realm(&self) -> String {
        format!("{}/token", self.url())
    }

    /// The path given to `--config`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The config the sidecar was started with (edit a clone and `apply` it).
    pub fn config(&self) -> &SidecarConfig {
        &self.config
    }

    /// The YAML of `config` for this sidecar's listeners.
    pub fn render(&self, config: &SidecarConfig) -> String {
        config.to_yaml(self.port, self.admin_port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry-token.log")
    }

    /// The sidecar's whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Panics when any of `secrets` (or the signature part of a JWT among them) is in the log.
    pub fn assert_log_free_of(&self, secrets: &[&str]) {
        let log = self.log();
        for secret in secrets {
            let signature = secret.rsplit('.').next().unwrap_or(secret);
            assert!(
                !log.contains(secret) && !log.contains(signature),
                "a token or credential appears in the sidecar's log"
            );
        }
    }

    /// The last 60 lines of the sidecar's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path(), 60)
    }

    /// The sidecar's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Replaces the config file the way editors do: write a sibling, then rename over it.
    pub fn rewrite_config(&self, yaml: &str) {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        let tmp = self
            .config_path
            .with_file_name(format!(".registry-token.yaml.{n}.tmp"));
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    /// Truncates the config file and writes `contents` into the same inode.
    pub fn overwrite_in_place(&self, contents: &[u8]) {
        std::fs::write(std::fs::canonicalize(&self.config_path).unwrap(), contents).unwrap();
    }

    /// Changes the config the way this sidecar's `Layout` does it.
    pub fn write(&self, yaml: &str) {
        match self.config.layout {
            Layout::File => self.rewrite_config(yaml),
            Layout::LinkElsewhere => self.overwrite_in_place(yaml.as_bytes()),
            Layout::Kubernetes => {
                // What the kubelet's AtomicWriter does: new timestamped dir, new `..data_tmp`
                // symlink, rename it over `..data`, remove the old dir.
                let cm = self.config_path.parent().unwrap();
                let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
                let name = format!("..2026_01_01_00_00_00.{n:09}");
                std::fs::create_dir(cm.join(&name)).unwrap();
                std::fs::write(cm.join(&name).join("registry-token.yaml"), yaml).unwrap();
                let old = std::fs::read_link(cm.join("..data")).unwrap();
                symlink(&name, cm.join("..data_tmp")).unwrap();
                std::fs::rename(cm.join("..data_tmp"), cm.join("..data")).unwrap();
                std::fs::remove_dir_all(cm.join(old)).unwrap();
            }
        }
    }

    /// Renders `config` and writes it per the layout.
    pub fn apply(&self, config: &SidecarConfig) {
        self.write(&self.render(config));
    }

    /// Sends SIGHUP to the sidecar.
    pub fn sighup(&self) {
        // SAFETY: kill(2) on our own child's pid; no memory is shared.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGHUP) };
        assert_eq!(rc, 0, "kill -HUP {}", self.child.id());
    }

    /// Polls until the process has exited, for at most `deadline`; its exit status.
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        poll(deadline, "registry-token to exit", || {
            self.child.try_wait().ok().flatten()
        })
    }

    /// The check named `name` (`upstream`, `authority`, `state`) of the admin listener's
    /// `/readyz`: `{"name", "ready", "detail"}`, or `Null` when there is none.
    pub fn admin_check(&self, name: &str) -> Value {
        let body: Value = client()
            .get(format!("{}/readyz", self.admin_url()))
            .send()
            .expect("GET admin /readyz")
            .json()
            .expect("JSON");
        body["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    /// `GET /metrics` on the admin listener.
    pub fn metrics(&self) -> String {
        let response = client()
            .get(format!("{}/metrics", self.admin_url()))
            .send()
            .expect("GET /metrics");
        assert_eq!(response.status(), 200, "GET /metrics");
        response.text().unwrap()
    }

    /// One series' value (summed over label sets that include `labels`).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics(), name, labels)
    }

    /// `registry_token_config_generation`.
    pub fn generation(&self) -> f64 {
        self.metric("registry_token_config_generation", &[])
    }

    /// Polls until `name{labels}` exceeds `above`; returns the new value.
    pub fn wait_metric_above(&self, name: &str, labels: &[(&str, &str)], above: f64) -> f64 {
        poll(
            RELOAD_DEADLINE,
            &format!("{name}{labels:?} > {above}"),
            || {
                let value = self.metric(name, labels);
                (value > above).then_some(value)
            },
        )
    }

    /// Polls until the config generation exceeds `above` (a reload took effect).
    pub fn wait_generation_above(&self, above: f64) -> f64 {
        self.wait_metric_above("registry_token_config_generation", &[], above)
    }

    /// `GET /token?service=registry.test&scope=...` with `Authorization: DPoP <optok>` and a
    /// fresh proof for `GET <realm>`.
    pub fn get_token(
        &self,
        scopes: &[&str],
        optok: &str,
        key: &DpopKey,
    ) -> reqwest::blocking::Response {
        let mut query = vec![("service", SERVICE)];
        query.extend(scopes.iter().map(|s| ("scope", *s)));
        client()
            .get(self.realm())
            .query(&query)
            .header("Authorization", format!("DPoP {optok}"))
            .header("DPoP", key.proof("GET", &self.realm(), optok))
            .send()
            .expect("GET /token")
    }

    /// `get_token` that must succeed; returns the registry token.
    pub fn token(&self, scopes: &[&str], optok: &str, key: &DpopKey) -> String {
        let response = self.get_token(scopes, optok, key);
        let status = response.status();
        let body: Value = response.json().unwrap_or(Value::Null);
        assert_eq!(status, 200, "GET /token {scopes:?}: {body}");
        body["token"]
            .as_str()
            .expect("token in the answer")
            .to_string()
    }

    /// `GET {url}{path}` with `Authorization: Bearer <token>` (when given).
    pub fn v2(&self, path: &str, token: Option<&str>) -> reqwest::blocking::Response {
        let mut request = client().get(format!("{}{path}", self.url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().expect("GET through the sidecar")
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- registry-token log tail ----\n{}", self.log_tail());
        }
    }
}

/// Writes the first config file in `layout` under `root`.
fn create_layout(layout: Layout, root: &Path, config_path: &Path, yaml: &str) {
    match layout {
        Layout::File => std::fs::write(config_path, yaml).unwrap(),
        Layout::Kubernetes => {
            let cm = root.join("cm");
            std::fs::create_dir(&cm).unwrap();
            let data = cm.join("..2026_01_01_00_00_00.000000000");
            std::fs::create_dir(&data).unwrap();
            std::fs::write(data.join("registry-token.yaml"), yaml).unwrap();
            symlink("..2026_01_01_00_00_00.000000000", cm.join("..data")).unwrap();
            symlink("..data/registry-token.yaml", config_path).unwrap();
        }
        Layout::LinkElsewhere => {
            std::fs::create_dir(root.join("watched")).unwrap();
            std::fs::create_dir(root.join("elsewhere")).unwrap();
            let target = root.join("elsewhere/registry-token.yaml");
            std::fs::write(&target, yaml).unwrap();
            symlink(&target, config_path).unwrap();
        }
    }
}

/// An Authority + keygen + a registry that trusts keygen's CA and sends clients to the
/// sidecar's realm + the sidecar. `A` is the Authority: the in-test one (`Stack::start`) or the
/// real provider (`Stack::on_provider`, common::oidc). Fields drop in order: sidecar first.
pub struct Stack<A = Authority> {
    pub sidecar: Sidecar,
    pub registry: Registry,
    pub keys: Keys,
    pub authority: A,
}

impl<A> Stack<A> {
    /// A stack trusting `authority`, whose OpToks carry `issuer`; `customize` edits the
    /// sidecar's config before start.
    pub fn start_on(
        authority: A,
        issuer: &str,
        customize: impl FnOnce(&mut SidecarConfig),
    ) -> Stack<A> {
        let keys = Keys::generate();
        let port = free_port(); // the registry's config names the sidecar's realm
        let registry = Registry::start(Some(TokenAuth {
            realm: format!("http://127.0.0.1:{port}/token"),
            service: SERVICE.into(),
            issuer: TOKEN_ISSUER.into(),
            rootcertbundle: keys.ca_crt(),
        }));
        let mut config = SidecarConfig::new(&registry.url(), issuer, keys.path());
        config.listen_port = Some(port);
        customize(&mut config);
        let sidecar = Sidecar::start(config);
        Stack {
            sidecar,
            registry,
            keys,
            authority,
        }
    }
}

impl Stack {
    /// The default stack (see `SidecarConfig::new`) with the in-test Authority.
    pub fn start() -> Stack {
        Stack::start_with(|_| {})
    }

    /// A stack with the in-test Authority whose sidecar config `customize` edits before start.
    pub fn start_with(customize: impl FnOnce(&mut SidecarConfig)) -> Stack {
        let authority = Authority::start();
        let issuer = authority.issuer();
        Stack::start_on(authority, &issuer, customize)
    }

    /// A DPoP key and an OpTok bound to it, for `sub`/`plan`/`license`.
    pub fn client(&self, sub: &str, plan: &str, license: &str) -> (DpopKey, String) {
        let key = DpopKey::new();
        let optok = self
            .authority
            .optok(sub, plan, license, Some(&key.thumbprint()));
        (key, optok)
    }
}
