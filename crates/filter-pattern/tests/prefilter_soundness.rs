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
