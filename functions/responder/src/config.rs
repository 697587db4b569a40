//! The responder's configuration, read once at cold start.
//!
//! | variable | default | what |
//! |---|---|---|
//! | `BUCKET_NAME` | required | the S3 bucket of Remedios |
//! | `WHATSAPP_ACCESS_TOKEN` or `WHATSAPP_ACCESS_TOKEN_PARAM` | required | the Graph API token, or the name of its SSM SecureString |
//! | `GRAPH_API_BASE_URL`, `GRAPH_API_VERSION` | Meta's | see [`GraphEndpoint`] |
//! | `GPT4ALL_URL` | `http://localhost:4891/v1` | the GPT4All host's OpenAI-compatible API |
//! | `GPT4ALL_MODEL` | the host's first model | the model name, exactly as the host lists it (`GET /v1/models`) |
//! | `GPT4ALL_API_KEY` or `GPT4ALL_API_KEY_PARAM` | unset | a bearer key, when a proxy in front of the host wants one |
//! | `GPT4ALL_MAX_TOKENS` | 400 | answer length bound (always sent: GPT4All defaults to 16) |
//! | `GPT4ALL_CONTEXT_TOKENS` | 2048 | the host's context (GPT4All's "Context Length"): prompts are sized to fit it with the answer |
//! | `GPT4ALL_TEMPERATURE` | 0.7 | sampling temperature |
//! | `GPT4ALL_TOP_P` | 0.95 | nucleus sampling |
//! | `GPT4ALL_TIMEOUT_SECONDS` | 60 | how long one request may take |
//! | `GPT4ALL_RETRIES` | 2 | extra attempts on connection errors and 5xx, with backoff |
//! | `HISTORY_MAX_TURNS`, `HISTORY_MAX_CHARS` | 12, 6000 | how much of the conversation is kept and sent |
//! | `SYSTEM_PROMPT` | [`DEFAULT_SYSTEM_PROMPT`] | the system message |
//! | `ECHO_TRANSCRIPT` | true | start the answer to a voice note with what was heard |
//! | `REPLY_MODE` | `answer` | [`ReplyMode`]: answer with the model, send voice notes' transcripts back, or both |
//! | `SUMMARY` | `off` | [`SummaryMode`]: a short summary from the model before (`on`) or instead of (`only`) a long note's transcript |
//! | `SUMMARY_MIN_SECONDS` | 60 | how long a voice note must be for `SUMMARY` |
//! | `KNOWLEDGE` | off | answer from the business's own material under `knowledge/` ([`crate::knowledge`]) |
//! | `KNOWLEDGE_UNCOVERED` | `answer` | [`Uncovered`]: what a question the material does not cover gets |
//! | `KNOWLEDGE_PASSAGES`, `KNOWLEDGE_MAX_CHARS` | 3, 2400 | how many passages, and how many characters of them, go into the prompt |
//! | `REPLY_QUEUE_URL` | unset | the queue this function consumes: failed records come back after a short backoff instead of its visibility timeout |
//! | `REPLY_MAX_RECEIVE_COUNT` | 5 | the reply queue's `maxReceiveCount`: the last attempt apologises |
//! | `TEXT_<NAME>_<LANG>` | Remedios's own | replaces one fixed text in one language (`TEXT_RESET_DONE_ES`); see [`crate::texts`] |
//! | `NORMALIZE_TEST_RECIPIENTS` | false | drop the mobile digit of `521…`/`549…` numbers (Meta's test-mode allowed list) |

use std::time::Duration;

use remedios_shared::batch::MAX_RECEIVE_COUNT_RANGE;
use remedios_shared::config::{AwsSettings, ConfigError, Env, Vars};
use remedios_shared::graph::GraphEndpoint;
use remedios_shared::secrets::SecretSource;
use url::Url;

use crate::texts::Texts;

/// The GPT4All API server's address when it runs on the same machine.
pub const DEFAULT_GPT4ALL_URL: &str = "http://localhost:4891/v1";
pub const DEFAULT_MAX_TOKENS: u32 = 400;
pub const DEFAULT_TEMPERATURE: f32 = 0.7;
pub const DEFAULT_TOP_P: f32 = 0.95;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_RETRIES: u32 = 2;
pub const DEFAULT_HISTORY_MAX_TURNS: usize = 12;
pub const DEFAULT_HISTORY_MAX_CHARS: usize = 6000;
pub use remedios_shared::batch::DEFAULT_MAX_RECEIVE_COUNT;

/// The system prompt unless `SYSTEM_PROMPT` says otherwise.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are Remedios, a warm and concise assistant \
chatting on WhatsApp. Answer in the language the user writes in. Keep answers short, in \
short paragraphs that read well on a phone, without tables or headings. If you do not know \
something, say so plainly instead of guessing.";

/// How to reach the GPT4All host and what to ask it for.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    /// Base URL ending in `/v1`; requests go to `{base}/chat/completions`.
    pub base_url: Url,
    /// The model name; `None` asks the host for its first model (`GET {base}/models`).
    pub model: Option<String>,
    pub max_tokens: u32,
    /// The host's context in tokens (`GPT4ALL_CONTEXT_TOKENS`): the prompt and the answer
    /// together must fit it, or the host refuses the request.
    pub context_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub timeout: Duration,
    /// Extra attempts after a connection error or a 5xx.
    pub retries: u32,
    /// The first backoff; it doubles with each attempt.
    pub backoff: Duration,
}

/// GPT4All's usual context length (its default "Context Length" setting).
pub const DEFAULT_CONTEXT_TOKENS: u32 = 2048;
/// Characters per token assumed when sizing a prompt: fewer than English (about 4) or
/// Spanish text takes, so an estimate errs on the side of fitting.
pub const CHARS_PER_TOKEN: usize = 3;
/// Tokens the chat template adds around the messages (role markers), generously.
pub const TEMPLATE_TOKENS: u32 = 64;

impl ModelSettings {
    /// How many characters of prompt (system message, history, question) fit the host's
    /// context beside an answer of `max_tokens`.
    pub fn prompt_chars(&self) -> usize {
        let tokens = self
            .context_tokens
            .saturating_sub(self.max_tokens)
            .saturating_sub(TEMPLATE_TOKENS);
        tokens as usize * CHARS_PER_TOKEN
    }

    /// Defaults for a host at `base_url` (tests and the local stack).
    pub fn new(base_url: Url, model: Option<String>) -> Self {
        ModelSettings {
            base_url,
            model,
            max_tokens: DEFAULT_MAX_TOKENS,
            context_tokens: DEFAULT_CONTEXT_TOKENS,
            temperature: DEFAULT_TEMPERATURE,
            top_p: DEFAULT_TOP_P,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            backoff: Duration::from_millis(250),
        }
    }
}

pub const DEFAULT_SUMMARY_MIN: Duration = Duration::from_secs(60);

/// What a voice note is answered with (`REPLY_MODE`). Text is answered by the model in
/// `answer` and `both`, and with a fixed note in `transcript`, which needs no model host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyMode {
    /// The model's answer to what was said (with the transcript quoted first when
    /// `ECHO_TRANSCRIPT` is on).
    #[default]
    Answer,
    /// The transcript itself, and no model call.
    Transcript,
    /// The transcript as its own message(s), then the model's answer.
    Both,
}

impl std::str::FromStr for ReplyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "answer" => Ok(ReplyMode::Answer),
            "transcript" => Ok(ReplyMode::Transcript),
            "both" => Ok(ReplyMode::Both),
            _ => Err("use answer, transcript or both".into()),
        }
    }
}

/// Whether a long voice note's transcript comes with a summary from the model (`SUMMARY`),
/// in the modes that send transcripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SummaryMode {
    #[default]
    Off,
    /// The summary, then the transcript.
    Before,
    /// The summary instead of the transcript.
    Instead,
}

impl std::str::FromStr for SummaryMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "false" | "no" => Ok(SummaryMode::Off),
            "on" | "true" | "yes" | "before" => Ok(SummaryMode::Before),
            "only" | "instead" => Ok(SummaryMode::Instead),
            _ => Err("use off, on (the summary before the transcript) or only".into()),
        }
    }
}

/// What a question gets when the knowledge has no passage for it (`KNOWLEDGE_UNCOVERED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Uncovered {
    /// The model answers as it would without knowledge (the system prompt still scopes it).
    #[default]
    Answer,
    /// A kind fixed text says the material does not cover it; no model call.
    Decline,
}

impl std::str::FromStr for Uncovered {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "answer" => Ok(Uncovered::Answer),
            "decline" => Ok(Uncovered::Decline),
            _ => Err("use answer or decline".into()),
        }
    }
}

pub const DEFAULT_KNOWLEDGE_PASSAGES: usize = 3;
/// About 600 tokens: with the history's 6,000 characters, a 3,000-character question and
/// the answer, it fits a 4,096-token context.
pub const DEFAULT_KNOWLEDGE_MAX_CHARS: usize = 2400;

/// Answers from the business's own material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnowledgeSettings {
    pub enabled: bool,
    pub uncovered: Uncovered,
    pub passages: usize,
    pub max_chars: usize,
}

impl Default for KnowledgeSettings {
    fn default() -> Self {
        KnowledgeSettings {
            enabled: false,
            uncovered: Uncovered::Answer,
            passages: DEFAULT_KNOWLEDGE_PASSAGES,
            max_chars: DEFAULT_KNOWLEDGE_MAX_CHARS,
        }
    }
}

/// What the responder does with a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    pub system_prompt: String,
    pub history_max_turns: usize,
    pub history_max_chars: usize,
    pub echo_transcript: bool,
    pub reply_mode: ReplyMode,
    pub summary: SummaryMode,
    /// Voice notes at least this long get a summary when `summary` is not off.
    pub summary_min: Duration,
    pub max_receive_count: u32,
    pub normalize_test_recipients: bool,
    /// Answers from the business's own material.
    pub knowledge: KnowledgeSettings,
    /// The fixed texts, with the deployer's overrides.
    pub texts: Texts,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            system_prompt: DEFAULT_SYSTEM_PROMPT.to_owned(),
            history_max_turns: DEFAULT_HISTORY_MAX_TURNS,
            history_max_chars: DEFAULT_HISTORY_MAX_CHARS,
            echo_transcript: true,
            reply_mode: ReplyMode::Answer,
            summary: SummaryMode::Off,
            summary_min: DEFAULT_SUMMARY_MIN,
            max_receive_count: DEFAULT_MAX_RECEIVE_COUNT,
            normalize_test_recipients: false,
            knowledge: KnowledgeSettings::default(),
            texts: Texts::default(),
        }
    }
}

/// Everything the responder needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub bucket: String,
    /// The queue this function consumes, for bringing failed records back soon.
    pub reply_queue_url: Option<String>,
    pub access_token: SecretSource,
    pub graph: GraphEndpoint,
    pub model: ModelSettings,
    pub model_api_key: Option<SecretSource>,
    pub behaviour: Behaviour,
    pub aws: AwsSettings,
}

impl Config {
    pub fn from_env<V: Vars>(env: &Env<V>) -> Result<Self, ConfigError> {
        let model_api_key = if env.optional("GPT4ALL_API_KEY").is_some()
            || env.optional("GPT4ALL_API_KEY_PARAM").is_some()
        {
            Some(env.secret(
                "GPT4ALL_API_KEY",
                "the bearer key of the GPT4All host's proxy",
            )?)
        } else {
            None
        };
        let temperature = env.parse_or("GPT4ALL_TEMPERATURE", DEFAULT_TEMPERATURE)?;
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ConfigError::new(
                "GPT4ALL_TEMPERATURE",
                format!("is {temperature}, outside the allowed range 0 to 2"),
            ));
        }
        let top_p = env.parse_or("GPT4ALL_TOP_P", DEFAULT_TOP_P)?;
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ConfigError::new(
                "GPT4ALL_TOP_P",
                format!("is {top_p}, outside the allowed range 0 (excluded) to 1"),
            ));
        }
        let timeout = env.seconds("GPT4ALL_TIMEOUT_SECONDS", DEFAULT_TIMEOUT)?;
        if timeout.is_zero() {
            return Err(ConfigError::new(
                "GPT4ALL_TIMEOUT_SECONDS",
                "is 0; give the seconds one request to the GPT4All host may take",
            ));
        }
        let max_tokens = env.number_in("GPT4ALL_MAX_TOKENS", DEFAULT_MAX_TOKENS, 16, 8192)?;
        let context_tokens = env.number_in(
            "GPT4ALL_CONTEXT_TOKENS",
            DEFAULT_CONTEXT_TOKENS,
            512,
            1_048_576,
        )?;
        let model = ModelSettings {
            base_url: env.url("GPT4ALL_URL", Some(DEFAULT_GPT4ALL_URL))?,
            model: env.optional("GPT4ALL_MODEL"),
            max_tokens,
            context_tokens,
            temperature,
            top_p,
            timeout,
            retries: env.number_in("GPT4ALL_RETRIES", DEFAULT_RETRIES, 0, 10)?,
            backoff: Duration::from_millis(500),
        };
        let behaviour = Behaviour {
            system_prompt: env
                .optional("SYSTEM_PROMPT")
                .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_owned()),
            history_max_turns: env.number_in(
                "HISTORY_MAX_TURNS",
                DEFAULT_HISTORY_MAX_TURNS,
                0,
                200,
            )?,
            history_max_chars: env.number_in(
                "HISTORY_MAX_CHARS",
                DEFAULT_HISTORY_MAX_CHARS,
                0,
                200_000,
            )?,
            echo_transcript: env.flag("ECHO_TRANSCRIPT", true)?,
            reply_mode: env.parse_or("REPLY_MODE", ReplyMode::Answer)?,
            summary: env.parse_or("SUMMARY", SummaryMode::Off)?,
            summary_min: Duration::from_secs(env.number_in(
                "SUMMARY_MIN_SECONDS",
                DEFAULT_SUMMARY_MIN.as_secs(),
                0,
                3600,
            )?),
            max_receive_count: env.number_in(
                "REPLY_MAX_RECEIVE_COUNT",
                DEFAULT_MAX_RECEIVE_COUNT,
                *MAX_RECEIVE_COUNT_RANGE.start(),
                *MAX_RECEIVE_COUNT_RANGE.end(),
            )?,
            normalize_test_recipients: env.flag("NORMALIZE_TEST_RECIPIENTS", false)?,
            knowledge: KnowledgeSettings {
                enabled: env.flag("KNOWLEDGE", false)?,
                uncovered: env.parse_or("KNOWLEDGE_UNCOVERED", Uncovered::Answer)?,
                passages: env.number_in("KNOWLEDGE_PASSAGES", DEFAULT_KNOWLEDGE_PASSAGES, 1, 10)?,
                max_chars: env.number_in(
                    "KNOWLEDGE_MAX_CHARS",
                    DEFAULT_KNOWLEDGE_MAX_CHARS,
                    200,
                    20_000,
                )?,
            },
            texts: Texts::from_env(env)?,
        };
        Ok(Config {
            bucket: env.required("BUCKET_NAME", "the S3 bucket of Remedios")?,
            reply_queue_url: env.optional("REPLY_QUEUE_URL"),
            access_token: env.secret(
                "WHATSAPP_ACCESS_TOKEN",
                "the WhatsApp Cloud API access token (a system-user token)",
            )?,
            graph: GraphEndpoint::from_env(env)?,
            model,
            model_api_key,
            behaviour,
            aws: AwsSettings::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: [(&str, &str); 2] = [
        ("BUCKET_NAME", "remedios"),
        ("WHATSAPP_ACCESS_TOKEN_PARAM", "/remedios/token"),
    ];

    fn with(extra: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        BASE.iter()
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_fill_what_is_not_set() {
        let config = Config::from_env(&Env(BASE)).unwrap();
        assert_eq!(config.model.base_url.as_str(), "http://localhost:4891/v1");
        assert_eq!(config.model.max_tokens, 400);
        assert_eq!(config.model.timeout, Duration::from_secs(60));
        assert!(config.model_api_key.is_none());
        assert_eq!(config.behaviour, Behaviour::default());
        assert!(config.behaviour.system_prompt.contains("Remedios"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("GPT4ALL_URL", "localhost:4891"),
            ("GPT4ALL_MAX_TOKENS", "4"),
            ("GPT4ALL_TEMPERATURE", "3"),
            ("GPT4ALL_TOP_P", "0"),
            ("GPT4ALL_TIMEOUT_SECONDS", "0"),
            ("ECHO_TRANSCRIPT", "perhaps"),
            ("REPLY_MODE", "chat"),
            ("SUMMARY", "sometimes"),
            ("SUMMARY_MIN_SECONDS", "soon"),
            ("REPLY_MAX_RECEIVE_COUNT", "0"),
        ] {
            let err = Config::from_env(&Env(with(&[(name, value)]))).unwrap_err();
            assert_eq!(err.name, name, "{err}");
        }
    }

    #[test]
    fn reply_modes_and_summaries_are_read() {
        let config = Config::from_env(&Env(with(&[
            ("REPLY_MODE", "Transcript"),
            ("SUMMARY", "only"),
            ("SUMMARY_MIN_SECONDS", "30"),
        ])))
        .unwrap();
        assert_eq!(config.behaviour.reply_mode, ReplyMode::Transcript);
        assert_eq!(config.behaviour.summary, SummaryMode::Instead);
        assert_eq!(config.behaviour.summary_min, Duration::from_secs(30));
        let config =
            Config::from_env(&Env(with(&[("REPLY_MODE", "both"), ("SUMMARY", "on")]))).unwrap();
        assert_eq!(config.behaviour.reply_mode, ReplyMode::Both);
        assert_eq!(config.behaviour.summary, SummaryMode::Before);
    }

    #[test]
    fn the_model_key_is_optional_but_never_doubly_given() {
        let config = Config::from_env(&Env(with(&[("GPT4ALL_API_KEY_PARAM", "/k")]))).unwrap();
        assert_eq!(
            config.model_api_key,
            Some(SecretSource::SsmParameter("/k".into()))
        );
        let err = Config::from_env(&Env(with(&[
            ("GPT4ALL_API_KEY", "a"),
            ("GPT4ALL_API_KEY_PARAM", "/k"),
        ])))
        .unwrap_err();
        assert_eq!(err.name, "GPT4ALL_API_KEY");
    }
}
