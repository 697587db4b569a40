//! `remedios dlq replay`: moves the messages of a dead-letter queue back to their
//! source queue once the cause of their failure is fixed.
//!
//! A replay receives from the dead-letter queue, sends each message to the source
//! queue in the same message group (so per-user order holds) with a fresh
//! deduplication id (the original id plus `replay-<run>`: SQS would drop a resend
//! with the original id within its 5-minute deduplication window), and deletes it
//! from the dead-letter queue only after the send succeeded. Message bodies hold
//! users' messages: they are never printed, only their size and receive count.
//!
//! WhatsApp accepts a free-form reply only within 24 hours of the user's message (later
//! it refuses it with error 131047, and the user gets nothing). Each message says when
//! its user sent it; those past the window are flagged, and with
//! [`ReplayOptions::drop_past_window`] deleted instead of replayed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use remedios_shared::queue::{Outgoing, Queue, dedup_id};
use thiserror::Error;

/// How long a received dead-letter message stays hidden while it is replayed.
const IN_FLIGHT: Duration = Duration::from_secs(60);
/// SQS's largest receive.
const MAX_RECEIVE: i32 = 10;
/// WhatsApp's customer service window: a free-form reply is refused after it.
pub const REPLY_WINDOW: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Error)]
pub enum DlqError {
    #[error(
        "could not read the attributes of {queue} ({message}); check the queue URL and the credentials"
    )]
    Attributes { queue: String, message: String },
    #[error("{queue} has no redrive policy, so its dead-letter queue is unknown: pass --dlq-url")]
    NoRedrivePolicy { queue: String },
    #[error("the redrive policy of {queue} is unreadable ({policy}): pass --dlq-url")]
    BadRedrivePolicy { queue: String, policy: String },
    #[error("could not find the dead-letter queue {name}: {message}")]
    DlqUrl { name: String, message: String },
    #[error("could not receive from the dead-letter queue {queue}: {message}")]
    Receive { queue: String, message: String },
}

/// A source queue and its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub queue_url: String,
    pub dlq_url: String,
}

/// What a replay does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Move at most this many messages.
    pub max: Option<usize>,
    /// Only report what would be moved; the messages become visible again at once.
    pub dry_run: bool,
    /// Makes the deduplication ids of this run fresh: `replay-<run>`.
    pub run: String,
    /// Delete the messages whose user wrote more than [`REPLY_WINDOW`] ago instead of
    /// replaying them: WhatsApp would refuse their reply.
    pub drop_past_window: bool,
    /// Now, in Unix seconds: what the window is measured from.
    pub now_s: i64,
}

impl ReplayOptions {
    /// A replay of everything, with the current Unix time as its run id.
    pub fn new() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        ReplayOptions {
            max: None,
            dry_run: false,
            run: now.to_string(),
            drop_past_window: false,
            now_s: i64::try_from(now).unwrap_or(i64::MAX),
        }
    }
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// One dead-lettered message, as shown to the operator (never its body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    pub message_id: String,
    /// The message group (a user's pseudonymous tag for our queues).
    pub group: Option<String>,
    /// How many times it was received (the source queue's receives included).
    pub receive_count: u32,
    pub body_bytes: usize,
    /// When its user sent the WhatsApp message (Unix seconds), when the body says.
    pub sent_at_s: Option<i64>,
    /// Whether that was longer than [`REPLY_WINDOW`] ago: a reply would be refused.
    pub past_window: bool,
}

impl Poison {
    fn of(message: &Message, now_s: i64) -> Self {
        let attr = |name: MessageSystemAttributeName| {
            message
                .attributes()
                .and_then(|a| a.get(&name))
                .map(String::as_str)
        };
        Poison {
            message_id: message.message_id().unwrap_or_default().to_owned(),
            group: attr(MessageSystemAttributeName::MessageGroupId).map(str::to_owned),
            receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
            body_bytes: message.body().map_or(0, str::len),
            sent_at_s: message.body().and_then(sent_at_s),
            past_window: false,
        }
        .measured(now_s)
    }

    fn measured(mut self, now_s: i64) -> Self {
        self.past_window = self
            .sent_at_s
            .is_some_and(|sent| now_s.saturating_sub(sent) > REPLY_WINDOW.as_secs() as i64);
        self
    }
}

/// When the user sent the message a queue body carries: an inbound message (the
/// transcriber's queue) or a reply job (the responder's).
fn sent_at_s(body: &str) -> Option<i64> {
    use remedios_shared::envelope::{InboundMessage, ReplyJob, decode};
    decode::<InboundMessage>(body)
        .map(|m| m.timestamp)
        .or_else(|_| decode::<ReplyJob>(body).map(|job| job.message.timestamp))
        .ok()
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Every message seen, in the order it was received.
    pub seen: Vec<Poison>,
    /// Sent to the source queue and deleted from the dead-letter queue.
    pub moved: usize,
    /// Left in the dead-letter queue (the send or the delete failed), with the reason.
    pub failed: Vec<(String, String)>,
    /// Deleted without a replay: past the reply window, with `drop_past_window`.
    pub dropped: usize,
}

/// The dead-letter queue of `queue_url`, from its redrive policy.
pub async fn dead_letter_queue_of(sqs: &Client, queue_url: &str) -> Result<String, DlqError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|e| DlqError::Attributes {
            queue: queue_url.to_owned(),
            message: describe(e),
        })?;
    let policy = out
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
        .ok_or_else(|| DlqError::NoRedrivePolicy {
            queue: queue_url.to_owned(),
        })?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Redrive {
        dead_letter_target_arn: String,
    }
    let bad = || DlqError::BadRedrivePolicy {
        queue: queue_url.to_owned(),
        policy: policy.clone(),
    };
    let redrive: Redrive = serde_json::from_str(policy).map_err(|_| bad())?;
    // arn:aws:sqs:region:account:name
    let mut parts = redrive.dead_letter_target_arn.rsplitn(2, ':');
    let name = parts.next().ok_or_else(bad)?;
    let account = parts
        .next()
        .and_then(|rest| rest.rsplit(':').next())
        .ok_or_else(bad)?;
    let out = sqs
        .get_queue_url()
        .queue_name(name)
        .queue_owner_aws_account_id(account)
        .send()
        .await
        .map_err(|e| DlqError::DlqUrl {
            name: name.to_owned(),
            message: describe(e),
        })?;
    out.queue_url().map(str::to_owned).ok_or(DlqError::DlqUrl {
        name: name.to_owned(),
        message: "no URL in the answer".into(),
    })
}

/// Replays the dead-letter queue of `target`. `report` is told about each message
/// as it is seen (never its body). Stops at the first failed send, so the messages
/// after it keep their order; what failed stays in the dead-letter queue.
pub async fn replay(
    sqs: &Client,
    target: &Target,
    options: &ReplayOptions,
    mut report: impl FnMut(&Poison),
) -> Result<Summary, DlqError> {
    let source = Queue::new(sqs.clone(), &target.queue_url);
    let mut summary = Summary::default();
    let mut dry_run_handles = Vec::new();
    let limit = options.max.unwrap_or(usize::MAX);
    'receive: while summary.seen.len() < limit {
        let want = (limit - summary.seen.len()).min(MAX_RECEIVE as usize) as i32;
        let received = sqs
            .receive_message()
            .queue_url(&target.dlq_url)
            .max_number_of_messages(want)
            .visibility_timeout(IN_FLIGHT.as_secs() as i32)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| DlqError::Receive {
                queue: target.dlq_url.clone(),
                message: describe(e),
            })?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for message in &messages {
            let poison = Poison::of(message, options.now_s);
            report(&poison);
            summary.seen.push(poison.clone());
            let handle = message.receipt_handle().unwrap_or_default().to_owned();
            if options.dry_run {
                dry_run_handles.push(handle);
                continue;
            }
            if poison.past_window && options.drop_past_window {
                if let Err(e) = sqs
                    .delete_message()
                    .queue_url(&target.dlq_url)
                    .receipt_handle(&handle)
                    .send()
                    .await
                {
                    summary
                        .failed
                        .push((poison.message_id, format!("not dropped: {}", describe(e))));
                    break 'receive;
                }
                summary.dropped += 1;
                continue;
            }
            if let Err(reason) = move_one(sqs, &source, target, options, message, &handle).await {
                summary.failed.push((poison.message_id, reason));
                break 'receive;
            }
            summary.moved += 1;
        }
    }
    // A dry run hands its messages back at once rather than after IN_FLIGHT.
    for handle in dry_run_handles {
        let _ = sqs
            .change_message_visibility()
            .queue_url(&target.dlq_url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await;
    }
    Ok(summary)
}

async fn move_one(
    sqs: &Client,
    source: &Queue,
    target: &Target,
    options: &ReplayOptions,
    message: &Message,
    handle: &str,
) -> Result<(), String> {
    let attr = |name: MessageSystemAttributeName| {
        message
            .attributes()
            .and_then(|a| a.get(&name))
            .cloned()
            .unwrap_or_default()
    };
    let original = match attr(MessageSystemAttributeName::MessageDeduplicationId) {
        id if id.is_empty() => message.message_id().unwrap_or_default().to_owned(),
        id => id,
    };
    let outgoing = Outgoing {
        body: message.body().unwrap_or_default().to_owned(),
        group_id: attr(MessageSystemAttributeName::MessageGroupId),
        dedup_id: dedup_id(&original, Some(&format!("replay-{}", options.run))),
    };
    source
        .send_all(std::slice::from_ref(&outgoing))
        .await
        .map_err(|e| format!("not sent to the source queue: {e}"))?;
    sqs.delete_message()
        .queue_url(&target.dlq_url)
        .receipt_handle(handle)
        .send()
        .await
        .map_err(|e| {
            format!(
                "sent, but not deleted from the dead-letter queue (it will be replayed again by the next run): {}",
                describe(e)
            )
        })?;
    Ok(())
}

/// An SDK error in one line: SQS's code and message for a service error, else the
/// whole chain (connection refused, no credentials...).
fn describe<E, R>(e: SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("no message")
        ),
        None => DisplayErrorContext(e).to_string(),
    }
}
