//! `rolewatch run`: poll every source on its schedule, commit, and deliver new alerts through
//! the configured channels (via the state's outbox, [`crate::notify::outbox`]), until SIGTERM
//! or SIGINT; and `rolewatch once`.
//!
//! Scheduling: a cron `schedule` is a `tokio-cron-scheduler` job (wall-clock times), as are
//! the optional heartbeat and, under systemd, the watchdog ping — which therefore stops when
//! the scheduler stops; a fixed `poll_interval_secs` ticks on tokio's clock
//! ([`schedule::every`], tested under paused time). A tick spawns the poll on a task tracker;
//! a tick that finds the source's previous poll still running is skipped and counted
//! (`poll_skipped`), so one source never polls twice at once and a slow source does not hold
//! up another. Every source is also polled once right at the start.
//!
//! Watching the watcher: each poll outcome feeds [`super::health`]; a source that keeps
//! failing, or has not been read for too long, is reported once as "rolewatch cannot see"
//! (ERROR log and a notice recorded in the state, so the outbox delivers it through every
//! channel and a restart does not lose it), and its recovery likewise.
//!
//! Cancellation has one path: SIGTERM/SIGINT cancel a token; the scheduler stops, in-flight
//! polls finish, the outbox is flushed, all within `[daemon] shutdown_grace_secs`
//! ([`super::shutdown`]).
//!
//! Here: building the pipeline ([`Daemon::start`]), scheduling, `once`; [`passes`]: one poll or
//! sweep of one source and its counters; [`watch`]: blind/recovered reports, readiness and the
//! metrics text.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{AdminConfig, Config, DaemonConfig, Schedule, SourceConfig};
use crate::engine::Engine;
use crate::notify::outbox::{self, Outbox};
use crate::notify::synthetic::{self};
use crate::source::Source;
use crate::state::Store;
use crate::time::format_rfc3339_ms;

use crate::intel::iam::AwsIam;
use crate::intel::worker::Worker;
use crate::telemetry::health::{BlindPolicy, SourceHealth};
use crate::telemetry::metrics::{self, Metrics};
use crate::time::Clock;

mod passes;
mod queue;
mod replica;
mod schedule;
mod watch;

use schedule::Gate;

/// How often the blind check runs besides after each poll (it catches a poll that hangs).
const WATCH_TICK: Duration = Duration::from_secs(1);

/// After a failed poll of a source not yet reported blind, the next poll comes this soon.
pub const CONFIRM_PAUSE: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The critical sections are plain updates or one SQLite transaction.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One configured source and its scheduling bookkeeping.
struct Slot {
    cfg: SourceConfig,
    source: Arc<Source>,
    /// Held while a poll of this source runs.
    busy: Gate,
    /// How long the source keeps events, read before its first poll.
    retention: tokio::sync::OnceCell<Option<Duration>>,
    /// Unix ms of the last two scheduled ticks (for the interval of a cron schedule).
    ticks: Mutex<(Option<i64>, Option<i64>)>,
    /// Held while a reconciliation sweep of this source runs.
    sweeping: Gate,
    /// `sqs`: what the receive cycles remember.
    queue_memo: tokio::sync::Mutex<crate::runtime::queue::QueueMemo>,
    /// `sqs`: changes the backstop found since an event last came through this queue.
    missed: std::sync::atomic::AtomicU64,
}

/// What a daemon may take over from the one before it in the same process.
#[derive(Default)]
pub struct Reuse {
    /// The state, opened and locked.
    pub state: Option<Store>,
    /// The accounts' AWS configurations (their cached credentials).
    pub accounts: Option<Arc<super::build::AccountSdks>>,
}

/// The running service: state, engine and sources, ready to poll.
pub struct Daemon {
    state: Store,
    engine: Arc<Engine>,
    sources: Vec<Slot>,
    clock: Arc<dyn Clock>,
    initial_lookback: Duration,
    outbox: Arc<Outbox>,
    /// The configured channels' names: each new alert gets one outbox row per name.
    channel_names: Vec<String>,
    /// The channels with `accounts = [...]`, and those accounts.
    channel_accounts: Vec<(String, Vec<String>)>,
    /// The change analysis, a stage of its own between the state and the outbox.
    analysis: Arc<Worker<AwsIam>>,
    /// Wakes the outbox after a poll committed alerts, or their analysis is recorded.
    wake: Arc<tokio::sync::Notify>,
    /// Wakes the analysis after a poll committed alerts.
    analysis_wake: Arc<tokio::sync::Notify>,
    /// Cancelled when the drain starts: a sweep under way stops (its time is then not
    /// recorded, so the next start sweeps again).
    stop_sweeps: CancellationToken,
    settings: DaemonConfig,
    admin: AdminConfig,
    policy: BlindPolicy,
    health: Mutex<Vec<SourceHealth>>,
    metrics: Arc<Metrics>,
    /// When the daemon started (unix ms).
    started_ms: i64,
    /// Whether this replica polls (a shared state's lease; SQLite: always).
    replica: Mutex<crate::state::Leadership>,
    /// `[daemon] max_concurrent_polls`: permits for the polls and sweeps of every source and
    /// account together.
    polls_at_once: tokio::sync::Semaphore,
}

impl Daemon {
    /// Opens the state, loads AWS credentials, builds the sources and the channels, and
    /// delivers alerts an earlier run left pending.
    ///
    /// # Errors
    ///
    /// State (corrupt, unreadable), credentials, a channel's password or CA file.
    pub async fn start(cfg: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Daemon> {
        Daemon::start_with(cfg, clock, Reuse::default()).await
    }

    /// [`Daemon::start`], taking over what an earlier daemon of this process had: its state
    /// (still locked) and its accounts' credentials (`[organization]` restarts the daemon
    /// when the organization's accounts change).
    ///
    /// # Errors
    ///
    /// As [`Daemon::start`].
    pub async fn start_with(
        cfg: &Config,
        clock: Arc<dyn Clock>,
        reuse: Reuse,
    ) -> anyhow::Result<Daemon> {
        let state = match reuse.state {
            Some(s) => s,
            None => Store::open_locked(cfg)?,
        };
        // Pattern lint, at every start: what a rule misses or will never match.
        for (about, finding) in cfg.lint() {
            match finding.level {
                crate::rules::LintLevel::Warning => {
                    tracing::warn!(event = "rule_lint", %about, "{}", finding.message);
                }
                crate::rules::LintLevel::Note => {
                    tracing::info!(event = "rule_lint", %about, "{}", finding.message);
                }
            }
        }
        let built =
            super::build::pipeline_reusing(cfg, reuse.accounts.as_deref(), Some(clock.clone()))
                .await?;
        if !built.pinned_names {
            tracing::warn!("A rule does not pin $.eventName: CloudTrail sources read every IAM event (EventSource=iam.amazonaws.com)");
        }
        let engine = Arc::new(built.engine);
        let sdk = built.sdk;
        let sources = built
            .sources
            .into_iter()
            .map(|(sc, source)| Slot {
                cfg: sc,
                source: Arc::new(source),
                busy: Gate::default(),
                retention: tokio::sync::OnceCell::new(),
                ticks: Mutex::new((None, None)),
                sweeping: Gate::default(),
                queue_memo: tokio::sync::Mutex::default(),
                missed: std::sync::atomic::AtomicU64::new(0),
            })
            .collect::<Vec<_>>();
        let channels = outbox::build_channels(&cfg.channels, Some(&sdk))?;
        let metrics = Arc::new(Metrics::new());
        let analysis = crate::intel::worker::for_daemon(
            cfg,
            &sdk,
            &built.accounts,
            state.clone(),
            clock.clone(),
            metrics.clone(),
        );
        for slot in &sources {
            metrics.init_source(&slot.cfg.id);
            if slot.cfg.kind.is_queue() {
                metrics.init_queue(&slot.cfg.id);
            }
            if slot.cfg.backstop {
                metrics.init_backstop(&slot.cfg.id);
            }
        }
        let outbox = Arc::new(
            Outbox::new(channels, state.clone(), clock.clone())
                .with_metrics(metrics.clone())
                .with_analysis_wait(outbox::ANALYSIS_WAIT)
                .with_probe_interval(cfg.daemon.channel_probe)
                .with_accounts(cfg.accounts.iter().map(|a| (a.id.clone(), a.name.clone()))),
        );
        let channel_names = outbox.channel_names();
        let now = clock.now_ms();
        let health = sources
            .iter()
            .map(|slot| {
                let mut h = SourceHealth::new(now);
                if let crate::config::SourceKind::Sqs { wait_time, .. } = &slot.cfg.kind {
                    h.interval_ms = i64::try_from(wait_time.as_millis()).ok();
                } else if let Schedule::Every(d) = slot.cfg.schedule {
                    h.interval_ms = i64::try_from(d.as_millis()).ok();
                }
                h
            })
            .collect();
        Ok(Daemon {
            state,
            engine,
            sources,
            clock,
            initial_lookback: cfg.state.initial_lookback,
            outbox,
            channel_names,
            channel_accounts: cfg
                .channels
                .iter()
                .filter_map(|c| c.accounts.clone().map(|l| (c.name.clone(), l)))
                .collect(),
            analysis,
            wake: Arc::new(tokio::sync::Notify::new()),
            analysis_wake: Arc::new(tokio::sync::Notify::new()),
            stop_sweeps: CancellationToken::new(),
            settings: cfg.daemon.clone(),
            admin: cfg.admin.clone(),
            policy: BlindPolicy {
                failures: cfg.daemon.blind_after_failures,
                stale_after: cfg.daemon.blind_after,
            },
            health: Mutex::new(health),
            metrics,
            started_ms: now,
            replica: Mutex::new(crate::state::Leadership::Sole),
            polls_at_once: tokio::sync::Semaphore::new(cfg.daemon.max_concurrent_polls),
        })
    }

    /// The state this daemon writes (for the next daemon of this process).
    pub fn store(&self) -> Store {
        self.state.clone()
    }

    /// Records the notice that the accounts `dropped` are no longer watched, and logs it.
    ///
    /// One notice per account and drop, however often it is reported (by the listing that
    /// dropped it, and by every later start that finds its cursors in the state): the
    /// notice's eventID carries the account's last polled position, which stays put once
    /// the account is no longer polled.
    pub fn accounts_dropped(&self, dropped: &[crate::runtime::organization::Dropped]) {
        if !dropped.is_empty() {
            self.report_dropped(dropped, &self.last_polled_by_account());
        }
    }

    /// [`Daemon::accounts_dropped`] with each account's last polled position.
    fn report_dropped(
        &self,
        dropped: &[crate::runtime::organization::Dropped],
        last_polled: &std::collections::HashMap<String, i64>,
    ) {
        let now = self.clock.now_ms();
        for d in dropped {
            let label = match &d.name {
                Some(n) => format!("{} ({n})", d.id),
                None => d.id.clone(),
            };
            let last = last_polled.get(d.id.as_str()).copied();
            let n = synthetic::account_dropped(&d.id, &label, &d.why, last, now);
            tracing::warn!(event = "account_dropped", account = %d.id, "{}", n.summary);
            self.record_notice(&n);
        }
    }

    /// With `[organization]`, at the start of `run` and `once`: the accounts an earlier run
    /// watched (the state holds cursors of their sources) that this one does not — closed,
    /// suspended or filtered out while rolewatch was not running — reported as dropped
    /// (once each: [`Daemon::accounts_dropped`]). `inactive`: the listing's accounts that
    /// are not ACTIVE, with their state.
    pub fn report_unwatched(&self, inactive: &std::collections::BTreeMap<String, String>) {
        let watched: std::collections::HashSet<&str> = self
            .sources
            .iter()
            .filter_map(|s| s.cfg.account.as_deref())
            .collect();
        let last_polled = self.last_polled_by_account();
        let mut gone: Vec<crate::runtime::organization::Dropped> = last_polled
            .keys()
            .filter(|a| !watched.contains(a.as_str()))
            .cloned()
            .map(|id| crate::runtime::organization::Dropped {
                why: inactive.get(&id).map_or_else(
                    || "no longer in the organization, or no longer let in by the [organization] filters (found at start: an earlier run watched it)".to_owned(),
                    |state| format!("its state is {state}"),
                ),
                id,
                name: None,
            })
            .collect();
        gone.sort_by(|a, b| a.id.cmp(&b.id));
        self.report_dropped(&gone, &last_polled);
    }

    /// The latest polled position of each account's sources, from the state's cursors.
    fn last_polled_by_account(&self) -> std::collections::HashMap<String, i64> {
        let cursors = match self.state.with(|s| s.cursors()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "Cannot read the sources' cursors");
                return std::collections::HashMap::new();
            }
        };
        let mut out = std::collections::HashMap::new();
        for c in cursors {
            if let Some(a) = crate::config::accounts::account_of_source(&c.source_id) {
                let at = out.entry(a.to_owned()).or_insert(c.position_ms);
                *at = (*at).max(c.position_ms);
            }
        }
        out
    }

    /// Records a notice (through every channel).
    pub fn notice(&self, n: &synthetic::Notice) {
        self.record_notice(n);
    }

    /// Tells the later stages that a poll (or a notice) committed alerts.
    fn alerts_committed(&self) {
        self.analysis_wake.notify_one();
        self.wake.notify_one();
    }

    /// Analyses every alert that waits for it (each pass takes a batch).
    async fn analyse_waiting(&self) {
        while self.analysis.pass().await > 0 {}
    }

    /// One poll of every source, one after the other, then delivery of everything due
    /// (`rolewatch once`). True when every source was read and every channel accepted what
    /// it was given.
    pub async fn once(&self) -> bool {
        // A shared state: poll only while holding the lease (another replica may be running).
        let leased = self.state.with(|s| s.lease_ms()).is_some();
        if leased {
            self.hold_lease();
            if !self.leads() {
                tracing::warn!(
                    event = "replica_follower",
                    "Another replica holds the lease: `once` polls nothing and delivers what is due"
                );
            }
        }
        let all = self.once_inner().await;
        if leased {
            if let Err(e) = self.state.with(|s| s.release_lease()) {
                tracing::warn!(event = "lease_failed", error = %e, "Cannot release the lease; it runs out by itself");
            }
        }
        all
    }

    async fn once_inner(&self) -> bool {
        // What an earlier run left pending goes out while the sources are read: its analysis
        // never holds up the first poll.
        let polls = async {
            let mut all = true;
            for i in 0..self.sources.len() {
                all &= self.poll(i).await;
            }
            // Then the sweeps that are due (the sources' cursors are fresh now).
            for i in 0..self.sources.len() {
                if self.sweep_due(i) {
                    all &= self.sweep(i).await;
                }
            }
            all
        };
        let resend = async {
            self.analyse_waiting().await;
            self.outbox.resend_pending().await
        };
        let (all, resent) = tokio::join!(polls, resend);
        let all = all && resent.ok();
        self.analyse_waiting().await;
        let report = self.outbox.drain().await;
        // The daily baseline, after the alerts are out.
        self.analysis.baseline_if_due().await;
        if !report.ok() {
            tracing::error!(
                delivered = report.delivered,
                failed = report.failed,
                "A channel failed; its alerts stay pending for the next run"
            );
        }
        all && report.ok()
    }

    /// A scheduled tick of source `i`: starts a poll on `tracker`, or skips the tick (and
    /// counts it) while the previous poll of that source runs.
    fn tick(self: &Arc<Self>, i: usize, tracker: &TaskTracker, scheduled: bool) {
        let slot = &self.sources[i];
        if scheduled {
            let now = self.clock.now_ms();
            let mut ticks = lock(&slot.ticks);
            *ticks = (ticks.1, Some(now));
            if let (Some(a), Some(b), Schedule::Cron(_)) = (ticks.0, ticks.1, &slot.cfg.schedule) {
                if b > a {
                    lock(&self.health)[i].interval_ms = Some(b - a);
                }
            }
        }
        if !slot.busy.try_enter() {
            self.metrics
                .poll_skipped
                .get_or_create(&metrics::source(&slot.cfg.id))
                .inc();
            tracing::warn!(
                event = "poll_skipped",
                source = %slot.cfg.id,
                "Skipped a scheduled poll: the previous poll of this source is still running"
            );
            return;
        }
        let this = Arc::clone(self);
        let sweeps = tracker.clone();
        tracker.spawn(async move {
            loop {
                let polled = {
                    let _busy = this.sources[i].busy.held();
                    this.poll(i).await
                };
                // Right after a successful poll (the first one included) is when a due sweep
                // starts; after a failed one the source is not worth a sweep yet.
                if polled {
                    if !this.stop_sweeps.is_cancelled() {
                        this.sweep_if_due(i, &sweeps);
                    }
                    return;
                }
                // A failed poll is confirmed at once, not at the next tick: until the source
                // is reported blind, the next poll starts CONFIRM_PAUSE later (or a tick's
                // poll does, whichever comes first), so the notice comes within
                // N × (retry budget + one request) + (N − 1) × CONFIRM_PAUSE.
                if !this.confirming(i) {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep(CONFIRM_PAUSE) => {}
                    () = this.stop_sweeps.cancelled() => return,
                }
                if !this.sources[i].busy.try_enter() {
                    // A scheduled tick polls it already.
                    return;
                }
            }
        });
    }

    /// Whether source `i` failed but is not reported blind yet: its failure is confirmed by
    /// polling again at once rather than on its schedule.
    fn confirming(&self, i: usize) -> bool {
        lock(&self.health)[i].confirming(&self.policy)
    }

    /// Records the heartbeat notice: what rolewatch saw since it started.
    fn heartbeat(&self) {
        if !self.leads() {
            // The leader sends it: one heartbeat per deployment.
            return;
        }
        let total = |f: &prometheus_client::metrics::family::Family<
            metrics::Labels,
            prometheus_client::metrics::counter::Counter,
        >|
         -> u64 {
            self.sources
                .iter()
                .map(|s| f.get_or_create(&metrics::source(&s.cfg.id)).get())
                .sum()
        };
        let delivered: u64 = self
            .outbox
            .counters()
            .map(|(_, c)| c.delivered.load(Ordering::Relaxed))
            .sum();
        let health = lock(&self.health).clone();
        let last: Vec<String> = self
            .sources
            .iter()
            .zip(&health)
            .map(|(s, h)| {
                format!(
                    "{} {}",
                    s.cfg.id,
                    h.last_success_ms
                        .map_or_else(|| "never".to_owned(), format_rfc3339_ms)
                )
            })
            .collect();
        let summary = format!(
            "since the start: events seen {}, alerts recorded {}, deliveries {}; last successful poll: {}",
            total(&self.metrics.events_seen),
            total(&self.metrics.alerts_recorded),
            delivered,
            last.join(", ")
        );
        self.metrics.heartbeat_sent.inc();
        tracing::info!(event = "heartbeat_sent", "Heartbeat: {summary}");
        self.record_notice(&synthetic::heartbeat(summary, self.clock.now_ms()));
    }

    /// Polls every source on its schedule until `shutdown` is cancelled, then drains within
    /// the grace period.
    ///
    /// # Errors
    ///
    /// The scheduler cannot start.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        let outbox_stop = CancellationToken::new();
        // Siblings: the analysis reads new alerts from the state and wakes the outbox; the
        // outbox delivers what the state says is due. What an earlier run left pending gets
        // its analysis before the outbox starts, beside the first polls, never before them.
        let analysis_task = tokio::spawn(self.analysis.clone().run(
            self.analysis_wake.clone(),
            self.wake.clone(),
            shutdown.clone(),
        ));
        let outbox_task = {
            let (this, stop) = (self.clone(), outbox_stop.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = this.analyse_waiting() => {}
                    () = stop.cancelled() => return,
                }
                this.outbox.clone().run(this.wake.clone(), stop).await;
            })
        };
        // An admin endpoint that cannot bind does not stop the watching: silence is the
        // worst failure, a missing /metrics is visible to whoever scrapes it.
        let admin = match self.admin.listen {
            Some(addr) => match crate::admin::serve(addr, self.clone(), shutdown.clone()).await {
                Ok(task) => Some(task),
                Err(e) => {
                    tracing::error!(event = "admin_failed", error = %format!("{e:#}"), "The admin endpoint is not available; rolewatch keeps watching without it");
                    None
                }
            },
            None => None,
        };
        let sched = JobScheduler::new()
            .await
            .context("cannot create the scheduler")?;
        for i in 0..self.sources.len() {
            if self.sources[i].cfg.kind.is_queue() {
                tracing::info!(source = %self.sources[i].cfg.id, "Reading the queue by long polls");
                continue;
            }
            let sc = &self.sources[i].cfg;
            match &sc.schedule {
                Schedule::Cron(expr) => {
                    let (this, tracker) = (self.clone(), tracker.clone());
                    let run = move |_id,
                                    _sched|
                          -> std::pin::Pin<
                        Box<dyn std::future::Future<Output = ()> + Send>,
                    > {
                        this.tick(i, &tracker, true);
                        Box::pin(async {})
                    };
                    let job = Job::new_async(expr.as_str(), run).with_context(|| {
                        format!("cannot schedule source {} ({})", sc.id, sc.schedule)
                    })?;
                    sched
                        .add(job)
                        .await
                        .context("cannot add a job to the scheduler")?;
                }
                // On tokio's clock: stops with the intake at shutdown (`stop_sweeps`).
                Schedule::Every(d) => {
                    let (this, tracker) = (self.clone(), tracker.clone());
                    tokio::spawn(schedule::every(*d, self.stop_sweeps.clone(), move || {
                        this.tick(i, &tracker, true);
                    }));
                }
            }
            tracing::info!(source = %sc.id, schedule = %sc.schedule, "Scheduled");
        }
        if let Some(expr) = &self.settings.heartbeat_schedule {
            let this = self.clone();
            let job = Job::new_async(expr.as_str(), move |_id, _sched| {
                this.heartbeat();
                Box::pin(async {})
            })
            .with_context(|| format!("cannot schedule the heartbeat `{expr}`"))?;
            sched.add(job).await.context("cannot add the heartbeat")?;
        }
        if let Some(watchdog) = sd_notify::watchdog_enabled() {
            // Pinged from the scheduler itself: when it stops ticking, systemd notices.
            let every = (watchdog / 2).max(Duration::from_secs(1));
            let job = Job::new_repeated_async(every, |_id, _sched| {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                Box::pin(async {})
            })
            .context("cannot schedule the watchdog ping")?;
            sched
                .add(job)
                .await
                .context("cannot add the watchdog ping")?;
            tracing::info!(
                every_ms = every.as_millis() as u64,
                "systemd watchdog enabled"
            );
        }
        sched.start().await.context("cannot start the scheduler")?;
        // Replicas: take or follow the lease before the first polls, then keep it.
        let lease_stop = CancellationToken::new();
        let lease_task = self.state.with(|s| s.lease_ms()).map(|lease_ms| {
            self.hold_lease();
            tokio::spawn(
                self.clone()
                    .lease_loop(lease_ms, tracker.clone(), lease_stop.clone()),
            )
        });
        // The first poll of every source is now, not at the first tick; a queue is read
        // from now on.
        for i in 0..self.sources.len() {
            if self.sources[i].cfg.kind.is_queue() {
                self.run_queue(i, &tracker);
            } else {
                self.tick(i, &tracker, false);
            }
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        tracing::info!(sources = self.sources.len(), "Running");

        loop {
            tokio::select! {
                () = tokio::time::sleep(WATCH_TICK) => self.watch(),
                () = shutdown.cancelled() => break,
            }
        }

        super::shutdown::drain(super::shutdown::Stages {
            scheduler: sched,
            sweeps: &self.stop_sweeps,
            polls: &tracker,
            analysis: (&self.analysis, analysis_task),
            outbox: &self.outbox,
            outbox_loop: (outbox_stop, outbox_task),
            admin,
            grace: self.settings.shutdown_grace,
        })
        .await;
        if let Some(task) = lease_task {
            lease_stop.cancel();
            let _ = task.await;
            // Drained: a follower may take over at once.
            if let Err(e) = self.state.with(|s| s.release_lease()) {
                tracing::warn!(event = "lease_failed", error = %e, "Cannot release the lease; a follower takes over when it runs out");
            }
        }
        Ok(())
    }
}
