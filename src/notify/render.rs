//! Rendering an [`Alert`] for each medium: a subject line, a plain-text body, an HTML body for
//! email and a JSON value for machines. Pure functions; the channels only send what these
//! return.
//!
//! Every event-derived string passes through [`sanitize`] here, even though
//! [`Alert::from_stored`] already cleaned it, because an `Alert` can also be built by hand:
//!
//! * [`subject`]: printable ASCII, at most [`SUBJECT_MAX_CHARS`] characters, no CR/LF, no
//!   `=?` (an RFC 2047 encoded word from an event field is shown, never decoded).
//! * [`text`]: no control character but the newlines this module writes, every field at most
//!   [`FIELD_MAX_CHARS`] characters, the whole at most [`TEXT_MAX_CHARS`].
//! * [`html`]: the same values, HTML-escaped by askama (never by hand).
//! * [`json`]: the same values under stable snake_case names, plus the record as an object.
//!
//! The layout puts what on-call decides on first (what happened to which role, by whom, did it
//! work), then the details, then the record itself.
//!
//! Why one file of ~680 lines: the four renderings share one field order, one set of
//! truncation limits and one sanitising path; split, they would drift apart (their goldens
//! are tested together in `notify/tests.rs`).

use std::time::Duration;

use askama::Template;
use serde_json::{json, Value};

use super::alert::Alert;
use super::sanitize::{self, FIELD_MAX_CHARS, SUBJECT_MAX_CHARS};
use crate::time::display_rfc3339_ms;

/// The longest plain-text body, in characters.
pub const TEXT_MAX_CHARS: usize = 32_000;

/// The longest pretty-printed record in a text or HTML body, in characters.
pub const RECORD_MAX_CHARS: usize = 8_000;

/// The longest string value inside the pretty-printed record, in characters: a 100 KB field
/// must not push the rest of the record out of the body.
const RECORD_STRING_MAX_CHARS: usize = 1_024;

/// The longest `record_text` in the JSON output (only present when the record is not JSON).
const RECORD_TEXT_MAX_CHARS: usize = 8_000;

/// Shares of the subject: the severity and event name are cut to these many characters, the
/// rest of the line goes to the target and the actor.
const SUBJECT_SEVERITY_CHARS: usize = 10;
const SUBJECT_EVENT_CHARS: usize = 32;
const SUBJECT_RULES_CHARS: usize = 48;

/// The subject: `[HIGH] WIDENED AttachRolePolicy on astronomer-remote-management by alice
/// (FAILED) [rules complete, documented]`; the verdict only when the alert has an analysis,
/// the rules only when more than one matched the change.
///
/// ASCII only, at most [`SUBJECT_MAX_CHARS`] characters. When everything does not fit, the
/// target and the actor are cut (the target keeps at least three fifths of the room), never
/// the severity or the `(FAILED)` mark.
#[must_use]
pub fn subject(alert: &Alert) -> String {
    let severity = sanitize::ascii_line(&alert.severity, SUBJECT_SEVERITY_CHARS).to_uppercase();
    let severity = if severity.is_empty() {
        "ALERT".to_owned()
    } else {
        severity
    };
    let event = alert
        .action
        .event_name
        .as_deref()
        .map(|e| sanitize::ascii_line(e, SUBJECT_EVENT_CHARS))
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "unknown event".to_owned());
    let verdict = alert
        .analysis
        .as_ref()
        .map(|a| {
            let expected = if a.expected.is_some() {
                "EXPECTED "
            } else {
                ""
            };
            format!("{expected}{} ", a.verdict.as_str().to_uppercase())
        })
        .unwrap_or_default();
    let head = format!("[{severity}] {verdict}{event}");
    let failed = if alert.failed { " (FAILED)" } else { "" };
    // One change that several rules matched is one alert: the subject names them all (a
    // single rule's alert keeps the familiar subject; its body names the rule).
    let rules = if alert.is_notice() || alert.rules.len() < 2 {
        String::new()
    } else {
        let names = sanitize::ascii_line(&alert.rules.join(", "), SUBJECT_RULES_CHARS);
        format!(" [rules {names}]")
    };
    // With `[[account]]`s, which account: the same change in two accounts must not look alike.
    let account = if alert.account_listed {
        alert
            .account_label()
            .map(|l| {
                format!(
                    " [account {}]",
                    sanitize::ascii_line(&l, SUBJECT_RULES_CHARS)
                )
            })
            .unwrap_or_default()
    } else {
        String::new()
    };
    let tail = format!("{failed}{rules}{account}");

    let target = alert
        .action
        .target()
        .map(|t| sanitize::ascii_line(t, SUBJECT_MAX_CHARS))
        .unwrap_or_default();
    let actor = alert
        .actor
        .display_name()
        .map(|a| sanitize::ascii_line(a, SUBJECT_MAX_CHARS))
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    let on = if target.is_empty() { "" } else { " on " };
    const BY: &str = " by ";

    let room = SUBJECT_MAX_CHARS.saturating_sub(head.len() + tail.len() + on.len() + BY.len());
    let (target_room, actor_room) = if target.len() + actor.len() <= room {
        (target.len(), actor.len())
    } else {
        let target_room = target
            .len()
            .min(room.saturating_sub(actor.len()).max(room * 3 / 5));
        (target_room, room - target_room)
    };
    let line = format!(
        "{head}{on}{}{BY}{}{tail}",
        sanitize::ascii_line(&target, target_room),
        sanitize::ascii_line(&actor, actor_room),
    );
    // The parts fit by construction; the final pass is the guarantee.
    sanitize::ascii_line(&line, SUBJECT_MAX_CHARS)
}

/// True for a link that may be shown: `https://`, printable ASCII only, bounded. Links are
/// built by [`Alert::from_stored`] with the eventID percent-encoded; this guards hand-built
/// alerts.
fn is_plain_https(url: &str) -> bool {
    url.starts_with("https://")
        && url.len() <= FIELD_MAX_CHARS
        && url.bytes().all(|b| b.is_ascii_graphic())
}

/// A labelled value of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    label: &'static str,
    value: String,
}

/// What the text and HTML bodies show, cleaned and bounded, in order.
#[derive(Debug, Clone)]
struct View {
    headline: String,
    failure: Vec<Row>,
    summary: Vec<Row>,
    console_url: Option<String>,
    details: Vec<Row>,
    /// The change analysis: actor class, verdict, severity, flags, reasons, baseline.
    change: Vec<Row>,
    /// The change statement by statement.
    statements: Option<String>,
    policy_document: Option<String>,
    record_note: Option<String>,
    record: String,
}

fn row(rows: &mut Vec<Row>, label: &'static str, value: Option<&str>) {
    if let Some(value) = value.filter(|v| !v.is_empty()) {
        rows.push(Row {
            label,
            value: sanitize::clean_line(value, FIELD_MAX_CHARS),
        });
    }
}

fn view(alert: &Alert) -> View {
    let a = &alert.actor;
    let w = &alert.action;

    let mut failure = Vec::new();
    if alert.failed {
        let result = match w.error_code.as_deref() {
            Some(code) => format!("FAILED ({code})"),
            None => "FAILED".to_owned(),
        };
        row(&mut failure, "Result", Some(&result));
        row(&mut failure, "Error", w.error_message.as_deref());
    }

    let mut summary = Vec::new();
    row(&mut summary, "Event", w.event_name.as_deref());
    row(&mut summary, "Role", w.role_name.as_deref());
    row(
        &mut summary,
        "Policy",
        w.policy_arn.as_deref().or(w.policy_name.as_deref()),
    );
    row(&mut summary, "By", a.display_name());
    row(&mut summary, "Principal", a.arn.as_deref());
    row(
        &mut summary,
        "When",
        Some(&display_rfc3339_ms(alert.event_time_ms)),
    );
    row(&mut summary, "Account", alert.account_label().as_deref());
    if alert.rules.len() > 1 {
        row(
            &mut summary,
            "Rules",
            Some(&format!(
                "{} ({}: one change, one alert)",
                alert.rules.join(", "),
                alert.severity
            )),
        );
    } else {
        row(
            &mut summary,
            "Rule",
            Some(&format!("{} ({})", alert.rule, alert.severity)),
        );
    }
    if alert.found_by == crate::state::FoundBy::Backstop {
        row(
            &mut summary,
            "Delivery",
            Some("found by the backstop poll, not the queue: the EventBridge → SQS path did not deliver this change (or not yet)"),
        );
    }
    if alert.is_late() {
        row(
            &mut summary,
            "Delivery",
            Some(&format!(
                "reported {} min after it happened (late delivery: CloudTrail delivered it after the polls' overlap; found by the reconciliation sweep)",
                alert.detection_lag_ms().max(0) / 60_000
            )),
        );
    }

    let mut details = Vec::new();
    row(&mut details, "Identity type", a.identity_type.as_deref());
    row(&mut details, "Caller account", a.account_id.as_deref());
    row(&mut details, "Principal ID", a.principal_id.as_deref());
    row(&mut details, "User name", a.user_name.as_deref());
    row(&mut details, "Session name", a.session_name.as_deref());
    row(
        &mut details,
        "Session issuer",
        a.session_issuer_arn.as_deref(),
    );
    row(
        &mut details,
        "Source identity",
        a.source_identity.as_deref(),
    );
    row(&mut details, "MFA", a.mfa_authenticated.as_deref());
    row(&mut details, "Invoked by", a.invoked_by.as_deref());
    row(&mut details, "Source IP", a.source_ip_address.as_deref());
    row(&mut details, "User agent", a.user_agent.as_deref());
    let key = a.access_key_id_last4.as_deref().map(|k| format!("…{k}"));
    row(&mut details, "Access key", key.as_deref());
    row(&mut details, "Event source", w.event_source.as_deref());
    row(&mut details, "Policy version", w.version_id.as_deref());
    let default = w.set_as_default.map(|b| if b { "yes" } else { "no" });
    row(&mut details, "Set as default", default);
    let document = w
        .policy_document_chars
        .map(|n| format!("{n} characters (shown below)"));
    row(&mut details, "Policy document", document.as_deref());
    row(&mut details, "Region", alert.aws_region.as_deref());
    // The record's own text, when it says something other than the summary's "When".
    let when = display_rfc3339_ms(alert.event_time_ms);
    let event_time = alert.event_time.as_deref().filter(|t| *t != when);
    row(&mut details, "Event time", event_time);
    let detected = format!(
        "{} ({} after the event)",
        display_rfc3339_ms(alert.detected_ms),
        format_lag_ms(alert.detection_lag_ms())
    );
    row(&mut details, "Detected", Some(&detected));
    // An alert that waited in the outbox (a channel was down) says so.
    if alert.delivery_delay_ms() >= 60_000 {
        let sent = format!(
            "{} (held {} in the outbox)",
            display_rfc3339_ms(alert.rendered_ms),
            format_lag_ms(alert.delivery_delay_ms())
        );
        row(&mut details, "Sent", Some(&sent));
    }
    row(&mut details, "Seen by", Some(&alert.source_id));
    row(&mut details, "Event ID", Some(&alert.event_id));
    row(&mut details, "Alert ID", Some(&alert.id.to_string()));

    let (change, statements) = change_view(alert);
    View {
        headline: subject(alert),
        change,
        statements,
        failure,
        summary,
        console_url: alert
            .console_url
            .as_deref()
            .filter(|u| is_plain_https(u))
            .map(str::to_owned),
        details,
        policy_document: w
            .policy_document
            .as_deref()
            .map(|d| sanitize::clean_block(d, 2_000)),
        record_note: alert
            .record_problem
            .as_deref()
            .map(|p| sanitize::clean_line(p, FIELD_MAX_CHARS)),
        record: pretty_record(alert),
    }
}

/// The longest statement-by-statement block, in characters.
const STATEMENTS_MAX_CHARS: usize = 6_000;

/// The most "why" rows shown.
const MAX_REASON_ROWS: usize = 12;

/// The analysis as rows, and the statement-by-statement block.
fn change_view(alert: &Alert) -> (Vec<Row>, Option<String>) {
    let mut rows = Vec::new();
    let Some(a) = &alert.analysis else {
        if !alert.is_notice() {
            row(
                &mut rows,
                "Analysis",
                Some("not available: the alert was sent before its analysis was recorded"),
            );
        }
        return (rows, None);
    };
    let class = match (a.actor_class, a.allowlisted) {
        (crate::intel::actor::ActorClass::Yours, true) => {
            "yours (in allowed_principals)".to_owned()
        }
        (crate::intel::actor::ActorClass::Yours, false) => {
            "yours (NOT in allowed_principals)".to_owned()
        }
        (c, _) => c.to_string(),
    };
    let class = match &a.via {
        Some(via) => format!("{class}, via {via}"),
        None => class,
    };
    row(&mut rows, "Actor class", Some(&class));
    row(
        &mut rows,
        "Verdict",
        Some(&a.verdict.as_str().to_uppercase()),
    );
    if let Some(e) = &a.expected {
        row(&mut rows, "Expected", Some(&e.shown()));
    }
    row(
        &mut rows,
        "Severity",
        Some(&format!("{} ({})", a.severity, a.severity_reason)),
    );
    for f in &a.flags {
        row(&mut rows, "Flag", Some(f));
    }
    if let Some(reason) = &a.diff_unavailable {
        row(
            &mut rows,
            "Diff",
            Some(&format!("diff unavailable: {reason}")),
        );
    }
    row(&mut rows, "Compared", a.compared.as_deref());
    // The verdict's second line: the same change judged against the baseline.
    if let Some(since) = &a.since_baseline {
        row(
            &mut rows,
            "Since baseline",
            Some(&format!(
                "{} ({})",
                since.verdict.as_str().to_uppercase(),
                since.compared
            )),
        );
    }
    for r in a.reasons.iter().take(MAX_REASON_ROWS) {
        row(&mut rows, "Why", Some(r));
    }
    if let Some(b) = &a.baseline {
        let base = match (b.taken_ms, &b.unavailable) {
            (_, Some(why)) => format!("not compared: {why}"),
            (Some(t), None) if b.differences.is_empty() => {
                format!("the role matches the baseline of {}", display_rfc3339_ms(t))
            }
            (Some(t), None) => format!(
                "{} difference(s) from the baseline of {}",
                b.differences.len(),
                display_rfc3339_ms(t)
            ),
            (None, None) => "no baseline".to_owned(),
        };
        row(&mut rows, "Baseline", Some(&base));
        for d in b.differences.iter().take(MAX_REASON_ROWS) {
            row(&mut rows, "Now differs", Some(d));
        }
    }
    let mut block = String::new();
    for st in &a.statements {
        let (mark, what) = match st.change.as_str() {
            "added" => ('+', "added"),
            "removed" => ('-', "removed"),
            _ => ('~', "changed"),
        };
        block.push_str(&format!("{mark} {what} {} statement", st.effect));
        if let Some(sid) = &st.sid {
            block.push_str(&format!(" (Sid {sid})"));
        }
        block.push('\n');
        let mut lines = |sign: char, label: &str, items: &[String]| {
            for i in items {
                block.push_str(&format!("    {sign} {label}: {i}\n"));
            }
        };
        lines('+', &st.action_kind, &st.actions_added);
        lines('-', &st.action_kind, &st.actions_removed);
        lines('+', &st.resource_kind, &st.resources_added);
        lines('-', &st.resource_kind, &st.resources_removed);
        lines('+', "Principal", &st.principals_added);
        lines('-', "Principal", &st.principals_removed);
        lines('+', "Condition", &st.conditions_added);
        lines('-', "Condition", &st.conditions_removed);
    }
    let statements =
        (!block.is_empty()).then(|| sanitize::clean_block(&block, STATEMENTS_MAX_CHARS));
    (rows, statements)
}

/// The record pretty-printed, each string value cut, the whole cleaned and bounded; the
/// stored text itself when it is not JSON.
fn pretty_record(alert: &Alert) -> String {
    let pretty = alert
        .record
        .as_ref()
        .map(|r| {
            let mut r = shorten_strings(r, RECORD_STRING_MAX_CHARS);
            mask_access_key(&mut r);
            r
        })
        .and_then(|r| serde_json::to_string_pretty(&r).ok());
    sanitize::clean_block(
        pretty.as_deref().unwrap_or(&alert.record_text),
        RECORD_MAX_CHARS,
    )
}

/// Shows only the last four characters of `userIdentity.accessKeyId`, as the details do: a key
/// ID is not a secret, but mail gets forwarded and the tail is enough to tell keys apart.
fn mask_access_key(record: &mut Value) {
    if let Some(Value::String(key)) = record.pointer_mut("/userIdentity/accessKeyId") {
        let chars: Vec<char> = key.chars().collect();
        let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
        *key = format!("…{tail}");
    }
}

/// A copy of `v` whose strings (keys included) are at most `max` characters.
fn shorten_strings(v: &Value, max: usize) -> Value {
    match v {
        Value::String(s) => Value::String(sanitize::cut_chars(s, max)),
        Value::Array(items) => items.iter().map(|i| shorten_strings(i, max)).collect(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (sanitize::cut_chars(k, max), shorten_strings(v, max)))
            .collect(),
        other => other.clone(),
    }
}

/// A lag in whole seconds, `5m 2s`; a negative lag (clocks disagree) says so.
fn format_lag_ms(ms: i64) -> String {
    let secs = Duration::from_secs(ms.unsigned_abs() / 1000);
    let text = humantime::format_duration(secs).to_string();
    if ms < 0 {
        format!("-{text}, clocks disagree")
    } else {
        text
    }
}

/// The plain-text body: the headline, the failure if any, the summary, the console link, the
/// details, the policy document and the record. Short labelled lines, most important first;
/// readable on a phone.
///
/// No control character but `\n`; at most [`TEXT_MAX_CHARS`] characters.
#[must_use]
pub fn text(alert: &Alert) -> String {
    let v = view(alert);
    let mut out = String::new();
    out.push_str(&v.headline);
    out.push_str("\n\n");
    if !v.failure.is_empty() {
        push_rows(&mut out, &v.failure);
        out.push('\n');
    }
    push_rows(&mut out, &v.summary);
    if !v.change.is_empty() {
        out.push_str("\nChange\n------\n");
        push_rows(&mut out, &v.change);
    }
    if let Some(block) = &v.statements {
        out.push_str("\nStatement by statement\n----------------------\n");
        out.push_str(block);
        if !block.ends_with('\n') {
            out.push('\n');
        }
    }
    if let Some(url) = &v.console_url {
        out.push_str("\nOpen in the CloudTrail console:\n");
        out.push_str(url);
        out.push('\n');
    }
    out.push_str("\nDetails\n-------\n");
    push_rows(&mut out, &v.details);
    if let Some(doc) = &v.policy_document {
        out.push_str("\nPolicy document\n---------------\n");
        out.push_str(doc);
        out.push('\n');
    }
    out.push_str("\nRecord\n------\n");
    if let Some(note) = &v.record_note {
        out.push_str("Note: ");
        out.push_str(note);
        out.push('\n');
    }
    out.push_str(&v.record);
    out.push('\n');
    // The parts are bounded so that the whole fits; this is the guarantee.
    sanitize::cut_chars(&out, TEXT_MAX_CHARS)
}

fn push_rows(out: &mut String, rows: &[Row]) {
    for r in rows {
        out.push_str(r.label);
        out.push_str(": ");
        out.push_str(&r.value);
        out.push('\n');
    }
}

/// The HTML email body (askama escapes every value).
#[derive(Template)]
#[template(
    ext = "html",
    source = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ v.headline }}</title>
</head>
<body dir="ltr" style="font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; font-size: 15px; color: #1b1b1b; margin: 0; padding: 12px;">
<h1 style="font-size: 18px; margin: 0 0 12px 0;">{{ v.headline }}</h1>
{%- if !v.failure.is_empty() %}
<table role="presentation" style="border-collapse: collapse; margin: 0 0 12px 0; background: #fdecea; border-left: 4px solid #b3261e;">
{%- for r in v.failure %}
<tr><th style="text-align: left; vertical-align: top; padding: 4px 8px; white-space: nowrap;">{{ r.label }}</th><td style="padding: 4px 8px; word-break: break-word;">{{ r.value }}</td></tr>
{%- endfor %}
</table>
{%- endif %}
<table role="presentation" style="border-collapse: collapse; margin: 0 0 12px 0;">
{%- for r in v.summary %}
<tr><th style="text-align: left; vertical-align: top; padding: 2px 8px 2px 0; white-space: nowrap;">{{ r.label }}</th><td style="padding: 2px 0; word-break: break-word;">{{ r.value }}</td></tr>
{%- endfor %}
</table>
{%- if !v.change.is_empty() %}
<h2 style="font-size: 16px; margin: 16px 0 8px 0;">Change</h2>
<table role="presentation" style="border-collapse: collapse; margin: 0 0 12px 0;">
{%- for r in v.change %}
<tr><th style="text-align: left; vertical-align: top; padding: 2px 8px 2px 0; white-space: nowrap;">{{ r.label }}</th><td style="padding: 2px 0; word-break: break-word;">{{ r.value }}</td></tr>
{%- endfor %}
</table>
{%- endif %}
{%- if let Some(block) = v.statements %}
<h2 style="font-size: 16px; margin: 16px 0 8px 0;">Statement by statement</h2>
<pre style="font-size: 13px; background: #f4f4f4; padding: 8px; white-space: pre-wrap; word-break: break-all;">{{ block }}</pre>
{%- endif %}
{%- if let Some(url) = v.console_url %}
<p style="margin: 0 0 16px 0;"><a href="{{ url }}">Open the event in the CloudTrail console</a></p>
{%- endif %}
<h2 style="font-size: 16px; margin: 16px 0 8px 0;">Details</h2>
<table role="presentation" style="border-collapse: collapse; margin: 0 0 12px 0; font-size: 14px;">
{%- for r in v.details %}
<tr><th style="text-align: left; vertical-align: top; padding: 2px 8px 2px 0; white-space: nowrap; font-weight: normal; color: #555;">{{ r.label }}</th><td style="padding: 2px 0; word-break: break-word;">{{ r.value }}</td></tr>
{%- endfor %}
</table>
{%- if let Some(doc) = v.policy_document %}
<h2 style="font-size: 16px; margin: 16px 0 8px 0;">Policy document</h2>
<pre style="font-size: 12px; background: #f4f4f4; padding: 8px; white-space: pre-wrap; word-break: break-all;">{{ doc }}</pre>
{%- endif %}
<h2 style="font-size: 16px; margin: 16px 0 8px 0;">Record</h2>
{%- if let Some(note) = v.record_note %}
<p style="margin: 0 0 8px 0;">Note: {{ note }}</p>
{%- endif %}
<pre style="font-size: 12px; background: #f4f4f4; padding: 8px; white-space: pre-wrap; word-break: break-all;">{{ v.record }}</pre>
<p style="font-size: 12px; color: #777;">Sent by rolewatch.</p>
</body>
</html>
"##
)]
struct HtmlBody<'a> {
    v: &'a View,
}

/// What the HTML body says if the template cannot be rendered (it can fail only if writing
/// to a `String` does): no event data, so nothing to escape.
const HTML_FALLBACK: &str = "<!DOCTYPE html>\n<html><body><p>rolewatch could not render this \
                             alert as HTML; see the plain-text part.</p></body></html>\n";

/// The HTML body for email: the same content as [`text`], in tables, every value escaped by
/// the template engine.
#[must_use]
pub fn html(alert: &Alert) -> String {
    let v = view(alert);
    HtmlBody { v: &v }
        .render()
        .unwrap_or_else(|_| HTML_FALLBACK.to_owned())
}

/// The alert for machines: stable snake_case field names, `null` for what the record lacks,
/// every string cleaned and bounded like a body field, and the record itself as an object
/// (`record_text` holds the stored text, cut, only when the record is not JSON).
#[must_use]
pub fn json(alert: &Alert) -> Value {
    let c = |s: &Option<String>| {
        s.as_deref()
            .map(|s| sanitize::clean_line(s, FIELD_MAX_CHARS))
    };
    let a = &alert.actor;
    let w = &alert.action;
    json!({
        "schema": "rolewatch.alert.v1",
        "alert_id": alert.id,
        "rule": sanitize::clean_line(&alert.rule, FIELD_MAX_CHARS),
        "rules": alert.rules.iter().map(|r| sanitize::clean_line(r, FIELD_MAX_CHARS)).collect::<Vec<_>>(),
        "origin": alert.origin.as_str(),
        "found_by": alert.found_by.as_str(),
        "late_delivery": alert.is_late(),
        "dedup_key": alert.dedup_key,
        "severity": sanitize::clean_line(&alert.severity, FIELD_MAX_CHARS),
        "subject": subject(alert),
        "failed": alert.failed,
        "event_id": sanitize::clean_line(&alert.event_id, FIELD_MAX_CHARS),
        "event_name": c(&w.event_name),
        "event_source": c(&w.event_source),
        "event_time": c(&alert.event_time),
        "event_time_ms": alert.event_time_ms,
        "detected_ms": alert.detected_ms,
        "detection_lag_ms": alert.detection_lag_ms(),
        "rendered_ms": alert.rendered_ms,
        "aws_region": c(&alert.aws_region),
        "recipient_account_id": c(&alert.recipient_account_id),
        "account_name": c(&alert.account_name),
        "source_id": sanitize::clean_line(&alert.source_id, FIELD_MAX_CHARS),
        "console_url": alert.console_url.as_deref().filter(|u| is_plain_https(u)),
        "actor": {
            "display_name": a.display_name().map(|s| sanitize::clean_line(s, FIELD_MAX_CHARS)),
            "type": c(&a.identity_type),
            "arn": c(&a.arn),
            "account_id": c(&a.account_id),
            "principal_id": c(&a.principal_id),
            "user_name": c(&a.user_name),
            "session_name": c(&a.session_name),
            "session_issuer_arn": c(&a.session_issuer_arn),
            "source_identity": c(&a.source_identity),
            "mfa_authenticated": c(&a.mfa_authenticated),
            "invoked_by": c(&a.invoked_by),
            "source_ip_address": c(&a.source_ip_address),
            "user_agent": c(&a.user_agent),
            "access_key_id_last4": c(&a.access_key_id_last4),
        },
        "action": {
            "role_name": c(&w.role_name),
            "policy_arn": c(&w.policy_arn),
            "policy_name": c(&w.policy_name),
            "version_id": c(&w.version_id),
            "set_as_default": w.set_as_default,
            "policy_document_chars": w.policy_document_chars,
            "error_code": c(&w.error_code),
            "error_message": c(&w.error_message),
        },
        "actor_class": alert.analysis.as_ref().map(|a| a.actor_class.as_str()),
        "verdict": alert.analysis.as_ref().map(|a| a.verdict.as_str()),
        "analysis": alert.analysis.as_ref().and_then(|a| serde_json::to_value(a).ok()).map(|v| clean_strings(&v)),
        "record": alert.record.clone(),
        "record_problem": c(&alert.record_problem),
        "record_text": if alert.record.is_some() {
            None
        } else {
            Some(sanitize::clean_block(&alert.record_text, RECORD_TEXT_MAX_CHARS))
        },
    })
}

/// A copy of `v` whose strings (keys included) are clean body lines.
fn clean_strings(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(sanitize::clean_line(s, FIELD_MAX_CHARS)),
        Value::Array(items) => items.iter().map(clean_strings).collect(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (sanitize::clean_line(k, FIELD_MAX_CHARS), clean_strings(v)))
            .collect(),
        other => other.clone(),
    }
}
