//! Parse errors: a message and the byte span it refers to, rendered with the pattern and a
//! caret under the column.

use std::fmt;
use std::ops::Range;

/// A pattern that CloudWatch Logs would reject (`InvalidParameterException`).
///
/// `Display` renders the whole diagnostic on three lines:
///
/// ```text
/// invalid filter pattern at column 9: expected a value after `=`, found `)`
///   { $.a = ) }
///           ^
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ParseError {
    pattern: String,
    message: String,
    span: Range<usize>,
}

impl ParseError {
    pub(crate) fn new(pattern: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        // Clamp the span to the pattern and to character boundaries so rendering never panics.
        let clamp = |mut i: usize| {
            i = i.min(pattern.len());
            while !pattern.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        let start = clamp(span.start);
        let end = clamp(span.end.max(span.start));
        ParseError {
            pattern: pattern.to_owned(),
            message: message.into(),
            span: start..end,
        }
    }

    /// The reason, without position or pattern (lower case, names what was expected and found).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Byte range in the pattern that the error points at.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The pattern that failed to parse.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// 1-based line of the error (patterns may span lines; newlines are blanks).
    pub fn line(&self) -> usize {
        self.pattern[..self.span.start].matches('\n').count() + 1
    }

    /// 1-based column of the error, counted in characters within its line.
    pub fn column(&self) -> usize {
        let before = &self.pattern[..self.span.start];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        before[line_start..].chars().count() + 1
    }
}

/// Shows a character of the pattern so that blanks and control characters stay visible.
fn visible(c: char) -> char {
    match c {
        '\t' => ' ',
        c if c.is_control() => '\u{fffd}',
        c => c,
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line_no = self.line();
        let col = self.column();
        if self.pattern.contains('\n') {
            writeln!(
                f,
                "invalid filter pattern at line {line_no}, column {col}: {}",
                self.message
            )?;
        } else {
            writeln!(
                f,
                "invalid filter pattern at column {col}: {}",
                self.message
            )?;
        }
        let line_start = self.pattern[..self.span.start]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line_end = self.pattern[self.span.start..]
            .find('\n')
            .map_or(self.pattern.len(), |i| self.span.start + i);
        let line: String = self.pattern[line_start..line_end]
            .chars()
            .map(visible)
            .collect();
        writeln!(f, "  {line}")?;
        let span_end = self.span.end.min(line_end);
        let width = self.pattern[self.span.start..span_end]
            .chars()
            .count()
            .max(1);
        write!(f, "  {}{}", " ".repeat(col - 1), "^".repeat(width))
    }
}

impl fmt::Debug for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParseError")
            .field("message", &self.message)
            .field("span", &self.span)
            .field("pattern", &self.pattern)
            .finish()
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_column() {
        let e = ParseError::new("{ $.a = ) }", 8..9, "expected a value after `=`, found `)`");
        assert_eq!(
            e.to_string(),
            "invalid filter pattern at column 9: expected a value after `=`, found `)`\n  { $.a = ) }\n          ^"
        );
    }

    #[test]
    fn renders_the_error_line_of_a_multi_line_pattern() {
        let e = ParseError::new("{\n $.a = ) }", 9..10, "oops");
        assert_eq!(e.line(), 2);
        assert_eq!(e.column(), 8);
        assert_eq!(
            e.to_string(),
            "invalid filter pattern at line 2, column 8: oops\n   $.a = ) }\n         ^"
        );
    }

    #[test]
    fn clamps_spans_inside_multibyte_characters() {
        let e = ParseError::new("é", 1..7, "x");
        assert_eq!(e.span(), 0..2);
        assert_eq!(e.column(), 1);
    }
}
