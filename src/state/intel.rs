//! The state of the change analysis: one analysis per alert, the baselines of the vendor's
//! role, and its last known state (the newest baseline with every analysed change since
//! applied). Stored as JSON text; the types live in [`crate::intel`].

use rusqlite::{params, OptionalExtension};

use super::error::sqlite;
use super::outbox::{stored_alert, ALERT_COLUMNS};
use super::{State, StateError, StoredAlert};

/// How many baselines of one role are kept.
const BASELINES_KEPT: i64 = 30;

/// The last known state of a role, as stored (see `intel::known`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastKnownRow {
    /// When the role was as `snapshot` says (unix ms).
    pub as_of_ms: i64,
    /// The `eventID` of the last change applied; `None` for a baseline as taken.
    pub from_event: Option<String>,
    /// Why the state no longer describes the role.
    pub incomplete: Option<String>,
    /// The role, as a baseline's JSON.
    pub snapshot: String,
}

fn upsert_last_known(
    conn: &rusqlite::Connection,
    role_name: &str,
    row: &LastKnownRow,
) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO last_known (role_name, as_of_ms, from_event, incomplete, snapshot)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (role_name) DO UPDATE SET as_of_ms = excluded.as_of_ms,
             from_event = excluded.from_event, incomplete = excluded.incomplete,
             snapshot = excluded.snapshot",
        params![
            role_name,
            row.as_of_ms,
            row.from_event,
            row.incomplete,
            row.snapshot
        ],
    )
}

impl State {
    /// Records the analysis of `alert_id` (JSON) and, in the same transaction, the last
    /// known state of `role_name` after the change it analysed.
    ///
    /// # Errors
    ///
    /// [`StateError`] when a statement fails (for example, no such alert); nothing is
    /// recorded then.
    pub fn put_analysis_and_last_known(
        &mut self,
        alert_id: i64,
        analysis: &str,
        now_ms: i64,
        role_name: &str,
        last_known: &LastKnownRow,
    ) -> Result<(), StateError> {
        let Self { conn, path } = self;
        let mut run = || -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO analyses (alert_id, analyzed_ms, analysis) VALUES (?1, ?2, ?3)
                 ON CONFLICT (alert_id) DO UPDATE SET analyzed_ms = excluded.analyzed_ms,
                                                      analysis = excluded.analysis",
                params![alert_id, now_ms, analysis],
            )?;
            upsert_last_known(&tx, role_name, last_known)?;
            tx.commit()
        };
        run().map_err(sqlite(path, "record an analysis"))
    }

    /// The last known state of `role_name`.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn last_known(&self, role_name: &str) -> Result<Option<LastKnownRow>, StateError> {
        self.conn
            .prepare_cached(
                "SELECT as_of_ms, from_event, incomplete, snapshot FROM last_known
                 WHERE role_name = ?1",
            )
            .and_then(|mut s| {
                s.query_row([role_name], |r| {
                    Ok(LastKnownRow {
                        as_of_ms: r.get(0)?,
                        from_event: r.get(1)?,
                        incomplete: r.get(2)?,
                        snapshot: r.get(3)?,
                    })
                })
                .optional()
            })
            .map_err(sqlite(&self.path, "read the last known state"))
    }

    /// Records the analysis of `alert_id` (JSON); a second one replaces the first.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the statement fails (for example, no such alert).
    pub fn put_analysis(
        &mut self,
        alert_id: i64,
        analysis: &str,
        now_ms: i64,
    ) -> Result<(), StateError> {
        self.conn
            .prepare_cached(
                "INSERT INTO analyses (alert_id, analyzed_ms, analysis) VALUES (?1, ?2, ?3)
                 ON CONFLICT (alert_id) DO UPDATE SET analyzed_ms = excluded.analyzed_ms,
                                                      analysis = excluded.analysis",
            )
            .and_then(|mut s| s.execute(params![alert_id, now_ms, analysis]))
            .map_err(sqlite(&self.path, "record an analysis"))?;
        Ok(())
    }

    /// The analysis of `alert_id` (JSON), if one was recorded.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn analysis(&self, alert_id: i64) -> Result<Option<String>, StateError> {
        self.conn
            .prepare_cached("SELECT analysis FROM analyses WHERE alert_id = ?1")
            .and_then(|mut s| s.query_row([alert_id], |r| r.get(0)).optional())
            .map_err(sqlite(&self.path, "read an analysis"))
    }

    /// Alerts still pending on some channel that have no analysis yet, the oldest change
    /// first (each change is judged against the state the ones before it left);
    /// rolewatch's own notices (origin `notice`) are never analysed.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn unanalysed_alerts(&self, limit: usize) -> Result<Vec<StoredAlert>, StateError> {
        let run = || {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {ALERT_COLUMNS}
                     FROM alerts a
                     WHERE a.origin = 'rule'
                       AND NOT EXISTS (SELECT 1 FROM analyses WHERE alert_id = a.id)
                       AND EXISTS (SELECT 1 FROM deliveries d
                                   WHERE d.alert_id = a.id AND d.status = 'pending')
                     ORDER BY a.event_time_ms, a.id LIMIT ?1"
            ))?;
            let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], stored_alert)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        };
        run().map_err(sqlite(&self.path, "read unanalysed alerts"))
    }

    /// Records a baseline of `role_name` (JSON), forgets all but the newest
    /// `BASELINES_KEPT` of that role, and makes it the role's last known state unless that
    /// is newer (a change after `taken_ms` was applied to it).
    ///
    /// # Errors
    ///
    /// [`StateError`] when a statement fails; nothing is recorded then.
    pub fn put_baseline(
        &mut self,
        role_name: &str,
        taken_ms: i64,
        snapshot: &str,
    ) -> Result<(), StateError> {
        let Self { conn, path } = self;
        let mut run = || -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO baselines (role_name, taken_ms, snapshot) VALUES (?1, ?2, ?3)",
                params![role_name, taken_ms, snapshot],
            )?;
            tx.execute(
                "DELETE FROM baselines WHERE role_name = ?1 AND id NOT IN
                   (SELECT id FROM baselines WHERE role_name = ?1
                    ORDER BY taken_ms DESC, id DESC LIMIT ?2)",
                params![role_name, BASELINES_KEPT],
            )?;
            tx.execute(
                "INSERT INTO last_known (role_name, as_of_ms, from_event, incomplete, snapshot)
                 VALUES (?1, ?2, NULL, NULL, ?3)
                 ON CONFLICT (role_name) DO UPDATE SET as_of_ms = excluded.as_of_ms,
                     from_event = NULL, incomplete = NULL, snapshot = excluded.snapshot
                 WHERE last_known.as_of_ms <= excluded.as_of_ms",
                params![role_name, taken_ms, snapshot],
            )?;
            tx.commit()
        };
        run().map_err(sqlite(path, "record a baseline"))
    }

    /// The newest baseline of `role_name`: `(taken_ms, JSON)`.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn latest_baseline(&self, role_name: &str) -> Result<Option<(i64, String)>, StateError> {
        self.conn
            .prepare_cached(
                "SELECT taken_ms, snapshot FROM baselines WHERE role_name = ?1
                 ORDER BY taken_ms DESC, id DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row([role_name], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(sqlite(&self.path, "read the baseline"))
    }
}

#[cfg(test)]
mod tests {
    use crate::state::{NewAlert, PollCommit, State};

    #[test]
    fn analyses_and_baselines() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("s.db")).unwrap().into_state();
        let c = s
            .commit_poll(&PollCommit {
                source_id: "src",
                cursor_ms: 10,
                now_ms: 10,
                seen: Vec::new(),
                alerts: vec![NewAlert {
                    rule: "r",
                    rules: vec!["r"],
                    severity: "high",
                    origin: crate::state::Origin::Rule,
                    found_by: crate::state::FoundBy::Poll,
                    change_key: None,
                    dedup_key: None,
                    event_id: "e1",
                    event_name: "AttachRolePolicy",
                    event_time_ms: 5,
                    source_id: "src",
                    record: "{}",
                    channels: None,
                }],
                channels: vec!["stdout"],
                gaps: Vec::new(),
            })
            .unwrap();
        let id = c.alerts[0].id;
        assert_eq!(s.unanalysed_alerts(10).unwrap().len(), 1);
        assert_eq!(s.analysis(id).unwrap(), None);
        s.put_analysis(id, "{\"verdict\":\"widened\"}", 11).unwrap();
        assert_eq!(
            s.analysis(id).unwrap().as_deref(),
            Some("{\"verdict\":\"widened\"}")
        );
        assert!(s.unanalysed_alerts(10).unwrap().is_empty());
        assert!(s.put_analysis(id + 100, "{}", 11).is_err(), "no such alert");

        assert_eq!(s.latest_baseline("role").unwrap(), None);
        for t in 0..40 {
            s.put_baseline("role", t, &format!("{{\"t\":{t}}}"))
                .unwrap();
        }
        assert_eq!(
            s.latest_baseline("role").unwrap(),
            Some((39, "{\"t\":39}".to_owned()))
        );
        let n: i64 = s
            .conn
            .query_row("SELECT count(*) FROM baselines", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 30);
        let k = s.last_known("role").unwrap().unwrap();
        assert_eq!((k.as_of_ms, k.snapshot.as_str()), (39, "{\"t\":39}"));
    }

    /// The last known state: a change's is written with its analysis; a baseline replaces
    /// it unless it is newer.
    #[test]
    fn last_known_follows_changes_and_newer_baselines() {
        use super::LastKnownRow;
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("s.db")).unwrap().into_state();
        let c = s
            .commit_poll(&PollCommit {
                source_id: "src",
                cursor_ms: 10,
                now_ms: 10,
                seen: Vec::new(),
                alerts: vec![NewAlert {
                    rule: "r",
                    rules: vec!["r"],
                    severity: "high",
                    origin: crate::state::Origin::Rule,
                    found_by: crate::state::FoundBy::Poll,
                    change_key: None,
                    dedup_key: None,
                    event_id: "e1",
                    event_name: "AttachRolePolicy",
                    event_time_ms: 5,
                    source_id: "src",
                    record: "{}",
                    channels: None,
                }],
                channels: vec!["stdout"],
                gaps: Vec::new(),
            })
            .unwrap();
        let id = c.alerts[0].id;
        assert_eq!(s.last_known("role").unwrap(), None);
        s.put_baseline("role", 100, "{\"b\":100}").unwrap();
        let after = LastKnownRow {
            as_of_ms: 200,
            from_event: Some("e1".into()),
            incomplete: None,
            snapshot: "{\"after\":\"e1\"}".into(),
        };
        s.put_analysis_and_last_known(id, "{}", 11, "role", &after)
            .unwrap();
        assert_eq!(s.last_known("role").unwrap().as_ref(), Some(&after));
        assert!(s.analysis(id).unwrap().is_some());
        // An older baseline (taken before the change) does not replace it.
        s.put_baseline("role", 150, "{\"b\":150}").unwrap();
        assert_eq!(s.last_known("role").unwrap().as_ref(), Some(&after));
        s.put_baseline("role", 300, "{\"b\":300}").unwrap();
        let k = s.last_known("role").unwrap().unwrap();
        assert_eq!(
            (k.as_of_ms, k.from_event, k.snapshot.as_str()),
            (300, None, "{\"b\":300}")
        );
        // Nothing is recorded when the analysis cannot be.
        assert!(s
            .put_analysis_and_last_known(id + 100, "{}", 11, "role", &after)
            .is_err());
        assert_eq!(s.last_known("role").unwrap().unwrap().as_of_ms, 300);
    }
}
