//! A person steps in, through the whole local stack (`remedios up` on loopback: the
//! webhook, both queues, the three functions, moto, the Graph API emulator and the real
//! SmolLM2 model server), played by `remedios chat`'s own client: a user and a staff
//! number, as `remedios chat` and `remedios chat --staff` do.
//!
//! Ana asks for a person; Marta (a staff number) is notified, sees what Ana writes next,
//! answers her by quoting the notification, and hands her back with `/bot`, after which
//! the model answers Ana again. Luis asks too and nobody answers him: after the timeout
//! he is told, and the assistant has him again.

mod local_stack;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use local_stack::REPLY_TIMEOUT;
use remedios_local::chat::{Chat, Incoming, Outgoing};
use remedios_testkit::meta;
use responder::texts::{FixedText, Lang};

const MARTA: &str = "15550002222";

fn said(text: FixedText) -> String {
    text.default_text(Lang::En).to_owned()
}

/// What `chat` receives until `done` holds for it, for at most `limit`.
async fn receive_until(
    chat: &mut Chat,
    limit: Duration,
    done: impl Fn(&[Incoming]) -> bool,
) -> Vec<Incoming> {
    let started = Instant::now();
    let mut got = Vec::new();
    loop {
        got.extend(chat.inbox().await.expect("the emulator answers"));
        if done(&got) {
            return got;
        }
        assert!(
            started.elapsed() < limit,
            "waited {limit:?}; received only {:?}",
            got.iter().map(|i| &i.body).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn has(text: &str) -> impl Fn(&[Incoming]) -> bool + '_ {
    move |got| got.iter().any(|i| i.body.contains(text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_answer_a_user_by_quoting_and_hand_back_and_nobody_answering_times_out() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let vars = BTreeMap::from([
        ("STAFF_NUMBERS".to_owned(), MARTA.to_owned()),
        ("HANDOFF_TIMEOUT_MINUTES".to_owned(), "1".to_owned()),
    ]);
    let stack = local_stack::start(&dir.path().join("logs"), vars).await;
    let info = stack.info().clone();
    let connect =
        |number: &str, name: &str| Chat::connect(info.clone(), meta::User::phone(number, name));
    let mut ana = connect("15550005555", "Ana").await.expect("Ana's chat");
    let mut luis = connect("15550006666", "Luis").await.expect("Luis's chat");
    let mut marta = connect(MARTA, "Marta").await.expect("Marta's chat");

    // Luis asks first, and nobody will answer him.
    let asked = luis
        .send(Outgoing::Text("/human".into()), REPLY_TIMEOUT, |_| {})
        .await
        .unwrap_or_else(|e| panic!("no answer to Luis: {e}"));
    assert_eq!(asked.replies, [said(FixedText::HandoffAsked)]);
    let luis_asked_at = Instant::now();

    let asked = ana
        .send(Outgoing::Text("/human".into()), REPLY_TIMEOUT, |_| {})
        .await
        .unwrap_or_else(|e| panic!("no answer to Ana: {e}"));
    assert_eq!(asked.replies, [said(FixedText::HandoffAsked)]);
    assert!(ana.handed_over().await, "Ana waits for a person");

    // Marta is told about both, each in a notification of its own.
    let notices = receive_until(&mut marta, Duration::from_secs(60), |got| {
        has("Ana asks for a person")(got) && has("Luis asks for a person")(got)
    })
    .await;
    let for_ana = notices
        .iter()
        .find(|n| n.body.contains("Ana asks"))
        .expect("Ana's notification")
        .clone();

    // What Ana writes now reaches Marta, and the model is not asked.
    ana.post(Outgoing::Text("My order 4411 arrived broken.".into()))
        .await
        .expect("posted");
    receive_until(
        &mut marta,
        Duration::from_secs(60),
        has("Ana: My order 4411"),
    )
    .await;

    // Marta answers by quoting the notification: Ana gets her words, from the business.
    let answer = "Hi Ana, Marta here: a new one goes out today.";
    marta
        .post(Outgoing::Quote {
            text: answer.into(),
            quoted: for_ana.id.clone(),
        })
        .await
        .expect("posted");
    let got = receive_until(&mut ana, Duration::from_secs(60), has(answer)).await;
    assert_eq!(got.len(), 1, "only Marta's words: {got:?}");
    assert_eq!(got[0].body, answer);

    // `/bot` in a quoted reply hands Ana back; both are told.
    marta
        .post(Outgoing::Quote {
            text: "/bot".into(),
            quoted: for_ana.id.clone(),
        })
        .await
        .expect("posted");
    receive_until(
        &mut ana,
        Duration::from_secs(60),
        has(&said(FixedText::HandoffBack)),
    )
    .await;
    receive_until(
        &mut marta,
        Duration::from_secs(60),
        has(&said(FixedText::StaffBack)),
    )
    .await;
    assert!(!ana.handed_over().await);

    // Luis is told when his wait times out (a minute after he asked), and only then.
    let told = receive_until(
        &mut luis,
        Duration::from_secs(240),
        has(&said(FixedText::HandoffTimeout)),
    )
    .await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        luis_asked_at.elapsed() >= Duration::from_secs(55),
        "told after {:?}, before the timeout",
        luis_asked_at.elapsed()
    );
    assert!(!luis.handed_over().await);

    // The model answers Ana again.
    let answered = ana
        .send(
            Outgoing::Text("Thank you! What are your opening hours?".into()),
            REPLY_TIMEOUT,
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("no answer: {e}"));
    assert!(!answered.replies.is_empty());
    let log = std::fs::read_to_string(info.log_dir.join("functions.log")).expect("the log");
    let model_calls = remedios_shared::metrics::parse_lines(&log)
        .iter()
        .filter(|m| m["Function"] == "responder" && m.get("ModelCalls").is_some())
        .count();
    assert_eq!(
        model_calls, 1,
        "the model was asked only once the user was back with the assistant"
    );
    // `remedios stats` shows the hand-overs from the same metric lines.
    let rows = remedios_local::stats::summarize(&log);
    let count = |figure: &str| {
        rows.iter()
            .find(|r| r.figure == figure)
            .map_or(0, |r| r.count)
    };
    assert_eq!(count("responder: Handoffs (asked)"), 2);
    assert_eq!(count("responder: HandoffReturns (staff)"), 1);
    assert_eq!(count("responder: HandoffReturns (timeout)"), 1);
    assert_eq!(
        count("responder: HandoffFirstReplyMs"),
        1,
        "Marta's first answer"
    );
    for number in ["15550005555", "15550006666", MARTA] {
        assert!(
            !log.contains(number),
            "a phone number in the functions' log"
        );
    }

    local_stack::shutdown(stack).await;
}
