//! The configuration file as written: a serde mirror of docs/configuration.md that refuses unknown
//! keys.
//!
//! Nothing here is checked beyond its type; `validate` turns it into `Settings`.

use serde::Deserialize;

/// A secret from the file (a key password, the nonce key): its `Debug` never shows it.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerFile,
    #[serde(default)]
    pub upstream: UpstreamFile,
    pub authority: AuthorityFile,
    #[serde(default)]
    pub signing: SigningFile,
    pub registry: RegistryFile,
    #[serde(default)]
    pub anonymous: Option<AnonymousFile>,
    #[serde(default)]
    pub plans: Vec<PlanFile>,
    #[serde(default)]
    pub default_plan: Option<String>,
    #[serde(default)]
    pub revoked_licenses: Vec<String>,
    /// Where `registry-token revoke` keeps licenses without `state.redis` (docs/revocation.md);
    /// unset: `revoked-licenses.txt` beside the configuration file.
    #[serde(default)]
    pub revoked_licenses_file: Option<String>,
    /// Refresh tokens for stock clients (docs/http.md, "Refresh tokens").
    #[serde(default)]
    pub refresh_tokens: RefreshTokensFile,
    /// The `jti`s of single refresh tokens no longer honoured.
    #[serde(default)]
    pub revoked_refresh_tokens: Vec<String>,
    /// Shared state for replicas (docs/operations.md, "Running several replicas"); absent: memory.
    #[serde(default)]
    pub state: StateFile,
    /// The edge cache (docs/cache.md); absent: the defaults (a 64 MiB memory tier).
    #[serde(default)]
    pub cache: super::cache::CacheFile,
}

/// `state` as written.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct StateFile {
    pub redis: Option<RedisFile>,
}

/// `state.redis` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedisFile {
    /// Prefer `REGISTRY_TOKEN_STATE__REDIS__URL` when it holds a password.
    pub url: Secret,
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    #[serde(default = "default_timeout")]
    pub timeout: String,
    #[serde(default = "default_on_unavailable")]
    pub on_unavailable: String,
}

fn default_prefix() -> String {
    "registry-token:".into()
}
fn default_timeout() -> String {
    "250ms".into()
}
fn default_on_unavailable() -> String {
    "refuse".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RefreshTokensFile {
    pub enabled: bool,
    pub lifetime: String,
}

impl Default for RefreshTokensFile {
    fn default() -> Self {
        RefreshTokensFile {
            enabled: false,
            lifetime: "720h".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServerFile {
    pub listen: String,
    pub admin_listen: String,
    pub tls: Option<TlsFile>,
    /// How long in-flight requests may run after SIGTERM or an upgrade.
    pub grace_period: String,
    /// How long the listeners keep accepting after SIGTERM, before they close.
    pub drain_delay: String,
    /// The socket listeners are handed over on during a zero-downtime upgrade; unset, one in a
    /// private directory (see `server::upgrade`).
    pub upgrade_socket: Option<String>,
    /// Caps and deadlines on client connections.
    pub limits: LimitsFile,
    /// A TLS-terminating edge in front of the sidecar, trusted to report client certificates.
    pub trusted_edge: Option<TrustedEdgeFile>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrustedEdgeFile {
    /// Addresses of the edge proxies allowed to send the header; from anyone else it is ignored.
    pub peers: Vec<String>,
    /// The header carrying the client certificate, Envoy style (`Hash=<hex SHA-256 of the DER>`).
    #[serde(default = "default_edge_header")]
    pub header: String,
}

fn default_edge_header() -> String {
    "X-Forwarded-Client-Cert".into()
}

impl Default for ServerFile {
    fn default() -> Self {
        ServerFile {
            listen: "0.0.0.0:8085".into(),
            admin_listen: "127.0.0.1:9091".into(),
            tls: None,
            grace_period: "10s".into(),
            drain_delay: "0s".into(),
            upgrade_socket: None,
            limits: LimitsFile::default(),
            trusted_edge: None,
        }
    }
}

impl ServerFile {
    /// True when both name the same listeners and process settings, the part of `server` that
    /// only a restart applies (`limits` applies on reload).
    pub fn same_listeners(&self, other: &ServerFile) -> bool {
        let limits = LimitsFile::default();
        ServerFile {
            limits: limits.clone(),
            ..self.clone()
        } == ServerFile {
            limits,
            ..other.clone()
        }
    }
}

/// `server.limits`: what one client, and all of them, may hold open.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LimitsFile {
    /// Open client connections in all; past it new ones are closed at accept.
    #[serde(deserialize_with = "count")]
    pub max_connections: usize,
    /// Open client connections from one address (IPv6: one /64).
    #[serde(deserialize_with = "count")]
    pub max_connections_per_ip: usize,
    /// Time for the whole request head to arrive.
    pub header_timeout: String,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: String,
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            max_connections: 10_000,
            max_connections_per_ip: 256,
            header_timeout: "10s".into(),
            idle_timeout: "60s".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsFile {
    pub certificate: String,
    pub private_key: String,
    #[serde(default)]
    pub client_ca: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct UpstreamFile {
    pub url: String,
    pub ca_certificate: Option<String>,
    pub insecure_skip_verify: bool,
    /// Time to connect before answering 502.
    pub connect_timeout: String,
    /// Time the registry may stay silent mid-request before answering 504.
    pub read_timeout: String,
}

impl Default for UpstreamFile {
    fn default() -> Self {
        UpstreamFile {
            url: "http://127.0.0.1:5000".into(),
            ca_certificate: None,
            insecure_skip_verify: false,
            connect_timeout: "5s".into(),
            read_timeout: "120s".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorityFile {
    pub issuer: String,
    #[serde(default)]
    pub metadata_address: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default = "default_audiences")]
    pub audiences: Vec<String>,
    #[serde(default = "default_required_scopes")]
    pub required_scopes: Vec<String>,
    #[serde(default = "default_constraint")]
    pub sender_constraint: String,
    #[serde(default = "default_skew")]
    pub clock_skew: String,
    #[serde(default)]
    pub dpop: DpopFile,
    #[serde(default)]
    pub claims: ClaimsFile,
}

fn default_audiences() -> Vec<String> {
    vec!["registry".into()]
}
fn default_required_scopes() -> Vec<String> {
    vec!["registry.token.issue".into()]
}
fn default_constraint() -> String {
    "dpopOrMtls".into()
}
fn default_skew() -> String {
    "30s".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct DpopFile {
    pub proof_lifetime: String,
    pub require_nonce: bool,
    /// Key of the stateless server nonces (at least 32 bytes); share it between replicas.
    pub nonce_secret: Option<Secret>,
    /// How long a server nonce stays valid.
    pub nonce_lifetime: String,
    /// Spent proofs the replay store may hold, all keys together.
    #[serde(deserialize_with = "count")]
    pub replay_capacity: usize,
    /// Spent proofs one DPoP key may hold in the replay store.
    #[serde(deserialize_with = "count")]
    pub replay_per_key: usize,
}

impl Default for DpopFile {
    fn default() -> Self {
        DpopFile {
            proof_lifetime: "60s".into(),
            require_nonce: false,
            nonce_secret: None,
            nonce_lifetime: "5m".into(),
            replay_capacity: 100_000,
            replay_per_key: 1_000,
        }
    }
}

/// A count written as a YAML integer, or as the decimal text an environment override gives.
fn count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Count {
        Number(usize),
        Text(String),
    }
    match Count::deserialize(deserializer)? {
        Count::Number(n) => Ok(n),
        Count::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a whole number"))),
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ClaimsFile {
    pub plan: String,
    pub license: String,
}

impl Default for ClaimsFile {
    fn default() -> Self {
        ClaimsFile {
            plan: "stellaops:plan".into(),
            license: "stellaops:license".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct SigningFile {
    pub issuer: String,
    pub key_path: String,
    pub key_password: Option<Secret>,
    pub certificate_chain: Option<String>,
    pub key_id: Option<String>,
    pub key_id_format: String,
    pub lifetime: String,
    pub previous_keys: Vec<String>,
}

impl Default for SigningFile {
    fn default() -> Self {
        SigningFile {
            issuer: "registry-token".into(),
            key_path: "config/keys/signing.pem".into(),
            key_password: None,
            certificate_chain: None,
            key_id: None,
            key_id_format: "libtrust".into(),
            lifetime: "5m".into(),
            previous_keys: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistryFile {
    pub realm: String,
    pub service: String,
    #[serde(default)]
    pub allowed_services: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AnonymousFile {
    pub plan: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlanFile {
    pub name: String,
    #[serde(default)]
    pub repositories: Vec<RuleFile>,
    /// Pulls and token issuances per window (docs/http.md, "Plan limits"); absent: unlimited.
    #[serde(default)]
    pub limits: Option<PlanLimitsFile>,
    /// Lets the plan's callers list the repositories they may pull (docs/namespaces.md).
    #[serde(default)]
    pub catalog: bool,
}

/// `plans[].limits`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlanLimitsFile {
    #[serde(default)]
    pub pulls: Option<LimitFile>,
    #[serde(default)]
    pub tokens: Option<LimitFile>,
}

/// `{count: N, per: DURATION}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitFile {
    #[serde(deserialize_with = "count")]
    pub count: usize,
    pub per: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleFile {
    pub pattern: String,
    #[serde(default = "default_actions")]
    pub actions: Vec<String>,
}

fn default_actions() -> Vec<String> {
    vec!["pull".into()]
}

/// Every key name of the schema, so that `REGISTRY_TOKEN_SIGNING__KEYID` finds `keyId`; the test
/// `key_names_are_the_schema` walks the serde schema and fails when this list drifts from it.
pub const KEY_NAMES: &[&str] = &[
    "server",
    "listen",
    "adminListen",
    "tls",
    "gracePeriod",
    "drainDelay",
    "upgradeSocket",
    "limits",
    "maxConnections",
    "maxConnectionsPerIp",
    "headerTimeout",
    "idleTimeout",
    "nonceSecret",
    "nonceLifetime",
    "trustedEdge",
    "peers",
    "header",
    "certificate",
    "privateKey",
    "clientCa",
    "upstream",
    "url",
    "caCertificate",
    "insecureSkipVerify",
    "connectTimeout",
    "readTimeout",
    "authority",
    "issuer",
    "metadataAddress",
    "jwksUri",
    "audiences",
    "requiredScopes",
    "senderConstraint",
    "clockSkew",
    "dpop",
    "proofLifetime",
    "requireNonce",
    "replayCapacity",
    "replayPerKey",
    "claims",
    "plan",
    "license",
    "signing",
    "keyPath",
    "keyPassword",
    "certificateChain",
    "keyId",
    "keyIdFormat",
    "lifetime",
    "previousKeys",
    "registry",
    "realm",
    "service",
    "allowedServices",
    "anonymous",
    "plans",
    "name",
    "repositories",
    "pattern",
    "actions",
    "catalog",
    "defaultPlan",
    "revokedLicenses",
    "revokedLicensesFile",
    "pulls",
    "tokens",
    "count",
    "per",
    "refreshTokens",
    "enabled",
    "revokedRefreshTokens",
    "state",
    "redis",
    "keyPrefix",
    "timeout",
    "onUnavailable",
    "cache",
    "memory",
    "maxObject",
    "ttl",
    "disk",
    "path",
    "size",
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_yaml_ng::{Mapping, Value};

    use super::*;

    /// The value that puts a mapping holding only an unknown key at `path` (a key, or `None`
    /// for "inside a sequence").
    fn probe_at(path: &[Option<String>]) -> Value {
        let mut probe = Mapping::new();
        probe.insert("__probe".into(), 1.into());
        path.iter()
            .rev()
            .fold(Value::Mapping(probe), |inner, step| match step {
                Some(key) => Value::Mapping(Mapping::from_iter([(key.as_str().into(), inner)])),
                None => Value::Sequence(vec![inner]),
            })
    }

    /// The field names of the struct at `path`, as serde lists them when refusing an unknown
    /// key there (`deny_unknown_fields`); `None` when no struct is there.
    fn fields_at(path: &[Option<String>]) -> Option<Vec<String>> {
        let error = serde_yaml_ng::from_value::<FileConfig>(probe_at(path)).err()?;
        let text = error.to_string();
        let (_, expected) = text.split_once("unknown field `__probe`, expected")?;
        Some(
            expected
                .split('`')
                .skip(1)
                .step_by(2)
                .map(String::from)
                .collect(),
        )
    }

    /// Every key name below `path`, a struct or a sequence of structs, walking the schema.
    fn walk(path: &mut Vec<Option<String>>, names: &mut BTreeSet<String>) {
        let fields = fields_at(path).or_else(|| {
            path.push(None);
            let inside = fields_at(path);
            if inside.is_none() {
                path.pop();
            }
            inside
        });
        for field in fields.unwrap_or_default() {
            names.insert(field.clone());
            path.push(Some(field));
            walk(path, names);
            path.pop();
        }
        if path.last() == Some(&None) {
            path.pop();
        }
    }

    /// `KEY_NAMES` (how an environment variable's levels find their camelCase key) is every key
    /// of the schema, no more: a field added, renamed or removed without it fails here.
    #[test]
    fn key_names_are_the_schema() {
        let mut schema = BTreeSet::new();
        walk(&mut Vec::new(), &mut schema);
        let listed: BTreeSet<String> = KEY_NAMES.iter().map(|k| k.to_string()).collect();
        assert!(schema.len() > 40, "the walk reads the schema: {schema:?}");
        let missing: Vec<_> = schema.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&schema).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "KEY_NAMES lacks {missing:?} and has {extra:?} beyond the schema"
        );
    }
}
