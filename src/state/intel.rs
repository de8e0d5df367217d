//! The state of the change analysis: one analysis per alert, and the baselines of the
//! vendor's role. Stored as JSON text; the types live in [`crate::intel`].

use rusqlite::{params, OptionalExtension};

use super::error::sqlite;
use super::outbox::{stored_alert, ALERT_COLUMNS};
use super::{State, StateError, StoredAlert};

/// How many baselines of one role are kept.
const BASELINES_KEPT: i64 = 30;

impl State {
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

    /// Alerts still pending on some channel that have no analysis yet, oldest first;
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
                     ORDER BY a.id LIMIT ?1"
            ))?;
            let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], stored_alert)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        };
        run().map_err(sqlite(&self.path, "read unanalysed alerts"))
    }

    /// Records a baseline of `role_name` (JSON) and forgets all but the newest
    /// `BASELINES_KEPT` of that role.
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
    }
}
