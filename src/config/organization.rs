//! `[organization]`: the accounts rolewatch watches, discovered with
//! `organizations:ListAccounts` (from the management account or a delegated administrator)
//! rather than listed one by one, refreshed every `refresh_minutes`. Each ACTIVE account is
//! watched as if it had its own `[[account]]`: the account rolewatch runs in with its own
//! credentials, every other one through the member role `role_name`. `[[account]]` entries
//! may be given beside it: an entry overrides the discovered account with the same id.
//!
//! Which accounts: `include_accounts` / `exclude_accounts` by id, `include_ous` /
//! `exclude_ous` by organizational unit (`ou-…`, or the root `r-…`), an OU taking in its
//! nested OUs. The discovery itself is [`crate::runtime::organization`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::accounts::{account_id_ok, external_id_of, session_name_ok, ExternalId};
use super::Problem;

/// The member role's name when none is given: the StackSet template's default
/// (`deploy/member-role-stackset.yaml`).
pub const DEFAULT_ROLE_NAME: &str = "rolewatch-member";

/// The shortest `refresh_minutes`: 3 s.
pub const MIN_REFRESH_MINUTES: f64 = 0.05;

/// How often the organization's accounts are listed again, by default.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60 * 60);

/// `[organization]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrganization {
    /// The member role assumed in every discovered account but the one rolewatch runs in, as
    /// `arn:aws:iam::<account>:role/<role_name>` (default `rolewatch-member`).
    pub role_name: Option<String>,
    /// The ExternalId the member role's trust policy requires (or `external_id_env` /
    /// `external_id_file`).
    pub external_id: Option<String>,
    pub external_id_env: Option<String>,
    pub external_id_file: Option<PathBuf>,
    /// The role session name (default `rolewatch`).
    pub session_name: Option<String>,
    /// Only these accounts (by id); default: every account.
    pub include_accounts: Option<Vec<String>>,
    /// Never these accounts (by id).
    pub exclude_accounts: Option<Vec<String>>,
    /// Only accounts in these OUs (`ou-…` or the root `r-…`, nested OUs included).
    pub include_ous: Option<Vec<String>>,
    /// Never accounts in these OUs (nested OUs included).
    pub exclude_ous: Option<Vec<String>>,
    /// Minutes between two listings of the organization's accounts (default 60; a
    /// fraction is allowed, at least 0.05 = 3 s).
    pub refresh_minutes: Option<f64>,
}

impl fmt::Debug for RawOrganization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawOrganization")
            .field("role_name", &self.role_name)
            .field(
                "external_id",
                &self.external_id.as_ref().map(|_| "<redacted>"),
            )
            .field("external_id_env", &self.external_id_env)
            .field("external_id_file", &self.external_id_file)
            .field("session_name", &self.session_name)
            .field("include_accounts", &self.include_accounts)
            .field("exclude_accounts", &self.exclude_accounts)
            .field("include_ous", &self.include_ous)
            .field("exclude_ous", &self.exclude_ous)
            .field("refresh_minutes", &self.refresh_minutes)
            .finish()
    }
}

/// `[organization]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationConfig {
    pub role_name: String,
    pub external_id: Option<ExternalId>,
    pub session_name: String,
    pub include_accounts: Option<Vec<String>>,
    pub exclude_accounts: Vec<String>,
    pub include_ous: Option<Vec<String>>,
    pub exclude_ous: Vec<String>,
    pub refresh: Duration,
}

impl OrganizationConfig {
    /// Whether an OU walk is needed (an OU filter is set).
    #[must_use]
    pub fn filters_ous(&self) -> bool {
        self.include_ous.is_some() || !self.exclude_ous.is_empty()
    }
}

/// An OU id (`ou-<4 to 32>-<8 to 32>` lower-case letters and digits) or a root id (`r-<4 to
/// 32>`).
fn ou_id_ok(s: &str) -> bool {
    let alnum = |p: &str, min: usize| {
        (min..=32).contains(&p.len())
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if let Some(rest) = s.strip_prefix("ou-") {
        return rest
            .split_once('-')
            .is_some_and(|(a, b)| alnum(a, 4) && alnum(b, 8));
    }
    s.strip_prefix("r-").is_some_and(|r| alnum(r, 4))
}

/// A role name, optionally with a path: `[\w+=,.@-/]`, 1 to 64 characters for the name.
fn role_name_ok(s: &str) -> bool {
    let name = s.rsplit('/').next().unwrap_or(s);
    (1..=64).contains(&name.len())
        && !s.starts_with('/')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
}

/// Checks `[organization]`.
pub fn validate(
    raw: Option<RawOrganization>,
    problems: &mut Vec<Problem>,
) -> Option<OrganizationConfig> {
    let raw = raw?;
    let mut problem = |k: &str, message: String| {
        problems.push(Problem {
            key: format!("organization.{k}"),
            message,
        });
    };
    let role_name = raw
        .role_name
        .unwrap_or_else(|| DEFAULT_ROLE_NAME.to_owned());
    if !role_name_ok(&role_name) {
        problem(
            "role_name",
            format!("`{role_name}` is not a role name (the name alone, or path/name; not an ARN)"),
        );
    }
    let external_id = external_id_of(
        raw.external_id,
        raw.external_id_env,
        raw.external_id_file,
        &mut problem,
    );
    let session_name = raw
        .session_name
        .unwrap_or_else(|| super::accounts::DEFAULT_SESSION_NAME.to_owned());
    if !session_name_ok(&session_name) {
        problem(
            "session_name",
            format!("`{session_name}` is not a role session name (2 to 64 of A-Z a-z 0-9 _ + = , . @ -)"),
        );
    }
    let mut ids = |key: &str, list: Option<Vec<String>>| {
        if let Some(l) = &list {
            for (j, id) in l.iter().enumerate() {
                if !account_id_ok(id) {
                    problem(
                        &format!("{key}[{j}]"),
                        format!("`{id}` is not an account id (12 digits, as a string)"),
                    );
                }
            }
        }
        list
    };
    let include_accounts = ids("include_accounts", raw.include_accounts);
    let exclude_accounts = ids("exclude_accounts", raw.exclude_accounts).unwrap_or_default();
    let mut ous = |key: &str, list: Option<Vec<String>>| {
        if let Some(l) = &list {
            for (j, id) in l.iter().enumerate() {
                if !ou_id_ok(id) {
                    problem(
                        &format!("{key}[{j}]"),
                        format!("`{id}` is not an organizational unit id (ou-…) or root id (r-…)"),
                    );
                }
            }
        }
        list
    };
    let include_ous = ous("include_ous", raw.include_ous);
    let exclude_ous = ous("exclude_ous", raw.exclude_ous).unwrap_or_default();
    let refresh = match raw.refresh_minutes {
        None => DEFAULT_REFRESH,
        Some(m) if m.is_nan() || m < MIN_REFRESH_MINUTES => {
            problem(
                "refresh_minutes",
                format!("must be at least {MIN_REFRESH_MINUTES} (3 s)"),
            );
            DEFAULT_REFRESH
        }
        Some(m) if m > 7.0 * 24.0 * 60.0 => {
            problem(
                "refresh_minutes",
                format!("{m} is more than a week: a new account would go unwatched that long"),
            );
            DEFAULT_REFRESH
        }
        Some(m) => Duration::from_millis((m * 60_000.0).round() as u64),
    };
    Some(OrganizationConfig {
        role_name,
        external_id,
        session_name,
        include_accounts,
        exclude_accounts,
        include_ous,
        exclude_ous,
        refresh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (Option<OrganizationConfig>, Vec<Problem>) {
        #[derive(Deserialize)]
        struct Wrap {
            organization: Option<RawOrganization>,
        }
        let w: Wrap = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        let out = validate(w.organization, &mut problems);
        (out, problems)
    }

    #[test]
    fn an_organization_takes_defaults_and_filters() {
        let (o, p) = check("[organization]\n");
        assert!(p.is_empty(), "{p:?}");
        let o = o.unwrap();
        assert_eq!(o.role_name, DEFAULT_ROLE_NAME);
        assert_eq!(o.session_name, "rolewatch");
        assert_eq!(o.refresh, Duration::from_secs(3600));
        assert!(!o.filters_ous());
        let (o, p) = check(
            r#"
            [organization]
            role_name = "path/rw"
            external_id = "s3cret"
            include_accounts = ["111122223333"]
            exclude_ous = ["ou-ab12-cdefgh34"]
            include_ous = ["r-ab12"]
            refresh_minutes = 0.5
            "#,
        );
        assert!(p.is_empty(), "{p:?}");
        let o = o.unwrap();
        assert!(o.filters_ous());
        assert_eq!(o.refresh, Duration::from_secs(30));
        assert!(!format!("{o:?}").contains("s3cret"));
        assert_eq!(check("").0, None);
    }

    #[test]
    fn bad_organization_keys_are_named() {
        let (_, p) = check(
            r#"
            [organization]
            role_name = "arn:aws:iam::111122223333:role/x"
            external_id = "a"
            external_id_env = "B"
            include_accounts = ["1234"]
            exclude_ous = ["ou-x"]
            refresh_minutes = 0
            "#,
        );
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "organization.role_name",
                "organization.external_id",
                "organization.include_accounts[0]",
                "organization.exclude_ous[0]",
                "organization.refresh_minutes",
            ],
            "{p:?}"
        );
    }
}
