//! Case 71, form bodies on uploads: Distribution reads `mount`/`from` (and `digest`) from a form
//! body as well as from the query, so a push token for `acme/app` could mount
//! `victim/private`'s blob through a multipart upload start. Every form media type, in any case
//! and spacing and with any parameters, on POST, PUT and PATCH, is refused with 400
//! `form_body`, never forwarded, and the connection is not reused (its body is unread).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::bed::raw;
use crate::common::*;
use crate::Bed;

/// The upload sessions of this repository are what the forms aim at.
const UPLOADS: &str = "/v2/acme/app/blobs/uploads/";

/// A `multipart/form-data` body with boundary `B` and one part per `(name, value)`.
fn multipart(parts: &[(&str, &str)]) -> String {
    let mut body = String::new();
    for (name, value) in parts {
        body.push_str(&format!(
            "--B\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str("--B--\r\n");
    body
}

/// A bed, an `enterprise` caller's OpTok and its token for `acme/app` (pull, push).
fn pusher() -> (Bed, String, String) {
    let bed = Bed::start();
    let (key, optok) = bed.caller("enterprise");
    let token = bed
        .sidecar
        .token(&["repository:acme/app:pull,push"], &optok, &key);
    (bed, optok, token)
}

/// 71: each form media type, on an upload start (POST) and on an open session (PUT, PATCH), is
/// refused with 400, counted as `form_body`, not forwarded, and the connection is closed; the
/// victim's blob is not mounted into `acme/app`, and the registry saw only the upload start.
#[test]
fn case71_form_bodies_on_uploads_are_refused() {
    let (bed, optok, token) = pusher();
    let (sidecar, registry) = (&bed.sidecar, &bed.registry);
    let bearer = format!("Bearer {token}");
    let digest = bed.seed_victim_blob();
    let blob_in_app = format!("{}/v2/acme/app/blobs/{digest}", registry.url());
    assert_eq!(
        client().get(&blob_in_app).send().unwrap().status(),
        404,
        "baseline: the blob is not in acme/app"
    );

    // An upload session of acme/app to aim PUT and PATCH at.
    let started = raw_http(
        &sidecar.addr(),
        &raw(
            "POST",
            UPLOADS.as_bytes(),
            &[("Authorization", &bearer)],
            b"",
        ),
    );
    assert_eq!(started.status, 202, "upload session: {}", started.text());
    let location = started.header("location").unwrap_or_default();
    let session = location
        .strip_prefix(&sidecar.url())
        .unwrap_or(location)
        .to_string();
    let session = session.split('?').next().unwrap().to_string();
    assert!(session.starts_with(UPLOADS), "{session}");

    let mount = multipart(&[("mount", &digest), ("from", "victim/private")]);
    let complete = multipart(&[("digest", &digest)]);
    let form = format!("mount={digest}&from=victim/private");
    // (method, path, Content-Type, body)
    let rows: [(&str, &str, &str, &str); 9] = [
        ("POST", UPLOADS, "multipart/form-data; boundary=B", &mount),
        ("POST", UPLOADS, "Multipart/Form-Data ; boundary=B", &mount),
        ("POST", UPLOADS, "MULTIPART/FORM-DATA;boundary=B", &mount),
        (
            "POST",
            UPLOADS,
            "multipart/form-data\t;  charset=utf-8; boundary=\"B\"",
            &mount,
        ),
        ("POST", UPLOADS, " multipart/form-data ; boundary=B", &mount),
        (
            "POST",
            UPLOADS,
            "Application/X-WWW-Form-Urlencoded; charset=utf-8",
            &form,
        ),
        (
            "PUT",
            &session,
            "multipart/form-data; boundary=B",
            &complete,
        ),
        (
            "PATCH",
            &session,
            "Multipart/Form-Data; boundary=B",
            &complete,
        ),
        ("PUT", &session, "application/x-www-form-urlencoded", &form),
    ];
    let denied = || sidecar.metric("registry_proxy_denied_total", &[("reason", "form_body")]);
    for (method, path, content_type, body) in rows {
        let case = format!("71 {method} {content_type:?}");
        let before = denied();
        let headers = [
            ("Authorization", bearer.as_str()),
            ("Content-Type", content_type),
        ];
        let response = bed.refused_locally(
            &case,
            &raw(method, path.as_bytes(), &headers, body.as_bytes()),
            &[400],
        );
        assert_eq!(
            denied(),
            before + 1.0,
            "security case {case}: counted as form_body"
        );
        assert!(
            response
                .header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close")),
            "security case {case}: the connection is not reused, got {:?}",
            response.headers
        );
    }

    // The registry never saw a form: the blob is still not in acme/app, and its log holds only
    // the upload start above.
    assert_eq!(
        client().get(&blob_in_app).send().unwrap().status(),
        404,
        "security case 71: the victim's blob was not mounted into acme/app"
    );
    bed.registry_barrier();
    assert_eq!(
        registry.requests_for("/v2/acme/app/blobs/uploads"),
        1,
        "security case 71: only the upload start reached the registry"
    );
    sidecar.assert_log_free_of(&[&token, &optok]);
}

/// 71: kept alive by the client, a refused form upload still ends its connection: a request
/// pipelined behind the unread body is never read as a second request, and nothing reaches
/// the registry.
#[test]
fn case71_a_refused_form_body_ends_the_connection() {
    let (bed, optok, token) = pusher();
    let bearer = format!("Bearer {token}");
    let digest = bed.seed_victim_blob();
    let mount = multipart(&[("mount", &digest), ("from", "victim/private")]);
    let mut request = format!(
        "POST {UPLOADS} HTTP/1.1\r\nHost: sidecar.test\r\nAuthorization: {bearer}\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: {}\r\n\r\n{mount}",
        mount.len()
    );
    request.push_str(&format!(
        "GET /v2/acme/app/tags/list HTTP/1.1\r\nHost: sidecar.test\r\nAuthorization: {bearer}\r\n\r\n"
    ));
    let before = bed.tap.heads().len();
    let mut stream = TcpStream::connect(bed.sidecar.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("security case 71: the sidecar closes the connection after the refusal");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "security case 71: {answer}"
    );
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "security case 71: one answer only: {answer}"
    );
    assert_eq!(
        bed.tap.heads().len(),
        before,
        "security case 71: nothing forwarded"
    );
    bed.registry_never_saw("71", &["/v2/acme/app/blobs/uploads", "/v2/acme/app/tags"]);
    bed.sidecar.assert_log_free_of(&[&token, &optok]);
}
