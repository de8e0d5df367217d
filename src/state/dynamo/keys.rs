//! Every key of the table (`docs/dynamodb-state.md` shows the layout). Sort keys that order
//! by a number use [`ord`], a fixed-width decimal of the number shifted to be unsigned, so
//! that string order is numeric order.

use super::{s, Item};

/// `n` as 20 digits, ordered as the numbers are.
#[must_use]
pub fn ord(n: i64) -> String {
    // i64::MIN maps to 0 and i64::MAX to u64::MAX (20 digits).
    let shifted = (i128::from(n) - i128::from(i64::MIN)) as u128;
    format!("{shifted:020}")
}

/// The separator inside composite sort keys: not a character of source IDs, channel names
/// or rule names as configured.
pub const SEP: char = '\u{1f}';

fn key(pk: &str, sk: &str) -> Item {
    let mut k = Item::new();
    k.insert("pk".into(), s(pk));
    k.insert("sk".into(), s(sk));
    k
}

/// `meta` items: `schema`, `lease`, `counter`.
#[must_use]
pub fn meta(name: &str) -> Item {
    key("meta", name)
}

/// The cursor of a source.
#[must_use]
pub fn cursor(source_id: &str) -> Item {
    key("cursor", source_id)
}

/// When a source's last sweep finished.
#[must_use]
pub fn sweep(source_id: &str) -> Item {
    key("sweep", source_id)
}

/// The partition of a source's seen eventIDs.
#[must_use]
pub fn seen_pk(source_id: &str) -> String {
    format!("seen#{source_id}")
}

/// One seen eventID.
#[must_use]
pub fn seen(source_id: &str, event_id: &str) -> Item {
    key(&seen_pk(source_id), event_id)
}

/// A coverage gap.
#[must_use]
pub fn gap(source_id: &str, from_ms: i64, to_ms: i64) -> Item {
    key(
        "gap",
        &format!("{source_id}{SEP}{}{SEP}{}", ord(from_ms), ord(to_ms)),
    )
}

/// An alert (partition `alert`, ordered by id).
#[must_use]
pub fn alert(id: i64) -> Item {
    key("alert", &ord(id))
}

/// The uniqueness marker of a change (`c:`) or of a rule and eventID (`r:`).
#[must_use]
pub fn unique(marker: &str) -> Item {
    key(&format!("uniq#{marker}"), "-")
}

/// The partition of an alert's outbox rows.
#[must_use]
pub fn delivery_pk(id: i64) -> String {
    format!("delivery#{}", ord(id))
}

/// An outbox row.
#[must_use]
pub fn delivery(id: i64, channel: &str) -> Item {
    key(&delivery_pk(id), channel)
}

/// The index row of a pending outbox row (partition `pending`, by channel then id).
#[must_use]
pub fn pending(channel: &str, id: i64) -> Item {
    key("pending", &format!("{channel}{SEP}{}", ord(id)))
}

/// The sort-key prefix of a channel's pending rows.
#[must_use]
pub fn pending_prefix(channel: &str) -> String {
    format!("{channel}{SEP}")
}

/// The index row of a failed (given up) outbox row.
#[must_use]
pub fn failed(channel: &str, id: i64) -> Item {
    key("failed", &format!("{channel}{SEP}{}", ord(id)))
}

/// The index row of an alert not yet analysed (by event time, then id).
#[must_use]
pub fn unanalysed(event_time_ms: i64, id: i64) -> Item {
    key(
        "unanalysed",
        &format!("{}{SEP}{}", ord(event_time_ms), ord(id)),
    )
}

/// An alert's analysis.
#[must_use]
pub fn analysis(id: i64) -> Item {
    key(&format!("analysis#{}", ord(id)), "-")
}

/// The last known state of a role.
#[must_use]
pub fn last_known(role_name: &str) -> Item {
    key("lastknown", role_name)
}

/// The partition of a role's baselines.
#[must_use]
pub fn baseline_pk(role_name: &str) -> String {
    format!("baseline#{role_name}")
}

/// A baseline (by time taken, then a unique number).
#[must_use]
pub fn baseline(role_name: &str, taken_ms: i64, seq: i64) -> Item {
    key(
        &baseline_pk(role_name),
        &format!("{}{SEP}{}", ord(taken_ms), ord(seq)),
    )
}

/// The key attributes of `item` alone.
#[must_use]
pub fn key_of(item: &Item) -> Item {
    item.iter()
        .filter(|(k, _)| k.as_str() == "pk" || k.as_str() == "sk")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ord_orders_as_numbers() {
        let values = [i64::MIN, -5, -1, 0, 1, 9, 10, 1_700_000_000_000, i64::MAX];
        let keys: Vec<String> = values.iter().map(|&v| ord(v)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert!(keys.iter().all(|k| k.len() == 20));
    }
}
