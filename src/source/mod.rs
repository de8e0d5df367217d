//! Sources: where events come from. A source reads every event in a time window as pages the
//! caller pulls ([`Source::pages`], [`Pages::next_page`]); it knows nothing of rules or state.
//!
//! - [`cloudtrail`]: CloudTrail `LookupEvents` (Event history, 90 days).
//! - [`logs`]: CloudWatch Logs `FilterLogEvents` on the trail's log group.
//! - [`sqs`]: an SQS queue an EventBridge rule delivers events to. It is read by long polls
//!   ([`Source::queue`]), not by windows: its `pages` are always empty.
//!
//! Retry classification, backoff and the rate limit are [`crate::aws::retry`], shared with
//! every other AWS caller.

pub mod cloudtrail;
pub mod lenient;
pub mod logs;
pub mod sqs;

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use aws_config::SdkConfig;

use crate::aws::retry::{Priority, RegularFetch, RetryBudget, RetryClass};
use crate::config::{SourceConfig, SourceKind};
use crate::event::{BadEvent, RawEvent, RecordHeader, Window};

/// Largest CloudTrail record we accept (CloudTrail's own limit for an event is 256 KB).
pub const MAX_RECORD_BYTES: usize = 256 * 1024;

/// What one page of results held.
#[derive(Debug, Default)]
pub struct Page {
    pub events: Vec<RawEvent>,
    pub bad: Vec<BadEvent>,
}

/// Counters of one fetch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FetchStats {
    pub requests: u64,
    pub throttled: u64,
    pub retries: u64,
    pub events: u64,
    pub bad: u64,
    /// Time spent retrying failed requests (what the fetch took of its retry budget).
    pub retry_time: Duration,
}

impl FetchStats {
    /// Adds the requests of one AWS call.
    pub fn add_calls(&mut self, c: crate::aws::retry::CallStats) {
        self.requests += c.requests;
        self.retries += c.retries;
        self.throttled += c.throttled;
        self.retry_time += c.retry_time;
    }

    pub fn add(&mut self, o: FetchStats) {
        self.requests += o.requests;
        self.throttled += o.throttled;
        self.retries += o.retries;
        self.events += o.events;
        self.bad += o.bad;
        self.retry_time += o.retry_time;
    }
}

/// Why a fetch failed (after retries).
#[derive(Debug)]
pub struct SourceError {
    pub source_id: String,
    pub class: RetryClass,
    pub message: String,
    /// Counters up to the failure.
    pub stats: FetchStats,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.class {
            RetryClass::Throttled => "still throttled after retries",
            RetryClass::Transient => "still failing after retries",
            RetryClass::Permanent => "failed",
        };
        write!(f, "source {} {what}: {}", self.source_id, self.message)
    }
}

impl std::error::Error for SourceError {}

/// A configured source.
pub struct Source {
    api: Api,
    /// What one fetch may spend on retries (`retry_budget_secs`).
    retry_budget: Duration,
}

/// The SDK clients sources share, built on first use: one CloudTrail client per region,
/// whatever the number of accounts — a request into an account carries that account's
/// credentials ([`cloudtrail::CloudTrailSource`]). A client is about 14 KB of configuration
/// and runtime plugins; one per account and service was most of what an account cost.
pub struct Clients {
    sdk: SdkConfig,
    cloudtrail: std::collections::HashMap<String, aws_sdk_cloudtrail::Client>,
}

impl Clients {
    #[must_use]
    pub fn new(sdk: &SdkConfig) -> Clients {
        Clients {
            sdk: sdk.clone(),
            cloudtrail: std::collections::HashMap::new(),
        }
    }

    fn cloudtrail(&mut self, region: &str) -> aws_sdk_cloudtrail::Client {
        self.cloudtrail
            .entry(region.to_owned())
            .or_insert_with(|| cloudtrail::client(&self.sdk, region))
            .clone()
    }
}

/// The API a source reads.
enum Api {
    CloudTrail(cloudtrail::CloudTrailSource),
    Logs(logs::LogsSource),
    Queue(sqs::QueueSource),
}

impl Source {
    /// Builds the source on the shared clients; `credentials`: the account's (a per-account
    /// CloudTrail source), `None` for rolewatch's own.
    pub fn new(
        cfg: &SourceConfig,
        clients: &mut Clients,
        credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
        event_names: Option<Vec<String>>,
        patterns: Vec<String>,
    ) -> Source {
        let api = match &cfg.kind {
            SourceKind::CloudTrail => Api::CloudTrail(cloudtrail::CloudTrailSource::new(
                cfg,
                clients.cloudtrail(&cfg.region),
                credentials,
                event_names,
            )),
            SourceKind::CloudWatchLogs { .. } => {
                Api::Logs(logs::LogsSource::new(cfg, &clients.sdk, patterns))
            }
            SourceKind::Sqs { .. } => Api::Queue(sqs::QueueSource::new(cfg, &clients.sdk)),
        };
        Source {
            api,
            retry_budget: cfg.retry_budget,
        }
    }

    pub fn id(&self) -> &str {
        match &self.api {
            Api::CloudTrail(s) => s.id(),
            Api::Logs(s) => s.id(),
            Api::Queue(s) => s.id(),
        }
    }

    /// `cloudtrail`, `cloudwatch_logs` or `sqs`.
    pub fn kind(&self) -> &'static str {
        match &self.api {
            Api::CloudTrail(_) => "cloudtrail",
            Api::Logs(_) => "cloudwatch_logs",
            Api::Queue(_) => "sqs",
        }
    }

    /// The queue, for an `sqs` source.
    pub fn queue(&self) -> Option<&sqs::QueueSource> {
        match &self.api {
            Api::Queue(q) => Some(q),
            _ => None,
        }
    }

    /// How long the source keeps events; `None` when it keeps them forever (or we cannot tell).
    ///
    /// # Errors
    ///
    /// A [`SourceError`] when the retention cannot be read.
    pub async fn retention(&self) -> Result<Option<Duration>, SourceError> {
        match &self.api {
            Api::CloudTrail(_) => Ok(Some(crate::config::defaults::CLOUDTRAIL_RETENTION)),
            Api::Logs(s) => s.retention().await,
            // What a queue keeps is not read by windows: no coverage gap to detect.
            Api::Queue(_) => Ok(None),
        }
    }

    /// The pages of every event in `window`, pulled one at a time with
    /// [`Pages::next_page`]; a [`Priority::Low`] fetch (the sweep) yields every request slot
    /// to regular ones. Nothing is requested until the first page is asked for.
    pub fn pages(&self, window: Window, priority: Priority) -> Pages<'_> {
        let limiter = match &self.api {
            Api::CloudTrail(s) => s.limiter(),
            Api::Logs(s) => s.limiter(),
            Api::Queue(s) => s.limiter(),
        };
        Pages {
            source: self,
            window,
            priority,
            _regular: (priority == Priority::Regular).then(|| limiter.regular()),
            query: 0,
            token: None,
            done: false,
            progress: Progress {
                budget: RetryBudget::new(self.retry_budget),
                stats: FetchStats::default(),
            },
            delivered: HashSet::new(),
        }
    }

    fn queries(&self) -> usize {
        match &self.api {
            Api::CloudTrail(s) => s.queries(),
            Api::Logs(s) => s.queries(),
            Api::Queue(_) => 0,
        }
    }
}

/// What a fetch has spent so far: its retry budget, its counters.
pub(crate) struct Progress {
    /// What is left of the fetch's retry budget, shared by all its requests.
    pub budget: RetryBudget,
    pub stats: FetchStats,
}

/// A fetch in progress: the caller pulls pages ([`Pages::next_page`]) and decides what to do
/// with each before asking for the next; the source never calls back into the pipeline.
pub struct Pages<'a> {
    source: &'a Source,
    window: Window,
    priority: Priority,
    /// A regular fetch holds off low-priority ones for as long as it lives.
    _regular: Option<RegularFetch<'a>>,
    /// The paginated query being read (an event name, a filter pattern).
    query: usize,
    token: Option<String>,
    done: bool,
    /// What is left of the fetch's retry budget, shared by all its requests.
    progress: Progress,
    /// EventIDs already handed over (CloudWatch Logs: several patterns can return one record).
    delivered: HashSet<String>,
}

impl Pages<'_> {
    /// The next page, or `None` when the window has been read to its end.
    ///
    /// # Errors
    ///
    /// A [`SourceError`] when the API keeps failing (after retries); it carries the counters
    /// up to the failure, and the fetch is over.
    pub async fn next_page(&mut self) -> Result<Option<Page>, SourceError> {
        if self.done || self.query >= self.source.queries() {
            self.done = true;
            return Ok(None);
        }
        let token = self.token.take();
        let fetched = match &self.source.api {
            Api::CloudTrail(s) => {
                s.page(
                    self.query,
                    token,
                    self.window,
                    self.priority,
                    &mut self.progress,
                )
                .await
            }
            Api::Logs(s) => {
                s.page(
                    self.query,
                    token,
                    self.window,
                    self.priority,
                    &mut self.progress,
                    &mut self.delivered,
                )
                .await
            }
            Api::Queue(_) => Ok((Page::default(), None)),
        };
        match fetched {
            Ok((page, next)) => {
                match next {
                    Some(t) => self.token = Some(t),
                    None => self.query += 1,
                }
                Ok(Some(page))
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    /// The counters of the fetch so far.
    pub fn stats(&self) -> FetchStats {
        self.progress.stats
    }
}

/// Checks one record's raw text and reads its identity: not JSON, truncated, not an object,
/// over [`MAX_RECORD_BYTES`] or not valid Unicode makes it bad. Not valid Unicode means
/// marked by the [`lenient`] layer (the reply held bytes that are not UTF-8 or a lone
/// surrogate escape in this record) or holding a lone surrogate escape in its own JSON text;
/// a valid U+FFFD is ordinary text. `fallback_id` and `fallback_time_ms` come from the API's
/// own fields.
pub(crate) fn check_record(
    record: String,
    fallback_id: Option<&str>,
    fallback_time_ms: Option<i64>,
) -> Result<RawEvent, BadEvent> {
    let bad = |reason: String, id: Option<&str>| BadEvent {
        event_id: id.or(fallback_id).unwrap_or("(unknown)").to_owned(),
        event_time_ms: fallback_time_ms,
        reason,
    };
    if record.len() > MAX_RECORD_BYTES {
        return Err(bad(
            format!(
                "record is {} bytes, over the {MAX_RECORD_BYTES}-byte limit",
                record.len()
            ),
            None,
        ));
    }
    if let Some(why) = record.strip_prefix(lenient::NOT_UNICODE_MARK) {
        return Err(bad(format!("record is not valid Unicode: {why}"), None));
    }
    if let Some(at) = lenient::lone_surrogate_escape(record.as_bytes()) {
        return Err(bad(
            format!(
                "record is not valid Unicode: it holds a lone UTF-16 surrogate escape ({}) at byte {at}",
                record.get(at..at + 6).unwrap_or("\\u")
            ),
            None,
        ));
    }
    let header = match serde_json::from_str::<RecordHeader>(&record) {
        Ok(h) => h,
        Err(e) if e.is_eof() => return Err(bad(format!("record is truncated: {e}"), None)),
        Err(e) => return Err(bad(format!("record is not a JSON object: {e}"), None)),
    };
    let Some(event_id) = header
        .event_id
        .clone()
        .or_else(|| fallback_id.map(str::to_owned))
    else {
        return Err(bad("record has no eventID".into(), None));
    };
    let Some(event_time_ms) = header.event_time_ms().or(fallback_time_ms) else {
        return Err(bad("record has no valid eventTime".into(), Some(&event_id)));
    };
    Ok(RawEvent {
        event_id,
        event_time_ms,
        event_name: header.event_name.unwrap_or_default(),
        account_id: header.recipient_account_id,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_checked() {
        let ok = check_record(
            r#"{"eventID":"a","eventTime":"2024-01-01T00:00:00Z"}"#.into(),
            Some("x"),
            None,
        )
        .unwrap();
        assert_eq!(ok.event_id, "a");
        let e = check_record(r#"{"eventID":"a","#.into(), Some("x"), None).unwrap_err();
        assert_eq!(e.event_id, "x");
        assert!(e.reason.contains("truncated"), "{e:?}");
        assert!(check_record("not json".into(), Some("x"), None)
            .unwrap_err()
            .reason
            .contains("not a JSON"));
        assert!(check_record("[1]".into(), Some("x"), None)
            .unwrap_err()
            .reason
            .contains("not a JSON"));
        let big = format!(
            r#"{{"eventID":"a","pad":"{}"}}"#,
            "x".repeat(MAX_RECORD_BYTES)
        );
        assert!(check_record(big, None, None)
            .unwrap_err()
            .reason
            .contains("limit"));
        let no_time = check_record(r#"{"eventID":"a"}"#.into(), None, Some(5)).unwrap();
        assert_eq!(no_time.event_time_ms, 5);
    }

    /// Regression (issue 11): a record whose caller-chosen text held a valid U+FFFD was taken
    /// for text that was not UTF-8 and skipped, which hid the change from on-call.
    #[test]
    fn a_valid_replacement_character_is_ordinary_text() {
        for record in [
            "{\"eventID\":\"a\",\"eventTime\":\"2024-01-01T00:00:00Z\",\"userAgent\":\"aws-cli\u{FFFD}\"}",
            r#"{"eventID":"a","eventTime":"2024-01-01T00:00:00Z","userAgent":"aws-cli\ufffd"}"#,
            // The mark inside a field is only text: it must start the record to count.
            r#"{"eventID":"a","eventTime":"2024-01-01T00:00:00Z","userAgent":"\u0000rolewatch: not valid Unicode: "}"#,
        ] {
            let ok = check_record(record.into(), None, None)
                .unwrap_or_else(|e| panic!("{record}: {e:?}"));
            assert_eq!(ok.event_id, "a");
        }
    }

    #[test]
    fn text_that_is_not_valid_unicode_makes_a_record_bad() {
        let e = check_record(
            format!(
                "{}it holds a lone UTF-16 surrogate escape (\\udc80)",
                lenient::NOT_UNICODE_MARK
            ),
            Some("ev-9"),
            Some(7),
        )
        .unwrap_err();
        assert_eq!(e.event_id, "ev-9");
        assert_eq!(e.event_time_ms, Some(7));
        assert_eq!(
            e.reason,
            "record is not valid Unicode: it holds a lone UTF-16 surrogate escape (\\udc80)"
        );
        let e = check_record(
            r#"{"eventID":"a","userAgent":"x\ud800y"}"#.into(),
            Some("ev-8"),
            None,
        )
        .unwrap_err();
        assert_eq!(e.event_id, "ev-8");
        assert_eq!(
            e.reason,
            "record is not valid Unicode: it holds a lone UTF-16 surrogate escape (\\ud800) at byte 29"
        );
        assert!(check_record(
            r#"{"eventID":"a","eventTime":"2024-01-01T00:00:00Z","e":"\ud83d\ude00 \\udc80"}"#
                .into(),
            None,
            None
        )
        .is_ok());
    }
}
