//! `rolewatch test-pattern`: the `aws logs test-metric-filter` contract (spec §7), and
//! `--compare-aws` against our TestMetricFilter stand-in (`tests/servers/test_metric_filter.py`).

use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use crate::support::{aws_env, http, MetricFilterServer};
use crate::{assert_exit, rolewatch, rolewatch_with_stdin, stderr, stdout};

/// Runs test-pattern with the messages as arguments and returns the parsed response.
fn test_pattern(pattern: &str, messages: &[&str]) -> Value {
    let mut args = vec![
        "test-pattern",
        "--filter-pattern",
        pattern,
        "--log-event-messages",
    ];
    args.extend_from_slice(messages);
    let output = rolewatch(&args);
    assert_exit(&output, 0);
    serde_json::from_str(&stdout(&output)).expect("stdout is one JSON document")
}

/// The `eventNumber`s of a response.
fn event_numbers(response: &Value) -> Vec<u64> {
    response["matches"]
        .as_array()
        .expect("matches is an array")
        .iter()
        .map(|m| m["eventNumber"].as_u64().expect("eventNumber is a number"))
        .collect()
}

#[test]
fn numbers_are_one_based_in_input_order_and_messages_are_unchanged() {
    let response = test_pattern(
        "ERROR",
        &[
            "ERROR at start",
            "all good",
            "  trailing ERROR  ",
            "error lower case",
        ],
    );
    assert_eq!(
        response,
        json!({"matches": [
            {"eventNumber": 1, "eventMessage": "ERROR at start", "extractedValues": {}},
            {"eventNumber": 3, "eventMessage": "  trailing ERROR  ", "extractedValues": {}},
        ]})
    );
}

#[test]
fn the_first_two_of_three_match_as_1_and_2() {
    // The shape of the AWS CLI example (spec S4).
    let response = test_pattern(
        "\"[ERROR]\"",
        &["[ERROR] one", "x [ERROR] two", "[INFO] three"],
    );
    assert_eq!(event_numbers(&response), [1, 2]);
}

#[test]
fn no_match_is_an_empty_list() {
    let response = test_pattern("ERROR", &["fine", "also fine"]);
    assert_eq!(response, json!({"matches": []}));
}

#[test]
fn empty_pattern_matches_every_message() {
    let response = test_pattern("", &["a", "", "-b", "{\"c\":1}"]);
    assert_eq!(event_numbers(&response), [1, 2, 3, 4]);
    assert_eq!(response["matches"][1]["eventMessage"], "");
}

#[test]
fn exclusion_only_pattern_starting_with_a_hyphen() {
    let response = test_pattern("-ERROR", &["ERROR here", "all fine", "-ERROR"]);
    assert_eq!(event_numbers(&response), [2]);
}

#[test]
fn messages_may_start_with_hyphen_bracket_or_brace() {
    let messages = [
        "-x AccessDenied",
        "[AccessDenied]",
        "{\"errorCode\":\"AccessDenied\"}",
        "--AccessDenied",
    ];
    let response = test_pattern("AccessDenied", &messages);
    assert_eq!(event_numbers(&response), [1, 2, 3, 4]);
    for (m, message) in response["matches"]
        .as_array()
        .expect("array")
        .iter()
        .zip(messages)
    {
        assert_eq!(m["eventMessage"], message);
    }
}

#[test]
fn json_pattern_on_a_cloudtrail_message() {
    let record = crate::fixture_lines("cloudtrail/astronomer-synthetic.jsonl")[0].clone();
    let response = test_pattern(rolewatch::rules::DOCUMENTED_PATTERN, &[&record, "not json"]);
    assert_eq!(event_numbers(&response), [1]);
    assert_eq!(response["matches"][0]["eventMessage"], record.as_str());
}

#[test]
fn space_delimited_pattern_extracts_values_in_field_order() {
    // Spec §4.4, the documented example (S2).
    let output = rolewatch([
        "test-pattern",
        "--filter-pattern",
        "[ip, user, username, timestamp, request =*.html*, status_code = 4*, bytes]",
        "--log-event-messages",
        r#"127.0.0.1 Prod frank [10/Oct/2000:13:25:15 -0700] "GET /index.html HTTP/1.0" 404 1534"#,
        r#"127.0.0.1 Prod frank [10/Oct/2000:13:25:15 -0700] "GET /index.html HTTP/1.0" 200 1534"#,
    ]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(
        text.contains(r#""extractedValues":{"$ip":"127.0.0.1","$user":"Prod","$username":"frank","$timestamp":"10/Oct/2000:13:25:15 -0700","$request":"GET /index.html HTTP/1.0","$status_code":"404","$bytes":"1534"}"#),
        "extracted values missing or out of order: {text}"
    );
    let response: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(event_numbers(&response), [1]);
}

#[test]
fn invalid_pattern_exits_2_with_a_caret_on_stderr() {
    let output = rolewatch([
        "test-pattern",
        "--filter-pattern",
        "{ $.a = ) }",
        "--log-event-messages",
        "{\"a\":1}",
    ]);
    assert_exit(&output, 2);
    let err = stderr(&output);
    assert!(err.contains("invalid filter pattern at column 9"), "{err}");
    assert!(err.contains("\n  { $.a = ) }\n"), "{err}");
    assert!(
        err.contains("\n          ^"),
        "the caret is under column 9: {err}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn unbalanced_json_pattern_is_rejected() {
    let output = rolewatch([
        "test-pattern",
        "--filter-pattern",
        "{ $.eventName = AttachRolePolicy",
        "--log-event-messages",
        "x",
    ]);
    assert_exit(&output, 2);
    assert!(stderr(&output).contains('^'));
}

#[test]
fn messages_are_required() {
    let output = rolewatch(["test-pattern", "--filter-pattern", "x"]);
    assert_exit(&output, 2);
}

#[test]
fn log_event_file_gives_one_message_per_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("messages.txt");
    std::fs::write(&path, "ERROR one\r\nfine\n\n-ERROR two\n").expect("write");
    let output = rolewatch([
        "test-pattern".as_ref(),
        "--filter-pattern".as_ref(),
        "ERROR".as_ref(),
        "--log-event-file".as_ref(),
        path.as_os_str(),
    ]);
    assert_exit(&output, 0);
    let response: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert_eq!(
        response,
        json!({"matches": [
            {"eventNumber": 1, "eventMessage": "ERROR one", "extractedValues": {}},
            {"eventNumber": 4, "eventMessage": "-ERROR two", "extractedValues": {}},
        ]})
    );
}

#[test]
fn log_event_file_dash_reads_stdin() {
    let output = rolewatch_with_stdin(
        &[
            "test-pattern",
            "--filter-pattern",
            "",
            "--log-event-file",
            "-",
        ],
        b"a\nb",
    );
    assert_exit(&output, 0);
    let response: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert_eq!(event_numbers(&response), [1, 2]);
    assert_eq!(response["matches"][1]["eventMessage"], "b");
}

#[test]
fn unreadable_log_event_file_exits_1() {
    let output = rolewatch([
        "test-pattern",
        "--filter-pattern",
        "x",
        "--log-event-file",
        "/nonexistent/rolewatch/messages.txt",
    ]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("/nonexistent/rolewatch/messages.txt"));
}

#[test]
fn invalid_pattern_is_reported_before_the_file_is_read() {
    let output = rolewatch([
        "test-pattern",
        "--filter-pattern",
        "{ $.a = ) }",
        "--log-event-file",
        "/nonexistent/rolewatch/messages.txt",
    ]);
    assert_exit(&output, 2);
}

// ---------------------------------------------------------------------------------------
// --compare-aws
// ---------------------------------------------------------------------------------------

/// `rolewatch test-pattern --compare-aws` with the test credentials and region, CloudWatch
/// Logs on `server` (through `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS` only), and no AWS files.
fn compare_command(server: &MetricFilterServer, pattern: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rolewatch"));
    cmd.args(["test-pattern", "--compare-aws", "--filter-pattern", pattern]);
    aws_env(&mut cmd, None, None);
    cmd.env("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", server.endpoint())
        .env("AWS_CONFIG_FILE", "/nonexistent/rolewatch/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/rolewatch/aws-credentials",
        )
        .stdin(Stdio::null());
    cmd
}

fn compare_aws(server: &MetricFilterServer, pattern: &str, messages: &[&str]) -> Output {
    compare_command(server, pattern)
        .arg("--log-event-messages")
        .args(messages)
        .output()
        .expect("the rolewatch binary runs")
}

/// The report on stdout.
#[track_caller]
fn report(output: &Output) -> Value {
    serde_json::from_str(&stdout(output)).unwrap_or_else(|err| {
        panic!(
            "stdout is not one JSON document ({err}): {}\nstderr:\n{}",
            stdout(output),
            stderr(output)
        )
    })
}

/// The number of messages in each API call the server answered.
fn calls(server: &MetricFilterServer) -> Vec<u64> {
    server.stats()["calls"]
        .as_array()
        .expect("calls is an array")
        .iter()
        .map(|c| c["messages"].as_u64().unwrap_or(0))
        .collect()
}

#[test]
fn compare_aws_agreement_exits_0_and_the_endpoint_comes_from_the_environment() {
    let server = MetricFilterServer::start();
    let output = compare_aws(&server, "ERROR", &["ERROR one", "fine", "x ERROR"]);
    assert_exit(&output, 0);
    let report = report(&output);
    assert_eq!(report["agree"], true);
    assert_eq!(report["differences"], json!([]));
    assert_eq!(report["local"]["valid"], true);
    assert_eq!(report["service"]["valid"], true);
    assert_eq!(report["local"]["matches"], report["service"]["matches"]);
    assert_eq!(
        event_numbers(&report["service"]),
        [1, 3],
        "the service's answer is in the report"
    );
    assert_eq!(report["service"]["region"], "us-east-1");
    assert_eq!(report["service"]["calls"], 1);
    let err = stderr(&output);
    assert!(
        err.contains(
            "agrees with TestMetricFilter in us-east-1 on all 3 message(s) (1 call): 2 match"
        ),
        "{err}"
    );

    let stats = server.stats();
    let call = &stats["calls"][0];
    assert_eq!(stats["calls"].as_array().map(Vec::len), Some(1));
    assert_eq!(call["target"], "Logs_20140328.TestMetricFilter");
    assert_eq!(call["content_type"], "application/x-amz-json-1.1");
    assert_eq!(
        call["access_key"], "testing",
        "signed with the chain's credentials"
    );
    assert_eq!(call["filterPattern"], "ERROR");
    assert_eq!(call["messages"], 3);
}

#[test]
fn compare_aws_region_flag_wins_over_the_environment() {
    let server = MetricFilterServer::start();
    let output = compare_command(&server, "x")
        .args(["--region", "eu-west-1", "--log-event-messages", "x"])
        .output()
        .expect("runs");
    assert_exit(&output, 0);
    assert_eq!(report(&output)["service"]["region"], "eu-west-1");
}

#[test]
fn compare_aws_disagreement_on_a_match_exits_1_naming_the_message() {
    let server = MetricFilterServer::start();
    server.settings(json!({"flip": ["fine", "ERROR three"]}));
    let output = compare_aws(&server, "ERROR", &["ERROR one", "fine", "ERROR three"]);
    assert_exit(&output, 1);
    let report = report(&output);
    assert_eq!(report["agree"], false);
    assert_eq!(
        report["differences"],
        json!([
            {"part": "match", "eventNumber": 2, "eventMessage": "fine",
             "local": false, "service": true},
            {"part": "match", "eventNumber": 3, "eventMessage": "ERROR three",
             "local": true, "service": false},
        ])
    );
    let err = stderr(&output);
    assert!(
        err.contains(
            "rolewatch: differs on message 2 (match): TestMetricFilter matches it, rolewatch \
             does not: \"fine\"\n"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "rolewatch: differs on message 3 (match): rolewatch matches it, TestMetricFilter \
             does not: \"ERROR three\"\n"
        ),
        "{err}"
    );
    assert!(
        err.contains("2 difference(s) from TestMetricFilter in us-east-1 on 3 message(s)"),
        "{err}"
    );
}

#[test]
fn compare_aws_disagreement_on_extracted_values_exits_1_naming_the_field() {
    let server = MetricFilterServer::start();
    let pattern = "[ip, user, status]";
    let message = "10.0.0.1 alice 404";
    let values = json!({"$ip": "10.0.0.1", "$user": "alice", "$status": "404"});
    // The same values, in another order: agreement.
    server.answers(json!([
        {"reply": {"matches": [{"eventNumber": 1, "eventMessage": message,
            "extractedValues": {"$status": "404", "$user": "alice", "$ip": "10.0.0.1"}}]}},
        {"reply": {"matches": [{"eventNumber": 1, "eventMessage": message,
            "extractedValues": {"$ip": "10.0.0.1", "$user": "alice", "$status": "40",
                                "$extra": "x"}}]}},
    ]));
    let agreed = compare_aws(&server, pattern, &[message]);
    assert_exit(&agreed, 0);
    assert_eq!(
        report(&agreed)["local"]["matches"][0]["extractedValues"],
        values
    );

    let output = compare_aws(&server, pattern, &[message]);
    assert_exit(&output, 1);
    let report = report(&output);
    assert_eq!(
        report["differences"],
        json!([{
            "part": "extractedValues", "eventNumber": 1, "eventMessage": message,
            "local": values,
            "service": {"$extra": "x", "$ip": "10.0.0.1", "$status": "40", "$user": "alice"},
        }])
    );
    let err = stderr(&output);
    assert!(
        err.contains(
            "rolewatch: differs on message 1 (extractedValues): $extra: rolewatch (none), \
             TestMetricFilter \"x\"; $status: rolewatch \"404\", TestMetricFilter \"40\": \
             \"10.0.0.1 alice 404\"\n"
        ),
        "{err}"
    );
}

#[test]
fn compare_aws_disagreement_on_the_echoed_message_exits_1() {
    let server = MetricFilterServer::start();
    server.settings(json!({"echo": {"ERROR one": "ERROR  one"}}));
    let output = compare_aws(&server, "ERROR", &["ERROR one"]);
    assert_exit(&output, 1);
    assert_eq!(
        report(&output)["differences"],
        json!([{"part": "eventMessage", "eventNumber": 1, "local": "ERROR one",
                "service": "ERROR  one"}])
    );
    assert!(
        stderr(&output).contains("(eventMessage): TestMetricFilter answered \"ERROR  one\""),
        "{}",
        stderr(&output)
    );
}

#[test]
fn compare_aws_service_rejects_a_pattern_rolewatch_accepts_exits_1() {
    let server = MetricFilterServer::start();
    server.settings(json!({"reject": {"ERROR": "Invalid metric filter pattern"}}));
    let output = compare_aws(&server, "ERROR", &["ERROR one"]);
    assert_exit(&output, 1);
    let report = report(&output);
    assert_eq!(
        report["differences"],
        json!([{"part": "validity", "local": "valid", "service": "invalid"}])
    );
    assert_eq!(report["service"]["valid"], false);
    assert_eq!(
        report["service"]["error"],
        "InvalidParameterException (HTTP 400): Invalid metric filter pattern"
    );
    let err = stderr(&output);
    assert!(
        err.contains(
            "rolewatch: differs on the pattern: rolewatch accepts it, TestMetricFilter rejects \
             it: InvalidParameterException (HTTP 400): Invalid metric filter pattern\n"
        ),
        "{err}"
    );
}

#[test]
fn compare_aws_rolewatch_rejects_a_pattern_the_service_accepts_exits_1() {
    let server = MetricFilterServer::start();
    server.answers(json!([{"reply": {"matches": []}}]));
    let output = compare_aws(&server, "{ $.a = ) }", &["{\"a\":1}"]);
    assert_exit(&output, 1);
    let report = report(&output);
    assert_eq!(
        report["differences"],
        json!([{"part": "validity", "local": "invalid", "service": "valid"}])
    );
    let local_error = report["local"]["error"].as_str().expect("the local reason");
    assert!(local_error.contains("column 9"), "{local_error}");
    let err = stderr(&output);
    assert!(
        err.contains(
            "rolewatch: differs on the pattern: TestMetricFilter accepts it, rolewatch rejects \
             it: invalid filter pattern at column 9"
        ),
        "{err}"
    );
    assert_eq!(
        calls(&server),
        [1],
        "the service was asked despite the local error"
    );
}

#[test]
fn compare_aws_both_reject_the_pattern_exits_2_and_agrees() {
    let server = MetricFilterServer::start();
    server.answers(
        json!([{"error": {"status": 400, "code": "InvalidParameterException",
                                     "message": "Invalid character(s) in term"}}]),
    );
    let output = compare_aws(&server, "{ $.a = ) }", &["x"]);
    assert_exit(&output, 2);
    let report = report(&output);
    assert_eq!(report["agree"], true);
    assert_eq!(report["local"]["valid"], false);
    assert_eq!(report["service"]["valid"], false);
    let err = stderr(&output);
    assert!(
        err.contains("agrees with TestMetricFilter in us-east-1: the pattern is invalid"),
        "{err}"
    );
    assert!(err.contains("Invalid character(s) in term"), "{err}");
    assert!(err.contains("column 9"), "{err}");
}

#[test]
fn compare_aws_splits_more_than_50_messages_into_calls_of_at_most_50() {
    // 121 lines, one of them empty: 120 messages are sent, as 50 + 50 + 20.
    let mut lines: Vec<String> = (1..=121)
        .map(|n| {
            if n % 3 == 0 {
                format!("ERROR {n}")
            } else {
                format!("ok {n}")
            }
        })
        .collect();
    lines[74] = String::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("messages.txt");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");

    let server = MetricFilterServer::start();
    // The stand-in enforces the API's limit: 51 messages in one call are refused.
    let too_many: Vec<&str> = lines.iter().take(51).map(String::as_str).collect();
    let body = json!({"filterPattern": "ERROR", "logEventMessages": too_many});
    let refused = http(
        server.port(),
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "Logs_20140328.TestMetricFilter"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/logs/aws4_request",
            ),
        ],
        &serde_json::to_vec(&body).expect("serialises"),
    )
    .expect("the server answers");
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["__type"], "ValidationException");

    let run = || {
        compare_command(&server, "ERROR")
            .arg("--log-event-file")
            .arg(&path)
            .output()
            .expect("runs")
    };
    let output = run();
    assert_exit(&output, 0);
    assert_eq!(calls(&server)[1..], [50, 50, 20]);
    let first = report(&output);
    assert_eq!(first["service"]["calls"], 3);
    assert_eq!(first["notCompared"], json!([75]));
    let expected: Vec<u64> = (1..=121).filter(|n| n % 3 == 0 && *n != 75).collect();
    assert_eq!(event_numbers(&first["service"]), expected);
    assert_eq!(event_numbers(&first["local"]), expected);
    let err = stderr(&output);
    assert!(err.contains("not compared: message(s) 75 (empty"), "{err}");
    assert!(err.contains("on all 120 message(s) (3 calls)"), "{err}");

    // A disagreement in the third call is numbered in the whole input.
    server.settings(json!({"flip": ["ok 119"]}));
    let output = run();
    assert_exit(&output, 1);
    assert_eq!(calls(&server)[4..], [50, 50, 20]);
    assert_eq!(
        report(&output)["differences"],
        json!([{"part": "match", "eventNumber": 119, "eventMessage": "ok 119",
                "local": false, "service": true}])
    );
}

#[test]
fn compare_aws_throttling_is_retried_then_a_service_error_exits_1() {
    let server = MetricFilterServer::start();
    let throttle = json!({"error": {"status": 400, "code": "ThrottlingException",
                                    "message": "Rate exceeded"}});
    server.answers(json!([throttle]));
    let output = compare_aws(&server, "ERROR", &["ERROR one"]);
    assert_exit(&output, 0);
    assert_eq!(calls(&server), [1, 1], "one throttled attempt, one retry");

    server.answers(json!([throttle, throttle, throttle]));
    let output = compare_aws(&server, "ERROR", &["ERROR one"]);
    assert_exit(&output, 1);
    assert!(
        output.stdout.is_empty(),
        "no report when nothing was compared"
    );
    let err = stderr(&output);
    assert!(
        err.contains(
            "rolewatch: cannot compare with CloudWatch Logs TestMetricFilter: service error, \
             nothing was compared: TestMetricFilter call 1 of 1 (messages 1-1): the service \
             throttled it (3 attempts): ThrottlingException (HTTP 400): Rate exceeded"
        ),
        "{err}"
    );
}

#[test]
fn compare_aws_a_500_and_access_denied_are_service_errors() {
    let server = MetricFilterServer::start();
    let failure = json!({"error": {"status": 500, "code": "InternalFailure",
                                   "message": "boom"}});
    server.answers(json!([failure, failure, failure]));
    let output = compare_aws(&server, "ERROR", &["ERROR one"]);
    assert_exit(&output, 1);
    let err = stderr(&output);
    assert!(
        err.contains("service error, nothing was compared")
            && err.contains("the service failed (3 attempts): InternalFailure (HTTP 500): boom"),
        "{err}"
    );

    server.answers(
        json!([{"error": {"status": 400, "code": "AccessDeniedException",
        "message": "User is not authorized to perform: logs:TestMetricFilter"}}]),
    );
    let output = compare_aws(&server, "ERROR", &["ERROR one"]);
    assert_exit(&output, 1);
    let err = stderr(&output);
    assert!(
        err.contains("the service refused it: AccessDeniedException (HTTP 400)")
            && err.contains("(the caller needs the IAM permission logs:TestMetricFilter)"),
        "{err}"
    );
}

#[test]
fn compare_aws_without_credentials_says_so_and_sends_nothing() {
    let server = MetricFilterServer::start();
    let output = compare_command(&server, "ERROR")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .args(["--log-event-messages", "ERROR one"])
        .output()
        .expect("runs");
    assert_exit(&output, 1);
    assert!(output.stdout.is_empty());
    let err = stderr(&output);
    assert!(
        err.contains("rolewatch: cannot compare with CloudWatch Logs TestMetricFilter: no AWS credentials found"),
        "{err}"
    );
    assert!(calls(&server).is_empty(), "nothing was sent");
}

#[test]
fn compare_aws_needs_a_message_that_is_not_empty() {
    let server = MetricFilterServer::start();
    let output = compare_aws(&server, "ERROR", &["", ""]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("--compare-aws needs at least one message that is not empty"),
        "{}",
        stderr(&output)
    );
    assert!(calls(&server).is_empty());
}

#[test]
fn region_without_compare_aws_is_a_usage_error() {
    let output = rolewatch([
        "test-pattern",
        "--region",
        "eu-west-1",
        "--filter-pattern",
        "x",
        "--log-event-messages",
        "x",
    ]);
    assert_exit(&output, 2);
}
