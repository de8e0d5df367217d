//! `[organization]` (issue 14): the accounts discovered with ListAccounts on moto's
//! Organizations, each reached by sts:AssumeRole into its member role on moto's STS,
//! LookupEvents answering per account; the listing refreshed, new accounts picked up and
//! closed ones dropped with a notice.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    cloudtrail_record, command, http, lines, moto_assumed_roles, now_secs, org_call, Daemon,
    LookupServer, Moto, Setup,
};
use crate::{assert_exit, stderr};

/// The account of moto's static test key: the organization's management account.
const OWN: &str = "123456789012";

/// An organization on moto with `names` as member accounts: their ids, in order.
fn organization(moto: &Moto, names: &[&str]) -> Vec<String> {
    org_call(moto, "CreateOrganization", &json!({"FeatureSet": "ALL"}));
    names.iter().map(|n| create_account(moto, n)).collect()
}

fn create_account(moto: &Moto, name: &str) -> String {
    let reply = org_call(
        moto,
        "CreateAccount",
        &json!({"AccountName": name, "Email": format!("{name}@example.com")}),
    );
    reply["CreateAccountStatus"]["AccountId"]
        .as_str()
        .unwrap_or_else(|| panic!("no account id: {reply}"))
        .to_owned()
}

/// One change in `account`, visible to that account only.
fn change_in(server: &LookupServer, account: &str) {
    let mut record = cloudtrail_record(
        &format!("change-{account}"),
        "AttachRolePolicy",
        now_secs() - 60,
    );
    record["recipientAccountId"] = json!(account);
    server.add_specs(&[json!({"record": record, "account": account})]);
}

/// An organization of the management account, prod and dev on moto, and a LookupEvents
/// server with one change in each of the three: `(moto, prod, dev, server)`.
fn prod_and_dev_with_a_change_each() -> (Moto, String, String, LookupServer) {
    let moto = Moto::start();
    let members = organization(&moto, &["prod", "dev"]);
    let (prod, dev) = (members[0].clone(), members[1].clone());
    let server = LookupServer::start();
    server.accounts(json!({"moto": moto.endpoint()}));
    for acct in [OWN, &prod, &dev] {
        change_in(&server, acct);
    }
    (moto, prod, dev, server)
}

/// Rule alerts by eventID.
fn alerts_by_id(lines: &[Value]) -> HashMap<String, Value> {
    lines
        .iter()
        .filter(|l| l["origin"] == "rule")
        .map(|l| {
            (
                l["event_id"].as_str().unwrap_or_default().to_owned(),
                l.clone(),
            )
        })
        .collect()
}

const SOURCE: &str = "[[source]]
type = \"cloudtrail\"
name = \"ct\"
max_requests_per_sec = 2
retry_budget_secs = 2
sweep_interval_secs = 0
poll_interval_secs = 3600

[admin]
enabled = false
";

#[test]
fn three_accounts_of_an_organization_one_alert_each_with_its_account() {
    let (moto, prod, dev, server) = prod_and_dev_with_a_change_each();
    let setup = Setup::new();
    // dev has an [[account]] entry of its own: it overrides the discovered one.
    let config = setup.config(&format!(
        "{SOURCE}
[organization]
external_id_env = \"RW_TEST_ORG_EXTERNAL_ID\"

[[account]]
id = \"{dev}\"
name = \"dev (explicit)\"
role_arn = \"arn:aws:iam::{dev}:role/rolewatch-member\"
external_id = \"dev-own-ext-id\"
session_name = \"rolewatch-dev\"
"
    ));
    let out = command(Some(&server), Some(&moto))
        .env("RW_TEST_ORG_EXTERNAL_ID", "org-ext-id")
        .args(["once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_exit(&out, 0);
    assert!(
        !err.contains("org-ext-id") && !err.contains("dev-own-ext-id"),
        "an ExternalId in the log:\n{err}"
    );
    let alerts = alerts_by_id(&lines(&out));
    assert_eq!(alerts.len(), 3, "{alerts:?}\n{err}");
    for (acct, name) in [
        (OWN, "master"),
        (prod.as_str(), "prod"),
        (dev.as_str(), "dev (explicit)"),
    ] {
        let a = &alerts[&format!("change-{acct}")];
        assert_eq!(a["recipient_account_id"], acct, "{a}");
        assert_eq!(a["account_name"], name, "{a}");
        assert_eq!(a["source_id"], format!("ct@{acct}"), "{a}");
        let subject = a["subject"].as_str().unwrap();
        assert!(
            subject.contains(&format!("[account {acct} ({name})]")),
            "{subject}"
        );
    }
    let stats = server.stats();
    for acct in [OWN, &prod, &dev] {
        assert!(
            stats["by_account"][acct].as_u64().unwrap_or(0) >= 1,
            "no request from {acct}: {}",
            stats["by_account"]
        );
    }
    // The management account with rolewatch's own credentials; each member by its role,
    // once, with the organization's ExternalId — dev with its own entry's.
    let mut want = vec![
        (
            prod.clone(),
            "org-ext-id".to_owned(),
            "rolewatch".to_owned(),
        ),
        (
            dev.clone(),
            "dev-own-ext-id".to_owned(),
            "rolewatch-dev".to_owned(),
        ),
    ];
    want.sort();
    assert_eq!(moto_assumed_roles(&moto), want);
    assert!(err.contains("organization_listed"), "{err}");
}

#[test]
fn include_ous_and_exclude_accounts_choose_which_accounts_are_watched() {
    let moto = Moto::start();
    let members = organization(&moto, &["a", "b", "c"]);
    let roots = org_call(&moto, "ListRoots", &json!({}));
    let root = roots["Roots"][0]["Id"].as_str().unwrap().to_owned();
    let team = org_call(
        &moto,
        "CreateOrganizationalUnit",
        &json!({"ParentId": root, "Name": "team"}),
    );
    let team = team["OrganizationalUnit"]["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A nested OU: its accounts are in `team` too.
    let nested = org_call(
        &moto,
        "CreateOrganizationalUnit",
        &json!({"ParentId": team, "Name": "nested"}),
    );
    let nested = nested["OrganizationalUnit"]["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (acct, to) in [
        (&members[0], &team),
        (&members[1], &nested),
        (&members[2], &team),
    ] {
        org_call(
            &moto,
            "MoveAccount",
            &json!({"AccountId": acct, "SourceParentId": root, "DestinationParentId": to}),
        );
    }
    let server = LookupServer::start();
    server.accounts(json!({"moto": moto.endpoint()}));
    for acct in [OWN, &members[0], &members[1], &members[2]] {
        change_in(&server, acct);
    }
    let setup = Setup::new();
    let config = setup.config(&format!(
        "{SOURCE}
[organization]
include_ous = [\"{team}\"]
exclude_accounts = [\"{}\"]
",
        members[2]
    ));
    let out = command(Some(&server), Some(&moto))
        .args(["once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_exit(&out, 0);
    let mut got: Vec<String> = alerts_by_id(&lines(&out)).into_keys().collect();
    got.sort();
    let mut want = vec![
        format!("change-{}", members[0]),
        format!("change-{}", members[1]),
    ];
    want.sort();
    // Not the management account (in the root, not in `team`), not the excluded one.
    assert_eq!(got, want, "{err}");
    let by = &server.stats()["by_account"];
    assert_eq!(by.get(OWN), None, "{by}");
    assert_eq!(by.get(&members[2]), None, "{by}");
}

/// `run` lists the organization again every `refresh_minutes` (here 3 s): an account created
/// meanwhile is watched, a closed one is dropped with a notice, and the accounts that stay
/// keep their credentials (one AssumeRole each over the whole run).
#[test]
fn a_refresh_picks_up_a_new_account_and_drops_a_closed_one_with_a_notice() {
    let (moto, prod, dev, server) = prod_and_dev_with_a_change_each();
    let setup = Setup::new();
    // The admin endpoint too survives the restarts (it is bound again each time).
    let admin = crate::support::free_port();
    let source = SOURCE.replace(
        "[admin]\nenabled = false\n",
        &format!("[admin]\nlisten = \"127.0.0.1:{admin}\"\n"),
    );
    assert_ne!(source, SOURCE);
    let config = setup.config(&format!(
        "{source}
[daemon]
shutdown_grace_secs = 5

[organization]
external_id = \"org-ext-id\"
refresh_minutes = 0.05
"
    ));
    let mut cmd = command(Some(&server), Some(&moto));
    cmd.args(["run", "--config"]).arg(&config);
    let daemon = Daemon::spawn(cmd);
    let alerted = |d: &Daemon, acct: &str| {
        let want = format!("\"event_id\":\"change-{acct}\"");
        d.stdout.lock().unwrap().iter().any(|l| l.contains(&want))
    };
    daemon.wait_for(Duration::from_secs(60), "the first three alerts", |d| {
        [OWN, prod.as_str(), dev.as_str()]
            .iter()
            .all(|a| alerted(d, a))
    });

    // A new account, with a change in it.
    let ops = create_account(&moto, "ops");
    change_in(&server, &ops);
    daemon.wait_for(Duration::from_secs(60), "the new account's alert", |d| {
        alerted(d, &ops)
    });

    // dev is closed: the next listing drops it, with a notice.
    org_call(&moto, "CloseAccount", &json!({"AccountId": dev}));
    let dropped = |d: &Daemon| {
        d.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("\"event_name\":\"AccountDropped\""))
    };
    daemon.wait_for(Duration::from_secs(60), "the notice about dev", dropped);
    let requests_before = server.stats()["by_account"][&dev].as_u64().unwrap_or(0);
    daemon.wait_for(
        Duration::from_secs(10),
        "/metrics after the restarts",
        |_| {
            http(admin, "GET", "/metrics", &[], b"")
                .is_ok_and(|r| r.status == 200 && String::from_utf8_lossy(&r.body).contains(&ops))
        },
    );
    // Two more refreshes: dev is not polled again.
    std::thread::sleep(Duration::from_secs(7));
    let (status, out, err) = daemon.stop("-TERM");
    assert!(status.success(), "{status}\n{err}");
    let out: Vec<Value> = out
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let notice = out
        .iter()
        .find(|l| l["event_name"] == "AccountDropped")
        .unwrap();
    assert_eq!(notice["recipient_account_id"], dev.as_str(), "{notice}");
    let text = notice.to_string();
    assert!(text.contains("SUSPENDED"), "the notice says why: {text}");
    assert!(
        notice["notice"]
            .as_str()
            .unwrap()
            .starts_with("rolewatch stops watching an account: account "),
        "{notice}"
    );
    assert_eq!(
        out.iter()
            .filter(|l| l["event_name"] == "AccountDropped")
            .count(),
        1,
        "one notice: {out:?}"
    );
    // Each alert once, though the daemon restarted twice on the changes.
    let alerts = alerts_by_id(&out);
    assert_eq!(alerts.len(), 4, "{alerts:?}");
    assert_eq!(
        out.iter().filter(|l| l["origin"] == "rule").count(),
        4,
        "no alert twice"
    );
    assert_eq!(alerts[&format!("change-{ops}")]["account_name"], "ops");
    assert_eq!(
        server.stats()["by_account"][&dev].as_u64().unwrap_or(0),
        requests_before,
        "the dropped account is no longer polled"
    );
    assert!(err.contains("organization_changed"), "{err}");
    // One AssumeRole per member over the whole run: the credentials survive the restarts.
    let mut want = vec![
        (
            prod.clone(),
            "org-ext-id".to_owned(),
            "rolewatch".to_owned(),
        ),
        (dev.clone(), "org-ext-id".to_owned(), "rolewatch".to_owned()),
        (ops.clone(), "org-ext-id".to_owned(), "rolewatch".to_owned()),
    ];
    want.sort();
    assert_eq!(moto_assumed_roles(&moto), want);
}

/// ListAccounts gives at most 20 accounts a page: 22 accounts are all found, each polled.
#[test]
fn every_page_of_list_accounts_is_read() {
    let moto = Moto::start();
    let names: Vec<String> = (0..21).map(|i| format!("member{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let members = organization(&moto, &refs);
    let server = LookupServer::start();
    server.accounts(json!({"moto": moto.endpoint()}));
    let setup = Setup::new();
    let config = setup.config(&format!("{SOURCE}\n[organization]\n"));
    let out = command(Some(&server), Some(&moto))
        .args(["once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_exit(&out, 0);
    assert!(err.contains("\"accounts\":22"), "{err}");
    // Two pages of ListAccounts, and GetCallerIdentity.
    assert!(err.contains("\"calls\":3"), "{err}");
    let by = &server.stats()["by_account"];
    for acct in members.iter().map(String::as_str).chain([OWN]) {
        assert!(by.get(acct).is_some(), "{acct} not polled: {by}");
    }
}

/// The clock seam drives the SDK's credential cache: each member's assumed-role credentials
/// (one hour, from an STS stand-in that dates them by the signer's clock) are refreshed
/// before they expire — not earlier than 5 minutes before, not later than 2.5 minutes
/// before, spread by the cache's jitter — and each refresh is one AssumeRole per account
/// however many requests want the credentials at once.
#[test]
fn credentials_are_refreshed_before_expiry_with_jitter_one_assume_role_per_account() {
    use rolewatch::config::AccountConfig;
    use rolewatch::time::{Clock, FixedClock};
    use std::sync::Arc;

    let sts = crate::support::StsClockServer::start();
    // More accounts than the 64 credentials the SDK's identity cache holds by default.
    let members: Vec<String> = (1..=70).map(|i| format!("3000000000{i:02}")).collect();
    let t0 = rolewatch::time::SystemClock.now_ms();
    let clock = Arc::new(FixedClock::new(t0));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let count = |acct: &str| sts.stats()["assume_role"][acct].as_u64().unwrap_or(0);
    let counts = || -> Vec<u64> { members.iter().map(|m| count(m)).collect() };
    rt.block_on(async {
        let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(sts.endpoint())
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .http_client(rolewatch::aws::https_client())
            .load()
            .await;
        let base = rolewatch::aws::with_clock(&base, clock.clone());
        // As the daemon does it: one identity cache for every account, one STS client that
        // assumes every role, one client that calls into every account with its credentials.
        let kept = rolewatch::runtime::build::AccountSdks::default();
        let shared = rolewatch::runtime::build::shared_sdk(&base, &kept);
        let client = aws_sdk_sts::Client::new(&shared);
        let mut credentials = Vec::new();
        for m in &members {
            let account = AccountConfig {
                id: m.clone(),
                name: None,
                role_arn: Some(format!("arn:aws:iam::{m}:role/rolewatch-member")),
                external_id: Some(rolewatch::config::ExternalId::Inline("ext".into())),
                session_name: "rolewatch".into(),
            };
            credentials.push(
                rolewatch::runtime::build::account_credentials(&client, &account)
                    .expect("a member's credentials"),
            );
        }
        // Four requests at once per account, each asking the cache for credentials; every
        // answer comes from the member account.
        let ask = || {
            let (client, credentials, members) = (&client, &credentials, &members);
            async move {
                let calls = (0..members.len()).flat_map(|i| {
                    (0..4).map(move |_| async move {
                        let mut with = aws_sdk_sts::config::Builder::default();
                        with.set_credentials_provider(Some(credentials[i].clone()));
                        with.set_identity_cache(client.config().identity_cache().unwrap());
                        let who = client
                            .get_caller_identity()
                            .customize()
                            .config_override(with)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(who.account(), Some(members[i].as_str()));
                    })
                });
                futures_util::future::join_all(calls).await;
            }
        };
        ask().await;
        assert!(
            counts().iter().all(|&n| n == 1),
            "one AssumeRole per account to start with: {:?}",
            counts()
        );
        // Up to 5 minutes 10 s before the hour is up: still cached.
        for before in [1800, 600, 310] {
            clock.set(t0 + (3600 - before) * 1000);
            ask().await;
            assert!(
                counts().iter().all(|&n| n == 1),
                "refreshed {before} s before expiry: {:?}",
                counts()
            );
        }
        // From 5 minutes before to 2 minutes before, 10 s at a time: when does each account
        // refresh?
        let mut refreshed_at: HashMap<String, i64> = HashMap::new();
        let mut before = 300;
        while before >= 120 {
            clock.set(t0 + (3600 - before) * 1000);
            ask().await;
            for (m, n) in members.iter().zip(counts()) {
                match n {
                    1 => {}
                    2 => {
                        refreshed_at.entry(m.clone()).or_insert(before);
                    }
                    n => panic!("{m} assumed {n} times by {before} s before expiry"),
                }
            }
            before -= 10;
        }
        assert_eq!(
            refreshed_at.len(),
            members.len(),
            "every account refreshed by 2 minutes before expiry: {refreshed_at:?}"
        );
        assert!(
            refreshed_at.values().all(|&b| (150..=300).contains(&b)),
            "refreshed 5 to 2.5 minutes before expiry: {refreshed_at:?}"
        );
        let distinct: std::collections::HashSet<i64> = refreshed_at.values().copied().collect();
        assert!(
            distinct.len() >= 3,
            "the jitter spreads the refreshes: {refreshed_at:?}"
        );
        eprintln!("seconds before expiry each account refreshed: {refreshed_at:?}");
        // The next hour: refreshed once more each, in the same window.
        clock.set(t0 + (3600 + 3600 - 140) * 1000);
        ask().await;
        assert!(
            counts().iter().all(|&n| n == 3),
            "{:?} {}",
            counts(),
            sts.stats()["calls"]
        );
    });
    let calls = sts.stats()["calls"].as_array().unwrap().clone();
    assert!(
        calls
            .iter()
            .all(|c| c["external_id"] == "ext" && c["session_name"] == "rolewatch"),
        "{calls:?}"
    );
}

/// A proxy in front of moto's Organizations that, once told to, refuses every call with
/// AccessDenied (as Organizations does for an account that is not the management or a
/// delegated administrator).
struct DenyingProxy {
    port: u16,
    deny: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DenyingProxy {
    fn start(upstream: u16) -> DenyingProxy {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let deny = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = deny.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let flag = flag.clone();
                std::thread::spawn(move || -> std::io::Result<()> {
                    let mut stream = stream;
                    let Some(request) = crate::support::read_request(&stream)? else {
                        return Ok(());
                    };
                    let (status, body) = if flag.load(std::sync::atomic::Ordering::SeqCst) {
                        (
                            400,
                            br#"{"__type":"AccessDeniedException","Message":"denied by the test"}"#
                                .to_vec(),
                        )
                    } else {
                        let reply = request.forward(upstream)?;
                        (reply.status, reply.body)
                    };
                    write!(
                        stream,
                        "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )?;
                    stream.write_all(&body)?;
                    stream.flush()
                });
            }
        });
        DenyingProxy { port, deny }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn deny(&self, on: bool) {
        self.deny.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Organizations refusing: `once` fails at the start, saying what it could not do; a listing
/// that starts failing under `run` keeps the accounts found before (they still alert) and is
/// reported "cannot see" once per run of failures.
#[test]
fn a_listing_that_fails_stops_once_and_is_reported_under_run() {
    let moto = Moto::start();
    let members = organization(&moto, &["prod"]);
    let prod = members[0].clone();
    let proxy = DenyingProxy::start(moto.port());
    let server = LookupServer::start();
    server.accounts(json!({"moto": moto.endpoint()}));
    let setup = Setup::new();
    let config = setup.config(&format!(
        "{SOURCE}
[daemon]
shutdown_grace_secs = 5

[organization]
refresh_minutes = 0.05
"
    ));
    proxy.deny(true);
    let out = command(Some(&server), Some(&moto))
        .env("AWS_ENDPOINT_URL_ORGANIZATIONS", proxy.endpoint())
        .args(["once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_exit(&out, 1);
    assert!(
        err.contains("cannot list the organization's accounts ([organization])")
            && err.contains("AccessDeniedException"),
        "{err}"
    );

    proxy.deny(false);
    let mut cmd = command(Some(&server), Some(&moto));
    cmd.env("AWS_ENDPOINT_URL_ORGANIZATIONS", proxy.endpoint())
        .args(["run", "--config"])
        .arg(&config);
    let daemon = Daemon::spawn(cmd);
    daemon.wait_for(Duration::from_secs(30), "both accounts polled", |_| {
        let by = &server.stats()["by_account"];
        by.get(OWN).is_some() && by.get(&prod).is_some()
    });
    proxy.deny(true);
    let blind = |d: &Daemon| {
        d.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("\"event_name\":\"SourceBlind\""))
    };
    daemon.wait_for(Duration::from_secs(30), "the cannot-see notice", blind);
    // Two more failing refreshes: one notice still, and no restart (the accounts found
    // before stay watched).
    std::thread::sleep(Duration::from_secs(7));
    let (status, out, err) = daemon.stop("-TERM");
    assert!(status.success(), "{status}\n{err}");
    let notices: Vec<&String> = out
        .iter()
        .filter(|l| l.contains("\"event_name\":\"SourceBlind\""))
        .collect();
    assert_eq!(
        notices.len(),
        1,
        "one notice per run of failures: {notices:?}"
    );
    assert!(
        notices[0].contains("organization (ListAccounts)")
            && notices[0].contains("AccessDeniedException")
            && notices[0].contains("the accounts found before stay watched"),
        "{}",
        notices[0]
    );
    assert!(
        err.matches("organization_list_failed").count() >= 2,
        "{err}"
    );
    assert!(!err.contains("organization_changed"), "no restart: {err}");
}

/// `check`, `doctor` and `once` list the organization as `run` does. An account closed
/// between two `once` runs is reported by the second (an earlier run's cursors are in the
/// state), once: the third run says nothing more about it.
#[test]
fn check_doctor_and_once_see_the_organization_and_once_reports_a_closed_account_once() {
    use crate::support::run_with;
    let (moto, prod, dev, server) = prod_and_dev_with_a_change_each();
    let setup = Setup::new();
    let config = setup.config(&format!(
        "{SOURCE}
[organization]
external_id = \"org-ext-id\"
"
    ));
    let ids = |out: &std::process::Output| -> Vec<String> {
        let mut v: Vec<String> = lines(out)
            .iter()
            .filter_map(|l| l["eventID"].as_str().map(str::to_owned))
            .collect();
        v.sort();
        v
    };
    let mut want: Vec<String> = [OWN, &prod, &dev]
        .iter()
        .map(|a| format!("change-{a}"))
        .collect();
    want.sort();

    // check: every account of the organization, read-only.
    let out = run_with(Some(&server), Some(&moto), &["check"], &config);
    assert_exit(&out, 0);
    assert_eq!(ids(&out), want, "{}", stderr(&out));

    // doctor: the listing, then one finding per account.
    let out = run_with(Some(&server), Some(&moto), &["doctor"], &config);
    let text = crate::stdout(&out);
    assert!(
        text.contains("organization: 3 active account(s) let in by the filters"),
        "{text}"
    );
    for acct in [&prod, &dev] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("account {acct} ("))
                    && l.contains(&format!("reached through arn:aws:iam::{acct}:role/"))),
            "{acct}:\n{text}"
        );
    }

    let once = || run_with(Some(&server), Some(&moto), &["once"], &config);
    let dropped = |out: &std::process::Output| -> Vec<Value> {
        lines(out)
            .into_iter()
            .filter(|l| l["event_name"] == "AccountDropped")
            .collect()
    };
    let first = once();
    assert_exit(&first, 0);
    assert_eq!(alerts_by_id(&lines(&first)).len(), 3, "{}", stderr(&first));
    assert!(dropped(&first).is_empty());

    org_call(&moto, "CloseAccount", &json!({"AccountId": dev}));
    let second = once();
    assert_exit(&second, 0);
    let notices = dropped(&second);
    assert_eq!(notices.len(), 1, "{}", stderr(&second));
    assert_eq!(notices[0]["recipient_account_id"], dev.as_str());
    assert!(
        notices[0].to_string().contains("SUSPENDED"),
        "{}",
        notices[0]
    );

    let third = once();
    assert_exit(&third, 0);
    assert!(
        dropped(&third).is_empty(),
        "reported again: {:?}",
        dropped(&third)
    );
}
