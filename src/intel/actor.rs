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
    /// `userIdentity.invokedBy` names an AWS service, or the identity is an `AWSService`.
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
    } else if !s("/invokedBy").is_empty() || s("/type") == "AWSService" {
        ActorClass::AwsService
    } else {
        ActorClass::Yours
    };
    (class, allowed)
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

    #[test]
    fn classes() {
        let v = vendor();
        let r = json!({"userIdentity": {"type": "AssumedRole", "accountId": "111122223333",
            "arn": "arn:aws:sts::111122223333:assumed-role/astronomer-remote-management/astro-123"}});
        assert_eq!(classify(&r, &v), (ActorClass::Vendor, false));
        let r = json!({"userIdentity": {"type": "AssumedRole", "accountId": "406882777402",
            "arn": "arn:aws:sts::406882777402:assumed-role/x/y"}});
        assert_eq!(classify(&r, &v).0, ActorClass::Vendor);
        let r = json!({"userIdentity": {"type": "AssumedRole", "accountId": "111122223333",
            "arn": "arn:aws:sts::111122223333:assumed-role/terraform-ci/run-1",
            "invokedBy": "cloudformation.amazonaws.com",
            "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::111122223333:role/terraform-ci"}}}});
        assert_eq!(classify(&r, &v), (ActorClass::AwsService, true));
        let r = json!({"userIdentity": {"type": "IAMUser", "accountId": "111122223333",
            "arn": "arn:aws:iam::111122223333:user/alice"}});
        assert_eq!(classify(&r, &v), (ActorClass::Yours, false));
        assert_eq!(classify(&json!({}), &v), (ActorClass::Yours, false));
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
