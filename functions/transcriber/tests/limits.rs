//! The fair limits per user, counted by the transcriber as its own IAM role, against moto
//! (S3 conditional writes, SQS FIFO), the Graph API emulator and the real tiny.en model.

mod common;

use common::{TestBed, audio, message, text};
use remedios_shared::allowance::{Limit, Usage, Verdict};
use remedios_shared::clock::now_ms;
use remedios_shared::envelope::{Content, Prepared};
use remedios_shared::keys;
use remedios_testkit::audio::{self as sound, Fixtures};
use remedios_testkit::graph::Recorded;

const OPUS: &str = "audio/ogg; codecs=opus";
const DAY_MS: i64 = 86_400_000;

/// The counters stored at `key` (they must exist).
async fn usage_of(stack: &TestBed, key: &str) -> Usage {
    stack
        .store
        .get_json::<Usage>(key)
        .await
        .expect("S3")
        .unwrap_or_else(|| panic!("no usage record at {key}"))
        .0
}

/// The verdict each forwarded job carries, by message id.
fn verdicts(replies: &[common::Received]) -> Vec<(String, Option<(Limit, bool)>)> {
    let mut found: Vec<_> = replies
        .iter()
        .map(|r| {
            let over = match &r.job.prepared {
                Prepared::OverLimit { limit, notify, .. } => Some((*limit, *notify)),
                _ => None,
            };
            (r.job.message.id.clone(), over)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_messages_over_the_daily_limit_get_exactly_one_notice() {
    let stack = TestBed::start(
        "ggml-tiny.en.bin",
        &[
            ("LIMIT_MESSAGES_PER_DAY", "3"),
            ("LIMITS_EXEMPT", "+1 555 123 0099"),
        ],
    )
    .await;
    let messages: Vec<_> = (0..8)
        .map(|i| message("15551230010", &format!("wamid.LIMIT.{i}"), text("hello")))
        .collect();
    // All at once, as many containers could (the queue's FIFO group would serialise them;
    // the counters must not rely on it).
    let results =
        futures::future::join_all(messages.iter().map(|m| stack.transcriber.process(m))).await;
    for result in &results {
        assert!(result.is_ok(), "{result:?}");
    }
    let replies = stack.replies().await;
    assert_eq!(replies.len(), 8, "every message is forwarded: {replies:?}");
    let found = verdicts(&replies);
    let admitted = found.iter().filter(|(_, v)| v.is_none()).count();
    let told = found
        .iter()
        .filter(|(_, v)| *v == Some((Limit::MessagesPerDay, true)))
        .count();
    let silent = found
        .iter()
        .filter(|(_, v)| *v == Some((Limit::MessagesPerDay, false)))
        .count();
    assert_eq!(
        (admitted, told, silent),
        (3, 1, 4),
        "three within the limit, one notice, nothing more: {found:?}"
    );
    let until = replies
        .iter()
        .find_map(|r| match r.job.prepared {
            Prepared::OverLimit { until_ms, .. } => Some(until_ms),
            _ => None,
        })
        .expect("an over-limit job");
    assert_eq!(until.rem_euclid(DAY_MS), 0, "the day ends at UTC midnight");
    assert!(until > now_ms() && until - now_ms() <= DAY_MS);

    // A redelivery of a refused message is refused the same way, and counts nothing.
    let notified = found
        .iter()
        .find(|(_, v)| *v == Some((Limit::MessagesPerDay, true)))
        .map(|(id, _)| id.clone())
        .expect("the notified message");
    let again = messages
        .iter()
        .find(|m| m.id == notified)
        .expect("its message");
    let prepared = stack.transcriber.process(again).await.expect("redelivery");
    assert!(
        matches!(prepared, Prepared::OverLimit { notify: true, .. }),
        "{prepared:?}"
    );
    // A reaction is never answered: it counts nothing and is not refused.
    let reaction = message(
        "15551230010",
        "wamid.LIMIT.REACTION",
        Content::Reaction {
            message_id: "wamid.LIMIT.0".into(),
            emoji: Some("👍".into()),
        },
    );
    assert_eq!(
        stack
            .transcriber
            .process(&reaction)
            .await
            .expect("processed"),
        Prepared::Nothing
    );
    let user = messages[0].user.clone();
    let usage = usage_of(&stack, &keys::usage(&user)).await;
    assert_eq!(usage.in_day, 3, "{usage:?}");
    let reaction = remedios_testkit::meta::message_tag("wamid.LIMIT.REACTION");
    assert!(!usage.decided.iter().any(|d| d.id == reaction.as_str()));

    // The exempt number is never counted, and no counters are stored for it.
    let exempt: Vec<_> = (0..5)
        .map(|i| message("15551230099", &format!("wamid.EXEMPT.{i}"), text("hi")))
        .collect();
    for m in &exempt {
        assert_eq!(
            stack.transcriber.process(m).await.expect("processed"),
            Prepared::Nothing
        );
    }
    assert!(
        stack
            .store
            .get(&keys::usage(&exempt[0].user))
            .await
            .expect("S3")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_notes_are_charged_and_refused_before_download_once_the_minutes_are_used() {
    let stack = TestBed::start("ggml-tiny.en.bin", &[("LIMIT_AUDIO_MINUTES_PER_DAY", "1")]).await;
    let fx = Fixtures::new();
    let note_path = fx.voice_note("limit.ogg", "en", sound::SENTENCE);
    let media_id = stack.graph.add_media(sound::read(&note_path), OPUS);
    let first = message("15551230020", "wamid.AUDIO.1", audio(&media_id, OPUS));
    let prepared = stack.transcriber.process(&first).await.expect("processed");
    let Prepared::Transcribed { duration_ms, .. } = prepared else {
        panic!("the first note is transcribed: {prepared:?}");
    };
    let key = keys::usage(&first.user);
    let usage = usage_of(&stack, &key).await;
    assert_eq!(usage.audio_ms, duration_ms, "charged its length");

    // Use up the rest of the day's minute, as the operator's admin.
    let mut used = usage.clone();
    used.audio_ms = 60_000;
    stack.store.put_json(&key, &used).await.expect("S3 put");

    let second_media = stack.graph.add_media(sound::read(&note_path), OPUS);
    let second = message("15551230020", "wamid.AUDIO.2", audio(&second_media, OPUS));
    let prepared = stack.transcriber.process(&second).await.expect("processed");
    assert!(
        matches!(
            prepared,
            Prepared::OverLimit {
                limit: Limit::AudioPerDay,
                notify: true,
                ..
            }
        ),
        "{prepared:?}"
    );
    let touched = stack.graph.recorded().iter().any(|r| {
        matches!(r, Recorded::MediaLookup { media_id, .. } | Recorded::MediaDownload { media_id, .. } if *media_id == second_media)
    });
    assert!(!touched, "the refused note was not even looked up");
    assert!(
        stack
            .store
            .get(&keys::transcript(&second.user, &second.message_tag))
            .await
            .expect("S3")
            .is_none(),
        "nor transcribed"
    );
    let written = stack
        .transcriber
        .process(&message(
            "15551230020",
            "wamid.AUDIO.3",
            text("and a text?"),
        ))
        .await
        .expect("processed");
    assert_eq!(written, Prepared::Nothing, "texts are still welcome");
    let usage = usage_of(&stack, &key).await;
    assert!(usage.decided.iter().any(|d| d.id
        == remedios_testkit::meta::message_tag("wamid.AUDIO.2").as_str()
        && matches!(d.verdict, Verdict::Over { .. })));
}

/// A usage record that does not parse (a rollback, a hand edit) is moved aside under
/// `quarantine/state/` and its user counted afresh, instead of every message of theirs
/// failing into the dead-letter queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_record_that_does_not_parse_is_moved_aside_and_counting_starts_afresh() {
    let stack = TestBed::start("ggml-tiny.en.bin", &[("LIMIT_MESSAGES_PER_DAY", "3")]).await;
    let first = message("15551230031", "wamid.BADUSAGE.1", text("hello"));
    let key = keys::usage(&first.user);
    stack
        .store
        .put(
            &key,
            b"[\"not\", \"a usage record\"]".to_vec(),
            "application/json",
        )
        .await
        .expect("a bad usage record");

    let prepared = stack.transcriber.process(&first).await.expect("handled");

    assert_eq!(prepared, Prepared::Nothing);
    assert_eq!(usage_of(&stack, &key).await.in_day, 1, "counted afresh");
    let aside = stack.store.list("quarantine/state/").await.expect("list");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(aside[0].0.starts_with(&format!("quarantine/state/{key}.")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_staff_and_the_business_app_send_never_counts_against_a_users_limits() {
    let stack = TestBed::start("ggml-tiny.en.bin", &[("LIMIT_MESSAGES_PER_DAY", "1")]).await;
    let user = "15551230020";
    // Three echoes of what a person sent the user from the WhatsApp Business app, and three
    // messages from a staff number: none of them is the user's.
    for i in 0..3 {
        let mut echo = message(user, &format!("wamid.ECHO.{i}"), text("from the shop"));
        echo.origin = remedios_shared::envelope::Origin::Echo;
        stack.transcriber.process(&echo).await.expect("echo");
        let mut staff = message("15551230021", &format!("wamid.STAFF.{i}"), text("hi"));
        staff.origin = remedios_shared::envelope::Origin::Staff;
        stack.transcriber.process(&staff).await.expect("staff");
    }
    // The user's own first message of the day is still within their one.
    let own = message(user, "wamid.OWN.0", text("hello"));
    stack.transcriber.process(&own).await.expect("own");
    let found = verdicts(&stack.replies().await);
    assert_eq!(found.len(), 7, "{found:?}");
    assert!(
        found.iter().all(|(_, over)| over.is_none()),
        "nothing over a limit: {found:?}"
    );
    // The next one of the user's is over it: the limit counted only theirs.
    let second = message(user, "wamid.OWN.1", text("hello again"));
    stack.transcriber.process(&second).await.expect("second");
    assert_eq!(
        verdicts(&stack.replies().await),
        [(
            "wamid.OWN.1".to_owned(),
            Some((Limit::MessagesPerDay, true))
        )]
    );
}
