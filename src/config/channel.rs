//! `[[channel]]`: where alerts go. Validated, like the rest of the configuration, without
//! touching the network or reading secrets: a password is named here (an environment
//! variable or a file) and read only when the channel is built.
//!
//! Keys, by type:
//!
//! - every channel: `type` (`stdout`, `sns`, `smtp`, `webhook` or `pagerduty`), `name` (default: the type; the outbox
//!   keys deliveries by it, so renaming a channel re-sends nothing and forgets its pending
//!   rows), `retry_max_attempts` (retryable errors; default: retry forever),
//!   `permanent_max_attempts` (errors a retry will not fix; default 5).
//! - `sns`: `topic_arn` (required), `region` (default: the ARN's region), `format` (`alert`,
//!   the default, or `chatbot`: the custom-notification JSON of Amazon Q Developer in chat
//!   applications).
//! - `webhook`: one of `url_env` or `url_file` (required; the URL is a secret), `format`
//!   (`json`, the default, `slack` or `teams`), optionally one of `signing_secret_env` or
//!   `signing_secret_file` (HMAC-SHA256 signature headers), `timeout_secs` (default 10),
//!   `ca_file`.
//! - `pagerduty`: one of `routing_key_env` or `routing_key_file` (required), `events_url`
//!   (default `https://events.pagerduty.com/v2/enqueue`), `timeout_secs`, `ca_file`.
//! - `smtp`: `host` (required), `port` (default 587 for `starttls`, 465 for `implicit`, 25
//!   for `none`), `tls` (`starttls`, the default, `implicit`, or `none` — only with
//!   `allow_plaintext = true` and a loopback host), `username` with one of `password_env` (the
//!   name of an environment variable) or `password_file` (a file holding the password),
//!   `ca_file` (extra trusted CA certificates, PEM, for a private relay), `from` (a mailbox),
//!   `to` (a list of mailboxes), `subject_prefix` (printable ASCII, at most 40 characters).

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use lettre::message::Mailbox;

use super::raw::RawChannel;
use super::Problem;

/// The default number of attempts for an alert a channel refuses for good (a bad recipient,
/// an authorization failure): enough to survive an operator's fix in progress, not forever.
pub const DEFAULT_PERMANENT_MAX_ATTEMPTS: u32 = 5;

/// The longest `subject_prefix`; the subject as a whole is at most 100 characters.
pub const MAX_SUBJECT_PREFIX: usize = 40;

/// The longest channel name.
const MAX_NAME: usize = 64;

/// A checked channel.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Unique; the outbox keys deliveries by it.
    pub name: String,
    pub kind: ChannelKind,
    pub delivery: DeliveryPolicy,
    /// The accounts whose alerts it receives; `None`: every account's.
    pub accounts: Option<Vec<String>>,
}

/// When the outbox gives up on an alert for a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Attempts for errors worth retrying (timeouts, 5xx, a relay that is down); `None`
    /// retries forever.
    pub retry_max_attempts: Option<u32>,
    /// Attempts for errors a retry will not fix.
    pub permanent_max_attempts: u32,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            retry_max_attempts: None,
            permanent_max_attempts: DEFAULT_PERMANENT_MAX_ATTEMPTS,
        }
    }
}

/// What a channel is.
#[derive(Debug, Clone)]
pub enum ChannelKind {
    /// One JSON line per alert on standard output.
    Stdout,
    /// Amazon SNS Publish.
    Sns(SnsChannelConfig),
    /// Email through an SMTP relay.
    Smtp(SmtpChannelConfig),
    /// An HTTPS POST (alert JSON, Slack or Teams).
    Webhook(WebhookChannelConfig),
    /// PagerDuty Events API v2.
    PagerDuty(PagerDutyChannelConfig),
}

impl ChannelKind {
    /// `stdout`, `sns`, `smtp`, `webhook` or `pagerduty`, as in the file.
    pub fn type_name(&self) -> &'static str {
        match self {
            ChannelKind::Stdout => "stdout",
            ChannelKind::Sns(_) => "sns",
            ChannelKind::Smtp(_) => "smtp",
            ChannelKind::Webhook(_) => "webhook",
            ChannelKind::PagerDuty(_) => "pagerduty",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsChannelConfig {
    pub topic_arn: String,
    pub region: String,
    pub format: SnsFormat,
}

/// What an SNS message holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnsFormat {
    /// The alert's JSON by default, text for email, the subject for SMS.
    Alert,
    /// The custom-notification JSON that Amazon Q Developer in chat applications (formerly
    /// AWS Chatbot) renders in Slack, Teams and Chime.
    Chatbot,
}

/// The default connect and total timeout of one webhook or PagerDuty request.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// PagerDuty's Events API v2.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// The payload a webhook gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The alert's JSON, as the stdout channel prints it.
    Json,
    /// A Slack incoming-webhook message (`text` and Block Kit `blocks`).
    Slack,
    /// A Microsoft Teams message with an Adaptive Card (Workflows or incoming webhook).
    Teams,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Teams => "teams",
        }
    }
}

/// An HTTPS POST per alert. The URL is a secret (Slack and Teams URLs carry the credential):
/// only where it is is configured here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookChannelConfig {
    pub url: PasswordSource,
    pub format: WebhookFormat,
    /// Signs each body with HMAC-SHA256 when set.
    pub signing_secret: Option<PasswordSource>,
    pub timeout: Duration,
    /// Extra trusted CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
}

/// PagerDuty Events API v2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagerDutyChannelConfig {
    /// Where the integration's routing key (a secret) is.
    pub routing_key: PasswordSource,
    pub events_url: String,
    pub timeout: Duration,
    /// Extra trusted CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which the server must offer.
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
    /// No TLS at all: only to a loopback relay, and only when asked for explicitly.
    None,
}

#[derive(Debug, Clone)]
pub struct SmtpChannelConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub auth: Option<SmtpAuth>,
    /// Extra trusted CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub subject_prefix: Option<String>,
}

/// SMTP AUTH: the user name, and where the password is (never the password itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpAuth {
    pub username: String,
    pub password: PasswordSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The name of an environment variable holding the password.
    Env(String),
    /// A file holding the password (one trailing newline is ignored).
    File(PathBuf),
}

/// True for `localhost` and loopback addresses (`127.0.0.0/8`, `::1`).
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || IpAddr::from_str(bare).is_ok_and(|ip| ip.is_loopback())
}

/// Validates the `[[channel]]` tables; none means one stdout channel. Problems are appended.
pub fn validate(raw: Vec<RawChannel>, problems: &mut Vec<Problem>) -> Vec<ChannelConfig> {
    if raw.is_empty() {
        return vec![ChannelConfig {
            name: "stdout".to_owned(),
            kind: ChannelKind::Stdout,
            delivery: DeliveryPolicy::default(),
            accounts: None,
        }];
    }
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, c) in raw.into_iter().enumerate() {
        let mut problem = |k: &str, message: String| {
            problems.push(Problem {
                key: format!("channel[{i}].{k}"),
                message,
            });
        };
        let kind = match c.kind.as_str() {
            t @ ("stdout" | "sns" | "smtp" | "webhook" | "pagerduty") => {
                for (k, set, types) in keys(&c) {
                    if set && !types.contains(&t) {
                        let names: Vec<String> =
                            types.iter().map(|t| format!("`type = \"{t}\"`")).collect();
                        problem(k, format!("applies only to {}", names.join(" or ")));
                    }
                }
                match t {
                    "stdout" => Some(ChannelKind::Stdout),
                    "sns" => sns(&c, &mut problem).map(ChannelKind::Sns),
                    "smtp" => smtp(&c, &mut problem).map(ChannelKind::Smtp),
                    "webhook" => webhook(&c, &mut problem).map(ChannelKind::Webhook),
                    _ => pagerduty(&c, &mut problem).map(ChannelKind::PagerDuty),
                }
            }
            other => {
                problem(
                    "type",
                    format!(
                        "`{other}` is not a channel type: use `stdout`, `sns`, `smtp`, `webhook` or `pagerduty`"
                    ),
                );
                None
            }
        };
        let name = c.name.clone().unwrap_or_else(|| c.kind.clone());
        if name.is_empty() || name.len() > MAX_NAME {
            problem("name", format!("must be 1 to {MAX_NAME} characters"));
        } else if !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.:@".contains(ch))
        {
            problem(
                "name",
                format!("`{name}` may use only letters, digits and - _ . : @"),
            );
        } else if !names.insert(name.clone()) {
            problem(
                "name",
                format!("`{name}` names two channels; give each a unique `name`"),
            );
        }
        let mut delivery = DeliveryPolicy::default();
        match c.retry_max_attempts {
            Some(0) => problem("retry_max_attempts", "must be at least 1".into()),
            n => delivery.retry_max_attempts = n,
        }
        match c.permanent_max_attempts {
            Some(0) => problem("permanent_max_attempts", "must be at least 1".into()),
            Some(n) => delivery.permanent_max_attempts = n,
            None => {}
        }
        if let Some(kind) = kind {
            out.push(ChannelConfig {
                name,
                kind,
                delivery,
                accounts: c.accounts.clone(),
            });
        }
    }
    out
}

/// Every type-specific key: whether it is set, and the types it applies to.
fn keys(c: &RawChannel) -> [(&'static str, bool, &'static [&'static str]); 22] {
    const SNS: &[&str] = &["sns"];
    const SMTP: &[&str] = &["smtp"];
    const WEBHOOK: &[&str] = &["webhook"];
    const PAGERDUTY: &[&str] = &["pagerduty"];
    const HTTP: &[&str] = &["webhook", "pagerduty"];
    const TLS: &[&str] = &["smtp", "webhook", "pagerduty"];
    const FORMAT: &[&str] = &["sns", "webhook"];
    [
        ("topic_arn", c.topic_arn.is_some(), SNS),
        ("region", c.region.is_some(), SNS),
        ("format", c.format.is_some(), FORMAT),
        ("host", c.host.is_some(), SMTP),
        ("port", c.port.is_some(), SMTP),
        ("tls", c.tls.is_some(), SMTP),
        ("allow_plaintext", c.allow_plaintext.is_some(), SMTP),
        ("username", c.username.is_some(), SMTP),
        ("password_env", c.password_env.is_some(), SMTP),
        ("password_file", c.password_file.is_some(), SMTP),
        ("ca_file", c.ca_file.is_some(), TLS),
        ("from", c.from.is_some(), SMTP),
        ("to", c.to.is_some(), SMTP),
        ("subject_prefix", c.subject_prefix.is_some(), SMTP),
        ("url_env", c.url_env.is_some(), WEBHOOK),
        ("url_file", c.url_file.is_some(), WEBHOOK),
        (
            "signing_secret_env",
            c.signing_secret_env.is_some(),
            WEBHOOK,
        ),
        (
            "signing_secret_file",
            c.signing_secret_file.is_some(),
            WEBHOOK,
        ),
        ("timeout_secs", c.timeout_secs.is_some(), HTTP),
        ("routing_key_env", c.routing_key_env.is_some(), PAGERDUTY),
        ("routing_key_file", c.routing_key_file.is_some(), PAGERDUTY),
        ("events_url", c.events_url.is_some(), PAGERDUTY),
    ]
}

/// A secret named by `<key>_env` or `<key>_file`: exactly one when `required`.
fn secret(
    key: &str,
    env: Option<&String>,
    file: Option<&PathBuf>,
    required: bool,
    problem: &mut impl FnMut(&str, String),
) -> Result<Option<PasswordSource>, ()> {
    match (env, file) {
        (Some(_), Some(_)) => {
            problem(
                &format!("{key}_file"),
                format!("give the {key} in one place: `{key}_env` or `{key}_file`"),
            );
            Err(())
        }
        (Some(v), None) if v.is_empty() || v.contains('=') || v.contains('\0') => {
            problem(
                &format!("{key}_env"),
                "must be the name of an environment variable".into(),
            );
            Err(())
        }
        (Some(v), None) => Ok(Some(PasswordSource::Env(v.clone()))),
        (None, Some(f)) if f.as_os_str().is_empty() => {
            problem(&format!("{key}_file"), "must not be empty".into());
            Err(())
        }
        (None, Some(f)) => Ok(Some(PasswordSource::File(f.clone()))),
        (None, None) if required => {
            problem(
                &format!("{key}_env"),
                format!("is required: set `{key}_env` (an environment variable) or `{key}_file`"),
            );
            Err(())
        }
        (None, None) => Ok(None),
    }
}

/// `timeout_secs`: 1 to 300, default [`DEFAULT_HTTP_TIMEOUT`].
fn timeout(c: &RawChannel, problem: &mut impl FnMut(&str, String)) -> Result<Duration, ()> {
    match c.timeout_secs {
        None => Ok(DEFAULT_HTTP_TIMEOUT),
        Some(n) if (1..=300).contains(&n) => Ok(Duration::from_secs(n)),
        Some(_) => {
            problem("timeout_secs", "must be 1 to 300".into());
            Err(())
        }
    }
}

fn ca_file(c: &RawChannel, problem: &mut impl FnMut(&str, String)) -> Result<Option<PathBuf>, ()> {
    match &c.ca_file {
        Some(f) if f.as_os_str().is_empty() => {
            problem("ca_file", "must not be empty".into());
            Err(())
        }
        f => Ok(f.clone()),
    }
}

fn webhook(c: &RawChannel, problem: &mut impl FnMut(&str, String)) -> Option<WebhookChannelConfig> {
    let url = secret(
        "url",
        c.url_env.as_ref(),
        c.url_file.as_ref(),
        true,
        problem,
    );
    let signing = secret(
        "signing_secret",
        c.signing_secret_env.as_ref(),
        c.signing_secret_file.as_ref(),
        false,
        problem,
    );
    let format = match c.format.as_deref() {
        None | Some("json") => Some(WebhookFormat::Json),
        Some("slack") => Some(WebhookFormat::Slack),
        Some("teams") => Some(WebhookFormat::Teams),
        Some(other) => {
            problem(
                "format",
                format!("`{other}` is not one of `json`, `slack`, `teams`"),
            );
            None
        }
    };
    let timeout = timeout(c, problem);
    let ca_file = ca_file(c, problem);
    Some(WebhookChannelConfig {
        url: url.ok()??,
        format: format?,
        signing_secret: signing.ok()?,
        timeout: timeout.ok()?,
        ca_file: ca_file.ok()?,
    })
}

fn pagerduty(
    c: &RawChannel,
    problem: &mut impl FnMut(&str, String),
) -> Option<PagerDutyChannelConfig> {
    let key = secret(
        "routing_key",
        c.routing_key_env.as_ref(),
        c.routing_key_file.as_ref(),
        true,
        problem,
    );
    let events_url = match c.events_url.as_deref() {
        None => Some(PAGERDUTY_EVENTS_URL.to_owned()),
        Some(u) if http_url_ok(u) => Some(u.to_owned()),
        Some(u) => {
            problem(
                "events_url",
                format!("`{u}` is not an https:// URL (http:// only to a loopback host)"),
            );
            None
        }
    };
    let timeout = timeout(c, problem);
    let ca_file = ca_file(c, problem);
    Some(PagerDutyChannelConfig {
        routing_key: key.ok()??,
        events_url: events_url?,
        timeout: timeout.ok()?,
        ca_file: ca_file.ok()?,
    })
}

/// An `https://` URL, or `http://` to a loopback host (a test receiver), printable ASCII.
pub fn http_url_ok(u: &str) -> bool {
    if !u.bytes().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    let Some((scheme, rest)) = u.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return false;
    }
    match scheme {
        "https" => true,
        "http" => is_loopback_host(host),
        _ => false,
    }
}

fn sns(c: &RawChannel, problem: &mut impl FnMut(&str, String)) -> Option<SnsChannelConfig> {
    let Some(arn) = c.topic_arn.as_deref() else {
        problem(
            "topic_arn",
            "is required for `type = \"sns\"` (arn:aws:sns:REGION:ACCOUNT:TOPIC)".into(),
        );
        return None;
    };
    let Some(arn_region) = sns_arn_region(arn) else {
        problem(
            "topic_arn",
            format!("`{arn}` is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC)"),
        );
        return None;
    };
    let region = match c.region.as_deref() {
        None => arn_region.to_owned(),
        Some(r) if r == arn_region => r.to_owned(),
        Some(r) => {
            problem(
                "region",
                format!("`{r}` differs from the topic's region `{arn_region}`; leave it out"),
            );
            return None;
        }
    };
    let format = match c.format.as_deref() {
        None | Some("alert") => SnsFormat::Alert,
        Some("chatbot") => SnsFormat::Chatbot,
        Some(other) => {
            problem(
                "format",
                format!("`{other}` is not one of `alert`, `chatbot`"),
            );
            return None;
        }
    };
    Some(SnsChannelConfig {
        topic_arn: arn.to_owned(),
        region,
        format,
    })
}

/// The region of `arn:PARTITION:sns:REGION:ACCOUNT:TOPIC`, if it is one.
fn sns_arn_region(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.split(':').collect();
    let [prefix, partition, service, region, account, topic] = parts.as_slice() else {
        return None;
    };
    let ok = *prefix == "arn"
        && partition.starts_with("aws")
        && *service == "sns"
        && !region.is_empty()
        && region
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        && account.len() == 12
        && account.chars().all(|ch| ch.is_ascii_digit())
        && !topic.is_empty()
        && topic.len() <= 256
        && topic
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.');
    ok.then_some(*region)
}

fn smtp(c: &RawChannel, problem: &mut impl FnMut(&str, String)) -> Option<SmtpChannelConfig> {
    let mut ok = true;
    let host = match c.host.as_deref() {
        Some(h) if !h.is_empty() && !h.chars().any(|ch| ch.is_whitespace() || ch.is_control()) => {
            h.to_owned()
        }
        Some(h) => {
            problem("host", format!("`{h}` is not a host name"));
            ok = false;
            String::new()
        }
        None => {
            problem("host", "is required for `type = \"smtp\"`".into());
            ok = false;
            String::new()
        }
    };
    let tls = match c.tls.as_deref() {
        None | Some("starttls") => SmtpTls::StartTls,
        Some("implicit") => SmtpTls::Implicit,
        Some("none") => SmtpTls::None,
        Some(other) => {
            problem(
                "tls",
                format!("`{other}` is not one of `starttls`, `implicit`, `none`"),
            );
            ok = false;
            SmtpTls::StartTls
        }
    };
    let allow_plaintext = c.allow_plaintext.unwrap_or(false);
    if tls == SmtpTls::None {
        if !allow_plaintext {
            problem(
                "tls",
                "`none` sends alerts (and any password) in clear text: set `allow_plaintext = true` to confirm, for a relay on this machine only".into(),
            );
            ok = false;
        } else if !host.is_empty() && !is_loopback_host(&host) {
            problem(
                "tls",
                format!("`none` is allowed only to a loopback relay (localhost, 127.0.0.1, ::1), not `{host}`"),
            );
            ok = false;
        }
    } else if allow_plaintext {
        problem("allow_plaintext", "applies only to `tls = \"none\"`".into());
        ok = false;
    }
    let port = match c.port {
        Some(0) => {
            problem("port", "must be 1 to 65535".into());
            ok = false;
            0
        }
        Some(p) => p,
        None => match tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        },
    };
    let password = match (&c.password_env, &c.password_file) {
        (Some(_), Some(_)) => {
            problem(
                "password_file",
                "give the password in one place: `password_env` or `password_file`".into(),
            );
            ok = false;
            None
        }
        (Some(v), None) if v.is_empty() || v.contains('=') || v.contains('\0') => {
            problem(
                "password_env",
                "must be the name of an environment variable".into(),
            );
            ok = false;
            None
        }
        (Some(v), None) => Some(PasswordSource::Env(v.clone())),
        (None, Some(f)) if f.as_os_str().is_empty() => {
            problem("password_file", "must not be empty".into());
            ok = false;
            None
        }
        (None, Some(f)) => Some(PasswordSource::File(f.clone())),
        (None, None) => None,
    };
    let auth = match (&c.username, password) {
        (Some(u), Some(password)) if !u.is_empty() => Some(SmtpAuth {
            username: u.clone(),
            password,
        }),
        (Some(_), Some(_)) => {
            problem("username", "must not be empty".into());
            ok = false;
            None
        }
        (Some(_), None) => {
            if c.password_env.is_none() && c.password_file.is_none() {
                problem(
                    "username",
                    "needs a password: set `password_env` or `password_file`".into(),
                );
                ok = false;
            }
            None
        }
        (None, Some(_)) => {
            problem("username", "is required with a password".into());
            ok = false;
            None
        }
        (None, None) => None,
    };
    if let Some(f) = &c.ca_file {
        if f.as_os_str().is_empty() {
            problem("ca_file", "must not be empty".into());
            ok = false;
        }
    }
    let from = match c.from.as_deref().map(Mailbox::from_str) {
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            problem("from", format!("is not a mailbox: {e}"));
            None
        }
        None => {
            problem(
                "from",
                "is required for `type = \"smtp\"` (e.g. \"rolewatch <rolewatch@example.com>\")"
                    .into(),
            );
            None
        }
    };
    let mut to = Vec::new();
    match &c.to {
        Some(list) if !list.is_empty() => {
            for (j, m) in list.iter().enumerate() {
                match Mailbox::from_str(m) {
                    Ok(m) => to.push(m),
                    Err(e) => {
                        problem(&format!("to[{j}]"), format!("is not a mailbox: {e}"));
                        ok = false;
                    }
                }
            }
        }
        _ => {
            problem(
                "to",
                "is required for `type = \"smtp\"`: a list of at least one mailbox".into(),
            );
            ok = false;
        }
    }
    let subject_prefix = match c.subject_prefix.as_deref() {
        Some(p)
            if p.len() > MAX_SUBJECT_PREFIX
                || !p.chars().all(|ch| ch.is_ascii_graphic() || ch == ' ') =>
        {
            problem(
                "subject_prefix",
                format!("must be printable ASCII, at most {MAX_SUBJECT_PREFIX} characters"),
            );
            ok = false;
            None
        }
        Some("") => None,
        p => p.map(str::to_owned),
    };
    let from = from?;
    ok.then_some(SmtpChannelConfig {
        host,
        port,
        tls,
        auth,
        ca_file: c.ca_file.clone(),
        from,
        to,
        subject_prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: &str) -> RawChannel {
        RawChannel {
            kind: kind.to_owned(),
            ..RawChannel::default()
        }
    }

    fn smtp_raw() -> RawChannel {
        RawChannel {
            host: Some("smtp.example.com".into()),
            from: Some("rolewatch <rolewatch@example.com>".into()),
            to: Some(vec!["oncall@example.com".into()]),
            ..raw("smtp")
        }
    }

    fn check(list: Vec<RawChannel>) -> (Vec<ChannelConfig>, Vec<String>) {
        let mut problems = Vec::new();
        let out = validate(list, &mut problems);
        let keys = problems
            .into_iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect();
        (out, keys)
    }

    #[test]
    fn no_channel_means_one_stdout_channel() {
        let (c, p) = check(vec![]);
        assert!(p.is_empty());
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].name, "stdout");
        assert!(matches!(c[0].kind, ChannelKind::Stdout));
    }

    #[test]
    fn smtp_defaults_to_starttls_on_587() {
        let (c, p) = check(vec![smtp_raw()]);
        assert!(p.is_empty(), "{p:?}");
        let ChannelKind::Smtp(s) = &c[0].kind else {
            panic!("not smtp")
        };
        assert_eq!((s.tls, s.port), (SmtpTls::StartTls, 587));
        assert_eq!(c[0].name, "smtp");
        assert_eq!(s.from.email.to_string(), "rolewatch@example.com");
        assert_eq!(c[0].delivery, DeliveryPolicy::default());
    }

    #[test]
    fn plaintext_needs_the_opt_in_and_a_loopback_host() {
        let none = |host: &str, allow: Option<bool>| RawChannel {
            host: Some(host.into()),
            tls: Some("none".into()),
            allow_plaintext: allow,
            ..smtp_raw()
        };
        let (_, p) = check(vec![none("127.0.0.1", None)]);
        assert!(p[0].starts_with("channel[0].tls: "), "{p:?}");
        let (_, p) = check(vec![none("smtp.example.com", Some(true))]);
        assert!(p[0].contains("loopback"), "{p:?}");
        for host in ["127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"] {
            let (c, p) = check(vec![none(host, Some(true))]);
            assert!(p.is_empty(), "{host}: {p:?}");
            let ChannelKind::Smtp(s) = &c[0].kind else {
                panic!("not smtp")
            };
            assert_eq!((s.tls, s.port), (SmtpTls::None, 25));
        }
        let (_, p) = check(vec![RawChannel {
            allow_plaintext: Some(true),
            ..smtp_raw()
        }]);
        assert!(p[0].starts_with("channel[0].allow_plaintext"), "{p:?}");
    }

    #[test]
    fn password_rules() {
        let (c, p) = check(vec![RawChannel {
            username: Some("alerts".into()),
            password_env: Some("SMTP_PASSWORD".into()),
            ..smtp_raw()
        }]);
        assert!(p.is_empty(), "{p:?}");
        let ChannelKind::Smtp(s) = &c[0].kind else {
            panic!("not smtp")
        };
        assert_eq!(
            s.auth,
            Some(SmtpAuth {
                username: "alerts".into(),
                password: PasswordSource::Env("SMTP_PASSWORD".into())
            })
        );
        let (_, p) = check(vec![RawChannel {
            username: Some("alerts".into()),
            ..smtp_raw()
        }]);
        assert!(p[0].contains("needs a password"), "{p:?}");
        let (_, p) = check(vec![RawChannel {
            username: Some("alerts".into()),
            password_env: Some("A".into()),
            password_file: Some("/run/secrets/smtp".into()),
            ..smtp_raw()
        }]);
        assert!(p[0].contains("one place"), "{p:?}");
        let (_, p) = check(vec![RawChannel {
            password_file: Some("/run/secrets/smtp".into()),
            ..smtp_raw()
        }]);
        assert!(p[0].starts_with("channel[0].username"), "{p:?}");
    }

    #[test]
    fn mailboxes_are_checked() {
        let (_, p) = check(vec![RawChannel {
            from: Some("not a mailbox".into()),
            to: Some(vec!["ok@example.com".into(), "bad\r\nBcc: x@evil".into()]),
            ..smtp_raw()
        }]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("channel[0].from"), "{p:?}");
        assert!(p[1].starts_with("channel[0].to[1]"), "{p:?}");
        let (_, p) = check(vec![RawChannel {
            to: Some(vec![]),
            ..smtp_raw()
        }]);
        assert!(p[0].starts_with("channel[0].to"), "{p:?}");
    }

    #[test]
    fn sns_region_comes_from_the_arn() {
        let arn = "arn:aws:sns:eu-west-1:123456789012:rolewatch-alerts";
        let (c, p) = check(vec![RawChannel {
            topic_arn: Some(arn.into()),
            ..raw("sns")
        }]);
        assert!(p.is_empty(), "{p:?}");
        let ChannelKind::Sns(s) = &c[0].kind else {
            panic!("not sns")
        };
        assert_eq!(s.region, "eu-west-1");
        let (_, p) = check(vec![RawChannel {
            topic_arn: Some(arn.into()),
            region: Some("us-east-1".into()),
            ..raw("sns")
        }]);
        assert!(p[0].starts_with("channel[0].region"), "{p:?}");
        for bad in [
            "arn:aws:sqs:eu-west-1:123456789012:q",
            "arn:aws:sns:eu-west-1:1234:t",
            "rolewatch-alerts",
        ] {
            let (_, p) = check(vec![RawChannel {
                topic_arn: Some(bad.into()),
                ..raw("sns")
            }]);
            assert!(p[0].starts_with("channel[0].topic_arn"), "{bad}: {p:?}");
        }
    }

    #[test]
    fn names_are_unique_and_keys_belong_to_their_type() {
        let (_, p) = check(vec![raw("stdout"), raw("stdout")]);
        assert!(p[0].contains("names two channels"), "{p:?}");
        let (_, p) = check(vec![RawChannel {
            host: Some("x".into()),
            ..raw("stdout")
        }]);
        assert!(p[0].starts_with("channel[0].host"), "{p:?}");
        let (_, p) = check(vec![RawChannel {
            topic_arn: Some("arn:aws:sns:us-east-1:123456789012:t".into()),
            ..smtp_raw()
        }]);
        assert!(p[0].starts_with("channel[0].topic_arn"), "{p:?}");
        let (_, p) = check(vec![raw("pager")]);
        assert!(p[0].starts_with("channel[0].type"), "{p:?}");
        let (_, p) = check(vec![RawChannel {
            retry_max_attempts: Some(0),
            ..raw("stdout")
        }]);
        assert!(p[0].starts_with("channel[0].retry_max_attempts"), "{p:?}");
    }

    #[test]
    fn webhook_and_pagerduty_keys() {
        let (c, p) = check(vec![RawChannel {
            url_env: Some("SLACK_WEBHOOK_URL".into()),
            format: Some("slack".into()),
            signing_secret_file: Some("/run/secrets/hmac".into()),
            ..raw("webhook")
        }]);
        assert!(p.is_empty(), "{p:?}");
        let ChannelKind::Webhook(w) = &c[0].kind else {
            panic!("not a webhook")
        };
        assert_eq!(w.format, WebhookFormat::Slack);
        assert_eq!(w.url, PasswordSource::Env("SLACK_WEBHOOK_URL".into()));
        assert_eq!(w.timeout, DEFAULT_HTTP_TIMEOUT);
        assert!(w.signing_secret.is_some());
        let (_, p) = check(vec![raw("webhook")]);
        assert!(p[0].starts_with("channel[0].url_env: is required"), "{p:?}");
        let (_, p) = check(vec![RawChannel {
            url_env: Some("A".into()),
            url_file: Some("/f".into()),
            format: Some("discord".into()),
            timeout_secs: Some(0),
            ..raw("webhook")
        }]);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p.iter().any(|m| m.starts_with("channel[0].url_file")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|m| m.starts_with("channel[0].format")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|m| m.starts_with("channel[0].timeout_secs")),
            "{p:?}"
        );

        let (c, p) = check(vec![RawChannel {
            routing_key_env: Some("PD_ROUTING_KEY".into()),
            ..raw("pagerduty")
        }]);
        assert!(p.is_empty(), "{p:?}");
        let ChannelKind::PagerDuty(pd) = &c[0].kind else {
            panic!("not pagerduty")
        };
        assert_eq!(pd.events_url, PAGERDUTY_EVENTS_URL);
        for (url, ok) in [
            ("https://events.eu.pagerduty.com/v2/enqueue", true),
            ("http://127.0.0.1:8080/v2/enqueue", true),
            ("http://[::1]:8080/x", true),
            ("http://events.pagerduty.com/v2/enqueue", false),
            ("ftp://x", false),
            ("https://", false),
        ] {
            let (_, p) = check(vec![RawChannel {
                routing_key_env: Some("K".into()),
                events_url: Some(url.into()),
                ..raw("pagerduty")
            }]);
            assert_eq!(p.is_empty(), ok, "{url}: {p:?}");
        }
        // Keys of one type on another.
        let (_, p) = check(vec![RawChannel {
            url_env: Some("U".into()),
            routing_key_env: Some("K".into()),
            ..raw("pagerduty")
        }]);
        assert!(
            p[0].starts_with("channel[0].url_env: applies only to `type = \"webhook\"`"),
            "{p:?}"
        );
        let (_, p) = check(vec![RawChannel {
            timeout_secs: Some(5),
            ..raw("stdout")
        }]);
        assert!(p[0].starts_with("channel[0].timeout_secs"), "{p:?}");
    }

    #[test]
    fn sns_format() {
        let arn = "arn:aws:sns:eu-west-1:123456789012:chat";
        let (c, p) = check(vec![RawChannel {
            topic_arn: Some(arn.into()),
            format: Some("chatbot".into()),
            ..raw("sns")
        }]);
        assert!(p.is_empty(), "{p:?}");
        let ChannelKind::Sns(s) = &c[0].kind else {
            panic!("not sns")
        };
        assert_eq!(s.format, SnsFormat::Chatbot);
        let (_, p) = check(vec![RawChannel {
            topic_arn: Some(arn.into()),
            format: Some("slack".into()),
            ..raw("sns")
        }]);
        assert!(p[0].starts_with("channel[0].format"), "{p:?}");
    }

    /// The example configuration shows every channel key.
    #[test]
    fn the_example_config_lists_every_channel_key() {
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/rolewatch.toml"
        ))
        .unwrap();
        let common = [
            "type",
            "name",
            "retry_max_attempts",
            "permanent_max_attempts",
        ];
        let keys = keys(&RawChannel::default());
        for k in keys.iter().map(|(k, _, _)| *k).chain(common) {
            assert!(
                example.contains(&format!("# {k} = ")),
                "{k} is not in the example"
            );
        }
    }
}
