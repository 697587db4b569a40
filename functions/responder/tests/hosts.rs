//! Several model hosts: two real SmolLM2 servers on loopback, each behind its own GPT4All
//! rules gate. Users are pinned to a host while it is healthy; a host killed in the middle
//! of a burst costs no message and answers none twice; breakers open and close; a host
//! that refuses our model name is reported and probed again, never skipped for good; a
//! refusal of the prompt itself is not asked again elsewhere.

mod common;

use std::time::Duration;

use common::*;
use remedios_shared::envelope::{Prepared, ReplyJob};
use remedios_shared::user::{Sender, UserTag};
use remedios_testkit::model_server::{GateRecord, Gpt4AllGate, LlmServer};
use responder::gpt4all::{ChatMessage, Gpt4AllClient, Role};
use responder::hosts::BreakerState;
use responder::texts::{FixedText, Lang};
use responder::{Behaviour, ModelHosts, ModelSettings, Responder};

/// A second model host: its own server and gate.
async fn second_host() -> (LlmServer, Gpt4AllGate) {
    let llm = LlmServer::start()
        .await
        .expect("the second model server must start (run scripts/bootstrap.sh)");
    let gate = Gpt4AllGate::start(&llm.base_url())
        .await
        .expect("the second gate");
    (llm, gate)
}

/// Short answers through `gate`, as the responder tests ask them.
fn settings(gate: &Gpt4AllGate) -> ModelSettings {
    let mut settings = ModelSettings::new(url(&gate.base_url()), None);
    settings.max_tokens = 32;
    settings.temperature = 0.2;
    settings.timeout = Duration::from_secs(60);
    settings.backoff = Duration::from_millis(50);
    settings
}

/// Host 1 and host 2, through their gates.
fn two_hosts(first: ModelSettings, second: ModelSettings) -> ModelHosts {
    ModelHosts::new(vec![
        Gpt4AllClient::new(first, None).expect("client 1"),
        Gpt4AllClient::new(second, None).expect("client 2"),
    ])
    .expect("two hosts")
}

/// `n` phone numbers whose users `hosts` serves first from host `position`.
fn users_on(hosts: &ModelHosts, position: usize, n: usize) -> Vec<String> {
    (0..10_000)
        .map(|i| format!("1555020{i:04}"))
        .filter(|phone| hosts.order_for(&remedios_testkit::meta::user_tag(phone))[0] == position)
        .take(n)
        .collect()
}

fn job_from(phone: &str, id: &str, body: &str) -> ReplyJob {
    let sender = Sender {
        wa_id: Some(phone.into()),
        user_id: None,
        username: None,
        profile_name: None,
    };
    ReplyJob::new(message(id, sender, text(body)), Prepared::Nothing)
}

fn question(text: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new(Role::System, "Answer in one short sentence."),
        ChatMessage::new(Role::User, text),
    ]
}

fn refusals(gate: &Gpt4AllGate) -> usize {
    gate.records()
        .iter()
        .filter(|r| matches!(r, GateRecord::Refused { .. }))
        .count()
}

const BUDGET: Duration = Duration::from_secs(120);

#[tokio::test]
async fn each_user_stays_on_their_host_and_its_prompts_grow_by_appending() {
    let bench = TestBed::start().await;
    let (_llm2, gate2) = second_host().await;
    let pinned = two_hosts(settings(&bench.gate), settings(&gate2));
    let on_first = users_on(&pinned, 1, 1).remove(0);
    let on_second = users_on(&pinned, 2, 1).remove(0);
    let responder = Responder::new(
        bench.responder_store.clone(),
        bench.graph_client(TOKEN),
        pinned,
        Behaviour::default(),
    );

    for turn in 1..=3 {
        for (phone, who) in [(&on_first, "A"), (&on_second, "B")] {
            let job = job_from(
                phone,
                &format!("wamid.PIN{who}{turn}"),
                &format!("{who} asks question {turn}: name a colour."),
            );
            let response = responder.handle(event(&[(&job, 1)])).await;
            assert!(failed(&response).is_empty(), "{response:?}");
        }
    }

    for (gate, who) in [(&bench.gate, "A"), (&gate2, "B")] {
        let forwarded = gate.forwarded();
        let asked: Vec<&str> = forwarded
            .iter()
            .map(|r| r.messages.last().expect("a question").content.as_str())
            .collect();
        assert_eq!(
            asked,
            (1..=3)
                .map(|t| format!("{who} asks question {t}: name a colour."))
                .collect::<Vec<_>>(),
            "every turn of {who} went to its own host, and only {who}'s"
        );
        // Each turn's prompt starts with the previous one but its question: the host's
        // prompt cache serves the conversation.
        for pair in forwarded.windows(2) {
            let before = &pair[0].messages;
            assert_eq!(
                before[..before.len() - 1],
                pair[1].messages[..before.len() - 1]
            );
            assert_eq!(pair[1].messages.len(), before.len() + 2);
        }
    }
    assert_eq!(bench.bodies().len(), 6, "every message answered once");
}

#[tokio::test]
async fn a_host_killed_in_the_middle_of_a_burst_loses_no_message_and_answers_none_twice() {
    let bench = TestBed::start().await;
    let (llm2, gate2) = second_host().await;
    let hosts = two_hosts(settings(&bench.gate), settings(&gate2));
    // Three users on each host, two messages each.
    let mut phones = users_on(&hosts, 1, 3);
    phones.extend(users_on(&hosts, 2, 3));
    let responder = Responder::new(
        bench.responder_store.clone(),
        bench.graph_client(TOKEN),
        hosts,
        Behaviour::default(),
    );
    let jobs: Vec<Vec<ReplyJob>> = phones
        .iter()
        .enumerate()
        .map(|(u, phone)| {
            (1..=2)
                .map(|n| {
                    job_from(
                        phone,
                        &format!("wamid.BURST{u}x{n}"),
                        &format!("Say hello to user {u}, message {n}."),
                    )
                })
                .collect()
        })
        .collect();
    let ids: Vec<String> = jobs
        .iter()
        .flatten()
        .map(|j| j.message.id.clone())
        .collect();

    // Three containers at once, each with the messages of two users (one on each host).
    let batches: Vec<Vec<(&ReplyJob, u32)>> = (0..3)
        .map(|c| jobs[c].iter().chain(&jobs[c + 3]).map(|j| (j, 1)).collect())
        .collect();
    let mut llm2 = Some(llm2);
    let killer = async {
        // Once host 2 has answered a question, it is killed with others still to come.
        for _ in 0..1200 {
            if !gate2.forwarded().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let answered_before = gate2.forwarded().len();
        drop(llm2.take());
        answered_before
    };
    let handled =
        futures::future::join_all(batches.iter().map(|batch| responder.handle(event(batch))));
    let (answered_before, responses) = tokio::join!(killer, handled);

    for response in &responses {
        assert!(failed(response).is_empty(), "{response:?}");
    }
    assert!(answered_before >= 1, "host 2 served before it was killed");
    assert!(
        answered_before < 6,
        "it was killed with its users' messages still coming ({answered_before} answered)"
    );
    let sent = bench.graph.sent_texts();
    for id in &ids {
        let replies = sent
            .iter()
            .filter(|s| s.reply_to.as_deref() == Some(id.as_str()))
            .count();
        assert_eq!(replies, 1, "{id} answered exactly once: {sent:?}");
    }
    assert_eq!(sent.len(), ids.len());
    let apology = FixedText::Apology.default_text(Lang::En);
    assert!(
        sent.iter().all(|s| s.body != apology),
        "answered by the model, not apologised for"
    );
    let answers = |gate: &Gpt4AllGate| {
        gate.records()
            .iter()
            .filter(|r| matches!(r, GateRecord::Forwarded { status: 200, .. }))
            .count()
    };
    assert_eq!(
        answers(&bench.gate) + answers(&gate2),
        ids.len(),
        "one model answer per message: host 1 took over what host 2 could no longer answer"
    );
    assert!(
        answers(&bench.gate) > 3,
        "host 1 answered some of host 2's users"
    );
}

#[tokio::test]
async fn a_breaker_opens_after_three_failures_in_a_row_and_closes_on_a_probe() {
    let (_llm1, gate1) = second_host().await;
    let (_llm2, gate2) = second_host().await;
    let pause = Duration::from_millis(1500);
    let hosts = two_hosts(settings(&gate1), settings(&gate2)).with_pause(pause);
    let user: UserTag = remedios_testkit::meta::user_tag(&users_on(&hosts, 1, 1)[0]);
    gate1.fail_next(1000);

    for n in 1..=3 {
        let answered = hosts
            .complete(&user, &question("Name a fruit."), BUDGET)
            .await
            .expect("host 2 answers");
        assert_eq!(answered.host, 2, "call {n}");
    }
    assert_eq!(
        gate1.busy_answers(),
        3,
        "one failure per call, then the next host"
    );
    assert_eq!(hosts.states(), [BreakerState::Open, BreakerState::Closed]);

    let answered = hosts
        .complete(&user, &question("Name a fruit."), BUDGET)
        .await
        .expect("answered");
    assert_eq!(answered.host, 2);
    assert_eq!(
        gate1.busy_answers(),
        3,
        "an open breaker's host is not asked"
    );

    gate1.fail_next(0);
    tokio::time::sleep(pause + Duration::from_millis(100)).await;
    assert_eq!(hosts.states()[0], BreakerState::Probing);
    let answered = hosts
        .complete(&user, &question("Name a fruit."), BUDGET)
        .await
        .expect("answered");
    assert_eq!(answered.host, 1, "the probe is the user's own host again");
    assert_eq!(hosts.states(), [BreakerState::Closed, BreakerState::Closed]);
}

#[tokio::test]
async fn a_host_without_our_model_is_reported_and_probed_again_and_a_refused_prompt_goes_nowhere_else()
 {
    let (_llm1, gate1) = second_host().await;
    let (_llm2, gate2) = second_host().await;
    let pause = Duration::from_millis(1500);
    let mut wrong = settings(&gate2);
    wrong.model = Some("Llama 3 8B Instruct".into());
    let hosts = two_hosts(settings(&gate1), wrong.clone()).with_pause(pause);
    let user = remedios_testkit::meta::user_tag(&users_on(&hosts, 2, 1)[0]);

    for _ in 0..3 {
        let answered = hosts
            .complete(&user, &question("Name a city."), BUDGET)
            .await
            .expect("host 1 answers");
        assert_eq!(answered.host, 1);
    }
    assert_eq!(
        refusals(&gate2),
        3,
        "host 2 refused the model name each time"
    );
    assert_eq!(hosts.states()[1], BreakerState::Open);
    hosts
        .complete(&user, &question("Name a city."), BUDGET)
        .await
        .expect("answered");
    assert_eq!(refusals(&gate2), 3, "not asked while its breaker is open");
    tokio::time::sleep(pause + Duration::from_millis(100)).await;
    hosts
        .complete(&user, &question("Name a city."), BUDGET)
        .await
        .expect("answered");
    assert_eq!(
        refusals(&gate2),
        4,
        "probed again after the pause, and refused again"
    );

    // When every host refuses our configuration, that is what the caller hears.
    let mut also_wrong = settings(&gate1);
    also_wrong.model = Some("Mistral Instruct".into());
    let none = two_hosts(also_wrong, wrong);
    let e = none
        .complete(&user, &question("Name a city."), BUDGET)
        .await
        .expect_err("no host has the model");
    assert_eq!(e.kind(), "misconfigured", "{e}");

    // A prompt over the context is refused for what it is: no other host is asked.
    let hosts = two_hosts(settings(&gate1), settings(&gate2));
    let on_first = remedios_testkit::meta::user_tag(&users_on(&hosts, 1, 1)[0]);
    let asked_second = gate2.records().len();
    let huge = "Tell me about the sea. ".repeat(800);
    let e = hosts
        .complete(&on_first, &question(&huge), BUDGET)
        .await
        .expect_err("over the context");
    assert!(e.is_context_overflow(), "{e}");
    assert_eq!(gate2.records().len(), asked_second, "host 2 was not asked");
}
