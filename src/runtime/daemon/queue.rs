//! The `sqs` sources in the daemon: each runs its receive cycles back to back on its own task
//! (a long poll waits for messages, so an idle queue costs one request per wait), logged,
//! counted and fed to the same health watch as the pollers. A cycle counts as failed — and
//! enough of them in a row as "rolewatch cannot see" — when SQS keeps failing, when the
//! dead-letter queue holds messages, or when the backstop found changes the queue did not
//! deliver and nothing came through the queue since; the first clean cycle recovers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::{lock, Daemon, CONFIRM_PAUSE};
use crate::runtime::poll::PollError;
use crate::runtime::queue::{receive_cycle, QueueOutcome};
use crate::state::{FoundBy, Origin};
use crate::telemetry::events::{PollFailed, Requests};
use crate::telemetry::metrics;

/// After a failed cycle of a queue already reported blind, the next one comes this much later
/// (a queue that is not blind yet is retried after [`CONFIRM_PAUSE`]).
const BLIND_PAUSE: Duration = Duration::from_secs(15);

impl Daemon {
    /// Starts the receive loop of `sqs` source `i` on `tracker`; it stops when the drain
    /// starts (a cycle cut short leaves its messages to come again).
    pub(super) fn run_queue(self: &Arc<Self>, i: usize, tracker: &TaskTracker) {
        let this = Arc::clone(self);
        tracker.spawn(async move {
            loop {
                let ok = tokio::select! {
                    ok = this.receive(i) => ok,
                    () = this.stop_sweeps.cancelled() => return,
                };
                if ok {
                    continue;
                }
                let pause = if this.confirming(i) {
                    CONFIRM_PAUSE
                } else {
                    BLIND_PAUSE
                };
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = this.stop_sweeps.cancelled() => return,
                }
            }
        });
    }

    /// One receive cycle of `sqs` source `i`, logged, counted and fed to the health watch;
    /// wakes the outbox. True when it worked and nothing says the queue misses events.
    pub(super) async fn receive(&self, i: usize) -> bool {
        let slot = &self.sources[i];
        let sc = &slot.cfg;
        let Some(q) = slot.source.queue() else {
            return false;
        };
        let channels: Vec<&str> = self.channel_names.iter().map(String::as_str).collect();
        let ctx = self.poll_context(&channels, None);
        lock(&self.health)[i].polling = true;
        let started = tokio::time::Instant::now();
        let result = {
            let mut memo = slot.queue_memo.lock().await;
            receive_cycle(q, sc, &ctx, &mut memo).await
        };
        let now = self.clock.now_ms();
        let labels = metrics::source(&sc.id);
        let m = &self.metrics;
        let problem = match &result {
            Ok(o) => {
                self.count_cycle(&sc.id, o, started.elapsed());
                if o.events > 0 {
                    slot.missed.store(0, Ordering::Release);
                }
                let missed = slot.missed.load(Ordering::Acquire);
                match o.dlq_messages {
                    Some(n) if n > 0 => Some(format!(
                        "the dead-letter queue holds {n} message(s) rolewatch could not read: changes in them were not checked"
                    )),
                    _ if missed > 0 => Some(format!(
                        "the backstop found {missed} change(s) the queue did not deliver, and no event came through the queue since: check the EventBridge rule, its target and the queue policy (rolewatch doctor)"
                    )),
                    _ => None,
                }
            }
            Err(e) => {
                PollFailed {
                    source: &sc.id,
                    error: e,
                    requests: match e {
                        PollError::Source(se) => Some(Requests {
                            requests: se.stats.requests,
                            throttled: se.stats.throttled,
                            retries: se.stats.retries,
                        }),
                        _ => None,
                    },
                }
                .emit(m);
                Some(e.to_string())
            }
        };
        let transition = match &problem {
            None => lock(&self.health)[i].success(now),
            Some(why) => {
                if result.is_ok() {
                    m.poll_failed.get_or_create(&labels).inc();
                    tracing::error!(event = "poll_failed", source = %sc.id, error = %why, "The queue cannot be trusted to deliver every change");
                }
                lock(&self.health)[i].failure(why, now, &self.policy)
            }
        };
        lock(&self.health)[i].polling = false;
        if let Some(t) = transition {
            self.report(i, t);
        }
        if result.as_ref().is_ok_and(|o| !o.new_alerts.is_empty()) {
            self.alerts_committed();
        }
        problem.is_none()
    }

    /// Logs and counts one cycle's outcome.
    fn count_cycle(&self, source: &str, o: &QueueOutcome, elapsed: Duration) {
        let m = &self.metrics;
        let labels = metrics::source(source);
        m.poll_completed.get_or_create(&labels).inc();
        m.events_seen.get_or_create(&labels).inc_by(o.events as u64);
        m.requests_throttled
            .get_or_create(&labels)
            .inc_by(o.stats.throttled);
        m.request_retries
            .get_or_create(&labels)
            .inc_by(o.stats.retries);
        m.rule_matches.get_or_create(&labels).inc_by(o.matches);
        m.queue_messages_received
            .get_or_create(&labels)
            .inc_by(o.messages as u64);
        m.queue_messages_poison
            .get_or_create(&labels)
            .inc_by(o.new_poison.len() as u64);
        m.events_malformed
            .get_or_create(&labels)
            .inc_by(o.new_poison.len() as u64);
        m.queue_messages_deleted
            .get_or_create(&labels)
            .inc_by(o.deleted as u64);
        m.queue_delete_failed
            .get_or_create(&labels)
            .inc_by(o.delete_failures.len() as u64);
        let real: Vec<_> = o
            .new_alerts
            .iter()
            .filter(|a| a.origin == Origin::Rule)
            .collect();
        m.alerts_recorded
            .get_or_create(&labels)
            .inc_by(real.len() as u64);
        let latency = m.queue_event_to_commit_seconds.get_or_create(&labels);
        for a in &real {
            latency.observe(o.received_ms.saturating_sub(a.event_time_ms).max(0) as f64 / 1000.0);
        }
        drop(latency);
        for (message_id, p) in &o.new_poison {
            tracing::warn!(
                event = "queue_message_poison",
                source = %source,
                message_id = %message_id,
                event_id = p.event_id.as_deref().unwrap_or(""),
                reason = %p.reason,
                "Skipped a queue message that is not a CloudTrail event; it stays in the queue for the dead-letter queue"
            );
        }
        for f in &o.delete_failures {
            tracing::warn!(
                event = "queue_delete_failed",
                source = %source,
                message_id = %f.message_id,
                code = %f.code,
                error = %f.message,
                "SQS did not delete a committed message; it will come again and count once"
            );
        }
        if o.messages > 0 {
            tracing::info!(
                event = "poll_completed",
                source = %source,
                messages = o.messages,
                events = o.events,
                poison = o.poison,
                matches = o.matches,
                new_alerts = o.new_alerts.len(),
                deleted = o.deleted,
                delete_failed = o.delete_failures.len(),
                elapsed_ms = elapsed.as_millis() as u64,
                "Received from the queue"
            );
        } else {
            tracing::debug!(event = "poll_completed", source = %source, elapsed_ms = elapsed.as_millis() as u64, "The queue's long poll returned nothing");
        }
    }

    /// Counts what a backstop poll (or sweep) found first: every new alert is one the queues
    /// missed (or had not delivered yet). An event from before the daemon started says
    /// nothing about the queue (it may predate it): counted, not held against the queue.
    pub(super) fn backstop_found(&self, i: usize, alerts: &[crate::state::StoredAlert]) {
        let sc = &self.sources[i].cfg;
        if !sc.backstop {
            return;
        }
        let missed: Vec<_> = alerts
            .iter()
            .filter(|a| a.origin == Origin::Rule && a.found_by != FoundBy::Queue)
            .collect();
        if missed.is_empty() {
            return;
        }
        self.metrics
            .queue_missed
            .get_or_create(&metrics::source(&sc.id))
            .inc_by(missed.len() as u64);
        for a in &missed {
            tracing::warn!(
                event = "queue_missed",
                source = %sc.id,
                event_id = %a.event_id,
                event_name = %a.event_name,
                "The backstop found a change the queue had not delivered"
            );
        }
        // eventTime has whole seconds: an event of the daemon's first second is recent.
        let recent = missed
            .iter()
            .filter(|a| a.event_time_ms >= self.started_ms - 1000)
            .count() as u64;
        if recent > 0 {
            for slot in self.sources.iter().filter(|s| s.cfg.kind.is_queue()) {
                slot.missed.fetch_add(recent, Ordering::AcqRel);
            }
        }
    }
}
