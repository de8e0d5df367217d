//! The verdict corpus (`testdata/verdicts.json`: before, after, expected verdict, why) and
//! the analysis of each event kind with documents fed through a fake IAM.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::analysis::Analyzer;
use super::baseline::{self, Baseline};
use super::iam::{IamError, IamReader, RoleInfo};
use super::policy::{diff, Policy, Verdict};
use crate::config::VendorConfig;
use crate::state::StoredAlert;

#[test]
fn verdict_corpus() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/intel/testdata/verdicts.json");
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut failures = Vec::new();
    for c in &cases {
        let name = c["name"].as_str().unwrap();
        assert!(
            c["why"].as_str().is_some_and(|w| !w.is_empty()),
            "{name}: no why"
        );
        let before = Policy::parse(&c["before"]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let after = Policy::parse(&c["after"]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected: Verdict = serde_json::from_value(c["verdict"].clone()).unwrap();
        let d = diff(&before, &after);
        if d.verdict != expected {
            failures.push(format!(
                "{name}: expected {expected}, got {} ({})\n    reasons: {:?}",
                d.verdict,
                c["why"].as_str().unwrap(),
                d.reasons
            ));
        }
        if d.verdict == Verdict::Unchanged {
            assert!(d.reasons.is_empty(), "{name}: {:?}", d.reasons);
        } else {
            assert!(!d.reasons.is_empty(), "{name}: a verdict says why");
        }
    }
    assert!(cases.len() >= 40, "corpus of {}", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// IAM as a table of documents; `deny` answers AccessDenied to everything.
#[derive(Default)]
pub struct FakeIam {
    pub defaults: HashMap<String, String>,
    pub versions: HashMap<(String, String), String>,
    pub trust: String,
    pub attached: Vec<(String, String)>,
    pub inline: HashMap<String, String>,
    pub deny: bool,
    pub calls: Mutex<Vec<String>>,
}

impl FakeIam {
    fn check(&self, call: &'static str) -> Result<(), IamError> {
        self.calls.lock().unwrap().push(call.to_owned());
        if self.deny {
            return Err(IamError {
                call,
                code: Some("AccessDenied".into()),
                message: "User: arn:aws:iam::111122223333:user/rolewatch is not authorized".into(),
                retryable: false,
            });
        }
        Ok(())
    }
    fn missing(call: &'static str) -> IamError {
        IamError {
            call,
            code: Some("NoSuchEntity".into()),
            message: "not found".into(),
            retryable: false,
        }
    }
}

impl IamReader for FakeIam {
    async fn default_version(&self, arn: &str) -> Result<String, IamError> {
        self.check("GetPolicy")?;
        self.defaults
            .get(arn)
            .cloned()
            .ok_or_else(|| Self::missing("GetPolicy"))
    }
    async fn policy_version(&self, arn: &str, v: &str) -> Result<String, IamError> {
        self.check("GetPolicyVersion")?;
        self.versions
            .get(&(arn.to_owned(), v.to_owned()))
            .cloned()
            .ok_or_else(|| Self::missing("GetPolicyVersion"))
    }
    async fn role(&self, name: &str) -> Result<RoleInfo, IamError> {
        self.check("GetRole")?;
        Ok(RoleInfo {
            arn: format!("arn:aws:iam::111122223333:role/{name}"),
            trust_policy: self.trust.clone(),
        })
    }
    async fn attached_policies(&self, _: &str) -> Result<Vec<(String, String)>, IamError> {
        self.check("ListAttachedRolePolicies")?;
        Ok(self.attached.clone())
    }
    async fn inline_policy_names(&self, _: &str) -> Result<Vec<String>, IamError> {
        self.check("ListRolePolicies")?;
        let mut n: Vec<String> = self.inline.keys().cloned().collect();
        n.sort();
        Ok(n)
    }
    async fn inline_policy(&self, _: &str, name: &str) -> Result<String, IamError> {
        self.check("GetRolePolicy")?;
        self.inline
            .get(name)
            .cloned()
            .ok_or_else(|| Self::missing("GetRolePolicy"))
    }
}

pub const POLICY_ARN: &str = "arn:aws:iam::111122223333:policy/AstronomerCrossAccountRole";

fn enc(v: &Value) -> String {
    percent_encoding::utf8_percent_encode(&v.to_string(), percent_encoding::NON_ALPHANUMERIC)
        .to_string()
}

fn read_only() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["ec2:Describe*", "s3:GetObject"], "Resource": "*"}]})
}

fn trust(with_external_id: bool) -> Value {
    let mut s = json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::406882777402:root"}, "Action": "sts:AssumeRole"});
    if with_external_id {
        s["Condition"] = json!({"StringEquals": {"sts:ExternalId": "astro-ext-1"}});
    }
    json!({"Version": "2012-10-17", "Statement": [s]})
}

fn fake() -> FakeIam {
    let mut f = FakeIam {
        trust: enc(&trust(true)),
        attached: vec![("AstronomerCrossAccountRole".into(), POLICY_ARN.into())],
        ..FakeIam::default()
    };
    f.defaults.insert(POLICY_ARN.into(), "v1".into());
    f.versions
        .insert((POLICY_ARN.into(), "v1".into()), enc(&read_only()));
    f.defaults.insert(
        "arn:aws:iam::aws:policy/AdministratorAccess".into(),
        "v1".into(),
    );
    f.versions.insert(
        ("arn:aws:iam::aws:policy/AdministratorAccess".into(), "v1".into()),
        enc(&json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})),
    );
    f
}

fn analyzer(iam: FakeIam) -> Analyzer<FakeIam> {
    Analyzer {
        iam,
        vendor: VendorConfig::default(),
        budget: std::time::Duration::from_secs(10),
    }
}

pub fn event(name: &str, actor_arn: &str, params: Value, response: Value) -> StoredAlert {
    let record = json!({
        "eventName": name, "eventSource": "iam.amazonaws.com", "eventID": format!("ev-{name}"),
        "userIdentity": {"type": "AssumedRole", "arn": actor_arn, "accountId": "111122223333"},
        "requestParameters": params, "responseElements": response,
    });
    StoredAlert {
        id: 1,
        rule: "documented".into(),
        severity: "medium".into(),
        event_id: format!("ev-{name}"),
        event_name: name.into(),
        event_time_ms: 0,
        source_id: "t".into(),
        detected_ms: 0,
        record: record.to_string(),
        ..StoredAlert::default()
    }
}

const VENDOR_ARN: &str =
    "arn:aws:sts::111122223333:assumed-role/astronomer-remote-management/astro";
const ALICE: &str = "arn:aws:sts::111122223333:assumed-role/admin/alice";

async fn base(iam: &FakeIam) -> Baseline {
    baseline::snapshot(iam, &VendorConfig::default(), 1000)
        .await
        .unwrap()
}

#[tokio::test]
async fn create_policy_version_against_the_previous_default() {
    let mut iam = fake();
    let wide = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["ec2:*", "s3:GetObject"], "Resource": "*"}]});
    let b = base(&iam).await;
    // The new version became the default.
    iam.defaults.insert(POLICY_ARN.into(), "v2".into());
    iam.versions
        .insert((POLICY_ARN.into(), "v2".into()), enc(&wide));
    let a = analyzer(iam);
    let ev = event(
        "CreatePolicyVersion",
        VENDOR_ARN,
        json!({"policyArn": POLICY_ARN, "policyDocument": wide.to_string(), "setAsDefault": true}),
        json!({"policyVersion": {"versionId": "v2", "isDefaultVersion": true}}),
    );
    let out = a.analyze(&ev, Some(&b), 2000).await;
    assert_eq!(out.verdict, Verdict::Widened, "{out:?}");
    assert_eq!(out.severity, "high");
    assert_eq!(out.actor_class.as_str(), "vendor");
    assert!(
        out.compared
            .as_deref()
            .unwrap()
            .contains("baseline's default version v1"),
        "{out:?}"
    );
    assert_eq!(out.statements.len(), 1);
    assert_eq!(out.statements[0].actions_added, ["ec2:*"]);
    assert_eq!(out.statements[0].actions_removed, ["ec2:describe*"]);
    let bl = out.baseline.unwrap();
    assert_eq!(bl.differences.len(), 1, "{bl:?}");
    assert!(bl.differences[0].contains("v1 → v2 (widened)"), "{bl:?}");

    // Without a baseline: the version before, by number.
    let out = a.analyze(&ev, None, 2000).await;
    assert_eq!(out.verdict, Verdict::Widened);
    assert!(out
        .compared
        .unwrap()
        .contains("assumed to be the previous default"));
}

#[tokio::test]
async fn vendor_narrowing_is_info() {
    let mut iam = fake();
    let b = base(&iam).await;
    let narrow =
        json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]});
    iam.versions
        .insert((POLICY_ARN.into(), "v2".into()), enc(&narrow));
    let ev = event(
        "SetDefaultPolicyVersion",
        VENDOR_ARN,
        json!({"policyArn": POLICY_ARN, "versionId": "v2"}),
        Value::Null,
    );
    iam.defaults.insert(POLICY_ARN.into(), "v2".into());
    let out = analyzer(iam).analyze(&ev, Some(&b), 2000).await;
    assert_eq!(out.verdict, Verdict::Narrowed, "{out:?}");
    assert_eq!(out.severity, "info");
    // The same by someone of yours, not allowlisted: high.
    let mut iam = fake();
    iam.versions
        .insert((POLICY_ARN.into(), "v2".into()), enc(&narrow));
    let ev = event(
        "SetDefaultPolicyVersion",
        ALICE,
        json!({"policyArn": POLICY_ARN, "versionId": "v2"}),
        Value::Null,
    );
    let out = analyzer(iam).analyze(&ev, Some(&b), 2000).await;
    assert_eq!(
        (out.verdict, out.severity.as_str(), out.actor_class.as_str()),
        (Verdict::Narrowed, "high", "yours")
    );
    assert!(out.severity_reason.contains("allowed_principals"));
}

#[tokio::test]
async fn attach_and_detach() {
    let iam = fake();
    let b = base(&iam).await;
    let a = analyzer(iam);
    let admin = "arn:aws:iam::aws:policy/AdministratorAccess";
    let ev = event(
        "AttachRolePolicy",
        ALICE,
        json!({"roleName": "astronomer-remote-management", "policyArn": admin}),
        Value::Null,
    );
    let out = a.analyze(&ev, Some(&b), 2000).await;
    assert_eq!(out.verdict, Verdict::Widened);
    assert!(
        out.flags
            .iter()
            .any(|f| f.contains("high-risk AWS-managed policy")),
        "{out:?}"
    );
    let ev = event(
        "DetachRolePolicy",
        VENDOR_ARN,
        json!({"roleName": "astronomer-remote-management", "policyArn": POLICY_ARN}),
        Value::Null,
    );
    let out = a.analyze(&ev, Some(&b), 2000).await;
    assert_eq!(
        (out.verdict, out.severity.as_str()),
        (Verdict::Narrowed, "info")
    );
}

#[tokio::test]
async fn inline_and_trust() {
    let iam = fake();
    let b = base(&iam).await;
    let a = analyzer(iam);
    let doc =
        json!({"Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]});
    let ev = event(
        "PutRolePolicy",
        VENDOR_ARN,
        json!({"roleName": "astronomer-remote-management", "policyName": "extra", "policyDocument": doc.to_string()}),
        Value::Null,
    );
    let out = a.analyze(&ev, Some(&b), 2000).await;
    assert_eq!(out.verdict, Verdict::Widened);
    assert_eq!(out.statements[0].change, "added");
    let ev = event(
        "DeleteRolePolicy",
        VENDOR_ARN,
        json!({"roleName": "astronomer-remote-management", "policyName": "extra"}),
        Value::Null,
    );
    let out = a.analyze(&ev, Some(&b), 2000).await;
    assert_eq!(
        out.verdict,
        Verdict::Unchanged,
        "it was not in the baseline: {out:?}"
    );

    let new_trust = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::406882777402:root", "arn:aws:iam::999988887777:root"]}, "Action": "sts:AssumeRole"}]});
    let ev = event(
        "UpdateAssumeRolePolicy",
        ALICE,
        json!({"roleName": "astronomer-remote-management", "policyDocument": new_trust.to_string()}),
        Value::Null,
    );
    let out = a.analyze(&ev, Some(&b), 2000).await;
    assert_eq!(out.verdict, Verdict::Widened);
    assert!(
        out.flags.iter().any(|f| f.contains("sts:ExternalId")),
        "{:?}",
        out.flags
    );
    assert!(
        out.flags.iter().any(|f| f.contains("999988887777")),
        "{:?}",
        out.flags
    );
    // Without a baseline the trust policy before is unknown.
    let out = a.analyze(&ev, None, 2000).await;
    assert!(out.diff_unavailable.unwrap().contains("no baseline"));
}

#[tokio::test]
async fn access_denied_leaves_the_event() {
    let iam = FakeIam {
        deny: true,
        ..fake()
    };
    let a = analyzer(iam);
    let ev = event(
        "AttachRolePolicy",
        ALICE,
        json!({"roleName": "astronomer-remote-management", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
        Value::Null,
    );
    let out = a.analyze(&ev, None, 2000).await;
    assert!(
        out.diff_unavailable
            .as_deref()
            .unwrap()
            .starts_with("no IAM read access"),
        "{out:?}"
    );
    assert_eq!(
        out.verdict,
        Verdict::Widened,
        "a high-risk attach is widening by itself"
    );
    let ev = event(
        "CreatePolicyVersion",
        ALICE,
        json!({"policyArn": POLICY_ARN, "policyDocument": "{}"}),
        Value::Null,
    );
    let out = a.analyze(&ev, None, 2000).await;
    assert_eq!(out.verdict, Verdict::Unknown);
    assert_eq!(out.severity, "high", "yours, not allowlisted");
}

/// IAM that never answers: the analysis still ends within its budget.
struct Stuck;
impl IamReader for Stuck {
    async fn default_version(&self, _: &str) -> Result<String, IamError> {
        std::future::pending().await
    }
    async fn policy_version(&self, _: &str, _: &str) -> Result<String, IamError> {
        std::future::pending().await
    }
    async fn role(&self, _: &str) -> Result<RoleInfo, IamError> {
        std::future::pending().await
    }
    async fn attached_policies(&self, _: &str) -> Result<Vec<(String, String)>, IamError> {
        std::future::pending().await
    }
    async fn inline_policy_names(&self, _: &str) -> Result<Vec<String>, IamError> {
        std::future::pending().await
    }
    async fn inline_policy(&self, _: &str, _: &str) -> Result<String, IamError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_stuck_iam_costs_the_budget_and_no_more() {
    let a = Analyzer {
        iam: Stuck,
        vendor: VendorConfig::default(),
        budget: std::time::Duration::from_secs(10),
    };
    let ev = event(
        "AttachRolePolicy",
        VENDOR_ARN,
        json!({"policyArn": POLICY_ARN}),
        Value::Null,
    );
    let start = tokio::time::Instant::now();
    let out = a.analyze(&ev, None, 0).await;
    assert_eq!(start.elapsed(), std::time::Duration::from_secs(10));
    assert_eq!(
        out.diff_unavailable.as_deref(),
        Some("IAM did not answer within 10 s")
    );
}

#[tokio::test]
async fn a_failed_call_changed_nothing() {
    let iam = FakeIam {
        deny: true,
        ..fake()
    };
    let mut ev = event(
        "AttachRolePolicy",
        ALICE,
        json!({"policyArn": POLICY_ARN}),
        Value::Null,
    );
    let mut r: Value = serde_json::from_str(&ev.record).unwrap();
    r["errorCode"] = json!("AccessDenied");
    ev.record = r.to_string();
    let a = analyzer(iam);
    let out = a.analyze(&ev, None, 0).await;
    assert_eq!(out.verdict, Verdict::Unchanged);
    assert!(
        a.iam.calls.lock().unwrap().is_empty(),
        "no IAM call for a failed event"
    );
}

/// IAM that is denied is asked for a baseline once, then not again before the retry delay.
#[tokio::test]
async fn a_failed_baseline_waits_before_the_next_try() {
    let dir = tempfile::tempdir().unwrap();
    let state = match crate::state::State::open(&dir.path().join("state.db")).unwrap() {
        crate::state::Opened::Fresh(s) | crate::state::Opened::Existing(s) => s,
    };
    let clock = std::sync::Arc::new(crate::time::FixedClock::new(1_000_000));
    let iam = FakeIam {
        deny: true,
        ..fake()
    };
    let worker = super::worker::Worker::new(
        analyzer(iam),
        crate::state::Store::new(state),
        clock.clone(),
    );
    let calls = |w: &super::worker::Worker<FakeIam>| w.analyzer.iam.calls.lock().unwrap().len();
    worker.baseline_if_due().await;
    let first = calls(&worker);
    assert!(first >= 1, "the first baseline asks IAM");
    worker.baseline_if_due().await;
    clock.set(1_000_000 + 299_000);
    worker.baseline_if_due().await;
    assert_eq!(calls(&worker), first, "no new try within 5 minutes");
    clock.set(1_000_000 + 300_000);
    worker.baseline_if_due().await;
    assert!(calls(&worker) > first, "tried again after 5 minutes");
}
