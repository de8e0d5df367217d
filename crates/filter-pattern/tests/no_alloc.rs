//! The prefilter rejects events without allocating (issue: "no allocation per rejected
//! event"), and exact decimal comparison adds none to the evaluation of an event. A counting
//! global allocator makes the claims testable; it counts per thread, so that tests running
//! in parallel do not see each other's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use filter_pattern::FilterPattern;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

/// Allocations made so far by the calling thread.
fn allocated() -> usize {
    ALLOCATIONS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: the thread's counter may already be gone while the thread exits.
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
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
    let before = allocated();
    let matched = events.iter().filter(|e| p.is_match(e)).count();
    let after = allocated();
    assert_eq!(matched, 0);
    assert_eq!(after - before, 0, "rejecting 1000 events allocated");
}

/// Allocations made while evaluating `pattern` on every event (after a warm-up).
fn allocations(pattern: &str, events: &[String]) -> (usize, usize) {
    let p = FilterPattern::new(pattern).unwrap();
    let _ = events.iter().take(10).filter(|e| p.is_match(e)).count();
    let before = allocated();
    let matched = events.iter().filter(|e| p.is_match(e)).count();
    (matched, allocated() - before)
}

/// Exact decimal comparison (spec §4.3 "Numbers") costs no allocation: a numeric test on a
/// parsed event allocates exactly what a non-numeric test of the same member does (reading
/// the event), whatever the spelling of the numbers on either side — long integers, fractions,
/// exponents, negative zero, underflow and overflow.
#[test]
fn numeric_comparison_allocates_nothing() {
    const SPELLINGS: &[&str] = &[
        "1500",
        "1501",
        "-3",
        "0",
        "-0.0",
        "1499.999",
        "1.5e3",
        "15E+2",
        "0.00015e7",
        "12345678901234567",
        "12345678901234568",
        "123456789012345678901234567890",
        "-98765432109876543210.5",
        "2e-400",
        "5e400",
        "1e308",
    ];
    let events: Vec<String> = (0..1000)
        .map(|i| {
            let x = SPELLINGS[i % SPELLINGS.len()];
            format!(
                r#"{{"eventVersion":"1.08","eventName":"AttachRolePolicy","eventID":"{i}","x":{x},"requestParameters":{{"roleName":"someone-else"}}}}"#
            )
        })
        .collect();
    // Reading the event and looking `x` up, with a test that involves no number.
    let (_, baseline) = allocations("{ $.x IS TRUE }", &events);
    for pattern in [
        "{ $.x > 1.5e3 }",
        "{ $.x >= 1500 }",
        "{ $.x < -0.5 }",
        "{ $.x <= 12345678901234567 }",
        "{ $.x = 12345678901234567 }",
        "{ $.x = 1500.000 }",
        "{ $.x != 7 }",
        "{ $.x > 2e-400 }",
        "{ $.x < 123456789012345678901234567890.25 }",
    ] {
        let (matched, allocated) = allocations(pattern, &events);
        assert!(
            matched > 0 && matched < events.len(),
            "{pattern} should match some of the events, matched {matched}"
        );
        assert!(
            allocated <= baseline,
            "{pattern}: {allocated} allocations for {} events, {baseline} for the same member without a number",
            events.len()
        );
    }
}
