//! `/healthz` and `/readyz` (docs/operations.md, "Health"; docs/security.md, case 76): the main
//! listener may face the internet, so its `/readyz` names the failing parts and nothing else; the
//! admin listener's `/readyz` says why (URLs, error chains). The upstream probe is cached for 2 s.
//!
//! ```text
//! reqwest ──▶ Sidecar ──▶ Tap ──▶ Registry (no auth)
//!                          └ counts the probes (`GET /v2/`), and can refuse every connection
//! ```
//!
//! Authority: in-test (common::authority): it is taken down and brought back on cue, which a
//! readiness test needs and a real provider process does not offer.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// How long a change of the upstream's state may take to show (the probe cache is 2 s).
const SHOWS_WITHIN: Duration = Duration::from_secs(15);

/// Readiness probes that reached the registry through `tap` so far: `GET /v2/` request lines.
fn probes(tap: &Tap) -> usize {
    tap.count(b"GET /v2/ HTTP/1.1\r\n")
}

/// Authority + keygen + a registry without auth behind the tap + the sidecar. Drops in order.
struct Bed {
    sidecar: Sidecar,
    tap: Tap,
    _registry: Registry,
    _keys: Keys,
    authority: Authority,
}

impl Bed {
    /// With `authority_down`, the Authority is unreachable from the start and the sidecar is
    /// started without waiting for readiness.
    fn start(authority_down: bool) -> Bed {
        let authority = Authority::start();
        if authority_down {
            authority.set_mode(Mode::Down);
        }
        let keys = Keys::generate();
        let registry = Registry::start(None);
        let tap = Tap::start(&registry.addr());
        let config = SidecarConfig::new(&tap.url(), &authority.issuer(), keys.path());
        let sidecar = if authority_down {
            Sidecar::start_unready(config)
        } else {
            Sidecar::start(config)
        };
        Bed {
            sidecar,
            tap,
            _registry: registry,
            _keys: keys,
            authority,
        }
    }

    /// `GET /readyz` on the main listener: status and body text.
    fn readyz(&self) -> (u16, String) {
        let response = client()
            .get(format!("{}/readyz", self.sidecar.url()))
            .send()
            .expect("GET /readyz");
        (response.status().as_u16(), response.text().unwrap())
    }

    /// `GET /readyz` on the admin listener: status and JSON body.
    fn admin_readyz(&self) -> (u16, Value) {
        let response = client()
            .get(format!("{}/readyz", self.sidecar.admin_url()))
            .send()
            .expect("GET admin /readyz");
        (response.status().as_u16(), response.json().expect("JSON"))
    }

    /// Polls the main `/readyz` until it answers `status`; returns the body.
    fn wait_readyz(&self, status: u16) -> String {
        poll(SHOWS_WITHIN, &format!("/readyz to answer {status}"), || {
            let (got, body) = self.readyz();
            (got == status).then_some(body)
        })
    }
}

/// The detail the admin listener gives for `part`.
fn detail(body: &Value, part: &str) -> String {
    body["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == part)
        .and_then(|c| c["detail"].as_str())
        .unwrap_or_else(|| panic!("no check {part} in {body}"))
        .to_string()
}

/// With the registry unreachable, the main listener's `/readyz` is 503 with exactly
/// `{"ready":false,"failing":["upstream"]}`: no URL, address or error text. The admin listener's
/// `/readyz` names the upstream URL and the error. `/healthz` stays 200 `ok` meanwhile, and
/// readiness comes back with the registry (security case 76).
#[test]
fn the_main_readyz_names_only_what_fails_and_the_admin_readyz_says_why() {
    let bed = Bed::start(false);
    let (status, body) = bed.readyz();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"ready": true, "failing": []})
    );

    bed.tap.set_down(true);
    let body = bed.wait_readyz(503);
    assert_eq!(
        body, r#"{"ready":false,"failing":["upstream"]}"#,
        "security case 76: status only on the main listener"
    );

    let (status, admin) = bed.admin_readyz();
    assert_eq!(status, 503);
    assert_eq!(admin["failing"], json!(["upstream"]));
    let upstream = detail(&admin, "upstream");
    assert!(
        upstream.contains(&format!("{}/v2/", bed.tap.url()))
            && upstream.contains("does not answer"),
        "the admin listener says which URL fails and why: {upstream}"
    );
    assert!(
        detail(&admin, "authority").contains(&bed.authority.issuer()),
        "{admin}"
    );

    let healthz = client()
        .get(format!("{}/healthz", bed.sidecar.url()))
        .send()
        .unwrap();
    assert_eq!(healthz.status(), 200);
    assert_eq!(healthz.text().unwrap(), "ok");

    bed.tap.set_down(false);
    bed.wait_readyz(200);
}

/// With the Authority never reached, the main `/readyz` is 503 with exactly
/// `{"ready":false,"failing":["authority"]}`; the admin listener names the issuer and the
/// error. When the Authority comes up, the sidecar becomes ready (security cases 58, 76).
#[test]
fn with_the_authority_never_reached_the_main_readyz_names_only_the_authority() {
    let bed = Bed::start(true);
    let (status, body) = bed.readyz();
    assert_eq!(
        (status, body.as_str()),
        (503, r#"{"ready":false,"failing":["authority"]}"#),
        "security case 76: status only on the main listener"
    );
    let (status, admin) = bed.admin_readyz();
    assert_eq!(status, 503);
    assert_eq!(admin["failing"], json!(["authority"]));
    let authority = detail(&admin, "authority");
    assert!(
        authority.contains(&bed.authority.issuer()) && authority.contains("no usable key"),
        "the admin listener says why: {authority}"
    );

    bed.authority.set_mode(Mode::Serve);
    bed.wait_readyz(200);
}

/// 1,000 `/readyz` requests from 8 threads, on both listeners, cause at most one upstream
/// probe per 2 s of the flood (security case 76; the old `/readyz` probed the registry per hit).
#[test]
fn a_flood_of_readyz_probes_the_registry_at_most_once_per_two_seconds() {
    let bed = Bed::start(false);
    let (main, admin) = (
        format!("{}/readyz", bed.sidecar.url()),
        format!("{}/readyz", bed.sidecar.admin_url()),
    );
    let before = probes(&bed.tap);
    let started = Instant::now();
    let statuses: Vec<(String, u16)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|thread| {
                let (main, admin) = (&main, &admin);
                scope.spawn(move || {
                    let http = client();
                    (0..125)
                        .map(|i| {
                            let url = if (thread + i) % 10 == 0 { admin } else { main };
                            (url.clone(), http.get(url).send().unwrap().status().as_u16())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed();
    let probes = probes(&bed.tap) - before;
    let allowed = (elapsed.as_secs_f64() / 2.0).floor() as usize + 1;
    assert!(
        probes <= allowed,
        "security case 76: {probes} upstream probes in {elapsed:?} of /readyz flood (at most {allowed})"
    );
    assert_eq!(statuses.len(), 1000);
    for (url, status) in statuses {
        assert_eq!(status, 200, "{url}");
    }
}
