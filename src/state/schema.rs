//! The schema of the state database and the numbered migrations that build it.
//!
//! The schema version is SQLite's `PRAGMA user_version`: version `n` means the first `n`
//! entries of [`MIGRATIONS`] have been applied. Each migration runs in its own transaction
//! together with the bump of `user_version`, so a crash in the middle of an upgrade leaves the
//! database at the previous version, and the next start simply applies the rest.
//!
//! Migrations are append-only: once a version has shipped, its SQL never changes; a change
//! to the schema is a new entry at the end.

use rusqlite::{Connection, TransactionBehavior};

/// `PRAGMA application_id` of a rolewatch state database (the bytes `rwst`), so that another
/// program's SQLite file given by mistake is refused instead of being "migrated".
pub const APPLICATION_ID: i32 = i32::from_be_bytes(*b"rwst");

/// The migrations, in order; the schema version after applying `MIGRATIONS[..n]` is `n`.
pub const MIGRATIONS: &[&str] = &[
    // v1: what the sources need: a cursor per source, the eventIDs seen inside the overlap,
    // the alert history (one alert per rule and eventID, whichever source saw it first) and
    // the coverage gaps. STRICT makes SQLite refuse a value of the wrong type instead of
    // storing it.
    "
    CREATE TABLE cursors (
        source_id   TEXT    PRIMARY KEY NOT NULL CHECK (source_id <> ''),
        position_ms INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE seen (
        source_id     TEXT    NOT NULL CHECK (source_id <> ''),
        event_id      TEXT    NOT NULL CHECK (event_id <> ''),
        event_time_ms INTEGER NOT NULL,
        expires_ms    INTEGER NOT NULL,
        PRIMARY KEY (source_id, event_id)
    ) WITHOUT ROWID, STRICT;

    -- Pruning deletes one source's expired rows: (source_id, expires_ms) serves that
    -- range scan without touching live rows.
    CREATE INDEX seen_expiry ON seen (source_id, expires_ms);

    CREATE TABLE alerts (
        id            INTEGER PRIMARY KEY,
        rule          TEXT    NOT NULL CHECK (rule <> ''),
        severity      TEXT    NOT NULL,
        event_id      TEXT    NOT NULL CHECK (event_id <> ''),
        event_name    TEXT    NOT NULL,
        event_time_ms INTEGER NOT NULL,
        source_id     TEXT    NOT NULL CHECK (source_id <> ''),
        detected_ms   INTEGER NOT NULL,
        record        TEXT    NOT NULL,
        UNIQUE (rule, event_id)
    ) STRICT;

    CREATE TABLE gaps (
        id          INTEGER PRIMARY KEY,
        source_id   TEXT    NOT NULL CHECK (source_id <> ''),
        from_ms     INTEGER NOT NULL,
        to_ms       INTEGER NOT NULL CHECK (to_ms >= from_ms),
        detected_ms INTEGER NOT NULL,
        reason      TEXT    NOT NULL,
        UNIQUE (source_id, from_ms, to_ms)
    ) STRICT;
    ",
    // v2: the outbox of the notification channels. One row per (alert, channel), written in
    // the same transaction as the alert; `pending` rows are (re)tried from `next_attempt_ms`,
    // `delivered` rows are never sent again, `failed` rows were given up on.
    "
    CREATE TABLE deliveries (
        alert_id        INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
        channel         TEXT    NOT NULL CHECK (channel <> ''),
        status          TEXT    NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_attempt_ms INTEGER NOT NULL,
        last_error      TEXT,
        delivered_ms    INTEGER,
        PRIMARY KEY (alert_id, channel)
    ) WITHOUT ROWID, STRICT;

    -- The notifier's question, \"what is due on this channel\", is a range scan here.
    CREATE INDEX deliveries_due ON deliveries (channel, status, next_attempt_ms);
    ",
    // v3: change intelligence. `analyses` holds one analysis per alert (actor class, diff,
    // verdict, final severity) as JSON, written once by the analysis worker so that every
    // channel shows the same; `baselines` holds the snapshots of the vendor's role.
    "
    CREATE TABLE analyses (
        alert_id    INTEGER PRIMARY KEY REFERENCES alerts (id) ON DELETE CASCADE,
        analyzed_ms INTEGER NOT NULL,
        analysis    TEXT    NOT NULL
    ) STRICT;

    CREATE TABLE baselines (
        id        INTEGER PRIMARY KEY,
        role_name TEXT    NOT NULL CHECK (role_name <> ''),
        taken_ms  INTEGER NOT NULL,
        snapshot  TEXT    NOT NULL
    ) STRICT;

    CREATE INDEX baselines_latest ON baselines (role_name, taken_ms);
    ",
    // v4: one alert per change. An alert is the change (account and eventID) with every rule
    // that matched it (`rules`, a JSON array, the headline rule first; `rule` stays the
    // headline), its origin (a rule match or rolewatch's own notice: typed, not guessed from
    // the rule's name), how it was found (a poll, the reconciliation sweep, or a notice) and
    // its delivery dedup key. `change_key` is unique; alerts of older versions keep theirs
    // (several rules' alerts of one event stay as they were, delivered or pending), and only
    // the oldest of them carries the change key, so a re-read never makes another.
    // `sweeps` keeps when each source's last reconciliation sweep ran.
    "
    ALTER TABLE alerts ADD COLUMN origin TEXT NOT NULL DEFAULT 'rule'
        CHECK (origin IN ('rule', 'notice'));
    ALTER TABLE alerts ADD COLUMN found_by TEXT NOT NULL DEFAULT 'poll'
        CHECK (found_by IN ('poll', 'sweep', 'notice'));
    ALTER TABLE alerts ADD COLUMN rules TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE alerts ADD COLUMN change_key TEXT;
    ALTER TABLE alerts ADD COLUMN dedup_key TEXT;

    UPDATE alerts SET origin = 'notice', found_by = 'notice'
    WHERE source_id = 'rolewatch' AND rule LIKE 'rolewatch-%';
    UPDATE alerts SET rules = json_array(rule);
    UPDATE alerts
    SET change_key = coalesce(
            CASE WHEN json_valid(record) THEN json_extract(record, '$.recipientAccountId') END,
            '') || '/' || event_id
    WHERE origin = 'rule'
      AND id IN (SELECT min(id) FROM alerts WHERE origin = 'rule' GROUP BY event_id);

    CREATE UNIQUE INDEX alerts_per_change ON alerts (change_key);

    CREATE TABLE sweeps (
        source_id TEXT    PRIMARY KEY NOT NULL CHECK (source_id <> ''),
        last_ms   INTEGER NOT NULL
    ) STRICT;
    ",
    // v5: the last known state of each watched role — its attached policies with their
    // default documents, inline policies and trust policy, in the shape of a baseline — as
    // of `as_of_ms`: the newest baseline with every analysed change since applied
    // (`from_event` names the last one; NULL for a baseline as taken). Each change is judged
    // against it. `incomplete` says why it no longer describes the role (a change could not
    // be read); the next baseline replaces it. Seeded from each role's newest baseline.
    "
    CREATE TABLE last_known (
        role_name  TEXT    PRIMARY KEY NOT NULL CHECK (role_name <> ''),
        as_of_ms   INTEGER NOT NULL,
        from_event TEXT,
        incomplete TEXT,
        snapshot   TEXT    NOT NULL
    ) STRICT;

    INSERT INTO last_known (role_name, as_of_ms, snapshot)
    SELECT role_name, taken_ms, snapshot FROM baselines b
    WHERE id = (SELECT id FROM baselines WHERE role_name = b.role_name
                ORDER BY taken_ms DESC, id DESC LIMIT 1);
    ",
    // v6: two more ways an alert is found: `queue` (an `sqs` source, EventBridge) and
    // `backstop` (a poll beside a queue found what the queue had not delivered). SQLite cannot
    // change a CHECK in place: the column is renamed, its successor added with the wider
    // CHECK and filled, and the old one dropped (its CHECK is its own, so it may be).
    "
    ALTER TABLE alerts RENAME COLUMN found_by TO found_by_v4;
    ALTER TABLE alerts ADD COLUMN found_by TEXT NOT NULL DEFAULT 'poll'
        CHECK (found_by IN ('poll', 'sweep', 'notice', 'queue', 'backstop'));
    UPDATE alerts SET found_by = found_by_v4;
    ALTER TABLE alerts DROP COLUMN found_by_v4;
    ",
];

/// The newest schema version this binary knows.
// The list is a handful of entries, so the cast cannot truncate.
#[allow(clippy::cast_possible_truncation)]
pub const CURRENT_VERSION: u32 = MIGRATIONS.len() as u32;

/// Reads `PRAGMA user_version`.
pub fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    // user_version is a signed 32-bit integer in the header; rolewatch only ever writes small
    // positive values, and a negative one (another program's) reads as "newer than known".
    let v: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    Ok(u32::try_from(v).unwrap_or(u32::MAX))
}

/// Applies every migration above the database's version, up to `target`, each in its own
/// IMMEDIATE transaction (which takes the write lock first, so two processes opening the same
/// new file cannot both apply a migration: the second one re-reads the version under the lock
/// and finds nothing to do).
///
/// Returns the version reached.
pub fn migrate_to(conn: &mut Connection, target: u32) -> Result<u32, MigrationError> {
    let mut reached = user_version(conn).map_err(|source| MigrationError { version: 0, source })?;
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = u32::try_from(index + 1).unwrap_or(u32::MAX);
        if version > target {
            break;
        }
        if version <= reached {
            continue;
        }
        let wrap = |source| MigrationError { version, source };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(wrap)?;
        if user_version(&tx).map_err(wrap)? >= version {
            // Another process got here first.
            reached = version;
            continue;
        }
        if version == 1 {
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(wrap)?;
        }
        tx.execute_batch(sql).map_err(wrap)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        reached = version;
    }
    Ok(reached)
}

/// A migration that failed; its transaction was rolled back.
#[derive(Debug)]
pub struct MigrationError {
    /// The version the failed migration would have reached.
    pub version: u32,
    /// What SQLite said.
    pub source: rusqlite::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every migration applies on an empty in-memory database, and the result passes
    /// SQLite's own checks (foreign keys name existing tables and columns).
    #[test]
    fn all_migrations_apply_to_an_empty_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(
            migrate_to(&mut conn, CURRENT_VERSION).unwrap(),
            CURRENT_VERSION
        );
        assert_eq!(user_version(&conn).unwrap(), CURRENT_VERSION);
        let app: i32 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .unwrap();
        assert_eq!(app, APPLICATION_ID);
        let fk_problems: i64 = conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(fk_problems, 0);
        // Applying again is a no-op.
        assert_eq!(
            migrate_to(&mut conn, CURRENT_VERSION).unwrap(),
            CURRENT_VERSION
        );
    }

    /// v2 → v3 keeps the alerts and adds the analysis and baseline tables, whose foreign key
    /// follows an alert's deletion.
    #[test]
    fn v3_adds_analyses_and_baselines_to_a_v2_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        assert_eq!(migrate_to(&mut conn, 2).unwrap(), 2);
        conn.execute_batch(
            "INSERT INTO alerts (rule, severity, event_id, event_name, event_time_ms, source_id,
                                 detected_ms, record)
             VALUES ('r', 'high', 'e1', 'AttachRolePolicy', 1, 's', 2, '{}');",
        )
        .unwrap();
        assert_eq!(migrate_to(&mut conn, 3).unwrap(), 3);
        conn.execute_batch(
            "INSERT INTO analyses (alert_id, analyzed_ms, analysis) VALUES (1, 3, '{}');
             INSERT INTO baselines (role_name, taken_ms, snapshot) VALUES ('r', 3, '{}');",
        )
        .unwrap();
        assert!(conn
            .execute(
                "INSERT INTO analyses (alert_id, analyzed_ms, analysis) VALUES (9, 3, '{}')",
                []
            )
            .is_err());
        conn.execute("DELETE FROM alerts", []).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM analyses", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    /// v3 → v4 keeps every alert and its outbox rows; of several rules' alerts of one event,
    /// only the oldest carries the change key; notices become typed.
    #[test]
    fn v4_types_alerts_and_keys_them_by_change() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        assert_eq!(migrate_to(&mut conn, 3).unwrap(), 3);
        conn.execute_batch(
            r#"INSERT INTO alerts (rule, severity, event_id, event_name, event_time_ms, source_id,
                                 detected_ms, record)
             VALUES ('documented', 'high', 'e1', 'AttachRolePolicy', 1, 's', 2,
                     '{"recipientAccountId":"111122223333"}'),
                    ('complete', 'high', 'e1', 'AttachRolePolicy', 1, 's', 2,
                     '{"recipientAccountId":"111122223333"}'),
                    ('documented', 'high', 'e2', 'AttachRolePolicy', 1, 's', 2, 'not json'),
                    ('rolewatch-source-blind', 'high', 'n1', 'RolewatchSourceBlind', 1,
                     'rolewatch', 2, '{}'),
                    ('rolewatch-mine', 'low', 'e3', 'AttachRolePolicy', 1, 's', 2, '{}');
             INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_ms)
             VALUES (1, 'c', 'delivered', 1, 0), (2, 'c', 'pending', 0, 0);"#,
        )
        .unwrap();
        assert_eq!(migrate_to(&mut conn, 4).unwrap(), 4);
        let rows: Vec<(i64, String, String, Option<String>)> = conn
            .prepare("SELECT id, origin, rules, change_key FROM alerts ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (
                    1,
                    "rule".into(),
                    r#"["documented"]"#.into(),
                    Some("111122223333/e1".into())
                ),
                (2, "rule".into(), r#"["complete"]"#.into(), None),
                (
                    3,
                    "rule".into(),
                    r#"["documented"]"#.into(),
                    Some("/e2".into())
                ),
                (
                    4,
                    "notice".into(),
                    r#"["rolewatch-source-blind"]"#.into(),
                    None
                ),
                // A user's rule may start with `rolewatch-`: it is a rule match all the same.
                (
                    5,
                    "rule".into(),
                    r#"["rolewatch-mine"]"#.into(),
                    Some("/e3".into())
                ),
            ]
        );
        let pending: i64 = conn
            .query_row(
                "SELECT count(*) FROM deliveries WHERE status = 'pending'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(pending, 1);
        // The change key is unique from now on.
        assert!(conn
            .execute(
                "INSERT INTO alerts (rule, severity, event_id, event_name, event_time_ms,
                                     source_id, detected_ms, record, change_key)
                 VALUES ('x', 'high', 'e1', 'A', 1, 's', 2, '{}', '111122223333/e1')",
                []
            )
            .is_err());
    }

    /// v4 → v5 adds the last known state of each role, seeded from its newest baseline, and
    /// keeps everything else.
    #[test]
    fn v5_seeds_the_last_known_state_from_the_newest_baseline() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        assert_eq!(migrate_to(&mut conn, 4).unwrap(), 4);
        conn.execute_batch(
            r#"INSERT INTO baselines (role_name, taken_ms, snapshot)
               VALUES ('vendor', 10, '{"t":10}'), ('vendor', 30, '{"t":30}'),
                      ('vendor', 20, '{"t":20}'), ('other', 5, '{"t":5}');
               INSERT INTO alerts (rule, severity, event_id, event_name, event_time_ms,
                                   source_id, detected_ms, record)
               VALUES ('r', 'high', 'e1', 'AttachRolePolicy', 1, 's', 2, '{}');"#,
        )
        .unwrap();
        assert_eq!(migrate_to(&mut conn, 5).unwrap(), 5);
        type Row = (String, i64, Option<String>, Option<String>, String);
        let rows: Vec<Row> = conn
            .prepare(
                "SELECT role_name, as_of_ms, from_event, incomplete, snapshot FROM last_known
                 ORDER BY role_name",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                ("other".into(), 5, None, None, r#"{"t":5}"#.into()),
                ("vendor".into(), 30, None, None, r#"{"t":30}"#.into()),
            ]
        );
        let alerts: i64 = conn
            .query_row("SELECT count(*) FROM alerts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(alerts, 1);
        // One row per role; an empty role name is refused.
        assert!(conn
            .execute(
                "INSERT INTO last_known (role_name, as_of_ms, snapshot) VALUES ('vendor', 1, '{}')",
                []
            )
            .is_err());
        assert!(conn
            .execute(
                "INSERT INTO last_known (role_name, as_of_ms, snapshot) VALUES ('', 1, '{}')",
                []
            )
            .is_err());
    }

    /// v5 → v6 keeps every alert's found_by and admits `queue` and `backstop`, nothing else.
    #[test]
    fn v6_admits_queue_and_backstop_finds() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        assert_eq!(migrate_to(&mut conn, 5).unwrap(), 5);
        conn.execute_batch(
            "INSERT INTO alerts (rule, severity, event_id, event_name, event_time_ms, source_id,
                                 detected_ms, record, found_by, change_key)
             VALUES ('r', 'high', 'e1', 'A', 1, 's', 2, '{}', 'sweep', '/e1');
             INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_ms)
             VALUES (1, 'c', 'pending', 0, 0);",
        )
        .unwrap();
        assert!(conn
            .execute(
                "INSERT INTO alerts (rule, severity, event_id, event_name, event_time_ms,
                                     source_id, detected_ms, record, found_by)
                 VALUES ('r', 'high', 'e2', 'A', 1, 's', 2, '{}', 'queue')",
                []
            )
            .is_err());
        assert_eq!(migrate_to(&mut conn, 6).unwrap(), 6);
        let (found, deliveries): (String, i64) = conn
            .query_row(
                "SELECT found_by, (SELECT count(*) FROM deliveries) FROM alerts WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((found.as_str(), deliveries), ("sweep", 1));
        for (id, how, ok) in [
            ("e2", "queue", true),
            ("e3", "backstop", true),
            ("e4", "mail", false),
        ] {
            let r = conn.execute(
                "INSERT INTO alerts (rule, severity, event_id, event_name, event_time_ms,
                                     source_id, detected_ms, record, found_by)
                 VALUES ('r', 'high', ?1, 'A', 1, 's', 2, '{}', ?2)",
                [id, how],
            );
            assert_eq!(r.is_ok(), ok, "{how}");
        }
    }

    #[test]
    fn migrate_to_stops_at_the_target() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate_to(&mut conn, 1).unwrap(), 1);
        let has_deliveries: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'deliveries'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(has_deliveries, 0);
    }
}
