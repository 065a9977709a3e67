//! The revocation file (docs/revocation.md, without `state.redis`): `revokedLicensesFile`, one
//! license a line, read at start, then watched and applied like the configuration itself.
//!
//! ```text
//! registry-token revoke ─▶ write (temp file + rename) ─▶ revoked-licenses.txt
//!                                                            │ inotify on the folder, 500 ms poll
//!                       RevocationFile::apply ◀──────────────┘
//!                          ├─ valid   → Revocations::replace, one audit line per change
//!                          └─ invalid → last good list stays, reload counted as `error`
//! ```
//!
//! A missing file is an empty list. The path is read from the configuration in force at each
//! turn, so a reload that moves `revokedLicensesFile` is followed.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use super::watch::{fingerprint, watch_folder};
use super::Settings;
use crate::metrics::Metrics;
use crate::policy::revocation::{self, Entry, LineError, Revocations};

/// The poll that backs up file events (a revocation lands well within a second or two).
const POLL: Duration = Duration::from_millis(500);
/// How long file events settle (a rename arrives as several).
const DEBOUNCE: Duration = Duration::from_millis(50);

/// The revocation file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Line { path: PathBuf, source: LineError },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The entries of the file at `path`; a missing file has none.
pub fn read(path: &Path) -> Result<Vec<Entry>, FileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(FileError::Read {
                path: path.into(),
                source,
            })
        }
    };
    revocation::parse_file(&text).map_err(|source| FileError::Line {
        path: path.into(),
        source,
    })
}

/// Replaces the file at `path` with `entries`: written to a temporary file in the same folder,
/// synced, then renamed over it, so a reader sees the old list or the new one, never half.
pub fn write(path: &Path, entries: &[Entry]) -> Result<(), FileError> {
    let fail = |source| FileError::Write {
        path: path.into(),
        source,
    };
    let folder = match path.parent() {
        Some(f) if !f.as_os_str().is_empty() => f.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = folder.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&temp).and_then(|mut f| {
        f.write_all(revocation::render_file(entries).as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&temp, path)) {
        let _ = std::fs::remove_file(&temp);
        return Err(fail(e));
    }
    Ok(())
}

/// Changes the file at `path` under an exclusive lock (`flock` on a `.lock` file beside it, so
/// two commands run at once both land): `change` edits the entries and says whether it changed
/// anything; only then is the file written. Answers `change`'s answer.
pub fn edit(path: &Path, change: impl FnOnce(&mut Vec<Entry>) -> bool) -> Result<bool, FileError> {
    use std::os::fd::AsRawFd;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lock_path = path.with_file_name(format!(".{name}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| FileError::Write {
            path: lock_path.clone(),
            source,
        })?;
    // SAFETY: a valid open descriptor; the lock ends when `lock` is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(FileError::Write {
            path: lock_path,
            source: std::io::Error::last_os_error(),
        });
    }
    let mut entries = read(path)?;
    let changed = change(&mut entries);
    if changed {
        write(path, &entries)?;
    }
    Ok(changed)
}

/// The watcher of `revokedLicensesFile`, for a sidecar without `state.redis`.
pub struct RevocationFile {
    pub settings: Arc<ArcSwap<Settings>>,
    pub revocations: Arc<Revocations>,
    /// Counts a rejected file as a failed reload, as a bad configuration is (a good one is not
    /// counted: `result="ok"` stays the configuration file's own reloads).
    pub metrics: Arc<Metrics>,
}

impl RevocationFile {
    /// Reads the file at `path` and puts it in force; a file that is not valid leaves the last
    /// good list, is logged and counted. `Err` for the caller that must not start with it.
    pub fn apply(&self, path: &Path) -> Result<(), FileError> {
        match read(path) {
            Ok(entries) => {
                let set: BTreeSet<String> = entries.iter().map(|e| e.license.clone()).collect();
                let change = self.revocations.replace(set);
                if !change.is_empty() {
                    let source = path.display().to_string();
                    change.log(&source, |license| {
                        entries
                            .iter()
                            .find(|e| e.license == license)
                            .and_then(|e| e.note.clone())
                    });
                }
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                self.revocations.failed(e.to_string());
                tracing::error!(error = %e, "revocation file rejected; the last good list stays in force");
                Err(e)
            }
        }
    }
}

#[async_trait]
impl BackgroundService for RevocationFile {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut path = self.settings.load().revoked_licenses_file.clone();
        let (tx, mut events) = mpsc::unbounded_channel();
        let mut watcher = watch_folder(&path, tx.clone());
        let mut seen = fingerprint(&path);
        let mut poll = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = events.recv() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    while events.try_recv().is_ok() {}
                }
                _ = poll.tick() => {}
            }
            let wanted = self.settings.load().revoked_licenses_file.clone();
            if wanted != path {
                tracing::info!(from = %path.display(), to = %wanted.display(), "revokedLicensesFile moved");
                path = wanted;
                drop(watcher);
                watcher = watch_folder(&path, tx.clone());
                seen = None;
            }
            let now = fingerprint(&path);
            // A file that went away is an empty list; `seen` tells a first read from no change.
            if now != seen || self.revocations.status().read_at.is_none() {
                seen = now;
                let _ = self.apply(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `write` puts down `read` reads back; a missing file is empty; a bad line is an
    /// error naming the file and line, and `apply` keeps the last good list and counts it.
    #[test]
    fn write_read_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked-licenses.txt");
        assert!(read(&path).unwrap().is_empty());
        let entries = vec![Entry {
            license: "LIC-1".into(),
            note: Some("by ops: test".into()),
        }];
        write(&path, &entries).unwrap();
        assert_eq!(read(&path).unwrap(), entries);

        let watcher = RevocationFile {
            settings: Arc::new(ArcSwap::from_pointee(crate::config::testkit::settings(
                dir.path(),
                "dpop",
                "",
            ))),
            revocations: Arc::default(),
            metrics: Arc::new(Metrics::new()),
        };
        watcher.apply(&path).unwrap();
        assert!(watcher.revocations.contains("LIC-1"));
        std::fs::write(&path, "LIC-1\nLIC-2\nnot a license\n").unwrap();
        let e = watcher.apply(&path).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
        assert!(watcher.revocations.contains("LIC-1") && !watcher.revocations.contains("LIC-2"));
        let errors = watcher
            .metrics
            .config_reloads
            .with_label_values(&["error"])
            .get();
        assert_eq!(errors, 1);
        std::fs::remove_file(&path).unwrap();
        watcher.apply(&path).unwrap();
        assert!(!watcher.revocations.contains("LIC-1"));
    }

    /// `revokedLicensesFile`: beside the configuration by default, a relative value against
    /// the configuration's folder, an absolute one as written, an empty one refused by name.
    #[test]
    fn the_path_is_resolved_beside_the_configuration() {
        use crate::config::testkit::settings;
        let dir = tempfile::tempdir().unwrap();
        let at = |extra: &str| settings(dir.path(), "dpop", extra).revoked_licenses_file;
        assert_eq!(at(""), dir.path().join("revoked-licenses.txt"));
        assert_eq!(
            at("revokedLicensesFile: state/revoked.txt\n"),
            dir.path().join("state/revoked.txt")
        );
        assert_eq!(
            at("revokedLicensesFile: /var/lib/rt/revoked.txt\n"),
            PathBuf::from("/var/lib/rt/revoked.txt")
        );
        let text = std::fs::read_to_string(dir.path().join("config.yaml")).unwrap();
        let text = text.replace("/var/lib/rt/revoked.txt", "''");
        let errors = crate::config::check(&text, Vec::new()).unwrap_err();
        assert!(
            errors.iter().any(|e| e.path == "revokedLicensesFile"),
            "{errors:?}"
        );
    }
}
