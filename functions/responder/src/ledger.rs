//! The reply record of each inbound message (`keys::reply`): what we answered and which
//! parts went out. It makes the responder idempotent beyond SQS FIFO's five-minute
//! deduplication window.
//!
//! ## Claim, then send, then record each part
//!
//! Of the two orders, "send then record" answers twice whenever the job is retried
//! after a send (a lost record, a later step failing), and "claim then send" with a bare
//! marker answers never when the function dies between the claim and the send. We do:
//!
//! 1. Ask the model, then **claim** the message by creating the record with
//!    `If-None-Match: *`: it holds the answer's parts and that none was sent. Of two
//!    concurrent copies of a job only one claim succeeds; the other is retried later.
//! 2. Send the parts in order; after each accepted part, **record** its WhatsApp id in
//!    the record (`If-Match` its ETag).
//! 3. With every part sent, save the exchange to the history (itself idempotent by
//!    message id), then mark the record `remembered`.
//!
//! A redelivered job reads the record first: all parts sent means it only completes
//! step 3 when the record is not marked yet (so a late duplicate, days later or after a
//! `/reset`, never writes the exchange into the history again); some parts sent means it resumes with the parts not yet
//! sent, with the same text, without asking the model again (after a rate limit, for
//! example). The one remaining window is a crash between Meta accepting a part and our
//! write of its id, a single S3 request: then that part is sent again. We prefer that
//! rare duplicate to leaving the user without an answer.
//!
//! An apology record (the model was unavailable on the job's last attempt) is complete
//! but does not stop a later attempt (a dead-letter redrive) from answering properly.
//!
//! ## Names from before keyed message tags
//!
//! Records are named by the message's keyed tag. A release before them named a record by
//! the WhatsApp id ([`keys::legacy_replies`]); when no record has the new name, [`Ledger::get`]
//! also reads the old names (two requests at once), so a late duplicate of a message
//! answered before the upgrade is still not answered again. A record found there is
//! updated where it lies ([`Held::key`]); new records only ever get the new name.

use remedios_shared::keys;
use remedios_shared::store::{Precondition, Store, StoreError, Written};
use remedios_shared::user::{MessageTag, UserTag};
use serde::{Deserialize, Serialize};

/// The stored layout version.
pub const RECORD_VERSION: u32 = 1;

/// What kind of reply a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// The model's answer.
    Answer,
    /// A fixed text: a command's answer, or a note about what we cannot handle.
    Fixed,
    /// The model was unavailable on the last attempt.
    Apology,
}

impl ReplyKind {
    /// Its name in metrics: `answer`, `fixed`, `apology`.
    pub fn name(self) -> &'static str {
        match self {
            ReplyKind::Answer => "answer",
            ReplyKind::Fixed => "fixed",
            ReplyKind::Apology => "apology",
        }
    }
}

/// An answer to be spoken: one voice message before (or instead of) the text parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceReply {
    /// The language code of the voice (`en`).
    pub lang: String,
    /// The text parts go out too after the voice message (`VOICE_TEXT_COPY`).
    #[serde(default)]
    pub text_copy: bool,
    /// The WhatsApp id of the voice message, once sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<String>,
    /// Why it was not spoken after all (the text parts go out instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fell_back: Option<String>,
}

/// The exchange to remember once the reply is out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    pub question: String,
    pub answer: String,
}

/// The reply to one inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRecord {
    pub v: u32,
    /// The message's keyed tag (a record from before keyed tags holds its WhatsApp id).
    #[serde(alias = "message_id")]
    pub message: String,
    pub kind: ReplyKind,
    /// The text messages to send, in order.
    pub parts: Vec<String>,
    /// The WhatsApp ids of the parts sent so far (a prefix of `parts`).
    #[serde(default)]
    pub sent: Vec<String>,
    /// Saved to the history once every part is out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remember: Option<Exchange>,
    /// Why the rest will not be sent (a permanent Graph API error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<String>,
    /// The exchange is in the history: a redelivery must not write it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remembered: bool,
    /// The answer is spoken first ([`VoiceReply`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<VoiceReply>,
    /// Unix milliseconds of the last change.
    pub updated_at_ms: i64,
}

impl ReplyRecord {
    pub fn new(
        message: &MessageTag,
        kind: ReplyKind,
        parts: Vec<String>,
        remember: Option<Exchange>,
        now_ms: i64,
    ) -> Self {
        ReplyRecord {
            v: RECORD_VERSION,
            message: message.as_str().to_owned(),
            kind,
            parts,
            sent: Vec::new(),
            remember,
            dropped: None,
            remembered: false,
            voice: None,
            updated_at_ms: now_ms,
        }
    }

    /// Every part went out (the voice message in place of the text parts, unless they
    /// go out too).
    pub fn complete(&self) -> bool {
        self.voice_pending().is_none()
            && (self.spoken_instead() || self.sent.len() >= self.parts.len())
    }

    /// The voice message still to send, if the answer is to be spoken.
    pub fn voice_pending(&self) -> Option<&VoiceReply> {
        self.voice
            .as_ref()
            .filter(|v| v.sent.is_none() && v.fell_back.is_none())
    }

    /// The voice message went out in place of the text parts.
    fn spoken_instead(&self) -> bool {
        self.voice
            .as_ref()
            .is_some_and(|v| v.sent.is_some() && !v.text_copy)
    }

    /// Nothing more will be sent: complete, or dropped.
    pub fn finished(&self) -> bool {
        self.complete() || self.dropped.is_some()
    }

    /// The text parts still to send, with their index: none while the voice message
    /// waits or when it went out instead of them.
    pub fn pending(&self) -> impl Iterator<Item = (usize, &str)> {
        let skip = if self.voice_pending().is_some() || self.spoken_instead() {
            self.parts.len()
        } else {
            self.sent.len()
        };
        self.parts
            .iter()
            .enumerate()
            .skip(skip)
            .map(|(i, p)| (i, p.as_str()))
    }
}

/// A record as read, with where it lies and the ETag to update it under.
#[derive(Debug, Clone)]
pub struct Held {
    pub record: ReplyRecord,
    pub etag: String,
    /// Its object key: the keyed name, or an old one ([`keys::legacy_replies`]).
    pub key: String,
}

/// The reply records in the bucket.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Store,
}

impl Ledger {
    pub fn new(store: Store) -> Self {
        Ledger { store }
    }

    /// The record of the message tagged `message` (WhatsApp id `message_id`), if any:
    /// under its keyed name, else under a name from before keyed tags.
    pub async fn get(
        &self,
        user: &UserTag,
        message: &MessageTag,
        message_id: &str,
    ) -> Result<Option<Held>, StoreError> {
        if let Some(held) = self.read(keys::reply(user, message)).await? {
            return Ok(Some(held));
        }
        let [old, unkeyed] = keys::legacy_replies(user, message_id);
        let (old, unkeyed) = tokio::join!(self.read(old), self.read(unkeyed));
        Ok(old?.or(unkeyed?))
    }

    async fn read(&self, key: String) -> Result<Option<Held>, StoreError> {
        Ok(self
            .store
            .get_state::<ReplyRecord>(&key, "responder")
            .await?
            .map(|(record, etag)| Held { record, etag, key }))
    }

    /// Creates the record of `message` (`If-None-Match: *`), or replaces the one held by
    /// `previous` (`If-Match`, where it lies). `None` when another writer got there first.
    pub async fn claim(
        &self,
        user: &UserTag,
        message: &MessageTag,
        record: ReplyRecord,
        previous: Option<&Held>,
    ) -> Result<Option<Held>, StoreError> {
        match previous {
            Some(held) => self.update(held, record).await,
            None => {
                self.write(keys::reply(user, message), record, Precondition::Absent)
                    .await
            }
        }
    }

    /// Stores a change to a held record (`If-Match`). `None` when it changed meanwhile.
    pub async fn update(
        &self,
        held: &Held,
        record: ReplyRecord,
    ) -> Result<Option<Held>, StoreError> {
        self.write(
            held.key.clone(),
            record,
            Precondition::Matches(held.etag.clone()),
        )
        .await
    }

    async fn write(
        &self,
        key: String,
        record: ReplyRecord,
        precondition: Precondition,
    ) -> Result<Option<Held>, StoreError> {
        match self.store.put_json_if(&key, &record, precondition).await? {
            Written::Yes(etag) => Ok(Some(Held { record, etag, key })),
            Written::Conflict => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_parts_follow_the_sent_ones() {
        let tag = remedios_shared::user::MessageTag::unkeyed("m");
        let mut r = ReplyRecord::new(
            &tag,
            ReplyKind::Answer,
            vec!["a".into(), "b".into(), "c".into()],
            None,
            0,
        );
        assert!(!r.complete());
        r.sent.push("wamid.1".into());
        let pending: Vec<(usize, &str)> = r.pending().collect();
        assert_eq!(pending, vec![(1, "b"), (2, "c")]);
        r.sent.extend(["wamid.2".into(), "wamid.3".into()]);
        assert!(r.complete() && r.finished());
    }

    #[test]
    fn a_spoken_answer_goes_first_and_replaces_the_text_unless_copied_or_fallen_back() {
        let tag = remedios_shared::user::MessageTag::unkeyed("m");
        let mut r = ReplyRecord::new(&tag, ReplyKind::Answer, vec!["a".into()], None, 0);
        r.voice = Some(VoiceReply {
            lang: "en".into(),
            text_copy: false,
            sent: None,
            fell_back: None,
        });
        assert!(r.voice_pending().is_some());
        assert_eq!(r.pending().count(), 0, "the voice message first");
        assert!(!r.complete());
        let mut spoken = r.clone();
        spoken.voice.as_mut().unwrap().sent = Some("wamid.v".into());
        assert!(spoken.complete(), "the voice message instead of the text");
        assert_eq!(spoken.pending().count(), 0);
        let mut copied = spoken.clone();
        copied.voice.as_mut().unwrap().text_copy = true;
        assert!(!copied.complete());
        assert_eq!(copied.pending().collect::<Vec<_>>(), [(0, "a")]);
        let mut fell = r.clone();
        fell.voice.as_mut().unwrap().fell_back = Some("too_long".into());
        assert_eq!(fell.pending().collect::<Vec<_>>(), [(0, "a")]);
        fell.sent.push("wamid.t".into());
        assert!(fell.complete());
        // Read back from JSON written before voice replies: no voice.
        let old: ReplyRecord = serde_json::from_str(
            r#"{"v":1,"message":"m","kind":"answer","parts":["a"],"updated_at_ms":0}"#,
        )
        .expect("an old record");
        assert_eq!(old.voice, None);
    }
}
