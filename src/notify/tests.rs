//! Golden tests of the renderings on real fixture records, a corpus of hostile values, and
//! property tests of the safety invariants.
//!
//! Goldens live in `src/notify/testdata/golden/`; `docs/sample-alert.{txt,html}` are copies of
//! one of them. After a deliberate change of the rendering, regenerate with
//! `UPDATE_GOLDEN=1 cargo test --lib notify::` and review every changed file by eye.

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::alert::Alert;
use super::render::{self, TEXT_MAX_CHARS};
use super::sanitize::{is_bidi_or_invisible, is_control_or_break, FIELD_MAX_CHARS};
use crate::state::StoredAlert;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Line `n` (1-based) of a fixture file under `tests/fixtures/cloudtrail/`.
fn fixture_line(file: &str, n: usize) -> String {
    let path = manifest_dir().join("tests/fixtures/cloudtrail").join(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .nth(n - 1)
        .unwrap_or_else(|| panic!("{} has no line {n}", path.display()))
        .to_owned()
}

/// A stored alert for `record` as the state would hold it: detected 95 s after the event.
fn stored(id: i64, record: &str) -> StoredAlert {
    let v: Value = serde_json::from_str(record).unwrap_or(Value::Null);
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let event_time_ms = crate::time::parse_rfc3339_ms(&s("eventTime")).unwrap_or(1_740_830_400_000);
    StoredAlert {
        id,
        rule: "astronomer-role-changed".to_owned(),
        severity: "high".to_owned(),
        event_id: s("eventID"),
        event_name: s("eventName"),
        event_time_ms,
        source_id: "cloudtrail-lookup".to_owned(),
        detected_ms: event_time_ms + 95_000,
        record: record.to_owned(),
        ..StoredAlert::default()
    }
}

struct Case {
    name: &'static str,
    record: String,
    /// Sending time after detection (ms): over a minute shows the outbox delay.
    send_delay_ms: i64,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "attach-role-policy",
            record: fixture_line("astronomer-synthetic.jsonl", 1),
            send_delay_ms: 1_500,
        },
        Case {
            name: "create-policy-version",
            record: fixture_line("astronomer-synthetic.jsonl", 2),
            send_delay_ms: 1_500,
        },
        Case {
            name: "failed-access-denied",
            record: fixture_line("astronomer-synthetic.jsonl", 4),
            // The channel was down for a while: the alert says how long it waited.
            send_delay_ms: 3 * 3_600_000 + 125_000,
        },
        Case {
            name: "assumed-role-via-cloudformation",
            record: fixture_line("third-party.jsonl", 6),
            send_delay_ms: 1_500,
        },
        Case {
            name: "iam-user-real-capture",
            record: fixture_line("third-party.jsonl", 1),
            send_delay_ms: 1_500,
        },
        Case {
            name: "missing-most-fields",
            record: r#"{"eventName":"AttachRolePolicy","eventID":"00000000-0000-4000-8000-000000000000"}"#
                .to_owned(),
            send_delay_ms: 0,
        },
        Case {
            name: "expected-change",
            record: fixture_line("astronomer-synthetic.jsonl", 2),
            send_delay_ms: 1_500,
        },
    ]
}

fn alert_of(i: usize, case: &Case) -> Alert {
    let s = stored(i as i64 + 1, &case.record);
    let now = s.detected_ms + case.send_delay_ms;
    Alert::from_stored(&s, now).with_analysis(analysis_of(case.name))
}

/// The analyses the golden cases show, as the worker would record them (built here from the
/// pure diff, with the documents IAM would have returned).
fn analysis_of(case: &str) -> Option<crate::intel::Analysis> {
    use crate::intel::actor::ActorClass;
    use crate::intel::analysis::{Analysis, BaselineNote, SinceBaseline};
    use crate::intel::policy::{diff, Policy, Verdict};
    let blank = |verdict: Verdict, severity: &str, why: &str| Analysis {
        actor_class: ActorClass::Yours,
        allowlisted: false,
        via: None,
        verdict,
        severity: severity.to_owned(),
        rule_severity: "high".to_owned(),
        severity_reason: why.to_owned(),
        compared: None,
        reasons: Vec::new(),
        flags: Vec::new(),
        statements: Vec::new(),
        diff_unavailable: None,
        since_baseline: None,
        expected: None,
        baseline: None,
    };
    let baseline = |taken_ms: i64, differences: &[&str]| {
        Some(BaselineNote {
            taken_ms: Some(taken_ms),
            differences: differences.iter().map(|d| (*d).to_owned()).collect(),
            unavailable: None,
        })
    };
    match case {
        "create-policy-version" => {
            let before = Policy::parse(&json!({"Version": "2012-10-17", "Statement": [
                {"Sid": "ReadOnly", "Effect": "Allow", "Action": ["ec2:Describe*", "s3:GetObject"], "Resource": "*"},
                {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*",
                 "Condition": {"StringEquals": {"aws:ResourceTag/owner": "astronomer"}}}]}))
            .unwrap();
            let after = Policy::parse(&json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
            .unwrap();
            let d = diff(&before, &after);
            // A chain: v3 was set as default after the baseline (which had v2), and v4 is
            // judged against v3, the moment before; the baseline is the second line.
            Some(Analysis {
                compared: Some("the new default version v4 (from the event) against the last known default version v3 (after the change of 2025-03-01T12:00:00Z)".to_owned()),
                since_baseline: Some(SinceBaseline {
                    verdict: Verdict::Widened,
                    compared: "the new default version v4 (from the event) against the baseline's default version v2 (taken 2025-03-01T00:00:00Z)".to_owned(),
                }),
                reasons: d.reasons,
                statements: d.statements,
                baseline: baseline(1_740_787_200_000, &[
                    "default version of arn:aws:iam::111122223333:policy/AstronomerCrossAccountRole: v2 → v4 (widened)",
                ]),
                ..blank(Verdict::Widened, "high", "access widened: at least high (rule: high)")
            })
        }
        "attach-role-policy" => {
            let admin = Policy::parse(&json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})).unwrap();
            let d = diff(&Policy::empty(), &admin);
            Some(Analysis {
                compared: Some("the policy's default version v1 (GetPolicyVersion), newly attached, against nothing".to_owned()),
                reasons: d.reasons,
                statements: d.statements,
                flags: vec!["high-risk AWS-managed policy: arn:aws:iam::aws:policy/AdministratorAccess".to_owned()],
                baseline: baseline(1_740_787_200_000, &[
                    "policy attached since the baseline: arn:aws:iam::aws:policy/AdministratorAccess",
                ]),
                ..blank(Verdict::Widened, "high", "access widened: at least high (rule: high)")
            })
        }
        // An announced change ([[expect]] naming the document): marked, severity info.
        "expected-change" => Some(Analysis {
            compared: Some("the new default version v4 (from the event) against the last known default version v3 (the baseline of 2025-03-01T00:00:00Z)".to_owned()),
            reasons: vec!["grants more (new Allow): Allow ec2:CreateVolume on *".to_owned()],
            expected: Some(crate::intel::expect::ExpectedNote {
                description: "Astronomer notice of 2025-02-14 (ticket OPS-4711): v4 adds ec2:CreateVolume".to_owned(),
                window: "2025-03-01T00:00:00Z – 2025-03-03T00:00:00Z".to_owned(),
                beyond: None,
            }),
            ..blank(Verdict::Widened, "info", "expected (Astronomer notice of 2025-02-14 (ticket OPS-4711): v4 adds ec2:CreateVolume): info (without it: high, access widened: at least high (rule: high))")
        }),
        "failed-access-denied" => Some(Analysis {
            reasons: vec!["the call failed: nothing changed (someone tried)".to_owned()],
            ..blank(Verdict::Unchanged, "high", "changed by a principal outside allowed_principals: at least high (rule: high)")
        }),
        // A person's session acting through CloudFormation: the person's class, "via".
        "assumed-role-via-cloudformation" => Some(Analysis {
            actor_class: ActorClass::Yours,
            via: Some("CloudFormation".to_owned()),
            diff_unavailable: Some("no IAM read access (GetPolicy: User: arn:aws:sts::111122223333:assumed-role/rolewatch/i-0abc is not authorized to perform: iam:GetPolicy)".to_owned()),
            reasons: vec!["the documents could not be compared: see why below".to_owned()],
            ..blank(Verdict::Unknown, "high", "changed by a principal outside allowed_principals: at least high (rule: high)")
        }),
        _ => None,
    }
}

fn renderings(alert: &Alert) -> Vec<(&'static str, String)> {
    let json = serde_json::to_string_pretty(&render::json(alert)).expect("json") + "\n";
    vec![
        ("subject.txt", render::subject(alert) + "\n"),
        ("txt", render::text(alert)),
        ("html", render::html(alert)),
        ("json", json),
        ("webhook.json", pretty(&webhook_json(alert))),
        ("slack.json", pretty(&super::chat::slack(alert))),
        ("teams.json", pretty(&super::chat::teams(alert))),
        (
            "pagerduty.json",
            pretty(&super::pagerduty::event(alert, "ROUTING_KEY_PLACEHOLDER")),
        ),
        (
            "chatbot.json",
            pretty(
                &serde_json::from_str(
                    &super::sns::chatbot_publication(alert)
                        .expect("chatbot")
                        .message,
                )
                .expect("chatbot JSON"),
            ),
        ),
    ]
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("json") + "\n"
}

/// The body of a `format = "json"` webhook, parsed.
fn webhook_json(alert: &Alert) -> Value {
    let body = super::webhook::body(alert, crate::config::WebhookFormat::Json).expect("body");
    serde_json::from_slice(&body).expect("webhook JSON")
}

/// Every string of a chat payload: clean (no control, line-break, bidi or invisible
/// character), bounded, and escaped for its medium.
fn check_chat_strings(v: &Value, path: &str, check: &dyn Fn(&str, &str)) {
    match v {
        Value::String(s) => {
            assert!(
                s.chars().count() <= 4_100,
                "{path}: {} chars",
                s.chars().count()
            );
            let ok = |c: char| c == '\n' || (!is_control_or_break(c) && !is_bidi_or_invisible(c));
            assert!(s.chars().all(ok), "{path}: {s:?}");
            check(path, s);
        }
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| check_chat_strings(v, &format!("{path}/{k}"), check)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| check_chat_strings(v, &format!("{path}/{i}"), check)),
        _ => {}
    }
}

/// True when every character of `set` in `s` is backslash-escaped.
fn all_escaped(s: &str, set: &str) -> bool {
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        if set.contains(c) {
            return false;
        }
    }
    true
}

/// The chat, paging and chatbot payloads of an alert cannot be injected into.
fn check_chat_payloads(alert: &Alert) {
    let is_url = |path: &str| path.ends_with("/url") || path.ends_with("/href");
    // Slack: no `<` or `>` but in a link (so no <!channel>, <@U…>, <url|label>); `&` only
    // as an entity.
    let slack = super::chat::slack(alert);
    // `plain_text` objects (the header, button labels) are never parsed by Slack.
    let mut plain = Vec::new();
    for (i, b) in slack["blocks"].as_array().unwrap().iter().enumerate() {
        if b["text"]["type"] == "plain_text" {
            plain.push(format!("/blocks/{i}/text/text"));
        }
        for (j, e) in b["elements"].as_array().into_iter().flatten().enumerate() {
            if e["text"]["type"] == "plain_text" {
                plain.push(format!("/blocks/{i}/elements/{j}/text/text"));
            }
        }
    }
    check_chat_strings(&slack, "", &|path, s| {
        if !is_url(path) && !plain.iter().any(|p| p == path) {
            assert!(!s.contains(['<', '>']), "slack {path}: {s:?}");
            for (i, _) in s.match_indices('&') {
                let rest = &s[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;"]
                        .iter()
                        .any(|e| rest.starts_with(e)),
                    "slack {path}: a bare & in {s:?}"
                );
            }
        }
        if path == "/blocks/0/text/text" {
            assert!(s.chars().count() <= 150, "slack header: {s:?}");
        }
    });
    // Teams: every markdown character escaped in texts and fact values.
    let teams = super::chat::teams(alert);
    check_chat_strings(&teams, "", &|path, s| {
        if path.ends_with("/text") || path.ends_with("/value") {
            assert!(all_escaped(s, "`*_[]()<>&#!|~"), "teams {path}: {s:?}");
        }
    });
    // PagerDuty: plain, clean strings; the summary within the API's 1,024 characters.
    let pd = super::pagerduty::event(alert, "k");
    check_chat_strings(&pd, "", &|_, _| {});
    assert!(pd["payload"]["summary"].as_str().unwrap().chars().count() <= 1024);
    assert!(["critical", "error", "warning", "info"]
        .contains(&pd["payload"]["severity"].as_str().unwrap()));
    assert_eq!(pd["dedup_key"], alert.dedup_key.as_str());
    // Amazon Q Developer: no `<`/`>` anywhere, markdown emphasis escaped in the content.
    let p = super::sns::chatbot_publication(alert).unwrap();
    let chatbot: Value = serde_json::from_str(&p.message).unwrap();
    check_chat_strings(&chatbot, "", &|path, s| {
        assert!(!s.contains(['<', '>']), "chatbot {path}: {s:?}");
        if path == "/content/title" {
            assert!(all_escaped(s, "*_~`"), "chatbot {path}: {s:?}");
        }
    });
    assert_eq!(chatbot["version"], "1.0");
    assert_eq!(chatbot["source"], "custom");
    assert_eq!(chatbot["content"]["textType"], "client-markdown");
    // The JSON webhook is the stdout line.
    let line = super::stdout::StdoutNotifier::line(alert).unwrap();
    assert_eq!(
        webhook_json(alert),
        serde_json::from_str::<Value>(&line).unwrap()
    );
}

/// The README's sample alert.
const SAMPLE_CASE: &str = "create-policy-version";

/// Compares `actual` to the file at `path`, or writes it under `UPDATE_GOLDEN=1`; returns a
/// description of the difference.
fn check_golden(path: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, actual).expect("write golden");
        return None;
    }
    match fs::read_to_string(path) {
        Ok(expected) if expected == actual => None,
        Ok(expected) => {
            let line = expected
                .lines()
                .zip(actual.lines())
                .position(|(e, a)| e != a)
                .map_or_else(|| "length".to_owned(), |i| format!("line {}", i + 1));
            Some(format!(
                "{} differs at {line} (UPDATE_GOLDEN=1 to regenerate)",
                path.display()
            ))
        }
        Err(err) => Some(format!(
            "{}: {err} (UPDATE_GOLDEN=1 to create)",
            path.display()
        )),
    }
}

#[test]
fn renderings_match_goldens() {
    let dir = manifest_dir().join("src/notify/testdata/golden");
    let mut problems = Vec::new();
    for (i, case) in cases().iter().enumerate() {
        let alert = alert_of(i, case);
        check_invariants(&alert);
        for (ext, actual) in renderings(&alert) {
            problems.extend(check_golden(
                &dir.join(format!("{}.{ext}", case.name)),
                &actual,
            ));
            if case.name == SAMPLE_CASE && (ext == "txt" || ext == "html") {
                let doc = manifest_dir().join(format!("docs/sample-alert.{ext}"));
                problems.extend(check_golden(&doc, &actual));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn golden_cases_say_what_on_call_needs() {
    let cases = cases();
    let subjects: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| render::subject(&alert_of(i, c)))
        .collect();
    assert_eq!(
        subjects,
        [
            "[HIGH] WIDENED AttachRolePolicy on astronomer-remote-management by jane.doe@example.com",
            "[HIGH] WIDENED CreatePolicyVersion on AstronomerCrossAccountRole by jane.doe@example.com",
            "[HIGH] UNCHANGED AttachRolePolicy on astronomer-remote-management by ci-deployer (FAILED)",
            "[HIGH] UNKNOWN AttachRolePolicy on LambdaFunctionRole-1111 by example-user",
            "[HIGH] AttachRolePolicy on stratus-red-team-malicious-iam-role by christophe",
            "[HIGH] AttachRolePolicy by unknown",
            "[INFO] EXPECTED WIDENED CreatePolicyVersion on AstronomerCrossAccountRole by jane.doe@example.com",
        ]
    );

    let create = alert_of(1, &cases[1]);
    assert_eq!(create.action.set_as_default, Some(true));
    assert_eq!(create.action.version_id.as_deref(), Some("v4"));
    assert!(create.action.policy_document_chars.is_some_and(|n| n > 50));
    assert!(
        !render::subject(&create).contains("Statement"),
        "the policy document stays out of the subject"
    );

    let failed = alert_of(2, &cases[2]);
    assert!(failed.failed);
    let text = render::text(&failed);
    assert!(text.contains("Result: FAILED (AccessDenied)\n"), "{text}");
    assert!(text.contains("held 3h 2m 5s in the outbox"), "{text}");
    assert_eq!(render::json(&failed)["failed"], json!(true));

    let attach = alert_of(0, &cases[0]);
    assert_eq!(attach.detection_lag_ms(), 95_000);
    assert_eq!(
        attach.console_url.as_deref(),
        Some(
            "https://us-east-1.console.aws.amazon.com/cloudtrailv2/home?region=us-east-1\
             #/events/5e6f7a8b-9c0d-4e1f-a2b3-000000000001"
        )
    );
    assert_eq!(attach.actor.access_key_id_last4.as_deref(), Some("3456"));
    assert!(!render::text(&attach).contains("ASIAEXAMPLEKEY"));
    let j = render::json(&attach);
    assert!(
        j["record"].is_object(),
        "the record is an object in the JSON"
    );
    assert_eq!(j["actor"]["session_name"], json!("jane.doe@example.com"));
    assert_eq!(
        j["actor"]["session_issuer_arn"],
        json!("arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_AdministratorAccess_0123456789abcdef")
    );

    let invoked = alert_of(3, &cases[3]);
    assert_eq!(
        invoked.actor.invoked_by.as_deref(),
        Some("cloudformation.amazonaws.com")
    );
    assert_eq!(invoked.actor.mfa_authenticated.as_deref(), Some("true"));
}

// ---- the hostile corpus ---------------------------------------------------------------------

const HOSTILE: &[&str] = &[
    "x\r\nBcc: evil@example.com",
    "x\nSubject: [LOW] all good\r\n\r\n<html>",
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "'><svg/onload=alert(1)>",
    "astronomer-remote-management\u{202E}tnemeganam-etomer",
    "\u{2066}\u{2067}\u{2068}\u{2069}\u{200E}\u{200F}\u{202A}\u{202B}\u{202C}\u{202D}",
    "nul\0byte\u{7}\u{1b}[31mred\u{7f}\u{85}\u{2028}\u{2029}",
    "zero\u{200B}width\u{FEFF}tag\u{E0041}",
    "&lt;already escaped&gt; & &amp;",
    "日本語のロール名",
    "",
    // RFC 2047 encoded words: decoded by mail clients wherever they appear in a header.
    "=?utf-8?q?=E2=80=AE?=",
    "=?UTF-8?B?4oCuZXZpbA==?=",
    "x=?utf-8?q?=0D=0ABcc:_victim@evil.example?=y",
    "=?iso-8859-1*en?Q?=3Cb=3Ebold=3C/b=3E?= =?utf-8?q?=3Cscript=3E?=",
    "=\u{200B}?utf-8?q?=E2=80=AE?=",
    "=é?=",
    // A valid U+FFFD is ordinary text; line separators that JSON leaves unescaped.
    "aws-cli/2.22.4\u{FFFD}",
    "line\u{2028}separator\u{2029}paragraph\u{85}next line",
];

/// A record with `value` in every attacker-reachable string field.
fn hostile_record(value: &str) -> String {
    json!({
        "eventVersion": "1.10",
        "userIdentity": {
            "type": value,
            "principalId": format!("AROA:{value}"),
            "arn": format!("arn:aws:sts::111122223333:assumed-role/r/{value}"),
            "accountId": value,
            "accessKeyId": value,
            "userName": value,
            "invokedBy": value,
            "sessionContext": {
                "sessionIssuer": {"arn": value},
                "sourceIdentity": value,
                "attributes": {"mfaAuthenticated": value}
            }
        },
        "eventTime": value,
        "eventSource": value,
        "eventName": value,
        "awsRegion": value,
        "sourceIPAddress": value,
        "userAgent": value,
        "errorCode": value,
        "errorMessage": value,
        "requestParameters": {
            "roleName": value,
            "policyArn": value,
            "policyName": value,
            "versionId": value,
            "setAsDefault": value,
            "policyDocument": value
        },
        "eventID": value,
        "recipientAccountId": value,
    })
    .to_string()
}

fn hostile_stored(value: &str, record: String) -> StoredAlert {
    StoredAlert {
        id: 1,
        rule: value.to_owned(),
        severity: value.to_owned(),
        event_id: value.to_owned(),
        event_name: value.to_owned(),
        event_time_ms: 1_740_830_400_000,
        source_id: value.to_owned(),
        detected_ms: 1_740_830_460_000,
        record,
        ..StoredAlert::default()
    }
}

/// The tags the HTML template writes; any other `<` followed by a letter came from input.
const TEMPLATE_TAGS: &[&str] = &[
    "!DOCTYPE", "html", "head", "meta", "title", "body", "h1", "h2", "table", "tr", "th", "td",
    "p", "a", "pre",
];

fn check_invariants(alert: &Alert) {
    let subject = render::subject(alert);
    assert!(subject.len() <= 100, "subject too long: {subject:?}");
    assert!(
        subject.chars().all(|c| (' '..='~').contains(&c)),
        "subject not printable ASCII: {subject:?}"
    );
    assert!(!subject.contains("=?"), "an encoded word in {subject:?}");
    check_headers(alert);

    let text = render::text(alert);
    assert!(text.chars().count() <= TEXT_MAX_CHARS);
    if let Some(c) = text
        .chars()
        .find(|&c| c != '\n' && (is_control_or_break(c) || is_bidi_or_invisible(c)))
    {
        panic!("text holds {c:?}");
    }

    let html = render::html(alert);
    assert!(html.len() <= 300_000, "html of {} bytes", html.len());
    if let Some(c) = html
        .chars()
        .find(|&c| c != '\n' && (is_control_or_break(c) || is_bidi_or_invisible(c)))
    {
        panic!("html holds {c:?}");
    }
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script") && !lower.contains("<img") && !lower.contains("<svg"));
    for (i, _) in html.match_indices('<') {
        let rest = html[i + 1..].trim_start_matches('/');
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
            .collect();
        assert!(
            TEMPLATE_TAGS.contains(&name.as_str()),
            "a tag that the template does not write: {:?}",
            &html[i..(i + 40).min(html.len())]
        );
    }
    // Attribute values: only the template's own, and the console link, which is percent-encoded.
    for (i, _) in html.match_indices("href=\"") {
        let url: String = html[i + 6..].chars().take_while(|&c| c != '"').collect();
        assert!(url.starts_with("https://"), "{url}");
        assert!(url.chars().all(|c| c.is_ascii_graphic()), "{url}");
    }

    let json = render::json(alert);
    check_json_strings(&json, "", FIELD_MAX_CHARS);

    // The stdout channel: one line for any reader that splits lines, the same JSON.
    let line = super::stdout::StdoutNotifier::line(alert).unwrap();
    assert!(
        !line.contains(['\n', '\r']) && !line.contains(crate::output::LINE_BREAKERS),
        "{line:?}"
    );
    let parsed: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(parsed["record"], json["record"]);
    assert_eq!(parsed["subject"], json["subject"]);
    check_chat_payloads(alert);
}

/// The email's header block and the SNS subject and attributes: printable ASCII, no encoded
/// word but lettre's own (there are none: every value is ASCII), and the Subject header, once
/// unfolded, exactly the subject rolewatch meant to write.
fn check_headers(alert: &Alert) {
    // A synthetic alert's subject starts with its marker.
    let plain = super::synthetic::banner(alert).is_none();
    let smtp = super::smtp::SmtpNotifier::new(
        "mail",
        &crate::config::SmtpChannelConfig {
            host: "127.0.0.1".into(),
            port: 25,
            tls: crate::config::SmtpTls::None,
            auth: None,
            ca_file: None,
            from: "rolewatch <rolewatch@example.com>".parse().unwrap(),
            to: vec!["oncall@example.com".parse().unwrap()],
            subject_prefix: Some("[rw]".into()),
        },
    )
    .unwrap();
    let raw = String::from_utf8(smtp.message(alert).unwrap().formatted()).unwrap();
    let head = raw.split("\r\n\r\n").next().unwrap();
    assert!(
        !head.contains("=?"),
        "an encoded word in the header block:\n{head}"
    );
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", "\t");
    let mut names = Vec::new();
    for line in unfolded.split("\r\n") {
        assert!(line.bytes().all(|b| (b' '..=b'~').contains(&b)), "{line:?}");
        let (name, value) = line.split_once(": ").unwrap_or_else(|| panic!("{line:?}"));
        names.push(name.to_owned());
        if name == "Subject" && plain {
            let meant = format!("[rw] {}", render::subject(alert));
            assert_eq!(value, super::sanitize::ascii_line(&meant, 200));
        }
    }
    names.sort();
    assert_eq!(
        names,
        [
            "Content-Type",
            "Date",
            "From",
            "MIME-Version",
            "Message-ID",
            "Subject",
            "To"
        ],
        "{head}"
    );

    let p = super::sns::publication(alert).unwrap();
    if plain {
        assert_eq!(p.subject, render::subject(alert));
    }
    for value in std::iter::once(&p.subject).chain(p.attributes.iter().map(|(_, v)| v)) {
        assert!(!value.contains("=?"), "{value:?}");
        assert!(
            value.bytes().all(|b| (b' '..=b'~').contains(&b)),
            "{value:?}"
        );
    }
}

/// Every string of the JSON summary (not inside `record`, which is the evidence as sent) is
/// clean and bounded.
fn check_json_strings(v: &Value, path: &str, max: usize) {
    match v {
        Value::String(s) => {
            let bound = if path == "/record_text" { 8_100 } else { max };
            assert!(
                s.chars().count() <= bound,
                "{path}: {} chars",
                s.chars().count()
            );
            let ok = |c: char| {
                (path == "/record_text" && c == '\n')
                    || (!is_control_or_break(c) && !is_bidi_or_invisible(c))
            };
            assert!(s.chars().all(ok), "{path}: {s:?}");
        }
        Value::Object(map) => {
            for (k, v) in map {
                if path.is_empty() && k == "record" {
                    continue;
                }
                check_json_strings(v, &format!("{path}/{k}"), max);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| check_json_strings(i, path, max)),
        _ => {}
    }
}

#[test]
fn hostile_values_are_neutralised_in_every_medium() {
    let huge = "A".repeat(100 * 1024);
    let huge_mixed = "<script>\r\n\u{202E}".repeat(10 * 1024);
    let mut values: Vec<&str> = HOSTILE.to_vec();
    values.push(&huge);
    values.push(&huge_mixed);
    for value in values {
        let alert = Alert::from_stored(&hostile_stored(value, hostile_record(value)), 0);
        check_invariants(&alert);
        let subject = render::subject(&alert);
        assert!(!subject.contains("\r") && !subject.contains("\n"));
    }
}

#[test]
fn header_injection_stays_on_one_line() {
    let value = "x\r\nBcc: evil@example.com";
    let alert = Alert::from_stored(&hostile_stored("high", hostile_record(value)), 0);
    let subject = render::subject(&alert);
    assert_eq!(
        subject,
        "[HIGH] x??Bcc: evil@example.com on x??Bcc: evil@example.com by x??Bcc: evil@example.com (FAILED)",
        "CR and LF were replaced when the alert was built (U+FFFD), then made ASCII"
    );
    // Only the policy document block keeps the newlines of its value (documents have them);
    // no field above it can start a line.
    let text = render::text(&alert);
    let (fields, blocks) = text
        .split_once("\nPolicy document\n")
        .expect("document block");
    assert!(!fields.contains("\nBcc:"), "{fields}");
    assert!(blocks.contains("\nBcc:"));
}

#[test]
fn script_and_attribute_injection_are_escaped() {
    for value in [
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
    ] {
        let alert = Alert::from_stored(&hostile_stored("high", hostile_record(value)), 0);
        let html = render::html(&alert);
        assert!(html.contains("&#60;"), "the value is shown, escaped");
        assert!(!html.contains(value));
    }
}

#[test]
fn bidi_override_is_made_visible() {
    let value = "astronomer-remote-management\u{202E}x";
    let alert = Alert::from_stored(&hostile_stored("high", hostile_record(value)), 0);
    assert_eq!(
        alert.action.role_name.as_deref(),
        Some("astronomer-remote-management\u{FFFD}x")
    );
    assert!(render::subject(&alert).contains("astronomer-remote-management?x"));
    assert!(render::text(&alert).contains("Role: astronomer-remote-management\u{FFFD}x\n"));
}

/// Regression (issue 11): an encoded word in a role name passed the subject sanitiser as
/// printable ASCII, and mail clients decoded it (here into U+202E, a bidi override).
#[test]
fn an_encoded_word_in_a_role_name_is_shown_not_decoded() {
    let record = json!({
        "eventName": "AttachRolePolicy",
        "errorCode": "AccessDenied",
        "requestParameters": {"roleName": "=?utf-8?q?=E2=80=AE?=", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
        "userIdentity": {"type": "IAMUser", "userName": "=?utf-8?b?PGI+?="},
    })
    .to_string();
    let alert = Alert::from_stored(&hostile_stored("high", record), 0);
    assert_eq!(
        render::subject(&alert),
        "[HIGH] AttachRolePolicy on = ?utf-8?q?=E2=80=AE?= by = ?utf-8?b?PGI+?= (FAILED)"
    );
    let p = super::sns::publication(&alert).unwrap();
    assert_eq!(p.subject, render::subject(&alert));
    // The bodies show the value as it was sent: no client decodes encoded words there.
    assert!(render::text(&alert).contains("Role: =?utf-8?q?=E2=80=AE?=\n"));
    check_invariants(&alert);
}

/// Regression (issue 11): U+2028, U+2029 and U+0085 in a record went to stdout as they were,
/// and readers that split lines on them cut the alert in two.
#[test]
fn line_separators_in_the_record_stay_inside_the_stdout_line() {
    let value = "a\u{2028}b\u{2029}c\u{85}d";
    let alert = Alert::from_stored(&hostile_stored("high", hostile_record(value)), 0);
    let line = super::stdout::StdoutNotifier::line(&alert).unwrap();
    assert!(
        line.contains(r#""userAgent":"a\u2028b\u2029c\u0085d""#),
        "{line}"
    );
    let parsed: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(parsed["record"]["userAgent"], value);
    check_invariants(&alert);
}

#[test]
fn lone_surrogates_and_nul_in_the_raw_record() {
    let records = [
        r#"{"eventName":"AttachRolePolicy","requestParameters":{"roleName":"\ud800"},"userIdentity":{"userName":"a\udfffb"}}"#,
        r#"{"eventName":"AttachRolePolicy","requestParameters":{"roleName":"nul\u0000x"}}"#,
        r#"{"eventName":"\ud800\ud800","errorCode":"\udc00"}"#,
        "{\"eventName\":\"Attach\0RolePolicy\"}",
        "not json at all \u{202E}\r\n<script>",
        "",
    ];
    for record in records {
        let alert = Alert::from_stored(&hostile_stored("high", record.to_owned()), 0);
        check_invariants(&alert);
    }
    let alert = Alert::from_stored(&hostile_stored("high", records[0].to_owned()), 0);
    assert_eq!(alert.action.role_name.as_deref(), Some("\u{FFFD}"));
    assert_eq!(alert.actor.user_name.as_deref(), Some("a\u{FFFD}b"));
    assert!(alert.record.is_some());
    let alert = Alert::from_stored(&hostile_stored("high", records[4].to_owned()), 0);
    assert!(alert.record.is_none());
    assert!(render::json(&alert)["record_text"].is_string());
}

#[test]
fn deeply_nested_and_huge_records_are_bounded() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let wide = json!({
        "eventName": "AttachRolePolicy",
        "requestParameters": {"policyDocument": "x".repeat(300_000)},
        "extra": (0..5_000).map(|i| format!("item {i}")).collect::<Vec<_>>(),
    })
    .to_string();
    for record in [deep, wide] {
        let alert = Alert::from_stored(&hostile_stored("high", record), 0);
        check_invariants(&alert);
    }
}

#[test]
fn extreme_times_do_not_panic() {
    for (event, detected, now) in [
        (i64::MIN, i64::MAX, 0),
        (i64::MAX, i64::MIN, i64::MAX),
        (-1, 0, -5),
        (253_402_300_800_000, 253_402_300_800_000, 0),
    ] {
        let mut s = hostile_stored("high", "{}".to_owned());
        s.event_time_ms = event;
        s.detected_ms = detected;
        check_invariants(&Alert::from_stored(&s, now));
    }
}

// ---- property tests -------------------------------------------------------------------------

/// Strings that mix random Unicode with the pieces attackers use, sometimes long.
fn nasty_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        any::<String>(),
        "\\PC{0,20}",
        Just("\r\n".to_owned()),
        Just("\u{202E}".to_owned()),
        Just("\u{2066}".to_owned()),
        Just("\u{85}".to_owned()),
        Just("\u{2028}".to_owned()),
        Just("\0".to_owned()),
        Just("<script>".to_owned()),
        Just("\"><img src=x onerror=alert(1)>".to_owned()),
        Just("&amp;".to_owned()),
        Just("=?utf-8?q?=E2=80=AE?=".to_owned()),
        Just("=?".to_owned()),
        Just("?=".to_owned()),
        Just("=".to_owned()),
        Just("\u{FFFD}".to_owned()),
        Just("\u{2029}".to_owned()),
        (any::<char>(), 100usize..700).prop_map(|(c, n)| c.to_string().repeat(n)),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_strings_in_every_record_field_keep_the_invariants(value in nasty_string()) {
        let alert = Alert::from_stored(&hostile_stored(&value, hostile_record(&value)), 0);
        check_invariants(&alert);
    }

    #[test]
    fn random_record_text_keeps_the_invariants(record in nasty_string(), now in any::<i64>()) {
        let alert = Alert::from_stored(&hostile_stored("high", record), now);
        check_invariants(&alert);
    }

    #[test]
    fn random_strings_in_a_hand_built_alert_keep_the_invariants(
        values in prop::collection::vec(nasty_string(), 32),
        failed in any::<bool>(),
        times in (any::<i64>(), any::<i64>(), any::<i64>()),
    ) {
        let mut it = values.into_iter().map(Some);
        let mut next = || it.next().flatten();
        let rule = next().unwrap_or_default();
        let alert = Alert {
            id: 1,
            rules: vec![rule.clone()],
            rule,
            severity: next().unwrap_or_default(),
            origin: crate::state::Origin::Rule,
            found_by: crate::state::FoundBy::Poll,
            dedup_key: "0123456789abcdef0123456789abcdef".to_owned(),
            source_id: next().unwrap_or_default(),
            actor: super::alert::Actor {
                identity_type: next(),
                arn: next(),
                account_id: next(),
                principal_id: next(),
                user_name: next(),
                session_name: next(),
                session_issuer_arn: next(),
                source_identity: next(),
                mfa_authenticated: next(),
                invoked_by: next(),
                source_ip_address: next(),
                user_agent: next(),
                access_key_id_last4: next(),
            },
            action: super::alert::Action {
                event_name: next(),
                event_source: next(),
                role_name: next(),
                policy_arn: next(),
                policy_name: next(),
                version_id: next(),
                set_as_default: Some(failed),
                policy_document_chars: Some(3),
                policy_document: next(),
                error_code: next(),
                error_message: next(),
            },
            failed,
            event_time: next(),
            event_time_ms: times.0,
            detected_ms: times.1,
            rendered_ms: times.2,
            aws_region: next(),
            recipient_account_id: next(),
            account_listed: true,
            account_name: next(),
            event_id: next().unwrap_or_default(),
            console_url: next(),
            record: None,
            record_text: next().unwrap_or_default(),
            record_problem: None,
            analysis: None,
        };
        check_invariants(&alert);
    }
}

#[test]
fn long_target_and_actor_share_the_subject_and_failed_survives() {
    let role = format!("astronomer-remote-management-{}", "r".repeat(80));
    let record = json!({
        "eventName": "AttachRolePolicy",
        "errorCode": "AccessDenied",
        "requestParameters": {"roleName": role},
        "userIdentity": {"type": "IAMUser", "userName": "u".repeat(60)},
    })
    .to_string();
    let alert = Alert::from_stored(&hostile_stored("critical", record), 0);
    let subject = render::subject(&alert);
    assert_eq!(subject.len(), 100, "{subject}");
    assert!(subject.starts_with("[CRITICAL] AttachRolePolicy on astronomer-remote-management-"));
    assert!(subject.ends_with("... (FAILED)"), "{subject}");
    assert!(subject.contains(" by uuu"), "{subject}");
}

/// The golden cases' actor class and "via" are what the classifier says of their records, so
/// the goldens cannot show a class the analysis would never give.
#[test]
fn golden_actor_classes_are_the_classifiers() {
    use crate::config::VendorConfig;
    use crate::intel::actor::{classify, via};
    let vendor = VendorConfig::default();
    for (i, case) in cases().iter().enumerate() {
        let Some(a) = analysis_of(case.name) else {
            continue;
        };
        let record: serde_json::Value = serde_json::from_str(&case.record).expect("record");
        assert_eq!(
            classify(&record, &vendor).0,
            a.actor_class,
            "case {i}: {}",
            case.name
        );
        assert_eq!(via(&record), a.via, "case {i}: {}", case.name);
    }
}
