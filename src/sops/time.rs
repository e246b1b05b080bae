//! `sops.lastmodified`: RFC 3339 times read and written back as Go formats them.

use super::error::Error;

/// `lastmodified` as sops uses it for the MAC: parsed as RFC 3339 and formatted back the
/// way Go does (fractional seconds dropped, a zero offset written `Z`).
pub(super) fn go_rfc3339(value: &str) -> Result<String, Error> {
    normalize_rfc3339(value).ok_or_else(|| Error::LastModified { value: value.escape_debug().to_string() })
}

fn normalize_rfc3339(value: &str) -> Option<String> {
    let (date_time, rest) = (value.get(..19)?, value.get(19..)?);
    let b = date_time.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = date_time.get(range)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(format!("{date_time}{}", zone(skip_fraction(rest)?)?))
}

fn skip_fraction(rest: &str) -> Option<&str> {
    let Some(fraction) = rest.strip_prefix('.') else { return Some(rest) };
    let end = fraction.find(|c: char| !c.is_ascii_digit()).unwrap_or(fraction.len());
    (end > 0).then(|| &fraction[end..])
}

/// A zone `Z` or `±HH:MM`, as Go writes it back.
fn zone(text: &str) -> Option<String> {
    if text == "Z" {
        return Some("Z".into());
    }
    let b = text.as_bytes();
    if b.len() != 6 || !(b[0] == b'+' || b[0] == b'-') || b[3] != b':' {
        return None;
    }
    let two = |s: &str| s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse::<u32>().ok())?;
    let (hours, minutes) = (two(&text[1..3])?, two(&text[4..6])?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(if hours == 0 && minutes == 0 { "Z".into() } else { text.to_string() })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A UTC time as sops writes `lastmodified` (`2026-08-01T09:00:14Z`), from Unix seconds.
pub fn rfc3339(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_from_unix_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_785_574_814), "2026-08-01T09:00:14Z");
    }

    #[test]
    fn lastmodified_is_normalised_as_go_formats_it() {
        assert_eq!(normalize_rfc3339("2026-08-01T09:00:14Z").as_deref(), Some("2026-08-01T09:00:14Z"));
        assert_eq!(normalize_rfc3339("2026-08-01T09:00:14.123456Z").as_deref(), Some("2026-08-01T09:00:14Z"));
        assert_eq!(normalize_rfc3339("2026-08-01T09:00:14+00:00").as_deref(), Some("2026-08-01T09:00:14Z"));
        assert_eq!(normalize_rfc3339("2026-08-01T09:00:14+02:00").as_deref(), Some("2026-08-01T09:00:14+02:00"));
        assert_eq!(normalize_rfc3339("2026-02-30T09:00:14Z"), None);
        assert_eq!(normalize_rfc3339("2026-08-01 09:00:14Z"), None);
        assert_eq!(normalize_rfc3339("2026-08-01T09:00:14"), None);
    }
}
