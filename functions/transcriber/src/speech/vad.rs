//! Finding the speech in a note before whisper hears it: whisper writes words into silence
//! and noise ("Thank you for watching"), and encoding long pauses is wasted work.
//!
//! whisper.cpp's voice activity detection runs the Silero VAD v6.2.0 model (converted to
//! GGML by the whisper.cpp project, MIT; `functions/transcriber/models/`, built into the
//! binary, so a deployment needs no other file). [`Vad::speech`] gives the stretches of
//! speech, each padded so no soft word at its edges is cut, with the short pauses between
//! them kept; [`Timeline`] joins them into the audio whisper transcribes and maps its times
//! back to the note's.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Mutex;

use whisper_rs::{WhisperVadContext, WhisperVadContextParams, WhisperVadParams};

use super::{RATE, SpeechError};

/// The model, as the whisper.cpp repository ships it for its tests
/// (`models/for-tests-silero-v6.2.0-ggml.bin`), sha256 `2aa269b7…7fb6987`.
const MODEL: &[u8] = include_bytes!("../../models/silero-v6.2.0-ggml.bin");

/// Audio kept before and after each stretch of speech: 300 ms (Silero marks speech in
/// 32 ms frames and a soft consonant can fall under its threshold).
const PAD_MS: usize = 300;

/// Pauses shorter than this (between the padded stretches) are kept whole: 1 s. Longer
/// ones shrink to the two paddings, 600 ms of the note's own quiet, which still reads as a
/// pause to whisper and to the chunker.
const KEEP_PAUSES_UNDER_MS: usize = 1_000;

/// Speech probability above which a 32 ms frame is speech (Silero's usual 0.5).
const THRESHOLD: f32 = 0.5;

/// Speech shorter than this is a click or a breath, not a word: 250 ms.
const MIN_SPEECH_MS: i32 = 250;

/// whisper.cpp's voice activity detection with the built-in Silero model.
pub(super) struct Vad {
    ctx: Mutex<WhisperVadContext>,
}

impl std::fmt::Debug for Vad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vad").finish_non_exhaustive()
    }
}

impl Vad {
    /// Loads the built-in model. whisper.cpp reads models from files only: the bytes are
    /// written once to the temporary directory (Lambda's /tmp). One thread: Silero is a
    /// small network run on each 32 ms frame in turn, so more threads add only their
    /// synchronisation (with two, a 6 s note of noise took 26 s on a busy 2-core machine
    /// instead of 0.3 s).
    pub(super) fn load() -> Result<Self, SpeechError> {
        let path = model_file()?;
        let mut params = WhisperVadContextParams::new();
        params.set_n_threads(1);
        params.set_use_gpu(false);
        let path_text = path.to_string_lossy();
        let ctx =
            WhisperVadContext::new(&path_text, params).map_err(|e| SpeechError::ModelLoad {
                path: path.clone(),
                reason: format!("the voice activity model: {e}"),
            })?;
        Ok(Self {
            ctx: Mutex::new(ctx),
        })
    }

    /// The stretches of speech in `samples` (16 kHz), as sample ranges in order, each
    /// padded by [`PAD_MS`] and merged with the next when the pause between them is under
    /// [`KEEP_PAUSES_UNDER_MS`]; empty when nobody speaks.
    pub(super) fn speech(&self, samples: &[f32]) -> Result<Vec<Range<usize>>, SpeechError> {
        let mut params = WhisperVadParams::new();
        params.set_threshold(THRESHOLD);
        params.set_min_speech_duration(MIN_SPEECH_MS);
        params.set_speech_pad(0);
        let mut ctx = self
            .ctx
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let segments =
            ctx.segments_from_samples(params, samples)
                .map_err(|e| SpeechError::Whisper {
                    stage: "finding speech",
                    reason: e.to_string(),
                })?;
        // whisper.cpp gives times in centiseconds.
        let found = segments.map(|s| {
            let at = |cs: f32| (f64::from(cs.max(0.0)) * RATE as f64 / 100.0) as usize;
            at(s.start)..at(s.end)
        });
        Ok(padded_and_merged(found, samples.len()))
    }
}

/// `found` stretches widened by [`PAD_MS`] within `0..len`, merged across short pauses.
fn padded_and_merged(found: impl Iterator<Item = Range<usize>>, len: usize) -> Vec<Range<usize>> {
    let pad = PAD_MS * RATE / 1000;
    let keep = KEEP_PAUSES_UNDER_MS * RATE / 1000;
    let mut merged: Vec<Range<usize>> = Vec::new();
    for stretch in found {
        let start = stretch.start.saturating_sub(pad).min(len);
        let end = stretch.end.saturating_add(pad).min(len);
        if start >= end {
            continue;
        }
        match merged.last_mut() {
            Some(last) if start <= last.end + keep => last.end = last.end.max(end),
            _ => merged.push(start..end),
        }
    }
    merged
}

/// Writes the built-in model to the temporary directory unless it is there already, whole;
/// through a file of this process's own and a rename, so concurrent writers never expose
/// half a file.
fn model_file() -> Result<PathBuf, SpeechError> {
    let path = std::env::temp_dir().join("remedios-silero-v6.2.0-ggml.bin");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == MODEL.len() as u64) {
        return Ok(path);
    }
    let partial = path.with_extension(format!("{}.part", std::process::id()));
    std::fs::write(&partial, MODEL)
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| SpeechError::ModelUnreadable {
            path: path.clone(),
            reason: format!("cannot write the voice activity model there: {e}"),
        })?;
    Ok(path)
}

/// The audio whisper hears (the stretches of speech, one after the other) and where each
/// of its pieces lies in the note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Timeline {
    /// `(start in the joined audio, start in the note, length)`, in samples, in order.
    pieces: Vec<(usize, usize, usize)>,
}

impl Timeline {
    /// The note as it is.
    pub(super) fn whole(len: usize) -> Self {
        Self {
            pieces: vec![(0, 0, len)],
        }
    }

    /// `speech` (ranges of `samples`, in order) joined, and its timeline.
    pub(super) fn join(samples: &[f32], speech: &[Range<usize>]) -> (Vec<f32>, Self) {
        let mut joined = Vec::with_capacity(speech.iter().map(ExactSizeIterator::len).sum());
        let mut pieces = Vec::with_capacity(speech.len());
        for stretch in speech {
            pieces.push((joined.len(), stretch.start, stretch.len()));
            joined.extend_from_slice(&samples[stretch.clone()]);
        }
        (joined, Self { pieces })
    }

    /// The stretches of speech, as ranges of the joined audio.
    pub(super) fn stretches(&self) -> Vec<Range<usize>> {
        self.pieces
            .iter()
            .map(|&(start, _, len)| start..start + len)
            .collect()
    }

    /// Where the joined audio's sample `at` lies in the note (an end falls at the end of
    /// its piece).
    pub(super) fn in_note(&self, at: usize) -> usize {
        let piece = self
            .pieces
            .iter()
            .rev()
            .find(|(start, _, _)| *start <= at)
            .or(self.pieces.first());
        match piece {
            Some(&(start, note_start, len)) => note_start + (at - start.min(at)).min(len),
            None => at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: usize = RATE; // samples per second

    #[test]
    fn stretches_are_padded_and_short_pauses_kept() {
        let found = vec![S..2 * S, 2 * S + S / 2..3 * S, 10 * S..11 * S];
        let merged = padded_and_merged(found.into_iter(), 20 * S);
        let pad = PAD_MS * S / 1000;
        assert_eq!(
            merged,
            vec![S - pad..3 * S + pad, 10 * S - pad..11 * S + pad],
            "half a second of pause is kept; seven seconds are not"
        );
        // Padding stops at the note's ends.
        let edges = padded_and_merged(vec![0..S / 2, 19 * S..20 * S].into_iter(), 20 * S);
        assert_eq!(edges, vec![0..S / 2 + pad, 19 * S - pad..20 * S]);
        assert!(padded_and_merged(std::iter::empty(), 20 * S).is_empty());
    }

    #[test]
    fn the_timeline_maps_the_joined_audio_back_to_the_note() {
        let samples: Vec<f32> = (0..20 * S).map(|i| i as f32).collect();
        let (joined, timeline) = Timeline::join(&samples, &[S..3 * S, 10 * S..11 * S]);
        assert_eq!(joined.len(), 3 * S);
        assert_eq!(joined[2 * S], (10 * S) as f32);
        assert_eq!(timeline.in_note(0), S);
        assert_eq!(timeline.in_note(S), 2 * S);
        assert_eq!(timeline.in_note(2 * S), 10 * S, "the second stretch");
        assert_eq!(timeline.in_note(3 * S), 11 * S, "the end");
        assert_eq!(Timeline::whole(5 * S).in_note(4 * S), 4 * S);
    }
}
