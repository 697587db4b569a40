//! The responder function: conversation memory in S3, answers from the GPT4All host,
//! replies through the WhatsApp Cloud API.
//!
//! Triggered by the reply SQS FIFO queue (one message group per user), it handles the
//! records of a batch one after another (the GPT4All host serves one request at a time;
//! the function's concurrency is bounded by the event source's maximum concurrency) and
//! reports partial batch failures. For each [`ReplyJob`](remedios_shared::envelope::ReplyJob):
//!
//! 1. [`decision::plan`] decides: ask the model, answer a fixed text, run a command
//!    (`/reset`, `/help`), or say nothing (reactions, system notices).
//! 2. The reply record ([`ledger`]) says whether this message was answered already, or
//!    where an earlier attempt stopped; for a question, the conversation ([`history`]) is
//!    read at the same time.
//! 3. The message is marked as read with the typing indicator, the history and the new
//!    text become the chat, and the GPT4All host ([`gpt4all`]) answers.
//! 4. The answer is split at WhatsApp's 4096 characters ([`split`]), claimed in the
//!    record, and sent part by part quoting the user's message, each part recorded.
//! 5. Once every part is out, the exchange is saved to the history (while the last
//!    part is recorded): a write conditional on the conversation read in step 2, re-read
//!    only if it changed since.
//!
//! Failures: the host down or slow leaves the job to be retried (a batch item failure),
//! and on its last attempt (`ApproximateReceiveCount` at `REPLY_MAX_RECEIVE_COUNT`) the
//! user gets a short apology, and the job still fails into the dead-letter queue. Graph
//! API rate limits and server errors are retried a few times here and then by the queue,
//! resuming with the parts not yet sent; re-engagement (131047) and other permanent
//! errors are logged and dropped; an invalid token (190) fails loudly. Once a record of
//! a message group fails, the later records of that group in the batch fail too, so one
//! user's messages are never answered out of order.

//!
//! Modules: [`handler`] (the Lambda face, [`Responder`]: plan, read, resume or compose,
//! claim, deliver); [`compose`] (the only place that asks the model); [`deliver`] (mark
//! read, send, record each part, remember the exchange); [`outcome`] (what became of a
//! job, why it comes back, their metrics); [`decision`] (what to do with a job); [`gpt4all`] (one host's OpenAI-compatible API); [`hosts`] (several hosts: pinning, failover, breakers); [`history`]
//! (conversations in S3); [`handoff`] (conversations handed to a person, and back); [`knowledge`] (the business's own material); [`ledger`] (reply records); [`split`] (WhatsApp's text limit);
//! [`recipient`] (where a reply goes); [`staff`] (staff numbers: notifications and relays); [`config`] (the environment).

pub mod compose;
pub mod config;
pub mod decision;
pub mod deliver;
pub mod gpt4all;
pub mod handler;
pub mod handoff;
pub mod history;
pub mod hosts;
pub mod knowledge;
pub mod ledger;
pub mod outcome;
pub mod recipient;
pub mod speak;
pub mod split;
pub mod staff;
pub mod texts;
pub mod voice;
pub mod waiting;

pub use config::{Behaviour, Config, HostKind, ModelSettings};
pub use handler::{Responder, StartError};
pub use hosts::ModelHosts;
pub use outcome::{Outcome, RetryLater};
pub use recipient::{normalize_test_number, recipient_of};
