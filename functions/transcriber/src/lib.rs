//! The transcriber function: inbound messages and their media to S3, voice notes to text.

pub mod audio;
pub mod speech;
