//! `rolewatch doctor`: checks the environment a configuration needs, read-only, and prints one
//! line per check: `ok|WARN|FAIL  <check>: <detail>`, with indented detail lines below.
//!
//! In this order: AWS credentials and the caller's identity (STS `GetCallerIdentity`); with
//! `[organization]`, the listing of its accounts; each account (`accounts`: reached through
//! its credentials, its CloudTrail sources, the vendor's role inside it); each other
//! source reachable (one small `LookupEvents`, or `DescribeLogGroups` + `FilterLogEvents`);
//! the status of each trail a source names (`GetTrailStatus`); each channel (SNS: the topic
//! and its subscriptions, pending ones flagged; SMTP: connect, TLS, AUTH, NOOP — the
//! channel's own side-effect-free [`Notifier::check`](crate::notify::notifier::Notifier::check);
//! stdout); the state's directory and file; and the vendor's role as IAM describes it now,
//! compared with the baseline stored in the state.
//!
//! Doctor changes nothing: it sends no alert, creates no state file or directory (a temporary
//! file proves the directory writable and is removed at once), never migrates a state, and
//! makes only read-only AWS calls. Every network check is bounded by [`CHECK_TIMEOUT`], and a
//! failed check does not stop the others; the checks that need AWS credentials say
//! `skipped: no credentials` when there are none.

mod accounts;
mod checks;
mod role;
mod state;

use std::fmt;
use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::config::Config;
use crate::time::{Clock, SystemClock};

/// The longest any one network check may take (IAM's snapshot, several calls, gets twice).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Ok,
    /// Works, but someone should look (a pending subscription, a missing optional permission).
    Warn,
    /// Broken: rolewatch cannot see, or cannot tell anyone.
    Fail,
}

impl Status {
    /// `ok`, `WARN` or `FAIL`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The outcome of one check: a headline and detail lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub status: Status,
    /// What was checked, e.g. `source cloudtrail (cloudtrail, us-east-1)`.
    pub check: String,
    pub detail: String,
    /// Shown indented under the headline.
    pub lines: Vec<String>,
}

impl Finding {
    fn new(status: Status, check: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            status,
            check: check.into(),
            detail: detail.into(),
            lines: Vec::new(),
        }
    }

    /// Adds a detail line.
    fn line(&mut self, text: impl Into<String>) {
        self.lines.push(text.into());
    }

    /// Raises the status to at least `status`.
    fn raise(&mut self, status: Status) {
        self.status = self.status.max(status);
    }

    /// A check that needs AWS credentials, when there are none.
    fn skipped(check: impl Into<String>) -> Finding {
        Finding::new(Status::Warn, check, "skipped: no credentials")
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<4}  {}: {}", self.status, self.check, self.detail)?;
        for line in &self.lines {
            write!(f, "\n        {line}")?;
        }
        Ok(())
    }
}

/// The command: loads the configuration, then [`run`] on its own runtime.
///
/// # Errors
///
/// An invalid configuration (exit 78), or as [`run`].
pub fn main(args: &crate::cli::RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = crate::config::load(args.config.as_deref())?;
    crate::cmd::init_logging(crate::config::LogFormat::Text);
    crate::cmd::tokio_runtime()?.block_on(run(&cfg, &mut std::io::stdout()))
}

/// Runs every check of `cfg`, writing each finding to `out` as soon as it is known, then a
/// summary line. Exit status 0 when nothing failed, 1 when a check failed.
///
/// # Errors
///
/// Only when `out` cannot be written: a failed check is a finding.
pub async fn run(cfg: &Config, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut counts = [0usize; 3];
    let mut emit = |finding: Finding, out: &mut dyn Write| -> std::io::Result<()> {
        counts[finding.status as usize] += 1;
        writeln!(out, "{finding}")?;
        out.flush()
    };
    let now_ms = SystemClock.now_ms();

    let (credentials, sdk) = checks::credentials(cfg).await;
    emit(credentials, out)?;
    // `[organization]`: the accounts as the daemon would find them now.
    let discovered;
    let cfg = match (&cfg.organization, &sdk) {
        (Some(org), Some(sdk)) => {
            let (finding, found) = organization(org, sdk).await;
            emit(finding, out)?;
            match found {
                Some(accounts) => {
                    discovered = cfg.with_accounts(accounts);
                    &discovered
                }
                None => cfg,
            }
        }
        (Some(_), None) => {
            emit(Finding::skipped("organization"), out)?;
            cfg
        }
        (None, _) => cfg,
    };
    // The state is looked at once (its finding comes out in its place below); its baselines
    // are the role's, or with accounts the role's inside each account.
    let role_keys: Vec<String> = if cfg.accounts.is_empty() {
        vec![cfg.vendor.role_name.clone()]
    } else {
        cfg.accounts
            .iter()
            .map(|a| crate::config::accounts::source_id(&cfg.vendor.role_name, &a.id))
            .collect()
    };
    let state = state::check(cfg, &role_keys);
    let mut baselines = state.baselines.into_iter();
    for finding in accounts::check(cfg, sdk.as_ref(), &mut baselines, now_ms).await {
        emit(finding, out)?;
    }
    for finding in checks::sources(cfg, sdk.as_ref(), now_ms).await {
        emit(finding, out)?;
    }
    for finding in checks::trails(cfg, sdk.as_ref(), now_ms).await {
        emit(finding, out)?;
    }
    if let Some(finding) = checks::eventbridge_trail(cfg, sdk.as_ref()).await {
        emit(finding, out)?;
    }
    for channel in &cfg.channels {
        emit(checks::channel(channel, sdk.as_ref()).await, out)?;
    }
    emit(state.finding, out)?;
    // With accounts, the role is checked inside each (above), as the daemon watches it.
    if let (true, Some(stored)) = (cfg.accounts.is_empty(), baselines.next()) {
        emit(role::check(cfg, sdk.as_ref(), stored, now_ms).await, out)?;
    }

    let [ok, warn, fail] = counts;
    writeln!(
        out,
        "doctor: {} checks: {ok} ok, {warn} WARN, {fail} FAIL",
        ok + warn + fail
    )?;
    out.flush()?;
    Ok(if fail == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::EXIT_FAILURE)
    })
}

/// The `[organization]` check: ListAccounts (every page) and the filters, as the daemon
/// lists the accounts; the accounts found, or `None` when the listing failed.
async fn organization(
    org: &crate::config::OrganizationConfig,
    sdk: &aws_config::SdkConfig,
) -> (Finding, Option<Vec<crate::config::AccountConfig>>) {
    const CHECK: &str = "organization";
    match bounded(
        CHECK_TIMEOUT * 3,
        crate::runtime::organization::discover(org, sdk),
    )
    .await
    {
        Ok(Ok(d)) => {
            let status = if d.accounts.is_empty() {
                Status::Warn
            } else {
                Status::Ok
            };
            let mut f = Finding::new(
                status,
                CHECK,
                format!(
                    "{} active account(s) let in by the filters ({} calls)",
                    d.accounts.len(),
                    d.calls
                ),
            );
            if d.accounts.is_empty() {
                f.line("only the account of rolewatch's own credentials would be read");
            }
            for (id, state) in &d.inactive {
                f.line(format!("not watched: {id} ({state})"));
            }
            (f, Some(d.accounts))
        }
        Ok(Err(e)) => {
            let mut f = Finding::new(Status::Fail, CHECK, format!("{e:#}"));
            f.line("rolewatch needs organizations:ListAccounts from the management account or a delegated administrator; the [[account]] entries are checked alone");
            (f, None)
        }
        Err(why) => (
            Finding::new(Status::Fail, CHECK, format!("Organizations: {why}")),
            None,
        ),
    }
}

/// `fut`, or a sentence saying it took longer than `limit`.
async fn bounded<T>(limit: Duration, fut: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| format!("no answer within {} s", limit.as_secs()))
}

/// An AWS call that failed: the service's error code, when it sent one, and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AwsFailure {
    code: Option<String>,
    text: String,
}

impl AwsFailure {
    fn of<E: ProvideErrorMetadata + std::error::Error + 'static>(
        call: &str,
        err: &SdkError<E, HttpResponse>,
    ) -> AwsFailure {
        match err.as_service_error() {
            Some(se) => {
                let code = se.code().map(str::to_owned);
                let text = format!(
                    "{call}: {}: {}",
                    code.as_deref().unwrap_or("error"),
                    se.message().unwrap_or("no message")
                );
                AwsFailure { code, text }
            }
            None => AwsFailure {
                code: None,
                text: format!("{call}: {}", crate::aws::error_text(err)),
            },
        }
    }

    fn timed_out(call: &str, why: &str) -> AwsFailure {
        AwsFailure {
            code: None,
            text: format!("{call}: {why}"),
        }
    }

    /// A missing permission.
    fn is_access_denied(&self) -> bool {
        self.code.as_deref().is_some_and(|c| {
            c.starts_with("AccessDenied")
                || c.starts_with("AuthorizationError")
                || c == "UnauthorizedOperation"
        })
    }

    fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

impl fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Runs an AWS call with [`CHECK_TIMEOUT`], turning both kinds of failure into an
/// [`AwsFailure`].
async fn call<T, E>(
    name: &str,
    fut: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
) -> Result<T, AwsFailure>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match bounded(CHECK_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(AwsFailure::of(name, &e)),
        Err(why) => Err(AwsFailure::timed_out(name, &why)),
    }
}

/// The account of an ARN (`arn:partition:service:region:account:…`), when it names one.
fn arn_account(arn: &str) -> Option<&str> {
    let account = arn.strip_prefix("arn:")?.split(':').nth(3)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

/// The region of an ARN, when it names one.
fn arn_region(arn: &str) -> Option<&str> {
    arn.strip_prefix("arn:")?
        .split(':')
        .nth(2)
        .filter(|r| !r.is_empty())
}

/// A time as RFC 3339 (seconds) and how long ago it was: `2026-11-25T10:00:00Z (4 min ago)`.
fn when(ms: i64, now_ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    format!(
        "{} ({})",
        humantime::format_rfc3339_seconds(at),
        ago(now_ms.saturating_sub(ms))
    )
}

/// `42 s ago`, `5 min ago`, `3 h ago`, `12 days ago`; `in the future` for a negative age.
fn ago(age_ms: i64) -> String {
    if age_ms < 0 {
        return "in the future".to_owned();
    }
    let secs = age_ms / 1000;
    match secs {
        s if s < 120 => format!("{s} s ago"),
        s if s < 120 * 60 => format!("{} min ago", s / 60),
        s if s < 48 * 3600 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// Milliseconds since `start`, for latencies.
fn elapsed_ms(start: tokio::time::Instant) -> u128 {
    start.elapsed().as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_print_status_check_detail_and_indented_lines() {
        let mut f = Finding::new(Status::Ok, "state", "writable");
        assert_eq!(f.to_string(), "ok    state: writable");
        f.line("path: /x");
        f.raise(Status::Warn);
        f.raise(Status::Ok);
        assert_eq!(f.to_string(), "WARN  state: writable\n        path: /x");
        assert_eq!(
            Finding::skipped("source a").to_string(),
            "WARN  source a: skipped: no credentials"
        );
        assert!(Status::Fail > Status::Warn && Status::Warn > Status::Ok);
    }

    #[test]
    fn arn_parts() {
        assert_eq!(
            arn_account("arn:aws:sns:us-east-1:123456789012:rolewatch-alerts"),
            Some("123456789012")
        );
        assert_eq!(
            arn_region("arn:aws:cloudtrail:eu-west-1:123456789012:trail/t"),
            Some("eu-west-1")
        );
        assert_eq!(arn_account("my-trail"), None);
        assert_eq!(arn_region("my-trail"), None);
        assert_eq!(arn_account("arn:aws:iam::aws:policy/ReadOnlyAccess"), None);
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(5_000), "5 s ago");
        assert_eq!(ago(5 * 60_000), "5 min ago");
        assert_eq!(ago(3 * 3_600_000), "3 h ago");
        assert_eq!(ago(3 * 86_400_000), "3 days ago");
        assert_eq!(ago(-1), "in the future");
        assert_eq!(when(0, 60_000), "1970-01-01T00:00:00Z (60 s ago)");
    }
}
