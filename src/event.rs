//! The event as it travels: the leaf every stage shares. A source turns what an API returned
//! into [`RawEvent`]s (or [`BadEvent`]s for records that cannot be evaluated) for a [`Window`]
//! of time; the engine, the state and the notifiers read the same values, and
//! [`RecordHeader`] is the one reading of a record's identifying fields.

use serde::Deserialize;

/// A half-open time window `[start_ms, end_ms)` in unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// One event as fetched: its ID, time and name (read once, when the record is checked) and
/// the CloudTrail record's raw JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub event_id: String,
    pub event_time_ms: i64,
    /// `eventName`, empty when the record has none.
    pub event_name: String,
    /// `recipientAccountId`: the account whose trail recorded the event.
    pub account_id: Option<String>,
    pub record: String,
}

/// An event that cannot be evaluated, with the reason; it is logged, counted and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEvent {
    pub event_id: String,
    /// The API's own time for the event, when it gave one.
    pub event_time_ms: Option<i64>,
    pub reason: String,
}

/// The identifying fields of a CloudTrail record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RecordHeader {
    #[serde(rename = "eventID")]
    pub event_id: Option<String>,
    #[serde(rename = "eventName")]
    pub event_name: Option<String>,
    #[serde(rename = "eventTime")]
    pub event_time: Option<String>,
    #[serde(rename = "eventSource")]
    pub event_source: Option<String>,
    /// The account whose trail recorded the event.
    #[serde(rename = "recipientAccountId")]
    pub recipient_account_id: Option<String>,
}

impl RecordHeader {
    /// Reads the header fields of a record; `None` when the text is not a JSON object.
    pub fn parse(record: &str) -> Option<RecordHeader> {
        serde_json::from_str(record).ok()
    }

    /// `eventTime` as unix milliseconds.
    pub fn event_time_ms(&self) -> Option<i64> {
        self.event_time
            .as_deref()
            .and_then(crate::time::parse_rfc3339_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{format_rfc3339_ms, parse_rfc3339_ms};

    #[test]
    fn header_and_times() {
        let h = RecordHeader::parse(
            r#"{"eventID":"e1","eventName":"X","eventTime":"2024-05-01T12:00:00Z","other":[1]}"#,
        )
        .unwrap();
        assert_eq!(h.event_id.as_deref(), Some("e1"));
        assert_eq!(h.event_time_ms(), Some(1_714_564_800_000));
        assert_eq!(format_rfc3339_ms(1_714_564_800_000), "2024-05-01T12:00:00Z");
        assert_eq!(
            parse_rfc3339_ms("2024-05-01T12:00:00.250Z"),
            Some(1_714_564_800_250)
        );
        assert!(RecordHeader::parse("not json").is_none());
    }
}
