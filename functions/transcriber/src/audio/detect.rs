//! Format detection from the bytes themselves, with the MIME type as a hint only.
//!
//! WhatsApp (and users forwarding files) sometimes label media loosely, so the magic numbers
//! decide. The MIME type only matters when the bytes are not recognised: if it names a format
//! we can decode, the file is damaged ([`AudioError::Corrupt`]); otherwise it is something we
//! do not handle ([`AudioError::Unsupported`]).

use super::{AudioError, AudioFormat};

/// How far into the data we look for an MPEG audio / ADTS frame sync when the file does not
/// start with one (some encoders pad the start, or leave junk before the first frame).
const SYNC_SEARCH_WINDOW: usize = 16 * 1024;

/// At most this many consecutive ID3v2 tags are skipped at the start of a file.
const MAX_ID3_TAGS: usize = 4;

/// The result of sniffing a buffer: a decodable format and where its stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Detected {
    /// The container/codec combination.
    pub format: AudioFormat,
    /// Byte offset at which the stream starts (after ID3 tags or leading junk).
    pub offset: usize,
}

/// Detects the format of `bytes`, using `mime_hint` only to word the error for unrecognised data.
pub(crate) fn detect(bytes: &[u8], mime_hint: Option<&str>) -> Result<Detected, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Empty);
    }
    match sniff(bytes) {
        Sniff::Decodable(detected) => {
            if let Some(mime) = mime_hint {
                let declared = MimeKind::parse(mime);
                if !declared.matches(detected.format) {
                    tracing::debug!(
                        mime,
                        detected = %detected.format,
                        "audio MIME type disagrees with the data; trusting the data"
                    );
                }
            }
            Ok(detected)
        }
        Sniff::Recognised(what) => Err(AudioError::Unsupported {
            format: what.to_owned(),
            mime: mime_hint.map(str::to_owned),
        }),
        Sniff::Unknown => match mime_hint.map(MimeKind::parse) {
            Some(kind) if kind.is_decodable() => Err(AudioError::Corrupt(format!(
                "the data is not a valid {} file (declared as {:?})",
                kind.label(),
                mime_hint.unwrap_or_default()
            ))),
            _ => Err(AudioError::Unsupported {
                format: "unrecognised data".to_owned(),
                mime: mime_hint.map(str::to_owned),
            }),
        },
    }
}

enum Sniff {
    Decodable(Detected),
    /// A format we recognise but cannot decode (e.g. AMR); the text names it.
    Recognised(&'static str),
    Unknown,
}

fn sniff(bytes: &[u8]) -> Sniff {
    if bytes.starts_with(b"OggS") {
        return sniff_ogg(bytes);
    }
    if bytes.starts_with(b"fLaC") {
        return decodable(AudioFormat::Flac, 0);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" {
        return match &bytes[8..12] {
            b"WAVE" => decodable(AudioFormat::Wav, 0),
            _ => Sniff::Recognised("RIFF file that is not WAVE"),
        };
    }
    if bytes.starts_with(b"#!AMR-WB\n") {
        return Sniff::Recognised("AMR-WB");
    }
    if bytes.starts_with(b"#!AMR\n") {
        return Sniff::Recognised("AMR");
    }
    if bytes.len() >= 8 && &bytes[4..8] == b"ftyp" {
        return decodable(AudioFormat::Mp4, 0);
    }
    if bytes.starts_with(b"FORM") {
        return Sniff::Recognised("AIFF/IFF");
    }
    if bytes.starts_with(b"\x1a\x45\xdf\xa3") {
        return Sniff::Recognised("Matroska/WebM");
    }
    if bytes.starts_with(b"caff") {
        return Sniff::Recognised("Core Audio Format");
    }

    let start = skip_id3v2(bytes);
    if start >= bytes.len() {
        // Nothing but tags.
        return Sniff::Unknown;
    }
    let rest = &bytes[start..];
    if rest.starts_with(b"fLaC") {
        return decodable(AudioFormat::Flac, start);
    }
    // Frame sync at the start (the common case), then a bounded search for two consecutive
    // valid frames. Both checks want a second frame to follow so that random bytes that happen
    // to begin with 0xFFF... are not mistaken for audio.
    let window = rest.len().min(SYNC_SEARCH_WINDOW);
    for pos in 0..window {
        if rest[pos] != 0xFF {
            continue;
        }
        if frames_chain(rest, pos, adts_frame_len) {
            return decodable(AudioFormat::Aac, start + pos);
        }
        if frames_chain(rest, pos, mpeg_audio_frame_len) {
            return decodable(AudioFormat::Mp3, start + pos);
        }
    }
    Sniff::Unknown
}

fn decodable(format: AudioFormat, offset: usize) -> Sniff {
    Sniff::Decodable(Detected { format, offset })
}

/// Looks at the first packet of the first Ogg page to tell the codec apart.
fn sniff_ogg(bytes: &[u8]) -> Sniff {
    // Page header: "OggS", version, type, granule (8), serial (4), sequence (4), CRC (4),
    // segment count (1), then the segment table and the body.
    const HEADER: usize = 27;
    let Some(&segments) = bytes.get(HEADER - 1) else {
        return Sniff::Unknown;
    };
    let body = HEADER + usize::from(segments);
    let Some(packet) = bytes.get(body..) else {
        return Sniff::Unknown;
    };
    if packet.starts_with(b"OpusHead") {
        decodable(AudioFormat::OggOpus, 0)
    } else if packet.starts_with(b"\x01vorbis") {
        decodable(AudioFormat::OggVorbis, 0)
    } else if packet.starts_with(b"\x7fFLAC") {
        decodable(AudioFormat::OggFlac, 0)
    } else if packet.starts_with(b"Speex   ") {
        Sniff::Recognised("Ogg/Speex")
    } else if packet.len() < 8 {
        // A first page too short to hold any codec header: damaged.
        Sniff::Unknown
    } else {
        Sniff::Recognised("Ogg with an unknown codec")
    }
}

/// Returns the offset just past any ID3v2 tags at the start of `bytes`.
fn skip_id3v2(bytes: &[u8]) -> usize {
    let mut pos = 0usize;
    for _ in 0..MAX_ID3_TAGS {
        let Some(header) = bytes.get(pos..pos + 10) else {
            break;
        };
        if &header[0..3] != b"ID3" || header[6..10].iter().any(|b| b & 0x80 != 0) {
            break;
        }
        // Size is a 28-bit "syncsafe" integer; a footer (flag 0x10) adds another 10 bytes.
        let size = header[6..10]
            .iter()
            .fold(0usize, |acc, &b| (acc << 7) | usize::from(b));
        let footer = if header[5] & 0x10 != 0 { 10 } else { 0 };
        pos = pos.saturating_add(10 + size + footer);
    }
    pos
}

/// True if a frame starts at `pos` and, when the data is long enough, another valid frame
/// follows it directly.
fn frames_chain(data: &[u8], pos: usize, frame_len: fn(&[u8]) -> Option<usize>) -> bool {
    let Some(len) = data.get(pos..).and_then(frame_len) else {
        return false;
    };
    let next = pos + len;
    if next + 4 > data.len() {
        // The first frame runs to (or past) the end: accept a lone frame only if it is
        // complete, i.e. a tiny but whole file.
        return next <= data.len();
    }
    frame_len(&data[next..]).is_some()
}

/// True if an MPEG audio stream's last frame is cut off: walking the stream frame by frame
/// (passing over junk and tags between frames), a frame that directly follows another one
/// claims more bytes than are left. A false sync in junk is not enough to say so.
pub(crate) fn mpeg_audio_truncated(data: &[u8]) -> bool {
    let mut pos = 0usize;
    let mut chained = false;
    while pos + 4 <= data.len() {
        match mpeg_audio_frame_len(&data[pos..]) {
            Some(len) if pos + len > data.len() => return chained,
            Some(len) => {
                pos += len;
                chained = true;
            }
            None => {
                pos += 1;
                chained = false;
            }
        }
    }
    false
}

/// The length of the ADTS frame whose header starts `data`, if it is a plausible header.
fn adts_frame_len(data: &[u8]) -> Option<usize> {
    let h = data.get(0..7)?;
    // 12-bit sync, then layer bits that must be 00.
    if h[0] != 0xFF || h[1] & 0xF6 != 0xF0 {
        return None;
    }
    let sampling_index = (h[2] >> 2) & 0x0F;
    if sampling_index > 12 {
        return None;
    }
    let len = (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
    let header_len = if h[1] & 0x01 == 0 { 9 } else { 7 };
    (len > header_len).then_some(len)
}

/// The length of the MPEG-1/2/2.5 audio (layer I, II or III) frame whose header starts `data`.
fn mpeg_audio_frame_len(data: &[u8]) -> Option<usize> {
    const BITRATES_V1: [[u32; 15]; 3] = [
        // Layer I
        [
            0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
        ],
        // Layer II
        [
            0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
        ],
        // Layer III
        [
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ],
    ];
    const BITRATES_V2: [[u32; 15]; 3] = [
        [
            0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
        ],
        [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
        [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
    ];
    let h = data.get(0..4)?;
    if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
        return None;
    }
    let version = (h[1] >> 3) & 0x03; // 0 = 2.5, 1 = reserved, 2 = 2, 3 = 1
    let layer_bits = (h[1] >> 1) & 0x03; // 1 = III, 2 = II, 3 = I, 0 = reserved
    let bitrate_index = usize::from(h[2] >> 4);
    let rate_index = usize::from((h[2] >> 2) & 0x03);
    let padding = u32::from((h[2] >> 1) & 0x01);
    // Free-format (index 0) streams cannot be length-checked; they are vanishingly rare.
    if version == 1
        || layer_bits == 0
        || bitrate_index == 0
        || bitrate_index == 15
        || rate_index == 3
    {
        return None;
    }
    let layer = usize::from(3 - layer_bits); // 0 = I, 1 = II, 2 = III
    let base_rate = [44_100u32, 48_000, 32_000][rate_index];
    let sample_rate = match version {
        3 => base_rate,
        2 => base_rate / 2,
        _ => base_rate / 4,
    };
    let kbps = if version == 3 {
        BITRATES_V1[layer][bitrate_index]
    } else {
        BITRATES_V2[layer][bitrate_index]
    };
    let bitrate = kbps * 1000;
    let len = match layer {
        0 => (12 * bitrate / sample_rate + padding) * 4,
        2 if version != 3 => 72 * bitrate / sample_rate + padding,
        _ => 144 * bitrate / sample_rate + padding,
    };
    usize::try_from(len).ok().filter(|&l| l > 4)
}

/// What a MIME type (hint) says the data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MimeKind {
    Ogg,
    Mpeg,
    Mp4,
    Aac,
    Wav,
    Flac,
    Other,
}

impl MimeKind {
    fn parse(mime: &str) -> Self {
        let essence = mime
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "audio/ogg" | "audio/opus" | "audio/vorbis" | "application/ogg" | "audio/x-ogg" => {
                Self::Ogg
            }
            "audio/mpeg" | "audio/mp3" | "audio/mpeg3" | "audio/x-mpeg" | "audio/x-mp3" => {
                Self::Mpeg
            }
            "audio/mp4" | "audio/m4a" | "audio/x-m4a" | "video/mp4" | "audio/3gpp"
            | "audio/3gpp2" => Self::Mp4,
            "audio/aac" | "audio/aacp" | "audio/x-aac" => Self::Aac,
            "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => Self::Wav,
            "audio/flac" | "audio/x-flac" => Self::Flac,
            _ => Self::Other,
        }
    }

    fn is_decodable(self) -> bool {
        self != Self::Other
    }

    fn label(self) -> &'static str {
        match self {
            Self::Ogg => "Ogg",
            Self::Mpeg => "MP3",
            Self::Mp4 => "MP4/M4A",
            Self::Aac => "AAC",
            Self::Wav => "WAV",
            Self::Flac => "FLAC",
            Self::Other => "audio",
        }
    }

    fn matches(self, format: AudioFormat) -> bool {
        matches!(
            (self, format),
            (
                Self::Ogg,
                AudioFormat::OggOpus | AudioFormat::OggVorbis | AudioFormat::OggFlac
            ) | (Self::Mpeg, AudioFormat::Mp3)
                | (Self::Mp4, AudioFormat::Mp4)
                | (Self::Aac, AudioFormat::Aac)
                | (Self::Wav, AudioFormat::Wav)
                | (Self::Flac, AudioFormat::Flac)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format_of(bytes: &[u8]) -> Option<AudioFormat> {
        detect(bytes, None).ok().map(|d| d.format)
    }

    /// A valid MPEG-1 layer III header (128 kbit/s, 44.1 kHz, no padding): 417-byte frames.
    const MP3_HEADER: [u8; 4] = [0xFF, 0xFB, 0x90, 0x00];

    fn mp3_frames(count: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..count {
            out.extend_from_slice(&MP3_HEADER);
            out.resize(out.len() + 417 - 4, 0);
        }
        out
    }

    #[test]
    fn recognises_magic_numbers() {
        assert_eq!(format_of(b"fLaC\0\0\0\x22"), Some(AudioFormat::Flac));
        assert_eq!(format_of(b"RIFF\x24\0\0\0WAVEfmt "), Some(AudioFormat::Wav));
        assert_eq!(
            format_of(b"\0\0\0\x20ftypM4A \0\0\0\0"),
            Some(AudioFormat::Mp4)
        );
        assert_eq!(format_of(&mp3_frames(3)), Some(AudioFormat::Mp3));
    }

    #[test]
    fn skips_id3_and_leading_junk() {
        let mut data = b"ID3\x04\0\0\0\0\0\x05hello".to_vec();
        data.extend_from_slice(&[0u8; 100]);
        data.extend_from_slice(&mp3_frames(2));
        let detected = detect(&data, Some("audio/mpeg")).ok();
        assert_eq!(
            detected,
            Some(Detected {
                format: AudioFormat::Mp3,
                offset: 115
            })
        );
    }

    #[test]
    fn finds_a_cut_off_last_mp3_frame() {
        let mut data = mp3_frames(5);
        assert!(!mpeg_audio_truncated(&data));
        data.extend_from_slice(b"TAG and some trailing tag bytes");
        assert!(!mpeg_audio_truncated(&data));
        let whole = mp3_frames(5);
        assert!(mpeg_audio_truncated(&whole[..whole.len() - 10]));
        // A lone "header" in junk near the end is not a truncated stream.
        let mut junk = vec![0x11; 100];
        junk.extend_from_slice(&MP3_HEADER);
        junk.extend_from_slice(&[0x11; 20]);
        assert!(!mpeg_audio_truncated(&junk));
    }

    #[test]
    fn lone_sync_word_is_not_mp3() {
        // A valid-looking header followed by something that is not a frame.
        let mut data = mp3_frames(1);
        data.extend_from_slice(&[0x12; 600]);
        assert!(matches!(
            detect(&data, None),
            Err(AudioError::Unsupported { .. })
        ));
    }

    #[test]
    fn amr_is_unsupported_and_mime_decides_the_unknown_case() {
        assert!(matches!(
            detect(b"#!AMR\n\x3c", Some("audio/amr")),
            Err(AudioError::Unsupported { ref format, .. }) if format == "AMR"
        ));
        assert!(matches!(
            detect(b"not audio at all", Some("audio/ogg; codecs=opus")),
            Err(AudioError::Corrupt(_))
        ));
        assert!(matches!(
            detect(b"not audio at all", Some("application/pdf")),
            Err(AudioError::Unsupported { .. })
        ));
        assert!(matches!(detect(b"", None), Err(AudioError::Empty)));
    }

    #[test]
    fn truncated_ogg_page_header_is_unknown() {
        assert!(matches!(
            detect(b"OggS\0\x02", Some("audio/ogg")),
            Err(AudioError::Corrupt(_))
        ));
    }
}
