//! The failure policy of the transcriber: a message that fails on every delivery, or
//! audio that cannot be transcribed in the invocation's time, still reaches the
//! responder with what went wrong, so the user is told; the user's later messages follow
//! it. Against moto (S3, SQS, the transcriber's own role), the Graph API emulator and
//! the real tiny.en whisper model, with voice notes spoken by espeak-ng.

mod common;

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsMessage;
use common::{TestBed, audio, event, failed_ids, message, record, text};
use remedios_shared::clock::Deadline;
use remedios_shared::envelope::{InboundMessage, Prepared};
use remedios_shared::queue::{self, Outgoing, Queue};
use remedios_testkit::audio::{self, Fixtures};
use remedios_testkit::graph::{Endpoint, ErrorSpec, Fault};
use remedios_testkit::lambda::sqs_event;
use transcriber::handler::FORWARD_MARGIN;

const OPUS: &str = "audio/ogg; codecs=opus";

/// `message` as SQS delivers it for the `delivery`th time.
fn delivered(sqs_id: &str, message: &InboundMessage, delivery: u32) -> SqsMessage {
    let mut r = record(sqs_id, message);
    r.attributes
        .insert("ApproximateReceiveCount".into(), delivery.to_string());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_note_failing_on_every_delivery_is_forwarded_as_unusable_on_the_last() {
    let stack = TestBed::start("ggml-tiny.en.bin", &[("INBOUND_MAX_RECEIVE_COUNT", "5")]).await;
    let fx = Fixtures::new();
    let note = audio::read(&fx.voice_note("note.ogg", "en", audio::SENTENCE));
    let voice_id = stack.graph.add_media(note, OPUS);
    // Meta's media service answers 500 for the whole test.
    stack.graph.inject(Fault::during(
        Endpoint::MediaLookup,
        Duration::from_secs(3600),
        ErrorSpec::server_error(),
    ));
    let note = message("15551239001", "wamid.EVERY1", audio(&voice_id, OPUS));
    let later = message("15551239001", "wamid.EVERY2", text("did you get my note?"));

    let mut deliveries = 0;
    for delivery in 1..=4 {
        deliveries += 1;
        let response = stack
            .transcriber
            .handle(event(vec![
                delivered("sqs-1", &note, delivery),
                delivered("sqs-2", &later, delivery),
            ]))
            .await;
        assert_eq!(
            failed_ids(&response),
            ["sqs-1", "sqs-2"],
            "delivery {delivery}"
        );
        assert!(stack.replies().await.is_empty());
    }
    deliveries += 1;
    let last = stack
        .transcriber
        .handle(event(vec![
            delivered("sqs-1", &note, 5),
            delivered("sqs-2", &later, 5),
        ]))
        .await;

    assert!(failed_ids(&last).is_empty(), "{last:?}");
    assert_eq!(deliveries, 5, "the queue's maxReceiveCount");
    let replies = stack.replies().await;
    let ids: Vec<&str> = replies.iter().map(|r| r.job.message.id.as_str()).collect();
    assert_eq!(ids, ["wamid.EVERY1", "wamid.EVERY2"], "in order, once each");
    let Prepared::AudioUnsupported { reason } = &replies[0].job.prepared else {
        panic!(
            "the note is forwarded as unusable: {:?}",
            replies[0].job.prepared
        );
    };
    assert!(reason.contains("last delivery"), "{reason}");
    assert_eq!(replies[1].job.prepared, Prepared::Nothing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_that_cannot_be_transcribed_in_time_is_forwarded_as_unusable_at_once() {
    let stack = TestBed::start("ggml-tiny.en.bin", &[]).await;
    let fx = Fixtures::new();
    // About 50 s of speech: two chunks or more.
    let long = audio::read(&fx.voice_note("long.ogg", "en", &audio::long_text(50)));
    let voice_id = stack.graph.add_media(long, OPUS);
    let note = message("15551239002", "wamid.TIME1", audio(&voice_id, OPUS));
    let later = message("15551239002", "wamid.TIME2", text("and one more thing"));

    // An invocation with a little more than the forwarding margin left.
    let invocation = FORWARD_MARGIN + Duration::from_millis(300);
    let started = Instant::now();
    let response = stack
        .transcriber
        .handle_by(
            event(vec![record("sqs-1", &note), record("sqs-2", &later)]),
            Deadline::after(invocation),
        )
        .await;

    assert!(failed_ids(&response).is_empty(), "{response:?}");
    assert!(
        started.elapsed() < invocation,
        "both forwarded within the invocation: {:?}",
        started.elapsed()
    );
    let replies = stack.replies().await;
    let ids: Vec<&str> = replies.iter().map(|r| r.job.message.id.as_str()).collect();
    assert_eq!(ids, ["wamid.TIME1", "wamid.TIME2"]);
    let Prepared::AudioUnsupported { reason } = &replies[0].job.prepared else {
        panic!("forwarded as unusable: {:?}", replies[0].job.prepared);
    };
    assert!(reason.contains("in the time"), "{reason}");

    // With the time it needs, the same audio is transcribed.
    let unhurried = message("15551239003", "wamid.TIME3", audio(&voice_id, OPUS));
    let again = stack
        .transcriber
        .handle(event(vec![record("sqs-3", &unhurried)]))
        .await;
    assert!(failed_ids(&again).is_empty());
    let replies = stack.replies().await;
    assert!(
        matches!(&replies[0].job.prepared, Prepared::Transcribed { text, .. } if !text.is_empty()),
        "{:?}",
        replies[0].job.prepared
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_record_comes_back_after_its_backoff_not_the_visibility_timeout() {
    // No speech lanes: the note is fetched where it arrives, so its first delivery fails.
    let stack = TestBed::start("ggml-tiny.en.bin", &[("SPEECH_LANES", "0")]).await;
    let visibility = Duration::from_secs(120);
    let (inbound, consumer) = stack.inbound_queue(visibility).await;
    let transcriber = stack.transcriber.clone().with_source(consumer);
    stack.graph.inject(Fault::during(
        Endpoint::MediaLookup,
        Duration::from_secs(3600),
        ErrorSpec::server_error(),
    ));
    let note = message("15551239004", "wamid.BACK1", audio("no-such-media", OPUS));
    let outgoing =
        Outgoing::new(&note, &note.user, queue::dedup_id(&note.id, None)).expect("a queue message");
    Queue::new(stack.sqs.clone(), &inbound.url)
        .send_all(&[outgoing])
        .await
        .expect("enqueued");

    let first = stack.receive(&inbound.url, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 1);
    let response = transcriber
        .handle(sqs_event(&first, &inbound.arn, "us-east-1"))
        .await;
    assert_eq!(
        failed_ids(&response).len(),
        1,
        "Meta's media service is down"
    );
    let failed_at = Instant::now();

    let again = stack.receive(&inbound.url, Duration::from_secs(60)).await;
    let waited = failed_at.elapsed();
    assert_eq!(again.len(), 1, "delivered again");
    assert!(
        waited >= Duration::from_secs(8) && waited < Duration::from_secs(30),
        "back after {waited:?}: the 10 s backoff, not the {visibility:?} visibility timeout"
    );
    let count = again[0]
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
        })
        .cloned();
    assert_eq!(count.as_deref(), Some("2"));
}
