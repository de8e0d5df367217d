//! The rules rolewatch applies when the user gives none.
//!
//! For now that is one pattern: the vendor's own, kept verbatim so that rolewatch matches exactly
//! what the vendor's documented CloudWatch metric filter would.

/// The filter pattern Astronomer documents for watching its cross-account role
/// `astronomer-remote-management` and its policy `AstronomerCrossAccountRole`, verbatim
/// (including the two spaces before the second `||`).
///
/// What it misses: `SetPolicyVersion` is not an IAM API (the real event is
/// `SetDefaultPolicyVersion`), and `PutRolePolicy`, `DeleteRolePolicy`,
/// `UpdateAssumeRolePolicy` and `DeletePolicyVersion` are not watched at all.
pub const DOCUMENTED_PATTERN: &str = r#"{ ($.eventName = AttachRolePolicy || $.eventName = DetachRolePolicy || $.eventName = SetPolicyVersion || $.eventName = CreatePolicyVersion) && ($.requestParameters.policyArn = "*AstronomerCrossAccountRole"  || $.requestParameters.roleName = astronomer-remote-management) }"#;

#[cfg(test)]
mod tests {
    use super::DOCUMENTED_PATTERN;

    #[test]
    fn documented_pattern_compiles_as_a_json_pattern() {
        let pattern = filter_pattern::FilterPattern::new(DOCUMENTED_PATTERN).expect("compiles");
        assert_eq!(pattern.kind(), filter_pattern::PatternKind::Json);
        assert_eq!(pattern.as_str(), DOCUMENTED_PATTERN);
    }

    #[test]
    fn documented_pattern_keeps_the_vendors_double_space() {
        assert!(DOCUMENTED_PATTERN.contains(r#"Role"  || $.requestParameters.roleName"#));
    }
}
