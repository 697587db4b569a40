//! The responder through its handler, against moto (S3), the Graph API emulator and the
//! SmolLM2 model server behind the GPT4All rules gate.

mod common;

use common::*;
use remedios_shared::allowance::Limit;
use remedios_shared::envelope::{Content, Prepared, ReplyJob};
use remedios_testkit::graph::{Endpoint, ErrorSpec, Fault, Recorded};
use remedios_testkit::model_server::GateRecord;
use remedios_testkit::ports::free_port;
use responder::config::{ReplyMode, SummaryMode};
use responder::history::{Bounds, History, Speaker};
use responder::ledger::ReplyKind;
use responder::split::WHATSAPP_TEXT_LIMIT;
use responder::texts::{FixedText, Lang};
use responder::{Behaviour, Outcome};

fn phone_user() -> remedios_shared::user::UserTag {
    remedios_testkit::meta::user_tag(PHONE)
}

#[tokio::test]
async fn a_text_gets_a_reply_to_the_phone_number_quoting_it_after_the_read_receipt() {
    let bench = TestBed::start().await;
    let responder = bench.responder();
    let job = text_job("wamid.TEXT1", "What is the capital of France?");

    let response = responder.handle(event(&[(&job, 1)])).await;

    assert!(failed(&response).is_empty(), "{response:?}");
    let recorded = bench.graph.recorded();
    let read_seq = recorded
        .iter()
        .find_map(|r| match r {
            Recorded::Read {
                seq,
                message_id,
                typing: true,
                answered: true,
                ..
            } if message_id == "wamid.TEXT1" => Some(*seq),
            _ => None,
        })
        .expect("the message is marked as read with the typing indicator");
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].to.as_deref(), Some("+15551234567"));
    assert_eq!(sent[0].recipient, None);
    assert_eq!(sent[0].reply_to.as_deref(), Some("wamid.TEXT1"));
    assert_eq!(sent[0].phone_number_id, PHONE_NUMBER_ID);
    assert!(!sent[0].body.trim().is_empty());
    assert!(read_seq < sent[0].seq, "read receipt before the reply");

    // The model got GPT4All-shaped requests: the system prompt, then the user's text.
    let forwarded = bench.gate.forwarded();
    assert_eq!(forwarded.len(), 1);
    let request = &forwarded[0];
    assert_eq!(request.max_tokens, 48);
    assert_eq!(request.messages[0].role, "system");
    assert!(request.messages[0].content.contains("Remedios"));
    assert_eq!(
        request.messages.last().map(|m| m.content.as_str()),
        Some("What is the capital of France?")
    );
    assert!(bench.gate.records().iter().all(|r| matches!(
        r,
        GateRecord::Forwarded {
            defaulted_max_tokens: false,
            status: 200,
            ..
        }
    )));

    // The exchange is in the history, the answer as it was sent.
    let conversation = bench.conversation(&phone_user()).await;
    assert_eq!(conversation.turns.len(), 2);
    assert_eq!(conversation.turns[0].speaker, Speaker::User);
    assert_eq!(conversation.turns[0].text, "What is the capital of France?");
    assert_eq!(conversation.turns[1].speaker, Speaker::Assistant);
    assert_eq!(conversation.turns[1].text, sent[0].body);
}

#[tokio::test]
async fn a_user_without_a_phone_number_is_answered_by_business_scoped_id() {
    let bench = TestBed::start().await;
    let responder = bench.responder();
    let job = ReplyJob::new(
        from_bsuid("wamid.BSUID1", text("Hello, who are you?")),
        Prepared::Nothing,
    );

    let response = responder.handle(event(&[(&job, 1)])).await;

    assert!(failed(&response).is_empty(), "{response:?}");
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].recipient.as_deref(), Some(BSUID));
    assert_eq!(sent[0].to, None);
    assert_eq!(sent[0].reply_to.as_deref(), Some("wamid.BSUID1"));
}

#[tokio::test]
async fn the_second_message_carries_the_first_exchange_and_reset_forgets_it() {
    let bench = TestBed::start().await;
    let responder = bench.responder();
    let first = text_job("wamid.H1", "My name is Ana.");
    let second = text_job("wamid.H2", "What is my name?");

    // Both in one batch, as SQS may deliver one user's messages.
    let response = responder.handle(event(&[(&first, 1), (&second, 1)])).await;

    assert!(failed(&response).is_empty(), "{response:?}");
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].reply_to.as_deref(), Some("wamid.H1"));
    assert_eq!(sent[1].reply_to.as_deref(), Some("wamid.H2"));
    let forwarded = bench.gate.forwarded();
    assert_eq!(forwarded.len(), 2);
    let roles: Vec<&str> = forwarded[1]
        .messages
        .iter()
        .map(|m| m.role.as_str())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(forwarded[1].messages[1].content, "My name is Ana.");
    assert_eq!(forwarded[1].messages[2].content, sent[0].body);
    assert_eq!(forwarded[1].messages[3].content, "What is my name?");
    let conversation = bench.conversation(&phone_user()).await;
    let ids: Vec<&str> = conversation
        .turns
        .iter()
        .map(|t| t.message_id.as_str())
        .collect();
    assert_eq!(ids, ["wamid.H1", "wamid.H1", "wamid.H2", "wamid.H2"]);

    let reset = text_job("wamid.H3", "/reset");
    let response = responder.handle(event(&[(&reset, 1)])).await;

    assert!(failed(&response).is_empty(), "{response:?}");
    assert!(bench.conversation(&phone_user()).await.turns.is_empty());
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2].body, FixedText::ResetDone.default_text(Lang::En));
    assert_eq!(bench.gate.forwarded().len(), 2, "commands need no model");

    let after = text_job("wamid.H4", "Hello again.");
    assert!(failed(&responder.handle(event(&[(&after, 1)])).await).is_empty());
    let forwarded = bench.gate.forwarded();
    let roles: Vec<&str> = forwarded[2]
        .messages
        .iter()
        .map(|m| m.role.as_str())
        .collect();
    assert_eq!(roles, ["system", "user"], "the history starts again");
}

#[tokio::test]
async fn a_spanish_speaking_user_gets_the_fixed_texts_in_spanish() {
    let bench = TestBed::start().await;
    let responder = bench.responder();
    let question = text_job(
        "wamid.ES1",
        "Hola, me llamo Ana y quisiera saber a qué hora abre la farmacia mañana.",
    );
    let reset = text_job("wamid.ES2", "/reset");
    let help = text_job("wamid.ES3", "/help");

    let response = responder
        .handle(event(&[(&question, 1), (&reset, 1), (&help, 1)]))
        .await;

    assert!(failed(&response).is_empty(), "{response:?}");
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[1].body, FixedText::ResetDone.default_text(Lang::Es));
    // After the reset nothing tells the language: English, as for a new user.
    assert_eq!(sent[2].body, FixedText::Help.default_text(Lang::En));

    // A voice note whisper heard as Spanish gets its note in Spanish.
    let silent = heard_in("es", "wamid.ES4", " ", 2_000);
    assert!(failed(&responder.handle(event(&[(&silent, 1)])).await).is_empty());
    assert_eq!(
        bench.graph.sent_texts()[3].body,
        FixedText::SilentAudio.default_text(Lang::Es)
    );
}

#[tokio::test]
async fn a_long_reply_goes_out_in_ordered_parts_under_whatsapps_limit() {
    let bench = TestBed::start().await;
    // The question is cut to QUESTION_MAX_CHARS (about 700 prompt tokens): SmolLM2 on
    // llama.cpp's CPU backend evaluates them in seconds on an idle machine, but a busy CI
    // machine can take a minute.
    let mut model = bench.model_settings();
    model.timeout = std::time::Duration::from_secs(300);
    let responder = bench.responder_with(model, Behaviour::default());
    // A long voice note: the reply quotes what was heard (over WhatsApp's 4,096
    // characters on its own), then answers, and is split.
    let heard = "I would like to tell you about my garden. ".repeat(98);
    let job = voice_job("wamid.LONG1", &heard, 240_000);

    let response = responder.handle(event(&[(&job, 1)])).await;

    assert!(failed(&response).is_empty(), "{response:?}");
    let sent = bench.graph.sent_texts();
    assert!(sent.len() >= 2, "{} parts", sent.len());
    assert!(
        sent.iter()
            .all(|s| s.body.chars().count() <= WHATSAPP_TEXT_LIMIT)
    );
    assert!(
        sent.iter()
            .all(|s| s.reply_to.as_deref() == Some("wamid.LONG1"))
    );
    assert!(sent.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(sent[0].body.starts_with("🎤 “I would like"));
    // What went out is the recorded reply, part by part, and it is the echo of what was
    // heard followed by the model's answer.
    let record = responder
        .ledger()
        .get(
            &phone_user(),
            &remedios_testkit::meta::message_tag("wamid.LONG1"),
            "wamid.LONG1",
        )
        .await
        .expect("read the reply record")
        .expect("a reply record")
        .record;
    let bodies: Vec<&str> = sent.iter().map(|s| s.body.as_str()).collect();
    assert_eq!(record.parts, bodies);
    assert_eq!(record.sent.len(), sent.len());
    let whole: Vec<&str> = bodies.iter().flat_map(|b| b.split_whitespace()).collect();
    let echo = format!("🎤 “{}”", heard.trim());
    assert_eq!(
        whole[..echo.split_whitespace().count()],
        echo.split_whitespace().collect::<Vec<_>>()
    );
    assert!(
        whole.len() > echo.split_whitespace().count(),
        "an answer follows the echo"
    );
}

#[tokio::test]
async fn the_host_down_fails_the_job_and_the_last_attempt_apologises_once() {
    let bench = TestBed::start().await;
    let mut model = bench.model_settings();
    let closed = free_port().expect("a free port");
    model.base_url = url(&format!("http://127.0.0.1:{closed}/v1"));
    model.model = Some("smollm2".into());
    model.retries = 1;
    let responder = bench.responder_with(model, Behaviour::default());
    let job = text_job("wamid.DOWN1", "Are you there?");

    for attempt in 1..=4 {
        let response = responder.handle(event(&[(&job, attempt)])).await;
        assert_eq!(failed(&response).len(), 1, "attempt {attempt}");
    }
    assert!(
        bench.graph.sent_texts().is_empty(),
        "no reply while retrying"
    );

    let last = responder.handle(event(&[(&job, 5)])).await;

    assert_eq!(
        failed(&last).len(),
        1,
        "the job goes on to the dead-letter queue"
    );
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body, FixedText::Apology.default_text(Lang::En));
    assert_eq!(sent[0].reply_to.as_deref(), Some("wamid.DOWN1"));
    assert!(bench.conversation(&phone_user()).await.turns.is_empty());

    // Delivered once more on its last attempt: no second apology.
    let again = responder.handle(event(&[(&job, 5)])).await;
    assert_eq!(failed(&again).len(), 1);
    assert_eq!(bench.graph.sent_texts().len(), 1);

    // Back up (a dead-letter redrive): the message gets a real answer.
    let up = bench.responder();
    let redriven = up.handle(event(&[(&job, 1)])).await;
    assert!(failed(&redriven).is_empty(), "{redriven:?}");
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 2);
    assert_ne!(sent[1].body, FixedText::Apology.default_text(Lang::En));
}

#[tokio::test]
async fn an_overloaded_host_is_retried_with_backoff() {
    let bench = TestBed::start().await;
    let responder = bench.responder();
    bench.gate.fail_next(2);
    let job = text_job("wamid.BUSY1", "Hi!");

    let outcome = responder.process(&job, 1).await.expect("answered");

    assert_eq!(
        outcome,
        Outcome::Replied {
            kind: ReplyKind::Answer,
            parts: 1
        }
    );
    assert_eq!(bench.gate.forwarded().len(), 1);
}

#[tokio::test]
async fn graph_rate_limits_are_retried_without_sending_twice() {
    let bench = TestBed::start().await;
    let responder = bench.responder();

    // One 429: retried within the invocation.
    bench
        .graph
        .inject(Fault::times(Endpoint::Send, 1, ErrorSpec::throughput()));
    let job = text_job("wamid.RATE1", "Tell me a joke.");
    let response = responder.handle(event(&[(&job, 1)])).await;
    assert!(failed(&response).is_empty(), "{response:?}");
    assert_eq!(bench.graph.sent_texts().len(), 1);

    // Rate limited throughout the invocation: the queue retries; the answer is not
    // asked again and goes out once.
    bench
        .graph
        .inject(Fault::times(Endpoint::Send, 3, ErrorSpec::pair_rate()));
    let job = text_job("wamid.RATE2", "Another one, please.");
    let response = responder.handle(event(&[(&job, 1)])).await;
    assert_eq!(failed(&response).len(), 1);
    let attempts = |id: &str| {
        bench
            .graph
            .recorded()
            .iter()
            .filter(|r| matches!(r, Recorded::Text { reply_to: Some(r), .. } if r == id))
            .count()
    };
    assert_eq!(attempts("wamid.RATE2"), 3);
    let response = responder.handle(event(&[(&job, 2)])).await;
    assert!(failed(&response).is_empty(), "{response:?}");
    let answered: Vec<_> = bench
        .graph
        .sent_texts()
        .into_iter()
        .filter(|s| s.reply_to.as_deref() == Some("wamid.RATE2"))
        .collect();
    assert_eq!(answered.len(), 1);
    assert_eq!(
        bench.gate.forwarded().len(),
        2,
        "one model request per message"
    );
}

#[tokio::test]
async fn reengagement_is_dropped_and_an_expired_token_fails_loudly() {
    let bench = TestBed::start().await;
    let responder = bench.responder();

    bench
        .graph
        .inject(Fault::times(Endpoint::Send, 1, ErrorSpec::reengagement()));
    let job = text_job("wamid.OLD1", "Hello after two days.");
    let response = responder.handle(event(&[(&job, 1)])).await;
    assert!(failed(&response).is_empty(), "not retried: {response:?}");
    assert!(bench.graph.sent_texts().is_empty());
    // A redelivery does not try again.
    let response = responder.handle(event(&[(&job, 2)])).await;
    assert!(failed(&response).is_empty());
    let tries = bench
        .graph
        .recorded()
        .iter()
        .filter(|r| matches!(r, Recorded::Text { .. }))
        .count();
    assert_eq!(tries, 1);
    assert!(bench.conversation(&phone_user()).await.turns.is_empty());

    bench
        .graph
        .inject(Fault::times(Endpoint::Send, 1, ErrorSpec::expired_token()));
    let job = text_job("wamid.TOKEN1", "Hello?");
    let response = responder.handle(event(&[(&job, 1)])).await;
    assert_eq!(failed(&response).len(), 1, "an invalid token is retried");
}

/// A reply past the 24-hour window (a dead letter replayed days later) gets the
/// deployer's re-engagement template in the user's language, once; a template Meta does
/// not know is reported, and the job still ends.
#[tokio::test]
async fn a_reply_past_the_window_gets_the_reengagement_template_once() {
    let bench = TestBed::start().await;
    bench.graph.approve_template("answer_waiting", "es");
    bench.graph.approve_template("answer_waiting", "en_US");
    let behaviour = Behaviour {
        reengagement: Some("answer_waiting:en_US,es".parse().expect("template")),
        ..Behaviour::default()
    };
    let responder = bench.responder_with(bench.model_settings(), behaviour);
    // Every free-form send is refused as past the window; templates are not.
    bench.graph.inject(Fault::times(
        Endpoint::Send,
        u32::MAX,
        ErrorSpec::reengagement(),
    ));
    let job = text_job("wamid.LATE1", "¿Siguen abiertos mañana por la tarde?");

    let outcome = responder.process(&job, 1).await.expect("done");
    assert_eq!(
        outcome,
        Outcome::Dropped {
            code: Some(131_047),
            template: true
        }
    );
    let again = responder.process(&job, 2).await.expect("done");
    assert_eq!(
        again,
        Outcome::AlreadyAnswered,
        "a redelivery sends nothing"
    );
    assert_eq!(
        bench.graph.sent_templates(),
        [(format!("+{PHONE}"), "answer_waiting".into(), "es".into())],
        "once, in the user's language"
    );
    assert!(bench.graph.sent_texts().is_empty());

    // A template Meta does not have in that language: reported, and the job ends.
    let unknown = Behaviour {
        reengagement: Some("not_approved:en_US".parse().expect("template")),
        ..Behaviour::default()
    };
    let responder = bench.responder_with(bench.model_settings(), unknown);
    let job = text_job("wamid.LATE2", "Are you open tomorrow afternoon?");
    let outcome = responder.process(&job, 1).await.expect("done");
    assert_eq!(
        outcome,
        Outcome::Dropped {
            code: Some(131_047),
            template: false
        }
    );
    assert!(bench.graph.recorded().iter().any(|r| matches!(
        r,
        Recorded::Template { name, id: None, .. } if name == "not_approved"
    )));
}

#[tokio::test]
async fn a_redelivered_job_is_answered_once() {
    let bench = TestBed::start().await;
    let responder = bench.responder();
    let job = text_job("wamid.TWICE1", "Good morning!");

    let first = responder.process(&job, 1).await.expect("answered");
    let second = responder.process(&job, 2).await.expect("acknowledged");

    assert!(matches!(first, Outcome::Replied { parts: 1, .. }));
    assert_eq!(second, Outcome::AlreadyAnswered);
    assert_eq!(bench.graph.sent_texts().len(), 1);
    assert_eq!(bench.gate.forwarded().len(), 1);
    assert_eq!(bench.conversation(&phone_user()).await.turns.len(), 2);
}

/// A message answered by a release that named reply records by the WhatsApp id, then
/// delivered again after the upgrade (Meta retries for days): the old record is found
/// and the message is not answered twice; nothing gets a name holding the id.
#[tokio::test]
async fn a_late_duplicate_of_a_message_answered_before_keyed_tags_is_not_answered_again() {
    let bench = TestBed::start().await;
    let responder = bench.responder();
    let wamid = "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQUZBT0xEMDAwMDAwMDAwMQA=";
    let job = text_job(wamid, "Are you open on Sunday?");
    let [old_name, _] = remedios_shared::keys::legacy_replies(&phone_user(), wamid);
    assert!(old_name.contains("wamid."), "{old_name}");
    let old_record = serde_json::json!({
        "v": 1, "message_id": wamid, "kind": "answer",
        "parts": ["Yes, from 10 to 2."], "sent": ["wamid.SENT"],
        "remembered": true, "updated_at_ms": 1_767_225_600_000i64,
    });
    bench
        .store
        .put(
            &old_name,
            old_record.to_string().into_bytes(),
            "application/json",
        )
        .await
        .expect("store the old record");

    let outcome = responder.process(&job, 1).await.expect("acknowledged");

    assert_eq!(outcome, Outcome::AlreadyAnswered);
    assert!(bench.graph.sent_texts().is_empty());
    assert!(bench.gate.forwarded().is_empty());
    let replies = bench
        .store
        .list(remedios_shared::keys::REPLIES)
        .await
        .expect("list the reply records");
    assert_eq!(replies.len(), 1, "no new record: {replies:?}");
}

#[tokio::test]
async fn a_failed_message_holds_back_the_users_later_messages_in_the_batch() {
    let bench = TestBed::start().await;
    let responder = bench.responder();
    bench.graph.inject(
        Fault::times(Endpoint::Send, 3, ErrorSpec::server_error()).for_recipient("+15551234567"),
    );
    let a = text_job("wamid.ORD1", "First question.");
    let b = text_job("wamid.ORD2", "Second question.");
    let other = ReplyJob::new(from_bsuid("wamid.ORD3", text("Hi!")), Prepared::Nothing);

    let response = responder
        .handle(event(&[(&a, 1), (&b, 1), (&other, 1)]))
        .await;

    assert_eq!(
        failed(&response),
        ["sqs-0-wamid.ORD1", "sqs-1-wamid.ORD2"],
        "the phone user's messages wait; the other user is answered"
    );
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].recipient.as_deref(), Some(BSUID));
    assert!(
        !bench
            .gate
            .forwarded()
            .iter()
            .any(|r| r.messages.iter().any(|m| m.content == "Second question.")),
        "the held-back message was not processed"
    );
}

/// A history on the bench's bucket with bounds no test here reaches.
fn roomy_history(bench: &TestBed) -> History {
    History::new(
        bench.responder_store.clone(),
        Bounds {
            max_turns: 100,
            max_chars: 100_000,
        },
    )
}

#[tokio::test]
async fn concurrent_history_writers_lose_no_turn() {
    let bench = TestBed::start().await;
    let history = roomy_history(&bench);
    let user = phone_user();
    let writers = (0..8).map(|i| {
        let history = history.clone();
        let user = user.clone();
        tokio::spawn(async move {
            history
                .append(
                    &user,
                    &format!("wamid.C{i}"),
                    &format!("question {i}"),
                    &format!("answer {i}"),
                    i,
                )
                .await
        })
    });

    for result in futures::future::join_all(writers).await {
        assert!(result.expect("writer task").expect("append"));
    }

    let conversation = bench.conversation(&user).await;
    assert_eq!(conversation.turns.len(), 16);
    for i in 0..8 {
        assert!(
            conversation.contains(&format!("wamid.C{i}")),
            "turn {i} lost"
        );
    }
    // Appending an exchange again changes nothing.
    assert!(
        !history
            .append(&user, "wamid.C3", "question 3", "answer 3", 3)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn an_exchange_saved_from_a_stale_snapshot_keeps_the_newer_turns() {
    let bench = TestBed::start().await;
    let history = roomy_history(&bench);
    let user = phone_user();
    // Read before any turn exists, then another writer saves an exchange first.
    let stale = history.snapshot(&user).await.expect("snapshot");
    assert!(stale.conversation.turns.is_empty());
    assert!(
        history
            .append(&user, "wamid.S1", "first question", "first answer", 1)
            .await
            .expect("first append")
    );
    // The write conditional on the stale read is refused, re-read and re-applied.
    assert!(
        history
            .append_to(
                Some(stale),
                &user,
                "wamid.S2",
                "second question",
                "second answer",
                2
            )
            .await
            .expect("append from the stale snapshot")
    );
    let ids: Vec<String> = bench
        .conversation(&user)
        .await
        .turns
        .into_iter()
        .map(|t| t.message_id)
        .collect();
    assert_eq!(ids, ["wamid.S1", "wamid.S1", "wamid.S2", "wamid.S2"]);

    // A fresh snapshot saves the next exchange with no conflict, and one already stored
    // is not stored twice.
    let fresh = history.snapshot(&user).await.expect("snapshot");
    assert!(
        !history
            .append_to(Some(fresh.clone()), &user, "wamid.S2", "again", "again", 3)
            .await
            .expect("append of a stored exchange")
    );
    assert!(
        history
            .append_to(Some(fresh), &user, "wamid.S3", "third", "third answer", 4)
            .await
            .expect("append from a fresh snapshot")
    );
    assert_eq!(bench.conversation(&user).await.turns.len(), 6);
}

/// A voice note whisper heard in English.
fn voice_job(id: &str, heard: &str, duration_ms: u64) -> ReplyJob {
    heard_in("en", id, heard, duration_ms)
}

fn in_mode(reply_mode: ReplyMode, summary: SummaryMode) -> Behaviour {
    Behaviour {
        reply_mode,
        summary,
        ..Behaviour::default()
    }
}

#[tokio::test]
async fn transcript_mode_sends_a_voice_notes_text_back_and_calls_no_model() {
    let bench = TestBed::start().await;
    let responder = bench.responder_with(
        bench.model_settings(),
        in_mode(ReplyMode::Transcript, SummaryMode::Off),
    );
    let heard = "Please book me a table for four on Tuesday at eight.";
    let voice = voice_job("wamid.TR1", heard, 4_000);
    let text = text_job("wamid.TR2", "What are your opening hours?");

    let response = responder.handle(event(&[(&voice, 1), (&text, 1)])).await;

    assert!(failed(&response).is_empty(), "{response:?}");
    let sent = bench.bodies();
    assert_eq!(
        sent,
        [
            heard.to_owned(),
            FixedText::TranscriptOnly.default_text(Lang::En).to_owned()
        ],
        "the transcript as it was heard, and a note for the text"
    );
    assert!(
        bench.gate.forwarded().is_empty(),
        "no request reached the model host"
    );
    let conversation = bench.conversation(&phone_user()).await;
    assert!(conversation.turns.is_empty(), "nothing to remember");
}

#[tokio::test]
async fn a_long_note_gets_a_summary_from_the_model_before_its_transcript() {
    let bench = TestBed::start().await;
    let mut model = bench.model_settings();
    model.timeout = std::time::Duration::from_secs(300);
    let responder =
        bench.responder_with(model, in_mode(ReplyMode::Transcript, SummaryMode::Before));
    let heard = "Hello, this is Ana. I am calling about my appointment on Friday. \
I cannot come in the morning because my daughter has a school play, so I would like to \
move it to the afternoon, at three or later. Please call me back to confirm. Thank you.";
    let long = voice_job("wamid.SUM1", heard, 75_000);
    let short = voice_job("wamid.SUM2", "See you on Friday.", 2_000);

    let response = responder.handle(event(&[(&long, 1), (&short, 1)])).await;

    assert!(failed(&response).is_empty(), "{response:?}");
    let sent = bench.bodies();
    assert_eq!(sent.len(), 2, "one message per note: {sent:?}");
    let preface = FixedText::SummaryPreface.default_text(Lang::En);
    let (summary, transcript) = sent[0]
        .strip_prefix(preface)
        .and_then(|rest| rest.rsplit_once("\n\n"))
        .unwrap_or_else(|| panic!("the summary comes first: {sent:?}"));
    assert!(!summary.trim().is_empty(), "{sent:?}");
    assert_eq!(
        transcript, heard,
        "then the whole transcript, in the same message"
    );
    assert_eq!(
        sent[1], "See you on Friday.",
        "a short note gets no summary"
    );
    let forwarded = bench.gate.forwarded();
    assert_eq!(forwarded.len(), 1, "one model call, for the long note");
    assert_eq!(
        forwarded[0].messages[0].content,
        responder::compose::SUMMARY_PROMPT
    );
    assert_eq!(forwarded[0].messages[1].content, heard);
}

#[tokio::test]
async fn both_mode_sends_the_transcript_then_the_answer_in_one_message() {
    let bench = TestBed::start().await;
    let responder = bench.responder_with(
        bench.model_settings(),
        in_mode(ReplyMode::Both, SummaryMode::Off),
    );
    let heard = "What is the capital of France?";

    let response = responder
        .handle(event(&[(&voice_job("wamid.BOTH1", heard, 3_000), 1)]))
        .await;

    assert!(failed(&response).is_empty(), "{response:?}");
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 1, "one billed message: {sent:?}");
    let (transcript, answer) = sent[0]
        .body
        .split_once("\n\n")
        .unwrap_or_else(|| panic!("the transcript, a blank line, the answer: {sent:?}"));
    assert_eq!(transcript, heard, "the transcript first, as heard");
    assert!(!answer.trim().is_empty());
    assert!(!answer.contains('🎤'), "no echo inside the answer");
    let forwarded = bench.gate.forwarded();
    assert_eq!(forwarded.len(), 1);
    assert_eq!(
        forwarded[0].messages.last().map(|m| m.content.as_str()),
        Some(heard)
    );
    let conversation = bench.conversation(&phone_user()).await;
    assert_eq!(conversation.turns.len(), 2, "the exchange is remembered");
    assert_eq!(
        conversation.turns[1].text, answer,
        "the answer alone is remembered, not the transcript before it"
    );
}

/// Messages per answer on one conversation (texts, short and long voice notes) in
/// `both` mode with summaries, each message being billed: one per answer when they are
/// combined, as the transcript, summary and answer each used to be sent on their own.
#[tokio::test]
async fn a_conversation_costs_one_message_per_answer_when_messages_are_combined() {
    let bench = TestBed::start().await;
    let conversation = |prefix: &str| {
        vec![
            text_job(&format!("{prefix}1"), "Hello! Are you open on Sundays?"),
            voice_job(
                &format!("{prefix}2"),
                "Can I bring my dog to the terrace?",
                3_000,
            ),
            voice_job(
                &format!("{prefix}3"),
                "Hi, it is Ana again. We are six people on Saturday evening, two of them \
children, and one of us cannot eat gluten. Could you keep the big table by the window \
and tell me which dishes are safe? We will arrive around half past eight.",
                70_000,
            ),
            text_job(&format!("{prefix}4"), "Thanks, see you then."),
        ]
    };
    let mut counts = Vec::new();
    for (prefix, combine) in [("wamid.SEP", false), ("wamid.ONE", true)] {
        let mut model = bench.model_settings();
        model.timeout = std::time::Duration::from_secs(300);
        let behaviour = Behaviour {
            combine_messages: combine,
            summary_min: std::time::Duration::from_secs(60),
            ..in_mode(ReplyMode::Both, SummaryMode::Before)
        };
        let responder = bench.responder_with(model, behaviour);
        let jobs = conversation(prefix);
        let before = bench.bodies().len();
        let records: Vec<(&ReplyJob, u32)> = jobs.iter().map(|j| (j, 1)).collect();
        let response = responder.handle(event(&records)).await;
        assert!(failed(&response).is_empty(), "{response:?}");
        counts.push((bench.bodies().len() - before, jobs.len()));
    }
    let [(separate, answers), (combined, _)] = counts[..] else {
        unreachable!("two runs");
    };
    println!(
        "messages per answer: {:.2} separate ({separate} for {answers}), {:.2} combined ({combined})",
        separate as f64 / answers as f64,
        combined as f64 / answers as f64
    );
    assert_eq!(combined, answers, "one billed message per answer");
    assert_eq!(
        separate,
        answers + 3,
        "apart: the two transcripts and the long note's summary are messages of their own"
    );
}

#[tokio::test]
async fn a_user_over_a_limit_is_told_once_and_nothing_else_is_sent() {
    let bench = TestBed::start().await;
    let responder = bench.responder();
    let over = |id: &str, notify: bool| {
        ReplyJob::new(
            from_phone(
                id,
                Content::Text {
                    body: "¿Sigues ahí? Necesito una respuesta".into(),
                },
            ),
            Prepared::OverLimit {
                limit: Limit::MessagesPerDay,
                until_ms: 1_796_083_200_000,
                notify,
            },
        )
    };
    let (told, quiet, quieter) = (
        over("wamid.OVER1", true),
        over("wamid.OVER2", false),
        over("wamid.OVER3", false),
    );

    let response = responder
        .handle(event(&[(&told, 1), (&quiet, 1), (&quieter, 1), (&told, 2)]))
        .await;

    assert!(failed(&response).is_empty(), "{response:?}");
    assert_eq!(
        bench.bodies(),
        [FixedText::LimitDay.default_text(Lang::Es)],
        "one notice in the user's language, once, even when its job comes again"
    );
    assert!(bench.gate.forwarded().is_empty(), "no model time spent");
    let conversation = bench.conversation(&phone_user()).await;
    assert!(conversation.turns.is_empty(), "nothing to remember");
}
