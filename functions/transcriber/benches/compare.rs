//! Our speech path next to faster-whisper, on the same notes and the same tiny.en weights.
//!
//! Run by `scripts/bench-speech.sh`, which makes the notes (espeak-ng + opusenc), runs
//! faster-whisper on them (`scripts/bench_faster_whisper.py`, its JSON goes to
//! `--faster-whisper`) and then this bench:
//!
//! ```text
//! cargo bench -p transcriber --bench compare -- --notes DIR --model FILE \
//!     [--faster-whisper FILE.json] [--json OUT.json]
//! ```
//!
//! `DIR` holds `<clip>.ogg` (the voice note) and `<clip>.txt` (the words spoken). For each
//! clip, our whole path (`audio::decode` + `Engine::transcribe`, 2 threads) runs once to warm
//! up and then [`RUNS`] times; the median time and the word error rate are reported, with the
//! default [`Tuning`] and, for clips whose encoder window it shrinks, with `shrink_window`
//! off. faster-whisper's transcripts are scored with the same [`word_error_rate`], so both
//! columns use one definition. Prints one table, and JSON with `--json`.
//!
//! Without `--bench` (as `cargo test --benches` runs it) it only checks that it starts.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use transcriber::audio::{DecodeLimits, decode};
use transcriber::speech::{Engine, Language, SpeechSettings, Tuning, word_error_rate};

/// Threads for both engines; `BENCH_SPEECH_THREADS` overrides it for experiments.
fn threads() -> usize {
    std::env::var("BENCH_SPEECH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}
const RUNS: usize = 3;

/// One clip of the notes directory.
struct Clip {
    name: String,
    text: String,
    bytes: Vec<u8>,
}

/// faster-whisper's results, as `scripts/bench_faster_whisper.py` writes them.
#[derive(Debug, Deserialize)]
struct TheirRun {
    engine: String,
    load_s: f64,
    clips: Vec<TheirClip>,
}

#[derive(Debug, Deserialize)]
struct TheirClip {
    name: String,
    audio_s: f64,
    median_s: f64,
    cpu_s: f64,
    text: String,
}

/// One row of the table (and of the JSON output).
#[derive(Debug, Serialize)]
struct Row {
    clip: String,
    engine: String,
    audio_s: f64,
    median_s: f64,
    /// Median time of `audio::decode` alone (ours only).
    decode_s: Option<f64>,
    /// Median CPU time (all threads) of the process per run: with 2 threads on an idle
    /// machine it approaches twice `median_s`; much less means the threads waited for a core.
    cpu_s: Option<f64>,
    s_per_audio_s: f64,
    wer: f64,
    words: usize,
    text: String,
}

#[derive(Debug, Serialize)]
struct Report {
    threads: usize,
    runs: usize,
    loads: Vec<(String, f64)>,
    rows: Vec<Row>,
}

struct Args {
    notes: PathBuf,
    model: PathBuf,
    faster_whisper: Option<PathBuf>,
    json: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut notes = None;
    let mut model = None;
    let mut faster_whisper = None;
    let mut json = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            PathBuf::from(
                args.next()
                    .unwrap_or_else(|| panic!("{flag} needs a value")),
            )
        };
        match arg.as_str() {
            "--notes" => notes = Some(value("--notes")),
            "--model" => model = Some(value("--model")),
            "--faster-whisper" => faster_whisper = Some(value("--faster-whisper")),
            "--json" => json = Some(value("--json")),
            _ => {} // `--bench` and cargo's own flags
        }
    }
    let model = model.unwrap_or_else(|| {
        remedios_local::paths::cache_dir()
            .join("models")
            .join("ggml-tiny.en.bin")
    });
    assert!(
        model.is_file(),
        "whisper model {} is missing: run scripts/bootstrap.sh (it runs scripts/models.sh)",
        model.display()
    );
    Args {
        notes: notes.expect("--notes DIR is needed: run scripts/bench-speech.sh, which makes it"),
        model,
        faster_whisper,
        json,
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The clips of `dir` (`<name>.ogg` with `<name>.txt`), by name.
fn clips(dir: &Path) -> Vec<Clip> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list the notes directory {}: {e}", dir.display()));
    let mut clips: Vec<Clip> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "ogg"))
        .map(|ogg| {
            let name = ogg
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&read(&ogg.with_extension("txt"))).into_owned();
            Clip {
                name,
                text,
                bytes: read(&ogg),
            }
        })
        .collect();
    assert!(!clips.is_empty(), "no .ogg notes in {}", dir.display());
    clips.sort_by(|a, b| a.name.cmp(&b.name));
    clips
}

/// Decode + transcribe `clip` once to warm up, then RUNS times: a row with the median.
fn measure(engine: &Engine, label: &str, clip: &Clip) -> Row {
    let limits = DecodeLimits::default();
    let mut times = Vec::new();
    let mut decode_times = Vec::new();
    let mut cpu_times = Vec::new();
    let mut text = String::new();
    let mut seconds = 0.0;
    for run in 0..=RUNS {
        let cpu = cpu_seconds();
        let started = Instant::now();
        let audio = decode(&clip.bytes, Some("audio/ogg; codecs=opus"), &limits)
            .unwrap_or_else(|e| panic!("{}: {e}", clip.name));
        let decoded = started.elapsed();
        let transcript = engine
            .transcribe(&audio.samples)
            .unwrap_or_else(|e| panic!("{}: {e}", clip.name));
        if run > 0 {
            times.push(started.elapsed());
            decode_times.push(decoded);
            cpu_times.push(Duration::from_secs_f64(cpu_seconds() - cpu));
        }
        seconds = audio.duration.as_secs_f64();
        text = transcript.text;
    }
    let median_s = common::median(times).as_secs_f64();
    let mut row = row(&clip.name, label, seconds, median_s, &clip.text, text);
    row.decode_s = Some(common::median(decode_times).as_secs_f64());
    row.cpu_s = Some(common::median(cpu_times).as_secs_f64());
    row
}

/// CPU time (user + system) this process has used, in seconds, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces):
    // utime and stime are the 12th and 13th, in clock ticks (USER_HZ, 100 on Linux).
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

fn row(
    clip: &str,
    engine: &str,
    audio_s: f64,
    median_s: f64,
    reference: &str,
    text: String,
) -> Row {
    Row {
        clip: clip.to_owned(),
        engine: engine.to_owned(),
        audio_s,
        median_s,
        decode_s: None,
        cpu_s: None,
        s_per_audio_s: median_s / audio_s,
        wer: word_error_rate(reference, &text),
        words: text.split_whitespace().count(),
        text,
    }
}

fn load(model: &Path, tuning: Tuning) -> (Engine, f64) {
    let settings = SpeechSettings {
        model_path: model.to_owned(),
        language: Language::Auto,
        threads: threads(),
    };
    let started = Instant::now();
    let engine = Engine::load_tuned(&settings, tuning).unwrap_or_else(|e| panic!("{e}"));
    (engine, started.elapsed().as_secs_f64())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("compare bench: run scripts/bench-speech.sh");
        return;
    }
    let args = parse_args();
    let clips = clips(&args.notes);
    let mut report = Report {
        threads: threads(),
        runs: RUNS,
        loads: Vec::new(),
        rows: Vec::new(),
    };

    let (default, load_s) = load(&args.model, Tuning::default());
    report.loads.push(("whisper.cpp (ours)".into(), load_s));
    let no_shrink = Tuning {
        shrink_window: false,
        ..Tuning::default()
    };
    let (unshrunk, _) = load(&args.model, no_shrink);
    for clip in &clips {
        report
            .rows
            .push(measure(&default, "whisper.cpp ours (default)", clip));
        // Only where the default shrinks the window; otherwise the two are the same run.
        let samples = decode(
            &clip.bytes,
            Some("audio/ogg; codecs=opus"),
            &DecodeLimits::default(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", clip.name))
        .samples
        .len();
        if default.tuning().window_for(samples) > 0 {
            report
                .rows
                .push(measure(&unshrunk, "whisper.cpp ours (shrink off)", clip));
        }
    }

    if let Some(path) = &args.faster_whisper {
        let theirs: TheirRun = serde_json::from_slice(&read(path))
            .unwrap_or_else(|e| panic!("{} is not the faster-whisper JSON: {e}", path.display()));
        report.loads.push((theirs.engine.clone(), theirs.load_s));
        for their in theirs.clips {
            let Some(clip) = clips.iter().find(|c| c.name == their.name) else {
                panic!(
                    "faster-whisper ran a clip {} that is not in the notes",
                    their.name
                );
            };
            let mut row = row(
                &clip.name,
                &theirs.engine,
                their.audio_s,
                their.median_s,
                &clip.text,
                their.text,
            );
            row.cpu_s = Some(their.cpu_s);
            report.rows.push(row);
        }
    }
    report.rows.sort_by(|a, b| a.clip.cmp(&b.clip));

    println!(
        "\ntiny.en, {} threads, decode + transcribe, median of {RUNS} runs after a warm-up\n",
        threads()
    );
    println!(
        "| {:<8} | {:>7} | {:<38} | {:>8} | {:>13} | {:>5} | {:>8} | {:>8} |",
        "clip", "audio s", "engine", "median s", "s per audio s", "WER", "CPU s", "decode s"
    );
    println!(
        "|{:-<10}|{:->9}|{:-<40}|{:->10}|{:->15}|{:->7}|{:->10}|{:->10}|",
        "", "", "", "", "", "", "", ""
    );
    let optional = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    for r in &report.rows {
        println!(
            "| {:<8} | {:>7.1} | {:<38} | {:>8.3} | {:>13.3} | {:>5.3} | {:>8} | {:>8} |",
            r.clip,
            r.audio_s,
            r.engine,
            r.median_s,
            r.s_per_audio_s,
            r.wer,
            optional(r.cpu_s),
            optional(r.decode_s)
        );
    }
    println!();
    for (engine, seconds) in &report.loads {
        println!("model load, {engine}: {seconds:.2} s");
    }
    for r in &report.rows {
        println!("transcript, {} / {}: {}", r.clip, r.engine, r.text);
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).expect("the report serialises");
        std::fs::write(path, json)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}
