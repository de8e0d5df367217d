//! Rule packs and pattern lint, end to end: `rolewatch once` with the `complete` and
//! `trail-tamper` packs against the LookupEvents test server alerts on what the vendor's
//! documented pattern misses, and only on the watched role, policy and trail; the lint shows
//! in `validate-config` and in the daemon's log at start.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::support::{cloudtrail_record, LookupServer};
use crate::support::{command, now_secs, run_with, Setup};
use crate::{assert_exit, rolewatch, stderr, stdout};

/// A record of `event_name` from `source` with these request parameters.
fn record(id: &str, source: &str, event_name: &str, params: Value) -> Value {
    let mut r = cloudtrail_record(id, event_name, now_secs() - 120);
    r["eventSource"] = json!(source);
    r["requestParameters"] = params;
    r
}

#[test]
fn packs_alert_on_what_the_documented_pattern_misses_and_only_on_the_watched_things() {
    let server = LookupServer::start();
    let policy = "arn:aws:iam::111122223333:policy/AstronomerCrossAccountRole";
    let role = "astronomer-remote-management";
    server.add_events(&[
        // Missed by the documented pattern (it has the bogus SetPolicyVersion).
        record(
            "set-default",
            "iam.amazonaws.com",
            "SetDefaultPolicyVersion",
            json!({"policyArn": policy, "versionId": "v3"}),
        ),
        record(
            "put-inline",
            "iam.amazonaws.com",
            "PutRolePolicy",
            json!({"roleName": role, "policyName": "extra", "policyDocument": "{}"}),
        ),
        // Matched by both.
        record(
            "attach",
            "iam.amazonaws.com",
            "AttachRolePolicy",
            json!({"roleName": role, "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
        ),
        // Someone else's role and trail: nothing.
        record(
            "other-role",
            "iam.amazonaws.com",
            "PutRolePolicy",
            json!({"roleName": "app-role", "policyName": "x", "policyDocument": "{}"}),
        ),
        record(
            "other-trail",
            "cloudtrail.amazonaws.com",
            "StopLogging",
            json!({"name": "scratch-trail"}),
        ),
        // The trail rolewatch relies on, given by ARN in the call.
        record(
            "stop-logging",
            "cloudtrail.amazonaws.com",
            "StopLogging",
            json!({"name": "arn:aws:cloudtrail:us-east-1:111122223333:trail/management-events"}),
        ),
        record(
            "selectors",
            "cloudtrail.amazonaws.com",
            "PutEventSelectors",
            json!({"trailName": "management-events", "eventSelectors": []}),
        ),
    ]);
    let setup = Setup::new();
    let config = setup.config(
        "[[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\nmax_requests_per_sec = 2\n\
         trail = \"management-events\"\n\n\
         [[rule]]\npack = \"documented\"\n\n\
         [[rule]]\npack = \"complete\"\n\n\
         [[rule]]\npack = \"trail-tamper\"\n\n\
         [admin]\nenabled = false\n",
    );
    let out = run_with(Some(&server), None, &["once"], &config);
    assert_exit(&out, 0);
    let got: BTreeSet<(String, String, String)> = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            (
                v["rule"].as_str().unwrap_or_default().to_owned(),
                v["event_id"].as_str().unwrap_or_default().to_owned(),
                v["severity"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = [
        ("complete", "set-default", "high"),
        ("complete", "put-inline", "high"),
        // Matched by both: one change, one alert, headed by the first rule of the config.
        ("documented", "attach", "high"),
        ("trail-tamper-trail", "stop-logging", "critical"),
        ("trail-tamper-trail", "selectors", "critical"),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    .collect();
    assert_eq!(got, want, "stdout:\n{}", stdout(&out));
    // Without IAM access the alerts still go out, saying why the diff is missing, in words.
    assert!(
        stdout(&out).contains("\"diff_unavailable\":\"the role could not be read: GetRole: dispatch failure: io error: client error (Connect): tcp connect error: Connection refused"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("DispatchFailure {"));
    // The lint of the documented rule, logged at start.
    let err = stderr(&out);
    assert!(
        err.lines().any(|l| l.contains("rule_lint")
            && l.contains("documented")
            && l.contains("did you mean `SetDefaultPolicyVersion`?")),
        "{err}"
    );
}

#[test]
fn validate_config_shows_the_lint_on_stderr_and_keeps_stdout_a_config() {
    let out = rolewatch(["validate-config"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("rolewatch: rule `documented`: warning: `SetPolicyVersion` is not a CloudTrail event name; did you mean `SetDefaultPolicyVersion`?"),
        "{err}"
    );
    assert!(err.contains("misses 11 role-changing events"), "{err}");
    assert!(!stdout(&out).contains("warning"));

    // A user rule with a typo and a value that needs quotes.
    let setup = Setup::new();
    let config = setup.config(
        "[[rule]]\nname = \"mine\"\npattern = '{ $.eventName = PutRolePolcy && $.requestParameters.roleName = astronomer-remote-management }'\n",
    );
    let out = rolewatch(["validate-config", "--config", config.to_str().unwrap()]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("did you mean `PutRolePolicy`?"), "{err}");

    // A pack name that does not exist: a config error naming the packs.
    let config = setup.config("[[rule]]\npack = \"complet\"\n");
    let out = rolewatch(["validate-config", "--config", config.to_str().unwrap()]);
    assert_exit(&out, 78);
    assert!(
        stderr(&out).contains(
            "rule[0].pack: `complet` is not a rule pack: use documented, complete, trail-tamper"
        ),
        "{}",
        stderr(&out)
    );
}

/// A rule that the revision of the language rejects (an unquoted `ERROR:` term) stops the start
/// with exit 78 naming the rule's key, the reason and a caret; one it reads differently (`a-b`
/// is now `a -b`, a space-delimited pattern without `...`) starts, with the lint saying so, at
/// start and in `validate-config`.
#[test]
fn patterns_the_revision_rejects_or_reads_differently() {
    let setup = Setup::new();
    let config = setup.config(
        "[[rule]]\nname = \"documented\"\npack = \"documented\"\n\n\
         [[rule]]\nname = \"legacy\"\npattern = \"ERROR: access denied\"\n",
    );
    let out = command(None, None)
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_exit(&out, 78);
    let err = stderr(&out);
    assert!(
        err.contains("rule[1].pattern: invalid filter pattern at column 6: invalid character(s) in term 'ERROR:'"),
        "{err}"
    );
    // The pattern and the caret under the `:` (column 6), however the report indents them.
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines.windows(2).any(|w| {
            let text = "ERROR: access denied";
            w[0].ends_with(text)
                && w[1].trim_start() == "^"
                && w[1].len() - 1 == w[0].len() - text.len() + 5
        }),
        "{err}"
    );
    let out = rolewatch(["validate-config", "--config", config.to_str().unwrap()]);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("rule[1].pattern"), "{}", stderr(&out));

    let config = setup.config(
        "[[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\n\n\
         [[rule]]\nname = \"hyphen\"\npattern = \"cache-miss\"\n\n\
         [[rule]]\nname = \"fields\"\npattern = \"[level = ERROR, message]\"\n\n\
         [admin]\nenabled = false\n",
    );
    let out = rolewatch(["validate-config", "--config", config.to_str().unwrap()]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("rolewatch: rule `hyphen`: warning: the unquoted term `cache-miss` is read as the terms `cache -miss`"),
        "{err}"
    );
    assert!(
        err.contains("rolewatch: rule `fields`: warning: this space-delimited pattern has no `...`, so an event with more than 2 fields matches too"),
        "{err}"
    );
    // At start (`once`: one poll of an empty trail), the same lint is logged.
    let server = LookupServer::start();
    let out = run_with(Some(&server), None, &["once"], &config);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.contains("rule_lint") && l.contains("hyphen") && l.contains("cache -miss")),
        "{err}"
    );
}
