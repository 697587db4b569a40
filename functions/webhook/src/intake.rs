//! The POST path without I/O: check the signature, parse the notification, and work
//! out what to enqueue and what to quarantine. The handler then does the I/O.

use std::collections::BTreeMap;

use remedios_shared::envelope::InboundMessage;
use remedios_shared::queue::{self, Outgoing};
use remedios_shared::signature::{self, SignatureError};
use remedios_shared::user::{Sender, SenderList, TagKey, UserKey};
use remedios_shared::whatsapp::webhook::{ChangeValue, Lenient, Notification, Status};
use tracing::{debug, info, warn};

/// The `object` of WhatsApp notifications.
pub const WHATSAPP_OBJECT: &str = "whatsapp_business_account";

/// What to do with a correctly signed body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Triage {
    /// One queue message per inbound WhatsApp message, in notification order.
    pub messages: Vec<Outgoing>,
    /// How many of `messages` are of each type (`text`, `audio`, …), for the metrics.
    pub types: BTreeMap<&'static str, usize>,
    /// Status updates seen (logged, not enqueued).
    pub statuses: usize,
    /// Messages from senders outside the allow-list (dropped).
    pub refused_senders: usize,
    /// Messages to a number of the business account this deployment does not serve
    /// (dropped).
    pub other_numbers: usize,
    /// Set when (part of) the body could not be understood: the raw body is kept in
    /// the quarantine prefix so no new payload shape is lost.
    pub quarantine: Option<String>,
}

/// Whether `sender` may talk to Remedios: everyone when no list is configured.
pub fn allows(list: &SenderList, sender: &Sender) -> bool {
    list.is_empty() || list.contains(sender)
}

/// Checks the signature, then triages. The signature is checked before anything of
/// the body is read.
pub fn verify_and_triage(
    app_secret: &[u8],
    signature_header: Option<&[u8]>,
    body: &[u8],
    now_ms: i64,
    intake: &Intake,
) -> Result<Triage, SignatureError> {
    signature::verify(app_secret, body, signature_header)?;
    Ok(triage(body, now_ms, intake))
}

/// How messages are taken in: who may write, and the deployment's key their user tags
/// are made with.
#[derive(Debug, Clone)]
pub struct Intake {
    /// Who may talk to Remedios; an empty list lets everyone.
    pub allow: SenderList,
    pub tags: TagKey,
    /// The business phone number ids answered for; empty answers every one.
    pub numbers: Vec<String>,
}

impl Intake {
    /// Whether messages to business number `phone_number_id` are ours to answer.
    pub fn serves(&self, phone_number_id: &str) -> bool {
        self.numbers.is_empty() || self.numbers.iter().any(|n| n == phone_number_id)
    }
}

/// Triages a signed body: parses it and builds the queue messages.
pub fn triage(body: &[u8], now_ms: i64, intake: &Intake) -> Triage {
    let notification: Notification = match serde_json::from_slice(body) {
        Ok(n) => n,
        Err(e) => {
            return Triage {
                quarantine: Some(format!("body is not a WhatsApp notification: {e}")),
                ..Triage::default()
            };
        }
    };
    let mut triage = Triage::default();
    if notification.object != WHATSAPP_OBJECT {
        warn!(object = %notification.object, "ignoring a notification that is not about WhatsApp");
        return triage;
    }
    for change in notification.entry.iter().flat_map(|e| &e.changes) {
        if change.field != "messages" {
            debug!(field = %change.field, "ignoring a change to another webhook field");
            continue;
        }
        triage_change(&change.value, now_ms, intake, &mut triage);
    }
    triage
}

fn triage_change(value: &ChangeValue, now_ms: i64, intake: &Intake, triage: &mut Triage) {
    for error in value.errors.iter().filter_map(Lenient::valid) {
        warn!(
            code = error.code,
            title = error.title.as_deref().unwrap_or(""),
            "WhatsApp reported an error in a notification"
        );
    }
    for status in value.statuses.iter().filter_map(Lenient::valid) {
        log_status(status, &intake.tags);
        triage.statuses += 1;
    }
    let invalid = value.invalid_others();
    if invalid > 0 {
        // The rest goes on; the body is kept for a look at the new shape.
        warn!(
            invalid,
            "contacts, statuses, errors or metadata whose fields do not have the types Meta documents"
        );
        triage.quarantine = Some(format!(
            "{invalid} contacts, statuses, errors or metadata do not parse"
        ));
    }
    if value.messages.is_empty() {
        return;
    }
    let Some(metadata) = value.metadata.as_ref().and_then(Lenient::valid) else {
        triage.quarantine = Some("messages without metadata.phone_number_id".into());
        return;
    };
    let contacts = value.valid_contacts();
    if !intake.serves(&metadata.phone_number_id) {
        // Another number of the same business account (`--subscribe` subscribes them all).
        info!(
            phone_number_id = %metadata.phone_number_id,
            messages = value.messages.len(),
            "dropping messages to a business number this deployment does not serve (WHATSAPP_PHONE_NUMBER_ID)"
        );
        triage.other_numbers += value.messages.len();
        return;
    }
    for message in &value.messages {
        let message = match message {
            Lenient::Valid(message) => message,
            Lenient::Invalid { id, error } => {
                // The others go on; this one is kept with the body in quarantine.
                let message = id.as_deref().map_or_else(
                    || "(no id)".to_owned(),
                    |id| intake.tags.message(id).to_string(),
                );
                warn!(message = %message, "dropping a message whose fields do not have the types Meta documents");
                debug!(message = %message, error = %error, "why the message does not parse");
                triage.quarantine = Some(format!(
                    "message {message} does not parse as a WhatsApp message"
                ));
                continue;
            }
        };
        if message.id.is_empty() {
            triage.quarantine = Some("a message without an id".into());
            continue;
        }
        let Some(envelope) =
            InboundMessage::from_webhook(message, metadata, &contacts, &intake.tags, now_ms)
        else {
            triage.quarantine = Some(format!(
                "message {} names no sender (no from, no from_user_id)",
                intake.tags.message(&message.id)
            ));
            continue;
        };
        let (user, tag) = (&envelope.user, &envelope.message_tag);
        if !allows(&intake.allow, &envelope.sender) {
            info!(user = %user, message = %tag, "dropping a message from a sender outside ALLOWED_SENDERS");
            triage.refused_senders += 1;
            continue;
        }
        debug!(user = %user, message = %tag, kind = envelope.content.kind(), "enqueueing a message");
        match Outgoing::new(&envelope, user, queue::dedup_id(tag.as_str(), None)) {
            Ok(outgoing) => {
                triage.messages.push(outgoing);
                *triage.types.entry(envelope.content.kind()).or_default() += 1;
            }
            // Serialising our own types cannot fail in practice; keep the body if it does.
            Err(e) => {
                triage.quarantine = Some(format!("message {tag} could not be serialised: {e}"))
            }
        }
    }
}

/// Logs a status update of a message we sent: the message and its recipient appear as
/// their keyed tags (an outbound wamid holds the recipient's number too).
fn log_status(status: &Status, tags: &TagKey) {
    let recipient = status
        .recipient_user_id
        .as_deref()
        .or(status.recipient_id.as_deref())
        .map(|id| UserKey::new(id).tag(tags).to_string())
        .unwrap_or_default();
    let message = tags.message(&status.id);
    if status.status == "failed" {
        for error in &status.errors {
            warn!(message = %message, recipient = %recipient, code = error.code, title = error.title.as_deref().unwrap_or(""), "a message we sent failed");
        }
        if status.errors.is_empty() {
            warn!(message = %message, recipient = %recipient, "a message we sent failed (no error given)");
        }
    } else {
        debug!(message = %message, recipient = %recipient, status = %status.status, "status update");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> Intake {
        Intake {
            allow: SenderList::default(),
            tags: TagKey::new("intake-test-key-intake-test-key-0").expect("a tag key"),
            numbers: Vec::new(),
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
        let triage = triage(b"{not json", 0, &open());
        assert!(triage.messages.is_empty());
        assert!(
            triage
                .quarantine
                .unwrap()
                .contains("not a WhatsApp notification")
        );
    }

    #[test]
    fn other_objects_and_fields_are_acknowledged_and_ignored() {
        let page = br#"{"object":"page","entry":[]}"#;
        assert_eq!(triage(page, 0, &open()), Triage::default());
        let other_field = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"account_update","value":{}}]}]}"#;
        assert_eq!(triage(other_field, 0, &open()), Triage::default());
    }
}
