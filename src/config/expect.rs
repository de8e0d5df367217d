//! `[[expect]]`: changes announced in advance (the vendor promises 14 days' notice before a
//! change that widens its role). An alert that matches an entry is still recorded and
//! delivered, marked EXPECTED with the entry's description; the change analysis
//! ([`crate::intel::expect`]) decides whether it stays within what the entry names.

use serde::Deserialize;

use super::Problem;
use crate::time::{display_rfc3339_ms, parse_rfc3339_ms};

/// The longest window an entry may have: an announcement is for a change, not a season.
pub const MAX_WINDOW_DAYS: i64 = 90;
/// A day in unix milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// The longest description (it goes into every channel's text).
const MAX_DESCRIPTION_CHARS: usize = 200;
/// The actor classes an entry may name (those of `intel::actor::ActorClass`).
pub const ACTOR_CLASSES: [&str; 3] = ["vendor", "yours", "aws-service"];

/// `[[expect]]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    /// What was announced, by whom, where (shown in the alert).
    pub description: Option<String>,
    /// The window, RFC 3339 UTC: the event's time must be in `[from, until)`.
    pub from: Option<String>,
    pub until: Option<String>,
    /// CloudTrail event names the announcement covers (default: any).
    pub event_names: Option<Vec<String>>,
    /// The managed policy (its name or ARN) or inline policy name the change is to.
    pub policy: Option<String>,
    /// The version that becomes the default (`v5`).
    pub default_version: Option<String>,
    /// SHA-256 (hex) of the new document, in the canonical form `rolewatch expect hash`
    /// prints (keys sorted, no blanks): a widening is as announced only when it is named.
    pub document_sha256: Option<String>,
    /// Who makes the change: `vendor`, `yours` or `aws-service`.
    pub actor_class: Option<String>,
    /// ARN globs (`*`, `?`) of the principal (or its session's role) making the change.
    pub principals: Option<Vec<String>>,
}

/// `[[expect]]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub description: String,
    /// Unix ms, inclusive.
    pub from_ms: i64,
    /// Unix ms, exclusive.
    pub until_ms: i64,
    /// Empty: any event.
    pub event_names: Vec<String>,
    pub policy: Option<String>,
    pub default_version: Option<String>,
    /// Lower-case hex.
    pub document_sha256: Option<String>,
    pub actor_class: Option<String>,
    pub principals: Vec<String>,
}

impl Expectation {
    /// `2026-12-10T00:00:00Z – 2026-12-12T00:00:00Z`
    #[must_use]
    pub fn window(&self) -> String {
        format!(
            "{} – {}",
            display_rfc3339_ms(self.from_ms),
            display_rfc3339_ms(self.until_ms)
        )
    }
}

fn event_name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn policy_ok(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix("arn:") {
        return rest.contains(":policy/") && !s.chars().any(char::is_whitespace);
    }
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// Checks the `[[expect]]` entries; problems are added to `problems` with keys
/// `expect[i].key`.
pub fn validate(raw: Vec<RawExpect>, problems: &mut Vec<Problem>) -> Vec<Expectation> {
    let mut out = Vec::new();
    for (i, e) in raw.into_iter().enumerate() {
        let before = problems.len();
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                key: format!("expect[{i}].{key}"),
                message,
            });
        };
        let description = match e.description.as_deref().map(str::trim) {
            None | Some("") => {
                problem(
                    "description",
                    "is required: say what was announced, by whom and where".to_owned(),
                );
                String::new()
            }
            Some(d) if d.chars().count() > MAX_DESCRIPTION_CHARS => {
                problem(
                    "description",
                    format!("is longer than {MAX_DESCRIPTION_CHARS} characters"),
                );
                String::new()
            }
            Some(d) if d.chars().any(char::is_control) => {
                problem(
                    "description",
                    "holds a control character (one line of text)".to_owned(),
                );
                String::new()
            }
            Some(d) => d.to_owned(),
        };
        let mut time = |key: &str, v: Option<&str>| match v {
            None => {
                problem(
                    key,
                    "is required (RFC 3339, e.g. 2026-12-10T00:00:00Z)".to_owned(),
                );
                None
            }
            Some(s) => {
                let t = parse_rfc3339_ms(s);
                if t.is_none() {
                    problem(
                        key,
                        format!("`{s}` is not an RFC 3339 time (e.g. 2026-12-10T00:00:00Z)"),
                    );
                }
                t
            }
        };
        let from = time("from", e.from.as_deref());
        let until = time("until", e.until.as_deref());
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                key: format!("expect[{i}].{key}"),
                message,
            });
        };
        if let (Some(f), Some(u)) = (from, until) {
            if u <= f {
                problem("until", "must be later than `from`".to_owned());
            } else if u - f > MAX_WINDOW_DAYS * DAY_MS {
                problem(
                    "until",
                    format!("the window is longer than {MAX_WINDOW_DAYS} days"),
                );
            }
        }
        let event_names = e.event_names.unwrap_or_default();
        for (j, n) in event_names.iter().enumerate() {
            if !event_name_ok(n) {
                problem(
                    &format!("event_names[{j}]"),
                    format!("`{n}` is not a CloudTrail event name (e.g. CreatePolicyVersion)"),
                );
            }
        }
        if let Some(p) = e.policy.as_deref().filter(|p| !policy_ok(p)) {
            problem(
                "policy",
                format!("`{p}` is neither a policy name nor a policy ARN"),
            );
        }
        if let Some(v) = e.default_version.as_deref() {
            let ok =
                v.len() > 1 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit());
            if !ok {
                problem(
                    "default_version",
                    format!("`{v}` is not a policy version id (e.g. v5)"),
                );
            }
        }
        let document_sha256 = e.document_sha256.map(|h| h.to_ascii_lowercase());
        if let Some(h) = document_sha256.as_deref() {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                problem(
                    "document_sha256",
                    "is not a SHA-256 in hex (64 characters; `rolewatch expect hash FILE` prints it)"
                        .to_owned(),
                );
            }
        }
        if let Some(c) = e.actor_class.as_deref() {
            if !ACTOR_CLASSES.contains(&c) {
                problem(
                    "actor_class",
                    format!("`{c}` is not one of {}", ACTOR_CLASSES.join(", ")),
                );
            }
        }
        let principals = e.principals.unwrap_or_default();
        for (j, g) in principals.iter().enumerate() {
            if !g.starts_with("arn:") {
                problem(
                    &format!("principals[{j}]"),
                    format!("`{g}` is not an ARN glob (it must start with `arn:`)"),
                );
            }
        }
        let names_something = !event_names.is_empty()
            || e.policy.is_some()
            || e.default_version.is_some()
            || document_sha256.is_some()
            || e.actor_class.is_some()
            || !principals.is_empty();
        if !names_something {
            problem(
                "description",
                "the entry names nothing but a window: name at least one of event_names, \
                 policy, default_version, document_sha256, actor_class, principals"
                    .to_owned(),
            );
        }
        if problems.len() == before {
            if let (Some(from_ms), Some(until_ms)) = (from, until) {
                out.push(Expectation {
                    description,
                    from_ms,
                    until_ms,
                    event_names,
                    policy: e.policy,
                    default_version: e.default_version,
                    document_sha256,
                    actor_class: e.actor_class,
                    principals,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> RawExpect {
        RawExpect {
            description: Some("Astronomer notice of 2026-11-26: adds ec2:CreateVolume".into()),
            from: Some("2026-12-10T00:00:00Z".into()),
            until: Some("2026-12-12T00:00:00Z".into()),
            event_names: Some(vec!["CreatePolicyVersion".into()]),
            policy: Some("AstronomerCrossAccountRole".into()),
            default_version: Some("v5".into()),
            document_sha256: Some("AB".repeat(32)),
            actor_class: Some("vendor".into()),
            principals: Some(vec!["arn:aws:sts::406882777402:assumed-role/*".into()]),
        }
    }

    #[test]
    fn a_whole_entry_is_kept() {
        let mut p = Vec::new();
        let e = validate(vec![entry()], &mut p);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].from_ms, 1_796_860_800_000);
        assert_eq!(e[0].until_ms - e[0].from_ms, 2 * DAY_MS);
        assert_eq!(e[0].document_sha256.as_deref(), Some(&*"ab".repeat(32)));
        assert_eq!(e[0].window(), "2026-12-10T00:00:00Z – 2026-12-12T00:00:00Z");
    }

    #[test]
    fn every_problem_names_its_key() {
        let bad = RawExpect {
            description: Some("line\nbreak".into()),
            from: Some("2026-12-12T00:00:00Z".into()),
            until: Some("2026-12-10T00:00:00Z".into()),
            event_names: Some(vec!["Create Policy".into()]),
            policy: Some("not a policy".into()),
            default_version: Some("5".into()),
            document_sha256: Some("xyz".into()),
            actor_class: Some("robot".into()),
            principals: Some(vec!["*".into()]),
        };
        let mut p = Vec::new();
        assert!(validate(vec![entry(), bad], &mut p).len() == 1);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "expect[1].description",
                "expect[1].until",
                "expect[1].event_names[0]",
                "expect[1].policy",
                "expect[1].default_version",
                "expect[1].document_sha256",
                "expect[1].actor_class",
                "expect[1].principals[0]",
            ]
        );
    }

    #[test]
    fn required_keys_long_windows_and_empty_entries() {
        let mut p = Vec::new();
        let none = validate(vec![RawExpect::default()], &mut p);
        assert!(none.is_empty());
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "expect[0].description",
                "expect[0].from",
                "expect[0].until",
                "expect[0].description"
            ]
        );
        assert!(p[3].message.contains("names nothing but a window"), "{p:?}");
        let mut p = Vec::new();
        let long = RawExpect {
            until: Some("2027-06-01T00:00:00Z".into()),
            ..entry()
        };
        assert!(validate(vec![long], &mut p).is_empty());
        assert_eq!(p.len(), 1);
        assert!(p[0].message.contains("longer than 90 days"), "{p:?}");
    }
}
