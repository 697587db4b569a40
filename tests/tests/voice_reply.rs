//! A voice reply, round trip on real components: an answer is spoken with the real
//! English Piper voice (ONNX Runtime and espeak-ng from their PyPI wheels), encoded to
//! Ogg/Opus, uploaded to the Graph API emulator's media endpoint and sent as a voice
//! message (the emulator checks it is mono Ogg/Opus under 512 KB); then our own decoder
//! and whisper turn what WhatsApp would play back into words.

use std::time::Instant;

use remedios_shared::graph::{GraphClient, GraphSettings, Recipient};
use remedios_shared::secrets::Secret;
use remedios_testkit::graph::{GraphEmulator, VOICE_NOTE_MAX_BYTES, is_mono_ogg_opus};
use remedios_testkit::paths;
use remedios_testkit::wer::word_error_rate;
use responder::voice::{Speaker, VoiceFiles};
use transcriber::audio::{DecodeLimits, decode};
use transcriber::speech::{Engine, Language, SpeechSettings};

const TOKEN: &str = "voice-token";
const PHONE_NUMBER_ID: &str = "106540352242922";
/// About 30 words: a usual short answer.
const ANSWER: &str = "Our clinic is open from Monday to Friday, nine in the morning to seven in \
the evening. You can book an appointment here, and we will confirm it by message the same day.";

fn speaker() -> Speaker {
    let files = paths::voice_paths().unwrap_or_else(|e| panic!("{e}"));
    Speaker::load(
        &VoiceFiles {
            onnxruntime: files.onnxruntime,
            espeak: files.espeak,
            espeak_data: files.espeak_data,
            voices: vec![("en".into(), files.english_voice)],
        },
        2,
    )
    .unwrap_or_else(|e| panic!("the speech engine loads: {e}"))
}

/// A Graph API client of `graph`.
fn client(graph: &GraphEmulator) -> GraphClient {
    GraphClient::new(GraphSettings {
        base_url: url::Url::parse(&graph.base_url()).expect("url"),
        version: "v24.0".into(),
        token: Secret::new(TOKEN),
        media_hosts: vec!["127.0.0.1".into()],
        timeout: std::time::Duration::from_secs(10),
    })
    .expect("Graph API client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_spoken_sent_as_a_voice_message_and_heard_back_keeps_its_words() {
    let started = Instant::now();
    let speaker = speaker();
    let loaded = started.elapsed();
    assert!(speaker.speaks("en") && speaker.speaks("EN"));
    assert!(!speaker.speaks("es"), "no Spanish voice was given");

    let spoken = speaker.speak(ANSWER, "en").expect("spoken");
    eprintln!(
        "voice: loaded in {loaded:?}; {:.1} s of speech synthesised in {:?}, encoded in {:?}, {} bytes",
        spoken.audio.as_secs_f64(),
        spoken.synthesis,
        spoken.encoding,
        spoken.ogg.len()
    );
    assert!(
        (5.0..30.0).contains(&spoken.audio.as_secs_f64()),
        "{:?} of speech for 30 words",
        spoken.audio
    );
    assert!(is_mono_ogg_opus(&spoken.ogg));
    assert!(spoken.ogg.len() < VOICE_NOTE_MAX_BYTES);

    let graph = GraphEmulator::start(TOKEN)
        .await
        .expect("Graph API emulator");
    let client = client(&graph);
    let media = client
        .upload_media(
            PHONE_NUMBER_ID,
            spoken.ogg.clone(),
            "audio/ogg; codecs=opus",
            "reply.ogg",
        )
        .await
        .expect("uploaded");
    let to = Recipient::Phone("15551234567".into());
    client
        .send_voice(PHONE_NUMBER_ID, &to, &media)
        .await
        .expect("sent as a voice message");
    let sent = graph.sent_voice_notes();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "+15551234567");
    assert_eq!(
        sent[0].1, spoken.ogg,
        "what WhatsApp got is what was spoken"
    );

    let heard = decode(&sent[0].1, Some("audio/ogg"), &DecodeLimits::default())
        .expect("our decoder reads the voice note");
    let engine = Engine::load(&SpeechSettings {
        model_path: paths::whisper_model("ggml-base.bin").unwrap_or_else(|e| panic!("{e}")),
        language: Language::Auto,
        threads: 2,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let transcript = engine.transcribe(&heard.samples).expect("transcribed");
    let wer = word_error_rate(ANSWER, &transcript.text);
    eprintln!("voice: heard back {:?} (WER {wer:.3})", transcript.text);
    assert!(wer <= 0.2, "WER {wer:.2}: {:?}", transcript.text);
    assert_eq!(transcript.language.as_deref(), Some("en"));
}

#[tokio::test]
async fn the_emulator_refuses_a_voice_message_that_is_not_ogg_opus() {
    let graph = GraphEmulator::start(TOKEN)
        .await
        .expect("Graph API emulator");
    let client = client(&graph);
    let media = client
        .upload_media(
            PHONE_NUMBER_ID,
            b"ID3 not opus".to_vec(),
            "audio/mpeg",
            "a.mp3",
        )
        .await
        .expect("an MP3 uploads");
    let to = Recipient::Phone("15551234567".into());
    let refused = client
        .send_voice(PHONE_NUMBER_ID, &to, &media)
        .await
        .expect_err("not a voice note");
    assert_eq!(refused.code(), Some(131_053), "{refused}");
    let unsupported = client
        .upload_media(PHONE_NUMBER_ID, b"x".to_vec(), "text/plain", "a.txt")
        .await
        .expect_err("not audio");
    assert_eq!(unsupported.code(), Some(131_053), "{unsupported}");
    assert!(graph.sent_voice_notes().is_empty());
}
