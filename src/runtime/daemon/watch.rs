//! Watching the watcher: blind and recovered sources reported once (a log line and a notice
//! through the state), readiness, and the `/metrics` text the admin endpoint shows.

use std::sync::atomic::Ordering;

use super::{lock, Daemon};
use crate::notify::synthetic::{self, Notice};
use crate::telemetry::events::{SourceBlind, SourceRecovered};
use crate::telemetry::health::Transition;
use crate::telemetry::metrics;
use crate::time::format_rfc3339_ms;

impl Daemon {
    /// Logs, counts and records (as a notice for every channel) a change of a source's sight.
    pub(super) fn report(&self, i: usize, t: Transition) {
        let id = &self.sources[i].cfg.id;
        let now = self.clock.now_ms();
        let notice = match t {
            Transition::Blind {
                since_ms,
                failures,
                reason,
            } => {
                let n = synthetic::source_blind(id, since_ms, &reason, failures, now);
                SourceBlind {
                    source: id,
                    since: &format_rfc3339_ms(since_ms),
                    failures,
                    error: &reason,
                    summary: &n.summary,
                }
                .emit(&self.metrics);
                n
            }
            Transition::Recovered { since_ms } => {
                let n = synthetic::source_recovered(id, since_ms, now);
                SourceRecovered {
                    source: id,
                    blind_for_ms: now.saturating_sub(since_ms),
                    summary: &n.summary,
                }
                .emit(&self.metrics);
                n
            }
        };
        self.record_notice(&notice);
    }

    /// Records a notice in the state with one outbox row per channel, and wakes the outbox.
    pub(super) fn record_notice(&self, n: &Notice) {
        let now = self.clock.now_ms();
        let channels: Vec<&str> = self.channel_names.iter().map(String::as_str).collect();
        let alert = n.new_alert(now);
        if let Err(e) = self.state.with(|s| s.record_notice(&alert, &channels, now)) {
            tracing::error!(
                event = "notice_not_recorded",
                rule = n.rule,
                error = %e,
                "Cannot record a notice in the state, so it cannot be sent: {}", n.summary
            );
        }
        self.alerts_committed();
    }

    /// Applies the blind rules to every source at the current time (a poll may hang).
    pub(super) fn watch(&self) {
        let now = self.clock.now_ms();
        // A follower does not poll: only its queues can go blind.
        let leads = self.leads();
        let transitions: Vec<(usize, Transition)> = {
            let mut health = lock(&self.health);
            health
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| leads || self.sources[*i].cfg.kind.is_queue())
                .filter_map(|(i, h)| h.check(now, &self.policy).map(|t| (i, t)))
                .collect()
        };
        for (i, t) in transitions {
            self.report(i, t);
        }
    }

    /// Whether every source's last poll is fresh, with the reason per source that is not.
    pub fn readiness(&self) -> (bool, serde_json::Value) {
        let now = self.clock.now_ms();
        let health = lock(&self.health).clone();
        let mut ready = true;
        let mut sources = serde_json::Map::new();
        let standing = self.standing();
        for (slot, h) in self.sources.iter().zip(&health) {
            if !standing.polls() && !slot.cfg.kind.is_queue() {
                sources.insert(
                    slot.cfg.id.clone(),
                    serde_json::json!({ "ready": true, "reason": null, "polled_by": "the leader" }),
                );
                continue;
            }
            let why = h.not_ready(now);
            ready &= why.is_none();
            sources.insert(
                slot.cfg.id.clone(),
                serde_json::json!({
                    "ready": why.is_none(),
                    "reason": why,
                    "last_success": h.last_success_ms.map(format_rfc3339_ms),
                    "consecutive_failures": h.episode.consecutive_failures,
                    "blind": h.episode.is_open(),
                }),
            );
        }
        (
            ready,
            serde_json::json!({
                "ready": ready,
                "state": "loaded",
                "replica": standing.as_str(),
                "sources": sources,
            }),
        )
    }

    /// The `/metrics` text: counters, plus gauges read now from the state and the outbox.
    ///
    /// # Errors
    ///
    /// Only when formatting fails.
    pub fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        let m = &self.metrics;
        let now = self.clock.now_ms();
        let health = lock(&self.health).clone();
        for (slot, h) in self.sources.iter().zip(&health) {
            let labels = metrics::source(&slot.cfg.id);
            if let Some(t) = h.last_success_ms {
                m.last_success_timestamp_seconds
                    .get_or_create(&labels)
                    .set(t as f64 / 1000.0);
            }
            m.source_is_blind
                .get_or_create(&labels)
                .set(if h.episode.is_open() { 1.0 } else { 0.0 });
        }
        self.state.with(|state| {
            if let Ok(cursors) = state.cursors() {
                for c in cursors {
                    m.source_lag_seconds
                        .get_or_create(&metrics::source(&c.source_id))
                        .set(now.saturating_sub(c.position_ms) as f64 / 1000.0);
                }
            }
            if let Ok(stats) = state.stats() {
                m.outbox_pending.set(stats.undelivered as f64);
                m.coverage_gaps_recorded.set(stats.gaps as f64);
            }
        });
        for (name, c) in self.outbox.counters() {
            // Every channel shows its three outcomes from the start, zero or not (the
            // deliveries themselves count when they happen, `telemetry::events::Delivery`).
            for outcome in ["delivered", "failed", "abandoned"] {
                drop(m.alert_deliveries.get_or_create(&vec![
                    ("channel".to_owned(), name.to_owned()),
                    ("outcome".to_owned(), outcome.to_owned()),
                ]));
            }
            m.channel_is_failing
                .get_or_create(&vec![("channel".to_owned(), name.to_owned())])
                .set(if c.failing.load(Ordering::Relaxed) {
                    1.0
                } else {
                    0.0
                });
        }
        m.encode()
    }
}

impl crate::admin::AdminView for Daemon {
    fn readiness(&self) -> (bool, serde_json::Value) {
        Daemon::readiness(self)
    }

    fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        Daemon::metrics_text(self)
    }
}
