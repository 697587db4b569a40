//! The GPT4All host, through its OpenAI-compatible API (`POST {base}/chat/completions`).
//!
//! GPT4All's API server is strict, and the same client must also work with llama.cpp's
//! server and Ollama, so a request carries exactly `model`, `messages` (roles
//! `system`/`user`/`assistant`, string content), `max_tokens` (always: GPT4All's default is
//! 16 tokens), `temperature` and `top_p`. Never `stream`, `stop`, `seed`, `tools`,
//! penalties or any other key: GPT4All answers 400 to them.
//!
//! A host that runs llama.cpp's server (`kind=llamacpp`) is also asked to keep the prompt
//! in its cache (`cache_prompt`), which only it accepts.
//!
//! This is one host and one attempt, bounded by the time it is given; [`crate::hosts`]
//! chooses the host, retries and fails over within the job's budget.

use std::time::{Duration, Instant};

use remedios_shared::secrets::Secret;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::OnceCell;
use tracing::debug;
use url::Url;

use crate::config::{HostKind, ModelSettings};

/// Who said a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One message of the chat sent to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
        }
    }
}

/// The request body: exactly the keys GPT4All accepts.
#[derive(Debug, Serialize)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: &'a [ChatMessage],
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    /// llama.cpp's server only: keep the prompt's state for the next request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_prompt: Option<bool>,
}

impl<'a> ChatRequest<'a> {
    /// What `settings`' host is asked for the next message of `messages` from `model`.
    pub fn new(settings: &ModelSettings, model: &'a str, messages: &'a [ChatMessage]) -> Self {
        ChatRequest {
            model,
            messages,
            max_tokens: settings.max_tokens,
            temperature: settings.temperature,
            top_p: settings.top_p,
            cache_prompt: (settings.kind == HostKind::LlamaCpp).then_some(true),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

/// Token counts the host reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub completion_tokens: u32,
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The answer, trimmed; never empty.
    pub text: String,
    /// Cut at `max_tokens` (`finish_reason: "length"`); sent as it is.
    pub truncated: bool,
    pub usage: Option<Usage>,
    /// Time of the successful request.
    pub elapsed: Duration,
    /// The position (1 for the first) of the host that answered.
    pub host: usize,
}

/// Why the model gave no answer.
#[derive(Debug, Error)]
pub enum Gpt4AllError {
    #[error(
        "the GPT4All host at {url} is unreachable ({message}): check that GPT4All runs with its API server enabled and that GPT4ALL_URL reaches it"
    )]
    Unreachable { url: String, message: String },
    #[error(
        "the GPT4All host at {url} did not answer within {after:?}: it may be busy or the model too slow; raise GPT4ALL_TIMEOUT_SECONDS or lower GPT4ALL_MAX_TOKENS"
    )]
    Timeout { url: String, after: Duration },
    #[error(
        "the GPT4All host did not answer within the {after:?} this invocation had left for it: raise ResponderTimeout (or GPT4ALL_TIMEOUT_SECONDS below it) or lower GPT4ALL_MAX_TOKENS"
    )]
    OutOfTime { after: Duration },
    #[error("the GPT4All host answered HTTP {status}: {message}")]
    Server { status: u16, message: String },
    #[error(
        "the GPT4All host refused the request with HTTP {status}: {message} (check GPT4ALL_MODEL against the host's model list and GPT4ALL_API_KEY)"
    )]
    Refused { status: u16, message: String },
    #[error(
        "the GPT4All host is misconfigured for us (HTTP {status}: {message}): check GPT4ALL_URL (it ends in /v1), GPT4ALL_MODEL against the host's model list (GET /v1/models) and GPT4ALL_API_KEY"
    )]
    Misconfigured { status: u16, message: String },
    #[error(
        "every one of the {hosts} model hosts failed recently; each is asked again {pause:?} after it failed"
    )]
    Paused { hosts: usize, pause: Duration },
    #[error("the GPT4All host's answer could not be read: {0}")]
    BadResponse(String),
    #[error("the GPT4All host answered with an empty message")]
    Empty,
}

impl Gpt4AllError {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Gpt4AllError::Unreachable { .. } => "unreachable",
            Gpt4AllError::Timeout { .. } => "timeout",
            Gpt4AllError::OutOfTime { .. } => "out_of_time",
            Gpt4AllError::Server { .. } => "server_error",
            Gpt4AllError::Refused { .. } => "refused",
            Gpt4AllError::Misconfigured { .. } => "misconfigured",
            Gpt4AllError::Paused { .. } => "paused",
            Gpt4AllError::BadResponse(_) => "bad_response",
            Gpt4AllError::Empty => "empty",
        }
    }

    /// The host is down, overloaded or slow: the job should wait and be tried again.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Gpt4AllError::Unreachable { .. }
                | Gpt4AllError::Timeout { .. }
                | Gpt4AllError::OutOfTime { .. }
                | Gpt4AllError::Server { .. }
                | Gpt4AllError::Paused { .. }
        ) || matches!(self, Gpt4AllError::Refused { status, .. } if matches!(status, 408 | 429))
    }

    /// The host refused the prompt as longer than its context (llama.cpp: "exceeds the
    /// available context size"; GPT4All: "exceeds the context window size").
    pub fn is_context_overflow(&self) -> bool {
        match self {
            Gpt4AllError::Refused {
                status: 400,
                message,
            } => {
                let message = message.to_lowercase();
                message.contains("context")
                    && ["exceed", "too long", "window", "n_ctx", "length"]
                        .iter()
                        .any(|s| message.contains(s))
            }
            _ => false,
        }
    }

    /// The host refused this request and would refuse it again: a prompt over the
    /// model's context, a body it cannot take (4xx but 408/429, which are load). Retrying
    /// only makes the user wait; the failure policy answers at once.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Gpt4AllError::Refused { status, .. } if !matches!(status, 408 | 429))
    }
}

/// The least time worth giving an attempt: below it the host cannot answer anyway.
pub const MIN_ATTEMPT: Duration = Duration::from_secs(1);

/// The client. Build it once per container.
#[derive(Debug)]
pub struct Gpt4AllClient {
    http: reqwest::Client,
    settings: ModelSettings,
    completions: Url,
    api_key: Option<Secret>,
    model: OnceCell<String>,
}

impl Gpt4AllClient {
    pub fn new(settings: ModelSettings, api_key: Option<Secret>) -> Result<Self, Gpt4AllError> {
        let base = settings.base_url.as_str().trim_end_matches('/').to_owned();
        let completions = Url::parse(&format!("{base}/chat/completions"))
            .map_err(|e| Gpt4AllError::BadResponse(format!("bad GPT4ALL_URL: {e}")))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("remedios/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            .connect_timeout(Duration::from_secs(5).min(settings.timeout))
            .build()
            .map_err(|e| Gpt4AllError::BadResponse(e.to_string()))?;
        let model = OnceCell::new();
        if let Some(name) = &settings.model {
            let _ = model.set(name.clone());
        }
        Ok(Gpt4AllClient {
            http,
            settings,
            completions,
            api_key,
            model,
        })
    }

    pub fn settings(&self) -> &ModelSettings {
        &self.settings
    }

    /// The model name: the configured one, or the host's first listed model.
    pub async fn model(&self) -> Result<&str, Gpt4AllError> {
        self.model
            .get_or_try_init(|| self.first_listed_model())
            .await
            .map(String::as_str)
    }

    async fn first_listed_model(&self) -> Result<String, Gpt4AllError> {
        self.listed_models()
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                Gpt4AllError::BadResponse(format!(
                    "GET {}/models lists no model: load one in GPT4All or set GPT4ALL_MODEL",
                    self.settings.base_url.as_str().trim_end_matches('/')
                ))
            })
    }

    /// The models the host lists (`GET {base}/models`), in its order.
    pub async fn listed_models(&self) -> Result<Vec<String>, Gpt4AllError> {
        #[derive(Deserialize)]
        struct Models {
            data: Vec<Listed>,
        }
        #[derive(Deserialize)]
        struct Listed {
            id: String,
        }
        let base = self.settings.base_url.as_str().trim_end_matches('/');
        let url = format!("{base}/models");
        let response = self
            .authorised(self.http.get(&url))
            .send()
            .await
            .map_err(|e| self.transport(e, self.settings.timeout))?;
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(
                status.as_u16(),
                &response.text().await.unwrap_or_default(),
            ));
        }
        let models: Models = response
            .json()
            .await
            .map_err(|e| Gpt4AllError::BadResponse(format!("GET {url}: {e}")))?;
        Ok(models.data.into_iter().map(|m| m.id).collect())
    }

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => request.bearer_auth(key.expose()),
            None => request,
        }
    }

    /// A transport error of a request that had `timeout` to answer.
    fn transport(&self, e: reqwest::Error, timeout: Duration) -> Gpt4AllError {
        let url = self.settings.base_url.to_string();
        if e.is_timeout() && timeout < self.settings.timeout {
            Gpt4AllError::OutOfTime { after: timeout }
        } else if e.is_timeout() {
            Gpt4AllError::Timeout {
                url,
                after: self.settings.timeout,
            }
        } else if e.is_decode() || e.is_body() {
            Gpt4AllError::BadResponse(e.to_string())
        } else {
            Gpt4AllError::Unreachable {
                url,
                message: error_chain(&e),
            }
        }
    }

    /// Asks this host once for the next assistant message of `messages`, within
    /// `timeout` (and the configured timeout).
    pub async fn ask(
        &self,
        messages: &[ChatMessage],
        timeout: Duration,
    ) -> Result<Completion, Gpt4AllError> {
        let model = self.model().await?.to_owned();
        let request = ChatRequest::new(&self.settings, &model, messages);
        self.attempt(&request, timeout.min(self.settings.timeout))
            .await
    }

    async fn attempt(
        &self,
        request: &ChatRequest<'_>,
        timeout: Duration,
    ) -> Result<Completion, Gpt4AllError> {
        let started = Instant::now();
        let response = self
            .authorised(self.http.post(self.completions.clone()))
            .timeout(timeout)
            .json(request)
            .send()
            .await
            .map_err(|e| self.transport(e, timeout))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport(e, timeout))?;
        if !status.is_success() {
            return Err(status_error(
                status.as_u16(),
                &String::from_utf8_lossy(&body),
            ));
        }
        let answer: ChatResponse = serde_json::from_slice(&body).map_err(|e| {
            Gpt4AllError::BadResponse(format!(
                "not a chat completion ({e}): {}",
                excerpt(&String::from_utf8_lossy(&body))
            ))
        })?;
        let choice = answer
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| Gpt4AllError::BadResponse("the answer has no choices".into()))?;
        let text = choice.message.content.unwrap_or_default().trim().to_owned();
        if text.is_empty() {
            return Err(Gpt4AllError::Empty);
        }
        let elapsed = started.elapsed();
        debug!(
            elapsed_ms = elapsed.as_millis() as u64,
            completion_tokens = answer.usage.map(|u| u.completion_tokens),
            finish_reason = choice.finish_reason.as_deref().unwrap_or(""),
            "GPT4All answered"
        );
        Ok(Completion {
            text,
            truncated: choice.finish_reason.as_deref() == Some("length"),
            usage: answer.usage,
            elapsed,
            host: 1,
        })
    }
}

/// An error status, with the host's own message when it sent an OpenAI-style error.
fn status_error(status: u16, body: &str) -> Gpt4AllError {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: ErrorDetail,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorDetail {
        Object { message: String },
        Text(String),
    }
    let message = match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody {
            error: ErrorDetail::Object { message } | ErrorDetail::Text(message),
        }) => excerpt(&message),
        Err(_) => excerpt(body),
    };
    if status >= 500 {
        Gpt4AllError::Server { status, message }
    } else if misconfigured(status, &message) {
        Gpt4AllError::Misconfigured { status, message }
    } else {
        Gpt4AllError::Refused { status, message }
    }
}

/// Whether a 4xx says our configuration is wrong, whatever the question: a wrong path
/// (404), a wrong or missing key (401, 403), a model name the host does not have (a 400
/// that says so). Every user would get it; an operator must fix it.
fn misconfigured(status: u16, message: &str) -> bool {
    let message = message.to_lowercase();
    let names_a_missing_model = message.contains("model")
        && [
            "unknown",
            "not found",
            "does not exist",
            "no such",
            "invalid model",
            "not loaded",
        ]
        .iter()
        .any(|s| message.contains(s));
    matches!(status, 401 | 403 | 404) || (status == 400 && names_a_missing_model)
}

/// At most 300 characters of a body, for error messages.
fn excerpt(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// An error and its sources, on one line ("connection refused" is usually a source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_exactly_the_keys_gpt4all_accepts() {
        let messages = [
            ChatMessage::new(Role::System, "be brief"),
            ChatMessage::new(Role::User, "hi"),
        ];
        let request = ChatRequest {
            model: "m",
            messages: &messages,
            max_tokens: 400,
            temperature: 0.7,
            top_p: 0.95,
            cache_prompt: None,
        };
        let json = serde_json::to_value(&request).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["max_tokens", "messages", "model", "temperature", "top_p"]
        );
        assert_eq!(json["messages"][0]["role"], "system");
        assert_eq!(
            json["messages"][1].as_object().unwrap().len(),
            2,
            "role and content only"
        );
    }

    #[test]
    fn only_a_llama_cpp_host_is_asked_to_keep_its_prompt_cache() {
        let messages = [ChatMessage::new(Role::User, "hi")];
        let json = |kind: HostKind| {
            let mut settings =
                ModelSettings::new("http://127.0.0.1:8080/v1".parse().unwrap(), None);
            settings.kind = kind;
            serde_json::to_value(ChatRequest::new(&settings, "m", &messages)).unwrap()
        };
        assert_eq!(json(HostKind::LlamaCpp)["cache_prompt"], true);
        assert_eq!(json(HostKind::LlamaCpp)["max_tokens"], 400);
        for kind in [HostKind::Gpt4All, HostKind::Ollama, HostKind::OpenAi] {
            let keys = json(kind).as_object().unwrap().len();
            assert_eq!(keys, 5, "{kind:?}: GPT4All's keys only");
        }
    }

    #[test]
    fn error_bodies_give_their_message_and_class() {
        let e = status_error(
            400,
            r#"{"error":{"message":"Unrecognized request argument supplied: stream","type":"invalid_request_error"}}"#,
        );
        assert!(
            matches!(&e, Gpt4AllError::Refused { status: 400, message } if message.contains("stream"))
        );
        assert!(!e.is_unavailable());
        assert!(e.is_permanent(), "a bad request is refused again");
        for (status, body) in [
            (404, "Not Found"),
            (401, r#"{"error":{"message":"invalid api key"}}"#),
            (400, r#"{"error":{"message":"Unknown model: Llama 3 8B"}}"#),
            (400, r#"{"error":"model 'x' not found"}"#),
        ] {
            let e = status_error(status, body);
            assert_eq!(e.kind(), "misconfigured", "{status} {body}");
            assert!(!e.is_permanent() && !e.is_unavailable(), "{e}");
        }
        let overflow = status_error(
            400,
            r#"{"error":{"message":"the request exceeds the available context size"}}"#,
        );
        assert_eq!(overflow.kind(), "refused");
        assert!(overflow.is_context_overflow());
        assert!(
            status_error(
                400,
                r#"{"error":{"message":"The prompt size exceeds the context window size and cannot be processed."}}"#
            )
            .is_context_overflow()
        );
        assert!(
            !status_error(400, "Unrecognized request argument supplied: stream")
                .is_context_overflow()
        );
        for status in [401, 403, 408, 429] {
            assert!(!status_error(status, "").is_permanent(), "{status}");
        }
        assert!(status_error(429, "").is_unavailable());
        let e = status_error(503, "<html>busy</html>");
        assert!(!e.is_permanent());
        assert!(e.is_unavailable());
        assert!(e.to_string().contains("busy"));
        assert!(excerpt(&"x".repeat(500)).chars().count() == 301);
    }
}
