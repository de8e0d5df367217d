//! One pass of one source, as the daemon runs it: a poll (window → fetch → engine → state) or a
//! reconciliation sweep, their outcome counted and their health recorded.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::{lock, Busy, Daemon};
use crate::config::SourceConfig;
use crate::runtime::poll::{
    poll_source, sweep_due, sweep_source, PollContext, PollError, PollOutcome,
};
use crate::source::Source;
use crate::state::Origin;
use crate::telemetry::metrics::{self};

impl Daemon {
    /// One poll of source `i`, logged, counted and fed to the health watch; wakes the outbox.
    /// True when it worked.
    pub(super) async fn poll(&self, i: usize) -> bool {
        let slot = &self.sources[i];
        let sc = &slot.cfg;
        let retention = self.retention_of(i).await;
        lock(&self.health)[i].polling = true;
        let channels: Vec<&str> = self.channel_names.iter().map(String::as_str).collect();
        let ctx = self.poll_context(&channels, retention);
        let started = tokio::time::Instant::now();
        let result = poll_source(&slot.source, sc, &ctx).await;
        let now = self.clock.now_ms();
        let labels = metrics::source(&sc.id);
        let m = &self.metrics;
        let transition = match &result {
            Ok(o) => {
                tracing::info!(
                    event = "poll_completed",
                    source = %sc.id,
                    windows = o.windows,
                    requests = o.stats.requests,
                    throttled = o.stats.throttled,
                    retries = o.stats.retries,
                    events = o.stats.events,
                    matches = o.matches,
                    new_alerts = o.new_alerts.len(),
                    malformed = o.bad.len(),
                    gaps = o.gaps.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "Polled"
                );
                m.poll_completed.get_or_create(&labels).inc();
                m.events_seen.get_or_create(&labels).inc_by(o.stats.events);
                self.count_outcome(&labels, o);
                m.coverage_gap
                    .get_or_create(&labels)
                    .inc_by(o.gaps.len() as u64);
                lock(&self.health)[i].success(now)
            }
            Err(e) => {
                tracing::error!(event = "poll_failed", source = %sc.id, error = %e, "Poll failed; the next poll resumes from the stored cursor");
                m.poll_failed.get_or_create(&labels).inc();
                lock(&self.health)[i].failure(&e.to_string(), now, &self.policy)
            }
        };
        lock(&self.health)[i].polling = false;
        if let Some(t) = transition {
            self.report(i, t);
        }
        self.alerts_committed();
        result.is_ok()
    }

    pub(super) async fn retention(sc: &SourceConfig, source: &Source) -> Option<Duration> {
        match source.retention().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(source = %sc.id, error = %e, "Cannot read how long the source keeps events; coverage gaps will not be detected");
                None
            }
        }
    }

    /// How long source `i` keeps events, read once, before its first poll or sweep.
    pub(super) async fn retention_of(&self, i: usize) -> Option<Duration> {
        let slot = &self.sources[i];
        *slot
            .retention
            .get_or_init(|| Self::retention(&slot.cfg, &slot.source))
            .await
    }

    /// The counters a poll and a sweep share: retries, throttles, malformed events, matches
    /// and the alerts recorded (rolewatch's own notices not counted).
    pub(super) fn count_outcome(&self, labels: &metrics::Labels, o: &PollOutcome) {
        let m = &self.metrics;
        m.requests_throttled
            .get_or_create(labels)
            .inc_by(o.stats.throttled);
        m.request_retries
            .get_or_create(labels)
            .inc_by(o.stats.retries);
        m.events_malformed
            .get_or_create(labels)
            .inc_by(o.bad.len() as u64);
        m.rule_matches.get_or_create(labels).inc_by(o.matches);
        let real = o
            .new_alerts
            .iter()
            .filter(|a| a.origin == Origin::Rule)
            .count();
        m.alerts_recorded.get_or_create(labels).inc_by(real as u64);
    }

    pub(super) fn poll_context<'a>(
        &'a self,
        channels: &'a [&'a str],
        retention: Option<Duration>,
    ) -> PollContext<'a> {
        PollContext {
            engine: &self.engine,
            state: &self.state,
            clock: self.clock.as_ref(),
            channels,
            initial_lookback: self.initial_lookback,
            retention,
        }
    }

    /// Whether source `i`'s sweep is due now (a state that cannot be read: not due; the poll
    /// reports the state's trouble).
    pub(super) fn sweep_due(&self, i: usize) -> bool {
        let sc = &self.sources[i].cfg;
        match sweep_due(sc, &self.state, self.clock.now_ms()) {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(event = "sweep_failed", source = %sc.id, error = %e, "Cannot read when the last sweep ran");
                false
            }
        }
    }

    /// One reconciliation sweep of source `i`, logged and counted; wakes the outbox. True when
    /// it worked (or was not needed).
    pub(super) async fn sweep(&self, i: usize) -> bool {
        let slot = &self.sources[i];
        let sc = &slot.cfg;
        let retention = self.retention_of(i).await;
        let channels: Vec<&str> = self.channel_names.iter().map(String::as_str).collect();
        let ctx = self.poll_context(&channels, retention);
        let started = tokio::time::Instant::now();
        let result = sweep_source(&slot.source, sc, &ctx).await;
        let labels = metrics::source(&sc.id);
        let m = &self.metrics;
        let ok = match &result {
            Ok(o) => {
                tracing::info!(
                    event = "sweep_completed",
                    source = %sc.id,
                    windows = o.windows,
                    requests = o.stats.requests,
                    throttled = o.stats.throttled,
                    events = o.stats.events,
                    late_events = o.late_ms.len(),
                    new_alerts = o.new_alerts.len(),
                    malformed = o.bad.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "Swept the last {} h for late deliveries",
                    sc.sweep_lookback.as_secs() / 3600
                );
                m.sweep_completed.get_or_create(&labels).inc();
                self.count_outcome(&labels, o);
                m.sweep_requests
                    .get_or_create(&labels)
                    .inc_by(o.stats.requests);
                m.late_events
                    .get_or_create(&labels)
                    .inc_by(o.late_ms.len() as u64);
                let lateness = m.event_lateness_seconds.get_or_create(&labels);
                for &late in &o.late_ms {
                    #[allow(clippy::cast_precision_loss)]
                    lateness.observe(late as f64 / 1000.0);
                }
                true
            }
            Err(e) => {
                if let PollError::Source(se) = e {
                    m.requests_throttled
                        .get_or_create(&labels)
                        .inc_by(se.stats.throttled);
                    m.request_retries
                        .get_or_create(&labels)
                        .inc_by(se.stats.retries);
                }
                tracing::error!(event = "sweep_failed", source = %sc.id, error = %e, "Sweep failed; the next poll starts it again");
                m.sweep_failed.get_or_create(&labels).inc();
                false
            }
        };
        self.alerts_committed();
        ok
    }

    /// Starts source `i`'s sweep on `tracker` when it is due and none runs; it stops early
    /// when the drain begins.
    pub(super) fn sweep_if_due(self: &Arc<Self>, i: usize, tracker: &TaskTracker) {
        if !self.sweep_due(i) {
            return;
        }
        let slot = &self.sources[i];
        if slot
            .sweeping
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let this = Arc::clone(self);
        tracker.spawn(async move {
            let _busy = Busy(&this.sources[i].sweeping);
            tokio::select! {
                _ = this.sweep(i) => {}
                () = this.stop_sweeps.cancelled() => {
                    tracing::info!(source = %this.sources[i].cfg.id, "Sweep stopped for the shutdown; the next start sweeps again");
                }
            }
        });
    }
}
