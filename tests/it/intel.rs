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
    let a = analyzer.analyze(&ev, Some(&base), 5_000).await;
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
