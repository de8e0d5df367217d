//! Delivering what is due on one channel: render, send, and record the outcome — delivered
//! only after the channel accepted, otherwise failed with its next attempt (full-jitter
//! backoff) or given up after the channel's limit.

use std::sync::atomic::Ordering;

use super::{lock, ms, Outbox, PassReport, BATCH};
use crate::notify::alert::Alert;
use crate::notify::notifier::SendError;
use crate::state::{StateError, StoredAlert};

impl Outbox {
    pub(super) async fn deliver_channel(&self, i: usize, report: &mut PassReport) {
        let ch = &self.channels[i];
        let name = ch.notifier.name();
        let now = self.clock.now_ms();
        if lock(&self.health)[i].resting_until_ms > now {
            return;
        }
        let wait = ms(self.analysis_wait);
        let due = match self.state.with(|s| s.due_alerts(name, now, wait, BATCH)) {
            Ok(d) => d,
            Err(e) => {
                self.state_error(name, &e, "read the due alerts");
                report.state_errors += 1;
                return;
            }
        };
        for stored in due {
            let analysis: Option<crate::intel::Analysis> =
                match self.state.with(|s| s.analysis(stored.id)) {
                    Ok(a) => a.and_then(|json| serde_json::from_str(&json).ok()),
                    Err(e) => {
                        self.state_error(name, &e, "read an analysis");
                        None
                    }
                };
            let alert = Alert::from_stored(&stored, self.clock.now_ms()).with_analysis(analysis);
            let result = ch.notifier.send(&alert).await;
            let now = self.clock.now_ms();
            match result {
                Ok(delivered) => {
                    if let Err(e) = self.state.with(|s| s.mark_delivered(stored.id, name, now)) {
                        // The channel has it; the row stays pending and is sent again later.
                        self.state_error(name, &e, "mark an alert delivered");
                        report.state_errors += 1;
                        return;
                    }
                    self.counters[i].delivered.fetch_add(1, Ordering::Relaxed);
                    report.delivered += 1;
                    lock(&self.health)[i].episode.succeeded();
                    tracing::info!(
                        event = "alert_delivered",
                        channel = name,
                        alert_id = stored.id,
                        rule = %stored.rule,
                        event_id = %stored.event_id,
                        receipt = delivered.receipt.as_deref().unwrap_or(""),
                        delay_ms = now.saturating_sub(stored.detected_ms),
                        "Delivered an alert"
                    );
                }
                Err(e) => {
                    report.failed += 1;
                    let rest = self.record_failure(i, &stored, &e, now, report);
                    if let Some(until) = rest {
                        lock(&self.health)[i].resting_until_ms = until;
                        return;
                    }
                }
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
            let retry_at = (!give_up).then(|| now.saturating_add(ms(self.backoff.draw(attempts))));
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
        match retry_at {
            None => {
                self.counters[i].abandoned.fetch_add(1, Ordering::Relaxed);
                report.abandoned += 1;
                tracing::error!(
                    event = "alert_delivery_abandoned",
                    channel = name,
                    alert_id = stored.id,
                    rule = %stored.rule,
                    event_id = %stored.event_id,
                    attempts,
                    class = e.class(),
                    error = %e,
                    "Gave up delivering an alert through this channel: fix the channel, the alert stays in the state's history"
                );
            }
            Some(at) => {
                tracing::warn!(
                    event = "alert_delivery_failed",
                    channel = name,
                    alert_id = stored.id,
                    event_id = %stored.event_id,
                    attempts,
                    class = e.class(),
                    retry_in_ms = at.saturating_sub(now),
                    error = %e,
                    "Delivering an alert failed; it will be retried"
                );
            }
        }
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
