//! Every format other than Ogg/Opus, with symphonia: MP3, AAC (ADTS and in MP4/M4A), WAV,
//! FLAC, Ogg/Vorbis and Ogg/FLAC.
//!
//! The format was already detected from the bytes, so the matching demuxer is built directly
//! (no probing that could guess differently), over a cursor on the caller's buffer: no copy
//! of the input is made.

use std::io::Cursor;

use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::default::formats::{
    AdtsReader, FlacReader, IsoMp4Reader, MpaReader, OggReader, WavReader,
};

use super::detect;
use super::sink::{MAX_SOURCE_RATE, MIN_SOURCE_RATE, MonoSink};
use super::{AudioError, AudioFormat, BadPacketBudget, DecodeLimits, StreamInfo};

/// No supported codec has packets anywhere near this long (FLAC's maximum block is 65535
/// frames); a header claiming more is hostile, and decoders size buffers from it.
const MAX_FRAMES_PER_PACKET: u64 = 1 << 18;

/// For raw frame streams (MP3, ADTS), whose readers skip anything that is not a frame, at
/// least this fraction of the bytes must be audio frames; otherwise the "file" is mostly
/// garbage with a valid frame or two, and is reported as corrupt.
const MIN_FRAME_FRACTION: f64 = 0.5;

/// Decodes `bytes` (already known to be `format`) into `sink`.
pub(crate) fn decode(
    bytes: &[u8],
    format: AudioFormat,
    limits: &DecodeLimits,
    sink: &mut MonoSink,
) -> Result<StreamInfo, AudioError> {
    // symphonia's MP3 reader ends quietly at a cut-off last frame; check for that first.
    if format == AudioFormat::Mp3 && detect::mpeg_audio_truncated(bytes) {
        return Err(AudioError::Corrupt(
            "truncated MP3 file (its last frame is cut off)".to_owned(),
        ));
    }
    let mut reader = open(bytes, format)?;
    let track = reader
        .default_track(TrackType::Audio)
        .ok_or_else(|| AudioError::Unsupported {
            format: format!("{format} without a supported audio track"),
            mime: None,
        })?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| AudioError::Unsupported {
            format: format!("{format} without a supported audio track"),
            mime: None,
        })?
        .clone();
    let mut info = check_params(&params, format, limits)?;
    let mut decoder = make_decoder(&params, format)?;

    let mut budget = BadPacketBudget::new(limits.max_bad_packets);
    let mut interleaved: Vec<f32> = Vec::new();
    let mut mono: Vec<f32> = Vec::new();
    let mut packet_bytes: usize = 0;
    let mut decoded_frames: u64 = 0;
    // "Unsupported" on one packet is usually damage (a corrupted bitstream can look like an
    // exotic feature); only if nothing at all decodes is the file unsupported.
    let mut unsupported: Option<&'static str> = None;
    loop {
        let packet = match reader.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A new chained stream (Ogg) begins: we stop at the end of the first.
            Err(SymphoniaError::ResetRequired) => break,
            Err(SymphoniaError::DecodeError(message)) => {
                budget.record(&format!("damaged {format} data: {message}"))?;
                continue;
            }
            Err(SymphoniaError::Unsupported(what)) => {
                record_unsupported(&mut budget, &mut unsupported, what, decoded_frames, format)?;
                continue;
            }
            Err(e) => return Err(demux_error(e, format)),
        };
        if packet.track_id != track_id {
            continue;
        }
        packet_bytes += packet.data.len();
        let buffer = match decoder.decode(&packet) {
            Ok(buffer) => buffer,
            Err(SymphoniaError::Unsupported(what)) => {
                record_unsupported(&mut budget, &mut unsupported, what, decoded_frames, format)?;
                continue;
            }
            Err(SymphoniaError::DecodeError(message)) => {
                budget.record(&format!("undecodable {format} packet: {message}"))?;
                continue;
            }
            Err(SymphoniaError::IoError(e)) => {
                budget.record(&format!("undecodable {format} packet: {e}"))?;
                continue;
            }
            Err(SymphoniaError::ResetRequired) => {
                decoder = make_decoder(&params, format)?;
                continue;
            }
            Err(e) => return Err(demux_error(e, format)),
        };
        if buffer.frames() == 0 {
            continue;
        }
        let channels = buffer.spec().channels().count();
        let rate = buffer.spec().rate();
        if channels == 0 {
            budget.record("decoded audio without channels")?;
            continue;
        }
        if channels > usize::from(limits.max_channels) {
            return Err(too_many_channels(format, channels, limits));
        }
        if info.sample_rate == 0 {
            info.sample_rate = rate;
        }
        if info.channels == 0 {
            info.channels = u16::try_from(channels).unwrap_or(u16::MAX);
        }
        decoded_frames += buffer.frames() as u64;
        buffer.copy_to_vec_interleaved(&mut interleaved);
        downmix(&interleaved, channels, &mut mono);
        sink.push(rate, &mono)?;
    }

    if matches!(format, AudioFormat::Mp3 | AudioFormat::Aac)
        && (packet_bytes as f64) < bytes.len() as f64 * MIN_FRAME_FRACTION
    {
        return Err(AudioError::Corrupt(format!(
            "only {packet_bytes} of {} bytes are {format} frames",
            bytes.len()
        )));
    }
    if decoded_frames == 0
        && let Some(what) = unsupported
    {
        return Err(AudioError::Unsupported {
            format: format!("{format} feature: {what}"),
            mime: None,
        });
    }
    Ok(info)
}

fn open<'a>(
    bytes: &'a [u8],
    format: AudioFormat,
) -> Result<Box<dyn FormatReader + 'a>, AudioError> {
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let options = FormatOptions::default();
    let reader: Result<Box<dyn FormatReader + 'a>, SymphoniaError> = match format {
        AudioFormat::Mp3 => MpaReader::try_new(source, options).map(|r| Box::new(r) as _),
        AudioFormat::Aac => AdtsReader::try_new(source, options).map(|r| Box::new(r) as _),
        AudioFormat::Mp4 => IsoMp4Reader::try_new(source, options).map(|r| Box::new(r) as _),
        AudioFormat::Wav => WavReader::try_new(source, options).map(|r| Box::new(r) as _),
        AudioFormat::Flac => FlacReader::try_new(source, options).map(|r| Box::new(r) as _),
        AudioFormat::OggVorbis | AudioFormat::OggFlac => {
            OggReader::try_new(source, options).map(|r| Box::new(r) as _)
        }
        AudioFormat::OggOpus => {
            return Err(AudioError::Internal(
                "Ogg/Opus is decoded by libopus, not symphonia".to_owned(),
            ));
        }
    };
    reader.map_err(|e| demux_error(e, format))
}

/// Sanity checks on header fields before anything is sized from them.
fn check_params(
    params: &AudioCodecParameters,
    format: AudioFormat,
    limits: &DecodeLimits,
) -> Result<StreamInfo, AudioError> {
    let channels = params.channels.as_ref().map_or(0, |c| c.count());
    if channels > usize::from(limits.max_channels) {
        return Err(too_many_channels(format, channels, limits));
    }
    let sample_rate = params.sample_rate.unwrap_or(0);
    if sample_rate != 0 && !(MIN_SOURCE_RATE..=MAX_SOURCE_RATE).contains(&sample_rate) {
        return Err(AudioError::Corrupt(format!(
            "{format} header claims an implausible sample rate of {sample_rate} Hz"
        )));
    }
    if params
        .max_frames_per_packet
        .is_some_and(|frames| frames > MAX_FRAMES_PER_PACKET)
    {
        return Err(AudioError::Corrupt(format!(
            "{format} header claims implausibly long packets"
        )));
    }
    Ok(StreamInfo {
        sample_rate,
        channels: u16::try_from(channels).unwrap_or(u16::MAX),
    })
}

/// Counts an "unsupported" error on one packet as damage; when the budget runs out before
/// anything decoded, the file really is unsupported.
fn record_unsupported(
    budget: &mut BadPacketBudget,
    first: &mut Option<&'static str>,
    what: &'static str,
    decoded_frames: u64,
    format: AudioFormat,
) -> Result<(), AudioError> {
    first.get_or_insert(what);
    budget
        .record(&format!("{format} data needs {what}"))
        .map_err(|e| {
            if decoded_frames == 0 {
                AudioError::Unsupported {
                    format: format!("{format} feature: {what}"),
                    mime: None,
                }
            } else {
                e
            }
        })
}

fn make_decoder(
    params: &AudioCodecParameters,
    format: AudioFormat,
) -> Result<Box<dyn AudioDecoder>, AudioError> {
    symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| match e {
            SymphoniaError::Unsupported(what) => AudioError::Unsupported {
                format: format!("{format} with codec {} ({what})", params.codec),
                mime: None,
            },
            other => demux_error(other, format),
        })
}

fn too_many_channels(format: AudioFormat, channels: usize, limits: &DecodeLimits) -> AudioError {
    AudioError::Unsupported {
        format: format!(
            "{format} with {channels} channels (limit {})",
            limits.max_channels
        ),
        mime: None,
    }
}

fn demux_error(e: SymphoniaError, format: AudioFormat) -> AudioError {
    match e {
        SymphoniaError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::Corrupt(format!("truncated {format} file"))
        }
        SymphoniaError::IoError(io) => AudioError::Corrupt(format!("invalid {format} file: {io}")),
        SymphoniaError::DecodeError(message) => {
            AudioError::Corrupt(format!("invalid {format} file: {message}"))
        }
        // symphonia also reports some structural damage ("missing moov atom", "missing data
        // chunk", ...) as unsupported; for a file whose magic matched, that is corruption.
        SymphoniaError::Unsupported(what)
            if what.contains("missing") || what.contains("not marked") =>
        {
            AudioError::Corrupt(format!("invalid {format} file: {what}"))
        }
        SymphoniaError::Unsupported(what) => AudioError::Unsupported {
            format: format!("{format} feature: {what}"),
            mime: None,
        },
        SymphoniaError::LimitError(what) => {
            AudioError::Corrupt(format!("{format} file exceeds a decoder limit: {what}"))
        }
        other => AudioError::Corrupt(format!("cannot read {format} file: {other}")),
    }
}

/// Averages interleaved `channels`-channel frames into `mono` (replacing its contents).
fn downmix(interleaved: &[f32], channels: usize, mono: &mut Vec<f32>) {
    mono.clear();
    if channels == 1 {
        mono.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channels as f32;
    mono.extend(
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * scale),
    );
}

#[cfg(test)]
mod tests {
    use super::downmix;

    #[test]
    fn downmix_averages_channels() {
        let mut mono = vec![9.0];
        downmix(&[1.0, 0.0, 0.5, 0.5, -1.0, 1.0], 2, &mut mono);
        assert_eq!(mono, vec![0.5, 0.5, 0.0]);
    }
}
