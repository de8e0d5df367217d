//! `rolewatch doctor`: the real binary against moto (STS, IAM, SNS, CloudWatch Logs), our
//! LookupEvents server (LookupEvents, GetTrailStatus) and aiosmtpd with STARTTLS and AUTH.
//!
//! moto lists every SNS subscription as confirmed (an email subscription included), where AWS
//! lists one not yet confirmed with the `SubscriptionArn` `PendingConfirmation`; a small proxy
//! in front of moto's SNS ([`PendingProxy`]) rewrites the email subscription's ARN into that
//! in `ListSubscriptionsByTopic` replies, so doctor sees what AWS would show.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::now_secs;
use crate::support::{
    attach_new_policy, aws_env, cloudtrail_record, drain_to_log, free_port, http, log_text,
    read_request, sdk_config, LookupServer, Moto, SmtpOptions, SmtpServer, TestCa,
};
use crate::{assert_exit, stderr, stdout};

const ROLE: &str = "astronomer-remote-management";
const TRAIL: &str = "management-trail";
const LOG_GROUP: &str = "aws-cloudtrail-logs-doctor";
const SMTP_PASSWORD: &str = "s3cret-doctor-pw";
const EMAIL: &str = "oncall@example.com";
/// A run of doctor must end well within this, whatever is down.
const DOCTOR_DEADLINE: Duration = Duration::from_secs(90);

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

fn toml_path(p: &Path) -> String {
    toml_str(&p.display().to_string())
}

// ---------------------------------------------------------------------------------------
// Running doctor.
// ---------------------------------------------------------------------------------------

/// `rolewatch doctor --config <config>` with test credentials, CloudTrail on `lookup` and the
/// moto services on `moto`.
fn doctor_cmd(config: &Path, lookup: Option<&LookupServer>, moto: Option<&Moto>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rolewatch"));
    cmd.arg("doctor")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null());
    let lookup = lookup.map(LookupServer::endpoint);
    let moto = moto.map(Moto::endpoint);
    aws_env(&mut cmd, lookup.as_deref(), moto.as_deref());
    cmd.env("ROLEWATCH_TEST_SMTP_PASSWORD", SMTP_PASSWORD);
    cmd
}

/// Runs the command to its end, failing the test if it takes longer than
/// [`DOCTOR_DEADLINE`]; returns the output and how long it took.
#[track_caller]
fn run(mut cmd: Command) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rolewatch starts");
    let out = drain_to_log(child.stdout.take().expect("stdout is piped"));
    let err = drain_to_log(child.stderr.take().expect("stderr is piped"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait works") {
            break status;
        }
        if started.elapsed() > DOCTOR_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "doctor still running after {DOCTOR_DEADLINE:?}\nstdout:\n{}\nstderr:\n{}",
                log_text(&out),
                log_text(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The readers finish once the pipes close.
    std::thread::sleep(Duration::from_millis(100));
    let output = Output {
        status,
        stdout: log_text(&out).into_bytes(),
        stderr: log_text(&err).into_bytes(),
    };
    (output, started.elapsed())
}

/// The finding whose headline starts with `prefix` (`ok    source lookup`), with its
/// indented lines; panics with the whole output when there is none.
#[track_caller]
fn finding<'a>(text: &'a str, prefix: &str) -> &'a str {
    let mut start = None;
    let mut end = text.len();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        match start {
            None if line.starts_with(prefix) => start = Some(offset),
            Some(_) if !line.starts_with("        ") => {
                end = offset;
                break;
            }
            _ => {}
        }
        offset += line.len();
    }
    let start = start.unwrap_or_else(|| panic!("no finding starting with {prefix:?} in:\n{text}"));
    text[start..end].trim_end()
}

// ---------------------------------------------------------------------------------------
// The world in moto.
// ---------------------------------------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The vendor's role (trust with an external ID, the vendor's policy attached, one inline
/// policy), a topic with a confirmed SQS and an email subscription, and a log group with an
/// event of the last minute. Returns (topic ARN, the email subscription's ARN in moto).
fn moto_world(moto: &Moto) -> (String, String) {
    runtime().block_on(async {
        let sdk = sdk_config(&moto.endpoint()).await;
        let iam = aws_sdk_iam::Client::new(&sdk);
        let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::406882777402:root"}, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": "astro-ext-1"}}}]});
        iam.create_role()
            .role_name(ROLE)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .expect("create the role");
        let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["ec2:Describe*"], "Resource": "*"}]});
        attach_new_policy(&iam, ROLE, "AstronomerCrossAccountRole", &doc).await;
        iam.put_role_policy()
            .role_name(ROLE)
            .policy_name("vendor-logs")
            .policy_document(doc.to_string())
            .send()
            .await
            .expect("put an inline policy");

        let sns = aws_sdk_sns::Client::new(&sdk);
        let topic = sns
            .create_topic()
            .name("rolewatch-alerts")
            .send()
            .await
            .expect("create the topic")
            .topic_arn()
            .expect("the topic's ARN")
            .to_owned();
        // moto subscribes a queue that does not exist; doctor only lists subscriptions.
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint("arn:aws:sqs:us-east-1:123456789012:rolewatch-alerts-queue")
            .return_subscription_arn(true)
            .send()
            .await
            .expect("subscribe the queue");
        let email = sns
            .subscribe()
            .topic_arn(&topic)
            .protocol("email")
            .endpoint(EMAIL)
            .return_subscription_arn(true)
            .send()
            .await
            .expect("subscribe the email address")
            .subscription_arn()
            .expect("moto gives the subscription an ARN")
            .to_owned();

        let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
        logs.create_log_group()
            .log_group_name(LOG_GROUP)
            .send()
            .await
            .expect("create the log group");
        logs.create_log_stream()
            .log_group_name(LOG_GROUP)
            .log_stream_name("123456789012_CloudTrail_us-east-1")
            .send()
            .await
            .expect("create the log stream");
        let event = aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
            .timestamp((now_secs() - 60) * 1000)
            .message(cloudtrail_record("logs-1", "AttachRolePolicy", now_secs() - 60).to_string())
            .build()
            .expect("an event");
        logs.put_log_events()
            .log_group_name(LOG_GROUP)
            .log_stream_name("123456789012_CloudTrail_us-east-1")
            .log_events(event)
            .send()
            .await
            .expect("put the event");
        (topic, email)
    })
}

/// Attaches one more policy to the role: a change since the baseline.
fn attach_another_policy(moto: &Moto) {
    runtime().block_on(async {
        let sdk = sdk_config(&moto.endpoint()).await;
        let iam = aws_sdk_iam::Client::new(&sdk);
        let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "s3:*", "Resource": "*"}]});
        attach_new_policy(&iam, ROLE, "ExtraAccess", &doc).await;
    });
}

/// Declares the trail's status in the LookupEvents server (`/_control/trails`).
fn set_trail(lookup: &LookupServer, name: &str, status: Value) {
    let body = serde_json::to_vec(&json!({"trails": {name: status}})).expect("serialises");
    let reply = http(
        lookup.port(),
        "POST",
        "/_control/trails",
        &[("Content-Type", "application/json")],
        &body,
    )
    .expect("the LookupEvents server answers");
    assert_eq!(
        reply.status,
        200,
        "{}\nserver stderr:\n{}",
        String::from_utf8_lossy(&reply.body),
        lookup.stderr()
    );
}

// ---------------------------------------------------------------------------------------
// PendingConfirmation, as AWS lists it.
// ---------------------------------------------------------------------------------------

/// An HTTP proxy in front of moto's SNS that answers `ListSubscriptionsByTopic` with one
/// subscription ARN replaced by `PendingConfirmation`, as AWS lists an unconfirmed one.
struct PendingProxy {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl PendingProxy {
    fn start(upstream: u16, pending_arn: String) -> PendingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("an address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let pending_arn = pending_arn.clone();
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, upstream, &pending_arn);
                });
            }
        });
        PendingProxy { port, stop }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PendingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One request: read it, send it to moto, rewrite the reply, answer and close.
fn proxy_one(mut conn: TcpStream, upstream: u16, pending_arn: &str) -> std::io::Result<()> {
    let Some(request) = read_request(&conn)? else {
        return Ok(());
    };
    let reply = request.forward(upstream)?;
    let mut reply_body = reply.body;
    if String::from_utf8_lossy(&request.body).contains("Action=ListSubscriptionsByTopic") {
        reply_body = String::from_utf8_lossy(&reply_body)
            .replace(pending_arn, "PendingConfirmation")
            .into_bytes();
    }
    let mut head = format!("HTTP/1.1 {} Proxied\r\n", reply.status);
    for (name, value) in &reply.headers {
        if !["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        reply_body.len()
    ));
    conn.write_all(head.as_bytes())?;
    conn.write_all(&reply_body)?;
    conn.flush()
}

// ---------------------------------------------------------------------------------------
// Channels and the configuration.
// ---------------------------------------------------------------------------------------

fn smtp_channel(port: u16, ca: &TestCa) -> String {
    format!(
        "[[channel]]\ntype = \"smtp\"\nname = \"mail\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         tls = \"starttls\"\nca_file = {}\nusername = \"alerts\"\n\
         password_env = \"ROLEWATCH_TEST_SMTP_PASSWORD\"\n\
         from = \"rolewatch <rolewatch@example.com>\"\nto = [\"{EMAIL}\"]\n",
        toml_path(&ca.ca())
    )
}

fn sns_channel(topic_arn: &str) -> String {
    format!(
        "[[channel]]\ntype = \"sns\"\nname = \"alerts\"\ntopic_arn = {}\n",
        toml_str(topic_arn)
    )
}

/// Writes `rolewatch.toml` in `dir`: the state at `state`, then `rest` (sources, channels).
fn write_config(dir: &Path, state: &Path, rest: &str) -> PathBuf {
    let path = dir.join("rolewatch.toml");
    std::fs::write(
        &path,
        format!("[state]\npath = {}\n\n{rest}", toml_path(state)),
    )
    .expect("write the config");
    path
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the directory is readable")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------

#[test]
fn doctor_reports_every_check_and_flags_the_pending_subscription() {
    let moto = Moto::start();
    let lookup = LookupServer::start();
    let ca = TestCa::new();
    let smtp = SmtpServer::start(SmtpOptions {
        starttls: Some(ca.server()),
        auth: Some(("alerts".into(), SMTP_PASSWORD.into())),
        ..SmtpOptions::default()
    });
    let (topic, email_arn) = moto_world(&moto);
    let proxy = PendingProxy::start(moto.port(), email_arn);
    lookup.add_events(&[cloudtrail_record(
        "recent-1",
        "AttachRolePolicy",
        now_secs() - 120,
    )]);
    let delivered = now_secs() - 300;
    set_trail(
        &lookup,
        TRAIL,
        json!({"IsLogging": true, "LatestDeliveryTime": delivered,
               "LatestCloudWatchLogsDeliveryTime": delivered + 60,
               "StartLoggingTime": delivered - 86_400}),
    );

    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let state = state_dir.join("state.db");
    let config = write_config(
        dir.path(),
        &state,
        &format!(
            "[[source]]\ntype = \"cloudtrail\"\nname = \"lookup\"\ntrail = \"{TRAIL}\"\n\n\
             [[source]]\ntype = \"cloudwatch_logs\"\nname = \"logs\"\nlog_group = \"{LOG_GROUP}\"\n\
             trail = \"{TRAIL}\"\n\n{}\n{}",
            sns_channel(&topic),
            smtp_channel(smtp.port(), &ca)
        ),
    );
    let with_proxy = |cmd: &mut Command| {
        cmd.env("AWS_ENDPOINT_URL_SNS", proxy.endpoint());
    };

    // 1. No state yet: doctor says so, and creates neither the file nor its directory.
    let mut cmd = doctor_cmd(&config, Some(&lookup), Some(&moto));
    with_proxy(&mut cmd);
    let (out, took) = run(cmd);
    let text = stdout(&out);
    println!("{text}");
    assert_exit(&out, 0);
    let credentials = finding(&text, "ok    credentials: ");
    assert!(
        credentials.contains("(account 123456789012)"),
        "{credentials}"
    );
    let source = finding(&text, "ok    source lookup (cloudtrail, us-east-1): ");
    assert!(
        source.contains("LookupEvents answered in")
            && source.contains("newest event of the last hour"),
        "{source}"
    );
    let logs = finding(&text, "ok    source logs (cloudwatch_logs, us-east-1): ");
    assert!(logs.contains(&format!("log group {LOG_GROUP}")), "{logs}");
    assert!(logs.contains("an event of the last hour"), "{logs}");
    let trail = finding(
        &text,
        &format!("ok    trail {TRAIL} (us-east-1; source lookup, logs): logging"),
    );
    assert!(
        trail.contains("latest delivery to S3: ") && trail.contains("(5 min ago)"),
        "{trail}"
    );
    let sns = finding(&text, "WARN  channel alerts (sns): ");
    assert!(
        sns.contains(&format!("topic {topic} answered in"))
            && sns.contains("2 subscriptions: 1 confirmed, 1 pending confirmation"),
        "{sns}"
    );
    assert!(
        sns.contains("sqs arn:aws:sqs:us-east-1:123456789012:rolewatch-alerts-queue: confirmed"),
        "{sns}"
    );
    assert!(
        sns.contains(&format!("WARN email {EMAIL}: PendingConfirmation — nobody will receive alerts on this subscription until it's confirmed")),
        "{sns}"
    );
    let mail = finding(&text, "ok    channel mail (smtp): ");
    assert!(
        mail.contains(&format!("127.0.0.1:{} (STARTTLS, AUTH as alerts): connected, EHLO, TLS, AUTH, the relay answered NOOP", smtp.port())),
        "{mail}"
    );
    let st = finding(&text, "ok    state: ");
    assert!(st.contains("does not exist yet"), "{st}");
    let role = finding(&text, &format!("ok    role {ROLE}: "));
    for want in [
        "1 attached, 1 inline policy; no state yet",
        "attached: AstronomerCrossAccountRole (arn:aws:iam::123456789012:policy/AstronomerCrossAccountRole), default version v1",
        "inline policies: vendor-logs",
        "trust: AWS:arn:aws:iam::406882777402:root may assume the role, with an sts:ExternalId condition",
        "the vendor's policy AstronomerCrossAccountRole: default version v1",
    ] {
        assert!(role.contains(want), "{want:?} not in\n{role}");
    }
    assert!(
        text.ends_with("doctor: 8 checks: 7 ok, 1 WARN, 0 FAIL\n"),
        "{text}"
    );
    assert!(!state_dir.exists(), "doctor created the state directory");
    for t in [stdout(&out), stderr(&out)] {
        assert!(!t.contains(SMTP_PASSWORD), "the password leaked:\n{t}");
    }
    assert_eq!(smtp.received(), 0, "doctor sent an email");
    assert!(took < Duration::from_secs(30), "doctor took {took:?}");

    // 2. A recorded baseline: the same role now.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rolewatch"));
    cmd.args(["baseline", "--record", "--config"]).arg(&config);
    aws_env(&mut cmd, Some(&lookup.endpoint()), Some(&moto.endpoint()));
    let recorded = cmd.output().expect("rolewatch baseline runs");
    assert_exit(&recorded, 0);
    let before = files_in(&state_dir);
    let bytes = std::fs::read(&state).unwrap();
    let mut cmd = doctor_cmd(&config, Some(&lookup), Some(&moto));
    with_proxy(&mut cmd);
    let (out, _) = run(cmd);
    let text = stdout(&out);
    assert_exit(&out, 0);
    assert!(
        finding(&text, "ok    state: ").contains("the state file exists"),
        "{text}"
    );
    assert!(
        finding(&text, &format!("ok    role {ROLE}: ")).contains("same as the baseline of "),
        "{text}"
    );
    assert_eq!(
        files_in(&state_dir),
        before,
        "doctor left files in the state directory"
    );
    assert_eq!(
        std::fs::read(&state).unwrap(),
        bytes,
        "doctor changed the state"
    );

    // 3. The role changed since: a warning naming the change.
    attach_another_policy(&moto);
    let mut cmd = doctor_cmd(&config, Some(&lookup), Some(&moto));
    with_proxy(&mut cmd);
    let (out, _) = run(cmd);
    let text = stdout(&out);
    println!("{text}");
    assert_exit(&out, 0);
    let role = finding(&text, &format!("WARN  role {ROLE}: "));
    assert!(
        role.contains("1 difference(s) from the baseline of "),
        "{role}"
    );
    assert!(
        role.contains("since the baseline: policy attached since the baseline: arn:aws:iam::123456789012:policy/ExtraAccess"),
        "{role}"
    );
    assert_eq!(files_in(&state_dir), before);
}

#[test]
fn doctor_fails_a_trail_that_is_not_logging() {
    let moto = Moto::start();
    let lookup = LookupServer::start();
    let stopped = now_secs() - 7200;
    set_trail(
        &lookup,
        "stopped-trail",
        json!({"IsLogging": false, "StopLoggingTime": stopped,
               "LatestDeliveryError": "AccessDenied: the bucket policy denies cloudtrail.amazonaws.com",
               "LatestDeliveryTime": stopped}),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &dir.path().join("state.db"),
        "[[source]]\ntype = \"cloudtrail\"\nname = \"lookup\"\n\
         trail = \"arn:aws:cloudtrail:us-east-1:123456789012:trail/stopped-trail\"\n\n\
         [[source]]\ntype = \"cloudtrail\"\nname = \"other\"\ntrail = \"no-such-trail\"\n",
    );
    let (out, _) = run(doctor_cmd(&config, Some(&lookup), Some(&moto)));
    let text = stdout(&out);
    println!("{text}");
    assert_exit(&out, 1);
    let trail = finding(
        &text,
        "FAIL  trail arn:aws:cloudtrail:us-east-1:123456789012:trail/stopped-trail (us-east-1; source lookup): ",
    );
    assert!(
        trail.contains("NOT logging: the trail delivers nothing to S3 or CloudWatch Logs; S3 delivery error: AccessDenied: the bucket policy denies cloudtrail.amazonaws.com"),
        "{trail}"
    );
    assert!(
        trail.contains("logging stopped at ") && trail.contains("(2 h ago)"),
        "{trail}"
    );
    let missing = finding(
        &text,
        "FAIL  trail no-such-trail (us-east-1; source other): ",
    );
    assert!(missing.contains("TrailNotFoundException"), "{missing}");
    // The rest still ran.
    finding(&text, "ok    credentials: ");
    finding(&text, "ok    source lookup (cloudtrail, us-east-1): ");
    finding(&text, "ok    state: ");
    assert!(
        text.ends_with("doctor: 8 checks: 5 ok, 1 WARN, 2 FAIL\n"),
        "{text}"
    );
}

#[test]
fn doctor_fails_a_missing_topic_and_a_dead_relay_and_still_reports_the_rest() {
    let moto = Moto::start();
    let lookup = LookupServer::start();
    let dir = tempfile::tempdir().unwrap();
    let dead_port = free_port();
    let config = write_config(
        dir.path(),
        &dir.path().join("state.db"),
        &format!(
            "[[source]]\ntype = \"cloudtrail\"\nname = \"lookup\"\n\n{}\n\
             [[channel]]\ntype = \"smtp\"\nname = \"mail\"\nhost = \"127.0.0.1\"\nport = {dead_port}\n\
             tls = \"none\"\nallow_plaintext = true\nfrom = \"rolewatch@example.com\"\nto = [\"{EMAIL}\"]\n",
            sns_channel("arn:aws:sns:us-east-1:999999999999:rolewatch-alerts-gone")
        ),
    );
    let (out, took) = run(doctor_cmd(&config, Some(&lookup), Some(&moto)));
    let text = stdout(&out);
    println!("{text}");
    assert_exit(&out, 1);
    let credentials = finding(&text, "WARN  credentials: ");
    assert!(
        credentials.contains("the SNS topic of channel alerts is in account 999999999999, not the caller's account 123456789012"),
        "{credentials}"
    );
    let sns = finding(&text, "FAIL  channel alerts (sns): ");
    assert!(
        sns.contains("topic arn:aws:sns:us-east-1:999999999999:rolewatch-alerts-gone: GetTopicAttributes: NotFound"),
        "{sns}"
    );
    let mail = finding(&text, "FAIL  channel mail (smtp): ");
    assert!(
        mail.contains(&format!("127.0.0.1:{dead_port} (no TLS, no AUTH): ")),
        "{mail}"
    );
    finding(&text, "ok    source lookup (cloudtrail, us-east-1): ");
    finding(&text, "ok    state: ");
    // No role in moto: the change analysis would degrade, which is a warning.
    let role = finding(&text, &format!("WARN  role {ROLE}: "));
    assert!(
        role.contains("diff unavailable")
            && role.contains("the role does not exist in this account"),
        "{role}"
    );
    assert!(
        text.ends_with("doctor: 6 checks: 2 ok, 2 WARN, 2 FAIL\n"),
        "{text}"
    );
    assert!(took < Duration::from_secs(30), "doctor took {took:?}");
}

#[test]
fn doctor_fails_when_the_state_directory_is_not_writable() {
    let moto = Moto::start();
    let lookup = LookupServer::start();
    let dir = tempfile::tempdir().unwrap();
    // /sys takes no new file, whoever runs the test (root ignores a directory's mode).
    let config = write_config(
        dir.path(),
        Path::new("/sys/kernel/rolewatch-state.db"),
        "[[source]]\ntype = \"cloudtrail\"\nname = \"lookup\"\n",
    );
    let (out, _) = run(doctor_cmd(&config, Some(&lookup), Some(&moto)));
    let text = stdout(&out);
    assert_exit(&out, 1);
    let st = finding(&text, "FAIL  state: /sys/kernel/rolewatch-state.db");
    assert!(st.contains("cannot create a file in /sys/kernel: "), "{st}");
    assert!(!Path::new("/sys/kernel/rolewatch-state.db").exists());

    // A state path whose directory is a file.
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, b"").unwrap();
    let config = write_config(
        dir.path(),
        &blocker.join("state.db"),
        "[[source]]\ntype = \"cloudtrail\"\nname = \"lookup\"\n",
    );
    let (out, _) = run(doctor_cmd(&config, Some(&lookup), Some(&moto)));
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(
        finding(&text, "FAIL  state: ").contains("is not a directory"),
        "{text}"
    );
    finding(&text, "ok    credentials: ");
}

#[test]
fn doctor_without_credentials_says_so_quickly_and_skips_the_aws_checks() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &dir.path().join("state.db"),
        "[[source]]\ntype = \"cloudtrail\"\nname = \"lookup\"\ntrail = \"t-1\"\n\n\
         [[channel]]\ntype = \"stdout\"\n",
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rolewatch"));
    cmd.arg("doctor")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null());
    aws_env(
        &mut cmd,
        Some("http://127.0.0.1:9"),
        Some("http://127.0.0.1:9"),
    );
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env("HOME", dir.path())
        .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.path().join("no-credentials"),
        );
    let (out, took) = run(cmd);
    let text = stdout(&out);
    assert_exit(&out, 1);
    let credentials = finding(&text, "FAIL  credentials: ");
    assert!(
        credentials.contains("no AWS credentials found"),
        "{credentials}"
    );
    assert!(
        credentials.contains("AWS_PROFILE"),
        "it says what to do: {credentials}"
    );
    for check in [
        "source lookup (cloudtrail, us-east-1)",
        "trail t-1 (us-east-1; source lookup)",
        &format!("role {ROLE}"),
    ] {
        finding(&text, &format!("WARN  {check}: skipped: no credentials"));
    }
    finding(&text, "ok    channel stdout (stdout): ");
    finding(&text, "ok    state: ");
    assert!(took < Duration::from_secs(20), "doctor took {took:?}");
}

#[test]
fn doctor_on_an_invalid_configuration_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rolewatch.toml");
    std::fs::write(&config, "[[source]]\ntype = \"carrier-pigeon\"\n").unwrap();
    let (out, _) = run(doctor_cmd(&config, None, None));
    assert_exit(&out, 78);
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(stderr(&out).contains("source[0]"), "{}", stderr(&out));
}

/// Issue 16: the webhook and PagerDuty channels are probed (DNS, TCP, TLS) and nothing is
/// sent; a receiver that is down fails; neither secret is shown.
#[test]
fn doctor_probes_webhook_and_pagerduty_without_sending() {
    use crate::support::{WebhookOptions, WebhookServer};
    let ca = TestCa::new();
    let hook = WebhookServer::start(WebhookOptions {
        tls: Some(ca.server()),
        ..WebhookOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let dead = free_port();
    let config = write_config(
        dir.path(),
        &dir.path().join("state.db"),
        &format!(
            "[[source]]\ntype = \"cloudtrail\"\nname = \"lookup\"\n\n\
             [[channel]]\ntype = \"webhook\"\nname = \"hook\"\nurl_env = \"DOCTOR_HOOK_URL\"\nca_file = {}\n\n\
             [[channel]]\ntype = \"pagerduty\"\nname = \"pd\"\nrouting_key_env = \"DOCTOR_PD_KEY\"\nevents_url = \"https://127.0.0.1:{dead}/v2/enqueue\"\n",
            toml_path(&ca.ca())
        ),
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rolewatch"));
    cmd.arg("doctor")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .env("DOCTOR_HOOK_URL", hook.url(true, "/hook/SECRETPATHdoctor"))
        .env("DOCTOR_PD_KEY", "PDKEYSECRETdoctor");
    aws_env(
        &mut cmd,
        Some("http://127.0.0.1:9"),
        Some("http://127.0.0.1:9"),
    );
    let (out, _) = run(cmd);
    let text = stdout(&out);
    finding(&text, "ok    channel hook (webhook): ");
    let pd = finding(&text, "FAIL  channel pd (pagerduty): ");
    assert!(pd.contains(&format!("https://127.0.0.1:{dead}")), "{pd}");
    assert!(hook.requests().is_empty(), "the probe sent a request");
    let all = format!("{text}{}", stderr(&out));
    assert!(
        !all.contains("SECRETPATHdoctor") && !all.contains("PDKEYSECRETdoctor"),
        "{all}"
    );
}
