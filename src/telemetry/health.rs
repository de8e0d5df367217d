//! Watching the watcher: what each source's polls have been doing, whether rolewatch can
//! still see through it, and whether it is ready.
//!
//! Pure and synchronous: every method takes the time as an argument (unix milliseconds), so
//! the rules are unit-tested without a clock. The daemon feeds it poll outcomes and scheduler
//! ticks and acts on the [`Transition`]s it returns.
//!
//! A source is **blind** after `failures` polls failed in a row, or when no poll succeeded
//! for `stale_after` (counted from the daemon's start when none ever did) — the second rule
//! catches a poll that hangs or retries for long. A blind source is reported once per
//! episode; the next successful poll ends the episode with a recovery.
//!
//! A source is **fresh** (for `/readyz`) when its last successful poll is at most twice its
//! interval old; the interval is the time between two scheduled polls.

use std::time::Duration;

use super::episode::{Episode, Threshold};

/// When a source counts as blind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlindPolicy {
    pub failures: u32,
    pub stale_after: Duration,
}

/// What one source's polls have been doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceHealth {
    pub started_ms: i64,
    pub last_success_ms: Option<i64>,
    pub last_failure_ms: Option<i64>,
    /// Failures in a row and the blind episode ([`Episode::open_since_ms`]: blind since).
    pub episode: Episode,
    /// A poll of this source is running.
    pub polling: bool,
    /// Time between two scheduled polls, once known.
    pub interval_ms: Option<i64>,
}

/// A change worth telling on-call about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The source became blind: failing since `since_ms`, for `reason`.
    Blind {
        since_ms: i64,
        failures: u32,
        reason: String,
    },
    /// The source is read again after being blind since `since_ms`.
    Recovered { since_ms: i64 },
}

impl SourceHealth {
    pub fn new(started_ms: i64) -> SourceHealth {
        SourceHealth {
            started_ms,
            ..SourceHealth::default()
        }
    }

    /// Records a successful poll; a blind source recovers.
    pub fn success(&mut self, now_ms: i64) -> Option<Transition> {
        self.last_success_ms = Some(now_ms);
        self.episode.succeeded();
        self.episode
            .close_if_recovered()
            .map(|since_ms| Transition::Recovered { since_ms })
    }

    /// Records a failed poll, then applies the policy.
    pub fn failure(
        &mut self,
        error: &str,
        now_ms: i64,
        policy: &BlindPolicy,
    ) -> Option<Transition> {
        self.last_failure_ms = Some(now_ms);
        self.episode.failed(error, now_ms);
        self.check(now_ms, policy)
    }

    /// Applies the policy at `now_ms` (called after each poll and on a timer, so that a poll
    /// that never returns is noticed too).
    pub fn check(&mut self, now_ms: i64, policy: &BlindPolicy) -> Option<Transition> {
        let seen_ms = self.last_success_ms.unwrap_or(self.started_ms);
        // A source polled less often than `stale_after` (a backstop every 15 min) is stale
        // only when it missed two of its polls.
        let after = match self.interval_ms.and_then(|i| u64::try_from(i).ok()) {
            Some(i) => policy
                .stale_after
                .max(Duration::from_millis(i.saturating_mul(2))),
            None => policy.stale_after,
        };
        let threshold = Threshold {
            failures: policy.failures,
            after,
        };
        let since_ms =
            self.episode
                .open_if_due(&threshold, now_ms.saturating_sub(seen_ms), seen_ms)?;
        let reason = match &self.episode.last_error {
            Some(e) => e.clone(),
            None => format!(
                "no successful poll for {} s{}",
                now_ms.saturating_sub(seen_ms) / 1000,
                if self.polling {
                    " (a poll is still running)"
                } else {
                    ""
                }
            ),
        };
        Some(Transition::Blind {
            since_ms,
            failures: self.episode.consecutive_failures,
            reason,
        })
    }

    /// Whether the last poll failed and the source is not reported blind yet: the daemon
    /// then polls again at once (after a short pause) rather than on its schedule, so that
    /// `policy.failures` failures in a row take the retry budget each, not the interval.
    pub fn confirming(&self, policy: &BlindPolicy) -> bool {
        self.episode.open_since_ms.is_none()
            && self.episode.consecutive_failures > 0
            && self.episode.consecutive_failures < policy.failures
    }

    /// Blind since, while blind.
    pub fn blind_since_ms(&self) -> Option<i64> {
        self.episode.open_since_ms
    }

    /// Why the source is not fresh at `now_ms`, or `None` when it is.
    pub fn not_ready(&self, now_ms: i64) -> Option<String> {
        let Some(last) = self.last_success_ms else {
            return Some(match &self.episode.last_error {
                Some(e) => format!("no successful poll yet; the last one failed: {e}"),
                None => "no successful poll yet".to_owned(),
            });
        };
        let interval = self.interval_ms?;
        let age = now_ms.saturating_sub(last);
        if age > interval.saturating_mul(2) {
            let why = self
                .episode
                .last_error
                .as_deref()
                .map_or_else(String::new, |e| format!("; the last poll failed: {e}"));
            return Some(format!(
                "the last successful poll was {} ms ago, more than twice the {} ms interval{why}",
                age, interval
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;
    const POLICY: BlindPolicy = BlindPolicy {
        failures: 3,
        stale_after: Duration::from_secs(600),
    };

    #[test]
    fn three_failures_in_a_row_make_a_source_blind_once_then_it_recovers() {
        let mut h = SourceHealth::new(T0);
        assert_eq!(h.success(T0 + 1_000), None);
        assert_eq!(h.failure("503", T0 + 61_000, &POLICY), None);
        assert_eq!(h.failure("503", T0 + 121_000, &POLICY), None);
        assert_eq!(
            h.failure("503 again", T0 + 181_000, &POLICY),
            Some(Transition::Blind {
                since_ms: T0 + 61_000,
                failures: 3,
                reason: "503 again".into()
            })
        );
        assert_eq!(h.failure("503", T0 + 241_000, &POLICY), None, "once");
        assert_eq!(h.check(T0 + 10_000_000, &POLICY), None, "once");
        assert_eq!(
            h.success(T0 + 301_000),
            Some(Transition::Recovered {
                since_ms: T0 + 61_000
            })
        );
        assert_eq!(h.success(T0 + 361_000), None);
    }

    /// Issue 18: failures are confirmed at once until the notice, then the schedule rules.
    #[test]
    fn a_failure_is_confirmed_at_once_until_the_source_is_blind() {
        let mut h = SourceHealth::new(T0);
        assert!(!h.confirming(&POLICY), "nothing failed");
        h.failure("503", T0 + 1_000, &POLICY);
        assert!(h.confirming(&POLICY));
        h.failure("503", T0 + 2_000, &POLICY);
        assert!(h.confirming(&POLICY));
        assert!(h.failure("503", T0 + 3_000, &POLICY).is_some(), "blind");
        assert!(!h.confirming(&POLICY), "blind: back to the schedule");
        h.failure("503", T0 + 4_000, &POLICY);
        assert!(!h.confirming(&POLICY));
        h.success(T0 + 5_000);
        assert!(!h.confirming(&POLICY));
        // One failure after a success starts confirming again.
        h.failure("503", T0 + 6_000, &POLICY);
        assert!(h.confirming(&POLICY));
        let one = BlindPolicy {
            failures: 1,
            stale_after: Duration::from_secs(600),
        };
        let mut h = SourceHealth::new(T0);
        h.failure("x", T0, &one);
        assert!(!h.confirming(&one), "one failure is already the notice");
    }

    #[test]
    fn a_failure_then_success_resets_the_count() {
        let mut h = SourceHealth::new(T0);
        h.failure("x", T0, &POLICY);
        h.failure("x", T0 + 1, &POLICY);
        h.success(T0 + 2);
        assert_eq!(h.failure("x", T0 + 3, &POLICY), None);
        assert_eq!(h.episode.consecutive_failures, 1);
    }

    #[test]
    fn no_success_for_too_long_is_blind_even_while_a_poll_hangs() {
        let mut h = SourceHealth::new(T0);
        h.polling = true;
        assert_eq!(h.check(T0 + 600_000, &POLICY), None);
        match h.check(T0 + 600_001, &POLICY) {
            Some(Transition::Blind {
                since_ms, reason, ..
            }) => {
                assert_eq!(since_ms, T0);
                assert!(reason.contains("no successful poll for 600 s"), "{reason}");
                assert!(reason.contains("still running"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ready_needs_a_success_within_two_intervals() {
        let mut h = SourceHealth::new(T0);
        assert!(h.not_ready(T0).unwrap().contains("no successful poll yet"));
        h.failure("boom", T0 + 1, &POLICY);
        assert!(h.not_ready(T0 + 2).unwrap().contains("boom"));
        h.success(T0 + 1_000);
        h.interval_ms = Some(2_000);
        assert_eq!(h.not_ready(T0 + 5_000), None);
        h.failure("boom", T0 + 3_000, &POLICY);
        let why = h.not_ready(T0 + 5_001).unwrap();
        assert!(why.contains("twice") && why.contains("boom"), "{why}");
    }
}
