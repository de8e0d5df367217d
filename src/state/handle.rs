//! [`Store`]: the one way async code reaches the state.
//!
//! SQLite commits with `synchronous=FULL` wait for the disk; on a tokio worker thread that
//! wait would stall every task scheduled there (polls, deliveries, the admin endpoint). Each
//! call through the handle therefore runs under [`tokio::task::block_in_place`] on the
//! multi-threaded runtime — the worker hands its other tasks to another thread for the
//! duration — and directly elsewhere (a current-thread runtime in unit tests, or no runtime).
//! Calls are serialised by one mutex: SQLite allows one writer, and every call is one
//! transaction or one read.
//!
//! Async callers that come many at once (polls and their commits) use [`Store::run`], which
//! queues them on an async lock first, so a waiting caller holds no thread.
//!
//! The handle also owns the state's single-process lock file for as long as any clone lives,
//! when it was opened with one ([`Store::open_locked`]).

use std::sync::{Arc, Mutex, PoisonError};

use super::Backend;
#[cfg(test)]
use super::State;
use crate::config::Config;

/// A shared handle to the state; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<Box<dyn Backend>>,
    /// Where [`Store::run`]'s callers wait their turn: asynchronously, holding no thread.
    turn: tokio::sync::Mutex<()>,
    /// Held, never read: dropping it releases the lock.
    _lock: Option<std::fs::File>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("locked", &self.inner._lock.is_some())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Wraps an open state (tests, commands that hold the lock themselves).
    pub fn new(state: impl Backend + 'static) -> Store {
        Store {
            inner: Arc::new(Inner {
                state: Mutex::new(Box::new(state)),
                turn: tokio::sync::Mutex::new(()),
                _lock: None,
            }),
        }
    }

    /// Opens the configured state and takes its lock ([`super::open_locked`]).
    ///
    /// # Errors
    ///
    /// As [`super::open_locked`]: a state that cannot be opened, or is in use by another
    /// rolewatch.
    pub fn open_locked(cfg: &Config) -> anyhow::Result<Store> {
        if let crate::config::StateBackend::DynamoDb(d) = &cfg.state.backend {
            // Replicas share the table: no lock file; the lease decides who polls.
            let owner = replica_name();
            let (state, fresh) = super::DynamoState::open(d, &owner)?;
            tracing::info!(table = %d.table, region = %d.region, replica = %owner, "Using the DynamoDB state table");
            if fresh == super::dynamo::Freshness::Fresh {
                tracing::warn!(
                    table = %d.table,
                    lookback_secs = cfg.state.initial_lookback.as_secs(),
                    "Started with a new, empty state: each source's first poll looks back only the initial lookback"
                );
            }
            return Ok(Store::new(state));
        }
        let (state, lock) = super::open_locked(cfg)?;
        Ok(Store {
            inner: Arc::new(Inner {
                state: Mutex::new(Box::new(state) as Box<dyn Backend>),
                turn: tokio::sync::Mutex::new(()),
                _lock: Some(lock),
            }),
        })
    }

    /// Runs `f` on the state, off the async worker threads' schedule (see the module doc).
    pub fn with<T>(&self, f: impl FnOnce(&mut dyn Backend) -> T) -> T {
        let run = || {
            // A panic while holding the lock cannot leave SQLite inconsistent (every write is
            // one transaction), so a poisoned lock is still usable.
            let mut state = self
                .inner
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            f(state.as_mut())
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(run)
            }
            _ => run(),
        }
    }
}

impl Store {
    /// [`Store::with`] for async callers with many calls at once (every source's poll and
    /// commit): they wait for their turn asynchronously, so that one thread at a time is
    /// blocked in the state rather than one per waiting caller. With 1,000 accounts' polls
    /// committing together, blocking waiters grew the runtime's blocking pool to hundreds of
    /// threads (bench/RESULTS.md).
    pub async fn run<T>(&self, f: impl FnOnce(&mut dyn Backend) -> T) -> T {
        let _turn = self.inner.turn.lock().await;
        self.with(f)
    }
}

/// This replica's name in the lease: the host, the process and a random part (a restarted
/// replica is a new one).
fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!("{host}/{}/{:08x}", std::process::id(), fastrand::u32(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_state() -> State {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let state = State::open(&path).unwrap().into_state();
        std::mem::forget(dir);
        state
    }

    #[test]
    fn runs_without_a_runtime() {
        let store = Store::new(memory_state());
        assert_eq!(store.with(|s| s.cursor("x").unwrap()), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_slow_call_does_not_stall_the_other_tasks_of_its_worker() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let store = Store::new(memory_state());
        let ticks = Arc::new(AtomicU32::new(0));
        let counter = ticks.clone();
        // One worker thread: without block_in_place the ticker could not run while the slow
        // call holds it.
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        tokio::task::yield_now().await;
        let during = tokio::spawn(async move {
            store.with(|s| {
                let before = ticks.load(Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(300));
                assert!(s.cursor("x").unwrap().is_none());
                ticks.load(Ordering::SeqCst) - before
            })
        })
        .await
        .unwrap();
        ticker.abort();
        assert!(
            during >= 10,
            "the ticker ran only {during} times during the call"
        );
    }

    #[tokio::test]
    async fn runs_on_a_current_thread_runtime() {
        let store = Store::new(memory_state());
        assert_eq!(store.with(|s| s.cursor("x").unwrap()), None);
    }

    /// 200 callers at once, each call taking 2 ms: through `run` they wait their turn
    /// without a thread each (the runtime starts a handful of threads); through `with`, each
    /// waiting caller blocks a thread of its own and the runtime starts dozens.
    #[test]
    fn waiting_callers_of_run_hold_no_thread() {
        fn threads_started(gated: bool) -> usize {
            use std::sync::atomic::{AtomicUsize, Ordering};
            let started = Arc::new(AtomicUsize::new(0));
            let counter = started.clone();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .on_thread_start(move || {
                    counter.fetch_add(1, Ordering::Relaxed);
                })
                .enable_all()
                .build()
                .unwrap();
            let store = Store::new(memory_state());
            rt.block_on(async {
                let calls = (0..200).map(|i| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let slow = |s: &mut dyn Backend| {
                            std::thread::sleep(std::time::Duration::from_millis(2));
                            s.cursor(&format!("source-{i}")).unwrap()
                        };
                        if gated {
                            store.run(slow).await
                        } else {
                            store.with(slow)
                        }
                    })
                });
                for c in calls.collect::<Vec<_>>() {
                    assert_eq!(c.await.unwrap(), None);
                }
            });
            drop(rt);
            started.load(Ordering::Relaxed)
        }
        let gated = threads_started(true);
        let ungated = threads_started(false);
        eprintln!("threads started: {gated} through run, {ungated} through with");
        assert!(gated <= 6, "{gated} threads through run");
        assert!(
            ungated > 3 * gated,
            "{ungated} threads through with, {gated} through run"
        );
    }
}
