//! The `remedios` command line: Remedios on one machine, and the operator's tools for a
//! deployed stack. The emulators it starts are `remedios-emulators`; the template it
//! reads is `remedios-template`.
//!
//! - [`stack`]: `remedios up`: the emulators, the functions under `cargo lambda watch`,
//!   the event pump and the `/webhook` endpoint, as one local stack.
//! - [`chat`]: `remedios chat`: talk to the local stack as a WhatsApp user.
//! - [`pump`]: the SQS event source mapping, run locally.
//! - [`webhook_proxy`]: the stack's `/webhook` endpoint, with slow-client timeouts.
//! - [`dlq`]: `remedios dlq replay`: dead letters back to their queue, on AWS or locally.
//! - [`deploy`]: `remedios deploy`: secrets, SAM, the model, Meta's subscription.
//! - [`knowledge`]: `remedios knowledge build`: a folder of material into the bucket, indexed.
//! - [`stats`]: `remedios stats`: the stack's figures from the functions' metric lines.
//! - [`quarantine`]: `remedios quarantine replay`: kept webhook bodies fed through it again.
//! - [`secrets`]: random keys and SecureString parameters, for the local stack and deploys.

pub mod chat;
pub mod commands;
pub mod deploy;
pub mod dlq;
pub mod knowledge;
pub mod pump;
pub mod quarantine;
pub mod samconfig;
pub mod secrets;
pub mod stack;
pub mod stats;
pub mod webhook_proxy;
