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
//! runs each call off the async worker threads' schedule (`block_in_place`). It never
//! reads the clock: every timestamp is an argument, in unix milliseconds.
//!
//! Opening never silently recreates a file: one that is not a SQLite database, is corrupt, is
//! some other program's database, has a newer schema or cannot be read and written is an error
//! that names the file and what to do (see [`StateError`]). The schema lives in [`schema`].

mod error;
mod handle;
mod intel;
mod open;
pub mod schema;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};

use error::sqlite;
pub use error::StateError;
pub use handle::Store;
pub use open::{open_locked, state_path};

/// How long a statement waits for a lock held by another connection before failing with a
/// busy error. Commits are small, so anything longer than this is a stuck process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest `last_error` stored for a delivery; a channel's error text is for a human.
const MAX_ERROR_CHARS: usize = 1000;

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

/// Everything one poll of one source learned, written by [`State::commit_poll`] at once.
#[derive(Debug, Clone)]
pub struct PollCommit<'a> {
    /// The source polled; owner of `seen` and of the cursor.
    pub source_id: &'a str,
    /// The new cursor: the end of the window now fully polled (unix ms).
    pub cursor_ms: i64,
    /// The time of the commit (unix ms): alerts' detection time, outbox rows' first attempt,
    /// and the pruning horizon of `seen`.
    pub now_ms: i64,
    /// Every event fetched this poll, matched or not.
    pub seen: Vec<SeenEvent<'a>>,
    /// The matches.
    pub alerts: Vec<NewAlert<'a>>,
    /// The notification channels: each new alert gets one `pending` outbox row per channel.
    pub channels: Vec<&'a str>,
    /// Coverage gaps detected this poll.
    pub gaps: Vec<Gap>,
}

/// An event fetched by a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenEvent<'a> {
    /// CloudTrail's eventID.
    pub event_id: &'a str,
    /// The event's eventTime (unix ms).
    pub event_time_ms: i64,
    /// When the row may be forgotten (unix ms): once no future window can contain the event.
    pub expires_ms: i64,
}

/// Where an alert comes from: a match of the user's rules, or rolewatch's own notice about
/// itself (blind, recovered, a coverage gap, a failing channel, the heartbeat). Typed in the
/// state, so that no rule name is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// A change one or more rules matched.
    #[default]
    Rule,
    /// rolewatch's own notice.
    Notice,
}

impl Origin {
    /// The stored word.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::Notice => "notice",
        }
    }

    fn parse(text: &str) -> Self {
        // The CHECK constraint admits only the two words.
        if text == "notice" {
            Self::Notice
        } else {
            Self::Rule
        }
    }
}

/// How rolewatch found an alert's event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FoundBy {
    /// A regular poll (inside its window and overlap).
    #[default]
    Poll,
    /// The reconciliation sweep: the event became visible later than the polls' overlap
    /// (a late delivery).
    Sweep,
    /// rolewatch made it (a notice).
    Notice,
}

impl FoundBy {
    /// The stored word.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Sweep => "sweep",
            Self::Notice => "notice",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "sweep" => Self::Sweep,
            "notice" => Self::Notice,
            _ => Self::Poll,
        }
    }
}

/// A change to be recorded as an alert: one event, with every rule that matched it.
#[derive(Clone, PartialEq, Eq)]
pub struct NewAlert<'a> {
    /// The headline rule (the most severe of `rules`).
    pub rule: &'a str,
    /// Every rule that matched, the headline rule first.
    pub rules: Vec<&'a str>,
    /// The highest severity of the rules.
    pub severity: &'a str,
    /// A rule match or a notice.
    pub origin: Origin,
    /// How the event was found.
    pub found_by: FoundBy,
    /// The change's identity (account and eventID, [`crate::engine::change_key`]); an alert
    /// is recorded once per change key. `None` for notices (unique by rule and eventID).
    pub change_key: Option<&'a str>,
    /// The delivery dedup key; `None`: derived from the rule and eventID when sent.
    pub dedup_key: Option<&'a str>,
    /// CloudTrail's eventID.
    pub event_id: &'a str,
    /// CloudTrail's eventName.
    pub event_name: &'a str,
    /// The event's eventTime (unix ms).
    pub event_time_ms: i64,
    /// The source that saw the event.
    pub source_id: &'a str,
    /// The CloudTrail record, as JSON text.
    pub record: &'a str,
    /// The channels this alert goes to (the union of the rules' `channels`); `None`: every
    /// channel of the commit.
    pub channels: Option<Vec<&'a str>>,
}

impl fmt::Debug for NewAlert<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAlert")
            .field("rule", &self.rule)
            .field("rules", &self.rules)
            .field("severity", &self.severity)
            .field("origin", &self.origin)
            .field("found_by", &self.found_by)
            .field("change_key", &self.change_key)
            .field("event_id", &self.event_id)
            .field("event_name", &self.event_name)
            .field("event_time_ms", &self.event_time_ms)
            .field("source_id", &self.source_id)
            .field("record", &RecordLen(self.record.len()))
            .finish()
    }
}

/// A recorded alert.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct StoredAlert {
    /// The row id: the alert's identity in the outbox.
    pub id: i64,
    /// The headline rule.
    pub rule: String,
    /// Every rule that matched the change, the headline rule first.
    pub rules: Vec<String>,
    /// The highest severity of the rules.
    pub severity: String,
    /// A rule match or a notice.
    pub origin: Origin,
    /// How the event was found.
    pub found_by: FoundBy,
    /// The delivery dedup key; `None` for alerts recorded before v4 (derived from the rule
    /// and eventID, as then).
    pub dedup_key: Option<String>,
    /// CloudTrail's eventID.
    pub event_id: String,
    /// CloudTrail's eventName.
    pub event_name: String,
    /// The event's eventTime (unix ms).
    pub event_time_ms: i64,
    /// The source that saw the event first.
    pub source_id: String,
    /// When rolewatch recorded the alert (unix ms).
    pub detected_ms: i64,
    /// The CloudTrail record, as JSON text.
    pub record: String,
}

impl fmt::Debug for StoredAlert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAlert")
            .field("id", &self.id)
            .field("rule", &self.rule)
            .field("rules", &self.rules)
            .field("severity", &self.severity)
            .field("origin", &self.origin)
            .field("found_by", &self.found_by)
            .field("dedup_key", &self.dedup_key)
            .field("event_id", &self.event_id)
            .field("event_name", &self.event_name)
            .field("event_time_ms", &self.event_time_ms)
            .field("source_id", &self.source_id)
            .field("detected_ms", &self.detected_ms)
            .field("record", &RecordLen(self.record.len()))
            .finish()
    }
}

/// Stands in for a record in `Debug` output: records hold principals, IPs and request
/// parameters, which do not belong in logs of the daemon's own structures.
struct RecordLen(usize);

impl fmt::Debug for RecordLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

/// An interval a source could not cover (for example older than CloudTrail's 90 days).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gap {
    /// The source with the gap.
    pub source_id: String,
    /// Start of the missing interval (unix ms, inclusive).
    pub from_ms: i64,
    /// End of the missing interval (unix ms); not before `from_ms`.
    pub to_ms: i64,
    /// When the gap was detected (unix ms).
    pub detected_ms: i64,
    /// Why the interval is missing, for the operator.
    pub reason: String,
}

/// What [`State::commit_poll`] recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The alerts recorded by this commit, with their row ids: notify only these. An alert
    /// already recorded (the same rule and eventID, from an earlier poll or another source) is
    /// not here.
    pub alerts: Vec<StoredAlert>,
    /// The gaps recorded by this commit (gaps already known are not repeated).
    pub gaps: Vec<Gap>,
    /// How many seen eventIDs were new.
    pub seen_new: usize,
    /// How many expired seen rows of the source were pruned.
    pub pruned: usize,
    /// The cursor after the commit: the newer of the stored cursor and the one committed.
    pub cursor_ms: i64,
}

/// Where an alert stands on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not yet accepted by the channel; due from `next_attempt_ms`.
    Pending,
    /// Accepted by the channel; never sent again.
    Delivered,
    /// Given up on ([`State::mark_failed`] without a retry time).
    Failed,
}

impl DeliveryStatus {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The alert's row id.
    pub alert_id: i64,
    /// The channel's name.
    pub channel: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far (successful or not).
    pub attempts: u32,
    /// When the next attempt is due (unix ms), for pending rows.
    pub next_attempt_ms: i64,
    /// The channel's last error, if an attempt failed.
    pub last_error: Option<String>,
    /// When the channel accepted the alert (unix ms).
    pub delivered_ms: Option<i64>,
}

/// A source's cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The source.
    pub source_id: String,
    /// The end of the last fully polled window (unix ms).
    pub position_ms: i64,
    /// When it was last committed (unix ms).
    pub updated_ms: i64,
}

/// Row counts, for logs, metrics and `doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateStats {
    /// Sources with a cursor.
    pub cursors: u64,
    /// Remembered eventIDs.
    pub seen: u64,
    /// Alerts ever recorded.
    pub alerts: u64,
    /// Outbox rows not yet delivered and still being tried.
    pub undelivered: u64,
    /// Outbox rows given up on.
    pub failed: u64,
    /// Coverage gaps recorded.
    pub gaps: u64,
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

    /// Which of `event_ids` `source_id` has already seen (and not yet pruned).
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn seen_ids(
        &self,
        source_id: &str,
        event_ids: &[&str],
    ) -> Result<HashSet<String>, StateError> {
        let run = || {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT 1 FROM seen WHERE source_id = ?1 AND event_id = ?2")?;
            let mut found = HashSet::new();
            for &id in event_ids {
                if stmt.exists(params![source_id, id])? {
                    found.insert(id.to_owned());
                }
            }
            Ok(found)
        };
        run().map_err(sqlite(&self.path, "read seen eventIDs"))
    }

    /// Writes everything one poll learned in one transaction: every fetched event into the
    /// seen set (a repeat keeps the later expiry), every match into the alerts unless that
    /// rule already alerted on that eventID, one `pending` outbox row per new alert and
    /// channel, the gaps not yet known, and the cursor (which never moves backwards: the
    /// newer of the stored and the committed one is kept). Then the source's seen rows
    /// that expired before `now_ms` are pruned, in the same transaction.
    ///
    /// # Errors
    ///
    /// [`StateError`] when any statement fails (for example a constraint: an empty eventID,
    /// a gap that ends before it starts; or a full disk). The transaction is then rolled
    /// back: **nothing** of the poll is recorded, and the caller polls the window again.
    pub fn commit_poll(&mut self, c: &PollCommit<'_>) -> Result<Committed, StateError> {
        let Self { conn, path } = self;
        let mut run = || -> rusqlite::Result<Committed> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut seen_new = 0;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO seen (source_id, event_id, event_time_ms, expires_ms)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )?;
                let mut extend = tx.prepare_cached(
                    "UPDATE seen SET expires_ms = ?3
                     WHERE source_id = ?1 AND event_id = ?2 AND expires_ms < ?3",
                )?;
                for e in &c.seen {
                    if insert.execute(params![
                        c.source_id,
                        e.event_id,
                        e.event_time_ms,
                        e.expires_ms
                    ])? == 1
                    {
                        seen_new += 1;
                    } else {
                        extend.execute(params![c.source_id, e.event_id, e.expires_ms])?;
                    }
                }
            }

            let mut alerts = Vec::new();
            for a in &c.alerts {
                if let Some(stored) = insert_alert(&tx, a, &c.channels, c.now_ms)? {
                    alerts.push(stored);
                }
            }

            let mut gaps = Vec::new();
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO gaps (source_id, from_ms, to_ms, detected_ms, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                )?;
                for g in &c.gaps {
                    if insert.execute(params![
                        g.source_id,
                        g.from_ms,
                        g.to_ms,
                        g.detected_ms,
                        g.reason
                    ])? == 1
                    {
                        gaps.push(g.clone());
                    }
                }
            }

            let cursor_ms: i64 = tx
                .prepare_cached(
                    "INSERT INTO cursors (source_id, position_ms, updated_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (source_id) DO UPDATE
                     SET position_ms = max(position_ms, excluded.position_ms),
                         updated_ms = excluded.updated_ms
                     RETURNING position_ms",
                )?
                .query_row(params![c.source_id, c.cursor_ms, c.now_ms], |row| {
                    row.get(0)
                })?;

            let pruned = tx
                .prepare_cached("DELETE FROM seen WHERE source_id = ?1 AND expires_ms < ?2")?
                .execute(params![c.source_id, c.now_ms])?;

            tx.commit()?;
            Ok(Committed {
                alerts,
                gaps,
                seen_new,
                pruned,
                cursor_ms,
            })
        };
        run().map_err(sqlite(path, "commit a poll"))
    }

    /// Records an alert rolewatch makes itself (a notice about its own sight) with one
    /// `pending` outbox row per channel, in one transaction, without touching any cursor.
    /// Returns the stored alert, or `None` when that rule already has that eventID (the
    /// notice was recorded before: a notice is recorded once).
    ///
    /// # Errors
    ///
    /// [`StateError`] when a statement fails; nothing is recorded then.
    pub fn record_notice(
        &mut self,
        alert: &NewAlert<'_>,
        channels: &[&str],
        now_ms: i64,
    ) -> Result<Option<StoredAlert>, StateError> {
        let Self { conn, path } = self;
        let mut run = || -> rusqlite::Result<Option<StoredAlert>> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored = insert_alert(&tx, alert, channels, now_ms)?;
            tx.commit()?;
            Ok(stored)
        };
        run().map_err(sqlite(path, "record a notice"))
    }

    /// Alerts not yet delivered on `channel` (its outbox row is `pending`, due or not),
    /// oldest first, at most `limit`.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn undelivered_alerts(
        &self,
        channel: &str,
        limit: usize,
    ) -> Result<Vec<StoredAlert>, StateError> {
        self.query_alerts(
            "WHERE d.channel = ?1 AND d.status = 'pending' ORDER BY a.id LIMIT ?2",
            params![channel, limit_param(limit)],
        )
        .map_err(sqlite(&self.path, "read undelivered alerts"))
    }

    /// Alerts pending on `channel` whose next attempt is due at `now_ms`, in the order they
    /// fell due, at most `limit`.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn due_alerts(
        &self,
        channel: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredAlert>, StateError> {
        self.query_alerts(
            "WHERE d.channel = ?1 AND d.status = 'pending' AND d.next_attempt_ms <= ?2
             ORDER BY d.next_attempt_ms, a.id LIMIT ?3",
            params![channel, now_ms, limit_param(limit)],
        )
        .map_err(sqlite(&self.path, "read due alerts"))
    }

    /// The earliest `next_attempt_ms` of any pending delivery, on any channel: when the
    /// outbox has work next. `None` when nothing is pending.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn next_attempt_ms(&self) -> Result<Option<i64>, StateError> {
        self.conn
            .prepare_cached("SELECT MIN(next_attempt_ms) FROM deliveries WHERE status = 'pending'")
            .and_then(|mut stmt| stmt.query_row([], |row| row.get::<_, Option<i64>>(0)))
            .map_err(sqlite(&self.path, "read the next delivery attempt"))
    }

    fn query_alerts(
        &self,
        tail: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> rusqlite::Result<Vec<StoredAlert>> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM deliveries d JOIN alerts a ON a.id = d.alert_id {tail}"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params, stored_alert)?;
        rows.collect()
    }

    /// One alert by row id.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn alert(&self, alert_id: i64) -> Result<Option<StoredAlert>, StateError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.id = ?1"
            ))
            .and_then(|mut stmt| stmt.query_row([alert_id], stored_alert).optional())
            .map_err(sqlite(&self.path, "read an alert"))
    }

    /// The outbox row of `alert_id` on `channel`.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the query fails.
    pub fn delivery(&self, alert_id: i64, channel: &str) -> Result<Option<Delivery>, StateError> {
        let run = || {
            let mut stmt = self.conn.prepare_cached(
                "SELECT alert_id, channel, status, attempts, next_attempt_ms, last_error,
                        delivered_ms
                 FROM deliveries WHERE alert_id = ?1 AND channel = ?2",
            )?;
            stmt.query_row(params![alert_id, channel], |row| {
                let status: String = row.get(2)?;
                let attempts: i64 = row.get(3)?;
                Ok(Delivery {
                    alert_id: row.get(0)?,
                    channel: row.get(1)?,
                    // The CHECK constraint admits only the three known words.
                    status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    next_attempt_ms: row.get(4)?,
                    last_error: row.get(5)?,
                    delivered_ms: row.get(6)?,
                })
            })
            .optional()
        };
        run().map_err(sqlite(&self.path, "read a delivery"))
    }

    /// Records that `channel` accepted alert `alert_id` at `now_ms`: the row is never sent
    /// again. Marking a row already delivered changes nothing.
    ///
    /// # Errors
    ///
    /// [`StateError::NoSuchDelivery`] when the alert has no row for the channel; another
    /// [`StateError`] when the update fails.
    pub fn mark_delivered(
        &mut self,
        alert_id: i64,
        channel: &str,
        now_ms: i64,
    ) -> Result<(), StateError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE deliveries
                 SET status = 'delivered', delivered_ms = ?3, attempts = attempts + 1
                 WHERE alert_id = ?1 AND channel = ?2 AND status <> 'delivered'",
            )
            .and_then(|mut stmt| stmt.execute(params![alert_id, channel, now_ms]))
            .map_err(sqlite(&self.path, "mark an alert delivered"))?;
        if changed == 0 {
            self.require_delivery(alert_id, channel)?;
        }
        Ok(())
    }

    /// Records a failed attempt to deliver alert `alert_id` on `channel`: the attempt count
    /// goes up and `error` (cut to a bounded length) is kept. With `retry_at_ms` the row stays
    /// pending and is due again then; without, the row is given up on (`failed`). A row
    /// already delivered stays delivered.
    ///
    /// # Errors
    ///
    /// [`StateError::NoSuchDelivery`] when the alert has no row for the channel; another
    /// [`StateError`] when the update fails.
    pub fn mark_failed(
        &mut self,
        alert_id: i64,
        channel: &str,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StateError> {
        let error = truncate_chars(error, MAX_ERROR_CHARS);
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE deliveries
                 SET attempts = attempts + 1, last_error = ?3,
                     status = CASE WHEN ?4 IS NULL THEN 'failed' ELSE 'pending' END,
                     next_attempt_ms = coalesce(?4, next_attempt_ms)
                 WHERE alert_id = ?1 AND channel = ?2 AND status <> 'delivered'",
            )
            .and_then(|mut stmt| stmt.execute(params![alert_id, channel, error, retry_at_ms]))
            .map_err(sqlite(&self.path, "record a failed delivery"))?;
        if changed == 0 {
            self.require_delivery(alert_id, channel)?;
        }
        Ok(())
    }

    fn require_delivery(&self, alert_id: i64, channel: &str) -> Result<(), StateError> {
        match self.delivery(alert_id, channel)? {
            Some(_) => Ok(()),
            None => Err(StateError::NoSuchDelivery {
                path: self.path.clone(),
                alert_id,
                channel: channel.to_owned(),
            }),
        }
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

/// The columns [`stored_alert`] reads, of the alerts table as `a`.
pub(crate) const ALERT_COLUMNS: &str = "a.id, a.rule, a.severity, a.event_id, a.event_name,
    a.event_time_ms, a.source_id, a.detected_ms, a.record, a.rules, a.origin, a.found_by,
    a.dedup_key";

fn stored_alert(row: &Row<'_>) -> rusqlite::Result<StoredAlert> {
    let rule: String = row.get(1)?;
    let rules: String = row.get(9)?;
    // Written by this module as a JSON array of strings; a damaged value falls back to the
    // headline rule rather than losing the alert.
    let rules = serde_json::from_str::<Vec<String>>(&rules)
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| vec![rule.clone()]);
    let origin: String = row.get(10)?;
    let found_by: String = row.get(11)?;
    Ok(StoredAlert {
        id: row.get(0)?,
        rule,
        rules,
        severity: row.get(2)?,
        origin: Origin::parse(&origin),
        found_by: FoundBy::parse(&found_by),
        dedup_key: row.get(12)?,
        event_id: row.get(3)?,
        event_name: row.get(4)?,
        event_time_ms: row.get(5)?,
        source_id: row.get(6)?,
        detected_ms: row.get(7)?,
        record: row.get(8)?,
    })
}

/// Records one alert with one `pending` outbox row per channel (its own, else
/// `all_channels`), unless its change (or, for a notice, its rule and eventID) is recorded
/// already. The one way alerts enter the state, for polls and notices alike.
fn insert_alert(
    tx: &rusqlite::Transaction<'_>,
    a: &NewAlert<'_>,
    all_channels: &[&str],
    now_ms: i64,
) -> rusqlite::Result<Option<StoredAlert>> {
    let rules: Vec<&str> = if a.rules.is_empty() {
        vec![a.rule]
    } else {
        a.rules.clone()
    };
    let rules_json = serde_json::to_string(&rules).unwrap_or_else(|_| "[]".to_owned());
    let inserted = tx
        .prepare_cached(
            "INSERT INTO alerts (rule, severity, event_id, event_name, event_time_ms, source_id,
                                 detected_ms, record, rules, origin, found_by, change_key,
                                 dedup_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            a.rule,
            a.severity,
            a.event_id,
            a.event_name,
            a.event_time_ms,
            a.source_id,
            now_ms,
            a.record,
            rules_json,
            a.origin.as_str(),
            a.found_by.as_str(),
            a.change_key,
            a.dedup_key,
        ])?;
    if inserted == 0 {
        return Ok(None);
    }
    let id = tx.last_insert_rowid();
    let mut outbox = tx.prepare_cached(
        "INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_ms)
         VALUES (?1, ?2, 'pending', 0, ?3) ON CONFLICT DO NOTHING",
    )?;
    for channel in a.channels.as_deref().unwrap_or(all_channels) {
        outbox.execute(params![id, channel, now_ms])?;
    }
    Ok(Some(StoredAlert {
        id,
        rule: a.rule.to_owned(),
        rules: rules.iter().map(|r| (*r).to_owned()).collect(),
        severity: a.severity.to_owned(),
        origin: a.origin,
        found_by: a.found_by,
        dedup_key: a.dedup_key.map(str::to_owned),
        event_id: a.event_id.to_owned(),
        event_name: a.event_name.to_owned(),
        event_time_ms: a.event_time_ms,
        source_id: a.source_id.to_owned(),
        detected_ms: now_ms,
        record: a.record.to_owned(),
    }))
}

/// A `LIMIT` value: SQLite integers are i64, and a limit past that is "no limit".
fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}
