//! Configuration from environment variables, checked once at cold start.
//!
//! Every function reads its settings through [`Env`]: a missing or malformed variable
//! becomes a [`ConfigError`] whose one line names the variable and says what is
//! wrong, and the function stops before it handles anything.
//!
//! Secrets ([`Env::secret`]) come either from the variable itself (local runs) or, in
//! AWS, from an SSM Parameter Store SecureString whose name is in `<NAME>_PARAM`; see
//! [`crate::secrets`].

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;
use url::Url;

use crate::secrets::{Secret, SecretSource};

/// A configuration problem: which variable, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("configuration error: {name} {problem}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: String,
    /// What is wrong, in words a deployer can act on.
    pub problem: String,
}

impl ConfigError {
    pub fn new(name: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            name: name.into(),
            problem: problem.into(),
        }
    }
}

/// Where variables come from: the process environment, or a map in tests.
pub trait Vars {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Vars for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Vars for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl<const N: usize> Vars for [(&str, &str); N] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

/// Typed access to configuration variables.
#[derive(Debug, Clone, Default)]
pub struct Env<V = ProcessEnv>(pub V);

impl Env<ProcessEnv> {
    /// The process environment.
    pub fn process() -> Self {
        Env(ProcessEnv)
    }
}

impl<V: Vars> Env<V> {
    /// The value of `name`, `None` when unset or empty.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.0
            .var(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The value of `name`; `what` says what it is, for the error when it is missing.
    pub fn required(&self, name: &str, what: &str) -> Result<String, ConfigError> {
        self.optional(name)
            .ok_or_else(|| ConfigError::new(name, format!("is not set: {what}")))
    }

    /// `name` parsed as a `T`, or `default` when unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|e| {
                ConfigError::new(name, format!("is {raw:?}, which is not valid: {e}"))
            }),
        }
    }

    /// A whole number within `min..=max`, or `default` when unset.
    pub fn number_in<T>(&self, name: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Display + Copy,
        T::Err: Display,
    {
        let value = self.parse_or(name, default)?;
        if value < min || value > max {
            return Err(ConfigError::new(
                name,
                format!("is {value}, outside the allowed range {min} to {max}"),
            ));
        }
        Ok(value)
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`), or `default` when unset.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::new(
                    name,
                    format!("is {v:?}; use true or false"),
                )),
            },
        }
    }

    /// A duration in whole seconds, or `default` when unset.
    pub fn seconds(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        self.parse_or::<f64>(name, default.as_secs_f64())
            .and_then(|s| {
                Duration::try_from_secs_f64(s).map_err(|_| {
                    ConfigError::new(name, format!("is {s}, not a duration in seconds"))
                })
            })
    }

    /// An absolute `http`/`https` URL, or `default` when unset.
    pub fn url(&self, name: &str, default: Option<&str>) -> Result<Url, ConfigError> {
        let raw = match (self.optional(name), default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_owned(),
            (None, None) => return Err(ConfigError::new(name, "is not set: an http(s) URL")),
        };
        let url = Url::parse(&raw)
            .map_err(|e| ConfigError::new(name, format!("is {raw:?}, not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::new(
                name,
                format!("is {raw:?}; only http and https URLs are supported"),
            ));
        }
        Ok(url)
    }

    /// A secret: the value of `name` itself, or the name of an SSM SecureString
    /// parameter in `name_PARAM`. Exactly one of the two must be set.
    pub fn secret(&self, name: &str, what: &str) -> Result<SecretSource, ConfigError> {
        let param_name = format!("{name}_PARAM");
        match (self.optional(name), self.optional(&param_name)) {
            (Some(value), None) => Ok(SecretSource::Value(Secret::new(value))),
            (None, Some(parameter)) => Ok(SecretSource::SsmParameter(parameter)),
            (Some(_), Some(_)) => Err(ConfigError::new(
                name,
                format!("and {param_name} are both set; set only one ({what})"),
            )),
            (None, None) => Err(ConfigError::new(
                name,
                format!(
                    "is not set: {what} (set {name}, or {param_name} to the name of an SSM SecureString parameter)"
                ),
            )),
        }
    }
}

/// Settings every function shares: where the AWS services are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// Use path-style S3 addressing (needed by local emulators). Defaults to on when
    /// `AWS_ENDPOINT_URL` points the SDK at an emulator.
    pub s3_force_path_style: bool,
}

impl AwsSettings {
    pub fn from_env<V: Vars>(env: &Env<V>) -> Result<Self, ConfigError> {
        let emulated = env.optional("AWS_ENDPOINT_URL").is_some()
            || env.optional("AWS_ENDPOINT_URL_S3").is_some();
        Ok(AwsSettings {
            s3_force_path_style: env.flag("S3_FORCE_PATH_STYLE", emulated)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variables_are_named_with_what_they_are() {
        let env = Env([("EMPTY", "  ")]);
        let err = env.required("EMPTY", "the inbound queue URL").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: EMPTY is not set: the inbound queue URL"
        );
    }

    #[test]
    fn malformed_numbers_flags_and_urls_name_the_variable_and_the_value() {
        let env = Env([
            ("N", "ten"),
            ("R", "99"),
            ("F", "maybe"),
            ("U", "ftp://x"),
            ("S", "1.5"),
        ]);
        assert!(
            env.parse_or::<u32>("N", 1)
                .unwrap_err()
                .to_string()
                .contains("\"ten\"")
        );
        assert!(
            env.number_in::<u32>("R", 1, 1, 10)
                .unwrap_err()
                .to_string()
                .contains("outside the allowed range 1 to 10")
        );
        assert!(
            env.flag("F", true)
                .unwrap_err()
                .to_string()
                .contains("use true or false")
        );
        assert!(
            env.url("U", None)
                .unwrap_err()
                .to_string()
                .contains("only http and https")
        );
        assert_eq!(
            env.seconds("S", Duration::ZERO).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(env.parse_or::<u32>("UNSET", 7).unwrap(), 7);
    }

    #[test]
    fn secrets_come_from_the_value_or_an_ssm_parameter_never_both() {
        let inline = Env([("APP_SECRET", "s3cr3t")]);
        assert!(
            matches!(inline.secret("APP_SECRET", "x").unwrap(), SecretSource::Value(s) if s.expose() == "s3cr3t")
        );
        let ssm = Env([("APP_SECRET_PARAM", "/remedios/app-secret")]);
        assert_eq!(
            ssm.secret("APP_SECRET", "x").unwrap(),
            SecretSource::SsmParameter("/remedios/app-secret".into())
        );
        let both = Env([("APP_SECRET", "a"), ("APP_SECRET_PARAM", "/p")]);
        assert!(
            both.secret("APP_SECRET", "x")
                .unwrap_err()
                .to_string()
                .contains("both set")
        );
        let none = Env([("OTHER", "")]);
        assert!(
            none.secret("APP_SECRET", "the app secret")
                .unwrap_err()
                .to_string()
                .contains("APP_SECRET_PARAM")
        );
    }

    #[test]
    fn path_style_follows_an_emulator_endpoint_unless_told_otherwise() {
        assert!(
            !AwsSettings::from_env(&Env([("X", "")]))
                .unwrap()
                .s3_force_path_style
        );
        assert!(
            AwsSettings::from_env(&Env([("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")]))
                .unwrap()
                .s3_force_path_style
        );
        assert!(
            !AwsSettings::from_env(&Env([
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
                ("S3_FORCE_PATH_STYLE", "false")
            ]))
            .unwrap()
            .s3_force_path_style
        );
    }
}
