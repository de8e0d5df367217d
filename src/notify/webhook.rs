//! The webhook channel: one HTTPS POST per alert ([`super::http`]).
//!
//! The body, by `format`: `json` — the alert's JSON exactly as the stdout channel prints it
//! (with `dedup_key`); `slack` and `teams` — [`super::chat::slack`] and
//! [`super::chat::teams`]. Headers: `Content-Type: application/json`, `User-Agent:
//! rolewatch/VERSION`, `Idempotency-Key: <dedup_key>` (the same on every retry and resend,
//! so a receiver can drop repeats) and, with a signing secret, `X-Rolewatch-Timestamp:
//! <unix seconds>` and `X-Rolewatch-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
//!
//! To verify a delivery: recompute the HMAC-SHA256, keyed with the secret, over the
//! timestamp header's value, a `.`, and the raw body bytes; compare it in constant time
//! with the hex after `v1=`; refuse a timestamp more than five minutes from your clock
//! (a replay).

use hmac::{KeyInit, Mac};
use hyper::header::{HeaderName, HeaderValue};
use sha2::Sha256;

use super::alert::Alert;
use super::http::{classify, HttpClient, SecretUrl};
use super::notifier::{Delivered, SendError};
use super::smtp::Secret;
use super::{chat, stdout::StdoutNotifier};
use crate::config::{WebhookChannelConfig, WebhookFormat};

/// The signature's timestamp header.
pub const TIMESTAMP_HEADER: &str = "x-rolewatch-timestamp";
/// The signature header: `v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-rolewatch-signature";
/// The dedup key, for receivers that drop repeats.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

pub struct WebhookNotifier {
    name: String,
    url: SecretUrl,
    format: WebhookFormat,
    signing_secret: Option<Secret>,
    client: HttpClient,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("format", &self.format)
            .field("signing_secret", &self.signing_secret)
            .finish_non_exhaustive()
    }
}

/// The body a webhook gets for an alert.
///
/// # Errors
///
/// Permanent, when the JSON cannot be written (a bug).
pub fn body(alert: &Alert, format: WebhookFormat) -> Result<Vec<u8>, SendError> {
    let value = match format {
        WebhookFormat::Json => return StdoutNotifier::line(alert).map(String::into_bytes),
        WebhookFormat::Slack => chat::slack(alert),
        WebhookFormat::Teams => chat::teams(alert),
    };
    serde_json::to_vec(&value)
        .map_err(|e| SendError::permanent(format!("cannot write the webhook body: {e}")))
}

/// `v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
#[must_use]
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(3 + tag.len() * 2);
    out.push_str("v1=");
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl WebhookNotifier {
    /// Reads the URL and the signing secret, builds the client. Connects to nothing.
    ///
    /// # Errors
    ///
    /// A secret or `ca_file` that cannot be read, a URL that is not https://; the text
    /// never holds the URL.
    pub fn new(name: &str, cfg: &WebhookChannelConfig) -> Result<WebhookNotifier, String> {
        let url = SecretUrl::load(&cfg.url, "webhook URL")?;
        let signing_secret = cfg
            .signing_secret
            .as_ref()
            .map(|s| Secret::load_named(s, "signing_secret"))
            .transpose()?;
        Ok(WebhookNotifier {
            name: name.to_owned(),
            url,
            format: cfg.format,
            signing_secret,
            client: HttpClient::new(cfg.ca_file.as_deref(), cfg.timeout)?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// POSTs the alert; `Ok` once the receiver answered 2xx.
    ///
    /// # Errors
    ///
    /// As [`classify`]: 408, 429 (with `Retry-After`), 5xx, timeouts and connection
    /// failures retryable; other statuses permanent.
    pub async fn send(&self, alert: &Alert) -> Result<Delivered, SendError> {
        let body = body(alert, self.format)?;
        let mut headers = vec![(
            HeaderName::from_static(IDEMPOTENCY_HEADER),
            header_value(&alert.dedup_key)?,
        )];
        if let Some(secret) = &self.signing_secret {
            let ts = {
                use crate::time::Clock;
                crate::time::SystemClock
                    .now_ms()
                    .div_euclid(1000)
                    .to_string()
            };
            let sig = signature(secret.expose().as_bytes(), &ts, &body);
            headers.push((
                HeaderName::from_static(TIMESTAMP_HEADER),
                header_value(&ts)?,
            ));
            headers.push((
                HeaderName::from_static(SIGNATURE_HEADER),
                header_value(&sig)?,
            ));
        }
        let reply = self.client.post_json(&self.url, &headers, body).await?;
        classify(&reply, &format!("the webhook {}", self.url.shown()))?;
        Ok(Delivered {
            receipt: Some(format!("HTTP {}", reply.status.as_u16())),
        })
    }

    /// DNS, TCP connect and TLS handshake with the receiver; sends no request.
    ///
    /// # Errors
    ///
    /// Retryable, naming the step.
    pub async fn check(&self) -> Result<(), SendError> {
        self.client.probe(&self.url).await
    }
}

/// A header value from text that is ASCII by construction (hex, digits).
fn header_value(s: &str) -> Result<HeaderValue, SendError> {
    HeaderValue::from_str(&super::sanitize::ascii_line(s, 256))
        .map_err(|e| SendError::permanent(format!("cannot make a header value: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against Python's `hmac` (an independent implementation), over
    /// `1700000000.what do ya want for nothing?` with RFC 4231's key "Jefe".
    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        let sig = signature(b"Jefe", "1700000000", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "v1=1cdd0650c8be1cb0974b1788d458b1e781206cfef59b85faafc582d2e182c57e"
        );
    }

    #[test]
    fn build_errors_name_the_key_never_the_url() {
        use crate::config::PasswordSource;
        let cfg = |url: PasswordSource| WebhookChannelConfig {
            url,
            format: WebhookFormat::Json,
            signing_secret: None,
            timeout: std::time::Duration::from_secs(1),
            ca_file: None,
        };
        let err = WebhookNotifier::new(
            "hook",
            &cfg(PasswordSource::Env(
                "ROLEWATCH_TEST_SURELY_UNSET_URL".into(),
            )),
        )
        .unwrap_err();
        assert!(err.contains("(url_env) is not set"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "http://hooks.example.com/services/SECRETPATH\n").unwrap();
        let err = WebhookNotifier::new("hook", &cfg(PasswordSource::File(file))).unwrap_err();
        assert!(err.contains("only https://"), "{err}");
        assert!(!err.contains("SECRETPATH"), "{err}");
    }
}
