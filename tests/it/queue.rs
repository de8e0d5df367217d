//! The `sqs` source end to end: moto's EventBridge delivers PutEvents envelopes into a real
//! (moto) SQS queue with a redrive policy to a dead-letter queue; `rolewatch run` reads it
//! beside a LookupEvents backstop (our test server).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{
    alert_counts, cloudtrail_record, command, free_port, http, now_ms, now_secs, python,
    read_request, repo_root, Daemon, LookupServer, Moto, Setup,
};

/// Runs the EventBridge/SQS helper against moto; its JSON answer.
#[track_caller]
fn helper(moto: &Moto, args: &[&str]) -> Value {
    let out = Command::new(python())
        .arg(repo_root().join("tests/it/support/eventbridge.py"))
        .arg(moto.endpoint())
        .args(args)
        .output()
        .expect("the EventBridge helper runs");
    assert!(
        out.status.success(),
        "eventbridge.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the helper prints JSON")
}

struct Queues {
    queue: String,
    dlq: String,
}

/// Queue (visibility `visibility` s, redrive after `max_receives`), DLQ, EventBridge rule.
fn setup_queues(moto: &Moto, visibility: u32, max_receives: u32) -> Queues {
    let v = helper(
        moto,
        &["setup", &visibility.to_string(), &max_receives.to_string()],
    );
    Queues {
        queue: v["queue_url"].as_str().unwrap().to_owned(),
        dlq: v["dlq_url"].as_str().unwrap().to_owned(),
    }
}

/// PutEvents of `record` as an `aws.iam` CloudTrail call; when it was put (unix ms).
fn put_event(moto: &Moto, setup: &Setup, record: &Value) -> i64 {
    let file = setup.path(&format!("event-{}.json", now_ms()));
    std::fs::write(&file, record.to_string()).unwrap();
    let v = helper(moto, &["put", file.to_str().unwrap()]);
    assert_eq!(v["failed"], 0, "{v}");
    v["put_ms"].as_i64().unwrap()
}

fn send_body(moto: &Moto, setup: &Setup, queue: &str, body: &str) {
    let file = setup.path(&format!("body-{}.txt", now_ms()));
    std::fs::write(&file, body).unwrap();
    let v = helper(moto, &["send", queue, file.to_str().unwrap()]);
    assert_eq!(v["ok"], true, "{v}");
}

/// (visible, in flight) messages of `queue`.
fn count(moto: &Moto, queue: &str) -> (u64, u64) {
    let v = helper(moto, &["count", queue]);
    (
        v["visible"].as_u64().unwrap(),
        v["in_flight"].as_u64().unwrap(),
    )
}

/// An `sqs` source beside a `cloudtrail` backstop (`backstop_schedule`: none = the default
/// backstop pace), the admin endpoint on `port`.
fn config(
    setup: &Setup,
    q: &Queues,
    wait: u32,
    backstop_schedule: Option<&str>,
    port: u16,
) -> PathBuf {
    let schedule = backstop_schedule.map_or_else(String::new, |s| format!("schedule = \"{s}\"\n"));
    setup.config(&format!(
        "[[source]]\ntype = \"sqs\"\nname = \"q\"\nqueue_url = \"{}\"\ndlq_url = \"{}\"\n\
         wait_time_secs = {wait}\nretry_budget_secs = 1\n\n\
         [[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\nmax_requests_per_sec = 2\n{schedule}\
         sweep_interval_secs = 0\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [daemon]\nshutdown_grace_secs = 5\n",
        q.queue, q.dlq
    ))
}

fn start(lookup: &LookupServer, moto: &Moto, config: &Path, sqs_endpoint: Option<&str>) -> Daemon {
    let mut cmd = command(Some(lookup), Some(moto));
    if let Some(e) = sqs_endpoint {
        cmd.env("AWS_ENDPOINT_URL_SQS", e);
    }
    cmd.args(["run", "--config"]).arg(config);
    Daemon::spawn(cmd)
}

fn metric(port: u16, sample: &str) -> f64 {
    let reply = http(port, "GET", "/metrics", &[], b"").expect("/metrics answers");
    String::from_utf8_lossy(&reply.body)
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn stdout_json(d: &Daemon) -> Vec<Value> {
    d.stdout
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

fn alerts_for(d: &Daemon, event_id: &str) -> Vec<Value> {
    stdout_json(d)
        .into_iter()
        .filter(|v| v["event_id"] == event_id)
        .collect()
}

fn notices(d: &Daemon, rule: &str) -> Vec<Value> {
    stdout_json(d)
        .into_iter()
        .filter(|v| v["rule"] == rule)
        .collect()
}

#[test]
fn an_eventbridge_event_is_an_alert_within_two_seconds_and_leaves_the_queue() {
    let (moto, lookup, setup) = (Moto::start(), LookupServer::start(), Setup::new());
    let q = setup_queues(&moto, 30, 3);
    let port = free_port();
    // The default wait (20 s): the long poll returns as soon as the message arrives.
    let config = setup.config(&format!(
        "[[source]]\ntype = \"sqs\"\nname = \"q\"\nqueue_url = \"{}\"\ndlq_url = \"{}\"\n\n\
         [[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\nsweep_interval_secs = 0\n\n\
         [admin]\nlisten = \"127.0.0.1:{port}\"\n\n[daemon]\nshutdown_grace_secs = 5\n",
        q.queue, q.dlq
    ));
    let daemon = start(&lookup, &moto, &config, None);
    daemon.wait_for(Duration::from_secs(20), "the first receive", |d| {
        d.stderr_text().contains("Reading the queue")
            && http(port, "GET", "/healthz", &[], b"").is_ok()
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut latencies = Vec::new();
    for n in 0..3 {
        let id = format!("eb-happy-{n}");
        let put_ms = put_event(
            &moto,
            &setup,
            &cloudtrail_record(&id, "AttachRolePolicy", now_secs()),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while alerts_for(&daemon, &id).is_empty() {
            assert!(
                Instant::now() < deadline,
                "no alert for {id}; stderr:\n{}",
                daemon.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        latencies.push(now_ms() - put_ms);
        let alert = &alerts_for(&daemon, &id)[0];
        assert_eq!(alert["found_by"], "queue", "{alert}");
    }
    eprintln!("PutEvents -> stdout alert latencies (ms): {latencies:?}");
    assert!(latencies.iter().all(|&l| l < 2_000), "{latencies:?}");
    // Deleted after the commit: nothing visible, nothing in flight.
    daemon.wait_for(Duration::from_secs(5), "the queue to be empty", |_| {
        count(&moto, &q.queue) == (0, 0)
    });
    assert_eq!(
        metric(port, "rolewatch_queue_messages_deleted_total{source=\"q\"}"),
        3.0
    );
    assert_eq!(
        metric(
            port,
            "rolewatch_queue_event_to_commit_seconds_count{source=\"q\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            port,
            "rolewatch_queue_receipt_to_accepted_seconds_count{channel=\"stdout\"}"
        ),
        3.0
    );
    // The backstop polls at its own slower pace: once at the start, not every minute.
    assert!(
        daemon.stderr_text().contains("every 900 s"),
        "{}",
        daemon.stderr_text()
    );
    let (status, _, _) = daemon.stop("-TERM");
    assert!(status.success());
    let counts = alert_counts(&setup.state_path());
    for n in 0..3 {
        assert_eq!(counts.get(&format!("eb-happy-{n}")), Some(&1));
    }
}

/// A proxy in front of moto's SQS that never answers DeleteMessageBatch (the daemon is then
/// killed between its commit and its delete).
struct HoldDeletes {
    port: u16,
    held: Arc<AtomicUsize>,
}

impl HoldDeletes {
    fn start(upstream: u16) -> HoldDeletes {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = Arc::new(AtomicUsize::new(0));
        let counter = held.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, upstream, &counter);
                });
            }
        });
        HoldDeletes { port, held }
    }
}

fn serve(mut stream: TcpStream, upstream: u16, held: &AtomicUsize) -> std::io::Result<()> {
    // One request per connection: the reply says `Connection: close`.
    if let Some(request) = read_request(&stream)? {
        let target = request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-target"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if target.ends_with("DeleteMessageBatch") || target.ends_with("DeleteMessage") {
            held.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(120));
            return Ok(());
        }
        let reply = request.forward(upstream)?;
        let content_type = reply
            .header("Content-Type")
            .unwrap_or("application/x-amz-json-1.0")
            .to_owned();
        write!(
            stream,
            "HTTP/1.1 {} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            reply.status,
            reply.body.len()
        )?;
        stream.write_all(&reply.body)?;
        stream.flush()?;
    }
    Ok(())
}

#[test]
fn a_sigkill_between_commit_and_delete_redelivers_and_still_alerts_once() {
    let (moto, lookup, setup) = (Moto::start(), LookupServer::start(), Setup::new());
    // Visibility 7 s: more than the 1 s retry budget plus 5 s.
    let q = setup_queues(&moto, 7, 5);
    let config = config(&setup, &q, 2, None, free_port());
    let proxy = HoldDeletes::start(moto.port());
    let first = start(
        &lookup,
        &moto,
        &config,
        Some(&format!("http://127.0.0.1:{}", proxy.port)),
    );
    put_event(
        &moto,
        &setup,
        &cloudtrail_record("eb-kill", "AttachRolePolicy", now_secs()),
    );
    first.wait_for(Duration::from_secs(15), "the delete to be held", |_| {
        proxy.held.load(Ordering::SeqCst) > 0
    });
    // Committed (the alert is in the state) but not deleted.
    assert_eq!(alert_counts(&setup.state_path()).get("eb-kill"), Some(&1));
    let (_, first_out, _) = first.stop("-KILL");
    assert!(first_out.iter().filter(|l| l.contains("eb-kill")).count() <= 1);
    // The message comes again after its visibility timeout; the restarted daemon sees it as
    // seen, records nothing new, and deletes it.
    let second = start(&lookup, &moto, &config, None);
    second.wait_for(
        Duration::from_secs(30),
        "the redelivery to be received and deleted",
        |d| d.stderr_text().contains("Received from the queue") && count(&moto, &q.queue) == (0, 0),
    );
    let text = second.stderr_text();
    assert!(
        text.contains("\"new_alerts\":0") || text.contains("new_alerts=0"),
        "{text}"
    );
    let (status, _, _) = second.stop("-TERM");
    assert!(status.success());
    assert_eq!(alert_counts(&setup.state_path()).get("eb-kill"), Some(&1));
}

#[test]
fn poison_bodies_are_logged_once_counted_and_left_for_the_dlq_which_is_reported_until_drained() {
    let (moto, lookup, setup) = (Moto::start(), LookupServer::start(), Setup::new());
    // Redrive after 2 receives; visibility 7 s.
    let q = setup_queues(&moto, 7, 2);
    let port = free_port();
    let config = config(&setup, &q, 1, None, port);
    let envelope = json!({
        "version": "0", "id": "env-1", "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iam", "region": "us-east-1", "resources": [],
        "detail": cloudtrail_record("eb-sns", "AttachRolePolicy", now_secs()),
    });
    let sns = json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
                     "Message": envelope.to_string()});
    send_body(&moto, &setup, &q.queue, "not json at all");
    send_body(
        &moto,
        &setup,
        &q.queue,
        r#"{"source":"aws.iam","detail-type":"x"}"#,
    );
    send_body(&moto, &setup, &q.queue, &sns.to_string());
    send_body(
        &moto,
        &setup,
        &q.queue,
        &json!({"source": "aws.iam", "detail": {"pad": "x".repeat(300 * 1024)}}).to_string(),
    );
    let daemon = start(&lookup, &moto, &config, None);
    daemon.wait_for(
        Duration::from_secs(15),
        "the SNS-wrapped event's alert",
        |d| !alerts_for(d, "eb-sns").is_empty(),
    );
    // Each poison message is received twice, then moved to the DLQ by the redrive policy.
    daemon.wait_for(
        Duration::from_secs(40),
        "the poison messages in the DLQ",
        |_| count(&moto, &q.dlq).0 == 3,
    );
    daemon.wait_for(Duration::from_secs(20), "the blind notice", |d| {
        !notices(d, "rolewatch-source-blind").is_empty()
    });
    let text = daemon.stderr_text();
    assert_eq!(text.matches("queue_message_poison").count(), 3, "{text}");
    for why in ["not a JSON object", "no detail", "byte limit"] {
        assert!(text.contains(why), "{why}: {text}");
    }
    assert_eq!(
        metric(port, "rolewatch_queue_messages_poison_total{source=\"q\"}"),
        3.0
    );
    let blind = &notices(&daemon, "rolewatch-source-blind")[0];
    assert!(
        blind.to_string().contains("dead-letter queue holds 3"),
        "{blind}"
    );
    // Drained: the next clean cycles recover.
    helper(&moto, &["purge", &q.dlq]);
    daemon.wait_for(Duration::from_secs(20), "the recovery notice", |d| {
        !notices(d, "rolewatch-source-recovered").is_empty()
    });
    let (status, _, _) = daemon.stop("-TERM");
    assert!(status.success());
    assert_eq!(alert_counts(&setup.state_path()).get("eb-sns"), Some(&1));
}

#[test]
fn the_backstop_finds_what_the_queue_missed_and_one_event_in_both_is_one_alert() {
    let (moto, lookup, setup) = (Moto::start(), LookupServer::start(), Setup::new());
    let q = setup_queues(&moto, 30, 3);
    let port = free_port();
    let config = config(&setup, &q, 1, Some("* * * * * *"), port);
    let daemon = start(&lookup, &moto, &config, None);
    daemon.wait_for(Duration::from_secs(20), "/metrics", |_| {
        http(port, "GET", "/metrics", &[], b"").is_ok()
    });
    // In both: the queue first, then the backstop's window.
    let both = cloudtrail_record("eb-both", "AttachRolePolicy", now_secs());
    put_event(&moto, &setup, &both);
    daemon.wait_for(Duration::from_secs(10), "the queue's alert", |d| {
        !alerts_for(d, "eb-both").is_empty()
    });
    lookup.add_events(&[both]);
    // Only the backstop sees this one.
    lookup.add_events(&[cloudtrail_record("ct-only", "AttachRolePolicy", now_secs())]);
    daemon.wait_for(Duration::from_secs(15), "the backstop's alert", |d| {
        !alerts_for(d, "ct-only").is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        metric(port, "rolewatch_queue_missed_total{source=\"ct\"}"),
        1.0
    );
    let only = &alerts_for(&daemon, "ct-only")[0];
    assert_eq!(only["found_by"], "backstop", "{only}");
    // Nothing came through the queue since: after three cycles the queue is reported.
    daemon.wait_for(Duration::from_secs(20), "the blind notice", |d| {
        notices(d, "rolewatch-source-blind")
            .iter()
            .any(|n| n.to_string().contains("the backstop found 1 change"))
    });
    // An event through the queue again: recovered.
    put_event(
        &moto,
        &setup,
        &cloudtrail_record("eb-again", "AttachRolePolicy", now_secs()),
    );
    daemon.wait_for(Duration::from_secs(15), "the recovery notice", |d| {
        !notices(d, "rolewatch-source-recovered").is_empty()
    });
    let (status, out, _) = daemon.stop("-TERM");
    assert!(status.success());
    assert_eq!(out.iter().filter(|l| l.contains("\"eb-both\"")).count(), 1);
    let counts = alert_counts(&setup.state_path());
    assert_eq!(counts.get("eb-both"), Some(&1));
    assert_eq!(counts.get("ct-only"), Some(&1));
}

#[test]
fn validate_config_shows_the_queue_and_the_backstop_pace_and_refuses_poller_keys_on_a_queue() {
    let setup = Setup::new();
    let config = setup.config(
        "[[source]]\ntype = \"sqs\"\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/111122223333/rolewatch-events\"\n\
         dlq_url = \"https://sqs.us-east-1.amazonaws.com/111122223333/rolewatch-events-dlq\"\n\n\
         [[source]]\ntype = \"cloudtrail\"\n",
    );
    let out = crate::rolewatch(["validate-config", "--config", config.to_str().unwrap()]);
    crate::assert_exit(&out, 0);
    let text = crate::stdout(&out);
    for want in [
        "type = \"sqs\"",
        "name = \"sqs:rolewatch-events\"",
        "dlq_url = \"https://sqs.us-east-1.amazonaws.com/111122223333/rolewatch-events-dlq\"",
        "wait_time_secs = 20",
        "poll_interval_secs = 900",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    // The effective configuration is itself valid.
    let again = setup.path("effective.toml");
    std::fs::write(
        &again,
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    crate::assert_exit(
        &crate::rolewatch(["validate-config", "--config", again.to_str().unwrap()]),
        0,
    );

    let out = crate::rolewatch(["eventbridge-pattern", "--config", config.to_str().unwrap()]);
    crate::assert_exit(&out, 0);
    let p: Value = serde_json::from_str(&crate::stdout(&out)).unwrap();
    assert_eq!(p["detail-type"], json!(["AWS API Call via CloudTrail"]));
    assert!(
        p["detail"]["eventName"]
            .as_array()
            .unwrap()
            .contains(&json!("AttachRolePolicy")),
        "{p}"
    );

    let bad = setup.config(
        "[[source]]\ntype = \"sqs\"\nqueue_url = \"not a url\"\nschedule = \"* * * * * *\"\nwait_time_secs = 30\n",
    );
    let out = crate::rolewatch(["validate-config", "--config", bad.to_str().unwrap()]);
    crate::assert_exit(&out, 78);
    let err = crate::stderr(&out);
    for want in [
        "source[0].queue_url",
        "source[0].schedule",
        "source[0].wait_time_secs",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
}

/// `rolewatch doctor` on an `sqs` source: FAIL for a visibility timeout too short, the
/// AWS-managed key and a missing queue policy; WARN for a DLQ holding messages and keeping
/// them less long than the queue; ok for the queue `setup_queues` makes.
#[test]
fn doctor_reports_each_queue_setup_mistake() {
    let (moto, setup) = (Moto::start(), Setup::new());
    let good = setup_queues(&moto, 30, 3);
    let v = helper(&moto, &["bad-queue"]);
    let bad = Queues {
        queue: v["queue_url"].as_str().unwrap().to_owned(),
        dlq: v["dlq_url"].as_str().unwrap().to_owned(),
    };
    let off = helper(&moto, &["bad-rule"])["queue_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = setup.config(&format!(
        "[[source]]\ntype = \"sqs\"\nname = \"good\"\nqueue_url = \"{}\"\ndlq_url = \"{}\"\n\n\
         [[source]]\ntype = \"sqs\"\nname = \"bad\"\nqueue_url = \"{}\"\ndlq_url = \"{}\"\n\n\
         [[source]]\ntype = \"sqs\"\nname = \"off\"\nqueue_url = \"{off}\"\ndlq_url = \"{}\"\n",
        good.queue, good.dlq, bad.queue, bad.dlq, good.dlq
    ));
    // moto's CloudTrail answers DescribeTrails and GetTrailStatus.
    let doctor = || {
        command(None, Some(&moto))
            .env("AWS_ENDPOINT_URL_CLOUDTRAIL", moto.endpoint())
            .args(["doctor", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = doctor();
    let text = crate::stdout(&out);
    // The check's own line and its indented details.
    let section = |name: &str| -> String {
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.contains(&format!("source {name} (sqs")))
            .unwrap_or_else(|| panic!("no check of {name}: {text}"));
        let mut out = vec![lines[at]];
        out.extend(
            lines[at + 1..]
                .iter()
                .take_while(|l| l.starts_with("        ")),
        );
        out.join("\n")
    };
    let good_text = section("good");
    assert!(good_text.starts_with("ok"), "{good_text}");
    assert!(
        good_text.contains(
            "EventBridge rule rolewatch-iam: enabled, targets this queue, with a dead-letter queue"
        ),
        "{good_text}"
    );
    // The rule the queue policy names: disabled, and targeting another queue.
    let off_text = section("off");
    assert!(off_text.starts_with("FAIL"), "{off_text}");
    for want in [
        "the EventBridge rule rolewatch-off is DISABLED",
        "the EventBridge rule rolewatch-off does not target this queue",
    ] {
        assert!(off_text.contains(want), "{want}: {off_text}");
    }
    let bad_text = section("bad");
    assert!(bad_text.starts_with("FAIL"), "{bad_text}");
    for want in [
        "visibility timeout (10 s) must be more than 25 s",
        "alias/aws/sqs",
        "does not let EventBridge (events.amazonaws.com) send",
        "dead-letter queue holds 1 message",
        "keeps messages 60 s, not longer than the queue",
    ] {
        assert!(bad_text.contains(want), "{want}: {bad_text}");
    }
    // No trail logs IAM calls: EventBridge gets none of them.
    let block = |text: &str, head: &str| -> String {
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.contains(head))
            .unwrap_or_else(|| panic!("no check {head}: {text}"));
        let mut out = vec![lines[at]];
        out.extend(
            lines[at + 1..]
                .iter()
                .take_while(|l| l.starts_with("        ")),
        );
        out.join("\n")
    };
    let trail_check =
        "a trail logging IAM calls for EventBridge (us-east-1; source good, bad, off)";
    let none = block(&text, trail_check);
    assert!(none.starts_with("FAIL"), "{none}");
    assert!(
        none.contains("no trail is logging IAM calls in us-east-1"),
        "{none}"
    );
    assert!(none.contains("DescribeTrails lists no trail"), "{none}");
    assert_ne!(out.status.code(), Some(0), "{text}");

    // A trail that does not log does not count; a multi-region one that logs does.
    helper(&moto, &["trail", "stopped", "0", "0"]);
    let again = || crate::stdout(&doctor());
    let stopped = block(&again(), trail_check);
    assert!(stopped.starts_with("FAIL"), "{stopped}");
    assert!(stopped.contains("stopped: not logging"), "{stopped}");
    let arn = helper(&moto, &["trail", "org-wide", "1", "1"])["arn"]
        .as_str()
        .unwrap()
        .to_owned();
    let logging = block(&again(), trail_check);
    assert!(logging.starts_with("ok"), "{logging}");
    assert!(
        logging.contains(&format!("trail org-wide is logging ({arn})")),
        "{logging}"
    );
}

/// Replicas (`[state] backend = "dynamodb"`): every replica reads the queue, leader and
/// follower alike (SQS hands each message to one of them, a redelivery meets the conditional
/// alert write); each event is one alert, delivered once across both.
#[test]
fn two_replicas_both_read_the_queue_and_each_event_is_one_alert_delivered_once() {
    let (moto, lookup, setup) = (Moto::start(), LookupServer::start(), Setup::new());
    let q = setup_queues(&moto, 30, 3);
    let replica = |name: &str, port: u16| -> (PathBuf, u16) {
        let path = setup.path(&format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[state]\nbackend = \"dynamodb\"\ntable = \"queue-replicas\"\nregion = \"us-east-1\"\n\
                 lease_secs = 3\ncreate_table = true\n\n\
                 [[source]]\ntype = \"sqs\"\nname = \"q\"\nqueue_url = \"{}\"\ndlq_url = \"{}\"\n\
                 wait_time_secs = 1\n\n\
                 [[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\nsweep_interval_secs = 0\n\n\
                 [admin]\nlisten = \"127.0.0.1:{port}\"\n\n[daemon]\nshutdown_grace_secs = 5\n",
                q.queue, q.dlq
            ),
        )
        .unwrap();
        (path, port)
    };
    let spawn = |config: &Path| {
        let mut cmd = command(Some(&lookup), Some(&moto));
        cmd.env("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint())
            .args(["run", "--config"])
            .arg(config);
        Daemon::spawn(cmd)
    };
    let (ca, pa) = replica("a", free_port());
    let a = spawn(&ca);
    a.wait_for(Duration::from_secs(30), "A leads", |d| {
        d.stderr_text().contains("lease_taken")
    });
    let (cb, pb) = replica("b", free_port());
    let b = spawn(&cb);
    for d in [&a, &b] {
        d.wait_for(Duration::from_secs(30), "the queue read", |d| {
            d.stderr_text().contains("Reading the queue")
        });
    }
    assert!(!b.stderr_text().contains("lease_taken"), "B follows");

    let ids: Vec<String> = (0..12).map(|n| format!("rep-q-{n}")).collect();
    for id in &ids {
        put_event(
            &moto,
            &setup,
            &cloudtrail_record(id, "AttachRolePolicy", now_secs()),
        );
    }
    let delivered = || -> Vec<Value> {
        let mut all = stdout_json(&a);
        all.extend(stdout_json(&b));
        all.into_iter()
            .filter(|v| {
                v["event_id"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("rep-q-"))
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids
        .iter()
        .any(|id| !delivered().iter().any(|v| v["event_id"] == id.as_str()))
    {
        assert!(
            Instant::now() < deadline,
            "not all delivered: {:?}; A:\n{}\nB:\n{}",
            delivered(),
            a.stderr_text(),
            b.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    for id in &ids {
        let n = delivered()
            .iter()
            .filter(|v| v["event_id"] == id.as_str())
            .count();
        assert_eq!(n, 1, "{id} delivered {n} times");
    }
    let received = |port| {
        metric(
            port,
            "rolewatch_queue_messages_received_total{source=\"q\"}",
        )
    };
    let (ra, rb) = (received(pa), received(pb));
    eprintln!("messages received: leader {ra}, follower {rb}");
    assert!(ra + rb >= 12.0, "{ra} + {rb}");
    assert_eq!(
        b.polls(),
        0,
        "the follower never polls the cloudtrail source"
    );
    assert_eq!(count(&moto, &q.queue), (0, 0), "every message deleted");
}
