//! A function process that dies comes back by itself, as Lambda starts a fresh
//! execution environment after a crash: the local stack (what `remedios up` runs), with
//! the stand-in GPT4All host, the responder killed with SIGKILL between two messages.

use std::time::{Duration, Instant};

use remedios_local::chat::{Chat, Outgoing};
use remedios_local::stack::{LocalStack, Options, restart_note};
use remedios_testkit::meta::User;
use remedios_testkit::stand_in::{self, STAND_IN_MODEL};

/// How long the supervisor may take to notice the death and start the functions again
/// (it looks every second; a restart rebuilds nothing but waits for both SQS functions).
const REVIVE_LIMIT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_function_is_started_again_and_the_next_message_is_answered() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the stand-in model");
    let model_url = format!("http://{}/v1", listener.local_addr().expect("its address"));
    tokio::spawn(stand_in::serve(listener));

    let logs = tempfile::tempdir().expect("a log directory");
    let mut options = Options::isolated(logs.path()).expect("free ports");
    options.revive_crashed = true;
    options.visibility_timeout = Some(Duration::from_secs(20));
    for (name, value) in [
        ("GPT4ALL_URL", model_url.as_str()),
        ("GPT4ALL_MODEL", STAND_IN_MODEL),
        ("RUST_LOG", "warn"),
    ] {
        options.vars.insert(name.to_owned(), value.to_owned());
    }
    let stack = LocalStack::up(options, |step| eprintln!("stack: {step}"))
        .await
        .unwrap_or_else(|e| panic!("the local stack did not start: {e}"));
    let mut chat = Chat::connect(stack.info().clone(), User::phone("34600111222", "Ana"))
        .await
        .expect("a chat with the stack");

    assert_answered(&mut chat, "What time do you open?").await;

    let killed = stack.function_pids("responder");
    assert!(
        !killed.is_empty(),
        "the responder runs after answering a message"
    );
    for pid in &killed {
        remedios_testkit::child::kill(*pid);
    }

    let started = Instant::now();
    let restart = loop {
        if let Some(restart) = stack.restarts().await.first().cloned() {
            break restart;
        }
        assert!(
            started.elapsed() < REVIVE_LIMIT,
            "no restart within {REVIVE_LIMIT:?} of killing the responder (log: {})",
            logs.path().join("functions.log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(restart.crashed, ["responder"]);
    assert_eq!(restart.outcome, Ok(()));
    eprintln!(
        "the responder was started again {:.1} s after it was killed",
        started.elapsed().as_secs_f64()
    );
    let revived = stack.function_pids("responder");
    assert!(!revived.is_empty() && revived.iter().all(|pid| !killed.contains(pid)));

    // The status says so, on the responder's row only.
    let rows = stack.status().await;
    let responder = rows
        .iter()
        .find(|r| r.part == "responder function")
        .expect("a responder row");
    assert!(responder.healthy, "{responder:?}");
    assert!(
        responder.detail.contains("died 1× and was started again"),
        "{responder:?}"
    );
    let transcriber = rows
        .iter()
        .find(|r| r.part == "transcriber function")
        .expect("a transcriber row");
    assert!(!transcriber.detail.contains("died"), "{transcriber:?}");
    assert_eq!(
        restart_note(&stack.restarts().await, "webhook"),
        None,
        "the webhook did not die"
    );

    assert_answered(&mut chat, "And on Saturdays?").await;
    assert_eq!(stack.restarts().await.len(), 1, "one restart, no more");
    stack.shutdown().await;
}

/// Sends `question` and checks the one reply is the stand-in's answer to it.
async fn assert_answered(chat: &mut Chat, question: &str) {
    let exchange = chat
        .send(
            Outgoing::Text(question.into()),
            Duration::from_secs(60),
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("{question:?} is not answered: {e}"));
    assert_eq!(exchange.replies, [stand_in::answer_to(question)]);
}
