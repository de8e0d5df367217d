//! The delivery loop: the state's outbox rows, sent through their channels.
//!
//! A pass takes, for each channel, the rows due now ([`State::due_alerts`], at most
//! [`BATCH`]), sends each, and marks it delivered **only after** the channel accepted it. A
//! crash between the two resends the alert on the next start — with the same dedup key and
//! Message-ID — and never loses it.
//!
//! A failed attempt is recorded with [`State::mark_failed`] and a retry time from
//! [`Backoff::DELIVERY`] (exponential in the row's attempts, full jitter). Retryable errors are retried
//! forever unless `retry_max_attempts` says otherwise; permanent ones are given up after
//! `permanent_max_attempts`.
//!
//! After a retryable failure the channel is *down*: it is not sent to (a relay that is down
//! is not hammered once per pending alert) but **probed** with its side-effect-free check
//! ([`Notifier::check`]: SMTP connect/TLS/AUTH/NOOP/QUIT, SNS GetTopicAttributes) 1 s after
//! the failure, then at doubling intervals capped at `channel_probe_secs`
//! ([`Outbox::with_probe_interval`]). When a probe succeeds, every pending row of the channel
//! is due at once, in detection order ([`State::make_due`]), and the same pass sends them: a
//! channel that is back gets its alerts within one probe interval, never after the
//! exponential backoff of its oldest row, and new alerts never wait behind that backoff.
//!
//! A channel that keeps failing (three failures in a row, or an alert waiting more than ten
//! minutes after a failure) starts a *failure episode*: logged at ERROR, counted, and
//! reported once through the other channels as a synthetic "channel X is failing" alert;
//! the first delivery after that ends the episode with a recovery notice. Those notices go
//! through the state like the sources' notices ([`State::record_notice`], one outbox row per
//! other channel): delivered, retried and kept across restarts like any alert.
//!
//! Here: the outbox, its passes and its loop; [`deliver`]: one channel's due alerts and
//! their outcome; [`health`]: a channel's failure episode and the notices about it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::aws::retry::Backoff;
use crate::config::{ChannelConfig, DeliveryPolicy};
use crate::notify::notifier::{BuildError, Notifier};
use crate::state::Store;
use crate::telemetry::episode::Episode;
use crate::telemetry::metrics::Metrics;
use crate::time::{ms, Clock};

mod deliver;
mod health;

/// The most rows of one channel one pass sends.
pub const BATCH: usize = 50;

/// Consecutive failed attempts that make a channel "failing".
pub const FAILING_AFTER_FAILURES: u32 = 3;

/// How long an alert may wait, once the channel has failed, before the channel is "failing".
pub const FAILING_AFTER_WAIT: Duration = Duration::from_secs(10 * 60);

/// How often the loop looks for due rows when nothing wakes it.
pub const TICK: Duration = Duration::from_secs(1);

/// The longest the outbox sleeps with nothing pending (a safety net: new alerts wake it).
pub const IDLE_TICK: Duration = Duration::from_secs(60);

/// The first probe of a channel that is down comes this long after the failure; each failed
/// probe doubles the wait, up to the probe interval.
pub const FIRST_PROBE: Duration = Duration::from_secs(1);

/// How long a new alert waits for its analysis: the analysis' IAM budget and some margin.
pub const ANALYSIS_WAIT: Duration = Duration::from_secs(15);

/// A channel and when to give up on it.
#[derive(Debug)]
pub struct Channel {
    pub notifier: Notifier,
    pub policy: DeliveryPolicy,
}

/// Builds every configured channel (reads passwords and CA files; sends nothing).
///
/// # Errors
///
/// The first channel that cannot be built.
pub fn build_channels(
    configs: &[ChannelConfig],
    sdk: Option<&aws_config::SdkConfig>,
) -> Result<Vec<Channel>, BuildError> {
    configs
        .iter()
        .map(|c| {
            Ok(Channel {
                notifier: Notifier::build(c, sdk)?,
                policy: c.delivery,
            })
        })
        .collect()
}

/// Counters of one channel, for logs and `/metrics`; each is named like the log event that
/// bumps it.
#[derive(Debug, Default)]
pub struct ChannelCounters {
    /// `alert_delivered`
    pub delivered: AtomicU64,
    /// `alert_delivery_failed`: failed attempts, retried or not.
    pub failed: AtomicU64,
    /// `alert_delivery_abandoned`: rows given up on.
    pub abandoned: AtomicU64,
    /// `channel_failing`: failure episodes.
    pub failing_episodes: AtomicU64,
    /// Whether the channel is in a failure episode now.
    pub failing: AtomicBool,
    /// `channel_probe_failed`: probes of this channel, while down, that failed.
    pub probes_failed: AtomicU64,
}

/// What one pass (or a drain) did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub delivered: usize,
    /// Failed attempts (each retried later or given up).
    pub failed: usize,
    pub abandoned: usize,
    /// Channels whose due rows could not be read or marked.
    pub state_errors: usize,
    /// Channels in a failure episode after the pass.
    pub failing: Vec<String>,
}

impl PassReport {
    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.state_errors == 0
    }

    fn add(&mut self, other: PassReport) {
        self.delivered += other.delivered;
        self.failed += other.failed;
        self.abandoned += other.abandoned;
        self.state_errors += other.state_errors;
        self.failing = other.failing;
    }
}

#[derive(Debug, Default)]
struct Health {
    /// No attempt (send or probe) before this time (unix ms).
    resting_until_ms: i64,
    /// A retryable failure made the channel down: the next attempt is a probe.
    down: bool,
    /// Failed probes since the channel went down.
    failed_probes: u32,
    /// Failures in a row and the failing episode.
    episode: Episode,
}

/// The delivery loop of every channel.
pub struct Outbox {
    channels: Vec<Channel>,
    state: Store,
    clock: Arc<dyn Clock>,
    backoff: Backoff,
    health: Mutex<Vec<Health>>,
    counters: Vec<ChannelCounters>,
    /// How long a new alert is held back for its analysis (zero: not at all).
    analysis_wait: Duration,
    /// The longest wait between two probes of a channel that is down.
    probe_interval: Duration,
    /// Where each delivery attempt is counted (`rolewatch_alert_deliveries_total`).
    metrics: Arc<Metrics>,
    /// The `[[account]]`s, id → name: alerts name the account they happened in.
    accounts: std::collections::HashMap<String, Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a plain update or one SQLite statement (transactional),
    // so a panic elsewhere cannot leave the data half-changed.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Outbox {
    pub fn new(channels: Vec<Channel>, state: Store, clock: Arc<dyn Clock>) -> Outbox {
        let n = channels.len();
        Outbox {
            channels,
            state,
            clock,
            backoff: Backoff::DELIVERY,
            health: Mutex::new((0..n).map(|_| Health::default()).collect()),
            counters: (0..n).map(|_| ChannelCounters::default()).collect(),
            analysis_wait: Duration::ZERO,
            probe_interval: crate::config::defaults::CHANNEL_PROBE,
            metrics: Arc::new(Metrics::new()),
            accounts: std::collections::HashMap::new(),
        }
    }

    /// The `[[account]]`s (id → name) the alerts are named by.
    #[must_use]
    pub fn with_accounts(
        mut self,
        accounts: impl IntoIterator<Item = (String, Option<String>)>,
    ) -> Outbox {
        self.accounts = accounts.into_iter().collect();
        self
    }

    /// Counts the delivery attempts in `metrics` (the daemon's `/metrics`) instead of a
    /// registry of its own.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Outbox {
        self.metrics = metrics;
        self
    }

    /// Sets the longest wait between two probes of a channel that is down
    /// (`channel_probe_secs`).
    #[must_use]
    pub fn with_probe_interval(mut self, interval: Duration) -> Outbox {
        self.probe_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The wait before the next probe of a channel after `failed_probes` failed ones:
    /// [`FIRST_PROBE`] doubling, capped at the probe interval. No jitter: the wait is short
    /// and a probe sends nothing.
    fn probe_wait(&self, failed_probes: u32) -> Duration {
        FIRST_PROBE
            .saturating_mul(1u32 << failed_probes.min(20))
            .min(self.probe_interval)
    }

    /// Holds each new alert back until its analysis is recorded (the state's due alerts say
    /// which, [`crate::state::State::due_alerts`]), for at most `wait` after detection; after
    /// that it goes out without one. Every channel then shows the same analysis. The daemon
    /// uses [`ANALYSIS_WAIT`].
    #[must_use]
    pub fn with_analysis_wait(mut self, wait: Duration) -> Outbox {
        self.analysis_wait = wait;
        self
    }

    /// Replaces the retry backoff.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Outbox {
        self.backoff = backoff;
        self
    }

    /// The channels' names, in configuration order: every new alert gets one outbox row per
    /// name.
    pub fn channel_names(&self) -> Vec<String> {
        self.channels
            .iter()
            .map(|c| c.notifier.name().to_owned())
            .collect()
    }

    /// The counters of each channel, by name.
    pub fn counters(&self) -> impl Iterator<Item = (&str, &ChannelCounters)> {
        self.channels
            .iter()
            .map(|c| c.notifier.name())
            .zip(self.counters.iter())
    }

    /// One pass over every channel: send what is due, record the outcome, report channels
    /// that keep failing.
    pub async fn pass(&self) -> PassReport {
        // The channels side by side: a slow one (SNS, SMTP, a webhook) holds up neither the
        // others nor their alerts; each sends its own rows in order.
        let mut passes = Vec::with_capacity(self.channels.len());
        for i in 0..self.channels.len() {
            passes.push(self.channel_pass(i));
        }
        let mut report = PassReport::default();
        for r in futures_util::future::join_all(passes).await {
            report.add(r);
        }
        report.failing = self
            .channels
            .iter()
            .zip(&self.counters)
            .filter(|(_, c)| c.failing.load(Ordering::Relaxed))
            .map(|(ch, _)| ch.notifier.name().to_owned())
            .collect();
        report
    }

    /// One channel's part of a pass.
    async fn channel_pass(&self, i: usize) -> PassReport {
        let mut report = PassReport::default();
        self.deliver_channel(i, &mut report).await;
        self.update_health(i);
        report
    }

    /// Passes until nothing more is due or something failed (`rolewatch once`, and the
    /// start and the end of `run`; the runtime lets the analysis catch up first).
    pub async fn drain(&self) -> PassReport {
        let mut total = PassReport::default();
        loop {
            let r = self.pass().await;
            let more = r.ok() && r.delivered > 0;
            total.add(r);
            if !more {
                return total;
            }
        }
    }

    /// Delivers what an earlier run left pending (the start of `run` and `once`, alongside
    /// the first polls, never before them), and says so when there was some.
    pub async fn resend_pending(&self) -> PassReport {
        let resent = self.drain().await;
        if resent.delivered > 0 {
            tracing::warn!(
                alerts = resent.delivered,
                "Delivered alerts left pending by an earlier run"
            );
        }
        resent
    }

    /// Runs passes until `shutdown` is cancelled, each channel in a loop of its own (a slow
    /// channel holds up no other): at once when `wake` is notified (a poll committed new
    /// alerts, or their analysis is ready), when the next pending delivery is due, every
    /// [`TICK`] while something due waits (for its analysis, or a resting channel), and at
    /// least every [`IDLE_TICK`]. An idle daemon thus reads the state once a minute, not once
    /// a second. A pass under way finishes: its sends are bounded by the channels' timeouts,
    /// and the process' drain grace bounds the rest.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>, shutdown: CancellationToken) {
        // Started beside the first polls: what an earlier run left pending (and its
        // analysis) never holds them up.
        tokio::select! {
            _ = self.resend_pending() => {}
            () = shutdown.cancelled() => return,
        }
        // One wake per channel: `notify_one` keeps a permit for a loop that is mid-pass, so
        // no wake is lost.
        let wakes: Vec<Notify> = self.channels.iter().map(|_| Notify::new()).collect();
        let mut loops = Vec::with_capacity(wakes.len());
        for (i, w) in wakes.iter().enumerate() {
            loops.push(self.channel_loop(i, w, &shutdown));
        }
        let forward = async {
            loop {
                wake.notified().await;
                for w in &wakes {
                    w.notify_one();
                }
            }
        };
        tokio::select! {
            _ = futures_util::future::join_all(loops) => {}
            () = forward => {}
        }
    }

    /// One channel's loop in [`Outbox::run`].
    async fn channel_loop(&self, i: usize, wake: &Notify, shutdown: &CancellationToken) {
        loop {
            self.channel_pass(i).await;
            let pause = self.next_pause();
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = wake.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// How long the outbox may sleep after a pass: until the next pending delivery is due,
    /// between [`TICK`] and [`IDLE_TICK`].
    fn next_pause(&self) -> Duration {
        let now = self.clock.now_ms();
        // A channel that is down is probed when its rest ends, even with nothing due.
        let probe = lock(&self.health)
            .iter()
            .filter(|h| h.down)
            .map(|h| h.resting_until_ms)
            .min();
        let next = match self.state.with(|s| s.next_attempt_ms()) {
            Ok(t) => match (t, probe) {
                (Some(t), Some(p)) => Some(t.min(p)),
                (t, p) => t.or(p),
            },
            Err(_) => Some(now),
        };
        match next {
            Some(t) if t > now => {
                Duration::from_millis(u64::try_from(t - now).unwrap_or(0)).clamp(TICK, IDLE_TICK)
            }
            // Due but not sent: waiting for its analysis or for a resting channel.
            Some(_) => TICK,
            None => IDLE_TICK,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::notify::alert::Alert;
    use crate::notify::notifier::SendError;
    use crate::notify::synthetic;
    use crate::state::{DeliveryStatus, NewAlert, PollCommit, State};
    use crate::time::FixedClock;

    /// A channel that answers from a script (`Ok` when the script is empty) and keeps what it
    /// accepted.
    pub struct FakeNotifier {
        name: String,
        script: Mutex<VecDeque<Result<(), SendError>>>,
        /// Answers of the probe (`check`), `Ok` when empty; each probe is counted.
        probes: Mutex<VecDeque<Result<(), SendError>>>,
        pub probed: AtomicU64,
        pub accepted: Mutex<Vec<Alert>>,
    }

    impl FakeNotifier {
        pub fn name(&self) -> &str {
            &self.name
        }

        pub fn check(&self) -> Result<(), SendError> {
            self.probed.fetch_add(1, Ordering::Relaxed);
            lock(&self.probes).pop_front().unwrap_or(Ok(()))
        }

        pub async fn send(&self, alert: &Alert) -> Result<super::super::Delivered, SendError> {
            let next = lock(&self.script).pop_front().unwrap_or(Ok(()));
            next.map(|()| {
                lock(&self.accepted).push(alert.clone());
                super::super::Delivered::default()
            })
        }
    }

    fn fake(name: &str, script: Vec<Result<(), SendError>>, policy: DeliveryPolicy) -> Channel {
        fake_probed(name, script, vec![], policy)
    }

    fn fake_probed(
        name: &str,
        script: Vec<Result<(), SendError>>,
        probes: Vec<Result<(), SendError>>,
        policy: DeliveryPolicy,
    ) -> Channel {
        Channel {
            notifier: Notifier::Fake(FakeNotifier {
                name: name.to_owned(),
                script: Mutex::new(script.into()),
                probes: Mutex::new(probes.into()),
                probed: AtomicU64::new(0),
                accepted: Mutex::new(Vec::new()),
            }),
            policy,
        }
    }

    fn fake_of(o: &Outbox, i: usize) -> &FakeNotifier {
        match &o.channels[i].notifier {
            Notifier::Fake(f) => f,
            _ => unreachable!(),
        }
    }

    fn accepted(o: &Outbox, i: usize) -> Vec<Alert> {
        lock(&fake_of(o, i).accepted).clone()
    }

    fn probed(o: &Outbox, i: usize) -> u64 {
        fake_of(o, i).probed.load(Ordering::Relaxed)
    }

    struct Setup {
        _dir: tempfile::TempDir,
        outbox: Outbox,
        clock: Arc<FixedClock>,
        state: Store,
    }

    const T0: i64 = 1_700_000_000_000;

    fn setup(channels: Vec<Channel>, alerts: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("state.db"))
            .unwrap()
            .into_state();
        let state = Store::new(state);
        let names: Vec<String> = channels
            .iter()
            .map(|c| c.notifier.name().to_owned())
            .collect();
        let record = r#"{"eventName":"AttachRolePolicy"}"#;
        state
            .with(|s| {
                s.commit_poll(&PollCommit {
                    source_id: "src",
                    cursor_ms: T0,
                    now_ms: T0,
                    seen: vec![],
                    alerts: alerts
                        .iter()
                        .map(|id| NewAlert {
                            rule: "documented",
                            rules: vec!["documented"],
                            severity: "high",
                            origin: crate::state::Origin::Rule,
                            found_by: crate::state::FoundBy::Poll,
                            change_key: None,
                            dedup_key: None,
                            event_id: id,
                            event_name: "AttachRolePolicy",
                            event_time_ms: T0 - 60_000,
                            source_id: "src",
                            record,
                            channels: None,
                        })
                        .collect(),
                    channels: names.iter().map(String::as_str).collect(),
                    gaps: vec![],
                })
            })
            .unwrap();
        let clock = Arc::new(FixedClock::new(T0));
        let outbox = Outbox::new(channels, state.clone(), clock.clone());
        Setup {
            _dir: dir,
            outbox,
            clock,
            state,
        }
    }

    fn delivery(s: &Setup, alert_id: i64, channel: &str) -> crate::state::Delivery {
        s.state
            .with(|s| s.delivery(alert_id, channel))
            .unwrap()
            .unwrap()
    }

    fn down() -> Result<(), SendError> {
        Err(SendError::retryable("connection refused"))
    }

    #[tokio::test]
    async fn delivered_rows_are_never_sent_again() {
        let s = setup(
            vec![fake("a", vec![], DeliveryPolicy::default())],
            &["e1", "e2"],
        );
        let r = s.outbox.pass().await;
        assert_eq!(r.delivered, 2);
        assert!(r.ok());
        assert_eq!(delivery(&s, 1, "a").status, DeliveryStatus::Delivered);
        s.clock.set(T0 + 3_600_000);
        assert_eq!(s.outbox.drain().await.delivered, 0);
        assert_eq!(accepted(&s.outbox, 0).len(), 2);
    }

    #[tokio::test]
    async fn a_retryable_failure_rests_the_channel_then_retries() {
        let s = setup(
            vec![fake("a", vec![down()], DeliveryPolicy::default())],
            &["e1", "e2"],
        );
        let r = s.outbox.pass().await;
        assert_eq!((r.delivered, r.failed), (0, 1));
        let d = delivery(&s, 1, "a");
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.attempts, 1);
        // Full jitter: anywhere in [0, 2 s] after the failure.
        assert!(d.next_attempt_ms >= T0 && d.next_attempt_ms <= T0 + 2_000);
        assert_eq!(d.last_error.as_deref(), Some("connection refused"));
        // Resting until then: the second alert is not tried either (unless the draw was a
        // wait under a millisecond, one in 2,000, when the rest is already over).
        if d.next_attempt_ms > T0 {
            assert_eq!(s.outbox.pass().await, PassReport::default());
        }
        s.clock.set(T0 + 2_000);
        let r = s.outbox.drain().await;
        assert_eq!(r.delivered, 2);
        assert_eq!(delivery(&s, 1, "a").status, DeliveryStatus::Delivered);
        assert_eq!(accepted(&s.outbox, 0).len(), 2);
    }

    /// Issue 16: a 429's `Retry-After` is a floor for the row's next attempt and for the
    /// channel's rest (so the probe's "everything due now" cannot undercut it either).
    #[tokio::test]
    async fn a_retry_after_is_never_undercut() {
        let slow_down =
            || Err(SendError::retryable("HTTP 429").with_retry_after(Duration::from_secs(30)));
        let s = setup(
            vec![fake("a", vec![slow_down()], DeliveryPolicy::default())],
            &["e1"],
        );
        assert_eq!(s.outbox.pass().await.failed, 1);
        let d = delivery(&s, 1, "a");
        assert!(d.next_attempt_ms >= T0 + 30_000, "{}", d.next_attempt_ms);
        s.clock.set(T0 + 29_999);
        assert_eq!(s.outbox.pass().await, PassReport::default());
        assert_eq!(probed(&s.outbox, 0), 0, "no probe before the Retry-After");
        s.clock.set(T0 + 30_000);
        assert_eq!(s.outbox.drain().await.delivered, 1);
    }

    #[tokio::test]
    async fn permanent_failures_are_given_up_after_the_limit() {
        let policy = DeliveryPolicy {
            retry_max_attempts: None,
            permanent_max_attempts: 2,
        };
        let refused = || Err(SendError::permanent("550 no such user"));
        let s = setup(vec![fake("a", vec![refused(), refused()], policy)], &["e1"]);
        assert_eq!(s.outbox.pass().await.failed, 1);
        assert_eq!(delivery(&s, 1, "a").status, DeliveryStatus::Pending);
        s.clock.set(T0 + 10_000);
        let r = s.outbox.pass().await;
        assert_eq!((r.failed, r.abandoned), (1, 1));
        let d = delivery(&s, 1, "a");
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Failed, 2));
        s.clock.set(T0 + 3_600_000);
        assert_eq!(s.outbox.pass().await.delivered, 0);
    }

    #[tokio::test]
    async fn retryable_failures_can_be_bounded_too() {
        let policy = DeliveryPolicy {
            retry_max_attempts: Some(1),
            permanent_max_attempts: 5,
        };
        let s = setup(vec![fake("a", vec![down()], policy)], &["e1"]);
        assert_eq!(s.outbox.pass().await.abandoned, 1);
        assert_eq!(delivery(&s, 1, "a").status, DeliveryStatus::Failed);
    }

    #[tokio::test]
    async fn a_failing_channel_is_reported_once_through_the_others_then_recovers() {
        let s = setup(
            vec![
                fake(
                    "mail",
                    vec![down(), down(), down(), down()],
                    DeliveryPolicy::default(),
                ),
                fake("sns", vec![], DeliveryPolicy::default()),
            ],
            &["e1"],
        );
        for k in 0..3 {
            s.clock.set(T0 + k * 600_000);
            let r = s.outbox.pass().await;
            assert_eq!(r.failed, 1, "pass {k}");
            if k < 2 {
                assert!(r.failing.is_empty(), "pass {k}: {r:?}");
            } else {
                assert_eq!(r.failing, vec!["mail".to_owned()]);
            }
        }
        let sns = accepted(&s.outbox, 1);
        let notices: Vec<&Alert> = sns
            .iter()
            .filter(|a| a.rule == synthetic::FAILING_RULE)
            .collect();
        assert_eq!(notices.len(), 1);
        assert!(notices[0]
            .action
            .error_message
            .as_deref()
            .unwrap()
            .contains("connection refused"));
        // Still failing: no second notice.
        s.clock.set(T0 + 1_800_000);
        s.outbox.pass().await;
        assert_eq!(
            accepted(&s.outbox, 1)
                .iter()
                .filter(|a| a.rule == synthetic::FAILING_RULE)
                .count(),
            1
        );
        let c = &s.outbox.counters[0];
        assert_eq!(c.failing_episodes.load(Ordering::Relaxed), 1);
        // The script is exhausted: the mail channel works again.
        s.clock.set(T0 + 3_600_000);
        let r = s.outbox.pass().await;
        // The mail alert, and the recovery notice through sns: notices are outbox rows too.
        assert_eq!(r.delivered, 2);
        assert!(r.failing.is_empty());
        let sns = accepted(&s.outbox, 1);
        assert_eq!(
            sns.iter()
                .filter(|a| a.rule == synthetic::RECOVERED_RULE)
                .count(),
            1
        );
        // The real alert went through sns on the first pass, and the mail channel got it once.
        assert_eq!(sns.iter().filter(|a| a.rule == "documented").count(), 1);
        assert_eq!(accepted(&s.outbox, 0).len(), 1);
        assert_eq!(c.delivered.load(Ordering::Relaxed), 1);
        assert_eq!(c.failed.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn a_long_wait_after_a_failure_is_failing_too() {
        let s = setup(
            vec![
                fake("mail", vec![down()], DeliveryPolicy::default()),
                fake("sns", vec![], DeliveryPolicy::default()),
            ],
            &["e1"],
        );
        s.clock.set(T0 + 11 * 60_000);
        let r = s.outbox.pass().await;
        assert_eq!(r.failing, vec!["mail".to_owned()]);
    }

    /// Issue 18: a channel that is down is probed, not sent to: 1 s after the failure, then
    /// at doubling waits capped at the probe interval — never at the row's exponential
    /// backoff (which reaches minutes).
    #[tokio::test]
    async fn a_down_channel_is_probed_at_doubling_waits_capped_at_the_interval() {
        let s = setup(
            vec![fake_probed(
                "mail",
                vec![down()],
                (0..8).map(|_| down()).collect(),
                DeliveryPolicy::default(),
            )],
            &["e1"],
        );
        let outbox = s.outbox;
        let outbox = outbox.with_probe_interval(Duration::from_secs(15));
        assert_eq!(outbox.pass().await.failed, 1);
        assert_eq!(probed(&outbox, 0), 0);
        // Probes at +1, +3, +7, +15, then every 15 s: +30, +45.
        let mut t = 0;
        for (k, wait) in [1_000, 2_000, 4_000, 8_000, 15_000, 15_000]
            .iter()
            .enumerate()
        {
            s.clock.set(T0 + t + wait - 1);
            assert_eq!(outbox.next_pause(), TICK);
            outbox.pass().await;
            assert_eq!(probed(&outbox, 0), k as u64, "not before its time ({k})");
            t += wait;
            s.clock.set(T0 + t);
            let r = outbox.pass().await;
            assert_eq!(probed(&outbox, 0), k as u64 + 1, "probe {k} at +{t} ms");
            assert_eq!(r.delivered + r.failed, 0, "a failed probe sends nothing");
        }
        assert_eq!(accepted(&outbox, 0).len(), 0);
        assert_eq!(outbox.counters[0].probes_failed.load(Ordering::Relaxed), 6);
        // The failed probes count towards the failure episode.
        assert!(outbox.counters[0].failing.load(Ordering::Relaxed));
    }

    /// When the probe succeeds, every pending row is due at once — whatever its backoff —
    /// and goes out in detection order in the same pass, new alerts included.
    #[tokio::test]
    async fn a_successful_probe_makes_every_pending_row_due_at_once_in_order() {
        let s = setup(
            vec![fake_probed(
                "mail",
                vec![down(), down(), down()],
                vec![Ok(()), Ok(()), down()],
                DeliveryPolicy::default(),
            )],
            &["e1", "e2", "e3"],
        );
        // Three failures, with probes that pass but sends that fail: the rows' backoffs grow
        // (2 s, 4 s, 8 s ceilings), the channel does not wait for them.
        for k in 0..3 {
            s.clock.set(T0 + k * 1_000);
            let r = s.outbox.pass().await;
            assert_eq!(r.failed, 1, "pass {k}");
        }
        assert_eq!(delivery(&s, 1, "mail").attempts, 3);
        // A probe fails (+1 s), then the relay is back: the next probe (+2 s) succeeds.
        s.clock.set(T0 + 3_000);
        s.outbox.pass().await;
        assert_eq!(probed(&s.outbox, 0), 3);
        s.clock.set(T0 + 5_000);
        let r = s.outbox.pass().await;
        assert_eq!(probed(&s.outbox, 0), 4);
        assert_eq!(r.delivered, 3, "{r:?}");
        let ids: Vec<String> = accepted(&s.outbox, 0)
            .iter()
            .map(|a| a.event_id.clone())
            .collect();
        assert_eq!(ids, ["e1", "e2", "e3"]);
        assert_eq!(delivery(&s, 1, "mail").status, DeliveryStatus::Delivered);
        // Up again: the next failure starts from the first probe wait.
        assert_eq!(lock(&s.outbox.health)[0].failed_probes, 0);
        assert!(!lock(&s.outbox.health)[0].down);
    }

    /// With nothing due (the rows' backoffs far ahead), the loop still wakes for the probe.
    #[tokio::test]
    async fn the_loop_wakes_for_the_probe_of_a_down_channel() {
        let s = setup(
            vec![fake_probed(
                "mail",
                vec![down()],
                vec![down(), down(), down(), down(), down()],
                DeliveryPolicy::default(),
            )],
            &["e1"],
        );
        let outbox = s.outbox.with_probe_interval(Duration::from_secs(5));
        outbox.pass().await;
        // Push the row's next attempt an hour ahead: only the probe is due.
        s.state
            .with(|st| st.mark_failed(1, "mail", "down", Some(T0 + 3_600_000)))
            .unwrap();
        for _ in 0..4 {
            s.clock.set(T0 + 600_000 + 1);
            outbox.pass().await;
        }
        let rest = lock(&outbox.health)[0].resting_until_ms;
        s.clock.set(rest - 4_000);
        assert_eq!(outbox.next_pause(), Duration::from_secs(4));
    }
}
