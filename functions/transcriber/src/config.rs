//! The transcriber's configuration, read once at cold start.
//!
//! Each variable is declared once below (name, default, range, one line of what it does)
//! and read through its declaration; [`settings`] lists them for the template and README
//! tests and for `remedios up`, and the README's table documents them for deployers.

use std::path::PathBuf;
use std::time::Duration;

use remedios_shared::allowance::Allowance;
use remedios_shared::batch::INBOUND_MAX_RECEIVE_COUNT;
use remedios_shared::config::{
    AwsSettings, BUCKET_NAME, Choice, ConfigError, Env, Flag, Number, Setting, Text, Vars,
};
use remedios_shared::graph::{GraphEndpoint, WHATSAPP_ACCESS_TOKEN};
use remedios_shared::queue::{INBOUND_QUEUE_URL, REPLY_QUEUE_URL};
use remedios_shared::secrets::SecretSource;
use remedios_shared::telemetry;

use crate::audio::DecodeLimits;
use crate::cpu::Wanted;
use crate::lanes::{Lanes, MAX_LANES};
use crate::speech::{Language, MAX_AUDIO_DURATION, MAX_THREADS};

/// WhatsApp's own limit for audio and video: 16 MiB.
pub const DEFAULT_MEDIA_MAX_BYTES: u64 = MEDIA_MAX_BYTES.default;
/// Default number of speech lanes.
pub const DEFAULT_SPEECH_LANES: u32 = SPEECH_LANES.default;
/// Default longest audio transcribed: 15 minutes.
pub const DEFAULT_AUDIO_MAX_SECONDS: u64 = AUDIO_MAX_SECONDS.default;
/// Where a model from a Lambda layer is by default (layers are mounted under `/opt`).
pub const DEFAULT_MODEL_PATH: &str = WHISPER_MODEL_PATH.default;
/// Where a model fetched from S3 is written: Lambda's writable disk.
pub const MODEL_CACHE_DIR: &str = "/tmp";

pub const MEDIA_MAX_BYTES: Number<u64> = Number {
    name: "MEDIA_MAX_BYTES",
    default: 16 * 1024 * 1024,
    min: 1024,
    max: 100 * 1024 * 1024,
    doc: "media larger than this is refused before download",
};
pub const AUDIO_MAX_SECONDS: Number<u64> = Number {
    name: "AUDIO_MAX_SECONDS",
    default: 900,
    min: 10,
    max: MAX_AUDIO_DURATION.as_secs(),
    doc: "longer voice notes get a polite refusal",
};
pub const WHISPER_MODEL_S3_KEY: Text = Text::optional(
    "WHISPER_MODEL_S3_KEY",
    "the model's key in the bucket, fetched to /tmp at cold start (instead of a path)",
);
pub const WHISPER_MODEL_PATH: Choice = Choice {
    name: "WHISPER_MODEL_PATH",
    default: "/opt/models/ggml-base-q8_0.bin",
    doc: "the GGML whisper model on disk (a Lambda layer puts it under /opt)",
};
pub const WHISPER_LANGUAGE: Choice = Choice {
    name: "WHISPER_LANGUAGE",
    default: "auto",
    doc: "`auto` detects the language; or a fixed one (`en`, `es`, ...)",
};
pub const TRANSCRIBER_BUILD: Choice = Choice {
    name: "TRANSCRIBER_BUILD",
    default: "auto",
    doc: "`auto` runs the AVX-512 build of whisper.cpp where the CPU has it; `avx2` keeps the AVX2 build",
};
pub const WHISPER_VAD: Flag = Flag {
    name: "WHISPER_VAD",
    default: true,
    doc: "find the speech before whisper: no words for silence or noise, long pauses skipped",
};
/// Its default is the machine's cores (at most [`MAX_THREADS`]).
pub const WHISPER_THREADS: Number<usize> = Number {
    name: "WHISPER_THREADS",
    default: 1,
    min: 1,
    max: MAX_THREADS,
    doc: "threads for whisper (default: the container's cores)",
};
pub const SPEECH_LANES: Number<u32> = Number {
    name: "SPEECH_LANES",
    default: 2,
    min: 0,
    max: MAX_LANES,
    doc: "most voice notes transcribed at once, in lanes of their own",
};
pub const INBOUND_MAX_CONCURRENCY: Number<u32> = Number {
    name: "INBOUND_MAX_CONCURRENCY",
    default: 2,
    min: 2,
    max: 1000,
    doc: "the inbound queue's concurrency: the lanes leave at least one instance to texts",
};

/// Every variable the transcriber reads.
pub fn settings() -> Vec<Setting> {
    let mut settings = vec![
        BUCKET_NAME.setting(),
        Text {
            required: false,
            ..INBOUND_QUEUE_URL
        }
        .setting(),
        REPLY_QUEUE_URL.setting(),
        WHATSAPP_ACCESS_TOKEN.setting(),
        MEDIA_MAX_BYTES.setting(),
        AUDIO_MAX_SECONDS.setting(),
        WHISPER_MODEL_S3_KEY.setting(),
        WHISPER_MODEL_PATH.setting(),
        WHISPER_LANGUAGE.setting(),
        WHISPER_VAD.setting(),
        TRANSCRIBER_BUILD.setting(),
        Setting {
            default: None,
            ..WHISPER_THREADS.setting()
        },
        INBOUND_MAX_RECEIVE_COUNT.setting().deployed(),
        SPEECH_LANES.setting(),
        Setting {
            default: None,
            ..INBOUND_MAX_CONCURRENCY.setting().deployed()
        },
    ];
    settings.extend(GraphEndpoint::settings(true));
    settings.extend(Allowance::settings());
    settings.extend(AwsSettings::settings());
    settings.extend(telemetry::settings());
    settings
}

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
    /// Voice activity detection before whisper (`speech::Tuning::vad`).
    pub vad: bool,
    /// Which build of whisper.cpp runs where both are deployed (see [`crate::cpu`]); `main`
    /// has already acted on it. An invalid value keeps the AVX2 build, never stops the
    /// function.
    pub build: Wanted,
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
        let raw: String = WHISPER_LANGUAGE.read(env)?;
        let language = Language::parse(&raw)
            .map_err(|e| ConfigError::new(WHISPER_LANGUAGE.name, format!("is {raw:?}: {e}")))?;
        let model = match WHISPER_MODEL_S3_KEY.get(env) {
            Some(key) => ModelSource::S3 {
                key,
                dir: PathBuf::from(MODEL_CACHE_DIR),
            },
            None => ModelSource::Path(WHISPER_MODEL_PATH.read(env)?),
        };
        let cores = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
            .min(MAX_THREADS);
        Ok(Config {
            bucket: BUCKET_NAME.require(env)?,
            inbound_queue_url: INBOUND_QUEUE_URL.get(env),
            reply_queue_url: REPLY_QUEUE_URL.require(env)?,
            access_token: WHATSAPP_ACCESS_TOKEN.read(env)?,
            graph: GraphEndpoint::from_env(env)?,
            media_max_bytes: MEDIA_MAX_BYTES.read(env)?,
            audio_max: Duration::from_secs(AUDIO_MAX_SECONDS.read(env)?),
            model,
            language,
            vad: WHISPER_VAD.read(env)?,
            build: TRANSCRIBER_BUILD.read(env).unwrap_or(Wanted::Avx2),
            threads: WHISPER_THREADS.read_or(env, cores)?,
            max_receive_count: INBOUND_MAX_RECEIVE_COUNT.read(env)?,
            lanes: Lanes::new(
                SPEECH_LANES.read(env)?,
                INBOUND_MAX_CONCURRENCY.read_optional(env)?,
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
        assert!(
            config.vad,
            "voice activity detection is on unless turned off"
        );
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
            ("WHISPER_VAD", "false"),
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
        assert_eq!(config.language, Language::Forced("es".into()));
        assert_eq!(config.threads, 3);
        assert!(!config.vad);
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
