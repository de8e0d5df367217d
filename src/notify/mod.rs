//! Notifications: the alert model, its renderings, and (with later work) the channels that
//! deliver them.
//!
//! * [`alert`]: [`alert::Alert`], built from a stored match; every field optional.
//! * [`render`]: subject, plain text, HTML and JSON of an alert, golden-tested.
//! * [`sanitize`]: making event-derived strings safe for a subject, a body or a header.
//! * [`notifier`]: the seam, [`Notifier`]: one variant per channel type, each with a `send`
//!   that returns once the channel accepted the alert and a side-effect-free `check`;
//!   failures are [`SendError`]s, classified retryable or permanent.
//! * [`stdout`], [`sns`], [`smtp`], [`webhook`], [`pagerduty`]: the channels.
//! * [`chat`]: the Slack, Teams, PagerDuty and Amazon Q Developer (AWS Chatbot) payloads.
//! * [`http`]: the HTTPS client the webhook and PagerDuty channels share (timeouts, test CA,
//!   status classification, `Retry-After`, redaction of the secret URL).
//! * [`outbox`]: the delivery loop over the state's outbox: mark delivered only after the
//!   channel accepted, retry with backoff, report a channel that keeps failing.
//! * [`synthetic`]: alerts rolewatch makes itself (`notify-test`, channel notices).

pub mod alert;
pub mod chat;
pub mod http;
pub mod notifier;
pub mod outbox;
pub mod pagerduty;
pub mod render;
pub mod sanitize;
pub mod smtp;
pub mod sns;
pub mod stdout;
pub mod synthetic;
pub mod webhook;

pub use notifier::{dedup_key, BuildError, Delivered, Notifier, SendError};

#[cfg(test)]
mod tests;
