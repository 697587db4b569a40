//! The failure policy, class by class, as the user meets it: the answer or one apology,
//! never silence and never two, and the user's later messages answered after it. Against
//! moto (S3, the responder's own role), the Graph API emulator and the SmolLM2 model
//! server behind the GPT4All rules gate.

mod common;

use std::time::{Duration, Instant};

use common::*;
use remedios_shared::clock::Deadline;
use remedios_testkit::model_server::GateRecord;
use responder::Behaviour;
use responder::decision::{CUT_NOTE, QUESTION_MAX_CHARS};
use responder::deliver::{LAST_ATTEMPT_MARGIN, REPLY_MARGIN};
use responder::texts::{FixedText, Lang};
use tokio::net::TcpListener;

/// A question no 2,048-token context holds even cut to [`QUESTION_MAX_CHARS`]: each of
/// these characters is one token or more.
fn over_any_context() -> String {
    "漢字仮名交じり文".repeat(3000)
}

#[tokio::test]
async fn a_question_the_host_refuses_for_good_is_answered_at_once_and_the_next_one_normally() {
    let bench = TestBed::start().await;
    let responder = bench.responder();
    let refused = text_job("wamid.CTX1", &over_any_context());
    let next = text_job("wamid.CTX2", "Hello! Who are you?");

    let response = responder.handle(event(&[(&refused, 1), (&next, 1)])).await;

    assert!(failed(&response).is_empty(), "{response:?}");
    let records = bench.gate.records();
    let GateRecord::Forwarded {
        request, status, ..
    } = &records[0]
    else {
        panic!("the question reached the model: {records:?}");
    };
    assert_eq!(*status, 400, "llama.cpp refuses a prompt over its context");
    let sent_question = &request.messages.last().expect("a user turn").content;
    assert!(sent_question.ends_with(CUT_NOTE), "cut before it was sent");
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 2, "one answer each: {sent:?}");
    assert_eq!(sent[0].body, FixedText::CannotAnswer.default_text(Lang::En));
    assert_eq!(sent[0].reply_to.as_deref(), Some("wamid.CTX1"));
    assert_eq!(sent[1].reply_to.as_deref(), Some("wamid.CTX2"));
    assert_ne!(sent[1].body, FixedText::CannotAnswer.default_text(Lang::En));
    assert_ne!(sent[1].body, FixedText::Apology.default_text(Lang::En));
    // Nothing to remember of the refused one; the next one is remembered.
    let user = remedios_testkit::meta::user_tag(PHONE);
    let turns = bench.conversation(&user).await.turns;
    assert_eq!(turns.len(), 2, "{turns:?}");
    assert_eq!(turns[0].text, "Hello! Who are you?");

    // Delivered again (a late duplicate): nothing more is sent.
    let again = responder.handle(event(&[(&refused, 2)])).await;
    assert!(failed(&again).is_empty());
    assert_eq!(bench.graph.sent_texts().len(), 2);
}

#[tokio::test]
async fn a_long_question_is_cut_with_a_note_and_answered() {
    let bench = TestBed::start().await;
    let responder = bench.responder();
    let long = "Tell me about the weather in spring. ".repeat(600);
    let job = text_job("wamid.LONG1", &long);

    let response = responder.handle(event(&[(&job, 1)])).await;

    assert!(failed(&response).is_empty(), "{response:?}");
    let forwarded = bench.gate.forwarded();
    assert_eq!(forwarded.len(), 1);
    let question = &forwarded[0].messages.last().expect("a user turn").content;
    assert!(question.ends_with(CUT_NOTE));
    assert!(question.chars().count() <= QUESTION_MAX_CHARS + CUT_NOTE.chars().count());
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 1);
    assert_ne!(sent[0].body, FixedText::CannotAnswer.default_text(Lang::En));
    assert_ne!(sent[0].body, FixedText::Apology.default_text(Lang::En));
}

/// A host that takes connections and never answers (a hung proxy in front of GPT4All).
async fn hung_host() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("an address");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (format!("http://{addr}/v1"), task)
}

#[tokio::test]
async fn a_host_slower_than_the_invocation_still_leaves_the_last_attempt_time_to_apologise() {
    let bench = TestBed::start().await;
    let (hung, _task) = hung_host().await;
    let mut model = bench.model_settings();
    model.base_url = url(&hung);
    model.model = Some("smollm2".into());
    // Longer than the invocation has: the deadline, not this, must end the wait.
    model.timeout = Duration::from_secs(120);
    let responder = bench.responder_with(model, Behaviour::default());
    let job = text_job("wamid.SLOW1", "Are you there?");
    let later = text_job("wamid.SLOW2", "Hello again");
    let invocation = REPLY_MARGIN + Duration::from_secs(3);

    // Attempts before the last: each gives up in time and the job comes back.
    for attempt in 1..=4 {
        let started = Instant::now();
        let response = responder
            .handle_by(
                event(&[(&job, attempt), (&later, 1)]),
                Deadline::after(invocation),
            )
            .await;
        assert!(
            started.elapsed() < invocation,
            "attempt {attempt} took {:?}",
            started.elapsed()
        );
        assert_eq!(
            failed(&response).len(),
            2,
            "the later message waits behind it"
        );
    }
    assert!(bench.graph.sent_texts().is_empty());

    // The last attempt: one apology, within the invocation.
    let started = Instant::now();
    let last = responder
        .handle_by(event(&[(&job, 5)]), Deadline::after(invocation))
        .await;
    assert!(
        started.elapsed() < invocation,
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        failed(&last).len(),
        1,
        "kept in the dead-letter queue for the operator"
    );
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body, FixedText::Apology.default_text(Lang::En));
    assert_eq!(sent[0].reply_to.as_deref(), Some("wamid.SLOW1"));

    // The user's next message is answered once the host is back.
    let up = bench.responder();
    let response = up.handle(event(&[(&later, 2)])).await;
    assert!(failed(&response).is_empty(), "{response:?}");
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].reply_to.as_deref(), Some("wamid.SLOW2"));
}

/// The last attempt with a hung model host and a Graph API so slow that the first two
/// sends of the apology time out: the margin the last attempt keeps
/// ([`LAST_ATTEMPT_MARGIN`], from the worst-case send) still gets the apology out before
/// the invocation's deadline.
#[tokio::test]
async fn the_last_attempt_apologises_before_the_deadline_through_a_slow_graph_api() {
    let bench = TestBed::start().await;
    let (hung, _task) = hung_host().await;
    let mut model = bench.model_settings();
    model.base_url = url(&hung);
    model.model = Some("smollm2".into());
    model.timeout = Duration::from_secs(600);
    let responder = bench.responder_with(model, Behaviour::default());
    let job = text_job("wamid.SLOWSEND1", "Are you there?");
    bench.graph.stall_sends(2, Duration::from_secs(60));
    let invocation = LAST_ATTEMPT_MARGIN + Duration::from_secs(3);

    let started = Instant::now();
    let last = responder
        .handle_by(event(&[(&job, 5)]), Deadline::after(invocation))
        .await;
    let took = started.elapsed();

    assert!(took < invocation, "took {took:?} of {invocation:?}");
    assert!(
        took >= Duration::from_secs(20),
        "two sends timed out first: {took:?}"
    );
    assert_eq!(failed(&last).len(), 1, "kept for the dead-letter queue");
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].body, FixedText::Apology.default_text(Lang::En));
}

#[tokio::test]
async fn a_late_duplicate_after_a_reset_brings_nothing_back() {
    let bench = TestBed::start().await;
    let responder = bench.responder();
    let user = remedios_testkit::meta::user_tag(PHONE);
    let question = text_job("wamid.LATE1", "My name is Ana.");
    let reset = text_job("wamid.LATE2", "/reset");
    assert!(
        failed(
            &responder
                .handle(event(&[(&question, 1), (&reset, 1)]))
                .await
        )
        .is_empty()
    );
    assert!(
        bench.conversation(&user).await.turns.is_empty(),
        "forgotten"
    );
    assert_eq!(bench.graph.sent_texts().len(), 2);

    // Meta delivers the first message again days later (long past SQS's five minutes).
    let response = responder.handle(event(&[(&question, 1)])).await;

    assert!(failed(&response).is_empty(), "{response:?}");
    assert_eq!(bench.graph.sent_texts().len(), 2, "no second answer");
    assert!(
        bench.conversation(&user).await.turns.is_empty(),
        "the forgotten exchange stays forgotten"
    );
    assert_eq!(
        bench.gate.forwarded().len(),
        1,
        "the model is not asked again"
    );
}

/// The SSM parameter the template names for the access token.
const TOKEN_PARAMETER: &str = "/remedios/whatsapp-access-token";

async fn put_token(bench: &TestBed, value: &str) {
    let ssm = aws_sdk_ssm::Client::new(&bench.moto.sdk_config().await);
    ssm.put_parameter()
        .name(TOKEN_PARAMETER)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .expect("put the token parameter");
}

/// A warm container's responder still holding the expired token, reading it again from
/// the SSM parameter.
async fn warm_with_expired_token(bench: &TestBed) -> responder::Responder {
    let model =
        responder::gpt4all::Gpt4AllClient::new(bench.model_settings(), None).expect("model client");
    let graph = bench.graph_client("expired-token").with_token_source(
        bench.responder_sdk().await,
        remedios_shared::secrets::SecretSource::SsmParameter(TOKEN_PARAMETER.into()),
    );
    responder::Responder::new(
        bench.responder_store.clone(),
        graph,
        model,
        Behaviour::default(),
    )
}

#[tokio::test]
async fn a_token_replaced_in_ssm_is_read_again_on_the_first_refusal() {
    let bench = TestBed::start().await;
    // A warm container still holds the expired token; the operator has put the new one
    // in the parameter.
    put_token(&bench, TOKEN).await;
    let responder = warm_with_expired_token(&bench).await;
    let job = text_job("wamid.TOK1", "Hello!");

    let response = responder.handle(event(&[(&job, 1)])).await;

    assert!(
        failed(&response).is_empty(),
        "answered in one delivery: {response:?}"
    );
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].reply_to.as_deref(), Some("wamid.TOK1"));
    let later = text_job("wamid.TOK2", "Still there?");
    assert!(failed(&responder.handle(event(&[(&later, 1)])).await).is_empty());
    assert_eq!(
        bench.graph.sent_texts().len(),
        2,
        "the new token stays in use"
    );
}

#[tokio::test]
async fn a_token_not_replaced_fails_the_job_without_looping() {
    let bench = TestBed::start().await;
    put_token(&bench, "expired-token").await;
    let responder = warm_with_expired_token(&bench).await;
    let job = text_job("wamid.TOK3", "Hello?");

    let response = responder.handle(event(&[(&job, 1)])).await;

    assert_eq!(failed(&response).len(), 1, "left for the operator");
    assert!(bench.graph.sent_texts().is_empty());
}

/// The operator's mistake: the model host's URL path or model name is wrong. Every user
/// would be refused, so no user is told to say it more briefly: each gets, at once, one
/// apology that says the assistant is set up wrongly (the `misconfigured` outcome of the
/// `ModelCalls` metric, which the template alarms on), and the job stays on the queue;
/// once the setting is fixed, its next delivery is answered.
#[tokio::test]
async fn a_misconfigured_host_gets_every_user_one_honest_apology_at_once_and_a_fix_answers() {
    let bench = TestBed::start().await;
    let wrong_path = {
        let mut settings = bench.model_settings();
        settings.base_url = url(&bench.gate.base_url().replace("/v1", "/api/v1"));
        settings
    };
    let wrong_model = {
        let mut settings = bench.model_settings();
        settings.model = Some("Llama 3 8B Instruct".into());
        settings
    };
    let first = text_job("wamid.MISCONF1", "What time do you open?");
    let second = remedios_shared::envelope::ReplyJob::new(
        from_bsuid("wamid.MISCONF2", text("Do you have parking?")),
        remedios_shared::envelope::Prepared::Nothing,
    );
    let apology = FixedText::Misconfigured.default_text(Lang::En);

    let responder = bench.responder_with(wrong_path, Behaviour::default());
    let response = responder.handle(event(&[(&first, 1), (&second, 1)])).await;
    assert_eq!(
        failed(&response).len(),
        2,
        "kept on the queue: {response:?}"
    );
    let bodies = bench.bodies();
    assert_eq!(
        bodies,
        [apology, apology],
        "one honest apology each, at once"
    );

    // Delivered again with another mistake (a model name the host does not have): the
    // gate refuses it as GPT4All does, and no user gets a second apology.
    let responder = bench.responder_with(wrong_model, Behaviour::default());
    let response = responder.handle(event(&[(&first, 2), (&second, 2)])).await;
    assert_eq!(failed(&response).len(), 2, "{response:?}");
    assert_eq!(bench.bodies().len(), 2, "one apology per message");
    assert!(
        bench.gate.forwarded().is_empty(),
        "nothing reached the model"
    );
    assert!(matches!(
        bench.gate.records().as_slice(),
        [GateRecord::Refused { reason }, ..] if reason.contains("Unknown model")
    ));

    // FixedText: the next delivery is answered.
    let fixed = bench.responder();
    let response = fixed.handle(event(&[(&first, 3)])).await;
    assert!(failed(&response).is_empty(), "{response:?}");
    let last = bench.graph.sent_texts().pop().expect("an answer");
    assert_eq!(last.reply_to.as_deref(), Some("wamid.MISCONF1"));
    assert_ne!(last.body, apology);
    assert_eq!(bench.gate.forwarded().len(), 1);
}

/// A state object that does not parse (a rollback to a release that wrote another
/// layout, a hand edit): the user's conversation and a reply record of theirs. The
/// bad bodies are moved aside under `quarantine/state/`, the user starts afresh and is
/// answered at once, instead of the job failing into the dead-letter queue; another user
/// is answered as ever.
#[tokio::test]
async fn state_that_does_not_parse_is_moved_aside_and_its_user_starts_afresh() {
    let bench = TestBed::start().await;
    let responder = bench.responder();
    let user = remedios_testkit::meta::user_tag(PHONE);
    let job = text_job("wamid.BADSTATE1", "Hello again!");
    let conversation = remedios_shared::keys::conversation(&user);
    let record = remedios_shared::keys::reply(&user, &job.message.message_tag);
    for key in [&conversation, &record] {
        bench
            .store
            .put(
                key,
                b"{\"v\": 99, \"turns\": \"not a list\"".to_vec(),
                "application/json",
            )
            .await
            .expect("a bad state object");
    }
    let other = remedios_shared::envelope::ReplyJob::new(
        from_bsuid("wamid.BADSTATE2", text("Good morning")),
        remedios_shared::envelope::Prepared::Nothing,
    );

    let response = responder.handle(event(&[(&job, 1), (&other, 1)])).await;

    assert!(failed(&response).is_empty(), "{response:?}");
    let sent = bench.graph.sent_texts();
    let answered: Vec<&str> = sent.iter().filter_map(|s| s.reply_to.as_deref()).collect();
    assert_eq!(answered, ["wamid.BADSTATE1", "wamid.BADSTATE2"]);
    assert!(
        sent.iter()
            .all(|s| s.body != FixedText::Apology.default_text(Lang::En))
    );
    let aside: Vec<String> = bench
        .store
        .list("quarantine/state/")
        .await
        .expect("list")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(aside.len(), 2, "{aside:?}");
    assert!(
        aside
            .iter()
            .any(|k| k.starts_with(&format!("quarantine/state/{conversation}.")))
    );
    assert!(
        aside
            .iter()
            .any(|k| k.starts_with(&format!("quarantine/state/{record}.")))
    );
    assert_eq!(
        bench.conversation(&user).await.turns.len(),
        2,
        "a fresh conversation"
    );
}

/// Seeds `turns` exchanges of `text` (question and answer each) in the phone user's
/// conversation.
async fn seed_history(bench: &TestBed, turns: usize, text: &str) {
    let history = responder::history::History::new(
        bench.responder_store.clone(),
        responder::history::Bounds {
            max_turns: 1000,
            max_chars: 1_000_000,
        },
    );
    let user = remedios_testkit::meta::user_tag(PHONE);
    for i in 0..turns {
        history
            .append(&user, &format!("wamid.SEED{i}"), text, text, i as i64)
            .await
            .expect("seed the history");
    }
}

/// A conversation longer than the host's context (as the template's defaults allow:
/// 8,000 characters of history beside the system prompt and the answer, on a host with
/// GPT4All's usual 2,048 tokens): the history sent is cut to what fits, and the question
/// is answered in one request.
#[tokio::test]
async fn a_history_longer_than_the_context_is_cut_to_fit_and_the_question_answered() {
    let bench = TestBed::start().await;
    let paragraph = "We talked about the opening hours of the clinic, the parking in the \
        garage on the second floor below the street, and which insurance companies pay \
        for a cleaning. ";
    seed_history(&bench, 16, &paragraph.repeat(3)).await;
    let behaviour = Behaviour {
        history_max_turns: 40,
        history_max_chars: 8000,
        ..Behaviour::default()
    };
    let responder = bench.responder_with(bench.model_settings(), behaviour);
    let job = text_job("wamid.CTXFIT1", "So, is there parking?");

    let response = responder.handle(event(&[(&job, 1)])).await;

    assert!(failed(&response).is_empty(), "{response:?}");
    let records = bench.gate.records();
    let statuses: Vec<u16> = records
        .iter()
        .filter_map(|r| match r {
            GateRecord::Forwarded { status, .. } => Some(*status),
            GateRecord::Refused { .. } => None,
        })
        .collect();
    assert_eq!(statuses, [200], "one request, within the context");
    let sent_history = bench.gate.forwarded()[0].messages.len() - 2;
    assert!(
        (1..16).contains(&sent_history),
        "some of the history, not all 32 turns: {sent_history}"
    );
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 1);
    assert_ne!(sent[0].body, FixedText::CannotAnswer.default_text(Lang::En));
}

/// GPT4ALL_CONTEXT_TOKENS set higher than the host really has (16,384 for a 2,048 host)
/// and a history the host cannot take: the 400 that says the context is exceeded is asked
/// once more without history, and answered; the user's next question too. Before, every
/// later question of this user was refused.
#[tokio::test]
async fn a_prompt_over_the_real_context_is_asked_again_without_history_and_answered() {
    let bench = TestBed::start().await;
    seed_history(&bench, 3, &"漢字仮名交じり文".repeat(120)).await;
    let mut model = bench.model_settings();
    model.context_tokens = 16_384;
    let responder = bench.responder_with(model, Behaviour::default());
    let first = text_job("wamid.CTXOVER1", "Hello, are you there?");
    let second = text_job("wamid.CTXOVER2", "What can you do?");

    for job in [&first, &second] {
        let response = responder.handle(event(&[(job, 1)])).await;
        assert!(failed(&response).is_empty(), "{response:?}");
    }

    let statuses: Vec<(u16, usize)> = bench
        .gate
        .records()
        .iter()
        .filter_map(|r| match r {
            GateRecord::Forwarded {
                status, request, ..
            } => Some((*status, request.messages.len())),
            GateRecord::Refused { .. } => None,
        })
        .collect();
    assert_eq!(
        statuses[0].0, 400,
        "the host refused the whole history: {statuses:?}"
    );
    assert_eq!(
        statuses[1],
        (200, 2),
        "asked again with the system prompt and the question"
    );
    let sent = bench.graph.sent_texts();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for s in &sent {
        assert_ne!(s.body, FixedText::CannotAnswer.default_text(Lang::En));
    }
}
