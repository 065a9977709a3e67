//! Configuration: the YAML file (`file`), its environment overrides (`env`), validation into
//! ready-to-use `Settings`, and the hot-reload service (`watch`).
//!
//! Loading never panics and reports every problem with its YAML path, so that `check-config`
//! can list them all and a bad reload can keep the configuration in force.
//!
//! Config is the assembler: each domain defines the slice it is built from and config builds
//! one of each (`token::Issuer`, `policy::PolicySpec` for `Policy::compile` (`policy`),
//! `authority::AuthorityConfig`, `state::redis::RedisSettings` (`state`),
//! `cache::CacheSettings` (`cache`), `edge::TrustedEdge`). No domain imports `config`; the
//! server, the proxy and the tools run on the assembled [`Settings`].

pub mod cache;
pub mod env;
pub mod file;
pub mod locate;
mod policy;
pub mod revocations;
pub mod state;
#[cfg(test)]
pub mod testkit;
pub mod watch;

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use url::Url;

use crate::authority::{AuthorityConfig, NonceConfig, SenderConstraint};
use crate::edge::TrustedEdge;
use crate::policy::Policy;
use crate::token::{Issuer, KeyIdFormat, KeySet, RefreshSettings, SigningConfig};
use file::FileConfig;

/// Where the configuration is read from when neither `--config` nor the environment says.
pub const DEFAULT_PATH: &str = "config/registry-token.yaml";

/// One problem in the configuration, with the YAML path it concerns and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
    /// The `REGISTRY_TOKEN_...` override that set the value at fault; `None`: the file did.
    pub variable: Option<String>,
    /// `(line, column)` in the file, 1-based, when known.
    pub location: Option<(usize, usize)>,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
            variable: None,
            location: None,
        }
    }

    /// Where to look: `VARIABLE` for an override, else `file:line:column` (or `file`).
    pub fn origin(&self, file: &Path) -> String {
        match (&self.variable, self.location) {
            (Some(variable), _) => variable.clone(),
            (None, Some((line, column))) => format!("{}:{line}:{column}", file.display()),
            (None, None) => file.display().to_string(),
        }
    }

    /// One line for an operator: origin, YAML path, message.
    pub fn report(&self, file: &Path) -> String {
        format!("{}: {self}", self.origin(file))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// One line per problem, each naming its file position or environment variable.
    pub fn lines(&self) -> Vec<String> {
        self.errors.iter().map(|e| e.report(&self.file)).collect()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.lines().join("; "))
    }
}

impl std::error::Error for ConfigErrors {}

/// The upstream registry, resolved once at load.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: Url,
    pub addr: SocketAddr,
    pub tls: bool,
    pub sni: String,
    /// `scheme://host[:port]` as the registry writes it in `Location` headers.
    pub origin: String,
    /// Private CA for an https upstream (`upstream.caCertificate`).
    pub ca: Option<Arc<Box<[X509]>>>,
    pub insecure_skip_verify: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

/// `server.limits`: caps on open client connections and deadlines on slow ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// The whole request head must arrive within it.
    pub header_timeout: Duration,
    /// A kept-alive connection is closed after this long without a next request.
    pub idle_timeout: Duration,
}

/// The main listener's certificate chain and key, read at every (re)load.
pub struct ServerTls {
    /// Leaf first.
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
    /// Client certificates are requested and verified against this CA bundle.
    pub client_ca: Option<PathBuf>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("chain", &self.chain.len())
            .field("key", &"<redacted>")
            .field("client_ca", &self.client_ca)
            .finish()
    }
}

/// The validated configuration, every value ready to use.
#[derive(Debug)]
pub struct Settings {
    /// The file as read (after environment overrides), to tell restart-only changes at reload.
    pub file: FileConfig,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub tls: Option<Arc<ServerTls>>,
    pub grace_period: Duration,
    /// How long the listeners keep accepting after SIGTERM.
    pub drain_delay: Duration,
    /// `server.upgradeSocket` as written; `None`: the private default (`server::upgrade`).
    pub upgrade_socket: Option<PathBuf>,
    pub limits: Limits,
    pub trusted_edge: Option<TrustedEdge>,
    pub upstream: Upstream,
    /// `scheme://host[:port]` of the sidecar as clients reach it (from `registry.realm`).
    pub public_origin: String,
    pub public_scheme: String,
    pub public_host: String,
    pub realm: String,
    pub service: String,
    /// The Authority these settings ask for. The running sidecar reads the one in force
    /// (`Succession::current().config()`), which takes over from a reload once its keys are
    /// fetched; only the keys loop and the CLI read this.
    pub authority: AuthorityConfig,
    /// The token issuer's slice: signing keys, lifetimes, services, refresh tokens.
    pub issuer: Issuer,
    pub policy: Policy,
    /// Increases by one at every reload that takes effect.
    pub generation: u64,
    /// `state.redis`; `None`: spent proofs and counts stay in memory. Read at start only.
    pub state: Option<crate::state::redis::RedisSettings>,
    /// `revokedLicensesFile`, resolved against the configuration file's folder by [`load`]:
    /// where revocations live without `state.redis`.
    pub revoked_licenses_file: PathBuf,
    /// `cache` (docs/cache.md); sizes apply on reload.
    pub cache: crate::cache::CacheSettings,
}

/// `revokedLicensesFile` when unset: beside the configuration file.
pub const DEFAULT_REVOKED_LICENSES_FILE: &str = "revoked-licenses.txt";

/// The path of the configuration: `--config`, else `$REGISTRY_TOKEN_CONFIG`, else the default.
pub fn resolve_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("REGISTRY_TOKEN_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// Reads, overrides from the environment, types and validates the file at `path`.
pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
    let fail = |errors| ConfigErrors {
        file: path.to_path_buf(),
        errors,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(vec![ConfigError::new(
            "",
            format!("cannot read the file: {e}"),
        )])
    })?;
    let mut settings = check(&text, std::env::vars()).map_err(fail)?;
    // A relative `revokedLicensesFile` (and the default) lives beside the configuration.
    if settings.revoked_licenses_file.is_relative() {
        if let Some(folder) = path.parent() {
            settings.revoked_licenses_file = folder.join(&settings.revoked_licenses_file);
        }
    }
    Ok(settings)
}

/// What `load` does once the file is read: every problem of the text and of the overrides in
/// `vars` (unknown keys, wrong types, invalid values), each with its origin.
pub fn check(
    text: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, Vec<ConfigError>> {
    let Parsed {
        file,
        mut errors,
        overridden,
        set_aside,
    } = parse_all(text, vars);
    let settings = file.and_then(|file| {
        validate(file)
            .map_err(|problems| {
                // A value set aside as mistyped is reported already; its default is not.
                errors.extend(
                    problems
                        .into_iter()
                        .filter(|p| !set_aside.iter().any(|r| under(&p.path, r))),
                )
            })
            .ok()
    });
    match settings {
        Some(settings) if errors.is_empty() => Ok(settings),
        _ => Err(annotate(errors, text, &overridden)),
    }
}

/// Parses YAML text, applies the overrides in `vars`, and types it (unknown keys refused);
/// on failure, every problem found.
pub fn parse(
    text: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<FileConfig, Vec<ConfigError>> {
    let parsed = parse_all(text, vars);
    match parsed.file {
        Some(file) if parsed.errors.is_empty() => Ok(file),
        _ => Err(annotate(parsed.errors, text, &parsed.overridden)),
    }
}

/// At most this many typing problems are collected from one file.
const MAX_TYPE_PROBLEMS: usize = 100;

/// The outcome of reading a file leniently.
#[derive(Default)]
struct Parsed {
    /// The typed file once unknown and mistyped keys are set aside; `None` when it cannot be.
    file: Option<FileConfig>,
    errors: Vec<ConfigError>,
    /// `(YAML path, variable)` of every override applied.
    overridden: Vec<(String, String)>,
    /// YAML paths removed because they were unknown or mistyped.
    set_aside: Vec<String>,
}

/// Parses, applies the overrides, and types the file, collecting every unknown key and every
/// mistyped value instead of stopping at the first (serde stops at one): each is reported,
/// removed from the document, and typing goes on.
fn parse_all(text: &str, vars: impl IntoIterator<Item = (String, String)>) -> Parsed {
    let mut parsed = Parsed::default();
    if text.trim().is_empty() {
        parsed
            .errors
            .push(ConfigError::new("", "the file is empty"));
        return parsed;
    }
    let mut value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            let mut error = ConfigError::new("", format!("not valid YAML: {e}"));
            error.location = e.location().map(|l| (l.line(), l.column()));
            parsed.errors.push(error);
            return parsed;
        }
    };
    if !value.is_mapping() {
        parsed
            .errors
            .push(ConfigError::new("", "the file must be a YAML mapping"));
        return parsed;
    }
    let (overridden, env_errors) = env::apply_traced(&mut value, vars);
    parsed.overridden = overridden;
    parsed.errors.extend(env_errors);
    for _ in 0..MAX_TYPE_PROBLEMS {
        let e = match serde_path_to_error::deserialize::<_, FileConfig>(value.clone()) {
            Ok(file) => {
                parsed.file = Some(file);
                break;
            }
            Err(e) => e,
        };
        let at = e.path().to_string();
        let at = if at == "." { String::new() } else { at };
        let message = e.into_inner().to_string();
        let quoted = message.split('`').nth(1).unwrap_or_default().to_string();
        if message.starts_with("missing field") {
            // Nothing to set aside: report it, unless it is a key set aside just before.
            if !parsed.set_aside.contains(&join(&at, &quoted)) {
                parsed.errors.push(ConfigError::new(at, message));
            }
            break;
        }
        let path = match message.starts_with("unknown field") {
            true if !at.ends_with(&quoted) || at.is_empty() => join(&at, &quoted),
            _ => at,
        };
        parsed.errors.push(ConfigError::new(path.clone(), message));
        if !set_aside(&mut value, &path) {
            break;
        }
        parsed.set_aside.push(path);
    }
    parsed
}

/// `parent.key`, or `key` at the top.
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// True when `path` is `prefix` or inside it.
fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// The errors `check-config` finds in the plans (`plans`, `defaultPlan`, `anonymous`), from the
/// same validation: what `doctor`'s `check.plans` reports as failures, even when another part
/// of the configuration does not load.
pub fn plan_errors(file: FileConfig) -> Vec<ConfigError> {
    let Err(errors) = validate(file) else {
        return Vec::new();
    };
    errors
        .into_iter()
        .filter(|e| {
            ["plans", "defaultPlan", "anonymous"]
                .iter()
                .any(|p| under(&e.path, p))
        })
        .collect()
}

/// Removes the mapping key at `path` from `value`; false when `path` is not a mapping key
/// (a list item: removing it would shift the paths of the items after it).
fn set_aside(value: &mut serde_yaml_ng::Value, path: &str) -> bool {
    use locate::Step;
    let Some(steps) = locate::steps(path) else {
        return false;
    };
    let Some((Step::Key(last), parents)) = steps.split_last() else {
        return false;
    };
    let mut node = value;
    for step in parents {
        let next = match (step, node) {
            (Step::Key(k), serde_yaml_ng::Value::Mapping(m)) => m.get_mut(*k),
            (Step::Index(i), serde_yaml_ng::Value::Sequence(items)) => items.get_mut(*i),
            _ => None,
        };
        let Some(next) = next else { return false };
        node = next;
    }
    match node {
        serde_yaml_ng::Value::Mapping(m) => m.remove(*last).is_some(),
        _ => false,
    }
}

/// Names the origin of each problem: the overriding variable when the value at fault came
/// from the environment, else the problem's line and column in `text`.
fn annotate(
    mut errors: Vec<ConfigError>,
    text: &str,
    overridden: &[(String, String)],
) -> Vec<ConfigError> {
    for e in &mut errors {
        if e.variable.is_some() || e.location.is_some() {
            continue;
        }
        // The deepest override that covers the path is the one at fault.
        let by = overridden
            .iter()
            .filter(|(path, _)| under(&e.path, path))
            .max_by_key(|(path, _)| path.len());
        match by {
            Some((_, variable)) => e.variable = Some(variable.clone()),
            None if !e.path.is_empty() => e.location = locate::locate(text, &e.path),
            None => {}
        }
    }
    errors
}

/// Collects problems while validating, each under its YAML path.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(path, message));
    }

    fn duration(&mut self, path: &str, text: &str) -> Duration {
        crate::duration::parse(text).unwrap_or_else(|e| {
            self.add(path, e);
            Duration::ZERO
        })
    }

    fn socket(&mut self, path: &str, text: &str) -> SocketAddr {
        text.parse().unwrap_or_else(|_| {
            self.add(
                path,
                format!("`{text}` is not an address like 0.0.0.0:8085"),
            );
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    }

    fn url(&mut self, path: &str, text: &str) -> Option<Url> {
        match Url::parse(text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
            Ok(_) => {
                self.add(
                    path,
                    format!("`{text}` must be an http or https URL with a host"),
                );
                None
            }
            Err(e) => {
                self.add(path, format!("`{text}` is not a URL ({e})"));
                None
            }
        }
    }

    /// An https URL, or plain http to a loopback host (development and tests).
    fn secure_url(&mut self, path: &str, text: &str) -> Option<Url> {
        let url = self.url(path, text)?;
        if url.scheme() == "http" && !is_loopback(&url) {
            self.add(path, "must be https (plain http only for a loopback host)");
        }
        Some(url)
    }
}

/// True when the URL's host is localhost or a loopback address.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Turns the typed file into `Settings`, or every problem found. Relative paths are read from
/// the working directory, as written. One function per section, in the file's order.
pub fn validate(file: FileConfig) -> Result<Settings, Vec<ConfigError>> {
    let mut p = Problems::default();
    let server = server(&file.server, &mut p);
    let upstream = upstream(&file.upstream, &mut p);
    let authority = authority(&file.authority, &file.server, &mut p);
    let registry = registry(&file.registry, &mut p);
    let signing = signing(&file.signing, &mut p);
    let (policy, problems) = Policy::compile(&policy::spec(&file));
    p.0.extend(problems.into_iter().map(ConfigError::from));
    let refresh = refresh_settings(&file, &mut p);
    let state = state::state(&file.state, &mut p);
    if file
        .revoked_licenses_file
        .as_deref()
        .is_some_and(|f| f.trim().is_empty())
    {
        p.add("revokedLicensesFile", "must name a file (or be left out)");
    }
    let cache = cache::cache(&file.cache, &mut p);

    let (Some(upstream), Some(realm), Some(keys), true) =
        (upstream, registry.realm, signing.keys, p.0.is_empty())
    else {
        return Err(p.0);
    };
    let Server {
        listen,
        admin_listen,
        tls,
        grace_period,
        drain_delay,
        upgrade_socket,
        limits,
        trusted_edge,
    } = server;
    let public_host = match realm.port() {
        Some(port) => format!("{}:{port}", realm.host_str().unwrap_or_default()),
        None => realm.host_str().unwrap_or_default().to_string(),
    };
    Ok(Settings {
        listen,
        admin_listen,
        tls,
        grace_period,
        drain_delay,
        upgrade_socket,
        limits,
        trusted_edge,
        upstream,
        public_origin: origin(&realm),
        public_scheme: realm.scheme().to_string(),
        public_host,
        realm: realm.to_string(),
        service: file.registry.service.clone(),
        // DPoP proofs name the realm: the registry section's.
        authority: AuthorityConfig {
            realm: realm.to_string(),
            ..authority
        },
        issuer: Issuer {
            name: file.signing.issuer.clone(),
            services: registry.services,
            lifetime: signing.lifetime,
            keys: Arc::new(keys),
            refresh,
        },
        policy,
        state,
        revoked_licenses_file: PathBuf::from(
            file.revoked_licenses_file
                .as_deref()
                .unwrap_or(DEFAULT_REVOKED_LICENSES_FILE),
        ),
        cache,
        file,
        generation: 1,
    })
}

/// The `server` section, ready to use.
struct Server {
    listen: SocketAddr,
    admin_listen: SocketAddr,
    tls: Option<Arc<ServerTls>>,
    grace_period: Duration,
    drain_delay: Duration,
    upgrade_socket: Option<PathBuf>,
    limits: Limits,
    trusted_edge: Option<TrustedEdge>,
}

/// `server`: the listeners, their TLS, shutdown, connection limits, the trusted edge.
fn server(s: &file::ServerFile, p: &mut Problems) -> Server {
    let listen = p.socket("server.listen", &s.listen);
    let admin_listen = p.socket("server.adminListen", &s.admin_listen);
    let tls = s.tls.as_ref().and_then(|t| server_tls(t, p));
    let grace_period = p.duration("server.gracePeriod", &s.grace_period);
    let drain_delay = p.duration("server.drainDelay", &s.drain_delay);
    let limits = limits(&s.limits, p);
    let upgrade_socket = s.upgrade_socket.as_ref().map(PathBuf::from);
    if upgrade_socket.as_ref().is_some_and(|s| !s.is_absolute()) {
        p.add("server.upgradeSocket", "must be an absolute path");
    }
    let trusted_edge = s.trusted_edge.as_ref().map(|edge| trusted_edge(edge, p));
    Server {
        listen,
        admin_listen,
        tls,
        grace_period,
        drain_delay,
        upgrade_socket,
        limits,
        trusted_edge,
    }
}

/// `server.trustedEdge`: the peers as addresses (canonical), the header name in lower case.
fn trusted_edge(edge: &file::TrustedEdgeFile, p: &mut Problems) -> TrustedEdge {
    let peers = edge.peers.iter().enumerate().filter_map(|(i, peer)| {
        peer.parse()
            .map_err(|_| {
                p.add(
                    format!("server.trustedEdge.peers[{i}]"),
                    format!("`{peer}` is not an IP address"),
                )
            })
            .ok()
    });
    TrustedEdge::new(peers, &edge.header)
}

/// `upstream`: the registry's URL resolved to an address, its CA, the timeouts.
fn upstream(u: &file::UpstreamFile, p: &mut Problems) -> Option<Upstream> {
    let connect_timeout = p.duration("upstream.connectTimeout", &u.connect_timeout);
    let read_timeout = p.duration("upstream.readTimeout", &u.read_timeout);
    let url = p.url("upstream.url", &u.url);
    let upstream = url.and_then(|url| {
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let Some(addr) = resolve(&host, port) else {
            p.add("upstream.url", format!("cannot resolve the host `{host}`"));
            return None;
        };
        Some(Upstream {
            tls: url.scheme() == "https",
            sni: host,
            origin: origin(&url),
            addr,
            url,
            ca: None,
            insecure_skip_verify: u.insecure_skip_verify,
            connect_timeout,
            read_timeout,
        })
    });
    upstream.map(|mut upstream| {
        if let Some(path) = &u.ca_certificate {
            match read_certs(path) {
                Ok(certs) => upstream.ca = Some(Arc::new(certs.into_boxed_slice())),
                Err(e) => p.add("upstream.caCertificate", e),
            }
        }
        upstream
    })
}

/// The address of `host` (a name or an IP literal) at `port`; `None` when it does not resolve.
fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Some(SocketAddr::new(ip, port)),
        // Prefer IPv4: `localhost` often resolves to ::1 first, where registries rarely listen.
        Err(_) => (host, port).to_socket_addrs().ok().and_then(|addrs| {
            let addrs: Vec<SocketAddr> = addrs.collect();
            addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or(addrs.first())
                .copied()
        }),
    }
}

/// `authority`: the OpTok issuer, audiences, sender constraint, DPoP and claim names. The
/// sender constraint `mtls` needs a way for certificates in (`server`). `realm` is left empty:
/// it is the registry section's.
fn authority(
    a: &file::AuthorityFile,
    server: &file::ServerFile,
    p: &mut Problems,
) -> AuthorityConfig {
    let issuer = p.secure_url("authority.issuer", &a.issuer);
    let metadata_address = match &a.metadata_address {
        Some(m) => {
            p.secure_url("authority.metadataAddress", m);
            m.clone()
        }
        None => format!(
            "{}/.well-known/openid-configuration",
            a.issuer.trim_end_matches('/')
        ),
    };
    if let Some(j) = &a.jwks_uri {
        p.secure_url("authority.jwksUri", j);
    }
    if issuer.is_some() && a.audiences.is_empty() {
        p.add("authority.audiences", "must name at least one audience");
    }
    let sender_constraint = match a.sender_constraint.as_str() {
        "dpop" => SenderConstraint::Dpop,
        "mtls" => SenderConstraint::Mtls,
        "dpopOrMtls" => SenderConstraint::DpopOrMtls,
        "none" => SenderConstraint::None,
        other => {
            p.add(
                "authority.senderConstraint",
                format!("`{other}` is not one of dpop, mtls, dpopOrMtls, none"),
            );
            SenderConstraint::Dpop
        }
    };
    let client_ca = server.tls.as_ref().and_then(|t| t.client_ca.as_ref());
    if sender_constraint == SenderConstraint::Mtls
        && client_ca.is_none()
        && server.trusted_edge.is_none()
    {
        p.add("authority.senderConstraint", "mtls needs server.tls.clientCa (or server.trustedEdge), so that clients can present certificates");
    }
    let clock_skew = p.duration("authority.clockSkew", &a.clock_skew);
    let proof_lifetime = p.duration("authority.dpop.proofLifetime", &a.dpop.proof_lifetime);
    let nonce = dpop(&a.dpop, p);
    AuthorityConfig {
        issuer: a.issuer.clone(),
        metadata_address,
        jwks_uri: a.jwks_uri.clone(),
        audiences: a.audiences.clone(),
        required_scopes: a.required_scopes.clone(),
        sender_constraint,
        clock_skew,
        proof_lifetime,
        plan_claim: a.claims.plan.clone(),
        license_claim: a.claims.license.clone(),
        realm: String::new(),
        replay_capacity: a.dpop.replay_capacity,
        replay_per_key: a.dpop.replay_per_key,
        nonce,
    }
}

/// `authority.dpop` beyond the proof lifetime: the replay store's limits and the server
/// nonces (`None`: off).
fn dpop(d: &file::DpopFile, p: &mut Problems) -> Option<NonceConfig> {
    let nonce_lifetime = p.duration("authority.dpop.nonceLifetime", &d.nonce_lifetime);
    if d.replay_capacity == 0 {
        p.add("authority.dpop.replayCapacity", "must be at least 1");
    }
    if !(1..=d.replay_capacity.max(1)).contains(&d.replay_per_key) {
        p.add(
            "authority.dpop.replayPerKey",
            "must be at least 1 and at most replayCapacity",
        );
    }
    match (d.require_nonce, &d.nonce_secret) {
        (false, _) => None,
        (true, Some(secret)) if secret.0.len() >= 32 => Some(NonceConfig {
            secret: secret.0.as_bytes().to_vec(),
            lifetime: nonce_lifetime,
        }),
        (true, Some(_)) => {
            p.add("authority.dpop.nonceSecret", "must be at least 32 bytes");
            None
        }
        (true, None) => {
            p.add("authority.dpop.nonceSecret", "requireNonce needs a nonceSecret (shared by every replica; prefer REGISTRY_TOKEN_AUTHORITY__DPOP__NONCESECRET)");
            None
        }
    }
}

/// The `registry` section, ready to use.
struct Registry {
    /// `registry.realm`; `None` when it is not a URL.
    realm: Option<Url>,
    /// `service` and `allowedServices`.
    services: Vec<String>,
}

/// `registry`: the realm clients are sent to and the services tokens may name.
fn registry(r: &file::RegistryFile, p: &mut Problems) -> Registry {
    let realm = p.url("registry.realm", &r.realm);
    if r.service.trim().is_empty() {
        p.add("registry.service", "must not be empty");
    }
    let mut services = vec![r.service.clone()];
    services.extend(r.allowed_services.iter().cloned());
    Registry { realm, services }
}

/// The `signing` section, ready to use.
struct Signing {
    lifetime: Duration,
    /// `None` when the keys cannot be loaded.
    keys: Option<KeySet>,
}

/// `signing`: the issuer, the tokens' lifetime, the keys loaded.
fn signing(s: &file::SigningFile, p: &mut Problems) -> Signing {
    if s.issuer.trim().is_empty() {
        p.add("signing.issuer", "must not be empty");
    }
    let lifetime = p.duration("signing.lifetime", &s.lifetime);
    if lifetime < Duration::from_secs(60) && !lifetime.is_zero() {
        p.add(
            "signing.lifetime",
            "must be at least 60s (clients refuse shorter tokens)",
        );
    }
    let key_id_format = match s.key_id_format.as_str() {
        "libtrust" => KeyIdFormat::Libtrust,
        "thumbprint" => KeyIdFormat::Thumbprint,
        other => {
            p.add(
                "signing.keyIdFormat",
                format!("`{other}` is not one of libtrust, thumbprint"),
            );
            KeyIdFormat::Libtrust
        }
    };
    let config = SigningConfig {
        key_path: PathBuf::from(&s.key_path),
        key_password: s.key_password.as_ref().map(|p| p.0.clone()),
        certificate_chain: s.certificate_chain.as_ref().map(PathBuf::from),
        key_id: s.key_id.clone(),
        key_id_format,
        previous_keys: s.previous_keys.iter().map(PathBuf::from).collect(),
    };
    let keys = KeySet::load(&config)
        .map_err(|e| p.add("signing.keyPath", e.to_string()))
        .ok();
    Signing { lifetime, keys }
}

/// `refreshTokens` and `revokedRefreshTokens`.
fn refresh_settings(file: &FileConfig, p: &mut Problems) -> RefreshSettings {
    let r = &file.refresh_tokens;
    let lifetime = p.duration("refreshTokens.lifetime", &r.lifetime);
    if lifetime.is_zero() && crate::duration::parse(&r.lifetime).is_ok() {
        p.add("refreshTokens.lifetime", "must be longer than 0s");
    }
    let audience = crate::token::refresh::AUDIENCE;
    if r.enabled
        && (file.registry.service == audience
            || file.registry.allowed_services.iter().any(|s| s == audience))
    {
        p.add(
            "registry.service",
            format!("`{audience}` is the audience of refresh tokens"),
        );
    }
    RefreshSettings {
        enabled: r.enabled,
        lifetime,
        revoked: file.revoked_refresh_tokens.iter().cloned().collect(),
    }
}

/// `server.limits`, each problem under its path.
fn limits(l: &file::LimitsFile, p: &mut Problems) -> Limits {
    let mut positive_count = |path: &str, n: usize| {
        if n == 0 {
            p.add(path, "must be at least 1");
        }
        n
    };
    let max_connections = positive_count("server.limits.maxConnections", l.max_connections);
    let max_connections_per_ip = positive_count(
        "server.limits.maxConnectionsPerIp",
        l.max_connections_per_ip,
    );
    let mut positive_duration = |path: &str, text: &str| {
        let d = p.duration(path, text);
        if d.is_zero() && crate::duration::parse(text).is_ok() {
            p.add(path, "must be longer than 0s");
        }
        d
    };
    Limits {
        max_connections,
        max_connections_per_ip,
        header_timeout: positive_duration("server.limits.headerTimeout", &l.header_timeout),
        idle_timeout: positive_duration("server.limits.idleTimeout", &l.idle_timeout),
    }
}

/// Every certificate in a PEM file.
fn read_certs(path: &str) -> Result<Vec<X509>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    let certs = X509::stack_from_pem(&pem)
        .map_err(|e| format!("`{path}` is not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(format!("`{path}` holds no certificate"));
    }
    Ok(certs)
}

/// The listener's certificate chain and key, checked to belong together.
fn server_tls(t: &file::TlsFile, p: &mut Problems) -> Option<Arc<ServerTls>> {
    let chain = read_certs(&t.certificate)
        .map_err(|e| p.add("server.tls.certificate", e))
        .ok();
    let key = std::fs::read(&t.private_key)
        .map_err(|e| format!("cannot read `{}`: {e}", t.private_key))
        .and_then(|pem| {
            PKey::private_key_from_pem(&pem)
                .map_err(|e| format!("`{}` is not a PEM private key: {e}", t.private_key))
        })
        .map_err(|e| p.add("server.tls.privateKey", e))
        .ok();
    if let Some(ca) = &t.client_ca {
        if let Err(e) = read_certs(ca) {
            p.add("server.tls.clientCa", e);
        }
    }
    let (chain, key) = (chain?, key?);
    let matches = chain[0]
        .public_key()
        .map(|k| k.public_eq(&key))
        .unwrap_or(false);
    if !matches {
        p.add(
            "server.tls.privateKey",
            "does not match the certificate's public key",
        );
        return None;
    }
    Some(Arc::new(ServerTls {
        chain,
        key,
        client_ca: t.client_ca.as_ref().map(PathBuf::from),
    }))
}

/// The sections that differ between two files and only take effect after a restart: the
/// listeners and `state`. (A changed `authority` section builds a new Authority beside the one
/// in force: see [`crate::authority::Succession`].)
pub fn restart_only_changes(old: &FileConfig, new: &FileConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if !old.server.same_listeners(&new.server) {
        changed.push("server");
    }
    if old.state != new.state {
        changed.push("state");
    }
    let disk_path = |f: &FileConfig| f.cache.disk.as_ref().map(|d| d.path.clone());
    if disk_path(old) != disk_path(new) {
        changed.push("cache.disk.path");
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const MINIMAL: &str = "authority:\n  issuer: http://127.0.0.1:9\nregistry:\n  realm: http://127.0.0.1:8085/token\n  service: registry.test\n";

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    /// Files that are not valid are refused with the place of the problem
    /// (docs/security.md, case 65).
    #[rstest]
    #[case::empty("", "")]
    #[case::tab_indentation("authority:\n\tissuer: x\n", "")]
    #[case::duplicate_key(
        "authority:\n  issuer: a\n  issuer: b\nregistry:\n  realm: x\n  service: y\n",
        ""
    )]
    #[case::unknown_key(
        "authority:\n  issuer: a\n  requried_audience: x\nregistry:\n  realm: x\n  service: y\n",
        "authority"
    )]
    #[case::wrong_type(
        "authority:\n  issuer: a\n  audiences: 5\nregistry:\n  realm: x\n  service: y\n",
        "authority.audiences"
    )]
    #[case::plans_not_a_list(
        "authority:\n  issuer: a\nregistry:\n  realm: x\n  service: y\nplans: {}\n",
        "plans"
    )]
    #[case::not_a_mapping("- a\n- b\n", "")]
    fn malformed_files_are_refused(#[case] text: &str, #[case] path_starts: &str) {
        let errors = parse(text, no_env()).expect_err("must be refused");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].path.starts_with(path_starts), "{errors:?}");
        assert!(!errors[0].message.is_empty());
    }

    /// A YAML syntax error carries its line and column.
    #[test]
    fn syntax_errors_have_a_location() {
        let errors = parse("authority:\n  issuer: a\n  issuer: b\n", no_env()).unwrap_err();
        assert_eq!(errors[0].location.map(|l| l.0), Some(2), "{errors:?}");
    }

    /// Every unknown key and every mistyped value of a file is reported in one run, each under
    /// its path and at its line and column; a bad value from an override names the variable.
    #[test]
    fn every_problem_is_reported_with_its_origin() {
        let text = format!(
            "{MINIMAL}  requried_audience: x\ndefaultPlann: p\nsigning:\n  lifetime: [5m]\n  keyIdFormat: pem\n"
        );
        let vars = vec![(
            "REGISTRY_TOKEN_AUTHORITY__CLOCKSKEW".to_string(),
            "soon".to_string(),
        )];
        let errors = check(&text, vars).unwrap_err();
        type Origin<'a> = (&'a str, Option<(usize, usize)>, Option<&'a str>);
        let found: Vec<Origin> = errors
            .iter()
            .map(|e| (e.path.as_str(), e.location, e.variable.as_deref()))
            .collect();
        for want in [
            ("registry.requried_audience", Some((6, 3)), None),
            ("defaultPlann", Some((7, 1)), None),
            ("signing.lifetime", Some((9, 3)), None),
            (
                "authority.clockSkew",
                None,
                Some("REGISTRY_TOKEN_AUTHORITY__CLOCKSKEW"),
            ),
        ] {
            assert!(found.contains(&want), "{want:?} not in {errors:#?}");
        }
        assert!(
            errors.iter().any(|e| e.path == "signing.keyIdFormat"),
            "{errors:#?}"
        );
        let report = errors[0].report(Path::new("c.yaml"));
        assert!(
            report.starts_with("c.yaml:6:3: registry.requried_audience: unknown field"),
            "{report}"
        );
    }

    /// An unknown key is named in the message, so the operator sees the typo.
    #[test]
    fn unknown_key_is_named() {
        let text = format!("{MINIMAL}defaultPlann: x\n");
        let errors = parse(&text, no_env()).unwrap_err();
        assert!(errors[0].message.contains("defaultPlann"), "{errors:?}");
    }

    /// Actions default to pull; the sender constraint to dpopOrMtls. (What the policy makes of
    /// `defaultPlan` and `revokedLicenses`: `policy::compile`'s tests.)
    #[test]
    fn defaults_apply() {
        let text = format!("{MINIMAL}plans:\n  - name: public\n    repositories:\n      - pattern: \"pub/*\"\ndefaultPlan: public\nrevokedLicenses: [L1]\n");
        let file = parse(&text, no_env()).unwrap();
        assert_eq!(file.plans[0].repositories[0].actions, ["pull"]);
        assert_eq!(file.authority.sender_constraint, "dpopOrMtls");
    }

    /// `server.limits`: the defaults in docs/http.md; counts from the environment (strings) are
    /// read as numbers; zero and bad values are reported under their paths.
    #[test]
    fn server_limits() {
        let file = parse(MINIMAL, no_env()).unwrap();
        let mut p = Problems::default();
        let defaults = limits(&file.server.limits, &mut p);
        assert!(p.0.is_empty(), "{:?}", p.0);
        assert_eq!(
            defaults,
            Limits {
                max_connections: 10_000,
                max_connections_per_ip: 256,
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
            }
        );
        assert_eq!(file.server.drain_delay, "0s");
        assert_eq!(file.server.upgrade_socket, None);

        let vars = vec![(
            "REGISTRY_TOKEN_SERVER__LIMITS__MAXCONNECTIONSPERIP".to_string(),
            "3".to_string(),
        )];
        let file = parse(MINIMAL, vars).unwrap();
        assert_eq!(file.server.limits.max_connections_per_ip, 3);

        let text = format!("{MINIMAL}server:\n  limits:\n    maxConnections: 0\n    maxConnectionsPerIp: 2\n    headerTimeout: 0s\n    idleTimeout: soon\n");
        let file = parse(&text, no_env()).unwrap();
        let mut p = Problems::default();
        limits(&file.server.limits, &mut p);
        let paths: Vec<&str> = p.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "server.limits.maxConnections",
                "server.limits.headerTimeout",
                "server.limits.idleTimeout"
            ]
        );

        for bad in ["-1", "many", "1.5"] {
            let text = format!("{MINIMAL}server:\n  limits:\n    maxConnections: {bad}\n");
            let errors = parse(&text, no_env()).unwrap_err();
            assert_eq!(errors[0].path, "server.limits.maxConnections", "{bad}");
        }
    }

    /// A change of `server.limits` applies on reload; one of the listeners needs a restart.
    #[test]
    fn limits_reload_listeners_restart() {
        let old = parse(MINIMAL, no_env()).unwrap();
        let mut new = old.clone();
        new.server.limits.max_connections = 5;
        assert!(restart_only_changes(&old, &new).is_empty());
        new.server.listen = "0.0.0.0:9".into();
        assert_eq!(restart_only_changes(&old, &new), ["server"]);
    }

    /// Environment overrides apply before typing, so they are validated like the file.
    #[test]
    fn env_overrides_are_typed() {
        let vars = vec![(
            "REGISTRY_TOKEN_SIGNING__LIFETIME".to_string(),
            "10m".to_string(),
        )];
        let file = parse(MINIMAL, vars).unwrap();
        assert_eq!(file.signing.lifetime, "10m");
        let vars = vec![(
            "REGISTRY_TOKEN_AUTHORITY__AUDIENCE".to_string(),
            "x".to_string(),
        )];
        let errors = parse(MINIMAL, vars).unwrap_err();
        assert!(errors[0].message.contains("audience"), "{errors:?}");
    }

    /// The replay store's limits: defaults, from the file or the environment; bad values are
    /// problems under their own paths.
    #[rstest]
    #[case::defaults("", &[], (100_000, 1_000), &[])]
    #[case::file("    replayCapacity: 50\n    replayPerKey: 5\n", &[], (50, 5), &[])]
    #[case::env("", &[("REGISTRY_TOKEN_AUTHORITY__DPOP__REPLAYCAPACITY", "7"), ("REGISTRY_TOKEN_AUTHORITY__DPOP__REPLAYPERKEY", "3")], (7, 3), &[])]
    #[case::zero("    replayCapacity: 0\n    replayPerKey: 0\n", &[], (0, 0), &["authority.dpop.replayCapacity", "authority.dpop.replayPerKey"])]
    #[case::share_above_total("    replayCapacity: 5\n    replayPerKey: 6\n", &[], (5, 6), &["authority.dpop.replayPerKey"])]
    fn replay_limits(
        #[case] dpop: &str,
        #[case] env: &[(&str, &str)],
        #[case] limits: (usize, usize),
        #[case] problems: &[&str],
    ) {
        let text = MINIMAL.replacen(
            "  issuer: http://127.0.0.1:9\n",
            &format!("  issuer: http://127.0.0.1:9\n  dpop:\n{dpop}"),
            usize::from(!dpop.is_empty()),
        );
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let file = parse(&text, env).unwrap();
        let dpop = &file.authority.dpop;
        assert_eq!((dpop.replay_capacity, dpop.replay_per_key), limits);
        // MINIMAL lacks keys and more: keep only the problems of the replay limits.
        let errors = validate(file).err().unwrap_or_default();
        let found: Vec<&str> = errors
            .iter()
            .map(|e| e.path.as_str())
            .filter(|path| path.starts_with("authority.dpop.replay"))
            .collect();
        assert_eq!(found, problems);
    }

    /// A count that is not a whole number is refused at parse time.
    #[test]
    fn replay_limit_not_a_number() {
        let vars = vec![(
            "REGISTRY_TOKEN_AUTHORITY__DPOP__REPLAYPERKEY".to_string(),
            "lots".to_string(),
        )];
        let errors = parse(MINIMAL, vars).unwrap_err();
        assert!(errors[0].message.contains("whole number"), "{errors:?}");
    }
}
