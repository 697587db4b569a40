//! The responder's Lambda handler: [`Responder`], a reply job from the queue to WhatsApp.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use remedios_shared::batch;
use remedios_shared::clock::{Deadline, now_ms};
use remedios_shared::envelope::{self, Content, InboundMessage, ReplyJob};
use remedios_shared::graph::{self, ErrorClass, GraphClient, GraphError, Recipient};
use remedios_shared::metrics::{Metrics, Unit};
use remedios_shared::queue::Queue;
use remedios_shared::secrets::{self, SecretError, SecretSource};
use remedios_shared::store::{Store, StoreError};
use remedios_shared::user::UserTag;
use thiserror::Error;
use tracing::{debug, error, info, warn};

use crate::config::Uncovered;
use crate::config::{Behaviour, Config, SummaryMode};
use crate::decision::{self as plan, Command, Heard, Plan};
use crate::gpt4all::{ChatMessage, Completion, Gpt4AllClient, Gpt4AllError, Role};
use crate::history::{Bounds, Conversation, History, HistoryError, Snapshot, Speaker};
use crate::knowledge::{self, Knowledge, KnowledgeError};
use crate::ledger::{Exchange, Held, Ledger, ReplyKind, ReplyRecord};
use crate::recipient::recipient_of;
use crate::split::{WHATSAPP_TEXT_LIMIT, split_message};
use crate::texts::{Fixed, Lang};

/// What the model is told when it summarises a voice note (`SUMMARY`).
pub const SUMMARY_PROMPT: &str = "Summarise the voice note the user gives you in one to \
three short sentences, in the language it is spoken in. Reply with the summary only.";

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

/// Why the responder could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("could not build the Graph API client: {0}")]
    Graph(#[from] GraphError),
    #[error("could not build the GPT4All client: {0}")]
    Model(#[from] Gpt4AllError),
    #[error("KNOWLEDGE is on, but the knowledge could not be loaded: {0}")]
    Knowledge(#[from] KnowledgeError),
}

/// Why a job is left on the queue to be tried again.
#[derive(Debug, Error)]
pub enum RetryLater {
    #[error("the GPT4All host gave no answer: {0}")]
    Model(#[from] Gpt4AllError),
    #[error(
        "the GPT4All host gave no answer on the last attempt; the user got an apology and the job goes to the dead-letter queue"
    )]
    Apologised,
    #[error("the Graph API refused for now ({class:?}): {error}")]
    Graph {
        class: ErrorClass,
        error: GraphError,
    },
    #[error(
        "the WhatsApp access token is invalid or expired: {0}; replace it (WHATSAPP_ACCESS_TOKEN or its SSM parameter) and redrive the dead-letter queue"
    )]
    Auth(GraphError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("another invocation is answering this message right now")]
    Contended,
    #[error(transparent)]
    Envelope(#[from] envelope::EnvelopeError),
    #[error("the SQS record has no body")]
    NoBody,
}

impl RetryLater {
    /// A short name for logs and metrics, as the transcriber's record errors have.
    pub fn cause(&self) -> &'static str {
        match self {
            RetryLater::Model(_) => "model",
            RetryLater::Apologised => "apologised",
            RetryLater::Graph {
                class: ErrorClass::RateLimited,
                ..
            } => "graph_rate_limited",
            RetryLater::Graph { .. } => "graph_transient",
            RetryLater::Auth(_) => "graph_auth",
            RetryLater::Store(_) | RetryLater::History(_) => "s3",
            RetryLater::Contended => "contended",
            RetryLater::Envelope(_) | RetryLater::NoBody => "malformed",
        }
    }
}

/// What became of a job that needs no retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to answer.
    Ignored { why: &'static str },
    /// Answered earlier (a redelivery).
    AlreadyAnswered,
    /// Replied; how many text messages went out in this attempt.
    Replied { kind: ReplyKind, parts: usize },
    /// The Graph API refused for good (131047 and other permanent errors).
    Dropped { code: Option<i64> },
}

/// The responder, with its clients. Build it once per container.
#[derive(Debug)]
pub struct Responder {
    /// The reply queue, when known: failed records come back after their backoff.
    source: Option<Queue>,
    graph: GraphClient,
    model: Gpt4AllClient,
    history: History,
    ledger: Ledger,
    behaviour: Behaviour,
    /// The business's own material, when `KNOWLEDGE` is on.
    knowledge: Option<Arc<Knowledge>>,
}

impl Responder {
    /// Resolves the secrets (from SSM when configured so) and wires the clients.
    pub async fn connect(config: &Config, sdk: &SdkConfig) -> Result<Self, StartError> {
        let mut sources: Vec<&SecretSource> = vec![&config.access_token];
        sources.extend(config.model_api_key.as_ref());
        let mut resolved = secrets::load(sdk, &sources).await?.into_iter();
        let token = resolved
            .next()
            .ok_or_else(|| SecretError::NotFound("WHATSAPP_ACCESS_TOKEN".into()))?;
        let api_key = resolved.next();
        let store = Store::new(remedios_shared::aws::s3(sdk, &config.aws), &config.bucket);
        let graph = GraphClient::new(config.graph.clone().with_token(token))?
            .with_token_source(sdk.clone(), config.access_token.clone());
        let model = Gpt4AllClient::new(config.model.clone(), api_key)?;
        if config.model.prompt_chars() < plan::QUESTION_MAX_CHARS {
            warn!(
                max_tokens = config.model.max_tokens,
                context_tokens = config.model.context_tokens,
                "GPT4ALL_MAX_TOKENS leaves little of GPT4ALL_CONTEXT_TOKENS for the prompt: long questions will be refused; lower it or raise the host's context"
            );
        }
        let knowledge = if config.behaviour.knowledge.enabled {
            let (knowledge, _) = knowledge::load_or_build(&store, now_ms()).await?;
            if knowledge.passages().is_empty() {
                warn!(
                    "KNOWLEDGE is on but there is no material under knowledge/ in the bucket: every question is uncovered"
                );
            }
            Some(knowledge)
        } else {
            None
        };
        let mut responder = Self::new(store, graph, model, config.behaviour.clone());
        if let Some(knowledge) = knowledge {
            responder = responder.with_knowledge(knowledge);
        }
        Ok(match &config.reply_queue_url {
            Some(url) => responder.with_source(Queue::new(remedios_shared::aws::sqs(sdk), url)),
            None => responder,
        })
    }

    /// Answers questions from `knowledge` (used when `behaviour.knowledge` is enabled).
    pub fn with_knowledge(mut self, knowledge: Knowledge) -> Self {
        self.knowledge = Some(Arc::new(knowledge));
        self
    }

    /// Brings failed records of `source` (the reply queue) back after their backoff.
    pub fn with_source(mut self, source: Queue) -> Self {
        self.source = Some(source);
        self
    }

    /// A responder over ready clients.
    pub fn new(
        store: Store,
        graph: GraphClient,
        model: Gpt4AllClient,
        behaviour: Behaviour,
    ) -> Self {
        let bounds = Bounds {
            max_turns: behaviour.history_max_turns,
            max_chars: behaviour.history_max_chars,
        };
        Responder {
            source: None,
            graph,
            model,
            history: History::new(store.clone(), bounds),
            ledger: Ledger::new(store),
            behaviour,
            knowledge: None,
        }
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Handles a batch without a deadline (tests, a run by hand); see [`Self::handle_by`].
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_by(event, Deadline::NONE).await
    }

    /// Handles a batch within the invocation's deadline; the failed records are retried
    /// by SQS.
    pub async fn handle_by(&self, event: SqsEvent, deadline: Deadline) -> SqsBatchResponse {
        let redelivery = batch::Redelivery {
            source: self.source.as_ref(),
            max_receive_count: self.behaviour.max_receive_count,
        };
        batch::in_order(
            &event.records,
            redelivery,
            batch::group_of,
            |record| async move {
                self.handle_record(record, deadline).await.map_err(|e| {
                    log_retry(record.message_id.as_deref().unwrap_or_default(), &e);
                })
            },
        )
        .await
    }

    async fn handle_record(
        &self,
        record: &SqsMessage,
        deadline: Deadline,
    ) -> Result<Outcome, RetryLater> {
        let body = record.body.as_deref().ok_or(RetryLater::NoBody)?;
        let job: ReplyJob = envelope::decode(body)?;
        self.process_by(&job, batch::receive_count(record), deadline)
            .await
    }

    /// Answers one job without a deadline; see [`Self::process_by`].
    pub async fn process(&self, job: &ReplyJob, receive_count: u32) -> Result<Outcome, RetryLater> {
        self.process_by(job, receive_count, Deadline::NONE).await
    }

    /// Answers one job. `receive_count` is how many times SQS delivered it (1 at first);
    /// the model gets what is left before `deadline`, less [`REPLY_MARGIN`].
    pub async fn process_by(
        &self,
        job: &ReplyJob,
        receive_count: u32,
        deadline: Deadline,
    ) -> Result<Outcome, RetryLater> {
        let started = Instant::now();
        let message = &job.message;
        let user = message.user.clone();
        let behaviour = &self.behaviour;
        let own_language = plan::language_of(job);
        let plan = plan::plan_for(job, behaviour, own_language.unwrap_or_default());
        if let Plan::Ignore { why } = plan {
            debug!(user = %user, kind = message.content.kind(), why, "nothing to answer");
            count_job("ignored");
            return Ok(Outcome::Ignored { why });
        }
        // A question needs the conversation, and so does a fixed text whose language the
        // message does not tell: read it while looking for an earlier reply.
        let (existing, snapshot) = if matches!(plan, Plan::Ask { .. }) || own_language.is_none() {
            let (existing, snapshot) = tokio::join!(
                self.ledger.get(&user, &message.message_tag, &message.id),
                self.history.snapshot(&user)
            );
            (existing?, Some(snapshot?))
        } else {
            (
                self.ledger
                    .get(&user, &message.message_tag, &message.id)
                    .await?,
                None,
            )
        };
        let language = own_language
            .or_else(|| {
                snapshot
                    .as_ref()
                    .and_then(|s| conversation_language(&s.conversation))
            })
            .unwrap_or_default();
        let plan = if own_language == Some(language) {
            plan
        } else {
            plan::plan_for(job, behaviour, language)
        };
        let mut snapshot_for_history = None;
        let held = match existing {
            Some(held) if held.record.kind != ReplyKind::Apology || !held.record.finished() => {
                if held.record.finished() {
                    if !held.record.remembered {
                        self.remember(&user, message, &held.record, None).await?;
                        self.mark_remembered(&user, &held).await;
                    }
                    info!(user = %user, message = %message.message_tag, "already answered; not answering again");
                    count_job("duplicate");
                    return Ok(Outcome::AlreadyAnswered);
                }
                info!(user = %user, message = %message.message_tag, sent = held.record.sent.len(), parts = held.record.parts.len(), "resuming an earlier reply");
                held
            }
            previous => {
                let (record, snapshot) = self
                    .compose(
                        job,
                        &user,
                        &plan,
                        (receive_count, deadline, language),
                        snapshot,
                    )
                    .await?;
                snapshot_for_history = snapshot;
                let apologised_before = previous
                    .as_ref()
                    .is_some_and(|p| p.record.kind == ReplyKind::Apology);
                if record.kind == ReplyKind::Apology && apologised_before {
                    // One apology per message is enough.
                    return Err(RetryLater::Apologised);
                }
                match self
                    .ledger
                    .claim(&user, &message.message_tag, record, previous.as_ref())
                    .await?
                {
                    Some(held) => held,
                    None => return Err(RetryLater::Contended),
                }
            }
        };
        let (outcome, sending) = self
            .deliver(message, &user, held, snapshot_for_history)
            .await?;
        info!(
            user = %user,
            kind = message.content.kind(),
            outcome = ?outcome,
            receive_count,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "reply job done"
        );
        count_job(match &outcome {
            Outcome::Replied { kind, .. } => replied_as(&plan, *kind),
            Outcome::Dropped { .. } => "dropped",
            Outcome::Ignored { .. } => "ignored",
            Outcome::AlreadyAnswered => "duplicate",
        });
        if let Outcome::Replied { kind, parts } = &outcome
            && *parts > 0
        {
            let content = match &message.content {
                Content::Text { .. } => "text",
                Content::Audio { .. } => "voice",
                c if c.media().is_some() => "media",
                _ => "other",
            };
            // The figure users feel: from the webhook's receipt to WhatsApp taking the reply.
            let end_to_end_ms = (now_ms() - message.received_at_ms).max(0) as f64;
            Metrics::of("responder")
                .dimension("Reply", kind.name())
                .dimension("Content", content)
                .value("EndToEndMs", Unit::Milliseconds, end_to_end_ms)
                .value("Parts", Unit::Count, *parts as f64)
                .value(
                    "JobMs",
                    Unit::Milliseconds,
                    started.elapsed().as_millis() as f64,
                )
                .value("SendMs", Unit::Milliseconds, sending.as_secs_f64() * 1e3)
                .emit();
        }
        if let Outcome::Replied {
            kind: ReplyKind::Apology,
            ..
        } = outcome
        {
            // The job goes on to the dead-letter queue, kept for the operator.
            return Err(RetryLater::Apologised);
        }
        Ok(outcome)
    }

    /// Works out the reply of a job that has none yet; for a question, also gives back the
    /// conversation it was asked in, so saving the exchange needs no second read.
    async fn compose(
        &self,
        job: &ReplyJob,
        user: &UserTag,
        plan: &Plan,
        (receive_count, deadline, language): (u32, Deadline, Lang),
        snapshot: Option<Snapshot>,
    ) -> Result<(ReplyRecord, Option<Snapshot>), RetryLater> {
        let message = &job.message;
        let now = now_ms();
        // The model's deadline: on the last attempt it leaves time for the apology to go
        // out however slow the Graph API is ([`LAST_ATTEMPT_MARGIN`]).
        let deadline = if receive_count >= self.behaviour.max_receive_count {
            deadline.keeping(LAST_ATTEMPT_MARGIN.saturating_sub(REPLY_MARGIN))
        } else {
            deadline
        };
        self.mark_read(message, user, matches!(plan, Plan::Ask { .. }))
            .await;
        let fixed = |kind, text: &str| {
            ReplyRecord::new(
                &message.message_tag,
                kind,
                split_message(text, WHATSAPP_TEXT_LIMIT),
                None,
                now,
            )
        };
        // An apology after what went first (a transcript), without the preface.
        let apologise = |parts: Vec<String>, apology: &str| {
            ReplyRecord::new(
                &message.message_tag,
                ReplyKind::Apology,
                parts
                    .into_iter()
                    .chain(split_message(apology, WHATSAPP_TEXT_LIMIT))
                    .collect(),
                None,
                now,
            )
        };
        match plan {
            Plan::Ignore { .. } => Ok((fixed(ReplyKind::Fixed, ""), None)),
            Plan::Fixed { text } | Plan::ModeNote { text } | Plan::OverLimit { text } => {
                Ok((fixed(ReplyKind::Fixed, text), None))
            }
            Plan::Command(command) => {
                if *command == Command::Reset {
                    self.history.clear(user).await?;
                    info!(user = %user, "conversation forgotten at the user's request");
                }
                let answer = self.behaviour.texts.get(command.answer(), language);
                Ok((fixed(ReplyKind::Fixed, answer), None))
            }
            Plan::Transcript(heard) => {
                let parts = self.heard_parts(heard, language, deadline).await;
                let record =
                    ReplyRecord::new(&message.message_tag, ReplyKind::Fixed, parts, None, now);
                Ok((record, None))
            }
            Plan::Ask {
                question,
                preface,
                heard,
            } => {
                let snapshot = match snapshot {
                    Some(snapshot) => snapshot,
                    None => self.history.snapshot(user).await?,
                };
                // The transcript goes first, whatever the model does after.
                let mut parts = match heard {
                    Some(heard) => self.heard_parts(heard, language, deadline).await,
                    None => Vec::new(),
                };
                let mut reply = |kind, text: &str, exchange| {
                    let text = plan::with_preface(preface.as_deref(), text);
                    parts.extend(split_message(&text, WHATSAPP_TEXT_LIMIT));
                    ReplyRecord::new(
                        &message.message_tag,
                        kind,
                        std::mem::take(&mut parts),
                        exchange,
                        now,
                    )
                };
                let mut system = self.behaviour.system_prompt.clone();
                if let Some(knowledge) = &self.knowledge {
                    let settings = self.behaviour.knowledge;
                    let searched = Instant::now();
                    let found = knowledge.search(question, settings.passages, settings.max_chars);
                    debug!(
                        user = %user,
                        passages = found.len(),
                        best_score = found.first().map(|f| f.score),
                        search_us = searched.elapsed().as_micros() as u64,
                        "knowledge searched"
                    );
                    if found.is_empty() && settings.uncovered == Uncovered::Decline {
                        info!(user = %user, "the knowledge does not cover the question; declining");
                        let text = self.behaviour.texts.get(Fixed::NotCovered, language);
                        return Ok((reply(ReplyKind::Fixed, text, None), None));
                    }
                    if !found.is_empty() {
                        system.push_str(&knowledge::instruction(&found));
                    }
                }
                // Sized to the host's context: the latest turns that fit beside the system
                // message and the question. Should the host still find it too long (a
                // context set lower than GPT4ALL_CONTEXT_TOKENS says, a dense script), it
                // is asked once more with neither history nor passages: a user never stays
                // stuck behind history they cannot see.
                let prompt_chars = self.model.settings().prompt_chars();
                let question_chars = question.chars().count();
                if system.chars().count() + question_chars > prompt_chars {
                    // A long question leaves no room for passages.
                    system = self.behaviour.system_prompt.clone();
                }
                let conversation = &snapshot.conversation;
                let room = prompt_chars.saturating_sub(system.chars().count() + question_chars);
                let history = conversation.recent_messages(room);
                let mut messages = Vec::with_capacity(history.len() + 2);
                messages.push(ChatMessage::new(Role::System, &system));
                messages.extend(history);
                messages.push(ChatMessage::new(Role::User, question));
                let answered = match self.ask_model(&messages, deadline).await {
                    Err(e) if e.is_context_overflow() => {
                        warn!(user = %user, history_turns = messages.len() - 2, "the prompt was over the host's context; asking once more without history or passages");
                        let bare = [
                            ChatMessage::new(Role::System, &self.behaviour.system_prompt),
                            ChatMessage::new(Role::User, question),
                        ];
                        self.ask_model(&bare, deadline).await
                    }
                    answered => answered,
                };
                match answered {
                    Ok(completion) => {
                        info!(
                            user = %user,
                            history_turns = conversation.turns.len(),
                            model_ms = completion.elapsed.as_millis() as u64,
                            completion_tokens = completion.usage.map(|u| u.completion_tokens),
                            truncated = completion.truncated,
                            "the model answered"
                        );
                        let exchange = Exchange {
                            question: question.clone(),
                            answer: completion.text.clone(),
                        };
                        let record = reply(ReplyKind::Answer, &completion.text, Some(exchange));
                        Ok((record, Some(snapshot)))
                    }
                    Err(Gpt4AllError::Empty) => {
                        warn!(user = %user, "the model answered nothing; sending a fixed answer");
                        let text = self.behaviour.texts.get(Fixed::NoAnswer, language);
                        Ok((reply(ReplyKind::Fixed, text, None), None))
                    }
                    Err(e) if e.is_permanent() => {
                        error!(user = %user, error = %e, receive_count, "the GPT4All host refused this question and would again; telling the user at once");
                        let text = self.behaviour.texts.get(Fixed::CannotAnswer, language);
                        Ok((reply(ReplyKind::Fixed, text, None), None))
                    }
                    // Every user gets the same until an operator fixes it: say so at once,
                    // honestly; an apology record lets a redrive answer properly later.
                    Err(e @ Gpt4AllError::Misconfigured { .. }) => {
                        error!(user = %user, error = %e, receive_count, "the GPT4All host is misconfigured for us; apologising to the user at once");
                        let apology = self.behaviour.texts.get(Fixed::Misconfigured, language);
                        Ok((apologise(parts, apology), None))
                    }
                    Err(e) if receive_count >= self.behaviour.max_receive_count => {
                        error!(user = %user, error = %e, receive_count, "no answer from the GPT4All host on the last attempt; apologising to the user");
                        let apology = self.behaviour.texts.get(Fixed::Apology, language);
                        Ok((apologise(parts, apology), None))
                    }
                    Err(e) => Err(RetryLater::Model(e)),
                }
            }
        }
    }

    /// One call of the model host with what is left before `deadline` (less
    /// [`REPLY_MARGIN`]), counted in the `ModelCalls` metric.
    async fn ask_model(
        &self,
        messages: &[ChatMessage],
        deadline: Deadline,
    ) -> Result<Completion, Gpt4AllError> {
        let budget = deadline.budget(Duration::MAX, REPLY_MARGIN);
        let asked = Instant::now();
        let answered = self.model.complete(messages, budget).await;
        count_model_call(&answered, asked.elapsed());
        answered
    }

    /// The messages that send a voice note's transcript back: the transcript (split as
    /// answers are), with a summary from the model before it or instead of it when the
    /// note is long and `SUMMARY` asks for one. A summary the model cannot give now is
    /// left out (the transcript is what the user asked for), never waited for.
    async fn heard_parts(&self, heard: &Heard, language: Lang, deadline: Deadline) -> Vec<String> {
        let transcript = split_message(&heard.text, WHATSAPP_TEXT_LIMIT);
        if !heard.summarise {
            return transcript;
        }
        let messages = [
            ChatMessage::new(Role::System, SUMMARY_PROMPT),
            ChatMessage::new(Role::User, plan::bounded(&heard.text)),
        ];
        let answered = self.ask_model(&messages, deadline).await;
        let summary = match answered {
            Ok(completion) => completion.text,
            Err(e) => {
                warn!(error = %e, "no summary of a long voice note; sending its transcript alone");
                return transcript;
            }
        };
        let preface = self.behaviour.texts.get(Fixed::SummaryPreface, language);
        let summary = split_message(&format!("{preface}\n{summary}"), WHATSAPP_TEXT_LIMIT);
        match self.behaviour.summary {
            SummaryMode::Instead => summary,
            _ => summary.into_iter().chain(transcript).collect(),
        }
    }

    /// Sends what the record has not sent yet, recording each part, then remembers the
    /// exchange; also gives the time spent in the Graph API's send calls.
    async fn deliver(
        &self,
        message: &InboundMessage,
        user: &UserTag,
        mut held: Held,
        snapshot: Option<Snapshot>,
    ) -> Result<(Outcome, Duration), RetryLater> {
        let recipient = self.recipient(message);
        let mut sent_now = 0;
        // Time spent in the Graph API's send calls, apart from recording each part.
        let mut sending = Duration::ZERO;
        let mut snapshot = snapshot;
        let mut remembered = false;
        loop {
            let Some((index, part)) = held.record.pending().next().map(|(i, p)| (i, p.to_owned()))
            else {
                break;
            };
            let send_started = Instant::now();
            let sent = self.send(message, &recipient, &part).await;
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
                        // Best effort: a redelivery would be refused the same way.
                        if let Err(e) = self.ledger.update(&held, record).await {
                            warn!(error = %e, "could not record the dropped reply");
                        }
                        return Ok((Outcome::Dropped { code: error.code() }, sending));
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
    async fn mark_remembered(&self, user: &UserTag, held: &Held) -> Option<Held> {
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
    async fn remember(
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

    /// One part, with a few quick retries on rate limits and server errors.
    async fn send(
        &self,
        message: &InboundMessage,
        recipient: &Recipient,
        text: &str,
    ) -> Result<String, GraphError> {
        let mut attempt = 0;
        let mut reread = false;
        loop {
            match self
                .graph
                .send_text(&message.phone_number_id, recipient, text, Some(&message.id))
                .await
            {
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
    async fn mark_read(&self, message: &InboundMessage, user: &UserTag, typing: bool) {
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
        recipient_of(message, self.behaviour.normalize_test_recipients)
    }
}

/// The language of the user's recent messages, when they tell it.
fn conversation_language(conversation: &Conversation) -> Option<Lang> {
    let said: Vec<&str> = conversation
        .turns
        .iter()
        .rev()
        .filter(|t| t.speaker == Speaker::User)
        .take(4)
        .map(|t| t.text.as_str())
        .collect();
    Lang::of_text(&said.join("\n"))
}

/// What a job that replied sent, for the `Jobs` metric: the model's answer, an apology,
/// or a fixed text by why it was fixed.
fn replied_as(plan: &Plan, kind: ReplyKind) -> &'static str {
    match (kind, plan) {
        (ReplyKind::Answer, _) => "answer",
        (ReplyKind::Apology, _) => "apology",
        (ReplyKind::Fixed, Plan::Command(_)) => "command",
        (ReplyKind::Fixed, Plan::Ask { .. }) => "no_model_answer",
        (ReplyKind::Fixed, Plan::Transcript(_)) => "transcript",
        (ReplyKind::Fixed, Plan::ModeNote { .. }) => "mode_note",
        (ReplyKind::Fixed, Plan::OverLimit { .. }) => "over_limit",
        (ReplyKind::Fixed, Plan::Fixed { .. } | Plan::Ignore { .. }) => "unsupported",
    }
}

/// One job done, by what became of it.
fn count_job(outcome: &'static str) {
    Metrics::of("responder")
        .dimension("Outcome", outcome)
        .value("Jobs", Unit::Count, 1.0)
        .emit();
}

/// One call of the model host: its time, and the tokens it reports when it answered.
fn count_model_call(answered: &Result<Completion, Gpt4AllError>, took: Duration) {
    let outcome = match answered {
        Ok(c) if c.truncated => "truncated",
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    let mut line = Metrics::of("responder")
        .dimension("Outcome", outcome)
        .value("ModelCalls", Unit::Count, 1.0)
        .value("ModelMs", Unit::Milliseconds, took.as_millis() as f64);
    if let Ok(Some(usage)) = answered.as_ref().map(|c| c.usage) {
        line = line
            .value("PromptTokens", Unit::Count, f64::from(usage.prompt_tokens))
            .value(
                "CompletionTokens",
                Unit::Count,
                f64::from(usage.completion_tokens),
            );
    }
    line.emit();
}

fn log_retry(sqs_message_id: &str, e: &RetryLater) {
    Metrics::of("responder")
        .dimension("Cause", e.cause())
        .value("Retries", Unit::Count, 1.0)
        .emit();
    match e {
        RetryLater::Auth(_) => {
            error!(sqs_message_id, error = %e, "cannot reply: the WhatsApp access token is invalid")
        }
        RetryLater::Envelope(_) | RetryLater::NoBody => {
            error!(sqs_message_id, error = %e, "unreadable reply job; it will end in the dead-letter queue")
        }
        RetryLater::Apologised => {
            error!(sqs_message_id, error = %e, "reply job failed for good; it goes to the dead-letter queue")
        }
        _ => warn!(sqs_message_id, error = %e, "reply job will be retried"),
    }
}
