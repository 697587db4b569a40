//! `remedios dlq replay` against real moto: dead-lettered messages go back to their
//! source queue in group order with their bodies unchanged, the dead-letter queue
//! ends empty, and a dry run moves nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use remedios_local::dlq::{self, ReplayOptions, Target};
use remedios_testkit::moto::{self, Moto, QueuePair, QueueSpec};

struct Setup {
    _moto: Moto,
    sqs: aws_sdk_sqs::Client,
    queue: QueuePair,
}

async fn setup() -> Setup {
    let moto = Moto::start()
        .await
        .expect("moto starts (scripts/bootstrap.sh)");
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let queue = moto::create_queue_pair(
        &sqs,
        &QueueSpec::fifo("dlq-test", Duration::from_secs(30), 3),
    )
    .await
    .expect("queues are created");
    Setup {
        _moto: moto,
        sqs,
        queue,
    }
}

impl Setup {
    fn target(&self) -> Target {
        Target {
            queue_url: self.queue.url.clone(),
            dlq_url: self.queue.dlq_url.clone(),
        }
    }

    async fn send(&self, url: &str, group: &str, dedup: &str, body: &str) {
        self.sqs
            .send_message()
            .queue_url(url)
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .message_body(body)
            .send()
            .await
            .expect("sent");
    }

    /// Everything in `url`, deleting it: (group, body) in receive order.
    async fn drain(&self, url: &str) -> Vec<(String, String)> {
        self.drain_with_dedup(url)
            .await
            .into_iter()
            .map(|(group, _, body)| (group, body))
            .collect()
    }

    /// Everything in `url`, deleting it: (group, deduplication id, body).
    async fn drain_with_dedup(&self, url: &str) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .expect("received");
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return out;
            }
            for m in messages {
                let attr = |name| {
                    m.attributes()
                        .and_then(|a| a.get(&name))
                        .cloned()
                        .unwrap_or_default()
                };
                use aws_sdk_sqs::types::MessageSystemAttributeName as Name;
                out.push((
                    attr(Name::MessageGroupId),
                    attr(Name::MessageDeduplicationId),
                    m.body().unwrap_or_default().to_owned(),
                ));
                self.sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("deleted");
            }
        }
    }
}

/// Bodies per group, in order.
fn by_group(messages: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (group, body) in messages {
        groups.entry(group.clone()).or_default().push(body.clone());
    }
    groups
}

fn poison_bodies() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for user in ["user-a", "user-b"] {
        for n in 0..7 {
            let body = format!("{{\"user\":\"{user}\",\"n\":{n},\"text\":\"ünïcode ✓ {n}\"}}");
            out.push((user.to_owned(), format!("wamid.{user}.{n}"), body));
        }
    }
    out
}

#[tokio::test]
async fn replay_moves_dead_letters_back_in_group_order_with_bodies_unchanged() {
    let s = setup().await;
    let poison = poison_bodies();
    for (group, dedup, body) in &poison {
        // The original went through the source queue moments ago with this dedup id:
        // a resend with the same id would be dropped by FIFO deduplication.
        s.send(&s.queue.url, group, dedup, body).await;
        s.send(&s.queue.dlq_url, group, dedup, body).await;
    }
    assert_eq!(s.drain(&s.queue.url).await.len(), poison.len());

    let mut reported = Vec::new();
    let summary = dlq::replay(&s.sqs, &s.target(), &ReplayOptions::new(), |p| {
        reported.push(p.clone())
    })
    .await
    .expect("the replay runs");

    assert_eq!(summary.moved, poison.len(), "every message moved");
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(reported.len(), poison.len());
    for p in &reported {
        assert!(p.receive_count >= 1, "the receive count is shown: {p:?}");
        assert!(
            matches!(p.group.as_deref(), Some("user-a" | "user-b")),
            "the group is shown: {p:?}"
        );
    }
    let sizes: Vec<usize> = reported.iter().map(|p| p.body_bytes).collect();
    let mut expected_sizes: Vec<usize> = poison.iter().map(|(_, _, b)| b.len()).collect();
    let mut sorted = sizes.clone();
    sorted.sort_unstable();
    expected_sizes.sort_unstable();
    assert_eq!(sorted, expected_sizes, "body sizes in bytes are reported");

    let replayed = s.drain_with_dedup(&s.queue.url).await;
    for (_, dedup, _) in &replayed {
        assert!(
            dedup.starts_with("wamid.") && dedup.contains(":replay-"),
            "a fresh deduplication id derived from the original (a resend with the original id \
             within 5 minutes would be dropped by SQS): {dedup}"
        );
    }
    let replayed: Vec<(String, String)> = replayed
        .into_iter()
        .map(|(group, _, body)| (group, body))
        .collect();
    let expected: Vec<(String, String)> = poison
        .iter()
        .map(|(g, _, b)| (g.clone(), b.clone()))
        .collect();
    assert_eq!(
        by_group(&replayed),
        by_group(&expected),
        "the same bodies, in the same order per group"
    );
    assert!(
        s.drain(&s.queue.dlq_url).await.is_empty(),
        "the dead-letter queue ends empty"
    );
}

#[tokio::test]
async fn dry_run_moves_nothing_and_max_bounds_a_replay() {
    let s = setup().await;
    let poison = poison_bodies();
    for (group, dedup, body) in &poison {
        s.send(&s.queue.dlq_url, group, dedup, body).await;
    }

    let dry = ReplayOptions {
        dry_run: true,
        ..ReplayOptions::new()
    };
    let summary = dlq::replay(&s.sqs, &s.target(), &dry, |_| {})
        .await
        .expect("the dry run runs");
    assert_eq!(summary.moved, 0);
    assert!(!summary.seen.is_empty(), "the dry run shows the messages");

    let bounded = ReplayOptions {
        max: Some(3),
        ..ReplayOptions::new()
    };
    let summary = dlq::replay(&s.sqs, &s.target(), &bounded, |_| {})
        .await
        .expect("the bounded replay runs");
    assert_eq!(summary.moved, 3, "--max 3 moves three");

    let moved = s.drain(&s.queue.url).await;
    assert_eq!(moved.len(), 3);
    let left = s.drain(&s.queue.dlq_url).await;
    assert_eq!(
        left.len(),
        poison.len() - 3,
        "the dry run left everything, the bounded replay took three"
    );
    let mut all = moved;
    all.extend(left);
    let mut bodies: Vec<String> = all.into_iter().map(|(_, b)| b).collect();
    let mut expected: Vec<String> = poison.into_iter().map(|(_, _, b)| b).collect();
    bodies.sort();
    expected.sort();
    assert_eq!(bodies, expected, "nothing lost or duplicated");
}

#[tokio::test]
async fn the_dead_letter_queue_is_found_from_the_redrive_policy() {
    let s = setup().await;
    let dlq_url = dlq::dead_letter_queue_of(&s.sqs, &s.queue.url)
        .await
        .expect("the redrive policy names the dead-letter queue");
    assert_eq!(dlq_url, s.queue.dlq_url);
    let err = dlq::dead_letter_queue_of(&s.sqs, &s.queue.dlq_url)
        .await
        .expect_err("a dead-letter queue has no redrive policy");
    assert!(err.to_string().contains("--dlq-url"), "{err}");
}

/// An inbound message body its user sent `age_s` seconds before `now_s`.
fn inbound_body(id: &str, now_s: i64, age_s: i64) -> String {
    use remedios_shared::envelope::{Content, ENVELOPE_VERSION, InboundMessage};
    use remedios_shared::user::Sender;
    let message = InboundMessage {
        v: ENVELOPE_VERSION,
        phone_number_id: "1234567890".into(),
        display_phone_number: None,
        sender: Sender {
            wa_id: Some("15550001111".into()),
            user_id: None,
            username: None,
            profile_name: None,
        },
        user: remedios_testkit::meta::user_tag("15550001111"),
        message_tag: remedios_testkit::meta::message_tag(id),
        id: id.into(),
        timestamp: now_s - age_s,
        received_at_ms: (now_s - age_s) * 1000,
        context: None,
        referral: None,
        group_id: None,
        origin: Default::default(),
        content: Content::Text {
            body: "hello".into(),
        },
    };
    serde_json::to_string(&message).expect("serialised")
}

#[tokio::test]
async fn messages_past_whatsapps_24_hour_window_are_flagged_and_dropped_only_when_asked() {
    let s = setup().await;
    let options = ReplayOptions::new();
    let now = options.now_s;
    let fresh = inbound_body("wamid.fresh", now, 3600);
    let stale = inbound_body("wamid.stale", now, 30 * 3600);
    s.send(&s.queue.dlq_url, "user-a", "stale", &stale).await;
    s.send(&s.queue.dlq_url, "user-b", "fresh", &fresh).await;

    // A dry run says which would get no reply.
    let dry = ReplayOptions {
        dry_run: true,
        ..options.clone()
    };
    let seen = dlq::replay(&s.sqs, &s.target(), &dry, |_| {})
        .await
        .expect("the dry run runs")
        .seen;
    let flagged: Vec<(bool, i64)> = seen
        .iter()
        .map(|p| {
            (
                p.past_window,
                now - p.sent_at_s.expect("the body says when"),
            )
        })
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(flagged.contains(&(true, 30 * 3600)), "{flagged:?}");
    assert!(flagged.contains(&(false, 3600)), "{flagged:?}");

    // Asked to, the replay drops the stale one and moves the other.
    let dropping = ReplayOptions {
        drop_past_window: true,
        ..options
    };
    let summary = dlq::replay(&s.sqs, &s.target(), &dropping, |_| {})
        .await
        .expect("the replay runs");
    assert_eq!((summary.moved, summary.dropped), (1, 1), "{summary:?}");
    assert_eq!(
        s.drain(&s.queue.url).await,
        [("user-b".to_owned(), fresh)],
        "only the message still in the window is replayed"
    );
    assert!(
        s.drain(&s.queue.dlq_url).await.is_empty(),
        "the stale one is gone"
    );
}
