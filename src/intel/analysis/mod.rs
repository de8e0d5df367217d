//! One alert's analysis: the actor class, what changed (before and after documents, fetched
//! through [`IamReader`]), the verdict, the final severity, and how the role differs from the
//! baseline. Every IAM call together is bounded by the analyzer's budget; on any failure the
//! analysis says `diff unavailable: <reason>` and keeps what the event itself tells.
//!
//! Here: the analysis of one alert (actor, verdict, severity, baseline note, `[[expect]]`
//! mark); [`change`]: what each event kind made, before and after (~520 lines: one arm per
//! event kind over the same IAM reader, last known state and baseline).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod change;

use change::{event_document, rp, since_baseline, Unavailable};

use super::actor::{self, ActorClass};
use super::baseline::{self, decode_document, Baseline};
use super::expect::{self, ExpectedNote};
use super::iam::{IamError, IamReader};
use super::known::{self, LastKnown};
use super::policy::{self, StatementChange, Verdict};
use crate::config::{Expectation, VendorConfig};
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

/// The verdict of the change against the baseline: the alert's second line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinceBaseline {
    pub verdict: Verdict,
    /// What was compared with what, e.g. "the new default version v1 (GetPolicyVersion)
    /// against the baseline's default version v1 (taken 2026-12-01T00:00:00Z)".
    pub compared: String,
}

/// The analysis of one alert, stored with it and shown by every channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    pub actor_class: ActorClass,
    /// The caller matched `[vendor] allowed_principals`.
    pub allowlisted: bool,
    /// How the caller acted when a service made the call with its credentials: "the
    /// console", "CloudFormation", … (see [`actor::via`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The verdict against the moment before the change (the last known state).
    pub verdict: Verdict,
    /// The final severity (see [`actor::final_severity`]).
    pub severity: String,
    /// The rule's severity, the base.
    pub rule_severity: String,
    pub severity_reason: String,
    /// What was compared with what, e.g. "the new version v4 (from the event) against the
    /// last known default version v3 (the baseline of 2026-12-01T00:00:00Z)".
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
    /// The same change judged against the baseline instead of the moment before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_baseline: Option<SinceBaseline>,
    pub baseline: Option<BaselineNote>,
    /// The `[[expect]]` entry the change matched (see [`expect`](super::expect)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<ExpectedNote>,
}

/// What an alert is compared with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Before<'a> {
    /// The last known state of the role (see [`known`](super::known)).
    pub last_known: Option<&'a LastKnown>,
    /// The newest baseline.
    pub baseline: Option<&'a Baseline>,
}

/// How one analysis of a worker's pass runs.
#[derive(Debug, Clone, Copy)]
pub struct Within<'a> {
    /// All IAM calls of this analysis together take at most this long (the worker shortens
    /// it while IAM does not answer, so that a backlog of alerts is not held for the full
    /// budget each).
    pub budget: Duration,
    /// Why no IAM call is to be made (IAM failed for an earlier alert of the pass).
    pub offline: Option<&'a str>,
    /// The role as it is now, read once for the whole pass: every alert of a pass is
    /// compared with the same "now" (what the role now differs in from the baseline), and a
    /// burst of alerts does not read the whole role once per alert. `None`: read it here.
    pub current: Option<&'a Result<Baseline, IamError>>,
}

/// An analysis, and the last known state after the change.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub analysis: Analysis,
    /// `Some` when the change made a new last known state (applied, or marked incomplete).
    pub last_known: Option<LastKnown>,
}

/// The analyzer: the IAM reader, the vendor's names and the time budget.
pub struct Analyzer<R> {
    pub iam: R,
    pub vendor: VendorConfig,
    pub budget: Duration,
    /// Changes announced in advance (`[[expect]]`).
    pub expect: Vec<Expectation>,
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

/// The moment before a change: the last known state, when it is from before the change and
/// whole; otherwise why there is none.
fn prior<'a>(before: Before<'a>, event_id: &str, event_time: i64) -> Result<&'a LastKnown, String> {
    match before.last_known {
        None => Err("no baseline was taken and no change recorded before this one".to_owned()),
        Some(k) if !k.is_before(event_id, event_time) => Err(format!(
            "the last known state ({}) is not older than the change",
            k.provenance()
        )),
        Some(k) => match &k.incomplete {
            Some(why) => Err(format!("the last known state is incomplete: {why}")),
            None => Ok(k),
        },
    }
}

impl<R: IamReader> Analyzer<R> {
    /// Analyses one stored alert against `baseline` (the latest snapshot, if any), which is
    /// also taken as the moment before the change. Never fails: what cannot be found out is
    /// said in the analysis. All IAM calls together take at most the budget.
    pub async fn analyze(
        &self,
        stored: &StoredAlert,
        baseline: Option<&Baseline>,
        now_ms: i64,
    ) -> Analysis {
        let known = baseline.map(LastKnown::from_baseline);
        let before = Before {
            last_known: known.as_ref(),
            baseline,
        };
        let within = Within {
            budget: self.budget,
            offline: None,
            current: None,
        };
        self.analyze_within(stored, before, now_ms, within)
            .await
            .analysis
    }

    /// This analyzer over another IAM reader (a pass's [`super::memo::Memo`]).
    pub fn over<S: IamReader>(&self, iam: S) -> Analyzer<S> {
        Analyzer {
            iam,
            vendor: self.vendor.clone(),
            budget: self.budget,
            expect: self.expect.clone(),
        }
    }

    /// Makes the IAM calls the analysis of `stored` makes, for their answers alone (through
    /// a [`super::memo::Memo`], so that a batch's calls go out together and the analyses
    /// after find them answered).
    pub async fn prefetch(&self, stored: &StoredAlert, before: Before<'_>) {
        let record: Value = serde_json::from_str(&stored.record).unwrap_or(Value::Null);
        if record.get("errorCode").is_some_and(|c| !c.is_null()) {
            return;
        }
        let event = record
            .get("eventName")
            .and_then(Value::as_str)
            .unwrap_or(&stored.event_name);
        let prior = prior(before, &stored.event_id, stored.event_time_ms);
        self.change(
            event,
            &record,
            prior.as_ref().map(|k| *k).map_err(String::as_str),
        )
        .await;
    }

    /// Analyses one stored alert against the moment before it (`before.last_known`, when
    /// it is from before the change) and the baseline, as one of a worker's pass
    /// (`within`). Returns the analysis and the last known state after the change.
    pub async fn analyze_within(
        &self,
        stored: &StoredAlert,
        before: Before<'_>,
        now_ms: i64,
        within: Within<'_>,
    ) -> Outcome {
        let Within {
            budget,
            offline,
            current: taken,
        } = within;
        let record: Value = serde_json::from_str(&stored.record).unwrap_or(Value::Null);
        let (actor_class, allowlisted) = actor::classify(&record, &self.vendor);
        let event = record
            .get("eventName")
            .and_then(Value::as_str)
            .unwrap_or(&stored.event_name)
            .to_owned();
        let failed = record.get("errorCode").is_some_and(|c| !c.is_null());
        let (event_id, event_time) = (stored.event_id.as_str(), stored.event_time_ms);
        // The moment before: the last known state, when it is from before this change and
        // whole; otherwise why there is none.
        let prior = prior(before, event_id, event_time);
        let base = before.baseline.filter(|b| b.taken_ms < event_time);
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
            via: actor::via(&record),
            verdict: Verdict::Unknown,
            severity: String::new(),
            rule_severity: stored.severity.clone(),
            severity_reason: String::new(),
            compared: None,
            reasons: Vec::new(),
            flags: Vec::new(),
            statements: Vec::new(),
            diff_unavailable: None,
            since_baseline: None,
            baseline: None,
            expected: None,
        };
        // What the change set, for `[[expect]]`.
        let mut set_document: Option<Value> = None;
        let mut set_version: Option<String> = None;
        let mut any_widening = false;
        let mut last_known = None;
        let analysed_kind = ANALYSED.contains(&event.as_str());
        if failed {
            a.verdict = Verdict::Unchanged;
            a.reasons
                .push("the call failed: nothing changed (someone tried)".to_owned());
        } else if let Some(reason) = offline {
            // IAM failed for an earlier alert of this batch: no call is made.
            a.diff_unavailable = Some(reason.to_owned());
        } else {
            let work = async {
                let change = self
                    .change(
                        &event,
                        &record,
                        prior.as_ref().map(|k| *k).map_err(String::as_str),
                    )
                    .await;
                let current = match taken {
                    Some(now) => now.clone(),
                    None => baseline::snapshot(&self.iam, &self.vendor, now_ms).await,
                };
                (change, current)
            };
            match tokio::time::timeout(budget, work).await {
                Err(_) => {
                    a.diff_unavailable =
                        Some(format!("{TIMEOUT_PREFIX} {} s", budget.as_secs_f64()));
                }
                Ok((change, current)) => {
                    match change.docs {
                        Ok(d) => {
                            let diff = policy::diff(&d.before, &d.after);
                            if d.trust {
                                flags.extend(policy::trust_flags(&d.before, &d.after));
                            }
                            a.verdict = diff.verdict;
                            any_widening = diff.any_widening;
                            a.reasons = diff.reasons;
                            a.reasons.extend(d.note);
                            a.statements = diff.statements;
                            a.compared = Some(d.compared);
                        }
                        Err(Unavailable(reason)) => a.diff_unavailable = Some(reason),
                    }
                    if let (Some(b), Some((target, after, deleted, label))) = (base, &change.after)
                    {
                        a.since_baseline = Some(since_baseline(b, target, after, *deleted, label));
                    }
                    if let Some(c) = change.applied.as_ref().filter(|c| c.present) {
                        set_document.clone_from(&c.document);
                        set_version.clone_from(&c.version);
                    }
                    if let (Ok(k), Some(c)) = (&prior, &change.applied) {
                        last_known = Some(known::apply(
                            k,
                            c,
                            event_id,
                            event_time,
                            &self.vendor.policy_name,
                        ));
                    }
                    a.baseline = Some(match (before.baseline, current) {
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
        if !failed && last_known.is_none() && analysed_kind && event != "DeletePolicyVersion" {
            if let (Ok(k), Some(why)) = (&prior, a.diff_unavailable.as_deref()) {
                // The change happened, what it made is unknown: nothing is compared with
                // this state any more until the next baseline.
                last_known = Some(known::incomplete(k, event_id, event_time, why));
            }
        }
        if a.diff_unavailable.is_some() && a.verdict == Verdict::Unknown {
            a.reasons
                .push("the documents could not be compared: see why below".to_owned());
        }
        a.flags = flags;
        let base_severity = parse_severity(&stored.severity);
        let (sev, why) = actor::final_severity(
            base_severity,
            actor_class,
            allowlisted,
            a.verdict,
            any_widening,
        );
        a.severity = sev.as_str().to_owned();
        a.severity_reason = why;
        if !failed && !self.expect.is_empty() {
            let from_event = || event_document(&record).and_then(|t| baseline::decode_document(&t));
            let document = set_document.or_else(from_event);
            let version = set_version.or_else(|| match event.as_str() {
                "SetPolicyVersion" => rp(&record, "versionId").map(str::to_owned),
                _ => None,
            });
            let text = |p: &str| record.pointer(p).and_then(Value::as_str).unwrap_or("");
            let facts = expect::Facts {
                event_name: &event,
                event_time_ms: event_time,
                policy_arn: rp(&record, "policyArn"),
                policy_name: rp(&record, "policyName"),
                new_version: version.as_deref(),
                new_document: document.as_ref(),
                actor_class,
                principal_arns: [
                    text("/userIdentity/arn"),
                    text("/userIdentity/sessionContext/sessionIssuer/arn"),
                ],
                verdict: a.verdict,
                any_widening,
            };
            if let Some(note) = expect::judge(&self.expect, &facts) {
                match &note.beyond {
                    None => {
                        a.severity_reason = format!(
                            "expected ({}): info (without it: {}, {})",
                            note.description, a.severity, a.severity_reason
                        );
                        a.severity = Severity::Info.as_str().to_owned();
                    }
                    Some(beyond) => {
                        a.severity_reason = format!(
                            "{}; expected ({}), but {beyond}",
                            a.severity_reason, note.description
                        );
                    }
                }
                a.expected = Some(note);
            }
        }
        Outcome {
            analysis: a,
            last_known,
        }
    }
}

/// The event kinds whose change the analysis judges (the rest are `unknown`).
const ANALYSED: &[&str] = &[
    "CreatePolicyVersion",
    "SetDefaultPolicyVersion",
    "DeletePolicyVersion",
    "AttachRolePolicy",
    "DetachRolePolicy",
    "PutRolePolicy",
    "DeleteRolePolicy",
    "UpdateAssumeRolePolicy",
];

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
