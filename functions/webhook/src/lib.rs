//! The webhook function: Meta's verification handshake, and signed WhatsApp
//! notifications to the inbound SQS FIFO queue.
//!
//! - `GET` with `hub.mode=subscribe` and the configured `hub.verify_token` answers
//!   `hub.challenge`; anything else 403.
//! - `POST` checks `X-Hub-Signature-256` before reading the body (401 when missing or
//!   wrong), enqueues each inbound message, and answers 200 only once SQS accepted
//!   them all (500 otherwise, so Meta delivers again; FIFO deduplication makes the
//!   redelivery harmless). Signed bodies we cannot parse are kept in S3 under
//!   `quarantine/` and answered 200. Bodies over the size bound answer 413.
//! - Each queue message has `MessageGroupId` = the sender's [`UserTag`] (a hash of
//!   the business-scoped id, else the phone number, keyed with the deployment's
//!   `USER_TAG_KEY`: per-user order, and no phone number in SQS metadata) and
//!   `MessageDeduplicationId` = the WhatsApp message id. The tag travels in the
//!   envelope; the webhook is the one function that holds the key.
//! - Meta sends the signature's hex in lower case; the hex is decoded before the
//!   constant-time MAC comparison, so either case of the right digest is accepted.
//!
//! [`UserTag`]: remedios_shared::user::UserTag

//!
//! - [`handler`]: the Lambda handler, [`Webhook`].
//! - [`intake`]: a POST without I/O: the signature, the notification, what to enqueue.
//! - [`config`]: the environment, read at cold start.

pub mod config;
pub mod handler;
pub mod intake;

pub use config::Config;
pub use handler::Webhook;
