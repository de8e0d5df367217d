//! Property: the literal prefilter is sound — an event that the full evaluator matches is
//! never rejected by it, however the JSON writer escaped the values (`\uXXXX`, `\/`) and
//! whatever else the event holds.

use filter_pattern::FilterPattern;
use proptest::prelude::*;

/// Values the generated patterns compare against; some hold characters JSON may escape.
const VALUES: &[&str] = &[
    "AttachRolePolicy",
    "astronomer-remote-management",
    "arn:aws:iam::aws:policy/AdministratorAccess",
    "Root",
    "a\"quoted\"name",
    "back\\slash",
    "50",
    "tab\there",
    "ünïcode",
];

const KEYS: &[&str] = &["eventName", "roleName", "policyArn", "type", "n"];

/// Writes `s` as a JSON string, escaping each character in one of the ways a JSON writer
/// may choose, driven by `choices`.
fn json_string(s: &str, choices: &[u8]) -> String {
    let mut out = String::from("\"");
    // A third of the strings are written plainly, with only the escapes JSON requires.
    let plain = choices.first().is_some_and(|c| c % 3 == 0);
    for (i, c) in s.chars().enumerate() {
        let choice = if plain {
            0
        } else {
            choices.get(i % choices.len().max(1)).copied().unwrap_or(0) % 4
        };
        match c {
            '"' => out.push_str(if choice == 0 { "\\\"" } else { "\\u0022" }),
            '\\' => out.push_str(if choice == 0 { "\\\\" } else { "\\u005c" }),
            '/' if choice == 1 => out.push_str("\\/"),
            '\t' => out.push_str(if choice == 0 { "\\t" } else { "\\u0009" }),
            c if choice == 3 && (c as u32) < 0x10000 => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if choice == 2 && c.is_ascii_alphabetic() => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn value_strategy() -> impl Strategy<Value = String> {
    (0..VALUES.len(), any::<bool>(), any::<bool>()).prop_map(|(i, star_front, star_back)| {
        let v = VALUES[i];
        // Cut a wildcard piece off the value so that prefix/suffix/contains globs appear.
        let chars: Vec<char> = v.chars().collect();
        let cut = chars.len() / 3;
        let mut s = String::new();
        if star_front {
            s.push('*');
            s.extend(&chars[cut..]);
        } else {
            s.extend(&chars[..]);
        }
        if star_back && !star_front {
            let keep = chars.len() - cut;
            s = chars[..keep].iter().collect::<String>();
            s.push('*');
        }
        s
    })
}

fn quote(v: &str) -> String {
    let mut s = String::from("\"");
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

fn condition() -> impl Strategy<Value = String> {
    (0..KEYS.len(), value_strategy(), any::<bool>()).prop_map(|(k, v, nested)| {
        let sel = if nested {
            format!("$.requestParameters.{}", KEYS[k])
        } else {
            format!("$.{}", KEYS[k])
        };
        format!("{sel} = {}", quote(&v))
    })
}

fn expr() -> impl Strategy<Value = String> {
    let leaf = condition();
    leaf.prop_recursive(3, 12, 3, |inner| {
        (prop::collection::vec(inner, 2..4), any::<bool>()).prop_map(|(items, and)| {
            let sep = if and { " && " } else { " || " };
            format!("({})", items.join(sep))
        })
    })
}

/// An event holding `VALUES` under the keys, at the top level and under
/// `requestParameters`, each written with random escapes; sometimes a number.
fn event() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            (
                0..KEYS.len(),
                0..VALUES.len(),
                prop::collection::vec(any::<u8>(), 1..6),
            ),
            0..12,
        ),
        prop::collection::vec(
            (
                0..KEYS.len(),
                0..VALUES.len(),
                prop::collection::vec(any::<u8>(), 1..6),
            ),
            0..12,
        ),
        any::<bool>(),
    )
        .prop_map(|(top, nested, number)| {
            let member = |(k, v, esc): &(usize, usize, Vec<u8>)| {
                format!(
                    "{}:{}",
                    json_string(KEYS[*k], esc),
                    json_string(VALUES[*v], esc)
                )
            };
            let mut parts: Vec<String> = top.iter().map(member).collect();
            let inner: Vec<String> = nested.iter().map(member).collect();
            parts.push(format!("\"requestParameters\":{{{}}}", inner.join(",")));
            if number {
                parts.push("\"n\":5e1".to_owned());
            }
            format!("{{{}}}", parts.join(","))
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn prefilter_never_rejects_a_match(e in expr(), ev in event()) {
        let pattern = format!("{{ {e} }}");
        let p = FilterPattern::new(&pattern).unwrap();
        let full = p.evaluate_unfiltered(&ev).is_some();
        if full {
            let pf = p.prefilter().is_none_or(|f| f.may_match(ev.as_bytes()));
            prop_assert!(pf, "prefilter rejected a match\npattern: {}\nevent: {}", pattern, ev);
        }
        prop_assert_eq!(p.is_match(&ev), full);
    }
}

#[test]
fn escaped_event_name_still_matches() {
    let p = FilterPattern::new(r#"{ $.eventName = AttachRolePolicy && $.requestParameters.roleName = astronomer-remote-management }"#).unwrap();
    let ev = r#"{"eventName":"\u0041ttachRolePolicy","requestParameters":{"roleName":"astronomer\u002dremote-management"}}"#;
    assert!(p.is_match(ev));
    let ev = r#"{"eventName":"AttachRolePolicy","requestParameters":{"roleName":"astronomer-remote-management"}}"#;
    assert!(p.is_match(ev));
}

#[test]
fn escaped_slash_in_policy_arn_still_matches() {
    let p = FilterPattern::new(
        r#"{ $.requestParameters.policyArn = "arn:aws:iam::aws:policy/AdministratorAccess" }"#,
    )
    .unwrap();
    assert!(p.is_match(
        r#"{"requestParameters":{"policyArn":"arn:aws:iam::aws:policy\/AdministratorAccess"}}"#
    ));
}

/// The property above proves nothing unless many generated events do match: count them.
#[test]
fn generated_cases_include_many_matches() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = (expr(), event());
    let (mut matched, mut total, mut escaped_matches) = (0, 0, 0);
    for _ in 0..4000 {
        let (e, ev) = strategy.new_tree(&mut runner).unwrap().current();
        let p = FilterPattern::new(&format!("{{ {e} }}")).unwrap();
        total += 1;
        if p.evaluate_unfiltered(&ev).is_some() {
            matched += 1;
            if ev.contains("\\u") || ev.contains("\\/") {
                escaped_matches += 1;
            }
            assert!(
                p.is_match(&ev),
                "prefilter rejected a match\npattern: {e}\nevent: {ev}"
            );
        }
    }
    eprintln!(
        "{matched} of {total} generated events match; {escaped_matches} of those use escapes"
    );
    assert!(
        matched >= total / 20,
        "only {matched} of {total} generated events match"
    );
    assert!(
        escaped_matches >= matched / 4 && escaped_matches < matched,
        "only {escaped_matches} matches use escapes"
    );
}

// ------------------------------------------------------------------ the revised rules

/// Words for term patterns and events; several hold the characters that now split a word.
const WORDS: &[&str] = &[
    "cache", "miss", "ERROR", "v1.2", "café", "ORDER", "ITEM", "1",
];

/// A term pattern: words glued with `-` or `?` (so `a-b` is `a -b`) or separated by blanks,
/// some prefixed, some quoted (with a blank or `-` inside).
fn term_pattern() -> impl Strategy<Value = String> {
    prop::collection::vec((0..WORDS.len(), 0..6u8, any::<bool>()), 1..5).prop_map(|parts| {
        let mut out = String::new();
        for (i, (w, glue, quoted)) in parts.into_iter().enumerate() {
            if i > 0 {
                out.push_str(match glue {
                    0 => "-",
                    1 => "?",
                    2 => " -",
                    3 => " ?",
                    _ => " ",
                });
            }
            if quoted {
                out.push_str(&format!(
                    "\"{} {}\"",
                    WORDS[w],
                    WORDS[(w + 1) % WORDS.len()]
                ));
                // A quoted term ends the word: the next one starts after a blank.
                out.push(' ');
            } else {
                out.push_str(WORDS[w]);
            }
        }
        out.trim_end().to_owned()
    })
}

fn term_event() -> impl Strategy<Value = String> {
    prop::collection::vec((0..WORDS.len(), 0..3u8), 0..8).prop_map(|parts| {
        let mut out = String::new();
        for (w, sep) in parts {
            out.push_str(WORDS[w]);
            out.push_str(match sep {
                0 => " ",
                1 => "-",
                _ => "",
            });
        }
        out
    })
}

/// JSON conditions of the revised rules: wildcards over objects and arrays, universal `!=`,
/// numbers by value and by canonical text (`Infinity`, `1.0E21`, `7.0`), `IS NULL` on arrays.
const CONDITIONS: &[&str] = &[
    r#"$.tags[*] = "prod""#,
    r#"$.tags.* != "prod""#,
    r#"$.n = "Infinity""#,
    r#"$.n = "Inf*""#,
    r#"$.n = "1.0E21""#,
    r#"$.n = "7.0""#,
    r#"$.n = "*E21""#,
    "$.n = 7",
    "$.n > 1e20",
    "$.n = %ity$%",
    "$.tags IS NULL",
    r#"$.eventName = "AttachRolePolicy""#,
    r#"$.r[*].arn != "x""#,
];

const MEMBERS: &[&str] = &[
    r#""tags":["dev","prod"]"#,
    r#""tags":{"env":"prod"}"#,
    r#""tags":[null,"qa"]"#,
    r#""tags":"prod""#,
    r#""n":5e400"#,
    r#""n":-5e400"#,
    r#""n":1e21"#,
    r#""n":1000000000000000000000"#,
    r#""n":7.00"#,
    r#""n":7"#,
    r#""n":"Infinity""#,
    r#""eventName":"Attach\u0052olePolicy""#,
    r#""eventName":"AttachRolePolicy""#,
    r#""r":[{},{"arn":"y"}]"#,
];

fn revised_json_pattern() -> impl Strategy<Value = String> {
    prop::collection::vec((0..CONDITIONS.len(), any::<bool>()), 1..3).prop_map(|items| {
        let mut out = String::from("{ ");
        for (i, (c, and)) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(if *and { " && " } else { " || " });
            }
            out.push_str(CONDITIONS[*c]);
        }
        out.push_str(" }");
        out
    })
}

fn revised_json_event() -> impl Strategy<Value = String> {
    prop::collection::vec(0..MEMBERS.len(), 0..5).prop_map(|members| {
        let parts: Vec<&str> = members.iter().map(|&m| MEMBERS[m]).collect();
        format!("{{{}}}", parts.join(","))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn prefilter_never_rejects_a_match_of_split_terms(p in term_pattern(), ev in term_event()) {
        let pattern = FilterPattern::new(&p).unwrap();
        let full = pattern.evaluate_unfiltered(&ev).is_some();
        prop_assert_eq!(pattern.is_match(&ev), full, "pattern {:?} on {:?}", p, ev);
    }

    #[test]
    fn prefilter_never_rejects_a_match_of_revised_json(p in revised_json_pattern(), ev in revised_json_event()) {
        let pattern = FilterPattern::new(&p).unwrap();
        let full = pattern.evaluate_unfiltered(&ev).is_some();
        prop_assert_eq!(pattern.is_match(&ev), full, "pattern {:?} on {:?}", p, ev);
    }
}

/// The two properties above prove nothing unless matches happen, through the prefilter too.
#[test]
fn revised_generators_produce_matches_with_a_prefilter() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let (mut terms, mut json) = (0, 0);
    for _ in 0..3000 {
        let (p, ev) = (term_pattern(), term_event())
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let pattern = FilterPattern::new(&p).unwrap();
        if pattern.prefilter().is_some() && pattern.evaluate_unfiltered(&ev).is_some() {
            terms += 1;
        }
        let (p, ev) = (revised_json_pattern(), revised_json_event())
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let pattern = FilterPattern::new(&p).unwrap();
        if pattern.prefilter().is_some() && pattern.evaluate_unfiltered(&ev).is_some() {
            json += 1;
        }
    }
    eprintln!("prefiltered matches: {terms} term patterns, {json} JSON patterns of 3000 each");
    assert!(terms >= 100 && json >= 50, "{terms} / {json}");
}
