//! The baseline: a snapshot of the vendor's role — attached managed policies with their
//! default documents, inline policies, the trust policy, and the vendor's managed policy's
//! default version — taken at start and daily, kept in the state, and compared with the role
//! as it is when an alert is analysed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::iam::{IamError, IamReader};
use super::policy::{self, Policy, Verdict};
use crate::config::VendorConfig;

/// A managed policy as the snapshot saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedPolicy {
    pub name: String,
    pub arn: String,
    pub default_version_id: Option<String>,
    /// The default version's document, decoded; `None` when it could not be read.
    pub document: Option<Value>,
}

/// An inline policy as the snapshot saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlinePolicy {
    pub name: String,
    pub document: Option<Value>,
}

/// The role at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    pub taken_ms: i64,
    pub role_name: String,
    pub role_arn: String,
    /// The trust policy, decoded.
    pub trust_policy: Option<Value>,
    pub attached: Vec<ManagedPolicy>,
    pub inline: Vec<InlinePolicy>,
    /// The vendor's managed policy (`[vendor] policy_name`), attached or not.
    pub managed_policy: Option<ManagedPolicy>,
    /// Parts that could not be read, one sentence each.
    pub problems: Vec<String>,
}

impl Baseline {
    /// The managed policy with this ARN, attached or the vendor's own.
    #[must_use]
    pub fn managed(&self, arn: &str) -> Option<&ManagedPolicy> {
        self.attached
            .iter()
            .chain(self.managed_policy.as_ref())
            .find(|p| p.arn == arn)
    }

    /// The inline policy with this name.
    #[must_use]
    pub fn inline(&self, name: &str) -> Option<&InlinePolicy> {
        self.inline.iter().find(|p| p.name == name)
    }
}

/// A document as IAM returns it (URL-encoded JSON), as JSON.
#[must_use]
pub fn decode_document(text: &str) -> Option<Value> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).ok();
    }
    let decoded = percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()?;
    serde_json::from_str(&decoded).ok()
}

async fn managed<R: IamReader>(
    iam: &R,
    name: &str,
    arn: &str,
    problems: &mut Vec<String>,
) -> ManagedPolicy {
    let mut p = ManagedPolicy {
        name: name.to_owned(),
        arn: arn.to_owned(),
        default_version_id: None,
        document: None,
    };
    match iam.default_version(arn).await {
        Ok(v) => {
            match iam.policy_version(arn, &v).await {
                Ok(doc) => p.document = decode_document(&doc),
                Err(e) => problems.push(format!("{arn}: {e}")),
            }
            p.default_version_id = Some(v);
        }
        Err(e) => problems.push(format!("{arn}: {e}")),
    }
    p
}

/// Takes a snapshot of the vendor's role.
///
/// # Errors
///
/// When the role itself cannot be read (`GetRole`) or its policies cannot be listed; a
/// policy whose document cannot be read is recorded in [`Baseline::problems`] instead.
pub async fn snapshot<R: IamReader>(
    iam: &R,
    vendor: &VendorConfig,
    now_ms: i64,
) -> Result<Baseline, IamError> {
    let role = iam.role(&vendor.role_name).await?;
    let attached_names = iam.attached_policies(&vendor.role_name).await?;
    let inline_names = iam.inline_policy_names(&vendor.role_name).await?;
    let mut problems = Vec::new();
    let mut attached = Vec::new();
    for (name, arn) in &attached_names {
        attached.push(managed(iam, name, arn, &mut problems).await);
    }
    let mut inline = Vec::new();
    for name in &inline_names {
        let document = match iam.inline_policy(&vendor.role_name, name).await {
            Ok(doc) => decode_document(&doc),
            Err(e) => {
                problems.push(format!("inline policy {name}: {e}"));
                None
            }
        };
        inline.push(InlinePolicy {
            name: name.clone(),
            document,
        });
    }
    let managed_policy = match attached.iter().find(|p| p.name == vendor.policy_name) {
        Some(p) => Some(p.clone()),
        None => {
            // Not attached (any more): look it up in the role's account.
            let account = role.arn.split(':').nth(4).unwrap_or_default();
            let arn = format!("arn:aws:iam::{account}:policy/{}", vendor.policy_name);
            let mut quiet = Vec::new();
            let p = managed(iam, &vendor.policy_name, &arn, &mut quiet).await;
            p.default_version_id.is_some().then_some(p)
        }
    };
    Ok(Baseline {
        taken_ms: now_ms,
        role_name: vendor.role_name.clone(),
        role_arn: role.arn,
        trust_policy: decode_document(&role.trust_policy),
        attached,
        inline,
        managed_policy,
        problems,
    })
}

fn verdict_of(before: Option<&Value>, after: Option<&Value>) -> String {
    match (before.map(Policy::parse), after.map(Policy::parse)) {
        (Some(Ok(b)), Some(Ok(a))) => {
            let d = policy::diff(&b, &a);
            if d.verdict == Verdict::Unchanged {
                "same permissions, different text".to_owned()
            } else {
                d.verdict.to_string()
            }
        }
        _ => "not compared".to_owned(),
    }
}

/// How the role `now` differs from `base`, one sentence each; empty when it does not.
#[must_use]
pub fn differences(base: &Baseline, now: &Baseline) -> Vec<String> {
    let mut out = Vec::new();
    if base.trust_policy != now.trust_policy {
        out.push(format!(
            "trust policy changed ({})",
            verdict_of(base.trust_policy.as_ref(), now.trust_policy.as_ref())
        ));
        if let (Some(Ok(b)), Some(Ok(a))) = (
            base.trust_policy.as_ref().map(Policy::parse),
            now.trust_policy.as_ref().map(Policy::parse),
        ) {
            out.extend(policy::trust_flags(&b, &a));
        }
    }
    let old: BTreeMap<&str, &ManagedPolicy> =
        base.attached.iter().map(|p| (p.arn.as_str(), p)).collect();
    let new: BTreeMap<&str, &ManagedPolicy> =
        now.attached.iter().map(|p| (p.arn.as_str(), p)).collect();
    for (arn, p) in &new {
        match old.get(arn) {
            None => out.push(format!("policy attached since the baseline: {arn}")),
            Some(o) if o.default_version_id != p.default_version_id => out.push(format!(
                "default version of {arn}: {} → {} ({})",
                o.default_version_id.as_deref().unwrap_or("?"),
                p.default_version_id.as_deref().unwrap_or("?"),
                verdict_of(o.document.as_ref(), p.document.as_ref())
            )),
            Some(_) => {}
        }
    }
    for arn in old.keys().filter(|a| !new.contains_key(*a)) {
        out.push(format!("policy detached since the baseline: {arn}"));
    }
    let old: BTreeMap<&str, &InlinePolicy> =
        base.inline.iter().map(|p| (p.name.as_str(), p)).collect();
    let new: BTreeMap<&str, &InlinePolicy> =
        now.inline.iter().map(|p| (p.name.as_str(), p)).collect();
    for (name, p) in &new {
        match old.get(name) {
            None => out.push(format!("inline policy added since the baseline: {name}")),
            Some(o) if o.document != p.document => out.push(format!(
                "inline policy {name} changed ({})",
                verdict_of(o.document.as_ref(), p.document.as_ref())
            )),
            Some(_) => {}
        }
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        out.push(format!("inline policy deleted since the baseline: {name}"));
    }
    if let (Some(o), Some(n)) = (&base.managed_policy, &now.managed_policy) {
        let attached = now.attached.iter().any(|p| p.arn == n.arn);
        if !attached && o.default_version_id != n.default_version_id {
            out.push(format!(
                "default version of {}: {} → {}",
                n.arn,
                o.default_version_id.as_deref().unwrap_or("?"),
                n.default_version_id.as_deref().unwrap_or("?")
            ));
        }
    }
    out
}
