//! Delivering what is due on one channel: render, send, and record the outcome — delivered
//! only after the channel accepted, otherwise failed with its next attempt (full-jitter
//! backoff) or given up after the channel's limit. A channel that is down is probed first
//! (side-effect free); only a successful probe lets the pass send, and makes every pending
//! row of the channel due at once.

use std::sync::atomic::Ordering;

use super::{lock, ms, Outbox, PassReport, BATCH};
use crate::notify::alert::Alert;
use crate::notify::notifier::SendError;
use crate::state::{StateError, StoredAlert};
use crate::telemetry::events::{Delivery, Outcome};

impl Outbox {
    pub(super) async fn deliver_channel(&self, i: usize, report: &mut PassReport) {
        let ch = &self.channels[i];
        let name = ch.notifier.name();
        let now = self.clock.now_ms();
        let down = {
            let h = &lock(&self.health)[i];
            if h.resting_until_ms > now {
                return;
            }
            h.down
        };
        if down && !self.probe(i).await {
            return;
        }
        let now = self.clock.now_ms();
        let wait = ms(self.analysis_wait);
        let due = match self.state.with(|s| s.due_alerts(name, now, wait, BATCH)) {
            Ok(d) => d,
            Err(e) => {
                self.state_error(name, &e, "read the due alerts");
                report.state_errors += 1;
                return;
            }
        };
        // Sent `in_flight` at a time (one for every channel that keeps order); the
        // outcomes are recorded in the rows' order, every accepted one marked delivered even
        // when another of its group failed.
        for group in due.chunks(ch.notifier.in_flight().max(1)) {
            let mut alerts = Vec::with_capacity(group.len());
            for stored in group {
                let analysis: Option<crate::intel::Analysis> =
                    match self.state.with(|s| s.analysis(stored.id)) {
                        Ok(a) => a.and_then(|json| serde_json::from_str(&json).ok()),
                        Err(e) => {
                            self.state_error(name, &e, "read an analysis");
                            None
                        }
                    };
                alerts.push(
                    Alert::from_stored(stored, self.clock.now_ms())
                        .with_analysis(analysis)
                        .with_accounts(&self.accounts),
                );
            }
            let mut sends = Vec::with_capacity(alerts.len());
            for alert in &alerts {
                sends.push(ch.notifier.send(alert));
            }
            let results = futures_util::future::join_all(sends).await;
            let mut go_on = true;
            for (stored, result) in group.iter().zip(results) {
                go_on &= self.record_outcome(i, stored, result, report);
            }
            if !go_on {
                return;
            }
        }
    }

    /// Records the outcome of sending `stored` on channel `i`; false when the channel is to
    /// send nothing more this pass (down, resting, or its state could not be written).
    fn record_outcome(
        &self,
        i: usize,
        stored: &StoredAlert,
        result: Result<crate::notify::notifier::Delivered, SendError>,
        report: &mut PassReport,
    ) -> bool {
        let name = self.channels[i].notifier.name();
        let now = self.clock.now_ms();
        match result {
            Ok(delivered) => {
                if let Err(e) = self.state.with(|s| s.mark_delivered(stored.id, name, now)) {
                    // The channel has it; the row stays pending and is sent again later.
                    self.state_error(name, &e, "mark an alert delivered");
                    report.state_errors += 1;
                    return false;
                }
                self.counters[i].delivered.fetch_add(1, Ordering::Relaxed);
                report.delivered += 1;
                {
                    let mut h = lock(&self.health);
                    h[i].episode.succeeded();
                    h[i].down = false;
                    h[i].failed_probes = 0;
                }
                if stored.found_by == crate::state::FoundBy::Queue {
                    // An alert of the queue is committed at its message's receipt.
                    self.metrics
                        .queue_receipt_to_accepted_seconds
                        .get_or_create(&vec![("channel".to_owned(), name.to_owned())])
                        .observe(now.saturating_sub(stored.detected_ms).max(0) as f64 / 1000.0);
                }
                Delivery {
                    channel: name,
                    alert_id: stored.id,
                    rule: &stored.rule,
                    event_id: &stored.event_id,
                    outcome: Outcome::Delivered {
                        receipt: delivered.receipt.as_deref().unwrap_or(""),
                        delay_ms: now.saturating_sub(stored.detected_ms),
                    },
                }
                .emit(&self.metrics);
            }
            Err(e) => {
                report.failed += 1;
                let rest = self.record_failure(i, stored, &e, now, report);
                if e.is_retryable() {
                    // Down: no more sends until a probe says it answers again — and no
                    // probe before the wait the channel asked for (429 Retry-After), so
                    // that the probe's "every pending row due now" cannot undercut it.
                    let mut h = lock(&self.health);
                    h[i].down = true;
                    let wait = self
                        .probe_wait(h[i].failed_probes)
                        .max(e.retry_after().unwrap_or_default());
                    h[i].resting_until_ms = now.saturating_add(ms(wait));
                    return false;
                }
                if let Some(until) = rest {
                    lock(&self.health)[i].resting_until_ms = until;
                    return false;
                }
            }
        }
        true
    }

    /// Probes channel `i`, which is down: true when it answered (it is up again and every
    /// pending row of it is due now); else it rests until the next probe, and the failure
    /// counts towards its failure episode.
    async fn probe(&self, i: usize) -> bool {
        let name = self.channels[i].notifier.name();
        let result = self.channels[i].notifier.check().await;
        let now = self.clock.now_ms();
        match result {
            Ok(()) => {
                let made_due = match self.state.with(|s| s.make_due(name, now)) {
                    Ok(n) => n,
                    Err(e) => {
                        self.state_error(name, &e, "make the pending alerts due");
                        0
                    }
                };
                let failed_probes = {
                    let mut h = lock(&self.health);
                    h[i].down = false;
                    std::mem::take(&mut h[i].failed_probes)
                };
                tracing::info!(
                    event = "channel_probe_succeeded",
                    channel = name,
                    failed_probes,
                    made_due,
                    "A channel that was down answers its probe: its pending alerts are due now"
                );
                true
            }
            Err(e) => {
                self.counters[i]
                    .probes_failed
                    .fetch_add(1, Ordering::Relaxed);
                let wait = {
                    let mut h = lock(&self.health);
                    h[i].failed_probes = h[i].failed_probes.saturating_add(1);
                    h[i].episode.failed(&e.to_string(), now);
                    let wait = self.probe_wait(h[i].failed_probes);
                    h[i].resting_until_ms = now.saturating_add(ms(wait));
                    wait
                };
                tracing::warn!(
                    event = "channel_probe_failed",
                    channel = name,
                    class = e.class(),
                    next_probe_in_ms = ms(wait),
                    error = %e,
                    "A channel that is down still fails its probe"
                );
                false
            }
        }
    }

    /// Records a failed attempt; returns the time the channel rests until after a retryable
    /// failure.
    pub(super) fn record_failure(
        &self,
        i: usize,
        stored: &StoredAlert,
        e: &SendError,
        now: i64,
        report: &mut PassReport,
    ) -> Option<i64> {
        let ch = &self.channels[i];
        let name = ch.notifier.name();
        self.counters[i].failed.fetch_add(1, Ordering::Relaxed);
        lock(&self.health)[i].episode.failed(&e.to_string(), now);
        let outcome = self.state.with(|state| -> Result<(Option<i64>, u32), i64> {
            let attempts = match state.delivery(stored.id, name) {
                Ok(d) => d.map_or(1, |d| d.attempts.saturating_add(1)),
                Err(err) => {
                    self.state_error(name, &err, "read a delivery");
                    report.state_errors += 1;
                    return Err(now.saturating_add(ms(self.backoff.ceiling(1))));
                }
            };
            let limit = if e.is_retryable() {
                ch.policy.retry_max_attempts
            } else {
                Some(ch.policy.permanent_max_attempts)
            };
            let give_up = limit.is_some_and(|n| attempts >= n);
            // Never before the wait the channel asked for (HTTP 429 `Retry-After`).
            let wait = self
                .backoff
                .draw(attempts)
                .max(e.retry_after().unwrap_or_default());
            let retry_at = (!give_up).then(|| now.saturating_add(ms(wait)));
            if let Err(err) = state.mark_failed(stored.id, name, &e.to_string(), retry_at) {
                self.state_error(name, &err, "record a failed delivery");
                report.state_errors += 1;
            }
            Ok((retry_at, attempts))
        });
        let (retry_at, attempts) = match outcome {
            Ok(r) => r,
            Err(next) => return Some(next),
        };
        let outcome = match retry_at {
            None => {
                self.counters[i].abandoned.fetch_add(1, Ordering::Relaxed);
                report.abandoned += 1;
                Outcome::Abandoned {
                    attempts,
                    class: e.class(),
                    error: e,
                }
            }
            Some(at) => Outcome::Failed {
                attempts,
                class: e.class(),
                retry_in_ms: at.saturating_sub(now),
                error: e,
            },
        };
        Delivery {
            channel: name,
            alert_id: stored.id,
            rule: &stored.rule,
            event_id: &stored.event_id,
            outcome,
        }
        .emit(&self.metrics);
        if e.is_retryable() {
            retry_at.or(Some(now.saturating_add(ms(self.backoff.ceiling(1)))))
        } else {
            None
        }
    }

    pub(super) fn state_error(&self, channel: &str, e: &StateError, what: &str) {
        tracing::error!(
            event = "outbox_state_error",
            channel,
            error = %e,
            "Cannot {what} in the state; delivery resumes on the next pass"
        );
    }
}
