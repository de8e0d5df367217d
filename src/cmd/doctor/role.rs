//! The role check: a snapshot of the vendor's role now (read-only IAM, as `rolewatch baseline`
//! takes it), summarised, and how it differs from the baseline stored in the state.

use aws_config::SdkConfig;

use super::state::StoredBaseline;
use super::{bounded, when, Finding, Status, CHECK_TIMEOUT};
use crate::config::Config;
use crate::intel::baseline::{self, Baseline};
use crate::intel::iam::AwsIam;
use crate::intel::policy::{Effect, Policy, Set};

/// Checks the vendor's role; `stored` is what the state holds.
pub(super) async fn check(
    cfg: &Config,
    sdk: Option<&SdkConfig>,
    stored: StoredBaseline,
    now_ms: i64,
) -> Finding {
    let check = format!("role {}", cfg.vendor.role_name);
    let Some(sdk) = sdk else {
        return Finding::skipped(check);
    };
    let iam = AwsIam::new(sdk);
    // Several calls (the role, its lists, each policy's default version): twice the budget.
    let snap = match bounded(
        CHECK_TIMEOUT * 2,
        baseline::snapshot(&iam, &cfg.vendor, now_ms),
    )
    .await
    {
        Ok(Ok(snap)) => snap,
        Ok(Err(e)) => {
            let mut f = Finding::new(
                Status::Warn,
                check,
                format!("cannot read the role: {e}; alerts would say \"diff unavailable\""),
            );
            if e.is_access_denied() {
                f.line("grant the IAM reads of deploy/iam-policy-optional.json for the change analysis");
            } else if e.is_not_found() {
                f.line("the role does not exist in this account: check [vendor] role_name");
            }
            return f;
        }
        Err(why) => {
            return Finding::new(
                Status::Warn,
                check,
                format!("IAM: {why}; alerts would say \"diff unavailable\""),
            )
        }
    };
    summary(check, &snap, &stored, &cfg.vendor.policy_name, now_ms)
}

/// The snapshot in a few lines, and the comparison with the stored baseline.
pub(super) fn summary(
    check: String,
    snap: &Baseline,
    stored: &StoredBaseline,
    policy_name: &str,
    now_ms: i64,
) -> Finding {
    let mut f = Finding::new(Status::Ok, check, String::new());
    f.line(format!("ARN: {}", snap.role_arn));
    if snap.attached.is_empty() {
        f.line("attached policies: none");
    }
    for p in &snap.attached {
        f.line(format!(
            "attached: {} ({}), default version {}",
            p.name,
            p.arn,
            p.default_version_id.as_deref().unwrap_or("unknown")
        ));
    }
    let inline: Vec<&str> = snap.inline.iter().map(|p| p.name.as_str()).collect();
    f.line(format!(
        "inline policies: {}",
        if inline.is_empty() {
            "none".to_owned()
        } else {
            inline.join(", ")
        }
    ));
    match snap.trust_policy.as_ref().map(Policy::parse) {
        Some(Ok(trust)) => {
            for line in trust_lines(&trust) {
                if line.contains("WITHOUT") {
                    f.raise(Status::Warn);
                }
                f.line(line);
            }
        }
        Some(Err(e)) => f.line(format!("trust policy: cannot be read ({e})")),
        None => f.line("trust policy: cannot be read"),
    }
    match &snap.managed_policy {
        Some(p) => {
            let attached = snap.attached.iter().any(|a| a.arn == p.arn);
            f.line(format!(
                "the vendor's policy {policy_name}: default version {}{}",
                p.default_version_id.as_deref().unwrap_or("unknown"),
                if attached {
                    ""
                } else {
                    " (NOT attached to the role)"
                }
            ));
        }
        None => f.line(format!(
            "the vendor's policy {policy_name}: not found in the role's account"
        )),
    }
    for problem in &snap.problems {
        f.raise(Status::Warn);
        f.line(format!("could not read: {problem}"));
    }

    let shape = format!(
        "{} attached, {} inline polic{}",
        snap.attached.len(),
        snap.inline.len(),
        if snap.inline.len() == 1 { "y" } else { "ies" }
    );
    let compared = match stored {
        StoredBaseline::NoState => "no state yet, so no baseline to compare with".to_owned(),
        StoredBaseline::None => {
            "no baseline stored yet (the daemon records one at start)".to_owned()
        }
        StoredBaseline::Unreadable(why) => format!("baseline not compared: {why}"),
        StoredBaseline::Found(taken_ms, json) => match serde_json::from_str::<Baseline>(json) {
            Err(e) => {
                f.raise(Status::Warn);
                format!("the stored baseline cannot be read ({e})")
            }
            Ok(base) => {
                let diffs = baseline::differences(&base, snap);
                if diffs.is_empty() {
                    format!("same as the baseline of {}", when(*taken_ms, now_ms))
                } else {
                    f.raise(Status::Warn);
                    for d in &diffs {
                        f.line(format!("since the baseline: {d}"));
                    }
                    f.line("if the change was approved: rolewatch baseline --record");
                    format!(
                        "{} difference(s) from the baseline of {}",
                        diffs.len(),
                        when(*taken_ms, now_ms)
                    )
                }
            }
        },
    };
    f.detail = format!("{shape}; {compared}");
    f
}

/// One line per Allow statement of the trust policy: who may assume the role, and whether an
/// `sts:ExternalId` condition guards it.
fn trust_lines(trust: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    for s in trust
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow)
    {
        let who = match &s.principals {
            Some(Set::Only(p)) => p.iter().cloned().collect::<Vec<_>>().join(", "),
            Some(Set::Except(p)) => format!(
                "anyone but {}",
                p.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
            None => "no principal".to_owned(),
        };
        let external_id = s.conditions.iter().any(|c| c.key == "sts:externalid");
        // Only a role assumed from another account needs the external ID (confused deputy).
        let cross_account = matches!(&s.principals, Some(Set::Only(p)) if p.iter().any(|p| p.starts_with("AWS:") || p == "*"));
        let guard = match (external_id, cross_account) {
            (true, _) => "with an sts:ExternalId condition",
            (false, true) => "WITHOUT an sts:ExternalId condition",
            (false, false) => "no sts:ExternalId condition",
        };
        out.push(format!("trust: {who} may assume the role, {guard}"));
    }
    if out.is_empty() {
        out.push("trust: no Allow statement: nobody may assume the role".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intel::baseline::ManagedPolicy;
    use serde_json::json;

    fn snap(external_id: bool, version: &str) -> Baseline {
        let mut statement = json!({"Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"AWS": "arn:aws:iam::406882777402:root"}});
        if external_id {
            statement["Condition"] = json!({"StringEquals": {"sts:ExternalId": "x"}});
        }
        let policy = ManagedPolicy {
            name: "AstronomerCrossAccountRole".into(),
            arn: "arn:aws:iam::123456789012:policy/AstronomerCrossAccountRole".into(),
            default_version_id: Some(version.into()),
            document: Some(json!({"Version": "2012-10-17", "Statement": []})),
        };
        Baseline {
            taken_ms: 1_000,
            role_name: "astronomer-remote-management".into(),
            role_arn: "arn:aws:iam::123456789012:role/astronomer-remote-management".into(),
            trust_policy: Some(json!({"Version": "2012-10-17", "Statement": [statement]})),
            attached: vec![policy.clone()],
            inline: Vec::new(),
            managed_policy: Some(policy),
            problems: Vec::new(),
        }
    }

    #[test]
    fn the_summary_lists_policies_trust_and_the_vendor_policy_version() {
        let f = summary(
            "role r".into(),
            &snap(true, "v1"),
            &StoredBaseline::NoState,
            "AstronomerCrossAccountRole",
            2_000,
        );
        assert_eq!(f.status, Status::Ok, "{f}");
        let text = f.to_string();
        for want in [
            "1 attached, 0 inline policies; no state yet",
            "attached: AstronomerCrossAccountRole (arn:aws:iam::123456789012:policy/AstronomerCrossAccountRole), default version v1",
            "inline policies: none",
            "trust: AWS:arn:aws:iam::406882777402:root may assume the role, with an sts:ExternalId condition",
            "the vendor's policy AstronomerCrossAccountRole: default version v1",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
    }

    #[test]
    fn no_external_id_and_a_difference_from_the_baseline_warn() {
        let f = summary(
            "role r".into(),
            &snap(false, "v1"),
            &StoredBaseline::None,
            "p",
            2_000,
        );
        assert_eq!(f.status, Status::Warn);
        assert!(f.to_string().contains("WITHOUT an sts:ExternalId"), "{f}");

        let stored =
            StoredBaseline::Found(1_000, serde_json::to_string(&snap(true, "v1")).unwrap());
        let same = summary("role r".into(), &snap(true, "v1"), &stored, "p", 2_000);
        assert_eq!(same.status, Status::Ok, "{same}");
        assert!(
            same.detail
                .contains("same as the baseline of 1970-01-01T00:00:01Z"),
            "{same}"
        );

        let changed = summary("role r".into(), &snap(true, "v2"), &stored, "p", 2_000);
        assert_eq!(changed.status, Status::Warn);
        assert!(
            changed.detail.contains("1 difference(s) from the baseline"),
            "{changed}"
        );
        assert!(changed.to_string().contains("v1 → v2"), "{changed}");
    }
}
