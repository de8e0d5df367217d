//! The runtime: the poll cycle of one source (window → fetch → engine → state) and the
//! long-running loop that runs the stages as sibling tasks.
//!
//! - [`build`]: the engine, the AWS configuration and the sources from a configuration, for
//!   the daemon and `check`.
//! - [`poll`]: one poll of one source, committing as it goes; catch-up, coverage gaps, the
//!   reconciliation sweep.
//! - [`queue`]: one receive cycle of an `sqs` source: long poll, engine, commit, then delete.
//! - [`daemon`]: `rolewatch run`: poll every source on its schedule until told to stop;
//!   `rolewatch once`.
//! - [`organization`]: `[organization]` discovery, and the daemon restarted on the new
//!   accounts when they change.
//!
//! Health and metrics live in [`crate::telemetry`]; the clock seam in [`crate::time`].

pub mod build;
pub mod daemon;
pub mod organization;
pub mod poll;
pub mod queue;
pub mod shutdown;
