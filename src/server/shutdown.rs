//! Start and stop (docs/http.md, "At the edge"): the listen addresses are claimed before pingora
//! binds them, so that one in use is an error rather than retried; on SIGTERM the listeners keep
//! accepting for `drainDelay`, then close, and the process exits as soon as no client
//! connection is left, at the latest after `gracePeriod`.
//!
//! ```text
//! SIGTERM ─▶ Signals: drainDelay (still accepting) ─▶ pingora: listeners close, grace period
//!                                                         │
//!            exit_when_drained: no connection left ───────┴─▶ exit 0 (or at gracePeriod's end)
//! ```
//!
//! pingora alone sleeps the whole grace period after SIGTERM, even with nothing in flight.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast;

use super::connections::Tally;

/// How long an address in use is retried before giving up.
pub const PORT_WAIT: Duration = Duration::from_secs(5);
/// How often the shutdown checks whether connections are left.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// A listen address that could not be had.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct PortError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds every address at once (so that the same address twice is caught too), retrying an
/// address in use for up to `wait`, then lets them go for pingora to bind.
pub fn claim_ports(addrs: &[SocketAddr], wait: Duration) -> Result<(), PortError> {
    let end = Instant::now() + wait;
    loop {
        let mut held = Vec::new();
        let mut failed = None;
        for &addr in addrs {
            // std sets SO_REUSEADDR, as pingora does: a port in TIME_WAIT is free.
            match TcpListener::bind(addr) {
                Ok(listener) => held.push(listener),
                Err(source) => {
                    failed = Some(PortError { addr, source });
                    break;
                }
            }
        }
        drop(held);
        match failed {
            None => return Ok(()),
            Some(e) if e.source.kind() != std::io::ErrorKind::AddrInUse => return Err(e),
            Some(e) if Instant::now() >= end => return Err(e),
            Some(e) => {
                tracing::warn!(addr = %e.addr, "address in use, trying again");
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}

/// The signals pingora acts on, with `drainDelay` before a SIGTERM takes effect. Without an
/// upgrade socket, SIGQUIT shuts down like SIGTERM.
pub struct Signals {
    pub drain_delay: Duration,
    pub can_upgrade: bool,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install the signal handlers");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = quit.recv() => {
                if self.can_upgrade {
                    return ShutdownSignal::GracefulUpgrade;
                }
                tracing::warn!("SIGQUIT without an upgrade socket: shutting down instead");
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
            _ = term.recv() => {
                if !self.drain_delay.is_zero() {
                    tracing::info!(drain_delay = ?self.drain_delay, "SIGTERM: still accepting for server.drainDelay");
                    tokio::select! {
                        _ = tokio::time::sleep(self.drain_delay) => {}
                        // A second SIGTERM cuts the delay short; SIGINT stops at once.
                        _ = term.recv() => {}
                        _ = int.recv() => return ShutdownSignal::FastShutdown,
                    }
                }
                ShutdownSignal::GracefulTerminate
            }
        }
    }
}

/// Watches pingora's phases from a thread of its own: once the grace period starts (the
/// listeners are closed), exits the process as soon as `tally` shows no connection left, or
/// when `grace` has passed.
pub fn exit_when_drained(
    mut phases: broadcast::Receiver<ExecutionPhase>,
    tally: Arc<Tally>,
    grace: Duration,
) {
    std::thread::spawn(move || {
        loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
        let end = Instant::now() + grace;
        while tally.open() > 0 && Instant::now() < end {
            std::thread::sleep(DRAIN_POLL);
        }
        match tally.open() {
            0 => tracing::info!("no request left in flight; exiting"),
            left => tracing::warn!(
                connections = left,
                "server.gracePeriod is over; exiting with connections open"
            ),
        }
        std::process::exit(0);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A free address is claimed and let go; one in use is an error naming it once the wait
    /// is over; the same address twice is in use.
    #[test]
    fn claims_ports() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_addr = taken.local_addr().unwrap();
        let free_addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        claim_ports(&[free_addr], Duration::ZERO).expect("a free address");
        TcpListener::bind(free_addr).expect("let go after the claim");

        let busy = claim_ports(&[free_addr, taken_addr], Duration::ZERO).unwrap_err();
        assert_eq!(busy.addr, taken_addr);
        assert!(busy.to_string().contains(&taken_addr.to_string()), "{busy}");

        let twice = claim_ports(&[free_addr, free_addr], Duration::ZERO).unwrap_err();
        assert_eq!(twice.addr, free_addr);
    }
}
