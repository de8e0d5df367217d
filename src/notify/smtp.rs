//! The email channel: one multipart/alternative message (plain text and HTML) per alert,
//! through an SMTP relay (lettre over rustls, on tokio).
//!
//! - **TLS.** STARTTLS is required by default (a relay that does not offer it is an error,
//!   never a silent downgrade); implicit TLS (SMTPS) on request; plaintext only when the
//!   configuration says `tls = "none"` with `allow_plaintext = true` to a loopback relay
//!   (checked in `config::channel`). The system's roots are trusted, plus the optional
//!   `ca_file` for a private relay.
//! - **Secrets.** The AUTH password is read once, when the channel is built, from an
//!   environment variable or a file, and kept in a [`Secret`] whose `Debug` prints
//!   `[redacted]`; it never reaches a log line or an error message.
//! - **Threading.** The `Message-ID` is `<rolewatch.{dedup_key}@{domain of From}>`: the same
//!   match always gets the same Message-ID, so a resend after a crash is threaded with (or
//!   dropped as a duplicate of) the first copy.
//! - **Headers.** The subject comes from the renderer (printable ASCII, bounded, no `=?`, so
//!   no RFC 2047 encoded word for a mail client to decode) and is cleaned again here, after
//!   the prefix and marker are added; lettre encodes every header, so no event-derived text
//!   can add one, and it writes ASCII words as they are, so it cannot make an encoded word.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::alert::Alert;
use super::notifier::{dedup_key, Delivered, SendError};
use super::{render, sanitize, synthetic};
use crate::config::{PasswordSource, SmtpChannelConfig, SmtpTls};

/// How long connecting may take (lettre applies it to the connection).
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a whole send or check may take. lettre's timeout does not bound the replies on
/// tokio, and a relay that accepts the connection and then says nothing must not stall the
/// outbox.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest subject sent: the renderer's 100 characters plus the configured prefix and a
/// synthetic alert's marker.
const MAX_SUBJECT: usize = 200;

/// A password: readable by the code that needs it, invisible to `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The secret itself; call only where it is handed to the protocol.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads the secret from `source`.
    ///
    /// # Errors
    ///
    /// When the variable is unset or empty, or the file cannot be read or is empty. The
    /// message names the variable or file, never the content.
    pub fn load(source: &PasswordSource) -> Result<Secret, String> {
        Secret::load_named(source, "password")
    }

    /// Reads the secret of the keys `<key>_env` / `<key>_file` (`password`, `url`,
    /// `routing_key`, `signing_secret`); errors name those keys.
    ///
    /// # Errors
    ///
    /// As [`Secret::load`].
    pub fn load_named(source: &PasswordSource, key: &str) -> Result<Secret, String> {
        let what = key.replace('_', " ");
        match source {
            PasswordSource::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Secret(v)),
                Ok(_) => Err(format!(
                    "the environment variable {var} ({key}_env) is empty"
                )),
                Err(std::env::VarError::NotPresent) => Err(format!(
                    "the environment variable {var} ({key}_env) is not set"
                )),
                Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                    "the environment variable {var} ({key}_env) is not UTF-8"
                )),
            },
            PasswordSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the {what} file {} ({e})", path.display()))?;
                // Editors and `echo` add a newline; a secret does not end with one.
                let text = text
                    .strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(&text);
                if text.is_empty() {
                    return Err(format!("the {what} file {} is empty", path.display()));
                }
                Ok(Secret(text.to_owned()))
            }
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

pub struct SmtpNotifier {
    name: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject_prefix: Option<String>,
    /// The right-hand side of Message-IDs: the From domain, stable across hosts.
    id_domain: String,
    exchange_timeout: Duration,
}

impl fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The transport holds the credentials: it stays out.
        f.debug_struct("SmtpNotifier")
            .field("name", &self.name)
            .field("from", &self.from.email.to_string())
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

impl SmtpNotifier {
    /// Builds the transport: TLS parameters (with `ca_file`), credentials (the password read
    /// now). Connects to nothing.
    ///
    /// # Errors
    ///
    /// A message for the operator when the password or CA file cannot be read.
    pub fn new(name: &str, cfg: &SmtpChannelConfig) -> Result<SmtpNotifier, String> {
        let tls = match cfg.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls => Tls::Required(tls_parameters(&cfg.host, cfg.ca_file.as_deref())?),
            SmtpTls::Implicit => Tls::Wrapper(tls_parameters(&cfg.host, cfg.ca_file.as_deref())?),
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.as_str())
                .port(cfg.port)
                .tls(tls)
                .timeout(Some(SMTP_TIMEOUT));
        if let Some(auth) = &cfg.auth {
            let password = Secret::load(&auth.password)?;
            builder = builder.credentials(Credentials::new(
                auth.username.clone(),
                password.expose().to_owned(),
            ));
        }
        Ok(SmtpNotifier {
            name: name.to_owned(),
            transport: builder.build(),
            from: cfg.from.clone(),
            to: cfg.to.clone(),
            subject_prefix: cfg.subject_prefix.clone(),
            id_domain: cfg.from.email.domain().to_owned(),
            exchange_timeout: EXCHANGE_TIMEOUT,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Message-ID of an alert's email.
    pub fn message_id(&self, alert: &Alert) -> String {
        format!("<rolewatch.{}@{}>", dedup_key(alert), self.id_domain)
    }

    /// The email for an alert.
    ///
    /// # Errors
    ///
    /// When lettre cannot build it (a bug: every part is checked before), permanent.
    pub fn message(&self, alert: &Alert) -> Result<Message, SendError> {
        let banner = synthetic::banner(alert);
        let mut subject = render::subject(alert);
        let mut text = render::text(alert);
        let mut html = render::html(alert);
        if let Some((marker, line)) = &banner {
            subject = format!("{marker} {subject}");
            text = format!("{line}\n\n{text}");
            html = with_banner(&html, line);
        }
        if let Some(prefix) = &self.subject_prefix {
            subject = format!("{prefix} {subject}");
        }
        let subject = sanitize::ascii_line(&subject, MAX_SUBJECT);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(self.message_id(alert)));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| SendError::permanent(format!("cannot build the email: {e}")))
    }

    /// Sends the alert's email; `Ok` once the relay answered 250 to the message.
    ///
    /// # Errors
    ///
    /// Retryable: connection, TLS, timeouts, 4xx replies. Permanent: 5xx replies (a refused
    /// recipient, failed AUTH), a relay without STARTTLS when it is required.
    pub async fn send(&self, alert: &Alert) -> Result<Delivered, SendError> {
        let message = self.message(alert)?;
        let id = self.message_id(alert);
        tokio::time::timeout(self.exchange_timeout, self.transport.send(message))
            .await
            .map_err(|_| timed_out(self.exchange_timeout))?
            .map_err(|e| classify(&e))?;
        Ok(Delivered { receipt: Some(id) })
    }

    /// Connects, negotiates TLS, authenticates, says NOOP and QUIT: sends no email.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub async fn check(&self) -> Result<(), SendError> {
        let result = tokio::time::timeout(self.exchange_timeout, self.transport.test_connection())
            .await
            .map_err(|_| timed_out(self.exchange_timeout))?;
        match result {
            Ok(true) => Ok(()),
            Ok(false) => Err(SendError::retryable("the relay did not answer NOOP")),
            Err(e) => Err(classify(&e)),
        }
    }
}

fn tls_parameters(host: &str, ca_file: Option<&Path>) -> Result<TlsParameters, String> {
    let mut builder = TlsParameters::builder(host.to_owned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read ca_file {} ({e})", path.display()))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| format!("ca_file {} holds no PEM certificate ({e})", path.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build_rustls()
        .map_err(|e| format!("cannot set up TLS: {}", crate::aws::chain_text(&e)))
}

fn timed_out(limit: Duration) -> SendError {
    SendError::retryable(format!(
        "the relay did not finish the exchange within {} ms",
        limit.as_millis()
    ))
}

/// The one classification of SMTP failures.
fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let text = crate::aws::chain_text(e);
    if e.is_permanent() || e.is_client() {
        SendError::permanent(text)
    } else {
        // 4xx, connection and network errors, timeouts, TLS handshakes (a relay's expired
        // certificate gets renewed), a garbled reply.
        SendError::retryable(text)
    }
}

/// The HTML body with a banner paragraph first inside `<body>`.
fn with_banner(html: &str, line: &str) -> String {
    let escaped = line
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let banner =
        format!("<p style=\"background:#fff3cd;padding:8px;font-weight:bold\">{escaped}</p>");
    let lower = html.to_ascii_lowercase();
    match lower
        .find("<body")
        .and_then(|i| lower[i..].find('>').map(|j| i + j + 1))
    {
        Some(at) => format!("{}{banner}{}", &html[..at], &html[at..]),
        None => format!("{banner}{html}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_relay_that_says_nothing_times_out_retryably() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (_conn, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let cfg = SmtpChannelConfig {
            host: "127.0.0.1".into(),
            port,
            tls: SmtpTls::None,
            auth: None,
            ca_file: None,
            from: "rolewatch@example.com".parse().unwrap(),
            to: vec!["oncall@example.com".parse().unwrap()],
            subject_prefix: None,
        };
        let mut n = SmtpNotifier::new("mail", &cfg).unwrap();
        n.exchange_timeout = Duration::from_millis(300);
        let err = n.check().await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("did not finish"), "{err}");
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn password_file_loses_one_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret \r\n").unwrap();
        let s = Secret::load(&PasswordSource::File(p.clone())).unwrap();
        assert_eq!(s.expose(), "s3cret ");
        std::fs::write(&p, "\n").unwrap();
        let err = Secret::load(&PasswordSource::File(p)).unwrap_err();
        assert!(err.contains("empty"), "{err}");
        let err = Secret::load(&PasswordSource::Env(
            "ROLEWATCH_TEST_SURELY_UNSET_VARIABLE".into(),
        ))
        .unwrap_err();
        assert!(err.contains("not set"), "{err}");
    }

    #[test]
    fn banner_goes_inside_body() {
        assert_eq!(
            with_banner("<html><BODY class=x><p>a</p></BODY></html>", "T <b>"),
            "<html><BODY class=x><p style=\"background:#fff3cd;padding:8px;font-weight:bold\">T &lt;b&gt;</p><p>a</p></BODY></html>"
        );
        assert!(with_banner("<p>a</p>", "T").ends_with("T</p><p>a</p>"));
    }
}
