//! The local stand-ins for everything Remedios talks to, started on loopback: by
//! `remedios up` for a developer, and by the tests (through `remedios-testkit`).
//!
//! - [`moto`]: the AWS emulator (SQS, S3, SSM) from the project venv, and its setup.
//! - [`lambda`]: received SQS messages as the event Lambda hands a function.
//! - [`iam`]: each function's role from the template as an IAM user moto enforces.
//! - [`graph`]: the WhatsApp Cloud API endpoints we call, as Meta documents them.
//! - [`meta`]: notification bodies as Meta sends them, signed.
//! - [`model_server`]: the model server (llama.cpp with SmolLM2) behind the GPT4All rules gate.
//! - [`stand_in`]: a fast stand-in for the GPT4All host, for load tests.
//! - [`link`]: a TCP path that can be cut, to give clients an outage of a server.
//! - [`child`]: child processes in their own process group, and stopping them.
//! - [`ports`], [`paths`]: free loopback ports; the workspace, its venv and caches.

pub mod child;
pub mod graph;
pub mod iam;
pub mod lambda;
pub mod link;
pub mod meta;
pub mod model_server;
pub mod moto;
pub mod paths;
pub mod ports;
pub mod stand_in;
