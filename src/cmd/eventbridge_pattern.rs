//! `rolewatch eventbridge-pattern`: the EventBridge event pattern for the rule that feeds an
//! `sqs` source, derived from the compiled rules and never narrower than they are: it pins
//! `detail.eventSource` and `detail.eventName` only when every rule pins them to a finite set
//! (the union is printed), and the `source` accordingly (`aws.iam` for `iam.amazonaws.com`).
//! `detail.requestParameters.*` tests (the role, the policy) are pinned too, as `$or`, when
//! every rule needs one of them (`FilterPattern::necessary_text`: string tests no number can
//! pass, on plain member paths); what the pattern leaves open the engine decides on each
//! event.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::cli::RunArgs;
use filter_pattern::TextTest;

use crate::rules::Rule;

/// Loads the configuration and prints the pattern as JSON.
///
/// # Errors
///
/// An invalid configuration (exit 78) or an output that cannot be written.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = crate::config::load(args.config.as_deref())?;
    let text = serde_json::to_string_pretty(&pattern(&cfg.rules))?;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The union over `rules` of the values each pins `selector` to; `None` when one does not.
fn union(rules: &[Rule], selector: &str) -> Option<BTreeSet<String>> {
    let mut all = BTreeSet::new();
    for r in rules {
        all.extend(r.pattern.required_values(selector)?);
    }
    Some(all)
}

/// Text tests one of which every event any rule matches passes (the role, the policy), or
/// `None` when a rule has none besides the event name and source (which are pinned apart).
fn necessary(rules: &[Rule]) -> Option<Vec<TextTest>> {
    let avoid = ["$.eventName", "$.eventSource"];
    let mut all: Vec<TextTest> = Vec::new();
    for r in rules {
        let tests = r.pattern.necessary_text(&avoid)?;
        if tests
            .iter()
            .any(|t| t.path == ["eventName"] || t.path == ["eventSource"])
        {
            return None;
        }
        for t in tests {
            if !all.contains(&t) {
                all.push(t);
            }
        }
    }
    (!all.is_empty()).then_some(all)
}

/// `{"a": {"b": [matcher]}}` for the test of `$.a.b`: an exact string, or EventBridge's
/// `wildcard` (where `\` escapes, so a backslash is written `\\`; a run of `*`, which it
/// rejects, is one `*`, which matches the same).
fn one_test(t: &TextTest) -> Value {
    let matcher = if t.glob.contains('*') {
        let mut w = String::with_capacity(t.glob.len());
        let mut prev = None;
        for c in t.glob.chars() {
            match c {
                '*' if prev == Some('*') => {}
                '\\' => w.push_str(r"\\"),
                c => w.push(c),
            }
            prev = Some(c);
        }
        json!({ "wildcard": w })
    } else {
        json!(t.glob)
    };
    let mut v = json!([matcher]);
    for key in t.path.iter().rev() {
        v = json!({ key.as_str(): v });
    }
    v
}

/// Merges `add` into `into`, object by object.
fn merge(into: &mut serde_json::Map<String, Value>, add: serde_json::Map<String, Value>) {
    for (k, v) in add {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// The event pattern that lets through every event any of `rules` can match.
#[must_use]
pub fn pattern(rules: &[Rule]) -> Value {
    let mut detail = serde_json::Map::new();
    let sources = union(rules, "$.eventSource");
    let source = match &sources {
        // iam.amazonaws.com → aws.iam: the EventBridge source of a service's CloudTrail calls.
        Some(s) if !s.is_empty() => {
            detail.insert("eventSource".into(), json!(s));
            let names: BTreeSet<String> = s
                .iter()
                .map(|e| format!("aws.{}", e.strip_suffix(".amazonaws.com").unwrap_or(e)))
                .collect();
            json!(names)
        }
        _ => json!([{ "prefix": "aws." }]),
    };
    if let Some(names) = union(rules, "$.eventName").filter(|n| !n.is_empty()) {
        detail.insert("eventName".into(), json!(names));
    }
    if let Some(tests) = necessary(rules) {
        let mut alternatives: Vec<Value> = tests.iter().map(one_test).collect();
        // One test joins the other fields; several are alternatives (`$or`). A test on a
        // field already pinned above would conflict with it: then leave the role open.
        let clash = tests
            .iter()
            .any(|t| t.path.len() == 1 && detail.contains_key(&t.path[0]));
        if !clash {
            if alternatives.len() == 1 {
                if let Some(Value::Object(m)) = alternatives.pop() {
                    merge(&mut detail, m);
                }
            } else {
                detail.insert("$or".into(), Value::Array(alternatives));
            }
        }
    }
    let mut p = json!({
        "source": source,
        "detail-type": ["AWS API Call via CloudTrail"],
    });
    if !detail.is_empty() {
        p["detail"] = Value::Object(detail);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Severity;
    use filter_pattern::FilterPattern;

    fn rule(p: &str) -> Rule {
        Rule {
            name: "r".into(),
            pattern: FilterPattern::new(p).unwrap(),
            severity: Severity::High,
            channels: None,
            accounts: None,
        }
    }

    #[test]
    fn pinned_names_and_sources_are_the_union() {
        let p = pattern(&[
            rule("{ $.eventSource = iam.amazonaws.com && $.eventName = AttachRolePolicy }"),
            rule("{ $.eventSource = iam.amazonaws.com && ($.eventName = PutRolePolicy || $.eventName = DeleteRolePolicy) }"),
        ]);
        assert_eq!(
            p,
            json!({
                "source": ["aws.iam"],
                "detail-type": ["AWS API Call via CloudTrail"],
                "detail": {
                    "eventSource": ["iam.amazonaws.com"],
                    "eventName": ["AttachRolePolicy", "DeleteRolePolicy", "PutRolePolicy"],
                },
            })
        );
    }

    /// A rule that does not pin a field leaves it open: never narrower than the rules.
    #[test]
    fn a_rule_that_pins_nothing_opens_the_pattern() {
        let p = pattern(&[
            rule("{ $.eventSource = iam.amazonaws.com && $.eventName = AttachRolePolicy }"),
            rule("{ $.eventName = Stop* }"),
        ]);
        assert_eq!(p["source"], json!([{ "prefix": "aws." }]));
        assert!(p.get("detail").is_none(), "{p}");
        let documented = pattern(&[Rule::documented()]);
        assert!(documented["detail"]["eventName"]
            .as_array()
            .unwrap()
            .contains(&json!("AttachRolePolicy")));
    }

    /// The documented pattern pins the policy or the role, as `$or` under `detail`.
    #[test]
    fn the_role_and_policy_are_pinned_where_every_rule_pins_them() {
        let p = pattern(&[Rule::documented()]);
        assert_eq!(
            p["detail"]["$or"],
            json!([
                {"requestParameters": {"policyArn": [{"wildcard": "*AstronomerCrossAccountRole"}]}},
                {"requestParameters": {"roleName": ["astronomer-remote-management"]}},
            ]),
            "{p}"
        );
        // One test joins the other fields; escapes and runs of `*`.
        let p = pattern(&[rule(r#"{ $.eventName = X && $.a.b = "x**\\y*" }"#)]);
        assert_eq!(
            p["detail"]["a"]["b"],
            json!([{"wildcard": r"x*\\y*"}]),
            "{p}"
        );
        // A rule that tests no role or policy leaves them open.
        let p = pattern(&[
            Rule::documented(),
            rule("{ $.eventSource = iam.amazonaws.com && $.eventName = CreateRole }"),
        ]);
        assert!(p["detail"].get("$or").is_none(), "{p}");
        assert!(p["detail"].get("requestParameters").is_none(), "{p}");
    }
}
