//! Privacy: the logs of a full run hold no message text, transcript, reply, token,
//! secret, profile name or full phone number. The whole pipeline runs as `remedios up`
//! runs it (functions at the default `RUST_LOG=info`); a text with a distinctive
//! phrase and a voice note from a known number are answered, then every file in the
//! stack's log directory is scanned. A user may appear only as their tag or as
//! `shared::user::redact`'s form of their number (`…` and the last four digits), which
//! the scan allows: it looks for the full number, with and without country code.

mod local_stack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use local_stack::{REPLY_TIMEOUT, object};
use remedios_local::chat::{Chat, Outgoing};
use remedios_local::stack::EMULATOR_TOKEN;
use remedios_shared::keys;
use remedios_testkit::meta;
use remedios_testkit::voice::voice_note;
use transcriber::speech::Transcript;

const PHONE: &str = "15550007319";
const PROFILE_NAME: &str = "Quillon Farthingale";
const TEXT: &str = "My locker code is marmalade-zeppelin-4471, keep it secret.";
const SPOKEN: &str = "Please remind me to water the purple cactus on Thursday.";
const APP_SECRET: &str = "privacy-test-app-secret-9f3c2a";
const VERIFY_TOKEN: &str = "privacy-test-verify-token-5d1e";

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list the log directory {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `(file, what, line)` for every forbidden string found (lines truncated).
fn leaks(dir: &Path, forbidden: &[(String, &str)]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files(dir) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        for (needle, what) in forbidden {
            let needle = needle.to_lowercase();
            for line in text.lines().filter(|l| l.contains(&needle)) {
                let shown: String = line.chars().take(200).collect();
                found.push(format!("{}: {what}: {shown}", file.display()));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logs_of_a_full_run_hold_no_message_text_transcript_secret_or_phone_number() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log_dir = dir.path().join("logs");
    let vars = BTreeMap::from([
        ("WHATSAPP_APP_SECRET".to_owned(), APP_SECRET.to_owned()),
        ("WHATSAPP_VERIFY_TOKEN".to_owned(), VERIFY_TOKEN.to_owned()),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ]);
    let stack = local_stack::start(&log_dir, vars).await;
    let info = stack.info().clone();
    let mut chat = Chat::connect(info.clone(), meta::User::phone(PHONE, PROFILE_NAME))
        .await
        .expect("the chat connects to the stack");
    let tag = chat.tag().clone();

    let text = chat
        .send(Outgoing::Text(TEXT.into()), REPLY_TIMEOUT, |_| {})
        .await
        .unwrap_or_else(|e| panic!("no reply to the text message: {e}"));
    let voice = local_stack::send_voice(&mut chat, voice_note(dir.path(), "note", SPOKEN)).await;
    let s3 = local_stack::s3(&info).await;
    let transcript = object(
        &s3,
        &info.bucket,
        &keys::transcript(&tag, &voice.message_id),
    )
    .await
    .expect("the transcript is in S3");
    let transcript: Transcript =
        serde_json::from_slice(&transcript).expect("the transcript record parses");
    assert!(
        transcript.text.to_lowercase().contains("cactus"),
        "whisper heard the note: {}",
        transcript.text
    );
    local_stack::shutdown(stack).await;

    let mut forbidden: Vec<(String, &str)> = vec![
        (TEXT.to_owned(), "message text"),
        ("marmalade-zeppelin".to_owned(), "message text"),
        (transcript.text.trim().to_owned(), "transcript"),
        ("purple cactus".to_owned(), "transcript"),
        (EMULATOR_TOKEN.to_owned(), "access token"),
        (APP_SECRET.to_owned(), "app secret"),
        (VERIFY_TOKEN.to_owned(), "verify token"),
        (PROFILE_NAME.to_owned(), "profile name"),
        (PHONE.to_owned(), "phone number"),
        (PHONE[1..].to_owned(), "phone number without country code"),
    ];
    for reply in text.replies.iter().chain(&voice.replies) {
        for line in reply.lines().map(str::trim).filter(|l| l.len() >= 16) {
            forbidden.push((line.to_owned(), "reply text"));
        }
    }
    let found = leaks(&log_dir, &forbidden);
    assert!(
        found.is_empty(),
        "the logs leak private data:\n{}",
        found.join("\n")
    );

    // The scan read real logs of this run, in which the user appears only redacted.
    let functions_log =
        std::fs::read_to_string(log_dir.join("functions.log")).expect("the functions' log exists");
    assert!(
        functions_log.contains(tag.as_str()),
        "the functions logged the user as their tag {tag}"
    );
    assert!(
        ["webhook", "transcriber", "responder"]
            .iter()
            .all(|f| functions_log.contains(f)),
        "the log holds the lines of all three functions"
    );
}
