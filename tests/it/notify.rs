//! The channels end to end: the real binary against real servers on loopback — aiosmtpd
//! (`tests/servers/smtp_server.py`) for email, moto for SNS with SQS queues subscribed, our
//! LookupEvents server as the source — and the outbox across failures and crashes.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::now_secs;
use crate::support::{
    aws_env, cloudtrail_record, drain_to_log, free_port, http, log_text, read_request, wait_until,
    LookupServer, Moto, SmtpOptions, SmtpServer, TestCa,
};
use crate::{assert_exit, stderr, stdout};

const FROM: &str = "rolewatch <rolewatch@example.com>";
const TO: &str = "oncall@example.com";
const HOSTILE_ROLE: &str = "<script>alert(1)</script>\r\nBcc: victim@evil.example";

// ---------------------------------------------------------------------------------------
// A saved message.
// ---------------------------------------------------------------------------------------

fn header<'a>(message: &'a Value, name: &str) -> Vec<&'a str> {
    message["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|h| h[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
        .map(|h| h[1].as_str().expect("header value"))
        .collect()
}

fn one_header<'a>(message: &'a Value, name: &str) -> &'a str {
    let values = header(message, name);
    assert_eq!(values.len(), 1, "{name}: {values:?} in {message:#}");
    values[0]
}

fn part<'a>(message: &'a Value, content_type: &str) -> &'a str {
    message["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .find(|p| p["content_type"] == content_type)
        .and_then(|p| p["body"].as_str())
        .unwrap_or_else(|| panic!("no {content_type} part in {message:#}"))
}

// ---------------------------------------------------------------------------------------
// Configuration and processes.
// ---------------------------------------------------------------------------------------

fn toml_path(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).expect("a path serialises")
}

/// A config: the state in `dir`, one CloudTrail source polled every second, the rules and
/// channels given as TOML.
fn write_config(dir: &Path, rules: &str, channels: &str) -> PathBuf {
    let path = dir.join("rolewatch.toml");
    let text = format!(
        "[state]\npath = {}\n\n[[source]]\ntype = \"cloudtrail\"\npoll_interval_secs = 1\n\n{rules}\n{channels}\n",
        toml_path(&dir.join("state.db"))
    );
    std::fs::write(&path, text).expect("write the config");
    path
}

fn smtp_channel(port: u16, extra: &str) -> String {
    format!(
        "[[channel]]\ntype = \"smtp\"\nname = \"mail\"\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"{FROM}\"\nto = [\"{TO}\"]\n{extra}\n"
    )
}

fn plaintext_smtp_channel(port: u16) -> String {
    smtp_channel(port, "tls = \"none\"\nallow_plaintext = true\n")
}

fn rolewatch_cmd(args: &[&str], lookup: Option<&LookupServer>, moto: Option<&Moto>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rolewatch"));
    cmd.args(args).stdin(Stdio::null());
    let lookup = lookup.map(LookupServer::endpoint);
    let moto = moto.map(Moto::endpoint);
    aws_env(&mut cmd, lookup.as_deref(), moto.as_deref());
    cmd.env("RUST_LOG", "info");
    cmd
}

#[track_caller]
fn output(mut cmd: Command) -> std::process::Output {
    cmd.output().expect("rolewatch runs")
}

/// `rolewatch run` in the background, its output collected.
struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rolewatch run starts");
        let stdout = drain_to_log(child.stdout.take().expect("stdout is piped"));
        let stderr = drain_to_log(child.stderr.take().expect("stderr is piped"));
        Running {
            child,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        log_text(&self.stdout)
    }

    fn stderr(&self) -> String {
        log_text(&self.stderr)
    }

    /// SIGKILL: no chance to mark anything.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "rolewatch run did not stop on SIGTERM; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A record the documented rule matches, a minute old.
fn matching_event(lookup: &LookupServer, event_id: &str) {
    lookup.add_events(&[cloudtrail_record(
        event_id,
        "AttachRolePolicy",
        now_secs() - 60,
    )]);
}

// ---------------------------------------------------------------------------------------
// SMTP.
// ---------------------------------------------------------------------------------------

#[test]
fn smtp_email_is_multipart_with_threading_id_escaped_html_and_no_injected_header() {
    let smtp = SmtpServer::start(SmtpOptions::default());
    let lookup = LookupServer::start();
    let mut record = cloudtrail_record("ev-hostile-1", "AttachRolePolicy", now_secs() - 60);
    record["requestParameters"]["roleName"] = json!(HOSTILE_ROLE);
    lookup.add_events(&[record]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[rule]]\nname = \"any-attach\"\npattern = \"{ $.eventName = AttachRolePolicy }\"\nseverity = \"critical\"\n",
        &format!(
            "{}subject_prefix = \"[rolewatch test]\"\n",
            plaintext_smtp_channel(smtp.port())
        ),
    );
    let out = output(rolewatch_cmd(
        &["once", "--config", config.to_str().unwrap()],
        Some(&lookup),
        None,
    ));
    assert_exit(&out, 0);
    let messages = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(messages.len(), 1);
    let m = &messages[0];

    // The envelope and the headers.
    assert_eq!(m["mail_from"], "rolewatch@example.com");
    assert_eq!(m["rcpt_tos"], json!([TO]), "no injected recipient");
    assert_eq!(one_header(m, "From"), FROM);
    assert_eq!(one_header(m, "To"), TO);
    let subject = one_header(m, "Subject");
    assert!(
        subject.starts_with("[rolewatch test] [CRITICAL] WIDENED AttachRolePolicy"),
        "{subject}"
    );
    assert!(
        subject.is_ascii() && !subject.contains(['\r', '\n']),
        "{subject:?}"
    );
    let id = one_header(m, "Message-ID");
    let key = id
        .strip_prefix("<rolewatch.")
        .and_then(|s| s.strip_suffix("@example.com>"))
        .unwrap_or_else(|| panic!("Message-ID {id}"));
    assert_eq!(key.len(), 32);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert!(header(m, "Bcc").is_empty(), "{m:#}");
    assert_eq!(m["content_type"], "multipart/alternative");

    // No header line of the raw message was made by the event.
    let raw = smtp.raw(1);
    let head = raw.split("\r\n\r\n").next().unwrap();
    for line in head.split("\r\n") {
        assert!(
            !line.to_ascii_lowercase().starts_with("bcc:"),
            "injected header line {line:?} in\n{head}"
        );
    }

    // Both parts: the text names the event, the HTML escapes the hostile name.
    let text = part(m, "text/plain");
    assert!(text.contains("AttachRolePolicy"), "{text}");
    assert!(text.contains("alert(1)"), "{text}");
    let html = part(m, "text/html");
    assert!(
        html.contains("&lt;script&gt;") || html.contains("&#60;script&#62;"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
}

#[test]
fn starttls_with_a_throwaway_ca_and_auth_from_an_env_var() {
    let ca = TestCa::new();
    let password = "s3cret-pw-do-not-log";
    let smtp = SmtpServer::start(SmtpOptions {
        starttls: Some(ca.server()),
        auth: Some(("alerts".into(), password.into())),
        ..SmtpOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "tls = \"starttls\"\nca_file = {}\nusername = \"alerts\"\npassword_env = \"ROLEWATCH_TEST_SMTP_PASSWORD\"\n",
        toml_path(&ca.ca())
    );
    let config = write_config(dir.path(), "", &smtp_channel(smtp.port(), &extra));
    let config = config.to_str().unwrap();

    let mut cmd = rolewatch_cmd(&["notify-test", "--config", config], None, None);
    cmd.env("ROLEWATCH_TEST_SMTP_PASSWORD", password)
        .env("RUST_LOG", "trace");
    let out = output(cmd);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).starts_with("ok mail (smtp) <rolewatch."),
        "{}",
        stdout(&out)
    );
    for text in [stdout(&out), stderr(&out)] {
        assert!(!text.contains(password), "the password leaked:\n{text}");
    }
    let m = &smtp.wait_for(1, Duration::from_secs(10))[0];
    assert_eq!(m["tls"], true);
    assert_eq!(m["authenticated_as"], "alerts");
    assert!(
        one_header(m, "Subject").starts_with("[TEST - not a real change]"),
        "{m:#}"
    );
    assert!(part(m, "text/plain").starts_with("TEST \u{2014} not a real change"));
    assert!(part(m, "text/html").contains("TEST \u{2014} not a real change"));

    // Without the CA the relay's certificate is not trusted: nothing is sent.
    let other_dir = tempfile::tempdir().unwrap();
    let untrusting = write_config(
        other_dir.path(),
        "",
        &smtp_channel(
            smtp.port(),
            "username = \"alerts\"\npassword_env = \"ROLEWATCH_TEST_SMTP_PASSWORD\"\n",
        ),
    );
    let mut cmd = rolewatch_cmd(
        &["notify-test", "--config", untrusting.to_str().unwrap()],
        None,
        None,
    );
    cmd.env("ROLEWATCH_TEST_SMTP_PASSWORD", password);
    let out = output(cmd);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.starts_with("FAILED mail (smtp): "), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");

    // A wrong password is refused for good (535), and not shown either.
    let mut cmd = rolewatch_cmd(&["notify-test", "--config", config], None, None);
    cmd.env("ROLEWATCH_TEST_SMTP_PASSWORD", "wrong-password-xyz");
    let out = output(cmd);
    assert_exit(&out, 1);
    assert!(stdout(&out).contains("(permanent)"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("wrong-password-xyz"));
    assert_eq!(smtp.messages().len(), 1);
}

#[test]
fn implicit_tls_and_a_password_file() {
    let ca = TestCa::new();
    let smtp = SmtpServer::start(SmtpOptions {
        implicit_tls: Some(ca.server()),
        auth: Some(("alerts".into(), "from-a-file".into())),
        ..SmtpOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, "from-a-file\n").unwrap();
    let extra = format!(
        "tls = \"implicit\"\nca_file = {}\nusername = \"alerts\"\npassword_file = {}\n",
        toml_path(&ca.ca()),
        toml_path(&pw)
    );
    let config = write_config(dir.path(), "", &smtp_channel(smtp.port(), &extra));
    let out = output(rolewatch_cmd(
        &["notify-test", "--config", config.to_str().unwrap()],
        None,
        None,
    ));
    assert_exit(&out, 0);
    let m = &smtp.wait_for(1, Duration::from_secs(10))[0];
    assert_eq!(m["tls"], true);
    assert_eq!(m["authenticated_as"], "alerts");
}

#[test]
fn starttls_is_required_by_default() {
    // A relay that offers no STARTTLS: rolewatch refuses to send in clear text.
    let smtp = SmtpServer::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &smtp_channel(smtp.port(), ""));
    let out = output(rolewatch_cmd(
        &["notify-test", "--config", config.to_str().unwrap()],
        None,
        None,
    ));
    assert_exit(&out, 1);
    assert!(
        stdout(&out).starts_with("FAILED mail (smtp): "),
        "{}",
        stdout(&out)
    );
    assert!(smtp.messages().is_empty());
}

#[test]
fn notify_test_exit_codes() {
    let dir = tempfile::tempdir().unwrap();

    // stdout only: the JSON line, marked, and the result.
    let config = write_config(dir.path(), "", "[[channel]]\ntype = \"stdout\"\n");
    let out = output(rolewatch_cmd(
        &["notify-test", "--config", config.to_str().unwrap()],
        None,
        None,
    ));
    assert_exit(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let alert: Value = serde_json::from_str(lines[0]).expect("the alert is one JSON line");
    assert_eq!(alert["rule"], "rolewatch-notify-test");
    assert!(alert["notice"]
        .as_str()
        .unwrap()
        .starts_with("TEST \u{2014} not a real change"));
    assert_eq!(lines[1], "ok stdout (stdout)");

    // One channel down: every channel is still tried, and the exit status says it.
    let closed = free_port();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[[channel]]\ntype = \"stdout\"\n\n{}",
            plaintext_smtp_channel(closed)
        ),
    );
    let out = output(rolewatch_cmd(
        &["notify-test", "--config", config.to_str().unwrap()],
        None,
        None,
    ));
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("\nok stdout (stdout)\n"), "{text}");
    assert!(text.contains("FAILED mail (smtp): "), "{text}");
    assert!(text.contains("(retryable)"), "{text}");

    // Plaintext to a remote relay is a configuration error: exit 78, nothing sent.
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[[channel]]\ntype = \"smtp\"\nhost = \"smtp.example.com\"\ntls = \"none\"\nallow_plaintext = true\nfrom = \"{FROM}\"\nto = [\"{TO}\"]\n"
        ),
    );
    let out = output(rolewatch_cmd(
        &["notify-test", "--config", config.to_str().unwrap()],
        None,
        None,
    ));
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("channel[0].tls"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn smtp_down_then_up_delivers_once_and_the_failing_channel_is_reported_through_stdout() {
    let lookup = LookupServer::start();
    matching_event(&lookup, "ev-down-1");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[[channel]]\ntype = \"stdout\"\n\n{}",
            plaintext_smtp_channel(port)
        ),
    );
    let mut run = Running::spawn(rolewatch_cmd(
        &["run", "--config", config.to_str().unwrap()],
        Some(&lookup),
        None,
    ));
    // Three failed attempts (backoff 1–2 s, 2–4 s) make the channel "failing", which stdout
    // reports once.
    assert!(
        wait_until(Duration::from_secs(30), || run
            .stdout()
            .contains("rolewatch-channel-failing")),
        "no failing notice; stdout:\n{}\nstderr:\n{}",
        run.stdout(),
        run.stderr()
    );
    assert!(run.stderr().contains("channel_failing"), "{}", run.stderr());
    let smtp = SmtpServer::start(SmtpOptions {
        port: Some(port),
        ..SmtpOptions::default()
    });
    let messages = smtp.wait_for(1, Duration::from_secs(30));
    assert!(
        wait_until(Duration::from_secs(10), || run
            .stdout()
            .contains("rolewatch-channel-recovered")),
        "no recovery notice; stdout:\n{}",
        run.stdout()
    );
    // A few more polls and passes: still exactly one email, and one of each notice.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(run.terminate(), Some(0), "{}", run.stderr());
    assert_eq!(smtp.messages().len(), 1, "{:#?}", smtp.messages());
    assert!(one_header(&messages[0], "Subject").contains("AttachRolePolicy"));
    let out = run.stdout();
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("stdout holds JSON lines"))
        .collect();
    let count = |rule: &str| lines.iter().filter(|l| l["rule"] == rule).count();
    assert_eq!(count("documented"), 1, "{out}");
    assert_eq!(count("rolewatch-channel-failing"), 1, "{out}");
    assert_eq!(count("rolewatch-channel-recovered"), 1, "{out}");
}

#[test]
fn a_crash_between_accept_and_mark_resends_once_with_the_same_message_id() {
    let lookup = LookupServer::start();
    matching_event(&lookup, "ev-crash-1");
    // The server saves the first message, then holds its 250 for 30 s: rolewatch is killed
    // in that window, after the relay has the mail and before the outbox marked it.
    let smtp = SmtpServer::start(SmtpOptions {
        delay_first_ms: 30_000,
        ..SmtpOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &plaintext_smtp_channel(smtp.port()));
    let config = config.to_str().unwrap();
    let mut first = Running::spawn(rolewatch_cmd(
        &["run", "--config", config],
        Some(&lookup),
        None,
    ));
    smtp.wait_for(1, Duration::from_secs(30));
    first.kill();

    // The restart sends the pending row again, once.
    let mut second = Running::spawn(rolewatch_cmd(
        &["run", "--config", config],
        Some(&lookup),
        None,
    ));
    let messages = smtp.wait_for(2, Duration::from_secs(30));
    assert!(
        wait_until(Duration::from_secs(10), || second
            .stderr()
            .contains("Delivered alerts left pending by an earlier run")),
        "{}",
        second.stderr()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(second.terminate(), Some(0));
    let messages_now = smtp.messages();
    assert_eq!(
        messages_now.len(),
        2,
        "at most one resend: {messages_now:#?}"
    );
    assert_eq!(
        one_header(&messages[0], "Message-ID"),
        one_header(&messages[1], "Message-ID"),
        "the resend carries the same Message-ID"
    );
    assert_eq!(
        part(&messages[0], "text/plain").contains("ev-crash-1"),
        part(&messages[1], "text/plain").contains("ev-crash-1")
    );

    // A third start sends nothing: the row is delivered.
    let out = output(rolewatch_cmd(
        &["once", "--config", config],
        Some(&lookup),
        None,
    ));
    assert_exit(&out, 0);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(smtp.messages().len(), 2);
}

// ---------------------------------------------------------------------------------------
// SNS (moto) with SQS queues subscribed.
// ---------------------------------------------------------------------------------------

fn form_encode(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| {
            let enc = |s: &str| {
                s.bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect::<String>()
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// An SNS query-protocol call to moto; the XML reply.
#[track_caller]
fn sns_call(moto: &Moto, params: &[(&str, &str)]) -> String {
    let mut all = vec![("Version", "2010-03-31")];
    all.extend_from_slice(params);
    let reply = http(
        moto.port(),
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=0"),
        ],
        form_encode(&all).as_bytes(),
    )
    .expect("moto answers");
    let body = String::from_utf8_lossy(&reply.body).into_owned();
    assert_eq!(reply.status, 200, "{params:?}: {body}");
    body
}

fn xml_tag(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..]
        .find(&format!("</{tag}>"))
        .expect("closing tag")
        + start;
    xml[start..end].to_owned()
}

/// An SQS JSON-protocol call to moto.
#[track_caller]
fn sqs_call(moto: &Moto, op: &str, body: Value) -> Value {
    let target = format!("AmazonSQS.{op}");
    let reply = http(
        moto.port(),
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.0"),
            ("X-Amz-Target", &target),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0"),
        ],
        &serde_json::to_vec(&body).unwrap(),
    )
    .expect("moto answers");
    assert_eq!(
        reply.status,
        200,
        "{op}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

/// A topic with two queues subscribed: `raw` with RawMessageDelivery, `wrapped` without.
pub(crate) struct Topic {
    pub(crate) arn: String,
    pub(crate) raw: String,
    pub(crate) wrapped: String,
}

pub(crate) fn topic_with_queues(moto: &Moto, name: &str) -> Topic {
    let arn = xml_tag(
        &sns_call(moto, &[("Action", "CreateTopic"), ("Name", name)]),
        "TopicArn",
    );
    let mut urls = Vec::new();
    for (suffix, raw) in [("raw", "true"), ("wrapped", "false")] {
        let url = sqs_call(
            moto,
            "CreateQueue",
            json!({"QueueName": format!("{name}-{suffix}")}),
        )["QueueUrl"]
            .as_str()
            .expect("QueueUrl")
            .to_owned();
        let queue_arn = sqs_call(
            moto,
            "GetQueueAttributes",
            json!({"QueueUrl": url, "AttributeNames": ["QueueArn"]}),
        )["Attributes"]["QueueArn"]
            .as_str()
            .expect("QueueArn")
            .to_owned();
        sns_call(
            moto,
            &[
                ("Action", "Subscribe"),
                ("TopicArn", &arn),
                ("Protocol", "sqs"),
                ("Endpoint", &queue_arn),
                ("Attributes.entry.1.key", "RawMessageDelivery"),
                ("Attributes.entry.1.value", raw),
                ("ReturnSubscriptionArn", "true"),
            ],
        );
        urls.push(url);
    }
    let wrapped = urls.pop().expect("two queues");
    let raw = urls.pop().expect("two queues");
    Topic { arn, raw, wrapped }
}

/// Everything in a queue now (deleting what it reads).
pub(crate) fn drain_queue(moto: &Moto, url: &str) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let reply = sqs_call(
            moto,
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 10, "MessageAttributeNames": ["All"], "WaitTimeSeconds": 0}),
        );
        let Some(batch) = reply["Messages"]
            .as_array()
            .filter(|m| !m.is_empty())
            .cloned()
        else {
            return all;
        };
        for m in &batch {
            sqs_call(
                moto,
                "DeleteMessage",
                json!({"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]}),
            );
        }
        all.extend(batch);
    }
}

pub(crate) fn sns_channel(arn: &str) -> String {
    format!("[[channel]]\ntype = \"sns\"\nname = \"sns\"\ntopic_arn = \"{arn}\"\n")
}

#[track_caller]
fn assert_alert_json(alert: &Value, event_id: &str) -> String {
    assert_eq!(alert["schema"], "rolewatch.alert.v1");
    assert_eq!(alert["rule"], "documented");
    assert_eq!(alert["event_id"], event_id);
    assert_eq!(alert["event_name"], "AttachRolePolicy");
    assert_eq!(alert["action"]["role_name"], "astronomer-remote-management");
    assert_eq!(alert["record"]["eventID"], event_id);
    let key = alert["dedup_key"].as_str().expect("dedup_key").to_owned();
    assert_eq!(key.len(), 32);
    key
}

#[test]
fn sns_publishes_to_sqs_raw_and_enveloped_with_filterable_attributes() {
    let moto = Moto::start();
    let lookup = LookupServer::start();
    let topic = topic_with_queues(&moto, "rolewatch-alerts");
    matching_event(&lookup, "ev-sns-1");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &sns_channel(&topic.arn));
    let out = output(rolewatch_cmd(
        &["once", "--config", config.to_str().unwrap()],
        Some(&lookup),
        Some(&moto),
    ));
    assert_exit(&out, 0);

    // Raw delivery: the body is the alert's JSON, the attributes are SQS attributes.
    let raw = drain_queue(&moto, &topic.raw);
    assert_eq!(raw.len(), 1, "{raw:#?}");
    let alert: Value = serde_json::from_str(raw[0]["Body"].as_str().unwrap()).unwrap();
    let key = assert_alert_json(&alert, "ev-sns-1");
    let attrs = &raw[0]["MessageAttributes"];
    for (name, value) in [
        ("severity", "high"),
        ("rule", "documented"),
        ("event_name", "AttachRolePolicy"),
        ("account_id", "111122223333"),
        ("dedup_key", key.as_str()),
    ] {
        assert_eq!(attrs[name]["DataType"], "String", "{name}: {attrs:#}");
        assert_eq!(attrs[name]["StringValue"], value, "{name}: {attrs:#}");
    }

    // Enveloped: SNS's JSON with Subject, Message and typed attributes.
    let wrapped = drain_queue(&moto, &topic.wrapped);
    assert_eq!(wrapped.len(), 1, "{wrapped:#?}");
    let envelope: Value = serde_json::from_str(wrapped[0]["Body"].as_str().unwrap()).unwrap();
    assert_eq!(envelope["Type"], "Notification");
    assert_eq!(envelope["TopicArn"], topic.arn.as_str());
    let subject = envelope["Subject"].as_str().expect("Subject");
    assert!(
        subject.starts_with("[HIGH] WIDENED AttachRolePolicy"),
        "{subject}"
    );
    assert!(subject.len() <= 100 && subject.is_ascii());
    let alert: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(assert_alert_json(&alert, "ev-sns-1"), key);
    assert_eq!(envelope["MessageAttributes"]["severity"]["Type"], "String");
    assert_eq!(envelope["MessageAttributes"]["severity"]["Value"], "high");
    assert_eq!(
        envelope["MessageAttributes"]["dedup_key"]["Value"],
        key.as_str()
    );

    // notify-test reaches the same topic, marked.
    let out = output(rolewatch_cmd(
        &["notify-test", "--config", config.to_str().unwrap()],
        None,
        Some(&moto),
    ));
    assert_exit(&out, 0);
    assert!(
        stdout(&out).starts_with("ok sns (sns) "),
        "{}",
        stdout(&out)
    );
    let raw = drain_queue(&moto, &topic.raw);
    assert_eq!(raw.len(), 1);
    assert_eq!(
        raw[0]["MessageAttributes"]["rule"]["StringValue"],
        "rolewatch-notify-test"
    );
    let alert: Value = serde_json::from_str(raw[0]["Body"].as_str().unwrap()).unwrap();
    assert!(alert["notice"].as_str().unwrap().starts_with("TEST"));
}

/// Issue 16: `format = "chatbot"` publishes the custom-notification JSON of Amazon Q
/// Developer in chat applications, with the same filterable attributes.
#[test]
fn sns_chatbot_format_publishes_the_custom_notification_with_the_attributes() {
    let moto = Moto::start();
    let lookup = LookupServer::start();
    let topic = topic_with_queues(&moto, "rolewatch-chat");
    let mut record = cloudtrail_record("ev-chatbot-1", "AttachRolePolicy", now_secs() - 60);
    record["requestParameters"]["roleName"] = json!("<!channel> *bold* `x`");
    lookup.add_events(&[record]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[rule]]\nname = \"any-attach\"\npattern = \"{ $.eventName = AttachRolePolicy }\"\n",
        &format!("{}format = \"chatbot\"\n", sns_channel(&topic.arn)),
    );
    let out = output(rolewatch_cmd(
        &["once", "--config", config.to_str().unwrap()],
        Some(&lookup),
        Some(&moto),
    ));
    assert_exit(&out, 0);
    let raw = drain_queue(&moto, &topic.raw);
    assert_eq!(raw.len(), 1, "{raw:#?}");
    let n: Value = serde_json::from_str(raw[0]["Body"].as_str().unwrap()).unwrap();
    assert_eq!(n["version"], "1.0");
    assert_eq!(n["source"], "custom");
    assert_eq!(n["content"]["textType"], "client-markdown");
    let title = n["content"]["title"].as_str().unwrap();
    assert!(title.contains("AttachRolePolicy"), "{title}");
    assert!(
        title.contains("&lt;!channel&gt; \\*bold\\* \\`x\\`"),
        "{title}"
    );
    let key = raw[0]["MessageAttributes"]["dedup_key"]["StringValue"]
        .as_str()
        .unwrap();
    assert_eq!(n["id"], key);
    assert_eq!(n["metadata"]["threadId"], key);
    assert_eq!(
        raw[0]["MessageAttributes"]["event_name"]["StringValue"],
        "AttachRolePolicy"
    );
    assert!(n["content"]["nextSteps"][0]
        .as_str()
        .unwrap()
        .contains("https://us-east-1.console.aws.amazon.com/cloudtrailv2/"));
}

/// An HTTP proxy in front of moto that answers the first `fail` Publish requests with HTTP
/// 500 `InternalFailure`, and forwards everything else.
struct FaultProxy {
    port: u16,
    failed: Arc<AtomicUsize>,
    published: Arc<AtomicUsize>,
}

impl FaultProxy {
    fn start(upstream: u16, fail: usize) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let left = Arc::new(AtomicUsize::new(fail));
        let failed = Arc::new(AtomicUsize::new(0));
        let published = Arc::new(AtomicUsize::new(0));
        let (l, f, p) = (left.clone(), failed.clone(), published.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (l, f, p) = (l.clone(), f.clone(), p.clone());
                std::thread::spawn(move || {
                    let _ = proxy_connection(stream, upstream, &l, &f, &p);
                });
            }
        });
        FaultProxy {
            port,
            failed,
            published,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn proxy_connection(
    mut stream: TcpStream,
    upstream: u16,
    left: &AtomicUsize,
    failed: &AtomicUsize,
    published: &AtomicUsize,
) -> std::io::Result<()> {
    // One request per connection: the reply says `Connection: close`.
    let Some(request) = read_request(&stream)? else {
        return Ok(());
    };
    let is_publish = String::from_utf8_lossy(&request.body).contains("Action=Publish");
    let take_fault = is_publish
        && left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let (status, content_type, reply) = if take_fault {
        failed.fetch_add(1, Ordering::SeqCst);
        (
            500,
            "text/xml".to_owned(),
            b"<ErrorResponse><Error><Type>Receiver</Type><Code>InternalFailure</Code><Message>injected by the test</Message></Error><RequestId>fault</RequestId></ErrorResponse>".to_vec(),
        )
    } else {
        let r = request.forward(upstream)?;
        if is_publish && r.status == 200 {
            published.fetch_add(1, Ordering::SeqCst);
        }
        let ct = r.header("Content-Type").unwrap_or("text/xml").to_owned();
        (r.status, ct, r.body)
    };
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.len()
    )?;
    stream.write_all(&reply)?;
    stream.flush()?;
    Ok(())
}

#[test]
fn sns_5xx_then_recovery_delivers_exactly_once() {
    let moto = Moto::start();
    let lookup = LookupServer::start();
    let topic = topic_with_queues(&moto, "rolewatch-faults");
    // One Publish is tried three times at once (two quick retries): all three fail.
    let proxy = FaultProxy::start(moto.port(), 3);
    matching_event(&lookup, "ev-sns-5xx");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &sns_channel(&topic.arn));
    let config = config.to_str().unwrap();
    let once = || {
        let mut cmd = rolewatch_cmd(&["once", "--config", config], Some(&lookup), Some(&moto));
        cmd.env("AWS_ENDPOINT_URL_SNS", proxy.endpoint());
        output(cmd)
    };

    let out = once();
    assert_exit(&out, 1);
    assert_eq!(proxy.failed.load(Ordering::SeqCst), 3);
    assert!(
        stderr(&out).contains("alert_delivery_failed"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("InternalFailure"), "{}", stderr(&out));
    assert!(drain_queue(&moto, &topic.raw).is_empty());

    // The retry is due 1–2 s later; a run before that sends nothing and fails nothing.
    std::thread::sleep(Duration::from_millis(2100));
    let out = once();
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("Delivered alerts left pending by an earlier run"),
        "{}",
        stderr(&out)
    );
    assert_eq!(proxy.published.load(Ordering::SeqCst), 1);
    let raw = drain_queue(&moto, &topic.raw);
    assert_eq!(raw.len(), 1, "exactly one delivery: {raw:#?}");
    assert_eq!(drain_queue(&moto, &topic.wrapped).len(), 1);

    // Delivered is final.
    let out = once();
    assert_exit(&out, 0);
    assert_eq!(proxy.published.load(Ordering::SeqCst), 1);
    assert!(drain_queue(&moto, &topic.raw).is_empty());
}

// ---------------------------------------------------------------------------------------
// Recovery in seconds (issue 18): a channel that is back gets its alerts within the probe
// interval, not after the backoff of its oldest row.
// ---------------------------------------------------------------------------------------

/// The probe interval of these tests, and the down time: long enough for the rows' delivery
/// backoff (2 s doubling to 5 min, full jitter) to have grown well past the probe interval.
const PROBE_SECS: u64 = 5;
const DOWN_FOR: Duration = Duration::from_secs(30);

/// A proxy in front of moto that drops every connection unanswered while it is down (what a
/// dead endpoint looks like to the SDK); once up it forwards, and records when the first
/// Publish got through and how many GetTopicAttributes (the probe) it saw.
struct SwitchProxy {
    port: u16,
    down: Arc<std::sync::atomic::AtomicBool>,
    probes: Arc<AtomicUsize>,
    published: Arc<Mutex<Vec<Instant>>>,
}

impl SwitchProxy {
    fn start(upstream: u16) -> SwitchProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let probes = Arc::new(AtomicUsize::new(0));
        let published = Arc::new(Mutex::new(Vec::new()));
        let (d, pr, pu) = (down.clone(), probes.clone(), published.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if d.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                let (pr, pu) = (pr.clone(), pu.clone());
                std::thread::spawn(move || {
                    let _ = switch_connection(stream, upstream, &pr, &pu);
                });
            }
        });
        SwitchProxy {
            port,
            down,
            probes,
            published,
        }
    }

    fn up(&self) -> Instant {
        self.down.store(false, Ordering::SeqCst);
        Instant::now()
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn switch_connection(
    mut stream: TcpStream,
    upstream: u16,
    probes: &AtomicUsize,
    published: &Mutex<Vec<Instant>>,
) -> std::io::Result<()> {
    let Some(request) = read_request(&stream)? else {
        return Ok(());
    };
    let body = String::from_utf8_lossy(&request.body).into_owned();
    if body.contains("Action=GetTopicAttributes") {
        probes.fetch_add(1, Ordering::SeqCst);
    }
    let r = request.forward(upstream)?;
    if body.contains("Action=Publish") && r.status == 200 {
        published.lock().unwrap().push(Instant::now());
    }
    let ct = r.header("Content-Type").unwrap_or("text/xml").to_owned();
    write!(
        stream,
        "HTTP/1.1 {} X\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        r.body.len()
    )?;
    stream.write_all(&r.body)?;
    stream.flush()
}

/// The `[daemon]` table of these tests.
fn probe_settings() -> String {
    format!("[daemon]\nchannel_probe_secs = {PROBE_SECS}\n")
}

#[test]
fn sns_that_is_back_gets_every_pending_alert_within_the_probe_interval() {
    let moto = Moto::start();
    let lookup = LookupServer::start();
    let topic = topic_with_queues(&moto, "rolewatch-probe");
    let proxy = SwitchProxy::start(moto.port());
    matching_event(&lookup, "ev-probe-sns-1");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &probe_settings(), &sns_channel(&topic.arn));
    let mut cmd = rolewatch_cmd(
        &["run", "--config", config.to_str().unwrap()],
        Some(&lookup),
        Some(&moto),
    );
    cmd.env("AWS_ENDPOINT_URL_SNS", proxy.endpoint());
    let mut run = Running::spawn(cmd);
    assert!(
        wait_until(Duration::from_secs(20), || run
            .stderr()
            .contains("alert_delivery_failed")),
        "{}",
        run.stderr()
    );
    std::thread::sleep(DOWN_FOR / 2);
    // A new alert while the channel is down.
    matching_event(&lookup, "ev-probe-sns-2");
    std::thread::sleep(DOWN_FOR / 2);
    assert!(
        run.stderr().contains("channel_probe_failed"),
        "{}",
        run.stderr()
    );
    let up = proxy.up();
    assert!(
        wait_until(Duration::from_secs(PROBE_SECS + 10), || proxy
            .published
            .lock()
            .unwrap()
            .len()
            >= 2),
        "not delivered after the endpoint came back; stderr:\n{}",
        run.stderr()
    );
    let first = proxy.published.lock().unwrap()[0] - up;
    eprintln!("sns: first pending alert delivered {first:?} after the endpoint came back");
    assert!(
        first <= Duration::from_secs(PROBE_SECS + 2),
        "{first:?} after the endpoint came back"
    );
    assert!(proxy.probes.load(Ordering::SeqCst) >= 1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(run.terminate(), Some(0), "{}", run.stderr());
    let raw = drain_queue(&moto, &topic.raw);
    let mut ids: Vec<String> = raw
        .iter()
        .map(|m| {
            let alert: Value = serde_json::from_str(m["Body"].as_str().unwrap()).unwrap();
            alert["event_id"].as_str().unwrap_or_default().to_owned()
        })
        .filter(|id| id.starts_with("ev-probe"))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["ev-probe-sns-1", "ev-probe-sns-2"],
        "each exactly once"
    );
    assert!(
        run.stderr().contains("channel_probe_succeeded"),
        "{}",
        run.stderr()
    );
}

#[test]
fn an_smtp_relay_that_is_back_gets_every_pending_alert_within_the_probe_interval() {
    let lookup = LookupServer::start();
    matching_event(&lookup, "ev-probe-smtp-1");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &probe_settings(), &plaintext_smtp_channel(port));
    let mut run = Running::spawn(rolewatch_cmd(
        &["run", "--config", config.to_str().unwrap()],
        Some(&lookup),
        None,
    ));
    assert!(
        wait_until(Duration::from_secs(20), || run
            .stderr()
            .contains("alert_delivery_failed")),
        "{}",
        run.stderr()
    );
    std::thread::sleep(DOWN_FOR / 2);
    matching_event(&lookup, "ev-probe-smtp-2");
    std::thread::sleep(DOWN_FOR / 2);
    assert!(
        run.stderr().contains("channel_probe_failed"),
        "{}",
        run.stderr()
    );
    // The relay comes back: it listens once `start` returns.
    let smtp = SmtpServer::start(SmtpOptions {
        port: Some(port),
        ..SmtpOptions::default()
    });
    let up = Instant::now();
    smtp.wait_for(1, Duration::from_secs(PROBE_SECS + 10));
    let first = up.elapsed();
    eprintln!("smtp: first pending alert delivered {first:?} after the relay came back");
    assert!(
        first <= Duration::from_secs(PROBE_SECS + 2),
        "{first:?} after the relay came back"
    );
    let messages = smtp.wait_for(2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(run.terminate(), Some(0), "{}", run.stderr());
    assert_eq!(smtp.messages().len(), 2, "each exactly once");
    // In detection order.
    assert!(part(&messages[0], "text/plain").contains("ev-probe-smtp-1"));
    assert!(part(&messages[1], "text/plain").contains("ev-probe-smtp-2"));
    assert!(
        run.stderr().contains("channel_probe_succeeded"),
        "{}",
        run.stderr()
    );
}

// ---------------------------------------------------------------------------------------
// Hostile fields end to end (issue 11).
// ---------------------------------------------------------------------------------------

/// What event fields can hold to disguise an alert or hide a change: RFC 2047 encoded words
/// (decoded by mail clients into a bidi override, a fake `Bcc:` line, markup), CR/LF, bidi and
/// invisible characters, a valid U+FFFD, and the line separators JSON leaves unescaped.
const HOSTILE_FIELDS: &[&str] = &[
    "=?utf-8?q?=E2=80=AE?=",
    "=?utf-8?q?x=0D=0ABcc:_victim@evil.example?=",
    "=?UTF-8?B?PGI+Ym9sZDwvYj4=?=",
    "=?iso-8859-1*en?Q?=3Cscript=3E?= =?utf-8?q?=E2=80=AE?=",
    "=\u{200B}?utf-8?q?=E2=80=AE?=",
    "x\r\nBcc: victim@evil.example",
    "role\u{202E}eman",
    "aws-cli/2.22.4 \u{FFFD}",
    "line\u{2028}separator\u{2029}paragraph\u{85}next",
    "<script>alert(1)</script>",
    "日本語=?",
];

/// A failed IAM call with `value` in every field that reaches a subject or a header.
fn hostile_event(i: usize, value: &str, time: i64) -> Value {
    // One eventID carries line separators too (it is logged and sent as an attribute).
    let id = if i == 8 {
        format!("ev-hostile-{i}-\u{2028}\u{85}")
    } else {
        format!("ev-hostile-{i}")
    };
    let mut r = cloudtrail_record(&id, value, time);
    r["requestParameters"]["roleName"] = json!(value);
    r["userIdentity"]["userName"] = json!(value);
    r["userAgent"] = json!(value);
    r["errorCode"] = json!(value);
    r["errorMessage"] = json!(value);
    r
}

/// Every hostile record is delivered by SMTP (parsed by Python's `email` with
/// `policy.default`), SNS (moto, to SQS queues raw and enveloped) and stdout; none is
/// skipped; no decoded subject or header differs from what rolewatch meant to write (the
/// alert's own `subject`), and no JSON line is cut by a line separator.
#[test]
fn hostile_fields_reach_every_channel_and_no_client_decodes_a_header() {
    let smtp = SmtpServer::start(SmtpOptions::default());
    let moto = Moto::start();
    let lookup = LookupServer::start();
    let topic = topic_with_queues(&moto, "rolewatch-hostile");
    let now = now_secs();
    let records: Vec<Value> = HOSTILE_FIELDS
        .iter()
        .enumerate()
        .map(|(i, v)| hostile_event(i, v, now - 300 + i as i64))
        .collect();
    lookup.add_events(&records);
    let n = records.len();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[rule]]\nname = \"any-iam\"\npattern = \"{ $.eventSource = iam.amazonaws.com }\"\nseverity = \"critical\"\n",
        &format!(
            "{}{}[[channel]]\ntype = \"stdout\"\nname = \"out\"\n",
            plaintext_smtp_channel(smtp.port()),
            sns_channel(&topic.arn)
        ),
    );
    let out = output(rolewatch_cmd(
        &["once", "--config", config.to_str().unwrap()],
        Some(&lookup),
        Some(&moto),
    ));
    assert_exit(&out, 0);

    // The logs (JSON lines, stderr is not a terminal): every line one JSON object.
    let err = stderr(&out);
    assert!(!err.contains(['\u{85}', '\u{2028}', '\u{2029}']), "{err:?}");
    for line in err.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    }
    assert!(err.contains("\"malformed\":0"), "none skipped: {err}");
    assert!(!err.contains("Skipped a malformed event"), "{err}");

    // stdout: one JSON line per alert, whatever reader splits the lines.
    let text = stdout(&out);
    assert!(
        !text.contains(['\u{85}', '\u{2028}', '\u{2029}']),
        "{text:?}"
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert_eq!(lines.len(), n, "{text}");

    // What rolewatch meant to write, per alert: its subject, from the JSON.
    let mut meant: std::collections::BTreeMap<String, (String, String)> = Default::default();
    for alert in &lines {
        let key = alert["dedup_key"].as_str().expect("dedup_key").to_owned();
        let subject = alert["subject"].as_str().expect("subject").to_owned();
        let event_id = alert["record"]["eventID"]
            .as_str()
            .expect("eventID")
            .to_owned();
        assert!(subject.starts_with("[CRITICAL] "), "{subject}");
        assert!(subject.ends_with(" (FAILED)"), "{subject}");
        assert!(
            subject.bytes().all(|b| (b' '..=b'~').contains(&b)) && !subject.contains("=?"),
            "{subject:?}"
        );
        meant.insert(key, (subject, event_id));
    }
    let ids: std::collections::BTreeSet<&str> = meant.values().map(|(_, id)| id.as_str()).collect();
    let sent: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["eventID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, sent, "every hostile record is alerted, once");
    // The record itself is the evidence, as sent.
    let with_separators = lines
        .iter()
        .find(|a| a["record"]["eventID"] == records[8]["eventID"])
        .expect("the alert with line separators");
    assert_eq!(with_separators["record"]["userAgent"], HOSTILE_FIELDS[8]);

    // SMTP: what a mail client shows is what rolewatch wrote; nothing was encoded at all.
    let messages = smtp.wait_for(n, Duration::from_secs(20));
    assert_eq!(messages.len(), n);
    for m in &messages {
        assert_eq!(m["rcpt_tos"], json!([TO]), "no injected recipient");
        let id = one_header(m, "Message-ID");
        let key = id
            .strip_prefix("<rolewatch.")
            .and_then(|s| s.strip_suffix("@example.com>"))
            .unwrap_or_else(|| panic!("Message-ID {id}"));
        let (subject, _) = meant.get(key).unwrap_or_else(|| panic!("no alert {key}"));
        assert_eq!(one_header(m, "Subject"), subject, "decoded Subject");
        let decoded = m["headers"].as_array().unwrap();
        let raw = m["raw_headers"].as_array().unwrap();
        assert_eq!(
            decoded, raw,
            "a header was decoded differently from what was sent"
        );
        let mut names: Vec<&str> = raw.iter().map(|h| h[0].as_str().unwrap()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "Content-Type",
                "Date",
                "From",
                "MIME-Version",
                "Message-ID",
                "Subject",
                "To"
            ],
            "{m:#}"
        );
        for h in raw {
            let value = h[1].as_str().unwrap();
            assert!(!value.contains("=?"), "an encoded word in {h}");
            assert!(value.bytes().all(|b| (b' '..=b'~').contains(&b)), "{h}");
        }
    }

    // SNS, raw delivery: the alert's JSON and its attributes.
    let raw = drain_queue(&moto, &topic.raw);
    assert_eq!(raw.len(), n, "{raw:#?}");
    for m in &raw {
        let alert: Value = serde_json::from_str(m["Body"].as_str().unwrap()).unwrap();
        let key = alert["dedup_key"].as_str().unwrap();
        let (subject, _) = &meant[key];
        assert_eq!(alert["subject"], subject.as_str());
        let attrs = m["MessageAttributes"].as_object().expect("attributes");
        assert_eq!(attrs.len(), 5, "{attrs:#?}");
        for (name, a) in attrs {
            let value = a["StringValue"].as_str().unwrap();
            assert!(!value.contains("=?"), "{name}: {value:?}");
            assert!(
                value.bytes().all(|b| (b' '..=b'~').contains(&b)),
                "{name}: {value:?}"
            );
        }
        assert_eq!(attrs["rule"]["StringValue"], "any-iam");
        assert_eq!(attrs["dedup_key"]["StringValue"], key);
    }

    // SNS, enveloped: the Subject that SNS puts on the emails it sends.
    let wrapped = drain_queue(&moto, &topic.wrapped);
    assert_eq!(wrapped.len(), n, "{wrapped:#?}");
    for m in &wrapped {
        let envelope: Value = serde_json::from_str(m["Body"].as_str().unwrap()).unwrap();
        let key = envelope["MessageAttributes"]["dedup_key"]["Value"]
            .as_str()
            .unwrap();
        let (subject, _) = &meant[key];
        assert_eq!(envelope["Subject"], subject.as_str());
        for (name, a) in envelope["MessageAttributes"].as_object().unwrap() {
            let value = a["Value"].as_str().unwrap();
            assert!(!value.contains("=?"), "{name}: {value:?}");
        }
    }
}
