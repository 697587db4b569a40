//! A fast stand-in for the GPT4All host, for load tests: a real OpenAI-compatible HTTP
//! server (`GET /v1/models`, `POST /v1/chat/completions`) that holds requests to
//! GPT4All's rules ([`crate::model_server::check`]: 400 on any key GPT4All refuses) and answers
//! at once with a short text that names the question, so a test can tell which answer
//! belongs to which message. No language model: the load test measures the pipeline,
//! and the responder's tests use the real model server.
//!
//! `POST /_stand-in/slow` arms it: the next question it answers is answered after
//! [`SLOW_FOR`] instead, and `GET /_stand-in/slow` says how many such requests are in
//! progress, so a test can act (kill the responder, say) while one is surely waiting for
//! its answer, whichever question it is and however fast the machine is. A question
//! containing [`OVERLONG_MARK`] is refused with 400 every time, as a host refuses a
//! prompt over its context: a permanent failure.
//!
//! `remedios stand-in-model --port N` runs it as a process of its own, so a test can
//! kill it and start it again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;

use crate::model_server::{check, openai_error};

/// The model name it lists and answers with.
pub const STAND_IN_MODEL: &str = "remedios-stand-in";

/// How long an armed slow answer takes.
pub const SLOW_FOR: Duration = Duration::from_secs(3);
/// Questions containing this are refused with 400, on every attempt.
pub const OVERLONG_MARK: &str = "[overlong]";

/// The slow answers: armed for the next question, and in progress.
#[derive(Default)]
struct SlowAnswers {
    armed: AtomicBool,
    in_progress: AtomicU64,
}

type Slow = Arc<SlowAnswers>;

/// The answer to `question`.
pub fn answer_to(question: &str) -> String {
    format!("Stand-in answer to: {question}")
}

/// Serves on `listener` until the task or process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let app = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(complete))
        .route("/_stand-in/slow", get(slow_in_progress).post(arm_slow))
        .with_state(Slow::default());
    axum::serve(listener, app).await
}

async fn models() -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{ "id": STAND_IN_MODEL, "object": "model", "owned_by": "remedios" }],
    }))
    .into_response()
}

async fn slow_in_progress(State(slow): State<Slow>) -> Response {
    axum::Json(json!({
        "in_progress": slow.in_progress.load(Ordering::SeqCst),
        "armed": slow.armed.load(Ordering::SeqCst),
    }))
    .into_response()
}

async fn arm_slow(State(slow): State<Slow>) -> Response {
    slow.armed.store(true, Ordering::SeqCst);
    StatusCode::NO_CONTENT.into_response()
}

async fn complete(State(slow): State<Slow>, body: Bytes) -> Response {
    let request = match check(&body) {
        Ok((request, _)) => request,
        Err(reason) => return openai_error(StatusCode::BAD_REQUEST, &reason),
    };
    let question = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.as_str())
        .unwrap_or_default();
    if question.contains(OVERLONG_MARK) {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "the prompt is longer than the model's context window",
        );
    }
    if slow.armed.swap(false, Ordering::SeqCst) {
        slow.in_progress.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(SLOW_FOR).await;
        slow.in_progress.fetch_sub(1, Ordering::SeqCst);
    }
    let text = answer_to(question);
    let prompt_tokens: usize = request
        .messages
        .iter()
        .map(|m| m.content.split_whitespace().count())
        .sum();
    let completion_tokens = text.split_whitespace().count();
    axum::Json(json!({
        "id": "chatcmpl-stand-in",
        "object": "chat.completion",
        "created": 0,
        "model": STAND_IN_MODEL,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": text },
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_answers_as_an_openai_server_and_refuses_what_gpt4all_refuses() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let server = tokio::spawn(serve(listener));
        let http = reqwest::Client::new();

        let models: serde_json::Value = http
            .get(format!("{base}/models"))
            .send()
            .await
            .expect("models")
            .json()
            .await
            .expect("json");
        assert_eq!(models["data"][0]["id"], STAND_IN_MODEL);

        let ok: serde_json::Value = http
            .post(format!("{base}/chat/completions"))
            .json(&json!({
                "model": STAND_IN_MODEL,
                "messages": [
                    { "role": "system", "content": "Be brief." },
                    { "role": "user", "content": "hola 7" },
                ],
                "max_tokens": 32,
            }))
            .send()
            .await
            .expect("completion")
            .json()
            .await
            .expect("json");
        assert_eq!(
            ok["choices"][0]["message"]["content"],
            answer_to("hola 7").as_str()
        );
        assert_eq!(ok["choices"][0]["finish_reason"], "stop");

        let refused = http
            .post(format!("{base}/chat/completions"))
            .json(&json!({
                "model": STAND_IN_MODEL,
                "messages": [{ "role": "user", "content": "hi" }],
                "stream": false,
            }))
            .send()
            .await
            .expect("refused request");
        assert_eq!(refused.status(), 400);

        let ask = |question: &str| {
            http.post(format!("{base}/chat/completions"))
                .json(&json!({
                    "model": STAND_IN_MODEL,
                    "messages": [{ "role": "user", "content": question }],
                }))
                .send()
        };
        let slow_url = base.replace("/v1", "/_stand-in/slow");
        let armed = http.post(&slow_url).send().await.expect("arm");
        assert_eq!(armed.status(), 204);
        let started = std::time::Instant::now();
        let (slow, in_progress) = tokio::join!(ask("slow one"), async {
            tokio::time::sleep(SLOW_FOR / 3).await;
            let state: serde_json::Value = http
                .get(&slow_url)
                .send()
                .await
                .expect("slow state")
                .json()
                .await
                .expect("json");
            state["in_progress"].as_u64()
        });
        assert_eq!(slow.expect("slow answer").status(), 200);
        assert!(started.elapsed() >= SLOW_FOR, "the armed question waits");
        assert_eq!(in_progress, Some(1), "and is seen in progress meanwhile");
        let started = std::time::Instant::now();
        assert_eq!(ask("fast one").await.expect("answer").status(), 200);
        assert!(
            started.elapsed() < SLOW_FOR,
            "only the next question is slow"
        );

        for _ in 0..2 {
            let overlong = http
                .post(format!("{base}/chat/completions"))
                .json(&json!({
                    "model": STAND_IN_MODEL,
                    "messages": [{ "role": "user", "content": format!("hi {OVERLONG_MARK}") }],
                }))
                .send()
                .await
                .expect("overlong request");
            assert_eq!(overlong.status(), 400, "refused on every attempt");
        }
        server.abort();
    }
}
