//! Handing a conversation to a person and back, on real components: moto (S3, with the
//! responder's role enforced), the Graph API emulator, and SmolLM2 behind the GPT4All
//! gate.

mod common;

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use common::*;
use remedios_shared::clock::now_ms;
use remedios_shared::envelope::{Origin, Prepared, ReplyJob};
use remedios_shared::queue::Queue;
use remedios_shared::user::Sender;
use responder::handoff::HandoffSettings;
use responder::history::{Conversation, Handoff, HandoffState, HandoffWay, Speaker};
use responder::texts::{FixedText, Lang};
use responder::{Behaviour, Outcome};

/// A responder whose number is on the WhatsApp Business app too (people answer there).
fn with_people(bed: &TestBed) -> responder::Responder {
    let behaviour = Behaviour {
        handoff: HandoffSettings {
            app: true,
            ..HandoffSettings::default()
        },
        ..Behaviour::default()
    };
    bed.responder_with(bed.model_settings(), behaviour)
}

/// What a person sent from the WhatsApp Business app to the test user, as the webhook
/// files it: under the customer, marked as an echo.
fn echo(id: &str, body: &str) -> ReplyJob {
    let mut message = from_phone(id, text(body));
    message.origin = Origin::Echo;
    ReplyJob::new(message, Prepared::Nothing)
}

/// Another user, with a phone number of their own.
fn other_user(id: &str, body: &str) -> ReplyJob {
    let sender = Sender {
        wa_id: Some("15559876543".into()),
        user_id: None,
        username: None,
        profile_name: Some("Luis".into()),
    };
    ReplyJob::new(message(id, sender, text(body)), Prepared::Nothing)
}

fn said(text: FixedText) -> String {
    text.default_text(Lang::En).to_owned()
}

#[tokio::test]
async fn an_echo_pauses_the_bot_for_that_user_only_and_is_kept_in_the_history() {
    let bed = TestBed::start().await;
    let responder = with_people(&bed);
    let ana = echo(
        "wamid.ECHO1",
        "Hi, this is Marta from the shop: your order is ready.",
    );
    let outcome = responder.process(&ana, 1).await.expect("echo handled");
    assert!(matches!(outcome, Outcome::Ignored { .. }), "{outcome:?}");
    // The user writes while the person has the conversation: kept, not answered.
    let question = text_job("wamid.Q1", "Great, can I pick it up today after six?");
    let outcome = responder.process(&question, 1).await.expect("held");
    assert!(matches!(outcome, Outcome::Ignored { .. }), "{outcome:?}");
    assert!(bed.bodies().is_empty(), "nothing sent: {:?}", bed.bodies());
    assert!(bed.gate.forwarded().is_empty(), "the model was asked");
    let user = &question.message.user;
    let conversation = bed.conversation(user).await;
    let turns: Vec<(Speaker, &str)> = conversation
        .turns
        .iter()
        .map(|t| (t.speaker, t.text.as_str()))
        .collect();
    assert_eq!(
        turns,
        [
            (
                Speaker::Staff,
                "Hi, this is Marta from the shop: your order is ready."
            ),
            (Speaker::User, "Great, can I pick it up today after six?"),
        ]
    );
    let handoff = conversation.handoff.expect("handed over");
    assert_eq!(
        (handoff.state, handoff.way),
        (HandoffState::Human, HandoffWay::Echo)
    );
    assert!(handoff.until_ms >= now_ms() + 3 * 3_600_000, "{handoff:?}");
    // Another user is answered by the model as usual.
    let luis = other_user("wamid.L1", "What are your opening hours?");
    let outcome = responder.process(&luis, 1).await.expect("answered");
    assert!(matches!(outcome, Outcome::Replied { .. }), "{outcome:?}");
    let sent = bed.graph.sent_texts();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].to.as_deref(), Some("+15559876543"));
    assert_eq!(bed.gate.forwarded().len(), 1);
    // A redelivered echo is stored once.
    responder.process(&ana, 2).await.expect("echo again");
    assert_eq!(bed.conversation(user).await.turns.len(), 2);
}

#[tokio::test]
async fn human_asks_for_a_person_holds_what_follows_and_bot_hands_back() {
    let bed = TestBed::start().await;
    let responder = with_people(&bed);
    let ask = text_job("wamid.H1", "/human");
    responder.process(&ask, 1).await.expect("asked");
    assert_eq!(bed.bodies(), [said(FixedText::HandoffAsked)]);
    let user = &ask.message.user;
    let waiting = bed.conversation(user).await.handoff.expect("waiting");
    assert_eq!(
        (waiting.state, waiting.way),
        (HandoffState::Waiting, HandoffWay::Asked)
    );
    // While waiting, nothing is answered and the model is not asked.
    let held = text_job("wamid.H2", "My order number is 4411, it arrived broken.");
    let outcome = responder.process(&held, 1).await.expect("held");
    assert!(matches!(outcome, Outcome::Ignored { .. }), "{outcome:?}");
    assert_eq!(bed.bodies().len(), 1);
    assert!(bed.gate.forwarded().is_empty());
    // /bot comes back, told so; then the model answers again, with the held message in
    // the conversation it reads.
    responder
        .process(&text_job("wamid.H3", "/bot"), 1)
        .await
        .expect("back");
    assert_eq!(bed.bodies()[1], said(FixedText::HandoffBack));
    assert_eq!(bed.conversation(user).await.handoff, None);
    let question = text_job("wamid.H4", "So what can you do about it?");
    let outcome = responder.process(&question, 1).await.expect("answered");
    assert!(matches!(outcome, Outcome::Replied { .. }), "{outcome:?}");
    let asked = bed.gate.forwarded();
    assert_eq!(asked.len(), 1);
    let prompt = serde_json::to_string(&asked[0].messages).unwrap();
    assert!(
        prompt.contains("4411"),
        "the held message is in the prompt: {prompt}"
    );
}

#[tokio::test]
async fn a_deployers_phrase_asks_too_and_nobody_to_hand_to_is_said_not_promised() {
    let bed = TestBed::start().await;
    let behaviour = Behaviour {
        handoff: HandoffSettings {
            app: true,
            phrases: vec!["hablar con una persona".into()],
            ..HandoffSettings::default()
        },
        ..Behaviour::default()
    };
    let responder = bed.responder_with(bed.model_settings(), behaviour);
    let ask = text_job("wamid.P1", "Hola, quiero hablar con una persona, por favor");
    responder.process(&ask, 1).await.expect("asked");
    assert_eq!(
        bed.bodies(),
        [FixedText::HandoffAsked.default_text(Lang::Es)]
    );
    assert!(bed.conversation(&ask.message.user).await.handoff.is_some());
    // With neither staff numbers nor the app, /human says there is nobody.
    let alone = bed.responder();
    let luis = other_user("wamid.P2", "/humano");
    alone.process(&luis, 1).await.expect("answered");
    assert_eq!(bed.bodies()[1], said(FixedText::HandoffUnavailable));
    assert_eq!(bed.conversation(&luis.message.user).await.handoff, None);
}

#[tokio::test]
async fn a_hand_over_past_its_end_is_over_and_the_bot_answers() {
    let bed = TestBed::start().await;
    let responder = with_people(&bed);
    let question = text_job("wamid.E1", "Are you open on Sundays?");
    let user = &question.message.user;
    let now = now_ms();
    let ended = Conversation {
        handoff: Some(Handoff {
            state: HandoffState::Human,
            way: HandoffWay::Echo,
            since_ms: now - 5 * 3_600_000,
            until_ms: now - 1_000,
            first_reply_ms: Some(now - 5 * 3_600_000),
            staff: None,
        }),
        ..Conversation::default()
    };
    bed.store
        .put_json(&remedios_shared::keys::conversation(user), &ended)
        .await
        .expect("a conversation a person had");
    let outcome = responder.process(&question, 1).await.expect("answered");
    assert!(matches!(outcome, Outcome::Replied { .. }), "{outcome:?}");
    assert_eq!(bed.gate.forwarded().len(), 1);
    let conversation = bed.conversation(user).await;
    assert_eq!(conversation.handoff, None);
    assert_eq!(conversation.turns.len(), 2, "{conversation:?}");
}

const STAFF: &str = "15550002222";

/// A responder with one staff number (and no app).
fn with_staff(bed: &TestBed, reengagement: Option<&str>) -> responder::Responder {
    let behaviour = Behaviour {
        handoff: HandoffSettings {
            staff: remedios_shared::user::SenderList::parse(Some(STAFF)),
            ..HandoffSettings::default()
        },
        reengagement: reengagement.map(|t| t.parse().expect("a template")),
        ..Behaviour::default()
    };
    bed.responder_with(bed.model_settings(), behaviour)
}

/// A message from the staff number, as the webhook marks it, quoting `quoted` if given.
fn from_staff(id: &str, body: &str, quoted: Option<&str>) -> ReplyJob {
    let sender = Sender {
        wa_id: Some(STAFF.into()),
        user_id: None,
        username: None,
        profile_name: Some("Marta".into()),
    };
    let mut message = message(id, sender, text(body));
    message.origin = Origin::Staff;
    message.context = quoted.map(|id| remedios_shared::envelope::ReplyContext {
        message_id: id.into(),
        forwarded: false,
    });
    ReplyJob::new(message, Prepared::Nothing)
}

/// The texts the emulator took for `number`, in order, with their ids.
fn sent_to(bed: &TestBed, number: &str) -> Vec<(String, String)> {
    bed.graph
        .sent_texts()
        .into_iter()
        .filter(|s| s.to.as_deref() == Some(&format!("+{number}")))
        .map(|s| (s.id, s.body))
        .collect()
}

#[tokio::test]
async fn staff_are_told_a_quoted_reply_reaches_the_user_and_bot_in_a_quote_hands_back() {
    let bed = TestBed::start().await;
    let responder = with_staff(&bed, None);
    responder
        .process(&text_job("wamid.S1", "My order 4411 arrived broken."), 1)
        .await
        .expect("answered by the model");
    let ask = text_job("wamid.S2", "/human");
    responder.process(&ask, 1).await.expect("asked");
    let user = &ask.message.user;
    let to_user = sent_to(&bed, PHONE);
    assert_eq!(
        to_user.len(),
        2,
        "the answer, then the hand-over: {to_user:?}"
    );
    assert_eq!(to_user[1].1, said(FixedText::HandoffAsked));
    let to_staff = sent_to(&bed, STAFF);
    assert_eq!(to_staff.len(), 1, "{to_staff:?}");
    let (notice, words) = &to_staff[0];
    assert!(words.starts_with("🙋 Ana asks for a person."), "{words}");
    assert!(words.contains("› My order 4411 arrived broken."), "{words}");
    // What the user writes meanwhile reaches staff, as a note they can answer too.
    let held = text_job("wamid.S3", "Are you there?");
    responder.process(&held, 1).await.expect("held");
    let to_staff = sent_to(&bed, STAFF);
    assert_eq!(to_staff.len(), 2);
    assert!(
        to_staff[1].1.starts_with("💬 Ana: Are you there?"),
        "{}",
        to_staff[1].1
    );
    // The staff member answers by quoting the notification: the user gets it, once.
    let reply = from_staff(
        "wamid.T1",
        "Hi Ana, Marta here: a new one goes out today.",
        Some(notice),
    );
    responder.process(&reply, 1).await.expect("relayed");
    responder.process(&reply, 2).await.expect("redelivered");
    let to_user = sent_to(&bed, PHONE);
    assert_eq!(to_user.len(), 3, "{to_user:?}");
    assert_eq!(
        to_user[2].1,
        "Hi Ana, Marta here: a new one goes out today."
    );
    let conversation = bed.conversation(user).await;
    let handoff = conversation.handoff.clone().expect("a person has it");
    assert_eq!(handoff.state, HandoffState::Human);
    assert_eq!(handoff.staff.as_deref(), Some(STAFF));
    assert_eq!(
        conversation
            .turns
            .last()
            .map(|t| (t.speaker, t.text.as_str())),
        Some((
            Speaker::Staff,
            "Hi Ana, Marta here: a new one goes out today."
        ))
    );
    assert_eq!(
        bed.gate.forwarded().len(),
        1,
        "only the first question asked the model"
    );
    // /bot, quoting a forward this time, hands the user back; both sides are told.
    let forward = to_staff[1].0.clone();
    responder
        .process(&from_staff("wamid.T2", "/bot", Some(&forward)), 1)
        .await
        .expect("handed back");
    assert_eq!(
        sent_to(&bed, PHONE).last().unwrap().1,
        said(FixedText::HandoffBack)
    );
    assert_eq!(
        sent_to(&bed, STAFF).last().unwrap().1,
        said(FixedText::StaffBack)
    );
    assert_eq!(bed.conversation(user).await.handoff, None);
}

#[tokio::test]
async fn staff_cannot_reach_a_user_who_is_not_waiting_and_unquoted_staff_are_answered_as_users() {
    let bed = TestBed::start().await;
    let responder = with_staff(&bed, None);
    responder
        .process(&text_job("wamid.N1", "/human"), 1)
        .await
        .expect("asked");
    let (notice, _) = sent_to(&bed, STAFF).remove(0);
    // The user goes back to the bot before anybody answers.
    responder
        .process(&text_job("wamid.N2", "/bot"), 1)
        .await
        .expect("back");
    let before = sent_to(&bed, PHONE).len();
    responder
        .process(&from_staff("wamid.U1", "Hello?", Some(&notice)), 1)
        .await
        .expect("refused");
    assert_eq!(
        sent_to(&bed, PHONE).len(),
        before,
        "nothing reached the user"
    );
    assert_eq!(
        sent_to(&bed, STAFF).last().unwrap().1,
        said(FixedText::StaffNotWaiting)
    );
    // A staff message quoting nothing of ours is a question like any other.
    let outcome = responder
        .process(
            &from_staff("wamid.U2", "What are your opening hours?", None),
            1,
        )
        .await
        .expect("answered");
    assert!(matches!(outcome, Outcome::Replied { .. }), "{outcome:?}");
    assert_eq!(bed.gate.forwarded().len(), 1);
}

#[tokio::test]
async fn a_staff_reply_outside_the_24_hour_window_sends_the_template_and_says_so() {
    let bed = TestBed::start().await;
    bed.graph.approve_template("answer_waiting", "en_US");
    let responder = with_staff(&bed, Some("answer_waiting:en_US"));
    let ask = text_job("wamid.W1", "/human");
    responder.process(&ask, 1).await.expect("asked");
    let (notice, _) = sent_to(&bed, STAFF).remove(0);
    // The user last wrote a day and an hour ago (the wait has not ended: a long timeout).
    let user = &ask.message.user;
    let key = remedios_shared::keys::conversation(user);
    let mut conversation = bed.conversation(user).await;
    let now = now_ms();
    conversation.turns = vec![responder::history::Turn {
        speaker: Speaker::User,
        text: "Is anybody there?".into(),
        message_id: "wamid.OLD".into(),
        at_ms: now - 25 * 3_600_000,
    }];
    if let Some(h) = conversation.handoff.as_mut() {
        h.until_ms = now + 3_600_000;
    }
    bed.store
        .put_json(&key, &conversation)
        .await
        .expect("an old conversation");
    let before = sent_to(&bed, PHONE).len();
    responder
        .process(
            &from_staff("wamid.V1", "Sorry for the wait!", Some(&notice)),
            1,
        )
        .await
        .expect("handled");
    assert_eq!(
        sent_to(&bed, PHONE).len(),
        before,
        "no free-form text outside the window"
    );
    let templates = bed.graph.sent_templates();
    assert_eq!(templates.len(), 1, "{templates:?}");
    let (to, name, language) = &templates[0];
    assert!(to.ends_with(PHONE), "{to}");
    assert_eq!(
        (name.as_str(), language.as_str()),
        ("answer_waiting", "en_US")
    );
    assert_eq!(
        sent_to(&bed, STAFF).last().unwrap().1,
        said(FixedText::StaffTemplateSent)
    );
}

/// The reply queue on moto, as the test reads it.
struct Timers {
    sqs: aws_sdk_sqs::Client,
    reply: remedios_testkit::moto::QueuePair,
}

impl Timers {
    /// What the reply queue holds (as Lambda's event source mapping would receive it),
    /// waiting up to `limit` for it to become visible.
    async fn delivered(&self, limit: Duration) -> SqsEvent {
        let started = std::time::Instant::now();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.reply.url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receive");
            let messages = out.messages.unwrap_or_default();
            if !messages.is_empty() || started.elapsed() >= limit {
                return remedios_testkit::lambda::sqs_event(
                    &messages,
                    &self.reply.arn,
                    "us-east-1",
                );
            }
        }
    }
}

/// A responder whose number is on the app, with hand-overs timing out after `timeout`
/// and its reply queue on moto (where the timers go).
async fn with_timers(bed: &TestBed, timeout: Duration) -> (responder::Responder, Timers) {
    let sqs = aws_sdk_sqs::Client::new(&bed.moto.sdk_config().await);
    let reply = remedios_testkit::moto::create_queue_pair(
        &sqs,
        &remedios_testkit::moto::QueueSpec {
            name: "remedios-reply".into(),
            visibility_timeout: Duration::from_secs(60),
            max_receive_count: 5,
        },
    )
    .await
    .expect("reply queue");
    let behaviour = Behaviour {
        handoff: HandoffSettings {
            app: true,
            timeout,
            ..HandoffSettings::default()
        },
        ..Behaviour::default()
    };
    let source = Queue::new(
        aws_sdk_sqs::Client::new(&bed.responder_sdk().await),
        &reply.url,
    );
    let responder = bed
        .responder_with(bed.model_settings(), behaviour)
        .with_source(source);
    (responder, Timers { sqs, reply })
}

#[tokio::test]
async fn a_waiting_user_nobody_answers_is_told_once_and_gets_the_bot_back_after_the_timeout() {
    let bed = TestBed::start().await;
    let timeout = Duration::from_secs(4);
    let (responder, timers) = with_timers(&bed, timeout).await;

    let ask = text_job("wamid.T1", "/human");
    let user = &ask.message.user;
    responder.process(&ask, 1).await.expect("asked");
    assert_eq!(bed.bodies(), [said(FixedText::HandoffAsked)]);

    // The timer is on the queue at once, in a group of its own; not due, it goes back.
    let early = timers.delivered(Duration::from_secs(5)).await;
    assert_eq!(early.records.len(), 1, "one timer");
    let group = early.records[0].attributes.get("MessageGroupId").cloned();
    assert_eq!(group, Some(format!("{user}-handoff-timer")));
    assert!(!group.unwrap_or_default().contains(PHONE));
    let response = responder.handle(early).await;
    assert_eq!(failed(&response).len(), 1, "not due: it comes back");
    assert_eq!(bed.bodies().len(), 1, "nobody told yet");
    assert!(bed.conversation(user).await.handoff.is_some());

    // Due: the user is told, and the bot answers again.
    let due = timers.delivered(timeout * 3).await;
    assert_eq!(due.records.len(), 1, "the timer came back when due");
    let redelivered = due.clone();
    let response = responder.handle(due).await;
    assert!(failed(&response).is_empty(), "{response:?}");
    assert_eq!(
        bed.bodies(),
        [
            said(FixedText::HandoffAsked),
            said(FixedText::HandoffTimeout)
        ]
    );
    assert_eq!(bed.conversation(user).await.handoff, None);
    // Delivered again (a function that died before SQS deleted it): said once.
    let response = responder.handle(redelivered).await;
    assert!(failed(&response).is_empty(), "{response:?}");
    assert_eq!(bed.bodies().len(), 2);
    let question = text_job("wamid.T2", "Are you open on Sundays?");
    let outcome = responder.process(&question, 1).await.expect("answered");
    assert!(matches!(outcome, Outcome::Replied { .. }), "{outcome:?}");
    assert_eq!(bed.gate.forwarded().len(), 1, "the model answers again");
}

#[tokio::test]
async fn a_timer_finds_nothing_to_do_once_a_person_answered() {
    let bed = TestBed::start().await;
    let timeout = Duration::from_secs(2);
    let (responder, timers) = with_timers(&bed, timeout).await;
    let ask = text_job("wamid.N1", "/human");
    responder.process(&ask, 1).await.expect("asked");
    // A person answers from the app before the timeout.
    responder
        .process(&echo("wamid.N2", "Hi, Marta here. How can I help?"), 1)
        .await
        .expect("echo");
    tokio::time::sleep(timeout).await;
    let due = timers.delivered(Duration::from_secs(5)).await;
    assert_eq!(due.records.len(), 1);
    let response = responder.handle(due).await;
    assert!(failed(&response).is_empty(), "{response:?}");
    assert_eq!(
        bed.bodies(),
        [said(FixedText::HandoffAsked)],
        "nothing more said"
    );
    let handoff = bed
        .conversation(&ask.message.user)
        .await
        .handoff
        .expect("still with the person");
    assert_eq!(handoff.state, HandoffState::Human);
}
