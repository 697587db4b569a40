//! Our speech path next to faster-whisper, on the same notes and the same weights (tiny.en, or
//! the multilingual base model with language detection).
//!
//! Run by `scripts/bench-speech.sh`, which makes the notes (espeak-ng + opusenc), runs
//! faster-whisper on them (`scripts/bench_faster_whisper.py`, its JSON goes to
//! `--faster-whisper`) and then this bench:
//!
//! ```text
//! cargo bench -p transcriber --bench compare -- --notes DIR --model FILE \
//!     [--extra-model LABEL=FILE]... [--variant NAME]... \
//!     [--faster-whisper FILE.json] [--json OUT.json]
//! ```
//!
//! `DIR` holds `<clip>.ogg` (the voice note) and `<clip>.txt` (the words spoken). For each
//! clip, our whole path (`audio::decode` + `Engine::transcribe`, 2 threads) runs with every
//! engine once to warm up and then [`runs`] rounds (3, or `BENCH_SPEECH_RUNS`), the engines
//! taking turns within a round; the median and fastest times and the word error rate are
//! reported. The engines: `--model` with the default [`Tuning`]; the same with whisper.cpp's
//! own handling where the default differs (`shrink_window` off for clips whose encoder
//! window it shrinks, `split_long` off for longer ones); each `--extra-model` with the
//! default tuning; and `--model` with each `--variant` (see [`variant`]: `context`,
//! `chunk20`…). faster-whisper's transcripts are scored with the same [`word_error_rate`],
//! so both columns use one definition. Prints one table, and JSON with `--json`.
//!
//! Without `--bench` (as `cargo test --benches` runs it) it only checks that it starts.

use remedios_testkit::audio;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use remedios_testkit::wer::word_error_rate;
use serde::{Deserialize, Serialize};
use transcriber::audio::{DecodeLimits, decode};
use transcriber::speech::{Engine, Language, SpeechSettings, Tuning};

/// Threads for both engines; `BENCH_SPEECH_THREADS` overrides it for experiments.
fn threads() -> usize {
    std::env::var("BENCH_SPEECH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}
/// Measured runs per clip and engine; `BENCH_SPEECH_RUNS` overrides it.
fn runs() -> usize {
    std::env::var("BENCH_SPEECH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3)
}

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
    #[serde(default)]
    times_s: Vec<f64>,
    cpu_s: f64,
    text: String,
    /// The language faster-whisper transcribed in (forced or detected).
    #[serde(default)]
    language: Option<String>,
}

/// One row of the table (and of the JSON output).
#[derive(Debug, Serialize)]
struct Row {
    clip: String,
    engine: String,
    audio_s: f64,
    median_s: f64,
    /// The fastest run (the least disturbed by other processes).
    min_s: Option<f64>,
    /// Median time of `audio::decode` alone (ours only).
    decode_s: Option<f64>,
    /// Median CPU time (all threads) of the process per run: with 2 threads on an idle
    /// machine it approaches twice `median_s`; much less means the threads waited for a core.
    cpu_s: Option<f64>,
    /// Encoder runs per transcription (ours only): one per chunk, more when whisper.cpp
    /// seeks inside a chunk and encodes again.
    encodes: Option<usize>,
    s_per_audio_s: f64,
    wer: f64,
    words: usize,
    /// The language transcribed in (forced or detected).
    language: Option<String>,
    text: String,
}

#[derive(Debug, Serialize)]
struct Report {
    /// The machine's CPU model and flags: ratios from different machines are not
    /// comparable.
    cpu: Cpu,
    /// What this build of whisper.cpp uses (`LLAMAFILE = 1`, ...).
    ggml: String,
    threads: usize,
    runs: usize,
    loads: Vec<(String, f64)>,
    rows: Vec<Row>,
}

#[derive(Debug, Serialize)]
struct Cpu {
    model: String,
    flags: String,
}

impl Cpu {
    /// From /proc/cpuinfo (empty elsewhere).
    fn of_this_machine() -> Self {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            info.lines()
                .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        Cpu {
            model: field("model name"),
            flags: field("flags"),
        }
    }
}

struct Args {
    notes: PathBuf,
    model: PathBuf,
    faster_whisper: Option<PathBuf>,
    json: Option<PathBuf>,
    /// `--variant NAME`: more rows, with the [`variant`] tuning of that name.
    variants: Vec<String>,
    /// `--extra-model LABEL=FILE`: more rows, another model file with the default tuning.
    extra_models: Vec<(String, PathBuf)>,
}

/// Tunings to compare with the default, by name (`--variant`).
/// Names joined with `+` apply one after the other (`detect8+split20`).
fn variant(name: &str) -> Tuning {
    name.split('+').fold(Tuning::default(), |tuning, part| {
        apply_variant(part, tuning)
    })
}

fn apply_variant(name: &str, default: Tuning) -> Tuning {
    let number = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("variant {name}: {prefix} needs a number"))
    };
    match name {
        "shrink-off" => Tuning {
            shrink_window: false,
            ..default
        },
        "split-off" => Tuning {
            split_long: false,
            ..default
        },
        "no-fallback" => Tuning {
            temperature_inc: 0.0,
            ..default
        },
        "context" => Tuning {
            condition_on_previous_text: true,
            ..default
        },
        // One segment for short notes too (chunks of long ones have it by default).
        "single" => Tuning {
            single_segment_short: true,
            ..default
        },
        // Timestamps inside the chunks of long notes, as before: whisper.cpp may then seek
        // inside a chunk and encode it again.
        "chunk-timestamps" => Tuning {
            single_segment_chunks: false,
            ..default
        },
        _ if name.starts_with("detect") => Tuning {
            detect_ms: number("detect") * 1000,
            ..default
        },
        "flash" => Tuning {
            flash_attention: true,
            ..default
        },
        // Without voice activity detection: whisper hears the whole note, pauses included.
        "no-vad" => Tuning {
            vad: false,
            ..default
        },
        // One decoding state with every thread, chunk after chunk, as before.
        "serial" => Tuning {
            parallel_chunks: false,
            ..default
        },
        "whisper-defaults" => Tuning::whisper_defaults(),
        _ if name.starts_with("chunk") => Tuning {
            max_chunk_ms: number("chunk") * 1000,
            ..default
        },
        _ if name.starts_with("split") => Tuning {
            split_above_ms: number("split") * 1000,
            ..default
        },
        _ if name.starts_with("margin") => Tuning {
            window_margin_ms: number("margin"),
            ..default
        },
        _ => panic!(
            "unknown variant {name}: shrink-off, split-off, no-fallback, context, single, \
             chunk-timestamps, flash, no-vad, serial, \
             whisper-defaults, chunkSECONDS, marginMS, detectSECONDS (0: the whole chunk), \
             splitSECONDS (split audio longer than this); join with + to combine"
        ),
    }
}

/// The arguments, or `None` without `--notes` (as `cargo bench -p transcriber` runs every
/// bench with no arguments of its own).
fn parse_args() -> Option<Args> {
    let mut notes = None;
    let mut model = None;
    let mut faster_whisper = None;
    let mut json = None;
    let mut variants = Vec::new();
    let mut extra_models = Vec::new();
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
            "--variant" => {
                let name = value("--variant").to_string_lossy().into_owned();
                variant(&name); // fails early on an unknown name
                variants.push(name);
            }
            "--extra-model" => {
                let spec = value("--extra-model").to_string_lossy().into_owned();
                let (label, path) = spec
                    .split_once('=')
                    .unwrap_or_else(|| panic!("--extra-model needs LABEL=FILE, not {spec}"));
                extra_models.push((label.to_owned(), PathBuf::from(path)));
            }
            _ => {} // `--bench` and cargo's own flags
        }
    }
    let notes = notes?;
    let model =
        model.unwrap_or_else(|| remedios_testkit::paths::models_dir().join("ggml-tiny.en.bin"));
    assert!(
        model.is_file(),
        "whisper model {} is missing: run scripts/bootstrap.sh (it runs scripts/models.sh)",
        model.display()
    );
    Some(Args {
        notes,
        model,
        faster_whisper,
        json,
        variants,
        extra_models,
    })
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

/// Decode + transcribe `clip` with each engine once to warm up, then [`runs`] rounds in
/// which every engine runs once (interleaved, so a busy spell of the machine hits them
/// alike): a row per engine with the median and the fastest run.
fn measure(engines: &[(String, &Engine)], clip: &Clip) -> Vec<Row> {
    let limits = DecodeLimits::default();
    let mut times = vec![Vec::new(); engines.len()];
    let mut decode_times = vec![Vec::new(); engines.len()];
    let mut cpu_times = vec![Vec::new(); engines.len()];
    let mut texts = vec![String::new(); engines.len()];
    let mut languages = vec![None; engines.len()];
    let mut encodes = vec![0; engines.len()];
    let mut seconds = 0.0;
    for run in 0..=runs() {
        for (i, (_, engine)) in engines.iter().enumerate() {
            let cpu = cpu_seconds();
            let started = Instant::now();
            let audio = decode(&clip.bytes, Some("audio/ogg; codecs=opus"), &limits)
                .unwrap_or_else(|e| panic!("{}: {e}", clip.name));
            let decoded = started.elapsed();
            let encodes_before = engine.encodes();
            let transcript = engine
                .transcribe(&audio.samples)
                .unwrap_or_else(|e| panic!("{}: {e}", clip.name));
            encodes[i] = engine.encodes() - encodes_before;
            if run > 0 {
                times[i].push(started.elapsed());
                decode_times[i].push(decoded);
                cpu_times[i].push(Duration::from_secs_f64(cpu_seconds() - cpu));
            }
            seconds = audio.duration.as_secs_f64();
            texts[i] = transcript.text;
            languages[i] = transcript.language;
        }
    }
    engines
        .iter()
        .enumerate()
        .map(|(i, (label, _))| {
            let fastest = times[i].iter().min().copied().unwrap_or_default();
            let median_s = audio::median(std::mem::take(&mut times[i])).as_secs_f64();
            let text = std::mem::take(&mut texts[i]);
            let mut row = row(&clip.name, label, seconds, median_s, &clip.text, text);
            row.min_s = Some(fastest.as_secs_f64());
            row.decode_s = Some(audio::median(std::mem::take(&mut decode_times[i])).as_secs_f64());
            row.cpu_s = Some(audio::median(std::mem::take(&mut cpu_times[i])).as_secs_f64());
            row.language = languages[i].take();
            row.encodes = Some(encodes[i]);
            row
        })
        .collect()
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
        min_s: None,
        decode_s: None,
        cpu_s: None,
        encodes: None,
        s_per_audio_s: median_s / audio_s,
        wer: word_error_rate(reference, &text),
        words: text.split_whitespace().count(),
        language: None,
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
    let Some(args) = parse_args() else {
        println!(
            "compare bench: not run: it compares with faster-whisper on notes that \
scripts/bench-speech.sh makes (--notes DIR); run that script, or \
`cargo bench -p transcriber --bench decode` / `--bench speech` on their own"
        );
        return;
    };
    let clips = clips(&args.notes);
    let mut report = Report {
        cpu: Cpu::of_this_machine(),
        ggml: transcriber::speech::system_info().to_owned(),
        threads: threads(),
        runs: runs(),
        loads: Vec::new(),
        rows: Vec::new(),
    };

    let (default, load_s) = load(&args.model, Tuning::default());
    report.loads.push(("whisper.cpp (ours)".into(), load_s));
    let (unshrunk, _) = load(&args.model, variant("shrink-off"));
    let (unsplit, _) = load(&args.model, variant("split-off"));
    let extra: Vec<(String, Engine)> = args
        .variants
        .iter()
        .map(|name| {
            (
                format!("whisper.cpp ours ({name})"),
                load(&args.model, variant(name)).0,
            )
        })
        .chain(args.extra_models.iter().map(|(label, path)| {
            let (engine, load_s) = load(path, Tuning::default());
            report
                .loads
                .push((format!("whisper.cpp ({label})"), load_s));
            (format!("whisper.cpp ours ({label})"), engine)
        }))
        .collect();
    for clip in &clips {
        let mut engines = vec![("whisper.cpp ours (default)".to_owned(), &default)];
        // The default next to whisper.cpp's own way where they differ: the full 30 s window
        // for short clips, whole 30 s windows instead of chunks for long ones.
        let samples = decode(
            &clip.bytes,
            Some("audio/ogg; codecs=opus"),
            &DecodeLimits::default(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", clip.name))
        .samples
        .len();
        if default.tuning().window_for(samples) > 0 {
            engines.push(("whisper.cpp ours (shrink off)".to_owned(), &unshrunk));
        } else {
            engines.push(("whisper.cpp ours (split off)".to_owned(), &unsplit));
        }
        engines.extend(extra.iter().map(|(label, engine)| (label.clone(), engine)));
        report.rows.extend(measure(&engines, clip));
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
            row.language = their.language;
            row.min_s = their.times_s.iter().copied().reduce(f64::min);
            report.rows.push(row);
        }
    }
    report.rows.sort_by(|a, b| a.clip.cmp(&b.clip));

    let model = args
        .model
        .file_stem()
        .map_or_else(|| "whisper".into(), |stem| stem.to_string_lossy());
    let detection = if default.is_multilingual() {
        ", language detected"
    } else {
        ""
    };
    println!(
        "\n{model}{detection}, {} threads, decode + transcribe, median (and fastest) of {} runs \
         after a warm-up\n",
        threads(),
        runs()
    );
    println!(
        "| {:<8} | {:>7} | {:<38} | {:>8} | {:>8} | {:>13} | {:>5} | {:>4} | {:>8} | {:>8} | {:>7} |",
        "clip",
        "audio s",
        "engine",
        "median s",
        "min s",
        "s per audio s",
        "WER",
        "lang",
        "CPU s",
        "decode s",
        "encodes"
    );
    println!(
        "|{:-<10}|{:->9}|{:-<40}|{:->10}|{:->10}|{:->15}|{:->7}|{:->6}|{:->10}|{:->10}|{:->9}|",
        "", "", "", "", "", "", "", "", "", "", ""
    );
    let optional = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    for r in &report.rows {
        println!(
            "| {:<8} | {:>7.1} | {:<38} | {:>8.3} | {:>8} | {:>13.3} | {:>5.3} | {:>4} | {:>8} | {:>8} | {:>7} |",
            r.clip,
            r.audio_s,
            r.engine,
            r.median_s,
            optional(r.min_s),
            r.s_per_audio_s,
            r.wer,
            r.language.as_deref().unwrap_or("-"),
            optional(r.cpu_s),
            optional(r.decode_s),
            r.encodes.map_or_else(|| "-".to_owned(), |n| n.to_string())
        );
    }
    println!();
    if args.faster_whisper.is_some() {
        println!(
            "faster-whisper's int8 is its quantisation of the same weights (made at load \
             time); our f16 rows use the published weights, and the q8_0 rows our 8-bit \
             quantisation of them: q8_0 against int8 is the like-for-like comparison.\n"
        );
    }
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
