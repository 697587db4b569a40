//! The event pump: what Lambda's SQS event source mapping does in AWS, on one machine.
//!
//! For each [`EventSource`] (a queue and the function it triggers) a poller long-polls the
//! queue, turns what it receives into an [`SqsEvent`] shaped as Lambda sends it
//! (`eventSource`, `eventSourceARN`, `awsRegion`, the system attributes such as
//! `ApproximateReceiveCount`, `MessageGroupId`, `SequenceNumber`), invokes the function
//! through an [`Invoke`] target (cargo-lambda's local invoke endpoint in the stack, a
//! test server in tests), and then:
//!
//! - deletes the records the function did not report in `batchItemFailures`;
//! - leaves the reported ones in flight, so they reappear after the queue's visibility
//!   timeout with a higher receive count;
//! - leaves the whole batch when the invocation failed (function error, timeout,
//!   unreadable response, or a failure id that is not in the batch), as Lambda does.
//!
//! Moving a message to its dead-letter queue after `maxReceiveCount` receives is the
//! queue's redrive policy: the emulator applies it on receive, as SQS does.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use thiserror::Error;
use tokio::task::JoinHandle;

use remedios_emulators::lambda::sqs_event;
pub use remedios_emulators::moto::Received;

/// Most records in one batch (the SQS receive limit, and Lambda's for FIFO queues).
pub const MAX_BATCH: i32 = 10;

/// A queue and the function its messages trigger.
#[derive(Debug, Clone)]
pub struct EventSource {
    /// The function name (the binary name under `cargo lambda watch`).
    pub function: String,
    pub queue_url: String,
    pub queue_arn: String,
    /// Records per invocation, 1 to 10.
    pub batch_size: i32,
    /// How long one invocation may take: the function timeout. Keep it at or below the
    /// queue's visibility timeout, as AWS requires.
    pub timeout: Duration,
    /// The client this queue is polled with: the function's own principal, as Lambda's
    /// event source mapping polls with the function's role. `None`: the pump's client.
    pub sqs: Option<aws_sdk_sqs::Client>,
    /// Invocations at once (the event source's `MaximumConcurrency`): one poller each.
    /// The queue's FIFO groups keep each group's messages one at a time, as in Lambda.
    pub concurrency: usize,
}

/// How the pollers behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Long-poll wait of each `ReceiveMessage` (SQS allows up to 20 s).
    pub wait: Duration,
    /// The region put in `awsRegion`.
    pub region: String,
    /// Pause after a failed receive (the emulator down) before trying again.
    pub retry_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            wait: Duration::from_secs(5),
            region: "us-east-1".into(),
            retry_after: Duration::from_secs(1),
        }
    }
}

/// Why an invocation did not give a batch response.
#[derive(Debug, Error)]
pub enum InvokeError {
    #[error(
        "could not reach function {function} at {url}: {source} (is `cargo lambda watch` running?)"
    )]
    Unreachable {
        function: String,
        url: String,
        source: reqwest::Error,
    },
    #[error("function {function} failed ({status}): {body}")]
    Failed {
        function: String,
        status: u16,
        body: String,
    },
    #[error("function {function} answered something that is not an SQS batch response: {source}")]
    BadResponse {
        function: String,
        source: serde_json::Error,
    },
}

/// Where invocations go.
pub trait Invoke: Send + Sync + 'static {
    /// Invokes `function` with `event` within `timeout`; its batch response.
    fn invoke(
        &self,
        function: &str,
        event: &SqsEvent,
        timeout: Duration,
    ) -> impl Future<Output = Result<SqsBatchResponse, InvokeError>> + Send;
}

/// Lambda's `Invoke` API over HTTP: `POST {base}/2015-03-31/functions/{name}/invocations`,
/// as `cargo lambda watch` serves it.
#[derive(Debug, Clone)]
pub struct HttpInvoker {
    base: String,
    http: reqwest::Client,
}

impl HttpInvoker {
    /// `base_url` is e.g. `http://127.0.0.1:9000`.
    pub fn new(base_url: &str) -> Self {
        HttpInvoker {
            base: base_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The invocation URL of `function`.
    pub fn url(&self, function: &str) -> String {
        format!("{}/2015-03-31/functions/{function}/invocations", self.base)
    }
}

impl Invoke for HttpInvoker {
    async fn invoke(
        &self,
        function: &str,
        event: &SqsEvent,
        timeout: Duration,
    ) -> Result<SqsBatchResponse, InvokeError> {
        let url = self.url(function);
        let response = self
            .http
            .post(&url)
            .json(event)
            .timeout(timeout)
            .send()
            .await
            .map_err(|source| InvokeError::Unreachable {
                function: function.to_owned(),
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let function_error = response.headers().contains_key("x-amz-function-error");
        let body = response
            .bytes()
            .await
            .map_err(|source| InvokeError::Unreachable {
                function: function.to_owned(),
                url,
                source,
            })?;
        if !status.is_success() || function_error {
            return Err(InvokeError::Failed {
                function: function.to_owned(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).chars().take(500).collect(),
            });
        }
        // A handler that returns nothing (`()` or `null`) processed everything.
        if body.is_empty() || body.as_ref() == b"null" {
            return Ok(SqsBatchResponse::default());
        }
        serde_json::from_slice(&body).map_err(|source| InvokeError::BadResponse {
            function: function.to_owned(),
            source,
        })
    }
}

/// What happened to one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub function: String,
    /// SQS message ids, in the order they were received.
    pub message_ids: Vec<String>,
    /// The same records with their bodies and system attributes.
    pub records: Vec<Received>,
    /// When the invocation started and how long it took.
    pub started: SystemTime,
    pub elapsed: Duration,
    pub outcome: Outcome,
}

/// The result of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The function answered; these ids were reported as failed and left in flight,
    /// the others deleted.
    Answered { failed: Vec<String> },
    /// The invocation failed as a whole: every record stays in flight.
    Failed { reason: String },
}

/// Why a poll round did not complete.
#[derive(Debug, Error)]
pub enum PumpError {
    #[error("receiving from {queue} failed: {message}")]
    Receive { queue: String, message: String },
    #[error("deleting processed messages from {queue} failed: {message}")]
    Delete { queue: String, message: String },
}

/// The last state of each source, for the status table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventSourceHealth {
    /// The last receive or delete error, cleared by the next successful round.
    pub last_error: Option<String>,
    pub batches: u64,
    pub deleted: u64,
    pub failed: u64,
}

/// The pump: SQS client, invoke target, settings.
pub struct Pump<I> {
    sqs: aws_sdk_sqs::Client,
    invoker: Arc<I>,
    settings: Settings,
    health: Arc<Mutex<HashMap<String, EventSourceHealth>>>,
    events: tokio::sync::broadcast::Sender<Batch>,
}

impl<I> Clone for Pump<I> {
    fn clone(&self) -> Self {
        Pump {
            sqs: self.sqs.clone(),
            invoker: self.invoker.clone(),
            settings: self.settings.clone(),
            health: self.health.clone(),
            events: self.events.clone(),
        }
    }
}

impl<I: Invoke> Pump<I> {
    pub fn new(sqs: aws_sdk_sqs::Client, invoker: I, settings: Settings) -> Self {
        Pump {
            sqs,
            invoker: Arc::new(invoker),
            settings,
            health: Arc::default(),
            events: tokio::sync::broadcast::channel(256).0,
        }
    }

    /// Every batch from now on, as it completes.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Batch> {
        self.events.subscribe()
    }

    /// The health of each source, by function name.
    pub fn health(&self) -> HashMap<String, EventSourceHealth> {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts [`EventSource::concurrency`] pollers per source; they stop when the handle is
    /// dropped.
    pub fn start(&self, sources: Vec<EventSource>) -> PumpHandle {
        let tasks = sources
            .into_iter()
            .flat_map(|source| {
                (0..source.concurrency.max(1)).map(move |_| {
                    let pump = self.clone();
                    let source = source.clone();
                    tokio::spawn(async move { pump.run(source).await })
                })
            })
            .collect();
        PumpHandle { tasks }
    }

    /// Polls `source` until the task is aborted.
    async fn run(&self, source: EventSource) {
        loop {
            match self.poll_once(&source).await {
                Ok(_) => self.record(&source, |h| h.last_error = None),
                Err(e) => {
                    tracing::warn!(function = %source.function, error = %e, "event pump round failed");
                    let message = e.to_string();
                    self.record(&source, |h| h.last_error = Some(message));
                    tokio::time::sleep(self.settings.retry_after).await;
                }
            }
        }
    }

    fn client<'a>(&'a self, source: &'a EventSource) -> &'a aws_sdk_sqs::Client {
        source.sqs.as_ref().unwrap_or(&self.sqs)
    }

    fn record(&self, source: &EventSource, update: impl FnOnce(&mut EventSourceHealth)) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        update(health.entry(source.function.clone()).or_default());
    }

    /// One round: a long-polling receive, then (if anything came) one invocation and
    /// the deletion of what succeeded. `None` when the queue had nothing.
    pub async fn poll_once(&self, source: &EventSource) -> Result<Option<Batch>, PumpError> {
        let received = self
            .client(source)
            .receive_message()
            .queue_url(&source.queue_url)
            .max_number_of_messages(source.batch_size.clamp(1, MAX_BATCH))
            .wait_time_seconds(self.settings.wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| PumpError::Receive {
                queue: source.queue_url.clone(),
                message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
            })?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(None);
        }
        let event = sqs_event(&messages, &source.queue_arn, &self.settings.region);
        let message_ids: Vec<String> = messages
            .iter()
            .map(|m| m.message_id.clone().unwrap_or_default())
            .collect();
        let records = messages.iter().map(Received::of).collect();
        let started = SystemTime::now();
        let clock = Instant::now();
        let answer = self
            .invoker
            .invoke(&source.function, &event, source.timeout)
            .await;
        let elapsed = clock.elapsed();
        let outcome = match answer {
            Ok(response) => match failed_ids(&response, &message_ids) {
                Ok(failed) => Outcome::Answered { failed },
                Err(reason) => Outcome::Failed { reason },
            },
            Err(e) => Outcome::Failed {
                reason: e.to_string(),
            },
        };
        let delete_result = match &outcome {
            Outcome::Answered { failed } => {
                let failed: HashSet<&String> = failed.iter().collect();
                let done: Vec<&Message> = messages
                    .iter()
                    .filter(|m| m.message_id.as_ref().is_some_and(|id| !failed.contains(id)))
                    .collect();
                self.delete(source, &done).await.map(|()| done.len())
            }
            Outcome::Failed { reason } => {
                tracing::warn!(function = %source.function, records = messages.len(), %reason,
                    "invocation failed; the batch reappears after the visibility timeout");
                Ok(0)
            }
        };
        let failed_count = match &outcome {
            Outcome::Answered { failed } => failed.len(),
            Outcome::Failed { .. } => messages.len(),
        };
        let deleted = delete_result.as_ref().copied().unwrap_or_default();
        self.record(source, |h| {
            h.batches += 1;
            h.deleted += deleted as u64;
            h.failed += failed_count as u64;
        });
        tracing::info!(
            function = %source.function,
            records = messages.len(),
            failed = failed_count,
            elapsed_ms = elapsed.as_millis() as u64,
            "batch invoked"
        );
        let batch = Batch {
            function: source.function.clone(),
            message_ids,
            records,
            started,
            elapsed,
            outcome,
        };
        let _ = self.events.send(batch.clone());
        delete_result?;
        Ok(Some(batch))
    }

    async fn delete(&self, source: &EventSource, done: &[&Message]) -> Result<(), PumpError> {
        if done.is_empty() {
            return Ok(());
        }
        let entries = done
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        let out = self
            .client(source)
            .delete_message_batch()
            .queue_url(&source.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| PumpError::Delete {
                queue: source.queue_url.clone(),
                message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
            })?;
        if let Some(first) = out.failed.first() {
            return Err(PumpError::Delete {
                queue: source.queue_url.clone(),
                message: format!(
                    "{} of {} entries failed, first: {} {}",
                    out.failed.len(),
                    done.len(),
                    first.code,
                    first.message.as_deref().unwrap_or_default()
                ),
            });
        }
        Ok(())
    }
}

/// The failure ids of `response`, checked as Lambda checks them: an empty id or one
/// that is not in the batch makes the whole batch fail.
fn failed_ids(response: &SqsBatchResponse, batch: &[String]) -> Result<Vec<String>, String> {
    let mut failed = Vec::new();
    for item in &response.batch_item_failures {
        let id = &item.item_identifier;
        if id.is_empty() || !batch.contains(id) {
            return Err(format!(
                "the function reported a failure for {id:?}, which is not in the batch; \
                 the whole batch counts as failed"
            ));
        }
        if !failed.contains(id) {
            failed.push(id.clone());
        }
    }
    Ok(failed)
}

/// The running pollers; dropping it stops them (a batch being invoked stays in flight
/// and reappears after the visibility timeout, as after a Lambda crash).
#[derive(Debug)]
pub struct PumpHandle {
    tasks: Vec<JoinHandle<()>>,
}

impl PumpHandle {
    /// Stops the pollers.
    pub fn stop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for PumpHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::BatchItemFailure;

    fn response(ids: &[&str]) -> SqsBatchResponse {
        let mut r = SqsBatchResponse::default();
        for id in ids {
            let mut f = BatchItemFailure::default();
            f.item_identifier = (*id).to_owned();
            r.batch_item_failures.push(f);
        }
        r
    }

    #[test]
    fn unknown_or_empty_failure_ids_fail_the_whole_batch() {
        let batch = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(
            failed_ids(&response(&["b", "b"]), &batch),
            Ok(vec!["b".to_owned()])
        );
        assert!(failed_ids(&response(&["c"]), &batch).is_err());
        assert!(failed_ids(&response(&[""]), &batch).is_err());
    }
}
