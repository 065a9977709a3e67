//! The sidecar at the edge: TLS termination, client certificates binding OpToks (RFC 8705) for
//! stock clients, HTTP/2, request hygiene on the wire, graceful shutdown and upgrade.
//!
//! Authority: the real `oidc-provider` (common::oidc) for the certificate-bound push and pull
//! and its refusal with another certificate: its client gets `cnf.x5t#S256` of the certificate
//! it presents at the provider's mTLS token endpoint. The other cases keep the in-test
//! Authority: they need thumbprints no provider writes (empty, padded, standard base64, of a
//! certificate never presented) and OpToks at will across restarts and upgrades.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::oidc::CERT_BOUND;
use common::pki::{cert, key, x5t, Pki, Role};
use common::*;
use serde_json::json;

/// An OpTok bound to a client certificate thumbprint.
fn mtls_optok(authority: &Authority, thumbprint: &str) -> String {
    let mut claims = authority.optok_claims("alice", "enterprise", "LIC-1", None);
    claims["cnf"] = json!({ "x5t#S256": thumbprint });
    authority.mint(claims)
}

fn mtls_stack(pki: &Pki) -> Stack {
    Stack::start_with(|cfg| {
        cfg.sender_constraint = "mtls".into();
        cfg.patch = pki.tls_patch();
    })
}

/// `mtls_stack` trusting the real provider.
fn provider_mtls_stack(pki: &Pki) -> ProviderStack {
    Stack::on_provider_with(|cfg| {
        cfg.sender_constraint = "mtls".into();
        cfg.patch = pki.tls_patch();
    })
}

fn cert_dir(pki: &Pki, name: &str) -> String {
    pki.path(name).to_string_lossy().into_owned()
}

/// Stock skopeo, with a client certificate and, as its Basic password, the OpTok the provider
/// bound to that certificate, pushes and pulls through the TLS sidecar under
/// `senderConstraint: mtls`; the digests survive.
#[test]
fn skopeo_with_client_certificate_round_trips() {
    let pki = Pki::new();
    let stack = provider_mtls_stack(&pki);
    let optok = stack.authority.mtls_optok(&CERT_BOUND, &pki, "client-a");
    assert_eq!(
        jwt_claims(&optok)["cnf"],
        json!({"x5t#S256": x5t(&pki.client_a)})
    );
    let work = tempfile::tempdir().unwrap();
    let image = oci_layout(&work.path().join("src"), "v1", &[1024 * 1024, 2048]);
    let creds = format!("user:{optok}");
    let target = format!("docker://{}/acme/app:v1", stack.sidecar.addr());
    let src = format!("oci:{}:v1", work.path().join("src").display());
    skopeo_ok(&[
        "copy",
        "--preserve-digests",
        "--dest-cert-dir",
        &cert_dir(&pki, "client-a"),
        "--dest-creds",
        &creds,
        &src,
        &target,
    ]);
    let back = work.path().join("back");
    let dst = format!("oci:{}:v1", back.display());
    skopeo_ok(&[
        "copy",
        "--preserve-digests",
        "--dest-oci-accept-uncompressed-layers",
        "--src-cert-dir",
        &cert_dir(&pki, "client-a"),
        "--src-creds",
        &creds,
        &target,
        &dst,
    ]);
    let pulled = read_oci_layout(&back, "v1");
    assert_eq!(pulled.manifest_digest, image.manifest_digest);
    assert_eq!(pulled.layer_digests, image.layer_digests);
    stack.sidecar.assert_log_free_of(&[&optok]);
}

/// The provider's OpTok bound to client a's certificate, from a client presenting client b's
/// (signed by the same trusted CA), is refused (docs/security.md, case 34), and skopeo fails
/// instead of pushing.
#[test]
fn another_certificate_is_refused() {
    let pki = Pki::new();
    let stack = provider_mtls_stack(&pki);
    let optok = stack.authority.mtls_optok(&CERT_BOUND, &pki, "client-a");
    let work = tempfile::tempdir().unwrap();
    oci_layout(&work.path().join("src"), "v1", &[4096]);
    let src = format!("oci:{}:v1", work.path().join("src").display());
    let target = format!("docker://{}/acme/app:v1", stack.sidecar.addr());
    let out = skopeo(&[
        "copy",
        "--dest-cert-dir",
        &cert_dir(&pki, "client-b"),
        "--dest-creds",
        &format!("user:{optok}"),
        &src,
        &target,
    ]);
    assert!(
        !out.status.success(),
        "case 34: skopeo must fail with the wrong certificate"
    );
    assert!(
        stack.sidecar.metric(
            "registry_token_rejected_total",
            &[("reason", "sender_constraint_mismatch")]
        ) >= 1.0
    );
    assert_eq!(
        stack.registry.requests_for("/v2/acme/app/blobs/uploads"),
        0,
        "case 34: nothing reaches the registry"
    );
}

/// Requests to the token realm over TLS, with and without a client certificate: an empty
/// thumbprint never matches a missing certificate (security case 35), padded or standard-base64
/// thumbprints never match (36), and forwarded client-certificate headers are ignored (37).
#[test]
fn binding_edge_cases() {
    let pki = Pki::new();
    let stack = mtls_stack(&pki);
    let realm = stack.sidecar.realm();
    let query = [
        ("service", "registry.test"),
        ("scope", "repository:acme/app:pull"),
    ];
    let with_cert = |dir: &str| {
        let read = |file: &str| fs::read(pki.path(dir).join(file)).unwrap();
        let identity =
            reqwest::Identity::from_pkcs8_pem(&read("client.cert"), &read("client.key")).unwrap();
        reqwest::blocking::Client::builder()
            .danger_accept_invalid_certs(true)
            .identity(identity)
            .build()
            .unwrap()
    };
    let good = x5t(&pki.client_a);
    let ok = with_cert("client-a")
        .get(&realm)
        .query(&query)
        .header(
            "Authorization",
            format!("Bearer {}", mtls_optok(&stack.authority, &good)),
        )
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200, "the bound certificate gets a token");

    let padded = format!("{good}=");
    let standard = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .encode(openssl::sha::sha256(&pki.client_a.to_der().unwrap()))
    };
    for (what, thumbprint) in [
        ("35 empty", ""),
        ("36 padded", padded.as_str()),
        ("36 standard base64", standard.as_str()),
    ] {
        let optok = mtls_optok(&stack.authority, thumbprint);
        for client in [client(), with_cert("client-a")] {
            let status = client
                .get(&realm)
                .query(&query)
                .header("Authorization", format!("Bearer {optok}"))
                .send()
                .unwrap()
                .status();
            assert_eq!(status, 401, "case {what}");
        }
    }
    // 37: a forwarded certificate header claims client A's certificate; there is no TLS client cert.
    let forged = client()
        .get(&realm)
        .query(&query)
        .header(
            "Authorization",
            format!("Bearer {}", mtls_optok(&stack.authority, &good)),
        )
        .header("X-Forwarded-Client-Cert", format!("Hash={good}"))
        .header("X-SSL-Client-Cert", "-----BEGIN CERTIFICATE-----")
        .header("Client-Cert", ":AAAA:")
        .send()
        .unwrap();
    assert_eq!(
        forged.status(),
        401,
        "case 37: forwarded certificate headers are ignored"
    );
}

/// HTTP/2 is offered by ALPN and HTTP/1.1 still works, on the same TLS listener.
#[test]
fn http2_and_http11_over_tls() {
    let pki = Pki::new();
    let stack = mtls_stack(&pki);
    let url = format!("{}/healthz", stack.sidecar.url());
    for (flag, want) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = Command::new("curl")
            .args([
                "-sk",
                flag,
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
                &url,
            ])
            .output()
            .expect("curl");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{want} 200"),
            "{flag}"
        );
    }
}

/// Sends raw bytes and reads until the server closes, returning the status line and whether
/// the connection was closed.
fn raw_exchange(addr: &str, request: &[u8]) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut got = Vec::new();
    let closed = stream.read_to_end(&mut got).is_ok();
    let text = String::from_utf8_lossy(&got).into_owned();
    (text.lines().next().unwrap_or_default().to_string(), closed)
}

/// Smuggling probes (security case 56): each answered 400 and the connection closed, and the
/// request hidden in the body never reaches the registry.
#[test]
fn smuggling_probes_are_refused() {
    let stack = Stack::start();
    let addr = stack.sidecar.addr();
    let smuggled = "GET /v2/victim/private/tags/list HTTP/1.1\r\nHost: x\r\n\r\n";
    let probes = [
        ("CL+TE", format!("POST /v2/acme/app/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}")),
        ("TE chunked, identity", format!("POST /v2/acme/app/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}")),
        ("duplicate TE", format!("POST /v2/acme/app/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}")),
        ("HTTP/1.0 with body", format!("POST /v2/acme/app/blobs/uploads/ HTTP/1.0\r\nHost: x\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len())),
        ("Upgrade", format!("GET /v2/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n{smuggled}")),
    ];
    for (what, request) in probes {
        let (status, closed) = raw_exchange(&addr, request.as_bytes());
        assert!(
            status.starts_with("HTTP/1.1 400"),
            "case 56 {what}: got {status:?}"
        );
        assert!(closed, "case 56 {what}: the connection must be closed");
    }
    assert_eq!(
        stack.registry.requests_for("victim/private"),
        0,
        "case 56: nothing smuggled through"
    );
}

/// The certificate on disk is renewed by SIGHUP without a restart: new handshakes see it.
#[test]
fn certificate_reloads_on_sighup() {
    let pki = Pki::new();
    let stack = mtls_stack(&pki);
    let serial = |_: ()| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect {} </dev/null 2>/dev/null | openssl x509 -noout -serial",
                stack.sidecar.addr()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let before = serial(());
    assert!(before.starts_with("serial="), "{before}");
    let ca_key = key();
    let ca = cert("renewed CA", &ca_key, None, Role::Ca);
    let server_key = key();
    let renewed = cert("127.0.0.1", &server_key, Some((&ca, &ca_key)), Role::Server);
    fs::write(pki.path("server.crt"), renewed.to_pem().unwrap()).unwrap();
    fs::write(
        pki.path("server.key"),
        server_key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    let generation = stack.sidecar.generation();
    stack.sidecar.sighup();
    stack.sidecar.wait_generation_above(generation);
    assert_ne!(
        serial(()),
        before,
        "a new handshake presents the renewed certificate"
    );
}

/// Uploads a 512 KiB blob as one streamed, chunked `PUT ...?digest=` whose body arrives in two
/// pieces, with `between` run after the first; returns the status of that PUT.
fn chunked_upload(sidecar_addr: &str, token: &str, between: impl FnOnce()) -> u16 {
    let base = format!("http://{sidecar_addr}");
    let location = common::cache::start_upload(&base, "acme/app", Some(token));
    let path = location
        .strip_prefix(&base)
        .unwrap_or(&location)
        .to_string();
    let piece = vec![7u8; 256 * 1024];
    let digest = sha256_digest(&[piece.as_slice(), piece.as_slice()].concat());
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut stream = TcpStream::connect(sidecar_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(stream, "PUT {path}{sep}digest={digest} HTTP/1.1\r\nHost: {sidecar_addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    write!(stream, "{:x}\r\n", piece.len()).unwrap();
    stream.write_all(&piece).unwrap();
    stream.write_all(b"\r\n").unwrap();
    stream.flush().unwrap();
    between();
    write!(stream, "{:x}\r\n", piece.len()).unwrap();
    stream.write_all(&piece).unwrap();
    stream.write_all(b"\r\n0\r\n\r\n").unwrap();
    let mut reply = [0u8; 1024];
    let n = stream.read(&mut reply).unwrap();
    let head = String::from_utf8_lossy(&reply[..n]).to_string();
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Waits until the registry has stored part of an upload body: the request is in flight
/// through the sidecar (accepted, proxied, streaming).
fn wait_upload_started(registry: &Registry) {
    let uploads = registry
        .storage()
        .join("storage/docker/registry/v2/repositories/acme/app/_uploads");
    poll(
        Duration::from_secs(30),
        "the upload body to reach the registry",
        || {
            let dirs = fs::read_dir(&uploads).ok()?;
            dirs.flatten()
                .any(|d| fs::metadata(d.path().join("data")).is_ok_and(|m| m.len() > 0))
                .then_some(())
        },
    );
}

/// A zero-downtime upgrade (`serve --upgrade`, then SIGQUIT to the old process) in the middle
/// of a chunked blob upload: the upload completes (security case 70) and the new process serves.
#[test]
fn upload_survives_upgrade() {
    let socket = tempfile::tempdir().unwrap();
    let upgrade_socket = socket.path().join("upgrade.sock");
    let stack = Stack::start_with(|cfg| {
        cfg.patch = json!({"server": {"upgradeSocket": upgrade_socket, "gracePeriod": "20s"}});
    });
    let (key, optok) = stack.client("alice", "enterprise", "LIC-1");
    let token = stack
        .sidecar
        .token(&["repository:acme/app:pull,push"], &optok, &key);
    let mut next: Option<std::process::Child> = None;
    let status = chunked_upload(&stack.sidecar.addr(), &token, || {
        wait_upload_started(&stack.registry);
        let log = fs::File::create(socket.path().join("next.log")).unwrap();
        let child = Command::new(sidecar::BIN)
            .args([
                "--config",
                &stack.sidecar.config_path().to_string_lossy(),
                "serve",
                "--upgrade",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        next = Some(child);
        // The new process waits on the upgrade socket; the old one hands its listeners over.
        poll(
            Duration::from_secs(30),
            "the new process to wait on the upgrade socket",
            || upgrade_socket.exists().then_some(()),
        );
        unsafe { libc::kill(stack.sidecar.pid() as i32, libc::SIGQUIT) };
    });
    assert_eq!(
        status, 201,
        "case 70: the upload completes across the upgrade"
    );
    let mut next = next.unwrap();
    let health = client()
        .get(format!("{}/healthz", stack.sidecar.url()))
        .send()
        .unwrap();
    assert_eq!(
        health.status(),
        200,
        "the new process serves on the same port"
    );
    let _ = next.kill();
    let _ = next.wait();
}

/// SIGTERM during a slow upload: the sidecar stops accepting, lets the request finish within
/// the grace period, then exits (status 0) as soon as it is done, not at the grace period's end.
#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let mut stack = Stack::start_with(|cfg| {
        cfg.patch = json!({"server": {"gracePeriod": "60s"}});
    });
    let (key, optok) = stack.client("alice", "enterprise", "LIC-1");
    let token = stack
        .sidecar
        .token(&["repository:acme/app:pull,push"], &optok, &key);
    let pid = stack.sidecar.pid();
    let status = chunked_upload(&stack.sidecar.addr(), &token, || {
        wait_upload_started(&stack.registry);
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    });
    assert_eq!(status, 201, "the in-flight upload finishes after SIGTERM");
    let exit = stack.sidecar.wait_exit(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(0), "{exit}");
}

/// Server nonces (security case 21): a proof without one gets `use_dpop_nonce` with exactly one
/// `DPoP-Nonce` header and `Cache-Control: no-store`; the retry with that nonce gets a token;
/// a forged nonce, or one from a replica with another secret, gets a fresh nonce instead.
#[test]
fn dpop_server_nonces() {
    let secret = "a-secret-shared-by-every-replica-0123456789";
    let stack = Stack::start_with(|cfg| {
        cfg.patch = json!({"authority": {"dpop": {"requireNonce": true, "nonceSecret": secret}}});
    });
    let (key, optok) = stack.client("alice", "enterprise", "LIC-1");
    let realm = stack.sidecar.realm();
    let ask = |nonce: Option<&str>| {
        let mut claims = key.claims("GET", &realm, Some(&optok));
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        client()
            .get(&realm)
            .query(&[
                ("service", "registry.test"),
                ("scope", "repository:acme/app:pull"),
            ])
            .header("Authorization", format!("DPoP {optok}"))
            .header("DPoP", key.sign(&key.header(), &claims))
            .send()
            .unwrap()
    };
    let first = ask(None);
    assert_eq!(first.status(), 401);
    let challenge = first.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains(r#"error="use_dpop_nonce""#),
        "{challenge}"
    );
    assert_eq!(
        first.headers().get_all("dpop-nonce").iter().count(),
        1,
        "exactly one DPoP-Nonce"
    );
    assert_eq!(first.headers()["cache-control"], "no-store");
    let nonce = first.headers()["dpop-nonce"].to_str().unwrap().to_string();

    let retry = ask(Some(&nonce));
    assert_eq!(
        retry.status(),
        200,
        "the retry with the server's nonce gets a token"
    );

    let other_replica = {
        use base64::Engine;
        let mut forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&nonce)
            .unwrap();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged)
    };
    for bad in ["forged-nonce", other_replica.as_str()] {
        let refused = ask(Some(bad));
        assert_eq!(refused.status(), 401, "nonce {bad}");
        assert!(refused.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("use_dpop_nonce"));
        assert_ne!(
            refused.headers()["dpop-nonce"].to_str().unwrap(),
            bad,
            "a fresh nonce is offered"
        );
    }
}

/// Behind a trusted TLS edge (security case 38): the edge's `X-Forwarded-Client-Cert` binds the
/// OpTok when it comes from a configured edge address and holds one element; two elements
/// (a chain of appending proxies) or the same header from any other peer are not believed.
#[test]
fn trusted_edge_certificate_header() {
    let digest = openssl::sha::sha256(b"a client certificate the edge verified");
    let xfcc = format!(
        "By=spiffe://edge;Hash={};Subject=\"CN=client\"",
        hex(&digest)
    );
    let ask = |stack: &Stack, header: &str| {
        let optok = mtls_optok(&stack.authority, &b64(digest));
        client()
            .get(stack.sidecar.realm())
            .query(&[
                ("service", "registry.test"),
                ("scope", "repository:acme/app:pull"),
            ])
            .header("Authorization", format!("Bearer {optok}"))
            .header("X-Forwarded-Client-Cert", header)
            .send()
            .unwrap()
            .status()
    };
    let edge = |peer: &str| {
        let patch = json!({"server": {"trustedEdge": {"peers": [peer]}}});
        Stack::start_with(|cfg| {
            cfg.sender_constraint = "mtls".into();
            cfg.patch = patch;
        })
    };
    let trusted = edge("127.0.0.1");
    assert_eq!(
        ask(&trusted, &xfcc),
        200,
        "the edge's element binds the token"
    );
    assert_eq!(
        ask(&trusted, &format!("{xfcc},By=x;Hash={}", hex(&digest))),
        401,
        "case 38: two elements"
    );
    let elsewhere = edge("192.0.2.7");
    assert_eq!(
        ask(&elsewhere, &xfcc),
        401,
        "case 38: the header from a peer that is not the edge"
    );
}

/// An upstream that refuses connections gives 502, one that accepts and never answers gives
/// 504 at `upstream.readTimeout`, both with a Docker `errors` body, while the token realm keeps
/// issuing (security case 63). The upstream changes by hot reload.
#[test]
fn upstream_failures_become_502_and_504() {
    let stack = Stack::start();
    let (key, optok) = stack.client("alice", "enterprise", "LIC-1");
    let token = stack
        .sidecar
        .token(&["repository:acme/app:pull"], &optok, &key);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_port = free_port();
    for (upstream, want) in [
        (format!("http://127.0.0.1:{refused_port}"), 502),
        (format!("http://{}", silent.local_addr().unwrap()), 504),
    ] {
        let mut cfg = stack.sidecar.config().clone();
        cfg.upstream_url = upstream.clone();
        cfg.patch = json!({"upstream": {"readTimeout": "1s", "connectTimeout": "2s"}});
        let generation = stack.sidecar.generation();
        stack.sidecar.apply(&cfg);
        stack.sidecar.wait_generation_above(generation);
        let response = stack.sidecar.v2("/v2/acme/app/tags/list", Some(&token));
        assert_eq!(response.status(), want, "upstream {upstream}");
        let body: serde_json::Value = response.json().unwrap();
        assert!(
            body["errors"][0]["code"].is_string(),
            "Docker errors body: {body}"
        );
        let again = stack
            .sidecar
            .get_token(&["repository:acme/app:pull"], &optok, &key);
        assert_eq!(
            again.status(),
            200,
            "the realm keeps issuing while the registry is down"
        );
    }
    drop(silent);
}

/// An https upstream with a private CA (`upstream.caCertificate`): requests reach it, verified;
/// without the CA the registry's certificate is refused (502); `insecureSkipVerify` connects
/// anyway and says so in the log at start.
#[test]
fn https_upstream_with_private_ca() {
    let pki = Pki::new();
    let authority = Authority::start();
    let keys = Keys::generate();
    let registry = Registry::start_with(
        None,
        Some((&pki.path("server.crt"), &pki.path("server.key"))),
    );
    let upstream = format!(
        "https://localhost:{}",
        registry.addr().rsplit(':').next().unwrap()
    );
    let start = |patch: serde_json::Value| {
        let mut cfg = SidecarConfig::new(&upstream, &authority.issuer(), keys.path());
        cfg.patch = patch;
        Sidecar::start(cfg)
    };
    let key = DpopKey::new();
    let optok = authority.optok("alice", "enterprise", "LIC-1", Some(&key.thumbprint()));
    let trusted = start(json!({"upstream": {"caCertificate": pki.path("server-ca.crt")}}));
    let token = trusted.token(&["repository:acme/app:pull"], &optok, &key);
    let tags = trusted.v2("/v2/acme/app/tags/list", Some(&token));
    assert_eq!(
        tags.status(),
        404,
        "the registry answered (NAME_UNKNOWN) over verified TLS"
    );

    // Without the CA the registry's certificate is not trusted: /readyz says so, and the proxy
    // refuses to talk to it. Started by hand: the harness waits for readiness.
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let cfg = SidecarConfig::new(&upstream, &authority.issuer(), keys.path());
    fs::write(dir.path().join("c.yaml"), cfg.to_yaml(port, admin)).unwrap();
    let child = Command::new(sidecar::BIN)
        .args([
            "--config",
            &dir.path().join("c.yaml").to_string_lossy(),
            "serve",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    let base = format!("http://127.0.0.1:{port}");
    let ready = poll(Duration::from_secs(30), "the keys to load", || {
        let r = client().get(format!("{base}/readyz")).send().ok()?;
        let body = r.text().ok()?;
        (!body.contains("authority")).then_some(body)
    });
    assert!(
        ready.contains("upstream"),
        "/readyz names the untrusted upstream: {ready}"
    );
    let realm = format!("{base}/token");
    let token: serde_json::Value = client()
        .get(&realm)
        .query(&[
            ("service", "registry.test"),
            ("scope", "repository:acme/app:pull"),
        ])
        .header("Authorization", format!("DPoP {optok}"))
        .header("DPoP", key.proof("GET", &realm, &optok))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = token["token"].as_str().expect("a token").to_string();
    let status = client()
        .get(format!("{base}/v2/acme/app/tags/list"))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .status();
    assert_eq!(status, 502, "an unverified registry is refused");

    let insecure = start(json!({"upstream": {"insecureSkipVerify": true}}));
    let token = insecure.token(&["repository:acme/app:pull"], &optok, &key);
    assert_eq!(
        insecure.v2("/v2/acme/app/tags/list", Some(&token)).status(),
        404
    );
    assert!(
        insecure.log().contains("insecureSkipVerify"),
        "the start logs a warning"
    );
}

/// The registry's `X-Forwarded-For` names the client (the client address of docs/http.md):
/// behind a trusted edge, the client the edge reported followed by the edge; from any other peer,
/// the peer alone, whatever the client wrote. Read off the wire by the [`Tap`] in front of the
/// registry.
#[test]
fn registry_hears_of_the_client_behind_the_edge() {
    let authority = Authority::start();
    let keys = Keys::shared();
    let registry = Registry::start(None);
    let tap = Tap::start(&registry.addr());
    let forwarded_for = |edge: &str, n: u8| {
        let mut config = SidecarConfig::new(&tap.url(), &authority.issuer(), keys.path());
        config.patch = json!({"server": {"trustedEdge": {"peers": [edge]}}});
        let sidecar = Sidecar::start(config);
        let key = DpopKey::new();
        let optok = authority.optok("alice", "enterprise", "LIC-1", Some(&key.thumbprint()));
        let token = sidecar.token(&["repository:acme/app:pull"], &optok, &key);
        let marker = format!("/v2/acme/app/tags/list?n={n}");
        let response = client()
            .get(format!("{}{marker}", sidecar.url()))
            .bearer_auth(token)
            .header("X-Forwarded-For", "203.0.113.7")
            .send()
            .unwrap();
        assert_ne!(response.status(), 401, "{marker} is forwarded");
        let heads = tap.heads_for(&marker);
        let [head] = heads.as_slice() else {
            panic!("one request upstream for {marker}: {heads:?}")
        };
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .filter(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-for"))
            .map(|(_, value)| value.trim().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        forwarded_for("127.0.0.1", 1),
        ["203.0.113.7, 127.0.0.1"],
        "behind the trusted edge: the client it reported, then the edge"
    );
    assert_eq!(
        forwarded_for("192.0.2.7", 2),
        ["127.0.0.1"],
        "from a peer that is not the edge: the peer alone, the client's header dropped"
    );
}
