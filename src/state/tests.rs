//! Tests of the state database: opening (fresh, existing, refused), the poll commit and its
//! atomicity, the outbox, and crash trials with a child process killed by SIGKILL.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::*;

const CHANNELS: [&str; 2] = ["stdout", "sns"];

fn open_new(dir: &TempDir) -> State {
    match State::open(&dir.path().join("state.db")).unwrap() {
        Opened::Fresh(state) => state,
        Opened::Existing(_) => panic!("a new file opened as existing"),
    }
}

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
        // Keyed by rule and eventID, as before state v4: these tests are about storage; the
        // change key has tests of its own.
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

fn names_file(err: &StateError, path: &Path) -> bool {
    err.to_string().contains(&path.display().to_string())
}

/// The daemon moves `State` into blocking tasks and turns `StateError` into `anyhow::Error`.
#[test]
fn state_is_send_and_its_error_is_send_sync_static() {
    fn send<T: Send>() {}
    fn error<T: std::error::Error + Send + Sync + 'static>() {}
    send::<State>();
    error::<StateError>();
}

#[test]
fn a_new_file_is_fresh_and_reopening_it_is_existing() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("a/b/state.db");
    let opened = State::open(&path).unwrap();
    assert!(opened.is_fresh());
    let mut state = opened.into_state();
    assert_eq!(state.path(), path);
    assert_eq!(state.schema_version().unwrap(), schema::CURRENT_VERSION);
    state.commit_poll(&poll("ct", 10, 20)).unwrap();
    drop(state);

    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("a")), 0o700);
    assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    assert_eq!(mode(&path), 0o600);

    // Reopening is idempotent: same version, same data, still not fresh.
    for _ in 0..2 {
        let opened = State::open(&path).unwrap();
        assert!(!opened.is_fresh());
        let state = opened.into_state();
        assert_eq!(state.schema_version().unwrap(), schema::CURRENT_VERSION);
        assert_eq!(state.cursor("ct").unwrap(), Some(10));
    }
}

#[test]
fn an_empty_file_is_fresh() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("state.db");
    fs::write(&path, b"").unwrap();
    assert!(State::open(&path).unwrap().is_fresh());
}

#[test]
fn wal_synchronous_full_and_foreign_keys_are_on() {
    let dir = TempDir::new().unwrap();
    let state = open_new(&dir);
    let get = |pragma: &str| -> String {
        state
            .conn
            .query_row(&format!("PRAGMA {pragma}"), [], |r| {
                r.get::<_, rusqlite::types::Value>(0)
            })
            .map(|v| match v {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })
            .unwrap()
    };
    assert_eq!(get("journal_mode"), "wal");
    assert_eq!(get("synchronous"), "2", "2 is FULL");
    assert_eq!(get("foreign_keys"), "1");
    assert_eq!(get("busy_timeout"), "5000");
    assert!(dir.path().join("state.db-wal").exists());
}

#[test]
fn the_cursor_never_moves_backwards() {
    let dir = TempDir::new().unwrap();
    let mut state = open_new(&dir);
    assert_eq!(state.cursor("ct").unwrap(), None);
    assert_eq!(
        state.commit_poll(&poll("ct", 1_000, 1)).unwrap().cursor_ms,
        1_000
    );
    assert_eq!(
        state.commit_poll(&poll("ct", 500, 2)).unwrap().cursor_ms,
        1_000
    );
    assert_eq!(state.cursor("ct").unwrap(), Some(1_000));
    assert_eq!(
        state.commit_poll(&poll("ct", 2_000, 3)).unwrap().cursor_ms,
        2_000
    );
    // Cursors are per source.
    state.commit_poll(&poll("logs", 7, 4)).unwrap();
    assert_eq!(state.cursor("ct").unwrap(), Some(2_000));
    assert_eq!(state.cursor("logs").unwrap(), Some(7));
    let cursors = state.cursors().unwrap();
    assert_eq!(cursors.len(), 2);
    assert_eq!(cursors[0].source_id, "ct");
    assert_eq!(cursors[0].updated_ms, 3);
}

#[test]
fn seen_event_ids_are_remembered_once_per_source() {
    let dir = TempDir::new().unwrap();
    let mut state = open_new(&dir);
    let mut c = poll("ct", 100, 10);
    c.seen = vec![seen("e1", 1), seen("e2", 2), seen("e1", 1)];
    assert_eq!(state.commit_poll(&c).unwrap().seen_new, 2);
    // The next window overlaps: e2 again, e3 new.
    let mut c = poll("ct", 200, 20);
    c.seen = vec![seen("e2", 2), seen("e3", 3)];
    assert_eq!(state.commit_poll(&c).unwrap().seen_new, 1);

    let found = state.seen_ids("ct", &["e1", "e2", "e3", "e4"]).unwrap();
    assert_eq!(found, ["e1", "e2", "e3"].map(String::from).into());
    assert!(state.seen_ids("logs", &["e1"]).unwrap().is_empty());
    assert!(state.seen_ids("ct", &[]).unwrap().is_empty());
    assert_eq!(state.stats().unwrap().seen, 3);
}

#[test]
fn two_sources_seeing_one_event_make_one_alert() {
    let dir = TempDir::new().unwrap();
    let mut state = open_new(&dir);
    let mut c = poll("ct", 100, 10);
    c.seen = vec![seen("e1", 1)];
    c.alerts = vec![
        alert("vendor-role", "e1", "ct"),
        alert("other-rule", "e1", "ct"),
    ];
    let first = state.commit_poll(&c).unwrap();
    assert_eq!(first.alerts.len(), 2);
    assert_eq!(first.alerts[0].rule, "vendor-role");
    assert_eq!(first.alerts[0].source_id, "ct");
    assert_eq!(first.alerts[0].detected_ms, 10);
    assert_eq!(
        state.alert(first.alerts[0].id).unwrap().as_ref(),
        Some(&first.alerts[0])
    );

    // The logs source sees the same event later, and so does the next CloudTrail window.
    let mut c = poll("logs", 100, 20);
    c.seen = vec![seen("e1", 1)];
    c.alerts = vec![alert("vendor-role", "e1", "logs")];
    assert!(state.commit_poll(&c).unwrap().alerts.is_empty());
    let mut c = poll("ct", 200, 30);
    c.alerts = vec![
        alert("vendor-role", "e1", "ct"),
        alert("vendor-role", "e1", "ct"),
    ];
    assert!(state.commit_poll(&c).unwrap().alerts.is_empty());

    let stats = state.stats().unwrap();
    assert_eq!(stats.alerts, 2);
    assert_eq!(stats.undelivered, 4, "two alerts on two channels");
    assert_eq!(stats.seen, 2, "one row per source");
    assert_eq!(state.undelivered_alerts("stdout", 10).unwrap().len(), 2);
}

#[test]
fn gaps_are_recorded_once() {
    let dir = TempDir::new().unwrap();
    let mut state = open_new(&dir);
    let mut c = poll("ct", 100, 10);
    c.gaps = vec![gap("ct", 0, 50), gap("ct", 0, 50)];
    assert_eq!(state.commit_poll(&c).unwrap().gaps, vec![gap("ct", 0, 50)]);
    let mut c = poll("ct", 200, 20);
    c.gaps = vec![gap("ct", 0, 50), gap("ct", 60, 70)];
    assert_eq!(state.commit_poll(&c).unwrap().gaps, vec![gap("ct", 60, 70)]);
    let mut c = poll("logs", 200, 20);
    c.gaps = vec![gap("logs", 0, 50)];
    state.commit_poll(&c).unwrap();

    assert_eq!(
        state.gaps(Some("ct")).unwrap(),
        vec![gap("ct", 0, 50), gap("ct", 60, 70)]
    );
    assert_eq!(state.gaps(None).unwrap().len(), 3);
    assert_eq!(state.stats().unwrap().gaps, 3);
}

#[test]
fn expired_seen_rows_are_pruned_for_the_committing_source() {
    let dir = TempDir::new().unwrap();
    let mut state = open_new(&dir);
    let row = |id, expires_ms| SeenEvent {
        event_id: id,
        event_time_ms: 0,
        expires_ms,
    };
    let mut c = poll("ct", 100, 0);
    c.seen = vec![row("old", 10), row("edge", 20), row("new", 30)];
    state.commit_poll(&c).unwrap();
    let mut c = poll("logs", 100, 0);
    c.seen = vec![row("old", 10)];
    state.commit_poll(&c).unwrap();

    // "edge" expires at 20: kept at now = 20 (expires_ms < now_ms prunes), gone at 21.
    assert_eq!(state.commit_poll(&poll("ct", 100, 20)).unwrap().pruned, 1);
    assert_eq!(
        state.seen_ids("ct", &["old", "edge", "new"]).unwrap(),
        ["edge", "new"].map(String::from).into()
    );
    // Seeing an event again extends its expiry rather than keeping the earlier one.
    let mut c = poll("ct", 100, 20);
    c.seen = vec![row("edge", 40)];
    state.commit_poll(&c).unwrap();
    assert_eq!(state.commit_poll(&poll("ct", 100, 35)).unwrap().pruned, 1);
    assert_eq!(
        state.seen_ids("ct", &["edge", "new"]).unwrap(),
        ["edge"].map(String::from).into()
    );
    // The logs source's row waits for its own commit (its cursor may be stalled).
    assert_eq!(state.seen_ids("logs", &["old"]).unwrap().len(), 1);
}

/// The analysis wait is a predicate of the state: a new alert is due once it has its
/// analysis, or is one of rolewatch's own notices, or has waited long enough.
#[test]
fn a_new_alert_is_due_once_analysed_or_after_the_wait_and_a_notice_at_once() {
    let dir = TempDir::new().unwrap();
    let mut state = open_new(&dir);
    let mut c = poll("ct", 100, 1_000);
    let mut notice = alert("rolewatch-source-blind", "n1", "ct");
    notice.origin = Origin::Notice;
    c.alerts = vec![alert("r", "e1", "ct"), alert("r", "e2", "ct"), notice];
    let ids: Vec<i64> = state
        .commit_poll(&c)
        .unwrap()
        .alerts
        .iter()
        .map(|a| a.id)
        .collect();
    let due = |state: &State, now: i64| -> Vec<i64> {
        state
            .due_alerts("stdout", now, 10_000, 10)
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect()
    };
    // Detected at 1 000, waiting up to 10 s: only the notice goes at once.
    assert_eq!(due(&state, 2_000), vec![ids[2]]);
    state.put_analysis(ids[1], "{}", 2_500).unwrap();
    assert_eq!(due(&state, 3_000), vec![ids[1], ids[2]]);
    assert_eq!(due(&state, 10_999), vec![ids[1], ids[2]]);
    // The wait is over: everything goes, with or without its analysis.
    assert_eq!(due(&state, 11_000), ids);
}

#[test]
fn the_outbox_tracks_each_channel() {
    let dir = TempDir::new().unwrap();
    let mut state = open_new(&dir);
    let mut c = poll("ct", 100, 1_000);
    c.alerts = vec![alert("r", "e1", "ct"), alert("r", "e2", "ct")];
    let ids: Vec<i64> = state
        .commit_poll(&c)
        .unwrap()
        .alerts
        .iter()
        .map(|a| a.id)
        .collect();

    let pending = |state: &State, ch| -> Vec<i64> {
        state
            .undelivered_alerts(ch, 10)
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect()
    };
    assert_eq!(pending(&state, "stdout"), ids);
    assert_eq!(state.undelivered_alerts("stdout", 1).unwrap().len(), 1);
    assert!(
        pending(&state, "smtp").is_empty(),
        "not a configured channel"
    );

    state.mark_delivered(ids[0], "stdout", 2_000).unwrap();
    state.mark_delivered(ids[0], "stdout", 3_000).unwrap(); // idempotent
    assert_eq!(pending(&state, "stdout"), vec![ids[1]]);
    assert_eq!(pending(&state, "sns"), ids, "channels are independent");
    let d = state.delivery(ids[0], "stdout").unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.delivered_ms, Some(2_000));
    assert_eq!(d.attempts, 1);

    // A failure with a retry time keeps the row pending but not yet due.
    state
        .mark_failed(ids[0], "sns", "HTTP 500", Some(5_000))
        .unwrap();
    let due: Vec<i64> = state
        .due_alerts("sns", 4_000, 0, 10)
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(due, vec![ids[1]]);
    assert_eq!(state.due_alerts("sns", 5_000, 0, 10).unwrap().len(), 2);
    let d = state.delivery(ids[0], "sns").unwrap().unwrap();
    assert_eq!(
        (d.status, d.attempts, d.last_error.as_deref()),
        (DeliveryStatus::Pending, 1, Some("HTTP 500"))
    );
    // Without a retry time it is given up on.
    let long = "x".repeat(5_000);
    state.mark_failed(ids[1], "sns", &long, None).unwrap();
    let d = state.delivery(ids[1], "sns").unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert_eq!(d.last_error.unwrap().len(), super::outbox::MAX_ERROR_CHARS);
    // A late failure report does not undo a delivery.
    state.mark_failed(ids[0], "stdout", "late", None).unwrap();
    assert_eq!(
        state.delivery(ids[0], "stdout").unwrap().unwrap().status,
        DeliveryStatus::Delivered
    );

    let stats = state.stats().unwrap();
    assert_eq!((stats.undelivered, stats.failed), (2, 1));

    let err = state.mark_delivered(ids[0], "smtp", 1).unwrap_err();
    assert!(matches!(err, StateError::NoSuchDelivery { .. }), "{err}");
    assert!(names_file(&err, state.path()));
    let err = state.mark_failed(999, "sns", "x", None).unwrap_err();
    assert!(matches!(err, StateError::NoSuchDelivery { .. }), "{err}");
}

#[test]
fn a_commit_that_fails_midway_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let mut state = open_new(&dir);
    let mut c = poll("ct", 100, 10);
    c.seen = vec![seen("e1", 1)];
    c.alerts = vec![alert("r", "e1", "ct")];
    c.gaps = vec![gap("ct", 0, 5)];
    state.commit_poll(&c).unwrap();
    let before = state.stats().unwrap();

    // Each bad item comes after good ones that were already written inside the transaction.
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
        let err = state.commit_poll(&bad).unwrap_err();
        assert!(
            matches!(
                err,
                StateError::Sqlite {
                    op: "commit a poll",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(names_file(&err, state.path()), "{err}");
        assert_eq!(state.stats().unwrap(), before);
        assert_eq!(state.cursor("ct").unwrap(), Some(100));
        assert!(state.seen_ids("ct", &["e2", "e3"]).unwrap().is_empty());
        assert_eq!(state.gaps(None).unwrap(), vec![gap("ct", 0, 5)]);
    }
    // The connection is usable afterwards, and the good part commits on its own.
    let mut good = poll("ct", 200, 20);
    good.alerts = vec![alert("r", "e2", "ct")];
    assert_eq!(state.commit_poll(&good).unwrap().alerts.len(), 1);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("state.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 13) as u8).collect();
    fs::write(&path, &garbage).unwrap();
    let err = State::open(&path).unwrap_err();
    assert!(matches!(err, StateError::NotADatabase { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(names_file(&err, &path), "{msg}");
    assert!(msg.contains("move it aside"), "{msg}");
    assert_eq!(fs::read(&path).unwrap(), garbage, "never recreated");
}

/// Builds a database of several pages, closes it (which checkpoints the WAL into the file)
/// and returns its path.
fn populated(dir: &TempDir) -> PathBuf {
    let mut state = open_new(dir);
    let ids: Vec<String> = (0..2_000).map(|i| format!("event-{i:06}")).collect();
    let mut c = poll("ct", 100, 10);
    c.seen = ids.iter().map(|id| seen(id, 1)).collect();
    c.alerts = ids[..200].iter().map(|id| alert("r", id, "ct")).collect();
    state.commit_poll(&c).unwrap();
    let path = state.path().to_path_buf();
    drop(state);
    assert!(!dir.path().join("state.db-wal").exists());
    path
}

#[test]
fn a_truncated_database_is_refused_and_left_alone() {
    for keep in [0.5, 0.1] {
        let dir = TempDir::new().unwrap();
        let path = populated(&dir);
        let bytes = fs::read(&path).unwrap();
        assert!(bytes.len() > 64 * 1024, "several pages: {}", bytes.len());
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let cut = &bytes[..(bytes.len() as f64 * keep) as usize];
        fs::write(&path, cut).unwrap();
        let err = State::open(&path).unwrap_err();
        assert!(
            matches!(err, StateError::Corrupt { .. }),
            "keep {keep}: {err:?}"
        );
        assert!(names_file(&err, &path), "{err}");
        assert!(err.to_string().contains("move it aside"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), cut, "never recreated");
    }
}

#[test]
fn a_damaged_page_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = populated(&dir);
    let mut bytes = fs::read(&path).unwrap();
    // Scribble over the middle of the file, keeping the header and the schema page intact.
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 8192] {
        *b = 0xA5;
    }
    fs::write(&path, &bytes).unwrap();
    let err = State::open(&path).unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
    assert!(names_file(&err, &path), "{err}");
}

#[test]
fn a_path_that_cannot_be_a_file_is_refused() {
    let dir = TempDir::new().unwrap();
    // Tests run as root, where permissions do not deny reads: use paths that no user can
    // open as a database instead.
    let file = dir.path().join("plain");
    fs::write(&file, b"x").unwrap();
    let under_file = file.join("state.db");
    let err = State::open(&under_file).unwrap_err();
    assert!(matches!(err, StateError::CreateDir { .. }), "{err:?}");
    assert!(names_file(&err, &under_file), "{err}");

    let as_dir = dir.path().join("state.db");
    fs::create_dir(&as_dir).unwrap();
    let err = State::open(&as_dir).unwrap_err();
    assert!(matches!(err, StateError::NotAFile { .. }), "{err:?}");
    assert!(names_file(&err, &as_dir), "{err}");
    assert!(as_dir.is_dir());
}

#[test]
fn a_newer_schema_version_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = open_new(&dir).path().to_path_buf();
    let newer = schema::CURRENT_VERSION + 1;
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    let err = State::open(&path).unwrap_err();
    match &err {
        StateError::TooNew { found, known, .. } => {
            assert_eq!((*found, *known), (newer, schema::CURRENT_VERSION));
        }
        other => panic!("{other:?}"),
    }
    assert!(names_file(&err, &path), "{err}");
    assert_eq!(
        schema::user_version(&Connection::open(&path).unwrap()).unwrap(),
        newer
    );
}

#[test]
fn another_programs_database_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("state.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE notes (body TEXT)")
        .unwrap();
    let err = State::open(&path).unwrap_err();
    assert!(matches!(err, StateError::Foreign { .. }), "{err:?}");
    assert!(names_file(&err, &path), "{err}");
}

#[test]
fn a_v1_database_upgrades_and_keeps_its_data() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("state.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        assert_eq!(schema::migrate_to(&mut conn, 1).unwrap(), 1);
        conn.execute_batch(
            "INSERT INTO cursors VALUES ('ct', 1000, 1);
             INSERT INTO seen VALUES ('ct', 'e1', 900, 5000);
             INSERT INTO alerts (rule, severity, event_id, event_name, event_time_ms,
                                 source_id, detected_ms, record)
             VALUES ('r', 'high', 'e1', 'PutRolePolicy', 900, 'ct', 1000, '{}');",
        )
        .unwrap();
    }
    let opened = State::open(&path).unwrap();
    assert!(!opened.is_fresh());
    let mut state = opened.into_state();
    assert_eq!(state.schema_version().unwrap(), schema::CURRENT_VERSION);
    assert_eq!(state.cursor("ct").unwrap(), Some(1_000));
    assert_eq!(state.seen_ids("ct", &["e1"]).unwrap().len(), 1);
    // The v1 alert stays deduplicated; new alerts get outbox rows.
    let mut c = poll("ct", 2_000, 2_000);
    c.alerts = vec![alert("r", "e1", "ct"), alert("r", "e2", "ct")];
    let committed = state.commit_poll(&c).unwrap();
    assert_eq!(committed.alerts.len(), 1);
    assert_eq!(committed.alerts[0].event_id, "e2");
    assert_eq!(state.stats().unwrap().undelivered, 2);
}

#[test]
fn debug_output_never_shows_a_record() {
    let dir = TempDir::new().unwrap();
    let mut state = open_new(&dir);
    let mut c = poll("ct", 100, 10);
    c.alerts = vec![alert("r", "e1", "ct")];
    let committed = state.commit_poll(&c).unwrap();
    for text in [
        format!("{c:?}"),
        format!("{committed:?}"),
        format!("{:?}", state.undelivered_alerts("sns", 10).unwrap()),
        format!("{state:?}"),
    ] {
        assert!(!text.contains("secret-record-body"), "{text}");
    }
    let len = alert("r", "e1", "ct").record.len();
    assert!(format!("{c:?}").contains(&format!("record: <{len} bytes>")));
}

#[test]
fn default_path_prefers_systemd_then_xdg_then_home() {
    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }
    let all = [
        ("STATE_DIRECTORY", "/var/lib/rolewatch:/var/lib/other"),
        ("XDG_STATE_HOME", "/x"),
        ("HOME", "/h"),
    ];
    assert_eq!(
        default_path_from(env(&all)).unwrap(),
        Path::new("/var/lib/rolewatch/state.db")
    );
    assert_eq!(
        default_path_from(env(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")])).unwrap(),
        Path::new("/x/rolewatch/state.db")
    );
    // Empty and relative values are ignored.
    assert_eq!(
        default_path_from(env(&[
            ("STATE_DIRECTORY", ""),
            ("XDG_STATE_HOME", "rel"),
            ("HOME", "/h")
        ]))
        .unwrap(),
        Path::new("/h/.local/state/rolewatch/state.db")
    );
    let err = default_path_from(env(&[("HOME", "")])).unwrap_err();
    assert!(matches!(err, StateError::NoDefaultPath));
    assert!(err.to_string().contains("[state] path"));
}

// ---- crash trials ----

/// A small xorshift generator for kill times (the crate has no `rand`); the seed is printed so
/// a failing run can be repeated by hand.
struct Rng(u64);

impl Rng {
    #[allow(clippy::disallowed_methods)] // a seed, not a time
    fn from_clock() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("crash trials: seed {seed}");
        Self(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Selects the child mode of [`sigkill_at_random_points_loses_no_committed_poll`]: its value
/// is the database path.
const CRASH_CHILD_ENV: &str = "ROLEWATCH_STATE_CRASH_CHILD";
const CRASH_TEST: &str = "state::tests::sigkill_at_random_points_loses_no_committed_poll";
const STEP_MS: i64 = 1_000;
const EVENTS_PER_POLL: i64 = 20;
/// How long a seen row lives after its event: 30 polls.
const KEEP_MS: i64 = 30 * STEP_MS;

/// The child: commits polls in a loop from the stored cursor, each window `(cursor, cursor +
/// STEP_MS]` with `EVENTS_PER_POLL` events and one alert, and prints `committed <cursor>`
/// after each commit returns. It never ends on its own; the parent kills it.
fn crash_child(path: &Path) -> ! {
    let mut state = State::open(path).unwrap().into_state();
    let mut cursor = state.cursor("ct").unwrap().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    loop {
        let next = cursor + STEP_MS;
        let ids: Vec<String> = (0..EVENTS_PER_POLL)
            .map(|k| format!("e{}", cursor + 1 + k))
            .collect();
        let mut c = poll("ct", next, next);
        c.seen = ids
            .iter()
            .zip(cursor + 1..)
            .map(|(id, t)| SeenEvent {
                event_id: id,
                event_time_ms: t,
                expires_ms: t + KEEP_MS,
            })
            .collect();
        let mut a = alert("r", &ids[0], "ct");
        a.event_time_ms = cursor + 1;
        c.alerts = vec![a];
        state.commit_poll(&c).unwrap();
        writeln!(out, "committed {next}").unwrap();
        out.flush().unwrap();
        cursor = next;
    }
}

/// Checks what must hold after any crash: the file is intact, and the seen rows, alerts and
/// outbox rows are exactly those of the polls up to the cursor (no cursor advance without
/// its rows, no rows beyond the cursor).
fn check_consistent(state: &State) -> i64 {
    let check: String = state
        .conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let cursor = state.cursor("ct").unwrap().unwrap_or(0);
    assert_eq!(cursor % STEP_MS, 0);
    let polls = cursor / STEP_MS;
    let (n, max_t): (i64, Option<i64>) = state
        .conn
        .query_row("SELECT count(*), max(event_time_ms) FROM seen", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    // Pruning at now = cursor keeps events with t + KEEP_MS >= cursor.
    let expected: i64 = (0..polls)
        .flat_map(|p| (p * STEP_MS + 1..).take(EVENTS_PER_POLL as usize))
        .filter(|t| t + KEEP_MS >= cursor)
        .count() as i64;
    assert_eq!(n, expected, "seen rows at cursor {cursor}");
    if polls > 0 {
        assert_eq!(max_t, Some((polls - 1) * STEP_MS + EVENTS_PER_POLL));
    }
    let stats = state.stats().unwrap();
    assert_eq!(stats.alerts, polls as u64);
    assert_eq!(stats.undelivered, 2 * polls as u64);
    cursor
}

/// Kills a child that commits polls in a loop at random moments (sometimes while it is still
/// creating the schema), over 25 trials on one file, and checks after each that the file
/// opens, passes `integrity_check`, holds every poll the child reported committed, and is
/// consistent.
#[test]
fn sigkill_at_random_points_loses_no_committed_poll() {
    if let Some(path) = std::env::var_os(CRASH_CHILD_ENV) {
        crash_child(Path::new(&path));
    }
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("state.db");
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng::from_clock();
    let mut killed_after_commits = 0;
    let mut previous = 0;
    for trial in 0..25 {
        let mut child = Command::new(&exe)
            .args(["--exact", CRASH_TEST, "--nocapture", "--test-threads=1"])
            .env(CRASH_CHILD_ENV, &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let acked = Arc::new(AtomicI64::new(-1));
        let stdout = child.stdout.take().unwrap();
        let reader = {
            let acked = Arc::clone(&acked);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(n) = line.strip_prefix("committed ") {
                        acked.store(n.parse().unwrap(), Ordering::SeqCst);
                    }
                }
            })
        };
        if trial % 2 == 0 {
            // Anywhere, including during open and the migrations.
            std::thread::sleep(Duration::from_millis(rng.below(150)));
        } else {
            #[allow(clippy::disallowed_methods)] // a thread, not a task: no tokio clock here
            let start = Instant::now();
            while acked.load(Ordering::SeqCst) < 0 {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "child made no progress"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();

        let state = State::open(&path).unwrap().into_state();
        let cursor = check_consistent(&state);
        let acked = acked.load(Ordering::SeqCst);
        assert!(
            cursor >= acked,
            "trial {trial}: cursor {cursor} < acknowledged {acked}"
        );
        assert!(cursor >= previous, "trial {trial}: the cursor went back");
        if acked > previous {
            killed_after_commits += 1;
        }
        previous = cursor;
    }
    eprintln!("crash trials: cursor {previous}, {killed_after_commits} of 25 killed after commits");
    assert!(
        killed_after_commits >= 12,
        "only {killed_after_commits} trials committed"
    );
}

#[test]
fn a_notice_is_recorded_once_with_outbox_rows_and_no_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = open_new(&dir);
    let notice = alert("rolewatch-source-blind", "blind-ct-1", "rolewatch");
    let first = state.record_notice(&notice, &CHANNELS, 5_000).unwrap();
    let stored = first.expect("recorded the first time");
    assert_eq!(stored.detected_ms, 5_000);
    assert!(state
        .record_notice(&notice, &CHANNELS, 6_000)
        .unwrap()
        .is_none());
    for channel in CHANNELS {
        let due = state.due_alerts(channel, 5_000, 0, 10).unwrap();
        assert_eq!(due.len(), 1, "{channel}");
        assert_eq!(due[0].id, stored.id);
    }
    assert!(state.cursors().unwrap().is_empty());
}

#[test]
fn a_rule_with_channels_gets_outbox_rows_for_those_channels_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = open_new(&dir);
    let only_sns = ["sns".to_owned()];
    let mut c = poll("ct", 2_000, 3_000);
    c.alerts.push(NewAlert {
        channels: Some(only_sns.iter().map(String::as_str).collect()),
        ..alert("tamper", "e1", "ct")
    });
    c.alerts.push(alert("documented", "e1", "ct"));
    let committed = state.commit_poll(&c).unwrap();
    let ids: Vec<(String, i64)> = committed
        .alerts
        .iter()
        .map(|a| (a.rule.clone(), a.id))
        .collect();
    let id = |rule: &str| ids.iter().find(|(r, _)| r == rule).unwrap().1;
    assert!(state.delivery(id("tamper"), "sns").unwrap().is_some());
    assert!(state.delivery(id("tamper"), "stdout").unwrap().is_none());
    assert!(state.delivery(id("documented"), "sns").unwrap().is_some());
    assert!(state
        .delivery(id("documented"), "stdout")
        .unwrap()
        .is_some());
}
