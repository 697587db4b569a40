//! Cutting long audio into chunks the encoder can take in one shrunk window.
//!
//! whisper.cpp encodes a long clip 30 s at a time, always a full window, and after each
//! window it moves on to where the decoder's last timestamp ended, so a 40 s note costs two
//! full windows of which the second is mostly padding. [`plan`] cuts the audio instead into
//! chunks of about equal length, none longer than the limit, each cut in the quietest stretch
//! near the ideal point (a pause between words, so no word is cut in two). Each chunk is
//! then transcribed with a window shrunk to its length.

use std::ops::Range;

/// Samples per energy frame: 10 ms at 16 kHz.
const FRAME: usize = 160;

/// Frames over which the energy is averaged to find a pause: 200 ms. A gap inside a word or
/// between two quickly spoken words is shorter, so the quietest 200 ms are a real pause.
const PAUSE_FRAMES: usize = 20;

/// Silence kept before the first sound and after the last one of a chunk: 200 ms.
const KEEP_FRAMES: usize = 20;

/// A frame is silent when its energy is 45 dB or more below the loudest frame of its chunk.
const SILENT_BELOW_LOUDEST: f64 = 3.2e-5;

/// The chunks of `samples` (at 16 kHz), in order, each at most `max_len` samples long.
///
/// Audio that fits in `max_len` is one chunk. Longer audio is cut into the fewest chunks
/// that fit, of about equal length: each cut lies between the earliest point that still
/// lets the rest fit and `max_len` after the chunk's start (never less than half of
/// `max_len`, so no chunk is tiny), at the middle of the quietest 200 ms of that stretch;
/// among stretches about as quiet as the quietest, the one nearest the ideal equal cut wins.
/// Each chunk then loses the silence at its ends but 200 ms (whisper places words badly
/// after a long silence at the start of its window, and encoding silence is wasted work),
/// so there may be gaps between chunks; a silent chunk becomes empty.
pub(crate) fn plan(samples: &[f32], max_len: usize) -> Vec<Range<usize>> {
    let len = samples.len();
    // Below two frames of pause there is nothing to choose from: cut evenly.
    let max_len = max_len.max(2 * PAUSE_FRAMES * FRAME);
    if len <= max_len {
        return std::iter::once(0..len).collect();
    }
    let energy = Energy::new(samples);
    let mut chunks = Vec::new();
    let mut start = 0;
    while len - start > max_len {
        let remaining = len - start;
        let pieces = remaining.div_ceil(max_len);
        let target = start + remaining / pieces;
        let earliest = (len - (pieces - 1) * max_len).max(start + max_len / 2);
        let latest = start + max_len;
        let cut = energy.quietest_cut(earliest..latest, target);
        chunks.push(start..cut);
        start = cut;
    }
    chunks.push(start..len);
    chunks
        .into_iter()
        .map(|chunk| energy.trim_silence(chunk))
        .collect()
}

/// Mean energy of 10 ms frames, with prefix sums for averages over longer stretches.
struct Energy {
    /// `prefix[i]` is the summed energy of frames `0..i`.
    prefix: Vec<f64>,
}

impl Energy {
    fn new(samples: &[f32]) -> Self {
        let mut prefix = Vec::with_capacity(samples.len() / FRAME + 1);
        prefix.push(0.0);
        let mut total = 0.0;
        for frame in samples.chunks(FRAME) {
            let power: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
            total += power / frame.len() as f64;
            prefix.push(total);
        }
        Self { prefix }
    }

    fn frames(&self) -> usize {
        self.prefix.len() - 1
    }

    /// Mean energy of the [`PAUSE_FRAMES`] frames starting at frame `first`.
    fn pause_energy(&self, first: usize) -> f64 {
        let end = (first + PAUSE_FRAMES).min(self.frames());
        let first = first.min(end);
        (self.prefix[end] - self.prefix[first]) / PAUSE_FRAMES as f64
    }

    /// Energy of frame `i`.
    fn frame(&self, i: usize) -> f64 {
        self.prefix[i + 1] - self.prefix[i]
    }

    /// `chunk` (sample indices) without the silence at its ends, but [`KEEP_FRAMES`].
    fn trim_silence(&self, chunk: Range<usize>) -> Range<usize> {
        // The frames inside the chunk (a partial frame at either end counts as outside).
        let frames = chunk.start.div_ceil(FRAME)..(chunk.end / FRAME).min(self.frames());
        let loudest = frames.clone().map(|i| self.frame(i)).fold(0.0f64, f64::max);
        let floor = loudest * SILENT_BELOW_LOUDEST;
        let mut sound = frames.filter(|&i| self.frame(i) > floor);
        let Some(first) = sound.next() else {
            return chunk.start..chunk.start;
        };
        let last = sound.next_back().unwrap_or(first);
        let start = (first.saturating_sub(KEEP_FRAMES) * FRAME).max(chunk.start);
        let end = ((last + 1 + KEEP_FRAMES) * FRAME).min(chunk.end);
        start..end
    }

    /// The sample index to cut at, in `range` (sample indices), near `target`.
    fn quietest_cut(&self, range: Range<usize>, target: usize) -> usize {
        // Candidate pauses: windows of PAUSE_FRAMES frames whose middle is in `range`.
        let half = PAUSE_FRAMES / 2;
        let first = (range.start.div_ceil(FRAME)).saturating_sub(half);
        let last = (range.end / FRAME).saturating_sub(half);
        let last = last.min(self.frames().saturating_sub(PAUSE_FRAMES));
        if first > last {
            return target.clamp(range.start, range.end);
        }
        let quietest = (first..=last)
            .map(|f| self.pause_energy(f))
            .fold(f64::INFINITY, f64::min);
        // "About as quiet": within twice the quietest, or digital silence. Speech is tens of
        // decibels louder than a pause, so this only ever groups pauses with pauses.
        let quiet_enough = quietest * 2.0 + 1e-9;
        let middle = |f: usize| (f + half) * FRAME;
        (first..=last)
            .filter(|&f| self.pause_energy(f) <= quiet_enough)
            .map(middle)
            .min_by_key(|&cut| cut.abs_diff(target))
            .unwrap_or(target)
            .clamp(range.start, range.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: usize = 16_000;

    /// `seconds` of a 200 Hz tone ("speech") at amplitude 0.3.
    fn tone(seconds: f64) -> Vec<f32> {
        let n = (seconds * RATE as f64) as usize;
        (0..n)
            .map(|i| 0.3 * (i as f32 * 200.0 * std::f32::consts::TAU / RATE as f32).sin())
            .collect()
    }

    fn silence(seconds: f64) -> Vec<f32> {
        vec![0.0; (seconds * RATE as f64) as usize]
    }

    fn concat(parts: &[Vec<f32>]) -> Vec<f32> {
        parts.concat()
    }

    /// The chunks are in order, within the limit, and leave out nothing but silence.
    fn assert_covers(chunks: &[Range<usize>], audio: &[f32], max_len: usize) {
        let mut covered = 0;
        for c in chunks {
            assert!(c.start >= covered && c.len() <= max_len, "{chunks:?}");
            assert!(
                audio[covered..c.start].iter().all(|s| *s == 0.0),
                "sound left out before {c:?}: {chunks:?}"
            );
            covered = c.end;
        }
        assert!(audio[covered..].iter().all(|s| *s == 0.0), "{chunks:?}");
    }

    #[test]
    fn short_audio_is_one_chunk() {
        let audio = tone(10.0);
        assert_eq!(plan(&audio, 28 * RATE), vec![0..audio.len()]);
        assert_eq!(plan(&[], 28 * RATE), vec![0..0]);
    }

    #[test]
    fn cuts_fall_in_the_pause_nearest_the_middle() {
        // 40 s: speech with pauses at 12 s, 19 s and 25 s (400 ms each). Two chunks of at
        // most 28 s; the ideal cut is at 20 s, so the 19 s pause wins.
        let audio = concat(&[
            tone(12.0),
            silence(0.4),
            tone(6.6),
            silence(0.4),
            tone(5.6),
            silence(0.4),
            tone(14.6),
        ]);
        let max_len = 28 * RATE;
        let chunks = plan(&audio, max_len);
        assert_covers(&chunks, &audio, max_len);
        assert_eq!(chunks.len(), 2, "{chunks:?}");
        let cut = chunks[0].end as f64 / RATE as f64;
        assert!((19.0..19.4).contains(&cut), "cut at {cut} s");
    }

    #[test]
    fn a_quiet_pause_beats_a_louder_one_nearer_the_middle() {
        // The pause at 20 s is only a dip (speech at a tenth of the level), the one at 16 s
        // is silent: the cut goes to 16 s.
        let mut dip = tone(0.4);
        dip.iter_mut().for_each(|s| *s *= 0.1);
        let audio = concat(&[tone(16.0), silence(0.4), tone(3.6), dip, tone(19.6)]);
        let chunks = plan(&audio, 28 * RATE);
        assert_eq!(chunks.len(), 2, "{chunks:?}");
        let cut = chunks[0].end as f64 / RATE as f64;
        assert!((16.0..16.4).contains(&cut), "cut at {cut} s");
    }

    #[test]
    fn long_audio_without_pauses_is_cut_evenly_within_the_limit() {
        for seconds in [28.5, 40.0, 57.0, 90.0, 181.0] {
            let audio = tone(seconds);
            let max_len = 28 * RATE;
            let chunks = plan(&audio, max_len);
            assert_covers(&chunks, &audio, max_len);
            let expected = audio.len().div_ceil(max_len);
            assert_eq!(chunks.len(), expected, "{seconds} s: {chunks:?}");
            for c in &chunks {
                assert!(c.len() >= max_len / 2, "{seconds} s: {chunks:?}");
            }
        }
    }

    #[test]
    fn long_silences_at_the_ends_of_chunks_are_dropped() {
        // 10 s of speech, 12 s of silence, 8 s of speech: two chunks of at most 20 s, cut
        // in the silence, which each chunk keeps only 200 ms of.
        let audio = concat(&[tone(10.0), silence(12.0), tone(8.0)]);
        let chunks = plan(&audio, 20 * RATE);
        assert_eq!(chunks.len(), 2, "{chunks:?}");
        let secs = |i: usize| i as f64 / RATE as f64;
        assert_eq!(chunks[0].start, 0);
        assert!((10.1..=10.3).contains(&secs(chunks[0].end)), "{chunks:?}");
        assert!((21.7..=21.9).contains(&secs(chunks[1].start)), "{chunks:?}");
        assert_eq!(chunks[1].end, audio.len());

        // A chunk of nothing but silence is empty.
        let audio = concat(&[tone(10.0), silence(30.0)]);
        let chunks = plan(&audio, 20 * RATE);
        assert!(chunks.iter().any(|c| c.is_empty()), "{chunks:?}");
        assert!(chunks.iter().all(|c| c.len() <= 20 * RATE), "{chunks:?}");
    }

    #[test]
    fn many_pauses_give_the_fewest_chunks() {
        // 95 s of 1 s words and 300 ms pauses, 20 s chunks: five chunks.
        let mut parts = Vec::new();
        while parts.iter().map(Vec::len).sum::<usize>() < 95 * RATE {
            parts.push(tone(1.0));
            parts.push(silence(0.3));
        }
        let audio = concat(&parts);
        let max_len = 20 * RATE;
        let chunks = plan(&audio, max_len);
        assert_covers(&chunks, &audio, max_len);
        assert_eq!(chunks.len(), audio.len().div_ceil(max_len), "{chunks:?}");
        // Every cut is inside a pause: the chunks start (less than 200 ms) before a word.
        for c in &chunks[1..] {
            let before = &audio[c.start.saturating_sub(800)..c.start];
            assert!(before.iter().all(|s| *s == 0.0), "cut at {}", c.start);
        }
    }
}
