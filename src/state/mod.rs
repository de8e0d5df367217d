//! The durable state of the daemon, in one SQLite file: a cursor per source, the eventIDs seen
//! inside the overlap window, the alert history, the outbox of the notification channels and
//! the coverage gaps.
//!
//! Everything a poll learns is written by [`State::commit_poll`] in **one** transaction: the
//! seen eventIDs, the new alerts with one `pending` outbox row per channel, the gaps and the
//! cursor advance. A crash therefore leaves either the whole poll or none of it; the next poll
//! re-reads the window from the old cursor and the seen set and the unique change key
//! of `alerts` absorb the repeats. A delivery row is marked delivered only after its channel
//! accepted the alert ([`State::mark_delivered`]), so a crash can cause a resend, never a loss.
//!
//! The module is synchronous (rusqlite); async code reaches it only through [`Store`], which
//! runs each call off the async worker threads' schedule (`block_in_place`) and hands it the
//! state as a [`Backend`] (the trait the pipeline compiles against; SQLite is its one
//! implementation). It never
//! reads the clock: every timestamp is an argument, in unix milliseconds.
//!
//! Opening never silently recreates a file: one that is not a SQLite database, is corrupt, is
//! some other program's database, has a newer schema or cannot be read and written is an error
//! that names the file and what to do (see [`StateError`]). The schema lives in [`schema`].

mod backend;
pub mod dynamo;
mod error;
mod handle;
mod intel;
mod model;
mod open;
mod outbox;
mod poll;
pub mod schema;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

pub use backend::Backend;
pub use dynamo::{DynamoState, Leadership};
use error::sqlite;
pub use error::StateError;
pub use handle::Store;
pub use intel::LastKnownRow;
pub use model::*;
pub use open::{open_locked, state_path};

/// How long a statement waits for a lock held by another connection before failing with a
/// busy error. Commits are small, so anything longer than this is a stuck process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many problems of `PRAGMA quick_check` an error message quotes.
const MAX_CHECK_PROBLEMS: usize = 3;

/// The state database: one connection to one file.
///
/// `State` is `Send` but not `Sync`: the daemon keeps it behind a mutex and uses it from
/// blocking tasks.
pub struct State {
    conn: Connection,
    path: PathBuf,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The result of [`State::open`]: whether the database was created now (no cursor: the caller
/// starts with its bounded initial lookback and says so in the log) or already held state.
#[derive(Debug)]
pub enum Opened {
    /// The file did not exist or was empty; the schema was just created.
    Fresh(State),
    /// The file held a rolewatch database (migrated to the current schema if it was older).
    Existing(State),
}

impl Opened {
    /// True for [`Opened::Fresh`].
    #[must_use]
    pub fn is_fresh(&self) -> bool {
        matches!(self, Self::Fresh(_))
    }

    /// The state, fresh or not.
    #[must_use]
    pub fn into_state(self) -> State {
        match self {
            Self::Fresh(state) | Self::Existing(state) => state,
        }
    }
}

/// The default location of the state file: `$STATE_DIRECTORY/state.db` under systemd (the
/// first of its colon-separated paths), else `$XDG_STATE_HOME/rolewatch/state.db`, else
/// `$HOME/.local/state/rolewatch/state.db`.
///
/// # Errors
///
/// [`StateError::NoDefaultPath`] when none of the three variables is usable.
pub fn default_path() -> Result<PathBuf, StateError> {
    default_path_from(|name| std::env::var_os(name))
}

/// [`default_path`] with the environment as a parameter, for tests.
fn default_path_from(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, StateError> {
    if let Some(dirs) = var("STATE_DIRECTORY") {
        // systemd sets one absolute path per StateDirectory= entry, joined with ':'.
        if let Some(first) = dirs
            .as_bytes()
            .split(|&b| b == b':')
            .find(|s| !s.is_empty())
        {
            return Ok(Path::new(std::ffi::OsStr::from_bytes(first)).join("state.db"));
        }
    }
    // The XDG base directory spec says a relative value is invalid and must be ignored.
    if let Some(xdg) = var("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok(xdg.join("rolewatch").join("state.db"));
    }
    if let Some(home) = var("HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home).join(".local/state/rolewatch/state.db"));
    }
    Err(StateError::NoDefaultPath)
}

impl State {
    /// Opens the state database at `path`, creating it (and its parent directories, mode
    /// 0700; the file mode 0600) when missing, and migrates it to the current schema.
    ///
    /// The connection uses the write-ahead log, `synchronous = FULL` (a committed poll
    /// survives a power cut), a busy timeout and foreign keys. An existing file is checked
    /// with `PRAGMA quick_check` before anything is written to it.
    ///
    /// # Errors
    ///
    /// A [`StateError`] naming the file when its directory cannot be created, it is not a
    /// regular file, cannot be read or written, is not a SQLite database, is another
    /// program's database, is corrupt, has a schema newer than this binary knows, cannot use
    /// the write-ahead log, or a migration fails. The file is never recreated or overwritten.
    pub fn open(path: &Path) -> Result<Opened, StateError> {
        let path = path.to_path_buf();
        prepare_file(&path)?;

        // No SQLITE_OPEN_CREATE (prepare_file made the file) and no URI interpretation of
        // the name.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags).map_err(sqlite(&path, "open"))?;
        // SQLite quietly falls back to read-only when the file is not writable.
        if conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(sqlite(&path, "open"))?
        {
            return Err(StateError::ReadOnly { path });
        }
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sqlite(&path, "set the busy timeout"))?;

        // The first read of the file: garbage fails here with "file is not a database".
        let objects: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .map_err(sqlite(&path, "read the schema"))?;
        let version = schema::user_version(&conn).map_err(sqlite(&path, "read the schema"))?;
        let app_id: i32 = conn
            .pragma_query_value(None, "application_id", |row| row.get(0))
            .map_err(sqlite(&path, "read the schema"))?;
        let fresh = objects == 0 && version == 0 && app_id == 0;
        if !fresh {
            if version == 0 || app_id != schema::APPLICATION_ID {
                return Err(StateError::Foreign { path });
            }
            quick_check(&conn, &path)?;
            if version > schema::CURRENT_VERSION {
                return Err(StateError::TooNew {
                    path,
                    found: version,
                    known: schema::CURRENT_VERSION,
                });
            }
        }

        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(sqlite(&path, "switch to the write-ahead log"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StateError::NoWal { path, mode });
        }
        // Both are per connection, not stored in the file.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite(&path, "set synchronous = FULL"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sqlite(&path, "enable foreign keys"))?;

        schema::migrate_to(&mut conn, schema::CURRENT_VERSION).map_err(|e| {
            match sqlite(&path, "migrate")(e.source) {
                StateError::Sqlite { path, source, .. } => StateError::Migration {
                    path,
                    version: e.version,
                    source,
                },
                other => other,
            }
        })?;

        let state = State { conn, path };
        Ok(if fresh {
            Opened::Fresh(state)
        } else {
            Opened::Existing(state)
        })
    }

    /// The file this state lives in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the file (after [`State::open`], the current one).
    ///
    /// # Errors
    ///
    /// [`StateError`] when SQLite cannot read the header.
    pub fn schema_version(&self) -> Result<u32, StateError> {
        schema::user_version(&self.conn).map_err(sqlite(&self.path, "read the schema version"))
    }

    /// The cursor of `source_id` (unix ms): the end of the last fully polled window; `None`
    /// before the source's first commit.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn cursor(&self, source_id: &str) -> Result<Option<i64>, StateError> {
        self.conn
            .prepare_cached("SELECT position_ms FROM cursors WHERE source_id = ?1")
            .and_then(|mut stmt| stmt.query_row([source_id], |row| row.get(0)).optional())
            .map_err(sqlite(&self.path, "read a cursor"))
    }

    /// Every source's cursor, ordered by source.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn cursors(&self) -> Result<Vec<Cursor>, StateError> {
        let run = || {
            let mut stmt = self.conn.prepare_cached(
                "SELECT source_id, position_ms, updated_ms FROM cursors ORDER BY source_id",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(Cursor {
                    source_id: row.get(0)?,
                    position_ms: row.get(1)?,
                    updated_ms: row.get(2)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        };
        run().map_err(sqlite(&self.path, "read the cursors"))
    }

    /// When the last reconciliation sweep of `source_id` finished (unix ms); `None` before
    /// the first.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn last_sweep_ms(&self, source_id: &str) -> Result<Option<i64>, StateError> {
        self.conn
            .prepare_cached("SELECT last_ms FROM sweeps WHERE source_id = ?1")
            .and_then(|mut stmt| stmt.query_row([source_id], |row| row.get(0)).optional())
            .map_err(sqlite(&self.path, "read the last sweep"))
    }

    /// Records that a reconciliation sweep of `source_id` finished at `at_ms`.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the update fails.
    pub fn record_sweep(&mut self, source_id: &str, at_ms: i64) -> Result<(), StateError> {
        self.conn
            .prepare_cached(
                "INSERT INTO sweeps (source_id, last_ms) VALUES (?1, ?2)
                 ON CONFLICT (source_id) DO UPDATE SET last_ms = excluded.last_ms",
            )
            .and_then(|mut stmt| stmt.execute(params![source_id, at_ms]))
            .map_err(sqlite(&self.path, "record a sweep"))?;
        Ok(())
    }

    /// The recorded coverage gaps, of one source or all, ordered by source and start.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn gaps(&self, source_id: Option<&str>) -> Result<Vec<Gap>, StateError> {
        let run = || {
            let mut stmt = self.conn.prepare_cached(
                "SELECT source_id, from_ms, to_ms, detected_ms, reason FROM gaps
                 WHERE ?1 IS NULL OR source_id = ?1
                 ORDER BY source_id, from_ms, to_ms",
            )?;
            let rows = stmt.query_map([source_id], |row| {
                Ok(Gap {
                    source_id: row.get(0)?,
                    from_ms: row.get(1)?,
                    to_ms: row.get(2)?,
                    detected_ms: row.get(3)?,
                    reason: row.get(4)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        };
        run().map_err(sqlite(&self.path, "read the gaps"))
    }

    /// Row counts of the state.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn stats(&self) -> Result<StateStats, StateError> {
        let count = |row: &Row<'_>, i: usize| -> rusqlite::Result<u64> {
            let n: i64 = row.get(i)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        self.conn
            .query_row(
                "SELECT (SELECT count(*) FROM cursors),
                        (SELECT count(*) FROM seen),
                        (SELECT count(*) FROM alerts),
                        (SELECT count(*) FROM deliveries WHERE status = 'pending'),
                        (SELECT count(*) FROM deliveries WHERE status = 'failed'),
                        (SELECT count(*) FROM gaps)",
                [],
                |row| {
                    Ok(StateStats {
                        cursors: count(row, 0)?,
                        seen: count(row, 1)?,
                        alerts: count(row, 2)?,
                        undelivered: count(row, 3)?,
                        failed: count(row, 4)?,
                        gaps: count(row, 5)?,
                    })
                },
            )
            .map_err(sqlite(&self.path, "count rows"))
    }
}

/// Creates the parent directories (mode 0700) and an empty file (mode 0600, since alerts hold
/// CloudTrail records) when the state file does not exist yet, and refuses a path that is not
/// a regular file. SQLite gives the `-wal` and `-shm` files the mode of the database file.
fn prepare_file(path: &Path) -> Result<(), StateError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StateError::CreateDir {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
                source,
            })?;
    }
    let inaccessible = |source: io::Error| StateError::Inaccessible {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(StateError::NotAFile {
            path: path.to_path_buf(),
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                // Another process created it in between: it is its file now, and SQLite's
                // locking decides who writes the schema.
                Ok(_) => Ok(()),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(err) => Err(inaccessible(err)),
            }
        }
        Err(err) => Err(inaccessible(err)),
    }
}

/// Runs `PRAGMA quick_check` (the structural checks of `integrity_check` without the
/// cross-checks of indexes, linear in the file size) and turns any problem into
/// [`StateError::Corrupt`].
fn quick_check(conn: &Connection, path: &Path) -> Result<(), StateError> {
    let run = || {
        let mut stmt = conn.prepare("PRAGMA quick_check")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
    };
    let problems = run().map_err(|source| StateError::Corrupt {
        path: path.to_path_buf(),
        detail: source.to_string(),
    })?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    let mut detail = problems
        .iter()
        .take(MAX_CHECK_PROBLEMS)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > MAX_CHECK_PROBLEMS {
        detail.push_str(&format!(
            "; and {} more",
            problems.len() - MAX_CHECK_PROBLEMS
        ));
    }
    Err(StateError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("quick_check: {detail}"),
    })
}
