//! The PagerDuty channel: Events API v2 (`POST https://events.pagerduty.com/v2/enqueue`,
//! `events_url` to override), one `trigger` per alert ([`super::chat::pagerduty`]) with the
//! integration's routing key (a secret: never logged) and `dedup_key` = the alert's, so
//! that a retry or a resend updates the same incident instead of opening another.
//!
//! PagerDuty answers 202 when it accepted the event; 400 (an invalid event: retrying the
//! same one will not help) is permanent, reported and abandoned; 429 and 5xx are retried by
//! the outbox, honouring `Retry-After` when PagerDuty sends one.

use serde_json::Value;

use super::alert::Alert;
use super::chat;
use super::http::{classify, HttpClient, SecretUrl};
use super::notifier::{Delivered, SendError};
use super::smtp::Secret;
use crate::config::PagerDutyChannelConfig;

pub struct PagerDutyNotifier {
    name: String,
    url: SecretUrl,
    routing_key: Secret,
    client: HttpClient,
}

impl std::fmt::Debug for PagerDutyNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDutyNotifier")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("routing_key", &self.routing_key)
            .finish_non_exhaustive()
    }
}

/// The event PagerDuty gets, routing key included.
#[must_use]
pub fn event(alert: &Alert, routing_key: &str) -> Value {
    let mut v = chat::pagerduty(alert);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("routing_key".to_owned(), routing_key.into());
    }
    v
}

impl PagerDutyNotifier {
    /// Reads the routing key, builds the client. Connects to nothing.
    ///
    /// # Errors
    ///
    /// A routing key or `ca_file` that cannot be read; never the key itself.
    pub fn new(name: &str, cfg: &PagerDutyChannelConfig) -> Result<PagerDutyNotifier, String> {
        let routing_key = Secret::load_named(&cfg.routing_key, "routing_key")?;
        Ok(PagerDutyNotifier {
            name: name.to_owned(),
            url: SecretUrl::parse(&cfg.events_url, "events_url")?,
            routing_key,
            client: HttpClient::new(cfg.ca_file.as_deref(), cfg.timeout)?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends the `trigger`; `Ok` once PagerDuty answered 2xx (202).
    ///
    /// # Errors
    ///
    /// As [`classify`]; the routing key never appears in the text.
    pub async fn send(&self, alert: &Alert) -> Result<Delivered, SendError> {
        let body = serde_json::to_vec(&event(alert, self.routing_key.expose()))
            .map_err(|e| SendError::permanent(format!("cannot write the PagerDuty event: {e}")))?;
        let reply = self.client.post_json(&self.url, &[], body).await?;
        let key = self.routing_key.expose();
        classify(&reply, &format!("PagerDuty ({})", self.url.shown()))
            .map_err(|e| redact_key(e, key))?;
        let receipt = serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|v| {
                v.get("dedup_key")
                    .and_then(Value::as_str)
                    .map(|k| super::sanitize::ascii_line(k, 64))
            })
            .map(|k| format!("HTTP {} dedup_key {k}", reply.status.as_u16()))
            .or_else(|| Some(format!("HTTP {}", reply.status.as_u16())));
        Ok(Delivered { receipt })
    }

    /// DNS, TCP connect and TLS handshake with the Events API; sends no event.
    ///
    /// # Errors
    ///
    /// Retryable, naming the step.
    pub async fn check(&self) -> Result<(), SendError> {
        self.client.probe(&self.url).await
    }
}

/// The error without the routing key (PagerDuty may quote the event back).
fn redact_key(e: SendError, key: &str) -> SendError {
    let text = e.to_string();
    if key.is_empty() || !text.contains(key) {
        return e;
    }
    let clean = text.replace(key, "[routing key]");
    let out = if e.is_retryable() {
        SendError::retryable(clean)
    } else {
        SendError::permanent(clean)
    };
    match e.retry_after() {
        Some(w) => out.with_retry_after(w),
        None => out,
    }
}
