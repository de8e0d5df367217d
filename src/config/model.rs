//! The validated configuration: what every other module reads.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::{defaults, ChannelConfig, VendorConfig};
use crate::rules::Rule;

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    pub state: StateConfig,
    pub sources: Vec<SourceConfig>,
    pub rules: Vec<Rule>,
    /// Where alerts go; never empty (the default is one stdout channel).
    pub channels: Vec<ChannelConfig>,
    /// The vendor's role, policy and account (`[vendor]`).
    pub vendor: VendorConfig,
    /// Changes announced in advance (`[[expect]]`).
    pub expect: Vec<super::Expectation>,
    pub daemon: DaemonConfig,
    pub admin: AdminConfig,
    /// `[[account]]`: empty when rolewatch watches only the account of its credentials.
    pub accounts: Vec<super::AccountConfig>,
    /// `[organization]`: accounts discovered with ListAccounts, refreshed.
    pub organization: Option<super::OrganizationConfig>,
    /// The sources as configured, before each `cloudtrail` source was expanded per account
    /// (what [`Config::with_accounts`] expands again for the discovered accounts).
    pub source_templates: Vec<SourceConfig>,
}

/// When a source is polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A 6-field cron expression (seconds first), UTC, checked to parse.
    Cron(String),
    /// A fixed interval from the daemon's start (`poll_interval_secs`).
    Every(Duration),
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron(c) => write!(f, "cron `{c}`"),
            Schedule::Every(d) => write!(f, "every {} s", d.as_secs()),
        }
    }
}

/// How the log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, text on a terminal.
    Auto,
    Json,
    Text,
}

/// `[daemon]`, checked.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    /// A cron expression, checked to parse.
    pub heartbeat_schedule: Option<String>,
    pub blind_after_failures: u32,
    pub blind_after: Duration,
    /// The longest wait between two probes of a failing channel.
    pub channel_probe: Duration,
    /// The most polls (of all sources and accounts) that run at once.
    pub max_concurrent_polls: usize,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            log_format: LogFormat::Auto,
            heartbeat_schedule: None,
            blind_after_failures: defaults::BLIND_AFTER_FAILURES,
            blind_after: defaults::BLIND_AFTER,
            channel_probe: defaults::CHANNEL_PROBE,
            max_concurrent_polls: defaults::MAX_CONCURRENT_POLLS,
        }
    }
}

/// `[admin]`, checked.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `None` when disabled.
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct StateConfig {
    /// `None`: the default place (see `state::default_path`).
    pub path: Option<PathBuf>,
    pub initial_lookback: Duration,
    /// SQLite (the default) or DynamoDB.
    pub backend: super::state_backend::StateBackend,
}

/// Which API a source polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    CloudTrail,
    CloudWatchLogs {
        log_group: String,
        log_stream_prefix: Option<String>,
    },
    /// An SQS queue an EventBridge rule delivers CloudTrail events to (seconds, best effort);
    /// the pollers beside it are its backstop.
    Sqs {
        queue_url: String,
        /// The queue's dead-letter queue, watched for messages rolewatch could not read.
        dlq_url: Option<String>,
        /// Long-poll wait of one ReceiveMessage (1 to 20 s).
        wait_time: Duration,
    },
}

impl SourceKind {
    /// `cloudtrail`, `cloudwatch_logs` or `sqs`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::CloudTrail => "cloudtrail",
            SourceKind::CloudWatchLogs { .. } => "cloudwatch_logs",
            SourceKind::Sqs { .. } => "sqs",
        }
    }

    /// Whether this is a queue (pushed events) rather than a poller.
    #[must_use]
    pub fn is_queue(&self) -> bool {
        matches!(self, SourceKind::Sqs { .. })
    }
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Unique; the state keys the cursor by it.
    pub id: String,
    pub kind: SourceKind,
    pub region: String,
    pub overlap: Duration,
    pub max_requests_per_sec: f64,
    /// What one fetch may spend retrying failed requests before it counts as failed.
    pub retry_budget: Duration,
    pub schedule: Schedule,
    pub catchup_window: Duration,
    /// Time between reconciliation sweeps; `None`: no sweep.
    pub sweep_interval: Option<Duration>,
    /// How far back a sweep reads.
    pub sweep_lookback: Duration,
    /// The trail (name or ARN) that records these events, if named.
    pub trail: Option<String>,
    /// A poller beside an `sqs` source: its finds are ones the queue missed.
    pub backstop: bool,
    /// The `[[account]]` (its id) this source reads with that account's credentials; `None`:
    /// rolewatch's own credentials, no `[[account]]` configured.
    pub account: Option<String>,
}
