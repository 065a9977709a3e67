//! Messages between replicas over Redis pub/sub: one subscriber connection per process, and
//! one [`Channel`] handler per kind of message (revocations today).
//!
//! ```text
//! PUBLISH <keyPrefix><name> body ─▶ Subscriber (one SUBSCRIBE connection)
//!                                      └─▶ the Channel whose name matches ─▶ message(body)
//! connection lost ─▶ retried every RETRY; after each (re)subscription every Channel hears
//!                    `subscribed()`, since messages sent meanwhile are lost
//! ```
//!
//! Pub/sub delivers at most once: a handler treats a message as a hint and keeps the truth in
//! Redis keys it re-reads (and re-reads them on a timer of its own as well).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::redis::Redis;

/// How soon a lost subscription is tried again.
const RETRY: Duration = Duration::from_millis(500);

/// One channel a replica listens on.
pub trait Channel: Send + Sync {
    /// Its name after `state.redis.keyPrefix`, like `revocations`.
    fn name(&self) -> &'static str;
    /// One message's body, as published.
    fn message(&self, body: &[u8]);
    /// The subscription is (again) in place: messages sent before may have been missed.
    fn subscribed(&self);
}

/// The background service that holds the subscription and hands each message to its channel.
pub struct Subscriber {
    pub redis: Arc<Redis>,
    pub channels: Vec<Arc<dyn Channel>>,
}

impl Subscriber {
    /// Subscribes to every channel and hands messages over until the connection ends.
    /// `failing` is set while the subscription is down (to log an outage once).
    async fn listen(&self, shutdown: &mut ShutdownWatch, failing: &mut bool) -> Result<(), String> {
        let mut pubsub = self.redis.pubsub().await.map_err(|e| e.to_string())?;
        let timeout = self.redis.settings().timeout;
        for channel in &self.channels {
            let name = self.redis.key(channel.name());
            match tokio::time::timeout(timeout, pubsub.subscribe(&name)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("SUBSCRIBE {name}: {e}")),
                Err(_) => return Err(format!("SUBSCRIBE {name}: no answer within {timeout:?}")),
            }
        }
        if std::mem::take(failing) {
            tracing::info!(redis = %self.redis.settings().url, "pub/sub subscription back");
        }
        for channel in &self.channels {
            channel.subscribed();
        }
        let mut messages = pubsub.on_message();
        loop {
            let message = tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                message = messages.next() => message,
            };
            let Some(message) = message else {
                return Err("the subscription connection closed".into());
            };
            let name = message.get_channel_name();
            if let Some(channel) = self
                .channels
                .iter()
                .find(|c| self.redis.key(c.name()) == name)
            {
                channel.message(message.get_payload_bytes());
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Subscriber {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut failing = false;
        loop {
            match self.listen(&mut shutdown, &mut failing).await {
                Ok(()) => return,
                Err(e) => {
                    // Logged once per outage; the readiness check says the rest.
                    if !failing {
                        tracing::warn!(redis = %self.redis.settings().url, error = %e, "pub/sub subscription lost; retrying (replicas also re-read the shared keys on a timer)");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }
}
