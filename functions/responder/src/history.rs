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

/// One side of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    User,
    Assistant,
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

/// A user's recent turns, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub v: u32,
    pub turns: Vec<Turn>,
}

impl Default for Conversation {
    fn default() -> Self {
        Conversation {
            v: HISTORY_VERSION,
            turns: Vec::new(),
        }
    }
}

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

    /// The turns as chat messages.
    pub fn messages(&self) -> impl Iterator<Item = ChatMessage> + '_ {
        self.turns.iter().map(|t| {
            let role = match t.speaker {
                Speaker::User => Role::User,
                Speaker::Assistant => Role::Assistant,
            };
            ChatMessage::new(role, t.text.clone())
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
        let key = keys::conversation(user);
        let mut known = snapshot.map(|s| (s.conversation, s.precondition));
        for attempt in 0..UPDATE_ATTEMPTS {
            let (mut conversation, precondition) = match known.take() {
                Some(known) => known,
                None => self.read(&key).await?,
            };
            if conversation.contains(message_id) {
                return Ok(false);
            }
            for (speaker, text) in [(Speaker::User, question), (Speaker::Assistant, answer)] {
                conversation.turns.push(Turn {
                    speaker,
                    text: text.to_owned(),
                    message_id: message_id.to_owned(),
                    at_ms,
                });
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
