//! Evaluate a pattern on an event: never panic, `is_match` agrees with `evaluate`, the
//! prefilter never rejects an event that the full evaluator matches (soundness), the
//! canonical text of the pattern decides the event the same way (the round trip, by
//! meaning), and the event names a JSON pattern pins (which narrow the CloudTrail lookups)
//! include the name of every event it matches.
#![no_main]

use filter_pattern::{FilterPattern, MAX_PATTERN_CHARS};
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
            assert!(
                pf.may_match(event.as_bytes()),
                "prefilter rejected a match: {pattern:?} on {event:?}"
            );
        }
        if let Some(names) = p.required_values("$.eventName") {
            // Only where serde_json reads the event the same way: an object whose
            // `eventName` is a string (the shape of every CloudTrail record).
            if let Ok(serde_json::Value::Object(root)) = serde_json::from_str(event) {
                if let Some(serde_json::Value::String(name)) = root.get("eventName") {
                    assert!(
                        names.contains(name),
                        "{pattern:?} matches {event:?} but pins the event names to {names:?}"
                    );
                }
            }
        }
    }
    assert_eq!(p.is_match(event), full.is_some());
    assert_eq!(p.evaluate(event), full);

    let canonical = p.to_string();
    // Past the length limit the canonical text cannot be compiled (the parse target checks
    // that its length is then the only reason).
    if canonical.chars().count() > MAX_PATTERN_CHARS {
        return;
    }
    let again = FilterPattern::new(&canonical).unwrap_or_else(|e| {
        panic!("canonical text {canonical:?} of {pattern:?} does not re-parse:\n{e}")
    });
    assert_eq!(
        again.evaluate(event),
        full,
        "canonical text {canonical:?} of {pattern:?} decides {event:?} differently"
    );
});
