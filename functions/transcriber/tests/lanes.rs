//! Speech lanes against moto (SQS FIFO, S3 conditional writes) as the transcriber's own
//! IAM role, the Graph API emulator and the real tiny.en model: a voice note goes to its
//! lane instead of being transcribed where it arrives, the same user's next text follows
//! it there, other users' texts are answered at once, and the lane forwards in order.

mod common;

use std::time::Duration;

use common::{TestBed, audio, message, record, text};
use remedios_shared::envelope::Prepared;
use remedios_shared::keys;
use remedios_testkit::audio::{self as sound, Fixtures};
use remedios_testkit::lambda::sqs_event;
use transcriber::Transcriber;
use transcriber::lanes::GROUP_PREFIX;

const OPUS: &str = "audio/ogg; codecs=opus";

fn group(m: &aws_sdk_sqs::types::Message) -> String {
    m.attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_notes_wait_in_their_lane_and_the_users_texts_keep_their_order() {
    let stack = TestBed::start("ggml-tiny.en.bin", &[]).await;
    // The transcriber's own role sends to the lane, as in Lambda.
    let (inbound, consumer) = stack.inbound_queue(Duration::from_secs(60)).await;
    let transcriber: Transcriber = stack
        .connect(
            "ggml-tiny.en.bin",
            &[
                ("INBOUND_QUEUE_URL", inbound.url.as_str()),
                ("SPEECH_LANES", "2"),
                ("INBOUND_MAX_CONCURRENCY", "5"),
            ],
        )
        .await
        .with_source(consumer);

    let fx = Fixtures::new();
    let note = sound::read(&fx.voice_note("lane.ogg", "en", sound::SENTENCE));
    let voice_id = stack.graph.add_media(note, OPUS);
    let voice = message("15551237001", "wamid.LANE.1", audio(&voice_id, OPUS));
    let after = message("15551237001", "wamid.LANE.2", text("and one more thing"));
    let other = message("15551237002", "wamid.LANE.3", text("hello"));

    // As the user's group delivers them: the note and the same user's text go to the
    // lane, the other user's text is forwarded at once.
    for (i, m) in [&voice, &after, &other].into_iter().enumerate() {
        let response = transcriber
            .handle(common::event(vec![record(&format!("sqs-{i}"), m)]))
            .await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    let direct = stack.replies().await;
    assert_eq!(
        direct
            .iter()
            .map(|r| r.job.message.id.as_str())
            .collect::<Vec<_>>(),
        ["wamid.LANE.3"],
        "only the other user's text is forwarded before the lane runs"
    );
    assert!(
        stack
            .store
            .exists(&keys::lane(&voice.user))
            .await
            .expect("S3"),
        "the user's marker is set"
    );
    assert!(
        stack
            .store
            .get(&keys::transcript(&voice.user, &voice.message_tag))
            .await
            .expect("S3")
            .is_none(),
        "not transcribed where it arrived"
    );

    let laned = stack.take_all(&inbound.url, Duration::from_secs(10)).await;
    assert_eq!(laned.len(), 2, "{laned:?}");
    let lane = group(&laned[0]);
    assert!(lane.starts_with(GROUP_PREFIX), "{lane}");
    assert_eq!(
        group(&laned[1]),
        lane,
        "the user's text follows into the same lane"
    );

    // The lane delivers them one at a time, in order.
    for m in &laned {
        let response = transcriber
            .handle(sqs_event(
                std::slice::from_ref(m),
                &inbound.arn,
                "us-east-1",
            ))
            .await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    let from_lane = stack.replies().await;
    assert_eq!(
        from_lane
            .iter()
            .map(|r| r.job.message.id.as_str())
            .collect::<Vec<_>>(),
        ["wamid.LANE.1", "wamid.LANE.2"]
    );
    match &from_lane[0].job.prepared {
        Prepared::Transcribed { text, .. } => {
            assert!(text.to_lowercase().contains("ibuprofen"), "{text}")
        }
        other => panic!("the note is transcribed in its lane: {other:?}"),
    }
    assert!(
        from_lane.iter().all(|r| r.group_id == voice.user.as_str()),
        "reply jobs stay in the user's group"
    );

    // The lane is clear: the user's next text is forwarded at once.
    let later = message("15551237001", "wamid.LANE.4", text("thanks"));
    let response = transcriber
        .handle(common::event(vec![record("sqs-4", &later)]))
        .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let direct = stack.replies().await;
    assert_eq!(direct.len(), 1);
    assert_eq!(direct[0].job.message.id, "wamid.LANE.4");
    assert!(
        stack
            .take_all(&inbound.url, Duration::from_secs(2))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_keeps_the_marker_of_a_message_sent_to_it_meanwhile() {
    let stack = TestBed::start("ggml-tiny.en.bin", &[]).await;
    let markers = transcriber::lanes::Markers::new(stack.store.clone());
    let first = message("15551237010", "wamid.MARK.1", text("a"));
    let second = message("15551237010", "wamid.MARK.2", text("b"));
    markers
        .enter(&first.user, &first.message_tag)
        .await
        .expect("S3");
    markers
        .enter(&second.user, &second.message_tag)
        .await
        .expect("S3");
    // The first is forwarded from the lane: the marker names the second, so it stays.
    markers
        .leave(&first.user, &first.message_tag)
        .await
        .expect("S3");
    assert!(markers.waiting(&first.user).await.expect("S3"));
    markers
        .leave(&second.user, &second.message_tag)
        .await
        .expect("S3");
    assert!(!markers.waiting(&first.user).await.expect("S3"));
}
