//! The POST path without I/O: check the signature, parse the notification, and work
//! out what to enqueue and what to quarantine. The handler then does the I/O.

use std::collections::BTreeMap;

use remedios_shared::envelope::InboundMessage;
use remedios_shared::queue::{self, Outgoing};
use remedios_shared::signature::{self, SignatureError};
use remedios_shared::user::{Sender, SenderList, TagKey, redact};
use remedios_shared::whatsapp::webhook::{ChangeValue, Lenient, Notification, Status};
use tracing::{debug, info, warn};

/// The `object` of WhatsApp notifications.
pub const WHATSAPP_OBJECT: &str = "whatsapp_business_account";

/// What to do with a correctly signed body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One queue message per inbound WhatsApp message, in notification order.
    pub messages: Vec<Outgoing>,
    /// How many of `messages` are of each type (`text`, `audio`, …), for the metrics.
    pub types: BTreeMap<&'static str, usize>,
    /// Status updates seen (logged, not enqueued).
    pub statuses: usize,
    /// Messages from senders outside the allow-list (dropped).
    pub refused_senders: usize,
    /// Set when (part of) the body could not be understood: the raw body is kept in
    /// the quarantine prefix so no new payload shape is lost.
    pub quarantine: Option<String>,
}

/// Whether `sender` may talk to Remedios: everyone when no list is configured.
pub fn allows(list: &SenderList, sender: &Sender) -> bool {
    list.is_empty() || list.contains(sender)
}

/// Checks the signature, then plans. The signature is checked before anything of
/// the body is read.
pub fn verify_and_plan(
    app_secret: &[u8],
    signature_header: Option<&[u8]>,
    body: &[u8],
    now_ms: i64,
    intake: &Intake,
) -> Result<Plan, SignatureError> {
    signature::verify(app_secret, body, signature_header)?;
    Ok(plan(body, now_ms, intake))
}

/// How messages are taken in: who may write, and the deployment's key their user tags
/// are made with.
#[derive(Debug, Clone)]
pub struct Intake {
    /// Who may talk to Remedios; an empty list lets everyone.
    pub allow: SenderList,
    pub tags: TagKey,
}

/// Plans a signed body: parses it and builds the queue messages.
pub fn plan(body: &[u8], now_ms: i64, intake: &Intake) -> Plan {
    let notification: Notification = match serde_json::from_slice(body) {
        Ok(n) => n,
        Err(e) => {
            return Plan {
                quarantine: Some(format!("body is not a WhatsApp notification: {e}")),
                ..Plan::default()
            };
        }
    };
    let mut plan = Plan::default();
    if notification.object != WHATSAPP_OBJECT {
        warn!(object = %notification.object, "ignoring a notification that is not about WhatsApp");
        return plan;
    }
    for change in notification.entry.iter().flat_map(|e| &e.changes) {
        if change.field != "messages" {
            debug!(field = %change.field, "ignoring a change to another webhook field");
            continue;
        }
        plan_change(&change.value, now_ms, intake, &mut plan);
    }
    plan
}

fn plan_change(value: &ChangeValue, now_ms: i64, intake: &Intake, plan: &mut Plan) {
    for error in &value.errors {
        warn!(
            code = error.code,
            title = error.title.as_deref().unwrap_or(""),
            "WhatsApp reported an error in a notification"
        );
    }
    for status in &value.statuses {
        log_status(status);
        plan.statuses += 1;
    }
    if value.messages.is_empty() {
        return;
    }
    let Some(metadata) = &value.metadata else {
        plan.quarantine = Some("messages without metadata.phone_number_id".into());
        return;
    };
    for message in &value.messages {
        let message = match message {
            Lenient::Valid(message) => message,
            Lenient::Invalid { id, error } => {
                // The others go on; this one is kept with the body in quarantine.
                let id = id.as_deref().unwrap_or("(no id)");
                warn!(message_id = %id, "dropping a message whose fields do not have the types Meta documents");
                debug!(message_id = %id, error = %error, "why the message does not parse");
                plan.quarantine =
                    Some(format!("message {id} does not parse as a WhatsApp message"));
                continue;
            }
        };
        if message.id.is_empty() {
            plan.quarantine = Some("a message without an id".into());
            continue;
        }
        let Some(envelope) =
            InboundMessage::from_webhook(message, metadata, &value.contacts, &intake.tags, now_ms)
        else {
            plan.quarantine = Some(format!(
                "message {} names no sender (no from, no from_user_id)",
                message.id
            ));
            continue;
        };
        let user = &envelope.user;
        if !allows(&intake.allow, &envelope.sender) {
            info!(user = %user, message_id = %message.id, "dropping a message from a sender outside ALLOWED_SENDERS");
            plan.refused_senders += 1;
            continue;
        }
        debug!(user = %user, message_id = %message.id, kind = envelope.content.kind(), "enqueueing a message");
        match Outgoing::new(&envelope, user, queue::dedup_id(&message.id, None)) {
            Ok(outgoing) => {
                plan.messages.push(outgoing);
                *plan.types.entry(envelope.content.kind()).or_default() += 1;
            }
            // Serialising our own types cannot fail in practice; keep the body if it does.
            Err(e) => {
                plan.quarantine = Some(format!(
                    "message {} could not be serialised: {e}",
                    message.id
                ))
            }
        }
    }
}

fn log_status(status: &Status) {
    let recipient = status
        .recipient_user_id
        .as_deref()
        .or(status.recipient_id.as_deref())
        .map(redact)
        .unwrap_or_default();
    if status.status == "failed" {
        for error in &status.errors {
            warn!(message_id = %status.id, recipient = %recipient, code = error.code, title = error.title.as_deref().unwrap_or(""), "a message we sent failed");
        }
        if status.errors.is_empty() {
            warn!(message_id = %status.id, recipient = %recipient, "a message we sent failed (no error given)");
        }
    } else {
        debug!(message_id = %status.id, recipient = %recipient, status = %status.status, "status update");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> Intake {
        Intake {
            allow: SenderList::default(),
            tags: TagKey::new("intake-test-key-intake-test-key-0").expect("a tag key"),
        }
    }

    fn sender(wa: Option<&str>, user: Option<&str>) -> Sender {
        Sender {
            wa_id: wa.map(Into::into),
            user_id: user.map(Into::into),
            username: None,
            profile_name: None,
        }
    }

    #[test]
    fn the_allow_list_matches_phone_numbers_in_any_format_and_bsuids() {
        let allow = SenderList::parse(Some("+1 (555) 123-4567, US.99"));
        assert!(allows(&allow, &sender(Some("15551234567"), None)));
        assert!(allows(&allow, &sender(None, Some("US.99"))));
        assert!(!allows(&allow, &sender(Some("15550000000"), Some("US.1"))));
        assert!(allows(&SenderList::parse(None), &sender(Some("1"), None)));
    }

    #[test]
    fn a_body_that_is_not_json_is_quarantined() {
        let plan = plan(b"{not json", 0, &open());
        assert!(plan.messages.is_empty());
        assert!(
            plan.quarantine
                .unwrap()
                .contains("not a WhatsApp notification")
        );
    }

    #[test]
    fn other_objects_and_fields_are_acknowledged_and_ignored() {
        let page = br#"{"object":"page","entry":[]}"#;
        assert_eq!(plan(page, 0, &open()), Plan::default());
        let other_field = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"account_update","value":{}}]}]}"#;
        assert_eq!(plan(other_field, 0, &open()), Plan::default());
    }
}
