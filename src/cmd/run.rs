//! `rolewatch run`: the daemon, until SIGTERM or SIGINT.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::exit::EXIT_FAILURE;
use crate::runtime::shutdown;
use crate::time::SystemClock;

/// Loads the configuration and runs the daemon until a signal asks it to stop.
///
/// # Errors
///
/// An invalid configuration (exit 78), a state that cannot be opened or locked, or a failure
/// that stops the daemon. A drain that still hangs ten seconds after the grace period is
/// abandoned with exit status 1.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = crate::config::load(args.config.as_deref())?;
    super::init_logging(cfg.daemon.log_format);
    let rt = super::tokio_runtime()?;
    let outcome = rt.block_on(async move {
        let token = CancellationToken::new();
        let overdue = shutdown::cancel_on_signals(token.clone(), cfg.daemon.shutdown_grace);
        // Without `[organization]`: one daemon; with it, one per state of the organization.
        let ran = crate::runtime::organization::run(&cfg, Arc::new(SystemClock), token);
        tokio::select! {
            ran = ran => ran.map(|()| ExitCode::SUCCESS),
            waited = overdue => {
                let secs = waited.map_or(0, |d| d.as_secs());
                tracing::error!(
                    event = "shutdown_hung",
                    "Did not stop within {secs} s of the signal; exiting"
                );
                Ok(ExitCode::from(EXIT_FAILURE))
            }
        }
    });
    // A task stuck in blocking code must not keep the process alive.
    rt.shutdown_timeout(Duration::from_secs(1));
    outcome
}
