//! The diff of two documents: statement by statement, what was added, removed or changed,
//! the verdict, and the flags of a trust policy that opens the role wider.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::cover::uncovered;
use super::{Effect, Policy, Set, Statement, Verdict};

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
