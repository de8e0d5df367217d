//! Crash trials (issue 3 §7): `rolewatch run` against the LookupEvents server, killed with
//! SIGKILL at random points and restarted, over many trials, with events arriving late (inside
//! windows already polled) while it happens. At the end every matching event is in the state's
//! `alerts` exactly once and was printed on stdout at least once.
//!
//! stdout is an at-least-once channel: a kill between printing an alert and marking it
//! delivered prints it again on the next start. That is expected; the test counts those
//! repeats and requires at most one per kill. The figures are printed (run with
//! `--nocapture` to see them) and written to `target/crash-trials.txt`.
//!
//! `ROLEWATCH_CRASH_SEED` replays a run; the seed is printed on failure.
//!
//! Besides the random trials, one deterministic crash: a change matched by three rules, killed
//! between a channel accepting its alert and the state marking it delivered (SNS and SMTP
//! made to hold their replies), resent at most once per channel with the same dedup key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::notify::{drain_queue, topic_with_queues};
use crate::support::{
    alert_counts, command, now_secs, other_role_record, sdk_config, Daemon, Setup, ROLE,
};
use crate::support::{
    cloudtrail_record, read_request, wait_until, LookupServer, Moto, SmtpOptions, SmtpServer,
};
use crate::{assert_exit, stdout};

const TRIALS: usize = 36;
const INITIAL_EVENTS: usize = 80;
/// Late events are added before these trials.
const LATE_EVERY: usize = 4;
const LATE_PER_BATCH: usize = 3;

/// xorshift64*: enough randomness for kill points without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The rule of the trials pins two event names, so that one poll is two requests (0.5 s at
/// 2 requests/s) and the kills, 50-1500 ms after the start, land before, during and after
/// polls, commits and deliveries alike. (With the documented pattern's four names a poll
/// takes longer than the longest delay and the trials would mostly kill the first poll.)
const RULE: &str = r#"
[[rule]]
name = "attach-detach"
pattern = '{ ($.eventName = AttachRolePolicy || $.eventName = DetachRolePolicy) && $.requestParameters.roleName = astronomer-remote-management }'
"#;

fn record_for(i: usize, id: &str, time: i64) -> Value {
    match i % 2 {
        0 => cloudtrail_record(id, "AttachRolePolicy", time),
        _ => cloudtrail_record(id, "DetachRolePolicy", time),
    }
}

fn event_id_of(line: &str) -> String {
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("a stdout line is not JSON ({e}): {line}"));
    crate::support::event_id(&v)
}

#[test]
fn crash_trials_sigkill_at_random_points_lose_nothing_and_record_each_alert_once() {
    trials(&Store::Sqlite, TRIALS);
}

/// The same trials on the DynamoDB backend (moto): each start first takes the lease (the
/// killed process's lease runs out first, `LEASE_SECS`), and the kill lands 50–1500 ms after.
#[test]
fn crash_trials_on_the_dynamodb_backend_lose_nothing_and_record_each_alert_once() {
    let moto = Moto::start();
    trials(&Store::Dynamo(&moto), DYNAMO_TRIALS);
}

/// Fewer trials on DynamoDB: each waits for the killed replica's lease to run out.
const DYNAMO_TRIALS: usize = 16;
const LEASE_SECS: u64 = 3;

/// Where the trials keep their state.
enum Store<'a> {
    Sqlite,
    Dynamo(&'a Moto),
}

impl Store<'_> {
    fn config(&self, setup: &Setup, body: &str) -> PathBuf {
        match self {
            Store::Sqlite => setup.config(body),
            Store::Dynamo(_) => {
                let path = setup.path("rolewatch.toml");
                let text = format!(
                    "[state]\nbackend = \"dynamodb\"\ntable = \"crash-trials\"\n\
                     region = \"us-east-1\"\nlease_secs = {LEASE_SECS}\ncreate_table = true\n\n{body}\n"
                );
                std::fs::write(&path, text).unwrap();
                path
            }
        }
    }

    /// Starts `rolewatch run`; on DynamoDB returns once it leads (it then polls at once).
    fn start(&self, server: &LookupServer, config: &Path) -> Daemon {
        match self {
            Store::Sqlite => Daemon::start(server, config),
            Store::Dynamo(moto) => {
                let mut cmd = command(Some(server), Some(moto));
                cmd.env("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint())
                    .args(["run", "--config"])
                    .arg(config);
                let d = Daemon::spawn(cmd);
                d.wait_for(
                    Duration::from_secs(6 * LEASE_SECS),
                    "the lease taken",
                    |d| d.stderr_text().contains("lease_taken"),
                );
                d
            }
        }
    }

    /// The eventIDs of the alerts recorded, with how often each is.
    fn alert_counts(&self, setup: &Setup) -> HashMap<String, u64> {
        match self {
            Store::Sqlite => alert_counts(&setup.state_path()),
            Store::Dynamo(moto) => {
                dynamo_items(moto, "alert")
                    .iter()
                    .fold(HashMap::new(), |mut m, item| {
                        let id = item["event_id"].as_s().unwrap().clone();
                        *m.entry(id).or_default() += 1;
                        m
                    })
            }
        }
    }

    /// Deliveries not yet made; on SQLite also its integrity check.
    fn undelivered(&self, setup: &Setup) -> usize {
        match self {
            Store::Sqlite => {
                let conn = rusqlite::Connection::open(setup.state_path()).unwrap();
                let integrity: String = conn
                    .query_row("PRAGMA integrity_check", [], |row| row.get(0))
                    .unwrap();
                assert_eq!(integrity, "ok");
                let pending: i64 = conn
                    .query_row(
                        "SELECT count(*) FROM deliveries WHERE status <> 'delivered'",
                        [],
                        |row| row.get(0),
                    )
                    .unwrap();
                usize::try_from(pending).unwrap()
            }
            // The index of pending rows (docs/dynamodb-state.md); each alert's own delivery
            // rows must say delivered too.
            Store::Dynamo(moto) => {
                let pending = dynamo_items(moto, "pending").len();
                let alerts = dynamo_items(moto, "alert");
                let not_delivered = alerts
                    .iter()
                    .filter(|a| {
                        let rows =
                            dynamo_items(moto, &format!("delivery#{}", a["sk"].as_s().unwrap()));
                        rows.is_empty()
                            || rows
                                .iter()
                                .any(|r| r["status"].as_s().map(String::as_str) != Ok("delivered"))
                    })
                    .count();
                pending + not_delivered
            }
        }
    }
}

/// Every item of the crash table under one partition key, read straight from moto.
fn dynamo_items(
    moto: &Moto,
    pk: &str,
) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sdk = sdk_config(&moto.endpoint()).await;
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let mut out = Vec::new();
        let mut pages = client
            .query()
            .table_name("crash-trials")
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            out.extend(page.unwrap().items.unwrap_or_default());
        }
        out
    })
}

fn trials(store: &Store<'_>, trials: usize) {
    let seed = std::env::var("ROLEWATCH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let mut rng = Rng(seed);
    let started = Instant::now();

    let server = LookupServer::start();
    let now = now_secs();
    let mut expected: BTreeSet<String> = BTreeSet::new();
    // 80 matching events over the last 15 minutes and 20 near misses on another role: two
    // pages of AttachRolePolicy, one of DetachRolePolicy; late events add to both.
    let mut records = Vec::new();
    for i in 0..INITIAL_EVENTS {
        let id = format!("crash-{i:03}");
        let time = now - 900 + (i as i64) * 10;
        records.push(record_for(i, &id, time));
        if i % 4 == 0 {
            records.push(other_role_record(
                &format!("noise-{i:03}"),
                "AttachRolePolicy",
                time,
            ));
        }
        expected.insert(id);
    }
    server.add_events(&records);

    let setup = Setup::new();
    let config = store.config(
        &setup,
        &format!(
            "[[source]]\ntype = \"cloudtrail\"\nmax_requests_per_sec = 2\npoll_interval_secs = 1\n{RULE}"
        ),
    );

    let mut printed: Vec<String> = Vec::new();
    let mut kills = 0;
    let mut late = 0;
    let mut trials_printing = 0;
    for trial in 0..trials {
        if trial % LATE_EVERY == 1 {
            // Late events: eventTimes inside windows already polled, some visible only later.
            let specs: Vec<Value> = (0..LATE_PER_BATCH)
                .map(|k| {
                    let id = format!("late-{trial:02}-{k}");
                    let time = now_secs() - rng.range(30, 600) as i64;
                    expected.insert(id.clone());
                    late += 1;
                    json!({
                        "record": record_for(trial + k, &id, time),
                        "visible_after_ms": rng.range(0, 3000),
                    })
                })
                .collect();
            server.add_specs(&specs);
        }
        let mut daemon = store.start(&server, &config);
        let delay = rng.range(50, 1500);
        std::thread::sleep(Duration::from_millis(delay));
        if let Some(status) = daemon.child.try_wait().unwrap() {
            panic!(
                "trial {trial} (seed {seed}): rolewatch run exited by itself with {status}; \
                 stderr:\n{}",
                daemon.stderr_text()
            );
        }
        let (status, out, err) = daemon_kill(&mut daemon);
        assert_eq!(
            ExitStatusExt::signal(&status),
            Some(9),
            "trial {trial}: {status}; stderr:\n{err}"
        );
        kills += 1;
        if !out.is_empty() {
            trials_printing += 1;
        }
        printed.extend(out);
        drop(daemon);
    }

    // What the trials alone achieved, for the report.
    let printed_in_trials = printed.len();
    let recorded_in_trials = store.alert_counts(&setup).len();

    // Until quiet: every late event visible, then two full polls after that.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = server.stats();
        if stats["events_visible"] == stats["events_total"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "late events never became visible"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let daemon = store.start(&server, &config);
    daemon.wait_for(Duration::from_secs(60), "two full polls", |d| {
        d.polls() >= 2
    });
    if let Store::Dynamo(moto) = store {
        // Outbox rows a killed replica had claimed wait until its claim runs out
        // (`CLAIM_MS`, docs/dynamodb-state.md), then go out.
        let claim = u64::try_from(rolewatch::state::dynamo::CLAIM_MS).unwrap();
        let deadline = Instant::now() + Duration::from_millis(claim) + Duration::from_secs(30);
        while !dynamo_items(moto, "pending").is_empty() {
            assert!(
                Instant::now() < deadline,
                "claimed rows never went out; stderr:\n{}",
                daemon.stderr_text()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let (status, out, err) = daemon.stop("-TERM");
    assert!(status.success(), "final run: {status}; stderr:\n{err}");
    printed.extend(out);

    // The state: each event exactly once, nothing else, everything delivered, intact.
    let counts = store.alert_counts(&setup);
    let in_state: BTreeSet<String> = counts.keys().cloned().collect();
    assert_eq!(
        in_state, expected,
        "seed {seed}: the alerts table holds exactly the matching events"
    );
    let twice: Vec<(&String, &u64)> = counts.iter().filter(|(_, &n)| n != 1).collect();
    assert!(
        twice.is_empty(),
        "seed {seed}: alerts recorded more than once: {twice:?}"
    );
    assert_eq!(
        store.undelivered(&setup),
        0,
        "every alert was delivered on stdout in the end; the final run's stderr:\n{err}"
    );

    // stdout: each at least once; repeats only from kills between print and delivered mark.
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for line in &printed {
        *times.entry(event_id_of(line)).or_default() += 1;
    }
    let printed_ids: BTreeSet<String> = times.keys().cloned().collect();
    assert_eq!(printed_ids, expected, "seed {seed}: every event printed");
    let duplicates: usize = times.values().map(|n| n - 1).sum();
    let report = format!(
        "crash trials ({}): seed {seed}, {trials} trials, {kills} SIGKILLs (50-1500 ms after start), \
         {} events ({INITIAL_EVENTS} at start, {late} added late); during the trials \
         {recorded_in_trials} alerts recorded and {printed_in_trials} lines printed, \
         {trials_printing} trials printed something; in the end {} alerts in state (each once), \
         {} lines on stdout, {duplicates} printed twice, integrity ok, {:.0} s\n",
        match store {
            Store::Sqlite => "SQLite",
            Store::Dynamo(_) => "DynamoDB",
        },
        expected.len(),
        counts.len(),
        printed.len(),
        started.elapsed().as_secs_f64()
    );
    println!("{report}");
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(match store {
            Store::Sqlite => "target/crash-trials.txt",
            Store::Dynamo(_) => "target/crash-trials-dynamodb.txt",
        }),
        &report,
    );
    assert!(
        duplicates <= kills,
        "seed {seed}: {duplicates} repeats on stdout for {kills} kills"
    );
}

/// SIGKILL, then the exit status and what the process wrote.
fn daemon_kill(daemon: &mut Daemon) -> (std::process::ExitStatus, Vec<String>, String) {
    daemon.child.kill().expect("SIGKILL is delivered");
    let status = daemon.child.wait().expect("the killed process is reaped");
    daemon.join_readers();
    let out = daemon.stdout.lock().unwrap().clone();
    (status, out, daemon.stderr_text())
}

// ---------------------------------------------------------------------------------------
// One change, three rules, a SIGKILL between a channel's accept and the state's mark.
// ---------------------------------------------------------------------------------------

/// An HTTP proxy in front of moto that forwards every request and holds back moto's reply
/// to the first SNS `Publish` for `hold`: a rolewatch killed meanwhile has had its message
/// accepted (the subscribed queues hold it) and never heard so, so it has not marked it.
struct HoldFirstPublish {
    port: u16,
    /// Publish requests moto accepted (HTTP 200).
    accepted: Arc<AtomicUsize>,
}

impl HoldFirstPublish {
    fn start(upstream: u16, hold: Duration) -> HoldFirstPublish {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let _ = hold_connection(stream, upstream, &counter, hold);
                });
            }
        });
        HoldFirstPublish { port, accepted }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(AtomicOrdering::SeqCst)
    }
}

fn hold_connection(
    mut stream: TcpStream,
    upstream: u16,
    accepted: &AtomicUsize,
    hold: Duration,
) -> std::io::Result<()> {
    // One request per connection: the reply says `Connection: close`.
    let Some(request) = read_request(&stream)? else {
        return Ok(());
    };
    let is_publish = String::from_utf8_lossy(&request.body).contains("Action=Publish");
    let reply = request.forward(upstream)?;
    if is_publish && reply.status == 200 && accepted.fetch_add(1, AtomicOrdering::SeqCst) == 0 {
        std::thread::sleep(hold);
    }
    let content_type = reply
        .header("Content-Type")
        .unwrap_or("text/xml")
        .to_owned();
    write!(
        stream,
        "HTTP/1.1 {} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reply.body.len()
    )?;
    stream.write_all(&reply.body)?;
    stream.flush()
}

/// The config of the three-rule crash test: `documented`, `complete` and a rule of the
/// user's, all matching one AttachRolePolicy; stdout, SNS (through the proxy) and SMTP, in
/// that order (the outbox serves channels in configuration order).
fn three_rules_three_channels(setup: &Setup, topic_arn: &str, smtp_port: u16) -> PathBuf {
    setup.config(&format!(
        "[[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\nmax_requests_per_sec = 2\npoll_interval_secs = 1\n\n\
         [[rule]]\npack = \"documented\"\n\n\
         [[rule]]\npack = \"complete\"\n\n\
         [[rule]]\nname = \"mine\"\nseverity = \"critical\"\n\
         pattern = '{{ $.eventName = AttachRolePolicy }}'\n\n\
         [[channel]]\ntype = \"stdout\"\nname = \"out\"\n\n\
         {}\n\
         [[channel]]\ntype = \"smtp\"\nname = \"mail\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\n\
         from = \"rolewatch@example.com\"\nto = [\"oncall@example.com\"]\ntls = \"none\"\nallow_plaintext = true\n\n\
         [admin]\nenabled = false\n",
        crate::notify::sns_channel(topic_arn)
    ))
}

/// The alert lines (rule matches) a run printed.
fn alert_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["origin"] == "rule")
        .collect()
}

/// SIGKILL between accept and mark, with `documented`, `complete` and a user rule all
/// matching ONE event. The channels deliver side by side, so the first run is killed while
/// moto holds the SNS message it accepted (the reply held back by a proxy) AND aiosmtpd holds
/// the mail it saved (its 250 delayed). The second start resends each once — every time
/// with the same dedup key (SNS: the same message attributes; SMTP: the same Message-ID) —
/// and marks them; the state holds one alert for the change, listing the three rules,
/// delivered on every channel; a third start sends nothing.
#[test]
fn crash_between_accept_and_mark_with_three_rules_resends_one_alert_at_most_once_per_channel() {
    let lookup = LookupServer::start();
    let moto = Moto::start();
    let topic = topic_with_queues(&moto, "rolewatch-crash");
    let hold = Duration::from_secs(60);
    let proxy = HoldFirstPublish::start(moto.port(), hold);
    let smtp = SmtpServer::start(SmtpOptions {
        delay_first_ms: 60_000,
        ..SmtpOptions::default()
    });
    let mut r = cloudtrail_record("attach-crash", "AttachRolePolicy", now_secs() - 120);
    r["requestParameters"] = json!({
        "roleName": ROLE,
        "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"
    });
    lookup.add_events(&[r]);
    let setup = Setup::new();
    let config = three_rules_three_channels(&setup, &topic.arn, smtp.port());
    let rolewatch = |args: &[&str]| {
        let mut cmd = command(Some(&lookup), Some(&moto));
        cmd.args(args).arg("--config").arg(&config);
        cmd.env("AWS_ENDPOINT_URL_SNS", proxy.endpoint());
        cmd
    };
    let mut printed: Vec<String> = Vec::new();

    // First start: stdout prints and marks; moto accepts the SNS message and aiosmtpd saves
    // the mail, both replies held; SIGKILL.
    let mut first = Daemon::spawn(rolewatch(&["run"]));
    assert!(
        wait_until(Duration::from_secs(40), || proxy.accepted() >= 1
            && smtp.received() >= 1),
        "no SNS publish and mail; stderr:\n{}",
        first.stderr_text()
    );
    let (status, out, _) = daemon_kill(&mut first);
    assert_eq!(ExitStatusExt::signal(&status), Some(9));
    printed.extend(out);
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(smtp.received(), 1);

    // Second start: the pending SNS row and mail go again (not held now); then SIGTERM.
    let second = Daemon::spawn(rolewatch(&["run"]));
    smtp.wait_for(2, Duration::from_secs(40));
    assert!(
        wait_until(Duration::from_secs(40), || proxy.accepted() >= 2),
        "no SNS resend; stderr:\n{}",
        second.stderr_text()
    );
    second.wait_for(Duration::from_secs(20), "the resend to be logged", |d| {
        d.stderr_text()
            .contains("Delivered alerts left pending by an earlier run")
    });
    let (status, out, err) = second.stop("-TERM");
    assert!(status.success(), "{status}; stderr:\n{err}");
    printed.extend(out);

    // Third start: nothing left to send.
    let third = rolewatch(&["once"]).output().expect("rolewatch once runs");
    assert_exit(&third, 0);
    printed.extend(stdout(&third).lines().map(str::to_owned));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(proxy.accepted(), 2, "no SNS message after the second start");
    assert_eq!(smtp.received(), 2, "no mail after the second start");

    // stdout: printed once (it was marked before the first kill), with the change's key.
    let on_stdout = alert_lines(&printed);
    assert_eq!(on_stdout.len(), 1, "{printed:#?}");
    let alert = &on_stdout[0];
    assert_eq!(alert["event_id"], "attach-crash");
    assert_eq!(alert["rules"], json!(["mine", "documented", "complete"]));
    let key = alert["dedup_key"].as_str().expect("dedup_key").to_owned();
    assert_eq!(key.len(), 32);
    let subject = alert["subject"].as_str().expect("subject").to_owned();
    assert!(
        subject.ends_with("[rules mine, documented, complete]"),
        "{subject}"
    );

    // SNS: twice (the resend after the first kill), the same attributes both times.
    let raw = drain_queue(&moto, &topic.raw);
    assert_eq!(raw.len(), 2, "{raw:#?}");
    assert_eq!(
        raw[0]["MessageAttributes"], raw[1]["MessageAttributes"],
        "the resend carries the same attributes"
    );
    let attrs = &raw[0]["MessageAttributes"];
    assert_eq!(attrs["dedup_key"]["StringValue"], key.as_str());
    assert_eq!(attrs["rule"]["StringValue"], "mine");
    assert_eq!(attrs["severity"]["StringValue"], "critical");
    for m in &raw {
        let body: Value = serde_json::from_str(m["Body"].as_str().unwrap()).unwrap();
        assert_eq!(body["dedup_key"], key.as_str());
        assert_eq!(body["event_id"], "attach-crash");
        assert_eq!(body["rules"], alert["rules"]);
        assert_eq!(body["subject"], subject.as_str());
    }
    let wrapped = drain_queue(&moto, &topic.wrapped);
    assert_eq!(wrapped.len(), 2, "{wrapped:#?}");
    let envelopes: Vec<Value> = wrapped
        .iter()
        .map(|m| serde_json::from_str(m["Body"].as_str().unwrap()).unwrap())
        .collect();
    for e in &envelopes {
        assert_eq!(e["Subject"], subject.as_str());
        assert_eq!(e["MessageAttributes"], envelopes[0]["MessageAttributes"]);
        assert_eq!(e["MessageAttributes"]["dedup_key"]["Value"], key.as_str());
    }

    // SMTP: twice (the resend after the kill), the same Message-ID and Subject.
    let messages = smtp.messages();
    assert_eq!(messages.len(), 2);
    let header = |m: &Value, name: &str| -> String {
        let values: Vec<&str> = m["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .filter(|h| h[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
            .filter_map(|h| h[1].as_str())
            .collect();
        assert_eq!(values.len(), 1, "{name} in {m:#}");
        values[0].to_owned()
    };
    for m in &messages {
        assert_eq!(
            header(m, "Message-ID"),
            format!("<rolewatch.{key}@example.com>")
        );
        assert_eq!(header(m, "Subject"), subject);
    }

    // The state: one alert for the change, the three rules, delivered on every channel.
    let conn = rusqlite::Connection::open(setup.state_path()).unwrap();
    let rows: Vec<(i64, String, String, Option<String>)> = conn
        .prepare("SELECT id, rule, rules, dedup_key FROM alerts WHERE event_id = 'attach-crash'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 1, "one alert row for the change: {rows:?}");
    let (id, rule, rules, dedup) = &rows[0];
    assert_eq!(rule, "mine");
    let rules: Value = serde_json::from_str(rules).unwrap();
    assert_eq!(rules, json!(["mine", "documented", "complete"]));
    assert_eq!(dedup.as_deref(), Some(key.as_str()));
    let all_alerts: i64 = conn
        .query_row(
            "SELECT count(*) FROM alerts WHERE origin = 'rule'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(all_alerts, 1);
    let deliveries: BTreeMap<String, (String, i64)> = conn
        .prepare("SELECT channel, status, attempts FROM deliveries WHERE alert_id = ?1")
        .unwrap()
        .query_map([id], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let statuses: BTreeMap<&str, &str> = deliveries
        .iter()
        .map(|(c, (s, _))| (c.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        statuses,
        BTreeMap::from([
            ("mail", "delivered"),
            ("out", "delivered"),
            ("sns", "delivered")
        ]),
        "{deliveries:?}"
    );
}
