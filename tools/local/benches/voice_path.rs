//! A voice note's way through the whole local stack, stage by stage: from the POST to
//! `/webhook` to the reply accepted by the Graph API emulator, for a 10 s and a 40 s
//! note (espeak-ng speech as Ogg/Opus, as WhatsApp sends voice notes).
//!
//! The stack is the one `remedios up` runs (moto with IAM enforced, the Graph API
//! emulator, the three functions under `cargo lambda watch` in release mode, the event
//! pump), with the deployed default whisper model (`ggml-base-q8_0.bin`, language
//! detected) and the fast stand-in model host, so generation does not hide the pipeline.
//! Notes are sent one at a time: this measures latency, not throughput.
//!
//! Where each figure comes from:
//! - webhook: the POST until the message was on the inbound queue (its `SentTimestamp`);
//!   the 200 the sender sees comes after, while the transcriber may already have it (its
//!   own row);
//! - inbound queue: that timestamp until the event pump invoked the transcriber with it;
//! - download, decode, transcribe: the transcriber's own `DownloadMs`, `DecodeMs` and
//!   `TranscriptionMs` metric lines;
//! - transcriber, rest: the rest of its time until the reply job was on the reply queue
//!   (its `SentTimestamp`): the message record, the fair-limit counter, the transcript;
//! - reply queue: that timestamp until the pump invoked the responder with it;
//! - responder: from then until the emulator took the last reply part, less the model
//!   call (`ModelMs`) and the Graph API send calls (`SendMs`), which are their own rows.
//!
//! `cargo bench -p remedios-local --bench voice_path` (`VOICE_PATH_RUNS`, default 10
//! measured notes per length after one warm-up note, reported apart).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use remedios_local::pump::{Batch, Outcome};
use remedios_local::stack::{LocalStack, Options, default_whisper_model};
use remedios_local::stats::percentile;
use remedios_testkit::graph::{EmulatorClient, Recorded};
use remedios_testkit::meta::{self, User};
use remedios_testkit::stand_in::STAND_IN_MODEL;
use serde_json::Value;

/// How long one note may take to be answered.
const REPLY_TIMEOUT: Duration = Duration::from_secs(180);
/// The note lengths measured, in seconds of speech.
const LENGTHS: [u32; 2] = [10, 40];

/// The stages, in the order a note goes through them.
const STAGES: [&str; 10] = [
    "webhook",
    "inbound queue",
    "download",
    "decode",
    "transcribe",
    "transcriber, rest",
    "reply queue",
    "responder",
    "model (stand-in)",
    "send",
];
/// Where "transcribe" is in [`STAGES`].
const TRANSCRIBE: usize = 4;

/// One note's way: milliseconds per stage (in [`STAGES`] order), the audio's length and
/// the whole path.
#[derive(Debug, Clone)]
struct Way {
    stages: [f64; STAGES.len()],
    audio_s: f64,
    total_ms: f64,
    /// The POST until the sender had the webhook's 200.
    webhook_200_ms: f64,
    /// After the reply was accepted: the responder recording it and saving the exchange
    /// (not on the user's path).
    after_ms: f64,
}

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("VOICE_PATH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(10);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log_dir = dir.path().join("logs");
    std::fs::create_dir_all(&log_dir).expect("the log directory");

    let model_port = remedios_testkit::ports::free_port().expect("a free port");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", model_port))
        .await
        .expect("the stand-in model's port");
    tokio::spawn(remedios_testkit::stand_in::serve(listener));

    let mut options = Options::isolated(&log_dir).expect("free ports");
    options.release = true;
    let whisper = default_whisper_model();
    assert!(
        whisper.is_file(),
        "{} is missing: run scripts/bootstrap.sh",
        whisper.display()
    );
    for (k, v) in [
        ("GPT4ALL_URL", format!("http://127.0.0.1:{model_port}/v1")),
        ("GPT4ALL_MODEL", STAND_IN_MODEL.to_owned()),
        ("WHISPER_MODEL_PATH", whisper.display().to_string()),
        ("RUST_LOG", "warn".to_owned()),
        // The path to a text answer, as measured before voice replies.
        ("VOICE_REPLY", "off".to_owned()),
    ] {
        options.vars.insert(k.to_owned(), v);
    }
    eprintln!("voice_path: starting the local stack (release build of the functions)");
    let stack = LocalStack::up(options, |step| eprintln!("stack: {step}"))
        .await
        .unwrap_or_else(|e| panic!("the local stack did not start: {e}"));
    let mut pump = stack.pump_events();
    let info = stack.info().clone();
    let emulator = EmulatorClient::new(
        info.graph_emulator_url
            .as_deref()
            .expect("the Graph API emulator runs"),
    );
    let http = reqwest::Client::new();
    let user = User::phone("15550007777", "Voice Path");

    let mut notes = Vec::new();
    for seconds in LENGTHS {
        let audio = remedios_testkit::voice::voice_note(
            dir.path(),
            &format!("note{seconds}"),
            // long_text counts 4 s per sentence; espeak-ng reads them at 150 words a
            // minute in about 5 s each.
            &remedios_testkit::audio::long_text(seconds * 4 / 5),
        );
        let mut answered = Vec::new();
        for run in 0..=runs {
            let id = format!("wamid.VOICEPATH{seconds}x{run:03}");
            let sent = send(&http, &info, &emulator, &user, &id, &audio).await;
            let batches = until_answered(&mut pump, &id).await;
            eprintln!(
                "voice_path: {seconds} s note, run {run}: answered {:.0} ms after the POST",
                unix_ms(batches[1].started + batches[1].elapsed) - unix_ms(sent.posted_at)
            );
            answered.push((id, sent, batches));
        }
        notes.push((seconds, answered));
    }
    // What the emulator and the functions' metric lines saw, read once for every note.
    let recorded = emulator.recorded(0).await.expect("the emulator's record");
    let log =
        std::fs::read_to_string(info.log_dir.join("functions.log")).expect("the functions' log");
    let lines = remedios_shared::metrics::parse_lines(&log);
    stack.shutdown().await;
    let rows: Vec<(u32, Way, Vec<Way>)> = notes
        .iter()
        .map(|(seconds, answered)| {
            let mut ways = answered
                .iter()
                .map(|(id, sent, batches)| measure(&recorded, &lines, id, sent, batches));
            let warm_up = ways.next().expect("a warm-up run");
            (*seconds, warm_up, ways.collect())
        })
        .collect();
    print!("{}", report(&rows, runs));
}

/// When the sender posted the notification and got its 200.
struct Sent {
    posted_at: SystemTime,
    accepted_at: SystemTime,
}

/// Uploads the voice note to the emulator and posts its notification, signed as Meta
/// signs it.
async fn send(
    http: &reqwest::Client,
    info: &remedios_local::stack::StackInfo,
    emulator: &EmulatorClient,
    user: &User,
    id: &str,
    audio: &[u8],
) -> Sent {
    const MIME: &str = "audio/ogg; codecs=opus";
    let media_id = emulator
        .add_media(audio.to_vec(), MIME)
        .await
        .expect("the emulator takes the voice note");
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let body = meta::single(
        user,
        meta::audio(user, id, timestamp, &media_id, MIME, true),
    );
    let posted_at = SystemTime::now();
    remedios_local::chat::post_notification(http, info, body)
        .await
        .unwrap_or_else(|e| panic!("the webhook did not take the note: {e}"));
    Sent {
        posted_at,
        accepted_at: SystemTime::now(),
    }
}

/// The pump's transcriber and responder invocations for message `id`, once the
/// responder answered it (each invocation must succeed on the first attempt: a retry
/// would measure the backoff, not the path).
async fn until_answered(
    pump: &mut tokio::sync::broadcast::Receiver<Batch>,
    id: &str,
) -> [Batch; 2] {
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut transcriber = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = match tokio::time::timeout(left, pump.recv()).await {
            Ok(Ok(batch)) => batch,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => panic!("the event pump stopped: {e}"),
            Err(_) => panic!("{id} was not answered within {REPLY_TIMEOUT:?}"),
        };
        let ours = batch.records.iter().any(|r| r.body.contains(id));
        if !ours {
            continue;
        }
        assert_eq!(
            batch.outcome,
            Outcome::Answered { failed: vec![] },
            "the {} failed on {id}: a retry would measure its backoff",
            batch.function
        );
        match batch.function.as_str() {
            "transcriber" => transcriber = Some(batch),
            "responder" => {
                let transcriber = transcriber.expect("the transcriber ran before the responder");
                return [transcriber, batch];
            }
            _ => {}
        }
    }
}

/// The stages of message `id` from what the sender, the pump, the emulator and the
/// functions' metric lines saw.
fn measure(
    recorded: &[Recorded],
    lines: &[Value],
    id: &str,
    sent: &Sent,
    [transcriber, responder]: &[Batch; 2],
) -> Way {
    let posted = unix_ms(sent.posted_at);
    let accepted = unix_ms(sent.accepted_at);
    let sent_at = |batch: &Batch, what: &str| -> f64 {
        batch
            .records
            .iter()
            .find(|r| r.body.contains(id))
            .and_then(|r| r.sent_at_ms)
            .unwrap_or_else(|| panic!("the {what}'s SentTimestamp")) as f64
    };
    let enqueued = sent_at(transcriber, "inbound message");
    let job_queued = sent_at(responder, "reply job");
    let transcriber_start = unix_ms(transcriber.started);
    let responder_start = unix_ms(responder.started);
    let responder_end = unix_ms(responder.started + responder.elapsed);
    let replied = recorded
        .iter()
        .filter_map(|r| match r {
            Recorded::Text {
                at_ms,
                reply_to: Some(to),
                id: Some(_),
                ..
            } if to == id => Some(*at_ms as f64),
            _ => None,
        })
        .fold(None, |last: Option<f64>, at| {
            Some(last.map_or(at, |l| l.max(at)))
        })
        .expect("the emulator accepted a reply to the note");

    // The metric lines written while this note went through (one note at a time).
    let lines: Vec<&Value> = lines
        .iter()
        .filter(|m| {
            m["_aws"]["Timestamp"]
                .as_f64()
                .is_some_and(|t| t >= posted.floor() && t <= responder_end.ceil())
        })
        .collect();
    let one = |function: &str, metric: &str| -> f64 {
        let found: Vec<f64> = lines
            .iter()
            .filter(|m| m["Function"] == function)
            .filter_map(|m| m[metric].as_f64())
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {function} {metric} line for {id}: {found:?}"
        );
        found[0]
    };
    let sum = |function: &str, metric: &str| -> f64 {
        lines
            .iter()
            .filter(|m| m["Function"] == function)
            .filter_map(|m| m[metric].as_f64())
            .sum()
    };
    let download = one("transcriber", "DownloadMs");
    let decode = one("transcriber", "DecodeMs");
    let transcribe = one("transcriber", "TranscriptionMs");
    let audio_s = one("transcriber", "AudioSeconds");
    let send = one("responder", "SendMs");
    let model = sum("responder", "ModelMs");
    let stages = [
        enqueued - posted,
        transcriber_start - enqueued,
        download,
        decode,
        transcribe,
        job_queued - transcriber_start - download - decode - transcribe,
        responder_start - job_queued,
        replied - responder_start - model - send,
        model,
        send,
    ];
    Way {
        stages,
        audio_s,
        total_ms: replied - posted,
        webhook_200_ms: accepted - posted,
        after_ms: responder_end - replied,
    }
}

fn report(rows: &[(u32, Way, Vec<Way>)], runs: usize) -> String {
    let mut out = format!(
        "\nA voice note's way through the local stack: ms per stage, p50 / p90 of {runs} notes \
         per length (after one warm-up note), one note at a time\n\n"
    );
    let mut header = String::from("| stage |");
    let mut rule = String::from("|---|");
    for (seconds, _, paths) in rows {
        let audio = percentile(&sorted(paths.iter().map(|p| p.audio_s)), 0.5);
        header.push_str(&format!(" {seconds} s note ({audio:.1} s of audio) |"));
        rule.push_str("---:|");
    }
    out.push_str(&format!("{header}\n{rule}\n"));
    let mut line = |name: &str, value: &dyn Fn(&Way) -> f64| {
        let mut cells = format!("| {name} |");
        for (_, _, paths) in rows {
            let values = sorted(paths.iter().map(value));
            cells.push_str(&format!(
                " {:.1} / {:.1} |",
                percentile(&values, 0.5),
                percentile(&values, 0.9)
            ));
        }
        out.push_str(&cells);
        out.push('\n');
    };
    for (i, stage) in STAGES.iter().enumerate() {
        line(stage, &|p: &Way| p.stages[i]);
    }
    line("**all but transcribe**", &|p: &Way| {
        p.total_ms - p.stages[TRANSCRIBE]
    });
    line("**webhook to reply accepted**", &|p: &Way| p.total_ms);
    line("the webhook's 200 at the sender", &|p: &Way| {
        p.webhook_200_ms
    });
    line("after the reply (ledger, history)", &|p: &Way| p.after_ms);
    let mut first = String::from("\nFirst (warm-up) note, ms in all / transcribing:");
    for (seconds, warm_up, _) in rows {
        first.push_str(&format!(
            " {seconds} s: {:.0} / {:.0};",
            warm_up.total_ms, warm_up.stages[TRANSCRIBE]
        ));
    }
    out.push_str(first.trim_end_matches(';'));
    out.push('\n');
    out
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values
}
