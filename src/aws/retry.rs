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

/// The requests one call took: the first, the retries, the throttled replies.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CallStats {
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
}

impl CallStats {
    fn add(&mut self, o: CallStats) {
        self.requests += o.requests;
        self.retries += o.retries;
        self.throttled += o.throttled;
    }
}

/// Calls `call` (one paced AWS request) until it succeeds, retrying what [`classify`] calls
/// retryable with [`backoff`]; counts requests, retries and throttles into `stats`. On final
/// failure returns the class and a one-line description of the last error.
pub async fn send_with_retries<T, E, Fut>(
    source_id: &str,
    operation: &str,
    max_retries: usize,
    stats: &mut CallStats,
    call: impl FnMut() -> Fut,
) -> Result<T, (RetryClass, String)>
where
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use backon::Retryable;
    let mut attempts = CallStats::default();
    let result = call
        .retry(backoff(max_retries))
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
    stats.add(attempts);
    stats.requests += 1;
    result.map_err(|e| {
        let class = classify(&e);
        if class == RetryClass::Throttled {
            stats.throttled += 1;
        }
        (class, crate::aws::error_text(&e))
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
