//! `rolewatch notify-test`: one clearly marked synthetic alert ("TEST — not a real change")
//! through every configured channel, each channel's result on its own line. It writes no
//! state: the test alert is sent directly, not through the outbox.

use std::io::Write;
use std::process::ExitCode;

use crate::config::{ChannelKind, Config};
use crate::notify::notifier::Notifier;
use crate::notify::synthetic;
use crate::time::{Clock, SystemClock};

/// The command: loads the configuration, then [`run`] on its own runtime.
///
/// # Errors
///
/// An invalid configuration (exit 78), or as [`run`].
pub fn main(args: &crate::cli::RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = crate::config::load(args.config.as_deref())?;
    super::init_logging(cfg.daemon.log_format);
    super::tokio_runtime()?.block_on(run(&cfg, &mut std::io::stdout()))
}

/// Sends the test alert through every channel of `cfg` and writes one result line per channel
/// to `out`: `ok <name> (<type>)[ <receipt>]` or `FAILED <name> (<type>): <error>`.
///
/// # Errors
///
/// Only when `out` cannot be written; a channel's failure is a result, and makes the exit
/// status 1.
pub async fn run(cfg: &Config, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let sns_region = cfg.channels.iter().find_map(|c| match &c.kind {
        ChannelKind::Sns(s) => Some(s.region.clone()),
        _ => None,
    });
    let sdk = match sns_region {
        Some(region) => Some(
            crate::aws::load(&region)
                .await
                .map_err(|e| format!("{e:#}")),
        ),
        None => None,
    };
    let alert = synthetic::test_alert(SystemClock.now_ms());
    let mut failed = 0;
    for c in &cfg.channels {
        let kind = c.kind.type_name();
        let notifier = match (&c.kind, &sdk) {
            (ChannelKind::Sns(_), Some(Err(e))) => Err(e.clone()),
            (_, sdk) => Notifier::build(c, sdk.as_ref().and_then(|r| r.as_ref().ok()))
                .map_err(|e| e.message),
        };
        let result = match notifier {
            Ok(n) => n
                .send(&alert)
                .await
                .map_err(|e| format!("{e} ({})", e.class())),
            Err(e) => Err(e),
        };
        match result {
            Ok(d) => {
                let receipt = d.receipt.map(|r| format!(" {r}")).unwrap_or_default();
                writeln!(out, "ok {} ({kind}){receipt}", c.name)?;
                tracing::info!(event = "notify_test_sent", channel = %c.name, "Sent the test alert");
            }
            Err(e) => {
                failed += 1;
                writeln!(out, "FAILED {} ({kind}): {e}", c.name)?;
                tracing::error!(event = "notify_test_failed", channel = %c.name, error = %e, "The test alert was not accepted");
            }
        }
        out.flush()?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::EXIT_FAILURE)
    })
}
