//! Configuration: read a TOML file into [`RawConfig`], then validate it — purely, with no
//! network and no credentials — into a [`Config`] whose patterns are compiled and whose ranges
//! are checked. Validation collects every problem, each naming its key and the file.

pub mod channel;
pub mod effective;
pub mod raw;
pub mod vendor;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use filter_pattern::FilterPattern;

pub use channel::{
    ChannelConfig, ChannelKind, DeliveryPolicy, PasswordSource, SmtpAuth, SmtpChannelConfig,
    SmtpTls, SnsChannelConfig,
};
pub use raw::RawConfig;
pub use vendor::VendorConfig;

use crate::rules::{Pack, PackParams, Rule, Severity};

/// Defaults, in one place.
pub mod defaults {
    use std::time::Duration;

    pub const REGION: &str = "us-east-1";
    pub const OVERLAP: Duration = Duration::from_secs(20 * 60);
    pub const INITIAL_LOOKBACK: Duration = Duration::from_secs(60 * 60);
    /// Every minute, at second 0.
    pub const SCHEDULE: &str = "0 * * * * *";
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
    pub const BLIND_AFTER_FAILURES: u32 = 3;
    pub const BLIND_AFTER: Duration = Duration::from_secs(10 * 60);
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9464";
    pub const CATCHUP_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
    /// Time between reconciliation sweeps of a source.
    pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60 * 60);
    /// How far back a sweep reads.
    pub const SWEEP_LOOKBACK: Duration = Duration::from_secs(24 * 60 * 60);
    /// LookupEvents allows 2 requests/s per account and region, shared with every caller.
    pub const CLOUDTRAIL_RPS: f64 = 1.0;
    pub const CLOUDTRAIL_MAX_RPS: f64 = 2.0;
    /// FilterLogEvents allows 5 requests/s per account and region.
    pub const LOGS_RPS: f64 = 2.0;
    pub const LOGS_MAX_RPS: f64 = 5.0;
    /// How long LookupEvents keeps events.
    pub const CLOUDTRAIL_RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    pub state: StateConfig,
    pub sources: Vec<SourceConfig>,
    pub rules: Vec<Rule>,
    /// Where alerts go; never empty (the default is one stdout channel).
    pub channels: Vec<ChannelConfig>,
    /// The vendor's role, policy and account (`[vendor]`).
    pub vendor: VendorConfig,
    pub daemon: DaemonConfig,
    pub admin: AdminConfig,
}

/// When a source is polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A 6-field cron expression (seconds first), UTC, checked to parse.
    Cron(String),
    /// A fixed interval from the daemon's start (`poll_interval_secs`).
    Every(Duration),
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron(c) => write!(f, "cron `{c}`"),
            Schedule::Every(d) => write!(f, "every {} s", d.as_secs()),
        }
    }
}

/// Whether `expr` is a cron expression the scheduler accepts (6 fields, seconds first).
/// Pure: parsing builds a job that is never scheduled.
fn cron_problem(expr: &str) -> Option<String> {
    let fields = expr.split_whitespace().count();
    if fields != 6 {
        return Some(format!(
            "`{expr}` has {fields} field{}; a schedule has 6: second minute hour day-of-month month day-of-week (e.g. `0 * * * * *`, every minute)",
            if fields == 1 { "" } else { "s" }
        ));
    }
    match tokio_cron_scheduler::Job::new_async(expr, |_, _| Box::pin(async {})) {
        Ok(_) => None,
        Err(e) => Some(format!("`{expr}` is not a cron expression ({e})")),
    }
}

/// A CloudTrail trail name (3–128 of `A-Za-z0-9._-`, starting with a letter or digit) or a
/// trail ARN (`arn:<partition>:cloudtrail:<region>:<account>:trail/<name>`).
fn trail_ok(t: &str) -> bool {
    let name = match t.strip_prefix("arn:") {
        Some(rest) => match rest.split_once(":trail/") {
            Some((head, name)) if head.split(':').count() == 4 && head.contains(":cloudtrail:") => {
                name
            }
            _ => return false,
        },
        None => t,
    };
    (3..=128).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// How the log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, text on a terminal.
    Auto,
    Json,
    Text,
}

/// `[daemon]`, checked.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    /// A cron expression, checked to parse.
    pub heartbeat_schedule: Option<String>,
    pub blind_after_failures: u32,
    pub blind_after: Duration,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            log_format: LogFormat::Auto,
            heartbeat_schedule: None,
            blind_after_failures: defaults::BLIND_AFTER_FAILURES,
            blind_after: defaults::BLIND_AFTER,
        }
    }
}

/// `[admin]`, checked.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `None` when disabled.
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct StateConfig {
    /// `None`: the default place (see `state::default_path`).
    pub path: Option<PathBuf>,
    pub initial_lookback: Duration,
}

/// Which API a source polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    CloudTrail,
    CloudWatchLogs {
        log_group: String,
        log_stream_prefix: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Unique; the state keys the cursor by it.
    pub id: String,
    pub kind: SourceKind,
    pub region: String,
    pub overlap: Duration,
    pub max_requests_per_sec: f64,
    pub schedule: Schedule,
    pub catchup_window: Duration,
    /// Time between reconciliation sweeps; `None`: no sweep.
    pub sweep_interval: Option<Duration>,
    /// How far back a sweep reads.
    pub sweep_lookback: Duration,
    /// The trail (name or ARN) that records these events, if named.
    pub trail: Option<String>,
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `source[1].region`.
    pub key: String,
    pub message: String,
}

/// Every problem found in a configuration, or why it could not be read.
#[derive(Debug)]
pub struct ConfigError {
    /// `None` for the built-in defaults and environment.
    pub file: Option<PathBuf>,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.as_deref().map_or_else(
            || "the built-in configuration".to_owned(),
            |p| p.display().to_string(),
        );
        let n = self.problems.len();
        write!(
            f,
            "invalid configuration in {file} ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {file}: {}: ", p.key)?;
            // Multi-line messages (a pattern with its caret) stay aligned under the key.
            let mut lines = p.message.lines();
            if let Some(first) = lines.next() {
                f.write_str(first)?;
            }
            for l in lines {
                write!(f, "\n      {l}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

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

/// Checks a raw configuration; pure (no network, no files).
///
/// # Errors
///
/// A [`ConfigError`] listing every problem.
pub fn validate(raw: RawConfig, file: Option<&Path>) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut problem = |key: String, message: String| problems.push(Problem { key, message });

    let initial_lookback = match raw.state.initial_lookback_secs {
        None => defaults::INITIAL_LOOKBACK,
        Some(0) => {
            problem(
                "state.initial_lookback_secs".into(),
                "must be at least 1".into(),
            );
            defaults::INITIAL_LOOKBACK
        }
        Some(s) if s > 90 * 86_400 => {
            problem(
                "state.initial_lookback_secs".into(),
                format!("{s} is more than 90 days, longer than CloudTrail keeps events"),
            );
            defaults::INITIAL_LOOKBACK
        }
        Some(s) => Duration::from_secs(s),
    };
    if let Some(p) = &raw.state.path {
        if p.as_os_str().is_empty() {
            problem("state.path".into(), "must not be empty".into());
        }
    }

    let mut sources = Vec::new();
    let mut ids = HashSet::new();
    let raw_sources = if raw.sources.is_empty() {
        vec![raw::RawSource {
            kind: "cloudtrail".into(),
            name: None,
            region: None,
            log_group: None,
            log_stream_prefix: None,
            trail: None,
            overlap_secs: None,
            max_requests_per_sec: None,
            schedule: None,
            poll_interval_secs: None,
            catchup_window_secs: None,
            sweep_interval_secs: None,
            sweep_lookback_secs: None,
        }]
    } else {
        raw.sources
    };
    for (i, s) in raw_sources.into_iter().enumerate() {
        let key = |k: &str| format!("source[{i}].{k}");
        let region = s
            .region
            .clone()
            .unwrap_or_else(|| defaults::REGION.to_owned());
        if !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || region.is_empty()
        {
            problem(
                key("region"),
                format!("`{region}` is not an AWS region name"),
            );
        }
        let (kind, default_rps, max_rps) = match s.kind.as_str() {
            "cloudtrail" => {
                for (k, v) in [
                    ("log_group", s.log_group.is_some()),
                    ("log_stream_prefix", s.log_stream_prefix.is_some()),
                ] {
                    if v {
                        problem(
                            key(k),
                            "applies only to `type = \"cloudwatch_logs\"`".into(),
                        );
                    }
                }
                (
                    SourceKind::CloudTrail,
                    defaults::CLOUDTRAIL_RPS,
                    defaults::CLOUDTRAIL_MAX_RPS,
                )
            }
            "cloudwatch_logs" => {
                let log_group = match s.log_group.as_deref() {
                    Some(g) if !g.is_empty() => g.to_owned(),
                    _ => {
                        problem(
                            key("log_group"),
                            "is required for `type = \"cloudwatch_logs\"` (the trail's log group)"
                                .into(),
                        );
                        String::new()
                    }
                };
                (
                    SourceKind::CloudWatchLogs {
                        log_group,
                        log_stream_prefix: s.log_stream_prefix.clone().filter(|p| !p.is_empty()),
                    },
                    defaults::LOGS_RPS,
                    defaults::LOGS_MAX_RPS,
                )
            }
            other => {
                problem(
                    key("type"),
                    format!(
                        "`{other}` is not a source type: use `cloudtrail` or `cloudwatch_logs`"
                    ),
                );
                continue;
            }
        };
        let rps = s.max_requests_per_sec.unwrap_or(default_rps);
        if !(rps > 0.0 && rps <= max_rps) {
            problem(
                key("max_requests_per_sec"),
                format!("{rps} is out of range: more than 0 and at most {max_rps} (the API's limit, shared with every other caller)"),
            );
        }
        let overlap = Duration::from_secs(s.overlap_secs.unwrap_or(defaults::OVERLAP.as_secs()));
        if overlap > Duration::from_secs(24 * 3600) {
            problem(key("overlap_secs"), "is more than one day".into());
        }
        let default_schedule = || Schedule::Cron(defaults::SCHEDULE.to_owned());
        let schedule = match (&s.schedule, s.poll_interval_secs) {
            (Some(_), Some(_)) => {
                problem(
                    key("schedule"),
                    "give either `schedule` (cron) or `poll_interval_secs`, not both".into(),
                );
                default_schedule()
            }
            (Some(expr), None) => match cron_problem(expr) {
                Some(message) => {
                    problem(key("schedule"), message);
                    default_schedule()
                }
                None => Schedule::Cron(expr.trim().to_owned()),
            },
            (None, Some(0)) => {
                problem(key("poll_interval_secs"), "must be at least 1".into());
                default_schedule()
            }
            (None, Some(v)) => Schedule::Every(Duration::from_secs(v)),
            (None, None) => default_schedule(),
        };
        let catchup_window = match s.catchup_window_secs {
            Some(v) if v < 60 => {
                problem(key("catchup_window_secs"), "must be at least 60".into());
                defaults::CATCHUP_WINDOW
            }
            Some(v) => Duration::from_secs(v),
            None => defaults::CATCHUP_WINDOW,
        };
        let sweep_interval = match s.sweep_interval_secs {
            Some(0) => None,
            Some(v) => Some(Duration::from_secs(v)),
            None => Some(defaults::SWEEP_INTERVAL),
        };
        let sweep_lookback = Duration::from_secs(
            s.sweep_lookback_secs
                .unwrap_or(defaults::SWEEP_LOOKBACK.as_secs()),
        );
        // (An overlap over a day is reported above; comparing with it would say it twice.)
        if sweep_lookback <= overlap && overlap <= Duration::from_secs(24 * 3600) {
            problem(
                key("sweep_lookback_secs"),
                format!(
                    "must be longer than overlap_secs ({}): the sweep reads what the polls no longer re-read",
                    overlap.as_secs()
                ),
            );
        } else if matches!(kind, SourceKind::CloudTrail)
            && sweep_lookback > defaults::CLOUDTRAIL_RETENTION
        {
            problem(
                key("sweep_lookback_secs"),
                format!(
                    "is more than the {} days CloudTrail event history keeps events",
                    defaults::CLOUDTRAIL_RETENTION.as_secs() / 86_400
                ),
            );
        }
        let id = match (&s.name, &kind) {
            (Some(n), _) => n.clone(),
            (None, SourceKind::CloudTrail) => format!("cloudtrail:{region}"),
            (None, SourceKind::CloudWatchLogs { log_group, .. }) => {
                format!("cloudwatch_logs:{region}:{log_group}")
            }
        };
        if id.is_empty() {
            problem(key("name"), "must not be empty".into());
        } else if !ids.insert(id.clone()) {
            problem(
                key("name"),
                format!("`{id}` names two sources; give each a unique `name`"),
            );
        }
        let trail = match s.trail {
            Some(t) if !trail_ok(&t) => {
                problem(
                    key("trail"),
                    format!("`{t}` is not a trail name (3 to 128 of A-Z a-z 0-9 . _ -, starting with a letter or digit) or a trail ARN"),
                );
                None
            }
            t => t,
        };
        sources.push(SourceConfig {
            id,
            trail,
            kind,
            region,
            overlap,
            max_requests_per_sec: rps,
            schedule,
            catchup_window,
            sweep_interval,
            sweep_lookback,
        });
    }

    let vendor = vendor::validate(raw.vendor, &mut problems);
    let channels = channel::validate(raw.channels, &mut problems);
    let channel_names: HashSet<&str> = channels.iter().map(|c| c.name.as_str()).collect();

    // What the packs are made from: the vendor, and the sources' trails and log groups.
    let base_params = pack_params(&vendor, &sources);
    let mut rules = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        let key = |k: &str| format!("rule[{i}].{k}");
        let severity = r.severity.as_deref().map(|s| {
            Severity::parse(s).unwrap_or_else(|| {
                problems.push(Problem {
                    key: key("severity"),
                    message: format!("`{s}` is not one of info, low, medium, high, critical"),
                });
                Severity::High
            })
        });
        let rule_channels = r.channels.as_ref().map(|list| {
            let mut seen = HashSet::new();
            for c in list {
                if !channel_names.contains(c.as_str()) {
                    let mut known: Vec<&str> = channel_names.iter().copied().collect();
                    known.sort_unstable();
                    problems.push(Problem {
                        key: key("channels"),
                        message: format!(
                            "`{c}` is not a channel; the channels are: {}",
                            known.join(", ")
                        ),
                    });
                } else if !seen.insert(c.as_str()) {
                    problems.push(Problem {
                        key: key("channels"),
                        message: format!("`{c}` is listed twice"),
                    });
                }
            }
            if list.is_empty() {
                problems.push(Problem {
                    key: key("channels"),
                    message: "is empty: the rule's alerts would go nowhere (leave it out to use every channel)".into(),
                });
            }
            list.clone()
        });
        let mut add = |name: String,
                       pattern: FilterPattern,
                       severity: Severity,
                       problems: &mut Vec<Problem>| {
            if name.trim().is_empty() {
                problems.push(Problem {
                    key: key("name"),
                    message: "must not be empty".into(),
                });
            } else if !names.insert(name.clone()) {
                problems.push(Problem {
                    key: key("name"),
                    message: format!("`{name}` names two rules"),
                });
            }
            rules.push(Rule {
                name,
                pattern,
                severity,
                channels: rule_channels.clone(),
            });
        };
        match (r.pattern, r.pack) {
            (Some(_), Some(_)) => problems.push(Problem {
                key: key("pack"),
                message: "give either `pattern` (your own) or `pack` (a built-in set), not both"
                    .into(),
            }),
            (None, None) => problems.push(Problem {
                key: key("pattern"),
                message: "a rule needs a `pattern` (a filter pattern) or a `pack` (documented, complete or trail-tamper)".into(),
            }),
            (Some(text), None) => {
                if r.alarm_names.is_some() {
                    problems.push(Problem {
                        key: key("alarm_names"),
                        message: "applies only to `pack = \"trail-tamper\"`".into(),
                    });
                }
                let Some(name) = r.name else {
                    problems.push(Problem {
                        key: key("name"),
                        message: "is required for a rule with a `pattern`".into(),
                    });
                    continue;
                };
                match FilterPattern::new(&text) {
                    Ok(pattern) => add(
                        name,
                        pattern,
                        severity.unwrap_or(Severity::High),
                        &mut problems,
                    ),
                    Err(e) => problems.push(Problem {
                        key: key("pattern"),
                        message: e.to_string(),
                    }),
                }
            }
            (None, Some(pack_name)) => {
                let Some(pack) = Pack::parse(&pack_name) else {
                    let names: Vec<&str> = Pack::ALL.iter().map(|p| p.as_str()).collect();
                    problems.push(Problem {
                        key: key("pack"),
                        message: format!(
                            "`{pack_name}` is not a rule pack: use {}",
                            names.join(", ")
                        ),
                    });
                    continue;
                };
                if r.alarm_names.is_some() && pack != Pack::TrailTamper {
                    problems.push(Problem {
                        key: key("alarm_names"),
                        message: "applies only to `pack = \"trail-tamper\"`".into(),
                    });
                }
                let params = PackParams {
                    alarm_names: r.alarm_names.clone().unwrap_or_default(),
                    ..base_params.clone()
                };
                let base = r.name.clone().unwrap_or_else(|| pack.as_str().to_owned());
                for pr in crate::rules::expand(pack, &params) {
                    match FilterPattern::new(&pr.pattern) {
                        Ok(pattern) => add(
                            pr.name(&base),
                            pattern,
                            severity.unwrap_or(pr.default_severity),
                            &mut problems,
                        ),
                        // The packs are tested to compile with the longest names; this is
                        // a parameter the tests did not foresee.
                        Err(e) => problems.push(Problem {
                            key: key("pack"),
                            message: format!(
                                "pack `{pack}` gives an invalid pattern with these parameters (please report it): {e}"
                            ),
                        }),
                    }
                }
            }
        }
    }
    if rules.is_empty() && problems.is_empty() {
        rules.push(Rule::documented());
    }

    let daemon = validate_daemon(&raw.daemon, &mut problems);
    let admin = validate_admin(&raw.admin, &mut problems);

    if !problems.is_empty() {
        return Err(ConfigError {
            file: file.map(Path::to_owned),
            problems,
        });
    }
    Ok(Config {
        file: file.map(Path::to_owned),
        state: StateConfig {
            path: raw.state.path,
            initial_lookback,
        },
        sources,
        rules,
        channels,
        vendor,
        daemon,
        admin,
    })
}

/// The parameters of the rule packs and of pattern lint: the vendor's role, policy and
/// account, the trails the sources name and the log groups they read.
fn pack_params(vendor: &VendorConfig, sources: &[SourceConfig]) -> PackParams {
    let mut trails: Vec<String> = sources.iter().filter_map(|s| s.trail.clone()).collect();
    trails.sort();
    trails.dedup();
    let mut log_groups: Vec<String> = sources
        .iter()
        .filter_map(|s| match &s.kind {
            SourceKind::CloudWatchLogs { log_group, .. } => Some(log_group.clone()),
            SourceKind::CloudTrail => None,
        })
        .collect();
    log_groups.sort();
    log_groups.dedup();
    PackParams {
        role_name: vendor.role_name.clone(),
        policy_name: vendor.policy_name.clone(),
        account_id: vendor.account_id.clone(),
        trails,
        log_groups,
        include_tag_changes: vendor.tags_gate_access,
        ..PackParams::default()
    }
}

impl Config {
    /// What pattern lint checks the rules against: the watched role, policy and account, the
    /// trails and log groups.
    pub fn lint_context(&self) -> crate::rules::LintContext {
        crate::rules::LintContext {
            params: pack_params(&self.vendor, &self.sources),
        }
    }

    /// Pattern lint of every rule, and what the sources cannot see: `(what, finding)` where
    /// `what` is ``rule `NAME` `` or ``source `ID` ``; warnings before notes per rule.
    pub fn lint(&self) -> Vec<(String, crate::rules::Lint)> {
        // One unpacked list of event names for all the rules; freed when lint is done.
        let _names = crate::rules::event_names::table();
        let ctx = self.lint_context();
        let mut out: Vec<(String, crate::rules::Lint)> = self
            .rules
            .iter()
            .flat_map(|r| {
                crate::rules::lint(&r.pattern, &ctx)
                    .into_iter()
                    .map(move |l| (format!("rule `{}`", r.name), l))
            })
            .collect();
        out.extend(self.trail_region_lints());
        out
    }

    /// CloudTrail records a trail's own events (StopLogging, DeleteTrail, …) in the trail's
    /// home region: a `cloudtrail` source in another region never sees them.
    fn trail_region_lints(&self) -> Vec<(String, crate::rules::Lint)> {
        let watches_trails = self
            .rules
            .iter()
            .any(|r| r.pattern.as_str().contains("cloudtrail.amazonaws.com"));
        if !watches_trails {
            return Vec::new();
        }
        self.sources
            .iter()
            .filter(|s| s.kind == SourceKind::CloudTrail)
            .filter_map(|s| {
                let trail = s.trail.as_deref()?;
                // arn:aws:cloudtrail:REGION:ACCOUNT:trail/NAME
                let region = trail.strip_prefix("arn:")?.split(':').nth(2)?;
                (region != s.region).then(|| {
                    (
                        format!("source `{}`", s.id),
                        crate::rules::Lint {
                            level: crate::rules::LintLevel::Warning,
                            message: format!(
                                "the trail `{trail}` lives in {region}, but this source reads LookupEvents in {}: changes to the trail (StopLogging, DeleteTrail, UpdateTrail, PutEventSelectors) are recorded in {region} only; add a `cloudtrail` source with `region = \"{region}\"` to see them",
                                s.region
                            ),
                        },
                    )
                })
            })
            .collect()
    }
}

fn validate_daemon(raw: &raw::RawDaemon, problems: &mut Vec<Problem>) -> DaemonConfig {
    let mut problem = |key: &str, message: String| {
        problems.push(Problem {
            key: format!("daemon.{key}"),
            message,
        });
    };
    let mut d = DaemonConfig::default();
    match raw.shutdown_grace_secs {
        Some(0) => problem("shutdown_grace_secs", "must be at least 1".into()),
        Some(v) if v > 3600 => problem("shutdown_grace_secs", format!("{v} is more than an hour")),
        Some(v) => d.shutdown_grace = Duration::from_secs(v),
        None => {}
    }
    match raw.log_format.as_deref() {
        None | Some("auto") => {}
        Some("json") => d.log_format = LogFormat::Json,
        Some("text") => d.log_format = LogFormat::Text,
        Some(other) => problem(
            "log_format",
            format!("`{other}` is not one of auto, json, text"),
        ),
    }
    if let Some(expr) = &raw.heartbeat_schedule {
        match cron_problem(expr) {
            Some(message) => problem("heartbeat_schedule", message),
            None => d.heartbeat_schedule = Some(expr.trim().to_owned()),
        }
    }
    match raw.blind_after_failures {
        Some(0) => problem("blind_after_failures", "must be at least 1".into()),
        Some(v) => d.blind_after_failures = v,
        None => {}
    }
    match raw.blind_after_secs {
        Some(0) => problem("blind_after_secs", "must be at least 1".into()),
        Some(v) => d.blind_after = Duration::from_secs(v),
        None => {}
    }
    d
}

fn validate_admin(raw: &raw::RawAdmin, problems: &mut Vec<Problem>) -> AdminConfig {
    let text = raw.listen.as_deref().unwrap_or(defaults::ADMIN_LISTEN);
    let listen = match text.parse::<std::net::SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(Problem {
                key: "admin.listen".into(),
                message: format!("`{text}` is not an address and port such as 127.0.0.1:9464"),
            });
            None
        }
    };
    AdminConfig {
        listen: listen.filter(|_| raw.enabled.unwrap_or(true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rolewatch.toml");
        std::fs::write(&path, text).unwrap();
        load(Some(&path))
    }

    #[test]
    fn defaults_watch_cloudtrail_in_us_east_1_with_the_documented_rule() {
        let c = load(None).unwrap();
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.sources[0].kind, SourceKind::CloudTrail);
        assert_eq!(c.sources[0].region, "us-east-1");
        assert_eq!(c.sources[0].id, "cloudtrail:us-east-1");
        assert_eq!(c.sources[0].overlap, Duration::from_secs(1200));
        assert_eq!(c.rules.len(), 1);
        assert_eq!(
            c.rules[0].pattern.as_str(),
            crate::rules::DOCUMENTED_PATTERN
        );
        assert_eq!(c.state.initial_lookback, Duration::from_secs(3600));
    }

    #[test]
    fn full_file_parses() {
        let c = from_toml(
            r#"
            [state]
            path = "/tmp/x/state.db"
            initial_lookback_secs = 7200
            [[source]]
            type = "cloudtrail"
            max_requests_per_sec = 2
            [[source]]
            type = "cloudwatch_logs"
            region = "eu-west-1"
            log_group = "aws-cloudtrail-logs"
            log_stream_prefix = "123456789012_CloudTrail"
            overlap_secs = 600
            [[rule]]
            name = "x"
            pattern = "{ $.eventName = PutRolePolicy }"
            severity = "critical"
            "#,
        )
        .unwrap();
        assert_eq!(c.sources.len(), 2);
        assert_eq!(
            c.sources[1].id,
            "cloudwatch_logs:eu-west-1:aws-cloudtrail-logs"
        );
        assert_eq!(c.rules[0].severity, Severity::Critical);
        assert_eq!(c.state.initial_lookback, Duration::from_secs(7200));
    }

    #[test]
    fn every_problem_is_reported_with_its_key_and_file() {
        let err = from_toml(
            r#"
            [[source]]
            type = "cloudtrail"
            max_requests_per_sec = 5
            log_group = "x"
            [[source]]
            type = "cloudwatch_logs"
            [[rule]]
            name = "bad"
            pattern = "{ $.a = }"
            severity = "urgent"
            "#,
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 5, "{text}");
        for key in [
            "source[0].max_requests_per_sec",
            "source[0].log_group",
            "source[1].log_group",
            "rule[0].severity",
            "rule[0].pattern",
        ] {
            assert!(
                text.contains(&format!("rolewatch.toml: {key}: ")),
                "{key} missing in\n{text}"
            );
        }
        assert!(
            text.contains('^'),
            "the pattern error keeps its caret:\n{text}"
        );
    }

    #[test]
    fn schedules_default_to_every_minute_and_take_cron_or_an_interval_not_both() {
        let c = load(None).unwrap();
        assert_eq!(c.sources[0].schedule, Schedule::Cron("0 * * * * *".into()));
        assert_eq!(c.daemon.shutdown_grace, Duration::from_secs(20));
        assert_eq!(c.admin.listen, Some("127.0.0.1:9464".parse().unwrap()));
        let c = from_toml(
            "[[source]]\ntype = \"cloudtrail\"\nschedule = \"*/2 * * * * *\"\n\
             [[source]]\ntype = \"cloudtrail\"\nname = \"b\"\npoll_interval_secs = 90\n\
             [admin]\nenabled = false\n[daemon]\nheartbeat_schedule = \"0 0 9 * * *\"\n",
        )
        .unwrap();
        assert_eq!(
            c.sources[0].schedule,
            Schedule::Cron("*/2 * * * * *".into())
        );
        assert_eq!(
            c.sources[1].schedule,
            Schedule::Every(Duration::from_secs(90))
        );
        assert_eq!(c.admin.listen, None);
        let err = from_toml(
            "[[source]]\ntype = \"cloudtrail\"\nschedule = \"0 * * * * *\"\npoll_interval_secs = 5\n\
             [daemon]\nheartbeat_schedule = \"daily\"\nshutdown_grace_secs = 0\n[admin]\nlisten = \"localhost\"\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "source[0].schedule",
                "daemon.shutdown_grace_secs",
                "daemon.heartbeat_schedule",
                "admin.listen"
            ],
            "{err}"
        );
    }

    #[test]
    fn environment_overrides_the_file_and_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rolewatch.toml");
        std::fs::write(
            &path,
            "[daemon]\nshutdown_grace_secs = 5\nlog_format = \"text\"\n[vendor]\naccount_id = \"111122223333\"\n",
        )
        .unwrap();
        let c = load_with_env(
            Some(&path),
            [
                ("ROLEWATCH__DAEMON__SHUTDOWN_GRACE_SECS", "30"),
                ("ROLEWATCH__ADMIN__ENABLED", "false"),
                ("ROLEWATCH__VENDOR__ACCOUNT_ID", "012345678901"),
                (
                    "ROLEWATCH__VENDOR__ALLOWED_PRINCIPALS",
                    "arn:aws:iam::012345678901:role/ci-*, arn:aws:iam::012345678901:role/tf",
                ),
                ("ROLEWATCH__STATE__PATH", "/var/lib/rolewatch/x.db"),
                // Not ours: one underscore after the prefix.
                ("ROLEWATCH_TEST_PYTHON", "/usr/bin/python3"),
                ("HOME", "/root"),
            ],
        )
        .unwrap();
        assert_eq!(c.daemon.shutdown_grace, Duration::from_secs(30));
        assert_eq!(
            c.daemon.log_format,
            LogFormat::Text,
            "the file still counts"
        );
        assert_eq!(c.admin.listen, None);
        assert_eq!(c.vendor.account_id, "012345678901", "leading zero kept");
        assert_eq!(
            c.vendor.allowed_principals,
            [
                "arn:aws:iam::012345678901:role/ci-*",
                "arn:aws:iam::012345678901:role/tf"
            ]
        );
        assert_eq!(
            c.state.path.as_deref(),
            Some(Path::new("/var/lib/rolewatch/x.db"))
        );
        // Without a file too.
        let c = load_with_env(None, [("ROLEWATCH__DAEMON__LOG_FORMAT", "json")]).unwrap();
        assert_eq!(c.daemon.log_format, LogFormat::Json);
        assert_eq!(c.file, None);
    }

    #[test]
    fn bad_environment_overrides_name_the_variable() {
        let err = load_with_env(
            None,
            [
                ("ROLEWATCH__DAEMON__SHUTDOWN_GRACE_SECS", "0"),
                ("ROLEWATCH__DAEMON__LOG_FORMAT", "yaml"),
            ],
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 2, "{text}");
        assert!(
            text.contains("daemon.shutdown_grace_secs: must be at least 1 (set by the environment variable ROLEWATCH__DAEMON__SHUTDOWN_GRACE_SECS)"),
            "{text}"
        );
        assert!(text.contains("ROLEWATCH__DAEMON__LOG_FORMAT"), "{text}");

        let err = load_with_env(None, [("ROLEWATCH__DAEMON__GRACE", "5")]).unwrap_err();
        assert!(err.to_string().contains("grace"), "{err}");

        let err =
            load_with_env(None, [("ROLEWATCH__DAEMON__SHUTDOWN_GRACE_SECS", "soon")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("daemon.shutdown_grace_secs"), "{text}");
        assert!(
            text.contains("ROLEWATCH__DAEMON__SHUTDOWN_GRACE_SECS"),
            "{text}"
        );

        let err = load_with_env(None, [("ROLEWATCH__SOURCE__REGION", "eu-west-1")]).unwrap_err();
        assert!(
            err.to_string().contains("[[source]] is a list of tables"),
            "{err}"
        );
        let err = load_with_env(None, [("ROLEWATCH__LOG_FORMAT", "json")]).unwrap_err();
        assert!(err.to_string().contains("ROLEWATCH__SECTION__KEY"), "{err}");
    }

    #[test]
    fn rules_name_their_channels_and_take_a_pattern_or_a_pack() {
        let c = from_toml(
            r#"
            [[channel]]
            type = "stdout"
            [[channel]]
            type = "stdout"
            name = "second"
            [[rule]]
            name = "x"
            pattern = "{ $.eventName = PutRolePolicy }"
            channels = ["second"]
            "#,
        )
        .unwrap();
        assert_eq!(
            c.rules[0].channels.as_deref(),
            Some(&["second".to_owned()][..])
        );
        let err = from_toml(
            r#"
            [[rule]]
            name = "x"
            pattern = "{ $.eventName = PutRolePolicy }"
            channels = ["pager", "stdout", "stdout"]
            alarm_names = ["x"]
            [[rule]]
            name = "y"
            [[rule]]
            pattern = "{ $.eventName = PutRolePolicy }"
            [[rule]]
            name = "z"
            pattern = "{ $.eventName = PutRolePolicy }"
            pack = "complete"
            "#,
        )
        .unwrap_err();
        let text = err.to_string();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rule[0].channels",
                "rule[0].channels",
                "rule[0].alarm_names",
                "rule[1].pattern",
                "rule[2].name",
                "rule[3].pack"
            ],
            "{text}"
        );
        assert!(
            text.contains("`pager` is not a channel; the channels are: stdout"),
            "{text}"
        );
    }

    #[test]
    fn packs_expand_into_named_rules_with_the_vendor_and_the_sources() {
        let c = from_toml(
            r#"
            [[source]]
            type = "cloudwatch_logs"
            log_group = "aws-cloudtrail-logs-acme"
            trail = "org-trail"
            [[channel]]
            type = "stdout"
            name = "pager"
            [vendor]
            role_name = "acme-remote"
            policy_name = "AcmeAccess"
            account_id = "111122223333"
            tags_gate_access = false
            [[rule]]
            pack = "complete"
            [[rule]]
            name = "tamper"
            pack = "trail-tamper"
            severity = "medium"
            channels = ["pager"]
            alarm_names = ["acme-role-changed"]
            "#,
        )
        .unwrap();
        let names: Vec<&str> = c.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["complete", "tamper-trail", "tamper-logs", "tamper-alarms"]
        );
        let complete = c.rules[0].pattern.as_str();
        assert!(complete.contains("\"acme-remote\""), "{complete}");
        assert!(complete.contains("*/AcmeAccess"), "{complete}");
        assert!(!complete.contains("TagRole"), "{complete}");
        assert_eq!(c.rules[0].severity, Severity::High);
        assert!(c.rules[1].pattern.as_str().contains("org-trail"));
        assert!(c.rules[2]
            .pattern
            .as_str()
            .contains("aws-cloudtrail-logs-acme"));
        assert!(c.rules[3].pattern.as_str().contains("acme-role-changed"));
        for r in &c.rules[1..] {
            assert_eq!(r.severity, Severity::Medium);
            assert_eq!(r.channels.as_deref(), Some(&["pager".to_owned()][..]));
        }
        // The complete pack lints clean; the documented one does not.
        assert!(c
            .lint()
            .iter()
            .all(|(_, l)| l.level != crate::rules::LintLevel::Warning));
        let d = load_with_env(None, [("A", "B")]).unwrap();
        assert!(d.lint().iter().any(
            |(r, l)| r == "rule `documented`" && l.message.contains("SetDefaultPolicyVersion")
        ));

        let err = from_toml(
            "[[rule]]\npack = \"documented\"\nalarm_names = [\"a\"]\n\
             [[rule]]\npack = \"trail-tamper\"\nseverity = \"loud\"\n\
             [[rule]]\npack = \"everything\"\n\
             [[rule]]\npack = \"complete\"\n[[rule]]\npack = \"complete\"\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rule[0].alarm_names",
                "rule[1].severity",
                "rule[2].pack",
                "rule[4].name"
            ],
            "{err}"
        );
    }

    #[test]
    fn a_trail_in_another_region_than_its_source_is_a_lint_warning() {
        let c = from_toml(
            "[[source]]\ntype = \"cloudtrail\"\n\
             trail = \"arn:aws:cloudtrail:eu-west-1:111122223333:trail/org\"\n\
             [[rule]]\npack = \"trail-tamper\"\n",
        )
        .unwrap();
        let found: Vec<String> = c.lint().iter().map(|(w, l)| format!("{w}: {l}")).collect();
        assert!(
            found.iter().any(|f| f
                .starts_with("source `cloudtrail:us-east-1`: warning: the trail")
                && f.contains("recorded in eu-west-1 only")),
            "{found:#?}"
        );
        // The same trail read from its own region: nothing to say.
        let c = from_toml(
            "[[source]]\ntype = \"cloudtrail\"\nregion = \"eu-west-1\"\n\
             trail = \"arn:aws:cloudtrail:eu-west-1:111122223333:trail/org\"\n\
             [[rule]]\npack = \"trail-tamper\"\n",
        )
        .unwrap();
        assert!(c.lint().iter().all(|(w, _)| !w.starts_with("source")));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = from_toml("[state]\npaht = \"x\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("paht"), "{text}");
        assert!(text.contains("rolewatch.toml"), "{text}");
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let err = from_toml("[[source]\n").unwrap_err();
        assert!(err.to_string().contains("rolewatch.toml"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = load(Some(Path::new("/nonexistent/rolewatch.toml"))).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
