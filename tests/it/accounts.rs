//! Many accounts (issue 14): every `cloudtrail` source once per `[[account]]`, each account
//! reached by sts:AssumeRole on moto (with its ExternalId and session name), LookupEvents
//! answering per account (the account of the request's credentials, as moto's STS knows it).

use std::collections::HashMap;

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{cloudtrail_record, command, lines, now_secs, LookupServer, Moto, Setup};
use crate::{assert_exit, stderr};

/// The account of moto's static test key.
const OWN: &str = "123456789012";
const PROD: &str = "222222222222";
const DEV: &str = "333333333333";

/// `[[account]]`s: the own account (no role), prod and dev by assumed role, their ExternalIds
/// inline, from the environment and from a file.
fn accounts_config(setup: &Setup, dev_external_id_file: &std::path::Path) -> std::path::PathBuf {
    setup.config(&format!(
        r#"[[source]]
type = "cloudtrail"
name = "ct"
max_requests_per_sec = 2
retry_budget_secs = 2
sweep_interval_secs = 0

[admin]
enabled = false

[daemon]
blind_after_failures = 1

[[account]]
id = "{OWN}"
name = "management"

[[account]]
id = "{PROD}"
name = "prod"
role_arn = "arn:aws:iam::{PROD}:role/rolewatch-member"
external_id_env = "RW_TEST_PROD_EXTERNAL_ID"

[[account]]
id = "{DEV}"
role_arn = "arn:aws:iam::{DEV}:role/rolewatch-member"
external_id_file = "{}"
session_name = "rolewatch-dev"
"#,
        dev_external_id_file.display()
    ))
}

/// One change per account, each visible to its own account only.
fn one_change_per_account(server: &LookupServer) {
    let t = now_secs() - 60;
    let specs: Vec<Value> = [OWN, PROD, DEV]
        .iter()
        .map(|acct| {
            let mut record = cloudtrail_record(&format!("change-{acct}"), "AttachRolePolicy", t);
            record["recipientAccountId"] = json!(acct);
            json!({"record": record, "account": acct})
        })
        .collect();
    server.add_specs(&specs);
}

/// Alerts on stdout by eventID (notices left out).
fn alerts_by_id(out: &std::process::Output) -> HashMap<String, Value> {
    lines(out)
        .into_iter()
        .filter(|l| l["origin"] == "rule")
        .map(|l| (l["event_id"].as_str().unwrap_or_default().to_owned(), l))
        .collect()
}

#[test]
fn three_accounts_one_alert_each_with_its_account_and_the_external_ids_sent() {
    let moto = Moto::start();
    let server = LookupServer::start();
    server.accounts(json!({"moto": moto.endpoint()}));
    one_change_per_account(&server);
    let setup = Setup::new();
    let ext_file = setup.path("dev-external-id");
    std::fs::write(&ext_file, "dev-ext-id\n").unwrap();
    let config = accounts_config(&setup, &ext_file);
    let out = command(Some(&server), Some(&moto))
        .env("RW_TEST_PROD_EXTERNAL_ID", "prod-ext-id")
        .args(["once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        !err.contains("prod-ext-id") && !err.contains("dev-ext-id"),
        "an ExternalId in the log:\n{err}"
    );

    let alerts = alerts_by_id(&out);
    assert_eq!(alerts.len(), 3, "{alerts:?}\n{err}");
    for (acct, name, label) in [
        (OWN, Some("management"), "123456789012 (management)"),
        (PROD, Some("prod"), "222222222222 (prod)"),
        (DEV, None, "333333333333"),
    ] {
        let a = &alerts[&format!("change-{acct}")];
        assert_eq!(a["recipient_account_id"], acct, "{a}");
        assert_eq!(a["account_name"], json!(name), "{a}");
        assert_eq!(a["source_id"], format!("ct@{acct}"), "{a}");
        let subject = a["subject"].as_str().unwrap();
        assert!(subject.contains(&format!("[account {label}]")), "{subject}");
    }

    // Each account's LookupEvents came with that account's credentials.
    let stats = server.stats();
    for acct in [OWN, PROD, DEV] {
        assert!(
            stats["by_account"][acct].as_u64().unwrap_or(0) >= 1,
            "no request from {acct}: {}",
            stats["by_account"]
        );
    }
    assert_eq!(
        stats["by_account"].get("(unknown)"),
        None,
        "{}",
        stats["by_account"]
    );

    // What moto was sent: one AssumeRole per member, with its ExternalId and session name.
    let seen = crate::support::moto_assumed_roles(&moto);
    assert_eq!(
        seen,
        [
            (PROD.into(), "prod-ext-id".into(), "rolewatch".into()),
            (DEV.into(), "dev-ext-id".into(), "rolewatch-dev".into()),
        ],
        "credentials are cached: one AssumeRole per account; {seen:?}"
    );
}

#[test]
fn a_throttled_account_and_one_without_credentials_leave_the_others_alone_and_are_reported() {
    let moto = Moto::start();
    let server = LookupServer::start();
    server.accounts(json!({"moto": moto.endpoint()}));
    one_change_per_account(&server);
    server.faults(json!({"throttle_accounts": [PROD]}));
    let setup = Setup::new();
    // dev's ExternalId file is missing: its role cannot be assumed.
    let config = accounts_config(&setup, &setup.path("no-such-file"));
    let out = command(Some(&server), Some(&moto))
        .env("RW_TEST_PROD_EXTERNAL_ID", "prod-ext-id")
        .args(["once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_exit(&out, 1);
    let alerts = alerts_by_id(&out);
    let ids: Vec<&String> = alerts.keys().collect();
    assert_eq!(ids, [&format!("change-{OWN}")], "{err}");
    assert_eq!(
        alerts[&format!("change-{OWN}")]["recipient_account_id"],
        OWN
    );

    // Each failing account is reported "cannot see" for itself, naming the account.
    let notices: Vec<Value> = lines(&out)
        .into_iter()
        .filter(|l| l["event_name"] == "SourceBlind")
        .collect();
    let mut blind: Vec<&str> = notices
        .iter()
        .map(|n| n["recipient_account_id"].as_str().unwrap_or_default())
        .collect();
    blind.sort_unstable();
    assert_eq!(blind, [PROD, DEV], "{notices:?}\n{err}");
    let dev = notices
        .iter()
        .find(|n| n["recipient_account_id"] == DEV)
        .unwrap();
    assert!(
        dev.to_string().contains("ExternalId cannot be read"),
        "the notice says why: {dev}"
    );
    assert!(
        dev["subject"]
            .as_str()
            .unwrap()
            .contains("[account 333333333333]"),
        "{dev}"
    );

    // The throttled account was asked (and throttled), the others not held back.
    let stats = server.stats();
    assert!(stats["throttled"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["by_account"][OWN].as_u64().unwrap() >= 1);
    assert_eq!(
        stats["by_account"].get(DEV),
        None,
        "dev has no credentials: {}",
        stats["by_account"]
    );
}

/// The global cap: six accounts' polls (each reply held 400 ms) under `max_concurrent_polls =
/// 2` are never more than two at once at the server, and two do run at once.
#[test]
fn polls_of_all_accounts_share_one_concurrency_cap() {
    let moto = Moto::start();
    let server = LookupServer::start();
    server.accounts(json!({"moto": moto.endpoint()}));
    server.faults(json!({"delay_ms": 400}));
    let members = [
        "200000000001",
        "200000000002",
        "200000000003",
        "200000000004",
        "200000000005",
    ];
    let mut body = String::from(
        "[[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\nmax_requests_per_sec = 2\n\
         sweep_interval_secs = 0\npoll_interval_secs = 3600\n\n[admin]\nenabled = false\n\n\
         [daemon]\nmax_concurrent_polls = 2\nshutdown_grace_secs = 5\n\n\
         [[account]]\nid = \"123456789012\"\n",
    );
    for m in members {
        body.push_str(&format!(
            "\n[[account]]\nid = \"{m}\"\nrole_arn = \"arn:aws:iam::{m}:role/rolewatch-member\"\nexternal_id = \"ext-{m}\"\n"
        ));
    }
    let setup = Setup::new();
    let config = setup.config(&body);
    let mut cmd = command(Some(&server), Some(&moto));
    cmd.args(["run", "--config"]).arg(&config);
    let daemon = crate::support::Daemon::spawn(cmd);
    daemon.wait_for(Duration::from_secs(60), "every account polled", |_| {
        let stats = server.stats();
        let by = &stats["by_account"];
        by.get(OWN).is_some() && members.iter().all(|m| by.get(*m).is_some())
    });
    let stats = server.stats();
    assert_eq!(stats["max_in_flight"], 2, "{}", stats["by_account"]);
    let (status, _, _) = daemon.stop("-TERM");
    assert!(status.success(), "{status}");
}

/// `accounts = [...]`: a rule applies to the events of its accounts only, a channel receives
/// the alerts of its accounts only.
#[test]
fn rules_and_channels_are_routed_by_account() {
    let moto = Moto::start();
    let server = LookupServer::start();
    server.accounts(json!({"moto": moto.endpoint()}));
    let t = now_secs() - 60;
    let mut specs = Vec::new();
    for (acct, name) in [
        (OWN, "AttachRolePolicy"),
        (PROD, "AttachRolePolicy"),
        (DEV, "AttachRolePolicy"),
        (OWN, "DetachRolePolicy"),
        (DEV, "DetachRolePolicy"),
    ] {
        let mut record = cloudtrail_record(&format!("{name}-{acct}"), name, t);
        record["recipientAccountId"] = json!(acct);
        specs.push(json!({"record": record, "account": acct}));
    }
    server.add_specs(&specs);
    let setup = Setup::new();
    let config = setup.config(&format!(
        r#"[[source]]
type = "cloudtrail"
name = "ct"
sweep_interval_secs = 0

[admin]
enabled = false

[[account]]
id = "{OWN}"

[[account]]
id = "{PROD}"
role_arn = "arn:aws:iam::{PROD}:role/rolewatch-member"

[[account]]
id = "{DEV}"
role_arn = "arn:aws:iam::{DEV}:role/rolewatch-member"

[[channel]]
type = "stdout"
name = "all"

[[channel]]
type = "stdout"
name = "prod-only"
accounts = ["{PROD}"]

[[rule]]
name = "attach"
pattern = "{{ $.eventName = AttachRolePolicy }}"

[[rule]]
name = "detach-in-dev"
pattern = "{{ $.eventName = DetachRolePolicy }}"
accounts = ["{DEV}"]
"#
    ));
    let out = command(Some(&server), Some(&moto))
        .args(["once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_exit(&out, 0);
    let conn = rusqlite::Connection::open(setup.state_path()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT a.event_id, d.channel FROM alerts a LEFT JOIN deliveries d ON d.alert_id = a.id \
             WHERE a.source_id <> 'rolewatch' ORDER BY a.event_id, d.channel",
        )
        .unwrap();
    let rows: Vec<(String, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let row = |e: String, c: &str| (e, Some(c.to_owned()));
    assert_eq!(
        rows,
        [
            row(format!("AttachRolePolicy-{OWN}"), "all"),
            row(format!("AttachRolePolicy-{PROD}"), "all"),
            row(format!("AttachRolePolicy-{PROD}"), "prod-only"),
            row(format!("AttachRolePolicy-{DEV}"), "all"),
            row(format!("DetachRolePolicy-{DEV}"), "all"),
        ],
        "{err}"
    );
}

/// An organization trail's log group, read by one `cloudwatch_logs` source with rolewatch's
/// own credentials: the account of each record is its `recipientAccountId`, and the change
/// analysis of a member's record reads IAM inside that member (the policy exists only there).
#[test]
fn a_central_log_groups_record_is_analysed_inside_its_recipient_account() {
    use crate::support::{logs_call, put_records};
    const ROLE: &str = "astronomer-remote-management";
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let policy_arn = rt.block_on(async {
        let iam = vendor_role_in_prod(&moto).await;
        let doc = |a: &str| {
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": [a], "Resource": "*"}]})
        };
        // A policy of the member's, attached by the change below.
        iam.create_policy()
            .policy_name("MemberExtra")
            .policy_document(doc("iam:PassRole").to_string())
            .send()
            .await
            .unwrap()
            .policy()
            .and_then(|p| p.arn())
            .unwrap()
            .to_owned()
    });
    assert!(policy_arn.contains(PROD), "{policy_arn}");

    let group = "org-trail";
    logs_call(&moto, "CreateLogGroup", &json!({"logGroupName": group}));
    let stream = format!("o-abc_{PROD}_CloudTrail_us-east-1");
    logs_call(
        &moto,
        "CreateLogStream",
        &json!({"logGroupName": group, "logStreamName": stream}),
    );
    let mut record = cloudtrail_record("member-attach", "AttachRolePolicy", now_secs() - 120);
    record["recipientAccountId"] = json!(PROD);
    record["requestParameters"] = json!({"roleName": ROLE, "policyArn": policy_arn});
    put_records(&moto, group, &stream, &[record]);

    let setup = Setup::new();
    let config = setup.config(&format!(
        r#"[[source]]
type = "cloudwatch_logs"
name = "org-trail"
log_group = "{group}"
max_requests_per_sec = 5

[admin]
enabled = false

[[account]]
id = "{OWN}"

[[account]]
id = "{PROD}"
name = "prod"
role_arn = "arn:aws:iam::{PROD}:role/rolewatch-member"
"#
    ));
    let out = command(None, Some(&moto))
        .args(["once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_exit(&out, 0);
    let alerts = alerts_by_id(&out);
    let a = &alerts["member-attach"];
    assert_eq!(a["recipient_account_id"], PROD, "{a}");
    assert_eq!(a["account_name"], "prod", "{a}");
    assert_eq!(a["source_id"], "org-trail", "{a}");
    let analysis = &a["analysis"];
    assert!(
        analysis["diff_unavailable"].is_null(),
        "the member's policy was read inside the member: {analysis:#}\n{err}"
    );
    assert!(
        analysis.to_string().contains("iam:passrole") && analysis["verdict"] == "widened",
        "the attached document, from the member's IAM: {analysis:#}"
    );
}

/// `baseline` and `doctor` read inside each account, with the account's credentials: the role
/// of prod (in prod's IAM on moto) is snapshotted, recorded under `<role>@<account>` and
/// then found again by doctor; an account whose role is not there, and one whose
/// ExternalId cannot be read, are each reported for that account alone.
#[test]
fn baseline_and_doctor_read_inside_each_account() {
    use crate::stdout;
    const ROLE: &str = "astronomer-remote-management";
    let moto = Moto::start();
    let server = LookupServer::start();
    server.accounts(json!({"moto": moto.endpoint()}));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(vendor_role_in_prod(&moto));
    let setup = Setup::new();
    // dev's ExternalId file does not exist: dev cannot be reached.
    let config = accounts_config(&setup, &setup.path("no-such-file"));
    let run = |args: &[&str]| {
        command(Some(&server), Some(&moto))
            .env("RW_TEST_PROD_EXTERNAL_ID", "prod-ext-id")
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };

    // Every account: prod's role, an error for the other two; exit 1.
    let out = run(&["baseline"]);
    assert_exit(&out, 1);
    let all: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(all[PROD]["role_name"], ROLE, "{all}");
    assert!(
        all[PROD].to_string().contains("AstronomerCrossAccountRole"),
        "{all}"
    );
    assert!(all[OWN]["error"].as_str().unwrap().contains(ROLE), "{all}");
    assert!(
        all[DEV]["error"]
            .as_str()
            .unwrap()
            .contains("ExternalId cannot be read"),
        "{all}"
    );

    // Only prod, recorded.
    let out = run(&["baseline", "--account", PROD, "--record"]);
    assert_exit(&out, 0);
    let one: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(one.as_object().unwrap().len(), 1, "{one}");
    let out = run(&["baseline", "--account", "999999999999"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("999999999999"), "{}", stderr(&out));

    // doctor: one finding per account, each with its source and its role.
    let out = run(&["doctor"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    // Findings: a headline at column 0 (`ok`, `WARN`, `FAIL`), detail lines indented.
    let mut findings: Vec<String> = Vec::new();
    for line in text.lines() {
        match findings.last_mut() {
            Some(f) if line.starts_with(' ') => {
                f.push('\n');
                f.push_str(line);
            }
            _ => findings.push(line.to_owned()),
        }
    }
    let finding = |head: &str| -> String {
        findings
            .iter()
            .find(|f| f.contains(head))
            .unwrap_or_else(|| panic!("no `{head}` in:\n{text}"))
            .clone()
    };
    let prod = finding(&format!("account {PROD} (prod): "));
    assert!(
        prod.contains(&format!("through arn:aws:iam::{PROD}:role/rolewatch-member as arn:aws:sts::{PROD}:assumed-role/")),
        "{prod}"
    );
    assert!(prod.contains(&format!("source ct@{PROD}")), "{prod}");
    assert!(prod.contains("same as the baseline of"), "{prod}");
    let dev = finding(&format!("account {DEV}: "));
    assert!(
        dev.starts_with("FAIL") && dev.contains("ExternalId cannot be read"),
        "{dev}"
    );
    assert!(prod.starts_with("ok "), "{prod}");
    let own = finding(&format!("account {OWN} (management): "));
    assert!(
        own.contains("with rolewatch's own credentials") && own.contains("cannot read the role"),
        "{own}"
    );
    // The sources of the accounts are checked inside them only, not once more outside.
    assert!(
        !findings
            .iter()
            .any(|f| f.contains(&format!("  source ct@{PROD}")) && !f.contains("account ")),
        "{text}"
    );
    // With accounts, no role check outside them.
    assert!(
        !findings
            .iter()
            .any(|f| f.contains(&format!("  role {ROLE}: "))),
        "{text}"
    );
}

/// The vendor's role in prod's IAM on moto (trusting the vendor with an ExternalId), with
/// the vendor's policy attached (`s3:GetObject`): prod's IAM client, for more.
async fn vendor_role_in_prod(moto: &Moto) -> aws_sdk_iam::Client {
    use crate::support::{attach_new_policy, sdk_config};
    let base = sdk_config(&moto.endpoint()).await;
    let member = rolewatch::config::AccountConfig {
        id: PROD.into(),
        name: None,
        role_arn: Some(format!("arn:aws:iam::{PROD}:role/rolewatch-member")),
        external_id: None,
        session_name: "rolewatch".into(),
    };
    let iam = aws_sdk_iam::Client::new(&rolewatch::runtime::build::account_sdk(&base, &member));
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::406882777402:root"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": "vendor-ext-id"}}}]});
    iam.create_role()
        .role_name("astronomer-remote-management")
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap();
    let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": ["s3:GetObject"], "Resource": "*"}]});
    attach_new_policy(
        &iam,
        "astronomer-remote-management",
        "AstronomerCrossAccountRole",
        &doc,
    )
    .await;
    iam
}
