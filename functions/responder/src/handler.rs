//! The responder's Lambda handler: [`Responder`], a reply job from the queue to WhatsApp.

use std::sync::Arc;
use std::time::Instant;

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use remedios_shared::batch;
use remedios_shared::clock::{Deadline, now_ms};
use remedios_shared::envelope::{
    self, Content, InboundMessage, Origin, Prepared, ReplyItem, ReplyJob,
};
use remedios_shared::graph::{GraphClient, GraphError};
use remedios_shared::metrics::{Metrics, Unit};
use remedios_shared::queue::Queue;
use remedios_shared::secrets::{self, SecretError, SecretSource};
use remedios_shared::store::Store;
use remedios_shared::user::UserTag;
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::compose::{Attempt, Composer};
use crate::config::{Behaviour, Config};
use crate::decision::{self as plan, Command, Plan};
use crate::deliver::Courier;
use crate::gpt4all::{Gpt4AllClient, Gpt4AllError};
use crate::handoff;
use crate::history::{Bounds, Conversation, Handoff, HandoffWay, History, Snapshot, Speaker};
use crate::hosts::ModelHosts;
use crate::knowledge::{self, Knowledge, KnowledgeError};
use crate::ledger::{Ledger, ReplyKind};
use crate::outcome::{Outcome, RetryLater, count_job, log_retry, replied_as};
use crate::texts::Lang;

/// Why the responder could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("could not build the Graph API client: {0}")]
    Graph(#[from] GraphError),
    #[error("could not build the GPT4All client: {0}")]
    Model(#[from] Gpt4AllError),
    #[error("no model host is configured")]
    NoHost,
    #[error("KNOWLEDGE is on, but the knowledge could not be loaded: {0}")]
    Knowledge(#[from] KnowledgeError),
}

/// The responder, with its clients. Build it once per container.
#[derive(Debug)]
pub struct Responder {
    /// The reply queue, when known: failed records come back after their backoff, and
    /// the timers of users waiting for a person go there.
    pub(crate) source: Option<Queue>,
    pub(crate) store: Store,
    pub(crate) history: History,
    ledger: Ledger,
    pub(crate) behaviour: Behaviour,
    composer: Composer,
    pub(crate) courier: Courier,
}

impl Responder {
    /// Resolves the secrets (from SSM when configured so) and wires the clients.
    pub async fn connect(config: &Config, sdk: &SdkConfig) -> Result<Self, StartError> {
        let hosts = config.hosts();
        let mut sources: Vec<&SecretSource> = vec![&config.access_token];
        sources.extend(hosts.iter().filter_map(|(_, key)| key.as_ref()));
        let mut resolved = secrets::load(sdk, &sources).await?.into_iter();
        let token = resolved
            .next()
            .ok_or_else(|| SecretError::NotFound("WHATSAPP_ACCESS_TOKEN".into()))?;
        let mut clients = Vec::with_capacity(hosts.len());
        for (settings, key) in hosts {
            let key = match key {
                Some(_) => resolved.next(),
                None => None,
            };
            clients.push(Gpt4AllClient::new(settings, key)?);
        }
        let store = Store::new(remedios_shared::aws::s3(sdk, &config.aws), &config.bucket);
        let graph = GraphClient::new(config.graph.clone().with_token(token))?
            .with_token_source(sdk.clone(), config.access_token.clone());
        let model = ModelHosts::new(clients).ok_or(StartError::NoHost)?;
        if model.prompt_chars() < plan::QUESTION_MAX_CHARS {
            warn!(
                max_tokens = config.model.max_tokens,
                prompt_chars = model.prompt_chars(),
                "GPT4ALL_MAX_TOKENS leaves little of the smallest host context (GPT4ALL_CONTEXT_TOKENS, context= in MODEL_HOSTS) for the prompt: long questions will be refused; lower it or raise the host's context"
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
        self.composer.knowledge = Some(Arc::new(knowledge));
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
        model: impl Into<ModelHosts>,
        behaviour: Behaviour,
    ) -> Self {
        let bounds = Bounds {
            max_turns: behaviour.history_max_turns,
            max_chars: behaviour.history_max_chars,
        };
        let history = History::new(store.clone(), bounds);
        let ledger = Ledger::new(store.clone());
        let voice = crate::speak::VoiceEngine::new(behaviour.voice.clone(), store.clone());
        Responder {
            source: None,
            store,
            composer: Composer {
                model: model.into(),
                history: history.clone(),
                behaviour: behaviour.clone(),
                knowledge: None,
            },
            courier: Courier {
                graph,
                ledger: ledger.clone(),
                history: history.clone(),
                normalize_test_recipients: behaviour.normalize_test_recipients,
                reengagement: behaviour.reengagement.clone(),
                voice,
            },
            history,
            ledger,
            behaviour,
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
                self.handle_record(record, deadline).await.inspect_err(|e| {
                    log_retry(record.message_id.as_deref().unwrap_or_default(), e);
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
        match envelope::decode_reply_item(body)? {
            ReplyItem::Job(job) => {
                self.process_by(&job, batch::receive_count(record), deadline)
                    .await
            }
            ReplyItem::HandoffTimer(timer) => self.timer_due(&timer).await,
        }
    }

    /// Answers one job without a deadline; see [`Self::process_by`].
    pub async fn process(&self, job: &ReplyJob, receive_count: u32) -> Result<Outcome, RetryLater> {
        self.process_by(job, receive_count, Deadline::NONE).await
    }

    /// Answers one job. `receive_count` is how many times SQS delivered it (1 at first);
    /// the model gets what is left before `deadline`, less [`REPLY_MARGIN`](crate::deliver::REPLY_MARGIN).
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
        // Planned once: the plan names its fixed texts, written in the user's language
        // when the reply is composed.
        if message.origin == Origin::Echo {
            // A person of the business wrote to this user from the WhatsApp Business app.
            return self.person_wrote(job).await;
        }
        if message.origin == Origin::Staff
            && let Some(outcome) = self.staff_wrote(job).await?
        {
            // A staff number answered a user by quoting a notification.
            count_job("staff");
            return Ok(outcome);
        }
        let own_language = plan::language_of(job);
        let plan = plan::plan_for(job, behaviour);
        if let Plan::Ignore { why } = plan {
            debug!(user = %user, kind = message.content.kind(), why, "nothing to answer");
            count_job("ignored");
            return Ok(Outcome::Ignored { why });
        }
        // The conversation says who answers (the bot, or a person), and gives a question
        // its context and a fixed text its language: read it while looking for an
        // earlier reply.
        let (existing, snapshot) = tokio::join!(
            self.ledger.get(&user, &message.message_tag, &message.id),
            self.history.snapshot(&user)
        );
        let (existing, snapshot) = (existing?, snapshot?);
        let now = now_ms();
        if existing.is_none()
            && plan != Plan::Command(Command::Bot)
            && let Some(handoff) = handoff::in_force(&snapshot.conversation, now)
        {
            let handoff = handoff.clone();
            return self.hold(job, &plan, snapshot, handoff).await;
        }
        let snapshot = self.handoff_changes(message, &plan, snapshot, now).await?;
        let language = own_language
            .or_else(|| {
                snapshot
                    .as_ref()
                    .and_then(|s| conversation_language(&s.conversation))
            })
            .unwrap_or_default();
        let mut snapshot_for_history = None;
        let held = match existing {
            Some(held) if held.record.kind != ReplyKind::Apology || !held.record.finished() => {
                if held.record.finished() {
                    if !held.record.remembered {
                        self.courier
                            .remember(&user, message, &held.record, None)
                            .await?;
                        self.courier.mark_remembered(&user, &held).await;
                    }
                    info!(user = %user, message = %message.message_tag, "already answered; not answering again");
                    count_job("duplicate");
                    return Ok(Outcome::AlreadyAnswered);
                }
                info!(user = %user, message = %message.message_tag, sent = held.record.sent.len(), parts = held.record.parts.len(), "resuming an earlier reply");
                held
            }
            previous => {
                // Acting on the message comes before composing the reply: it is marked
                // read (typing while the model thinks), and `/reset` forgets.
                self.courier
                    .mark_read(message, &user, matches!(plan, Plan::Ask { .. }))
                    .await;
                if plan == Plan::Command(Command::Reset) {
                    self.history.clear(&user).await?;
                    info!(user = %user, "conversation forgotten at the user's request");
                }
                if let Plan::Command(Command::Voice(on)) = plan {
                    self.history
                        .update(None, &user, now_ms(), |c| {
                            let changed = c.voice != Some(on);
                            c.voice = Some(on);
                            changed
                        })
                        .await?;
                    info!(user = %user, voice = on, "voice replies switched by the user");
                }
                let attempt = Attempt {
                    receive_count,
                    deadline,
                    language,
                };
                let (mut record, snapshot) = self
                    .composer
                    .compose(job, &user, &plan, attempt, snapshot)
                    .await?;
                if record.kind == ReplyKind::Answer {
                    let preference = snapshot.as_ref().and_then(|s| s.conversation.voice);
                    record.voice = crate::speak::voice_reply(
                        &self.behaviour.voice,
                        job,
                        preference,
                        language,
                        self.behaviour.reply_mode,
                    );
                }
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
            .courier
            .deliver(
                message,
                &user,
                held,
                snapshot_for_history,
                language,
                deadline,
            )
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
        if let Outcome::Dropped { template: true, .. } = outcome {
            Metrics::of("responder")
                .dimension("Kind", "reengagement_template")
                .value("BilledMessages", Unit::Count, 1.0)
                .emit();
        }
        if let Outcome::Replied { kind, parts } = &outcome
            && *parts > 0
        {
            // Each part is a message Meta bills.
            Metrics::of("responder")
                .dimension("Kind", replied_as(&plan, *kind))
                .value("BilledMessages", Unit::Count, *parts as f64)
                .emit();
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
}

impl Responder {
    /// A person of the business wrote to the user from the WhatsApp Business app (an
    /// echo): their words go into the history as staff's, and the conversation is the
    /// person's for `HANDOFF_HOURS`. Nothing is sent, and the model is not asked.
    async fn person_wrote(&self, job: &ReplyJob) -> Result<Outcome, RetryLater> {
        let message = &job.message;
        let user = &message.user;
        let written = self
            .person_said(user, &message.id, &said_in(job), None, None)
            .await?;
        if written {
            info!(user = %user, message = %message.message_tag, "a person of the business wrote from the app: the conversation is theirs for now");
        }
        count_job("staff");
        Ok(Outcome::Ignored {
            why: "a person of the business wrote",
        })
    }

    /// A person's words to `user` (from the WhatsApp Business app, or relayed from staff
    /// number `staff`) go into the history as staff's, and the conversation is the
    /// person's for `HANDOFF_HOURS`, in one conditional write; a new hand-over or a first
    /// reply is counted. Whether it was written (a redelivery finds it there).
    pub(crate) async fn person_said(
        &self,
        user: &UserTag,
        message_id: &str,
        text: &str,
        snapshot: Option<Snapshot>,
        staff: Option<&str>,
    ) -> Result<bool, RetryLater> {
        let now = now_ms();
        let before = std::cell::RefCell::new(None);
        let written = self
            .history
            .add_turns(
                snapshot,
                user,
                message_id,
                &[(Speaker::Staff, text)],
                now,
                |conversation| {
                    let was =
                        handoff::person_wrote(conversation, now, &self.behaviour.handoff, staff);
                    *before.borrow_mut() = Some(was);
                },
            )
            .await?;
        if written {
            match before.into_inner().flatten() {
                None => handoff::count_started(HandoffWay::Echo),
                Some(was) => handoff::count_first_reply(&was, now),
            }
        }
        Ok(written)
    }

    /// A person has the conversation (or is asked for): the user's message is kept in the
    /// history for them, and marked read; the model is not asked and nothing is sent.
    async fn hold(
        &self,
        job: &ReplyJob,
        plan: &Plan,
        snapshot: Snapshot,
        handoff: Handoff,
    ) -> Result<Outcome, RetryLater> {
        let message = &job.message;
        let user = &message.user;
        let text = match plan {
            Plan::Ask { question, .. } => question.clone(),
            _ => said_in(job),
        };
        let kept = self
            .history
            .add_turns(
                Some(snapshot),
                user,
                &message.id,
                &[(Speaker::User, text.as_str())],
                now_ms(),
                |_| {},
            )
            .await?;
        if kept && handoff.way == HandoffWay::Asked {
            // Staff on their own numbers read it there (people on the app see it anyway).
            self.forward_to_staff(job, &text, handoff.staff.as_deref())
                .await;
        }
        self.courier.mark_read(message, user, false).await;
        info!(user = %user, message = %message.message_tag, state = ?handoff.state, "a person has the conversation: kept for them, not answered");
        count_job("held");
        Ok(Outcome::Ignored {
            why: "a person has the conversation",
        })
    }

    /// What a plan changes in who answers, before it is answered: `/human` asks for a
    /// person, `/bot` comes back, and a hand-over that ended by itself is cleared. The
    /// snapshot is given back, or `None` once a write made it stale.
    async fn handoff_changes(
        &self,
        message: &InboundMessage,
        plan: &Plan,
        snapshot: Snapshot,
        now: i64,
    ) -> Result<Option<Snapshot>, RetryLater> {
        let user = &message.user;
        let settings = &self.behaviour.handoff;
        let written = match plan {
            Plan::Command(Command::Human) => {
                let conversation = snapshot.conversation.clone();
                // The timer first: a wait whose write fails is asked for again on
                // redelivery, with a timer of its own; this one then finds no such wait.
                let mut waits = conversation.clone();
                if handoff::ask(&mut waits, now, settings)
                    && let Some(wait) = &waits.handoff
                {
                    self.start_timer(message, wait.since_ms, wait.until_ms)
                        .await;
                }
                let asked = self
                    .history
                    .update(Some(snapshot), user, now, |c| {
                        handoff::ask(c, now, settings)
                    })
                    .await?;
                if asked {
                    handoff::count_started(HandoffWay::Asked);
                    info!(user = %user, "the user asked for a person");
                    self.notify_staff(message, &conversation).await;
                }
                asked
            }
            Plan::Command(Command::Bot) => {
                let ended = std::cell::Cell::new(false);
                let written = self
                    .history
                    .update(Some(snapshot), user, now, |c| {
                        let was = c.handoff.is_some();
                        ended.set(handoff::back(c, now).is_some());
                        was
                    })
                    .await?;
                if ended.get() {
                    handoff::count_returned("user");
                    info!(user = %user, "the user is back with the bot");
                }
                written
            }
            _ => match handoff::lapsed(&snapshot.conversation, now) {
                Some(cause) => {
                    let cleared = self
                        .history
                        .update(Some(snapshot), user, now, |c| {
                            handoff::lapsed(c, now).is_some() && {
                                c.handoff = None;
                                true
                            }
                        })
                        .await?;
                    if cleared {
                        handoff::count_returned(cause);
                        info!(user = %user, cause, "the hand-over ended by itself: the bot answers again");
                    }
                    cleared
                }
                None => return Ok(Some(snapshot)),
            },
        };
        Ok(if written {
            None
        } else {
            Some(self.history.snapshot(user).await?)
        })
    }
}

/// What a message says, for the history when nobody answers it: its text, a voice note's
/// transcript, a caption, or what kind of message it was.
fn said_in(job: &ReplyJob) -> String {
    let content = &job.message.content;
    match (content, &job.prepared) {
        (Content::Text { body }, _) => body.clone(),
        (_, Prepared::Transcribed { text, .. }) => text.trim().to_owned(),
        (Content::Interactive { title, .. }, _) => title.clone(),
        (Content::Button { text, .. }, _) => text.clone(),
        _ => match content.caption() {
            Some(caption) => format!("({} sent) {caption}", content.kind()),
            None => format!("({} sent)", content.kind()),
        },
    }
}

/// The language of the user's recent messages, when they tell it.
pub(crate) fn conversation_language(conversation: &Conversation) -> Option<Lang> {
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
