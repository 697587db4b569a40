//! What the Remedios functions share.
//!
//! - [`allowance`]: fair limits per user.
//! - [`config`]: typed configuration from the environment, checked at cold start.
//! - [`batch`]: an SQS batch record by record, each user's messages in order.
//! - [`clock`]: the wall clock in Unix milliseconds.
//! - [`secrets`]: secrets from the environment or SSM Parameter Store.
//! - [`whatsapp`]: the webhook notification types.
//! - [`signature`]: `X-Hub-Signature-256` checking.
//! - [`envelope`]: the versioned messages on our queues.
//! - [`user`]: senders, user keys and their pseudonymous tags.
//! - [`handoff`]: what the functions share to hand a conversation to a person.
//! - [`keys`]: the S3 key layout.
//! - [`queue`], [`store`]: SQS and S3.
//! - [`aws`]: AWS clients from the environment.
//! - [`telemetry`]: JSON logs.

pub mod allowance;
pub mod aws;
pub mod batch;
pub mod clock;
pub mod config;
pub mod envelope;
pub mod graph;
pub mod handoff;
pub mod keys;
pub mod metrics;
pub mod object_file;
pub mod queue;
pub mod secrets;
pub mod signature;
pub mod store;
pub mod telemetry;
pub mod user;
pub mod whatsapp;
