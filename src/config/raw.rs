//! The configuration file as written: serde structs with `deny_unknown_fields`, every field
//! optional where a default exists, units in the names. [`super::validate`] turns a
//! [`RawConfig`] into a checked [`super::Config`].

use std::path::PathBuf;

use serde::Deserialize;

/// The whole file (`config/rolewatch.toml` documents every key).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where rolewatch keeps its cursors, seen event IDs and alerts.
    #[serde(default)]
    pub state: RawState,
    /// Where events come from; none configured means one CloudTrail source in us-east-1.
    #[serde(default, rename = "source")]
    pub sources: Vec<RawSource>,
    /// What to look for; none configured means the vendor's documented pattern.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RawRule>,
    /// Where alerts go; none configured means one stdout channel.
    #[serde(default, rename = "channel")]
    pub channels: Vec<RawChannel>,
    /// The vendor's role, policy and account, and your own automation (`[vendor]`).
    #[serde(default)]
    pub vendor: super::vendor::RawVendor,
    /// Changes announced in advance (`[[expect]]`).
    #[serde(default, rename = "expect")]
    pub expect: Vec<super::expect::RawExpect>,
    /// How `rolewatch run` behaves as a service: shutdown, logs, watching itself.
    #[serde(default)]
    pub daemon: RawDaemon,
    /// The admin HTTP endpoint: `/healthz`, `/readyz`, `/metrics`.
    #[serde(default)]
    pub admin: RawAdmin,
    /// The accounts to watch (`[[account]]`); none: the account of rolewatch's credentials.
    #[serde(default, rename = "account")]
    pub accounts: Vec<super::accounts::RawAccount>,
    /// The accounts of an organization, discovered and refreshed (`[organization]`).
    #[serde(default)]
    pub organization: Option<super::organization::RawOrganization>,
}

/// `[daemon]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// After SIGTERM/SIGINT: how long in-flight polls and the outbox flush may take before
    /// rolewatch exits anyway (default 20).
    pub shutdown_grace_secs: Option<u64>,
    /// `auto` (default: JSON lines when stderr is not a terminal, human text on a terminal),
    /// `json` or `text`. The level comes from `RUST_LOG` (default `info`).
    pub log_format: Option<String>,
    /// A 6-field cron schedule (with seconds, UTC) for a heartbeat notice through every
    /// channel: events seen, alerts sent, last successful poll per source. Default: none.
    pub heartbeat_schedule: Option<String>,
    /// A source whose polls fail this many times in a row is reported as "rolewatch cannot
    /// see" (default 3).
    pub blind_after_failures: Option<u32>,
    /// A source without a successful poll for this long is reported as "rolewatch cannot
    /// see", even while a poll is still retrying (default 600).
    pub blind_after_secs: Option<u64>,
    /// While a channel is failing, it is probed with its side-effect-free check (SMTP:
    /// connect, TLS, AUTH, NOOP; SNS: GetTopicAttributes) at most this many seconds apart;
    /// when a probe succeeds, every pending alert of the channel is due at once (default 15).
    pub channel_probe_secs: Option<u64>,
    /// At most this many polls (of all sources and accounts) run at once (default 50).
    pub max_concurrent_polls: Option<usize>,
}

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Serve the admin endpoints (default true).
    pub enabled: Option<bool>,
    /// `host:port` to listen on (default `127.0.0.1:9464`; loopback, no authentication).
    pub listen: Option<String>,
}

/// `[state]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// SQLite file; default `$STATE_DIRECTORY/state.db` under systemd, else the XDG state dir.
    pub path: Option<PathBuf>,
    /// How far back a brand-new state looks on its first poll.
    pub initial_lookback_secs: Option<u64>,
    /// `sqlite` (default) or `dynamodb`; the keys below are the DynamoDB backend's
    /// ([`super::state_backend`]).
    pub backend: Option<String>,
    /// `dynamodb`: the table.
    pub table: Option<String>,
    /// `dynamodb`: the table's region.
    pub region: Option<String>,
    /// `dynamodb`: how long the leader's lease lasts unrenewed (default 15).
    pub lease_secs: Option<u64>,
    /// `dynamodb`: create the table at start when it is missing (default false).
    pub create_table: Option<bool>,
}

/// `[[source]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// `cloudtrail` (LookupEvents), `cloudwatch_logs` (FilterLogEvents on the trail's group)
    /// or `sqs` (an EventBridge rule's queue).
    #[serde(rename = "type")]
    pub kind: String,
    /// A stable name for this source; the state keys its cursor by it.
    pub name: Option<String>,
    /// AWS region; IAM events are recorded in us-east-1 only.
    pub region: Option<String>,
    /// `cloudwatch_logs`: the log group the trail delivers to.
    pub log_group: Option<String>,
    /// `cloudwatch_logs`: only streams whose names start with this.
    pub log_stream_prefix: Option<String>,
    /// `sqs`: the URL of the queue the EventBridge rule delivers to.
    pub queue_url: Option<String>,
    /// `sqs`: the URL of the queue's dead-letter queue; messages in it are reported as
    /// "rolewatch cannot see".
    pub dlq_url: Option<String>,
    /// `sqs`: seconds one ReceiveMessage long poll waits (1 to 20, default 20).
    pub wait_time_secs: Option<u64>,
    /// The trail (name or ARN) that records these events: `rolewatch doctor` checks it is
    /// logging without delivery errors, and the `trail-tamper` pack watches it.
    pub trail: Option<String>,
    /// Each poll re-reads this much before the cursor, for late deliveries.
    pub overlap_secs: Option<u64>,
    /// Client-side request rate limit.
    pub max_requests_per_sec: Option<f64>,
    /// Seconds one poll (or sweep) may spend retrying failed requests, summed over its
    /// requests, before it counts as failed (default 20).
    pub retry_budget_secs: Option<u64>,
    /// When to poll: a 6-field cron expression with seconds, in UTC (default
    /// `0 * * * * *`, every minute at second 0). Exclusive with `poll_interval_secs`.
    pub schedule: Option<String>,
    /// Seconds between polls, counted from the daemon's start: the alternative to
    /// `schedule` for intervals cron cannot express (e.g. 90). Exclusive with `schedule`.
    pub poll_interval_secs: Option<u64>,
    /// Catch-up after downtime proceeds oldest first in windows of at most this length.
    pub catchup_window_secs: Option<u64>,
    /// Seconds between reconciliation sweeps: a slow re-read of the last
    /// `sweep_lookback_secs`, at lower priority than the polls, that reports events CloudTrail
    /// delivered later than `overlap_secs` (default 3600; 0 turns the sweep off).
    pub sweep_interval_secs: Option<u64>,
    /// How far back a sweep reads (default 86400 = 24 h; at most the source's retention, 90
    /// days for `cloudtrail`): an event delivered up to this late is still reported, once.
    pub sweep_lookback_secs: Option<u64>,
}

/// `[[rule]]`: either a `pattern` of your own or a built-in `pack`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Unique name; alerts carry it. Required with `pattern`; a pack's default is its own
    /// name (`complete`, …).
    pub name: Option<String>,
    /// A CloudWatch Logs filter pattern. Exclusive with `pack`.
    pub pattern: Option<String>,
    /// A built-in rule pack: `documented`, `complete` or `trail-tamper`, parameterised by
    /// `[vendor]` and the sources' `trail` and `log_group`. Exclusive with `pattern`.
    pub pack: Option<String>,
    /// `info`, `low`, `medium`, `high` or `critical` (default `high`; a pack's own default
    /// otherwise).
    pub severity: Option<String>,
    /// The channels (by name) this rule's alerts go to (default: every channel).
    pub channels: Option<Vec<String>>,
    /// The accounts (ids, as strings) whose events this rule applies to (default: every
    /// account).
    pub accounts: Option<Vec<String>>,
    /// Pack `trail-tamper`: the alarms whose deletion to watch (default: any DeleteAlarms).
    pub alarm_names: Option<Vec<String>>,
}

/// `[[channel]]` (see `super::channel` for which keys each type takes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    /// `stdout`, `sns`, `smtp`, `webhook` or `pagerduty`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A stable, unique name (default: the type); the outbox keys deliveries by it.
    pub name: Option<String>,
    /// `sns`: the topic to publish to.
    pub topic_arn: Option<String>,
    /// `sns`: the topic's region (default: the region in the ARN).
    pub region: Option<String>,
    /// `smtp`: the relay's host name.
    pub host: Option<String>,
    /// `smtp`: the relay's port (default 587, 465 for `implicit`, 25 for `none`).
    pub port: Option<u16>,
    /// `smtp`: `starttls` (default, required), `implicit`, or `none`.
    pub tls: Option<String>,
    /// `smtp`: confirms `tls = "none"`, for a loopback relay only.
    pub allow_plaintext: Option<bool>,
    /// `smtp`: the AUTH user name.
    pub username: Option<String>,
    /// `smtp`: the environment variable holding the AUTH password.
    pub password_env: Option<String>,
    /// `smtp`: the file holding the AUTH password.
    pub password_file: Option<PathBuf>,
    /// `smtp`: extra trusted CA certificates, PEM.
    pub ca_file: Option<PathBuf>,
    /// `smtp`: the sender mailbox.
    pub from: Option<String>,
    /// `smtp`: the recipient mailboxes.
    pub to: Option<Vec<String>>,
    /// `smtp`: text put before every subject, e.g. `[rolewatch prod]`.
    pub subject_prefix: Option<String>,
    /// `sns`: `alert` (default) or `chatbot`; `webhook`: `json` (default), `slack` or `teams`.
    pub format: Option<String>,
    /// `webhook`: the environment variable holding the URL (a secret).
    pub url_env: Option<String>,
    /// `webhook`: the file holding the URL (a secret).
    pub url_file: Option<PathBuf>,
    /// `webhook`: the environment variable holding the HMAC signing secret.
    pub signing_secret_env: Option<String>,
    /// `webhook`: the file holding the HMAC signing secret.
    pub signing_secret_file: Option<PathBuf>,
    /// `webhook`, `pagerduty`: connect and total timeout of one request (default 10).
    pub timeout_secs: Option<u64>,
    /// `pagerduty`: the environment variable holding the integration's routing key.
    pub routing_key_env: Option<String>,
    /// `pagerduty`: the file holding the routing key.
    pub routing_key_file: Option<PathBuf>,
    /// `pagerduty`: the Events API v2 enqueue URL (default
    /// `https://events.pagerduty.com/v2/enqueue`; for tests or the EU service region).
    pub events_url: Option<String>,
    /// Only alerts about these accounts (ids, as strings) go to this channel (default: every
    /// account's). rolewatch's own notices go to every channel.
    pub accounts: Option<Vec<String>>,
    /// Attempts for retryable errors before giving up (default: no limit).
    pub retry_max_attempts: Option<u32>,
    /// Attempts for errors a retry will not fix (default 5).
    pub permanent_max_attempts: Option<u32>,
}
