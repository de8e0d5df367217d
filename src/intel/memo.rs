//! [`Memo`]: an [`IamReader`] that answers each distinct call once, for one pass of the
//! analysis worker. The worker reads what a batch of alerts needs concurrently through it
//! (a burst of alerts would otherwise wait for one IAM round trip after another), then
//! analyses the alerts one by one, in order, against the answers it holds. Every alert of a
//! pass thus sees IAM as it was when the pass began, as it sees one snapshot of the role;
//! the next pass asks again. A failed call is kept too: the pass does not ask twice.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;

use super::iam::{IamError, IamReader, RoleInfo};

type Answers<K, V> = Mutex<HashMap<K, Result<V, IamError>>>;

/// One pass's answers, over the reader `inner`.
pub struct Memo<'a, R> {
    inner: &'a R,
    default_version: Answers<String, String>,
    policy_version: Answers<(String, String), String>,
    role: Answers<String, RoleInfo>,
    attached: Answers<String, Vec<(String, String)>>,
    inline_names: Answers<String, Vec<String>>,
    inline: Answers<(String, String), String>,
}

impl<'a, R: IamReader> Memo<'a, R> {
    pub fn new(inner: &'a R) -> Self {
        Memo {
            inner,
            default_version: Mutex::default(),
            policy_version: Mutex::default(),
            role: Mutex::default(),
            attached: Mutex::default(),
            inline_names: Mutex::default(),
            inline: Mutex::default(),
        }
    }
}

/// The answer kept for `key`, or `call`'s (then kept). Two concurrent misses of one key
/// both ask; the lock is never held across the call.
async fn once<K, V, F>(answers: &Answers<K, V>, key: K, call: F) -> Result<V, IamError>
where
    K: Eq + Hash,
    V: Clone,
    F: Future<Output = Result<V, IamError>>,
{
    let kept = answers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
        .cloned();
    if let Some(answer) = kept {
        return answer;
    }
    let answer = call.await;
    answers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, answer.clone());
    answer
}

impl<R: IamReader> IamReader for Memo<'_, R> {
    async fn default_version(&self, policy_arn: &str) -> Result<String, IamError> {
        let call = self.inner.default_version(policy_arn);
        once(&self.default_version, policy_arn.to_owned(), call).await
    }
    async fn policy_version(&self, policy_arn: &str, version_id: &str) -> Result<String, IamError> {
        let call = self.inner.policy_version(policy_arn, version_id);
        let key = (policy_arn.to_owned(), version_id.to_owned());
        once(&self.policy_version, key, call).await
    }
    async fn role(&self, role_name: &str) -> Result<RoleInfo, IamError> {
        let call = self.inner.role(role_name);
        once(&self.role, role_name.to_owned(), call).await
    }
    async fn attached_policies(&self, role_name: &str) -> Result<Vec<(String, String)>, IamError> {
        let call = self.inner.attached_policies(role_name);
        once(&self.attached, role_name.to_owned(), call).await
    }
    async fn inline_policy_names(&self, role_name: &str) -> Result<Vec<String>, IamError> {
        let call = self.inner.inline_policy_names(role_name);
        once(&self.inline_names, role_name.to_owned(), call).await
    }
    async fn inline_policy(&self, role_name: &str, policy_name: &str) -> Result<String, IamError> {
        let call = self.inner.inline_policy(role_name, policy_name);
        let key = (role_name.to_owned(), policy_name.to_owned());
        once(&self.inline, key, call).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts the calls that reach it; `GetRole` of `gone` fails.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl IamReader for Counting {
        async fn default_version(&self, arn: &str) -> Result<String, IamError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(format!("v1 of {arn}"))
        }
        async fn policy_version(&self, arn: &str, v: &str) -> Result<String, IamError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(format!("{arn} {v}"))
        }
        async fn role(&self, name: &str) -> Result<RoleInfo, IamError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            if name == "gone" {
                return Err(IamError {
                    call: "GetRole",
                    code: Some("NoSuchEntity".into()),
                    message: "gone".into(),
                    retryable: false,
                });
            }
            Ok(RoleInfo {
                arn: name.into(),
                trust_policy: String::new(),
            })
        }
        async fn attached_policies(&self, _: &str) -> Result<Vec<(String, String)>, IamError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        }
        async fn inline_policy_names(&self, _: &str) -> Result<Vec<String>, IamError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        }
        async fn inline_policy(&self, r: &str, p: &str) -> Result<String, IamError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(format!("{r}/{p}"))
        }
    }

    #[tokio::test]
    async fn each_distinct_call_reaches_iam_once_per_pass() {
        let iam = Counting::default();
        let memo = Memo::new(&iam);
        for _ in 0..3 {
            assert_eq!(memo.policy_version("a", "v2").await.unwrap(), "a v2");
            assert_eq!(memo.policy_version("a", "v3").await.unwrap(), "a v3");
            assert_eq!(memo.default_version("a").await.unwrap(), "v1 of a");
            assert_eq!(memo.inline_policy("r", "p").await.unwrap(), "r/p");
            // A failure is kept too.
            assert_eq!(memo.role("gone").await.unwrap_err().message, "gone");
        }
        assert_eq!(iam.0.load(Ordering::SeqCst), 5);
        // A new pass asks again.
        let again = Memo::new(&iam);
        again.default_version("a").await.unwrap();
        assert_eq!(iam.0.load(Ordering::SeqCst), 6);
    }
}
