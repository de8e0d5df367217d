//! Pattern lint: what is probably wrong with a pattern that compiles.
//!
//! [`lint`] looks for
//!
//! * `$.eventName` values that are not CloudTrail event names (with the nearest real one:
//!   `SetPolicyVersion` → `SetDefaultPolicyVersion`), and wildcards that match none;
//! * role-changing events that a rule about the vendor's role misses, found by evaluating the
//!   pattern on a synthetic record of each event the `complete` pack watches;
//! * values CloudTrail types differently than the pattern assumes (`$.readOnly = false`,
//!   `mfaAuthenticated IS TRUE`, an account ID as a number);
//! * unquoted values with characters that CloudWatch Logs documents as needing quotes
//!   (rolewatch's parser accepts them, as CloudWatch Logs does in practice);
//! * what the revision of the language (`docs/filter-pattern-semantics.md` §11) reads
//!   differently from before: an unquoted word split at `-` or `?` into several terms, a
//!   space-delimited pattern without `...` whose last entry now takes the rest of the line, a
//!   universal `!=` through a wildcard, a quoted numeral compared as text, and keywords in
//!   lower case (valid now). What the revision rejects never gets here: the pattern does not
//!   compile, and the configuration is invalid.
//!
//! Everything here is pure: the pattern, the watched role and policy, and the embedded list
//! of event names.
//!
//! Why one file of ~590 lines: every lint walks the same AST with the same context; the
//! checks are short and share the message helpers.

use std::fmt;

use filter_pattern::ast::{
    CmpOp, Condition, Entry, Expr, FieldExpr, Pattern, Selector, Test, Value,
};
use filter_pattern::{is_numeral, FilterPattern, MAX_PATTERN_CHARS};

use super::event_names;
use super::packs::{role_change_records, PackParams};

/// How much a lint matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LintLevel {
    /// The rule probably does not do what its author meant.
    Warning,
    /// Works in rolewatch, but is fragile or departs from what AWS documents.
    Note,
}

impl LintLevel {
    /// `warning` or `note`.
    pub fn as_str(self) -> &'static str {
        match self {
            LintLevel::Warning => "warning",
            LintLevel::Note => "note",
        }
    }
}

impl fmt::Display for LintLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding about a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    /// Warning or note.
    pub level: LintLevel,
    /// One sentence, lower case, with values in backticks.
    pub message: String,
}

impl Lint {
    fn warning(message: String) -> Lint {
        Lint {
            level: LintLevel::Warning,
            message,
        }
    }

    fn note(message: String) -> Lint {
        Lint {
            level: LintLevel::Note,
            message,
        }
    }
}

impl fmt::Display for Lint {
    /// `warning: <message>` / `note: <message>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.level, self.message)
    }
}

/// What lint needs to know besides the pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintContext {
    /// The watched role and policy (and whether tag changes count as role changes).
    pub params: PackParams,
}

/// Why `text` cannot be a filter pattern because of its length, if it cannot: CloudWatch Logs
/// accepts at most [`MAX_PATTERN_CHARS`] characters. ([`FilterPattern::new`] rejects such a
/// pattern, so [`lint`] never sees one.)
pub fn length_problem(text: &str) -> Option<String> {
    let chars = text.chars().count();
    (chars > MAX_PATTERN_CHARS).then(|| {
        format!(
            "the pattern is {chars} characters long; CloudWatch Logs accepts at most {MAX_PATTERN_CHARS}"
        )
    })
}

/// Everything [`lint`](self) finds in `pattern`: warnings first, then notes, each group in
/// the order of the pattern's text. An empty list means nothing was found.
pub fn lint(pattern: &FilterPattern, ctx: &LintContext) -> Vec<Lint> {
    let mut lints = Vec::new();
    let mut conditions = Vec::new();
    if let Pattern::Json(expr) = pattern.ast() {
        collect_conditions(expr, &mut conditions);
    }
    event_name_lints(&conditions, &mut lints);
    missed_events_lint(pattern, &conditions, ctx, &mut lints);
    typing_lints(&conditions, &mut lints);
    quoting_lints(pattern.ast(), &conditions, &mut lints);
    revision_lints(pattern, &conditions, &mut lints);
    let mut seen = Vec::new();
    lints.retain(|l| {
        let new = !seen.contains(&l.message);
        seen.push(l.message.clone());
        new
    });
    // Stable: warnings keep their order, notes keep theirs.
    lints.sort_by_key(|l| l.level);
    lints
}

fn collect_conditions<'a>(expr: &'a Expr, out: &mut Vec<&'a Condition>) {
    match expr {
        Expr::Or(items) | Expr::And(items) => {
            items.iter().for_each(|e| collect_conditions(e, out));
        }
        Expr::Cond(c) => out.push(c),
    }
}

/// The selector's member names when it is a plain path (`$.a.b` → a, b), else `None`.
fn plain_path(selector: &Selector) -> Option<Vec<&str>> {
    selector.segments.iter().map(|s| s.member_name()).collect()
}

fn is_path(selector: &Selector, path: &[&str]) -> bool {
    plain_path(selector).is_some_and(|p| p == path)
}

/// The last member name of a selector (`$.a.b[0]` → b).
fn last_member(selector: &Selector) -> Option<&str> {
    selector.segments.iter().rev().find_map(|s| s.member_name())
}

/// `S = "text"` / `S != "text"` with a string value: the text.
fn string_compared(c: &Condition) -> Option<(CmpOp, &str)> {
    match &c.test {
        Test::Compare(op @ (CmpOp::Eq | CmpOp::Ne), Value::Str { text, .. }) => Some((*op, text)),
        _ => None,
    }
}

fn event_name_lints(conditions: &[&Condition], lints: &mut Vec<Lint>) {
    let known = event_names::table();
    let names: Vec<&str> = conditions
        .iter()
        .filter(|c| is_path(&c.selector, &["eventName"]))
        .filter_map(|c| string_compared(c).map(|(_, t)| t))
        .collect();
    // The sources the pattern is about: its valid event names' and its `$.eventSource` values.
    let mut context: Vec<&str> = names
        .iter()
        .filter(|n| !n.contains('*'))
        .flat_map(|n| known.sources(n))
        .collect();
    context.extend(
        conditions
            .iter()
            .filter(|c| is_path(&c.selector, &["eventSource"]))
            .filter_map(|c| string_compared(c))
            .filter(|(op, t)| *op == CmpOp::Eq && !t.contains('*'))
            .map(|(_, t)| t),
    );
    for name in names {
        if name.contains('*') {
            if !known.any_matches_glob(name) {
                lints.push(Lint::warning(format!(
                    "`{name}` matches no CloudTrail event name"
                )));
            }
            continue;
        }
        if known.is_known(name) {
            continue;
        }
        let message = match known.suggest(name, &context) {
            Some(s) if s.eq_ignore_ascii_case(name) => format!(
                "`{name}` is not a CloudTrail event name (event names are case-sensitive); did you mean `{s}`?"
            ),
            Some(s) => format!("`{name}` is not a CloudTrail event name; did you mean `{s}`?"),
            None => format!("`{name}` is not a CloudTrail event name"),
        };
        lints.push(Lint::warning(message));
    }
}

/// The rule is about the watched role when it matches a synthetic role-changing event and
/// would not match the same event on another role and policy; then every role-changing event
/// it does not match is a miss.
fn missed_events_lint(
    pattern: &FilterPattern,
    conditions: &[&Condition],
    ctx: &LintContext,
    lints: &mut Vec<Lint>,
) {
    let params = &ctx.params;
    // The pattern's own ARN for the policy when it names one (its account is the customer's),
    // else one in the vendor's account.
    let suffix = format!("/{}", params.policy_name);
    let policy_arn = conditions
        .iter()
        .filter(|c| is_path(&c.selector, &["requestParameters", "policyArn"]))
        .filter_map(|c| string_compared(c))
        .map(|(_, t)| t)
        .find(|t| !t.contains('*') && t.starts_with("arn:") && t.ends_with(&suffix))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "arn:aws:iam::{}:policy/{}",
                params.account_id, params.policy_name
            )
        });
    let records = role_change_records(params, &policy_arn);
    // Names that neither contain nor equal the watched ones, so that a substring (term)
    // pattern cannot match them either.
    let unlike = |name: &str, a: &'static str, b: &'static str| {
        let apart = |c: &str| !c.contains(name) && !name.contains(c);
        if apart(a) { a } else { b }.to_owned()
    };
    let other = PackParams {
        role_name: unlike(
            &params.role_name,
            "rolewatch-lint-other-role",
            "rolewatch-lint-role",
        ),
        policy_name: unlike(
            &params.policy_name,
            "RolewatchLintOtherPolicy",
            "RolewatchLintPolicy",
        ),
        ..params.clone()
    };
    let other_arn = policy_arn.replace(&suffix, &format!("/{}", other.policy_name));
    let controls = role_change_records(&other, &other_arn);

    let mut about_the_role = false;
    let mut missed = Vec::new();
    for ((event, record), (_, control)) in records.iter().zip(&controls) {
        if pattern.is_match(record) {
            about_the_role |= !pattern.is_match(control);
        } else {
            missed.push(*event);
        }
    }
    if about_the_role && !missed.is_empty() {
        let n = missed.len();
        let events = if n == 1 { "event" } else { "events" };
        lints.push(Lint::warning(format!(
            "misses {n} role-changing {events}: {} (pack `complete` watches them)",
            missed.join(", ")
        )));
    }
}

/// CloudTrail fields that hold JSON booleans (spec §10).
const BOOLEAN_FIELDS: [&str; 8] = [
    "readOnly",
    "managementEvent",
    "setAsDefault",
    "isMultiRegionTrail",
    "includeGlobalServiceEvents",
    "enableLogFileValidation",
    "isOrganizationTrail",
    "includeManagementEvents",
];

/// CloudTrail fields that hold the strings "true" and "false" (spec §10, §9 A7).
const STRING_BOOLEAN_FIELDS: [&str; 2] = ["mfaAuthenticated", "sessionCredentialFromConsole"];

fn typing_lints(conditions: &[&Condition], lints: &mut Vec<Lint>) {
    for c in conditions {
        let Some(field) = last_member(&c.selector) else {
            continue;
        };
        let selector = &c.selector;
        match &c.test {
            Test::IsTrue | Test::IsFalse if STRING_BOOLEAN_FIELDS.contains(&field) => {
                let (test, value) = match c.test {
                    Test::IsTrue => ("IS TRUE", "true"),
                    _ => ("IS FALSE", "false"),
                };
                lints.push(Lint::warning(format!(
                    "`{selector} {test}` never matches: CloudTrail records `{field}` as the string \"true\" or \"false\"; write `{selector} = \"{value}\"`"
                )));
            }
            Test::Compare(op, Value::Str { text, .. })
                if BOOLEAN_FIELDS.contains(&field) && matches!(text.as_str(), "true" | "false") =>
            {
                let meant = (text == "true") == (*op == CmpOp::Eq);
                let fix = if meant { "IS TRUE" } else { "IS FALSE" };
                lints.push(Lint::warning(format!(
                    "`{c}` never matches: CloudTrail records `{field}` as a JSON boolean; write `{selector} {fix}`"
                )));
            }
            Test::Compare(CmpOp::Eq | CmpOp::Ne, Value::Number { text, .. })
                if field.to_ascii_lowercase().ends_with("accountid") =>
            {
                lints.push(Lint::note(format!(
                    "`{text}` is a number, but CloudTrail records `{field}` as a string and CloudWatch Logs does not document how the two compare; quote it: `\"{text}\"`"
                )));
            }
            _ => {}
        }
    }
}

/// What AWS documents as safe without quotes: letters, digits and `_` (plus `*`, which AWS's
/// own examples write bare, in values).
fn needs_quotes(text: &str, star_ok: bool) -> bool {
    !text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || (star_ok && c == '*'))
}

fn quoting_lints(ast: &Pattern, conditions: &[&Condition], lints: &mut Vec<Lint>) {
    let mut bare_values: Vec<&str> = Vec::new();
    for c in conditions {
        if let Test::Compare(
            _,
            Value::Str {
                text,
                quoted: false,
            },
        ) = &c.test
        {
            bare_values.push(text);
        }
    }
    match ast {
        Pattern::SpaceDelimited(entries) => {
            for e in entries {
                if let Entry::Field {
                    conditions: Some(expr),
                    ..
                } = e
                {
                    collect_bare_field_values(expr, &mut bare_values);
                }
            }
        }
        Pattern::MatchAll | Pattern::Terms(_) | Pattern::Regex(_) | Pattern::Json(_) => {}
    }
    for text in bare_values {
        if needs_quotes(text, true) {
            lints.push(Lint::note(format!(
                "`{text}` is not quoted: CloudWatch Logs documents quotes for values with characters other than letters, digits and `_`; write `{}`",
                super::packs::quote(text)
            )));
        }
    }
}

/// What the revision of the language reads differently (semantics §11).
fn revision_lints(pattern: &FilterPattern, conditions: &[&Condition], lints: &mut Vec<Lint>) {
    match pattern.ast() {
        Pattern::Terms(_) => split_term_lints(pattern.as_str(), lints),
        Pattern::SpaceDelimited(entries) => {
            field_count_lint(entries, lints);
            for e in entries {
                if let Entry::Field {
                    name,
                    conditions: Some(expr),
                } = e
                {
                    quoted_field_numeral_lints(name, expr, lints);
                }
            }
        }
        Pattern::Json(_) => {
            for c in conditions {
                wildcard_ne_lint(c, lints);
                quoted_json_numeral_lint(c, lints);
            }
            keyword_case_lint(pattern.as_str(), lints);
        }
        Pattern::MatchAll | Pattern::Regex(_) => {}
    }
}

/// The words of a term pattern as written: runs of non-blanks, a quoted part (with its
/// escapes) kept whole.
fn source_words(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let blank = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c');
    let mut words = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && blank(b[i]) {
            i += 1;
        }
        let start = i;
        while i < b.len() && !blank(b[i]) {
            if b[i] == b'"' {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            i += 1;
        }
        if i > start {
            words.push(&text[start..i.min(text.len())]);
        }
    }
    words
}

/// An unquoted word with `-` or `?` inside is several terms now (`a-b` is `a -b`).
fn split_term_lints(text: &str, lints: &mut Vec<Lint>) {
    for word in source_words(text) {
        if word.contains('"') {
            continue;
        }
        let core = word.strip_prefix(['-', '?']).unwrap_or(word);
        if !core.contains(['-', '?']) {
            continue;
        }
        let prefix = &word[..word.len() - core.len()];
        let mut split = String::new();
        for (i, c) in word.char_indices() {
            if i > prefix.len() && matches!(c, '-' | '?') {
                split.push(' ');
            }
            split.push(c);
        }
        lints.push(Lint::warning(format!(
            "the unquoted term `{word}` is read as the terms `{split}`: CloudWatch Logs splits an unquoted word at `-` and `?` (rolewatch did not before the revision of the language); to find the word itself, quote it: `{prefix}{}`",
            super::packs::quote(core)
        )));
    }
}

/// Without `...` a space-delimited pattern no longer needs an exact number of fields: its
/// last entry takes the rest of the line.
fn field_count_lint(entries: &[Entry], lints: &mut Vec<Lint>) {
    if entries.is_empty() || entries.iter().any(|e| matches!(e, Entry::Ellipsis)) {
        return;
    }
    let n = entries.len();
    let last = match &entries[n - 1] {
        Entry::Field { name, .. } => format!("`{name}`"),
        _ => format!("`${n}` (the empty last entry)"),
    };
    let fields = if n == 1 { "field" } else { "fields" };
    lints.push(Lint::warning(format!(
        "this space-delimited pattern has no `...`, so an event with more than {n} {fields} matches too: its last entry {last} takes the rest of the line (before the revision of the language, the event needed exactly {n} {fields}); to require {n}, give the last entry a condition such as `= %^\\S*$%`"
    )));
}

/// A wildcard `!=` is universal now: no selected node may equal the value.
fn wildcard_ne_lint(c: &Condition, lints: &mut Vec<Lint>) {
    let Test::Compare(CmpOp::Ne, value) = &c.test else {
        return;
    };
    let Some(w) = c.selector.segments.iter().position(|s| s.is_wildcard()) else {
        return;
    };
    let parent = Selector {
        segments: c.selector.segments[..w].to_vec(),
    };
    lints.push(Lint::warning(format!(
        "`{c}` holds when no node that `{}` selects equals {value}, and also when `{parent}` exists but holds none (empty, null or a scalar); before the revision of the language it held when some node differed",
        c.selector
    )));
}

/// A quoted numeral is text: in a field it does not find `7.0` for `\"7\"`.
fn quoted_field_numeral_lints(name: &str, expr: &FieldExpr, lints: &mut Vec<Lint>) {
    match expr {
        FieldExpr::Or(items) | FieldExpr::And(items) => items
            .iter()
            .for_each(|e| quoted_field_numeral_lints(name, e, lints)),
        FieldExpr::Cond(op @ (CmpOp::Eq | CmpOp::Ne), Value::Str { text, quoted: true })
            if is_numeral(text) =>
        {
            lints.push(Lint::note(format!(
                "`{name} {} \"{text}\"` compares the field as text: it matches the field `{text}` exactly, not `{text}` written otherwise (`0{text}`, `{text}.0`); write `{name} {} {text}` to compare the number",
                op.as_str(),
                op.as_str()
            )));
        }
        FieldExpr::Cond(..) => {}
    }
}

/// A quoted numeral that is not a plain integer meets a JSON number as its canonical text.
fn quoted_json_numeral_lint(c: &Condition, lints: &mut Vec<Lint>) {
    let Test::Compare(op @ (CmpOp::Eq | CmpOp::Ne), Value::Str { text, quoted: true }) = &c.test
    else {
        return;
    };
    if !is_numeral(text) || !text.contains(['.', 'e', 'E', '+']) {
        return;
    }
    lints.push(Lint::note(format!(
        "`{c}` compares text: a JSON number matches only when its canonical text is `{text}` (`7.0`, `1.0E21`), not by value; write `{} {} {text}` to compare the number",
        c.selector,
        op.as_str()
    )));
}

/// Keywords in lower or mixed case: valid, but new.
fn keyword_case_lint(text: &str, lints: &mut Vec<Lint>) {
    // Words outside quoted strings and regexes, with whether a blank precedes each.
    let mut words: Vec<(&str, bool, usize)> = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'%' => {
                let close = b[i];
                i += 1;
                while i < b.len() && b[i] != close {
                    i += if close == b'"' && b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            c if c.is_ascii_alphabetic() => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let after_blank = start > 0 && b[start - 1].is_ascii_whitespace();
                words.push((&text[start..i], after_blank, start));
            }
            _ => i += 1,
        }
    }
    for pair in words.windows(2) {
        let ((w1, blank1, s1), (w2, blank2, s2)) = (pair[0], pair[1]);
        let adjacent = text[s1 + w1.len()..s2]
            .bytes()
            .all(|c| c.is_ascii_whitespace());
        let keyword = matches!(
            (
                w1.to_ascii_uppercase().as_str(),
                w2.to_ascii_uppercase().as_str(),
            ),
            ("IS", "NULL" | "TRUE" | "FALSE") | ("NOT", "EXISTS")
        );
        if keyword && blank1 && blank2 && adjacent {
            let written = format!("{w1} {w2}");
            let upper = written.to_ascii_uppercase();
            if written != upper {
                lints.push(Lint::note(format!(
                    "`{written}` is valid (CloudWatch Logs takes keywords in any case; rolewatch did not before the revision of the language), but AWS documents keywords in capitals: `{upper}`"
                )));
            }
        }
    }
}

fn collect_bare_field_values<'a>(expr: &'a FieldExpr, out: &mut Vec<&'a str>) {
    match expr {
        FieldExpr::Or(items) | FieldExpr::And(items) => {
            items.iter().for_each(|e| collect_bare_field_values(e, out));
        }
        FieldExpr::Cond(
            _,
            Value::Str {
                text,
                quoted: false,
            },
        ) => out.push(text),
        FieldExpr::Cond(..) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::packs::{expand, Pack};
    use crate::rules::DOCUMENTED_PATTERN;

    fn lints_of(pattern: &str) -> Vec<String> {
        lints_with(pattern, &LintContext::default())
    }

    fn lints_with(pattern: &str, ctx: &LintContext) -> Vec<String> {
        let p = FilterPattern::new(pattern).unwrap_or_else(|e| panic!("{e:#}"));
        lint(&p, ctx).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_documented_pattern() {
        assert_eq!(
            lints_of(DOCUMENTED_PATTERN),
            [
                "warning: `SetPolicyVersion` is not a CloudTrail event name; did you mean `SetDefaultPolicyVersion`?",
                "warning: misses 11 role-changing events: PutRolePolicy, DeleteRolePolicy, UpdateAssumeRolePolicy, PutRolePermissionsBoundary, DeleteRolePermissionsBoundary, DeleteRole, TagRole, UntagRole, SetDefaultPolicyVersion, DeletePolicyVersion, DeletePolicy (pack `complete` watches them)",
                "note: `astronomer-remote-management` is not quoted: CloudWatch Logs documents quotes for values with characters other than letters, digits and `_`; write `\"astronomer-remote-management\"`",
            ]
        );
    }

    #[test]
    fn the_documented_pattern_without_tag_changes() {
        let ctx = LintContext {
            params: PackParams {
                include_tag_changes: false,
                ..PackParams::default()
            },
        };
        let lints = lints_with(DOCUMENTED_PATTERN, &ctx);
        assert!(lints[1].starts_with("warning: misses 9 role-changing events: PutRolePolicy,"));
        assert!(!lints[1].contains("TagRole"), "{}", lints[1]);
    }

    #[test]
    fn every_pack_is_clean() {
        let params = PackParams {
            trails: vec!["t".into()],
            log_groups: vec!["/ct/logs".into()],
            alarm_names: vec!["a".into()],
            ..PackParams::default()
        };
        let ctx = LintContext {
            params: params.clone(),
        };
        for pack in [Pack::Complete, Pack::TrailTamper] {
            for rule in expand(pack, &params) {
                assert_eq!(
                    lints_with(&rule.pattern, &ctx),
                    Vec::<String>::new(),
                    "{}",
                    rule.pattern
                );
            }
        }
        // Another vendor's `documented`: quoted, so only the name and the misses remain.
        let other = PackParams {
            role_name: "acme-access".into(),
            policy_name: "AcmePolicy".into(),
            ..PackParams::default()
        };
        let rule = &expand(Pack::Documented, &other)[0];
        let lints = lints_with(&rule.pattern, &LintContext { params: other });
        assert_eq!(lints.len(), 2, "{lints:#?}");
        assert!(lints[1].starts_with("warning: misses 11 "), "{lints:#?}");
    }

    #[test]
    fn unknown_event_names_get_the_nearest_real_one() {
        let lints = lints_of(
            "{ $.eventSource = \"iam.amazonaws.com\" && ($.eventName = AttachRolePolicies || $.eventName = PutRolePolcy) }",
        );
        assert_eq!(
            lints,
            [
                "warning: `AttachRolePolicies` is not a CloudTrail event name; did you mean `AttachRolePolicy`?",
                "warning: `PutRolePolcy` is not a CloudTrail event name; did you mean `PutRolePolicy`?",
            ]
        );
        assert_eq!(
            lints_of("{ $.eventName = \"DeleteTrails\" || $.eventName != stoplogging }"),
            [
                "warning: `DeleteTrails` is not a CloudTrail event name; did you mean `DeleteTrail`?",
                "warning: `stoplogging` is not a CloudTrail event name (event names are case-sensitive); did you mean `StopLogging`?",
            ]
        );
        assert_eq!(
            lints_of("{ $.eventName = Xyzzy }"),
            ["warning: `Xyzzy` is not a CloudTrail event name"]
        );
    }

    #[test]
    fn event_name_wildcards_must_match_a_real_name() {
        assert_eq!(
            lints_of("{ $.eventName = \"Delete*Policy\" }"),
            Vec::<String>::new()
        );
        assert_eq!(lints_of("{ $.eventName = * }"), Vec::<String>::new());
        assert_eq!(
            lints_of("{ $.eventName = \"SetPolicyVers*\" }"),
            ["warning: `SetPolicyVers*` matches no CloudTrail event name"]
        );
    }

    #[test]
    fn other_selectors_and_versioned_names_are_not_event_names() {
        assert_eq!(
            lints_of("{ $.requestParameters.eventName = Xyzzy || $.eventName = UpdateFunctionConfiguration20150331v2 }"),
            Vec::<String>::new()
        );
        assert_eq!(
            lints_of("{ $.eventName = %Set.*Version% }"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_rule_about_the_role_that_misses_nothing_is_clean() {
        let pattern = expand(Pack::Complete, &PackParams::default())
            .remove(0)
            .pattern;
        assert_eq!(lints_of(&pattern), Vec::<String>::new());
    }

    #[test]
    fn a_rule_about_the_role_is_checked_whatever_its_form() {
        assert_eq!(
            lints_of(r#"{ $.requestParameters.roleName = "astronomer-remote-management" }"#),
            ["warning: misses 4 role-changing events: CreatePolicyVersion, SetDefaultPolicyVersion, DeletePolicyVersion, DeletePolicy (pack `complete` watches them)"]
        );
        assert_eq!(
            lints_of(r#""astronomer-remote-management""#),
            ["warning: misses 4 role-changing events: CreatePolicyVersion, SetDefaultPolicyVersion, DeletePolicyVersion, DeletePolicy (pack `complete` watches them)"]
        );
        assert_eq!(
            lints_of(r#"{ $.eventName = SetDefaultPolicyVersion && $.requestParameters.policyArn = "arn:aws:iam::111122223333:policy/AstronomerCrossAccountRole" }"#)
                .len(),
            1,
            "the pattern's own policy ARN is used"
        );
        let one_missed = lints_of(
            r#"{ $.requestParameters.roleName = "astronomer-remote-management" || $.requestParameters.policyArn = "*/AstronomerCrossAccountRole" && $.eventName != DeletePolicy }"#,
        );
        assert_eq!(
            one_missed,
            ["warning: misses 1 role-changing event: DeletePolicy (pack `complete` watches them)"]
        );
    }

    #[test]
    fn rules_not_about_the_role_get_no_misses_lint() {
        for pattern in [
            "{ $.eventName = AttachRolePolicy }",
            r#"{ $.eventSource = "iam.amazonaws.com" }"#,
            r#"{ $.requestParameters.roleName = "someone-else" }"#,
            "ERROR",
            "",
            "[a, b, ...]",
        ] {
            assert_eq!(lints_of(pattern), Vec::<String>::new(), "{pattern}");
        }
    }

    #[test]
    fn the_watched_role_comes_from_the_context() {
        let ctx = LintContext {
            params: PackParams {
                role_name: "acme-access".into(),
                ..PackParams::default()
            },
        };
        assert_eq!(lints_with(DOCUMENTED_PATTERN, &ctx).len(), 3);
        let lints = lints_with(r#"{ $.requestParameters.roleName = "acme-access" }"#, &ctx);
        assert_eq!(lints.len(), 1);
        assert!(lints[0].starts_with("warning: misses 4 "));
    }

    #[test]
    fn values_typed_differently_from_cloudtrail() {
        assert_eq!(
            lints_of("{ $.readOnly = false && $.managementEvent != \"false\" }"),
            [
                "warning: `$.readOnly = false` never matches: CloudTrail records `readOnly` as a JSON boolean; write `$.readOnly IS FALSE`",
                "warning: `$.managementEvent != \"false\"` never matches: CloudTrail records `managementEvent` as a JSON boolean; write `$.managementEvent IS TRUE`",
            ]
        );
        assert_eq!(
            lints_of("{ $.userIdentity.sessionContext.attributes.mfaAuthenticated IS TRUE }"),
            ["warning: `$.userIdentity.sessionContext.attributes.mfaAuthenticated IS TRUE` never matches: CloudTrail records `mfaAuthenticated` as the string \"true\" or \"false\"; write `$.userIdentity.sessionContext.attributes.mfaAuthenticated = \"true\"`"]
        );
        assert_eq!(
            lints_of("{ $.recipientAccountId = 123456789012 }"),
            ["note: `123456789012` is a number, but CloudTrail records `recipientAccountId` as a string and CloudWatch Logs does not document how the two compare; quote it: `\"123456789012\"`"]
        );
        assert_eq!(
            lints_of("{ $.readOnly IS FALSE && $.recipientAccountId = \"123456789012\" && $.errorCode = 400 }"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn unquoted_values_and_terms() {
        assert_eq!(
            lints_of("{ $.eventSource = s3.amazonaws.com && $.x = Plain_1 && $.y = * && $.z = \"q-q\" }"),
            ["note: `s3.amazonaws.com` is not quoted: CloudWatch Logs documents quotes for values with characters other than letters, digits and `_`; write `\"s3.amazonaws.com\"`"]
        );
        assert_eq!(
            lints_of("[ip, user = jane.doe, status = 4*, ...]"),
            ["note: `jane.doe` is not quoted: CloudWatch Logs documents quotes for values with characters other than letters, digits and `_`; write `\"jane.doe\"`"]
        );
        // Terms of letters, digits, `_` and `.` need no quotes (anything else does not
        // compile); a `-` inside a word splits it, below.
        assert_eq!(
            lints_of("v1.2 café \"quoted-is-fine\" -x"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn unquoted_words_split_at_hyphens_and_question_marks() {
        assert_eq!(
            lints_of("ORDER-ITEM-1 \"quoted-is-fine\" -x"),
            ["warning: the unquoted term `ORDER-ITEM-1` is read as the terms `ORDER -ITEM -1`: CloudWatch Logs splits an unquoted word at `-` and `?` (rolewatch did not before the revision of the language); to find the word itself, quote it: `\"ORDER-ITEM-1\"`"]
        );
        let lints = lints_of("-cache?miss ?a-b \"x y-z\" -\"p-q\"");
        assert_eq!(lints.len(), 2, "{lints:#?}");
        assert!(
            lints[0].contains("`-cache?miss` is read as the terms `-cache ?miss`"),
            "{}",
            lints[0]
        );
        assert!(
            lints[0].ends_with("quote it: `-\"cache?miss\"`"),
            "{}",
            lints[0]
        );
        assert!(
            lints[1].contains("`?a-b` is read as the terms `?a -b`"),
            "{}",
            lints[1]
        );
    }

    #[test]
    fn space_delimited_patterns_without_ellipsis_take_the_rest() {
        assert_eq!(
            lints_of("[w1=ERROR, w2]"),
            ["warning: this space-delimited pattern has no `...`, so an event with more than 2 fields matches too: its last entry `w2` takes the rest of the line (before the revision of the language, the event needed exactly 2 fields); to require 2, give the last entry a condition such as `= %^\\S*$%`"]
        );
        assert!(lints_of("[lvl,]")[0]
            .contains("its last entry `$2` (the empty last entry) takes the rest"));
        assert!(lints_of("[a]")[0].contains("more than 1 field matches too"));
        for fine in ["[a, ..., z]", "[...]", "[]", "[..., a]"] {
            assert_eq!(lints_of(fine), Vec::<String>::new(), "{fine}");
        }
    }

    #[test]
    fn wildcard_not_equal_is_universal() {
        assert_eq!(
            lints_of(r#"{ $.tags[*] != "prod" }"#),
            ["warning: `$.tags[*] != \"prod\"` holds when no node that `$.tags[*]` selects equals \"prod\", and also when `$.tags` exists but holds none (empty, null or a scalar); before the revision of the language it held when some node differed"]
        );
        assert_eq!(
            lints_of(r#"{ $.tags[*] = "prod" && $.a != "x" }"#),
            Vec::<String>::new()
        );
    }

    #[test]
    fn quoted_numerals_compare_as_text() {
        assert_eq!(
            lints_of(r#"[version, account, eni, source, destination, srcport, destport="22", ...]"#),
            ["note: `destport = \"22\"` compares the field as text: it matches the field `22` exactly, not `22` written otherwise (`022`, `22.0`); write `destport = 22` to compare the number"]
        );
        assert_eq!(
            lints_of(r#"{ $.latency = "1.5" }"#),
            ["note: `$.latency = \"1.5\"` compares text: a JSON number matches only when its canonical text is `1.5` (`7.0`, `1.0E21`), not by value; write `$.latency = 1.5` to compare the number"]
        );
        // Quoted account IDs are what the typing lint asks for: no note.
        assert_eq!(
            lints_of(r#"{ $.recipientAccountId = "123456789012" }"#),
            Vec::<String>::new()
        );
    }

    #[test]
    fn lower_case_keywords_get_a_note() {
        assert_eq!(
            lints_of("{ $.errorCode not exists && $.x Is Null }"),
            [
                "note: `not exists` is valid (CloudWatch Logs takes keywords in any case; rolewatch did not before the revision of the language), but AWS documents keywords in capitals: `NOT EXISTS`",
                "note: `Is Null` is valid (CloudWatch Logs takes keywords in any case; rolewatch did not before the revision of the language), but AWS documents keywords in capitals: `IS NULL`",
            ]
        );
        for fine in [
            "{ $.errorCode NOT EXISTS }",
            r#"{ $.is = "is null" }"#,
            "{ $.a = not }",
            "{ $.a = %is null% }",
        ] {
            assert_eq!(lints_of(fine), Vec::<String>::new(), "{fine}");
        }
    }

    #[test]
    fn repeated_findings_are_reported_once() {
        assert_eq!(
            lints_of("{ $.eventName = Xyzzy || $.eventName = Xyzzy || $.a = b-c || $.d = b-c }")
                .len(),
            2
        );
    }

    #[test]
    fn length() {
        assert_eq!(length_problem(DOCUMENTED_PATTERN), None);
        assert_eq!(length_problem(&"x".repeat(1024)), None);
        assert_eq!(
            length_problem(&"é".repeat(1025)).as_deref(),
            Some("the pattern is 1025 characters long; CloudWatch Logs accepts at most 1024")
        );
    }
}
