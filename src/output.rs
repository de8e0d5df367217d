//! The JSON line rolewatch prints for a match (by `check`, and by the stdout channel of
//! `run`): `{"rule","severity","eventID","eventName","eventTime","source","record"}`; and what
//! keeps every JSON line rolewatch writes (matches, alerts on stdout, `scan`'s records, the
//! JSON logs) one line for any reader: [`escape_line_breakers`] and [`LineSafeWriter`].

use std::borrow::Cow;
use std::io::{self, Write};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::time::format_rfc3339_ms;

#[derive(Serialize)]
struct MatchLine<'a> {
    rule: &'a str,
    severity: &'a str,
    #[serde(rename = "eventID")]
    event_id: &'a str,
    #[serde(rename = "eventName")]
    event_name: &'a str,
    #[serde(rename = "eventTime")]
    event_time: String,
    source: &'a str,
    record: &'a RawValue,
}

/// One match as a compact JSON line (without the newline), with [`LINE_BREAKERS`] escaped.
///
/// # Errors
///
/// When `record` is not valid JSON (sources only hand over records that are).
#[allow(clippy::too_many_arguments)]
pub fn match_line(
    rule: &str,
    severity: &str,
    event_id: &str,
    event_name: &str,
    event_time_ms: i64,
    source: &str,
    record: &str,
) -> anyhow::Result<String> {
    let compact;
    let raw: Box<RawValue> = match RawValue::from_string(record.to_owned()) {
        Ok(r) if !record.contains(['\n', '\r']) => r,
        _ => {
            // Re-serialise a record that spans lines so that the output stays one line.
            let v: serde_json::Value = serde_json::from_str(record)?;
            compact = serde_json::to_string(&v)?;
            RawValue::from_string(compact)?
        }
    };
    let line = serde_json::to_string(&MatchLine {
        rule,
        severity,
        event_id,
        event_name,
        event_time: format_rfc3339_ms(event_time_ms),
        source,
        record: &raw,
    })?;
    Ok(escape_line_breakers(&line).into_owned())
}

/// The characters that JSON leaves unescaped but that line-splitting readers take for line
/// breaks: NEL (U+0085), LINE SEPARATOR (U+2028) and PARAGRAPH SEPARATOR (U+2029). JavaScript,
/// Python's `str.splitlines` and many log viewers end a line at each of them, so one of them in
/// an event field would cut a JSON line in two.
pub const LINE_BREAKERS: [char; 3] = ['\u{85}', '\u{2028}', '\u{2029}'];

/// The `\uXXXX` escape of a [`LINE_BREAKERS`] character.
fn escape_of(c: char) -> Option<&'static str> {
    match c {
        '\u{85}' => Some("\\u0085"),
        '\u{2028}' => Some("\\u2028"),
        '\u{2029}' => Some("\\u2029"),
        _ => None,
    }
}

/// `json` with every [`LINE_BREAKERS`] character written as its `\uXXXX` escape: the same JSON
/// value, safe for any reader that splits lines. Valid for JSON text, where these characters
/// can only stand inside strings. Borrowed when there is none (the common case).
#[must_use]
pub fn escape_line_breakers(json: &str) -> Cow<'_, str> {
    if !json.contains(LINE_BREAKERS) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match escape_of(c) {
            Some(escape) => out.push_str(escape),
            None => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A writer of JSON lines (the JSON logs) that escapes [`LINE_BREAKERS`] on the way, like
/// [`escape_line_breakers`]. A character split between two writes is held back until its end
/// arrives, and written as it is by `flush` or when the writer is dropped.
pub struct LineSafeWriter<W: Write> {
    inner: W,
    /// The start of a character that a later write completes.
    pending: Vec<u8>,
}

impl<W: Write> LineSafeWriter<W> {
    pub fn new(inner: W) -> LineSafeWriter<W> {
        LineSafeWriter {
            inner,
            pending: Vec::new(),
        }
    }
}

/// The UTF-8 of the [`LINE_BREAKERS`] and their escapes.
const ENCODED_BREAKERS: [(&[u8], &[u8]); 3] = [
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
];

/// How many bytes at the end of `data` may be the start of a [`LINE_BREAKERS`] character.
fn partial_tail(data: &[u8]) -> usize {
    match data {
        [.., 0xe2, 0x80] => 2,
        [.., 0xe2] | [.., 0xc2] => 1,
        _ => 0,
    }
}

impl<W: Write> Write for LineSafeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pending.is_empty() && memchr::memchr2(0xc2, 0xe2, buf).is_none() {
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(buf);
        let (now, later) = data.split_at(data.len() - partial_tail(&data));
        let mut out = Vec::with_capacity(now.len() + 16);
        let mut i = 0;
        while let Some(off) = memchr::memchr2(0xc2, 0xe2, &now[i..]) {
            let at = i + off;
            out.extend_from_slice(&now[i..at]);
            match ENCODED_BREAKERS
                .iter()
                .find(|(raw, _)| now[at..].starts_with(raw))
            {
                Some((raw, escape)) => {
                    out.extend_from_slice(escape);
                    i = at + raw.len();
                }
                None => {
                    out.push(now[at]);
                    i = at + 1;
                }
            }
        }
        out.extend_from_slice(&now[i..]);
        self.inner.write_all(&out)?;
        self.pending = later.to_vec();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.inner.write_all(&self.pending)?;
            self.pending.clear();
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for LineSafeWriter<W> {
    fn drop(&mut self) {
        // Nothing can report a failure here; the logs go on.
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const RECORD: &str = "{\"eventID\":\"a\",\"eventName\":\"AttachRolePolicy\",\"userAgent\":\"x\u{2028}y\u{2029}z\u{85}!\"}";

    #[test]
    fn a_match_line_escapes_what_line_splitters_break_on() {
        for record in [RECORD.to_owned(), RECORD.replace(",", ",\r\n ")] {
            let line = match_line("r", "high", "a", "AttachRolePolicy", 0, "s", &record).unwrap();
            assert!(
                !line.contains(LINE_BREAKERS) && !line.contains(['\n', '\r']),
                "{line:?}"
            );
            assert!(
                line.contains(r#""userAgent":"x\u2028y\u2029z\u0085!""#),
                "{line}"
            );
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["record"], serde_json::from_str::<Value>(RECORD).unwrap());
            assert_eq!(v["record"]["userAgent"], "x\u{2028}y\u{2029}z\u{85}!");
        }
    }

    #[test]
    fn escaping_keeps_the_value() {
        assert!(matches!(
            escape_line_breakers(r#"{"a":"é\u2028"}"#),
            Cow::Borrowed(_)
        ));
        let json =
            serde_json::to_string(&serde_json::json!({"k\u{2029}": ["\u{85}", "日本\u{2028}"]}))
                .unwrap();
        let escaped = escape_line_breakers(&json);
        assert_eq!(escaped, r#"{"k\u2029":["\u0085","日本\u2028"]}"#);
        let back: Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(&json).unwrap());
    }

    #[test]
    fn the_writer_escapes_across_any_split_of_its_input() {
        let text = format!("{{\"m\":\"a\u{2028}b\u{85}c\u{2029}\u{e9}\u{20ac}\"}}\n{RECORD}\n");
        let expected = escape_line_breakers(&text).into_owned();
        for chunk in [1, 2, 3, 5, text.len()] {
            let mut out = Vec::new();
            {
                let mut w = LineSafeWriter::new(&mut out);
                for piece in text.as_bytes().chunks(chunk) {
                    w.write_all(piece).unwrap();
                }
            }
            assert_eq!(
                String::from_utf8(out).unwrap(),
                expected,
                "chunks of {chunk}"
            );
        }
    }
}
