//! IAM policy documents: parsing into a normal form, a statement-by-statement diff for people,
//! and a verdict — did access widen? — for severity. Pure: no I/O, no clock.
//!
//! # Normal form
//!
//! A statement becomes an [`Statement`]: `Effect`; `Action` or `NotAction` as a set of
//! lower-cased patterns (IAM action names are case-insensitive); `Resource` or `NotResource`
//! (absent in trust policies); `Principal` or `NotPrincipal` as `TYPE:value` strings (`*` for
//! everyone; a bare 12-digit account becomes its `:root` ARN); `Condition` as a set of
//! `(operator, key, values)` triples, keys lower-cased. A single string and a one-element
//! list are the same; so are the orders of lists and statements.
//!
//! # Verdict
//!
//! Each Allow statement is split into *grants*, one per action × resource × principal (a
//! `Not*` set stays whole). The after-document *widened* access when one of its grants is not
//! covered by any Allow statement of the before-document, or when one of the before-document's
//! Deny grants is not covered by the after-document's Deny statements; it *narrowed* in the
//! mirror cases. A statement covers a grant when its actions, resources and principals include
//! the grant's (glob in glob, see [`glob_covers`]) and every one of its conditions is also
//! imposed on the grant (the same operator and key with a subset of the values; for negated
//! operators a superset). Widened only → [`Verdict::Widened`]; narrowed only →
//! [`Verdict::Narrowed`]; neither → [`Verdict::Unchanged`] (however different the text);
//! both, or a comparison this module cannot decide (an exclusion list against an inclusion
//! list, `NotPrincipal`, a document it cannot parse) → [`Verdict::Unknown`], with the reasons.
//!
//! What it does not model, and so may call a change `widened` that IAM would still refuse:
//! interactions between Allow and Deny of the same document, permission boundaries, SCPs, and
//! the meaning of policy variables.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most grants one document is split into; past it, the comparison says `unknown`.
const MAX_GRANTS: usize = 20_000;

/// Did access widen?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Widened,
    Narrowed,
    Unchanged,
    Unknown,
}

impl Verdict {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Widened => "widened",
            Verdict::Narrowed => "narrowed",
            Verdict::Unchanged => "unchanged",
            Verdict::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

/// A set of patterns that either lists what is included or what is excluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "values", rename_all = "lowercase")]
pub enum Set {
    /// `Action`, `Resource`, `Principal`.
    Only(BTreeSet<String>),
    /// `NotAction`, `NotResource`, `NotPrincipal`.
    Except(BTreeSet<String>),
}

impl Set {
    fn values(&self) -> &BTreeSet<String> {
        match self {
            Set::Only(v) | Set::Except(v) => v,
        }
    }
}

/// One condition: `"StringEquals": {"sts:ExternalId": ["x"]}` is
/// `("StringEquals", "sts:externalid", {"x"})`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Condition {
    pub operator: String,
    pub key: String,
    pub values: BTreeSet<String>,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        write!(f, "{} {} [{}]", self.operator, self.key, values.join(", "))
    }
}

/// A statement in normal form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub actions: Set,
    /// `None` in a trust policy.
    pub resources: Option<Set>,
    /// `None` in an identity policy.
    pub principals: Option<Set>,
    pub conditions: BTreeSet<Condition>,
}

/// A parsed policy document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl Policy {
    /// The empty policy: what a role has of a policy before it is attached or put.
    #[must_use]
    pub fn empty() -> Policy {
        Policy::default()
    }

    /// Parses a document given as text: JSON, or URL-encoded JSON as IAM's `Get*` calls
    /// return it.
    ///
    /// # Errors
    ///
    /// When the text is not a policy document.
    pub fn parse_text(text: &str) -> Result<Policy, ParseError> {
        let trimmed = text.trim_start();
        let decoded;
        let json = if trimmed.starts_with('{') {
            text
        } else {
            decoded = percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map_err(|e| ParseError(format!("the document is not UTF-8 once decoded: {e}")))?;
            &decoded
        };
        let value: Value = serde_json::from_str(json)
            .map_err(|e| ParseError(format!("the document is not JSON: {e}")))?;
        Policy::parse(&value)
    }

    /// Parses a document given as JSON. A `policyDocument` that CloudTrail recorded as a
    /// string inside the record is accepted too.
    ///
    /// # Errors
    ///
    /// When the value is not a policy document.
    pub fn parse(value: &Value) -> Result<Policy, ParseError> {
        if let Value::String(s) = value {
            return Policy::parse_text(s);
        }
        let obj = value
            .as_object()
            .ok_or_else(|| ParseError("the document is not a JSON object".into()))?;
        let statements = match obj.get("Statement") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().map(statement).collect::<Result<_, _>>()?,
            Some(one @ Value::Object(_)) => vec![statement(one)?],
            Some(_) => {
                return Err(ParseError(
                    "`Statement` is neither a list nor an object".into(),
                ))
            }
        };
        Ok(Policy { statements })
    }

    /// Every distinct principal an Allow statement names (`TYPE:value`).
    #[must_use]
    pub fn allowed_principals(&self) -> BTreeSet<String> {
        self.statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .filter_map(|s| match &s.principals {
                Some(Set::Only(p)) => Some(p.iter().cloned()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

fn strings(v: &Value, what: &str) -> Result<BTreeSet<String>, ParseError> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(ParseError(format!(
            "{what} holds a value that is not a string"
        ))),
    };
    match v {
        Value::Array(items) => items.iter().map(one).collect(),
        other => Ok(BTreeSet::from([one(other)?])),
    }
}

fn set(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    not_key: &str,
    norm: impl Fn(&str) -> String,
) -> Result<Option<Set>, ParseError> {
    match (obj.get(key), obj.get(not_key)) {
        (Some(_), Some(_)) => Err(ParseError(format!(
            "a statement has both `{key}` and `{not_key}`"
        ))),
        (Some(v), None) => Ok(Some(Set::Only(
            strings(v, key)?.iter().map(|s| norm(s)).collect(),
        ))),
        (None, Some(v)) => Ok(Some(Set::Except(
            strings(v, not_key)?.iter().map(|s| norm(s)).collect(),
        ))),
        (None, None) => Ok(None),
    }
}

fn principal_set(v: &Value, what: &str) -> Result<BTreeSet<String>, ParseError> {
    match v {
        Value::String(s) if s == "*" => Ok(BTreeSet::from(["*".to_owned()])),
        Value::Object(map) => {
            let mut out = BTreeSet::new();
            for (kind, values) in map {
                for p in strings(values, what)? {
                    out.insert(normal_principal(kind, &p));
                }
            }
            Ok(out)
        }
        _ => Err(ParseError(format!(
            "`{what}` is neither \"*\" nor an object of principal types"
        ))),
    }
}

/// `AWS:123456789012` → `AWS:arn:aws:iam::123456789012:root`; `AWS:*` → `*`.
fn normal_principal(kind: &str, value: &str) -> String {
    if kind == "AWS" && value == "*" {
        return "*".to_owned();
    }
    if kind == "AWS" && value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()) {
        return format!("AWS:arn:aws:iam::{value}:root");
    }
    format!("{kind}:{value}")
}

fn statement(v: &Value) -> Result<Statement, ParseError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ParseError("a statement is not an object".into()))?;
    let effect = match obj.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        _ => {
            return Err(ParseError(
                "a statement's `Effect` is not Allow or Deny".into(),
            ))
        }
    };
    let actions = set(obj, "Action", "NotAction", str::to_ascii_lowercase)?
        .ok_or_else(|| ParseError("a statement has neither `Action` nor `NotAction`".into()))?;
    let resources = set(obj, "Resource", "NotResource", str::to_owned)?;
    let principals = match (obj.get("Principal"), obj.get("NotPrincipal")) {
        (Some(_), Some(_)) => {
            return Err(ParseError(
                "a statement has both `Principal` and `NotPrincipal`".into(),
            ))
        }
        (Some(p), None) => Some(Set::Only(principal_set(p, "Principal")?)),
        (None, Some(p)) => Some(Set::Except(principal_set(p, "NotPrincipal")?)),
        (None, None) => None,
    };
    let mut conditions = BTreeSet::new();
    match obj.get("Condition") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ops)) => {
            for (op, keys) in ops {
                let keys = keys.as_object().ok_or_else(|| {
                    ParseError(format!("condition operator `{op}` does not hold an object"))
                })?;
                for (key, values) in keys {
                    conditions.insert(Condition {
                        operator: op.clone(),
                        key: key.to_ascii_lowercase(),
                        values: strings(values, "Condition")?,
                    });
                }
            }
        }
        Some(_) => return Err(ParseError("`Condition` is not an object".into())),
    }
    Ok(Statement {
        sid: obj
            .get("Sid")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        effect,
        actions,
        resources,
        principals,
        conditions,
    })
}

mod cover;
mod diff;

pub use cover::{glob_covers, globs_overlap};
pub use diff::{diff, trust_flags, PolicyDiff, StatementChange};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob_covers("*", "s3:getobject"));
        assert!(glob_covers("s3:*", "s3:get*"));
        assert!(glob_covers("s3:get*", "s3:getobject"));
        assert!(!glob_covers("s3:getobject", "s3:get*"));
        assert!(!glob_covers("a?", "a*"));
        assert!(glob_covers("a*", "a?"));
        assert!(!glob_covers("iam:*", "s3:*"));
        assert!(globs_overlap("s3:get*", "s3:*object"));
        assert!(globs_overlap("*", ""));
        assert!(!globs_overlap("iam:*", "s3:*"));
        assert!(!globs_overlap("s3:getobject", "s3:putobject"));
        assert!(globs_overlap("s3:?etobject", "s3:g*"));
    }

    #[test]
    fn single_string_and_list_are_the_same() {
        let a = Policy::parse(
            &json!({"Statement": {"Effect": "Allow", "Action": "S3:GetObject", "Resource": "*"}}),
        )
        .unwrap();
        let b = Policy::parse(&json!({"Statement": [{"Effect": "Allow", "Action": ["s3:getobject"], "Resource": ["*"]}]})).unwrap();
        assert_eq!(a, b);
        assert_eq!(diff(&a, &b).verdict, Verdict::Unchanged);
    }

    #[test]
    fn url_encoded_documents_are_decoded() {
        let p = Policy::parse_text(
            "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22iam%3AGetRole%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D",
        )
        .unwrap();
        assert_eq!(p.statements.len(), 1);
        assert!(Policy::parse_text("not json").is_err());
    }

    #[test]
    fn principals_normalise() {
        let p = Policy::parse(
            &json!({"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"AWS": "406882777402"}}]}),
        )
        .unwrap();
        assert_eq!(
            p.allowed_principals(),
            BTreeSet::from(["AWS:arn:aws:iam::406882777402:root".to_owned()])
        );
    }
}
