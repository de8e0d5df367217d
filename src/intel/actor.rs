//! Who acted — the vendor, an AWS service, or your side — and how that and the verdict make
//! the alert's final severity. Pure.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::policy::Verdict;
use crate::config::VendorConfig;
use crate::rules::Severity;

/// The class of the principal that made the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActorClass {
    /// A session of the watched role, or any principal of the vendor's account.
    Vendor,
    /// An AWS service principal: `userIdentity.type` is `AWSService`, or the caller is a
    /// session of a service-linked role (path `/aws-service-role/`). A service acting with a
    /// person's credentials (`invokedBy` on an IAM user's or a role session's call: the
    /// console, CloudFormation) is that person, not a service: see [`via`].
    AwsService,
    /// Anyone else: your people and your automation.
    Yours,
}

impl ActorClass {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ActorClass::Vendor => "vendor",
            ActorClass::AwsService => "aws-service",
            ActorClass::Yours => "yours",
        }
    }
}

impl fmt::Display for ActorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of the record's caller, and whether it matched `allowed_principals`.
///
/// The class says who acted, never how: `invokedBy` (the console, CloudFormation, another
/// service acting with the caller's credentials) does not change it; [`via`] says how.
#[must_use]
pub fn classify(record: &Value, vendor: &VendorConfig) -> (ActorClass, bool) {
    let ui = record.get("userIdentity");
    let s = |path: &str| {
        ui.and_then(|u| u.pointer(path))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let arn = s("/arn");
    let issuer = s("/sessionContext/sessionIssuer/arn");
    let account = s("/accountId");
    let allowed = [arn, issuer]
        .iter()
        .any(|a| !a.is_empty() && vendor.allowed_principals.iter().any(|g| arn_glob(g, a)));
    let role_session = format!(":assumed-role/{}/", vendor.role_name);
    let role_arn_suffix = format!(":role/{}", vendor.role_name);
    let class = if account == vendor.account_id
        || arn.contains(&role_session)
        || issuer.ends_with(&role_arn_suffix)
        || arn_account(arn) == Some(vendor.account_id.as_str())
    {
        ActorClass::Vendor
    } else if s("/type") == "AWSService"
        || is_service_linked_role(arn)
        || is_service_linked_role(issuer)
    {
        ActorClass::AwsService
    } else {
        ActorClass::Yours
    };
    (class, allowed)
}

/// A service-linked role, or a session of one: its ARN has the path `/aws-service-role/`.
fn is_service_linked_role(arn: &str) -> bool {
    arn.starts_with("arn:") && arn.contains(":role/aws-service-role/")
}

/// The longest service name [`via`] repeats from the record.
const VIA_MAX_CHARS: usize = 64;

/// How the caller acted when a service made the call with its credentials
/// (`userIdentity.invokedBy`): `the console` for `signin.amazonaws.com`, `CloudFormation`,
/// or the service's name as the record gives it (at most 64 characters). `None` when the
/// call was direct, and for an AWS service principal (it is the actor itself).
#[must_use]
pub fn via(record: &Value) -> Option<String> {
    let ui = record.get("userIdentity")?;
    let text = |path: &str| ui.pointer(path).and_then(Value::as_str).unwrap_or("");
    if text("/type") == "AWSService"
        || is_service_linked_role(text("/arn"))
        || is_service_linked_role(text("/sessionContext/sessionIssuer/arn"))
    {
        return None;
    }
    let by = ui
        .get("invokedBy")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|b| !b.is_empty())?;
    let known = match by {
        "signin.amazonaws.com" | "console.amazonaws.com" => Some("the console"),
        "cloudformation.amazonaws.com" => Some("CloudFormation"),
        "servicecatalog.amazonaws.com" => Some("Service Catalog"),
        "sso.amazonaws.com" => Some("IAM Identity Center"),
        "controltower.amazonaws.com" => Some("Control Tower"),
        "AWS Internal" => Some("AWS internally"),
        _ => None,
    };
    Some(match known {
        Some(k) => k.to_owned(),
        None => by.chars().take(VIA_MAX_CHARS).collect(),
    })
}

fn arn_account(arn: &str) -> Option<&str> {
    arn.strip_prefix("arn:")?.split(':').nth(3)
}

/// An ARN glob of `allowed_principals`: `*` any run, `?` one character, case-sensitive.
#[must_use]
pub fn arn_glob(glob: &str, arn: &str) -> bool {
    // A literal ARN has no wildcard: covering it as a glob is matching it.
    super::policy::glob_covers(glob, arn) && !arn.contains(['*', '?'])
}

/// The final severity and the sentence that explains it.
///
/// * the base is the rule's severity;
/// * any change that certainly grants more raises it to at least `high`;
/// * a change by a principal of your side that is not in `allowed_principals` raises it to at
///   least `high` (a failed call too: someone tried);
/// * a narrowing by the vendor (verdict `narrowed`, nothing widened) lowers it to `info`: the
///   vendor may narrow without notice, and that is the one case below the base;
/// * nothing else changes it.
#[must_use]
pub fn final_severity(
    base: Severity,
    class: ActorClass,
    allowlisted: bool,
    verdict: Verdict,
    any_widening: bool,
) -> (Severity, String) {
    if any_widening || verdict == Verdict::Widened {
        return (
            base.max(Severity::High),
            format!("access widened: at least high (rule: {base})"),
        );
    }
    if class == ActorClass::Yours && !allowlisted {
        return (
            base.max(Severity::High),
            format!(
                "changed by a principal outside allowed_principals: at least high (rule: {base})"
            ),
        );
    }
    if class == ActorClass::Vendor && verdict == Verdict::Narrowed {
        return (
            Severity::Info,
            format!("the vendor narrowed its own access: info (rule: {base})"),
        );
    }
    (base, format!("the rule's severity ({base})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vendor() -> VendorConfig {
        VendorConfig {
            allowed_principals: vec!["arn:aws:iam::111122223333:role/terraform-*".into()],
            ..VendorConfig::default()
        }
    }

    /// Real `userIdentity` shapes (as CloudTrail writes them), each with the class, the
    /// "via" and the severity it must get for a change that is neither a widening nor a
    /// vendor's narrowing, under a rule of severity `low`.
    #[test]
    fn actor_class_from_who_acted_not_from_how() {
        use Severity::*;
        let v = vendor();
        let sso_issuer = "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_AdministratorAccess_0123456789abcdef";
        let sso = |invoked_by: Option<&str>, mfa: &str| {
            let mut ui = json!({"type": "AssumedRole",
                "principalId": "AROAEXAMPLESSO123456:alice@example.com",
                "arn": "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_AdministratorAccess_0123456789abcdef/alice@example.com",
                "accountId": "111122223333", "accessKeyId": "ASIAEXAMPLE123456789",
                "sessionContext": {"sessionIssuer": {"type": "Role",
                    "principalId": "AROAEXAMPLESSO123456", "arn": sso_issuer,
                    "accountId": "111122223333",
                    "userName": "AWSReservedSSO_AdministratorAccess_0123456789abcdef"},
                    "webIdFederationData": {},
                    "attributes": {"creationDate": "2026-12-01T09:00:00Z", "mfaAuthenticated": mfa}}});
            if let Some(by) = invoked_by {
                ui["invokedBy"] = json!(by);
            }
            ui
        };
        let iam_user = |invoked_by: Option<&str>, mfa: Option<&str>| {
            let mut ui = json!({"type": "IAMUser", "principalId": "AIDAEXAMPLEALICE1234",
                "arn": "arn:aws:iam::111122223333:user/alice", "accountId": "111122223333",
                "accessKeyId": "AKIAEXAMPLEKEY123456", "userName": "alice"});
            if let Some(by) = invoked_by {
                ui["invokedBy"] = json!(by);
            }
            if let Some(mfa) = mfa {
                ui["sessionContext"] = json!({"sessionIssuer": {}, "webIdFederationData": {},
                    "attributes": {"creationDate": "2026-12-01T09:00:00Z", "mfaAuthenticated": mfa}});
            }
            ui
        };
        let vendor_session = json!({"type": "AssumedRole",
            "principalId": "AROAEXAMPLEVENDOR123:astro-ops",
            "arn": "arn:aws:sts::111122223333:assumed-role/astronomer-remote-management/astro-ops",
            "accountId": "111122223333", "accessKeyId": "ASIAEXAMPLEVENDOR123",
            "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLEVENDOR123",
                "arn": "arn:aws:iam::111122223333:role/astronomer-remote-management",
                "accountId": "111122223333", "userName": "astronomer-remote-management"},
                "attributes": {"creationDate": "2026-12-01T09:00:00Z", "mfaAuthenticated": "false"}}});
        let mut vendor_console = vendor_session.clone();
        vendor_console["invokedBy"] = json!("signin.amazonaws.com");
        let terraform_cfn = json!({"type": "AssumedRole",
            "principalId": "AROAEXAMPLETERRAFORM:run-1",
            "arn": "arn:aws:sts::111122223333:assumed-role/terraform-ci/run-1",
            "accountId": "111122223333", "invokedBy": "cloudformation.amazonaws.com",
            "sessionContext": {"sessionIssuer": {"type": "Role",
                "arn": "arn:aws:iam::111122223333:role/terraform-ci", "accountId": "111122223333",
                "userName": "terraform-ci"}}});
        let service_linked = json!({"type": "AssumedRole",
            "principalId": "AROAEXAMPLESLR123456:AutoScaling",
            "arn": "arn:aws:sts::111122223333:assumed-role/AWSServiceRoleForAutoScaling/AutoScaling",
            "accountId": "111122223333", "invokedBy": "autoscaling.amazonaws.com",
            "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLESLR123456",
                "arn": "arn:aws:iam::111122223333:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
                "accountId": "111122223333", "userName": "AWSServiceRoleForAutoScaling"}}});
        // A role of yours merely named like a service-linked one (no reserved path).
        let look_alike = json!({"type": "AssumedRole",
            "arn": "arn:aws:sts::111122223333:assumed-role/AWSServiceRoleForFake/s",
            "accountId": "111122223333", "invokedBy": "autoscaling.amazonaws.com",
            "sessionContext": {"sessionIssuer": {"type": "Role",
                "arn": "arn:aws:iam::111122223333:role/AWSServiceRoleForFake"}}});
        /// Name, `userIdentity`, class, allowlisted, via, severity.
        type Case<'a> = (&'a str, Value, ActorClass, bool, Option<&'a str>, Severity);
        let cases: Vec<Case> = vec![
            (
                "IAM user, CLI",
                iam_user(None, None),
                ActorClass::Yours,
                false,
                None,
                High,
            ),
            (
                "IAM user at the console with MFA",
                iam_user(Some("signin.amazonaws.com"), Some("true")),
                ActorClass::Yours,
                false,
                Some("the console"),
                High,
            ),
            (
                "IAM user at the console without MFA",
                iam_user(Some("signin.amazonaws.com"), Some("false")),
                ActorClass::Yours,
                false,
                Some("the console"),
                High,
            ),
            (
                "IAM user through CloudFormation (no service role)",
                iam_user(Some("cloudformation.amazonaws.com"), None),
                ActorClass::Yours,
                false,
                Some("CloudFormation"),
                High,
            ),
            (
                "IAM user through another service",
                iam_user(Some("servicecatalog.amazonaws.com"), None),
                ActorClass::Yours,
                false,
                Some("Service Catalog"),
                High,
            ),
            (
                "IAM user through an unknown service",
                iam_user(Some("example.amazonaws.com"), None),
                ActorClass::Yours,
                false,
                Some("example.amazonaws.com"),
                High,
            ),
            (
                "SSO session, CLI",
                sso(None, "false"),
                ActorClass::Yours,
                false,
                None,
                High,
            ),
            (
                "SSO session at the console with MFA",
                sso(Some("signin.amazonaws.com"), "true"),
                ActorClass::Yours,
                false,
                Some("the console"),
                High,
            ),
            (
                "SSO session at the console without MFA",
                sso(Some("signin.amazonaws.com"), "false"),
                ActorClass::Yours,
                false,
                Some("the console"),
                High,
            ),
            (
                "your allowlisted automation through CloudFormation",
                terraform_cfn,
                ActorClass::Yours,
                true,
                Some("CloudFormation"),
                Low,
            ),
            (
                "the vendor's role session",
                vendor_session,
                ActorClass::Vendor,
                false,
                None,
                Low,
            ),
            (
                "the vendor's role session at the console",
                vendor_console,
                ActorClass::Vendor,
                false,
                Some("the console"),
                Low,
            ),
            (
                "a principal of the vendor's account",
                json!({"type": "AssumedRole", "accountId": "406882777402",
                       "arn": "arn:aws:sts::406882777402:assumed-role/ops/bob"}),
                ActorClass::Vendor,
                false,
                None,
                Low,
            ),
            (
                "root at the console",
                json!({"type": "Root", "principalId": "111122223333",
                       "arn": "arn:aws:iam::111122223333:root", "accountId": "111122223333",
                       "invokedBy": "signin.amazonaws.com",
                       "sessionContext": {"attributes": {"mfaAuthenticated": "true"}}}),
                ActorClass::Yours,
                false,
                Some("the console"),
                High,
            ),
            (
                "root, CLI",
                json!({"type": "Root", "principalId": "111122223333",
                       "arn": "arn:aws:iam::111122223333:root", "accountId": "111122223333",
                       "accessKeyId": "AKIAEXAMPLEROOT12345"}),
                ActorClass::Yours,
                false,
                None,
                High,
            ),
            (
                "AWS service principal",
                json!({"type": "AWSService", "invokedBy": "cloudformation.amazonaws.com"}),
                ActorClass::AwsService,
                false,
                None,
                Low,
            ),
            (
                "service-linked role session",
                service_linked,
                ActorClass::AwsService,
                false,
                None,
                Low,
            ),
            (
                "a look-alike of a service-linked role",
                look_alike,
                ActorClass::Yours,
                false,
                Some("autoscaling.amazonaws.com"),
                High,
            ),
            (
                "SAML user",
                json!({"type": "SAMLUser", "principalId": "Q0VOVEVSOlVTRVI=:alice",
                       "userName": "alice",
                       "identityProvider": "arn:aws:iam::111122223333:saml-provider/Okta"}),
                ActorClass::Yours,
                false,
                None,
                High,
            ),
            (
                "web identity user",
                json!({"type": "WebIdentityUser",
                       "principalId": "accounts.google.com:123456789012.apps.googleusercontent.com:1234567890",
                       "userName": "1234567890", "identityProvider": "accounts.google.com"}),
                ActorClass::Yours,
                false,
                None,
                High,
            ),
            (
                "federated user",
                json!({"type": "FederatedUser", "principalId": "111122223333:bob",
                       "arn": "arn:aws:sts::111122223333:federated-user/bob",
                       "accountId": "111122223333", "accessKeyId": "ASIAEXAMPLEFED123456",
                       "sessionContext": {"sessionIssuer": {"type": "IAMUser",
                           "arn": "arn:aws:iam::111122223333:user/broker",
                           "accountId": "111122223333", "userName": "broker"},
                           "attributes": {"mfaAuthenticated": "false"}}}),
                ActorClass::Yours,
                false,
                None,
                High,
            ),
            (
                "no userIdentity at all",
                Value::Null,
                ActorClass::Yours,
                false,
                None,
                High,
            ),
            (
                "userIdentity of the wrong types",
                json!({"type": 7, "arn": ["x"], "invokedBy": {"a": 1}}),
                ActorClass::Yours,
                false,
                None,
                High,
            ),
        ];
        let mut failures = Vec::new();
        for (name, ui, class, allowed, via_expected, severity) in cases {
            let record = if ui.is_null() {
                json!({})
            } else {
                json!({"userIdentity": ui})
            };
            let got = classify(&record, &v);
            let got_via = via(&record);
            let (got_severity, _) = final_severity(Low, got.0, got.1, Verdict::Unchanged, false);
            if got != (class, allowed)
                || got_via.as_deref() != via_expected
                || got_severity != severity
            {
                failures.push(format!(
                    "{name}: expected {class} allowlisted={allowed} via {via_expected:?} {severity}, \
                     got {} allowlisted={} via {got_via:?} {got_severity}",
                    got.0, got.1
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// Regression (issue 17): the same UpdateAssumeRolePolicy by an IAM user was `yours`,
    /// high, from the CLI but `aws-service`, the rule's severity, from the console.
    #[test]
    fn a_person_at_the_console_is_not_an_aws_service() {
        let v = vendor();
        let cli = json!({"userIdentity": {"type": "IAMUser", "accountId": "111122223333",
            "arn": "arn:aws:iam::111122223333:user/alice"}});
        let mut console = cli.clone();
        console["userIdentity"]["invokedBy"] = json!("signin.amazonaws.com");
        assert_eq!(classify(&cli, &v), classify(&console, &v));
        assert_eq!(classify(&console, &v), (ActorClass::Yours, false));
        assert_eq!(via(&console).as_deref(), Some("the console"));
        let long = "x".repeat(500);
        console["userIdentity"]["invokedBy"] = json!(long);
        assert_eq!(
            via(&console).map(|s| s.chars().count()),
            Some(VIA_MAX_CHARS)
        );
    }

    #[test]
    fn severity_rules() {
        use ActorClass::*;
        use Severity::*;
        use Verdict::*;
        assert_eq!(final_severity(Low, Vendor, false, Widened, true).0, High);
        assert_eq!(
            final_severity(Critical, Vendor, false, Widened, true).0,
            Critical
        );
        assert_eq!(final_severity(Low, Yours, false, Unchanged, false).0, High);
        assert_eq!(final_severity(Low, Yours, true, Unchanged, false).0, Low);
        assert_eq!(final_severity(High, Vendor, false, Narrowed, false).0, Info);
        assert_eq!(final_severity(High, Yours, true, Narrowed, false).0, High);
        assert_eq!(
            final_severity(Medium, Vendor, false, Unknown, false).0,
            Medium
        );
        assert_eq!(final_severity(Medium, Vendor, false, Unknown, true).0, High);
    }
}
