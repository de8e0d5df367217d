//! An SQS queue that an EventBridge rule (`aws.iam`, "AWS API Call via CloudTrail") delivers
//! CloudTrail events to: seconds instead of minutes, but best effort — the pollers beside it
//! are its backstop.
//!
//! One receive is a long poll (`WaitTimeSeconds`, up to 10 messages). A body is accepted as
//! an EventBridge envelope whose `detail` is the CloudTrail record (the envelope's `account`
//! is not required: the record's `recipientAccountId` names the account), or as an SNS
//! `Notification` whose `Message` is such an envelope (fan-out through SNS without raw
//! delivery). Anything else is a [`Poison`] message: the caller logs and counts it and never
//! deletes it, so the queue's redrive policy moves it to the dead-letter queue.
//!
//! The caller deletes a message only after its event is committed to the state
//! ([`QueueSource::delete`]); a crash in between makes SQS deliver it again, and the state's
//! seen set and per-change alerts absorb the repeat.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use aws_sdk_sqs::Client;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{check_record, FetchStats, SourceError, MAX_RECORD_BYTES};
use crate::aws::retry::{send_with_retries, CallStats, RateLimiter, RetryBudget, RetryClass};
use crate::config::{defaults, SourceConfig, SourceKind};
use crate::event::RawEvent;

/// Retries of one request before the receive cycle gives up (the next cycle starts again).
const MAX_RETRIES: usize = 6;

/// Largest body accepted: SQS's own limit for a message (a larger one came some other way).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// SQS takes at most this many messages per receive and per delete batch.
const BATCH: i32 = 10;

pub struct QueueSource {
    id: String,
    client: Client,
    queue_url: String,
    dlq_url: Option<String>,
    wait_time: Duration,
    retry_budget: Duration,
    /// Unused (a queue is not rate limited by rolewatch); `pages` needs one.
    limiter: RateLimiter,
}

/// One received message.
#[derive(Debug)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    /// What its body held.
    pub body: Result<RawEvent, Poison>,
}

/// A body that is not a CloudTrail event: left for the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    pub reason: String,
    /// The eventID, when the body got as far as naming one.
    pub event_id: Option<String>,
}

/// A message SQS did not delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    pub message_id: String,
    pub code: String,
    pub message: String,
}

/// The queue attributes rolewatch reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueAttributes {
    pub visibility_timeout: Option<Duration>,
    pub messages: Option<u64>,
    pub retention: Option<Duration>,
    /// The KMS key of SSE-KMS, when the queue uses one.
    pub kms_key: Option<String>,
    /// The queue policy (JSON text), when it has one.
    pub policy: Option<String>,
}

impl QueueSource {
    pub fn new(cfg: &SourceConfig, sdk: &SdkConfig) -> QueueSource {
        let conf = aws_sdk_sqs::config::Builder::from(sdk)
            .region(aws_config::Region::new(cfg.region.clone()))
            // Retries go through our own loop, inside the source's retry budget.
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        let (queue_url, dlq_url, wait_time) = match &cfg.kind {
            SourceKind::Sqs {
                queue_url,
                dlq_url,
                wait_time,
            } => (queue_url.clone(), dlq_url.clone(), *wait_time),
            _ => (String::new(), None, defaults::SQS_WAIT),
        };
        QueueSource {
            id: cfg.id.clone(),
            client: Client::from_conf(conf),
            queue_url,
            dlq_url,
            wait_time,
            retry_budget: cfg.retry_budget,
            limiter: RateLimiter::new(1.0),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    pub fn dlq_url(&self) -> Option<&str> {
        self.dlq_url.as_deref()
    }

    /// The long-poll wait of one receive.
    pub fn wait_time(&self) -> Duration {
        self.wait_time
    }

    pub(super) fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The shortest visibility timeout that is safe: a batch may take the retry budget (for
    /// its deletes) plus the commit; a shorter timeout lets SQS hand the batch out again
    /// while it is still being committed.
    pub fn required_visibility(&self) -> Duration {
        self.retry_budget + defaults::SQS_COMMIT_ALLOWANCE
    }

    /// A fresh retry budget for one receive cycle.
    pub fn budget(&self) -> RetryBudget {
        RetryBudget::new(self.retry_budget)
    }

    /// One long poll: up to 10 messages, each with its body read.
    ///
    /// # Errors
    ///
    /// A [`SourceError`] when ReceiveMessage keeps failing.
    pub async fn receive(
        &self,
        budget: &mut RetryBudget,
        stats: &mut FetchStats,
    ) -> Result<Vec<Received>, SourceError> {
        let wait = i32::try_from(self.wait_time.as_secs()).unwrap_or(20);
        let call = || async {
            self.client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(BATCH)
                .wait_time_seconds(wait)
                .send()
                .await
        };
        let out = self.send("ReceiveMessage", budget, stats, call).await?;
        let received: Vec<Received> = out
            .messages()
            .iter()
            .map(|m| Received {
                message_id: m.message_id().unwrap_or("(unknown)").to_owned(),
                receipt_handle: m.receipt_handle().unwrap_or_default().to_owned(),
                body: parse_body(m.body().unwrap_or_default()),
            })
            .collect();
        stats.events += received.iter().filter(|r| r.body.is_ok()).count() as u64;
        stats.bad += received.iter().filter(|r| r.body.is_err()).count() as u64;
        Ok(received)
    }

    /// Deletes `messages` (message ID, receipt handle) in one batch; returns the entries SQS
    /// did not delete.
    ///
    /// # Errors
    ///
    /// A [`SourceError`] when DeleteMessageBatch itself keeps failing.
    pub async fn delete(
        &self,
        messages: &[(&str, &str)],
        budget: &mut RetryBudget,
        stats: &mut FetchStats,
    ) -> Result<Vec<DeleteFailure>, SourceError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let mut entries = Vec::new();
        for (i, (_, handle)) in messages.iter().enumerate() {
            let entry = DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(*handle)
                .build()
                .map_err(|e| self.error(RetryClass::Permanent, e.to_string(), *stats))?;
            entries.push(entry);
        }
        let call = || async {
            self.client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries.clone()))
                .send()
                .await
        };
        let out = self.send("DeleteMessageBatch", budget, stats, call).await?;
        Ok(out
            .failed()
            .iter()
            .map(|f| DeleteFailure {
                message_id: f
                    .id()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| messages.get(i))
                    .map_or_else(|| f.id().to_owned(), |(id, _)| (*id).to_owned()),
                code: f.code().to_owned(),
                message: f.message().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    /// Reads the visibility timeout, the approximate number of messages and the retention of
    /// the queue at `url`.
    ///
    /// # Errors
    ///
    /// A [`SourceError`] when GetQueueAttributes keeps failing.
    pub async fn attributes(
        &self,
        url: &str,
        budget: &mut RetryBudget,
        stats: &mut FetchStats,
    ) -> Result<QueueAttributes, SourceError> {
        let call = || async {
            self.client
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::VisibilityTimeout)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::MessageRetentionPeriod)
                .attribute_names(QueueAttributeName::KmsMasterKeyId)
                .attribute_names(QueueAttributeName::Policy)
                .send()
                .await
        };
        let out = self.send("GetQueueAttributes", budget, stats, call).await?;
        let attrs = out.attributes();
        let text = |name: QueueAttributeName| {
            attrs
                .and_then(|a| a.get(&name))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let num = |name: QueueAttributeName| {
            attrs
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
        };
        Ok(QueueAttributes {
            visibility_timeout: num(QueueAttributeName::VisibilityTimeout).map(Duration::from_secs),
            messages: num(QueueAttributeName::ApproximateNumberOfMessages),
            retention: num(QueueAttributeName::MessageRetentionPeriod).map(Duration::from_secs),
            kms_key: text(QueueAttributeName::KmsMasterKeyId),
            policy: text(QueueAttributeName::Policy),
        })
    }

    async fn send<T, E, Fut>(
        &self,
        operation: &str,
        budget: &mut RetryBudget,
        stats: &mut FetchStats,
        call: impl FnMut() -> Fut,
    ) -> Result<T, SourceError>
    where
        Fut: std::future::Future<
            Output = Result<
                T,
                aws_smithy_runtime_api::client::result::SdkError<
                    E,
                    aws_smithy_runtime_api::client::orchestrator::HttpResponse,
                >,
            >,
        >,
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        let mut calls = CallStats::default();
        let sent =
            send_with_retries(&self.id, operation, MAX_RETRIES, budget, &mut calls, call).await;
        stats.add_calls(calls);
        sent.map_err(|(class, message)| {
            self.error(class, format!("{operation}: {message}"), *stats)
        })
    }

    fn error(&self, class: RetryClass, message: String, stats: FetchStats) -> SourceError {
        SourceError {
            source_id: self.id.clone(),
            class,
            message,
            stats,
        }
    }
}

/// An EventBridge envelope, or an SNS notification around one: only what is read.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    detail: Option<&'a RawValue>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

/// Reads one message body: the CloudTrail record of an EventBridge envelope, directly or
/// inside an SNS `Notification`.
///
/// # Errors
///
/// A [`Poison`] naming why the body is not a CloudTrail event.
pub fn parse_body(body: &str) -> Result<RawEvent, Poison> {
    parse_envelope(body, true)
}

fn parse_envelope(body: &str, sns_allowed: bool) -> Result<RawEvent, Poison> {
    let poison = |reason: String| Poison {
        reason,
        event_id: None,
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(poison(format!(
            "the body is {} bytes, over the {MAX_BODY_BYTES}-byte limit",
            body.len()
        )));
    }
    let env: Envelope<'_> = serde_json::from_str(body)
        .map_err(|e| poison(format!("the body is not a JSON object: {e}")))?;
    if let Some(detail) = env.detail {
        let record = detail.get();
        if !record.starts_with('{') {
            return Err(poison("the envelope's detail is not a JSON object".into()));
        }
        if record.len() > MAX_RECORD_BYTES {
            return Err(poison(format!(
                "the record is {} bytes, over the {MAX_RECORD_BYTES}-byte limit",
                record.len()
            )));
        }
        let event = check_record(record.to_owned(), None, None).map_err(|b| Poison {
            reason: b.reason,
            event_id: (b.event_id != "(unknown)").then_some(b.event_id),
        })?;
        let header = crate::event::RecordHeader::parse(&event.record).unwrap_or_default();
        if header.event_source.is_none() || header.event_name.is_none() {
            return Err(Poison {
                reason: "the detail is not a CloudTrail record (no eventSource or eventName)"
                    .into(),
                event_id: Some(event.event_id),
            });
        }
        return Ok(event);
    }
    match (env.kind.as_deref(), env.message) {
        (Some("Notification"), Some(inner)) if sns_allowed => parse_envelope(&inner, false)
            .map_err(|p| Poison {
                reason: format!("the SNS notification's message: {}", p.reason),
                ..p
            }),
        _ => Err(poison(
            "the body is neither an EventBridge envelope (no detail) nor an SNS notification of one"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> String {
        format!(
            r#"{{"eventID":"{id}","eventTime":"2026-01-01T00:00:00Z","eventSource":"iam.amazonaws.com","eventName":"AttachRolePolicy","recipientAccountId":"111122223333"}}"#
        )
    }

    #[test]
    fn an_eventbridge_envelope_gives_its_detail_without_an_account_field() {
        let body = format!(
            r#"{{"version":"0","id":"x","detail-type":"AWS API Call via CloudTrail","source":"aws.iam","time":"2026-01-01T00:00:00Z","region":"us-east-1","resources":[],"detail":{}}}"#,
            record("e1")
        );
        let ev = parse_body(&body).unwrap();
        assert_eq!(ev.event_id, "e1");
        assert_eq!(ev.account_id.as_deref(), Some("111122223333"));
        assert_eq!(ev.record, record("e1"));
    }

    #[test]
    fn an_sns_notification_of_an_envelope_is_unwrapped_once() {
        let env = format!(r#"{{"source":"aws.iam","detail":{}}}"#, record("e2"));
        let sns = serde_json::json!({"Type": "Notification", "Message": env}).to_string();
        assert_eq!(parse_body(&sns).unwrap().event_id, "e2");
        let twice = serde_json::json!({"Type": "Notification", "Message": sns}).to_string();
        assert!(parse_body(&twice).unwrap_err().reason.contains("SNS"));
    }

    #[test]
    fn poison_bodies_say_why() {
        for (body, why) in [
            ("not json".to_owned(), "not a JSON object"),
            (r#"{"source":"aws.iam"}"#.to_owned(), "no detail"),
            (r#"{"detail":[1]}"#.to_owned(), "not a JSON object"),
            (
                r#"{"detail":{"eventID":"e3","eventTime":"2026-01-01T00:00:00Z"}}"#.to_owned(),
                "not a CloudTrail record",
            ),
            (r#"{"detail":{"eventName":"X"}}"#.to_owned(), "no eventID"),
            (
                format!(r#"{{"detail":{{"pad":"{}"}}}}"#, "x".repeat(300 * 1024)),
                "byte limit",
            ),
        ] {
            let p = parse_body(&body).unwrap_err();
            assert!(p.reason.contains(why), "{why}: {p:?}");
        }
    }
}
