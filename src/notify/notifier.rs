//! The seam between the outbox and the channels: [`Notifier`], one variant per channel type,
//! each with a `send` that returns only once the channel accepted the alert, and a `check`
//! that proves the channel is reachable without sending anything.
//!
//! A failure is a [`SendError`], classified once, here or in the channel, as retryable (the
//! relay is down, a 5xx, a timeout: try again later) or permanent (the relay refused this
//! message or our credentials: retrying will not help without an operator).

use std::fmt;

use aws_config::SdkConfig;

use super::alert::Alert;
use super::pagerduty::PagerDutyNotifier;
use super::smtp::SmtpNotifier;
use super::sns::SnsNotifier;
use super::stdout::StdoutNotifier;
use super::webhook::WebhookNotifier;
use crate::config::{ChannelConfig, ChannelKind};

/// Why a channel did not accept an alert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    retryable: bool,
    message: String,
    /// The channel asked not to be tried again before this long (HTTP 429 `Retry-After`).
    retry_after: Option<std::time::Duration>,
}

impl SendError {
    /// A failure worth another attempt later.
    pub fn retryable(message: impl Into<String>) -> SendError {
        SendError {
            retryable: true,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure a retry will not fix.
    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError {
            retryable: false,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, with the wait the channel asked for (the outbox never tries the row,
    /// nor the channel, before it).
    #[must_use]
    pub fn with_retry_after(mut self, wait: std::time::Duration) -> SendError {
        self.retry_after = Some(wait);
        self
    }

    /// The wait the channel asked for, if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// `retryable` or `permanent`, for logs.
    pub fn class(&self) -> &'static str {
        if self.retryable {
            "retryable"
        } else {
            "permanent"
        }
    }
}

/// What a channel said when it accepted an alert.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delivered {
    /// The channel's own receipt: the SNS MessageId, the SMTP Message-ID.
    pub receipt: Option<String>,
}

/// Why a channel could not be set up (a password or CA file that cannot be read).
#[derive(Debug, thiserror::Error)]
#[error("channel `{channel}`: {message}")]
pub struct BuildError {
    pub channel: String,
    pub message: String,
}

/// A configured channel, ready to send.
/// Publishes in flight at once on a standard SNS topic (SNS takes thousands per second).
pub const SNS_IN_FLIGHT: usize = 8;

pub enum Notifier {
    Stdout(StdoutNotifier),
    Sns(Box<SnsNotifier>),
    Smtp(Box<SmtpNotifier>),
    Webhook(Box<WebhookNotifier>),
    PagerDuty(Box<PagerDutyNotifier>),
    /// A scripted channel for the outbox's unit tests.
    #[cfg(test)]
    Fake(super::outbox::tests::FakeNotifier),
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("name", &self.name())
            .field("type", &self.type_name())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Builds the channel: reads its password and CA file, makes its client. Sends nothing.
    ///
    /// `sdk` is the shared AWS configuration; SNS channels need it.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when a secret or certificate cannot be read, or SNS has no AWS
    /// configuration.
    pub fn build(cfg: &ChannelConfig, sdk: Option<&SdkConfig>) -> Result<Notifier, BuildError> {
        let fail = |message: String| BuildError {
            channel: cfg.name.clone(),
            message,
        };
        Ok(match &cfg.kind {
            ChannelKind::Stdout => Notifier::Stdout(StdoutNotifier::new(&cfg.name)),
            ChannelKind::Sns(s) => {
                let sdk = sdk.ok_or_else(|| fail("no AWS configuration was loaded".into()))?;
                Notifier::Sns(Box::new(SnsNotifier::new(&cfg.name, s, sdk)))
            }
            ChannelKind::Smtp(s) => {
                Notifier::Smtp(Box::new(SmtpNotifier::new(&cfg.name, s).map_err(fail)?))
            }
            ChannelKind::Webhook(w) => {
                Notifier::Webhook(Box::new(WebhookNotifier::new(&cfg.name, w).map_err(fail)?))
            }
            ChannelKind::PagerDuty(p) => Notifier::PagerDuty(Box::new(
                PagerDutyNotifier::new(&cfg.name, p).map_err(fail)?,
            )),
        })
    }

    /// The channel's name: the outbox key.
    pub fn name(&self) -> &str {
        match self {
            Notifier::Stdout(n) => n.name(),
            Notifier::Sns(n) => n.name(),
            Notifier::Smtp(n) => n.name(),
            Notifier::Webhook(n) => n.name(),
            Notifier::PagerDuty(n) => n.name(),
            #[cfg(test)]
            Notifier::Fake(n) => n.name(),
        }
    }

    /// How many sends of this channel may be in flight at once. A standard SNS topic keeps
    /// no order anyway, and its round trips would otherwise pace a burst (one publish after
    /// another); every other channel — stdout, mail, chat, pages, a FIFO topic — sends one
    /// alert after the other, in the order of the changes.
    pub fn in_flight(&self) -> usize {
        match self {
            Notifier::Sns(n) if !n.is_fifo() => SNS_IN_FLIGHT,
            _ => 1,
        }
    }

    /// `stdout`, `sns`, `smtp`, `webhook` or `pagerduty`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Notifier::Stdout(_) => "stdout",
            Notifier::Sns(_) => "sns",
            Notifier::Smtp(_) => "smtp",
            Notifier::Webhook(_) => "webhook",
            Notifier::PagerDuty(_) => "pagerduty",
            #[cfg(test)]
            Notifier::Fake(_) => "fake",
        }
    }

    /// Sends one alert; `Ok` only once the channel accepted it.
    ///
    /// # Errors
    ///
    /// A classified [`SendError`].
    pub async fn send(&self, alert: &Alert) -> Result<Delivered, SendError> {
        match self {
            Notifier::Stdout(n) => n.send(alert),
            Notifier::Sns(n) => n.send(alert).await,
            Notifier::Smtp(n) => n.send(alert).await,
            Notifier::Webhook(n) => n.send(alert).await,
            Notifier::PagerDuty(n) => n.send(alert).await,
            #[cfg(test)]
            Notifier::Fake(n) => n.send(alert).await,
        }
    }

    /// Checks that the channel is reachable and would accept a message, without sending one
    /// (SNS: GetTopicAttributes; SMTP: connect, TLS, AUTH, NOOP, QUIT; webhook and PagerDuty:
    /// DNS, TCP connect and the TLS handshake with the receiver, no request).
    ///
    /// # Errors
    ///
    /// A classified [`SendError`].
    pub async fn check(&self) -> Result<(), SendError> {
        match self {
            Notifier::Stdout(_) => Ok(()),
            Notifier::Sns(n) => n.check().await,
            Notifier::Smtp(n) => n.check().await,
            Notifier::Webhook(n) => n.check().await,
            Notifier::PagerDuty(n) => n.check().await,
            #[cfg(test)]
            Notifier::Fake(n) => n.check(),
        }
    }
}

/// The alert's deduplication key (32 hex digits): for a change, of SHA-256 over its account
/// and eventID ([`crate::engine::change_dedup_key`]), whichever rules matched it; for a
/// notice (and alerts recorded before state v4), over the rule and the eventID. The same
/// change always gets the same key — across retries, resends after a crash and restarts — so
/// subscribers can drop repeats and mail clients thread them (the SMTP Message-ID is built
/// from it).
pub fn dedup_key(alert: &Alert) -> String {
    alert.dedup_key.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StoredAlert;

    fn alert(rule: &str, event_id: &str) -> Alert {
        Alert::from_stored(
            &StoredAlert {
                id: 1,
                rule: rule.into(),
                severity: "high".into(),
                event_id: event_id.into(),
                event_name: "AttachRolePolicy".into(),
                event_time_ms: 0,
                source_id: "s".into(),
                detected_ms: 0,
                record: "{}".into(),
                ..StoredAlert::default()
            },
            0,
        )
    }

    #[test]
    fn dedup_key_depends_on_rule_and_event_only() {
        // Notices and alerts of state v3: the rule and the eventID.
        let a = dedup_key(&alert("documented", "e-1"));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        let mut later = alert("documented", "e-1");
        later.id = 99;
        later.rendered_ms = 12345;
        assert_eq!(dedup_key(&later), a);
        assert_ne!(dedup_key(&alert("documented", "e-2")), a);
        assert_ne!(dedup_key(&alert("other", "e-1")), a);
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(dedup_key(&alert("ab", "c")), dedup_key(&alert("a", "bc")));
    }

    #[test]
    fn a_change_keeps_its_key_whichever_rules_matched() {
        let key = crate::engine::change_dedup_key("111122223333/e-1");
        let with = |rules: &[&str]| {
            dedup_key(&Alert::from_stored(
                &StoredAlert {
                    rule: rules[0].into(),
                    rules: rules.iter().map(|r| (*r).to_owned()).collect(),
                    dedup_key: Some(key.clone()),
                    event_id: "e-1".into(),
                    record: "{}".into(),
                    ..StoredAlert::default()
                },
                0,
            ))
        };
        assert_eq!(with(&["documented"]), key);
        assert_eq!(with(&["complete", "documented"]), key);
    }

    #[test]
    fn send_errors_say_their_class() {
        assert!(SendError::retryable("x").is_retryable());
        assert!(!SendError::permanent("x").is_retryable());
        assert_eq!(SendError::permanent("no").to_string(), "no");
    }
}
