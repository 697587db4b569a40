//! `REPLY_MODE=transcript` through the whole local stack: a spoken voice note comes back
//! as its text and a text gets the mode's note, with no call of the model host (the
//! responder's own metric lines say what it called). The same stack has a daily limit of
//! two messages per user (one stack start for both: they are a deployer's choices that go
//! together): the third message gets the one notice, the fourth nothing.

mod local_stack;

use std::collections::BTreeMap;

use local_stack::REPLY_TIMEOUT;
use remedios_local::chat::{Chat, Outgoing};
use remedios_shared::keys;
use remedios_testkit::meta;
use remedios_testkit::voice::voice_note;
use remedios_testkit::wer::word_error_rate;
use responder::texts::{FixedText, Lang};

const SPOKEN: &str = "Please book a table for four people on Tuesday evening.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcript_mode_answers_a_voice_note_with_its_text_and_calls_no_model() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let vars = BTreeMap::from([
        ("REPLY_MODE".to_owned(), "transcript".to_owned()),
        ("LIMIT_MESSAGES_PER_DAY".to_owned(), "2".to_owned()),
    ]);
    let stack = local_stack::start(&dir.path().join("logs"), vars).await;
    let info = stack.info().clone();
    let mut chat = Chat::connect(
        info.clone(),
        meta::User::phone("15550003333", "Transcripts"),
    )
    .await
    .expect("the chat connects to the stack");

    let voice = local_stack::send_voice(&mut chat, voice_note(dir.path(), "note", SPOKEN)).await;
    let s3 = local_stack::s3(&info).await;
    let stored = local_stack::object(
        &s3,
        &info.bucket,
        &keys::transcript(chat.tag(), &voice.message_tag),
    )
    .await;
    assert!(
        stored.is_some(),
        "the transcript is kept in S3 as in answer mode"
    );
    assert_eq!(voice.replies.len(), 1, "one reply: {:?}", voice.replies);
    let wer = word_error_rate(SPOKEN, &voice.replies[0]);
    assert!(
        wer <= 0.35,
        "the reply is what was said (WER {wer:.2}): {:?}",
        voice.replies[0]
    );
    let text = chat
        .send(
            Outgoing::Text("What time do you open?".into()),
            REPLY_TIMEOUT,
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("no reply to the text: {e}"));
    assert_eq!(
        text.replies,
        [FixedText::TranscriptOnly.default_text(Lang::En)],
        "a text gets the mode's note"
    );

    // Over the limit: the third message of the day gets the notice, the fourth nothing.
    let third = chat
        .send(
            Outgoing::Text("Are you there?".into()),
            REPLY_TIMEOUT,
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("no notice for the third message: {e}"));
    assert_eq!(
        third.replies,
        [FixedText::LimitDay.default_text(Lang::En)],
        "the limit's notice"
    );
    let fourth = chat
        .send(
            Outgoing::Text("Hello? Anyone?".into()),
            std::time::Duration::from_secs(15),
            |_| {},
        )
        .await;
    assert!(
        matches!(fourth, Err(remedios_local::chat::ChatError::NoReply { .. })),
        "nothing more within the window: {:?}",
        fourth.map(|e| e.replies)
    );

    let log = std::fs::read_to_string(info.log_dir.join("functions.log")).expect("the log");
    let metrics = remedios_shared::metrics::parse_lines(&log);
    let mut forwarded: Vec<&str> = metrics
        .iter()
        .filter(|m| m["Function"] == "transcriber" && m.get("Forwarded").is_some())
        .filter_map(|m| m["Outcome"].as_str())
        .collect();
    forwarded.sort_unstable();
    assert_eq!(
        forwarded,
        ["nothing", "over_limit", "over_limit", "transcribed"],
        "{metrics:?}"
    );
    let responder: Vec<_> = metrics
        .iter()
        .filter(|m| m["Function"] == "responder")
        .collect();
    assert!(
        responder.iter().all(|m| m.get("ModelCalls").is_none()),
        "the model host was not called: {responder:?}"
    );
    let mut jobs: Vec<&str> = responder
        .iter()
        .filter(|m| m.get("Jobs").is_some())
        .filter_map(|m| m["Outcome"].as_str())
        .collect();
    jobs.sort_unstable();
    assert_eq!(
        jobs,
        ["ignored", "mode_note", "over_limit", "transcript"],
        "{responder:?}"
    );

    local_stack::shutdown(stack).await;
}
