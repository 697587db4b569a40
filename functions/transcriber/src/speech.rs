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
//!     model_path: "/opt/models/ggml-base.bin".into(),
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

use std::ffi::c_int;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperError,
    WhisperState,
};

use crate::audio::TARGET_SAMPLE_RATE;

mod chunks;

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

/// The first bytes of a GGML whisper model: the magic number 0x67676d6c ("ggml") stored
/// little-endian.
const GGML_MAGIC: [u8; 4] = *b"lmgg";

/// The language to transcribe in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Language {
    /// Detect the language of each message (multilingual models only; an English-only
    /// model always transcribes English). Costs one more encoder run per message.
    #[default]
    Auto,
    /// Always this language: a whisper language code such as `"en"` or `"es"`.
    Fixed(String),
}

impl Language {
    /// Parses a language setting: `""` or `"auto"` is [`Language::Auto`]; otherwise a
    /// whisper language code (`"es"`) or English name (`"spanish"`), case-insensitive,
    /// normalised to the code.
    pub fn parse(value: &str) -> Result<Self, SpeechError> {
        let value = value.trim();
        if value.is_empty() || value.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        language_code(value).map(|code| Self::Fixed(code.to_owned()))
    }

    /// The forced language code, or `None` for [`Language::Auto`].
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Auto => None,
            Self::Fixed(code) => Some(code),
        }
    }
}

impl FromStr for Language {
    type Err = SpeechError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code().unwrap_or("auto"))
    }
}

/// The whisper code of a language given by code or English name, if whisper knows it.
fn language_code(value: &str) -> Result<&'static str, SpeechError> {
    let unknown = || SpeechError::UnknownLanguage {
        language: value.to_owned(),
    };
    // whisper's codes and names are short lowercase ASCII words (some with a space, like
    // "haitian creole"); checking first also keeps NUL bytes away from the C string API.
    let plausible = (2..=24).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphabetic() || b == b' ');
    if !plausible {
        return Err(unknown());
    }
    let lowered = value.to_ascii_lowercase();
    let id = whisper_rs::get_lang_id(&lowered).ok_or_else(unknown)?;
    whisper_rs::get_lang_str(id).ok_or_else(unknown)
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

/// Decoding knobs. [`Tuning::default`] is what Remedios uses; [`Tuning::whisper_defaults`]
/// is whisper.cpp's own behaviour, kept for benchmarks and comparisons.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// Shrink the encoder window (whisper.cpp's `audio_ctx`) to the clip plus
    /// [`Tuning::window_margin_ms`] for clips shorter than 30 s.
    pub shrink_window: bool,
    /// Audio time added after the clip when the window is shrunk. Whisper was trained on
    /// speech followed by padding; too little margin loses the last words.
    pub window_margin_ms: u32,
    /// The smallest shrunk window, in ms (very short windows confuse the model).
    pub min_window_ms: u32,
    /// Run language detection on the shrunk window too (otherwise it always encodes 30 s).
    pub fast_detection: bool,
    /// Suppress non-speech tokens (music notes, brackets, speaker tags…).
    pub suppress_non_speech: bool,
    /// Temperature increment of whisper's fallback when a decode looks like a loop or is
    /// unlikely; 0 disables the fallback (greedy at temperature 0 only).
    pub temperature_inc: f32,
    /// Condition each chunk (or whisper.cpp's 30 s window) on the text of the ones before
    /// it (long notes only). Off by default: the previous text is decoded again as a prompt
    /// for every chunk, which made 40 s and 68 s notes 12-19% slower with no better words
    /// (chunks are cut at pauses), and it is what sets off whisper's repetition loops.
    pub condition_on_previous_text: bool,
    /// One segment for a clip that fits in one window (no inner timestamps needed).
    pub single_segment_short: bool,
    /// whisper.cpp's flash attention (applied when the model is loaded).
    pub flash_attention: bool,
    /// Cut audio too long for one shrunk window (over 30 s less the margin) into chunks of
    /// at most [`Tuning::max_chunk_ms`] at pauses and transcribe each with a window shrunk
    /// to it (needs `shrink_window`), instead of letting whisper.cpp run full 30 s windows
    /// over it. Shorter audio stays in one piece.
    pub split_long: bool,
    /// The longest chunk when `split_long` is on, in ms. Long audio is cut into the fewest
    /// chunks of at most this length, of about equal length. 15 s measured fastest on 40 s
    /// and 68 s notes, with the same words as longer chunks (10 s lost some words).
    pub max_chunk_ms: u32,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            shrink_window: true,
            window_margin_ms: 2_000,
            min_window_ms: 4_000,
            fast_detection: true,
            suppress_non_speech: true,
            temperature_inc: 0.2,
            condition_on_previous_text: false,
            single_segment_short: false,
            flash_attention: false,
            split_long: true,
            max_chunk_ms: 15_000,
        }
    }
}

impl Tuning {
    /// whisper.cpp's defaults: a 30 s encoder window, detection on it, temperature fallback
    /// in steps of 0.2, no suppression of non-speech tokens.
    pub fn whisper_defaults() -> Self {
        Self {
            shrink_window: false,
            window_margin_ms: 0,
            min_window_ms: 0,
            fast_detection: false,
            suppress_non_speech: false,
            temperature_inc: 0.2,
            condition_on_previous_text: true,
            single_segment_short: false,
            flash_attention: false,
            split_long: false,
            max_chunk_ms: 30_000,
        }
    }

    /// The encoder window (`audio_ctx`, in 20 ms positions) for a clip of `samples`, or 0
    /// for whisper's full 30 s window.
    pub fn window_for(&self, samples: usize) -> usize {
        if !self.shrink_window {
            return 0;
        }
        let clip_ms = (samples as u64).saturating_mul(1000) / RATE as u64;
        let wanted_ms = clip_ms
            .saturating_add(u64::from(self.window_margin_ms))
            .max(u64::from(self.min_window_ms));
        // Whole positions, rounded up to a multiple of 16 to keep the matrix shapes friendly.
        let positions = wanted_ms.div_ceil(MS_PER_POSITION).div_ceil(16) * 16;
        if positions >= FULL_WINDOW as u64 {
            0
        } else {
            positions as usize
        }
    }
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
    /// Time spent transcribing (detection and decoding).
    pub processing_ms: u64,
}

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

fn whisper_error(stage: &'static str) -> impl FnOnce(WhisperError) -> SpeechError {
    move |e| SpeechError::Whisper {
        stage,
        reason: e.to_string(),
    }
}

/// A loaded whisper model, ready to transcribe.
///
/// `Send + Sync`: the model (whisper.cpp's context) is read-only after loading, and each
/// [`Engine::transcribe`] call creates its own decoding state (buffers and caches, a few
/// ms to set up), so concurrent calls neither share mutable state nor wait on a lock.
pub struct Engine {
    ctx: WhisperContext,
    model: String,
    multilingual: bool,
    /// The language forced for every message (`Some("en")` for English-only models).
    forced: Option<String>,
    threads: usize,
    load_time: Duration,
    tuning: Tuning,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("model", &self.model)
            .field("multilingual", &self.multilingual)
            .field("forced", &self.forced)
            .field("threads", &self.threads)
            .field("load_time", &self.load_time)
            .field("tuning", &self.tuning)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads the model of `settings` with the default [`Tuning`].
    ///
    /// Fails with a clear error if the file is missing or not a GGML whisper model, if the
    /// thread count is out of range, or if the forced language is unknown or not supported by
    /// the model (a non-English language on a `.en` model).
    pub fn load(settings: &SpeechSettings) -> Result<Self, SpeechError> {
        Self::load_tuned(settings, Tuning::default())
    }

    /// Loads the model of `settings` with explicit decoding knobs (benchmarks, experiments).
    pub fn load_tuned(settings: &SpeechSettings, tuning: Tuning) -> Result<Self, SpeechError> {
        let started = Instant::now();
        if !(1..=MAX_THREADS).contains(&settings.threads) {
            return Err(SpeechError::InvalidThreads {
                threads: settings.threads,
            });
        }
        // Normalise (and validate) a forced language before the expensive load.
        let forced = match &settings.language {
            Language::Auto => None,
            Language::Fixed(code) => Some(language_code(code)?),
        };
        let path = settings.model_path.as_path();
        check_model_file(path)?;
        let model = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "whisper".to_owned());

        whisper_rs::install_logging_hooks();
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false).flash_attn(tuning.flash_attention);
        let ctx =
            WhisperContext::new_with_params(path, params).map_err(|e| SpeechError::ModelLoad {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        let multilingual = ctx.is_multilingual();
        let forced = match forced {
            Some(code) if !multilingual && code != "en" => {
                return Err(SpeechError::LanguageNotSupported {
                    model,
                    language: code.to_owned(),
                });
            }
            Some(code) => Some(code.to_owned()),
            None if !multilingual => Some("en".to_owned()),
            None => None,
        };
        let load_time = started.elapsed();
        tracing::info!(
            model,
            kind = ctx
                .model_type_readable_str_lossy()
                .unwrap_or_default()
                .as_ref(),
            multilingual,
            language = forced.as_deref().unwrap_or("auto"),
            threads = settings.threads,
            load_ms = load_time.as_millis() as u64,
            "whisper model loaded"
        );
        Ok(Self {
            ctx,
            model,
            multilingual,
            forced,
            threads: settings.threads,
            load_time,
            tuning,
        })
    }

    /// The model name (the model file's stem, e.g. `ggml-base`).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether the model knows languages other than English (and can detect them).
    pub fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    /// The language every message is transcribed in, or `None` if it is detected.
    pub fn forced_language(&self) -> Option<&str> {
        self.forced.as_deref()
    }

    /// How long [`Engine::load`] took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// The decoding knobs in use.
    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    /// Transcribes 16 kHz mono samples (as [`crate::audio::decode`] gives them).
    ///
    /// Synchronous and CPU bound: call it from `spawn_blocking`. Empty, very short (< 100 ms)
    /// or silent audio gives an empty transcript, not an error. Audio longer than
    /// [`MAX_AUDIO_DURATION`] or with non-finite samples is refused.
    pub fn transcribe(&self, samples: &[f32]) -> Result<Transcript, SpeechError> {
        let started = Instant::now();
        let audio_duration_ms = ms(samples.len());
        if audio_duration_ms > MAX_AUDIO_DURATION.as_millis() as u64 {
            return Err(SpeechError::TooLong {
                duration_ms: audio_duration_ms,
            });
        }
        if let Some(index) = samples.iter().position(|s| !s.is_finite()) {
            return Err(SpeechError::InvalidSamples { index });
        }
        let mut transcript = Transcript {
            text: String::new(),
            language: self.forced.clone(),
            segments: Vec::new(),
            model: self.model.clone(),
            audio_duration_ms,
            processing_ms: 0,
        };
        let peak = samples.iter().fold(0.0f32, |peak, s| peak.max(s.abs()));
        if samples.len() < MIN_SAMPLES || peak < SILENCE_PEAK {
            tracing::debug!(audio_duration_ms, peak, "no speech to transcribe");
            transcript.processing_ms = started.elapsed().as_millis() as u64;
            return Ok(transcript);
        }

        let chunks = self.chunks(samples);
        let mut state = self
            .ctx
            .create_state()
            .map_err(whisper_error("creating a decoding state"))?;
        let mut language = self.forced.clone();
        let mut detect_ms = 0;
        let mut previous_end = 0;
        let mut spoken_before = false;
        for chunk in &chunks {
            let audio = &samples[chunk.clone()];
            let chunk_peak = audio.iter().fold(0.0f32, |peak, s| peak.max(s.abs()));
            if audio.len() < MIN_SAMPLES || chunk_peak < SILENCE_PEAK {
                continue;
            }
            let window = self.tuning.window_for(audio.len());
            let code = match &language {
                Some(code) => code.clone(),
                None => {
                    let detect_started = Instant::now();
                    let code = self.detect_language(&mut state, audio, window)?;
                    detect_ms = detect_started.elapsed().as_millis() as u64;
                    language = Some(code.clone());
                    code
                }
            };
            let mut params = self.full_params(&code, window);
            // Later chunks continue the text of the earlier ones, as whisper.cpp's own
            // windows do.
            params.set_no_context(!(spoken_before && self.tuning.condition_on_previous_text));
            state
                .full(params, audio)
                .map_err(whisper_error("transcribing"))?;
            let offset_ms = ms(chunk.start);
            let end_ms = ms(chunk.end).min(audio_duration_ms);
            let before = transcript.segments.len();
            collect_segments(
                &state,
                offset_ms,
                end_ms,
                &mut previous_end,
                &mut transcript.segments,
            )?;
            spoken_before |= transcript.segments.len() > before;
        }

        transcript.text = join_segments(&transcript.segments);
        transcript.language = language;
        transcript.processing_ms = started.elapsed().as_millis() as u64;
        tracing::debug!(
            model = self.model,
            language = transcript.language.as_deref(),
            audio_ms = audio_duration_ms,
            chunks = chunks.len(),
            detect_ms,
            processing_ms = transcript.processing_ms,
            segments = transcript.segments.len(),
            words = transcript.text.split_whitespace().count(),
            "transcribed"
        );
        Ok(transcript)
    }

    /// The pieces `samples` is transcribed in: one, or chunks cut at pauses for audio too
    /// long for one shrunk window (see [`Tuning::split_long`]).
    fn chunks(&self, samples: &[f32]) -> Vec<std::ops::Range<usize>> {
        let tuning = &self.tuning;
        let fits_one_window = tuning.window_for(samples.len()) > 0;
        if !(tuning.split_long && tuning.shrink_window) || fits_one_window {
            return std::iter::once(0..samples.len()).collect();
        }
        let max_len = (tuning.max_chunk_ms as usize).saturating_mul(RATE) / 1000;
        chunks::plan(samples, max_len)
    }

    /// Detects the spoken language with the encoder window `window` (0: 30 s).
    fn detect_language(
        &self,
        state: &mut WhisperState,
        samples: &[f32],
        window: usize,
    ) -> Result<String, SpeechError> {
        if window > 0 && self.tuning.fast_detection {
            // whisper.cpp detects the language with the encoder window of the state's last
            // `full` call (30 s for a fresh state). A `full` call limited to 100 ms of audio
            // computes the spectrogram and sets the window, then stops before encoding
            // anything (the main loop needs more than 100 ms to run).
            let mut prime = self.full_params("en", window);
            prime.set_duration_ms(100);
            state
                .full(prime, samples)
                .map_err(whisper_error("preparing language detection"))?;
        } else {
            state
                .pcm_to_mel(samples, self.threads)
                .map_err(whisper_error("computing the spectrogram"))?;
        }
        let (id, probabilities) = state
            .lang_detect(0, self.threads)
            .map_err(whisper_error("detecting the language"))?;
        let code = whisper_rs::get_lang_str(id).ok_or_else(|| SpeechError::Whisper {
            stage: "detecting the language",
            reason: format!("unknown language id {id}"),
        })?;
        let probability = usize::try_from(id)
            .ok()
            .and_then(|i| probabilities.get(i).copied())
            .unwrap_or_default();
        tracing::debug!(language = code, probability, window, "language detected");
        Ok(code.to_owned())
    }

    fn full_params<'a>(&self, language: &'a str, window: usize) -> FullParams<'a, 'static> {
        let tuning = &self.tuning;
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        // Both are bounded (MAX_THREADS, FULL_WINDOW), far below c_int::MAX.
        params.set_n_threads(self.threads as c_int);
        params.set_audio_ctx(window as c_int);
        params.set_language(Some(language));
        params.set_translate(false);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_no_context(true);
        if !tuning.condition_on_previous_text {
            params.set_n_max_text_ctx(0);
        }
        params.set_single_segment(tuning.single_segment_short && window > 0);
        params.set_suppress_blank(true);
        params.set_suppress_nst(tuning.suppress_non_speech);
        params.set_temperature(0.0);
        params.set_temperature_inc(tuning.temperature_inc);
        params
    }
}

/// Opens the model file and checks the GGML magic number, for a clear error before
/// whisper.cpp gets it.
fn check_model_file(path: &Path) -> Result<(), SpeechError> {
    let unreadable = |e: std::io::Error| SpeechError::ModelUnreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SpeechError::ModelNotFound {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(unreadable(e)),
    };
    if file.metadata().map_err(unreadable)?.is_dir() {
        return Err(SpeechError::NotAWhisperModel {
            path: path.to_owned(),
        });
    }
    let size = file.metadata().map_err(unreadable)?.len();
    let mut magic = [0u8; 4];
    match file.read_exact(&mut magic) {
        Ok(()) if magic == GGML_MAGIC => {}
        Ok(()) => {
            return Err(SpeechError::NotAWhisperModel {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(SpeechError::NotAWhisperModel {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(unreadable(e)),
    }
    // whisper.cpp reads a cut-off file without noticing (it reads zeros past the end), so a
    // half-copied model would "load" and then transcribe garbage: refuse it here.
    let broken = |reason: String| SpeechError::ModelLoad {
        path: path.to_owned(),
        reason,
    };
    let mut header = [0u8; 44];
    if file.read_exact(&mut header).is_err() || size < MIN_MODEL_BYTES {
        return Err(broken(format!(
            "the file is truncated ({size} bytes; the smallest whisper model is over 30 MB)"
        )));
    }
    let field = |i: usize| {
        i32::from_le_bytes([
            header[i * 4],
            header[i * 4 + 1],
            header[i * 4 + 2],
            header[i * 4 + 3],
        ])
    };
    let (n_vocab, n_mels) = (field(0), field(9));
    if !(51_864..=51_866).contains(&n_vocab) || !matches!(n_mels, 80 | 128) {
        return Err(broken(format!(
            "unexpected header (vocabulary {n_vocab}, mel bands {n_mels}): not a whisper GGML model"
        )));
    }
    Ok(())
}

/// Smaller than any whisper GGML model, even tiny quantised to 4 bits (about 31 MB).
const MIN_MODEL_BYTES: u64 = 16 * 1024 * 1024;

/// Milliseconds of audio in `samples` samples.
fn ms(samples: usize) -> u64 {
    (samples as u64).saturating_mul(1000) / RATE as u64
}

/// Appends the state's segments to `segments`: times in ms shifted by `offset_ms` (where
/// the transcribed audio starts), clamped to `end_ms` (where it ends) and made monotonic
/// from `previous_end` on, annotations such as `[BLANK_AUDIO]` or `(music)` dropped.
fn collect_segments(
    state: &WhisperState,
    offset_ms: u64,
    end_ms: u64,
    previous_end: &mut u64,
    segments: &mut Vec<Segment>,
) -> Result<(), SpeechError> {
    for segment in state.as_iter() {
        let text = segment
            .to_str_lossy()
            .map_err(whisper_error("reading the transcript"))?;
        let text = text.trim();
        if text.is_empty() || is_annotation(text) {
            continue;
        }
        // whisper.cpp's times are in centiseconds.
        let to_ms = |cs: i64| {
            u64::try_from(cs)
                .unwrap_or(0)
                .saturating_mul(10)
                .saturating_add(offset_ms)
        };
        let start_ms = to_ms(segment.start_timestamp())
            .max(*previous_end)
            .min(end_ms);
        let segment_end_ms = to_ms(segment.end_timestamp()).clamp(start_ms, end_ms);
        *previous_end = segment_end_ms;
        segments.push(Segment {
            start_ms,
            end_ms: segment_end_ms,
            text: text.to_owned(),
        });
    }
    Ok(())
}

/// Whether a segment is only a non-speech annotation whisper sometimes writes, such as
/// `[BLANK_AUDIO]`, `[Music]`, `(silence)`, `*sigh*` or `♪`.
fn is_annotation(text: &str) -> bool {
    let enclosed = |open: char, close: char| {
        text.len() >= 2 && text.starts_with(open) && text.ends_with(close)
    };
    enclosed('[', ']')
        || enclosed('(', ')')
        || enclosed('*', '*')
        || text.chars().all(|c| !c.is_alphanumeric())
}

fn join_segments(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_owned()
}

/// Splits `text` into normalised words for [`word_error_rate`]: lower case, accents
/// removed (`está` → `esta`), punctuation dropped (apostrophes inside words kept), hyphens
/// split words.
pub fn normalized_words(text: &str) -> Vec<String> {
    let folded: String = text
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            '’' | '\'' => '\'',
            c if c.is_alphanumeric() => c,
            _ => ' ',
        })
        .collect();
    folded
        .split_whitespace()
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Word error rate of `hypothesis` against `reference`: the word-level edit distance
/// (substitutions, insertions, deletions) over the number of reference words, after
/// [`normalized_words`]. 0.0 is perfect; it can exceed 1.0. An empty reference gives 0.0
/// for an empty hypothesis and the hypothesis' word count otherwise.
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let reference = normalized_words(reference);
    let hypothesis = normalized_words(hypothesis);
    // One row of the Levenshtein table over words.
    let mut row: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let substitution = diagonal + usize::from(r != h);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[hypothesis.len()] as f64 / reference.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_parse_to_whisper_codes() {
        assert_eq!(Language::parse("").unwrap(), Language::Auto);
        assert_eq!(Language::parse(" AUTO ").unwrap(), Language::Auto);
        assert_eq!(Language::parse("es").unwrap(), Language::Fixed("es".into()));
        assert_eq!(Language::parse("ES").unwrap(), Language::Fixed("es".into()));
        assert_eq!(
            Language::parse("Spanish").unwrap(),
            Language::Fixed("es".into())
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
        assert_eq!(Language::Fixed("es".into()).to_string(), "es");
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
    fn word_error_rate_counts_edits_per_reference_word() {
        assert_eq!(word_error_rate("the cat sat", "The cat sat."), 0.0);
        assert_eq!(word_error_rate("the cat sat", "the dog sat"), 1.0 / 3.0);
        assert_eq!(word_error_rate("the cat sat", "cat sat down there"), 1.0);
        assert_eq!(
            word_error_rate("Está aquí, ¿verdad?", "esta aqui verdad"),
            0.0
        );
        assert_eq!(word_error_rate("don't stop", "Don’t stop!"), 0.0);
        assert_eq!(word_error_rate("twenty-five", "twenty five"), 0.0);
        assert_eq!(word_error_rate("a b", ""), 1.0);
        assert_eq!(word_error_rate("", ""), 0.0);
        assert_eq!(word_error_rate("", "hello there"), 2.0);
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
        settings.language = Language::Fixed("klingon".into());
        assert!(matches!(
            Engine::load(&settings).unwrap_err(),
            SpeechError::UnknownLanguage { .. }
        ));
    }
}
