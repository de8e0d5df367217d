//! One receive cycle of an `sqs` source: (the first time) check the queue's visibility
//! timeout, look at the dead-letter queue, long-poll a batch, run the engine on every event,
//! commit alerts and seen eventIDs in one transaction, and only then delete the committed
//! messages.
//!
//! A message whose body is not a CloudTrail event is never deleted: the queue's redrive
//! policy moves it to the dead-letter queue after its `maxReceiveCount`, where the cycle sees
//! it (`ApproximateNumberOfMessages`) and the daemon reports the queue as "cannot see". A
//! crash between the commit and the delete makes SQS deliver the batch again after the
//! visibility timeout; the seen set (and the alerts' uniqueness per change) absorbs the
//! repeat, and the repeat is deleted.

use std::collections::HashSet;
use std::time::Duration;

use super::poll::{commit_page, Pass, PollContext, PollError, PollOutcome};
use crate::config::SourceConfig;
use crate::source::sqs::{DeleteFailure, Poison, QueueSource};
use crate::source::{FetchStats, Page};
use crate::state::StoredAlert;

/// Poison message IDs remembered (so that each is logged once); past this the memory starts
/// over, and a poison message still in the queue is logged once more.
const POISON_MEMORY: usize = 10_000;

/// What one `sqs` source remembers between cycles.
#[derive(Debug, Default)]
pub struct QueueMemo {
    /// The visibility timeout was found long enough.
    pub visibility_checked: bool,
    /// When the dead-letter queue was last looked at, and what it held.
    pub dlq_checked: Option<(tokio::time::Instant, u64)>,
    /// Poison messages already logged.
    pub poison_logged: HashSet<String>,
}

/// What one cycle did.
#[derive(Debug, Default)]
pub struct QueueOutcome {
    /// Messages received (redeliveries included).
    pub messages: usize,
    /// Of those, the CloudTrail events.
    pub events: usize,
    /// Poison messages not logged before: (MessageId, why).
    pub new_poison: Vec<(String, Poison)>,
    /// Poison messages received (logged before or not).
    pub poison: usize,
    pub new_alerts: Vec<StoredAlert>,
    pub matches: u64,
    pub deleted: usize,
    pub delete_failures: Vec<DeleteFailure>,
    pub stats: FetchStats,
    /// Messages in the dead-letter queue, when it was looked at.
    pub dlq_messages: Option<u64>,
    /// When the batch was received (unix ms): the alerts' detection time.
    pub received_ms: i64,
}

/// Runs one cycle of `q`.
///
/// # Errors
///
/// [`PollError::Source`] when SQS keeps failing (what was committed stays; undeleted
/// messages come again), [`PollError::State`] when the state cannot be written (nothing is
/// deleted then), [`PollError::Other`] when the visibility timeout is too short (nothing is
/// received until it is fixed).
pub async fn receive_cycle(
    q: &QueueSource,
    cfg: &SourceConfig,
    ctx: &PollContext<'_>,
    memo: &mut QueueMemo,
) -> Result<QueueOutcome, PollError> {
    let mut out = QueueOutcome::default();
    let mut budget = q.budget();
    if !memo.visibility_checked {
        let attrs = q
            .attributes(q.queue_url(), &mut budget, &mut out.stats)
            .await?;
        let required = q.required_visibility();
        match attrs.visibility_timeout {
            Some(v) if v > required => memo.visibility_checked = true,
            v => {
                return Err(PollError::Other(anyhow::anyhow!(
                    "the queue's visibility timeout ({} s) must be more than {} s (the source's retry budget plus {} s to commit a batch), or a batch is handed out again while it is committed; rolewatch does not read the queue until it is raised (SetQueueAttributes VisibilityTimeout)",
                    v.map_or_else(|| "unknown".to_owned(), |v| v.as_secs().to_string()),
                    required.as_secs(),
                    crate::config::defaults::SQS_COMMIT_ALLOWANCE.as_secs(),
                )));
            }
        }
    }
    if let Some(dlq) = q.dlq_url() {
        // Looked at about once per long poll: one cheap request, not one per batch.
        let due = memo
            .dlq_checked
            .is_none_or(|(at, _)| at.elapsed() >= q.wait_time().max(Duration::from_secs(1)));
        if due {
            let attrs = q.attributes(dlq, &mut budget, &mut out.stats).await?;
            memo.dlq_checked = Some((tokio::time::Instant::now(), attrs.messages.unwrap_or(0)));
        }
        out.dlq_messages = memo.dlq_checked.map(|(_, n)| n);
    }

    let received = q.receive(&mut budget, &mut out.stats).await?;
    let now = ctx.clock.now_ms();
    out.received_ms = now;
    out.messages = received.len();
    if received.is_empty() {
        return Ok(out);
    }
    let mut page = Page::default();
    let mut ids = HashSet::new();
    let mut committed: Vec<(&str, &str)> = Vec::new();
    for r in &received {
        match &r.body {
            Ok(ev) => {
                out.events += 1;
                // One batch can hold one event twice (EventBridge delivers at least once).
                if ids.insert(ev.event_id.clone()) {
                    page.events.push(ev.clone());
                }
                committed.push((&r.message_id, &r.receipt_handle));
            }
            Err(p) => {
                out.poison += 1;
                if memo.poison_logged.len() >= POISON_MEMORY {
                    memo.poison_logged.clear();
                }
                if memo.poison_logged.insert(r.message_id.clone()) {
                    out.new_poison.push((r.message_id.clone(), p.clone()));
                }
            }
        }
    }
    let mut poll = PollOutcome::default();
    let alerts = commit_page(cfg, ctx, page, Some(now), Pass::Queue, &mut poll, now)
        .await
        .map_err(|e| match e.downcast::<crate::state::StateError>() {
            Ok(s) => PollError::State(s),
            Err(e) => PollError::Other(e),
        })?;
    out.matches = poll.matches;
    out.new_alerts = alerts;
    // Committed: now the messages may go. A delete that fails leaves the message to come
    // again; the seen set makes the repeat a no-op.
    for chunk in committed.chunks(10) {
        let failed = q.delete(chunk, &mut budget, &mut out.stats).await?;
        out.deleted += chunk.len() - failed.len();
        out.delete_failures.extend(failed);
    }
    Ok(out)
}
