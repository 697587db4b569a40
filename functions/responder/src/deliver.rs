//! Delivering a claimed reply: marking the message read, sending each part (the access
//! token read again when the Graph API refuses it), recording each part with a
//! conditional write, and remembering the exchange once the reply is complete.

use std::time::{Duration, Instant};

use remedios_shared::clock::{Deadline, now_ms};
use remedios_shared::envelope::InboundMessage;
use remedios_shared::graph::{self, ErrorClass, GraphError, Recipient};
use remedios_shared::user::UserTag;
use tracing::{debug, error, info, warn};

use remedios_shared::graph::GraphClient;

use crate::config::ReengagementTemplate;
use crate::history::{History, Snapshot};
use crate::ledger::{Held, Ledger, ReplyRecord};
use crate::outcome::{Outcome, RetryLater};
use crate::recipient::recipient_of;
use crate::texts::Lang;

/// What one send carries.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outgoing<'a> {
    /// A text, quoting a message (the user's, for a part of the reply) or not.
    Text {
        text: &'a str,
        quote: Option<&'a str>,
    },
    /// An approved template, in a language code.
    Template { name: &'a str, language: &'a str },
}

/// Attempts of one Graph API send within an invocation before leaving it to the queue.
const SEND_ATTEMPTS: u32 = 3;
/// How long a sent part's record is retried through storage errors.
const RECORD_PATIENCE: Duration = Duration::from_secs(10);
/// The first backoff between them (doubling), unless Meta says `Retry-After`.
const SEND_BACKOFF: Duration = Duration::from_millis(400);
/// The longest wait within an invocation for one send.
const SEND_MAX_WAIT: Duration = Duration::from_secs(5);
/// What an invocation keeps, after asking the model, to claim the message and send and
/// record the answer: the model gets what is left of the deadline minus this. A send that
/// does not finish in it leaves the job to come back, and the stored parts go out then
/// without asking the model again.
pub const REPLY_MARGIN: Duration = Duration::from_secs(20);
/// One S3 write (the claim): the SDK's attempts against a slow S3, generously.
const STORE_WRITE: Duration = Duration::from_secs(5);
/// One SSM read of the access token after the Graph API refused it, generously.
const TOKEN_READ: Duration = Duration::from_secs(5);
/// The longest one part's send can take: every attempt timing out
/// ([`graph::MESSAGES_TIMEOUT`]), one more after the token is read again, and the longest
/// wait between them.
pub const WORST_SEND: Duration = Duration::from_secs(
    (SEND_ATTEMPTS as u64 + 1) * graph::MESSAGES_TIMEOUT.as_secs()
        + (SEND_ATTEMPTS as u64 - 1) * SEND_MAX_WAIT.as_secs()
        + TOKEN_READ.as_secs(),
);
/// What the last attempt keeps after asking the model, so that its apology goes out
/// before the deadline however slow the Graph API and S3 are: the claim, the worst send
/// of one part ([`WORST_SEND`]) and the record of it. (On earlier attempts a reply that
/// does not finish comes back; on the last one the apology is the user's only answer.)
pub const LAST_ATTEMPT_MARGIN: Duration =
    Duration::from_secs(STORE_WRITE.as_secs() + WORST_SEND.as_secs() + RECORD_PATIENCE.as_secs());

/// What delivering needs: the Graph API, the reply records, the conversations.
#[derive(Debug)]
pub struct Courier {
    pub(crate) graph: GraphClient,
    pub(crate) ledger: Ledger,
    pub(crate) history: History,
    /// Meta's test numbers, answered in the form the API accepts.
    pub(crate) normalize_test_recipients: bool,
    /// Sent instead when a reply is refused as past the 24-hour window.
    pub(crate) reengagement: Option<ReengagementTemplate>,
    /// Speaks answers that are to be voice notes.
    pub(crate) voice: crate::speak::VoiceEngine,
}

impl Courier {
    /// Sends what the record has not sent yet, recording each part, then remembers the
    /// exchange; also gives the time spent in the Graph API's send calls.
    pub(crate) async fn deliver(
        &self,
        message: &InboundMessage,
        user: &UserTag,
        mut held: Held,
        snapshot: Option<Snapshot>,
        language: Lang,
        deadline: Deadline,
    ) -> Result<(Outcome, Duration), RetryLater> {
        let recipient = self.recipient(message);
        let mut sent_now = 0;
        // Time spent in the Graph API's send calls, apart from recording each part.
        let mut sending = Duration::ZERO;
        let mut snapshot = snapshot;
        let mut remembered = false;
        if let Some(voice) = held.record.voice_pending().cloned() {
            let send_started = Instant::now();
            let mut record = self
                .speak(message, &recipient, &held.record, &voice, deadline)
                .await?;
            sending += send_started.elapsed();
            let spoken = record.voice.as_ref().is_some_and(|v| v.sent.is_some());
            record.updated_at_ms = now_ms();
            held = self
                .record_sent(user, &held, record)
                .await?
                .ok_or(RetryLater::Contended)?;
            if spoken {
                sent_now += 1;
                debug!(user = %user, "the answer went out as a voice note");
            }
        }
        loop {
            let Some((index, part)) = held.record.pending().next().map(|(i, p)| (i, p.to_owned()))
            else {
                break;
            };
            let send_started = Instant::now();
            let outgoing = Outgoing::Text {
                text: &part,
                quote: Some(&message.id),
            };
            let sent = self
                .send(&message.phone_number_id, &recipient, outgoing)
                .await;
            sending += send_started.elapsed();
            match sent {
                Ok(id) => {
                    sent_now += 1;
                    let mut record = held.record.clone();
                    record.sent.push(id);
                    record.updated_at_ms = now_ms();
                    let updated = if record.complete() {
                        // The reply was accepted in full: record that and save the
                        // exchange at the same time (the history holds each message id
                        // once, so a redelivery cannot store it twice).
                        let (updated, saved) = tokio::join!(
                            self.record_sent(user, &held, record.clone()),
                            self.remember(user, message, &record, snapshot.take())
                        );
                        saved?;
                        remembered = true;
                        let updated = updated?;
                        match &updated {
                            Some(held) => self.mark_remembered(user, held).await,
                            None => None,
                        }
                        .or(updated)
                    } else {
                        self.record_sent(user, &held, record).await?
                    };
                    held = updated.ok_or(RetryLater::Contended)?;
                    debug!(user = %user, part = index + 1, of = held.record.parts.len(), "reply part sent");
                }
                Err(error) => match error.class() {
                    class @ (ErrorClass::RateLimited | ErrorClass::Transient) => {
                        return Err(RetryLater::Graph { class, error });
                    }
                    ErrorClass::Auth => return Err(RetryLater::Auth(error)),
                    class @ (ErrorClass::Reengagement | ErrorClass::Permanent) => {
                        warn!(user = %user, code = error.code(), class = ?class, error = %error, part = index + 1, "the Graph API refused the reply for good; dropping it");
                        let mut record = held.record.clone();
                        record.dropped = Some(error.to_string());
                        record.updated_at_ms = now_ms();
                        // Best effort: a redelivery would be refused the same way. The
                        // template goes out only once the drop is recorded, so a
                        // redelivery never sends it twice.
                        let recorded = match self.ledger.update(&held, record).await {
                            Ok(updated) => updated.is_some(),
                            Err(e) => {
                                warn!(error = %e, "could not record the dropped reply");
                                false
                            }
                        };
                        let template = match (&self.reengagement, class) {
                            (Some(template), ErrorClass::Reengagement) if recorded => {
                                self.send_reengagement(
                                    message, user, &recipient, template, language,
                                )
                                .await
                            }
                            _ => false,
                        };
                        return Ok((
                            Outcome::Dropped {
                                code: error.code(),
                                template,
                            },
                            sending,
                        ));
                    }
                },
            }
        }
        if !remembered && held.record.complete() && !held.record.remembered {
            self.remember(user, message, &held.record, snapshot).await?;
            self.mark_remembered(user, &held).await;
        }
        Ok((
            Outcome::Replied {
                kind: held.record.kind,
                parts: sent_now,
            },
            sending,
        ))
    }

    /// Records that a part went out. WhatsApp takes no idempotency key, so a part sent
    /// but not recorded would be sent again by a redelivery: a failing write is retried
    /// with backoff for up to [`RECORD_PATIENCE`] (a short S3 outage) before giving up.
    /// `None` when the record changed meanwhile (another invocation holds it, or an
    /// earlier attempt's write landed although its answer was lost).
    async fn record_sent(
        &self,
        user: &UserTag,
        held: &Held,
        record: ReplyRecord,
    ) -> Result<Option<Held>, RetryLater> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(200);
        loop {
            match self.ledger.update(held, record.clone()).await {
                Ok(updated) => return Ok(updated),
                Err(e) if started.elapsed() + wait < RECORD_PATIENCE => {
                    warn!(user = %user, error = %e, wait_ms = wait.as_millis() as u64, "a sent part is not recorded yet; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    error!(user = %user, error = %e, "a sent part could not be recorded; a redelivery may send it again");
                    return Err(e.into());
                }
            }
        }
    }

    /// Marks a finished record as remembered, so no redelivery writes its exchange into
    /// the history again; the record as updated, `None` when that failed (logged: a
    /// redelivery then remembers once more, which the history's message ids absorb
    /// unless the conversation was reset or trimmed meanwhile).
    pub(crate) async fn mark_remembered(&self, user: &UserTag, held: &Held) -> Option<Held> {
        if held.record.remember.is_none() || held.record.remembered {
            return None;
        }
        let mut record = held.record.clone();
        record.remembered = true;
        record.updated_at_ms = now_ms();
        match self.ledger.update(held, record).await {
            Ok(updated) => updated,
            Err(e) => {
                warn!(user = %user, error = %e, "could not mark the reply as remembered");
                None
            }
        }
    }

    /// Saves a completed answer's exchange to the history (once), starting from the
    /// conversation the question was asked in when there is one.
    pub(crate) async fn remember(
        &self,
        user: &UserTag,
        message: &InboundMessage,
        record: &ReplyRecord,
        snapshot: Option<Snapshot>,
    ) -> Result<(), RetryLater> {
        if let (true, Some(exchange)) = (record.complete(), &record.remember) {
            self.history
                .append_to(
                    snapshot,
                    user,
                    &message.id,
                    &exchange.question,
                    &exchange.answer,
                    now_ms(),
                )
                .await?;
        }
        Ok(())
    }

    /// Tells a user whose reply is past the 24-hour window, with the deployer's template
    /// in their language, to write again; whether it went out. A refusal (a template not
    /// approved, 132001) is logged as the deployer's to fix.
    async fn send_reengagement(
        &self,
        message: &InboundMessage,
        user: &UserTag,
        recipient: &Recipient,
        template: &ReengagementTemplate,
        language: Lang,
    ) -> bool {
        let outgoing = Outgoing::Template {
            name: &template.name,
            language: template.language_for(language),
        };
        match self
            .send(&message.phone_number_id, recipient, outgoing)
            .await
        {
            Ok(_) => {
                info!(user = %user, template = %template.name, "the reply was past the 24-hour window; the re-engagement template went out instead");
                true
            }
            Err(e) => {
                error!(user = %user, template = %template.name, code = e.code(), error = %e, "the re-engagement template was refused: check REENGAGEMENT_TEMPLATE names a template approved in this language");
                false
            }
        }
    }

    /// One send from business number `phone`, with a few quick retries on rate limits
    /// and server errors (and the token read again once if refused); the sent message's id.
    pub(crate) async fn send(
        &self,
        phone: &str,
        recipient: &Recipient,
        outgoing: Outgoing<'_>,
    ) -> Result<String, GraphError> {
        let mut attempt = 0;
        let mut reread = false;
        loop {
            let sent = match outgoing {
                Outgoing::Text { text, quote } => {
                    self.graph.send_text(phone, recipient, text, quote).await
                }
                Outgoing::Template { name, language } => {
                    self.graph
                        .send_template(phone, recipient, name, language)
                        .await
                }
            };
            match sent {
                Ok(sent) => return Ok(sent.id),
                Err(e) if e.class() == ErrorClass::Auth && !reread => {
                    reread = true;
                    if !self.graph.reread_token().await {
                        return Err(e);
                    }
                }
                Err(e) if e.is_retryable() && attempt + 1 < SEND_ATTEMPTS => {
                    let wait = e
                        .retry_after()
                        .unwrap_or(SEND_BACKOFF * 2u32.pow(attempt))
                        .min(SEND_MAX_WAIT);
                    warn!(code = e.code(), class = ?e.class(), wait_ms = wait.as_millis() as u64, "Graph API send refused for now; trying again");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Marks the message read, with the typing indicator while the model thinks; a
    /// failure is only logged.
    pub(crate) async fn mark_read(&self, message: &InboundMessage, user: &UserTag, typing: bool) {
        if let Err(e) = self
            .graph
            .mark_read(&message.phone_number_id, &message.id, typing)
            .await
        {
            warn!(user = %user, code = e.code(), error = %e, "could not mark the message as read");
        }
    }

    /// Where the reply goes: the phone number when Meta gave one, else the BSUID.
    pub fn recipient(&self, message: &InboundMessage) -> Recipient {
        recipient_of(message, self.normalize_test_recipients)
    }
}
