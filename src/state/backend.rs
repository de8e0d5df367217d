//! [`Backend`]: what the pipeline asks of the state, whatever stores it.
//!
//! Async code reaches the state only through [`super::Store`], and the store hands its
//! closures a `&mut dyn Backend`, never the SQLite [`State`] itself: the poller, the outbox,
//! the change-analysis worker and the runtime compile against this trait alone, so a second
//! backend (a shared store for several replicas) is one more implementation, not a change of
//! the pipeline. Every method is one transaction or one read, and every timestamp is an
//! argument in unix milliseconds (a backend never reads the clock).
//!
//! Calls are synchronous: [`super::Store::with`] runs them off the async workers' schedule
//! (`block_in_place`), where a networked backend may block on its own client.

use std::collections::HashSet;

use super::{
    Committed, Cursor, Delivery, Gap, LastKnownRow, Leadership, NewAlert, PollCommit, State,
    StateError, StateStats, StoredAlert,
};

/// The state as the pipeline uses it. [`State`] (SQLite) is the one implementation today;
/// its inherent methods document each call.
pub trait Backend: Send {
    /// Where the state lives, for messages (a file path, a table name).
    fn location(&self) -> String;

    // Polls and sweeps.
    fn cursor(&self, source_id: &str) -> Result<Option<i64>, StateError>;
    fn cursors(&self) -> Result<Vec<Cursor>, StateError>;
    fn seen_ids(&self, source_id: &str, event_ids: &[&str]) -> Result<HashSet<String>, StateError>;
    fn commit_poll(&mut self, c: &PollCommit<'_>) -> Result<Committed, StateError>;
    fn record_notice(
        &mut self,
        alert: &NewAlert<'_>,
        channels: &[&str],
        now_ms: i64,
    ) -> Result<Option<StoredAlert>, StateError>;
    fn last_sweep_ms(&self, source_id: &str) -> Result<Option<i64>, StateError>;
    fn record_sweep(&mut self, source_id: &str, at_ms: i64) -> Result<(), StateError>;
    fn gaps(&self, source_id: Option<&str>) -> Result<Vec<Gap>, StateError>;
    fn stats(&self) -> Result<StateStats, StateError>;

    // The outbox.
    fn undelivered_alerts(
        &self,
        channel: &str,
        limit: usize,
    ) -> Result<Vec<StoredAlert>, StateError>;
    fn due_alerts(
        &self,
        channel: &str,
        now_ms: i64,
        analysis_wait_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredAlert>, StateError>;
    fn make_due(&mut self, channel: &str, now_ms: i64) -> Result<usize, StateError>;
    fn next_attempt_ms(&self) -> Result<Option<i64>, StateError>;
    fn alert(&self, alert_id: i64) -> Result<Option<StoredAlert>, StateError>;
    fn delivery(&self, alert_id: i64, channel: &str) -> Result<Option<Delivery>, StateError>;
    fn mark_delivered(
        &mut self,
        alert_id: i64,
        channel: &str,
        now_ms: i64,
    ) -> Result<(), StateError>;
    fn mark_failed(
        &mut self,
        alert_id: i64,
        channel: &str,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StateError>;

    // The change analysis.
    fn put_analysis(
        &mut self,
        alert_id: i64,
        analysis: &str,
        now_ms: i64,
    ) -> Result<(), StateError>;
    fn put_analysis_and_last_known(
        &mut self,
        alert_id: i64,
        analysis: &str,
        now_ms: i64,
        role_name: &str,
        last_known: &LastKnownRow,
    ) -> Result<(), StateError>;
    fn last_known(&self, role_name: &str) -> Result<Option<LastKnownRow>, StateError>;
    fn analysis(&self, alert_id: i64) -> Result<Option<String>, StateError>;
    fn unanalysed_alerts(&self, limit: usize) -> Result<Vec<StoredAlert>, StateError>;
    fn put_baseline(
        &mut self,
        role_name: &str,
        taken_ms: i64,
        snapshot: &str,
    ) -> Result<(), StateError>;
    fn latest_baseline(&self, role_name: &str) -> Result<Option<(i64, String)>, StateError>;

    // Replicas (a shared backend): which one polls. SQLite has one rolewatch, always `Sole`.

    /// Takes, keeps or renews this replica's lease at `now_ms`; call every third of
    /// [`Backend::lease_ms`].
    fn hold_lease(&mut self, _now_ms: i64) -> Result<Leadership, StateError> {
        Ok(Leadership::Sole)
    }
    /// This replica's standing at `now_ms`, without a request.
    fn leadership(&self, _now_ms: i64) -> Leadership {
        Leadership::Sole
    }
    /// Gives the lease up (on shutdown), so that a follower takes over at once.
    fn release_lease(&mut self) -> Result<(), StateError> {
        Ok(())
    }
    /// The lease period (ms) of a shared backend; `None`: no lease (SQLite).
    fn lease_ms(&self) -> Option<i64> {
        None
    }
}

/// Each method is the inherent method of the same name (which inherent-first method lookup
/// picks here, so none of these recurses).
impl Backend for State {
    fn location(&self) -> String {
        self.path().display().to_string()
    }
    fn cursor(&self, source_id: &str) -> Result<Option<i64>, StateError> {
        State::cursor(self, source_id)
    }
    fn cursors(&self) -> Result<Vec<Cursor>, StateError> {
        State::cursors(self)
    }
    fn seen_ids(&self, source_id: &str, event_ids: &[&str]) -> Result<HashSet<String>, StateError> {
        State::seen_ids(self, source_id, event_ids)
    }
    fn commit_poll(&mut self, c: &PollCommit<'_>) -> Result<Committed, StateError> {
        State::commit_poll(self, c)
    }
    fn record_notice(
        &mut self,
        alert: &NewAlert<'_>,
        channels: &[&str],
        now_ms: i64,
    ) -> Result<Option<StoredAlert>, StateError> {
        State::record_notice(self, alert, channels, now_ms)
    }
    fn last_sweep_ms(&self, source_id: &str) -> Result<Option<i64>, StateError> {
        State::last_sweep_ms(self, source_id)
    }
    fn record_sweep(&mut self, source_id: &str, at_ms: i64) -> Result<(), StateError> {
        State::record_sweep(self, source_id, at_ms)
    }
    fn gaps(&self, source_id: Option<&str>) -> Result<Vec<Gap>, StateError> {
        State::gaps(self, source_id)
    }
    fn stats(&self) -> Result<StateStats, StateError> {
        State::stats(self)
    }
    fn undelivered_alerts(
        &self,
        channel: &str,
        limit: usize,
    ) -> Result<Vec<StoredAlert>, StateError> {
        State::undelivered_alerts(self, channel, limit)
    }
    fn due_alerts(
        &self,
        channel: &str,
        now_ms: i64,
        analysis_wait_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredAlert>, StateError> {
        State::due_alerts(self, channel, now_ms, analysis_wait_ms, limit)
    }
    fn make_due(&mut self, channel: &str, now_ms: i64) -> Result<usize, StateError> {
        State::make_due(self, channel, now_ms)
    }
    fn next_attempt_ms(&self) -> Result<Option<i64>, StateError> {
        State::next_attempt_ms(self)
    }
    fn alert(&self, alert_id: i64) -> Result<Option<StoredAlert>, StateError> {
        State::alert(self, alert_id)
    }
    fn delivery(&self, alert_id: i64, channel: &str) -> Result<Option<Delivery>, StateError> {
        State::delivery(self, alert_id, channel)
    }
    fn mark_delivered(
        &mut self,
        alert_id: i64,
        channel: &str,
        now_ms: i64,
    ) -> Result<(), StateError> {
        State::mark_delivered(self, alert_id, channel, now_ms)
    }
    fn mark_failed(
        &mut self,
        alert_id: i64,
        channel: &str,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StateError> {
        State::mark_failed(self, alert_id, channel, error, retry_at_ms)
    }
    fn put_analysis(
        &mut self,
        alert_id: i64,
        analysis: &str,
        now_ms: i64,
    ) -> Result<(), StateError> {
        State::put_analysis(self, alert_id, analysis, now_ms)
    }
    fn analysis(&self, alert_id: i64) -> Result<Option<String>, StateError> {
        State::analysis(self, alert_id)
    }
    fn unanalysed_alerts(&self, limit: usize) -> Result<Vec<StoredAlert>, StateError> {
        State::unanalysed_alerts(self, limit)
    }
    fn put_baseline(
        &mut self,
        role_name: &str,
        taken_ms: i64,
        snapshot: &str,
    ) -> Result<(), StateError> {
        State::put_baseline(self, role_name, taken_ms, snapshot)
    }
    fn latest_baseline(&self, role_name: &str) -> Result<Option<(i64, String)>, StateError> {
        State::latest_baseline(self, role_name)
    }
    fn put_analysis_and_last_known(
        &mut self,
        alert_id: i64,
        analysis: &str,
        now_ms: i64,
        role_name: &str,
        last_known: &LastKnownRow,
    ) -> Result<(), StateError> {
        State::put_analysis_and_last_known(self, alert_id, analysis, now_ms, role_name, last_known)
    }
    fn last_known(&self, role_name: &str) -> Result<Option<LastKnownRow>, StateError> {
        State::last_known(self, role_name)
    }
}
