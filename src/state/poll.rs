//! The poll commit: what one poll learned, written in one transaction, and the one way alerts
//! enter the state ([`insert_alert`], for polls and notices alike).

use std::collections::HashSet;

use rusqlite::{params, TransactionBehavior};

use super::error::sqlite;
use super::{Committed, NewAlert, PollCommit, State, StateError, StoredAlert};

impl State {
    /// Which of `event_ids` `source_id` has already seen (and not yet pruned).
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn seen_ids(
        &self,
        source_id: &str,
        event_ids: &[&str],
    ) -> Result<HashSet<String>, StateError> {
        let run = || {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT 1 FROM seen WHERE source_id = ?1 AND event_id = ?2")?;
            let mut found = HashSet::new();
            for &id in event_ids {
                if stmt.exists(params![source_id, id])? {
                    found.insert(id.to_owned());
                }
            }
            Ok(found)
        };
        run().map_err(sqlite(&self.path, "read seen eventIDs"))
    }

    /// Writes everything one poll learned in one transaction: every fetched event into the
    /// seen set (a repeat keeps the later expiry), every match into the alerts unless that
    /// rule already alerted on that eventID, one `pending` outbox row per new alert and
    /// channel, the gaps not yet known, and the cursor (which never moves backwards: the
    /// newer of the stored and the committed one is kept). Then the source's seen rows
    /// that expired before `now_ms` are pruned, in the same transaction.
    ///
    /// # Errors
    ///
    /// [`StateError`] when any statement fails (for example a constraint: an empty eventID,
    /// a gap that ends before it starts; or a full disk). The transaction is then rolled
    /// back: **nothing** of the poll is recorded, and the caller polls the window again.
    pub fn commit_poll(&mut self, c: &PollCommit<'_>) -> Result<Committed, StateError> {
        let Self { conn, path } = self;
        let mut run = || -> rusqlite::Result<Committed> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut seen_new = 0;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO seen (source_id, event_id, event_time_ms, expires_ms)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )?;
                let mut extend = tx.prepare_cached(
                    "UPDATE seen SET expires_ms = ?3
                     WHERE source_id = ?1 AND event_id = ?2 AND expires_ms < ?3",
                )?;
                for e in &c.seen {
                    if insert.execute(params![
                        c.source_id,
                        e.event_id,
                        e.event_time_ms,
                        e.expires_ms
                    ])? == 1
                    {
                        seen_new += 1;
                    } else {
                        extend.execute(params![c.source_id, e.event_id, e.expires_ms])?;
                    }
                }
            }

            let mut alerts = Vec::new();
            for a in &c.alerts {
                if let Some(stored) = insert_alert(&tx, a, &c.channels, c.now_ms)? {
                    alerts.push(stored);
                }
            }

            let mut gaps = Vec::new();
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO gaps (source_id, from_ms, to_ms, detected_ms, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                )?;
                for g in &c.gaps {
                    if insert.execute(params![
                        g.source_id,
                        g.from_ms,
                        g.to_ms,
                        g.detected_ms,
                        g.reason
                    ])? == 1
                    {
                        gaps.push(g.clone());
                    }
                }
            }

            let cursor_ms: i64 = tx
                .prepare_cached(
                    "INSERT INTO cursors (source_id, position_ms, updated_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (source_id) DO UPDATE
                     SET position_ms = max(position_ms, excluded.position_ms),
                         updated_ms = excluded.updated_ms
                     RETURNING position_ms",
                )?
                .query_row(params![c.source_id, c.cursor_ms, c.now_ms], |row| {
                    row.get(0)
                })?;

            let pruned = tx
                .prepare_cached("DELETE FROM seen WHERE source_id = ?1 AND expires_ms < ?2")?
                .execute(params![c.source_id, c.now_ms])?;

            tx.commit()?;
            Ok(Committed {
                alerts,
                gaps,
                seen_new,
                pruned,
                cursor_ms,
            })
        };
        run().map_err(sqlite(path, "commit a poll"))
    }

    /// Records an alert rolewatch makes itself (a notice about its own sight) with one
    /// `pending` outbox row per channel, in one transaction, without touching any cursor.
    /// Returns the stored alert, or `None` when that rule already has that eventID (the
    /// notice was recorded before: a notice is recorded once).
    ///
    /// # Errors
    ///
    /// [`StateError`] when a statement fails; nothing is recorded then.
    pub fn record_notice(
        &mut self,
        alert: &NewAlert<'_>,
        channels: &[&str],
        now_ms: i64,
    ) -> Result<Option<StoredAlert>, StateError> {
        let Self { conn, path } = self;
        let mut run = || -> rusqlite::Result<Option<StoredAlert>> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored = insert_alert(&tx, alert, channels, now_ms)?;
            tx.commit()?;
            Ok(stored)
        };
        run().map_err(sqlite(path, "record a notice"))
    }
}

/// Records one alert with one `pending` outbox row per channel (its own, else
/// `all_channels`), unless its change (or, for a notice, its rule and eventID) is recorded
/// already. The one way alerts enter the state, for polls and notices alike.
pub(super) fn insert_alert(
    tx: &rusqlite::Transaction<'_>,
    a: &NewAlert<'_>,
    all_channels: &[&str],
    now_ms: i64,
) -> rusqlite::Result<Option<StoredAlert>> {
    let rules: Vec<&str> = if a.rules.is_empty() {
        vec![a.rule]
    } else {
        a.rules.clone()
    };
    let rules_json = serde_json::to_string(&rules).unwrap_or_else(|_| "[]".to_owned());
    let inserted = tx
        .prepare_cached(
            "INSERT INTO alerts (rule, severity, event_id, event_name, event_time_ms, source_id,
                                 detected_ms, record, rules, origin, found_by, change_key,
                                 dedup_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            a.rule,
            a.severity,
            a.event_id,
            a.event_name,
            a.event_time_ms,
            a.source_id,
            now_ms,
            a.record,
            rules_json,
            a.origin.as_str(),
            a.found_by.as_str(),
            a.change_key,
            a.dedup_key,
        ])?;
    if inserted == 0 {
        return Ok(None);
    }
    let id = tx.last_insert_rowid();
    let mut outbox = tx.prepare_cached(
        "INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_ms)
         VALUES (?1, ?2, 'pending', 0, ?3) ON CONFLICT DO NOTHING",
    )?;
    for channel in a.channels.as_deref().unwrap_or(all_channels) {
        outbox.execute(params![id, channel, now_ms])?;
    }
    Ok(Some(StoredAlert {
        id,
        rule: a.rule.to_owned(),
        rules: rules.iter().map(|r| (*r).to_owned()).collect(),
        severity: a.severity.to_owned(),
        origin: a.origin,
        found_by: a.found_by,
        dedup_key: a.dedup_key.map(str::to_owned),
        event_id: a.event_id.to_owned(),
        event_name: a.event_name.to_owned(),
        event_time_ms: a.event_time_ms,
        source_id: a.source_id.to_owned(),
        detected_ms: now_ms,
        record: a.record.to_owned(),
    }))
}
