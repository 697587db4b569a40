//! What Lambda's SQS event source mapping hands a function: messages received from a
//! queue, as an [`SqsEvent`] shaped as Lambda sends it (`eventSource`, `eventSourceARN`,
//! `awsRegion`, the system attributes such as `ApproximateReceiveCount`,
//! `MessageGroupId`). The local stack's event pump sends these, and the functions' tests
//! build them from what they receive themselves.

use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{Message, MessageAttributeValue};

/// The Lambda event for `messages` received from the queue `queue_arn`.
pub fn sqs_event(messages: &[Message], queue_arn: &str, region: &str) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| record(m, queue_arn, region))
        .collect();
    event
}

fn record(m: &Message, queue_arn: &str, region: &str) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = m.message_id.clone();
    record.receipt_handle = m.receipt_handle.clone();
    record.body = m.body.clone();
    record.md5_of_body = m.md5_of_body.clone();
    record.md5_of_message_attributes = m.md5_of_message_attributes.clone();
    record.attributes = m
        .attributes
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
        .collect();
    record.message_attributes = m
        .message_attributes
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), attribute(v)))
        .collect();
    record.event_source_arn = Some(queue_arn.to_owned());
    record.event_source = Some("aws:sqs".to_owned());
    record.aws_region = Some(region.to_owned());
    record
}

fn attribute(v: &MessageAttributeValue) -> SqsMessageAttribute {
    let mut a = SqsMessageAttribute::default();
    a.string_value = v.string_value.clone();
    a.binary_value = v.binary_value.as_ref().map(|b| base64_data(b.as_ref()));
    a.string_list_values = v.string_list_values.clone().unwrap_or_default();
    a.binary_list_values = v
        .binary_list_values
        .iter()
        .flatten()
        .map(|b| base64_data(b.as_ref()))
        .collect();
    a.data_type = Some(v.data_type.clone());
    a
}

fn base64_data(bytes: &[u8]) -> Base64Data {
    let mut data = Base64Data::default();
    data.extend_from_slice(bytes);
    data
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::types::MessageSystemAttributeName;

    use super::*;

    #[test]
    fn records_look_like_what_lambda_sends() {
        let m = Message::builder()
            .message_id("m1")
            .receipt_handle("rh")
            .body("{}")
            .attributes(MessageSystemAttributeName::MessageGroupId, "g")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2")
            .build();
        let event = sqs_event(
            &[m],
            "arn:aws:sqs:us-east-1:123456789012:q.fifo",
            "us-east-1",
        );
        let json = serde_json::to_value(&event).unwrap();
        let r = &json["Records"][0];
        assert_eq!(r["eventSource"], "aws:sqs");
        assert_eq!(
            r["eventSourceARN"],
            "arn:aws:sqs:us-east-1:123456789012:q.fifo"
        );
        assert_eq!(r["awsRegion"], "us-east-1");
        assert_eq!(r["attributes"]["MessageGroupId"], "g");
        assert_eq!(r["attributes"]["ApproximateReceiveCount"], "2");
        assert_eq!(r["messageId"], "m1");
    }
}
