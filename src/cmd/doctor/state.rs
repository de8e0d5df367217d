//! The state check: where the state file is, whether its directory is writable, and — read
//! only — its schema version and the vendor role's latest baseline.
//!
//! Doctor never opens the state with [`State::open`](crate::state::State::open): that creates
//! a missing file, switches it to the write-ahead log and migrates an older schema. It opens
//! the file read-only instead, and when no write-ahead log is present (no rolewatch has it
//! open) as `immutable`, so that SQLite creates no `-wal` / `-shm` files either (a root-owned
//! `-shm` left by a doctor run as root would lock the daemon's own user out).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{Finding, Status};
use crate::config::Config;
use crate::state::schema;

/// What the state holds as the role's baseline, as far as doctor may look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StoredBaseline {
    /// No state file (yet).
    NoState,
    /// The state has no baseline of the role.
    None,
    /// `(taken_ms, the snapshot's JSON)`.
    Found(i64, String),
    /// Not read, and why.
    Unreadable(String),
}

/// The finding, and the baselines for the role checks.
pub(super) struct StateReport {
    pub finding: Finding,
    /// One per role key asked about, in order.
    pub baselines: Vec<StoredBaseline>,
}

/// Checks the state's place once; reads the baseline of the vendor's role stored under each
/// of `role_keys` (the role's name, or `<role>@<account>` for the role inside each
/// `[[account]]`).
pub(super) fn check(cfg: &Config, role_keys: &[String]) -> StateReport {
    const CHECK: &str = "state";
    if let crate::config::StateBackend::DynamoDb(d) = &cfg.state.backend {
        return check_dynamo(d, role_keys);
    }
    let path = match crate::state::state_path(cfg) {
        Ok(p) => p,
        Err(e) => {
            return StateReport {
                finding: Finding::new(Status::Fail, CHECK, e.to_string()),
                baselines: vec![
                    StoredBaseline::Unreadable("no state path".into());
                    role_keys.len()
                ],
            }
        }
    };
    check_path(&path, role_keys)
}

/// The DynamoDB backend: the table exists, its schema is one this rolewatch knows, who holds
/// the lease, and the role's newest baseline (compared like SQLite's). Read only: doctor
/// creates no table and writes no item.
fn check_dynamo(d: &crate::config::DynamoConfig, role_keys: &[String]) -> StateReport {
    use crate::state::dynamo::{DynamoState, SCHEMA_VERSION};
    let what = format!("DynamoDB table {} ({})", d.table, d.region);
    match DynamoState::inspect(d, role_keys) {
        Err(e) => StateReport {
            finding: Finding::new(Status::Fail, "state", e.to_string()),
            baselines: vec![
                StoredBaseline::Unreadable("the table cannot be read".to_owned());
                role_keys.len()
            ],
        },
        Ok(found) => {
            let lease = match &found.lease {
                Some((owner, fence, _)) => format!("; lease held by {owner} (fence {fence})"),
                None => "; no replica has taken the lease yet".to_owned(),
            };
            let baselines = found
                .baselines
                .into_iter()
                .map(|b| match (&found.schema, b) {
                    (None, _) => StoredBaseline::NoState,
                    (Some(_), None) => StoredBaseline::None,
                    (Some(_), Some((taken, json))) => StoredBaseline::Found(taken, json),
                })
                .collect();
            let finding = match found.schema {
                Some(v) if v > SCHEMA_VERSION => Finding::new(
                    Status::Fail,
                    "state",
                    format!("{what}: schema version {v}, newer than {SCHEMA_VERSION} that this rolewatch knows; run the newer rolewatch"),
                ),
                Some(v) => Finding::new(Status::Ok, "state", format!("{what}: schema version {v}{lease}")),
                None => Finding::new(
                    Status::Ok,
                    "state",
                    format!("{what}: exists, no rolewatch state yet (the first `rolewatch run` writes it)"),
                ),
            };
            StateReport { finding, baselines }
        }
    }
}

/// [`check`] for a given state file.
pub(super) fn check_path(path: &Path, role_keys: &[String]) -> StateReport {
    let mut f = Finding::new(Status::Ok, "state", path.display().to_string());
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));

    // The directory: it, or the nearest ancestor rolewatch would create it in, must take a
    // new file.
    match nearest_existing(dir) {
        Some(existing) if existing == dir && !dir.is_dir() => {
            f.raise(Status::Fail);
            f.line(format!("{} is not a directory", dir.display()));
        }
        Some(existing) => {
            let absent = existing != dir;
            match probe_writable(&existing) {
                Ok(()) if absent => f.line(format!(
                    "the directory {} does not exist yet; rolewatch creates it in {}, which is writable",
                    dir.display(),
                    existing.display()
                )),
                Ok(()) => f.line(format!("the directory {} is writable", dir.display())),
                Err(e) => {
                    f.raise(Status::Fail);
                    f.line(format!(
                        "cannot create a file in {}: {e}{}",
                        existing.display(),
                        if absent {
                            format!(" (rolewatch would create {} there)", dir.display())
                        } else {
                            String::new()
                        }
                    ));
                }
            }
        }
        None => {
            f.raise(Status::Fail);
            f.line(format!("no part of {} exists", dir.display()));
        }
    }

    // The file itself.
    let all = |b: StoredBaseline| vec![b; role_keys.len()];
    let baselines = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            f.line(
                "the state file does not exist yet: the first `rolewatch run` or `once` creates it",
            );
            all(StoredBaseline::NoState)
        }
        Err(e) => {
            f.raise(Status::Fail);
            f.line(format!("cannot look at the state file: {e}"));
            all(StoredBaseline::Unreadable(e.to_string()))
        }
        Ok(m) if !m.is_file() => {
            f.raise(Status::Fail);
            f.line("the state path exists but is not a regular file");
            all(StoredBaseline::Unreadable("not a regular file".into()))
        }
        Ok(m) => {
            // Opening for writing without create or truncate changes nothing.
            if let Err(e) = OpenOptions::new().read(true).write(true).open(path) {
                f.raise(Status::Fail);
                f.line(format!("the state file is not writable by this user: {e}"));
            }
            match read_only(path, role_keys) {
                Ok((version, baselines)) => {
                    f.line(format!(
                        "the state file exists ({} bytes, schema version {version})",
                        m.len()
                    ));
                    baselines
                }
                Err(Unread::Skip(why)) => {
                    f.line(format!("the state file exists; {why}"));
                    all(StoredBaseline::Unreadable(why))
                }
                Err(Unread::Broken(why)) => {
                    f.raise(Status::Fail);
                    f.line(format!("the state file exists but {why}"));
                    all(StoredBaseline::Unreadable(why))
                }
            }
        }
    };
    let detail = if f.status == Status::Ok {
        format!("{} (writable)", f.detail)
    } else {
        f.detail.clone()
    };
    f.detail = detail;
    StateReport {
        finding: f,
        baselines,
    }
}

/// `dir` itself when it exists, else its nearest existing ancestor.
fn nearest_existing(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|a| !a.as_os_str().is_empty() && a.exists())
        .map(Path::to_path_buf)
}

/// Creates, writes and removes a uniquely named file in `dir`.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let name = format!(
        ".rolewatch-doctor-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    );
    let probe = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)?;
    let written = file.write_all(b"rolewatch doctor\n");
    drop(file);
    let removed = std::fs::remove_file(&probe);
    written.and(removed)
}

/// Why the state's baseline was not read.
enum Unread {
    /// Reading would change the file, or is not doctor's to do: said, not a failure.
    Skip(String),
    /// The file is not a state rolewatch can use.
    Broken(String),
}

/// Opens the state read-only and reads its schema version and the newest baseline under each
/// role key.
fn read_only(path: &Path, role_keys: &[String]) -> Result<(u32, Vec<StoredBaseline>), Unread> {
    let sibling = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let (wal, shm) = (sibling("-wal").exists(), sibling("-shm").exists());
    let conn = match (wal, shm) {
        // Another connection (a running daemon) has the log: read through it, read-only.
        (true, true) => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ),
        // Nobody has it open: immutable creates no -wal / -shm files.
        (false, false) => Connection::open_with_flags(
            format!("file:{}?immutable=1", uri_path(path)),
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ),
        _ => {
            return Err(Unread::Skip(
                "it has a write-ahead log without its index (a crash?): the baseline is not \
                 read, since reading would create files; the next `rolewatch run` recovers it"
                    .into(),
            ))
        }
    }
    .map_err(|e| Unread::Broken(format!("cannot be opened read-only: {e}")))?;

    let app_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(|e| Unread::Broken(format!("is not a SQLite database ({e})")))?;
    let version = schema::user_version(&conn)
        .map_err(|e| Unread::Broken(format!("its schema cannot be read ({e})")))?;
    if app_id != schema::APPLICATION_ID || version == 0 {
        return Err(Unread::Broken(
            "is not a rolewatch state (another program's database): move it aside".into(),
        ));
    }
    if version > schema::CURRENT_VERSION {
        return Err(Unread::Broken(format!(
            "has schema version {version}, newer than this binary knows ({}): use the newer rolewatch",
            schema::CURRENT_VERSION
        )));
    }
    if version < schema::CURRENT_VERSION {
        return Err(Unread::Skip(format!(
            "its schema version {version} is older than this binary's ({}): the next `rolewatch run` \
             migrates it; doctor does not, so the baseline is not read",
            schema::CURRENT_VERSION
        )));
    }
    // The query of `State::latest_baseline`, on this read-only connection.
    let mut query = conn
        .prepare(
            "SELECT taken_ms, snapshot FROM baselines WHERE role_name = ?1
             ORDER BY taken_ms DESC, id DESC LIMIT 1",
        )
        .map_err(|e| Unread::Broken(format!("its baseline cannot be read ({e})")))?;
    let mut baselines = Vec::with_capacity(role_keys.len());
    for key in role_keys {
        let row: Option<(i64, String)> = query
            .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(|e| Unread::Broken(format!("its baseline cannot be read ({e})")))?;
        baselines.push(row.map_or(StoredBaseline::None, |(t, s)| StoredBaseline::Found(t, s)));
    }
    Ok((version, baselines))
}

/// A path for a `file:` URI: percent-encoded but for unreserved characters and `/`.
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    percent_encoding::percent_encode(absolute.as_os_str().as_bytes(), KEEP).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::State;

    #[test]
    fn a_missing_file_in_a_writable_directory_is_ok_and_nothing_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/state.db");
        let r = check_path(&path, &["role".to_owned()]);
        assert_eq!(r.finding.status, Status::Ok, "{}", r.finding);
        assert_eq!(r.baselines[0], StoredBaseline::NoState);
        assert!(
            r.finding.lines[0].contains("does not exist yet"),
            "{}",
            r.finding
        );
        assert!(
            !dir.path().join("sub").exists(),
            "doctor created the directory"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the probe is removed"
        );
    }

    #[test]
    fn an_existing_state_is_read_without_creating_files_and_its_baseline_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let mut s = State::open(&path).unwrap().into_state();
            s.put_baseline("role", 7, "{\"a\":1}").unwrap();
        }
        let before: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let r = check_path(&path, &["role".to_owned()]);
        assert_eq!(r.finding.status, Status::Ok, "{}", r.finding);
        assert_eq!(r.baselines[0], StoredBaseline::Found(7, "{\"a\":1}".into()));
        let after: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(before, after, "doctor left files behind");
        assert_eq!(
            check_path(&path, &["other".to_owned()]).baselines[0],
            StoredBaseline::None
        );

        // With the state open elsewhere (a running daemon), through its write-ahead log.
        let _open = State::open(&path).unwrap();
        assert_eq!(
            check_path(&path, &["role".to_owned()]).baselines[0],
            StoredBaseline::Found(7, "{\"a\":1}".into())
        );
    }

    #[test]
    fn an_older_schema_is_not_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            schema::migrate_to(&mut conn, 1).unwrap();
        }
        let r = check_path(&path, &["role".to_owned()]);
        assert_eq!(r.finding.status, Status::Ok, "{}", r.finding);
        assert!(
            matches!(r.baselines[0], StoredBaseline::Unreadable(ref w) if w.contains("migrates"))
        );
        let conn = Connection::open(&path).unwrap();
        assert_eq!(schema::user_version(&conn).unwrap(), 1);
    }

    #[test]
    fn a_foreign_file_and_a_file_where_the_directory_should_be_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, b"not a database at all, just text").unwrap();
        let r = check_path(&path, &["role".to_owned()]);
        assert_eq!(r.finding.status, Status::Fail, "{}", r.finding);

        let path = dir.path().join("file-not-dir/state.db");
        std::fs::write(dir.path().join("file-not-dir"), b"").unwrap();
        assert_eq!(
            check_path(&path, &["role".to_owned()]).finding.status,
            Status::Fail
        );
    }

    #[test]
    fn uri_paths_escape_what_a_uri_would_read() {
        assert_eq!(
            uri_path(Path::new("/a b/s?x#y%.db")),
            "/a%20b/s%3Fx%23y%25.db"
        );
    }
}
