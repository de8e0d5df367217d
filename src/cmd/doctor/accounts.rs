//! The accounts check, one finding per `[[account]]` (and per account `[organization]` lets
//! in): whether rolewatch reaches the account — STS `GetCallerIdentity` with the account's
//! credentials, which assumes its member role and says whose credentials they are — then,
//! with those credentials, one small `LookupEvents` per CloudTrail source of the account, and
//! the vendor's role inside the account compared with the baseline the state holds for it
//! (`<role>@<account>`, as the daemon keeps it; read with the state check, once for all).
//!
//! Accounts are checked a few at a time ([`AT_ONCE`]), each bounded like every other check;
//! the findings come out in configuration order.

use tokio::time::Instant;

use aws_config::SdkConfig;
use futures_util::StreamExt;

use aws_credential_types::provider::SharedCredentialsProvider;

use super::state::StoredBaseline;
use super::{bounded, checks, elapsed_ms, role, Finding, Status, CHECK_TIMEOUT};
use crate::config::{AccountConfig, Config};

/// Accounts checked at once.
const AT_ONCE: usize = 8;

/// One finding per account of `cfg` (none without accounts); `stored`: the state's baseline
/// of the role inside each account, in order (one is taken per account).
pub(super) async fn check(
    cfg: &Config,
    sdk: Option<&SdkConfig>,
    stored: &mut impl Iterator<Item = StoredBaseline>,
    now_ms: i64,
) -> Vec<Finding> {
    if cfg.accounts.is_empty() {
        return Vec::new();
    }
    let stored: Vec<StoredBaseline> = stored.take(cfg.accounts.len()).collect();
    let Some(sdk) = sdk else {
        return cfg
            .accounts
            .iter()
            .map(|a| Finding::skipped(label(a)))
            .collect();
    };
    let (shared, credentials) = crate::runtime::build::reach_accounts(sdk, &cfg.accounts);
    futures_util::stream::iter(cfg.accounts.iter().zip(credentials).zip(stored))
        .map(|((a, credentials), stored)| one(cfg, &shared, credentials, a, stored, now_ms))
        .buffered(AT_ONCE)
        .collect()
        .await
}

/// `account 111122223333 (prod)`.
fn label(a: &AccountConfig) -> String {
    match &a.name {
        Some(n) => format!("account {} ({n})", a.id),
        None => format!("account {}", a.id),
    }
}

async fn one(
    cfg: &Config,
    shared: &SdkConfig,
    credentials: Option<SharedCredentialsProvider>,
    a: &AccountConfig,
    stored: StoredBaseline,
    now_ms: i64,
) -> Finding {
    let check = label(a);
    let how = match &a.role_arn {
        Some(role) => format!("through {role}"),
        None => "with rolewatch's own credentials".to_owned(),
    };
    let sdk = match credentials {
        None => shared.clone(),
        Some(c) => shared.to_builder().credentials_provider(c).build(),
    };
    let started = Instant::now();
    let who = bounded(
        CHECK_TIMEOUT,
        aws_sdk_sts::Client::new(&sdk).get_caller_identity().send(),
    )
    .await;
    let mut f = match who {
        Ok(Ok(w)) if w.account() == Some(a.id.as_str()) => Finding::new(
            Status::Ok,
            check,
            format!(
                "reached {how} as {}, {} ms",
                w.arn().unwrap_or("?"),
                elapsed_ms(started)
            ),
        ),
        Ok(Ok(w)) => {
            let mut f = Finding::new(
                Status::Fail,
                check,
                format!(
                    "the credentials {how} are for account {}, not {}",
                    w.account().unwrap_or("?"),
                    a.id
                ),
            );
            f.line(if a.role_arn.is_some() {
                "the role_arn names a role in another account"
            } else {
                "give this [[account]] a role_arn: rolewatch's own credentials are for another account"
            });
            return f;
        }
        Ok(Err(e)) => {
            let mut f = Finding::new(
                Status::Fail,
                check,
                format!("cannot reach it {how}: {}", crate::aws::chain_text(&e)),
            );
            if a.role_arn.is_some() {
                f.line("the member role must trust rolewatch's account and require its ExternalId (deploy/member-role-stackset.yaml)");
            }
            return f;
        }
        Err(why) => return Finding::new(Status::Fail, check, format!("STS: {why}")),
    };
    for s in cfg
        .sources
        .iter()
        .filter(|s| s.account.as_deref() == Some(a.id.as_str()))
    {
        let check = format!("source {} ({}, {})", s.id, s.kind.name(), s.region);
        merge(
            &mut f,
            checks::cloudtrail_source(check, s, &sdk, now_ms).await,
        );
    }
    merge(&mut f, role::check(cfg, Some(&sdk), stored, now_ms).await);
    f
}

/// `part`'s headline and lines under `into`, whose status it raises.
fn merge(into: &mut Finding, part: Finding) {
    into.raise(part.status);
    into.line(format!("{} {}: {}", part.status, part.check, part.detail));
    for l in part.lines {
        into.line(format!("  {l}"));
    }
}
