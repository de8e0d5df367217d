//! `rolewatch run`: poll every source on its interval, commit, and deliver new alerts through
//! the configured channels (via the state's outbox, [`crate::notify::outbox`]), until SIGTERM
//! or SIGINT.
//!
//! Each source has its own task, so one source never polls twice at once and a slow source
//! does not hold up another; one more task runs the outbox, woken after each poll. Cancellation
//! has one path: a token every loop selects on.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SourceConfig, SourceKind};
use crate::engine::Engine;
use crate::notify::outbox::{self, Outbox};
use crate::source::Source;
use crate::state::{State, StateError};

use super::clock::Clock;
use super::poll::{poll_source, PollContext};

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

/// Where the state lives: the configured path, or the default place.
///
/// # Errors
///
/// When no default place can be worked out.
pub fn state_path(cfg: &Config) -> Result<PathBuf, StateError> {
    match &cfg.state.path {
        Some(p) => Ok(p.clone()),
        None => crate::state::default_path(),
    }
}

/// Opens the state, saying clearly when it is new.
///
/// # Errors
///
/// A corrupt, unreadable or too-new database: the error names the file and what to do.
pub fn open_state(cfg: &Config) -> anyhow::Result<(State, std::fs::File)> {
    let path = state_path(cfg)?;
    let opened = State::open(&path)?;
    // One rolewatch per state: a second would send the same pending alerts again.
    let lock_path = path.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open the lock file {}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another rolewatch is using the state {} (it holds {}): stop it first, or give this one its own [state] path",
            path.display(),
            lock_path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(anyhow::Error::new(e).context(format!("cannot lock {}", lock_path.display())))
        }
    }
    if opened.is_fresh() {
        tracing::warn!(
            path = %path.display(),
            lookback_secs = cfg.state.initial_lookback.as_secs(),
            "Started with a new, empty state: each source's first poll looks back only the initial lookback"
        );
    } else {
        tracing::info!(path = %path.display(), "Opened the state");
    }
    Ok((opened.into_state(), lock))
}

/// The running service: state, engine and sources, ready to poll.
pub struct Daemon {
    state: Arc<Mutex<State>>,
    /// Held for the daemon's life: the state's single-process lock.
    _lock: std::fs::File,
    engine: Arc<Engine>,
    sources: Vec<(SourceConfig, Arc<Source>)>,
    clock: Arc<dyn Clock>,
    initial_lookback: Duration,
    outbox: Arc<Outbox>,
    /// The configured channels' names: each new alert gets one outbox row per name.
    channel_names: Vec<String>,
    /// Wakes the outbox after a poll committed alerts.
    wake: Arc<tokio::sync::Notify>,
    /// Whether delivering what an earlier run left pending worked.
    start_ok: bool,
}

impl Daemon {
    /// Opens the state, loads AWS credentials, builds the sources and the channels, and
    /// delivers alerts an earlier run left pending.
    ///
    /// # Errors
    ///
    /// State (corrupt, unreadable), credentials, a channel's password or CA file.
    pub async fn start(cfg: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Daemon> {
        let (state, lock) = open_state(cfg)?;
        let state = Arc::new(Mutex::new(state));
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
                (
                    sc.clone(),
                    Arc::new(Source::new(sc, &sdk, names.clone(), patterns.clone())),
                )
            })
            .collect();
        let channels = outbox::build_channels(&cfg.channels, Some(&sdk))?;
        let intel = crate::intel::worker::for_daemon(cfg, &sdk, state.clone(), clock.clone());
        let outbox =
            Arc::new(Outbox::new(channels, state.clone(), clock.clone()).with_intel(intel));
        let channel_names = outbox.channel_names();
        let resent = outbox.drain().await;
        if resent.delivered > 0 {
            tracing::warn!(
                alerts = resent.delivered,
                "Delivered alerts left pending by an earlier run"
            );
        }
        Ok(Daemon {
            state,
            _lock: lock,
            engine,
            sources,
            clock,
            initial_lookback: cfg.state.initial_lookback,
            outbox,
            channel_names,
            wake: Arc::new(tokio::sync::Notify::new()),
            start_ok: resent.ok(),
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

    /// One poll of one source, logged; wakes the outbox. True when it worked.
    async fn poll(&self, sc: &SourceConfig, source: &Source, retention: Option<Duration>) -> bool {
        let channels: Vec<&str> = self.channel_names.iter().map(String::as_str).collect();
        let ctx = PollContext {
            engine: &self.engine,
            state: &self.state,
            clock: self.clock.as_ref(),
            channels: &channels,
            initial_lookback: self.initial_lookback,
            retention,
        };
        let started = tokio::time::Instant::now();
        let ok = match poll_source(source, sc, &ctx).await {
            Ok(o) => {
                tracing::info!(
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
                true
            }
            Err(e) => {
                tracing::error!(source = %sc.id, error = %e, "Poll failed; the next poll resumes from the stored cursor");
                false
            }
        };
        self.wake.notify_one();
        ok
    }

    /// One poll of every source, one after the other, then delivery of everything due
    /// (`rolewatch once`). True when every source was read and every channel accepted what
    /// it was given.
    pub async fn once(&self) -> bool {
        let mut all = self.start_ok;
        for (sc, source) in &self.sources {
            let retention = Self::retention(sc, source).await;
            all &= self.poll(sc, source, retention).await;
        }
        let report = self.outbox.drain().await;
        if !report.ok() {
            tracing::error!(
                delivered = report.delivered,
                failed = report.failed,
                "A channel failed; its alerts stay pending for the next run"
            );
        }
        all && report.ok()
    }

    /// Polls every source on its interval until `shutdown` is cancelled; each source has its
    /// own task, so one source never polls twice at once.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.outbox.clone().run(self.wake.clone(), shutdown.clone()));
        for i in 0..self.sources.len() {
            let (this, shutdown) = (self.clone(), shutdown.clone());
            tasks.spawn(async move {
                let (sc, source) = &this.sources[i];
                let retention = tokio::select! {
                    r = Self::retention(sc, source) => r,
                    () = shutdown.cancelled() => return,
                };
                loop {
                    tokio::select! {
                        _ = this.poll(sc, source, retention) => {}
                        () = shutdown.cancelled() => break,
                    }
                    tokio::select! {
                        () = tokio::time::sleep(sc.poll_interval) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "A poller task ended abnormally");
            }
        }
        tracing::info!("Stopped");
    }
}

/// Cancels `token` on SIGTERM or SIGINT.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::error!("Cannot install signal handlers");
                return;
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        token.cancel();
        // Bound the drain.
        tokio::time::sleep(Duration::from_secs(30)).await;
        tracing::error!("Did not stop within 30 s of the signal; exiting");
        std::process::exit(1);
    });
}
