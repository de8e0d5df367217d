//! Change intelligence: who changed the vendor's role (the vendor, an AWS service, or your
//! side), what exactly changed, and whether access widened.
//!
//! * [`policy`]: policy documents in normal form, the statement-by-statement diff and the
//!   verdict (`widened`, `narrowed`, `unchanged`, `unknown`). Pure.
//! * [`actor`]: the actor class and the final severity. Pure.
//! * [`iam`]: the read-only IAM calls, behind the [`iam::IamReader`] trait.
//! * [`memo`]: one pass's IAM answers, each distinct call made once (and concurrently).
//! * [`baseline`]: the snapshot of the role kept in the state, and how the role differs
//!   from it.
//! * [`known`]: the last known state of the role (the baseline with every analysed change
//!   since applied): what each change is judged against.
//! * [`expect`]: whether a change is one `[[expect]]` announced, and stays within it. Pure.
//! * [`analysis`]: one alert's [`analysis::Analysis`], all IAM calls bounded by a budget.
//! * [`worker`]: analyses new alerts and takes the baseline, beside the poll loop.

pub mod actor;
pub mod analysis;
pub mod baseline;
pub mod expect;
pub mod iam;
pub mod known;
pub mod memo;
pub mod policy;
pub mod worker;

pub use analysis::{Analysis, Analyzer};
pub use policy::Verdict;

#[cfg(test)]
mod tests;
