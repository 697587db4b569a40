//! Who a message comes from, and the keys everything about a user is filed under.
//!
//! Since WhatsApp usernames arrived, a user is named by a phone number (`wa_id`), a
//! business-scoped user id (BSUID, `user_id`), or both. [`Sender`] keeps whichever
//! Meta gave; [`UserKey`] picks the stable one (the BSUID when present: it survives a
//! change of phone number) and [`UserTag`] turns it into a pseudonymous token for S3
//! keys, SQS group ids and logs, so no phone number appears in any of them.
//!
//! A tag is keyed with a per-deployment secret ([`TagKey`], from SSM like the other
//! secrets): HMAC-SHA256 of the user key, cut to 80 bits. Without the secret, a tag
//! cannot be recomputed from a guessed number, so holding the logs or the bucket listing
//! does not reveal who wrote; with it, the same user always gets the same tag.
//!
//! WhatsApp message ids (`wamid.…`) are base64 of a record that holds the sender's phone
//! number, so they are personal data too. [`MessageTag`] names a message wherever its
//! identity must show (S3 keys, SQS deduplication ids, logs): the same HMAC under the same
//! secret, with its own domain prefix, cut the same way. The wamid itself travels only
//! inside queue and object bodies, where the Graph API needs it (mark-read, quoting).

use std::collections::HashSet;
use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::whatsapp::webhook;

/// The sender of an inbound message, as Meta identified them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// Phone number (WhatsApp id), when the user shares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    /// Business-scoped user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_name: Option<String>,
}

impl Sender {
    /// The sender of `message`, completed from the notification's `contacts` entry
    /// for the same user. `None` when neither a phone number nor a BSUID is known.
    ///
    /// The message's own `from` and `from_user_id` come first. A contact completes them
    /// only when it names the same user: one that matches an id, or the notification's
    /// only contact when none of its ids contradicts the message's. A message is never
    /// filed under an id it does not carry and that belongs to someone else.
    pub fn from_webhook(message: &webhook::Message, contacts: &[webhook::Contact]) -> Option<Self> {
        let given = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        let agrees =
            |ours: &Option<String>, theirs: &Option<String>| match (given(ours), given(theirs)) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
        let contact = contacts
            .iter()
            .find(|c| {
                (given(&message.from).is_some() && c.wa_id == message.from)
                    || (given(&message.from_user_id).is_some() && c.user_id == message.from_user_id)
            })
            .or(match contacts {
                [only] => Some(only),
                _ => None,
            })
            .filter(|c| {
                agrees(&message.from, &c.wa_id) && agrees(&message.from_user_id, &c.user_id)
            });
        let wa_id = given(&message.from).or_else(|| contact.and_then(|c| given(&c.wa_id)));
        let user_id =
            given(&message.from_user_id).or_else(|| contact.and_then(|c| given(&c.user_id)));
        if wa_id.is_none() && user_id.is_none() {
            return None;
        }
        let profile = contact.and_then(|c| c.profile.as_ref());
        Some(Sender {
            wa_id,
            user_id,
            username: profile.and_then(|p| given(&p.username)),
            profile_name: profile.and_then(|p| given(&p.name)),
        })
    }

    /// The stable key of this user: the BSUID when known, else the phone number.
    pub fn key(&self) -> UserKey {
        UserKey(
            self.user_id
                .clone()
                .or_else(|| self.wa_id.clone())
                .unwrap_or_default(),
        )
    }
}

/// A list of users by phone number or business-scoped id, as an operator writes it
/// (`ALLOWED_SENDERS`, `LIMITS_EXEMPT`): separated by commas, semicolons or newlines;
/// `+`, spaces, dashes and parentheses in phone numbers are ignored. `Debug` shows how
/// many entries it has, never the numbers.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SenderList(HashSet<String>);

impl SenderList {
    pub fn parse(list: Option<&str>) -> Self {
        SenderList(
            list.unwrap_or_default()
                .split([',', ';', '\n'])
                .map(normalise_id)
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The phone numbers (digits only) and business-scoped ids on the list, sorted.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.0.iter().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// Whether `sender`'s phone number or business-scoped id is on the list.
    pub fn contains(&self, sender: &Sender) -> bool {
        [&sender.wa_id, &sender.user_id]
            .into_iter()
            .flatten()
            .any(|id| self.0.contains(&normalise_id(id)))
    }
}

impl fmt::Debug for SenderList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SenderList({} entries)", self.0.len())
    }
}

fn normalise_id(id: &str) -> String {
    id.chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '+' | '-' | '(' | ')')))
        .collect()
}

/// The stable identity of a user (a BSUID or a phone number). Its `Display` is
/// redacted; use [`UserKey::as_str`] where the real value is needed.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserKey(String);

impl UserKey {
    pub fn new(key: impl Into<String>) -> Self {
        UserKey(key.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pseudonymous tag of this user under the deployment's `key`.
    pub fn tag(&self, key: &TagKey) -> UserTag {
        key.tag(self)
    }
}

impl fmt::Display for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserKey({})", redact(&self.0))
    }
}

/// A phone number or id with all but its last four characters hidden, for logs.
pub fn redact(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 4 {
        return "…".to_owned();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("…{tail}")
}

/// The deployment's secret for user tags (`USER_TAG_KEY`). `Debug` hides it.
#[derive(Clone)]
pub struct TagKey(Hmac<Sha256>);

/// Why a tag key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "USER_TAG_KEY has {0} characters; it needs at least {min} random ones (for example `openssl rand -hex 32`)",
    min = TagKey::MIN_CHARS
)]
pub struct TagKeyError(pub usize);

impl TagKey {
    /// The shortest secret accepted: 32 characters (128 bits as hex).
    pub const MIN_CHARS: usize = 32;

    pub fn new(secret: &str) -> Result<Self, TagKeyError> {
        let chars = secret.trim().chars().count();
        if chars < Self::MIN_CHARS {
            return Err(TagKeyError(chars));
        }
        // HMAC takes a key of any length.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.trim().as_bytes())
            .map_err(|_| TagKeyError(chars))?;
        Ok(TagKey(mac))
    }

    /// The tag of `user` (a BSUID or a phone number, exactly as Meta sends it).
    pub fn tag(&self, user: &UserKey) -> UserTag {
        let mut mac = self.0.clone();
        mac.update(b"remedios-user:");
        mac.update(user.as_str().as_bytes());
        UserTag(hex::encode(&mac.finalize().into_bytes()[..10]))
    }

    /// The keyed tag of a WhatsApp message id (`wamid.…`), as Meta sends it.
    pub fn message(&self, message_id: &str) -> MessageTag {
        let mut mac = self.0.clone();
        mac.update(b"remedios-message:");
        mac.update(message_id.as_bytes());
        MessageTag(hex::encode(&mac.finalize().into_bytes()[..10]))
    }
}

impl fmt::Debug for TagKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TagKey(***)")
    }
}

/// A user's pseudonymous tag: 20 hex digits of a keyed hash of their key
/// ([`TagKey::tag`]). It names the user in S3 keys, SQS message group ids and logs.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserTag(String);

impl UserTag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserTag({})", self.0)
    }
}

/// A message's keyed tag: 20 hex digits of a keyed hash of its WhatsApp id
/// ([`TagKey::message`]). It names the message in S3 keys, SQS deduplication ids and
/// logs, which must never hold the wamid (it embeds the sender's number).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageTag(String);

impl MessageTag {
    /// The tag of a message queued by a release before keyed message tags (envelope
    /// version 2), which the consumers, without the deployment's secret, cannot key: an
    /// unkeyed digest of its id, with its own prefix. Only messages in flight during the
    /// upgrade are named so.
    pub fn unkeyed(message_id: &str) -> Self {
        use sha2::Digest;
        let digest = Sha256::new()
            .chain_update(b"remedios-message-unkeyed:")
            .chain_update(message_id.as_bytes())
            .finalize();
        MessageTag(hex::encode(&digest[..10]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MessageTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageTag({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_tags_are_keyed_distinct_from_user_tags_and_hold_no_digits_of_the_number() {
        // wamid.… of a message from 15550001111 (its base64 holds the number).
        let wamid = "wamid.HBgLMTU1NTAwMDExMTEVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=";
        let a = key(KEY).message(wamid);
        assert_eq!(a, key(KEY).message(wamid));
        assert_eq!(a.as_str().len(), 20);
        assert_ne!(a, key("another-key-another-key-another-key").message(wamid));
        assert_ne!(a.as_str(), UserKey::new(wamid).tag(&key(KEY)).as_str());
        assert_ne!(a, MessageTag::unkeyed(wamid));
        assert!(a.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!a.as_str().contains("1111"));
    }

    #[test]
    fn redaction_keeps_only_the_last_four_characters() {
        assert_eq!(redact("15551234567"), "…4567");
        assert_eq!(redact("US.13491208655302741918"), "…1918");
        assert_eq!(redact("123"), "…");
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn key(secret: &str) -> TagKey {
        TagKey::new(secret).expect("a long enough key")
    }

    #[test]
    fn tags_are_stable_distinct_and_carry_no_digits_of_the_number() {
        let a = UserKey::new("15551234567").tag(&key(KEY));
        assert_eq!(a, UserKey::new("15551234567").tag(&key(KEY)));
        assert_ne!(a, UserKey::new("15551234568").tag(&key(KEY)));
        assert_eq!(a.as_str().len(), 20);
        assert!(!a.as_str().contains("4567"));
        assert_eq!(format!("{:?}", key(KEY)), "TagKey(***)");
    }

    #[test]
    fn a_short_key_is_refused_with_how_to_make_one() {
        let e = TagKey::new("short").unwrap_err();
        assert_eq!(e, TagKeyError(5));
        assert!(e.to_string().contains("openssl rand -hex 32"), "{e}");
        assert!(TagKey::new(&" ".repeat(40)).is_err());
    }

    /// An attacker holding a tag (from a log line or a bucket listing) tries every
    /// plausible number, as one would against an unkeyed hash: without the deployment's
    /// secret no candidate gives the tag, neither hashed as before (SHA-256, no key) nor
    /// under a guessed key; with the secret the number is found at once.
    #[test]
    fn a_tag_cannot_be_recomputed_without_the_secret() {
        use sha2::Digest;
        let number = "15550004242";
        let tag = UserKey::new(number).tag(&key(KEY));
        let candidates = (15_550_000_000u64..15_550_010_000).map(|n| n.to_string());
        let unkeyed = |c: &str| {
            let digest = Sha256::new()
                .chain_update(b"remedios-user:")
                .chain_update(c.as_bytes())
                .finalize();
            hex::encode(&digest[..10])
        };
        let guessed = key("remedios-remedios-remedios-remedios");
        let mut tried = 0;
        for candidate in candidates.clone() {
            tried += 1;
            assert_ne!(
                unkeyed(&candidate),
                tag.as_str(),
                "unkeyed hash of {candidate}"
            );
            assert_ne!(UserKey::new(candidate.clone()).tag(&guessed), tag);
        }
        assert_eq!(tried, 10_000);
        let found: Vec<String> = candidates
            .filter(|c| UserKey::new(c.clone()).tag(&key(KEY)) == tag)
            .collect();
        assert_eq!(found, [number]);
    }

    fn message(from: Option<&str>, from_user_id: Option<&str>) -> webhook::Message {
        serde_json::from_value(serde_json::json!({
            "id": "wamid.1", "timestamp": "1", "type": "text", "text": {"body": "hi"},
            "from": from, "from_user_id": from_user_id,
        }))
        .expect("a message")
    }

    fn contact(wa_id: Option<&str>, user_id: Option<&str>, name: &str) -> webhook::Contact {
        serde_json::from_value(serde_json::json!({
            "wa_id": wa_id, "user_id": user_id, "profile": {"name": name},
        }))
        .expect("a contact")
    }

    #[test]
    fn the_only_contact_completes_the_sender_only_when_it_is_the_same_user() {
        let same = contact(Some("15551234567"), Some("US.1"), "Ana");
        let sender = Sender::from_webhook(&message(Some("15551234567"), None), &[same]).unwrap();
        assert_eq!(sender.user_id.as_deref(), Some("US.1"));
        assert_eq!(sender.profile_name.as_deref(), Some("Ana"));

        // Another user's contact: their BSUID and name are not this message's.
        let other = contact(Some("15550000000"), Some("US.2"), "Bob");
        let sender = Sender::from_webhook(&message(Some("15551234567"), None), &[other]).unwrap();
        assert_eq!(sender.key().as_str(), "15551234567");
        assert_eq!(sender.user_id, None);
        assert_eq!(sender.profile_name, None);

        let other = contact(None, Some("US.2"), "Bob");
        let sender = Sender::from_webhook(&message(None, Some("US.1")), &[other]).unwrap();
        assert_eq!(sender.key().as_str(), "US.1");
        assert_eq!(sender.profile_name, None);
    }

    #[test]
    fn the_key_prefers_the_business_scoped_id() {
        let s = Sender {
            wa_id: Some("15551234567".into()),
            user_id: Some("US.1349".into()),
            username: None,
            profile_name: None,
        };
        assert_eq!(s.key().as_str(), "US.1349");
        let phone_only = Sender { user_id: None, ..s };
        assert_eq!(phone_only.key().as_str(), "15551234567");
    }
}
