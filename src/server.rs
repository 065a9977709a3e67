//! Builds the pingora `Server`: the main listener (proxy + realm), the admin listener
//! (`/metrics`), and the background services (Authority keys, configuration reload).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::authority::Authority;
use crate::config::watch::Reloader;
use crate::config::Settings;
use crate::metrics;
use crate::proxy::Sidecar;

/// How often the Authority's keys are fetched again when all is well.
const KEYS_REFRESH: Duration = Duration::from_secs(300);
/// How soon a failed fetch is retried.
const KEYS_RETRY: Duration = Duration::from_secs(5);

/// The admin listener: Prometheus metrics.
struct Admin;

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let (status, content_type, body) = if session.req_header().uri.path() == "/metrics" {
            (200, "text/plain; version=0.0.4", metrics::get().render())
        } else {
            (404, "text/plain", b"not found".to_vec())
        };
        http::Response::builder()
            .status(status)
            .header("Content-Type", content_type)
            .header("Content-Length", body.len())
            .body(body)
            .expect("valid response")
    }
}

/// Keeps the Authority's keys fresh: at start, then every few minutes, sooner after a failure.
struct KeysRefresher(Arc<Authority>);

#[async_trait]
impl BackgroundService for KeysRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let wait = match self.0.refresh().await {
                Ok(count) => {
                    tracing::debug!(keys = count, "authority keys fetched");
                    KEYS_REFRESH
                }
                Err(e) => {
                    tracing::warn!(error = %e, "authority keys could not be fetched; keeping the last good ones");
                    KEYS_RETRY
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Runs the sidecar until a signal stops it.
pub fn run(settings: Settings, config_path: PathBuf) -> ! {
    let listen = settings.listen;
    let admin_listen = settings.admin_listen;
    metrics::get().config_generation.set(settings.generation as i64);
    let authority = Arc::new(Authority::new(settings.authority.clone()));
    let settings = Arc::new(ArcSwap::from_pointee(settings));

    let conf = ServerConf {
        threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(10),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let sidecar = Sidecar {
        settings: settings.clone(),
        authority: authority.clone(),
        probe: reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client"),
    };
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, sidecar);
    proxy.add_tcp(&listen.to_string());
    let mut admin = Service::new("admin".to_string(), Admin);
    admin.add_tcp(&admin_listen.to_string());

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(background_service("authority keys", KeysRefresher(authority)));
    server.add_service(background_service(
        "config reload",
        Reloader {
            path: config_path,
            settings,
        },
    ));
    tracing::info!(%listen, %admin_listen, "serving");
    server.run_forever()
}
