//! The network checks: credentials and caller identity, sources, trails, channels.
//!
//! Why one file of ~630 lines: each check is a short, independent function of the same shape
//! (call, classify, one line of advice); together they are the list `doctor` runs.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::SdkConfig;
use aws_smithy_types::DateTime;
use tokio::time::Instant;

use super::{
    arn_account, arn_region, bounded, call, elapsed_ms, when, AwsFailure, Finding, Status,
    CHECK_TIMEOUT,
};
use crate::config::{
    defaults, ChannelConfig, ChannelKind, Config, SmtpChannelConfig, SmtpTls, SourceConfig,
    SourceKind,
};
use crate::notify::notifier::Notifier;

/// How far back a source check reads: one event of the last hour proves the call works.
const LOOKBACK_MS: i64 = 60 * 60 * 1000;

/// Pages of a list call read at most (`ListSubscriptionsByTopic` has 100 per page).
const MAX_PAGES: usize = 50;

/// Two attempts per call: a dead endpoint should fail the check quickly, not eat the timeout.
fn retry() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(2)
}

/// Loads the AWS configuration and asks STS who we are. `None` when no credentials resolve.
pub(super) async fn credentials(cfg: &Config) -> (Finding, Option<SdkConfig>) {
    const CHECK: &str = "credentials";
    let region = cfg
        .sources
        .first()
        .map_or(defaults::REGION, |s| s.region.as_str());
    // aws::load bounds the credential chain itself; this bounds loading the profile files.
    let sdk = match bounded(CHECK_TIMEOUT * 2, crate::aws::load(region)).await {
        Ok(Ok(sdk)) => sdk,
        Ok(Err(e)) => return (Finding::new(Status::Fail, CHECK, format!("{e:#}")), None),
        Err(why) => {
            let finding = Finding::new(
                Status::Fail,
                CHECK,
                format!("loading the AWS configuration: {why}"),
            );
            return (finding, None);
        }
    };
    let conf = aws_sdk_sts::config::Builder::from(&sdk)
        .retry_config(retry())
        .build();
    let client = aws_sdk_sts::Client::from_conf(conf);
    let started = Instant::now();
    let mut finding = match call("GetCallerIdentity", client.get_caller_identity().send()).await {
        Ok(who) => {
            let account = who.account().unwrap_or("?").to_owned();
            let mut f = Finding::new(
                Status::Ok,
                CHECK,
                format!(
                    "{} (account {account}), {} ms",
                    who.arn().unwrap_or("?"),
                    elapsed_ms(started)
                ),
            );
            for (what, other) in other_accounts(cfg, &account) {
                f.raise(Status::Warn);
                f.line(format!(
                    "{what} is in account {other}, not the caller's account {account}: \
                     it needs a resource policy that lets this account in"
                ));
            }
            f
        }
        // Credentials resolved but STS refused them (expired, revoked, wrong keys), or STS
        // cannot be reached: the other checks still run and say more.
        Err(e) => Finding::new(Status::Fail, CHECK, format!("credentials found, but {e}")),
    };
    finding.line(format!("region {region}"));
    let mut overrides: Vec<String> = std::env::vars()
        .filter(|(k, _)| k == "AWS_ENDPOINT_URL" || k.starts_with("AWS_ENDPOINT_URL_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    overrides.sort();
    for o in overrides {
        finding.line(format!("endpoint {o}"));
    }
    (finding, Some(sdk))
}

/// Configured resources (SNS topics, trail ARNs) whose account is not `account`.
fn other_accounts(cfg: &Config, account: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for c in &cfg.channels {
        if let ChannelKind::Sns(s) = &c.kind {
            if let Some(a) = arn_account(&s.topic_arn).filter(|a| *a != account) {
                out.push((format!("the SNS topic of channel {}", c.name), a.to_owned()));
            }
        }
    }
    for s in &cfg.sources {
        if let Some(a) = s
            .trail
            .as_deref()
            .and_then(arn_account)
            .filter(|a| *a != account)
        {
            out.push((format!("the trail of source {}", s.id), a.to_owned()));
        }
    }
    out
}

/// One check per source: can it be read at all.
pub(super) async fn sources(cfg: &Config, sdk: Option<&SdkConfig>, now_ms: i64) -> Vec<Finding> {
    let mut out = Vec::new();
    // A per-account source is checked with its account's credentials, in the account's
    // check (`super::accounts`).
    for s in cfg.sources.iter().filter(|s| s.account.is_none()) {
        let kind = s.kind.name();
        let check = format!("source {} ({kind}, {})", s.id, s.region);
        out.push(match sdk {
            None => Finding::skipped(check),
            Some(sdk) => match &s.kind {
                SourceKind::CloudTrail => cloudtrail_source(check, s, sdk, now_ms).await,
                SourceKind::CloudWatchLogs {
                    log_group,
                    log_stream_prefix,
                } => {
                    logs_source(
                        check,
                        s,
                        sdk,
                        log_group,
                        log_stream_prefix.as_deref(),
                        now_ms,
                    )
                    .await
                }
                SourceKind::Sqs { .. } => sqs_source(check, s, sdk).await,
            },
        });
    }
    out
}

/// An `sqs` source: the queue answers, its visibility timeout is long enough for a batch,
/// and its dead-letter queue (when named) is empty and keeps messages longer than the queue.
async fn sqs_source(check: String, s: &SourceConfig, sdk: &SdkConfig) -> Finding {
    let q = crate::source::sqs::QueueSource::new(s, sdk);
    let mut stats = crate::source::FetchStats::default();
    let mut budget = q.budget();
    let main = match q.attributes(q.queue_url(), &mut budget, &mut stats).await {
        Ok(a) => a,
        Err(e) => {
            let mut f = Finding::new(Status::Fail, check, e.to_string());
            f.line("grant sqs:GetQueueAttributes, sqs:ReceiveMessage and sqs:DeleteMessage on the queue (deploy/iam-policy.json)");
            return f;
        }
    };
    let required = q.required_visibility();
    let mut f = Finding::new(
        Status::Ok,
        check,
        format!(
            "GetQueueAttributes answered; {} message(s) waiting",
            main.messages.unwrap_or(0)
        ),
    );
    match main.visibility_timeout {
        Some(v) if v > required => {}
        v => {
            f.raise(Status::Fail);
            f.line(format!(
                "the visibility timeout ({} s) must be more than {} s (the retry budget plus the commit): rolewatch does not read this queue until it is",
                v.map_or_else(|| "unknown".to_owned(), |v| v.as_secs().to_string()),
                required.as_secs()
            ));
        }
    }
    if main
        .kms_key
        .as_deref()
        .is_some_and(|k| k == "alias/aws/sqs" || k.ends_with(":alias/aws/sqs"))
    {
        f.raise(Status::Fail);
        f.line("the queue is encrypted with the AWS-managed key alias/aws/sqs, which EventBridge cannot use: every event is silently dropped; use SSE-SQS (SqsManagedSseEnabled) or a customer key that grants events.amazonaws.com kms:GenerateDataKey and kms:Decrypt");
    }
    match main.policy.as_deref() {
        Some(p) if p.contains("events.amazonaws.com") => {
            if !p.contains("aws:SourceArn") {
                f.raise(Status::Warn);
                f.line("the queue policy lets events.amazonaws.com send without an aws:SourceArn condition: any rule of any account's EventBridge may write to this queue");
            }
        }
        _ => {
            f.raise(Status::Fail);
            f.line("the queue policy does not let EventBridge (events.amazonaws.com) send to the queue: no event arrives (deploy/eventbridge-queue.yaml has the policy)");
        }
    }
    if let Some(p) = main.policy.as_deref() {
        eventbridge_rules(&mut f, p, q.queue_url(), &s.region, sdk).await;
    }
    match q.dlq_url() {
        None => {
            f.raise(Status::Warn);
            f.line("no dlq_url: a message rolewatch cannot read is not watched for (give the queue a redrive policy and name its dead-letter queue)");
        }
        Some(dlq) => match q.attributes(dlq, &mut budget, &mut stats).await {
            Ok(d) => {
                if d.messages.unwrap_or(0) > 0 {
                    f.raise(Status::Warn);
                    f.line(format!(
                        "the dead-letter queue holds {} message(s) rolewatch could not read",
                        d.messages.unwrap_or(0)
                    ));
                }
                if let (Some(dr), Some(mr)) = (d.retention, main.retention) {
                    if dr <= mr {
                        f.raise(Status::Warn);
                        f.line(format!("the dead-letter queue keeps messages {} s, not longer than the queue ({} s): a redriven message can expire before anyone reads it", dr.as_secs(), mr.as_secs()));
                    }
                }
            }
            Err(e) => {
                f.raise(Status::Fail);
                f.line(format!("the dead-letter queue: {e}"));
            }
        },
    }
    f
}

/// The EventBridge rule ARNs a queue policy names in its `aws:SourceArn` conditions.
fn rule_arns(policy: &str) -> Vec<String> {
    fn walk(v: &serde_json::Value, key: Option<&str>, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    walk(x, Some(k), out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, key, out)),
            serde_json::Value::String(t)
                if key.is_some_and(|k| k.eq_ignore_ascii_case("aws:SourceArn"))
                    && t.starts_with("arn:")
                    && t.contains(":events:")
                    && t.contains(":rule/") =>
            {
                out.push(t.clone());
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(policy) {
        walk(&v, None, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// The queue's ARN from its URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`).
fn queue_arn(url: &str, region: &str) -> Option<String> {
    let mut parts = url.trim_end_matches('/').rsplit('/');
    let name = parts.next()?;
    let account = parts.next()?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("arn:aws:sqs:{region}:{account}:{name}"))
}

/// The EventBridge rules the queue policy lets send: each must be enabled, target this
/// queue, and give that target a dead-letter queue (else an event EventBridge cannot deliver
/// is dropped unseen).
async fn eventbridge_rules(
    f: &mut Finding,
    policy: &str,
    url: &str,
    region: &str,
    sdk: &SdkConfig,
) {
    let arns = rule_arns(policy);
    if arns.is_empty() {
        return;
    }
    let conf = aws_sdk_eventbridge::config::Builder::from(sdk)
        .region(aws_config::Region::new(region.to_owned()))
        .retry_config(retry())
        .build();
    let client = aws_sdk_eventbridge::Client::from_conf(conf);
    let queue = queue_arn(url, region);
    for arn in arns {
        let Some(name) = arn.rsplit_once(":rule/").map(|(_, n)| n.to_owned()) else {
            continue;
        };
        // A rule on a custom bus is `rule/BUS/NAME`.
        let (bus, name) = match name.split_once('/') {
            Some((b, n)) => (Some(b.to_owned()), n.to_owned()),
            None => (None, name),
        };
        let rule = call(
            "DescribeRule",
            client
                .describe_rule()
                .name(&name)
                .set_event_bus_name(bus.clone())
                .send(),
        )
        .await;
        match rule {
            Ok(r) => {
                let state = r.state().map_or("unknown", |s| s.as_str());
                if state != "ENABLED" {
                    f.raise(Status::Fail);
                    f.line(format!(
                        "the EventBridge rule {name} is {state}: no event reaches the queue"
                    ));
                }
            }
            Err(e) if e.is_access_denied() => {
                f.raise(Status::Warn);
                f.line(format!("cannot read the EventBridge rule {name}: {e}"));
                f.line("grant events:DescribeRule and events:ListTargetsByRule on the rule (deploy/iam-policy-optional.json)");
                continue;
            }
            Err(e) => {
                f.raise(Status::Fail);
                f.line(format!(
                    "the EventBridge rule {name} named by the queue policy: {e}"
                ));
                continue;
            }
        }
        let targets = call(
            "ListTargetsByRule",
            client
                .list_targets_by_rule()
                .rule(&name)
                .set_event_bus_name(bus)
                .send(),
        )
        .await;
        match targets {
            Ok(t) => {
                let ours = t
                    .targets()
                    .iter()
                    .find(|t| queue.as_deref().is_some_and(|q| t.arn() == q));
                match ours {
                    None => {
                        f.raise(Status::Fail);
                        f.line(format!(
                            "the EventBridge rule {name} does not target this queue ({}): no event reaches it",
                            queue.as_deref().unwrap_or(url)
                        ));
                    }
                    Some(t) if t.dead_letter_config().and_then(|d| d.arn()).is_none() => {
                        f.raise(Status::Warn);
                        f.line(format!("the EventBridge rule {name} targets the queue without a dead-letter queue: an event EventBridge cannot deliver is dropped unseen"));
                    }
                    Some(_) => f.line(format!(
                        "EventBridge rule {name}: enabled, targets this queue, with a dead-letter queue"
                    )),
                }
            }
            Err(e) => {
                f.raise(Status::Warn);
                f.line(format!(
                    "cannot list the targets of the EventBridge rule {name}: {e}"
                ));
            }
        }
    }
}

/// A CloudTrail client for `region`, built like the source's: the lenient HTTP layer (one
/// record that is not valid Unicode must not fail the check) and the endpoint from the
/// environment.
fn cloudtrail_client(sdk: &SdkConfig, region: &str) -> aws_sdk_cloudtrail::Client {
    let http = match sdk.http_client() {
        Some(http) => crate::source::lenient::LenientClient::wrap(http),
        None => crate::source::lenient::LenientClient::default_https(),
    };
    let conf = aws_sdk_cloudtrail::config::Builder::from(sdk)
        .region(aws_config::Region::new(region.to_owned()))
        .retry_config(retry())
        .http_client(http)
        .build();
    aws_sdk_cloudtrail::Client::from_conf(conf)
}

pub(super) async fn cloudtrail_source(
    check: String,
    s: &SourceConfig,
    sdk: &SdkConfig,
    now_ms: i64,
) -> Finding {
    let client = cloudtrail_client(sdk, &s.region);
    let started = Instant::now();
    let result = call(
        "LookupEvents",
        client
            .lookup_events()
            .start_time(DateTime::from_millis(now_ms - LOOKBACK_MS))
            .end_time(DateTime::from_millis(now_ms))
            .max_results(1)
            .send(),
    )
    .await;
    let mut f = match result {
        Ok(page) => {
            let newest = page
                .events()
                .first()
                .and_then(|e| e.event_time())
                .map(|t| {
                    format!(
                        "newest event of the last hour at {}",
                        when(t.to_millis().unwrap_or(0), now_ms)
                    )
                })
                .unwrap_or_else(|| "no event in the last hour".to_owned());
            Finding::new(
                Status::Ok,
                check,
                format!(
                    "LookupEvents answered in {} ms; {newest}",
                    elapsed_ms(started)
                ),
            )
        }
        Err(e) => {
            let mut f = Finding::new(Status::Fail, check, e.to_string());
            if e.is_access_denied() {
                f.line("grant cloudtrail:LookupEvents (deploy/iam-policy.json)");
            }
            f
        }
    };
    if s.region != defaults::REGION {
        f.raise(Status::Warn);
        f.line(format!(
            "IAM is global and CloudTrail records its events in us-east-1 only: this source \
             in {} sees none of them",
            s.region
        ));
    }
    f
}

async fn logs_source(
    check: String,
    s: &SourceConfig,
    sdk: &SdkConfig,
    log_group: &str,
    stream_prefix: Option<&str>,
    now_ms: i64,
) -> Finding {
    let http = match sdk.http_client() {
        Some(http) => crate::source::lenient::LenientClient::wrap(http),
        None => crate::source::lenient::LenientClient::default_https(),
    };
    let conf = aws_sdk_cloudwatchlogs::config::Builder::from(sdk)
        .region(aws_config::Region::new(s.region.clone()))
        .retry_config(retry())
        .http_client(http)
        .build();
    let client = aws_sdk_cloudwatchlogs::Client::from_conf(conf);
    let started = Instant::now();

    // The prefix lists every group whose name starts with ours; find the exact one.
    let mut pages = client
        .describe_log_groups()
        .log_group_name_prefix(log_group)
        .into_paginator()
        .send();
    let mut found = None;
    for _ in 0..MAX_PAGES {
        let page = match call("DescribeLogGroups", async {
            pages.next().await.transpose()
        })
        .await
        {
            Ok(Some(page)) => page,
            Ok(None) => break,
            Err(e) => {
                let mut f = Finding::new(Status::Fail, check, e.to_string());
                if e.is_access_denied() {
                    f.line("grant logs:DescribeLogGroups (deploy/iam-policy.json)");
                }
                return f;
            }
        };
        found = page
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(log_group))
            .cloned();
        if found.is_some() {
            break;
        }
    }
    let Some(group) = found else {
        return Finding::new(
            Status::Fail,
            check,
            format!("the log group {log_group} does not exist in {}", s.region),
        );
    };
    let retention = group.retention_in_days().map_or_else(
        || "kept forever".to_owned(),
        |d| format!("retention {d} days"),
    );

    let result = call(
        "FilterLogEvents",
        client
            .filter_log_events()
            .log_group_name(log_group)
            .set_log_stream_name_prefix(stream_prefix.map(str::to_owned))
            .start_time(now_ms - LOOKBACK_MS)
            .end_time(now_ms)
            .limit(1)
            .send(),
    )
    .await;
    match result {
        Ok(page) => {
            let newest = match page.events().first().and_then(|e| e.timestamp()) {
                Some(t) => format!("an event of the last hour at {}", when(t, now_ms)),
                None => "no event in the last hour".to_owned(),
            };
            let mut f = Finding::new(
                Status::Ok,
                check,
                format!(
                    "log group {log_group} ({retention}); DescribeLogGroups and \
                     FilterLogEvents answered in {} ms; {newest}",
                    elapsed_ms(started)
                ),
            );
            if let Some(p) = stream_prefix {
                f.line(format!("log stream prefix {p}"));
            }
            f
        }
        Err(e) => {
            let mut f = Finding::new(Status::Fail, check, e.to_string());
            if e.is_access_denied() {
                f.line(format!(
                    "grant logs:FilterLogEvents on {log_group} (deploy/iam-policy.json)"
                ));
            }
            f
        }
    }
}

/// The trails the sources name, each checked once per region: `(trail, region)` → the
/// sources that name it, and whether one of them reads CloudWatch Logs (which the trail
/// feeds, so a delivery error there blinds it).
fn named_trails(cfg: &Config) -> BTreeMap<(String, String), (Vec<String>, bool)> {
    let mut trails: BTreeMap<(String, String), (Vec<String>, bool)> = BTreeMap::new();
    for s in &cfg.sources {
        let Some(trail) = &s.trail else { continue };
        let region = arn_region(trail).unwrap_or(&s.region).to_owned();
        let entry = trails.entry((trail.clone(), region)).or_default();
        entry.0.push(s.id.clone());
        entry.1 |= matches!(s.kind, SourceKind::CloudWatchLogs { .. });
    }
    trails
}

/// What `GetTrailStatus` said, as doctor needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct TrailStatus {
    pub is_logging: Option<bool>,
    pub stop_logging_ms: Option<i64>,
    pub delivery_error: Option<String>,
    pub delivery_ms: Option<i64>,
    pub logs_delivery_error: Option<String>,
    pub logs_delivery_ms: Option<i64>,
}

/// One check per named trail.
pub(super) async fn trails(cfg: &Config, sdk: Option<&SdkConfig>, now_ms: i64) -> Vec<Finding> {
    let mut out = Vec::new();
    for ((trail, region), (sources, feeds_logs)) in named_trails(cfg) {
        let check = format!("trail {trail} ({region}; source {})", sources.join(", "));
        let Some(sdk) = sdk else {
            out.push(Finding::skipped(check));
            continue;
        };
        let client = cloudtrail_client(sdk, &region);
        let result = call(
            "GetTrailStatus",
            client.get_trail_status().name(&trail).send(),
        )
        .await;
        out.push(match result {
            Ok(s) => {
                let ms = |t: Option<&DateTime>| t.and_then(|t| t.to_millis().ok());
                let status = TrailStatus {
                    is_logging: s.is_logging(),
                    stop_logging_ms: ms(s.stop_logging_time()),
                    delivery_error: s.latest_delivery_error().map(str::to_owned),
                    delivery_ms: ms(s.latest_delivery_time()),
                    logs_delivery_error: s
                        .latest_cloud_watch_logs_delivery_error()
                        .map(str::to_owned),
                    logs_delivery_ms: ms(s.latest_cloud_watch_logs_delivery_time()),
                };
                trail_finding(check, &status, feeds_logs, now_ms)
            }
            Err(e) if e.is("TrailNotFoundException") => Finding::new(
                Status::Fail,
                check,
                format!("no trail {trail} in {region} ({e})"),
            ),
            Err(e) if e.is_access_denied() => {
                let mut f = Finding::new(Status::Warn, check, format!("cannot read the status: {e}"));
                f.line("grant cloudtrail:GetTrailStatus on the trail (deploy/iam-policy-optional.json)");
                f
            }
            Err(e) => Finding::new(Status::Fail, check, e.to_string()),
        });
    }
    out
}

/// For `sqs` sources that name no trail: is any trail logging the IAM calls that EventBridge
/// is to pass on? EventBridge gets "AWS API Call via CloudTrail" events only while a trail
/// with logging on records them, and IAM's are recorded in us-east-1: a trail there or a
/// multi-region one (shadow trails included, which is how an organization trail or another
/// region's multi-region trail shows). `DescribeTrails`, then `GetTrailStatus` by ARN until
/// one logs. `None` when no `sqs` source needs it.
pub(super) async fn eventbridge_trail(cfg: &Config, sdk: Option<&SdkConfig>) -> Option<Finding> {
    let sources: Vec<&str> = cfg
        .sources
        .iter()
        .filter(|s| matches!(s.kind, SourceKind::Sqs { .. }) && s.trail.is_none())
        .map(|s| s.id.as_str())
        .collect();
    if sources.is_empty() {
        return None;
    }
    let check = format!(
        "a trail logging IAM calls for EventBridge (us-east-1; source {})",
        sources.join(", ")
    );
    let Some(sdk) = sdk else {
        return Some(Finding::skipped(check));
    };
    let client = cloudtrail_client(sdk, "us-east-1");
    let listed = call(
        "DescribeTrails",
        client.describe_trails().include_shadow_trails(true).send(),
    )
    .await;
    let trails = match listed {
        Ok(r) => r.trail_list.unwrap_or_default(),
        Err(e) if e.is_access_denied() => {
            let mut f = Finding::new(Status::Warn, check, format!("cannot list the trails: {e}"));
            f.line("grant cloudtrail:DescribeTrails (deploy/iam-policy-optional.json), or name the trail with `trail` on the source");
            return Some(f);
        }
        Err(e) => {
            return Some(Finding::new(
                Status::Warn,
                check,
                format!("cannot list the trails: {e}"),
            ))
        }
    };
    let mut seen = Vec::new();
    for t in &trails {
        let covers =
            t.is_multi_region_trail() == Some(true) || t.home_region() == Some("us-east-1");
        let (Some(arn), true) = (t.trail_arn(), covers) else {
            continue;
        };
        let name = t.name().unwrap_or(arn);
        match call("GetTrailStatus", client.get_trail_status().name(arn).send()).await {
            Ok(st) if st.is_logging() == Some(true) => {
                let mut f = Finding::new(
                    Status::Ok,
                    check,
                    format!("trail {name} is logging ({arn})"),
                );
                f.line("EventBridge receives the IAM calls it records");
                return Some(f);
            }
            Ok(_) => seen.push(format!("{name}: not logging")),
            Err(e) => seen.push(format!("{name}: cannot read the status ({e})")),
        }
    }
    let unread = seen.iter().any(|l| l.contains("cannot read"));
    let mut f = Finding::new(
        if unread { Status::Warn } else { Status::Fail },
        check,
        if unread {
            "no trail was found logging: the status of some could not be read".to_owned()
        } else {
            "no trail is logging IAM calls in us-east-1: EventBridge receives no \"AWS API Call via CloudTrail\" event, and the queue stays empty".to_owned()
        },
    );
    if trails.is_empty() {
        f.line("DescribeTrails lists no trail (the CloudTrail event history needs none; EventBridge does)");
    }
    for l in seen {
        f.line(l);
    }
    f.line("create a multi-region trail and start logging, or name the trail with `trail` on the source");
    Some(f)
}

/// Judges a trail's status: not logging fails; a CloudWatch Logs delivery error fails when a
/// source reads that log group (`feeds_logs`) and warns otherwise, as an S3 delivery error
/// does.
pub(super) fn trail_finding(
    check: String,
    s: &TrailStatus,
    feeds_logs: bool,
    now_ms: i64,
) -> Finding {
    let mut f = Finding::new(Status::Ok, check, "");
    let mut headline = Vec::new();
    if s.is_logging == Some(true) {
        headline.push("logging".to_owned());
    } else {
        f.raise(Status::Fail);
        headline
            .push("NOT logging: the trail delivers nothing to S3 or CloudWatch Logs".to_owned());
        if let Some(t) = s.stop_logging_ms {
            f.line(format!("logging stopped at {}", when(t, now_ms)));
        }
    }
    let at = |t: Option<i64>| t.map_or_else(|| "never".to_owned(), |t| when(t, now_ms));
    f.line(format!("latest delivery to S3: {}", at(s.delivery_ms)));
    f.line(format!(
        "latest delivery to CloudWatch Logs: {}",
        at(s.logs_delivery_ms)
    ));
    if let Some(e) = &s.delivery_error {
        f.raise(Status::Warn);
        headline.push(format!("S3 delivery error: {e}"));
    }
    if let Some(e) = &s.logs_delivery_error {
        f.raise(if feeds_logs {
            Status::Fail
        } else {
            Status::Warn
        });
        headline.push(format!("CloudWatch Logs delivery error: {e}"));
    }
    if feeds_logs && s.logs_delivery_ms.is_none() && s.logs_delivery_error.is_none() {
        f.raise(Status::Warn);
        f.line(
            "the trail has never delivered to CloudWatch Logs, which a source of this trail reads",
        );
    }
    f.detail = headline.join("; ");
    f
}

/// One check per channel.
pub(super) async fn channel(c: &ChannelConfig, sdk: Option<&SdkConfig>) -> Finding {
    let check = format!("channel {} ({})", c.name, c.kind.type_name());
    match &c.kind {
        ChannelKind::Stdout => Finding::new(
            Status::Ok,
            check,
            "alerts are printed on standard output, one JSON line each",
        ),
        ChannelKind::Sns(s) => match sdk {
            None => Finding::skipped(check),
            Some(sdk) => sns(check, &s.topic_arn, &s.region, sdk).await,
        },
        ChannelKind::Smtp(s) => smtp(check, c, s).await,
        ChannelKind::Webhook(_) | ChannelKind::PagerDuty(_) => http_channel(check, c).await,
    }
}

/// A webhook or PagerDuty channel: its secrets and CA file are read and its receiver
/// answers a TCP connect and a TLS handshake; no request is sent.
async fn http_channel(check: String, c: &ChannelConfig) -> Finding {
    let notifier = match crate::notify::Notifier::build(c, None) {
        Ok(n) => n,
        Err(e) => return Finding::new(Status::Fail, check, e.message),
    };
    match notifier.check().await {
        Ok(()) => Finding::new(
            Status::Ok,
            check,
            "the receiver answers (DNS, TCP connect, TLS handshake); nothing was sent",
        ),
        Err(e) => Finding::new(Status::Fail, check, e.to_string()),
    }
}

/// One subscription as `ListSubscriptionsByTopic` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Subscription {
    pub protocol: String,
    pub endpoint: String,
    /// `PendingConfirmation` until the endpoint confirmed.
    pub arn: String,
}

impl Subscription {
    fn pending(&self) -> bool {
        self.arn == "PendingConfirmation"
    }
}

/// An endpoint as shown: URLs lose their path and query (they may carry an integration key).
fn shown_endpoint(protocol: &str, endpoint: &str) -> String {
    if protocol == "http" || protocol == "https" {
        if let Some((scheme, rest)) = endpoint.split_once("://") {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if host.len() < rest.len() {
                return format!("{scheme}://{host}/…");
            }
        }
    }
    endpoint.to_owned()
}

/// Judges a topic's subscriptions: each pending one warns, and so does having no confirmed
/// one.
pub(super) fn subscriptions_finding(f: &mut Finding, subs: &[Subscription]) -> String {
    let pending = subs.iter().filter(|s| s.pending()).count();
    let confirmed = subs.len() - pending;
    for s in subs {
        let endpoint = shown_endpoint(&s.protocol, &s.endpoint);
        if s.pending() {
            f.raise(Status::Warn);
            f.line(format!(
                "WARN {} {endpoint}: PendingConfirmation — nobody will receive alerts on this \
                 subscription until it's confirmed",
                s.protocol
            ));
        } else {
            f.line(format!("{} {endpoint}: confirmed", s.protocol));
        }
    }
    if confirmed == 0 {
        f.raise(Status::Warn);
        f.line("no confirmed subscription: alerts published to this topic reach nobody");
    }
    format!(
        "{} subscription{}: {confirmed} confirmed, {pending} pending confirmation",
        subs.len(),
        if subs.len() == 1 { "" } else { "s" }
    )
}

async fn sns(check: String, topic_arn: &str, region: &str, sdk: &SdkConfig) -> Finding {
    let conf = aws_sdk_sns::config::Builder::from(sdk)
        .region(aws_config::Region::new(region.to_owned()))
        .retry_config(retry())
        .build();
    let client = aws_sdk_sns::Client::from_conf(conf);
    let started = Instant::now();
    let attributes = match call(
        "GetTopicAttributes",
        client.get_topic_attributes().topic_arn(topic_arn).send(),
    )
    .await
    {
        Ok(out) => out.attributes().cloned().unwrap_or_default(),
        Err(e) => {
            let mut f = Finding::new(Status::Fail, check, format!("topic {topic_arn}: {e}"));
            if e.is("NotFound") {
                f.line("the topic does not exist (or is in another region or account)");
            } else if e.is_access_denied() {
                f.line("grant sns:GetTopicAttributes and sns:Publish on the topic (deploy/iam-policy.json)");
            }
            return f;
        }
    };
    let mut f = Finding::new(Status::Ok, check, String::new());
    let latency = elapsed_ms(started);
    if let Some(key) = attributes.get("KmsMasterKeyId").filter(|k| !k.is_empty()) {
        f.line(format!(
            "encrypted with the KMS key {key}: rolewatch needs kms:GenerateDataKey and \
             kms:Decrypt on it (deploy/iam-policy-optional.json)"
        ));
    }

    let mut subs = Vec::new();
    let listed = bounded(CHECK_TIMEOUT, async {
        let mut pages = client
            .list_subscriptions_by_topic()
            .topic_arn(topic_arn)
            .into_paginator()
            .send();
        for _ in 0..MAX_PAGES {
            let Some(page) = pages.next().await else {
                break;
            };
            let page = page.map_err(|e| AwsFailure::of("ListSubscriptionsByTopic", &e))?;
            subs.extend(page.subscriptions().iter().map(|s| Subscription {
                protocol: s.protocol().unwrap_or("?").to_owned(),
                endpoint: s.endpoint().unwrap_or("?").to_owned(),
                arn: s.subscription_arn().unwrap_or("?").to_owned(),
            }));
        }
        Ok::<(), AwsFailure>(())
    })
    .await
    .unwrap_or_else(|why| Err(AwsFailure::timed_out("ListSubscriptionsByTopic", &why)));
    let summary = match listed {
        Ok(()) => subscriptions_finding(&mut f, &subs),
        Err(e) => {
            f.raise(Status::Warn);
            if e.is_access_denied() {
                f.line("grant sns:ListSubscriptionsByTopic on the topic (deploy/iam-policy-optional.json)");
            }
            format!("subscriptions unknown: {e}")
        }
    };
    f.detail = format!("topic {topic_arn} answered in {latency} ms; {summary}");
    f
}

async fn smtp(check: String, c: &ChannelConfig, s: &SmtpChannelConfig) -> Finding {
    let tls = match s.tls {
        SmtpTls::StartTls => "STARTTLS",
        SmtpTls::Implicit => "implicit TLS",
        SmtpTls::None => "no TLS",
    };
    let auth = s.auth.as_ref().map_or_else(
        || "no AUTH".to_owned(),
        |a| format!("AUTH as {}", a.username),
    );
    let how = format!("{}:{} ({tls}, {auth})", s.host, s.port);
    let notifier = match Notifier::build(c, None) {
        Ok(n) => n,
        Err(e) => return Finding::new(Status::Fail, check, format!("{how}: {}", e.message)),
    };
    let started = Instant::now();
    // The channel's own check has its exchange timeout; this one is a backstop.
    match bounded(CHECK_TIMEOUT + Duration::from_secs(5), notifier.check()).await {
        Ok(Ok(())) => Finding::new(
            Status::Ok,
            check,
            format!(
                "{how}: connected, EHLO, {}the relay answered NOOP; {} ms",
                match (s.tls, &s.auth) {
                    (SmtpTls::None, None) => String::new(),
                    (SmtpTls::None, Some(_)) => "AUTH, ".to_owned(),
                    (_, None) => "TLS, ".to_owned(),
                    (_, Some(_)) => "TLS, AUTH, ".to_owned(),
                },
                elapsed_ms(started)
            ),
        ),
        Ok(Err(e)) => Finding::new(Status::Fail, check, format!("{how}: {e} ({})", e.class())),
        Err(why) => Finding::new(Status::Fail, check, format!("{how}: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_000_000_000;

    fn status(is_logging: bool) -> TrailStatus {
        TrailStatus {
            is_logging: Some(is_logging),
            delivery_ms: Some(NOW - 300_000),
            logs_delivery_ms: Some(NOW - 240_000),
            ..TrailStatus::default()
        }
    }

    #[test]
    fn a_logging_trail_is_ok_and_shows_its_delivery_ages() {
        let f = trail_finding("trail t".into(), &status(true), true, NOW);
        assert_eq!(f.status, Status::Ok, "{f}");
        assert_eq!(f.detail, "logging");
        assert!(f.lines[0].ends_with("(5 min ago)"), "{f}");
        assert!(f.lines[1].contains("CloudWatch Logs") && f.lines[1].ends_with("(4 min ago)"));
    }

    #[test]
    fn a_trail_not_logging_fails_and_delivery_errors_warn_or_fail() {
        let mut s = status(false);
        s.stop_logging_ms = Some(NOW - 7_200_000);
        let f = trail_finding("trail t".into(), &s, false, NOW);
        assert_eq!(f.status, Status::Fail);
        assert!(f.detail.starts_with("NOT logging"), "{f}");
        assert!(f.lines[0].contains("stopped") && f.lines[0].contains("(2 h ago)"));

        let mut s = status(true);
        s.delivery_error = Some("AccessDenied".into());
        let f = trail_finding("trail t".into(), &s, true, NOW);
        assert_eq!(
            (f.status, f.detail.as_str()),
            (Status::Warn, "logging; S3 delivery error: AccessDenied")
        );

        s.logs_delivery_error = Some("InvalidRoleArn".into());
        assert_eq!(
            trail_finding("t".into(), &s, false, NOW).status,
            Status::Warn
        );
        let f = trail_finding("t".into(), &s, true, NOW);
        assert_eq!(f.status, Status::Fail);
        assert!(f
            .detail
            .ends_with("CloudWatch Logs delivery error: InvalidRoleArn"));
    }

    #[test]
    fn a_trail_that_never_delivered_to_the_log_group_a_source_reads_warns() {
        let mut s = status(true);
        s.logs_delivery_ms = None;
        assert_eq!(trail_finding("t".into(), &s, false, NOW).status, Status::Ok);
        let f = trail_finding("t".into(), &s, true, NOW);
        assert_eq!(f.status, Status::Warn);
        assert!(f.lines.iter().any(|l| l.contains("never delivered")), "{f}");
    }

    fn sub(protocol: &str, endpoint: &str, arn: &str) -> Subscription {
        Subscription {
            protocol: protocol.into(),
            endpoint: endpoint.into(),
            arn: arn.into(),
        }
    }

    #[test]
    fn pending_subscriptions_warn_and_so_does_having_none_confirmed() {
        let mut f = Finding::new(Status::Ok, "channel", "");
        let summary = subscriptions_finding(
            &mut f,
            &[
                sub(
                    "sqs",
                    "arn:aws:sqs:us-east-1:123456789012:q",
                    "arn:aws:sns:x:1:t:1",
                ),
                sub("email", "oncall@example.com", "PendingConfirmation"),
            ],
        );
        assert_eq!(
            summary,
            "2 subscriptions: 1 confirmed, 1 pending confirmation"
        );
        assert_eq!(f.status, Status::Warn);
        assert!(f.lines[1].contains("email oncall@example.com: PendingConfirmation"));

        let mut f = Finding::new(Status::Ok, "channel", "");
        subscriptions_finding(&mut f, &[sub("sqs", "q", "arn:aws:sns:x:1:t:1")]);
        assert_eq!(f.status, Status::Ok);

        let mut f = Finding::new(Status::Ok, "channel", "");
        assert_eq!(
            subscriptions_finding(&mut f, &[]),
            "0 subscriptions: 0 confirmed, 0 pending confirmation"
        );
        assert_eq!(f.status, Status::Warn);
        assert!(f.lines[0].contains("reach nobody"));
    }

    #[test]
    fn url_endpoints_lose_their_path() {
        assert_eq!(
            shown_endpoint(
                "https",
                "https://events.example.com/integration/SECRET/enqueue"
            ),
            "https://events.example.com/…"
        );
        assert_eq!(
            shown_endpoint("https", "https://h.example"),
            "https://h.example"
        );
        assert_eq!(shown_endpoint("email", "a@b.example"), "a@b.example");
    }
}
