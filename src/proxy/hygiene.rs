//! Request hygiene, before anything else looks at a request: the framing ambiguities that
//! request smuggling feeds on, protocol switches, and oversized targets and headers.

use http::Version;
use pingora::http::RequestHeader;

use super::denial::Denial;

/// Longest request target accepted (414 beyond).
pub const MAX_TARGET: usize = 8 * 1024;
/// Largest header section accepted (431 beyond).
pub const MAX_HEADERS: usize = 64 * 1024;

/// True when the raw HTTP/1 header block names `Content-Length` (pingora drops it from the
/// parsed headers when `Transfer-Encoding` is present, so only the raw bytes still show it).
fn raw_has_content_length(raw: &[u8]) -> bool {
    raw.split(|b| *b == b'\n').skip(1).any(|line| {
        let name = line.split(|b| *b == b':').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(b"content-length")
    })
}

/// Checks one request; `raw_headers` is the HTTP/1 header block as received, if any. Every
/// refusal here closes the connection after the answer.
pub fn check(req: &RequestHeader, raw_headers: Option<&[u8]>) -> Result<(), Denial> {
    if req.raw_path().len() > MAX_TARGET {
        return Err(Denial::UriTooLong);
    }
    let header_bytes: usize = req
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > MAX_HEADERS {
        return Err(Denial::HeadersTooLarge);
    }
    let codings: Vec<_> = req.headers.get_all("transfer-encoding").iter().collect();
    if !codings.is_empty() {
        // The raw block is scanned only here: requests without Transfer-Encoding keep theirs.
        let has_length = req.headers.contains_key("content-length")
            || raw_headers.is_some_and(raw_has_content_length);
        if has_length {
            return Err(Denial::AmbiguousFraming);
        }
        let only_chunked = codings.len() == 1
            && codings[0]
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked");
        if !only_chunked {
            return Err(Denial::BadTransferEncoding);
        }
    }
    if req.version == Version::HTTP_10 && (!codings.is_empty() || content_length(req) > 0) {
        return Err(Denial::Http10Body);
    }
    if req.headers.contains_key("upgrade") || req.headers.contains_key("http2-settings") {
        return Err(Denial::UpgradeRefused);
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

    /// The smuggling probes of security case 56 (docs/security.md) are refused; ordinary framings
    /// pass.
    #[rstest]
    #[case::plain(Version::HTTP_11, &[("content-length", "5")], None)]
    #[case::chunked(Version::HTTP_11, &[("transfer-encoding", "chunked")], None)]
    #[case::chunked_any_case(Version::HTTP_11, &[("transfer-encoding", "Chunked")], None)]
    #[case::http10_no_body(Version::HTTP_10, &[], None)]
    #[case::both(Version::HTTP_11, &[("content-length", "5"), ("transfer-encoding", "chunked")], Some(Denial::AmbiguousFraming))]
    #[case::two_codings(Version::HTTP_11, &[("transfer-encoding", "chunked, identity")], Some(Denial::BadTransferEncoding))]
    #[case::repeated(Version::HTTP_11, &[("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")], Some(Denial::BadTransferEncoding))]
    #[case::unknown(Version::HTTP_11, &[("transfer-encoding", "gzip")], Some(Denial::BadTransferEncoding))]
    #[case::http10_body(Version::HTTP_10, &[("content-length", "3")], Some(Denial::Http10Body))]
    #[case::websocket(Version::HTTP_11, &[("upgrade", "websocket"), ("connection", "upgrade")], Some(Denial::UpgradeRefused))]
    #[case::h2c(Version::HTTP_11, &[("upgrade", "h2c"), ("http2-settings", "AAMAAABkAAQAAP__")], Some(Denial::UpgradeRefused))]
    fn framing(
        #[case] version: Version,
        #[case] headers: &[(&str, &str)],
        #[case] refused: Option<Denial>,
    ) {
        assert_eq!(check(&request(version, headers), None).err(), refused);
    }

    /// pingora removes Content-Length when Transfer-Encoding is present; the raw block still shows it.
    #[test]
    fn content_length_seen_in_raw_headers() {
        let req = request(Version::HTTP_11, &[("transfer-encoding", "chunked")]);
        let raw = b"POST /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            check(&req, Some(raw)).unwrap_err(),
            Denial::AmbiguousFraming
        );
        let raw = b"POST /v2/ HTTP/1.1\r\nHost: x\r\nX-Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(check(&req, Some(raw)).is_ok());
    }

    /// Oversized targets and header sections get 414 and 431.
    #[test]
    fn sizes() {
        let long = format!("/v2/{}", "a".repeat(MAX_TARGET));
        let req = RequestHeader::build("GET", long.as_bytes(), None).unwrap();
        assert_eq!(check(&req, None).unwrap_err(), Denial::UriTooLong);
        let big = "v".repeat(8 * 1024);
        let headers: Vec<(String, &str)> =
            (0..9).map(|i| (format!("x-h{i}"), big.as_str())).collect();
        let mut req = RequestHeader::build("GET", b"/v2/", None).unwrap();
        for (name, value) in &headers {
            req.append_header(name.clone(), *value).unwrap();
        }
        assert_eq!(check(&req, None).unwrap_err(), Denial::HeadersTooLarge);
    }
}
