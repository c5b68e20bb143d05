//! Whether a cache image is still usable: its config's `created` time
//! (kaniko's rule) plus `--cache-ttl` must lie in the future.

use std::time::Duration;

/// Seconds since 1970 of an RFC 3339 time (`2024-05-01T12:00:00Z`,
/// `2024-05-01T12:00:00.123+02:00`); `None` when it is not one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Leap seconds (60) are accepted and counted as the next second.
    if second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let (h, m) = (
                rest[1..3].parse::<i64>().ok()?,
                rest[4..6].parse::<i64>().ok()?,
            );
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Whether a cache image created at `created` (RFC 3339) has outlived
/// `ttl` at `now` (seconds since 1970). An unreadable time counts as
/// expired: the layer is rebuilt and pushed again with a good one.
pub fn is_expired(created: Option<&str>, now: u64, ttl: Duration) -> bool {
    let Some(created) = created.and_then(parse_rfc3339) else {
        return true;
    };
    let age = i128::from(now) - i128::from(created);
    age > i128::from(ttl.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        let table: &[(&str, Option<i64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2023-11-14T22:13:20Z", Some(1_700_000_000)),
            ("2023-11-14T22:13:20.999999999Z", Some(1_700_000_000)),
            ("2023-11-15T00:13:20+02:00", Some(1_700_000_000)),
            ("2023-11-14T21:13:20-01:00", Some(1_700_000_000)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800)),
            ("2023-11-14 22:13:20Z", Some(1_700_000_000)),
            ("2023-11-14T22:13:20", None),
            ("2023-13-14T22:13:20Z", None),
            ("2023-11-14T22:13:20.Z", None),
            ("2023-11-14T22:13:20+0200", None),
            ("yesterday", None),
            ("", None),
        ];
        for (text, want) in table {
            assert_eq!(parse_rfc3339(text), *want, "{text}");
        }
    }

    #[test]
    fn expiry() {
        let hour = Duration::from_secs(3600);
        let created = Some("2023-11-14T22:13:20Z");
        let table: &[(Option<&str>, u64, bool)] = &[
            (created, 1_700_000_000, false),
            (created, 1_700_003_600, false),
            (created, 1_700_003_601, true),
            // A clock behind the cache's is not an expiry.
            (created, 1_699_990_000, false),
            (None, 1_700_000_000, true),
            (Some("garbage"), 1_700_000_000, true),
        ];
        for (created, now, want) in table {
            assert_eq!(is_expired(*created, *now, hour), *want, "{created:?} {now}");
        }
    }
}
