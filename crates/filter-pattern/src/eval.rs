//! The evaluator: a pattern compiled once (literal finders, regexes, a path trie, wildcard
//! globs) and run on raw event text many times (spec §4).

use std::collections::VecDeque;

use memchr::memmem;

use crate::ast::{
    CmpOp, Entry, Expr, FieldExpr, Pattern, Segment, TermPrefix, TermText, Test, Value,
};
use crate::json::{any_selected, project, Trie, Val};
use crate::lex::parse_number;
use crate::regex::Regex;

/// `(key, value)` pairs of a space-delimited match, in field order (`$name` or `$N`).
pub type Extracted = Vec<(String, String)>;

#[derive(Debug, Clone)]
pub(crate) enum Compiled {
    MatchAll,
    Terms(Terms),
    Json { trie: Trie, expr: CExpr },
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
                    let m = match &term.text {
                        TermText::Bare(s) | TermText::Quoted(s) => Finder::Literal(Box::new(
                            memmem::Finder::new(s.as_bytes()).into_owned(),
                        )),
                        TermText::Regex(_) => match regexes.pop_front() {
                            Some(r) => Finder::Regex(r),
                            None => Finder::Never,
                        },
                    };
                    match term.prefix {
                        TermPrefix::Required => t.required.push(m),
                        TermPrefix::Optional => t.optional.push(m),
                        TermPrefix::Excluded => t.excluded.push(m),
                    }
                }
                Compiled::Terms(t)
            }
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
    Regex(Regex),
    Never,
}

impl Finder {
    fn occurs(&self, event: &str) -> bool {
        match self {
            Finder::Literal(f) => f.find(event.as_bytes()).is_some(),
            Finder::Regex(r) => r.is_match(event),
            Finder::Never => false,
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
        // `?` terms beside plain or `-` terms are ignored (spec §4.1, §9 A14).
        self.required.iter().all(|f| f.occurs(event))
            && !self.excluded.iter().any(|f| f.occurs(event))
    }
}

// ---------------------------------------------------------------------- values

/// A string value with `*` wildcards (spec §4.3, §9 A1).
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
    Number {
        text: String,
        value: f64,
    },
    Regex(Regex),
    /// Never matches; stands in for a regex the parser did not hand over (cannot happen).
    Never,
}

impl CValue {
    fn new(v: &Value, regexes: &mut VecDeque<Regex>) -> CValue {
        match v {
            Value::Str { text, .. } => CValue::Glob(Glob::new(text)),
            Value::Number { text, value } => CValue::Number {
                text: text.clone(),
                value: *value,
            },
            Value::Regex(_) => match regexes.pop_front() {
                Some(r) => CValue::Regex(r),
                None => CValue::Never,
            },
        }
    }
}

fn compare(op: CmpOp, a: f64, b: f64) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

// ---------------------------------------------------------------------- JSON

#[derive(Debug, Clone)]
pub(crate) enum CExpr {
    Or(Vec<CExpr>),
    And(Vec<CExpr>),
    Cond { path: Vec<Segment>, test: CTest },
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
                trie.insert(&c.selector.segments);
                let test = match &c.test {
                    Test::Compare(op, v) => CTest::Compare(*op, CValue::new(v, regexes)),
                    Test::IsNull => CTest::IsNull,
                    Test::IsTrue => CTest::IsTrue,
                    Test::IsFalse => CTest::IsFalse,
                    Test::NotExists => CTest::NotExists,
                };
                CExpr::Cond {
                    path: c.selector.segments.clone(),
                    test,
                }
            }
        }
    }

    fn eval(&self, root: &Val<'_>) -> bool {
        match self {
            CExpr::Or(items) => items.iter().any(|e| e.eval(root)),
            CExpr::And(items) => items.iter().all(|e| e.eval(root)),
            CExpr::Cond { path, test } => match test {
                CTest::NotExists => !any_selected(root, path, &mut |_| true),
                CTest::IsNull => any_selected(root, path, &mut |v| matches!(v, Val::Null)),
                CTest::IsTrue => any_selected(root, path, &mut |v| matches!(v, Val::Bool(true))),
                CTest::IsFalse => any_selected(root, path, &mut |v| matches!(v, Val::Bool(false))),
                CTest::Compare(op, value) => {
                    any_selected(root, path, &mut |v| json_compare(*op, value, v))
                }
            },
        }
    }
}

/// One selected JSON node against `op value` (spec §4.3's conditions table).
fn json_compare(op: CmpOp, value: &CValue, node: &Val<'_>) -> bool {
    if op.is_relational() {
        // Only JSON numbers take part in `< <= > >=`.
        return match (node, value) {
            (Val::Num(n), CValue::Number { value, .. }) => compare(op, n.as_f64(), *value),
            _ => false,
        };
    }
    let eq = match (node, value) {
        (Val::Num(n), CValue::Number { value, .. }) => n.as_f64() == *value,
        (Val::Str(s), CValue::Number { text, .. }) => s == text,
        (Val::Str(s), CValue::Glob(g)) => g.matches(s),
        (Val::Num(n), CValue::Glob(g)) => g.matches(&n.to_string()),
        (Val::Str(s), CValue::Regex(r)) => r.is_match(s),
        (Val::Num(n), CValue::Regex(r)) => r.is_match(&n.to_string()),
        // Null, booleans and containers never take part in `=` or `!=`.
        (_, CValue::Never)
        | (Val::Null | Val::Bool(_) | Val::Container | Val::Obj(_) | Val::Arr(_), _) => {
            return false
        }
    };
    if op == CmpOp::Eq {
        eq
    } else {
        !eq
    }
}

// ---------------------------------------------------------------------- space-delimited

#[derive(Debug, Clone)]
pub(crate) struct Fields {
    /// Entries before `...` (all entries when there is none).
    head: Vec<CEntry>,
    /// Entries after `...`; `None` when the pattern has no `...` (exact field count).
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
            CField::Cond(op, value) => match value {
                CValue::Number { value, .. } => {
                    parse_number(field).is_some_and(|n| compare(*op, n, *value))
                }
                _ if op.is_relational() => false,
                CValue::Glob(g) => g.matches(field) == (*op == CmpOp::Eq),
                CValue::Regex(r) => r.is_match(field) == (*op == CmpOp::Eq),
                CValue::Never => false,
            },
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
        Fields { head, tail }
    }

    fn evaluate(&self, event: &str, want_values: bool) -> Option<Extracted> {
        let fields = split_fields(event);
        let n = fields.len();
        let tail_len = self.tail.as_ref().map_or(0, Vec::len);
        match &self.tail {
            None if n != self.head.len() => return None,
            Some(_) if n < self.head.len() + tail_len => return None,
            _ => {}
        }
        let tail_start = n - tail_len;
        let tail = self.tail.as_deref().unwrap_or(&[]);
        let placed = self
            .head
            .iter()
            .enumerate()
            .chain(tail.iter().enumerate().map(|(j, e)| (tail_start + j, e)));
        for (i, entry) in placed.clone() {
            if let Some(c) = &entry.cond {
                if !c.eval(fields[i]) {
                    return None;
                }
            }
        }
        if !want_values {
            return Some(Vec::new());
        }
        let mut out = Vec::with_capacity(n);
        for (i, field) in fields.iter().enumerate() {
            let entry = if i < self.head.len() {
                Some(&self.head[i])
            } else if i >= tail_start && self.tail.is_some() {
                Some(&tail[i - tail_start])
            } else {
                None
            };
            let key = match entry.and_then(|e| e.name.as_deref()) {
                Some(name) => format!("${name}"),
                None => format!("${}", i + 1),
            };
            out.push((key, (*field).to_owned()));
        }
        Some(out)
    }
}

/// Splits an event into space-delimited fields (spec §4.4): runs of blanks separate fields;
/// a field that starts with `"` runs to the next `"`, one that starts with `[` to the next
/// `]`, without those delimiters.
pub(crate) fn split_fields(event: &str) -> Vec<&str> {
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
        let close = match b[i] {
            b'"' => Some(b'"'),
            b'[' => Some(b']'),
            _ => None,
        };
        match close {
            Some(c) => {
                let start = i + 1;
                match memchr::memchr(c, &b[start..]) {
                    Some(off) => {
                        out.push(&event[start..start + off]);
                        i = start + off + 1;
                    }
                    None => {
                        out.push(&event[start..]);
                        i = b.len();
                    }
                }
            }
            None => {
                let start = i;
                while i < b.len() && !blank(b[i]) {
                    i += 1;
                }
                out.push(&event[start..i]);
            }
        }
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
        assert_eq!(
            split_fields(
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
        assert_eq!(split_fields("  a\t b  "), vec!["a", "b"]);
        assert_eq!(split_fields(r#"a "unclosed b"#), vec!["a", "unclosed b"]);
        assert!(split_fields("").is_empty());
    }
}
