//! Which build of whisper.cpp this CPU runs.
//!
//! The deployed x86_64 artefact holds two builds of the transcriber: `bootstrap`, with
//! whisper.cpp for AVX2 (every Lambda x86_64 host has it), and [`AVX512_BINARY`] beside it,
//! with whisper.cpp for AVX-512 with VNNI, whose tiled kernels take 1-29% less time on long
//! voice notes (see the transcriber's README, lever 6). Lambda does not promise AVX-512, and
//! the AVX-512 build dies with SIGILL on a host without it, so `bootstrap` starts, reads the
//! CPU's flags, and replaces itself with the AVX-512 build ([`exec_best_build`]) only when
//! the CPU has every extension that build was compiled for and the file is there.
//! `TRANSCRIBER_BUILD=avx2` keeps the AVX2 build whatever the CPU (a way back without a
//! deploy, should the AVX-512 build ever misbehave).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use remedios_shared::config::Env;

use crate::config::TRANSCRIBER_BUILD;

/// The AVX-512 build's file name, beside `bootstrap` (see `infra/build.sh`).
pub const AVX512_BINARY: &str = "transcriber-avx512";

/// The operator's choice ([`TRANSCRIBER_BUILD`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// The AVX-512 build where the CPU has it.
    Auto,
    /// The AVX2 build whatever the CPU.
    Avx2,
}

impl FromStr for Wanted {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "avx2" => Ok(Self::Avx2),
            _ => Err("use auto or avx2".to_owned()),
        }
    }
}

/// Set in the AVX-512 build's environment by the `bootstrap` that chose it, so that it
/// never chooses again, and so that its logs can say why it runs.
const CHOSEN_VARIABLE: &str = "REMEDIOS_TRANSCRIBER_CHOSEN";

/// The CPU extensions `infra/build.sh` compiles the AVX-512 build for (ggml's
/// `GGML_AVX512`, which is F, CD, VL, DQ and BW, and `GGML_AVX512_VNNI`), with the names
/// of `is_x86_feature_detected!`.
pub const AVX512_FEATURES: [&str; 6] = [
    "avx512f",
    "avx512cd",
    "avx512vl",
    "avx512dq",
    "avx512bw",
    "avx512vnni",
];

/// The features of [`AVX512_FEATURES`] this CPU lacks (all of them off x86_64).
pub fn missing_avx512_features() -> Vec<&'static str> {
    AVX512_FEATURES
        .into_iter()
        .filter(|feature| !has_feature(feature))
        .collect()
}

#[cfg(target_arch = "x86_64")]
fn has_feature(feature: &str) -> bool {
    match feature {
        "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
        "avx512cd" => std::arch::is_x86_feature_detected!("avx512cd"),
        "avx512vl" => std::arch::is_x86_feature_detected!("avx512vl"),
        "avx512dq" => std::arch::is_x86_feature_detected!("avx512dq"),
        "avx512bw" => std::arch::is_x86_feature_detected!("avx512bw"),
        "avx512vnni" => std::arch::is_x86_feature_detected!("avx512vnni"),
        _ => false,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn has_feature(_: &str) -> bool {
    false
}

/// Why a build was chosen; `bootstrap` decides before logging is set up, so the handler
/// logs this at cold start ([`Choice::current`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// This process is the AVX-512 build, chosen by `bootstrap`.
    Avx512,
    /// The AVX2 build: no AVX-512 build beside it (tests, benches, arm64, `cargo lambda
    /// watch`).
    Alone,
    /// The AVX2 build, kept by `TRANSCRIBER_BUILD=avx2`.
    Kept,
    /// The AVX2 build, because `TRANSCRIBER_BUILD` is not valid (with the error).
    Invalid(String),
    /// The AVX2 build, because the CPU lacks these extensions.
    Lacks(Vec<&'static str>),
    /// The AVX2 build, because starting the AVX-512 one failed (with the error).
    Failed(String),
}

impl Choice {
    /// What to log: `avx512` or `avx2`.
    pub fn build(&self) -> &'static str {
        match self {
            Self::Avx512 => "avx512",
            _ => "avx2",
        }
    }

    /// Why, in a few words, for the cold-start log line.
    pub fn reason(&self) -> String {
        match self {
            Self::Avx512 => "the CPU has AVX-512 with VNNI".to_owned(),
            Self::Alone => format!("no {AVX512_BINARY} beside this binary"),
            Self::Kept => format!("{}=avx2", TRANSCRIBER_BUILD.name),
            Self::Invalid(error) => error.clone(),
            Self::Lacks(missing) => format!("the CPU lacks {}", missing.join(", ")),
            Self::Failed(error) => format!("{AVX512_BINARY} did not start: {error}"),
        }
    }
}

/// What `bootstrap` should do: run the AVX-512 build at this path, or stay with the reason.
/// Pure, for tests: `exe` is this process's file, `wanted` the operator's choice,
/// `chosen` whether this process was already chosen, `missing` the CPU's missing
/// extensions.
pub fn decide(
    exe: &Path,
    wanted: Wanted,
    chosen: bool,
    missing: Vec<&'static str>,
) -> Result<PathBuf, Choice> {
    if chosen {
        return Err(Choice::Avx512);
    }
    if wanted == Wanted::Avx2 {
        return Err(Choice::Kept);
    }
    let sibling = exe.with_file_name(AVX512_BINARY);
    if exe.file_name() == sibling.file_name() || !sibling.is_file() {
        return Err(Choice::Alone);
    }
    if !missing.is_empty() {
        return Err(Choice::Lacks(missing));
    }
    Ok(sibling)
}

/// Replaces this process with the AVX-512 build when [`decide`] says so (with the same
/// arguments and environment), and otherwise returns why this build runs. Call it first
/// in `main`, before threads or clients exist.
pub fn exec_best_build() -> Choice {
    let chosen = std::env::var_os(CHOSEN_VARIABLE).is_some();
    let wanted = match TRANSCRIBER_BUILD.read(&Env::process()) {
        Ok(wanted) => wanted,
        Err(e) => return Choice::Invalid(e.to_string()),
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return Choice::Failed(format!("cannot read this binary's path: {e}")),
    };
    // Only read the CPU when it matters.
    let missing = if chosen {
        Vec::new()
    } else {
        missing_avx512_features()
    };
    match decide(&exe, wanted, chosen, missing) {
        Ok(avx512) => exec(&avx512),
        Err(choice) => choice,
    }
}

#[cfg(unix)]
fn exec(binary: &Path) -> Choice {
    use std::os::unix::process::CommandExt;
    let error = std::process::Command::new(binary)
        .args(std::env::args_os().skip(1))
        .env(CHOSEN_VARIABLE, "1")
        .exec();
    Choice::Failed(error.to_string())
}

#[cfg(not(unix))]
fn exec(_: &Path) -> Choice {
    Choice::Failed("only Unix can replace a process".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            std::fs::write(dir.path().join(file), b"").unwrap();
        }
        dir
    }

    #[test]
    fn bootstrap_runs_the_avx512_build_only_when_the_cpu_has_every_extension() {
        let dir = dir_with(&["bootstrap", AVX512_BINARY]);
        let exe = dir.path().join("bootstrap");
        assert_eq!(
            decide(&exe, Wanted::Auto, false, Vec::new()),
            Ok(dir.path().join(AVX512_BINARY))
        );
        assert_eq!(
            decide(&exe, "auto".parse().unwrap(), false, Vec::new()),
            Ok(dir.path().join(AVX512_BINARY))
        );
        let lacks = decide(&exe, Wanted::Auto, false, vec!["avx512vnni"]).unwrap_err();
        assert_eq!(lacks, Choice::Lacks(vec!["avx512vnni"]));
        assert_eq!(lacks.build(), "avx2");
        assert_eq!(lacks.reason(), "the CPU lacks avx512vnni");
    }

    #[test]
    fn the_operator_the_missing_file_and_the_chosen_build_keep_what_runs() {
        let both = dir_with(&["bootstrap", AVX512_BINARY]);
        let exe = both.path().join("bootstrap");
        assert_eq!(
            decide(&exe, " AVX2 ".parse().unwrap(), false, Vec::new()),
            Err(Choice::Kept)
        );
        // The chosen build never chooses again, whatever it is called.
        assert_eq!(
            decide(&exe, Wanted::Auto, true, Vec::new()),
            Err(Choice::Avx512)
        );
        assert_eq!(Choice::Avx512.build(), "avx512");
        assert!("avx512".parse::<Wanted>().is_err());
        // The AVX-512 build started by hand does not start itself.
        let itself = both.path().join(AVX512_BINARY);
        assert_eq!(
            decide(&itself, Wanted::Auto, false, Vec::new()),
            Err(Choice::Alone)
        );
        let alone = dir_with(&["bootstrap"]);
        assert_eq!(
            decide(
                &alone.path().join("bootstrap"),
                Wanted::Auto,
                false,
                Vec::new()
            ),
            Err(Choice::Alone)
        );
    }
}
