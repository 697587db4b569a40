//! The versioned JSON messages that travel on our queues.
//!
//! - The webhook puts one [`InboundMessage`] per WhatsApp message on the inbound queue.
//! - The transcriber puts one [`ReplyJob`] per inbound message on the reply queue: the
//!   inbound message plus what it learned (a transcript, a stored media object, or why
//!   the media could not be used).
//! - The responder puts a [`HandoffTimer`] on the reply queue when a user starts waiting
//!   for a person, in a group of its own: it comes back when the wait times out.
//!   [`decode_reply_item`] tells the two apart.
//!
//! Both carry `v` ([`ENVELOPE_VERSION`]); a consumer refuses a version newer than it
//! knows with an error that says to deploy the functions together, and one older than
//! [`OLDEST_ENVELOPE_VERSION`] with an error that says what changed.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::allowance::Limit;
use crate::user::{MessageTag, Sender, TagKey, UserKey, UserTag};
use crate::whatsapp::webhook::{self, ApiError, MessageContent, Referral};

/// The envelope version this build writes and reads. Version 2 carries the keyed user
/// tag ([`InboundMessage::user`]), version 3 the keyed message tag
/// ([`InboundMessage::message_tag`]).
pub const ENVELOPE_VERSION: u32 = 3;
/// The oldest version this build reads: a version 1 message names no user tag, and only
/// the webhook holds the secret to make one. A version 2 message, queued by the release
/// before during an upgrade, is read with the unkeyed tag of its id
/// ([`MessageTag::unkeyed`]).
pub const OLDEST_ENVELOPE_VERSION: u32 = 2;

/// An inbound WhatsApp message, as the webhook enqueues it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub v: u32,
    /// The phone number id of our business number that received the message.
    pub phone_number_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_phone_number: Option<String>,
    pub sender: Sender,
    /// The sender's pseudonymous tag ([`TagKey::tag`] of [`InboundMessage::user_key`]):
    /// made once, by the webhook, which alone holds the deployment's secret; everything
    /// after files the message under it (S3 keys, FIFO group, logs).
    pub user: UserTag,
    /// The message's keyed tag ([`TagKey::message`] of [`InboundMessage::id`]), made by
    /// the webhook like [`InboundMessage::user`]: its name in S3 keys, deduplication ids
    /// and logs.
    pub message_tag: MessageTag,
    /// The WhatsApp message id (`wamid.…`). It holds the sender's phone number: only
    /// for the Graph API (mark-read, quoting), never in a key, an id or a log line.
    pub id: String,
    /// Unix seconds when the user sent it (Meta's timestamp).
    pub timestamp: i64,
    /// Unix milliseconds when our webhook accepted it.
    pub received_at_ms: i64,
    /// The message this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ReplyContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral: Option<Referral>,
    /// Set when the message was sent in a group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Who wrote it: the user (the default), a person of the business from the WhatsApp
    /// Business app (an echo, filed under the customer it went to), or a staff number
    /// (`STAFF_NUMBERS`). Only the webhook decides it.
    #[serde(default, skip_serializing_if = "Origin::is_user")]
    pub origin: Origin,
    pub content: Content,
}

/// Who wrote an inbound message (see [`InboundMessage::origin`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A user of the number: answered by the model (unless a person has the conversation).
    #[default]
    User,
    /// A person of the business, from the WhatsApp Business app, to the customer this
    /// message is filed under (`smb_message_echoes`): never answered, never counted
    /// against limits; it hands the conversation to a person for a while.
    Echo,
    /// A staff number writing to the business number: never sent to the model and never
    /// counted against limits; a reply that quotes a hand-over notification reaches that
    /// customer.
    Staff,
}

impl Origin {
    pub fn is_user(&self) -> bool {
        *self == Origin::User
    }

    /// The name in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Origin::User => "user",
            Origin::Echo => "echo",
            Origin::Staff => "staff",
        }
    }
}

impl InboundMessage {
    /// Builds the envelope of one webhook message, its user tagged with `tags`. `None`
    /// when the message names no sender at all (neither phone number nor business-scoped
    /// id): it cannot be answered or keyed, and the caller treats the body as malformed.
    pub fn from_webhook(
        message: &webhook::Message,
        metadata: &webhook::Metadata,
        contacts: &[webhook::Contact],
        tags: &TagKey,
        received_at_ms: i64,
    ) -> Option<Self> {
        let sender = Sender::from_webhook(message, contacts)?;
        Some(InboundMessage {
            v: ENVELOPE_VERSION,
            phone_number_id: metadata.phone_number_id.clone(),
            display_phone_number: metadata.display_phone_number.clone(),
            user: sender.key().tag(tags),
            sender,
            message_tag: tags.message(&message.id),
            id: message.id.clone(),
            timestamp: message.timestamp,
            received_at_ms,
            context: message.context.as_ref().and_then(|c| {
                c.id.as_ref().map(|id| ReplyContext {
                    message_id: id.clone(),
                    forwarded: c.forwarded.unwrap_or(false)
                        || c.frequently_forwarded.unwrap_or(false),
                })
            }),
            referral: message.referral.clone(),
            group_id: message.group_id.clone(),
            origin: Origin::User,
            content: Content::from(&message.content),
        })
    }

    /// Builds the envelope of an echo (a message a person sent from the WhatsApp Business
    /// app), filed under the customer it went to. `None` when the echo names no customer.
    pub fn from_echo(
        echo: &webhook::Echo,
        metadata: &webhook::Metadata,
        contacts: &[webhook::Contact],
        tags: &TagKey,
        received_at_ms: i64,
    ) -> Option<Self> {
        // The customer in the sender's place: that is whose conversation it belongs to.
        let as_inbound = webhook::Message {
            from: echo.to.clone(),
            from_user_id: echo.to_user_id.clone(),
            ..echo.message.clone()
        };
        let mut envelope =
            Self::from_webhook(&as_inbound, metadata, contacts, tags, received_at_ms)?;
        envelope.origin = Origin::Echo;
        Some(envelope)
    }

    /// The key everything about this user is stored and ordered under.
    pub fn user_key(&self) -> UserKey {
        self.sender.key()
    }
}

/// The message an inbound message replies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyContext {
    pub message_id: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forwarded: bool,
}

/// A media object to fetch from the Graph API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaRef {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl From<&webhook::Media> for MediaRef {
    fn from(m: &webhook::Media) -> Self {
        MediaRef {
            id: m.id.clone(),
            mime_type: m.mime_type.clone(),
            sha256: m.sha256.clone(),
        }
    }
}

/// What the user sent, reduced to what the next stages use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    Text {
        body: String,
    },
    Audio {
        media: MediaRef,
        /// A voice note recorded in WhatsApp (as opposed to an audio file).
        #[serde(default)]
        voice: bool,
    },
    Image {
        media: MediaRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    Video {
        media: MediaRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    Document {
        media: MediaRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
    },
    Sticker {
        media: MediaRef,
        #[serde(default)]
        animated: bool,
    },
    Location {
        latitude: f64,
        longitude: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
    Contacts {
        /// The names on the shared contact cards.
        names: Vec<String>,
    },
    /// A reply button, list row or flow the user chose.
    Interactive {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_id: Option<String>,
        title: String,
    },
    /// A quick-reply button of a template.
    Button {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<String>,
        text: String,
    },
    Reaction {
        message_id: String,
        /// `None` when the user removed their reaction.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        emoji: Option<String>,
    },
    Order {
        catalog_id: String,
        items: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    System {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// A type we cannot handle: the responder answers politely.
    Unsupported {
        original_type: String,
        /// What Meta says the user really sent (`edit`, `poll`, …), when it says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        errors: Vec<ApiError>,
    },
}

impl Content {
    /// The type name, as Meta spells it (`unsupported` for what we cannot handle).
    pub fn kind(&self) -> &'static str {
        match self {
            Content::Text { .. } => "text",
            Content::Audio { .. } => "audio",
            Content::Image { .. } => "image",
            Content::Video { .. } => "video",
            Content::Document { .. } => "document",
            Content::Sticker { .. } => "sticker",
            Content::Location { .. } => "location",
            Content::Contacts { .. } => "contacts",
            Content::Interactive { .. } => "interactive",
            Content::Button { .. } => "button",
            Content::Reaction { .. } => "reaction",
            Content::Order { .. } => "order",
            Content::System { .. } => "system",
            Content::Unsupported { .. } => "unsupported",
        }
    }

    /// The media object to fetch, for audio, image, video, document and sticker.
    pub fn media(&self) -> Option<&MediaRef> {
        match self {
            Content::Audio { media, .. }
            | Content::Image { media, .. }
            | Content::Video { media, .. }
            | Content::Document { media, .. }
            | Content::Sticker { media, .. } => Some(media),
            _ => None,
        }
    }

    /// The caption the user wrote under an image, video or document.
    pub fn caption(&self) -> Option<&str> {
        match self {
            Content::Image { caption, .. }
            | Content::Video { caption, .. }
            | Content::Document { caption, .. } => caption.as_deref(),
            _ => None,
        }
    }
}

impl From<&MessageContent> for Content {
    fn from(content: &MessageContent) -> Self {
        match content {
            MessageContent::Text(t) => Content::Text {
                body: t.body.clone(),
            },
            MessageContent::Audio(m) => Content::Audio {
                media: m.into(),
                voice: m.voice.unwrap_or(false),
            },
            MessageContent::Image(m) => Content::Image {
                media: m.into(),
                caption: m.caption.clone(),
            },
            MessageContent::Video(m) => Content::Video {
                media: m.into(),
                caption: m.caption.clone(),
            },
            MessageContent::Document(m) => Content::Document {
                media: m.into(),
                caption: m.caption.clone(),
                filename: m.filename.clone(),
            },
            MessageContent::Sticker(m) => Content::Sticker {
                media: m.into(),
                animated: m.animated.unwrap_or(false),
            },
            MessageContent::Location(l) => Content::Location {
                latitude: l.latitude,
                longitude: l.longitude,
                name: l.name.clone(),
                address: l.address.clone(),
            },
            MessageContent::Contacts(cards) => Content::Contacts {
                names: cards
                    .iter()
                    .filter_map(|c| c.name.as_ref())
                    .filter_map(|n| n.formatted_name.clone().or_else(|| n.first_name.clone()))
                    .collect(),
            },
            MessageContent::Interactive(i) => {
                let choice = i.button_reply.as_ref().or(i.list_reply.as_ref());
                match (choice, &i.nfm_reply) {
                    (Some(c), _) => Content::Interactive {
                        reply_id: Some(c.id.clone()),
                        title: c.title.clone(),
                    },
                    (None, Some(flow)) => Content::Interactive {
                        reply_id: flow.name.clone(),
                        title: flow.body.clone().unwrap_or_default(),
                    },
                    (None, None) => Content::Unsupported {
                        original_type: "interactive".to_owned(),
                        detail: Some(i.kind.clone()),
                        errors: Vec::new(),
                    },
                }
            }
            MessageContent::Button(b) => Content::Button {
                payload: b.payload.clone(),
                text: b.text.clone(),
            },
            MessageContent::Reaction(r) => Content::Reaction {
                message_id: r.message_id.clone(),
                emoji: r.emoji.clone().filter(|e| !e.is_empty()),
            },
            MessageContent::Order(o) => Content::Order {
                catalog_id: o.catalog_id.clone(),
                items: o.product_items.len(),
                text: o.text.clone(),
            },
            MessageContent::System(s) => Content::System {
                kind: s.kind.clone(),
                body: s.body.clone(),
            },
            MessageContent::Unsupported {
                kind,
                detail,
                errors,
            } => Content::Unsupported {
                original_type: kind.clone(),
                detail: detail.clone(),
                errors: errors.clone(),
            },
        }
    }
}

/// The transcriber's hand-over to the responder: the inbound message and what the
/// transcriber made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyJob {
    pub v: u32,
    pub message: InboundMessage,
    pub prepared: Prepared,
}

impl ReplyJob {
    pub fn new(message: InboundMessage, prepared: Prepared) -> Self {
        ReplyJob {
            v: ENVELOPE_VERSION,
            message,
            prepared,
        }
    }
}

/// A reminder the responder leaves itself on the reply queue when a user starts waiting
/// for a person: at `due_ms`, if that wait (the one that began at `since_ms`) is still
/// unanswered, the user is told and the assistant answers again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoffTimer {
    pub v: u32,
    /// Always true: what tells a timer from a [`ReplyJob`] on the queue.
    pub handoff_timer: bool,
    /// The message that asked for a person: whom to tell, from which number.
    pub message: InboundMessage,
    pub since_ms: i64,
    pub due_ms: i64,
}

impl HandoffTimer {
    pub fn new(message: InboundMessage, since_ms: i64, due_ms: i64) -> Self {
        HandoffTimer {
            v: ENVELOPE_VERSION,
            handoff_timer: true,
            message,
            since_ms,
            due_ms,
        }
    }

    /// Its FIFO group: the user's tag with a suffix, so that while it waits on the queue
    /// it never holds back the user's own messages.
    pub fn group_id(&self) -> String {
        format!("{}-handoff-timer", self.message.user)
    }
}

/// What comes on the reply queue.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyItem {
    Job(ReplyJob),
    HandoffTimer(HandoffTimer),
}

/// Reads a reply queue body: a [`HandoffTimer`] when it says so, else a [`ReplyJob`].
pub fn decode_reply_item(body: &str) -> Result<ReplyItem, EnvelopeError> {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(default)]
        handoff_timer: bool,
    }
    Ok(if serde_json::from_str::<Kind>(body)?.handoff_timer {
        ReplyItem::HandoffTimer(decode(body)?)
    } else {
        ReplyItem::Job(decode(body)?)
    })
}

/// What the transcriber did with an inbound message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Prepared {
    /// Nothing to prepare (text and other non-media messages).
    Nothing,
    /// A voice note or audio file, transcribed.
    Transcribed {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
        /// The S3 key of the transcript record.
        transcript_key: String,
        duration_ms: u64,
    },
    /// The media was stored in S3 (images, video, documents, stickers).
    MediaStored { key: String, mime_type: String },
    /// Audio we cannot decode (AMR, a corrupt file, too long): the reason is for the
    /// responder's polite answer and for the logs.
    AudioUnsupported { reason: String },
    /// The media could not be fetched or was refused (too big, bad checksum, gone).
    MediaUnavailable { reason: String },
    /// The user is over a fair limit: nothing was downloaded or transcribed. `notify`
    /// on the first such message of the window (the user is told once).
    OverLimit {
        limit: Limit,
        until_ms: i64,
        notify: bool,
    },
}

/// Why a queue message could not be read.
#[derive(Debug, Error)]
pub enum EnvelopeError {
    #[error("queue message is not a valid envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error(
        "queue message has envelope version {found}, newer than this function understands ({ENVELOPE_VERSION}); deploy all functions from the same release"
    )]
    UnknownVersion { found: u32 },
    #[error(
        "queue message has envelope version {found}, from a release before keyed user tags (version {OLDEST_ENVELOPE_VERSION}): it names no user tag and cannot be filed; it was queued before the upgrade"
    )]
    Outdated { found: u32 },
}

/// Versioned envelopes.
pub trait Versioned {
    fn version(&self) -> u32;
    /// Brings a version 2 body to this version: where its inbound message lies.
    fn inbound_of_v2(body: &mut serde_json::Value) -> Option<&mut serde_json::Value>;
}

impl Versioned for InboundMessage {
    fn version(&self) -> u32 {
        self.v
    }
    fn inbound_of_v2(body: &mut serde_json::Value) -> Option<&mut serde_json::Value> {
        Some(body)
    }
}

impl Versioned for ReplyJob {
    fn version(&self) -> u32 {
        self.v
    }
    fn inbound_of_v2(body: &mut serde_json::Value) -> Option<&mut serde_json::Value> {
        body.get_mut("message")
    }
}

impl Versioned for HandoffTimer {
    fn version(&self) -> u32 {
        self.v
    }
    fn inbound_of_v2(body: &mut serde_json::Value) -> Option<&mut serde_json::Value> {
        body.get_mut("message")
    }
}

/// Gives a version 2 inbound message the unkeyed tag of its id (the consumers do not
/// hold the secret to key it); a body without an id is left to fail as malformed.
fn upgrade_v2<T: Versioned>(mut body: serde_json::Value) -> serde_json::Value {
    if let Some(inbound) = T::inbound_of_v2(&mut body).and_then(|m| m.as_object_mut()) {
        let tag = inbound
            .get("id")
            .and_then(|id| id.as_str())
            .map(MessageTag::unkeyed);
        if let Some(tag) = tag {
            inbound.insert(
                "message_tag".to_owned(),
                serde_json::Value::String(tag.as_str().to_owned()),
            );
        }
    }
    body
}

/// Reads a queue message body, checking its version.
pub fn decode<T>(body: &str) -> Result<T, EnvelopeError>
where
    T: serde::de::DeserializeOwned + Versioned,
{
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    // The version first: an envelope of another version need not have this one's fields.
    match serde_json::from_str::<Version>(body)?.v {
        v if v > ENVELOPE_VERSION || v == 0 => Err(EnvelopeError::UnknownVersion { found: v }),
        v if v < OLDEST_ENVELOPE_VERSION => Err(EnvelopeError::Outdated { found: v }),
        2 => Ok(serde_json::from_value(upgrade_v2::<T>(
            serde_json::from_str(body)?,
        ))?),
        _ => Ok(serde_json::from_str(body)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: u32) -> String {
        format!(
            r#"{{"v":{v},"phone_number_id":"1","sender":{{"wa_id":"15551234567"}},"id":"wamid.1","timestamp":0,"received_at_ms":0,"content":{{"type":"text","body":"hi"}}}}"#
        )
    }

    #[test]
    fn an_envelope_from_before_keyed_tags_is_refused_by_its_version_not_its_fields() {
        // Version 1 had no `user`: the error names the upgrade, not a missing field.
        let e = decode::<InboundMessage>(&body(1)).unwrap_err();
        assert!(matches!(e, EnvelopeError::Outdated { found: 1 }), "{e}");
        assert!(e.to_string().contains("before keyed user tags"), "{e}");
        let e = decode::<InboundMessage>(&body(ENVELOPE_VERSION + 1)).unwrap_err();
        assert!(matches!(e, EnvelopeError::UnknownVersion { .. }), "{e}");
        // This version without its tags is malformed.
        let e = decode::<InboundMessage>(&body(ENVELOPE_VERSION)).unwrap_err();
        assert!(e.to_string().contains("missing field"), "{e}");
    }

    #[test]
    fn a_version_2_message_queued_before_keyed_message_tags_gets_the_unkeyed_tag_of_its_id() {
        let v2 = body(2).replacen(r#""id""#, r#""user":"0123456789abcdef0123","id""#, 1);
        let inbound = decode::<InboundMessage>(&v2).expect("a version 2 inbound message");
        assert_eq!(inbound.message_tag, MessageTag::unkeyed("wamid.1"));
        let job = format!(r#"{{"v":2,"message":{v2},"prepared":{{"outcome":"nothing"}}}}"#);
        let job = decode::<ReplyJob>(&job).expect("a version 2 reply job");
        assert_eq!(job.message.message_tag, MessageTag::unkeyed("wamid.1"));
    }

    #[test]
    fn the_reply_queue_tells_timers_from_jobs() {
        let v2 = body(2).replacen(r#""id""#, r#""user":"0123456789abcdef0123","id""#, 1);
        let message = decode::<InboundMessage>(&v2).expect("an inbound message");
        let job = crate::queue::body(&ReplyJob::new(message.clone(), Prepared::Nothing))
            .expect("job body");
        assert!(matches!(decode_reply_item(&job), Ok(ReplyItem::Job(_))));
        let timer = HandoffTimer::new(message, 10, 20);
        let body = crate::queue::body(&timer).expect("timer body");
        match decode_reply_item(&body) {
            Ok(ReplyItem::HandoffTimer(read)) => assert_eq!(read, timer),
            other => panic!("{other:?}"),
        }
        assert_eq!(timer.group_id(), "0123456789abcdef0123-handoff-timer");
        let e = decode_reply_item(r#"{"v":3,"handoff_timer":true}"#).unwrap_err();
        assert!(e.to_string().contains("missing field"), "{e}");
    }
}
