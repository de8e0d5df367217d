//! Parse any text: never panic; an accepted pattern's canonical text re-parses to an equal
//! tree of the same form (the round trip) and is a fixed point of printing; an error points
//! inside the pattern and its caret rendering never panics.
#![no_main]

use filter_pattern::{FilterPattern, MAX_PATTERN_CHARS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match FilterPattern::new(text) {
        Ok(p) => {
            let canonical = p.to_string();
            // The canonical text may be longer than the pattern (`a?b` prints as `a ?b`): past
            // the length limit it is rejected for its length, and for nothing else.
            let again = match FilterPattern::new(&canonical) {
                Ok(again) => again,
                Err(e) if canonical.chars().count() > MAX_PATTERN_CHARS => {
                    assert!(
                        e.message().contains("limit is"),
                        "canonical text {canonical:?} of {text:?} fails for more than its length:\n{e}"
                    );
                    return;
                }
                Err(e) => {
                    panic!("canonical text {canonical:?} of {text:?} does not re-parse:\n{e}")
                }
            };
            assert_eq!(
                p.ast(),
                again.ast(),
                "round trip changed the tree of {text:?}"
            );
            assert_eq!(
                p.kind(),
                again.kind(),
                "round trip changed the form of {text:?}"
            );
            assert_eq!(
                again.to_string(),
                canonical,
                "canonical text of {text:?} is not a fixed point"
            );
        }
        Err(e) => {
            assert_eq!(e.pattern(), text);
            assert!(!e.message().is_empty(), "empty error message for {text:?}");
            let span = e.span();
            assert!(
                span.start <= span.end && span.end <= text.len(),
                "error span {span:?} outside {text:?}"
            );
            let rendered = e.to_string();
            assert!(rendered.contains('^'));
            assert!(e.column() >= 1);
            assert!(e.line() >= 1);
        }
    }
});
