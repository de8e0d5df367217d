//! Telemetry: what rolewatch knows about itself. Pure and low in the graph, below every stage
//! that reports into it (sources' health, channels' episodes) and the admin endpoint that
//! shows it.
//!
//! - [`episode`]: the one failure-episode machine (blind sources, failing channels).
//! - [`events`]: notable runtime events as values whose `emit` logs and counts them.
//! - [`health`]: watching the watcher: blind sources, recovery, readiness (pure).
//! - [`metrics`]: the counters and gauges of `/metrics`, named like their log events.

pub mod episode;
pub mod events;
pub mod health;
pub mod metrics;
