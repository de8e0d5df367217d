//! The alert stream's promises, end to end with the real binary: one alert per change however
//! many rules match it (one delivery per channel), and every change reported once however late
//! CloudTrail delivers it — inside the overlap by the polls, later by the reconciliation
//! sweep (counted, its lateness observed, the alert marked), later than the sweep's lookback
//! not at all (the documented bound).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{cloudtrail_record, free_port, http, wait_until, LookupServer, Moto};
use crate::support::{
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
    let smtp = crate::support::SmtpServer::start(Default::default());
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

// ---------------------------------------------------------------------------------------
// What the sweep costs in requests (issue 11 §2).
// ---------------------------------------------------------------------------------------

/// The most events one LookupEvents page holds (rolewatch asks for that many).
const PAGE: usize = 50;

/// The event names the packs `a+b+…` watch, as the packs list them: the documented
/// pattern's `$.eventName` values; `complete`'s role-changing events (tags included, the
/// default of `[vendor] tags_gate_access`); several packs, the union. A CloudTrail source
/// makes one lookup per name.
fn watched_names(packs: &str) -> Vec<String> {
    let names: std::collections::BTreeSet<String> = packs.split('+').flat_map(pack_names).collect();
    names.into_iter().collect()
}

fn pack_names(pack: &str) -> Vec<String> {
    match pack {
        "documented" => filter_pattern::FilterPattern::new(rolewatch::rules::DOCUMENTED_PATTERN)
            .expect("the documented pattern parses")
            .required_values("$.eventName")
            .expect("the documented pattern pins its event names")
            .into_iter()
            .collect(),
        "complete" => rolewatch::rules::packs::role_changing_events(
            rolewatch::config::vendor::VendorConfig::default().tags_gate_access,
        )
        .into_iter()
        .map(str::to_owned)
        .collect(),
        other => panic!("no pack {other}"),
    }
}

/// How the events of a scenario are spread over the watched names.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Round-robin over every watched name.
    Spread,
    /// All on one name (AttachRolePolicy, watched by both packs): the most pages.
    OneName,
}

/// What one `rolewatch once` cost: LookupEvents requests of its poll and of its sweep, per
/// event name, as the server counted them; the sweep's own count and duration from its log.
#[derive(Debug)]
struct Cost {
    pack: &'static str,
    layout: Layout,
    events: usize,
    names: usize,
    poll: BTreeMap<String, u64>,
    sweep: BTreeMap<String, u64>,
    sweep_logged_requests: u64,
    sweep_elapsed_ms: u64,
    expected_sweep: u64,
}

/// `n` events of the watched names in the last 24 h, none in the poll's window, all seen by
/// earlier polls (in the seen set, as a daemon that ran all day leaves them): one `once`
/// with the source's defaults (1 request/s, lookback 24 h, overlap 20 min) polls quietly and
/// sweeps the lookback, which LookupEvents returns page by page.
fn measure_sweep(pack: &'static str, layout: Layout, n: usize) -> Cost {
    let names = watched_names(pack);
    let server = LookupServer::start();
    let setup = Setup::new();
    let rules: String = pack
        .split('+')
        .map(|p| format!("[[rule]]\npack = \"{p}\"\n\n"))
        .collect();
    let config = setup.config(&format!(
        "[[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\n\n{rules}\
         [[channel]]\ntype = \"stdout\"\nname = \"out\"\n\n[admin]\nenabled = false\n"
    ));
    let now = now_secs();
    let cursor_ms = now * 1000;
    // Between 23 h and 1 h ago: inside the sweep's [now − 24 h, cursor − 20 min), outside
    // the poll's [cursor − 20 min, now). Near misses (another role, another policy): the
    // lookups return them all the same, and no alert clutters the figures.
    let span = 22 * 3600;
    let mut per_name: BTreeMap<String, usize> = names.iter().map(|n| (n.clone(), 0)).collect();
    let records: Vec<Value> = (0..n)
        .map(|i| {
            let name = match layout {
                Layout::Spread => names[i % names.len()].as_str(),
                Layout::OneName => "AttachRolePolicy",
            };
            *per_name.get_mut(name).expect("a watched name") += 1;
            let time = now - 23 * 3600 + (i as i64 * span) / n.max(1) as i64;
            crate::support::other_role_record(&format!("cost-{i:05}"), name, time)
        })
        .collect();
    server.add_events(&records);
    let ids: Vec<(String, i64)> = records
        .iter()
        .map(|r| {
            let t = humantime::parse_rfc3339(r["eventTime"].as_str().unwrap())
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            (r["eventID"].as_str().unwrap().to_owned(), t)
        })
        .collect();
    crate::support::open_state(&setup.state_path())
        .commit_poll(&rolewatch::state::PollCommit {
            source_id: "ct",
            cursor_ms,
            now_ms: cursor_ms,
            seen: ids
                .iter()
                .map(|(id, t)| rolewatch::state::SeenEvent {
                    event_id: id,
                    event_time_ms: *t,
                    expires_ms: cursor_ms + 2 * 86_400_000,
                })
                .collect(),
            alerts: Vec::new(),
            channels: Vec::new(),
            gaps: Vec::new(),
        })
        .unwrap();

    let out = run_with(Some(&server), None, &["once"], &config);
    assert_exit(&out, 0);
    assert!(alerts(&out).is_empty(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        !err.contains("\"event\":\"late_event\""),
        "the polls saw every event: {err}"
    );
    let stats = server.stats();
    let requests = stats["recent_requests"]
        .as_array()
        .expect("recent requests");
    assert_eq!(
        requests.len() as u64,
        stats["requests_total"].as_u64().unwrap(),
        "every request is in the server's recent list"
    );
    // The poll reads from cursor − 20 min, the sweep from now − 24 h.
    let poll_start = (cursor_ms / 1000 - 20 * MIN) as f64;
    let (mut poll, mut sweep) = (BTreeMap::new(), BTreeMap::new());
    for r in requests {
        assert_eq!(r["operation"], "LookupEvents", "{r}");
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["max_results"], PAGE, "{r}");
        assert_eq!(r["attribute"]["AttributeKey"], "EventName", "{r}");
        let name = r["attribute"]["AttributeValue"]
            .as_str()
            .unwrap()
            .to_owned();
        let start = r["start_time"].as_f64().expect("StartTime");
        let side = if start >= poll_start - 60.0 {
            &mut poll
        } else {
            assert!(start <= (now - 24 * 3600 + 60) as f64, "{r}");
            &mut sweep
        };
        *side.entry(name).or_insert(0u64) += 1;
    }
    let line = err
        .lines()
        .find(|l| l.contains("\"event\":\"sweep_completed\""))
        .unwrap_or_else(|| panic!("no sweep_completed: {err}"));
    let line: Value = serde_json::from_str(line).unwrap();
    let field = |k: &str| {
        line[k]
            .as_u64()
            .or_else(|| line["fields"][k].as_u64())
            .unwrap_or_else(|| panic!("no {k} in {line}"))
    };
    let expected_sweep = per_name
        .values()
        .map(|&k| k.div_ceil(PAGE).max(1) as u64)
        .sum();
    Cost {
        pack,
        layout,
        events: n,
        names: names.len(),
        poll,
        sweep,
        sweep_logged_requests: field("requests"),
        sweep_elapsed_ms: field("elapsed_ms"),
        expected_sweep,
    }
}

/// The request cost of the reconciliation sweep, for the documented pattern and for
/// `pack = "complete"`, over a lookback holding 0, 100 and 1000 events (spread over the
/// watched names, and 1000 on one name): a quiet poll is one request per watched name; a
/// sweep is one request per watched name plus one per further page of 50 events of that
/// name; at the default 1 request/s the sweep takes at least a second per request. The
/// figures are printed (`--nocapture`) and written to `target/sweep-cost.txt`
/// (bench/RESULTS.md, "Sweep cost results").
#[test]
fn sweep_costs_one_request_per_watched_name_and_page() {
    let mut scenarios: Vec<(&'static str, Layout, usize)> = ["documented", "complete"]
        .into_iter()
        .flat_map(|p| {
            [
                (p, Layout::Spread, 0),
                (p, Layout::Spread, 100),
                (p, Layout::OneName, 100),
                (p, Layout::Spread, 1000),
                (p, Layout::OneName, 1000),
            ]
        })
        .collect();
    // The lint's advice taken: the vendor's rule kept and `complete` added.
    scenarios.push(("documented+complete", Layout::Spread, 0));
    scenarios.push(("documented+complete", Layout::Spread, 1000));
    // Each scenario has its own server, state and process (and so its own rate limiter).
    let costs: Vec<Cost> = std::thread::scope(|s| {
        let handles: Vec<_> = scenarios
            .iter()
            .map(|&(p, l, n)| s.spawn(move || measure_sweep(p, l, n)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a scenario panicked"))
            .collect()
    });

    let mut report = String::from(
        "sweep cost (one `rolewatch once`: a quiet poll, then the sweep of the last 24 h; \
         default 1 request/s)\n\
         packs                events  layout    names  poll  sweep  (expected)  sweep took\n",
    );
    for c in &costs {
        let poll: u64 = c.poll.values().sum();
        let sweep: u64 = c.sweep.values().sum();
        report.push_str(&format!(
            "{:<19}  {:>6}  {:<8}  {:>5}  {:>4}  {:>5}  ({:>8})  {:>6.1} s\n",
            c.pack,
            c.events,
            format!("{:?}", c.layout),
            c.names,
            poll,
            sweep,
            c.expected_sweep,
            c.sweep_elapsed_ms as f64 / 1000.0
        ));
    }
    println!("{report}");
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sweep-cost.txt"),
        &report,
    );

    for c in &costs {
        let what = format!("{} with {} events ({:?})", c.pack, c.events, c.layout);
        let names: std::collections::BTreeSet<String> = watched_names(c.pack).into_iter().collect();
        // A quiet poll: one lookup per watched name, nothing else.
        assert_eq!(
            c.poll
                .keys()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>(),
            names,
            "{what}: the poll looks up every watched name"
        );
        assert!(c.poll.values().all(|&k| k == 1), "{what}: {:?}", c.poll);
        // The sweep: every watched name, one request per page of 50 (at least one).
        assert_eq!(
            c.sweep
                .keys()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>(),
            names,
            "{what}: the sweep looks up every watched name"
        );
        let sweep: u64 = c.sweep.values().sum();
        assert_eq!(sweep, c.expected_sweep, "{what}: {:?}", c.sweep);
        assert_eq!(c.sweep_logged_requests, sweep, "{what}: the log's count");
        if c.events == 0 {
            assert_eq!(sweep, c.names as u64, "{what}: a quiet sweep");
        }
        // Paced by the source's limit (1/s by default, a slot 1.05 s apart): the sweep's
        // first request waits for the slot after the poll's last.
        assert!(
            c.sweep_elapsed_ms >= (sweep - 1) * 1000,
            "{what}: {sweep} requests in {} ms",
            c.sweep_elapsed_ms
        );
    }
}
