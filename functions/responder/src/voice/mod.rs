//! Speaking answers: text to a WhatsApp voice note, offline.
//!
//! - [`espeak`]: the text to phonemes (espeak-ng, loaded at run time);
//! - [`piper`]: the phonemes to speech with a Piper voice (ONNX Runtime, loaded at run
//!   time: `ort` with `load-dynamic`, the library from the PyPI `onnxruntime` wheel);
//! - [`ogg_opus`]: the speech to an Ogg/Opus voice note.
//!
//! Nothing is downloaded at build or run time: the libraries, espeak's data and the
//! voices are files the deployment provides (a layer, or S3 like the whisper model).

pub mod espeak;
pub mod ogg_opus;
pub mod piper;
pub mod settings;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use thiserror::Error;

use espeak::{Espeak, EspeakError};
use ogg_opus::{ENCODE_RATE, EncodeError};
use piper::{PiperError, PiperVoice};

/// The bitrate of voice replies: about 150 s fit WhatsApp's 512 KB for a voice note.
pub const BITRATE: i32 = 24_000;
/// A pause between sentences spoken one at a time, in seconds.
const SENTENCE_PAUSE: f32 = 0.25;

/// Why an answer could not be spoken.
#[derive(Debug, Error)]
pub enum VoiceError {
    #[error("cannot load ONNX Runtime from {path}: {reason}")]
    Runtime { path: String, reason: String },
    #[error(transparent)]
    Espeak(#[from] EspeakError),
    #[error(transparent)]
    Piper(#[from] PiperError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("resampling the speech failed: {0}")]
    Resample(String),
    #[error("no voice for the language {0:?}")]
    NoVoice(String),
}

impl VoiceError {
    /// A short name for metrics and logs.
    pub fn cause(&self) -> &'static str {
        match self {
            VoiceError::Runtime { .. } | VoiceError::Espeak(_) => "engine",
            VoiceError::Piper(PiperError::Run(_)) => "synthesis",
            VoiceError::Piper(_) => "voice",
            VoiceError::Encode(_) | VoiceError::Resample(_) => "encoding",
            VoiceError::NoVoice(_) => "no_voice",
        }
    }
}

/// Where the engine's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceFiles {
    /// `libonnxruntime.so`.
    pub onnxruntime: PathBuf,
    /// `libespeak-ng.so`.
    pub espeak: PathBuf,
    /// The directory holding `espeak-ng-data`.
    pub espeak_data: PathBuf,
    /// A Piper model (`*.onnx`, its `*.onnx.json` beside it) per language code (`en`).
    pub voices: Vec<(String, PathBuf)>,
}

/// An answer spoken.
#[derive(Debug, Clone)]
pub struct Spoken {
    /// The Ogg/Opus voice note.
    pub ogg: Vec<u8>,
    /// How long it plays.
    pub audio: Duration,
    /// Phonemes and speech.
    pub synthesis: Duration,
    /// Resampling and Opus.
    pub encoding: Duration,
}

/// The speech engine with its voices, loaded once per container.
#[derive(Debug)]
pub struct Speaker {
    espeak: Espeak,
    voices: HashMap<String, PiperVoice>,
}

/// ONNX Runtime, initialised once per process from `library` (a failure is not kept:
/// a later call may find the library).
fn runtime(library: &Path) -> Result<ort::environment::Environment, VoiceError> {
    static RUNTIME: Mutex<Option<ort::environment::Environment>> = Mutex::new(None);
    let mut runtime = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(environment) = runtime.as_ref() {
        return Ok(environment.clone());
    }
    let failed = |reason: String| VoiceError::Runtime {
        path: library.display().to_string(),
        reason,
    };
    if !library.is_file() {
        return Err(failed("no such file".into()));
    }
    let environment = ort::init_from(library)
        .map_err(|e| failed(e.to_string()))?
        .with_name("remedios-voice")
        .build()
        .map_err(|e| failed(e.to_string()))?;
    *runtime = Some(environment.clone());
    Ok(environment)
}

impl Speaker {
    /// Loads the engine and every voice of `files`, each model using `threads` threads.
    pub fn load(files: &VoiceFiles, threads: usize) -> Result<Self, VoiceError> {
        let environment = runtime(&files.onnxruntime)?;
        let espeak = Espeak::load(&files.espeak, &files.espeak_data)?;
        let mut voices = HashMap::new();
        for (lang, model) in &files.voices {
            voices.insert(
                lang.to_ascii_lowercase(),
                PiperVoice::load(&environment, model, threads)?,
            );
        }
        Ok(Speaker { espeak, voices })
    }

    /// Whether it speaks `lang` (`en`, `es`).
    pub fn speaks(&self, lang: &str) -> bool {
        self.voices.contains_key(&lang.to_ascii_lowercase())
    }

    /// `text` spoken in `lang`, as an Ogg/Opus voice note.
    pub fn speak(&self, text: &str, lang: &str) -> Result<Spoken, VoiceError> {
        let voice = self
            .voices
            .get(&lang.to_ascii_lowercase())
            .ok_or_else(|| VoiceError::NoVoice(lang.to_owned()))?;
        let started = Instant::now();
        let phonemes = self.espeak.phonemize(text, voice.espeak_voice())?;
        let pause = vec![0f32; (voice.sample_rate() as f32 * SENTENCE_PAUSE) as usize];
        let mut speech = Vec::new();
        for sentence in sentences(&phonemes) {
            if !speech.is_empty() {
                speech.extend_from_slice(&pause);
            }
            speech.extend(voice.speak(sentence)?);
        }
        let synthesis = started.elapsed();
        let started = Instant::now();
        let speech = resample(&speech, voice.sample_rate(), ENCODE_RATE)?;
        let ogg = ogg_opus::encode(&speech, BITRATE)?;
        Ok(Spoken {
            ogg,
            audio: Duration::from_secs_f64(speech.len() as f64 / f64::from(ENCODE_RATE)),
            synthesis,
            encoding: started.elapsed(),
        })
    }
}

/// `phonemes` cut after each sentence's end (`.`, `!`, `?`), so the model speaks a
/// sentence at a time (bounded memory, whatever the answer's length).
fn sentences(phonemes: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (at, c) in phonemes.char_indices() {
        if matches!(c, '.' | '!' | '?') {
            let end = at + c.len_utf8();
            if !phonemes[start..end].trim().is_empty() {
                out.push(phonemes[start..end].trim());
            }
            start = end;
        }
    }
    if !phonemes[start..].trim().is_empty() {
        out.push(phonemes[start..].trim());
    }
    out
}

/// `samples` from `from` Hz to `to` Hz.
fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, VoiceError> {
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let failed = |e: &dyn std::fmt::Display| VoiceError::Resample(e.to_string());
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| failed(&e))?;
    let needed = resampler.process_all_needed_output_len(samples.len());
    let mut out = vec![0f32; needed];
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| failed(&e))?;
    let mut output = InterleavedSlice::new_mut(&mut out, 1, needed).map_err(|e| failed(&e))?;
    let (_, produced) = resampler
        .process_all_into_buffer(&input, &mut output, samples.len(), None)
        .map_err(|e| failed(&e))?;
    out.truncate(produced);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phonemes_are_spoken_a_sentence_at_a_time() {
        assert_eq!(
            sentences("həlˈoʊ. haʊ ɑːɹ juː? fˈaɪn"),
            ["həlˈoʊ.", "haʊ ɑːɹ juː?", "fˈaɪn"]
        );
        assert!(sentences(" ").is_empty());
    }

    #[test]
    fn resampling_keeps_the_length_in_time() {
        let second = vec![0.1f32; 22_050];
        let out = resample(&second, 22_050, 24_000).expect("resampled");
        assert!((23_900..=24_100).contains(&out.len()), "{}", out.len());
    }
}
