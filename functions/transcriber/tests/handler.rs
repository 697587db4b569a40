//! The transcriber's handler on SQS batches, against moto (S3, SQS), the Graph API emulator
//! and the real tiny.en / base whisper models, with voice notes spoken by espeak-ng and
//! encoded by opusenc and ffmpeg.

mod common;

use common::{TestBed, audio, event, failed_ids, message, record, text};
use remedios_shared::envelope::{Content, InboundMessage, MediaRef, Prepared};
use remedios_shared::keys;
use remedios_shared::queue;
use remedios_testkit::audio::{self, Fixtures};
use remedios_testkit::graph::{Endpoint, ErrorSpec, Fault, MediaSpec, Recorded};
use remedios_testkit::wer::word_error_rate;
use sha2::{Digest, Sha256};
use transcriber::Speech;
use transcriber::speech::Transcript;

const OPUS: &str = "audio/ogg; codecs=opus";

fn tag(message: &InboundMessage) -> remedios_shared::user::UserTag {
    message.user.clone()
}

/// The reply job forwarded for `message_id` (exactly one).
fn prepared_for<'a>(replies: &'a [common::Received], message_id: &str) -> &'a Prepared {
    let found: Vec<_> = replies
        .iter()
        .filter(|r| r.job.message.id == message_id)
        .collect();
    assert_eq!(found.len(), 1, "reply jobs for {message_id}: {found:?}");
    &found[0].job.prepared
}

fn graph_calls_for(stack: &TestBed, media_id: &str) -> (usize, usize) {
    let recorded = stack.graph.recorded();
    let lookups = recorded
        .iter()
        .filter(|r| matches!(r, Recorded::MediaLookup { media_id: m, .. } if m == media_id))
        .count();
    let downloads = recorded
        .iter()
        .filter(|r| matches!(r, Recorded::MediaDownload { media_id: m, .. } if m == media_id))
        .count();
    (lookups, downloads)
}

fn image(media_id: &str, caption: &str) -> Content {
    Content::Image {
        media: MediaRef {
            id: media_id.into(),
            mime_type: Some("image/jpeg".into()),
            sha256: None,
        },
        caption: Some(caption.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_note_is_stored_transcribed_and_forwarded() {
    let stack = TestBed::start("ggml-tiny.en.bin", &[]).await;
    let fx = Fixtures::new();
    let note_path = fx.voice_note("note.ogg", "en", audio::SENTENCE);
    let note = audio::read(&note_path);
    let media_id = stack.graph.add_media(note.clone(), OPUS);
    let msg = message("15551230001", "wamid.VOICE.1", audio(&media_id, OPUS));

    let response = stack
        .transcriber
        .handle(event(vec![record("sqs-1", &msg)]))
        .await;
    assert!(failed_ids(&response).is_empty(), "{response:?}");

    let user = tag(&msg);
    let (record_json, record_type) = stack
        .object(&keys::message_record(&user, &msg.message_tag))
        .await;
    assert_eq!(record_type.as_deref(), Some("application/json"));
    let stored: InboundMessage = serde_json::from_slice(&record_json).unwrap();
    assert_eq!(stored, msg);

    let (media, media_type) = stack
        .object(&keys::media(&user, &msg.message_tag, "ogg"))
        .await;
    assert_eq!(media, note, "the voice note is stored as downloaded");
    assert_eq!(media_type.as_deref(), Some(OPUS));

    let transcript_key = keys::transcript(&user, &msg.message_tag);
    let (json, _) = stack.object(&transcript_key).await;
    let transcript: Transcript = serde_json::from_slice(&json).unwrap();
    let wer = word_error_rate(audio::SENTENCE, &transcript.text);
    assert!(wer <= 0.35, "WER {wer:.2}: {:?}", transcript.text);
    assert_eq!(transcript.language.as_deref(), Some("en"));
    assert_eq!(transcript.model, "ggml-tiny.en");
    let seconds = audio::duration_secs(&note_path);
    assert!(
        (transcript.audio_duration_ms as f64 / 1000.0 - seconds).abs() < 0.2,
        "{} ms of audio for a {seconds:.2} s note",
        transcript.audio_duration_ms
    );
    assert!(!transcript.segments.is_empty());
    assert!(transcript.processing_ms > 0);
    assert!(
        transcript
            .segments
            .windows(2)
            .all(|w| w[0].end_ms <= w[1].start_ms)
    );

    let replies = stack.replies().await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].job.message, msg);
    assert_eq!(replies[0].group_id, user.as_str());
    assert_eq!(
        replies[0].dedup_id,
        queue::dedup_id(msg.message_tag.as_str(), None)
    );
    assert_eq!(
        replies[0].job.prepared,
        Prepared::Transcribed {
            text: transcript.text.clone(),
            language: Some("en".into()),
            transcript_key,
            duration_ms: transcript.audio_duration_ms,
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mp3_and_m4a_audio_files_are_transcribed() {
    let stack = TestBed::start("ggml-tiny.en.bin", &[]).await;
    let fx = Fixtures::new();
    let wav = fx.speech_wav("speech.wav", audio::SENTENCE);
    let mp3 = fx.ffmpeg(&wav, "speech.mp3", &["-c:a", "libmp3lame", "-b:a", "64k"]);
    let m4a = fx.ffmpeg(&wav, "speech.m4a", &["-c:a", "aac", "-b:a", "64k"]);
    let mp3_id = stack.graph.add_media(audio::read(&mp3), "audio/mpeg");
    let m4a_id = stack.graph.add_media(audio::read(&m4a), "audio/mp4");
    let a = message("15551230002", "wamid.MP3", audio(&mp3_id, "audio/mpeg"));
    let b = message("15551230003", "wamid.M4A", audio(&m4a_id, "audio/mp4"));

    let response = stack
        .transcriber
        .handle(event(vec![record("sqs-a", &a), record("sqs-b", &b)]))
        .await;
    assert!(failed_ids(&response).is_empty(), "{response:?}");

    let replies = stack.replies().await;
    for (msg, ext, mime) in [(&a, "mp3", "audio/mpeg"), (&b, "m4a", "audio/mp4")] {
        let Prepared::Transcribed { text, .. } = prepared_for(&replies, &msg.id) else {
            panic!("{ext} was not transcribed: {replies:?}");
        };
        let wer = word_error_rate(audio::SENTENCE, text);
        assert!(wer <= 0.35, "{ext}: WER {wer:.2}: {text:?}");
        let (_, content_type) = stack
            .object(&keys::media(&tag(msg), &msg.message_tag, ext))
            .await;
        assert_eq!(content_type.as_deref(), Some(mime));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spanish_note_is_detected_as_spanish_by_the_multilingual_model() {
    const SPANISH: &str = "Hola, necesito una cita con el médico el martes por la mañana.";
    let stack = TestBed::start("ggml-base.bin", &[("WHISPER_LANGUAGE", "auto")]).await;
    let fx = Fixtures::new();
    let note = audio::read(&fx.voice_note("nota.ogg", "es", SPANISH));
    let media_id = stack.graph.add_media(note, OPUS);
    let msg = message("34600000001", "wamid.ES.1", audio(&media_id, OPUS));

    let response = stack
        .transcriber
        .handle(event(vec![record("sqs-es", &msg)]))
        .await;
    assert!(failed_ids(&response).is_empty(), "{response:?}");
    let replies = stack.replies().await;
    let Prepared::Transcribed { text, language, .. } = prepared_for(&replies, &msg.id) else {
        panic!("not transcribed: {replies:?}");
    };
    assert_eq!(language.as_deref(), Some("es"));
    let wer = word_error_rate(SPANISH, text);
    assert!(wer <= 0.4, "WER {wer:.2}: {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_media_get_their_own_answer_and_nothing_else_in_the_batch_is_affected() {
    let stack = TestBed::start("ggml-tiny.en.bin", &[("MEDIA_MAX_BYTES", "65536")]).await;
    let fx = Fixtures::new();
    let graph = &stack.graph;

    // The first lookup of the batch answers 404, as for media Meta no longer has.
    let gone_id = graph.add_media(audio::amr_nb(10), "audio/ogg");
    graph.inject(Fault::times(
        Endpoint::MediaLookup,
        1,
        ErrorSpec::new(404, 100, "Unsupported get request. Object does not exist."),
    ));
    let amr_id = graph.add_media(audio::amr_nb(50), "audio/amr");
    let garbage_id = graph.add_media(audio::random_bytes(4000, 7), OPUS);
    let jpeg = audio::random_bytes(3000, 11);
    let image_id = graph.add_media(jpeg.clone(), "image/jpeg");
    let big_id = graph.add_media(audio::random_bytes(100_000, 3), "audio/mpeg");
    // Announces a small size but sends a large body: refused while downloading.
    let liar_id = graph.add_media_spec(MediaSpec {
        bytes: audio::random_bytes(100_000, 5),
        mime_type: "image/jpeg".into(),
        file_size_override: Some(1000),
        ..MediaSpec::default()
    });
    let tampered_id = graph.add_media_spec(MediaSpec {
        bytes: audio::read(&fx.voice_note("note.ogg", "en", "Short note.")),
        mime_type: OPUS.into(),
        sha256_override: Some(hex::encode(Sha256::digest(b"something else"))),
        ..MediaSpec::default()
    });
    let offsite_id = graph.add_media_spec(MediaSpec {
        bytes: vec![1, 2, 3],
        mime_type: OPUS.into(),
        url_override: Some("https://media.evil.example/voice.ogg".into()),
        ..MediaSpec::default()
    });

    let messages = [
        message("15551231000", "wamid.GONE", audio(&gone_id, OPUS)),
        message("15551231001", "wamid.AMR", audio(&amr_id, "audio/amr")),
        message("15551231002", "wamid.GARBAGE", audio(&garbage_id, OPUS)),
        message(
            "15551231003",
            "wamid.IMAGE",
            image(&image_id, "What is this rash?"),
        ),
        message("15551231004", "wamid.BIG", audio(&big_id, "audio/mpeg")),
        message("15551231005", "wamid.LIAR", image(&liar_id, "x")),
        message("15551231006", "wamid.TAMPERED", audio(&tampered_id, OPUS)),
        message("15551231007", "wamid.OFFSITE", audio(&offsite_id, OPUS)),
        message("15551231008", "wamid.TEXT", text("hello")),
    ];
    let records = messages
        .iter()
        .enumerate()
        .map(|(i, m)| record(&format!("sqs-{i}"), m))
        .collect();
    let response = stack.transcriber.handle(event(records)).await;
    assert!(failed_ids(&response).is_empty(), "{response:?}");

    let replies = stack.replies().await;
    assert_eq!(replies.len(), messages.len());
    let unavailable = |id: &str, words: &str| match prepared_for(&replies, id) {
        Prepared::MediaUnavailable { reason } => {
            assert!(reason.contains(words), "{id}: {reason}");
        }
        other => panic!("{id}: expected MediaUnavailable, got {other:?}"),
    };
    let unsupported = |id: &str, words: &str| match prepared_for(&replies, id) {
        Prepared::AudioUnsupported { reason } => {
            assert!(reason.contains(words), "{id}: {reason}");
        }
        other => panic!("{id}: expected AudioUnsupported, got {other:?}"),
    };
    unavailable("wamid.GONE", "Graph API error 100 (HTTP 404)");
    unsupported("wamid.AMR", "AMR");
    unsupported("wamid.GARBAGE", "corrupt audio");
    unavailable("wamid.BIG", "over the 65536-byte limit");
    unavailable("wamid.LIAR", "over the 65536-byte limit");
    unavailable("wamid.TAMPERED", "checksum mismatch");
    unavailable("wamid.OFFSITE", "media.evil.example");
    assert_eq!(prepared_for(&replies, "wamid.TEXT"), &Prepared::Nothing);

    let photo = &messages[3];
    let photo_key = keys::media(&tag(photo), &photo.message_tag, "jpg");
    assert_eq!(
        prepared_for(&replies, "wamid.IMAGE"),
        &Prepared::MediaStored {
            key: photo_key.clone(),
            mime_type: "image/jpeg".into()
        }
    );
    let (bytes, content_type) = stack.object(&photo_key).await;
    assert_eq!(bytes, jpeg);
    assert_eq!(content_type.as_deref(), Some("image/jpeg"));
    // The caption travels in the message record and the reply job.
    let (record_json, _) = stack
        .object(&keys::message_record(&tag(photo), &photo.message_tag))
        .await;
    let stored: InboundMessage = serde_json::from_slice(&record_json).unwrap();
    assert_eq!(stored.content.caption(), Some("What is this rash?"));

    // Refused before any byte was downloaded: too big as announced, or off Meta's hosts.
    assert_eq!(graph_calls_for(&stack, &big_id), (1, 0));
    assert_eq!(graph_calls_for(&stack, &offsite_id), (1, 0));
    assert_eq!(graph_calls_for(&stack, &liar_id), (1, 1));
    // Media that failed their checks are not stored; every message record is.
    for (m, ext) in [(&messages[5], "jpg"), (&messages[6], "ogg")] {
        let key = keys::media(&tag(m), &m.message_tag, ext);
        assert!(!stack.store.exists(&key).await.unwrap(), "{key} stored");
    }
    for m in &messages {
        let key = keys::message_record(&tag(m), &m.message_tag);
        assert!(stack.store.exists(&key).await.unwrap(), "{key} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_server_error_fails_its_record_and_the_later_ones_of_the_same_user() {
    let stack = TestBed::start("ggml-tiny.en.bin", &[]).await;
    let fx = Fixtures::new();
    let note = audio::read(&fx.voice_note("note.ogg", "en", audio::SENTENCE));
    let voice_id = stack.graph.add_media(note, OPUS);
    let photo_id = stack
        .graph
        .add_media(audio::random_bytes(500, 1), "image/jpeg");
    stack.graph.inject(Fault::times(
        Endpoint::MediaLookup,
        1,
        ErrorSpec::server_error(),
    ));

    let a1 = message("15551232001", "wamid.A1", audio(&voice_id, OPUS));
    let b1 = message("15551232002", "wamid.B1", text("first from b"));
    let a2 = message("15551232001", "wamid.A2", text("after the voice note"));
    let b2 = message("15551232002", "wamid.B2", image(&photo_id, "look"));
    let batch = || {
        event(vec![
            record("sqs-a1", &a1),
            record("sqs-b1", &b1),
            record("sqs-a2", &a2),
            record("sqs-b2", &b2),
        ])
    };
    let response = stack.transcriber.handle(batch()).await;
    assert_eq!(failed_ids(&response), vec!["sqs-a1", "sqs-a2"]);
    let replies = stack.replies().await;
    let ids: Vec<&str> = replies.iter().map(|r| r.job.message.id.as_str()).collect();
    assert_eq!(ids, vec!["wamid.B1", "wamid.B2"]);
    assert!(
        !stack
            .store
            .exists(&keys::message_record(&tag(&a2), &a2.message_tag))
            .await
            .unwrap()
    );

    // SQS delivers the failed ones again, in order: now they go through.
    let retry = event(vec![record("sqs-a1", &a1), record("sqs-a2", &a2)]);
    let response = stack.transcriber.handle(retry).await;
    assert!(failed_ids(&response).is_empty(), "{response:?}");
    let replies = stack.replies().await;
    let ids: Vec<&str> = replies.iter().map(|r| r.job.message.id.as_str()).collect();
    assert_eq!(ids, vec!["wamid.A1", "wamid.A2"]);
    let Prepared::Transcribed { text, .. } = &replies[0].job.prepared else {
        panic!("{replies:?}");
    };
    assert!(word_error_rate(audio::SENTENCE, text) <= 0.35, "{text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_an_expired_token_are_retried_not_answered() {
    let stack = TestBed::start("ggml-tiny.en.bin", &[]).await;
    let photo_id = stack
        .graph
        .add_media(audio::random_bytes(500, 2), "image/png");
    let msg = message("15551233001", "wamid.RETRY", {
        let mut content = image(&photo_id, "see");
        if let Content::Image { media, .. } = &mut content {
            media.mime_type = Some("image/png".into());
        }
        content
    });
    let faults = [
        Fault::times(Endpoint::MediaDownload, 1, ErrorSpec::throughput()),
        Fault::times(Endpoint::MediaLookup, 1, ErrorSpec::expired_token()),
        Fault::times(
            Endpoint::MediaLookup,
            1,
            ErrorSpec::new(429, 4, "(#4) Application request limit reached"),
        ),
    ];
    for fault in faults {
        let what = format!("{fault:?}");
        stack.graph.inject(fault);
        let response = stack
            .transcriber
            .handle(event(vec![record("sqs-r", &msg)]))
            .await;
        assert_eq!(failed_ids(&response), vec!["sqs-r"], "{what}");
        assert!(stack.replies().await.is_empty(), "{what}: forwarded anyway");
    }
    let response = stack
        .transcriber
        .handle(event(vec![record("sqs-r", &msg)]))
        .await;
    assert!(failed_ids(&response).is_empty(), "{response:?}");
    let replies = stack.replies().await;
    assert!(
        matches!(
            prepared_for(&replies, &msg.id),
            Prepared::MediaStored { mime_type, .. } if mime_type == "image/png"
        ),
        "{replies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_is_not_downloaded_or_transcribed_again() {
    let stack = TestBed::start("ggml-tiny.en.bin", &[]).await;
    let fx = Fixtures::new();
    let note = audio::read(&fx.voice_note("note.ogg", "en", audio::SENTENCE));
    let voice_id = stack.graph.add_media(note, OPUS);
    let photo_id = stack
        .graph
        .add_media(audio::random_bytes(800, 9), "image/jpeg");
    let voice = message("15551234001", "wamid.REDELIVER.V", audio(&voice_id, OPUS));
    let photo = message("15551234001", "wamid.REDELIVER.P", image(&photo_id, "hi"));
    let batch = || event(vec![record("sqs-v", &voice), record("sqs-p", &photo)]);

    let first = stack.transcriber.handle(batch()).await;
    assert!(failed_ids(&first).is_empty(), "{first:?}");
    let transcript_key = keys::transcript(&tag(&voice), &voice.message_tag);
    let before = stack.store.get(&transcript_key).await.unwrap().unwrap();
    let calls = stack.graph.recorded().len();

    // Lambda timed out after the work was done: SQS delivers the same batch again.
    let second = stack.transcriber.handle(batch()).await;
    assert!(failed_ids(&second).is_empty(), "{second:?}");
    assert_eq!(
        stack.graph.recorded().len(),
        calls,
        "Graph API called again"
    );
    let after = stack.store.get(&transcript_key).await.unwrap().unwrap();
    assert_eq!(after.etag, before.etag, "transcript rewritten");

    // The reply queue deduplicates the second copies of the reply jobs.
    let replies = stack.replies().await;
    let ids: Vec<&str> = replies.iter().map(|r| r.job.message.id.as_str()).collect();
    assert_eq!(ids, vec!["wamid.REDELIVER.V", "wamid.REDELIVER.P"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_future_envelopes_fail_alone() {
    let stack = TestBed::start("ggml-tiny.en.bin", &[]).await;
    let good = message("15551235001", "wamid.GOOD", text("hello"));
    let mut garbage = record("sqs-garbage", &good);
    garbage.body = Some("{\"not\": \"an envelope\"".into());
    garbage
        .attributes
        .insert("MessageGroupId".into(), "some-other-group".into());
    let version = format!("\"v\":{}", remedios_shared::envelope::ENVELOPE_VERSION);
    let mut future = record("sqs-future", &good);
    future.body = Some(future.body.unwrap().replacen(&version, "\"v\":99", 1));
    future
        .attributes
        .insert("MessageGroupId".into(), "a-third-group".into());
    // Queued by a webhook from before keyed user tags: it names no tag.
    let mut old = record("sqs-old", &good);
    old.body = Some(old.body.unwrap().replacen(&version, "\"v\":1", 1));
    old.attributes
        .insert("MessageGroupId".into(), "a-fifth-group".into());
    let mut empty = record("sqs-empty", &good);
    empty.body = None;
    empty
        .attributes
        .insert("MessageGroupId".into(), "a-fourth-group".into());

    let response = stack
        .transcriber
        .handle(event(vec![
            garbage,
            future,
            old,
            empty,
            record("sqs-good", &good),
        ]))
        .await;
    assert_eq!(
        failed_ids(&response),
        vec!["sqs-garbage", "sqs-future", "sqs-old", "sqs-empty"]
    );
    let replies = stack.replies().await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].job.message, good);
    assert_eq!(replies[0].job.prepared, Prepared::Nothing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_is_fetched_from_s3_at_cold_start_and_reused() {
    use remedios_shared::config::Env;
    use transcriber::config::ModelSource;
    use transcriber::{Config, Transcriber};

    // The role with the model in the bucket: the template grants its key, and only it.
    let principal = remedios_testkit::iam::function_principal_with(
        remedios_template::TRANSCRIBER_FUNCTION,
        &[("WhisperModelS3Key", "models/ggml-tiny.en.bin")],
        &[
            (
                "InboundQueue.Arn",
                remedios_testkit::iam::queue_arn("remedios-inbound.fifo"),
            ),
            (
                "ReplyQueue.Arn",
                remedios_testkit::iam::queue_arn("reply.fifo"),
            ),
            (
                "Bucket.Arn",
                remedios_testkit::iam::bucket_arn(common::BUCKET),
            ),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let moto = remedios_testkit::moto::Moto::start_enforcing(vec![principal])
        .await
        .unwrap_or_else(|e| panic!("cannot start moto: {e}"));
    let sdk = moto.sdk_config().await;
    let s3 = remedios_testkit::moto::s3_client(&sdk);
    remedios_testkit::moto::create_bucket(&s3, common::BUCKET)
        .await
        .unwrap();
    let local = common::model_path("ggml-tiny.en.bin");
    let model = std::fs::read(&local).unwrap();
    let store = remedios_shared::store::Store::new(s3, common::BUCKET);
    store
        .put(
            "models/ggml-tiny.en.bin",
            model.clone(),
            "application/octet-stream",
        )
        .await
        .unwrap();

    let env = Env([
        ("BUCKET_NAME", common::BUCKET),
        (
            "REPLY_QUEUE_URL",
            "http://127.0.0.1:1/000000000000/reply.fifo",
        ),
        ("WHATSAPP_ACCESS_TOKEN", common::TOKEN),
        ("WHISPER_MODEL_S3_KEY", "models/ggml-tiny.en.bin"),
        ("WHISPER_THREADS", "1"),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
    ]);
    let mut config = Config::from_env(&env).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    config.model = ModelSource::S3 {
        key: "models/ggml-tiny.en.bin".into(),
        dir: tmp.path().to_owned(),
    };
    let function_sdk = moto
        .sdk_config_as("transcriber")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let transcriber = Transcriber::connect(&config, &function_sdk).await.unwrap();
    let Speech::Ready(engine) = transcriber.speech() else {
        panic!("the model loads: {:?}", transcriber.speech());
    };
    assert_eq!(engine.model(), "ggml-tiny.en");
    let copy = tmp.path().join("ggml-tiny.en.bin");
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), model.len() as u64);
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "temporary files left behind: {names:?}");

    // A second cold start in the same environment reuses the copy.
    let before = std::fs::metadata(&copy).unwrap().modified().unwrap();
    let again = Transcriber::connect(&config, &function_sdk).await.unwrap();
    assert!(matches!(again.speech(), Speech::Ready(e) if e.model() == "ggml-tiny.en"));
    assert_eq!(
        std::fs::metadata(&copy).unwrap().modified().unwrap(),
        before
    );

    // A missing key does not stop the cold start: it says why voice notes cannot be heard.
    config.model = ModelSource::S3 {
        key: "models/ggml-missing.bin".into(),
        dir: tmp.path().to_owned(),
    };
    let without = Transcriber::connect(&config, &function_sdk)
        .await
        .expect("the transcriber starts without its model");
    let Speech::Unavailable(why) = without.speech() else {
        panic!("no model was loaded: {:?}", without.speech());
    };
    assert!(why.contains("WHISPER_MODEL_S3_KEY"), "{why}");
}

/// The operator's mistake: the whisper model is missing (a wrong path or S3 key, a file
/// that was never uploaded). The transcriber still starts; a text from one user goes on to
/// be answered, and a voice note from another is forwarded as one it could not listen to
/// (the responder says so in the user's language), without downloading it, and nothing
/// is retried or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_model_the_transcriber_forwards_texts_and_says_it_could_not_listen() {
    let stack = TestBed::start(
        "ggml-tiny.en.bin",
        &[(
            "WHISPER_MODEL_PATH",
            "/nonexistent/models/ggml-base-q8_0.bin",
        )],
    )
    .await;
    let Speech::Unavailable(why) = stack.transcriber.speech() else {
        panic!(
            "a missing model is not loaded: {:?}",
            stack.transcriber.speech()
        );
    };
    assert!(why.contains("ggml-base-q8_0.bin"), "{why}");
    let fx = Fixtures::new();
    let note = audio::read(&fx.voice_note("note.ogg", "en", audio::SENTENCE));
    let media_id = stack.graph.add_media(note, OPUS);
    let voice = message("15551230007", "wamid.NOMODEL.1", audio(&media_id, OPUS));
    let words = message(
        "15551230008",
        "wamid.NOMODEL.2",
        text("Are you open today?"),
    );

    let response = stack
        .transcriber
        .handle(event(vec![
            record("sqs-1", &voice),
            record("sqs-2", &words),
        ]))
        .await;

    assert!(failed_ids(&response).is_empty(), "{response:?}");
    let replies = stack.replies().await;
    assert_eq!(
        prepared_for(&replies, "wamid.NOMODEL.2"),
        &Prepared::Nothing
    );
    match prepared_for(&replies, "wamid.NOMODEL.1") {
        Prepared::AudioUnsupported { reason } => {
            assert!(reason.contains("speech model is unavailable"), "{reason}")
        }
        other => panic!("the voice note is forwarded as unheard: {other:?}"),
    }
    assert_eq!(
        graph_calls_for(&stack, &media_id),
        (0, 0),
        "nothing downloaded"
    );
}

/// A warm container still holds the token it read at its cold start; the operator has
/// since replaced it in SSM. The first refusal (190) reads the parameter again and the
/// lookup is made once more with the new token: the media is had in this delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_replaced_in_ssm_is_read_again_on_the_first_refusal() {
    const PARAMETER: &str = "/remedios/whatsapp-access-token";
    let stack = TestBed::start("ggml-tiny.en.bin", &[]).await;
    let ssm = aws_sdk_ssm::Client::new(&stack.moto.sdk_config().await);
    let put = |value: &'static str| {
        ssm.put_parameter()
            .name(PARAMETER)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
    };
    put("expired-token").await.expect("the old token");
    let warm = stack
        .connect(
            "ggml-tiny.en.bin",
            &[
                ("WHATSAPP_ACCESS_TOKEN", ""),
                ("WHATSAPP_ACCESS_TOKEN_PARAM", PARAMETER),
            ],
        )
        .await;
    put(common::TOKEN).await.expect("the replaced token");
    let media_id = stack
        .graph
        .add_media(vec![0xff, 0xd8, 0xff, 0xe0], "image/jpeg");
    let photo = message("15551230009", "wamid.TOKEN.1", image(&media_id, "look"));

    let prepared = warm
        .process(&photo)
        .await
        .expect("handled in this delivery");

    assert!(
        matches!(prepared, Prepared::MediaStored { .. }),
        "{prepared:?}"
    );
    let lookups: Vec<&str> = stack
        .graph
        .recorded()
        .iter()
        .filter_map(|r| match r {
            Recorded::Refused {
                code: 190, path, ..
            } if path.contains(&media_id) => Some("refused"),
            Recorded::MediaLookup { answered: true, .. } => Some("answered"),
            _ => None,
        })
        .collect();
    assert_eq!(
        lookups,
        ["refused", "answered"],
        "refused with the old token, then answered"
    );
}
