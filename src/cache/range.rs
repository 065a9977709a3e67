//! `Range` on a cached blob: one byte range or none. A header with several ranges, or one the
//! sidecar cannot read, is answered with the whole object (RFC 9110 lets a server ignore
//! `Range`), so no request can make the sidecar write a multipart answer larger than the object
//! (docs/security.md, case 91).

/// What to send of an object of a known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// 200 with the whole object.
    Whole,
    /// 206 with bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */LEN`.
    Unsatisfiable,
}

/// Reads the `Range` header value for an object of `len` bytes.
pub fn parse(header: Option<&str>, len: u64) -> Ranged {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // `bytes=-N`: the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
        (false, Some(start), None) if last.trim().is_empty() => {
            if start >= len {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part {
                    start,
                    end: len - 1,
                }
            }
        }
        (false, Some(start), Some(end)) if start <= end => {
            if start >= len {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part {
                    start,
                    end: end.min(len - 1),
                }
            }
        }
        _ => Ranged::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use Ranged::*;

    /// Single ranges as RFC 9110 reads them; several ranges or nonsense: the whole object.
    #[rstest]
    #[case::none(None, Whole)]
    #[case::first_bytes(Some("bytes=0-1"), Part { start: 0, end: 1 })]
    #[case::one_byte(Some("bytes=0-0"), Part { start: 0, end: 0 })]
    #[case::open(Some("bytes=5-"), Part { start: 5, end: 9 })]
    #[case::end_past_length(Some("bytes=8-100"), Part { start: 8, end: 9 })]
    #[case::suffix(Some("bytes=-1"), Part { start: 9, end: 9 })]
    #[case::suffix_longer_than_object(Some("bytes=-100"), Part { start: 0, end: 9 })]
    #[case::suffix_zero(Some("bytes=-0"), Unsatisfiable)]
    #[case::past_end(Some("bytes=10-"), Unsatisfiable)]
    #[case::past_end_closed(Some("bytes=50-60"), Unsatisfiable)]
    #[case::two(Some("bytes=0-0,1-1"), Whole)]
    #[case::hundreds(Some(&*(0..300).map(|i| format!("{i}-{i}")).collect::<Vec<_>>().join(",")), Whole)]
    #[case::reversed(Some("bytes=5-1"), Whole)]
    #[case::other_unit(Some("items=0-1"), Whole)]
    #[case::garbage(Some("bytes=a-b"), Whole)]
    #[case::huge(Some("bytes=0-99999999999999999999999"), Whole)]
    #[case::negative(Some("bytes=--1"), Whole)]
    #[case::empty(Some("bytes="), Whole)]
    fn ranges(#[case] header: Option<&str>, #[case] expected: Ranged) {
        assert_eq!(parse(header, 10), expected);
    }

    /// An empty object has no byte to serve.
    #[test]
    fn empty_object() {
        assert_eq!(parse(Some("bytes=0-0"), 0), Unsatisfiable);
        assert_eq!(parse(Some("bytes=-1"), 0), Unsatisfiable);
        assert_eq!(parse(None, 0), Whole);
    }
}
