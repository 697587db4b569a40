//! The webhook's configuration, read once at cold start.
//!
//! Each variable is declared once below and read through its declaration; [`settings`]
//! lists them for the template and README tests and for `remedios up`.

use remedios_shared::config::{
    AwsSettings, BUCKET_NAME, ConfigError, Env, Number, SecretVar, Setting, Text, Vars,
};
use remedios_shared::handoff::STAFF_NUMBERS;
use remedios_shared::queue::INBOUND_QUEUE_URL;
use remedios_shared::secrets::SecretSource;
use remedios_shared::telemetry;
use remedios_shared::user::SenderList;

/// Meta reports webhook bodies of up to 3 MB; we never accept less.
pub const MIN_BODY_BYTES: usize = 3 * 1024 * 1024;
/// The default body bound: above the largest notification Meta sends.
pub const DEFAULT_MAX_BODY_BYTES: usize = WEBHOOK_MAX_BODY_BYTES.default;

pub const WHATSAPP_VERIFY_TOKEN: SecretVar = SecretVar {
    name: "WHATSAPP_VERIFY_TOKEN",
    doc: "the verify token you entered in Meta's webhook settings",
    required: true,
};
pub const WHATSAPP_APP_SECRET: SecretVar = SecretVar {
    name: "WHATSAPP_APP_SECRET",
    doc: "the Meta app secret that signs webhook bodies",
    required: true,
};
pub const USER_TAG_KEY: SecretVar = SecretVar {
    name: "USER_TAG_KEY",
    doc: "the deployment's secret that keys user tags (32 or more random characters: `openssl rand -hex 32`)",
    required: true,
};
pub const WEBHOOK_MAX_BODY_BYTES: Number<usize> = Number {
    name: "WEBHOOK_MAX_BODY_BYTES",
    default: 4 * 1024 * 1024,
    min: MIN_BODY_BYTES,
    max: 64 * 1024 * 1024,
    doc: "larger bodies answer 413",
};
pub const ALLOWED_SENDERS: Text = Text::optional(
    "ALLOWED_SENDERS",
    "phone numbers or user ids who may talk to Remedios (empty: everyone)",
);
pub const WHATSAPP_PHONE_NUMBER_ID: Text = Text::optional(
    "WHATSAPP_PHONE_NUMBER_ID",
    "the business phone number ids answered for (empty: every number)",
);

/// Every variable the webhook reads.
pub fn settings() -> Vec<Setting> {
    let mut settings = vec![
        WHATSAPP_VERIFY_TOKEN.setting(),
        WHATSAPP_APP_SECRET.setting(),
        USER_TAG_KEY.setting(),
        INBOUND_QUEUE_URL.setting(),
        BUCKET_NAME.setting(),
        WEBHOOK_MAX_BODY_BYTES.setting(),
        ALLOWED_SENDERS.setting(),
        WHATSAPP_PHONE_NUMBER_ID.setting(),
        STAFF_NUMBERS.setting(),
    ];
    settings.extend(AwsSettings::settings());
    settings.extend(telemetry::settings());
    settings
}

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
    /// Staff numbers (`STAFF_NUMBERS`): their messages are marked as staff's.
    pub staff: SenderList,
    /// The business phone number ids this deployment answers for
    /// (`WHATSAPP_PHONE_NUMBER_ID`, comma-separated); empty answers every number of the
    /// business account. Messages to the others are dropped and counted.
    pub phone_number_ids: Vec<String>,
    pub aws: AwsSettings,
}

impl Config {
    pub fn from_env<V: Vars>(env: &Env<V>) -> Result<Self, ConfigError> {
        Ok(Config {
            verify_token: WHATSAPP_VERIFY_TOKEN.read(env)?,
            app_secret: WHATSAPP_APP_SECRET.read(env)?,
            user_tag_key: USER_TAG_KEY.read(env)?,
            inbound_queue_url: INBOUND_QUEUE_URL.require(env)?,
            bucket: BUCKET_NAME.require(env)?,
            max_body_bytes: WEBHOOK_MAX_BODY_BYTES.read(env)?,
            allowed_senders: SenderList::parse(ALLOWED_SENDERS.get(env).as_deref()),
            staff: SenderList::parse(STAFF_NUMBERS.get(env).as_deref()),
            phone_number_ids: WHATSAPP_PHONE_NUMBER_ID
                .get(env)
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
