//! A TCP relay between the sidecar and the registry that keeps a copy of every byte the sidecar
//! sends upstream, so a test can show what was (and what was never) forwarded.
//!
//! ```text
//! Sidecar ──▶ Tap ──▶ Registry
//!              ├ records each upstream connection's bytes before passing them on
//!              └ while `down`, closes every new connection at once
//! ```
//!
//! The record is taken *before* the bytes reach the registry, so a refusal the client has read
//! cannot race with it: what is not in [`Tap::heads`] once the client has its answer was never
//! sent.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the sidecar wrote on one upstream connection.
type Record = Arc<Mutex<Vec<u8>>>;

/// A recording TCP relay on 127.0.0.1; stops accepting on `Drop`.
pub struct Tap {
    /// Where the sidecar connects (its `upstream.url`).
    pub addr: SocketAddr,
    /// One buffer per upstream connection: what the sidecar wrote on it.
    sent: Arc<Mutex<Vec<Record>>>,
    /// While set, new connections are closed unanswered (the registry "does not answer").
    down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Tap {
    /// Listens on a free port and relays every connection to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the tap");
        let tap = Tap {
            addr: listener.local_addr().unwrap(),
            sent: Arc::default(),
            down: Arc::default(),
            stop: Arc::default(),
        };
        let (upstream, sent, down, stop) = (
            upstream.to_string(),
            tap.sent.clone(),
            tap.down.clone(),
            tap.stop.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                if down.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let record = Arc::new(Mutex::new(Vec::new()));
                sent.lock().unwrap().push(record.clone());
                let (mut from, mut to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
                std::thread::spawn(move || relay_up(client, server, &record));
            }
        });
        tap
    }

    /// `http://127.0.0.1:PORT`, for the sidecar's `upstream.url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes the registry unreachable (`true`) or reachable again through the tap.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// How often `bytes` occur in what was sent upstream so far, over all connections.
    pub fn count(&self, bytes: &[u8]) -> usize {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|record| {
                let sent = record.lock().unwrap();
                sent.windows(bytes.len()).filter(|w| *w == bytes).count()
            })
            .sum()
    }

    /// The head (request line and header lines) of every request sent upstream so far.
    pub fn heads(&self) -> Vec<String> {
        let mut heads = Vec::new();
        for record in self.sent.lock().unwrap().iter() {
            let text = String::from_utf8_lossy(&record.lock().unwrap()).into_owned();
            let mut from = 0;
            while let Some(at) = text[from..].find(" HTTP/1.1\r\n").map(|i| i + from) {
                let start = text[..at].rfind("\r\n").map_or(0, |i| i + 2);
                let end = text[at..].find("\r\n\r\n").map_or(text.len(), |i| i + at);
                heads.push(text[start..end].to_string());
                from = end;
            }
        }
        heads
    }

    /// The heads of upstream requests whose request line contains `fragment`.
    pub fn heads_for(&self, fragment: &str) -> Vec<String> {
        self.heads()
            .into_iter()
            .filter(|h| h.lines().next().is_some_and(|l| l.contains(fragment)))
            .collect()
    }
}

/// Copies client → server, recording each chunk before it is sent on.
fn relay_up(mut client: TcpStream, mut server: TcpStream, record: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 16384];
    while let Ok(n @ 1..) = client.read(&mut buf) {
        record.lock().unwrap().extend_from_slice(&buf[..n]);
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
    }
}
