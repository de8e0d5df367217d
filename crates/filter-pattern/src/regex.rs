//! AWS's regular-expression dialect (semantics §4.2): validate the restricted character set,
//! the quantifier forms (lazy yes, possessive no) and the escapes, then translate to the
//! `regex` crate's syntax with ASCII classes, so that `\d`, `\w` and `\s` mean what AWS
//! documents and evaluation time stays linear.

use std::ops::Range;

use crate::error::ParseError;

/// Characters AWS allows inside `%…%`, besides ASCII letters and digits.
const ALLOWED_SYMBOLS: &[u8] = b":_#=@/;,- ^$?[]{}|\\*+.";

/// Characters that are special to the `regex` crate and so keep their backslash.
const META: &[u8] = b"\\.+*?()|[]{}^$#&-~";

/// A compiled `%regex%`.
#[derive(Debug, Clone)]
pub(crate) struct Regex {
    inner: regex::Regex,
}

impl Regex {
    /// Validates `body` (the text between the percent signs; `span` covers `%…%` in
    /// `pattern`) and compiles it.
    pub(crate) fn compile(
        pattern: &str,
        body: &str,
        span: Range<usize>,
    ) -> Result<Regex, ParseError> {
        let translated = translate(pattern, body, span.start + 1)?;
        let inner = regex::RegexBuilder::new(&translated)
            .size_limit(1 << 20)
            .dfa_size_limit(1 << 20)
            .build()
            .map_err(|e| {
                let detail = match e {
                    regex::Error::Syntax(s) => s
                        .lines()
                        .rev()
                        .find(|l| l.starts_with("error:"))
                        .map_or_else(
                            || "syntax error".to_owned(),
                            |l| l.trim_start_matches("error: ").to_owned(),
                        ),
                    regex::Error::CompiledTooBig(_) => {
                        "the regular expression is too large".to_owned()
                    }
                    _ => "the regular expression is invalid".to_owned(),
                };
                ParseError::new(
                    pattern,
                    span.clone(),
                    format!("failed to compile regular expression: {detail}"),
                )
            })?;
        Ok(Regex { inner })
    }

    pub(crate) fn is_match(&self, text: &str) -> bool {
        self.inner.is_match(text)
    }
}

/// Checks the AWS character set and rewrites the body for the `regex` crate. `offset` is the
/// byte position of the body in `pattern`, for error spans.
fn translate(pattern: &str, body: &str, offset: usize) -> Result<String, ParseError> {
    let err = |at: usize, len: usize, msg: String| {
        ParseError::new(pattern, offset + at..offset + at + len, msg)
    };
    let bytes = body.as_bytes();
    let mut out = String::with_capacity(body.len() + 16);
    let mut i = 0;
    let mut in_class = false;
    // Just after a quantifier (`*`, `+`, `?`, `{m,n}`), outside a class: a `?` makes it lazy
    // (accepted), a `+` possessive (rejected), any other quantifier is dangling.
    let mut after_quantifier = false;
    while i < bytes.len() {
        let b = bytes[i];
        if !in_class && after_quantifier {
            after_quantifier = false;
            match b {
                b'?' => {
                    out.push('?');
                    i += 1;
                    // `x*?` is complete; nothing may follow as a quantifier.
                    if let Some(&q) = bytes
                        .get(i)
                        .filter(|q| matches!(q, b'*' | b'+' | b'?' | b'{'))
                    {
                        return Err(err(
                            i,
                            1,
                            format!("failed to compile regular expression: `{}` cannot follow the lazy quantifier before it", q as char),
                        ));
                    }
                    continue;
                }
                b'+' => {
                    return Err(err(
                        i - 1,
                        2,
                        "failed to compile regular expression: possessive quantifiers (`*+`, `++`, `?+`, `{m,n}+`) are not supported".to_owned(),
                    ));
                }
                b'*' | b'{' => {
                    return Err(err(
                        i,
                        1,
                        format!("failed to compile regular expression: `{}` cannot follow another quantifier", b as char),
                    ));
                }
                _ => {}
            }
        }
        if !b.is_ascii() {
            let c = body[i..].chars().next().unwrap_or('\u{fffd}');
            return Err(err(
                i,
                c.len_utf8(),
                format!("non-ASCII character `{c}` is not allowed in a regular expression"),
            ));
        }
        if b == b'(' || b == b')' {
            return Err(err(
                i,
                1,
                format!(
                    "invalid character(s) in term: `{}` is not allowed in a regular expression, even escaped; use `\\x{:02X}`",
                    b as char, b
                ),
            ));
        }
        if !(b.is_ascii_alphanumeric() || ALLOWED_SYMBOLS.contains(&b)) {
            let shown = if b.is_ascii_control() {
                format!("control character 0x{b:02X}")
            } else {
                format!("`{}`", b as char)
            };
            return Err(err(
                i,
                1,
                format!(
                    "invalid character(s) in term: {shown} is not allowed in a regular expression"
                ),
            ));
        }
        match b {
            b'\\' => {
                let Some(&next) = bytes.get(i + 1) else {
                    return Err(err(
                        i,
                        1,
                        "a regular expression cannot end with `\\`".to_owned(),
                    ));
                };
                if next == b'(' || next == b')' || !next.is_ascii() {
                    // Reported by the checks above on the next round.
                    i += 1;
                    continue;
                }
                match next {
                    b'd' => out.push_str("[0-9]"),
                    b'D' => out.push_str("[^0-9]"),
                    b'w' => out.push_str("[a-zA-Z_0-9]"),
                    b'W' => out.push_str("[^a-zA-Z_0-9]"),
                    b's' => out.push_str("[\\t\\n\\x0B\\x0C\\r ]"),
                    b'S' => out.push_str("[^\\t\\n\\x0B\\x0C\\r ]"),
                    b'x' => {
                        let hex = body
                            .get(i + 2..i + 4)
                            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
                        let Some(hex) = hex else {
                            return Err(err(
                                i,
                                2,
                                "`\\x` must be followed by two hex digits".to_owned(),
                            ));
                        };
                        out.push_str("\\x");
                        out.push_str(hex);
                        i += 4;
                        continue;
                    }
                    c if c.is_ascii_alphanumeric() => {
                        return Err(err(
                            i,
                            2,
                            format!(
                                "failed to compile regular expression: unsupported escape `\\{}` (the escapes are `\\d \\D \\s \\S \\w \\W \\xhh` and a backslash before a symbol)",
                                c as char
                            ),
                        ));
                    }
                    c => {
                        // An escaped symbol is that symbol, literally.
                        if META.contains(&c) {
                            out.push('\\');
                        }
                        out.push(c as char);
                    }
                }
                i += 2;
                continue;
            }
            b'[' if !in_class => {
                in_class = true;
                out.push('[');
                // A leading `^` negates; a `]` right after `[` or `[^` is literal.
                if bytes.get(i + 1) == Some(&b'^') {
                    out.push('^');
                    i += 1;
                }
                if bytes.get(i + 1) == Some(&b']') {
                    out.push_str("\\]");
                    i += 1;
                }
            }
            b'[' => out.push_str("\\["),
            b']' if in_class => {
                in_class = false;
                out.push(']');
            }
            b'{' if !in_class => {
                // A bounded repetition `{m}`, `{m,}`, `{m,n}` or `{,n}` (the regex crate
                // wants `{0,n}` for the last).
                let Some(len) = body[i..].find('}') else {
                    return Err(err(
                        i,
                        1,
                        "failed to compile regular expression: unclosed `{`".to_owned(),
                    ));
                };
                let inner = &body[i + 1..i + len];
                if inner.is_empty() || !inner.bytes().all(|c| c.is_ascii_digit() || c == b',') {
                    return Err(err(
                        i,
                        len + 1,
                        format!("failed to compile regular expression: `{{{inner}}}` is not a repetition `{{m}}`, `{{m,}}` or `{{m,n}}`"),
                    ));
                }
                out.push('{');
                if inner.starts_with(',') {
                    out.push('0');
                }
                out.push_str(inner);
                out.push('}');
                i += len + 1;
                after_quantifier = true;
                continue;
            }
            b'*' | b'+' | b'?' if !in_class => {
                out.push(b as char);
                after_quantifier = true;
            }
            b'#' | b'&' | b'~' | b'-' if in_class => {
                // Keep class syntax unambiguous: `-` stays a range operator, the others are
                // literal.
                if b == b'-' {
                    out.push('-');
                } else {
                    out.push('\\');
                    out.push(b as char);
                }
            }
            b'#' => out.push_str("\\#"),
            b' ' => out.push(' '),
            _ => out.push(b as char),
        }
        i += 1;
    }
    if in_class {
        return Err(err(
            bytes.len(),
            0,
            "failed to compile regular expression: unclosed character class, expected `]` before the closing `%`".to_owned(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(body: &str) -> Regex {
        let p = format!("%{body}%");
        Regex::compile(&p, body, 0..p.len()).unwrap()
    }

    fn bad(body: &str) -> String {
        let p = format!("%{body}%");
        Regex::compile(&p, body, 0..p.len())
            .unwrap_err()
            .message()
            .to_owned()
    }

    #[test]
    fn documented_examples() {
        assert!(re("AUTHORIZED").is_match("[ERROR 401] UNAUTHORIZED REQUEST"));
        assert!(re("10.10.0.1").is_match("10010,051"));
        assert!(re("^[hc]at").is_match("hat trick"));
        assert!(!re("^[hc]at").is_match("that"));
        assert!(re("colou?r").is_match("color"));
        assert!(re("a{3,5}").is_match("aaa"));
        assert!(re("a{,2}b").is_match("b"));
        assert!(re("gra|ey").is_match("grey") && re("gra|ey").is_match("gray"));
        assert!(re("\\x3A").is_match("a:b"));
        assert!(re("\\[.\\]").is_match("[x]"));
        assert!(re("^shutting down").is_match("shutting down now"));
    }

    #[test]
    fn classes_are_ascii() {
        assert!(!re("\\d").is_match("٣")); // Arabic-Indic digit three
        assert!(!re("\\w").is_match("é"));
        assert!(re("\\s").is_match("a\tb"));
        assert!(re("[\\d_]").is_match("_"));
        assert!(re("x\\S").is_match("xé"));
    }

    #[test]
    fn dot_does_not_match_newline() {
        assert!(!re("a.b").is_match("a\nb"));
    }

    #[test]
    fn rejections() {
        assert!(bad("\\(x\\)").contains("`(`"));
        assert!(bad("a)").contains("`)`"));
        assert!(bad("something!").contains("`!`"));
        assert!(bad("é").contains("non-ASCII"));
        assert!(bad("a\\").contains("cannot end"));
        assert!(bad("[abc").contains("unclosed"));
        assert!(bad("\\p{L}").contains("unsupported escape"));
        assert!(bad("\\xZZ").contains("hex"));
        assert!(bad("a{2,1}").contains("failed to compile regular expression"));
        assert!(bad("[9-0]").contains("failed to compile regular expression"));
        assert!(bad("a++").contains("possessive"));
        assert!(bad("a*+").contains("possessive"));
        assert!(bad("a?+").contains("possessive"));
        assert!(bad("a{1,2}+").contains("possessive"));
        assert!(bad("a**").contains("failed to compile"));
        assert!(bad("a{2").contains("unclosed"));
        assert!(bad("\\b").contains("unsupported escape"));
        assert!(bad("\\n").contains("unsupported escape"));
        assert!(bad("\\1").contains("unsupported escape"));
    }

    #[test]
    fn lazy_quantifiers_match_like_plain_ones() {
        for (lazy, plain) in [
            ("a*?b", "a*b"),
            ("a+?b", "a+b"),
            ("a??b", "a?b"),
            ("a{1,3}?b", "a{1,3}b"),
        ] {
            for text in ["b", "ab", "aab", "aaaab", "x"] {
                assert_eq!(
                    re(lazy).is_match(text),
                    re(plain).is_match(text),
                    "{lazy} {text}"
                );
            }
        }
    }
}
