//! Validation: pure functions from the raw serde structs to the validated [`Config`]; every
//! problem is collected, none stops the others from being found.
//!
//! Why one file of ~570 lines: one pure function per section (`validate_source`,
//! `validate_rule`, daemon, admin), sharing the problem collector and the defaults.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use filter_pattern::FilterPattern;

use super::{
    channel, defaults, raw, vendor, AdminConfig, Config, ConfigError, DaemonConfig, LogFormat,
    Problem, RawConfig, Schedule, SourceConfig, SourceKind, StateConfig, VendorConfig,
};
use crate::rules::{Pack, PackParams, Rule, Severity};

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

    let backend = super::state_backend::validate(&raw.state, &mut problems);

    let mut sources = Vec::new();
    let mut ids = HashSet::new();
    let raw_sources = if raw.sources.is_empty() {
        vec![raw::RawSource {
            kind: "cloudtrail".into(),
            name: None,
            region: None,
            log_group: None,
            log_stream_prefix: None,
            queue_url: None,
            dlq_url: None,
            wait_time_secs: None,
            trail: None,
            overlap_secs: None,
            max_requests_per_sec: None,
            retry_budget_secs: None,
            schedule: None,
            poll_interval_secs: None,
            catchup_window_secs: None,
            sweep_interval_secs: None,
            sweep_lookback_secs: None,
        }]
    } else {
        raw.sources
    };
    let mut scheduled = Vec::new();
    for (i, s) in raw_sources.into_iter().enumerate() {
        let explicit = s.schedule.is_some() || s.poll_interval_secs.is_some();
        if let Some(source) = validate_source(i, s, &mut ids, &mut problems) {
            sources.push(source);
            scheduled.push(explicit);
        }
    }
    // Beside a queue, every poller is its backstop: one without a schedule of its own polls
    // every `BACKSTOP_INTERVAL` rather than every minute.
    if sources.iter().any(|s| s.kind.is_queue()) {
        for (s, explicit) in sources.iter_mut().zip(scheduled) {
            if !s.kind.is_queue() {
                s.backstop = true;
                if !explicit {
                    s.schedule = Schedule::Every(defaults::BACKSTOP_INTERVAL);
                }
            }
        }
    }

    // `accounts = [...]` on rules and channels, checked once the accounts are known.
    let account_refs: Vec<(String, Vec<String>)> = raw
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.accounts
                .clone()
                .map(|l| (format!("rule[{i}].accounts"), l))
        })
        .chain(raw.channels.iter().enumerate().filter_map(|(i, c)| {
            c.accounts
                .clone()
                .map(|l| (format!("channel[{i}].accounts"), l))
        }))
        .collect();
    let vendor = vendor::validate(raw.vendor, &mut problems);
    let expect = super::expect::validate(raw.expect, &mut problems);
    let channels = channel::validate(raw.channels, &mut problems);
    let channel_names: HashSet<&str> = channels.iter().map(|c| c.name.as_str()).collect();

    // What the packs are made from: the vendor, and the sources' trails and log groups.
    let base_params = pack_params(&vendor, &sources);
    let mut rules = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        validate_rule(
            i,
            r,
            &channel_names,
            &base_params,
            &mut rules,
            &mut names,
            &mut problems,
        );
    }
    if rules.is_empty() && problems.is_empty() {
        rules.push(Rule::documented());
    }

    let daemon = validate_daemon(&raw.daemon, &mut problems);
    let admin = validate_admin(&raw.admin, &mut problems);
    let accounts = super::accounts::validate(raw.accounts, &mut problems);
    let organization = super::organization::validate(raw.organization, &mut problems);
    check_account_refs(
        &account_refs,
        &accounts,
        organization.is_some(),
        &mut problems,
    );
    let source_templates = sources.clone();
    let sources = per_account(sources, &accounts);

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
            backend,
        },
        sources,
        rules,
        channels,
        vendor,
        expect,
        daemon,
        admin,
        accounts,
        organization,
        source_templates,
    })
}

/// Checks each `accounts = [...]` of a rule or channel: not empty, account ids, none twice,
/// and — when the accounts are static (`[[account]]` without `[organization]`) — each one
/// an `[[account]]`. With `[organization]` the accounts are known only at run time; with
/// neither, the one account's id is not in the configuration.
fn check_account_refs(
    refs: &[(String, Vec<String>)],
    accounts: &[super::AccountConfig],
    discovered: bool,
    problems: &mut Vec<Problem>,
) {
    let known: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
    let check_known = !discovered && !known.is_empty();
    for (key, list) in refs {
        if list.is_empty() {
            problems.push(Problem {
                key: key.clone(),
                message: "is empty: it would apply to no account (leave it out for every account)"
                    .into(),
            });
        }
        let mut seen = HashSet::new();
        for (j, id) in list.iter().enumerate() {
            let message = if !super::accounts::account_id_ok(id) {
                format!("`{id}` is not an account id (12 digits, as a string)")
            } else if !seen.insert(id.as_str()) {
                format!("`{id}` is listed twice")
            } else if check_known && !known.contains(&id.as_str()) {
                format!(
                    "`{id}` is not one of the [[account]] ids: {}",
                    known.join(", ")
                )
            } else {
                continue;
            };
            problems.push(Problem {
                key: format!("{key}[{j}]"),
                message,
            });
        }
    }
}

/// With `[[account]]`s, every `cloudtrail` source runs once per account, as
/// `<source>@<account>`; the other sources read a central log group or queue, where the
/// account comes from each record.
pub(super) fn per_account(
    sources: Vec<SourceConfig>,
    accounts: &[super::AccountConfig],
) -> Vec<SourceConfig> {
    if accounts.is_empty() {
        return sources;
    }
    let mut out = Vec::new();
    for s in sources {
        if s.kind == SourceKind::CloudTrail {
            for a in accounts {
                let mut each = s.clone();
                each.id = super::accounts::source_id(&s.id, &a.id);
                each.account = Some(a.id.clone());
                out.push(each);
            }
        } else {
            out.push(s);
        }
    }
    out
}

/// Validates `[[source]]` number `i`; `None` when it is too broken to be used (its problems
/// are recorded either way).
fn validate_source(
    i: usize,
    s: raw::RawSource,
    ids: &mut HashSet<String>,
    problems: &mut Vec<Problem>,
) -> Option<SourceConfig> {
    let mut problem = |key: String, message: String| problems.push(Problem { key, message });
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
            not_for_queue(&s, &mut problem, &key);
            (
                SourceKind::CloudTrail,
                defaults::CLOUDTRAIL_RPS,
                defaults::CLOUDTRAIL_MAX_RPS,
            )
        }
        "cloudwatch_logs" => {
            not_for_queue(&s, &mut problem, &key);
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
        "sqs" => {
            for (k, v) in [
                ("log_group", s.log_group.is_some()),
                ("log_stream_prefix", s.log_stream_prefix.is_some()),
                ("overlap_secs", s.overlap_secs.is_some()),
                ("max_requests_per_sec", s.max_requests_per_sec.is_some()),
                ("schedule", s.schedule.is_some()),
                ("poll_interval_secs", s.poll_interval_secs.is_some()),
                ("catchup_window_secs", s.catchup_window_secs.is_some()),
                ("sweep_interval_secs", s.sweep_interval_secs.is_some()),
                ("sweep_lookback_secs", s.sweep_lookback_secs.is_some()),
            ] {
                if v {
                    problem(
                        key(k),
                        "does not apply to `type = \"sqs\"` (a queue is read continuously, by long polls)".into(),
                    );
                }
            }
            let mut url = |k: &str, v: Option<&str>, required: bool| match v {
                Some(u) if queue_url_ok(u) => Some(u.to_owned()),
                Some(u) => {
                    problem(
                        key(k),
                        format!("`{u}` is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"),
                    );
                    None
                }
                None if required => {
                    problem(
                        key(k),
                        "is required for `type = \"sqs\"` (the URL of the queue the EventBridge rule delivers to)".into(),
                    );
                    None
                }
                None => None,
            };
            let queue_url = url("queue_url", s.queue_url.as_deref(), true).unwrap_or_default();
            let dlq_url = url("dlq_url", s.dlq_url.as_deref(), false);
            let wait_time = match s.wait_time_secs {
                None => defaults::SQS_WAIT,
                Some(v @ 1..=20) => Duration::from_secs(v),
                Some(v) => {
                    problem(
                        key("wait_time_secs"),
                        format!("{v} is out of range: 1 to 20 (SQS's long-poll limit)"),
                    );
                    defaults::SQS_WAIT
                }
            };
            (
                SourceKind::Sqs {
                    queue_url,
                    dlq_url,
                    wait_time,
                },
                // Unused: a long poll is one request per wait.
                1.0,
                1.0,
            )
        }
        other => {
            problem(
                key("type"),
                format!(
                    "`{other}` is not a source type: use `cloudtrail`, `cloudwatch_logs` or `sqs`"
                ),
            );
            return None;
        }
    };
    let rps = s.max_requests_per_sec.unwrap_or(default_rps);
    if !(rps > 0.0 && rps <= max_rps) {
        problem(
                key("max_requests_per_sec"),
                format!("{rps} is out of range: more than 0 and at most {max_rps} (the API's limit, shared with every other caller)"),
            );
    }
    let retry_budget = match s.retry_budget_secs {
        None => defaults::RETRY_BUDGET,
        Some(0) => {
            problem(
                key("retry_budget_secs"),
                "must be at least 1: a poll needs time for at least one retry".into(),
            );
            defaults::RETRY_BUDGET
        }
        Some(v) if v > defaults::MAX_RETRY_BUDGET.as_secs() => {
            problem(
                key("retry_budget_secs"),
                format!(
                    "{v} is more than {} (one hour)",
                    defaults::MAX_RETRY_BUDGET.as_secs()
                ),
            );
            defaults::RETRY_BUDGET
        }
        Some(v) => Duration::from_secs(v),
    };
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
        // A queue has nothing to sweep: its backstop does that.
        _ if kind.is_queue() => None,
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
        (None, SourceKind::Sqs { queue_url, .. }) => {
            format!("sqs:{}", queue_url.rsplit('/').next().unwrap_or_default())
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
    Some(SourceConfig {
        id,
        trail,
        kind,
        region,
        overlap,
        max_requests_per_sec: rps,
        retry_budget,
        schedule,
        catchup_window,
        sweep_interval,
        sweep_lookback,
        backstop: false,
        account: None,
    })
}

/// Reports the `sqs`-only keys on a poller.
fn not_for_queue(
    s: &raw::RawSource,
    problem: &mut impl FnMut(String, String),
    key: &impl Fn(&str) -> String,
) {
    for (k, v) in [
        ("queue_url", s.queue_url.is_some()),
        ("dlq_url", s.dlq_url.is_some()),
        ("wait_time_secs", s.wait_time_secs.is_some()),
    ] {
        if v {
            problem(key(k), "applies only to `type = \"sqs\"`".into());
        }
    }
}

/// Whether `u` looks like a queue URL: http(s), a host, and a path of account and name (a
/// local endpoint such as moto's is accepted, so the check is on the shape, not the host).
fn queue_url_ok(u: &str) -> bool {
    let Some(rest) = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
    else {
        return false;
    };
    let mut parts = rest.split('/');
    let host = parts.next().unwrap_or_default();
    let account = parts.next().unwrap_or_default();
    let name = parts.next().unwrap_or_default();
    !host.is_empty()
        && !account.is_empty()
        && !name.is_empty()
        && parts.next().is_none()
        && name.len() <= 80
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Validates `[[rule]]` number `i` into one rule (a pattern) or several (a pack), added to
/// `rules` under names that must be unique.
fn validate_rule(
    i: usize,
    r: raw::RawRule,
    channel_names: &HashSet<&str>,
    base_params: &PackParams,
    rules: &mut Vec<Rule>,
    names: &mut HashSet<String>,
    problems: &mut Vec<Problem>,
) {
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
    let mut add =
        |name: String, pattern: FilterPattern, severity: Severity, problems: &mut Vec<Problem>| {
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
                accounts: r.accounts.clone(),
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
                    return;
                };
                match FilterPattern::new(&text) {
                    Ok(pattern) => add(
                        name,
                        pattern,
                        severity.unwrap_or(Severity::High),
                        problems,
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
                    return;
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
                            problems,
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

/// The parameters of the rule packs and of pattern lint: the vendor's role, policy and
/// account, the trails the sources name and the log groups they read.
pub(super) fn pack_params(vendor: &VendorConfig, sources: &[SourceConfig]) -> PackParams {
    let mut trails: Vec<String> = sources.iter().filter_map(|s| s.trail.clone()).collect();
    trails.sort();
    trails.dedup();
    let mut log_groups: Vec<String> = sources
        .iter()
        .filter_map(|s| match &s.kind {
            SourceKind::CloudWatchLogs { log_group, .. } => Some(log_group.clone()),
            SourceKind::CloudTrail | SourceKind::Sqs { .. } => None,
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

fn validate_daemon(raw: &raw::RawDaemon, problems: &mut Vec<Problem>) -> DaemonConfig {
    let mut problem = |key: &str, message: String| {
        problems.push(Problem {
            key: format!("daemon.{key}"),
            message,
        });
    };
    let mut d = DaemonConfig::default();
    match raw.channel_probe_secs {
        Some(0) => problem("channel_probe_secs", "must be at least 1".into()),
        Some(v) if v > defaults::MAX_CHANNEL_PROBE.as_secs() => problem(
            "channel_probe_secs",
            format!(
                "{v} is more than {} (five minutes): a channel that is back would wait that long",
                defaults::MAX_CHANNEL_PROBE.as_secs()
            ),
        ),
        Some(v) => d.channel_probe = Duration::from_secs(v),
        None => {}
    }
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
    match raw.max_concurrent_polls {
        Some(0) => problem("max_concurrent_polls", "must be at least 1".into()),
        Some(v) if v > 10_000 => problem("max_concurrent_polls", format!("{v} is more than 10000")),
        Some(v) => d.max_concurrent_polls = v,
        None => {}
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
