//! The runtime: the poll cycle of one source (window → fetch → engine → state), the clock
//! seam, and the long-running loop.
//!
//! - [`poll`]: one poll of one source, committing as it goes; catch-up and coverage gaps.
//! - [`clock`]: wall-clock reads in one place, so tests can set the time.
//! - [`daemon`]: `rolewatch run`: poll every source on its schedule until told to stop;
//!   `rolewatch once`.
//! - [`health`]: watching the watcher: blind sources, recovery, readiness (pure).
//! - [`metrics`]: the counters and gauges of `/metrics`, named like their log events.

pub mod clock;
pub mod daemon;
pub mod health;
pub mod metrics;
pub mod poll;
