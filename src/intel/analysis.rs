//! One alert's analysis: the actor class, what changed (before and after documents, fetched
//! through [`IamReader`]), the verdict, the final severity, and how the role differs from the
//! baseline. Every IAM call together is bounded by the analyzer's budget; on any failure the
//! analysis says `diff unavailable: <reason>` and keeps what the event itself tells.
//!
//! Why one file of ~520 lines: one analysis per event kind, each a short function over the
//! same IAM reader and budget.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::actor::{self, ActorClass};
use super::baseline::{self, decode_document, Baseline};
use super::iam::{IamError, IamReader};
use super::policy::{self, Policy, StatementChange, Verdict};
use crate::config::VendorConfig;
use crate::rules::Severity;
use crate::state::StoredAlert;

/// How long all IAM calls of one analysis may take together.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(10);

/// How a baseline note begins when IAM could not be read.
pub const IAM_FAILED_PREFIX: &str = "the role could not be read:";

/// How a timed-out analysis begins its `diff_unavailable`.
pub const TIMEOUT_PREFIX: &str = "IAM did not answer within";

/// AWS-managed policies whose attachment is flagged as high risk (matched by name under
/// `arn:aws:iam::aws:policy/`, any path, any partition).
pub const HIGH_RISK_MANAGED: &[&str] = &[
    "AdministratorAccess",
    "AdministratorAccess-Amplify",
    "AdministratorAccess-AWSElasticBeanstalk",
    "PowerUserAccess",
    "IAMFullAccess",
    "AWSOrganizationsFullAccess",
    "AWSCloudTrail_FullAccess",
    "AWSCloudFormationFullAccess",
    "AWSLambda_FullAccess",
    "AmazonEC2FullAccess",
    "AmazonS3FullAccess",
    "AWSKeyManagementServicePowerUser",
    "SecretsManagerReadWrite",
    "AWSSSOMasterAccountAdministrator",
    "AWSSSODirectoryAdministrator",
    "SystemAdministrator",
    "NetworkAdministrator",
    "DatabaseAdministrator",
];

/// True for an AWS-managed policy in [`HIGH_RISK_MANAGED`].
#[must_use]
pub fn is_high_risk_managed(arn: &str) -> bool {
    let Some(rest) = arn
        .strip_prefix("arn:")
        .and_then(|r| r.split_once(":iam::aws:policy/"))
        .map(|(_, p)| p)
    else {
        return false;
    };
    let name = rest.rsplit('/').next().unwrap_or(rest);
    HIGH_RISK_MANAGED.contains(&name)
}

/// How the role differs from the baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineNote {
    /// When the baseline was taken (unix ms); `None` when there is none.
    pub taken_ms: Option<i64>,
    /// One sentence per difference; empty when the role matches the baseline.
    pub differences: Vec<String>,
    /// Why the comparison could not be made.
    pub unavailable: Option<String>,
}

/// The analysis of one alert, stored with it and shown by every channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    pub actor_class: ActorClass,
    /// The caller matched `[vendor] allowed_principals`.
    pub allowlisted: bool,
    pub verdict: Verdict,
    /// The final severity (see [`actor::final_severity`]).
    pub severity: String,
    /// The rule's severity, the base.
    pub rule_severity: String,
    pub severity_reason: String,
    /// What was compared with what, e.g. "the new version v4 (from the event) against the
    /// default version v3 (GetPolicyVersion)".
    pub compared: Option<String>,
    /// Why the verdict.
    pub reasons: Vec<String>,
    /// What on-call must not miss: a high-risk AWS-managed policy, a removed external ID, a
    /// new principal, a version not set as default.
    pub flags: Vec<String>,
    /// Statement by statement.
    pub statements: Vec<StatementChange>,
    /// `Some(reason)` when the diff could not be made.
    pub diff_unavailable: Option<String>,
    pub baseline: Option<BaselineNote>,
}

/// A before/after pair to compare.
struct Docs {
    before: Policy,
    after: Policy,
    compared: String,
    trust: bool,
}

/// Why no diff could be made: a sentence for the alert.
struct Unavailable(String);

impl From<IamError> for Unavailable {
    fn from(e: IamError) -> Self {
        if e.is_access_denied() {
            Unavailable(format!("no IAM read access ({e})"))
        } else {
            Unavailable(e.to_string())
        }
    }
}

fn parse_doc(text: &str, what: &str) -> Result<Policy, Unavailable> {
    Policy::parse_text(text).map_err(|e| Unavailable(format!("{what}: {e}")))
}

fn baseline_doc(v: Option<&Value>, what: &str) -> Result<Policy, Unavailable> {
    match v {
        Some(v) => Policy::parse(v).map_err(|e| Unavailable(format!("{what}: {e}"))),
        None => Err(Unavailable(format!(
            "{what} could not be read when the baseline was taken"
        ))),
    }
}

/// `v7` → `v6`.
fn previous_version(v: &str) -> Option<String> {
    let n: u64 = v.strip_prefix('v')?.parse().ok()?;
    (n > 1).then(|| format!("v{}", n - 1))
}

/// The analyzer: the IAM reader, the vendor's names and the time budget.
pub struct Analyzer<R> {
    pub iam: R,
    pub vendor: VendorConfig,
    pub budget: Duration,
}

fn rp<'a>(record: &'a Value, key: &str) -> Option<&'a str> {
    record
        .pointer(&format!("/requestParameters/{key}"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The `policyDocument` of the request, as text.
fn event_document(record: &Value) -> Option<String> {
    match record.pointer("/requestParameters/policyDocument")? {
        Value::String(s) => Some(s.clone()),
        v @ Value::Object(_) => Some(v.to_string()),
        _ => None,
    }
}

fn parse_severity(s: &str) -> Severity {
    [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ]
    .into_iter()
    .find(|v| v.as_str() == s)
    .unwrap_or(Severity::High)
}

impl<R: IamReader> Analyzer<R> {
    /// Analyses one stored alert against `baseline` (the latest snapshot, if any). Never
    /// fails: what cannot be found out is said in the analysis. All IAM calls together take
    /// at most the budget.
    pub async fn analyze(
        &self,
        stored: &StoredAlert,
        baseline: Option<&Baseline>,
        now_ms: i64,
    ) -> Analysis {
        self.analyze_within(stored, baseline, now_ms, self.budget, None)
            .await
    }

    /// [`Analyzer::analyze`] with another budget (the worker shortens it while IAM does not
    /// answer, so that a backlog of alerts is not held for the full budget each).
    pub async fn analyze_within(
        &self,
        stored: &StoredAlert,
        baseline: Option<&Baseline>,
        now_ms: i64,
        budget: Duration,
        offline: Option<&str>,
    ) -> Analysis {
        let record: Value = serde_json::from_str(&stored.record).unwrap_or(Value::Null);
        let (actor_class, allowlisted) = actor::classify(&record, &self.vendor);
        let event = record
            .get("eventName")
            .and_then(Value::as_str)
            .unwrap_or(&stored.event_name)
            .to_owned();
        let failed = record.get("errorCode").is_some_and(|c| !c.is_null());
        let mut flags = Vec::new();
        if let Some(arn) = rp(&record, "policyArn").filter(|a| is_high_risk_managed(a)) {
            if event.ends_with("RolePolicy") {
                flags.push(format!("high-risk AWS-managed policy: {arn}"));
            }
        }
        if event == "CreatePolicyVersion"
            && record.pointer("/requestParameters/setAsDefault") == Some(&Value::Bool(false))
        {
            flags.push(
                "not set as default: the new version takes effect only once it becomes the default"
                    .to_owned(),
            );
        }
        let mut a = Analysis {
            actor_class,
            allowlisted,
            verdict: Verdict::Unknown,
            severity: String::new(),
            rule_severity: stored.severity.clone(),
            severity_reason: String::new(),
            compared: None,
            reasons: Vec::new(),
            flags: Vec::new(),
            statements: Vec::new(),
            diff_unavailable: None,
            baseline: None,
        };
        let mut any_widening = false;
        if failed {
            a.verdict = Verdict::Unchanged;
            a.reasons
                .push("the call failed: nothing changed (someone tried)".to_owned());
        } else if let Some(reason) = offline {
            // IAM failed for an earlier alert of this batch: no call is made.
            a.diff_unavailable = Some(reason.to_owned());
        } else {
            let work = async {
                let docs = self.documents(&event, &record, baseline).await;
                let current = baseline::snapshot(&self.iam, &self.vendor, now_ms).await;
                (docs, current)
            };
            match tokio::time::timeout(budget, work).await {
                Err(_) => {
                    a.diff_unavailable =
                        Some(format!("{TIMEOUT_PREFIX} {} s", budget.as_secs_f64()));
                }
                Ok((docs, current)) => {
                    match docs {
                        Ok(d) => {
                            let diff = policy::diff(&d.before, &d.after);
                            if d.trust {
                                flags.extend(policy::trust_flags(&d.before, &d.after));
                            }
                            a.verdict = diff.verdict;
                            any_widening = diff.any_widening;
                            a.reasons = diff.reasons;
                            a.statements = diff.statements;
                            a.compared = Some(d.compared);
                        }
                        Err(Unavailable(reason)) => a.diff_unavailable = Some(reason),
                    }
                    a.baseline = Some(match (baseline, current) {
                        (Some(b), Ok(now)) => BaselineNote {
                            taken_ms: Some(b.taken_ms),
                            differences: baseline::differences(b, &now),
                            unavailable: None,
                        },
                        (b, Err(e)) => BaselineNote {
                            taken_ms: b.map(|b| b.taken_ms),
                            differences: Vec::new(),
                            unavailable: Some(format!(
                                "{IAM_FAILED_PREFIX} {}",
                                Unavailable::from(e).0
                            )),
                        },
                        (None, Ok(_)) => BaselineNote {
                            taken_ms: None,
                            differences: Vec::new(),
                            unavailable: Some("no baseline has been taken yet".to_owned()),
                        },
                    });
                }
            }
            if a.diff_unavailable.is_some() {
                // What the event alone says.
                if event == "AttachRolePolicy"
                    && rp(&record, "policyArn").is_some_and(is_high_risk_managed)
                {
                    a.verdict = Verdict::Widened;
                    any_widening = true;
                    a.reasons
                        .push("a high-risk AWS-managed policy was attached".to_owned());
                }
            }
        }
        if a.diff_unavailable.is_some() && a.verdict == Verdict::Unknown {
            a.reasons
                .push("the documents could not be compared: see why below".to_owned());
        }
        a.flags = flags;
        let base = parse_severity(&stored.severity);
        let (sev, why) =
            actor::final_severity(base, actor_class, allowlisted, a.verdict, any_widening);
        a.severity = sev.as_str().to_owned();
        a.severity_reason = why;
        a
    }

    async fn documents(
        &self,
        event: &str,
        record: &Value,
        baseline: Option<&Baseline>,
    ) -> Result<Docs, Unavailable> {
        let need = |k: &str| {
            rp(record, k)
                .ok_or_else(|| Unavailable(format!("the event has no requestParameters.{k}")))
        };
        let no_baseline = |what: &str| {
            Unavailable(format!(
                "the previous {what} is unknown: no baseline was taken before the change"
            ))
        };
        match event {
            "CreatePolicyVersion" => {
                let arn = need("policyArn")?;
                let new_version = record
                    .pointer("/responseElements/policyVersion/versionId")
                    .and_then(Value::as_str);
                let after = match event_document(record) {
                    Some(doc) => parse_doc(&doc, "the new document")?,
                    None => {
                        let v = new_version.ok_or_else(|| {
                            Unavailable("the event has neither the document nor the version".into())
                        })?;
                        parse_doc(&self.iam.policy_version(arn, v).await?, "the new document")?
                    }
                };
                let new_label = new_version.unwrap_or("?");
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
                            "the new version {new_label} (from the event) against the default version {default} (GetPolicyVersion)"
                        ),
                        trust: false,
                    });
                }
                if let Some(p) = baseline.and_then(|b| b.managed(arn)) {
                    if p.default_version_id.as_deref() != new_version {
                        return Ok(Docs {
                            before: baseline_doc(p.document.as_ref(), "the baseline's default version")?,
                            after,
                            compared: format!(
                                "the new default version {new_label} (from the event) against the baseline's default version {}",
                                p.default_version_id.as_deref().unwrap_or("?")
                            ),
                            trust: false,
                        });
                    }
                }
                let prev = new_version
                    .and_then(previous_version)
                    .ok_or_else(|| no_baseline("default version"))?;
                let before = parse_doc(
                    &self.iam.policy_version(arn, &prev).await?,
                    "the previous version",
                )?;
                Ok(Docs {
                    before,
                    after,
                    compared: format!(
                        "the new default version {new_label} (from the event) against version {prev}, assumed to be the previous default (no baseline)"
                    ),
                    trust: false,
                })
            }
            "SetDefaultPolicyVersion" => {
                let arn = need("policyArn")?;
                let v = need("versionId")?;
                let after = parse_doc(&self.iam.policy_version(arn, v).await?, "the new default")?;
                let p = baseline
                    .and_then(|b| b.managed(arn))
                    .filter(|p| p.default_version_id.as_deref() != Some(v))
                    .ok_or_else(|| no_baseline("default version"))?;
                Ok(Docs {
                    before: baseline_doc(p.document.as_ref(), "the baseline's default version")?,
                    after,
                    compared: format!(
                        "the new default version {v} (GetPolicyVersion) against the baseline's default version {}",
                        p.default_version_id.as_deref().unwrap_or("?")
                    ),
                    trust: false,
                })
            }
            "AttachRolePolicy" | "DetachRolePolicy" => {
                let arn = need("policyArn")?;
                let v = self.iam.default_version(arn).await?;
                let doc = parse_doc(&self.iam.policy_version(arn, &v).await?, "the policy")?;
                let label = format!("the policy's default version {v} (GetPolicyVersion)");
                Ok(if event == "AttachRolePolicy" {
                    Docs {
                        before: Policy::empty(),
                        after: doc,
                        compared: format!("{label}, newly attached, against nothing"),
                        trust: false,
                    }
                } else {
                    Docs {
                        before: doc,
                        after: Policy::empty(),
                        compared: format!("{label}, detached, against nothing"),
                        trust: false,
                    }
                })
            }
            "PutRolePolicy" | "DeleteRolePolicy" => {
                let role = need("roleName")?;
                let name = need("policyName")?;
                let b = baseline
                    .filter(|b| b.role_name == role)
                    .ok_or_else(|| no_baseline("inline document"))?;
                let before = match b.inline(name) {
                    Some(p) => baseline_doc(p.document.as_ref(), "the baseline's inline document")?,
                    None => Policy::empty(),
                };
                let after = if event == "DeleteRolePolicy" {
                    Policy::empty()
                } else {
                    match event_document(record) {
                        Some(doc) => parse_doc(&doc, "the new inline document")?,
                        None => parse_doc(
                            &self.iam.inline_policy(role, name).await?,
                            "the new inline document",
                        )?,
                    }
                };
                Ok(Docs {
                    before,
                    after,
                    compared: format!(
                        "the inline policy {name} {} against the baseline's",
                        if event == "DeleteRolePolicy" {
                            "(deleted)"
                        } else {
                            "(from the event)"
                        }
                    ),
                    trust: false,
                })
            }
            "UpdateAssumeRolePolicy" => {
                let role = need("roleName")?;
                let after = match event_document(record) {
                    Some(doc) => parse_doc(&doc, "the new trust policy")?,
                    None => {
                        parse_doc(&self.iam.role(role).await?.trust_policy, "the trust policy")?
                    }
                };
                let b = baseline
                    .filter(|b| b.role_name == role)
                    .ok_or_else(|| no_baseline("trust policy"))?;
                Ok(Docs {
                    before: baseline_doc(b.trust_policy.as_ref(), "the baseline's trust policy")?,
                    after,
                    compared: "the new trust policy (from the event) against the baseline's"
                        .to_owned(),
                    trust: true,
                })
            }
            other => Err(Unavailable(format!(
                "rolewatch does not analyse {other} events"
            ))),
        }
    }
}

/// Decodes a document for display (URL-encoded or not); re-exported for the baseline printer.
#[must_use]
pub fn document_value(text: &str) -> Option<Value> {
    decode_document(text)
}

impl Analysis {
    /// Why IAM looks unusable after this analysis (it timed out, or the role could not be
    /// read): the worker then spares the rest of its batch the calls.
    #[must_use]
    pub fn iam_failure(&self) -> Option<String> {
        if let Some(r) = self
            .diff_unavailable
            .as_deref()
            .filter(|r| r.starts_with(TIMEOUT_PREFIX))
        {
            return Some(r.to_owned());
        }
        self.baseline
            .as_ref()
            .and_then(|b| b.unavailable.as_deref())
            .filter(|u| u.starts_with(IAM_FAILED_PREFIX))
            .map(str::to_owned)
    }
}
