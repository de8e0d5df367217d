//! The change analysis against moto's IAM: the role, the vendor's managed policy and its
//! versions are created in moto, then the CloudTrail events of each kind are analysed with the
//! real IAM client (`AwsIam`) pointed at moto; and a denied IAM leaves "diff unavailable".

use std::time::Duration;

use rolewatch::config::VendorConfig;
use rolewatch::intel::baseline;
use rolewatch::intel::iam::AwsIam;
use rolewatch::intel::{Analyzer, Verdict};
use rolewatch::state::StoredAlert;
use serde_json::{json, Value};

use crate::support::{attach_new_policy, sdk_config, Moto};

const ROLE: &str = "astronomer-remote-management";
const VENDOR_SESSION: &str =
    "arn:aws:sts::123456789012:assumed-role/astronomer-remote-management/astro-ops";
const ALICE: &str = "arn:aws:sts::123456789012:assumed-role/admin/alice";

fn trust(external_id: bool) -> Value {
    let mut s = json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::406882777402:root"},
        "Action": "sts:AssumeRole"});
    if external_id {
        s["Condition"] = json!({"StringEquals": {"sts:ExternalId": "astro-ext-1"}});
    }
    json!({"Version": "2012-10-17", "Statement": [s]})
}

fn doc(actions: &[&str]) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})
}

fn event(name: &str, actor: &str, params: Value, response: Value, time_ms: i64) -> StoredAlert {
    let record = json!({"eventName": name, "eventSource": "iam.amazonaws.com",
        "eventID": format!("ev-{name}"), "userIdentity": {"type": "AssumedRole", "arn": actor,
        "accountId": "123456789012"}, "requestParameters": params, "responseElements": response});
    StoredAlert {
        id: 1,
        rule: "documented".into(),
        severity: "medium".into(),
        event_id: format!("ev-{name}"),
        event_name: name.into(),
        event_time_ms: time_ms,
        source_id: "lookup".into(),
        detected_ms: time_ms,
        record: record.to_string(),
        ..Default::default()
    }
}

/// The vendor's role in moto (trust with an ExternalId) with the vendor's managed policy
/// allowing `actions` attached: the SDK config, an IAM client and the policy's ARN.
async fn vendor_role(
    moto: &Moto,
    actions: &[&str],
) -> (aws_config::SdkConfig, aws_sdk_iam::Client, String) {
    let sdk = sdk_config(&moto.endpoint()).await;
    let admin = aws_sdk_iam::Client::new(&sdk);
    admin
        .create_role()
        .role_name(ROLE)
        .assume_role_policy_document(trust(true).to_string())
        .send()
        .await
        .unwrap();
    let policy_arn =
        attach_new_policy(&admin, ROLE, "AstronomerCrossAccountRole", &doc(actions)).await;
    (sdk, admin, policy_arn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_against_moto_iam() {
    let moto = Moto::start();
    let (sdk, admin, policy_arn) = vendor_role(&moto, &["ec2:Describe*", "s3:GetObject"]).await;

    let vendor = VendorConfig::default();
    let analyzer = Analyzer {
        iam: AwsIam::new(&sdk),
        vendor: vendor.clone(),
        budget: Duration::from_secs(10),
        expect: Vec::new(),
    };
    let base = baseline::snapshot(&analyzer.iam, &vendor, 1_000)
        .await
        .unwrap();
    assert_eq!(base.attached.len(), 1);
    assert_eq!(
        base.managed_policy
            .as_ref()
            .unwrap()
            .default_version_id
            .as_deref(),
        Some("v1")
    );
    assert!(
        base.trust_policy.as_ref().unwrap()["Statement"][0]["Condition"].is_object(),
        "the URL-encoded trust policy is decoded: {:?}",
        base.trust_policy
    );

    // CreatePolicyVersion, set as default: v2 widens (ec2:* instead of ec2:Describe*).
    let wide = doc(&["ec2:*", "s3:GetObject"]);
    admin
        .create_policy_version()
        .policy_arn(&policy_arn)
        .policy_document(wide.to_string())
        .set_as_default(true)
        .send()
        .await
        .unwrap();
    let ev = event(
        "CreatePolicyVersion",
        VENDOR_SESSION,
        json!({"policyArn": policy_arn, "policyDocument": wide.to_string(), "setAsDefault": true}),
        json!({"policyVersion": {"versionId": "v2", "isDefaultVersion": true}}),
        2_000,
    );
    let a = analyzer.analyze(&ev, Some(&base), 3_000).await;
    assert_eq!(
        (a.verdict, a.severity.as_str(), a.actor_class.as_str()),
        (Verdict::Widened, "high", "vendor"),
        "{a:#?}"
    );
    assert_eq!(a.statements[0].actions_added, ["ec2:*"]);
    let differences = &a.baseline.as_ref().unwrap().differences;
    assert!(
        differences.iter().any(|d| d.contains("v1 → v2 (widened)")),
        "{differences:?}"
    );

    // CreatePolicyVersion not set as default: compared with the default (GetPolicy).
    let narrow = doc(&["s3:GetObject"]);
    admin
        .create_policy_version()
        .policy_arn(&policy_arn)
        .policy_document(narrow.to_string())
        .set_as_default(false)
        .send()
        .await
        .unwrap();
    let ev = event(
        "CreatePolicyVersion",
        VENDOR_SESSION,
        json!({"policyArn": policy_arn, "policyDocument": narrow.to_string(), "setAsDefault": false}),
        json!({"policyVersion": {"versionId": "v3", "isDefaultVersion": false}}),
        4_000,
    );
    // The moment before this change is the role after v2 (this test does not chain the
    // last known state: `a_chain_of_changes_is_judged_against_the_moment_before_each` does).
    let after_v2 = baseline::snapshot(&analyzer.iam, &vendor, 3_500)
        .await
        .unwrap();
    let a = analyzer.analyze(&ev, Some(&after_v2), 5_000).await;
    assert_eq!(a.verdict, Verdict::Narrowed, "{a:#?}");
    assert!(
        a.compared
            .as_deref()
            .unwrap()
            .contains("default version v2"),
        "{a:#?}"
    );
    assert!(a.flags.iter().any(|f| f.contains("not set as default")));

    // SetDefaultPolicyVersion v3 by the vendor: narrowed against the baseline's v1, info.
    admin
        .set_default_policy_version()
        .policy_arn(&policy_arn)
        .version_id("v3")
        .send()
        .await
        .unwrap();
    let ev = event(
        "SetDefaultPolicyVersion",
        VENDOR_SESSION,
        json!({"policyArn": policy_arn, "versionId": "v3"}),
        Value::Null,
        6_000,
    );
    let a = analyzer.analyze(&ev, Some(&base), 7_000).await;
    assert_eq!(
        (a.verdict, a.severity.as_str()),
        (Verdict::Narrowed, "info"),
        "{a:#?}"
    );

    // AttachRolePolicy of a broad policy of your own, by someone of yours (AdministratorAccess
    // itself: `attaching_administrator_access_is_flagged_with_its_document`).
    let admin_access = attach_new_policy(&admin, ROLE, "BroadAccess", &doc(&["*"])).await;
    let ev = event(
        "AttachRolePolicy",
        ALICE,
        json!({"roleName": ROLE, "policyArn": admin_access}),
        Value::Null,
        8_000,
    );
    let a = analyzer.analyze(&ev, Some(&base), 9_000).await;
    assert_eq!(
        (a.verdict, a.severity.as_str(), a.actor_class.as_str()),
        (Verdict::Widened, "high", "yours"),
        "{a:#?}"
    );
    assert!(a
        .baseline
        .as_ref()
        .unwrap()
        .differences
        .iter()
        .any(|d| d.contains("attached since the baseline")));

    // DetachRolePolicy of it again.
    admin
        .detach_role_policy()
        .role_name(ROLE)
        .policy_arn(&admin_access)
        .send()
        .await
        .unwrap();
    let ev = event(
        "DetachRolePolicy",
        ALICE,
        json!({"roleName": ROLE, "policyArn": admin_access}),
        Value::Null,
        10_000,
    );
    assert_eq!(
        analyzer.analyze(&ev, Some(&base), 11_000).await.verdict,
        Verdict::Narrowed
    );

    // PutRolePolicy: an inline policy the baseline did not have.
    let inline = doc(&["iam:PassRole"]);
    admin
        .put_role_policy()
        .role_name(ROLE)
        .policy_name("extra")
        .policy_document(inline.to_string())
        .send()
        .await
        .unwrap();
    let ev = event(
        "PutRolePolicy",
        VENDOR_SESSION,
        json!({"roleName": ROLE, "policyName": "extra", "policyDocument": inline.to_string()}),
        Value::Null,
        12_000,
    );
    let a = analyzer.analyze(&ev, Some(&base), 13_000).await;
    assert_eq!(a.verdict, Verdict::Widened, "{a:#?}");
    assert!(a
        .baseline
        .as_ref()
        .unwrap()
        .differences
        .iter()
        .any(|d| d.contains("inline policy added")));

    // UpdateAssumeRolePolicy dropping the external ID.
    admin
        .update_assume_role_policy()
        .role_name(ROLE)
        .policy_document(trust(false).to_string())
        .send()
        .await
        .unwrap();
    let ev = event(
        "UpdateAssumeRolePolicy",
        ALICE,
        json!({"roleName": ROLE, "policyDocument": trust(false).to_string()}),
        Value::Null,
        14_000,
    );
    let a = analyzer.analyze(&ev, Some(&base), 15_000).await;
    assert_eq!(a.verdict, Verdict::Widened, "{a:#?}");
    assert!(
        a.flags.iter().any(|f| f.contains("sts:ExternalId")),
        "{a:#?}"
    );
}

/// IAM that cannot be reached: the analysis ends within its 10 s budget, keeps what the event
/// says and says why the diff is unavailable. (AccessDenied is covered by the unit tests with
/// a fake IAM: moto allows every call unless its authentication is switched on.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_iam_the_diff_is_unavailable() {
    // Nothing listens on port 9 of loopback: every call fails fast.
    let sdk = sdk_config("http://127.0.0.1:9").await;
    let analyzer = Analyzer {
        iam: AwsIam::new(&sdk),
        vendor: VendorConfig::default(),
        budget: Duration::from_secs(10),
        expect: Vec::new(),
    };
    let ev = event(
        "CreatePolicyVersion",
        ALICE,
        json!({"policyArn": "arn:aws:iam::123456789012:policy/AstronomerCrossAccountRole", "policyDocument": doc(&["*"]).to_string()}),
        Value::Null,
        2_000,
    );
    let started = std::time::Instant::now();
    let a = analyzer.analyze(&ev, None, 3_000).await;
    assert!(started.elapsed() < Duration::from_secs(11));
    assert_eq!(a.verdict, Verdict::Unknown);
    assert!(a.diff_unavailable.is_some(), "{a:#?}");
    assert_eq!(a.severity, "high");
}

/// AttachRolePolicy of the AWS-managed AdministratorAccess (moto loads the AWS-managed policies
/// when told to): flagged high-risk, its default document read from IAM, access widened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaching_administrator_access_is_flagged_with_its_document() {
    let moto = Moto::start_with_env(&[("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")]);
    let (sdk, admin, _) = vendor_role(&moto, &["ec2:Describe*"]).await;
    let analyzer = Analyzer {
        iam: AwsIam::new(&sdk),
        vendor: VendorConfig::default(),
        budget: Duration::from_secs(10),
        expect: Vec::new(),
    };
    let base = baseline::snapshot(&analyzer.iam, &analyzer.vendor, 1_000)
        .await
        .unwrap();
    let administrator = "arn:aws:iam::aws:policy/AdministratorAccess";
    admin
        .attach_role_policy()
        .role_name(ROLE)
        .policy_arn(administrator)
        .send()
        .await
        .expect("moto knows AdministratorAccess with MOTO_IAM_LOAD_MANAGED_POLICIES");
    let ev = event(
        "AttachRolePolicy",
        ALICE,
        json!({"roleName": ROLE, "policyArn": administrator}),
        Value::Null,
        2_000,
    );
    let a = analyzer.analyze(&ev, Some(&base), 3_000).await;
    assert_eq!(
        (a.verdict, a.severity.as_str()),
        (Verdict::Widened, "high"),
        "{a:#?}"
    );
    assert!(
        a.flags
            .iter()
            .any(|f| f.contains("high-risk") && f.contains("AdministratorAccess")),
        "{a:#?}"
    );
    assert_eq!(
        a.diff_unavailable, None,
        "the document came from IAM: {a:#?}"
    );
    let shown = serde_json::to_string(&a.statements).unwrap();
    assert!(
        shown.contains("\"*\""),
        "the statement allows every action: {shown}"
    );
}

/// One step of the chain: a change made in moto's IAM, and its CloudTrail record.
struct Step {
    id: &'static str,
    event: &'static str,
    identity: Value,
    params: Value,
    response: Value,
    /// Verdict and final severity the alert must carry (rule severity: medium).
    verdict: &'static str,
    severity: &'static str,
    /// The start of the `compared` text: what the change was judged against.
    compared: &'static str,
    /// The verdict since the baseline, when the change has one.
    since_baseline: Option<&'static str>,
}

fn vendor_identity() -> Value {
    json!({"type": "AssumedRole", "principalId": "AROAEXAMPLEVENDOR123:astro-ops",
        "arn": VENDOR_SESSION, "accountId": "123456789012",
        "sessionContext": {"sessionIssuer": {"type": "Role",
            "arn": format!("arn:aws:iam::123456789012:role/{ROLE}"),
            "accountId": "123456789012", "userName": ROLE},
            "attributes": {"mfaAuthenticated": "false"}}})
}

fn alice_cli() -> Value {
    json!({"type": "AssumedRole", "principalId": "AROAEXAMPLEADMIN1234:alice", "arn": ALICE,
        "accountId": "123456789012",
        "sessionContext": {"sessionIssuer": {"type": "Role",
            "arn": "arn:aws:iam::123456789012:role/admin", "accountId": "123456789012",
            "userName": "admin"}}})
}

fn alice_console() -> Value {
    json!({"type": "IAMUser", "principalId": "AIDAEXAMPLEALICE1234",
        "arn": "arn:aws:iam::123456789012:user/alice", "accountId": "123456789012",
        "userName": "alice", "invokedBy": "signin.amazonaws.com",
        "sessionContext": {"sessionIssuer": {}, "webIdFederationData": {},
            "attributes": {"creationDate": "2026-12-01T09:00:00Z", "mfaAuthenticated": "true"}}})
}

/// A role's snapshot as compared: the role, its trust policy, its attached policies (by
/// ARN) and inline policies (by name) with their documents, the vendor's policy.
fn comparable(snapshot: &Value) -> Value {
    let sorted = |key: &str, by: &str| {
        let mut items = snapshot[key].as_array().cloned().unwrap_or_default();
        items.sort_by_key(|p| p[by].as_str().unwrap_or_default().to_owned());
        Value::Array(items)
    };
    json!({
        "role_name": snapshot["role_name"],
        "role_arn": snapshot["role_arn"],
        "trust_policy": snapshot["trust_policy"],
        "attached": sorted("attached", "arn"),
        "inline": sorted("inline", "name"),
        "managed_policy": snapshot["managed_policy"],
    })
}

/// Issue 17: a chain of changes — narrow, widen back (to the baseline's version), attach,
/// detach, replace the trust policy (at the console), delete a version, set an old version —
/// made in moto's IAM, their CloudTrail records served one by one to `rolewatch once`
/// through the LookupEvents server. Each alert's verdict and severity follow from the
/// document just before and just after the change (the baseline comparison is the second
/// line), and the last known state left in the state is what `rolewatch baseline` reads.
#[test]
fn a_chain_of_changes_is_judged_against_the_moment_before_each() {
    use crate::support::{
        cloudtrail_record, lines, now_ms, now_secs, open_state, run_with, LookupServer, Setup,
    };
    use crate::{assert_exit, stderr, stdout};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let moto = Moto::start();
    let server = LookupServer::start();
    // v1 allows s3:PutObject too; the baseline's default is v2.
    let v2 = doc(&["ec2:Describe*", "s3:GetObject"]);
    let v3 = doc(&["s3:GetObject"]);
    let extra_doc = doc(&["iam:PassRole"]);
    let (admin, policy_arn, extra_arn) = rt.block_on(async {
        let (_, admin, policy_arn) =
            vendor_role(&moto, &["ec2:Describe*", "s3:GetObject", "s3:PutObject"]).await;
        admin
            .create_policy_version()
            .policy_arn(&policy_arn)
            .policy_document(v2.to_string())
            .set_as_default(true)
            .send()
            .await
            .unwrap();
        let extra_arn = admin
            .create_policy()
            .policy_name("Extra")
            .policy_document(extra_doc.to_string())
            .send()
            .await
            .unwrap()
            .policy()
            .and_then(|p| p.arn())
            .unwrap()
            .to_owned();
        (admin, policy_arn, extra_arn)
    });

    let setup = Setup::new();
    let config = setup.config(
        "[[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\nmax_requests_per_sec = 2\n\n\
         [[rule]]\npack = \"complete\"\nseverity = \"medium\"",
    );
    let out = run_with(None, Some(&moto), &["baseline", "--record"], &config);
    assert_exit(&out, 0);
    let baseline_ms = now_ms();

    let steps = [
        Step {
            id: "1-narrow",
            event: "CreatePolicyVersion",
            identity: vendor_identity(),
            params: json!({"policyArn": policy_arn, "policyDocument": v3.to_string(), "setAsDefault": true}),
            response: json!({"policyVersion": {"versionId": "v3", "isDefaultVersion": true}}),
            verdict: "narrowed",
            severity: "info",
            compared: "the new default version v3 (from the event) against the last known default version v2 (the baseline of ",
            since_baseline: Some("narrowed"),
        },
        Step {
            id: "2-widen-back",
            event: "SetDefaultPolicyVersion",
            identity: vendor_identity(),
            params: json!({"policyArn": policy_arn, "versionId": "v2"}),
            response: Value::Null,
            verdict: "widened",
            severity: "high",
            compared: "the new default version v2 (GetPolicyVersion) against the last known default version v3 (after the change of ",
            since_baseline: Some("unchanged"),
        },
        Step {
            id: "3-attach",
            event: "AttachRolePolicy",
            identity: alice_cli(),
            params: json!({"roleName": ROLE, "policyArn": extra_arn}),
            response: Value::Null,
            verdict: "widened",
            severity: "high",
            compared: "the policy's default version v1 (GetPolicyVersion), attached, against nothing (it is not attached in the last known state (after the change of ",
            since_baseline: Some("widened"),
        },
        Step {
            id: "4-detach",
            event: "DetachRolePolicy",
            identity: vendor_identity(),
            params: json!({"roleName": ROLE, "policyArn": extra_arn}),
            response: Value::Null,
            verdict: "narrowed",
            severity: "info",
            compared: "nothing (detached) against the policy as attached in the last known state (after the change of ",
            since_baseline: Some("unchanged"),
        },
        Step {
            id: "5-trust",
            event: "UpdateAssumeRolePolicy",
            identity: alice_console(),
            params: json!({"roleName": ROLE, "policyDocument": trust(false).to_string()}),
            response: Value::Null,
            verdict: "widened",
            severity: "high",
            compared: "the new trust policy (from the event) against the last known trust policy (after the change of ",
            since_baseline: Some("widened"),
        },
        Step {
            id: "6-delete-version",
            event: "DeletePolicyVersion",
            identity: vendor_identity(),
            params: json!({"policyArn": policy_arn, "versionId": "v3"}),
            response: Value::Null,
            verdict: "unchanged",
            severity: "medium",
            compared: "the deleted version v3, which was not the default",
            since_baseline: None,
        },
        Step {
            id: "7-old-version",
            event: "SetDefaultPolicyVersion",
            identity: vendor_identity(),
            params: json!({"policyArn": policy_arn, "versionId": "v1"}),
            response: Value::Null,
            verdict: "widened",
            severity: "high",
            compared: "the new default version v1 (GetPolicyVersion) against the last known default version v2 (after the change of ",
            since_baseline: Some("widened"),
        },
    ];
    let mut last_secs = baseline_ms / 1000;
    for step in &steps {
        // Make the change in IAM.
        rt.block_on(async {
            let p = &step.params;
            let s = |k: &str| p[k].as_str().unwrap().to_owned();
            match step.event {
                "CreatePolicyVersion" => admin
                    .create_policy_version()
                    .policy_arn(s("policyArn"))
                    .policy_document(s("policyDocument"))
                    .set_as_default(true)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{e:?}")),
                "SetDefaultPolicyVersion" => admin
                    .set_default_policy_version()
                    .policy_arn(s("policyArn"))
                    .version_id(s("versionId"))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{e:?}")),
                "AttachRolePolicy" => admin
                    .attach_role_policy()
                    .role_name(ROLE)
                    .policy_arn(s("policyArn"))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{e:?}")),
                "DetachRolePolicy" => admin
                    .detach_role_policy()
                    .role_name(ROLE)
                    .policy_arn(s("policyArn"))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{e:?}")),
                "UpdateAssumeRolePolicy" => admin
                    .update_assume_role_policy()
                    .role_name(ROLE)
                    .policy_document(s("policyDocument"))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{e:?}")),
                "DeletePolicyVersion" => admin
                    .delete_policy_version()
                    .policy_arn(s("policyArn"))
                    .version_id(s("versionId"))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{e:?}")),
                other => panic!("no such step {other}"),
            }
            .unwrap_or_else(|e| panic!("{}: {e:?}", step.id));
        });
        // Each change in a later second than the one before it (CloudTrail's times have
        // seconds), and not in the future.
        while now_secs() <= last_secs {
            std::thread::sleep(Duration::from_millis(50));
        }
        let t = now_secs();
        last_secs = t;
        let mut record = cloudtrail_record(step.id, step.event, t);
        record["userIdentity"] = step.identity.clone();
        record["requestParameters"] = step.params.clone();
        record["responseElements"] = step.response.clone();
        record["recipientAccountId"] = json!("123456789012");
        server.add_events(&[record]);
        let out = run_with(Some(&server), Some(&moto), &["once"], &config);
        assert_exit(&out, 0);
        let printed = lines(&out);
        assert_eq!(
            printed.len(),
            1,
            "{}: {}\n{}",
            step.id,
            stdout(&out),
            stderr(&out)
        );
        let alert = &printed[0];
        assert_eq!(alert["event_id"], step.id, "{alert}");
        let a = &alert["analysis"];
        assert_eq!(
            (a["verdict"].as_str(), a["severity"].as_str()),
            (Some(step.verdict), Some(step.severity)),
            "{}: {a:#}",
            step.id
        );
        assert_eq!(alert["severity"], step.severity, "{}", step.id);
        assert!(
            a["compared"]
                .as_str()
                .is_some_and(|c| c.starts_with(step.compared)),
            "{}: {a:#}",
            step.id
        );
        assert_eq!(
            a["since_baseline"]["verdict"].as_str(),
            step.since_baseline,
            "{}: {a:#}",
            step.id
        );
        assert!(a["diff_unavailable"].is_null(), "{}: {a:#}", step.id);
        let reasons = serde_json::to_string(&a["reasons"]).unwrap();
        assert!(!reasons.contains("no baseline"), "{}: {reasons}", step.id);
        match step.id {
            "2-widen-back" => {
                assert_eq!(
                    a["reasons"],
                    json!(["grants more (new Allow): Allow ec2:describe* on *"])
                );
                assert_eq!(a["baseline"]["differences"], json!([]), "{a:#}");
            }
            "5-trust" => {
                assert_eq!(
                    (a["actor_class"].as_str(), a["via"].as_str()),
                    (Some("yours"), Some("the console"))
                );
                assert!(a["flags"].to_string().contains("sts:ExternalId"), "{a:#}");
            }
            "7-old-version" => assert_eq!(
                a["reasons"],
                json!(["grants more (new Allow): Allow s3:putobject on *"])
            ),
            _ => {}
        }
    }

    // The last known state is the role as IAM has it now.
    let known = open_state(&setup.state_path())
        .last_known(ROLE)
        .unwrap()
        .expect("a last known state");
    assert_eq!(known.from_event.as_deref(), Some("7-old-version"));
    assert_eq!(known.incomplete, None);
    let out = run_with(None, Some(&moto), &["baseline"], &config);
    assert_exit(&out, 0);
    let now: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let held: Value = serde_json::from_str(&known.snapshot).unwrap();
    assert_eq!(comparable(&held), comparable(&now));
    assert_eq!(now["managed_policy"]["default_version_id"], "v1", "{now:#}");
    assert_eq!(now["trust_policy"], trust(false));
}

/// Issue 16 part 2: a change the vendor announced, recorded with `rolewatch expect add`
/// (the announced document hashed from a file), is delivered marked EXPECTED at `info`; the
/// same kind of change outside the entry's window is unaffected. Real binary, moto IAM and
/// the LookupEvents server.
#[test]
fn an_announced_change_goes_out_expected_and_one_outside_the_window_does_not() {
    use crate::support::{cloudtrail_record, lines, now_secs, run_with, LookupServer, Setup};
    use crate::{assert_exit, stderr, stdout};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let moto = Moto::start();
    let server = LookupServer::start();
    let (admin, policy_arn) = rt.block_on(async {
        let (_, admin, policy_arn) = vendor_role(&moto, &["s3:GetObject"]).await;
        (admin, policy_arn)
    });
    let body = "[[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\nmax_requests_per_sec = 2\n\n\
                [[rule]]\npack = \"complete\"\nseverity = \"medium\"";
    let fmt = |secs: i64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs as u64))
            .to_string()
    };
    // The vendor widens its policy to `doc` (after a baseline); the alert `once` prints.
    let widen = |id: &str, doc: &Value, config: &std::path::Path| {
        let out = run_with(None, Some(&moto), &["baseline", "--record"], config);
        assert_exit(&out, 0);
        let version = rt.block_on(async {
            admin
                .create_policy_version()
                .policy_arn(&policy_arn)
                .policy_document(doc.to_string())
                .set_as_default(true)
                .send()
                .await
                .unwrap()
                .policy_version()
                .and_then(|v| v.version_id())
                .unwrap()
                .to_owned()
        });
        let t = now_secs();
        let mut record = cloudtrail_record(id, "CreatePolicyVersion", t);
        record["userIdentity"] = vendor_identity();
        record["requestParameters"] = json!({"policyArn": policy_arn,
            "policyDocument": doc.to_string(), "setAsDefault": true});
        record["responseElements"] =
            json!({"policyVersion": {"versionId": version, "isDefaultVersion": true}});
        record["recipientAccountId"] = json!("123456789012");
        server.add_events(&[record]);
        let out = run_with(Some(&server), Some(&moto), &["once"], config);
        assert_exit(&out, 0);
        let printed: Vec<Value> = lines(&out)
            .into_iter()
            .filter(|a| a["event_id"] == id)
            .collect();
        assert_eq!(printed.len(), 1, "{}\n{}", stdout(&out), stderr(&out));
        printed[0].clone()
    };

    // Outside the window: the entry starts tomorrow.
    let later = Setup::new();
    let config = later.config(body);
    let out = run_with(
        None,
        None,
        &[
            "expect",
            "add",
            "--description",
            "vendor notice: widening next week",
            "--from",
            &fmt(now_secs() + 86_400),
            "--days",
            "7",
            "--event",
            "CreatePolicyVersion",
            "--policy",
            "AstronomerCrossAccountRole",
        ],
        &config,
    );
    assert_exit(&out, 0);
    let v2 = doc(&["s3:GetObject", "s3:PutObject"]);
    let alert = widen("outside-window", &v2, &config);
    let a = &alert["analysis"];
    assert_eq!(
        (a["verdict"].as_str(), alert["severity"].as_str()),
        (Some("widened"), Some("high")),
        "{a:#}"
    );
    assert!(a["expected"].is_null(), "{a:#}");

    // Inside the window, naming the document: EXPECTED at info.
    let now = Setup::new();
    let config = now.config(body);
    let v3 = doc(&["s3:GetObject", "s3:PutObject", "ec2:CreateVolume"]);
    // As `aws iam get-policy-version` prints it, keys in another order and blanks.
    let announced = now.path("announced.json");
    std::fs::write(
        &announced,
        serde_json::to_string_pretty(
            &json!({"PolicyVersion": {"Document": v3, "VersionId": "v3"}}),
        )
        .unwrap(),
    )
    .unwrap();
    let before = std::fs::read_to_string(&config).unwrap();
    // A window that ends before it starts: refused, naming the key; the file unchanged.
    let out = run_with(
        None,
        None,
        &[
            "expect",
            "add",
            "--description",
            "bad",
            "--from",
            &fmt(now_secs()),
            "--until",
            &fmt(now_secs() - 60),
            "--event",
            "CreatePolicyVersion",
        ],
        &config,
    );
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("expect[0].until"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    let out = run_with(
        None,
        None,
        &[
            "expect",
            "add",
            "--description",
            "Astronomer notice OPS-4711: adds ec2:CreateVolume",
            "--from",
            &fmt(now_secs() - 3_600),
            "--days",
            "2",
            "--event",
            "CreatePolicyVersion",
            "--policy",
            "AstronomerCrossAccountRole",
            "--document",
            announced.to_str().unwrap(),
        ],
        &config,
    );
    assert_exit(&out, 0);
    let hash = crate::support::command(None, None)
        .args(["expect", "hash"])
        .arg(&announced)
        .output()
        .unwrap();
    assert_exit(&hash, 0);
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.starts_with(&before), "appended, not rewritten");
    assert!(
        written.contains(&format!("document_sha256 = \"{}\"", stdout(&hash).trim())),
        "{written}"
    );
    let list = run_with(None, None, &["expect", "list"], &config);
    assert_exit(&list, 0);
    assert!(
        stdout(&list).starts_with("expect[0] active"),
        "{}",
        stdout(&list)
    );

    let alert = widen("inside-window", &v3, &config);
    let a = &alert["analysis"];
    assert_eq!(
        (a["verdict"].as_str(), alert["severity"].as_str()),
        (Some("widened"), Some("info")),
        "{a:#}"
    );
    assert_eq!(
        a["expected"]["description"], "Astronomer notice OPS-4711: adds ec2:CreateVolume",
        "{a:#}"
    );
    assert!(a["expected"]["beyond"].is_null(), "{a:#}");
    assert!(
        a["severity_reason"]
            .as_str()
            .is_some_and(|r| r.contains("without it: high")),
        "{a:#}"
    );
}

/// With `[[account]]`s, IAM is read inside the member account: the vendor's role exists only
/// in the member (created there with the member's assumed-role credentials); the reader of
/// rolewatch's own account does not find it, the member's reader does, with its policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analysis_reads_iam_inside_the_member_account() {
    use rolewatch::intel::iam::IamReader;
    const MEMBER: &str = "222222222222";
    let moto = Moto::start();
    let base = sdk_config(&moto.endpoint()).await;
    let account = rolewatch::config::AccountConfig {
        id: MEMBER.into(),
        name: Some("prod".into()),
        role_arn: Some(format!("arn:aws:iam::{MEMBER}:role/rolewatch-member")),
        external_id: Some(rolewatch::config::ExternalId::Inline("ext-member".into())),
        session_name: "rolewatch".into(),
    };
    let member_sdk = rolewatch::runtime::build::account_sdk(&base, &account);
    let member_admin = aws_sdk_iam::Client::new(&member_sdk);
    member_admin
        .create_role()
        .role_name(ROLE)
        .assume_role_policy_document(trust(true).to_string())
        .send()
        .await
        .unwrap();
    attach_new_policy(
        &member_admin,
        ROLE,
        "AstronomerCrossAccountRole",
        &doc(&["s3:GetObject"]),
    )
    .await;

    let member_credentials =
        rolewatch::runtime::build::account_credentials(&aws_sdk_sts::Client::new(&base), &account);
    let iam = AwsIam::with_accounts(&base, [(MEMBER, &member_credentials)]);
    let vendor = VendorConfig::default();
    let own = baseline::snapshot(&iam, &vendor, 1_000).await;
    assert!(
        own.is_err(),
        "the role is not in rolewatch's own account: {own:?}"
    );
    assert!(iam.for_account("999999999999").is_none());
    let member = iam.for_account(MEMBER).expect("a reader inside the member");
    let snap = baseline::snapshot(&member, &vendor, 1_000).await.unwrap();
    assert_eq!(snap.role_arn, format!("arn:aws:iam::{MEMBER}:role/{ROLE}"));
    assert_eq!(snap.attached.len(), 1, "{snap:?}");
    // The member's IAM was reached through sts:AssumeRole with the ExternalId.
    let data = crate::support::http(moto.port(), "GET", "/moto-api/data.json", &[], b"")
        .unwrap()
        .json();
    let assumed = data["sts"]["AssumedRole"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        assumed
            .iter()
            .any(|r| r["account_id"] == MEMBER && r["external_id"] == "ext-member"),
        "{assumed:?}"
    );
}
