//! The responder's configuration, read once at cold start.
//!
//! Each variable is declared once below (name, default, range, one line of what it does)
//! and read through its declaration; [`settings`] lists them for the template and README
//! tests and for `remedios up`, and the README's table documents them for deployers.

use std::time::Duration;

use remedios_shared::batch::REPLY_MAX_RECEIVE_COUNT;
use remedios_shared::config::{
    AwsSettings, BUCKET_NAME, Choice, ConfigError, Env, Flag, Number, Origin, Seconds, SecretVar,
    Setting, Text, UrlVar, Vars,
};
use remedios_shared::graph::{GraphEndpoint, WHATSAPP_ACCESS_TOKEN};
use remedios_shared::queue::REPLY_QUEUE_URL;
use remedios_shared::secrets::SecretSource;
use remedios_shared::telemetry;
use url::Url;

use crate::handoff::{self, HandoffSettings};
use crate::texts::{self, Texts};
use crate::voice::settings::{self as voice, VoiceSettings};

/// The GPT4All API server's address when it runs on the same machine.
pub const DEFAULT_GPT4ALL_URL: &str = "http://localhost:4891/v1";
pub const DEFAULT_MAX_TOKENS: u32 = GPT4ALL_MAX_TOKENS.default;
pub const DEFAULT_TEMPERATURE: f32 = GPT4ALL_TEMPERATURE.default;
pub const DEFAULT_TOP_P: f32 = GPT4ALL_TOP_P.default;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(GPT4ALL_TIMEOUT_SECONDS.default);
pub const DEFAULT_RETRIES: u32 = GPT4ALL_RETRIES.default;
pub const DEFAULT_HISTORY_MAX_TURNS: usize = HISTORY_MAX_TURNS.default;
pub const DEFAULT_HISTORY_MAX_CHARS: usize = HISTORY_MAX_CHARS.default;
pub use remedios_shared::batch::DEFAULT_MAX_RECEIVE_COUNT;

pub const GPT4ALL_URL: UrlVar = UrlVar {
    name: "GPT4ALL_URL",
    default: Some(DEFAULT_GPT4ALL_URL),
    doc: "the GPT4All host's OpenAI-compatible API",
    origin: Origin::Operator,
};
pub const GPT4ALL_MODEL: Text = Text::optional(
    "GPT4ALL_MODEL",
    "the model name, exactly as the host lists it (default: the host's first model)",
);
pub const GPT4ALL_API_KEY: SecretVar = SecretVar {
    name: "GPT4ALL_API_KEY",
    doc: "the bearer key of the GPT4All host's proxy",
    required: false,
};
pub const GPT4ALL_KIND: Choice = Choice {
    name: "GPT4ALL_KIND",
    default: "gpt4all",
    doc: "what the host runs: gpt4all, llamacpp (asked to keep its prompt cache), ollama or openai",
};
pub const GPT4ALL_CONCURRENCY: Number<u32> = Number {
    name: "GPT4ALL_CONCURRENCY",
    default: 1,
    min: 1,
    max: 256,
    doc: "requests the host serves at once (GPT4All: 1; llama.cpp: its --parallel)",
};
pub const MODEL_HOSTS: Text = Text::optional(
    "MODEL_HOSTS",
    "more model hosts after the first: `URL, model=…, context=…, concurrency=…, kind=…, key=/param`, `;` between hosts",
);
/// Where the API keys of the hosts in `MODEL_HOSTS` are kept in SSM: the template lets
/// the responder read parameters under this path and no other.
pub const MODEL_HOST_KEYS_PATH: &str = "/remedios/model-hosts/";
pub const GPT4ALL_MAX_TOKENS: Number<u32> = Number {
    name: "GPT4ALL_MAX_TOKENS",
    default: 400,
    min: 16,
    max: 8192,
    doc: "answer length bound (always sent: GPT4All defaults to 16)",
};
pub const GPT4ALL_CONTEXT_TOKENS: Number<u32> = Number {
    name: "GPT4ALL_CONTEXT_TOKENS",
    default: DEFAULT_CONTEXT_TOKENS,
    min: 512,
    max: 1_048_576,
    doc: "the host's context: prompts are sized to fit it with the answer",
};
pub const GPT4ALL_TEMPERATURE: Number<f32> = Number {
    name: "GPT4ALL_TEMPERATURE",
    default: 0.7,
    min: 0.0,
    max: 2.0,
    doc: "sampling temperature",
};
/// 0 itself is refused (no token could be sampled).
pub const GPT4ALL_TOP_P: Number<f32> = Number {
    name: "GPT4ALL_TOP_P",
    default: 0.95,
    min: 0.0,
    max: 1.0,
    doc: "nucleus sampling (more than 0)",
};
pub const GPT4ALL_TIMEOUT_SECONDS: Seconds = Seconds {
    name: "GPT4ALL_TIMEOUT_SECONDS",
    default: 60,
    doc: "how long one request to the GPT4All host may take",
};
pub const GPT4ALL_RETRIES: Number<u32> = Number {
    name: "GPT4ALL_RETRIES",
    default: 2,
    min: 0,
    max: 10,
    doc: "extra attempts on connection errors and 5xx, with backoff",
};
pub const HISTORY_MAX_TURNS: Number<usize> = Number {
    name: "HISTORY_MAX_TURNS",
    default: 12,
    min: 0,
    max: 200,
    doc: "turns of the conversation kept and sent",
};
pub const HISTORY_MAX_CHARS: Number<usize> = Number {
    name: "HISTORY_MAX_CHARS",
    default: 6000,
    min: 0,
    max: 200_000,
    doc: "characters of the conversation kept and sent",
};
pub const SYSTEM_PROMPT: Text = Text::optional(
    "SYSTEM_PROMPT",
    "the system message (default: a short assistant prompt)",
);
pub const ECHO_TRANSCRIPT: Flag = Flag {
    name: "ECHO_TRANSCRIPT",
    default: true,
    doc: "start the answer to a voice note with what was heard",
};
pub const REENGAGEMENT_TEMPLATE: Text = Text::optional(
    "REENGAGEMENT_TEMPLATE",
    "an approved template (name:language,...) sent when a reply is past the 24-hour window",
);
pub const COMBINE_MESSAGES: Flag = Flag {
    name: "COMBINE_MESSAGES",
    default: true,
    doc: "send a transcript, its summary and the answer in as few messages as fit",
};
pub const REPLY_MODE: Choice = Choice {
    name: "REPLY_MODE",
    default: "answer",
    doc: "what a voice note gets: answer, transcript or both",
};
pub const SUMMARY: Choice = Choice {
    name: "SUMMARY",
    default: "off",
    doc: "a summary before (on) or instead of (only) a long note's transcript",
};
pub const SUMMARY_MIN_SECONDS: Number<u64> = Number {
    name: "SUMMARY_MIN_SECONDS",
    default: 60,
    min: 0,
    max: 3600,
    doc: "how long a voice note must be for SUMMARY",
};
pub const KNOWLEDGE: Flag = Flag {
    name: "KNOWLEDGE",
    default: false,
    doc: "answer from the business's own material under knowledge/",
};
pub const KNOWLEDGE_UNCOVERED: Choice = Choice {
    name: "KNOWLEDGE_UNCOVERED",
    default: "answer",
    doc: "what a question the material does not cover gets: answer or decline",
};
pub const KNOWLEDGE_PASSAGES: Number<usize> = Number {
    name: "KNOWLEDGE_PASSAGES",
    default: 3,
    min: 1,
    max: 10,
    doc: "passages of the material put into the prompt at most",
};
/// About 600 tokens: with the history's 6,000 characters, a 3,000-character question and
/// the answer, it fits a 4,096-token context.
pub const KNOWLEDGE_MAX_CHARS: Number<usize> = Number {
    name: "KNOWLEDGE_MAX_CHARS",
    default: 2400,
    min: 200,
    max: 20_000,
    doc: "characters of passages in the prompt at most",
};
pub const NORMALIZE_TEST_RECIPIENTS: Flag = Flag {
    name: "NORMALIZE_TEST_RECIPIENTS",
    default: false,
    doc: "drop the mobile digit of 521…/549… numbers (Meta's test-mode allowed list)",
};

/// Every variable the responder reads.
pub fn settings() -> Vec<Setting> {
    let mut settings = vec![
        BUCKET_NAME.setting(),
        Text {
            required: false,
            ..REPLY_QUEUE_URL
        }
        .setting(),
        WHATSAPP_ACCESS_TOKEN.setting(),
        GPT4ALL_URL.setting(),
        GPT4ALL_MODEL.setting(),
        GPT4ALL_API_KEY.setting(),
        GPT4ALL_KIND.setting(),
        GPT4ALL_CONCURRENCY.setting(),
        MODEL_HOSTS.setting(),
        GPT4ALL_MAX_TOKENS.setting(),
        GPT4ALL_CONTEXT_TOKENS.setting(),
        GPT4ALL_TEMPERATURE.setting(),
        GPT4ALL_TOP_P.setting(),
        GPT4ALL_TIMEOUT_SECONDS.setting(),
        GPT4ALL_RETRIES.setting(),
        HISTORY_MAX_TURNS.setting(),
        HISTORY_MAX_CHARS.setting(),
        SYSTEM_PROMPT.setting(),
        ECHO_TRANSCRIPT.setting(),
        COMBINE_MESSAGES.setting(),
        REENGAGEMENT_TEMPLATE.setting(),
        REPLY_MODE.setting(),
        SUMMARY.setting(),
        SUMMARY_MIN_SECONDS.setting(),
        KNOWLEDGE.setting(),
        KNOWLEDGE_UNCOVERED.setting(),
        KNOWLEDGE_PASSAGES.setting(),
        KNOWLEDGE_MAX_CHARS.setting(),
        REPLY_MAX_RECEIVE_COUNT.setting().deployed(),
        texts::TEXT_OVERRIDES.setting(),
        NORMALIZE_TEST_RECIPIENTS.setting(),
    ];
    settings.extend(handoff::settings());
    settings.extend(voice::settings());
    settings.extend(GraphEndpoint::settings(false));
    settings.extend(AwsSettings::settings());
    settings.extend(telemetry::settings());
    settings
}

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
    /// What the host runs: what it accepts beyond GPT4All's keys.
    pub kind: HostKind,
    /// Requests it serves at once: its share of the users.
    pub concurrency: u32,
}

/// What a model host runs, for what it accepts beyond GPT4All's strict keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKind {
    /// GPT4All's API server: refuses any key it does not know.
    #[default]
    Gpt4All,
    /// llama.cpp's server (or Paddler in front of some): asked to keep the prompt's state
    /// for the next request (`cache_prompt`).
    LlamaCpp,
    /// Ollama: keeps its cache on its own; sent GPT4All's keys only.
    Ollama,
    /// Any other OpenAI-compatible server (LiteLLM, vLLM): sent GPT4All's keys only.
    OpenAi,
}

impl std::str::FromStr for HostKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gpt4all" => Ok(HostKind::Gpt4All),
            "llamacpp" | "llama.cpp" => Ok(HostKind::LlamaCpp),
            "ollama" => Ok(HostKind::Ollama),
            "openai" => Ok(HostKind::OpenAi),
            _ => Err("use gpt4all, llamacpp, ollama or openai".into()),
        }
    }
}

/// One more host of `MODEL_HOSTS`: what differs from the first host. The model and the
/// context default to the first host's (`GPT4ALL_MODEL`, `GPT4ALL_CONTEXT_TOKENS`); the
/// kind to `gpt4all` (the strictest) and the concurrency to 1; the first host's key is
/// never sent to another host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    pub base_url: Url,
    pub model: Option<String>,
    pub context_tokens: Option<u32>,
    pub concurrency: Option<u32>,
    pub kind: Option<HostKind>,
    /// The SSM parameter holding its API key, under [`MODEL_HOST_KEYS_PATH`].
    pub key: Option<String>,
}

impl std::str::FromStr for HostSpec {
    type Err = String;
    /// `URL, model=NAME, context=N, concurrency=N, kind=K, key=/remedios/model-hosts/NAME`
    fn from_str(s: &str) -> Result<Self, String> {
        let mut fields = s.split(',').map(str::trim);
        let url = fields.next().unwrap_or_default();
        let base_url: Url = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL ({e})"))?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(format!("{url:?} is not an http(s) URL"));
        }
        let mut spec = HostSpec {
            base_url,
            model: None,
            context_tokens: None,
            concurrency: None,
            kind: None,
            key: None,
        };
        let number = |name: &str, v: &str, min: u32, max: u32| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| format!("{name}={v} is not a number from {min} to {max}"))
        };
        for field in fields.filter(|f| !f.is_empty()) {
            let (name, value) = field
                .split_once('=')
                .map(|(n, v)| (n.trim(), v.trim()))
                .ok_or_else(|| format!("{field:?} is not name=value"))?;
            match name {
                "model" if !value.is_empty() => spec.model = Some(value.to_owned()),
                "context" => {
                    spec.context_tokens = Some(number(
                        name,
                        value,
                        GPT4ALL_CONTEXT_TOKENS.min,
                        GPT4ALL_CONTEXT_TOKENS.max,
                    )?)
                }
                "concurrency" => {
                    spec.concurrency = Some(number(
                        name,
                        value,
                        GPT4ALL_CONCURRENCY.min,
                        GPT4ALL_CONCURRENCY.max,
                    )?)
                }
                "kind" => spec.kind = Some(value.parse()?),
                "key" => {
                    let rest = value.strip_prefix(MODEL_HOST_KEYS_PATH).unwrap_or("");
                    if rest.is_empty()
                        || !rest
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
                    {
                        return Err(format!(
                            "key={value} must name an SSM parameter under {MODEL_HOST_KEYS_PATH} (the only path the responder may read)"
                        ));
                    }
                    spec.key = Some(value.to_owned());
                }
                _ => {
                    return Err(format!(
                        "{field:?}: use model=, context=, concurrency=, kind= or key="
                    ));
                }
            }
        }
        Ok(spec)
    }
}

/// The hosts after the first, as `MODEL_HOSTS` lists them (`;` or new lines between them).
pub fn parse_hosts(list: &str) -> Result<Vec<HostSpec>, String> {
    list.split([';', '\n'])
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .enumerate()
        .map(|(i, h)| h.parse().map_err(|e| format!("host {}: {e}", i + 2)))
        .collect()
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
            kind: HostKind::Gpt4All,
            concurrency: 1,
        }
    }
}

pub const DEFAULT_SUMMARY_MIN: Duration = Duration::from_secs(SUMMARY_MIN_SECONDS.default);

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

/// An approved message template (`REENGAGEMENT_TEMPLATE`, `name:language[,language...]`,
/// for example `answer_waiting:en_US,es`): what may still reach a user whose reply is
/// past WhatsApp's 24-hour window, in each language it was approved in. It takes no
/// parameters (the answer itself cannot go out); it tells the user to write again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReengagementTemplate {
    pub name: String,
    /// Language codes as Meta names them (`en_US`, `es`), the first being the fallback.
    pub languages: Vec<String>,
}

impl ReengagementTemplate {
    /// The language code for a user speaking `lang`: the first of the template's
    /// languages in it (`es` or `es_MX` for Spanish), else the first.
    pub fn language_for(&self, lang: texts::Lang) -> &str {
        self.languages
            .iter()
            .find(|l| texts::Lang::from_code(l) == Some(lang))
            .or_else(|| self.languages.first())
            .map_or("en_US", String::as_str)
    }
}

impl std::str::FromStr for ReengagementTemplate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "use name:language[,language...], for example answer_waiting:en_US,es";
        let (name, languages) = s.trim().split_once(':').ok_or(usage)?;
        let languages: Vec<String> = languages.split(',').map(|l| l.trim().to_owned()).collect();
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let language_ok =
            |l: &String| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphabetic() || c == '_');
        if !name_ok {
            return Err(format!(
                "template names are lowercase letters, digits and underscores; {usage}"
            ));
        }
        if !languages.iter().all(language_ok) {
            return Err(format!("a language is a code such as en_US or es; {usage}"));
        }
        Ok(ReengagementTemplate {
            name: name.to_owned(),
            languages,
        })
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

pub const DEFAULT_KNOWLEDGE_PASSAGES: usize = KNOWLEDGE_PASSAGES.default;
pub const DEFAULT_KNOWLEDGE_MAX_CHARS: usize = KNOWLEDGE_MAX_CHARS.default;

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
    /// A transcript, its summary and the answer share messages while they fit in
    /// WhatsApp's 4,096 characters (each message is billed).
    pub combine_messages: bool,
    /// What a user gets when their reply is refused as past the 24-hour window (131047):
    /// nothing, or this template.
    pub reengagement: Option<ReengagementTemplate>,
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
    /// Handing conversations to people.
    pub handoff: HandoffSettings,
    /// Answers as voice notes.
    pub voice: VoiceSettings,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            system_prompt: DEFAULT_SYSTEM_PROMPT.to_owned(),
            history_max_turns: DEFAULT_HISTORY_MAX_TURNS,
            history_max_chars: DEFAULT_HISTORY_MAX_CHARS,
            echo_transcript: true,
            combine_messages: true,
            reengagement: None,
            reply_mode: ReplyMode::Answer,
            summary: SummaryMode::Off,
            summary_min: DEFAULT_SUMMARY_MIN,
            max_receive_count: DEFAULT_MAX_RECEIVE_COUNT,
            normalize_test_recipients: false,
            knowledge: KnowledgeSettings::default(),
            texts: Texts::default(),
            handoff: HandoffSettings::default(),
            voice: VoiceSettings::default(),
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
    /// The first model host, and what every host shares (the answer, sampling, timeouts).
    pub model: ModelSettings,
    pub model_api_key: Option<SecretSource>,
    /// The hosts after the first (`MODEL_HOSTS`).
    pub more_hosts: Vec<HostSpec>,
    pub behaviour: Behaviour,
    pub aws: AwsSettings,
}

impl Config {
    pub fn from_env<V: Vars>(env: &Env<V>) -> Result<Self, ConfigError> {
        let top_p = GPT4ALL_TOP_P.read(env)?;
        if top_p <= 0.0 {
            return Err(ConfigError::new(
                GPT4ALL_TOP_P.name,
                format!("is {top_p}, outside the allowed range 0 (excluded) to 1"),
            ));
        }
        let model = ModelSettings {
            base_url: GPT4ALL_URL.read(env)?,
            model: GPT4ALL_MODEL.get(env),
            max_tokens: GPT4ALL_MAX_TOKENS.read(env)?,
            context_tokens: GPT4ALL_CONTEXT_TOKENS.read(env)?,
            temperature: GPT4ALL_TEMPERATURE.read(env)?,
            top_p,
            timeout: GPT4ALL_TIMEOUT_SECONDS.read(env)?,
            retries: GPT4ALL_RETRIES.read(env)?,
            backoff: Duration::from_millis(500),
            kind: GPT4ALL_KIND.read(env)?,
            concurrency: GPT4ALL_CONCURRENCY.read(env)?,
        };
        let more_hosts = MODEL_HOSTS
            .get(env)
            .map(|list| parse_hosts(&list).map_err(|e| ConfigError::new(MODEL_HOSTS.name, e)))
            .transpose()?
            .unwrap_or_default();
        let behaviour = Behaviour {
            system_prompt: SYSTEM_PROMPT
                .get(env)
                .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_owned()),
            history_max_turns: HISTORY_MAX_TURNS.read(env)?,
            history_max_chars: HISTORY_MAX_CHARS.read(env)?,
            echo_transcript: ECHO_TRANSCRIPT.read(env)?,
            combine_messages: COMBINE_MESSAGES.read(env)?,
            reengagement: REENGAGEMENT_TEMPLATE
                .get(env)
                .map(|v| {
                    v.parse()
                        .map_err(|e| ConfigError::new(REENGAGEMENT_TEMPLATE.name, e))
                })
                .transpose()?,
            reply_mode: REPLY_MODE.read(env)?,
            summary: SUMMARY.read(env)?,
            summary_min: Duration::from_secs(SUMMARY_MIN_SECONDS.read(env)?),
            max_receive_count: REPLY_MAX_RECEIVE_COUNT.read(env)?,
            normalize_test_recipients: NORMALIZE_TEST_RECIPIENTS.read(env)?,
            knowledge: KnowledgeSettings {
                enabled: KNOWLEDGE.read(env)?,
                uncovered: KNOWLEDGE_UNCOVERED.read(env)?,
                passages: KNOWLEDGE_PASSAGES.read(env)?,
                max_chars: KNOWLEDGE_MAX_CHARS.read(env)?,
            },
            texts: Texts::from_env(env)?,
            handoff: HandoffSettings::from_env(env)?,
            voice: VoiceSettings::from_env(env)?,
        };
        Ok(Config {
            bucket: BUCKET_NAME.require(env)?,
            reply_queue_url: REPLY_QUEUE_URL.get(env),
            access_token: WHATSAPP_ACCESS_TOKEN.read(env)?,
            graph: GraphEndpoint::from_env(env)?,
            model,
            model_api_key: GPT4ALL_API_KEY.read_optional(env)?,
            more_hosts,
            behaviour,
            aws: AwsSettings::from_env(env)?,
        })
    }
}

impl Config {
    /// Every model host in order, with where its key comes from: the first from the
    /// `GPT4ALL_*` settings, then those of `MODEL_HOSTS`.
    pub fn hosts(&self) -> Vec<(ModelSettings, Option<SecretSource>)> {
        let first = (self.model.clone(), self.model_api_key.clone());
        let more = self.more_hosts.iter().map(|spec| {
            let settings = ModelSettings {
                base_url: spec.base_url.clone(),
                model: spec.model.clone().or_else(|| self.model.model.clone()),
                context_tokens: spec.context_tokens.unwrap_or(self.model.context_tokens),
                kind: spec.kind.unwrap_or_default(),
                concurrency: spec.concurrency.unwrap_or(1),
                ..self.model.clone()
            };
            (settings, spec.key.clone().map(SecretSource::SsmParameter))
        });
        std::iter::once(first).chain(more).collect()
    }

    /// Requests the hosts serve at once, all together.
    pub fn hosts_concurrency(&self) -> u32 {
        self.hosts().iter().map(|(s, _)| s.concurrency).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reengagement_template_names_its_languages() {
        let template: ReengagementTemplate = "answer_waiting:en_US, es".parse().expect("valid");
        assert_eq!(template.name, "answer_waiting");
        assert_eq!(template.language_for(texts::Lang::Es), "es");
        assert_eq!(template.language_for(texts::Lang::En), "en_US");
        let english_only: ReengagementTemplate = "back:en".parse().expect("valid");
        assert_eq!(
            english_only.language_for(texts::Lang::Es),
            "en",
            "the first"
        );
        for bad in [
            "answer_waiting",
            "Answer:en",
            "a b:en",
            "x:",
            "x:en,",
            "x:en-US",
        ] {
            assert!(bad.parse::<ReengagementTemplate>().is_err(), "{bad}");
        }
    }

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
    fn more_hosts_are_listed_after_the_first_and_share_its_answer_settings() {
        let config = Config::from_env(&Env(with(&[
            ("GPT4ALL_URL", "https://a.example.net/v1"),
            ("GPT4ALL_MODEL", "Llama 3.2 3B Instruct"),
            ("GPT4ALL_API_KEY_PARAM", "/remedios/gpt4all-key"),
            ("GPT4ALL_MAX_TOKENS", "300"),
            (
                "MODEL_HOSTS",
                "https://b.example.net/v1, kind=llamacpp, concurrency=4, context=8192, key=/remedios/model-hosts/b;\n http://10.0.0.9:11434/v1 , model=llama3.2:3b, kind=Ollama ;",
            ),
        ])))
        .unwrap();
        let hosts = config.hosts();
        assert_eq!(hosts.len(), 3);
        let (b, b_key) = &hosts[1];
        assert_eq!(b.base_url.as_str(), "https://b.example.net/v1");
        assert_eq!(
            b.model.as_deref(),
            Some("Llama 3.2 3B Instruct"),
            "the first's"
        );
        assert_eq!(
            (b.kind, b.concurrency, b.context_tokens),
            (HostKind::LlamaCpp, 4, 8192)
        );
        assert_eq!(b.max_tokens, 300, "shared");
        assert_eq!(
            b_key,
            &Some(SecretSource::SsmParameter("/remedios/model-hosts/b".into()))
        );
        let (c, c_key) = &hosts[2];
        assert_eq!(c.model.as_deref(), Some("llama3.2:3b"));
        assert_eq!(
            (c.kind, c.concurrency, c.context_tokens),
            (HostKind::Ollama, 1, 2048)
        );
        assert_eq!(c_key, &None, "the first host's key goes to no other host");
        assert_eq!(config.hosts_concurrency(), 6);

        for bad in [
            "b.example.net/v1",
            "ftp://b.example.net/v1",
            "https://b/v1, concurrency=0",
            "https://b/v1, context=12",
            "https://b/v1, kind=vllm",
            "https://b/v1, key=/other/path",
            "https://b/v1, key=/remedios/model-hosts/",
            "https://b/v1, timeout=3",
            "https://b/v1, llamacpp",
        ] {
            let err = Config::from_env(&Env(with(&[("MODEL_HOSTS", bad)]))).unwrap_err();
            assert_eq!(err.name, "MODEL_HOSTS", "{bad}: {err}");
            assert!(err.to_string().contains("host 2"), "{err}");
        }
        assert_eq!(Config::from_env(&Env(BASE)).unwrap().hosts().len(), 1);
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
