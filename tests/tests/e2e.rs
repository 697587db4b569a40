//! The whole pipeline on one machine, started as `remedios up` starts it: moto with the
//! template's queues and bucket, the Graph API emulator, the llama.cpp model server
//! with SmolLM2, the three functions under `cargo lambda watch`, the event pump. A
//! signed text and an espeak-ng voice note go through the real `/webhook` endpoint; the
//! replies must reach the emulator (the voice note's as a voice note, spoken with the
//! real Piper voice), S3 must hold what each stage writes, and nothing may be left
//! running afterwards.

mod local_stack;

use std::collections::BTreeMap;

use local_stack::{REPLY_TIMEOUT, object};
use remedios_local::chat::{Chat, Outgoing};
use remedios_shared::keys;
use remedios_testkit::meta;
use remedios_testkit::voice::voice_note;

async fn keys_under(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    s3.list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .map(|out| {
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_and_a_voice_note_are_answered_through_the_whole_local_stack() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stack = local_stack::start(&dir.path().join("logs"), BTreeMap::new()).await;
    let info = stack.info().clone();

    let user = meta::User::phone("15550002222", "End To End");
    let mut chat = Chat::connect(info.clone(), user)
        .await
        .expect("the chat connects to the stack");
    let s3 = local_stack::s3(&info).await;
    let tag = chat.tag().clone();

    let text = chat
        .send(
            Outgoing::Text("Hello Remedios! What colour is the sky?".into()),
            REPLY_TIMEOUT,
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("no reply to the text message: {e}"));
    assert!(
        text.replies.iter().any(|r| !r.trim().is_empty()),
        "the text got an empty reply: {:?}",
        text.replies
    );
    eprintln!("text: {}", text.stages.summary());

    // The secrets reached the functions as in AWS: SSM parameter names, never values;
    // and each function has only its own role's permissions.
    let mut checked = 0;
    for function in ["webhook", "transcriber", "responder"] {
        for pid in stack.function_pids(function) {
            let environ =
                std::fs::read(format!("/proc/{pid}/environ")).expect("the function's environment");
            let vars: Vec<String> = environ
                .split(|b| *b == 0)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            for secret in [
                "WHATSAPP_APP_SECRET",
                "WHATSAPP_VERIFY_TOKEN",
                "WHATSAPP_ACCESS_TOKEN",
            ] {
                assert!(
                    vars.iter()
                        .any(|v| v.starts_with(&format!("{secret}_PARAM=/"))),
                    "{function} reads {secret} from SSM"
                );
                assert!(
                    !vars.iter().any(|v| v.starts_with(&format!("{secret}="))),
                    "{function} was given {secret} itself"
                );
            }
            // Each runs as its own principal (its role's statements), never with keys
            // every function shares.
            assert!(
                vars.iter().any(|v| *v == format!("AWS_PROFILE={function}")),
                "{function} runs as its own principal"
            );
            assert!(
                !vars.iter().any(|v| v.starts_with("AWS_ACCESS_KEY_ID=")),
                "{function} was given keys in its environment"
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "the functions that answered are running");
    let record = object(
        &s3,
        &info.bucket,
        &keys::message_record(&tag, &text.message_tag),
    )
    .await
    .expect("the text's message record is in S3");
    assert!(
        String::from_utf8_lossy(&record).contains(&text.message_id),
        "the record names its message"
    );

    let audio = voice_note(
        dir.path(),
        "note",
        "Please remind me to drink a glass of water every morning.",
    );
    let voice = local_stack::send_voice(&mut chat, audio.clone()).await;
    eprintln!("voice: {}", voice.stages.summary());
    assert!(
        voice.replies.iter().any(|r| !r.trim().is_empty()),
        "the voice note got an empty reply"
    );
    assert!(
        voice.stages.transcribed.is_some(),
        "the transcript was seen before the reply"
    );
    // A voice note is answered with a voice note (VOICE_REPLY defaults to voice; remedios
    // up gives the responder the engine and the English voice bootstrap.sh installed):
    // one message, Ogg/Opus as WhatsApp plays it, saved where the chat shows it.
    assert_eq!(
        voice.voice_notes.len(),
        1,
        "one voice note in reply: {:?}",
        voice.replies
    );
    assert_eq!(
        voice.replies.len(),
        1,
        "and nothing else: {:?}",
        voice.replies
    );
    let spoken = std::fs::read(&voice.voice_notes[0]).expect("the saved voice reply");
    assert!(remedios_testkit::graph::is_mono_ogg_opus(&spoken));

    assert!(
        object(
            &s3,
            &info.bucket,
            &keys::message_record(&tag, &voice.message_tag)
        )
        .await
        .is_some(),
        "the voice note's message record is in S3"
    );
    let media = keys_under(
        &s3,
        &info.bucket,
        &format!("{}{}/{}.", keys::MEDIA, tag, voice.message_tag),
    )
    .await;
    assert_eq!(
        media.len(),
        1,
        "one media object for the voice note: {media:?}"
    );
    assert_eq!(
        object(&s3, &info.bucket, &media[0]).await.as_deref(),
        Some(audio.as_slice()),
        "the stored media is the audio that was sent"
    );
    let transcript = object(
        &s3,
        &info.bucket,
        &keys::transcript(&tag, &voice.message_tag),
    )
    .await
    .expect("the transcript is in S3");
    assert!(
        String::from_utf8_lossy(&transcript)
            .to_lowercase()
            .contains("water"),
        "the transcript has the spoken words"
    );
    let conversation = object(&s3, &info.bucket, &keys::conversation(&tag))
        .await
        .expect("the conversation is in S3");
    let conversation = String::from_utf8_lossy(&conversation).to_lowercase();
    assert!(
        conversation.contains("sky") && conversation.contains("water"),
        "the conversation holds both turns"
    );

    // Each function wrote its metrics as CloudWatch EMF lines, consistent with what
    // happened, and none names the user or what they said.
    let log = std::fs::read_to_string(dir.path().join("logs").join("functions.log"))
        .expect("the functions' log");
    let metrics = remedios_shared::metrics::parse_lines(&log);
    let of = |function: &str| -> Vec<&serde_json::Value> {
        metrics
            .iter()
            .filter(|m| m["Function"] == function)
            .collect()
    };
    let webhook: f64 = of("webhook")
        .iter()
        .map(|m| m["Messages"].as_f64().unwrap_or(0.0))
        .sum();
    assert_eq!(webhook, 2.0, "the webhook counted the two messages");
    let transcriber = of("transcriber");
    let transcribed: Vec<_> = transcriber
        .iter()
        .filter(|m| m.get("AudioSeconds").is_some())
        .collect();
    assert_eq!(transcribed.len(), 1, "one transcription: {transcriber:?}");
    let seconds = transcribed[0]["AudioSeconds"].as_f64().unwrap_or(0.0);
    assert!((1.0..30.0).contains(&seconds), "audio seconds {seconds}");
    assert!(transcribed[0]["RealTimeFactor"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(
        transcribed[0]["Model"]
            .as_str()
            .is_some_and(|m| m.starts_with("ggml-"))
    );
    let counted = |lines: &[&serde_json::Value], metric: &str, dimension: &str| {
        let mut by: Vec<String> = lines
            .iter()
            .filter(|m| m[metric].as_f64() == Some(1.0))
            .map(|m| m[dimension].as_str().unwrap_or("?").to_owned())
            .collect();
        by.sort();
        by
    };
    assert_eq!(
        counted(&transcriber, "VoiceNotes", "Language"),
        ["en"],
        "the voice note's language"
    );
    assert_eq!(
        counted(&transcriber, "Forwarded", "Outcome"),
        ["nothing", "transcribed"],
        "the text and the voice note forwarded"
    );
    let responder = of("responder");
    assert_eq!(
        counted(&responder, "Jobs", "Outcome"),
        ["answer", "answer"],
        "two answers"
    );
    let calls: Vec<&serde_json::Value> = responder
        .iter()
        .copied()
        .filter(|m| m.get("ModelCalls").is_some())
        .collect();
    assert_eq!(
        counted(&calls, "ModelCalls", "Outcome").len(),
        2,
        "{calls:?}"
    );
    for call in &calls {
        assert!(call["ModelMs"].as_f64().unwrap_or(0.0) > 0.0, "{call}");
        assert!(
            call["CompletionTokens"].as_f64().unwrap_or(0.0) >= 1.0,
            "{call}"
        );
    }
    let replies = of("responder");
    let answered = |content: &str| {
        replies
            .iter()
            .filter(|m| m["Reply"] == "answer" && m["Content"] == content)
            .map(|m| m["EndToEndMs"].as_f64().unwrap_or(0.0))
            .collect::<Vec<_>>()
    };
    for content in ["text", "voice"] {
        let latencies = answered(content);
        assert_eq!(latencies.len(), 1, "one {content} answer: {replies:?}");
        assert!(latencies[0] > 0.0, "{content}: end to end {latencies:?}");
    }
    for m in &metrics {
        let line = m.to_string();
        assert!(
            !line.contains("15550002222") && !line.contains(tag.as_str()) && !line.contains("sky"),
            "a metric names the user or the message: {line}"
        );
        let directive = &m["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Remedios");
        // As the schema the template's dashboard and alarms are checked against says.
        let function = m["Function"].as_str().unwrap_or_default();
        for metric in directive["Metrics"].as_array().into_iter().flatten() {
            let name = metric["Name"].as_str().unwrap_or_default();
            let schema = remedios_shared::metrics::line_of(function, name)
                .unwrap_or_else(|| panic!("{function} writes no {name} in the schema: {line}"));
            assert_eq!(
                directive["Dimensions"],
                serde_json::json!([schema.dimensions]),
                "{line}"
            );
            assert!(m[name].is_number(), "{line}");
        }
    }
    // What `remedios stats` prints from the same lines.
    let summary = remedios_local::stats::summarize(&log);
    assert!(
        summary
            .iter()
            .any(|r| r.figure == "responder: EndToEndMs (answer, voice)" && r.count == 1),
        "{summary:?}"
    );
    // The answer was spoken once, and nothing fell back to text.
    assert!(
        summary
            .iter()
            .any(|r| r.figure == "responder: VoiceReplies" && r.count == 1),
        "{summary:?}"
    );
    assert!(
        summary.iter().all(|r| !r.figure.contains("VoiceFallbacks")),
        "{summary:?}"
    );
    // Every message sent is one Meta bills: the voice note's answer among them.
    assert!(
        summary
            .iter()
            .any(|r| r.figure == "responder: BilledMessages (answer)" && r.count >= 1),
        "{summary:?}"
    );
    eprintln!(
        "remedios stats:\n{}",
        remedios_local::stats::table(&summary)
    );
    eprintln!(
        "metrics: text {:?} ms and voice {:?} ms end to end, transcription {:.2} s of audio at {:.2}x real time",
        answered("text"),
        answered("voice"),
        seconds,
        transcribed[0]["RealTimeFactor"].as_f64().unwrap_or(0.0)
    );

    // `remedios quarantine replay`: a body an older release could not read, kept in
    // quarantine, is taken in and answered; one this release cannot read either is kept
    // again and reported.
    let store = remedios_shared::store::Store::new(s3.clone(), &info.bucket);
    let kept_user = meta::User::phone("15550003333", "Kept Body");
    let kept_id = meta::wamid("15550003333", 1);
    let now_s = remedios_shared::clock::now_ms() / 1000;
    let readable = meta::single(
        &kept_user,
        meta::text(&kept_user, &kept_id, now_s, "Hello from the quarantine"),
    );
    let unreadable = r#"{"object":"whatsapp_business_account","entry":7}"#.to_owned();
    for (day, body) in [("2026-01-01", &readable), ("2026-01-02", &unreadable)] {
        let sha = hex_sha256(body.as_bytes());
        store
            .put(
                &format!("{}{day}/{sha}.json", keys::QUARANTINE),
                body.clone().into_bytes(),
                "application/json",
            )
            .await
            .expect("a kept body");
    }
    let done = remedios_local::quarantine::replay(
        &store,
        &info.webhook_url,
        info.app_secret.as_bytes(),
        |_, _| {},
    )
    .await
    .expect("replayed");
    assert_eq!(
        (
            done.accepted.len(),
            done.still_unreadable.len(),
            done.refused.len()
        ),
        (1, 1, 0),
        "{done:?}"
    );
    let graph = stack.graph_emulator().expect("the Graph API emulator");
    let deadline = std::time::Instant::now() + REPLY_TIMEOUT;
    while !graph
        .sent_texts()
        .iter()
        .any(|t| t.reply_to.as_deref() == Some(kept_id.as_str()))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the replayed message was never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let left = remedios_local::quarantine::kept(&store)
        .await
        .expect("list");
    assert_eq!(left.len(), 1, "the unreadable body is kept again: {left:?}");

    local_stack::shutdown(stack).await;
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
