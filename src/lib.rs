//! registry-token: an auth sidecar for OCI registries, built on pingora.
//!
//! ```text
//! request ─▶ request_filter ─▶ path
//!              ├─ /healthz /readyz /.well-known/jwks.json → respond
//!              ├─ /token  → token::realm::issue  (authority → policy → limits → spend proof → token)
//!              ├─ /v2/... → proxy::authorize     (registry::route → token verify → revocation
//!              │                                   → proxy::limit: manifest GETs per plan)
//!              │               ├─ deny  → 401 challenge / 400 / 404 / 405, never forwarded
//!              │               ├─ allow, cached for this repository → answered by proxy::cached
//!              │               └─ allow → streamed to the registry (a GET by digest fills the
//!              │                          cache once its body hashed to the digest)
//!              └─ anything else → 404
//!         upstream_peer           → the upstream resolved when the config loaded
//!         upstream_request_filter → X-Forwarded-* and Host from config, client headers stripped
//!         response_filter         → Location back at the sidecar
//!         fail_to_proxy           → Docker `errors` body for 502/504
//!         logging                 → metrics
//! ```
//!
//! `authority`, `jose`, `registry`, `policy` and `token` know nothing of pingora; only `server`,
//! `proxy` and the background services (`config::watch`, `config::revocations`,
//! `state::pubsub`, `state::revocations`) do.
//!
//! No process globals: `server::run` builds the shared state (the metrics registry, the
//! verified-token cache, the Authority in force, the `state::Stores`) and hands it to the
//! proxy's `Sidecar`, the admin listener and the background services.
//!
//! State replicas share (docs/operations.md, "Running several replicas") sits behind two traits,
//! `state::Counters` (plan limits) and `authority::ReplayStore` (spent DPoP proofs): in memory
//! without `state.redis` (`state::memory`, `authority::replay::memory`); on Redis with it
//! (`state::redis`, `state::replay`), wrapped by `state::fallback` under `onUnavailable: memory`.
//!
//! Revocations (docs/revocation.md): `policy::Policy::is_revoked` unites `revokedLicenses` with one
//! live set per process (`policy::revocation`), fed by the revocation file (`config::revocations`)
//! or, with `state.redis`, by the set on Redis that replicas follow over pub/sub
//! (`state::revocations`, `state::pubsub`).

/// OpTok verification: OIDC discovery, JWKS cache, DPoP proofs, sender constraints, the DPoP
/// replay store (memory or Redis).
pub mod authority;
/// The edge cache (docs/cache.md): manifests by digest and blobs, verified against their digest,
/// served per repository after authorisation; bounded, invalidated by DELETE.
pub mod cache;
/// Command-line tools: check-config, doctor, test, keygen, token inspect, revoke/unrevoke/revoked.
pub mod cli;
/// The configuration file, its validation, environment overrides and hot reload.
pub mod config;
/// Durations as written in the configuration (`30s`, `5m`, `1h`), with errors in words.
pub mod duration;
/// The trusted TLS-terminating edge (`server.trustedEdge`): the one peer check, and the client
/// certificate it reports; the proxy and the connection caps ask it.
pub mod edge;
/// Readiness: what keeps the sidecar from serving, for both listeners.
pub mod health;
/// JOSE said once: base64url, compact JWS, JWK thumbprints, signature checks, the clock.
pub mod jose;
/// Every exported metric, in one registry `server` builds and hands to whatever counts.
pub mod metrics;
/// The policy compiled from the configuration: plans, repository patterns, revocations.
pub mod policy;
/// The pingora proxy: dispatch, `/v2/` authorization, responses.
pub mod proxy;
/// Distribution's grammar and grant types: repository names, resources, accesses and scopes
/// (one type each, one text each), the access set, the `/v2/` route table, the Bearer challenge.
pub mod registry;
/// The pingora server and its services.
pub mod server;
/// State replicas share: plan-limit counters and the store set-up (`Stores`): memory, or
/// Redis with `state.redis` (every command under its timeout), and the memory fallback.
pub mod state;
/// A log line at most once per interval for events an attacker can repeat at will.
pub mod throttle;
/// Registry tokens: signing keys and key ids, claims, the realm, refresh tokens.
pub mod token;
