//! `rolewatch check`: a read-only, one-shot poll of the configured sources over a window,
//! printing each match as one JSON line. It touches no state and sends nothing.

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::cli::CheckArgs;
use crate::config;
use crate::event::Window;
use crate::exit::UsageError;
use crate::source::FetchStats;
use crate::time::parse_rfc3339_ms;
use crate::time::{Clock, SystemClock};

/// The window `check` reads: `--since` back from now (default one hour), or `--start` to
/// `--end` (default now).
///
/// # Errors
///
/// A [`UsageError`] for an unreadable time or an empty window.
pub fn window(args: &CheckArgs, now_ms: i64) -> anyhow::Result<Window> {
    let usage = |m: String| anyhow::Error::from(UsageError(m.into()));
    let end = match &args.end {
        Some(t) => parse_rfc3339_ms(t).ok_or_else(|| {
            usage(format!(
                "--end `{t}` is not an RFC 3339 time such as 2024-05-01T12:00:00Z"
            ))
        })?,
        None => now_ms,
    };
    let start = match (&args.start, &args.since) {
        (Some(t), _) => parse_rfc3339_ms(t).ok_or_else(|| {
            usage(format!(
                "--start `{t}` is not an RFC 3339 time such as 2024-05-01T12:00:00Z"
            ))
        })?,
        (None, Some(d)) => {
            let d: Duration = humantime::parse_duration(d).map_err(|e| {
                usage(format!(
                    "--since `{d}` is not a duration such as 90m or 2h: {e}"
                ))
            })?;
            end - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
        }
        (None, None) => end - 3_600_000,
    };
    if start >= end {
        return Err(usage(
            "the window is empty: the start must be before the end".into(),
        ));
    }
    Ok(Window {
        start_ms: start,
        end_ms: end,
    })
}

/// The command: text logs, then [`run`] on its own runtime.
///
/// # Errors
///
/// As [`run`].
pub fn main(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    super::init_logging(crate::config::LogFormat::Text);
    super::tokio_runtime()?.block_on(run(args))
}

/// Runs `check`.
///
/// # Errors
///
/// Configuration (exit 78), usage (exit 2), credentials; a failing source makes the exit
/// status 1 after the other sources ran.
pub async fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let cfg = config::load(args.config.as_deref())?;
    let now = SystemClock.now_ms();
    let window = window(args, now)?;
    // `[organization]`: every account it lets in now, as the daemon would read them.
    let cfg = crate::runtime::organization::resolve(&cfg).await?;
    let built = crate::runtime::build::pipeline(&cfg).await?;
    let engine = built.engine;
    let mut failed = 0;
    let mut total = FetchStats::default();
    let mut matches = 0u64;
    // One event can reach several sources; print it once per rule.
    let mut printed: HashSet<(String, String)> = HashSet::new();
    for (sc, source) in &built.sources {
        let mut out = std::io::BufWriter::new(std::io::stdout());
        let mut pages = source.pages(window, crate::aws::retry::Priority::Regular);
        loop {
            let page = match pages.next_page().await {
                Ok(Some(page)) => page,
                Ok(None) => {
                    total.add(pages.stats());
                    break;
                }
                Err(e) => {
                    total.add(e.stats);
                    failed += 1;
                    tracing::error!(source = %sc.id, error = %e, "The source could not be read");
                    break;
                }
            };
            for b in &page.bad {
                tracing::warn!(source = %sc.id, event_id = %b.event_id, reason = %b.reason, "Skipped a malformed event");
            }
            for e in &page.events {
                for rule in engine.matching(&e.record) {
                    if !printed.insert((rule.name.clone(), e.event_id.clone())) {
                        continue;
                    }
                    matches += 1;
                    let line = crate::output::match_line(
                        &rule.name,
                        rule.severity.as_str(),
                        &e.event_id,
                        &e.event_name,
                        e.event_time_ms,
                        source.id(),
                        &e.record,
                    )?;
                    writeln!(out, "{line}").context("writing to stdout")?;
                }
            }
        }
        out.flush().context("writing to stdout")?;
    }
    eprintln!(
        "rolewatch check: {} source(s), {} → {}, {} requests ({} throttled, {} retries), {} events, {} matches, {} malformed, {} failed source(s)",
        cfg.sources.len(),
        crate::time::format_rfc3339_ms(window.start_ms),
        crate::time::format_rfc3339_ms(window.end_ms),
        total.requests,
        total.throttled,
        total.retries,
        total.events,
        matches,
        total.bad,
        failed
    );
    Ok(if failed > 0 {
        ExitCode::from(crate::exit::EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(since: Option<&str>, start: Option<&str>, end: Option<&str>) -> CheckArgs {
        CheckArgs {
            config: None,
            since: since.map(str::to_owned),
            start: start.map(str::to_owned),
            end: end.map(str::to_owned),
        }
    }

    #[test]
    fn windows() {
        let now = 1_714_564_800_000;
        assert_eq!(
            window(&args(None, None, None), now).unwrap(),
            Window {
                start_ms: now - 3_600_000,
                end_ms: now
            }
        );
        assert_eq!(
            window(&args(Some("90m"), None, None), now)
                .unwrap()
                .start_ms,
            now - 5_400_000
        );
        let w = window(
            &args(
                None,
                Some("2024-05-01T00:00:00Z"),
                Some("2024-05-01T06:00:00Z"),
            ),
            now,
        )
        .unwrap();
        assert_eq!(w.end_ms - w.start_ms, 6 * 3_600_000);
        assert!(window(&args(Some("soon"), None, None), now).is_err());
        assert!(window(
            &args(
                None,
                Some("2024-05-02T00:00:00Z"),
                Some("2024-05-01T00:00:00Z")
            ),
            now
        )
        .is_err());
    }
}
