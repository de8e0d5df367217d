//! Containment: whether one grant (action, resource, principal globs and conditions) is
//! covered by another, soundly (`yes` is always right), and the grants one document allows
//! that another does not.

use std::collections::BTreeSet;

use super::{Condition, Effect, Policy, Set, Statement, MAX_GRANTS};

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
pub(super) fn uncovered(
    outer: &Policy,
    inner: &Policy,
    effect: Effect,
) -> (Vec<String>, Vec<String>) {
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
