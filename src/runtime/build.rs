//! Building the pipeline from a configuration — the engine from the rules, the shared AWS
//! configuration, one source per `[[source]]` reading what the rules need — in one place for
//! the daemon (`run`, `once`) and `check`.

use aws_config::SdkConfig;

use crate::config::{Config, SourceConfig, SourceKind};
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
}

/// Builds the engine, the AWS configuration (the first source's region) and the sources.
///
/// # Errors
///
/// When the AWS configuration cannot be loaded.
pub async fn pipeline(cfg: &Config) -> anyhow::Result<Pipeline> {
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
    let sdk = crate::aws::load(region).await?;
    let sources = cfg
        .sources
        .iter()
        .map(|sc| {
            warn_about_region(sc, names.is_some());
            (
                sc.clone(),
                Source::new(sc, &sdk, names.clone(), patterns.clone()),
            )
        })
        .collect();
    Ok(Pipeline {
        pinned_names: names.is_some(),
        engine,
        sdk,
        sources,
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
