//! The alert model: what on-call needs to know about one matched CloudTrail event, pulled
//! out of the stored record once, for every channel and rendering.
//!
//! [`Alert::from_stored`] never fails and never panics: a record that is not JSON, a field
//! that is missing, `null`, a number where a string was expected or an object where a scalar
//! was expected all just leave the corresponding field `None`. A record with lone UTF-16
//! surrogate escapes (`"\ud800"`, which `serde_json` rejects) is read after replacing them with
//! U+FFFD, and says so in [`Alert::record_problem`].
//!
//! Every string field is already made safe for a body line ([`sanitize::clean_line`]: no
//! control, bidi or invisible character, at most [`FIELD_MAX_CHARS`] characters). The renderers
//! clean again for their own medium, so an `Alert` built by hand is rendered just as safely.
//! The raw record is kept whole in [`Alert::record`]: it is the evidence.
//!
//! Why one file of ~560 lines: one model built from one record in one pass; every field's
//! reading (with its hostile-input fallbacks) sits beside the field.

use std::borrow::Cow;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

use super::sanitize::{self, FIELD_MAX_CHARS};
use crate::intel::Analysis;
use crate::state::StoredAlert;

/// The region of the CloudTrail console for IAM and other global services, whose events
/// CloudTrail records in us-east-1.
const GLOBAL_REGION: &str = "us-east-1";

/// Event sources whose events live in us-east-1 whatever `awsRegion` says.
const GLOBAL_EVENT_SOURCES: &[&str] = &["iam.amazonaws.com", "sts.amazonaws.com"];

/// The longest eventID put in a console link.
const MAX_LINKED_EVENT_ID_BYTES: usize = 128;

/// What stays unescaped in the eventID part of the console link: RFC 3986's unreserved set.
const FRAGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Who made the call: the record's `userIdentity` and the client facts around it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// `userIdentity.type`: `IAMUser`, `AssumedRole`, `Root`, `AWSService`, ...
    pub identity_type: Option<String>,
    /// `userIdentity.arn`.
    pub arn: Option<String>,
    /// `userIdentity.accountId`: the account of the caller (not always the recipient's).
    pub account_id: Option<String>,
    /// `userIdentity.principalId`.
    pub principal_id: Option<String>,
    /// `userIdentity.userName`.
    pub user_name: Option<String>,
    /// The session name of an assumed role: the last part of an `assumed-role/ROLE/SESSION`
    /// ARN, else what follows `:` in the principalId of an `AssumedRole` identity.
    pub session_name: Option<String>,
    /// `userIdentity.sessionContext.sessionIssuer.arn`: the role that was assumed.
    pub session_issuer_arn: Option<String>,
    /// `userIdentity.sessionContext.sourceIdentity`, when the session set one.
    pub source_identity: Option<String>,
    /// `userIdentity.sessionContext.attributes.mfaAuthenticated` (`"true"`/`"false"`).
    pub mfa_authenticated: Option<String>,
    /// `userIdentity.invokedBy`: the AWS service that made the call on the caller's behalf.
    pub invoked_by: Option<String>,
    /// `sourceIPAddress` (an IP address, or a service name for calls made by AWS).
    pub source_ip_address: Option<String>,
    /// `userAgent`.
    pub user_agent: Option<String>,
    /// The last four characters of `userIdentity.accessKeyId`: enough to tell keys apart.
    pub access_key_id_last4: Option<String>,
}

impl Actor {
    /// The shortest name that tells on-call who it was: the session name of an assumed role,
    /// the user name, `root`, the last part of the ARN, the principalId or the invoking
    /// service; `None` when the record names nobody.
    #[must_use]
    pub fn display_name(&self) -> Option<&str> {
        if self.identity_type.as_deref() == Some("Root") {
            return Some("root");
        }
        self.session_name
            .as_deref()
            .or(self.user_name.as_deref())
            .or_else(|| {
                self.arn
                    .as_deref()
                    .and_then(|arn| arn.rsplit(['/', ':']).next())
                    .filter(|s| !s.is_empty())
            })
            .or(self.principal_id.as_deref())
            .or(self.invoked_by.as_deref())
    }
}

/// What was done, and whether it worked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Action {
    /// `eventName` (from the state when the record has none).
    pub event_name: Option<String>,
    /// `eventSource`, such as `iam.amazonaws.com`.
    pub event_source: Option<String>,
    /// `requestParameters.roleName`.
    pub role_name: Option<String>,
    /// `requestParameters.policyArn`.
    pub policy_arn: Option<String>,
    /// `requestParameters.policyName` (inline policies).
    pub policy_name: Option<String>,
    /// `requestParameters.versionId` (`SetDefaultPolicyVersion`, `DeletePolicyVersion`), else
    /// `responseElements.policyVersion.versionId` (the version `CreatePolicyVersion` made).
    pub version_id: Option<String>,
    /// `requestParameters.setAsDefault` (`CreatePolicyVersion`).
    pub set_as_default: Option<bool>,
    /// The length in characters of `requestParameters.policyDocument`, when present.
    pub policy_document_chars: Option<usize>,
    /// `requestParameters.policyDocument` itself, cut and cleaned for display in a body
    /// (never in a subject).
    pub policy_document: Option<String>,
    /// `errorCode`: present when the call failed.
    pub error_code: Option<String>,
    /// `errorMessage`.
    pub error_message: Option<String>,
}

impl Action {
    /// The name of what was changed: the role, else the policy's name (the last part of its
    /// ARN, or `policyName`).
    #[must_use]
    pub fn target(&self) -> Option<&str> {
        self.role_name
            .as_deref()
            .or_else(|| self.policy_short_name())
    }

    /// The policy's name: the last part of `policyArn`, else `policyName`.
    #[must_use]
    pub fn policy_short_name(&self) -> Option<&str> {
        self.policy_arn
            .as_deref()
            .and_then(|arn| arn.rsplit('/').next())
            .filter(|s| !s.is_empty())
            .or(self.policy_name.as_deref())
    }
}

/// One alert, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The alert's row id in the state.
    pub id: i64,
    /// The headline rule: the most severe of those that matched.
    pub rule: String,
    /// Every rule that matched the change, the headline rule first (one alert per change).
    pub rules: Vec<String>,
    /// The highest severity of the rules, as configured (`low`, `high`, ...).
    pub severity: String,
    /// A rule match or rolewatch's own notice.
    pub origin: crate::state::Origin,
    /// How the event was found: a late delivery when by the sweep.
    pub found_by: crate::state::FoundBy,
    /// The delivery dedup key: the same for every resend and every channel of the change.
    pub dedup_key: String,
    /// The source that saw the event first.
    pub source_id: String,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: Action,
    /// True when the record has an `errorCode` (or, for sign-ins, an `errorMessage`): the
    /// attempt failed, and the alert says so.
    pub failed: bool,
    /// `eventTime` as written in the record.
    pub event_time: Option<String>,
    /// The event's time (unix ms), as the state recorded it.
    pub event_time_ms: i64,
    /// When rolewatch recorded the alert (unix ms).
    pub detected_ms: i64,
    /// When this alert was built for sending (unix ms): later than `detected_ms` when the
    /// outbox had to retry.
    pub rendered_ms: i64,
    /// `awsRegion`.
    pub aws_region: Option<String>,
    /// `recipientAccountId`: the account whose trail recorded the event.
    pub recipient_account_id: Option<String>,
    /// The recipient account is one of the `[[account]]`s: alerts then name it in the
    /// subject too (see [`Alert::with_accounts`]).
    pub account_listed: bool,
    /// The `[[account]]`'s `name`, when it has one.
    pub account_name: Option<String>,
    /// CloudTrail's eventID.
    pub event_id: String,
    /// The event in the CloudTrail console; `None` without an eventID or a valid region.
    pub console_url: Option<String>,
    /// The record, parsed; `None` when it is not a JSON object.
    pub record: Option<Value>,
    /// The record as stored, for when it could not be parsed.
    pub record_text: String,
    /// What was wrong with the record, when something was.
    pub record_problem: Option<String>,
    /// The change analysis recorded with the alert ([`crate::intel`]): actor class, diff,
    /// verdict and final severity; `None` when none was recorded (rolewatch's own notices,
    /// or an analysis that did not finish in time).
    pub analysis: Option<Analysis>,
}

impl Alert {
    /// Builds the alert for a stored match; `now_ms` is the time of sending (unix ms).
    #[must_use]
    pub fn from_stored(stored: &StoredAlert, now_ms: i64) -> Alert {
        let (record, record_problem) = parse_record(&stored.record);
        let empty = Map::new();
        let r = record.as_ref().and_then(Value::as_object).unwrap_or(&empty);

        let actor = actor(r);
        let action = action(r, &stored.event_name);
        // A failed console sign-in has an errorMessage but no errorCode.
        let failed = action.error_code.is_some()
            || (action.error_message.is_some()
                && action.event_name.as_deref() == Some("ConsoleLogin"));
        let raw_event_id = if stored.event_id.is_empty() {
            at(r, &["eventID"])
                .and_then(Value::as_str)
                .unwrap_or_default()
        } else {
            stored.event_id.as_str()
        };
        let aws_region = text(r, &["awsRegion"]);
        let console_url = console_url(
            action.event_source.as_deref(),
            aws_region.as_deref(),
            raw_event_id,
        );
        let dedup_key = stored
            .dedup_key
            .clone()
            .unwrap_or_else(|| legacy_dedup_key(&stored.rule, &stored.event_id));
        let rules = if stored.rules.is_empty() {
            vec![sanitize::clean_line(&stored.rule, FIELD_MAX_CHARS)]
        } else {
            stored
                .rules
                .iter()
                .map(|r| sanitize::clean_line(r, FIELD_MAX_CHARS))
                .collect()
        };
        Alert {
            id: stored.id,
            rule: sanitize::clean_line(&stored.rule, FIELD_MAX_CHARS),
            rules,
            severity: sanitize::clean_line(&stored.severity, FIELD_MAX_CHARS),
            origin: stored.origin,
            found_by: stored.found_by,
            dedup_key,
            source_id: sanitize::clean_line(&stored.source_id, FIELD_MAX_CHARS),
            actor,
            action,
            failed,
            event_time: text(r, &["eventTime"]),
            event_time_ms: stored.event_time_ms,
            detected_ms: stored.detected_ms,
            rendered_ms: now_ms,
            aws_region,
            recipient_account_id: text(r, &["recipientAccountId"]),
            account_listed: false,
            account_name: None,
            event_id: sanitize::clean_line(raw_event_id, FIELD_MAX_CHARS),
            console_url,
            record: record.filter(Value::is_object),
            record_text: stored.record.clone(),
            record_problem,
            analysis: None,
        }
    }

    /// Adds the recorded analysis: its final severity replaces the rule's (which stays in
    /// [`Analysis::rule_severity`]).
    #[must_use]
    pub fn with_analysis(mut self, analysis: Option<Analysis>) -> Alert {
        if let Some(a) = &analysis {
            self.severity = sanitize::clean_line(&a.severity, FIELD_MAX_CHARS);
        }
        self.analysis = analysis;
        self
    }

    /// Marks the alert's account as one of the configured `[[account]]`s (`accounts`: id →
    /// name), with its name. The id is the record's `recipientAccountId`; an account not
    /// listed (or no `[[account]]` at all) leaves the alert as it is.
    #[must_use]
    pub fn with_accounts(
        mut self,
        accounts: &std::collections::HashMap<String, Option<String>>,
    ) -> Alert {
        if let Some(name) = self
            .recipient_account_id
            .as_deref()
            .and_then(|id| accounts.get(id))
        {
            self.account_listed = true;
            self.account_name = name
                .as_deref()
                .map(|n| sanitize::clean_line(n, FIELD_MAX_CHARS));
        }
        self
    }

    /// `111122223333 (prod)`, or the id alone; `None` without a recipient account.
    #[must_use]
    pub fn account_label(&self) -> Option<String> {
        let id = self.recipient_account_id.as_deref()?;
        Some(match &self.account_name {
            Some(n) => format!("{id} ({n})"),
            None => id.to_owned(),
        })
    }

    /// How long after the event rolewatch recorded it (ms); negative when the clocks disagree.
    #[must_use]
    pub fn detection_lag_ms(&self) -> i64 {
        self.detected_ms.saturating_sub(self.event_time_ms)
    }

    /// True when the reconciliation sweep found the event: CloudTrail delivered it later
    /// than the polls' overlap.
    #[must_use]
    pub fn is_late(&self) -> bool {
        self.found_by == crate::state::FoundBy::Sweep
    }

    /// True for rolewatch's own notices.
    #[must_use]
    pub fn is_notice(&self) -> bool {
        self.origin == crate::state::Origin::Notice
    }

    /// How long the alert waited between detection and this sending (ms).
    #[must_use]
    pub fn delivery_delay_ms(&self) -> i64 {
        self.rendered_ms.saturating_sub(self.detected_ms)
    }
}

/// The dedup key of alerts recorded before one alert per change (state v4): from the rule and
/// the eventID, as they were sent then, so that a resend of such a row keeps its key.
fn legacy_dedup_key(rule: &str, event_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(rule.as_bytes());
    h.update([0u8]);
    h.update(event_id.as_bytes());
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses the record; on failure, retries with lone surrogate escapes replaced, and says what
/// was wrong.
fn parse_record(text: &str) -> (Option<Value>, Option<String>) {
    let problem = match serde_json::from_str::<Value>(text) {
        Ok(v) if v.is_object() => return (Some(v), None),
        Ok(_) => return (None, Some("the record is not a JSON object".to_owned())),
        Err(err) => err,
    };
    let repaired = replace_lone_surrogates(text);
    if let Cow::Owned(repaired) = repaired {
        if let Ok(v) = serde_json::from_str::<Value>(&repaired) {
            if v.is_object() {
                return (
                    Some(v),
                    Some(
                        "the record holds lone UTF-16 surrogate escapes, shown as U+FFFD"
                            .to_owned(),
                    ),
                );
            }
        }
    }
    (
        None,
        Some(sanitize::clean_line(
            &format!("the record is not valid JSON: {problem}"),
            FIELD_MAX_CHARS,
        )),
    )
}

/// Replaces each `\uD800`–`\uDFFF` escape that is not half of a valid pair with `\uFFFD`.
/// Backslashes only occur inside JSON strings, so the text is scanned as a whole.
fn replace_lone_surrogates(text: &str) -> Cow<'_, str> {
    fn hex4(b: &[u8]) -> Option<u16> {
        let s = std::str::from_utf8(b.get(..4)?).ok()?;
        u16::from_str_radix(s, 16).ok()
    }
    fn unit_at(bytes: &[u8], i: usize) -> Option<u16> {
        if bytes.get(i) == Some(&b'\\') && bytes.get(i + 1) == Some(&b'u') {
            hex4(bytes.get(i + 2..)?)
        } else {
            None
        }
    }

    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = unit_at(bytes, i) else {
            // Some other escape: skip it whole, so that `\\u` is not read as `\u`.
            i += 2;
            continue;
        };
        let is_high = (0xD800..0xDC00).contains(&unit);
        let is_low = (0xDC00..0xE000).contains(&unit);
        if is_high && unit_at(bytes, i + 6).is_some_and(|u| (0xDC00..0xE000).contains(&u)) {
            i += 12;
        } else if is_high || is_low {
            let s = out.get_or_insert_with(|| String::with_capacity(text.len()));
            s.push_str(&text[copied..i]);
            s.push_str("\\uFFFD");
            i += 6;
            copied = i;
        } else {
            i += 6;
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut s) => {
            s.push_str(text.get(copied..).unwrap_or_default());
            Cow::Owned(s)
        }
    }
}

/// The value at `path`, if it is an object member all the way down.
fn at<'a>(obj: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut v = obj.get(*first)?;
    for key in rest {
        v = v.as_object()?.get(*key)?;
    }
    Some(v)
}

/// A scalar at `path` as clean, bounded text: strings as they are, numbers and booleans
/// written out; `None` for absent, `null`, empty, object and array values.
fn text(obj: &Map<String, Value>, path: &[&str]) -> Option<String> {
    let raw = match at(obj, path)? {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        Value::Number(n) => Cow::Owned(n.to_string()),
        Value::Bool(b) => Cow::Owned(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
    };
    if raw.trim().is_empty() {
        return None;
    }
    Some(sanitize::clean_line(&raw, FIELD_MAX_CHARS))
}

fn actor(r: &Map<String, Value>) -> Actor {
    let ui = |k: &str| text(r, &["userIdentity", k]);
    let identity_type = ui("type");
    let arn = ui("arn");
    let principal_id = ui("principalId");
    let session_name = arn
        .as_deref()
        .and_then(assumed_role_session)
        .map(str::to_owned)
        .or_else(|| {
            if identity_type.as_deref() != Some("AssumedRole") {
                return None;
            }
            principal_id
                .as_deref()
                .and_then(|p| p.split_once(':'))
                .map(|(_, session)| session.to_owned())
                .filter(|s| !s.is_empty())
        });
    let access_key_id_last4 = at(r, &["userIdentity", "accessKeyId"])
        .and_then(Value::as_str)
        .map(|k| {
            let chars: Vec<char> = k.chars().collect();
            let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
            sanitize::clean_line(&tail, 4)
        })
        .filter(|s| !s.is_empty());
    Actor {
        identity_type,
        account_id: ui("accountId"),
        principal_id,
        user_name: ui("userName"),
        session_name,
        session_issuer_arn: text(
            r,
            &["userIdentity", "sessionContext", "sessionIssuer", "arn"],
        ),
        source_identity: text(r, &["userIdentity", "sessionContext", "sourceIdentity"]),
        mfa_authenticated: text(
            r,
            &[
                "userIdentity",
                "sessionContext",
                "attributes",
                "mfaAuthenticated",
            ],
        ),
        invoked_by: ui("invokedBy"),
        source_ip_address: text(r, &["sourceIPAddress"]),
        user_agent: text(r, &["userAgent"]),
        access_key_id_last4,
        arn,
    }
}

/// The session name of an `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` ARN.
fn assumed_role_session(arn: &str) -> Option<&str> {
    let resource = arn.split_once(":assumed-role/")?.1;
    let (_role, session) = resource.rsplit_once('/')?;
    (!session.is_empty()).then_some(session)
}

fn action(r: &Map<String, Value>, stored_event_name: &str) -> Action {
    let rp = |k: &str| text(r, &["requestParameters", k]);
    let set_as_default = match at(r, &["requestParameters", "setAsDefault"]) {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    };
    let document = match at(r, &["requestParameters", "policyDocument"]) {
        Some(Value::String(s)) => Some(Cow::Borrowed(s.as_str())),
        Some(v @ Value::Object(_)) => Some(Cow::Owned(v.to_string())),
        _ => None,
    };
    let event_name = text(r, &["eventName"]).or_else(|| {
        (!stored_event_name.is_empty())
            .then(|| sanitize::clean_line(stored_event_name, FIELD_MAX_CHARS))
    });
    Action {
        event_name,
        event_source: text(r, &["eventSource"]),
        role_name: rp("roleName"),
        policy_arn: rp("policyArn"),
        policy_name: rp("policyName"),
        version_id: rp("versionId")
            .or_else(|| text(r, &["responseElements", "policyVersion", "versionId"])),
        set_as_default,
        policy_document_chars: document.as_deref().map(|d| d.chars().count()),
        policy_document: document.as_deref().map(pretty_document),
        error_code: text(r, &["errorCode"]),
        error_message: text(r, &["errorMessage"]),
    }
}

/// The longest policy document shown in a body, in characters.
const DOCUMENT_MAX_CHARS: usize = 2000;

/// A policy document for display: pretty-printed when it is JSON, cleaned and bounded.
fn pretty_document(doc: &str) -> String {
    let pretty = serde_json::from_str::<Value>(doc)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    sanitize::clean_block(pretty.as_deref().unwrap_or(doc), DOCUMENT_MAX_CHARS)
}

/// The event in the CloudTrail console's event history. IAM and STS events are recorded in
/// us-east-1; other events in their `awsRegion`, which must look like a region name (the
/// link is built from event data, so nothing else may reach the host or path).
fn console_url(event_source: Option<&str>, region: Option<&str>, event_id: &str) -> Option<String> {
    // A real eventID is a UUID; anything much longer is not worth a link.
    if event_id.is_empty() || event_id.len() > MAX_LINKED_EVENT_ID_BYTES {
        return None;
    }
    let region = if event_source.is_some_and(|s| GLOBAL_EVENT_SOURCES.contains(&s)) {
        GLOBAL_REGION
    } else {
        let region = region?;
        let plausible = !region.is_empty()
            && region.len() <= 32
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !plausible {
            return None;
        }
        region
    };
    Some(format!(
        "https://{region}.console.aws.amazon.com/cloudtrailv2/home?region={region}#/events/{}",
        utf8_percent_encode(event_id, FRAGMENT)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(record: &str) -> StoredAlert {
        StoredAlert {
            id: 7,
            rule: "astronomer".to_owned(),
            severity: "high".to_owned(),
            event_id: "ev-1".to_owned(),
            event_name: "AttachRolePolicy".to_owned(),
            event_time_ms: 1_000_000,
            source_id: "lookup".to_owned(),
            detected_ms: 1_061_000,
            record: record.to_owned(),
            ..StoredAlert::default()
        }
    }

    #[test]
    fn lone_surrogates_are_replaced_and_pairs_kept() {
        assert_eq!(
            replace_lone_surrogates(r#"{"a":"\ud800x\udc00\\ud800\ud83d\ude00"}"#),
            r#"{"a":"\uFFFDx\uFFFD\\ud800\ud83d\ude00"}"#
        );
        assert!(matches!(
            replace_lone_surrogates(r#"{"a":"\u0041"}"#),
            Cow::Borrowed(_)
        ));
        assert_eq!(replace_lone_surrogates(r#""\ud800"#), r#""\uFFFD"#);
        assert_eq!(replace_lone_surrogates(r#""\ud8"#), r#""\ud8"#);
    }

    #[test]
    fn a_record_with_lone_surrogates_is_still_read() {
        let a = Alert::from_stored(
            &stored(
                r#"{"eventName":"AttachRolePolicy","requestParameters":{"roleName":"r\ud800"}}"#,
            ),
            0,
        );
        assert_eq!(a.action.role_name.as_deref(), Some("r\u{FFFD}"));
        assert!(a
            .record_problem
            .as_deref()
            .is_some_and(|p| p.contains("surrogate")));
    }

    #[test]
    fn oddly_typed_fields_do_not_panic() {
        let a = Alert::from_stored(
            &stored(
                r#"{"userIdentity":{"type":7,"arn":["x"],"accountId":111122223333,"accessKeyId":5},
                    "requestParameters":{"roleName":{"a":1},"setAsDefault":"TRUE","policyDocument":{"Version":"2012-10-17"}},
                    "errorCode":null,"awsRegion":"EU WEST"}"#,
            ),
            0,
        );
        assert_eq!(a.actor.identity_type.as_deref(), Some("7"));
        assert_eq!(a.actor.arn, None);
        assert_eq!(a.actor.account_id.as_deref(), Some("111122223333"));
        assert_eq!(a.actor.access_key_id_last4, None);
        assert_eq!(a.action.role_name, None);
        assert_eq!(a.action.set_as_default, Some(true));
        assert_eq!(a.action.policy_document_chars, Some(24));
        assert!(!a.failed);
        assert_eq!(a.console_url, None, "an implausible region makes no link");
        for record in ["", "null", "[1]", "\"s\"", "{", "{\"userIdentity\":null}"] {
            let a = Alert::from_stored(&stored(record), 0);
            assert_eq!(a.action.event_name.as_deref(), Some("AttachRolePolicy"));
            assert_eq!(a.actor, Actor::default());
        }
    }

    #[test]
    fn session_names() {
        assert_eq!(
            assumed_role_session("arn:aws:sts::1:assumed-role/Role/jane@example.com"),
            Some("jane@example.com")
        );
        assert_eq!(
            assumed_role_session("arn:aws:sts::1:assumed-role/tester"),
            None
        );
        assert_eq!(assumed_role_session("arn:aws:iam::1:user/alice"), None);
        let a = Alert::from_stored(
            &stored(r#"{"userIdentity":{"type":"AssumedRole","principalId":"AROA1:sess"}}"#),
            0,
        );
        assert_eq!(a.actor.session_name.as_deref(), Some("sess"));
        assert_eq!(a.actor.display_name(), Some("sess"));
    }

    #[test]
    fn console_link_encodes_the_event_id() {
        assert_eq!(
            console_url(Some("iam.amazonaws.com"), Some("eu-west-1"), "a/b#c d"),
            Some(
                "https://us-east-1.console.aws.amazon.com/cloudtrailv2/home?region=us-east-1#/events/a%2Fb%23c%20d"
                    .to_owned()
            )
        );
        assert_eq!(
            console_url(Some("s3.amazonaws.com"), Some("eu-west-1"), "e-1"),
            Some(
                "https://eu-west-1.console.aws.amazon.com/cloudtrailv2/home?region=eu-west-1#/events/e-1"
                    .to_owned()
            )
        );
        assert_eq!(console_url(None, Some("evil.com/x"), "e"), None);
        assert_eq!(console_url(None, None, "e"), None);
        assert_eq!(console_url(Some("iam.amazonaws.com"), None, ""), None);
    }

    #[test]
    fn access_key_shows_last_four_only() {
        let a = Alert::from_stored(
            &stored(r#"{"userIdentity":{"accessKeyId":"ASIAEXAMPLEKEY123456"}}"#),
            0,
        );
        assert_eq!(a.actor.access_key_id_last4.as_deref(), Some("3456"));
    }

    #[test]
    fn lags() {
        let a = Alert::from_stored(&stored("{}"), 2_000_000);
        assert_eq!(a.detection_lag_ms(), 61_000);
        assert_eq!(a.delivery_delay_ms(), 939_000);
    }
}
