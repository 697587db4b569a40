//! `transcriber::speech` with the real models: tiny.en on English speech and the
//! multilingual base model on Spanish, spoken by espeak-ng, encoded as Ogg/Opus voice notes
//! and decoded by `transcriber::audio`, as the handler does.

use remedios_testkit::audio::{self, Fixtures};
use remedios_testkit::wer::word_error_rate;
use transcriber::audio::{DecodeLimits, decode};
use transcriber::speech::{Engine, Language, SpeechError, SpeechSettings, Transcript};

const SPANISH: &str = "Hola, necesito una cita con el médico el martes por la mañana.";

fn model(file: &str) -> std::path::PathBuf {
    remedios_testkit::paths::whisper_model(file).unwrap_or_else(|e| panic!("{e}"))
}

fn engine(file: &str, language: Language) -> Engine {
    Engine::load(&SpeechSettings {
        model_path: model(file),
        language,
        threads: 2,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Speaks `text` with espeak-ng's `voice`, encodes it as a voice note, decodes it.
fn voice_note_samples(fx: &Fixtures, voice: &str, text: &str) -> Vec<f32> {
    let note = audio::read(&fx.voice_note("note.ogg", voice, text));
    decode(&note, Some("audio/ogg"), &DecodeLimits::default())
        .expect("the voice note decodes")
        .samples
}

fn assert_well_formed(transcript: &Transcript, samples: usize) {
    let duration_ms = samples as u64 * 1000 / 16_000;
    assert_eq!(transcript.audio_duration_ms, duration_ms);
    assert!(!transcript.segments.is_empty(), "{transcript:?}");
    let mut previous_end = 0;
    for segment in &transcript.segments {
        assert!(segment.start_ms >= previous_end, "{transcript:?}");
        assert!(segment.end_ms >= segment.start_ms, "{transcript:?}");
        assert!(segment.end_ms <= duration_ms, "{transcript:?}");
        assert!(!segment.text.is_empty());
        previous_end = segment.end_ms;
    }
    let joined: Vec<&str> = transcript
        .segments
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    assert_eq!(transcript.text, joined.join(" "));
}

#[test]
fn tiny_en_transcribes_an_english_voice_note() {
    let fx = Fixtures::new();
    let samples = voice_note_samples(&fx, "en", audio::SENTENCE);
    let engine = engine("ggml-tiny.en.bin", Language::Auto);
    assert!(!engine.is_multilingual());
    assert_eq!(engine.forced_language(), Some("en"));
    assert_eq!(engine.model(), "ggml-tiny.en");

    assert_eq!(engine.encodes(), 0);
    let transcript = engine.transcribe(&samples).unwrap();
    assert_eq!(engine.encodes(), 1, "a short note is encoded once");
    let wer = word_error_rate(audio::SENTENCE, &transcript.text);
    assert!(wer <= 0.35, "WER {wer:.2}: {:?}", transcript.text);
    assert_eq!(transcript.language.as_deref(), Some("en"));
    assert_eq!(transcript.model, "ggml-tiny.en");
    assert_well_formed(&transcript, samples.len());
}

#[test]
fn tiny_en_keeps_the_words_of_a_note_longer_than_one_window() {
    // About 60 s: two of whisper's 30 s windows.
    let fx = Fixtures::new();
    let text = audio::long_text(60);
    let wav = fx.speech_wav("long.wav", &text);
    let note = audio::read(&fx.opus(&wav, "long.ogg", 24, &[]));
    let samples = decode(&note, Some("audio/ogg"), &DecodeLimits::default())
        .unwrap()
        .samples;
    assert!(samples.len() > 45 * 16_000, "{} samples", samples.len());
    let transcript = engine("ggml-tiny.en.bin", Language::Auto)
        .transcribe(&samples)
        .unwrap();
    let wer = word_error_rate(&text, &transcript.text);
    assert!(wer <= 0.35, "WER {wer:.2}: {:?}", transcript.text);
    assert_well_formed(&transcript, samples.len());
    let last = transcript.segments.last().unwrap();
    assert!(last.end_ms > 40_000, "the second window was lost: {last:?}");
}

#[test]
fn tiny_en_times_the_words_after_a_long_pause_from_the_start_of_the_note() {
    // ~20 s of speech, 12 s of silence, the ~7 s sentence: too long for one chunk, so it is
    // cut in the pause, and the second chunk's times must count from the note's start.
    let fx = Fixtures::new();
    let first = audio::long_text(20);
    let mut samples = voice_note_samples(&fx, "en", &first);
    let first_end_ms = samples.len() as u64 * 1000 / 16_000;
    samples.extend(std::iter::repeat_n(0.0f32, 12 * 16_000));
    let second_start_ms = samples.len() as u64 * 1000 / 16_000;
    samples.extend(voice_note_samples(&fx, "en", audio::SENTENCE));
    assert!(samples.len() > 30 * 16_000, "{} samples", samples.len());

    let transcript = engine("ggml-tiny.en.bin", Language::Auto)
        .transcribe(&samples)
        .unwrap();
    assert_well_formed(&transcript, samples.len());
    let reference = format!("{first} {}", audio::SENTENCE);
    let wer = word_error_rate(&reference, &transcript.text);
    assert!(wer <= 0.35, "WER {wer:.2}: {:?}", transcript.text);
    // Every segment is in the speech, none in the pause (give whisper's times 1.5 s).
    for segment in &transcript.segments {
        let in_first = segment.end_ms <= first_end_ms + 1_500;
        let in_second = segment.start_ms + 1_500 >= second_start_ms;
        assert!(in_first || in_second, "{segment:?} in {transcript:?}");
    }
    let last = transcript.segments.last().unwrap();
    assert!(
        last.start_ms + 1_500 >= second_start_ms,
        "the sentence after the pause is timed too early: {transcript:?}"
    );
    let tail: String = transcript
        .segments
        .iter()
        .filter(|s| s.start_ms + 1_500 >= second_start_ms)
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let wer = word_error_rate(audio::SENTENCE, &tail);
    assert!(wer <= 0.4, "WER {wer:.2} after the pause: {tail:?}");
}

#[test]
fn base_detects_spanish_and_transcribes_it() {
    let fx = Fixtures::new();
    let samples = voice_note_samples(&fx, "es", SPANISH);
    let engine = engine("ggml-base.bin", Language::Auto);
    assert!(engine.is_multilingual());
    assert_eq!(engine.forced_language(), None);

    let transcript = engine.transcribe(&samples).unwrap();
    assert_eq!(transcript.language.as_deref(), Some("es"), "{transcript:?}");
    let wer = word_error_rate(SPANISH, &transcript.text);
    assert!(wer <= 0.4, "WER {wer:.2}: {:?}", transcript.text);
    assert_well_formed(&transcript, samples.len());
}

#[test]
fn base_transcribes_in_a_forced_language_without_detecting() {
    let fx = Fixtures::new();
    let samples = voice_note_samples(&fx, "es", SPANISH);
    let engine = engine("ggml-base.bin", Language::Forced("es".into()));
    assert_eq!(engine.forced_language(), Some("es"));
    let transcript = engine.transcribe(&samples).unwrap();
    assert_eq!(transcript.language.as_deref(), Some("es"));
    let wer = word_error_rate(SPANISH, &transcript.text);
    assert!(wer <= 0.4, "WER {wer:.2}: {:?}", transcript.text);
}

#[test]
fn silence_gives_an_empty_transcript_and_a_forced_foreign_language_is_refused_on_tiny_en() {
    let engine = engine("ggml-tiny.en.bin", Language::Auto);
    let silence = vec![0.0f32; 3 * 16_000];
    let transcript = engine.transcribe(&silence).unwrap();
    assert_eq!(engine.encodes(), 0, "silence never reaches the encoder");
    assert_eq!(transcript.text, "");
    assert!(transcript.segments.is_empty());
    assert_eq!(transcript.audio_duration_ms, 3000);

    let err = Engine::load(&SpeechSettings {
        model_path: model("ggml-tiny.en.bin"),
        language: Language::Forced("es".into()),
        threads: 2,
    })
    .unwrap_err();
    assert!(
        matches!(err, SpeechError::LanguageNotSupported { .. }),
        "{err}"
    );
}

/// White noise at `amplitude` (uniform, deterministic), `seconds` long at 16 kHz.
fn noise(seconds: usize, amplitude: f32, mut seed: u64) -> Vec<f32> {
    (0..seconds * 16_000)
        .map(|_| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amplitude
        })
        .collect()
}

/// A note of noise (a pocket, wind, a street) or of room hiss has no speech: whisper never
/// hears it, so it cannot write words into it, and the user gets "I couldn't hear
/// anything" rather than an answer to invented words.
#[test]
fn noise_and_hiss_give_an_empty_transcript_without_running_whisper() {
    let engine = engine("ggml-base.bin", Language::Auto);
    for (what, samples) in [
        ("loud noise", noise(6, 0.3, 7)),
        ("room hiss", noise(4, 0.004, 11)),
    ] {
        let transcript = engine.transcribe(&samples).unwrap();
        assert_eq!(transcript.text, "", "{what}: {transcript:?}");
        assert!(transcript.segments.is_empty(), "{what}");
        assert_eq!(transcript.speech_ms, 0, "{what}");
        assert_eq!(transcript.audio_duration_ms, samples.len() as u64 / 16);
    }
    assert_eq!(engine.encodes(), 0, "nothing reached the encoder");
}

/// Long pauses between sentences (here 8 s of hiss, twice) are not transcribed: whisper
/// hears the sentences with short pauses between them, gets the same words, and the times
/// still count from the start of the note.
#[test]
fn long_pauses_are_left_out_and_the_words_keep_their_times() {
    let fx = Fixtures::new();
    let first = "Good morning, I would like to book a table for two.";
    let second = "We will arrive at eight in the evening.";
    let third = "Please call me back to confirm.";
    let mut samples = voice_note_samples(&fx, "en", first);
    let mut starts = Vec::new();
    for sentence in [second, third] {
        samples.extend(noise(8, 0.003, samples.len() as u64));
        starts.push(samples.len() as u64 / 16);
        samples.extend(voice_note_samples(&fx, "en", sentence));
    }
    let engine = engine("ggml-tiny.en.bin", Language::Auto);
    let transcript = engine.transcribe(&samples).unwrap();

    assert_well_formed(&transcript, samples.len());
    let reference = format!("{first} {second} {third}");
    let wer = word_error_rate(&reference, &transcript.text);
    assert!(wer <= 0.2, "WER {wer:.2}: {:?}", transcript.text);
    assert!(
        transcript.speech_ms + 14_000 <= transcript.audio_duration_ms,
        "the 16 s of pauses are mostly left out: heard {} of {} ms",
        transcript.speech_ms,
        transcript.audio_duration_ms
    );
    assert_eq!(
        engine.encodes(),
        1,
        "what is left fits one window: one encoder run"
    );
    let last = transcript.segments.last().unwrap();
    assert!(
        last.start_ms + 1_500 >= starts[1] && last.end_ms <= transcript.audio_duration_ms,
        "the last sentence is timed where it is in the note: {transcript:?}"
    );
}
