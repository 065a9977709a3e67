//! The real Authority: panva's `oidc-provider` (OpenID Certified), run by
//! `scripts/oidc-authority/index.mjs` on the machine's Node, as a CI job's IdP would be. Clients
//! get OpToks from it with the client-credentials grant: bound to a DPoP key (`cnf.jkt`) when the
//! token request carries a proof, to the TLS client certificate (`cnf.x5t#S256`, RFC 8705) when
//! a certificate-bound client asks at its mTLS token endpoint, unbound otherwise.
//!
//! Suites use it for what users do; the in-test `Authority` (authority.rs) stays for tokens a
//! real provider will not mint (any `sub`, claim, expiry, key type, malformed JWTs) and for an
//! Authority that fails, goes down or rotates keys on cue.
//!
//! One provider serves every test of a binary that runs at the same time (`shared`): starting
//! Node and oidc-provider takes most of a second.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};

use serde_json::{json, Value};
use tempfile::TempDir;

use super::pki::{self, Pki, Role};
use super::sidecar::{SidecarConfig, Stack};
use super::{client, free_port, log_tail, poll, DpopKey, START_DEADLINE};

/// A client registered at the shared provider (`shared`), with the plan and license claims
/// its tokens carry. Its `sub` is its `id` (client credentials have no user).
#[derive(Debug, Clone, Copy)]
pub struct OidcClient {
    pub id: &'static str,
    /// Its client secret (client_secret_basic).
    pub secret: &'static str,
    pub plan: &'static str,
    pub license: &'static str,
    /// Lifetime of its access tokens in seconds (the provider's default: 600).
    pub ttl: Option<u64>,
    /// Its tokens are bound to the TLS client certificate it presents at the mTLS endpoint.
    pub mtls: bool,
}

impl OidcClient {
    /// A client with the provider's default token lifetime, not certificate-bound.
    pub const fn new(
        id: &'static str,
        secret: &'static str,
        plan: &'static str,
        license: &'static str,
    ) -> OidcClient {
        OidcClient {
            id,
            secret,
            plan,
            license,
            ttl: None,
            mtls: false,
        }
    }

    /// Its entry in the provider's clients file.
    fn registration(&self) -> Value {
        let mut entry = json!({"client_id": self.id, "client_secret": self.secret,
                               "plan": self.plan, "license": self.license});
        if let Some(ttl) = self.ttl {
            entry["access_token_ttl"] = json!(ttl);
        }
        if self.mtls {
            entry["mtls"] = json!(true);
        }
        entry
    }
}

/// Plan `enterprise` (`acme/*` pull and push in `SidecarConfig::new`).
pub const ENTERPRISE: OidcClient = OidcClient::new(
    "e2e-enterprise",
    "e2e-enterprise-secret",
    "enterprise",
    "LIC-E2E",
);
/// Plan `enterprise` too, another license (to revoke one and not the other).
pub const ENTERPRISE_2: OidcClient = OidcClient::new(
    "e2e-enterprise-2",
    "e2e-enterprise-2-secret",
    "enterprise",
    "LIC-E2E-2",
);
/// Plan `public` (`public/*` pull only).
pub const PUBLIC: OidcClient = OidcClient::new(
    "e2e-public",
    "e2e-public-secret",
    "public",
    "LIC-E2E-PUBLIC",
);
/// Plan `enterprise` with the license `SidecarConfig::new` revokes.
pub const REVOKED: OidcClient = OidcClient::new(
    "e2e-revoked",
    "e2e-revoked-secret",
    "enterprise",
    "LIC-REVOKED",
);
/// Plan `limited` (the pull-limited plan of `common::limits::with_pull_limit`).
pub const LIMITED: OidcClient = OidcClient::new(
    "e2e-limited",
    "e2e-limited-secret",
    "limited",
    "LIC-E2E-LIMITED",
);
/// Seconds a `SHORT` token lives.
pub const SHORT_SECONDS: u64 = 6;
/// Plan `enterprise`, tokens that expire `SHORT_SECONDS` after issue.
pub const SHORT: OidcClient = OidcClient {
    ttl: Some(SHORT_SECONDS),
    ..OidcClient::new(
        "e2e-short",
        "e2e-short-secret",
        "enterprise",
        "LIC-E2E-SHORT",
    )
};
/// Plan `enterprise`, tokens bound to its TLS client certificate (RFC 8705).
pub const CERT_BOUND: OidcClient = OidcClient {
    mtls: true,
    ..OidcClient::new(
        "e2e-cert-bound",
        "e2e-cert-bound-secret",
        "enterprise",
        "LIC-E2E-MTLS",
    )
};
/// Every client of the shared provider.
pub const CLIENTS: [OidcClient; 7] = [
    ENTERPRISE,
    ENTERPRISE_2,
    PUBLIC,
    REVOKED,
    LIMITED,
    SHORT,
    CERT_BOUND,
];

/// A running `index.mjs`: plain http on a free port (discovery, JWKS, token endpoint) and, for
/// the shared one, an https listener for the mTLS token endpoint. Stopped on drop, and by
/// itself when this process ends (`--exit-on-stdin-close`: its standard input is a pipe from
/// here).
pub struct OidcAuthority {
    child: Child,
    _stdin: ChildStdin,
    issuer: String,
    log: PathBuf,
    _dir: TempDir,
}

impl OidcAuthority {
    /// The provider every test of this binary alive at the same time shares: the `CLIENTS`,
    /// and an https listener (a self-signed server certificate for 127.0.0.1) for the mTLS
    /// token endpoint. Stopped with the last of its users.
    pub fn shared() -> Arc<OidcAuthority> {
        static SHARED: Mutex<Weak<OidcAuthority>> = Mutex::new(Weak::new());
        let mut slot = SHARED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(authority) = slot.upgrade() {
            return authority;
        }
        let dir = tempfile::Builder::new()
            .prefix("e2e-oidc")
            .tempdir()
            .unwrap();
        let clients: Vec<Value> = CLIENTS.iter().map(OidcClient::registration).collect();
        let clients_file = dir.path().join("clients.json");
        fs::write(&clients_file, Value::from(clients).to_string()).unwrap();
        let key = pki::key();
        let cert = pki::cert("127.0.0.1", &key, None, Role::Server);
        fs::write(dir.path().join("tls.crt"), cert.to_pem().unwrap()).unwrap();
        fs::write(
            dir.path().join("tls.key"),
            key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();
        let tls = [
            "--tls-port".to_string(),
            free_port().to_string(),
            "--tls-cert".to_string(),
            dir.path().join("tls.crt").display().to_string(),
            "--tls-key".to_string(),
            dir.path().join("tls.key").display().to_string(),
        ];
        let authority = Arc::new(OidcAuthority::launch(dir, &clients_file, &tls));
        *slot = Arc::downgrade(&authority);
        authority
    }

    /// A provider of the caller's own for the clients in `clients` (such as the shipped
    /// `scripts/oidc-authority/clients.json`), plain http only.
    pub fn start_with_clients(clients: &Path) -> OidcAuthority {
        let dir = tempfile::Builder::new()
            .prefix("e2e-oidc")
            .tempdir()
            .unwrap();
        OidcAuthority::launch(dir, clients, &[])
    }

    fn launch(dir: TempDir, clients: &Path, extra: &[String]) -> OidcAuthority {
        let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oidc-authority");
        assert!(
            project.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: npm ci --prefix scripts/oidc-authority (.ci/run does it)"
        );
        let port = free_port();
        let log = dir.path().join("oidc.log");
        let file = File::create(&log).unwrap();
        let mut child = Command::new("node")
            .arg(project.join("index.mjs"))
            .args([
                "--port",
                &port.to_string(),
                "--exit-on-stdin-close",
                "--dir",
            ])
            .arg(dir.path().join("keys"))
            .arg("--clients")
            .arg(clients)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("run node (apt-get install nodejs npm; .ci/run installs it)");
        let stdin = child.stdin.take().expect("a pipe to node's stdin");
        let mut authority = OidcAuthority {
            child,
            _stdin: stdin,
            issuer: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let http = client();
        let metadata = format!("{}/.well-known/openid-configuration", authority.issuer);
        poll(START_DEADLINE, "oidc-provider discovery", || {
            if let Ok(Some(status)) = authority.child.try_wait() {
                panic!("oidc-provider exited ({status}):\n{}", authority.log_tail());
            }
            (http.get(&metadata).send().ok()?.status() == 200).then_some(())
        });
        if !extra.is_empty() {
            // The https listener starts beside the http one: wait for it too.
            let endpoint = authority.mtls_token_endpoint();
            poll(START_DEADLINE, "oidc-provider's mTLS listener", || {
                http.get(&endpoint).send().ok().map(|_| ())
            });
        }
        authority
    }

    /// `http://127.0.0.1:PORT`, what the sidecar's `authority.issuer` names.
    pub fn issuer(&self) -> String {
        self.issuer.clone()
    }

    /// The discovery document.
    pub fn metadata(&self) -> Value {
        client()
            .get(format!("{}/.well-known/openid-configuration", self.issuer))
            .send()
            .expect("GET discovery")
            .json()
            .expect("discovery JSON")
    }

    /// The token endpoint for certificate-bound clients, as discovery names it
    /// (`mtls_endpoint_aliases.token_endpoint`, RFC 8705 section 5).
    pub fn mtls_token_endpoint(&self) -> String {
        let metadata = self.metadata();
        metadata["mtls_endpoint_aliases"]["token_endpoint"]
            .as_str()
            .unwrap_or_else(|| panic!("no mtls_endpoint_aliases in discovery: {metadata}"))
            .to_string()
    }

    /// The client-credentials token request of `who` at `endpoint` over `http`, with a DPoP
    /// proof by `key` when given: the status and the JSON answer.
    fn request_at(
        &self,
        http: &reqwest::blocking::Client,
        endpoint: &str,
        who: &OidcClient,
        key: Option<&DpopKey>,
    ) -> (u16, Value) {
        let mut request = http
            .post(endpoint)
            .basic_auth(who.id, Some(who.secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "registry.token.issue"),
            ]);
        if let Some(key) = key {
            request = request.header(
                "DPoP",
                key.sign(&key.header(), &key.claims("POST", endpoint, None)),
            );
        }
        let response = request.send().expect("POST /token at oidc-provider");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// The token request of `who` at the (plain http) token endpoint, with a DPoP proof by
    /// `key` when given.
    pub fn request(&self, who: &OidcClient, key: Option<&DpopKey>) -> (u16, Value) {
        let endpoint = format!("{}/token", self.issuer);
        self.request_at(&client(), &endpoint, who, key)
    }

    /// The token request of `who` at the mTLS token endpoint, presenting the certificate in
    /// `pki`'s folder `cert_dir` (`client-a`, `client-b`) or none.
    pub fn mtls_request(
        &self,
        who: &OidcClient,
        pki: &Pki,
        cert_dir: Option<&str>,
    ) -> (u16, Value) {
        let mut builder = reqwest::blocking::Client::builder()
            .no_proxy()
            .danger_accept_invalid_certs(true);
        if let Some(dir) = cert_dir {
            let read = |file: &str| fs::read(pki.path(dir).join(file)).unwrap();
            let identity =
                reqwest::Identity::from_pkcs8_pem(&read("client.cert"), &read("client.key"))
                    .expect("the client certificate and key");
            builder = builder.identity(identity);
        }
        let http = builder.build().unwrap();
        self.request_at(&http, &self.mtls_token_endpoint(), who, None)
    }

    /// The access token of a successful answer.
    fn access_token(&self, (status, body): (u16, Value), what: &str) -> String {
        assert_eq!(
            status,
            200,
            "{what}: {body}\noidc-provider log:\n{}",
            self.log_tail()
        );
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no access_token in {body}"))
            .to_string()
    }

    /// An OpTok of `who`, bound to `key` when given, unbound (for stock clients under
    /// `senderConstraint: none`) when not.
    pub fn optok(&self, who: &OidcClient, key: Option<&DpopKey>) -> String {
        self.access_token(self.request(who, key), who.id)
    }

    /// A fresh DPoP key and an OpTok of `who` bound to it.
    pub fn bound(&self, who: &OidcClient) -> (DpopKey, String) {
        let key = DpopKey::new();
        let optok = self.optok(who, Some(&key));
        (key, optok)
    }

    /// An OpTok of the certificate-bound `who`, bound to the certificate in `pki`'s `cert_dir`.
    pub fn mtls_optok(&self, who: &OidcClient, pki: &Pki, cert_dir: &str) -> String {
        self.access_token(self.mtls_request(who, pki, Some(cert_dir)), who.id)
    }

    /// The last 40 lines of the provider's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 40)
    }
}

impl Drop for OidcAuthority {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- oidc-provider log tail ----\n{}", self.log_tail());
        }
    }
}

/// A `Stack` whose Authority is the shared provider.
pub type ProviderStack = Stack<Arc<OidcAuthority>>;

impl Stack<Arc<OidcAuthority>> {
    /// The default stack (see `SidecarConfig::new`) trusting the shared provider.
    pub fn on_provider() -> ProviderStack {
        Stack::on_provider_with(|_| {})
    }

    /// A stack trusting the shared provider, whose sidecar config `customize` edits first.
    pub fn on_provider_with(customize: impl FnOnce(&mut SidecarConfig)) -> ProviderStack {
        let authority = OidcAuthority::shared();
        let issuer = authority.issuer();
        Stack::start_on(authority, &issuer, customize)
    }
}
