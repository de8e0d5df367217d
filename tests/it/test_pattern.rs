//! `rolewatch test-pattern`: the `aws logs test-metric-filter` contract (spec §7).

use serde_json::{json, Value};

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
