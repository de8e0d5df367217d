//! The command line, declared with clap's derive API.
//!
//! The doc comments on these types are the `--help` text, so they are written for the person
//! running the binary, not for the person reading the code.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Watches a vendor's cross-account IAM role in CloudTrail and evaluates CloudWatch Logs filter
/// patterns locally.
#[derive(Debug, Parser)]
#[command(name = "rolewatch", version, about, long_about = None)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands rolewatch knows.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Test a filter pattern against log event messages, like `aws logs test-metric-filter`.
    ///
    /// Prints `{"matches":[{"eventNumber":N,"eventMessage":"…","extractedValues":{…}}]}` on
    /// stdout: only the matching messages, in input order, numbered from 1. Exit status: 0 when
    /// the pattern is valid (whether or not anything matched), 2 when the pattern is invalid
    /// (the reason, with a caret under the column, goes to stderr), 1 when the messages cannot be
    /// read. `--compare-aws` also asks CloudWatch Logs `TestMetricFilter` and reports every
    /// difference (its own output and exit status: see that flag).
    TestPattern(TestPatternArgs),
    /// Scan CloudTrail files for the events a filter pattern matches.
    ///
    /// Reads CloudTrail log files as delivered to S3 (`{"Records":[…]}`), JSON arrays of
    /// records and JSON-lines files, each optionally gzip-compressed (detected by content, not
    /// by name), and directories recursively (files ending in .json, .jsonl, .ndjson or .log,
    /// each optionally followed by .gz; CloudTrail-Digest files are skipped). Every matching
    /// record is printed on stdout as one compact JSON line, in input order; a summary goes to
    /// stderr. Malformed files and records are reported with file:line, counted and skipped.
    /// Exit status: 0 when the scan ran (even with malformed records), 2 on a usage or pattern
    /// error, 1 when a path could not be read at all (the other paths are still scanned).
    Scan(ScanArgs),
    /// Poll the configured sources once over a window and print each match; read-only.
    ///
    /// Prints one JSON line per match: `{"rule","severity","eventID","eventName","eventTime",
    /// "source","record"}`. Touches no state and sends nothing. Uses the standard AWS
    /// credential chain and honours `AWS_ENDPOINT_URL_CLOUDTRAIL` /
    /// `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`. Exit status: 0 when every source was read, 1 when
    /// one failed, 2 on a usage error, 78 on an invalid configuration.
    Check(CheckArgs),
    /// Run the daemon: poll every source on its interval, keep durable state, print new
    /// alerts on stdout as JSON lines. Stops on SIGTERM or SIGINT.
    Run(RunArgs),
    /// One full poll → commit → notify cycle of every source, then exit; for cron or a
    /// systemd timer. Exit status 1 when a source or a channel failed.
    Once(RunArgs),
    /// Check a configuration without touching the network, AWS credentials or the state.
    ///
    /// Prints the effective configuration (defaults filled in; passwords are never in it — only
    /// the name of the variable or file that holds them) and exits 0, or lists every problem
    /// with its key and file and exits 78.
    ValidateConfig(RunArgs),
    /// Print the EventBridge event pattern for the rule feeding an `sqs` source, derived from
    /// the configured rules and never narrower than they are (event sources and names are
    /// pinned only when every rule pins them). No network. Exit status 0, or 78 on an invalid
    /// configuration.
    EventbridgePattern(RunArgs),
    /// Send a clearly marked test alert ("TEST — not a real change") through every
    /// configured channel, and print each channel's result.
    ///
    /// One line per channel on stdout: `ok NAME (TYPE) [RECEIPT]` or `FAILED NAME (TYPE):
    /// ERROR`. Nothing is written to the state. Exit status: 0 when every channel accepted
    /// the alert, 1 when one failed, 78 on an invalid configuration.
    NotifyTest(RunArgs),
    /// Take a snapshot of the vendor's role now — attached and inline policies with their
    /// documents, the trust policy, the vendor's managed policy's default version — and print
    /// it as JSON. Read-only IAM calls; with `--record`, the snapshot also becomes the
    /// baseline in the state (after you approved a change). Exit status: 0 when the role was
    /// read, 1 when not, 78 on an invalid configuration.
    Baseline(BaselineArgs),
    /// Record a change the vendor announced (`[[expect]]`), hash a policy document for it, or
    /// list the entries and their windows.
    ///
    /// An alert for a change that matches an entry is still recorded and delivered, marked
    /// EXPECTED with the entry's description; it goes out at severity `info` unless it widens
    /// access beyond what the entry names (see the README, "Expected changes").
    #[command(subcommand)]
    Expect(ExpectCommand),
    /// Check the environment this configuration needs, read-only: AWS credentials and the
    /// caller's identity, each source reachable, each named trail's status (logging, delivery
    /// errors), each channel (SNS topic and its subscriptions, pending ones flagged; SMTP
    /// connect, TLS and AUTH, no mail sent), the state's directory and file, and the vendor's
    /// role now against the stored baseline.
    ///
    /// One line per check on stdout, `ok|WARN|FAIL  CHECK: DETAIL`, with indented details, then
    /// a summary. Sends nothing, creates and migrates no state; every network check is bounded
    /// by a timeout. Exit status: 0 when no check failed (warnings allowed), 1 when one failed,
    /// 78 on an invalid configuration.
    Doctor(RunArgs),
    /// Probe the daemon's admin endpoint, for a container HEALTHCHECK (the image has no
    /// shell or curl).
    ///
    /// GETs `/healthz` (or `/readyz` with `--ready`) on the configured `[admin] listen`
    /// address, or `--url`. Prints `ok 200 URL` or `FAILED …` with the response body. Exit
    /// status: 0 on 200, 1 otherwise (refused, timed out, 503), 2 on a usage error, 78 on an
    /// invalid configuration or a disabled admin endpoint.
    Healthcheck(HealthcheckArgs),
}

/// Arguments of `rolewatch check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The configuration file (TOML). Without it: the built-in defaults (CloudTrail in
    /// us-east-1, the vendor's documented rule).
    #[arg(long, value_name = "FILE", env = "ROLEWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// How far back from now to look, e.g. `90m`, `6h`, `7d` (default 1h).
    #[arg(long, value_name = "DURATION", conflicts_with = "start")]
    pub since: Option<String>,
    /// Start of the window, RFC 3339 (e.g. 2024-05-01T12:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// End of the window, RFC 3339 (default: now).
    #[arg(long, value_name = "TIME", requires = "start")]
    pub end: Option<String>,
}

/// Arguments of `rolewatch baseline`.
#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// The configuration file (TOML). Without it: the built-in defaults. Either way,
    /// `ROLEWATCH__SECTION__KEY` variables override single keys (e.g.
    /// `ROLEWATCH__DAEMON__LOG_FORMAT=json`).
    #[arg(long, value_name = "FILE", env = "ROLEWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Also record the snapshot in the state as the new baseline (stop the daemon first: it
    /// holds the state's lock).
    #[arg(long)]
    pub record: bool,
    /// With `[[account]]`s or `[organization]`: only this account (its id). Without it, the
    /// role inside every account, printed as one JSON object keyed by account id.
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
}

/// `rolewatch expect …`
#[derive(Debug, Subcommand)]
pub enum ExpectCommand {
    /// Append an `[[expect]]` entry to the configuration file (checked first: the file is
    /// rewritten only when the whole configuration stays valid), or print it with `--print`.
    /// Exit status: 0 when added (or printed), 2 on a usage error, 78 when the entry or the
    /// configuration would be invalid.
    Add(Box<ExpectAddArgs>),
    /// Print the SHA-256 of a policy document in the canonical form `document_sha256`
    /// compares (keys sorted, no blanks): a JSON policy, a percent-encoded one, or the output
    /// of `aws iam get-policy-version` (its `PolicyVersion.Document`). Exit status: 0, or 1
    /// when the file is not a policy document.
    Hash {
        /// The policy document file (`-` for standard input).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// List the configured entries: window, state (active, upcoming, past) and what each
    /// names. Exit status: 0, or 78 on an invalid configuration.
    List {
        /// The configuration file (TOML).
        #[arg(long, value_name = "FILE", env = "ROLEWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Arguments of `rolewatch expect add`.
#[derive(Debug, Args)]
pub struct ExpectAddArgs {
    /// The configuration file to append to (TOML).
    #[arg(long, value_name = "FILE", env = "ROLEWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the entry on stdout instead of adding it to the file.
    #[arg(long)]
    pub print: bool,
    /// What was announced, by whom and where (shown in the alert), e.g.
    /// "Astronomer notice of 2026-11-26, ticket OPS-4711: adds ec2:CreateVolume".
    #[arg(long, value_name = "TEXT")]
    pub description: String,
    /// Start of the window, RFC 3339 (default: now).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the window, RFC 3339.
    #[arg(
        long,
        value_name = "TIME",
        conflicts_with = "days",
        required_unless_present = "days"
    )]
    pub until: Option<String>,
    /// Length of the window in days from `--from` (at most 90).
    #[arg(long, value_name = "N")]
    pub days: Option<u32>,
    /// A CloudTrail event name the announcement covers (repeatable; default: any).
    #[arg(long = "event", value_name = "NAME")]
    pub events: Vec<String>,
    /// The policy changed: a managed policy's name or ARN, or an inline policy's name.
    #[arg(long, value_name = "NAME|ARN")]
    pub policy: Option<String>,
    /// The version that becomes the default, e.g. v5.
    #[arg(long, value_name = "VERSION")]
    pub default_version: Option<String>,
    /// The announced policy document (as for `rolewatch expect hash`): its hash is recorded,
    /// and a widening to exactly that document goes out as `info`.
    #[arg(long, value_name = "FILE")]
    pub document: Option<PathBuf>,
    /// Who makes the change: vendor (default), yours, aws-service, or any.
    #[arg(long, value_name = "CLASS", default_value = "vendor")]
    pub actor_class: String,
    /// An ARN glob of the principal making the change (repeatable).
    #[arg(long = "principal", value_name = "GLOB")]
    pub principals: Vec<String>,
}

/// Arguments of `rolewatch healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The configuration file (TOML), for `[admin] listen`. Without it: the built-in
    /// default, 127.0.0.1:9464.
    #[arg(long, value_name = "FILE", env = "ROLEWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// The URL to probe instead (the configuration is then not read), e.g.
    /// `http://127.0.0.1:9464/healthz`.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Probe `/readyz` (every source polled recently) instead of `/healthz` (alive).
    #[arg(long, conflicts_with = "url")]
    pub ready: bool,
    /// Give up after this many seconds (default 5).
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub timeout_secs: u64,
}

/// Arguments of `rolewatch run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file (TOML). Without it: the built-in defaults. Either way,
    /// `ROLEWATCH__SECTION__KEY` variables override single keys (e.g.
    /// `ROLEWATCH__DAEMON__LOG_FORMAT=json`).
    #[arg(long, value_name = "FILE", env = "ROLEWATCH_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Arguments of `rolewatch test-pattern`.
#[derive(Debug, Args)]
pub struct TestPatternArgs {
    /// The filter pattern to test. It may be empty (matches every message) or begin with `-`.
    #[arg(long, value_name = "PATTERN", allow_hyphen_values = true)]
    pub filter_pattern: String,

    /// The log event messages to test, in order. Every argument after this flag is a message,
    /// even one that starts with `-`, `[` or `{`.
    #[arg(
        long,
        value_name = "MESSAGE",
        num_args = 1..,
        allow_hyphen_values = true,
        required_unless_present = "log_event_file",
        conflicts_with = "log_event_file"
    )]
    pub log_event_messages: Vec<String>,

    /// Read the messages from a file instead, one message per line (`-` reads stdin). A
    /// trailing carriage return is stripped from each line.
    #[arg(long, value_name = "FILE")]
    pub log_event_file: Option<PathBuf>,

    /// Also send the pattern and messages to CloudWatch Logs `TestMetricFilter` and compare.
    ///
    /// Uses the standard AWS credential chain (the caller needs `logs:TestMetricFilter`) and
    /// honours `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`. Sends at most 50 messages per call, the
    /// API's limit; empty messages are not sent (the API takes none) and are reported as not
    /// compared. Prints `{"agree","local","service","differences","notCompared"}` on stdout
    /// and one line per difference (which message, which part: match, extractedValues,
    /// eventMessage, or the pattern's validity) on stderr. Exit status: 0 both accept the
    /// pattern and agree on every message; 1 any difference, or the service could not be
    /// asked (then stderr says so and stdout is empty); 2 both reject the pattern, or a usage
    /// error.
    #[arg(long)]
    pub compare_aws: bool,

    /// The AWS region of `--compare-aws`. Default: the standard chain (`AWS_REGION`, the
    /// profile's region).
    #[arg(long, value_name = "REGION", requires = "compare_aws")]
    pub region: Option<String>,
}

/// Arguments of `rolewatch scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The filter pattern to apply. Default: the vendor's documented pattern for the
    /// Astronomer cross-account role (see `rolewatch::rules::DOCUMENTED_PATTERN`).
    #[arg(long, value_name = "PATTERN", allow_hyphen_values = true)]
    pub filter_pattern: Option<String>,

    /// Fully parse every JSON line, so that a malformed line is reported even when it cannot
    /// match. Slower: by default only the lines the pattern's literal prefilter lets through are
    /// parsed, and the others only get a cheap shape check (`{` … `}`).
    #[arg(long)]
    pub validate: bool,

    /// Files and directories to scan, in this order.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
}
