//! Exit statuses are part of the command-line API: a leaf every command shares.
//!
//! * [`EXIT_USAGE`] (2): a usage or pattern error, as clap uses for its own usage errors;
//! * [`EXIT_CONFIG`] (78, `EX_CONFIG`): an invalid configuration, before any side effect;
//! * [`EXIT_FAILURE`] (1): any other failure at run time.
//!
//! `rolewatch::exit_code` (at the top, in `lib.rs`) maps an error returned by a command to its
//! status by the typed causes in its chain: [`UsageError`] and `config::ConfigError`.

use std::fmt;

/// Exit status for a usage or pattern error (the same status clap uses for its own usage errors).
pub const EXIT_USAGE: u8 = 2;

/// Exit status for any other failure at run time.
pub const EXIT_FAILURE: u8 = 1;

/// Exit status for an invalid configuration (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: u8 = 78;

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
