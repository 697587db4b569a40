//! Decoding knobs: the shrunk encoder window, chunking, sampling.

use super::{FULL_WINDOW, MS_PER_POSITION};

/// [`Tuning::detect_ms`] by default. Measured with `scripts/bench-speech.sh --multilingual`
/// (base q8_0, English and Spanish notes of 5-60 s): the language found on the first 5 s
/// was the one found on the whole first chunk on every note, and a 13.5-14.7 s note took
/// 0.28-0.45 s less (0 on a 5 s note, which is all detected anyway).
const DEFAULT_DETECT_MS: u32 = 5_000;

/// [`Tuning::split_above_ms`] by default. A 27-29 s note in two windows of about 14 s took
/// 0.15-0.3 s less than in one 29 s window, with the same or fewer word errors.
const DEFAULT_SPLIT_ABOVE_MS: u32 = 20_000;

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
    /// Detect the language on the first `detect_ms` of the audio only, with a window
    /// shrunk to that (0: on all of the first chunk). Detection runs the encoder once more,
    /// so a shorter detection window is a direct saving on every note longer than it.
    pub detect_ms: u32,
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
    /// One segment per chunk of a note cut into chunks ([`Tuning::split_long`]): whisper.cpp
    /// then never seeks inside a chunk and encodes it a second time (it did when a decode
    /// ended before the chunk's end: es30, 3 encoder runs for 2 chunks). Each chunk is then
    /// timed as a whole, from its first to its last sound.
    pub single_segment_chunks: bool,
    /// whisper.cpp's flash attention (applied when the model is loaded).
    pub flash_attention: bool,
    /// Cut audio too long for one shrunk window (over 30 s less the margin), or longer than
    /// [`Tuning::split_above_ms`], into chunks of at most [`Tuning::max_chunk_ms`] at pauses
    /// and transcribe each with a window shrunk to it (needs `shrink_window`), instead of
    /// letting whisper.cpp run full 30 s windows over it. Shorter audio stays in one piece.
    pub split_long: bool,
    /// The longest chunk when `split_long` is on, in ms. Long audio is cut into the fewest
    /// chunks of at most this length, of about equal length. 15 s measured fastest on 40 s
    /// and 68 s notes, with the same words as longer chunks (10 s lost some words).
    pub max_chunk_ms: u32,
    /// With `split_long`, audio longer than this (in ms) is cut into chunks even when it
    /// would fit one shrunk window: the encoder's cost grows faster than the window, so two
    /// windows of 14 s can cost less than one of 28 s.
    pub split_above_ms: u32,
    /// Voice activity detection (whisper.cpp's, with the built-in Silero model) before
    /// whisper: a note with no speech (silence, noise, music) gets an empty transcript
    /// instead of invented words, and pauses over a second shrink to 600 ms, so whisper
    /// neither hears nor encodes them (when they add up to 2 s or more; otherwise whisper
    /// hears the note whole).
    pub vad: bool,
    /// A note cut into chunks is transcribed by two decoding states at once (more with more
    /// threads), each with its share of the threads, on alternate chunks, instead of one
    /// state with every thread on each chunk in turn: the decoder's many small steps then
    /// wait for no other thread. Chunks are independent (`condition_on_previous_text` off,
    /// which it needs), so the words are the same.
    pub parallel_chunks: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            shrink_window: true,
            window_margin_ms: 2_000,
            min_window_ms: 4_000,
            fast_detection: true,
            detect_ms: DEFAULT_DETECT_MS,
            suppress_non_speech: true,
            temperature_inc: 0.2,
            condition_on_previous_text: false,
            single_segment_short: false,
            single_segment_chunks: true,
            flash_attention: false,
            split_long: true,
            max_chunk_ms: 15_000,
            split_above_ms: DEFAULT_SPLIT_ABOVE_MS,
            vad: true,
            parallel_chunks: true,
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
            detect_ms: 0,
            suppress_non_speech: false,
            temperature_inc: 0.2,
            condition_on_previous_text: true,
            single_segment_short: false,
            single_segment_chunks: false,
            flash_attention: false,
            split_long: false,
            max_chunk_ms: 30_000,
            split_above_ms: u32::MAX,
            vad: false,
            parallel_chunks: false,
        }
    }

    /// The encoder window (`audio_ctx`, in 20 ms positions) for a clip of `samples`, or 0
    /// for whisper's full 30 s window.
    pub fn window_for(&self, samples: usize) -> usize {
        if !self.shrink_window {
            return 0;
        }
        let clip_ms = super::engine::ms(samples);
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
