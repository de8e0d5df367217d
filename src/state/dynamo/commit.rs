//! The poll commit on DynamoDB: seen eventIDs, alerts (each created once: its uniqueness
//! markers are written with `attribute_not_exists`), their outbox rows, gaps and the cursor.
//!
//! A commit that fits DynamoDB's limits (100 actions, 4 MB) is one `TransactWriteItems`. A
//! bigger one is several, each whole units (an alert with its markers, outbox rows and index
//! rows; a seen row; a gap), **alerts first and the cursor in the last**: a crash in between
//! leaves the cursor where it was, so the window is polled again, and the replay is
//! idempotent — alerts already recorded are found by their markers and skipped, seen rows are
//! put again, gaps too. No event is ever seen without its alert: a poll skips seen events. A
//! transaction refused because another replica recorded the same change meanwhile (an `sqs`
//! source on every replica) is re-planned from a fresh read.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};

use super::{keys, n, num, s, text, DynamoState, Item, TxFailure, MAX_TX_BYTES, MAX_TX_ITEMS};
use crate::state::{Committed, Gap, NewAlert, PollCommit, StateError, StoredAlert};

/// Records longer than this are stored deflated (`record_z`); the item limit is 400 KB.
pub(super) const COMPRESS_OVER: usize = 16 * 1024;
/// An item's largest stored text after compression.
const MAX_STORED: usize = 350 * 1024;
/// How many times a commit whose markers raced with another replica is planned again.
const RACE_RETRIES: usize = 5;
/// How often a source's expired seen rows are pruned (they are read only by exact key, so an
/// expired row left a while longer changes nothing but storage).
pub(super) const PRUNE_EVERY_MS: i64 = 10 * 60 * 1000;

/// A `Put` action.
pub(super) fn put(
    table: &str,
    item: Item,
    condition: Option<&str>,
    values: Option<Item>,
) -> Result<TransactWriteItem, BuildError> {
    Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .set_condition_expression(condition.map(str::to_owned))
        .set_expression_attribute_values(values)
        .build()
        .map(|p| TransactWriteItem::builder().put(p).build())
}

/// An `Update` action.
pub(super) fn update(
    table: &str,
    key: Item,
    expression: &str,
    condition: Option<&str>,
    values: Item,
) -> Result<TransactWriteItem, BuildError> {
    // `status` is a reserved word of DynamoDB's expressions: updates name it `#st`.
    let names = expression
        .contains("#st")
        .then(|| std::iter::once(("#st".to_owned(), "status".to_owned())).collect());
    Update::builder()
        .table_name(table)
        .set_expression_attribute_names(names)
        .set_key(Some(key))
        .update_expression(expression)
        .set_condition_expression(condition.map(str::to_owned))
        .set_expression_attribute_values((!values.is_empty()).then_some(values))
        .build()
        .map(|u| TransactWriteItem::builder().update(u).build())
}

/// A `Delete` action.
pub(super) fn delete(table: &str, key: Item) -> Result<TransactWriteItem, BuildError> {
    Delete::builder()
        .table_name(table)
        .set_key(Some(key))
        .build()
        .map(|d| TransactWriteItem::builder().delete(d).build())
}

/// A text stored as `name`, or deflated as `name_z` when long.
pub(super) fn put_text(item: &mut Item, name: &str, value: &str) -> Result<(), String> {
    if value.len() <= COMPRESS_OVER {
        item.insert(name.into(), s(value));
        return Ok(());
    }
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(value.as_bytes())
        .and_then(|()| z.finish())
        .map_err(|e| format!("cannot compress a {} byte {name}: {e}", value.len()))
        .and_then(|bytes| {
            if bytes.len() > MAX_STORED {
                Err(format!(
                    "a {} byte {name} is {} bytes compressed, more than a DynamoDB item holds",
                    value.len(),
                    bytes.len()
                ))
            } else {
                item.insert(format!("{name}_z"), AttributeValue::B(Blob::new(bytes)));
                Ok(())
            }
        })
}

/// The text stored by [`put_text`].
pub(super) fn get_text(item: &Item, name: &str) -> Option<String> {
    if let Some(t) = text(item, name) {
        return Some(t);
    }
    match item.get(&format!("{name}_z")) {
        Some(AttributeValue::B(b)) => {
            let mut out = String::new();
            let mut d = flate2::read::DeflateDecoder::new(b.as_ref());
            std::io::Read::read_to_string(&mut d, &mut out).ok()?;
            Some(out)
        }
        _ => None,
    }
}

/// The uniqueness markers of an alert: its change, and its rule with its eventID (the two
/// unique constraints of the SQLite schema).
fn markers(a: &NewAlert<'_>) -> Vec<String> {
    let mut m = vec![format!("r:{}{}{}", a.rule, keys::SEP, a.event_id)];
    if let Some(c) = a.change_key {
        m.push(format!("c:{c}"));
    }
    m
}

/// A group of actions that must commit together, with its estimated size.
struct Unit {
    actions: Vec<TransactWriteItem>,
    bytes: usize,
}

fn item_bytes(item: &Item) -> usize {
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    AttributeValue::S(t) | AttributeValue::N(t) => t.len(),
                    AttributeValue::B(b) => b.as_ref().len(),
                    _ => 8,
                }
        })
        .sum()
}

impl DynamoState {
    /// Reserves `count` alert ids (an atomic counter; ids of a failed commit are skipped).
    pub(super) fn reserve_ids(&self, count: usize) -> Result<i64, StateError> {
        let client = self.client.clone();
        let table = self.table.clone();
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let out = self
            .block(async move {
                client
                    .update_item()
                    .table_name(table)
                    .set_key(Some(keys::meta("counter")))
                    .update_expression("ADD next_id :n")
                    .expression_attribute_values(":n", n(count))
                    .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
                    .send()
                    .await
            })
            .map_err(|e| self.sdk_error("reserve alert ids", &e))?;
        let last = out
            .attributes
            .as_ref()
            .and_then(|a| num(a, "next_id"))
            .unwrap_or(count);
        Ok(last - count + 1)
    }

    /// The alerts of `alerts` not yet recorded (by their markers, and once per commit).
    fn new_alerts<'b, 'a>(
        &self,
        alerts: &'b [NewAlert<'a>],
    ) -> Result<Vec<&'b NewAlert<'a>>, StateError> {
        let wanted: Vec<String> = alerts.iter().flat_map(markers).collect();
        let mut unique: Vec<&String> = wanted.iter().collect();
        unique.sort();
        unique.dedup();
        let found = self.get_many(
            unique.iter().map(|m| keys::unique(m)).collect(),
            "read the alerts' markers",
        )?;
        let mut taken: HashSet<String> = found
            .iter()
            .filter_map(|i| text(i, "pk"))
            .filter_map(|pk| pk.strip_prefix("uniq#").map(str::to_owned))
            .collect();
        let mut out = Vec::new();
        for a in alerts {
            let m = markers(a);
            if m.iter().any(|k| taken.contains(k)) {
                continue;
            }
            taken.extend(m);
            out.push(a);
        }
        Ok(out)
    }

    /// The actions that record alert `id`: the alert, its markers, its outbox rows with their
    /// pending-index rows, and its unanalysed-index row (rule matches only).
    fn alert_unit(
        &self,
        id: i64,
        a: &NewAlert<'_>,
        all_channels: &[&str],
        now_ms: i64,
    ) -> Result<(Unit, StoredAlert), StateError> {
        let t = &self.table;
        let op = "record an alert";
        let build = |e: BuildError| self.build_error(op, &e);
        let rules: Vec<&str> = if a.rules.is_empty() {
            vec![a.rule]
        } else {
            a.rules.clone()
        };
        let rules_json = serde_json::to_string(&rules).unwrap_or_else(|_| "[]".to_owned());
        let mut item = keys::alert(id);
        item.insert("id".into(), n(id));
        item.insert("rule".into(), s(a.rule));
        item.insert("rules".into(), s(&rules_json));
        item.insert("severity".into(), s(a.severity));
        item.insert("origin".into(), s(a.origin.as_str()));
        item.insert("found_by".into(), s(a.found_by.as_str()));
        if let Some(k) = a.change_key {
            item.insert("change_key".into(), s(k));
        }
        if let Some(k) = a.dedup_key {
            item.insert("dedup_key".into(), s(k));
        }
        item.insert("event_id".into(), s(a.event_id));
        item.insert("event_name".into(), s(a.event_name));
        item.insert("event_time_ms".into(), n(a.event_time_ms));
        item.insert("source_id".into(), s(a.source_id));
        item.insert("detected_ms".into(), n(now_ms));
        put_text(&mut item, "record", a.record).map_err(|detail| StateError::Dynamo {
            table: t.clone(),
            op,
            detail,
        })?;
        let mut bytes = item_bytes(&item);
        let mut actions =
            vec![put(t, item, Some("attribute_not_exists(pk)"), None).map_err(build)?];
        for m in markers(a) {
            let mut marker = keys::unique(&m);
            marker.insert("alert_id".into(), n(id));
            bytes += item_bytes(&marker);
            actions.push(put(t, marker, Some("attribute_not_exists(pk)"), None).map_err(build)?);
        }
        let channels: Vec<&str> = a.channels.clone().unwrap_or_else(|| all_channels.to_vec());
        let mut once = HashSet::new();
        for ch in channels.into_iter().filter(|c| once.insert(*c)) {
            let mut d = keys::delivery(id, ch);
            d.insert("status".into(), s("pending"));
            d.insert("attempts".into(), n(0));
            d.insert("next_attempt_ms".into(), n(now_ms));
            bytes += item_bytes(&d);
            actions.push(put(t, d, None, None).map_err(build)?);
            let mut p = keys::pending(ch, id);
            p.insert("alert_id".into(), n(id));
            p.insert("next_attempt_ms".into(), n(now_ms));
            p.insert("detected_ms".into(), n(now_ms));
            p.insert("origin".into(), s(a.origin.as_str()));
            bytes += item_bytes(&p);
            actions.push(put(t, p, None, None).map_err(build)?);
        }
        if a.origin == crate::state::Origin::Rule {
            let mut u = keys::unanalysed(a.event_time_ms, id);
            u.insert("alert_id".into(), n(id));
            actions.push(put(t, u, None, None).map_err(build)?);
        }
        let stored = StoredAlert {
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
        };
        Ok((Unit { actions, bytes }, stored))
    }

    /// Commits `units` in as few transactions as the limits allow, in order (the last unit
    /// last). Stops at the first failure.
    fn commit_units(&mut self, op: &'static str, units: Vec<Unit>) -> Result<(), TxFailure> {
        let room = MAX_TX_ITEMS - 1;
        let mut batch: Vec<TransactWriteItem> = Vec::new();
        let mut bytes = 0;
        for unit in units {
            if unit.actions.len() > room {
                return Err(TxFailure::Error(StateError::Dynamo {
                    table: self.table.clone(),
                    op,
                    detail: format!(
                        "one alert needs {} writes, more than a transaction holds (too many channels)",
                        unit.actions.len()
                    ),
                }));
            }
            if !batch.is_empty()
                && (batch.len() + unit.actions.len() > room || bytes + unit.bytes > MAX_TX_BYTES)
            {
                self.transact(op, std::mem::take(&mut batch))?;
                bytes = 0;
            }
            bytes += unit.bytes;
            batch.extend(unit.actions);
        }
        self.transact(op, batch)
    }

    /// [`crate::state::State::commit_poll`] on DynamoDB.
    pub(super) fn commit_poll_dynamo(
        &mut self,
        c: &PollCommit<'_>,
    ) -> Result<Committed, StateError> {
        let op = "commit a poll";
        for attempt in 0..=RACE_RETRIES {
            match self.try_commit(c) {
                Ok(mut committed) => {
                    committed.pruned = self.prune(c.source_id, c.now_ms)?;
                    return Ok(committed);
                }
                Err(TxFailure::Error(e)) => return Err(e),
                Err(TxFailure::Conditions(_)) if attempt < RACE_RETRIES => {
                    tracing::debug!(source = %c.source_id, "A poll commit raced with another replica's; planning it again");
                }
                Err(TxFailure::Conditions(_)) => break,
            }
        }
        Err(StateError::Dynamo {
            table: self.table.clone(),
            op,
            detail: format!(
                "it raced with other replicas' writes {RACE_RETRIES} times; the window is polled again"
            ),
        })
    }

    fn try_commit(&mut self, c: &PollCommit<'_>) -> Result<Committed, TxFailure> {
        let t = self.table.clone();
        let op = "commit a poll";
        let build = |e: BuildError| TxFailure::Error(self.build_error(op, &e));
        let invalid = |what: &str| {
            TxFailure::Error(StateError::Dynamo {
                table: t.clone(),
                op,
                detail: format!("{what}; nothing of the poll was recorded"),
            })
        };
        // Checked before anything is written (SQLite's constraints, as one transaction).
        if c.source_id.is_empty() {
            return Err(invalid("an empty source ID"));
        }
        if c.seen.iter().any(|e| e.event_id.is_empty()) {
            return Err(invalid("an empty eventID"));
        }
        if c.alerts
            .iter()
            .any(|a| a.event_id.is_empty() || a.rule.is_empty())
        {
            return Err(invalid("an alert with an empty eventID or rule"));
        }
        if c.channels
            .iter()
            .chain(c.alerts.iter().flat_map(|a| a.channels.iter().flatten()))
            .any(|ch| ch.is_empty())
        {
            return Err(invalid("an empty channel name"));
        }
        if c.gaps
            .iter()
            .any(|g| g.to_ms < g.from_ms || g.source_id.is_empty())
        {
            return Err(invalid("a gap that ends before it starts"));
        }

        // Seen rows: which are new (for the count), then put (a repeat keeps the later expiry).
        let ids: Vec<&str> = c.seen.iter().map(|e| e.event_id).collect();
        let known = self.seen_expiry(c.source_id, &ids)?;
        let mut seen_units = Vec::new();
        let mut seen_new = 0;
        let mut latest: HashMap<&str, (i64, i64)> = HashMap::new();
        for e in &c.seen {
            let entry = latest
                .entry(e.event_id)
                .or_insert((e.event_time_ms, e.expires_ms));
            entry.1 = entry.1.max(e.expires_ms);
        }
        for (event_id, (event_time_ms, expires_ms)) in latest {
            if event_id.is_empty() {
                return Err(TxFailure::Error(StateError::Dynamo {
                    table: t,
                    op,
                    detail: "an empty eventID".into(),
                }));
            }
            let expires_ms = match known.get(event_id) {
                None => {
                    seen_new += 1;
                    expires_ms
                }
                Some(&old) if old >= expires_ms => continue,
                Some(_) => expires_ms,
            };
            let mut item = keys::seen(c.source_id, event_id);
            item.insert("event_time_ms".into(), n(event_time_ms));
            item.insert("expires_ms".into(), n(expires_ms));
            seen_units.push(Unit {
                bytes: item_bytes(&item),
                actions: vec![put(&t, item, None, None).map_err(build)?],
            });
        }

        // Alerts not yet recorded, with ids reserved for them. They go before the seen rows:
        // a poll skips the events it has seen, so a crash between transactions must never
        // leave an event seen without its alert (the reverse is harmless: the replay finds
        // the alert by its markers).
        let mut units = Vec::new();
        let fresh = self.new_alerts(&c.alerts)?;
        let mut alerts = Vec::new();
        if !fresh.is_empty() {
            let first = self.reserve_ids(fresh.len())?;
            for (i, a) in fresh.into_iter().enumerate() {
                let id = first + i64::try_from(i).unwrap_or(0);
                let (unit, stored) = self.alert_unit(id, a, &c.channels, c.now_ms)?;
                units.push(unit);
                alerts.push(stored);
            }
        }

        units.append(&mut seen_units);

        // Gaps not yet known.
        let mut gaps: Vec<Gap> = Vec::new();
        if !c.gaps.is_empty() {
            for g in &c.gaps {
                if g.to_ms < g.from_ms || g.source_id.is_empty() {
                    return Err(TxFailure::Error(StateError::Dynamo {
                        table: t,
                        op,
                        detail: "a gap that ends before it starts".into(),
                    }));
                }
            }
            let found = self.get_many(
                c.gaps
                    .iter()
                    .map(|g| keys::gap(&g.source_id, g.from_ms, g.to_ms))
                    .collect(),
                "read the gaps",
            )?;
            let known: HashSet<String> = found.iter().filter_map(|i| text(i, "sk")).collect();
            let mut once = HashSet::new();
            for g in &c.gaps {
                let mut item = keys::gap(&g.source_id, g.from_ms, g.to_ms);
                let sk = text(&item, "sk").unwrap_or_default();
                if known.contains(&sk) || !once.insert(sk) {
                    continue;
                }
                item.insert("source_id".into(), s(&g.source_id));
                item.insert("from_ms".into(), n(g.from_ms));
                item.insert("to_ms".into(), n(g.to_ms));
                item.insert("detected_ms".into(), n(g.detected_ms));
                item.insert("reason".into(), s(&g.reason));
                units.push(Unit {
                    bytes: item_bytes(&item),
                    actions: vec![
                        put(&t, item, Some("attribute_not_exists(pk)"), None).map_err(build)?
                    ],
                });
                gaps.push(g.clone());
            }
        }

        // The cursor, last: the newer of the stored one and this, if nobody moved it since.
        let stored = self.get(keys::cursor(c.source_id), "read a cursor")?;
        let stored_ms = stored.as_ref().and_then(|i| num(i, "position_ms"));
        let cursor_ms = stored_ms.map_or(c.cursor_ms, |p| p.max(c.cursor_ms));
        let mut item = keys::cursor(c.source_id);
        item.insert("position_ms".into(), n(cursor_ms));
        item.insert("updated_ms".into(), n(c.now_ms));
        let cursor_put = match stored_ms {
            None => put(&t, item, Some("attribute_not_exists(pk)"), None),
            Some(p) => {
                let mut v = Item::new();
                v.insert(":was".into(), n(p));
                put(&t, item, Some("position_ms = :was"), Some(v))
            }
        }
        .map_err(build)?;
        units.push(Unit {
            bytes: 200,
            actions: vec![cursor_put],
        });

        self.commit_units(op, units)?;
        Ok(Committed {
            alerts,
            gaps,
            seen_new,
            pruned: 0,
            cursor_ms,
        })
    }

    /// The stored expiry of each of `event_ids` that `source_id` has seen.
    pub(super) fn seen_expiry(
        &self,
        source_id: &str,
        event_ids: &[&str],
    ) -> Result<HashMap<String, i64>, StateError> {
        let mut unique: Vec<&str> = event_ids
            .iter()
            .copied()
            .filter(|e| !e.is_empty())
            .collect();
        unique.sort_unstable();
        unique.dedup();
        let found = self.get_many(
            unique.iter().map(|e| keys::seen(source_id, e)).collect(),
            "read seen eventIDs",
        )?;
        Ok(found
            .iter()
            .filter_map(|i| Some((text(i, "sk")?, num(i, "expires_ms").unwrap_or(i64::MAX))))
            .collect())
    }

    /// Deletes the seen rows of `source_id` that expired before `now_ms`, at most every
    /// `PRUNE_EVERY_MS` per source. Returns how many.
    fn prune(&mut self, source_id: &str, now_ms: i64) -> Result<usize, StateError> {
        if let Some(&last) = self.pruned_ms.get(source_id) {
            if now_ms - last < self.prune_every_ms && now_ms >= last {
                return Ok(0);
            }
        }
        self.pruned_ms.insert(source_id.to_owned(), now_ms);
        let rows = self.query(
            &keys::seen_pk(source_id),
            None,
            false,
            None,
            "prune seen eventIDs",
        )?;
        let expired: Vec<Item> = rows
            .iter()
            .filter(|i| num(i, "expires_ms").is_some_and(|e| e < now_ms))
            .map(keys::key_of)
            .collect();
        self.delete_many(expired, "prune seen eventIDs")
    }

    /// [`crate::state::State::record_notice`] on DynamoDB.
    pub(super) fn record_notice_dynamo(
        &mut self,
        alert: &NewAlert<'_>,
        channels: &[&str],
        now_ms: i64,
    ) -> Result<Option<StoredAlert>, StateError> {
        let op = "record a notice";
        for _ in 0..=RACE_RETRIES {
            let alerts = std::slice::from_ref(alert);
            if self.new_alerts(alerts)?.is_empty() {
                return Ok(None);
            }
            let id = self.reserve_ids(1)?;
            let (unit, stored) = self.alert_unit(id, alert, channels, now_ms)?;
            match self.commit_units(op, vec![unit]) {
                Ok(()) => return Ok(Some(stored)),
                Err(TxFailure::Error(e)) => return Err(e),
                // Recorded by another replica meanwhile: the next read finds its markers.
                Err(TxFailure::Conditions(_)) => {}
            }
        }
        Err(StateError::Dynamo {
            table: self.table.clone(),
            op,
            detail: "it raced with other replicas' writes".into(),
        })
    }
}
