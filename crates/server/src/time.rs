//! Wall-clock timestamps in RFC 3339 (UTC, second precision), as ARM prints them.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format_unix(secs)
}

/// Howard Hinnant's civil-from-days: proleptic Gregorian, valid for every u64 second here.
pub fn format_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Seconds since the Unix epoch of an RFC 3339 UTC timestamp as [`format_unix`] writes it.
pub fn parse_unix(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 20 || b.get(19) != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Howard Hinnant's days-from-civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// kubectl's AGE column: `45s`, `3m12s`, `25m`, `5h`, `3d`.
pub fn age(since: &str) -> String {
    let now = parse_unix(&now()).unwrap_or_default();
    let Some(then) = parse_unix(since) else {
        return "<unknown>".to_string();
    };
    let s = now.saturating_sub(then);
    match s {
        0..120 => format!("{s}s"),
        120..600 => format!("{}m{}s", s / 60, s % 60),
        600..10_800 => format!("{}m", s / 60),
        10_800..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_ages() {
        for t in [0, 951_782_400, 1_795_880_211, 4_102_444_800] {
            assert_eq!(super::parse_unix(&super::format_unix(t)), Some(t));
        }
        assert_eq!(super::parse_unix("2026-11-28 17:00:00"), None);
        assert_eq!(super::age("nonsense"), "<unknown>");
        assert!(super::age(&super::now()).ends_with('s'));
    }

    #[test]
    fn known_instants() {
        assert_eq!(super::format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::format_unix(1_795_880_211), "2026-11-28T15:36:51Z");
    }
}
