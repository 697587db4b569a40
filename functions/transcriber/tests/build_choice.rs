//! `bootstrap` replaces itself with the AVX-512 build beside it when the CPU has every
//! extension that build needs, and keeps the AVX2 build otherwise: the real binary, run as
//! Lambda runs it, with a stand-in script as the AVX-512 build (the real one is built by
//! `infra/build.sh` only; `scripts/check-deploy.sh` runs both).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use transcriber::cpu::{AVX512_BINARY, missing_avx512_features};

/// A Lambda artefact in a temporary directory: the transcriber as `bootstrap`, and a
/// script as the AVX-512 build that says it ran, with its arguments and the mark
/// `bootstrap` sets.
fn artefact() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_transcriber"),
        dir.path().join("bootstrap"),
    )
    .unwrap();
    let script = dir.path().join(AVX512_BINARY);
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"the AVX-512 build ran with $* (chosen: $REMEDIOS_TRANSCRIBER_CHOSEN)\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn system_info(dir: &Path, wanted: Option<&str>) -> String {
    let mut command = Command::new(dir.join("bootstrap"));
    command
        .arg("--system-info")
        .env_remove("TRANSCRIBER_BUILD")
        .env_remove("REMEDIOS_TRANSCRIBER_CHOSEN");
    if let Some(wanted) = wanted {
        command.env("TRANSCRIBER_BUILD", wanted);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn bootstrap_runs_the_avx512_build_on_a_cpu_that_has_it_and_the_avx2_build_elsewhere() {
    let dir = artefact();
    let out = system_info(dir.path(), None);
    let missing = missing_avx512_features();
    if missing.is_empty() {
        assert_eq!(
            out.trim(),
            "the AVX-512 build ran with --system-info (chosen: 1)"
        );
    } else {
        assert!(
            out.starts_with(&format!(
                "build = avx2 (the CPU lacks {})",
                missing.join(", ")
            )),
            "{out}"
        );
        assert!(out.contains("LLAMAFILE = 1"), "{out}");
    }
}

#[test]
fn the_operator_keeps_the_avx2_build_and_a_bad_value_keeps_it_too() {
    let dir = artefact();
    let kept = system_info(dir.path(), Some("avx2"));
    assert!(
        kept.starts_with("build = avx2 (TRANSCRIBER_BUILD=avx2) | "),
        "{kept}"
    );
    assert!(kept.contains("LLAMAFILE = 1"), "{kept}");
    let bad = system_info(dir.path(), Some("avx1024"));
    assert!(
        bad.starts_with("build = avx2 (configuration error: TRANSCRIBER_BUILD is \"avx1024\""),
        "{bad}"
    );
}

#[test]
fn a_binary_with_no_avx512_build_beside_it_runs_itself() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_transcriber"),
        dir.path().join("bootstrap"),
    )
    .unwrap();
    let out = system_info(dir.path(), None);
    assert!(
        out.starts_with(&format!(
            "build = avx2 (no {AVX512_BINARY} beside this binary) | "
        )),
        "{out}"
    );
}
