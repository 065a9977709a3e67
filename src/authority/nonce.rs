//! DPoP server nonces (RFC 9449 section 8) for the token realm: with
//! `authority.dpop.requireNonce`, a proof must carry a `nonce` this server family issued
//! recently, so a proof cannot be made in advance of its use.
//!
//! Stateless, so any replica can check what another issued: a nonce is
//! `base64url(timestamp_be8 || HMAC-SHA256(secret, timestamp_be8)[..16])`, 32 characters.
//! It is valid from its timestamp (less [`FUTURE_SKEW`] for replicas whose clocks run ahead)
//! until `lifetime` later.

use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::jose::{b64url_decode, b64url_encode};

/// How far in the future a nonce's timestamp may be (another replica's clock running ahead).
pub const FUTURE_SKEW: i64 = 10;
/// Length of the MAC kept in a nonce.
const MAC_BYTES: usize = 16;
/// Length of a nonce as sent: base64url of 8 + 16 bytes.
pub const NONCE_CHARS: usize = 32;

/// Server nonces on: the shared secret and how long a nonce stays good.
#[derive(Clone, PartialEq, Eq)]
pub struct NonceConfig {
    /// The HMAC key shared by every replica (≥ 32 bytes, checked by the config).
    pub secret: Vec<u8>,
    /// How long a nonce is accepted after it was issued.
    pub lifetime: Duration,
}

impl fmt::Debug for NonceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceConfig")
            .field("secret", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// HMAC-SHA256 (RFC 2104), written out so that it cannot fail.
fn hmac_sha256(secret: &[u8], message: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 64];
    if secret.len() > key.len() {
        key[..32].copy_from_slice(&Sha256::digest(secret));
    } else {
        key[..secret.len()].copy_from_slice(secret);
    }
    let inner = Sha256::new()
        .chain_update(key.map(|b| b ^ 0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(key.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn mac(secret: &[u8], timestamp: [u8; 8]) -> [u8; MAC_BYTES] {
    let mut out = [0u8; MAC_BYTES];
    out.copy_from_slice(&hmac_sha256(secret, &timestamp)[..MAC_BYTES]);
    out
}

/// A nonce for `now` (unix seconds).
pub fn issue(secret: &[u8], now: i64) -> String {
    let timestamp = now.to_be_bytes();
    b64url_encode([&timestamp[..], &mac(secret, timestamp)].concat())
}

/// True when `nonce` was issued with `secret`, at most `lifetime` ago and not more than
/// [`FUTURE_SKEW`] ahead of `now`. The MAC is compared in constant time.
pub fn check(secret: &[u8], nonce: &str, now: i64, lifetime: Duration) -> bool {
    if nonce.len() != NONCE_CHARS {
        return false;
    }
    let Ok(bytes) = b64url_decode(nonce) else {
        return false;
    };
    let Some((timestamp, tag)) = bytes.split_first_chunk::<8>() else {
        return false;
    };
    // memcmp::eq needs equal lengths; it then takes the same time wherever the bytes differ.
    if tag.len() != MAC_BYTES || !openssl::memcmp::eq(tag, &mac(secret, *timestamp)) {
        return false;
    }
    let issued = i64::from_be_bytes(*timestamp);
    let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
    issued <= now.saturating_add(FUTURE_SKEW) && now.saturating_sub(issued) <= lifetime
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::sign::Signer;
    use rstest::rstest;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_800_000_000;
    const LIFETIME: Duration = Duration::from_secs(300);

    /// RFC 4231 test cases 1 and 6 (a key longer than the block), and openssl for other sizes.
    #[test]
    fn hmac_known_answers() {
        let hex = |b: [u8; 32]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        for len in [1, 32, 63, 64, 65, 200] {
            let key = vec![0x5a; len];
            let expected = Signer::new(MessageDigest::sha256(), &PKey::hmac(&key).unwrap())
                .unwrap()
                .sign_oneshot_to_vec(b"message")
                .unwrap();
            assert_eq!(
                hmac_sha256(&key, b"message").to_vec(),
                expected,
                "key of {len}"
            );
        }
    }

    /// A fresh nonce is 32 base64url characters, checks, and differs from second to second.
    #[test]
    fn round_trip() {
        let nonce = issue(SECRET, NOW);
        assert_eq!(nonce.len(), NONCE_CHARS);
        assert!(nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(check(SECRET, &nonce, NOW, LIFETIME));
        assert_ne!(issue(SECRET, NOW + 1), nonce);
    }

    /// Age and clock rules: (issued at, checked at) → accepted.
    #[rstest]
    #[case::same_second(NOW, NOW, true)]
    #[case::at_lifetime(NOW - 300, NOW, true)]
    #[case::expired(NOW - 301, NOW, false)]
    #[case::ahead_within_skew(NOW + FUTURE_SKEW, NOW, true)]
    #[case::ahead_beyond_skew(NOW + FUTURE_SKEW + 1, NOW, false)]
    #[case::far_future(i64::MAX, NOW, false)]
    #[case::far_past(i64::MIN, NOW, false)]
    #[case::clock_extremes(i64::MIN, i64::MAX, false)]
    fn ages(#[case] issued: i64, #[case] now: i64, #[case] ok: bool) {
        assert_eq!(check(SECRET, &issue(SECRET, issued), now, LIFETIME), ok);
    }

    /// Tampered, foreign and malformed nonces are refused.
    #[test]
    fn tamper() {
        let nonce = issue(SECRET, NOW);
        let mut bytes = b64url_decode(&nonce).unwrap();
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            assert!(
                !check(SECRET, &b64url_encode(&bytes), NOW, LIFETIME),
                "byte {i}"
            );
            bytes[i] ^= 1;
        }
        // An older timestamp with the MAC of the current one: the MAC covers the time.
        let mut backdated = b64url_decode(&issue(SECRET, NOW)).unwrap();
        backdated[..8].copy_from_slice(&(NOW - 1).to_be_bytes());
        assert!(!check(SECRET, &b64url_encode(&backdated), NOW, LIFETIME));

        let other = b"another-secret-another-secret-xx";
        assert!(!check(other, &nonce, NOW, LIFETIME));
        for bad in [
            "",
            "x",
            &nonce[..31],
            &format!("{nonce}A"),
            &format!("{}=", &nonce[..31]),
            &format!("{}+", &nonce[..31]),
            &"é".repeat(16),
            &"A".repeat(32),
        ] {
            assert!(!check(SECRET, bad, NOW, LIFETIME), "{bad:?}");
        }
    }

    /// The secret never shows in Debug output.
    #[test]
    fn debug_redacts_secret() {
        let config = NonceConfig {
            secret: SECRET.to_vec(),
            lifetime: LIFETIME,
        };
        assert!(!format!("{config:?}").contains("0123456789"));
    }
}
