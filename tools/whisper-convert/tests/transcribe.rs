//! End to end: convert the real CTranslate2 models, load them with
//! whisper.cpp (whisper-rs) and transcribe synthetic speech.
//!
//! The models come from `scripts/models.sh`; if they are missing these
//! tests fail and say so. espeak-ng and sox must be installed.

mod common;

use std::time::Instant;

use common::{base_dirs, speak, tiny_en_dirs};
use remedios_testkit::wer::word_error_rate;
use whisper_convert::{ModelFiles, Options, Weights, convert_files, convert_files_with};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

/// What a transcription gave.
struct Transcript {
    text: String,
    language: Option<&'static str>,
    /// (start, end) of each segment in centiseconds.
    segments: Vec<(i64, i64)>,
    seconds: f64,
}

/// Greedy decoding with 2 threads; `language` None detects it.
fn transcribe(ctx: &WhisperContext, samples: &[f32], language: Option<&str>) -> Transcript {
    let mut state = ctx.create_state().expect("whisper state");
    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    params.set_n_threads(2);
    params.set_language(language.or(Some("auto")));
    params.set_print_special(false);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_timestamps(false);
    let started = Instant::now();
    state.full(params, samples).expect("whisper_full");
    let seconds = started.elapsed().as_secs_f64();
    let mut text = String::new();
    let mut segments = Vec::new();
    for segment in state.as_iter() {
        text.push_str(&segment.to_str_lossy().expect("segment text"));
        segments.push((segment.start_timestamp(), segment.end_timestamp()));
    }
    Transcript {
        text: text.trim().to_owned(),
        language: whisper_rs::get_lang_str(state.full_lang_id_from_state()),
        segments,
        seconds,
    }
}

fn check_segments(t: &Transcript, samples: usize) {
    let clip_cs = (samples / 160) as i64;
    assert!(!t.segments.is_empty(), "no segments");
    for &(start, end) in &t.segments {
        assert!(0 <= start && start <= end, "segment {start}..{end}");
        assert!(
            end <= clip_cs + 100,
            "segment ends at {end} cs, clip is {clip_cs} cs"
        );
    }
}

fn load(path: &std::path::Path) -> (WhisperContext, f64) {
    let started = Instant::now();
    let ctx = WhisperContext::new_with_params(path, WhisperContextParameters::default())
        .expect("whisper.cpp loads the converted model");
    (ctx, started.elapsed().as_secs_f64())
}

#[test]
fn tiny_en_converts_and_transcribes_english_speech() {
    whisper_rs::install_logging_hooks();
    let files = ModelFiles::discover_in(&tiny_en_dirs()).expect("tiny.en files");
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("ggml-tiny.en.bin");
    let summary = convert_files(&files, &model, |_| {}).expect("conversion");
    assert_eq!(summary.model_type, "tiny.en");
    assert_eq!(summary.hparams.n_vocab, 51864);
    assert_eq!(summary.tokens, 50256);

    let (ctx, load_s) = load(&model);
    assert_eq!(ctx.model_n_vocab(), 51864);
    assert!(!ctx.is_multilingual());
    assert_eq!(ctx.model_n_audio_layer(), 4);
    assert_eq!(ctx.model_type_readable_str().unwrap(), "tiny");
    // whisper.cpp reads the byte-level vocabulary back as text.
    let tokens = ctx.tokenize(" hello world", 16).expect("tokenize");
    let round_trip: String = tokens
        .iter()
        .map(|&t| ctx.token_to_str(t).unwrap())
        .collect();
    assert_eq!(round_trip, " hello world");

    let sentence = "My brother is going to visit us next week with his two children.";
    let samples = speak(sentence, "en-us", tmp.path());
    let t = transcribe(&ctx, &samples, Some("en"));
    let wer = word_error_rate(sentence, &t.text);
    eprintln!(
        "tiny.en: converted in {:.2} s, loaded in {:.3} s, {:.1} s clip transcribed in {:.2} s: {:?} (WER {wer:.2})",
        summary.elapsed.as_secs_f64(),
        load_s,
        samples.len() as f64 / 16_000.0,
        t.seconds,
        t.text
    );
    assert!(wer <= 0.3, "WER {wer:.2}: {:?}", t.text);
    check_segments(&t, samples.len());
}

#[test]
fn tiny_en_quantised_to_q8_0_loads_and_transcribes_english_speech() {
    whisper_rs::install_logging_hooks();
    let files = ModelFiles::discover_in(&tiny_en_dirs()).expect("tiny.en files");
    let tmp = tempfile::tempdir().unwrap();
    let f16 = tmp.path().join("ggml-tiny.en.bin");
    let q8 = tmp.path().join("ggml-tiny.en-q8_0.bin");
    let f16_summary = convert_files(&files, &f16, |_| {}).expect("f16 conversion");
    let summary = convert_files_with(&files, &q8, &Options::with_weights(Weights::Q8_0), |_| {})
        .expect("q8_0 conversion");
    assert_eq!(summary.weights, Weights::Q8_0);
    assert_eq!(summary.tensors, f16_summary.tensors);
    // The matrices (most of the model) shrink from 2 bytes a value to 34 bytes per 32.
    let ratio = summary.bytes_written as f64 / f16_summary.bytes_written as f64;
    assert!((0.5..0.6).contains(&ratio), "q8_0 / f16 size {ratio:.3}");
    let header = std::fs::read(&q8).unwrap();
    let ftype = i32::from_le_bytes(header[44..48].try_into().unwrap());
    assert_eq!(
        ftype, 2007,
        "GGML's q8_0 file type with quantisation version 2"
    );

    let (ctx, load_s) = load(&q8);
    assert_eq!(ctx.model_ftype(), 7, "whisper.cpp sees q8_0 weights");
    assert_eq!(ctx.model_type_readable_str().unwrap(), "tiny");

    let sentence = "My brother is going to visit us next week with his two children.";
    let samples = speak(sentence, "en-us", tmp.path());
    let t = transcribe(&ctx, &samples, Some("en"));
    let wer = word_error_rate(sentence, &t.text);
    eprintln!(
        "tiny.en q8_0: {} bytes ({ratio:.2} of f16), loaded in {load_s:.3} s, {:.1} s clip transcribed in {:.2} s: {:?} (WER {wer:.2})",
        summary.bytes_written,
        samples.len() as f64 / 16_000.0,
        t.seconds,
        t.text
    );
    assert!(wer <= 0.3, "WER {wer:.2}: {:?}", t.text);
    check_segments(&t, samples.len());
}

#[test]
fn base_detects_and_transcribes_spanish_speech() {
    whisper_rs::install_logging_hooks();
    let files = ModelFiles::discover_in(&base_dirs()).expect("base files");
    assert_eq!(files.model_parts.len(), 2);
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("ggml-base.bin");
    let summary = convert_files(&files, &model, |_| {}).expect("conversion");
    assert_eq!(summary.model_type, "base");
    assert_eq!(summary.hparams.n_vocab, 51865);
    assert_eq!(summary.tokens, 50257);

    let (ctx, load_s) = load(&model);
    assert!(ctx.is_multilingual());
    assert_eq!(ctx.model_n_text_layer(), 6);

    let sentence = "Hoy hace buen tiempo y vamos a caminar hasta el parque con mis amigos.";
    let samples = speak(sentence, "es", tmp.path());
    let detected = transcribe(&ctx, &samples, None);
    let wer = word_error_rate(sentence, &detected.text);
    eprintln!(
        "base: converted in {:.2} s, loaded in {:.3} s, {:.1} s clip transcribed in {:.2} s with detection: {:?} ({:?}, WER {wer:.2})",
        summary.elapsed.as_secs_f64(),
        load_s,
        samples.len() as f64 / 16_000.0,
        detected.seconds,
        detected.text,
        detected.language
    );
    assert_eq!(detected.language, Some("es"), "{:?}", detected.text);
    assert!(wer <= 0.3, "WER {wer:.2}: {:?}", detected.text);
    check_segments(&detected, samples.len());

    let forced = transcribe(&ctx, &samples, Some("es"));
    let wer = word_error_rate(sentence, &forced.text);
    eprintln!(
        "base: language forced to es: {:.2} s: {:?} (WER {wer:.2})",
        forced.seconds, forced.text
    );
    assert_eq!(forced.language, Some("es"));
    assert!(wer <= 0.3, "WER {wer:.2}: {:?}", forced.text);
}
