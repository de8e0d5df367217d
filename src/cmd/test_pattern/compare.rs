//! `rolewatch test-pattern --compare-aws`: the same pattern and messages through CloudWatch Logs
//! `TestMetricFilter`, and every difference from the local answer.
//!
//! The service takes 1 to 50 messages per call, none of them empty: the non-empty messages go
//! in calls of at most [`MESSAGES_PER_CALL`], the service's `eventNumber`s are mapped back to
//! the whole input, and empty messages are evaluated locally only and reported as not compared.
//! A pattern the service rejects is answered with `InvalidParameterException` (HTTP 400); that
//! is the service's verdict "invalid", not a failure. Any other error is a failure of the
//! comparison, not a disagreement.
//!
//! Exit status: 0 both sides accept the pattern and agree on every compared message; 1 they
//! differ (a report on stdout), or the service could not be asked (no report, the reason on
//! stderr); 2 both sides reject the pattern (a report on stdout), or a usage error.
//!
//! Why one file of ~590 lines: batching, the service call, the comparison and the report are
//! one pipeline with one data type per step, used only by `--compare-aws`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata;
use aws_sdk_cloudwatchlogs::operation::test_metric_filter::TestMetricFilterError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use serde_json::{json, Value};

use super::ExtractedValues;
use crate::aws::retry::{classify, RetryClass};
use crate::cli::TestPatternArgs;
use crate::exit::{UsageError, EXIT_FAILURE, EXIT_USAGE};

/// The most messages `TestMetricFilter` takes in one call.
pub const MESSAGES_PER_CALL: usize = 50;

/// Attempts per call (the SDK's standard retry: throttling and 5xx are tried again with
/// exponential backoff and jitter).
const ATTEMPTS_PER_CALL: u32 = 3;

/// How much of a message a line on stderr shows.
const SHOWN_CHARS: usize = 120;

/// One matching message as one side reports it, numbered in the whole input from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub event_number: usize,
    pub event_message: String,
    /// In field order for the local side, sorted by name for the service (its map has no
    /// order).
    pub extracted_values: Vec<(String, String)>,
}

/// What one side says about the pattern and the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The pattern is valid; these messages match, in input order.
    Valid(Vec<Record>),
    /// The pattern is rejected, for this reason.
    Invalid(String),
}

impl Verdict {
    fn is_valid(&self) -> bool {
        matches!(self, Verdict::Valid(_))
    }
}

/// One part on which the two sides differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// One side accepts the pattern, the other rejects it.
    Validity { local_valid: bool },
    /// One side matches the message, the other does not.
    Match { event_number: usize, local: bool },
    /// Both match the message, with different extracted values (each sorted by name).
    ExtractedValues {
        event_number: usize,
        local: Vec<(String, String)>,
        service: Vec<(String, String)>,
    },
    /// The service answered another `eventMessage` than the message sent.
    EventMessage {
        event_number: usize,
        service: String,
    },
}

/// The local verdict: the same evaluation as `test-pattern` without `--compare-aws`.
pub fn local_verdict(pattern: &str, messages: &[String]) -> Verdict {
    match filter_pattern::FilterPattern::new(pattern) {
        Ok(compiled) => Verdict::Valid(
            super::evaluate(&compiled, messages)
                .matches
                .into_iter()
                .map(|m| Record {
                    event_number: m.event_number,
                    event_message: m.event_message.to_owned(),
                    extracted_values: m.extracted_values.0,
                })
                .collect(),
        ),
        Err(err) => Verdict::Invalid(err.to_string()),
    }
}

/// Every difference between the two verdicts, in input order; the messages numbered in
/// `not_compared` are left out (the service was not asked about them).
pub fn compare(local: &Verdict, service: &Verdict, not_compared: &[usize]) -> Vec<Difference> {
    let (local, service) = match (local, service) {
        (Verdict::Valid(local), Verdict::Valid(service)) => (local, service),
        (Verdict::Invalid(_), Verdict::Invalid(_)) => return Vec::new(),
        (local, _) => {
            return vec![Difference::Validity {
                local_valid: local.is_valid(),
            }]
        }
    };
    let by_number = |records: &[Record]| -> BTreeMap<usize, Record> {
        records
            .iter()
            .filter(|r| !not_compared.contains(&r.event_number))
            .map(|r| (r.event_number, r.clone()))
            .collect()
    };
    let local = by_number(local);
    let service = by_number(service);
    let mut numbers: Vec<usize> = local.keys().chain(service.keys()).copied().collect();
    numbers.sort_unstable();
    numbers.dedup();
    let mut differences = Vec::new();
    for event_number in numbers {
        match (local.get(&event_number), service.get(&event_number)) {
            (Some(mine), Some(theirs)) => {
                let mine_values = sorted(&mine.extracted_values);
                let their_values = sorted(&theirs.extracted_values);
                if mine_values != their_values {
                    differences.push(Difference::ExtractedValues {
                        event_number,
                        local: mine_values,
                        service: their_values,
                    });
                }
                if mine.event_message != theirs.event_message {
                    differences.push(Difference::EventMessage {
                        event_number,
                        service: theirs.event_message.clone(),
                    });
                }
            }
            (mine, _) => differences.push(Difference::Match {
                event_number,
                local: mine.is_some(),
            }),
        }
    }
    differences
}

fn sorted(values: &[(String, String)]) -> Vec<(String, String)> {
    let mut values = values.to_vec();
    values.sort();
    values
}

/// The service's verdict and how many calls it took.
#[derive(Debug)]
pub struct ServiceAnswer {
    pub verdict: Verdict,
    pub calls: usize,
}

/// Asks `TestMetricFilter` about every non-empty message, at most [`MESSAGES_PER_CALL`] per
/// call, and numbers the matches in the whole input.
///
/// # Errors
///
/// When a call fails for any reason other than the service rejecting the pattern (throttled
/// after the retries, a 5xx, access denied, a dead endpoint), or when the service answers an
/// `eventNumber` it was not asked about.
pub async fn ask_service(
    client: &aws_sdk_cloudwatchlogs::Client,
    pattern: &str,
    messages: &[String],
) -> anyhow::Result<ServiceAnswer> {
    let sent: Vec<usize> = (0..messages.len())
        .filter(|&i| !messages[i].is_empty())
        .collect();
    let batches: Vec<&[usize]> = sent.chunks(MESSAGES_PER_CALL).collect();
    let total = batches.len();
    let mut records = Vec::new();
    for (call, batch) in batches.iter().enumerate() {
        let (first, last) = (batch[0] + 1, batch[batch.len() - 1] + 1);
        let which = format!(
            "TestMetricFilter call {} of {total} (messages {first}-{last})",
            call + 1
        );
        let reply = client
            .test_metric_filter()
            .filter_pattern(pattern)
            .set_log_event_messages(Some(batch.iter().map(|&i| messages[i].clone()).collect()))
            .send()
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(err) if rejects_pattern(&err) => {
                return Ok(ServiceAnswer {
                    verdict: Verdict::Invalid(crate::aws::error_text(&err)),
                    calls: call + 1,
                })
            }
            Err(err) => return Err(anyhow::anyhow!(failure_text(&which, &err))),
        };
        for found in reply.matches() {
            let number = found.event_number();
            let index = usize::try_from(number)
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|n| batch.get(n))
                .copied()
                .with_context(|| {
                    format!(
                        "{which}: the service answered eventNumber {number}, but was sent {} \
                         messages",
                        batch.len()
                    )
                })?;
            if records.iter().any(|r: &Record| r.event_number == index + 1) {
                anyhow::bail!("{which}: the service answered eventNumber {number} twice");
            }
            let mut values: Vec<(String, String)> = found
                .extracted_values()
                .map(|values| values.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            values.sort();
            records.push(Record {
                event_number: index + 1,
                event_message: found.event_message().unwrap_or_default().to_owned(),
                extracted_values: values,
            });
        }
    }
    records.sort_by_key(|r| r.event_number);
    Ok(ServiceAnswer {
        verdict: Verdict::Valid(records),
        calls: total,
    })
}

/// Whether an error is the service's "this pattern is invalid": `InvalidParameterException`,
/// or a `ValidationException` about `filterPattern` (one longer than 1024 characters).
fn rejects_pattern(err: &SdkError<TestMetricFilterError, HttpResponse>) -> bool {
    let Some(service) = err.as_service_error() else {
        return false;
    };
    service.is_invalid_parameter_exception()
        || (service.code() == Some("ValidationException")
            && service
                .message()
                .is_some_and(|m| m.contains("filterPattern")))
}

/// A failed call, said so that the reader knows nothing was compared and why.
fn failure_text(which: &str, err: &SdkError<TestMetricFilterError, HttpResponse>) -> String {
    let kind = match classify(err) {
        RetryClass::Throttled => {
            format!("the service throttled it ({ATTEMPTS_PER_CALL} attempts)")
        }
        RetryClass::Transient => format!("the service failed ({ATTEMPTS_PER_CALL} attempts)"),
        RetryClass::Permanent => "the service refused it".to_owned(),
    };
    let mut text = format!(
        "service error, nothing was compared: {which}: {kind}: {}",
        crate::aws::error_text(err)
    );
    if err
        .code()
        .is_some_and(|c| c.contains("AccessDenied") || c.contains("UnauthorizedOperation"))
    {
        text.push_str(" (the caller needs the IAM permission logs:TestMetricFilter)");
    }
    text
}

/// The report on stdout: both verdicts, the differences and the messages not compared.
pub fn report(
    messages: &[String],
    local: &Verdict,
    service: &ServiceAnswer,
    region: &str,
    differences: &[Difference],
    not_compared: &[usize],
) -> Value {
    let message = |n: usize| messages.get(n - 1).map_or("", String::as_str);
    let mut service_side = side(&service.verdict);
    service_side["region"] = json!(region);
    service_side["calls"] = json!(service.calls);
    let validity = |valid: bool| if valid { "valid" } else { "invalid" };
    let differences: Vec<Value> = differences
        .iter()
        .map(|d| match d {
            Difference::Validity { local_valid } => json!({
                "part": "validity",
                "local": validity(*local_valid),
                "service": validity(!local_valid),
            }),
            Difference::Match {
                event_number,
                local,
            } => json!({
                "part": "match",
                "eventNumber": event_number,
                "eventMessage": message(*event_number),
                "local": local,
                "service": !local,
            }),
            Difference::ExtractedValues {
                event_number,
                local,
                service,
            } => json!({
                "part": "extractedValues",
                "eventNumber": event_number,
                "eventMessage": message(*event_number),
                "local": values_json(local),
                "service": values_json(service),
            }),
            Difference::EventMessage {
                event_number,
                service,
            } => json!({
                "part": "eventMessage",
                "eventNumber": event_number,
                "local": message(*event_number),
                "service": service,
            }),
        })
        .collect();
    json!({
        "agree": differences.is_empty(),
        "local": side(local),
        "service": service_side,
        "differences": differences,
        "notCompared": not_compared,
    })
}

fn side(verdict: &Verdict) -> Value {
    match verdict {
        Verdict::Valid(records) => json!({
            "valid": true,
            "matches": records
                .iter()
                .map(|r| json!({
                    "eventNumber": r.event_number,
                    "eventMessage": r.event_message,
                    "extractedValues": values_json(&r.extracted_values),
                }))
                .collect::<Vec<_>>(),
        }),
        Verdict::Invalid(reason) => json!({"valid": false, "error": reason}),
    }
}

fn values_json(values: &[(String, String)]) -> Value {
    serde_json::to_value(ExtractedValues(values.to_vec())).unwrap_or(Value::Null)
}

/// The lines for stderr, for a human: one per difference, saying which message, which part
/// and what each side said, then a summary.
pub fn human_lines(
    messages: &[String],
    local: &Verdict,
    service: &ServiceAnswer,
    region: &str,
    differences: &[Difference],
    not_compared: &[usize],
) -> Vec<String> {
    let shown = |n: usize| show(messages.get(n - 1).map_or("", String::as_str));
    let mut lines = Vec::new();
    for d in differences {
        lines.push(match d {
            Difference::Validity { local_valid: true } => format!(
                "differs on the pattern: rolewatch accepts it, TestMetricFilter rejects it: {}",
                reason(&service.verdict)
            ),
            Difference::Validity { local_valid: false } => format!(
                "differs on the pattern: TestMetricFilter accepts it, rolewatch rejects it: {}",
                reason(local)
            ),
            Difference::Match {
                event_number,
                local: true,
            } => format!(
                "differs on message {event_number} (match): rolewatch matches it, \
                 TestMetricFilter does not: {}",
                shown(*event_number)
            ),
            Difference::Match {
                event_number,
                local: false,
            } => format!(
                "differs on message {event_number} (match): TestMetricFilter matches it, \
                 rolewatch does not: {}",
                shown(*event_number)
            ),
            Difference::ExtractedValues {
                event_number,
                local,
                service,
            } => format!(
                "differs on message {event_number} (extractedValues): {}: {}",
                value_differences(local, service),
                shown(*event_number)
            ),
            Difference::EventMessage {
                event_number,
                service,
            } => format!(
                "differs on message {event_number} (eventMessage): TestMetricFilter answered \
                 {} for {}",
                show(service),
                shown(*event_number)
            ),
        });
    }
    if !not_compared.is_empty() {
        let numbers: Vec<String> = not_compared.iter().map(usize::to_string).collect();
        lines.push(format!(
            "not compared: message(s) {} (empty; TestMetricFilter takes no empty message)",
            numbers.join(", ")
        ));
    }
    let compared = messages.len() - not_compared.len();
    let calls = match service.calls {
        1 => "1 call".to_owned(),
        n => format!("{n} calls"),
    };
    let summary = if !differences.is_empty() {
        format!(
            "{} difference(s) from TestMetricFilter in {region} on {compared} message(s) \
             ({calls})",
            differences.len()
        )
    } else if let Verdict::Valid(records) = local {
        let matched = records
            .iter()
            .filter(|r| !not_compared.contains(&r.event_number))
            .count();
        format!(
            "agrees with TestMetricFilter in {region} on all {compared} message(s) ({calls}): \
             {matched} match"
        )
    } else {
        format!(
            "agrees with TestMetricFilter in {region}: the pattern is invalid (TestMetricFilter: \
             {}); rolewatch: {}",
            reason(&service.verdict),
            reason(local)
        )
    };
    lines.push(summary);
    lines
}

fn reason(verdict: &Verdict) -> &str {
    match verdict {
        Verdict::Invalid(reason) => reason,
        Verdict::Valid(_) => "",
    }
}

/// `$a: rolewatch "1", TestMetricFilter "2"; $b: rolewatch (none), TestMetricFilter "3"`.
fn value_differences(local: &[(String, String)], service: &[(String, String)]) -> String {
    let get = |values: &[(String, String)], name: &str| {
        values
            .iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| "(none)".to_owned(), |(_, v)| show(v))
    };
    let mut names: Vec<&str> = local
        .iter()
        .chain(service)
        .map(|(n, _)| n.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut text = String::new();
    for name in names {
        let (mine, theirs) = (get(local, name), get(service, name));
        if mine != theirs {
            if !text.is_empty() {
                text.push_str("; ");
            }
            let _ = write!(text, "{name}: rolewatch {mine}, TestMetricFilter {theirs}");
        }
    }
    text
}

/// A message quoted as JSON, cut to [`SHOWN_CHARS`] characters.
fn show(message: &str) -> String {
    match message.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}… ({} bytes)", json!(&message[..cut]), message.len()),
        None => json!(message).to_string(),
    }
}

/// Runs `rolewatch test-pattern --compare-aws` on messages already read.
///
/// # Errors
///
/// A `UsageError` when no message can be sent (all are empty); an error when the region or
/// the credentials cannot be found, when a call fails (see [`ask_service`]), or when stdout
/// fails.
pub fn run(args: &TestPatternArgs, messages: &[String]) -> anyhow::Result<ExitCode> {
    let not_compared: Vec<usize> = (0..messages.len())
        .filter(|&i| messages[i].is_empty())
        .map(|i| i + 1)
        .collect();
    if not_compared.len() == messages.len() {
        return Err(UsageError(
            "--compare-aws needs at least one message that is not empty: TestMetricFilter \
             takes 1 to 50 messages per call, none of them empty"
                .into(),
        )
        .into());
    }
    let local = local_verdict(&args.filter_pattern, messages);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (region, answer) = runtime
        .block_on(async {
            let region = resolve_region(args.region.as_deref()).await?;
            let sdk = crate::aws::load(&region).await?;
            let conf = aws_sdk_cloudwatchlogs::config::Builder::from(&sdk)
                .retry_config(
                    aws_config::retry::RetryConfig::standard().with_max_attempts(ATTEMPTS_PER_CALL),
                )
                .build();
            let client = aws_sdk_cloudwatchlogs::Client::from_conf(conf);
            let answer = ask_service(&client, &args.filter_pattern, messages).await?;
            Ok::<_, anyhow::Error>((region, answer))
        })
        .context("cannot compare with CloudWatch Logs TestMetricFilter")?;

    let differences = compare(&local, &answer.verdict, &not_compared);
    let document = report(
        messages,
        &local,
        &answer,
        &region,
        &differences,
        &not_compared,
    );
    let mut stdout = io::stdout().lock();
    serde_json::to_writer(&mut stdout, &document).context("cannot write to stdout")?;
    writeln!(stdout).context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    let mut stderr = io::stderr().lock();
    for line in human_lines(
        messages,
        &local,
        &answer,
        &region,
        &differences,
        &not_compared,
    ) {
        // stderr is for the human; a closed stderr must not turn a verdict into an error.
        let _ = writeln!(stderr, "rolewatch: {line}");
    }
    Ok(if !differences.is_empty() {
        ExitCode::from(EXIT_FAILURE)
    } else if local.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_USAGE)
    })
}

/// `--region`, else the standard chain (`AWS_REGION`, the profile, instance metadata), read
/// on rolewatch's HTTPS client (instance metadata needs one).
async fn resolve_region(flag: Option<&str>) -> anyhow::Result<String> {
    if let Some(region) = flag {
        return Ok(region.to_owned());
    }
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(crate::aws::https_client())
        .load()
        .await;
    sdk.region()
        .map(ToString::to_string)
        .context("no AWS region: pass --region, or set AWS_REGION (or a region in the AWS profile)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize, message: &str, values: &[(&str, &str)]) -> Record {
        Record {
            event_number: n,
            event_message: message.to_owned(),
            extracted_values: values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn equal_verdicts_have_no_difference_and_value_order_does_not_matter() {
        let local = Verdict::Valid(vec![record(2, "b", &[("$z", "1"), ("$a", "2")])]);
        let service = Verdict::Valid(vec![record(2, "b", &[("$a", "2"), ("$z", "1")])]);
        assert!(compare(&local, &service, &[]).is_empty());
        let rejected = |r: &str| Verdict::Invalid(r.to_owned());
        assert!(compare(&rejected("x"), &rejected("y"), &[]).is_empty());
    }

    #[test]
    fn every_part_that_differs_is_named_in_input_order() {
        let local = Verdict::Valid(vec![
            record(1, "a", &[]),
            record(3, "c", &[("$x", "1")]),
            record(4, "d", &[]),
        ]);
        let service = Verdict::Valid(vec![
            record(2, "b", &[]),
            record(3, "c", &[("$x", "2"), ("$y", "3")]),
            record(4, "D", &[]),
        ]);
        assert_eq!(
            compare(&local, &service, &[]),
            vec![
                Difference::Match {
                    event_number: 1,
                    local: true
                },
                Difference::Match {
                    event_number: 2,
                    local: false
                },
                Difference::ExtractedValues {
                    event_number: 3,
                    local: vec![("$x".into(), "1".into())],
                    service: vec![("$x".into(), "2".into()), ("$y".into(), "3".into())],
                },
                Difference::EventMessage {
                    event_number: 4,
                    service: "D".into()
                },
            ]
        );
    }

    #[test]
    fn validity_differs_either_way_and_not_compared_messages_are_left_out() {
        let valid = Verdict::Valid(vec![record(1, "", &[])]);
        let invalid = Verdict::Invalid("no".into());
        assert_eq!(
            compare(&valid, &invalid, &[]),
            vec![Difference::Validity { local_valid: true }]
        );
        assert_eq!(
            compare(&invalid, &valid, &[]),
            vec![Difference::Validity { local_valid: false }]
        );
        assert!(compare(&valid, &Verdict::Valid(Vec::new()), &[1]).is_empty());
    }

    #[test]
    fn human_lines_say_which_message_which_part_and_both_answers() {
        let messages: Vec<String> = ["a", "", "c 404"].map(String::from).to_vec();
        let local = Verdict::Valid(vec![
            record(1, "a", &[]),
            record(3, "c 404", &[("$s", "404")]),
        ]);
        let service = ServiceAnswer {
            verdict: Verdict::Valid(vec![record(3, "c 404", &[("$s", "40")])]),
            calls: 1,
        };
        let differences = compare(&local, &service.verdict, &[2]);
        let lines = human_lines(&messages, &local, &service, "eu-west-1", &differences, &[2]);
        assert_eq!(
            lines,
            [
                "differs on message 1 (match): rolewatch matches it, TestMetricFilter does not: \"a\"",
                "differs on message 3 (extractedValues): $s: rolewatch \"404\", TestMetricFilter \"40\": \"c 404\"",
                "not compared: message(s) 2 (empty; TestMetricFilter takes no empty message)",
                "2 difference(s) from TestMetricFilter in eu-west-1 on 2 message(s) (1 call)",
            ]
        );
        let document = report(&messages, &local, &service, "eu-west-1", &differences, &[2]);
        assert_eq!(document["agree"], false);
        assert_eq!(document["differences"][0]["part"], "match");
        assert_eq!(document["differences"][1]["local"], json!({"$s": "404"}));
        assert_eq!(document["service"]["calls"], 1);
        assert_eq!(document["notCompared"], json!([2]));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(200);
        let shown = show(&long);
        assert!(shown.starts_with(&format!("\"{}", "é".repeat(120))));
        assert!(shown.ends_with("… (400 bytes)"), "{shown}");
    }
}
