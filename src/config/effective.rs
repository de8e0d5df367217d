//! The effective configuration as TOML: what `rolewatch validate-config` prints. Defaults are
//! filled in and environment overrides applied; it is itself a valid configuration file
//! (loading it gives the same configuration). Secrets are never in it: a password appears
//! only as the variable or file that holds it.

use toml::{Table, Value};

use super::{ChannelKind, Config, LogFormat, PasswordSource, Schedule, SmtpTls, SourceKind};

/// Renders `cfg` as a TOML document.
pub fn to_toml(cfg: &Config) -> String {
    let mut root = Table::new();

    let mut state = Table::new();
    if let Some(p) = &cfg.state.path {
        state.insert("path".into(), p.display().to_string().into());
    }
    state.insert(
        "initial_lookback_secs".into(),
        secs(cfg.state.initial_lookback),
    );
    super::state_backend::to_toml(&cfg.state.backend, &mut state);
    root.insert("state".into(), state.into());

    // As configured: each `cloudtrail` source once, not once per account.
    let sources = cfg
        .source_templates
        .iter()
        .map(|s| {
            let mut t = Table::new();
            match &s.kind {
                SourceKind::CloudTrail => {
                    t.insert("type".into(), "cloudtrail".into());
                }
                SourceKind::CloudWatchLogs {
                    log_group,
                    log_stream_prefix,
                } => {
                    t.insert("type".into(), "cloudwatch_logs".into());
                    t.insert("log_group".into(), log_group.as_str().into());
                    if let Some(p) = log_stream_prefix {
                        t.insert("log_stream_prefix".into(), p.as_str().into());
                    }
                }
                SourceKind::Sqs {
                    queue_url,
                    dlq_url,
                    wait_time,
                } => {
                    t.insert("type".into(), "sqs".into());
                    t.insert("name".into(), s.id.as_str().into());
                    t.insert("region".into(), s.region.as_str().into());
                    t.insert("queue_url".into(), queue_url.as_str().into());
                    if let Some(d) = dlq_url {
                        t.insert("dlq_url".into(), d.as_str().into());
                    }
                    t.insert("wait_time_secs".into(), secs(*wait_time));
                    t.insert("retry_budget_secs".into(), secs(s.retry_budget));
                    return Value::Table(t);
                }
            }
            t.insert("name".into(), s.id.as_str().into());
            t.insert("region".into(), s.region.as_str().into());
            if let Some(trail) = &s.trail {
                t.insert("trail".into(), trail.as_str().into());
            }
            t.insert("overlap_secs".into(), secs(s.overlap));
            t.insert(
                "max_requests_per_sec".into(),
                Value::Float(s.max_requests_per_sec),
            );
            t.insert("retry_budget_secs".into(), secs(s.retry_budget));
            match &s.schedule {
                Schedule::Cron(c) => t.insert("schedule".into(), c.as_str().into()),
                Schedule::Every(d) => t.insert("poll_interval_secs".into(), secs(*d)),
            };
            t.insert("catchup_window_secs".into(), secs(s.catchup_window));
            t.insert(
                "sweep_interval_secs".into(),
                secs(s.sweep_interval.unwrap_or_default()),
            );
            t.insert("sweep_lookback_secs".into(), secs(s.sweep_lookback));
            Value::Table(t)
        })
        .collect::<Vec<_>>();
    root.insert("source".into(), sources.into());

    let rules = cfg
        .rules
        .iter()
        .map(|r| {
            let mut t = Table::new();
            t.insert("name".into(), r.name.as_str().into());
            t.insert("pattern".into(), r.pattern.as_str().into());
            t.insert("severity".into(), r.severity.as_str().into());
            if let Some(c) = &r.channels {
                t.insert("channels".into(), strings(c));
            }
            if let Some(a) = &r.accounts {
                t.insert("accounts".into(), strings(a));
            }
            Value::Table(t)
        })
        .collect::<Vec<_>>();
    root.insert("rule".into(), rules.into());

    let channels = cfg
        .channels
        .iter()
        .map(|c| {
            let mut t = Table::new();
            t.insert("type".into(), c.kind.type_name().into());
            t.insert("name".into(), c.name.as_str().into());
            match &c.kind {
                ChannelKind::Stdout => {}
                ChannelKind::Sns(s) => {
                    t.insert("topic_arn".into(), s.topic_arn.as_str().into());
                    t.insert("region".into(), s.region.as_str().into());
                    if s.format == super::SnsFormat::Chatbot {
                        t.insert("format".into(), "chatbot".into());
                    }
                }
                ChannelKind::Webhook(w) => {
                    secret(&mut t, "url", &w.url);
                    t.insert("format".into(), w.format.as_str().into());
                    if let Some(s) = &w.signing_secret {
                        secret(&mut t, "signing_secret", s);
                    }
                    t.insert(
                        "timeout_secs".into(),
                        i64::try_from(w.timeout.as_secs())
                            .unwrap_or(i64::MAX)
                            .into(),
                    );
                    if let Some(ca) = &w.ca_file {
                        t.insert("ca_file".into(), ca.display().to_string().into());
                    }
                }
                ChannelKind::PagerDuty(p) => {
                    secret(&mut t, "routing_key", &p.routing_key);
                    t.insert("events_url".into(), p.events_url.as_str().into());
                    t.insert(
                        "timeout_secs".into(),
                        i64::try_from(p.timeout.as_secs())
                            .unwrap_or(i64::MAX)
                            .into(),
                    );
                    if let Some(ca) = &p.ca_file {
                        t.insert("ca_file".into(), ca.display().to_string().into());
                    }
                }
                ChannelKind::Smtp(s) => {
                    t.insert("host".into(), s.host.as_str().into());
                    t.insert("port".into(), i64::from(s.port).into());
                    let tls = match s.tls {
                        SmtpTls::StartTls => "starttls",
                        SmtpTls::Implicit => "implicit",
                        SmtpTls::None => "none",
                    };
                    t.insert("tls".into(), tls.into());
                    if s.tls == SmtpTls::None {
                        t.insert("allow_plaintext".into(), true.into());
                    }
                    if let Some(auth) = &s.auth {
                        t.insert("username".into(), auth.username.as_str().into());
                        match &auth.password {
                            PasswordSource::Env(v) => {
                                t.insert("password_env".into(), v.as_str().into())
                            }
                            PasswordSource::File(p) => {
                                t.insert("password_file".into(), p.display().to_string().into())
                            }
                        };
                    }
                    if let Some(ca) = &s.ca_file {
                        t.insert("ca_file".into(), ca.display().to_string().into());
                    }
                    t.insert("from".into(), s.from.to_string().into());
                    let to: Vec<String> = s.to.iter().map(ToString::to_string).collect();
                    t.insert("to".into(), strings(&to));
                    if let Some(p) = &s.subject_prefix {
                        t.insert("subject_prefix".into(), p.as_str().into());
                    }
                }
            }
            if let Some(a) = &c.accounts {
                t.insert("accounts".into(), strings(a));
            }
            if let Some(n) = c.delivery.retry_max_attempts {
                t.insert("retry_max_attempts".into(), i64::from(n).into());
            }
            t.insert(
                "permanent_max_attempts".into(),
                i64::from(c.delivery.permanent_max_attempts).into(),
            );
            Value::Table(t)
        })
        .collect::<Vec<_>>();
    root.insert("channel".into(), channels.into());

    let mut vendor = Table::new();
    vendor.insert("role_name".into(), cfg.vendor.role_name.as_str().into());
    vendor.insert("policy_name".into(), cfg.vendor.policy_name.as_str().into());
    vendor.insert("account_id".into(), cfg.vendor.account_id.as_str().into());
    vendor.insert(
        "allowed_principals".into(),
        strings(&cfg.vendor.allowed_principals),
    );
    vendor.insert(
        "tags_gate_access".into(),
        cfg.vendor.tags_gate_access.into(),
    );
    root.insert("vendor".into(), vendor.into());

    if !cfg.expect.is_empty() {
        let entries = cfg
            .expect
            .iter()
            .map(|e| {
                let mut t = Table::new();
                t.insert("description".into(), e.description.as_str().into());
                t.insert(
                    "from".into(),
                    crate::time::format_rfc3339_ms(e.from_ms).into(),
                );
                t.insert(
                    "until".into(),
                    crate::time::format_rfc3339_ms(e.until_ms).into(),
                );
                if !e.event_names.is_empty() {
                    t.insert("event_names".into(), strings(&e.event_names));
                }
                let optional = [
                    ("policy", &e.policy),
                    ("default_version", &e.default_version),
                    ("document_sha256", &e.document_sha256),
                    ("actor_class", &e.actor_class),
                ];
                for (k, v) in optional {
                    if let Some(v) = v {
                        t.insert(k.into(), v.as_str().into());
                    }
                }
                if !e.principals.is_empty() {
                    t.insert("principals".into(), strings(&e.principals));
                }
                Value::Table(t)
            })
            .collect::<Vec<_>>();
        root.insert("expect".into(), entries.into());
    }

    let d = &cfg.daemon;
    let mut daemon = Table::new();
    daemon.insert("shutdown_grace_secs".into(), secs(d.shutdown_grace));
    let format = match d.log_format {
        LogFormat::Auto => "auto",
        LogFormat::Json => "json",
        LogFormat::Text => "text",
    };
    daemon.insert("log_format".into(), format.into());
    if let Some(h) = &d.heartbeat_schedule {
        daemon.insert("heartbeat_schedule".into(), h.as_str().into());
    }
    daemon.insert(
        "blind_after_failures".into(),
        i64::from(d.blind_after_failures).into(),
    );
    daemon.insert("blind_after_secs".into(), secs(d.blind_after));
    daemon.insert("channel_probe_secs".into(), secs(d.channel_probe));
    daemon.insert(
        "max_concurrent_polls".into(),
        i64::try_from(d.max_concurrent_polls)
            .unwrap_or(i64::MAX)
            .into(),
    );
    root.insert("daemon".into(), daemon.into());

    let mut admin = Table::new();
    admin.insert("enabled".into(), cfg.admin.listen.is_some().into());
    if let Some(l) = cfg.admin.listen {
        admin.insert("listen".into(), l.to_string().into());
    }
    root.insert("admin".into(), admin.into());

    if !cfg.accounts.is_empty() {
        let accounts = cfg
            .accounts
            .iter()
            .map(|a| {
                let mut t = Table::new();
                t.insert("id".into(), a.id.as_str().into());
                if let Some(n) = &a.name {
                    t.insert("name".into(), n.as_str().into());
                }
                if let Some(r) = &a.role_arn {
                    t.insert("role_arn".into(), r.as_str().into());
                }
                external_id(&mut t, a.external_id.as_ref());
                t.insert("session_name".into(), a.session_name.as_str().into());
                Value::Table(t)
            })
            .collect::<Vec<_>>();
        root.insert("account".into(), accounts.into());
    }

    if let Some(o) = &cfg.organization {
        let mut t = Table::new();
        t.insert("role_name".into(), o.role_name.as_str().into());
        external_id(&mut t, o.external_id.as_ref());
        t.insert("session_name".into(), o.session_name.as_str().into());
        if let Some(l) = &o.include_accounts {
            t.insert("include_accounts".into(), strings(l));
        }
        if !o.exclude_accounts.is_empty() {
            t.insert("exclude_accounts".into(), strings(&o.exclude_accounts));
        }
        if let Some(l) = &o.include_ous {
            t.insert("include_ous".into(), strings(l));
        }
        if !o.exclude_ous.is_empty() {
            t.insert("exclude_ous".into(), strings(&o.exclude_ous));
        }
        #[allow(clippy::cast_precision_loss)] // milliseconds of at most a week
        let minutes = o.refresh.as_millis() as f64 / 60_000.0;
        t.insert("refresh_minutes".into(), Value::Float(minutes));
        root.insert("organization".into(), t.into());
    }

    // A table of plain values cannot fail to serialise.
    toml::to_string(&root).unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
}

fn secs(d: std::time::Duration) -> Value {
    Value::Integer(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(s.as_str())).collect())
}

/// Where an ExternalId is: `external_id_env` or `external_id_file`; one written inline is
/// shown as `external_id = "<redacted>"` (this output is for reading, and a log).
fn external_id(t: &mut Table, id: Option<&super::ExternalId>) {
    match id {
        Some(super::ExternalId::Env(v)) => {
            t.insert("external_id_env".into(), v.as_str().into());
        }
        Some(super::ExternalId::File(p)) => {
            t.insert("external_id_file".into(), p.display().to_string().into());
        }
        Some(super::ExternalId::Inline(_)) => {
            t.insert("external_id".into(), "<redacted>".into());
        }
        None => {}
    }
}

/// `<key>_env` or `<key>_file`: where a secret is, never the secret.
fn secret(t: &mut Table, key: &str, source: &PasswordSource) {
    match source {
        PasswordSource::Env(v) => t.insert(format!("{key}_env"), v.as_str().into()),
        PasswordSource::File(p) => t.insert(format!("{key}_file"), p.display().to_string().into()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The output is a configuration that loads to the same configuration.
    #[test]
    fn the_effective_configuration_loads_back_to_itself() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rolewatch.toml");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("custom.toml");
        std::fs::write(
            &path,
            r#"
            [state]
            path = "/tmp/x.db"
            [[source]]
            type = "cloudtrail"
            [[source]]
            type = "cloudwatch_logs"
            log_group = "aws-cloudtrail-logs"
            log_stream_prefix = "111122223333_CloudTrail"
            trail = "management-events"
            poll_interval_secs = 90
            [[channel]]
            type = "smtp"
            host = "smtp.example.com"
            username = "u"
            password_env = "SMTP_PASSWORD"
            from = "Rolewatch <rolewatch@example.com>"
            to = ["oncall@example.com"]
            subject_prefix = "[prod]"
            [[channel]]
            type = "webhook"
            name = "slack"
            format = "slack"
            url_file = "/run/secrets/slack-url"
            signing_secret_env = "HOOK_SECRET"
            timeout_secs = 5
            ca_file = "/etc/ca.pem"
            [[channel]]
            type = "pagerduty"
            routing_key_env = "PD_KEY"
            events_url = "https://events.eu.pagerduty.com/v2/enqueue"
            [[channel]]
            type = "sns"
            name = "chat"
            format = "chatbot"
            topic_arn = "arn:aws:sns:eu-west-1:111122223333:chat"
            [[channel]]
            type = "sns"
            topic_arn = "arn:aws:sns:eu-west-1:111122223333:alerts"
            retry_max_attempts = 100
            accounts = ["111122223333"]
            [[rule]]
            name = "mine"
            pattern = '{ $.eventName = "PutRolePolicy" }'
            severity = "critical"
            channels = ["sns"]
            accounts = ["444455556666"]
            [vendor]
            allowed_principals = ["arn:aws:iam::111122223333:role/ci-*"]
            [[expect]]
            description = "vendor notice"
            from = "2026-12-10T00:00:00Z"
            until = "2026-12-12T00:00:00Z"
            event_names = ["CreatePolicyVersion"]
            default_version = "v5"
            principals = ["arn:aws:sts::*:assumed-role/astronomer-remote-management/*"]
            [daemon]
            heartbeat_schedule = "0 0 9 * * *"
            [admin]
            enabled = false
            [[account]]
            id = "111122223333"
            name = "management"
            [[account]]
            id = "444455556666"
            role_arn = "arn:aws:iam::444455556666:role/rolewatch-member"
            external_id = "inline-secret"
            [organization]
            external_id_file = "/run/secrets/ext"
            exclude_accounts = ["777788889999"]
            include_ous = ["ou-ab12-cdefgh34"]
            refresh_minutes = 15
            "#,
        )
        .unwrap();
        for file in [
            None,
            Some(std::path::Path::new(example)),
            Some(path.as_path()),
        ] {
            let first = to_toml(&super::super::load_with_env(file, [("A", "B")]).unwrap());
            let again = dir.path().join("again.toml");
            std::fs::write(&again, &first).unwrap();
            let second = to_toml(&super::super::load_with_env(Some(&again), [("A", "B")]).unwrap());
            assert_eq!(first, second);
            assert!(first.contains("[[source]]"), "{first}");
        }
        let text = to_toml(&super::super::load_with_env(Some(&path), [("A", "B")]).unwrap());
        assert!(text.contains("password_env = \"SMTP_PASSWORD\""), "{text}");
        assert!(text.contains("channels = [\"sns\"]"), "{text}");
        assert!(text.contains("enabled = false"), "{text}");
        assert!(text.contains("[[expect]]"), "{text}");
        assert!(text.contains("until = \"2026-12-12T00:00:00Z\""), "{text}");
        assert!(!text.contains("inline-secret"), "{text}");
        assert!(text.contains("[[account]]"), "{text}");
        assert!(text.contains("external_id = \"<redacted>\""), "{text}");
        assert!(text.contains("[organization]"), "{text}");
        assert!(text.contains("accounts = [\"444455556666\"]"), "{text}");
        assert!(text.contains("accounts = [\"111122223333\"]"), "{text}");
        assert!(text.contains("refresh_minutes = 15.0"), "{text}");
        assert!(
            text.contains("external_id_file = \"/run/secrets/ext\""),
            "{text}"
        );
        assert!(text.contains("max_concurrent_polls = 50"), "{text}");
        // Each cloudtrail source once, not once per account.
        assert_eq!(text.matches("[[source]]").count(), 2, "{text}");
    }
}
