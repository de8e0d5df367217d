//! Notable runtime events as values: each [`emit`](PollCompleted::emit) writes the log line
//! with `event = NAME` and bumps the metric of the same name (`rolewatch_NAME_total`), so
//! that the log and `/metrics` cannot drift apart: the poll and sweep outcomes, a source's
//! sight (blind, recovered), each delivery attempt's outcome, each recorded change analysis
//! and each baseline taken or failed. The fields are plain numbers and text, so any stage
//! can emit them.

use std::fmt::Display;

use super::metrics::{self, Metrics};

/// The request counters of one pass of a source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    pub requests: u64,
    pub throttled: u64,
    pub retries: u64,
}

impl Requests {
    fn count(&self, m: &Metrics, labels: &metrics::Labels) {
        m.requests_throttled
            .get_or_create(labels)
            .inc_by(self.throttled);
        m.request_retries.get_or_create(labels).inc_by(self.retries);
    }
}

/// A failed pass of a source: its own counter, and the throttles and retries it spent.
fn count_failure(
    m: &Metrics,
    failed: &metrics::CounterFamily,
    source: &str,
    requests: Option<Requests>,
) {
    let labels = metrics::source(source);
    failed.get_or_create(&labels).inc();
    if let Some(r) = requests {
        r.count(m, &labels);
    }
}

/// `poll_completed`: a poll read its windows to the end.
#[derive(Debug, Clone, Copy)]
pub struct PollCompleted<'a> {
    pub source: &'a str,
    pub windows: usize,
    pub requests: Requests,
    pub events: u64,
    pub matches: u64,
    pub new_alerts: usize,
    pub malformed: usize,
    pub gaps: usize,
    pub elapsed_ms: u64,
}

impl PollCompleted<'_> {
    pub const NAME: &'static str = "poll_completed";

    /// Logs the poll and counts it (`poll_completed`, `events_seen`, `coverage_gap`).
    pub fn emit(&self, m: &Metrics) {
        tracing::info!(
            event = Self::NAME,
            source = %self.source,
            windows = self.windows,
            requests = self.requests.requests,
            throttled = self.requests.throttled,
            retries = self.requests.retries,
            events = self.events,
            matches = self.matches,
            new_alerts = self.new_alerts,
            malformed = self.malformed,
            gaps = self.gaps,
            elapsed_ms = self.elapsed_ms,
            "Polled"
        );
        let labels = metrics::source(self.source);
        m.poll_completed.get_or_create(&labels).inc();
        m.events_seen.get_or_create(&labels).inc_by(self.events);
        m.coverage_gap
            .get_or_create(&labels)
            .inc_by(self.gaps as u64);
    }
}

/// `poll_failed`: a poll gave up; the next one resumes from the stored cursor.
#[derive(Clone, Copy)]
pub struct PollFailed<'a> {
    pub source: &'a str,
    pub error: &'a dyn Display,
    /// What the failed poll spent before it gave up, when the source failed.
    pub requests: Option<Requests>,
}

impl PollFailed<'_> {
    pub const NAME: &'static str = "poll_failed";

    /// Logs the failure and counts it (`poll_failed`, and the throttles and retries it spent).
    pub fn emit(&self, m: &Metrics) {
        tracing::error!(event = Self::NAME, source = %self.source, error = %self.error, "Poll failed; the next poll resumes from the stored cursor");
        count_failure(m, &m.poll_failed, self.source, self.requests);
    }
}

/// `sweep_completed`: a reconciliation sweep read its lookback.
#[derive(Debug, Clone)]
pub struct SweepCompleted<'a> {
    pub source: &'a str,
    pub windows: usize,
    pub requests: Requests,
    pub events: u64,
    /// How late each event only the sweep found was, in ms.
    pub late_ms: &'a [i64],
    pub new_alerts: usize,
    pub malformed: usize,
    pub elapsed_ms: u64,
    pub lookback_hours: u64,
}

impl SweepCompleted<'_> {
    pub const NAME: &'static str = "sweep_completed";

    /// Logs the sweep and counts it (`sweep_completed`, `sweep_requests`, `late_events`,
    /// `event_lateness_seconds`).
    pub fn emit(&self, m: &Metrics) {
        tracing::info!(
            event = Self::NAME,
            source = %self.source,
            windows = self.windows,
            requests = self.requests.requests,
            throttled = self.requests.throttled,
            events = self.events,
            late_events = self.late_ms.len(),
            new_alerts = self.new_alerts,
            malformed = self.malformed,
            elapsed_ms = self.elapsed_ms,
            "Swept the last {} h for late deliveries",
            self.lookback_hours
        );
        let labels = metrics::source(self.source);
        m.sweep_completed.get_or_create(&labels).inc();
        m.sweep_requests
            .get_or_create(&labels)
            .inc_by(self.requests.requests);
        m.late_events
            .get_or_create(&labels)
            .inc_by(self.late_ms.len() as u64);
        let lateness = m.event_lateness_seconds.get_or_create(&labels);
        for &late in self.late_ms {
            #[allow(clippy::cast_precision_loss)]
            lateness.observe(late as f64 / 1000.0);
        }
    }
}

/// `sweep_failed`: a sweep gave up; the next poll starts it again.
#[derive(Clone, Copy)]
pub struct SweepFailed<'a> {
    pub source: &'a str,
    pub error: &'a dyn Display,
    pub requests: Option<Requests>,
}

impl SweepFailed<'_> {
    pub const NAME: &'static str = "sweep_failed";

    /// Logs the failure and counts it (`sweep_failed`, and the throttles and retries it spent).
    pub fn emit(&self, m: &Metrics) {
        tracing::error!(event = Self::NAME, source = %self.source, error = %self.error, "Sweep failed; the next poll starts it again");
        count_failure(m, &m.sweep_failed, self.source, self.requests);
    }
}

/// `source_blind`: a source failed too often in a row, or has not been read for too long.
#[derive(Debug, Clone, Copy)]
pub struct SourceBlind<'a> {
    pub source: &'a str,
    /// Failing since, RFC 3339.
    pub since: &'a str,
    pub failures: u32,
    pub error: &'a str,
    /// The notice's one-line summary.
    pub summary: &'a str,
}

impl SourceBlind<'_> {
    pub const NAME: &'static str = "source_blind";

    /// Logs at ERROR and counts it (`source_blind`).
    pub fn emit(&self, m: &Metrics) {
        tracing::error!(
            event = Self::NAME,
            source = %self.source,
            since = %self.since,
            failures = self.failures,
            error = %self.error,
            "rolewatch cannot see: {}", self.summary
        );
        m.source_blind
            .get_or_create(&metrics::source(self.source))
            .inc();
    }
}

/// `source_recovered`: a blind source is read again.
#[derive(Debug, Clone, Copy)]
pub struct SourceRecovered<'a> {
    pub source: &'a str,
    pub blind_for_ms: i64,
    pub summary: &'a str,
}

impl SourceRecovered<'_> {
    pub const NAME: &'static str = "source_recovered";

    /// Logs at WARN and counts it (`source_recovered`).
    pub fn emit(&self, m: &Metrics) {
        tracing::warn!(
            event = Self::NAME,
            source = %self.source,
            blind_for_ms = self.blind_for_ms,
            "rolewatch sees again: {}", self.summary
        );
        m.source_recovered
            .get_or_create(&metrics::source(self.source))
            .inc();
    }
}

/// What became of one delivery attempt.
#[derive(Clone, Copy)]
pub enum Outcome<'a> {
    /// The channel accepted it; `receipt` is its own id (SNS MessageId, SMTP Message-ID).
    Delivered { receipt: &'a str, delay_ms: i64 },
    /// It failed and will be retried.
    Failed {
        attempts: u32,
        class: &'static str,
        retry_in_ms: i64,
        error: &'a dyn Display,
    },
    /// It failed and is given up on.
    Abandoned {
        attempts: u32,
        class: &'static str,
        error: &'a dyn Display,
    },
}

/// `alert_delivered`, `alert_delivery_failed`, `alert_delivery_abandoned`: one attempt at
/// delivering an alert through a channel; counted as
/// `rolewatch_alert_deliveries_total{channel, outcome}`.
#[derive(Clone, Copy)]
pub struct Delivery<'a> {
    pub channel: &'a str,
    pub alert_id: i64,
    pub rule: &'a str,
    pub event_id: &'a str,
    pub outcome: Outcome<'a>,
}

impl Delivery<'_> {
    /// The log event's name.
    pub fn name(&self) -> &'static str {
        match self.outcome {
            Outcome::Delivered { .. } => "alert_delivered",
            Outcome::Failed { .. } => "alert_delivery_failed",
            Outcome::Abandoned { .. } => "alert_delivery_abandoned",
        }
    }

    /// The `outcome` label.
    pub fn label(&self) -> &'static str {
        match self.outcome {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Failed { .. } => "failed",
            Outcome::Abandoned { .. } => "abandoned",
        }
    }

    /// Logs the attempt (INFO, WARN, ERROR) and counts it.
    pub fn emit(&self, m: &Metrics) {
        let event = self.name();
        let (channel, alert_id, rule, event_id) =
            (self.channel, self.alert_id, self.rule, self.event_id);
        match self.outcome {
            Outcome::Delivered { receipt, delay_ms } => tracing::info!(
                event,
                channel,
                alert_id,
                rule = %rule,
                event_id = %event_id,
                receipt,
                delay_ms,
                "Delivered an alert"
            ),
            Outcome::Failed {
                attempts,
                class,
                retry_in_ms,
                error,
            } => tracing::warn!(
                event,
                channel,
                alert_id,
                event_id = %event_id,
                attempts,
                class,
                retry_in_ms,
                error = %error,
                "Delivering an alert failed; it will be retried"
            ),
            Outcome::Abandoned {
                attempts,
                class,
                error,
            } => tracing::error!(
                event,
                channel,
                alert_id,
                rule = %rule,
                event_id = %event_id,
                attempts,
                class,
                error = %error,
                "Gave up delivering an alert through this channel: fix the channel, the alert stays in the state's history"
            ),
        }
        m.alert_deliveries
            .get_or_create(&vec![
                ("channel".to_owned(), channel.to_owned()),
                ("outcome".to_owned(), self.label().to_owned()),
            ])
            .inc();
    }
}

/// `alert_analysed`: the change analysis of an alert was recorded.
#[derive(Debug, Clone, Copy)]
pub struct AlertAnalysed<'a> {
    pub alert_id: i64,
    pub event_id: &'a str,
    pub actor_class: &'a str,
    pub verdict: &'a str,
    pub severity: &'a str,
    /// Why the documents could not be compared, if they could not.
    pub diff_unavailable: Option<&'a str>,
    /// The `[[expect]]` entry it matched.
    pub expected: Option<&'a str>,
}

impl AlertAnalysed<'_> {
    pub const NAME: &'static str = "alert_analysed";

    /// Logs the analysis and counts it by verdict, severity and expected.
    pub fn emit(&self, m: &Metrics) {
        tracing::info!(
            event = Self::NAME,
            alert_id = self.alert_id,
            event_id = %self.event_id,
            actor_class = %self.actor_class,
            verdict = %self.verdict,
            severity = %self.severity,
            diff_unavailable = self.diff_unavailable.unwrap_or(""),
            expected = self.expected.unwrap_or(""),
            "Analysed an alert"
        );
        let labels = vec![
            ("verdict".to_owned(), self.verdict.to_owned()),
            ("severity".to_owned(), self.severity.to_owned()),
            ("expected".to_owned(), self.expected.is_some().to_string()),
        ];
        m.alert_analysed.get_or_create(&labels).inc();
    }
}

/// `baseline_taken`: a baseline of the vendor's role is in the state.
#[derive(Debug, Clone, Copy)]
pub struct BaselineTaken<'a> {
    pub role: &'a str,
    pub attached: usize,
    pub inline: usize,
    pub problems: usize,
}

impl BaselineTaken<'_> {
    pub const NAME: &'static str = "baseline_taken";

    /// Logs the baseline and counts it.
    pub fn emit(&self, m: &Metrics) {
        tracing::info!(
            event = Self::NAME,
            role = %self.role,
            attached = self.attached,
            inline = self.inline,
            problems = self.problems,
            "Took a baseline of the vendor's role"
        );
        m.baseline_taken.inc();
    }
}

/// `baseline_failed`: the role could not be read for a baseline.
#[derive(Debug, Clone, Copy)]
pub struct BaselineFailed<'a> {
    pub error: &'a str,
    pub retry_in_secs: u64,
}

impl BaselineFailed<'_> {
    pub const NAME: &'static str = "baseline_failed";

    /// Logs the failure (WARN) and counts it.
    pub fn emit(&self, m: &Metrics) {
        tracing::warn!(
            event = Self::NAME,
            error = %self.error,
            retry_in_secs = self.retry_in_secs,
            "Cannot take a baseline of the vendor's role; alerts say so and go out with what the events tell"
        );
        m.baseline_failed.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sight_and_deliveries_count_under_their_names() {
        let m = Metrics::new();
        SourceBlind {
            source: "ct",
            since: "2026-12-03T08:00:00Z",
            failures: 3,
            error: "503",
            summary: "source ct failing",
        }
        .emit(&m);
        SourceRecovered {
            source: "ct",
            blind_for_ms: 5,
            summary: "source ct",
        }
        .emit(&m);
        assert_eq!(counter(&m.source_blind, "ct"), 1);
        assert_eq!(counter(&m.source_recovered, "ct"), 1);
        let err = "connection refused";
        for outcome in [
            Outcome::Delivered {
                receipt: "m-1",
                delay_ms: 3,
            },
            Outcome::Failed {
                attempts: 1,
                class: "retryable",
                retry_in_ms: 2000,
                error: &err,
            },
            Outcome::Failed {
                attempts: 2,
                class: "retryable",
                retry_in_ms: 4000,
                error: &err,
            },
            Outcome::Abandoned {
                attempts: 3,
                class: "permanent",
                error: &err,
            },
        ] {
            Delivery {
                channel: "mail",
                alert_id: 1,
                rule: "documented",
                event_id: "e",
                outcome,
            }
            .emit(&m);
        }
        let text = m.encode().unwrap();
        for line in [
            "rolewatch_alert_deliveries_total{channel=\"mail\",outcome=\"delivered\"} 1",
            "rolewatch_alert_deliveries_total{channel=\"mail\",outcome=\"failed\"} 2",
            "rolewatch_alert_deliveries_total{channel=\"mail\",outcome=\"abandoned\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }

    fn counter(family: &metrics::CounterFamily, source: &str) -> u64 {
        family.get_or_create(&metrics::source(source)).get()
    }

    #[test]
    fn each_event_counts_under_its_own_name() {
        let m = Metrics::new();
        PollCompleted {
            source: "ct",
            windows: 1,
            requests: Requests {
                requests: 4,
                throttled: 0,
                retries: 0,
            },
            events: 7,
            matches: 1,
            new_alerts: 1,
            malformed: 0,
            gaps: 2,
            elapsed_ms: 5,
        }
        .emit(&m);
        assert_eq!(counter(&m.poll_completed, "ct"), 1);
        assert_eq!(counter(&m.events_seen, "ct"), 7);
        assert_eq!(counter(&m.coverage_gap, "ct"), 2);
        PollFailed {
            source: "ct",
            error: &"boom",
            requests: Some(Requests {
                requests: 7,
                throttled: 6,
                retries: 6,
            }),
        }
        .emit(&m);
        assert_eq!(counter(&m.poll_failed, "ct"), 1);
        assert_eq!(counter(&m.requests_throttled, "ct"), 6);
        assert_eq!(counter(&m.request_retries, "ct"), 6);
        SweepFailed {
            source: "ct",
            error: &"boom",
            requests: None,
        }
        .emit(&m);
        assert_eq!(counter(&m.sweep_failed, "ct"), 1);
        assert_eq!(
            counter(&m.requests_throttled, "ct"),
            6,
            "no requests, no count"
        );
        SweepCompleted {
            source: "ct",
            windows: 1,
            requests: Requests {
                requests: 5,
                throttled: 0,
                retries: 0,
            },
            events: 3,
            late_ms: &[1_500_000, 3_000_000],
            new_alerts: 2,
            malformed: 0,
            elapsed_ms: 9,
            lookback_hours: 24,
        }
        .emit(&m);
        assert_eq!(counter(&m.sweep_completed, "ct"), 1);
        assert_eq!(counter(&m.sweep_requests, "ct"), 5);
        assert_eq!(counter(&m.late_events, "ct"), 2);
    }

    #[test]
    fn analyses_and_baselines_count_under_their_names() {
        let m = Metrics::new();
        let analysed = |verdict, severity, expected| AlertAnalysed {
            alert_id: 1,
            event_id: "e",
            actor_class: "vendor",
            verdict,
            severity,
            diff_unavailable: None,
            expected,
        };
        analysed("widened", "high", None).emit(&m);
        analysed("widened", "info", Some("vendor notice")).emit(&m);
        analysed("widened", "info", Some("vendor notice")).emit(&m);
        BaselineTaken {
            role: "r",
            attached: 1,
            inline: 0,
            problems: 0,
        }
        .emit(&m);
        BaselineFailed {
            error: "denied",
            retry_in_secs: 300,
        }
        .emit(&m);
        let text = m.encode().unwrap();
        for line in [
            "rolewatch_alert_analysed_total{verdict=\"widened\",severity=\"high\",expected=\"false\"} 1",
            "rolewatch_alert_analysed_total{verdict=\"widened\",severity=\"info\",expected=\"true\"} 2",
            "rolewatch_baseline_taken_total 1",
            "rolewatch_baseline_failed_total 1",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }
}
