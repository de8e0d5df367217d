//! Building the pipeline from a configuration — the engine from the rules, the shared AWS
//! configuration, one source per `[[source]]` reading what the rules need — in one place for
//! the daemon (`run`, `once`) and `check`.

use aws_config::SdkConfig;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::client::identity::SharedIdentityCache;

use crate::aws::assume::{AssumedRole, NoCredentials};
use crate::config::{AccountConfig, Config, SourceConfig, SourceKind};
use crate::engine::Engine;
use crate::source::{Clients, Source};

/// What the stages are built from.
pub struct Pipeline {
    pub engine: Engine,
    /// rolewatch's own AWS configuration; with `[[account]]`s, its identity cache also holds
    /// every account's credentials (each under its provider's own partition).
    pub sdk: SdkConfig,
    /// Each configured source with its client, in configuration order.
    pub sources: Vec<(SourceConfig, Source)>,
    /// Whether every rule pins `$.eventName` (CloudTrail then looks up only those names).
    pub pinned_names: bool,
    /// Each `[[account]]` with the credentials that reach it: its assumed role's, cached and
    /// refreshed before they expire, or `None` for the account rolewatch runs in (its own);
    /// empty without `[[account]]`. Requests into an account go through the clients every
    /// account shares, carrying these credentials.
    pub accounts: Vec<(AccountConfig, Option<SharedCredentialsProvider>)>,
}

/// Assumed-role credentials are refreshed at most this long before they expire, and at least
/// half of it: the SDK's lazy identity cache adds a random 0 to 50 % of the buffer to the
/// expiry it keeps, so that hundreds of accounts do not all call STS at once (2.5 to 5
/// minutes before expiry, measured through the clock seam in
/// `tests/it/organization.rs`). The SDK reads the time from rolewatch's
/// [`crate::time::Clock`] ([`crate::aws::ClockTime`]).
pub const CREDENTIALS_REFRESH_BEFORE: std::time::Duration = std::time::Duration::from_secs(300);

/// The credentials that reach `account`: `None` for the account rolewatch runs in (its own),
/// else `sts:AssumeRole` into the account's role (with its ExternalId and session name)
/// through `sts`. Nothing is called here: the role is assumed on the first request, so an
/// account whose role cannot be assumed fails its own sources only.
#[must_use]
pub fn account_credentials(
    sts: &aws_sdk_sts::Client,
    account: &AccountConfig,
) -> Option<SharedCredentialsProvider> {
    let role = account.role_arn.as_ref()?;
    let external_id = match account
        .external_id
        .as_ref()
        .map(crate::config::ExternalId::resolve)
    {
        Some(Err(why)) => {
            tracing::error!(
                account = %account.id,
                "Cannot read the ExternalId for account {}: {why}; its sources will fail",
                account.id
            );
            return Some(SharedCredentialsProvider::new(NoCredentials(format!(
                "no credentials for account {}: its ExternalId cannot be read ({why})",
                account.id
            ))));
        }
        Some(Ok(v)) => Some(v),
        None => None,
    };
    Some(SharedCredentialsProvider::new(AssumedRole::new(
        sts.clone(),
        role.clone(),
        account.session_name.clone(),
        external_id,
    )))
}

/// `base` reaching `account` as a configuration of its own: its credentials
/// ([`account_credentials`]) with an identity cache of their own. For one-off callers (tests,
/// commands that make a few calls); the daemon shares its clients instead.
#[must_use]
pub fn account_sdk(base: &SdkConfig, account: &AccountConfig) -> SdkConfig {
    match account_credentials(&aws_sdk_sts::Client::new(base), account) {
        None => base.clone(),
        Some(c) => base
            .to_builder()
            .identity_cache(
                aws_config::identity::IdentityCache::lazy()
                    .buffer_time(CREDENTIALS_REFRESH_BEFORE)
                    .build(),
            )
            .credentials_provider(c)
            .build(),
    }
}

/// For a command that reaches its accounts once (`baseline`, `doctor`), as the daemon does:
/// `base` with an identity cache for every account's credentials, and each account's
/// credentials ([`account_credentials`], assumed through one STS client), in order.
#[must_use]
pub fn reach_accounts<'a>(
    base: &SdkConfig,
    accounts: impl IntoIterator<Item = &'a AccountConfig>,
) -> (SdkConfig, Vec<Option<SharedCredentialsProvider>>) {
    let shared = shared_sdk(base, &AccountSdks::default());
    let sts = aws_sdk_sts::Client::new(&shared);
    let credentials = accounts
        .into_iter()
        .map(|a| account_credentials(&sts, a))
        .collect();
    (shared, credentials)
}

/// `base` with the identity cache of `kept`, which holds rolewatch's own credentials and
/// every account's: the configuration of the clients every account's requests go through.
#[must_use]
pub fn shared_sdk(base: &SdkConfig, kept: &AccountSdks) -> SdkConfig {
    base.to_builder().identity_cache(kept.cache.clone()).build()
}

/// The accounts' credentials, kept from one daemon to the next in one process so that an
/// account's role is not assumed again when the organization's accounts change: the identity
/// cache that holds them, and each account's provider by account id (an entry is used only
/// while its [`AccountConfig`] is the same).
pub struct AccountSdks {
    cache: SharedIdentityCache,
    by_id: std::sync::Mutex<
        std::collections::HashMap<String, (AccountConfig, Option<SharedCredentialsProvider>)>,
    >,
}

/// Accounts whose credentials the one identity cache holds at most. The SDK's default is 64
/// (it expects "5-10 credential providers"); beyond it the cache evicts an arbitrary entry per
/// new one, and with a thousand accounts every request assumed its role again (moto's STS
/// at 100 % of a core in `bench/accounts.py`). Each entry is one account's credentials.
pub const MAX_CACHED_ACCOUNTS: usize = 100_000;

impl Default for AccountSdks {
    fn default() -> AccountSdks {
        AccountSdks {
            cache: aws_config::identity::IdentityCache::lazy()
                .buffer_time(CREDENTIALS_REFRESH_BEFORE)
                .max_partitions(MAX_CACHED_ACCOUNTS)
                .build(),
            by_id: std::sync::Mutex::default(),
        }
    }
}

/// Builds the engine, the AWS configuration (the first source's region) and the sources.
///
/// # Errors
///
/// When the AWS configuration cannot be loaded.
pub async fn pipeline(cfg: &Config) -> anyhow::Result<Pipeline> {
    pipeline_reusing(cfg, None, None).await
}

/// [`pipeline`], with the accounts' configurations taken from (and left in) `reuse`, and
/// the SDK's time read from `clock` (credential refresh included; `None`: the system's).
///
/// # Errors
///
/// When the AWS configuration cannot be loaded.
pub async fn pipeline_reusing(
    cfg: &Config,
    reuse: Option<&AccountSdks>,
    clock: Option<std::sync::Arc<dyn crate::time::Clock>>,
) -> anyhow::Result<Pipeline> {
    let engine = Engine::new(cfg.rules.clone());
    let names = engine
        .lookup_event_names()
        .map(|s| s.into_iter().collect::<Vec<_>>());
    let patterns: Vec<String> = engine
        .rules()
        .iter()
        .map(|r| r.pattern.as_str().to_owned())
        .collect();
    let region = cfg
        .sources
        .first()
        .map_or(crate::config::defaults::REGION, |s| s.region.as_str());
    let mut sdk = crate::aws::load(region).await?;
    if let Some(clock) = clock {
        sdk = crate::aws::with_clock(&sdk, clock);
    }
    let fresh;
    let kept = match reuse {
        Some(r) => r,
        None => {
            fresh = AccountSdks::default();
            &fresh
        }
    };
    let mut accounts = Vec::with_capacity(cfg.accounts.len());
    if !cfg.accounts.is_empty() {
        // One identity cache for rolewatch's own credentials and every account's.
        sdk = shared_sdk(&sdk, kept);
        let sts = aws_sdk_sts::Client::new(&sdk);
        let mut map = kept
            .by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for a in &cfg.accounts {
            let creds = match map.get(&a.id).filter(|(was, _)| was == a) {
                Some((_, c)) => c.clone(),
                None => account_credentials(&sts, a),
            };
            accounts.push((a.clone(), creds));
        }
        map.clear();
        map.extend(
            accounts
                .iter()
                .map(|(a, c)| (a.id.clone(), (a.clone(), c.clone()))),
        );
    }
    let by_id: std::collections::HashMap<&str, &Option<SharedCredentialsProvider>> =
        accounts.iter().map(|(a, c)| (a.id.as_str(), c)).collect();
    let creds_of = |sc: &SourceConfig| {
        sc.account
            .as_deref()
            .and_then(|id| by_id.get(id))
            .and_then(|c| (*c).clone())
    };
    let mut clients = Clients::new(&sdk);
    let mut warned = std::collections::HashSet::new();
    let sources = cfg
        .sources
        .iter()
        .map(|sc| {
            // One warning per configured source, not one per account.
            let base = sc.id.split('@').next().unwrap_or(&sc.id).to_owned();
            if warned.insert(base) {
                warn_about_region(sc, names.is_some());
            }
            (
                sc.clone(),
                Source::new(
                    sc,
                    &mut clients,
                    creds_of(sc),
                    names.clone(),
                    patterns.clone(),
                ),
            )
        })
        .collect();
    Ok(Pipeline {
        pinned_names: names.is_some(),
        engine,
        sdk,
        sources,
        accounts,
    })
}

/// Warns when IAM events are watched from a region other than us-east-1 (IAM is global; its
/// events are recorded in us-east-1 only).
pub fn warn_about_region(sc: &SourceConfig, pinned_names: bool) {
    if sc.kind == SourceKind::CloudTrail && sc.region != "us-east-1" {
        tracing::warn!(
            source = %sc.id,
            region = %sc.region,
            pinned_names,
            "IAM events are recorded in us-east-1 only: a CloudTrail source in another region will not see changes to an IAM role"
        );
    }
}
