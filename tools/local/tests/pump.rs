//! The event pump against real moto and a real HTTP server that implements Lambda's
//! invoke endpoint (`POST /2015-03-31/functions/{name}/invocations`), with a function
//! whose behaviour each test scripts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::QueueAttributeName;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use remedios_local::pump::{EventSource, HttpInvoker, Pump, PumpHandle, Settings};
use remedios_testkit::moto::{self, Moto, QueuePair, QueueSpec};

/// One record as the function saw it.
#[derive(Debug, Clone)]
struct Seen {
    body: String,
    group: String,
    receive_count: u32,
    sequence_number: Option<String>,
    event_source_arn: Option<String>,
    event_source: Option<String>,
}

/// What the function does with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Fail,
}

type Script = Arc<dyn Fn(&Seen) -> Verdict + Send + Sync>;

#[derive(Clone)]
struct Function {
    name: String,
    script: Script,
    /// Answer HTTP 500 (a function error) to this many invocations first.
    crash_first: Arc<Mutex<u32>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Records that the function completed, in order.
    done: Arc<Mutex<Vec<Seen>>>,
    invocations: Arc<Mutex<u32>>,
}

impl Function {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    fn done(&self) -> Vec<Seen> {
        self.done.lock().unwrap().clone()
    }
}

async fn invoke(
    State(f): State<Function>,
    Path(name): Path<String>,
    axum::Json(event): axum::Json<SqsEvent>,
) -> Response {
    if name != f.name {
        return (StatusCode::NOT_FOUND, "no such function").into_response();
    }
    *f.invocations.lock().unwrap() += 1;
    {
        let mut crash = f.crash_first.lock().unwrap();
        if *crash > 0 {
            *crash -= 1;
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [("x-amz-function-error", "Unhandled")],
                r#"{"errorType":"Panic","errorMessage":"scripted crash"}"#,
            )
                .into_response();
        }
    }
    let mut response = SqsBatchResponse::default();
    // AWS's guidance for FIFO queues: once a record of a group fails, report it and
    // every later record of that group, so the group's order is kept.
    let mut failed_groups: Vec<String> = Vec::new();
    for record in &event.records {
        let seen = Seen {
            body: record.body.clone().unwrap_or_default(),
            group: record
                .attributes
                .get("MessageGroupId")
                .cloned()
                .unwrap_or_default(),
            receive_count: record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
            sequence_number: record.attributes.get("SequenceNumber").cloned(),
            event_source_arn: record.event_source_arn.clone(),
            event_source: record.event_source.clone(),
        };
        f.seen.lock().unwrap().push(seen.clone());
        let verdict = if failed_groups.contains(&seen.group) {
            Verdict::Fail
        } else {
            (f.script)(&seen)
        };
        if verdict == Verdict::Fail {
            failed_groups.push(seen.group.clone());
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        } else {
            f.done.lock().unwrap().push(seen);
        }
    }
    axum::Json(response).into_response()
}

struct Harness {
    _moto: Moto,
    sqs: aws_sdk_sqs::Client,
    queue: QueuePair,
    function: Function,
    _pump: PumpHandle,
    _server: tokio::task::JoinHandle<()>,
}

async fn harness(max_receive_count: u32, crash_first: u32, script: Script) -> Harness {
    harness_with(max_receive_count, crash_first, 10, script).await
}

async fn harness_with(
    max_receive_count: u32,
    crash_first: u32,
    batch_size: i32,
    script: Script,
) -> Harness {
    let moto = Moto::start().await.expect("moto starts");
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let queue = moto::create_queue_pair(
        &sqs,
        &QueueSpec {
            name: "pump-test".into(),
            visibility_timeout: Duration::from_secs(1),
            max_receive_count,
        },
    )
    .await
    .expect("queues are created");
    let function = Function {
        name: "worker".into(),
        script,
        crash_first: Arc::new(Mutex::new(crash_first)),
        seen: Arc::default(),
        done: Arc::default(),
        invocations: Arc::default(),
    };
    let app = Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .with_state(function.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let pump = Pump::new(
        sqs.clone(),
        HttpInvoker::new(&format!("http://{addr}")),
        Settings {
            wait: Duration::from_secs(1),
            ..Settings::default()
        },
    );
    let handle = pump.start(vec![EventSource {
        function: "worker".into(),
        queue_url: queue.url.clone(),
        queue_arn: queue.arn.clone(),
        batch_size,
        timeout: Duration::from_secs(1),
        sqs: None,
        concurrency: 1,
    }]);
    Harness {
        _moto: moto,
        sqs,
        queue,
        function,
        _pump: handle,
        _server: server,
    }
}

impl Harness {
    async fn send(&self, group: &str, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue.url)
            .message_group_id(group)
            .message_deduplication_id(body)
            .message_body(body)
            .send()
            .await
            .expect("message is sent");
    }

    /// Sends `bodies` in one request, so the pump receives them together.
    async fn send_batch(&self, group: &str, bodies: &[&str]) {
        let entries = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_group_id(group)
                    .message_deduplication_id(*body)
                    .message_body(*body)
                    .build()
                    .unwrap()
            })
            .collect();
        let out = self
            .sqs
            .send_message_batch()
            .queue_url(&self.queue.url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("messages are sent");
        assert!(out.failed.is_empty(), "{:?}", out.failed);
    }

    /// Messages still in the main queue, visible or in flight.
    async fn in_queue(&self) -> u64 {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("attributes are read");
        out.attributes()
            .map(|a| {
                a.values()
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum::<u64>()
            })
            .unwrap_or_default()
    }

    async fn dead_letters(&self) -> Vec<String> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue.dlq_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("the dead-letter queue is read");
        out.messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.body)
            .collect()
    }

    /// Waits (at most 30 s) until `done` holds.
    async fn until<F, Fut>(&self, what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the function saw {:?}",
                self.function.seen()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn counts_of(seen: &[Seen], body: &str) -> Vec<u32> {
    seen.iter()
        .filter(|s| s.body == body)
        .map(|s| s.receive_count)
        .collect()
}

#[tokio::test]
async fn a_reported_failure_comes_back_and_successes_are_deleted() {
    let h = harness(
        3,
        0,
        Arc::new(|s: &Seen| {
            if s.body == "flaky" && s.receive_count == 1 {
                Verdict::Fail
            } else {
                Verdict::Ok
            }
        }),
    )
    .await;
    h.send("a", "fine").await;
    h.send("b", "flaky").await;
    h.until("both messages to be processed and deleted", || async {
        h.function.done().len() == 2 && h.in_queue().await == 0
    })
    .await;
    let seen = h.function.seen();
    assert_eq!(counts_of(&seen, "fine"), vec![1], "deleted after success");
    assert_eq!(
        counts_of(&seen, "flaky"),
        vec![1, 2],
        "the reported failure is received again"
    );
    assert!(h.dead_letters().await.is_empty());
    // The records are shaped as Lambda sends them.
    for s in &seen {
        assert_eq!(s.event_source.as_deref(), Some("aws:sqs"));
        assert_eq!(s.event_source_arn.as_deref(), Some(h.queue.arn.as_str()));
        assert!(
            s.sequence_number.is_some(),
            "FIFO records carry SequenceNumber"
        );
    }
    assert_eq!(seen.iter().find(|s| s.body == "fine").unwrap().group, "a");
}

#[tokio::test]
async fn a_message_that_keeps_failing_ends_in_the_dead_letter_queue() {
    let h = harness(
        2,
        0,
        Arc::new(|s: &Seen| {
            if s.body == "poison" {
                Verdict::Fail
            } else {
                Verdict::Ok
            }
        }),
    )
    .await;
    h.send("p", "poison").await;
    h.send("q", "healthy").await;
    let dead: Arc<Mutex<Vec<String>>> = Arc::default();
    h.until("the poison message to reach the dead-letter queue", || {
        let dead = dead.clone();
        let h = &h;
        async move {
            let found = h.dead_letters().await;
            let mut dead = dead.lock().unwrap();
            dead.extend(found);
            !dead.is_empty()
        }
    })
    .await;
    let dead = dead.lock().unwrap().clone();
    assert_eq!(dead, vec!["poison".to_owned()]);
    assert_eq!(
        counts_of(&h.function.seen(), "poison"),
        vec![1, 2],
        "tried exactly maxReceiveCount times"
    );
    assert_eq!(counts_of(&h.function.done(), "healthy"), vec![1]);
    assert_eq!(h.in_queue().await, 0);
}

#[tokio::test]
async fn a_failed_invocation_leaves_the_whole_batch_to_come_back() {
    let h = harness(3, 1, Arc::new(|_: &Seen| Verdict::Ok)).await;
    h.send_batch("a", &["one", "two"]).await;
    h.until("both messages to be processed", || async {
        h.function.done().len() == 2 && h.in_queue().await == 0
    })
    .await;
    // SQS (and moto) may hand out fewer messages than are visible, so the crashed batch
    // may hold one message or both: what must hold is that whatever the crashed
    // invocation held came back, and that each message was done exactly once.
    let done = h.function.done();
    let mut bodies: Vec<&str> = done.iter().map(|s| s.body.as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["one", "two"], "each message done once: {done:?}");
    assert!(
        done.iter().any(|s| s.receive_count == 2),
        "the crashed batch came back: {done:?}"
    );
    assert!(
        done.iter().all(|s| (1..=2).contains(&s.receive_count)),
        "nothing was received more than once after the crash: {done:?}"
    );
    assert!(*h.function.invocations.lock().unwrap() >= 2);
}

#[tokio::test]
async fn per_group_order_is_kept_through_retries() {
    // The third message of each group fails on its first receive. Batches of one, as
    // the template's event sources use: moto (unlike SQS) may reorder a group when
    // several of its messages reappear together after a failed batch.
    let h = harness_with(
        5,
        0,
        1,
        Arc::new(|s: &Seen| {
            if s.body.ends_with("-3") && s.receive_count == 1 {
                Verdict::Fail
            } else {
                Verdict::Ok
            }
        }),
    )
    .await;
    for i in 1..=5 {
        h.send("red", &format!("red-{i}")).await;
        h.send("blue", &format!("blue-{i}")).await;
    }
    h.until("all ten messages to be processed", || async {
        h.function.done().len() == 10 && h.in_queue().await == 0
    })
    .await;
    let mut by_group: HashMap<String, Vec<String>> = HashMap::new();
    for s in h.function.done() {
        by_group.entry(s.group.clone()).or_default().push(s.body);
    }
    for group in ["red", "blue"] {
        let expected: Vec<String> = (1..=5).map(|i| format!("{group}-{i}")).collect();
        assert_eq!(by_group[group], expected, "order within group {group}");
    }
    assert!(
        h.function
            .seen()
            .iter()
            .any(|s| s.body == "red-3" && s.receive_count == 2),
        "the failed message was retried"
    );
}
