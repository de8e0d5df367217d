//! The runtime: the poll cycle of one source (window → fetch → engine → state), the clock
//! seam, and the long-running loop.
//!
//! - [`poll`]: one poll of one source, committing as it goes; catch-up and coverage gaps.
//! - [`clock`]: wall-clock reads in one place, so tests can set the time.
//! - [`daemon`]: `rolewatch run`: poll every source on its interval until told to stop.

pub mod clock;
pub mod daemon;
pub mod poll;
