//! The state backends side by side: the same scenarios — the essence of the SQLite state's
//! own tests — run against SQLite and against DynamoDB on moto (conditional writes and
//! transactions are enforced there), and what only a shared table has: a commit split over
//! several transactions, compressed records, the fenced lease between two replicas (with a
//! skewed clock), and outbox claims.

use std::collections::HashSet;
use std::time::Duration;

use rolewatch::config::DynamoConfig;
use rolewatch::state::{
    Backend, DeliveryStatus, DynamoState, FoundBy, Gap, Leadership, NewAlert, Origin, PollCommit,
    SeenEvent, State, StateError,
};

use crate::support::{sdk_config, Moto};

const CHANNELS: [&str; 2] = ["stdout", "sns"];
const LEASE_MS: i64 = 6_000;

fn seen(event_id: &str, event_time_ms: i64) -> SeenEvent<'_> {
    SeenEvent {
        event_id,
        event_time_ms,
        expires_ms: event_time_ms + 3_600_000,
    }
}

fn alert<'a>(rule: &'a str, event_id: &'a str, source_id: &'a str) -> NewAlert<'a> {
    NewAlert {
        rule,
        rules: vec![rule],
        severity: "high",
        origin: Origin::Rule,
        found_by: FoundBy::Poll,
        change_key: None,
        dedup_key: None,
        event_id,
        event_name: "PutRolePolicy",
        event_time_ms: 1_000,
        source_id,
        record: r#"{"eventID":"secret-record-body"}"#,
        channels: None,
    }
}

fn poll<'a>(source_id: &'a str, cursor_ms: i64, now_ms: i64) -> PollCommit<'a> {
    PollCommit {
        source_id,
        cursor_ms,
        now_ms,
        seen: Vec::new(),
        alerts: Vec::new(),
        channels: CHANNELS.to_vec(),
        gaps: Vec::new(),
    }
}

fn gap(source_id: &str, from_ms: i64, to_ms: i64) -> Gap {
    Gap {
        source_id: source_id.to_owned(),
        from_ms,
        to_ms,
        detected_ms: 50,
        reason: "older than the 90 days LookupEvents keeps".to_owned(),
    }
}

// The scenarios, against any backend.

fn the_cursor_never_moves_backwards(s: &mut dyn Backend) {
    assert_eq!(s.cursor("ct").unwrap(), None);
    assert_eq!(
        s.commit_poll(&poll("ct", 1_000, 1)).unwrap().cursor_ms,
        1_000
    );
    assert_eq!(s.commit_poll(&poll("ct", 500, 2)).unwrap().cursor_ms, 1_000);
    assert_eq!(s.cursor("ct").unwrap(), Some(1_000));
    assert_eq!(
        s.commit_poll(&poll("ct", 2_000, 3)).unwrap().cursor_ms,
        2_000
    );
    s.commit_poll(&poll("logs", 7, 4)).unwrap();
    assert_eq!(s.cursor("ct").unwrap(), Some(2_000));
    assert_eq!(s.cursor("logs").unwrap(), Some(7));
    let cursors = s.cursors().unwrap();
    assert_eq!(cursors.len(), 2);
    assert_eq!(cursors[0].source_id, "ct");
    assert_eq!(cursors[0].updated_ms, 3);
}

fn seen_event_ids_are_remembered_once_per_source(s: &mut dyn Backend) {
    let mut c = poll("ct", 100, 10);
    c.seen = vec![seen("e1", 1), seen("e2", 2), seen("e1", 1)];
    assert_eq!(s.commit_poll(&c).unwrap().seen_new, 2);
    let mut c = poll("ct", 200, 20);
    c.seen = vec![seen("e2", 2), seen("e3", 3)];
    assert_eq!(s.commit_poll(&c).unwrap().seen_new, 1);
    let found = s.seen_ids("ct", &["e1", "e2", "e3", "e4"]).unwrap();
    assert_eq!(found, ["e1", "e2", "e3"].map(String::from).into());
    assert!(s.seen_ids("logs", &["e1"]).unwrap().is_empty());
    assert!(s.seen_ids("ct", &[]).unwrap().is_empty());
    assert_eq!(s.stats().unwrap().seen, 3);
}

fn two_sources_seeing_one_event_make_one_alert(s: &mut dyn Backend) {
    let mut c = poll("ct", 100, 10);
    c.seen = vec![seen("e1", 1)];
    c.alerts = vec![
        alert("vendor-role", "e1", "ct"),
        alert("other-rule", "e1", "ct"),
    ];
    let first = s.commit_poll(&c).unwrap();
    assert_eq!(first.alerts.len(), 2);
    assert_eq!(first.alerts[0].rule, "vendor-role");
    assert_eq!(first.alerts[0].detected_ms, 10);
    assert_eq!(
        s.alert(first.alerts[0].id).unwrap().as_ref(),
        Some(&first.alerts[0])
    );
    let mut c = poll("logs", 100, 20);
    c.seen = vec![seen("e1", 1)];
    c.alerts = vec![alert("vendor-role", "e1", "logs")];
    assert!(s.commit_poll(&c).unwrap().alerts.is_empty());
    let mut c = poll("ct", 200, 30);
    c.alerts = vec![
        alert("vendor-role", "e1", "ct"),
        alert("vendor-role", "e1", "ct"),
    ];
    assert!(s.commit_poll(&c).unwrap().alerts.is_empty());
    // One alert per change key, whichever rules match it.
    let mut c = poll("ct", 300, 40);
    let mut a = alert("r1", "e9", "ct");
    a.change_key = Some("123456789012/e9");
    let mut b = alert("r2", "e9", "ct");
    b.change_key = Some("123456789012/e9");
    c.alerts = vec![a, b];
    assert_eq!(s.commit_poll(&c).unwrap().alerts.len(), 1);
    let stats = s.stats().unwrap();
    assert_eq!(stats.alerts, 3);
    assert_eq!(stats.undelivered, 6, "three alerts on two channels");
    assert_eq!(stats.seen, 2, "one row per source");
    assert_eq!(s.undelivered_alerts("stdout", 10).unwrap().len(), 3);
}

fn gaps_are_recorded_once(s: &mut dyn Backend) {
    let mut c = poll("ct", 100, 10);
    c.gaps = vec![gap("ct", 0, 50), gap("ct", 0, 50)];
    assert_eq!(s.commit_poll(&c).unwrap().gaps, vec![gap("ct", 0, 50)]);
    let mut c = poll("ct", 200, 20);
    c.gaps = vec![gap("ct", 0, 50), gap("ct", 60, 70)];
    assert_eq!(s.commit_poll(&c).unwrap().gaps, vec![gap("ct", 60, 70)]);
    let mut c = poll("logs", 200, 20);
    c.gaps = vec![gap("logs", 0, 50)];
    s.commit_poll(&c).unwrap();
    assert_eq!(
        s.gaps(Some("ct")).unwrap(),
        vec![gap("ct", 0, 50), gap("ct", 60, 70)]
    );
    assert_eq!(s.gaps(None).unwrap().len(), 3);
    assert_eq!(s.stats().unwrap().gaps, 3);
}

fn expired_seen_rows_are_pruned_for_the_committing_source(s: &mut dyn Backend) {
    let row = |id, expires_ms| SeenEvent {
        event_id: id,
        event_time_ms: 0,
        expires_ms,
    };
    let mut c = poll("ct", 100, 0);
    c.seen = vec![row("old", 10), row("edge", 20), row("new", 30)];
    s.commit_poll(&c).unwrap();
    let mut c = poll("logs", 100, 0);
    c.seen = vec![row("old", 10)];
    s.commit_poll(&c).unwrap();
    assert_eq!(s.commit_poll(&poll("ct", 100, 20)).unwrap().pruned, 1);
    assert_eq!(
        s.seen_ids("ct", &["old", "edge", "new"]).unwrap(),
        ["edge", "new"].map(String::from).into()
    );
    let mut c = poll("ct", 100, 20);
    c.seen = vec![row("edge", 40)];
    s.commit_poll(&c).unwrap();
    assert_eq!(s.commit_poll(&poll("ct", 100, 35)).unwrap().pruned, 1);
    assert_eq!(
        s.seen_ids("ct", &["edge", "new"]).unwrap(),
        ["edge"].map(String::from).into()
    );
    assert_eq!(s.seen_ids("logs", &["old"]).unwrap().len(), 1);
}

fn a_new_alert_is_due_once_analysed_or_after_the_wait(s: &mut dyn Backend) {
    let mut c = poll("ct", 100, 1_000);
    let mut notice = alert("rolewatch-source-blind", "n1", "ct");
    notice.origin = Origin::Notice;
    c.alerts = vec![alert("r", "e1", "ct"), alert("r", "e2", "ct"), notice];
    let ids: Vec<i64> = s
        .commit_poll(&c)
        .unwrap()
        .alerts
        .iter()
        .map(|a| a.id)
        .collect();
    let due = |s: &dyn Backend, now: i64| -> Vec<i64> {
        s.due_alerts("stdout", now, 10_000, 10)
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect()
    };
    assert_eq!(due(s, 2_000), vec![ids[2]]);
    assert_eq!(
        s.unanalysed_alerts(10).unwrap().len(),
        2,
        "notices are never analysed"
    );
    s.put_analysis(ids[1], "{}", 2_500).unwrap();
    assert_eq!(
        s.unanalysed_alerts(10)
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect::<Vec<_>>(),
        vec![ids[0]]
    );
    assert_eq!(due(s, 3_000), vec![ids[1], ids[2]]);
    assert_eq!(due(s, 10_999), vec![ids[1], ids[2]]);
    assert_eq!(due(s, 11_000), ids);
    assert_eq!(s.analysis(ids[1]).unwrap().as_deref(), Some("{}"));
    assert!(
        s.put_analysis(ids[2] + 100, "{}", 11).is_err(),
        "no such alert"
    );
}

fn the_outbox_tracks_each_channel(s: &mut dyn Backend) {
    let mut c = poll("ct", 100, 1_000);
    c.alerts = vec![alert("r", "e1", "ct"), alert("r", "e2", "ct")];
    let ids: Vec<i64> = s
        .commit_poll(&c)
        .unwrap()
        .alerts
        .iter()
        .map(|a| a.id)
        .collect();
    let pending = |s: &dyn Backend, ch| -> Vec<i64> {
        s.undelivered_alerts(ch, 10)
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect()
    };
    assert_eq!(pending(s, "stdout"), ids);
    assert_eq!(s.undelivered_alerts("stdout", 1).unwrap().len(), 1);
    assert!(pending(s, "smtp").is_empty());
    assert_eq!(s.next_attempt_ms().unwrap(), Some(1_000));
    s.mark_delivered(ids[0], "stdout", 2_000).unwrap();
    s.mark_delivered(ids[0], "stdout", 3_000).unwrap();
    assert_eq!(pending(s, "stdout"), vec![ids[1]]);
    assert_eq!(pending(s, "sns"), ids);
    let d = s.delivery(ids[0], "stdout").unwrap().unwrap();
    assert_eq!(
        (d.status, d.delivered_ms, d.attempts),
        (DeliveryStatus::Delivered, Some(2_000), 1)
    );
    s.mark_failed(ids[0], "sns", "HTTP 500", Some(5_000))
        .unwrap();
    let due: Vec<i64> = s
        .due_alerts("sns", 4_000, 0, 10)
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(due, vec![ids[1]]);
    assert_eq!(s.due_alerts("sns", 5_000, 0, 10).unwrap().len(), 2);
    let d = s.delivery(ids[0], "sns").unwrap().unwrap();
    assert_eq!(
        (d.status, d.attempts, d.last_error.as_deref()),
        (DeliveryStatus::Pending, 1, Some("HTTP 500"))
    );
    // make_due brings a backed-off row back to its detection time.
    assert_eq!(s.make_due("sns", 4_500).unwrap(), 2);
    assert_eq!(s.due_alerts("sns", 4_500, 0, 10).unwrap().len(), 2);
    let long = "x".repeat(5_000);
    s.mark_failed(ids[1], "sns", &long, None).unwrap();
    let d = s.delivery(ids[1], "sns").unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert_eq!(d.last_error.unwrap().len(), 1000);
    s.mark_failed(ids[0], "stdout", "late", None).unwrap();
    assert_eq!(
        s.delivery(ids[0], "stdout").unwrap().unwrap().status,
        DeliveryStatus::Delivered
    );
    let stats = s.stats().unwrap();
    assert_eq!((stats.undelivered, stats.failed), (2, 1));
    let err = s.mark_delivered(ids[0], "smtp", 1).unwrap_err();
    assert!(matches!(err, StateError::NoSuchDelivery { .. }), "{err}");
    assert!(err.to_string().contains(&s.location()), "{err}");
    let err = s.mark_failed(999, "sns", "x", None).unwrap_err();
    assert!(matches!(err, StateError::NoSuchDelivery { .. }), "{err}");
}

fn a_bad_commit_changes_nothing(s: &mut dyn Backend) {
    let mut c = poll("ct", 100, 10);
    c.seen = vec![seen("e1", 1)];
    c.alerts = vec![alert("r", "e1", "ct")];
    c.gaps = vec![gap("ct", 0, 5)];
    s.commit_poll(&c).unwrap();
    let before = s.stats().unwrap();
    let bad_alert = {
        let mut c = poll("ct", 200, 20);
        c.seen = vec![seen("e2", 2), seen("e3", 3)];
        c.alerts = vec![alert("r", "e2", "ct"), alert("r", "", "ct")];
        c
    };
    let bad_gap = {
        let mut c = bad_alert.clone();
        c.alerts.pop();
        c.gaps = vec![gap("ct", 10, 20), gap("ct", 30, 25)];
        c
    };
    let bad_channel = {
        let mut c = bad_alert.clone();
        c.alerts.pop();
        c.channels = vec!["stdout", ""];
        c
    };
    let bad_seen = {
        let mut c = bad_alert.clone();
        c.alerts.pop();
        c.seen.push(seen("", 4));
        c
    };
    for bad in [bad_alert, bad_gap, bad_channel, bad_seen] {
        let err = s.commit_poll(&bad).unwrap_err();
        assert!(err.to_string().contains(&s.location()), "{err}");
        assert_eq!(s.stats().unwrap(), before);
        assert_eq!(s.cursor("ct").unwrap(), Some(100));
        assert!(s.seen_ids("ct", &["e2", "e3"]).unwrap().is_empty());
        assert_eq!(s.gaps(None).unwrap(), vec![gap("ct", 0, 5)]);
    }
    let mut good = poll("ct", 200, 20);
    good.alerts = vec![alert("r", "e2", "ct")];
    assert_eq!(s.commit_poll(&good).unwrap().alerts.len(), 1);
}

fn a_notice_is_recorded_once(s: &mut dyn Backend) {
    let mut n = alert("rolewatch-heartbeat", "hb-1", "rolewatch");
    n.origin = Origin::Notice;
    n.found_by = FoundBy::Notice;
    let stored = s.record_notice(&n, &CHANNELS, 77).unwrap().unwrap();
    assert_eq!(stored.detected_ms, 77);
    assert!(s.record_notice(&n, &CHANNELS, 78).unwrap().is_none());
    assert_eq!(s.cursors().unwrap(), vec![]);
    assert_eq!(s.undelivered_alerts("sns", 10).unwrap().len(), 1);
    // A rule's own channels.
    let mut c = poll("ct", 1, 1);
    let mut a = alert("r", "e1", "ct");
    a.channels = Some(vec!["sns"]);
    c.alerts = vec![a];
    let id = s.commit_poll(&c).unwrap().alerts[0].id;
    assert!(s.delivery(id, "stdout").unwrap().is_none());
    assert!(s.delivery(id, "sns").unwrap().is_some());
}

fn baselines_and_the_last_known_state(s: &mut dyn Backend) {
    use rolewatch::state::LastKnownRow;
    let mut c = poll("src", 10, 10);
    c.alerts = vec![alert("r", "e1", "src")];
    let id = s.commit_poll(&c).unwrap().alerts[0].id;
    assert_eq!(s.latest_baseline("role").unwrap(), None);
    for t in 0..35 {
        s.put_baseline("role", t, &format!("{{\"t\":{t}}}"))
            .unwrap();
    }
    assert_eq!(
        s.latest_baseline("role").unwrap(),
        Some((34, "{\"t\":34}".to_owned()))
    );
    let after = LastKnownRow {
        as_of_ms: 200,
        from_event: Some("e1".into()),
        incomplete: None,
        snapshot: "{\"after\":\"e1\"}".into(),
    };
    s.put_analysis_and_last_known(id, "{}", 11, "role", &after)
        .unwrap();
    assert_eq!(s.last_known("role").unwrap().as_ref(), Some(&after));
    s.put_baseline("role", 150, "{\"b\":150}").unwrap();
    assert_eq!(
        s.last_known("role").unwrap().as_ref(),
        Some(&after),
        "older baseline"
    );
    s.put_baseline("role", 300, "{\"b\":300}").unwrap();
    let k = s.last_known("role").unwrap().unwrap();
    assert_eq!(
        (k.as_of_ms, k.from_event, k.snapshot.as_str()),
        (300, None, "{\"b\":300}")
    );
    assert!(s
        .put_analysis_and_last_known(id + 100, "{}", 11, "role", &after)
        .is_err());
    assert_eq!(s.last_known("role").unwrap().unwrap().as_of_ms, 300);
}

type Scenario = fn(&mut dyn Backend);

const SCENARIOS: [(&str, Scenario); 10] = [
    ("cursor", the_cursor_never_moves_backwards),
    ("seen", seen_event_ids_are_remembered_once_per_source),
    ("one alert", two_sources_seeing_one_event_make_one_alert),
    ("gaps", gaps_are_recorded_once),
    (
        "prune",
        expired_seen_rows_are_pruned_for_the_committing_source,
    ),
    ("due", a_new_alert_is_due_once_analysed_or_after_the_wait),
    ("outbox", the_outbox_tracks_each_channel),
    ("bad commit", a_bad_commit_changes_nothing),
    ("notice", a_notice_is_recorded_once),
    ("baselines", baselines_and_the_last_known_state),
];

#[test]
fn sqlite_backend_scenarios() {
    for (name, scenario) in SCENARIOS {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("state.db"))
            .unwrap()
            .into_state();
        eprintln!("sqlite: {name}");
        scenario(&mut s);
    }
}

struct Dynamo {
    moto: Moto,
    sdk: aws_config::SdkConfig,
}

impl Dynamo {
    fn start() -> Dynamo {
        let moto = Moto::start();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sdk = rt.block_on(sdk_config(&moto.endpoint()));
        Dynamo { moto, sdk }
    }

    fn config(table: &str) -> DynamoConfig {
        DynamoConfig {
            table: table.to_owned(),
            region: "us-east-1".to_owned(),
            lease: Duration::from_millis(u64::try_from(LEASE_MS).unwrap()),
            create_table: true,
        }
    }

    fn open(&self, table: &str, owner: &str) -> DynamoState {
        let (mut s, _) =
            DynamoState::open_with_sdk(&Self::config(table), owner, &self.sdk).unwrap();
        s.prune_at_every_commit();
        s
    }
}

#[test]
fn dynamodb_backend_scenarios() {
    let d = Dynamo::start();
    for (i, (name, scenario)) in SCENARIOS.into_iter().enumerate() {
        eprintln!("dynamodb: {name}");
        let mut s = d.open(&format!("state-{i}"), "replica-a");
        scenario(&mut s);
    }
    drop(d.moto);
}

#[test]
fn dynamodb_refuses_a_missing_table_unless_told_to_create_it_and_a_newer_schema() {
    let d = Dynamo::start();
    let mut cfg = Dynamo::config("absent");
    cfg.create_table = false;
    let err = DynamoState::open_with_sdk(&cfg, "a", &d.sdk).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("absent") && text.contains("create_table = true"),
        "{text}"
    );
    cfg.create_table = true;
    let (_, fresh) = DynamoState::open_with_sdk(&cfg, "a", &d.sdk).unwrap();
    assert_eq!(fresh, rolewatch::state::dynamo::Freshness::Fresh);
    let (_, again) = DynamoState::open_with_sdk(&cfg, "b", &d.sdk).unwrap();
    assert_eq!(again, rolewatch::state::dynamo::Freshness::Existing);
    // A table of a newer rolewatch.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = aws_sdk_dynamodb::Client::new(&d.sdk);
    rt.block_on(async {
        client
            .put_item()
            .table_name("absent")
            .item(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S("meta".into()),
            )
            .item(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S("schema".into()),
            )
            .item(
                "version",
                aws_sdk_dynamodb::types::AttributeValue::N("99".into()),
            )
            .send()
            .await
            .unwrap();
    });
    let err = DynamoState::open_with_sdk(&cfg, "c", &d.sdk).unwrap_err();
    assert!(
        matches!(err, StateError::DynamoTooNew { found: 99, .. }),
        "{err}"
    );
}

/// A poll over DynamoDB's transaction limits commits in several transactions, the cursor in
/// the last; a record over the compression threshold comes back whole.
#[test]
fn dynamodb_splits_a_big_commit_and_compresses_big_records() {
    let d = Dynamo::start();
    let mut s = d.open("big", "a");
    let ids: Vec<String> = (0..250).map(|i| format!("ev-{i:04}")).collect();
    let big_record = format!("{{\"eventID\":\"x\",\"pad\":\"{}\"}}", "abc".repeat(60_000));
    let mut c = poll("ct", 5_000, 100);
    c.seen = ids.iter().map(|id| seen(id, 1)).collect();
    c.alerts = ids[..40].iter().map(|id| alert("r", id, "ct")).collect();
    c.alerts[0].record = &big_record;
    let committed = s.commit_poll(&c).unwrap();
    assert_eq!(
        (
            committed.seen_new,
            committed.alerts.len(),
            committed.cursor_ms
        ),
        (250, 40, 5_000)
    );
    let stats = s.stats().unwrap();
    assert_eq!((stats.seen, stats.alerts, stats.undelivered), (250, 40, 80));
    assert_eq!(s.cursor("ct").unwrap(), Some(5_000));
    let first = s.alert(committed.alerts[0].id).unwrap().unwrap();
    assert_eq!(first.record, big_record);
    // A replay (the same window again) records nothing twice.
    let again = s.commit_poll(&c).unwrap();
    assert_eq!((again.seen_new, again.alerts.len()), (0, 0));
    assert_eq!(s.stats().unwrap(), stats);
}

/// Two replicas on one table: one leads; the other takes over only after seeing the lease
/// unrenewed for a whole lease by its own clock (here half a lease ahead of the leader's);
/// the old leader's next write is refused by the fence and it steps down.
#[test]
fn dynamodb_lease_is_exclusive_and_fenced() {
    let d = Dynamo::start();
    // B's clock half a lease ahead of A's, then half a lease behind.
    lease_with_skew(&d, "lease-ahead", LEASE_MS / 2);
    lease_with_skew(&d, "lease-behind", -LEASE_MS / 2);
}

fn lease_with_skew(d: &Dynamo, table: &str, skew: i64) {
    let mut a = d.open(table, "replica-a");
    let mut b = d.open(table, "replica-b");
    assert_eq!(
        a.hold_lease(1_000).unwrap(),
        Leadership::Leader { fence: 1 }
    );
    assert_eq!(b.hold_lease(1_000 + skew).unwrap(), Leadership::Follower);
    // A renews every third of a lease; B, seeing the item change, never takes over.
    for t in (1..20).map(|k| 1_000 + k * LEASE_MS / 3) {
        assert_eq!(
            a.hold_lease(t).unwrap(),
            Leadership::Leader { fence: 1 },
            "at {t}"
        );
        assert_eq!(
            b.hold_lease(t + skew).unwrap(),
            Leadership::Follower,
            "at {t}"
        );
    }
    let a_last = 1_000 + 19 * LEASE_MS / 3;
    a.commit_poll(&poll("ct", 10, a_last)).unwrap();
    // A stops renewing (paused). B takes over a lease after it first saw the last renewal.
    let mut took = None;
    for k in 1..=12 {
        let t = a_last + skew + k * LEASE_MS / 3;
        if b.hold_lease(t).unwrap() == (Leadership::Leader { fence: 2 }) {
            took = Some(t - skew - a_last);
            break;
        }
    }
    let took = took.expect("B took over");
    assert!(
        (LEASE_MS..=2 * LEASE_MS).contains(&took),
        "took over {took} ms after the last renewal"
    );
    // A resumes: its own clock says its lease ran out, so it does not claim to lead...
    assert_eq!(a.leadership(a_last + took), Leadership::Follower);
    // ...and a write it had under way is refused by the fence: nothing of it is recorded.
    let mut c = poll("ct", 999, a_last);
    c.alerts = vec![alert("r", "late", "ct")];
    b.commit_poll(&poll("ct", 20, a_last + took)).unwrap();
    let refused = a_write_refused(&mut a, &c);
    assert!(refused, "the deposed leader's commit was refused");
    assert_eq!(b.cursor("ct").unwrap(), Some(20));
    assert!(b.seen_ids("ct", &["late"]).unwrap().is_empty());
    assert_eq!(b.stats().unwrap().alerts, 0);
    // The renewal also says so.
    assert_eq!(
        a.hold_lease(a_last + took + 1).unwrap(),
        Leadership::Follower
    );
    // A release hands over at once.
    b.release_lease().unwrap();
    assert_eq!(
        a.hold_lease(a_last + took + 2).unwrap(),
        Leadership::Leader { fence: 3 }
    );
}

/// `a` believes it leads with fence 1 (its lease fresh by its own clock) and commits.
fn a_write_refused(a: &mut DynamoState, c: &PollCommit<'_>) -> bool {
    // The write carries the fence `a` last held, whatever its clock says.
    match a.commit_poll(c) {
        Err(StateError::Fenced { fence: 1, .. }) => {
            assert_eq!(a.leadership(c.now_ms), Leadership::Follower);
            true
        }
        other => panic!("expected the fence to refuse the write, got {other:?}"),
    }
}

/// Every replica delivers: a row claimed by one is not handed to another until the claim
/// runs out; a delivered row is handed to nobody.
#[test]
fn dynamodb_outbox_rows_are_claimed_per_row() {
    let d = Dynamo::start();
    let mut a = d.open("claims", "replica-a");
    let b = d.open("claims", "replica-b");
    let mut c = poll("ct", 1, 1_000);
    c.alerts = (0..5)
        .map(|i| alert("r", ["e0", "e1", "e2", "e3", "e4"][i], "ct"))
        .collect();
    let ids: HashSet<i64> = a
        .commit_poll(&c)
        .unwrap()
        .alerts
        .iter()
        .map(|x| x.id)
        .collect();
    let got_a: HashSet<i64> = a
        .due_alerts("stdout", 2_000, 0, 3)
        .unwrap()
        .iter()
        .map(|x| x.id)
        .collect();
    let got_b: HashSet<i64> = b
        .due_alerts("stdout", 2_000, 0, 10)
        .unwrap()
        .iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(got_a.len(), 3);
    assert_eq!(got_b.len(), 2);
    assert!(got_a.is_disjoint(&got_b));
    assert_eq!(&got_a | &got_b, ids);
    // Nothing more for either while the claims last; the same replica gets its own again.
    assert!(b
        .due_alerts("stdout", 3_000, 0, 10)
        .unwrap()
        .iter()
        .all(|x| got_b.contains(&x.id)));
    for id in &got_a {
        a.mark_delivered(*id, "stdout", 3_000).unwrap();
    }
    // After the claim deadline (B renewed its claims at 3 000), B's unfinished rows go to A;
    // A's delivered rows to nobody.
    let claim = rolewatch::state::dynamo::CLAIM_MS;
    assert!(a
        .due_alerts("stdout", 3_000 + claim - 1, 0, 10)
        .unwrap()
        .is_empty());
    let late = 3_000 + claim + 1;
    let after: HashSet<i64> = a
        .due_alerts("stdout", late, 0, 10)
        .unwrap()
        .iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(after, got_b);
}
