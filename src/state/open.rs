//! Opening the state for a command or the daemon: where it lives, and the lock that keeps one
//! rolewatch per state.

use std::path::PathBuf;

use anyhow::Context;

use super::{State, StateError};
use crate::config::Config;

/// Where the state lives: the configured path, or the default place.
///
/// # Errors
///
/// When no default place can be worked out.
pub fn state_path(cfg: &Config) -> Result<PathBuf, StateError> {
    match &cfg.state.path {
        Some(p) => Ok(p.clone()),
        None => super::default_path(),
    }
}

/// Opens the state, saying clearly when it is new.
///
/// # Errors
///
/// A corrupt, unreadable or too-new database: the error names the file and what to do.
pub fn open_locked(cfg: &Config) -> anyhow::Result<(State, std::fs::File)> {
    if let crate::config::StateBackend::DynamoDb(d) = &cfg.state.backend {
        anyhow::bail!(
            "this command works on a SQLite state only, and the configured state is the DynamoDB table {} ([state] backend = \"dynamodb\")",
            d.table
        );
    }
    let path = state_path(cfg)?;
    let opened = State::open(&path)?;
    // One rolewatch per state: a second would send the same pending alerts again.
    let lock_path = path.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open the lock file {}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another rolewatch is using the state {} (it holds {}): stop it first, or give this one its own [state] path",
            path.display(),
            lock_path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(anyhow::Error::new(e).context(format!("cannot lock {}", lock_path.display())))
        }
    }
    if opened.is_fresh() {
        tracing::warn!(
            path = %path.display(),
            lookback_secs = cfg.state.initial_lookback.as_secs(),
            "Started with a new, empty state: each source's first poll looks back only the initial lookback"
        );
    } else {
        tracing::info!(path = %path.display(), "Opened the state");
    }
    Ok((opened.into_state(), lock))
}
