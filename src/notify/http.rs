//! The HTTPS client of the webhook and PagerDuty channels.
//!
//! hyper's client (`hyper-util`, already used by `rolewatch healthcheck`) over rustls
//! (`hyper-rustls`, already in the tree through the AWS SDK): no second HTTP stack, and TLS
//! is the same rustls on ring as everywhere else. The system's roots are trusted, plus
//! the certificates of `ca_file` (a private CA, or the tests' throwaway CA).
//!
//! * **Timeouts**: the TCP connect and the whole exchange (connect, TLS, request, reply)
//!   are each bounded by the channel's `timeout_secs`.
//! * **Classification** ([`classify`]): 2xx accepted; 408, 425, 429 and 5xx retryable, with
//!   `Retry-After` (seconds or an HTTP date) kept in the [`SendError`] so that the outbox
//!   waits at least that long; any other status permanent (the outbox abandons the row
//!   after `permanent_max_attempts` and reports it). Timeouts and connection failures are
//!   retryable.
//! * **Secrets**: the URL may carry the credential (Slack and Teams URLs do). It is kept in
//!   [`SecretUrl`], whose `Debug` and [`SecretUrl::shown`] give only the scheme and host,
//!   and every error text passes through [`SecretUrl::redact`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::notifier::SendError;
use super::smtp::Secret;
use crate::config::{is_loopback_host, PasswordSource};

/// The most of a reply body read (for the error text).
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// The longest `Retry-After` honoured; a longer one is cut to this (a typo on the receiver's
/// side must not park alerts for a year).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The most of a reply body quoted in an error.
const QUOTED_REPLY_CHARS: usize = 200;

/// A URL that is a secret: only its scheme and host are ever shown.
#[derive(Clone)]
pub struct SecretUrl {
    uri: Uri,
    text: Secret,
}

impl SecretUrl {
    /// Parses a URL: `https://`, or `http://` to a loopback host (a test receiver).
    ///
    /// # Errors
    ///
    /// A message that never holds the URL.
    pub fn parse(text: &str, what: &str) -> Result<SecretUrl, String> {
        let text = text.trim();
        let uri: Uri = text
            .parse()
            .map_err(|_| format!("the {what} is not a URL"))?;
        let host = uri.host().unwrap_or_default();
        match uri.scheme_str() {
            Some("https") if !host.is_empty() => {}
            Some("http") if is_loopback_host(host) => {}
            Some("http") => {
                return Err(format!(
                "the {what} is http:// to {host}: only https:// (http:// only to a loopback host)"
            ))
            }
            _ => return Err(format!("the {what} is not an https:// URL")),
        }
        Ok(SecretUrl {
            uri,
            text: Secret::new(text.to_owned()),
        })
    }

    /// Reads and parses a URL from where the configuration says it is.
    ///
    /// # Errors
    ///
    /// As [`Secret::load`] and [`SecretUrl::parse`].
    pub fn load(source: &PasswordSource, what: &str) -> Result<SecretUrl, String> {
        let secret = Secret::load_named(source, "url")?;
        SecretUrl::parse(secret.expose(), what)
    }

    /// `https://hooks.slack.com`: what logs and errors may say.
    pub fn shown(&self) -> String {
        let scheme = self.uri.scheme_str().unwrap_or("https");
        let host = self.uri.host().unwrap_or_default();
        match self.uri.port_u16() {
            Some(p) => format!("{scheme}://{host}:{p}"),
            None => format!("{scheme}://{host}"),
        }
    }

    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// `text` with the URL, its path and its query replaced by `…`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.replace(self.text.expose(), &format!("{}/…", self.shown()));
        if let Some(pq) = self.uri.path_and_query() {
            if pq.as_str().len() > 1 {
                out = out.replace(pq.as_str(), "/…");
            }
        }
        out
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/[redacted]", self.shown())
    }
}

/// What a receiver answered.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

/// One HTTPS client: its TLS roots and timeout.
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl HttpClient {
    /// Builds the client: the system's roots plus `ca_file`. Connects to nothing.
    ///
    /// # Errors
    ///
    /// When `ca_file` cannot be read or holds no certificate, or no root is trusted.
    pub fn new(ca_file: Option<&std::path::Path>, timeout: Duration) -> Result<HttpClient, String> {
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable system certificates are skipped; a system without any still works
        // with a `ca_file`.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read ca_file {} ({e})", path.display()))?;
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| format!("ca_file {} is not PEM ({e})", path.display()))?;
                roots.add(cert).map_err(|e| {
                    format!("ca_file {} holds a bad certificate ({e})", path.display())
                })?;
                n += 1;
            }
            if n == 0 {
                return Err(format!("ca_file {} holds no certificate", path.display()));
            }
        }
        if roots.is_empty() {
            return Err(
                "no trusted CA certificate: the system has none and no ca_file is set".into(),
            );
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS ({e})"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tls = Arc::new(tls);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(HttpClient {
            client,
            tls,
            timeout,
        })
    }

    /// POSTs `body` (JSON) with `headers`; the reply, whatever its status.
    ///
    /// # Errors
    ///
    /// Retryable: a timeout, a connection or TLS failure, a reply cut short. The text names
    /// the receiver by scheme and host only.
    pub async fn post_json(
        &self,
        url: &SecretUrl,
        headers: &[(HeaderName, HeaderValue)],
        body: Vec<u8>,
    ) -> Result<Reply, SendError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(url.uri().clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("rolewatch/", env!("CARGO_PKG_VERSION")));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|e| {
            SendError::permanent(
                url.redact(&format!("cannot build the request to {}: {e}", url.shown())),
            )
        })?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                SendError::retryable(url.redact(&format!(
                    "POST to {} failed: {}",
                    url.shown(),
                    error_chain(&e)
                )))
            })?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, wall_clock()));
            let body = Limited::new(resp.into_body(), MAX_REPLY_BYTES)
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)
                .unwrap_or_default();
            Ok(Reply {
                status,
                retry_after,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(SendError::retryable(format!(
                "POST to {} timed out after {} s",
                url.shown(),
                self.timeout.as_secs()
            ))),
        }
    }

    /// The side-effect-free probe: resolves the host, connects, completes the TLS handshake
    /// (for `https://`), and closes. No request is sent.
    ///
    /// # Errors
    ///
    /// Retryable, naming the step that failed.
    pub async fn probe(&self, url: &SecretUrl) -> Result<(), SendError> {
        let host = url
            .uri()
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let https = url.uri().scheme_str() == Some("https");
        let port = url.uri().port_u16().unwrap_or(if https { 443 } else { 80 });
        let shown = url.shown();
        let steps = async {
            let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| SendError::retryable(format!("cannot resolve {shown}: {e}")))?
                .collect();
            let Some(addr) = addrs.first() else {
                return Err(SendError::retryable(format!(
                    "{shown} resolves to no address"
                )));
            };
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| SendError::retryable(format!("cannot connect to {shown}: {e}")))?;
            if https {
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| SendError::permanent(format!("{shown}: bad host name ({e})")))?;
                let tls = tokio_rustls::TlsConnector::from(self.tls.clone());
                tls.connect(name, tcp).await.map_err(|e| {
                    SendError::retryable(format!("TLS handshake with {shown} failed: {e}"))
                })?;
            }
            Ok(())
        };
        match tokio::time::timeout(self.timeout, steps).await {
            Ok(r) => r,
            Err(_) => Err(SendError::retryable(format!(
                "{shown} did not answer within {} s",
                self.timeout.as_secs()
            ))),
        }
    }
}

/// Now, through the crate's clock.
fn wall_clock() -> SystemTime {
    use crate::time::Clock;
    let ms = u64::try_from(crate::time::SystemClock.now_ms()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// The error and its causes, `: `-joined (hyper's own text is only "client error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// `Retry-After`: delay-seconds, or an HTTP date (a wait from `now`; a date in the past is no
/// wait). At most [`MAX_RETRY_AFTER`]. `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Judges a reply: `Ok` for 2xx, else a [`SendError`] (retryable for 408, 425, 429 and 5xx,
/// carrying `Retry-After`; permanent otherwise) that quotes the start of the body, cleaned.
///
/// # Errors
///
/// Every status but 2xx.
pub fn classify(reply: &Reply, receiver: &str) -> Result<(), SendError> {
    let status = reply.status;
    if status.is_success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&reply.body);
    let quoted = super::sanitize::clean_line(text.trim(), QUOTED_REPLY_CHARS);
    let mut message = format!("{receiver} answered HTTP {}", status.as_u16());
    if !quoted.is_empty() {
        message.push_str(&format!(": {quoted}"));
    }
    let retryable = matches!(status.as_u16(), 408 | 425 | 429) || status.is_server_error();
    if !retryable {
        return Err(SendError::permanent(message));
    }
    let mut e = SendError::retryable(message);
    if let Some(wait) = reply.retry_after {
        e = e.with_retry_after(wait);
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date_and_bounded() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    fn reply(status: u16, retry_after: Option<u64>, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: retry_after.map(Duration::from_secs),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn statuses_are_classified() {
        assert!(classify(&reply(200, None, ""), "r").is_ok());
        assert!(classify(&reply(202, None, ""), "r").is_ok());
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(
                classify(&reply(s, None, ""), "r")
                    .unwrap_err()
                    .is_retryable(),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 410, 413, 422] {
            assert!(
                !classify(&reply(s, None, ""), "r")
                    .unwrap_err()
                    .is_retryable(),
                "{s}"
            );
        }
        let e = classify(&reply(429, Some(30), "slow down\r\nX-Evil: 1"), "https://h").unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
        assert!(e
            .to_string()
            .starts_with("https://h answered HTTP 429: slow down"));
        assert!(!e.to_string().contains(['\r', '\n']));
    }

    #[test]
    fn a_secret_url_shows_its_host_only() {
        let u = SecretUrl::parse(
            "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX",
            "url",
        )
        .unwrap();
        assert_eq!(u.shown(), "https://hooks.slack.com");
        let debug = format!("{u:?}");
        assert!(!debug.contains("XXXXSECRETXXXX"), "{debug}");
        let redacted = u.redact(
            "error sending to https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX and /services/T000/B000/XXXXSECRETXXXX",
        );
        assert!(!redacted.contains("SECRET"), "{redacted}");
        assert!(SecretUrl::parse("http://example.com/x", "url").is_err());
        assert!(SecretUrl::parse("http://127.0.0.1:9/x", "url").is_ok());
        let err = SecretUrl::parse("ftp://h/SECRET", "url").unwrap_err();
        assert!(!err.contains("SECRET"), "{err}");
    }
}
