//! The `whisper-convert` binary on the real tiny.en model.

mod common;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_whisper-convert");

#[test]
fn converts_tiny_en_and_prints_a_summary() {
    let dirs = common::tiny_en_dirs();
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("ggml-tiny.en.bin");
    let run = Command::new(BIN)
        .arg(&dirs[0])
        .arg(&output)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("tiny.en: n_vocab 51864, 4 encoder + 4 decoder layers"),
        "{stdout}"
    );
    let size = std::fs::metadata(&output).unwrap().len();
    assert!(
        stdout.contains(&format!("{size} bytes written")),
        "{stdout}"
    );
    assert!(stderr.contains("100% decoder.ln.bias"), "{stderr}");
    let magic = &std::fs::read(&output).unwrap()[..4];
    assert_eq!(magic, &0x6767_6d6c_u32.to_le_bytes());
}

#[test]
fn reports_errors_with_their_location() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let run = Command::new(BIN)
        .arg(&missing)
        .arg(tmp.path().join("x.bin"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&format!("{} is not a directory", missing.display())),
        "{stderr}"
    );

    // The real tiny.en model cut short.
    let dirs = common::tiny_en_dirs();
    let cut = tmp.path().join("cut");
    std::fs::create_dir(&cut).unwrap();
    let model = std::fs::read(dirs[0].join("model.bin")).unwrap();
    std::fs::write(cut.join("model.bin"), &model[..model.len() / 2]).unwrap();
    std::fs::copy(dirs[0].join("vocabulary.txt"), cut.join("vocabulary.txt")).unwrap();
    let output = tmp.path().join("cut.bin");
    let run = Command::new(BIN)
        .arg(&cut)
        .arg(&output)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("truncated") && stderr.contains("cut/model.bin"),
        "{stderr}"
    );
    assert!(!output.exists());
}
