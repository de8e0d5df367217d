//! `rolewatch run`: the daemon, until SIGTERM or SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::runtime::daemon::{self, Daemon};
use crate::time::SystemClock;

/// Loads the configuration and runs the daemon until a signal asks it to stop.
///
/// # Errors
///
/// An invalid configuration (exit 78), a state that cannot be opened or locked, or a failure
/// that stops the daemon.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = crate::config::load(args.config.as_deref())?;
    super::init_logging(cfg.daemon.log_format);
    super::tokio_runtime()?.block_on(async move {
        let token = CancellationToken::new();
        daemon::cancel_on_signals(token.clone(), cfg.daemon.shutdown_grace);
        let daemon = Daemon::start(&cfg, Arc::new(SystemClock)).await?;
        Arc::new(daemon).run(token).await?;
        Ok(ExitCode::SUCCESS)
    })
}
