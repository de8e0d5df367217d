//! rolewatch watches CloudTrail for changes to a vendor's cross-account IAM role and evaluates
//! events with an in-process implementation of the CloudWatch Logs filter-pattern language (the
//! `filter-pattern` crate).
//!
//! The daemon does not exist yet; what exists is the command-line side of the language: testing
//! a pattern against messages and scanning archived trail files.
//!
//! # Layout
//!
//! * [`cli`]: the command line (clap derive; its doc comments are the `--help` text).
//! * [`rules`]: the vendor's documented pattern, [`rules::DOCUMENTED_PATTERN`].
//! * [`test_pattern`]: `rolewatch test-pattern`, the local twin of `aws logs test-metric-filter`.
//! * [`scan`]: `rolewatch scan`, a fast single-threaded sweep over CloudTrail files.
//! * Coming with later issues: `config`, `source`, `engine`, `state`, `notify`, `runtime`,
//!   `admin` (see `docs/ARCHITECTURE.md`).
//!
//! [`run`] dispatches a parsed command line; [`exit_code`] maps an error to the exit status.

pub mod cli;
pub mod rules;
pub mod scan;
pub mod state;
pub mod test_pattern;

use std::fmt;
use std::process::ExitCode;

use cli::{Cli, Command};

/// Exit status for a usage or pattern error (the same status clap uses for its own usage errors).
pub const EXIT_USAGE: u8 = 2;

/// Exit status for any other failure at run time.
pub const EXIT_FAILURE: u8 = 1;

/// An error the user made on the command line, such as an invalid filter pattern: the process
/// exits with [`EXIT_USAGE`].
#[derive(Debug)]
pub struct UsageError(pub Box<dyn std::error::Error + Send + Sync + 'static>);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The inner error is already the whole message (for a pattern: three lines with the
        // caret), so it is shown as is rather than as a cause.
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for UsageError {}

/// Compiles a filter pattern given on the command line.
///
/// # Errors
///
/// A [`UsageError`] holding the rendered `ParseError` (message, pattern and caret).
pub fn compile_pattern(text: &str) -> anyhow::Result<filter_pattern::FilterPattern> {
    filter_pattern::FilterPattern::new(text).map_err(|err| UsageError(Box::new(err)).into())
}

/// Runs one command line and returns the exit status it asks for.
///
/// # Errors
///
/// Any failure that stops the command; [`exit_code`] tells the status it deserves.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::TestPattern(args) => test_pattern::run(&args),
        Command::Scan(args) => scan::run(&args),
    }
}

/// The exit status for an error returned by [`run`]: [`EXIT_USAGE`] when the error (or one of
/// its causes) is a [`UsageError`], else [`EXIT_FAILURE`].
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|cause| cause.is::<UsageError>()) {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}
