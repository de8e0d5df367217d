//! Recursive-descent parser: pattern text -> [`Pattern`], enforcing every rejection rule and
//! limit of semantics §5–§6. `||` binds looser than `&&`; parentheses nest up to [`MAX_NESTING`].

use std::ops::Range;

use crate::ast::{
    CmpOp, Condition, Entry, Expr, FieldExpr, Pattern, Segment, Selector, Term, TermPrefix,
    TermText, Test, Value,
};
use crate::decimal::Numeral;
use crate::error::ParseError;
use crate::lex::{is_bare_value_char, is_blank, is_term_char, Cursor};
use crate::regex::Regex;

/// Longest pattern CloudWatch Logs accepts, in characters (semantics §6).
pub const MAX_PATTERN_CHARS: usize = 1024;
/// Regex literals allowed in one JSON or space-delimited pattern (semantics §6).
pub const MAX_REGEXES: usize = 2;
/// Wildcard segments (`.*`, `[*]`) allowed in one selector and in one pattern (semantics §6).
pub const MAX_WILDCARDS_PER_SELECTOR: usize = 1;
pub const MAX_WILDCARDS_PER_PATTERN: usize = 3;
/// Deepest parenthesis nesting we accept. The spec sets none (the 1024-character limit allows
/// about 500 levels); a bound keeps recursion shallow enough for small thread stacks.
pub const MAX_NESTING: usize = 128;
/// Largest array index: a signed 32-bit integer (semantics §5 rule 4, decision A23).
pub const MAX_INDEX: usize = i32::MAX as usize;

/// A parsed pattern and its regexes, compiled in the order they appear.
pub(crate) struct Parsed {
    pub(crate) pattern: Pattern,
    pub(crate) regexes: Vec<Regex>,
}

pub(crate) fn parse(src: &str) -> Result<Parsed, ParseError> {
    let chars = src.chars().count();
    if chars > MAX_PATTERN_CHARS {
        let cut = src
            .char_indices()
            .nth(MAX_PATTERN_CHARS)
            .map_or(src.len(), |(i, _)| i);
        return Err(ParseError::new(
            src,
            cut..src.len(),
            format!("the pattern is {chars} characters long; the limit is {MAX_PATTERN_CHARS}"),
        ));
    }
    let mut p = Parser {
        cur: Cursor::new(src),
        regexes: Vec::new(),
        wildcards: 0,
        depth: 0,
    };
    p.cur.skip_blanks();
    let pattern = match p.cur.peek() {
        None => Pattern::MatchAll,
        Some(b'{') => Pattern::Json(p.json()?),
        Some(b'[') => Pattern::SpaceDelimited(p.space_delimited()?),
        Some(b'%') => p.regex_pattern()?,
        Some(_) => p.terms()?,
    };
    Ok(Parsed {
        pattern,
        regexes: p.regexes,
    })
}

struct Parser<'p> {
    cur: Cursor<'p>,
    regexes: Vec<Regex>,
    wildcards: usize,
    depth: usize,
}

impl<'p> Parser<'p> {
    /// A `%regex%` value inside a JSON or space-delimited pattern (at most [`MAX_REGEXES`]).
    fn regex(&mut self) -> Result<String, ParseError> {
        let (body, span) = self.cur.regex()?;
        if self.regexes.len() >= MAX_REGEXES {
            return Err(self.cur.error(
                span,
                format!("your input has exceeded the maximum of {MAX_REGEXES} regular expressions per filter pattern"),
            ));
        }
        self.regexes
            .push(Regex::compile(self.cur.src(), &body, span)?);
        Ok(body)
    }

    // ------------------------------------------------------------------ regex patterns

    /// `%regex%` as the whole pattern (semantics §1 form 4): nothing but blanks may follow.
    fn regex_pattern(&mut self) -> Result<Pattern, ParseError> {
        let open = self.cur.pos();
        if !self.cur.rest()[1..].contains('%') {
            let end = self.cur.src().len();
            return Err(self.cur.error(
                open..end,
                "if a filter pattern starts with '%' it must end with '%'",
            ));
        }
        let (body, span) = self.cur.regex()?;
        self.regexes
            .push(Regex::compile(self.cur.src(), &body, span)?);
        self.cur.skip_blanks();
        if !self.cur.at_end() {
            let (span, found) = self.cur.found();
            let end = self
                .cur
                .src()
                .trim_end_matches(|c: char| c.is_ascii() && is_blank(c as u8))
                .len();
            return Err(self.cur.error(
                span.start..end.max(span.end),
                format!("a regular expression must be the whole pattern: found {found} after the closing `%` (if a filter pattern starts with '%' it must end with '%')"),
            ));
        }
        Ok(Pattern::Regex(body))
    }

    // ------------------------------------------------------------------ term patterns

    fn terms(&mut self) -> Result<Pattern, ParseError> {
        let mut terms = Vec::new();
        loop {
            self.cur.skip_blanks();
            if self.cur.at_end() {
                break;
            }
            self.word(&mut terms)?;
        }
        Ok(Pattern::Terms(terms))
    }

    /// The unquoted word at the cursor (up to the next blank), for messages.
    fn word_at(&self, start: usize) -> &'p str {
        let rest = &self.cur.src()[start..];
        let len = rest.bytes().position(is_blank).unwrap_or(rest.len());
        &rest[..len]
    }

    /// Reads the terms up to the next blank (semantics §4.1): one quoted term, or an unquoted
    /// word in which every `-` or `?` starts a new prefixed term (`cache-miss` is
    /// `cache -miss`).
    fn word(&mut self, terms: &mut Vec<Term>) -> Result<(), ParseError> {
        let word_start = self.cur.pos();
        loop {
            let prefix_at = self.cur.pos();
            let prefix = match self.cur.peek() {
                Some(b'?') => TermPrefix::Optional,
                Some(b'-') => TermPrefix::Excluded,
                _ => TermPrefix::Required,
            };
            if prefix != TermPrefix::Required {
                self.cur.set_pos(prefix_at + 1);
            }
            let prefix_text = &self.cur.src()[prefix_at..self.cur.pos()];
            let at = self.cur.pos();
            match self.cur.rest().chars().next() {
                None => {
                    return Err(self.cur.error(
                        prefix_at..at,
                        format!(
                            "expected a term after `{prefix_text}`, found the end of the pattern"
                        ),
                    ))
                }
                Some(c) if c.is_ascii() && is_blank(c as u8) => {
                    return Err(self.cur.error(
                        prefix_at..at,
                        format!("expected a term right after `{prefix_text}`, found a blank"),
                    ))
                }
                Some('"') => {
                    let (s, span) = self.cur.quoted()?;
                    if s.is_empty() {
                        return Err(self.cur.error(
                            span,
                            "a quoted term cannot be empty: `\"\"` is not a pattern (the empty pattern matches every event)",
                        ));
                    }
                    if self.cur.peek().is_some_and(|b| !is_blank(b)) {
                        let (found_span, found) = self.cur.found();
                        return Err(self.cur.error(
                            found_span,
                            format!("invalid character(s) in term '{}': a quoted term must be followed by a blank or the end, found {found}", self.word_at(word_start)),
                        ));
                    }
                    terms.push(Term {
                        prefix,
                        text: TermText::Quoted(s),
                    });
                    return Ok(());
                }
                Some(c) if is_term_char(c) => {
                    let rest = self.cur.rest();
                    let len: usize = rest
                        .chars()
                        .take_while(|c| is_term_char(*c))
                        .map(char::len_utf8)
                        .sum();
                    terms.push(Term {
                        prefix,
                        text: TermText::Bare(rest[..len].to_owned()),
                    });
                    self.cur.set_pos(at + len);
                    match self.cur.rest().chars().next() {
                        None => return Ok(()),
                        Some(c) if c.is_ascii() && is_blank(c as u8) => return Ok(()),
                        // `-` or `?` inside a word starts the next term.
                        Some('-' | '?') => continue,
                        Some(_) => return Err(self.bad_term_char(word_start)),
                    }
                }
                Some(_) => return Err(self.bad_term_char(word_start)),
            }
        }
    }

    /// "Invalid character(s) in term" for the character at the cursor.
    fn bad_term_char(&self, word_start: usize) -> ParseError {
        let at = self.cur.pos();
        let c = self.cur.rest().chars().next().unwrap_or(' ');
        let word = self.word_at(word_start);
        let shown = match c {
            c if c.is_control() => format!("the control character U+{:04X}", c as u32),
            c => format!("`{c}`"),
        };
        let hint = if c == '%' {
            "a regular expression (`%…%`) must be the whole pattern".to_owned()
        } else {
            let bare = word.trim_start_matches(['-', '?']);
            let prefix = &word[..word.len() - bare.len()];
            format!(
                "unquoted terms hold only letters, digits, `_` and `.`; to search for {shown}, quote the term: `{prefix}{}`",
                quote(bare)
            )
        };
        self.cur.error(
            at..at + c.len_utf8(),
            format!("invalid character(s) in term '{word}': {shown} is not allowed; {hint}"),
        )
    }

    // ------------------------------------------------------------------ JSON patterns

    fn json(&mut self) -> Result<Expr, ParseError> {
        let open = self.cur.pos();
        self.cur.eat("{");
        self.cur.skip_blanks();
        if self.cur.peek() == Some(b'}') {
            return Err(self.cur.expected("a condition inside `{ }`"));
        }
        let expr = self.or_expr()?;
        self.cur.skip_blanks();
        if !self.cur.eat("}") {
            if self.cur.at_end() {
                let end = self.cur.src().len();
                return Err(self.cur.error(
                    end..end,
                    format!(
                        "if a filter pattern starts with '{{' it must end with '}}' (the `{{` is at column {})",
                        self.cur.src()[..open].chars().count() + 1
                    ),
                ));
            }
            return Err(self.cur.expected("`&&`, `||` or the closing `}`"));
        }
        self.cur.skip_blanks();
        if !self.cur.at_end() {
            let (span, found) = self.cur.found();
            let end = self
                .cur
                .src()
                .trim_end_matches(|c: char| c.is_ascii() && is_blank(c as u8))
                .len();
            return Err(self.cur.error(
                span.start..end.max(span.end),
                format!("if a filter pattern starts with '{{' it must end with '}}': found {found} after the closing `}}`"),
            ));
        }
        Ok(expr)
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.and_expr()?];
        loop {
            self.cur.skip_blanks();
            if self.cur.eat("||") {
                items.push(self.and_expr()?);
            } else if self.cur.peek() == Some(b'|') {
                return Err(self.cur.expected("`||`"));
            } else {
                break;
            }
        }
        Ok(flatten(items, true))
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.unary()?];
        loop {
            self.cur.skip_blanks();
            if self.cur.eat("&&") {
                items.push(self.unary()?);
            } else if self.cur.peek() == Some(b'&') {
                return Err(self.cur.expected("`&&`"));
            } else {
                break;
            }
        }
        Ok(flatten(items, false))
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        self.cur.skip_blanks();
        match self.cur.peek() {
            Some(b'(') => {
                let open = self.cur.pos();
                if self.depth >= MAX_NESTING {
                    return Err(self.cur.error(
                        open..open + 1,
                        format!("parentheses nest deeper than {MAX_NESTING} levels"),
                    ));
                }
                self.cur.eat("(");
                self.depth += 1;
                let e = self.or_expr()?;
                self.depth -= 1;
                self.cur.skip_blanks();
                if !self.cur.eat(")") {
                    return Err(self.cur.expected(&format!(
                        "`&&`, `||` or `)` to close the `(` at column {}",
                        self.cur.src()[..open].chars().count() + 1
                    )));
                }
                Ok(e)
            }
            Some(b'$') => Ok(Expr::Cond(self.condition()?)),
            Some(b) if b.is_ascii_alphanumeric() || b == b'_' || b == b'"' || b == b'\'' => {
                let (span, found) = self.cur.found();
                Err(self.cur.error(
                    span,
                    format!("expected a selector starting with `$` (such as `$.eventName`), found {found}"),
                ))
            }
            _ => Err(self
                .cur
                .expected("a condition such as `$.eventName = value`")),
        }
    }

    fn selector(&mut self) -> Result<Selector, ParseError> {
        let dollar = self.cur.pos();
        self.cur.eat("$");
        // The first step is a `.` step (semantics §3): `$`, `$[0]`, `$['k']` are errors.
        if self.cur.peek() != Some(b'.') {
            let (span, found) = self.cur.found();
            let hint = if self.cur.peek() == Some(b'[') {
                ": a selector starts with a `.` step such as `$.name`, `$.*` or `$.['name']`, not with `[…]` on the root"
            } else {
                ": a selector is `$` followed by a `.` step such as `$.eventName`"
            };
            return Err(self.cur.error(
                dollar..span.end.max(dollar + 1),
                format!("expected `.` after `$`, found {found}{hint}"),
            ));
        }
        let mut segments = Vec::new();
        let mut in_selector = 0;
        loop {
            let seg_start = self.cur.pos();
            let seg = match self.cur.peek() {
                Some(b'.') => {
                    self.cur.eat(".");
                    match self.cur.peek() {
                        Some(b'*') => {
                            self.cur.eat("*");
                            Segment::AnyMember
                        }
                        Some(b'[') => {
                            if self.cur.peek_at(1) != Some(b'\'') {
                                self.cur.eat("[");
                                return Err(self
                                    .cur
                                    .expected("`'` to open a quoted member name in `.['…']`"));
                            }
                            self.cur.eat("['");
                            let key_start = self.cur.pos();
                            let Some(len) = self.cur.rest().find('\'') else {
                                return Err(self.cur.error(
                                    seg_start..self.cur.src().len(),
                                    "unterminated quoted member name: expected `']`",
                                ));
                            };
                            let key = &self.cur.src()[key_start..key_start + len];
                            self.cur.set_pos(key_start + len + 1);
                            if !self.cur.eat("]") {
                                return Err(self.cur.expected("`]` after the quoted member name"));
                            }
                            if key.is_empty() {
                                return Err(self.cur.error(
                                    seg_start..self.cur.pos(),
                                    "empty member name in `.['']`",
                                ));
                            }
                            Segment::QuotedMember(key.to_owned())
                        }
                        _ => {
                            let (name, _) = self.cur.name();
                            if name.is_empty() {
                                return Err(self.cur.expected(
                                    "a member name (letters, digits, `_` or `-`), `*` or `['…']` after `.`",
                                ));
                            }
                            Segment::Member(name.to_owned())
                        }
                    }
                }
                Some(b'[') => {
                    self.cur.eat("[");
                    if self.cur.eat("*") {
                        if !self.cur.eat("]") {
                            return Err(self.cur.expected("`]` after `[*`"));
                        }
                        Segment::AnyIndex
                    } else if self.cur.peek() == Some(b'\'') {
                        return Err(self.cur.error(
                            seg_start..seg_start + 2,
                            "a quoted member name needs a dot before it: write `.['name']`",
                        ));
                    } else if self.cur.peek() == Some(b'-') {
                        let at = self.cur.pos();
                        return Err(self.cur.error(
                            at..at + 1,
                            "negative array indexes are not supported: an index counts from 0 at the start of the array",
                        ));
                    } else {
                        let digits_start = self.cur.pos();
                        while self.cur.peek().is_some_and(|b| b.is_ascii_digit()) {
                            self.cur.set_pos(self.cur.pos() + 1);
                        }
                        let digits = &self.cur.src()[digits_start..self.cur.pos()];
                        if digits.is_empty() {
                            return Err(self
                                .cur
                                .expected("an array index (digits) or `*` after `[`"));
                        }
                        let Some(index) = digits.parse::<usize>().ok().filter(|&i| i <= MAX_INDEX)
                        else {
                            return Err(self.cur.error(
                                digits_start..self.cur.pos(),
                                format!(
                                    "array index `{digits}` is too large (at most {MAX_INDEX})"
                                ),
                            ));
                        };
                        if !self.cur.eat("]") {
                            return Err(self.cur.expected("`]` after the array index"));
                        }
                        Segment::Index(index)
                    }
                }
                _ => break,
            };
            if seg.is_wildcard() {
                in_selector += 1;
                self.wildcards += 1;
                let span = seg_start..self.cur.pos();
                if in_selector > MAX_WILDCARDS_PER_SELECTOR {
                    return Err(self.cur.error(
                        span,
                        format!("your filter pattern has a JSON path selector that exceeds the maximum of {MAX_WILDCARDS_PER_SELECTOR} wildcard allowed per json selector (`.*` or `[*]`)"),
                    ));
                }
                if self.wildcards > MAX_WILDCARDS_PER_PATTERN {
                    return Err(self.cur.error(
                        span,
                        format!("your filter pattern exceeds the maximum of {MAX_WILDCARDS_PER_PATTERN} wildcards (`.*` or `[*]`) allowed per filter pattern"),
                    ));
                }
            }
            segments.push(seg);
        }
        if segments.is_empty() {
            return Err(self.cur.expected("`.` or `[` after `$`"));
        }
        Ok(Selector { segments })
    }

    fn condition(&mut self) -> Result<Condition, ParseError> {
        let selector = self.selector()?;
        self.cur.skip_blanks();
        let op_start = self.cur.pos();
        let op = if let Some(op) = self.comparison_op()? {
            op
        } else {
            let (word, span) = self.cur.word();
            // Keywords are case-insensitive (semantics §2).
            let test = match word.to_ascii_uppercase().as_str() {
                "IS" => {
                    let test = self.after_is(span.clone())?;
                    return Ok(Condition { selector, test });
                }
                "NOT" => {
                    if !self.cur.skip_blanks() {
                        return Err(self.cur.expected("a blank and `EXISTS` after `NOT`"));
                    }
                    let (w, s) = self.cur.word();
                    if !w.eq_ignore_ascii_case("EXISTS") {
                        self.cur.set_pos(s.start);
                        return Err(self.keyword_error("`EXISTS` after `NOT`", w, s));
                    }
                    Test::NotExists
                }
                "EXISTS" => {
                    return Err(self.cur.error(
                        span,
                        "`EXISTS` is not supported (only `NOT EXISTS`): to test that a field holds a value, write `= \"*\"`",
                    ))
                }
                _ => {
                    self.cur.set_pos(op_start);
                    return Err(self.cur.expected(
                        "an operator (`=`, `!=`, `<`, `<=`, `>`, `>=`, `IS` or `NOT EXISTS`)",
                    ));
                }
            };
            return Ok(Condition { selector, test });
        };
        let value = self.value(op, false)?;
        Ok(Condition {
            selector,
            test: Test::Compare(op, value),
        })
    }

    /// Reads `=`, `!=`, `<`, `<=`, `>` or `>=` at the cursor; `None` when there is none.
    fn comparison_op(&mut self) -> Result<Option<CmpOp>, ParseError> {
        let start = self.cur.pos();
        if self.cur.eat("==") {
            return Err(self
                .cur
                .error(start..start + 2, "`==` is not an operator: write `=`"));
        }
        // Two-character operators first, so that `<=` is not read as `<`.
        for (text, op) in [
            ("!=", CmpOp::Ne),
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("=", CmpOp::Eq),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ] {
            if self.cur.eat(text) {
                return Ok(Some(op));
            }
        }
        Ok(None)
    }

    fn keyword_error(&self, what: &str, word: &str, span: Range<usize>) -> ParseError {
        if word.is_empty() {
            self.cur.expected(what)
        } else {
            self.cur
                .error(span, format!("expected {what}, found `{word}`"))
        }
    }

    fn after_is(&mut self, is_span: Range<usize>) -> Result<Test, ParseError> {
        if !self.cur.skip_blanks() {
            return Err(self
                .cur
                .expected("a blank and `NULL`, `TRUE` or `FALSE` after `IS`"));
        }
        let (w, span) = self.cur.word();
        match w.to_ascii_uppercase().as_str() {
            "NULL" => Ok(Test::IsNull),
            "TRUE" => Ok(Test::IsTrue),
            "FALSE" => Ok(Test::IsFalse),
            "NOT" => Err(self.cur.error(
                is_span.start..span.end,
                "`IS NOT` is not supported: use `!=`, or `NOT EXISTS` for an absent field",
            )),
            _ => {
                self.cur.set_pos(span.start);
                Err(self.keyword_error("`NULL`, `TRUE` or `FALSE` after `IS`", w, span))
            }
        }
    }

    /// The value after a comparison operator.
    fn value(&mut self, op: CmpOp, in_fields: bool) -> Result<Value, ParseError> {
        self.cur.skip_blanks();
        let start = self.cur.pos();
        let needs_number = |this: &Self, found: &str, span: Range<usize>| {
            this.cur.error(
                span,
                format!(
                    "`{}` compares numbers only: expected a number, found {found}",
                    op.as_str()
                ),
            )
        };
        match self.cur.peek() {
            Some(b'"') => {
                let (text, span) = self.cur.quoted()?;
                if op.is_relational() {
                    return Err(needs_number(self, "a quoted string", span));
                }
                Ok(Value::Str { text, quoted: true })
            }
            Some(b'%') => {
                if op.is_relational() {
                    let (_, span) = self.cur.regex()?;
                    return Err(needs_number(self, "a regular expression", span));
                }
                Ok(Value::Regex(self.regex()?))
            }
            Some(b'\'') => Err(self.cur.error(
                start..start + 1,
                "single quotes do not delimit strings: use double quotes",
            )),
            _ => {
                let (text, span) = self.cur.bare_value(in_fields);
                if text.is_empty() {
                    self.cur.set_pos(start);
                    return Err(self
                        .cur
                        .expected(&format!("a value after `{}`", op.as_str())));
                }
                if let Some(q) = text.find('\'') {
                    return Err(self.cur.error(
                        start + q..start + q + 1,
                        "single quotes do not delimit strings: use double quotes",
                    ));
                }
                if let Some(n) = Numeral::parse(text) {
                    if !n.exponent_in_range() {
                        return Err(self.cur.error(
                            span,
                            format!("the numeral `{text}` has an exponent too large: its magnitude must be below 2^31"),
                        ));
                    }
                    return Ok(Value::Number {
                        text: text.to_owned(),
                    });
                }
                if op.is_relational() {
                    return Err(needs_number(self, &format!("`{text}`"), span));
                }
                if text.eq_ignore_ascii_case("null") {
                    return Err(self.cur.error(
                        span,
                        format!("`{text}` is not a value: to test for null, write `IS NULL`"),
                    ));
                }
                // Unquoted values: letters, digits, `_`, `.`, `-`, `*` (semantics §2, A3).
                if let Some((i, c)) = text.char_indices().find(|(_, c)| !is_bare_value_char(*c)) {
                    let at = span.start + i;
                    return Err(self.cur.error(
                        at..at + c.len_utf8(),
                        format!(
                            "invalid character(s) in value '{text}': `{c}` is not allowed unquoted (only letters, digits, `_`, `.`, `-` and `*`); write {}",
                            quote(text)
                        ),
                    ));
                }
                Ok(Value::Str {
                    text: text.to_owned(),
                    quoted: false,
                })
            }
        }
    }

    // ------------------------------------------------------------------ space-delimited

    fn space_delimited(&mut self) -> Result<Vec<Entry>, ParseError> {
        let open = self.cur.pos();
        self.cur.eat("[");
        let mut entries = Vec::new();
        self.cur.skip_blanks();
        if !self.cur.eat("]") {
            let mut ellipsis_at: Option<usize> = None;
            let mut names: Vec<String> = Vec::new();
            loop {
                self.cur.skip_blanks();
                let entry_start = self.cur.pos();
                let entry = match self.cur.peek() {
                    Some(b',' | b']') => Entry::Unnamed,
                    _ if self.cur.starts_with("...") => {
                        self.cur.eat("...");
                        if let Some(first) = ellipsis_at {
                            return Err(self.cur.error(
                                entry_start..entry_start + 3,
                                format!(
                                    "duplicate field '...': a pattern may hold only one `...` (the first is at column {})",
                                    self.cur.src()[..first].chars().count() + 1
                                ),
                            ));
                        }
                        ellipsis_at = Some(entry_start);
                        Entry::Ellipsis
                    }
                    _ => {
                        let entry = self.field_entry()?;
                        if let Entry::Field { name, .. } = &entry {
                            if names.contains(name) {
                                let end = entry_start + name.len();
                                return Err(self.cur.error(
                                    entry_start..end,
                                    format!("duplicate field '{name}': every field name may appear in one entry only"),
                                ));
                            }
                            names.push(name.clone());
                        }
                        entry
                    }
                };
                entries.push(entry);
                self.cur.skip_blanks();
                if self.cur.eat(",") {
                    continue;
                }
                if self.cur.eat("]") {
                    break;
                }
                if self.cur.at_end() {
                    let end = self.cur.src().len();
                    return Err(self.cur.error(
                        end..end,
                        format!(
                            "expected `,` or `]` to close the `[` at column {}, found the end of the pattern",
                            self.cur.src()[..open].chars().count() + 1
                        ),
                    ));
                }
                return Err(self.cur.expected("`,` or `]`"));
            }
        }
        self.cur.skip_blanks();
        if !self.cur.at_end() {
            let (span, found) = self.cur.found();
            return Err(self.cur.error(
                span,
                format!("expected the end of the pattern after the closing `]`, found {found}"),
            ));
        }
        Ok(entries)
    }

    fn field_entry(&mut self) -> Result<Entry, ParseError> {
        let (name, span) = self.cur.name();
        if name.is_empty() {
            self.cur.set_pos(span.start);
            return Err(self
                .cur
                .expected("a field name (a letter or `_`, then letters, digits, `_` or `-`), `...`, `,` or `]`"));
        }
        // Names start with a letter or `_` (semantics §3).
        if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return Err(self.cur.error(
                span.start..span.start + 1,
                format!("invalid field name '{name}': a field name starts with a letter or `_`, not a digit or `-`"),
            ));
        }
        let name = name.to_owned();
        self.cur.skip_blanks();
        if matches!(self.cur.peek(), Some(b',' | b']') | None) {
            return Ok(Entry::Field {
                name,
                conditions: None,
            });
        }
        if !matches!(self.cur.peek(), Some(b'=' | b'!' | b'<' | b'>')) {
            return Err(self.cur.expected(&format!(
                "`,` or `]` after the field `{name}`, or an operator (`=`, `!=`, `<`, `<=`, `>`, `>=`)"
            )));
        }
        let first = self.field_cond(&name, true)?;
        let mut ors = Vec::new();
        let mut ands = vec![first];
        loop {
            self.cur.skip_blanks();
            if self.cur.eat("&&") {
                ands.push(self.field_cond(&name, false)?);
            } else if self.cur.eat("||") {
                ors.push(flatten(std::mem::take(&mut ands), false));
                ands.push(self.field_cond(&name, false)?);
            } else if matches!(self.cur.peek(), Some(b'&' | b'|')) {
                return Err(self.cur.expected("`&&` or `||`"));
            } else {
                break;
            }
        }
        ors.push(flatten(ands, false));
        Ok(Entry::Field {
            name,
            conditions: Some(flatten(ors, true)),
        })
    }

    /// `name op value`; the name must be the entry's own field (semantics §9 A18).
    fn field_cond(&mut self, entry: &str, first: bool) -> Result<FieldExpr, ParseError> {
        if !first {
            self.cur.skip_blanks();
            let (name, span) = self.cur.name();
            if name.is_empty() {
                return Err(self.cur.expected(&format!("the field name `{entry}`")));
            }
            if name != entry {
                return Err(self.cur.error(
                    span,
                    format!("multiple variables used in a single filter. Var1 : {entry}, Var2 : {name} (every condition of an entry names that entry's field)"),
                ));
            }
            self.cur.skip_blanks();
        }
        let op = if let Some(op) = self.comparison_op()? {
            op
        } else {
            return Err(self.cur.expected(&format!(
                "an operator (`=`, `!=`, `<`, `<=`, `>`, `>=`) after `{entry}`"
            )));
        };
        let value = self.value(op, true)?;
        Ok(FieldExpr::Cond(op, value))
    }
}

/// The node types `||` and `&&` build: [`Expr`] (JSON and term patterns) and [`FieldExpr`]
/// (the conditions of one space-delimited field).
trait Junction: Sized {
    /// The children of `self` when it is the same junction (`or`: an `Or`), else `self`.
    fn children(self, or: bool) -> Result<Vec<Self>, Self>;
    /// An `Or` (`or`) or `And` node of `items`.
    fn junction(items: Vec<Self>, or: bool) -> Self;
}

impl Junction for Expr {
    fn children(self, or: bool) -> Result<Vec<Self>, Self> {
        match (self, or) {
            (Expr::Or(inner), true) | (Expr::And(inner), false) => Ok(inner),
            (e, _) => Err(e),
        }
    }

    fn junction(items: Vec<Self>, or: bool) -> Self {
        if or {
            Expr::Or(items)
        } else {
            Expr::And(items)
        }
    }
}

impl Junction for FieldExpr {
    fn children(self, or: bool) -> Result<Vec<Self>, Self> {
        match (self, or) {
            (FieldExpr::Or(inner), true) | (FieldExpr::And(inner), false) => Ok(inner),
            (e, _) => Err(e),
        }
    }

    fn junction(items: Vec<Self>, or: bool) -> Self {
        if or {
            FieldExpr::Or(items)
        } else {
            FieldExpr::And(items)
        }
    }
}

/// Builds an `Or`/`And` node, merging children of the same kind so that the tree of
/// `(a && b) && c` equals that of `a && b && c` (the canonical text re-parses equal).
fn flatten<T: Junction>(items: Vec<T>, or: bool) -> T {
    let mut out = Vec::with_capacity(items.len());
    for e in items {
        match e.children(or) {
            Ok(inner) => out.extend(inner),
            Err(e) => out.push(e),
        }
    }
    if out.len() == 1 {
        if let Some(e) = out.pop() {
            return e;
        }
    }
    T::junction(out, or)
}

/// `text` in double quotes, with `"` and `\\` escaped (semantics §9 A9).
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
