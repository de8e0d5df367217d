//! The binary under test: a test setup (servers, config, state directory), one-shot commands
//! and a running daemon, what they printed, and what they left in the state.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::servers::{aws_env, LookupServer, Moto};
use crate::stdout;

/// A temporary directory with a config file in it.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Setup {
        Setup {
            dir: tempfile::Builder::new()
                .prefix("rolewatch-it-")
                .tempdir()
                .expect("a temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn state_path(&self) -> PathBuf {
        self.path("state.db")
    }

    /// Writes `rolewatch.toml` with a `[state]` in the temp dir and `body` after it.
    pub fn config(&self, body: &str) -> PathBuf {
        let path = self.path("rolewatch.toml");
        let text = format!(
            "[state]\npath = \"{}\"\n\n{body}\n",
            self.state_path().display()
        );
        std::fs::write(&path, text).expect("the config is written");
        path
    }
}

/// A `rolewatch` command pointed at the test servers.
pub fn command(lookup: Option<&LookupServer>, moto: Option<&Moto>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rolewatch"));
    let lookup = lookup.map(LookupServer::endpoint);
    let moto = moto.map(Moto::endpoint);
    aws_env(&mut cmd, lookup.as_deref(), moto.as_deref());
    cmd.env("RUST_LOG", "info").env_remove("STATE_DIRECTORY");
    cmd.stdin(Stdio::null());
    cmd
}

pub fn run_with(
    lookup: Option<&LookupServer>,
    moto: Option<&Moto>,
    args: &[&str],
    config: &Path,
) -> Output {
    command(lookup, moto)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("rolewatch runs")
}

/// The JSON lines on stdout.
#[track_caller]
pub fn lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// The eventID of an alert line: `eventID` in `check`'s lines; the daemon's stdout channel may
/// render alerts in its own layout (`event_id`).
pub fn event_id(line: &Value) -> String {
    line["eventID"]
        .as_str()
        .or_else(|| line["event_id"].as_str())
        .unwrap_or_else(|| panic!("no eventID in {line}"))
        .to_owned()
}

pub fn ids_of(lines: &[Value]) -> Vec<String> {
    lines.iter().map(event_id).collect()
}

pub fn open_state(path: &Path) -> rolewatch::state::State {
    rolewatch::state::State::open(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_state()
}

/// A state whose cursor for `source_id` stands at `cursor_ms` (an empty poll committed then).
pub fn set_cursor(path: &Path, source_id: &str, cursor_ms: i64) {
    open_state(path)
        .commit_poll(&rolewatch::state::PollCommit {
            source_id,
            cursor_ms,
            now_ms: cursor_ms,
            seen: Vec::new(),
            alerts: Vec::new(),
            channels: Vec::new(),
            gaps: Vec::new(),
        })
        .unwrap();
}

/// Every alert in the state: eventID → how many rows.
pub fn alert_counts(path: &Path) -> HashMap<String, u64> {
    let conn = rusqlite::Connection::open(path).expect("the state opens");
    let mut stmt = conn
        .prepare("SELECT event_id, count(*) FROM alerts GROUP BY event_id")
        .unwrap();
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// A `rolewatch run` in the background, its stdout and stderr collected.
pub struct Daemon {
    pub child: Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Daemon {
    pub fn start(server: &LookupServer, config: &Path) -> Daemon {
        let mut cmd = command(Some(server), None);
        cmd.args(["run", "--config"]).arg(config);
        Daemon::spawn(cmd)
    }

    /// Spawns `cmd` (a `rolewatch run` command line), collecting its output.
    pub fn spawn(mut cmd: Command) -> Daemon {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rolewatch run starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (out, err) = (Arc::clone(&stdout), Arc::clone(&stderr));
        let child_out = child.stdout.take().unwrap();
        let child_err = child.stderr.take().unwrap();
        let readers = vec![
            std::thread::spawn(move || {
                for line in BufReader::new(child_out).lines() {
                    let Ok(line) = line else { break };
                    out.lock().unwrap().push(line);
                }
            }),
            std::thread::spawn(move || {
                for line in BufReader::new(child_err).lines() {
                    let Ok(line) = line else { break };
                    let mut e = err.lock().unwrap();
                    e.push_str(&line);
                    e.push('\n');
                }
            }),
        ];
        Daemon {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// Waits for the output readers (after the process exited).
    pub fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn polls(&self) -> usize {
        // Text or JSON log lines.
        let err = self.stderr_text();
        err.matches(" Polled").count() + err.matches("\"message\":\"Polled\"").count()
    }

    /// Waits until `cond` holds, up to `timeout`; panics with the daemon's stderr otherwise.
    #[track_caller]
    pub fn wait_for(&self, timeout: Duration, what: &str, cond: impl Fn(&Daemon) -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; stderr:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` and waits for the exit; returns the stdout lines.
    pub fn stop(mut self, signal: &str) -> (std::process::ExitStatus, Vec<String>, String) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
        // In-flight polls may finish for up to the 20 s default grace (`[daemon]
        // shutdown_grace_secs`), plus the outbox flush.
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("rolewatch run did not exit within 30 s of {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.join_readers();
        let out = self.stdout.lock().unwrap().clone();
        let err = self.stderr_text();
        (status, out, err)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
