//! A user waiting for a person, and the timer that ends the wait.
//!
//! When a user asks for a person, the responder leaves a [`HandoffTimer`] on its own
//! queue (the reply queue), in a FIFO group of its own so it never holds back the user's
//! messages. SQS gives it back at once; while it is not due, the responder hides it again
//! until it is ([`RetryLater::NotYet`], through `ChangeMessageVisibility`: at most
//! 12 hours, hence `HANDOFF_TIMEOUT_MINUTES` ≤ 720). When it is due and that same wait is
//! still unanswered, the user is told ([`FixedText::HandoffTimeout`], once: claimed
//! before the send like a staff relay) and the assistant answers again.
//!
//! A wait that ended another way (a person answered, `/bot`, a new message after the
//! timeout) leaves the timer nothing to do. Without a queue (tests, a run by hand) there
//! is no timer, and the wait ends with the user's next message after it.

use std::time::Duration;

use remedios_shared::batch::MAX_VISIBILITY;
use remedios_shared::clock::now_ms;
use remedios_shared::envelope::{HandoffTimer, InboundMessage};
use remedios_shared::keys;
use remedios_shared::metrics::{Metrics, Unit};
use remedios_shared::queue::{self, Outgoing as QueueMessage};
use tracing::{info, warn};

use crate::deliver::Outgoing;
use crate::handler::{Responder, conversation_language};
use crate::handoff;
use crate::history::{Conversation, HandoffState};
use crate::outcome::{Outcome, RetryLater};
use crate::recipient::recipient_of;
use crate::texts::FixedText;

/// Whether `conversation` still holds the wait `timer` was set for, and it is over.
fn timed_out(conversation: &Conversation, timer: &HandoffTimer, now_ms: i64) -> bool {
    conversation.handoff.as_ref().is_some_and(|h| {
        h.state == HandoffState::Waiting && h.since_ms == timer.since_ms && now_ms >= h.until_ms
    }) && handoff::lapsed(conversation, now_ms) == Some("timeout")
}

/// How long until `due_ms`, rounded up to the second SQS counts in.
fn until(due_ms: i64, now_ms: i64) -> Duration {
    let ms = u64::try_from(due_ms.saturating_sub(now_ms)).unwrap_or(0);
    Duration::from_secs(ms.div_ceil(1000)).min(MAX_VISIBILITY)
}

impl Responder {
    /// Leaves the timer for the wait `message` starts at `since_ms` (ending at
    /// `until_ms`). Best effort: without it the wait still ends with the user's next
    /// message after the timeout.
    pub(crate) async fn start_timer(&self, message: &InboundMessage, since_ms: i64, until_ms: i64) {
        let Some(source) = &self.source else {
            return;
        };
        let timer = HandoffTimer::new(message.clone(), since_ms, until_ms);
        let sent = match queue::body(&timer) {
            Ok(body) => {
                let outgoing = QueueMessage {
                    body,
                    group_id: timer.group_id(),
                    dedup_id: queue::dedup_id(
                        message.message_tag.as_str(),
                        Some(&format!("timer-{since_ms}")),
                    ),
                };
                source
                    .send_all(&[outgoing])
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = sent {
            Metrics::of("responder")
                .value("HandoffTimersLost", Unit::Count, 1.0)
                .emit();
            warn!(user = %message.user, error, "could not set the timer of a wait for a person: it ends with the user's next message instead");
        }
    }

    /// A hand-over timer came back: not due yet, it goes back to the queue; due, and the
    /// wait it was set for still unanswered, the user is told and the assistant answers
    /// again.
    pub(crate) async fn timer_due(&self, timer: &HandoffTimer) -> Result<Outcome, RetryLater> {
        let now = now_ms();
        if now < timer.due_ms {
            return Err(RetryLater::NotYet {
                after: until(timer.due_ms, now),
            });
        }
        let message = &timer.message;
        let user = &message.user;
        let snapshot = self.history.snapshot(user).await?;
        if !timed_out(&snapshot.conversation, timer, now) {
            return Ok(Outcome::Ignored {
                why: "the wait for a person ended before its timeout",
            });
        }
        // Once per wait: claimed before the send, marked after it (named by the keyed tag
        // of the message that asked, never its WhatsApp id).
        let once = keys::handoff_timeout(user, &message.message_tag, timer.since_ms);
        if let Some(claim) = self.claim_once(&once).await? {
            let lang = conversation_language(&snapshot.conversation).unwrap_or_default();
            let text = self.behaviour.texts.get(FixedText::HandoffTimeout, lang);
            let to = recipient_of(message, self.behaviour.normalize_test_recipients);
            let outgoing = Outgoing::Text { text, quote: None };
            if let Err(error) = self
                .courier
                .send(&message.phone_number_id, &to, outgoing)
                .await
            {
                return Err(RetryLater::Graph {
                    class: error.class(),
                    error,
                });
            }
            crate::staff::count_billed("handoff_timeout");
            self.mark_sent_once(&once, claim).await;
        }
        let cleared = self
            .history
            .update(Some(snapshot), user, now, |c| {
                timed_out(c, timer, now) && {
                    c.handoff = None;
                    true
                }
            })
            .await?;
        if cleared {
            handoff::count_returned("timeout");
            info!(user = %user, "nobody answered the user in time: the assistant answers again");
        }
        Ok(Outcome::Ignored {
            why: "the wait for a person timed out",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_until_due_is_rounded_up_and_bounded_by_what_sqs_allows() {
        assert_eq!(until(10_001, 0), Duration::from_secs(11));
        assert_eq!(until(10_000, 0), Duration::from_secs(10));
        assert_eq!(until(0, 5), Duration::ZERO);
        assert_eq!(until(i64::MAX, 0), MAX_VISIBILITY);
    }
}
