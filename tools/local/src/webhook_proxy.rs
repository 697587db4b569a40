//! The local stack's `/webhook` endpoint: the one port of the stack that may be exposed
//! to Meta (through ngrok), forwarding to the webhook function under `cargo lambda
//! watch` as API Gateway or a function URL does in AWS.
//!
//! It is an HTTP/1 server that does not let slow or idle clients hold it: the request
//! head must arrive within [`ProxyBounds::header_timeout`] (hyper's header read timeout,
//! which also ends idle keep-alive connections), the body within
//! [`ProxyBounds::body_timeout`] (408 otherwise), the body is bounded like a function URL's
//! payload (413 above it), and at most [`ProxyBounds::max_connections`] connections are
//! served at once (more wait to be accepted).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The path it serves.
pub const PATH: &str = "/webhook";

/// How long and how much a client may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyBounds {
    /// From the connection (or the previous response) to the end of the request head.
    pub header_timeout: Duration,
    /// From the end of the head to the end of the body.
    pub body_timeout: Duration,
    /// Largest body forwarded.
    pub max_body: usize,
    pub max_connections: usize,
}

impl Default for ProxyBounds {
    fn default() -> Self {
        ProxyBounds {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(20),
            // A Lambda function URL refuses request payloads over 6 MB.
            max_body: 6 * 1024 * 1024,
            max_connections: 256,
        }
    }
}

struct Target {
    url: String,
    http: reqwest::Client,
    limits: ProxyBounds,
}

/// Serves [`PATH`] on `listener`, forwarding to `target_url` (the webhook's function
/// URL), until the task is aborted.
pub async fn serve(listener: TcpListener, target_url: String, limits: ProxyBounds) {
    let target = Arc::new(Target {
        url: target_url,
        http: reqwest::Client::new(),
        limits,
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let target = target.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let target = target.clone();
                async move { Ok::<_, Infallible>(handle(&target, request).await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response
}

async fn handle(target: &Target, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != PATH {
        return plain(StatusCode::NOT_FOUND, "only /webhook is served here\n");
    }
    let (parts, body) = request.into_parts();
    let limits = target.limits;
    let body = match tokio::time::timeout(
        limits.body_timeout,
        Limited::new(body, limits.max_body).collect(),
    )
    .await
    {
        Err(_) => {
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time\n",
            );
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than a function URL accepts\n",
            );
        }
        Ok(Err(_)) => return plain(StatusCode::BAD_REQUEST, "the request body broke off\n"),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let url = match parts.uri.query() {
        Some(q) => format!("{}?{q}", target.url),
        None => target.url.clone(),
    };
    let mut forwarded = target.http.request(parts.method, url).body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            forwarded = forwarded.header(name, value);
        }
    }
    match forwarded.send().await {
        Ok(answer) => {
            let status = answer.status();
            let content_type = answer.headers().get("content-type").cloned();
            let bytes = answer.bytes().await.unwrap_or_default();
            let mut response = Response::new(Full::new(bytes));
            *response.status_mut() = status;
            if let Some(ct) = content_type {
                response.headers_mut().insert("content-type", ct);
            }
            response
        }
        Err(e) => plain(
            StatusCode::BAD_GATEWAY,
            &format!("the webhook function is not reachable: {e}\n"),
        ),
    }
}
