//! The engine: pure and synchronous. Given the rules and one event's raw text, it says which
//! rules match and pulls out the few fields every consumer needs. It knows nothing of AWS,
//! tokio or the state.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::config::Rule;

/// The rules, compiled.
#[derive(Debug, Clone)]
pub struct Engine {
    rules: Vec<Rule>,
}

/// The identifying fields of a CloudTrail record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RecordHeader {
    #[serde(rename = "eventID")]
    pub event_id: Option<String>,
    #[serde(rename = "eventName")]
    pub event_name: Option<String>,
    #[serde(rename = "eventTime")]
    pub event_time: Option<String>,
    #[serde(rename = "eventSource")]
    pub event_source: Option<String>,
}

impl RecordHeader {
    /// Reads the header fields of a record; `None` when the text is not a JSON object.
    pub fn parse(record: &str) -> Option<RecordHeader> {
        serde_json::from_str(record).ok()
    }

    /// `eventTime` as unix milliseconds.
    pub fn event_time_ms(&self) -> Option<i64> {
        self.event_time.as_deref().and_then(parse_time_ms)
    }
}

/// Parses an RFC 3339 time (CloudTrail's `2024-05-01T12:00:00Z`) to unix milliseconds.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// Formats unix milliseconds as RFC 3339 UTC with second precision.
pub fn format_time_ms(ms: i64) -> String {
    let secs = u64::try_from(ms.max(0) / 1000).unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

impl Engine {
    pub fn new(rules: Vec<Rule>) -> Engine {
        Engine { rules }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rules whose pattern matches the event's raw text.
    pub fn matching<'a>(&'a self, event: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| r.pattern.is_match(event))
    }

    /// The event names that, together, every rule needs: LookupEvents can then ask for each
    /// by name. `None` when some rule does not pin `$.eventName` to a finite set (then the
    /// source must read every IAM event).
    pub fn lookup_event_names(&self) -> Option<BTreeSet<String>> {
        let mut all = BTreeSet::new();
        for r in &self.rules {
            all.extend(r.pattern.required_values("$.eventName")?);
        }
        Some(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Rule, Severity};
    use filter_pattern::FilterPattern;

    fn rule(name: &str, p: &str) -> Rule {
        Rule {
            name: name.into(),
            pattern: FilterPattern::new(p).unwrap(),
            severity: Severity::High,
            channels: None,
        }
    }

    #[test]
    fn lookup_names_are_the_union_or_none() {
        let e = Engine::new(vec![
            Rule::documented(),
            rule("x", "{ $.eventName = PutRolePolicy }"),
        ]);
        let names: Vec<_> = e.lookup_event_names().unwrap().into_iter().collect();
        assert_eq!(
            names,
            [
                "AttachRolePolicy",
                "CreatePolicyVersion",
                "DetachRolePolicy",
                "PutRolePolicy",
                "SetPolicyVersion"
            ]
        );
        let e = Engine::new(vec![
            Rule::documented(),
            rule("y", "{ $.eventSource = iam.amazonaws.com }"),
        ]);
        assert_eq!(e.lookup_event_names(), None);
    }

    #[test]
    fn header_and_times() {
        let h = RecordHeader::parse(
            r#"{"eventID":"e1","eventName":"X","eventTime":"2024-05-01T12:00:00Z","other":[1]}"#,
        )
        .unwrap();
        assert_eq!(h.event_id.as_deref(), Some("e1"));
        assert_eq!(h.event_time_ms(), Some(1_714_564_800_000));
        assert_eq!(format_time_ms(1_714_564_800_000), "2024-05-01T12:00:00Z");
        assert_eq!(
            parse_time_ms("2024-05-01T12:00:00.250Z"),
            Some(1_714_564_800_250)
        );
        assert!(RecordHeader::parse("not json").is_none());
    }
}
