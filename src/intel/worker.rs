//! The analysis worker, a stage of its own that the runtime starts beside the polls and the
//! outbox: it analyses every new alert it finds in the state (all IAM calls of one alert
//! bounded by the analyzer's budget), records the analysis with the alert, and wakes the
//! outbox; and it takes the baseline of the vendor's role at start and daily.
//!
//! The analysis is recorded once, in the state, rather than built by each channel: every
//! channel shows the same analysis, a resend after a crash shows it again without new IAM
//! calls, and a slow IAM delays no poll. The state's due alerts hold a new alert back until it
//! has its analysis, for at most the outbox's analysis wait.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::analysis::{Analyzer, Before, Within, TIMEOUT_PREFIX};
use super::baseline::{self, Baseline};
use super::iam::IamReader;
use super::known::LastKnown;
use super::memo::Memo;
use crate::state::{LastKnownRow, Store, StoredAlert};
use crate::telemetry::events::{AlertAnalysed, BaselineFailed, BaselineTaken};
use crate::telemetry::metrics::Metrics;
use crate::time::Clock;

/// How often a baseline is taken.
pub const BASELINE_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// The budget of the rest of a pass once one analysis timed out.
const SHORT_BUDGET: Duration = Duration::from_secs(1);

/// How long after a failed baseline the next is tried.
pub const BASELINE_RETRY: Duration = Duration::from_secs(5 * 60);

/// The longest the worker sleeps without being woken: the daily baseline is at most this
/// late.
const IDLE_TICK: Duration = Duration::from_secs(60);

/// The most alerts one pass analyses.
const BATCH: usize = 20;

/// IAM calls in flight at once while a pass reads what its batch needs (the IAM client's
/// rate limit still spaces them).
const PREFETCH: usize = 8;

/// The worker of the daemon: the real IAM, the configured vendor, the default budget.
///
/// `accounts`: each `[[account]]` with its AWS configuration; an alert of a per-account source
/// (or, from a central log group or queue, of a record whose `recipientAccountId` is one of
/// them) is analysed with IAM inside that account, and each account has its own baseline and last
/// known state of the role (keyed `<role>@<account>`).
pub fn for_daemon(
    cfg: &crate::config::Config,
    sdk: &aws_config::SdkConfig,
    accounts: &[(
        crate::config::AccountConfig,
        Option<aws_credential_types::provider::SharedCredentialsProvider>,
    )],
    state: Store,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> Arc<Worker<super::iam::AwsIam>> {
    let iam =
        super::iam::AwsIam::with_accounts(sdk, accounts.iter().map(|(a, s)| (a.id.as_str(), s)));
    Arc::new(
        Worker::new(
            Analyzer {
                iam,
                vendor: cfg.vendor.clone(),
                budget: super::analysis::DEFAULT_BUDGET,
                expect: cfg.expect.clone(),
            },
            state,
            clock,
        )
        .with_metrics(metrics)
        .with_accounts(accounts.iter().map(|(a, _)| a.id.clone()).collect()),
    )
}

/// rolewatch's own notices (origin `notice`): nothing to analyse.
#[must_use]
pub fn is_own_notice(stored: &StoredAlert) -> bool {
    stored.origin == crate::state::Origin::Notice
}

/// Analyses alerts and keeps the baseline.
pub struct Worker<R> {
    pub analyzer: Analyzer<R>,
    state: Store,
    clock: Arc<dyn Clock>,
    /// After a failed baseline, none is tried before this time (unix ms).
    baseline_retry_ms: std::sync::atomic::AtomicI64,
    /// Where the worker's events count (a private registry when none is given).
    metrics: Arc<Metrics>,
    /// The `[[account]]`s (ids) whose IAM the reader reaches: each has its own baseline.
    accounts: Vec<String>,
}

impl<R: IamReader> Worker<R> {
    pub fn new(analyzer: Analyzer<R>, state: Store, clock: Arc<dyn Clock>) -> Self {
        Worker {
            analyzer,
            state,
            clock,
            baseline_retry_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
            metrics: Arc::new(Metrics::new()),
            accounts: Vec::new(),
        }
    }

    /// The `[[account]]`s (ids) to keep a baseline of, each with IAM inside the account.
    #[must_use]
    pub fn with_accounts(mut self, accounts: Vec<String>) -> Self {
        self.accounts = accounts;
        self
    }

    /// The key of the role's baseline and last known state: the role name, or
    /// `<role>@<account>` inside an `[[account]]`.
    fn role_key(&self, account: Option<&str>) -> String {
        let role = &self.analyzer.vendor.role_name;
        match account {
            Some(a) => crate::config::accounts::source_id(role, a),
            None => role.clone(),
        }
    }

    /// The analyzer inside `account` (its own IAM reader), if the reader reaches it.
    fn analyzer_in(&self, account: &str) -> Option<Analyzer<R>> {
        Some(Analyzer {
            iam: self.analyzer.iam.for_account(account)?,
            vendor: self.analyzer.vendor.clone(),
            budget: self.analyzer.budget,
            expect: self.analyzer.expect.clone(),
        })
    }

    /// Counts the worker's events (`alert_analysed`, `baseline_taken`, `baseline_failed`)
    /// into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The newest baseline in the state.
    pub fn latest_baseline(&self) -> Option<Baseline> {
        self.latest_baseline_of(&self.analyzer.vendor.role_name)
    }

    /// The newest baseline under `key` ([`Self::role_key`]).
    fn latest_baseline_of(&self, key: &str) -> Option<Baseline> {
        let row = self.state.with(|s| s.latest_baseline(key));
        match row {
            Ok(Some((_, json))) => serde_json::from_str(&json).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read the baseline");
                None
            }
        }
    }

    /// The last known state of the role in the state.
    pub fn last_known(&self) -> Option<LastKnown> {
        self.last_known_of(&self.analyzer.vendor.role_name)
    }

    /// The last known state under `key` ([`Self::role_key`]).
    fn last_known_of(&self, key: &str) -> Option<LastKnown> {
        let row = self.state.with(|s| s.last_known(key));
        match row {
            Ok(Some(row)) => match serde_json::from_str(&row.snapshot) {
                Ok(role) => Some(LastKnown {
                    role: Baseline {
                        taken_ms: row.as_of_ms,
                        ..role
                    },
                    from_event: row.from_event,
                    incomplete: row.incomplete,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot read the last known state of the role");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read the last known state of the role");
                None
            }
        }
    }

    /// Takes a baseline now (bounded by the analyzer's budget) and records it.
    ///
    /// # Errors
    ///
    /// Why it could not be taken or recorded, as a sentence.
    pub async fn take_baseline(&self) -> Result<Baseline, String> {
        self.take_baseline_in(None).await
    }

    /// [`Self::take_baseline`] inside `account` (with its IAM), recorded under
    /// [`Self::role_key`].
    async fn take_baseline_in(&self, account: Option<&str>) -> Result<Baseline, String> {
        let now = self.clock.now_ms();
        let member = match account {
            Some(a) => Some(
                self.analyzer_in(a)
                    .ok_or_else(|| format!("no IAM client for account {a}"))?,
            ),
            None => None,
        };
        let analyzer = member.as_ref().unwrap_or(&self.analyzer);
        let key = self.role_key(account);
        let b = tokio::time::timeout(
            self.analyzer.budget,
            baseline::snapshot(&analyzer.iam, &self.analyzer.vendor, now),
        )
        .await
        .map_err(|_| {
            format!(
                "IAM did not answer within {} s",
                self.analyzer.budget.as_secs()
            )
        })?
        .map_err(|e| e.to_string())?;
        let json = serde_json::to_string(&b).map_err(|e| e.to_string())?;
        self.state
            .with(|s| s.put_baseline(&key, b.taken_ms, &json))
            .map_err(|e| e.to_string())?;
        BaselineTaken {
            role: &key,
            attached: b.attached.len(),
            inline: b.inline.len(),
            problems: b.problems.len(),
        }
        .emit(&self.metrics);
        Ok(b)
    }

    /// Takes a baseline when there is none or the newest is older than [`BASELINE_EVERY`],
    /// and only when no alert waits for its analysis (a change not yet analysed must be
    /// compared with the baseline from before it).
    /// After a failure, the next try waits [`BASELINE_RETRY`]: IAM that is down or denied
    /// is not asked again on every wake-up.
    pub async fn baseline_if_due(&self) {
        let now = self.clock.now_ms();
        if now
            < self
                .baseline_retry_ms
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let waiting = self
            .state
            .with(|s| s.unanalysed_alerts(1))
            .map(|v| !v.is_empty())
            .unwrap_or(true);
        if waiting {
            return;
        }
        // Without `[[account]]`: the one role of rolewatch's credentials; with them, the role
        // in each account, one failing account not keeping the others from theirs.
        let accounts: Vec<Option<&str>> = if self.accounts.is_empty() {
            vec![None]
        } else {
            self.accounts.iter().map(|a| Some(a.as_str())).collect()
        };
        for account in accounts {
            let due = self
                .latest_baseline_of(&self.role_key(account))
                .is_none_or(|b| {
                    now.saturating_sub(b.taken_ms)
                        >= i64::try_from(BASELINE_EVERY.as_millis()).unwrap_or(i64::MAX)
                });
            if !due {
                continue;
            }
            if let Err(e) = self.take_baseline_in(account).await {
                let e = match account {
                    Some(a) => format!("account {a}: {e}"),
                    None => e,
                };
                let retry = i64::try_from(BASELINE_RETRY.as_millis()).unwrap_or(i64::MAX);
                self.baseline_retry_ms.store(
                    self.clock.now_ms().saturating_add(retry),
                    std::sync::atomic::Ordering::Relaxed,
                );
                BaselineFailed {
                    error: &e,
                    retry_in_secs: BASELINE_RETRY.as_secs(),
                }
                .emit(&self.metrics);
            }
        }
    }

    /// Analyses the alerts that wait for it; returns how many were analysed.
    pub async fn pass(&self) -> usize {
        let due = match self.state.with(|s| s.unanalysed_alerts(BATCH)) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "Cannot read the alerts to analyse");
                return 0;
            }
        };
        // Per account (the role key), in the order the state hands them out (oldest first):
        // each change is judged against the state the ones before it in the same account
        // left; IAM that fails in one account does not cut the others' analysis short.
        let mut groups: Vec<(String, Option<&str>, Vec<&StoredAlert>)> = Vec::new();
        for stored in due.iter().filter(|s| !is_own_notice(s)) {
            // A per-account source's account; else (a central log group or queue: an
            // organization trail) the account that recorded the event, from the record.
            let member = crate::config::accounts::account_of_source(&stored.source_id)
                .map(str::to_owned)
                .or_else(|| recipient_account(&stored.record))
                .filter(|a| self.accounts.iter().any(|m| m == a));
            let member = member.and_then(|a| self.accounts.iter().find(|m| **m == a));
            let member = member.map(String::as_str);
            let key = self.role_key(member);
            match groups.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, _, alerts)) => alerts.push(stored),
                None => groups.push((key, member, vec![stored])),
            }
        }
        let mut n = 0;
        for (key, member, alerts) in groups {
            let own = member.and_then(|a| self.analyzer_in(a));
            n += self
                .pass_in(&key, own.as_ref().unwrap_or(&self.analyzer), &alerts)
                .await;
        }
        n
    }

    /// Analyses `alerts` of one account (the role key `key`) with `base`, its IAM.
    async fn pass_in(&self, key: &str, base: &Analyzer<R>, alerts: &[&StoredAlert]) -> usize {
        let baseline = self.latest_baseline_of(key);
        let mut known = self.last_known_of(key);
        let mut budget = base.budget;
        let mut offline: Option<String> = None;
        // One pass's IAM answers: what the batch needs is asked at once (`PREFETCH`
        // alerts' calls at a time), with the role as it is now, read once for the pass
        // (not once per alert of a burst); the analyses below, in order, find it answered.
        let analyzer = base.over(Memo::new(&base.iam));
        let read = baseline::snapshot(&analyzer.iam, &analyzer.vendor, self.clock.now_ms());
        let warm = async {
            for chunk in alerts.chunks(PREFETCH) {
                let mut calls = Vec::with_capacity(chunk.len());
                for s in chunk {
                    let before = Before {
                        last_known: known.as_ref(),
                        baseline: None,
                    };
                    calls.push(analyzer.prefetch(s, before));
                }
                futures_util::future::join_all(calls).await;
            }
        };
        let (now, _) = tokio::join!(
            tokio::time::timeout(budget, read),
            tokio::time::timeout(budget, warm)
        );
        let current = match now {
            Ok(now) => Some(now),
            Err(_) => {
                offline = Some(format!(
                    "{TIMEOUT_PREFIX} {} s (reading the role for this batch)",
                    budget.as_secs_f64()
                ));
                budget = budget.min(SHORT_BUDGET);
                None
            }
        };
        let mut n = 0;
        for stored in alerts {
            // A baseline taken after the event already holds the change: it is no "before".
            let before = Before {
                last_known: known.as_ref(),
                baseline: baseline
                    .as_ref()
                    .filter(|b| b.taken_ms < stored.event_time_ms),
            };
            let outcome = analyzer
                .analyze_within(
                    stored,
                    before,
                    self.clock.now_ms(),
                    Within {
                        budget,
                        offline: offline.as_deref(),
                        current: current.as_ref(),
                    },
                )
                .await;
            let a = outcome.analysis;
            if offline.is_none() {
                if let Some(why) = a.iam_failure() {
                    // IAM is down or denied: the rest of this pass makes no calls there.
                    offline = Some(format!(
                        "{why} (IAM failed for an earlier alert of this batch)"
                    ));
                    budget = budget.min(SHORT_BUDGET);
                }
            }
            let json = match serde_json::to_string(&a) {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(error = %e, "Cannot write an analysis");
                    continue;
                }
            };
            let row = outcome.last_known.as_ref().and_then(|k| {
                let snapshot = serde_json::to_string(&k.role).ok()?;
                Some(LastKnownRow {
                    as_of_ms: k.as_of_ms(),
                    from_event: k.from_event.clone(),
                    incomplete: k.incomplete.clone(),
                    snapshot,
                })
            });
            let now = self.clock.now_ms();
            let recorded = self.state.with(|s| match &row {
                Some(row) => s.put_analysis_and_last_known(stored.id, &json, now, key, row),
                None => s.put_analysis(stored.id, &json, now),
            });
            if let Err(e) = recorded {
                tracing::error!(alert_id = stored.id, error = %e, "Cannot record an analysis");
                continue;
            }
            if outcome.last_known.is_some() {
                known = outcome.last_known;
            }
            n += 1;
            AlertAnalysed {
                alert_id: stored.id,
                event_id: &stored.event_id,
                actor_class: a.actor_class.as_str(),
                verdict: a.verdict.as_str(),
                severity: &a.severity,
                diff_unavailable: a.diff_unavailable.as_deref(),
                expected: a.expected.as_ref().map(|e| e.description.as_str()),
            }
            .emit(&self.metrics);
        }
        n
    }

    /// Takes the baseline when due and analyses new alerts, on `wake` (the outbox heard of
    /// new alerts) or at least every `IDLE_TICK` (60 s), until `shutdown`; wakes `outbox` after
    /// each pass that analysed something.
    pub async fn run(
        self: Arc<Self>,
        wake: Arc<Notify>,
        outbox: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
        loop {
            let analysed = tokio::select! {
                n = self.pass() => n,
                () = shutdown.cancelled() => return,
            };
            if analysed > 0 {
                outbox.notify_one();
                // More may wait than one batch: go on at once.
                continue;
            }
            tokio::select! {
                () = self.baseline_if_due() => {}
                () = shutdown.cancelled() => return,
            }
            tokio::select! {
                () = tokio::time::sleep(IDLE_TICK) => {}
                () = wake.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// The `recipientAccountId` of a stored record (the account whose trail recorded it).
fn recipient_account(record: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "recipientAccountId")]
        recipient_account_id: Option<String>,
    }
    serde_json::from_str::<Head>(record)
        .ok()?
        .recipient_account_id
        .filter(|a| crate::config::accounts::account_id_ok(a))
}
