//! Answers as voice notes, on real components: moto (S3, the responder's role
//! enforced), the Graph API emulator (media upload, voice messages checked as mono
//! Ogg/Opus under 512 KB), SmolLM2 behind the GPT4All gate, and the real speech engine
//! (ONNX Runtime, espeak-ng and the English Piper voice from their PyPI wheels).

mod common;

use std::path::PathBuf;

use common::*;
use remedios_shared::envelope::ReplyJob;
use remedios_testkit::graph::is_mono_ogg_opus;
use remedios_testkit::paths;
use responder::texts::{FixedText, Lang};
use responder::voice::settings::{VoiceMode, VoiceSettings};
use responder::{Behaviour, Outcome};

/// What a voice note became: whisper heard `heard` in `language`.
fn voice_note(id: &str, heard: &str, language: &str) -> ReplyJob {
    heard_in(language, id, heard, 3_000)
}

/// Voice replies with the English voice, from the engine `scripts/bootstrap.sh` lays out.
fn speaking(engine_dir: Option<PathBuf>) -> VoiceSettings {
    let files = paths::voice_paths().unwrap_or_else(|e| panic!("{e}"));
    VoiceSettings {
        mode: VoiceMode::Voice,
        engine_dir: engine_dir.unwrap_or(files.engine_dir),
        voices: vec![("en".into(), files.english_voice.into())],
        ..VoiceSettings::default()
    }
}

fn with_voice(bed: &TestBed, voice: VoiceSettings) -> responder::Responder {
    let behaviour = Behaviour {
        voice,
        ..Behaviour::default()
    };
    bed.responder_with(bed.model_settings(), behaviour)
}

#[tokio::test]
async fn a_voice_note_is_answered_with_one_voice_note_once_and_a_text_with_a_text() {
    let bed = TestBed::start().await;
    let responder = with_voice(&bed, speaking(None));
    let note = voice_note("wamid.V1", "What time do you open on Saturdays?", "en");
    let outcome = responder.process(&note, 1).await.expect("answered");
    assert!(
        matches!(outcome, Outcome::Replied { parts: 1, .. }),
        "{outcome:?}"
    );
    let notes = bed.graph.sent_voice_notes();
    assert_eq!(notes.len(), 1, "one voice message");
    assert_eq!(notes[0].0, format!("+{PHONE}"));
    assert!(is_mono_ogg_opus(&notes[0].1));
    assert!(bed.bodies().is_empty(), "no text copy: {:?}", bed.bodies());
    // The exchange is remembered as for a text answer.
    let conversation = bed.conversation(&note.message.user).await;
    assert_eq!(conversation.turns.len(), 2);
    // Delivered again: not spoken again.
    let again = responder.process(&note, 2).await.expect("redelivered");
    assert_eq!(again, Outcome::AlreadyAnswered);
    assert_eq!(bed.graph.sent_voice_notes().len(), 1);
    // A text gets a text.
    let text = text_job("wamid.V2", "And on Sundays?");
    responder.process(&text, 1).await.expect("answered");
    assert_eq!(bed.bodies().len(), 1);
    assert_eq!(bed.graph.sent_voice_notes().len(), 1);
}

#[tokio::test]
async fn voice_off_a_language_without_a_voice_and_a_broken_engine_all_get_the_text() {
    let bed = TestBed::start().await;
    // The engine's files are missing: the answer goes as text, not lost.
    let empty = tempfile::tempdir().expect("a directory");
    let broken = with_voice(&bed, speaking(Some(empty.path().to_path_buf())));
    broken
        .process(&voice_note("wamid.B1", "Do you deliver?", "en"), 1)
        .await
        .expect("answered");
    assert_eq!(bed.bodies().len(), 1, "the text instead");
    assert!(bed.graph.sent_voice_notes().is_empty());

    let responder = with_voice(&bed, speaking(None));
    // Spanish, with only an English voice: text.
    responder
        .process(
            &voice_note("wamid.B2", "¿Abren los domingos por la tarde?", "es"),
            1,
        )
        .await
        .expect("answered");
    assert_eq!(bed.bodies().len(), 2);
    assert!(bed.graph.sent_voice_notes().is_empty());

    // `/voice off`: told in the user's language (Spanish, their last message's), and
    // voice notes get text from then on.
    let off = text_job("wamid.B3", "/voice off");
    responder.process(&off, 1).await.expect("switched");
    assert_eq!(bed.bodies()[2], FixedText::VoiceOff.default_text(Lang::Es));
    assert_eq!(bed.conversation(&off.message.user).await.voice, Some(false));
    responder
        .process(&voice_note("wamid.B4", "Do you have parking?", "en"), 1)
        .await
        .expect("answered");
    assert_eq!(bed.bodies().len(), 4);
    assert!(bed.graph.sent_voice_notes().is_empty());
    // `/voice on`: even a text is answered with a voice note.
    responder
        .process(&text_job("wamid.B5", "/voice on"), 1)
        .await
        .expect("switched");
    responder
        .process(
            &text_job(
                "wamid.B6",
                "Thank you very much! Could you tell me where exactly your shop is in the city?",
            ),
            1,
        )
        .await
        .expect("answered");
    assert_eq!(bed.graph.sent_voice_notes().len(), 1);
    assert_eq!(bed.bodies().len(), 5, "only the /voice on answer as text");
}

#[tokio::test]
async fn an_answer_too_long_for_a_voice_note_goes_as_text_and_a_copy_is_added_when_asked() {
    let bed = TestBed::start().await;
    let mut short = speaking(None);
    short.max_chars = 5;
    let responder = with_voice(&bed, short);
    responder
        .process(&voice_note("wamid.L1", "Tell me about your menu.", "en"), 1)
        .await
        .expect("answered");
    assert_eq!(bed.bodies().len(), 1, "too long to speak: text");
    assert!(bed.graph.sent_voice_notes().is_empty());

    let mut copied = speaking(None);
    copied.text_copy = true;
    let responder = with_voice(&bed, copied);
    let outcome = responder
        .process(&voice_note("wamid.L2", "Is there a vegan option?", "en"), 1)
        .await
        .expect("answered");
    assert!(
        matches!(outcome, Outcome::Replied { parts: 2, .. }),
        "the voice note and its text: {outcome:?}"
    );
    assert_eq!(bed.graph.sent_voice_notes().len(), 1);
    assert_eq!(bed.bodies().len(), 2);
}

#[tokio::test]
async fn speaking_that_takes_longer_than_the_invocation_can_spare_sends_the_text() {
    let bed = TestBed::start().await;
    // Less time than loading the engine takes, as on a container with too little memory.
    let slow = VoiceSettings {
        time_limit: std::time::Duration::from_millis(5),
        ..speaking(None)
    };
    let responder = with_voice(&bed, slow);
    let outcome = responder
        .process(&voice_note("wamid.T1", "Are you open today?", "en"), 1)
        .await
        .expect("answered");
    assert!(
        matches!(outcome, Outcome::Replied { parts: 1, .. }),
        "{outcome:?}"
    );
    assert_eq!(bed.bodies().len(), 1, "the text in time");
    assert!(bed.graph.sent_voice_notes().is_empty());
}

#[tokio::test]
async fn a_voice_kept_in_the_bucket_is_copied_once_and_speaks() {
    let bed = TestBed::start().await;
    let files = paths::voice_paths().unwrap_or_else(|e| panic!("{e}"));
    let key = "voices/en_US-joe-medium.onnx";
    for (key, file) in [
        (key.to_owned(), files.english_voice.clone()),
        (
            format!("{key}.json"),
            files.english_voice.with_extension("onnx.json"),
        ),
    ] {
        let bytes = std::fs::read(&file).expect("the voice's file");
        bed.store
            .put(&key, bytes, "application/octet-stream")
            .await
            .expect("uploaded");
    }
    let cache = tempfile::tempdir().expect("a directory");
    let settings = VoiceSettings {
        voices: vec![(
            "en".into(),
            responder::voice::settings::VoiceSource::S3(key.into()),
        )],
        cache_dir: cache.path().to_path_buf(),
        ..speaking(None)
    };
    let responder = with_voice(&bed, settings);
    responder
        .process(&voice_note("wamid.S1", "Can I pay by card?", "en"), 1)
        .await
        .expect("answered");
    assert_eq!(bed.graph.sent_voice_notes().len(), 1, "{:?}", bed.bodies());
    assert!(cache.path().join("en_US-joe-medium.onnx").is_file());
    assert!(cache.path().join("en_US-joe-medium.onnx.json").is_file());

    // A voice missing from the bucket: the text goes instead.
    let missing = VoiceSettings {
        voices: vec![(
            "en".into(),
            responder::voice::settings::VoiceSource::S3("voices/none.onnx".into()),
        )],
        cache_dir: cache.path().to_path_buf(),
        ..speaking(None)
    };
    with_voice(&bed, missing)
        .process(&voice_note("wamid.S2", "Do you take cash?", "en"), 1)
        .await
        .expect("answered");
    assert_eq!(bed.bodies().len(), 1, "the text instead");
    assert_eq!(bed.graph.sent_voice_notes().len(), 1);
}
