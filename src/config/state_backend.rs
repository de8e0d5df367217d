//! `[state] backend`: where the state lives — one SQLite file (the default), or one DynamoDB
//! table shared by replicas (`backend = "dynamodb"`, with `table`, `region`, `lease_secs`,
//! `create_table`). The keys are read into [`super::raw::RawState`]; this file checks them.

use std::time::Duration;

use super::raw::RawState;
use super::Problem;

/// The default lease of the DynamoDB backend: a follower takes over at most two lease periods
/// after the leader stopped renewing.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);
/// Shorter leases make renewals (every third of a lease) a noticeable share of the requests.
const MIN_LEASE_SECS: u64 = 3;
/// Longer leases leave the account unwatched for minutes after a leader dies.
const MAX_LEASE_SECS: u64 = 600;

/// Which store holds the state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StateBackend {
    /// One SQLite file (`[state] path`), one rolewatch.
    #[default]
    Sqlite,
    /// One DynamoDB table shared by replicas, one of which (the lease holder) polls.
    DynamoDb(DynamoConfig),
}

/// `[state] backend = "dynamodb"`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoConfig {
    /// The table name (3 to 255 of `A-Z a-z 0-9 _ - .`).
    pub table: String,
    /// The table's region.
    pub region: String,
    /// How long a leader's lease lasts unrenewed (it renews every third of it).
    pub lease: Duration,
    /// Create the table (on-demand billing) at start when it is missing.
    pub create_table: bool,
}

fn table_name_ok(s: &str) -> bool {
    (3..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

fn region_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Checks the backend keys of `[state]`; problems are added to `problems`.
pub fn validate(raw: &RawState, problems: &mut Vec<Problem>) -> StateBackend {
    let mut problem = |key: &str, message: String| {
        problems.push(Problem {
            key: format!("state.{key}"),
            message,
        });
    };
    let dynamo_only = [
        ("table", raw.table.is_some()),
        ("region", raw.region.is_some()),
        ("lease_secs", raw.lease_secs.is_some()),
        ("create_table", raw.create_table.is_some()),
    ];
    match raw.backend.as_deref() {
        None | Some("sqlite") => {
            for (key, set) in dynamo_only {
                if set {
                    problem(
                        key,
                        "is a key of the DynamoDB backend: set `backend = \"dynamodb\"` or remove it"
                            .into(),
                    );
                }
            }
            StateBackend::Sqlite
        }
        Some("dynamodb") => {
            if raw.path.is_some() {
                problem(
                    "path",
                    "is the SQLite file: the DynamoDB backend keeps the state in `table`".into(),
                );
            }
            let table = match raw.table.as_deref() {
                None => {
                    problem(
                        "table",
                        "is required with `backend = \"dynamodb\"`: the table that holds the state"
                            .into(),
                    );
                    String::new()
                }
                Some(t) if !table_name_ok(t) => {
                    problem(
                        "table",
                        format!(
                            "`{t}` is not a DynamoDB table name (3 to 255 of A-Z a-z 0-9 _ - .)"
                        ),
                    );
                    String::new()
                }
                Some(t) => t.to_owned(),
            };
            let region = match raw.region.as_deref() {
                None => {
                    problem(
                        "region",
                        "is required with `backend = \"dynamodb\"`: the table's region (for example `us-east-1`)"
                            .into(),
                    );
                    String::new()
                }
                Some(r) if !region_ok(r) => {
                    problem(
                        "region",
                        format!("`{r}` is not an AWS region name (for example `us-east-1`)"),
                    );
                    String::new()
                }
                Some(r) => r.to_owned(),
            };
            let lease = match raw.lease_secs {
                None => DEFAULT_LEASE,
                Some(s) if !(MIN_LEASE_SECS..=MAX_LEASE_SECS).contains(&s) => {
                    problem(
                        "lease_secs",
                        format!("{s} is outside {MIN_LEASE_SECS} to {MAX_LEASE_SECS} seconds"),
                    );
                    DEFAULT_LEASE
                }
                Some(s) => Duration::from_secs(s),
            };
            StateBackend::DynamoDb(DynamoConfig {
                table,
                region,
                lease,
                create_table: raw.create_table.unwrap_or(false),
            })
        }
        Some(other) => {
            problem(
                "backend",
                format!("`{other}` is not a state backend (`sqlite` or `dynamodb`)"),
            );
            StateBackend::Sqlite
        }
    }
}

/// The backend keys for the effective configuration (nothing for SQLite, the default).
pub fn to_toml(backend: &StateBackend, state: &mut toml::Table) {
    if let StateBackend::DynamoDb(d) = backend {
        state.insert("backend".into(), "dynamodb".into());
        state.insert("table".into(), d.table.clone().into());
        state.insert("region".into(), d.region.clone().into());
        state.insert(
            "lease_secs".into(),
            i64::try_from(d.lease.as_secs()).unwrap_or(i64::MAX).into(),
        );
        state.insert("create_table".into(), d.create_table.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;

    fn load(text: &str) -> Result<crate::config::Config, ConfigError> {
        let raw: crate::config::RawConfig = toml::from_str(text).unwrap();
        crate::config::validate(raw, Some(std::path::Path::new("/etc/rolewatch.toml")))
    }

    #[test]
    fn sqlite_is_the_default_and_its_path_unchanged() {
        let c = load("[state]\npath = \"/tmp/s.db\"\n").unwrap();
        assert_eq!(c.state.backend, StateBackend::Sqlite);
        assert_eq!(
            c.state.path.as_deref(),
            Some(std::path::Path::new("/tmp/s.db"))
        );
        let c = load("[state]\nbackend = \"sqlite\"\n").unwrap();
        assert_eq!(c.state.backend, StateBackend::Sqlite);
    }

    #[test]
    fn dynamodb_keys() {
        let c = load(
            "[state]\nbackend = \"dynamodb\"\ntable = \"rolewatch-state\"\nregion = \"eu-west-1\"\nlease_secs = 10\n",
        )
        .unwrap();
        assert_eq!(
            c.state.backend,
            StateBackend::DynamoDb(DynamoConfig {
                table: "rolewatch-state".into(),
                region: "eu-west-1".into(),
                lease: Duration::from_secs(10),
                create_table: false,
            })
        );
        let effective = crate::config::effective::to_toml(&c);
        let again = load(&effective).unwrap();
        assert_eq!(again.state.backend, c.state.backend);
    }

    #[test]
    fn bad_values_name_the_key_and_the_file() {
        let cases = [
            (
                "backend = \"redis\"",
                "state.backend",
                "`redis` is not a state backend",
            ),
            (
                "backend = \"dynamodb\"\nregion = \"us-east-1\"",
                "state.table",
                "is required",
            ),
            (
                "backend = \"dynamodb\"\ntable = \"t\"\nregion = \"us-east-1\"",
                "state.table",
                "not a DynamoDB table name",
            ),
            (
                "backend = \"dynamodb\"\ntable = \"tbl\"",
                "state.region",
                "is required",
            ),
            (
                "backend = \"dynamodb\"\ntable = \"tbl\"\nregion = \"US East\"",
                "state.region",
                "not an AWS region",
            ),
            (
                "backend = \"dynamodb\"\ntable = \"tbl\"\nregion = \"us-east-1\"\nlease_secs = 1",
                "state.lease_secs",
                "outside 3 to 600",
            ),
            (
                "backend = \"dynamodb\"\ntable = \"tbl\"\nregion = \"us-east-1\"\npath = \"/x\"",
                "state.path",
                "SQLite file",
            ),
            (
                "table = \"tbl\"",
                "state.table",
                "key of the DynamoDB backend",
            ),
        ];
        for (body, key, message) in cases {
            let err = load(&format!("[state]\n{body}\n")).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("/etc/rolewatch.toml"), "{body}: {text}");
            assert!(
                err.problems
                    .iter()
                    .any(|p| p.key == key && p.message.contains(message)),
                "{body}: {text}"
            );
        }
    }
}
