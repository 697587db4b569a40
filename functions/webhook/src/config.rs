//! The webhook's configuration, read once at cold start.

use remedios_shared::config::{AwsSettings, ConfigError, Env, Vars};
use remedios_shared::secrets::SecretSource;
use remedios_shared::user::SenderList;

/// Meta reports webhook bodies of up to 3 MB; we never accept less.
pub const MIN_BODY_BYTES: usize = 3 * 1024 * 1024;
/// The default body bound: above the largest notification Meta sends.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Everything the webhook needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub verify_token: SecretSource,
    pub app_secret: SecretSource,
    pub user_tag_key: SecretSource,
    pub inbound_queue_url: String,
    pub bucket: String,
    pub max_body_bytes: usize,
    pub allowed_senders: SenderList,
    /// The business phone number ids this deployment answers for
    /// (`WHATSAPP_PHONE_NUMBER_ID`, comma-separated); empty answers every number of the
    /// business account. Messages to the others are dropped and counted.
    pub phone_number_ids: Vec<String>,
    pub aws: AwsSettings,
}

impl Config {
    pub fn from_env<V: Vars>(env: &Env<V>) -> Result<Self, ConfigError> {
        Ok(Config {
            verify_token: env.secret(
                "WHATSAPP_VERIFY_TOKEN",
                "the verify token you entered in Meta's webhook settings",
            )?,
            app_secret: env.secret(
                "WHATSAPP_APP_SECRET",
                "the Meta app secret that signs webhook bodies",
            )?,
            user_tag_key: env.secret(
                "USER_TAG_KEY",
                "the deployment's secret that keys user tags (32 or more random characters: `openssl rand -hex 32`)",
            )?,
            inbound_queue_url: env
                .required("INBOUND_QUEUE_URL", "the URL of the inbound SQS FIFO queue")?,
            bucket: env.required("BUCKET_NAME", "the S3 bucket of Remedios")?,
            max_body_bytes: env.number_in(
                "WEBHOOK_MAX_BODY_BYTES",
                DEFAULT_MAX_BODY_BYTES,
                MIN_BODY_BYTES,
                64 * 1024 * 1024,
            )?,
            allowed_senders: SenderList::parse(env.optional("ALLOWED_SENDERS").as_deref()),
            phone_number_ids: env
                .optional("WHATSAPP_PHONE_NUMBER_ID")
                .unwrap_or_default()
                .split([',', ';', ' ', '\n'])
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect(),
            aws: AwsSettings::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: [(&str, &str); 5] = [
        ("USER_TAG_KEY_PARAM", "/remedios/user-tag-key"),
        ("WHATSAPP_VERIFY_TOKEN", "vt"),
        ("WHATSAPP_APP_SECRET_PARAM", "/remedios/app-secret"),
        (
            "INBOUND_QUEUE_URL",
            "http://127.0.0.1:5000/123/inbound.fifo",
        ),
        ("BUCKET_NAME", "remedios"),
    ];

    #[test]
    fn the_phone_number_ids_are_a_list() {
        let [a, b, c, d, e] = BASE;
        let vars = [
            a,
            b,
            c,
            d,
            e,
            ("WHATSAPP_PHONE_NUMBER_ID", "106540352242922, 2222"),
        ];
        let config = Config::from_env(&Env(vars)).unwrap();
        assert_eq!(config.phone_number_ids, ["106540352242922", "2222"]);
    }

    #[test]
    fn defaults_fill_what_is_not_set() {
        let config = Config::from_env(&Env(BASE)).unwrap();
        assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert!(config.allowed_senders.is_empty());
        assert!(config.phone_number_ids.is_empty());
        assert_eq!(
            config.app_secret,
            SecretSource::SsmParameter("/remedios/app-secret".into())
        );
    }

    #[test]
    fn a_body_bound_below_what_meta_sends_is_refused() {
        let mut vars: std::collections::HashMap<String, String> = BASE
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        vars.insert("WEBHOOK_MAX_BODY_BYTES".into(), "1048576".into());
        let err = Config::from_env(&Env(vars)).unwrap_err();
        assert_eq!(err.name, "WEBHOOK_MAX_BODY_BYTES");
        assert!(err.problem.contains("outside the allowed range"), "{err}");
    }

    #[test]
    fn a_missing_queue_url_is_named() {
        let vars = [
            ("WHATSAPP_VERIFY_TOKEN", "vt"),
            ("WHATSAPP_APP_SECRET", "s"),
            ("USER_TAG_KEY", "k"),
            ("BUCKET_NAME", "b"),
        ];
        let err = Config::from_env(&Env(vars)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: INBOUND_QUEUE_URL is not set: the URL of the inbound SQS FIFO queue"
        );
    }
}
