//! A channel's failure episode: failing after repeated failures or a long wait, the notice
//! about it for the other channels, and the notice when it recovers — both recorded in the
//! state with outbox rows for every other channel, like the sources' notices, so they are
//! delivered, retried and kept across restarts like any alert.

use std::sync::atomic::Ordering;

use super::{lock, Outbox, FAILING_AFTER_FAILURES, FAILING_AFTER_WAIT};
use crate::notify::synthetic::{self, Notice};
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
                let notice = synthetic::channel_failing(name, since, &last_error, pending, now);
                self.record_channel_notice(i, &notice);
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
                let notice = synthetic::channel_recovered(name, since, now);
                self.record_channel_notice(i, &notice);
            }
            _ => {}
        }
    }

    /// Records a notice about channel `about` in the state, with an outbox row for every
    /// other channel (none: nobody to tell, as with a single channel).
    fn record_channel_notice(&self, about: usize, notice: &Notice) {
        let now = self.clock.now_ms();
        let others: Vec<&str> = self
            .channels
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != about)
            .map(|(_, c)| c.notifier.name())
            .collect();
        if others.is_empty() {
            return;
        }
        let channel = self.channels[about].notifier.name();
        match self
            .state
            .with(|s| s.record_notice(&notice.new_alert(now), &others, now))
        {
            Ok(_) => tracing::info!(
                event = "channel_notice_recorded",
                channel,
                rule = notice.rule,
                via = ?others,
                "Recorded a notice about a channel for the other channels"
            ),
            Err(e) => tracing::error!(
                event = "notice_not_recorded",
                channel,
                rule = notice.rule,
                error = %e,
                "Cannot record a notice about a channel in the state, so it cannot be sent: {}",
                notice.summary
            ),
        }
    }
}
