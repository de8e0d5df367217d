//! `[vendor]`: the vendor's role, managed policy and account, and the allowlist of your own
//! automation. The change analysis ([`crate::intel`]) reads it.

use serde::Deserialize;

use super::Problem;

use crate::rules::{DEFAULT_ACCOUNT, DEFAULT_POLICY, DEFAULT_ROLE};

/// `[vendor]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVendor {
    /// The vendor's role in your account (default `astronomer-remote-management`).
    pub role_name: Option<String>,
    /// The vendor's managed policy in your account (default `AstronomerCrossAccountRole`).
    pub policy_name: Option<String>,
    /// The vendor's AWS account, which the role trusts (default `"406882777402"`).
    pub account_id: Option<String>,
    /// ARN globs (`*`, `?`) of your own principals that may change the role: a change by
    /// anyone else of your side is high severity.
    pub allowed_principals: Option<Vec<String>>,
    /// Whether tags on the role gate what it may do (policies testing `aws:PrincipalTag` or
    /// `iam:ResourceTag`): then TagRole and UntagRole are role changes, watched by the
    /// `complete` pack and expected by pattern lint (default true).
    pub tags_gate_access: Option<bool>,
}

/// `[vendor]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorConfig {
    pub role_name: String,
    pub policy_name: String,
    /// Twelve digits.
    pub account_id: String,
    /// ARN globs of your own automation.
    pub allowed_principals: Vec<String>,
    /// TagRole and UntagRole count as role changes.
    pub tags_gate_access: bool,
}

impl Default for VendorConfig {
    fn default() -> Self {
        VendorConfig {
            role_name: DEFAULT_ROLE.to_owned(),
            policy_name: DEFAULT_POLICY.to_owned(),
            account_id: DEFAULT_ACCOUNT.to_owned(),
            allowed_principals: Vec::new(),
            tags_gate_access: true,
        }
    }
}

/// An IAM name: 1 to 128 characters of `[A-Za-z0-9+=,.@_-]`.
fn iam_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// Checks `[vendor]`; problems are added to `problems`.
pub fn validate(raw: RawVendor, problems: &mut Vec<Problem>) -> VendorConfig {
    let d = VendorConfig::default();
    let mut problem = |key: &str, message: String| {
        problems.push(Problem {
            key: format!("vendor.{key}"),
            message,
        });
    };
    let mut name = |v: Option<String>, key: &str, default: String| match v {
        Some(s) if !iam_name_ok(&s) => {
            problem(
                key,
                format!("`{s}` is not an IAM name (1 to 128 of A-Z a-z 0-9 +=,.@_-)"),
            );
            default
        }
        Some(s) => s,
        None => default,
    };
    let role_name = name(raw.role_name, "role_name", d.role_name);
    let policy_name = name(raw.policy_name, "policy_name", d.policy_name);
    let account_id = match raw.account_id {
        Some(a) if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) => {
            problem(
                "account_id",
                format!("`{a}` is not a 12-digit AWS account ID (write it as a string)"),
            );
            d.account_id
        }
        Some(a) => a,
        None => d.account_id,
    };
    let allowed_principals = raw.allowed_principals.unwrap_or_default();
    for (i, g) in allowed_principals.iter().enumerate() {
        if !g.starts_with("arn:") {
            problem(
                &format!("allowed_principals[{i}]"),
                format!("`{g}` is not an ARN glob (it must start with `arn:`)"),
            );
        }
    }
    VendorConfig {
        role_name,
        policy_name,
        account_id,
        allowed_principals,
        tags_gate_access: raw.tags_gate_access.unwrap_or(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_problems() {
        let mut p = Vec::new();
        assert_eq!(
            validate(RawVendor::default(), &mut p),
            VendorConfig::default()
        );
        assert!(p.is_empty());
        let v = validate(
            RawVendor {
                role_name: Some("bad name".into()),
                policy_name: None,
                account_id: Some("4068827774".into()),
                allowed_principals: Some(vec!["arn:aws:iam::1:role/ci-*".into(), "ci".into()]),
                tags_gate_access: None,
            },
            &mut p,
        );
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "vendor.role_name",
                "vendor.account_id",
                "vendor.allowed_principals[1]"
            ]
        );
        assert_eq!(v.role_name, DEFAULT_ROLE);
    }
}
