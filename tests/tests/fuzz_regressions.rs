//! Replays the fuzz targets' inputs through their checks (`remedios_fuzz_checks`) in the
//! normal test suite: every committed seed (`fuzz/seeds/<target>/`) and every input a fuzz
//! run crashed on (`fuzz/regressions/<target>/`, kept by `scripts/fuzz.sh`). A regression
//! input passes when nothing panics and the checks hold; the seeds, real files and
//! notifications, must also do their job (plan messages, decode to audio).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use remedios_fuzz_checks as fuzz;
use remedios_testkit::paths::workspace_root;
use transcriber::audio::AudioFormat;

/// The files under `fuzz/<kind>/<target>/`, sorted (README and dot files excluded).
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = workspace_root().join("fuzz").join(kind).join(target);
    let mut found = Vec::new();
    collect(&dir, &mut found);
    found.sort();
    found
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, bytes)
        })
        .collect()
}

fn collect(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "cannot list {} (fuzz/ is part of the repository): {e}",
            dir.display()
        )
    });
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') || name.eq_ignore_ascii_case("README.md") {
            continue;
        }
        if path.is_dir() {
            collect(&path, found);
        } else {
            found.push(path);
        }
    }
}

fn name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("?")
}

#[test]
fn webhook_seeds_and_regressions_pass_the_checks() {
    let seeds = inputs("seeds", "webhook_body");
    assert!(seeds.len() >= 15, "only {} webhook seeds", seeds.len());
    let mut kinds = BTreeSet::new();
    let mut messages = 0;
    for (path, body) in &seeds {
        let plan = fuzz::webhook_body(body);
        assert_eq!(plan.quarantine, None, "{} was quarantined", path.display());
        messages += plan.messages.len();
        for outgoing in &plan.messages {
            let message: remedios_shared::envelope::InboundMessage =
                remedios_shared::envelope::decode(&outgoing.body)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            kinds.insert(message.content.kind());
        }
        let expected = match name(path) {
            "statuses.json" | "change_errors.json" | "other_field.json" | "other_object.json" => 0,
            _ => 1,
        };
        assert!(
            plan.messages.len() >= expected,
            "{} planned {} messages",
            path.display(),
            plan.messages.len()
        );
    }
    // Every content type the envelope knows is among the seeds.
    let all = [
        "audio",
        "button",
        "contacts",
        "document",
        "image",
        "interactive",
        "location",
        "order",
        "reaction",
        "sticker",
        "system",
        "text",
        "unsupported",
        "video",
    ];
    assert_eq!(
        kinds,
        all.into_iter().collect(),
        "content types of the seeds"
    );
    assert!(messages >= 25, "the seeds planned only {messages} messages");

    for (path, body) in inputs("regressions", "webhook_body") {
        let plan = fuzz::webhook_body(&body);
        // Bounded: no more queue messages than the body could describe (the smallest
        // message, `{"id":"a"}` with the sender from the only contact, takes 11 bytes).
        assert!(
            plan.messages.len() <= body.len() / 11 + 1,
            "{}: {} messages from {} bytes",
            path.display(),
            plan.messages.len(),
            body.len()
        );
    }
}

#[test]
fn audio_seeds_and_regressions_pass_the_checks() {
    let seeds = inputs("seeds", "audio_decode");
    let mut formats = BTreeSet::new();
    for (path, bytes) in &seeds {
        assert!(
            bytes.len() < 50 * 1024,
            "{} is {} bytes; seeds stay under 50 KB",
            path.display(),
            bytes.len()
        );
        let audio = fuzz::audio_decode(bytes)
            .unwrap_or_else(|e| panic!("seed {} does not decode: {e}", path.display()));
        formats.insert(format!("{}", audio.source_format));
    }
    let all = [
        AudioFormat::OggOpus,
        AudioFormat::OggVorbis,
        AudioFormat::OggFlac,
        AudioFormat::Mp3,
        AudioFormat::Mp4,
        AudioFormat::Aac,
        AudioFormat::Wav,
        AudioFormat::Flac,
    ];
    assert_eq!(
        formats,
        all.iter().map(ToString::to_string).collect(),
        "formats of the audio seeds"
    );

    for (path, bytes) in inputs("regressions", "audio_decode") {
        // A success is checked for bounds inside; a failure must say what is wrong.
        if let Err(e) = fuzz::audio_decode(&bytes) {
            assert!(
                !e.to_string().is_empty(),
                "{}: an empty error",
                path.display()
            );
        }
    }
}
