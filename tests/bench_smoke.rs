//! `scripts/bench --smoke` (issue 5) starts docker-registry, registry-token and nginx on
//! 127.0.0.1, measures each row for about a second, writes its Markdown table where it is told
//! (never the committed BENCHMARKS.md) and stops everything. Uses this build's binaries. Issue
//! 10's rows are there too: `/token` with the replay store on Redis (a redis-server the script
//! starts), manifest GETs with and without `limits.pulls`. Issue 13's: manifest GETs beside the
//! HEADs, the sidecar's CPU per request, and its memory per idle keep-alive connection. Issue
//! 21's: warm pulls through the edge cache beside nginx's proxy_cache, its disk tier, 64 cold
//! pulls making one upstream GET per object.

use std::path::Path;
use std::process::Command;

#[test]
fn smoke_run_writes_every_row() {
    let bin = Path::new(env!("CARGO_BIN_EXE_registry-token"));
    let dir = bin.parent().expect("the binary's folder");
    // Always built: cargo makes them only when stale, and a stale client (an older config
    // schema) fails the run for nothing.
    let profile = if dir.ends_with("release") {
        "release"
    } else {
        "dev"
    };
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--locked",
            "--profile",
            profile,
            "--example",
            "bench_client",
            "--example",
            "pingora_floor",
        ])
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build --example bench_client --example pingora_floor"
    );
    let out = tempfile::tempdir().unwrap();
    let table = out.path().join("BENCHMARKS.md");
    let run = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench"))
        .arg("--smoke")
        .arg("--bin")
        .arg(dir)
        .arg("--out")
        .arg(&table)
        .output()
        .expect("run scripts/bench");
    assert!(
        run.status.success(),
        "scripts/bench --smoke exited {}:\n{}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&table).expect("the table was written");
    for row in [
        "| GET manifest, 16 connections |",
        "| GET manifest, 64 connections |",
        "| HEAD manifest, 16 connections |",
        "| HEAD manifest, 64 connections |",
        "| CPU per manifest request | nginx | pingora alone | registry-token |",
        "| GET, 16 connections |",
        "| HEAD, 64 connections |",
        "RSS per idle keep-alive\nconnection",
        "| blob PUT, 8 MiB (MiB/s) |",
        "| blob GET, 8 MiB (MiB/s) |",
        "| 401 challenge, 64 connections (req/s) |",
        "| `/token`, DPoP proof + OpTok |",
        "| `/token`, bearer OpTok (senderConstraint none) |",
        "| crypto floor: verify OpTok + verify proof + sign,",
        "Sidecar peak RSS (VmHWM) during the blob transfers:",
        "| `/token` (DPoP) / crypto floor ≥ 0.85 |",
        // issue 13: CPU per request, manifest GET beside HEAD
        "| sidecar CPU per authorised HEAD at 16 connections ≤ 60 µs |",
        "| GET at 64 connections: sidecar / nginx ≥ 1.00 |",
        "| blob GET: sidecar / direct ≥ 0.85 |",
        // issue 10: the replay store on Redis, manifest GETs under a pull limit
        "| `/token`, DPoP proof + OpTok, replay store on Redis |",
        "| no `limits` (plan enterprise) |",
        "| `limits.pulls` counted in memory |",
        "| `limits.pulls` counted on Redis |",
        "| `/token` replay store on Redis: p50 − memory p50 ≤ 0.30 ms |",
        "| `/token` replay store on Redis: issuances/s ÷ memory ≥ 0.85 |",
        "| `/token`, DPoP, replay store on Redis, 1 connection |",
        "| `/token` replay store on Redis, 1 connection: p50 − memory p50 ≤ 0.30 ms |",
        "| manifest GET, `limits.pulls` on Redis ÷ no limit ≥ 0.85 |",
        // issue 21: the edge cache
        "| warm pull, 5 layers of 64 KiB, 16 connections (pulls/s) |",
        "| 8 MiB blob, sidecar from its disk tier (MiB/s) |",
        "| cached manifest GET by digest, 16 connections (req/s) |",
        "| warm pull: sidecar / nginx proxy_cache ≥ 1.00 |",
        "| 64 cold pulls: exactly one upstream GET per object | 1–1 | met |",
        "| CPU per cached manifest hit ≤ pingora alone + 20 µs |",
    ] {
        assert!(text.contains(row), "no row {row:?} in:\n{text}");
    }
    // Every measured rate is a positive number.
    for line in text.lines().filter(|l| {
        [
            "| `/token`,",
            "| HEAD",
            "| GET",
            "| no `limits`",
            "| `limits.pulls`",
            "| warm pull,",
        ]
        .iter()
        .any(|row| l.starts_with(row))
    }) {
        let cell = line.split('|').nth(2).unwrap_or_default();
        let rate: f64 = cell
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        assert!(rate > 0.0, "no rate in {line:?}");
    }
}
