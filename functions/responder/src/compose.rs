//! Composing a reply: the only place that asks the model. A question becomes the model's
//! answer (with the business's knowledge and the conversation, sized to the host's
//! context), a voice note's transcript its parts (with a summary when asked for), and
//! everything else the fixed text the plan names; each as a [`ReplyRecord`] to claim.

use std::sync::Arc;
use std::time::{Duration, Instant};

use remedios_shared::clock::{Deadline, now_ms};
use remedios_shared::envelope::ReplyJob;
use remedios_shared::metrics::{Metrics, Unit};
use remedios_shared::user::UserTag;
use tracing::{debug, error, info, warn};

use crate::config::Behaviour;
use crate::config::{SummaryMode, Uncovered};
use crate::decision::{self as plan, Heard, Plan};
use crate::deliver::{LAST_ATTEMPT_MARGIN, REPLY_MARGIN};
use crate::gpt4all::{ChatMessage, Completion, Gpt4AllError, Role};
use crate::history::{History, Snapshot};
use crate::hosts::ModelHosts;
use crate::knowledge::{self, Knowledge};
use crate::ledger::{Exchange, ReplyKind, ReplyRecord};
use crate::outcome::RetryLater;
use crate::split::{WHATSAPP_TEXT_LIMIT, pack, split_message};
use crate::texts::{FixedText, Lang};

/// What the model is told when it summarises a voice note (`SUMMARY`).
pub const SUMMARY_PROMPT: &str = "Summarise the voice note the user gives you in one to \
three short sentences, in the language it is spoken in. Reply with the summary only.";

/// This delivery of a job: how many times SQS has delivered it (1 at first), the
/// invocation's deadline, and the language its fixed texts are in.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub receive_count: u32,
    pub deadline: Deadline,
    pub language: Lang,
}

/// What composing needs: the model host, the conversations, the settings, the knowledge.
#[derive(Debug)]
pub struct Composer {
    pub(crate) model: ModelHosts,
    pub(crate) history: History,
    pub(crate) behaviour: Behaviour,
    /// The business's own material, when `KNOWLEDGE` is on.
    pub(crate) knowledge: Option<Arc<Knowledge>>,
}

impl Composer {
    /// Works out the reply of a job that has none yet; for a question, also gives back the
    /// conversation it was asked in, so saving the exchange needs no second read.
    pub(crate) async fn compose(
        &self,
        job: &ReplyJob,
        user: &UserTag,
        plan: &Plan,
        Attempt {
            receive_count,
            deadline,
            language,
        }: Attempt,
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
        let apologise = |heard: Vec<String>, apology: &str| {
            ReplyRecord::new(
                &message.message_tag,
                ReplyKind::Apology,
                self.messages(heard.iter().map(String::as_str).chain([apology])),
                None,
                now,
            )
        };
        match plan {
            Plan::Ignore { .. } => Ok((fixed(ReplyKind::Fixed, ""), None)),
            Plan::Fixed { text } | Plan::ModeNote { text } | Plan::OverLimit { text } => {
                let words = text.words(&self.behaviour.texts, language);
                Ok((fixed(ReplyKind::Fixed, &words), None))
            }
            Plan::Command(command) => {
                let answer = self.behaviour.texts.get(command.answer(), language);
                Ok((fixed(ReplyKind::Fixed, answer), None))
            }
            Plan::Transcript(heard) => {
                let texts = self.heard_texts(user, heard, language, deadline).await;
                let record = ReplyRecord::new(
                    &message.message_tag,
                    ReplyKind::Fixed,
                    self.messages(&texts),
                    None,
                    now,
                );
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
                let heard = match heard {
                    Some(heard) => self.heard_texts(user, heard, language, deadline).await,
                    None => Vec::new(),
                };
                let preface = preface
                    .as_ref()
                    .map(|p| p.words(&self.behaviour.texts, language));
                let reply = |kind, text: &str, exchange| {
                    let text = plan::with_preface(preface.as_deref(), text);
                    let texts = heard.iter().map(String::as_str).chain([text.as_str()]);
                    ReplyRecord::new(
                        &message.message_tag,
                        kind,
                        self.messages(texts),
                        exchange,
                        now,
                    )
                };
                let system = format!(
                    "{}{}",
                    self.behaviour.system_prompt,
                    length_instruction(self.model.first().settings().max_tokens)
                );
                let mut passages = String::new();
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
                        let text = self.behaviour.texts.get(FixedText::NotCovered, language);
                        return Ok((reply(ReplyKind::Fixed, text, None), None));
                    }
                    passages = knowledge::instruction(&found);
                }
                // Sized to the host's context: the latest turns that fit beside the system
                // message and the question. Should the host still find it too long (a
                // context set lower than GPT4ALL_CONTEXT_TOKENS says, a dense script), it
                // is asked once more with neither history nor passages: a user never stays
                // stuck behind history they cannot see.
                let prompt_chars = self.model.prompt_chars();
                let question_chars = question.chars().count();
                if system.chars().count() + passages.chars().count() + question_chars > prompt_chars
                {
                    // A long question leaves no room for passages.
                    passages.clear();
                }
                let conversation = &snapshot.conversation;
                let room = prompt_chars.saturating_sub(
                    system.chars().count() + passages.chars().count() + question_chars,
                );
                let messages = prompt(
                    &system,
                    conversation.recent_messages(room),
                    &passages,
                    question,
                );
                let answered = match self.ask_model(user, &messages, deadline).await {
                    Err(e) if e.is_context_overflow() => {
                        warn!(user = %user, history_turns = messages.len() - 2, "the prompt was over the host's context; asking once more without history or passages");
                        let bare = [
                            ChatMessage::new(Role::System, &system),
                            ChatMessage::new(Role::User, question),
                        ];
                        self.ask_model(user, &bare, deadline).await
                    }
                    answered => answered,
                };
                match answered {
                    Ok(completion) => {
                        info!(
                            user = %user,
                            host = completion.host,
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
                        let text = self.behaviour.texts.get(FixedText::NoAnswer, language);
                        Ok((reply(ReplyKind::Fixed, text, None), None))
                    }
                    Err(e) if e.is_permanent() => {
                        error!(user = %user, error = %e, receive_count, "the GPT4All host refused this question and would again; telling the user at once");
                        let text = self.behaviour.texts.get(FixedText::CannotAnswer, language);
                        Ok((reply(ReplyKind::Fixed, text, None), None))
                    }
                    // Every user gets the same until an operator fixes it: say so at once,
                    // honestly; an apology record lets a redrive answer properly later.
                    Err(e @ Gpt4AllError::Misconfigured { .. }) => {
                        error!(user = %user, error = %e, receive_count, "the GPT4All host is misconfigured for us; apologising to the user at once");
                        let apology = self.behaviour.texts.get(FixedText::Misconfigured, language);
                        Ok((apologise(heard, apology), None))
                    }
                    Err(e) if receive_count >= self.behaviour.max_receive_count => {
                        error!(user = %user, error = %e, receive_count, "no answer from the GPT4All host on the last attempt; apologising to the user");
                        let apology = self.behaviour.texts.get(FixedText::Apology, language);
                        Ok((apologise(heard, apology), None))
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
        user: &UserTag,
        messages: &[ChatMessage],
        deadline: Deadline,
    ) -> Result<Completion, Gpt4AllError> {
        let budget = deadline.budget(Duration::MAX, REPLY_MARGIN);
        let asked = Instant::now();
        let answered = self.model.complete(user, messages, budget).await;
        count_model_call(&answered, asked.elapsed());
        answered
    }

    /// The texts that send a voice note's transcript back, in order: the transcript, with
    /// a summary from the model before it or instead of it when the note is long and
    /// `SUMMARY` asks for one. A summary the model cannot give now is left out (the
    /// transcript is what the user asked for), never waited for.
    async fn heard_texts(
        &self,
        user: &UserTag,
        heard: &Heard,
        language: Lang,
        deadline: Deadline,
    ) -> Vec<String> {
        let transcript = heard.text.clone();
        if !heard.summarise {
            return vec![transcript];
        }
        let messages = [
            ChatMessage::new(Role::System, SUMMARY_PROMPT),
            ChatMessage::new(Role::User, plan::bounded(&heard.text)),
        ];
        let answered = self.ask_model(user, &messages, deadline).await;
        let summary = match answered {
            Ok(completion) => completion.text,
            Err(e) => {
                warn!(error = %e, "no summary of a long voice note; sending its transcript alone");
                return vec![transcript];
            }
        };
        let preface = self
            .behaviour
            .texts
            .get(FixedText::SummaryPreface, language);
        let summary = format!("{preface}\n{summary}");
        match self.behaviour.summary {
            SummaryMode::Instead => vec![summary],
            _ => vec![summary, transcript],
        }
    }

    /// The WhatsApp messages that carry `texts`, in order: as few as fit
    /// (`COMBINE_MESSAGES`), or each text in its own.
    fn messages<S: AsRef<str>>(&self, texts: impl IntoIterator<Item = S>) -> Vec<String> {
        if self.behaviour.combine_messages {
            pack(texts, WHATSAPP_TEXT_LIMIT)
        } else {
            texts
                .into_iter()
                .flat_map(|text| split_message(text.as_ref(), WHATSAPP_TEXT_LIMIT))
                .collect()
        }
    }
}

/// The chat sent to the model, ordered so that what changes least comes first and a
/// host's prompt cache serves all of it but this turn: the system message (the same for
/// every turn), the conversation (append-only between turns: the stored questions carry
/// no passages), then this turn's question followed by its passages of the business's
/// material, in the last user message.
pub fn prompt(
    system: &str,
    history: Vec<ChatMessage>,
    passages: &str,
    question: &str,
) -> Vec<ChatMessage> {
    let mut messages = Vec::with_capacity(history.len() + 2);
    messages.push(ChatMessage::new(Role::System, system));
    messages.extend(history);
    let last = if passages.is_empty() {
        question.to_owned()
    } else {
        format!("{question}\n\n{passages}")
    };
    messages.push(ChatMessage::new(Role::User, last));
    messages
}

/// Words a WhatsApp message holds, counting generously (six characters a word with its
/// space, more than English or Spanish prose takes).
const WORDS_PER_MESSAGE: usize = WHATSAPP_TEXT_LIMIT / 6;

/// What the system prompt ends with so that an answer fits in one (billed) WhatsApp
/// message: a bound in words, which small models follow better than characters, from
/// the answer's token bound (about three words in four tokens) or WhatsApp's 4,096
/// characters, whichever is tighter.
pub fn length_instruction(max_tokens: u32) -> String {
    let words = (max_tokens as usize * 3 / 4).clamp(10, WORDS_PER_MESSAGE);
    format!("\n\nKeep every answer under {words} words: it is read as one WhatsApp message.")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_MAX_TOKENS;

    #[test]
    fn a_turns_prompt_starts_with_the_last_turns_prompt_but_its_passages() {
        let system = "be brief";
        let asked = |n: usize| ChatMessage::new(Role::User, format!("question {n}"));
        let answered = |n: usize| ChatMessage::new(Role::Assistant, format!("answer {n}"));
        let history = |turns: usize| {
            (1..=turns)
                .flat_map(|n| [asked(n), answered(n)])
                .collect::<Vec<_>>()
        };
        let before = prompt(system, history(2), "[1] passage A", "question 3");
        let after = prompt(system, history(3), "[1] passage B", "question 4");
        // Everything but the last message of the earlier turn is the later turn's start,
        // so a host's prompt cache serves it.
        assert_eq!(before[..before.len() - 1], after[..before.len() - 1]);
        assert_eq!(after[0], ChatMessage::new(Role::System, system));
        assert_eq!(
            after.last().map(|m| m.content.as_str()),
            Some("question 4\n\n[1] passage B")
        );
        assert_eq!(
            prompt(system, Vec::new(), "", "hi"),
            [
                ChatMessage::new(Role::System, system),
                ChatMessage::new(Role::User, "hi")
            ]
        );
    }

    #[test]
    fn the_length_instruction_keeps_an_answer_within_one_message() {
        assert!(length_instruction(DEFAULT_MAX_TOKENS).contains("under 300 words"));
        // A generous token bound is held to what one message carries.
        assert!(length_instruction(8192).contains(&format!("under {WORDS_PER_MESSAGE} words")));
        const { assert!(WORDS_PER_MESSAGE * 6 <= WHATSAPP_TEXT_LIMIT) };
        // The default answer, at about 4 characters a token, fits in one message.
        const { assert!(DEFAULT_MAX_TOKENS as usize * 4 <= WHATSAPP_TEXT_LIMIT) };
    }
}
