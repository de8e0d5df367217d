//! The engine: pure and synchronous. Given the rules and one event's raw text, it says which
//! rules match and pulls out the few fields every consumer needs. It knows nothing of AWS,
//! tokio or the state.

use std::collections::BTreeSet;

use crate::rules::{Rule, Severity};

/// The rules, compiled.
#[derive(Debug, Clone)]
pub struct Engine {
    rules: Vec<Rule>,
}

/// What the rules say about one event: every rule that matched, in configuration order. One
/// event is one change, and one change is one alert however many rules match it.
#[derive(Debug, Clone)]
pub struct Match<'a> {
    pub rules: Vec<&'a Rule>,
}

impl<'a> Match<'a> {
    /// The names of the matching rules, the most severe first (configuration order among
    /// equals): the first is the alert's headline rule.
    pub fn rule_names(&self) -> Vec<&'a str> {
        let mut rules = self.rules.clone();
        // A stable sort keeps configuration order among rules of equal severity.
        rules.sort_by_key(|r| std::cmp::Reverse(r.severity));
        rules.into_iter().map(|r| r.name.as_str()).collect()
    }

    /// The highest severity among the matching rules.
    pub fn severity(&self) -> Severity {
        self.rules
            .iter()
            .map(|r| r.severity)
            .max()
            .unwrap_or(Severity::Info)
    }

    /// The union of the rules' channels, in first-mention order; `None` when some rule goes
    /// to every channel.
    pub fn channels(&self) -> Option<Vec<&'a str>> {
        let mut out: Vec<&'a str> = Vec::new();
        for r in &self.rules {
            for c in r.channels.as_deref()? {
                if !out.contains(&c.as_str()) {
                    out.push(c);
                }
            }
        }
        Some(out)
    }
}

/// The identity of a change: the account whose trail recorded the event and the eventID. An
/// event seen by two sources, or matched by two rules, is the same change.
pub fn change_key(account_id: Option<&str>, event_id: &str) -> String {
    format!("{}/{event_id}", account_id.unwrap_or(""))
}

/// The delivery deduplication key of a change (32 hex digits): the same for every resend and
/// every channel, so that a receiver can drop repeats.
pub fn change_dedup_key(change_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("change\0{change_key}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
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

    /// Evaluates one event against every rule: `None` when no rule matches.
    pub fn evaluate<'a>(&'a self, event: &str) -> Option<Match<'a>> {
        let rules: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.pattern.is_match(event))
            .collect();
        (!rules.is_empty()).then_some(Match { rules })
    }

    /// [`Engine::evaluate`] for an event of `account`: only the rules that apply to that
    /// account (`accounts = [...]`) are tried.
    pub fn evaluate_in<'a>(&'a self, event: &str, account: Option<&str>) -> Option<Match<'a>> {
        let rules: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.applies_to(account) && r.pattern.is_match(event))
            .collect();
        (!rules.is_empty()).then_some(Match { rules })
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
    use crate::rules::{Rule, Severity};
    use filter_pattern::FilterPattern;

    fn rule(name: &str, p: &str) -> Rule {
        Rule {
            name: name.into(),
            pattern: FilterPattern::new(p).unwrap(),
            severity: Severity::High,
            channels: None,
            accounts: None,
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

    fn rule_to(name: &str, severity: Severity, channels: Option<&[&str]>) -> Rule {
        Rule {
            name: name.into(),
            pattern: FilterPattern::new("{ $.eventName = AttachRolePolicy }").unwrap(),
            severity,
            channels: channels.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
            accounts: None,
        }
    }

    #[test]
    fn one_match_per_event_with_every_rule() {
        let e = Engine::new(vec![
            rule_to("a", Severity::Low, Some(&["mail"])),
            rule("other", "{ $.eventName = PutRolePolicy }"),
            rule_to("b", Severity::Critical, Some(&["sns", "mail"])),
            rule_to("c", Severity::Critical, Some(&["pager"])),
        ]);
        let m = e.evaluate(r#"{"eventName":"AttachRolePolicy"}"#).unwrap();
        assert_eq!(m.rule_names(), ["b", "c", "a"]);
        assert_eq!(m.severity(), Severity::Critical);
        assert_eq!(m.channels().unwrap(), ["mail", "sns", "pager"]);
        assert!(e.evaluate(r#"{"eventName":"Nothing"}"#).is_none());
        // One rule that goes everywhere makes the union "every channel".
        let e = Engine::new(vec![
            rule_to("a", Severity::Low, Some(&["mail"])),
            rule_to("all", Severity::Low, None),
        ]);
        let m = e.evaluate(r#"{"eventName":"AttachRolePolicy"}"#).unwrap();
        assert!(m.channels().is_none());
    }

    #[test]
    fn change_keys_and_dedup_keys() {
        let k = change_key(Some("111122223333"), "e-1");
        assert_eq!(k, "111122223333/e-1");
        assert_eq!(change_key(None, "e-1"), "/e-1");
        let d = change_dedup_key(&k);
        assert_eq!(d.len(), 32);
        assert!(d.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(change_dedup_key(&k), d);
        assert_ne!(change_dedup_key(&change_key(Some("1"), "e-1")), d);
    }
}
