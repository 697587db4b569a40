//! The common back end of every decoder: mono samples at the source rate go in, 16 kHz mono
//! comes out, resampled as the audio streams through, with the duration limit checked on
//! every push.

use std::time::Duration;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

use super::{AudioError, TARGET_SAMPLE_RATE};

/// Lowest and highest source sample rates we accept. Outside this range a header is lying
/// (and an absurd rate would make the resampler allocate huge FFT buffers).
pub(crate) const MIN_SOURCE_RATE: u32 = 4_000;
/// See [`MIN_SOURCE_RATE`].
pub(crate) const MAX_SOURCE_RATE: u32 = 384_000;

/// A stream may switch sample rate (MP3 allows it per frame). Each switch builds a new
/// resampler, so a hostile file flipping rates every frame is cut off after this many.
const MAX_RATE_CHANGES: u32 = 16;

/// Source frames fed to the FFT resampler per call.
const CHUNK_FRAMES: usize = 4096;
/// Target FFT block length (input frames). Longer blocks put the anti-aliasing cutoff
/// closer to 8 kHz; 1024 at 48 kHz gives a cutoff at about 7.3 kHz, plenty for speech.
const FFT_BLOCK_FRAMES: usize = 1024;

/// Collects mono audio at any sample rate and produces 16 kHz mono `f32` samples.
pub(crate) struct MonoSink {
    max_duration: Duration,
    out: Vec<f32>,
    /// Duration of the input of segments already finished (a segment = a run at one rate).
    finished_input: Duration,
    segment: Option<Segment>,
    rate_changes: u32,
}

/// A run of input at one sample rate.
struct Segment {
    rate: u32,
    frames_in: u64,
    /// Index into the output where this segment's samples start.
    out_start: usize,
    /// `None` when the input already is at 16 kHz.
    resampler: Option<SegmentResampler>,
}

struct SegmentResampler {
    core: ResamplerCore,
    /// Input not yet consumed by the resampler (less than one chunk between calls).
    pending: Vec<f32>,
}

struct ResamplerCore {
    fft: Fft<f32>,
    /// Scratch for one call's output.
    scratch: Vec<f32>,
    /// Output frames still to drop: the resampler's start-up delay.
    to_trim: usize,
}

impl MonoSink {
    pub(crate) fn new(max_duration: Duration) -> Self {
        Self {
            max_duration,
            out: Vec::new(),
            finished_input: Duration::ZERO,
            segment: None,
            rate_changes: 0,
        }
    }

    /// Appends `samples` (mono, at `rate` Hz).
    ///
    /// Fails with [`AudioError::TooLong`] as soon as the input so far exceeds the limit.
    pub(crate) fn push(&mut self, rate: u32, samples: &[f32]) -> Result<(), AudioError> {
        if samples.is_empty() {
            return Ok(());
        }
        // Float PCM (a WAV, a decoder's overshoot) can hold NaN, infinities or absurd
        // values, which would poison the resampler's FFT and whisper's features: NaN becomes
        // silence, everything else is clipped to full scale.
        let clipped: Vec<f32>;
        let samples = if samples.iter().all(|s| s.abs() <= 1.0) {
            samples
        } else {
            clipped = samples
                .iter()
                .map(|&s| if s.is_nan() { 0.0 } else { s.clamp(-1.0, 1.0) })
                .collect();
            &clipped
        };
        if self.segment.as_ref().is_none_or(|s| s.rate != rate) {
            self.start_segment(rate)?;
        }
        let Some(segment) = self.segment.as_mut() else {
            return Err(AudioError::Internal("no active audio segment".to_owned()));
        };

        let frames_in = segment.frames_in + samples.len() as u64;
        let total = self.finished_input + frames_to_duration(frames_in, rate);
        if total > self.max_duration {
            return Err(AudioError::TooLong {
                limit: self.max_duration,
            });
        }
        segment.frames_in = frames_in;

        match segment.resampler.as_mut() {
            None => self.out.extend_from_slice(samples),
            Some(resampler) => resampler.push(samples, &mut self.out)?,
        }
        Ok(())
    }

    /// Flushes the resampler and returns the 16 kHz output.
    pub(crate) fn finish(mut self) -> Result<Vec<f32>, AudioError> {
        self.finish_segment()?;
        // Resampling full-scale input can overshoot a little (filter ringing).
        for sample in &mut self.out {
            *sample = sample.clamp(-1.0, 1.0);
        }
        Ok(self.out)
    }

    fn start_segment(&mut self, rate: u32) -> Result<(), AudioError> {
        if !(MIN_SOURCE_RATE..=MAX_SOURCE_RATE).contains(&rate) {
            return Err(AudioError::Corrupt(format!(
                "implausible sample rate {rate} Hz"
            )));
        }
        if self.segment.is_some() {
            self.rate_changes += 1;
            if self.rate_changes > MAX_RATE_CHANGES {
                return Err(AudioError::Corrupt(format!(
                    "the sample rate changes more than {MAX_RATE_CHANGES} times"
                )));
            }
            self.finish_segment()?;
        }
        let resampler = if rate == TARGET_SAMPLE_RATE {
            None
        } else {
            Some(SegmentResampler::new(rate)?)
        };
        self.segment = Some(Segment {
            rate,
            frames_in: 0,
            out_start: self.out.len(),
            resampler,
        });
        Ok(())
    }

    fn finish_segment(&mut self) -> Result<(), AudioError> {
        let Some(segment) = self.segment.take() else {
            return Ok(());
        };
        self.finished_input += frames_to_duration(segment.frames_in, segment.rate);
        if let Some(mut resampler) = segment.resampler {
            // The exact number of 16 kHz samples this segment stands for.
            let expected = (u128::from(segment.frames_in) * u128::from(TARGET_SAMPLE_RATE)
                + u128::from(segment.rate / 2))
                / u128::from(segment.rate);
            let expected = usize::try_from(expected)
                .map_err(|_| AudioError::Internal("output length overflow".to_owned()))?;
            resampler.flush(&mut self.out, segment.out_start, expected)?;
            self.out.truncate(segment.out_start + expected);
        }
        Ok(())
    }
}

impl SegmentResampler {
    fn new(rate: u32) -> Result<Self, AudioError> {
        let rate_in = rate as usize;
        let sub_chunks = (CHUNK_FRAMES / FFT_BLOCK_FRAMES).max(1);
        let fft = Fft::<f32>::new_custom(
            rate_in,
            TARGET_SAMPLE_RATE as usize,
            CHUNK_FRAMES,
            sub_chunks,
            1,
            rubato::WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .map_err(|e| AudioError::Internal(format!("cannot set up the resampler: {e}")))?;
        let to_trim = fft.output_delay();
        let scratch = vec![0.0; fft.output_frames_max()];
        Ok(Self {
            pending: Vec::with_capacity(fft.input_frames_max() * 2),
            core: ResamplerCore {
                fft,
                scratch,
                to_trim,
            },
        })
    }

    fn push(&mut self, samples: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        self.pending.extend_from_slice(samples);
        let mut consumed = 0;
        loop {
            let need = self.core.fft.input_frames_next();
            if self.pending.len() - consumed < need {
                break;
            }
            let input = &self.pending[consumed..consumed + need];
            consumed += self.core.run(input, None, out)?;
        }
        self.pending.drain(..consumed);
        Ok(())
    }

    /// Feeds what is left, then silence until `expected` samples (after the start-up delay)
    /// exist from `out_start` on.
    fn flush(
        &mut self,
        out: &mut Vec<f32>,
        out_start: usize,
        expected: usize,
    ) -> Result<(), AudioError> {
        let pending = std::mem::take(&mut self.pending);
        if !pending.is_empty() {
            let indexing = Indexing::new().partial_len(pending.len());
            self.core.run(&pending, Some(&indexing), out)?;
        }
        let silence = Indexing::new().partial_len(0);
        // Each call yields at least one FFT block of output, so this ends; the bound is a
        // safety net against a resampler that stops producing.
        let mut guard = 0;
        while out.len() - out_start < expected {
            let produced_before = out.len();
            self.core.run(&[], Some(&silence), out)?;
            if out.len() == produced_before {
                guard += 1;
                if guard > 64 {
                    return Err(AudioError::Internal(
                        "the resampler stopped producing output".to_owned(),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl ResamplerCore {
    /// One resampler call; returns the number of input frames consumed.
    fn run(
        &mut self,
        input: &[f32],
        indexing: Option<&Indexing>,
        out: &mut Vec<f32>,
    ) -> Result<usize, AudioError> {
        let out_frames = self.fft.output_frames_next();
        if self.scratch.len() < out_frames {
            self.scratch.resize(out_frames, 0.0);
        }
        let resample_err =
            |e: &dyn std::fmt::Display| AudioError::Internal(format!("resampler: {e}"));
        let input = InterleavedSlice::new(input, 1, input.len()).map_err(|e| resample_err(&e))?;
        let mut output = InterleavedSlice::new_mut(&mut self.scratch[..out_frames], 1, out_frames)
            .map_err(|e| resample_err(&e))?;
        let (frames_in, frames_out) = self
            .fft
            .process_into_buffer(&input, &mut output, indexing)
            .map_err(|e| resample_err(&e))?;
        let produced = &self.scratch[..frames_out];
        let skip = self.to_trim.min(produced.len());
        self.to_trim -= skip;
        out.extend_from_slice(&produced[skip..]);
        Ok(frames_in)
    }
}

fn frames_to_duration(frames: u64, rate: u32) -> Duration {
    let rate = u64::from(rate.max(1));
    Duration::from_secs(frames / rate)
        + Duration::from_nanos((frames % rate) * 1_000_000_000 / rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::TAU;

    fn sine(rate: u32, freq: f32, frames: usize) -> Vec<f32> {
        (0..frames)
            .map(|n| 0.5 * (TAU * freq * n as f32 / rate as f32).sin())
            .collect()
    }

    /// Feeding in odd-sized pieces gives exactly the expected length, aligned in time.
    #[test]
    fn resamples_48k_to_16k_in_pieces() -> Result<(), AudioError> {
        let input = sine(48_000, 440.0, 48_000 + 77);
        let mut sink = MonoSink::new(Duration::from_secs(10));
        for piece in input.chunks(997) {
            sink.push(48_000, piece)?;
        }
        let out = sink.finish()?;
        assert_eq!(out.len(), (48_077 * 16 + 24) / 48);
        // No delay: sample n must match the ideal 16 kHz sine (away from the edges).
        let ideal = sine(16_000, 440.0, out.len());
        let err = out[800..out.len() - 800]
            .iter()
            .zip(&ideal[800..])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 0.01, "max error {err}");
        Ok(())
    }

    #[test]
    fn passes_16k_through_and_handles_rate_changes() -> Result<(), AudioError> {
        let mut sink = MonoSink::new(Duration::from_secs(10));
        sink.push(16_000, &[0.25; 1600])?;
        sink.push(44_100, &sine(44_100, 300.0, 4410))?;
        let out = sink.finish()?;
        assert_eq!(out.len(), 1600 + 1600);
        assert!(out[..1600].iter().all(|&s| s == 0.25));
        Ok(())
    }

    #[test]
    fn stops_at_the_duration_limit() {
        let mut sink = MonoSink::new(Duration::from_millis(500));
        let second = vec![0.0f32; 8_000];
        assert!(sink.push(16_000, &second).is_ok());
        assert!(matches!(
            sink.push(16_000, &second),
            Err(AudioError::TooLong { .. })
        ));
    }

    #[test]
    fn non_finite_and_out_of_range_samples_are_silenced_or_clipped() -> Result<(), AudioError> {
        let hostile = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            3.0e38,
            -2.0,
            0.25,
        ];
        let mut direct = MonoSink::new(Duration::from_secs(1));
        direct.push(16_000, &hostile)?;
        assert_eq!(direct.finish()?, vec![0.0, 1.0, -1.0, 1.0, -1.0, 0.25]);

        let mut resampled = MonoSink::new(Duration::from_secs(1));
        for _ in 0..100 {
            resampled.push(44_100, &hostile)?;
        }
        let out = resampled.finish()?;
        assert_eq!(out.len(), (600 * 16_000 + 22_050) / 44_100);
        assert!(out.iter().all(|s| s.is_finite() && s.abs() <= 1.0));
        Ok(())
    }

    #[test]
    fn rejects_absurd_rates() {
        let mut sink = MonoSink::new(Duration::from_secs(1));
        assert!(matches!(
            sink.push(4_000_000_000, &[0.0]),
            Err(AudioError::Corrupt(_))
        ));
    }
}
