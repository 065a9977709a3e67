//! Invalidation across replicas (docs/cache.md): a DELETE through one replica drops the entry there
//! and publishes its key on `<state.redis.keyPrefix>cache-invalidate`; every replica listens
//! (a [`Channel`] of the one pub/sub subscriber, `state::pubsub`) and drops it too. A message is `manifest <digest>` or `blob <digest>` under the cache's
//! digest grammar; any other message is ignored.

use std::sync::Arc;

use super::{Cache, Digest, Kind};
use crate::state::pubsub::Channel;
use crate::state::redis::Redis;
use crate::state::StateError;

/// The channel's name after the key prefix.
pub const CHANNEL: &str = "cache-invalidate";

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
}

/// The replica's end of the channel, one [`Channel`] of the process's pub/sub subscriber:
/// every valid message drops its entry here.
pub struct Listener(pub Arc<Cache>);

impl Channel for Listener {
    fn name(&self) -> &'static str {
        CHANNEL
    }

    fn message(&self, body: &[u8]) {
        match std::str::from_utf8(body).ok().and_then(parse) {
            Some((kind, digest)) => {
                self.0.drop_local(kind, &digest);
            }
            None => tracing::warn!("ignored a malformed cache invalidation message"),
        }
    }

    /// Messages sent while the subscription was down are lost: an entry deleted meanwhile
    /// through another replica is served here until `cache.ttl` ends it.
    fn subscribed(&self) {
        tracing::info!(channel = CHANNEL, "listening for cache invalidations");
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
