//! Builds the pingora `Server`: the main listener (proxy + realm), the admin listener
//! (`/metrics`, detailed `/readyz`), and the background services (Authority keys and
//! succession, configuration reload, revocations from the revocation file or Redis).
//!
//! `connections` guards the main listener's connections (`server.limits`), `shutdown` claims
//! the ports and ends the process once drained, `upgrade` keeps the upgrade socket private.

pub mod connections;
pub mod shutdown;
pub mod upgrade;

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{
    L4BufferSettings, ListenerConfig, TlsAccept, DEFAULT_L4_WRITE_BUFFER_SIZE,
};
use pingora::protocols::http::ServerSession;
use pingora::protocols::tls::TlsRef;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use pingora::services::ServiceWithDependents;
use tokio::sync::Notify;

use crate::authority::{Authority, Succession};
use crate::cache::bus::{self, Bus};
use crate::cache::Cache;
use crate::config::revocations::RevocationFile;
use crate::config::watch::Reloader;
use crate::config::Settings;
use crate::health::Health;
use crate::jose::SystemClock;
use crate::metrics::Metrics;
use crate::policy::revocation::Revocations;
use crate::proxy::Sidecar;
use crate::state::pubsub::{Channel, Subscriber};
use crate::state::redis::Redis;
use crate::state::revocations::{Follower, FollowerService};
use crate::state::Stores;
use crate::token::cache::VerifiedTokens;

/// The admin listener: Prometheus metrics, and `/readyz` with the details (URLs, errors).
struct Admin {
    settings: Arc<ArcSwap<Settings>>,
    authority: Arc<Succession>,
    health: Arc<Health>,
    /// The registry the proxy, the Authority and the reload service count into.
    metrics: Arc<Metrics>,
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let (status, content_type, body) = match session.req_header().uri.path() {
            "/metrics" => (200, "text/plain; version=0.0.4", self.metrics.render()),
            "/readyz" => {
                let (settings, authority) = (self.settings.load_full(), self.authority.current());
                let waiting = self.authority.pending();
                let report = self
                    .health
                    .check(&settings, &authority, waiting.as_deref())
                    .await;
                let body = serde_json::to_vec(&report.detailed()).unwrap_or_default();
                (report.status(), "application/json", body)
            }
            _ => (404, "text/plain", b"not found".to_vec()),
        };
        http::Response::builder()
            .status(status)
            .header("Content-Type", content_type)
            .header("Content-Length", body.len())
            .body(body)
            .expect("valid response")
    }
}

/// Keeps the keys of the Authority in force fresh (at start, then every few minutes, sooner
/// after a failure), and brings in the Authority a reload asks for as soon as it is reloaded.
struct AuthorityKeys {
    settings: Arc<ArcSwap<Settings>>,
    authority: Arc<Succession>,
    reloaded: Arc<Notify>,
}

#[async_trait]
impl BackgroundService for AuthorityKeys {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut due = tokio::time::Instant::now();
        loop {
            let wanted = self.settings.load().authority.clone();
            // A reload that left `authority` as it was costs no fetch.
            if tokio::time::Instant::now() >= due || !self.authority.settled(&wanted) {
                due = tokio::time::Instant::now() + self.authority.tend(&wanted).await;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep_until(due) => {}
                _ = self.reloaded.notified() => {}
            }
        }
    }
}

/// Hands each TLS handshake the certificate of the configuration in force, so that a reload
/// (SIGHUP or a file change) renews it without touching open connections.
struct Certificates(Arc<ArcSwap<Settings>>);

#[async_trait]
impl TlsAccept for Certificates {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        use pingora::tls::ext::{ssl_add_chain_cert, ssl_use_certificate, ssl_use_private_key};
        let settings = self.0.load();
        let Some(tls) = settings.tls.as_ref() else {
            return;
        };
        let installed = ssl_use_certificate(ssl, &tls.chain[0])
            .and_then(|()| {
                tls.chain[1..]
                    .iter()
                    .try_for_each(|c| ssl_add_chain_cert(ssl, c))
            })
            .and_then(|()| ssl_use_private_key(ssl, &tls.key));
        if let Err(e) = installed {
            tracing::error!(error = %e, "cannot install the TLS certificate for a handshake");
        }
    }
}

/// TLS 1.2 and 1.3, HTTP/2 by ALPN, and client certificates when `clientCa` is set: requested,
/// verified against it, optional (DPoP callers need none).
fn tls_settings(settings: &Arc<ArcSwap<Settings>>) -> Result<TlsSettings, String> {
    use openssl::ssl::{SslVerifyMode, SslVersion};
    let current = settings.load();
    let mut tls = TlsSettings::with_callbacks(Box::new(Certificates(settings.clone())))
        .map_err(|e| e.to_string())?;
    tls.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(|e| e.to_string())?;
    tls.enable_h2();
    if let Some(ca) = current.tls.as_ref().and_then(|t| t.client_ca.as_ref()) {
        tls.set_ca_file(ca)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
        let names = openssl::x509::X509Name::load_client_ca_file(ca)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
        tls.set_client_ca_list(names);
        tls.set_verify(SslVerifyMode::PEER);
    }
    Ok(tls)
}

/// A background service, boxed.
type Background = Box<dyn ServiceWithDependents>;

/// Where revocations come from (docs/revocation.md), read once before serving: with `state.redis`,
/// the set on Redis, followed over pub/sub and re-read on a timer; without it, the revocation
/// file, watched. A revocation file that is not valid at start is an error (exit 2), as a bad
/// configuration is; Redis away at start leaves the replica unready until it is read.
/// With Redis, also the follower's pub/sub [`Channel`].
fn revocation_sources(
    settings: &Arc<ArcSwap<Settings>>,
    stores: &Stores,
    revocations: &Arc<Revocations>,
    metrics: &Arc<Metrics>,
) -> (Background, Option<Arc<dyn Channel>>) {
    let Some(redis) = &stores.redis else {
        let path = settings.load().revoked_licenses_file.clone();
        let watcher = RevocationFile {
            settings: settings.clone(),
            revocations: revocations.clone(),
            metrics: metrics.clone(),
        };
        if let Err(e) = watcher.apply(&path) {
            tracing::error!(error = %e, "cannot start with this revocation file (revokedLicensesFile)");
            std::process::exit(2);
        }
        tracing::info!(file = %path.display(), revoked = revocations.snapshot().len(), "revocations from the revocation file");
        return (
            Box::new(background_service("revocation file", watcher)),
            None,
        );
    };
    // A first read before serving, on a connection of its own (the shared one belongs to the
    // services' runtime).
    if let Ok(first) = Redis::new(redis.settings().clone(), metrics.clone()) {
        let first = Follower::new(Arc::new(first), revocations.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(runtime) = runtime {
            runtime.block_on(first.refresh());
        }
    }
    tracing::info!(revocations = %revocations.describe(), "revocations from the shared set on Redis");
    let follower = Arc::new(Follower::new(redis.clone(), revocations.clone()));
    let channel: Arc<dyn Channel> = follower.clone();
    let service = background_service("revocations", FollowerService(follower));
    (Box::new(service), Some(channel))
}

/// Runs the sidecar until a signal stops it. With `upgrade`, takes the listening sockets over
/// from a running instance (which is then sent SIGQUIT) instead of binding them.
pub fn run(settings: Settings, config_path: PathBuf, upgrade: bool) -> ! {
    let (listen, admin_listen) = (settings.listen, settings.admin_listen);
    let (grace_period, drain_delay) = (settings.grace_period, settings.drain_delay);
    warn_insecure_upstream(&settings);
    let upgrade_socket = upgrade_socket(&settings, upgrade);
    if !upgrade {
        claim_ports(&settings);
    }
    let shared = Shared::build(&settings);
    let settings = Arc::new(ArcSwap::from_pointee(settings));
    let (revocation_service, revocation_channel) = revocation_sources(
        &settings,
        &shared.stores,
        &shared.revocations,
        &shared.metrics,
    );
    let mut server = pingora_server(grace_period, upgrade_socket.as_deref(), upgrade);
    let cache = open_cache(&settings, &shared);
    let (proxy, tally) = proxy_service(&server, &settings, &shared, &cache);
    server.add_service(proxy);
    server.add_service(admin_service(&settings, &shared));
    let reloaded = Arc::new(Notify::new());
    server.add_service(background_service(
        "authority keys",
        AuthorityKeys {
            settings: settings.clone(),
            authority: shared.authority.clone(),
            reloaded: reloaded.clone(),
        },
    ));
    let _ = server.add_services(vec![revocation_service]);
    if let Some(redis) = &shared.stores.redis {
        // One subscription per process carries every channel between replicas.
        let invalidations: Arc<dyn Channel> = Arc::new(bus::Listener(cache));
        let channels = revocation_channel.into_iter().chain([invalidations]);
        server.add_service(background_service(
            "pub/sub",
            Subscriber {
                redis: redis.clone(),
                channels: channels.collect(),
            },
        ));
    }
    server.add_service(background_service(
        "config reload",
        Reloader {
            path: config_path,
            settings,
            reloaded,
            metrics: shared.metrics,
        },
    ));
    shutdown::exit_when_drained(server.watch_execution_phase(), tally, grace_period);
    tracing::info!(%listen, %admin_listen, "serving");
    server.run(RunArgs {
        shutdown_signal: Box::new(shutdown::Signals {
            drain_delay,
            can_upgrade: upgrade_socket.is_some(),
        }),
    });
    std::process::exit(0)
}

/// The value, or the process ends with status 2 after logging `what` went wrong: for what the
/// sidecar cannot serve without.
fn or_exit<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|e| {
        tracing::error!(error = %e, "{what}");
        std::process::exit(2)
    })
}

fn warn_insecure_upstream(settings: &Settings) {
    if settings.upstream.insecure_skip_verify {
        tracing::warn!(upstream = %settings.upstream.url, "upstream.insecureSkipVerify is on: the registry's certificate is NOT verified");
    }
}

/// Where listeners are handed over on an upgrade; `None` when no place can be had for the
/// default one (then SIGQUIT shuts down instead).
fn upgrade_socket(settings: &Settings, upgrade: bool) -> Option<PathBuf> {
    match upgrade::socket_path(settings.upgrade_socket.as_deref()) {
        Ok(path) => Some(path),
        // No place for the default at all: serve without upgrades rather than not at all.
        Err(e @ upgrade::UpgradeDirError::NoPlace(_)) if !upgrade => {
            tracing::warn!(error = %e, "zero-downtime upgrade unavailable: SIGQUIT will shut down instead");
            None
        }
        Err(e) => or_exit(
            Err(e),
            "cannot use the upgrade socket (server.upgradeSocket)",
        ),
    }
}

/// Waits for both ports to be free (a previous instance may still be closing them).
fn claim_ports(settings: &Settings) {
    let ports = [settings.listen, settings.admin_listen];
    if let Err(e) = shutdown::claim_ports(&ports, shutdown::PORT_WAIT) {
        tracing::error!("{e} (tried for {:?})", shutdown::PORT_WAIT);
        std::process::exit(2);
    }
}

/// The state every service is handed (no process global): metrics, the shared stores, the
/// Authority in succession, health, and the revoked licenses.
struct Shared {
    metrics: Arc<Metrics>,
    stores: Stores,
    authority: Arc<Succession>,
    health: Arc<Health>,
    /// Licenses revoked by `registry-token revoke`: one set for the process (docs/revocation.md).
    revocations: Arc<Revocations>,
}

impl Shared {
    fn build(settings: &Settings) -> Shared {
        let metrics = Arc::new(Metrics::new());
        metrics.config_generation.set(settings.generation as i64);
        let stores = or_exit(
            Stores::build(settings.state.as_ref(), metrics.clone()),
            "cannot set up the shared state store (state.redis)",
        );
        if let Some(redis) = &settings.state {
            tracing::info!(redis = %redis.url, on_unavailable = ?redis.on_unavailable, "spent DPoP proofs and plan-limit counts are shared on Redis");
        }
        let authority = Authority::with_store(
            settings.authority.clone(),
            Default::default(),
            stores.replay.clone(),
            metrics.clone(),
        );
        let revocations = settings.policy.live.clone();
        let health = Health::with_state(stores.redis.clone(), revocations.clone());
        Shared {
            authority: Arc::new(Succession::new(authority)),
            health: Arc::new(health),
            metrics,
            stores,
            revocations,
        }
    }
}

/// Pingora's server: its threads, the grace period, the upgrade socket.
fn pingora_server(
    grace_period: std::time::Duration,
    upgrade_socket: Option<&std::path::Path>,
    upgrade: bool,
) -> Server {
    let conf = ServerConf {
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        grace_period_seconds: Some(grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        upgrade_sock: upgrade_socket
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    server
}

/// The edge cache (docs/cache.md), its invalidations on the Redis bus when there is one.
fn open_cache(settings: &Arc<ArcSwap<Settings>>, shared: &Shared) -> Arc<Cache> {
    let bus = shared.stores.redis.clone().map(Bus::new);
    let cache = Cache::open(&settings.load().cache, shared.metrics.clone(), bus);
    Arc::new(or_exit(
        cache,
        "cannot open the cache's disk tier (cache.disk.path)",
    ))
}

/// The main listener: the proxy behind the connection caps, plain or TLS; with the tally of
/// its connections (what shutdown waits on).
fn proxy_service(
    server: &Server,
    settings: &Arc<ArcSwap<Settings>>,
    shared: &Shared,
    cache: &Arc<Cache>,
) -> (Service<connections::Guarded>, Arc<connections::Tally>) {
    let sidecar = Sidecar {
        settings: settings.clone(),
        authority: shared.authority.clone(),
        health: shared.health.clone(),
        metrics: shared.metrics.clone(),
        tokens: Arc::new(VerifiedTokens::default()),
        clock: Arc::new(SystemClock),
        counters: shared.stores.counters.clone(),
        cache: cache.clone(),
        catalog: Default::default(),
    };
    let current = settings.load();
    let tls = current.tls.is_some();
    let mut proxy = pingora::proxy::http_proxy(&server.configuration, sidecar);
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(current.limits.idle_timeout);
    proxy.server_options = Some(options);
    let tally = Arc::new(connections::Tally::default());
    let admission = Arc::new(connections::Admission::new(
        tally.clone(),
        settings.clone(),
        shared.metrics.clone(),
    ));
    let guarded = connections::Guarded {
        proxy: Arc::new(proxy),
        admission: admission.clone(),
        settings: settings.clone(),
        metrics: shared.metrics.clone(),
    };
    let mut service = Service::new("proxy".to_string(), guarded);
    // A connection's slot is taken at accept, and on the TLS listener handed to the TCP stream
    // before the handshake (`connections` explains why).
    service.set_connection_filter(admission.clone());
    if tls {
        service.endpoints().set_pre_tls_callback(admission);
    }
    // Plain HTTP/1 reads go straight into the head buffer and pingora's 64 KiB body buffer:
    // pingora's default 64 KiB L4 read buffer only copied them once more, and held about
    // 20 KiB of RSS per idle keep-alive connection. TLS keeps it (a record is read in one go).
    let listener = ListenerConfig::tcp(current.listen.to_string());
    let listener = if tls {
        let tls = or_exit(
            tls_settings(settings),
            "cannot set up TLS on the main listener",
        );
        listener.tls(tls)
    } else {
        listener.l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE))
    };
    service.add_listener(listener);
    (service, tally)
}

/// The admin listener: health, readiness, metrics.
fn admin_service(settings: &Arc<ArcSwap<Settings>>, shared: &Shared) -> Service<Admin> {
    let admin = Admin {
        settings: settings.clone(),
        authority: shared.authority.clone(),
        health: shared.health.clone(),
        metrics: shared.metrics.clone(),
    };
    let mut admin = Service::new("admin".to_string(), admin);
    admin.add_tcp(&settings.load().admin_listen.to_string());
    admin
}
