//! Each user's conversation: one S3 object (`keys::conversation`) with the recent turns.
//!
//! - Bounded by a number of turns and of characters, so the prompt fits the model's
//!   context (GPT4All re-evaluates the whole prompt on every request and does not trim).
//! - Updated read-modify-write with conditional writes: `If-Match` the ETag that was read
//!   (`If-None-Match: *` for a first turn), re-read and re-applied on conflict, so two
//!   writers never lose each other's turns.
//! - An exchange is appended under the inbound message id and appended once: a retried
//!   job does not store its turn twice.

use std::time::Duration;

use remedios_shared::keys;
use remedios_shared::store::{Precondition, Store, StoreError, Written};
use remedios_shared::user::UserTag;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::debug;

use crate::gpt4all::{ChatMessage, Role};

/// The stored layout version.
pub const HISTORY_VERSION: u32 = 1;
/// How many times a conflicting update is re-applied before giving up.
const UPDATE_ATTEMPTS: u32 = 10;

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    User,
    Assistant,
    /// A person of the business (from the WhatsApp Business app, or a staff number):
    /// never given to the model as the assistant's own words.
    Staff,
}

/// Who answers a conversation while it is handed to a person (`bot` is no
/// [`Handoff`] at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandoffState {
    /// The user asked for a person; nobody has answered yet.
    Waiting,
    /// A person is answering.
    Human,
}

/// How a conversation came to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffWay {
    /// The user asked (`/human`, or a deployer's phrase).
    Asked,
    /// A person wrote from the WhatsApp Business app.
    Echo,
}

impl HandoffWay {
    pub fn name(self) -> &'static str {
        match self {
            HandoffWay::Asked => "asked",
            HandoffWay::Echo => "echo",
        }
    }
}

/// A conversation handed to a person, stored with it and changed with its conditional
/// writes: while there is one, the model is never asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    pub state: HandoffState,
    pub way: HandoffWay,
    /// Unix milliseconds when it began.
    pub since_ms: i64,
    /// Unix milliseconds when it ends by itself: the end of the wait for a person
    /// (`HANDOFF_TIMEOUT`), or `HANDOFF_HOURS` after the person's last message.
    pub until_ms: i64,
    /// When a person first wrote, once one has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_reply_ms: Option<i64>,
    /// The staff number (or user id) answering, when a staff member took it from their
    /// own WhatsApp: where the user's messages go meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff: Option<String>,
}

/// One stored turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub speaker: Speaker,
    pub text: String,
    /// The inbound WhatsApp message this turn belongs to.
    pub message_id: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// A user's recent turns, oldest first, and who answers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub v: u32,
    pub turns: Vec<Turn>,
    /// Set while a person has the conversation (or is asked for); `None`: the bot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<Handoff>,
    /// The user's `/voice on` (`true`) or `/voice off`; `None`: as `VOICE_REPLY` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<bool>,
}

impl Default for Conversation {
    fn default() -> Self {
        Conversation {
            v: HISTORY_VERSION,
            turns: Vec::new(),
            handoff: None,
            voice: None,
        }
    }
}

/// What a person of the business said, as the model reads it: the user's side of the
/// chat, marked as someone else's words (never the assistant's own).
pub const STAFF_PREFIX: &str = "(A person from the business wrote to me here: ";

/// How much of a conversation is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_turns: usize,
    pub max_chars: usize,
}

impl Conversation {
    /// Whether the exchange of `message_id` is stored.
    pub fn contains(&self, message_id: &str) -> bool {
        self.turns.iter().any(|t| t.message_id == message_id)
    }

    /// Keeps the most recent turns within `bounds`, starting with a user turn.
    pub fn trim(&mut self, bounds: Bounds) {
        let mut chars = 0;
        let mut keep = 0;
        for turn in self.turns.iter().rev() {
            let len = turn.text.chars().count();
            if keep == bounds.max_turns || chars + len > bounds.max_chars {
                break;
            }
            chars += len;
            keep += 1;
        }
        let mut start = self.turns.len() - keep;
        while self
            .turns
            .get(start)
            .is_some_and(|t| t.speaker == Speaker::Assistant)
        {
            start += 1;
        }
        self.turns.drain(..start);
    }

    /// The turns as chat messages; a person's words are on the user's side, marked.
    pub fn messages(&self) -> impl Iterator<Item = ChatMessage> + '_ {
        self.turns.iter().map(|t| match t.speaker {
            Speaker::User => ChatMessage::new(Role::User, t.text.clone()),
            Speaker::Assistant => ChatMessage::new(Role::Assistant, t.text.clone()),
            Speaker::Staff => ChatMessage::new(Role::User, format!("{STAFF_PREFIX}{})", t.text)),
        })
    }

    /// The latest turns whose texts fit in `max_chars` together, as chat messages in
    /// order: what of the conversation fits the host's context beside this turn's prompt.
    pub fn recent_messages(&self, max_chars: usize) -> Vec<ChatMessage> {
        let mut used = 0;
        let keep = self
            .turns
            .iter()
            .rev()
            .take_while(|t| {
                used += t.text.chars().count();
                used <= max_chars
            })
            .count();
        self.messages().skip(self.turns.len() - keep).collect()
    }

    /// Total characters of the turns.
    pub fn chars(&self) -> usize {
        self.turns.iter().map(|t| t.text.chars().count()).sum()
    }
}

/// Why the history could not be read or written.
#[derive(Debug, Error)]
pub enum HistoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the conversation {key} changed under {attempts} consecutive updates; another writer keeps winning, try again later"
    )]
    Contended { key: String, attempts: u32 },
}

/// A conversation as it was read, and the condition a write based on it must meet.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Trimmed to the bounds.
    pub conversation: Conversation,
    precondition: Precondition,
}

/// The conversations in the bucket.
#[derive(Debug, Clone)]
pub struct History {
    store: Store,
    bounds: Bounds,
}

impl History {
    pub fn new(store: Store, bounds: Bounds) -> Self {
        History { store, bounds }
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// The user's conversation, trimmed to the bounds (empty when there is none).
    pub async fn load(&self, user: &UserTag) -> Result<Conversation, HistoryError> {
        Ok(self.snapshot(user).await?.conversation)
    }

    /// The user's conversation as read now, with what a write based on it must find
    /// ([`History::append_to`] saves one read with it).
    pub async fn snapshot(&self, user: &UserTag) -> Result<Snapshot, HistoryError> {
        let (mut conversation, precondition) = self.read(&keys::conversation(user)).await?;
        conversation.trim(self.bounds);
        Ok(Snapshot {
            conversation,
            precondition,
        })
    }

    async fn read(&self, key: &str) -> Result<(Conversation, Precondition), HistoryError> {
        Ok(
            match self
                .store
                .get_state::<Conversation>(key, "responder")
                .await?
            {
                Some((c, etag)) => (c, Precondition::Matches(etag)),
                None => (Conversation::default(), Precondition::Absent),
            },
        )
    }

    /// Appends an exchange (the user's text and the answer) unless it is stored already.
    /// Returns whether it was written.
    pub async fn append(
        &self,
        user: &UserTag,
        message_id: &str,
        question: &str,
        answer: &str,
        at_ms: i64,
    ) -> Result<bool, HistoryError> {
        self.append_to(None, user, message_id, question, answer, at_ms)
            .await
    }

    /// [`History::append`], starting from a snapshot read earlier instead of reading the
    /// conversation again. The write is conditional on the snapshot's ETag, so if the
    /// conversation changed since, it is re-read and the exchange re-applied as usual.
    pub async fn append_to(
        &self,
        snapshot: Option<Snapshot>,
        user: &UserTag,
        message_id: &str,
        question: &str,
        answer: &str,
        at_ms: i64,
    ) -> Result<bool, HistoryError> {
        let turns = [(Speaker::User, question), (Speaker::Assistant, answer)];
        self.add_turns(snapshot, user, message_id, &turns, at_ms, |_| {})
            .await
    }

    /// Adds `turns` of message `message_id` unless that message is stored already, and
    /// applies `change` (to the hand-over state) in the same conditional write. Returns
    /// whether it was written.
    pub async fn add_turns(
        &self,
        snapshot: Option<Snapshot>,
        user: &UserTag,
        message_id: &str,
        turns: &[(Speaker, &str)],
        at_ms: i64,
        change: impl Fn(&mut Conversation),
    ) -> Result<bool, HistoryError> {
        self.update(snapshot, user, at_ms, |conversation| {
            if conversation.contains(message_id) {
                return false;
            }
            for (speaker, text) in turns {
                conversation.turns.push(Turn {
                    speaker: *speaker,
                    text: (*text).to_owned(),
                    message_id: message_id.to_owned(),
                    at_ms,
                });
            }
            change(conversation);
            true
        })
        .await
    }

    /// Read-modify-write of the conversation: `change` edits it and says whether to
    /// write; the write is conditional on what was read (`snapshot`, else a fresh read),
    /// and on conflict the conversation is read again and `change` applied again. Returns
    /// whether it was written.
    pub async fn update(
        &self,
        snapshot: Option<Snapshot>,
        user: &UserTag,
        at_ms: i64,
        change: impl Fn(&mut Conversation) -> bool,
    ) -> Result<bool, HistoryError> {
        let key = keys::conversation(user);
        let mut known = snapshot.map(|s| (s.conversation, s.precondition));
        for attempt in 0..UPDATE_ATTEMPTS {
            let (mut conversation, precondition) = match known.take() {
                Some(known) => known,
                None => self.read(&key).await?,
            };
            if !change(&mut conversation) {
                return Ok(false);
            }
            conversation.v = HISTORY_VERSION;
            conversation.trim(self.bounds);
            match self
                .store
                .put_json_if(&key, &conversation, precondition)
                .await?
            {
                Written::Yes(_) => return Ok(true),
                Written::Conflict => {
                    debug!(
                        attempt,
                        "conversation changed while updating it; re-reading"
                    );
                    // Spread concurrent writers apart a little.
                    let jitter = u64::from(at_ms.unsigned_abs() as u32 % 7) + u64::from(attempt);
                    tokio::time::sleep(Duration::from_millis(5 * (1 + jitter))).await;
                }
            }
        }
        Err(HistoryError::Contended {
            key,
            attempts: UPDATE_ATTEMPTS,
        })
    }

    /// Forgets the user's conversation.
    pub async fn clear(&self, user: &UserTag) -> Result<(), HistoryError> {
        self.store.delete(&keys::conversation(user)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(speaker: Speaker, text: &str, id: &str) -> Turn {
        Turn {
            speaker,
            text: text.to_owned(),
            message_id: id.to_owned(),
            at_ms: 0,
        }
    }

    fn conversation(n: usize, len: usize) -> Conversation {
        let mut c = Conversation::default();
        for i in 0..n {
            let speaker = if i % 2 == 0 {
                Speaker::User
            } else {
                Speaker::Assistant
            };
            c.turns
                .push(turn(speaker, &"x".repeat(len), &format!("m{}", i / 2)));
        }
        c
    }

    #[test]
    fn recent_messages_are_the_latest_turns_that_fit() {
        let mut c = Conversation::default();
        for (i, text) in ["aaaa", "bbbbbb", "cc", "ddd"].iter().enumerate() {
            c.turns.push(Turn {
                speaker: if i % 2 == 0 {
                    Speaker::User
                } else {
                    Speaker::Assistant
                },
                text: (*text).to_owned(),
                message_id: format!("m{i}"),
                at_ms: 0,
            });
        }
        let texts = |m: Vec<ChatMessage>| m.into_iter().map(|m| m.content).collect::<Vec<_>>();
        assert_eq!(texts(c.recent_messages(5)), ["cc", "ddd"]);
        assert_eq!(texts(c.recent_messages(100)).len(), 4);
        assert!(c.recent_messages(2).is_empty());
    }

    #[test]
    fn trimming_keeps_the_latest_turns_within_both_bounds() {
        let mut c = conversation(20, 10);
        c.trim(Bounds {
            max_turns: 12,
            max_chars: 6000,
        });
        assert_eq!(c.turns.len(), 12);
        assert_eq!(c.turns[0].message_id, "m4");
        let mut c = conversation(20, 100);
        c.trim(Bounds {
            max_turns: 12,
            max_chars: 450,
        });
        // Four turns of 100 characters fit in 450.
        assert_eq!(c.turns.len(), 4);
        assert_eq!(c.turns[0].speaker, Speaker::User);
        assert!(c.chars() <= 450);
    }

    #[test]
    fn a_history_never_starts_with_an_answer() {
        let mut c = conversation(6, 10);
        c.trim(Bounds {
            max_turns: 5,
            max_chars: 1000,
        });
        assert_eq!(c.turns.len(), 4);
        assert_eq!(c.turns[0].speaker, Speaker::User);
        let mut empty = conversation(4, 10);
        empty.trim(Bounds {
            max_turns: 0,
            max_chars: 1000,
        });
        assert!(empty.turns.is_empty());
    }

    #[test]
    fn turns_become_chat_messages_in_order() {
        let c = conversation(2, 3);
        let roles: Vec<Role> = c.messages().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant]);
        assert!(c.contains("m0"));
        assert!(!c.contains("m1"));
    }
}
