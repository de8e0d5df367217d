//! The evaluator: a pattern compiled once (literal finders, regexes, a path trie, wildcard
//! globs) and run on raw event text many times (semantics §4).

use std::collections::VecDeque;

use memchr::memmem;

use crate::ast::{
    CmpOp, Entry, Expr, FieldExpr, Pattern, Segment, TermPrefix, TermText, Test, Value,
};
use crate::decimal::{self, event_number, number_text, EventNumber, Numeral, StackText};
use crate::json::{project, resolve, Trie, Val};
use crate::regex::Regex;

/// `(key, value)` pairs of a space-delimited match, in field order (`$name` or `$N`).
pub type Extracted = Vec<(String, String)>;

#[derive(Debug, Clone)]
pub(crate) enum Compiled {
    MatchAll,
    Terms(Terms),
    /// `%regex%` as the whole pattern; `None` stands in for a regex the parser did not hand
    /// over (cannot happen).
    Regex(Option<Regex>),
    Json {
        trie: Trie,
        expr: CExpr,
    },
    Fields(Fields),
}

impl Compiled {
    /// Compiles `pattern`, taking its regexes from `regexes` in the order they appear (the
    /// parser compiled them while checking them).
    pub(crate) fn new(pattern: &Pattern, regexes: Vec<Regex>) -> Compiled {
        let mut regexes: VecDeque<Regex> = regexes.into();
        match pattern {
            Pattern::MatchAll => Compiled::MatchAll,
            Pattern::Terms(terms) => {
                let mut t = Terms::default();
                for term in terms {
                    let (TermText::Bare(s) | TermText::Quoted(s)) = &term.text;
                    let m =
                        Finder::Literal(Box::new(memmem::Finder::new(s.as_bytes()).into_owned()));
                    match term.prefix {
                        TermPrefix::Required => t.required.push(m),
                        TermPrefix::Optional => t.optional.push(m),
                        TermPrefix::Excluded => t.excluded.push(m),
                    }
                }
                Compiled::Terms(t)
            }
            Pattern::Regex(_) => Compiled::Regex(regexes.pop_front()),
            Pattern::Json(expr) => {
                let mut trie = Trie::default();
                let expr = CExpr::new(expr, &mut trie, &mut regexes);
                trie.finish();
                Compiled::Json { trie, expr }
            }
            Pattern::SpaceDelimited(entries) => {
                Compiled::Fields(Fields::new(entries, &mut regexes))
            }
        }
    }

    /// Evaluates the event; `Some` on a match, with extracted values when `want_values`.
    pub(crate) fn evaluate(&self, event: &str, want_values: bool) -> Option<Extracted> {
        let matched = match self {
            Compiled::MatchAll => true,
            Compiled::Terms(t) => t.matches(event),
            Compiled::Regex(r) => r.as_ref().is_some_and(|r| r.is_match(event)),
            Compiled::Json { trie, expr } => match project(event, trie) {
                Some(root) => expr.eval(&root),
                None => false,
            },
            Compiled::Fields(f) => return f.evaluate(event, want_values),
        };
        matched.then(Vec::new)
    }
}

// ---------------------------------------------------------------------- terms

#[derive(Debug, Clone)]
pub(crate) enum Finder {
    Literal(Box<memmem::Finder<'static>>),
}

impl Finder {
    fn occurs(&self, event: &str) -> bool {
        match self {
            Finder::Literal(f) => f.find(event.as_bytes()).is_some(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Terms {
    required: Vec<Finder>,
    optional: Vec<Finder>,
    excluded: Vec<Finder>,
}

impl Terms {
    fn matches(&self, event: &str) -> bool {
        if self.required.is_empty() && self.excluded.is_empty() {
            // Only `?` terms: any one of them.
            return self.optional.iter().any(|f| f.occurs(event));
        }
        // `?` terms beside plain or `-` terms are ignored (semantics §4.1, §9 A14).
        self.required.iter().all(|f| f.occurs(event))
            && !self.excluded.iter().any(|f| f.occurs(event))
    }
}

// ---------------------------------------------------------------------- values

/// A string value with `*` wildcards (semantics §4.3, §9 A1).
#[derive(Debug, Clone)]
pub(crate) enum Glob {
    Exact(String),
    /// Pieces between the stars: the first is a prefix, the last a suffix, the middle ones
    /// must appear in order.
    Pieces(Vec<String>),
}

impl Glob {
    pub(crate) fn new(text: &str) -> Glob {
        if text.contains('*') {
            Glob::Pieces(text.split('*').map(str::to_owned).collect())
        } else {
            Glob::Exact(text.to_owned())
        }
    }

    pub(crate) fn matches(&self, s: &str) -> bool {
        match self {
            Glob::Exact(e) => e == s,
            Glob::Pieces(pieces) => {
                let (Some((first, rest)), Some(last)) = (pieces.split_first(), pieces.last())
                else {
                    return true;
                };
                let Some(mut s) = s.strip_prefix(first.as_str()) else {
                    return false;
                };
                let middle = &rest[..rest.len().saturating_sub(1)];
                for piece in middle {
                    match memmem::find(s.as_bytes(), piece.as_bytes()) {
                        Some(i) => s = &s[i + piece.len()..],
                        None => return false,
                    }
                }
                s.ends_with(last.as_str())
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum CValue {
    Glob(Glob),
    /// A numeral as written (always a valid one: the parser checked it).
    Number(String),
    Regex(Regex),
    /// Never matches; stands in for a regex the parser did not hand over (cannot happen).
    Never,
}

impl CValue {
    fn new(v: &Value, regexes: &mut VecDeque<Regex>) -> CValue {
        match v {
            Value::Str { text, .. } => CValue::Glob(Glob::new(text)),
            Value::Number { text } => CValue::Number(text.clone()),
            Value::Regex(_) => match regexes.pop_front() {
                Some(r) => CValue::Regex(r),
                None => CValue::Never,
            },
        }
    }

    /// `text = value` for a text test (a string, a field, a number's text).
    fn text_eq(&self, text: &str) -> bool {
        match self {
            CValue::Glob(g) => g.matches(text),
            CValue::Regex(r) => r.is_match(text),
            CValue::Number(n) => n == text,
            CValue::Never => false,
        }
    }
}

/// `value op literal` for exact decimals; `false` if the literal does not read as a numeral
/// (cannot happen: the parser checked it).
fn numeric(op: CmpOp, value: &Numeral<'_>, literal: &str) -> bool {
    Numeral::parse(literal).is_some_and(|lit| decimal::holds(op, value, &lit))
}

// ---------------------------------------------------------------------- JSON

#[derive(Debug, Clone)]
pub(crate) enum CExpr {
    Or(Vec<CExpr>),
    And(Vec<CExpr>),
    Cond {
        /// The steps before the wildcard (all of them when there is none).
        head: Vec<Segment>,
        /// The steps after the wildcard; `None` when the selector has no wildcard.
        tail: Option<Vec<Segment>>,
        test: CTest,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum CTest {
    Compare(CmpOp, CValue),
    IsNull,
    IsTrue,
    IsFalse,
    NotExists,
}

impl CExpr {
    fn new(e: &Expr, trie: &mut Trie, regexes: &mut VecDeque<Regex>) -> CExpr {
        match e {
            Expr::Or(items) => {
                CExpr::Or(items.iter().map(|i| CExpr::new(i, trie, regexes)).collect())
            }
            Expr::And(items) => {
                CExpr::And(items.iter().map(|i| CExpr::new(i, trie, regexes)).collect())
            }
            Expr::Cond(c) => {
                let segments = &c.selector.segments;
                let wildcard = segments.iter().position(Segment::is_wildcard);
                trie.insert(
                    segments,
                    wildcard.is_none() && matches!(c.test, Test::IsNull),
                );
                let test = match &c.test {
                    Test::Compare(op, v) => CTest::Compare(*op, CValue::new(v, regexes)),
                    Test::IsNull => CTest::IsNull,
                    Test::IsTrue => CTest::IsTrue,
                    Test::IsFalse => CTest::IsFalse,
                    Test::NotExists => CTest::NotExists,
                };
                let (head, tail) = match wildcard {
                    Some(w) => (segments[..w].to_vec(), Some(segments[w + 1..].to_vec())),
                    None => (segments.clone(), None),
                };
                CExpr::Cond { head, tail, test }
            }
        }
    }

    fn eval(&self, root: &Val<'_>) -> bool {
        match self {
            CExpr::Or(items) => items.iter().any(|e| e.eval(root)),
            CExpr::And(items) => items.iter().all(|e| e.eval(root)),
            CExpr::Cond {
                head,
                tail: None,
                test,
            } => {
                let node = resolve(root, head);
                match test {
                    CTest::NotExists => node.is_none(),
                    // `null`, or an array with `null` at its first level (semantics §4.3).
                    CTest::IsNull => matches!(
                        node,
                        Some(
                            Val::Null
                                | Val::Arr {
                                    null_element: true,
                                    ..
                                }
                        )
                    ),
                    CTest::IsTrue => matches!(node, Some(Val::Bool(true))),
                    CTest::IsFalse => matches!(node, Some(Val::Bool(false))),
                    CTest::Compare(op, value) => node.is_some_and(|n| json_compare(*op, value, n)),
                }
            }
            CExpr::Cond {
                head,
                tail: Some(tail),
                test,
            } => {
                // The wildcard's parent; the selected nodes are its children's `tail`.
                let Some(parent) = resolve(root, head) else {
                    return matches!(test, CTest::NotExists);
                };
                let some = |f: &dyn Fn(&Val<'_>) -> bool| {
                    parent.any_child(&mut |child| resolve(child, tail).is_some_and(f))
                };
                match test {
                    CTest::NotExists => !some(&|_| true),
                    // The selected nodes only: an array holding `null` is not `null`.
                    CTest::IsNull => some(&|v| matches!(v, Val::Null)),
                    CTest::IsTrue => some(&|v| matches!(v, Val::Bool(true))),
                    CTest::IsFalse => some(&|v| matches!(v, Val::Bool(false))),
                    // Universal: the parent exists and no selected node equals the value.
                    CTest::Compare(CmpOp::Ne, value) => {
                        !some(&|v| json_compare(CmpOp::Eq, value, v))
                    }
                    CTest::Compare(op, value) => some(&|v| json_compare(*op, value, v)),
                }
            }
        }
    }
}

/// One selected JSON node against `op value` (semantics §4.3's conditions table).
fn json_compare(op: CmpOp, value: &CValue, node: &Val<'_>) -> bool {
    match (node, value) {
        // A numeral against a number: exact decimal values; an out-of-range number passes
        // no numeric test.
        (Val::Num(raw), CValue::Number(lit)) => {
            let mut buf = StackText::new();
            match event_number(raw, &mut buf) {
                EventNumber::Value(n) => numeric(op, &n, lit),
                EventNumber::OutOfRange => false,
            }
        }
        (_, CValue::Never) => false,
        // Only JSON numbers take part in `< <= > >=`.
        (_, _) if op.is_relational() => false,
        // A string against a numeral: the numeral's text as written.
        (Val::Str(s), v) => v.text_eq(s) == (op == CmpOp::Eq),
        // A number against text: its canonical text.
        (Val::Num(raw), v @ (CValue::Glob(_) | CValue::Regex(_))) => {
            let mut buf = StackText::new();
            v.text_eq(number_text(raw, &mut buf)) == (op == CmpOp::Eq)
        }
        // Null, booleans and containers never take part in `=` or `!=`.
        _ => false,
    }
}

// ---------------------------------------------------------------------- space-delimited

#[derive(Debug, Clone)]
pub(crate) struct Fields {
    /// Entries before `...` (all entries when there is none).
    head: Vec<CEntry>,
    /// Entries after `...`; `None` when the pattern has no `...` (then the last entry takes
    /// the rest of the line).
    tail: Option<Vec<CEntry>>,
}

#[derive(Debug, Clone)]
struct CEntry {
    name: Option<String>,
    cond: Option<CField>,
}

#[derive(Debug, Clone)]
enum CField {
    Or(Vec<CField>),
    And(Vec<CField>),
    Cond(CmpOp, CValue),
}

impl CField {
    fn new(e: &FieldExpr, regexes: &mut VecDeque<Regex>) -> CField {
        match e {
            FieldExpr::Or(items) => {
                CField::Or(items.iter().map(|i| CField::new(i, regexes)).collect())
            }
            FieldExpr::And(items) => {
                CField::And(items.iter().map(|i| CField::new(i, regexes)).collect())
            }
            FieldExpr::Cond(op, v) => CField::Cond(*op, CValue::new(v, regexes)),
        }
    }

    fn eval(&self, field: &str) -> bool {
        match self {
            CField::Or(items) => items.iter().any(|c| c.eval(field)),
            CField::And(items) => items.iter().all(|c| c.eval(field)),
            // A bare numeral: numeric on a number field; on any other field `=` and the
            // relational operators fail and `!=` holds (semantics §4.4, decision A22).
            CField::Cond(op, CValue::Number(lit)) => {
                match Numeral::parse(field).filter(Numeral::exponent_in_range) {
                    Some(n) => numeric(*op, &n, lit),
                    None => *op == CmpOp::Ne,
                }
            }
            CField::Cond(_, CValue::Never) => false,
            CField::Cond(op, _) if op.is_relational() => false,
            CField::Cond(op, value) => value.text_eq(field) == (*op == CmpOp::Eq),
        }
    }
}

impl Fields {
    fn new(entries: &[Entry], regexes: &mut VecDeque<Regex>) -> Fields {
        let mut head = Vec::new();
        let mut tail: Option<Vec<CEntry>> = None;
        for e in entries {
            let compiled = match e {
                Entry::Ellipsis => {
                    tail = Some(Vec::new());
                    continue;
                }
                Entry::Unnamed => CEntry {
                    name: None,
                    cond: None,
                },
                Entry::Field { name, conditions } => CEntry {
                    name: Some(name.clone()),
                    cond: conditions.as_ref().map(|c| CField::new(c, regexes)),
                },
            };
            match &mut tail {
                Some(t) => t.push(compiled),
                None => head.push(compiled),
            }
        }
        if head.is_empty() && tail.is_none() {
            // `[]` extracts every field, like a lone `...` (semantics §4.4).
            tail = Some(Vec::new());
        }
        Fields { head, tail }
    }

    fn evaluate(&self, event: &str, want_values: bool) -> Option<Extracted> {
        let fields = split_fields(event);
        let k = fields.len();
        let n = self.head.len();
        let tail = self.tail.as_deref();
        let tail_len = tail.map_or(0, <[CEntry]>::len);
        if k < n + tail_len {
            return None;
        }
        // Without `...` the last entry takes the rest of the line as written when the event
        // has more fields than the pattern has entries (semantics §4.4).
        let text_of = |i: usize| -> &str {
            if tail.is_none() && i + 1 == n && k > n {
                &event[fields[i].start..]
            } else {
                fields[i].value
            }
        };
        let tail_start = k - tail_len;
        let placed = self.head.iter().enumerate().chain(
            tail.unwrap_or(&[])
                .iter()
                .enumerate()
                .map(|(j, e)| (tail_start + j, e)),
        );
        for (i, entry) in placed {
            if let Some(c) = &entry.cond {
                if !c.eval(text_of(i)) {
                    return None;
                }
            }
        }
        if !want_values {
            return Some(Vec::new());
        }
        let covered = if tail.is_some() { k } else { n };
        let mut out = Vec::with_capacity(covered);
        for i in 0..covered {
            let entry = if i < n {
                Some(&self.head[i])
            } else if i >= tail_start {
                tail.map(|t| &t[i - tail_start])
            } else {
                None
            };
            let key = match entry.and_then(|e| e.name.as_deref()) {
                Some(name) => format!("${name}"),
                None => format!("${}", i + 1),
            };
            out.push((key, text_of(i).to_owned()));
        }
        Some(out)
    }
}

/// One space-delimited field of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field<'e> {
    /// The field's text, without the `"…"` or `[…]` around it.
    pub(crate) value: &'e str,
    /// Where the field starts in the event, its opening delimiter included.
    pub(crate) start: usize,
}

/// Splits an event into space-delimited fields (semantics §4.4): runs of blanks (space, tab,
/// `\r`, `\n`) separate fields; a field that starts with `"` runs to the next `"`, one that
/// starts with `[` to the next `]`, and the next field starts right after that closing
/// delimiter; a `"` or `[` without a closing partner later in the event is plain text.
pub(crate) fn split_fields(event: &str) -> Vec<Field<'_>> {
    let b = event.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let blank = |c: u8| c == b' ' || c == b'\t' || c == b'\n' || c == b'\r';
    while i < b.len() {
        while i < b.len() && blank(b[i]) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        let close = match b[i] {
            b'"' => Some(b'"'),
            b'[' => Some(b']'),
            _ => None,
        };
        if let Some(off) = close.and_then(|c| memchr::memchr(c, &b[start + 1..])) {
            out.push(Field {
                value: &event[start + 1..start + 1 + off],
                start,
            });
            i = start + 1 + off + 1;
            continue;
        }
        while i < b.len() && !blank(b[i]) {
            i += 1;
        }
        out.push(Field {
            value: &event[start..i],
            start,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = Glob::new("*AstronomerCrossAccountRole");
        assert!(g.matches("arn:aws:iam::1:policy/AstronomerCrossAccountRole"));
        assert!(!g.matches("arn:aws:iam::1:policy/AstronomerCrossAccountRoleV2"));
        assert!(Glob::new("AccessDenied*").matches("AccessDenied"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a*a").matches("aa"));
        assert!(!Glob::new("a*a").matches("a"));
        assert!(Glob::new("*html*").matches("GET /index.html HTTP/1.0"));
        assert!(Glob::new("edu-*.us-east-1").matches("edu-x-dev-1.us-east-1"));
        assert!(Glob::new("a*b*c").matches("abc"));
        assert!(!Glob::new("a*b*c").matches("acb"));
    }

    #[test]
    fn fields_split_on_blanks_quotes_and_brackets() {
        let values = |e: &str| -> Vec<String> {
            split_fields(e).iter().map(|f| f.value.to_owned()).collect()
        };
        assert_eq!(
            values(
                r#"127.0.0.1 Prod frank [10/Oct/2000:13:25:15 -0700] "GET /index.html HTTP/1.0" 404 1534"#
            ),
            vec![
                "127.0.0.1",
                "Prod",
                "frank",
                "10/Oct/2000:13:25:15 -0700",
                "GET /index.html HTTP/1.0",
                "404",
                "1534"
            ]
        );
        assert_eq!(values("  a\t b  "), vec!["a", "b"]);
        assert_eq!(values(r#"a "unclosed b"#), vec!["a", "\"unclosed", "b"]);
        assert_eq!(values(r#"id "v"w z"#), vec!["id", "v", "w", "z"]);
        assert_eq!(values(r#"a "" [] b"#), vec!["a", "", "", "b"]);
        assert_eq!(values("[open x"), vec!["[open", "x"]);
        assert!(split_fields("").is_empty());
        assert!(split_fields(" \t ").is_empty());
        let starts: Vec<usize> = split_fields(r#"ab "c d" e"#)
            .iter()
            .map(|f| f.start)
            .collect();
        assert_eq!(starts, vec![0, 3, 9]);
    }
}
