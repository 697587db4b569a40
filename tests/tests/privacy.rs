//! Privacy: the logs (metric lines included) and the bucket listing of a full run hold
//! no message text, transcript, reply, token, secret, profile name or phone number. The
//! whole pipeline runs as `remedios up` runs it (functions at the default
//! `RUST_LOG=info`); a text with a distinctive phrase and a voice note from a known number
//! are answered, with message ids shaped as Meta's (base64 of a record holding the
//! sender's number, as the Graph API emulator's ids of sent messages hold the
//! recipient's), then every file in the stack's log directory and every object name in
//! the bucket is scanned.
//!
//! The number is looked for in every form: with and without `+` and country code, with
//! spaces, dashes and parentheses, percent-encoded, and inside every `wamid.` token and
//! every run of 16 or more base64 characters, decoded (standard and URL-safe alphabets,
//! from each of the four offsets a run may start at).

mod local_stack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;

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

/// The ways an 11-digit number with a 1-digit country code is written.
fn number_forms(number: &str) -> Vec<String> {
    let (cc, area, exchange, line) = (&number[..1], &number[1..4], &number[4..7], &number[7..]);
    let national = &number[1..];
    vec![
        number.to_owned(),
        format!("+{number}"),
        national.to_owned(),
        format!("+{cc} {area} {exchange} {line}"),
        format!("{cc} {area} {exchange} {line}"),
        format!("{area} {exchange} {line}"),
        format!("+{cc} ({area}) {exchange}-{line}"),
        format!("({area}) {exchange}-{line}"),
        format!("{area}-{exchange}-{line}"),
        format!("{cc}-{area}-{exchange}-{line}"),
    ]
}

/// `text` with `%XX` escapes decoded (as in percent-encoded object names).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What every run of 16 or more base64 characters in `text` decodes to, in both
/// alphabets, from each offset (a run may begin mid-quantum after a delimiter).
fn base64_decodings(text: &str) -> Vec<String> {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '-' | '_');
    let mut out = Vec::new();
    for run in text.split(|c: char| !is_b64(c)).filter(|r| r.len() >= 16) {
        for offset in 0..4 {
            let part = &run[offset..];
            let part = &part[..part.len() - part.len() % 4];
            for engine in [
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                if let Ok(bytes) = engine.decode(part) {
                    out.push(String::from_utf8_lossy(&bytes).into_owned());
                }
            }
        }
    }
    out
}

/// `(where, what, excerpt)` of every forbidden string in `text`, read as it is,
/// percent-decoded and base64-decoded; `numbers` are looked for in all their forms.
fn leaks_in(
    place: &str,
    text: &str,
    forbidden: &[(String, &str)],
    numbers: &[&str],
) -> Vec<String> {
    let mut needles: Vec<(String, String)> = forbidden
        .iter()
        .map(|(n, what)| (n.to_lowercase(), (*what).to_owned()))
        .collect();
    for number in numbers {
        for form in number_forms(number) {
            needles.push((form, format!("phone number {number}")));
        }
    }
    let decoded = percent_decoded(text);
    let mut readings = vec![
        ("as written", text.to_owned()),
        ("percent-decoded", decoded.clone()),
    ];
    readings.extend(
        base64_decodings(&decoded)
            .into_iter()
            .map(|d| ("base64-decoded", d)),
    );
    let mut found = Vec::new();
    for (how, reading) in readings {
        let reading = reading.to_lowercase();
        for (needle, what) in &needles {
            for line in reading.lines().filter(|l| l.contains(needle.as_str())) {
                let shown: String = line.chars().take(200).collect();
                found.push(format!("{place}: {what} ({how}): {shown}"));
            }
        }
    }
    found
}

/// Every leak in the files under `dir`.
fn leaks(dir: &Path, forbidden: &[(String, &str)], numbers: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files(dir) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        found.extend(leaks_in(
            &file.display().to_string(),
            &text,
            forbidden,
            numbers,
        ));
    }
    found
}

/// The scan finds a number however it is hidden, and finds nothing in what holds none.
#[test]
fn the_scan_finds_a_number_in_every_form_it_may_take() {
    let number = "15550001111";
    let wamid = remedios_testkit::meta::wamid(number, 42);
    let hidden = [
        format!("message_id=\"{wamid}\""),
        format!(
            "messages/0123/{}.json",
            wamid.replace('+', "%2B").replace('/', "%2F")
        ),
        "to +1 (555) 000-1111".to_owned(),
        "user 555 000 1111".to_owned(),
        format!("x{}", &wamid["wamid.".len() + 1..]),
    ];
    for text in &hidden {
        assert!(
            !leaks_in("t", text, &[], &[number]).is_empty(),
            "not found in {text}"
        );
    }
    let clean = format!(
        "user {} message {}",
        remedios_testkit::meta::user_tag(number),
        remedios_testkit::meta::message_tag(&wamid)
    );
    assert_eq!(leaks_in("t", &clean, &[], &[number]), Vec::<String>::new());
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
        &keys::transcript(&tag, &voice.message_tag),
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
    let listing = local_stack::list(&s3, &info.bucket).await;
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
    ];
    for reply in text.replies.iter().chain(&voice.replies) {
        for line in reply.lines().map(str::trim).filter(|l| l.len() >= 16) {
            forbidden.push((line.to_owned(), "reply text"));
        }
    }
    let mut found = leaks(&log_dir, &forbidden, &[PHONE]);
    found.extend(leaks_in(
        "the bucket listing",
        &listing.join("\n"),
        &forbidden,
        &[PHONE],
    ));
    assert!(
        found.is_empty(),
        "the logs or object names leak private data:\n{}",
        found.join("\n")
    );
    // The scan read a listing of this run's objects, and the ids it sent hold the number.
    assert!(
        listing
            .iter()
            .any(|k| k.contains(voice.message_tag.as_str())),
        "the voice note is filed under its keyed tag: {listing:?}"
    );
    assert!(
        !leaks_in("the chat's id", &voice.message_id, &[], &[PHONE]).is_empty(),
        "the test's message ids carry the number, as Meta's do"
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
