//! CloudWatch Logs `FilterLogEvents` on the log group a trail delivers to. Each rule's pattern
//! is sent as `filterPattern` so that AWS narrows the results server-side; rolewatch still
//! evaluates every returned event itself, and that result is the one that counts. `nextToken`
//! is followed through empty pages.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_cloudwatchlogs::Client;
use backon::Retryable;

use super::{check_record, FetchStats, Page, Progress, SourceError};
use crate::aws::error_text;
use crate::aws::retry::{
    backoff, classify, send_with_retries, CallStats, Priority, RateLimiter, RetryClass,
};
use crate::config::{SourceConfig, SourceKind};
use crate::event::Window;

const MAX_RETRIES: usize = 6;

pub struct LogsSource {
    id: String,
    client: Client,
    limiter: Arc<RateLimiter>,
    log_group: String,
    stream_prefix: Option<String>,
    /// One query per distinct pattern; `None` means no server-side filter.
    patterns: Vec<Option<String>>,
}

impl LogsSource {
    pub fn new(cfg: &SourceConfig, sdk: &SdkConfig, patterns: Vec<String>) -> LogsSource {
        let http = match sdk.http_client() {
            Some(http) => super::lenient::LenientClient::wrap(http),
            None => super::lenient::LenientClient::default_https(),
        };
        let conf = aws_sdk_cloudwatchlogs::config::Builder::from(sdk)
            .region(aws_config::Region::new(cfg.region.clone()))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .http_client(http)
            .build();
        let (log_group, stream_prefix) = match &cfg.kind {
            SourceKind::CloudWatchLogs {
                log_group,
                log_stream_prefix,
            } => (log_group.clone(), log_stream_prefix.clone()),
            SourceKind::CloudTrail | SourceKind::Sqs { .. } => (String::new(), None),
        };
        let mut distinct = Vec::new();
        let mut seen = HashSet::new();
        for p in patterns {
            // A match-all pattern filters nothing; send none.
            let p = if p.trim().is_empty() || p.trim() == "\"\"" {
                None
            } else {
                Some(p)
            };
            if seen.insert(p.clone()) {
                distinct.push(p);
            }
        }
        if distinct.is_empty() {
            distinct.push(None);
        }
        LogsSource {
            id: cfg.id.clone(),
            client: Client::from_conf(conf),
            limiter: Arc::new(RateLimiter::new(cfg.max_requests_per_sec)),
            log_group,
            stream_prefix,
            patterns: distinct,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(super) async fn retention(&self) -> Result<Option<Duration>, SourceError> {
        self.limiter.acquire().await;
        let out = (|| async {
            self.client
                .describe_log_groups()
                .log_group_name_prefix(&self.log_group)
                .send()
                .await
        })
        .retry(backoff(MAX_RETRIES))
        .sleep(tokio::time::sleep)
        .when(|e| classify(e).is_retryable())
        .await
        .map_err(|e| SourceError {
            source_id: self.id.clone(),
            class: classify(&e),
            message: error_text(&e),
            stats: FetchStats::default(),
        })?;
        let group = out
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(self.log_group.as_str()));
        match group {
            None => Err(SourceError {
                source_id: self.id.clone(),
                class: RetryClass::Permanent,
                message: format!("log group {} does not exist", self.log_group),
                stats: FetchStats::default(),
            }),
            Some(g) => Ok(g
                .retention_in_days()
                .and_then(|d| u64::try_from(d).ok())
                .map(|d| Duration::from_secs(d * 86_400))),
        }
    }

    /// How many paginated queries a fetch makes (one per pattern).
    pub(super) fn queries(&self) -> usize {
        self.patterns.len()
    }

    /// The limiter shared by every fetch of this source.
    pub(super) fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Fetches one page of query `query` (from `token`), counting into `stats`; returns the
    /// page and the next token, if any. `delivered` holds the eventIDs this fetch already
    /// handed over: the same record can come back from several patterns' queries.
    pub(super) async fn page(
        &self,
        query: usize,
        token: Option<String>,
        window: Window,
        priority: Priority,
        progress: &mut Progress,
        delivered: &mut HashSet<String>,
    ) -> Result<(Page, Option<String>), SourceError> {
        let Progress { budget, stats } = progress;
        let Some(pattern) = self.patterns.get(query) else {
            return Ok((Page::default(), None));
        };
        let call = || async {
            self.limiter.acquire_as(priority).await;
            self.client
                .filter_log_events()
                .log_group_name(&self.log_group)
                .set_log_stream_name_prefix(self.stream_prefix.clone())
                .start_time(window.start_ms)
                // FilterLogEvents' endTime is inclusive; the window is half-open.
                .end_time(window.end_ms - 1)
                .set_filter_pattern(pattern.clone())
                .set_next_token(token.clone())
                .send()
                .await
        };
        let mut calls = CallStats::default();
        let sent = send_with_retries(
            &self.id,
            "FilterLogEvents",
            MAX_RETRIES,
            budget,
            &mut calls,
            call,
        )
        .await;
        stats.add_calls(calls);
        let out = match sent {
            Ok(out) => out,
            Err((class, message)) => {
                return Err(SourceError {
                    source_id: self.id.clone(),
                    class,
                    message,
                    stats: *stats,
                })
            }
        };
        let mut page = Page::default();
        for ev in out.events() {
            let Some(message) = ev.message() else {
                continue;
            };
            match check_record(message.to_owned(), ev.event_id(), ev.timestamp()) {
                Ok(e) => {
                    if delivered.insert(e.event_id.clone()) {
                        page.events.push(e);
                    }
                }
                Err(b) => page.bad.push(b),
            }
        }
        stats.events += page.events.len() as u64;
        stats.bad += page.bad.len() as u64;
        // An empty page with a token is not the end: keep following it (but not a token that
        // repeats the one just used).
        let next = out
            .next_token()
            .filter(|t| !t.is_empty() && token.as_deref() != Some(*t))
            .map(str::to_owned);
        Ok((page, next))
    }
}
