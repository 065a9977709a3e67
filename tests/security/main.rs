//! The adversarial cases of docs/security.md at the HTTP level: the real `registry-token` binary in
//! front of a real `docker-registry` (Distribution 2.8.2) that runs **no auth of its own**, so
//! the sidecar alone stands between an attacker and the registry, and an in-test Authority
//! (common::authority): the cases forge, mangle, expire and rebind OpToks in ways no real
//! provider will mint, and take the Authority down.
//!
//! ```text
//! raw_http / reqwest ──▶ Sidecar ──▶ Tap ──▶ Registry (no auth)
//!                          │          └ keeps every byte sent upstream
//!                          ▼
//!                       Authority (+ an attacker's server in case 27)
//! ```
//!
//! One test per case, named `caseNN_...` after its number in docs/security.md, so one failure hides
//! no other. Each starts its own [`Bed`] (Authority, registry, tap, sidecar: a few hundred ms;
//! the keygen output is shared by the beds alive at once), grouped by the surface attacked:
//!
//! | module        | surface                                                          | cases |
//! |---------------|------------------------------------------------------------------|-------|
//! | `credentials` | the realm refuses forged, malformed and unbound credentials       | 1–33  |
//! | `grants`      | what a granted token holds: requested ∩ entitled, nothing more    | 39–45, 66 |
//! | `proxy`       | `/v2/` forwards only what the token covers, only registry routes  | 39–57 |
//! | `uploads`     | form bodies on uploads (Distribution reads `mount`/`from` there)  | 71    |
//! | `availability`| the Authority unreachable at start                                | 58    |
//! | `cache`       | the edge cache: per repository, verified, after authorisation     | 87–91 |
//! | `namespaces`  | claim placeholders and the filtered catalog (docs/namespaces.md)  | 92–93 |
//!
//! "Never forwarded" is shown by the [`common::Tap`], a TCP relay that records the request heads
//! the sidecar sends upstream *before* they reach the registry, so a refusal the client has read
//! cannot race with the record. The registry's own access log is checked too, behind a barrier
//! request (its log line is written only after its response, and only for routed requests).
//!
//! Cases 64/65 live in tests/reload.rs and tests/cli.rs, the registry's verification of issued
//! tokens in tests/registry_accepts_tokens.rs, the edge cases (34–38, 56, 70) in tests/edge.rs.

#[path = "../common/mod.rs"]
mod common;

mod bed;

mod availability;
mod cache;
mod credentials;
mod grants;
mod namespaces;
mod proxy;
mod uploads;

use bed::Bed;
