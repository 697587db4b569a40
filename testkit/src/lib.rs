//! What the tests and benchmarks of Remedios share. A dev-dependency only: no function
//! and no tool depends on it.
//!
//! - The emulators ([`moto`], [`lambda`], [`iam`], [`graph`], [`meta`], [`model_server`], [`stand_in`], [`link`],
//!   [`child`], [`ports`], [`paths`]: the whisper models among them), re-exported from `remedios-emulators`, which the
//!   local stack runs too.
//! - [`audio`]: audio fixtures made with espeak-ng, sox, opus-tools and ffmpeg, and signal
//!   measurements.
//! - [`voice`]: voice notes as WhatsApp sends them, for the end-to-end tests.
//! - [`wer`]: the word error rate every speech test and benchmark scores with.

pub use remedios_emulators::{
    child, graph, iam, lambda, link, meta, model_server, moto, paths, ports, stand_in,
};

pub mod audio;
pub mod voice;
pub mod wer;
