//! The payloads of the chat and paging channels, built from an [`Alert`] without the
//! network (golden-tested in `notify/tests.rs`):
//!
//! * [`slack`]: a Slack incoming-webhook message: `text` (the notification fallback) and
//!   Block Kit `blocks` (a header, the facts, the verdict, a console button, a context line).
//! * [`teams`]: a Teams message with one Adaptive Card (1.4): a title, a FactSet, a console
//!   button; what Workflows' "post to a channel when a webhook request is received" and the
//!   classic incoming webhook accept.
//! * [`pagerduty`]: a PagerDuty Events API v2 `trigger` (the routing key is added by the
//!   channel, never kept here).
//! * [`chatbot`]: the custom-notification JSON of Amazon Q Developer in chat applications
//!   (formerly AWS Chatbot), published to SNS.
//!
//! Every event-derived string goes through [`sanitize::clean_line`] (no control, line-break,
//! bidi or invisible character; bounded), then through the escaping of its medium:
//!
//! * Slack `mrkdwn` (and the `text` fallback): `&`, `<` and `>` become `&amp;`, `&lt;` and
//!   `&gt;`, as Slack's formatting rules require. Slack's links, user and channel mentions
//!   (`<!channel>`, `<@U123>`, `<https://…|…>`) all start with `<`, so none can be made from
//!   an event field. `plain_text` fields (the header, button labels) are not parsed by Slack
//!   at all.
//! * Teams (Adaptive Card markdown, a CommonMark subset): every ASCII punctuation character
//!   that markdown gives a meaning (`\ ` * _ [ ] ( ) # + - . ! | ~ < > &` and `{ }`) is
//!   backslash-escaped, so an event field shows as typed: no link, no emphasis, no list.
//! * Amazon Q Developer `client-markdown` (rendered as Slack or Teams markdown): in the
//!   title and description `&`, `<`, `>` as for Slack, and `* _ ~ `` ` `` backslash-escaped;
//!   the metadata (identifiers, not markdown) gets the `&`, `<`, `>` escape only, keywords
//!   and the event type keep only letters, digits and `-_.:`.
//! * PagerDuty: plain JSON strings; `summary` at most 1,024 characters, as the API requires.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};

use super::alert::Alert;
use super::sanitize;
use super::{render, synthetic};
use crate::time::display_rfc3339_ms;

/// The longest value shown in a chat fact.
const FACT_MAX_CHARS: usize = 300;

/// Slack's limit on a `header` block's text.
const SLACK_HEADER_MAX_CHARS: usize = 150;

/// Slack allows ten fields per section.
const SLACK_MAX_FIELDS: usize = 10;

/// PagerDuty's limit on `payload.summary`.
pub const PAGERDUTY_SUMMARY_MAX_CHARS: usize = 1024;

/// The most reasons shown in a chat message.
const MAX_REASONS: usize = 5;

/// A role name in the IAM console's URL fragment: RFC 3986's unreserved set stays.
const FRAGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Escapes text for Slack `mrkdwn` and `text`: `&`, `<`, `>` as HTML entities.
#[must_use]
pub fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for Adaptive Card markdown: a backslash before every markdown punctuation.
#[must_use]
pub fn teams_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\`*_[](){}#+-.!|~<>&".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes text for Amazon Q Developer's `client-markdown`.
#[must_use]
pub fn chatbot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in slack_escape(s).chars() {
        if "\\`*_~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn clean(s: &str) -> String {
    sanitize::clean_line(s, FACT_MAX_CHARS)
}

/// The headline: the rendered subject, with a synthetic alert's marker first.
fn headline(alert: &Alert) -> String {
    let subject = render::subject(alert);
    match synthetic::banner(alert) {
        Some((marker, _)) => format!("{marker} {subject}"),
        None => subject,
    }
}

/// The facts on-call decides on, in order, cleaned (not yet escaped).
fn facts(alert: &Alert) -> Vec<(&'static str, String)> {
    let a = &alert.actor;
    let w = &alert.action;
    let mut out = Vec::new();
    let mut push = |label: &'static str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            out.push((label, clean(v)));
        }
    };
    if alert.failed {
        let result = match w.error_code.as_deref() {
            Some(code) => format!("FAILED ({code})"),
            None => "FAILED".to_owned(),
        };
        push("Result", Some(&result));
    }
    push("Event", w.event_name.as_deref());
    push("Role", w.role_name.as_deref());
    push(
        "Policy",
        w.policy_arn.as_deref().or(w.policy_name.as_deref()),
    );
    push("By", a.display_name());
    push("Principal", a.arn.as_deref());
    push("When", Some(&display_rfc3339_ms(alert.event_time_ms)));
    push("Account", alert.recipient_account_id.as_deref());
    push("Source IP", a.source_ip_address.as_deref());
    if let Some(an) = &alert.analysis {
        push("Verdict", Some(&an.verdict.as_str().to_uppercase()));
        push("Actor class", Some(an.actor_class.as_str()));
        if let Some(e) = &an.expected {
            push("Expected", Some(&e.shown()));
        }
    }
    let rule = format!("{} ({})", alert.rules.join(", "), alert.severity);
    let rule = if alert.rules.is_empty() {
        format!("{} ({})", alert.rule, alert.severity)
    } else {
        rule
    };
    push("Rule", Some(&rule));
    out
}

/// The analysis' reasons, cleaned, at most [`MAX_REASONS`].
fn reasons(alert: &Alert) -> Vec<String> {
    alert
        .analysis
        .as_ref()
        .map(|a| {
            a.reasons
                .iter()
                .take(MAX_REASONS)
                .map(|r| clean(r))
                .collect()
        })
        .unwrap_or_default()
}

/// The CloudTrail console link (already a plain https:// link built from escaped parts).
fn cloudtrail_link(alert: &Alert) -> Option<String> {
    alert
        .console_url
        .as_deref()
        .filter(|u| {
            u.starts_with("https://")
                && u.len() <= sanitize::FIELD_MAX_CHARS
                && u.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(str::to_owned)
}

/// The IAM console page of the role, its name percent-encoded.
fn iam_role_link(alert: &Alert) -> Option<String> {
    let role = alert
        .action
        .role_name
        .as_deref()
        .filter(|r| !r.is_empty() && r.len() <= 128)?;
    Some(format!(
        "https://console.aws.amazon.com/iam/home#/roles/details/{}",
        utf8_percent_encode(role, FRAGMENT)
    ))
}

/// The Slack incoming-webhook message.
#[must_use]
pub fn slack(alert: &Alert) -> Value {
    let head = headline(alert);
    let mut blocks = vec![json!({
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": sanitize::cut_chars(&clean(&head), SLACK_HEADER_MAX_CHARS),
            "emoji": false,
        }
    })];
    if let Some((_, line)) = synthetic::banner(alert) {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": slack_escape(&clean(&line))}
        }));
    }
    let fields: Vec<Value> = facts(alert)
        .into_iter()
        .take(SLACK_MAX_FIELDS)
        .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{}", slack_escape(&v))}))
        .collect();
    blocks.push(json!({"type": "section", "fields": fields}));
    let why = reasons(alert);
    if !why.is_empty() {
        let text: Vec<String> = why
            .iter()
            .map(|r| format!("• {}", slack_escape(r)))
            .collect();
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*Why*\n{}", text.join("\n"))}
        }));
    }
    let mut buttons = Vec::new();
    if let Some(url) = cloudtrail_link(alert) {
        buttons.push(json!({
            "type": "button",
            "text": {"type": "plain_text", "text": "Open in CloudTrail"},
            "url": url,
        }));
    }
    if let Some(url) = iam_role_link(alert) {
        buttons.push(json!({
            "type": "button",
            "text": {"type": "plain_text", "text": "Open the role in IAM"},
            "url": url,
        }));
    }
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{
            "type": "mrkdwn",
            "text": format!(
                "rolewatch alert {} · event {} · dedup {}",
                alert.id,
                slack_escape(&clean(&alert.event_id)),
                alert.dedup_key
            ),
        }]
    }));
    json!({
        "text": slack_escape(&clean(&head)),
        "blocks": blocks,
    })
}

/// The Teams message: one Adaptive Card.
#[must_use]
pub fn teams(alert: &Alert) -> Value {
    let head = headline(alert);
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": teams_escape(&clean(&head)),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
    })];
    if let Some((_, line)) = synthetic::banner(alert) {
        body.push(json!({"type": "TextBlock", "text": teams_escape(&clean(&line)), "wrap": true}));
    }
    let facts: Vec<Value> = facts(alert)
        .into_iter()
        .map(|(k, v)| json!({"title": k, "value": teams_escape(&v)}))
        .collect();
    body.push(json!({"type": "FactSet", "facts": facts}));
    for r in reasons(alert) {
        body.push(json!({
            "type": "TextBlock",
            "text": format!("Why: {}", teams_escape(&r)),
            "wrap": true,
            "isSubtle": true,
        }));
    }
    body.push(json!({
        "type": "TextBlock",
        "text": teams_escape(&format!(
            "rolewatch alert {} · event {} · dedup {}",
            alert.id,
            clean(&alert.event_id),
            alert.dedup_key
        )),
        "size": "Small",
        "isSubtle": true,
        "wrap": true,
    }));
    let mut actions = Vec::new();
    if let Some(url) = cloudtrail_link(alert) {
        actions.push(json!({"type": "Action.OpenUrl", "title": "Open in CloudTrail", "url": url}));
    }
    if let Some(url) = iam_role_link(alert) {
        actions
            .push(json!({"type": "Action.OpenUrl", "title": "Open the role in IAM", "url": url}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": body,
                "actions": actions,
            }
        }]
    })
}

/// PagerDuty's severity for rolewatch's: `critical` → `critical`, `high` → `error`,
/// `medium` → `warning`, `low` and `info` (and anything else) → `info`.
#[must_use]
pub fn pagerduty_severity(severity: &str) -> &'static str {
    match severity {
        "critical" => "critical",
        "high" => "error",
        "medium" => "warning",
        _ => "info",
    }
}

/// A PagerDuty Events API v2 `trigger`, without `routing_key` (the channel adds it).
#[must_use]
pub fn pagerduty(alert: &Alert) -> Value {
    let c = |s: &Option<String>| s.as_deref().map(clean);
    let a = &alert.actor;
    let w = &alert.action;
    let summary = sanitize::clean_line(&headline(alert), PAGERDUTY_SUMMARY_MAX_CHARS);
    let source = alert
        .recipient_account_id
        .as_deref()
        .map(|acct| format!("aws account {}", clean(acct)))
        .unwrap_or_else(|| "rolewatch".to_owned());
    let component = w
        .role_name
        .as_deref()
        .map(clean)
        .unwrap_or_else(|| "iam".to_owned());
    let verdict = alert.analysis.as_ref().map(|an| {
        json!({
            "verdict": an.verdict.as_str(),
            "actor_class": an.actor_class.as_str(),
            "allowlisted": an.allowlisted,
            "severity": clean(&an.severity.to_string()),
            "severity_reason": clean(&an.severity_reason),
            "reasons": reasons(alert),
        })
    });
    let mut links = Vec::new();
    if let Some(url) = cloudtrail_link(alert) {
        links.push(json!({"href": url, "text": "The event in the CloudTrail console"}));
    }
    if let Some(url) = iam_role_link(alert) {
        links.push(json!({"href": url, "text": "The role in the IAM console"}));
    }
    let mut details = Map::new();
    if let Some((_, line)) = synthetic::banner(alert) {
        details.insert("notice".into(), clean(&line).into());
    }
    details.insert(
        "who".into(),
        json!({
            "display_name": a.display_name().map(clean),
            "type": c(&a.identity_type),
            "arn": c(&a.arn),
            "account_id": c(&a.account_id),
            "session_issuer_arn": c(&a.session_issuer_arn),
            "invoked_by": c(&a.invoked_by),
        }),
    );
    details.insert(
        "what".into(),
        json!({
            "event_name": c(&w.event_name),
            "event_source": c(&w.event_source),
            "role_name": c(&w.role_name),
            "policy": w.policy_arn.as_deref().or(w.policy_name.as_deref()).map(clean),
            "version_id": c(&w.version_id),
            "set_as_default": w.set_as_default,
            "failed": alert.failed,
            "error_code": c(&w.error_code),
            "error_message": c(&w.error_message),
        }),
    );
    details.insert(
        "when".into(),
        json!({
            "event_time": display_rfc3339_ms(alert.event_time_ms),
            "detected": display_rfc3339_ms(alert.detected_ms),
            "detection_lag_ms": alert.detection_lag_ms(),
        }),
    );
    details.insert(
        "from_where".into(),
        json!({
            "source_ip_address": c(&a.source_ip_address),
            "user_agent": c(&a.user_agent),
            "aws_region": c(&alert.aws_region),
            "recipient_account_id": c(&alert.recipient_account_id),
        }),
    );
    details.insert("verdict".into(), verdict.unwrap_or(Value::Null));
    details.insert(
        "rules".into(),
        json!(alert.rules.iter().map(|r| clean(r)).collect::<Vec<_>>()),
    );
    details.insert("rule".into(), clean(&alert.rule).into());
    details.insert("severity".into(), clean(&alert.severity).into());
    details.insert("alert_id".into(), alert.id.into());
    details.insert("event_id".into(), clean(&alert.event_id).into());
    json!({
        "event_action": "trigger",
        "dedup_key": alert.dedup_key,
        "client": "rolewatch",
        "payload": {
            "summary": summary,
            "source": source,
            "severity": pagerduty_severity(&alert.severity),
            "timestamp": display_rfc3339_ms(alert.event_time_ms),
            "component": component,
            "group": "iam",
            "class": w.event_name.as_deref().map(clean).unwrap_or_else(|| "unknown".to_owned()),
            "custom_details": Value::Object(details),
        },
        "links": links,
    })
}

/// The custom notification of Amazon Q Developer in chat applications (formerly AWS
/// Chatbot): `version` `1.0`, `source` `custom`, the content as `client-markdown`, the
/// metadata (`threadId`: the dedup key, so a resend lands in the same thread).
#[must_use]
pub fn chatbot(alert: &Alert) -> Value {
    let head = headline(alert);
    let mut lines = Vec::new();
    if let Some((_, line)) = synthetic::banner(alert) {
        lines.push(chatbot_escape(&clean(&line)));
    }
    for (k, v) in facts(alert) {
        lines.push(format!("*{k}:* {}", chatbot_escape(&v)));
    }
    for r in reasons(alert) {
        lines.push(format!("• {}", chatbot_escape(&r)));
    }
    let mut next_steps = Vec::new();
    if let Some(url) = cloudtrail_link(alert) {
        next_steps.push(format!("Open the event in the CloudTrail console: {url}"));
    }
    if let Some(url) = iam_role_link(alert) {
        next_steps.push(format!("Review the role in the IAM console: {url}"));
    }
    next_steps.push("If nobody expected this change, revert it and find who made it".to_owned());
    // Keywords and the event type: letters, digits and `-_.:` only.
    let keyword = |s: &str| -> String {
        sanitize::ascii_line(s, 40)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-_.:".contains(*c))
            .collect()
    };
    let mut keywords = vec![keyword(&alert.severity)];
    if let Some(e) = alert.action.event_name.as_deref() {
        keywords.push(keyword(e));
    }
    if let Some(an) = &alert.analysis {
        keywords.push(an.verdict.as_str().to_owned());
    }
    keywords.retain(|k| !k.is_empty());
    let mut related = Vec::new();
    if let Some(arn) = alert.action.policy_arn.as_deref() {
        related.push(slack_escape(&clean(arn)));
    }
    if let Some(arn) = alert.actor.arn.as_deref() {
        related.push(slack_escape(&clean(arn)));
    }
    json!({
        "version": "1.0",
        "source": "custom",
        "id": alert.dedup_key,
        "content": {
            "textType": "client-markdown",
            "title": chatbot_escape(&clean(&head)),
            "description": sanitize::cut_chars(&lines.join("\n"), 4000),
            "nextSteps": next_steps,
            "keywords": keywords,
        },
        "metadata": {
            "threadId": alert.dedup_key,
            "summary": slack_escape(&sanitize::ascii_line(&head, 100)),
            "eventType": alert
                .action
                .event_name
                .as_deref()
                .map(keyword)
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "rolewatch-alert".to_owned()),
            "relatedResources": related,
            "additionalContext": {
                "alert_id": alert.id.to_string(),
                "dedup_key": alert.dedup_key,
                "severity": slack_escape(&clean(&alert.severity)),
                "rule": slack_escape(&clean(&alert.rule)),
                "event_id": slack_escape(&clean(&alert.event_id)),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            slack_escape("<!channel> & <@U123>"),
            "&lt;!channel&gt; &amp; &lt;@U123&gt;"
        );
        assert_eq!(
            teams_escape("[x](https://e) *b*"),
            "\\[x\\]\\(https://e\\) \\*b\\*"
        );
        assert_eq!(chatbot_escape("<b>*x*"), "&lt;b&gt;\\*x\\*");
    }

    #[test]
    fn severities_map() {
        assert_eq!(pagerduty_severity("critical"), "critical");
        assert_eq!(pagerduty_severity("high"), "error");
        assert_eq!(pagerduty_severity("medium"), "warning");
        assert_eq!(pagerduty_severity("low"), "info");
        assert_eq!(pagerduty_severity("info"), "info");
        assert_eq!(pagerduty_severity("weird"), "info");
    }
}
