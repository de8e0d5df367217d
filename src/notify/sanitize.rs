//! Making event-derived text safe for the medium that shows it.
//!
//! Every string taken from a CloudTrail record is attacker-controlled: whoever calls IAM chooses
//! the role name, the session name, the user agent and, through them, parts of the error
//! message. Such a string can hold CR/LF (a forged mail header), HTML, bidi overrides that make
//! `evil` read as `live`, invisible characters that make two different role names look equal,
//! or 100 KB of padding that pushes the real content off a phone screen.
//!
//! Three shapes of output are needed, one function each:
//!
//! * [`ascii_line`], for a subject or any header: printable ASCII only, whitespace collapsed,
//!   no `=?` (so no RFC 2047 encoded word, which a mail client would decode into a bidi
//!   override, a line break or markup), bounded with `...`.
//! * [`clean_line`], for one field of a text or HTML body or of the JSON summary: no control,
//!   bidi or invisible character (each becomes a visible U+FFFD, so that on-call sees that
//!   something was there), bounded with `…`.
//! * [`clean_block`], for a multi-line block (the pretty-printed record): like [`clean_line`]
//!   but the newlines survive, and the cut says how much was left out.
//!
//! HTML escaping is not done here: the template engine (askama) does it, after these
//! functions have removed what escaping cannot neutralise (bidi overrides, invisible
//! characters, length).

/// The longest field of a text or HTML body, in characters.
pub const FIELD_MAX_CHARS: usize = 512;

/// The longest subject, in characters (which are all ASCII, so also in bytes).
pub const SUBJECT_MAX_CHARS: usize = 100;

/// What a control, bidi or invisible character becomes in a body: visible, and plainly not
/// part of a real name.
pub const REPLACEMENT: char = '\u{FFFD}';

/// True for the characters that reorder or hide text without being visible themselves: the
/// bidi embeddings, overrides, isolates and marks, zero-width characters, word joiners and
/// invisible operators, the byte order mark, interlinear annotations and the tag characters
/// used to smuggle ASCII past reviewers.
#[must_use]
pub fn is_bidi_or_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// True for C0 and C1 control characters (CR, LF, TAB, NUL, DEL, U+0085 NEL, ...) and the
/// Unicode line and paragraph separators U+2028 and U+2029.
#[must_use]
pub fn is_control_or_break(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// True when `c` may appear in a body line as it is.
fn is_safe_in_body(c: char) -> bool {
    !is_control_or_break(c) && !is_bidi_or_invisible(c)
}

/// One line of ASCII for a subject or header: control characters and all kinds of whitespace
/// become one space (runs collapse, the ends are trimmed), bidi and invisible characters are
/// dropped, any other non-ASCII character becomes `?`, a space is put between `=` and `?`
/// (`=?utf-8?q?=E2=80=AE?=` becomes `= ?utf-8?q?=E2=80=AE?=`), and a line longer than
/// `max_chars` is cut to `max_chars` ending in `...`.
///
/// Every RFC 2047 encoded word starts with `=?`, and mail clients decode one wherever they
/// find it in a subject; with the space, on-call reads the text as it was sent, and nothing
/// is decoded. The result is plain ASCII words, which lettre writes as they are (it encodes
/// only words with other characters, and folds only at spaces, which unfolding keeps), so its
/// own header encoding cannot make an encoded word of it either.
///
/// The result never holds CR, LF, `=?` or any character outside `' '..='~'`, and is its own
/// `ascii_line`.
#[must_use]
pub fn ascii_line(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars + 4));
    let mut pending_space = false;
    // Enough input for the output plus one character to tell that a cut is needed; the rest
    // of a 100 KB value is never looked at.
    for c in s.chars() {
        if c.is_whitespace() || is_control_or_break(c) {
            pending_space = !out.is_empty();
            continue;
        }
        if is_bidi_or_invisible(c) {
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        let c = if c.is_ascii_graphic() { c } else { '?' };
        if c == '?' && out.ends_with('=') {
            // `=?` would start an encoded word: keep the two apart.
            out.push(' ');
        }
        out.push(c);
        if out.len() > max_chars {
            break;
        }
    }
    cut_ascii(out, max_chars)
}

/// Cuts an ASCII string to at most `max_chars`, ending in `...` when something was cut.
fn cut_ascii(mut s: String, max_chars: usize) -> String {
    if s.len() <= max_chars {
        return s;
    }
    const DOTS: &str = "...";
    if max_chars < DOTS.len() {
        s.truncate(max_chars);
        let kept = s.trim_end().len();
        s.truncate(kept);
        return s;
    }
    s.truncate(max_chars - DOTS.len());
    let kept = s.trim_end().len();
    s.truncate(kept);
    s.push_str(DOTS);
    s
}

/// One line for a text or HTML body or a JSON summary: TAB becomes a space; every other
/// control, line-break, bidi or invisible character becomes [`REPLACEMENT`]; a line longer
/// than `max_chars` characters is cut to `max_chars` ending in `…`.
///
/// The result holds no character for which [`is_control_or_break`] or
/// [`is_bidi_or_invisible`] is true.
#[must_use]
pub fn clean_line(s: &str, max_chars: usize) -> String {
    if max_chars == 0 {
        return String::new();
    }
    let mut out = String::with_capacity(s.len().min(max_chars * 2));
    for (count, c) in s.chars().enumerate() {
        if count == max_chars {
            // One more character exists: the line is cut.
            out.pop();
            out.push('…');
            return out;
        }
        out.push(if c == '\t' {
            ' '
        } else if is_safe_in_body(c) {
            c
        } else {
            REPLACEMENT
        });
    }
    out
}

/// A multi-line block for a text or HTML body: newlines are kept, CR is dropped (so CRLF
/// becomes LF), TAB becomes two spaces, every other control, line-break, bidi or invisible
/// character becomes [`REPLACEMENT`]. A block longer than `max_chars` characters is cut, and
/// a last line says how many characters were left out; the whole result, that line included,
/// is at most `max_chars + 48` characters.
#[must_use]
pub fn clean_block(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars * 2));
    let mut count = 0;
    let mut chars = s.chars();
    for c in chars.by_ref() {
        match c {
            '\r' => continue,
            '\n' => out.push('\n'),
            '\t' => {
                out.push_str("  ");
                count += 1;
            }
            c if is_safe_in_body(c) => out.push(c),
            _ => out.push(REPLACEMENT),
        }
        count += 1;
        if count >= max_chars {
            break;
        }
    }
    let left = chars.filter(|&c| c != '\r').count();
    if left > 0 {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("… (cut here: {left} more characters)"));
    }
    out
}

/// Cuts `s` to at most `max_chars` characters, ending in `…` when something was cut. No
/// character is changed: for already clean text.
#[must_use]
pub fn cut_chars(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        None => s.to_owned(),
        Some(_) => {
            let mut out: String = s.chars().take(max_chars.saturating_sub(1)).collect();
            if max_chars > 0 {
                out.push('…');
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_line_removes_header_injection() {
        assert_eq!(
            ascii_line("x\r\nBcc: evil@example.com", 100),
            "x Bcc: evil@example.com"
        );
        assert_eq!(
            ascii_line("a\u{85}b\u{2028}c\u{2029}d\te", 100),
            "a b c d e"
        );
        assert_eq!(ascii_line("  many   \n\n spaces  ", 100), "many spaces");
        assert_eq!(ascii_line("nul\0byte", 100), "nul byte");
    }

    #[test]
    fn ascii_line_drops_bidi_and_replaces_non_ascii() {
        assert_eq!(ascii_line("abc\u{202E}def\u{2066}\u{200F}", 100), "abcdef");
        assert_eq!(ascii_line("jöhn 日本", 100), "j?hn ??");
        assert_eq!(ascii_line("tag\u{E0041}\u{E0042}s", 100), "tags");
    }

    /// Regression (issue 11): an encoded word in an event field passed as printable ASCII, and
    /// mail clients decoded it into a bidi override, a fake header line or markup.
    #[test]
    fn ascii_line_neutralises_encoded_words() {
        for (hostile, shown) in [
            ("=?utf-8?q?=E2=80=AE?=", "= ?utf-8?q?=E2=80=AE?="),
            ("=?UTF-8?B?4oCu?=", "= ?UTF-8?B?4oCu?="),
            (
                "x=?utf-8?q?=0D=0ABcc:_victim@evil.example?=y",
                "x= ?utf-8?q?=0D=0ABcc:_victim@evil.example?=y",
            ),
            (
                "=?iso-8859-1*en?Q?=3Cb=3Ebold=3C/b=3E?=",
                "= ?iso-8859-1*en?Q?=3Cb=3Ebold=3C/b=3E?=",
            ),
            // Made by what the line drops or replaces: still kept apart.
            ("=\u{200B}?utf-8?q?a?=", "= ?utf-8?q?a?="),
            ("=\u{202E}?", "= ?"),
            ("=é", "= ?"),
            ("==??=", "== ??="),
            ("a = ?b", "a = ?b"),
        ] {
            let line = ascii_line(hostile, 100);
            assert_eq!(line, shown, "{hostile:?}");
            assert!(!line.contains("=?"));
            assert_eq!(ascii_line(&line, 100), line, "stable");
        }
        // The cut cannot join them either.
        assert_eq!(ascii_line("abcdefg=?x", 10), "abcdefg...");
        assert_eq!(ascii_line("abcdef=?xyz", 10), "abcdef=...");
        assert_eq!(
            ascii_line("=?", 2),
            "=",
            "no space left at the end of a short cut"
        );
    }

    #[test]
    fn ascii_line_cuts_with_dots() {
        let long = "a".repeat(100_000);
        let cut = ascii_line(&long, 100);
        assert_eq!(cut.len(), 100);
        assert!(cut.ends_with("aaa..."));
        assert_eq!(ascii_line("exactly10!", 10), "exactly10!");
        assert_eq!(ascii_line("exactly 11!", 10), "exactly...");
        assert_eq!(ascii_line("abcdef", 2), "ab");
        assert_eq!(ascii_line("", 10), "");
    }

    #[test]
    fn clean_line_makes_hidden_characters_visible() {
        assert_eq!(
            clean_line("x\r\nBcc: evil@example.com", 100),
            "x\u{FFFD}\u{FFFD}Bcc: evil@example.com"
        );
        assert_eq!(clean_line("a\tb", 100), "a b");
        assert_eq!(
            clean_line("role\u{202E}eman", 100),
            "role\u{FFFD}eman",
            "a bidi override cannot reverse the rest of the line"
        );
        assert_eq!(clean_line("nul\0", 100), "nul\u{FFFD}");
        assert_eq!(clean_line("jöhn 日本", 100), "jöhn 日本");
    }

    #[test]
    fn clean_line_bounds_length_in_characters() {
        assert_eq!(clean_line("abcdef", 6), "abcdef");
        assert_eq!(clean_line("abcdefg", 6), "abcde…");
        assert_eq!(clean_line("日本語日本語日本", 3), "日本…");
        assert_eq!(clean_line("abc", 0), "");
        let long = "é".repeat(100_000);
        assert_eq!(clean_line(&long, FIELD_MAX_CHARS).chars().count(), 512);
    }

    #[test]
    fn clean_block_keeps_newlines_only() {
        assert_eq!(
            clean_block("a\r\nb\tc\u{202E}\u{7F}", 100),
            "a\nb  c\u{FFFD}\u{FFFD}"
        );
    }

    #[test]
    fn clean_block_says_how_much_was_cut() {
        let block = clean_block(&"x".repeat(1000), 10);
        assert_eq!(block, "xxxxxxxxxx\n… (cut here: 990 more characters)");
        assert!(clean_block(&"y\n".repeat(100_000), 100).chars().count() <= 148);
    }

    #[test]
    fn cut_chars_respects_char_boundaries() {
        assert_eq!(cut_chars("日本語", 3), "日本語");
        assert_eq!(cut_chars("日本語x", 3), "日本…");
        assert_eq!(cut_chars("abc", 0), "");
    }

    proptest::proptest! {
        #[test]
        fn ascii_line_is_plain_stable_and_holds_no_encoded_word(
            s in "(=|\\?|=\\?|\\?=|\u{200B}|\u{202E}|é|\r\n| |[a-zA-Z0-9_]|\\PC){0,40}",
            max in 0usize..60,
        ) {
            let line = ascii_line(&s, max);
            proptest::prop_assert!(line.len() <= max);
            proptest::prop_assert!(line.bytes().all(|b| (b' '..=b'~').contains(&b)), "{:?}", line);
            proptest::prop_assert!(!line.contains("=?"), "{:?} -> {:?}", s, line);
            proptest::prop_assert_eq!(ascii_line(&line, max), line);
        }
    }

    #[test]
    fn classifiers() {
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{FEFF}', '\u{200B}',
        ] {
            assert!(is_bidi_or_invisible(c), "{:?}", c);
        }
        for c in [
            '\r', '\n', '\t', '\0', '\u{7F}', '\u{85}', '\u{2028}', '\u{2029}',
        ] {
            assert!(is_control_or_break(c), "{:?}", c);
        }
        for c in ['a', ' ', 'é', '日', '\u{FFFD}'] {
            assert!(
                !is_bidi_or_invisible(c) && !is_control_or_break(c),
                "{:?}",
                c
            );
        }
    }
}
