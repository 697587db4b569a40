//! The reliability suite: bursts of signed notifications through the whole local
//! pipeline (the `/webhook` endpoint, the webhook, transcriber and responder functions
//! under `cargo lambda watch`, moto's SQS FIFO queues and S3, the event pump, the Graph
//! API emulator), with and without faults, and then old notifications replayed.
//!
//! The GPT4All host is the stand-in model server (`remedios stand-in-model`, a real
//! OpenAI-compatible HTTP server holding requests to GPT4All's rules, answering at once
//! with a text naming the question), run as a process of its own so it can be killed.
//! The responder's own tests use the real model.
//!
//! What every run checks, message by message: each distinct message was enqueued once
//! (no message had two copies in the inbound queue at the same time; a copy the emulator
//! accepts again after the first was processed and deleted is counted apart, because SQS
//! would drop it for 5 minutes while moto forgets the deduplication id on delete),
//! answered exactly once, to its sender, quoting it, with the answer to its own text, and
//! each user's answers went out in the order of their messages; nothing is left in a
//! queue or a dead-letter queue. In the run with faults, a few messages in the middle of
//! the burst are refused by the model on every attempt (a prompt over its context): each
//! gets exactly one apology, and everything else is still answered once, in order. Figures (requests per second, webhook latency, drain time) are
//! printed (`cargo nextest run -p remedios-local --test load --no-capture`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use remedios_local::pump::{Batch, Outcome};
use remedios_local::stack::{LocalStack, Options};
use remedios_testkit::graph::{Endpoint, ErrorSpec, Fault, Recorded, SentText};
use remedios_testkit::meta::{self, User};
use remedios_testkit::stand_in::{OVERLONG_MARK, STAND_IN_MODEL, answer_to};
use responder::texts::{FixedText, Lang};

/// Users sending at the same time (each sends its own messages one after another, as
/// Meta delivers one user's messages in order).
const SENDERS: usize = 32;
/// Messages per user in a burst.
const PER_USER: usize = 10;
/// Users in a burst: `REMEDIOS_LOAD_USERS`, 100 by default (1,000 notifications, what
/// `scripts/test.sh` runs within CI's time); `REMEDIOS_LOAD_USERS=200` is the 2,000
/// notifications of the heavier run (`scripts/load.sh`). At least 100: the faults' marks
/// are spread over the first 100 users.
fn users() -> usize {
    std::env::var("REMEDIOS_LOAD_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
        .max(100)
}
/// How long the pipeline may take to answer everything.
const DRAIN_LIMIT: Duration = Duration::from_secs(900);
/// Visibility timeout of both queues in these runs: a failed message comes back after it.
const VISIBILITY: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// The stand-in GPT4All host, as a process of its own.

struct StandIn {
    port: u16,
    child: Option<tokio::process::Child>,
    http: reqwest::Client,
}

impl StandIn {
    async fn start() -> Self {
        let port = remedios_testkit::ports::free_port().expect("a free port");
        let mut stand_in = StandIn {
            port,
            child: None,
            http: reqwest::Client::new(),
        };
        stand_in.spawn().await;
        stand_in
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    async fn spawn(&mut self) {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_remedios"))
            .args(["stand-in-model", "--port", &self.port.to_string()])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the stand-in model server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let listed = self
                .http
                .get(format!("{}/models", self.url()))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if listed {
                return;
            }
            assert!(Instant::now() < deadline, "the stand-in never listened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, as a crashed host.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("kill the stand-in");
            let _ = child.wait().await;
        }
    }

    /// Makes the next question it gets slow (see [`Self::slow_in_progress`]).
    async fn arm_slow(&self) {
        let armed = self
            .http
            .post(format!("http://127.0.0.1:{}/_stand-in/slow", self.port))
            .send()
            .await
            .expect("the stand-in takes the arming");
        assert!(
            armed.status().is_success(),
            "arming refused: {}",
            armed.status()
        );
    }

    /// Requests for slow questions in progress (none while it is down).
    async fn slow_in_progress(&self) -> u64 {
        let Ok(answer) = self
            .http
            .get(format!("http://127.0.0.1:{}/_stand-in/slow", self.port))
            .timeout(Duration::from_secs(2))
            .send()
            .await
        else {
            return 0;
        };
        answer
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["in_progress"].as_u64())
            .unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------
// The load: users, their messages, signed as Meta signs them.

struct Scripted {
    user: usize,
    wa_id: String,
    id: String,
    text: String,
    body: String,
    signature: String,
    /// Delivered twice, as Meta does at times.
    twice: bool,
    /// The model refuses it on every attempt: the user gets one apology instead.
    refused: bool,
}

/// What the stand-in does with a planned message's question, by (user, message).
#[derive(Default)]
struct Marks {
    /// Refused with 400 on every attempt, as a prompt over the context.
    refused: Vec<(usize, usize)>,
}

/// `users` users with `per_user` text messages each; one message in ten is delivered
/// twice. `marks` names the messages the stand-in refuses.
fn script(secret: &str, users: usize, per_user: usize, marks: &Marks) -> Vec<Vec<Scripted>> {
    (0..users)
        .map(|u| {
            let wa_id = format!("1555{u:07}");
            let user = User::phone(&wa_id, &format!("Load user {u}"));
            (0..per_user)
                .map(|m| {
                    let id = format!("wamid.LOAD{u:04}x{m:03}");
                    let mut text = format!("user {u} message {m}");
                    let refused = marks.refused.contains(&(u, m));
                    if refused {
                        text.push(' ');
                        text.push_str(OVERLONG_MARK);
                    }
                    let body = meta::single(
                        &user,
                        meta::text(&user, &id, 1_764_000_000 + m as i64, &text),
                    );
                    let signature = meta::sign(secret.as_bytes(), body.as_bytes());
                    Scripted {
                        user: u,
                        wa_id: wa_id.clone(),
                        id,
                        text,
                        body,
                        signature,
                        twice: (u * per_user + m) % 10 == u % 10,
                        refused,
                    }
                })
                .collect()
        })
        .collect()
}

/// The webhook's answers, as the sender (Meta) saw them.
#[derive(Default)]
struct Answers {
    /// Status (0: no answer) and latency of every request.
    all: Vec<(u16, Duration)>,
    /// Messages never accepted after every retry.
    gave_up: Vec<String>,
}

/// Delivers one notification as Meta does: retried with backoff until it is answered
/// 200 (Meta keeps retrying for days; here at most 40 times).
async fn post(http: &reqwest::Client, url: &str, p: &Scripted, answers: &Mutex<Answers>) {
    let mut wait = Duration::from_millis(100);
    for _ in 0..40 {
        let started = Instant::now();
        let status = http
            .post(url)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", &p.signature)
            .body(p.body.clone())
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        answers
            .lock()
            .expect("answers")
            .all
            .push((status, started.elapsed()));
        if status == 200 {
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
    answers.lock().expect("answers").gave_up.push(p.id.clone());
}

/// Sends every user's messages, `SENDERS` users at a time; how long it took.
async fn burst(url: &str, script: &[Vec<Scripted>], answers: &Mutex<Answers>) -> Duration {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(SENDERS)
        .build()
        .expect("http client");
    let started = Instant::now();
    futures::stream::iter(script)
        .map(|messages| {
            let http = &http;
            async move {
                for p in messages {
                    post(http, url, p, answers).await;
                    if p.twice {
                        post(http, url, p, answers).await;
                    }
                }
            }
        })
        .buffer_unordered(SENDERS)
        .collect::<Vec<()>>()
        .await;
    started.elapsed()
}

// ---------------------------------------------------------------------------------------
// Watching the pipeline.

/// What the event pump did, per function.
#[derive(Default, Debug)]
struct PumpLog {
    /// Records handed to each function, redeliveries included.
    records: HashMap<String, usize>,
    failed_invocations: HashMap<String, usize>,
    reported_failures: HashMap<String, usize>,
    lagged: u64,
    /// Inbound queue copies of each message (by deduplication id, the WhatsApp id):
    /// SQS message id and when the queue accepted it.
    inbound_copies: HashMap<String, Vec<(String, u64)>>,
    /// When the pump deleted each inbound SQS message (after the function succeeded).
    inbound_deleted_at: HashMap<String, u64>,
}

fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn watch_pump(stack: &LocalStack) -> (Arc<Mutex<PumpLog>>, tokio::task::JoinHandle<()>) {
    let log = Arc::new(Mutex::new(PumpLog::default()));
    let mut events = stack.pump_events();
    let task_log = log.clone();
    let task = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(batch) => record(&task_log, batch),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    task_log.lock().expect("pump log").lagged += n;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    (log, task)
}

fn record(log: &Mutex<PumpLog>, batch: Batch) {
    let mut log = log.lock().expect("pump log");
    *log.records.entry(batch.function.clone()).or_default() += batch.message_ids.len();
    if batch.function == "transcriber" {
        for r in &batch.records {
            let copies = log
                .inbound_copies
                .entry(r.dedup_id.clone().unwrap_or_default())
                .or_default();
            if !copies.iter().any(|(id, _)| *id == r.message_id) {
                copies.push((r.message_id.clone(), r.sent_at_ms.unwrap_or(0)));
            }
        }
        if let Outcome::Answered { failed } = &batch.outcome {
            let done_at = unix_ms(batch.started + batch.elapsed);
            for r in &batch.records {
                if !failed.contains(&r.message_id) {
                    log.inbound_deleted_at.insert(r.message_id.clone(), done_at);
                }
            }
        }
    }
    match &batch.outcome {
        Outcome::Answered { failed } => {
            *log.reported_failures
                .entry(batch.function.clone())
                .or_default() += failed.len();
        }
        Outcome::Failed { .. } => {
            *log.failed_invocations
                .entry(batch.function.clone())
                .or_default() += 1;
        }
    }
}

async fn sqs(stack: &LocalStack) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&stack.info().admin_sdk().await)
}

/// Visible plus in-flight messages of a queue.
async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let Ok(out) = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
    else {
        return u64::MAX;
    };
    let attributes = out.attributes.unwrap_or_default();
    [
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|a| {
        attributes
            .get(a)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    })
    .fold(0u64, u64::saturating_add)
}

/// Waits until every planned message has a reply; the time it took.
async fn wait_for_replies(
    stack: &LocalStack,
    script: &[Vec<Scripted>],
    limit: Duration,
) -> Duration {
    let graph = stack.graph_emulator().expect("the Graph API emulator");
    let expected: HashSet<&str> = script.iter().flatten().map(|p| p.id.as_str()).collect();
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let sent = graph.sent_texts();
        let answered: HashSet<&str> = sent
            .iter()
            .filter_map(|t| t.reply_to.as_deref())
            .filter(|id| expected.contains(id))
            .collect();
        if answered.len() == expected.len() {
            return started.elapsed();
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "load: {} of {} messages answered after {:?}",
                answered.len(),
                expected.len(),
                started.elapsed()
            );
            last_report = Instant::now();
        }
        assert!(
            started.elapsed() < limit,
            "only {} of {} messages were answered within {limit:?}",
            answered.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until both queues are empty (nothing visible, nothing in flight).
async fn wait_for_empty_queues(stack: &LocalStack, limit: Duration) {
    let sqs = sqs(stack).await;
    let info = stack.info();
    let started = Instant::now();
    loop {
        let inbound = depth(&sqs, &info.inbound.url).await;
        let reply = depth(&sqs, &info.reply.url).await;
        if inbound == 0 && reply == 0 {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "queues not empty after {limit:?}: inbound {inbound}, reply {reply}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The verdict.

#[derive(Debug, Default)]
struct Verdict {
    sent: usize,
    delivered: usize,
    enqueued: usize,
    /// Copies the emulator accepted again after the first copy had been processed and
    /// deleted (SQS drops a resend with the same deduplication id for 5 minutes; moto
    /// forgets the id once its message is deleted). Each was still answered once.
    requeued_after_delete: usize,
    /// Messages with a second copy in the queue while the first was still there: the
    /// deduplication that matters. Must be none.
    enqueued_twice: Vec<String>,
    answered: usize,
    /// Messages the model refused on every attempt, answered with one apology each.
    apologised: usize,
    duplicated: usize,
    lost: Vec<String>,
    wrong: Vec<String>,
    out_of_order: Vec<usize>,
}

fn verdict(
    script: &[Vec<Scripted>],
    sent_texts: &[SentText],
    pump: &PumpLog,
    delivered: usize,
) -> Verdict {
    let mut replies: BTreeMap<&str, Vec<&SentText>> = BTreeMap::new();
    for text in sent_texts {
        if let Some(id) = text.reply_to.as_deref() {
            replies.entry(id).or_default().push(text);
        }
    }
    let mut v = Verdict {
        sent: script.iter().map(Vec::len).sum(),
        delivered,
        ..Verdict::default()
    };
    for (dedup_id, copies) in &pump.inbound_copies {
        v.enqueued += 1;
        let mut copies = copies.clone();
        copies.sort_by_key(|(_, sent)| *sent);
        for pair in copies.windows(2) {
            let (first, second) = (&pair[0], &pair[1]);
            match pump.inbound_deleted_at.get(&first.0) {
                Some(deleted) if second.1 >= *deleted => v.requeued_after_delete += 1,
                _ => v.enqueued_twice.push(dedup_id.clone()),
            }
        }
    }
    for messages in script {
        let mut last_seq = 0;
        for p in messages {
            let Some(texts) = replies.get(p.id.as_str()) else {
                v.lost.push(p.id.clone());
                continue;
            };
            v.answered += 1;
            v.duplicated += texts.len() - 1;
            let first = texts[0];
            let to = first.to.as_deref().map(|t| t.trim_start_matches('+'));
            // A refused message gets the apology (in the user's language, as far as it
            // can be told from "user 7 message 3"), anything else its own answer.
            let expected = if p.refused {
                Lang::ALL
                    .iter()
                    .map(|&lang| FixedText::CannotAnswer.default_text(lang).to_owned())
                    .find(|apology| *apology == first.body)
                    .unwrap_or_else(|| FixedText::CannotAnswer.default_text(Lang::En).to_owned())
            } else {
                answer_to(&p.text)
            };
            v.apologised += usize::from(p.refused && first.body == expected);
            if to != Some(p.wa_id.as_str()) || first.body != expected {
                v.wrong.push(format!(
                    "{}: to {:?}, body {:?}",
                    p.id, first.to, first.body
                ));
            }
            if first.seq < last_seq {
                v.out_of_order.push(p.user);
            }
            last_seq = first.seq;
        }
    }
    v
}

/// At most five items, and how many there were.
fn few<T: std::fmt::Debug>(items: &[T]) -> String {
    format!(
        "{} item(s), first: {:?}",
        items.len(),
        &items[..items.len().min(5)]
    )
}

fn assert_clean(v: &Verdict) {
    assert!(
        v.lost.is_empty(),
        "messages never answered: {}",
        few(&v.lost)
    );
    assert_eq!(v.duplicated, 0, "messages answered more than once");
    assert!(
        v.wrong.is_empty(),
        "answers to the wrong user or question: {}",
        few(&v.wrong)
    );
    assert!(
        v.out_of_order.is_empty(),
        "users answered out of order: {}",
        few(&v.out_of_order)
    );
    assert!(
        v.enqueued_twice.is_empty(),
        "messages in the queue twice at once: {}",
        few(&v.enqueued_twice)
    );
    assert_eq!(
        v.enqueued, v.sent,
        "distinct messages the transcriber received"
    );
    assert_eq!(v.answered, v.sent);
}

async fn assert_no_dead_letters(stack: &LocalStack) {
    let sqs = sqs(stack).await;
    for dlq in [&stack.info().inbound.dlq_url, &stack.info().reply.dlq_url] {
        assert_eq!(depth(&sqs, dlq).await, 0, "messages in {dlq}");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn report(name: &str, answers: &Answers, burst: Duration, drain: Duration, v: &Verdict) {
    let mut latencies: Vec<Duration> = answers.all.iter().map(|(_, d)| *d).collect();
    latencies.sort();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for (status, _) in &answers.all {
        *statuses.entry(*status).or_default() += 1;
    }
    eprintln!(
        "\n== {name}\n\
         messages sent {} (deliveries incl. duplicates {}), requests {} {:?}\n\
         webhook: {:.0} requests/s over {:.1} s; answer latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n\
         enqueued {} (re-accepted by the emulator after deletion {}, in the queue twice {}), answered {} (of them with an apology {}), duplicated {}, lost {}\n\
         drain after the burst {:.1} s; whole run {:.1} s ({:.1} messages/s end to end)\n",
        v.sent,
        v.delivered,
        answers.all.len(),
        statuses,
        answers.all.len() as f64 / burst.as_secs_f64(),
        burst.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        v.enqueued,
        v.requeued_after_delete,
        v.enqueued_twice.len(),
        v.answered,
        v.apologised,
        v.duplicated,
        v.lost.len(),
        drain.as_secs_f64(),
        (burst + drain).as_secs_f64(),
        v.sent as f64 / (burst + drain).as_secs_f64(),
    );
}

async fn start_stack(log_dir: &Path, model: &StandIn, aws_link: bool) -> LocalStack {
    let mut options = Options::isolated(log_dir).expect("free ports");
    options.aws_link = aws_link;
    options.visibility_timeout = Some(VISIBILITY);
    for (k, v) in [
        ("GPT4ALL_URL", model.url()),
        ("GPT4ALL_MODEL", STAND_IN_MODEL.to_owned()),
        ("GPT4ALL_TIMEOUT_SECONDS", "10".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
        // The load measures the pipeline with text answers; voice replies have their own
        // tests (responder::voice, the end-to-end test).
        ("VOICE_REPLY", "off".to_owned()),
    ] {
        options.vars.insert(k.to_owned(), v);
    }
    LocalStack::up(options, |step| eprintln!("stack: {step}"))
        .await
        .unwrap_or_else(|e| panic!("the local stack did not start: {e}"))
}

/// Replays `count` old notifications (answered long ago) to the webhook: each is
/// accepted, goes through both functions again (the emulator, like SQS after its
/// 5-minute deduplication window, takes it as new), and is not answered again.
async fn replay_old(
    stack: &LocalStack,
    script: &[Vec<Scripted>],
    pump: &Mutex<PumpLog>,
    count: usize,
) {
    let graph = stack.graph_emulator().expect("the Graph API emulator");
    let before = graph.sent_texts().len();
    let records_before = pump.lock().expect("pump log").records.clone();
    let answers = Mutex::new(Answers::default());
    let total: usize = script.iter().map(Vec::len).sum();
    let old: Vec<&Scripted> = script
        .iter()
        .flatten()
        .step_by((total / count.max(1)).max(1))
        .take(count)
        .collect();
    let http = reqwest::Client::new();
    for p in &old {
        post(&http, &stack.info().webhook_url, p, &answers).await;
    }
    let answers = answers.into_inner().expect("answers");
    assert!(
        answers.gave_up.is_empty(),
        "replays refused: {:?}",
        answers.gave_up
    );
    // Both functions saw every replay.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let records = pump.lock().expect("pump log").records.clone();
        let more = |f: &str| {
            records.get(f).copied().unwrap_or(0) - records_before.get(f).copied().unwrap_or(0)
        };
        if more("transcriber") >= old.len() && more("responder") >= old.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replays did not reach both functions: transcriber {}, responder {} of {}",
            more("transcriber"),
            more("responder"),
            old.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_empty_queues(stack, Duration::from_secs(120)).await;
    let after = graph.sent_texts();
    assert_eq!(
        after.len(),
        before,
        "replayed notifications were answered again: {:?}",
        &after[before..]
    );
    eprintln!(
        "load: {} old notifications replayed through both functions; 0 answered again",
        old.len()
    );
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_notifications_from_many_users_is_answered_once_each_in_order() {
    let logs = tempfile::tempdir().expect("log dir");
    let model = StandIn::start().await;
    let stack = start_stack(logs.path(), &model, false).await;
    let (pump, _watch) = watch_pump(&stack);
    let users = users();
    let script = script(&stack.info().app_secret, users, PER_USER, &Marks::default());
    let delivered = script
        .iter()
        .flatten()
        .map(|p| 1 + usize::from(p.twice))
        .sum();
    assert_eq!(
        delivered,
        users * PER_USER * 11 / 10,
        "one in ten of the notifications delivered twice"
    );

    let answers = Mutex::new(Answers::default());
    let burst_took = burst(&stack.info().webhook_url, &script, &answers).await;
    let drain = wait_for_replies(&stack, &script, DRAIN_LIMIT).await;
    wait_for_empty_queues(&stack, Duration::from_secs(120)).await;
    let answers = answers.into_inner().expect("answers");
    assert!(
        answers.gave_up.is_empty(),
        "notifications never accepted: {:?}",
        answers.gave_up
    );

    let sent = stack.graph_emulator().expect("emulator").sent_texts();
    let v = {
        let log = pump.lock().expect("pump log");
        assert_eq!(log.lagged, 0, "pump events missed");
        verdict(&script, &sent, &log, delivered)
    };
    report(
        &format!(
            "burst: {} notifications, {users} users, 10% delivered twice",
            users * PER_USER
        ),
        &answers,
        burst_took,
        drain,
        &v,
    );
    assert_clean(&v);
    assert!(
        answers.all.iter().all(|(status, _)| *status == 200),
        "with nothing failing, every request is answered 200"
    );
    assert_no_dead_letters(&stack).await;

    replay_old(&stack, &script, &pump, 50).await;
    stack.shutdown().await;
}

/// What the fault schedule did.
#[derive(Debug, Default)]
struct Injected {
    transcriber_killed: usize,
    responder_killed: usize,
    aws_refused: u64,
}

/// Kills the processes of the transcriber and the responder (SIGKILL), then starts the
/// functions again as Lambda would for their next invocations (`cargo lambda watch`
/// restarts them all at once); how many processes were killed, per function.
async fn kill_functions(stack: &mut LocalStack) -> (usize, usize) {
    let transcriber = stack.function_pids("transcriber");
    let responder = stack.function_pids("responder");
    for pid in transcriber.iter().chain(&responder) {
        remedios_testkit::child::kill(*pid);
    }
    stack
        .restart_functions()
        .await
        .unwrap_or_else(|e| panic!("the functions did not start again: {e}"));
    (transcriber.len(), responder.len())
}

/// Faults while the burst runs, on a timeline from its start: the AWS emulator
/// unreachable for 3 s, the Graph API answering 429 then 500 for a few seconds each,
/// the GPT4All host killed for 6 s; and later, once the responder is surely in the
/// middle of a job (waiting for a slow answer) while the transcriber works
/// through the burst, both functions killed mid-batch.
///
/// The kill waits for that moment because a responder killed after WhatsApp accepted a
/// reply and before the reply record is written would send that reply again on
/// redelivery (WhatsApp takes no idempotency key): that window is one S3 write long,
/// and this test does not pretend it away by killing at random.
async fn inject_faults(stack: &mut LocalStack, model: &mut StandIn) -> Injected {
    let started = Instant::now();
    let at = |s: u64| async move {
        let when = Duration::from_secs(s);
        if let Some(left) = when.checked_sub(started.elapsed()) {
            tokio::time::sleep(left).await;
        }
    };
    let mut injected = Injected::default();
    let link = stack
        .aws_link()
        .expect("the stack runs with a cuttable AWS link");
    let graph = stack.graph_emulator().expect("the Graph API emulator");
    at(2).await;
    link.cut();
    eprintln!("faults: AWS emulator unreachable");
    at(5).await;
    link.restore();
    injected.aws_refused = link.refused();
    eprintln!(
        "faults: AWS emulator back ({} connections refused)",
        injected.aws_refused
    );
    at(6).await;
    graph.inject(Fault::during(
        Endpoint::Send,
        Duration::from_secs(4),
        ErrorSpec::throughput(),
    ));
    eprintln!("faults: Graph API answering 429 for 4 s");
    at(8).await;
    model.kill().await;
    eprintln!("faults: GPT4All host killed");
    at(14).await;
    model.spawn().await;
    eprintln!("faults: GPT4All host back");
    at(15).await;
    graph.inject(Fault::during(
        Endpoint::Send,
        Duration::from_secs(3),
        ErrorSpec::server_error(),
    ));
    eprintln!("faults: Graph API answering 500 for 3 s");

    // The next question the host gets after the timed faults, whichever it is, is
    // answered slowly: a question marked in the script raced the faults, and on a fast
    // machine was answered before this wait began.
    model.arm_slow().await;
    let deadline = Instant::now() + Duration::from_secs(300);
    while model.slow_in_progress().await == 0 {
        assert!(
            Instant::now() < deadline,
            "no question reached the GPT4All host within 5 minutes of the timed faults"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed_at = started.elapsed();
    (injected.transcriber_killed, injected.responder_killed) = kill_functions(stack).await;
    eprintln!(
        "faults: transcriber and responder killed mid-batch at {killed_at:?} ({} + {} processes), started again after {:?}",
        injected.transcriber_killed,
        injected.responder_killed,
        started.elapsed() - killed_at
    );
    injected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_during_a_burst_lose_nothing_and_send_nothing_twice() {
    let logs = tempfile::tempdir().expect("log dir");
    let mut model = StandIn::start().await;
    let mut stack = start_stack(logs.path(), &model, true).await;
    let (pump, _watch) = watch_pump(&stack);
    // Messages the model refuses on every attempt, in the middle of the burst and of
    // their users' conversations: each gets one apology at once, and the user's later
    // messages their answers, in order.
    let marks = Marks {
        refused: vec![(50, 4), (60, 4), (70, 5), (80, 4), (90, 6)],
    };
    let users = users();
    let script = script(&stack.info().app_secret, users, PER_USER, &marks);
    let delivered = script
        .iter()
        .flatten()
        .map(|p| 1 + usize::from(p.twice))
        .sum();

    let answers = Mutex::new(Answers::default());
    let url = stack.info().webhook_url.clone();
    let (burst_took, injected) = tokio::join!(
        burst(&url, &script, &answers),
        inject_faults(&mut stack, &mut model)
    );
    let drain = wait_for_replies(&stack, &script, DRAIN_LIMIT).await;
    wait_for_empty_queues(&stack, Duration::from_secs(300)).await;
    let answers = answers.into_inner().expect("answers");
    assert!(
        answers.gave_up.is_empty(),
        "notifications never accepted: {:?}",
        answers.gave_up
    );

    let graph = stack.graph_emulator().expect("emulator");
    let sent = graph.sent_texts();
    let refused_sends = graph
        .recorded()
        .iter()
        .filter(|r| matches!(r, Recorded::Text { id: None, .. }))
        .count();
    let (v, failed_invocations, reported) = {
        let log = pump.lock().expect("pump log");
        assert_eq!(log.lagged, 0, "pump events missed");
        (
            verdict(&script, &sent, &log, delivered),
            log.failed_invocations.clone(),
            log.reported_failures.clone(),
        )
    };
    report(
        &format!(
            "faults during a burst: {} notifications, {users} users, 10% delivered twice",
            users * PER_USER
        ),
        &answers,
        burst_took,
        drain,
        &v,
    );
    let server_errors = answers.all.iter().filter(|(s, _)| *s >= 500).count();
    eprintln!(
        "faults: {injected:?}; webhook 5xx answers {server_errors}; Graph sends refused {refused_sends}; \
         failed invocations {failed_invocations:?}; records reported failed {reported:?}"
    );

    // The faults happened and were felt.
    assert_eq!(injected.transcriber_killed, 1);
    assert_eq!(injected.responder_killed, 1);
    assert!(
        injected.aws_refused > 0,
        "the AWS outage refused connections"
    );
    assert!(
        server_errors > 0,
        "the webhook answered 5xx while the AWS emulator was away"
    );
    assert!(
        refused_sends > 0,
        "the Graph API refused sends during its windows"
    );
    assert!(
        failed_invocations.get("responder").copied().unwrap_or(0) >= 1,
        "the killed responder's invocation failed and its batch came back"
    );
    // And nothing was lost or sent twice; the refused messages got one apology each.
    assert_clean(&v);
    assert_eq!(
        v.apologised,
        marks.refused.len(),
        "one apology per refused message"
    );
    assert_no_dead_letters(&stack).await;
    replay_old(&stack, &script, &pump, 50).await;
    stack.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Long voice notes beside texts.

/// Accounts sending long voice notes back to back.
const LONG_AUDIO_SENDERS: usize = 5;
/// Notes each of them sends.
const NOTES_EACH: usize = 2;
/// Users writing texts while they do (one text each).
const TEXT_USERS: usize = 100;
/// How long each long note is: `REMEDIOS_LOAD_NOTE_SECONDS`, 180 by default, to keep
/// the suite's time (the deployed limit, `AudioMaxSeconds`, is 600).
fn note_seconds() -> u32 {
    std::env::var("REMEDIOS_LOAD_NOTE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(180)
}

/// One text from each of `count` users numbered from `first`: (id, body, signature).
fn texts(secret: &str, first: usize, count: usize, round: &str) -> Vec<Scripted> {
    (first..first + count)
        .map(|u| {
            let wa_id = format!("1556{u:07}");
            let user = User::phone(&wa_id, &format!("Text user {u}"));
            let id = format!("wamid.TEXT{round}{u:04}");
            let text = format!("user {u} asks in round {round}");
            let body = meta::single(&user, meta::text(&user, &id, 1_764_000_000, &text));
            let signature = meta::sign(secret.as_bytes(), body.as_bytes());
            Scripted {
                user: u,
                wa_id,
                id,
                text,
                body,
                signature,
                twice: false,
                refused: false,
            }
        })
        .collect()
}

/// Sends `planned` (at most `SENDERS` at once) and returns when each was accepted.
async fn send_all(url: &str, planned: &[Scripted]) -> HashMap<String, Instant> {
    let answers = Mutex::new(Answers::default());
    let accepted = Mutex::new(HashMap::new());
    let http = reqwest::Client::new();
    futures::stream::iter(planned)
        .map(|p| {
            let (http, answers, accepted) = (&http, &answers, &accepted);
            async move {
                post(http, url, p, answers).await;
                accepted
                    .lock()
                    .expect("accepted")
                    .insert(p.id.clone(), Instant::now());
            }
        })
        .buffer_unordered(SENDERS)
        .collect::<Vec<()>>()
        .await;
    let answers = answers.into_inner().expect("answers");
    assert!(answers.gave_up.is_empty(), "{:?}", answers.gave_up);
    accepted.into_inner().expect("accepted")
}

/// Watches the Graph API emulator until every id in `ids` has a reply (or `limit`
/// passes): when each was first answered, and every reply by the id it answers.
async fn first_answers(
    stack: &LocalStack,
    ids: &HashSet<String>,
    limit: Duration,
) -> (HashMap<String, Instant>, BTreeMap<String, Vec<SentText>>) {
    let graph = stack.graph_emulator().expect("the Graph API emulator");
    let started = Instant::now();
    let mut seen: HashMap<String, Instant> = HashMap::new();
    loop {
        let sent = graph.sent_texts();
        let now = Instant::now();
        let mut replies: BTreeMap<String, Vec<SentText>> = BTreeMap::new();
        for t in sent {
            if let Some(id) = t.reply_to.clone().filter(|id| ids.contains(id)) {
                seen.entry(id.clone()).or_insert(now);
                replies.entry(id).or_default().push(t);
            }
        }
        if seen.len() == ids.len() || started.elapsed() > limit {
            return (seen, replies);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Latencies of `planned` texts from acceptance to first answer, sorted.
fn latencies(
    planned: &[Scripted],
    accepted: &HashMap<String, Instant>,
    answered: &HashMap<String, Instant>,
) -> Vec<Duration> {
    let mut all: Vec<Duration> = planned
        .iter()
        .filter_map(|p| {
            Some(
                answered
                    .get(&p.id)?
                    .saturating_duration_since(accepted[&p.id]),
            )
        })
        .collect();
    all.sort();
    all
}

/// Checks that each of `planned` got exactly one answer, its own, to its sender.
fn assert_texts_answered(planned: &[Scripted], replies: &BTreeMap<String, Vec<SentText>>) {
    for p in planned {
        let got = replies
            .get(&p.id)
            .unwrap_or_else(|| panic!("{} was never answered", p.id));
        assert_eq!(got.len(), 1, "{} answered {} times", p.id, got.len());
        assert_eq!(got[0].body, answer_to(&p.text), "{}", p.id);
        assert_eq!(
            got[0].to.as_deref().map(|t| t.trim_start_matches('+')),
            Some(p.wa_id.as_str())
        );
    }
}

fn p(sorted: &[Duration], q: f64) -> f64 {
    percentile(sorted, q).as_secs_f64()
}

/// Five accounts sending long voice notes back to back, with the template's transcriber
/// concurrency (5), must not make 100 other users' texts wait: voice notes are transcribed
/// in their speech lanes (`SPEECH_LANES`, 2 by default), so the rest of the inbound
/// queue's instances keep serving texts. Texts are timed alone first, then while the
/// notes are being transcribed; every text is answered once, and nine in ten at least
/// before the first long note is (which waiting behind them prevents). `SPEECH_LANES=0`
/// in the environment runs the same load as before lanes, for the comparison (it then
/// fails that check: the texts wait behind the notes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_voice_notes_from_a_few_senders_do_not_hold_up_everyone_elses_texts() {
    let logs = tempfile::tempdir().expect("log dir");
    let fixtures = tempfile::tempdir().expect("fixture dir");
    let model = StandIn::start().await;
    let mut options = Options::isolated(logs.path()).expect("free ports");
    // As many invocations at once as the template allows (transcriber 5, responder 2):
    // what lets a few long notes hold every instance without lanes. Invocations here
    // end well within the visibility timeout.
    options.concurrent = true;
    options.visibility_timeout = Some(Duration::from_secs(300));
    let mut vars = vec![
        ("GPT4ALL_URL", model.url()),
        ("GPT4ALL_MODEL", STAND_IN_MODEL.to_owned()),
        ("GPT4ALL_TIMEOUT_SECONDS", "10".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
        // One machine's two cores stand for the lanes' own Lambda instances: one whisper
        // thread each, so the texts' instances still get CPU, as they would in AWS.
        ("WHISPER_THREADS", "1".to_owned()),
        (
            "WHISPER_MODEL_PATH",
            remedios_testkit::paths::whisper_model("ggml-tiny.en-q8_0.bin")
                .unwrap_or_else(|e| panic!("{e}"))
                .display()
                .to_string(),
        ),
    ];
    if let Ok(lanes) = std::env::var("SPEECH_LANES") {
        vars.push(("SPEECH_LANES", lanes));
    }
    for (k, v) in vars {
        options.vars.insert(k.to_owned(), v);
    }
    let stack = LocalStack::up(options, |step| eprintln!("stack: {step}"))
        .await
        .unwrap_or_else(|e| panic!("the local stack did not start: {e}"));
    let secret = stack.info().app_secret.clone();
    let url = stack.info().webhook_url.clone();

    // Texts alone.
    let alone = texts(&secret, 0, TEXT_USERS, "A");
    let accepted = send_all(&url, &alone).await;
    let ids: HashSet<String> = alone.iter().map(|p| p.id.clone()).collect();
    let (answered, replies) = first_answers(&stack, &ids, Duration::from_secs(300)).await;
    assert_texts_answered(&alone, &replies);
    let baseline = latencies(&alone, &accepted, &answered);

    // Long notes, back to back, then the texts.
    let seconds = note_seconds();
    let audio = remedios_testkit::voice::voice_note(
        fixtures.path(),
        "long",
        &remedios_testkit::audio::long_text(seconds),
    );
    let graph = stack.graph_emulator().expect("the Graph API emulator");
    let notes: Vec<Scripted> = (0..LONG_AUDIO_SENDERS)
        .flat_map(|s| (0..NOTES_EACH).map(move |n| (s, n)))
        .map(|(s, n)| {
            let wa_id = format!("1557{s:07}");
            let user = User::phone(&wa_id, &format!("Long audio {s}"));
            let id = format!("wamid.LONGAUDIO{s:02}x{n}");
            let media = graph.add_media(audio.clone(), "audio/ogg; codecs=opus");
            let body = meta::single(
                &user,
                meta::audio(
                    &user,
                    &id,
                    1_764_000_000 + n as i64,
                    &media,
                    "audio/ogg; codecs=opus",
                    true,
                ),
            );
            let signature = meta::sign(secret.as_bytes(), body.as_bytes());
            Scripted {
                user: s,
                wa_id,
                id,
                text: String::new(),
                body,
                signature,
                twice: false,
                refused: false,
            }
        })
        .collect();
    let notes_sent = Instant::now();
    // Each sender's notes in order, the senders at once.
    futures::future::join_all((0..LONG_AUDIO_SENDERS).map(|s| {
        let mine: Vec<&Scripted> = notes.iter().filter(|p| p.user == s).collect();
        let url = &url;
        async move {
            let answers = Mutex::new(Answers::default());
            let http = reqwest::Client::new();
            for p in mine {
                post(&http, url, p, &answers).await;
            }
        }
    }))
    .await;
    // Let the transcriber take the notes up before the texts arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let beside = texts(&secret, TEXT_USERS, TEXT_USERS, "B");
    let accepted = send_all(&url, &beside).await;
    let ids: HashSet<String> = beside
        .iter()
        .map(|p| p.id.clone())
        .chain(notes.iter().map(|p| p.id.clone()))
        .collect();
    let (answered, replies) = first_answers(&stack, &ids, DRAIN_LIMIT).await;
    let mut note_times: Vec<Duration> = notes
        .iter()
        .filter_map(|p| Some(answered.get(&p.id)?.saturating_duration_since(notes_sent)))
        .collect();
    note_times.sort();
    let busy = latencies(&beside, &accepted, &answered);
    eprintln!(
        "\n== {TEXT_USERS} users' texts, alone and beside {LONG_AUDIO_SENDERS} senders of \
         {NOTES_EACH} voice notes of {seconds} s each (SPEECH_LANES {})\n\
         texts alone: p50 {:.2} s, p90 {:.2} s, max {:.2} s\n\
         texts beside the long notes: p50 {:.2} s, p90 {:.2} s, max {:.2} s (answered {} of {TEXT_USERS})\n\
         long notes answered after: first {:.1} s, last {:.1} s ({} of {})\n",
        std::env::var("SPEECH_LANES").unwrap_or_else(|_| "default".into()),
        p(&baseline, 0.5),
        p(&baseline, 0.9),
        p(&baseline, 1.0),
        p(&busy, 0.5),
        p(&busy, 0.9),
        p(&busy, 1.0),
        busy.len(),
        note_times.first().map_or(f64::NAN, Duration::as_secs_f64),
        note_times.last().map_or(f64::NAN, Duration::as_secs_f64),
        note_times.len(),
        notes.len(),
    );
    assert_texts_answered(&beside, &replies);
    for n in &notes {
        assert!(
            replies.get(&n.id).is_some_and(|r| !r.is_empty()),
            "the long note {} was answered",
            n.id
        );
    }
    let first_note = notes
        .iter()
        .filter_map(|p| answered.get(&p.id))
        .min()
        .copied()
        .expect("a note answered");
    let before_first_note = beside
        .iter()
        .filter(|p| answered.get(&p.id).is_some_and(|at| *at < first_note))
        .count();
    // Waiting behind the transcriptions, none would be (the run without lanes answers 0);
    // a few may come after it on a slow machine, where the text path and whisper share
    // two cores.
    assert!(
        before_first_note * 10 >= TEXT_USERS * 9,
        "texts answered before the first long note: {before_first_note} of {TEXT_USERS}; \
         texts must not wait behind transcriptions"
    );
    wait_for_empty_queues(&stack, Duration::from_secs(120)).await;
    assert_no_dead_letters(&stack).await;
    stack.shutdown().await;
}
