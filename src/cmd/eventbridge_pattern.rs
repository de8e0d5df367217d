//! `rolewatch eventbridge-pattern`: the EventBridge event pattern for the rule that feeds an
//! `sqs` source, derived from the compiled rules and never narrower than they are: it pins
//! `detail.eventSource` and `detail.eventName` only when every rule pins them to a finite set
//! (the union is printed), and the `source` accordingly (`aws.iam` for `iam.amazonaws.com`).
//! What the pattern leaves open (the role, the policy) the engine decides on each event.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::cli::RunArgs;
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
}
