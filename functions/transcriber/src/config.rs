//! The transcriber's configuration, read once at cold start.
//!
//! | variable | default | what |
//! |---|---|---|
//! | `BUCKET_NAME` | required | the S3 bucket of Remedios |
//! | `REPLY_QUEUE_URL` | required | the responder's SQS FIFO queue |
//! | `INBOUND_QUEUE_URL` | unset | the queue this function consumes: failed records come back after a short backoff instead of its visibility timeout |
//! | `WHATSAPP_ACCESS_TOKEN` or `WHATSAPP_ACCESS_TOKEN_PARAM` | required | the Graph API token, or the name of its SSM SecureString |
//! | `GRAPH_API_BASE_URL`, `GRAPH_API_VERSION`, `GRAPH_MEDIA_HOSTS` | Meta's | see [`GraphEndpoint`] |
//! | `MEDIA_MAX_BYTES` | 16 MiB | media larger than this are refused before download |
//! | `AUDIO_MAX_SECONDS` | 900 | longer audio is answered as unsupported |
//! | `WHISPER_MODEL_PATH` | `/opt/models/ggml-base-q8_0.bin` | the GGML model (e.g. from a Lambda layer) |
//! | `WHISPER_MODEL_S3_KEY` | unset | when set, the model is fetched from the bucket into `/tmp` at cold start instead |
//! | `WHISPER_LANGUAGE` | `auto` | a whisper language code to force, or `auto` to detect (detection costs one more encoder pass per note) |
//! | `WHISPER_THREADS` | the CPUs the container has | whisper.cpp threads |
//! | `LIMIT_MESSAGES_PER_MINUTE`, `LIMIT_MESSAGES_PER_DAY`, `LIMIT_AUDIO_MINUTES_PER_DAY`, `LIMITS_EXEMPT` | 0 (off), empty | fair limits per user; see [`Allowance`] |
//! | `SPEECH_LANES` | 2 | voice notes are transcribed in this many lanes of the inbound queue, apart from everything else ([`crate::lanes`]); 0 transcribes them where they arrive |
//! | `INBOUND_MAX_CONCURRENCY` | unset | the inbound queue's `MaximumConcurrency`: the lanes always leave one instance for the rest |
//! | `INBOUND_MAX_RECEIVE_COUNT` | 5 | the inbound queue's `maxReceiveCount`: the last attempt forwards the message with what went wrong, so the user is told |

use std::path::PathBuf;
use std::time::Duration;

use remedios_shared::allowance::Allowance;
use remedios_shared::batch::{DEFAULT_MAX_RECEIVE_COUNT, MAX_RECEIVE_COUNT_RANGE};
use remedios_shared::config::{AwsSettings, ConfigError, Env, Vars};
use remedios_shared::graph::GraphEndpoint;
use remedios_shared::secrets::SecretSource;

use crate::audio::DecodeLimits;
use crate::lanes::{Lanes, MAX_LANES};
use crate::speech::{Language, MAX_AUDIO_DURATION, MAX_THREADS};

/// WhatsApp's own limit for audio and video: 16 MiB.
pub const DEFAULT_MEDIA_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Default number of speech lanes.
pub const DEFAULT_SPEECH_LANES: u32 = 2;
/// Default longest audio transcribed: 15 minutes.
pub const DEFAULT_AUDIO_MAX_SECONDS: u64 = 900;
/// Where a model from a Lambda layer is by default (layers are mounted under `/opt`).
pub const DEFAULT_MODEL_PATH: &str = "/opt/models/ggml-base-q8_0.bin";
/// Where a model fetched from S3 is written: Lambda's writable disk.
pub const MODEL_CACHE_DIR: &str = "/tmp";

/// Where the whisper model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A file on disk (a Lambda layer under `/opt`, or a local path).
    Path(PathBuf),
    /// An object in the bucket, copied to `dir` at cold start (once per container).
    S3 { key: String, dir: PathBuf },
}

/// Everything the transcriber needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub bucket: String,
    pub reply_queue_url: String,
    /// The queue this function consumes, for bringing failed records back soon.
    pub inbound_queue_url: Option<String>,
    pub access_token: SecretSource,
    pub graph: GraphEndpoint,
    pub media_max_bytes: u64,
    pub audio_max: Duration,
    pub model: ModelSource,
    pub language: Language,
    pub threads: usize,
    pub max_receive_count: u32,
    /// Where voice notes are transcribed.
    pub lanes: Lanes,
    /// The fair limits per user.
    pub allowance: Allowance,
    pub aws: AwsSettings,
}

impl Config {
    pub fn from_env<V: Vars>(env: &Env<V>) -> Result<Self, ConfigError> {
        let language = match env.optional("WHISPER_LANGUAGE") {
            None => Language::Auto,
            Some(raw) => Language::parse(&raw)
                .map_err(|e| ConfigError::new("WHISPER_LANGUAGE", format!("is {raw:?}: {e}")))?,
        };
        let model = match env.optional("WHISPER_MODEL_S3_KEY") {
            Some(key) => ModelSource::S3 {
                key,
                dir: PathBuf::from(MODEL_CACHE_DIR),
            },
            None => ModelSource::Path(PathBuf::from(
                env.optional("WHISPER_MODEL_PATH")
                    .unwrap_or_else(|| DEFAULT_MODEL_PATH.to_owned()),
            )),
        };
        let cores = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
            .min(MAX_THREADS);
        let audio_seconds = env.number_in(
            "AUDIO_MAX_SECONDS",
            DEFAULT_AUDIO_MAX_SECONDS,
            10,
            MAX_AUDIO_DURATION.as_secs(),
        )?;
        Ok(Config {
            bucket: env.required("BUCKET_NAME", "the S3 bucket of Remedios")?,
            inbound_queue_url: env.optional("INBOUND_QUEUE_URL"),
            reply_queue_url: env.required(
                "REPLY_QUEUE_URL",
                "the URL of the responder's SQS FIFO queue",
            )?,
            access_token: env.secret(
                "WHATSAPP_ACCESS_TOKEN",
                "the WhatsApp Cloud API access token (a system-user token)",
            )?,
            graph: GraphEndpoint::from_env(env)?,
            media_max_bytes: env.number_in(
                "MEDIA_MAX_BYTES",
                DEFAULT_MEDIA_MAX_BYTES,
                1024,
                100 * 1024 * 1024,
            )?,
            audio_max: Duration::from_secs(audio_seconds),
            model,
            language,
            threads: env.number_in("WHISPER_THREADS", cores, 1, MAX_THREADS)?,
            max_receive_count: env.number_in(
                "INBOUND_MAX_RECEIVE_COUNT",
                DEFAULT_MAX_RECEIVE_COUNT,
                *MAX_RECEIVE_COUNT_RANGE.start(),
                *MAX_RECEIVE_COUNT_RANGE.end(),
            )?,
            lanes: Lanes::new(
                env.number_in("SPEECH_LANES", DEFAULT_SPEECH_LANES, 0, MAX_LANES)?,
                match env.optional("INBOUND_MAX_CONCURRENCY") {
                    None => None,
                    Some(_) => Some(env.number_in("INBOUND_MAX_CONCURRENCY", 2, 2, 1000)?),
                },
            ),
            allowance: Allowance::from_env(env)?,
            aws: AwsSettings::from_env(env)?,
        })
    }

    /// The decoder's bounds for this configuration.
    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_duration: self.audio_max,
            ..DecodeLimits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(extra: &[(&str, &str)]) -> Env<HashMap<String, String>> {
        let mut map: HashMap<String, String> = [
            ("BUCKET_NAME", "remedios"),
            ("REPLY_QUEUE_URL", "http://127.0.0.1:5000/123/reply.fifo"),
            ("WHATSAPP_ACCESS_TOKEN_PARAM", "/remedios/access-token"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            map.insert((*k).to_owned(), (*v).to_owned());
        }
        Env(map)
    }

    #[test]
    fn defaults_fill_what_is_not_set() {
        let config = Config::from_env(&vars(&[])).unwrap();
        assert_eq!(config.media_max_bytes, 16 * 1024 * 1024);
        assert_eq!(config.audio_max, Duration::from_secs(900));
        assert_eq!(config.decode_limits().max_duration, config.audio_max);
        assert_eq!(
            config.model,
            ModelSource::Path("/opt/models/ggml-base-q8_0.bin".into())
        );
        assert_eq!(config.language, Language::Auto);
        assert!(config.threads >= 1);
        assert_eq!(config.graph.version, "v24.0");
        assert!(!config.allowance.is_on(), "no limits unless asked");
        assert_eq!(config.lanes, Lanes::new(2, None));
        assert_eq!(
            config.access_token,
            SecretSource::SsmParameter("/remedios/access-token".into())
        );
    }

    #[test]
    fn an_s3_key_wins_over_the_path_and_settings_are_parsed() {
        let config = Config::from_env(&vars(&[
            ("WHISPER_MODEL_S3_KEY", "models/ggml-tiny.en.bin"),
            ("WHISPER_MODEL_PATH", "/opt/models/ggml-base-q8_0.bin"),
            ("WHISPER_LANGUAGE", "Spanish"),
            ("WHISPER_THREADS", "3"),
            ("MEDIA_MAX_BYTES", "2048"),
            ("AUDIO_MAX_SECONDS", "60"),
            ("SPEECH_LANES", "4"),
            ("INBOUND_MAX_CONCURRENCY", "3"),
        ]))
        .unwrap();
        assert_eq!(
            config.model,
            ModelSource::S3 {
                key: "models/ggml-tiny.en.bin".into(),
                dir: "/tmp".into()
            }
        );
        assert_eq!(config.language, Language::Fixed("es".into()));
        assert_eq!(config.threads, 3);
        assert_eq!(config.media_max_bytes, 2048);
        assert_eq!(config.audio_max, Duration::from_secs(60));
        assert_eq!(config.lanes.count(), 2, "one instance stays free for texts");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("WHISPER_LANGUAGE", "klingon"),
            ("WHISPER_THREADS", "0"),
            ("MEDIA_MAX_BYTES", "lots"),
            ("AUDIO_MAX_SECONDS", "100000"),
            ("GRAPH_API_VERSION", "latest"),
            ("LIMIT_AUDIO_MINUTES_PER_DAY", "2000"),
            ("SPEECH_LANES", "many"),
            ("INBOUND_MAX_CONCURRENCY", "1"),
        ] {
            let err = Config::from_env(&vars(&[(name, value)])).unwrap_err();
            assert_eq!(err.name, name, "{err}");
        }
        let err = Config::from_env(&Env([("BUCKET_NAME", "b")])).unwrap_err();
        assert_eq!(err.name, "REPLY_QUEUE_URL");
    }
}
