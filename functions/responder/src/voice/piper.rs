//! A Piper voice (VITS, ONNX): phonemes to speech through ONNX Runtime.
//!
//! A voice is two files: the model (`*.onnx`) and its configuration (`*.onnx.json`: the
//! sample rate, espeak's voice, the phoneme ids, the inference scales). The phonemes are
//! turned into ids as Piper does: `^`, then each phoneme followed by the pad `_`, then
//! `$`; phonemes the voice does not know are left out.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;
use thiserror::Error;

/// Why a voice could not be loaded or speak.
#[derive(Debug, Error)]
pub enum PiperError {
    #[error("cannot read the voice configuration {path}: {reason}")]
    Config { path: String, reason: String },
    #[error("cannot load the voice model {path}: {reason}")]
    Model { path: String, reason: String },
    #[error("the voice model failed: {0}")]
    Run(String),
}

#[derive(Debug, Deserialize)]
struct Config {
    audio: AudioConfig,
    espeak: EspeakConfig,
    #[serde(default)]
    inference: Inference,
    phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default = "one")]
    num_speakers: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
struct AudioConfig {
    sample_rate: u32,
}

#[derive(Debug, Deserialize)]
struct EspeakConfig {
    voice: String,
}

#[derive(Debug, Deserialize)]
struct Inference {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

impl Default for Inference {
    fn default() -> Self {
        Inference {
            noise_scale: 0.667,
            length_scale: 1.0,
            noise_w: 0.8,
        }
    }
}

/// A loaded Piper voice.
#[derive(Debug)]
pub struct PiperVoice {
    session: Mutex<Session>,
    ids: HashMap<char, Vec<i64>>,
    sample_rate: u32,
    espeak_voice: String,
    scales: [f32; 3],
    speakers: u32,
}

impl PiperVoice {
    /// Loads the voice `model` (its configuration is `model` + `.json`) in ONNX Runtime's
    /// `environment`.
    pub fn load(
        environment: &ort::environment::Environment,
        model: &Path,
        threads: usize,
    ) -> Result<Self, PiperError> {
        let config_path = model.with_extension("onnx.json");
        let config_error = |reason: String| PiperError::Config {
            path: config_path.display().to_string(),
            reason,
        };
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| config_error(e.to_string()))?;
        let config: Config =
            serde_json::from_str(&text).map_err(|e| config_error(e.to_string()))?;
        let mut ids = HashMap::new();
        for (symbol, id) in config.phoneme_id_map {
            let mut chars = symbol.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                ids.insert(c, id);
            }
        }
        for needed in ['_', '^', '$'] {
            if !ids.contains_key(&needed) {
                return Err(config_error(format!(
                    "phoneme_id_map has no {needed:?}: not a Piper voice"
                )));
            }
        }
        let model_error = |reason: String| PiperError::Model {
            path: model.display().to_string(),
            reason,
        };
        let session = Session::builder(environment)
            .map_err(|e| model_error(e.to_string()))?
            .with_intra_threads(threads.max(1))
            .map_err(|e| model_error(e.to_string()))?
            .commit_from_file(model)
            .map_err(|e| model_error(e.to_string()))?;
        Ok(PiperVoice {
            session: Mutex::new(session),
            ids,
            sample_rate: config.audio.sample_rate,
            espeak_voice: config.espeak.voice,
            scales: [
                config.inference.noise_scale,
                config.inference.length_scale,
                config.inference.noise_w,
            ],
            speakers: config.num_speakers,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The espeak voice its phonemes come from (`en-us`).
    pub fn espeak_voice(&self) -> &str {
        &self.espeak_voice
    }

    /// The ids of `phonemes`, as Piper makes them.
    pub fn ids(&self, phonemes: &str) -> Vec<i64> {
        let id = |c: char| self.ids.get(&c).cloned().unwrap_or_default();
        let mut out = id('^');
        out.extend(id('_'));
        for c in phonemes.chars() {
            if let Some(ids) = self.ids.get(&c) {
                out.extend(ids);
                out.extend(id('_'));
            }
        }
        out.extend(id('$'));
        out
    }

    /// Speech for `phonemes`: samples at [`Self::sample_rate`], -1 to 1.
    pub fn speak(&self, phonemes: &str) -> Result<Vec<f32>, PiperError> {
        let ids = self.ids(phonemes);
        let run_error = |e: &dyn std::fmt::Display| PiperError::Run(e.to_string());
        let length = ids.len() as i64;
        let input = Tensor::from_array(([1usize, ids.len()], ids)).map_err(|e| run_error(&e))?;
        let lengths = Tensor::from_array(([1usize], vec![length])).map_err(|e| run_error(&e))?;
        let scales =
            Tensor::from_array(([3usize], self.scales.to_vec())).map_err(|e| run_error(&e))?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = if self.speakers > 1 {
            let sid = Tensor::from_array(([1usize], vec![0i64])).map_err(|e| run_error(&e))?;
            session.run(ort::inputs![
                "input" => input,
                "input_lengths" => lengths,
                "scales" => scales,
                "sid" => sid,
            ])
        } else {
            session.run(ort::inputs![
                "input" => input,
                "input_lengths" => lengths,
                "scales" => scales,
            ])
        }
        .map_err(|e| run_error(&e))?;
        let (_, samples) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| run_error(&e))?;
        Ok(samples.to_vec())
    }
}
