//! The lexer: a byte cursor over the pattern that reads the tokens of semantics §2–§3 (quoted
//! strings, regex literals, names, bare values) and reports them with byte spans.
//!
//! Which token comes next depends on where the parser is (a bare value may hold `.` and `*`,
//! a member name may not), so the parser asks for the token kind it expects.

use std::ops::Range;

use crate::error::ParseError;

/// Blanks separate tokens: space, tab, newline, carriage return (semantics §9 A16).
pub(crate) fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

/// Characters of a member or field name: `ALNUM`, `_` and `-`.
pub(crate) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Where a bare value ends (semantics §9 A3), plus `,` and `]` inside space-delimited entries.
fn ends_bare_value(b: u8, in_fields: bool) -> bool {
    is_blank(b)
        || matches!(b, b'"' | b'(' | b')' | b'{' | b'}' | b'&' | b'|')
        || (in_fields && matches!(b, b',' | b']'))
}

pub(crate) struct Cursor<'p> {
    src: &'p str,
    pos: usize,
}

impl<'p> Cursor<'p> {
    pub(crate) fn new(src: &'p str) -> Self {
        Cursor { src, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }

    pub(crate) fn src(&self) -> &'p str {
        self.src
    }

    pub(crate) fn rest(&self) -> &'p str {
        &self.src[self.pos..]
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    pub(crate) fn peek_at(&self, n: usize) -> Option<u8> {
        self.src.as_bytes().get(self.pos + n).copied()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    pub(crate) fn starts_with(&self, s: &str) -> bool {
        self.rest().starts_with(s)
    }

    /// Consumes `s` if the input continues with it.
    pub(crate) fn eat(&mut self, s: &str) -> bool {
        if self.starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// Skips blanks; returns whether any were skipped.
    pub(crate) fn skip_blanks(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
        self.pos > start
    }

    pub(crate) fn error(&self, span: Range<usize>, msg: impl Into<String>) -> ParseError {
        ParseError::new(self.src, span, msg)
    }

    /// The span and a description of the token at the cursor, for "found …" messages.
    pub(crate) fn found(&self) -> (Range<usize>, String) {
        let rest = self.rest();
        let Some(c) = rest.chars().next() else {
            return (self.pos..self.pos, "the end of the pattern".to_owned());
        };
        if c.is_alphanumeric() || c == '_' {
            let len: usize = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .map(char::len_utf8)
                .sum();
            let word = &rest[..len];
            return (self.pos..self.pos + len, format!("`{word}`"));
        }
        for op in ["&&", "||", "!=", "<=", ">=", "==", "..."] {
            if rest.starts_with(op) {
                return (self.pos..self.pos + op.len(), format!("`{op}`"));
            }
        }
        let shown = match c {
            '\n' => "a newline".to_owned(),
            '\t' => "a tab".to_owned(),
            c if c.is_control() => format!("the control character U+{:04X}", c as u32),
            c => format!("`{c}`"),
        };
        (self.pos..self.pos + c.len_utf8(), shown)
    }

    /// An error "expected X, found <token at cursor>".
    pub(crate) fn expected(&self, what: &str) -> ParseError {
        let (span, found) = self.found();
        self.error(span, format!("expected {what}, found {found}"))
    }

    /// Reads a `"quoted string"` at the cursor, which must be on the opening quote. Supports
    /// exactly the escapes `\"` and `\\` (semantics §9 A9).
    pub(crate) fn quoted(&mut self) -> Result<(String, Range<usize>), ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = self.rest();
            let Some(i) = rest.find(['"', '\\']) else {
                return Err(self.error(
                    start..self.src.len(),
                    "unterminated quoted string: expected a closing `\"`",
                ));
            };
            out.push_str(&rest[..i]);
            self.pos += i;
            if self.peek() == Some(b'"') {
                self.pos += 1;
                return Ok((out, start..self.pos));
            }
            // A backslash.
            match self.peek_at(1) {
                Some(b'"') => out.push('"'),
                Some(b'\\') => out.push('\\'),
                None => {
                    return Err(self.error(
                        start..self.src.len(),
                        "unterminated quoted string: expected a closing `\"`",
                    ))
                }
                Some(_) => {
                    let esc_len = 1 + self.rest()[1..].chars().next().map_or(0, char::len_utf8);
                    return Err(self.error(
                        self.pos..self.pos + esc_len,
                        format!(
                            "unsupported escape `{}` in a quoted string: only `\\\"` and `\\\\` are escapes",
                            &self.rest()[..esc_len]
                        ),
                    ));
                }
            }
            self.pos += 2;
        }
    }

    /// Reads a `%regex%` at the cursor, which must be on the opening `%`; returns the body.
    /// Validation of the body is the regex module's job.
    pub(crate) fn regex(&mut self) -> Result<(String, Range<usize>), ParseError> {
        let start = self.pos;
        let body_start = start + 1;
        let Some(len) = self.src[body_start..].find('%') else {
            return Err(self.error(
                start..self.src.len(),
                "unterminated regular expression: expected a closing `%`",
            ));
        };
        let body = &self.src[body_start..body_start + len];
        self.pos = body_start + len + 1;
        if body.is_empty() {
            return Err(self.error(start..self.pos, "empty regular expression `%%`"));
        }
        Ok((body.to_owned(), start..self.pos))
    }

    /// Reads a bare (unquoted) value: the longest run of characters that do not end one.
    /// Returns an empty string when the cursor is on such a character.
    pub(crate) fn bare_value(&mut self, in_fields: bool) -> (&'p str, Range<usize>) {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len() && !ends_bare_value(bytes[self.pos], in_fields) {
            self.pos += 1;
        }
        (&self.src[start..self.pos], start..self.pos)
    }

    /// Reads a member or field name (`ALNUM`, `_`, `-`); empty if there is none.
    pub(crate) fn name(&mut self) -> (&'p str, Range<usize>) {
        let start = self.pos;
        while self.peek().is_some_and(is_name_byte) {
            self.pos += 1;
        }
        (&self.src[start..self.pos], start..self.pos)
    }

    /// Reads a run of ASCII upper-case letters (a keyword such as `IS` or `NULL`), or any
    /// word so that the caller can say what it found instead.
    pub(crate) fn word(&mut self) -> (&'p str, Range<usize>) {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.pos += 1;
        }
        (&self.src[start..self.pos], start..self.pos)
    }
}

/// Characters of an unquoted term (semantics §2): letters of any script, ASCII digits, `_`
/// and `.`.
pub(crate) fn is_term_char(c: char) -> bool {
    c.is_alphabetic() || c.is_ascii_digit() || c == '_' || c == '.'
}

/// Characters of an unquoted value that is not a numeral (semantics §2, decision A3): those of
/// a term, `-` and `*`.
pub(crate) fn is_bare_value_char(c: char) -> bool {
    is_term_char(c) || c == '-' || c == '*'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_and_value_characters() {
        for c in ['a', 'Z', 'é', 'ж', '語', '0', '9', '_', '.'] {
            assert!(is_term_char(c), "{c}");
        }
        for c in ['-', '?', '*', ':', '/', '@', '%', '!', '"', '٣', '😀'] {
            assert!(!is_term_char(c), "{c}");
        }
        assert!(is_bare_value_char('-') && is_bare_value_char('*'));
        assert!(!is_bare_value_char(':') && !is_bare_value_char('+'));
    }

    #[test]
    fn quoted_strings_unescape_quote_and_backslash_only() {
        let mut c = Cursor::new(r#""a\"b\\c" rest"#);
        let (s, span) = c.quoted().unwrap();
        assert_eq!(s, "a\"b\\c");
        assert_eq!(span, 0..9);
        let mut c = Cursor::new(r#""a\nb""#);
        assert!(c
            .quoted()
            .unwrap_err()
            .message()
            .contains("unsupported escape"));
        let mut c = Cursor::new(r#""abc"#);
        assert!(c.quoted().unwrap_err().message().contains("unterminated"));
    }
}
