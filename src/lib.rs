//! rolewatch watches CloudTrail for changes to a vendor's cross-account IAM role and evaluates
//! events with an in-process implementation of the CloudWatch Logs filter-pattern language (the
//! `filter-pattern` crate).
//!
//! # Layout
//!
//! Data flows one way: [`source`] → [`engine`] → [`state`] → [`notify`], driven by
//! [`runtime`] (`run`, `once`); see `docs/ARCHITECTURE.md`.
//!
//! * [`cli`]: the command line (clap derive; its doc comments are the `--help` text).
//! * [`config`]: defaults, the TOML file and `ROLEWATCH__SECTION__KEY` overrides, validated.
//! * [`rules`]: the vendor's documented pattern, the rule packs and pattern lint.
//! * [`source`], [`engine`], [`state`], [`notify`], [`intel`], [`runtime`]: the daemon.
//! * [`admin`]: the admin HTTP endpoint of `rolewatch run`: `/healthz`, `/readyz`, `/metrics`.
//! * [`test_pattern`], [`scan`], [`check`], [`doctor`], [`healthcheck`]: the other commands.
//!
//! [`run`] dispatches a parsed command line; [`exit_code`] maps an error to the exit status.

pub mod admin;
pub mod aws;
pub mod check;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod engine;
pub mod healthcheck;
pub mod intel;
pub mod notify;
pub mod output;
pub mod rules;
pub mod runtime;
pub mod scan;
pub mod source;
pub mod state;
pub mod test_pattern;

use std::fmt;
use std::io::Write;
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
        Command::Check(args) => {
            init_logging(config::LogFormat::Text);
            tokio_runtime()?.block_on(check::run(&args))
        }
        Command::Run(args) => {
            let cfg = config::load(args.config.as_deref())?;
            init_logging(cfg.daemon.log_format);
            tokio_runtime()?.block_on(async move {
                let token = tokio_util::sync::CancellationToken::new();
                runtime::daemon::cancel_on_signals(token.clone(), cfg.daemon.shutdown_grace);
                let daemon = runtime::daemon::Daemon::start(
                    &cfg,
                    std::sync::Arc::new(runtime::clock::SystemClock),
                )
                .await?;
                std::sync::Arc::new(daemon).run(token).await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Baseline(args) => {
            let cfg = config::load(args.config.as_deref())?;
            tokio_runtime()?.block_on(intel::command::run(
                &cfg,
                args.record,
                &mut std::io::stdout(),
            ))
        }
        Command::Doctor(args) => {
            let cfg = config::load(args.config.as_deref())?;
            init_logging(config::LogFormat::Text);
            tokio_runtime()?.block_on(doctor::run(&cfg, &mut std::io::stdout()))
        }
        Command::NotifyTest(args) => {
            let cfg = config::load(args.config.as_deref())?;
            init_logging(cfg.daemon.log_format);
            tokio_runtime()?.block_on(notify::notify_test::run(&cfg, &mut std::io::stdout()))
        }
        Command::ValidateConfig(args) => {
            let cfg = config::load(args.config.as_deref())?;
            let from = cfg.file.as_deref().map_or_else(
                || "the built-in defaults".to_owned(),
                |p| p.display().to_string(),
            );
            let mut out = std::io::stdout().lock();
            match write!(
                out,
                "# The configuration in {from} is valid. The effective configuration follows:\n\
                 # defaults filled in, ROLEWATCH__SECTION__KEY overrides applied; passwords are\n\
                 # never shown, only the variable or file that holds them. It is itself a valid\n\
                 # configuration file.\n\n{}",
                config::effective::to_toml(&cfg)
            )
            .and_then(|()| {
                // Pattern lint goes to stderr: the stdout stays a valid configuration file.
                let mut err = std::io::stderr().lock();
                for (what, finding) in cfg.lint() {
                    writeln!(err, "rolewatch: {what}: {finding}")?;
                }
                Ok(())
            }) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        Command::Healthcheck(args) => healthcheck::run(&args, &mut std::io::stdout()),
        Command::Once(args) => {
            let cfg = config::load(args.config.as_deref())?;
            init_logging(cfg.daemon.log_format);
            tokio_runtime()?.block_on(async move {
                let daemon = runtime::daemon::Daemon::start(
                    &cfg,
                    std::sync::Arc::new(runtime::clock::SystemClock),
                )
                .await?;
                Ok(if daemon.once().await {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_FAILURE)
                })
            })
        }
    }
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Logs to stderr, level from `RUST_LOG` (default `info`): JSON lines (one object per event,
/// fields flattened) or human text; `auto` picks text on a terminal and JSON otherwise (a
/// journal, a container log, a pipe).
fn init_logging(format: config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_cron_scheduler=warn"));
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = match format {
        config::LogFormat::Json => true,
        config::LogFormat::Text => false,
        config::LogFormat::Auto => !tty,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder
            // An event field may hold U+2028 and the like: each log line stays one line.
            .with_writer(|| output::LineSafeWriter::new(std::io::stderr()))
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder
            .with_writer(std::io::stderr)
            .with_ansi(tty)
            .try_init()
    };
}

/// The exit status for an error returned by [`run`]: [`EXIT_USAGE`] when the error (or one of
/// its causes) is a [`UsageError`], else [`EXIT_FAILURE`].
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|cause| cause.is::<config::ConfigError>()) {
        config::EXIT_CONFIG
    } else if err.chain().any(|cause| cause.is::<UsageError>()) {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}
