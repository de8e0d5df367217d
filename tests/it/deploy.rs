//! Deployment files (`deploy/`, `Dockerfile`) and the local demo (`scripts/demo`).
//!
//! - The IAM policy grants exactly the AWS calls the source makes: every SDK operation called
//!   in `src/` maps (through the table below) to an action in `deploy/iam-policy.json`, and the
//!   policy grants nothing else; resources are scoped.
//! - The CloudFormation template and the Kubernetes manifest parse as YAML (PyYAML from the
//!   test venv, with CloudFormation's `!Ref`-style tags) and say what they must.
//! - The systemd units carry the hardening that gives `systemd-analyze security` its figure.
//! - `deploy/build-image.sh --check`: the Dockerfile and the image script agree.
//! - `scripts/demo --yes` reports the alert on stdout and through SNS → SQS.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{python, repo_root};

/// Every AWS SDK operation rolewatch may call, with the IAM action it needs and whether that
/// action belongs in the required policy (`deploy/iam-policy.json`) or in the optional one
/// (`deploy/iam-policy-optional.json`: the change analysis and diagnostics). A new SDK call fails
/// `iam_policy_grants_exactly_the_sdk_calls_in_src` until it is added here and to a policy.
const OPERATIONS: &[(&str, &str, Need)] = &[
    ("lookup_events", "cloudtrail:LookupEvents", Need::Required),
    ("filter_log_events", "logs:FilterLogEvents", Need::Required),
    (
        "describe_log_groups",
        "logs:DescribeLogGroups",
        Need::Required,
    ),
    ("publish", "sns:Publish", Need::Required),
    (
        "get_topic_attributes",
        "sns:GetTopicAttributes",
        Need::Required,
    ),
    // The `sqs` source (src/source/sqs.rs): its queue and dead-letter queue. DeleteMessageBatch
    // is authorised as sqs:DeleteMessage.
    ("receive_message", "sqs:ReceiveMessage", Need::Required),
    ("delete_message_batch", "sqs:DeleteMessage", Need::Required),
    (
        "get_queue_attributes",
        "sqs:GetQueueAttributes",
        Need::Required,
    ),
    // The change analysis (src/intel): reads the vendor's role and its policies; without
    // these an alert says "no IAM read access" instead of what changed.
    ("get_role", "iam:GetRole", Need::Optional),
    ("get_role_policy", "iam:GetRolePolicy", Need::Optional),
    (
        "list_attached_role_policies",
        "iam:ListAttachedRolePolicies",
        Need::Optional,
    ),
    ("list_role_policies", "iam:ListRolePolicies", Need::Optional),
    ("get_policy", "iam:GetPolicy", Need::Optional),
    ("get_policy_version", "iam:GetPolicyVersion", Need::Optional),
    // Diagnostics.
    // Diagnostics (`rolewatch doctor`, src/doctor): a named trail's status and the topic's
    // subscriptions; without them doctor warns that it cannot tell.
    (
        "get_trail_status",
        "cloudtrail:GetTrailStatus",
        Need::Optional,
    ),
    // An `sqs` source naming no trail: is any trail logging IAM calls for EventBridge?
    (
        "describe_trails",
        "cloudtrail:DescribeTrails",
        Need::Optional,
    ),
    (
        "list_subscriptions_by_topic",
        "sns:ListSubscriptionsByTopic",
        Need::Optional,
    ),
    // The EventBridge rule feeding an `sqs` source (named by the queue policy's SourceArn).
    ("describe_rule", "events:DescribeRule", Need::Optional),
    (
        "list_targets_by_rule",
        "events:ListTargetsByRule",
        Need::Optional,
    ),
    // Many accounts (`[[account]]`, `[organization]`; src/aws/assume.rs): the member role,
    // assumed through the STS client every account shares.
    ("assume_role", "sts:AssumeRole", Need::Optional),
    // `[organization]` discovery (src/runtime/organization.rs): the accounts, and the OU walk
    // for `include_ous` / `exclude_ous`.
    (
        "list_accounts",
        "organizations:ListAccounts",
        Need::Optional,
    ),
    (
        "list_accounts_for_parent",
        "organizations:ListAccountsForParent",
        Need::Optional,
    ),
    (
        "list_organizational_units_for_parent",
        "organizations:ListOrganizationalUnitsForParent",
        Need::Optional,
    ),
    // STS GetCallerIdentity (doctor's "who am I", and which discovered account is
    // rolewatch's own) needs no permission: nothing to grant.
    ("get_caller_identity", "", Need::Optional),
    // `rolewatch test-pattern --compare-aws`: run by a person with their own credentials,
    // never by the daemon, so in neither policy (the README says so).
    ("test_metric_filter", "logs:TestMetricFilter", Need::Caller),
    // `[state] backend = "dynamodb"` (src/state/dynamo): the replicas' shared table, granted
    // by deploy/iam-policy-dynamodb.json. A transaction is authorised by the actions of what
    // it does (docs: "Using IAM with DynamoDB transactions"), so it needs four.
    ("describe_table", "dynamodb:DescribeTable", Need::Replicas),
    ("get_item", "dynamodb:GetItem", Need::Replicas),
    ("batch_get_item", "dynamodb:BatchGetItem", Need::Replicas),
    ("query", "dynamodb:Query", Need::Replicas),
    ("put_item", "dynamodb:PutItem", Need::Replicas),
    ("update_item", "dynamodb:UpdateItem", Need::Replicas),
    (
        "batch_write_item",
        "dynamodb:BatchWriteItem",
        Need::Replicas,
    ),
    (
        "transact_write_items",
        "dynamodb:PutItem dynamodb:UpdateItem dynamodb:DeleteItem dynamodb:ConditionCheckItem",
        Need::Replicas,
    ),
    // Only with `create_table = true` (trials, tests): in production the table comes from
    // deploy/cloudformation.yaml, and whoever turns the option on grants this themselves.
    ("create_table", "dynamodb:CreateTable", Need::Caller),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
    /// Needed by the person running a command, not by the daemon: granted by no policy here.
    Caller,
    /// Needed with `[state] backend = "dynamodb"` only: deploy/iam-policy-dynamodb.json.
    Replicas,
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

fn json_file(relative: &str) -> Value {
    serde_json::from_str(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} is not valid JSON: {e}"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The SDK operations called in `src/`: every `client.<op>()` (whitespace and line comments
/// removed first, so a builder chain split over lines is found), with the files calling it.
fn sdk_operations_in_src() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&repo_root().join("src"), &mut files);
    let mut ops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a source file is readable");
        let code: String = text
            .lines()
            .map(|line| match line.find("//") {
                Some(i) => &line[..i],
                None => line,
            })
            .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
            .collect();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("client.") {
            rest = &rest[at + "client.".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            // `client.clone()` hands a client to an async block, `client.config()` reads its
            // configuration: not operations.
            if !name.is_empty()
                && name != "clone"
                && name != "config"
                && rest[name.len()..].starts_with("()")
            {
                let shown = file.strip_prefix(repo_root()).unwrap_or(&file);
                ops.entry(name)
                    .or_default()
                    .insert(shown.display().to_string());
            }
        }
    }
    ops
}

/// The actions a policy document allows, with the resources of each statement.
fn policy_actions(policy: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let statements = policy["Statement"].as_array().expect("Statement is a list");
    for statement in statements {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        let list = |v: &Value| -> Vec<String> {
            match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().expect("a string").to_owned())
                    .collect(),
                other => panic!("not a string or a list: {other}"),
            }
        };
        let resources = list(&statement["Resource"]);
        for action in list(&statement["Action"]) {
            assert!(
                !action.contains('*'),
                "wildcard action {action} in {statement}"
            );
            out.entry(action).or_default().extend(resources.clone());
        }
    }
    out
}

#[test]
fn iam_policy_grants_exactly_the_sdk_calls_in_src() {
    let found = sdk_operations_in_src();
    assert!(
        found.contains_key("lookup_events") && found.contains_key("publish"),
        "the scan of src/ found too little, is it broken? {found:?}"
    );
    let table: BTreeMap<&str, (&str, Need)> = OPERATIONS
        .iter()
        .map(|(op, action, need)| (*op, (*action, *need)))
        .collect();
    // An operation may need several actions (blank-separated).
    let actions_of = |action: &'static str| action.split_whitespace();
    let unknown: Vec<String> = found
        .iter()
        .filter(|(op, _)| !table.contains_key(op.as_str()))
        .map(|(op, files)| format!("{op} (in {files:?})"))
        .collect();
    assert!(
        unknown.is_empty(),
        "AWS SDK calls with no IAM action in tests/it/deploy.rs OPERATIONS: {unknown:?}; add \
         each with its action, and the action to deploy/iam-policy.json"
    );

    let required = policy_actions(&json_file("deploy/iam-policy.json"));
    let optional = policy_actions(&json_file("deploy/iam-policy-optional.json"));
    let replicas = policy_actions(&json_file("deploy/iam-policy-dynamodb.json"));
    let called: BTreeSet<&str> = found
        .keys()
        .filter_map(|op| table.get(op.as_str()))
        .flat_map(|(action, _)| actions_of(action))
        .collect();
    for (op, (actions, need)) in &table {
        if !found.contains_key(*op) {
            continue;
        }
        for action in actions_of(actions) {
            let (policy, name) = match need {
                Need::Required => (&required, "iam-policy.json"),
                Need::Optional => (&optional, "iam-policy-optional.json"),
                Need::Replicas => (&replicas, "iam-policy-dynamodb.json"),
                Need::Caller => {
                    assert!(
                        [&required, &optional, &replicas]
                            .iter()
                            .all(|p| !p.contains_key(action)),
                        "{action} is for the person running {op}, not the daemon: keep it out \
                         of deploy/"
                    );
                    continue;
                }
            };
            assert!(
                policy.contains_key(action),
                "src/ calls {op}, which needs {action}, missing from deploy/{name}"
            );
        }
    }
    // The replicas' policy grants exactly what the DynamoDB backend calls, on its table only.
    let replica_calls: BTreeSet<&str> = found
        .keys()
        .filter_map(|op| table.get(op.as_str()))
        .filter(|(_, need)| *need == Need::Replicas)
        .flat_map(|(action, _)| actions_of(action))
        .collect();
    let granted: BTreeSet<&str> = replicas.keys().map(String::as_str).collect();
    assert_eq!(
        granted, replica_calls,
        "deploy/iam-policy-dynamodb.json and the DynamoDB calls in src/ differ"
    );
    for (action, resources) in &replicas {
        assert!(
            resources.iter().all(|r| r
                .starts_with("arn:aws:dynamodb:*:${aws:PrincipalAccount}:table/")
                && !r.ends_with('*')),
            "{action} on {resources:?}: only the state table"
        );
    }
    // Nothing more: every required action is one the source calls.
    let extra: Vec<&String> = required
        .keys()
        .filter(|a| !called.contains(a.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "deploy/iam-policy.json grants actions src/ never calls: {extra:?}"
    );
    // The optional policy holds only optional calls from the table that src/ makes (or KMS
    // for encrypted topics).
    for action in optional.keys() {
        assert!(
            action.starts_with("kms:")
                || OPERATIONS.iter().any(|(_, a, need)| {
                    actions_of(a).any(|a| a == action) && *need == Need::Optional
                }),
            "deploy/iam-policy-optional.json grants {action}, which is not in OPERATIONS"
        );
        assert!(
            action.starts_with("kms:") || called.contains(action.as_str()),
            "deploy/iam-policy-optional.json grants {action}, which src/ never calls"
        );
    }
}

#[test]
fn iam_policy_scopes_every_resource_it_can() {
    let required = policy_actions(&json_file("deploy/iam-policy.json"));
    for (action, resources) in &required {
        if action == "cloudtrail:LookupEvents" {
            // LookupEvents supports no resource-level permissions.
            assert_eq!(resources, &["*"]);
            continue;
        }
        for resource in resources {
            assert!(
                resource.starts_with("arn:aws:") && resource.contains("${aws:PrincipalAccount}"),
                "{action}: resource {resource} is not scoped to the account"
            );
        }
        let service = action.split(':').next().unwrap();
        assert!(
            resources
                .iter()
                .all(|r| r.starts_with(&format!("arn:aws:{service}:"))),
            "{action}: a resource of another service in {resources:?}"
        );
    }
    for resource in &required["sns:Publish"] {
        assert!(
            resource.contains(":rolewatch-alerts"),
            "sns:Publish on {resource}: not the alert topic"
        );
    }
    for resource in &required["logs:FilterLogEvents"] {
        assert!(
            resource.contains(":log-group:aws-cloudtrail-logs-"),
            "logs:FilterLogEvents on {resource}: not the trail's log group"
        );
    }

    // The optional reads too: the account's own resources (or AWS-managed policies), and the
    // diagnostics only on trails and the alert topic.
    let optional = policy_actions(&json_file("deploy/iam-policy-optional.json"));
    for (action, resources) in &optional {
        for resource in resources {
            if action == "cloudtrail:DescribeTrails" {
                // It has no resource-level permission (the Service Authorization Reference):
                // "*" is the only resource it takes.
                assert_eq!(resource, "*", "{action}");
                continue;
            }
            if action.starts_with("organizations:") {
                // The organization's own listing, from the management or delegated-admin
                // account: granted on "*".
                assert_eq!(resource, "*", "{action}");
                continue;
            }
            if action == "sts:AssumeRole" {
                // The member role in any account — of rolewatch's own organization only (the
                // statement's aws:ResourceOrgID condition, checked below).
                assert_eq!(resource, "arn:aws:iam::*:role/rolewatch-member", "{action}");
                continue;
            }
            assert!(
                resource.starts_with("arn:aws:")
                    && (resource.contains("${aws:PrincipalAccount}")
                        || resource == "arn:aws:iam::aws:policy/*"),
                "{action}: resource {resource} is not scoped to the account"
            );
        }
    }
    let assume = json_file("deploy/iam-policy-optional.json")["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Action"] == "sts:AssumeRole")
        .cloned()
        .expect("a statement for sts:AssumeRole alone");
    assert_eq!(
        assume["Condition"]["StringEquals"]["aws:ResourceOrgID"], "${aws:PrincipalOrgID}",
        "the member role only in rolewatch's own organization: {assume}"
    );
    for resource in &optional["cloudtrail:GetTrailStatus"] {
        assert!(
            resource.starts_with("arn:aws:cloudtrail:") && resource.contains(":trail/"),
            "cloudtrail:GetTrailStatus on {resource}: not trails"
        );
    }
    for resource in &optional["sns:ListSubscriptionsByTopic"] {
        assert!(
            resource.contains(":rolewatch-alerts"),
            "sns:ListSubscriptionsByTopic on {resource}: not the alert topic"
        );
    }
}

/// Loads a YAML file (all documents) as JSON, through PyYAML in the test venv; CloudFormation's
/// short-form tags (`!Ref X`) become `{"Ref": X}` / `{"Fn::Sub": …}`.
fn yaml_documents(relative: &str) -> Vec<Value> {
    const LOADER: &str = r#"
import json, sys, yaml
class Loader(yaml.SafeLoader):
    pass
def tag(loader, suffix, node):
    name = suffix if suffix in ("Ref", "Condition") else "Fn::" + suffix
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}
Loader.add_multi_constructor("!", tag)
with open(sys.argv[1]) as f:
    print(json.dumps(list(yaml.load_all(f, Loader=Loader))))
"#;
    let python = python();
    let output = Command::new(&python)
        .arg("-c")
        .arg(LOADER)
        .arg(repo_root().join(relative))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        output.status.success(),
        "{relative} does not parse as YAML (PyYAML from {}; ./scripts/test installs it with \
         moto): {}",
        python.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the loader prints JSON")
}

#[test]
fn cloudformation_template_grants_the_policy_to_ec2_and_ecs() {
    let docs = yaml_documents("deploy/cloudformation.yaml");
    let template = &docs[0];
    let resources = template["Resources"]
        .as_object()
        .expect("the template has Resources");
    let of_type = |t: &str| -> Vec<(&String, &Value)> {
        resources.iter().filter(|(_, r)| r["Type"] == t).collect()
    };

    let roles = of_type("AWS::IAM::Role");
    assert_eq!(roles.len(), 1, "one role for rolewatch");
    let trust = &roles[0].1["Properties"]["AssumeRolePolicyDocument"]["Statement"];
    let principals: BTreeSet<&str> = trust
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Principal"]["Service"].as_str().unwrap())
        .collect();
    assert_eq!(
        principals,
        BTreeSet::from(["ec2.amazonaws.com", "ecs-tasks.amazonaws.com"])
    );
    assert_eq!(of_type("AWS::IAM::InstanceProfile").len(), 1);

    // The topic and its email subscription are optional, behind conditions.
    for t in ["AWS::SNS::Topic", "AWS::SNS::Subscription"] {
        let found = of_type(t);
        assert_eq!(found.len(), 1, "{t}");
        let condition = found[0].1["Condition"].as_str().expect("a Condition");
        assert!(template["Conditions"][condition].is_object(), "{condition}");
    }

    // The role's policies have the statements of deploy/iam-policy.json and (optional,
    // behind a condition) of deploy/iam-policy-optional.json, KMS aside: the same actions.
    let file = |name: &str| -> BTreeSet<String> {
        policy_actions(&json_file(name))
            .into_keys()
            .filter(|a| !a.starts_with("kms:"))
            .collect()
    };
    assert_eq!(
        template_policy_actions(&resources["RolewatchPolicy"]),
        file("deploy/iam-policy.json"),
        "the template's RolewatchPolicy and deploy/iam-policy.json differ"
    );
    let optional = &resources["RolewatchOptionalPolicy"];
    assert!(optional["Condition"].is_string());
    assert_eq!(
        template_policy_actions(optional),
        file("deploy/iam-policy-optional.json"),
        "the template's RolewatchOptionalPolicy and deploy/iam-policy-optional.json differ"
    );

    // The replicas' table and its grant, behind a condition (empty StateTable: SQLite only).
    let table = &resources["StateTableResource"];
    assert_eq!(table["Type"], "AWS::DynamoDB::Table");
    assert!(template["Conditions"][table["Condition"].as_str().unwrap()].is_object());
    assert_eq!(table["DeletionPolicy"], "Retain");
    let props = &table["Properties"];
    assert_eq!(props["BillingMode"], "PAY_PER_REQUEST");
    let keys: Vec<(&str, &str)> = props["KeySchema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap(),
                k["KeyType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys, [("pk", "HASH"), ("sk", "RANGE")]);
    assert!(
        props.get("TimeToLiveSpecification").is_none(),
        "expiry is rolewatch's own, never TTL"
    );
    let state = &resources["RolewatchStatePolicy"];
    assert_eq!(state["Condition"], table["Condition"]);
    assert_eq!(
        template_policy_actions(state),
        file("deploy/iam-policy-dynamodb.json"),
        "the template's RolewatchStatePolicy and deploy/iam-policy-dynamodb.json differ"
    );
    let resource = &state["Properties"]["PolicyDocument"]["Statement"][0]["Resource"];
    assert_eq!(
        resource["Fn::GetAtt"][0], "StateTableResource",
        "{resource}"
    );
}

/// The actions of an `AWS::IAM::RolePolicy` resource (statements behind `!If [Cond, S,
/// !Ref AWS::NoValue]` included).
fn template_policy_actions(resource: &Value) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    let statements = resource["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .expect("a policy document");
    for statement in statements {
        let statement = match statement.get("Fn::If") {
            Some(branches) => &branches[1],
            None => statement,
        };
        match &statement["Action"] {
            Value::String(a) => {
                actions.insert(a.clone());
            }
            Value::Array(list) => {
                actions.extend(list.iter().map(|a| a.as_str().unwrap().to_owned()));
            }
            other => panic!("Action {other}"),
        }
    }
    actions
}

#[test]
fn kubernetes_manifest_runs_non_root_with_probes_and_a_state_volume() {
    let docs = yaml_documents("deploy/kubernetes.yaml");
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"PersistentVolumeClaim"), "{kinds:?}");
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1, "one process per state");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["ports"][0]["containerPort"], 9464);
    assert!(container["resources"]["limits"]["memory"].is_string());
    let state_mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/var/lib/rolewatch")
        .expect("the state is mounted");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == state_mount["name"])
        .unwrap();
    assert_eq!(
        volume["persistentVolumeClaim"]["claimName"],
        "rolewatch-state"
    );
}

#[test]
fn ecs_task_definition_runs_non_root_read_only_with_the_state_volume() {
    let task = json_file("deploy/ecs-task-definition.json");
    let container = &task["containerDefinitions"][0];
    assert_eq!(container["user"], "65532:65532");
    assert_eq!(container["readonlyRootFilesystem"], true);
    assert_eq!(
        container["mountPoints"][0]["containerPath"],
        "/var/lib/rolewatch"
    );
    assert!(task["taskRoleArn"].as_str().unwrap().contains(":role/"));
    // The health check runs the probe subcommand, the same way the Dockerfile does.
    let probe: Vec<&str> = container["healthCheck"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        probe[..3],
        ["CMD", "/usr/local/bin/rolewatch", "healthcheck"]
    );
    // Its arguments parse (a usage error would be exit 2): it answers ok or FAILED.
    let out = Command::new(env!("CARGO_BIN_EXE_rolewatch"))
        .args(&probe[2..])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 1))
            && (text.starts_with("ok 200 ") || text.starts_with("FAILED ")),
        "{:?} {text}",
        out.status
    );
}

/// The effective configuration `rolewatch validate-config` prints for `config` (a file, or
/// None: the built-in defaults) with `env` set; panics when it is refused.
fn validated(config: Option<&Path>, env: &[(String, String)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rolewatch"));
    cmd.arg("validate-config").env_remove("STATE_DIRECTORY");
    for (k, _) in std::env::vars() {
        if k.starts_with("ROLEWATCH__") {
            cmd.env_remove(k);
        }
    }
    if let Some(path) = config {
        cmd.arg("--config").arg(path);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "validate-config refused it: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The replicas' examples: two of each, no state volume, on the DynamoDB backend — and the
/// configuration each carries is one rolewatch accepts.
#[test]
fn replica_manifests_run_two_on_the_dynamodb_state() {
    let docs = yaml_documents("deploy/replicas/kubernetes.yaml");
    let of_kind = |k: &str| docs.iter().find(|d| d["kind"] == k);
    assert!(of_kind("PersistentVolumeClaim").is_none(), "no volume");
    let deployment = of_kind("Deployment").expect("a Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["mountPath"] != "/var/lib/rolewatch"));
    let pdb = of_kind("PodDisruptionBudget").expect("a PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let toml = of_kind("ConfigMap").unwrap()["data"]["rolewatch.toml"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rolewatch.toml");
    std::fs::write(&path, toml).unwrap();
    let effective = validated(Some(&path), &[]);
    assert!(
        effective.contains("backend = \"dynamodb\"") && effective.contains("rolewatch-state"),
        "{effective}"
    );

    let task = json_file("deploy/replicas/ecs-task-definition.json");
    assert!(task.get("volumes").is_none(), "no volume");
    let container = &task["containerDefinitions"][0];
    assert_eq!(container["user"], "65532:65532");
    assert_eq!(container["readonlyRootFilesystem"], true);
    assert!(container.get("mountPoints").is_none());
    let env: Vec<(String, String)> = container["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let effective = validated(None, &env);
    assert!(
        effective.contains("backend = \"dynamodb\"") && effective.contains("rolewatch-state"),
        "{effective}"
    );
    let service = json_file("deploy/replicas/ecs-service.json");
    assert_eq!(service["desiredCount"], 2);
    assert_eq!(service["taskDefinition"], task["family"]);
    assert!(service["deploymentConfiguration"]["minimumHealthyPercent"].as_u64() >= Some(50));
    let subnets = service["networkConfiguration"]["awsvpcConfiguration"]["subnets"]
        .as_array()
        .unwrap();
    assert!(subnets.len() >= 2, "subnets in two zones");
}

/// `Key=value` lines of a unit file (later assignments of one key are all kept).
fn unit_settings(relative: &str) -> Vec<(String, String)> {
    read(relative)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn systemd_units_carry_the_hardening() {
    // What `systemd-analyze security --offline=true` rates (1.1 for both units, see
    // deploy/README.md); each of these is worth a share of that figure.
    let hardening = [
        ("DynamicUser", "yes"),
        ("StateDirectory", "rolewatch"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("SystemCallFilter", "~@privileged @resources"),
        ("SystemCallArchitectures", "native"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("ProtectProc", "invisible"),
        ("ProcSubset", "pid"),
        ("UMask", "0077"),
        ("EnvironmentFile", "-/etc/rolewatch/env"),
        (
            "ExecStartPre",
            "/usr/local/bin/rolewatch validate-config --config /etc/rolewatch/rolewatch.toml",
        ),
    ];
    for unit in ["deploy/rolewatch.service", "deploy/rolewatch-once.service"] {
        let settings = unit_settings(unit);
        for (key, value) in hardening {
            assert!(
                settings.iter().any(|(k, v)| k == key && v == value),
                "{unit}: no {key}={value}"
            );
        }
        assert!(
            settings
                .iter()
                .any(|(k, v)| k == "LoadCredential" && v.starts_with("smtp-password:")),
            "{unit}: no LoadCredential for the SMTP password"
        );
    }
    let daemon = unit_settings("deploy/rolewatch.service");
    for (key, value) in [("Type", "notify"), ("Restart", "on-failure")] {
        assert!(daemon.iter().any(|(k, v)| k == key && v == value), "{key}");
    }
    assert!(daemon.iter().any(|(k, _)| k == "WatchdogSec"));
    assert!(daemon.iter().any(|(k, v)| k == "ExecStart"
        && v.ends_with("rolewatch run --config /etc/rolewatch/rolewatch.toml")));
    let once = unit_settings("deploy/rolewatch-once.service");
    assert!(once
        .iter()
        .any(|(k, v)| k == "ExecStart" && v.contains("rolewatch once ")));
    let timer = unit_settings("deploy/rolewatch.timer");
    assert!(timer
        .iter()
        .any(|(k, v)| k == "Unit" && v == "rolewatch-once.service"));
}

#[test]
fn build_image_check_accepts_the_dockerfile_and_catches_a_disagreement() {
    let ok = Command::new(repo_root().join("deploy/build-image.sh"))
        .arg("--check")
        .output()
        .expect("deploy/build-image.sh runs");
    assert!(
        ok.status.success(),
        "build-image.sh --check failed: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("agree"));

    // The same script beside a Dockerfile that runs as root: refused, naming the problem.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("deploy")).unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::copy(
        repo_root().join("deploy/build-image.sh"),
        dir.path().join("deploy/build-image.sh"),
    )
    .unwrap();
    std::fs::copy(
        repo_root().join("src/cli.rs"),
        dir.path().join("src/cli.rs"),
    )
    .unwrap();
    let err = refused_by_the_check(
        dir.path(),
        &read("Dockerfile").replace("USER 65532:65532", "USER root"),
    );
    assert!(err.contains("run as uid 65532"), "{err}");

    // A HEALTHCHECK running a subcommand the CLI does not have: refused.
    assert!(read("Dockerfile").contains("\"healthcheck\""));
    let err = refused_by_the_check(
        dir.path(),
        &read("Dockerfile").replace("\"healthcheck\"", "\"healthprobe\""),
    );
    assert!(err.contains("`rolewatch healthprobe`"), "{err}");
}

/// Writes `dockerfile` into `dir` (a copy of `deploy/build-image.sh` and `src/cli.rs`), runs
/// the copied `build-image.sh --check`, asserts that it exits 1 and returns its stderr.
#[track_caller]
fn refused_by_the_check(dir: &Path, dockerfile: &str) -> String {
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    let bad = Command::new("bash")
        .arg(dir.join("deploy/build-image.sh"))
        .arg("--check")
        .output()
        .expect("the copy runs");
    assert_eq!(bad.status.code(), Some(1));
    String::from_utf8_lossy(&bad.stderr).into_owned()
}

#[test]
fn demo_shows_the_alert_on_stdout_and_through_sns() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(repo_root().join("scripts/demo"))
        .arg("--yes")
        .env("ROLEWATCH_BIN", env!("CARGO_BIN_EXE_rolewatch"))
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("scripts/demo starts");
    let stdout = crate::support::drain_to_log(child.stdout.take().unwrap());
    let stderr = crate::support::drain_to_log(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // SIGTERM first so that the demo's trap stops the servers it started.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            std::thread::sleep(Duration::from_secs(3));
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "scripts/demo did not finish within 180 s; stdout:\n{}\nstderr:\n{}",
                crate::support::log_text(&stdout),
                crate::support::log_text(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Let the reader threads take the last lines.
    std::thread::sleep(Duration::from_millis(200));
    let out = crate::support::log_text(&stdout);
    let err = crate::support::log_text(&stderr);
    assert!(
        status.success(),
        "scripts/demo failed ({status}); stdout:\n{out}\nstderr:\n{err}"
    );
    for expected in [
        "Event:     AttachRolePolicy",
        "Role:      astronomer-remote-management",
        // The subject may carry the change analysis' verdict (`[HIGH] WIDENED AttachRolePolicy`).
        "Subject: [",
        "AttachRolePolicy on astronomer-remote-management by jane.doe@example.com",
        "Attribute event_name: AttachRolePolicy",
        "DEMO OK",
    ] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }
    // The trap removed the demo's temporary directory.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "scripts/demo left {left:?}");
}

// ---------------------------------------------------------------------------------------
// Alerts on the watcher (issue 16 §3): Prometheus rules and a Grafana dashboard.
// ---------------------------------------------------------------------------------------

/// `promtool`, from Debian's `prometheus` package (scripts/test installs it).
fn promtool() -> Command {
    let ok = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "promtool is not installed: scripts/test installs it (Debian package `prometheus`)"
    );
    let mut cmd = Command::new("promtool");
    cmd.current_dir(repo_root().join("deploy/prometheus"));
    cmd
}

#[test]
fn prometheus_alert_rules_pass_promtool_check_and_their_unit_tests() {
    for args in [
        &["check", "rules", "rolewatch-alerts.yml"][..],
        &["test", "rules", "rolewatch-alerts.test.yml"][..],
    ] {
        let out = promtool().args(args).output().expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The metric families a running `rolewatch run` exposes on `/metrics` (OpenMetrics `# TYPE`
/// lines: counter families without `_total`).
fn exposed_families() -> BTreeSet<String> {
    use crate::support::{free_port, http, Daemon, LookupServer, Setup};
    let server = LookupServer::start();
    let setup = Setup::new();
    let port = free_port();
    let config = setup.config(&format!(
        "[[source]]\ntype = \"cloudtrail\"\nname = \"ct\"\nsweep_interval_secs = 0\n\n\
         [admin]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    let daemon = Daemon::start(&server, &config);
    let text = std::cell::RefCell::new(String::new());
    daemon.wait_for(
        Duration::from_secs(30),
        "/metrics after a poll",
        |_| match http(port, "GET", "/metrics", &[], b"") {
            Ok(r) if r.status == 200 => {
                let body = String::from_utf8_lossy(&r.body).into_owned();
                let done = body.contains("rolewatch_poll_completed_total{source=\"ct\"} 1");
                *text.borrow_mut() = body;
                done
            }
            _ => false,
        },
    );
    let text = text.into_inner();
    let (status, _, err) = daemon.stop("-TERM");
    assert!(status.success(), "{err}");
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Every `rolewatch_…` name in `text`, as its family (without a sample suffix).
fn queried_families(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("rolewatch_") {
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_owned();
        out.insert(family);
    }
    out
}

#[test]
fn the_dashboard_and_the_alert_rules_query_only_metrics_rolewatch_exposes() {
    let dashboard = json_file("deploy/grafana/rolewatch-dashboard.json");
    assert_eq!(dashboard["title"], "rolewatch");
    let mut exprs = String::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(panel["title"].is_string(), "{panel}");
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push_str(target["expr"].as_str().expect("an expr"));
            exprs.push('\n');
        }
    }
    let dashboard_families = queried_families(&exprs);
    let rules_families = queried_families(&read("deploy/prometheus/rolewatch-alerts.yml"));
    assert!(dashboard_families.len() >= 15, "{dashboard_families:?}");
    assert!(rules_families.len() >= 5, "{rules_families:?}");
    let exposed = exposed_families();
    assert!(exposed.contains("rolewatch_poll_completed"), "{exposed:?}");
    for (what, families) in [
        ("the dashboard", &dashboard_families),
        ("the alert rules", &rules_families),
    ] {
        let missing: Vec<&String> = families.difference(&exposed).collect();
        assert!(
            missing.is_empty(),
            "{what} queries metrics /metrics does not have: {missing:?}\nexposed: {exposed:?}"
        );
    }
}

/// The EventBridge → SQS template: the rule targets the queue with a DLQ, the queue redrives
/// to the DLQ (which keeps messages longer), both use SSE-SQS (never `alias/aws/sqs`, which
/// EventBridge cannot use), and only this rule may send (issue 13).
#[test]
fn eventbridge_queue_template_has_rule_queue_dlq_policy_and_sse_sqs() {
    let docs = yaml_documents("deploy/eventbridge-queue.yaml");
    let r = &docs[0]["Resources"];
    let (queue, dlq, rule, policy) = (
        &r["EventQueue"]["Properties"],
        &r["DeadLetterQueue"]["Properties"],
        &r["IamChangesRule"]["Properties"],
        &r["EventQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0],
    );
    for q in [queue, dlq] {
        assert_eq!(q["SqsManagedSseEnabled"], true, "{q}");
        assert!(q.get("KmsMasterKeyId").is_none(), "{q}");
    }
    assert!(
        dlq["MessageRetentionPeriod"].as_u64() > queue["MessageRetentionPeriod"].as_u64(),
        "the DLQ must keep messages longer than the queue"
    );
    assert_eq!(
        queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"],
        json!(["DeadLetterQueue", "Arn"])
    );
    assert_eq!(rule["State"], "ENABLED");
    assert_eq!(rule["EventPattern"]["source"], json!(["aws.iam"]));
    assert_eq!(
        rule["EventPattern"]["detail-type"],
        json!(["AWS API Call via CloudTrail"])
    );
    let target = &rule["Targets"][0];
    assert_eq!(target["Arn"]["Fn::GetAtt"], json!(["EventQueue", "Arn"]));
    assert_eq!(
        target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"],
        json!(["DeadLetterQueue", "Arn"])
    );
    assert_eq!(policy["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(policy["Action"], "sqs:SendMessage");
    assert_eq!(
        policy["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::GetAtt"],
        json!(["IamChangesRule", "Arn"])
    );
}

/// The StackSet template of the member role (issue 14): trusted only with the ExternalId, and
/// granting in the member exactly what a per-account source and the change analysis call
/// there (LookupEvents, GetTrailStatus, and the analysis's IAM reads, as in the policies).
#[test]
fn member_role_stackset_trusts_with_the_external_id_and_grants_the_member_side_calls() {
    let docs = yaml_documents("deploy/member-role-stackset.yaml");
    let role = &docs[0]["Resources"]["MemberRole"]["Properties"];
    let trust = &role["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(trust["Action"], "sts:AssumeRole");
    assert_eq!(
        trust["Condition"]["StringEquals"]["sts:ExternalId"],
        json!({"Ref": "ExternalId"})
    );
    assert_eq!(docs[0]["Parameters"]["ExternalId"]["NoEcho"], true);
    let mut granted: Vec<String> = role["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    granted.sort();
    // The same actions the single-account policies grant for these calls.
    let required = policy_actions(&json_file("deploy/iam-policy.json"));
    let optional = policy_actions(&json_file("deploy/iam-policy-optional.json"));
    let mut expected: Vec<String> = required
        .keys()
        .chain(optional.keys())
        .filter(|a| {
            *a == "cloudtrail:LookupEvents"
                || *a == "cloudtrail:GetTrailStatus"
                || a.starts_with("iam:")
        })
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(granted, expected);
}
