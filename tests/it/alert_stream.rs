//! The alert stream's promises, end to end with the real binary: one alert per change however
//! many rules match it (one delivery per channel), and every change reported once however late
//! CloudTrail delivers it — inside the overlap by the polls, later by the reconciliation
//! sweep (counted, its lateness observed, the alert marked), later than the sweep's lookback
//! not at all (the documented bound).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::servers::{cloudtrail_record, free_port, http, wait_until, LookupServer, Moto};
use crate::sources::{
    logs_call, now_ms, now_secs, put_records, run_with, set_cursor, Daemon, Setup, ROLE,
};
use crate::{assert_exit, stderr, stdout};

const MIN: i64 = 60;

fn alerts(out: &std::process::Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["origin"] == "rule")
        .collect()
}

fn rows_per_event(state: &std::path::Path) -> BTreeMap<String, (i64, String)> {
    let conn = rusqlite::Connection::open(state).expect("the state opens");
    let mut stmt = conn
        .prepare("SELECT event_id, count(*), group_concat(found_by) FROM alerts WHERE origin = 'rule' GROUP BY event_id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// `documented`, `complete` and a rule of the user's all match one AttachRolePolicy: one
/// alert naming the three rules, at the highest severity, delivered once on stdout and once
/// through SMTP; a second run sends nothing more.
#[test]
fn one_change_matched_by_three_rules_is_one_alert_and_one_delivery_per_channel() {
    let server = LookupServer::start();
    let smtp = crate::servers::SmtpServer::start(Default::default());
    let mut r = cloudtrail_record("attach-1", "AttachRolePolicy", now_secs() - 2 * MIN);
    r["requestParameters"] = json!({
        "roleName": ROLE,
        "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"
    });
    server.add_events(&[r]);
    let setup = Setup::new();
    let config = setup.config(&format!(
        "[[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\n\n\
         [[rule]]\npack = \"documented\"\n\n\
         [[rule]]\npack = \"complete\"\n\n\
         [[rule]]\nname = \"mine\"\nseverity = \"critical\"\n\
         pattern = '{{ $.eventName = AttachRolePolicy }}'\n\n\
         [[channel]]\ntype = \"stdout\"\nname = \"out\"\n\n\
         [[channel]]\ntype = \"smtp\"\nname = \"mail\"\nhost = \"127.0.0.1\"\nport = {}\n\
         from = \"rolewatch@example.com\"\nto = [\"oncall@example.com\"]\ntls = \"none\"\nallow_plaintext = true\n\n\
         [admin]\nenabled = false\n",
        smtp.port()
    ));
    let out = run_with(Some(&server), None, &["once"], &config);
    assert_exit(&out, 0);
    let got = alerts(&out);
    assert_eq!(got.len(), 1, "one alert on stdout:\n{}", stdout(&out));
    let a = &got[0];
    assert_eq!(a["event_id"], "attach-1");
    assert_eq!(a["severity"], "critical", "the highest of the rules'");
    assert_eq!(a["rule"], "mine", "the most severe rule heads the alert");
    assert_eq!(a["rules"], json!(["mine", "documented", "complete"]));
    let subject = a["subject"].as_str().unwrap();
    assert!(
        subject.ends_with("[rules mine, documented, complete]"),
        "{subject}"
    );
    let messages = smtp.wait_for(1, Duration::from_secs(20));
    assert_eq!(messages.len(), 1, "one email");
    let raw = smtp.raw(1);
    assert!(raw.contains("mine, documented, complete"), "{raw}");
    // The dedup key is the change's, whichever rules matched.
    let key = a["dedup_key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 32);

    let again = run_with(Some(&server), None, &["once"], &config);
    assert_exit(&again, 0);
    assert!(alerts(&again).is_empty(), "{}", stdout(&again));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(smtp.received(), 1, "no second email");
    assert_eq!(rows_per_event(&setup.state_path())["attach-1"].0, 1);
}

/// Events that become visible in LookupEvents 0, 5, 19, 25, 45 and 100 minutes and 23 hours
/// after their eventTime (the source's cursor already past them): the polls' 20-minute
/// overlap reports the first three, the sweep the rest, each exactly once, the late ones
/// marked with their lateness; an event 25 hours late is beyond the 24-hour lookback and not
/// reported.
#[test]
fn late_deliveries_up_to_the_lookback_are_reported_once_by_the_sweep() {
    let server = LookupServer::start();
    let setup = Setup::new();
    let config = setup.config(
        "[[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\nsweep_interval_secs = 1\n\n\
         [[channel]]\ntype = \"stdout\"\nname = \"out\"\n\n[admin]\nenabled = false\n",
    );
    let t0 = now_secs();
    // The cursor stands at now: every event below is in a window a poll already read.
    set_cursor(&setup.state_path(), "ct", now_ms());
    let lateness_min = [0, 5, 19, 25, 45, 100, 23 * 60, 25 * 60];
    let specs: Vec<Value> = lateness_min
        .iter()
        .map(|l| {
            let mut r = cloudtrail_record(&format!("late-{l}"), "AttachRolePolicy", t0 - l * MIN);
            r["requestParameters"]["roleName"] = json!(ROLE);
            json!({"record": r, "visible_after_ms": 10_000})
        })
        .collect();
    server.add_specs(&specs);

    // Not visible yet: the poll and the sweep (due: none ran) find nothing.
    let first = run_with(Some(&server), None, &["once"], &config);
    assert_exit(&first, 0);
    assert_eq!(
        server.stats()["events_visible"],
        0,
        "the first run was too slow"
    );
    assert!(alerts(&first).is_empty(), "{}", stdout(&first));
    assert!(
        stderr(&first).contains("sweep_completed"),
        "{}",
        stderr(&first)
    );
    assert!(wait_until(Duration::from_secs(15), || server.stats()
        ["events_visible"]
        == 8));

    let before = server.stats()["requests_total"].as_u64().unwrap();
    let second = run_with(Some(&server), None, &["once"], &config);
    assert_exit(&second, 0);
    let got: BTreeMap<String, Value> = alerts(&second)
        .into_iter()
        .map(|a| (a["event_id"].as_str().unwrap().to_owned(), a))
        .collect();
    let want: Vec<String> = lateness_min[..7]
        .iter()
        .map(|l| format!("late-{l}"))
        .collect();
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>().len(),
        7,
        "{}\n{}",
        stdout(&second),
        stderr(&second)
    );
    for (l, id) in lateness_min[..7].iter().zip(&want) {
        let a = &got[id];
        let late = *l > 20;
        assert_eq!(a["late_delivery"], late, "{id}: {a}");
        assert_eq!(a["found_by"], if late { "sweep" } else { "poll" }, "{id}");
        let lag_min = a["detection_lag_ms"].as_i64().unwrap() / 60_000;
        assert!(
            (lag_min - l).abs() <= 1,
            "{id}: reported {lag_min} min after it happened"
        );
    }
    assert!(!got.contains_key("late-1500"), "beyond the lookback");
    let err = stderr(&second);
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("\"event\":\"late_event\""))
            .count(),
        4,
        "{err}"
    );
    // The request cost: the poll and the sweep, one lookup per watched event name each (the
    // documented pattern's four), and nothing more on a quiet account.
    let used = server.stats()["requests_total"].as_u64().unwrap() - before;
    eprintln!("requests of one poll + one sweep with the documented pattern: {used}");
    assert_eq!(used, 8, "4 for the poll, 4 for the sweep");

    // Exactly once: later runs (sweeping again) add nothing.
    std::thread::sleep(Duration::from_millis(1100));
    let third = run_with(Some(&server), None, &["once"], &config);
    assert_exit(&third, 0);
    assert!(alerts(&third).is_empty(), "{}", stdout(&third));
    let rows = rows_per_event(&setup.state_path());
    assert_eq!(rows.len(), 7);
    assert!(rows.values().all(|(n, _)| *n == 1), "{rows:?}");
    assert_eq!(rows["late-19"].1, "poll");
    assert_eq!(rows["late-1380"].1, "sweep");
}

/// `run` sweeps at start, right after the first poll, when none ran within the interval: a
/// late event shows on `/metrics` as `rolewatch_late_events_total` and in the lateness
/// histogram, and its alert says how late it was.
#[test]
fn run_sweeps_at_start_and_counts_late_events_on_metrics() {
    let server = LookupServer::start();
    let setup = Setup::new();
    let port = free_port();
    let config = setup.config(&format!(
        "[[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\nschedule = \"0 0 * * * *\"\n\n\
         [[channel]]\ntype = \"stdout\"\nname = \"out\"\n\n\
         [admin]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    set_cursor(&setup.state_path(), "ct", now_ms());
    let mut r = cloudtrail_record("late-30", "DetachRolePolicy", now_secs() - 30 * MIN);
    r["requestParameters"]["roleName"] = json!(ROLE);
    server.add_events(&[r]);
    let daemon = Daemon::start(&server, &config);
    let metric = |sample: &str| -> f64 {
        http(port, "GET", "/metrics", &[], b"")
            .ok()
            .and_then(|r| {
                String::from_utf8_lossy(&r.body)
                    .lines()
                    .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            })
            .unwrap_or(0.0)
    };
    assert!(
        wait_until(Duration::from_secs(30), || metric(
            "rolewatch_late_events_total{source=\"ct\"}"
        ) == 1.0),
        "{}",
        daemon.stderr.lock().unwrap()
    );
    assert_eq!(
        metric("rolewatch_event_lateness_seconds_bucket{le=\"1800.0\",source=\"ct\"}"),
        0.0
    );
    assert_eq!(
        metric("rolewatch_event_lateness_seconds_bucket{le=\"3600.0\",source=\"ct\"}"),
        1.0
    );
    assert!(wait_until(Duration::from_secs(10), || daemon
        .stdout
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("\"late_delivery\":true"))));
    daemon.stop("-TERM");
}

/// CloudWatch Logs: an event ingested into the log group after the source's cursor passed its
/// timestamp (older than the window) is found by the sweep, once.
#[test]
fn cloudwatch_logs_events_ingested_late_are_found_by_the_sweep() {
    let moto = Moto::start();
    let group = "/aws/cloudtrail/late";
    let stream = "111122223333_CloudTrail_us-east-1";
    logs_call(&moto, "CreateLogGroup", &json!({"logGroupName": group}));
    logs_call(
        &moto,
        "CreateLogStream",
        &json!({"logGroupName": group, "logStreamName": stream}),
    );
    let setup = Setup::new();
    let config = setup.config(&format!(
        "[[source]]\ntype = \"cloudwatch_logs\"\nname = \"logs\"\nlog_group = \"{group}\"\n\
         sweep_interval_secs = 1\n\n\
         [[channel]]\ntype = \"stdout\"\nname = \"out\"\n\n[admin]\nenabled = false\n"
    ));
    set_cursor(&setup.state_path(), "logs", now_ms());
    let first = run_with(None, Some(&moto), &["once"], &config);
    assert_exit(&first, 0);
    assert!(alerts(&first).is_empty());
    // Ingested now, stamped 3 hours ago.
    let mut r = cloudtrail_record("logs-late", "AttachRolePolicy", now_secs() - 180 * MIN);
    r["requestParameters"]["roleName"] = json!(ROLE);
    put_records(&moto, group, stream, &[r]);
    std::thread::sleep(Duration::from_millis(1100));
    let second = run_with(None, Some(&moto), &["once"], &config);
    assert_exit(&second, 0);
    let got = alerts(&second);
    assert_eq!(got.len(), 1, "{}\n{}", stdout(&second), stderr(&second));
    assert_eq!(got[0]["found_by"], "sweep");
    assert_eq!(got[0]["late_delivery"], true);
    std::thread::sleep(Duration::from_millis(1100));
    let third = run_with(None, Some(&moto), &["once"], &config);
    assert_exit(&third, 0);
    assert!(alerts(&third).is_empty(), "{}", stdout(&third));
}
