//! Expected changes: whether an analysed change is one that `[[expect]]` announced, and
//! whether it stays within what the entry names. Pure.
//!
//! An entry matches when the event's time is in its window and every condition it names
//! holds (event name, policy, new default version, document hash, actor class, principal).
//! A matched alert is still recorded and delivered, marked EXPECTED. Its severity becomes
//! `info` only when the change cannot have widened access beyond what the entry names:
//! it narrowed or changed nothing, or the entry names the new document
//! (`document_sha256`) and the change set exactly that document. A widening (or a change
//! whose effect is unknown) under an entry that does not name the document keeps the
//! severity the analysis gave, and says why.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::actor::{arn_glob, ActorClass};
use super::policy::Verdict;
use crate::config::Expectation;

/// What the analysis found out about a change, for matching.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub event_name: &'a str,
    pub event_time_ms: i64,
    /// `requestParameters.policyArn`.
    pub policy_arn: Option<&'a str>,
    /// `requestParameters.policyName` (an inline policy).
    pub policy_name: Option<&'a str>,
    /// The version that became the default.
    pub new_version: Option<&'a str>,
    /// The document the change set (decoded).
    pub new_document: Option<&'a Value>,
    pub actor_class: ActorClass,
    /// `userIdentity.arn` and its session issuer's ARN.
    pub principal_arns: [&'a str; 2],
    pub verdict: Verdict,
    pub any_widening: bool,
}

/// An alert's mark: the entry it matched, and whether the change stayed within it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedNote {
    pub description: String,
    /// `from – until`.
    pub window: String,
    /// `Some(why)` when the change may widen beyond what the entry names: then the severity
    /// is not lowered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beyond: Option<String>,
}

impl ExpectedNote {
    /// The mark as every channel shows it: the description and the window, and why the
    /// severity was not lowered when it was not.
    #[must_use]
    pub fn shown(&self) -> String {
        match &self.beyond {
            None => format!("{} (window {})", self.description, self.window),
            Some(beyond) => format!(
                "{} (window {}); severity not lowered: {beyond}",
                self.description, self.window
            ),
        }
    }
}

/// The SHA-256 (hex) of a policy document in canonical form: object keys sorted, no blanks,
/// strings and numbers as JSON writes them. What `document_sha256` must be.
#[must_use]
pub fn document_sha256(doc: &Value) -> String {
    let mut text = String::new();
    canonical(doc, &mut text);
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(x) = m.get(*k) {
                    canonical(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The policy named by an entry (`name` or ARN) is the event's.
fn policy_matches(named: &str, f: &Facts<'_>) -> bool {
    if named.starts_with("arn:") {
        return f.policy_arn == Some(named);
    }
    let managed = f
        .policy_arn
        .and_then(|a| a.rsplit('/').next())
        .is_some_and(|n| n == named);
    managed || f.policy_name == Some(named)
}

/// Whether every condition `e` names holds for the change.
#[must_use]
pub fn matches(e: &Expectation, f: &Facts<'_>) -> bool {
    let in_window = e.from_ms <= f.event_time_ms && f.event_time_ms < e.until_ms;
    in_window
        && (e.event_names.is_empty() || e.event_names.iter().any(|n| n == f.event_name))
        && e.policy.as_deref().is_none_or(|p| policy_matches(p, f))
        && e.default_version
            .as_deref()
            .is_none_or(|v| f.new_version == Some(v))
        && e.document_sha256
            .as_deref()
            .is_none_or(|h| f.new_document.is_some_and(|d| document_sha256(d) == h))
        && e.actor_class
            .as_deref()
            .is_none_or(|c| c == f.actor_class.as_str())
        && (e.principals.is_empty()
            || e.principals.iter().any(|g| {
                f.principal_arns
                    .iter()
                    .any(|a| !a.is_empty() && arn_glob(g, a))
            }))
}

/// The first entry the change matches, as the alert's mark.
#[must_use]
pub fn judge(entries: &[Expectation], f: &Facts<'_>) -> Option<ExpectedNote> {
    let e = entries.iter().find(|e| matches(e, f))?;
    let beyond = if e.document_sha256.is_some() {
        // The document the change set is the one announced.
        None
    } else if f.any_widening || f.verdict == Verdict::Widened {
        Some(
            "it widens access, and the entry does not name the new document \
             (document_sha256): what it grants was not announced"
                .to_owned(),
        )
    } else if f.verdict == Verdict::Unknown {
        Some("whether it widens access is unknown".to_owned())
    } else {
        None
    };
    Some(ExpectedNote {
        description: e.description.clone(),
        window: e.window(),
        beyond,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FROM: i64 = 1_796_860_800_000; // 2026-12-10T00:00:00Z
    const DAY: i64 = 86_400_000;
    const POLICY: &str = "arn:aws:iam::111122223333:policy/AstronomerCrossAccountRole";

    fn entry() -> Expectation {
        Expectation {
            description: "Astronomer notice: v5 adds ec2:CreateVolume".into(),
            from_ms: FROM,
            until_ms: FROM + 2 * DAY,
            event_names: vec!["CreatePolicyVersion".into()],
            policy: Some("AstronomerCrossAccountRole".into()),
            default_version: None,
            document_sha256: None,
            actor_class: Some("vendor".into()),
            principals: Vec::new(),
        }
    }

    fn facts<'a>(doc: &'a Value) -> Facts<'a> {
        Facts {
            event_name: "CreatePolicyVersion",
            event_time_ms: FROM + DAY,
            policy_arn: Some(POLICY),
            policy_name: None,
            new_version: Some("v5"),
            new_document: Some(doc),
            actor_class: ActorClass::Vendor,
            principal_arns: [
                "arn:aws:sts::406882777402:assumed-role/astronomer-remote-management/s",
                "arn:aws:iam::406882777402:role/astronomer-remote-management",
            ],
            verdict: Verdict::Narrowed,
            any_widening: false,
        }
    }

    #[test]
    fn the_hash_ignores_key_order_and_blanks_but_not_content() {
        let a: Value = serde_json::from_str(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:Get*","Resource":"*"}]}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            "{ \"Statement\" : [ {\"Resource\":\"*\", \"Action\":\"s3:Get*\",\n \"Effect\":\"Allow\"} ],\n \"Version\":\"2012-10-17\" }",
        )
        .unwrap();
        let c = json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]});
        assert_eq!(document_sha256(&a), document_sha256(&b));
        assert_ne!(document_sha256(&a), document_sha256(&c));
        assert_eq!(document_sha256(&a).len(), 64);
        // Known value: sha256 of the canonical text.
        let text = r#"{"Statement":[{"Action":"s3:Get*","Effect":"Allow","Resource":"*"}],"Version":"2012-10-17"}"#;
        let want: String = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(document_sha256(&a), want);
    }

    #[test]
    fn the_window_is_from_inclusive_until_exclusive() {
        let doc = json!({});
        let e = entry();
        for (t, want) in [
            (FROM - 1, false),
            (FROM, true),
            (FROM + 2 * DAY - 1, true),
            (FROM + 2 * DAY, false),
        ] {
            let f = Facts {
                event_time_ms: t,
                ..facts(&doc)
            };
            assert_eq!(matches(&e, &f), want, "at {t}");
        }
    }

    #[test]
    fn every_named_condition_must_hold() {
        let doc = json!({"Statement": []});
        let base = facts(&doc);
        assert!(matches(&entry(), &base));
        let other_doc = json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
        let cases: Vec<(&str, Expectation, Facts<'_>)> = vec![
            (
                "event name",
                entry(),
                Facts {
                    event_name: "SetPolicyVersion",
                    ..base
                },
            ),
            (
                "policy by name",
                entry(),
                Facts {
                    policy_arn: Some("arn:aws:iam::111122223333:policy/Other"),
                    ..base
                },
            ),
            (
                "policy by ARN",
                Expectation {
                    policy: Some(
                        "arn:aws:iam::999999999999:policy/AstronomerCrossAccountRole".into(),
                    ),
                    ..entry()
                },
                base,
            ),
            (
                "version",
                Expectation {
                    default_version: Some("v6".into()),
                    ..entry()
                },
                base,
            ),
            (
                "document",
                Expectation {
                    document_sha256: Some(document_sha256(&other_doc)),
                    ..entry()
                },
                base,
            ),
            (
                "no document",
                Expectation {
                    document_sha256: Some(document_sha256(&doc)),
                    ..entry()
                },
                Facts {
                    new_document: None,
                    ..base
                },
            ),
            (
                "actor class",
                entry(),
                Facts {
                    actor_class: ActorClass::Yours,
                    ..base
                },
            ),
            (
                "principal",
                Expectation {
                    principals: vec!["arn:aws:iam::111122223333:role/*".into()],
                    ..entry()
                },
                base,
            ),
        ];
        for (what, e, f) in cases {
            assert!(!matches(&e, &f), "{what} should not match");
        }
        let inline = Expectation {
            policy: Some("vendor-inline".into()),
            event_names: vec!["PutRolePolicy".into()],
            ..entry()
        };
        let put = Facts {
            event_name: "PutRolePolicy",
            policy_arn: None,
            policy_name: Some("vendor-inline"),
            ..base
        };
        assert!(matches(&inline, &put), "an inline policy by its name");
        let by_principal = Expectation {
            principals: vec!["arn:aws:iam::406882777402:role/astronomer-*".into()],
            document_sha256: Some(document_sha256(&doc)),
            default_version: Some("v5".into()),
            policy: Some(POLICY.into()),
            ..entry()
        };
        assert!(
            matches(&by_principal, &base),
            "issuer glob, hash, version, ARN"
        );
    }

    #[test]
    fn a_widening_is_within_the_entry_only_when_it_names_the_document() {
        let doc = json!({"Statement": [{"Effect": "Allow", "Action": "ec2:CreateVolume", "Resource": "*"}]});
        let widened = Facts {
            verdict: Verdict::Widened,
            any_widening: true,
            ..facts(&doc)
        };
        let note = judge(&[entry()], &widened).expect("matched");
        assert!(note
            .beyond
            .as_deref()
            .is_some_and(|b| b.contains("document_sha256")));
        assert_eq!(note.window, "2026-12-10T00:00:00Z – 2026-12-12T00:00:00Z");
        let pinned = Expectation {
            document_sha256: Some(document_sha256(&doc)),
            ..entry()
        };
        assert_eq!(judge(&[pinned], &widened).expect("matched").beyond, None);
        let unknown = Facts {
            verdict: Verdict::Unknown,
            ..facts(&doc)
        };
        assert!(judge(&[entry()], &unknown).expect("m").beyond.is_some());
        let narrowed = facts(&doc);
        assert_eq!(judge(&[entry()], &narrowed).expect("m").beyond, None);
        // Mixed: narrowed overall but one statement widened.
        let mixed = Facts {
            any_widening: true,
            ..facts(&doc)
        };
        assert!(judge(&[entry()], &mixed).expect("m").beyond.is_some());
        let outside = Facts {
            event_time_ms: FROM - DAY,
            ..widened
        };
        assert_eq!(judge(&[entry()], &outside), None);
    }
}
