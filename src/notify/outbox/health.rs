//! A channel's failure episode: failing after repeated failures or a long wait, the notice
//! about it through the other channels, and the notice when it recovers.

use std::sync::atomic::Ordering;

use super::{lock, Notice, Outbox, FAILING_AFTER_FAILURES, FAILING_AFTER_WAIT, NOTICE_ATTEMPTS};
use crate::notify::alert::Alert;
use crate::notify::synthetic;
use crate::telemetry::episode::Threshold;

impl Outbox {
    /// Starts or ends a failure episode after a channel's pass.
    pub(super) fn update_health(&self, i: usize) {
        let name = self.channels[i].notifier.name();
        let now = self.clock.now_ms();
        let (failures, open) = {
            let h = &lock(&self.health)[i].episode;
            (h.consecutive_failures, h.is_open())
        };
        match open {
            false if failures > 0 => {
                let oldest_wait = self
                    .state
                    .with(|s| s.undelivered_alerts(name, 1))
                    .ok()
                    .and_then(|v| v.first().map(|a| now.saturating_sub(a.detected_ms)))
                    .unwrap_or(0);
                let threshold = Threshold {
                    failures: FAILING_AFTER_FAILURES,
                    after: FAILING_AFTER_WAIT,
                };
                let (since, last_error) = {
                    let h = &mut lock(&self.health)[i].episode;
                    let Some(since) = h.open_if_due(&threshold, oldest_wait, now) else {
                        return;
                    };
                    (since, h.last_error.clone().unwrap_or_default())
                };
                let pending = self
                    .state
                    .with(|s| s.undelivered_alerts(name, 100_000))
                    .map_or(0, |v| v.len() as u64);
                self.counters[i].failing.store(true, Ordering::Relaxed);
                self.counters[i]
                    .failing_episodes
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    event = "channel_failing",
                    channel = name,
                    consecutive_failures = failures,
                    pending,
                    oldest_wait_ms = oldest_wait,
                    error = %last_error,
                    "A channel keeps failing: alerts wait in the outbox until it works again; the other channels are told"
                );
                let alert = synthetic::channel_failing(name, since, &last_error, pending, now);
                self.queue_notices(i, &alert);
            }
            true if failures == 0 => {
                let Some(since) = lock(&self.health)[i].episode.close_if_recovered() else {
                    return;
                };
                self.counters[i].failing.store(false, Ordering::Relaxed);
                tracing::warn!(
                    event = "channel_recovered",
                    channel = name,
                    failing_for_ms = now.saturating_sub(since),
                    "A failing channel delivers again"
                );
                // A "failing" notice not sent yet is dropped with its recovery: nothing to say.
                let mut notices = lock(&self.notices);
                let unsent: Vec<usize> = notices
                    .iter()
                    .filter(|n| n.about == i)
                    .map(|n| n.via)
                    .collect();
                notices.retain(|n| n.about != i);
                drop(notices);
                let alert = synthetic::channel_recovered(name, since, now);
                self.queue_notices_except(i, &alert, &unsent);
            }
            _ => {}
        }
    }

    pub(super) fn queue_notices(&self, about: usize, alert: &Alert) {
        self.queue_notices_except(about, alert, &[]);
    }

    pub(super) fn queue_notices_except(&self, about: usize, alert: &Alert, skip: &[usize]) {
        let mut notices = lock(&self.notices);
        for via in 0..self.channels.len() {
            if via != about && !skip.contains(&via) {
                notices.push(Notice {
                    via,
                    about,
                    alert: alert.clone(),
                    attempts: 0,
                });
            }
        }
    }

    pub(super) async fn send_notices(&self) {
        let queued = std::mem::take(&mut *lock(&self.notices));
        let mut keep = Vec::new();
        for mut n in queued {
            let via = &self.channels[n.via];
            let result = via.notifier.send(&n.alert).await;
            let about = self.channels[n.about].notifier.name();
            match result {
                Ok(_) => {
                    self.counters[n.via]
                        .notices_sent
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        event = "channel_notice_sent",
                        channel = via.notifier.name(),
                        about,
                        rule = %n.alert.rule,
                        "Told on-call about another channel"
                    );
                }
                Err(e) => {
                    n.attempts += 1;
                    tracing::warn!(
                        event = "channel_notice_failed",
                        channel = via.notifier.name(),
                        about,
                        attempts = n.attempts,
                        error = %e,
                        "Cannot send a notice about another channel"
                    );
                    if n.attempts < NOTICE_ATTEMPTS {
                        keep.push(n);
                    }
                }
            }
        }
        // Notices queued while these were being sent come after.
        let mut notices = lock(&self.notices);
        keep.append(&mut notices);
        *notices = keep;
    }
}
