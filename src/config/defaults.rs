//! Defaults, in one place.

use std::time::Duration;

pub const REGION: &str = "us-east-1";
pub const OVERLAP: Duration = Duration::from_secs(20 * 60);
/// What one poll (or sweep) of a source may spend retrying failed requests before it counts
/// as failed (`retry_budget_secs`).
pub const RETRY_BUDGET: Duration = Duration::from_secs(20);
/// The longest retry budget: an hour, far beyond any use (the bound on the blind notice grows
/// with it).
pub const MAX_RETRY_BUDGET: Duration = Duration::from_secs(3600);
pub const INITIAL_LOOKBACK: Duration = Duration::from_secs(60 * 60);
/// Every minute, at second 0.
pub const SCHEDULE: &str = "0 * * * * *";
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// At most this many polls run at once, over all sources and accounts (`[daemon]
/// max_concurrent_polls`): with the LookupEvents limit of 2 requests/s per account, 50 polls
/// of quiet accounts at once make 1,000 accounts in about a minute.
pub const MAX_CONCURRENT_POLLS: usize = 50;
pub const BLIND_AFTER_FAILURES: u32 = 3;
pub const BLIND_AFTER: Duration = Duration::from_secs(10 * 60);
/// While a channel fails, it is probed (side-effect free) at most this far apart.
pub const CHANNEL_PROBE: Duration = Duration::from_secs(15);
/// The longest probe interval one may configure.
pub const MAX_CHANNEL_PROBE: Duration = Duration::from_secs(300);
pub const ADMIN_LISTEN: &str = "127.0.0.1:9464";
pub const CATCHUP_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// Time between reconciliation sweeps of a source.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// How far back a sweep reads.
pub const SWEEP_LOOKBACK: Duration = Duration::from_secs(24 * 60 * 60);
/// LookupEvents allows 2 requests/s per account and region, shared with every caller.
pub const CLOUDTRAIL_RPS: f64 = 1.0;
pub const CLOUDTRAIL_MAX_RPS: f64 = 2.0;
/// FilterLogEvents allows 5 requests/s per account and region.
pub const LOGS_RPS: f64 = 2.0;
pub const LOGS_MAX_RPS: f64 = 5.0;
/// How long LookupEvents keeps events.
pub const CLOUDTRAIL_RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// A poller with no `schedule` of its own beside an `sqs` source is the queue's backstop and
/// polls this often (15 min): the queue brings changes in seconds, the backstop whatever the
/// queue missed.
pub const BACKSTOP_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// `sqs`: the long-poll wait of one ReceiveMessage (SQS's maximum).
pub const SQS_WAIT: Duration = Duration::from_secs(20);
/// `sqs`: what committing one batch of 10 may take besides its retries; the queue's
/// visibility timeout must exceed the source's retry budget plus this.
pub const SQS_COMMIT_ALLOWANCE: Duration = Duration::from_secs(5);
