//! Configuration: read a TOML file into [`RawConfig`], then validate it — purely, with no
//! network and no credentials — into a [`Config`] whose patterns are compiled and whose ranges
//! are checked. Validation collects every problem, each naming its key and the file.

pub mod accounts;
pub mod channel;
pub mod defaults;
pub mod effective;
mod error;
pub mod expect;
mod load;
mod model;
pub mod organization;
pub mod raw;
pub mod state_backend;
mod validate;
pub mod vendor;

pub use accounts::{AccountConfig, ExternalId};
pub use channel::{
    is_loopback_host, ChannelConfig, ChannelKind, DeliveryPolicy, PagerDutyChannelConfig,
    PasswordSource, SmtpAuth, SmtpChannelConfig, SmtpTls, SnsChannelConfig, SnsFormat,
    WebhookChannelConfig, WebhookFormat,
};
pub use error::{ConfigError, Problem};
pub use expect::Expectation;
pub use load::{load, load_with_env, ENV_PREFIX};
pub use model::{
    AdminConfig, Config, DaemonConfig, LogFormat, Schedule, SourceConfig, SourceKind, StateConfig,
};
pub use organization::OrganizationConfig;
pub use raw::RawConfig;
pub use state_backend::{DynamoConfig, StateBackend};
pub use validate::validate;
pub use vendor::VendorConfig;

impl Config {
    /// This configuration watching the `discovered` accounts (from `[organization]`) beside
    /// its `[[account]]` entries — an entry overrides the discovered account with the same
    /// id — with every `cloudtrail` source once per account of the union.
    #[must_use]
    pub fn with_accounts(&self, discovered: Vec<AccountConfig>) -> Config {
        let mut accounts = self.accounts.clone();
        for a in discovered {
            if !accounts.iter().any(|e| e.id == a.id) {
                accounts.push(a);
            }
        }
        let mut c = self.clone();
        c.sources = validate::per_account(self.source_templates.clone(), &accounts);
        c.accounts = accounts;
        c
    }

    /// What pattern lint checks the rules against: the watched role, policy and account, the
    /// trails and log groups.
    pub fn lint_context(&self) -> crate::rules::LintContext {
        crate::rules::LintContext {
            params: validate::pack_params(&self.vendor, &self.sources),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Severity;
    use std::path::Path;
    use std::time::Duration;

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
