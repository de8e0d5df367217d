//! [`Episode`]: the one failure-episode machine, for sources that go blind and channels that
//! keep failing.
//!
//! An episode counts failures in a row (remembering when the run began and the last error),
//! **opens** once when a [`Threshold`] is reached — that many failures in a row, or waiting
//! longer than its time — and **closes** when failures stop. Each opening and each closing
//! is returned exactly once, so the caller reports it once (a log line, a metric, a notice).
//! Pure: the time is an argument.

use std::time::Duration;

/// When an episode opens: after `failures` failures in a row, or once the caller has waited
/// longer than `after` (for a source: since its last success; for a channel: its oldest
/// undelivered alert).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub failures: u32,
    pub after: Duration,
}

/// The failures of one source or channel, and the open episode if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Episode {
    pub consecutive_failures: u32,
    /// When the current run of failures began.
    pub failing_since_ms: Option<i64>,
    pub last_error: Option<String>,
    /// `Some(since)` while the episode is open.
    pub open_since_ms: Option<i64>,
}

impl Episode {
    /// Counts a failure.
    pub fn failed(&mut self, error: &str, now_ms: i64) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.failing_since_ms.get_or_insert(now_ms);
        self.last_error = Some(error.to_owned());
    }

    /// Ends the run of failures (the episode, if open, stays open until [`Episode::close`]).
    pub fn succeeded(&mut self) {
        self.consecutive_failures = 0;
        self.failing_since_ms = None;
        self.last_error = None;
    }

    /// Opens the episode when `threshold` is reached, given how long the caller has waited;
    /// returns when it began (the run's first failure, else `fallback_since_ms`) — once per
    /// episode.
    pub fn open_if_due(
        &mut self,
        threshold: &Threshold,
        waited_ms: i64,
        fallback_since_ms: i64,
    ) -> Option<i64> {
        if self.open_since_ms.is_some() {
            return None;
        }
        let waited_too_long =
            waited_ms > i64::try_from(threshold.after.as_millis()).unwrap_or(i64::MAX);
        if self.consecutive_failures < threshold.failures && !waited_too_long {
            return None;
        }
        let since = self.failing_since_ms.unwrap_or(fallback_since_ms);
        self.open_since_ms = Some(since);
        Some(since)
    }

    /// Closes an open episode once failures have stopped; returns when it began — once per
    /// episode.
    pub fn close_if_recovered(&mut self) -> Option<i64> {
        if self.consecutive_failures > 0 {
            return None;
        }
        self.open_since_ms.take()
    }

    pub fn is_open(&self) -> bool {
        self.open_since_ms.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Threshold = Threshold {
        failures: 3,
        after: Duration::from_secs(600),
    };

    #[test]
    fn opens_once_after_enough_failures_and_closes_once_after_a_success() {
        let mut e = Episode::default();
        e.failed("a", 10);
        e.failed("b", 20);
        assert_eq!(e.open_if_due(&T, 0, 0), None);
        e.failed("c", 30);
        assert_eq!(e.open_if_due(&T, 0, 0), Some(10));
        assert!(e.is_open());
        e.failed("d", 40);
        assert_eq!(e.open_if_due(&T, 0, 0), None, "reported once per episode");
        assert_eq!(e.close_if_recovered(), None, "still failing");
        assert_eq!(e.last_error.as_deref(), Some("d"));
        e.succeeded();
        assert_eq!(e.close_if_recovered(), Some(10));
        assert_eq!(e.close_if_recovered(), None, "closed once");
        assert_eq!(e, Episode::default());
    }

    #[test]
    fn a_long_wait_opens_it_without_failures_from_the_fallback() {
        let mut e = Episode::default();
        assert_eq!(
            e.open_if_due(&T, 600_000, 5),
            None,
            "not longer than the time"
        );
        assert_eq!(e.open_if_due(&T, 600_001, 5), Some(5));
        // A success that follows closes it.
        e.succeeded();
        assert_eq!(e.close_if_recovered(), Some(5));
    }

    #[test]
    fn a_new_run_after_recovery_is_a_new_episode() {
        let mut e = Episode::default();
        for t in 0..3 {
            e.failed("x", t);
        }
        assert_eq!(e.open_if_due(&T, 0, 0), Some(0));
        e.succeeded();
        assert_eq!(e.close_if_recovered(), Some(0));
        for t in 100..103 {
            e.failed("y", t);
        }
        assert_eq!(e.open_if_due(&T, 0, 0), Some(100));
    }
}
