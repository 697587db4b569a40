//! One SQS FIFO batch, record by record, in the order of each user's messages.
//!
//! Both queue consumers (the transcriber and the responder) take their batches the same
//! way: records one after another; a failed record is reported in the
//! [`SqsBatchResponse`] so SQS delivers it again; and once a record of a message group
//! (one user) has failed, the later records of that group in the batch are not
//! processed but reported failed too, so they are retried after it, in order. Records of
//! other groups go on.
//!
//! # The failure policy
//!
//! Every stage sorts what goes wrong with a message into one of three:
//!
//! - **What the user sent decides it** (audio we cannot decode or that is too long to
//!   transcribe in time, media that is gone or too big, a question the model host refuses
//!   for good, such as a prompt over its context or a model it does not have): answered
//!   at once with a fixed, kind text, and logged. Never retried: it would fail the same.
//! - **Transient** (S3, SQS, the Graph API's rate limits and 5xx, the model host down,
//!   overloaded or slower than the invocation has time for): the record is reported
//!   failed and comes back after [`backoff`] (10 s, 30 s, 90 s, 270 s), not after the
//!   queue's visibility timeout ([`retry_soon`]); the user's later messages wait behind
//!   it, in order.
//! - **The last delivery** (`ApproximateReceiveCount` at the queue's `maxReceiveCount`,
//!   [`DEFAULT_MAX_RECEIVE_COUNT`] by default): the transcriber forwards the message
//!   with what went wrong instead of failing again, and the responder sends one apology,
//!   so nobody waits for an answer that will not come. The job then goes on to the
//!   dead-letter queue at once for the operator (the responder's), or is done (the
//!   transcriber's).
//!
//! Each function reads its invocation's deadline and keeps a margin for what must
//! happen after the slow part (storing and forwarding, or the apology): whisper stops
//! before a chunk that would not finish in time, and the model client's attempts share
//! what is left. Only a function that dies (out of memory, killed) leaves its message to
//! the visibility timeout. With the template's defaults a message that fails on every
//! delivery reaches its last one about 7 minutes after the first (plus the time the
//! attempts themselves take); the worst, every attempt using its whole timeout, is
//! 5 × 300 s + 400 s ≈ 32 minutes in the transcriber and 5 × 120 s + 400 s ≈
//! 17 minutes in the responder.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};

use crate::queue::Queue;

/// The queues' `maxReceiveCount` unless configured (the template's `MaxReceiveCount`):
/// SQS delivers a message at most this many times, then moves it to the dead-letter
/// queue.
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 5;
/// The receive counts the functions accept for it (the template parameter's range).
pub const MAX_RECEIVE_COUNT_RANGE: std::ops::RangeInclusive<u32> = 2..=20;

/// The inbound queue's `maxReceiveCount`, as the transcriber reads it.
pub const INBOUND_MAX_RECEIVE_COUNT: crate::config::Number<u32> = crate::config::Number {
    name: "INBOUND_MAX_RECEIVE_COUNT",
    default: DEFAULT_MAX_RECEIVE_COUNT,
    min: *MAX_RECEIVE_COUNT_RANGE.start(),
    max: *MAX_RECEIVE_COUNT_RANGE.end(),
    doc: "the inbound queue's maxReceiveCount: the last attempt forwards what it has",
};
/// The reply queue's `maxReceiveCount`, as the responder reads it.
pub const REPLY_MAX_RECEIVE_COUNT: crate::config::Number<u32> = crate::config::Number {
    name: "REPLY_MAX_RECEIVE_COUNT",
    doc: "the reply queue's maxReceiveCount: the last attempt apologises",
    ..INBOUND_MAX_RECEIVE_COUNT
};

/// The SQS attribute holding a FIFO message's group id.
pub const GROUP_ATTRIBUTE: &str = "MessageGroupId";
/// The SQS attribute counting deliveries (1 at the first).
pub const RECEIVE_COUNT_ATTRIBUTE: &str = "ApproximateReceiveCount";

/// A record's FIFO group, from its attributes.
pub fn group_of(record: &SqsMessage) -> Option<String> {
    record.attributes.get(GROUP_ATTRIBUTE).cloned()
}

/// How many times SQS has delivered `record`, this delivery included (1 when unknown).
pub fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get(RECEIVE_COUNT_ATTRIBUTE)
        .and_then(|c| c.parse::<u32>().ok())
        .unwrap_or(1)
}

/// Where a consumer's failed records come back from: its source queue, when it knows
/// it, and the queue's `maxReceiveCount`.
#[derive(Debug, Clone, Copy)]
pub struct Redelivery<'q> {
    /// The queue the batch came from; `None` leaves failed records to the visibility
    /// timeout.
    pub source: Option<&'q Queue>,
    pub max_receive_count: u32,
}

/// A record a handler could not finish: it comes back after its [`backoff`], unless the
/// handler says when ([`Failure::comes_back_after`]: a timer not yet due).
pub trait Failure {
    fn comes_back_after(&self) -> Option<Duration> {
        None
    }
}

impl Failure for () {}

/// Runs `handle` on each record of `records` in order, reports the failures, and brings
/// them back after their [`backoff`], or when the handler said, through `redelivery`
/// ([`retry_soon`]).
///
/// `group` names a record's FIFO group (usually [`group_of`]); `handle` returns whether
/// the record is done (`Ok`) or must be delivered again (`Err`, logged by the handler,
/// which knows why). A record whose group failed earlier in the batch is not handled.
pub async fn in_order<'r, G, H, F, T, E>(
    records: &'r [SqsMessage],
    redelivery: Redelivery<'_>,
    mut group: G,
    mut handle: H,
) -> SqsBatchResponse
where
    G: FnMut(&'r SqsMessage) -> Option<String>,
    H: FnMut(&'r SqsMessage) -> F,
    F: Future<Output = Result<T, E>>,
    E: Failure,
{
    let mut response = SqsBatchResponse::default();
    let mut failed_groups: HashSet<String> = HashSet::new();
    let mut chosen: HashMap<String, Duration> = HashMap::new();
    for record in records {
        let sqs_message_id = record.message_id.clone().unwrap_or_default();
        let group = group(record);
        if group.as_ref().is_some_and(|g| failed_groups.contains(g)) {
            tracing::warn!(
                sqs_message_id,
                "an earlier message of this user failed in this batch; retrying this one after it"
            );
            response.add_failure(sqs_message_id);
            continue;
        }
        if let Err(failure) = handle(record).await {
            if let Some(after) = failure.comes_back_after() {
                chosen.insert(sqs_message_id.clone(), after);
            }
            response.add_failure(sqs_message_id);
            failed_groups.extend(group);
        }
    }
    if let Some(source) = redelivery.source {
        retry_soon(
            source,
            records,
            &response,
            &chosen,
            redelivery.max_receive_count,
        )
        .await;
    }
    response
}

/// The longest SQS hides a received message (`ChangeMessageVisibility` takes 12 hours
/// at most).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// How long a failed record waits before its next delivery, by how many times it has been
/// delivered: 10 s after the first, then three times longer each time, at most 5 minutes.
pub fn backoff(receive_count: u32) -> Duration {
    let factor = 3u64.saturating_pow(receive_count.saturating_sub(1).min(10));
    Duration::from_secs(10u64.saturating_mul(factor).min(300))
}

/// Brings the records `response` reports failed back after their [`backoff`] (or the
/// time `chosen` gives, by SQS message id) instead of the queue's visibility timeout; a
/// record on its last delivery (`max_receive_count`) at once, so SQS moves it to the
/// dead-letter queue and the user's later messages go on. A change SQS refuses is only
/// logged: that record then comes back after the visibility timeout, as it would
/// without this.
pub async fn retry_soon(
    source: &Queue,
    records: &[SqsMessage],
    response: &SqsBatchResponse,
    chosen: &HashMap<String, Duration>,
    max_receive_count: u32,
) {
    for failure in &response.batch_item_failures {
        let Some(record) = records
            .iter()
            .find(|r| r.message_id.as_deref() == Some(failure.item_identifier.as_str()))
        else {
            continue;
        };
        let Some(handle) = record.receipt_handle.as_deref() else {
            continue;
        };
        let count = receive_count(record);
        let after = if count >= max_receive_count {
            Duration::ZERO
        } else {
            chosen
                .get(&failure.item_identifier)
                .copied()
                .unwrap_or_else(|| backoff(count))
                .min(MAX_VISIBILITY)
        };
        match source.retry_in(handle, after).await {
            Ok(()) => tracing::debug!(
                sqs_message_id = failure.item_identifier,
                after_s = after.as_secs(),
                "the failed record comes back soon"
            ),
            Err(e) => tracing::warn!(
                sqs_message_id = failure.item_identifier,
                error = %e,
                "could not bring the failed record back sooner; it returns after the visibility timeout"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_SOURCE: Redelivery<'static> = Redelivery {
        source: None,
        max_receive_count: DEFAULT_MAX_RECEIVE_COUNT,
    };

    fn record(id: &str, group: Option<&str>) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = Some(id.to_owned());
        if let Some(g) = group {
            record
                .attributes
                .insert(GROUP_ATTRIBUTE.to_owned(), g.to_owned());
        }
        record
    }

    fn failed(response: &SqsBatchResponse) -> Vec<&str> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    #[tokio::test]
    async fn a_failure_holds_back_the_rest_of_its_group_only() {
        let records = [
            record("a1", Some("a")),
            record("b1", Some("b")),
            record("a2", Some("a")),
            record("b2", Some("b")),
            record("n1", None),
            record("n2", None),
        ];
        let mut handled = Vec::new();
        let response = in_order(&records, NO_SOURCE, group_of, |r| {
            let id = r.message_id.clone().unwrap_or_default();
            handled.push(id.clone());
            async move {
                if id == "a1" || id == "n1" {
                    Err(())
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(failed(&response), ["a1", "a2", "n1"]);
        assert_eq!(handled, ["a1", "b1", "b2", "n1", "n2"]);
    }

    #[test]
    fn the_backoff_grows_threefold_to_five_minutes() {
        let waits: Vec<u64> = (1..=6).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [10, 30, 90, 270, 300, 300]);
        assert_eq!(backoff(0).as_secs(), 10);
        assert_eq!(backoff(u32::MAX).as_secs(), 300);
        let before_the_fifth: u64 = waits[..4].iter().sum();
        assert_eq!(
            before_the_fifth, 400,
            "the documented 400 s to the last delivery"
        );
    }

    #[test]
    fn the_receive_count_defaults_to_the_first_delivery() {
        let mut r = record("x", None);
        assert_eq!(receive_count(&r), 1);
        r.attributes
            .insert(RECEIVE_COUNT_ATTRIBUTE.to_owned(), "4".to_owned());
        assert_eq!(receive_count(&r), 4);
    }
}
