//! The daemon's counters and gauges, in Prometheus text format for `/metrics`
//! (`prometheus-client`).
//!
//! Every counter is named after the log event that bumps it (the `event` field of the log
//! line): `poll_completed` counts into `rolewatch_poll_completed_total`, and so on. The
//! delivery counters of the outbox ([`crate::notify::outbox::ChannelCounters`]: log events
//! `alert_delivered`, `alert_delivery_failed`, `alert_delivery_abandoned`) are one family,
//! `rolewatch_alert_deliveries_total{channel, outcome}` with outcome `delivered`, `failed` or
//! `abandoned`. Gauges read at scrape time: lag and last success per source, outbox depth,
//! recorded coverage gaps, blind sources, failing channels.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label sets: `[("source", id)]`, `[("channel", name), ("outcome", o)]`.
pub type Labels = Vec<(String, String)>;

pub type CounterFamily = Family<Labels, Counter>;
type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Buckets of `event_lateness_seconds`: from the overlap's scale (20 min) to days.
const LATENESS_BUCKETS: [f64; 10] = [
    300.0, 900.0, 1_200.0, 1_800.0, 3_600.0, 7_200.0, 21_600.0, 43_200.0, 86_400.0, 604_800.0,
];

fn lateness_histogram() -> Histogram {
    Histogram::new(LATENESS_BUCKETS)
}

/// Buckets of the queue path's latencies: from tens of milliseconds (loopback) to CloudTrail's
/// own delay of minutes.
const QUEUE_LATENCY_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1_800.0,
];

/// Buckets of `state_commit_seconds`: a local SQLite commit (well under 1 ms) to a slow
/// DynamoDB transaction.
const COMMIT_BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

fn commit_histogram() -> Histogram {
    Histogram::new(COMMIT_BUCKETS)
}

fn queue_latency_histogram() -> Histogram {
    Histogram::new(QUEUE_LATENCY_BUCKETS)
}

/// The source label set.
pub fn source(id: &str) -> Labels {
    vec![("source".to_owned(), id.to_owned())]
}

/// Every metric of the daemon.
pub struct Metrics {
    registry: Registry,
    pub poll_completed: CounterFamily,
    pub poll_failed: CounterFamily,
    pub poll_skipped: CounterFamily,
    pub requests_throttled: CounterFamily,
    pub request_retries: CounterFamily,
    pub events_seen: CounterFamily,
    pub events_malformed: CounterFamily,
    pub rule_matches: CounterFamily,
    pub alerts_recorded: CounterFamily,
    pub coverage_gap: CounterFamily,
    pub source_blind: CounterFamily,
    pub source_recovered: CounterFamily,
    pub heartbeat_sent: Counter,
    pub sweep_completed: CounterFamily,
    pub sweep_failed: CounterFamily,
    pub sweep_requests: CounterFamily,
    pub late_events: CounterFamily,
    pub event_lateness_seconds: HistogramFamily,
    pub queue_messages_received: CounterFamily,
    pub queue_messages_poison: CounterFamily,
    pub queue_messages_deleted: CounterFamily,
    pub queue_delete_failed: CounterFamily,
    pub queue_missed: CounterFamily,
    pub queue_event_to_commit_seconds: HistogramFamily,
    pub queue_receipt_to_accepted_seconds: HistogramFamily,
    pub state_commit_seconds: HistogramFamily,
    pub alert_deliveries: CounterFamily,
    pub alert_analysed: CounterFamily,
    pub baseline_taken: Counter,
    pub baseline_failed: Counter,
    pub source_lag_seconds: GaugeFamily,
    pub last_success_timestamp_seconds: GaugeFamily,
    pub source_is_blind: GaugeFamily,
    pub channel_is_failing: GaugeFamily,
    pub outbox_pending: Gauge<f64, AtomicU64>,
    pub coverage_gaps_recorded: Gauge<f64, AtomicU64>,
    pub replica_is_leader: Gauge<f64, AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rolewatch");
        let mut counter = |name: &str, help: &str| {
            let f = CounterFamily::default();
            registry.register(name, help, f.clone());
            f
        };
        let poll_completed = counter("poll_completed", "Polls that read their whole window");
        let poll_failed = counter(
            "poll_failed",
            "Polls that stopped on an error (the next one resumes from the cursor)",
        );
        let poll_skipped = counter(
            "poll_skipped",
            "Scheduled polls skipped because the previous poll of the source was still running",
        );
        let requests_throttled =
            counter("requests_throttled", "API requests the service throttled");
        let request_retries = counter("request_retries", "API requests retried");
        let events_seen = counter(
            "events_seen",
            "Events read from the source (re-reads included)",
        );
        let events_malformed = counter("events_malformed", "Malformed events skipped");
        let rule_matches = counter("rule_matches", "Events a rule matched (re-reads included)");
        let alerts_recorded = counter("alerts_recorded", "New alerts recorded in the state");
        let coverage_gap = counter(
            "coverage_gap",
            "Coverage gaps found: intervals whose events could no longer be read",
        );
        let source_blind = counter(
            "source_blind",
            "Episodes of a source rolewatch cannot see through (\"rolewatch cannot see\")",
        );
        let source_recovered = counter("source_recovered", "Blind sources that recovered");
        let alert_deliveries = counter(
            "alert_deliveries",
            "Delivery attempts by channel and outcome (delivered, failed, abandoned)",
        );
        let alert_analysed = counter(
            "alert_analysed",
            "Alerts whose change analysis was recorded, by verdict, severity and expected (an [[expect]] entry matched)",
        );
        let sweep_completed = counter(
            "sweep_completed",
            "Reconciliation sweeps that read their whole lookback",
        );
        let sweep_failed = counter(
            "sweep_failed",
            "Reconciliation sweeps that stopped on an error",
        );
        let sweep_requests = counter(
            "sweep_requests",
            "API requests made by reconciliation sweeps (at lower priority than polls)",
        );
        let late_events = counter(
            "late_events",
            "Events found only by the reconciliation sweep: delivered later than the overlap",
        );
        let heartbeat_sent = Counter::default();
        registry.register(
            "heartbeat_sent",
            "Heartbeats recorded",
            heartbeat_sent.clone(),
        );
        let baseline_taken = Counter::default();
        registry.register(
            "baseline_taken",
            "Baselines of the vendor's role taken into the state",
            baseline_taken.clone(),
        );
        let baseline_failed = Counter::default();
        registry.register(
            "baseline_failed",
            "Baselines that could not be taken (IAM down or denied)",
            baseline_failed.clone(),
        );
        let event_lateness_seconds = HistogramFamily::new_with_constructor(lateness_histogram);
        registry.register(
            "event_lateness_seconds",
            "How late the sweep's late events were: first seen minus eventTime",
            event_lateness_seconds.clone(),
        );
        let mut counter = |name: &str, help: &str| {
            let f = CounterFamily::default();
            registry.register(name, help, f.clone());
            f
        };
        let queue_messages_received = counter(
            "queue_messages_received",
            "Messages an sqs source received (redeliveries included)",
        );
        let queue_messages_poison = counter(
            "queue_messages_poison",
            "Messages whose body is not a CloudTrail event: logged once, left for the dead-letter queue",
        );
        let queue_messages_deleted = counter(
            "queue_messages_deleted",
            "Messages deleted from the queue after their event was committed",
        );
        let queue_delete_failed = counter(
            "queue_delete_failed",
            "Committed messages SQS did not delete (they come again; the state absorbs the repeat)",
        );
        let queue_missed = counter(
            "queue_missed",
            "Alerts a poller beside an sqs source found first: changes the queue missed (or had not delivered yet)",
        );
        let queue_event_to_commit_seconds =
            HistogramFamily::new_with_constructor(queue_latency_histogram);
        registry.register(
            "queue_event_to_commit_seconds",
            "Queue path: the event's eventTime to its alert committed",
            queue_event_to_commit_seconds.clone(),
        );
        let queue_receipt_to_accepted_seconds =
            HistogramFamily::new_with_constructor(queue_latency_histogram);
        registry.register(
            "queue_receipt_to_accepted_seconds",
            "Queue path: the message received to the channel accepting the alert",
            queue_receipt_to_accepted_seconds.clone(),
        );
        let mut gauge = |name: &str, help: &str| {
            let f = GaugeFamily::default();
            registry.register(name, help, f.clone());
            f
        };
        let source_lag_seconds = gauge(
            "source_lag_seconds",
            "Now minus the source's cursor: how far behind the source is read",
        );
        let last_success_timestamp_seconds = gauge(
            "last_success_timestamp_seconds",
            "Unix time of the source's last successful poll",
        );
        let source_is_blind = gauge("source_is_blind", "1 while rolewatch cannot see the source");
        let channel_is_failing = gauge("channel_is_failing", "1 while a channel keeps failing");
        let outbox_pending = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "outbox_pending",
            "Outbox rows not delivered yet (all channels)",
            outbox_pending.clone(),
        );
        let state_commit_seconds = HistogramFamily::new_with_constructor(commit_histogram);
        registry.register(
            "state_commit_seconds",
            "How long a poll's page commit (seen IDs, alerts, outbox rows, cursor) took in the state",
            state_commit_seconds.clone(),
        );
        let replica_is_leader = Gauge::<f64, AtomicU64>::default();
        replica_is_leader.set(1.0);
        registry.register(
            "replica_is_leader",
            "1 while this rolewatch polls (the only one of a SQLite state, or the lease holder of a shared one); 0 for a follower",
            replica_is_leader.clone(),
        );
        let coverage_gaps_recorded = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "coverage_gaps_recorded",
            "Coverage gaps recorded in the state",
            coverage_gaps_recorded.clone(),
        );
        Metrics {
            registry,
            poll_completed,
            poll_failed,
            poll_skipped,
            requests_throttled,
            request_retries,
            events_seen,
            events_malformed,
            rule_matches,
            alerts_recorded,
            coverage_gap,
            source_blind,
            source_recovered,
            heartbeat_sent,
            sweep_completed,
            sweep_failed,
            sweep_requests,
            late_events,
            event_lateness_seconds,
            queue_messages_received,
            queue_messages_poison,
            queue_messages_deleted,
            queue_delete_failed,
            queue_missed,
            queue_event_to_commit_seconds,
            queue_receipt_to_accepted_seconds,
            alert_deliveries,
            alert_analysed,
            baseline_taken,
            baseline_failed,
            source_lag_seconds,
            last_success_timestamp_seconds,
            source_is_blind,
            channel_is_failing,
            outbox_pending,
            coverage_gaps_recorded,
            replica_is_leader,
            state_commit_seconds,
        }
    }

    /// Creates every per-source series of `source` at zero, so that `/metrics` shows them
    /// before anything happened: an alert rule on `increase(…)` or a dashboard panel then has
    /// a series to read from the start (a counter that appears only on its first increment
    /// hides that increment from `increase`).
    pub fn init_source(&self, source: &str) {
        let labels = self::source(source);
        for family in [
            &self.poll_completed,
            &self.poll_failed,
            &self.poll_skipped,
            &self.requests_throttled,
            &self.request_retries,
            &self.events_seen,
            &self.events_malformed,
            &self.rule_matches,
            &self.alerts_recorded,
            &self.coverage_gap,
            &self.source_blind,
            &self.source_recovered,
            &self.sweep_completed,
            &self.sweep_failed,
            &self.sweep_requests,
            &self.late_events,
        ] {
            drop(family.get_or_create(&labels));
        }
        drop(self.event_lateness_seconds.get_or_create(&labels));
        drop(self.source_is_blind.get_or_create(&labels));
    }

    /// Creates the queue series of an `sqs` source at zero.
    pub fn init_queue(&self, source: &str) {
        let labels = self::source(source);
        for family in [
            &self.queue_messages_received,
            &self.queue_messages_poison,
            &self.queue_messages_deleted,
            &self.queue_delete_failed,
        ] {
            drop(family.get_or_create(&labels));
        }
        drop(self.queue_event_to_commit_seconds.get_or_create(&labels));
    }

    /// Creates the `queue_missed` series of a backstop poller at zero.
    pub fn init_backstop(&self, source: &str) {
        drop(self.queue_missed.get_or_create(&self::source(source)));
    }

    /// The text exposition.
    ///
    /// # Errors
    ///
    /// Only when formatting fails (it writes to a `String`).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_after_their_log_events() {
        let m = Metrics::new();
        m.poll_failed.get_or_create(&source("ct")).inc();
        m.alert_deliveries
            .get_or_create(&vec![
                ("channel".into(), "stdout".into()),
                ("outcome".into(), "delivered".into()),
            ])
            .inc_by(3);
        m.outbox_pending.set(2.0);
        m.late_events.get_or_create(&source("ct")).inc();
        m.event_lateness_seconds
            .get_or_create(&source("ct"))
            .observe(1_500.0);
        let text = m.encode().unwrap();
        assert!(
            text.contains("rolewatch_late_events_total{source=\"ct\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rolewatch_event_lateness_seconds_bucket{le=\"1800.0\",source=\"ct\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rolewatch_event_lateness_seconds_bucket{le=\"1200.0\",source=\"ct\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("rolewatch_poll_failed_total{source=\"ct\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "rolewatch_alert_deliveries_total{channel=\"stdout\",outcome=\"delivered\"} 3"
            ),
            "{text}"
        );
        assert!(text.contains("rolewatch_outbox_pending 2"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
