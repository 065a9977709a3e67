//! Durations as the configuration and the command line write them: `30s`, `5m`, `1h`, `90d`
//! (humantime's grammar), with errors in words a person can act on.

use std::time::Duration;

use humantime::DurationError;

/// Parses `text`; the error names the value and says what is wrong with it, e.g.
/// "`soon` is not a duration like 30s, 5m or 1h: it must start with a number".
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        let why = match e {
            DurationError::Empty => "it is empty".to_string(),
            DurationError::NumberExpected(0) => "it must start with a number".to_string(),
            DurationError::NumberExpected(at) | DurationError::InvalidCharacter(at) => {
                format!("unexpected `{}`", text[at..].chars().next().unwrap_or(' '))
            }
            DurationError::UnknownUnit { unit, value, .. } if unit.is_empty() => {
                format!("the number needs a unit, like {value}s or {value}m")
            }
            DurationError::UnknownUnit { unit, .. } => {
                format!("`{unit}` is not a unit (ms, s, m, h, d)")
            }
            DurationError::NumberOverflow => "the number is too large".to_string(),
        };
        format!("`{text}` is not a duration like 30s, 5m or 1h: {why}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        "soon",
        "`soon` is not a duration like 30s, 5m or 1h: it must start with a number"
    )]
    #[case("", "`` is not a duration like 30s, 5m or 1h: it is empty")]
    #[case(
        "30",
        "`30` is not a duration like 30s, 5m or 1h: the number needs a unit, like 30s or 30m"
    )]
    #[case("5 parsecs", "`5 parsecs` is not a duration like 30s, 5m or 1h: `parsecs` is not a unit (ms, s, m, h, d)")]
    #[case("5s!", "`5s!` is not a duration like 30s, 5m or 1h: unexpected `!`")]
    fn errors_read_as_sentences(#[case] text: &str, #[case] said: &str) {
        assert_eq!(parse(text), Err(said.to_string()));
    }

    #[rstest]
    #[case("250ms", Duration::from_millis(250))]
    #[case("5m", Duration::from_secs(300))]
    #[case("90d", Duration::from_secs(90 * 86400))]
    fn durations_parse(#[case] text: &str, #[case] expected: Duration) {
        assert_eq!(parse(text), Ok(expected));
    }
}
