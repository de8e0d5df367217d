//! The harness of the integration tests: real servers on loopback ([`servers`]), the binary
//! under test and what it leaves behind ([`daemon`]), and test data ([`records`]). Test modules
//! take what they need with `use crate::support::…`.

pub mod daemon;
pub mod records;
pub mod servers;

pub use daemon::*;
pub use records::*;
pub use servers::*;
