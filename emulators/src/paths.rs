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
