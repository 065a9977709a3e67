//! The shared store on Redis (docs/operations.md, "Running several replicas"): one connection
//! manager per process, every command under `state.redis.timeout`, fixed-window counters by a Lua
//! script (one round trip).
//!
//! ```text
//! realm / proxy ─▶ Counters::hit ─┐
//! realm ─▶ ReplayStore::spend ────┼─▶ Redis::run(op, command) ─▶ timeout(ConnectionManager)
//! /readyz, doctor ─▶ Redis::ping ─┘        ├─ answer      → Ok, duration observed
//!                                          └─ error/late  → StateError, counted; the
//!                                             connection is rebuilt (at most once a second)
//! ```
//!
//! The connection is made lazily: a sidecar starts while Redis is down, answers
//! `state_unavailable` meanwhile, and serves again as soon as Redis answers, without a restart.
//! No command ever waits longer than the timeout. The URL's password never reaches a log line:
//! [`RedisUrl`]'s `Debug` and `Display` hide it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, RedisResult, Script};

use super::{Counters, Hit, StateError, WARN_EVERY};
use crate::metrics::Metrics;
use crate::throttle::Throttle;

/// A connection is rebuilt after a failure at most this often.
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long a readiness answer is reused (as the upstream probe's).
const READY_CACHE: Duration = Duration::from_secs(2);

/// `state.redis.onUnavailable`: what requests that need the store get while it does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnavailable {
    /// 503 `state_unavailable` with `Retry-After` (fail closed).
    Refuse,
    /// This replica's memory stores, logged and counted (a replay window across replicas).
    Memory,
}

/// `state.redis.url`: `redis://` or `rediss://`, perhaps with `user:password@`. Shown with the
/// password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Checks the scheme and host; `Err` never quotes the URL (it may hold a password).
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let url = url::Url::parse(text.trim())
            .map_err(|e| format!("not a URL ({e}); write redis://[user:password@]host:port/db"))?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            return Err(format!(
                "the scheme `{}` is not redis or rediss",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("names no host".into());
        }
        let db = url.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err("the path must be a database number, like /0".into());
        }
        redis::Client::open(url.as_str())
            .map_err(|e| format!("not usable by the Redis client ({:?})", e.kind()))?;
        Ok(RedisUrl(url.to_string()))
    }

    /// The URL as written, password included: for the client only.
    fn expose(&self) -> &str {
        &self.0
    }

    /// True for `rediss://`.
    pub fn tls(&self) -> bool {
        self.0.starts_with("rediss://")
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("***"));
                }
                f.write_str(url.as_str())
            }
            Err(_) => f.write_str("<redacted>"),
        }
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// `state.redis`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub url: RedisUrl,
    /// Put before every key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// The longest any one command may take, connecting included.
    pub timeout: Duration,
    pub on_unavailable: OnUnavailable,
}

/// The connection in use, and when it was made (to rebuild it at most once a second).
struct Managed {
    connection: ConnectionManager,
    built: Instant,
}

/// The last readiness answer.
struct Ready {
    at: Instant,
    answer: Result<Duration, StateError>,
}

/// The Redis store. `Send + Sync`; share it in an `Arc`.
pub struct Redis {
    settings: RedisSettings,
    client: redis::Client,
    /// Where commands, their durations and failures are counted (the Sidecar's).
    metrics: Arc<Metrics>,
    /// Made at the first command, inside a runtime (the client spawns its tasks there).
    managed: ArcSwapOption<Managed>,
    counter: Script,
    /// The failure warnings: one per [`WARN_EVERY`] at most, with the failures since.
    warnings: Throttle,
    ready: tokio::sync::Mutex<Option<Ready>>,
}

/// Counts one event: INCR, and PEXPIRE when the window starts (or the key lost its expiry);
/// answers the count and the window's remaining milliseconds.
const COUNTER_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
";

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Redis {
    /// No I/O: the first command connects. Commands are counted into `metrics`.
    pub fn new(settings: RedisSettings, metrics: Arc<Metrics>) -> Result<Redis, StateError> {
        let client = redis::Client::open(settings.url.expose())
            .map_err(|e| StateError(format!("state.redis.url: {:?}", e.kind())))?;
        Ok(Redis {
            settings,
            client,
            metrics,
            managed: ArcSwapOption::empty(),
            counter: Script::new(COUNTER_SCRIPT),
            warnings: Throttle::new(WARN_EVERY),
            ready: tokio::sync::Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    /// The client, for connections of their own (the cache's invalidation subscription).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// `keyPrefix` + `rest`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.settings.key_prefix)
    }

    /// Runs one command (`op` names it in metrics and logs) within the timeout. A failure is
    /// counted in `registry_token_state_errors_total{op}`, logged (at most every 10 s), and
    /// makes the next command use a fresh connection.
    pub async fn run<T, F, Fut>(&self, op: &'static str, command: F) -> Result<T, StateError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let managed = self.current()?;
        let started = Instant::now();
        let outcome =
            tokio::time::timeout(self.settings.timeout, command(managed.connection.clone())).await;
        let metrics = &self.metrics;
        metrics
            .state_duration
            .observe(started.elapsed().as_secs_f64());
        let error = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => {
                if broken(&e) {
                    self.renew(&managed);
                }
                describe(&e)
            }
            Err(_) => {
                self.renew(&managed);
                format!("no answer within {:?}", self.settings.timeout)
            }
        };
        metrics.state_errors.with_label_values(&[op]).inc();
        self.warn(op, &error);
        Err(StateError(format!("{op}: {error}")))
    }

    /// A connection of its own for `SUBSCRIBE` (pub/sub holds one), made within the timeout.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, StateError> {
        match tokio::time::timeout(self.settings.timeout, self.client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => Ok(pubsub),
            Ok(Err(e)) => Err(StateError(format!("subscribe: {}", describe(&e)))),
            Err(_) => Err(StateError(format!(
                "subscribe: no answer within {:?}",
                self.settings.timeout
            ))),
        }
    }

    /// Where this store counts (the pub/sub handlers count their messages there too).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// `PING`: reachable, and how long the round trip took.
    pub async fn ping(&self) -> Result<Duration, StateError> {
        let started = Instant::now();
        self.run("ping", |mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await?;
        Ok(started.elapsed())
    }

    /// Writes and deletes a key under the prefix (`doctor`): the prefix is writable.
    pub async fn write_probe(&self) -> Result<(), StateError> {
        let key = self.key(&format!("doctor:{}", unix_ms()));
        self.run("probe", |mut c| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("PX")
                .arg(10_000)
                .query_async::<()>(&mut c)
                .await?;
            redis::cmd("DEL").arg(&key).query_async::<()>(&mut c).await
        })
        .await
    }

    /// Readiness: a `PING` at most every 2 s, one at a time; the round trip or why not.
    pub async fn readiness(&self) -> Result<Duration, StateError> {
        let mut last = self.ready.lock().await;
        if let Some(ready) = last.as_ref().filter(|r| r.at.elapsed() < READY_CACHE) {
            return ready.answer.clone();
        }
        let answer = self.ping().await;
        *last = Some(Ready {
            at: Instant::now(),
            answer: answer.clone(),
        });
        answer
    }

    /// The connection in use, made now if there is none yet.
    fn current(&self) -> Result<Arc<Managed>, StateError> {
        if let Some(managed) = self.managed.load_full() {
            return Ok(managed);
        }
        let fresh = Arc::new(Managed {
            connection: connect(&self.client, self.settings.timeout)?,
            built: Instant::now(),
        });
        let before = self
            .managed
            .compare_and_swap(&None::<Arc<Managed>>, Some(fresh.clone()));
        Ok(match &*before {
            Some(other) => other.clone(),
            None => fresh,
        })
    }

    /// Replaces the connection that just failed, unless it is new or already replaced.
    fn renew(&self, failed: &Arc<Managed>) {
        if failed.built.elapsed() < RENEW_EVERY {
            return;
        }
        let current = self.managed.load();
        if !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, failed)) {
            return;
        }
        let Ok(connection) = connect(&self.client, self.settings.timeout) else {
            return;
        };
        let fresh = Arc::new(Managed {
            connection,
            built: Instant::now(),
        });
        self.managed.compare_and_swap(&current, Some(fresh));
    }

    /// One warning per 10 s at most, saying how many failures it stands for.
    fn warn(&self, op: &str, error: &str) {
        let Some(unwarned) = self.warnings.event() else {
            return;
        };
        tracing::warn!(
            redis = %self.settings.url,
            op,
            error,
            failures = unwarned,
            "the shared state store (state.redis) does not answer"
        );
    }
}

/// A lazy connection manager whose connects and responses time out with `timeout`; it retries
/// once, quickly: the caller's own timeout bounds the wait, and the next command tries again.
fn connect(client: &redis::Client, timeout: Duration) -> Result<ConnectionManager, StateError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(100));
    ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(|e| {
        StateError(format!(
            "cannot set up the Redis connection: {:?}",
            e.kind()
        ))
    })
}

/// True when the connection itself is at fault (not a command's error reply).
fn broken(e: &RedisError) -> bool {
    e.is_io_error() || e.is_unrecoverable_error() || e.is_timeout() || e.is_connection_dropped()
}

/// The error without anything that could hold a secret (the client never puts the URL in it).
fn describe(e: &RedisError) -> String {
    e.to_string()
}

/// The milliseconds a key must live so that it outlives `seconds` (at least one).
pub fn ttl_ms(seconds: i64) -> u64 {
    u64::try_from(seconds.max(1))
        .unwrap_or(1)
        .saturating_mul(1000)
}

#[async_trait]
impl Counters for Redis {
    async fn hit(&self, key: &str, window: Duration) -> Result<Hit, StateError> {
        let key = self.key(&format!("count:{key}"));
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let script = &self.counter;
        let (count, ttl): (u64, i64) = self
            .run("count", |mut c| async move {
                script.key(&key).arg(window_ms).invoke_async(&mut c).await
            })
            .await?;
        Ok(Hit {
            count,
            resets_in: Duration::from_millis(u64::try_from(ttl).unwrap_or(window_ms)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// URLs: redis and rediss with a host; the error never quotes the URL; the password never
    /// shows in `Display` or `Debug`.
    #[test]
    fn urls() {
        let rows: &[(&str, Result<&str, &str>)] = &[
            ("redis://127.0.0.1:6379/0", Ok("redis://127.0.0.1:6379/0")),
            (
                "rediss://cache.example:6380",
                Ok("rediss://cache.example:6380"),
            ),
            (
                "redis://app:s3cret@127.0.0.1:6379/2",
                Ok("redis://app:***@127.0.0.1:6379/2"),
            ),
            ("redis://:s3cret@127.0.0.1", Ok("redis://:***@127.0.0.1")),
            ("http://127.0.0.1:6379", Err("scheme `http`")),
            ("redis://", Err("no host")),
            ("redis://h:s3cret@127.0.0.1/zero", Err("database number")),
            ("not a url s3cret", Err("not a URL")),
        ];
        for (text, expected) in rows {
            match (RedisUrl::parse(text), expected) {
                (Ok(url), Ok(shown)) => {
                    assert_eq!(url.to_string(), *shown, "{text}");
                    assert!(!format!("{url:?}").contains("s3cret"), "{text}");
                }
                (Err(e), Err(says)) => {
                    assert!(e.contains(says), "{text}: {e}");
                    assert!(!e.contains("s3cret"), "{text}: {e}");
                }
                (got, _) => panic!("{text}: {got:?}"),
            }
        }
        assert!(RedisUrl::parse("rediss://h").unwrap().tls());
    }

    /// A key lives through the proof's last second, and never for zero or negative time.
    #[test]
    fn ttls() {
        for (seconds, ms) in [(90, 90_000), (1, 1000), (0, 1000), (-5, 1000)] {
            assert_eq!(ttl_ms(seconds), ms, "{seconds}");
        }
    }

    /// Nothing listens: a command fails within the timeout with an error naming the op,
    /// and it is counted.
    #[tokio::test]
    async fn unreachable_fails_within_the_timeout() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = RedisSettings {
            url: RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap(),
            key_prefix: "t:".into(),
            timeout: Duration::from_millis(200),
            on_unavailable: OnUnavailable::Refuse,
        };
        let metrics = Arc::new(Metrics::new());
        let redis = Redis::new(settings, metrics.clone()).unwrap();
        let started = Instant::now();
        let e = redis
            .hit("k", Duration::from_secs(1))
            .await
            .expect_err("nothing listens");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(e.0.starts_with("count: "), "{e}");
        assert_eq!(metrics.state_errors.with_label_values(&["count"]).get(), 1);
        assert!(redis.readiness().await.is_err());
    }
}
