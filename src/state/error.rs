//! [`StateError`]: everything that can go wrong with the state database, each message naming
//! the file and, where the operator has to act, what to do.

use std::io;
use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// What an operator can do with a state file rolewatch refuses to use. Starting fresh is safe
/// but loses history: the cursor goes, so the first poll reaches back only the initial lookback.
const START_FRESH: &str = "move it aside to start fresh (rolewatch will then look back only \
                           its initial lookback, 1 h by default, and events before that are \
                           not reported) or set [state] path to another file";

/// An error of the state database.
///
/// Neither `Display` nor `Debug` ever shows an event record: errors carry paths, operation
/// names and SQLite's messages (which name columns and constraints, not values).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// None of the environment variables that locate the default state file is set.
    #[error(
        "no place for the state database: none of STATE_DIRECTORY, XDG_STATE_HOME and HOME is \
         set; set one of them or configure [state] path"
    )]
    NoDefaultPath,

    /// The directory of the state file could not be created.
    #[error(
        "cannot create the directory {} for the state database {}: {source}",
        dir.display(),
        path.display()
    )]
    CreateDir {
        /// The state file.
        path: PathBuf,
        /// The directory that could not be created.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },

    /// The path names a directory or another non-file.
    #[error("the state database {} is not a regular file; {START_FRESH}", path.display())]
    NotAFile {
        /// The state file.
        path: PathBuf,
    },

    /// The file exists but cannot be opened, read or created.
    #[error(
        "cannot open the state database {}: {source}; check that the file and its directory \
         exist and are readable and writable by the user rolewatch runs as",
        path.display()
    )]
    Inaccessible {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// SQLite could open the file only for reading.
    #[error(
        "the state database {} is read-only for rolewatch; make the file and its directory \
         writable by the user rolewatch runs as",
        path.display()
    )]
    ReadOnly {
        /// The state file.
        path: PathBuf,
    },

    /// The file is not a SQLite database at all.
    #[error("{} is not a SQLite database ({detail}); {START_FRESH}", path.display())]
    NotADatabase {
        /// The state file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },

    /// The file is a SQLite database of some other program.
    #[error(
        "{} is a SQLite database but not a rolewatch state database; check [state] path, or \
         {START_FRESH}",
        path.display()
    )]
    Foreign {
        /// The state file.
        path: PathBuf,
    },

    /// SQLite reports the file as damaged.
    #[error(
        "the state database {} is corrupt ({detail}); keep a copy for diagnosis, then \
         {START_FRESH}",
        path.display()
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What `PRAGMA quick_check` or SQLite said (the first few problems).
        detail: String,
    },

    /// The file was written by a newer rolewatch.
    #[error(
        "the state database {} has schema version {found}, newer than version {known} that \
         this rolewatch knows; run the newer rolewatch that wrote it, or {START_FRESH}",
        path.display()
    )]
    TooNew {
        /// The state file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this binary knows.
        known: u32,
    },

    /// The file system does not support the write-ahead log.
    #[error(
        "the state database {} cannot use write-ahead logging (journal mode is {mode:?}); put \
         it on a local file system",
        path.display()
    )]
    NoWal {
        /// The state file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },

    /// A schema migration failed; its transaction was rolled back.
    #[error(
        "cannot upgrade the state database {} to schema version {version}: {source}; the file \
         is unchanged at the previous version",
        path.display()
    )]
    Migration {
        /// The state file.
        path: PathBuf,
        /// The version the failed migration would have reached.
        version: u32,
        /// What SQLite said.
        source: rusqlite::Error,
    },

    /// `mark_delivered` or `mark_failed` named a delivery row that does not exist.
    #[error(
        "the state database {} has no delivery of alert {alert_id} on channel {channel:?}",
        path.display()
    )]
    NoSuchDelivery {
        /// The state file.
        path: PathBuf,
        /// The alert row id.
        alert_id: i64,
        /// The channel name.
        channel: String,
    },

    /// A DynamoDB request of the shared state failed while doing `op`.
    #[error("the DynamoDB state table {table}: cannot {op}: {detail}")]
    Dynamo {
        /// The table.
        table: String,
        /// What rolewatch was doing, as a verb phrase ("commit a poll").
        op: &'static str,
        /// What DynamoDB or the SDK said (never an item's content).
        detail: String,
    },

    /// This replica's lease was taken over: its write was refused by the fence, nothing of
    /// it was recorded, and the replica is a follower now.
    #[error(
        "the DynamoDB state table {table}: cannot {op}: another replica took over the lease          (this one held fence {fence}); this replica stepped down and no longer polls"
    )]
    Fenced {
        /// The table.
        table: String,
        /// The write refused.
        op: &'static str,
        /// The fence this replica held.
        fence: u64,
    },

    /// The table was written by a newer rolewatch.
    #[error(
        "the DynamoDB state table {table} has schema version {found}, newer than version          {known} that this rolewatch knows; run the newer rolewatch that wrote it"
    )]
    DynamoTooNew {
        /// The table.
        table: String,
        /// The version in the table.
        found: u32,
        /// The newest version this binary knows.
        known: u32,
    },

    /// Any other SQLite failure while doing `op` (for example a full disk, or a lock held too
    /// long by another process). A poll commit that fails this way changed nothing.
    #[error("the state database {}: cannot {op}: {source}", path.display())]
    Sqlite {
        /// The state file.
        path: PathBuf,
        /// What rolewatch was doing, as a verb phrase ("commit a poll").
        op: &'static str,
        /// What SQLite said.
        source: rusqlite::Error,
    },
}

impl StateError {
    /// True when the failure is another process holding the database lock past the busy
    /// timeout: retrying later may succeed.
    #[must_use]
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Self::Sqlite { source, .. }
                if matches!(
                    source.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                )
        )
    }
}

/// Returns a function that turns a SQLite error during `op` on `path` into a [`StateError`],
/// recognising the failures that mean the file itself is bad (not a database, corrupt,
/// read-only, cannot be opened) wherever they surface.
pub(crate) fn sqlite(path: &Path, op: &'static str) -> impl FnOnce(rusqlite::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StateError::NotADatabase {
            path,
            detail: source.to_string(),
        },
        Some(ErrorCode::DatabaseCorrupt) => StateError::Corrupt {
            path,
            detail: source.to_string(),
        },
        Some(ErrorCode::ReadOnly) => StateError::ReadOnly { path },
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => StateError::Inaccessible {
            path,
            source: Box::new(source),
        },
        _ => StateError::Sqlite { path, op, source },
    }
}
