//! The fenced lease: one item (`meta`/`lease`: `owner`, `expires_ms`, `fence`) that names the
//! replica allowed to poll. The leader renews it every third of a lease; a follower takes it
//! over — with the next fence number, by a conditional update on the fence it saw — once it
//! has seen the item unchanged for a whole lease by its own clock (so a clock that is off by
//! some seconds shifts nothing: only differences of one replica's own readings count), or at
//! once when the leader released it on shutdown. While a replica leads, each of its writes
//! carries a check of its fence ([`super::DynamoState::transact`]): after a takeover, a
//! paused or partitioned old leader's next write is refused and it steps down.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{keys, n, n_u, num, s, text, DynamoState, Item};
use crate::state::StateError;

/// What this replica may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    /// The only rolewatch of its state (SQLite): it always polls.
    Sole,
    /// Holds the lease with this fence number: it polls and sweeps.
    Leader {
        /// The fence number its writes carry.
        fence: u64,
    },
    /// Another replica leads: this one consumes queues and delivers, but does not poll.
    Follower,
}

impl Leadership {
    /// Whether this replica polls and sweeps.
    #[must_use]
    pub fn polls(self) -> bool {
        !matches!(self, Self::Follower)
    }

    /// `sole`, `leader` or `follower`, for `/readyz` and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sole => "sole",
            Self::Leader { .. } => "leader",
            Self::Follower => "follower",
        }
    }
}

/// This replica's view of the lease.
#[derive(Debug)]
pub(super) struct LeaseState {
    lease_ms: i64,
    /// `Some((fence, renewed_ms))` while leading.
    held: Option<(u64, i64)>,
    /// The lease item as last seen by a follower — (fence, owner, expires) — and when it was
    /// first seen so.
    observed: Option<((u64, String, i64), i64)>,
}

impl LeaseState {
    pub(super) fn new(lease_ms: i64) -> Self {
        LeaseState {
            lease_ms,
            held: None,
            observed: None,
        }
    }

    /// The fence this replica's writes carry: `Some` while it leads.
    pub(super) fn fence(&self) -> Option<u64> {
        self.held.map(|(f, _)| f)
    }

    /// A write carrying `fence` was refused: another replica holds the lease.
    pub(super) fn lost(&mut self, fence: u64) {
        if self.fence() == Some(fence) {
            self.held = None;
            self.observed = None;
        }
    }

    /// Leader only while the last renewal is less than a lease old.
    pub(super) fn leadership(&self, now_ms: i64) -> Leadership {
        match self.held {
            Some((fence, renewed)) if now_ms - renewed < self.lease_ms => {
                Leadership::Leader { fence }
            }
            _ => Leadership::Follower,
        }
    }

    pub(super) fn lease_ms(&self) -> i64 {
        self.lease_ms
    }
}

impl DynamoState {
    /// Takes, keeps or renews the lease at `now_ms` (call every third of a lease).
    ///
    /// # Errors
    ///
    /// A failed request. A leader that cannot renew for a whole lease becomes a follower
    /// (and says so) even while the requests fail.
    pub fn hold_lease(&mut self, now_ms: i64) -> Result<Leadership, StateError> {
        let lease_ms = self.lease.lease_ms();
        if let Some((fence, renewed)) = self.lease.held {
            match self.renew(fence, now_ms) {
                Ok(true) => {
                    self.lease.held = Some((fence, now_ms));
                    return Ok(Leadership::Leader { fence });
                }
                Ok(false) => {
                    self.lease.lost(fence);
                    tracing::error!(
                        event = "lease_lost",
                        table = %self.table,
                        fence,
                        "The lease was taken over by another replica: this replica steps down and no longer polls"
                    );
                    return Ok(Leadership::Follower);
                }
                Err(e) => {
                    if now_ms - renewed >= lease_ms {
                        self.lease.held = None;
                        tracing::error!(
                            event = "lease_lost",
                            table = %self.table,
                            fence,
                            error = %e,
                            "Could not renew the lease for a whole lease period: this replica steps down and no longer polls"
                        );
                    }
                    return Err(e);
                }
            }
        }
        let item = self.get(keys::meta("lease"), "read the lease")?;
        let Some(item) = item else {
            return self.take(None, now_ms);
        };
        let fence = u64::try_from(num(&item, "fence").unwrap_or(0)).unwrap_or(0);
        let owner = text(&item, "owner").unwrap_or_default();
        let expires = num(&item, "expires_ms").unwrap_or(0);
        let seen = (fence, owner, expires);
        let first_seen = match &self.lease.observed {
            Some((prev, since)) if *prev == seen => *since,
            _ => {
                self.lease.observed = Some((seen.clone(), now_ms));
                now_ms
            }
        };
        // Released on shutdown (expires 0), or unrenewed for a whole lease by our clock.
        if expires == 0 || now_ms - first_seen >= lease_ms {
            return self.take(Some((fence, expires)), now_ms);
        }
        Ok(Leadership::Follower)
    }

    /// The leader's renewal: true when the lease was still its own.
    fn renew(&self, fence: u64, now_ms: i64) -> Result<bool, StateError> {
        let client = self.client.clone();
        let table = self.table.clone();
        let owner = self.owner.clone();
        let expires = now_ms + self.lease.lease_ms();
        let out = self.block(async move {
            client
                .update_item()
                .table_name(table)
                .set_key(Some(keys::meta("lease")))
                .update_expression("SET expires_ms = :e")
                .condition_expression("fence = :f AND #o = :o")
                .expression_attribute_names("#o", "owner")
                .expression_attribute_values(":e", n(expires))
                .expression_attribute_values(":f", n_u(fence))
                .expression_attribute_values(":o", AttributeValue::S(owner))
                .send()
                .await
        });
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.sdk_error("renew the lease", &e)),
        }
    }

    /// Takes the lease: creates it (`seen` = None) or replaces the one seen, with the next
    /// fence number, if nobody changed it in between.
    fn take(&mut self, seen: Option<(u64, i64)>, now_ms: i64) -> Result<Leadership, StateError> {
        let fence = seen.map_or(1, |(f, _)| f + 1);
        let mut item: Item = keys::meta("lease");
        item.insert("owner".into(), s(&self.owner));
        item.insert("expires_ms".into(), n(now_ms + self.lease.lease_ms()));
        item.insert("fence".into(), n_u(fence));
        let client = self.client.clone();
        let table = self.table.clone();
        let out = self.block(async move {
            let put = client.put_item().table_name(table).set_item(Some(item));
            let put = match seen {
                None => put.condition_expression("attribute_not_exists(pk)"),
                Some((f, e)) => put
                    .condition_expression("fence = :f AND expires_ms = :e")
                    .expression_attribute_values(":f", n_u(f))
                    .expression_attribute_values(":e", n(e)),
            };
            put.send().await
        });
        match out {
            Ok(_) => {
                self.lease.held = Some((fence, now_ms));
                self.lease.observed = None;
                tracing::warn!(
                    event = "lease_taken",
                    table = %self.table,
                    fence,
                    "This replica took the lease: it polls and sweeps now"
                );
                Ok(Leadership::Leader { fence })
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                // Another replica was quicker.
                self.lease.observed = None;
                Ok(Leadership::Follower)
            }
            Err(e) => Err(self.sdk_error("take the lease", &e)),
        }
    }

    /// Gives the lease up (on shutdown), so that a follower takes over at its next check.
    ///
    /// # Errors
    ///
    /// A failed request (the lease then runs out by itself).
    pub fn release_lease(&mut self) -> Result<(), StateError> {
        let Some(fence) = self.lease.fence() else {
            return Ok(());
        };
        self.lease.held = None;
        let client = self.client.clone();
        let table = self.table.clone();
        let out = self.block(async move {
            client
                .update_item()
                .table_name(table)
                .set_key(Some(keys::meta("lease")))
                .update_expression("SET expires_ms = :zero")
                .condition_expression("fence = :f")
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":f", n_u(fence))
                .send()
                .await
        });
        match out {
            Ok(_) => {
                tracing::info!(event = "lease_released", table = %self.table, fence, "Released the lease");
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.sdk_error("release the lease", &e)),
        }
    }

    /// This replica's standing at `now_ms`, without a request.
    #[must_use]
    pub fn leadership(&self, now_ms: i64) -> Leadership {
        self.lease.leadership(now_ms)
    }

    /// The configured lease (ms).
    #[must_use]
    pub fn lease_ms(&self) -> i64 {
        self.lease.lease_ms()
    }
}
