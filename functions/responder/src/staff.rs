//! Staff who answer from their own WhatsApp (`STAFF_NUMBERS`), through the business
//! number.
//!
//! - When a user asks for a person, every staff number gets a notification from the
//!   business number: the user's name and last messages ([`FixedText::StaffNotice`]).
//!   Each notification sent is filed as a [`Note`] under the unkeyed tag of its WhatsApp
//!   id ([`keys::handoff_note`]), naming the user's conversation.
//! - A staff message that quotes a note (`context.id`) is for that user: relayed to them
//!   as a text from the business number (once: [`keys::handoff_relay`]), kept in their
//!   history as staff's words, and the conversation is the person's for `HANDOFF_HOURS`;
//!   `/bot` hands it back. A user who is not waiting for a person or talking to one cannot
//!   be reached this way, and staff are told.
//! - Outside WhatsApp's 24-hour window (the user last wrote over a day ago) the relay is
//!   not sent: the re-engagement template goes instead when one is configured, and staff
//!   are told either way.
//! - What the user writes while a staff member has the conversation is forwarded to that
//!   member (to every staff number while the user waits), each forward a note too.
//!
//! Staff messages that quote no note are answered as any user's.

use remedios_shared::clock::now_ms;
use remedios_shared::envelope::{Content, InboundMessage, ReplyJob};
use remedios_shared::graph::Recipient;
use remedios_shared::keys;
use remedios_shared::metrics::{Metrics, Unit};
use remedios_shared::store::{Precondition, Written};
use remedios_shared::user::{MessageTag, Sender, UserTag};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::deliver::Outgoing;
use crate::handler::{Responder, conversation_language};
use crate::handoff;
use crate::history::{Conversation, Speaker};
use crate::outcome::{Outcome, RetryLater};
use crate::recipient::recipient_of;
use crate::texts::{FixedText, Lang};

/// WhatsApp's customer service window: free-form messages reach a user only within it.
pub const SERVICE_WINDOW_MS: i64 = 24 * 3_600_000;
/// How many of the user's last messages a notification quotes, and how much of each.
const NOTICE_MESSAGES: usize = 4;
const NOTICE_CHARS: usize = 300;

/// A notification sent to a staff number: whose conversation a reply to it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub user: UserTag,
    /// The user, to write to (their number stays inside the object, never in its name).
    pub customer: Sender,
    /// The business number the user writes to.
    pub phone_number_id: String,
    pub at_ms: i64,
}

/// A message sent once for a hand-over (a staff message relayed to a user, the notice
/// that a wait timed out): claimed before the send, marked sent after it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Relay {
    #[serde(default)]
    sent: bool,
}

/// The name staff see for a user.
fn name_of(sender: &Sender) -> String {
    sender
        .profile_name
        .clone()
        .or_else(|| sender.username.clone())
        .unwrap_or_else(|| "A user".to_owned())
}

/// `text`, cut at `max` characters.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Where a staff member's id (a number or a user id from `STAFF_NUMBERS`) is written to.
fn staff_recipient(id: &str) -> Recipient {
    if id.chars().all(|c| c.is_ascii_digit()) {
        Recipient::Phone(id.to_owned())
    } else {
        Recipient::UserId(id.to_owned())
    }
}

/// The id of a staff sender as `STAFF_NUMBERS` lists it (the phone number, else the
/// user id).
fn staff_id(sender: &Sender) -> Option<String> {
    sender
        .wa_id
        .as_deref()
        .map(|n| n.trim_start_matches('+').to_owned())
        .or_else(|| sender.user_id.clone())
}

impl Responder {
    /// Tells staff that the user of `message` asks for a person, with their last messages
    /// in `conversation`. Best effort per staff number: one refused does not stop the
    /// others.
    pub(crate) async fn notify_staff(&self, message: &InboundMessage, conversation: &Conversation) {
        let staff = &self.behaviour.handoff.staff;
        if staff.is_empty() {
            return;
        }
        let mut last: Vec<String> = conversation
            .turns
            .iter()
            .rev()
            .filter(|t| t.speaker == Speaker::User)
            .take(NOTICE_MESSAGES)
            .map(|t| format!("› {}", cut(&t.text, NOTICE_CHARS)))
            .collect();
        last.reverse();
        let name = name_of(&message.sender);
        let text = self.behaviour.texts.fill(
            FixedText::StaffNotice,
            Lang::default(),
            &name,
            &last.join("\n"),
        );
        for id in staff.ids() {
            self.send_note(message, &staff_recipient(id), &text).await;
        }
    }

    /// Sends `text` (a notification or a forward) to a staff member and files it as a note
    /// about the user of `message`.
    async fn send_note(&self, message: &InboundMessage, to: &Recipient, text: &str) {
        let outgoing = Outgoing::Text { text, quote: None };
        let sent = match self
            .courier
            .send(&message.phone_number_id, to, outgoing)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                warn!(user = %message.user, code = e.code(), error = %e, "a staff number could not be told (it must have written to the business number within 24 hours)");
                return;
            }
        };
        count_billed("handoff_staff");
        let note = Note {
            user: message.user.clone(),
            customer: message.sender.clone(),
            phone_number_id: message.phone_number_id.clone(),
            at_ms: now_ms(),
        };
        let key = keys::handoff_note(&MessageTag::unkeyed(&sent));
        if let Err(e) = &self.store.put_json(&key, &note).await {
            warn!(user = %message.user, error = %e, "a staff notification went out but is not filed: a reply to it will be answered as any message");
        }
    }

    /// Forwards what the user of `job` wrote while a staff member has (or is asked for)
    /// the conversation: to that member, or to every staff number while nobody has
    /// answered. Nothing when the hand-over came from the app (people read it there).
    pub(crate) async fn forward_to_staff(&self, job: &ReplyJob, text: &str, staff: Option<&str>) {
        let message = &job.message;
        let body = self.behaviour.texts.fill(
            FixedText::StaffForward,
            Lang::default(),
            &name_of(&message.sender),
            &cut(text, 3000),
        );
        let to: Vec<String> = match staff {
            Some(one) => vec![one.to_owned()],
            None => self
                .behaviour
                .handoff
                .staff
                .ids()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        };
        for id in to {
            self.send_note(message, &staff_recipient(&id), &body).await;
        }
    }

    /// A message from a staff number: `Some` when it quotes a note (relayed, handed back,
    /// or refused with a word to staff), `None` when it is to be answered as any user's.
    pub(crate) async fn staff_wrote(&self, job: &ReplyJob) -> Result<Option<Outcome>, RetryLater> {
        let message = &job.message;
        let Some(context) = &message.context else {
            return Ok(None);
        };
        let store = &self.store;
        let note_key = keys::handoff_note(&MessageTag::unkeyed(&context.message_id));
        let Some((note, _)) = store.get_json::<Note>(&note_key).await? else {
            return Ok(None);
        };
        let staff_lang = match &message.content {
            Content::Text { body } => Lang::of_text(body).unwrap_or_default(),
            _ => Lang::default(),
        };
        let staff_to = recipient_of(message, false);
        let tell_staff = |text: FixedText| {
            let words = self.behaviour.texts.get(text, staff_lang).to_owned();
            let staff_to = staff_to.clone();
            async move {
                let outgoing = Outgoing::Text {
                    text: &words,
                    quote: Some(&message.id),
                };
                match self
                    .courier
                    .send(&message.phone_number_id, &staff_to, outgoing)
                    .await
                {
                    Ok(_) => count_billed("handoff_staff"),
                    Err(e) => warn!(code = e.code(), error = %e, "could not answer a staff member"),
                }
            }
        };
        let Content::Text { body } = &message.content else {
            tell_staff(FixedText::StaffTextOnly).await;
            return Ok(Some(relayed("a staff message that is not text")));
        };
        let user = &note.user;
        let now = now_ms();
        let snapshot = self.history.snapshot(user).await?;
        if handoff::in_force(&snapshot.conversation, now).is_none() {
            info!(user = %user, "a staff member answered a user who is not waiting for a person");
            tell_staff(FixedText::StaffNotWaiting).await;
            return Ok(Some(relayed("the user is not waiting for a person")));
        }
        // Once per staff message: claimed before the send, marked after it.
        let relay_key = keys::handoff_relay(user, &message.message_tag);
        let Some(claim) = self.claim_once(&relay_key).await? else {
            info!(user = %user, "this staff message was relayed already");
            return Ok(Some(relayed("relayed already")));
        };
        let customer_lang = conversation_language(&snapshot.conversation).unwrap_or_default();
        let to_customer = recipient_of(
            &InboundMessage {
                sender: note.customer.clone(),
                ..message.clone()
            },
            self.behaviour.normalize_test_recipients,
        );
        let back = body.trim().eq_ignore_ascii_case("/bot");
        let last_user_ms = snapshot
            .conversation
            .turns
            .iter()
            .rev()
            .find(|t| t.speaker == Speaker::User)
            .map(|t| t.at_ms);
        let in_window = last_user_ms.is_some_and(|at| now - at < SERVICE_WINDOW_MS);
        if back {
            self.history
                .update(Some(snapshot), user, now, |c| {
                    handoff::back(c, now).is_some()
                })
                .await?;
            handoff::count_returned("staff");
            if in_window {
                let words = self
                    .behaviour
                    .texts
                    .get(FixedText::HandoffBack, customer_lang);
                self.send_to_customer(&note, &to_customer, words).await?;
            }
            self.mark_sent_once(&relay_key, claim).await;
            tell_staff(FixedText::StaffBack).await;
            info!(user = %user, "a staff member handed the user back to the assistant");
            return Ok(Some(relayed("handed back by staff")));
        }
        if !in_window {
            let template = self.behaviour.reengagement.clone();
            let sent_template = match &template {
                Some(template) => {
                    let outgoing = Outgoing::Template {
                        name: &template.name,
                        language: template.language_for(customer_lang),
                    };
                    match self
                        .courier
                        .send(&note.phone_number_id, &to_customer, outgoing)
                        .await
                    {
                        Ok(_) => {
                            count_billed("reengagement_template");
                            true
                        }
                        Err(e) => {
                            warn!(user = %user, code = e.code(), error = %e, "the re-engagement template was refused");
                            false
                        }
                    }
                }
                None => false,
            };
            self.mark_sent_once(&relay_key, claim).await;
            tell_staff(if sent_template {
                FixedText::StaffTemplateSent
            } else {
                FixedText::StaffUndelivered
            })
            .await;
            info!(user = %user, template = sent_template, "a staff reply to a user outside the 24-hour window was not delivered");
            return Ok(Some(relayed("outside the 24-hour window")));
        }
        self.send_to_customer(&note, &to_customer, body).await?;
        self.mark_sent_once(&relay_key, claim).await;
        let staff = staff_id(&message.sender);
        self.person_said(user, &message.id, body, Some(snapshot), staff.as_deref())
            .await?;
        info!(user = %user, "a staff reply was relayed to the user");
        Ok(Some(relayed("relayed from staff")))
    }

    /// Sends `text` to the user of `note`; a refusal that will not pass leaves the job to
    /// come back (a rate limit) or is told as an error.
    async fn send_to_customer(
        &self,
        note: &Note,
        to: &Recipient,
        text: &str,
    ) -> Result<(), RetryLater> {
        let outgoing = Outgoing::Text { text, quote: None };
        match self.courier.send(&note.phone_number_id, to, outgoing).await {
            Ok(_) => {
                count_billed("handoff_relay");
                Ok(())
            }
            Err(error) => Err(RetryLater::Graph {
                class: error.class(),
                error,
            }),
        }
    }

    /// Claims the message of `key` (a [`keys::handoff_relay`]) before sending it: the
    /// precondition to mark it sent with, or `None` when it was sent already.
    pub(crate) async fn claim_once(&self, key: &str) -> Result<Option<Precondition>, RetryLater> {
        let store = &self.store;
        Ok(match store.get_json::<Relay>(key).await? {
            Some((relay, _)) if relay.sent => None,
            Some((_, etag)) => Some(Precondition::Matches(etag)),
            None => match store
                .put_json_if(key, &Relay::default(), Precondition::Absent)
                .await?
            {
                Written::Yes(etag) => Some(Precondition::Matches(etag)),
                Written::Conflict => return Err(RetryLater::Contended),
            },
        })
    }

    /// Marks a claimed message as sent (best effort: a redelivery would then send it
    /// again).
    pub(crate) async fn mark_sent_once(&self, key: &str, claim: Precondition) {
        let store = &self.store;
        if let Err(e) = store.put_json_if(key, &Relay { sent: true }, claim).await {
            warn!(error = %e, "a message sent once for a hand-over is not marked as sent");
        }
    }
}

fn relayed(why: &'static str) -> Outcome {
    Outcome::Ignored { why }
}

/// Each message Meta bills, by kind.
pub(crate) fn count_billed(kind: &'static str) {
    Metrics::of("responder")
        .dimension("Kind", kind)
        .value("BilledMessages", Unit::Count, 1.0)
        .emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staff_ids_become_recipients_and_names_fall_back() {
        assert_eq!(
            staff_recipient("15550002222"),
            Recipient::Phone("15550002222".into())
        );
        assert_eq!(staff_recipient("US.42"), Recipient::UserId("US.42".into()));
        let mut sender = Sender {
            wa_id: Some("+15550002222".into()),
            user_id: None,
            username: Some("ana.r".into()),
            profile_name: None,
        };
        assert_eq!(staff_id(&sender).as_deref(), Some("15550002222"));
        assert_eq!(name_of(&sender), "ana.r");
        sender.username = None;
        assert_eq!(name_of(&sender), "A user");
        assert_eq!(cut("abcdef", 3), "abc…");
        assert_eq!(cut("abc", 3), "abc");
    }
}
