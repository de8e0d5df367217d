//! Alerts rolewatch makes itself rather than finds in CloudTrail: the `notify-test` alert,
//! the notices that a channel is failing or has recovered, and the notices about rolewatch's
//! own sight: a source it cannot read ("rolewatch cannot see"), its recovery, a coverage gap,
//! and the optional heartbeat.
//!
//! Every notice is a [`Notice`], recorded in the state like any alert (one outbox row per
//! channel; a channel's own notices go to the other channels) so that it survives a restart
//! and is retried on a channel that is down. Only the `notify-test` alert is sent directly.
//!
//! They are ordinary [`Alert`]s (built from a stored-alert shape with a small synthetic
//! record), so every channel renders them with the same code as real ones. What sets them
//! apart is their rule name: [`banner`] gives each channel the line to put first in the
//! subject and the body, so that nobody mistakes a test for a change to the role.

use serde_json::json;

use super::alert::Alert;
use crate::state::StoredAlert;
use crate::time::format_rfc3339_ms;

/// The rule of the `notify-test` alert.
pub const TEST_RULE: &str = "rolewatch-notify-test";
/// The rule of the "channel X is failing" notice.
pub const FAILING_RULE: &str = "rolewatch-channel-failing";
/// The rule of the "channel X recovered" notice.
pub const RECOVERED_RULE: &str = "rolewatch-channel-recovered";

/// The rule of the "rolewatch cannot see" notice about a source.
pub const SOURCE_BLIND_RULE: &str = "rolewatch-source-blind";
/// The rule of the notice that a source is read again.
pub const SOURCE_RECOVERED_RULE: &str = "rolewatch-source-recovered";
/// The rule of the notice about a coverage gap.
pub const COVERAGE_GAP_RULE: &str = "rolewatch-coverage-gap";
/// The rule of the heartbeat.
pub const HEARTBEAT_RULE: &str = "rolewatch-heartbeat";
/// The rule of the notice that an `[organization]` account is no longer watched.
pub const ACCOUNT_DROPPED_RULE: &str = "rolewatch-account-dropped";

/// What a test alert says, first, everywhere.
pub const TEST_BANNER: &str = "TEST \u{2014} not a real change";

/// The subject prefix (ASCII) and the first body line of a synthetic alert; `None` for an
/// alert found in CloudTrail.
pub fn banner(alert: &Alert) -> Option<(String, String)> {
    match alert.rule.as_str() {
        TEST_RULE => Some((
            "[TEST - not a real change]".to_owned(),
            format!("{TEST_BANNER}: `rolewatch notify-test` sent this to check the channel."),
        )),
        FAILING_RULE => Some((
            "[rolewatch channel failing]".to_owned(),
            "rolewatch cannot deliver alerts through one of its channels; alerts wait in its outbox and are retried.".to_owned(),
        )),
        RECOVERED_RULE => Some((
            "[rolewatch channel recovered]".to_owned(),
            "A rolewatch channel that was failing delivers again; the alerts that waited are being sent.".to_owned(),
        )),
        SOURCE_BLIND_RULE => Some((
            "[rolewatch cannot see]".to_owned(),
            format!(
                "rolewatch cannot see: {}",
                alert.action.error_message.as_deref().unwrap_or("a source is failing")
            ),
        )),
        SOURCE_RECOVERED_RULE => Some((
            "[rolewatch sees again]".to_owned(),
            format!(
                "rolewatch sees again: {}",
                alert.action.error_message.as_deref().unwrap_or("a failing source is read again")
            ),
        )),
        COVERAGE_GAP_RULE => Some((
            "[rolewatch coverage gap]".to_owned(),
            format!(
                "rolewatch coverage gap: {}",
                alert.action.error_message.as_deref().unwrap_or("events were not checked")
            ),
        )),
        ACCOUNT_DROPPED_RULE => Some((
            "[rolewatch stops watching an account]".to_owned(),
            format!(
                "rolewatch stops watching an account: {}",
                alert.action.error_message.as_deref().unwrap_or("an account left the organization")
            ),
        )),
        HEARTBEAT_RULE => Some((
            "[rolewatch heartbeat]".to_owned(),
            format!(
                "rolewatch heartbeat: {}",
                alert.action.error_message.as_deref().unwrap_or("rolewatch is running")
            ),
        )),
        _ => None,
    }
}

/// A notice rolewatch records in the state as an alert of its own (source id `rolewatch`),
/// so that the outbox delivers it through every channel, durably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub rule: &'static str,
    pub severity: &'static str,
    /// Unique per episode, so that recording it twice stores it once.
    pub event_id: String,
    pub event_name: &'static str,
    /// The synthetic CloudTrail-shaped record, JSON.
    pub record: String,
    /// The one-sentence summary (also the record's `errorMessage`).
    pub summary: String,
}

impl Notice {
    /// The source id of every notice.
    pub const SOURCE: &'static str = "rolewatch";

    /// The notice as the state records it: an alert of its own, with outbox rows for the
    /// channels the caller names.
    pub fn new_alert(&self, now_ms: i64) -> crate::state::NewAlert<'_> {
        crate::state::NewAlert {
            rule: self.rule,
            rules: vec![self.rule],
            severity: self.severity,
            origin: crate::state::Origin::Notice,
            found_by: crate::state::FoundBy::Notice,
            change_key: None,
            dedup_key: None,
            event_id: &self.event_id,
            event_name: self.event_name,
            event_time_ms: now_ms,
            source_id: Notice::SOURCE,
            record: &self.record,
            channels: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        rule: &'static str,
        severity: &'static str,
        event_id: String,
        event_name: &'static str,
        subject: &str,
        summary: String,
        extra: serde_json::Value,
        now_ms: i64,
    ) -> Notice {
        let mut record = json!({
            "eventVersion": "1.10",
            "eventTime": format_rfc3339_ms(now_ms),
            "eventSource": "rolewatch",
            "eventName": event_name,
            "eventID": event_id,
            "userIdentity": { "type": "rolewatch", "userName": format!("rolewatch on {}", hostname()) },
            "requestParameters": { "roleName": subject },
            "errorMessage": summary,
        });
        if let (Some(obj), serde_json::Value::Object(more)) = (record.as_object_mut(), extra) {
            obj.extend(more);
        }
        // A per-account source (`<source>@<account>`): the notice is about that account.
        if let Some(account) = subject
            .strip_prefix("source ")
            .and_then(crate::config::accounts::account_of_source)
        {
            if let Some(obj) = record.as_object_mut() {
                obj.insert("recipientAccountId".into(), json!(account));
            }
        }
        Notice {
            rule,
            severity,
            event_id,
            event_name,
            record: record.to_string(),
            summary,
        }
    }
}

/// "rolewatch cannot see": `source` has been failing since `since_ms`.
pub fn source_blind(
    source: &str,
    since_ms: i64,
    error: &str,
    failures: u32,
    now_ms: i64,
) -> Notice {
    Notice::new(
        SOURCE_BLIND_RULE,
        "critical",
        format!("rolewatch-source-blind-{source}-{since_ms}"),
        "SourceBlind",
        &format!("source {source}"),
        format!(
            "source {source} failing since {}: {error}",
            format_rfc3339_ms(since_ms)
        ),
        json!({ "errorCode": "SourceBlind", "rolewatchFailedPolls": failures }),
        now_ms,
    )
}

/// The recovery of `source`, blind since `since_ms`.
pub fn source_recovered(source: &str, since_ms: i64, now_ms: i64) -> Notice {
    Notice::new(
        SOURCE_RECOVERED_RULE,
        "info",
        format!("rolewatch-source-recovered-{source}-{since_ms}"),
        "SourceRecovered",
        &format!("source {source}"),
        format!(
            "source {source} is read again after failing since {}; events of that time are read now",
            format_rfc3339_ms(since_ms)
        ),
        json!({}),
        now_ms,
    )
}

/// A coverage gap of `source`: events in `[from_ms, to_ms]` were never checked.
pub fn coverage_gap(source: &str, from_ms: i64, to_ms: i64, reason: &str, now_ms: i64) -> Notice {
    Notice::new(
        COVERAGE_GAP_RULE,
        "critical",
        format!("rolewatch-coverage-gap-{source}-{from_ms}-{to_ms}"),
        "CoverageGap",
        &format!("source {source}"),
        format!(
            "source {source}: events from {} to {} were not checked ({reason}); look at them in the trail's S3 files",
            format_rfc3339_ms(from_ms),
            format_rfc3339_ms(to_ms)
        ),
        json!({ "errorCode": "CoverageGap" }),
        now_ms,
    )
}

/// An `[organization]` account watched until now is dropped (`why`: closed, suspended, gone
/// from the organization or from the filters); `label` is `id (name)` or the id.
/// `last_polled_ms`: the end of the account's last polled window, which names this drop
/// (the same drop reported again is the same notice); `None`: never polled, named by now.
pub fn account_dropped(
    id: &str,
    label: &str,
    why: &str,
    last_polled_ms: Option<i64>,
    now_ms: i64,
) -> Notice {
    let at = last_polled_ms.unwrap_or(now_ms);
    Notice::new(
        ACCOUNT_DROPPED_RULE,
        "high",
        format!("rolewatch-account-dropped-{id}-{at}"),
        "AccountDropped",
        &format!("account {label}"),
        format!("account {label} is no longer watched: {why}"),
        json!({ "errorCode": "AccountDropped", "recipientAccountId": id }),
        now_ms,
    )
}

/// The heartbeat: `summary` says what was seen since the start.
pub fn heartbeat(summary: String, now_ms: i64) -> Notice {
    Notice::new(
        HEARTBEAT_RULE,
        "info",
        format!("rolewatch-heartbeat-{now_ms}"),
        "Heartbeat",
        "rolewatch heartbeat",
        summary,
        json!({}),
        now_ms,
    )
}

fn stored(
    rule: &str,
    severity: &str,
    event_id: String,
    event_name: &str,
    now_ms: i64,
    record: serde_json::Value,
) -> StoredAlert {
    StoredAlert {
        id: 0,
        rule: rule.to_owned(),
        rules: vec![rule.to_owned()],
        severity: severity.to_owned(),
        origin: crate::state::Origin::Notice,
        found_by: crate::state::FoundBy::Notice,
        dedup_key: None,
        event_id,
        event_name: event_name.to_owned(),
        event_time_ms: now_ms,
        source_id: "rolewatch".to_owned(),
        detected_ms: now_ms,
        record: record.to_string(),
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The `notify-test` alert: clearly marked as a test, unique per run (its eventID holds the
/// time), so that a channel's deduplication does not swallow a second test.
pub fn test_alert(now_ms: i64) -> Alert {
    let event_id = format!("rolewatch-notify-test-{now_ms}");
    let record = json!({
        "eventVersion": "1.10",
        "eventTime": format_rfc3339_ms(now_ms),
        "eventSource": "rolewatch",
        "eventName": "NotifyTest",
        "eventID": event_id,
        "userIdentity": { "type": "rolewatch", "userName": format!("rolewatch on {}", hostname()) },
        "requestParameters": { "roleName": TEST_BANNER },
        "rolewatchNote": "TEST \u{2014} not a real change. This alert was sent by `rolewatch notify-test`; no IAM role was changed."
    });
    Alert::from_stored(
        &stored(TEST_RULE, "info", event_id, "NotifyTest", now_ms, record),
        now_ms,
    )
}

/// The notice that `channel` keeps failing, recorded for the other channels.
pub fn channel_failing(
    channel: &str,
    since_ms: i64,
    error: &str,
    pending: u64,
    now_ms: i64,
) -> Notice {
    Notice::new(
        FAILING_RULE,
        "high",
        format!("rolewatch-channel-failing-{channel}-{since_ms}"),
        "ChannelFailing",
        &format!("channel {channel}"),
        format!(
            "channel `{channel}` has been failing since {}: {error}",
            format_rfc3339_ms(since_ms)
        ),
        json!({
            "errorCode": "ChannelFailing",
            "rolewatchChannel": channel,
            "rolewatchPendingAlerts": pending,
            "rolewatchFailingSince": format_rfc3339_ms(since_ms),
        }),
        now_ms,
    )
}

/// The notice that `channel` delivers again, recorded for the other channels.
pub fn channel_recovered(channel: &str, since_ms: i64, now_ms: i64) -> Notice {
    Notice::new(
        RECOVERED_RULE,
        "info",
        format!("rolewatch-channel-recovered-{channel}-{since_ms}"),
        "ChannelRecovered",
        &format!("channel {channel}"),
        format!(
            "channel `{channel}` delivers again (failing since {})",
            format_rfc3339_ms(since_ms)
        ),
        json!({
            "rolewatchChannel": channel,
            "rolewatchFailingSince": format_rfc3339_ms(since_ms),
        }),
        now_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_alert_is_marked_everywhere_it_can_be() {
        let a = test_alert(1_700_000_000_000);
        let (subject, body) = banner(&a).unwrap();
        assert!(subject.is_ascii() && subject.contains("TEST"));
        assert!(body.starts_with(TEST_BANNER));
        assert_eq!(a.action.role_name.as_deref(), Some(TEST_BANNER));
        assert_ne!(a.event_id, test_alert(1_700_000_000_001).event_id);
    }

    #[test]
    fn blind_notice_says_rolewatch_cannot_see_with_the_source_and_error() {
        let n = source_blind("ct", 1_000, "503 ServiceUnavailable", 3, 2_000);
        let stored = stored(
            n.rule,
            n.severity,
            n.event_id.clone(),
            n.event_name,
            2_000,
            serde_json::from_str(&n.record).unwrap(),
        );
        let a = Alert::from_stored(&stored, 2_000);
        let (subject, body) = banner(&a).unwrap();
        assert!(subject.contains("cannot see"));
        assert!(
            body.starts_with("rolewatch cannot see: source ct failing since 1970-01-01T00:00:01"),
            "{body}"
        );
        assert!(body.ends_with(": 503 ServiceUnavailable"), "{body}");
        assert_ne!(
            n.event_id,
            source_blind("ct", 1_001, "x", 3, 2_000).event_id
        );
        assert_eq!(
            n.event_id,
            source_blind("ct", 1_000, "y", 4, 9_000).event_id
        );
    }

    #[test]
    fn failing_notice_names_the_channel_and_the_error() {
        let as_alert = |n: &Notice| {
            let stored = stored(
                n.rule,
                n.severity,
                n.event_id.clone(),
                n.event_name,
                2_000,
                serde_json::from_str(&n.record).unwrap(),
            );
            Alert::from_stored(&stored, 2_000)
        };
        let n = channel_failing("mail", 1_000, "connection refused", 3, 2_000);
        assert_eq!((n.rule, n.severity), (FAILING_RULE, "high"));
        let a = as_alert(&n);
        assert!(a.failed);
        assert!(a
            .action
            .error_message
            .as_deref()
            .unwrap()
            .contains("connection refused"));
        assert!(banner(&a).is_some());
        let r = channel_recovered("mail", 1_000, 3_000);
        assert_eq!((r.rule, r.severity), (RECOVERED_RULE, "info"));
        assert!(banner(&as_alert(&r)).is_some());
        // One notice per episode: recording it twice stores it once.
        assert_eq!(
            n.event_id,
            channel_failing("mail", 1_000, "timeout", 9, 5_000).event_id
        );
    }
}
