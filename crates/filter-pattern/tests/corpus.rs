//! The semantics corpus runner: every case in `testdata/*.toml`, checked against the crate.
//!
//! Each corpus file is an array of `[[case]]` tables. A case has a unique kebab-case `name`, a
//! `source` saying where its expectation comes from (a section of the repository's
//! `docs/filter-pattern-semantics.md`, cited as `semantics §4.3`, optionally with a source tag
//! such as `R1`; every cited section must exist in that document), and a pattern
//! given either as `pattern = "…"` or as `pattern_repeat = { prefix = "…", unit = "…", count = N,
//! suffix = "…" }` (the pattern is `prefix`, then `unit` repeated `count` times, then `suffix`;
//! `prefix` and `suffix` default to empty). Then either:
//!
//! * a **valid** case: `events` (non-empty) and `matches`, the ascending 1-based indices of the
//!   events that must match (every other event must not), and optionally `extracted`, one table of
//!   expected extracted values per entry of `matches`; or
//! * an **invalid** case: `error`, a fragment the error message must contain (compared
//!   case-insensitively), and optionally `rendered`, the exact `Display` text of the error (one
//!   trailing newline of the stored text is ignored so that `"""` can close on its own line).
//!
//! Optional fields: `rule`, the id (or a list of ids) of the rule changes of semantics §11 that
//! the case demonstrates — every id of [`RULE_CHANGES`] must have at least one case, and every
//! id used must be one of them; `changed`, on a case whose expectation the revision of semantics
//! §11 changed, saying what the case expected before and why it changed (such a case names its
//! `rule`); and `note`, free text.
//!
//! Besides the stated expectations the runner checks the API contract around them: `as_str`
//! returns the text, `is_match` agrees with `evaluate`, the prefilter never rejects a matching
//! event, `required_values("$.eventName")` never excludes a matching event, the kind follows the
//! first non-blank character, term and JSON patterns extract nothing, and the canonical text
//! (`to_string()`) re-parses to a pattern with the same kind, the same results on every event of
//! the case and the same canonical text. Every case runs; failures are reported all at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use filter_pattern::{FilterPattern, PatternKind};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CorpusFile {
    #[serde(default)]
    case: Vec<RawCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    source: String,
    pattern: Option<String>,
    pattern_repeat: Option<Repeat>,
    events: Option<Vec<String>>,
    matches: Option<Vec<usize>>,
    extracted: Option<Vec<BTreeMap<String, String>>>,
    error: Option<String>,
    rendered: Option<String>,
    rule: Option<Rules>,
    changed: Option<String>,
    #[allow(dead_code)] // free text for readers of the corpus
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Rules {
    One(String),
    Many(Vec<String>),
}

impl Rules {
    fn ids(&self) -> Vec<String> {
        match self {
            Rules::One(id) => vec![id.clone()],
            Rules::Many(ids) => ids.clone(),
        }
    }
}

/// The rule changes of the revision (semantics §11, one per line of the change list): each
/// needs at least one corpus case naming it in `rule`. The document's §11 lists the same ids.
const RULE_CHANGES: &[(&str, &str)] = &[
    (
        "r1-outranks-docs",
        "recorded service behaviour outranks the documentation",
    ),
    (
        "empty-quoted-term",
        "`\"\"` is an error, `\" \"` finds a space, only a blank pattern matches all",
    ),
    (
        "regex-whole-pattern",
        "a %regex% only as the whole pattern, which then ends with `%`",
    ),
    (
        "keywords-any-case",
        "IS, NULL, TRUE, FALSE, NOT, EXISTS in any case",
    ),
    (
        "term-characters",
        "unquoted terms: letters of any script, digits, `_`, `.`; else an error",
    ),
    (
        "term-split",
        "`-`/`?` inside an unquoted word starts a new prefixed term",
    ),
    (
        "quoted-term-shape",
        "a quoted term is non-empty, closed, followed by a blank or the end",
    ),
    (
        "bare-values",
        "bare values: numerals or letters/digits/_/./-/*; `null` and `:` are errors",
    ),
    (
        "selector-first-step",
        "a selector starts with a `.` step; negative indexes are errors",
    ),
    (
        "exponent-limit",
        "a numeral's exponent magnitude must be below 2^31",
    ),
    (
        "regex-restrictions",
        "`%%`, possessive, reversed ranges, unknown escapes rejected; lazy valid",
    ),
    (
        "non-object-root",
        "a JSON root that is not an object matches nothing, not even NOT EXISTS",
    ),
    (
        "wildcard-both",
        "`[*]` and `.*` iterate object members and array elements",
    ),
    (
        "wildcard-ne-universal",
        "wildcard `!=`: the parent exists and no selected node equals",
    ),
    (
        "is-null-array",
        "IS NULL also on an array with null at its first level",
    ),
    (
        "quoted-vs-number",
        "a quoted value compares with a number's canonical text",
    ),
    (
        "exact-decimals",
        "numeric tests on exact decimals; underflow 0; overflow text only",
    ),
    (
        "sd-rest-of-line",
        "no exact field count: fewer fields no match, the last entry takes the rest",
    ),
    (
        "sd-empty-pattern",
        "`[]` matches every event and extracts $1…$k",
    ),
    (
        "sd-trailing-empty-entry",
        "`[x,]`: an unnamed last field that takes the rest, keyed $n",
    ),
    (
        "sd-unclosed-delimiters",
        "an unclosed `\"`/`[` is plain text; a closing delimiter ends a field",
    ),
    (
        "sd-blanks",
        "tabs separate fields; trailing blanks make no field; `\"\"`/`[]` are empty fields",
    ),
    (
        "sd-names",
        "duplicate field names and digit-leading names are errors",
    ),
    (
        "sd-numerals",
        "a quoted numeral compares as text; `!= n` on a non-number field is true",
    ),
    (
        "extracted-values",
        "extractedValues is {} for every form except space-delimited",
    ),
];
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Repeat {
    #[serde(default)]
    prefix: String,
    unit: String,
    count: usize,
    #[serde(default)]
    suffix: String,
}

/// One case after its shape has been checked.
#[derive(Debug)]
struct Case {
    file: String,
    name: String,
    pattern: String,
    expect: Expect,
    rules: Vec<String>,
}

#[derive(Debug)]
enum Expect {
    Valid {
        events: Vec<String>,
        /// 1-based indices of the events that must match.
        matches: Vec<usize>,
        /// Expected extracted values, parallel to `matches`.
        extracted: Option<Vec<BTreeMap<String, String>>>,
    },
    Invalid {
        fragment: String,
        rendered: Option<String>,
    },
}

/// One broken expectation, reported together with all the others.
struct Failure {
    file: String,
    name: String,
    pattern: String,
    /// 1-based index of the event concerned, if any.
    event: Option<(usize, String)>,
    check: &'static str,
    expected: String,
    got: String,
}

impl Failure {
    fn new(case: &Case, check: &'static str, expected: String, got: String) -> Failure {
        Failure {
            file: case.file.clone(),
            name: case.name.clone(),
            pattern: case.pattern.clone(),
            event: None,
            check,
            expected,
            got,
        }
    }

    fn at(mut self, index: usize, event: &str) -> Failure {
        self.event = Some((index, event.to_owned()));
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- {} ({}): {}", self.name, self.file, self.check)?;
        writeln!(f, "    pattern:  {}", shorten(&self.pattern))?;
        if let Some((index, event)) = &self.event {
            writeln!(f, "    event #{index}: {}", shorten(event))?;
        }
        writeln!(f, "    expected: {}", indent(&self.expected))?;
        writeln!(f, "    got:      {}", indent(&self.got))
    }
}

/// Debug-quotes a text, cutting very long ones (the 1024-character limit cases) in the middle.
fn shorten(text: &str) -> String {
    let chars = text.chars().count();
    if chars <= 160 {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(80).collect();
    let tail: String = text.chars().skip(chars - 40).collect();
    format!("{head:?} … {tail:?} ({chars} characters)")
}

fn indent(text: &str) -> String {
    text.replace('\n', "\n              ")
}

fn testdata_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn semantics_doc() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/filter-pattern-semantics.md")
}

fn semantics_text() -> String {
    let path = semantics_doc();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The section number at the start of `rest` (the text after a `§`): `4.3. Terms` → `4.3`.
fn section_number(rest: &str) -> String {
    rest.chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect::<String>()
        .trim_end_matches('.')
        .to_owned()
}

/// The section numbers of the semantics document: headings `## §4 …`, `### §4.3 …`.
fn document_sections() -> BTreeSet<String> {
    semantics_text()
        .lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').trim_start().strip_prefix('§'))
        .map(section_number)
        .filter(|n| !n.is_empty())
        .collect()
}

/// The sections a source cites: `semantics §4.3, §9 A5` → {"4.3", "9"}. After the word
/// `semantics`, every `§N` up to the end of the source counts.
fn cited_sections(source: &str) -> Vec<String> {
    let Some(at) = source.find("semantics §") else {
        return Vec::new();
    };
    source[at..]
        .split('§')
        .skip(1)
        .map(section_number)
        .filter(|n| !n.is_empty())
        .collect()
}

fn is_kebab_case(name: &str) -> bool {
    !name.is_empty()
        && name.split('-').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Loads every corpus file, in file-name order, and panics with every shape problem at once
/// (unreadable files, malformed cases, repeated names, an empty corpus or an empty file).
fn load_corpus() -> Vec<Case> {
    let dir = testdata_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();

    let mut problems = Vec::new();
    let mut cases = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for path in &paths {
        let file = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                problems.push(format!("{file}: cannot read: {e}"));
                continue;
            }
        };
        let parsed: CorpusFile = match toml::from_str(&text) {
            Ok(parsed) => parsed,
            Err(e) => {
                problems.push(format!("{file}: invalid corpus file: {e}"));
                continue;
            }
        };
        if parsed.case.is_empty() {
            problems.push(format!("{file}: holds no [[case]]"));
        }
        for raw in parsed.case {
            if let Some(first) = seen.insert(raw.name.clone(), file.clone()) {
                problems.push(format!(
                    "{file}: case name {:?} repeats (first used in {first})",
                    raw.name
                ));
            }
            match check_shape(&file, raw) {
                Ok(case) => cases.push(case),
                Err(mut errors) => problems.append(&mut errors),
            }
        }
    }
    if cases.is_empty() {
        problems.push(format!("the corpus in {} is empty", dir.display()));
    }
    assert!(
        problems.is_empty(),
        "{} corpus problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    cases
}

fn check_shape(file: &str, raw: RawCase) -> Result<Case, Vec<String>> {
    let mut errors = Vec::new();
    let who = format!("{file}: case {:?}", raw.name);
    if !is_kebab_case(&raw.name) {
        errors.push(format!("{who}: name is not kebab-case"));
    }
    if raw.source.trim().is_empty() {
        errors.push(format!("{who}: empty source"));
    }
    let sections = cited_sections(&raw.source);
    if sections.is_empty() {
        errors.push(format!(
            "{who}: source {:?} cites no section of the semantics document (`semantics §N`)",
            raw.source
        ));
    }
    let known = document_sections();
    for section in sections {
        if !known.contains(&section) {
            errors.push(format!(
                "{who}: source cites semantics §{section}, which docs/filter-pattern-semantics.md does not have"
            ));
        }
    }
    let rules = raw.rule.as_ref().map(Rules::ids).unwrap_or_default();
    for id in &rules {
        if !RULE_CHANGES.iter().any(|(known, _)| known == id) {
            errors.push(format!("{who}: unknown rule id {id:?} (see RULE_CHANGES)"));
        }
    }
    if let Some(changed) = &raw.changed {
        if changed.trim().is_empty() {
            errors.push(format!("{who}: empty `changed`"));
        }
        if rules.is_empty() {
            errors.push(format!("{who}: a `changed` case must name its `rule`"));
        }
    }
    let pattern = match (raw.pattern, raw.pattern_repeat) {
        (Some(pattern), None) => pattern,
        (None, Some(r)) => format!("{}{}{}", r.prefix, r.unit.repeat(r.count), r.suffix),
        _ => {
            errors.push(format!(
                "{who}: needs exactly one of `pattern` and `pattern_repeat`"
            ));
            String::new()
        }
    };
    let expect = match (raw.error, raw.events, raw.matches) {
        (Some(fragment), None, None) => {
            if raw.extracted.is_some() {
                errors.push(format!("{who}: an invalid case cannot have `extracted`"));
            }
            if fragment.is_empty() {
                errors.push(format!("{who}: empty `error` fragment"));
            }
            let rendered = raw
                .rendered
                .map(|r| r.strip_suffix('\n').map(str::to_owned).unwrap_or(r));
            Expect::Invalid { fragment, rendered }
        }
        (None, Some(events), Some(matches)) => {
            if raw.rendered.is_some() {
                errors.push(format!("{who}: only an invalid case can have `rendered`"));
            }
            if events.is_empty() {
                errors.push(format!("{who}: `events` is empty"));
            }
            if matches.windows(2).any(|w| w[0] >= w[1]) {
                errors.push(format!("{who}: `matches` is not strictly ascending"));
            }
            if matches.iter().any(|&m| m == 0 || m > events.len()) {
                errors.push(format!(
                    "{who}: `matches` {matches:?} is out of range 1..={}",
                    events.len()
                ));
            }
            if let Some(extracted) = &raw.extracted {
                if extracted.len() != matches.len() {
                    errors.push(format!(
                        "{who}: `extracted` has {} tables for {} matches",
                        extracted.len(),
                        matches.len()
                    ));
                }
            }
            Expect::Valid {
                events,
                matches,
                extracted: raw.extracted,
            }
        }
        _ => {
            errors.push(format!(
                "{who}: needs either `error` (invalid) or `events` and `matches` (valid)"
            ));
            Expect::Invalid {
                fragment: String::new(),
                rendered: None,
            }
        }
    };
    if errors.is_empty() {
        Ok(Case {
            file: file.to_owned(),
            name: raw.name,
            pattern,
            expect,
            rules,
        })
    } else {
        Err(errors)
    }
}

fn report(what: &str, total: usize, failures: &[Failure]) {
    if failures.is_empty() {
        return;
    }
    let cases: BTreeSet<(&str, &str)> = failures
        .iter()
        .map(|f| (f.file.as_str(), f.name.as_str()))
        .collect();
    let mut text = format!(
        "{} failure(s) in {} of {total} {what}:\n",
        failures.len(),
        cases.len()
    );
    for failure in failures {
        let _ = write!(text, "{failure}");
    }
    text.push_str("failing cases:\n");
    for (file, name) in &cases {
        let _ = writeln!(text, "    {file}: {name}");
    }
    panic!("{text}");
}

fn show_result(result: &Option<Vec<(String, String)>>) -> String {
    match result {
        None => "no match".to_owned(),
        Some(values) if values.is_empty() => "match".to_owned(),
        Some(values) => format!("match, extracted {values:?}"),
    }
}

/// The kind the first non-blank character calls for (semantics §1): only a blank pattern
/// matches everything.
fn expected_kind(pattern: &str) -> PatternKind {
    match pattern.trim_start().chars().next() {
        None => PatternKind::MatchAll,
        Some('{') => PatternKind::Json,
        Some('[') => PatternKind::SpaceDelimited,
        Some('%') => PatternKind::Regex,
        Some(_) => PatternKind::Terms,
    }
}

fn check_valid(
    case: &Case,
    events: &[String],
    matches: &[usize],
    extracted: Option<&[BTreeMap<String, String>]>,
    failures: &mut Vec<Failure>,
) {
    let pattern = match FilterPattern::new(&case.pattern) {
        Ok(pattern) => pattern,
        Err(e) => {
            failures.push(Failure::new(
                case,
                "compile",
                "a valid pattern".to_owned(),
                format!("rejected:\n{e}"),
            ));
            return;
        }
    };
    if pattern.as_str() != case.pattern {
        failures.push(Failure::new(
            case,
            "as_str",
            shorten(&case.pattern),
            shorten(pattern.as_str()),
        ));
    }
    let kind = pattern.kind();
    let want = expected_kind(&case.pattern);
    if want != kind {
        failures.push(Failure::new(
            case,
            "kind",
            format!("{want:?}"),
            format!("{kind:?}"),
        ));
    }
    let required = pattern.required_values("$.eventName");

    let mut results = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let index = i + 1;
        let result = pattern.evaluate(event);
        let position = matches.iter().position(|&m| m == index);
        match (position, &result) {
            (Some(_), None) => failures.push(
                Failure::new(case, "evaluate", "match".to_owned(), "no match".to_owned())
                    .at(index, event),
            ),
            (None, Some(_)) => failures.push(
                Failure::new(
                    case,
                    "evaluate",
                    "no match".to_owned(),
                    show_result(&result),
                )
                .at(index, event),
            ),
            (Some(p), Some(values)) => check_extracted(
                case,
                kind,
                extracted.map(|e| &e[p]),
                values,
                index,
                event,
                failures,
            ),
            (None, None) => {}
        }
        if pattern.is_match(event) != result.is_some() {
            failures.push(
                Failure::new(
                    case,
                    "is_match agrees with evaluate",
                    show_result(&result),
                    format!("is_match = {}", pattern.is_match(event)),
                )
                .at(index, event),
            );
        }
        if result.is_some() {
            if let Some(prefilter) = pattern.prefilter() {
                if !prefilter.may_match(event.as_bytes()) {
                    failures.push(
                        Failure::new(
                            case,
                            "prefilter is sound",
                            "may_match = true for a matching event".to_owned(),
                            format!("may_match = false; literals {:?}", prefilter.literals()),
                        )
                        .at(index, event),
                    );
                }
            }
            if let Some(set) = &required {
                check_required(case, set, index, event, failures);
            }
        }
        results.push(result);
    }

    check_canonical(case, &pattern, events, &results, failures);
}

fn check_extracted(
    case: &Case,
    kind: PatternKind,
    want: Option<&BTreeMap<String, String>>,
    got: &[(String, String)],
    index: usize,
    event: &str,
    failures: &mut Vec<Failure>,
) {
    let mut got_map = BTreeMap::new();
    for (key, value) in got {
        if got_map.insert(key.clone(), value.clone()).is_some() {
            failures.push(
                Failure::new(
                    case,
                    "extracted keys are unique",
                    "each key once".to_owned(),
                    format!("{key:?} repeats in {got:?}"),
                )
                .at(index, event),
            );
        }
    }
    match want {
        Some(want) if *want != got_map => failures.push(
            Failure::new(
                case,
                "extracted",
                format!("{want:?}"),
                format!("{got_map:?}"),
            )
            .at(index, event),
        ),
        None if kind != PatternKind::SpaceDelimited && !got.is_empty() => failures.push(
            Failure::new(
                case,
                "extracted",
                "nothing (only space-delimited patterns extract values)".to_owned(),
                format!("{got:?}"),
            )
            .at(index, event),
        ),
        _ => {}
    }
}

/// `required_values("$.eventName")` promises that every match has a string `eventName` in the
/// set; a matching event whose `eventName` is absent or outside the set breaks that promise.
fn check_required(
    case: &Case,
    set: &BTreeSet<String>,
    index: usize,
    event: &str,
    failures: &mut Vec<Failure>,
) {
    let Ok(document) = serde_json::from_str::<serde_json::Value>(event) else {
        failures.push(
            Failure::new(
                case,
                "required_values is sound",
                format!("a JSON event with eventName in {set:?}"),
                "a matching event that is not JSON".to_owned(),
            )
            .at(index, event),
        );
        return;
    };
    match document.get("eventName") {
        Some(serde_json::Value::String(name)) if set.contains(name) => {}
        Some(serde_json::Value::Number(_)) => {}
        other => failures.push(
            Failure::new(
                case,
                "required_values is sound",
                format!("eventName in {set:?}"),
                format!("eventName = {other:?}"),
            )
            .at(index, event),
        ),
    }
}

fn check_canonical(
    case: &Case,
    pattern: &FilterPattern,
    events: &[String],
    results: &[Option<Vec<(String, String)>>],
    failures: &mut Vec<Failure>,
) {
    let canonical = pattern.to_string();
    let reparsed = match FilterPattern::new(&canonical) {
        Ok(reparsed) => reparsed,
        Err(e) => {
            failures.push(Failure::new(
                case,
                "canonical text re-parses",
                format!("{} parses", shorten(&canonical)),
                format!("rejected:\n{e}"),
            ));
            return;
        }
    };
    if reparsed.kind() != pattern.kind() {
        failures.push(Failure::new(
            case,
            "canonical text keeps the kind",
            format!("{:?}", pattern.kind()),
            format!("{:?} from {}", reparsed.kind(), shorten(&canonical)),
        ));
    }
    let again = reparsed.to_string();
    if again != canonical {
        failures.push(Failure::new(
            case,
            "canonical text is a fixed point",
            shorten(&canonical),
            shorten(&again),
        ));
    }
    for (i, (event, original)) in events.iter().zip(results).enumerate() {
        let result = reparsed.evaluate(event);
        if &result != original {
            failures.push(
                Failure::new(
                    case,
                    "canonical text evaluates the same",
                    show_result(original),
                    format!("{} with {}", show_result(&result), shorten(&canonical)),
                )
                .at(i + 1, event),
            );
        }
    }
}

fn check_invalid(case: &Case, fragment: &str, failures: &mut Vec<Failure>) {
    let error = match FilterPattern::new(&case.pattern) {
        Ok(pattern) => {
            failures.push(Failure::new(
                case,
                "reject",
                format!("an error mentioning {fragment:?}"),
                format!(
                    "accepted as {:?}: {}",
                    pattern.kind(),
                    shorten(&pattern.to_string())
                ),
            ));
            return;
        }
        Err(error) => error,
    };
    let message = error.message();
    if !message.to_lowercase().contains(&fragment.to_lowercase()) {
        failures.push(Failure::new(
            case,
            "error message",
            format!("a message containing {fragment:?}"),
            format!("{message:?}"),
        ));
    }
    let span = error.span();
    if error.column() == 0
        || span.start > span.end
        || span.end > case.pattern.len()
        || !case.pattern.is_char_boundary(span.start)
        || !case.pattern.is_char_boundary(span.end)
    {
        failures.push(Failure::new(
            case,
            "error position",
            format!(
                "column ≥ 1 and a span on character boundaries within 0..={}",
                case.pattern.len()
            ),
            format!("column {}, span {span:?}", error.column()),
        ));
    }
    if let Some(want) = expected_rendering(&case.pattern, message, error.column(), span) {
        let got = error.to_string();
        if got != want {
            failures.push(Failure::new(
                case,
                "error rendering follows the documented layout",
                want,
                got,
            ));
        }
    }
}

/// The rendering the API document prescribes for an error with this message, column and span:
/// the message line (`at line L, column C` for a pattern with line breaks), the line holding the
/// error indented by two spaces, and carets under the span (at least one, clipped to the line).
/// `None` when the span is unusable (reported separately).
fn expected_rendering(
    pattern: &str,
    message: &str,
    column: usize,
    span: std::ops::Range<usize>,
) -> Option<String> {
    let before = pattern.get(..span.start)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = pattern[span.start..]
        .find('\n')
        .map_or(pattern.len(), |i| span.start + i);
    let line = &pattern[line_start..line_end];
    let line_number = before.matches('\n').count() + 1;
    let start_column = pattern[line_start..span.start].chars().count() + 1;
    let carets = pattern
        .get(span.start..span.end.min(line_end))?
        .chars()
        .count()
        .max(1);
    let location = if pattern.contains('\n') {
        format!("line {line_number}, column {column}")
    } else {
        format!("column {column}")
    };
    let mut text = format!("invalid filter pattern at {location}: {message}\n  {line}\n  ");
    text.push_str(&" ".repeat(start_column - 1));
    text.push_str(&"^".repeat(carets));
    if column != start_column {
        // The column must be where the span starts; make the mismatch visible in the report.
        text.push_str(&format!("   (span starts at column {start_column})"));
    }
    Some(text)
}

#[test]
fn corpus_cases_hold() {
    let cases = load_corpus();
    let mut failures = Vec::new();
    for case in &cases {
        match &case.expect {
            Expect::Valid {
                events,
                matches,
                extracted,
            } => check_valid(case, events, matches, extracted.as_deref(), &mut failures),
            Expect::Invalid { fragment, .. } => check_invalid(case, fragment, &mut failures),
        }
    }
    report("cases", cases.len(), &failures);
}

#[test]
fn golden_error_renderings() {
    let cases = load_corpus();
    let golden: Vec<(&Case, &str)> = cases
        .iter()
        .filter_map(|case| match &case.expect {
            Expect::Invalid {
                rendered: Some(rendered),
                ..
            } => Some((case, rendered.as_str())),
            _ => None,
        })
        .collect();
    assert!(!golden.is_empty(), "no case has a golden `rendered` text");
    let mut failures = Vec::new();
    for &(case, want) in &golden {
        match FilterPattern::new(&case.pattern) {
            Ok(_) => failures.push(Failure::new(
                case,
                "rendered",
                want.to_owned(),
                "the pattern was accepted".to_owned(),
            )),
            Err(error) => {
                let got = error.to_string();
                if got != want {
                    failures.push(Failure::new(case, "rendered", diff(want, &got), got));
                }
            }
        }
    }
    report("golden renderings", golden.len(), &failures);
}

/// A line-by-line comparison: the expected text with `-`/`+` lines where the two differ.
fn diff(want: &str, got: &str) -> String {
    let want: Vec<&str> = want.lines().collect();
    let got: Vec<&str> = got.lines().collect();
    let mut out = String::new();
    for i in 0..want.len().max(got.len()) {
        match (want.get(i), got.get(i)) {
            (Some(w), Some(g)) if w == g => {
                let _ = writeln!(out, "  {w}");
            }
            (w, g) => {
                if let Some(w) = w {
                    let _ = writeln!(out, "- {w}");
                }
                if let Some(g) = g {
                    let _ = writeln!(out, "+ {g}");
                }
            }
        }
    }
    out.trim_end().to_owned()
}

#[test]
fn every_corpus_file_has_cases() {
    let cases = load_corpus();
    let mut per_file: BTreeMap<&str, usize> = BTreeMap::new();
    for case in &cases {
        *per_file.entry(case.file.as_str()).or_default() += 1;
    }
    for (file, count) in &per_file {
        println!("{file}: {count} case(s)");
    }
    println!(
        "total: {} case(s) in {} file(s)",
        cases.len(),
        per_file.len()
    );
    let files = std::fs::read_dir(testdata_dir())
        .expect("testdata directory")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|ext| ext == "toml"))
        .count();
    assert_eq!(
        per_file.len(),
        files,
        "every corpus file must hold at least one case"
    );
    assert!(per_file.values().all(|&n| n >= 1));
}

#[test]
fn every_rule_change_has_a_case() {
    let cases = load_corpus();
    let mut per_rule: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for case in &cases {
        for id in &case.rules {
            per_rule
                .entry(id.as_str())
                .or_default()
                .push(case.name.as_str());
        }
    }
    let mut missing = Vec::new();
    for (id, summary) in RULE_CHANGES {
        match per_rule.get(id) {
            Some(names) => println!("{id}: {} case(s)", names.len()),
            None => missing.push(format!("{id} ({summary})")),
        }
    }
    assert!(
        missing.is_empty(),
        "rule changes of semantics §11 without a corpus case:\n{}",
        missing.join("\n")
    );
    let changed = cases.iter().filter(|c| !c.rules.is_empty()).count();
    println!("{changed} case(s) name a rule change");
}

/// The document's §11 lists exactly the ids of [`RULE_CHANGES`].
#[test]
fn semantics_document_lists_the_rule_changes() {
    let text = semantics_text();
    let start = text
        .find("\n## §11")
        .expect("docs/filter-pattern-semantics.md has a §11");
    let section = &text[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |i| i + 1)];
    let listed: BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with('|'))
        .filter_map(|l| l.split('`').nth(1))
        .filter(|id| {
            id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        .map(str::to_owned)
        .collect();
    let known: BTreeSet<String> = RULE_CHANGES
        .iter()
        .map(|(id, _)| (*id).to_owned())
        .collect();
    assert_eq!(listed, known, "§11's table and RULE_CHANGES differ");
}
