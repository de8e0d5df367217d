//! Integration tests: the real `rolewatch` binary, run as a user would run it.
//!
//! One test binary (this file and its modules) so that the suite links once.

// The binary under test reads the real wall clock; so do the tests that drive it.
#![allow(clippy::disallowed_methods)]

mod accounts;
mod alert_stream;
mod crash;
mod daemon;
mod deploy;
mod doctor;
mod intel;
mod layering;
mod notify;
mod organization;
mod queue;
mod replicas;
mod rules;
mod scan;
mod servers;
mod sources;
mod state_backends;
mod support;
mod test_pattern;
mod validate_config;
mod webhook;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs the binary with `args` and no stdin.
pub fn rolewatch<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_rolewatch"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the rolewatch binary runs")
}

/// Runs the binary with `args`, feeding `input` on stdin.
pub fn rolewatch_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rolewatch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the rolewatch binary starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .expect("stdin accepts the input");
    child.wait_with_output().expect("the rolewatch binary runs")
}

/// A path under `tests/fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

/// The fixture's lines (without their newlines).
pub fn fixture_lines(relative: &str) -> Vec<String> {
    std::fs::read_to_string(fixture(relative))
        .expect("the fixture is readable")
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// Asserts the exit status, showing stderr when it is not the expected one.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "unexpected exit status; stderr:\n{}",
        stderr(output)
    );
}
