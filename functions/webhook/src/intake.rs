//! The POST path without I/O: check the signature, parse the notification, and work
//! out what to enqueue and what to quarantine. The handler then does the I/O.

use std::collections::BTreeMap;

use remedios_shared::envelope::{InboundMessage, Origin};
use remedios_shared::queue::{self, Outgoing};
use remedios_shared::signature::{self, SignatureError};
use remedios_shared::user::{Sender, SenderList, TagKey, UserKey};
use remedios_shared::whatsapp::webhook::{
    ChangeValue, ECHOES_FIELD, Lenient, Metadata, Notification, Status,
};
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
    /// Of `messages`, those a person sent from the WhatsApp Business app (echoes).
    pub echoes: usize,
    /// Of `messages`, those from staff numbers.
    pub staff: usize,
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
    /// Staff numbers: their messages are marked [`Origin::Staff`] (and always taken in).
    pub staff: SenderList,
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
        match change.field.as_str() {
            "messages" => triage_change(&change.value, now_ms, intake, &mut triage),
            ECHOES_FIELD => triage_echoes(&change.value, now_ms, intake, &mut triage),
            field => debug!(field, "ignoring a change to another webhook field"),
        }
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
    if !serving(intake, metadata, value.messages.len(), triage) {
        return;
    }
    for message in &value.messages {
        let message = match message {
            Lenient::Valid(message) => message,
            Lenient::Invalid { id, error } => {
                // The others go on; this one is kept with the body in quarantine.
                let message = named(intake, id.as_deref());
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
        let mut envelope = envelope;
        if intake.staff.contains(&envelope.sender) {
            envelope.origin = Origin::Staff;
        } else if !allows(&intake.allow, &envelope.sender) {
            info!(user = %envelope.user, message = %envelope.message_tag, "dropping a message from a sender outside ALLOWED_SENDERS");
            triage.refused_senders += 1;
            continue;
        }
        enqueue(&envelope, triage);
    }
}

/// The `smb_message_echoes` change: what a person of the business sent from the WhatsApp
/// Business app, each filed under the customer it went to (their FIFO group, their
/// conversation), marked [`Origin::Echo`].
fn triage_echoes(value: &ChangeValue, now_ms: i64, intake: &Intake, triage: &mut Triage) {
    if value.message_echoes.is_empty() {
        return;
    }
    let Some(metadata) = value.metadata.as_ref().and_then(Lenient::valid) else {
        triage.quarantine = Some("message echoes without metadata.phone_number_id".into());
        return;
    };
    if !serving(intake, metadata, value.message_echoes.len(), triage) {
        return;
    }
    let contacts = value.valid_contacts();
    for echo in &value.message_echoes {
        let echo = match echo {
            Lenient::Valid(echo) => echo,
            Lenient::Invalid { id, .. } => {
                let message = named(intake, id.as_deref());
                warn!(message = %message, "dropping a message echo whose fields do not have the types Meta documents");
                triage.quarantine = Some(format!(
                    "message echo {message} does not parse as a WhatsApp message echo"
                ));
                continue;
            }
        };
        if echo.message.id.is_empty() {
            triage.quarantine = Some("a message echo without an id".into());
            continue;
        }
        let Some(envelope) =
            InboundMessage::from_echo(echo, metadata, &contacts, &intake.tags, now_ms)
        else {
            triage.quarantine = Some(format!(
                "message echo {} names no customer (no to, no to_user_id)",
                intake.tags.message(&echo.message.id)
            ));
            continue;
        };
        if !allows(&intake.allow, &envelope.sender) {
            // Remedios does not talk to this customer: nothing to hand over.
            debug!(user = %envelope.user, "ignoring an echo to a customer outside ALLOWED_SENDERS");
            continue;
        }
        enqueue(&envelope, triage);
    }
}

/// A message in logs and quarantine notes: its keyed tag, never its id.
fn named(intake: &Intake, id: Option<&str>) -> String {
    id.map_or_else(
        || "(no id)".to_owned(),
        |id| intake.tags.message(id).to_string(),
    )
}

/// Whether the change's business number is ours; counts the messages dropped if not.
fn serving(intake: &Intake, metadata: &Metadata, messages: usize, triage: &mut Triage) -> bool {
    if intake.serves(&metadata.phone_number_id) {
        return true;
    }
    // Another number of the same business account (`--subscribe` subscribes them all).
    info!(
        phone_number_id = %metadata.phone_number_id,
        messages,
        "dropping messages to a business number this deployment does not serve (WHATSAPP_PHONE_NUMBER_ID)"
    );
    triage.other_numbers += messages;
    false
}

/// Puts `envelope` on the list to enqueue, in its user's group, deduplicated by its tag.
fn enqueue(envelope: &InboundMessage, triage: &mut Triage) {
    let (user, tag) = (&envelope.user, &envelope.message_tag);
    debug!(user = %user, message = %tag, kind = envelope.content.kind(), origin = envelope.origin.name(), "enqueueing a message");
    match Outgoing::new(envelope, user, queue::dedup_id(tag.as_str(), None)) {
        Ok(outgoing) => {
            triage.messages.push(outgoing);
            *triage.types.entry(envelope.content.kind()).or_default() += 1;
            match envelope.origin {
                Origin::Echo => triage.echoes += 1,
                Origin::Staff => triage.staff += 1,
                Origin::User => {}
            }
        }
        // Serialising our own types cannot fail in practice; keep the body if it does.
        Err(e) => triage.quarantine = Some(format!("message {tag} could not be serialised: {e}")),
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
            staff: SenderList::default(),
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

    /// An `smb_message_echoes` change as Meta documents it: the business's number in
    /// `from`, the customer in `to` and `to_user_id`, then `id`, `timestamp`, `type` and
    /// the content.
    fn echo(to: &str, to_user_id: Option<&str>) -> Vec<u8> {
        let user_id = to_user_id.map_or(String::new(), |u| format!(r#","to_user_id":"{u}""#));
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"WABA","changes":[{{"field":"smb_message_echoes","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550009999","phone_number_id":"PNID"}},"message_echoes":[{{"from":"15550009999","to":"{to}"{user_id},"id":"wamid.ECHO1","timestamp":"1765000000","type":"text","text":{{"body":"Hi, this is Ana from the shop"}}}}]}}}}]}}]}}"#
        )
        .into_bytes()
    }

    fn decoded(triage: &Triage) -> Vec<InboundMessage> {
        triage
            .messages
            .iter()
            .map(|m| remedios_shared::envelope::decode(&m.body).expect("an inbound message"))
            .collect()
    }

    #[test]
    fn an_echo_is_filed_under_the_customer_it_went_to_and_marked_as_from_the_business_app() {
        let intake = open();
        let triage = triage(&echo("15551230000", Some("US.77")), 5, &intake);
        assert_eq!(triage.quarantine, None);
        assert_eq!(
            (triage.messages.len(), triage.echoes, triage.staff),
            (1, 1, 0)
        );
        let [message] = decoded(&triage).try_into().unwrap();
        assert_eq!(message.origin, Origin::Echo);
        assert_eq!(message.sender.wa_id.as_deref(), Some("15551230000"));
        assert_eq!(message.sender.user_id.as_deref(), Some("US.77"));
        assert_eq!(message.user, message.sender.key().tag(&intake.tags));
        assert_eq!(triage.messages[0].group_id, message.user.as_str());
        assert_eq!(message.id, "wamid.ECHO1");
        assert_eq!(message.timestamp, 1_765_000_000);
        assert_eq!(
            message.content,
            remedios_shared::envelope::Content::Text {
                body: "Hi, this is Ana from the shop".into()
            }
        );
        // The same customer writing gets the same group and conversation.
        let phone_only = triage_one(&echo("15551230000", None), &intake);
        assert_eq!(phone_only.origin, Origin::Echo);
    }

    fn triage_one(body: &[u8], intake: &Intake) -> InboundMessage {
        let [message] = decoded(&triage(body, 0, intake)).try_into().unwrap();
        message
    }

    #[test]
    fn an_echo_that_names_no_customer_is_quarantined_and_one_to_another_number_dropped() {
        let nobody = String::from_utf8(echo("", None)).unwrap();
        let triage_nobody = triage(nobody.as_bytes(), 0, &open());
        assert!(triage_nobody.messages.is_empty());
        assert!(
            triage_nobody
                .quarantine
                .unwrap()
                .contains("names no customer"),
            "the body is kept"
        );
        let other = Intake {
            numbers: vec!["OTHER".into()],
            ..open()
        };
        let triage_other = triage(&echo("15551230000", None), 0, &other);
        assert!(triage_other.messages.is_empty());
        assert_eq!(triage_other.other_numbers, 1);
    }

    #[test]
    fn staff_numbers_are_marked_as_staff_and_pass_the_allow_list() {
        let intake = Intake {
            allow: SenderList::parse(Some("15550001111")),
            staff: SenderList::parse(Some("+1 555 000 2222")),
            ..open()
        };
        let from = |number: &str| {
            format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"WABA","changes":[{{"field":"messages","value":{{"metadata":{{"phone_number_id":"PNID"}},"messages":[{{"from":"{number}","id":"wamid.{number}","timestamp":"1","type":"text","text":{{"body":"hello"}}}}]}}}}]}}]}}"#
            )
        };
        let staff = triage(from("15550002222").as_bytes(), 0, &intake);
        assert_eq!((staff.messages.len(), staff.staff), (1, 1));
        assert_eq!(decoded(&staff)[0].origin, Origin::Staff);
        let user = triage(from("15550001111").as_bytes(), 0, &intake);
        assert_eq!(decoded(&user)[0].origin, Origin::User);
        let stranger = triage(from("15550003333").as_bytes(), 0, &intake);
        assert_eq!((stranger.messages.len(), stranger.refused_senders), (0, 1));
    }
}
