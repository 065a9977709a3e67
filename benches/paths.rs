//! Microbenchmarks of the `/v2/` and realm parsing paths: the scope parser, the path router and
//! the plan pattern matcher (`cargo bench --bench paths`).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use registry_token::policy::Pattern;
use registry_token::registry::{parse_scopes, route, Scope};

fn scopes(c: &mut Criterion) {
    let mut g = c.benchmark_group("scope");
    g.bench_function("parse repository", |b| {
        b.iter(|| Scope::parse(black_box("repository:acme/team/app:pull,push")).unwrap())
    });
    g.bench_function("parse host:port name", |b| {
        b.iter(|| {
            Scope::parse(black_box(
                "repository:registry.example.com:5000/acme/app:pull",
            ))
            .unwrap()
        })
    });
    g.bench_function("parse 3 scopes (POST form)", |b| {
        let form = "repository:acme/app:pull,push repository:acme/base:pull registry:catalog:*";
        b.iter(|| parse_scopes([black_box(form)]).unwrap())
    });
    g.finish();
}

fn routes(c: &mut Criterion) {
    let mut g = c.benchmark_group("route");
    let digest = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";
    let blob = format!("/v2/acme/team/app/blobs/{digest}");
    let rows = [
        (
            "HEAD manifest by tag",
            "HEAD",
            "/v2/acme/team/app/manifests/latest",
            None,
        ),
        ("GET blob", "GET", blob.as_str(), None),
        (
            "PATCH upload",
            "PATCH",
            "/v2/acme/app/blobs/uploads/0b8f6c1e-2a4d-4c1b-9f0e-1d2c3b4a5f60",
            Some("_state=abc"),
        ),
        (
            "GET tags list",
            "GET",
            "/v2/acme/app/tags/list",
            Some("n=100&last=v1"),
        ),
    ];
    for (name, method, path, query) in rows {
        g.bench_function(name, |b| {
            b.iter(|| route(black_box(method), black_box(path), query))
        });
    }
    g.finish();
}

fn patterns(c: &mut Criterion) {
    let mut g = c.benchmark_group("pattern");
    let rows = [
        (
            "literal",
            "stella-ops/public/base",
            "stella-ops/public/base",
        ),
        ("one star", "stella-ops/*/*", "stella-ops/team/app"),
        ("double star, deep", "customers/**", "customers/a/b/c/d/e"),
        (
            "double star, miss",
            "customers/**/app",
            "customers/a/b/c/d/other",
        ),
    ];
    for (name, pattern, repo) in rows {
        let p = Pattern::compile(pattern).unwrap();
        g.bench_function(name, |b| b.iter(|| p.matches(black_box(repo))));
    }
    g.bench_function("compile", |b| {
        b.iter(|| Pattern::compile(black_box("customers/**/app")).unwrap())
    });
    g.finish();
}

criterion_group!(benches, scopes, routes, patterns);
criterion_main!(benches);
