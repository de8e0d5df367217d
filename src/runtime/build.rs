//! Building the pipeline from a configuration — the engine from the rules, the shared AWS
//! configuration, one source per `[[source]]` reading what the rules need — in one place for
//! the daemon (`run`, `once`) and `check`.

use aws_config::SdkConfig;

use aws_credential_types::provider::{self, error::CredentialsError, ProvideCredentials};

use crate::config::{AccountConfig, Config, SourceConfig, SourceKind};
use crate::engine::Engine;
use crate::source::Source;

/// What the stages are built from.
pub struct Pipeline {
    pub engine: Engine,
    pub sdk: SdkConfig,
    /// Each configured source with its client, in configuration order.
    pub sources: Vec<(SourceConfig, Source)>,
    /// Whether every rule pins `$.eventName` (CloudTrail then looks up only those names).
    pub pinned_names: bool,
    /// Each `[[account]]` with the AWS configuration that reaches it (its assumed role's
    /// credentials, cached and refreshed before they expire); empty without `[[account]]`.
    pub accounts: Vec<(AccountConfig, SdkConfig)>,
}

/// Assumed-role credentials are refreshed at most this long before they expire, and at least
/// half of it: the SDK's lazy identity cache adds a random 0 to 50 % of the buffer to the
/// expiry it keeps, so that hundreds of accounts do not all call STS at once (2.5 to 5
/// minutes before expiry, measured through the clock seam in
/// `tests/it/organization.rs`). The SDK reads the time from rolewatch's
/// [`crate::time::Clock`] ([`crate::aws::ClockTime`]).
pub const CREDENTIALS_REFRESH_BEFORE: std::time::Duration = std::time::Duration::from_secs(300);

/// The AWS configuration for `account`: `base` itself for the account rolewatch runs in,
/// else `base` with credentials from `sts:AssumeRole` into the account's role (with its
/// ExternalId and session name). Nothing is called here: the role is assumed on the first
/// request, so an account whose role cannot be assumed fails its own sources only.
pub async fn account_sdk(base: &SdkConfig, account: &AccountConfig) -> SdkConfig {
    let Some(role) = &account.role_arn else {
        return base.clone();
    };
    let cache = aws_config::identity::IdentityCache::lazy()
        .buffer_time(CREDENTIALS_REFRESH_BEFORE)
        .build();
    let builder = base.to_builder().identity_cache(cache);
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
            let failing = NoCredentials(format!(
                "no credentials for account {}: its ExternalId cannot be read ({why})",
                account.id
            ));
            return builder
                .credentials_provider(provider::SharedCredentialsProvider::new(failing))
                .build();
        }
        Some(Ok(v)) => Some(v),
        None => None,
    };
    let mut assume = aws_config::sts::AssumeRoleProvider::builder(role.clone())
        .session_name(account.session_name.clone())
        .configure(base);
    if let Some(id) = external_id {
        assume = assume.external_id(id);
    }
    let provider = assume.build().await;
    builder
        .credentials_provider(provider::SharedCredentialsProvider::new(provider))
        .build()
}

/// Credentials that never resolve, saying why (an account whose ExternalId is missing).
#[derive(Debug)]
struct NoCredentials(String);

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
            self.0.clone(),
        )))
    }
}

/// Each account's AWS configuration by account id, kept from one daemon to the next in one
/// process so that an account's credentials are not assumed again when the organization's
/// accounts change (an entry is used only while its [`AccountConfig`] is the same).
pub type AccountSdks =
    std::sync::Mutex<std::collections::HashMap<String, (AccountConfig, SdkConfig)>>;

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
    let mut accounts = Vec::with_capacity(cfg.accounts.len());
    for a in &cfg.accounts {
        let kept = reuse.and_then(|r| {
            let map = r.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.get(&a.id)
                .filter(|(was, _)| was == a)
                .map(|(_, s)| s.clone())
        });
        let each = match kept {
            Some(s) => s,
            None => account_sdk(&sdk, a).await,
        };
        accounts.push((a.clone(), each));
    }
    if let Some(r) = reuse {
        let mut map = r.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.clear();
        map.extend(
            accounts
                .iter()
                .map(|(a, s)| (a.id.clone(), (a.clone(), s.clone()))),
        );
    }
    let sdk_of = |sc: &SourceConfig| {
        sc.account
            .as_deref()
            .and_then(|id| accounts.iter().find(|(a, _)| a.id == id))
            .map_or(&sdk, |(_, s)| s)
    };
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
                Source::new(sc, sdk_of(sc), names.clone(), patterns.clone()),
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
