//! The trusted TLS-terminating edge (`server.trustedEdge`): which peers it is, and the client
//! certificates it reports (Envoy's `X-Forwarded-Client-Cert`) for mTLS binding behind a proxy.
//! Below both of its users (`proxy`, `server::connections`) and built by `config`.
//!
//! [`TrustedEdge::trusts`] is the one check of a peer against the edge, for every caller: the
//! proxy believes the certificate header and `X-Forwarded-For` (plan limits) only from the edge,
//! and the connection caps exempt it. Addresses are compared canonical on both sides: on a
//! dual-stack listener (`[::]`) an IPv4 peer arrives as `::ffff:a.b.c.d`, and a peer may be
//! written either way in the configuration.

use std::net::IpAddr;

/// The edge proxies whose client-certificate header and `X-Forwarded-For` are believed, and
/// whose connections have no per-client cap.
#[derive(Debug, Clone)]
pub struct TrustedEdge {
    /// Canonical (`IpAddr::to_canonical`): IPv4-mapped IPv6 as IPv4.
    peers: Vec<IpAddr>,
    /// Lower-case header name of the client certificate.
    pub header: String,
}

impl TrustedEdge {
    /// The edge at `peers` (canonicalised here, once), reporting certificates in `header`.
    pub fn new(peers: impl IntoIterator<Item = IpAddr>, header: &str) -> TrustedEdge {
        TrustedEdge {
            peers: peers.into_iter().map(|p| p.to_canonical()).collect(),
            header: header.to_ascii_lowercase(),
        }
    }

    /// True when `peer`, however written, is one of the edge's addresses.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.peers.contains(&peer.to_canonical())
    }
}

/// The `X-Forwarded-For` the registry gets for a request from the TCP `peer`, whose client is
/// `client` (`proxy::limit::client_ip`: the peer itself, or the client a trusted edge reported):
/// `client, edge` behind a trusted edge, else only the peer. Whatever else a client wrote in the
/// header is not passed on.
pub fn forwarded_for(peer: IpAddr, client: IpAddr) -> String {
    let (peer, client) = (peer.to_canonical(), client.to_canonical());
    if client == peer {
        peer.to_string()
    } else {
        format!("{client}, {peer}")
    }
}

/// Splits on `sep` outside double quotes.
fn split_unquoted(text: &str, sep: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The SHA-256 of the client certificate in the header: `Hash=<64 hex>` of its single element.
/// Several fields or several elements (a chain of proxies appending, `APPEND_FORWARD`) are
/// refused: no element but the edge's own may be believed, and the edge's cannot be told apart.
pub fn forwarded_certificate(values: &[&str]) -> Option<[u8; 32]> {
    let [value] = values else { return None };
    let elements = split_unquoted(value, ',');
    let [element] = elements.as_slice() else {
        return None;
    };
    let hashes: Vec<&str> = split_unquoted(element, ';')
        .into_iter()
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(key, _)| key.eq_ignore_ascii_case("hash"))
        .map(|(_, v)| v.trim_matches('"'))
        .collect();
    let [hash] = hashes.as_slice() else {
        return None;
    };
    if hash.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hash.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const HASH: &str = "ab0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eff";

    /// The registry hears of the client behind a trusted edge, then of the edge; from any other
    /// peer, of the peer alone (canonical: a dual-stack listener's `::ffff:a.b.c.d` as `a.b.c.d`).
    #[rstest]
    #[case::direct("192.0.2.1", "192.0.2.1", "192.0.2.1")]
    #[case::direct_dual_stack("::ffff:192.0.2.1", "192.0.2.1", "192.0.2.1")]
    #[case::behind_edge("10.0.0.9", "203.0.113.7", "203.0.113.7, 10.0.0.9")]
    #[case::behind_edge_dual_stack("::ffff:10.0.0.9", "203.0.113.7", "203.0.113.7, 10.0.0.9")]
    #[case::ipv6_client("10.0.0.9", "2001:db8::1", "2001:db8::1, 10.0.0.9")]
    fn the_registry_hears_of_the_client(
        #[case] peer: IpAddr,
        #[case] client: IpAddr,
        #[case] header: &str,
    ) {
        assert_eq!(forwarded_for(peer, client), header);
    }

    /// The edge is the same address whichever way the config or the listener writes it
    /// (docs/security.md, case 86): IPv4, IPv4-mapped IPv6, and nothing else.
    #[rstest]
    #[case::v4_as_v4("127.0.0.1", "127.0.0.1", true)]
    #[case::v4_seen_mapped("127.0.0.1", "::ffff:127.0.0.1", true)]
    #[case::mapped_seen_v4("::ffff:127.0.0.1", "127.0.0.1", true)]
    #[case::mapped_as_mapped("::ffff:127.0.0.1", "::ffff:127.0.0.1", true)]
    #[case::v6("2001:db8::1", "2001:db8::1", true)]
    #[case::other_v4("127.0.0.1", "127.0.0.2", false)]
    #[case::other_mapped("127.0.0.1", "::ffff:127.0.0.2", false)]
    #[case::compatible_is_not_mapped("127.0.0.1", "::127.0.0.1", false)]
    fn edge_peers(#[case] configured: &str, #[case] peer: &str, #[case] trusted: bool) {
        let edge = TrustedEdge::new([configured.parse().unwrap()], "X-Forwarded-Client-Cert");
        assert_eq!(edge.trusts(peer.parse().unwrap()), trusted);
        assert_eq!(edge.header, "x-forwarded-client-cert");
    }

    /// One element with one `Hash` is believed; anything ambiguous is not (security case 38).
    #[rstest]
    #[case::hash_only(vec![format!("Hash={HASH}")], true)]
    #[case::envoy_full(vec![format!("By=spiffe://edge;Hash={HASH};Subject=\"CN=a,O=b;c\";URI=spiffe://client")], true)]
    #[case::two_elements(vec![format!("Hash={HASH},By=x;Hash={HASH}")], false)]
    #[case::two_fields(vec![format!("Hash={HASH}"), format!("Hash={HASH}")], false)]
    #[case::two_hashes(vec![format!("Hash={HASH};Hash={HASH}")], false)]
    #[case::short(vec!["Hash=abcd".into()], false)]
    #[case::not_hex(vec![format!("Hash={}", "zz".repeat(32))], false)]
    #[case::none(vec![], false)]
    #[case::cert_only(vec!["Cert=\"-----BEGIN%20CERTIFICATE-----\"".into()], false)]
    fn forwarded(#[case] values: Vec<String>, #[case] believed: bool) {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let got = forwarded_certificate(&values);
        assert_eq!(got.is_some(), believed, "{values:?}");
        if let Some(digest) = got {
            assert_eq!((digest[0], digest[31]), (0xab, 0xff));
        }
    }
}
