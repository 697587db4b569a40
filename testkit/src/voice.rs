//! Voice notes for the end-to-end tests: espeak-ng speech encoded as WhatsApp sends
//! voice notes (Ogg/Opus, mono). A missing tool fails with what to install.

use std::path::Path;
use std::process::Command;

/// `text` spoken by espeak-ng (voice `en`), as Ogg/Opus bytes; files go in `dir`.
pub fn voice_note(dir: &Path, name: &str, text: &str) -> Vec<u8> {
    let wav = dir.join(format!("{name}.wav"));
    let ogg = dir.join(format!("{name}.ogg"));
    run(
        "espeak-ng",
        Command::new("espeak-ng")
            .args(["-v", "en", "-s", "150", "-w"])
            .arg(&wav)
            .arg(text),
    );
    run(
        "opusenc (opus-tools)",
        Command::new("opusenc")
            .args(["--quiet", "--bitrate", "24"])
            .arg(&wav)
            .arg(&ogg),
    );
    std::fs::read(&ogg).unwrap_or_else(|e| panic!("cannot read {}: {e}", ogg.display()))
}

fn run(tool: &str, command: &mut Command) {
    let status = command.status().unwrap_or_else(|e| {
        panic!("{tool} could not run ({e}): install it with scripts/bootstrap.sh")
    });
    assert!(status.success(), "{tool} failed with {status}");
}
