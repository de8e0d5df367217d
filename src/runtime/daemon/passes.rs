//! One pass of one source, as the daemon runs it: a poll (window → fetch → engine → state) or a
//! reconciliation sweep, their outcome counted and their health recorded.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::{lock, Daemon};
use crate::config::SourceConfig;
use crate::runtime::poll::{
    poll_source, sweep_due, sweep_source, PollContext, PollError, PollOutcome,
};
use crate::source::FetchStats;
use crate::source::Source;
use crate::state::Origin;
use crate::telemetry::events::{PollCompleted, PollFailed, Requests, SweepCompleted, SweepFailed};
use crate::telemetry::metrics;

impl Daemon {
    /// One poll of source `i`, logged, counted and fed to the health watch; wakes the outbox.
    /// True when it worked.
    pub(super) async fn poll(&self, i: usize) -> bool {
        let slot = &self.sources[i];
        if slot.cfg.kind.is_queue() {
            return Box::pin(self.receive(i)).await;
        }
        let sc = &slot.cfg;
        // Replicas: only the lease holder polls (its clock says its lease is still fresh).
        let standing = self.state.run(|s| s.leadership(self.clock.now_ms())).await;
        if !standing.polls() {
            self.set_standing(standing);
            tracing::debug!(source = %sc.id, "Not polled: this replica is a follower");
            return false;
        }
        // One global cap over every source and account; a closed semaphore never happens
        // (it is never closed), and then the poll simply runs.
        let _permit = self.polls_at_once.acquire().await.ok();
        // Boxed, and only once the permit is held: a poll waiting for its turn is a small
        // task, and only the `max_concurrent_polls` polls that run hold their whole state
        // (with 1,000 accounts, every account's poll waits at the start of each round).
        Box::pin(self.poll_now(i)).await
    }

    /// The poll of [`Daemon::poll`], its permit held.
    async fn poll_now(&self, i: usize) -> bool {
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
                PollCompleted {
                    source: &sc.id,
                    windows: o.windows,
                    requests: requests_of(&o.stats),
                    events: o.stats.events,
                    matches: o.matches,
                    new_alerts: o.new_alerts.len(),
                    malformed: o.bad.len(),
                    gaps: o.gaps.len(),
                    elapsed_ms: started.elapsed().as_millis() as u64,
                }
                .emit(m);
                self.count_outcome(&labels, o);
                self.backstop_found(i, &o.new_alerts);
                lock(&self.health)[i].success(now)
            }
            Err(e) => {
                PollFailed {
                    source: &sc.id,
                    error: e,
                    requests: spent(e),
                }
                .emit(m);
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
        let commits = m.state_commit_seconds.get_or_create(labels);
        for &us in &o.commit_us {
            #[allow(clippy::cast_precision_loss)]
            commits.observe(us as f64 / 1e6);
        }
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
            channel_accounts: &self.channel_accounts,
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
        // Replicas: only the lease holder polls (its clock says its lease is still fresh).
        let standing = self.state.run(|s| s.leadership(self.clock.now_ms())).await;
        if !standing.polls() {
            self.set_standing(standing);
            tracing::debug!(source = %sc.id, "Not polled: this replica is a follower");
            return false;
        }
        let _permit = self.polls_at_once.acquire().await.ok();
        Box::pin(self.sweep_now(i)).await
    }

    /// The sweep of [`Daemon::sweep`], its permit held (boxed as a poll is).
    async fn sweep_now(&self, i: usize) -> bool {
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
                SweepCompleted {
                    source: &sc.id,
                    windows: o.windows,
                    requests: requests_of(&o.stats),
                    events: o.stats.events,
                    late_ms: &o.late_ms,
                    new_alerts: o.new_alerts.len(),
                    malformed: o.bad.len(),
                    elapsed_ms: started.elapsed().as_millis() as u64,
                    lookback_hours: sc.sweep_lookback.as_secs() / 3600,
                }
                .emit(m);
                self.count_outcome(&labels, o);
                self.backstop_found(i, &o.new_alerts);
                true
            }
            Err(e) => {
                SweepFailed {
                    source: &sc.id,
                    error: e,
                    requests: spent(e),
                }
                .emit(m);
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
        if !slot.sweeping.try_enter() {
            return;
        }
        let this = Arc::clone(self);
        tracker.spawn(async move {
            let _busy = this.sources[i].sweeping.held();
            tokio::select! {
                _ = this.sweep(i) => {}
                () = this.stop_sweeps.cancelled() => {
                    tracing::info!(source = %this.sources[i].cfg.id, "Sweep stopped for the shutdown; the next start sweeps again");
                }
            }
        });
    }
}

/// The request counters of a fetch, for the events.
fn requests_of(s: &FetchStats) -> Requests {
    Requests {
        requests: s.requests,
        throttled: s.throttled,
        retries: s.retries,
    }
}

/// What a failed pass spent before the source gave up (nothing when it failed elsewhere).
fn spent(e: &PollError) -> Option<Requests> {
    match e {
        PollError::Source(se) => Some(requests_of(&se.stats)),
        _ => None,
    }
}
