//! `rolewatch once`: one pass of the daemon — every source polled (and swept when due), every
//! alert delivered — then exit; for timers and cron.

use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::RunArgs;
use crate::exit::EXIT_FAILURE;
use crate::runtime::daemon::Daemon;
use crate::time::SystemClock;

/// Loads the configuration and runs one pass.
///
/// # Errors
///
/// An invalid configuration (exit 78) or a state that cannot be opened or locked; a source or
/// channel that fails is reported and makes the exit status 1.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = crate::config::load(args.config.as_deref())?;
    super::init_logging(cfg.daemon.log_format);
    super::tokio_runtime()?.block_on(async move {
        // `[organization]`: the accounts as they are now.
        let (cfg, found) = crate::runtime::organization::resolve_found(&cfg).await?;
        let daemon = Daemon::start(&cfg, Arc::new(SystemClock)).await?;
        // The accounts an earlier run watched that the organization no longer lets in.
        if let Some(found) = &found {
            daemon.report_unwatched(&found.inactive);
        }
        Ok(if daemon.once().await {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_FAILURE)
        })
    })
}
