//! Fixed-interval schedules on tokio's clock, and the gate that keeps a source to one poll
//! at a time.
//!
//! A `poll_interval_secs` source ticks from [`every`], on `tokio::time` — so a test with
//! paused time drives the daemon's cadence without waiting for it. (Cron schedules stay with
//! `tokio-cron-scheduler`, which reads the wall clock: a cron expression names wall-clock
//! times.) A tick that finds the source's [`Gate`] taken is skipped, never queued.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Calls `tick` every `period`, the first time one period from now, until `stop` is
/// cancelled. Ticks missed while the runtime was stalled are skipped, not bunched.
pub async fn every(period: Duration, stop: CancellationToken, mut tick: impl FnMut()) {
    let mut ticks = interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = ticks.tick() => tick(),
        }
    }
}

/// One poll of a source at a time: [`Gate::try_enter`] takes it, the [`Held`] guard of the
/// poll releases it when the poll ends (however it ends).
#[derive(Debug, Default)]
pub struct Gate(AtomicBool);

impl Gate {
    /// Takes the gate; false when a poll holds it already.
    pub fn try_enter(&self) -> bool {
        self.0
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The guard of a poll that took the gate: dropping it releases the gate.
    pub fn held(&self) -> Held<'_> {
        Held(&self.0)
    }
}

/// Releases its [`Gate`] when dropped.
pub struct Held<'a>(&'a AtomicBool);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Mutex};

    /// The daemon's pattern under paused time: a tick every 2 s, a poll that takes 5 s. The
    /// poll runs at 2, 8, 14, 20 s; the ticks between are skipped, never doubled up.
    #[tokio::test(start_paused = true)]
    async fn a_slow_poll_skips_ticks_and_never_runs_twice() {
        let gate = Arc::new(Gate::default());
        let started = Arc::new(Mutex::new(Vec::new()));
        let skipped = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let t0 = Instant::now();
        let ticker = {
            let (gate, started, skipped, running) = (
                gate.clone(),
                started.clone(),
                skipped.clone(),
                running.clone(),
            );
            tokio::spawn(every(Duration::from_secs(2), stop.clone(), move || {
                if !gate.try_enter() {
                    skipped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let (gate, started, running) = (gate.clone(), started.clone(), running.clone());
                tokio::spawn(async move {
                    let _held = gate.held();
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    assert_eq!(now, 1, "two polls of one source at once");
                    started
                        .lock()
                        .unwrap()
                        .push(t0.elapsed().as_secs_f64().round() as u64);
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                });
            }))
        };
        tokio::time::sleep(Duration::from_millis(21_500)).await;
        stop.cancel();
        ticker.await.unwrap();
        assert_eq!(*started.lock().unwrap(), [2, 8, 14, 20]);
        assert_eq!(skipped.load(Ordering::Relaxed), 6, "4, 6, 10, 12, 16, 18");
        // Stopped: no tick after the cancel.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(started.lock().unwrap().len(), 4);
    }

    /// A day of 60 s ticks is 1,440 ticks, no drift; a stall of the runtime does not bunch
    /// the missed ticks.
    #[tokio::test(start_paused = true)]
    async fn ticks_keep_their_cadence_and_a_stall_does_not_bunch_them() {
        let n = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let counter = n.clone();
        let ticker = tokio::spawn(every(Duration::from_secs(60), stop.clone(), move || {
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        tokio::time::sleep(Duration::from_secs(86_400) + Duration::from_millis(500)).await;
        assert_eq!(n.load(Ordering::Relaxed), 1_440);
        // A stall of the runtime (the clock jumps 10 minutes without the ticker running):
        // one tick for the missed ones, then the cadence again.
        stop.cancel();
        ticker.await.unwrap();
        let n = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let counter = n.clone();
        let ticker = tokio::spawn(every(Duration::from_secs(60), stop.clone(), move || {
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(600)).await;
        tokio::task::yield_now().await;
        let after_stall = n.load(Ordering::Relaxed);
        assert_eq!(after_stall, 1, "the missed ticks are one tick");
        // Skip keeps the ticks on the original grid: 660 s and 720 s.
        tokio::time::sleep(Duration::from_secs(150)).await;
        assert_eq!(n.load(Ordering::Relaxed), 3, "then every 60 s again");
        stop.cancel();
        ticker.await.unwrap();
    }
}
