//! What every event a JSON pattern matches must have: a disjunction of text tests on plain
//! member paths ([`FilterPattern::necessary_text`](crate::FilterPattern::necessary_text)),
//! for a coarser matcher (an EventBridge rule) that must never be narrower than the pattern.

use crate::ast::{CmpOp, Expr, Segment, Test, Value};

/// "The string at `path` matches `glob`": `glob` is the pattern's own text, where every `*`
/// stands for any run of characters (none escaped).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TextTest {
    /// Member names from the root (`$.requestParameters.roleName` → `["requestParameters",
    /// "roleName"]`).
    pub path: Vec<String>,
    /// The value as written, `*` a wildcard.
    pub glob: String,
}

/// Whether no JSON number's text can match `glob`: a number also takes part in a text test
/// by its canonical text (semantics §4.3), which a matcher that tests strings only would
/// miss. Numbers are written with digits, `.`, `e`/`E`, `+` and `-` only.
fn not_a_number(glob: &str) -> bool {
    glob.chars()
        .any(|c| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-' | '*')))
}

fn plain_path(segments: &[Segment]) -> Option<Vec<String>> {
    segments
        .iter()
        .map(|s| match s {
            Segment::Member(m) | Segment::QuotedMember(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// A disjunction of tests that holds for every event `e` matches, or `None` when none can
/// be stated. In a conjunction, the first operand with such a disjunction whose tests avoid
/// the `avoid` paths is taken (then any other); a disjunction needs one for every operand.
pub(crate) fn of(e: &Expr, avoid: &[Vec<String>]) -> Option<Vec<TextTest>> {
    match e {
        Expr::Cond(c) => match &c.test {
            Test::Compare(CmpOp::Eq, Value::Str { text, .. }) if not_a_number(text) => {
                Some(vec![TextTest {
                    path: plain_path(&c.selector.segments)?,
                    glob: text.clone(),
                }])
            }
            _ => None,
        },
        Expr::And(items) => {
            let all: Vec<Vec<TextTest>> = items.iter().filter_map(|i| of(i, avoid)).collect();
            let clear = |d: &&Vec<TextTest>| d.iter().all(|t| !avoid.contains(&t.path));
            all.iter().find(clear).or_else(|| all.first()).cloned()
        }
        Expr::Or(items) => items.iter().try_fold(Vec::new(), |mut acc, i| {
            for t in of(i, avoid)? {
                if !acc.contains(&t) {
                    acc.push(t);
                }
            }
            Some(acc)
        }),
    }
}
