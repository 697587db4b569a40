//! The S3 key layout: one place that names every object Remedios stores.
//!
//! | prefix | what | written by |
//! |---|---|---|
//! | `quarantine/{date}/{sha256}.json` | signed webhook bodies we could not parse | webhook |
//! | `quarantine/state/{key}.{ms}` | state objects that did not parse, moved aside | transcriber, responder |
//! | `messages/{user}/{message}.json` | the inbound message record (its envelope) | transcriber |
//! | `media/{user}/{message}.{ext}` | media files, with their content type | transcriber |
//! | `transcripts/{user}/{message}.json` | voice-note transcripts | transcriber |
//! | `conversations/{user}.json` | a user's recent turns | responder |
//! | `replies/{user}/{message}.json` | which reply parts went out (idempotency) | responder |
//! | `usage/{user}.json` | a user's counters for the fair limits | transcriber |
//! | `lanes/{user}.json` | the last message of the user sent to a speech lane | transcriber |
//! | `knowledge/…` | the business's own material (Markdown, text) | the operator |
//! | `knowledge-index/index.json` | its search index, rebuilt when the material changes | responder, `remedios knowledge build` |
//!
//! `{user}` is the user's pseudonymous [`UserTag`]; `{message}` is the message's keyed
//! [`MessageTag`], never the WhatsApp message id, which holds the sender's number.
//!
//! Releases before keyed message tags named messages by their WhatsApp id
//! (`legacy_reply`); those objects expire with the bucket's retention, and the
//! responder still looks for an old reply record so that a late duplicate of a message
//! answered before the upgrade is not answered again.

use crate::user::{MessageTag, UserTag};

/// Signed but unparsable webhook bodies.
pub const QUARANTINE: &str = "quarantine/";
/// Inbound message records.
pub const MESSAGES: &str = "messages/";
/// Media files.
pub const MEDIA: &str = "media/";
/// Transcripts of voice notes.
pub const TRANSCRIPTS: &str = "transcripts/";
/// Conversation histories.
pub const CONVERSATIONS: &str = "conversations/";
/// Reply progress and idempotency records.
pub const REPLIES: &str = "replies/";
/// The business's own material, as the operator uploads it.
pub const KNOWLEDGE: &str = "knowledge/";
/// The index built from it.
pub const KNOWLEDGE_INDEX: &str = "knowledge-index/";
/// Per-user counters of the fair limits.
pub const USAGE: &str = "usage/";
/// Per-user markers of messages waiting in a speech lane.
pub const LANES: &str = "lanes/";
/// Piper voices the deployer keeps in the bucket (`VOICES=es=s3:voices/...`), read by
/// the responder.
pub const VOICES: &str = "voices/";

/// Where a signed body that did not parse is kept: content-addressed, so Meta's
/// retries of the same body land on the same key.
pub fn quarantine(unix_seconds: i64, body_sha256_hex: &str) -> String {
    format!(
        "{QUARANTINE}{}/{body_sha256_hex}.json",
        utc_date(unix_seconds)
    )
}

/// Where a state object (`usage/…`, `conversations/…`, `replies/…`) that did not parse is
/// moved aside at Unix milliseconds `at_ms`: under its own key, so an operator finds it.
pub fn state_quarantine(key: &str, at_ms: i64) -> String {
    format!("{QUARANTINE}state/{key}.{at_ms}")
}

/// The record of one inbound message.
pub fn message_record(user: &UserTag, message: &MessageTag) -> String {
    format!("{MESSAGES}{user}/{message}.json")
}

/// A media file; `extension` without the dot.
pub fn media(user: &UserTag, message: &MessageTag, extension: &str) -> String {
    format!("{MEDIA}{user}/{message}.{}", key_safe(extension))
}

/// The transcript of a voice note.
pub fn transcript(user: &UserTag, message: &MessageTag) -> String {
    format!("{TRANSCRIPTS}{user}/{message}.json")
}

/// A user's conversation history.
pub fn conversation(user: &UserTag) -> String {
    format!("{CONVERSATIONS}{user}.json")
}

/// A notification sent to a staff number about a user who asked for a person, named by
/// the unkeyed tag of its WhatsApp id (the responder holds no tag key, and both it and the
/// staff member's quoting reply know the id): which conversation a reply that quotes it
/// belongs to. Under the conversations, where the responder reads and writes.
pub fn handoff_note(note: &MessageTag) -> String {
    format!("{CONVERSATIONS}handoff-notes/{note}.json")
}

/// The record of a message sent once for a hand-over (a staff message relayed to a
/// user, the notice that a wait timed out).
pub fn handoff_relay(user: &UserTag, staff_message: &MessageTag) -> String {
    format!("{CONVERSATIONS}handoff-relays/{user}/{staff_message}.json")
}

/// The record of the notice that a user's wait for a person (asked for by `message`,
/// begun at `since_ms`) timed out: it goes out once.
pub fn handoff_timeout(user: &UserTag, message: &MessageTag, since_ms: i64) -> String {
    format!("{CONVERSATIONS}handoff-relays/{user}/{message}-timeout-{since_ms}.json")
}

/// A user's counters for the fair limits.
pub fn usage(user: &UserTag) -> String {
    format!("{USAGE}{user}.json")
}

/// The marker of a user's messages in a speech lane: the last one sent there.
pub fn lane(user: &UserTag) -> String {
    format!("{LANES}{user}.json")
}

/// The reply record of one inbound message.
pub fn reply(user: &UserTag, message: &MessageTag) -> String {
    format!("{REPLIES}{user}/{message}.json")
}

/// The names a release before keyed message tags may have given the reply record of
/// WhatsApp message `message_id`: its id, percent-encoded (written before the upgrade),
/// and its unkeyed tag (a message queued before the upgrade and answered after it).
/// Read only, never written.
pub fn legacy_replies(user: &UserTag, message_id: &str) -> [String; 2] {
    [
        format!("{REPLIES}{user}/{}.json", key_safe(message_id)),
        reply(user, &MessageTag::unkeyed(message_id)),
    ]
}

/// Percent-encodes everything but ASCII letters, digits and `._=-`, so a name maps
/// to exactly one key segment and two names never share one.
fn key_safe(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `YYYY-MM-DD` (UTC) of a Unix time in seconds.
pub fn utc_date(unix_seconds: i64) -> String {
    let (y, m, d) = civil_from_days(unix_seconds.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Converts days since 1970-01-01 to a (year, month, day) of the proleptic
/// Gregorian calendar (the well-known era-based algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::{TagKey, UserKey};

    fn tag(user: &str) -> UserTag {
        let key = TagKey::new("keys-test-key-keys-test-key-keys").expect("a tag key");
        UserKey::new(user).tag(&key)
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_795_996_799), "2026-11-29");
        assert_eq!(utc_date(-1), "1969-12-31");
    }

    fn message(id: &str) -> MessageTag {
        TagKey::new("keys-test-key-keys-test-key-keys")
            .expect("a tag key")
            .message(id)
    }

    #[test]
    fn messages_are_named_by_their_keyed_tag_never_their_id() {
        let user = tag("15551234567");
        let wamid = "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=";
        let a = message_record(&user, &message(wamid));
        assert_eq!(a, format!("{MESSAGES}{user}/{}.json", message(wamid)));
        assert!(!a.contains("wamid") && !a.contains("HBgL"), "{a}");
        assert_ne!(a, message_record(&user, &message("wamid.other")));
        assert_eq!(a.matches('/').count(), 2);
    }

    #[test]
    fn the_legacy_reply_names_are_the_old_percent_encoded_id_and_the_unkeyed_tag() {
        let user = tag("15551234567");
        let [old, unkeyed] = legacy_replies(&user, "wamid.HBg+a/b==");
        assert_eq!(old, format!("{REPLIES}{user}/wamid.HBg%2Ba%2Fb==.json"));
        assert_eq!(
            unkeyed,
            reply(&user, &MessageTag::unkeyed("wamid.HBg+a/b=="))
        );
    }

    #[test]
    fn every_key_lives_under_its_prefix() {
        let user = tag("US.1");
        let m = message("m");
        assert!(media(&user, &m, "ogg").starts_with(MEDIA));
        assert!(transcript(&user, &m).starts_with(TRANSCRIPTS));
        assert!(conversation(&user).starts_with(CONVERSATIONS));
        assert!(reply(&user, &m).starts_with(REPLIES));
        assert!(usage(&user).starts_with(USAGE));
        assert!(quarantine(0, "ab").starts_with(QUARANTINE));
        assert_eq!(
            state_quarantine(&usage(&user), 7),
            format!("{QUARANTINE}state/{USAGE}{user}.json.7")
        );
    }
}
