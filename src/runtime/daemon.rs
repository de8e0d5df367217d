//! `rolewatch run`: poll every source on its schedule, commit, and deliver new alerts through
//! the configured channels (via the state's outbox, [`crate::notify::outbox`]), until SIGTERM
//! or SIGINT; and `rolewatch once`.
//!
//! Scheduling is `tokio-cron-scheduler`: one job per source (its cron `schedule`, or a fixed
//! `poll_interval_secs`), plus the optional heartbeat and, under systemd, the watchdog ping —
//! which therefore stops when the scheduler stops. A tick spawns the poll on a task tracker;
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
//! polls finish, the outbox is flushed, all within `[daemon] shutdown_grace_secs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{AdminConfig, Config, DaemonConfig, Schedule, SourceConfig, SourceKind};
use crate::engine::Engine;
use crate::notify::outbox::{self, Outbox};
use crate::notify::synthetic::{self, Notice};
use crate::source::Source;
use crate::state::{FoundBy, NewAlert, Origin, Store};
use crate::time::format_rfc3339_ms;

use super::poll::{poll_source, sweep_due, sweep_source, PollContext, PollError, PollOutcome};
use crate::telemetry::health::{BlindPolicy, SourceHealth, Transition};
use crate::telemetry::metrics::{self, Metrics};
use crate::time::Clock;

/// Warns when IAM events are watched from a region other than us-east-1 (IAM is global; its
/// events are recorded in us-east-1 only).
pub fn warn_about_region(sc: &SourceConfig, pinned_names: bool) {
    if sc.kind == SourceKind::CloudTrail && sc.region != "us-east-1" {
        tracing::warn!(
            source = %sc.id,
            region = %sc.region,
            pinned_names,
            "IAM events are recorded in us-east-1 only: a CloudTrail source in another region will not see changes to an IAM role"
        );
    }
}

/// How often the blind check runs besides after each poll (it catches a poll that hangs).
const WATCH_TICK: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The critical sections are plain updates or one SQLite transaction.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One configured source and its scheduling bookkeeping.
struct Slot {
    cfg: SourceConfig,
    source: Arc<Source>,
    /// Set while a poll of this source runs.
    busy: AtomicBool,
    /// How long the source keeps events, read before its first poll.
    retention: tokio::sync::OnceCell<Option<Duration>>,
    /// Unix ms of the last two scheduled ticks (for the interval of a cron schedule).
    ticks: Mutex<(Option<i64>, Option<i64>)>,
    /// Set while a reconciliation sweep of this source runs.
    sweeping: AtomicBool,
}

/// Clears a slot's busy flag when the poll ends, however it ends.
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
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
    /// Wakes the outbox after a poll committed alerts.
    wake: Arc<tokio::sync::Notify>,
    /// Cancelled when the drain starts: a sweep under way stops (its time is then not
    /// recorded, so the next start sweeps again).
    stop_sweeps: CancellationToken,
    settings: DaemonConfig,
    admin: AdminConfig,
    policy: BlindPolicy,
    health: Mutex<Vec<SourceHealth>>,
    metrics: Metrics,
}

impl Daemon {
    /// Opens the state, loads AWS credentials, builds the sources and the channels, and
    /// delivers alerts an earlier run left pending.
    ///
    /// # Errors
    ///
    /// State (corrupt, unreadable), credentials, a channel's password or CA file.
    pub async fn start(cfg: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Daemon> {
        let state = Store::open_locked(cfg)?;
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
        let engine = Arc::new(Engine::new(cfg.rules.clone()));
        let names = engine
            .lookup_event_names()
            .map(|s| s.into_iter().collect::<Vec<_>>());
        if names.is_none() {
            tracing::warn!("A rule does not pin $.eventName: CloudTrail sources read every IAM event (EventSource=iam.amazonaws.com)");
        }
        let patterns: Vec<String> = engine
            .rules()
            .iter()
            .map(|r| r.pattern.as_str().to_owned())
            .collect();
        let region = cfg
            .sources
            .first()
            .map_or(crate::config::defaults::REGION, |s| s.region.as_str());
        let sdk = crate::aws::load(region).await?;
        let sources = cfg
            .sources
            .iter()
            .map(|sc| {
                warn_about_region(sc, names.is_some());
                Slot {
                    cfg: sc.clone(),
                    source: Arc::new(Source::new(sc, &sdk, names.clone(), patterns.clone())),
                    busy: AtomicBool::new(false),
                    retention: tokio::sync::OnceCell::new(),
                    ticks: Mutex::new((None, None)),
                    sweeping: AtomicBool::new(false),
                }
            })
            .collect::<Vec<_>>();
        let channels = outbox::build_channels(&cfg.channels, Some(&sdk))?;
        let intel = crate::intel::worker::for_daemon(cfg, &sdk, state.clone(), clock.clone());
        let outbox =
            Arc::new(Outbox::new(channels, state.clone(), clock.clone()).with_intel(intel));
        let channel_names = outbox.channel_names();
        let now = clock.now_ms();
        let health = sources
            .iter()
            .map(|slot| {
                let mut h = SourceHealth::new(now);
                if let Schedule::Every(d) = slot.cfg.schedule {
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
            wake: Arc::new(tokio::sync::Notify::new()),
            stop_sweeps: CancellationToken::new(),
            settings: cfg.daemon.clone(),
            admin: cfg.admin.clone(),
            policy: BlindPolicy {
                failures: cfg.daemon.blind_after_failures,
                stale_after: cfg.daemon.blind_after,
            },
            health: Mutex::new(health),
            metrics: Metrics::new(),
        })
    }

    async fn retention(sc: &SourceConfig, source: &Source) -> Option<Duration> {
        match source.retention().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(source = %sc.id, error = %e, "Cannot read how long the source keeps events; coverage gaps will not be detected");
                None
            }
        }
    }

    /// One poll of source `i`, logged, counted and fed to the health watch; wakes the outbox.
    /// True when it worked.
    async fn poll(&self, i: usize) -> bool {
        let slot = &self.sources[i];
        let sc = &slot.cfg;
        let retention = self.retention_of(i).await;
        lock(&self.health)[i].polling = true;
        let channels: Vec<&str> = self.channel_names.iter().map(String::as_str).collect();
        let ctx = self.poll_context(&channels, retention);
        let started = tokio::time::Instant::now();
        let result = poll_source(&slot.source, sc, &ctx).await;
        let now = self.clock.now_ms();
        let labels = metrics::source(&sc.id);
        let m = &self.metrics;
        let transition = match &result {
            Ok(o) => {
                tracing::info!(
                    event = "poll_completed",
                    source = %sc.id,
                    windows = o.windows,
                    requests = o.stats.requests,
                    throttled = o.stats.throttled,
                    retries = o.stats.retries,
                    events = o.stats.events,
                    matches = o.matches,
                    new_alerts = o.new_alerts.len(),
                    malformed = o.bad.len(),
                    gaps = o.gaps.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "Polled"
                );
                m.poll_completed.get_or_create(&labels).inc();
                m.events_seen.get_or_create(&labels).inc_by(o.stats.events);
                self.count_outcome(&labels, o);
                m.coverage_gap
                    .get_or_create(&labels)
                    .inc_by(o.gaps.len() as u64);
                lock(&self.health)[i].success(now)
            }
            Err(e) => {
                tracing::error!(event = "poll_failed", source = %sc.id, error = %e, "Poll failed; the next poll resumes from the stored cursor");
                m.poll_failed.get_or_create(&labels).inc();
                lock(&self.health)[i].failure(&e.to_string(), now, &self.policy)
            }
        };
        lock(&self.health)[i].polling = false;
        if let Some(t) = transition {
            self.report(i, t);
        }
        self.wake.notify_one();
        result.is_ok()
    }

    /// How long source `i` keeps events, read once, before its first poll or sweep.
    async fn retention_of(&self, i: usize) -> Option<Duration> {
        let slot = &self.sources[i];
        *slot
            .retention
            .get_or_init(|| Self::retention(&slot.cfg, &slot.source))
            .await
    }

    /// The counters a poll and a sweep share: retries, throttles, malformed events, matches
    /// and the alerts recorded (rolewatch's own notices not counted).
    fn count_outcome(&self, labels: &metrics::Labels, o: &PollOutcome) {
        let m = &self.metrics;
        m.requests_throttled
            .get_or_create(labels)
            .inc_by(o.stats.throttled);
        m.request_retries
            .get_or_create(labels)
            .inc_by(o.stats.retries);
        m.events_malformed
            .get_or_create(labels)
            .inc_by(o.bad.len() as u64);
        m.rule_matches.get_or_create(labels).inc_by(o.matches);
        let real = o
            .new_alerts
            .iter()
            .filter(|a| a.origin == Origin::Rule)
            .count();
        m.alerts_recorded.get_or_create(labels).inc_by(real as u64);
    }

    fn poll_context<'a>(
        &'a self,
        channels: &'a [&'a str],
        retention: Option<Duration>,
    ) -> PollContext<'a> {
        PollContext {
            engine: &self.engine,
            state: &self.state,
            clock: self.clock.as_ref(),
            channels,
            initial_lookback: self.initial_lookback,
            retention,
        }
    }

    /// Whether source `i`'s sweep is due now (a state that cannot be read: not due; the poll
    /// reports the state's trouble).
    fn sweep_due(&self, i: usize) -> bool {
        let sc = &self.sources[i].cfg;
        match sweep_due(sc, &self.state, self.clock.now_ms()) {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(event = "sweep_failed", source = %sc.id, error = %e, "Cannot read when the last sweep ran");
                false
            }
        }
    }

    /// One reconciliation sweep of source `i`, logged and counted; wakes the outbox. True when
    /// it worked (or was not needed).
    async fn sweep(&self, i: usize) -> bool {
        let slot = &self.sources[i];
        let sc = &slot.cfg;
        let retention = self.retention_of(i).await;
        let channels: Vec<&str> = self.channel_names.iter().map(String::as_str).collect();
        let ctx = self.poll_context(&channels, retention);
        let started = tokio::time::Instant::now();
        let result = sweep_source(&slot.source, sc, &ctx).await;
        let labels = metrics::source(&sc.id);
        let m = &self.metrics;
        let ok = match &result {
            Ok(o) => {
                tracing::info!(
                    event = "sweep_completed",
                    source = %sc.id,
                    windows = o.windows,
                    requests = o.stats.requests,
                    throttled = o.stats.throttled,
                    events = o.stats.events,
                    late_events = o.late_ms.len(),
                    new_alerts = o.new_alerts.len(),
                    malformed = o.bad.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "Swept the last {} h for late deliveries",
                    sc.sweep_lookback.as_secs() / 3600
                );
                m.sweep_completed.get_or_create(&labels).inc();
                self.count_outcome(&labels, o);
                m.sweep_requests
                    .get_or_create(&labels)
                    .inc_by(o.stats.requests);
                m.late_events
                    .get_or_create(&labels)
                    .inc_by(o.late_ms.len() as u64);
                let lateness = m.event_lateness_seconds.get_or_create(&labels);
                for &late in &o.late_ms {
                    #[allow(clippy::cast_precision_loss)]
                    lateness.observe(late as f64 / 1000.0);
                }
                true
            }
            Err(e) => {
                if let PollError::Source(se) = e {
                    m.requests_throttled
                        .get_or_create(&labels)
                        .inc_by(se.stats.throttled);
                    m.request_retries
                        .get_or_create(&labels)
                        .inc_by(se.stats.retries);
                }
                tracing::error!(event = "sweep_failed", source = %sc.id, error = %e, "Sweep failed; the next poll starts it again");
                m.sweep_failed.get_or_create(&labels).inc();
                false
            }
        };
        self.wake.notify_one();
        ok
    }

    /// Starts source `i`'s sweep on `tracker` when it is due and none runs; it stops early
    /// when the drain begins.
    fn sweep_if_due(self: &Arc<Self>, i: usize, tracker: &TaskTracker) {
        if !self.sweep_due(i) {
            return;
        }
        let slot = &self.sources[i];
        if slot
            .sweeping
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let this = Arc::clone(self);
        tracker.spawn(async move {
            let _busy = Busy(&this.sources[i].sweeping);
            tokio::select! {
                _ = this.sweep(i) => {}
                () = this.stop_sweeps.cancelled() => {
                    tracing::info!(source = %this.sources[i].cfg.id, "Sweep stopped for the shutdown; the next start sweeps again");
                }
            }
        });
    }

    /// Logs, counts and records (as a notice for every channel) a change of a source's sight.
    fn report(&self, i: usize, t: Transition) {
        let id = &self.sources[i].cfg.id;
        let now = self.clock.now_ms();
        let labels = metrics::source(id);
        let notice = match t {
            Transition::Blind {
                since_ms,
                failures,
                reason,
            } => {
                self.metrics.source_blind.get_or_create(&labels).inc();
                let n = synthetic::source_blind(id, since_ms, &reason, failures, now);
                tracing::error!(
                    event = "source_blind",
                    source = %id,
                    since = %format_rfc3339_ms(since_ms),
                    failures,
                    error = %reason,
                    "rolewatch cannot see: {}", n.summary
                );
                n
            }
            Transition::Recovered { since_ms } => {
                self.metrics.source_recovered.get_or_create(&labels).inc();
                let n = synthetic::source_recovered(id, since_ms, now);
                tracing::warn!(
                    event = "source_recovered",
                    source = %id,
                    blind_for_ms = now.saturating_sub(since_ms),
                    "rolewatch sees again: {}", n.summary
                );
                n
            }
        };
        self.record_notice(&notice);
    }

    /// Records a notice in the state with one outbox row per channel, and wakes the outbox.
    fn record_notice(&self, n: &Notice) {
        let now = self.clock.now_ms();
        let channels: Vec<&str> = self.channel_names.iter().map(String::as_str).collect();
        let alert = NewAlert {
            rule: n.rule,
            rules: vec![n.rule],
            severity: n.severity,
            origin: Origin::Notice,
            found_by: FoundBy::Notice,
            change_key: None,
            dedup_key: None,
            event_id: &n.event_id,
            event_name: n.event_name,
            event_time_ms: now,
            source_id: Notice::SOURCE,
            record: &n.record,
            channels: None,
        };
        if let Err(e) = self.state.with(|s| s.record_notice(&alert, &channels, now)) {
            tracing::error!(
                event = "notice_not_recorded",
                rule = n.rule,
                error = %e,
                "Cannot record a notice in the state, so it cannot be sent: {}", n.summary
            );
        }
        self.wake.notify_one();
    }

    /// Applies the blind rules to every source at the current time (a poll may hang).
    fn watch(&self) {
        let now = self.clock.now_ms();
        let transitions: Vec<(usize, Transition)> = {
            let mut health = lock(&self.health);
            health
                .iter_mut()
                .enumerate()
                .filter_map(|(i, h)| h.check(now, &self.policy).map(|t| (i, t)))
                .collect()
        };
        for (i, t) in transitions {
            self.report(i, t);
        }
    }

    /// One poll of every source, one after the other, then delivery of everything due
    /// (`rolewatch once`). True when every source was read and every channel accepted what
    /// it was given.
    pub async fn once(&self) -> bool {
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
        let (all, resent) = tokio::join!(polls, self.outbox.resend_pending());
        let all = all && resent.ok();
        let report = self.outbox.drain().await;
        // The daily baseline, after the alerts are out.
        self.outbox.baseline_if_due().await;
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
        if slot
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
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
            let polled = {
                let _busy = Busy(&this.sources[i].busy);
                this.poll(i).await
            };
            // Right after a successful poll (the first one included) is when a due sweep
            // starts; after a failed one the source is not worth a sweep yet.
            if polled && !this.stop_sweeps.is_cancelled() {
                this.sweep_if_due(i, &sweeps);
            }
        });
    }

    /// Records the heartbeat notice: what rolewatch saw since it started.
    fn heartbeat(&self) {
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
        let outbox_task = tokio::spawn(
            self.outbox
                .clone()
                .run(self.wake.clone(), outbox_stop.clone()),
        );
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
            let (this, tracker) = (self.clone(), tracker.clone());
            let run = move |_id, _sched| -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
                this.tick(i, &tracker, true);
                Box::pin(async {})
            };
            let sc = &self.sources[i].cfg;
            let job = match &sc.schedule {
                Schedule::Cron(expr) => Job::new_async(expr.as_str(), run),
                Schedule::Every(d) => Job::new_repeated_async(*d, run),
            }
            .with_context(|| format!("cannot schedule source {} ({})", sc.id, sc.schedule))?;
            sched
                .add(job)
                .await
                .context("cannot add a job to the scheduler")?;
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
        // The first poll of every source is now, not at the first tick.
        for i in 0..self.sources.len() {
            self.tick(i, &tracker, false);
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
            outbox: &self.outbox,
            outbox_loop: (outbox_stop, outbox_task),
            admin,
            grace: self.settings.shutdown_grace,
        })
        .await;
        Ok(())
    }

    /// Whether every source's last poll is fresh, with the reason per source that is not.
    pub fn readiness(&self) -> (bool, serde_json::Value) {
        let now = self.clock.now_ms();
        let health = lock(&self.health).clone();
        let mut ready = true;
        let mut sources = serde_json::Map::new();
        for (slot, h) in self.sources.iter().zip(&health) {
            let why = h.not_ready(now);
            ready &= why.is_none();
            sources.insert(
                slot.cfg.id.clone(),
                serde_json::json!({
                    "ready": why.is_none(),
                    "reason": why,
                    "last_success": h.last_success_ms.map(format_rfc3339_ms),
                    "consecutive_failures": h.consecutive_failures,
                    "blind": h.blind_since_ms.is_some(),
                }),
            );
        }
        (
            ready,
            serde_json::json!({ "ready": ready, "state": "loaded", "sources": sources }),
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
                .set(if h.blind_since_ms.is_some() { 1.0 } else { 0.0 });
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
            for (outcome, n) in [
                ("delivered", c.delivered.load(Ordering::Relaxed)),
                ("failed", c.failed.load(Ordering::Relaxed)),
                ("abandoned", c.abandoned.load(Ordering::Relaxed)),
            ] {
                Metrics::mirror(
                    &m.alert_deliveries,
                    &vec![
                        ("channel".to_owned(), name.to_owned()),
                        ("outcome".to_owned(), outcome.to_owned()),
                    ],
                    n,
                );
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
