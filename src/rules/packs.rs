//! Built-in rule packs: filter patterns generated from the vendor's role, policy and account,
//! and from the trail, log groups and alarms that rolewatch relies on.
//!
//! [`expand`] turns a [`Pack`] and its [`PackParams`] into one or more [`PackRule`]s. Every
//! pattern it produces compiles and is at most [`MAX_PATTERN_CHARS`] characters long for any
//! IAM role and policy name (up to 128 characters), any trail name or ARN and any log group
//! name (up to 512 characters): when the values of one list do not fit in one pattern, they are
//! spread over several rules, never dropped (see [`expand`]).
//!
//! Why one file of ~510 lines: each pack is a table of events and the pattern text built from
//! it; the length and compile tests need them side by side.

use std::fmt;

use filter_pattern::MAX_PATTERN_CHARS;
use serde_json::json;

use super::DOCUMENTED_PATTERN;
use super::{DEFAULT_ACCOUNT, DEFAULT_POLICY, DEFAULT_ROLE};
use crate::rules::Severity;

/// A built-in rule pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pack {
    /// The vendor's documented pattern.
    Documented,
    /// Every IAM event that changes what the vendor's role may do.
    Complete,
    /// Every event that would blind rolewatch: the trail stopped or changed, its log group,
    /// metric filters or alarms deleted.
    TrailTamper,
}

impl Pack {
    /// Every pack, in the order `rolewatch` lists them.
    pub const ALL: [Pack; 3] = [Pack::Documented, Pack::Complete, Pack::TrailTamper];

    /// The pack named `name` (`documented`, `complete`, `trail-tamper`).
    pub fn parse(name: &str) -> Option<Pack> {
        Pack::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The pack's name, as written in a configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Pack::Documented => "documented",
            Pack::Complete => "complete",
            Pack::TrailTamper => "trail-tamper",
        }
    }

    /// One line saying what the pack watches.
    pub fn description(self) -> &'static str {
        match self {
            Pack::Documented => {
                "the vendor's documented pattern, verbatim (it misses SetDefaultPolicyVersion and \
                 the inline-policy, trust-policy and boundary changes)"
            }
            Pack::Complete => {
                "every IAM change to what the vendor's role may do: its managed, inline, trust \
                 and boundary policies, its tags, its deletion, and the vendor policy's versions"
            }
            Pack::TrailTamper => {
                "CloudTrail stopped, deleted or narrowed, and the deletion of the log groups, \
                 metric filters and alarms that rolewatch relies on"
            }
        }
    }

    /// The severity of the pack's rules unless the configuration says otherwise.
    pub fn default_severity(self) -> Severity {
        match self {
            Pack::Documented | Pack::Complete => Severity::High,
            Pack::TrailTamper => Severity::Critical,
        }
    }
}

impl fmt::Display for Pack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a pack is generated from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackParams {
    /// The vendor's role (its name, not its ARN).
    pub role_name: String,
    /// The vendor's managed policy (its name, not its ARN).
    pub policy_name: String,
    /// The vendor's AWS account (12 digits). The patterns do not need it; pattern lint puts it
    /// in the policy ARN of its synthetic events when the pattern names no ARN of its own.
    pub account_id: String,
    /// The trails rolewatch relies on, by name or ARN; empty: any trail.
    pub trails: Vec<String>,
    /// The log groups rolewatch reads (the trail's CloudWatch Logs log group), by name or ARN;
    /// empty: any log group.
    pub log_groups: Vec<String>,
    /// The CloudWatch alarms that watch the same events (e.g. the vendor's documented metric
    /// filter alarm); empty: any alarm.
    pub alarm_names: Vec<String>,
    /// Whether `TagRole` and `UntagRole` count as changes to what the role may do (they do when
    /// policies test `aws:PrincipalTag` or `iam:ResourceTag`).
    pub include_tag_changes: bool,
}

impl Default for PackParams {
    /// Astronomer's role, policy and account; no trail, log group or alarm named; tag changes
    /// included.
    fn default() -> Self {
        PackParams {
            role_name: DEFAULT_ROLE.to_owned(),
            policy_name: DEFAULT_POLICY.to_owned(),
            account_id: DEFAULT_ACCOUNT.to_owned(),
            trails: Vec::new(),
            log_groups: Vec::new(),
            alarm_names: Vec::new(),
            include_tag_changes: true,
        }
    }
}

/// One rule of an expanded pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackRule {
    /// What distinguishes this rule among the pack's rules (`trail`, `logs`, `logs-2`,
    /// `alarms`, …); `None` when the pack is one rule. A rule's name is
    /// [`PackRule::name`].
    pub suffix: Option<String>,
    /// The filter pattern (compiles; at most [`MAX_PATTERN_CHARS`] characters).
    pub pattern: String,
    /// The pack's severity for this rule.
    pub default_severity: Severity,
}

impl PackRule {
    /// The rule's name under `base` (usually the pack's name): `base` or `base-suffix`.
    pub fn name(&self, base: &str) -> String {
        match &self.suffix {
            Some(s) => format!("{base}-{s}"),
            None => base.to_owned(),
        }
    }
}

/// Events naming the role (`requestParameters.roleName`) that change what it may do.
pub const ROLE_EVENTS: [&str; 8] = [
    "AttachRolePolicy",
    "DetachRolePolicy",
    "PutRolePolicy",
    "DeleteRolePolicy",
    "UpdateAssumeRolePolicy",
    "PutRolePermissionsBoundary",
    "DeleteRolePermissionsBoundary",
    "DeleteRole",
];

/// Events naming the role that change its tags ([`PackParams::include_tag_changes`]).
pub const ROLE_TAG_EVENTS: [&str; 2] = ["TagRole", "UntagRole"];

/// Events naming the vendor's policy (`requestParameters.policyArn`) that change what it
/// allows or where it is attached.
pub const POLICY_EVENTS: [&str; 6] = [
    "CreatePolicyVersion",
    "SetDefaultPolicyVersion",
    "DeletePolicyVersion",
    "DeletePolicy",
    "AttachRolePolicy",
    "DetachRolePolicy",
];

/// CloudTrail calls that stop, delete or narrow a trail.
pub const TRAIL_EVENTS: [&str; 4] = [
    "StopLogging",
    "DeleteTrail",
    "UpdateTrail",
    "PutEventSelectors",
];

/// CloudWatch Logs calls that delete what rolewatch reads, or the vendor's metric filter.
pub const LOG_EVENTS: [&str; 2] = ["DeleteLogGroup", "DeleteMetricFilter"];

/// CloudWatch calls that silence alarms.
pub const ALARM_EVENTS: [&str; 2] = ["DeleteAlarms", "DisableAlarmActions"];

/// The role-changing events the `complete` pack watches, role events first, then the
/// policy's own (without the repeated attach and detach): what pattern lint checks a rule
/// about the role against.
pub fn role_changing_events(include_tag_changes: bool) -> Vec<&'static str> {
    let mut events = ROLE_EVENTS.to_vec();
    if include_tag_changes {
        events.extend(ROLE_TAG_EVENTS);
    }
    events.extend(POLICY_EVENTS.iter().filter(|e| !ROLE_EVENTS.contains(e)));
    events
}

/// `s` as a quoted filter-pattern string: `"` and `\` escaped (spec §9 A9). A `*` stays a
/// wildcard: the language has no escape for it (IAM, trail and log group names cannot
/// contain one; an alarm name that does matches a little more than itself).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Expands `pack` for `params`.
///
/// * `documented`: one rule. With Astronomer's role and policy, exactly
///   [`DOCUMENTED_PATTERN`]; otherwise the same pattern (same events, bogus
///   `SetPolicyVersion` included: it is the vendor's pattern) with the role and policy
///   substituted and the role quoted.
/// * `complete`: one rule, `eventSource` `iam.amazonaws.com` and either one of
///   [`ROLE_EVENTS`] (and [`ROLE_TAG_EVENTS`]) with `roleName` the role, or one of
///   [`POLICY_EVENTS`] with `policyArn` ending in `/<policy>` (any path, any account, the
///   policy attached to any role). Failed attempts match too: an attempt is worth knowing.
/// * `trail-tamper`: rules `trail` ([`TRAIL_EVENTS`] on each trail: `requestParameters.name`
///   or, for `PutEventSelectors`, `trailName`, holding the name or an ARN ending in
///   `:trail/<name>`, as the caller wrote it), `logs` ([`LOG_EVENTS`] on each log group) and
///   `alarms` ([`ALARM_EVENTS`] naming any of the alarms). An empty list matches every trail,
///   log group or alarm respectively (for alarms that includes the target-tracking alarms
///   that Application Auto Scaling deletes on its own).
///
/// Splitting: the values of one list go into one pattern while it stays within
/// [`MAX_PATTERN_CHARS`] characters (and, for alarms, within the 3 wildcard selectors a
/// pattern may hold); the rest go into further rules with the suffix numbered from 2
/// (`logs`, `logs-2`, …), so adding a value never renames the first rule. `complete` splits
/// into `role` and `policy` only for names longer than IAM allows. A single value too long
/// for any pattern (no valid name is) still gets its rule, which then fails to compile where
/// the configuration is checked.
pub fn expand(pack: Pack, params: &PackParams) -> Vec<PackRule> {
    let severity = pack.default_severity();
    let rule = |suffix: Option<String>, pattern: String| PackRule {
        suffix,
        pattern,
        default_severity: severity,
    };
    match pack {
        Pack::Documented => vec![rule(None, documented(params))],
        Pack::Complete => {
            let role = role_condition(params);
            let policy = policy_condition(params);
            let one = format!("{{ {IAM_SOURCE} && (({role}) || ({policy})) }}");
            if fits(&one) {
                vec![rule(None, one)]
            } else {
                vec![
                    rule(
                        Some("role".to_owned()),
                        format!("{{ {IAM_SOURCE} && {role} }}"),
                    ),
                    rule(
                        Some("policy".to_owned()),
                        format!("{{ {IAM_SOURCE} && {policy} }}"),
                    ),
                ]
            }
        }
        Pack::TrailTamper => {
            let trails: Vec<String> = unique(&params.trails).map(trail_condition).collect();
            let logs: Vec<String> = unique(&params.log_groups)
                .map(|g| {
                    format!(
                        "$.requestParameters.logGroupName = {}",
                        quote(log_group_name(g))
                    )
                })
                .collect();
            let alarms: Vec<String> = unique(&params.alarm_names)
                .map(|a| format!("$.requestParameters.alarmNames[*] = {}", quote(a)))
                .collect();
            let mut rules = Vec::new();
            let mut group = |suffix: &str, source: &str, events: &[&str], values, max_values| {
                let head = format!(
                    "$.eventSource = {} && ({})",
                    quote(source),
                    any_event(events)
                );
                for (i, pattern) in chunks(&head, values, max_values).into_iter().enumerate() {
                    let suffix = match i {
                        0 => suffix.to_owned(),
                        _ => format!("{suffix}-{}", i + 1),
                    };
                    rules.push(rule(Some(suffix), pattern));
                }
            };
            let any = usize::MAX;
            group(
                "trail",
                "cloudtrail.amazonaws.com",
                &TRAIL_EVENTS,
                &trails,
                any,
            );
            group("logs", "logs.amazonaws.com", &LOG_EVENTS, &logs, any);
            // Each `alarmNames[*]` is a wildcard selector; a pattern may hold 3.
            let wildcards = filter_pattern::MAX_WILDCARDS_PER_PATTERN;
            group(
                "alarms",
                "monitoring.amazonaws.com",
                &ALARM_EVENTS,
                &alarms,
                wildcards,
            );
            rules
        }
    }
}

const IAM_SOURCE: &str = r#"$.eventSource = "iam.amazonaws.com""#;

fn fits(pattern: &str) -> bool {
    pattern.chars().count() <= MAX_PATTERN_CHARS
}

/// `$.eventName = A || $.eventName = B || …` (event names are alphanumeric: no quotes needed).
fn any_event(events: &[&str]) -> String {
    events
        .iter()
        .map(|e| format!("$.eventName = {e}"))
        .collect::<Vec<_>>()
        .join(" || ")
}

fn documented(params: &PackParams) -> String {
    if params.role_name == DEFAULT_ROLE && params.policy_name == DEFAULT_POLICY {
        return DOCUMENTED_PATTERN.to_owned();
    }
    format!(
        "{{ ($.eventName = AttachRolePolicy || $.eventName = DetachRolePolicy || $.eventName = SetPolicyVersion || $.eventName = CreatePolicyVersion) && ($.requestParameters.policyArn = {}  || $.requestParameters.roleName = {}) }}",
        quote(&format!("*{}", params.policy_name)),
        quote(&params.role_name),
    )
}

fn role_condition(params: &PackParams) -> String {
    let mut events = ROLE_EVENTS.to_vec();
    if params.include_tag_changes {
        events.extend(ROLE_TAG_EVENTS);
    }
    format!(
        "$.requestParameters.roleName = {} && ({})",
        quote(&params.role_name),
        any_event(&events)
    )
}

fn policy_condition(params: &PackParams) -> String {
    format!(
        "$.requestParameters.policyArn = {} && ({})",
        quote(&format!("*/{}", params.policy_name)),
        any_event(&POLICY_EVENTS)
    )
}

/// The non-empty values of `list`, first occurrence only.
fn unique(list: &[String]) -> impl Iterator<Item = &str> {
    list.iter()
        .enumerate()
        .filter(|(i, v)| !v.is_empty() && !list[..*i].contains(v))
        .map(|(_, v)| v.as_str())
}

/// The trail as CloudTrail may record it: a name or an ARN, in `name` (StopLogging,
/// DeleteTrail, UpdateTrail) or `trailName` (PutEventSelectors).
fn trail_condition(trail: &str) -> String {
    let values = match trail.rsplit_once(":trail/") {
        Some((_, name)) if trail.starts_with("arn:") => vec![trail.to_owned(), name.to_owned()],
        _ => vec![trail.to_owned(), format!("*:trail/{trail}")],
    };
    let mut conditions = Vec::new();
    for field in ["name", "trailName"] {
        for v in &values {
            conditions.push(format!("$.requestParameters.{field} = {}", quote(v)));
        }
    }
    conditions.join(" || ")
}

/// `arn:aws:logs:REGION:ACCOUNT:log-group:NAME[:*]` → `NAME`; a name stays as it is.
fn log_group_name(group: &str) -> &str {
    match group.split_once(":log-group:") {
        Some((_, rest)) if group.starts_with("arn:") => rest.strip_suffix(":*").unwrap_or(rest),
        _ => group,
    }
}

/// `{ head && (v1 || v2 …) }` patterns holding every value of `values`, as few as fit; one
/// `{ head }` when there are no values.
fn chunks(head: &str, values: &[String], max_values: usize) -> Vec<String> {
    let render = |part: &[String]| -> String {
        if part.is_empty() {
            return format!("{{ {head} }}");
        }
        let alternatives = match part {
            [one] => one.clone(),
            _ => part
                .iter()
                .map(|v| format!("({v})"))
                .collect::<Vec<_>>()
                .join(" || "),
        };
        format!("{{ {head} && ({alternatives}) }}")
    };
    let mut patterns = Vec::new();
    let mut start = 0;
    while start < values.len() || (start == 0 && patterns.is_empty()) {
        let mut end = (start + 1).min(values.len());
        while end < values.len() && end - start < max_values && fits(&render(&values[start..=end]))
        {
            end += 1;
        }
        patterns.push(render(&values[start..end]));
        if end == start {
            break;
        }
        start = end;
    }
    patterns
}

/// A minimal CloudTrail record of each role-changing event ([`role_changing_events`]), as
/// `(eventName, record)`: the role's events name `params.role_name`, the policy's events name
/// `policy_arn`. Pattern lint evaluates a rule on them; the tests use them as positives.
pub(crate) fn role_change_records(
    params: &PackParams,
    policy_arn: &str,
) -> Vec<(&'static str, String)> {
    let account = policy_arn.split(':').nth(4).unwrap_or(&params.account_id);
    let role = params.role_name.as_str();
    let document =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    role_changing_events(params.include_tag_changes)
        .into_iter()
        .map(|event| {
            let request = match event {
                "AttachRolePolicy" => json!({
                    "roleName": role,
                    "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess",
                }),
                "DetachRolePolicy" => json!({"roleName": role, "policyArn": policy_arn}),
                "PutRolePolicy" => json!({
                    "roleName": role,
                    "policyName": "inline",
                    "policyDocument": document,
                }),
                "DeleteRolePolicy" => json!({"roleName": role, "policyName": "inline"}),
                "UpdateAssumeRolePolicy" => json!({"roleName": role, "policyDocument": document}),
                "PutRolePermissionsBoundary" => json!({
                    "roleName": role,
                    "permissionsBoundary": "arn:aws:iam::aws:policy/PowerUserAccess",
                }),
                "TagRole" => json!({
                    "roleName": role,
                    "tags": [{"key": "access", "value": "admin"}],
                }),
                "UntagRole" => json!({"roleName": role, "tagKeys": ["access"]}),
                "CreatePolicyVersion" => json!({
                    "policyArn": policy_arn,
                    "policyDocument": document,
                    "setAsDefault": true,
                }),
                "SetDefaultPolicyVersion" => json!({"policyArn": policy_arn, "versionId": "v2"}),
                "DeletePolicyVersion" => json!({"policyArn": policy_arn, "versionId": "v1"}),
                "DeletePolicy" => json!({"policyArn": policy_arn}),
                // DeleteRole, DeleteRolePermissionsBoundary
                _ => json!({"roleName": role}),
            };
            (event, record("iam.amazonaws.com", event, account, request))
        })
        .collect()
}

/// A minimal CloudTrail management-event record, the way CloudTrail writes it.
pub(crate) fn record(
    source: &str,
    event: &str,
    account: &str,
    request: serde_json::Value,
) -> String {
    json!({
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLEEXAMPLE",
            "arn": format!("arn:aws:iam::{account}:user/rolewatch-lint"),
            "accountId": account,
            "userName": "rolewatch-lint",
        },
        "eventTime": "2025-01-01T00:00:00Z",
        "eventSource": source,
        "eventName": event,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "192.0.2.1",
        "userAgent": "rolewatch-lint",
        "requestParameters": request,
        "responseElements": null,
        "requestID": "00000000-0000-4000-8000-000000000000",
        "eventID": "00000000-0000-4000-8000-000000000001",
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management",
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use filter_pattern::FilterPattern;

    fn compile(rule: &PackRule) -> FilterPattern {
        assert!(
            fits(&rule.pattern),
            "{} characters: {}",
            rule.pattern.chars().count(),
            rule.pattern
        );
        FilterPattern::new(&rule.pattern).unwrap_or_else(|e| panic!("{e:#}\n{}", rule.pattern))
    }

    fn only(rules: Vec<PackRule>) -> FilterPattern {
        assert_eq!(rules.len(), 1, "{rules:#?}");
        assert_eq!(rules[0].suffix, None);
        compile(&rules[0])
    }

    fn policy_arn(params: &PackParams) -> String {
        format!(
            "arn:aws:iam::{}:policy/{}",
            params.account_id, params.policy_name
        )
    }

    /// The longest names IAM allows (and the config accepts): 128 characters for both.
    fn longest_names() -> PackParams {
        PackParams {
            role_name: format!("r{}", "-".repeat(127)),
            policy_name: format!("p{}", "+=,.@_-".repeat(19)[..127].to_owned()),
            ..PackParams::default()
        }
    }

    #[test]
    fn pack_names_round_trip() {
        for pack in Pack::ALL {
            assert_eq!(Pack::parse(pack.as_str()), Some(pack));
            assert_eq!(pack.to_string(), pack.as_str());
            assert!(!pack.description().is_empty());
        }
        assert_eq!(Pack::parse("trail-tamper"), Some(Pack::TrailTamper));
        assert_eq!(Pack::parse("Complete"), None);
        assert_eq!(Pack::parse(""), None);
    }

    #[test]
    fn documented_is_the_vendors_pattern_verbatim_for_astronomer() {
        let rules = expand(Pack::Documented, &PackParams::default());
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].pattern, DOCUMENTED_PATTERN);
        assert_eq!(rules[0].default_severity, Severity::High);
        assert_eq!(rules[0].name("documented"), "documented");
    }

    #[test]
    fn documented_substitutes_another_vendors_names() {
        let params = PackParams {
            role_name: "acme-access".to_owned(),
            policy_name: "AcmePolicy".to_owned(),
            ..PackParams::default()
        };
        let rules = expand(Pack::Documented, &params);
        let pattern = only(rules);
        assert_eq!(
            pattern.as_str(),
            r#"{ ($.eventName = AttachRolePolicy || $.eventName = DetachRolePolicy || $.eventName = SetPolicyVersion || $.eventName = CreatePolicyVersion) && ($.requestParameters.policyArn = "*AcmePolicy"  || $.requestParameters.roleName = "acme-access") }"#
        );
        let attach = record(
            "iam.amazonaws.com",
            "AttachRolePolicy",
            "111122223333",
            json!({"roleName": "acme-access", "policyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}),
        );
        assert!(pattern.is_match(&attach));
        let other = attach.replace("acme-access", "astronomer-remote-management");
        assert!(!pattern.is_match(&other));
        only(expand(Pack::Documented, &longest_names()));
    }

    #[test]
    fn complete_is_one_rule_that_matches_every_role_changing_event() {
        let params = PackParams::default();
        let rules = expand(Pack::Complete, &params);
        assert_eq!(rules[0].default_severity, Severity::High);
        let pattern = only(rules);
        let records = role_change_records(&params, &policy_arn(&params));
        assert_eq!(records.len(), 14);
        for (event, record) in &records {
            assert!(pattern.is_match(record), "{event}: {record}");
        }
        // A policy with a path, in the customer's account, attached to another role.
        let attach_elsewhere = record(
            "iam.amazonaws.com",
            "AttachRolePolicy",
            "111122223333",
            json!({"roleName": "ci", "policyArn": "arn:aws:iam::111122223333:policy/vendor/AstronomerCrossAccountRole"}),
        );
        assert!(pattern.is_match(&attach_elsewhere));
    }

    #[test]
    fn complete_ignores_other_roles_policies_sources_and_events() {
        let params = PackParams::default();
        let pattern = only(expand(Pack::Complete, &params));
        let records = role_change_records(&params, &policy_arn(&params));
        for (event, record) in &records {
            let other_role = record.replace("astronomer-remote-management", "someone-else");
            let other_policy = other_role.replace(
                "policy/AstronomerCrossAccountRole",
                "policy/AstronomerCrossAccountRoleV2",
            );
            // DetachRolePolicy names both; the others name one of the two.
            assert!(!pattern.is_match(&other_policy), "{event}: {other_policy}");
            let other_source = record.replace("iam.amazonaws.com", "autoscaling.amazonaws.com");
            assert!(!pattern.is_match(&other_source), "{event}: {other_source}");
        }
        for event in [
            "UpdateRole",
            "GetRole",
            "ListRolePolicies",
            "CreateRole",
            "TagPolicy",
        ] {
            let r = record(
                "iam.amazonaws.com",
                event,
                "111122223333",
                json!({"roleName": "astronomer-remote-management", "policyArn": policy_arn(&params)}),
            );
            assert!(!pattern.is_match(&r), "{event}");
        }
    }

    #[test]
    fn complete_without_tag_changes() {
        let params = PackParams {
            include_tag_changes: false,
            ..PackParams::default()
        };
        let pattern = only(expand(Pack::Complete, &params));
        assert!(!pattern.as_str().contains("TagRole"));
        let tagged = role_change_records(&PackParams::default(), &policy_arn(&params));
        let (_, tag) = tagged.iter().find(|(e, _)| *e == "TagRole").unwrap();
        assert!(!pattern.is_match(tag));
        assert_eq!(role_change_records(&params, &policy_arn(&params)).len(), 12);
    }

    #[test]
    fn complete_fits_with_the_longest_iam_names() {
        let params = longest_names();
        let pattern = only(expand(Pack::Complete, &params));
        for (event, record) in role_change_records(&params, &policy_arn(&params)) {
            assert!(pattern.is_match(&record), "{event}");
        }
    }

    #[test]
    fn complete_splits_for_names_longer_than_iam_allows() {
        let params = PackParams {
            role_name: "r".repeat(300),
            policy_name: "p".repeat(300),
            ..PackParams::default()
        };
        let rules = expand(Pack::Complete, &params);
        let names: Vec<String> = rules.iter().map(|r| r.name("complete")).collect();
        assert_eq!(names, ["complete-role", "complete-policy"]);
        let patterns: Vec<FilterPattern> = rules.iter().map(compile).collect();
        for (event, record) in role_change_records(&params, &policy_arn(&params)) {
            assert!(patterns.iter().any(|p| p.is_match(&record)), "{event}");
        }
    }

    fn trail_record(event: &str, field: &str, value: &str) -> String {
        record(
            "cloudtrail.amazonaws.com",
            event,
            "111122223333",
            json!({ field: value }),
        )
    }

    #[test]
    fn trail_tamper_without_names_watches_everything() {
        let rules = expand(Pack::TrailTamper, &PackParams::default());
        let names: Vec<String> = rules.iter().map(|r| r.name("trail-tamper")).collect();
        assert_eq!(
            names,
            [
                "trail-tamper-trail",
                "trail-tamper-logs",
                "trail-tamper-alarms"
            ]
        );
        assert!(rules
            .iter()
            .all(|r| r.default_severity == Severity::Critical));
        let patterns: Vec<FilterPattern> = rules.iter().map(compile).collect();
        assert!(patterns[0].is_match(&trail_record("StopLogging", "name", "any")));
        assert!(patterns[0].is_match(&trail_record("PutEventSelectors", "trailName", "any")));
        assert!(!patterns[0].is_match(&trail_record("StartLogging", "name", "any")));
        let delete_group = record(
            "logs.amazonaws.com",
            "DeleteLogGroup",
            "111122223333",
            json!({"logGroupName": "/aws/lambda/x"}),
        );
        assert!(patterns[1].is_match(&delete_group));
        let delete_alarms = record(
            "monitoring.amazonaws.com",
            "DeleteAlarms",
            "111122223333",
            json!({"alarmNames": ["a", "b"]}),
        );
        assert!(patterns[2].is_match(&delete_alarms));
        let wrong_source = delete_alarms.replace("monitoring.amazonaws.com", "logs.amazonaws.com");
        assert!(!patterns.iter().any(|p| p.is_match(&wrong_source)));
    }

    #[test]
    fn trail_tamper_matches_the_named_trail_by_name_or_arn() {
        let params = PackParams {
            trails: vec!["org-trail".to_owned()],
            ..PackParams::default()
        };
        let rules = expand(Pack::TrailTamper, &params);
        let trail = compile(&rules[0]);
        for event in ["StopLogging", "DeleteTrail", "UpdateTrail"] {
            assert!(
                trail.is_match(&trail_record(event, "name", "org-trail")),
                "{event}"
            );
            let arn = "arn:aws:cloudtrail:us-east-1:111122223333:trail/org-trail";
            assert!(trail.is_match(&trail_record(event, "name", arn)), "{event}");
            assert!(!trail.is_match(&trail_record(event, "name", "other-trail")));
            assert!(!trail.is_match(&trail_record(event, "name", "org-trail-2")));
        }
        assert!(trail.is_match(&trail_record("PutEventSelectors", "trailName", "org-trail")));
        assert!(!trail.is_match(&trail_record("PutEventSelectors", "trailName", "x")));

        // Given as an ARN: the ARN itself or the bare name.
        let arn = "arn:aws:cloudtrail:eu-west-1:111122223333:trail/org-trail";
        let params = PackParams {
            trails: vec![arn.to_owned()],
            ..PackParams::default()
        };
        let trail = compile(&expand(Pack::TrailTamper, &params)[0]);
        assert!(trail.is_match(&trail_record("StopLogging", "name", arn)));
        assert!(trail.is_match(&trail_record("StopLogging", "name", "org-trail")));
        let elsewhere = "arn:aws:cloudtrail:eu-west-1:444455556666:trail/org-trail";
        assert!(!trail.is_match(&trail_record("StopLogging", "name", elsewhere)));
    }

    #[test]
    fn trail_tamper_quotes_odd_log_group_names() {
        let groups = [
            "/aws/cloudtrail/org.trail#1",
            "aws-cloudtrail-logs-111122223333-abc",
            r#"weird"quote\back"#,
        ];
        let params = PackParams {
            log_groups: groups.iter().map(|g| g.to_string()).collect(),
            ..PackParams::default()
        };
        let rules = expand(Pack::TrailTamper, &params);
        let logs = compile(&rules[1]);
        assert!(logs.as_str().contains(r#""/aws/cloudtrail/org.trail#1""#));
        assert!(logs.as_str().contains(r#""weird\"quote\\back""#));
        for g in groups {
            for event in LOG_EVENTS {
                let r = record(
                    "logs.amazonaws.com",
                    event,
                    "111122223333",
                    json!({"logGroupName": g, "filterName": "f"}),
                );
                assert!(logs.is_match(&r), "{event} {g}");
                let other = record(
                    "logs.amazonaws.com",
                    event,
                    "111122223333",
                    json!({"logGroupName": format!("{g}x")}),
                );
                assert!(!logs.is_match(&other), "{event} {g}x");
            }
        }
        // A log group ARN names the group.
        let params = PackParams {
            log_groups: vec!["arn:aws:logs:us-east-1:111122223333:log-group:/ct/main:*".into()],
            ..PackParams::default()
        };
        let logs = compile(&expand(Pack::TrailTamper, &params)[1]);
        assert!(
            logs.as_str().contains(r#"logGroupName = "/ct/main""#),
            "{}",
            logs.as_str()
        );
    }

    #[test]
    fn trail_tamper_splits_long_lists_and_keeps_every_value() {
        let longest_group = |i: usize| format!("/{i:03}/{}", "g".repeat(507));
        let params = PackParams {
            trails: (0..5)
                .map(|i| {
                    format!(
                        "arn:aws-us-gov:cloudtrail:us-gov-west-1:111122223333:trail/{i}{}",
                        "t".repeat(127)
                    )
                })
                .collect(),
            log_groups: (0..3).map(longest_group).collect(),
            alarm_names: (0..7).map(|i| format!("alarm {i}")).collect(),
            ..PackParams::default()
        };
        let rules = expand(Pack::TrailTamper, &params);
        let names: Vec<String> = rules.iter().map(|r| r.name("trail-tamper")).collect();
        assert_eq!(
            names,
            [
                "trail-tamper-trail",
                "trail-tamper-trail-2",
                "trail-tamper-trail-3",
                "trail-tamper-trail-4",
                "trail-tamper-trail-5",
                "trail-tamper-logs",
                "trail-tamper-logs-2",
                "trail-tamper-logs-3",
                "trail-tamper-alarms",
                "trail-tamper-alarms-2",
                "trail-tamper-alarms-3",
            ]
        );
        let patterns: Vec<FilterPattern> = rules.iter().map(compile).collect();
        for i in 0..3 {
            let r = record(
                "logs.amazonaws.com",
                "DeleteLogGroup",
                "111122223333",
                json!({"logGroupName": longest_group(i)}),
            );
            assert_eq!(patterns.iter().filter(|p| p.is_match(&r)).count(), 1);
        }
        for i in 0..7 {
            let r = record(
                "monitoring.amazonaws.com",
                "DisableAlarmActions",
                "111122223333",
                json!({"alarmNames": ["unrelated", format!("alarm {i}")]}),
            );
            assert_eq!(
                patterns.iter().filter(|p| p.is_match(&r)).count(),
                1,
                "alarm {i}"
            );
        }
        let unrelated = record(
            "monitoring.amazonaws.com",
            "DeleteAlarms",
            "111122223333",
            json!({"alarmNames": ["alarm 7"]}),
        );
        assert!(!patterns.iter().any(|p| p.is_match(&unrelated)));
    }

    #[test]
    fn trail_tamper_packs_short_lists_into_one_rule_each() {
        let params = PackParams {
            trails: vec!["a".into(), "b".into(), "a".into(), String::new()],
            log_groups: vec!["/ct/a".into(), "/ct/b".into()],
            alarm_names: vec!["x".into(), "y".into(), "z".into()],
            ..PackParams::default()
        };
        let rules = expand(Pack::TrailTamper, &params);
        assert_eq!(rules.len(), 3, "{rules:#?}");
        rules.iter().for_each(|r| {
            compile(r);
        });
        assert_eq!(rules[0].pattern.matches(r#"name = "a""#).count(), 1);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("plain"), r#""plain""#);
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote(""), r#""""#);
    }

    #[test]
    fn every_pack_event_is_a_known_event_name() {
        for e in ROLE_EVENTS
            .iter()
            .chain(&ROLE_TAG_EVENTS)
            .chain(&POLICY_EVENTS)
            .chain(&TRAIL_EVENTS)
            .chain(&LOG_EVENTS)
            .chain(&ALARM_EVENTS)
        {
            assert!(super::super::event_names::is_known(e), "{e}");
        }
    }
}
