//! The syntax tree of a filter pattern (`docs/filter-pattern-semantics.md` §1–§3). `Display`
//! prints a canonical pattern that re-parses to an equal tree (parentheses only where `||`
//! sits under `&&`).

use std::fmt;

/// A parsed filter pattern, in one of the five forms of semantics §1.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// The empty or blank pattern: every event matches.
    MatchAll,
    /// Unstructured terms, matched as substrings of the raw event.
    Terms(Vec<Term>),
    /// `%regex%` as the whole pattern (the text between the percent signs), searched in the
    /// raw event.
    Regex(String),
    /// `{ … }`: conditions on selected JSON values.
    Json(Expr),
    /// `[ … ]`: entries matched against the event's space-delimited fields.
    SpaceDelimited(Vec<Entry>),
}

/// How a term takes part in a term list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermPrefix {
    /// Plain: must occur.
    Required,
    /// `?term`: one of the `?` terms must occur (ignored when plain or `-` terms are present).
    Optional,
    /// `-term`: must not occur.
    Excluded,
}

/// One term of an unstructured pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub prefix: TermPrefix,
    pub text: TermText,
}

/// What a term looks for (a `%regex%` is never a term: semantics §1).
#[derive(Debug, Clone, PartialEq)]
pub enum TermText {
    /// An unquoted word: letters, digits, `_` and `.` only (semantics §2).
    Bare(String),
    /// A `"quoted phrase"` (unescaped content, never empty).
    Quoted(String),
}

/// A boolean expression of JSON conditions.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Cond(Condition),
}

/// `selector test`, e.g. `$.eventName = AttachRolePolicy`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub selector: Selector,
    pub test: Test,
}

/// A JSON path: `$` followed by one or more segments, the first a `.` step (semantics §3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    pub segments: Vec<Segment>,
}

/// One step of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// `.name`
    Member(String),
    /// `.['name.with.dots']`
    QuotedMember(String),
    /// `[n]`
    Index(usize),
    /// `.*` (every member of an object, every element of an array: semantics §4.3)
    AnyMember,
    /// `[*]` (the same selection as `.*`)
    AnyIndex,
}

impl Segment {
    /// Whether this segment selects more than one node.
    pub fn is_wildcard(&self) -> bool {
        matches!(self, Segment::AnyMember | Segment::AnyIndex)
    }

    /// The member name, for both `.name` and `.['name']`.
    pub fn member_name(&self) -> Option<&str> {
        match self {
            Segment::Member(n) | Segment::QuotedMember(n) => Some(n),
            _ => None,
        }
    }
}

/// What a condition tests about the selected value(s).
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Compare(CmpOp, Value),
    IsNull,
    IsTrue,
    IsFalse,
    NotExists,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// `<`, `<=`, `>` or `>=`: only numbers take part.
    pub fn is_relational(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string; every `*` in it is a wildcard (semantics §9 A1).
    Str { text: String, quoted: bool },
    /// A numeral, kept as written (`1e4`, `+1000`, `.5`): compared as an exact decimal and,
    /// against strings, by this text (semantics §4.3).
    Number { text: String },
    /// `%regex%` (the text between the percent signs).
    Regex(String),
}

/// One comma-separated entry of a space-delimited pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// `...`: any number of fields.
    Ellipsis,
    /// An empty entry: one unnamed field.
    Unnamed,
    /// A named field, optionally with conditions on it.
    Field {
        name: String,
        conditions: Option<FieldExpr>,
    },
}

/// Conditions on one space-delimited field (`||` below `&&`, no parentheses).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldExpr {
    Or(Vec<FieldExpr>),
    And(Vec<FieldExpr>),
    Cond(CmpOp, Value),
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::MatchAll => Ok(()),
            Pattern::Regex(r) => write!(f, "%{r}%"),
            Pattern::Terms(terms) => {
                for (i, t) in terms.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{t}")?;
                }
                Ok(())
            }
            Pattern::Json(e) => write!(f, "{{ {e} }}"),
            Pattern::SpaceDelimited(entries) => {
                f.write_str("[")?;
                for (i, e) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{e}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix {
            TermPrefix::Required => {}
            TermPrefix::Optional => f.write_str("?")?,
            TermPrefix::Excluded => f.write_str("-")?,
        }
        match &self.text {
            TermText::Bare(s) => f.write_str(s),
            TermText::Quoted(s) => write_quoted(f, s),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Or(items) => {
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" || ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
            Expr::And(items) => {
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" && ")?;
                    }
                    match e {
                        Expr::Or(_) => write!(f, "({e})")?,
                        _ => write!(f, "{e}")?,
                    }
                }
                Ok(())
            }
            Expr::Cond(c) => write!(f, "{c}"),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.selector)?;
        match &self.test {
            Test::Compare(op, v) => write!(f, "{} {v}", op.as_str()),
            Test::IsNull => f.write_str("IS NULL"),
            Test::IsTrue => f.write_str("IS TRUE"),
            Test::IsFalse => f.write_str("IS FALSE"),
            Test::NotExists => f.write_str("NOT EXISTS"),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for s in &self.segments {
            match s {
                Segment::Member(n) => write!(f, ".{n}")?,
                Segment::QuotedMember(n) => write!(f, ".['{n}']")?,
                Segment::Index(i) => write!(f, "[{i}]")?,
                Segment::AnyMember => f.write_str(".*")?,
                Segment::AnyIndex => f.write_str("[*]")?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str { text, quoted: true } => write_quoted(f, text),
            Value::Str {
                text,
                quoted: false,
            } => f.write_str(text),
            Value::Number { text, .. } => f.write_str(text),
            Value::Regex(r) => write!(f, "%{r}%"),
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Ellipsis => f.write_str("..."),
            Entry::Unnamed => Ok(()),
            Entry::Field {
                name,
                conditions: None,
            } => f.write_str(name),
            Entry::Field {
                name,
                conditions: Some(c),
            } => write_field_expr(f, name, c),
        }
    }
}

fn write_field_expr(f: &mut fmt::Formatter<'_>, name: &str, e: &FieldExpr) -> fmt::Result {
    match e {
        FieldExpr::Or(items) | FieldExpr::And(items) => {
            let sep = if matches!(e, FieldExpr::Or(_)) {
                " || "
            } else {
                " && "
            };
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                write_field_expr(f, name, item)?;
            }
            Ok(())
        }
        FieldExpr::Cond(op, v) => write!(f, "{name} {} {v}", op.as_str()),
    }
}
