//! Credentials inside a member account: `sts:AssumeRole` into its role, through one STS client
//! that every account shares.
//!
//! The SDK's own `AssumeRoleProvider` builds an STS client for each role it assumes — about
//! 14 KB of configuration and runtime plugins each, which at 1,000 accounts was most of what
//! an account cost (bench/RESULTS.md). An [`AssumedRole`] is the role's parameters and a
//! handle to the shared client: a few hundred bytes. Its credentials are cached by the
//! identity cache of the client whose request needs them (keyed by the provider's own cache
//! partition), so one `AssumeRole` per account per refresh, as before.

use std::time::SystemTime;

use aws_credential_types::provider::{self, error::CredentialsError, ProvideCredentials};
use aws_credential_types::Credentials;

/// One account's role, assumed on demand with rolewatch's own credentials.
#[derive(Clone)]
pub struct AssumedRole {
    /// The STS client every account shares.
    client: aws_sdk_sts::Client,
    role_arn: String,
    session_name: String,
    external_id: Option<String>,
}

impl std::fmt::Debug for AssumedRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The ExternalId is a shared secret between the account and rolewatch: never printed.
        f.debug_struct("AssumedRole")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field(
                "external_id",
                &self.external_id.as_ref().map(|_| "** redacted **"),
            )
            .finish_non_exhaustive()
    }
}

impl AssumedRole {
    #[must_use]
    pub fn new(
        client: aws_sdk_sts::Client,
        role_arn: String,
        session_name: String,
        external_id: Option<String>,
    ) -> AssumedRole {
        AssumedRole {
            client,
            role_arn,
            session_name,
            external_id,
        }
    }

    async fn assume(&self) -> provider::Result {
        let out = self
            .client
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .set_external_id(self.external_id.clone())
            .send()
            .await
            .map_err(|e| {
                CredentialsError::provider_error(format!(
                    "sts:AssumeRole into {}: {}",
                    self.role_arn,
                    super::error_text(&e)
                ))
            })?;
        let Some(c) = out.credentials() else {
            return Err(CredentialsError::unhandled(format!(
                "sts:AssumeRole into {} gave no credentials",
                self.role_arn
            )));
        };
        let expiry = SystemTime::try_from(*c.expiration()).map_err(|_| {
            CredentialsError::unhandled(format!(
                "sts:AssumeRole into {} gave credentials with an unreadable expiry",
                self.role_arn
            ))
        })?;
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            Some(expiry),
            "AssumeRole",
        ))
    }
}

impl ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.assume())
    }
}

/// Credentials that never resolve, saying why (an account whose ExternalId is missing).
#[derive(Debug)]
pub struct NoCredentials(pub String);

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
            self.0.clone(),
        )))
    }
}
