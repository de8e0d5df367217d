//! The last known state of the vendor's role: the newest baseline with every analysed change
//! since applied to it, kept in the state. Each change is judged against it — the moment
//! before the change — and then applied to it; a baseline replaces it.
//!
//! Pure: the analysis says what a change made of what ([`Target`], [`Applied`]), this module
//! says what that makes of the role.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::baseline::{Baseline, InlinePolicy, ManagedPolicy};
use crate::time::display_rfc3339_ms;

/// The role as rolewatch last knew it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastKnown {
    /// The role at `role.taken_ms` (the baseline's time, or the time of the last change
    /// applied), in the shape of a baseline.
    pub role: Baseline,
    /// The `eventID` of the last change applied; `None` when `role` is a baseline as taken.
    pub from_event: Option<String>,
    /// Why this state no longer says what the role is: a change to it could not be read.
    /// An incomplete state is compared with nothing until the next baseline.
    pub incomplete: Option<String>,
}

impl LastKnown {
    /// A baseline, as the last known state.
    #[must_use]
    pub fn from_baseline(b: &Baseline) -> LastKnown {
        LastKnown {
            role: b.clone(),
            from_event: None,
            incomplete: None,
        }
    }

    /// When the role was as this says (unix ms).
    #[must_use]
    pub fn as_of_ms(&self) -> i64 {
        self.role.taken_ms
    }

    /// Whether this is the state from before the change `event_id` at `event_time_ms`: a
    /// baseline taken before it, or the state after a different change no later than it
    /// (CloudTrail times have seconds: two changes of one second are taken in the order the
    /// state recorded them).
    #[must_use]
    pub fn is_before(&self, event_id: &str, event_time_ms: i64) -> bool {
        match &self.from_event {
            None => self.as_of_ms() < event_time_ms,
            Some(e) => self.as_of_ms() <= event_time_ms && e != event_id,
        }
    }

    /// Where the state comes from, for the alert: "the baseline of T" or "after the change
    /// of T".
    #[must_use]
    pub fn provenance(&self) -> String {
        match &self.from_event {
            None => format!("the baseline of {}", display_rfc3339_ms(self.as_of_ms())),
            Some(_) => format!(
                "after the change of {}",
                display_rfc3339_ms(self.as_of_ms())
            ),
        }
    }
}

/// What a change touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The default version of a managed policy.
    DefaultVersion { arn: String },
    /// Whether a managed policy is attached to the role.
    Attachment { role: String, arn: String },
    /// An inline policy of the role.
    Inline { role: String, name: String },
    /// The role's trust policy.
    Trust { role: String },
}

/// What a change made of its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub target: Target,
    /// The target's document after the change (decoded), `None` when it is gone (detached,
    /// deleted) or could not be read.
    pub document: Option<Value>,
    /// For [`Target::DefaultVersion`], the new default version; for an attachment, the
    /// policy's default version.
    pub version: Option<String>,
    /// False when the target is gone after the change (a detach, a deleted inline policy).
    pub present: bool,
}

/// The name of a managed policy from its ARN (the last part of its path).
fn policy_name(arn: &str) -> String {
    arn.rsplit(['/', ':']).next().unwrap_or(arn).to_owned()
}

/// `known` with `change` (of `event_id` at `event_time_ms`) applied; `vendor_policy` is
/// `[vendor] policy_name`. A change to another role changes nothing.
#[must_use]
pub fn apply(
    known: &LastKnown,
    change: &Applied,
    event_id: &str,
    event_time_ms: i64,
    vendor_policy: &str,
) -> LastKnown {
    let mut role = known.role.clone();
    role.taken_ms = event_time_ms.max(known.as_of_ms());
    let same_role = |r: &str| r == role.role_name;
    match &change.target {
        Target::DefaultVersion { arn } => {
            for p in role
                .attached
                .iter_mut()
                .chain(role.managed_policy.iter_mut())
                .filter(|p| &p.arn == arn)
            {
                p.default_version_id.clone_from(&change.version);
                p.document.clone_from(&change.document);
            }
        }
        Target::Attachment { role: r, arn } if same_role(r) => {
            if change.present {
                if !role.attached.iter().any(|p| &p.arn == arn) {
                    let p = ManagedPolicy {
                        name: policy_name(arn),
                        arn: arn.clone(),
                        default_version_id: change.version.clone(),
                        document: change.document.clone(),
                    };
                    if p.name == vendor_policy {
                        role.managed_policy = Some(p.clone());
                    }
                    role.attached.push(p);
                }
            } else {
                role.attached.retain(|p| &p.arn != arn);
            }
        }
        Target::Inline { role: r, name } if same_role(r) => {
            if change.present {
                let p = InlinePolicy {
                    name: name.clone(),
                    document: change.document.clone(),
                };
                match role.inline.iter_mut().find(|i| &i.name == name) {
                    Some(i) => *i = p,
                    None => role.inline.push(p),
                }
            } else {
                role.inline.retain(|i| &i.name != name);
            }
        }
        Target::Trust { role: r } if same_role(r) => {
            role.trust_policy.clone_from(&change.document);
        }
        Target::Attachment { .. } | Target::Inline { .. } | Target::Trust { .. } => {}
    }
    LastKnown {
        role,
        from_event: Some(event_id.to_owned()),
        incomplete: None,
    }
}

/// `known` marked incomplete by the change `event_id` at `event_time_ms`, which could not
/// be read (`why`).
#[must_use]
pub fn incomplete(known: &LastKnown, event_id: &str, event_time_ms: i64, why: &str) -> LastKnown {
    let mut k = known.clone();
    k.role.taken_ms = event_time_ms.max(known.as_of_ms());
    k.from_event = Some(event_id.to_owned());
    k.incomplete = Some(format!(
        "the change of {} could not be read ({why})",
        display_rfc3339_ms(event_time_ms)
    ));
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role() -> LastKnown {
        LastKnown::from_baseline(&Baseline {
            taken_ms: 1_000,
            role_name: "r".into(),
            role_arn: "arn:aws:iam::111122223333:role/r".into(),
            trust_policy: Some(json!({"Statement": []})),
            attached: vec![ManagedPolicy {
                name: "P".into(),
                arn: "arn:aws:iam::111122223333:policy/P".into(),
                default_version_id: Some("v1".into()),
                document: Some(json!({"v": 1})),
            }],
            inline: Vec::new(),
            managed_policy: Some(ManagedPolicy {
                name: "P".into(),
                arn: "arn:aws:iam::111122223333:policy/P".into(),
                default_version_id: Some("v1".into()),
                document: Some(json!({"v": 1})),
            }),
            problems: Vec::new(),
        })
    }

    #[test]
    fn before_a_change() {
        let k = role();
        assert!(k.is_before("e1", 1_001));
        assert!(
            !k.is_before("e1", 1_000),
            "a baseline of the same ms may hold it"
        );
        let k = apply(
            &k,
            &Applied {
                target: Target::Trust { role: "r".into() },
                document: Some(json!({"t": 2})),
                version: None,
                present: true,
            },
            "e1",
            2_000,
            "P",
        );
        assert!(
            k.is_before("e2", 2_000),
            "a later change of the same second"
        );
        assert!(!k.is_before("e1", 2_000), "not its own");
        assert!(!k.is_before("e0", 1_999));
        assert_eq!(k.role.trust_policy, Some(json!({"t": 2})));
    }

    #[test]
    fn changes_apply_to_the_role_they_name() {
        let arn = "arn:aws:iam::111122223333:policy/P";
        let k = apply(
            &role(),
            &Applied {
                target: Target::DefaultVersion { arn: arn.into() },
                document: Some(json!({"v": 2})),
                version: Some("v2".into()),
                present: true,
            },
            "e1",
            2_000,
            "P",
        );
        assert_eq!(k.role.attached[0].default_version_id.as_deref(), Some("v2"));
        assert_eq!(
            k.role.managed_policy.as_ref().unwrap().document,
            Some(json!({"v": 2}))
        );
        let extra = "arn:aws:iam::111122223333:policy/team/Extra";
        let attach = |role: &str, present: bool| Applied {
            target: Target::Attachment {
                role: role.into(),
                arn: extra.into(),
            },
            document: Some(json!({"x": 1})),
            version: Some("v1".into()),
            present,
        };
        let k = apply(&k, &attach("r", true), "e2", 3_000, "P");
        assert_eq!(k.role.attached.len(), 2);
        assert_eq!(k.role.attached[1].name, "Extra");
        let same = apply(&k, &attach("r", true), "e3", 3_000, "P");
        assert_eq!(same.role.attached, k.role.attached, "attached once");
        let other = apply(&k, &attach("other", false), "e3", 4_000, "P");
        assert_eq!(other.role.attached, k.role.attached, "another role");
        let k = apply(&k, &attach("r", false), "e4", 4_000, "P");
        assert_eq!(k.role.attached.len(), 1);
        let inline = |present: bool| Applied {
            target: Target::Inline {
                role: "r".into(),
                name: "extra".into(),
            },
            document: present.then(|| json!({"i": 1})),
            version: None,
            present,
        };
        let k = apply(&k, &inline(true), "e5", 5_000, "P");
        assert_eq!(k.role.inline.len(), 1);
        let k = apply(&k, &inline(false), "e6", 6_000, "P");
        assert!(k.role.inline.is_empty());
        assert_eq!(k.as_of_ms(), 6_000);
        assert_eq!(k.from_event.as_deref(), Some("e6"));
        let k = incomplete(&k, "e7", 7_000, "IAM did not answer");
        assert!(k
            .incomplete
            .unwrap()
            .contains("could not be read (IAM did not answer)"));
    }
}
