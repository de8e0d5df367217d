//! Stopping: one cancellation path, one staged drain, one grace deadline.
//!
//! SIGTERM or SIGINT cancels the daemon's token ([`cancel_on_signals`]); the daemon then runs
//! [`drain`]: stop intake (the scheduler and the sweeps), let in-flight polls finish, let the
//! analysis catch up, stop the delivery loop and flush the outbox once more, stop the admin endpoint — every stage bounded
//! by the same deadline, `[daemon] shutdown_grace_secs` after the signal. Nothing here ends the
//! process: should the drain hang anyway (a blocked thread), the future [`cancel_on_signals`]
//! returns resolves ten seconds after the grace period, and the command (`cmd::run`) returns
//! exit status 1.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_cron_scheduler::JobScheduler;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::intel::iam::AwsIam;
use crate::intel::worker::Worker;
use crate::notify::outbox::Outbox;

/// How long after the grace period a drain that still hangs is given up.
pub const HARD_STOP_AFTER_GRACE: Duration = Duration::from_secs(10);

/// Cancels `token` on SIGTERM or SIGINT. The returned task finishes
/// [`HARD_STOP_AFTER_GRACE`] after the end of the grace period that follows the signal — the
/// caller's cue that the drain hangs — and never when no signal comes (or no handler could be
/// installed).
pub fn cancel_on_signals(token: CancellationToken, grace: Duration) -> JoinHandle<Duration> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::error!("Cannot install signal handlers");
                return std::future::pending().await;
            };
            tokio::select! {
                _ = term.recv() => tracing::info!(grace_secs = grace.as_secs(), "SIGTERM: stopping"),
                _ = int.recv() => tracing::info!(grace_secs = grace.as_secs(), "SIGINT: stopping"),
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                return std::future::pending().await;
            }
        }
        token.cancel();
        overdue(grace).await
    })
}

/// Waits out the grace period and the hard-stop margin; returns the whole wait.
async fn overdue(grace: Duration) -> Duration {
    let hard = grace + HARD_STOP_AFTER_GRACE;
    tokio::time::sleep(hard).await;
    hard
}

/// What the drain stops, in order.
pub struct Stages<'a> {
    /// Intake: no new ticks.
    pub scheduler: JobScheduler,
    /// Intake: sweeps under way stop at their next request, fixed-interval schedules stop
    /// ticking.
    pub sweeps: &'a CancellationToken,
    /// Polls in flight, allowed to finish.
    pub polls: &'a TaskTracker,
    /// The change analysis and its task: its loop stops with the daemon's token; what still
    /// waits is analysed before the last flush.
    pub analysis: (&'a Worker<AwsIam>, JoinHandle<()>),
    /// The outbox, flushed once more after its loop stopped.
    pub outbox: &'a Outbox,
    /// The outbox's delivery loop: its stop token and its task.
    pub outbox_loop: (CancellationToken, JoinHandle<()>),
    /// The admin endpoint's task (it stops on the daemon's own token).
    pub admin: Option<JoinHandle<()>>,
    /// The one deadline for every stage, from now.
    pub grace: Duration,
}

/// Runs the staged drain; each stage that overruns the deadline is logged
/// (`shutdown_grace_exceeded`) and abandoned — what it held stays in the state for the next
/// start.
pub async fn drain(stages: Stages<'_>) {
    let Stages {
        mut scheduler,
        sweeps,
        polls,
        analysis: (analysis, analysis_task),
        outbox,
        outbox_loop: (outbox_stop, outbox_task),
        admin,
        grace,
    } = stages;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let deadline = tokio::time::Instant::now() + grace;
    // 1. Intake.
    sweeps.cancel();
    if let Err(e) = scheduler.shutdown().await {
        tracing::warn!(error = %e, "The scheduler did not stop cleanly");
    }
    // 2. In-flight polls.
    polls.close();
    let in_flight = polls.len();
    if tokio::time::timeout_at(deadline, polls.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            event = "shutdown_grace_exceeded",
            polls = polls.len(),
            "Polls still running at the end of the grace period are abandoned; the next start resumes from the stored cursors"
        );
    }
    // 3. Analysis: its loop has stopped (the daemon's token); what waits is analysed, so the
    //    last flush carries it.
    let _ = tokio::time::timeout_at(deadline, analysis_task).await;
    let _ = tokio::time::timeout_at(deadline, async { while analysis.pass().await > 0 {} }).await;
    // 4. Delivery: the loop stops, then one last flush of everything due.
    outbox_stop.cancel();
    let _ = tokio::time::timeout_at(deadline, outbox_task).await;
    match tokio::time::timeout_at(deadline, outbox.drain()).await {
        Ok(r) if r.ok() => tracing::info!(
            polls_finished = in_flight,
            delivered = r.delivered,
            "Stopped: in-flight polls finished and the outbox is flushed"
        ),
        Ok(r) => tracing::warn!(
            delivered = r.delivered,
            failed = r.failed,
            "Stopped: some alerts could not be delivered; they stay pending for the next start"
        ),
        Err(_) => tracing::warn!(
            event = "shutdown_grace_exceeded",
            grace_secs = grace.as_secs(),
            "Stopped at the end of the grace period with alerts still pending; the next start delivers them"
        ),
    }
    // 5. The admin endpoint (already told to stop by the daemon's token).
    if let Some(admin) = admin {
        let _ = tokio::time::timeout(Duration::from_secs(1), admin).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_hard_stop_comes_ten_seconds_after_the_grace_period() {
        let start = tokio::time::Instant::now();
        let waited = overdue(Duration::from_secs(20)).await;
        assert_eq!(waited, Duration::from_secs(30));
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }
}
