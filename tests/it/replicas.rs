//! Replicas end to end: real `rolewatch run` processes sharing one DynamoDB table on moto
//! and one LookupEvents test server. Exactly one polls; each alert is delivered once across
//! them; SIGKILL of the leader → a follower takes over within two lease periods and catches
//! up from the shared cursor; SIGSTOP of the leader past its lease, SIGCONT → it is fenced
//! and steps down.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    cloudtrail_record, command, free_port, http, now_secs, sdk_config, Daemon, LookupServer, Moto,
    Setup, ROLE,
};

const LEASE_SECS: u64 = 3;

fn config(setup: &Setup, name: &str, port: u16) -> PathBuf {
    let path = setup.path(&format!("{name}.toml"));
    let text = format!(
        "[state]\nbackend = \"dynamodb\"\ntable = \"rolewatch-replicas\"\nregion = \"us-east-1\"\n\
         lease_secs = {LEASE_SECS}\ncreate_table = true\n\n\
         [[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\nschedule = \"* * * * * *\"\n\
         sweep_interval_secs = 0\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [daemon]\nshutdown_grace_secs = 3\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start(lookup: &LookupServer, moto: &Moto, config: &PathBuf) -> Daemon {
    let mut cmd = command(Some(lookup), Some(moto));
    cmd.env("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint())
        .args(["run", "--config"])
        .arg(config);
    Daemon::spawn(cmd)
}

fn standing(port: u16) -> Option<String> {
    let reply = http(port, "GET", "/readyz", &[], b"").ok()?;
    let body: Value = serde_json::from_slice(&reply.body).ok()?;
    body["replica"].as_str().map(str::to_owned)
}

/// The eventIDs each daemon delivered on stdout, counted over all of them.
fn deliveries(daemons: &[&Daemon]) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for d in daemons {
        for line in d.stdout.lock().unwrap().iter() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if let Some(id) = v["event_id"].as_str().or(v["eventID"].as_str()) {
                if id.starts_with("rep-") {
                    *n.entry(id.to_owned()).or_default() += 1;
                }
            }
        }
    }
    n
}

fn wait_all(daemons: &[&Daemon], ids: &[&str], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = deliveries(daemons);
        if ids.iter().all(|id| got.contains_key(*id)) {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = daemons.iter().map(|d| d.stderr_text()).collect();
            panic!(
                "not delivered in time: {ids:?}; got {got:?}; stderr:\n{}",
                logs.join("\n----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn replicas_one_polls_a_killed_leader_is_replaced_a_paused_one_is_fenced() {
    let moto = Moto::start();
    let lookup = LookupServer::start();
    let setup = Setup::new();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let a = start(&lookup, &moto, &config(&setup, "a", pa));
    a.wait_for(Duration::from_secs(30), "A leads", |_| {
        standing(pa).as_deref() == Some("leader")
    });
    let mut b = start(&lookup, &moto, &config(&setup, "b", pb));
    b.wait_for(Duration::from_secs(30), "B follows", |_| {
        standing(pb).as_deref() == Some("follower")
    });

    // Exactly one polls; each alert goes out once.
    let t = now_secs() - 5;
    lookup.add_events(&[
        cloudtrail_record("rep-1", "AttachRolePolicy", t),
        cloudtrail_record("rep-2", "AttachRolePolicy", t),
    ]);
    wait_all(&[&a, &b], &["rep-1", "rep-2"], Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    assert!(a.polls() >= 2, "A polls");
    assert_eq!(
        b.polls(),
        0,
        "the follower never polls; stderr:\n{}",
        b.stderr_text()
    );
    assert!(
        deliveries(&[&a, &b]).values().all(|&n| n == 1),
        "{:?}",
        deliveries(&[&a, &b])
    );

    // SIGKILL of the leader: B takes over within two lease periods and catches up.
    let before_kill: Vec<String> = a.stdout.lock().unwrap().clone();
    let killed = Instant::now();
    drop(a); // Drop kills (SIGKILL) and reaps.
    lookup.add_events(&[cloudtrail_record(
        "rep-3",
        "DetachRolePolicy",
        now_secs() - 2,
    )]);
    b.wait_for(Duration::from_secs(4 * LEASE_SECS), "B takes over", |_| {
        standing(pb).as_deref() == Some("leader")
    });
    let takeover = killed.elapsed();
    eprintln!("takeover after SIGKILL: {} ms", takeover.as_millis());
    assert!(
        takeover <= Duration::from_secs(2 * LEASE_SECS) + Duration::from_millis(700),
        "took {takeover:?}"
    );
    wait_all(&[&b], &["rep-3"], Duration::from_secs(30));
    let mut all = deliveries(&[&b]);
    for line in &before_kill {
        if let Some(id) = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v["event_id"].as_str().map(str::to_owned))
        {
            if id.starts_with("rep-") {
                *all.entry(id).or_default() += 1;
            }
        }
    }
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all.values().all(|&n| n == 1), "nothing twice: {all:?}");

    // SIGSTOP of the leader past its lease: C takes over; SIGCONT: B is fenced, steps down.
    let c = start(&lookup, &moto, &config(&setup, "c", pc));
    c.wait_for(Duration::from_secs(30), "C follows", |_| {
        standing(pc).as_deref() == Some("follower")
    });
    let pid = b.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    c.wait_for(Duration::from_secs(4 * LEASE_SECS), "C takes over", |_| {
        standing(pc).as_deref() == Some("leader")
    });
    lookup.add_events(&[cloudtrail_record(
        "rep-4",
        "AttachRolePolicy",
        now_secs() - 2,
    )]);
    assert!(std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    b.wait_for(Duration::from_secs(4 * LEASE_SECS), "B steps down", |d| {
        d.stderr_text().contains("lease_lost") || d.stderr_text().contains("replica_follower")
    });
    b.wait_for(Duration::from_secs(10), "B says follower", |_| {
        standing(pb).as_deref() == Some("follower")
    });
    wait_all(&[&b, &c], &["rep-4"], Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let polls_b = b.polls();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(b.polls(), polls_b, "the fenced replica polls no more");
    let got = deliveries(&[&b, &c]);
    assert_eq!(got.get("rep-4"), Some(&1), "{got:?}");
    b.child.kill().ok();
}

/// `doctor` knows the DynamoDB backend: a missing table fails with what to do (and doctor
/// creates nothing); a table with a state shows its schema and who holds the lease.
#[test]
fn doctor_checks_the_dynamodb_table_without_writing() {
    let moto = Moto::start();
    let lookup = LookupServer::start();
    let setup = Setup::new();
    let config = config(&setup, "d", free_port());
    let doctor = |moto: &Moto| {
        let mut cmd = command(Some(&lookup), Some(moto));
        cmd.env("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint())
            .args(["doctor", "--config"])
            .arg(&config);
        let out = cmd.output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let state_line = |text: &str| -> String {
        text.lines()
            .find(|l| l.contains("rolewatch-replicas"))
            .unwrap_or_else(|| panic!("no state line in:\n{text}"))
            .to_owned()
    };
    let line = state_line(&doctor(&moto));
    assert!(
        line.contains("FAIL") && line.contains("does not exist") && line.contains("create_table"),
        "{line}"
    );
    // Still missing: doctor created nothing.
    let line = state_line(&doctor(&moto));
    assert!(line.contains("does not exist"), "{line}");
    // The vendor's role exists: the replica records its baseline in the table.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sdk = sdk_config(&moto.endpoint()).await;
        aws_sdk_iam::Client::new(&sdk)
            .create_role()
            .role_name(ROLE)
            .assume_role_policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::406882777402:root"},"Action":"sts:AssumeRole"}]}"#,
            )
            .send()
            .await
            .unwrap();
    });
    // A replica runs once on it (creates the table, writes the schema, takes the lease).
    let d = start(&lookup, &moto, &config);
    d.wait_for(
        Duration::from_secs(30),
        "it leads and takes a baseline",
        |d| d.stderr_text().contains("lease_taken") && d.stderr_text().contains("baseline_taken"),
    );
    let text = doctor(&moto);
    let line = state_line(&text);
    assert!(
        line.starts_with("ok") && line.contains("schema version 1") && line.contains("fence 1"),
        "{line}"
    );
    // The role is compared with the baseline read from the table.
    assert!(text.contains("same as the baseline of"), "{text}");
    drop(d);
}
