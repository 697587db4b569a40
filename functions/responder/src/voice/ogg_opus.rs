//! Speech to an Ogg/Opus voice note, as WhatsApp plays one: mono Opus (libopus, the
//! build the transcriber decodes with) in an Ogg stream with its `OpusHead` (the
//! encoder's look-ahead as pre-skip) and `OpusTags` pages, and granule positions in
//! 48 kHz samples that end exactly at the speech's end (RFC 7845).

use opus::{Application, Bitrate, Channels, Encoder};
use thiserror::Error;

/// The rate the speech is encoded at (Opus takes 8, 12, 16, 24 or 48 kHz).
pub const ENCODE_RATE: u32 = 24_000;
/// 20 ms frames.
const FRAME: usize = ENCODE_RATE as usize / 50;
/// Granule positions count 48 kHz samples whatever the input rate.
const GRANULE_PER_SAMPLE: u64 = (48_000 / ENCODE_RATE) as u64;
/// The stream's serial number (one stream per file).
const SERIAL: u32 = 0x5245_4d44;

/// Why speech could not be encoded.
#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("the Opus encoder failed: {0}")]
    Opus(#[from] opus::Error),
    #[error("writing the Ogg stream failed: {0}")]
    Ogg(#[from] std::io::Error),
}

/// `samples` (mono, [`ENCODE_RATE`], -1 to 1) as an Ogg/Opus file at `bitrate` bits a
/// second.
pub fn encode(samples: &[f32], bitrate: i32) -> Result<Vec<u8>, EncodeError> {
    let mut encoder = Encoder::new(ENCODE_RATE, Channels::Mono, Application::Voip)?;
    encoder.set_bitrate(Bitrate::Bits(bitrate))?;
    let lookahead = u64::try_from(encoder.get_lookahead()?).unwrap_or(0);
    let pre_skip = lookahead * GRANULE_PER_SAMPLE;
    let mut out = Vec::new();
    {
        let mut writer = ogg::writing::PacketWriter::new(&mut out);
        writer.write_packet(
            opus_head(pre_skip as u16),
            SERIAL,
            ogg::writing::PacketWriteEndInfo::EndPage,
            0,
        )?;
        writer.write_packet(
            opus_tags(),
            SERIAL,
            ogg::writing::PacketWriteEndInfo::EndPage,
            0,
        )?;
        // The encoder's look-ahead delays the speech: feed that much silence after it so
        // its end is encoded, and end the stream's granule at the speech's end.
        let total = samples.len() + lookahead as usize;
        let frames = total.div_ceil(FRAME).max(1);
        let end_granule = pre_skip + samples.len() as u64 * GRANULE_PER_SAMPLE;
        let mut frame = vec![0f32; FRAME];
        let mut packet = vec![0u8; 4000];
        for n in 0..frames {
            let start = n * FRAME;
            for (i, slot) in frame.iter_mut().enumerate() {
                *slot = samples.get(start + i).copied().unwrap_or(0.0);
            }
            let len = encoder.encode_float(&frame, &mut packet)?;
            let last = n + 1 == frames;
            let granule = if last {
                end_granule
            } else {
                ((n + 1) * FRAME) as u64 * GRANULE_PER_SAMPLE
            };
            writer.write_packet(
                packet[..len].to_vec(),
                SERIAL,
                if last {
                    ogg::writing::PacketWriteEndInfo::EndStream
                } else {
                    ogg::writing::PacketWriteEndInfo::NormalPacket
                },
                granule,
            )?;
        }
    }
    Ok(out)
}

fn opus_head(pre_skip: u16) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(1); // channels
    head.extend(pre_skip.to_le_bytes());
    head.extend(ENCODE_RATE.to_le_bytes());
    head.extend(0i16.to_le_bytes()); // output gain
    head.push(0); // mapping family: mono or stereo
    head
}

fn opus_tags() -> Vec<u8> {
    let vendor = b"remedios";
    let mut tags = b"OpusTags".to_vec();
    tags.extend((vendor.len() as u32).to_le_bytes());
    tags.extend(vendor);
    tags.extend(0u32.to_le_bytes()); // no comments
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_of_tone_is_an_ogg_opus_stream_that_ends_at_its_last_sample() {
        let tone: Vec<f32> = (0..ENCODE_RATE as usize)
            .map(|n| 0.3 * (n as f32 * 440.0 * std::f32::consts::TAU / ENCODE_RATE as f32).sin())
            .collect();
        let file = encode(&tone, 24_000).expect("encoded");
        assert!(file.starts_with(b"OggS"));
        let mut reader = ogg::reading::PacketReader::new(std::io::Cursor::new(&file));
        let head = reader.read_packet_expected().expect("head");
        assert!(head.data.starts_with(b"OpusHead"));
        let pre_skip = u16::from_le_bytes([head.data[10], head.data[11]]) as u64;
        assert!(pre_skip > 0, "the encoder's look-ahead is skipped");
        let tags = reader.read_packet_expected().expect("tags");
        assert!(tags.data.starts_with(b"OpusTags"));
        let mut last = None;
        while let Some(packet) = reader.read_packet().expect("packet") {
            last = Some(packet);
        }
        let last = last.expect("audio packets");
        assert!(last.last_in_stream());
        assert_eq!(last.absgp_page(), pre_skip + 48_000);
        // About 24 kbit/s: a second is about 3 KB (with the headers).
        assert!(file.len() < 5_000, "{} bytes", file.len());
    }
}
