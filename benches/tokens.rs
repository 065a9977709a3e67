//! Microbenchmarks of the token paths: verifying a registry token (as the proxy does on every
//! `/v2/` request, with and without the verified-token cache), signing one, and the whole realm
//! (`realm::issue`) for a bearer OpTok and for a DPoP-bound one, and the proxy's pure request
//! path: the `/v2/` decision with a cached token, and the 401 challenge of an anonymous request
//! (`cargo bench --bench tokens`).

mod support;

use std::sync::Arc;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{json, Map};

use registry_token::authority::Authority;
use registry_token::cli::keygen::{keygen, KeyAlg};
use registry_token::config::Settings;
use registry_token::proxy::respond::denial_reply;
use registry_token::proxy::{authorize, V2Request};
use registry_token::registry::{Resource, Scope};
use registry_token::token::cache::VerifiedTokens;
use registry_token::token::realm::{self, Audit, TokenRequest};
use registry_token::token::IssuedClaims;
use support::{mint_optok, proofs, Clock, Es256, SystemClock};

const ISSUER: &str = "http://127.0.0.1:9";
const REALM: &str = "http://127.0.0.1:8085/token";
const SCOPE: &str = "service=registry.bench&scope=repository%3Abench%2Fapp%3Apull%2Cpush";

/// Keys and a config like `scripts/bench` writes (senderConstraint none), loaded.
fn settings(dir: &std::path::Path) -> Settings {
    keygen(
        KeyAlg::Es256,
        dir,
        REALM,
        "registry.bench",
        "registry-token",
    )
    .unwrap();
    let d = dir.display();
    let yaml = format!(
        r#"server: {{listen: "127.0.0.1:8085", adminListen: "127.0.0.1:9091"}}
upstream: {{url: "http://127.0.0.1:5000"}}
authority: {{issuer: "{ISSUER}", audiences: [registry], requiredScopes: [registry.token.issue], senderConstraint: none, dpop: {{replayCapacity: 10000000, replayPerKey: 10000000}}}}
signing: {{issuer: registry-token, keyPath: {d}/signing.pem, certificateChain: {d}/signing-chain.crt}}
registry: {{realm: "{REALM}", service: registry.bench}}
plans: [{{name: enterprise, repositories: [{{pattern: "bench/*", actions: [pull, push]}}]}}]
defaultPlan: enterprise
"#
    );
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    registry_token::config::load(&dir.join("config.yaml")).unwrap()
}

fn claims() -> IssuedClaims {
    let t = SystemClock.now();
    IssuedClaims {
        iss: "registry-token".into(),
        sub: "bench".into(),
        aud: "registry.bench".into(),
        exp: t + 3600,
        nbf: t,
        iat: t,
        jti: "bench".into(),
        access: vec![Scope::new(
            Resource::repository("bench/app"),
            ["pull", "push"],
        )],
        extra: Map::new(),
    }
}

fn registry_tokens(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path());
    let keys = settings.issuer.keys.clone();
    let token = keys.sign(&claims()).unwrap();
    let mut g = c.benchmark_group("registry token");
    g.bench_function("sign", |b| b.iter(|| keys.sign(&claims()).unwrap()));
    g.bench_function("verify", |b| {
        b.iter(|| {
            keys.verify(
                &token,
                "registry-token",
                "registry.bench",
                SystemClock.now(),
                30,
            )
            .unwrap()
        })
    });
    let cache = VerifiedTokens::new(1024);
    g.bench_function("verify, cached", |b| {
        b.iter(|| {
            cache
                .verify(
                    &keys,
                    &token,
                    "registry-token",
                    "registry.bench",
                    SystemClock.now(),
                    30,
                )
                .unwrap()
        })
    });
    g.finish();
}

fn realm(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path());
    let authority_key = Es256::generate().unwrap();
    let authority = Authority::new(settings.authority.clone());
    let mut jwk = authority_key.jwk().unwrap();
    jwk["kid"] = json!("dev-1");
    jwk["alg"] = json!("ES256");
    authority
        .load_jwks(&json!({ "keys": [jwk] }).to_string())
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let counters = registry_token::state::memory::MemoryCounters::default();
    let issue = |authorization: &str, dpop: Option<&str>| {
        let request = TokenRequest {
            method: "GET",
            query: Some(SCOPE),
            form: None,
            authorization: vec![authorization],
            dpop: dpop.into_iter().collect(),
            client_cert_sha256: None,
            client_ip: None,
            counters: &counters,
        };
        let issued = runtime.block_on(realm::issue(
            &settings.issuer,
            &settings.policy,
            &authority,
            &request,
            SystemClock.now(),
            &mut Audit::default(),
        ));
        assert!(issued.is_ok(), "the realm refused the benchmark's request");
    };
    let mut g = c.benchmark_group("realm");
    let bearer = format!(
        "Bearer {}",
        mint_optok(&authority_key, ISSUER, None).unwrap()
    );
    g.bench_function("issue, bearer OpTok", |b| b.iter(|| issue(&bearer, None)));
    let holder = Arc::new(Es256::generate().unwrap());
    let bound = mint_optok(&authority_key, ISSUER, Some(&holder)).unwrap();
    let dpop = format!("DPoP {bound}");
    g.bench_function("issue, DPoP proof + OpTok", |b| {
        b.iter_batched(
            || proofs(&holder, REALM, &bound, 1).unwrap().remove(0),
            |proof| issue(&dpop, Some(&proof)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// What the proxy decides on each `/v2/` request before forwarding it or answering itself.
fn request_path(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path());
    let authorization = format!("Bearer {}", settings.issuer.keys.sign(&claims()).unwrap());
    let tokens = VerifiedTokens::new(1024);
    let head = |authorization: Vec<&'static str>| V2Request {
        method: "HEAD",
        path: "/v2/bench/app/manifests/latest",
        query: None,
        authorization,
        content_types: Vec::new(),
    };
    let authority = &settings.authority;
    let mut g = c.benchmark_group("request path");
    let authorised = V2Request {
        authorization: vec![authorization.as_str()],
        ..head(Vec::new())
    };
    g.bench_function("authorize HEAD manifest, cached token", |b| {
        b.iter(|| {
            let request = black_box(&authorised);
            authorize(&settings, authority, &tokens, request, SystemClock.now()).unwrap()
        })
    });
    let anonymous = head(Vec::new());
    g.bench_function("challenge: 401 to an anonymous HEAD manifest", |b| {
        b.iter(|| {
            let request = black_box(&anonymous);
            let refused = authorize(&settings, authority, &tokens, request, SystemClock.now());
            let denial = refused.unwrap_err();
            denial_reply(&denial, &settings.realm, &settings.service, false)
        })
    });
    g.finish();
}

criterion_group!(benches, registry_tokens, realm, request_path);
criterion_main!(benches);
