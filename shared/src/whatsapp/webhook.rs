//! The notifications Meta posts to our webhook (WhatsApp Cloud API, `messages` field).
//!
//! The types follow Meta's webhook reference for every inbound message type and for
//! status updates. They are deliberately forgiving where Meta evolves the payload:
//! unknown fields are ignored, and a message whose `type` we do not know (or whose
//! payload object is missing) becomes [`MessageContent::Unsupported`] instead of
//! failing the whole notification, so the responder can still answer politely.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// The body of a webhook POST.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Notification {
    /// `whatsapp_business_account` for WhatsApp notifications.
    pub object: String,
    #[serde(default)]
    pub entry: Vec<Entry>,
}

/// One WhatsApp Business Account's share of a notification.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Entry {
    /// The WhatsApp Business Account id.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// One change: for the `messages` field, inbound messages and/or status updates.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Change {
    pub field: String,
    pub value: ChangeValue,
}

/// The payload of a change.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ChangeValue {
    #[serde(default)]
    pub messaging_product: Option<String>,
    #[serde(default)]
    pub metadata: Option<Lenient<Metadata>>,
    /// Each element of every list parsed on its own: one that does not parse (a field of
    /// the wrong type) does not take the others, or the notification's messages, with it.
    #[serde(default)]
    pub contacts: Vec<Lenient<Contact>>,
    #[serde(default)]
    pub messages: Vec<Lenient<Message>>,
    #[serde(default)]
    pub statuses: Vec<Lenient<Status>>,
    /// Errors about the notification itself (not tied to one message).
    #[serde(default)]
    pub errors: Vec<Lenient<ApiError>>,
    /// The `smb_message_echoes` field (coexistence: the number is on the WhatsApp Business
    /// app and the Cloud API at once): what a person sent from the app.
    #[serde(default)]
    pub message_echoes: Vec<Lenient<Echo>>,
}

/// The field of a [`Change`] that carries [`ChangeValue::message_echoes`].
pub const ECHOES_FIELD: &str = "smb_message_echoes";

/// A message a person sent from the WhatsApp Business app to a customer, as Meta echoes it
/// (`from` the business, `to` / `to_user_id` the customer, `id`, `timestamp`, `type` and
/// the content, as in an inbound message).
#[derive(Debug, Clone, PartialEq)]
pub struct Echo {
    /// The customer's phone number, when Meta gives it.
    pub to: Option<String>,
    /// The customer's business-scoped user id, when Meta gives it.
    pub to_user_id: Option<String>,
    /// The rest as an inbound message: its `from` is the business.
    pub message: Message,
}

impl<'de> Deserialize<'de> for Echo {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct To {
            #[serde(default)]
            to: Option<String>,
            #[serde(default)]
            to_user_id: Option<String>,
        }
        let value = serde_json::Value::deserialize(deserializer)?;
        let to = To::deserialize(&value).map_err(serde::de::Error::custom)?;
        let message = Message::deserialize(value).map_err(serde::de::Error::custom)?;
        Ok(Echo {
            to: to.to.filter(|s| !s.is_empty()),
            to_user_id: to.to_user_id.filter(|s| !s.is_empty()),
            message,
        })
    }
}

impl ChangeValue {
    /// The contacts that parsed.
    pub fn valid_contacts(&self) -> Vec<Contact> {
        self.contacts
            .iter()
            .filter_map(Lenient::valid)
            .cloned()
            .collect()
    }

    /// How many contacts, statuses and errors did not parse (the messages are counted
    /// apart, each with its id).
    pub fn invalid_others(&self) -> usize {
        self.contacts.iter().filter(|c| c.valid().is_none()).count()
            + self.statuses.iter().filter(|s| s.valid().is_none()).count()
            + self.errors.iter().filter(|e| e.valid().is_none()).count()
            + self.metadata.iter().filter(|m| m.valid().is_none()).count()
            + self
                .message_echoes
                .iter()
                .filter(|e| e.valid().is_none())
                .count()
    }
}

/// One element of a list, parsed apart from the others: a message whose fields do not
/// have the types Meta documents (a number where a string belongs) is kept as
/// [`Lenient::Invalid`], with its id when it has one, and the rest of the list is read
/// as usual.
#[derive(Debug, Clone, PartialEq)]
pub enum Lenient<T> {
    Valid(T),
    Invalid {
        /// The element's `id`, when it has a string one.
        id: Option<String>,
        /// What serde found wrong (may quote a value: not for logs at info level).
        error: String,
    },
}

impl<T> Lenient<T> {
    /// The element when it parsed.
    pub fn valid(&self) -> Option<&T> {
        match self {
            Lenient::Valid(t) => Some(t),
            Lenient::Invalid { .. } => None,
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let id = value
            .get("id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        Ok(match T::deserialize(value) {
            Ok(t) => Lenient::Valid(t),
            Err(e) => Lenient::Invalid {
                id,
                error: e.to_string(),
            },
        })
    }
}

/// Our business number that the change concerns.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Metadata {
    /// Only for the envelope: a number where the string belongs is taken as its digits,
    /// anything else as no value, rather than costing the notification its messages.
    #[serde(default, deserialize_with = "loose_string")]
    pub display_phone_number: Option<String>,
    pub phone_number_id: String,
}

/// A string, or a number written as one; any other value is none.
fn loose_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// The WhatsApp user who sent the messages of a change.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Contact {
    #[serde(default)]
    pub profile: Option<Profile>,
    /// The user's WhatsApp id (their phone number); absent for users who have a
    /// username and did not share their number.
    #[serde(default)]
    pub wa_id: Option<String>,
    /// The business-scoped user id (BSUID).
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub identity_key_hash: Option<String>,
}

/// The user's profile as WhatsApp shares it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
}

/// An error object as Meta sends it in webhooks and API responses.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<ErrorData>,
}

/// Details of an [`ApiError`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ErrorData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// An inbound message: who sent it, when, in reply to what, and its content.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "RawMessage")]
pub struct Message {
    /// The WhatsApp message id (`wamid.…`).
    pub id: String,
    /// The sender's phone number (WhatsApp id); may be absent for username users.
    pub from: Option<String>,
    /// The sender's business-scoped user id.
    pub from_user_id: Option<String>,
    /// Unix seconds, as Meta sends it (a string in the JSON).
    pub timestamp: i64,
    /// The message this one replies to or was forwarded from.
    pub context: Option<Context>,
    /// The click-to-WhatsApp ad that started the conversation, when there is one.
    pub referral: Option<Referral>,
    /// Set when the message was sent in a group.
    pub group_id: Option<String>,
    pub content: MessageContent,
}

/// The content of an inbound message, one variant per documented type.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageContent {
    Text(Text),
    /// Audio files and voice notes (`voice: true`).
    Audio(Media),
    Image(Media),
    Video(Media),
    Document(Media),
    Sticker(Media),
    Location(Location),
    Contacts(Vec<SharedContact>),
    Interactive(Interactive),
    Button(Button),
    Reaction(Reaction),
    Order(Order),
    System(System),
    /// A type Cloud API does not support (`unsupported`/`unknown`), a type this code
    /// does not know yet, or a known type whose payload object is missing.
    Unsupported {
        /// The `type` as Meta sent it.
        kind: String,
        /// What Meta says the user really sent (`unsupported.type`: `edit`, `poll`, …).
        detail: Option<String>,
        errors: Vec<ApiError>,
    },
}

impl MessageContent {
    /// The type name as Meta spells it.
    pub fn kind(&self) -> &str {
        match self {
            Self::Text(_) => "text",
            Self::Audio(_) => "audio",
            Self::Image(_) => "image",
            Self::Video(_) => "video",
            Self::Document(_) => "document",
            Self::Sticker(_) => "sticker",
            Self::Location(_) => "location",
            Self::Contacts(_) => "contacts",
            Self::Interactive(_) => "interactive",
            Self::Button(_) => "button",
            Self::Reaction(_) => "reaction",
            Self::Order(_) => "order",
            Self::System(_) => "system",
            Self::Unsupported { kind, .. } => kind,
        }
    }
}

/// A text message.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Text {
    #[serde(default)]
    pub body: String,
}

/// A media object: audio, image, video, document or sticker.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Media {
    /// The media id to look up on the Graph API.
    pub id: String,
    #[serde(default)]
    pub mime_type: Option<String>,
    /// Base64 or hex SHA-256 of the file, as Meta gives it.
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub caption: Option<String>,
    /// Documents only.
    #[serde(default)]
    pub filename: Option<String>,
    /// Audio only: `true` for a voice note recorded in WhatsApp.
    #[serde(default)]
    pub voice: Option<bool>,
    /// Stickers only.
    #[serde(default)]
    pub animated: Option<bool>,
}

/// A shared location.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Location {
    #[serde(default)]
    pub latitude: f64,
    #[serde(default)]
    pub longitude: f64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// A contact card shared by the user.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct SharedContact {
    #[serde(default)]
    pub name: Option<ContactName>,
    #[serde(default)]
    pub phones: Vec<ContactPhone>,
}

/// The name on a shared contact card.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ContactName {
    #[serde(default)]
    pub formatted_name: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
}

/// A phone number on a shared contact card.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ContactPhone {
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub wa_id: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// A reply to an interactive message: a reply button, a list row or a flow.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Interactive {
    /// `button_reply`, `list_reply` or `nfm_reply`.
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub button_reply: Option<ReplyChoice>,
    #[serde(default)]
    pub list_reply: Option<ReplyChoice>,
    #[serde(default)]
    pub nfm_reply: Option<FlowReply>,
}

/// The button or list row the user chose.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ReplyChoice {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// A WhatsApp Flow's reply.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct FlowReply {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub response_json: Option<String>,
}

/// A tap on a quick-reply button of a template message.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Button {
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub text: String,
}

/// A reaction to one of our messages; no `emoji` means the reaction was removed.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Reaction {
    #[serde(default)]
    pub message_id: String,
    #[serde(default)]
    pub emoji: Option<String>,
}

/// An order placed from a catalog.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Order {
    #[serde(default)]
    pub catalog_id: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub product_items: Vec<ProductItem>,
}

/// One line of an [`Order`].
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ProductItem {
    #[serde(default)]
    pub product_retailer_id: String,
    #[serde(default)]
    pub quantity: Option<f64>,
    #[serde(default)]
    pub item_price: Option<f64>,
    #[serde(default)]
    pub currency: Option<String>,
}

/// A system message: the user changed their number or their business-scoped id.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct System {
    #[serde(default)]
    pub body: Option<String>,
    /// `user_changed_number`, `user_changed_user_id`, …
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub wa_id: Option<String>,
    #[serde(default)]
    pub new_wa_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub new_user_id: Option<String>,
}

/// What an inbound message refers to.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Context {
    /// The id of the message replied to (one of ours, or a product enquiry's).
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub forwarded: Option<bool>,
    #[serde(default)]
    pub frequently_forwarded: Option<bool>,
    #[serde(default)]
    pub referred_product: Option<ReferredProduct>,
}

/// A product the user asked about.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ReferredProduct {
    #[serde(default)]
    pub catalog_id: String,
    #[serde(default)]
    pub product_retailer_id: String,
}

/// A click-to-WhatsApp ad.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Referral {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctwa_clid: Option<String>,
}

/// What Meta says about an unsupported message.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct UnsupportedInfo {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// A status update about a message we sent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub id: String,
    /// `sent`, `delivered`, `read`, `failed` (or a newer value).
    #[serde(default)]
    pub status: String,
    #[serde(default, deserialize_with = "de::unix_seconds")]
    pub timestamp: i64,
    #[serde(default)]
    pub recipient_id: Option<String>,
    #[serde(default)]
    pub recipient_user_id: Option<String>,
    #[serde(default)]
    pub errors: Vec<ApiError>,
}

/// The JSON shape of a message, before its `type` picks the content.
#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    from_user_id: Option<String>,
    #[serde(default, deserialize_with = "de::unix_seconds")]
    timestamp: i64,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    context: Option<Context>,
    #[serde(default)]
    referral: Option<Referral>,
    #[serde(default)]
    group_id: Option<String>,
    #[serde(default)]
    errors: Vec<ApiError>,
    #[serde(default)]
    unsupported: Option<UnsupportedInfo>,
    #[serde(default)]
    text: Option<Text>,
    #[serde(default)]
    audio: Option<Media>,
    #[serde(default)]
    image: Option<Media>,
    #[serde(default)]
    video: Option<Media>,
    #[serde(default)]
    document: Option<Media>,
    #[serde(default)]
    sticker: Option<Media>,
    #[serde(default)]
    location: Option<Location>,
    #[serde(default)]
    contacts: Option<Vec<SharedContact>>,
    #[serde(default)]
    interactive: Option<Interactive>,
    #[serde(default)]
    button: Option<Button>,
    #[serde(default)]
    reaction: Option<Reaction>,
    #[serde(default)]
    order: Option<Order>,
    #[serde(default)]
    system: Option<System>,
}

impl From<RawMessage> for Message {
    fn from(raw: RawMessage) -> Self {
        let RawMessage {
            id,
            from,
            from_user_id,
            timestamp,
            kind,
            context,
            referral,
            group_id,
            errors,
            unsupported,
            text,
            audio,
            image,
            video,
            document,
            sticker,
            location,
            contacts,
            interactive,
            button,
            reaction,
            order,
            system,
        } = raw;
        let known = match kind.as_str() {
            "text" => text.map(MessageContent::Text),
            "audio" | "voice" => audio.map(MessageContent::Audio),
            "image" => image.map(MessageContent::Image),
            "video" => video.map(MessageContent::Video),
            "document" => document.map(MessageContent::Document),
            "sticker" => sticker.map(MessageContent::Sticker),
            "location" => location.map(MessageContent::Location),
            "contacts" => contacts.map(MessageContent::Contacts),
            "interactive" => interactive.map(MessageContent::Interactive),
            "button" => button.map(MessageContent::Button),
            "reaction" => reaction.map(MessageContent::Reaction),
            "order" => order.map(MessageContent::Order),
            "system" => system.map(MessageContent::System),
            _ => None,
        };
        let content = known.unwrap_or_else(|| MessageContent::Unsupported {
            kind,
            detail: unsupported.and_then(|u| u.kind),
            errors,
        });
        Message {
            id,
            from: from.filter(|s| !s.is_empty()),
            from_user_id: from_user_id.filter(|s| !s.is_empty()),
            timestamp,
            context,
            referral,
            group_id: group_id.filter(|g| !g.is_empty()),
            content,
        }
    }
}

mod de {
    use serde::{Deserialize, Deserializer};

    /// Meta sends timestamps as strings of Unix seconds; accept numbers too, and
    /// treat anything unparsable as 0 rather than failing the notification.
    pub(super) fn unix_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Ts<'a> {
            Int(i64),
            Float(f64),
            Str(&'a str),
            String(String),
        }
        Ok(match Option::<Ts>::deserialize(d)? {
            Some(Ts::Int(n)) => n,
            // Float timestamps are whole seconds in practice; truncation is intended.
            Some(Ts::Float(f)) if f.is_finite() => f as i64,
            Some(Ts::Str(s)) => s.trim().parse().unwrap_or(0),
            Some(Ts::String(s)) => s.trim().parse().unwrap_or(0),
            _ => 0,
        })
    }
}
