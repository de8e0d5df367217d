//! Evaluate a pattern on an event: never panic, `is_match` agrees with `evaluate`, and the
//! prefilter never rejects an event that the full evaluator matches (soundness).
#![no_main]

use filter_pattern::FilterPattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first line is the pattern, the rest the event.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, event) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(p) = FilterPattern::new(pattern) else {
        return;
    };
    let full = p.evaluate_unfiltered(event);
    if full.is_some() {
        if let Some(pf) = p.prefilter() {
            assert!(pf.may_match(event.as_bytes()), "prefilter rejected a match: {pattern:?} on {event:?}");
        }
    }
    assert_eq!(p.is_match(event), full.is_some());
    assert_eq!(p.evaluate(event), full);
});
