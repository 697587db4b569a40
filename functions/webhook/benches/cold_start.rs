//! The webhook's cold start, measured on the real binary: each iteration starts a
//! fresh `webhook` process (built with the bench profile, i.e. release settings)
//! against a minimal Lambda Runtime API served by this bench and moto for SQS/S3/SSM,
//! and stops the clock when
//!
//! - `init`: the process asks the Runtime API for its first event (configuration
//!   read, secrets resolved, SDK clients built, runtime started);
//! - `first_invocation`: the process posts the response to its first event, a signed
//!   one-message notification whose enqueue goes to moto's SQS (the first request
//!   also opens the connection to SQS);
//! - `first_invocation_ssm`: the same with the secrets read from SSM parameters, as
//!   the SAM template deploys it (one `GetParameters` call at cold start).
//!
//! `cargo bench -p webhook --bench cold_start`

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use criterion::{Criterion, criterion_group, criterion_main};
use remedios_testkit::meta;
use remedios_testkit::moto::{self, Moto, QueueSpec};
use serde_json::json;
use tokio::sync::{Mutex, mpsc};

const SECRET: &str = "bench-app-secret";
const BUCKET: &str = "remedios-bench";

/// What the fake Runtime API saw.
#[derive(Debug)]
enum Seen {
    Next(Instant),
    Response(Instant, String),
    Error(String),
}

#[derive(Clone)]
struct Runtime {
    events: mpsc::UnboundedSender<Seen>,
    /// The event to hand out next (taken by the first `next` of each process).
    pending: Arc<Mutex<Option<String>>>,
}

async fn next(State(rt): State<Runtime>) -> (HeaderMap, String) {
    let _ = rt.events.send(Seen::Next(Instant::now()));
    let event = rt.pending.lock().await.take();
    let Some(event) = event else {
        // The process is killed after its first invocation; never answer again.
        return std::future::pending().await;
    };
    let mut headers = HeaderMap::new();
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        + 30_000;
    for (k, v) in [
        (
            "lambda-runtime-aws-request-id",
            "8476a536-e9f4-11e8-9739-2dfe598c3fcd".to_owned(),
        ),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:webhook".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1".to_owned(),
        ),
        ("content-type", "application/json".to_owned()),
    ] {
        headers.insert(k, HeaderValue::from_str(&v).expect("valid header"));
    }
    (headers, event)
}

async fn response(State(rt): State<Runtime>, Path(_id): Path<String>, body: String) -> StatusCode {
    let _ = rt.events.send(Seen::Response(Instant::now(), body));
    StatusCode::ACCEPTED
}

async fn error(State(rt): State<Runtime>, body: String) -> StatusCode {
    let _ = rt.events.send(Seen::Error(body));
    StatusCode::ACCEPTED
}

/// A function URL event carrying a signed one-message notification.
fn invocation(n: u64) -> String {
    let user = meta::User::phone("16505551234", "Sheena Nelson");
    let body = meta::single(
        &user,
        meta::text(
            &user,
            &format!("wamid.COLD{n:012}"),
            1_767_225_600,
            "Hello!",
        ),
    );
    let signature = meta::sign(SECRET.as_bytes(), body.as_bytes());
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {
            "content-type": "application/json", "host": "id.lambda-url.us-east-1.on.aws",
            "x-hub-signature-256": signature, "user-agent": "facebookexternalua"
        },
        "requestContext": {
            "accountId": "123456789012", "apiId": "id", "domainName": "id.lambda-url.us-east-1.on.aws",
            "domainPrefix": "id",
            "http": { "method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "173.252.88.1", "userAgent": "facebookexternalua" },
            "requestId": "r", "routeKey": "$default", "stage": "$default",
            "time": "11/Jan/2026:11:45:34 +0000", "timeEpoch": 1768131934837u64
        },
        "body": body, "isBase64Encoded": false
    })
    .to_string()
}

struct Bench {
    _moto: Moto,
    env: Vec<(String, String)>,
    events: mpsc::UnboundedSender<Seen>,
    seen: mpsc::UnboundedReceiver<Seen>,
    count: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Until {
    Init,
    Response,
}

impl Bench {
    async fn start() -> Self {
        let moto = Moto::start()
            .await
            .expect("start moto (run scripts/bootstrap.sh)");
        let sdk = moto.sdk_config().await;
        let queue = moto::create_queue_pair(
            &aws_sdk_sqs::Client::new(&sdk),
            &QueueSpec {
                name: "bench-inbound".into(),
                visibility_timeout: Duration::from_secs(30),
                max_receive_count: 5,
            },
        )
        .await
        .expect("create the queue");
        let s3 = moto::s3_client(&sdk);
        moto::create_bucket(&s3, BUCKET)
            .await
            .expect("create the bucket");
        let ssm = aws_sdk_ssm::Client::new(&sdk);
        for (name, value) in [("/bench/verify-token", "vt"), ("/bench/app-secret", SECRET)] {
            ssm.put_parameter()
                .name(name)
                .value(value)
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .send()
                .await
                .expect("put the SSM parameter");
        }

        let (events, seen) = mpsc::unbounded_channel();
        let env = [
            ("AWS_LAMBDA_FUNCTION_NAME", "webhook"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_ENDPOINT_URL", moto.endpoint()),
            ("INBOUND_QUEUE_URL", queue.url.as_str()),
            ("BUCKET_NAME", BUCKET),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Bench {
            _moto: moto,
            env,
            events,
            seen,
            count: 0,
        }
    }

    /// Starts one webhook process and times it until `until`.
    async fn once(&mut self, until: Until, ssm: bool) -> Duration {
        self.count += 1;
        // A Runtime API of its own for each process: a killed process's pending
        // `next` can never take the event meant for the following one.
        let runtime = Runtime {
            events: self.events.clone(),
            pending: Arc::new(Mutex::new(Some(invocation(self.count)))),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(error))
            .with_state(runtime);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the runtime API");
        let api = listener
            .local_addr()
            .expect("runtime API address")
            .to_string();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        while self.seen.try_recv().is_ok() {}
        let secrets: [(&str, &str); 2] = if ssm {
            [
                ("WHATSAPP_VERIFY_TOKEN_PARAM", "/bench/verify-token"),
                ("WHATSAPP_APP_SECRET_PARAM", "/bench/app-secret"),
            ]
        } else {
            [
                ("WHATSAPP_VERIFY_TOKEN", "vt"),
                ("WHATSAPP_APP_SECRET", SECRET),
            ]
        };
        let started = Instant::now();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_webhook"))
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(secrets)
            .env("AWS_LAMBDA_RUNTIME_API", &api)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the webhook binary");
        let elapsed = loop {
            let seen = tokio::time::timeout(Duration::from_secs(30), self.seen.recv())
                .await
                .expect("the webhook answered within 30 s")
                .expect("runtime API alive");
            match seen {
                Seen::Next(at) if until == Until::Init => break at - started,
                Seen::Next(_) => {}
                Seen::Response(at, body) => {
                    assert!(
                        body.contains("\"statusCode\":200"),
                        "webhook answered {body}"
                    );
                    break at - started;
                }
                Seen::Error(body) => panic!("the webhook reported an error: {body}"),
            }
        };
        let _ = child.kill().await;
        server.abort();
        elapsed
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut bench = rt.block_on(Bench::start());
    let mut group = c.benchmark_group("cold_start");
    group.sample_size(10);
    for (name, until, ssm) in [
        ("init", Until::Init, false),
        ("first_invocation", Until::Response, false),
        ("first_invocation_ssm", Until::Response, true),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += bench.once(until, ssm).await;
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
