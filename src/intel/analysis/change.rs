//! What a change made: for each event kind, the documents before and after it (from the
//! event, the last known state, the baseline or IAM), what it made of its target for the
//! last known state, and the same change against the baseline.

use serde_json::Value;

use super::super::baseline::{self, Baseline};
use super::super::iam::{IamError, IamReader};
use super::super::known::{Applied, LastKnown, Target};
use super::super::policy::{self, Policy, Verdict};
use super::{Analyzer, SinceBaseline};
use crate::time::display_rfc3339_ms;

/// A before/after pair to compare, and what the change made of its target.
pub(super) struct Docs {
    pub(super) before: Policy,
    pub(super) after: Policy,
    pub(super) compared: String,
    pub(super) trust: bool,
    /// A sentence that says why when the documents alone do not.
    pub(super) note: Option<String>,
}

/// Why no diff could be made: a sentence for the alert.
pub(super) struct Unavailable(pub(super) String);

impl From<IamError> for Unavailable {
    fn from(e: IamError) -> Self {
        if e.is_access_denied() {
            Unavailable(format!("no IAM read access ({e})"))
        } else {
            Unavailable(e.to_string())
        }
    }
}

pub(super) fn parse_doc(text: &str, what: &str) -> Result<Policy, Unavailable> {
    Policy::parse_text(text).map_err(|e| Unavailable(format!("{what}: {e}")))
}

fn stored_doc(v: Option<&Value>, what: &str, when: &str) -> Result<Policy, Unavailable> {
    match v {
        Some(v) => Policy::parse(v).map_err(|e| Unavailable(format!("{what}: {e}"))),
        None => Err(Unavailable(format!("{what} could not be read ({when})"))),
    }
}

/// `v7` → `v6`.
fn previous_version(v: &str) -> Option<String> {
    let n: u64 = v.strip_prefix('v')?.parse().ok()?;
    (n > 1).then(|| format!("v{}", n - 1))
}

pub(super) fn rp<'a>(record: &'a Value, key: &str) -> Option<&'a str> {
    record
        .pointer(&format!("/requestParameters/{key}"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The `policyDocument` of the request, as text.
pub(super) fn event_document(record: &Value) -> Option<String> {
    match record.pointer("/requestParameters/policyDocument")? {
        Value::String(s) => Some(s.clone()),
        v @ Value::Object(_) => Some(v.to_string()),
        _ => None,
    }
}

/// A snapshot a change is judged against, and how to name it in a sentence.
struct Side<'a> {
    snap: &'a Baseline,
    /// "the last known" / "the baseline's"
    poss: &'static str,
    /// "the last known state (the baseline of T)" / "the baseline of T"
    noun: String,
    /// "(the baseline of T)" / "(taken T)"
    when: String,
    /// True for the moment before: an inline policy deleted that it does not hold is an
    /// unknown document (against the baseline, it is nothing: the role had none then).
    strict: bool,
}

impl<'a> Side<'a> {
    fn last_known(k: &'a LastKnown) -> Side<'a> {
        Side {
            snap: &k.role,
            poss: "the last known",
            noun: format!("the last known state ({})", k.provenance()),
            when: format!("({})", k.provenance()),
            strict: true,
        }
    }

    fn baseline(b: &'a Baseline) -> Side<'a> {
        Side {
            snap: b,
            poss: "the baseline's",
            noun: format!("the baseline of {}", display_rfc3339_ms(b.taken_ms)),
            when: format!("(taken {})", display_rfc3339_ms(b.taken_ms)),
            strict: false,
        }
    }

    /// The target's document in this snapshot and how to say so. `deleted`: the change
    /// removed the target (what it was must be known, nothing stands for it).
    fn before(&self, target: &Target, deleted: bool) -> Result<(Policy, String), Unavailable> {
        let (poss, noun, when) = (self.poss, &self.noun, &self.when);
        match target {
            Target::DefaultVersion { arn } => match self.snap.managed(arn) {
                Some(p) => {
                    let v = p.default_version_id.as_deref().unwrap_or("?");
                    let what = format!("{poss} default version {v}");
                    Ok((stored_doc(p.document.as_ref(), &what, noun)?, format!("{what} {when}")))
                }
                None => Err(Unavailable(format!("{noun} does not hold the policy {arn}"))),
            },
            Target::Attachment { arn, .. } => {
                match self.snap.attached.iter().find(|p| &p.arn == arn) {
                    Some(p) => {
                        let v = p.default_version_id.as_deref().unwrap_or("?");
                        let what = format!("the policy as attached in {noun} (default version {v})");
                        Ok((stored_doc(p.document.as_ref(), &what, noun)?, what))
                    }
                    None => Ok((
                        Policy::empty(),
                        format!("nothing (it is not attached in {noun})"),
                    )),
                }
            }
            Target::Inline { name, .. } => match self.snap.inline(name) {
                Some(p) => {
                    let what = format!("{poss} inline policy {name}");
                    Ok((stored_doc(p.document.as_ref(), &what, noun)?, format!("{what} {when}")))
                }
                None if deleted && self.strict => Err(Unavailable(format!(
                    "{noun} has no inline policy {name}: its document before the deletion is unknown"
                ))),
                None => Ok((
                    Policy::empty(),
                    format!("nothing ({noun} has no inline policy {name})"),
                )),
            },
            Target::Trust { .. } => {
                let what = format!("{poss} trust policy");
                Ok((
                    stored_doc(self.snap.trust_policy.as_ref(), &what, noun)?,
                    format!("{what} {when}"),
                ))
            }
        }
    }
}

/// What a change made, found out from the event and IAM.
pub(super) struct Change {
    pub(super) docs: Result<Docs, Unavailable>,
    /// What the change made of its target, for the last known state; `None` when it changes
    /// nothing there (a failed call, a version not set as default, a deleted version) or
    /// could not be found out (then `docs` says why).
    pub(super) applied: Option<Applied>,
    /// The target and its document after the change, for the comparison with the baseline.
    pub(super) after: Option<(Target, Policy, bool, String)>,
}

impl<R: IamReader> Analyzer<R> {
    /// What the change `event` made, judged against `prior` (the moment before, when known).
    pub(super) async fn change(
        &self,
        event: &str,
        record: &Value,
        prior: Result<&LastKnown, &str>,
    ) -> Change {
        let mut applied = None;
        let mut after = None;
        let docs = self
            .documents(event, record, prior, &mut applied, &mut after)
            .await;
        Change {
            docs,
            applied,
            after,
        }
    }

    async fn documents(
        &self,
        event: &str,
        record: &Value,
        prior: Result<&LastKnown, &str>,
        applied: &mut Option<Applied>,
        after_out: &mut Option<(Target, Policy, bool, String)>,
    ) -> Result<Docs, Unavailable> {
        let need = |k: &str| {
            rp(record, k)
                .ok_or_else(|| Unavailable(format!("the event has no requestParameters.{k}")))
        };
        let side = prior.ok().map(Side::last_known);
        let why_none = prior.err().unwrap_or_default();
        let no_prior =
            |what: &str| Unavailable(format!("the previous {what} is unknown: {why_none}"));
        let value_of = |p: &str| baseline::decode_document(p);
        match event {
            "CreatePolicyVersion" => {
                let arn = need("policyArn")?;
                let new_version = record
                    .pointer("/responseElements/policyVersion/versionId")
                    .and_then(Value::as_str);
                let text = match event_document(record) {
                    Some(doc) => doc,
                    None => {
                        let v = new_version.ok_or_else(|| {
                            Unavailable("the event has neither the document nor the version".into())
                        })?;
                        self.iam.policy_version(arn, v).await?
                    }
                };
                let after = parse_doc(&text, "the new document")?;
                let new_label = new_version.unwrap_or("?");
                let said = record
                    .pointer("/requestParameters/setAsDefault")
                    .and_then(Value::as_bool)
                    .or_else(|| {
                        record
                            .pointer("/responseElements/policyVersion/isDefaultVersion")
                            .and_then(Value::as_bool)
                    });
                let effective = match said {
                    Some(d) => d,
                    None => Some(self.iam.default_version(arn).await?.as_str()) == new_version,
                };
                let target = Target::DefaultVersion {
                    arn: arn.to_owned(),
                };
                let what = if effective {
                    format!("the new default version {new_label} (from the event)")
                } else {
                    format!("the new version {new_label} (from the event, not the default)")
                };
                if effective {
                    if let Some(v) = new_version {
                        *applied = Some(Applied {
                            target: target.clone(),
                            document: value_of(&text),
                            version: Some(v.to_owned()),
                            present: true,
                        });
                    }
                    *after_out = Some((target.clone(), after.clone(), false, what.clone()));
                }
                if let Some(s) = &side {
                    if let Ok((before, label)) = s.before(&target, false) {
                        return Ok(Docs {
                            before,
                            after,
                            compared: format!("{what} against {label}"),
                            trust: false,
                            note: None,
                        });
                    }
                }
                // No earlier state holds the policy: IAM says what the default is (or was).
                let default = self.iam.default_version(arn).await?;
                if Some(default.as_str()) != new_version {
                    let before = parse_doc(
                        &self.iam.policy_version(arn, &default).await?,
                        "the default version",
                    )?;
                    return Ok(Docs {
                        before,
                        after,
                        compared: format!(
                            "{what} against the default version {default} (GetPolicyVersion)"
                        ),
                        trust: false,
                        note: None,
                    });
                }
                let prev = new_version
                    .and_then(previous_version)
                    .ok_or_else(|| no_prior("default version"))?;
                let before = parse_doc(
                    &self.iam.policy_version(arn, &prev).await?,
                    "the previous version",
                )?;
                Ok(Docs {
                    before,
                    after,
                    compared: format!(
                        "{what} against version {prev}, assumed to be the previous default (no earlier state of the policy: {})",
                        if why_none.is_empty() { "the last known state does not hold it" } else { why_none }
                    ),
                    trust: false,
                    note: None,
                })
            }
            "SetDefaultPolicyVersion" => {
                let arn = need("policyArn")?;
                let v = need("versionId")?;
                let target = Target::DefaultVersion {
                    arn: arn.to_owned(),
                };
                let (text, what) = match self.iam.policy_version(arn, v).await {
                    Ok(text) => (
                        text,
                        format!("the new default version {v} (GetPolicyVersion)"),
                    ),
                    Err(e) => {
                        // The version may be gone by now; the last known state may hold it.
                        let held = prior
                            .ok()
                            .map(|k| &k.role)
                            .and_then(|b| b.managed(arn))
                            .filter(|p| p.default_version_id.as_deref() == Some(v))
                            .and_then(|p| p.document.as_ref());
                        match held {
                            Some(doc) => (
                                doc.to_string(),
                                format!("the new default version {v} (as last known)"),
                            ),
                            None => return Err(e.into()),
                        }
                    }
                };
                let after = parse_doc(&text, "the new default")?;
                *applied = Some(Applied {
                    target: target.clone(),
                    document: value_of(&text),
                    version: Some(v.to_owned()),
                    present: true,
                });
                *after_out = Some((target.clone(), after.clone(), false, what.clone()));
                let s = side.ok_or_else(|| no_prior("default version"))?;
                let (before, label) = s.before(&target, false)?;
                let already = s
                    .snap
                    .managed(arn)
                    .is_some_and(|p| p.default_version_id.as_deref() == Some(v));
                Ok(Docs {
                    before,
                    after,
                    compared: format!("{what} against {label}"),
                    trust: false,
                    note: already.then(|| format!("{v} was already the default version")),
                })
            }
            "DeletePolicyVersion" => {
                let _ = need("policyArn")?;
                let v = need("versionId")?;
                Ok(Docs {
                    before: Policy::empty(),
                    after: Policy::empty(),
                    compared: format!("the deleted version {v}, which was not the default"),
                    trust: false,
                    note: Some(format!(
                        "IAM deletes only a version that is not the default: deleting {v} did not change what the policy allows"
                    )),
                })
            }
            "AttachRolePolicy" | "DetachRolePolicy" => {
                let arn = need("policyArn")?;
                let role = rp(record, "roleName").unwrap_or(&self.vendor.role_name);
                let target = Target::Attachment {
                    role: role.to_owned(),
                    arn: arn.to_owned(),
                };
                let attach = event == "AttachRolePolicy";
                let held = side
                    .as_ref()
                    .and_then(|s| s.snap.attached.iter().find(|p| p.arn == arn));
                if !attach {
                    *applied = Some(Applied {
                        target: target.clone(),
                        document: None,
                        version: None,
                        present: false,
                    });
                    *after_out = Some((
                        target.clone(),
                        Policy::empty(),
                        true,
                        "nothing (detached)".to_owned(),
                    ));
                    if let (Some(s), Some(_)) = (&side, held) {
                        let (before, label) = s.before(&target, true)?;
                        return Ok(Docs {
                            before,
                            after: Policy::empty(),
                            compared: format!("nothing (detached) against {label}"),
                            trust: false,
                            note: None,
                        });
                    }
                }
                let v = self.iam.default_version(arn).await?;
                let text = self.iam.policy_version(arn, &v).await?;
                let doc = parse_doc(&text, "the policy")?;
                let label = format!("the policy's default version {v} (GetPolicyVersion)");
                if attach {
                    *applied = Some(Applied {
                        target: target.clone(),
                        document: value_of(&text),
                        version: Some(v.clone()),
                        present: true,
                    });
                    *after_out = Some((
                        target.clone(),
                        doc.clone(),
                        false,
                        format!("{label}, attached"),
                    ));
                    let (before, against) = match &side {
                        Some(s) => s.before(&target, false)?,
                        None => (
                            Policy::empty(),
                            format!("nothing (no earlier state of the role: {why_none})"),
                        ),
                    };
                    return Ok(Docs {
                        before,
                        after: doc,
                        compared: format!("{label}, attached, against {against}"),
                        trust: false,
                        note: None,
                    });
                }
                let why = match &side {
                    Some(s) => format!("{} does not have it attached", s.noun),
                    None => format!("no earlier state of the role: {why_none}"),
                };
                Ok(Docs {
                    before: doc,
                    after: Policy::empty(),
                    compared: format!("nothing (detached) against {label} ({why})"),
                    trust: false,
                    note: None,
                })
            }
            "PutRolePolicy" | "DeleteRolePolicy" => {
                let role = need("roleName")?;
                let name = need("policyName")?;
                let target = Target::Inline {
                    role: role.to_owned(),
                    name: name.to_owned(),
                };
                let deleted = event == "DeleteRolePolicy";
                let (after, text, what) = if deleted {
                    (
                        Policy::empty(),
                        None,
                        format!("nothing (the inline policy {name} was deleted)"),
                    )
                } else {
                    let (text, from) = match event_document(record) {
                        Some(doc) => (doc, "from the event"),
                        None => (self.iam.inline_policy(role, name).await?, "GetRolePolicy"),
                    };
                    (
                        parse_doc(&text, "the new inline document")?,
                        Some(text),
                        format!("the inline policy {name} ({from})"),
                    )
                };
                *applied = Some(Applied {
                    target: target.clone(),
                    document: text.as_deref().and_then(value_of),
                    version: None,
                    present: !deleted,
                });
                *after_out = Some((target.clone(), after.clone(), deleted, what.clone()));
                let s = side
                    .filter(|s| s.snap.role_name == role)
                    .ok_or_else(|| no_prior("inline document"))?;
                let (before, label) = s.before(&target, deleted)?;
                Ok(Docs {
                    before,
                    after,
                    compared: format!("{what} against {label}"),
                    trust: false,
                    note: None,
                })
            }
            "UpdateAssumeRolePolicy" => {
                let role = need("roleName")?;
                let target = Target::Trust {
                    role: role.to_owned(),
                };
                let (text, from) = match event_document(record) {
                    Some(doc) => (doc, "from the event"),
                    None => (self.iam.role(role).await?.trust_policy, "GetRole"),
                };
                let after = parse_doc(&text, "the new trust policy")?;
                let what = format!("the new trust policy ({from})");
                *applied = Some(Applied {
                    target: target.clone(),
                    document: value_of(&text),
                    version: None,
                    present: true,
                });
                *after_out = Some((target.clone(), after.clone(), false, what.clone()));
                let s = side
                    .filter(|s| s.snap.role_name == role)
                    .ok_or_else(|| no_prior("trust policy"))?;
                let (before, label) = s.before(&target, false)?;
                Ok(Docs {
                    before,
                    after,
                    compared: format!("{what} against {label}"),
                    trust: true,
                    note: None,
                })
            }
            other => Err(Unavailable(format!(
                "rolewatch does not analyse {other} events"
            ))),
        }
    }
}

/// The change's target after it (`after`, named `label`) against the baseline `b`.
pub(super) fn since_baseline(
    b: &Baseline,
    target: &Target,
    after: &Policy,
    deleted: bool,
    label: &str,
) -> SinceBaseline {
    let side = Side::baseline(b);
    match side.before(target, deleted) {
        Ok((before, against)) => SinceBaseline {
            verdict: policy::diff(&before, after).verdict,
            compared: format!("{label} against {against}"),
        },
        Err(Unavailable(why)) => SinceBaseline {
            verdict: Verdict::Unknown,
            compared: format!("not compared: {why}"),
        },
    }
}
