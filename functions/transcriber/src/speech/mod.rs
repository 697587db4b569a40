//! Speech to text with whisper.cpp (through whisper-rs): 16 kHz mono samples in, a
//! [`Transcript`] out.
//!
//! The model (a GGML `ggml-*.bin` file) is loaded once by [`Engine::load`] and kept for the
//! life of the Lambda container; [`Engine::transcribe`] is synchronous and CPU bound, so an
//! async caller runs it in `tokio::task::spawn_blocking`.
//!
//! ```no_run
//! use transcriber::speech::{Engine, Language, SpeechSettings};
//!
//! # fn example(samples: &[f32]) -> Result<(), transcriber::speech::SpeechError> {
//! let engine = Engine::load(&SpeechSettings {
//!     model_path: "/opt/models/ggml-base-q8_0.bin".into(),
//!     language: Language::Auto,
//!     threads: 2,
//! })?;
//! let transcript = engine.transcribe(samples)?;
//! println!("{:?}: {} words", transcript.language, transcript.text.split_whitespace().count());
//! # Ok(())
//! # }
//! ```
//!
//! # Speed
//!
//! whisper.cpp's encoder always processes a 30 s window (1500 positions of 20 ms), so a 5 s
//! note would cost as much as a 30 s one. For clips shorter than the window, [`Tuning`]
//! shrinks the encoder window (whisper.cpp's `audio_ctx`) to the clip plus a margin, which
//! makes short notes several times faster with the same words. Language detection runs the
//! encoder once more; it uses the shrunk window too.
//!
//! Notes too long for one window (over 28 s) are cut into chunks of at most 15 s
//! ([`Tuning::max_chunk_ms`]) at pauses
//! (the quietest 200 ms near each ideal cut, so no word is split), and each chunk is
//! transcribed with its own shrunk window (not conditioned on the text of the chunks before
//! it: see [`Tuning::condition_on_previous_text`]); segment times count from the start of
//! the note. Left to itself, whisper.cpp would encode
//! full 30 s windows and re-encode the audio after the last timestamp it decoded (a 40 s
//! note: two full windows). Shorter windows also make every decoded token cheaper (its
//! cross-attention spans the window), which is why 15 s chunks beat 28 s ones
//! (`scripts/bench-speech.sh` measures it).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::audio::TARGET_SAMPLE_RATE;

mod chunks;
mod engine;
mod error;
mod language;
mod model_file;
mod tuning;
mod vad;

pub use engine::Engine;
pub use error::SpeechError;
pub use language::Language;
pub use tuning::Tuning;

/// The longest audio [`Engine::transcribe`] accepts: 30 minutes. The decoder already bounds
/// voice notes more tightly; this is a second, defensive bound.
pub const MAX_AUDIO_DURATION: Duration = Duration::from_secs(30 * 60);

/// The most threads [`SpeechSettings::threads`] may ask for.
pub const MAX_THREADS: usize = 64;

/// Samples per second of the input (16 kHz).
const RATE: usize = TARGET_SAMPLE_RATE as usize;

/// Clips shorter than this (100 ms) are not worth running whisper on (whisper.cpp itself
/// skips them): they give an empty transcript.
const MIN_SAMPLES: usize = RATE / 10;

/// Audio whose peak stays below this (-60 dBFS) is silence: an empty transcript without
/// running the model, which could otherwise invent words for it.
const SILENCE_PEAK: f32 = 1e-3;

/// The encoder window of the Whisper models, in encoder positions (30 s of 20 ms).
const FULL_WINDOW: usize = 1500;

/// Milliseconds of audio per encoder position.
const MS_PER_POSITION: u64 = 20;

/// What this build of whisper.cpp and ggml uses on this CPU, as whisper.cpp reports it
/// (`... AVX2 = 1 | F16C = 1 | LLAMAFILE = 1 ...`): logged when the model loads, printed by
/// `bootstrap --system-info`.
pub fn system_info() -> &'static str {
    whisper_rs::print_system_info().trim()
}

/// What [`Engine::load`] needs. Built by the function's configuration (no environment is read
/// here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeechSettings {
    /// The GGML model file, e.g. `ggml-base.bin`.
    pub model_path: PathBuf,
    /// The language to transcribe in, or detection.
    pub language: Language,
    /// CPU threads for whisper.cpp (1..=[`MAX_THREADS`]). On Lambda, use the number of
    /// vCPUs the memory size buys (2 at 1769-3538 MB).
    pub threads: usize,
}

/// A timed piece of a [`Transcript`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Start, in ms from the beginning of the audio.
    pub start_ms: u64,
    /// End, in ms from the beginning of the audio (never past the audio's end).
    pub end_ms: u64,
    /// The words, trimmed.
    pub text: String,
}

/// The result of [`Engine::transcribe`], stored in S3 as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// The segments' words joined by spaces, trimmed; empty for silence.
    pub text: String,
    /// The forced or detected language code (`"en"`, `"es"`…); `None` when nothing was
    /// heard and no language was forced.
    pub language: Option<String>,
    /// Timed segments, in order, not overlapping.
    pub segments: Vec<Segment>,
    /// The model that produced it (the model file's stem, e.g. `ggml-base`).
    pub model: String,
    /// Duration of the audio transcribed.
    pub audio_duration_ms: u64,
    /// How much of it whisper heard: the stretches of speech with short pauses, once
    /// voice activity detection shortened the long pauses ([`Tuning::vad`]); 0 when nobody
    /// spoke.
    #[serde(default)]
    pub speech_ms: u64,
    /// Time spent transcribing (detection and decoding).
    pub processing_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::engine::is_annotation;
    use super::*;

    #[test]
    fn ggml_is_built_with_its_tiled_matrix_kernels() {
        // .cargo/config.toml sets GGML_LLAMAFILE=ON for every build of the workspace
        // (whisper-rs-sys does not notice a change: `cargo clean -p whisper-rs-sys`).
        assert!(system_info().contains("LLAMAFILE = 1"), "{}", system_info());
    }

    #[test]
    fn languages_parse_to_whisper_codes() {
        assert_eq!(Language::parse("").unwrap(), Language::Auto);
        assert_eq!(Language::parse(" AUTO ").unwrap(), Language::Auto);
        assert_eq!(
            Language::parse("es").unwrap(),
            Language::Forced("es".into())
        );
        assert_eq!(
            Language::parse("ES").unwrap(),
            Language::Forced("es".into())
        );
        assert_eq!(
            Language::parse("Spanish").unwrap(),
            Language::Forced("es".into())
        );
        assert_eq!("pt".parse::<Language>().unwrap().code(), Some("pt"));
        for bad in ["xx", "e", "es\0", "español", "en-US", "12"] {
            assert!(
                matches!(
                    Language::parse(bad),
                    Err(SpeechError::UnknownLanguage { .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(Language::Forced("es".into()).to_string(), "es");
        assert_eq!(Language::Auto.to_string(), "auto");
    }

    #[test]
    fn the_window_follows_the_clip_length() {
        let tuning = Tuning::default();
        // Short clips get the minimum window (4 s = 200 positions, rounded to 208).
        assert_eq!(tuning.window_for(RATE), 208);
        // 10 s + 2 s margin = 600 positions, rounded up to 608.
        assert_eq!(tuning.window_for(10 * RATE), 608);
        // Long clips keep the full window.
        assert_eq!(tuning.window_for(28 * RATE), 0);
        assert_eq!(tuning.window_for(45 * RATE), 0);
        assert_eq!(Tuning::whisper_defaults().window_for(RATE), 0);
    }

    #[test]
    fn annotations_are_recognised() {
        for text in [
            "[BLANK_AUDIO]",
            "(music)",
            "*sigh*",
            "♪",
            "...",
            "[ Silence ]",
        ] {
            assert!(is_annotation(text), "{text}");
        }
        for text in ["Hello.", "(laughs) hello", "It's [sic] fine", "5"] {
            assert!(!is_annotation(text), "{text}");
        }
    }

    #[test]
    fn missing_and_foreign_model_files_are_reported_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let settings = |path: PathBuf| SpeechSettings {
            model_path: path,
            language: Language::Auto,
            threads: 2,
        };
        let missing = dir.path().join("ggml-nothing.bin");
        let err = Engine::load(&settings(missing.clone())).unwrap_err();
        assert_eq!(err, SpeechError::ModelNotFound { path: missing });
        assert!(err.to_string().contains("WHISPER_MODEL_PATH"), "{err}");

        let text = dir.path().join("model.bin");
        std::fs::write(&text, b"not a model at all").unwrap();
        let err = Engine::load(&settings(text)).unwrap_err();
        assert!(matches!(err, SpeechError::NotAWhisperModel { .. }), "{err}");

        let short = dir.path().join("short.bin");
        std::fs::write(&short, b"lm").unwrap();
        let err = Engine::load(&settings(short)).unwrap_err();
        assert!(matches!(err, SpeechError::NotAWhisperModel { .. }), "{err}");

        let err = Engine::load(&settings(dir.path().to_owned())).unwrap_err();
        assert!(matches!(err, SpeechError::NotAWhisperModel { .. }), "{err}");

        // A truncated file with the right magic is refused by whisper.cpp, not a crash.
        let truncated = dir.path().join("ggml-truncated.bin");
        std::fs::write(&truncated, b"lmgg\x98\xca\0\0").unwrap();
        let err = Engine::load(&settings(truncated)).unwrap_err();
        assert!(matches!(err, SpeechError::ModelLoad { .. }), "{err}");
    }

    #[test]
    fn settings_are_checked_before_loading() {
        let mut settings = SpeechSettings {
            model_path: "/nonexistent/ggml-base.bin".into(),
            language: Language::Auto,
            threads: 0,
        };
        assert_eq!(
            Engine::load(&settings).unwrap_err(),
            SpeechError::InvalidThreads { threads: 0 }
        );
        settings.threads = 2;
        settings.language = Language::Forced("klingon".into());
        assert!(matches!(
            Engine::load(&settings).unwrap_err(),
            SpeechError::UnknownLanguage { .. }
        ));
    }
}
