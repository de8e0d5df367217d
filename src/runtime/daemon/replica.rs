//! Replicas on a shared state (`[state] backend = "dynamodb"`): the lease loop that keeps,
//! renews or takes this replica's lease every third of a lease, and what a change of standing
//! does — a new leader polls every source at once (catching up from the shared cursor), a
//! follower stops polling and sweeping; queues are read and alerts delivered either way.
//! SQLite has no lease: the daemon is `Sole` and this loop does not run.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{lock, Daemon};
use crate::state::Leadership;
use crate::telemetry::health::SourceHealth;

impl Daemon {
    /// Whether this replica polls and sweeps now.
    pub(super) fn leads(&self) -> bool {
        lock(&self.replica).polls()
    }

    /// This replica's standing.
    pub(super) fn standing(&self) -> Leadership {
        *lock(&self.replica)
    }

    /// Asks the state for the lease now and records the answer; true when this replica
    /// became the leader by it.
    pub(super) fn hold_lease(&self) -> bool {
        let now = self.clock.now_ms();
        let got = match self.state.with(|s| s.hold_lease(now)) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(event = "lease_failed", error = %e, "Cannot read or renew the lease; retrying at the next check");
                self.state.with(|s| s.leadership(now))
            }
        };
        self.set_standing(got)
    }

    /// Records `got`; true when it made this replica the leader.
    pub(super) fn set_standing(&self, got: Leadership) -> bool {
        let was = std::mem::replace(&mut *lock(&self.replica), got);
        let value = if got.polls() { 1.0 } else { 0.0 };
        self.metrics.replica_is_leader.set(value);
        if was.polls() == got.polls() {
            return false;
        }
        if got.polls() {
            tracing::info!(
                event = "replica_leader",
                standing = got.as_str(),
                "This replica leads: it polls and sweeps"
            );
            // Its sources start their health afresh: the time as a follower was not blindness.
            let now = self.clock.now_ms();
            for (slot, h) in self.sources.iter().zip(lock(&self.health).iter_mut()) {
                if !slot.cfg.kind.is_queue() {
                    let interval = h.interval_ms;
                    *h = SourceHealth::new(now);
                    h.interval_ms = interval;
                }
            }
            true
        } else {
            tracing::warn!(
                event = "replica_follower",
                "This replica is a follower: another one polls; it reads its queues and delivers"
            );
            false
        }
    }

    /// The lease loop: every third of a lease until `stop`; a replica that becomes the
    /// leader polls every source at once.
    pub(super) async fn lease_loop(
        self: Arc<Self>,
        lease_ms: i64,
        tracker: TaskTracker,
        stop: CancellationToken,
    ) {
        let every = Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(1000).max(100));
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
            if self.hold_lease() {
                for i in 0..self.sources.len() {
                    if !self.sources[i].cfg.kind.is_queue() {
                        self.tick(i, &tracker, false);
                    }
                }
            }
        }
    }
}
