//! A sound literal prefilter: literals that every matching event must contain in its raw
//! text, found with one Aho-Corasick or memmem scan per clause and no allocation, so most
//! events are rejected without parsing.
//!
//! The requirement is a conjunction of clauses; a clause holds when any of its literals
//! occurs. For JSON patterns a value is compared *after* JSON unescaping, so a literal is
//! only taken from stretches of the value that JSON cannot write otherwise (no `"`, `\`,
//! `/` or control characters), and every clause also accepts the text `\u`: a `\uXXXX`
//! escape can spell any character, and an event holding one goes to the full evaluator.

use aho_corasick::packed;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use memchr::memmem;

use crate::ast::{CmpOp, Expr, Pattern, TermPrefix, TermText, Test, Value};

/// Literals every matching event must contain (see the module docs).
#[derive(Debug, Clone)]
pub struct Prefilter {
    clauses: Vec<Clause>,
    literals: Vec<Vec<String>>,
}

#[derive(Debug, Clone)]
enum Clause {
    One(memmem::Finder<'static>),
    /// SIMD multi-literal search (Teddy); measured 13–17 M CloudTrail records/s, where a
    /// general Aho-Corasick automaton ran at 0.5–15 M depending on its heuristics.
    Packed(packed::Searcher),
    Many(AhoCorasick),
}

impl Clause {
    fn is_match(&self, event: &[u8]) -> bool {
        match self {
            Clause::One(f) => f.find(event).is_some(),
            Clause::Packed(p) => p.find(event).is_some(),
            Clause::Many(ac) => ac.is_match(event),
        }
    }
}

impl Prefilter {
    /// Builds the prefilter of a pattern, or `None` when no literal is required.
    pub(crate) fn new(pattern: &Pattern) -> Option<Prefilter> {
        let (mut cnf, json) = match pattern {
            Pattern::MatchAll | Pattern::Regex(_) | Pattern::SpaceDelimited(_) => return None,
            Pattern::Terms(terms) => (terms_cnf(terms), false),
            Pattern::Json(expr) => (json_cnf(expr)?, true),
        };
        cnf.retain(|c| !c.is_empty() && c.iter().all(|l| !l.is_empty()));
        if cnf.is_empty() {
            return None;
        }
        // Most selective first: the clause whose shortest literal is longest.
        cnf.sort_by_key(|c| std::cmp::Reverse(min_len(c)));
        for clause in &mut cnf {
            if json {
                clause.push("\\u".to_owned());
            }
            clause.sort();
            clause.dedup();
        }
        let mut clauses = Vec::with_capacity(cnf.len());
        for c in &cnf {
            clauses.push(match c.as_slice() {
                [one] => Clause::One(memmem::Finder::new(one.as_bytes()).into_owned()),
                many => match packed::Config::new().builder().extend(many).build() {
                    Some(searcher) => Clause::Packed(searcher),
                    None => Clause::Many(
                        AhoCorasickBuilder::new()
                            .match_kind(MatchKind::LeftmostFirst)
                            .build(many)
                            .ok()?,
                    ),
                },
            });
        }
        Some(Prefilter {
            clauses,
            literals: cnf,
        })
    }

    /// `false` means the full evaluator certainly rejects `event`.
    pub fn may_match(&self, event: &[u8]) -> bool {
        self.clauses.iter().all(|c| c.is_match(event))
    }

    /// The requirement in conjunctive normal form: every inner list needs one hit.
    pub fn literals(&self) -> Vec<Vec<String>> {
        self.literals.clone()
    }
}

fn min_len(clause: &[String]) -> usize {
    clause.iter().map(String::len).min().unwrap_or(0)
}

type Cnf = Vec<Vec<String>>;

fn terms_cnf(terms: &[crate::ast::Term]) -> Cnf {
    let literal = |t: &crate::ast::Term| {
        let (TermText::Bare(s) | TermText::Quoted(s)) = &t.text;
        (!s.is_empty()).then(|| s.clone())
    };
    let has_plain = terms
        .iter()
        .any(|t| matches!(t.prefix, TermPrefix::Required | TermPrefix::Excluded));
    if has_plain {
        terms
            .iter()
            .filter(|t| t.prefix == TermPrefix::Required)
            .filter_map(|t| literal(t).map(|l| vec![l]))
            .collect()
    } else {
        // Only `?` terms: one of them must occur (terms are never empty).
        let lits: Option<Vec<String>> = terms.iter().map(literal).collect();
        lits.map(|l| vec![l]).unwrap_or_default()
    }
}

/// The clauses a JSON expression requires, or `None` if it requires no literal.
fn json_cnf(e: &Expr) -> Option<Cnf> {
    match e {
        Expr::And(items) => {
            let cnf: Cnf = items.iter().filter_map(json_cnf).flatten().collect();
            (!cnf.is_empty()).then_some(cnf)
        }
        Expr::Or(items) => {
            // Each alternative contributes its most selective clause; all must have one.
            let mut union = Vec::new();
            for item in items {
                let best = json_cnf(item)?.into_iter().max_by_key(|c| min_len(c))?;
                union.extend(best);
            }
            Some(vec![union])
        }
        Expr::Cond(c) => match &c.test {
            Test::Compare(CmpOp::Eq, Value::Str { text, .. }) => {
                value_literal(text).map(|l| vec![vec![l]])
            }
            _ => None,
        },
    }
}

/// The longest stretch of a wildcard value that must appear verbatim in the raw JSON of a
/// string equal to it; `None` when no stretch is safe.
fn value_literal(glob: &str) -> Option<String> {
    // `=` on a string also matches a JSON number whose canonical text matches (semantics
    // §4.3); a number's raw text may be written in another notation (`5e1` for `50.0`, `5e400`
    // for `Infinity`), so take no literal from a value that could be number text.
    if glob
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E' | '*'))
        || crate::eval::Glob::new(glob).matches("Infinity")
        || crate::eval::Glob::new(glob).matches("-Infinity")
    {
        return None;
    }
    glob.split(|c: char| c == '*' || c == '"' || c == '\\' || c == '/' || c.is_control())
        .max_by_key(|s| s.len())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn pf(p: &str) -> Option<Prefilter> {
        Prefilter::new(&parse(p).unwrap().pattern)
    }

    #[test]
    fn documented_pattern_requires_role_or_policy_name() {
        let p = pf(r#"{ ($.eventName = AttachRolePolicy || $.eventName = DetachRolePolicy || $.eventName = SetPolicyVersion || $.eventName = CreatePolicyVersion) && ($.requestParameters.policyArn = "*AstronomerCrossAccountRole"  || $.requestParameters.roleName = astronomer-remote-management) }"#).unwrap();
        let lits = p.literals();
        assert_eq!(lits.len(), 2);
        assert_eq!(
            lits[0],
            vec![
                "AstronomerCrossAccountRole",
                "\\u",
                "astronomer-remote-management"
            ]
        );
        assert!(lits[1].contains(&"AttachRolePolicy".to_owned()));
        assert!(!p.may_match(br#"{"eventName":"AttachRolePolicy"}"#));
        assert!(p.may_match(
            br#"{"eventName":"Attach\u0052olePolicy","x":"astronomer-remote-management"}"#
        ));
    }

    #[test]
    fn value_literals_avoid_escapable_characters_and_numbers() {
        assert_eq!(
            value_literal("arn:aws:iam::aws:policy/AdministratorAccess").as_deref(),
            Some("arn:aws:iam::aws:policy")
        );
        assert_eq!(value_literal("*"), None);
        assert_eq!(value_literal("123456789012"), None);
        assert_eq!(value_literal("1.5*"), None);
        assert_eq!(value_literal("a\"b\"cd").as_deref(), Some("cd"));
    }

    #[test]
    fn no_prefilter_where_nothing_is_required() {
        assert!(pf(r#"{ $.a != "x" }"#).is_none());
        assert!(pf(r#"{ $.a = "x" || $.b IS NULL }"#).is_none());
        assert!(pf("[a, b]").is_none());
        assert!(pf("%WARN%").is_none());
        assert!(pf("").is_none());
        assert!(pf(r#"{ $.n = "Inf*" }"#).is_none());
        assert!(pf(r#"{ $.n = "*nity" }"#).is_none());
    }

    #[test]
    fn term_prefilters() {
        assert_eq!(
            pf("ERROR -ARGS ?x").unwrap().literals(),
            vec![vec!["ERROR".to_owned()]]
        );
        assert_eq!(
            pf("?ERROR ?WARN").unwrap().literals(),
            vec![vec!["ERROR".to_owned(), "WARN".to_owned()]]
        );
    }
}
