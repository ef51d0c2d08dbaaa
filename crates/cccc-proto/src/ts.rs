//! Timestamps as the reference writes them: `2026-11-25T10:11:43.097327Z`, or
//! `2026-11-25T10:11:43Z` when the microseconds are zero (Python `isoformat()`).
//!
//! Internally a timestamp is an `i64` of microseconds since the Unix epoch, which is what the
//! semantics compare (read cursors compare parsed timestamps, never strings).

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    d.as_micros() as i64
}

/// The current time formatted as the reference formats it.
pub fn now() -> String {
    format(now_micros())
}

/// Days since 1970-01-01 to (year, month, day). Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01. Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u64;
    let m = m as u64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as u64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i64 - 719_468
}

/// Format microseconds since the epoch as the reference does.
pub fn format(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    if frac == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:06}Z")
    }
}

/// Parse an RFC 3339 / ISO 8601 timestamp into microseconds since the epoch.
///
/// Accepts `Z`, `+HH:MM`/`-HH:MM` offsets and naive timestamps (taken as UTC, as the reference
/// does), a `T` or a space between date and time, and 0 to 9 fraction digits.
pub fn parse(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &b[start..i];
        if digits.is_empty() {
            return None;
        }
        for (k, c) in digits.iter().take(6).enumerate() {
            frac += ((c - b'0') as i64) * 10i64.pow(5 - k as u32);
        }
    }
    let offset_secs: i64 = match b.get(i) {
        None => 0,
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let oh = num(i + 1..i + 3)?;
            let om = if b.get(i + 3) == Some(&b':') { num(i + 4..i + 6)? } else { num(i + 3..i + 5)? };
            let end = if b.get(i + 3) == Some(&b':') { i + 6 } else { i + 5 };
            if end != b.len() {
                return None;
            }
            let v = oh * 3600 + om * 60;
            if sign == b'+' { v } else { -v }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    Some(secs * 1_000_000 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python_isoformat() {
        let t = parse("2026-11-25T10:11:43.097327Z").unwrap();
        assert_eq!(format(t), "2026-11-25T10:11:43.097327Z");
        let t0 = parse("2026-11-25T10:11:43Z").unwrap();
        assert_eq!(format(t0), "2026-11-25T10:11:43Z");
        assert_eq!(t - t0, 97_327);
        assert_eq!(format(0), "1970-01-01T00:00:00Z");
        assert_eq!(format(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
    }

    #[test]
    fn parses_offsets_naive_and_fraction_lengths() {
        let z = parse("2026-11-25T10:11:43.5Z").unwrap();
        assert_eq!(parse("2026-11-25T12:11:43.500000+02:00"), Some(z));
        assert_eq!(parse("2026-11-25 10:11:43.500"), Some(z));
        assert_eq!(parse("2026-11-25T10:11:43.500000123Z"), Some(z));
        assert_eq!(parse("2026-11-25T05:11:43.5-0500"), Some(z));
        for bad in ["", "2026-11-25", "2026-13-01T00:00:00Z", "2026-11-25T10:11:43.Z", "x026-11-25T10:11:43Z", "2026-11-25T10:11:43Zjunk"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn round_trips_over_a_range() {
        let mut t: i64 = -86_400_000_000 * 800;
        while t < 4_102_444_800_000_000 {
            assert_eq!(parse(&format(t)), Some(t));
            t += 86_400_000_000 * 37 + 123_457;
        }
    }
}
