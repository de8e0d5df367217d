//! The stdout channel: one JSON object per alert on one line ([`render::json`]), flushed at
//! once, for a log shipper or a pipe. U+0085, U+2028 and U+2029 (which a record's fields may
//! hold, and which JSON leaves unescaped) are written as escapes, so that no reader that
//! splits lines on them cuts an alert in two. A synthetic alert (a `notify-test`, a channel notice)
//! carries a `"notice"` member saying what it is.

use std::io::Write;

use super::alert::Alert;
use super::notifier::{dedup_key, Delivered, SendError};
use super::{render, synthetic};

pub struct StdoutNotifier {
    name: String,
}

impl StdoutNotifier {
    pub fn new(name: &str) -> StdoutNotifier {
        StdoutNotifier {
            name: name.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The line for an alert (without the newline).
    ///
    /// # Errors
    ///
    /// When the JSON cannot be written (a bug), permanent.
    pub fn line(alert: &Alert) -> Result<String, SendError> {
        let mut value = render::json(alert);
        if let Some(obj) = value.as_object_mut() {
            obj.entry("dedup_key")
                .or_insert_with(|| dedup_key(alert).into());
            if let Some((_, notice)) = synthetic::banner(alert) {
                obj.insert("notice".to_owned(), notice.into());
            }
        }
        // Compact: one alert, one line, whatever the renderer's layout.
        serde_json::to_string(&value)
            .map(|line| crate::output::escape_line_breakers(&line).into_owned())
            .map_err(|e| SendError::permanent(format!("cannot write the alert's JSON: {e}")))
    }

    /// Writes the alert's line and flushes.
    ///
    /// # Errors
    ///
    /// When stdout cannot be written (retryable: a full pipe drains, a restarted reader
    /// comes back).
    pub fn send(&self, alert: &Alert) -> Result<Delivered, SendError> {
        let line = Self::line(alert)?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| SendError::retryable(format!("cannot write to stdout: {e}")))?;
        Ok(Delivered::default())
    }
}
