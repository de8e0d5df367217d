//! `rolewatch test-pattern`: the local twin of `aws logs test-metric-filter`.
//!
//! The contract (spec §7): a valid pattern exits 0 and prints one JSON document,
//! `{"matches":[{"eventNumber":N,"eventMessage":"…","extractedValues":{…}}]}`, holding only the
//! matching messages in input order, numbered from 1, each message exactly as given. An invalid
//! pattern fails the whole call before any message is looked at.
//!
//! With `--compare-aws`, [`compare`] also asks CloudWatch Logs `TestMetricFilter` and reports
//! every difference: the way to prove on one's own patterns that rolewatch matches what the
//! service matches.

pub mod compare;

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::cli::TestPatternArgs;

/// The response document of `TestMetricFilter`.
#[derive(Debug, Serialize)]
pub struct Response<'a> {
    /// The matching messages, in input order.
    pub matches: Vec<Match<'a>>,
}

/// One matching message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Match<'a> {
    /// The 1-based position of the message in the input.
    pub event_number: usize,
    /// The message exactly as given.
    pub event_message: &'a str,
    /// The values a space-delimited pattern extracted; empty for other patterns.
    pub extracted_values: ExtractedValues,
}

/// Extracted `(name, value)` pairs, serialized as a JSON object in field order.
#[derive(Debug)]
pub struct ExtractedValues(pub filter_pattern::Extracted);

impl Serialize for ExtractedValues {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Evaluates `pattern` against each message and builds the response.
pub fn evaluate<'a>(
    pattern: &filter_pattern::FilterPattern,
    messages: &'a [String],
) -> Response<'a> {
    let matches = messages
        .iter()
        .enumerate()
        .filter_map(|(index, message)| {
            pattern.evaluate(message).map(|values| Match {
                event_number: index + 1,
                event_message: message,
                extracted_values: ExtractedValues(values),
            })
        })
        .collect();
    Response { matches }
}

/// Runs `rolewatch test-pattern`.
///
/// # Errors
///
/// A `UsageError` for an invalid pattern (checked before the messages are read; with
/// `--compare-aws` the service is asked first, see [`compare::run`]); an I/O error when the
/// message file cannot be read or is not UTF-8, or when stdout fails.
pub fn run(args: &TestPatternArgs) -> anyhow::Result<ExitCode> {
    if args.compare_aws {
        let messages = match &args.log_event_file {
            Some(path) => read_messages(path)?,
            None => args.log_event_messages.clone(),
        };
        return compare::run(args, &messages);
    }
    let pattern = crate::exit::compile_pattern(&args.filter_pattern)?;
    let from_file;
    let messages: &[String] = match &args.log_event_file {
        Some(path) => {
            from_file = read_messages(path)?;
            &from_file
        }
        None => &args.log_event_messages,
    };
    let response = evaluate(&pattern, messages);
    let mut stdout = io::stdout().lock();
    let line = serde_json::to_string(&response).context("cannot write the response")?;
    // One line for any reader, whatever the messages hold.
    writeln!(stdout, "{}", crate::output::escape_line_breakers(&line))
        .context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Reads one message per line from `path` (`-` is stdin).
fn read_messages(path: &Path) -> anyhow::Result<Vec<String>> {
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read the messages from stdin")?;
    } else {
        bytes = fs::read(path)
            .with_context(|| format!("cannot read the messages from {}", path.display()))?;
    }
    let text = String::from_utf8(bytes).map_err(|err| {
        let line = err.as_bytes()[..err.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&byte| byte == b'\n')
            .count()
            + 1;
        anyhow::anyhow!("{}:{line}: the message is not valid UTF-8", path.display())
    })?;
    Ok(split_messages(&text))
}

/// Splits a file's text into messages: one per line, a trailing `\r` stripped, and no extra
/// empty message after a final newline. Blank lines in between are kept as empty messages so
/// that `eventNumber` stays the line number.
pub fn split_messages(text: &str) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_messages_keeps_blank_lines_and_strips_crlf() {
        assert_eq!(split_messages("a\r\n\nb\n"), vec!["a", "", "b"]);
        assert_eq!(split_messages("a\nb"), vec!["a", "b"]);
        assert!(split_messages("").is_empty());
        assert_eq!(split_messages("\n"), vec![""]);
        assert_eq!(split_messages("\n\n"), vec!["", ""]);
    }

    #[test]
    fn extracted_values_serialize_in_field_order() {
        let values = ExtractedValues(vec![
            ("$z".to_string(), "1".to_string()),
            ("$a".to_string(), "2".to_string()),
        ]);
        assert_eq!(
            serde_json::to_string(&values).expect("serializes"),
            r#"{"$z":"1","$a":"2"}"#
        );
    }
}
