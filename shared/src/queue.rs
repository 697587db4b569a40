//! Putting envelopes on our SQS FIFO queues.
//!
//! - [`body`] serialises an envelope into a message body SQS accepts. SQS refuses
//!   bodies with characters outside `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
//!   #x10000-#x10FFFF`; JSON already escapes the control characters, and we escape
//!   U+FFFE and U+FFFF too, so any user text travels and decodes back unchanged.
//! - [`Outgoing`] pairs a body with its FIFO group (the user, for per-user order) and
//!   deduplication id (derived from the WhatsApp message id, so Meta's duplicate
//!   deliveries are enqueued once).
//! - [`Queue::send_all`] sends in batches of up to ten, retrying entries SQS reports
//!   as failed, and errors only when some entry could not be enqueued.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::config::Text;

/// The inbound queue: the webhook sends to it, the transcriber consumes it.
pub const INBOUND_QUEUE_URL: Text = Text::wired(
    "INBOUND_QUEUE_URL",
    "the URL of the inbound SQS FIFO queue",
    true,
);
/// The reply queue: the transcriber sends to it, the responder consumes it.
pub const REPLY_QUEUE_URL: Text = Text::wired(
    "REPLY_QUEUE_URL",
    "the URL of the responder's SQS FIFO queue",
    true,
);

use crate::user::UserTag;

/// Most entries SQS takes in one `SendMessageBatch`.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Most bytes we put in one batch (SQS allows more; this keeps us far from it).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// How many times an entry SQS reported as failed is sent again.
const ENTRY_ATTEMPTS: u32 = 3;

/// Serialises `value` into an SQS-safe JSON body.
pub fn body<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let json = serde_json::to_string(value)?;
    Ok(escape_noncharacters(json))
}

/// Replaces U+FFFE and U+FFFF (legal in JSON strings, refused by SQS) with their
/// JSON escapes. They can only occur inside string literals of serialised JSON, so
/// the result is equivalent JSON.
fn escape_noncharacters(json: String) -> String {
    if !json.contains(['\u{FFFE}', '\u{FFFF}']) {
        return json;
    }
    json.replace('\u{FFFE}', "\\ufffe")
        .replace('\u{FFFF}', "\\uffff")
}

/// The deduplication id for a WhatsApp message id, with an optional stage suffix.
/// SQS takes up to 128 characters of ASCII letters, digits and punctuation: ids that
/// fit are used as they are, others are replaced by their SHA-256.
pub fn dedup_id(message_id: &str, stage: Option<&str>) -> String {
    let candidate = match stage {
        Some(s) => format!("{message_id}:{s}"),
        None => message_id.to_owned(),
    };
    let fits = !candidate.is_empty()
        && candidate.len() <= 128
        && candidate.bytes().all(|b| b.is_ascii_graphic());
    if fits {
        candidate
    } else {
        hex::encode(Sha256::digest(candidate.as_bytes()))
    }
}

/// One message to send to a FIFO queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub body: String,
    pub group_id: String,
    pub dedup_id: String,
}

impl Outgoing {
    /// A message in `user`'s group, deduplicated by `dedup_id`.
    pub fn new<T: Serialize>(
        value: &T,
        user: &UserTag,
        dedup_id: String,
    ) -> Result<Self, serde_json::Error> {
        Ok(Outgoing {
            body: body(value)?,
            group_id: user.as_str().to_owned(),
            dedup_id,
        })
    }
}

/// Why messages could not be enqueued.
#[derive(Debug, Error)]
pub enum QueueError {
    #[error("SQS SendMessageBatch failed: {0}")]
    Send(String),
    #[error("SQS refused {count} of the messages after {ENTRY_ATTEMPTS} attempts: {first_reason}")]
    Refused { count: usize, first_reason: String },
    #[error("SQS ChangeMessageVisibility failed: {0}")]
    Visibility(String),
}

/// A FIFO queue we send to.
#[derive(Debug, Clone)]
pub struct Queue {
    client: Client,
    url: String,
}

impl Queue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Queue {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Makes a received message visible again `after` from now (its next delivery),
    /// instead of when its visibility timeout ends.
    pub async fn retry_in(&self, receipt_handle: &str, after: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(after.as_secs()).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| {
                QueueError::Visibility(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
            })?;
        Ok(())
    }

    /// Sends every message, in order, in batches. Succeeds only when SQS accepted all
    /// of them; FIFO deduplication makes sending again after an error safe.
    pub async fn send_all(&self, messages: &[Outgoing]) -> Result<(), QueueError> {
        for batch in batches(messages) {
            self.send_batch(batch).await?;
        }
        Ok(())
    }

    async fn send_batch(&self, batch: &[Outgoing]) -> Result<(), QueueError> {
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut last_reason = String::new();
        for attempt in 0..ENTRY_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
            let entries = pending
                .iter()
                .map(|&i| {
                    let m = &batch[i];
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message_body(&m.body)
                        .message_group_id(&m.group_id)
                        .message_deduplication_id(&m.dedup_id)
                        .build()
                        .map_err(|e| QueueError::Send(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    QueueError::Send(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
                })?;
            let failed = out.failed();
            if failed.is_empty() {
                return Ok(());
            }
            last_reason = failed
                .first()
                .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or("no message")))
                .unwrap_or_default();
            // Entries refused for the sender's fault (a bad body) will not improve.
            if failed.iter().any(|f| f.sender_fault()) {
                return Err(QueueError::Refused {
                    count: failed.len(),
                    first_reason: last_reason,
                });
            }
            pending = failed
                .iter()
                .filter_map(|f| f.id().strip_prefix('m')?.parse().ok())
                .collect();
        }
        Err(QueueError::Refused {
            count: pending.len(),
            first_reason: last_reason,
        })
    }
}

/// Splits `messages` into consecutive batches within SQS's entry and size limits.
pub fn batches(messages: &[Outgoing]) -> impl Iterator<Item = &[Outgoing]> {
    let mut rest = messages;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut n = 0;
        for m in rest.iter().take(MAX_BATCH_ENTRIES) {
            let size = m.body.len();
            if n > 0 && bytes + size > MAX_BATCH_BYTES {
                break;
            }
            bytes += size;
            n += 1;
        }
        let (batch, tail) = rest.split_at(n);
        rest = tail;
        Some(batch)
    })
}

/// True when every character of `body` is one SQS accepts.
pub fn sqs_accepts(body: &str) -> bool {
    body.chars().all(|c| {
        matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_becomes_an_sqs_safe_body_that_decodes_back_unchanged() {
        let text: String = ('\u{0}'..='\u{1F}')
            .chain(['\u{7F}', '\u{FFFE}', '\u{FFFF}', '\u{D7FF}', '😀', 'é'])
            .collect();
        let b = body(&serde_json::json!({ "text": text })).unwrap();
        assert!(sqs_accepts(&b), "{b:?}");
        let back: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(back["text"].as_str(), Some(text.as_str()));
    }

    #[test]
    fn dedup_ids_keep_fitting_ids_and_hash_the_rest() {
        assert_eq!(dedup_id("wamid.HBgL=", None), "wamid.HBgL=");
        assert_eq!(dedup_id("wamid.X", Some("reply")), "wamid.X:reply");
        let long = "w".repeat(200);
        let hashed = dedup_id(&long, None);
        assert_eq!(hashed.len(), 64);
        assert_eq!(hashed, dedup_id(&long, None));
        assert_ne!(dedup_id("a b", None), "a b");
    }

    #[test]
    fn batches_hold_at_most_ten_entries_and_stay_under_the_size_bound() {
        let small = Outgoing {
            body: "x".into(),
            group_id: "g".into(),
            dedup_id: "d".into(),
        };
        let sizes: Vec<usize> = batches(&vec![small; 23]).map(<[Outgoing]>::len).collect();
        assert_eq!(sizes, vec![10, 10, 3]);
        let big = Outgoing {
            body: "y".repeat(100 * 1024),
            group_id: "g".into(),
            dedup_id: "d".into(),
        };
        let sizes: Vec<usize> = batches(&vec![big; 5]).map(<[Outgoing]>::len).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
    }
}
