//! The cache key's grammar: a digest is a cache key, and later a file name, only after it
//! matched the strict OCI form `sha256:` + 64 or `sha512:` + 128 lower-case hex characters.
//! Anything else (`SHA256:`, upper-case hex, other algorithms, `%2F`, `..`) is never looked up
//! and never stored: the request passes through to the registry, which decides.

use sha2::Digest as _;

/// A content digest the cache accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// `algorithm:hex`, exactly as validated (lower case only).
    text: String,
    algorithm: Algorithm,
}

/// The two algorithms the OCI image spec registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl Digest {
    /// The digest in `text`, or `None` when it is not exactly `sha256:<64 hex>` or
    /// `sha512:<128 hex>` in lower case.
    pub fn parse(text: &str) -> Option<Digest> {
        let (name, hex) = text.split_once(':')?;
        let algorithm = match name {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return None,
        };
        let lower_hex = hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (hex.len() == algorithm.hex_len() && lower_hex).then(|| Digest {
            text: text.to_string(),
            algorithm,
        })
    }

    /// `algorithm:hex`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `algorithm-hex`: a name made of `[a-z0-9-]` only, for the disk tier.
    pub fn file_name(&self) -> String {
        self.text.replacen(':', "-", 1)
    }

    /// The digest a disk-tier file name stands for, under the same grammar.
    pub fn from_file_name(name: &str) -> Option<Digest> {
        Digest::parse(&name.replacen('-', ":", 1))
    }

    /// A streaming hasher of this digest's algorithm.
    pub fn hasher(&self) -> Hasher {
        match self.algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Hashes bytes as they stream by.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// True when the bytes seen hash to `digest`.
    pub fn matches(self, digest: &Digest) -> bool {
        let hex = match self {
            Hasher::Sha256(h) => data_encoding::HEXLOWER.encode(&h.finalize()),
            Hasher::Sha512(h) => data_encoding::HEXLOWER.encode(&h.finalize()),
        };
        digest.text.split_once(':').map(|(_, h)| h) == Some(hex.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const HEX64: &str = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

    /// Only the strict lower-case form is a key (docs/security.md, case 89).
    #[rstest]
    #[case::sha256(&format!("sha256:{HEX64}"), true)]
    #[case::sha512(&format!("sha512:{HEX64}{HEX64}"), true)]
    #[case::upper_algorithm(&format!("SHA256:{HEX64}"), false)]
    #[case::upper_hex(&format!("sha256:{}", HEX64.to_uppercase()), false)]
    #[case::short(&format!("sha256:{}", &HEX64[..63]), false)]
    #[case::long(&format!("sha256:{HEX64}0"), false)]
    #[case::sha512_with_sha256_length(&format!("sha512:{HEX64}"), false)]
    #[case::other_algorithm(&format!("sha384:{HEX64}"), false)]
    #[case::plus_algorithm(&format!("sha256+b64:{HEX64}"), false)]
    #[case::slash(&format!("sha256:{}/..", &HEX64[..61]), false)]
    #[case::encoded_slash(&format!("sha256:%2F{}", &HEX64[..61]), false)]
    #[case::dots("sha256:../../etc/passwd", false)]
    #[case::no_colon(HEX64, false)]
    #[case::empty("", false)]
    #[case::tag("latest", false)]
    fn grammar(#[case] text: &str, #[case] valid: bool) {
        assert_eq!(Digest::parse(text).is_some(), valid, "{text}");
    }

    /// A file name maps back to the same digest, and nothing else maps to a digest.
    #[test]
    fn file_names() {
        let d = Digest::parse(&format!("sha256:{HEX64}")).unwrap();
        assert_eq!(d.file_name(), format!("sha256-{HEX64}"));
        assert_eq!(Digest::from_file_name(&d.file_name()), Some(d));
        assert_eq!(Digest::from_file_name(".tmp-sha256-x"), None);
        assert_eq!(
            Digest::from_file_name(&format!("sha256-{HEX64}.meta")),
            None
        );
    }

    /// The streaming hash matches only the bytes of the digest.
    #[test]
    fn hashing() {
        let d = Digest::parse(&format!("sha256:{HEX64}")).unwrap();
        let mut h = d.hasher();
        h.update(b"hello ");
        h.update(b"world");
        assert!(h.matches(&d));
        let mut h = d.hasher();
        h.update(b"hello World");
        assert!(!h.matches(&d));
    }
}
