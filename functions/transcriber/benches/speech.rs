//! Speech to text on the real models, the whole path the handler runs: Ogg/Opus voice note
//! → `audio::decode` (16 kHz mono) → `Engine::transcribe`, with 2 threads.
//!
//! Reports per model (tiny.en, base): model load time (the cold-start cost), the real-time
//! factor (processing time / audio time) for a ~5 s and a ~30 s note, language detection's
//! cost on base (auto vs forced), and the peak resident memory of a process that loaded the
//! model and transcribed (each model is measured in a fresh child process, so its peak is
//! its own).
//!
//! Run with `cargo bench -p transcriber --bench speech`. Without `--bench` (as `cargo test
//! --benches` runs it) it only checks that it starts.

use remedios_testkit::audio;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use remedios_testkit::wer::word_error_rate;
use transcriber::audio::{DecodeLimits, decode};
use transcriber::speech::{Engine, Language, SpeechSettings};

const THREADS: usize = 2;
const RUNS: usize = 3;
const CHILD_VAR: &str = "SPEECH_BENCH_MODEL";

fn model_path(file: &str) -> PathBuf {
    remedios_testkit::paths::whisper_model(file).unwrap_or_else(|e| panic!("{e}"))
}

/// Peak resident set size of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn load(path: &Path, language: Language) -> (Engine, Duration) {
    let started = Instant::now();
    let engine = Engine::load(&SpeechSettings {
        model_path: path.to_owned(),
        language,
        threads: THREADS,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    (engine, started.elapsed())
}

struct Note {
    name: &'static str,
    text: String,
    bytes: Vec<u8>,
}

/// Decode + transcribe `note` RUNS times after one warm-up; the median time and the last
/// transcript's word error rate.
fn full_path(engine: &Engine, note: &Note) -> (f64, Duration, f64) {
    let limits = DecodeLimits::default();
    let mut times = Vec::new();
    let mut wer = f64::NAN;
    let mut seconds = 0.0;
    for run in 0..=RUNS {
        let started = Instant::now();
        let audio = decode(&note.bytes, Some("audio/ogg; codecs=opus"), &limits)
            .unwrap_or_else(|e| panic!("{}: {e}", note.name));
        let transcript = engine
            .transcribe(&audio.samples)
            .unwrap_or_else(|e| panic!("{}: {e}", note.name));
        let elapsed = started.elapsed();
        if run > 0 {
            times.push(elapsed);
        }
        seconds = audio.duration.as_secs_f64();
        wer = word_error_rate(&note.text, &transcript.text);
    }
    (seconds, audio::median(times), wer)
}

/// The measurements of one model, in this (child) process.
fn measure(file: &str) {
    let path = model_path(file);
    let fx = audio::Fixtures::new();
    let notes: Vec<Note> = [
        ("5s", audio::SENTENCE.to_owned()),
        ("30s", audio::long_text(30)),
    ]
    .into_iter()
    .map(|(name, text)| {
        let bytes = audio::read(&fx.voice_note(&format!("{name}.ogg"), "en", &text));
        Note { name, text, bytes }
    })
    .collect();

    let loads: Vec<Duration> = (0..RUNS).map(|_| load(&path, Language::Auto).1).collect();
    println!(
        "{file}: load {:.0} ms (median of {RUNS}, page cache warm)",
        audio::median(loads).as_secs_f64() * 1e3
    );
    let (engine, _) = load(&path, Language::Auto);
    for note in &notes {
        let (seconds, time, wer) = full_path(&engine, note);
        println!(
            "{file}: {} note ({seconds:.1} s audio): {:.0} ms = RTF {:.3} ({:.0}x real time), WER {wer:.2}{}",
            note.name,
            time.as_secs_f64() * 1e3,
            time.as_secs_f64() / seconds,
            seconds / time.as_secs_f64(),
            if engine.is_multilingual() {
                ", language detected"
            } else {
                ""
            },
        );
    }
    if engine.is_multilingual() {
        drop(engine);
        let (forced, _) = load(&path, Language::Forced("en".into()));
        for note in &notes {
            let (seconds, time, wer) = full_path(&forced, note);
            println!(
                "{file}: {} note ({seconds:.1} s audio), language forced: {:.0} ms = RTF {:.3}, WER {wer:.2}",
                note.name,
                time.as_secs_f64() * 1e3,
                time.as_secs_f64() / seconds,
            );
        }
    }
    println!("{file}: peak RSS {:.0} MiB", peak_rss_mib());
}

fn main() {
    if let Ok(file) = std::env::var(CHILD_VAR) {
        measure(&file);
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("speech bench: run with `cargo bench -p transcriber --bench speech`");
        return;
    }
    println!(
        "speech bench: decode + transcribe, {THREADS} threads, median of {RUNS} runs after a warm-up"
    );
    let exe = std::env::current_exe().expect("the bench's own path");
    for file in ["ggml-tiny.en.bin", "ggml-base.bin"] {
        let status = Command::new(&exe)
            .env(CHILD_VAR, file)
            .status()
            .expect("run the bench for one model");
        assert!(status.success(), "{file}: {status}");
    }
}
