//! The JSON line rolewatch prints for a match (by `check`, and by the stdout channel of
//! `run`): `{"rule","severity","eventID","eventName","eventTime","source","record"}`.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::engine::format_time_ms;

#[derive(Serialize)]
struct MatchLine<'a> {
    rule: &'a str,
    severity: &'a str,
    #[serde(rename = "eventID")]
    event_id: &'a str,
    #[serde(rename = "eventName")]
    event_name: &'a str,
    #[serde(rename = "eventTime")]
    event_time: String,
    source: &'a str,
    record: &'a RawValue,
}

/// One match as a compact JSON line (without the newline).
///
/// # Errors
///
/// When `record` is not valid JSON (sources only hand over records that are).
#[allow(clippy::too_many_arguments)]
pub fn match_line(
    rule: &str,
    severity: &str,
    event_id: &str,
    event_name: &str,
    event_time_ms: i64,
    source: &str,
    record: &str,
) -> anyhow::Result<String> {
    let compact;
    let raw: Box<RawValue> = match RawValue::from_string(record.to_owned()) {
        Ok(r) if !record.contains('\n') => r,
        _ => {
            // Re-serialise a record that spans lines so that the output stays one line.
            let v: serde_json::Value = serde_json::from_str(record)?;
            compact = serde_json::to_string(&v)?;
            RawValue::from_string(compact)?
        }
    };
    Ok(serde_json::to_string(&MatchLine {
        rule,
        severity,
        event_id,
        event_name,
        event_time: format_time_ms(event_time_ms),
        source,
        record: &raw,
    })?)
}
