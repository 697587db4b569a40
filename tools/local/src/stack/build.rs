//! What the stack needs before it starts, and building the functions.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Command;

use remedios_emulators::child::GroupChild;
use remedios_emulators::paths;

use super::{FUNCTIONS, Options, StackError};

/// Checks what the stack needs; the error says how to get it.
pub fn check_prerequisites() -> Result<(), Vec<String>> {
    let mut missing = Vec::new();
    for exe in ["moto_server", "cargo-lambda", "python"] {
        let path = paths::venv_bin(exe);
        if !path.exists() {
            missing.push(format!("{} (from the project venv)", path.display()));
        }
    }
    let model = default_whisper_model();
    if !model.exists() {
        missing.push(format!("the whisper model {}", model.display()));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// The whisper model the local transcriber uses unless `WHISPER_MODEL_PATH` is set.
pub fn default_whisper_model() -> PathBuf {
    paths::models_dir().join("ggml-base-q8_0.bin")
}

/// Runs `scripts/bootstrap.sh --run` (idempotent): only what running the stack needs, and
/// no local model server when `GPT4ALL_URL` names your own host. Its output shows as it goes.
pub async fn bootstrap() -> Result<(), StackError> {
    let script = paths::workspace_root().join("scripts").join("bootstrap.sh");
    let status = Command::new(&script)
        .arg("--run")
        .current_dir(paths::workspace_root())
        .status()
        .await
        .map_err(|source| StackError::Spawn {
            what: script.display().to_string(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(StackError::Prerequisite(format!(
            "{} failed ({status}); fix what it reports and run it again",
            script.display()
        )))
    }
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else the one `scripts/test.sh` uses
/// (`$HOME/.cache/remedios/target`), so the stack and the tests share their builds.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/remedios/target"))
        .unwrap_or_else(|| paths::workspace_root().join("target"))
}

pub(super) fn cargo_lambda() -> PathBuf {
    paths::venv_bin("cargo-lambda")
}

/// `cargo build` of the three functions, so the first invocation does not compile.
pub(super) async fn build_functions(
    options: &Options,
    progress: &impl Fn(&str),
) -> Result<(), StackError> {
    let log = options.log_dir.join("build.log");
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(paths::workspace_root())
        .env("CARGO_TARGET_DIR", target_dir())
        .arg("build");
    for f in FUNCTIONS {
        command.args(["-p", f]);
    }
    command.arg("--bins");
    if options.release {
        command.arg("--release");
    }
    // The log may hold earlier builds: progress counts only this one's lines.
    let skip = std::fs::read_to_string(&log).map_or(0, |text| text.len());
    let started = Instant::now();
    let mut child =
        GroupChild::spawn("cargo build", command, &log).map_err(|source| StackError::Spawn {
            what: "cargo build".into(),
            source,
        })?;
    let mut ticker = tokio::time::interval(BUILD_PROGRESS_EVERY);
    ticker.tick().await;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = ticker.tick() => {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let built = BuildProgress::of(text.get(skip..).unwrap_or_default());
                progress(&built.line(started.elapsed()));
            }
        }
    }
    .map_err(|source| StackError::Spawn {
        what: "cargo build".into(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(StackError::Build {
            detail: last_lines(&log, 15),
            log,
        })
    }
}

/// How often `up` says how far the functions' build has got.
const BUILD_PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// How far a `cargo build` has got, read from its output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildProgress {
    /// Crates compiled so far (cargo's `Compiling` lines).
    pub compiled: usize,
    /// The crate cargo started last.
    pub latest: Option<String>,
}

impl BuildProgress {
    pub fn of(output: &str) -> Self {
        let mut progress = BuildProgress::default();
        for line in output.lines() {
            if let Some(rest) = line.trim_start().strip_prefix("Compiling ") {
                progress.compiled += 1;
                progress.latest = rest.split_whitespace().next().map(str::to_owned);
            }
        }
        progress
    }

    /// `still building (1m 30s): 212 crates compiled, now whisper-rs-sys`
    pub fn line(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs();
        let mut line = format!(
            "still building ({}m {:02}s): {} crates compiled",
            secs / 60,
            secs % 60,
            self.compiled
        );
        if let Some(latest) = &self.latest {
            line.push_str(", now ");
            line.push_str(latest);
        }
        line
    }
}

fn last_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_progress_counts_cargos_compiling_lines_and_names_the_latest() {
        let output = "   Compiling libc v0.2.180\n\
                      warning: unused variable\n   \
                      Compiling whisper-rs-sys v0.14.1\n   \
                      Compiling responder v0.1.0 (/work/main/functions/responder)\n";
        let progress = BuildProgress::of(output);
        assert_eq!(progress.compiled, 3);
        assert_eq!(progress.latest.as_deref(), Some("responder"));
        assert_eq!(
            progress.line(Duration::from_secs(95)),
            "still building (1m 35s): 3 crates compiled, now responder"
        );
        assert_eq!(
            BuildProgress::of("    Finished `dev` profile\n").line(Duration::from_secs(15)),
            "still building (0m 15s): 0 crates compiled"
        );
    }
}
