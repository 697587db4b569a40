//! The transcriber function: inbound messages and their media to S3, voice notes to text.
//!
//! - [`cpu`]: which build of whisper.cpp this CPU runs (AVX2, or AVX-512 beside it).
//! - [`config`]: the environment, read at cold start.
//! - [`whisper_model`]: the whisper model file, from a layer or from S3.
//! - [`handler`]: the SQS batch handler.
//! - [`lanes`]: voice notes transcribed in lanes of their own, so texts never wait behind them.
//! - [`audio`]: voice notes and audio files to 16 kHz mono samples.
//! - [`speech`]: samples to text with whisper.cpp.

pub mod audio;
pub mod config;
pub mod cpu;
pub mod handler;
pub mod lanes;
pub mod speech;
pub mod whisper_model;

pub use config::Config;
pub use handler::{Handled, MediaBounds, RecordError, Speech, StartError, Transcriber};
