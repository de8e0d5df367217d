//! Alerts rolewatch makes itself rather than finds in CloudTrail: the `notify-test` alert and
//! the notices that a channel is failing or has recovered.
//!
//! They are ordinary [`Alert`]s (built from a stored-alert shape with a small synthetic
//! record), so every channel renders them with the same code as real ones. What sets them
//! apart is their rule name: [`banner`] gives each channel the line to put first in the
//! subject and the body, so that nobody mistakes a test for a change to the role.

use serde_json::json;

use super::alert::Alert;
use crate::engine::format_time_ms;
use crate::state::StoredAlert;

/// The rule of the `notify-test` alert.
pub const TEST_RULE: &str = "rolewatch-notify-test";
/// The rule of the "channel X is failing" notice.
pub const FAILING_RULE: &str = "rolewatch-channel-failing";
/// The rule of the "channel X recovered" notice.
pub const RECOVERED_RULE: &str = "rolewatch-channel-recovered";

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
        _ => None,
    }
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
        severity: severity.to_owned(),
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
        "eventTime": format_time_ms(now_ms),
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

/// The notice that `channel` keeps failing, sent through the other channels.
pub fn channel_failing(
    channel: &str,
    since_ms: i64,
    error: &str,
    pending: u64,
    now_ms: i64,
) -> Alert {
    let event_id = format!("rolewatch-channel-failing-{channel}-{since_ms}");
    let record = json!({
        "eventVersion": "1.10",
        "eventTime": format_time_ms(now_ms),
        "eventSource": "rolewatch",
        "eventName": "ChannelFailing",
        "eventID": event_id,
        "userIdentity": { "type": "rolewatch", "userName": format!("rolewatch on {}", hostname()) },
        "requestParameters": { "roleName": format!("channel {channel}"), "channel": channel, "pendingAlerts": pending, "failingSince": format_time_ms(since_ms) },
        "errorCode": "ChannelFailing",
        "errorMessage": format!("channel `{channel}` has been failing since {}: {error}", format_time_ms(since_ms)),
    });
    Alert::from_stored(
        &stored(
            FAILING_RULE,
            "high",
            event_id,
            "ChannelFailing",
            now_ms,
            record,
        ),
        now_ms,
    )
}

/// The notice that `channel` delivers again.
pub fn channel_recovered(channel: &str, since_ms: i64, now_ms: i64) -> Alert {
    let event_id = format!("rolewatch-channel-recovered-{channel}-{since_ms}");
    let record = json!({
        "eventVersion": "1.10",
        "eventTime": format_time_ms(now_ms),
        "eventSource": "rolewatch",
        "eventName": "ChannelRecovered",
        "eventID": event_id,
        "userIdentity": { "type": "rolewatch", "userName": format!("rolewatch on {}", hostname()) },
        "requestParameters": { "roleName": format!("channel {channel}"), "channel": channel, "failingSince": format_time_ms(since_ms) },
    });
    Alert::from_stored(
        &stored(
            RECOVERED_RULE,
            "info",
            event_id,
            "ChannelRecovered",
            now_ms,
            record,
        ),
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
    fn failing_notice_names_the_channel_and_the_error() {
        let a = channel_failing("mail", 1_000, "connection refused", 3, 2_000);
        assert!(a.failed);
        assert!(a
            .action
            .error_message
            .as_deref()
            .unwrap()
            .contains("connection refused"));
        assert!(banner(&a).is_some());
        assert!(banner(&channel_recovered("mail", 1_000, 3_000)).is_some());
    }
}
