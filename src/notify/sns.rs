//! The SNS channel: one Publish per alert.
//!
//! - **Subject**: the rendered subject (printable ASCII, at most 100 characters, as SNS
//!   requires, and no `=?`: SNS puts it in the subject of the emails it sends, where an
//!   encoded word from an event field would be decoded), cleaned again here.
//! - **Message**: `MessageStructure = json`, so each kind of subscriber gets what it can use:
//!   the alert's JSON by default (SQS, Lambda, HTTP, Firehose, email-json), the plain-text
//!   body for `email` and the subject for `sms`. SNS takes at most 256 KB; when an alert
//!   would not fit, the raw record in the JSON is cut first, and the JSON says so
//!   (`record_cut`, `record_head`).
//! - **MessageAttributes** `severity`, `rule`, `event_name`, `account_id`, `dedup_key`
//!   (String, printable ASCII, bounded, no `=?`) so that subscribers can use filter policies.
//! - **`format = "chatbot"`**: the message is instead the custom-notification JSON of Amazon
//!   Q Developer in chat applications (formerly AWS Chatbot; [`super::chat::chatbot`]),
//!   without `MessageStructure`, so that the topic's chat configuration renders it in
//!   Slack or Teams with no webhook secret at all; subject and attributes as above.
//! - **FIFO topics** (`….fifo`) get `MessageDeduplicationId = dedup_key`: SNS then drops a
//!   resend after a crash within its five-minute window.
//!
//! Failures are classified by [`crate::aws::retry::classify`], the same function as for
//! every other AWS call, and retried a few times at once with its backoff; the outbox retries
//! later when those fail too.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client;
use backon::Retryable;
use serde_json::{json, Value};

use super::alert::Alert;
use super::notifier::{dedup_key, Delivered, SendError};
use super::sanitize::{self, SUBJECT_MAX_CHARS};
use super::{render, synthetic};
use crate::aws::retry::{backoff, classify};
use crate::config::{SnsChannelConfig, SnsFormat};

/// SNS's limit on a message, attributes included (262,144 bytes).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Room kept free for what SNS counts that we do not see exactly.
const SAFETY_BYTES: usize = 2 * 1024;

/// Immediate retries of one Publish before the outbox takes over.
const MAX_RETRIES: usize = 2;

/// The longest message attribute value.
const MAX_ATTRIBUTE_CHARS: usize = 256;

pub struct SnsNotifier {
    name: String,
    topic_arn: String,
    fifo: bool,
    format: SnsFormat,
    client: Client,
}

/// What one Publish carries, built without the network (unit-tested).
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub subject: String,
    /// The `MessageStructure = json` document.
    pub message: String,
    pub attributes: Vec<(&'static str, String)>,
    pub dedup_key: String,
    /// Whether the record had to be cut to fit.
    pub record_cut: bool,
    /// `MessageStructure = json` (the alert format); the chatbot format sends one message to
    /// every subscriber.
    pub structured: bool,
}

impl SnsNotifier {
    /// Whether the topic is FIFO (`….fifo`).
    pub fn is_fifo(&self) -> bool {
        self.fifo
    }

    pub fn new(name: &str, cfg: &SnsChannelConfig, sdk: &SdkConfig) -> SnsNotifier {
        let conf = aws_sdk_sns::config::Builder::from(sdk)
            .region(aws_config::Region::new(cfg.region.clone()))
            // Retries go through `classify` and `backoff`, like every other AWS call.
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        SnsNotifier {
            name: name.to_owned(),
            topic_arn: cfg.topic_arn.clone(),
            fifo: cfg.topic_arn.ends_with(".fifo"),
            format: cfg.format,
            client: Client::from_conf(conf),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Publishes the alert; `Ok` with SNS's MessageId once SNS accepted it.
    ///
    /// # Errors
    ///
    /// A [`SendError`] classified by [`classify`] (throttling, 5xx, timeouts and connection
    /// failures are retryable; authorization and validation errors are not).
    pub async fn send(&self, alert: &Alert) -> Result<Delivered, SendError> {
        let p = match self.format {
            SnsFormat::Alert => publication(alert)?,
            SnsFormat::Chatbot => chatbot_publication(alert)?,
        };
        let mut attributes = HashMap::new();
        for (k, v) in &p.attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| SendError::permanent(format!("message attribute {k}: {e}")))?;
            attributes.insert((*k).to_owned(), value);
        }
        let publish = || {
            let mut req = self
                .client
                .publish()
                .topic_arn(&self.topic_arn)
                .subject(&p.subject)
                .set_message_structure(p.structured.then(|| "json".to_owned()))
                .message(&p.message)
                .set_message_attributes(Some(attributes.clone()));
            if self.fifo {
                req = req
                    .message_deduplication_id(&p.dedup_key)
                    .message_group_id("rolewatch");
            }
            req.send()
        };
        let out = publish
            .retry(backoff(MAX_RETRIES))
            .sleep(tokio::time::sleep)
            .when(|e| classify(e).is_retryable())
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(Delivered {
            receipt: out.message_id().map(str::to_owned),
        })
    }

    /// GetTopicAttributes: the topic exists and these credentials may see it. Publishes
    /// nothing.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub async fn check(&self) -> Result<(), SendError> {
        self.client
            .get_topic_attributes()
            .topic_arn(&self.topic_arn)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error(&e))
    }
}

fn sdk_error<E>(
    e: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> SendError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    let class = classify(e);
    let text = match e {
        aws_smithy_runtime_api::client::result::SdkError::ServiceError(se) => {
            let err = se.err();
            format!(
                "SNS answered HTTP {}: {}{}",
                se.raw().status().as_u16(),
                err.code().unwrap_or("error"),
                err.message().map(|m| format!(": {m}")).unwrap_or_default()
            )
        }
        other => crate::aws::chain_text(other),
    };
    if class.is_retryable() {
        SendError::retryable(text)
    } else {
        SendError::permanent(text)
    }
}

/// An attribute value: printable ASCII, bounded, never empty (SNS refuses empty values).
fn attribute(value: Option<&str>) -> String {
    let v = sanitize::ascii_line(value.unwrap_or(""), MAX_ATTRIBUTE_CHARS);
    if v.is_empty() {
        "unknown".to_owned()
    } else {
        v
    }
}

/// Builds the Publish for an alert, within SNS's size limit.
///
/// # Errors
///
/// Permanent, when even a cut alert does not fit (cannot happen with the renderer's bounds).
pub fn publication(alert: &Alert) -> Result<Publication, SendError> {
    let key = dedup_key(alert);
    let banner = synthetic::banner(alert);
    let mut subject = render::subject(alert);
    let mut text = render::text(alert);
    if let Some((marker, line)) = &banner {
        subject = format!("{marker} {subject}");
        text = format!("{line}\n\n{text}");
    }
    let mut subject = sanitize::ascii_line(&subject, SUBJECT_MAX_CHARS);
    if subject.is_empty() {
        subject = "rolewatch alert".to_owned();
    }
    let mut attributes = vec![
        ("severity", attribute(Some(&alert.severity))),
        ("rule", attribute(Some(&alert.rule))),
        ("event_name", attribute(alert.action.event_name.as_deref())),
        (
            "account_id",
            attribute(
                alert
                    .recipient_account_id
                    .as_deref()
                    .or(alert.actor.account_id.as_deref()),
            ),
        ),
        ("dedup_key", key.clone()),
    ];
    if let Some(name) = &alert.account_name {
        attributes.push(("account_name", attribute(Some(name))));
    }
    // SNS counts each attribute's name, type and value.
    let attribute_bytes: usize = attributes
        .iter()
        .map(|(k, v)| k.len() + "String".len() + v.len())
        .sum();
    let budget = MAX_MESSAGE_BYTES
        .saturating_sub(attribute_bytes)
        .saturating_sub(subject.len())
        .saturating_sub(SAFETY_BYTES);

    let mut body = render::json(alert);
    if let Some(obj) = body.as_object_mut() {
        obj.insert("dedup_key".to_owned(), key.clone().into());
        if let Some((_, line)) = &banner {
            obj.insert("notice".to_owned(), line.clone().into());
        }
    }
    let message = structure(&body, &text, &subject)?;
    if message.len() <= budget {
        return Ok(Publication {
            subject,
            message,
            attributes,
            dedup_key: key,
            record_cut: false,
            structured: true,
        });
    }

    // Too big: the record goes first. Keep as much of it as fits, as text, and say so.
    let record_text = body
        .get("record")
        .filter(|r| !r.is_null())
        .map(Value::to_string)
        .unwrap_or_default();
    let record_bytes = record_text.len();
    if let Some(obj) = body.as_object_mut() {
        obj.insert("record".to_owned(), Value::Null);
        obj.remove("record_text");
        obj.insert(
            "record_cut".to_owned(),
            json!(format!(
                "the record ({record_bytes} bytes) did not fit in SNS's 256 KB limit: record_head holds its start; the whole record is in rolewatch's state (alert {})",
                alert.id
            )),
        );
        obj.insert("record_head".to_owned(), Value::String(String::new()));
    }
    let without = structure(&body, &text, &subject)?.len();
    // JSON escaping can grow text up to six times (\u00XX); count the escaped length.
    let room = budget.saturating_sub(without);
    // The head is escaped twice (inside the JSON alert, then inside the structure), which
    // can make it up to twelve times longer: shrink the cut in proportion until it fits.
    let mut take = room;
    let head = loop {
        let cut = cut_bytes(&record_text, take);
        let cost = serde_json::to_string(&serde_json::to_string(cut).unwrap_or_default())
            .map_or(usize::MAX, |s| s.len());
        if cost <= room || cut.is_empty() {
            break cut.to_owned();
        }
        let scaled = (take as u128 * room as u128 / cost as u128) as usize;
        take = scaled.min(cut.len().saturating_sub(1));
    };
    if let Some(obj) = body.as_object_mut() {
        obj.insert("record_head".to_owned(), Value::String(head));
    }
    let message = structure(&body, &text, &subject)?;
    if message.len() > budget {
        return Err(SendError::permanent(format!(
            "the alert does not fit in an SNS message even without its record ({} bytes)",
            message.len()
        )));
    }
    Ok(Publication {
        subject,
        message,
        attributes,
        dedup_key: key,
        record_cut: true,
        structured: true,
    })
}

/// The Publish of `format = "chatbot"`: the custom-notification JSON of Amazon Q Developer
/// in chat applications ([`super::chat::chatbot`]) as the message, the same subject and
/// message attributes as the alert format (so filter policies keep working).
///
/// # Errors
///
/// Permanent, when the JSON cannot be written or (it cannot: every part is bounded) it does
/// not fit.
pub fn chatbot_publication(alert: &Alert) -> Result<Publication, SendError> {
    let base = publication(alert)?;
    let message = serde_json::to_string(&super::chat::chatbot(alert))
        .map_err(|e| SendError::permanent(format!("cannot write the chatbot notification: {e}")))?;
    if message.len() + base.subject.len() + SAFETY_BYTES > MAX_MESSAGE_BYTES {
        return Err(SendError::permanent(format!(
            "the chatbot notification does not fit in an SNS message ({} bytes)",
            message.len()
        )));
    }
    Ok(Publication {
        message,
        record_cut: false,
        structured: false,
        ..base
    })
}

/// The `MessageStructure = json` document: the JSON by default, text for people.
fn structure(body: &Value, text: &str, subject: &str) -> Result<String, SendError> {
    let json_text = serde_json::to_string(body)
        .map_err(|e| SendError::permanent(format!("cannot write the alert's JSON: {e}")))?;
    let doc = json!({ "default": json_text, "email": text, "sms": subject });
    serde_json::to_string(&doc)
        .map_err(|e| SendError::permanent(format!("cannot write the SNS message: {e}")))
}

/// The longest prefix of `s` of at most `max` bytes, on a character boundary.
fn cut_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A standard topic takes publishes side by side; a FIFO topic, which keeps order, one
    /// after the other.
    #[test]
    fn only_a_standard_topic_sends_side_by_side() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let of = |arn: &str| {
            let cfg = crate::config::SnsChannelConfig {
                topic_arn: arn.into(),
                region: "us-east-1".into(),
                format: crate::config::SnsFormat::Alert,
            };
            crate::notify::notifier::Notifier::Sns(Box::new(SnsNotifier::new("t", &cfg, &sdk)))
                .in_flight()
        };
        assert_eq!(
            of("arn:aws:sns:us-east-1:123456789012:alerts"),
            crate::notify::notifier::SNS_IN_FLIGHT
        );
        assert_eq!(of("arn:aws:sns:us-east-1:123456789012:alerts.fifo"), 1);
    }
    use crate::state::StoredAlert;

    fn alert(record: &str) -> Alert {
        Alert::from_stored(
            &StoredAlert {
                id: 3,
                rule: "documented".into(),
                severity: "high".into(),
                event_id: "ev-1".into(),
                event_name: "AttachRolePolicy".into(),
                event_time_ms: 1_700_000_000_000,
                source_id: "s".into(),
                detected_ms: 1_700_000_060_000,
                record: record.into(),
                ..StoredAlert::default()
            },
            1_700_000_060_000,
        )
    }

    fn record(extra: &str) -> String {
        json!({
            "eventName": "AttachRolePolicy",
            "eventSource": "iam.amazonaws.com",
            "recipientAccountId": "111122223333",
            "userIdentity": {"type": "IAMUser", "userName": "alice", "accountId": "444455556666"},
            "requestParameters": {"roleName": "astronomer-remote-management", "padding": extra},
        })
        .to_string()
    }

    #[test]
    fn attributes_and_structure() {
        let p = publication(&alert(&record("x"))).unwrap();
        let attrs: HashMap<_, _> = p.attributes.iter().cloned().collect();
        assert_eq!(attrs["severity"], "high");
        assert_eq!(attrs["rule"], "documented");
        assert_eq!(attrs["event_name"], "AttachRolePolicy");
        assert_eq!(attrs["account_id"], "111122223333");
        assert_eq!(attrs["dedup_key"], p.dedup_key);
        assert!(!p.record_cut);
        let doc: Value = serde_json::from_str(&p.message).unwrap();
        assert!(doc["email"].as_str().unwrap().contains("AttachRolePolicy"));
        assert_eq!(doc["sms"], p.subject.as_str());
        let machine: Value = serde_json::from_str(doc["default"].as_str().unwrap()).unwrap();
        assert_eq!(machine["dedup_key"], p.dedup_key.as_str());
        assert_eq!(machine["record"]["requestParameters"]["padding"], "x");
        assert!(
            p.subject.is_ascii() && p.subject.len() <= 100,
            "{}",
            p.subject
        );
    }

    #[test]
    fn attribute_values_are_clean_and_never_empty() {
        let mut a = alert("{}");
        a.rule = "evil\r\nrule\u{202e}".into();
        a.severity = String::new();
        let p = publication(&a).unwrap();
        let attrs: HashMap<_, _> = p.attributes.iter().cloned().collect();
        assert!(!attrs["rule"].contains(['\r', '\n']), "{}", attrs["rule"]);
        assert!(attrs["rule"].is_ascii());
        assert_eq!(attrs["severity"], "unknown");
        assert_eq!(attrs["account_id"], "unknown");
    }

    #[test]
    fn a_huge_record_is_cut_and_says_so() {
        // 400 KB of quotes: each doubles (then quadruples) when escaped.
        let p = publication(&alert(&record(&"\"".repeat(400 * 1024)))).unwrap();
        assert!(p.record_cut);
        assert!(
            p.message.len() + p.subject.len() + 200 <= MAX_MESSAGE_BYTES,
            "{}",
            p.message.len()
        );
        let doc: Value = serde_json::from_str(&p.message).unwrap();
        let machine: Value = serde_json::from_str(doc["default"].as_str().unwrap()).unwrap();
        assert!(machine["record"].is_null());
        assert!(machine["record_cut"]
            .as_str()
            .unwrap()
            .contains("did not fit"));
        assert!(machine["record_head"].as_str().unwrap().len() > 1000);
        assert!(machine["record_head"]
            .as_str()
            .unwrap()
            .starts_with("{\"eventName\""));
        let p = publication(&alert(&record(&"é".repeat(300 * 1024)))).unwrap();
        assert!(p.record_cut && p.message.len() <= MAX_MESSAGE_BYTES);
    }
}
