//! Test data: the vendor's names, times, CloudTrail records, and putting records into moto's
//! CloudWatch Logs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::servers::{cloudtrail_record, http, Moto};

pub const ROLE: &str = "astronomer-remote-management";

pub const POLICY_ARN: &str = "arn:aws:iam::111122223333:policy/AstronomerCrossAccountRole";

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as i64
}

pub fn rfc3339(secs: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs as u64)).to_string()
}

/// A record of `event_name` on a role other than the vendor's (a near miss).
pub fn other_role_record(event_id: &str, event_name: &str, time: i64) -> Value {
    let mut r = cloudtrail_record(event_id, event_name, time);
    r["requestParameters"]["roleName"] = json!("ci-deployer");
    r
}

/// A policy-version record (`CreatePolicyVersion`, `SetPolicyVersion`) on `policy_arn`.
pub fn policy_record(event_id: &str, event_name: &str, time: i64, policy_arn: &str) -> Value {
    let mut r = cloudtrail_record(event_id, event_name, time);
    r["requestParameters"] = json!({"policyArn": policy_arn, "versionId": "v3"});
    r
}

/// A CloudWatch Logs JSON-protocol call to moto.
#[track_caller]
pub fn logs_call(moto: &Moto, operation: &str, body: &Value) -> Value {
    json_call(moto, "logs", "Logs_20140328", operation, body)
}

/// An AWS Organizations JSON-protocol call to moto, as the account of moto's static test key.
#[track_caller]
pub fn org_call(moto: &Moto, operation: &str, body: &Value) -> Value {
    json_call(
        moto,
        "organizations",
        "AWSOrganizationsV20161128",
        operation,
        body,
    )
}

/// A JSON-protocol (1.1) call of `service` to moto: `X-Amz-Target` is `prefix.operation`;
/// the reply's JSON (null when empty), a 200 required.
#[track_caller]
fn json_call(moto: &Moto, service: &str, prefix: &str, operation: &str, body: &Value) -> Value {
    let target = format!("{prefix}.{operation}");
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host;x-amz-date;x-amz-target, Signature=0"
    );
    let reply = http(
        moto.port(),
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", &target),
            ("Authorization", &authorization),
            ("X-Amz-Date", "20260101T000000Z"),
        ],
        &serde_json::to_vec(body).unwrap(),
    )
    .unwrap_or_else(|e| panic!("{operation} on moto: {e}"));
    assert_eq!(
        reply.status,
        200,
        "{operation}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    if reply.body.is_empty() {
        Value::Null
    } else {
        reply.json()
    }
}

/// What moto's STS was asked: (account, external id, session name) per AssumeRole, sorted
/// (moto does not check ExternalIds; its `/moto-api/data.json` shows what was sent).
pub fn moto_assumed_roles(moto: &Moto) -> Vec<(String, String, String)> {
    let data = http(moto.port(), "GET", "/moto-api/data.json", &[], b"")
        .unwrap()
        .json();
    let mut seen: Vec<(String, String, String)> = data["sts"]["AssumedRole"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["account_id"].as_str().unwrap_or_default().to_owned(),
                r["external_id"].as_str().unwrap_or_default().to_owned(),
                r["session_name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.sort();
    seen
}

/// Puts `records` (each with its eventTime as the timestamp) into `stream`, oldest first, in
/// batches.
pub fn put_records(moto: &Moto, group: &str, stream: &str, records: &[Value]) {
    let mut events: Vec<(i64, String)> = records
        .iter()
        .map(|r| {
            let t = humantime::parse_rfc3339(r["eventTime"].as_str().unwrap())
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            (t, serde_json::to_string(r).unwrap())
        })
        .collect();
    events.sort();
    for batch in events.chunks(2000) {
        let log_events: Vec<Value> = batch
            .iter()
            .map(|(t, m)| json!({"timestamp": t, "message": m}))
            .collect();
        let reply = logs_call(
            moto,
            "PutLogEvents",
            &json!({"logGroupName": group, "logStreamName": stream, "logEvents": log_events}),
        );
        assert!(
            reply.get("rejectedLogEventsInfo").is_none(),
            "moto rejected events: {reply}"
        );
    }
}
