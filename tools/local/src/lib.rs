//! Remedios on one machine: the local stack, its emulators, the event pump and the
//! chat — and the same pieces for the tests, which start real components on loopback.
//!
//! - [`moto`]: the local AWS emulator (SQS, S3, SSM) from the project venv.
//! - [`graph_emulator`]: the WhatsApp Cloud API endpoints we call.
//! - [`meta`]: notification bodies as Meta sends them, signed.
//! - [`llm`]: the model server (llama.cpp with SmolLM2) and the GPT4All rules gate.
//! - [`infra`]: the SAM template, read so local resources match the cloud ones.
//! - [`link`]: a TCP path tests can cut, to give clients an outage of a server.
//! - [`standin`]: a fast stand-in for the GPT4All host, for load tests.
//! - [`webhook_proxy`]: the stack's `/webhook` endpoint, with slow-client timeouts.

pub mod chat;
pub mod child;
pub mod dlq;
pub mod graph_emulator;
pub mod infra;
pub mod link;
pub mod llm;
pub mod meta;
pub mod moto;
pub mod paths;
pub mod process;
pub mod pump;
pub mod stack;
pub mod standin;
pub mod webhook_proxy;
