//! CloudTrail `LookupEvents`: one paginated query per required event name (the API takes one
//! lookup attribute per call), identical parameters on every page, paced by a client-side
//! rate limit (the API allows 2 requests/s per account and region, shared with everyone).

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use aws_sdk_cloudtrail::Client;
use aws_smithy_types::DateTime;

use super::{check_record, FetchStats, Page, Progress, SourceError};
use crate::aws::retry::{send_with_retries, CallStats, Priority, RateLimiter, RetryClass};
use crate::config::SourceConfig;
use crate::event::Window;

/// Retries of one request before the poll gives up (the next poll starts again).
const MAX_RETRIES: usize = 6;

pub struct CloudTrailSource {
    id: String,
    /// Shared by every source of the region (and every account).
    client: Client,
    /// The account's credentials, sent with each request; `None`: the client's own.
    credentials: Option<SharedCredentialsProvider>,
    limiter: Arc<RateLimiter>,
    /// `(key, value)` lookups, one paginated query each.
    lookups: Vec<(LookupAttributeKey, String)>,
}

/// The CloudTrail client of `region`, for every source there.
pub fn client(sdk: &SdkConfig, region: &str) -> Client {
    let http = match sdk.http_client() {
        Some(http) => super::lenient::LenientClient::wrap(http),
        None => super::lenient::LenientClient::default_https(),
    };
    let conf = aws_sdk_cloudtrail::config::Builder::from(sdk)
        .region(aws_config::Region::new(region.to_owned()))
        // Retries go through our own loop, so that each attempt waits for the rate limit.
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .http_client(http)
        .build();
    Client::from_conf(conf)
}

impl CloudTrailSource {
    /// `client`: [`client`] of the source's region; `credentials`: the account's;
    /// `event_names`: what the rules need (`None` reads every IAM event instead).
    pub fn new(
        cfg: &SourceConfig,
        client: Client,
        credentials: Option<SharedCredentialsProvider>,
        event_names: Option<Vec<String>>,
    ) -> CloudTrailSource {
        let lookups = match event_names {
            Some(names) => names
                .into_iter()
                .map(|n| (LookupAttributeKey::EventName, n))
                .collect(),
            None => vec![(
                LookupAttributeKey::EventSource,
                "iam.amazonaws.com".to_owned(),
            )],
        };
        CloudTrailSource {
            id: cfg.id.clone(),
            client,
            credentials,
            limiter: Arc::new(RateLimiter::new(cfg.max_requests_per_sec)),
            lookups,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The lookups this source makes, as `(attribute, value)` text.
    pub fn lookups(&self) -> Vec<(String, String)> {
        self.lookups
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
            .collect()
    }

    /// How many paginated queries a fetch makes (one per lookup).
    pub(super) fn queries(&self) -> usize {
        self.lookups.len()
    }

    /// The limiter shared by every fetch of this source.
    pub(super) fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Fetches one page of query `query` (from `token`), counting into `stats`; returns the
    /// page and the next token, if any.
    pub(super) async fn page(
        &self,
        query: usize,
        token: Option<String>,
        window: Window,
        priority: Priority,
        progress: &mut Progress,
    ) -> Result<(Page, Option<String>), SourceError> {
        let Progress { budget, stats } = progress;
        let Some((key, value)) = self.lookups.get(query) else {
            return Ok((Page::default(), None));
        };
        let attribute = LookupAttribute::builder()
            .attribute_key(key.clone())
            .attribute_value(value)
            .build()
            .map_err(|e| self.error(RetryClass::Permanent, e.to_string(), *stats))?;
        let call = || async {
            self.limiter.acquire_as(priority).await;
            let request = self
                .client
                .lookup_events()
                .lookup_attributes(attribute.clone())
                .start_time(DateTime::from_millis(window.start_ms))
                // EndTime is inclusive; the window is half-open.
                .end_time(DateTime::from_millis(window.end_ms - 1))
                .max_results(50)
                .set_next_token(token.clone());
            match &self.credentials {
                None => request.send().await,
                Some(c) => {
                    // With the client's identity cache, which every account shares: without
                    // one, the SDK gives the request a throwaway cache of its own, and each
                    // request would assume the role again.
                    let mut with = aws_sdk_cloudtrail::config::Builder::default();
                    with.set_credentials_provider(Some(c.clone()));
                    if let Some(cache) = self.client.config().identity_cache() {
                        with.set_identity_cache(cache);
                    }
                    request.customize().config_override(with).send().await
                }
            }
        };
        let mut calls = CallStats::default();
        let sent = send_with_retries(
            &self.id,
            "LookupEvents",
            MAX_RETRIES,
            budget,
            &mut calls,
            call,
        )
        .await;
        stats.add_calls(calls);
        let out = match sent {
            Ok(out) => out,
            Err((class, message)) => return Err(self.error(class, message, *stats)),
        };
        let mut page = Page::default();
        for ev in out.events() {
            let fallback_time = ev.event_time().and_then(|t| t.to_millis().ok());
            let Some(record) = ev.cloud_trail_event() else {
                page.bad.push(crate::event::BadEvent {
                    event_id: ev.event_id().unwrap_or("(unknown)").to_owned(),
                    event_time_ms: fallback_time,
                    reason: "the event has no CloudTrailEvent".into(),
                });
                continue;
            };
            match check_record(record.to_owned(), ev.event_id(), fallback_time) {
                Ok(e) => page.events.push(e),
                Err(b) => page.bad.push(b),
            }
        }
        stats.events += page.events.len() as u64;
        stats.bad += page.bad.len() as u64;
        let next = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok((page, next))
    }

    fn error(&self, class: RetryClass, message: String, stats: FetchStats) -> SourceError {
        SourceError {
            source_id: self.id.clone(),
            class,
            message,
            stats,
        }
    }
}
