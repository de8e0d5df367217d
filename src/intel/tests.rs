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
        expect: Vec::new(),
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
        // After the baselines the tests take (at 1000).
        event_time_ms: 1_500,
        source_id: "t".into(),
        detected_ms: 1_500,
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
        out.compared.as_deref().unwrap().contains(
            "against the last known default version v1 (the baseline of 1970-01-01T00:00:01Z)"
        ),
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
    // Deleting it without knowing it was added: its document before is unknown, and the
    // alert says so truthfully.
    let ev = event(
        "DeleteRolePolicy",
        VENDOR_ARN,
        json!({"roleName": "astronomer-remote-management", "policyName": "extra"}),
        Value::Null,
    );
    let out = a.analyze(&ev, Some(&b), 2000).await;
    assert_eq!(out.verdict, Verdict::Unknown, "{out:?}");
    assert_eq!(
        out.diff_unavailable.as_deref(),
        Some("the last known state (the baseline of 1970-01-01T00:00:01Z) has no inline policy extra: its document before the deletion is unknown")
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
        expect: Vec::new(),
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

/// `ev` as the change `id` at `time_ms`.
fn at(mut ev: StoredAlert, id: &str, time_ms: i64) -> StoredAlert {
    ev.event_id = id.to_owned();
    ev.event_time_ms = time_ms;
    ev
}

/// Runs `ev` against `known` and the baseline `b`, as the worker does; returns the analysis
/// and the last known state after it.
async fn step(
    a: &Analyzer<FakeIam>,
    ev: &StoredAlert,
    known: &crate::intel::known::LastKnown,
    b: &Baseline,
) -> (
    crate::intel::Analysis,
    Option<crate::intel::known::LastKnown>,
) {
    let out = a
        .analyze_within(
            ev,
            super::analysis::Before {
                last_known: Some(known),
                baseline: Some(b),
            },
            ev.event_time_ms + 100,
            super::analysis::Within {
                budget: a.budget,
                offline: None,
                current: None,
            },
        )
        .await;
    (out.analysis, out.last_known)
}

/// Regression (issue 17): the vendor narrowed its policy (v1 → v2, info), then set v1 as
/// the default again, regaining the removed action. That alert said `unknown` with the false
/// reason "no baseline was taken before the change" (the baseline's default was v1 too) and
/// went out at the rule's severity. Against the moment before, it widened.
#[tokio::test]
async fn setting_the_baselines_version_back_is_judged_against_the_moment_before() {
    use crate::intel::known::LastKnown;
    let mut iam = fake();
    let b = base(&iam).await;
    let narrow = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]});
    iam.versions
        .insert((POLICY_ARN.into(), "v2".into()), enc(&narrow));
    iam.defaults.insert(POLICY_ARN.into(), "v1".into());
    let a = analyzer(iam);
    let known = LastKnown::from_baseline(&b);

    let ev = at(
        event(
            "CreatePolicyVersion",
            VENDOR_ARN,
            json!({"policyArn": POLICY_ARN, "policyDocument": narrow.to_string(), "setAsDefault": true}),
            json!({"policyVersion": {"versionId": "v2", "isDefaultVersion": true}}),
        ),
        "narrow",
        2_000,
    );
    let (out, known) = step(&a, &ev, &known, &b).await;
    assert_eq!(
        (out.verdict, out.severity.as_str()),
        (Verdict::Narrowed, "info"),
        "{out:?}"
    );
    assert_eq!(
        out.compared.as_deref(),
        Some("the new default version v2 (from the event) against the last known default version v1 (the baseline of 1970-01-01T00:00:01Z)")
    );
    assert_eq!(
        out.reasons,
        ["grants less (Allow removed or restricted): Allow ec2:describe* on *"]
    );
    let known = known.expect("the change is applied");
    assert_eq!(
        known
            .role
            .managed(POLICY_ARN)
            .unwrap()
            .default_version_id
            .as_deref(),
        Some("v2")
    );
    assert_eq!(known.from_event.as_deref(), Some("narrow"));

    // The default set back to v1, the baseline's version: widened against v2.
    let set_v1 = |id: &str, t: i64| {
        at(
            event(
                "SetDefaultPolicyVersion",
                VENDOR_ARN,
                json!({"policyArn": POLICY_ARN, "versionId": "v1"}),
                Value::Null,
            ),
            id,
            t,
        )
    };
    let (out, after_back) = step(&a, &set_v1("back", 3_000), &known, &b).await;
    assert_eq!(
        (out.verdict, out.severity.as_str()),
        (Verdict::Widened, "high"),
        "{out:?}"
    );
    assert_eq!(
        out.compared.as_deref(),
        Some("the new default version v1 (GetPolicyVersion) against the last known default version v2 (after the change of 1970-01-01T00:00:02Z)")
    );
    assert_eq!(
        out.reasons,
        ["grants more (new Allow): Allow ec2:describe* on *"]
    );
    assert_eq!(out.diff_unavailable, None);
    assert!(out.severity_reason.starts_with("access widened"), "{out:?}");
    assert_eq!(
        out.since_baseline,
        Some(super::analysis::SinceBaseline {
            verdict: Verdict::Unchanged,
            compared: "the new default version v1 (GetPolicyVersion) against the baseline's default version v1 (taken 1970-01-01T00:00:01Z)".into(),
        })
    );
    let after_back = after_back.unwrap();

    // v1 again: unchanged, and the reason says why.
    let (out, _) = step(&a, &set_v1("again", 4_000), &after_back, &b).await;
    assert_eq!(out.verdict, Verdict::Unchanged, "{out:?}");
    assert_eq!(out.reasons, ["v1 was already the default version"]);

    // The same second as the change before it: still judged against it.
    let (out, _) = step(&a, &set_v1("same-second", 3_000), &after_back, &b).await;
    assert_eq!(out.verdict, Verdict::Unchanged, "{out:?}");

    // A change older than the last known state: no false comparison.
    let (out, last) = step(&a, &set_v1("older", 1_900), &known, &b).await;
    assert_eq!(out.verdict, Verdict::Unknown, "{out:?}");
    assert_eq!(
        out.diff_unavailable.as_deref(),
        Some("the previous default version is unknown: the last known state (after the change of 1970-01-01T00:00:02Z) is not older than the change")
    );
    assert!(last.is_none(), "the last known state is left as it is");
}

/// Deleting an inline policy added after the baseline narrows; against the baseline (which
/// had none) nothing changed.
#[tokio::test]
async fn deleting_an_inline_policy_added_after_the_baseline_is_narrowed() {
    use crate::intel::known::LastKnown;
    let iam = fake();
    let b = base(&iam).await;
    let a = analyzer(iam);
    let doc =
        json!({"Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]});
    let put = at(
        event(
            "PutRolePolicy",
            ALICE,
            json!({"roleName": "astronomer-remote-management", "policyName": "extra", "policyDocument": doc.to_string()}),
            Value::Null,
        ),
        "put",
        2_000,
    );
    let (out, known) = step(&a, &put, &LastKnown::from_baseline(&b), &b).await;
    assert_eq!(
        (out.verdict, out.severity.as_str()),
        (Verdict::Widened, "high")
    );
    assert_eq!(
        out.compared.as_deref(),
        Some("the inline policy extra (from the event) against nothing (the last known state (the baseline of 1970-01-01T00:00:01Z) has no inline policy extra)")
    );
    let delete = at(
        event(
            "DeleteRolePolicy",
            VENDOR_ARN,
            json!({"roleName": "astronomer-remote-management", "policyName": "extra"}),
            Value::Null,
        ),
        "delete",
        3_000,
    );
    let (out, known) = step(&a, &delete, &known.unwrap(), &b).await;
    assert_eq!(
        (out.verdict, out.severity.as_str()),
        (Verdict::Narrowed, "info"),
        "{out:?}"
    );
    assert_eq!(
        out.compared.as_deref(),
        Some("nothing (the inline policy extra was deleted) against the last known inline policy extra (after the change of 1970-01-01T00:00:02Z)")
    );
    assert_eq!(
        out.reasons,
        ["grants less (Allow removed or restricted): Allow iam:passrole on *"]
    );
    assert_eq!(
        out.since_baseline.as_ref().map(|s| s.verdict),
        Some(Verdict::Unchanged)
    );
    assert!(known.unwrap().role.inline.is_empty());
}

/// Replaced trust, attach and detach, and a deleted version, each against the moment before.
#[tokio::test]
async fn each_kind_against_the_moment_before() {
    use crate::intel::known::LastKnown;
    let iam = fake();
    let b = base(&iam).await;
    let a = analyzer(iam);
    let admin = "arn:aws:iam::aws:policy/AdministratorAccess";
    let attach = at(
        event(
            "AttachRolePolicy",
            ALICE,
            json!({"roleName": "astronomer-remote-management", "policyArn": admin}),
            Value::Null,
        ),
        "attach",
        2_000,
    );
    let (out, known) = step(&a, &attach, &LastKnown::from_baseline(&b), &b).await;
    assert_eq!(out.verdict, Verdict::Widened);
    assert_eq!(
        out.compared.as_deref(),
        Some("the policy's default version v1 (GetPolicyVersion), attached, against nothing (it is not attached in the last known state (the baseline of 1970-01-01T00:00:01Z))")
    );
    let known = known.unwrap();
    assert_eq!(known.role.attached.len(), 2);
    // Attached again: it already was.
    let again = at(attach.clone(), "attach-again", 2_500);
    let (out, _) = step(&a, &again, &known, &b).await;
    assert_eq!(out.verdict, Verdict::Unchanged, "{out:?}");
    let detach = at(
        event(
            "DetachRolePolicy",
            VENDOR_ARN,
            json!({"roleName": "astronomer-remote-management", "policyArn": admin}),
            Value::Null,
        ),
        "detach",
        3_000,
    );
    let (out, known) = step(&a, &detach, &known, &b).await;
    assert_eq!(
        (out.verdict, out.severity.as_str()),
        (Verdict::Narrowed, "info")
    );
    assert_eq!(
        out.compared.as_deref(),
        Some("nothing (detached) against the policy as attached in the last known state (after the change of 1970-01-01T00:00:02Z) (default version v1)")
    );
    let known = known.unwrap();
    assert_eq!(known.role.attached.len(), 1);

    let open = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::406882777402:root"}, "Action": "sts:AssumeRole"}]});
    let mut trust_ev = at(
        event(
            "UpdateAssumeRolePolicy",
            ALICE,
            json!({"roleName": "astronomer-remote-management", "policyDocument": open.to_string()}),
            Value::Null,
        ),
        "trust",
        4_000,
    );
    let mut r: Value = serde_json::from_str(&trust_ev.record).unwrap();
    r["userIdentity"]["invokedBy"] = json!("signin.amazonaws.com");
    trust_ev.record = r.to_string();
    let (out, known) = step(&a, &trust_ev, &known, &b).await;
    assert_eq!(
        (
            out.verdict,
            out.severity.as_str(),
            out.actor_class.as_str(),
            out.via.as_deref()
        ),
        (Verdict::Widened, "high", "yours", Some("the console")),
        "{out:?}"
    );
    assert_eq!(
        out.compared.as_deref(),
        Some("the new trust policy (from the event) against the last known trust policy (after the change of 1970-01-01T00:00:03Z)")
    );
    assert!(
        out.flags.iter().any(|f| f.contains("sts:ExternalId")),
        "{out:?}"
    );
    let known = known.unwrap();

    let delete_version = at(
        event(
            "DeletePolicyVersion",
            VENDOR_ARN,
            json!({"policyArn": POLICY_ARN, "versionId": "v2"}),
            Value::Null,
        ),
        "delete-version",
        5_000,
    );
    let (out, after) = step(&a, &delete_version, &known, &b).await;
    assert_eq!(
        (out.verdict, out.severity.as_str()),
        (Verdict::Unchanged, "medium"),
        "{out:?}"
    );
    assert_eq!(
        out.reasons,
        ["IAM deletes only a version that is not the default: deleting v2 did not change what the policy allows"]
    );
    assert!(after.is_none(), "nothing to apply");

    // A change that cannot be read leaves the state incomplete, and the next change says so.
    let a_denied = analyzer(FakeIam {
        deny: true,
        ..fake()
    });
    let put = at(
        event(
            "PutRolePolicy",
            VENDOR_ARN,
            json!({"roleName": "astronomer-remote-management", "policyName": "x"}),
            Value::Null,
        ),
        "put-unreadable",
        6_000,
    );
    let (out, known) = step(&a_denied, &put, &known, &b).await;
    assert!(
        out.diff_unavailable
            .as_deref()
            .unwrap()
            .starts_with("no IAM read access"),
        "{out:?}"
    );
    let known = known.unwrap();
    assert!(known.incomplete.is_some());
    let (out, _) = step(&a, &at(trust_ev.clone(), "trust-2", 7_000), &known, &b).await;
    assert_eq!(out.verdict, Verdict::Unknown);
    assert!(
        out.diff_unavailable.as_deref().unwrap().starts_with(
            "the previous trust policy is unknown: the last known state is incomplete: the change of 1970-01-01T00:00:06Z could not be read (no IAM read access"
        ),
        "{out:?}"
    );
}

/// `[[expect]]` in the analysis: an announced widening naming its document is `info`,
/// marked; one that does not name the document keeps its severity and says why; outside the
/// window, or another actor, nothing changes.
#[tokio::test]
async fn an_announced_change_is_marked_expected() {
    use crate::config::Expectation;
    use crate::intel::expect::document_sha256;
    let wide = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["ec2:*", "s3:GetObject"], "Resource": "*"}]});
    let b = base(&fake()).await;
    let after = || {
        let mut iam = fake();
        iam.defaults.insert(POLICY_ARN.into(), "v2".into());
        iam.versions
            .insert((POLICY_ARN.into(), "v2".into()), enc(&wide));
        iam
    };
    let ev = event(
        "CreatePolicyVersion",
        VENDOR_ARN,
        json!({"policyArn": POLICY_ARN, "policyDocument": wide.to_string(), "setAsDefault": true}),
        json!({"policyVersion": {"versionId": "v2", "isDefaultVersion": true}}),
    );
    let entry = Expectation {
        description: "vendor notice: v2 adds ec2:*".into(),
        from_ms: 1_000,
        until_ms: 2_000,
        event_names: vec!["CreatePolicyVersion".into()],
        policy: Some("AstronomerCrossAccountRole".into()),
        default_version: Some("v2".into()),
        document_sha256: None,
        actor_class: Some("vendor".into()),
        principals: Vec::new(),
    };
    let with = |e: Vec<Expectation>| Analyzer {
        expect: e,
        ..analyzer(after())
    };

    // Naming the document: within the announcement.
    let pinned = Expectation {
        document_sha256: Some(document_sha256(&wide)),
        ..entry.clone()
    };
    let out = with(vec![pinned]).analyze(&ev, Some(&b), 2000).await;
    assert_eq!(out.verdict, Verdict::Widened);
    assert_eq!(out.severity, "info", "{out:?}");
    let note = out.expected.as_ref().expect("marked");
    assert_eq!(note.description, "vendor notice: v2 adds ec2:*");
    assert_eq!(note.beyond, None);
    assert!(
        out.severity_reason
            .starts_with("expected (vendor notice: v2 adds ec2:*): info (without it: high,"),
        "{}",
        out.severity_reason
    );

    // Not naming it: marked, but a widening keeps its severity.
    let out = with(vec![entry.clone()]).analyze(&ev, Some(&b), 2000).await;
    assert_eq!(out.severity, "high", "{out:?}");
    let note = out.expected.as_ref().expect("marked");
    assert!(note.beyond.as_deref().is_some_and(|w| w.contains("widens")));
    assert!(
        out.severity_reason.contains("but it widens access"),
        "{}",
        out.severity_reason
    );

    // Another document than the one named: not the announced change.
    let other = Expectation {
        document_sha256: Some(document_sha256(&read_only())),
        ..entry.clone()
    };
    let out = with(vec![other]).analyze(&ev, Some(&b), 2000).await;
    assert_eq!(
        (out.expected.is_none(), out.severity.as_str()),
        (true, "high")
    );

    // Outside the window; and someone else than the vendor.
    let later = Expectation {
        from_ms: 1_600,
        ..entry.clone()
    };
    let out = with(vec![later]).analyze(&ev, Some(&b), 2000).await;
    assert!(out.expected.is_none(), "{out:?}");
    let by_alice = event(
        "CreatePolicyVersion",
        ALICE,
        json!({"policyArn": POLICY_ARN, "policyDocument": wide.to_string(), "setAsDefault": true}),
        json!({"policyVersion": {"versionId": "v2", "isDefaultVersion": true}}),
    );
    let out = with(vec![entry]).analyze(&by_alice, Some(&b), 2000).await;
    assert!(out.expected.is_none(), "{out:?}");
    assert_eq!(out.severity, "high");
}
