//! The read-only IAM calls the change analysis makes, behind [`IamReader`] so that tests can
//! feed documents. [`AwsIam`] is the real one (aws-sdk-iam); each call is retried on
//! throttling and transient errors ([`crate::aws::retry::classify`] decides) and never
//! outlives the caller's deadline.
//!
//! The calls: `GetPolicy`, `GetPolicyVersion`, `GetRole`, `GetRolePolicy`,
//! `ListAttachedRolePolicies`, `ListRolePolicies`. Documents come back URL-encoded; they are
//! returned as IAM sent them and decoded by [`super::policy::Policy::parse_text`].

use std::future::Future;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::retry::{classify, Backoff, RetryClass};

/// Why an IAM call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call}: {message}")]
pub struct IamError {
    /// The API call, e.g. `GetPolicy`.
    pub call: &'static str,
    /// IAM's error code (`AccessDenied`, `NoSuchEntity`, …), when it sent one.
    pub code: Option<String>,
    pub message: String,
    pub retryable: bool,
}

impl IamError {
    /// True for a missing permission.
    #[must_use]
    pub fn is_access_denied(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| c.starts_with("AccessDenied") || c == "UnauthorizedOperation")
    }

    /// True when the entity does not exist (any more).
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.code.as_deref() == Some("NoSuchEntity")
    }
}

/// A role as `GetRole` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    pub arn: String,
    /// The trust policy, as IAM returns it (URL-encoded JSON).
    pub trust_policy: String,
}

/// The read-only IAM calls the analysis needs.
pub trait IamReader: Send + Sync {
    /// `GetPolicy`: the default version's ID.
    fn default_version(
        &self,
        policy_arn: &str,
    ) -> impl Future<Output = Result<String, IamError>> + Send;
    /// `GetPolicyVersion`: the document of one version.
    fn policy_version(
        &self,
        policy_arn: &str,
        version_id: &str,
    ) -> impl Future<Output = Result<String, IamError>> + Send;
    /// `GetRole`.
    fn role(&self, role_name: &str) -> impl Future<Output = Result<RoleInfo, IamError>> + Send;
    /// `ListAttachedRolePolicies`: `(name, arn)` of each attached managed policy.
    fn attached_policies(
        &self,
        role_name: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, IamError>> + Send;
    /// `ListRolePolicies`: the names of the inline policies.
    fn inline_policy_names(
        &self,
        role_name: &str,
    ) -> impl Future<Output = Result<Vec<String>, IamError>> + Send;
    /// `GetRolePolicy`: one inline document.
    fn inline_policy(
        &self,
        role_name: &str,
        policy_name: &str,
    ) -> impl Future<Output = Result<String, IamError>> + Send;

    /// The same reader inside `account` (an `[[account]]`'s id), with that account's
    /// credentials; `None`: this reader has no such account (the analysis then uses `self`).
    fn for_account(&self, _account: &str) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
}

/// Attempts per call on throttling or transient errors (the SDK retries too, within each).
const ATTEMPTS: u32 = 2;

/// The real IAM.
///
/// One client for every account: a call inside an `[[account]]` carries that account's
/// credentials (a client per account cost about 14 KB each; bench/RESULTS.md).
#[derive(Debug, Clone)]
pub struct AwsIam {
    client: aws_sdk_iam::Client,
    /// The account's credentials this reader calls with; `None`: the client's own.
    credentials: Option<SharedCredentialsProvider>,
    /// Each `[[account]]`'s credentials (`None`: the account rolewatch runs in).
    members: std::sync::Arc<std::collections::HashMap<String, Option<SharedCredentialsProvider>>>,
}

impl AwsIam {
    #[must_use]
    pub fn new(sdk: &aws_config::SdkConfig) -> AwsIam {
        AwsIam {
            client: Self::client(sdk),
            credentials: None,
            members: std::sync::Arc::default(),
        }
    }

    /// [`AwsIam::new`] that also reads inside each account (`(id, its credentials)`).
    #[must_use]
    pub fn with_accounts<'a>(
        sdk: &aws_config::SdkConfig,
        accounts: impl IntoIterator<Item = (&'a str, &'a Option<SharedCredentialsProvider>)>,
    ) -> AwsIam {
        AwsIam {
            client: Self::client(sdk),
            credentials: None,
            members: std::sync::Arc::new(
                accounts
                    .into_iter()
                    .map(|(id, c)| (id.to_owned(), c.clone()))
                    .collect(),
            ),
        }
    }

    /// The per-request configuration of this reader's calls: its account's credentials, and
    /// the client's identity cache that every account shares (without one, the SDK gives
    /// each request a throwaway cache, and each call would assume the role again).
    fn account(&self) -> aws_sdk_iam::config::Builder {
        let mut b = aws_sdk_iam::config::Builder::default();
        if self.credentials.is_some() {
            b.set_credentials_provider(self.credentials.clone());
            if let Some(cache) = self.client.config().identity_cache() {
                b.set_identity_cache(cache);
            }
        }
        b
    }

    fn client(sdk: &aws_config::SdkConfig) -> aws_sdk_iam::Client {
        // IAM is global: its endpoint is in us-east-1 whatever the sources' region.
        // Two attempts per call: the analysis has a budget, and a dead endpoint should make
        // "diff unavailable" quickly rather than eat it.
        let conf = aws_sdk_iam::config::Builder::from(sdk)
            .region(aws_config::Region::new("us-east-1"))
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
            .build();
        aws_sdk_iam::Client::from_conf(conf)
    }
}

fn iam_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    call: &'static str,
    err: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> IamError {
    let class = classify(err);
    let (code, message) = match err.as_service_error() {
        Some(se) => (
            se.code().map(str::to_owned),
            se.message().unwrap_or("no message").to_owned(),
        ),
        None => (None, crate::aws::error_text(err)),
    };
    IamError {
        call,
        code,
        message,
        retryable: class != RetryClass::Permanent,
    }
}

/// Runs `f` up to [`ATTEMPTS`] times while it fails retryably, waiting the one backoff of AWS
/// calls ([`Backoff::AWS`], full jitter) between attempts.
async fn retrying<T, F, Fut>(mut f: F) -> Result<T, IamError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, IamError>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if e.retryable && attempt < ATTEMPTS => {
                tokio::time::sleep(Backoff::AWS.draw(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn missing(call: &'static str, what: &str) -> IamError {
    IamError {
        call,
        code: None,
        message: format!("the reply has no {what}"),
        retryable: false,
    }
}

/// `request` (a fluent builder of `self.client`) sent inside this reader's account
/// ([`AwsIam::account`]); its error as an [`IamError`] of `call`.
macro_rules! in_account {
    ($self:ident, $call:literal, $request:expr) => {
        $request
            .customize()
            .config_override($self.account())
            .send()
            .await
            .map_err(|e| iam_error($call, &e))
    };
}

/// The marker of the next page: IAM's, while it says the list is truncated (an empty or
/// missing marker ends the list, as it does the SDK's paginators).
fn next_marker(truncated: bool, marker: Option<&str>) -> Option<String> {
    marker
        .filter(|m| truncated && !m.is_empty())
        .map(str::to_owned)
}

/// Every page of an IAM list, page by page (the SDK's paginators ignore a per-request
/// configuration): `page(marker)` gives a page's items and the next marker; at most
/// [`MAX_LISTED`] items, and a marker sent back unchanged ends the list (it would list the
/// same page for ever).
async fn listed<T, F, Fut>(mut page: F) -> Result<Vec<T>, IamError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), IamError>>,
{
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let sent = marker.take();
        let (items, next) = page(sent.clone()).await?;
        out.extend(items);
        if next.is_none() || next == sent || out.len() >= MAX_LISTED {
            out.truncate(MAX_LISTED);
            return Ok(out);
        }
        marker = next;
    }
}

/// The most policies read from one list (a role holds at most 20 managed and a few inline).
const MAX_LISTED: usize = 1000;

impl IamReader for AwsIam {
    fn for_account(&self, account: &str) -> Option<AwsIam> {
        self.members.get(account).map(|credentials| AwsIam {
            client: self.client.clone(),
            credentials: credentials.clone(),
            members: std::sync::Arc::default(),
        })
    }

    async fn default_version(&self, policy_arn: &str) -> Result<String, IamError> {
        retrying(|| async {
            let out = in_account!(
                self,
                "GetPolicy",
                self.client.get_policy().policy_arn(policy_arn)
            )?;
            out.policy()
                .and_then(|p| p.default_version_id())
                .map(str::to_owned)
                .ok_or_else(|| missing("GetPolicy", "DefaultVersionId"))
        })
        .await
    }

    async fn policy_version(&self, policy_arn: &str, version_id: &str) -> Result<String, IamError> {
        retrying(|| async {
            let out = in_account!(
                self,
                "GetPolicyVersion",
                self.client
                    .get_policy_version()
                    .policy_arn(policy_arn)
                    .version_id(version_id)
            )?;
            out.policy_version()
                .and_then(|v| v.document())
                .map(str::to_owned)
                .ok_or_else(|| missing("GetPolicyVersion", "Document"))
        })
        .await
    }

    async fn role(&self, role_name: &str) -> Result<RoleInfo, IamError> {
        retrying(|| async {
            let out = in_account!(self, "GetRole", self.client.get_role().role_name(role_name))?;
            let role = out.role().ok_or_else(|| missing("GetRole", "Role"))?;
            Ok(RoleInfo {
                arn: role.arn().to_owned(),
                trust_policy: role
                    .assume_role_policy_document()
                    .unwrap_or_default()
                    .to_owned(),
            })
        })
        .await
    }

    async fn attached_policies(&self, role_name: &str) -> Result<Vec<(String, String)>, IamError> {
        retrying(|| {
            listed(|marker| async move {
                let page = in_account!(
                    self,
                    "ListAttachedRolePolicies",
                    self.client
                        .list_attached_role_policies()
                        .role_name(role_name)
                        .set_marker(marker)
                )?;
                let items = page
                    .attached_policies()
                    .iter()
                    .map(|p| {
                        (
                            p.policy_name().unwrap_or_default().to_owned(),
                            p.policy_arn().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                Ok((items, next_marker(page.is_truncated(), page.marker())))
            })
        })
        .await
    }

    async fn inline_policy_names(&self, role_name: &str) -> Result<Vec<String>, IamError> {
        retrying(|| {
            listed(|marker| async move {
                let page = in_account!(
                    self,
                    "ListRolePolicies",
                    self.client
                        .list_role_policies()
                        .role_name(role_name)
                        .set_marker(marker)
                )?;
                let items = page.policy_names().to_vec();
                Ok((items, next_marker(page.is_truncated(), page.marker())))
            })
        })
        .await
    }

    async fn inline_policy(&self, role_name: &str, policy_name: &str) -> Result<String, IamError> {
        retrying(|| async {
            let out = in_account!(
                self,
                "GetRolePolicy",
                self.client
                    .get_role_policy()
                    .role_name(role_name)
                    .policy_name(policy_name)
            )?;
            Ok(out.policy_document().to_owned())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages as IAM gives them: `(items, IsTruncated, Marker)` by the marker asked for.
    async fn list(pages: &[(Vec<u32>, bool, Option<&str>)]) -> (Vec<u32>, Vec<Option<String>>) {
        let asked = std::sync::Mutex::new(Vec::new());
        let got = listed(|marker: Option<String>| {
            asked.lock().unwrap().push(marker.clone());
            let i = asked.lock().unwrap().len() - 1;
            let (items, truncated, next) = pages[i].clone();
            async move { Ok((items, next_marker(truncated, next))) }
        })
        .await
        .unwrap();
        (got, asked.into_inner().unwrap())
    }

    #[tokio::test]
    async fn every_page_is_read_until_iam_says_the_list_is_whole() {
        let (got, asked) = list(&[
            (vec![1, 2], true, Some("m1")),
            (vec![3], true, Some("m2")),
            (vec![4], false, Some("ignored")),
        ])
        .await;
        assert_eq!(got, [1, 2, 3, 4]);
        assert_eq!(asked, [None, Some("m1".into()), Some("m2".into())]);
        // An empty marker ends the list too.
        let (got, _) = list(&[(vec![1], true, Some(""))]).await;
        assert_eq!(got, [1]);
    }

    #[tokio::test]
    async fn a_marker_sent_back_unchanged_ends_the_list() {
        let (got, asked) = list(&[(vec![1], true, Some("m")), (vec![2], true, Some("m"))]).await;
        assert_eq!(got, [1, 2]);
        assert_eq!(asked.len(), 2);
    }

    #[tokio::test]
    async fn at_most_max_listed_items() {
        let big: Vec<u32> = (0..700).collect();
        let (got, asked) = list(&[
            (big.clone(), true, Some("a")),
            (big.clone(), true, Some("b")),
            (big, true, Some("c")),
        ])
        .await;
        assert_eq!(got.len(), MAX_LISTED);
        assert_eq!(asked.len(), 2);
    }
}
