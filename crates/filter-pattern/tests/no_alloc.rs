//! The prefilter rejects events without allocating (issue: "no allocation per rejected
//! event"). A counting global allocator makes the claim testable.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::Ordering;

use filter_pattern::FilterPattern;

struct Counting;

static ALLOCATIONS: Counter = Counter;

thread_local! {
    // Per thread, so that tests running in parallel do not count each other's allocations.
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

/// The allocations of the current thread.
struct Counter;

impl Counter {
    fn load(&self, _: Ordering) -> usize {
        COUNT.with(Cell::get)
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: the thread's counter may already be gone while it exits.
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const DOCUMENTED: &str = r#"{ ($.eventName = AttachRolePolicy || $.eventName = DetachRolePolicy || $.eventName = SetPolicyVersion || $.eventName = CreatePolicyVersion) && ($.requestParameters.policyArn = "*AstronomerCrossAccountRole"  || $.requestParameters.roleName = astronomer-remote-management) }"#;

#[test]
fn rejected_events_allocate_nothing() {
    let p = FilterPattern::new(DOCUMENTED).unwrap();
    let events: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                r#"{{"eventVersion":"1.08","eventName":"AttachRolePolicy","eventID":"{i}","requestParameters":{{"roleName":"someone-else","policyArn":"arn:aws:iam::aws:policy/ReadOnlyAccess"}}}}"#
            )
        })
        .collect();
    // The first calls may initialise search internals once (CPU feature detection); warm up.
    assert_eq!(events.iter().take(10).filter(|e| p.is_match(e)).count(), 0);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let matched = events.iter().filter(|e| p.is_match(e)).count();
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(matched, 0);
    assert_eq!(after - before, 0, "rejecting 1000 events allocated");
}

/// Allocations made by `is_match(event)`.
fn allocations(p: &FilterPattern, event: &str) -> (usize, bool) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let matched = p.is_match(event);
    (ALLOCATIONS.load(Ordering::Relaxed) - before, matched)
}

/// Exact decimal comparison (semantics §4.3, §4.4) allocates nothing: a pattern whose
/// conditions compare numbers — exactly, through a double printed on the stack, or by a
/// number's canonical text — allocates exactly as much per event as the same pattern that
/// only asks whether the member exists (the projection of the JSON, the list of fields).
#[test]
fn exact_decimal_comparison_allocates_nothing() {
    let baseline = FilterPattern::new("{ $.n NOT EXISTS || $.m NOT EXISTS }").unwrap();
    let numeric = [
        "{ $.n = 1.5e3 || $.m = 0 }",
        "{ $.n > 12345678901234567890.5 || $.m <= -2e-400 }",
        "{ $.n != 1500 || $.m >= 1e2147483647 }",
        r#"{ $.n = "1500.0" || $.m = "Infinity" }"#,
        "{ $.n = %^15% || $.m = 1.0E* }",
    ]
    .map(|p| FilterPattern::new(p).unwrap());
    let events = [
        r#"{"n":1500.0,"m":2e-400}"#,
        r#"{"n":1.5e3,"m":-0.0}"#,
        r#"{"n":123456789012345678901234567890,"m":5e400}"#,
        r#"{"n":0.1,"m":-12345.678901234567e-30}"#,
        r#"{"n":-1500,"m":1e21}"#,
    ];
    for p in std::iter::once(&baseline).chain(&numeric) {
        assert!(
            p.prefilter().is_none(),
            "{p:?} has a prefilter; every event must reach the evaluator"
        );
    }
    // Warm up lazily initialised internals once.
    for e in events {
        baseline.is_match(e);
        numeric.iter().for_each(|p| {
            p.is_match(e);
        });
    }
    let mut matched = 0;
    for e in events {
        let (base, _) = allocations(&baseline, e);
        for p in &numeric {
            let (n, m) = allocations(p, e);
            matched += usize::from(m);
            assert_eq!(n, base, "{p:?} on {e} allocated {n}, the baseline {base}");
        }
    }
    assert!(
        matched >= 5,
        "only {matched} evaluations matched: the test would not see the numeric paths"
    );

    // Space-delimited fields: a numeric condition costs no more than none.
    let baseline = FilterPattern::new("[n, rest]").unwrap();
    let numeric = [
        "[n = 7.0, rest]",
        "[n > 1e-5, rest]",
        "[n != 7, rest]",
        r#"[n = "7", rest]"#,
    ]
    .map(|p| FilterPattern::new(p).unwrap());
    for e in [
        "7 x",
        "7.000000000000000000001 x",
        "- x",
        "1e2147483648 x y",
    ] {
        let (base, _) = allocations(&baseline, e);
        for p in &numeric {
            let (n, _) = allocations(p, e);
            assert_eq!(n, base, "{p:?} on {e} allocated {n}, the baseline {base}");
        }
    }
}
