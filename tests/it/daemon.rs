//! `rolewatch run` as a service, end to end against the LookupEvents test server on
//! loopback: cron scheduling, alerts on stdout, the SIGTERM drain, "rolewatch cannot see"
//! and its recovery, `/healthz`, `/readyz` transitions and `/metrics` counters; and the exit
//! codes of `once`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{cloudtrail_record, free_port, http, LookupServer};
use crate::support::{command, now_secs, run_with, Daemon, Setup};
use crate::{assert_exit, stderr};

/// A config polling every second, with the admin endpoint on `port`. No sweep: these tests
/// count the polls' requests and retries (the sweep has tests of its own in alert_stream.rs).
fn config(setup: &Setup, port: u16, daemon: &str) -> std::path::PathBuf {
    setup.config(&format!(
        "[[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\nmax_requests_per_sec = 2\n\
         schedule = \"* * * * * *\"\nsweep_interval_secs = 0\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [daemon]\nshutdown_grace_secs = 5\n{daemon}\n"
    ))
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    http(port, "GET", path, &[], b"")
        .ok()
        .map(|r| (r.status, String::from_utf8_lossy(&r.body).into_owned()))
}

/// The value of one sample line of `/metrics`, e.g. `rolewatch_poll_completed_total{source="ct"}`.
fn metric(port: u16, sample: &str) -> f64 {
    let (_, text) = get(port, "/metrics").expect("/metrics answers");
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn notices(d: &Daemon, rule: &str) -> Vec<Value> {
    d.stdout
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["rule"] == rule)
        .collect()
}

fn ready_status(port: u16) -> u16 {
    get(port, "/readyz").map_or(0, |(s, _)| s)
}

/// `rolewatch healthcheck ARGS…`: exit status and stdout.
fn healthcheck(args: &[&str]) -> (i32, String) {
    let out = command(None, None)
        .arg("healthcheck")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn run_polls_on_its_cron_schedule_serves_admin_and_drains_on_sigterm() {
    let server = LookupServer::start();
    let setup = Setup::new();
    let port = free_port();
    let config = config(&setup, port, "");
    let daemon = Daemon::start(&server, &config);
    daemon.wait_for(Duration::from_secs(20), "/healthz", |_| {
        get(port, "/healthz").is_some_and(|(s, _)| s == 200)
    });
    daemon.wait_for(Duration::from_secs(20), "/readyz 200", |_| {
        ready_status(port) == 200
    });
    // The container probe: the admin address from the same config.
    let cfg = config.to_str().unwrap();
    let (code, out) = healthcheck(&["--config", cfg]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("ok 200 http://127.0.0.1:{port}/healthz")),
        "{out}"
    );
    let (code, out) = healthcheck(&["--config", cfg, "--ready"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/readyz"), "{out}");
    let polls = metric(port, "rolewatch_poll_completed_total{source=\"ct\"}");
    assert!(polls >= 1.0);
    // An event injected while it runs is alerted on the next ticks.
    server.add_events(&[cloudtrail_record(
        "sched-1",
        "AttachRolePolicy",
        now_secs() - 5,
    )]);
    daemon.wait_for(Duration::from_secs(20), "the alert", |d| {
        d.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("\"sched-1\""))
    });
    daemon.wait_for(Duration::from_secs(10), "more polls", |_| {
        metric(port, "rolewatch_poll_completed_total{source=\"ct\"}") >= polls + 2.0
    });
    let text = get(port, "/metrics").unwrap().1;
    for name in [
        "rolewatch_events_seen_total{source=\"ct\"}",
        "rolewatch_alerts_recorded_total{source=\"ct\"} 1",
        "rolewatch_alert_deliveries_total{channel=\"stdout\",outcome=\"delivered\"} 1",
        "rolewatch_source_lag_seconds{source=\"ct\"}",
        "rolewatch_last_success_timestamp_seconds{source=\"ct\"}",
        "rolewatch_outbox_pending 0",
        "rolewatch_coverage_gaps_recorded 0",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    // JSON log lines when stderr is not a terminal, with the counter's name as `event`.
    let err = daemon.stderr_text();
    assert!(
        err.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| v["event"] == "poll_completed" && v["source"] == "ct"),
        "{err}"
    );
    let started = Instant::now();
    let (status, _out, err) = daemon.stop("-TERM");
    assert_eq!(status.code(), Some(0), "{err}");
    // The grace is 5 s; the drain is bounded by it (plus process exit).
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "not within the grace: {:?}\n{err}",
        started.elapsed()
    );
    assert!(err.contains("Stopped"), "{err}");
}

#[test]
fn a_failing_source_says_rolewatch_cannot_see_then_recovers_and_readyz_follows() {
    let server = LookupServer::start();
    // Failing from the start: every request of the first poll's first four attempts.
    server.faults(json!({"error_5xx_next": 4}));
    let setup = Setup::new();
    let port = free_port();
    let config = config(&setup, port, "blind_after_secs = 2");
    let daemon = Daemon::start(&server, &config);
    daemon.wait_for(Duration::from_secs(20), "/readyz 503", |_| {
        ready_status(port) == 503
    });
    let (code, out) = healthcheck(&["--config", config.to_str().unwrap(), "--ready"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("FAILED 503 "), "{out}");
    assert!(out.contains("\"ct\""), "the body names the source: {out}");
    // Alive all the same.
    let (code, out) = healthcheck(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let (_, body) = get(port, "/readyz").unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["sources"]["ct"]["ready"], false, "{body}");
    assert!(body["sources"]["ct"]["reason"].is_string(), "{body}");
    daemon.wait_for(Duration::from_secs(10), "the cannot-see notice", |d| {
        !notices(d, "rolewatch-source-blind").is_empty()
    });
    let blind = &notices(&daemon, "rolewatch-source-blind")[0];
    let text = blind["notice"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("rolewatch cannot see: source ct failing since "),
        "{blind}"
    );
    assert!(
        daemon
            .stderr_text()
            .lines()
            .any(|l| l.contains("\"level\":\"ERROR\"") && l.contains("source_blind")),
        "logged at ERROR"
    );
    // The retries get through: recovery notice and ready.
    daemon.wait_for(Duration::from_secs(40), "the recovery notice", |d| {
        !notices(d, "rolewatch-source-recovered").is_empty()
    });
    daemon.wait_for(Duration::from_secs(10), "/readyz 200", |_| {
        ready_status(port) == 200
    });
    // Break it again: not ready within a few intervals, blind again, then fine again.
    server.faults(json!({"error_5xx_next": 4}));
    daemon.wait_for(Duration::from_secs(20), "/readyz 503 again", |_| {
        ready_status(port) == 503
    });
    daemon.wait_for(Duration::from_secs(40), "/readyz 200 again", |_| {
        ready_status(port) == 200
    });
    daemon.wait_for(Duration::from_secs(10), "the second recovery", |d| {
        notices(d, "rolewatch-source-recovered").len() == 2
    });
    assert_eq!(notices(&daemon, "rolewatch-source-blind").len(), 2);
    assert_eq!(
        metric(port, "rolewatch_source_blind_total{source=\"ct\"}"),
        2.0
    );
    assert_eq!(
        metric(port, "rolewatch_source_recovered_total{source=\"ct\"}"),
        2.0
    );
    // A poll that retries for seconds on a 1 s schedule: ticks were skipped, not doubled.
    assert!(metric(port, "rolewatch_poll_skipped_total{source=\"ct\"}") >= 1.0);
    assert!(metric(port, "rolewatch_request_retries_total{source=\"ct\"}") >= 8.0);
    let (status, _, err) = daemon.stop("-INT");
    assert_eq!(status.code(), Some(0), "{err}");
}

#[test]
fn healthcheck_fails_fast_when_nothing_listens_and_refuses_a_disabled_endpoint() {
    let port = free_port();
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let (code, out) = healthcheck(&["--url", &url, "--timeout-secs", "3"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with(&format!("FAILED {url}: ")), "{out}");
    assert!(out.contains("refused"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let setup = Setup::new();
    let cfg = setup.config("[admin]\nenabled = false\n");
    let (code, out) = healthcheck(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("disabled"), "{out}");
    let (code, _) = healthcheck(&["--url", "https://127.0.0.1:1/healthz"]);
    assert_eq!(code, 2);
}

#[test]
fn once_exits_0_when_everything_worked_and_1_when_a_source_failed() {
    let server = LookupServer::start();
    server.add_events(&[cloudtrail_record(
        "once-1",
        "AttachRolePolicy",
        now_secs() - 60,
    )]);
    let setup = Setup::new();
    let config = setup.config(
        "[[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\nmax_requests_per_sec = 2\n\n\
         [admin]\nenabled = false\n",
    );
    let out = run_with(Some(&server), None, &["once"], &config);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("once-1"));
    // A source that refuses every request (HTTP 404 from a wrong endpoint path: permanent).
    let out = command(None, None)
        .env(
            "AWS_ENDPOINT_URL_CLOUDTRAIL",
            format!("{}/not-cloudtrail", server.endpoint()),
        )
        .args(["once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("poll_failed"), "{}", stderr(&out));
}

#[test]
fn an_invalid_schedule_is_a_config_error_naming_the_key() {
    let setup = Setup::new();
    let config = setup.config(
        "[[source]]\ntype = \"cloudtrail\"\nschedule = \"*/5 * * * *\"\n\n[daemon]\nlog_format = \"xml\"\n",
    );
    let out = command(None, None)
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_exit(&out, 78);
    let err = stderr(&out);
    assert!(
        err.contains("source[0].schedule") && err.contains("6"),
        "{err}"
    );
    assert!(err.contains("daemon.log_format"), "{err}");
}

// ---------------------------------------------------------------------------------------
// The bound on the "cannot see" notice (issue 18): blind_after_failures consecutive failed
// polls, each bounded by the retry budget.
// ---------------------------------------------------------------------------------------

/// How the source fails in [`blind_notice_within_its_bound`].
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// HTTP 400 `ThrottlingException` on every request.
    Throttled,
    /// HTTP 503 on every request.
    ServerError,
    /// Nothing listens on the endpoint.
    Refused,
}

const BOUND_RETRY_BUDGET_SECS: u64 = 4;
/// After a failed poll, the next one comes this soon until the source is blind.
const BOUND_CONFIRM_PAUSE_SECS: u64 = 1;
const BOUND_FAILURES: u64 = 3;

/// Starts `rolewatch run` against a source that fails in `how` from its first request, and
/// returns the time from the start of the process (before its first request) to the
/// "cannot see" notice on stdout, which must be within the README's bound:
/// `failures × (retry_budget + slot + request) + (failures − 1) × 1 s`, with a request slot
/// (0.55 s at 2 requests/s) and a fast failing request taken as 1 s together — whatever the
/// schedule: the source keeps the default, every minute, which alone would put two minutes
/// between three failed polls.
fn blind_notice_within_its_bound(how: Failure) -> Duration {
    let server = LookupServer::start();
    match how {
        Failure::Throttled => {
            server.faults(json!({"throttle_next": 1_000_000}));
        }
        Failure::ServerError => {
            server.faults(json!({"error_5xx_next": 1_000_000, "status_5xx": 503}));
        }
        Failure::Refused => {}
    }
    let setup = Setup::new();
    let config = setup.config(&format!(
        "[[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\nmax_requests_per_sec = 2\n\
         retry_budget_secs = {BOUND_RETRY_BUDGET_SECS}\n\
         sweep_interval_secs = 0\n\n[admin]\nenabled = false\n\n\
         [daemon]\nshutdown_grace_secs = 5\nblind_after_failures = {BOUND_FAILURES}\nblind_after_secs = 600\n"
    ));
    let mut cmd = command(Some(&server), None);
    if let Failure::Refused = how {
        cmd.env(
            "AWS_ENDPOINT_URL_CLOUDTRAIL",
            format!("http://127.0.0.1:{}", free_port()),
        );
    }
    cmd.args(["run", "--config"]).arg(&config);
    let started = Instant::now();
    let daemon = Daemon::spawn(cmd);
    let bound = Duration::from_secs(
        BOUND_FAILURES * (BOUND_RETRY_BUDGET_SECS + 1)
            + (BOUND_FAILURES - 1) * BOUND_CONFIRM_PAUSE_SECS,
    );
    daemon.wait_for(
        bound + Duration::from_secs(10),
        "the cannot-see notice",
        |d| !notices(d, "rolewatch-source-blind").is_empty(),
    );
    let took = started.elapsed();
    let blind = &notices(&daemon, "rolewatch-source-blind")[0];
    let err = daemon.stderr_text();
    let (status, _, _) = daemon.stop("-TERM");
    assert_eq!(status.code(), Some(0));
    eprintln!("{how:?}: the cannot-see notice came {took:?} after the start (bound {bound:?})");
    assert!(
        took <= bound,
        "{how:?}: {took:?} > {bound:?}; {blind}\n{err}"
    );
    // After exactly the configured number of failed polls, each ended by its budget (or by
    // its retries) with the error of its last request.
    let text = blind["notice"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("rolewatch cannot see: source ct failing since "),
        "{blind}"
    );
    let failed: Vec<Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "poll_failed")
        .collect();
    assert!(failed.len() >= 3, "{err}");
    let what = match how {
        Failure::Throttled => "Throttling",
        Failure::ServerError => "503",
        Failure::Refused => "onnect",
    };
    assert!(
        failed[0].to_string().contains(what),
        "{how:?}: {:#}",
        failed[0]
    );
    if let Failure::Throttled | Failure::ServerError = how {
        let stats = server.stats();
        assert!(
            stats["requests_total"].as_u64().unwrap_or(0) >= 6,
            "retried within the budget: {stats}"
        );
    }
    took
}

#[test]
fn the_cannot_see_notice_comes_within_its_bound_when_throttled() {
    blind_notice_within_its_bound(Failure::Throttled);
}

#[test]
fn the_cannot_see_notice_comes_within_its_bound_on_5xx() {
    blind_notice_within_its_bound(Failure::ServerError);
}

#[test]
fn the_cannot_see_notice_comes_within_its_bound_when_connections_are_refused() {
    blind_notice_within_its_bound(Failure::Refused);
}
