//! Go-style durations (`30s`, `1m30s`, `1.5h`, `500ms`) as used by
//! `HEALTHCHECK --interval` and friends; Docker parses them with Go's
//! `time.ParseDuration`, so the accepted grammar is the same.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}")]
    Invalid(String),
    #[error("missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
    #[error("negative duration {0:?}")]
    Negative(String),
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

/// Parses a Go duration. Negative durations are rejected: nothing in a
/// Dockerfile can use one.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(input.to_string());
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(len)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let scale = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            unit: unit.to_string(),
            input: input.to_string(),
        })?;
        let overflow = || DurationError::Overflow(input.to_string());
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut nanos = whole.checked_mul(scale).ok_or_else(overflow)?;
        // Fractions beyond nanosecond precision are truncated, as in Go;
        // 18 digits keep `fraction * scale` far inside u128.
        let mut divisor: u128 = 1;
        let mut fraction: u128 = 0;
        for digit in frac_part.bytes().take(18) {
            fraction = fraction * 10 + u128::from(digit - b'0');
            divisor *= 10;
        }
        nanos = nanos
            .checked_add(fraction * scale / divisor)
            .ok_or_else(overflow)?;
        total = total.checked_add(nanos).ok_or_else(overflow)?;
        rest = after;
    }
    if negative && total != 0 {
        return Err(DurationError::Negative(input.to_string()));
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| DurationError::Overflow(input.to_string()))?;
    // The remainder is below 10^9 and fits.
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("30s", Duration::from_secs(30)),
            ("1m30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("1.5h", Duration::from_secs(5400)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("2h45m", Duration::from_secs(9900)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("1.0000000019s", Duration::new(1, 1)),
            ("1h1m1s1ms1us1ns", Duration::new(3661, 1_001_001)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Ok(*want), "{input}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        let cases: &[(&str, &str)] = &[
            ("", "invalid duration \"\""),
            ("s", "invalid duration \"s\""),
            ("-", "invalid duration \"-\""),
            (".s", "invalid duration \".s\""),
            ("10", "missing unit in duration \"10\""),
            ("1m30", "missing unit in duration \"1m30\""),
            ("1x", "unknown unit \"x\" in duration \"1x\""),
            ("1 s", "unknown unit \" s\" in duration \"1 s\""),
            ("-5s", "negative duration \"-5s\""),
            (
                "99999999999999999999999999999999999999999h",
                "duration \"99999999999999999999999999999999999999999h\" is too large",
            ),
            (
                "9999999999999999999999h",
                "duration \"9999999999999999999999h\" is too large",
            ),
        ];
        for (input, want) in cases {
            let got = parse_duration(input).map_err(|e| e.to_string());
            assert_eq!(got, Err(want.to_string()), "{input}");
        }
    }
}
