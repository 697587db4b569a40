//! Why a model could not be loaded or audio transcribed.

use std::path::PathBuf;

use whisper_rs::WhisperError;

use super::{MAX_AUDIO_DURATION, MAX_THREADS};

/// Why a model could not be loaded or audio transcribed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpeechError {
    /// There is no file at the model path.
    #[error(
        "whisper model not found at {}: set WHISPER_MODEL_PATH or WHISPER_MODEL_S3_KEY",
        path.display()
    )]
    ModelNotFound {
        /// The configured path.
        path: PathBuf,
    },
    /// The model file exists but cannot be read.
    #[error("cannot read the whisper model {}: {reason}", path.display())]
    ModelUnreadable {
        /// The configured path.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The file is not a GGML whisper model (wrong magic number).
    #[error(
        "{} is not a GGML whisper model: use a ggml-*.bin file (whisper.cpp's models, or \
         scripts/models.sh)",
        path.display()
    )]
    NotAWhisperModel {
        /// The configured path.
        path: PathBuf,
    },
    /// whisper.cpp refused the model (truncated or inconsistent file, or out of memory).
    #[error(
        "whisper.cpp could not load the model {} (truncated or damaged file? see the \
         whisper_rs log lines): {reason}",
        path.display()
    )]
    ModelLoad {
        /// The configured path.
        path: PathBuf,
        /// whisper-rs' error.
        reason: String,
    },
    /// The language setting is not one whisper knows.
    #[error(
        "unknown language {language:?}: use \"auto\" or a whisper language code such as \
         \"en\", \"es\", \"pt\""
    )]
    UnknownLanguage {
        /// The setting as given.
        language: String,
    },
    /// A language other than English was forced on an English-only (`.en`) model.
    #[error(
        "the model {model} is English-only and cannot transcribe {language:?}: use a \
         multilingual model (ggml-base.bin, ggml-small.bin…) or the language \"en\""
    )]
    LanguageNotSupported {
        /// The model name.
        model: String,
        /// The forced language.
        language: String,
    },
    /// The thread count is out of range.
    #[error("the whisper thread count must be between 1 and {MAX_THREADS}, not {threads}")]
    InvalidThreads {
        /// The configured count.
        threads: usize,
    },
    /// The audio is longer than [`MAX_AUDIO_DURATION`].
    #[error(
        "the audio lasts {} s, more than the {} s the transcriber accepts",
        duration_ms / 1000,
        MAX_AUDIO_DURATION.as_secs()
    )]
    TooLong {
        /// Duration of the audio.
        duration_ms: u64,
    },
    /// The invocation's time would run out before the next chunk is transcribed.
    #[error(
        "the audio could not be transcribed in the time this invocation had ({done_ms} of {duration_ms} ms of audio done): raise TranscriberTimeout, use a smaller model, or lower AUDIO_MAX_SECONDS"
    )]
    OutOfTime {
        /// Audio transcribed before stopping.
        done_ms: u64,
        /// Duration of the audio.
        duration_ms: u64,
    },
    /// A sample is NaN or infinite (a decoder bug, never valid audio).
    #[error("the audio has an invalid (non-finite) sample at index {index}")]
    InvalidSamples {
        /// Index of the first bad sample.
        index: usize,
    },
    /// whisper.cpp failed while transcribing.
    #[error("whisper.cpp failed while {stage}: {reason}")]
    Whisper {
        /// What was being done.
        stage: &'static str,
        /// whisper-rs' error.
        reason: String,
    },
}

pub(super) fn whisper_error(stage: &'static str) -> impl FnOnce(WhisperError) -> SpeechError {
    move |e| SpeechError::Whisper {
        stage,
        reason: e.to_string(),
    }
}
