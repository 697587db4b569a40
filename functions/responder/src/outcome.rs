//! What becomes of a reply job: [`Outcome`] when it is done, [`RetryLater`] when it comes
//! back, and the metrics that count both. The handler, [`crate::compose`] and
//! [`crate::deliver`] share these; none of them imports another for them.

use remedios_shared::envelope;
use remedios_shared::graph::{ErrorClass, GraphError};
use remedios_shared::metrics::{Metrics, Unit};
use remedios_shared::store::StoreError;
use thiserror::Error;
use tracing::{debug, error, warn};

use crate::decision::Plan;
use crate::gpt4all::Gpt4AllError;
use crate::history::HistoryError;
use crate::ledger::ReplyKind;

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
    /// A hand-over timer that is not due yet: it comes back when it is (not a failure).
    #[error("a hand-over timer, due in {} s", after.as_secs())]
    NotYet { after: std::time::Duration },
}

impl remedios_shared::batch::Failure for RetryLater {
    fn comes_back_after(&self) -> Option<std::time::Duration> {
        match self {
            RetryLater::NotYet { after } => Some(*after),
            _ => None,
        }
    }
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
            RetryLater::NotYet { .. } => "not_yet",
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
    /// The Graph API refused for good (131047 and other permanent errors); `template`
    /// when the re-engagement template went out instead (`REENGAGEMENT_TEMPLATE`).
    Dropped { code: Option<i64>, template: bool },
}

/// What a job that replied sent, for the `Jobs` metric: the model's answer, an apology,
/// or a fixed text by why it was fixed.
pub(crate) fn replied_as(plan: &Plan, kind: ReplyKind) -> &'static str {
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
pub(crate) fn count_job(outcome: &'static str) {
    Metrics::of("responder")
        .dimension("Outcome", outcome)
        .value("Jobs", Unit::Count, 1.0)
        .emit();
}

/// One record left for SQS to deliver again: its metric and log line, by cause.
pub(crate) fn log_retry(sqs_message_id: &str, e: &RetryLater) {
    if let RetryLater::NotYet { after } = e {
        debug!(
            sqs_message_id,
            after_s = after.as_secs(),
            "a hand-over timer goes back to the queue until it is due"
        );
        return;
    }
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
