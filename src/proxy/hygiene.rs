//! Request hygiene, before anything else looks at a request: the framing ambiguities that
//! request smuggling feeds on, protocol switches, and oversized targets and headers.

use http::Version;
use pingora::http::RequestHeader;

/// Longest request target accepted (414 beyond).
pub const MAX_TARGET: usize = 8 * 1024;
/// Largest header section accepted (431 beyond).
pub const MAX_HEADERS: usize = 64 * 1024;

/// A request refused before routing; the connection is closed after the answer.
#[derive(Debug, PartialEq)]
pub struct Refused {
    pub status: u16,
    pub reason: &'static str,
    pub message: &'static str,
}

fn refuse(status: u16, reason: &'static str, message: &'static str) -> Result<(), Refused> {
    Err(Refused {
        status,
        reason,
        message,
    })
}

/// True when the raw HTTP/1 header block names `Content-Length` (pingora drops it from the
/// parsed headers when `Transfer-Encoding` is present, so only the raw bytes still show it).
fn raw_has_content_length(raw: &[u8]) -> bool {
    raw.split(|b| *b == b'\n').skip(1).any(|line| {
        let name = line.split(|b| *b == b':').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(b"content-length")
    })
}

/// Checks one request; `raw_headers` is the HTTP/1 header block as received, if any.
pub fn check(req: &RequestHeader, raw_headers: Option<&[u8]>) -> Result<(), Refused> {
    if req.raw_path().len() > MAX_TARGET {
        return refuse(414, "uri_too_long", "the request target is too long");
    }
    let header_bytes: usize = req
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > MAX_HEADERS {
        return refuse(
            431,
            "headers_too_large",
            "the request headers are too large",
        );
    }
    let codings: Vec<_> = req.headers.get_all("transfer-encoding").iter().collect();
    let has_length = req.headers.contains_key("content-length")
        || raw_headers.is_some_and(raw_has_content_length);
    if !codings.is_empty() {
        if has_length {
            return refuse(
                400,
                "ambiguous_framing",
                "Content-Length and Transfer-Encoding together",
            );
        }
        let only_chunked = codings.len() == 1
            && codings[0]
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked");
        if !only_chunked {
            return refuse(
                400,
                "bad_transfer_encoding",
                "only a single `Transfer-Encoding: chunked` is accepted",
            );
        }
    }
    if req.version == Version::HTTP_10 && (!codings.is_empty() || content_length(req) > 0) {
        return refuse(400, "http10_body", "HTTP/1.0 requests may not carry a body");
    }
    if req.headers.contains_key("upgrade") || req.headers.contains_key("http2-settings") {
        return refuse(400, "upgrade_refused", "protocol upgrades are not accepted");
    }
    Ok(())
}

fn content_length(req: &RequestHeader) -> u64 {
    req.headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn request(version: Version, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/v2/acme/app/blobs/uploads/", None).unwrap();
        req.set_version(version);
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    /// The smuggling probes of SECURITY 56 are refused; ordinary framings pass.
    #[rstest]
    #[case::plain(Version::HTTP_11, &[("content-length", "5")], None)]
    #[case::chunked(Version::HTTP_11, &[("transfer-encoding", "chunked")], None)]
    #[case::chunked_any_case(Version::HTTP_11, &[("transfer-encoding", "Chunked")], None)]
    #[case::http10_no_body(Version::HTTP_10, &[], None)]
    #[case::both(Version::HTTP_11, &[("content-length", "5"), ("transfer-encoding", "chunked")], Some(400))]
    #[case::two_codings(Version::HTTP_11, &[("transfer-encoding", "chunked, identity")], Some(400))]
    #[case::repeated(Version::HTTP_11, &[("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")], Some(400))]
    #[case::unknown(Version::HTTP_11, &[("transfer-encoding", "gzip")], Some(400))]
    #[case::http10_body(Version::HTTP_10, &[("content-length", "3")], Some(400))]
    #[case::websocket(Version::HTTP_11, &[("upgrade", "websocket"), ("connection", "upgrade")], Some(400))]
    #[case::h2c(Version::HTTP_11, &[("upgrade", "h2c"), ("http2-settings", "AAMAAABkAAQAAP__")], Some(400))]
    fn framing(
        #[case] version: Version,
        #[case] headers: &[(&str, &str)],
        #[case] refused: Option<u16>,
    ) {
        let got = check(&request(version, headers), None)
            .err()
            .map(|r| r.status);
        assert_eq!(got, refused);
    }

    /// pingora removes Content-Length when Transfer-Encoding is present; the raw block still shows it.
    #[test]
    fn content_length_seen_in_raw_headers() {
        let req = request(Version::HTTP_11, &[("transfer-encoding", "chunked")]);
        let raw = b"POST /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            check(&req, Some(raw)).unwrap_err().reason,
            "ambiguous_framing"
        );
        let raw = b"POST /v2/ HTTP/1.1\r\nHost: x\r\nX-Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(check(&req, Some(raw)).is_ok());
    }

    /// Oversized targets and header sections get 414 and 431.
    #[test]
    fn sizes() {
        let long = format!("/v2/{}", "a".repeat(MAX_TARGET));
        let req = RequestHeader::build("GET", long.as_bytes(), None).unwrap();
        assert_eq!(check(&req, None).unwrap_err().status, 414);
        let big = "v".repeat(8 * 1024);
        let headers: Vec<(String, &str)> =
            (0..9).map(|i| (format!("x-h{i}"), big.as_str())).collect();
        let mut req = RequestHeader::build("GET", b"/v2/", None).unwrap();
        for (name, value) in &headers {
            req.append_header(name.clone(), *value).unwrap();
        }
        assert_eq!(check(&req, None).unwrap_err().status, 431);
    }
}
