//! Invalidation across replicas (SPEC 10): a DELETE through one replica drops the entry there
//! and publishes its key on `<state.redis.keyPrefix>cache-invalidate`; every replica listens
//! and drops it too. A message is `manifest <digest>` or `blob <digest>` under the cache's
//! digest grammar; any other message is ignored.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::{Cache, Digest, Kind};
use crate::state::redis::Redis;
use crate::state::StateError;

/// The channel's name after the key prefix.
pub const CHANNEL: &str = "cache-invalidate";

/// Time between two attempts to (re)subscribe.
const RETRY: Duration = Duration::from_secs(1);

/// The message that drops `(kind, digest)`.
pub fn message(kind: Kind, digest: &Digest) -> String {
    let kind = match kind {
        Kind::Manifest => "manifest",
        Kind::Blob => "blob",
    };
    format!("{kind} {digest}")
}

/// The key a message names, or `None` for anything else.
pub fn parse(text: &str) -> Option<(Kind, Digest)> {
    let (kind, digest) = text.split_once(' ')?;
    let kind = match kind {
        "manifest" => Kind::Manifest,
        "blob" => Kind::Blob,
        _ => return None,
    };
    Some((kind, Digest::parse(digest)?))
}

/// The invalidation channel on the shared Redis.
pub struct Bus {
    redis: Arc<Redis>,
    channel: String,
}

impl Bus {
    pub fn new(redis: Arc<Redis>) -> Bus {
        let channel = redis.key(CHANNEL);
        Bus { redis, channel }
    }

    /// Tells the other replicas to drop `(kind, digest)`, within `state.redis.timeout`.
    pub async fn publish(&self, kind: Kind, digest: &Digest) -> Result<(), StateError> {
        let (channel, text) = (self.channel.clone(), message(kind, digest));
        self.redis
            .run("cache", |mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(text)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await
            .map(|_| ())
    }

    /// Listens until the process stops: every valid message drops its entry in `cache`.
    /// A lost subscription is made again every second.
    pub async fn listen(&self, cache: &Cache) {
        loop {
            if let Err(e) = self.subscribed(cache).await {
                tracing::warn!(error = %e, channel = self.channel, "cache invalidation channel lost; subscribing again");
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn subscribed(&self, cache: &Cache) -> Result<(), String> {
        let timeout = self.redis.settings().timeout;
        let connect = self.redis.client().get_async_pubsub();
        let mut pubsub = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| "no answer".to_string())?
            .map_err(|e| format!("{:?}", e.kind()))?;
        pubsub
            .subscribe(&self.channel)
            .await
            .map_err(|e| format!("{:?}", e.kind()))?;
        tracing::info!(channel = self.channel, "listening for cache invalidations");
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let text: String = msg.get_payload().unwrap_or_default();
            match parse(&text) {
                Some((kind, digest)) => {
                    cache.drop_local(kind, &digest);
                }
                None => tracing::warn!("ignored a malformed cache invalidation message"),
            }
        }
        Err("the subscription ended".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages round-trip; anything else is ignored.
    #[test]
    fn messages() {
        let d = Digest::parse(&format!("sha256:{}", "c".repeat(64))).unwrap();
        assert_eq!(
            parse(&message(Kind::Blob, &d)),
            Some((Kind::Blob, d.clone()))
        );
        assert_eq!(
            parse(&message(Kind::Manifest, &d)),
            Some((Kind::Manifest, d.clone()))
        );
        for bad in [
            "",
            "blob",
            "blob  x",
            "tag sha256:x",
            &format!("BLOB {d}"),
            &format!("blob {}", d.as_str().to_uppercase()),
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
