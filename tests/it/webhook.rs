//! The webhook and PagerDuty channels end to end: the real binary (`once`, `run`) with our
//! LookupEvents server as the source, delivering to `tests/servers/webhook_server.py` over
//! HTTPS with a throwaway CA, with injected faults (429 + Retry-After, 500, a slow receiver,
//! 400); the signature checked with Python's `hmac` (an independent implementation); the
//! secrets (URL path, routing key, signing secret) never in any output.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    cloudtrail_record, command, now_secs, python, request_header, Daemon, LookupServer, TestCa,
    WebhookOptions, WebhookServer,
};
use crate::{assert_exit, stderr, stdout};

const URL_SECRET: &str = "/hooks/T0SECRET/B0SECRET/xyzzy-url-secret";
const SIGNING_SECRET: &str = "whsec-do-not-log-42";
const ROUTING_KEY: &str = "R0UTINGKEYdoNOTlog0000000000000";

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

fn toml_path(p: &Path) -> String {
    toml_str(&p.display().to_string())
}

/// A config: the state in `dir`, one CloudTrail source polled every second, a rule on
/// AttachRolePolicy, and `channels`.
fn write_config(dir: &Path, channels: &str) -> PathBuf {
    let path = dir.join("rolewatch.toml");
    let text = format!(
        "[state]\npath = {}\n\n[[source]]\ntype = \"cloudtrail\"\npoll_interval_secs = 1\n\n\
         [[rule]]\nname = \"any-attach\"\npattern = \"{{ $.eventName = AttachRolePolicy }}\"\nseverity = \"critical\"\n\n\
         [daemon]\nchannel_probe_secs = 1\n\n{channels}\n",
        toml_path(&dir.join("state.db"))
    );
    std::fs::write(&path, text).expect("write the config");
    path
}

fn webhook_channel(name: &str, format: &str, env: &str, ca: &Path, extra: &str) -> String {
    format!(
        "[[channel]]\ntype = \"webhook\"\nname = \"{name}\"\nformat = \"{format}\"\nurl_env = \"{env}\"\nca_file = {}\n{extra}\n",
        toml_path(ca)
    )
}

fn attach_event(lookup: &LookupServer, event_id: &str, role: &str) {
    let mut record = cloudtrail_record(event_id, "AttachRolePolicy", now_secs() - 60);
    record["requestParameters"]["roleName"] = json!(role);
    lookup.add_events(&[record]);
}

fn body(request: &Value) -> Value {
    serde_json::from_str(request["body"].as_str().expect("a body")).expect("the body is JSON")
}

/// No secret in anything rolewatch wrote.
#[track_caller]
fn assert_no_secret(text: &str) {
    for secret in ["T0SECRET", "xyzzy-url-secret", SIGNING_SECRET, ROUTING_KEY] {
        assert!(!text.contains(secret), "{secret} leaked into:\n{text}");
    }
}

/// HMAC-SHA256 by Python's standard library.
fn python_hmac(key: &str, message: &str) -> String {
    let out = Command::new(python())
        .args([
            "-c",
            "import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())",
            key,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(message.as_bytes())?;
            child.wait_with_output()
        })
        .expect("python runs");
    String::from_utf8(out.stdout)
        .expect("hex")
        .trim()
        .to_owned()
}

#[test]
fn once_delivers_signed_json_over_tls_with_the_test_ca_and_logs_no_secret() {
    let ca = TestCa::new();
    let hook = WebhookServer::start(WebhookOptions {
        tls: Some(ca.server()),
        ..WebhookOptions::default()
    });
    let lookup = LookupServer::start();
    attach_event(&lookup, "ev-webhook-1", "astronomer-remote-management");
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("signing-secret");
    std::fs::write(&secret_file, format!("{SIGNING_SECRET}\n")).unwrap();
    let config = write_config(
        dir.path(),
        &webhook_channel(
            "hook",
            "json",
            "HOOK_URL",
            &ca.ca(),
            &format!("signing_secret_file = {}", toml_path(&secret_file)),
        ),
    );
    let out = command(Some(&lookup), None)
        .env("HOOK_URL", hook.url(true, URL_SECRET))
        .args(["once", "--config"])
        .arg(&config)
        .output()
        .expect("rolewatch runs");
    assert_exit(&out, 0);
    let requests = hook.wait_for(1, Duration::from_secs(10));
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let r = &requests[0];
    assert_eq!(r["method"], "POST");
    assert_eq!(r["path"], URL_SECRET);
    assert_eq!(request_header(r, "content-type"), Some("application/json"));
    let alert = body(r);
    assert_eq!(alert["schema"], "rolewatch.alert.v1");
    assert_eq!(alert["event_id"], "ev-webhook-1");
    assert_eq!(alert["action"]["role_name"], "astronomer-remote-management");
    let key = alert["dedup_key"].as_str().expect("dedup_key");
    assert_eq!(key.len(), 32);
    assert_eq!(request_header(r, "idempotency-key"), Some(key));

    // The signature, as a receiver verifies it.
    let ts = request_header(r, "x-rolewatch-timestamp").expect("a timestamp");
    let ts_secs: i64 = ts.parse().expect("unix seconds");
    assert!((ts_secs - now_secs()).abs() < 120, "{ts}");
    let sig = request_header(r, "x-rolewatch-signature").expect("a signature");
    let expected = python_hmac(
        SIGNING_SECRET,
        &format!("{ts}.{}", r["body"].as_str().unwrap()),
    );
    assert_eq!(sig, format!("v1={expected}"));
    // A tampered body does not verify.
    let tampered = python_hmac(
        SIGNING_SECRET,
        &format!("{ts}.{} ", r["body"].as_str().unwrap()),
    );
    assert_ne!(sig, format!("v1={tampered}"));

    let logs = format!("{}{}", stdout(&out), stderr(&out));
    assert_no_secret(&logs);
    assert!(
        logs.contains("alert_delivered") || logs.contains("Delivered"),
        "{logs}"
    );
}

#[test]
fn slack_and_teams_payloads_carry_a_hostile_role_name_inert() {
    let ca = TestCa::new();
    let slack = WebhookServer::start(WebhookOptions {
        tls: Some(ca.server()),
        ..WebhookOptions::default()
    });
    let teams = WebhookServer::start(WebhookOptions {
        tls: Some(ca.server()),
        ..WebhookOptions::default()
    });
    let lookup = LookupServer::start();
    let hostile = "<!channel> <@U024BE7LH> [click](https://evil.example) *x*\r\n\u{202e}evil";
    attach_event(&lookup, "ev-hostile-chat", hostile);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "{}{}",
            webhook_channel("slack", "slack", "SLACK_URL", &ca.ca(), ""),
            webhook_channel("teams", "teams", "TEAMS_URL", &ca.ca(), "")
        ),
    );
    let out = command(Some(&lookup), None)
        .env("SLACK_URL", slack.url(true, URL_SECRET))
        .env("TEAMS_URL", teams.url(true, URL_SECRET))
        .args(["once", "--config"])
        .arg(&config)
        .output()
        .expect("rolewatch runs");
    assert_exit(&out, 0);
    let mut s = body(&slack.wait_for(1, Duration::from_secs(10))[0]);
    // The header is `plain_text`, which Slack never parses: the name shows as typed there.
    assert_eq!(s["blocks"][0]["text"]["type"], "plain_text");
    assert!(!s["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap()
        .contains(['\r', '\n', '\u{202e}']));
    s["blocks"][0]["text"]["text"] = json!("");
    let text = s.to_string();
    assert!(
        s["text"].as_str().unwrap().contains("AttachRolePolicy"),
        "{s:#}"
    );
    assert!(
        !text.contains("<!channel>") && !text.contains("<@U024BE7LH>"),
        "{s:#}"
    );
    assert!(text.contains("&lt;!channel&gt;"), "{s:#}");
    assert!(!text.contains('\u{202e}') && !text.contains("\\r"), "{s:#}");
    let t = body(&teams.wait_for(1, Duration::from_secs(10))[0]);
    assert_eq!(
        t["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let text = t.to_string();
    assert!(!text.contains("[click](https://evil.example)"), "{t:#}");
    assert!(
        text.contains(r"\\[click\\]\\(https://evil\\.example\\)"),
        "{t:#}"
    );
    assert!(!text.contains('\u{202e}'), "{t:#}");
    assert_no_secret(&format!("{}{}", stdout(&out), stderr(&out)));
}

/// `rolewatch run` against a receiver scripted with `faults`; returns the requests once `n`
/// arrived, and the daemon's stderr.
fn run_against(faults: Vec<Value>, n: usize, extra: &str, wait: Duration) -> (Vec<Value>, String) {
    let ca = TestCa::new();
    let hook = WebhookServer::start(WebhookOptions {
        tls: Some(ca.server()),
        faults,
        ..WebhookOptions::default()
    });
    let lookup = LookupServer::start();
    attach_event(&lookup, "ev-fault-1", "astronomer-remote-management");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &webhook_channel("hook", "json", "HOOK_URL", &ca.ca(), extra),
    );
    let mut cmd = command(Some(&lookup), None);
    cmd.env("HOOK_URL", hook.url(true, URL_SECRET))
        .args(["run", "--config"])
        .arg(&config);
    let daemon = Daemon::spawn(cmd);
    let requests = hook.wait_for(n, wait);
    // Nothing more comes: the alert was delivered (or abandoned) once.
    std::thread::sleep(Duration::from_secs(2));
    let requests_after = hook.requests();
    let (_, _, err) = daemon.stop("-TERM");
    assert_eq!(
        requests_after.len(),
        requests.len(),
        "{requests_after:#?}\n{err}"
    );
    assert_no_secret(&err);
    (requests, err)
}

#[test]
fn a_429_with_retry_after_is_honoured_then_delivered() {
    let (requests, err) = run_against(
        vec![json!({"status": 429, "retry_after": "3", "body": "slow down"})],
        2,
        "",
        Duration::from_secs(30),
    );
    assert_eq!(requests.len(), 2);
    let gap = requests[1]["time_ms"].as_i64().unwrap() - requests[0]["time_ms"].as_i64().unwrap();
    assert!(
        gap >= 3_000,
        "retried {gap} ms after a Retry-After of 3 s\n{err}"
    );
    assert!(err.contains("HTTP 429"), "{err}");
    assert_eq!(
        request_header(&requests[0], "idempotency-key"),
        request_header(&requests[1], "idempotency-key"),
        "the same key on the retry"
    );
}

#[test]
fn a_500_is_retried_and_delivered_once() {
    let (requests, err) = run_against(
        vec![json!({"status": 500, "body": "oops"})],
        2,
        "",
        Duration::from_secs(30),
    );
    assert_eq!(requests.len(), 2);
    assert_eq!(
        body(&requests[0])["dedup_key"],
        body(&requests[1])["dedup_key"]
    );
    assert_eq!(body(&requests[0])["event_id"], "ev-fault-1");
    assert!(err.contains("HTTP 500"), "{err}");
}

#[test]
fn a_slow_receiver_times_out_and_is_retried() {
    let (requests, err) = run_against(
        vec![json!({"delay_ms": 4000})],
        2,
        "timeout_secs = 1",
        Duration::from_secs(30),
    );
    assert_eq!(requests.len(), 2);
    assert!(err.contains("timed out after 1 s"), "{err}");
}

#[test]
fn a_400_is_not_retried_and_the_delivery_is_abandoned() {
    let (requests, err) = run_against(
        vec![json!({"status": 400, "body": "invalid_payload"})],
        1,
        "permanent_max_attempts = 1",
        Duration::from_secs(20),
    );
    assert_eq!(requests.len(), 1);
    assert!(err.contains("alert_delivery_abandoned"), "{err}");
    assert!(err.contains("HTTP 400: invalid_payload"), "{err}");
}

#[test]
fn pagerduty_gets_a_trigger_with_the_dedup_key_and_a_400_is_not_retried() {
    let ca = TestCa::new();
    let pd = WebhookServer::start(WebhookOptions {
        tls: Some(ca.server()),
        status: Some(202),
        faults: vec![
            json!({"status": 202, "body": "{\"status\":\"success\",\"message\":\"Event processed\",\"dedup_key\":\"x\"}"}),
            // PagerDuty quoting the event back: the routing key must not reach the logs.
            json!({"status": 400, "body": format!("{{\"status\":\"invalid event\",\"errors\":[\"bad routing_key {ROUTING_KEY}\"]}}")}),
        ],
    });
    let lookup = LookupServer::start();
    attach_event(&lookup, "ev-pd-1", "astronomer-remote-management");
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("routing-key");
    std::fs::write(&key_file, ROUTING_KEY).unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[channel]]\ntype = \"pagerduty\"\nname = \"pd\"\nrouting_key_file = {}\nevents_url = {}\nca_file = {}\npermanent_max_attempts = 1\n",
            toml_path(&key_file),
            toml_str(&pd.url(true, "/v2/enqueue")),
            toml_path(&ca.ca())
        ),
    );
    let out = command(Some(&lookup), None)
        .args(["once", "--config"])
        .arg(&config)
        .output()
        .expect("rolewatch runs");
    assert_exit(&out, 0);
    let r = &pd.wait_for(1, Duration::from_secs(10))[0];
    assert_eq!(r["path"], "/v2/enqueue");
    let event = body(r);
    assert_eq!(event["routing_key"], ROUTING_KEY);
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["dedup_key"].as_str().unwrap().len(), 32);
    assert_eq!(event["payload"]["severity"], "critical");
    assert!(event["payload"]["summary"]
        .as_str()
        .unwrap()
        .contains("AttachRolePolicy"));
    assert_eq!(
        event["payload"]["custom_details"]["what"]["role_name"],
        "astronomer-remote-management"
    );
    assert!(event["links"][0]["href"]
        .as_str()
        .unwrap()
        .starts_with("https://us-east-1.console.aws.amazon.com/cloudtrailv2/"));
    assert_no_secret(&format!("{}{}", stdout(&out), stderr(&out)));

    // A second alert meets the 400: abandoned after one attempt, the key redacted.
    attach_event(&lookup, "ev-pd-2", "astronomer-remote-management");
    let out = command(Some(&lookup), None)
        .args(["once", "--config"])
        .arg(&config)
        .output()
        .expect("rolewatch runs");
    let err = stderr(&out);
    assert_eq!(pd.requests().len(), 2, "{err}");
    assert!(err.contains("alert_delivery_abandoned"), "{err}");
    assert!(err.contains("HTTP 400"), "{err}");
    assert_no_secret(&format!("{}{err}", stdout(&out)));
}

/// The probe (doctor, and the outbox for a channel that is down): DNS, TCP, TLS; no
/// request. It fails against a certificate the client does not trust.
#[tokio::test]
async fn the_probe_connects_and_handshakes_without_sending() {
    use rolewatch::config::{
        ChannelConfig, ChannelKind, DeliveryPolicy, PasswordSource, WebhookChannelConfig,
        WebhookFormat,
    };
    let ca = TestCa::new();
    let hook = WebhookServer::start(WebhookOptions {
        tls: Some(ca.server()),
        ..WebhookOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("url");
    std::fs::write(&url_file, hook.url(true, URL_SECRET)).unwrap();
    let cfg = |ca_file: Option<PathBuf>| ChannelConfig {
        name: "hook".into(),
        kind: ChannelKind::Webhook(WebhookChannelConfig {
            url: PasswordSource::File(url_file.clone()),
            format: WebhookFormat::Json,
            signing_secret: None,
            timeout: Duration::from_secs(5),
            ca_file,
        }),
        delivery: DeliveryPolicy::default(),
        accounts: None,
    };
    let trusted = rolewatch::notify::Notifier::build(&cfg(Some(ca.ca())), None).unwrap();
    let debug = format!("{trusted:?}");
    assert_no_secret(&debug);
    trusted.check().await.expect("the probe passes");
    let untrusted = rolewatch::notify::Notifier::build(&cfg(None), None).unwrap();
    let e = untrusted.check().await.expect_err("an unknown CA fails");
    assert!(e.to_string().contains("TLS handshake"), "{e}");
    assert!(e.is_retryable());
    assert_no_secret(&e.to_string());
    assert!(hook.requests().is_empty(), "a probe sends no request");
    // A send to the untrusted receiver fails retryably and names only the host.
    let e = untrusted
        .send(&rolewatch::notify::synthetic::test_alert(0))
        .await
        .expect_err("untrusted");
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("https://127.0.0.1:"), "{e}");
    assert_no_secret(&e.to_string());
}

/// `notify-test` sends its marked synthetic alert through the webhook.
#[test]
fn notify_test_reaches_the_webhook() {
    let ca = TestCa::new();
    let hook = WebhookServer::start(WebhookOptions {
        tls: Some(ca.server()),
        ..WebhookOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &webhook_channel("hook", "slack", "HOOK_URL", &ca.ca(), ""),
    );
    let out = command(None, None)
        .env("HOOK_URL", hook.url(true, URL_SECRET))
        .args(["notify-test", "--config"])
        .arg(&config)
        .output()
        .expect("rolewatch runs");
    assert_exit(&out, 0);
    let s = body(&hook.wait_for(1, Duration::from_secs(10))[0]);
    assert!(s["text"].as_str().unwrap().contains("TEST"), "{s:#}");
    assert_no_secret(&format!("{}{}", stdout(&out), stderr(&out)));
}
