//! `[[account]]`: the accounts rolewatch watches. Each is reached with its own credentials (the
//! ones rolewatch runs with, or an assumed role with an ExternalId), and every `cloudtrail`
//! source runs once per account, as its own source `<source>@<account>` with its own cursor,
//! seen set, coverage gaps and rate limit.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::Problem;

/// The session name an assumed role gets when none is configured: what the member's
/// CloudTrail shows as the session of rolewatch's calls.
pub const DEFAULT_SESSION_NAME: &str = "rolewatch";

/// `[[account]]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    /// The account's id, 12 digits (a string, to keep leading zeros).
    pub id: Option<String>,
    /// A name for people: alerts show it beside the id.
    pub name: Option<String>,
    /// The role to assume in the account; none: the credentials rolewatch runs with belong to
    /// this account.
    pub role_arn: Option<String>,
    /// The ExternalId the role's trust policy requires (or `external_id_env` /
    /// `external_id_file`).
    pub external_id: Option<String>,
    /// The environment variable holding the ExternalId.
    pub external_id_env: Option<String>,
    /// The file holding the ExternalId (one trailing newline is ignored).
    pub external_id_file: Option<PathBuf>,
    /// The role session name (default `rolewatch`), as the member's CloudTrail shows it.
    pub session_name: Option<String>,
}

impl fmt::Debug for RawAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawAccount")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role_arn", &self.role_arn)
            .field(
                "external_id",
                &self.external_id.as_ref().map(|_| "<redacted>"),
            )
            .field("external_id_env", &self.external_id_env)
            .field("external_id_file", &self.external_id_file)
            .field("session_name", &self.session_name)
            .finish()
    }
}

/// Where an account's ExternalId is. Its `Debug` never shows an inline value.
#[derive(Clone, PartialEq, Eq)]
pub enum ExternalId {
    /// Written in the file (`external_id`).
    Inline(String),
    /// The name of an environment variable holding it.
    Env(String),
    /// A file holding it.
    File(PathBuf),
}

impl fmt::Debug for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExternalId::Inline(_) => f.write_str("Inline(<redacted>)"),
            ExternalId::Env(name) => write!(f, "Env({name:?})"),
            ExternalId::File(path) => write!(f, "File({path:?})"),
        }
    }
}

impl ExternalId {
    /// The ExternalId itself.
    ///
    /// # Errors
    ///
    /// The variable is unset or not UTF-8, the file cannot be read, or the value is empty;
    /// the message names the variable or file, never the value.
    pub fn resolve(&self) -> Result<String, String> {
        let value = match self {
            ExternalId::Inline(v) => v.clone(),
            ExternalId::Env(name) => {
                std::env::var(name).map_err(|e| format!("the environment variable {name} ({e})"))?
            }
            ExternalId::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {} ({e})", path.display()))?,
        };
        let value = value
            .strip_suffix("\r\n")
            .or_else(|| value.strip_suffix('\n'))
            .unwrap_or(&value)
            .to_owned();
        if value.is_empty() {
            return Err(match self {
                ExternalId::Inline(_) => "`external_id` is empty".to_owned(),
                ExternalId::Env(name) => format!("the environment variable {name} is empty"),
                ExternalId::File(path) => format!("{} is empty", path.display()),
            });
        }
        Ok(value)
    }
}

/// One `[[account]]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountConfig {
    /// Twelve digits.
    pub id: String,
    pub name: Option<String>,
    /// `None`: the account of the credentials rolewatch runs with.
    pub role_arn: Option<String>,
    pub external_id: Option<ExternalId>,
    pub session_name: String,
}

impl AccountConfig {
    /// `123456789012 (prod)`, or the id alone.
    #[must_use]
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{} ({n})", self.id),
            None => self.id.clone(),
        }
    }
}

/// Whether `s` is an account id: 12 ASCII digits.
#[must_use]
pub fn account_id_ok(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `arn:<partition>:iam::<12 digits>:role/<path/name>`: the account in it.
fn role_account(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let partition = parts.next()?;
    let service = parts.next()?;
    let region = parts.next()?;
    let account = parts.next()?;
    let resource = parts.next()?;
    let name = resource.strip_prefix("role/")?;
    let ok = !partition.is_empty()
        && service == "iam"
        && region.is_empty()
        && account_id_ok(account)
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b));
    ok.then_some(account)
}

/// A role session name: 2 to 64 of `[\w+=,.@-]`.
pub(super) fn session_name_ok(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// Checks every `[[account]]`: ids unique and 12 digits, the role's account the account, at
/// most one account without a role (the one rolewatch runs in), one place for the ExternalId.
pub fn validate(raw: Vec<RawAccount>, problems: &mut Vec<Problem>) -> Vec<AccountConfig> {
    let mut out = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let mut own: Option<usize> = None;
    for (i, a) in raw.into_iter().enumerate() {
        let mut problem = |k: &str, message: String| {
            problems.push(Problem {
                key: format!("account[{i}].{k}"),
                message,
            });
        };
        let id = match a.id {
            Some(id) if account_id_ok(&id) => id,
            Some(id) => {
                problem(
                    "id",
                    format!("`{id}` is not an account id (12 digits, as a string)"),
                );
                continue;
            }
            None => {
                problem("id", "is required (12 digits, as a string)".into());
                continue;
            }
        };
        if !ids.insert(id.clone()) {
            problem("id", format!("`{id}` is listed twice"));
        }
        if let Some(n) = &a.name {
            if n.is_empty() || n.len() > 128 || n.chars().any(char::is_control) {
                problem(
                    "name",
                    "must be 1 to 128 characters, no control characters".into(),
                );
            }
        }
        match a.role_arn.as_deref() {
            Some(arn) => match role_account(arn) {
                Some(acct) if acct == id => {}
                Some(acct) => problem(
                    "role_arn",
                    format!("`{arn}` is a role in account {acct}, not in {id}"),
                ),
                None => problem(
                    "role_arn",
                    format!("`{arn}` is not a role ARN (arn:aws:iam::<account>:role/<name>)"),
                ),
            },
            None => {
                if let Some(first) = own {
                    problem(
                        "role_arn",
                        format!("is required: account[{first}] already has no `role_arn` (only the account rolewatch runs in goes without one)"),
                    );
                }
                own = own.or(Some(i));
            }
        }
        let external_id = external_id_of(
            a.external_id,
            a.external_id_env,
            a.external_id_file,
            &mut problem,
        );
        if external_id.is_some() && a.role_arn.is_none() {
            problem(
                "external_id",
                "applies only with `role_arn` (it is sent when assuming the role)".into(),
            );
        }
        let session_name = a
            .session_name
            .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_owned());
        if !session_name_ok(&session_name) {
            problem(
                "session_name",
                format!("`{session_name}` is not a role session name (2 to 64 of A-Z a-z 0-9 _ + = , . @ -)"),
            );
        }
        out.push(AccountConfig {
            id,
            name: a.name,
            role_arn: a.role_arn,
            external_id,
            session_name,
        });
    }
    out
}

/// The ExternalId given in at most one of `external_id`, `external_id_env`, `external_id_file`
/// (problems reported by their key through `problem`).
pub(super) fn external_id_of(
    inline: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
    problem: &mut impl FnMut(&str, String),
) -> Option<ExternalId> {
    match (inline, env, file) {
        (None, None, None) => None,
        (Some(v), None, None) if !v.is_empty() => Some(ExternalId::Inline(v)),
        (Some(_), None, None) => {
            problem("external_id", "must not be empty".into());
            None
        }
        (None, Some(v), None) if !v.is_empty() && !v.contains('=') && !v.contains('\0') => {
            Some(ExternalId::Env(v))
        }
        (None, Some(_), None) => {
            problem(
                "external_id_env",
                "must be the name of an environment variable".into(),
            );
            None
        }
        (None, None, Some(f)) if !f.as_os_str().is_empty() => Some(ExternalId::File(f)),
        (None, None, Some(_)) => {
            problem("external_id_file", "must not be empty".into());
            None
        }
        _ => {
            problem(
                "external_id",
                "give the ExternalId in one place: `external_id`, `external_id_env` or `external_id_file`".into(),
            );
            None
        }
    }
}

/// The source id of `source` in `account`: `<source>@<account>`.
#[must_use]
pub fn source_id(source: &str, account: &str) -> String {
    format!("{source}@{account}")
}

/// The account of a per-account source id, if it is one.
#[must_use]
pub fn account_of_source(source_id: &str) -> Option<&str> {
    source_id
        .rsplit_once('@')
        .map(|(_, a)| a)
        .filter(|a| account_id_ok(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (Vec<AccountConfig>, Vec<Problem>) {
        #[derive(Deserialize)]
        struct Wrap {
            #[serde(rename = "account")]
            accounts: Vec<RawAccount>,
        }
        let w: Wrap = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        let out = validate(w.accounts, &mut problems);
        (out, problems)
    }

    #[test]
    fn accounts_take_a_role_an_external_id_in_one_place_and_a_session_name() {
        let (a, p) = check(
            r#"
            [[account]]
            id = "012345678901"
            name = "management"
            [[account]]
            id = "111122223333"
            role_arn = "arn:aws:iam::111122223333:role/rolewatch-member"
            external_id_env = "RW_EXT"
            [[account]]
            id = "444455556666"
            role_arn = "arn:aws:iam::444455556666:role/path/rolewatch"
            external_id = "s3cret-value"
            session_name = "rolewatch-prod"
            "#,
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].role_arn, None);
        assert_eq!(a[0].label(), "012345678901 (management)");
        assert_eq!(a[1].external_id, Some(ExternalId::Env("RW_EXT".into())));
        assert_eq!(a[1].session_name, DEFAULT_SESSION_NAME);
        assert_eq!(a[2].session_name, "rolewatch-prod");
        let debug = format!("{a:?}");
        assert!(!debug.contains("s3cret-value"), "{debug}");
        assert!(debug.contains("Inline(<redacted>)"), "{debug}");
        assert_eq!(
            a[2].external_id.as_ref().unwrap().resolve().unwrap(),
            "s3cret-value"
        );
    }

    #[test]
    fn bad_accounts_name_their_keys() {
        let (_, p) = check(
            r#"
            [[account]]
            id = "12345"
            [[account]]
            id = "111122223333"
            [[account]]
            id = "111122223333"
            external_id = "x"
            [[account]]
            id = "444455556666"
            role_arn = "arn:aws:iam::999999999999:role/x"
            external_id = "a"
            external_id_env = "B"
            session_name = "a b"
            [[account]]
            id = "777788889999"
            role_arn = "role/x"
            "#,
        );
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "account[0].id",
                "account[2].id",
                "account[2].role_arn",
                "account[2].external_id",
                "account[3].role_arn",
                "account[3].external_id",
                "account[3].session_name",
                "account[4].role_arn",
            ],
            "{p:?}"
        );
        let text = format!("{p:?}");
        assert!(
            !text.contains("\"a\""),
            "no ExternalId in a problem: {text}"
        );
    }

    #[test]
    fn external_ids_resolve_from_a_file_without_showing_the_value_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ext");
        std::fs::write(&path, "from-file\n").unwrap();
        assert_eq!(ExternalId::File(path).resolve().unwrap(), "from-file");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = ExternalId::File(empty).resolve().unwrap_err();
        assert!(err.ends_with("is empty"), "{err}");
        let err = ExternalId::Env("ROLEWATCH_TEST_SURELY_UNSET_VAR".into())
            .resolve()
            .unwrap_err();
        assert!(err.contains("ROLEWATCH_TEST_SURELY_UNSET_VAR"), "{err}");
    }

    #[test]
    fn every_cloudtrail_source_runs_once_per_account_and_the_cap_is_a_daemon_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rolewatch.toml");
        std::fs::write(
            &path,
            r#"
            [daemon]
            max_concurrent_polls = 7
            [[source]]
            type = "cloudtrail"
            [[source]]
            type = "cloudwatch_logs"
            log_group = "org-trail"
            [[account]]
            id = "111122223333"
            [[account]]
            id = "444455556666"
            name = "prod"
            role_arn = "arn:aws:iam::444455556666:role/rolewatch"
            "#,
        )
        .unwrap();
        let c = crate::config::load(Some(&path)).unwrap();
        let ids: Vec<(&str, Option<&str>)> = c
            .sources
            .iter()
            .map(|s| (s.id.as_str(), s.account.as_deref()))
            .collect();
        assert_eq!(
            ids,
            [
                ("cloudtrail:us-east-1@111122223333", Some("111122223333")),
                ("cloudtrail:us-east-1@444455556666", Some("444455556666")),
                ("cloudwatch_logs:us-east-1:org-trail", None),
            ]
        );
        assert_eq!(c.daemon.max_concurrent_polls, 7);
        assert_eq!(c.accounts.len(), 2);
        let c = crate::config::load(None).unwrap();
        assert_eq!(
            c.daemon.max_concurrent_polls,
            crate::config::defaults::MAX_CONCURRENT_POLLS
        );
        assert_eq!(c.sources[0].account, None);
    }

    #[test]
    fn per_account_source_ids_carry_the_account() {
        assert_eq!(
            source_id("cloudtrail:us-east-1", "111122223333"),
            "cloudtrail:us-east-1@111122223333"
        );
        assert_eq!(
            account_of_source("cloudtrail:us-east-1@111122223333"),
            Some("111122223333")
        );
        assert_eq!(account_of_source("cloudtrail:us-east-1"), None);
        assert_eq!(account_of_source("x@y"), None);
    }
}
