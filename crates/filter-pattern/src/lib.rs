//! The Amazon CloudWatch Logs *filter pattern* language, evaluated in process.
//!
//! A [`FilterPattern`] is compiled once — every rejection rule and limit that CloudWatch Logs
//! enforces is checked then — and evaluated on raw event text many times, with the semantics
//! of metric filters, subscription filters, `FilterLogEvents` and `TestMetricFilter`. The
//! language is stated in the repository's `docs/filter-pattern-semantics.md`, whose section
//! numbers ("semantics §4.3") the comments and the test corpus cite.
//!
//! ```
//! use filter_pattern::FilterPattern;
//!
//! let p = FilterPattern::new(r#"{ $.eventName = AttachRolePolicy && $.requestParameters.roleName = "vendor-*" }"#)?;
//! assert!(p.is_match(r#"{"eventName":"AttachRolePolicy","requestParameters":{"roleName":"vendor-role"}}"#));
//! assert!(!p.is_match(r#"{"eventName":"DetachRolePolicy","requestParameters":{"roleName":"vendor-role"}}"#));
//! # Ok::<(), filter_pattern::ParseError>(())
//! ```
//!
//! # Layout
//!
//! - [`lex`](crate::lex): a byte cursor that reads tokens with spans.
//! - [`parse`](crate::parse): recursive descent into the [`ast`]; rejection rules and limits.
//! - [`ast`]: the syntax tree; `Display` prints a canonical pattern that re-parses equal.
//! - [`regex`](crate::regex): AWS's regex dialect, checked and translated to ASCII classes.
//! - [`json`](crate::json): lazy JSON that materialises only the selected paths.
//! - [`eval`](crate::eval): the compiled evaluator.
//! - [`prefilter`]: a sound literal prefilter that rejects most events without parsing.
//! - [`error`](crate::error): [`ParseError`] and its caret rendering.
//!
//! No I/O, no async, no AWS: this crate is pure so that it can be fuzzed and reused.

pub mod ast;
mod decimal;
mod error;
mod eval;
mod json;
mod lex;
mod necessary;
mod parse;
pub mod prefilter;
mod regex;

use std::collections::BTreeSet;
use std::fmt;

pub use decimal::MAX_EXPONENT;
pub use error::ParseError;
pub use eval::Extracted;
pub use necessary::TextTest;
pub use parse::{
    MAX_INDEX, MAX_NESTING, MAX_PATTERN_CHARS, MAX_REGEXES, MAX_WILDCARDS_PER_PATTERN,
    MAX_WILDCARDS_PER_SELECTOR,
};
pub use prefilter::Prefilter;

use ast::{CmpOp, Expr, Pattern, Segment, Test, Value};

/// Which of the five forms of semantics §1 a pattern has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKind {
    MatchAll,
    Terms,
    /// `%regex%` as the whole pattern.
    Regex,
    Json,
    SpaceDelimited,
}

/// A compiled filter pattern.
#[derive(Clone)]
pub struct FilterPattern {
    source: String,
    ast: Pattern,
    compiled: eval::Compiled,
    prefilter: Option<Prefilter>,
}

impl FilterPattern {
    /// Parses and compiles `pattern`.
    ///
    /// # Errors
    ///
    /// A [`ParseError`] for any pattern CloudWatch Logs rejects (semantics §5–§6); its `Display`
    /// shows the message, the pattern and a caret under the column.
    pub fn new(pattern: &str) -> Result<FilterPattern, ParseError> {
        let parsed = parse::parse(pattern)?;
        let compiled = eval::Compiled::new(&parsed.pattern, parsed.regexes);
        let prefilter = Prefilter::new(&parsed.pattern);
        Ok(FilterPattern {
            source: pattern.to_owned(),
            ast: parsed.pattern,
            compiled,
            prefilter,
        })
    }

    /// The pattern text as given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The syntax tree.
    pub fn ast(&self) -> &Pattern {
        &self.ast
    }

    /// The form of the pattern.
    pub fn kind(&self) -> PatternKind {
        match self.ast {
            Pattern::MatchAll => PatternKind::MatchAll,
            Pattern::Terms(_) => PatternKind::Terms,
            Pattern::Regex(_) => PatternKind::Regex,
            Pattern::Json(_) => PatternKind::Json,
            Pattern::SpaceDelimited(_) => PatternKind::SpaceDelimited,
        }
    }

    /// The literal prefilter, when the pattern requires literals.
    pub fn prefilter(&self) -> Option<&Prefilter> {
        self.prefilter.as_ref()
    }

    /// Whether the pattern matches the raw event text.
    pub fn is_match(&self, event: &str) -> bool {
        if let Some(p) = &self.prefilter {
            if !p.may_match(event.as_bytes()) {
                return false;
            }
        }
        self.compiled.evaluate(event, false).is_some()
    }

    /// Evaluates the pattern on the raw event text: `None` when it does not match, otherwise
    /// the extracted values (empty except for space-delimited patterns, semantics §4.4).
    pub fn evaluate(&self, event: &str) -> Option<Extracted> {
        if let Some(p) = &self.prefilter {
            if !p.may_match(event.as_bytes()) {
                return None;
            }
        }
        self.compiled.evaluate(event, true)
    }

    /// Evaluates without the prefilter (for tests of the prefilter's soundness).
    #[doc(hidden)]
    pub fn evaluate_unfiltered(&self, event: &str) -> Option<Extracted> {
        self.compiled.evaluate(event, true)
    }

    /// Text tests one of which holds in every event this JSON pattern matches, or `None`
    /// when no such disjunction can be stated (another form, or an alternative with no
    /// string equality on a plain member path). A conjunction contributes its first operand
    /// whose tests avoid the selectors in `avoid` (such as `$.eventName`, pinned otherwise).
    /// Only `=` against text no JSON number can match counts, so that a matcher of strings
    /// built from these is never narrower than the pattern.
    pub fn necessary_text(&self, avoid: &[&str]) -> Option<Vec<TextTest>> {
        let Pattern::Json(expr) = &self.ast else {
            return None;
        };
        let mut paths = Vec::new();
        for selector in avoid {
            let parsed = parse::parse(&format!("{{ {selector} NOT EXISTS }}")).ok()?;
            if let Pattern::Json(Expr::Cond(c)) = parsed.pattern {
                paths.extend(
                    c.selector
                        .segments
                        .iter()
                        .map(|s| s.member_name().map(str::to_owned))
                        .collect::<Option<Vec<_>>>(),
                );
            }
        }
        necessary::of(expr, &paths)
    }

    /// The exact strings that a JSON selector such as `$.eventName` must equal in every
    /// matching event, or `None` when the pattern does not pin it to a finite set (a
    /// wildcard, a regex, `!=`, or an alternative that does not test it).
    pub fn required_values(&self, selector: &str) -> Option<BTreeSet<String>> {
        let Pattern::Json(expr) = &self.ast else {
            return None;
        };
        let parsed = parse::parse(&format!("{{ {selector} NOT EXISTS }}")).ok()?;
        let Pattern::Json(Expr::Cond(c)) = parsed.pattern else {
            return None;
        };
        if c.selector.segments.iter().any(Segment::is_wildcard) {
            return None;
        }
        pinned(expr, &c.selector.segments)
    }
}

/// Whether `text` is a numeral of the language (semantics §3: `[+-]`, digits with an optional
/// point, an optional exponent below 2^31 in magnitude) — how a bare value or a
/// space-delimited field is told to be a number.
pub fn is_numeral(text: &str) -> bool {
    decimal::Numeral::parse(text).is_some_and(|n| n.exponent_in_range())
}

fn pinned(e: &Expr, path: &[Segment]) -> Option<BTreeSet<String>> {
    match e {
        Expr::Cond(c) if c.selector.segments == path => match &c.test {
            Test::Compare(CmpOp::Eq, Value::Str { text, .. }) if !text.contains('*') => {
                Some(BTreeSet::from([text.clone()]))
            }
            _ => None,
        },
        Expr::Cond(_) => None,
        Expr::And(items) => items
            .iter()
            .filter_map(|i| pinned(i, path))
            .reduce(|a, b| a.intersection(&b).cloned().collect()),
        Expr::Or(items) => items.iter().try_fold(BTreeSet::new(), |mut acc, i| {
            acc.extend(pinned(i, path)?);
            Some(acc)
        }),
    }
}

impl fmt::Display for FilterPattern {
    /// The canonical form of the pattern (re-parses to an equal tree).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ast.fmt(f)
    }
}

impl fmt::Debug for FilterPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FilterPattern").field(&self.source).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENTED: &str = r#"{ ($.eventName = AttachRolePolicy || $.eventName = DetachRolePolicy || $.eventName = SetPolicyVersion || $.eventName = CreatePolicyVersion) && ($.requestParameters.policyArn = "*AstronomerCrossAccountRole"  || $.requestParameters.roleName = astronomer-remote-management) }"#;

    #[test]
    fn documented_pattern_pins_event_names() {
        let p = FilterPattern::new(DOCUMENTED).unwrap();
        let names = p.required_values("$.eventName").unwrap();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            [
                "AttachRolePolicy",
                "CreatePolicyVersion",
                "DetachRolePolicy",
                "SetPolicyVersion"
            ]
        );
        assert_eq!(p.required_values("$.requestParameters.roleName"), None);
    }

    #[test]
    fn numerals() {
        for t in [
            "7",
            "+7",
            "-0.5",
            ".5",
            "1.",
            "1e4",
            "3.6E+3",
            "1e2147483647",
        ] {
            assert!(is_numeral(t), "{t}");
        }
        for t in [
            "",
            "7x",
            "1e2147483648",
            "0x10",
            "1,000",
            "Infinity",
            "+",
            ".",
        ] {
            assert!(!is_numeral(t), "{t}");
        }
    }

    #[test]
    fn canonical_text_reparses_equal() {
        let p = FilterPattern::new(DOCUMENTED).unwrap();
        let again = FilterPattern::new(&p.to_string()).unwrap();
        assert_eq!(p.ast(), again.ast());
    }
}

#[cfg(test)]
mod necessary_tests {
    use super::*;

    const DOCUMENTED: &str = r#"{ ($.eventName = AttachRolePolicy || $.eventName = DetachRolePolicy || $.eventName = SetPolicyVersion || $.eventName = CreatePolicyVersion) && ($.requestParameters.policyArn = "*AstronomerCrossAccountRole"  || $.requestParameters.roleName = astronomer-remote-management) }"#;

    fn tests(p: &str) -> Option<Vec<(String, String)>> {
        let p = FilterPattern::new(p).unwrap();
        p.necessary_text(&["$.eventName", "$.eventSource"])
            .map(|v| v.into_iter().map(|t| (t.path.join("."), t.glob)).collect())
    }

    #[test]
    fn the_documented_pattern_needs_the_policy_or_the_role() {
        let got = tests(DOCUMENTED).unwrap();
        assert_eq!(
            got,
            vec![
                (
                    "requestParameters.policyArn".to_owned(),
                    "*AstronomerCrossAccountRole".to_owned()
                ),
                (
                    "requestParameters.roleName".to_owned(),
                    "astronomer-remote-management".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn what_cannot_be_stated_gives_none() {
        // An alternative without a string test.
        assert_eq!(tests("{ $.a = x || $.b > 1 }"), None);
        // Numbers match by their text: `1*` would match the number 12.
        assert_eq!(tests("{ $.a = 1* }"), None);
        assert_eq!(tests("{ $.a = \"*\" }"), None);
        assert_eq!(tests("{ $.a != x }"), None);
        assert_eq!(tests("{ $.a[0] = x }"), None);
        assert_eq!(tests("{ $.a.* = x }"), None);
        assert_eq!(tests("{ $.a = %x% }"), None);
        assert_eq!(tests("ERROR"), None);
        // Only the avoided selectors: they are all there is.
        assert_eq!(
            tests("{ $.eventName = X }"),
            Some(vec![("eventName".to_owned(), "X".to_owned())])
        );
        // A conjunction takes an operand that avoids them.
        assert_eq!(
            tests("{ $.eventName = X && $.['odd.key'].b = y* }"),
            Some(vec![("odd.key.b".to_owned(), "y*".to_owned())])
        );
    }

    /// Every event the pattern matches passes one of the tests (checked by evaluation over
    /// a small grid of records).
    #[test]
    fn the_tests_are_never_narrower_than_the_pattern() {
        let pats = [
            "{ ($.a = x || $.b = y*) && $.c = z }",
            "{ $.a = x && ($.b = y || $.c = \"*q\") }",
            "{ ($.a = x && $.b = y) || $.c = zz }",
        ];
        let values = ["x", "y", "yy", "z", "zz", "q", "aq", "1"];
        for p in pats {
            let fp = FilterPattern::new(p).unwrap();
            let ts = fp.necessary_text(&[]).unwrap();
            for a in values {
                for b in values {
                    for c in values {
                        let ev = format!(r#"{{"a":"{a}","b":"{b}","c":"{c}"}}"#);
                        if !fp.is_match(&ev) {
                            continue;
                        }
                        let v: std::collections::HashMap<&str, &str> =
                            [("a", a), ("b", b), ("c", c)].into();
                        let pass = ts.iter().any(|t| {
                            let g =
                                FilterPattern::new(&format!("{{ $.v = \"{}\" }}", t.glob)).unwrap();
                            g.is_match(&format!(r#"{{"v":"{}"}}"#, v[t.path[0].as_str()]))
                        });
                        assert!(pass, "{p} matched {ev} but none of {ts:?} holds");
                    }
                }
            }
        }
    }
}
