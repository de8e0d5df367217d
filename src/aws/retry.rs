//! Whether and when to try a failed AWS call again — decided in one place, [`classify`] — and
//! the pacing of calls: a client-side rate limit and exponential backoff with jitter.

use std::time::Duration;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// What a failed call deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// The API said slow down (CloudTrail: HTTP 400 `ThrottlingException`).
    Throttled,
    /// Worth another try: 5xx, timeouts, connection failures, a garbled reply.
    Transient,
    /// Retrying will not help: credentials, permissions, a bad request.
    Permanent,
}

impl RetryClass {
    pub fn is_retryable(self) -> bool {
        self != RetryClass::Permanent
    }
}

/// Error codes AWS services use for throttling (CloudTrail's is `ThrottlingException`, sent
/// as HTTP 400, which generic HTTP rules would wrongly call permanent).
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "LimitExceededException",
];

/// Codes that are transient whatever the status says.
const TRANSIENT_CODES: &[&str] = &[
    "ServiceUnavailableException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "OperationAbortedException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// The one retry-classification function for every AWS call rolewatch makes.
pub fn classify<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> RetryClass {
    match err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            classify_service(se.err().code(), status)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            RetryClass::Transient
        }
        _ => RetryClass::Permanent,
    }
}

/// Classification from an error code and an HTTP status (split out for unit tests).
pub fn classify_service(code: Option<&str>, status: u16) -> RetryClass {
    if let Some(code) = code {
        if THROTTLING_CODES.contains(&code) {
            return RetryClass::Throttled;
        }
        if TRANSIENT_CODES.contains(&code) {
            return RetryClass::Transient;
        }
    }
    match status {
        429 => RetryClass::Throttled,
        500..=599 => RetryClass::Transient,
        _ => RetryClass::Permanent,
    }
}

/// The requests one call took: the first, the retries, the throttled replies, and the time
/// spent retrying (from the first failed reply to the reply that ended the call).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CallStats {
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    pub retry_time: Duration,
}

impl CallStats {
    fn add(&mut self, o: CallStats) {
        self.requests += o.requests;
        self.retries += o.retries;
        self.throttled += o.throttled;
        self.retry_time += o.retry_time;
    }
}

/// How much time one fetch (a poll, a sweep) may spend retrying failed requests, summed over
/// all its requests (`retry_budget_secs` of a source): a fetch whose budget is spent counts as
/// failed at once, so that consecutive failures — and the "cannot see" notice — come at a
/// pace the configuration states, not after an unbounded series of backoffs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudget {
    total: Duration,
    spent: Duration,
}

impl RetryBudget {
    pub fn new(total: Duration) -> RetryBudget {
        RetryBudget {
            total,
            spent: Duration::ZERO,
        }
    }

    /// What is left of the budget.
    pub fn left(&self) -> Duration {
        self.total.saturating_sub(self.spent)
    }

    /// The whole budget.
    pub fn total(&self) -> Duration {
        self.total
    }

    fn spend(&mut self, d: Duration) {
        self.spent = self.spent.saturating_add(d);
    }
}

/// Calls `call` (one paced AWS request) until it succeeds, retrying what [`classify`] calls
/// retryable with [`Backoff::AWS`] — at most `max_retries` times, and only while the next wait
/// fits in what is left of `budget` (time from the first failed reply on; the time is taken
/// out of the budget). Counts requests, retries, throttles and retry time into `stats`. On
/// final failure returns the class and a one-line description of the last error (saying so
/// when the budget ended the retries).
pub async fn send_with_retries<T, E, Fut>(
    source_id: &str,
    operation: &str,
    max_retries: usize,
    budget: &mut RetryBudget,
    stats: &mut CallStats,
    call: impl FnMut() -> Fut,
) -> Result<T, (RetryClass, String)>
where
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use backon::Retryable;
    let mut attempts = CallStats::default();
    let first_failure = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let waits = Backoff::AWS
        .retries(max_retries)
        .within(budget.left(), first_failure.clone());
    let result = call
        .retry(waits)
        .sleep(tokio::time::sleep)
        .when(|e| classify(e).is_retryable())
        .notify(|e, after| {
            attempts.retries += 1;
            attempts.requests += 1;
            if classify(e) == RetryClass::Throttled {
                attempts.throttled += 1;
            }
            tracing::warn!(source = %source_id, operation, retry_in_ms = after.as_millis() as u64, error = %crate::aws::error_text(e), "Request failed; retrying");
        })
        .await;
    let started = *first_failure
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(started) = started {
        attempts.retry_time = started.elapsed();
    }
    budget.spend(attempts.retry_time);
    stats.add(attempts);
    stats.requests += 1;
    result.map_err(|e| {
        let class = classify(&e);
        if class == RetryClass::Throttled {
            stats.throttled += 1;
        }
        let mut text = crate::aws::error_text(&e);
        if class.is_retryable() && (attempts.retries as usize) < max_retries {
            text.push_str(&format!(
                " (retry budget of {} s spent after {} retries)",
                budget.total().as_secs_f64(),
                attempts.retries
            ));
        }
        (class, text)
    })
}

/// Exponential backoff with full jitter, the one every retry loop uses (AWS calls, the
/// outbox, IAM reads): after the `n`-th failed attempt the ceiling is `initial · 2^(n−1)`,
/// capped at `max`, and the wait is drawn uniformly from `[0, ceiling]` ("full jitter"), so
/// that callers that failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// AWS API calls: 0.5 s, 1 s, 2 s, … capped at 30 s.
    pub const AWS: Backoff = Backoff {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(30),
    };

    /// Deliveries through a channel (the outbox): 2 s, 4 s, … capped at 5 minutes.
    pub const DELIVERY: Backoff = Backoff {
        initial: Duration::from_secs(2),
        max: Duration::from_secs(5 * 60),
    };

    /// `initial` must be positive and not above `max`.
    ///
    /// # Errors
    ///
    /// When it is not.
    pub fn new(initial: Duration, max: Duration) -> Result<Backoff, String> {
        if initial.is_zero() || initial > max {
            return Err(format!(
                "backoff: initial {initial:?} must be positive and at most max {max:?}"
            ));
        }
        Ok(Backoff { initial, max })
    }

    /// The longest wait after the `attempt`-th failed attempt (1-based; 0 counts as 1).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << exp).min(self.max)
    }

    /// The wait after the `attempt`-th failed attempt for a draw `jitter` in `[0, 1]`
    /// (anything else counts as 1): `jitter · ceiling`.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        self.ceiling(attempt).mul_f64(jitter)
    }

    /// A random wait after the `attempt`-th failed attempt.
    pub fn draw(&self, attempt: u32) -> Duration {
        self.delay(attempt, fastrand::f64())
    }

    /// The waits of at most `max_retries` retries, for `backon`'s `retry`.
    pub fn retries(self, max_retries: usize) -> Retries {
        Retries {
            backoff: self,
            left: max_retries,
            attempt: 0,
        }
    }
}

/// The random waits of a bounded number of retries (an iterator, which `backon` takes).
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    left: usize,
    attempt: u32,
}

impl Retries {
    /// Only the waits that end within `budget` of the first failure: the first call of
    /// `next` (made right after the first failed attempt) records that instant in
    /// `first_failure`; a wait that would end past the budget ends the retries instead.
    pub fn within(self, budget: Duration, first_failure: SharedInstant) -> Within {
        Within {
            retries: self,
            budget,
            first_failure,
        }
    }
}

impl Iterator for Retries {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.attempt = self.attempt.saturating_add(1);
        Some(self.backoff.draw(self.attempt))
    }
}

/// The instant of a call's first failure, shared between its wait iterator and the caller.
pub type SharedInstant = std::sync::Arc<std::sync::Mutex<Option<Instant>>>;

/// [`Retries`] bounded by a time budget (see [`Retries::within`]).
#[derive(Debug, Clone)]
pub struct Within {
    retries: Retries,
    budget: Duration,
    first_failure: SharedInstant,
}

impl Iterator for Within {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let started = *self
            .first_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(now);
        let wait = self.retries.next()?;
        // Room for the wait and the retried request's own reply: a wait that ends exactly at
        // the budget would leave no time for the request it waits for.
        if now.duration_since(started) + wait >= self.budget {
            return None;
        }
        Some(wait)
    }
}

/// The retries of an AWS call: [`Backoff::AWS`], at most `max_retries` of them.
pub fn backoff(max_retries: usize) -> Retries {
    Backoff::AWS.retries(max_retries)
}

/// A client-side limit of `per_sec` requests per second: each [`acquire`](Self::acquire)
/// waits until its slot. Slots are `1/per_sec` plus [`SLOT_MARGIN`] apart, because the API
/// counts arrivals: network jitter could otherwise put one request too many in a second.
/// Time comes from `tokio::time`, so tests can pause it.
/// Extra spacing between request slots (see [`RateLimiter`]).
pub const SLOT_MARGIN: Duration = Duration::from_millis(50);

/// Who asks for a request slot: the regular polls come first; the reconciliation sweep takes
/// slots only while no regular fetch of the source is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A regular poll.
    Regular,
    /// The reconciliation sweep.
    Low,
}

#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Option<Instant>>,
    /// Regular fetches under way; low-priority requests wait while it is not zero.
    regular: std::sync::atomic::AtomicUsize,
    /// Woken when the last regular fetch ends.
    idle: tokio::sync::Notify,
}

/// Held by a regular fetch for its whole length (see [`RateLimiter::regular`]).
#[derive(Debug)]
pub struct RegularFetch<'a>(&'a RateLimiter);

impl Drop for RegularFetch<'_> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if self.0.regular.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl RateLimiter {
    /// `per_sec` must be positive (the configuration checks it).
    pub fn new(per_sec: f64) -> RateLimiter {
        let per_sec = if per_sec.is_finite() && per_sec > 0.0 {
            per_sec
        } else {
            1.0
        };
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / per_sec) + SLOT_MARGIN,
            next: Mutex::new(None),
            regular: std::sync::atomic::AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
        }
    }

    /// Marks a regular fetch as under way until the guard is dropped: low-priority requests
    /// wait meanwhile, so a sweep never delays a poll by more than the one request it may
    /// have in flight.
    pub fn regular(&self) -> RegularFetch<'_> {
        self.regular
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        RegularFetch(self)
    }

    /// Waits for the next request slot.
    pub async fn acquire(&self) {
        self.acquire_as(Priority::Regular).await;
    }

    /// Waits for the next request slot; a [`Priority::Low`] caller first waits until no
    /// regular fetch is under way.
    pub async fn acquire_as(&self, priority: Priority) {
        if priority == Priority::Low {
            loop {
                // Created before the check, so a wake between the check and the wait counts.
                let idle = self.idle.notified();
                if self.regular.load(std::sync::atomic::Ordering::Acquire) == 0 {
                    break;
                }
                idle.await;
            }
        }
        let mut next = self.next.lock().await;
        let now = Instant::now();
        let at = match *next {
            Some(t) if t > now => t,
            _ => now,
        };
        *next = Some(at + self.interval);
        drop(next);
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudtrail_throttling_is_a_400_but_retryable() {
        assert_eq!(
            classify_service(Some("ThrottlingException"), 400),
            RetryClass::Throttled
        );
        assert_eq!(classify_service(None, 429), RetryClass::Throttled);
        assert_eq!(
            classify_service(Some("InternalFailure"), 500),
            RetryClass::Transient
        );
        assert_eq!(classify_service(None, 503), RetryClass::Transient);
        assert_eq!(
            classify_service(Some("AccessDeniedException"), 400),
            RetryClass::Permanent
        );
        assert_eq!(
            classify_service(Some("InvalidLookupAttributesException"), 400),
            RetryClass::Permanent
        );
        assert_eq!(
            classify_service(Some("UnrecognizedClientException"), 403),
            RetryClass::Permanent
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_spaces_requests() {
        let rl = RateLimiter::new(2.0);
        let start = Instant::now();
        for _ in 0..5 {
            rl.acquire().await;
        }
        // Slots at 0, 0.55, 1.1, 1.65, 2.2 s.
        assert_eq!(start.elapsed(), Duration::from_millis(2200));
    }

    /// A low-priority request waits while a regular fetch is under way, then gets the next
    /// slot; regular requests are never held behind it.
    #[tokio::test(start_paused = true)]
    async fn low_priority_waits_for_regular_fetches() {
        let rl = std::sync::Arc::new(RateLimiter::new(2.0));
        let start = Instant::now();
        let guard = rl.regular();
        let low = {
            let rl = rl.clone();
            tokio::spawn(async move {
                rl.acquire_as(Priority::Low).await;
                Instant::now()
            })
        };
        for _ in 0..3 {
            rl.acquire().await;
        }
        // Regular slots at 0, 0.55, 1.1 s; the fetch ends at 1.1 s.
        assert_eq!(start.elapsed(), Duration::from_millis(1100));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!low.is_finished(), "the sweep waited for the regular fetch");
        drop(guard);
        let got = low.await.unwrap();
        // The next free slot after the regular ones: 1.65 s.
        assert_eq!(got - start, Duration::from_millis(1650));
        // Without a regular fetch, a low-priority request goes at once (its slot is free).
        rl.acquire_as(Priority::Low).await;
        assert_eq!(start.elapsed(), Duration::from_millis(2200));
    }

    type LookupError = aws_sdk_cloudtrail::operation::lookup_events::LookupEventsError;

    /// A reply of `status` with error `code`, as the SDK hands it over.
    fn service_error(code: &str, status: u16) -> SdkError<LookupError, HttpResponse> {
        let meta = aws_smithy_types::error::ErrorMetadata::builder()
            .code(code)
            .build();
        let raw = HttpResponse::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(status).unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        );
        SdkError::service_error(LookupError::generic(meta), raw)
    }

    /// Fails every attempt with `err()` after `reply` of (paused) time; returns the result,
    /// the attempts made and the time it took.
    async fn always_failing(
        budget: &mut RetryBudget,
        max_retries: usize,
        reply: Duration,
        err: fn() -> SdkError<LookupError, HttpResponse>,
    ) -> (Result<(), (RetryClass, String)>, CallStats, Duration) {
        let mut stats = CallStats::default();
        let started = Instant::now();
        let result = send_with_retries(
            "s",
            "LookupEvents",
            max_retries,
            budget,
            &mut stats,
            || async move {
                tokio::time::sleep(reply).await;
                Err::<(), _>(err())
            },
        )
        .await;
        (result, stats, started.elapsed())
    }

    /// Issue 18: a request that is throttled on every attempt gives up once the retry budget
    /// would be exceeded, well before its six retries (which could take up to 63 s of waits),
    /// and says why; the time is taken from the fetch's budget.
    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_budget_and_say_so() {
        for _ in 0..50 {
            let mut budget = RetryBudget::new(Duration::from_secs(3));
            let (result, stats, took) =
                always_failing(&mut budget, 6, Duration::from_millis(10), || {
                    service_error("ThrottlingException", 400)
                })
                .await;
            let (class, message) = result.unwrap_err();
            assert_eq!(class, RetryClass::Throttled);
            // The budget bounds the waits; the last retried request's reply may end after it.
            assert!(stats.retry_time < Duration::from_millis(3010), "{took:?}");
            assert_eq!(stats.retry_time, took - Duration::from_millis(10));
            assert_eq!(stats.requests, stats.retries + 1);
            assert_eq!(stats.throttled, stats.requests);
            if stats.retries < 6 {
                assert!(
                    message.contains("retry budget of 3 s spent after"),
                    "{message}"
                );
            }
            assert_eq!(
                budget.left(),
                Duration::from_secs(3).saturating_sub(stats.retry_time)
            );
        }
    }

    /// The budget is per fetch: a second request of the same fetch has only what is left, and
    /// one that finds it spent fails after its first failed attempt.
    #[tokio::test(start_paused = true)]
    async fn the_budget_is_shared_by_the_requests_of_a_fetch() {
        let mut budget = RetryBudget::new(Duration::from_secs(20));
        let mut spent = Duration::ZERO;
        let mut requests = 0;
        while budget.left() > Duration::ZERO && requests < 100 {
            let (result, stats, _) = always_failing(&mut budget, 6, Duration::ZERO, || {
                service_error("InternalFailure", 500)
            })
            .await;
            assert_eq!(result.unwrap_err().0, RetryClass::Transient);
            spent += stats.retry_time;
            requests += 1;
            if stats.retries == 0 {
                break;
            }
        }
        assert!(spent <= Duration::from_secs(20), "{spent:?}");
        // Once the budget is (nearly) gone, a failure is final at once.
        let mut empty = RetryBudget::new(Duration::ZERO);
        let (result, stats, took) = always_failing(&mut empty, 6, Duration::ZERO, || {
            SdkError::timeout_error("timed out")
        })
        .await;
        assert_eq!(result.unwrap_err().0, RetryClass::Transient);
        assert_eq!((stats.requests, stats.retries), (1, 0));
        assert_eq!(took, Duration::ZERO);
    }

    /// A permanent error is never retried, whatever the budget; a success after retries
    /// reports the time they took.
    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried_and_successes_count_their_retry_time() {
        let mut budget = RetryBudget::new(Duration::from_secs(20));
        let (result, stats, _) = always_failing(&mut budget, 6, Duration::ZERO, || {
            service_error("AccessDeniedException", 400)
        })
        .await;
        assert_eq!(result.unwrap_err().0, RetryClass::Permanent);
        assert_eq!((stats.requests, stats.retries), (1, 0));
        assert_eq!(budget.left(), Duration::from_secs(20));
        let mut stats = CallStats::default();
        let mut n = 0;
        let started = Instant::now();
        let ok = send_with_retries("s", "LookupEvents", 6, &mut budget, &mut stats, || {
            n += 1;
            let fail = n <= 2;
            async move {
                if fail {
                    Err(service_error("ThrottlingException", 400))
                } else {
                    Ok(7)
                }
            }
        })
        .await;
        assert_eq!(ok, Ok(7));
        assert_eq!((stats.requests, stats.retries, stats.throttled), (3, 2, 2));
        assert_eq!(stats.retry_time, started.elapsed());
        assert_eq!(budget.left(), Duration::from_secs(20) - stats.retry_time);
    }

    #[test]
    fn backoff_ceiling_doubles_and_caps_and_the_draw_is_full_jitter() {
        let b = Backoff::DELIVERY;
        assert_eq!(b.ceiling(0), Duration::from_secs(2));
        assert_eq!(b.ceiling(1), Duration::from_secs(2));
        assert_eq!(b.ceiling(3), Duration::from_secs(8));
        assert_eq!(b.ceiling(100), Duration::from_secs(300));
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(8));
        assert_eq!(b.delay(3, 0.5), Duration::from_secs(4));
        assert_eq!(b.delay(3, f64::NAN), Duration::from_secs(8));
        assert_eq!(b.delay(3, 7.0), Duration::from_secs(8));
        assert!(Backoff::new(Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(Backoff::new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
        assert_eq!(
            Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
            Ok(Backoff::AWS)
        );
    }

    #[test]
    fn retries_are_bounded_and_each_within_its_ceiling() {
        let waits: Vec<Duration> = Backoff::AWS.retries(6).collect();
        assert_eq!(waits.len(), 6);
        for (i, w) in waits.iter().enumerate() {
            let attempt = u32::try_from(i + 1).unwrap();
            assert!(
                *w <= Backoff::AWS.ceiling(attempt),
                "retry {attempt}: {w:?}"
            );
        }
        assert_eq!(Backoff::AWS.retries(0).count(), 0);
    }

    proptest::proptest! {
        /// Every draw lies in [0, ceiling], whatever the parameters and the attempt.
        #[test]
        fn every_delay_is_within_zero_and_its_ceiling(
            initial_ms in 1u64..60_000,
            extra_ms in 0u64..600_000,
            attempt in 0u32..200,
            jitter in proptest::num::f64::ANY,
        ) {
            let b = Backoff::new(
                Duration::from_millis(initial_ms),
                Duration::from_millis(initial_ms + extra_ms),
            ).unwrap();
            let d = b.delay(attempt, jitter);
            proptest::prop_assert!(d <= b.ceiling(attempt));
            proptest::prop_assert!(b.ceiling(attempt) <= Duration::from_millis(initial_ms + extra_ms));
            proptest::prop_assert!(b.ceiling(attempt) >= Duration::from_millis(initial_ms));
        }
    }

    /// Full jitter, not "d plus up to d": many draws spread over the whole of [0, d], with
    /// about a tenth of them in the lowest tenth (the old jitter never went below d).
    #[test]
    fn draws_are_spread_down_to_zero() {
        let b = Backoff::AWS;
        let ceiling = b.ceiling(4);
        let n = 20_000;
        let draws: Vec<Duration> = (0..n).map(|_| b.draw(4)).collect();
        assert!(draws.iter().all(|d| *d <= ceiling));
        let lowest_tenth = draws.iter().filter(|d| **d < ceiling / 10).count();
        let highest_tenth = draws.iter().filter(|d| **d > ceiling * 9 / 10).count();
        // Expected n/10 = 2000 each; binomial sd ~42, so ±500 never fails by chance.
        assert!(
            (1500..2500).contains(&lowest_tenth),
            "{lowest_tenth} draws below d/10"
        );
        assert!(
            (1500..2500).contains(&highest_tenth),
            "{highest_tenth} draws above 9d/10"
        );
        let mean = draws.iter().map(Duration::as_secs_f64).sum::<f64>() / f64::from(n);
        assert!(
            (mean / ceiling.as_secs_f64() - 0.5).abs() < 0.02,
            "mean {mean}"
        );
    }
}
