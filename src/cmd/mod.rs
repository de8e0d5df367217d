//! The commands, one module per subcommand, at the top of the import graph: each builds what
//! it needs from the stages below and runs it. [`crate::run`] dispatches here.
//!
//! * [`run`], [`once`]: the daemon, forever or for one pass (built by `runtime::daemon`).
//! * [`validate_config`]: the effective configuration and the pattern lint.
//! * [`eventbridge_pattern`]: the EventBridge event pattern an `sqs` source's rule needs.
//! * [`check`]: one read-only poll of each source, matches on stdout.
//! * [`test_pattern`]: the twin of `aws logs test-metric-filter` (and `--compare-aws`).
//! * [`scan`]: archived trail files, single-threaded and fast.
//! * [`doctor`]: read-only checks of credentials, sources, trails, channels, state and role.
//! * [`notify_test`]: one synthetic alert through every channel.
//! * [`baseline`]: the role's snapshot now, optionally recorded as the new baseline.
//! * [`expect`]: `[[expect]]` entries added, documents hashed, entries listed.
//! * [`healthcheck`]: the container probe of `/healthz` or `/readyz`.

pub mod baseline;
pub mod check;
pub mod doctor;
pub mod eventbridge_pattern;
pub mod expect;
pub mod healthcheck;
pub mod notify_test;
pub mod once;
pub mod run;
pub mod scan;
pub mod test_pattern;
pub mod validate_config;

use crate::config::LogFormat;

/// Threads of the blocking pool at most. Each call into the state runs under
/// `block_in_place` (`crate::state::Store`), which hands the worker's tasks to a thread of
/// this pool; calls wait for one another on the state's mutex, so with 1,000 accounts' polls
/// committing at once the pool grew to tokio's default limit of 512 threads, and their stacks
/// and allocator arenas were most of rolewatch's memory (about 100 MB, bench/RESULTS.md).
/// With this limit a handoff beyond it waits in the pool's queue (the thread that finishes
/// its state call takes its worker back first), so the state stays serialised as before and
/// other tasks wait at most one state call.
pub const MAX_BLOCKING_THREADS: usize = 8;

/// The runtime every async command runs on: two worker threads (rolewatch is I/O-bound; SQLite
/// work runs on the blocking pool, [`MAX_BLOCKING_THREADS`] at most).
///
/// # Errors
///
/// When the runtime cannot be built (no threads).
pub fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()?)
}

/// Logs to stderr, level from `RUST_LOG` (default `info`): JSON lines (one object per event,
/// fields flattened) or human text; `auto` picks text on a terminal and JSON otherwise (a
/// journal, a container log, a pipe).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_cron_scheduler=warn"));
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !tty,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder
            // An event field may hold U+2028 and the like: each log line stays one line.
            .with_writer(|| crate::output::LineSafeWriter::new(std::io::stderr()))
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder
            .with_writer(std::io::stderr)
            .with_ansi(tty)
            .try_init()
    };
}
