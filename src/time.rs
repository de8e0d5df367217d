//! Time, the leaf every stage shares: the [`Clock`] seam, the one timestamp representation
//! (unix milliseconds as `i64`, as CloudTrail windows and the state store them) and its RFC 3339
//! text form.
//!
//! Every read of the wall clock goes through a [`Clock`] (clippy's `disallowed-methods` in
//! `clippy.toml` forbids `SystemTime::now` anywhere else); tests substitute a [`FixedClock`].
//! Sleeps, intervals and timeouts use `tokio::time`, so tests can pause it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix milliseconds, now.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one wall-clock read
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that says what it is told; for tests.
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn new(ms: i64) -> FixedClock {
        FixedClock(AtomicI64::new(ms))
    }

    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The last unix second RFC 3339 can write (the end of year 9999).
const MAX_FORMATTABLE_SECS: u64 = 253_402_300_799;

/// A duration in whole milliseconds, saturating.
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Parses an RFC 3339 time (CloudTrail's `2024-05-01T12:00:00Z`) to unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// Unix milliseconds as RFC 3339 UTC with second precision (`2024-05-01T12:00:00Z`); times
/// before 1970 are shown as its start.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let secs = u64::try_from(ms.max(0) / 1000)
        .unwrap_or(0)
        .min(MAX_FORMATTABLE_SECS);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Like [`format_rfc3339_ms`], but a number no calendar can hold (an attacker's `eventTime`
/// far in the future, a negative time) is shown as it is rather than clamped: for what
/// on-call reads.
pub fn display_rfc3339_ms(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(m) if m / 1000 <= MAX_FORMATTABLE_SECS => format_rfc3339_ms(ms),
        _ => format!("unix time {ms} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_cloudtrail_times() {
        let ms = parse_rfc3339_ms("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(ms, 1_714_564_800_000);
        assert_eq!(format_rfc3339_ms(ms), "2024-05-01T12:00:00Z");
        assert_eq!(format_rfc3339_ms(ms + 999), "2024-05-01T12:00:00Z");
    }

    #[test]
    fn out_of_calendar_times_are_shown_not_clamped() {
        assert_eq!(display_rfc3339_ms(-5), "unix time -5 ms");
        assert_eq!(
            display_rfc3339_ms(i64::MAX),
            format!("unix time {} ms", i64::MAX)
        );
        assert_eq!(format_rfc3339_ms(-5), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339_ms(i64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn ms_saturates() {
        assert_eq!(ms(Duration::from_millis(1500)), 1500);
        assert_eq!(ms(Duration::MAX), i64::MAX);
    }

    #[test]
    fn fixed_clock_says_what_it_is_told() {
        let c = FixedClock::new(7);
        assert_eq!(c.now_ms(), 7);
        c.set(9);
        assert_eq!(c.now_ms(), 9);
    }
}
