//! Revocations shared on Redis (docs/revocation.md): the set every replica follows, the commands
//! `registry-token revoke`/`unrevoke`/`revoked` write and read, and the follower that keeps a
//! replica's [`Revocations`] in step within a second.
//!
//! ```text
//! revoke ─▶ MULTI SADD <p>revoked L · HSET <p>revoked:notes L note · SET <p>revoked:version R
//!        ─▶ PUBLISH <p>revocations {"prefix":<p>,"change":"revoke","license":L}
//! replica ─ message (valid) ─┐
//!         ─ every 500 ms ────┴─▶ GET version; changed → MULTI GET version · SMEMBERS · HGETALL
//!                                  └─▶ Revocations::replace + an audit line per change
//! ```
//!
//! The set in Redis is the truth; a message only says "read it now". So a forged message can
//! neither revoke nor restore anything: one with another prefix or a malformed body is ignored
//! and counted, a well-formed one costs one read. A read that fails keeps the last set (a
//! replica never forgets a revocation while Redis is away), and so does a version key that has
//! vanished (Redis restarted without its data): the next `revoke`/`unrevoke` writes it again.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::pubsub::Channel;
use super::redis::Redis;
use super::StateError;
use crate::policy::revocation::{check_license, Revocations};

/// How often a replica reads the version even without a message.
pub const REREAD: Duration = Duration::from_millis(500);
/// The channel's name after the key prefix.
pub const CHANNEL: &str = "revocations";
/// The largest message body looked at.
const MAX_MESSAGE: usize = 4096;

const SET: &str = "revoked";
const NOTES: &str = "revoked:notes";
const VERSION: &str = "revoked:version";

/// What a message says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Revoke,
    Unrevoke,
}

/// The body of a message on the revocation channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// The deployment's `keyPrefix`: a message for another deployment is not ours.
    pub prefix: String,
    pub change: ChangeKind,
    pub license: String,
}

/// Why a message was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("the body is larger than 4 KiB")]
    TooLarge,
    #[error("the body is not a revocation message ({0})")]
    Malformed(String),
    #[error("the message names another key prefix")]
    WrongPrefix,
    #[error("the license {0}")]
    BadLicense(&'static str),
}

impl Message {
    /// Reads a body published on the channel of the deployment whose prefix is `prefix`.
    pub fn parse(body: &[u8], prefix: &str) -> Result<Message, Ignored> {
        if body.len() > MAX_MESSAGE {
            return Err(Ignored::TooLarge);
        }
        let message: Message =
            serde_json::from_slice(body).map_err(|e| Ignored::Malformed(e.to_string()))?;
        if message.prefix != prefix {
            return Err(Ignored::WrongPrefix);
        }
        check_license(&message.license).map_err(Ignored::BadLicense)?;
        Ok(message)
    }
}

/// One revoked license in Redis and the note kept beside it (when, who, why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub license: String,
    pub note: Option<String>,
}

/// Revokes `license` for every replica: the set, its note and the version in one transaction,
/// then the message. `true` when it was not revoked before.
pub async fn revoke(redis: &Redis, license: &str, note: &str) -> Result<bool, StateError> {
    change(redis, license, ChangeKind::Revoke, note).await
}

/// Restores `license`. `true` when it was revoked before.
pub async fn unrevoke(redis: &Redis, license: &str) -> Result<bool, StateError> {
    change(redis, license, ChangeKind::Unrevoke, "").await
}

async fn change(
    redis: &Redis,
    license: &str,
    kind: ChangeKind,
    note: &str,
) -> Result<bool, StateError> {
    let (set, notes, version) = (redis.key(SET), redis.key(NOTES), redis.key(VERSION));
    let body = serde_json::to_string(&Message {
        prefix: redis.settings().key_prefix.clone(),
        change: kind,
        license: license.to_string(),
    })
    .unwrap_or_default();
    let channel = redis.key(CHANNEL);
    // A fresh random version, not a counter: a Redis that lost its data and counted up again
    // never shows a replica the version it already holds.
    let stamp = rand::random::<u64>() | 1;
    let (changed,): (u64,) = redis
        .run("revocations", |mut c| async move {
            let mut pipe = redis::pipe();
            pipe.atomic();
            match kind {
                ChangeKind::Revoke => pipe
                    .cmd("SADD")
                    .arg(&set)
                    .arg(license)
                    .cmd("HSET")
                    .arg(&notes)
                    .arg(license)
                    .arg(note)
                    .ignore(),
                ChangeKind::Unrevoke => pipe
                    .cmd("SREM")
                    .arg(&set)
                    .arg(license)
                    .cmd("HDEL")
                    .arg(&notes)
                    .arg(license)
                    .ignore(),
            };
            pipe.cmd("SET").arg(&version).arg(stamp).ignore();
            pipe.query_async(&mut c).await
        })
        .await?;
    // The set is written: a lost message only delays replicas until their next re-read.
    let _ = redis
        .run("revocations", |mut c| async move {
            redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&body)
                .query_async::<u64>(&mut c)
                .await
        })
        .await;
    Ok(changed > 0)
}

/// The revoked licenses in Redis, sorted, with their notes, and the version they are at
/// (`None`: Redis holds no revocation data at all).
pub async fn list(redis: &Redis) -> Result<(Option<u64>, Vec<Revoked>), StateError> {
    let (set_key, notes_key, version_key) = (redis.key(SET), redis.key(NOTES), redis.key(VERSION));
    let (version, members, mut notes): (Option<u64>, BTreeSet<String>, HashMap<String, String>) =
        redis
            .run("revocations", |mut c| async move {
                redis::pipe()
                    .atomic()
                    .cmd("GET")
                    .arg(&version_key)
                    .cmd("SMEMBERS")
                    .arg(&set_key)
                    .cmd("HGETALL")
                    .arg(&notes_key)
                    .query_async(&mut c)
                    .await
            })
            .await?;
    let revoked = members
        .into_iter()
        .map(|license| Revoked {
            note: notes.remove(&license).filter(|n| !n.is_empty()),
            license,
        })
        .collect();
    Ok((version, revoked))
}

/// Keeps a replica's [`Revocations`] in step with Redis: a background service (re-read every
/// [`REREAD`], and at once when woken) and the handler of the revocation channel.
pub struct Follower {
    pub redis: Arc<Redis>,
    pub revocations: Arc<Revocations>,
    wake: Notify,
    /// The version of the set in force (a random stamp each change writes); 0: none read yet.
    version: AtomicU64,
}

impl Follower {
    pub fn new(redis: Arc<Redis>, revocations: Arc<Revocations>) -> Follower {
        Follower {
            redis,
            revocations,
            wake: Notify::new(),
            version: AtomicU64::new(0),
        }
    }

    /// Reads the version, and the set when the version moved; failures keep the set in force.
    pub async fn refresh(&self) {
        let key = self.redis.key(VERSION);
        let now: Result<Option<u64>, StateError> = self
            .redis
            .run("revocations", |mut c| async move {
                redis::cmd("GET").arg(&key).query_async(&mut c).await
            })
            .await;
        let known = self.version.load(Ordering::Relaxed);
        match now {
            Err(e) => self.revocations.failed(e.to_string()),
            Ok(Some(v)) if v == known => self.revocations.confirmed(),
            // Nothing in Redis, and nothing read before: the empty set is the truth.
            Ok(None) if known == 0 => {
                self.revocations.replace(BTreeSet::new());
            }
            Ok(None) => self.revocations.failed(
                "the revocation keys are gone from Redis (restarted without its data?); \
                 revoke again to write them",
            ),
            Ok(Some(_)) => self.reread().await,
        }
    }

    /// Reads the whole set and puts it in force, logging each change with its note.
    async fn reread(&self) {
        match list(&self.redis).await {
            Err(e) => self.revocations.failed(e.to_string()),
            Ok((None, _)) => self
                .revocations
                .failed("the revocation keys vanished while read"),
            Ok((Some(version), revoked)) => {
                let set = revoked.iter().map(|r| r.license.clone()).collect();
                let change = self.revocations.replace(set);
                self.version.store(version, Ordering::Relaxed);
                let source = format!("{} (state.redis)", self.redis.settings().url);
                // A restored license has no note left in Redis.
                change.log(&source, |license| {
                    revoked
                        .iter()
                        .find(|r| r.license == license)
                        .and_then(|r| r.note.clone())
                });
            }
        }
    }
}

impl Channel for Follower {
    fn name(&self) -> &'static str {
        CHANNEL
    }

    fn message(&self, body: &[u8]) {
        let metrics = self.redis.metrics();
        match Message::parse(body, &self.redis.settings().key_prefix) {
            Ok(_) => {
                metrics
                    .revocation_messages
                    .with_label_values(&["accepted"])
                    .inc();
                self.wake.notify_one();
            }
            Err(why) => {
                metrics
                    .revocation_messages
                    .with_label_values(&["ignored"])
                    .inc();
                tracing::debug!(why = %why, "revocation message ignored");
            }
        }
    }

    fn subscribed(&self) {
        self.wake.notify_one();
    }
}

/// A handle to run the follower as a background service while the subscriber holds it too.
pub struct FollowerService(pub Arc<Follower>);

#[async_trait]
impl BackgroundService for FollowerService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(REREAD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
                _ = self.0.wake.notified() => {}
            }
            self.0.refresh().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// Only a well-formed message of this deployment's prefix is accepted
    /// (docs/security.md, case 94).
    #[rstest]
    #[case(br#"{"prefix":"rt:","change":"revoke","license":"LIC-1"}"#, Ok(()))]
    #[case(br#"{"prefix":"rt:","change":"unrevoke","license":"LIC-1"}"#, Ok(()))]
    #[case(
        br#"{"prefix":"other:","change":"revoke","license":"LIC-1"}"#,
        Err("another key prefix")
    )]
    #[case(
        br#"{"prefix":"rt:","change":"forget","license":"LIC-1"}"#,
        Err("not a revocation")
    )]
    #[case(
        br#"{"prefix":"rt:","change":"revoke","license":"LIC 1"}"#,
        Err("license")
    )]
    #[case(br#"{"prefix":"rt:","change":"revoke","license":""}"#, Err("license"))]
    #[case(
        br#"{"prefix":"rt:","change":"revoke","license":"L","x":1}"#,
        Err("not a revocation")
    )]
    #[case(b"revoke LIC-1", Err("not a revocation"))]
    #[case(b"", Err("not a revocation"))]
    fn messages(#[case] body: &[u8], #[case] expected: Result<(), &str>) {
        match (Message::parse(body, "rt:"), expected) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(says)) => assert!(e.to_string().contains(says), "{e}"),
            (got, _) => panic!("{}: {got:?}", String::from_utf8_lossy(body)),
        }
        let large = format!(
            r#"{{"prefix":"rt:","change":"revoke","license":"{}"}}"#,
            "x".repeat(5000)
        );
        assert_eq!(
            Message::parse(large.as_bytes(), "rt:"),
            Err(Ignored::TooLarge)
        );
    }
}
