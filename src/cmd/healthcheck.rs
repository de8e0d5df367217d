//! `rolewatch healthcheck`: the probe a container runtime runs inside the image (the image
//! has no shell, curl or wget). It asks the daemon's admin endpoint — `/healthz` by default,
//! `/readyz` with `--ready` — and exits 0 on `200 OK`, 1 otherwise, within a time limit.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::cli::HealthcheckArgs;
use crate::config;
use crate::exit::EXIT_CONFIG;
use crate::exit::EXIT_FAILURE;

/// The most of a response body echoed to stdout.
const MAX_ECHO: usize = 4096;

/// Runs the probe; prints `ok 200 URL` or `FAILED …` and the response body (truncated).
///
/// # Errors
///
/// An invalid configuration (when `--url` is not given), which [`crate::exit_code`] maps to 78.
pub fn run(args: &HealthcheckArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let url = match &args.url {
        Some(u) => u.clone(),
        None => {
            let cfg = config::load(args.config.as_deref())?;
            let Some(listen) = cfg.admin.listen else {
                writeln!(
                    out,
                    "FAILED: the admin endpoint is disabled ([admin] enabled = false); nothing to probe"
                )?;
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            let path = if args.ready { "/readyz" } else { "/healthz" };
            format!("http://{listen}{path}")
        }
    };
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|e| crate::exit::UsageError(format!("`{url}` is not a URL: {e}").into()))?;
    if uri.scheme_str() != Some("http") {
        return Err(crate::exit::UsageError(
            format!("`{url}`: the admin endpoint speaks plain http").into(),
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let result = runtime.block_on(async {
        tokio::time::timeout(timeout, probe(uri))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", timeout.as_secs())))
    });
    match result {
        Ok((200, body)) => {
            writeln!(out, "ok 200 {url}")?;
            echo(out, &body)?;
            Ok(ExitCode::SUCCESS)
        }
        Ok((status, body)) => {
            writeln!(out, "FAILED {status} {url}")?;
            echo(out, &body)?;
            Ok(ExitCode::from(EXIT_FAILURE))
        }
        Err(e) => {
            writeln!(out, "FAILED {url}: {e}")?;
            Ok(ExitCode::from(EXIT_FAILURE))
        }
    }
}

/// One GET; the status and the body.
async fn probe(uri: axum::http::Uri) -> Result<(u16, Vec<u8>), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<axum::body::Bytes>>();
    // "client error (Connect)" alone says little; the causes say "Connection refused".
    let response = client
        .get(uri)
        .await
        .map_err(|e| crate::aws::chain_text(&e))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    Ok((status, body.to_vec()))
}

fn echo(out: &mut dyn Write, body: &[u8]) -> std::io::Result<()> {
    if body.is_empty() {
        return Ok(());
    }
    let shown = &body[..body.len().min(MAX_ECHO)];
    let text = String::from_utf8_lossy(shown);
    // The body is ours (JSON), but keep control characters off the terminal anyway.
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    writeln!(out, "{}", clean.trim_end())?;
    if body.len() > MAX_ECHO {
        writeln!(out, "… ({} bytes in all)", body.len())?;
    }
    Ok(())
}
