//! Flag values written the way kaniko's users write them: Go's `ParseBool`
//! spellings for booleans and Go's `ParseDuration` syntax for durations
//! (`168h`, `2h30m`, `1.5h`), so scripts written for kaniko keep working.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    #[error("invalid boolean \"{0}\": use true or false")]
    Bool(String),
    #[error("invalid duration \"{0}\": expected a number with a unit, e.g. 336h, 2h30m, 90s")]
    Duration(String),
    #[error("invalid duration \"{0}\": unknown unit \"{1}\" (use ns, us, ms, s, m or h)")]
    DurationUnit(String, String),
    #[error("invalid duration \"{0}\": negative durations are not allowed")]
    NegativeDuration(String),
    #[error("invalid duration \"{0}\": too large")]
    DurationTooLarge(String),
}

/// Parses a boolean as Go's `strconv.ParseBool` does, which is what pflag
/// (and so kaniko) accepts after `--flag=`.
pub fn parse_bool(text: &str) -> Result<bool, ValueError> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(ValueError::Bool(other.to_string())),
    }
}

const NANOS_PER_UNIT: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a Go duration (`time.ParseDuration`): a sequence of decimal
/// numbers, each with an optional fraction and a unit, e.g. `2h30m` or
/// `1.5h`. A bare `0` is allowed, as in Go. Negative values are refused
/// because every kiln duration is a length of time to wait or keep.
pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    let malformed = || ValueError::Duration(text.to_string());
    let rest = match text.strip_prefix('-') {
        Some(rest) if rest != "0" && !rest.is_empty() => {
            return Err(ValueError::NegativeDuration(text.to_string()));
        }
        Some(rest) => rest,
        None => text.strip_prefix('+').unwrap_or(text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(malformed());
    }
    let mut total: u128 = 0;
    let mut remaining = rest;
    while !remaining.is_empty() {
        let integer_len = remaining
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(remaining.len());
        let (integer, after) = remaining.split_at(integer_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                after.split_at(len)
            }
            None => ("", after),
        };
        if integer.is_empty() && fraction.is_empty() {
            return Err(malformed());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(malformed());
        }
        let scale = NANOS_PER_UNIT
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| ValueError::DurationUnit(text.to_string(), unit.to_string()))?;
        let too_large = || ValueError::DurationTooLarge(text.to_string());
        let whole = if integer.is_empty() {
            0
        } else {
            integer.parse::<u128>().map_err(|_| too_large())?
        };
        // Digits beyond nanosecond precision of the largest unit cannot
        // change the result; ignoring them keeps 10^len in range.
        let fraction = &fraction[..fraction.len().min(20)];
        let fraction_nanos = if fraction.is_empty() {
            0
        } else {
            let digits = fraction.parse::<u128>().map_err(|_| malformed())?;
            digits * scale / 10u128.pow(fraction.len() as u32)
        };
        total = whole
            .checked_mul(scale)
            .and_then(|nanos| nanos.checked_add(fraction_nanos))
            .and_then(|nanos| nanos.checked_add(total))
            .ok_or_else(too_large)?;
        remaining = after;
    }
    let nanos = u64::try_from(total).map_err(|_| ValueError::DurationTooLarge(text.to_string()))?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_follow_go_parse_bool() {
        let table = [
            ("1", Ok(true)),
            ("t", Ok(true)),
            ("T", Ok(true)),
            ("true", Ok(true)),
            ("TRUE", Ok(true)),
            ("True", Ok(true)),
            ("0", Ok(false)),
            ("f", Ok(false)),
            ("F", Ok(false)),
            ("false", Ok(false)),
            ("FALSE", Ok(false)),
            ("False", Ok(false)),
            ("yes", Err(ValueError::Bool("yes".to_string()))),
            ("tRUE", Err(ValueError::Bool("tRUE".to_string()))),
            ("", Err(ValueError::Bool(String::new()))),
        ];
        for (text, want) in table {
            assert_eq!(parse_bool(text), want, "{text:?}");
        }
    }

    #[test]
    fn durations_follow_go_parse_duration() {
        let table = [
            ("0", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("168h", Duration::from_secs(168 * 3600)),
            ("336h", Duration::from_secs(336 * 3600)),
            ("2h30m", Duration::from_secs(9000)),
            ("1h0m0s", Duration::from_secs(3600)),
            ("+90s", Duration::from_secs(90)),
            ("1.5h", Duration::from_secs(5400)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("300ms", Duration::from_millis(300)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("10μs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("1m30.25s", Duration::from_millis(90_250)),
            ("0.000000001s", Duration::from_nanos(1)),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn malformed_durations_name_the_input() {
        let table = [
            (
                "",
                "invalid duration \"\": expected a number with a unit, e.g. 336h, 2h30m, 90s",
            ),
            (
                "336",
                "invalid duration \"336\": expected a number with a unit, e.g. 336h, 2h30m, 90s",
            ),
            (
                "h",
                "invalid duration \"h\": expected a number with a unit, e.g. 336h, 2h30m, 90s",
            ),
            (
                ".h",
                "invalid duration \".h\": expected a number with a unit, e.g. 336h, 2h30m, 90s",
            ),
            (
                "1h30",
                "invalid duration \"1h30\": expected a number with a unit, e.g. 336h, 2h30m, 90s",
            ),
            (
                "2d",
                "invalid duration \"2d\": unknown unit \"d\" (use ns, us, ms, s, m or h)",
            ),
            (
                "1 h",
                "invalid duration \"1 h\": unknown unit \" h\" (use ns, us, ms, s, m or h)",
            ),
            (
                "-",
                "invalid duration \"-\": expected a number with a unit, e.g. 336h, 2h30m, 90s",
            ),
            (
                "-5m",
                "invalid duration \"-5m\": negative durations are not allowed",
            ),
            (
                "99999999999999999999h",
                "invalid duration \"99999999999999999999h\": too large",
            ),
        ];
        for (text, want) in table {
            let got = parse_duration(text).map_err(|e| e.to_string());
            assert_eq!(got, Err(want.to_string()), "{text:?}");
        }
    }
}
