//! `rolewatch baseline`: take a snapshot of the vendor's role now and print it as JSON; with
//! `--record`, also record it in the state as the new baseline (after an approved change).

use std::io::Write;
use std::process::ExitCode;

use crate::config::Config;
use crate::intel::baseline;
use crate::intel::iam::AwsIam;

/// The command: loads the configuration, then [`run`] on its own runtime.
///
/// # Errors
///
/// An invalid configuration (exit 78), or as [`run`].
pub fn main(args: &crate::cli::BaselineArgs) -> anyhow::Result<ExitCode> {
    let cfg = crate::config::load(args.config.as_deref())?;
    super::tokio_runtime()?.block_on(run(&cfg, args.record, &mut std::io::stdout()))
}

/// Prints the snapshot (and records it with `record`).
///
/// # Errors
///
/// No credentials, IAM errors (the role cannot be read), a state that cannot be opened or
/// written, or stdout closed.
pub async fn run(cfg: &Config, record: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let sdk = crate::aws::load(crate::config::defaults::REGION).await?;
    let iam = AwsIam::new(&sdk);
    let now = crate::time::Clock::now_ms(&crate::time::SystemClock);
    let snap = tokio::time::timeout(
        crate::intel::analysis::DEFAULT_BUDGET * 3,
        baseline::snapshot(&iam, &cfg.vendor, now),
    )
    .await
    .map_err(|_| anyhow::anyhow!("IAM did not answer within 30 s"))?
    .map_err(|e| anyhow::anyhow!("cannot read the role {}: {e}", cfg.vendor.role_name))?;
    let json = serde_json::to_string_pretty(&snap)?;
    if record {
        let (mut state, _lock) = crate::state::open_locked(cfg)?;
        state.put_baseline(
            &snap.role_name,
            snap.taken_ms,
            &serde_json::to_string(&snap)?,
        )?;
    }
    writeln!(out, "{json}")?;
    Ok(ExitCode::SUCCESS)
}
