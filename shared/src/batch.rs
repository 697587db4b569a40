//! One SQS FIFO batch, record by record, in the order of each user's messages.
//!
//! Both queue consumers (the transcriber and the responder) take their batches the same
//! way: records one after another; a failed record is reported in the
//! [`SqsBatchResponse`] so SQS delivers it again; and once a record of a message group
//! (one user) has failed, the later records of that group in the batch are not
//! processed but reported failed too, so they are retried after it, in order. Records of
//! other groups go on.

use std::collections::HashSet;
use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};

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

/// Runs `handle` on each record of `records` in order and reports the failures.
///
/// `group` names a record's FIFO group (usually [`group_of`]); `handle` returns whether
/// the record is done (`Ok`) or must be delivered again (`Err`, logged by the handler,
/// which knows why). A record whose group failed earlier in the batch is not handled.
pub async fn in_order<'r, G, H, F, T, E>(
    records: &'r [SqsMessage],
    mut group: G,
    mut handle: H,
) -> SqsBatchResponse
where
    G: FnMut(&'r SqsMessage) -> Option<String>,
    H: FnMut(&'r SqsMessage) -> F,
    F: Future<Output = Result<T, E>>,
{
    let mut response = SqsBatchResponse::default();
    let mut failed_groups: HashSet<String> = HashSet::new();
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
        if handle(record).await.is_err() {
            response.add_failure(sqs_message_id);
            failed_groups.extend(group);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let response = in_order(&records, group_of, |r| {
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
    fn the_receive_count_defaults_to_the_first_delivery() {
        let mut r = record("x", None);
        assert_eq!(receive_count(&r), 1);
        r.attributes
            .insert(RECEIVE_COUNT_ATTRIBUTE.to_owned(), "4".to_owned());
        assert_eq!(receive_count(&r), 4);
    }
}
