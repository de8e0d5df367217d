//! The shared AWS configuration: the standard credential chain, loaded once, with timeouts
//! that keep a missing credential or a dead endpoint from hanging a command.
//!
//! [`retry`]: the one retry classifier, backoff and client-side rate limit every AWS caller
//! uses (sources, SNS, IAM, TestMetricFilter).

pub mod assume;
pub mod retry;

use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;

/// How long resolving credentials may take before we say there are none (instance metadata
/// answers in milliseconds where it exists).
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(8);

/// The HTTPS client of every AWS call (credential providers included): hyper 1 with rustls on
/// ring, the system's trusted roots, the standard proxy variables — what the SDK builds by
/// default, but on ring rather than aws-lc, which would add 2 MB of C to the binary
/// (rolewatch's resident memory follows its size, bench/RESULTS.md) for nothing it uses.
#[must_use]
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::{tls, Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut conn = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ));
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    })
}

/// Loads the AWS configuration for `region` and checks that credentials resolve.
///
/// Honours the standard environment: `AWS_PROFILE`, `AWS_ACCESS_KEY_ID`…, web identity,
/// container and instance roles, and `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`.
///
/// # Errors
///
/// When no credentials can be found, within `CREDENTIALS_TIMEOUT` (8 s), with what to do.
pub async fn load(region: &str) -> anyhow::Result<SdkConfig> {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(30))
        .operation_attempt_timeout(Duration::from_secs(45))
        .build();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .timeout_config(timeouts)
        .http_client(https_client())
        .load()
        .await;
    let Some(provider) = sdk.credentials_provider() else {
        anyhow::bail!("no AWS credentials provider is configured");
    };
    match tokio::time::timeout(CREDENTIALS_TIMEOUT, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(sdk),
        Ok(Err(e)) => Err(anyhow::anyhow!(
            "no AWS credentials found ({e}): set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an instance, task or web-identity role"
        )),
        Err(_) => Err(anyhow::anyhow!(
            "no AWS credentials found within {} s: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an instance, task or web-identity role (set AWS_EC2_METADATA_DISABLED=true off EC2)",
            CREDENTIALS_TIMEOUT.as_secs()
        )),
    }
}

/// The AWS SDK's time source read from rolewatch's [`crate::time::Clock`]: request signing and
/// the identity cache's "are these credentials due for refresh" use the same clock as the
/// rest of rolewatch, so a test can move it.
#[derive(Clone)]
pub struct ClockTime(pub std::sync::Arc<dyn crate::time::Clock>);

impl std::fmt::Debug for ClockTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClockTime")
    }
}

impl aws_smithy_async::time::TimeSource for ClockTime {
    fn now(&self) -> std::time::SystemTime {
        let ms = u64::try_from(self.0.now_ms()).unwrap_or(0);
        std::time::UNIX_EPOCH + Duration::from_millis(ms)
    }
}

/// `sdk` with its time source read from `clock`.
#[must_use]
pub fn with_clock(sdk: &SdkConfig, clock: std::sync::Arc<dyn crate::time::Clock>) -> SdkConfig {
    sdk.to_builder()
        .time_source(aws_smithy_async::time::SharedTimeSource::new(ClockTime(
            clock,
        )))
        .build()
}

/// A one-line description of an SDK error: its code and message, or its kind.
pub fn error_text<E>(
    e: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> String
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("unknown error");
            let status = se.raw().status().as_u16();
            match se.err().message() {
                Some(m) => format!("{code} (HTTP {status}): {m}"),
                None => format!("{code} (HTTP {status})"),
            }
        }
        other => chain_text(other),
    }
}

/// Any error and its causes on one line, `outer: inner: innermost`, each by its `Display`;
/// a cause whose text the line already holds is not repeated.
pub fn chain_text(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
