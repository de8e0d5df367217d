//! IAM policy documents: parsing into a normal form, a statement-by-statement diff for people,
//! and a verdict — did access widen? — for severity. Pure: no I/O, no clock.
//!
//! # Normal form
//!
//! A statement becomes an [`Statement`]: `Effect`; `Action` or `NotAction` as a set of
//! lower-cased patterns (IAM action names are case-insensitive); `Resource` or `NotResource`
//! (absent in trust policies); `Principal` or `NotPrincipal` as `TYPE:value` strings (`*` for
//! everyone; a bare 12-digit account becomes its `:root` ARN); `Condition` as a set of
//! `(operator, key, values)` triples, keys lower-cased. A single string and a one-element
//! list are the same; so are the orders of lists and statements.
//!
//! # Verdict
//!
//! Each Allow statement is split into *grants*, one per action × resource × principal (a
//! `Not*` set stays whole). The after-document *widened* access when one of its grants is not
//! covered by any Allow statement of the before-document, or when one of the before-document's
//! Deny grants is not covered by the after-document's Deny statements; it *narrowed* in the
//! mirror cases. A statement covers a grant when its actions, resources and principals include
//! the grant's (glob in glob, see [`glob_covers`]) and every one of its conditions is also
//! imposed on the grant (the same operator and key with a subset of the values; for negated
//! operators a superset). Widened only → [`Verdict::Widened`]; narrowed only →
//! [`Verdict::Narrowed`]; neither → [`Verdict::Unchanged`] (however different the text);
//! both, or a comparison this module cannot decide (an exclusion list against an inclusion
//! list, `NotPrincipal`, a document it cannot parse) → [`Verdict::Unknown`], with the reasons.
//!
//! What it does not model, and so may call a change `widened` that IAM would still refuse:
//! interactions between Allow and Deny of the same document, permission boundaries, SCPs, and
//! the meaning of policy variables.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most grants one document is split into; past it, the comparison says `unknown`.
const MAX_GRANTS: usize = 20_000;

/// Did access widen?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Widened,
    Narrowed,
    Unchanged,
    Unknown,
}

impl Verdict {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Widened => "widened",
            Verdict::Narrowed => "narrowed",
            Verdict::Unchanged => "unchanged",
            Verdict::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

/// A set of patterns that either lists what is included or what is excluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "values", rename_all = "lowercase")]
pub enum Set {
    /// `Action`, `Resource`, `Principal`.
    Only(BTreeSet<String>),
    /// `NotAction`, `NotResource`, `NotPrincipal`.
    Except(BTreeSet<String>),
}

impl Set {
    fn values(&self) -> &BTreeSet<String> {
        match self {
            Set::Only(v) | Set::Except(v) => v,
        }
    }
}

/// One condition: `"StringEquals": {"sts:ExternalId": ["x"]}` is
/// `("StringEquals", "sts:externalid", {"x"})`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Condition {
    pub operator: String,
    pub key: String,
    pub values: BTreeSet<String>,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        write!(f, "{} {} [{}]", self.operator, self.key, values.join(", "))
    }
}

/// A statement in normal form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub actions: Set,
    /// `None` in a trust policy.
    pub resources: Option<Set>,
    /// `None` in an identity policy.
    pub principals: Option<Set>,
    pub conditions: BTreeSet<Condition>,
}

/// A parsed policy document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl Policy {
    /// The empty policy: what a role has of a policy before it is attached or put.
    #[must_use]
    pub fn empty() -> Policy {
        Policy::default()
    }

    /// Parses a document given as text: JSON, or URL-encoded JSON as IAM's `Get*` calls
    /// return it.
    ///
    /// # Errors
    ///
    /// When the text is not a policy document.
    pub fn parse_text(text: &str) -> Result<Policy, ParseError> {
        let trimmed = text.trim_start();
        let decoded;
        let json = if trimmed.starts_with('{') {
            text
        } else {
            decoded = percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map_err(|e| ParseError(format!("the document is not UTF-8 once decoded: {e}")))?;
            &decoded
        };
        let value: Value = serde_json::from_str(json)
            .map_err(|e| ParseError(format!("the document is not JSON: {e}")))?;
        Policy::parse(&value)
    }

    /// Parses a document given as JSON. A `policyDocument` that CloudTrail recorded as a
    /// string inside the record is accepted too.
    ///
    /// # Errors
    ///
    /// When the value is not a policy document.
    pub fn parse(value: &Value) -> Result<Policy, ParseError> {
        if let Value::String(s) = value {
            return Policy::parse_text(s);
        }
        let obj = value
            .as_object()
            .ok_or_else(|| ParseError("the document is not a JSON object".into()))?;
        let statements = match obj.get("Statement") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().map(statement).collect::<Result<_, _>>()?,
            Some(one @ Value::Object(_)) => vec![statement(one)?],
            Some(_) => {
                return Err(ParseError(
                    "`Statement` is neither a list nor an object".into(),
                ))
            }
        };
        Ok(Policy { statements })
    }

    /// Every distinct principal an Allow statement names (`TYPE:value`).
    #[must_use]
    pub fn allowed_principals(&self) -> BTreeSet<String> {
        self.statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .filter_map(|s| match &s.principals {
                Some(Set::Only(p)) => Some(p.iter().cloned()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

fn strings(v: &Value, what: &str) -> Result<BTreeSet<String>, ParseError> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(ParseError(format!(
            "{what} holds a value that is not a string"
        ))),
    };
    match v {
        Value::Array(items) => items.iter().map(one).collect(),
        other => Ok(BTreeSet::from([one(other)?])),
    }
}

fn set(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    not_key: &str,
    norm: impl Fn(&str) -> String,
) -> Result<Option<Set>, ParseError> {
    match (obj.get(key), obj.get(not_key)) {
        (Some(_), Some(_)) => Err(ParseError(format!(
            "a statement has both `{key}` and `{not_key}`"
        ))),
        (Some(v), None) => Ok(Some(Set::Only(
            strings(v, key)?.iter().map(|s| norm(s)).collect(),
        ))),
        (None, Some(v)) => Ok(Some(Set::Except(
            strings(v, not_key)?.iter().map(|s| norm(s)).collect(),
        ))),
        (None, None) => Ok(None),
    }
}

fn principal_set(v: &Value, what: &str) -> Result<BTreeSet<String>, ParseError> {
    match v {
        Value::String(s) if s == "*" => Ok(BTreeSet::from(["*".to_owned()])),
        Value::Object(map) => {
            let mut out = BTreeSet::new();
            for (kind, values) in map {
                for p in strings(values, what)? {
                    out.insert(normal_principal(kind, &p));
                }
            }
            Ok(out)
        }
        _ => Err(ParseError(format!(
            "`{what}` is neither \"*\" nor an object of principal types"
        ))),
    }
}

/// `AWS:123456789012` → `AWS:arn:aws:iam::123456789012:root`; `AWS:*` → `*`.
fn normal_principal(kind: &str, value: &str) -> String {
    if kind == "AWS" && value == "*" {
        return "*".to_owned();
    }
    if kind == "AWS" && value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()) {
        return format!("AWS:arn:aws:iam::{value}:root");
    }
    format!("{kind}:{value}")
}

fn statement(v: &Value) -> Result<Statement, ParseError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ParseError("a statement is not an object".into()))?;
    let effect = match obj.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        _ => {
            return Err(ParseError(
                "a statement's `Effect` is not Allow or Deny".into(),
            ))
        }
    };
    let actions = set(obj, "Action", "NotAction", str::to_ascii_lowercase)?
        .ok_or_else(|| ParseError("a statement has neither `Action` nor `NotAction`".into()))?;
    let resources = set(obj, "Resource", "NotResource", str::to_owned)?;
    let principals = match (obj.get("Principal"), obj.get("NotPrincipal")) {
        (Some(_), Some(_)) => {
            return Err(ParseError(
                "a statement has both `Principal` and `NotPrincipal`".into(),
            ))
        }
        (Some(p), None) => Some(Set::Only(principal_set(p, "Principal")?)),
        (None, Some(p)) => Some(Set::Except(principal_set(p, "NotPrincipal")?)),
        (None, None) => None,
    };
    let mut conditions = BTreeSet::new();
    match obj.get("Condition") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ops)) => {
            for (op, keys) in ops {
                let keys = keys.as_object().ok_or_else(|| {
                    ParseError(format!("condition operator `{op}` does not hold an object"))
                })?;
                for (key, values) in keys {
                    conditions.insert(Condition {
                        operator: op.clone(),
                        key: key.to_ascii_lowercase(),
                        values: strings(values, "Condition")?,
                    });
                }
            }
        }
        Some(_) => return Err(ParseError("`Condition` is not an object".into())),
    }
    Ok(Statement {
        sid: obj
            .get("Sid")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        effect,
        actions,
        resources,
        principals,
        conditions,
    })
}

// ---- globs -------------------------------------------------------------------------------

/// True when every string the glob `inner` matches is also matched by the glob `outer` (`*`
/// any run, `?` one character). Sound, not complete: `true` is always right; a rare `false`
/// may be a containment it cannot see (such as `a*b*` inside `a*`… which it does see, or
/// unions of patterns). A `*` of `inner` can only be matched by a `*` of `outer`, a `?` of
/// `inner` by `?` or `*`. Action patterns are compared case-insensitively by the caller
/// (they are lower-cased at parse time).
#[must_use]
pub fn glob_covers(outer: &str, inner: &str) -> bool {
    let o: Vec<char> = outer.chars().collect();
    let i: Vec<char> = inner.chars().collect();
    // dp[a][b]: outer[a..] covers inner[b..].
    let mut dp = vec![vec![false; i.len() + 1]; o.len() + 1];
    dp[o.len()][i.len()] = true;
    for a in (0..o.len()).rev() {
        for b in (0..=i.len()).rev() {
            dp[a][b] = match o[a] {
                '*' => dp[a + 1][b] || (b < i.len() && dp[a][b + 1]),
                '?' => b < i.len() && i[b] != '*' && dp[a + 1][b + 1],
                c => b < i.len() && i[b] == c && dp[a + 1][b + 1],
            };
        }
    }
    dp[0][0]
}

/// True when some string matches both globs.
#[must_use]
pub fn globs_overlap(x: &str, y: &str) -> bool {
    let a: Vec<char> = x.chars().collect();
    let b: Vec<char> = y.chars().collect();
    // dp[p][q]: a[p..] and b[q..] have a common match.
    let mut dp = vec![vec![false; b.len() + 1]; a.len() + 1];
    dp[a.len()][b.len()] = true;
    for p in (0..=a.len()).rev() {
        for q in (0..=b.len()).rev() {
            if p == a.len() && q == b.len() {
                continue;
            }
            let ca = a.get(p).copied();
            let cb = b.get(q).copied();
            dp[p][q] = match (ca, cb) {
                (Some('*'), _) if dp[p + 1][q] => true,
                (_, Some('*')) if dp[p][q + 1] => true,
                (Some('*'), Some(_)) => {
                    dp[p][q + 1] || (q < b.len() && p < a.len() && dp[p + 1][q + 1])
                }
                (Some(_), Some('*')) => dp[p + 1][q],
                (Some(c), Some(d)) => (c == '?' || d == '?' || c == d) && dp[p + 1][q + 1],
                _ => false,
            };
        }
    }
    dp[0][0]
}

// ---- coverage ---------------------------------------------------------------------------

/// A three-valued answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cover {
    Yes,
    No,
    Unsure,
}

impl Cover {
    fn and(self, other: Cover) -> Cover {
        match (self, other) {
            (Cover::No, _) | (_, Cover::No) => Cover::No,
            (Cover::Unsure, _) | (_, Cover::Unsure) => Cover::Unsure,
            _ => Cover::Yes,
        }
    }
}

/// Does `outer` include everything `inner` does? `principal` switches to principal matching.
fn set_covers(outer: &Set, inner: &Set, principal: bool) -> Cover {
    let covers = |o: &str, i: &str| {
        if principal {
            principal_covers(o, i)
        } else {
            glob_covers(o, i)
        }
    };
    let overlap = |o: &str, i: &str| {
        if principal {
            principal_covers(o, i) || principal_covers(i, o)
        } else {
            globs_overlap(o, i)
        }
    };
    let any_covers = |set: &BTreeSet<String>, i: &str| set.iter().any(|o| covers(o, i));
    match (outer, inner) {
        (Set::Only(o), Set::Only(i)) => yes_no(i.iter().all(|p| any_covers(o, p))),
        // Everything but O ⊇ everything but I  ⟺  O ⊆ I.
        (Set::Except(o), Set::Except(i)) => {
            if o.iter().all(|p| any_covers(i, p)) {
                Cover::Yes
            } else if o
                .iter()
                .map(|p| instance(p))
                .any(|w| !i.iter().any(|x| covers(x, &w)))
            {
                // A string O excludes and I does not: in the inner set, not the outer.
                Cover::No
            } else {
                Cover::Unsure
            }
        }
        // Everything but O ⊇ I  ⟺  nothing of I is in O.
        (Set::Except(o), Set::Only(i)) => {
            yes_no(i.iter().all(|p| o.iter().all(|x| !overlap(x, p))))
        }
        // A list covers "everything but …" only if together they match every string: `*`
        // in the list says yes; a witness that neither matches says no.
        (Set::Only(o), Set::Except(i)) => {
            if o.contains("*") {
                Cover::Yes
            } else if WITNESSES
                .iter()
                .any(|w| !o.iter().chain(i).any(|p| matches_literal(p, w)))
            {
                Cover::No
            } else {
                Cover::Unsure
            }
        }
    }
}

/// Strings that no real action, resource or principal pattern matches unless it is nearly
/// `*`: a witness matched by neither the list nor the exclusions proves the list does not
/// cover "everything but".
const WITNESSES: &[&str] = &["\u{1}rolewatch\u{1}", "\u{1}"];

/// One string the glob matches: `*` as nothing, `?` as `a`.
fn instance(pattern: &str) -> String {
    pattern
        .chars()
        .filter(|&c| c != '*')
        .map(|c| if c == '?' { 'a' } else { c })
        .collect()
}

/// Does the glob `pattern` match the literal string `s` (which holds no wildcard)?
fn matches_literal(pattern: &str, s: &str) -> bool {
    glob_covers(pattern, s)
}

fn yes_no(b: bool) -> Cover {
    if b {
        Cover::Yes
    } else {
        Cover::No
    }
}

/// `*` covers everyone; an account's root covers every principal of the account (a trust
/// policy naming an account delegates to its administrators).
fn principal_covers(outer: &str, inner: &str) -> bool {
    if outer == inner || outer == "*" {
        return true;
    }
    if let Some(account) = outer
        .strip_prefix("AWS:arn:aws:iam::")
        .and_then(|r| r.strip_suffix(":root"))
    {
        return inner
            .strip_prefix("AWS:arn:")
            .and_then(|r| r.split(':').nth(3))
            .is_some_and(|a| a == account);
    }
    false
}

fn negated(op: &str) -> bool {
    op.contains("Not")
}

/// Is the condition `c` of a covering statement also imposed by the covered grant's
/// conditions?
fn condition_implied(c: &Condition, by: &BTreeSet<Condition>) -> bool {
    by.iter().any(|d| {
        d.operator == c.operator
            && d.key == c.key
            && if negated(&c.operator) {
                d.values.is_superset(&c.values)
            } else if c.operator.starts_with("ForAllValues") {
                d.values == c.values
            } else {
                d.values.is_subset(&c.values)
            }
    })
}

/// One grant: a statement narrowed to one action, one resource and one principal (a `Not*`
/// set stays whole).
#[derive(Debug, Clone)]
struct Grant<'a> {
    stmt: &'a Statement,
    actions: Set,
    resources: Option<Set>,
    principals: Option<Set>,
}

impl Grant<'_> {
    fn describe(&self) -> String {
        let set = |s: &Set, only: &str, except: &str| {
            let v: Vec<&str> = s.values().iter().map(String::as_str).collect();
            match s {
                Set::Only(_) => format!("{only} {}", v.join(", ")),
                Set::Except(_) => format!("{except} {}", v.join(", ")),
            }
        };
        let mut out = format!(
            "{:?} {}",
            self.stmt.effect,
            set(&self.actions, "", "every action except").trim_start()
        );
        if let Some(r) = &self.resources {
            out.push_str(&format!(
                " on {}",
                set(r, "", "everything except").trim_start()
            ));
        }
        if let Some(p) = &self.principals {
            out.push_str(&format!(
                " for {}",
                set(p, "", "everyone except").trim_start()
            ));
        }
        if !self.stmt.conditions.is_empty() {
            let c: Vec<String> = self
                .stmt
                .conditions
                .iter()
                .map(ToString::to_string)
                .collect();
            out.push_str(&format!(" when {}", c.join(" and ")));
        }
        out
    }
}

fn split(s: &Set) -> Vec<Set> {
    match s {
        Set::Only(v) => v
            .iter()
            .map(|x| Set::Only(BTreeSet::from([x.clone()])))
            .collect(),
        e @ Set::Except(_) => vec![e.clone()],
    }
}

fn grants(p: &Policy, effect: Effect) -> Option<Vec<Grant<'_>>> {
    let mut out = Vec::new();
    for s in p.statements.iter().filter(|s| s.effect == effect) {
        let resources: Vec<Option<Set>> = s
            .resources
            .as_ref()
            .map_or_else(|| vec![None], |r| split(r).into_iter().map(Some).collect());
        let principals: Vec<Option<Set>> = s
            .principals
            .as_ref()
            .map_or_else(|| vec![None], |r| split(r).into_iter().map(Some).collect());
        for a in split(&s.actions) {
            for r in &resources {
                for pr in &principals {
                    out.push(Grant {
                        stmt: s,
                        actions: a.clone(),
                        resources: r.clone(),
                        principals: pr.clone(),
                    });
                    if out.len() > MAX_GRANTS {
                        return None;
                    }
                }
            }
        }
    }
    Some(out)
}

fn opt_covers(outer: Option<&Set>, inner: Option<&Set>, principal: bool) -> Cover {
    match (outer, inner) {
        (None, None) => Cover::Yes,
        (Some(o), Some(i)) => set_covers(o, i, principal),
        // A statement without the element applies to every value of it.
        (None, Some(_)) => Cover::Yes,
        (Some(o), None) => {
            if o.values().contains("*") && matches!(o, Set::Only(_)) {
                Cover::Yes
            } else {
                Cover::No
            }
        }
    }
}

fn statement_covers(s: &Statement, g: &Grant<'_>) -> Cover {
    if s.principals
        .as_ref()
        .is_some_and(|p| matches!(p, Set::Except(_)))
        || g.principals
            .as_ref()
            .is_some_and(|p| matches!(p, Set::Except(_)))
    {
        // NotPrincipal: only the identical statement is known to cover.
        return if s == g.stmt {
            Cover::Yes
        } else {
            Cover::Unsure
        };
    }
    let conditions = yes_no(
        s.conditions
            .iter()
            .all(|c| condition_implied(c, &g.stmt.conditions)),
    );
    set_covers(&s.actions, &g.actions, false)
        .and(opt_covers(
            s.resources.as_ref(),
            g.resources.as_ref(),
            false,
        ))
        .and(opt_covers(
            s.principals.as_ref(),
            g.principals.as_ref(),
            true,
        ))
        .and(conditions)
}

/// Grants of `inner` (of `effect`) not covered by `outer`'s statements of the same effect:
/// the certain ones and the undecidable ones.
fn uncovered(outer: &Policy, inner: &Policy, effect: Effect) -> (Vec<String>, Vec<String>) {
    let Some(gs) = grants(inner, effect) else {
        return (
            Vec::new(),
            vec!["the document is too large to compare grant by grant".to_owned()],
        );
    };
    let mut no = Vec::new();
    let mut unsure = Vec::new();
    for g in &gs {
        let mut best = Cover::No;
        for s in outer.statements.iter().filter(|s| s.effect == effect) {
            match statement_covers(s, g) {
                Cover::Yes => {
                    best = Cover::Yes;
                    break;
                }
                Cover::Unsure => best = Cover::Unsure,
                Cover::No => {}
            }
        }
        match best {
            Cover::Yes => {}
            Cover::No => no.push(g.describe()),
            Cover::Unsure => unsure.push(g.describe()),
        }
    }
    (no, unsure)
}

// ---- the diff ---------------------------------------------------------------------------

/// What changed in one statement (or the whole statement, when it was added or removed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementChange {
    /// `added`, `removed` or `changed`.
    pub change: String,
    /// `Allow` or `Deny`.
    pub effect: String,
    pub sid: Option<String>,
    /// `Action` or `NotAction`.
    pub action_kind: String,
    pub actions_added: Vec<String>,
    pub actions_removed: Vec<String>,
    /// `Resource` or `NotResource`; empty in a trust policy.
    pub resource_kind: String,
    pub resources_added: Vec<String>,
    pub resources_removed: Vec<String>,
    pub principals_added: Vec<String>,
    pub principals_removed: Vec<String>,
    pub conditions_added: Vec<String>,
    pub conditions_removed: Vec<String>,
}

/// The comparison of two documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDiff {
    pub verdict: Verdict,
    /// Why, one sentence each: what grants more, what grants less, what could not be decided.
    pub reasons: Vec<String>,
    /// True when at least one change certainly grants more (even if the verdict is mixed).
    pub any_widening: bool,
    /// Statement by statement.
    pub statements: Vec<StatementChange>,
}

/// The most reasons of each kind a diff keeps.
const MAX_REASONS: usize = 12;

/// Compares two documents.
#[must_use]
pub fn diff(before: &Policy, after: &Policy) -> PolicyDiff {
    let (allow_new, allow_new_unsure) = uncovered(before, after, Effect::Allow);
    let (allow_gone, allow_gone_unsure) = uncovered(after, before, Effect::Allow);
    let (deny_gone, deny_gone_unsure) = uncovered(after, before, Effect::Deny);
    let (deny_new, deny_new_unsure) = uncovered(before, after, Effect::Deny);

    let widened = !allow_new.is_empty() || !deny_gone.is_empty();
    let narrowed = !allow_gone.is_empty() || !deny_new.is_empty();
    let unsure = !(allow_new_unsure.is_empty()
        && allow_gone_unsure.is_empty()
        && deny_gone_unsure.is_empty()
        && deny_new_unsure.is_empty());

    let mut reasons = Vec::new();
    let mut push = |prefix: &str, items: &[String]| {
        for i in items.iter().take(MAX_REASONS) {
            reasons.push(format!("{prefix}: {i}"));
        }
        if items.len() > MAX_REASONS {
            reasons.push(format!(
                "{prefix}: … and {} more",
                items.len() - MAX_REASONS
            ));
        }
    };
    push("grants more (new Allow)", &allow_new);
    push("grants more (Deny removed or weakened)", &deny_gone);
    push("grants less (Allow removed or restricted)", &allow_gone);
    push("grants less (new Deny)", &deny_new);
    let mut undecided: Vec<String> = allow_new_unsure;
    undecided.extend(allow_gone_unsure);
    undecided.extend(deny_gone_unsure);
    undecided.extend(deny_new_unsure);
    push(
        "cannot decide (NotAction/NotResource/NotPrincipal)",
        &undecided,
    );

    let verdict = match (widened, narrowed, unsure) {
        (_, _, true) | (true, true, _) => Verdict::Unknown,
        (true, false, false) => Verdict::Widened,
        (false, true, false) => Verdict::Narrowed,
        (false, false, false) => Verdict::Unchanged,
    };
    PolicyDiff {
        verdict,
        reasons,
        any_widening: widened,
        statements: statement_changes(before, after),
    }
}

/// Pairs the statements of the two documents (same Sid; else same effect and kinds with the
/// most in common) and lists what each pair, and each unpaired statement, adds and removes.
fn statement_changes(before: &Policy, after: &Policy) -> Vec<StatementChange> {
    let mut used = vec![false; before.statements.len()];
    let mut out = Vec::new();
    for a in &after.statements {
        let by_sid = a.sid.as_ref().and_then(|sid| {
            before
                .statements
                .iter()
                .enumerate()
                .find(|(i, b)| !used[*i] && b.sid.as_ref() == Some(sid) && b.effect == a.effect)
                .map(|(i, _)| i)
        });
        let pick = by_sid.or_else(|| {
            before
                .statements
                .iter()
                .enumerate()
                .filter(|(i, b)| !used[*i] && b.effect == a.effect && kinds(b) == kinds(a))
                .map(|(i, b)| (i, similarity(b, a)))
                .filter(|(_, score)| *score > 0)
                .max_by_key(|(i, score)| (*score, std::cmp::Reverse(*i)))
                .map(|(i, _)| i)
        });
        match pick {
            Some(i) => {
                used[i] = true;
                let b = &before.statements[i];
                if b != a {
                    out.push(change("changed", Some(b), a));
                }
            }
            None => out.push(change("added", None, a)),
        }
    }
    for (i, b) in before.statements.iter().enumerate() {
        if !used[i] {
            out.push(change("removed", Some(b), b));
        }
    }
    out
}

fn kinds(s: &Statement) -> (bool, Option<bool>) {
    (
        matches!(s.actions, Set::Only(_)),
        s.resources.as_ref().map(|r| matches!(r, Set::Only(_))),
    )
}

fn similarity(a: &Statement, b: &Statement) -> usize {
    let common = |x: &Set, y: &Set| x.values().intersection(y.values()).count();
    let mut n = common(&a.actions, &b.actions);
    if let (Some(x), Some(y)) = (&a.resources, &b.resources) {
        n += common(x, y);
    }
    if let (Some(x), Some(y)) = (&a.principals, &b.principals) {
        n += common(x, y);
    }
    n
}

fn change(kind: &str, before: Option<&Statement>, after: &Statement) -> StatementChange {
    let removed = kind == "removed";
    let empty = BTreeSet::new();
    let no_conditions = BTreeSet::new();
    let values = |s: Option<&Set>| s.map_or(&empty, Set::values).clone();
    let (old, new): (Option<&Statement>, Option<&Statement>) = if removed {
        (before, None)
    } else {
        (before, Some(after))
    };
    let diff = |o: BTreeSet<String>, n: BTreeSet<String>| -> (Vec<String>, Vec<String>) {
        (
            n.difference(&o).cloned().collect(),
            o.difference(&n).cloned().collect(),
        )
    };
    let (actions_added, actions_removed) = diff(
        values(old.map(|s| &s.actions)),
        values(new.map(|s| &s.actions)),
    );
    let (resources_added, resources_removed) = diff(
        values(old.and_then(|s| s.resources.as_ref())),
        values(new.and_then(|s| s.resources.as_ref())),
    );
    let (principals_added, principals_removed) = diff(
        values(old.and_then(|s| s.principals.as_ref())),
        values(new.and_then(|s| s.principals.as_ref())),
    );
    let oc = old.map_or(&no_conditions, |s| &s.conditions);
    let nc = new.map_or(&no_conditions, |s| &s.conditions);
    let shown = after;
    StatementChange {
        change: kind.to_owned(),
        effect: format!("{:?}", shown.effect),
        sid: shown.sid.clone(),
        action_kind: match shown.actions {
            Set::Only(_) => "Action",
            Set::Except(_) => "NotAction",
        }
        .to_owned(),
        actions_added,
        actions_removed,
        resource_kind: match &shown.resources {
            None => "",
            Some(Set::Only(_)) => "Resource",
            Some(Set::Except(_)) => "NotResource",
        }
        .to_owned(),
        resources_added,
        resources_removed,
        principals_added,
        principals_removed,
        conditions_added: nc.difference(oc).map(ToString::to_string).collect(),
        conditions_removed: oc.difference(nc).map(ToString::to_string).collect(),
    }
}

/// Trust-policy facts on-call must see even inside a long diff: a removed `sts:ExternalId`
/// condition, and principals that may newly assume the role.
#[must_use]
pub fn trust_flags(before: &Policy, after: &Policy) -> Vec<String> {
    let mut flags = Vec::new();
    let has_external_id = |s: &Statement| s.conditions.iter().any(|c| c.key == "sts:externalid");
    fn allows(p: &Policy) -> Vec<&Statement> {
        p.statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .collect()
    }
    if allows(before).iter().any(|s| has_external_id(s))
        && allows(after).iter().any(|s| !has_external_id(s))
    {
        flags.push(
            "the sts:ExternalId condition was removed: the role can be assumed without the external ID"
                .to_owned(),
        );
    }
    let old = before.allowed_principals();
    for p in after.allowed_principals().difference(&old) {
        flags.push(format!("new principal may assume the role: {p}"));
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob_covers("*", "s3:getobject"));
        assert!(glob_covers("s3:*", "s3:get*"));
        assert!(glob_covers("s3:get*", "s3:getobject"));
        assert!(!glob_covers("s3:getobject", "s3:get*"));
        assert!(!glob_covers("a?", "a*"));
        assert!(glob_covers("a*", "a?"));
        assert!(!glob_covers("iam:*", "s3:*"));
        assert!(globs_overlap("s3:get*", "s3:*object"));
        assert!(globs_overlap("*", ""));
        assert!(!globs_overlap("iam:*", "s3:*"));
        assert!(!globs_overlap("s3:getobject", "s3:putobject"));
        assert!(globs_overlap("s3:?etobject", "s3:g*"));
    }

    #[test]
    fn single_string_and_list_are_the_same() {
        let a = Policy::parse(
            &json!({"Statement": {"Effect": "Allow", "Action": "S3:GetObject", "Resource": "*"}}),
        )
        .unwrap();
        let b = Policy::parse(&json!({"Statement": [{"Effect": "Allow", "Action": ["s3:getobject"], "Resource": ["*"]}]})).unwrap();
        assert_eq!(a, b);
        assert_eq!(diff(&a, &b).verdict, Verdict::Unchanged);
    }

    #[test]
    fn url_encoded_documents_are_decoded() {
        let p = Policy::parse_text(
            "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22iam%3AGetRole%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D",
        )
        .unwrap();
        assert_eq!(p.statements.len(), 1);
        assert!(Policy::parse_text("not json").is_err());
    }

    #[test]
    fn principals_normalise() {
        let p = Policy::parse(
            &json!({"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"AWS": "406882777402"}}]}),
        )
        .unwrap();
        assert_eq!(
            p.allowed_principals(),
            BTreeSet::from(["AWS:arn:aws:iam::406882777402:root".to_owned()])
        );
    }
}
