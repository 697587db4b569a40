//! Ogg/Opus (RFC 7845) — WhatsApp voice notes — with the `ogg` demuxer and libopus.
//!
//! libopus (bundled by `opusic-sys`, built with cmake and linked statically) decodes straight
//! to mono: for a stereo stream it mixes the channels itself, with CELT's phase inversion
//! disabled, which a plain average of decoded left and right would not undo. It decodes at
//! 48 kHz, Opus' native rate, and the shared resampler takes it to 16 kHz.

use std::io::{Cursor, SeekFrom};

use ogg::{OggReadError, PacketReader};

use super::sink::MonoSink;
use super::{AudioError, BadPacketBudget, DecodeLimits, StreamInfo};

/// The rate libopus decodes at: 48 kHz, Opus' own timebase, so that the result matches the
/// reference decoder's full-band output exactly before our resampler band-limits it to 8 kHz.
/// (libopus could render at 16 kHz itself, about 1.5x faster overall, but its 16 kHz output is
/// offset by a fraction of a sample and differs from the 48 kHz rendering by ~15 dB SNR;
/// decoding is far faster than transcription either way.)
pub(crate) const OPUS_DECODE_RATE: u32 = 48_000;

/// Opus' granule positions and pre-skip are always counted at 48 kHz.
const OPUS_GRANULE_RATE: u32 = 48_000;

/// The longest Opus packet lasts 120 ms.
const MAX_PACKET_FRAMES: usize = (OPUS_DECODE_RATE as usize) * 120 / 1000;

/// What the identification header (`OpusHead`) tells us.
#[derive(Debug, Clone, Copy)]
struct OpusHead {
    channels: u8,
    pre_skip: u16,
    /// Q7.8 dB, to be applied to the decoded output.
    output_gain: i16,
}

/// Decodes an Ogg/Opus file into `sink`. Only the first Opus logical stream is decoded.
pub(crate) fn decode(
    bytes: &[u8],
    limits: &DecodeLimits,
    sink: &mut MonoSink,
) -> Result<StreamInfo, AudioError> {
    let mut reader = PacketReader::new(Cursor::new(bytes));
    let mut budget = BadPacketBudget::new(limits.max_bad_packets);

    // The first packet of the first page is the identification header.
    let first = reader
        .read_packet()
        .map_err(|e| ogg_fatal(&e))?
        .ok_or_else(|| AudioError::Corrupt("Ogg file without any packet".to_owned()))?;
    let head = parse_opus_head(&first.data)?;
    let serial = first.stream_serial();
    if u16::from(head.channels) > limits.max_channels {
        return Err(AudioError::Unsupported {
            format: format!(
                "Ogg/Opus with {} channels (limit {})",
                head.channels, limits.max_channels
            ),
            mime: None,
        });
    }

    // Mono output: libopus downmixes stereo streams itself.
    let mut decoder = opus::Decoder::new(OPUS_DECODE_RATE, opus::Channels::Mono)
        .map_err(|e| AudioError::Internal(format!("cannot create the Opus decoder: {e}")))?;
    if head.output_gain != 0 {
        decoder
            .set_gain(i32::from(head.output_gain))
            .map_err(|e| AudioError::Corrupt(format!("invalid Opus output gain: {e}")))?;
    }

    let rate_div = u64::from(OPUS_GRANULE_RATE / OPUS_DECODE_RATE);
    let pre_skip = u64::from(head.pre_skip);
    let mut skip_left = usize::from(head.pre_skip).div_ceil(rate_div as usize);
    let mut emitted: u64 = 0; // output samples (at the decode rate) handed to the sink
    let mut page_pcm: Vec<f32> = Vec::new();
    let mut frame = vec![0.0f32; MAX_PACKET_FRAMES];
    let mut seen_tags = false;
    let mut ended = false;

    loop {
        let packet = match reader.read_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(e) if is_recoverable(&e) => {
                budget.record(&format!("damaged Ogg page: {e}"))?;
                // Forget the partial packet state and carry on with the next page.
                reader
                    .seek_bytes(SeekFrom::Current(0))
                    .map_err(|e| AudioError::Internal(format!("Ogg reader: {e}")))?;
                continue;
            }
            Err(e) => return Err(ogg_fatal(&e)),
        };
        if packet.stream_serial() != serial {
            // Another logical stream (e.g. multiplexed metadata): not ours.
            continue;
        }
        if !seen_tags {
            // The second packet is the comment header (OpusTags); nothing in it matters here.
            seen_tags = true;
            if !packet.data.starts_with(b"OpusTags") {
                budget.record("missing OpusTags header")?;
            }
            continue;
        }

        match decode_packet(&mut decoder, &packet.data, &mut frame) {
            Ok(frames) => page_pcm.extend_from_slice(&frame[..frames]),
            Err(message) => budget.record(&message)?,
        }

        if packet.last_in_page() || packet.last_in_stream() {
            // Start trimming (pre-skip) ...
            let skip = skip_left.min(page_pcm.len());
            skip_left -= skip;
            let mut keep = &page_pcm[skip..];
            // ... and end trimming: the last page's granule position says how many samples
            // (at 48 kHz, including the pre-skip) the stream really has.
            if packet.last_in_stream() && packet.absgp_page() != u64::MAX {
                let total = packet.absgp_page().saturating_sub(pre_skip) / rate_div;
                let allowed = total.saturating_sub(emitted);
                let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
                keep = &keep[..keep.len().min(allowed)];
            }
            sink.push(OPUS_DECODE_RATE, keep)?;
            emitted += keep.len() as u64;
            page_pcm.clear();
            if packet.last_in_stream() {
                // Chained streams after the end of ours are ignored.
                ended = true;
                break;
            }
        }
    }
    if !ended {
        // The file stops at a page boundary (or trailing junk) without the end-of-stream
        // page. With audio decoded, that audio is usable; with none, the file is damaged.
        let skip = skip_left.min(page_pcm.len());
        let rest = &page_pcm[skip..];
        if emitted == 0 && rest.is_empty() {
            return Err(AudioError::Corrupt(
                "Ogg/Opus file ends before any audio (truncated or damaged)".to_owned(),
            ));
        }
        tracing::warn!("Ogg/Opus stream has no end-of-stream page; decoding what is there");
        sink.push(OPUS_DECODE_RATE, rest)?;
    }

    Ok(StreamInfo {
        sample_rate: OPUS_GRANULE_RATE,
        channels: u16::from(head.channels),
    })
}

/// Decodes one packet to mono; returns the number of samples written to `frame`.
fn decode_packet(
    decoder: &mut opus::Decoder,
    data: &[u8],
    frame: &mut [f32],
) -> Result<usize, String> {
    if data.is_empty() {
        // A zero-byte packet is invalid (every Opus packet has a TOC byte), and libopus would
        // take it as a request for packet-loss concealment of a whole buffer.
        return Err("empty Opus packet".to_owned());
    }
    decoder
        .decode_float(data, frame, false)
        .map_err(|e| format!("undecodable Opus packet: {e}"))
        .map(|frames| frames.min(frame.len()))
}

fn parse_opus_head(data: &[u8]) -> Result<OpusHead, AudioError> {
    if data.len() < 19 || !data.starts_with(b"OpusHead") {
        return Err(AudioError::Corrupt(
            "the first Ogg packet is not a valid OpusHead".to_owned(),
        ));
    }
    let version = data[8];
    if version >> 4 != 0 {
        return Err(AudioError::Unsupported {
            format: format!("Ogg/Opus header version {version}"),
            mime: None,
        });
    }
    let channels = data[9];
    let pre_skip = u16::from_le_bytes([data[10], data[11]]);
    let output_gain = i16::from_le_bytes([data[16], data[17]]);
    let mapping_family = data[18];
    if channels == 0 {
        return Err(AudioError::Corrupt(
            "Opus stream with 0 channels".to_owned(),
        ));
    }
    match mapping_family {
        0 if channels <= 2 => {}
        0 => {
            return Err(AudioError::Corrupt(format!(
                "Opus mapping family 0 with {channels} channels"
            )));
        }
        _ => {
            // Families 1/255 describe several Opus streams in one packet. We decode a single
            // stream only, which covers mono and stereo files written this way.
            let (streams, coupled) = match (data.get(19), data.get(20)) {
                (Some(&s), Some(&c)) => (s, c),
                _ => {
                    return Err(AudioError::Corrupt(
                        "truncated Opus channel mapping table".to_owned(),
                    ));
                }
            };
            if streams != 1 || channels > 2 || coupled > 1 {
                return Err(AudioError::Unsupported {
                    format: format!(
                        "multichannel Opus ({channels} channels in {streams} streams, \
                         mapping family {mapping_family})"
                    ),
                    mime: None,
                });
            }
        }
    }
    Ok(OpusHead {
        channels,
        pre_skip,
        output_gain,
    })
}

/// Damage confined to one page: skip it and resynchronise on the next one.
fn is_recoverable(e: &OggReadError) -> bool {
    matches!(
        e,
        OggReadError::HashMismatch(..)
            | OggReadError::InvalidData
            | OggReadError::InvalidStreamStructVer(_)
    )
}

fn ogg_fatal(e: &OggReadError) -> AudioError {
    match e {
        OggReadError::ReadError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::Corrupt("truncated Ogg file (ends in the middle of a page)".to_owned())
        }
        other => AudioError::Corrupt(format!("invalid Ogg data: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(channels: u8, family: u8, extra: &[u8]) -> Vec<u8> {
        let mut h = b"OpusHead".to_vec();
        h.push(1);
        h.push(channels);
        h.extend_from_slice(&312u16.to_le_bytes());
        h.extend_from_slice(&48_000u32.to_le_bytes());
        h.extend_from_slice(&(-256i16).to_le_bytes());
        h.push(family);
        h.extend_from_slice(extra);
        h
    }

    #[test]
    fn parses_opus_head() -> Result<(), AudioError> {
        let parsed = parse_opus_head(&head(2, 0, &[]))?;
        assert_eq!(parsed.channels, 2);
        assert_eq!(parsed.pre_skip, 312);
        assert_eq!(parsed.output_gain, -256);
        assert!(parse_opus_head(&head(1, 1, &[1, 0, 0])).is_ok());
        Ok(())
    }

    #[test]
    fn rejects_bad_or_multichannel_heads() {
        assert!(matches!(
            parse_opus_head(b"OpusHead\x01"),
            Err(AudioError::Corrupt(_))
        ));
        assert!(matches!(
            parse_opus_head(&head(0, 0, &[])),
            Err(AudioError::Corrupt(_))
        ));
        assert!(matches!(
            parse_opus_head(&head(6, 1, &[4, 2, 0, 4, 1, 2, 3, 5])),
            Err(AudioError::Unsupported { .. })
        ));
        assert!(matches!(
            parse_opus_head(&head(2, 1, &[])),
            Err(AudioError::Corrupt(_))
        ));
    }
}
