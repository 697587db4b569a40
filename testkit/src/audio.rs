//! Fixture making and signal measurements shared by the audio tests and the decode benchmark.
//!
//! Fixtures are generated at run time with the command-line tools a WhatsApp-like pipeline
//! would use: espeak-ng (speech), sox (tones), opusenc/opusdec (opus-tools) and ffmpeg. A
//! missing tool is a failure that names the Debian package to install, never a skip.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;

/// A sentence of about five seconds of synthetic speech.
pub const SENTENCE: &str = "Hello, this is a voice note for Remedios. \
    Please remind me to take two tablets of ibuprofen after lunch tomorrow.";

/// A temporary directory of generated fixtures, removed on drop.
pub struct Fixtures {
    dir: tempfile::TempDir,
}

impl Default for Fixtures {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixtures {
    /// Creates an empty fixture directory.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("transcriber-audio-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        Self { dir }
    }

    /// The path of a file named `name` in the fixture directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Speaks `text` with espeak-ng into a mono 22.05 kHz WAV file.
    pub fn speech_wav(&self, name: &str, text: &str) -> PathBuf {
        self.speech_wav_in(name, "en", text)
    }

    /// Speaks `text` with espeak-ng's `voice` (`"en"`, `"es"`…) into a mono 22.05 kHz WAV.
    pub fn speech_wav_in(&self, name: &str, voice: &str, text: &str) -> PathBuf {
        let out = self.path(name);
        run(
            "espeak-ng",
            "espeak-ng",
            &["-v", voice, "-s", "160", "-w", path_str(&out), text],
        );
        out
    }

    /// `text` spoken by espeak-ng and encoded as a WhatsApp-style voice note (Ogg/Opus,
    /// mono, 24 kbit/s, as opusenc makes them).
    pub fn voice_note(&self, name: &str, voice: &str, text: &str) -> PathBuf {
        let wav = self.speech_wav_in(&format!("{name}.wav"), voice, text);
        self.opus(&wav, name, 24, &[])
    }

    /// Makes a sine tone with sox: `freq` Hz, `seconds` long, at `rate` Hz, `channels`
    /// identical channels, amplitude 0.5, 16-bit WAV.
    pub fn tone_wav(
        &self,
        name: &str,
        freq: f64,
        seconds: f64,
        rate: u32,
        channels: u16,
    ) -> PathBuf {
        let out = self.path(name);
        let (rate, channels, seconds, freq) = (
            rate.to_string(),
            channels.to_string(),
            seconds.to_string(),
            freq.to_string(),
        );
        run(
            "sox",
            "sox",
            &[
                "-n",
                "-r",
                &rate,
                "-c",
                &channels,
                "-b",
                "16",
                path_str(&out),
                "synth",
                &seconds,
                "sine",
                &freq,
                "vol",
                "0.5",
            ],
        );
        out
    }

    /// Runs sox with `args` (input and output paths included by the caller).
    pub fn sox(&self, args: &[&str]) {
        run("sox", "sox", args);
    }

    /// Encodes `wav` to Ogg/Opus with opusenc at `kbps` kbit/s, as WhatsApp-style notes are.
    pub fn opus(&self, wav: &Path, name: &str, kbps: u32, extra: &[&str]) -> PathBuf {
        let out = self.path(name);
        let kbps = kbps.to_string();
        let mut args = vec!["--quiet", "--bitrate", &kbps];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[path_str(wav), path_str(&out)]);
        run("opusenc", "opus-tools", &args);
        out
    }

    /// Decodes an Ogg/Opus file with the reference `opusdec` to 32-bit float WAV at `rate`.
    pub fn opusdec(&self, input: &Path, name: &str, rate: u32) -> PathBuf {
        let out = self.path(name);
        let rate = rate.to_string();
        run(
            "opusdec",
            "opus-tools",
            &[
                "--quiet",
                "--float",
                "--rate",
                &rate,
                path_str(input),
                path_str(&out),
            ],
        );
        out
    }

    /// Converts `input` with ffmpeg; `args` go between the input and the output file.
    pub fn ffmpeg(&self, input: &Path, name: &str, args: &[&str]) -> PathBuf {
        let out = self.path(name);
        let mut all = vec![
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-i",
            path_str(input),
        ];
        all.extend_from_slice(args);
        all.push(path_str(&out));
        run("ffmpeg", "ffmpeg", &all);
        out
    }
}

/// Runs `tool` with `args`, failing the test (never passing quietly) if it is missing or fails.
pub fn run(tool: &str, apt_package: &str, args: &[&str]) -> String {
    let output = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            panic!(
                "`{tool}` is needed to generate audio fixtures but is not installed: \
                 run `apt-get install {apt_package}`"
            )
        }
        panic!("cannot run `{tool}`: {e}")
    });
    assert!(
        output.status.success(),
        "`{tool} {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 fixture path {}", path.display()))
}

/// Reads a fixture file.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The duration of a media file in seconds, as ffprobe reports it.
pub fn duration_secs(path: &Path) -> f64 {
    let out = run(
        "ffprobe",
        "ffmpeg",
        &[
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "default=noprint_wrappers=1:nokey=1",
            path_str(path),
        ],
    );
    out.trim().parse().unwrap_or_else(|e| {
        panic!(
            "ffprobe gave no duration for {}: {e} ({out:?})",
            path.display()
        )
    })
}

/// Reads a 32-bit float WAV (as written by `opusdec --float`), mixing to mono.
pub fn read_float_wav(path: &Path) -> (u32, Vec<f32>) {
    let data = read(path);
    let mut pos = 12;
    let (mut rate, mut channels) = (0u32, 0usize);
    while pos + 8 <= data.len() {
        let id = &data[pos..pos + 4];
        let size = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]])
            as usize;
        let body = &data[pos + 8..(pos + 8 + size).min(data.len())];
        match id {
            b"fmt " => {
                channels = usize::from(u16::from_le_bytes([body[2], body[3]]));
                rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                let bits = u16::from_le_bytes([body[14], body[15]]);
                assert_eq!(bits, 32, "{} is not a float WAV", path.display());
            }
            b"data" => {
                assert!(channels > 0, "data before fmt in {}", path.display());
                let samples: Vec<f32> = body
                    .chunks_exact(4 * channels)
                    .map(|frame| {
                        frame
                            .chunks_exact(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                            .sum::<f32>()
                            / channels as f32
                    })
                    .collect();
                return (rate, samples);
            }
            _ => {}
        }
        pos += 8 + size + (size & 1);
    }
    panic!("no data chunk in {}", path.display())
}

/// Root-mean-square level.
pub fn rms(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
}

/// How closely `actual` follows `reference` (aligned, compared over the common length):
/// reference power over difference power, in dB.
pub fn snr_db(reference: &[f32], actual: &[f32]) -> f64 {
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for (&r, &a) in reference.iter().zip(actual) {
        signal += f64::from(r).powi(2);
        noise += f64::from(r - a).powi(2);
    }
    10.0 * (signal / noise.max(1e-30)).log10()
}

/// Frequency estimated from upward zero crossings (for a pure tone).
pub fn zero_crossing_hz(samples: &[f32], rate: u32) -> f64 {
    let crossings: Vec<usize> = samples
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
        .map(|(i, _)| i)
        .collect();
    match (crossings.first(), crossings.last()) {
        (Some(&first), Some(&last)) if crossings.len() > 1 => {
            (crossings.len() - 1) as f64 * f64::from(rate) / (last - first) as f64
        }
        _ => 0.0,
    }
}

/// Signal-to-residual ratio (dB) of `samples` against the best-fitting sine of `freq` Hz
/// (amplitude and phase fitted by least squares). High only if the tone is at `freq` and
/// clean; a wrong pitch, aliasing, noise or a time-varying gain all lower it.
pub fn tone_snr_db(samples: &[f32], freq: f64, rate: u32) -> f64 {
    let w = std::f64::consts::TAU * freq / f64::from(rate);
    let (mut ss, mut sc, mut cc, mut xs, mut xc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (n, &x) in samples.iter().enumerate() {
        let (s, c) = (w * n as f64).sin_cos();
        let x = f64::from(x);
        ss += s * s;
        sc += s * c;
        cc += c * c;
        xs += x * s;
        xc += x * c;
    }
    let det = ss * cc - sc * sc;
    let a = (xs * cc - xc * sc) / det;
    let b = (xc * ss - xs * sc) / det;
    let (mut signal, mut residual) = (0.0, 0.0);
    for (n, &x) in samples.iter().enumerate() {
        let (s, c) = (w * n as f64).sin_cos();
        let fit = a * s + b * c;
        signal += fit * fit;
        residual += (f64::from(x) - fit).powi(2);
    }
    10.0 * (signal / residual.max(1e-30)).log10()
}

/// An AMR-NB file of `frames` 12.2 kbit/s frames (the `#!AMR` magic, then per frame a 0x3C
/// header byte and 31 bytes of payload). No AMR encoder ships with Debian's ffmpeg, so it is
/// built by hand; nothing here decodes AMR anyway.
pub fn amr_nb(frames: u8) -> Vec<u8> {
    let mut amr = b"#!AMR\n".to_vec();
    for i in 0..frames {
        amr.push(0x3C);
        amr.extend((0..31u8).map(|j| i.wrapping_mul(31).wrapping_add(j)));
    }
    amr
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Byte offsets of every Ogg page ("OggS" capture pattern) in `data`.
pub fn ogg_page_offsets(data: &[u8]) -> Vec<usize> {
    data.windows(4)
        .enumerate()
        .filter(|(_, w)| w == b"OggS")
        .map(|(i, _)| i)
        .collect()
}

/// About `target_secs` of speech (repeated sentences, varied), as text for espeak-ng.
pub fn long_text(target_secs: u32) -> String {
    const SENTENCES: [&str; 4] = [
        "Good morning, I wanted to tell you about the appointment with the doctor on Friday.",
        "She said the new medicine should be taken twice a day with plenty of water.",
        "If the headache comes back, I should call the clinic before the weekend.",
        "Also, please buy bread, tomatoes and a little olive oil on the way home.",
    ];
    // Each sentence is roughly four seconds at 160 words per minute.
    let count = (target_secs / 4).max(1) as usize;
    SENTENCES
        .iter()
        .cycle()
        .take(count)
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The median of some timings (the upper one of an even count): benchmarks report it.
pub fn median(mut values: Vec<std::time::Duration>) -> std::time::Duration {
    values.sort();
    values[values.len() / 2]
}
