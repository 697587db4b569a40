//! Audio decoding for transcription: the bytes of a voice note or audio file in, 16 kHz mono
//! `f32` samples (what whisper.cpp wants) out.
//!
//! Supported: Ogg/Opus (WhatsApp voice notes, decoded by libopus), MP3, AAC (ADTS `.aac` and
//! in MP4/M4A), WAV, FLAC and Ogg/Vorbis (decoded by symphonia). The format is detected from
//! the bytes; the MIME type is only a hint. AMR and anything else unknown is
//! [`AudioError::Unsupported`]; damaged data is [`AudioError::Corrupt`]; nothing panics
//! (a panic deep in a decoder is caught and reported as [`AudioError::Corrupt`]).
//!
//! Hostile input is bounded by [`DecodeLimits`]: the duration is checked while decoding, so
//! a small file that expands to hours of audio stops early with [`AudioError::TooLong`]; the
//! channel count and sample rate are checked before anything is sized from them; damaged
//! packets are skipped only up to a budget.
//!
//! Memory: the input is read in place (never copied whole); the output grows by 64 KB per
//! second of audio.
//!
//! ```no_run
//! use transcriber::audio::{decode, DecodeLimits};
//!
//! # fn example(bytes: &[u8]) -> Result<(), transcriber::audio::AudioError> {
//! let audio = decode(bytes, Some("audio/ogg; codecs=opus"), &DecodeLimits::default())?;
//! println!("{} s of {}", audio.duration.as_secs_f32(), audio.source_format);
//! # Ok(())
//! # }
//! ```

mod detect;
mod generic;
mod opus;
mod sink;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use sink::MonoSink;

/// The sample rate of [`DecodedAudio::samples`]: 16 kHz, as whisper.cpp expects.
pub const TARGET_SAMPLE_RATE: u32 = 16_000;

/// Bounds applied while decoding untrusted audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Longest audio accepted; decoding stops with [`AudioError::TooLong`] once the decoded
    /// audio exceeds it. Default: 15 minutes.
    pub max_duration: Duration,
    /// Most channels accepted (everything is mixed down to mono). Default: 8.
    pub max_channels: u16,
    /// How many damaged packets or pages are skipped before the file is declared
    /// [`AudioError::Corrupt`]. Default: 16.
    pub max_bad_packets: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_duration: Duration::from_secs(15 * 60),
            max_channels: 8,
            max_bad_packets: 16,
        }
    }
}

/// Decoded audio, ready for whisper.cpp.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Mono samples at [`TARGET_SAMPLE_RATE`] (16 kHz), within -1.0..=1.0 (NaN in float
    /// PCM becomes silence, louder samples are clipped).
    pub samples: Vec<f32>,
    /// The detected container/codec.
    pub source_format: AudioFormat,
    /// The stream's own sample rate in Hz (for Opus always 48000, its coding timebase).
    pub source_sample_rate: u32,
    /// The stream's channel count before the mix-down to mono.
    pub source_channels: u16,
    /// Duration of `samples`.
    pub duration: Duration,
}

/// The container/codec combinations [`decode`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AudioFormat {
    /// Opus in Ogg (`audio/ogg; codecs=opus`): WhatsApp voice notes.
    OggOpus,
    /// Vorbis in Ogg.
    OggVorbis,
    /// FLAC in Ogg.
    OggFlac,
    /// MPEG audio layer III (or I/II), optionally behind ID3 tags (`audio/mpeg`).
    Mp3,
    /// An MP4/M4A (ISO base media) file, normally holding AAC (`audio/mp4`).
    Mp4,
    /// Raw AAC in ADTS frames (`audio/aac`).
    Aac,
    /// RIFF WAVE (PCM, A-law, µ-law).
    Wav,
    /// Native FLAC.
    Flac,
}

impl fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OggOpus => "Ogg/Opus",
            Self::OggVorbis => "Ogg/Vorbis",
            Self::OggFlac => "Ogg/FLAC",
            Self::Mp3 => "MP3",
            Self::Mp4 => "MP4/M4A",
            Self::Aac => "AAC (ADTS)",
            Self::Wav => "WAV",
            Self::Flac => "FLAC",
        })
    }
}

/// Why audio could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// The input has no bytes, or no audio in it.
    #[error("the audio is empty")]
    Empty,
    /// A format (or a feature of one) that we do not decode, such as AMR.
    #[error("unsupported audio format: {format}{}", mime.as_deref().map(|m| format!(" (declared as {m:?})")).unwrap_or_default())]
    Unsupported {
        /// What was recognised, e.g. `"AMR"` or `"unrecognised data"`.
        format: String,
        /// The MIME type the sender declared, if any.
        mime: Option<String>,
    },
    /// Damaged, truncated or malformed data.
    #[error("corrupt audio: {0}")]
    Corrupt(String),
    /// The audio is longer than [`DecodeLimits::max_duration`].
    #[error("the audio is longer than the limit of {} s", limit.as_secs())]
    TooLong {
        /// The limit that was exceeded.
        limit: Duration,
    },
    /// A failure that is not the input's fault (a bug or resource problem).
    #[error("internal audio decoding error: {0}")]
    Internal(String),
}

/// Detects the format of `bytes` without decoding it (the MIME type is only a hint).
pub fn detect_format(bytes: &[u8], mime_hint: Option<&str>) -> Result<AudioFormat, AudioError> {
    detect::detect(bytes, mime_hint).map(|d| d.format)
}

/// Decodes `bytes` (a whole audio file, e.g. a WhatsApp voice note) to 16 kHz mono `f32`.
///
/// `mime_hint` is the MIME type the sender declared, used only to word errors for data that
/// is not recognised. Pass a `bytes::Bytes` as `&bytes`.
pub fn decode(
    bytes: &[u8],
    mime_hint: Option<&str>,
    limits: &DecodeLimits,
) -> Result<DecodedAudio, AudioError> {
    let detected = detect::detect(bytes, mime_hint)?;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        decode_detected(bytes, detected, limits)
    }));
    let mut decoded = outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        tracing::warn!(format = %detected.format, %message, "audio decoder panicked");
        Err(AudioError::Corrupt(format!(
            "the {} decoder failed on this data: {message}",
            detected.format
        )))
    });
    if let Err(AudioError::Unsupported { mime, .. }) = &mut decoded
        && mime.is_none()
    {
        *mime = mime_hint.map(str::to_owned);
    }
    decoded
}

fn decode_detected(
    bytes: &[u8],
    detected: detect::Detected,
    limits: &DecodeLimits,
) -> Result<DecodedAudio, AudioError> {
    let mut sink = MonoSink::new(limits.max_duration);
    let data = bytes.get(detected.offset..).unwrap_or_default();
    let info = match detected.format {
        AudioFormat::OggOpus => opus::decode(data, limits, &mut sink)?,
        format => generic::decode(data, format, limits, &mut sink)?,
    };
    let samples = sink.finish()?;
    if samples.is_empty() {
        return Err(AudioError::Empty);
    }
    let duration = Duration::from_secs_f64(samples.len() as f64 / f64::from(TARGET_SAMPLE_RATE));
    tracing::debug!(
        format = %detected.format,
        source_rate = info.sample_rate,
        source_channels = info.channels,
        seconds = duration.as_secs_f64(),
        "decoded audio"
    );
    Ok(DecodedAudio {
        samples,
        source_format: detected.format,
        source_sample_rate: info.sample_rate,
        source_channels: info.channels,
        duration,
    })
}

/// What a decoder reports about the stream it decoded.
#[derive(Debug, Clone, Copy)]
struct StreamInfo {
    sample_rate: u32,
    channels: u16,
}

/// Counts damaged packets/pages skipped; past the limit the file is corrupt.
struct BadPacketBudget {
    seen: u32,
    max: u32,
}

impl BadPacketBudget {
    fn new(max: u32) -> Self {
        Self { seen: 0, max }
    }

    fn record(&mut self, what: &str) -> Result<(), AudioError> {
        self.seen += 1;
        if self.seen > self.max {
            return Err(AudioError::Corrupt(format!(
                "more than {} damaged packets; the last: {what}",
                self.max
            )));
        }
        tracing::debug!(what, seen = self.seen, "dropped a damaged audio packet");
        Ok(())
    }
}
