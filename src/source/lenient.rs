//! A lenient HTTP layer for LookupEvents and FilterLogEvents replies: one event holding text
//! that is not valid Unicode (a lone UTF-16 surrogate escape such as `\udc80`, or bytes that
//! are not UTF-8) makes the SDK reject the whole reply — and the poll of that window would
//! fail forever. This layer reads the reply body and repairs such text (U+FFFD), so that the
//! reply parses, and then **marks** each record whose text it had to repair: the record's
//! `CloudTrailEvent` (LookupEvents) or `message` (FilterLogEvents) is replaced as a whole by
//! [`NOT_UNICODE_MARK`] and what was wrong, which [`super::check_record`] reports as
//! malformed, with the event's ID, while the rest of its page is kept.
//!
//! The mark is out of reach of whoever makes the change: a record as AWS writes it is a JSON
//! object, never text that starts with NUL, and a field of an event can only put text inside
//! that object. A valid U+FFFD in a record (a user agent ending in `�`) is ordinary text: it
//! is neither repaired nor marked, and the record is evaluated like any other.
//!
//! [`lone_surrogate_escape`] finds the other way a record can fail to be Unicode: a lone
//! surrogate escape inside the record's own JSON text.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;

/// Wraps an HTTP client so that every reply body is made valid Unicode JSON text.
#[derive(Debug, Clone)]
pub struct LenientClient {
    inner: SharedHttpClient,
}

impl LenientClient {
    /// Wraps `inner`.
    pub fn wrap(inner: SharedHttpClient) -> SharedHttpClient {
        SharedHttpClient::new(LenientClient { inner })
    }

    /// Wraps rolewatch's HTTPS client ([`crate::aws::https_client`]).
    pub fn default_https() -> SharedHttpClient {
        Self::wrap(crate::aws::https_client())
    }
}

impl HttpClient for LenientClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(LenientConnector {
            inner: self.inner.http_connector(settings, components),
        })
    }
}

#[derive(Debug, Clone)]
struct LenientConnector {
    inner: SharedHttpConnector,
}

impl HttpConnector for LenientConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let inner = self.inner.clone();
        HttpConnectorFuture::new(async move {
            let mut response = inner.call(request).await?;
            let body = response.take_body();
            let bytes = ByteStream::new(body)
                .collect()
                .await
                .map_err(|e| ConnectorError::io(Box::new(e)))?
                .into_bytes();
            let fixed = match make_valid(&bytes) {
                Cow::Borrowed(_) => SdkBody::from(bytes),
                Cow::Owned(v) => SdkBody::from(v),
            };
            *response.body_mut() = fixed;
            Ok(response)
        })
    }
}

/// What the record of an event whose text was not valid Unicode is replaced with, followed by
/// what was wrong. No record AWS writes starts with NUL (see the module documentation).
pub const NOT_UNICODE_MARK: &str = "\u{0}rolewatch: not valid Unicode: ";

/// One repair of the reply's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    /// Bytes that are not UTF-8; the first of them.
    NotUtf8(u8),
    /// A `\uXXXX` escape of a UTF-16 surrogate without its partner.
    LoneSurrogate(u16),
}

impl Damage {
    fn describe(self) -> String {
        match self {
            Damage::NotUtf8(b) => format!("it holds bytes that are not UTF-8 (0x{b:02x})"),
            Damage::LoneSurrogate(u) => {
                format!("it holds a lone UTF-16 surrogate escape (\\u{u:04x})")
            }
        }
    }
}

/// Makes a reply body valid Unicode JSON text: invalid UTF-8 and unpaired surrogate escapes
/// (`\uD800`–`\uDFFF` without their partner) become U+FFFD, and the record of each event
/// that held such text is replaced by [`NOT_UNICODE_MARK`] and the reason. Borrowed when
/// there is nothing to repair.
pub fn make_valid(body: &[u8]) -> Cow<'_, [u8]> {
    let (text, damage) = repair(body);
    if damage.is_empty() {
        return Cow::Borrowed(body);
    }
    let marked = mark(&text, &damage).unwrap_or_else(|| text.into_owned());
    Cow::Owned(marked.into_bytes())
}

/// The byte offset of the first lone UTF-16 surrogate escape (`\udc80`, or `\ud800` not
/// followed by a low surrogate escape) in JSON text, if any. Escaped backslashes are skipped
/// (`\\udc80` is the six characters `\udc80`, which are valid text).
#[must_use]
pub fn lone_surrogate_escape(json: &[u8]) -> Option<usize> {
    next_lone_surrogate(json, 0).map(|(at, _)| at)
}

/// The text repaired, and where (byte offsets in the repaired text) and what each repair was.
fn repair(body: &[u8]) -> (Cow<'_, str>, Vec<(usize, Damage)>) {
    let mut damage = Vec::new();
    let mut text = match std::str::from_utf8(body) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(decode_lossy(body, &mut damage)),
    };
    let mut from = 0;
    while let Some((at, unit)) = next_lone_surrogate(text.as_bytes(), from) {
        // `\uXXXX` and `\ufffd` have the same length: earlier offsets stay valid.
        text.to_mut().replace_range(at..at + 6, "\\ufffd");
        damage.push((at, Damage::LoneSurrogate(unit)));
        from = at + 6;
    }
    (text, damage)
}

/// `String::from_utf8_lossy`, also noting where each U+FFFD went.
fn decode_lossy(mut bytes: &[u8], damage: &mut Vec<(usize, Damage)>) -> String {
    let mut out = String::with_capacity(bytes.len() + 16);
    loop {
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                out.push_str(text);
                return out;
            }
            Err(err) => {
                let (good, rest) = bytes.split_at(err.valid_up_to());
                // Valid by the error's own account.
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                damage.push((
                    out.len(),
                    Damage::NotUtf8(rest.first().copied().unwrap_or(0)),
                ));
                out.push('\u{FFFD}');
                bytes = rest
                    .get(err.error_len().unwrap_or(rest.len())..)
                    .unwrap_or(&[]);
            }
        }
    }
}

/// The next lone surrogate escape at or after byte `from`: its offset and code unit.
fn next_lone_surrogate(b: &[u8], mut from: usize) -> Option<(usize, u16)> {
    while let Some(off) = memchr::memchr(b'\\', b.get(from..)?) {
        let at = from + off;
        if b.get(at + 1) != Some(&b'u') {
            // Any other escape: skip the backslash and the escaped character.
            from = at + 2;
            continue;
        }
        let Some(unit) = hex4(b, at + 2) else {
            from = at + 2;
            continue;
        };
        let is_high = (0xD800..0xDC00).contains(&unit);
        let is_low = (0xDC00..0xE000).contains(&unit);
        let paired = is_high
            && b.get(at + 6) == Some(&b'\\')
            && b.get(at + 7) == Some(&b'u')
            && hex4(b, at + 8).is_some_and(|u| (0xDC00..0xE000).contains(&u));
        if paired {
            from = at + 12;
        } else if is_high || is_low {
            return Some((at, unit));
        } else {
            from = at + 6;
        }
    }
    None
}

fn hex4(b: &[u8], at: usize) -> Option<u16> {
    let digits = b.get(at..at + 4)?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// The events of a LookupEvents reply (`Events[].CloudTrailEvent`) or a FilterLogEvents reply
/// (`events[].message`), each record borrowed as its JSON text so that its place in the reply
/// is known.
#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow, rename = "Events", default)]
    lookup_events: Vec<LookupEvent<'a>>,
    #[serde(borrow, rename = "events", default)]
    log_events: Vec<LogEvent<'a>>,
}

#[derive(Deserialize)]
struct LookupEvent<'a> {
    #[serde(borrow, rename = "CloudTrailEvent", default)]
    record: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct LogEvent<'a> {
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
}

/// The repaired reply with the record of each damaged event replaced by the mark; `None`
/// when the reply is not one of those shapes (then only the repair applies). Damage outside
/// any record (another field of the reply) is left repaired and unmarked.
fn mark(text: &str, damage: &[(usize, Damage)]) -> Option<String> {
    let reply: Reply<'_> = serde_json::from_str(text).ok()?;
    let base = text.as_ptr() as usize;
    let records = reply
        .lookup_events
        .iter()
        .filter_map(|e| e.record)
        .chain(reply.log_events.iter().filter_map(|e| e.message));
    let mut splices = Vec::new();
    for raw in records {
        let start = (raw.get().as_ptr() as usize).checked_sub(base)?;
        let end = start + raw.get().len();
        let mut found = damage.iter().filter(|(at, _)| (start..end).contains(at));
        let Some((_, first)) = found.next() else {
            continue;
        };
        let more = found.count();
        let mut why = first.describe();
        if more > 0 {
            why.push_str(&format!(", and {more} more such place(s)"));
        }
        let marked = serde_json::to_string(&format!("{NOT_UNICODE_MARK}{why}")).ok()?;
        splices.push((start, end, marked));
    }
    splices.sort_by_key(|(start, _, _)| *start);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end, marked) in splices {
        out.push_str(text.get(copied..start)?);
        out.push_str(&marked);
        copied = end;
    }
    out.push_str(text.get(copied..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn fix(s: &[u8]) -> String {
        String::from_utf8(make_valid(s).into_owned()).unwrap()
    }

    /// A LookupEvents reply with `records` as the `CloudTrailEvent` texts, built by hand so
    /// that it can hold what serde_json cannot write.
    fn lookup_reply(records: &[&str]) -> Vec<u8> {
        let events: Vec<String> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(r#"{{"EventId":"ev-{i}","EventTime":1.7E9,"CloudTrailEvent":"{r}"}}"#)
            })
            .collect();
        format!(r#"{{"Events":[{}],"NextToken":"t"}}"#, events.join(",")).into_bytes()
    }

    fn records_of(body: &[u8]) -> Vec<String> {
        let v: Value = serde_json::from_slice(&make_valid(body)).unwrap();
        let (list, field) = match v.get("Events") {
            Some(list) => (list, "CloudTrailEvent"),
            None => (&v["events"], "message"),
        };
        list.as_array()
            .unwrap()
            .iter()
            .map(|e| e[field].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        assert_eq!(fix(br#"{"a":"x\udc80y"}"#), r#"{"a":"x\ufffdy"}"#);
        assert_eq!(fix(br#"{"a":"\uD800"}"#), r#"{"a":"\ufffd"}"#);
        assert_eq!(fix(br#"{"a":"\ud800\u0041"}"#), r#"{"a":"\ufffd\u0041"}"#);
    }

    #[test]
    fn valid_text_is_untouched() {
        for s in [
            &br#"{"a":"\ud83d\ude00 \u00e9 \\udc80 \" \\"}"#[..],
            b"{}",
            br#"{"a":"\u12"}"#,
            // A valid U+FFFD, escaped and as UTF-8: ordinary text.
            br#"{"Events":[{"EventId":"a","CloudTrailEvent":"{\"userAgent\":\"x\\ufffd\"}"}]}"#,
            "{\"Events\":[{\"EventId\":\"a\",\"CloudTrailEvent\":\"{\\\"userAgent\\\":\\\"x\u{FFFD}\\\"}\"}]}".as_bytes(),
            br#"{"Events":[{"EventId":"a","CloudTrailEvent":"{\"userAgent\":\"x\ufffd\"}"}]}"#,
        ] {
            assert!(
                matches!(make_valid(s), Cow::Borrowed(_)),
                "{}",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(fix(b"{\"a\":\"\xff\"}"), "{\"a\":\"\u{fffd}\"}");
        assert_eq!(
            fix(b"{\"a\":\"\xe2\x80x\xff\"}"),
            "{\"a\":\"\u{fffd}x\u{fffd}\"}"
        );
    }

    #[test]
    fn a_record_with_a_lone_surrogate_is_marked_and_its_page_kept() {
        let body = lookup_reply(&[
            r#"{\"eventID\":\"ev-0\"}"#,
            r#"{\"eventID\":\"ev-1\",\"userAgent\":\"x\udc80\"}"#,
            r#"{\"eventID\":\"ev-2\",\"userAgent\":\"x\ufffd\"}"#,
        ]);
        let records = records_of(&body);
        assert_eq!(records[0], r#"{"eventID":"ev-0"}"#);
        assert_eq!(
            records[1],
            format!("{NOT_UNICODE_MARK}it holds a lone UTF-16 surrogate escape (\\udc80)")
        );
        assert_eq!(
            records[2], "{\"eventID\":\"ev-2\",\"userAgent\":\"x\u{FFFD}\"}",
            "a valid U+FFFD is not damage"
        );
        let v: Value = serde_json::from_slice(&make_valid(&body)).unwrap();
        assert_eq!(v["NextToken"], "t");
        assert_eq!(v["Events"][1]["EventId"], "ev-1");
        assert_eq!(v["Events"][1]["EventTime"], json!(1.7e9));
    }

    #[test]
    fn a_log_message_with_bytes_that_are_not_utf8_is_marked() {
        let mut body = br#"{"events":[{"eventId":"l-0","message":"{\"a\":\"ok\"}"},{"eventId":"l-1","message":"{\"a\":\""#.to_vec();
        body.extend_from_slice(b"\xc3\x28 \xff\xfe");
        body.extend_from_slice(br#"\"}"}],"nextToken":"n"}"#);
        let records = records_of(&body);
        assert_eq!(records[0], r#"{"a":"ok"}"#);
        assert_eq!(
            records[1],
            format!("{NOT_UNICODE_MARK}it holds bytes that are not UTF-8 (0xc3), and 2 more such place(s)")
        );
    }

    #[test]
    fn damage_outside_the_records_is_repaired_only() {
        let body = br#"{"Events":[{"EventId":"a\udc80","Username":"u\ud800","CloudTrailEvent":"{\"eventID\":\"a\"}"}],"NextToken":"\udfff"}"#;
        let v: Value = serde_json::from_slice(&make_valid(body)).unwrap();
        assert_eq!(v["Events"][0]["CloudTrailEvent"], r#"{"eventID":"a"}"#);
        assert_eq!(v["Events"][0]["EventId"], "a\u{FFFD}");
        assert_eq!(v["NextToken"], "\u{FFFD}");
    }

    #[test]
    fn a_reply_of_another_shape_is_repaired_only() {
        assert_eq!(
            fix(br#"{"Events":"not a list","x":"\udc80"}"#),
            r#"{"Events":"not a list","x":"\ufffd"}"#
        );
        assert_eq!(fix(b"not json \xff"), "not json \u{FFFD}");
    }

    #[test]
    fn lone_surrogate_escapes_are_found() {
        assert_eq!(lone_surrogate_escape(br#"{"a":"\udc80"}"#), Some(6));
        assert_eq!(lone_surrogate_escape(br#"{"a":"\ud800\u0041"}"#), Some(6));
        assert_eq!(
            lone_surrogate_escape(br#"{"a":"\ud83d\ude00","b":"\ude00"}"#),
            Some(25)
        );
        assert_eq!(
            lone_surrogate_escape(br#"{"a":"\\udc80 \ufffd \u00e9"}"#),
            None
        );
        assert_eq!(lone_surrogate_escape(br#"{"a":"\u+d80"}"#), None);
        assert_eq!(
            lone_surrogate_escape("{\"a\":\"\u{FFFD}\"}".as_bytes()),
            None
        );
    }
}
