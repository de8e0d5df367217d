//! rolewatch watches CloudTrail for changes to a vendor's cross-account IAM role and evaluates
//! events with an in-process implementation of the CloudWatch Logs filter-pattern language (the
//! `filter-pattern` crate).
//!
//! # Layout
//!
//! Data flows one way, and the import graph says so (`tests/it/layering.rs` fails on an import
//! against it); see `docs/ARCHITECTURE.md`. From the bottom up:
//!
//! * leaves: [`time`] (the clock seam, RFC 3339), [`event`] (the raw event, its header, the
//!   window), [`exit`] (exit codes, `UsageError`), [`output`] (line-safe JSON output),
//!   [`aws`] (the SDK configuration, the one retry classifier and backoff), [`telemetry`]
//!   (pure: health, failure episodes, metrics);
//! * [`rules`]: the rule model, the vendor's documented pattern, the packs and pattern lint;
//! * [`config`]: defaults, the TOML file and `ROLEWATCH__SECTION__KEY` overrides, validated;
//! * the stages: [`source`] → [`engine`] → [`state`] → [`intel`] (change analysis) →
//!   [`notify`] (alert model, renderings, channels, the outbox);
//! * [`admin`]: `/healthz`, `/readyz`, `/metrics`, over a narrow view of the daemon;
//! * [`runtime`]: builds the pipeline and runs the stages as sibling tasks (`run`, `once`),
//!   and drains them on shutdown;
//! * [`cmd`]: one module per subcommand; [`cli`]: the command line (clap derive; its doc
//!   comments are the `--help` text).
//!
//! [`run`] dispatches a parsed command line; [`exit_code`] maps an error to the exit status.

pub mod admin;
pub mod aws;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod engine;
pub mod event;
pub mod exit;
pub mod intel;
pub mod notify;
pub mod output;
pub mod rules;
pub mod runtime;
pub mod source;
pub mod state;
pub mod telemetry;
pub mod time;

use std::process::ExitCode;

use cli::{Cli, Command};
use exit::{UsageError, EXIT_CONFIG, EXIT_FAILURE, EXIT_USAGE};

/// Runs one command line and returns the exit status it asks for.
///
/// # Errors
///
/// Any failure that stops the command; [`exit_code`] tells the status it deserves.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::TestPattern(args) => cmd::test_pattern::run(&args),
        Command::Scan(args) => cmd::scan::run(&args),
        Command::Check(args) => cmd::check::main(&args),
        Command::Run(args) => cmd::run::run(&args),
        Command::Once(args) => cmd::once::run(&args),
        Command::Baseline(args) => cmd::baseline::main(&args),
        Command::Expect(c) => cmd::expect::main(&c),
        Command::Doctor(args) => cmd::doctor::main(&args),
        Command::NotifyTest(args) => cmd::notify_test::main(&args),
        Command::ValidateConfig(args) => cmd::validate_config::run(&args),
        Command::EventbridgePattern(args) => cmd::eventbridge_pattern::run(&args),
        Command::Healthcheck(args) => cmd::healthcheck::run(&args, &mut std::io::stdout()),
    }
}

/// The exit status for an error returned by [`run`]: [`EXIT_CONFIG`] for an invalid
/// configuration, [`EXIT_USAGE`] when the error (or one of its causes) is a [`UsageError`],
/// else [`EXIT_FAILURE`].
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|cause| cause.is::<config::ConfigError>()) {
        EXIT_CONFIG
    } else if err.chain().any(|cause| cause.is::<UsageError>()) {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}
