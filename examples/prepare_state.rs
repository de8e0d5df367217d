//! Prepares a rolewatch state file whose cursor for one source is at a given time, as a
//! daemon that stopped then would have left it. For bench/catchup.sh (catch-up after downtime).
//!
//! ```text
//! cargo run --release --example prepare_state -- STATE_PATH SOURCE_ID CURSOR_UNIX_MS
//! ```
//!
//! The file must not exist yet: this writes a fresh state through the library's own
//! `State::open` and `commit_poll`, exactly what `rolewatch run` would have written.

use std::path::PathBuf;
use std::process::ExitCode;

use rolewatch::state::{PollCommit, State};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, source_id, cursor] = args.as_slice() else {
        eprintln!("usage: prepare_state STATE_PATH SOURCE_ID CURSOR_UNIX_MS");
        return ExitCode::from(2);
    };
    let path = PathBuf::from(path);
    let Ok(cursor_ms) = cursor.parse::<i64>() else {
        eprintln!("prepare_state: CURSOR_UNIX_MS `{cursor}` is not an integer");
        return ExitCode::from(2);
    };
    if path.exists() {
        eprintln!("prepare_state: {} exists already", path.display());
        return ExitCode::FAILURE;
    }
    let mut state = match State::open(&path) {
        Ok(opened) => opened.into_state(),
        Err(e) => {
            eprintln!("prepare_state: {e}");
            return ExitCode::FAILURE;
        }
    };
    let committed = state.commit_poll(&PollCommit {
        source_id,
        cursor_ms,
        now_ms: cursor_ms,
        seen: Vec::new(),
        alerts: Vec::new(),
        channels: Vec::new(),
        gaps: Vec::new(),
    });
    match committed {
        Ok(c) => {
            println!("{} {source_id} {}", path.display(), c.cursor_ms);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("prepare_state: {e}");
            ExitCode::FAILURE
        }
    }
}
