//! The admin HTTP endpoint of `rolewatch run` (axum), on `[admin] listen`
//! (`127.0.0.1:9464` by default; it has no authentication, so keep it on loopback):
//!
//! * `/healthz`: liveness — 200 while the process serves HTTP.
//! * `/readyz`: 200 when the state is loaded and every source's last successful poll is at
//!   most twice its interval old; 503 otherwise. Either way a JSON body says, per source,
//!   whether it is ready and why not.
//! * `/metrics`: Prometheus text format ([`crate::telemetry::metrics`] lists the names).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

/// What the admin endpoint may read of the running daemon: readiness and the metrics text,
/// nothing else. The runtime implements it; admin knows nothing of the runtime.
pub trait AdminView: Send + Sync + 'static {
    /// Ready or not, and the JSON body that says why.
    fn readiness(&self) -> (bool, serde_json::Value);
    /// The OpenMetrics text of `/metrics`.
    ///
    /// # Errors
    ///
    /// When the text cannot be formatted.
    fn metrics_text(&self) -> Result<String, std::fmt::Error>;
}

type View = Arc<dyn AdminView>;

/// Binds `addr` and serves the endpoints until `shutdown` is cancelled.
///
/// # Errors
///
/// When the address cannot be bound (in use, not local, no permission).
pub async fn serve(
    addr: SocketAddr,
    view: View,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the admin endpoint ([admin] listen; `enabled = false` turns it off)")
    })?;
    let local = listener.local_addr().unwrap_or(addr);
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(view);
    tracing::info!(listen = %local, "Admin endpoint: /healthz, /readyz, /metrics");
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(event = "admin_failed", error = %e, "The admin endpoint stopped");
        }
    }))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(view): State<View>) -> impl IntoResponse {
    let (ready, body) = view.readiness();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
}

async fn metrics(State(view): State<View>) -> impl IntoResponse {
    match view.metrics_text() {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "cannot format the metrics\n".to_owned(),
        ),
    }
}
