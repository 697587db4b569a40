//! What Meta sends to a webhook: notification bodies shaped as the WhatsApp Cloud API
//! documents them, serialised the way Meta does (non-ASCII as `\uXXXX` escapes), and
//! signed with the app secret. Used by the chat, the load test and the tests.

use serde_json::{Value, json};

pub use remedios_shared::signature::sign;

/// The user-tag key (`USER_TAG_KEY`) of the tests' deployment.
pub const USER_TAG_KEY: &str = "test-user-tag-key-0123456789abcdef";

/// The tag the tests' deployment files `user_key` (a phone number or BSUID) under.
pub fn user_tag(user_key: &str) -> remedios_shared::user::UserTag {
    let key = remedios_shared::user::TagKey::new(USER_TAG_KEY)
        .unwrap_or_else(|e| panic!("the tests' user tag key: {e}"));
    remedios_shared::user::UserKey::new(user_key).tag(&key)
}

/// A WhatsApp message id shaped as Meta makes them: `wamid.` and the base64 of a record
/// holding the other party's id (`party`: the sender's number for an inbound message, the
/// recipient's for one we send) and a 20-hex-digit per-message part from `unique`. Like
/// Meta's, it carries the phone number, which is what the privacy tests look for.
pub fn wamid(party: &str, unique: u128) -> String {
    use base64::Engine;
    let party = &party.as_bytes()[..party.len().min(0x7f)];
    let unique = format!("{:020X}", unique & ((1u128 << 80) - 1));
    let mut record = vec![0x1c, 0x18, party.len() as u8];
    record.extend_from_slice(party);
    record.extend_from_slice(&[0x15, 0x02, 0x00, 0x12, 0x18, 0x14]);
    record.extend_from_slice(unique.as_bytes());
    record.push(0x00);
    format!(
        "wamid.{}",
        base64::engine::general_purpose::STANDARD.encode(record)
    )
}

/// The keyed tag the tests' deployment names WhatsApp message `id` by.
pub fn message_tag(id: &str) -> remedios_shared::user::MessageTag {
    remedios_shared::user::TagKey::new(USER_TAG_KEY)
        .unwrap_or_else(|e| panic!("the tests' user tag key: {e}"))
        .message(id)
}

/// Our test business number.
pub const PHONE_NUMBER_ID: &str = "106540352242922";
/// Its display number.
pub const DISPLAY_NUMBER: &str = "15550783881";

/// Who sends a message: a phone number, a business-scoped id, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub name: String,
    pub username: Option<String>,
}

impl User {
    /// A user known by phone number.
    pub fn phone(wa_id: &str, name: &str) -> Self {
        User {
            wa_id: Some(wa_id.to_owned()),
            user_id: None,
            name: name.to_owned(),
            username: None,
        }
    }

    /// A user with a username who did not share their number.
    pub fn username_only(user_id: &str, username: &str, name: &str) -> Self {
        User {
            wa_id: None,
            user_id: Some(user_id.to_owned()),
            name: name.to_owned(),
            username: Some(username.to_owned()),
        }
    }

    fn contact(&self) -> Value {
        let mut profile = json!({ "name": self.name });
        if let Some(u) = &self.username {
            profile["username"] = u.clone().into();
        }
        let mut c = json!({ "profile": profile });
        if let Some(w) = &self.wa_id {
            c["wa_id"] = w.clone().into();
        }
        if let Some(u) = &self.user_id {
            c["user_id"] = u.clone().into();
        }
        c
    }
}

/// A message `user` sends: `kind` is Meta's `type`, `payload` the object under it.
pub fn message(user: &User, id: &str, timestamp: i64, kind: &str, payload: Value) -> Value {
    let mut m = json!({
        "id": id,
        "timestamp": timestamp.to_string(),
        "type": kind,
    });
    if let Some(w) = &user.wa_id {
        m["from"] = w.clone().into();
    }
    if let Some(u) = &user.user_id {
        m["from_user_id"] = u.clone().into();
    }
    if !payload.is_null() {
        m[kind] = payload;
    }
    m
}

/// A text message.
pub fn text(user: &User, id: &str, timestamp: i64, body: &str) -> Value {
    message(user, id, timestamp, "text", json!({ "body": body }))
}

/// `message` as a reply that quotes (swiped) the business's message `quoted_id`: Meta
/// adds the quoted message's `context`.
pub fn quoting(mut message: Value, quoted_id: &str) -> Value {
    message["context"] = json!({ "from": DISPLAY_NUMBER, "id": quoted_id });
    message
}

/// A voice note (`voice: true`) or audio file.
pub fn audio(
    user: &User,
    id: &str,
    timestamp: i64,
    media_id: &str,
    mime: &str,
    voice: bool,
) -> Value {
    message(
        user,
        id,
        timestamp,
        "audio",
        json!({ "id": media_id, "mime_type": mime, "voice": voice }),
    )
}

/// One change of the `messages` field, with the contacts of `users`.
pub fn change(users: &[&User], messages: Vec<Value>, statuses: Vec<Value>) -> Value {
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": DISPLAY_NUMBER, "phone_number_id": PHONE_NUMBER_ID },
    });
    if !messages.is_empty() {
        value["contacts"] = users.iter().map(|u| u.contact()).collect::<Vec<_>>().into();
        value["messages"] = messages.into();
    }
    if !statuses.is_empty() {
        value["statuses"] = statuses.into();
    }
    json!({ "field": "messages", "value": value })
}

/// A whole notification with `changes`, serialised as Meta does.
pub fn notification(changes: Vec<Value>) -> String {
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": changes }],
    });
    escape_non_ascii(&body.to_string())
}

/// The usual case: one message from one user.
pub fn single(user: &User, message: Value) -> String {
    notification(vec![change(&[user], vec![message], vec![])])
}

/// A status update about a message we sent.
pub fn status(message_id: &str, recipient: &str, status: &str, timestamp: i64) -> Value {
    json!({
        "id": message_id,
        "status": status,
        "timestamp": timestamp.to_string(),
        "recipient_id": recipient,
    })
}

/// Meta signs the body with non-ASCII characters escaped as `\uXXXX` (UTF-16).
pub fn escape_non_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wamid_holds_the_party_s_number_as_meta_s_do() {
        let id = wamid("15550001111", 7);
        assert!(id.starts_with("wamid.HBgLMTU1NTAwMDExMTEV"), "{id}");
        assert_ne!(id, wamid("15550001111", 8));
    }

    #[test]
    fn non_ascii_is_escaped_as_utf16_and_parses_back() {
        let s = escape_non_ascii(r#"{"t":"olé 😀"}"#);
        assert_eq!(s, r#"{"t":"ol\u00e9 \ud83d\ude00"}"#);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["t"], "olé 😀");
    }

    #[test]
    fn username_users_have_no_phone_number_anywhere() {
        let user = User::username_only("US.1349", "@ana", "Ana");
        let body = single(&user, text(&user, "wamid.1", 1, "hi"));
        let v: Value = serde_json::from_str(&body).unwrap();
        let m = &v["entry"][0]["changes"][0]["value"]["messages"][0];
        assert!(m.get("from").is_none());
        assert_eq!(m["from_user_id"], "US.1349");
        let c = &v["entry"][0]["changes"][0]["value"]["contacts"][0];
        assert!(c.get("wa_id").is_none());
        assert_eq!(c["profile"]["username"], "@ana");
    }
}
