//! One poll of one source: work out the window, fetch it page by page, run the engine on
//! every event, and commit to the state.
//!
//! The window is `[cursor − overlap, now)`: CloudTrail delivers late (minutes, out of order),
//! so each poll re-reads the overlap, and the state's seen set and the alerts' uniqueness per
//! change (account and eventID) make a re-read event count once, however many rules match it.
//!
//! CloudTrail has no delivery deadline, so besides the overlap each source runs a slow
//! reconciliation sweep ([`sweep_source`]) over `[now − sweep_lookback, cursor − overlap)`:
//! the part no poll reads again. Its requests yield to the polls' (the source's rate
//! limiter serves them first), it never moves the cursor, and an event it finds that no poll
//! saw is a late delivery: counted, its lateness observed, its alert marked. After downtime the catch-up proceeds
//! oldest first in windows of at most `catchup_window`, each committed with its cursor, so
//! memory stays bounded and a crash loses at most one window of progress. A cursor older than
//! the source keeps events is a coverage gap, recorded with its exact interval — never a
//! silent restart from "now".

use std::time::Duration;

use crate::aws::retry::Priority;
use crate::config::SourceConfig;
use crate::engine::{change_dedup_key, change_key, Engine};
use crate::event::{BadEvent, Window};
use crate::source::{FetchStats, Page, Source, SourceError};
use crate::state::{
    FoundBy, Gap, NewAlert, Origin, PollCommit, SeenEvent, StateError, Store, StoredAlert,
};

use crate::time::{ms, Clock};

/// How much later than the retention horizon a catch-up starts, so that the oldest events
/// are not aging out while they are read.
const RETENTION_MARGIN_MS: i64 = 10 * 60 * 1000;

/// A seen eventID is kept this long past the time it could last fall inside a window.
const SEEN_MARGIN_MS: i64 = 60 * 60 * 1000;

/// What a poll did.
#[derive(Debug, Default)]
pub struct PollOutcome {
    pub source_id: String,
    /// The state had no cursor for this source: the poll looked back `initial_lookback`.
    pub first_poll: bool,
    pub windows: usize,
    pub stats: FetchStats,
    /// Alerts recorded by this poll (not seen before).
    pub new_alerts: Vec<StoredAlert>,
    pub gaps: Vec<Gap>,
    pub bad: Vec<BadEvent>,
    pub matches: u64,
    pub cursor_ms: i64,
    /// Events found only by a sweep (late deliveries): how late each was, in ms (first seen
    /// minus eventTime).
    pub late_ms: Vec<i64>,
    /// How long each page's state commit took (µs, wall clock): the state's write latency.
    pub commit_us: Vec<u64>,
}

/// Why a poll stopped.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0:#}")]
    Other(anyhow::Error),
}

/// Everything a poll needs besides the source.
pub struct PollContext<'a> {
    pub engine: &'a Engine,
    pub state: &'a Store,
    pub clock: &'a dyn Clock,
    /// Outbox channels each new alert gets a row for.
    pub channels: &'a [&'a str],
    /// The channels that receive only some accounts' alerts (`accounts = [...]`), with those
    /// accounts; empty when every channel receives every account's.
    pub channel_accounts: &'a [(String, Vec<String>)],
    pub initial_lookback: Duration,
    /// Retention of the source, read once by the caller (`None`: forever or unknown).
    pub retention: Option<Duration>,
}

/// Polls `source` once, from its stored cursor up to now.
///
/// # Errors
///
/// [`PollError::Source`] when the API keeps failing (what was committed before stays; the next
/// poll resumes from the stored cursor), [`PollError::State`] when the state cannot be written.
pub async fn poll_source(
    source: &Source,
    cfg: &SourceConfig,
    ctx: &PollContext<'_>,
) -> Result<PollOutcome, PollError> {
    let now = ctx.clock.now_ms();
    let mut out = PollOutcome {
        source_id: cfg.id.clone(),
        ..PollOutcome::default()
    };
    let stored = ctx.state.run(|s| s.cursor(&cfg.id)).await?;
    let mut cursor = match stored {
        Some(c) => c,
        None => {
            out.first_poll = true;
            let c = now - ms(ctx.initial_lookback);
            tracing::warn!(
                source = %cfg.id,
                lookback_secs = ctx.initial_lookback.as_secs(),
                "No cursor in the state for this source: the first poll looks back only this far; earlier events are not read"
            );
            // Record where coverage starts, so that a crash during the first poll resumes
            // from here rather than looking back from a later "now".
            ctx.state
                .run(|s| {
                    s.commit_poll(&PollCommit {
                        source_id: &cfg.id,
                        cursor_ms: c,
                        now_ms: now,
                        seen: Vec::new(),
                        alerts: Vec::new(),
                        channels: Vec::new(),
                        gaps: Vec::new(),
                    })
                })
                .await?;
            c
        }
    };
    if let Some(retention) = ctx.retention {
        let earliest = now - ms(retention) + RETENTION_MARGIN_MS;
        if cursor < earliest {
            if stored.is_some() {
                let gap = Gap {
                    source_id: cfg.id.clone(),
                    from_ms: cursor,
                    to_ms: earliest,
                    detected_ms: now,
                    reason: format!(
                        "the cursor is older than the {} days the source keeps events",
                        retention.as_secs() / 86_400
                    ),
                };
                tracing::error!(
                    event = "coverage_gap",
                    source = %cfg.id,
                    from = %crate::time::format_rfc3339_ms(gap.from_ms),
                    to = %crate::time::format_rfc3339_ms(gap.to_ms),
                    "Coverage gap: events in this interval can no longer be read from the source and were not checked"
                );
                // The gap, its notice through every channel and the cursor past it are
                // recorded at once: the gap is reported once, and the catch-up starts at the
                // oldest event still kept.
                let notice = crate::notify::synthetic::coverage_gap(
                    &cfg.id,
                    gap.from_ms,
                    gap.to_ms,
                    &gap.reason,
                    now,
                );
                let committed = ctx
                    .state
                    .run(|s| {
                        s.commit_poll(&PollCommit {
                            source_id: &cfg.id,
                            cursor_ms: earliest,
                            now_ms: now,
                            seen: Vec::new(),
                            alerts: vec![NewAlert {
                                rule: notice.rule,
                                rules: vec![notice.rule],
                                severity: notice.severity,
                                origin: Origin::Notice,
                                found_by: FoundBy::Notice,
                                change_key: None,
                                dedup_key: None,
                                event_id: &notice.event_id,
                                event_name: notice.event_name,
                                event_time_ms: now,
                                source_id: crate::notify::synthetic::Notice::SOURCE,
                                record: &notice.record,
                                channels: None,
                            }],
                            channels: ctx.channels.to_vec(),
                            gaps: vec![gap],
                        })
                    })
                    .await?;
                out.new_alerts.extend(committed.alerts);
                out.gaps.extend(committed.gaps);
            }
            cursor = earliest;
        }
    }
    let overlap = ms(cfg.overlap);
    let mut start = (cursor - overlap).max(match ctx.retention {
        Some(r) => now - ms(r) + RETENTION_MARGIN_MS,
        None => i64::MIN,
    });
    if start >= now {
        start = now - 1;
    }
    let chunk = ms(cfg.catchup_window).max(60_000);
    let mut window_start = start;
    while window_start < now {
        let window_end = if now - window_start > chunk + overlap {
            window_start + chunk
        } else {
            now
        };
        let window = Window {
            start_ms: window_start,
            end_ms: window_end,
        };
        out.windows += 1;
        poll_window(source, cfg, ctx, window, Pass::Poll, &mut out, now).await?;
        window_start = window_end;
    }
    out.cursor_ms = ctx.state.run(|s| s.cursor(&cfg.id)).await?.unwrap_or(now);
    Ok(out)
}

/// Whether a page comes from a regular poll (which advances the cursor) or a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    Poll,
    Sweep,
    /// A batch of an `sqs` source: no window; the cursor is the receipt time.
    Queue,
}

/// Whether the sweep of `cfg` is due at `now_ms`: it is on and none finished within its
/// interval.
///
/// # Errors
///
/// [`StateError`] when the state cannot be read.
pub fn sweep_due(cfg: &SourceConfig, state: &Store, now_ms: i64) -> Result<bool, StateError> {
    let Some(interval) = cfg.sweep_interval else {
        return Ok(false);
    };
    Ok(match state.with(|s| s.last_sweep_ms(&cfg.id))? {
        Some(last) => now_ms.saturating_sub(last) >= ms(interval),
        None => true,
    })
}

/// One reconciliation sweep of `source`: re-reads `[now − sweep_lookback, cursor − overlap)`
/// (no later than the source keeps events) at low priority, records what no poll saw — late
/// deliveries — and the time of the sweep. It never moves the cursor. A source with no
/// cursor yet has nothing to sweep.
///
/// # Errors
///
/// As [`poll_source`]; the time of the sweep is then not recorded, so the next one is due
/// at once.
pub async fn sweep_source(
    source: &Source,
    cfg: &SourceConfig,
    ctx: &PollContext<'_>,
) -> Result<PollOutcome, PollError> {
    let now = ctx.clock.now_ms();
    let mut out = PollOutcome {
        source_id: cfg.id.clone(),
        ..PollOutcome::default()
    };
    let Some(cursor) = ctx.state.run(|s| s.cursor(&cfg.id)).await? else {
        return Ok(out);
    };
    out.cursor_ms = cursor;
    let mut start = now - ms(cfg.sweep_lookback);
    if let Some(r) = ctx.retention {
        start = start.max(now - ms(r) + RETENTION_MARGIN_MS);
    }
    let end = (cursor - ms(cfg.overlap)).min(now);
    let chunk = ms(cfg.catchup_window).max(60_000);
    let mut window_start = start;
    while window_start < end {
        let window = Window {
            start_ms: window_start,
            end_ms: (window_start + chunk).min(end),
        };
        out.windows += 1;
        poll_window(source, cfg, ctx, window, Pass::Sweep, &mut out, now).await?;
        window_start = window.end_ms;
    }
    ctx.state.run(|s| s.record_sweep(&cfg.id, now)).await?;
    Ok(out)
}

/// Fetches one window and commits it: each page as it arrives (cursor unchanged), the last
/// one of a poll together with the cursor advance to the window's end (a sweep never moves
/// the cursor).
async fn poll_window(
    source: &Source,
    cfg: &SourceConfig,
    ctx: &PollContext<'_>,
    window: Window,
    pass: Pass,
    out: &mut PollOutcome,
    now: i64,
) -> Result<(), PollError> {
    let priority = match pass {
        Pass::Poll | Pass::Queue => Priority::Regular,
        Pass::Sweep => Priority::Low,
    };
    // A page is committed once the next one is in hand: the last page of the window is
    // committed with the cursor advance, so the cursor moves only past a complete window.
    let mut pages = source.pages(window, priority);
    let mut held: Option<Page> = None;
    loop {
        match pages.next_page().await {
            Ok(Some(page)) => {
                if let Some(previous) = held.replace(page) {
                    let committed = commit_page(cfg, ctx, previous, None, pass, out, now)
                        .await
                        .map_err(commit_error)?;
                    out.new_alerts.extend(committed);
                }
            }
            Ok(None) => {
                out.stats.add(pages.stats());
                let last = held.take().unwrap_or_default();
                let cursor = (pass == Pass::Poll).then_some(window.end_ms);
                let committed = commit_page(cfg, ctx, last, cursor, pass, out, now)
                    .await
                    .map_err(commit_error)?;
                out.new_alerts.extend(committed);
                return Ok(());
            }
            Err(e) => {
                out.stats.add(e.stats);
                // Pages fetched before the failure are still worth keeping (their alerts);
                // the cursor stays, so the next poll reads the window again.
                if let Some(page) = held.take() {
                    let committed = commit_page(cfg, ctx, page, None, pass, out, now)
                        .await
                        .map_err(commit_error)?;
                    out.new_alerts.extend(committed);
                }
                return Err(PollError::Source(e));
            }
        }
    }
}

fn commit_error(e: anyhow::Error) -> PollError {
    match e.downcast::<StateError>() {
        Ok(s) => PollError::State(s),
        Err(e) => PollError::Other(e),
    }
}

/// The channels an alert about `account` goes to: the rules' (`None`: every channel), less
/// the channels that receive only other accounts' alerts.
fn route<'a>(
    rules: Option<Vec<&'a str>>,
    account: Option<&str>,
    ctx: &PollContext<'a>,
) -> Option<Vec<&'a str>> {
    if ctx.channel_accounts.is_empty() {
        return rules;
    }
    let candidates = rules.unwrap_or_else(|| ctx.channels.to_vec());
    Some(
        candidates
            .into_iter()
            .filter(|c| {
                ctx.channel_accounts
                    .iter()
                    .find(|(name, _)| name == c)
                    .is_none_or(|(_, list)| account.is_some_and(|a| list.iter().any(|x| x == a)))
            })
            .collect(),
    )
}

/// Runs the engine on a page and commits it (with the cursor when `cursor_ms` is given):
/// one alert per new event that any rule matches, with every rule that matched.
pub(crate) async fn commit_page(
    cfg: &SourceConfig,
    ctx: &PollContext<'_>,
    page: Page,
    cursor_ms: Option<i64>,
    pass: Pass,
    out: &mut PollOutcome,
    now: i64,
) -> anyhow::Result<Vec<StoredAlert>> {
    ctx.state.run(|state| {
        let ids: Vec<&str> = page
            .events
            .iter()
            .map(|e| e.event_id.as_str())
            .chain(page.bad.iter().map(|b| b.event_id.as_str()))
            .collect();
        let already = state.seen_ids(&cfg.id, &ids)?;
        // A malformed event is reported once, not on every re-read of the overlap: it joins the
        // seen set like any other.
        for b in &page.bad {
            if !already.contains(&b.event_id) {
                tracing::warn!(source = %cfg.id, event_id = %b.event_id, reason = %b.reason, "Skipped a malformed event");
            }
        }
        let found_by = match pass {
            Pass::Poll if cfg.backstop => FoundBy::Backstop,
            Pass::Poll => FoundBy::Poll,
            Pass::Sweep => FoundBy::Sweep,
            Pass::Queue => FoundBy::Queue,
        };
        // Owned per-event keys first, so that the alerts can borrow them.
        let fresh: Vec<_> = page
            .events
            .iter()
            .filter(|e| !already.contains(&e.event_id))
            .map(|e| {
                let key = change_key(e.account_id.as_deref(), &e.event_id);
                let dedup = change_dedup_key(&key);
                (e, key, dedup)
            })
            .collect();
        if pass == Pass::Sweep {
            for (e, _, _) in &fresh {
                let late = now.saturating_sub(e.event_time_ms);
                out.late_ms.push(late);
                tracing::warn!(
                    event = "late_event",
                    source = %cfg.id,
                    event_id = %e.event_id,
                    event_name = %e.event_name,
                    lateness_secs = late / 1000,
                    "The sweep found an event no poll saw: CloudTrail delivered it later than the overlap"
                );
            }
        }
        let mut alerts = Vec::new();
        for (e, key, dedup) in &fresh {
            // The account of the event: the source's, or (a central log group or queue) the
            // record's.
            let account = cfg.account.as_deref().or(e.account_id.as_deref());
            let Some(m) = ctx.engine.evaluate_in(&e.record, account) else {
                continue;
            };
            out.matches += m.rules.len() as u64;
            let rules = m.rule_names();
            alerts.push(NewAlert {
                rule: rules.first().copied().unwrap_or_default(),
                rules,
                severity: m.severity().as_str(),
                origin: Origin::Rule,
                found_by,
                change_key: Some(key),
                dedup_key: Some(dedup),
                event_id: &e.event_id,
                event_name: &e.event_name,
                event_time_ms: e.event_time_ms,
                source_id: &cfg.id,
                record: &e.record,
                channels: route(m.channels(), account, ctx),
            });
        }
        // A seen eventID is kept as long as a poll's window or the sweep's lookback can still
        // reach it, so that the sweep can tell a late delivery from an event a poll saw.
        let reach = ms(cfg.overlap).max(match cfg.sweep_interval {
            Some(_) => ms(cfg.sweep_lookback),
            None => 0,
        });
        let overlap = ms(cfg.overlap);
        let seen = page
            .events
            .iter()
            .map(|e| (e.event_id.as_str(), e.event_time_ms))
            .chain(
                page.bad
                    .iter()
                    .filter(|b| b.event_id != "(unknown)")
                    .map(|b| (b.event_id.as_str(), b.event_time_ms.unwrap_or(now))),
            )
            .map(|(event_id, t)| SeenEvent {
                event_id,
                event_time_ms: t,
                expires_ms: (t + reach).max(t.max(now) + overlap) + SEEN_MARGIN_MS,
            })
            .collect();
        let stored_cursor = state.cursor(&cfg.id)?.unwrap_or(i64::MIN);
        let writing = tokio::time::Instant::now();
        let committed = state.commit_poll(&PollCommit {
            source_id: &cfg.id,
            // A page before the last keeps the stored cursor: the window is not complete yet.
            cursor_ms: cursor_ms.unwrap_or(stored_cursor),
            now_ms: now,
            seen,
            alerts,
            channels: ctx.channels.to_vec(),
            gaps: Vec::new(),
        })?;
        out.commit_us
            .push(u64::try_from(writing.elapsed().as_micros()).unwrap_or(u64::MAX));
        out.bad.extend(
            page.bad
                .into_iter()
                .filter(|b| !already.contains(&b.event_id)),
        );
        Ok(committed.alerts)
    })
    .await
}
