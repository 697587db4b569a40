//! Remedios on one machine: the local stack, its emulators, the event pump and the
//! chat — and the same pieces for the tests, which start real components on loopback.
//!
//! - [`moto`]: the local AWS emulator (SQS, S3, SSM) from the project venv.
//! - [`graph_emulator`]: the WhatsApp Cloud API endpoints we call.
//! - [`meta`]: notification bodies as Meta sends them, signed.
//! - [`infra`]: the SAM template, read so local resources match the cloud ones.

pub mod graph_emulator;
pub mod infra;
pub mod meta;
pub mod moto;
pub mod paths;
pub mod process;
