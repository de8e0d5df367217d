//! The values the state takes and gives: what a poll commits, an alert as new and as stored,
//! deliveries, gaps, cursors and counts.

use std::fmt;

/// Everything one poll of one source learned, written by [`State::commit_poll`] at once.
#[derive(Debug, Clone)]
pub struct PollCommit<'a> {
    /// The source polled; owner of `seen` and of the cursor.
    pub source_id: &'a str,
    /// The new cursor: the end of the window now fully polled (unix ms).
    pub cursor_ms: i64,
    /// The time of the commit (unix ms): alerts' detection time, outbox rows' first attempt,
    /// and the pruning horizon of `seen`.
    pub now_ms: i64,
    /// Every event fetched this poll, matched or not.
    pub seen: Vec<SeenEvent<'a>>,
    /// The matches.
    pub alerts: Vec<NewAlert<'a>>,
    /// The notification channels: each new alert gets one `pending` outbox row per channel.
    pub channels: Vec<&'a str>,
    /// Coverage gaps detected this poll.
    pub gaps: Vec<Gap>,
}

/// An event fetched by a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenEvent<'a> {
    /// CloudTrail's eventID.
    pub event_id: &'a str,
    /// The event's eventTime (unix ms).
    pub event_time_ms: i64,
    /// When the row may be forgotten (unix ms): once no future window can contain the event.
    pub expires_ms: i64,
}

/// Where an alert comes from: a match of the user's rules, or rolewatch's own notice about
/// itself (blind, recovered, a coverage gap, a failing channel, the heartbeat). Typed in the
/// state, so that no rule name is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// A change one or more rules matched.
    #[default]
    Rule,
    /// rolewatch's own notice.
    Notice,
}

impl Origin {
    /// The stored word.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::Notice => "notice",
        }
    }

    pub(super) fn parse(text: &str) -> Self {
        // The CHECK constraint admits only the two words.
        if text == "notice" {
            Self::Notice
        } else {
            Self::Rule
        }
    }
}

/// How rolewatch found an alert's event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FoundBy {
    /// A regular poll (inside its window and overlap).
    #[default]
    Poll,
    /// The reconciliation sweep: the event became visible later than the polls' overlap
    /// (a late delivery).
    Sweep,
    /// rolewatch made it (a notice).
    Notice,
    /// An `sqs` source: the EventBridge rule delivered it to the queue.
    Queue,
    /// A poll beside an `sqs` source found it first: the queue missed it (or had not
    /// delivered it yet).
    Backstop,
}

impl FoundBy {
    /// The stored word.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Sweep => "sweep",
            Self::Notice => "notice",
            Self::Queue => "queue",
            Self::Backstop => "backstop",
        }
    }

    pub(super) fn parse(text: &str) -> Self {
        match text {
            "sweep" => Self::Sweep,
            "notice" => Self::Notice,
            "queue" => Self::Queue,
            "backstop" => Self::Backstop,
            _ => Self::Poll,
        }
    }
}

/// A change to be recorded as an alert: one event, with every rule that matched it.
#[derive(Clone, PartialEq, Eq)]
pub struct NewAlert<'a> {
    /// The headline rule (the most severe of `rules`).
    pub rule: &'a str,
    /// Every rule that matched, the headline rule first.
    pub rules: Vec<&'a str>,
    /// The highest severity of the rules.
    pub severity: &'a str,
    /// A rule match or a notice.
    pub origin: Origin,
    /// How the event was found.
    pub found_by: FoundBy,
    /// The change's identity (account and eventID, [`crate::engine::change_key`]); an alert
    /// is recorded once per change key. `None` for notices (unique by rule and eventID).
    pub change_key: Option<&'a str>,
    /// The delivery dedup key; `None`: derived from the rule and eventID when sent.
    pub dedup_key: Option<&'a str>,
    /// CloudTrail's eventID.
    pub event_id: &'a str,
    /// CloudTrail's eventName.
    pub event_name: &'a str,
    /// The event's eventTime (unix ms).
    pub event_time_ms: i64,
    /// The source that saw the event.
    pub source_id: &'a str,
    /// The CloudTrail record, as JSON text.
    pub record: &'a str,
    /// The channels this alert goes to (the union of the rules' `channels`); `None`: every
    /// channel of the commit.
    pub channels: Option<Vec<&'a str>>,
}

impl fmt::Debug for NewAlert<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAlert")
            .field("rule", &self.rule)
            .field("rules", &self.rules)
            .field("severity", &self.severity)
            .field("origin", &self.origin)
            .field("found_by", &self.found_by)
            .field("change_key", &self.change_key)
            .field("event_id", &self.event_id)
            .field("event_name", &self.event_name)
            .field("event_time_ms", &self.event_time_ms)
            .field("source_id", &self.source_id)
            .field("record", &RecordLen(self.record.len()))
            .finish()
    }
}

/// A recorded alert.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct StoredAlert {
    /// The row id: the alert's identity in the outbox.
    pub id: i64,
    /// The headline rule.
    pub rule: String,
    /// Every rule that matched the change, the headline rule first.
    pub rules: Vec<String>,
    /// The highest severity of the rules.
    pub severity: String,
    /// A rule match or a notice.
    pub origin: Origin,
    /// How the event was found.
    pub found_by: FoundBy,
    /// The delivery dedup key; `None` for alerts recorded before v4 (derived from the rule
    /// and eventID, as then).
    pub dedup_key: Option<String>,
    /// CloudTrail's eventID.
    pub event_id: String,
    /// CloudTrail's eventName.
    pub event_name: String,
    /// The event's eventTime (unix ms).
    pub event_time_ms: i64,
    /// The source that saw the event first.
    pub source_id: String,
    /// When rolewatch recorded the alert (unix ms).
    pub detected_ms: i64,
    /// The CloudTrail record, as JSON text.
    pub record: String,
}

impl fmt::Debug for StoredAlert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAlert")
            .field("id", &self.id)
            .field("rule", &self.rule)
            .field("rules", &self.rules)
            .field("severity", &self.severity)
            .field("origin", &self.origin)
            .field("found_by", &self.found_by)
            .field("dedup_key", &self.dedup_key)
            .field("event_id", &self.event_id)
            .field("event_name", &self.event_name)
            .field("event_time_ms", &self.event_time_ms)
            .field("source_id", &self.source_id)
            .field("detected_ms", &self.detected_ms)
            .field("record", &RecordLen(self.record.len()))
            .finish()
    }
}

/// Stands in for a record in `Debug` output: records hold principals, IPs and request
/// parameters, which do not belong in logs of the daemon's own structures.
struct RecordLen(usize);

impl fmt::Debug for RecordLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

/// An interval a source could not cover (for example older than CloudTrail's 90 days).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gap {
    /// The source with the gap.
    pub source_id: String,
    /// Start of the missing interval (unix ms, inclusive).
    pub from_ms: i64,
    /// End of the missing interval (unix ms); not before `from_ms`.
    pub to_ms: i64,
    /// When the gap was detected (unix ms).
    pub detected_ms: i64,
    /// Why the interval is missing, for the operator.
    pub reason: String,
}

/// What [`State::commit_poll`] recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The alerts recorded by this commit, with their row ids: notify only these. An alert
    /// already recorded (the same rule and eventID, from an earlier poll or another source) is
    /// not here.
    pub alerts: Vec<StoredAlert>,
    /// The gaps recorded by this commit (gaps already known are not repeated).
    pub gaps: Vec<Gap>,
    /// How many seen eventIDs were new.
    pub seen_new: usize,
    /// How many expired seen rows of the source were pruned.
    pub pruned: usize,
    /// The cursor after the commit: the newer of the stored cursor and the one committed.
    pub cursor_ms: i64,
}

/// Where an alert stands on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not yet accepted by the channel; due from `next_attempt_ms`.
    Pending,
    /// Accepted by the channel; never sent again.
    Delivered,
    /// Given up on ([`State::mark_failed`] without a retry time).
    Failed,
}

impl DeliveryStatus {
    pub(super) fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The alert's row id.
    pub alert_id: i64,
    /// The channel's name.
    pub channel: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far (successful or not).
    pub attempts: u32,
    /// When the next attempt is due (unix ms), for pending rows.
    pub next_attempt_ms: i64,
    /// The channel's last error, if an attempt failed.
    pub last_error: Option<String>,
    /// When the channel accepted the alert (unix ms).
    pub delivered_ms: Option<i64>,
}

/// A source's cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The source.
    pub source_id: String,
    /// The end of the last fully polled window (unix ms).
    pub position_ms: i64,
    /// When it was last committed (unix ms).
    pub updated_ms: i64,
}

/// Row counts, for logs, metrics and `doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateStats {
    /// Sources with a cursor.
    pub cursors: u64,
    /// Remembered eventIDs.
    pub seen: u64,
    /// Alerts ever recorded.
    pub alerts: u64,
    /// Outbox rows not yet delivered and still being tried.
    pub undelivered: u64,
    /// Outbox rows given up on.
    pub failed: u64,
    /// Coverage gaps recorded.
    pub gaps: u64,
}
