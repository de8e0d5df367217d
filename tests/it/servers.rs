//! The test servers themselves, without the binary: raw HTTP exactly as the SDK sends it, and
//! the real `aws-sdk-cloudtrail` client.

use serde_json::{json, Value};

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

const SDK_TARGET: &str = "CloudTrail_20131101.LookupEvents";
/// The longer target header boto3 sends.
const BOTO_TARGET: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents";
const T0: i64 = 1_760_000_000;

/// A LookupEvents call with the SDK's headers and body.
fn lookup(server: &LookupServer, body: &Value) -> HttpReply {
    lookup_with_target(server, SDK_TARGET, body)
}

fn lookup_with_target(server: &LookupServer, target: &str, body: &Value) -> HttpReply {
    let body = serde_json::to_vec(body).expect("body serialises");
    http(
        server.port(),
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", target),
            ("X-Amz-User-Agent", "aws-sdk-rust/1 api/cloudtrail/1"),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/cloudtrail/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0"),
            ("X-Amz-Date", "20260101T000000Z"),
        ],
        &body,
    )
    .expect("the LookupEvents server answers")
}

#[track_caller]
fn assert_error(reply: &HttpReply, status: u16, code: &str) {
    assert_eq!(
        reply.status,
        status,
        "body: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["__type"], code);
    assert!(reply.json()["message"].is_string());
    assert_eq!(
        reply.header("Content-Type"),
        Some("application/x-amz-json-1.1")
    );
}

fn ids(reply: &Value) -> Vec<String> {
    reply["Events"]
        .as_array()
        .expect("Events is an array")
        .iter()
        .map(|e| e["EventId"].as_str().expect("EventId").to_owned())
        .collect()
}

/// 120 events one second apart from `T0`: `ev-000` … `ev-119`.
fn hundred_twenty(server: &LookupServer) {
    let records: Vec<Value> = (0..120)
        .map(|i| {
            let name = if i % 3 == 0 {
                "DetachRolePolicy"
            } else {
                "AttachRolePolicy"
            };
            cloudtrail_record(&format!("ev-{i:03}"), name, T0 + i)
        })
        .collect();
    assert_eq!(server.add_events(&records), 120);
}

#[test]
fn lookup_pages_are_50_50_20_newest_first_and_tokens_need_identical_params() {
    let server = LookupServer::start();
    hundred_twenty(&server);
    let params = json!({"StartTime": T0, "EndTime": T0 + 119, "MaxResults": 50});

    let mut all = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = params.clone();
        if let Some(token) = &token {
            body["NextToken"] = json!(token);
        }
        let reply = lookup(&server, &body);
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("Content-Type"),
            Some("application/x-amz-json-1.1")
        );
        let page = reply.json();
        sizes.push(page["Events"].as_array().unwrap().len());
        all.extend(ids(&page));
        match page.get("NextToken") {
            Some(next) => token = Some(next.as_str().unwrap().to_owned()),
            None => break,
        }
    }
    assert_eq!(sizes, [50, 50, 20]);
    let expected: Vec<String> = (0..120).rev().map(|i| format!("ev-{i:03}")).collect();
    assert_eq!(all, expected, "newest first, each event once");

    // A token is valid only with the parameters that produced it.
    let first = lookup(&server, &params).json();
    let token = first["NextToken"].clone();
    for changed in [
        json!({"StartTime": T0 + 1, "EndTime": T0 + 119, "MaxResults": 50}),
        json!({"StartTime": T0, "EndTime": T0 + 118, "MaxResults": 50}),
        json!({"StartTime": T0, "EndTime": T0 + 119, "MaxResults": 49}),
        json!({"StartTime": T0, "EndTime": T0 + 119, "MaxResults": 50,
               "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "AttachRolePolicy"}]}),
    ] {
        let mut body = changed;
        body["NextToken"] = token.clone();
        assert_error(&lookup(&server, &body), 400, "InvalidNextTokenException");
    }
    let mut garbage = params.clone();
    garbage["NextToken"] = json!("not-a-token");
    assert_error(&lookup(&server, &garbage), 400, "InvalidNextTokenException");

    // The record comes back as CloudTrail's compact JSON string, with the derived fields.
    let newest = &first["Events"][0];
    assert_eq!(newest["EventId"], "ev-119");
    assert_eq!(newest["EventName"], "AttachRolePolicy");
    assert_eq!(newest["EventSource"], "iam.amazonaws.com");
    assert_eq!(newest["Username"], "terraform-ci");
    assert_eq!(newest["ReadOnly"], "false");
    assert_eq!(newest["AccessKeyId"], "AKIAEXAMPLEKEY123456");
    assert_eq!(newest["EventTime"].as_f64(), Some((T0 + 119) as f64));
    assert_eq!(
        newest["Resources"],
        // In requestParameters order; serde_json sends object keys sorted.
        json!([
            {"ResourceType": "AWS::IAM::Policy", "ResourceName": "arn:aws:iam::aws:policy/AdministratorAccess"},
            {"ResourceType": "AWS::IAM::Role", "ResourceName": "astronomer-remote-management"}
        ])
    );
    let record = cloudtrail_record("ev-119", "AttachRolePolicy", T0 + 119);
    assert_eq!(
        newest["CloudTrailEvent"].as_str(),
        Some(serde_json::to_string(&record).unwrap().as_str())
    );
}

#[test]
fn lookup_time_window_is_inclusive_and_accepts_fractional_seconds() {
    let server = LookupServer::start();
    hundred_twenty(&server);
    let reply = lookup(&server, &json!({"StartTime": T0 + 10, "EndTime": T0 + 14}));
    assert_eq!(
        ids(&reply.json()),
        ["ev-014", "ev-013", "ev-012", "ev-011", "ev-010"]
    );
    let reply = lookup(
        &server,
        &json!({"StartTime": T0 as f64 + 9.5, "EndTime": T0 as f64 + 11.5}),
    );
    assert_eq!(ids(&reply.json()), ["ev-011", "ev-010"]);
    let reply = lookup(&server, &json!({"StartTime": T0 - 100, "EndTime": T0 - 1}));
    assert_eq!(
        reply.json(),
        json!({"Events": []}),
        "no NextToken on an empty last page"
    );
    let reply = lookup(&server, &json!({"StartTime": T0 + 5, "EndTime": T0}));
    assert_error(&reply, 400, "InvalidTimeRangeException");
    for max in [0, 51] {
        let reply = lookup(
            &server,
            &json!({"StartTime": T0, "EndTime": T0 + 5, "MaxResults": max}),
        );
        assert_error(&reply, 400, "InvalidMaxResultsException");
    }
    // boto3's longer target works too.
    let reply = lookup_with_target(
        &server,
        BOTO_TARGET,
        &json!({"StartTime": T0, "EndTime": T0}),
    );
    assert_eq!(ids(&reply.json()), ["ev-000"]);
}

#[test]
fn lookup_allows_one_attribute_and_filters_by_it() {
    let server = LookupServer::start();
    hundred_twenty(&server);
    let two = json!({"StartTime": T0, "EndTime": T0 + 119, "LookupAttributes": [
        {"AttributeKey": "EventName", "AttributeValue": "AttachRolePolicy"},
        {"AttributeKey": "EventSource", "AttributeValue": "iam.amazonaws.com"}
    ]});
    assert_error(
        &lookup(&server, &two),
        400,
        "InvalidLookupAttributesException",
    );
    let unknown = json!({"LookupAttributes": [{"AttributeKey": "Region", "AttributeValue": "x"}]});
    assert_error(
        &lookup(&server, &unknown),
        400,
        "InvalidLookupAttributesException",
    );

    let by_name = |name: &str| {
        json!({"StartTime": T0, "EndTime": T0 + 119, "MaxResults": 50, "LookupAttributes": [
            {"AttributeKey": "EventName", "AttributeValue": name}]})
    };
    let detach = lookup(&server, &by_name("DetachRolePolicy")).json();
    let expected: Vec<String> = (0..120)
        .rev()
        .filter(|i| i % 3 == 0)
        .map(|i| format!("ev-{i:03}"))
        .collect();
    assert_eq!(ids(&detach), expected);
    assert!(detach.get("NextToken").is_none());

    // 80 AttachRolePolicy events: two pages through the attribute's own index.
    let first = lookup(&server, &by_name("AttachRolePolicy")).json();
    assert_eq!(ids(&first).len(), 50);
    let mut next = by_name("AttachRolePolicy");
    next["NextToken"] = first["NextToken"].clone();
    let second = lookup(&server, &next).json();
    assert_eq!(ids(&second).len(), 30);
    assert!(second.get("NextToken").is_none());

    for (key, value, count) in [
        ("ResourceName", "astronomer-remote-management", 120),
        ("ResourceType", "AWS::IAM::Policy", 120),
        ("Username", "terraform-ci", 120),
        ("ReadOnly", "false", 120),
        ("ReadOnly", "true", 0),
        ("EventId", "ev-042", 1),
        ("AccessKeyId", "AKIAEXAMPLEKEY123456", 120),
        ("EventSource", "sts.amazonaws.com", 0),
    ] {
        let mut total = 0;
        let mut body = json!({"StartTime": T0, "EndTime": T0 + 119, "LookupAttributes": [
            {"AttributeKey": key, "AttributeValue": value}]});
        loop {
            let page = lookup(&server, &body).json();
            total += ids(&page).len();
            match page.get("NextToken") {
                Some(token) => body["NextToken"] = token.clone(),
                None => break,
            }
        }
        assert_eq!(total, count, "{key} = {value}");
    }
}

#[test]
fn lookup_throttling_fault_is_http_400_throttling_exception() {
    let server = LookupServer::start();
    hundred_twenty(&server);
    server.faults(json!({"throttle_next": 2}));
    let body = json!({"StartTime": T0, "EndTime": T0 + 119});
    for _ in 0..2 {
        assert_error(&lookup(&server, &body), 400, "ThrottlingException");
    }
    assert_eq!(lookup(&server, &body).status, 200);
    let stats = server.stats();
    assert_eq!(stats["throttled"], 2);
    assert_eq!(stats["requests_total"], 3);

    // A sliding-window rate limit, like the account's 2 requests per second.
    server.reset();
    server.faults(json!({"rate_limit_per_sec": 2}));
    let statuses: Vec<u16> = (0..4).map(|_| lookup(&server, &body).status).collect();
    assert_eq!(&statuses[..2], [200, 200]);
    assert!(statuses[2..].iter().all(|&s| s == 400), "{statuses:?}");
    assert!(server.stats()["max_requests_in_1s"].as_u64().unwrap() >= 4);
}

#[test]
fn lookup_5xx_and_delay_faults() {
    let server = LookupServer::start();
    hundred_twenty(&server);
    let body = json!({"StartTime": T0, "EndTime": T0 + 119});
    server.faults(json!({"error_5xx_next": 1}));
    assert_error(&lookup(&server, &body), 503, "ServiceUnavailableException");
    server.faults(json!({"error_5xx_next": 1, "status_5xx": 500}));
    assert_error(&lookup(&server, &body), 500, "InternalFailure");
    assert_eq!(lookup(&server, &body).status, 200);
    assert_eq!(server.stats()["errors_5xx"], 2);

    server.faults(json!({"delay_ms": 400, "delay_next": 1}));
    let started = Instant::now();
    assert_eq!(lookup(&server, &body).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(lookup(&server, &body).status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "only the next reply is delayed"
    );
}

#[test]
fn lookup_late_events_appear_inside_already_polled_windows() {
    let server = LookupServer::start();
    server.add_events(&[cloudtrail_record("on-time", "AttachRolePolicy", T0 + 10)]);
    server.add_event_with(json!({
        "record": cloudtrail_record("late", "AttachRolePolicy", T0 + 5),
        "visible_after_ms": 1500,
    }));
    let body = json!({"StartTime": T0, "EndTime": T0 + 60});
    assert_eq!(ids(&lookup(&server, &body).json()), ["on-time"]);
    let stats = server.stats();
    assert_eq!(
        (
            stats["events_total"].as_u64(),
            stats["events_visible"].as_u64()
        ),
        (Some(2), Some(1))
    );
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(ids(&lookup(&server, &body).json()), ["on-time", "late"]);
}

#[test]
fn lookup_passes_a_malformed_cloudtrail_event_through_verbatim() {
    let server = LookupServer::start();
    let raw = "{\"eventVersion\":\"1.10\",\"eventID\":\"trunc";
    server.add_event_with(json!({
        "cloudtrail_event_raw": raw,
        "event_id": "malformed-1",
        "event_name": "AttachRolePolicy",
        "event_time": T0 + 1,
    }));
    // An ISO-8601 event_time overrides the record's eventTime (T0).
    let iso = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs((T0 + 2) as u64),
    )
    .to_string();
    server.add_event_with(json!({
        "record": cloudtrail_record("overridden", "AttachRolePolicy", T0),
        "cloudtrail_event_raw": "not json at all",
        "event_time": iso,
    }));
    let page = lookup(&server, &json!({"StartTime": T0 - 10, "EndTime": T0 + 10})).json();
    assert_eq!(ids(&page), ["overridden", "malformed-1"]);
    assert_eq!(page["Events"][0]["CloudTrailEvent"], "not json at all");
    assert_eq!(
        page["Events"][0]["EventTime"].as_f64(),
        Some((T0 + 2) as f64)
    );
    assert_eq!(page["Events"][1]["CloudTrailEvent"], raw);
    assert_eq!(page["Events"][1]["EventName"], "AttachRolePolicy");
}

#[test]
fn lookup_stats_count_requests_and_describe_recent_ones() {
    let server = LookupServer::start();
    hundred_twenty(&server);
    let attribute = json!({"AttributeKey": "EventName", "AttributeValue": "AttachRolePolicy"});
    let body = json!({"StartTime": T0, "EndTime": T0 + 119, "LookupAttributes": [attribute]});
    let first = lookup(&server, &body).json();
    let mut next = body.clone();
    next["NextToken"] = first["NextToken"].clone();
    assert_eq!(lookup(&server, &next).status, 200);
    let unknown = http(
        server.port(),
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "CloudTrail_20131101.DescribeTrails"),
        ],
        b"{}",
    )
    .unwrap();
    assert_error(&unknown, 400, "UnknownOperationException");

    let stats = server.stats();
    assert_eq!(stats["requests_total"], 3);
    assert_eq!(stats["by_operation"]["LookupEvents"], 2);
    assert_eq!(stats["by_operation"]["DescribeTrails"], 1);
    assert_eq!(stats["errors_4xx"], 1);
    assert!(stats["max_requests_in_1s"].as_u64().unwrap() >= 1);
    let recent = stats["recent_requests"].as_array().unwrap();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[0]["attribute"], attribute);
    assert_eq!(recent[0]["start_time"], T0);
    assert_eq!(recent[0]["end_time"], T0 + 119);
    assert_eq!(recent[0]["token"], false);
    assert_eq!(recent[0]["returned"], 50);
    assert_eq!(recent[1]["token"], true);
    assert_eq!(recent[1]["returned"], 30);
    assert_eq!(recent[2]["status"], 400);
    assert!(recent[0]["time"].as_f64().unwrap() > 1.7e9);

    server.reset();
    let stats = server.stats();
    assert_eq!(
        (
            stats["requests_total"].as_u64(),
            stats["events_total"].as_u64()
        ),
        (Some(0), Some(0))
    );
}

#[test]
fn lookup_server_exits_on_sigterm() {
    let mut server = LookupServer::start();
    let pid = server.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = server.child.try_wait().expect("wait works") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn generator_output_loads_in_bulk_and_is_deterministic() {
    let generate = |seed: &str| {
        let output = Command::new(python())
            .arg(repo_root().join("tests/fixtures/cloudtrail/generate.py"))
            .args(["--count", "3000", "--seed", seed, "--watched-share", "0.05"])
            .args([
                "--start",
                "2026-01-01T00:00:00Z",
                "--end",
                "2026-01-08T00:00:00Z",
            ])
            .output()
            .expect("the generator runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    let lines = generate("7");
    assert_eq!(lines, generate("7"), "the same seed gives the same bytes");
    assert_ne!(lines, generate("8"));

    let records: Vec<Value> = lines
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("each line is a record"))
        .collect();
    assert_eq!(records.len(), 3000);
    let unique: std::collections::HashSet<&str> = records
        .iter()
        .map(|r| r["eventID"].as_str().unwrap())
        .collect();
    assert_eq!(unique.len(), 3000);
    for record in &records {
        assert_eq!(record["awsRegion"], "us-east-1");
        let account = record["recipientAccountId"].as_str().unwrap();
        assert!(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()));
    }
    let watched = records
        .iter()
        .filter(|r| {
            let params = &r["requestParameters"];
            let on_role = params["roleName"] == "astronomer-remote-management";
            let on_policy = params["policyArn"]
                .as_str()
                .is_some_and(|arn| arn.ends_with("policy/AstronomerCrossAccountRole"));
            r["readOnly"] == false && (on_role || on_policy)
        })
        .count();
    assert!((50..=250).contains(&watched), "{watched} watched of 3000");

    let server = LookupServer::start();
    assert_eq!(server.add_jsonl(&lines), 3000);
    // 2026-01-01T00:00:00Z .. 2026-01-08T00:00:00Z
    let window = json!({"StartTime": 1_767_225_600, "EndTime": 1_767_830_400});
    let mut count = 0;
    let mut last_time = f64::INFINITY;
    let mut body = window.clone();
    loop {
        let page = lookup(&server, &body).json();
        for event in page["Events"].as_array().unwrap() {
            let time = event["EventTime"].as_f64().unwrap();
            assert!(time <= last_time, "newest first");
            last_time = time;
            let record: Value =
                serde_json::from_str(event["CloudTrailEvent"].as_str().unwrap()).unwrap();
            assert_eq!(record["eventID"], event["EventId"]);
            count += 1;
        }
        match page.get("NextToken") {
            Some(token) => body["NextToken"] = token.clone(),
            None => break,
        }
    }
    assert_eq!(count, 3000);
}

/// The real SDK client against the server: the paginator, the target header, and the
/// throttling error code the poller's retry classification looks at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_server_speaks_to_the_real_sdk_client() {
    use aws_sdk_cloudtrail::config::retry::RetryConfig;
    use aws_sdk_cloudtrail::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_cloudtrail::error::ProvideErrorMetadata;
    use aws_sdk_cloudtrail::primitives::DateTime;
    use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};

    let server = tokio::task::block_in_place(|| {
        let server = LookupServer::start();
        hundred_twenty(&server);
        server
    });
    let config = aws_sdk_cloudtrail::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(server.endpoint())
        .retry_config(RetryConfig::disabled())
        .http_client(rolewatch::aws::https_client())
        .build();
    let client = aws_sdk_cloudtrail::Client::from_conf(config);

    let events = client
        .lookup_events()
        .start_time(DateTime::from_secs(T0))
        .end_time(DateTime::from_secs(T0 + 119))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("the paginator reads every page");
    let got: Vec<&str> = events.iter().map(|e| e.event_id().unwrap()).collect();
    let expected: Vec<String> = (0..120).rev().map(|i| format!("ev-{i:03}")).collect();
    assert_eq!(got, expected);
    assert_eq!(events[0].event_time(), Some(&DateTime::from_secs(T0 + 119)));
    assert_eq!(events[0].resources().len(), 2);
    let record: Value = serde_json::from_str(events[0].cloud_trail_event().unwrap()).unwrap();
    assert_eq!(record["eventID"], "ev-119");

    let detach = client
        .lookup_events()
        .start_time(DateTime::from_secs(T0))
        .end_time(DateTime::from_secs(T0 + 119))
        .lookup_attributes(
            LookupAttribute::builder()
                .attribute_key(LookupAttributeKey::EventName)
                .attribute_value("DetachRolePolicy")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("one attribute is fine");
    assert_eq!(detach.events().len(), 40);
    assert!(detach.next_token().is_none());

    let faulted = tokio::task::block_in_place(|| server.faults(json!({"throttle_next": 1})));
    assert_eq!(faulted["throttle_next"], 1);
    let err = client.lookup_events().send().await.expect_err("throttled");
    assert_eq!(err.code(), Some("ThrottlingException"));
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));

    let stats = tokio::task::block_in_place(|| server.stats());
    let recent = stats["recent_requests"].as_array().unwrap();
    assert!(
        recent.iter().all(|r| r["target"] == SDK_TARGET),
        "{recent:?}"
    );
    assert_eq!(recent[0]["max_results"], Value::Null);
    assert!(recent
        .iter()
        .all(|r| r["content_type"] == "application/x-amz-json-1.1"));
    assert_eq!(stats["by_operation"]["LookupEvents"], 5);
}

#[test]
fn moto_starts_resets_and_accepts_cloudwatch_logs_json_calls() {
    let moto = Moto::start();
    let logs = |operation: &str, body: Value| {
        let target = format!("Logs_20140328.{operation}");
        http(
            moto.port(),
            "POST",
            "/",
            &[
                ("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amz-Target", &target),
                ("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/logs/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=0"),
                ("X-Amz-Date", "20260101T000000Z"),
            ],
            &serde_json::to_vec(&body).unwrap(),
        )
        .expect("moto answers")
    };
    let created = logs(
        "CreateLogGroup",
        json!({"logGroupName": "/aws/cloudtrail/rolewatch"}),
    );
    assert_eq!(
        created.status,
        200,
        "{}\nmoto log:\n{}",
        String::from_utf8_lossy(&created.body),
        moto.stderr()
    );
    let groups = logs("DescribeLogGroups", json!({})).json();
    assert_eq!(
        groups["logGroups"][0]["logGroupName"],
        "/aws/cloudtrail/rolewatch"
    );
    let again = logs(
        "CreateLogGroup",
        json!({"logGroupName": "/aws/cloudtrail/rolewatch"}),
    );
    assert_eq!(again.status, 400);
    assert!(again.json()["__type"]
        .as_str()
        .unwrap()
        .ends_with("ResourceAlreadyExistsException"));

    moto.reset();
    let groups = logs("DescribeLogGroups", json!({})).json();
    assert_eq!(groups["logGroups"], json!([]));
    assert!(moto.endpoint().starts_with("http://127.0.0.1:"));
}

#[test]
fn aws_env_points_services_at_the_test_servers() {
    let mut cmd = Command::new("env");
    cmd.env("AWS_PROFILE", "production")
        .env("AWS_ENDPOINT_URL", "https://elsewhere.invalid");
    aws_env(
        &mut cmd,
        Some("http://127.0.0.1:1"),
        Some("http://127.0.0.1:2"),
    );
    let output = cmd.output().expect("env runs");
    let text = String::from_utf8(output.stdout).unwrap();
    let vars: std::collections::HashMap<&str, &str> =
        text.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(vars.get("AWS_ACCESS_KEY_ID"), Some(&"testing"));
    assert_eq!(vars.get("AWS_SECRET_ACCESS_KEY"), Some(&"testing"));
    assert_eq!(vars.get("AWS_REGION"), Some(&"us-east-1"));
    assert_eq!(vars.get("AWS_EC2_METADATA_DISABLED"), Some(&"true"));
    assert_eq!(
        vars.get("AWS_ENDPOINT_URL_CLOUDTRAIL"),
        Some(&"http://127.0.0.1:1")
    );
    for service in ["CLOUDWATCH_LOGS", "SNS", "SQS", "IAM", "STS"] {
        assert_eq!(
            vars.get(format!("AWS_ENDPOINT_URL_{service}").as_str()),
            Some(&"http://127.0.0.1:2")
        );
    }
    assert!(!vars.contains_key("AWS_PROFILE"));
    assert!(!vars.contains_key("AWS_ENDPOINT_URL"));
}

// ---------------------------------------------------------------------------------------
// Our CloudWatch Logs TestMetricFilter stand-in (moto 5.2.5 has none).
// ---------------------------------------------------------------------------------------
