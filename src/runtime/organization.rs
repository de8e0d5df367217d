//! `[organization]` discovery: the accounts of the organization, from
//! `organizations:ListAccounts` (every page), filtered by account id and OU, as
//! [`AccountConfig`]s — the account rolewatch runs in (its `sts:GetCallerIdentity`) with
//! rolewatch's own credentials, every other one through the member role.
//!
//! The OU filters walk down from each OU named in `include_ous` / `exclude_ous`:
//! `ListAccountsForParent` and `ListOrganizationalUnitsForParent` for the OU and each OU
//! nested in it. That costs two calls (plus pages) per OU in those subtrees, however many
//! accounts there are, where the other way (ListParents per account, up to the root) costs
//! one call per account and level; without OU filters no walk is made at all.
//!
//! [`refresh`] compares two discoveries: which accounts are new, which are gone (closed,
//! suspended, moved out of the included OUs, or removed from the organization).

use std::collections::{BTreeMap, HashSet};

use anyhow::Context;
use aws_config::SdkConfig;

use crate::config::{AccountConfig, Config, OrganizationConfig};

/// One discovery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    /// The ACTIVE accounts the filters let in, in ListAccounts order.
    pub accounts: Vec<AccountConfig>,
    /// Accounts the filters let in that are not ACTIVE: id → their state
    /// (`SUSPENDED`, `PENDING_CLOSURE`, …).
    pub inactive: BTreeMap<String, String>,
    /// The account rolewatch's own credentials belong to.
    pub own: String,
    /// API calls made (ListAccounts pages, the OU walk, GetCallerIdentity).
    pub calls: u64,
}

/// Why an account watched before is no longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub id: String,
    pub name: Option<String>,
    /// `SUSPENDED`, `PENDING_CLOSURE`, … or "not in the organization (or the filters) any more".
    pub why: String,
}

/// Lists the organization's accounts and applies `org`'s filters.
///
/// # Errors
///
/// ListAccounts (or the OU walk, or GetCallerIdentity) fails: not the management account or
/// a delegated administrator, no permission, or Organizations cannot be reached.
pub async fn discover(org: &OrganizationConfig, sdk: &SdkConfig) -> anyhow::Result<Discovered> {
    let who =
        {
            let client = aws_sdk_sts::Client::new(sdk);
            client.get_caller_identity().send().await.map_err(|e| {
                anyhow::anyhow!("sts:GetCallerIdentity: {}", crate::aws::error_text(&e))
            })?
        };
    let mut calls = 1;
    let client = aws_sdk_organizations::Client::new(sdk);
    let own = who
        .account()
        .context("sts:GetCallerIdentity gave no account")?
        .to_owned();

    let mut listed = Vec::new();
    let mut pages = client
        .list_accounts()
        .max_results(20)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        calls += 1;
        let page = page.map_err(|e| {
            anyhow::anyhow!("organizations:ListAccounts: {}", crate::aws::error_text(&e))
        })?;
        listed.extend(page.accounts().iter().cloned());
    }

    let include_ous = match &org.include_ous {
        Some(ous) => Some(accounts_under(&client, ous, &mut calls).await?),
        None => None,
    };
    let exclude_ous = if org.exclude_ous.is_empty() {
        HashSet::new()
    } else {
        accounts_under(&client, &org.exclude_ous, &mut calls).await?
    };

    let mut out = Discovered {
        own: own.clone(),
        ..Discovered::default()
    };
    for a in listed {
        let Some(id) = a.id() else { continue };
        let wanted = org
            .include_accounts
            .as_ref()
            .is_none_or(|l| l.iter().any(|x| x == id))
            && !org.exclude_accounts.iter().any(|x| x == id)
            && include_ous.as_ref().is_none_or(|s| s.contains(id))
            && !exclude_ous.contains(id);
        if !wanted {
            continue;
        }
        let state = a
            .state()
            .map(|s| s.as_str().to_owned())
            .or_else(|| a.status().map(|s| s.as_str().to_owned()))
            .unwrap_or_else(|| "ACTIVE".to_owned());
        if state != "ACTIVE" {
            out.inactive.insert(id.to_owned(), state);
            continue;
        }
        let partition = a
            .arn()
            .and_then(|arn| arn.split(':').nth(1))
            .filter(|p| !p.is_empty())
            .unwrap_or("aws");
        let member = id != own;
        out.accounts.push(AccountConfig {
            id: id.to_owned(),
            name: a.name().map(str::to_owned).filter(|n| !n.is_empty()),
            role_arn: member.then(|| format!("arn:{partition}:iam::{id}:role/{}", org.role_name)),
            external_id: if member {
                org.external_id.clone()
            } else {
                None
            },
            session_name: org.session_name.clone(),
        });
    }
    out.calls = calls;
    Ok(out)
}

/// Every account in the OUs `roots` and the OUs nested in them.
async fn accounts_under(
    client: &aws_sdk_organizations::Client,
    roots: &[String],
    calls: &mut u64,
) -> anyhow::Result<HashSet<String>> {
    let mut out = HashSet::new();
    let mut todo: Vec<String> = roots.to_vec();
    let mut visited = HashSet::new();
    while let Some(ou) = todo.pop() {
        if !visited.insert(ou.clone()) {
            continue;
        }
        let mut pages = client
            .list_accounts_for_parent()
            .parent_id(&ou)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            *calls += 1;
            let page = page.map_err(|e| {
                anyhow::anyhow!(
                    "organizations:ListAccountsForParent {ou}: {}",
                    crate::aws::error_text(&e)
                )
            })?;
            out.extend(
                page.accounts()
                    .iter()
                    .filter_map(|a| a.id().map(str::to_owned)),
            );
        }
        let mut pages = client
            .list_organizational_units_for_parent()
            .parent_id(&ou)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            *calls += 1;
            let page = page.map_err(|e| {
                anyhow::anyhow!(
                    "organizations:ListOrganizationalUnitsForParent {ou}: {}",
                    crate::aws::error_text(&e)
                )
            })?;
            todo.extend(
                page.organizational_units()
                    .iter()
                    .filter_map(|u| u.id().map(str::to_owned)),
            );
        }
    }
    Ok(out)
}

/// What changed from `before` to `after`: the accounts watched before and not now, each with
/// why. (The new ones are simply in `after.accounts`.)
#[must_use]
pub fn dropped(before: &Discovered, after: &Discovered) -> Vec<Dropped> {
    let now: HashSet<&str> = after.accounts.iter().map(|a| a.id.as_str()).collect();
    before
        .accounts
        .iter()
        .filter(|a| !now.contains(a.id.as_str()))
        .map(|a| Dropped {
            id: a.id.clone(),
            name: a.name.clone(),
            why: after.inactive.get(&a.id).map_or_else(
                || "no longer in the organization, or no longer let in by the [organization] filters".to_owned(),
                |state| format!("its state is {state}"),
            ),
        })
        .collect()
}

/// The ids of `d`'s accounts, sorted: two discoveries with the same ids watch the same.
#[must_use]
pub fn ids(d: &Discovered) -> Vec<String> {
    let mut v: Vec<String> = d.accounts.iter().map(|a| a.id.clone()).collect();
    v.sort();
    v
}

/// Discovers the organization's accounts once and logs what was found.
///
/// # Errors
///
/// As [`discover`].
pub async fn discover_logged(
    org: &OrganizationConfig,
    sdk: &SdkConfig,
) -> anyhow::Result<Discovered> {
    let d = discover(org, sdk).await?;
    if d.accounts.is_empty() {
        tracing::warn!(
            event = "organization_empty",
            "No ACTIVE account of the organization is let in by the [organization] filters: only the account of rolewatch's own credentials is read, as without [organization]"
        );
    }
    tracing::info!(
        event = "organization_listed",
        accounts = d.accounts.len(),
        inactive = d.inactive.len(),
        own_account = %d.own,
        calls = d.calls,
        "Organization: {} active account(s) watched{}",
        d.accounts.len(),
        if d.inactive.is_empty() {
            String::new()
        } else {
            format!(
                ", not watched: {}",
                d.inactive
                    .iter()
                    .map(|(id, s)| format!("{id} ({s})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    Ok(d)
}

/// The AWS configuration discovery uses: rolewatch's own, in the first source's region.
async fn base_sdk(cfg: &Config) -> anyhow::Result<SdkConfig> {
    let region = cfg
        .sources
        .first()
        .map_or(crate::config::defaults::REGION, |s| s.region.as_str());
    crate::aws::load(region).await
}

/// `cfg` with its `[organization]`'s accounts as they are now (unchanged without one).
///
/// # Errors
///
/// The organization's accounts cannot be listed.
pub async fn resolve(cfg: &Config) -> anyhow::Result<Config> {
    Ok(resolve_found(cfg).await?.0)
}

/// [`resolve`], and the discovery it made (`None` without `[organization]`).
///
/// # Errors
///
/// The organization's accounts cannot be listed.
pub async fn resolve_found(cfg: &Config) -> anyhow::Result<(Config, Option<Discovered>)> {
    let Some(org) = &cfg.organization else {
        return Ok((cfg.clone(), None));
    };
    let sdk = base_sdk(cfg).await?;
    let d = discover_logged(org, &sdk)
        .await
        .context("cannot list the organization's accounts ([organization])")?;
    Ok((cfg.with_accounts(d.accounts.clone()), Some(d)))
}

/// `rolewatch run`: the daemon, on `cfg`'s accounts; with `[organization]`, the accounts
/// are listed again every `refresh_minutes`, and when they change the daemon is drained and
/// started again on the new accounts, in the same process (its state and the credentials of
/// the accounts that stay are kept; each source's cursor is in the state, so nothing is
/// read twice or missed). The accounts no longer watched are reported with a notice. A
/// listing that fails keeps the accounts as they were and is logged, and reported "cannot
/// see" once per run of failures.
///
/// # Errors
///
/// The first listing fails, or a daemon cannot start.
pub async fn run(
    cfg: &Config,
    clock: std::sync::Arc<dyn crate::time::Clock>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use crate::runtime::daemon::{Daemon, Reuse};
    use std::sync::Arc;

    let Some(org) = cfg.organization.clone() else {
        let daemon = Arc::new(Daemon::start(cfg, clock).await?);
        return daemon.run(shutdown).await;
    };
    let sdk = base_sdk(cfg).await?;
    let mut found = discover_logged(&org, &sdk)
        .await
        .context("cannot list the organization's accounts ([organization])")?;
    let sdks: Arc<crate::runtime::build::AccountSdks> = Arc::default();
    let mut state = None;
    let mut to_report: Vec<Dropped> = Vec::new();
    loop {
        // The first daemon of this process also reports what earlier runs watched.
        let first = state.is_none();
        let effective = cfg.with_accounts(found.accounts.clone());
        let daemon = Arc::new(
            Daemon::start_with(
                &effective,
                clock.clone(),
                Reuse {
                    state: state.take(),
                    accounts: Some(sdks.clone()),
                },
            )
            .await?,
        );
        daemon.accounts_dropped(&std::mem::take(&mut to_report));
        // And, at the start, those dropped while no rolewatch ran (the same drop is one
        // notice).
        if first {
            daemon.report_unwatched(&found.inactive);
        }
        let this_round = shutdown.child_token();
        let refresher = {
            let (org, sdk, daemon, stop) =
                (org.clone(), sdk.clone(), daemon.clone(), this_round.clone());
            let before = found.clone();
            let clock = clock.clone();
            tokio::spawn(async move {
                let mut failing_since: Option<i64> = None;
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(org.refresh) => {}
                        () = stop.cancelled() => return None,
                    }
                    match discover(&org, &sdk).await {
                        Ok(after) if ids(&after) != ids(&before) => {
                            let gone = dropped(&before, &after);
                            let new: Vec<&str> = {
                                let had: HashSet<&str> =
                                    before.accounts.iter().map(|a| a.id.as_str()).collect();
                                after
                                    .accounts
                                    .iter()
                                    .map(|a| a.id.as_str())
                                    .filter(|id| !had.contains(id))
                                    .collect()
                            };
                            tracing::info!(
                                event = "organization_changed",
                                new = ?new,
                                dropped = ?gone.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
                                calls = after.calls,
                                "The organization's accounts changed: restarting the watch on {} account(s)",
                                after.accounts.len()
                            );
                            stop.cancel();
                            return Some((after, gone));
                        }
                        Ok(after) => {
                            tracing::debug!(
                                calls = after.calls,
                                "The organization's accounts are unchanged"
                            );
                            failing_since = None;
                        }
                        Err(e) => {
                            let now = clock.now_ms();
                            let since = *failing_since.get_or_insert(now);
                            tracing::error!(
                                event = "organization_list_failed",
                                error = %format!("{e:#}"),
                                "Cannot list the organization's accounts; the accounts found before stay watched"
                            );
                            if since == now {
                                daemon.notice(&crate::notify::synthetic::source_blind(
                                    "organization (ListAccounts)",
                                    since,
                                    &format!("{e:#}; new accounts are not picked up, the accounts found before stay watched"),
                                    1,
                                    now,
                                ));
                            }
                        }
                    }
                }
            })
        };
        daemon.clone().run(this_round.clone()).await?;
        this_round.cancel();
        let changed = refresher.await.ok().flatten();
        state = Some(daemon.store());
        drop(daemon);
        match changed {
            Some((after, gone)) if !shutdown.is_cancelled() => {
                found = after;
                to_report = gone;
            }
            _ => return Ok(()),
        }
    }
}
