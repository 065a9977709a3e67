//! `revoke`, `unrevoke`, `revoked` (docs/revocation.md): change and list the licenses refused on
//! top of `revokedLicenses`.
//!
//! With `state.redis` they write the shared set on Redis, which every replica follows within a
//! second; without it they edit `revokedLicensesFile` (temporary file, then rename), which the
//! sidecar watches. Each change prints one audit line naming the OS user who ran it and the
//! reason, and logs the same line; the sidecar logs it again when it applies the change.
//!
//! Exit codes: 0 done (or nothing to do), 1 the store could not be read or written, 2 usage or
//! configuration error.

use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use crate::config::{self, revocations as file, Settings};
use crate::metrics::Metrics;
use crate::policy::revocation::{check_license, operator, timestamp, Entry};
use crate::state::redis::Redis;
use crate::state::revocations as shared;

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Revoke { license: String, reason: String },
    Unrevoke { license: String },
    List { json: bool },
}

/// One row of `revoked`.
#[derive(Debug, Serialize)]
struct Row {
    license: String,
    /// `redis`, `file` or `config` (`revokedLicenses`).
    source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// Where revocations are kept for this configuration.
enum Store {
    Redis(Box<Redis>),
    File(std::path::PathBuf),
}

impl Store {
    fn of(settings: &Settings) -> Result<Store, String> {
        match &settings.state {
            Some(redis) => Redis::new(redis.clone(), std::sync::Arc::new(Metrics::new()))
                .map(|redis| Store::Redis(Box::new(redis)))
                .map_err(|e| e.to_string()),
            None => Ok(Store::File(settings.revoked_licenses_file.clone())),
        }
    }

    fn describe(&self) -> String {
        match self {
            Store::Redis(redis) => format!("Redis {} (state.redis)", redis.settings().url),
            Store::File(path) => format!("{} (revokedLicensesFile)", path.display()),
        }
    }
}

/// Runs `action` against the configuration at `path`.
pub fn run(path: &Path, action: Action) -> ExitCode {
    let settings = match config::load(path) {
        Ok(settings) => settings,
        Err(errors) => {
            for line in errors.lines() {
                eprintln!("{line}");
            }
            return ExitCode::from(2);
        }
    };
    if let Action::Revoke { license, .. } | Action::Unrevoke { license } = &action {
        if let Err(problem) = check_license(license) {
            eprintln!("the license `{license}` {problem}");
            return ExitCode::from(2);
        }
    }
    let store = match Store::of(&settings) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = runtime.block_on(apply(&settings, &store, action));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}: {e}", store.describe());
            ExitCode::from(1)
        }
    }
}

async fn apply(settings: &Settings, store: &Store, action: Action) -> Result<ExitCode, String> {
    let who = operator();
    match action {
        Action::Revoke { license, reason } => {
            let note = format!("{} by {who}: {reason}", timestamp());
            let fresh = match store {
                Store::Redis(redis) => shared::revoke(redis, &license, &note)
                    .await
                    .map_err(|e| e.to_string())?,
                Store::File(path) => file::edit(path, |entries| {
                    let fresh = !entries.iter().any(|e| e.license == license);
                    if fresh {
                        entries.push(Entry {
                            license: license.clone(),
                            note: Some(note),
                        });
                    }
                    fresh
                })
                .map_err(|e| e.to_string())?,
            };
            let already = if fresh {
                ""
            } else {
                " (it was revoked already)"
            };
            tracing::warn!(audit = "revoke", license = %license, by = %who, reason = %reason, store = %store.describe(), "license revoked");
            println!(
                "revoked {license} by {who}, reason: {reason}{already}; in {}",
                store.describe()
            );
            Ok(ExitCode::SUCCESS)
        }
        Action::Unrevoke { license } => {
            let was = match store {
                Store::Redis(redis) => shared::unrevoke(redis, &license)
                    .await
                    .map_err(|e| e.to_string())?,
                Store::File(path) => file::edit(path, |entries| {
                    let before = entries.len();
                    entries.retain(|e| e.license != license);
                    entries.len() != before
                })
                .map_err(|e| e.to_string())?,
            };
            // On Redis replicas re-read the set either way (one that lost its data may still
            // hold the license): the change is audited either way.
            if was || matches!(store, Store::Redis(_)) {
                let absent = if was {
                    ""
                } else {
                    " (it was not in the set: replicas that still held it drop it now)"
                };
                tracing::warn!(audit = "unrevoke", license = %license, by = %who, store = %store.describe(), "license restored");
                println!(
                    "unrevoked {license} by {who}{absent}; in {}",
                    store.describe()
                );
            } else {
                println!(
                    "{license} was not revoked in {}: nothing changed",
                    store.describe()
                );
            }
            if settings.policy.revoked.contains(&license) {
                eprintln!("{license} stays revoked by revokedLicenses in the configuration file: remove it there too");
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::List { json } => {
            let mut rows: Vec<Row> = match store {
                Store::Redis(redis) => shared::list(redis)
                    .await
                    .map_err(|e| e.to_string())?
                    .1
                    .into_iter()
                    .map(|r| Row {
                        license: r.license,
                        source: "redis",
                        note: r.note,
                    })
                    .collect(),
                Store::File(path) => file::read(path)
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|e| Row {
                        license: e.license,
                        source: "file",
                        note: e.note,
                    })
                    .collect(),
            };
            let mut configured: Vec<&String> = settings.policy.revoked.iter().collect();
            configured.sort();
            rows.extend(configured.into_iter().map(|license| Row {
                license: license.clone(),
                source: "config",
                note: None,
            }));
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).expect("rows serialise")
                );
            } else if rows.is_empty() {
                println!("no revoked licenses ({})", store.describe());
            } else {
                for row in &rows {
                    match &row.note {
                        Some(note) => println!("{}\t{}\t{note}", row.license, row.source),
                        None => println!("{}\t{}", row.license, row.source),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
