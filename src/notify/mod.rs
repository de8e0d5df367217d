//! Notifications: the alert model, its renderings, and (with later work) the channels that
//! deliver them.
//!
//! * [`alert`]: [`alert::Alert`], built from a stored match; every field optional.
//! * [`render`]: subject, plain text, HTML and JSON of an alert, golden-tested.
//! * [`sanitize`]: making event-derived strings safe for a subject, a body or a header.

pub mod alert;
pub mod render;
pub mod sanitize;

#[cfg(test)]
mod tests;
