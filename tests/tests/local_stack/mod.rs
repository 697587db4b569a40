//! The local stack as the end-to-end tests start it, shared by `tests/e2e.rs` and
//! `tests/privacy.rs` (`mod local_stack;`).

// Each test binary uses the helpers it needs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use remedios_local::chat::{Chat, Exchange, Outgoing};
use remedios_local::stack::{LocalStack, Options, StackInfo};
use remedios_testkit::paths;

/// How long a test waits for each reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// Starts the whole pipeline as `remedios up` does, on free ports, with its logs in
/// `log_dir`, the small English whisper model (quick; the stack's default is
/// ggml-base), and `vars` passed to the functions over the stack's defaults.
pub async fn start(log_dir: &Path, vars: BTreeMap<String, String>) -> LocalStack {
    let mut options = Options::isolated(log_dir).expect("free ports");
    let tiny = paths::whisper_model("ggml-tiny.en.bin").unwrap_or_else(|e| panic!("{e}"));
    options
        .vars
        .insert("WHISPER_MODEL_PATH".into(), tiny.display().to_string());
    options.vars.extend(vars);
    LocalStack::up(options, |step| eprintln!("stack: {step}"))
        .await
        .unwrap_or_else(|e| panic!("the local stack did not start: {e}"))
}

/// Stops the stack and asserts that nothing it started is left running.
pub async fn shutdown(stack: LocalStack) {
    let processes = stack.processes();
    stack.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes.alive().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        processes.alive(),
        Vec::<String>::new(),
        "nothing is left running"
    );
}

/// An S3 client for the stack's moto, as its admin (the functions' principals may not
/// read what the test inspects).
pub async fn s3(info: &StackInfo) -> aws_sdk_s3::Client {
    remedios_testkit::moto::s3_client(&info.admin_sdk().await)
}

/// An object's bytes, `None` when it is missing.
pub async fn object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let out = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    Some(out.body.collect().await.ok()?.into_bytes().to_vec())
}

/// Every object name in the bucket.
pub async fn list(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.unwrap_or_else(|e| panic!("list the bucket: {e}"));
        names.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    names
}

/// Sends a voice note (Ogg/Opus bytes) and waits for its replies.
pub async fn send_voice(chat: &mut Chat, audio: Vec<u8>) -> Exchange {
    chat.send(
        Outgoing::Voice {
            bytes: audio,
            mime_type: "audio/ogg; codecs=opus".into(),
        },
        REPLY_TIMEOUT,
        |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("no reply to the voice note: {e}"))
}
