//! [`Backend`] for [`DynamoState`]: reads by key or by one partition's query, writes as
//! transactions (fenced while leading, see the module above).
//!
//! The outbox is shared by every replica: [`Backend::due_alerts`] **claims** each row it
//! returns (a conditional update of its pending-index row: owner and a claim deadline), so a
//! row goes to one replica at a time; delivered or failed, the claim goes with the index row.
//! A replica that dies holding a claim delays that row by at most [`CLAIM_MS`], after which
//! another sends it (the one documented resend, when the dead replica's send had reached the
//! channel before it died).

use std::collections::HashSet;

use aws_sdk_dynamodb::error::BuildError;

use super::commit::{delete, get_text, put, put_text, update};
use super::{keys, n, num, s, text, DynamoState, Item, Leadership, TxFailure};
use crate::state::outbox::{truncate_chars, MAX_ERROR_CHARS};
use crate::state::{
    Backend, Committed, Cursor, Delivery, DeliveryStatus, FoundBy, Gap, LastKnownRow, NewAlert,
    Origin, PollCommit, StateError, StateStats, StoredAlert,
};

/// How long a replica's claim on an outbox row lasts.
pub const CLAIM_MS: i64 = 120_000;
/// How many baselines of one role are kept (as in SQLite).
const BASELINES_KEPT: usize = 30;

fn stored_alert(item: &Item) -> Option<StoredAlert> {
    let rule = text(item, "rule")?;
    let rules = text(item, "rules")
        .and_then(|r| serde_json::from_str::<Vec<String>>(&r).ok())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| vec![rule.clone()]);
    Some(StoredAlert {
        id: num(item, "id")?,
        rules,
        severity: text(item, "severity").unwrap_or_default(),
        origin: Origin::parse(&text(item, "origin").unwrap_or_default()),
        found_by: FoundBy::parse(&text(item, "found_by").unwrap_or_default()),
        dedup_key: text(item, "dedup_key"),
        event_id: text(item, "event_id").unwrap_or_default(),
        event_name: text(item, "event_name").unwrap_or_default(),
        event_time_ms: num(item, "event_time_ms").unwrap_or(0),
        source_id: text(item, "source_id").unwrap_or_default(),
        detected_ms: num(item, "detected_ms").unwrap_or(0),
        record: get_text(item, "record").unwrap_or_default(),
        rule,
    })
}

fn values(pairs: &[(&str, aws_sdk_dynamodb::types::AttributeValue)]) -> Item {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

impl DynamoState {
    /// Alerts by id, in the order of `ids` (missing ones left out).
    fn alerts_by_id(&self, ids: &[i64], op: &'static str) -> Result<Vec<StoredAlert>, StateError> {
        let found = self.get_many(ids.iter().map(|&id| keys::alert(id)).collect(), op)?;
        let mut by_id: std::collections::HashMap<i64, StoredAlert> = found
            .iter()
            .filter_map(stored_alert)
            .map(|a| (a.id, a))
            .collect();
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    fn pending_rows(&self, channel: &str, op: &'static str) -> Result<Vec<Item>, StateError> {
        self.query(
            "pending",
            Some(&keys::pending_prefix(channel)),
            false,
            None,
            op,
        )
    }

    fn require_delivery(&self, alert_id: i64, channel: &str) -> Result<Delivery, StateError> {
        self.delivery_row(alert_id, channel)?
            .ok_or_else(|| StateError::NoSuchDelivery {
                path: format!("DynamoDB state table {}", self.table).into(),
                alert_id,
                channel: channel.to_owned(),
            })
    }

    fn delivery_row(&self, alert_id: i64, channel: &str) -> Result<Option<Delivery>, StateError> {
        let item = self.get(keys::delivery(alert_id, channel), "read a delivery")?;
        Ok(item.map(|i| Delivery {
            alert_id,
            channel: channel.to_owned(),
            status: DeliveryStatus::parse(&text(&i, "status").unwrap_or_default())
                .unwrap_or(DeliveryStatus::Pending),
            attempts: u32::try_from(num(&i, "attempts").unwrap_or(0)).unwrap_or(u32::MAX),
            next_attempt_ms: num(&i, "next_attempt_ms").unwrap_or(0),
            last_error: text(&i, "last_error"),
            delivered_ms: num(&i, "delivered_ms"),
        }))
    }

    fn analysis_write(
        &mut self,
        alert_id: i64,
        analysis: &str,
        now_ms: i64,
        last_known: Option<(&str, &LastKnownRow)>,
    ) -> Result<(), StateError> {
        let op = "record an analysis";
        let t = self.table.clone();
        let build = |e: BuildError| self.build_error(op, &e);
        let Some(alert) = self.get(keys::alert(alert_id), op)? else {
            return Err(StateError::Dynamo {
                table: t,
                op,
                detail: format!("there is no alert {alert_id}"),
            });
        };
        let mut item = keys::analysis(alert_id);
        item.insert("analyzed_ms".into(), n(now_ms));
        put_text(&mut item, "analysis", analysis).map_err(|detail| StateError::Dynamo {
            table: t.clone(),
            op,
            detail,
        })?;
        let mut actions = vec![put(&t, item, None, None).map_err(build)?];
        let event_time = num(&alert, "event_time_ms").unwrap_or(0);
        actions.push(delete(&t, keys::unanalysed(event_time, alert_id)).map_err(build)?);
        if let Some((role, row)) = last_known {
            actions.push(put(&t, last_known_item(role, row, op, &t)?, None, None).map_err(build)?);
        }
        self.write(op, actions)
    }
}

fn last_known_item(
    role: &str,
    row: &LastKnownRow,
    op: &'static str,
    table: &str,
) -> Result<Item, StateError> {
    let mut item = keys::last_known(role);
    item.insert("as_of_ms".into(), n(row.as_of_ms));
    if let Some(f) = &row.from_event {
        item.insert("from_event".into(), s(f));
    }
    if let Some(i) = &row.incomplete {
        item.insert("incomplete".into(), s(i));
    }
    put_text(&mut item, "snapshot", &row.snapshot).map_err(|detail| StateError::Dynamo {
        table: table.to_owned(),
        op,
        detail,
    })?;
    Ok(item)
}

impl Backend for DynamoState {
    fn location(&self) -> String {
        format!("DynamoDB state table {}", self.table)
    }

    fn cursor(&self, source_id: &str) -> Result<Option<i64>, StateError> {
        Ok(self
            .get(keys::cursor(source_id), "read a cursor")?
            .and_then(|i| num(&i, "position_ms")))
    }

    fn cursors(&self) -> Result<Vec<Cursor>, StateError> {
        let items = self.query("cursor", None, false, None, "read the cursors")?;
        Ok(items
            .iter()
            .filter_map(|i| {
                Some(Cursor {
                    source_id: text(i, "sk")?,
                    position_ms: num(i, "position_ms")?,
                    updated_ms: num(i, "updated_ms").unwrap_or(0),
                })
            })
            .collect())
    }

    fn seen_ids(&self, source_id: &str, event_ids: &[&str]) -> Result<HashSet<String>, StateError> {
        Ok(self
            .seen_expiry(source_id, event_ids)?
            .into_keys()
            .collect())
    }

    fn commit_poll(&mut self, c: &PollCommit<'_>) -> Result<Committed, StateError> {
        self.commit_poll_dynamo(c)
    }

    fn record_notice(
        &mut self,
        alert: &NewAlert<'_>,
        channels: &[&str],
        now_ms: i64,
    ) -> Result<Option<StoredAlert>, StateError> {
        self.record_notice_dynamo(alert, channels, now_ms)
    }

    fn last_sweep_ms(&self, source_id: &str) -> Result<Option<i64>, StateError> {
        Ok(self
            .get(keys::sweep(source_id), "read the last sweep")?
            .and_then(|i| num(&i, "last_ms")))
    }

    fn record_sweep(&mut self, source_id: &str, at_ms: i64) -> Result<(), StateError> {
        let mut item = keys::sweep(source_id);
        item.insert("last_ms".into(), n(at_ms));
        let a = put(&self.table, item, None, None)
            .map_err(|e| self.build_error("record a sweep", &e))?;
        self.write("record a sweep", vec![a])
    }

    fn gaps(&self, source_id: Option<&str>) -> Result<Vec<Gap>, StateError> {
        let prefix = source_id.map(|s| format!("{s}{}", keys::SEP));
        let items = self.query("gap", prefix.as_deref(), false, None, "read the gaps")?;
        let mut gaps: Vec<Gap> = items
            .iter()
            .filter_map(|i| {
                Some(Gap {
                    source_id: text(i, "source_id")?,
                    from_ms: num(i, "from_ms")?,
                    to_ms: num(i, "to_ms")?,
                    detected_ms: num(i, "detected_ms").unwrap_or(0),
                    reason: text(i, "reason").unwrap_or_default(),
                })
            })
            .collect();
        gaps.sort_by(|a, b| {
            (&a.source_id, a.from_ms, a.to_ms).cmp(&(&b.source_id, b.from_ms, b.to_ms))
        });
        Ok(gaps)
    }

    fn stats(&self) -> Result<StateStats, StateError> {
        let op = "count items";
        let cursors = self.cursors()?;
        let mut seen = 0;
        for c in &cursors {
            seen += self.count(&keys::seen_pk(&c.source_id), op)?;
        }
        Ok(StateStats {
            cursors: cursors.len() as u64,
            seen,
            alerts: self.count("alert", op)?,
            undelivered: self.count("pending", op)?,
            failed: self.count("failed", op)?,
            gaps: self.count("gap", op)?,
        })
    }

    fn undelivered_alerts(
        &self,
        channel: &str,
        limit: usize,
    ) -> Result<Vec<StoredAlert>, StateError> {
        let op = "read undelivered alerts";
        let rows = self.query(
            "pending",
            Some(&keys::pending_prefix(channel)),
            false,
            Some(limit),
            op,
        )?;
        let ids: Vec<i64> = rows.iter().filter_map(|r| num(r, "alert_id")).collect();
        self.alerts_by_id(&ids, op)
    }

    fn due_alerts(
        &self,
        channel: &str,
        now_ms: i64,
        analysis_wait_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredAlert>, StateError> {
        let op = "read due alerts";
        let rows = self.pending_rows(channel, op)?;
        let mut candidates: Vec<(i64, i64, Item)> = rows
            .into_iter()
            .filter(|r| num(r, "next_attempt_ms").is_some_and(|t| t <= now_ms))
            .filter(|r| {
                // Not claimed by another replica, or its claim ran out.
                text(r, "claim_owner").is_none_or(|o| o == self.owner)
                    || num(r, "claim_until").is_none_or(|u| u < now_ms)
            })
            .filter_map(|r| Some((num(&r, "next_attempt_ms")?, num(&r, "alert_id")?, r)))
            .collect();
        // The analysis wait: notices and old enough alerts at once, others once analysed.
        let waiting: Vec<i64> = candidates
            .iter()
            .filter(|(_, _, r)| {
                text(r, "origin").as_deref() != Some("notice")
                    && num(r, "detected_ms").is_none_or(|d| d > now_ms - analysis_wait_ms)
            })
            .map(|(_, id, _)| *id)
            .collect();
        let analysed: HashSet<String> = self
            .get_many(waiting.iter().map(|&id| keys::analysis(id)).collect(), op)?
            .iter()
            .filter_map(|i| text(i, "pk"))
            .collect();
        let waiting: HashSet<i64> = waiting
            .into_iter()
            .filter(|id| !analysed.contains(&text(&keys::analysis(*id), "pk").unwrap_or_default()))
            .collect();
        candidates.retain(|(_, id, _)| !waiting.contains(id));
        candidates.sort_by_key(|(t, id, _)| (*t, *id));
        // Claim each, in order, until `limit` are ours.
        let mut claimed = Vec::new();
        for (_, id, row) in candidates {
            if claimed.len() >= limit {
                break;
            }
            let client = self.client.clone();
            let table = self.table.clone();
            let key = keys::key_of(&row);
            let owner = self.owner.clone();
            let out = self.block(async move {
                client
                    .update_item()
                    .table_name(table)
                    .set_key(Some(key))
                    .update_expression("SET claim_owner = :me, claim_until = :until")
                    .condition_expression(
                        "attribute_exists(pk) AND (attribute_not_exists(claim_until) OR claim_until < :now OR claim_owner = :me)",
                    )
                    .expression_attribute_values(":me", aws_sdk_dynamodb::types::AttributeValue::S(owner))
                    .expression_attribute_values(":until", n(now_ms + CLAIM_MS))
                    .expression_attribute_values(":now", n(now_ms))
                    .send()
                    .await
            });
            match out {
                Ok(_) => claimed.push(id),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(self.sdk_error("claim an outbox row", &e)),
            }
        }
        self.alerts_by_id(&claimed, op)
    }

    fn make_due(&mut self, channel: &str, now_ms: i64) -> Result<usize, StateError> {
        let op = "make a channel's pending deliveries due";
        let rows = self.pending_rows(channel, op)?;
        for r in &rows {
            let at = num(r, "detected_ms").map_or(now_ms, |d| d.min(now_ms));
            let a = update(
                &self.table,
                keys::key_of(r),
                "SET next_attempt_ms = :t",
                Some("attribute_exists(pk)"),
                values(&[(":t", n(at))]),
            )
            .map_err(|e| self.build_error(op, &e))?;
            match self.transact_unfenced(op, vec![a]) {
                Ok(()) | Err(TxFailure::Conditions(_)) => {}
                Err(TxFailure::Error(e)) => return Err(e),
            }
        }
        Ok(rows.len())
    }

    fn next_attempt_ms(&self) -> Result<Option<i64>, StateError> {
        let rows = self.query(
            "pending",
            None,
            false,
            None,
            "read the next delivery attempt",
        )?;
        Ok(rows.iter().filter_map(|r| num(r, "next_attempt_ms")).min())
    }

    fn alert(&self, alert_id: i64) -> Result<Option<StoredAlert>, StateError> {
        Ok(self
            .get(keys::alert(alert_id), "read an alert")?
            .as_ref()
            .and_then(stored_alert))
    }

    fn delivery(&self, alert_id: i64, channel: &str) -> Result<Option<Delivery>, StateError> {
        self.delivery_row(alert_id, channel)
    }

    fn mark_delivered(
        &mut self,
        alert_id: i64,
        channel: &str,
        now_ms: i64,
    ) -> Result<(), StateError> {
        let op = "mark an alert delivered";
        let d = self.require_delivery(alert_id, channel)?;
        if d.status == DeliveryStatus::Delivered {
            return Ok(());
        }
        let t = self.table.clone();
        let build = |e: BuildError| self.build_error(op, &e);
        let actions = vec![
            update(
                &t,
                keys::delivery(alert_id, channel),
                "SET #st = :d, delivered_ms = :now ADD attempts :one",
                Some("#st <> :d"),
                values(&[(":d", s("delivered")), (":now", n(now_ms)), (":one", n(1))]),
            )
            .map_err(build)?,
            delete(&t, keys::pending(channel, alert_id)).map_err(build)?,
            delete(&t, keys::failed(channel, alert_id)).map_err(build)?,
        ];
        // Every replica delivers: outbox rows are kept by their own conditions, not the fence.
        match self.transact_unfenced(op, actions) {
            Ok(()) => Ok(()),
            // Delivered meanwhile (another replica's claim ran out and it sent it too).
            Err(TxFailure::Conditions(_)) => Ok(()),
            Err(TxFailure::Error(e)) => Err(e),
        }
    }

    fn mark_failed(
        &mut self,
        alert_id: i64,
        channel: &str,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StateError> {
        let op = "record a failed delivery";
        let d = self.require_delivery(alert_id, channel)?;
        if d.status == DeliveryStatus::Delivered {
            return Ok(());
        }
        let error = truncate_chars(error, MAX_ERROR_CHARS);
        let t = self.table.clone();
        let build = |e: BuildError| self.build_error(op, &e);
        let mut actions = Vec::new();
        match retry_at_ms {
            Some(at) => {
                actions.push(
                    update(
                        &t,
                        keys::delivery(alert_id, channel),
                        "SET #st = :p, last_error = :e, next_attempt_ms = :at ADD attempts :one",
                        Some("#st <> :d"),
                        values(&[
                            (":p", s("pending")),
                            (":d", s("delivered")),
                            (":e", s(error)),
                            (":at", n(at)),
                            (":one", n(1)),
                        ]),
                    )
                    .map_err(build)?,
                );
                let alert = self.get(keys::alert(alert_id), op)?;
                let mut p = keys::pending(channel, alert_id);
                p.insert("alert_id".into(), n(alert_id));
                p.insert("next_attempt_ms".into(), n(at));
                if let Some(a) = &alert {
                    p.insert("detected_ms".into(), n(num(a, "detected_ms").unwrap_or(at)));
                    p.insert("origin".into(), s(&text(a, "origin").unwrap_or_default()));
                }
                // The claim goes: the row is due to anyone at `at`.
                actions.push(put(&t, p, None, None).map_err(build)?);
                actions.push(delete(&t, keys::failed(channel, alert_id)).map_err(build)?);
            }
            None => {
                actions.push(
                    update(
                        &t,
                        keys::delivery(alert_id, channel),
                        "SET #st = :f, last_error = :e ADD attempts :one",
                        Some("#st <> :d"),
                        values(&[
                            (":f", s("failed")),
                            (":d", s("delivered")),
                            (":e", s(error)),
                            (":one", n(1)),
                        ]),
                    )
                    .map_err(build)?,
                );
                actions.push(delete(&t, keys::pending(channel, alert_id)).map_err(build)?);
                let mut f = keys::failed(channel, alert_id);
                f.insert("alert_id".into(), n(alert_id));
                actions.push(put(&t, f, None, None).map_err(build)?);
            }
        }
        match self.transact_unfenced(op, actions) {
            Ok(()) | Err(TxFailure::Conditions(_)) => Ok(()),
            Err(TxFailure::Error(e)) => Err(e),
        }
    }

    fn put_analysis(
        &mut self,
        alert_id: i64,
        analysis: &str,
        now_ms: i64,
    ) -> Result<(), StateError> {
        self.analysis_write(alert_id, analysis, now_ms, None)
    }

    fn put_analysis_and_last_known(
        &mut self,
        alert_id: i64,
        analysis: &str,
        now_ms: i64,
        role_name: &str,
        last_known: &LastKnownRow,
    ) -> Result<(), StateError> {
        self.analysis_write(alert_id, analysis, now_ms, Some((role_name, last_known)))
    }

    fn last_known(&self, role_name: &str) -> Result<Option<LastKnownRow>, StateError> {
        let item = self.get(keys::last_known(role_name), "read the last known state")?;
        Ok(item.map(|i| LastKnownRow {
            as_of_ms: num(&i, "as_of_ms").unwrap_or(0),
            from_event: text(&i, "from_event"),
            incomplete: text(&i, "incomplete"),
            snapshot: get_text(&i, "snapshot").unwrap_or_default(),
        }))
    }

    fn analysis(&self, alert_id: i64) -> Result<Option<String>, StateError> {
        Ok(self
            .get(keys::analysis(alert_id), "read an analysis")?
            .and_then(|i| get_text(&i, "analysis")))
    }

    fn unanalysed_alerts(&self, limit: usize) -> Result<Vec<StoredAlert>, StateError> {
        let op = "read unanalysed alerts";
        let rows = self.query("unanalysed", None, false, None, op)?;
        let mut ids = Vec::new();
        for r in &rows {
            if ids.len() >= limit {
                break;
            }
            let Some(id) = num(r, "alert_id") else {
                continue;
            };
            // Only alerts still pending on some channel, as in SQLite.
            let deliveries = self.query(&keys::delivery_pk(id), None, false, None, op)?;
            if deliveries
                .iter()
                .any(|d| text(d, "status").as_deref() == Some("pending"))
            {
                ids.push(id);
            }
        }
        self.alerts_by_id(&ids, op)
    }

    fn put_baseline(
        &mut self,
        role_name: &str,
        taken_ms: i64,
        snapshot: &str,
    ) -> Result<(), StateError> {
        let op = "record a baseline";
        let t = self.table.clone();
        let seq = self.reserve_seq()?;
        let mut item = keys::baseline(role_name, taken_ms, seq);
        item.insert("taken_ms".into(), n(taken_ms));
        put_text(&mut item, "snapshot", snapshot).map_err(|detail| StateError::Dynamo {
            table: t.clone(),
            op,
            detail,
        })?;
        let a = put(&t, item, None, None).map_err(|e| self.build_error(op, &e))?;
        self.write(op, vec![a])?;
        // The role's last known state, unless a newer change was applied to it.
        let lk = last_known_item(
            role_name,
            &LastKnownRow {
                as_of_ms: taken_ms,
                from_event: None,
                incomplete: None,
                snapshot: snapshot.to_owned(),
            },
            op,
            &t,
        )?;
        let a = put(
            &t,
            lk,
            Some("attribute_not_exists(pk) OR as_of_ms <= :t"),
            Some(values(&[(":t", n(taken_ms))])),
        )
        .map_err(|e| self.build_error(op, &e))?;
        match self.transact(op, vec![a]) {
            Ok(()) | Err(TxFailure::Conditions(_)) => {}
            Err(TxFailure::Error(e)) => return Err(e),
        }
        // Keep the newest few.
        let all = self.query(&keys::baseline_pk(role_name), None, true, None, op)?;
        let old: Vec<Item> = all.iter().skip(BASELINES_KEPT).map(keys::key_of).collect();
        self.delete_many(old, op)?;
        Ok(())
    }

    fn latest_baseline(&self, role_name: &str) -> Result<Option<(i64, String)>, StateError> {
        let items = self.query(
            &keys::baseline_pk(role_name),
            None,
            true,
            Some(1),
            "read the baseline",
        )?;
        Ok(items
            .first()
            .and_then(|i| Some((num(i, "taken_ms")?, get_text(i, "snapshot")?))))
    }

    fn hold_lease(&mut self, now_ms: i64) -> Result<Leadership, StateError> {
        DynamoState::hold_lease(self, now_ms)
    }

    fn leadership(&self, now_ms: i64) -> Leadership {
        DynamoState::leadership(self, now_ms)
    }

    fn release_lease(&mut self) -> Result<(), StateError> {
        DynamoState::release_lease(self)
    }

    fn lease_ms(&self) -> Option<i64> {
        Some(DynamoState::lease_ms(self))
    }
}

impl DynamoState {
    /// A unique number for a baseline's sort key (the alert-id counter serves).
    fn reserve_seq(&self) -> Result<i64, StateError> {
        self.reserve_ids(1)
    }
}
