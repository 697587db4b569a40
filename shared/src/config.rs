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

// ------------------------------------------------------------------ declarations

/// Who gives a setting its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The operator, or the default.
    Operator,
    /// The operator, as a secret: the value itself in `NAME` (local runs) or, deployed,
    /// the name of its SSM SecureString in `NAME_PARAM`.
    Secret,
    /// The deployment, from what it created (queue URLs, the bucket, the queues'
    /// receive counts) or where it runs (an emulator's endpoint).
    Deployment,
}

/// One environment variable a function reads, as its declaration describes it: what
/// the template and README tests and `remedios up` iterate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The variable (`TEXT_<NAME>_<LANG>` for a family of variables).
    pub name: &'static str,
    /// One line: what it does.
    pub doc: &'static str,
    /// The value used when it is unset, as text; `None`: nothing, or it is required.
    pub default: Option<String>,
    /// The smallest and largest values the code accepts, for numbers.
    pub range: Option<(String, String)>,
    pub origin: Origin,
    /// Whether the function stops without it.
    pub required: bool,
    /// A family of variables sharing this prefix (`TEXT_`), each read apart.
    pub prefix: Option<&'static str>,
}

impl Setting {
    fn new(name: &'static str, doc: &'static str, origin: Origin) -> Self {
        Setting {
            name,
            doc,
            default: None,
            range: None,
            origin,
            required: false,
            prefix: None,
        }
    }

    /// The same setting, given its value by the deployment (a queue's receive count).
    pub fn deployed(self) -> Self {
        Setting {
            origin: Origin::Deployment,
            ..self
        }
    }

    /// Whether `variable` is this setting (or, for a secret, its `_PARAM`; for a family,
    /// one of its variables).
    pub fn names(&self, variable: &str) -> bool {
        match self.prefix {
            Some(prefix) => variable.starts_with(prefix),
            None => {
                variable == self.name
                    || (self.origin == Origin::Secret
                        && variable.strip_suffix("_PARAM") == Some(self.name))
            }
        }
    }
}

/// A whole or decimal number within `min..=max`.
#[derive(Debug, Clone, Copy)]
pub struct Number<T> {
    pub name: &'static str,
    pub default: T,
    pub min: T,
    pub max: T,
    pub doc: &'static str,
}

impl<T> Number<T>
where
    T: FromStr + PartialOrd + Display + Copy,
    T::Err: Display,
{
    pub fn read<V: Vars>(&self, env: &Env<V>) -> Result<T, ConfigError> {
        self.read_or(env, self.default)
    }

    /// With a default known only at run time (the machine's cores).
    pub fn read_or<V: Vars>(&self, env: &Env<V>, default: T) -> Result<T, ConfigError> {
        env.number_in(self.name, default, self.min, self.max)
    }

    /// `None` when unset.
    pub fn read_optional<V: Vars>(&self, env: &Env<V>) -> Result<Option<T>, ConfigError> {
        env.optional(self.name).map(|_| self.read(env)).transpose()
    }

    pub fn setting(&self) -> Setting {
        Setting {
            default: Some(self.default.to_string()),
            range: Some((self.min.to_string(), self.max.to_string())),
            ..Setting::new(self.name, self.doc, Origin::Operator)
        }
    }
}

/// `true` or `false` (see [`Env::flag`]).
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    pub name: &'static str,
    pub default: bool,
    pub doc: &'static str,
}

impl Flag {
    pub fn read<V: Vars>(&self, env: &Env<V>) -> Result<bool, ConfigError> {
        env.flag(self.name, self.default)
    }

    pub fn setting(&self) -> Setting {
        Setting {
            default: Some(self.default.to_string()),
            ..Setting::new(self.name, self.doc, Origin::Operator)
        }
    }
}

/// One of a few words, read by the type's `FromStr`; the default is the word used when
/// it is unset.
#[derive(Debug, Clone, Copy)]
pub struct Choice {
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

impl Choice {
    pub fn read<T, V: Vars>(&self, env: &Env<V>) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let raw = env
            .optional(self.name)
            .unwrap_or_else(|| self.default.to_owned());
        raw.parse().map_err(|e| {
            ConfigError::new(self.name, format!("is {raw:?}, which is not valid: {e}"))
        })
    }

    pub fn setting(&self) -> Setting {
        Setting {
            default: Some(self.default.to_owned()),
            ..Setting::new(self.name, self.doc, Origin::Operator)
        }
    }
}

/// Free text: optional, or required.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    pub name: &'static str,
    pub doc: &'static str,
    pub origin: Origin,
    pub required: bool,
}

impl Text {
    /// An optional text, set by the operator.
    pub const fn optional(name: &'static str, doc: &'static str) -> Self {
        Text {
            name,
            doc,
            origin: Origin::Operator,
            required: false,
        }
    }

    /// A text the deployment sets from what it created; `required` when the function
    /// cannot run without it.
    pub const fn wired(name: &'static str, doc: &'static str, required: bool) -> Self {
        Text {
            name,
            doc,
            origin: Origin::Deployment,
            required,
        }
    }

    /// The value, `None` when unset or empty.
    pub fn get<V: Vars>(&self, env: &Env<V>) -> Option<String> {
        env.optional(self.name)
    }

    /// The value, or an error naming it and saying what it is.
    pub fn require<V: Vars>(&self, env: &Env<V>) -> Result<String, ConfigError> {
        env.required(self.name, self.doc)
    }

    pub fn setting(&self) -> Setting {
        Setting {
            required: self.required,
            ..Setting::new(self.name, self.doc, self.origin)
        }
    }
}

/// An `http`/`https` URL (see [`Env::url`]).
#[derive(Debug, Clone, Copy)]
pub struct UrlVar {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub doc: &'static str,
    pub origin: Origin,
}

impl UrlVar {
    pub fn read<V: Vars>(&self, env: &Env<V>) -> Result<Url, ConfigError> {
        env.url(self.name, self.default)
    }

    pub fn setting(&self) -> Setting {
        Setting {
            default: self.default.map(str::to_owned),
            required: self.default.is_none(),
            ..Setting::new(self.name, self.doc, self.origin)
        }
    }
}

/// A secret (see [`Env::secret`]); an optional one may be left out altogether.
#[derive(Debug, Clone, Copy)]
pub struct SecretVar {
    pub name: &'static str,
    pub doc: &'static str,
    pub required: bool,
}

impl SecretVar {
    pub fn read<V: Vars>(&self, env: &Env<V>) -> Result<SecretSource, ConfigError> {
        env.secret(self.name, self.doc)
    }

    /// `None` when neither the value nor its parameter is set.
    pub fn read_optional<V: Vars>(
        &self,
        env: &Env<V>,
    ) -> Result<Option<SecretSource>, ConfigError> {
        let given = env.optional(self.name).is_some()
            || env.optional(&format!("{}_PARAM", self.name)).is_some();
        given.then(|| self.read(env)).transpose()
    }

    pub fn setting(&self) -> Setting {
        Setting {
            required: self.required,
            ..Setting::new(self.name, self.doc, Origin::Secret)
        }
    }
}

/// A duration in seconds (decimals allowed), more than zero.
#[derive(Debug, Clone, Copy)]
pub struct Seconds {
    pub name: &'static str,
    pub default: u64,
    pub doc: &'static str,
}

impl Seconds {
    pub fn read<V: Vars>(&self, env: &Env<V>) -> Result<Duration, ConfigError> {
        let value = env.seconds(self.name, Duration::from_secs(self.default))?;
        if value.is_zero() {
            return Err(ConfigError::new(
                self.name,
                format!("is 0; give {}, in seconds", self.doc),
            ));
        }
        Ok(value)
    }

    pub fn setting(&self) -> Setting {
        Setting {
            default: Some(self.default.to_string()),
            ..Setting::new(self.name, self.doc, Origin::Operator)
        }
    }
}

/// A family of variables sharing a prefix, each read apart (`TEXT_RESET_DONE_ES`).
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// How the README writes it: `TEXT_<NAME>_<LANG>`.
    pub pattern: &'static str,
    pub prefix: &'static str,
    pub doc: &'static str,
}

impl Family {
    pub fn setting(&self) -> Setting {
        Setting {
            prefix: Some(self.prefix),
            ..Setting::new(self.pattern, self.doc, Origin::Operator)
        }
    }
}

/// The bucket every function uses.
pub const BUCKET_NAME: Text = Text::wired("BUCKET_NAME", "the S3 bucket of Remedios", true);

/// Settings every function shares: where the AWS services are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// Use path-style S3 addressing (needed by local emulators). Defaults to on when
    /// `AWS_ENDPOINT_URL` points the SDK at an emulator.
    pub s3_force_path_style: bool,
}

pub const AWS_ENDPOINT_URL: Text = Text::wired(
    "AWS_ENDPOINT_URL",
    "an AWS emulator's endpoint instead of AWS (local runs and tests)",
    false,
);
pub const AWS_ENDPOINT_URL_S3: Text = Text::wired(
    "AWS_ENDPOINT_URL_S3",
    "an S3 emulator's endpoint instead of AWS",
    false,
);
/// Its default is on when an emulator's endpoint is set.
pub const S3_FORCE_PATH_STYLE: Flag = Flag {
    name: "S3_FORCE_PATH_STYLE",
    default: false,
    doc: "path-style S3 addressing, for emulators (on by default with an emulator's endpoint)",
};

impl AwsSettings {
    pub fn from_env<V: Vars>(env: &Env<V>) -> Result<Self, ConfigError> {
        let emulated =
            AWS_ENDPOINT_URL.get(env).is_some() || AWS_ENDPOINT_URL_S3.get(env).is_some();
        Ok(AwsSettings {
            s3_force_path_style: env.flag(S3_FORCE_PATH_STYLE.name, emulated)?,
        })
    }

    /// What [`AwsSettings::from_env`] reads.
    pub fn settings() -> Vec<Setting> {
        vec![
            AWS_ENDPOINT_URL.setting(),
            AWS_ENDPOINT_URL_S3.setting(),
            S3_FORCE_PATH_STYLE.setting().deployed(),
        ]
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
