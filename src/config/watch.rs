//! Hot reload: a pingora background service that reloads the configuration when the file
//! changes (inotify through `notify`, with a slow poll as a safety net) or on SIGHUP.
//!
//! A new file is validated whole; only then is it swapped in, so each request sees one
//! complete version and a broken file leaves the last good configuration in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use notify::{EventKind, RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sha2::{Digest, Sha256};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, Notify};

use super::Settings;
use crate::metrics::Metrics;

/// How long file events settle before a reload (editors write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(150);
/// The safety-net poll: catches changes no event reported (network filesystems, odd tools).
const POLL: Duration = Duration::from_secs(1);

/// The reload service.
pub struct Reloader {
    pub path: PathBuf,
    pub settings: Arc<ArcSwap<Settings>>,
    /// Notified after each reload that took effect (the Authority keys loop waits on it).
    pub reloaded: Arc<Notify>,
    /// Counts reloads and shows the generation in force.
    pub metrics: Arc<Metrics>,
}

/// SHA-256 of the file's bytes; `None` when it cannot be read (missing).
pub(super) fn fingerprint(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path)
        .ok()
        .map(|bytes| Sha256::digest(bytes).into())
}

/// Watches the folder of `path`, so that a file replaced by rename, or a Kubernetes `..data`
/// symlink swap, is seen, and sends `()` on `tx` when the file (or `..data`) is created,
/// changed or removed. `None` when there is no watcher: the caller's poll is all there is.
pub(super) fn watch_folder(
    path: &Path,
    tx: mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    let name = path.file_name().map(|n| n.to_os_string());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
        ) && event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|f| Some(f) == name.as_deref() || f == "..data")
        });
        if relevant {
            let _ = tx.send(());
        }
    });
    match watcher {
        Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the folder; polling only");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "no file watcher; polling only");
            None
        }
    }
}

impl Reloader {
    /// Loads the file and swaps it in when valid; counts and logs the outcome either way.
    pub fn reload(&self, why: &str) {
        let current = self.settings.load_full();
        match super::load(&self.path) {
            Ok(mut next) => {
                for section in super::restart_only_changes(&current.file, &next.file) {
                    tracing::warn!(
                        section,
                        "configuration changed in a section that takes effect only after a restart"
                    );
                }
                next.generation = current.generation + 1;
                // Revocations read from the revocation file or Redis outlive every version.
                next.policy.live = current.policy.live.clone();
                let generation = next.generation;
                self.settings.store(Arc::new(next));
                self.reloaded.notify_one();
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                self.metrics.config_generation.set(generation as i64);
                tracing::info!(why, generation, "configuration reloaded");
            }
            Err(errors) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                for e in &errors.errors {
                    // `at` is file:line:column (or the overriding variable): where to fix it.
                    let at = e.origin(&errors.file);
                    tracing::error!(why, at = %at, path = %e.path, problem = %e.message, "configuration rejected; the previous one stays in force");
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut events) = mpsc::unbounded_channel();
        // Keep the watcher alive for the loop's life.
        let _watcher = watch_folder(&self.path, tx);
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP reload unavailable");
                None
            }
        };
        let mut seen = fingerprint(&self.path);
        let mut poll = tokio::time::interval(POLL);
        loop {
            let why = tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = events.recv() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    while events.try_recv().is_ok() {}
                    "file changed"
                }
                _ = poll.tick() => "file changed (poll)",
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    seen = fingerprint(&self.path);
                    self.reload("SIGHUP");
                    continue;
                }
            };
            let now = fingerprint(&self.path);
            if now.is_some() && now != seen {
                seen = now;
                self.reload(why);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testkit::settings;

    fn reloader(dir: &std::path::Path) -> Reloader {
        Reloader {
            path: dir.join("config.yaml"),
            settings: Arc::new(ArcSwap::from_pointee(settings(dir, "dpop", ""))),
            reloaded: Arc::new(Notify::new()),
            metrics: Arc::new(Metrics::new()),
        }
    }

    fn reloads(metrics: &Metrics, result: &str) -> u64 {
        metrics.config_reloads.with_label_values(&[result]).get()
    }

    /// A good file takes effect and is counted; a broken one is counted and leaves the last
    /// good configuration in force. Each reloader counts into its own registry only.
    #[test]
    fn reloads_are_counted_in_the_reloaders_registry() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (first, second) = (reloader(one.path()), reloader(two.path()));
        let generation = first.settings.load().generation;

        first.reload("test");
        assert_eq!(first.settings.load().generation, generation + 1);
        assert_eq!(reloads(&first.metrics, "ok"), 1);
        let shown = first.metrics.config_generation.get();
        assert_eq!(shown, (generation + 1) as i64);

        std::fs::write(&first.path, "authority: [").unwrap();
        first.reload("test");
        assert_eq!(first.settings.load().generation, generation + 1);
        assert_eq!(reloads(&first.metrics, "error"), 1);
        assert_eq!(first.metrics.config_generation.get(), shown);

        assert_eq!(
            reloads(&second.metrics, "ok") + reloads(&second.metrics, "error"),
            0
        );
    }
}
