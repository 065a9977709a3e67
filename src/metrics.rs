//! Every metric the sidecar exports, in one prometheus `Registry` served by the admin listener.
//!
//! Names and labels are part of the contract: change them only together with docs/metrics.md.
//!
//! No global: `server::run` builds one [`Metrics`] in an `Arc` and hands it to whatever counts
//! (the proxy's `Sidecar`, the Authority and its key cache, the reload service, the Redis
//! store and its memory fallback) and to the admin listener, which renders it. Tests and
//! tools build their own.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The sidecar's metrics, registered in their own registry. `Send + Sync`; share it in an `Arc`.
pub struct Metrics {
    pub registry: Registry,
    /// Registry tokens issued, by plan.
    pub issued: IntCounterVec,
    /// Token requests refused, by reason (docs/http.md, "Why a request was refused").
    pub rejected: IntCounterVec,
    /// Proxied `/v2/` requests, by method and status.
    pub proxy_requests: IntCounterVec,
    /// Time from request to response for `/v2/` requests, by method.
    pub proxy_duration: HistogramVec,
    /// `/v2/` requests refused by the sidecar before reaching the registry, by reason.
    pub proxy_denied: IntCounterVec,
    /// Configuration reloads, by result (`ok`, `error`).
    pub config_reloads: IntCounterVec,
    /// Increases by one at every configuration that takes effect.
    pub config_generation: IntGauge,
    /// Fetches of the Authority's JWKS, by result.
    pub authority_refresh: IntCounterVec,
    /// Spent DPoP proofs the replay store holds (bounded by `authority.dpop.replayCapacity`).
    pub dpop_replay_entries: IntGauge,
    /// Requests refused by a plan limit (docs/http.md), by plan and kind (`pulls`, `tokens`).
    pub rate_limited: IntCounterVec,
    /// Refresh tokens issued (`issued`) and redeemed (`ok`, or the refusal's reason).
    pub refresh: IntCounterVec,
    /// Shared-state (Redis) commands that failed or took longer than `state.redis.timeout`, by
    /// op (`replay`, `count`, `ping`, `probe`, `revocations`).
    pub state_errors: IntCounterVec,
    /// Requests served from this replica's memory because Redis did not answer
    /// (`onUnavailable: memory`), by op.
    pub state_fallbacks: IntCounterVec,
    /// Time each shared-state command took (up to the timeout).
    pub state_duration: Histogram,
    /// Messages on the revocation channel (docs/revocation.md), by result: `accepted` (the set is
    /// read again), `ignored` (wrong key prefix or malformed body: forged or misrouted).
    pub revocation_messages: IntCounterVec,
    /// Edge-cache lookups (docs/cache.md), by result (`hit`, `miss`, `bypass`).
    pub cache_requests: IntCounterVec,
    /// Bytes the edge cache holds, by tier (`memory`, `disk`).
    pub cache_bytes: IntGaugeVec,
    /// Entries evicted to stay under a tier's size, by tier.
    pub cache_evictions: IntCounterVec,
    /// Bodies that did not hash to their digest (or did not arrive whole): never stored.
    pub cache_integrity_failures: IntCounter,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(counter.clone()))
        .expect("unique metric");
    counter
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, in a registry of their own.
    pub fn new() -> Self {
        let registry = Registry::new();
        let proxy_duration = HistogramVec::new(
            HistogramOpts::new(
                "registry_proxy_request_duration_seconds",
                "Duration of proxied /v2/ requests",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ]),
            &["method"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(proxy_duration.clone()))
            .expect("unique metric");
        let config_generation = IntGauge::new(
            "registry_token_config_generation",
            "Generation of the configuration in force",
        )
        .expect("valid metric");
        registry
            .register(Box::new(config_generation.clone()))
            .expect("unique metric");
        let dpop_replay_entries = IntGauge::new(
            "registry_token_dpop_replay_entries",
            "Spent DPoP proofs held by the replay store",
        )
        .expect("valid metric");
        registry
            .register(Box::new(dpop_replay_entries.clone()))
            .expect("unique metric");
        let state_duration = Histogram::with_opts(
            HistogramOpts::new(
                "registry_token_state_duration_seconds",
                "Duration of shared-state (Redis) commands",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0,
            ]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(state_duration.clone()))
            .expect("unique metric");
        let cache_bytes = IntGaugeVec::new(
            Opts::new(
                "registry_token_cache_bytes",
                "Bytes held by the edge cache, by tier",
            ),
            &["tier"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(cache_bytes.clone()))
            .expect("unique metric");
        let cache_integrity_failures = IntCounter::new(
            "registry_token_cache_integrity_failures_total",
            "Bodies that did not hash to their digest: not stored",
        )
        .expect("valid metric");
        registry
            .register(Box::new(cache_integrity_failures.clone()))
            .expect("unique metric");
        Metrics {
            cache_requests: counter(
                &registry,
                "registry_token_cache_requests_total",
                "Edge-cache lookups by result",
                &["result"],
            ),
            cache_bytes,
            cache_evictions: counter(
                &registry,
                "registry_token_cache_evictions_total",
                "Edge-cache entries evicted to stay under a tier's size",
                &["tier"],
            ),
            cache_integrity_failures,
            state_errors: counter(
                &registry,
                "registry_token_state_errors_total",
                "Shared-state (Redis) commands that failed or timed out",
                &["op"],
            ),
            state_fallbacks: counter(
                &registry,
                "registry_token_state_fallbacks_total",
                "Requests served from this replica's memory while Redis did not answer",
                &["op"],
            ),
            state_duration,
            issued: counter(
                &registry,
                "registry_token_issued_total",
                "Registry tokens issued",
                &["plan"],
            ),
            rejected: counter(
                &registry,
                "registry_token_rejected_total",
                "Token requests rejected",
                &["reason"],
            ),
            proxy_requests: counter(
                &registry,
                "registry_proxy_requests_total",
                "Proxied /v2/ requests",
                &["method", "status"],
            ),
            proxy_duration,
            proxy_denied: counter(
                &registry,
                "registry_proxy_denied_total",
                "/v2/ requests denied by the sidecar",
                &["reason"],
            ),
            config_reloads: counter(
                &registry,
                "registry_token_config_reloads_total",
                "Configuration reloads",
                &["result"],
            ),
            config_generation,
            authority_refresh: counter(
                &registry,
                "registry_token_authority_keys_refresh_total",
                "Authority JWKS fetches",
                &["result"],
            ),
            dpop_replay_entries,
            rate_limited: counter(
                &registry,
                "registry_token_rate_limited_total",
                "Requests refused by a plan limit",
                &["plan", "kind"],
            ),
            refresh: counter(
                &registry,
                "registry_token_refresh_total",
                "Refresh tokens issued and redeemed",
                &["result"],
            ),
            revocation_messages: counter(
                &registry,
                "registry_token_revocation_messages_total",
                "Messages received on the Redis revocation channel",
                &["result"],
            ),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding never fails");
        out
    }
}
