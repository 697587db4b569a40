//! End-to-end tests of `transcriber::audio::decode` on files made at run time by the real
//! tools (espeak-ng, sox, opusenc, ffmpeg): every supported format, the error cases, and the
//! hostile-input bounds.

use remedios_testkit::audio;

use std::path::Path;
use std::time::{Duration, Instant};

use remedios_testkit::audio::Fixtures;
use transcriber::audio::{
    AudioError, AudioFormat, DecodeLimits, DecodedAudio, TARGET_SAMPLE_RATE, decode, detect_format,
};

fn decode_file(path: &Path, mime: Option<&str>) -> DecodedAudio {
    decode(&audio::read(path), mime, &DecodeLimits::default())
        .unwrap_or_else(|e| panic!("decoding {} failed: {e}", path.display()))
}

/// The checks every successful decode must pass: 16 kHz mono output whose length matches the
/// reported duration and the source's (within `tolerance`, a fraction), not silence, sane
/// values.
fn assert_plausible(audio: &DecodedAudio, source_secs: f64, tolerance: f64) {
    let secs = audio.samples.len() as f64 / f64::from(TARGET_SAMPLE_RATE);
    assert!(
        (audio.duration.as_secs_f64() - secs).abs() < 1e-3,
        "reported duration {:?} disagrees with {} samples at 16 kHz",
        audio.duration,
        audio.samples.len()
    );
    let error = (secs - source_secs).abs() / source_secs;
    assert!(
        error <= tolerance,
        "{}: decoded {secs:.3} s, source {source_secs:.3} s ({:.1}% off)",
        audio.source_format,
        error * 100.0
    );
    let level = audio::rms(&audio.samples);
    assert!(
        level > 0.01,
        "{}: output is (nearly) silent, RMS {level}",
        audio.source_format
    );
    assert!(
        audio
            .samples
            .iter()
            .all(|s| s.is_finite() && s.abs() <= 2.0),
        "{}: samples out of range",
        audio.source_format
    );
}

/// A 440 Hz tone must come out as 440 Hz: zero-crossing rate within 1%, and a clean fit.
fn assert_tone(audio: &DecodedAudio, freq: f64, min_snr_db: f64) {
    // Leave out the edges, where codecs fade in and out.
    let edge = (TARGET_SAMPLE_RATE / 10) as usize;
    assert!(
        audio.samples.len() > 4 * edge,
        "{}: too short",
        audio.source_format
    );
    let body = &audio.samples[edge..audio.samples.len() - edge];
    let measured = audio::zero_crossing_hz(body, TARGET_SAMPLE_RATE);
    assert!(
        (measured - freq).abs() / freq < 0.01,
        "{}: tone measured at {measured:.1} Hz, expected {freq} Hz",
        audio.source_format
    );
    let snr = audio::tone_snr_db(body, freq, TARGET_SAMPLE_RATE);
    assert!(
        snr >= min_snr_db,
        "{}: tone SNR {snr:.1} dB below {min_snr_db} dB",
        audio.source_format
    );
}

#[test]
fn whatsapp_voice_note_matches_the_reference_decoder() {
    let fx = Fixtures::new();
    let wav = fx.speech_wav("speech.wav", audio::SENTENCE);
    let note = fx.opus(&wav, "note.ogg", 24, &[]);
    let audio = decode_file(&note, Some("audio/ogg; codecs=opus"));

    assert_eq!(audio.source_format, AudioFormat::OggOpus);
    assert_eq!(audio.source_sample_rate, 48_000);
    assert_eq!(audio.source_channels, 1);
    assert_plausible(&audio, audio::duration_secs(&wav), 0.01);

    // Reference: opusdec (opus-tools) decodes at 48 kHz applying pre-skip, output gain and
    // end trimming; sox's very-high-quality resampler takes that to 16 kHz. Our output must
    // line up with it sample for sample (same length, no offset) and agree closely.
    let full_band = fx.opusdec(&note, "reference48k.wav", 48_000);
    let reference = fx.path("reference16k.wav");
    fx.sox(&[
        full_band.to_str().unwrap_or_default(),
        "-e",
        "floating-point",
        "-b",
        "32",
        reference.to_str().unwrap_or_default(),
        "rate",
        "-v",
        "16000",
    ]);
    let (rate, expected) = audio::read_float_wav(&reference);
    assert_eq!(rate, TARGET_SAMPLE_RATE);
    assert!(
        audio.samples.len().abs_diff(expected.len()) <= 1,
        "{} samples, the reference has {}",
        audio.samples.len(),
        expected.len()
    );
    let snr = audio::snr_db(&expected, &audio.samples);
    assert!(snr > 40.0, "only {snr:.1} dB agreement with opusdec + sox");
}

#[test]
fn opus_tone_keeps_its_pitch() {
    let fx = Fixtures::new();
    let wav = fx.tone_wav("tone.wav", 440.0, 3.0, 48_000, 1);
    let note = fx.opus(&wav, "tone.ogg", 24, &[]);
    let audio = decode_file(&note, None);
    assert_plausible(&audio, 3.0, 0.01);
    assert_tone(&audio, 440.0, 20.0);
}

#[test]
fn stereo_opus_is_mixed_down() {
    let fx = Fixtures::new();
    let wav = fx.tone_wav("stereo.wav", 440.0, 3.0, 44_100, 2);
    let note = fx.opus(&wav, "stereo.ogg", 48, &[]);
    let audio = decode_file(&note, Some("audio/ogg"));
    assert_eq!(audio.source_format, AudioFormat::OggOpus);
    assert_eq!(audio.source_channels, 2);
    assert_plausible(&audio, 3.0, 0.01);
    assert_tone(&audio, 440.0, 20.0);
}

/// Speech through every other supported format, with the MIME type WhatsApp would send.
#[test]
fn speech_in_every_format() {
    let fx = Fixtures::new();
    let wav = fx.speech_wav("speech.wav", audio::SENTENCE);
    let source = audio::duration_secs(&wav);
    let cases: [(&str, &[&str], Option<&str>, AudioFormat); 7] = [
        (
            "speech.mp3",
            &["-c:a", "libmp3lame", "-b:a", "64k"],
            Some("audio/mpeg"),
            AudioFormat::Mp3,
        ),
        (
            "speech.m4a",
            &["-c:a", "aac", "-b:a", "64k"],
            Some("audio/mp4"),
            AudioFormat::Mp4,
        ),
        (
            "speech.aac",
            &["-c:a", "aac", "-b:a", "64k", "-f", "adts"],
            Some("audio/aac"),
            AudioFormat::Aac,
        ),
        (
            "speech.flac",
            &["-c:a", "flac"],
            Some("audio/flac"),
            AudioFormat::Flac,
        ),
        (
            "speech.oga",
            &["-c:a", "libvorbis", "-q:a", "4"],
            Some("audio/ogg"),
            AudioFormat::OggVorbis,
        ),
        (
            "speech-ogg.flac.oga",
            &["-c:a", "flac", "-f", "ogg"],
            None,
            AudioFormat::OggFlac,
        ),
        (
            "speech-copy.wav",
            &["-c:a", "pcm_s16le"],
            Some("audio/wav"),
            AudioFormat::Wav,
        ),
    ];
    for (name, args, mime, format) in cases {
        let file = fx.ffmpeg(&wav, name, args);
        let audio = decode_file(&file, mime);
        assert_eq!(audio.source_format, format, "{name}");
        assert_eq!(audio.source_sample_rate, 22_050, "{name}");
        assert_eq!(audio.source_channels, 1, "{name}");
        // AAC in MP4/ADTS keeps its encoder priming and padding (about 0.1 s here).
        assert_plausible(&audio, source, 0.03);
    }
}

/// A pure tone through lossless and lossy formats at 44.1 kHz stereo: checks the downmix
/// and the 44.1 kHz → 16 kHz resampler (a lossless source must come out very clean).
#[test]
fn stereo_44k1_tone_in_every_format() {
    let fx = Fixtures::new();
    let wav = fx.tone_wav("stereo.wav", 440.0, 3.0, 44_100, 2);
    let cases: [(&str, &[&str], f64); 6] = [
        ("tone.mp3", &["-c:a", "libmp3lame", "-b:a", "128k"], 25.0),
        ("tone.m4a", &["-c:a", "aac", "-b:a", "128k"], 25.0),
        (
            "tone.aac",
            &["-c:a", "aac", "-b:a", "128k", "-f", "adts"],
            25.0,
        ),
        ("tone.flac", &["-c:a", "flac"], 60.0),
        ("tone.ogg", &["-c:a", "libvorbis", "-q:a", "6"], 25.0),
        ("tone-f32.wav", &["-c:a", "pcm_f32le"], 60.0),
    ];
    for (name, args, min_snr) in cases {
        let file = fx.ffmpeg(&wav, name, args);
        let audio = decode_file(&file, None);
        assert_eq!(audio.source_channels, 2, "{name}");
        assert_eq!(audio.source_sample_rate, 44_100, "{name}");
        assert_plausible(&audio, 3.0, 0.03);
        assert_tone(&audio, 440.0, min_snr);
    }
    // The original 16-bit WAV itself.
    let audio = decode_file(&wav, Some("audio/x-wav"));
    assert_eq!(audio.source_format, AudioFormat::Wav);
    assert_plausible(&audio, 3.0, 0.001);
    assert_tone(&audio, 440.0, 60.0);
}

#[test]
fn sixteen_khz_wav_passes_through_unchanged_in_length() {
    let fx = Fixtures::new();
    let wav = fx.tone_wav("tone16k.wav", 440.0, 2.0, 16_000, 1);
    let audio = decode_file(&wav, None);
    assert_eq!(audio.samples.len(), 32_000);
    assert_tone(&audio, 440.0, 60.0);
}

#[test]
fn amr_is_unsupported() {
    let amr = audio::amr_nb(50);
    let err =
        decode(&amr, Some("audio/amr"), &DecodeLimits::default()).expect_err("AMR must not decode");
    match &err {
        AudioError::Unsupported { format, mime } => {
            assert_eq!(format, "AMR");
            assert_eq!(mime.as_deref(), Some("audio/amr"));
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert!(err.to_string().contains("AMR"), "{err}");

    let mut wb = b"#!AMR-WB\n".to_vec();
    wb.extend_from_slice(&[0x44; 200]);
    assert!(matches!(
        decode(&wb, None, &DecodeLimits::default()),
        Err(AudioError::Unsupported { .. })
    ));
}

#[test]
fn empty_input_is_empty() {
    assert_eq!(
        decode(&[], Some("audio/ogg"), &DecodeLimits::default()),
        Err(AudioError::Empty)
    );
}

#[test]
fn random_bytes_are_rejected() {
    let limits = DecodeLimits::default();
    for seed in 1..=20u64 {
        let noise = audio::random_bytes(64 * 1024, seed);
        assert!(
            matches!(
                decode(&noise, None, &limits),
                Err(AudioError::Unsupported { .. })
            ),
            "seed {seed}"
        );
        // Declared as a voice note, noise is a damaged voice note.
        assert!(
            matches!(
                decode(&noise, Some("audio/ogg; codecs=opus"), &limits),
                Err(AudioError::Corrupt(_))
            ),
            "seed {seed}"
        );
    }
}

#[test]
fn headers_followed_by_garbage_are_corrupt() {
    let fx = Fixtures::new();
    let wav = fx.speech_wav("speech.wav", audio::SENTENCE);
    let limits = DecodeLimits::default();
    let sources = [
        fx.opus(&wav, "note.ogg", 24, &[]),
        fx.ffmpeg(&wav, "speech.mp3", &["-c:a", "libmp3lame"]),
        fx.ffmpeg(
            &wav,
            "speech.m4a",
            &["-c:a", "aac", "-movflags", "+faststart"],
        ),
        fx.ffmpeg(&wav, "speech.flac", &["-c:a", "flac"]),
    ];
    for (i, path) in sources.iter().enumerate() {
        let original = audio::read(path);
        // Keep the first 600 bytes (headers and a frame or two), replace the rest with noise.
        let mut damaged = original[..600].to_vec();
        damaged.extend(audio::random_bytes(original.len() - 600, 99 + i as u64));
        let result = decode(&damaged, None, &limits);
        assert!(
            matches!(result, Err(AudioError::Corrupt(_))),
            "{}: expected Corrupt, got {:?}",
            path.display(),
            result.map(|a| a.duration)
        );
    }
}

#[test]
fn truncated_files_are_corrupt() {
    let fx = Fixtures::new();
    let wav = fx.speech_wav("speech.wav", audio::SENTENCE);
    let limits = DecodeLimits::default();

    // Ogg/Opus cut in the middle of a page.
    let note = audio::read(&fx.opus(&wav, "note.ogg", 24, &[]));
    let pages = audio::ogg_page_offsets(&note);
    assert!(
        pages.len() > 4,
        "expected several Ogg pages, got {}",
        pages.len()
    );
    let cut = pages[pages.len() / 2] + 100;
    let err = decode(&note[..cut], Some("audio/ogg; codecs=opus"), &limits)
        .expect_err("a truncated note must not decode");
    assert!(
        matches!(err, AudioError::Corrupt(ref m) if m.contains("truncated")),
        "{err:?}"
    );

    // Every other format, cut in half (the M4A twice: with its index, "moov", at the end as
    // ffmpeg writes it by default, so that the index is lost, and at the front).
    let cases: [(&str, &[&str]); 7] = [
        ("speech.mp3", &["-c:a", "libmp3lame"]),
        ("speech.m4a", &["-c:a", "aac"]),
        (
            "speech-faststart.m4a",
            &["-c:a", "aac", "-movflags", "+faststart"],
        ),
        ("speech.aac", &["-c:a", "aac", "-f", "adts"]),
        ("speech.flac", &["-c:a", "flac"]),
        ("speech.oga", &["-c:a", "libvorbis"]),
        ("speech-copy.wav", &["-c:a", "pcm_s16le"]),
    ];
    for (name, args) in cases {
        let data = audio::read(&fx.ffmpeg(&wav, name, args));
        assert!(
            decode(&data, None, &limits).is_ok(),
            "{name} must decode whole"
        );
        let cut = data.len() / 2 + 3;
        let result = decode(&data[..cut], None, &limits);
        assert!(
            matches!(result, Err(AudioError::Corrupt(_))),
            "{name} cut in half: expected Corrupt, got {:?}",
            result.map(|a| a.duration)
        );
    }
}

#[test]
fn a_few_damaged_pages_are_skipped_but_many_are_corrupt() {
    let fx = Fixtures::new();
    let wav = fx.speech_wav("speech.wav", audio::SENTENCE);
    let note = audio::read(&fx.opus(&wav, "note.ogg", 24, &[]));
    let source = audio::duration_secs(&wav);
    let pages = audio::ogg_page_offsets(&note);
    // Page 0 is OpusHead, page 1 OpusTags; audio pages follow.
    assert!(
        pages.len() > 6,
        "expected several Ogg pages, got {}",
        pages.len()
    );

    // Flip one byte in the body of one audio page: its CRC fails, the page is skipped.
    let mut one = note.clone();
    one[pages[3] + 60] ^= 0x55;
    let audio = decode(&one, None, &DecodeLimits::default())
        .unwrap_or_else(|e| panic!("one damaged page should be skipped: {e}"));
    assert!(
        audio.duration.as_secs_f64() > source * 0.5,
        "{:?}",
        audio.duration
    );
    assert!(audio::rms(&audio.samples) > 0.01);

    // Damage every audio page with a budget smaller than the page count.
    let mut all = note.clone();
    for &page in &pages[2..] {
        all[page + 40] ^= 0x55;
    }
    let limits = DecodeLimits {
        max_bad_packets: 2,
        ..DecodeLimits::default()
    };
    let err = decode(&all, None, &limits).expect_err("a wrecked file must not decode");
    assert!(matches!(err, AudioError::Corrupt(_)), "{err:?}");
}

/// A small file holding 20 minutes of audio stops at the limit, without decoding it all.
#[test]
fn long_audio_is_too_long_and_stops_early() {
    let fx = Fixtures::new();
    let tone = fx.tone_wav("long.wav", 440.0, 1200.0, 16_000, 1);
    let note = audio::read(&fx.opus(&tone, "long.ogg", 6, &["--comp", "0", "--framesize", "60"]));
    assert!(
        note.len() < 2_000_000,
        "the long note should be small: {} bytes",
        note.len()
    );

    let limits = DecodeLimits {
        max_duration: Duration::from_secs(30),
        ..DecodeLimits::default()
    };
    let started = Instant::now();
    let err = decode(&note, Some("audio/ogg; codecs=opus"), &limits)
        .expect_err("20 minutes exceed a 30 s limit");
    let elapsed = started.elapsed();
    assert_eq!(
        err,
        AudioError::TooLong {
            limit: Duration::from_secs(30)
        }
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "took {elapsed:?} to give up"
    );

    assert_eq!(
        DecodeLimits::default().max_duration,
        Duration::from_secs(15 * 60)
    );
}

#[test]
fn wav_header_claiming_hours_is_bounded() {
    // A WAV header whose data chunk claims ~4 GB (about 37 hours at 16 kHz mono) with a
    // second of real samples behind it.
    let rate: u32 = 16_000;
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&u32::MAX.to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(u32::MAX - 64).to_le_bytes());
    for n in 0..rate {
        let s = (f64::from(n) * std::f64::consts::TAU * 440.0 / f64::from(rate)).sin();
        wav.extend_from_slice(&((s * 16_000.0) as i16).to_le_bytes());
    }
    let limits = DecodeLimits {
        max_duration: Duration::from_secs(10),
        ..DecodeLimits::default()
    };
    // The lie is reported as corruption (the file is "truncated"), without any allocation
    // sized from the header and without decoding anything like 37 hours.
    let started = Instant::now();
    let err = decode(&wav, Some("audio/wav"), &limits).expect_err("the header lies");
    assert!(matches!(err, AudioError::Corrupt(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// The Lambda runs on Amazon Linux 2023, which has no libopus: ours must be linked in
/// statically. After an Opus decode, no shared libopus may be mapped into the process.
#[cfg(target_os = "linux")]
#[test]
fn libopus_is_linked_statically() {
    let fx = Fixtures::new();
    let wav = fx.tone_wav("tone.wav", 440.0, 1.0, 48_000, 1);
    let note = fx.opus(&wav, "tone.ogg", 24, &[]);
    let audio = decode_file(&note, None);
    assert_eq!(audio.source_format, AudioFormat::OggOpus);
    let maps = std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_else(|e| panic!("cannot read /proc/self/maps: {e}"));
    let shared: Vec<&str> = maps.lines().filter(|l| l.contains("libopus")).collect();
    assert!(shared.is_empty(), "a shared libopus is loaded: {shared:?}");
}

#[test]
fn mime_type_is_only_a_hint() {
    let fx = Fixtures::new();
    let wav = fx.speech_wav("speech.wav", audio::SENTENCE);
    let mp3 = audio::read(&fx.ffmpeg(&wav, "speech.mp3", &["-c:a", "libmp3lame"]));
    // Mislabelled as a voice note: decoded by what it is.
    let audio = decode(
        &mp3,
        Some("audio/ogg; codecs=opus"),
        &DecodeLimits::default(),
    )
    .unwrap_or_else(|e| panic!("mislabelled MP3 should decode: {e}"));
    assert_eq!(audio.source_format, AudioFormat::Mp3);
    assert_eq!(detect_format(&mp3, None), Ok(AudioFormat::Mp3));
}

#[test]
fn too_many_channels_is_unsupported() {
    let fx = Fixtures::new();
    let wav = fx.tone_wav("six.wav", 440.0, 1.0, 48_000, 6);
    let limits = DecodeLimits {
        max_channels: 2,
        ..DecodeLimits::default()
    };
    let err = decode(&audio::read(&wav), None, &limits).expect_err("6 channels exceed 2");
    assert!(matches!(err, AudioError::Unsupported { .. }), "{err:?}");
    // Within the default limit, six channels are mixed down.
    let audio = decode_file(&wav, None);
    assert_eq!(audio.source_channels, 6);
    assert_tone(&audio, 440.0, 60.0);
}

/// Randomly damaged files of every format (a few flipped bytes each): decoding must end
/// quickly with audio of plausible length or a typed error, and no decoder may panic (a
/// caught panic would surface as `Corrupt("... decoder failed on this data ...")`).
#[test]
fn damaged_files_fail_cleanly() {
    let fx = Fixtures::new();
    let wav = fx.speech_wav("speech.wav", audio::SENTENCE);
    let source = audio::duration_secs(&wav);
    let mut files = vec![("note.ogg", audio::read(&fx.opus(&wav, "note.ogg", 24, &[])))];
    let encodings: [(&str, &[&str]); 7] = [
        ("speech.mp3", &["-c:a", "libmp3lame"]),
        ("speech.aac", &["-c:a", "aac", "-f", "adts"]),
        ("speech.m4a", &["-c:a", "aac"]),
        ("speech.flac", &["-c:a", "flac"]),
        ("speech.oga", &["-c:a", "libvorbis"]),
        ("speech-flac.oga", &["-c:a", "flac", "-f", "ogg"]),
        ("speech-copy.wav", &["-c:a", "pcm_s16le"]),
    ];
    for (name, args) in encodings {
        files.push((name, audio::read(&fx.ffmpeg(&wav, name, args))));
    }
    let limits = DecodeLimits::default();
    for (name, original) in &files {
        for seed in 0..25u64 {
            let noise = audio::random_bytes(64, 1000 + seed);
            let mut damaged = original.clone();
            for k in 0..1 + usize::from(noise[0] % 12) {
                let at = u32::from_le_bytes([
                    noise[4 * k + 1],
                    noise[4 * k + 2],
                    noise[4 * k + 3],
                    noise[4 * k + 4],
                ]) as usize
                    % damaged.len();
                damaged[at] ^= noise[63 - k] | 1;
            }
            let started = Instant::now();
            let result = decode(&damaged, None, &limits);
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{name} seed {seed}: decoding took {:?}",
                started.elapsed()
            );
            match result {
                Ok(audio) => assert!(
                    audio.duration.as_secs_f64() < source * 1.5,
                    "{name} seed {seed}: {:?} of audio from a {source:.1} s file",
                    audio.duration
                ),
                Err(AudioError::Corrupt(message)) => assert!(
                    !message.contains("decoder failed"),
                    "{name} seed {seed}: {message}"
                ),
                Err(AudioError::Unsupported { .. }) => {}
                Err(other) => panic!("{name} seed {seed}: unexpected {other:?}"),
            }
        }
    }
}
