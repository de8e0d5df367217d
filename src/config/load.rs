//! Loading: defaults, then the TOML file, then `ROLEWATCH__SECTION__KEY` overrides, into a
//! [`RawConfig`](super::RawConfig) for [`validate`](super::validate).

use std::path::Path;

use super::{validate, Config, ConfigError, Problem, RawConfig};

/// The prefix of environment overrides: `ROLEWATCH__DAEMON__LOG_FORMAT=json` sets
/// `daemon.log_format`. Double underscores separate the prefix, the section and the key, so
/// keys that contain one underscore (`log_format`) stay whole.
pub const ENV_PREFIX: &str = "ROLEWATCH__";

/// Keys whose environment value is a comma-separated list.
const ENV_LIST_KEYS: &[&str] = &["vendor.allowed_principals"];

/// Lists of tables: a file can give them, the environment cannot (which `[[source]]` would
/// `ROLEWATCH__SOURCE__REGION` change?).
const TABLE_LISTS: &[&str] = &["source", "rule", "channel"];

/// Reads and validates a configuration: built-in defaults, then the file (if any), then the
/// `ROLEWATCH__SECTION__KEY` environment overrides of the process.
///
/// # Errors
///
/// A [`ConfigError`] naming the file and each bad key: unreadable file, TOML syntax, unknown
/// keys, wrong types, and every validation problem at once. A problem with a key set from the
/// environment names the variable.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    load_with_env(path, std::env::vars_os())
}

/// [`load`] with the environment given explicitly (for tests).
///
/// # Errors
///
/// As [`load`].
pub fn load_with_env<I, K, V>(path: Option<&Path>, env: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<std::ffi::OsString>,
    V: Into<std::ffi::OsString>,
{
    let fail = |key: &str, message: String| ConfigError {
        file: path.map(Path::to_owned),
        problems: vec![Problem {
            key: key.to_owned(),
            message,
        }],
    };
    let overrides = env_overrides(env).map_err(|mut e| {
        e.file = path.map(Path::to_owned);
        e
    })?;
    let mut builder = config::Config::builder();
    if let Some(p) = path {
        let text = std::fs::read_to_string(p)
            .map_err(|e| fail("(file)", format!("cannot read the file: {e}")))?;
        builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
    }
    let mut scalars = config::Map::new();
    for o in &overrides {
        if ENV_LIST_KEYS.contains(&o.key.as_str()) {
            let items: Vec<String> = o
                .value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            builder = builder
                .set_override(o.key.as_str(), items)
                .map_err(|e| fail(&o.key, format!("{e} (from {})", o.var)))?;
        } else {
            scalars.insert(o.var.to_lowercase(), o.value.clone());
        }
    }
    builder = builder.add_source(
        config::Environment::with_prefix("ROLEWATCH")
            .prefix_separator("__")
            .separator("__")
            .source(Some(scalars)),
    );
    let built = builder
        .build()
        .map_err(|e| fail("(syntax)", e.to_string()))?;
    let raw = built.try_deserialize::<RawConfig>().map_err(|e| {
        // The config crate says "… for key `source[0].region`"; lift the key out.
        let msg = e.to_string();
        match msg.rsplit_once(" for key `") {
            Some((m, k)) => {
                // "…`" or "…` in the environment"; the crate writes `source[0]overlap_secs`.
                let k = k
                    .split('`')
                    .next()
                    .unwrap_or(k)
                    .replace("]", "].")
                    .replace("].[", "][");
                let k = k.trim_end_matches('.');
                fail(k, with_env_origin(m.to_owned(), k, &overrides))
            }
            None => fail("(root)", msg),
        }
    })?;
    validate(raw, path).map_err(|mut e| {
        for p in &mut e.problems {
            p.message = with_env_origin(std::mem::take(&mut p.message), &p.key, &overrides);
        }
        e
    })
}

/// One `ROLEWATCH__SECTION__KEY` variable.
#[derive(Debug)]
struct EnvOverride {
    /// The variable as written.
    var: String,
    /// The dotted key it sets, lower case: `daemon.log_format`.
    key: String,
    value: String,
}

/// The `ROLEWATCH__…` variables, each checked to name `section.key` (not a list of tables).
fn env_overrides<I, K, V>(env: I) -> Result<Vec<EnvOverride>, ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<std::ffi::OsString>,
    V: Into<std::ffi::OsString>,
{
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (k, v) in env {
        let Ok(var) = k.into().into_string() else {
            continue;
        };
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = rest.to_lowercase().replace("__", ".");
        let value = match v.into().into_string() {
            Ok(v) => v,
            Err(_) => {
                problems.push(Problem {
                    key: key.clone(),
                    message: format!("{var} is not valid UTF-8"),
                });
                continue;
            }
        };
        let section = key.split('.').next().unwrap_or_default().to_owned();
        if TABLE_LISTS.contains(&section.as_str()) {
            problems.push(Problem {
                key,
                message: format!(
                    "{var}: [[{section}]] is a list of tables; set it in the configuration file, not the environment"
                ),
            });
        } else if key.split('.').count() != 2 || key.split('.').any(str::is_empty) {
            problems.push(Problem {
                key,
                message: format!(
                    "{var} does not name a key: use ROLEWATCH__SECTION__KEY, e.g. ROLEWATCH__DAEMON__LOG_FORMAT"
                ),
            });
        } else {
            found.push(EnvOverride { var, key, value });
        }
    }
    if problems.is_empty() {
        found.sort_by(|a, b| a.var.cmp(&b.var));
        Ok(found)
    } else {
        Err(ConfigError {
            file: None,
            problems,
        })
    }
}

/// Adds "(set by VAR)" to a problem whose key came from the environment.
fn with_env_origin(message: String, key: &str, overrides: &[EnvOverride]) -> String {
    match overrides.iter().find(|o| o.key == key) {
        Some(o) => format!("{message} (set by the environment variable {})", o.var),
        None => message,
    }
}
