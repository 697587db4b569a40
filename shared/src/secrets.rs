//! Secrets (the verify token, the app secret, the access token), read once at cold
//! start and kept in memory.
//!
//! In AWS the template stores them as SSM Parameter Store SecureStrings and gives the
//! functions only the parameter names (`<NAME>_PARAM`); locally they may be plain
//! environment variables. A [`Secret`] never shows its value in `Debug` output.

use std::fmt;

use aws_config::SdkConfig;
use aws_sdk_ssm::Client as SsmClient;
use thiserror::Error;

/// A secret value. `Debug` prints `Secret(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that needs it (a MAC key, a header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Given directly (local runs).
    Value(Secret),
    /// The name of an SSM SecureString parameter.
    SsmParameter(String),
}

/// Why secrets could not be read.
#[derive(Debug, Error)]
pub enum SecretError {
    #[error(
        "could not read SSM parameters {names:?}: {message} (check the parameter names and the function role's ssm:GetParameters and kms:Decrypt permissions)"
    )]
    Ssm { names: Vec<String>, message: String },
    #[error(
        "SSM parameter {0} does not exist (create it as a SecureString, or fix the *_PARAM variable)"
    )]
    NotFound(String),
}

/// A function's secrets at cold start, in the order of `sources`: plain values as they
/// are, and every SSM parameter in one `GetParameters` call, with an SSM client built
/// from `sdk` only when some source needs one. The one way the functions read secrets.
pub async fn load(sdk: &SdkConfig, sources: &[&SecretSource]) -> Result<Vec<Secret>, SecretError> {
    let needs_ssm = sources
        .iter()
        .any(|s| matches!(s, SecretSource::SsmParameter(_)));
    let ssm = needs_ssm.then(|| crate::aws::ssm(sdk));
    resolve(ssm.as_ref(), sources).await
}

/// [`load`] for a fixed number of secrets: `let [a, b] = load_each(sdk, [&a, &b])`.
pub async fn load_each<const N: usize>(
    sdk: &SdkConfig,
    sources: [&SecretSource; N],
) -> Result<[Secret; N], SecretError> {
    load(sdk, &sources)
        .await?
        .try_into()
        .map_err(|got: Vec<Secret>| SecretError::Ssm {
            names: Vec::new(),
            message: format!("{} secrets for {N} sources", got.len()),
        })
}

/// Resolves `sources` in order, reading all SSM parameters in one call. `ssm` is only
/// used (and only needs to exist) when some source is an SSM parameter.
pub async fn resolve(
    ssm: Option<&SsmClient>,
    sources: &[&SecretSource],
) -> Result<Vec<Secret>, SecretError> {
    let mut names: Vec<String> = sources
        .iter()
        .filter_map(|s| match s {
            SecretSource::SsmParameter(name) => Some(name.clone()),
            SecretSource::Value(_) => None,
        })
        .collect();
    names.sort();
    names.dedup();
    let mut fetched = std::collections::HashMap::new();
    if !names.is_empty() {
        let ssm = ssm.ok_or_else(|| SecretError::Ssm {
            names: names.clone(),
            message: "no SSM client was configured".into(),
        })?;
        // GetParameters takes at most 10 names per call.
        for chunk in names.chunks(10) {
            let out = ssm
                .get_parameters()
                .set_names(Some(chunk.to_vec()))
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| SecretError::Ssm {
                    names: chunk.to_vec(),
                    message: aws_sdk_ssm::error::DisplayErrorContext(&e).to_string(),
                })?;
            if let Some(missing) = out.invalid_parameters().first() {
                return Err(SecretError::NotFound(missing.clone()));
            }
            for p in out.parameters() {
                if let (Some(name), Some(value)) = (p.name(), p.value()) {
                    fetched.insert(name.to_owned(), Secret::new(value));
                }
            }
        }
    }
    sources
        .iter()
        .map(|s| match s {
            SecretSource::Value(v) => Ok(v.clone()),
            SecretSource::SsmParameter(name) => fetched
                .get(name)
                .cloned()
                .ok_or_else(|| SecretError::NotFound(name.clone())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(
            format!("{:?}", SecretSource::Value(s)),
            "Value(Secret(***))"
        );
    }

    #[tokio::test]
    async fn plain_values_resolve_without_any_ssm_client() {
        let a = SecretSource::Value(Secret::new("a"));
        let b = SecretSource::Value(Secret::new("b"));
        let got = resolve(None, &[&a, &b]).await.unwrap();
        assert_eq!(got, vec![Secret::new("a"), Secret::new("b")]);
        let p = SecretSource::SsmParameter("/x".into());
        assert!(matches!(
            resolve(None, &[&p]).await,
            Err(SecretError::Ssm { .. })
        ));
    }
}
