//! Telemetry: what rolewatch knows about itself, below the runtime that feeds it and the admin
//! endpoint that shows it.
//!
//! - [`health`]: watching the watcher: blind sources, recovery, readiness (pure).
//! - [`metrics`]: the counters and gauges of `/metrics`, named like their log events.

pub mod health;
pub mod metrics;
