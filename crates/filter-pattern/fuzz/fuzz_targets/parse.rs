//! Parse any text: never panic; an accepted pattern's canonical text re-parses to an equal
//! tree (the round trip), and an error's caret rendering never panics.
#![no_main]

use filter_pattern::FilterPattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match FilterPattern::new(text) {
        Ok(p) => {
            let canonical = p.to_string();
            let again = FilterPattern::new(&canonical)
                .unwrap_or_else(|e| panic!("canonical text {canonical:?} of {text:?} does not re-parse:\n{e}"));
            assert_eq!(p.ast(), again.ast(), "round trip changed the tree of {text:?}");
        }
        Err(e) => {
            let rendered = e.to_string();
            assert!(rendered.contains('^'));
            assert!(e.column() >= 1);
        }
    }
});
