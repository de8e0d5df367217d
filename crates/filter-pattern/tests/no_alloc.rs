//! The prefilter rejects events without allocating (issue: "no allocation per rejected
//! event"). A counting global allocator makes the claim testable.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use filter_pattern::FilterPattern;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
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
