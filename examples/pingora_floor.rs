//! The proxy floor of `scripts/bench`: pingora forwarding every request to one upstream with
//! nothing else: no auth, no header rewriting, no log line, no metrics; the same server settings
//! as the sidecar (one thread per core, plain HTTP/1 listener without an L4 read buffer).
//! What the sidecar spends per request above this is its own.
//!
//! ```text
//! pingora_floor LISTEN UPSTREAM     e.g. pingora_floor 127.0.0.1:8086 127.0.0.1:5000
//! ```

use async_trait::async_trait;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::prelude::HttpPeer;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::Result;

struct Floor {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream] = args.as_slice() else {
        eprintln!("usage: pingora_floor LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let floor = Floor {
        upstream: upstream.clone(),
    };
    let mut proxy = http_proxy_service(&server.configuration, floor);
    let l4 = L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE);
    proxy.add_listener(ListenerConfig::tcp(listen.as_str()).l4_buffer(l4));
    server.add_service(proxy);
    server.run_forever();
}
