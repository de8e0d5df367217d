//! `rolewatch baseline`: take a snapshot of the vendor's role now and print it as JSON; with
//! `--record`, also record it in the state as the new baseline (after an approved change).

use std::io::Write;

use futures_util::StreamExt;
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
    super::tokio_runtime()?.block_on(async {
        // `[organization]`: every account it lets in now.
        let cfg = crate::runtime::organization::resolve(&cfg).await?;
        run(
            &cfg,
            args.record,
            args.account.as_deref(),
            &mut std::io::stdout(),
        )
        .await
    })
}

/// Accounts snapshotted at once.
const AT_ONCE: usize = 8;

/// Prints the snapshot (and records it with `record`). With accounts: the role inside each
/// account (or only `only`), through the account's credentials, as one JSON object keyed by
/// account id; an account whose role cannot be read has `{"error": …}` and makes the exit
/// status 1, the others are printed (and recorded) all the same.
///
/// # Errors
///
/// No credentials, IAM errors (the role cannot be read; without accounts), an unknown
/// `only`, a state that cannot be opened or written, or stdout closed.
pub async fn run(
    cfg: &Config,
    record: bool,
    only: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let sdk = crate::aws::load(crate::config::defaults::REGION).await?;
    if cfg.accounts.is_empty() {
        if let Some(id) = only {
            return Err(crate::exit::UsageError(
                format!("--account {id}: the configuration has no [[account]] or [organization]")
                    .into(),
            )
            .into());
        }
        let iam = AwsIam::new(&sdk);
        let snap = snapshot(&iam, cfg)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
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
        return Ok(ExitCode::SUCCESS);
    }
    let accounts: Vec<&crate::config::AccountConfig> = cfg
        .accounts
        .iter()
        .filter(|a| only.is_none_or(|id| a.id == id))
        .collect();
    if let (Some(id), true) = (only, accounts.is_empty()) {
        return Err(crate::exit::UsageError(
            format!("--account {id}: no such account in the configuration or the organization")
                .into(),
        )
        .into());
    }
    // As the daemon reads them: one IAM client, each account's credentials per request.
    let (shared, credentials) =
        crate::runtime::build::reach_accounts(&sdk, accounts.iter().copied());
    let iam = AwsIam::with_accounts(
        &shared,
        accounts
            .iter()
            .map(|a| a.id.as_str())
            .zip(credentials.iter()),
    );
    let snaps: Vec<(String, Result<baseline::Baseline, String>)> =
        futures_util::stream::iter(&accounts)
            .map(|a| {
                let iam = &iam;
                async move {
                    let snap = match crate::intel::iam::IamReader::for_account(iam, &a.id) {
                        Some(inside) => snapshot(&inside, cfg).await,
                        None => Err(format!("no IAM reader for account {}", a.id)),
                    };
                    (a.id.clone(), snap)
                }
            })
            .buffered(AT_ONCE)
            .collect()
            .await;
    let mut failed = 0;
    let mut printed = serde_json::Map::new();
    let mut state = None;
    for (id, snap) in &snaps {
        match snap {
            Ok(snap) => {
                if record {
                    if state.is_none() {
                        state = Some(crate::state::open_locked(cfg)?);
                    }
                    if let Some((state, _)) = state.as_mut() {
                        state.put_baseline(
                            &crate::config::accounts::source_id(&snap.role_name, id),
                            snap.taken_ms,
                            &serde_json::to_string(snap)?,
                        )?;
                    }
                }
                printed.insert(id.clone(), serde_json::to_value(snap)?);
            }
            Err(e) => {
                failed += 1;
                tracing::error!(account = %id, "{e}");
                printed.insert(id.clone(), serde_json::json!({ "error": e }));
            }
        }
    }
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&serde_json::Value::Object(printed))?
    )?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::EXIT_FAILURE)
    })
}

/// The role's snapshot through `iam`, bounded; the error as a sentence.
async fn snapshot<R: crate::intel::iam::IamReader>(
    iam: &R,
    cfg: &Config,
) -> Result<baseline::Baseline, String> {
    let now = crate::time::Clock::now_ms(&crate::time::SystemClock);
    tokio::time::timeout(
        crate::intel::analysis::DEFAULT_BUDGET * 3,
        baseline::snapshot(iam, &cfg.vendor, now),
    )
    .await
    .map_err(|_| "IAM did not answer within 30 s".to_owned())?
    .map_err(|e| format!("cannot read the role {}: {e}", cfg.vendor.role_name))
}
