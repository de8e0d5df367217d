//! `rolewatch scan`: sweep CloudTrail files for the records a filter pattern matches.
//!
//! Built for speed on one thread, because it is meant for months of archived trail files:
//!
//! * JSON lines are read in 1 MiB chunks into one reusable buffer ([`lines`]); lines are split
//!   with `memchr`, nothing is allocated per line, and a line only gets a cheap shape check
//!   (`{` … `}`) unless the pattern's literal prefilter lets it through. Only those candidates
//!   are checked for valid Unicode (UTF-8, no lone surrogate escape; a valid U+FFFD is
//!   ordinary text), evaluated and, for JSON patterns, validated as JSON.
//! * Trail files as delivered to S3 (`{"Records":[…]}`) and JSON arrays are parsed once, each
//!   record borrowed as a `&RawValue` so its text is evaluated and printed as it is
//!   ([`records`]).
//! * Gzip is recognised by its magic bytes and decompressed as a stream ([`input`]).
//!
//! Matches go to stdout, one compact JSON line each, in input order. Problems with the input go
//! to stderr with `file:line`, are counted and skipped: a damaged file never stops the sweep.

mod input;
mod lines;
mod records;

use std::fmt;
use std::io::{self, BufWriter, IsTerminal, Read, StdoutLock, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use filter_pattern::{FilterPattern, PatternKind};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::ScanArgs;

pub use input::{detect_format, Format};

/// How much of a file is read at a time. 1 MiB stays in the L2 cache, where the kernel's copy
/// lands and the line split reads it back (8 MiB measured ~30% slower end to end on the
/// benchmark, mostly in system time); a line longer than this grows the buffer.
const CHUNK_BYTES: usize = 1 << 20;

/// Reports of malformed records per file before the rest are only counted, so that one
/// broken file cannot flood the terminal.
const MAX_REPORTS_PER_FILE: u64 = 10;

/// What a scan counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Files opened and scanned.
    pub files: u64,
    /// Records seen (non-blank lines, or elements of `Records`/arrays).
    pub records: u64,
    /// Records the pattern matched (and that were printed).
    pub matches: u64,
    /// Malformed records plus malformed or truncated files.
    pub malformed: u64,
    /// Paths that could not be read at all.
    pub unreadable: u64,
    /// Bytes scanned, after decompression.
    pub bytes: u64,
    /// Bytes read from disk.
    pub disk_bytes: u64,
}

/// Runs `rolewatch scan`.
///
/// # Errors
///
/// A `UsageError` for an invalid pattern; an error when stdout fails (other than a closed
/// pipe, which ends the scan quietly). Unreadable paths and malformed input are not errors:
/// they are reported and counted, and the exit status says whether any path was unreadable.
pub fn run(args: &ScanArgs) -> anyhow::Result<ExitCode> {
    let text = args
        .filter_pattern
        .as_deref()
        .unwrap_or(crate::rules::DOCUMENTED_PATTERN);
    let pattern = crate::exit::compile_pattern(text)?;
    // A synchronous command timing itself for the summary line: no runtime, no schedule.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();

    let progress = if io::stderr().is_terminal() {
        Some(new_progress_bar())
    } else {
        None
    };
    let reporter = Reporter { progress };

    let mut unreadable = 0;
    let files = input::collect_files(&args.paths, |path, reason| {
        unreadable += 1;
        reporter.warn(format_args!("cannot read {}: {reason}", path.display()));
    });
    if let Some(bar) = &reporter.progress {
        bar.set_length(files.iter().map(|file| file.size).sum());
    }

    let mut scanner = Scanner {
        pattern: &pattern,
        is_json: pattern.kind() == PatternKind::Json,
        validate: args.validate,
        out: BufWriter::with_capacity(1 << 16, io::stdout().lock()),
        stats: Stats {
            unreadable,
            ..Stats::default()
        },
        reporter,
        reports_in_file: 0,
    };
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut done_bytes = 0;
    for file in &files {
        let outcome = scanner
            .scan_file(&file.path, done_bytes, &mut buf)
            .and_then(|()| scanner.out.flush());
        if let Err(err) = outcome {
            if err.kind() == io::ErrorKind::BrokenPipe {
                // The reader of our output has gone (`| head`): stop quietly, like other Unix
                // filters.
                return Ok(ExitCode::SUCCESS);
            }
            return Err(anyhow::Error::new(err).context("cannot write to stdout"));
        }
        done_bytes += file.size;
    }
    if let Some(bar) = &scanner.reporter.progress {
        bar.finish_and_clear();
    }
    let stats = scanner.stats;
    eprintln!("rolewatch: {}", Summary(&stats, started.elapsed()));
    Ok(if stats.unreadable > 0 {
        ExitCode::from(crate::exit::EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

fn new_progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// The one-line summary printed on stderr at the end.
struct Summary<'a>(&'a Stats, Duration);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Summary(stats, elapsed) = self;
        let megabytes = stats.bytes as f64 / 1e6;
        let seconds = elapsed.as_secs_f64();
        write!(
            f,
            "scanned {} files, {} records, {} matches, {} malformed, {:.2} MB",
            stats.files, stats.records, stats.matches, stats.malformed, megabytes
        )?;
        if stats.disk_bytes != stats.bytes {
            write!(f, " ({:.2} MB on disk)", stats.disk_bytes as f64 / 1e6)?;
        }
        write!(f, " in {seconds:.2} s")?;
        if seconds > 0.0 {
            write!(f, ", {:.1} MB/s", megabytes / seconds)?;
        }
        if stats.unreadable > 0 {
            write!(f, "; {} paths could not be read", stats.unreadable)?;
        }
        Ok(())
    }
}

/// Where messages for the user go: stderr, around the progress bar when there is one.
struct Reporter {
    progress: Option<ProgressBar>,
}

impl Reporter {
    fn warn(&self, message: fmt::Arguments<'_>) {
        match &self.progress {
            Some(bar) => bar.suspend(|| eprintln!("rolewatch: {message}")),
            None => eprintln!("rolewatch: {message}"),
        }
    }
}

/// An interruption while scanning one file.
enum Interrupt {
    /// Writing a match failed: the whole scan stops.
    Output(io::Error),
    /// Reading the file failed part way (at this line, when known): the file is reported and
    /// the scan goes on.
    Input(io::Error, Option<u64>),
}

/// The state of one scan.
struct Scanner<'p> {
    pattern: &'p FilterPattern,
    is_json: bool,
    validate: bool,
    out: BufWriter<StdoutLock<'static>>,
    stats: Stats,
    reporter: Reporter,
    /// Malformed records reported in the current file, for [`MAX_REPORTS_PER_FILE`].
    reports_in_file: u64,
}

impl Scanner<'_> {
    /// Scans one file, reporting and counting what is wrong with it.
    ///
    /// `done_bytes` is the size of the files before it, for the progress bar; `buf` is the
    /// reusable read buffer (at least [`CHUNK_BYTES`] long).
    ///
    /// Only a failure to write the output is returned.
    fn scan_file(&mut self, path: &Path, done_bytes: u64, buf: &mut Vec<u8>) -> io::Result<()> {
        self.reports_in_file = 0;
        let mut opened = match input::open(path) {
            Ok(opened) => opened,
            Err(err) => {
                self.stats.unreadable += 1;
                self.reporter
                    .warn(format_args!("cannot read {}: {err}", path.display()));
                return Ok(());
            }
        };
        self.stats.files += 1;
        let progress = self.reporter.progress.clone();
        let disk_bytes = std::rc::Rc::clone(&opened.disk_bytes);
        let update_progress = move || {
            if let Some(bar) = &progress {
                bar.set_position(done_bytes + disk_bytes.get());
            }
        };

        let result = self.scan_stream(path, &mut *opened.reader, buf, &update_progress);
        self.stats.disk_bytes += opened.disk_bytes.get();
        update_progress();
        match result {
            Ok(()) => Ok(()),
            Err(Interrupt::Output(err)) => Err(err),
            Err(Interrupt::Input(err, line)) => {
                self.report_read_error(path, line, opened.gzip, &err);
                Ok(())
            }
        }
    }

    /// Reads the first chunk, recognises the format and scans the rest accordingly.
    fn scan_stream(
        &mut self,
        path: &Path,
        reader: &mut dyn Read,
        buf: &mut Vec<u8>,
        update_progress: &dyn Fn(),
    ) -> Result<(), Interrupt> {
        let first = fill(reader, buf, 0);
        match detect_format(&buf[..first.filled]) {
            Format::JsonLines => self.scan_lines(path, reader, buf, first, update_progress),
            format => {
                let end = match first.error {
                    Some(err) => {
                        self.stats.bytes += first.filled as u64;
                        return Err(Interrupt::Input(err, None));
                    }
                    None if first.eof => first.filled,
                    None => {
                        // A document larger than one chunk: it must be whole to be parsed.
                        buf.truncate(first.filled);
                        let read = reader.read_to_end(buf);
                        let end = buf.len();
                        // Keep the buffer at least a chunk long for the next file.
                        buf.resize(end.max(CHUNK_BYTES), 0);
                        if let Err(err) = read {
                            self.stats.bytes += end as u64;
                            return Err(Interrupt::Input(err, None));
                        }
                        end
                    }
                };
                self.stats.bytes += end as u64;
                self.scan_document(path, format, &buf[..end])
                    .map_err(Interrupt::Output)
            }
        }
    }

    /// Reports a read that failed part way through a file. A damaged or truncated gzip stream
    /// is a malformed file (what it held up to the damage has been scanned); any other
    /// failure means the file could not be read.
    fn report_read_error(&mut self, path: &Path, line: Option<u64>, gzip: bool, err: &io::Error) {
        let at = line.map_or_else(String::new, |line| format!(":{line}"));
        let damaged = gzip
            && matches!(
                err.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::InvalidData
                    | io::ErrorKind::InvalidInput
            );
        if damaged {
            self.stats.malformed += 1;
            self.reporter.warn(format_args!(
                "{}{at}: malformed file, damaged or truncated gzip stream (the records before the damage were scanned): {err}",
                path.display()
            ));
        } else {
            self.stats.unreadable += 1;
            self.reporter
                .warn(format_args!("cannot read {}: {err}", path.display()));
        }
    }

    /// Counts a malformed record and reports it, up to [`MAX_REPORTS_PER_FILE`] per file.
    fn malformed(&mut self, path: &Path, at: u64, what: fmt::Arguments<'_>) {
        self.stats.malformed += 1;
        self.reports_in_file += 1;
        if self.reports_in_file <= MAX_REPORTS_PER_FILE {
            self.reporter.warn(format_args!(
                "{}:{at}: malformed record, skipped: {what}",
                path.display()
            ));
        }
        if self.reports_in_file == MAX_REPORTS_PER_FILE {
            self.reporter.warn(format_args!(
                "{}: further malformed records in this file are counted, not reported",
                path.display()
            ));
        }
    }

    /// Counts and reports a file that cannot be scanned as a whole (a document that does not
    /// parse).
    fn malformed_file(&mut self, path: &Path, line: usize, what: fmt::Arguments<'_>) {
        self.stats.malformed += 1;
        self.reporter.warn(format_args!(
            "{}:{line}: malformed file, skipped: {what}",
            path.display()
        ));
    }

    /// Evaluates one record's text (known to be UTF-8) and prints it when it matches.
    ///
    /// Returns whether the record was found malformed (only checked where it matters: a JSON
    /// pattern's candidates, and every match).
    fn evaluate(&mut self, text: &str, known_valid: bool) -> io::Result<Verdict> {
        match self.pattern.evaluate(text) {
            Some(_) => {
                if !known_valid && !self.is_json && !is_json_text(text) {
                    return Ok(Verdict::Malformed);
                }
                self.stats.matches += 1;
                write_compact(&mut self.out, text)?;
                Ok(Verdict::Match)
            }
            None if !known_valid && self.is_json && !is_json_text(text) => Ok(Verdict::Malformed),
            None => Ok(Verdict::NoMatch),
        }
    }
}

/// What became of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Match,
    NoMatch,
    Malformed,
}

/// A lone UTF-16 surrogate escape in a record's JSON text (`\udc80`), described: such text is
/// not valid Unicode, and the evaluator cannot read the field that holds it, so the record is
/// malformed rather than silently unmatched. A valid U+FFFD is ordinary text.
fn lone_surrogate(text: &str) -> Option<String> {
    let at = crate::source::lenient::lone_surrogate_escape(text.as_bytes())?;
    Some(format!(
        "a lone UTF-16 surrogate escape ({})",
        text.get(at..at + 6).unwrap_or("\\u")
    ))
}

/// Whether `text` is one JSON value.
fn is_json_text(text: &str) -> bool {
    serde_json::from_str::<&serde_json::value::RawValue>(text).is_ok()
}

/// The result of filling the buffer.
struct Fill {
    /// Bytes of `buf` that hold data.
    filled: usize,
    /// The end of the stream was reached.
    eof: bool,
    /// Reading failed after `filled` bytes.
    error: Option<io::Error>,
}

/// Reads into `buf[filled..]` until it is full, the stream ends or a read fails.
fn fill(reader: &mut dyn Read, buf: &mut [u8], mut filled: usize) -> Fill {
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => {
                return Fill {
                    filled,
                    eof: true,
                    error: None,
                }
            }
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                return Fill {
                    filled,
                    eof: true,
                    error: Some(err),
                }
            }
        }
    }
    Fill {
        filled,
        eof: false,
        error: None,
    }
}

/// Writes one record as one line: as it is, or with the insignificant whitespace between
/// tokens removed when it spans lines (a pretty-printed trail file); U+0085, U+2028 and
/// U+2029 are written as escapes either way.
fn write_compact(out: &mut impl Write, json: &str) -> io::Result<()> {
    // Line separators JSON leaves unescaped would cut the line for some readers.
    let json = crate::output::escape_line_breakers(json);
    if !json.contains(['\n', '\r']) {
        out.write_all(json.as_bytes())?;
        return out.write_all(b"\n");
    }
    let mut compact = Vec::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json.as_bytes() {
        if in_string {
            compact.push(byte);
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            in_string = byte == b'"';
            compact.push(byte);
        }
    }
    compact.push(b'\n');
    out.write_all(&compact)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(json: &str) -> String {
        let mut out = Vec::new();
        write_compact(&mut out, json).expect("writes to a Vec");
        String::from_utf8(out).expect("UTF-8 in, UTF-8 out")
    }

    #[test]
    fn write_compact_keeps_single_line_records_as_they_are() {
        assert_eq!(
            compact(r#"{"a": 1, "b" : "x y"}"#),
            "{\"a\": 1, \"b\" : \"x y\"}\n"
        );
    }

    #[test]
    fn write_compact_escapes_line_separators() {
        assert_eq!(
            compact("{\"a\": \"x\u{2028}y\u{85}\",\n \"b\": \"\u{2029}\"}"),
            "{\"a\":\"x\\u2028y\\u0085\",\"b\":\"\\u2029\"}\n"
        );
    }

    #[test]
    fn write_compact_removes_whitespace_between_tokens_only() {
        let pretty = "{\n  \"a\" : \"x \\\" y\",\r\n\t\"b\": [ 1, 2 ]\n}";
        assert_eq!(compact(pretty), "{\"a\":\"x \\\" y\",\"b\":[1,2]}\n");
    }

    #[test]
    fn only_text_that_is_not_unicode_is_malformed() {
        assert_eq!(
            lone_surrogate(r#"{"userAgent":"x\udc80"}"#).as_deref(),
            Some("a lone UTF-16 surrogate escape (\\udc80)")
        );
        for valid in [
            "{\"userAgent\":\"aws-cli\u{FFFD}\"}",
            r#"{"userAgent":"aws-cli\ufffd \\udc80 \ud83d\ude00"}"#,
        ] {
            assert_eq!(lone_surrogate(valid), None, "{valid}");
        }
    }

    #[test]
    fn summary_reads_as_one_line() {
        let stats = Stats {
            files: 2,
            records: 10,
            matches: 1,
            malformed: 3,
            unreadable: 1,
            bytes: 2_000_000,
            disk_bytes: 500_000,
        };
        let line = Summary(&stats, Duration::from_secs(2)).to_string();
        assert_eq!(
            line,
            "scanned 2 files, 10 records, 1 matches, 3 malformed, 2.00 MB (0.50 MB on disk) in 2.00 s, 1.0 MB/s; 1 paths could not be read"
        );
    }
}
