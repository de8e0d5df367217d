//! The outbox side of the state: which alerts are due on which channel, and the outcome of
//! each delivery (delivered only after the channel accepted it).

use rusqlite::{params, OptionalExtension, Row};

use super::error::sqlite;
use super::{Delivery, DeliveryStatus, FoundBy, Origin, State, StateError, StoredAlert};

/// The longest `last_error` stored for a delivery; a channel's error text is for a human.
pub(super) const MAX_ERROR_CHARS: usize = 1000;

/// The columns [`stored_alert`] reads, of the alerts table as `a`.
pub(crate) const ALERT_COLUMNS: &str = "a.id, a.rule, a.severity, a.event_id, a.event_name,
    a.event_time_ms, a.source_id, a.detected_ms, a.record, a.rules, a.origin, a.found_by,
    a.dedup_key";

impl State {
    /// Alerts not yet delivered on `channel` (its outbox row is `pending`, due or not),
    /// oldest first, at most `limit`.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn undelivered_alerts(
        &self,
        channel: &str,
        limit: usize,
    ) -> Result<Vec<StoredAlert>, StateError> {
        self.query_alerts(
            "WHERE d.channel = ?1 AND d.status = 'pending' ORDER BY a.id LIMIT ?2",
            params![channel, limit_param(limit)],
        )
        .map_err(sqlite(&self.path, "read undelivered alerts"))
    }

    /// The alerts due on `channel` at `now_ms`, oldest first, at most `limit`: pending, their
    /// next attempt reached, and — the analysis wait — either analysed, one of rolewatch's own
    /// notices (nothing to analyse), or detected at least `analysis_wait_ms` ago (after that
    /// an alert goes out without its analysis).
    pub fn due_alerts(
        &self,
        channel: &str,
        now_ms: i64,
        analysis_wait_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredAlert>, StateError> {
        self.query_alerts(
            "WHERE d.channel = ?1 AND d.status = 'pending' AND d.next_attempt_ms <= ?2
               AND (a.origin = 'notice'
                    OR a.detected_ms <= ?2 - ?4
                    OR EXISTS (SELECT 1 FROM analyses n WHERE n.alert_id = a.id))
             ORDER BY d.next_attempt_ms, a.id LIMIT ?3",
            params![channel, now_ms, limit_param(limit), analysis_wait_ms],
        )
        .map_err(sqlite(&self.path, "read due alerts"))
    }

    /// Makes every pending delivery on `channel` due at once, in the order the alerts were
    /// detected (each row's next attempt goes back to its alert's detection time, or
    /// `now_ms` if that is later, so that a row retried early does not fall behind newer
    /// ones): the channel answered its probe after failing, so nothing waits out the backoff
    /// of earlier failures. Returns how many pending rows the channel has.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the update fails.
    pub fn make_due(&mut self, channel: &str, now_ms: i64) -> Result<usize, StateError> {
        self.conn
            .prepare_cached(
                "UPDATE deliveries
                 SET next_attempt_ms = min(?2, coalesce((SELECT a.detected_ms FROM alerts a
                                                        WHERE a.id = deliveries.alert_id), ?2))
                 WHERE channel = ?1 AND status = 'pending'",
            )
            .and_then(|mut stmt| stmt.execute(params![channel, now_ms]))
            .map_err(sqlite(
                &self.path,
                "make a channel's pending deliveries due",
            ))
    }

    /// The earliest `next_attempt_ms` of any pending delivery, on any channel: when the
    /// outbox has work next. `None` when nothing is pending.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn next_attempt_ms(&self) -> Result<Option<i64>, StateError> {
        self.conn
            .prepare_cached("SELECT MIN(next_attempt_ms) FROM deliveries WHERE status = 'pending'")
            .and_then(|mut stmt| stmt.query_row([], |row| row.get::<_, Option<i64>>(0)))
            .map_err(sqlite(&self.path, "read the next delivery attempt"))
    }

    fn query_alerts(
        &self,
        tail: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> rusqlite::Result<Vec<StoredAlert>> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM deliveries d JOIN alerts a ON a.id = d.alert_id {tail}"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params, stored_alert)?;
        rows.collect()
    }

    /// One alert by row id.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn alert(&self, alert_id: i64) -> Result<Option<StoredAlert>, StateError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.id = ?1"
            ))
            .and_then(|mut stmt| stmt.query_row([alert_id], stored_alert).optional())
            .map_err(sqlite(&self.path, "read an alert"))
    }

    /// The outbox row of `alert_id` on `channel`.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn delivery(&self, alert_id: i64, channel: &str) -> Result<Option<Delivery>, StateError> {
        let run = || {
            let mut stmt = self.conn.prepare_cached(
                "SELECT alert_id, channel, status, attempts, next_attempt_ms, last_error,
                        delivered_ms
                 FROM deliveries WHERE alert_id = ?1 AND channel = ?2",
            )?;
            stmt.query_row(params![alert_id, channel], |row| {
                let status: String = row.get(2)?;
                let attempts: i64 = row.get(3)?;
                Ok(Delivery {
                    alert_id: row.get(0)?,
                    channel: row.get(1)?,
                    // The CHECK constraint admits only the three known words.
                    status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    next_attempt_ms: row.get(4)?,
                    last_error: row.get(5)?,
                    delivered_ms: row.get(6)?,
                })
            })
            .optional()
        };
        run().map_err(sqlite(&self.path, "read a delivery"))
    }

    /// Records that `channel` accepted alert `alert_id` at `now_ms`: the row is never sent
    /// again. Marking a row already delivered changes nothing.
    ///
    /// # Errors
    ///
    /// [`StateError::NoSuchDelivery`] when the alert has no row for the channel; another
    /// [`StateError`] when the update fails.
    pub fn mark_delivered(
        &mut self,
        alert_id: i64,
        channel: &str,
        now_ms: i64,
    ) -> Result<(), StateError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE deliveries
                 SET status = 'delivered', delivered_ms = ?3, attempts = attempts + 1
                 WHERE alert_id = ?1 AND channel = ?2 AND status <> 'delivered'",
            )
            .and_then(|mut stmt| stmt.execute(params![alert_id, channel, now_ms]))
            .map_err(sqlite(&self.path, "mark an alert delivered"))?;
        if changed == 0 {
            self.require_delivery(alert_id, channel)?;
        }
        Ok(())
    }

    /// Records a failed attempt to deliver alert `alert_id` on `channel`: the attempt count
    /// goes up and `error` (cut to a bounded length) is kept. With `retry_at_ms` the row stays
    /// pending and is due again then; without, the row is given up on (`failed`). A row
    /// already delivered stays delivered.
    ///
    /// # Errors
    ///
    /// [`StateError::NoSuchDelivery`] when the alert has no row for the channel; another
    /// [`StateError`] when the update fails.
    pub fn mark_failed(
        &mut self,
        alert_id: i64,
        channel: &str,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StateError> {
        let error = truncate_chars(error, MAX_ERROR_CHARS);
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE deliveries
                 SET attempts = attempts + 1, last_error = ?3,
                     status = CASE WHEN ?4 IS NULL THEN 'failed' ELSE 'pending' END,
                     next_attempt_ms = coalesce(?4, next_attempt_ms)
                 WHERE alert_id = ?1 AND channel = ?2 AND status <> 'delivered'",
            )
            .and_then(|mut stmt| stmt.execute(params![alert_id, channel, error, retry_at_ms]))
            .map_err(sqlite(&self.path, "record a failed delivery"))?;
        if changed == 0 {
            self.require_delivery(alert_id, channel)?;
        }
        Ok(())
    }

    fn require_delivery(&self, alert_id: i64, channel: &str) -> Result<(), StateError> {
        match self.delivery(alert_id, channel)? {
            Some(_) => Ok(()),
            None => Err(StateError::NoSuchDelivery {
                path: self.path.clone(),
                alert_id,
                channel: channel.to_owned(),
            }),
        }
    }
}

pub(super) fn stored_alert(row: &Row<'_>) -> rusqlite::Result<StoredAlert> {
    let rule: String = row.get(1)?;
    let rules: String = row.get(9)?;
    // Written by this module as a JSON array of strings; a damaged value falls back to the
    // headline rule rather than losing the alert.
    let rules = serde_json::from_str::<Vec<String>>(&rules)
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| vec![rule.clone()]);
    let origin: String = row.get(10)?;
    let found_by: String = row.get(11)?;
    Ok(StoredAlert {
        id: row.get(0)?,
        rule,
        rules,
        severity: row.get(2)?,
        origin: Origin::parse(&origin),
        found_by: FoundBy::parse(&found_by),
        dedup_key: row.get(12)?,
        event_id: row.get(3)?,
        event_name: row.get(4)?,
        event_time_ms: row.get(5)?,
        source_id: row.get(6)?,
        detected_ms: row.get(7)?,
        record: row.get(8)?,
    })
}

/// A `LIMIT` value: SQLite integers are i64, and a limit past that is "no limit".
pub(super) fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(super) fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}
