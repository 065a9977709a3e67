//! Reliability as a security property: with the Authority unreachable from the start (58) the
//! sidecar serves, but is not ready and issues nothing.

use crate::bed::query;
use crate::common::*;

/// 58: with the Authority unreachable from the start, the sidecar serves (`/healthz`) but is
/// not ready: `/readyz` answers 503 naming the Authority, and the realm answers 503 with a
/// numeric `Retry-After` rather than issuing anything.
#[test]
fn case58_authority_down_at_start_means_not_ready_and_no_tokens() {
    let authority = Authority::start();
    authority.set_mode(Mode::Down);
    let keys = Keys::generate();
    let registry = Registry::start(None);
    let config = SidecarConfig::new(&registry.url(), &authority.issuer(), keys.path());
    // Waits for /healthz only, and fails if the process exits meanwhile.
    let sidecar = Sidecar::start_unready(config);
    let http = client();

    let ready = http
        .get(format!("{}/readyz", sidecar.url()))
        .send()
        .unwrap();
    assert_eq!(
        ready.status(),
        503,
        "security case 58: /readyz while the Authority was never reached"
    );
    let why = ready.text().unwrap();
    assert!(
        why.contains("authority"),
        "security case 58: /readyz says the Authority is why: {why}"
    );

    let key = DpopKey::new();
    let optok = authority.optok("alice", "enterprise", "LIC-1", Some(&key.thumbprint()));
    let realm_url = sidecar.realm();
    for _ in 0..2 {
        let response = http
            .get(&realm_url)
            .query(&query(&["repository:acme/app:pull"]))
            .header("Authorization", format!("DPoP {optok}"))
            .header("DPoP", key.proof("GET", &realm_url, &optok))
            .send()
            .unwrap();
        assert_eq!(
            response.status(),
            503,
            "security case 58: /token without Authority keys"
        );
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            retry.as_deref().is_some_and(|r| r.parse::<u64>().is_ok()),
            "security case 58: 503 carries a numeric Retry-After, got {retry:?}"
        );
    }
    assert_eq!(
        http.get(format!("{}/readyz", sidecar.url()))
            .send()
            .unwrap()
            .status(),
        503,
        "security case 58: still not ready"
    );
}
