//! A lenient HTTP layer for LookupEvents replies: one `CloudTrailEvent` holding text that is
//! not valid Unicode (a lone UTF-16 surrogate escape such as `\udc80`, or bytes that are not
//! UTF-8) makes the SDK reject the whole reply — and the poll of that window would fail
//! forever. This layer reads the reply body and replaces such text with U+FFFD, so that the
//! reply parses and the damaged record alone is reported as malformed (see
//! [`super::check_record`]) while the rest of its page is kept.

use std::borrow::Cow;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;

/// Wraps an HTTP client so that every reply body is made valid Unicode JSON text.
#[derive(Debug, Clone)]
pub struct LenientClient {
    inner: SharedHttpClient,
}

impl LenientClient {
    /// Wraps `inner`.
    pub fn wrap(inner: SharedHttpClient) -> SharedHttpClient {
        SharedHttpClient::new(LenientClient { inner })
    }

    /// Wraps the SDK's default HTTPS client (hyper 1 with rustls on aws-lc, honouring the
    /// standard proxy variables), built the way the SDK builds it when none is given.
    pub fn default_https() -> SharedHttpClient {
        use aws_smithy_http_client::proxy::ProxyConfig;
        use aws_smithy_http_client::{tls, Builder, ConnectorBuilder};
        let inner = Builder::new().build_with_connector_fn(|settings, components| {
            let mut conn = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ));
            conn.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                conn.set_sleep_impl(components.sleep_impl());
            }
            conn.set_proxy_config(Some(ProxyConfig::from_env()));
            conn.build()
        });
        Self::wrap(inner)
    }
}

impl HttpClient for LenientClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(LenientConnector {
            inner: self.inner.http_connector(settings, components),
        })
    }
}

#[derive(Debug, Clone)]
struct LenientConnector {
    inner: SharedHttpConnector,
}

impl HttpConnector for LenientConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let inner = self.inner.clone();
        HttpConnectorFuture::new(async move {
            let mut response = inner.call(request).await?;
            let body = response.take_body();
            let bytes = ByteStream::new(body)
                .collect()
                .await
                .map_err(|e| ConnectorError::io(Box::new(e)))?
                .into_bytes();
            let fixed = match make_valid(&bytes) {
                Cow::Borrowed(_) => SdkBody::from(bytes),
                Cow::Owned(v) => SdkBody::from(v),
            };
            *response.body_mut() = fixed;
            Ok(response)
        })
    }
}

/// Replaces invalid UTF-8 and unpaired surrogate escapes (`\uD800`–`\uDFFF` without their
/// partner) in JSON text with U+FFFD; borrowed when there is nothing to fix.
pub fn make_valid(body: &[u8]) -> Cow<'_, [u8]> {
    let text = String::from_utf8_lossy(body);
    let b = text.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    let mut copied = 0;
    while let Some(off) = memchr::memchr(b'\\', &b[i..]) {
        let at = i + off;
        if b.get(at + 1) != Some(&b'u') {
            // Any other escape: skip the backslash and the escaped character.
            i = at + 2;
            continue;
        }
        let Some(unit) = hex4(b, at + 2) else {
            i = at + 2;
            continue;
        };
        let is_high = (0xD800..0xDC00).contains(&unit);
        let is_low = (0xDC00..0xE000).contains(&unit);
        let paired = is_high
            && b.get(at + 6) == Some(&b'\\')
            && b.get(at + 7) == Some(&b'u')
            && hex4(b, at + 8).is_some_and(|u| (0xDC00..0xE000).contains(&u));
        if paired {
            i = at + 12;
        } else if is_high || is_low {
            let o = out.get_or_insert_with(|| Vec::with_capacity(b.len()));
            o.extend_from_slice(&b[copied..at]);
            o.extend_from_slice(b"\\ufffd");
            copied = at + 6;
            i = at + 6;
        } else {
            i = at + 6;
        }
    }
    if let Some(mut o) = out {
        o.extend_from_slice(&b[copied..]);
        return Cow::Owned(o);
    }
    match text {
        Cow::Owned(t) => Cow::Owned(t.into_bytes()),
        Cow::Borrowed(_) => Cow::Borrowed(body),
    }
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let s = std::str::from_utf8(b.get(at..at + 4)?).ok()?;
    u32::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(s: &[u8]) -> String {
        String::from_utf8(make_valid(s).into_owned()).unwrap()
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        assert_eq!(fix(br#"{"a":"x\udc80y"}"#), r#"{"a":"x\ufffdy"}"#);
        assert_eq!(fix(br#"{"a":"\uD800"}"#), r#"{"a":"\ufffd"}"#);
        assert_eq!(fix(br#"{"a":"\ud800\u0041"}"#), r#"{"a":"\ufffd\u0041"}"#);
    }

    #[test]
    fn valid_text_is_untouched() {
        for s in [
            &br#"{"a":"\ud83d\ude00 \u00e9 \\udc80 \" \\"}"#[..],
            b"{}",
            br#"{"a":"\u12"}"#,
        ] {
            assert!(
                matches!(make_valid(s), Cow::Borrowed(_)),
                "{}",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(fix(b"{\"a\":\"\xff\"}"), "{\"a\":\"\u{fffd}\"}");
    }
}
