//! The rule model: a named, compiled pattern with its severity and channels. It sits below
//! the configuration that builds rules and the engine that evaluates them.

use std::fmt;

use filter_pattern::FilterPattern;

use super::DOCUMENTED_PATTERN;

/// How urgent a rule's alerts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Reads the lower-case name a configuration uses.
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named pattern.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub pattern: FilterPattern,
    pub severity: Severity,
    /// The channels (by name) its alerts go to; `None`: every channel.
    pub channels: Option<Vec<String>>,
    /// The accounts (ids) whose events it applies to; `None`: every account.
    pub accounts: Option<Vec<String>>,
}

impl Rule {
    /// Whether the rule applies to an event of `account` (`None`: an event whose account is
    /// not known, which only a rule for every account applies to).
    #[must_use]
    pub fn applies_to(&self, account: Option<&str>) -> bool {
        match (&self.accounts, account) {
            (None, _) => true,
            (Some(list), Some(a)) => list.iter().any(|x| x == a),
            (Some(_), None) => false,
        }
    }
}

impl Rule {
    /// The vendor's documented pattern, verbatim, as the rule `documented`.
    pub fn documented() -> Rule {
        Rule {
            name: "documented".to_owned(),
            // The constant is tested to compile (rules.rs), so this cannot fail.
            pattern: FilterPattern::new(DOCUMENTED_PATTERN)
                .unwrap_or_else(|e| unreachable!("the documented pattern compiles: {e}")),
            severity: Severity::High,
            channels: None,
            accounts: None,
        }
    }
}
